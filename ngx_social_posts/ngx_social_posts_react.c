/*
 * Likes and shares: POST and DELETE /v1/posts/{id}/like and /share, and
 * GET /v1/posts/{id}/likes (the likers, newest first).
 *
 * Every change is one statement: the like (or share) row, the post's
 * counter and version, the notification; a repeat changes nothing, so
 * counters stay exact whatever the concurrency.  Liking or sharing a
 * share acts on its original.  A share is itself a post (share_of) and
 * goes into feeds like one.  After the commit and before the answer the
 * post's cached counters and the user's flags move.
 */

#include "ngx_social_posts.h"


typedef struct {
    ngx_social_ctx_t           *ctx;
    ngx_str_t                   params[3];
    ngx_str_t                   change[NGX_SOCIAL_POSTS_NCHANGE];
    ngx_str_t                   flags;
    ngx_social_posts_after_t    after;
    int64_t                     share;
    ngx_uint_t                  created;
    ngx_social_list_t           list;
} ngx_social_posts_react_ctx_t;


static ngx_int_t ngx_social_posts_react(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx, ngx_uint_t stmt, ngx_social_pg_handler_pt handler);
static void ngx_social_posts_liked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_posts_shared(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_posts_share_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_posts_share_view(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_social_posts_share_viewed(ngx_http_request_t *r,
    ngx_social_posts_view_t *v);
static void ngx_social_posts_unshared(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_posts_likers_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


/* the post a request acts on: the original of a share; live only */
#define NGX_SOCIAL_POSTS_TARGET                                              \
    "t AS (SELECT COALESCE(share_of_id, id) AS id FROM posts "               \
    "WHERE id = $2 AND deleted_at IS NULL), "                                \
    "p AS (SELECT id, author_id, likes_count FROM posts "                    \
    "WHERE id = (SELECT id FROM t) AND deleted_at IS NULL) "

/* SQL: whether $1 likes, shares post row p, as "0" or "1" */
#define NGX_SOCIAL_POSTS_LIKES_IT                                            \
    "EXISTS (SELECT 1 FROM likes l WHERE l.post_id = p.id "                  \
    "AND l.user_id = $1)::int::text"
#define NGX_SOCIAL_POSTS_SHARES_IT                                           \
    "EXISTS (SELECT 1 FROM posts s WHERE s.share_of_id = p.id "              \
    "AND s.author_id = $1 AND s.deleted_at IS NULL)::int::text"

/* SQL: the notification events of relation n, "user event" lines */
#define NGX_SOCIAL_POSTS_EVENTS                                              \
    "(SELECT string_agg(n.user_id::text || ' ' || "                          \
    NGX_SOCIAL_SQL_NOTIFICATION_EVENT("n", "a") ", E'\\n') "                 \
    "FROM n JOIN users a ON a.id = n.actor_id)"

/* SQL: the followers of $1 up to the limit $3, and their number */
#define NGX_SOCIAL_POSTS_FOLLOWERS                                           \
    "CASE WHEN uc.followers_count <= $3 THEN "                               \
    "(SELECT string_agg(follower_id::text, ',') FROM follows "               \
    "WHERE followee_id = $1) END, uc.followers_count"


enum {
    NGX_SOCIAL_POSTS_LIKE = 0,
    NGX_SOCIAL_POSTS_UNLIKE,
    NGX_SOCIAL_POSTS_SHARE,
    NGX_SOCIAL_POSTS_SHARE_FIND,
    NGX_SOCIAL_POSTS_UNSHARE,
    NGX_SOCIAL_POSTS_LIKERS
};


/*
 * like and unlike: $1 user, $2 post; the answer's body, the change (NULL
 * when nothing changed), the user's flags, the notification events
 */
static ngx_social_pg_stmt_t  ngx_social_posts_react_stmts[] = {

    { ngx_string("posts_like"),
      ngx_string("WITH " NGX_SOCIAL_POSTS_TARGET ", "
                 "ins AS (INSERT INTO likes (post_id, user_id) "
                 "SELECT id, $1 FROM p ON CONFLICT DO NOTHING "
                 "RETURNING post_id), "
                 "upd AS (UPDATE posts q SET likes_count = likes_count + 1, "
                 "version = version + 1 "
                 "WHERE q.id = (SELECT post_id FROM ins) "
                 "AND q.deleted_at IS NULL "
                 "RETURNING " NGX_SOCIAL_POSTS_CHANGE("q") "), "
                 "n AS (INSERT INTO notifications "
                 "(user_id, type, actor_id, post_id) "
                 "SELECT author_id, 'like', $1, id FROM p "
                 "WHERE author_id <> $1 AND EXISTS (SELECT 1 FROM ins) "
                 "RETURNING *) "
                 "SELECT " NGX_SOCIAL_SQL_OBJECT("'liked', true, "
                 "'likes_count', COALESCE(upd.c_lc, p.likes_count)") ", "
                 NGX_SOCIAL_POSTS_CHANGED("upd") ", "
                 "'1' || " NGX_SOCIAL_POSTS_SHARES_IT ", "
                 NGX_SOCIAL_POSTS_EVENTS
                 " FROM p LEFT JOIN upd ON true"),
      0, 0 },

    { ngx_string("posts_unlike"),
      ngx_string("WITH " NGX_SOCIAL_POSTS_TARGET ", "
                 "del AS (DELETE FROM likes "
                 "WHERE post_id = (SELECT id FROM p) AND user_id = $1 "
                 "RETURNING post_id), "
                 "upd AS (UPDATE posts q SET likes_count = likes_count - 1, "
                 "version = version + 1 "
                 "WHERE q.id = (SELECT post_id FROM del) "
                 "AND q.deleted_at IS NULL "
                 "RETURNING " NGX_SOCIAL_POSTS_CHANGE("q") "), "
                 "nd AS (DELETE FROM notifications WHERE type = 'like' "
                 "AND actor_id = $1 "
                 "AND post_id = (SELECT post_id FROM del)) "
                 "SELECT " NGX_SOCIAL_SQL_OBJECT("'liked', false, "
                 "'likes_count', COALESCE(upd.c_lc, p.likes_count)") ", "
                 NGX_SOCIAL_POSTS_CHANGED("upd") ", "
                 "'0' || " NGX_SOCIAL_POSTS_SHARES_IT ", NULL "
                 "FROM p LEFT JOIN upd ON true"),
      0, 0 },

    /*
     * $1 user, $2 post, $3 the synchronous fan-out limit: the new share
     * (NULL: there was one), the original, its change, the user's flags,
     * followers and their number, events
     */
    { ngx_string("posts_share"),
      ngx_string("WITH " NGX_SOCIAL_POSTS_TARGET ", "
                 "ins AS (INSERT INTO posts (author_id, share_of_id) "
                 "SELECT $1, id FROM p "
                 "ON CONFLICT (author_id, share_of_id) "
                 "WHERE share_of_id IS NOT NULL AND deleted_at IS NULL "
                 "DO NOTHING RETURNING id), "
                 "upd AS (UPDATE posts q "
                 "SET shares_count = shares_count + 1, "
                 "version = version + 1 "
                 "WHERE q.id = (SELECT id FROM p) "
                 "AND EXISTS (SELECT 1 FROM ins) AND q.deleted_at IS NULL "
                 "RETURNING " NGX_SOCIAL_POSTS_CHANGE("q") "), "
                 "uc AS (UPDATE users SET posts_count = posts_count + 1 "
                 "WHERE id = $1 AND EXISTS (SELECT 1 FROM ins) "
                 "RETURNING followers_count), "
                 "n AS (INSERT INTO notifications "
                 "(user_id, type, actor_id, post_id) "
                 "SELECT author_id, 'share', $1, id FROM p "
                 "WHERE author_id <> $1 AND EXISTS (SELECT 1 FROM ins) "
                 "RETURNING *) "
                 "SELECT (SELECT id FROM ins)::text, p.id::text, "
                 NGX_SOCIAL_POSTS_CHANGED("upd") ", "
                 NGX_SOCIAL_POSTS_LIKES_IT " || '1', "
                 NGX_SOCIAL_POSTS_FOLLOWERS ", "
                 NGX_SOCIAL_POSTS_EVENTS
                 " FROM p LEFT JOIN upd ON true LEFT JOIN uc ON true"),
      0, 0 },

    /* $1 user, $2 the original: the user's share of it */
    { ngx_string("posts_share_find"),
      ngx_string("SELECT id::text FROM posts WHERE author_id = $1 "
                 "AND share_of_id = $2 AND deleted_at IS NULL"),
      0, 0 },

    /*
     * $1 user, $2 post, $3 the synchronous fan-out limit: the original,
     * the share's change (NULL: none), the original's, the user's flags,
     * followers and their number
     */
    { ngx_string("posts_unshare"),
      ngx_string("WITH t AS (SELECT COALESCE(share_of_id, id) AS id "
                 "FROM posts WHERE id = $2), "
                 "d AS (UPDATE posts q SET deleted_at = now(), "
                 "version = version + 1 "
                 "WHERE q.author_id = $1 "
                 "AND q.share_of_id = (SELECT id FROM t) "
                 "AND q.deleted_at IS NULL "
                 "RETURNING " NGX_SOCIAL_POSTS_CHANGE("q") "), "
                 "upd AS (UPDATE posts q "
                 "SET shares_count = shares_count - 1, "
                 "version = version + 1 "
                 "WHERE q.id = (SELECT id FROM t) "
                 "AND EXISTS (SELECT 1 FROM d) AND q.deleted_at IS NULL "
                 "RETURNING " NGX_SOCIAL_POSTS_CHANGE("q") "), "
                 "uc AS (UPDATE users SET posts_count = posts_count - 1 "
                 "WHERE id = $1 AND EXISTS (SELECT 1 FROM d) "
                 "RETURNING followers_count), "
                 "nd AS (DELETE FROM notifications WHERE type = 'share' "
                 "AND actor_id = $1 AND post_id = (SELECT id FROM t) "
                 "AND EXISTS (SELECT 1 FROM d)) "
                 "SELECT t.id::text, "
                 NGX_SOCIAL_POSTS_CHANGED("d") ", "
                 NGX_SOCIAL_POSTS_CHANGED("upd") ", "
                 "EXISTS (SELECT 1 FROM likes l WHERE l.post_id = t.id "
                 "AND l.user_id = $1)::int::text || '0', "
                 NGX_SOCIAL_POSTS_FOLLOWERS
                 " FROM t LEFT JOIN d ON true LEFT JOIN upd ON true "
                 "LEFT JOIN uc ON true"),
      0, 0 },

    /* $1 how many, $2 post, $3 max_id, $4 since_id; a NULL row: no post */
    { ngx_string("posts_likers"),
      ngx_string("WITH t AS (SELECT COALESCE(share_of_id, id) AS id "
                 "FROM posts WHERE id = $2 AND deleted_at IS NULL) "
                 "(SELECT l.id::text, (SELECT " NGX_SOCIAL_SQL_USER_PUBLIC
                 " FROM users u WHERE u.id = l.user_id) "
                 "FROM likes l WHERE l.post_id = (SELECT id FROM t) "
                 "AND ($3::bigint IS NULL OR l.id < $3) "
                 "AND ($4::bigint IS NULL OR l.id > $4) "
                 "ORDER BY l.id DESC LIMIT $1) "
                 "UNION ALL SELECT NULL, NULL "
                 "WHERE NOT EXISTS (SELECT 1 FROM t)"),
      1, 0 }
};


ngx_int_t
ngx_social_posts_react_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_posts_react_stmts,
                                  sizeof(ngx_social_posts_react_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_posts_like(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_posts_react(r, ctx, NGX_SOCIAL_POSTS_LIKE,
                                  ngx_social_posts_liked);
}


ngx_int_t
ngx_social_posts_unlike(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_posts_react(r, ctx, NGX_SOCIAL_POSTS_UNLIKE,
                                  ngx_social_posts_liked);
}


ngx_int_t
ngx_social_posts_share(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_posts_react(r, ctx, NGX_SOCIAL_POSTS_SHARE,
                                  ngx_social_posts_shared);
}


ngx_int_t
ngx_social_posts_unshare(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_posts_react(r, ctx, NGX_SOCIAL_POSTS_UNSHARE,
                                  ngx_social_posts_unshared);
}


static ngx_int_t
ngx_social_posts_react(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_uint_t stmt, ngx_social_pg_handler_pt handler)
{
    int64_t                        id;
    ngx_social_posts_react_ctx_t  *rc;

    if (ngx_social_posts_id_param(&ctx->params[0], &id) != NGX_OK) {
        return ngx_social_posts_not_found(r);
    }

    rc = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_react_ctx_t));
    if (rc == NULL
        || ngx_social_posts_id_str(r, ctx->user_id, &rc->params[0]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc->ctx = ctx;
    rc->params[1] = ctx->params[0];
    rc->params[2] = ngx_social_posts_sync_fanout();

    return ngx_social_pg_query(r, NULL, &ngx_social_posts_react_stmts[stmt],
                               rc->params,
                               (stmt == NGX_SOCIAL_POSTS_LIKE
                                || stmt == NGX_SOCIAL_POSTS_UNLIKE) ? 2 : 3,
                               handler, rc);
}


/* like, unlike: the cached post and the user's flags, then the answer */

static void
ngx_social_posts_liked(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_posts_react_ctx_t  *rc = data;

    PGresult                   *res;
    ngx_str_t                   events;
    ngx_social_posts_answer_t  *a;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;

    if (PQntuples(res) == 0) {
        ngx_http_finalize_request(r, ngx_social_posts_not_found(r));
        return;
    }

    a = ngx_social_posts_answer_create(r, NGX_HTTP_OK);

    if (a == NULL
        || ngx_social_posts_copy(r->pool, res, 0, 0, 1, &a->body) != NGX_OK
        || ngx_social_posts_copy(r->pool, res, 0, 1,
                                 NGX_SOCIAL_POSTS_NCHANGE, rc->change)
           == NGX_ERROR
        || ngx_social_posts_copy(r->pool, res, 0, 7, 1, &rc->flags)
           == NGX_ERROR
        || ngx_social_posts_copy(r->pool, res, 0, 8, 1, &events)
           == NGX_ERROR)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc->change[0].data != NULL) {
        ngx_social_posts_answer_hold(a,
            ngx_social_posts_changed(r, rc->change, rc->ctx->user_id,
                                     &rc->flags,
                                     ngx_social_posts_answer_synced, a));
    }

    if (events.data != NULL) {
        ngx_social_posts_notify(r, &events);
    }

    ngx_http_finalize_request(r, ngx_social_posts_answer_send(a));
}


static void
ngx_social_posts_shared(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_posts_react_ctx_t  *rc = data;

    PGresult                   *res;
    ngx_social_posts_answer_t  *a;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;

    if (PQntuples(res) == 0) {
        ngx_http_finalize_request(r, ngx_social_posts_not_found(r));
        return;
    }

    if (PQgetisnull(res, 0, 0)) {
        /* shared before: the existing share, looked up afresh */
        rc->params[1].len = PQgetlength(res, 0, 1);
        rc->params[1].data = ngx_pnalloc(r->pool, rc->params[1].len);

        if (rc->params[1].data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(rc->params[1].data, PQgetvalue(res, 0, 1),
                   rc->params[1].len);

        ngx_http_finalize_request(r,
            ngx_social_pg_query(r, NULL,
                                &ngx_social_posts_react_stmts[
                                    NGX_SOCIAL_POSTS_SHARE_FIND],
                                rc->params, 2, ngx_social_posts_share_found,
                                rc));
        return;
    }

    rc->created = 1;
    rc->share = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                          PQgetlength(res, 0, 0));

    a = ngx_social_posts_answer_create(r, NGX_HTTP_CREATED);

    if (a == NULL
        || ngx_social_posts_copy(r->pool, res, 0, 2,
                                 NGX_SOCIAL_POSTS_NCHANGE, rc->change)
           == NGX_ERROR
        || ngx_social_posts_copy(r->pool, res, 0, 8, 1, &rc->flags)
           == NGX_ERROR
        || ngx_social_posts_after(r, res, 0, 9, &rc->after) != NGX_OK
        || ngx_social_posts_copy(r->pool, res, 0, 11, 1, &rc->after.events)
           == NGX_ERROR)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the answer is the share, viewed once the caches caught up */
    a->then = ngx_social_posts_share_view;
    a->data = rc;

    if (rc->change[0].data != NULL) {
        ngx_social_posts_answer_hold(a,
            ngx_social_posts_changed(r, rc->change, rc->ctx->user_id,
                                     &rc->flags,
                                     ngx_social_posts_answer_synced, a));
    }

    ngx_social_posts_after_run(r, &rc->after, rc->share, rc->ctx->user_id,
                               0, a);

    ngx_http_finalize_request(r, ngx_social_posts_answer_send(a));
}


static void
ngx_social_posts_share_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_react_ctx_t  *rc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        /* unshared meanwhile */
        ngx_http_finalize_request(r, ngx_social_posts_not_found(r));
        return;
    }

    rc->share = ngx_atoof((u_char *) PQgetvalue(result->res, 0, 0),
                          PQgetlength(result->res, 0, 0));

    ngx_http_finalize_request(r, ngx_social_posts_share_view(r, rc));
}


static ngx_int_t
ngx_social_posts_share_view(ngx_http_request_t *r, void *data)
{
    ngx_social_posts_react_ctx_t  *rc = data;

    ngx_social_posts_view_t  *v;

    v = ngx_social_posts_view_create(r, rc->ctx->user_id, 1);
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v->ids[0] = rc->share;
    v->handler = ngx_social_posts_share_viewed;
    v->data = rc;

    return ngx_social_posts_view(v);
}


static ngx_int_t
ngx_social_posts_share_viewed(ngx_http_request_t *r,
    ngx_social_posts_view_t *v)
{
    ngx_social_posts_react_ctx_t  *rc = v->data;

    if (v->json[0].len == 0) {
        return ngx_social_posts_not_found(r);
    }

    return ngx_social_send_json_text(r, rc->created ? NGX_HTTP_CREATED
                                                    : NGX_HTTP_OK,
                                     &v->json[0]);
}


static void
ngx_social_posts_unshared(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_react_ctx_t  *rc = data;

    PGresult                   *res;
    ngx_str_t                   share[NGX_SOCIAL_POSTS_NCHANGE];
    ngx_social_posts_answer_t  *a;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;

    if (PQntuples(res) == 0) {
        ngx_http_finalize_request(r, ngx_social_posts_not_found(r));
        return;
    }

    a = ngx_social_posts_answer_create(r, NGX_HTTP_NO_CONTENT);

    if (a == NULL
        || ngx_social_posts_copy(r->pool, res, 0, 1,
                                 NGX_SOCIAL_POSTS_NCHANGE, share)
           == NGX_ERROR
        || ngx_social_posts_copy(r->pool, res, 0, 7,
                                 NGX_SOCIAL_POSTS_NCHANGE, rc->change)
           == NGX_ERROR
        || ngx_social_posts_copy(r->pool, res, 0, 13, 1, &rc->flags)
           == NGX_ERROR
        || ngx_social_posts_after(r, res, 0, 14, &rc->after) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (share[0].data == NULL) {
        /* not shared: nothing to undo */
        ngx_http_finalize_request(r, ngx_social_send_no_content(r));
        return;
    }

    ngx_social_posts_answer_hold(a,
        ngx_social_posts_changed(r, share, 0, &ngx_social_posts_none,
                                 ngx_social_posts_answer_synced, a));

    if (rc->change[0].data != NULL) {
        ngx_social_posts_answer_hold(a,
            ngx_social_posts_changed(r, rc->change, rc->ctx->user_id,
                                     &rc->flags,
                                     ngx_social_posts_answer_synced, a));
    }

    ngx_social_posts_after_run(r, &rc->after,
                               ngx_atoof(share[0].data, share[0].len),
                               rc->ctx->user_id, 1, a);

    ngx_http_finalize_request(r, ngx_social_posts_answer_send(a));
}


ngx_int_t
ngx_social_posts_likers(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                        *fields;
    ngx_str_t                     *params;
    ngx_social_posts_react_ctx_t  *rc;

    rc = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_react_ctx_t));
    params = ngx_palloc(r->pool, 4 * sizeof(ngx_str_t));
    fields = ngx_social_json_owned(r, json_object());

    if (rc == NULL || params == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_parse_id(&ctx->params[0]) == NGX_ERROR) {
        return ngx_social_posts_not_found(r);
    }

    if (ngx_social_list_args(r, &rc->list, fields) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the list arguments are invalid",
                                     json_incref(fields));
    }

    params[0] = rc->list.fetch;
    params[1] = ctx->params[0];
    params[2] = rc->list.max_id;
    params[3] = rc->list.since_id;

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_posts_react_stmts[
                                   NGX_SOCIAL_POSTS_LIKERS],
                               params, 4, ngx_social_posts_likers_listed, rc);
}


static void
ngx_social_posts_likers_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_react_ctx_t  *rc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 1 && PQgetisnull(result->res, 0, 0)) {
        ngx_http_finalize_request(r, ngx_social_posts_not_found(r));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_list(r, &rc->list,
                                                      result->res, 0, 1));
}
