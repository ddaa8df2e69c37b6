/*
 * Reading posts: GET /v1/posts/{id}, GET /v1/posts/{id}/replies and GET
 * /v1/users/{id}/posts ({id} an id or @username).  Lists take their ids
 * from PostgreSQL and view them like single posts (through the cache).
 */

#include "ngx_social_posts.h"


typedef struct {
    ngx_social_ctx_t           *ctx;
    ngx_uint_t                  stmt;
    ngx_social_list_t           list;
    ngx_str_t                   params[5];
} ngx_social_posts_read_ctx_t;


static ngx_int_t ngx_social_posts_list(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx, ngx_uint_t stmt);
static void ngx_social_posts_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_posts_one_viewed(ngx_http_request_t *r,
    ngx_social_posts_view_t *v);
static ngx_int_t ngx_social_posts_page_viewed(ngx_http_request_t *r,
    ngx_social_posts_view_t *v);


enum {
    NGX_SOCIAL_POSTS_REPLIES = 0,
    NGX_SOCIAL_POSTS_OF_USER
};


/*
 * $1 how many, then whose (replies: $2 the post; posts of a user: $2 id
 * or $3 username), then max_id and since_id; a NULL row: no such one
 */
static ngx_social_pg_stmt_t  ngx_social_posts_read_stmts[] = {

    { ngx_string("posts_replies"),
      ngx_string("(SELECT id::text FROM posts WHERE reply_to_id = $2 "
                 "AND deleted_at IS NULL "
                 "AND ($3::bigint IS NULL OR id < $3) "
                 "AND ($4::bigint IS NULL OR id > $4) "
                 "ORDER BY id DESC LIMIT $1) "
                 "UNION ALL SELECT NULL WHERE NOT EXISTS "
                 "(SELECT 1 FROM posts WHERE id = $2 "
                 "AND deleted_at IS NULL)"),
      1, 0 },

    { ngx_string("posts_of_user"),
      ngx_string("WITH t AS (SELECT id FROM users "
                 "WHERE ($2::bigint IS NOT NULL AND id = $2) "
                 "OR ($3::text IS NOT NULL "
                 "AND lower(username) = lower($3))) "
                 "(SELECT p.id::text FROM posts p "
                 "WHERE p.author_id = (SELECT id FROM t) "
                 "AND p.deleted_at IS NULL "
                 "AND ($4::bigint IS NULL OR p.id < $4) "
                 "AND ($5::bigint IS NULL OR p.id > $5) "
                 "ORDER BY p.id DESC LIMIT $1) "
                 "UNION ALL SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM t)"),
      1, 0 }
};


ngx_int_t
ngx_social_posts_read_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_posts_read_stmts,
                                  sizeof(ngx_social_posts_read_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_posts_get(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    int64_t                   id;
    ngx_social_posts_view_t  *v;

    if (ngx_social_posts_id_param(&ctx->params[0], &id) != NGX_OK) {
        return ngx_social_posts_not_found(r);
    }

    v = ngx_social_posts_view_create(r, ctx->user_id, 1);
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v->ids[0] = id;
    v->handler = ngx_social_posts_one_viewed;

    return ngx_social_posts_view(v);
}


static ngx_int_t
ngx_social_posts_one_viewed(ngx_http_request_t *r, ngx_social_posts_view_t *v)
{
    if (v->json[0].len == 0) {
        return ngx_social_posts_not_found(r);
    }

    return ngx_social_send_json_text(r, NGX_HTTP_OK, &v->json[0]);
}


ngx_int_t
ngx_social_posts_replies(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_posts_list(r, ctx, NGX_SOCIAL_POSTS_REPLIES);
}


ngx_int_t
ngx_social_posts_of_user(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_posts_list(r, ctx, NGX_SOCIAL_POSTS_OF_USER);
}


static ngx_int_t
ngx_social_posts_list(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_uint_t stmt)
{
    json_t                       *fields;
    ngx_str_t                    *param;
    ngx_social_posts_read_ctx_t  *rc;

    rc = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_read_ctx_t));
    fields = ngx_social_json_owned(r, json_object());

    if (rc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc->ctx = ctx;
    rc->stmt = stmt;
    param = &ctx->params[0];

    if (stmt == NGX_SOCIAL_POSTS_OF_USER && param->len > 1
        && param->data[0] == '@')
    {
        rc->params[2].data = param->data + 1;
        rc->params[2].len = param->len - 1;

    } else if (ngx_social_parse_id(param) != NGX_ERROR) {
        rc->params[1] = *param;

    } else {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     stmt == NGX_SOCIAL_POSTS_OF_USER
                                     ? "no such user" : "no such post",
                                     NULL);
    }

    if (ngx_social_list_args(r, &rc->list, fields) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the list arguments are invalid",
                                     json_incref(fields));
    }

    rc->params[0] = rc->list.fetch;

    if (stmt == NGX_SOCIAL_POSTS_REPLIES) {
        rc->params[2] = rc->list.max_id;
        rc->params[3] = rc->list.since_id;

    } else {
        rc->params[3] = rc->list.max_id;
        rc->params[4] = rc->list.since_id;
    }

    return ngx_social_pg_query(r, NULL, &ngx_social_posts_read_stmts[stmt],
                               rc->params,
                               stmt == NGX_SOCIAL_POSTS_REPLIES ? 4 : 5,
                               ngx_social_posts_listed, rc);
}


static void
ngx_social_posts_listed(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_posts_read_ctx_t  *rc = data;

    int                       row, n;
    PGresult                 *res;
    ngx_social_posts_view_t  *v;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;
    n = PQntuples(res);

    if (n == 1 && PQgetisnull(res, 0, 0)) {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_NOT_FOUND, "not_found",
                                      rc->stmt == NGX_SOCIAL_POSTS_OF_USER
                                      ? "no such user" : "no such post",
                                      NULL));
        return;
    }

    v = ngx_social_posts_view_create(r, rc->ctx->user_id, n);
    if (v == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    for (row = 0; row < n; row++) {
        v->ids[row] = ngx_atoof((u_char *) PQgetvalue(res, row, 0),
                                PQgetlength(res, row, 0));
    }

    v->handler = ngx_social_posts_page_viewed;
    v->data = rc;

    ngx_http_finalize_request(r, ngx_social_posts_view(v));
}


static ngx_int_t
ngx_social_posts_page_viewed(ngx_http_request_t *r, ngx_social_posts_view_t *v)
{
    ngx_social_posts_read_ctx_t  *rc = v->data;

    return ngx_social_posts_send_page(r, v, &rc->list);
}
