/*
 * Follows: POST and DELETE /v1/users/{id}/follow, GET
 * /v1/users/{id}/followers and /following.  {id} is an id or @username.
 *
 * Following and unfollowing are idempotent and keep both users' counters
 * exact under any concurrency: the insert (or delete) and the two counter
 * updates are one statement, and a repeated pair changes nothing.  A new
 * follow notifies the followee; either change invalidates the follower's
 * home feed, which is rebuilt with or without the followee's posts.
 */

#include "ngx_social_users.h"


typedef struct {
    ngx_str_t                   ids[2];    /* follower, followee */
    ngx_social_list_t           list;
} ngx_social_users_follow_ctx_t;


static ngx_int_t ngx_social_users_target(ngx_str_t *param, ngx_str_t *id,
    ngx_str_t *name);
static ngx_int_t ngx_social_users_follow_change(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx, ngx_uint_t stmt);
static void ngx_social_users_notify(ngx_http_request_t *r, PGresult *res,
    int user, int col);
static void ngx_social_users_follow_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_users_follow_list(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx, ngx_uint_t stmt);
static void ngx_social_users_follow_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


#define NGX_SOCIAL_USERS_TARGET                                              \
    "t AS (SELECT id FROM users WHERE ($2::bigint IS NOT NULL AND id = $2) " \
    "OR ($3::text IS NOT NULL AND lower(username) = lower($3))) "

/*
 * the relationship body, the followee's id, both as of the statement, and
 * the notification.created event of a follow (NULL without one)
 */
#define NGX_SOCIAL_USERS_RELATION(following, event)                          \
    "SELECT " NGX_SOCIAL_SQL_OBJECT("'following', " following ", "         \
    "'followed_by', EXISTS (SELECT 1 FROM follows f, t "                     \
    "WHERE f.follower_id = t.id AND f.followee_id = $1)") ", "              \
    "t.id::text, " event " FROM t"

/* followers or following of a user, a page, and a NULL row if no user */
#define NGX_SOCIAL_USERS_LIST(mine, theirs)                                  \
    "WITH " NGX_SOCIAL_USERS_TARGET                                         \
    "(SELECT f.id::text, (SELECT " NGX_SOCIAL_SQL_USER_PUBLIC             \
    " FROM users u WHERE u.id = f." theirs ") "                             \
    "FROM follows f JOIN t ON f." mine " = t.id "                           \
    "WHERE ($4::bigint IS NULL OR f.id < $4) "                              \
    "AND ($5::bigint IS NULL OR f.id > $5) "                                \
    "ORDER BY f.id DESC LIMIT $1) "                                         \
    "UNION ALL SELECT NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM t)"


enum {
    NGX_SOCIAL_USERS_FOLLOW = 0,
    NGX_SOCIAL_USERS_UNFOLLOW,
    NGX_SOCIAL_USERS_FOLLOWERS,
    NGX_SOCIAL_USERS_FOLLOWING
};


static ngx_social_pg_stmt_t  ngx_social_users_follow_stmts[] = {

    { ngx_string("users_follow"),
      ngx_string("WITH " NGX_SOCIAL_USERS_TARGET ", "
                 "ins AS (INSERT INTO follows (follower_id, followee_id) "
                 "SELECT $1, id FROM t ON CONFLICT DO NOTHING "
                 "RETURNING followee_id), "
                 "a AS (UPDATE users SET following_count = following_count "
                 "+ 1 WHERE id = $1 AND EXISTS (SELECT 1 FROM ins)), "
                 "b AS (UPDATE users SET followers_count = followers_count "
                 "+ 1 WHERE id = (SELECT followee_id FROM ins)), "
                 "n AS (INSERT INTO notifications (user_id, type, actor_id) "
                 "SELECT followee_id, 'follow', $1 FROM ins RETURNING *) "
                 NGX_SOCIAL_USERS_RELATION("true",
                     "(SELECT " NGX_SOCIAL_SQL_NOTIFICATION_EVENT("n", "a")
                     " FROM n JOIN users a ON a.id = n.actor_id)")),
      0, 0 },

    { ngx_string("users_unfollow"),
      ngx_string("WITH " NGX_SOCIAL_USERS_TARGET ", "
                 "del AS (DELETE FROM follows WHERE follower_id = $1 "
                 "AND followee_id = (SELECT id FROM t) "
                 "RETURNING followee_id), "
                 "a AS (UPDATE users SET following_count = following_count "
                 "- 1 WHERE id = $1 AND EXISTS (SELECT 1 FROM del)), "
                 "b AS (UPDATE users SET followers_count = followers_count "
                 "- 1 WHERE id = (SELECT followee_id FROM del)) "
                 NGX_SOCIAL_USERS_RELATION("false", "NULL")),
      0, 0 },

    { ngx_string("users_followers"),
      ngx_string(NGX_SOCIAL_USERS_LIST("followee_id", "follower_id")),
      1, 0 },

    { ngx_string("users_following"),
      ngx_string(NGX_SOCIAL_USERS_LIST("follower_id", "followee_id")),
      1, 0 }
};


ngx_int_t
ngx_social_users_follow_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_users_follow_stmts,
                                  sizeof(ngx_social_users_follow_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_users_follow(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_users_follow_change(r, ctx, NGX_SOCIAL_USERS_FOLLOW);
}


ngx_int_t
ngx_social_users_unfollow(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_users_follow_change(r, ctx, NGX_SOCIAL_USERS_UNFOLLOW);
}


ngx_int_t
ngx_social_users_followers(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_users_follow_list(r, ctx, NGX_SOCIAL_USERS_FOLLOWERS);
}


ngx_int_t
ngx_social_users_following(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_users_follow_list(r, ctx, NGX_SOCIAL_USERS_FOLLOWING);
}


/* "123" is an id, "@name" a username; anything else is no user */

static ngx_int_t
ngx_social_users_target(ngx_str_t *param, ngx_str_t *id, ngx_str_t *name)
{
    ngx_str_null(id);
    ngx_str_null(name);

    if (param->len > 1 && param->data[0] == '@') {
        name->data = param->data + 1;
        name->len = param->len - 1;
        return NGX_OK;
    }

    if (ngx_social_parse_id(param) == NGX_ERROR) {
        return NGX_DECLINED;
    }

    *id = *param;

    return NGX_OK;
}


static ngx_int_t
ngx_social_users_follow_change(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_uint_t stmt)
{
    ngx_str_t                       params[3];
    ngx_social_users_follow_ctx_t  *fc;

    fc = ngx_pcalloc(r->pool, sizeof(ngx_social_users_follow_ctx_t));
    if (fc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_users_target(&ctx->params[0], &params[1], &params[2])
        != NGX_OK)
    {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such user", NULL);
    }

    fc->ids[0].data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (fc->ids[0].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fc->ids[0].len = ngx_sprintf(fc->ids[0].data, "%L", ctx->user_id)
                     - fc->ids[0].data;
    params[0] = fc->ids[0];

    return ngx_social_pg_query(r, NULL, &ngx_social_users_follow_stmts[stmt],
                               params, 3, ngx_social_users_follow_done, fc);
}


/* publishes the event in column col of res to the user in column user */

static void
ngx_social_users_notify(ngx_http_request_t *r, PGresult *res, int user,
    int col)
{
    int64_t    to;
    ngx_str_t  event;

    to = ngx_atoof((u_char *) PQgetvalue(res, 0, user),
                   PQgetlength(res, 0, user));

    event.data = (u_char *) PQgetvalue(res, 0, col);
    event.len = PQgetlength(res, 0, col);

    (void) ngx_social_events_publish(r, &to, 1, &event, 0);
}


static void
ngx_social_users_follow_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_follow_ctx_t  *fc = data;

    if (result->status == NGX_SOCIAL_PG_SQL_ERROR
        && ngx_strcmp(result->sqlstate, "23514") == 0)
    {
        /* the CHECK that a user does not follow itself */
        ngx_http_finalize_request(r, ngx_social_send_error(r, 422,
                                      "validation_failed",
                                      "a user cannot follow itself",
                                      json_pack("{s:s}", "id",
                                                "is the signed-in user")));
        return;
    }

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such user", NULL));
        return;
    }

    if (!PQgetisnull(result->res, 0, 2)) {
        ngx_social_users_notify(r, result->res, 1, 2);
    }

    /* both users' counters may have changed: their cached views go */

    fc->ids[1].len = PQgetlength(result->res, 0, 1);
    fc->ids[1].data = ngx_pnalloc(r->pool, fc->ids[1].len);

    if (fc->ids[1].data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(fc->ids[1].data, PQgetvalue(result->res, 0, 1),
               fc->ids[1].len);

    ngx_http_finalize_request(r,
        ngx_social_users_uncache_and_send(r, fc->ids, 2, 1, NGX_HTTP_OK,
                                          result->res));
}


static ngx_int_t
ngx_social_users_follow_list(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_uint_t stmt)
{
    json_t                         *fields;
    ngx_str_t                       params[5];
    ngx_social_users_follow_ctx_t  *fc;

    fc = ngx_pcalloc(r->pool, sizeof(ngx_social_users_follow_ctx_t));
    fields = ngx_social_json_owned(r, json_object());

    if (fc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_users_target(&ctx->params[0], &params[1], &params[2])
        != NGX_OK)
    {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such user", NULL);
    }

    if (ngx_social_list_args(r, &fc->list, fields) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the list arguments are invalid",
                                     json_incref(fields));
    }

    params[0] = fc->list.fetch;
    params[3] = fc->list.max_id;
    params[4] = fc->list.since_id;

    return ngx_social_pg_query(r, NULL, &ngx_social_users_follow_stmts[stmt],
                               params, 5, ngx_social_users_follow_listed, fc);
}


static void
ngx_social_users_follow_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_follow_ctx_t  *fc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 1 && PQgetisnull(result->res, 0, 0)) {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such user", NULL));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_list(r, &fc->list,
                                                      result->res, 0, 1));
}
