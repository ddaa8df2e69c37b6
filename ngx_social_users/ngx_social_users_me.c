/*
 * The signed-in user's own view: GET /v1/users/me.
 */

#include "ngx_social_users.h"


static void ngx_social_users_me_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


static ngx_social_pg_stmt_t  ngx_social_users_me_stmt = {
    ngx_string("users_me"),
    ngx_string("SELECT " NGX_SOCIAL_USERS_OWN_VIEW
               " FROM users WHERE id = $1"),
    0
};


ngx_int_t
ngx_social_users_me_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, &ngx_social_users_me_stmt, 1);
}


ngx_int_t
ngx_social_users_me(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    u_char     buf[NGX_INT64_LEN];
    ngx_str_t  id;

    id.data = buf;
    id.len = ngx_sprintf(buf, "%L", ctx->user_id) - buf;

    return ngx_social_pg_query(r, NULL, &ngx_social_users_me_stmt, &id, 1,
                               ngx_social_users_me_done, NULL);
}


static void
ngx_social_users_me_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        /* the account is gone: its tokens are void */
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                      "the account no longer exists",
                                      NULL));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_pg_send_json(r, NGX_HTTP_OK,
                                                         result->res, 0, 0));
}
