/*
 * The signed-in user's own account: GET and PATCH /v1/users/me.
 *
 * PATCH changes display_name and bio, and the password when the current
 * one is given: then (one statement, one transaction) every refresh token
 * of the user is revoked and every access token issued until now but the
 * one used for the change becomes void, on every worker and node through
 * the revocation mirror.
 */

#include "ngx_social_users.h"


typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   display_name;
    ngx_str_t                   bio;
    ngx_social_users_verify_t   verify;    /* the current password */
    ngx_social_users_hash_t     hash;      /* the new one */
    ngx_social_token_t         *token;
} ngx_social_users_patch_t;


static ngx_int_t ngx_social_users_id_param(ngx_http_request_t *r,
    int64_t id, ngx_str_t *param);
static void ngx_social_users_me_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_patch_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_patch_hash(void *data);
static void ngx_social_users_patch_hashed(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_social_users_patch_update(ngx_http_request_t *r,
    ngx_social_users_patch_t *pc);
static void ngx_social_users_patch_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


enum {
    NGX_SOCIAL_USERS_ME = 0,
    NGX_SOCIAL_USERS_ME_HASH,
    NGX_SOCIAL_USERS_ME_UPDATE
};


static ngx_social_pg_stmt_t  ngx_social_users_me_stmts[] = {

    { ngx_string("users_me"),
      ngx_string("SELECT " NGX_SOCIAL_USERS_OWN_VIEW
                 " FROM users WHERE id = $1"),
      1, 0 },

    { ngx_string("users_me_hash"),
      ngx_string("SELECT password_hash FROM credentials WHERE user_id = $1"),
      1, 0 },

    /*
     * $4: a new password hash, or NULL; $5: the token to keep.  The
     * second of the change, rounded down: tokens issued in it are void
     * (iat has whole seconds), those of the next ones are not.
     */
    { ngx_string("users_me_update"),
      ngx_string("WITH c AS (UPDATE credentials SET password_hash = $4, "
                 "updated_at = now(), tokens_valid_after = now(), "
                 "tokens_keep_jti = $5 "
                 "WHERE user_id = $1 AND $4::text IS NOT NULL "
                 "RETURNING tokens_valid_after), "
                 "rt AS (UPDATE refresh_tokens SET revoked_at = now() "
                 "WHERE user_id = $1 AND revoked_at IS NULL "
                 "AND $4::text IS NOT NULL), "
                 "u AS (UPDATE users SET "
                 "display_name = coalesce($2, display_name), "
                 "bio = coalesce($3, bio) WHERE id = $1 RETURNING *) "
                 "SELECT " NGX_SOCIAL_USERS_OWN_VIEW ", "
                 "(SELECT floor(extract(epoch FROM tokens_valid_after))"
                 "::bigint FROM c) FROM u"),
      0, 0 }
};


ngx_int_t
ngx_social_users_me_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_users_me_stmts,
                                  sizeof(ngx_social_users_me_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


/* GET /v1/users/me */

ngx_int_t
ngx_social_users_me(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_str_t  id;

    if (ngx_social_users_id_param(r, ctx->user_id, &id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_users_me_stmts[NGX_SOCIAL_USERS_ME],
                               &id, 1, ngx_social_users_me_done, NULL);
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


/* PATCH /v1/users/me */

ngx_int_t
ngx_social_users_patch_me(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                    *fields;
    ngx_str_t                  current;
    ngx_social_users_patch_t  *pc;

    pc = ngx_pcalloc(r->pool, sizeof(ngx_social_users_patch_t));
    fields = ngx_social_json_owned(r, json_object());

    if (pc == NULL || fields == NULL
        || ngx_social_users_id_param(r, ctx->user_id, &pc->id) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->token = &ctx->token;

    (void) ngx_social_field_string(ctx->body, "display_name", 0, 0, 100, 0,
                                   &pc->display_name, fields);
    (void) ngx_social_field_string(ctx->body, "bio", 0, 0, 500, 0, &pc->bio,
                                   fields);
    (void) ngx_social_field_string(ctx->body, "password", 0, 8, 1024, 1,
                                   &pc->hash.password, fields);
    (void) ngx_social_field_string(ctx->body, "current_password", 0, 1, 1024,
                                   1, &current, fields);

    if (pc->hash.password.data && current.data == NULL
        && json_object_get(fields, "current_password") == NULL)
    {
        json_object_set_new(fields, "current_password",
                            json_string("is required to change the "
                                        "password"));
    }

    if (json_object_size(fields)) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the request has invalid fields",
                                     json_incref(fields));
    }

    if (pc->hash.password.data == NULL) {
        return ngx_social_users_patch_update(r, pc);
    }

    pc->verify.password = current;

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_users_me_stmts[
                                   NGX_SOCIAL_USERS_ME_HASH],
                               &pc->id, 1, ngx_social_users_patch_found, pc);
}


static void
ngx_social_users_patch_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_patch_t  *pc = data;

    ngx_social_users_main_conf_t  *umcf;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 1) {
        pc->verify.phc.len = PQgetlength(result->res, 0, 0);
        pc->verify.phc.data = ngx_pnalloc(r->pool, pc->verify.phc.len);

        if (pc->verify.phc.data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(pc->verify.phc.data, PQgetvalue(result->res, 0, 0),
                   pc->verify.phc.len);

    } else {
        pc->verify.phc = ngx_social_users_dummy_phc;
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_social_users_module);

    ngx_http_finalize_request(r,
        ngx_social_thread_run(r, umcf->thread_pool,
                              ngx_social_users_patch_hash,
                              ngx_social_users_patch_hashed, pc));
}


/* in a pool thread: the current password, then the new hash */

static void
ngx_social_users_patch_hash(void *data)
{
    ngx_social_users_patch_t  *pc = data;

    ngx_social_users_password_verify(&pc->verify);

    if (pc->verify.ok) {
        ngx_social_users_password_hash(&pc->hash);
    }
}


static void
ngx_social_users_patch_hashed(ngx_http_request_t *r, void *data)
{
    ngx_social_users_patch_t  *pc = data;

    if (!pc->verify.ok) {
        ngx_http_finalize_request(r, ngx_social_send_error(r, 422,
                                      "validation_failed",
                                      "the current password is wrong",
                                      json_pack("{s:s}", "current_password",
                                                "is wrong")));
        return;
    }

    if (pc->hash.phc_len == 0) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_social_users_patch_update(r, pc));
}


static ngx_int_t
ngx_social_users_patch_update(ngx_http_request_t *r,
    ngx_social_users_patch_t *pc)
{
    ngx_str_t  params[5];

    params[0] = pc->id;
    params[1] = pc->display_name;
    params[2] = pc->bio;

    if (pc->hash.phc_len) {
        params[3].data = pc->hash.phc;
        params[3].len = pc->hash.phc_len;
        params[4].data = pc->token->jti;
        params[4].len = NGX_SOCIAL_JTI_LEN;

    } else {
        ngx_str_null(&params[3]);
        ngx_str_null(&params[4]);
    }

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_users_me_stmts[
                                   NGX_SOCIAL_USERS_ME_UPDATE],
                               params, 5, ngx_social_users_patch_done, pc);
}


static void
ngx_social_users_patch_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_patch_t  *pc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                      "the account no longer exists",
                                      NULL));
        return;
    }

    if (!PQgetisnull(result->res, 0, 1)) {
        /* committed: now every worker and node learns of it */
        ngx_social_users_revoke_user(ngx_atoof(pc->id.data, pc->id.len),
                                     ngx_atotm((u_char *)
                                               PQgetvalue(result->res, 0, 1),
                                               PQgetlength(result->res, 0,
                                                           1)),
                                     pc->token->jti);
    }

    ngx_http_finalize_request(r,
        ngx_social_users_uncache_and_send(r, &pc->id, 1, 0, NGX_HTTP_OK,
                                          result->res));
}


static ngx_int_t
ngx_social_users_id_param(ngx_http_request_t *r, int64_t id,
    ngx_str_t *param)
{
    param->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (param->data == NULL) {
        return NGX_ERROR;
    }

    param->len = ngx_sprintf(param->data, "%L", id) - param->data;

    return NGX_OK;
}
