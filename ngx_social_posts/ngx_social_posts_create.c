/*
 * Writing posts: POST /v1/posts (with replies, mentions and
 * Idempotency-Key) and DELETE /v1/posts/{id}.
 *
 * A new post, its author's posts_count, the parent's replies_count and
 * the notifications (reply, mentions: at most 10 distinct @usernames,
 * never the author) are one statement; with an Idempotency-Key it runs in
 * the key's transaction, which also stores the answer.  After the commit
 * and before the answer the post goes into the cached feeds (see
 * ngx_social_posts_feed.c) and the parent's cached counters move; the
 * notifications go to the recipients' streams.
 *
 * A deleted post keeps its row (deleted_at) and is 404 everywhere; its
 * shares go with it, its notifications are deleted, the counters it was
 * part of move back.
 */

#include "ngx_social_posts.h"


typedef struct {
    ngx_social_ctx_t           *ctx;
    ngx_str_t                   key;       /* Idempotency-Key */
    ngx_social_pg_tx_t         *tx;
    ngx_str_t                   params[5];
    int64_t                     post;
    ngx_str_t                   json;
    ngx_str_t                   parent[NGX_SOCIAL_POSTS_NCHANGE];
    ngx_social_posts_after_t    after;
} ngx_social_posts_create_ctx_t;


/* DELETE: the deleted post, its parent, its original (each may be none) */
typedef struct {
    ngx_str_t                   change[3][NGX_SOCIAL_POSTS_NCHANGE];
    ngx_str_t                   sharers;
    ngx_social_posts_after_t    after;
} ngx_social_posts_delete_ctx_t;


static ngx_int_t ngx_social_posts_mentions(ngx_http_request_t *r,
    ngx_str_t *text, ngx_str_t *out);
static void ngx_social_posts_claimed(ngx_http_request_t *r,
    ngx_social_pg_tx_t *tx, void *data);
static void ngx_social_posts_created(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_posts_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_posts_publish_new(ngx_http_request_t *r,
    ngx_social_posts_create_ctx_t *pc);
static void ngx_social_posts_deleted(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


enum {
    NGX_SOCIAL_POSTS_CREATE = 0,
    NGX_SOCIAL_POSTS_DELETE
};


/* columns after the post's own in the answer of posts_create */
#define NGX_SOCIAL_POSTS_CREATE_FOLLOWERS  NGX_SOCIAL_POSTS_NCOLS
#define NGX_SOCIAL_POSTS_CREATE_NFOLLOWERS (NGX_SOCIAL_POSTS_NCOLS + 1)
#define NGX_SOCIAL_POSTS_CREATE_PARENT     (NGX_SOCIAL_POSTS_NCOLS + 2)
#define NGX_SOCIAL_POSTS_CREATE_EVENTS     (NGX_SOCIAL_POSTS_NCOLS + 8)


static ngx_social_pg_stmt_t  ngx_social_posts_create_stmts[] = {

    /*
     * $1 author, $2 text, $3 reply_to_id or NULL, $4 mentioned usernames
     * ('{"a","b"}', lower case), $5 the synchronous fan-out limit
     */
    { ngx_string("posts_create"),
      ngx_string("WITH parent AS (UPDATE posts p "
                 "SET replies_count = replies_count + 1, "
                 "version = version + 1 "
                 "WHERE $3::bigint IS NOT NULL AND p.id = $3 "
                 "AND p.deleted_at IS NULL "
                 "RETURNING p.author_id, " NGX_SOCIAL_POSTS_CHANGE("p") "), "
                 "ins AS (INSERT INTO posts (author_id, text, reply_to_id) "
                 "SELECT $1, $2, $3 "
                 "WHERE $3::bigint IS NULL OR EXISTS (SELECT 1 FROM parent) "
                 "RETURNING *), "
                 "pc AS (UPDATE users SET posts_count = posts_count + 1 "
                 "WHERE id = $1 AND EXISTS (SELECT 1 FROM ins) "
                 "RETURNING followers_count), "
                 "n AS (INSERT INTO notifications "
                 "(user_id, type, actor_id, post_id) "
                 "SELECT author_id, 'reply', $1, (SELECT id FROM ins) "
                 "FROM parent WHERE author_id <> $1 "
                 "UNION ALL "
                 "SELECT u.id, 'mention', $1, (SELECT id FROM ins) "
                 "FROM users u "
                 "WHERE lower(u.username) = ANY($4::text[]) AND u.id <> $1 "
                 "AND u.id NOT IN (SELECT author_id FROM parent) "
                 "AND EXISTS (SELECT 1 FROM ins) "
                 "RETURNING *) "
                 "SELECT " NGX_SOCIAL_POSTS_COLUMNS("NULL") ", "
                 "CASE WHEN pc.followers_count <= $5 THEN "
                 "(SELECT string_agg(follower_id::text, ',') FROM follows "
                 "WHERE followee_id = $1) END, "
                 "pc.followers_count, "
                 NGX_SOCIAL_POSTS_CHANGED("parent") ", "
                 "(SELECT string_agg(n.user_id::text || ' ' || "
                 NGX_SOCIAL_SQL_NOTIFICATION_EVENT("n", "a") ", E'\\n') "
                 "FROM n JOIN users a ON a.id = n.actor_id) "
                 "FROM ins p JOIN users u ON u.id = p.author_id "
                 "CROSS JOIN pc LEFT JOIN parent ON true"),
      0, 0 },

    /*
     * $1 post, $2 user, $3 the synchronous fan-out limit: the author (no
     * row: no such post), the post's change, its parent's, its original's,
     * the followers, their number, the users whose shares of it went
     * with it
     */
    { ngx_string("posts_delete"),
      ngx_string("WITH t AS (SELECT id, author_id FROM posts "
                 "WHERE id = $1 AND deleted_at IS NULL), "
                 "d AS (UPDATE posts p SET deleted_at = now(), "
                 "version = version + 1 "
                 "WHERE p.id = (SELECT id FROM t WHERE author_id = $2) "
                 "AND p.deleted_at IS NULL RETURNING p.*), "
                 "par AS (UPDATE posts p "
                 "SET replies_count = replies_count - 1, "
                 "version = version + 1 "
                 "WHERE p.id = (SELECT reply_to_id FROM d) "
                 "RETURNING " NGX_SOCIAL_POSTS_CHANGE("p") "), "
                 "orig AS (UPDATE posts p "
                 "SET shares_count = shares_count - 1, "
                 "version = version + 1 "
                 "WHERE p.id = (SELECT share_of_id FROM d) "
                 "RETURNING " NGX_SOCIAL_POSTS_CHANGE("p") "), "
                 "sh AS (UPDATE posts p SET deleted_at = now(), "
                 "version = version + 1 "
                 "WHERE p.share_of_id = (SELECT id FROM d) "
                 "AND p.deleted_at IS NULL RETURNING p.author_id), "
                 "shc AS (UPDATE users SET posts_count = posts_count - 1 "
                 "WHERE id IN (SELECT author_id FROM sh)), "
                 "uc AS (UPDATE users SET posts_count = posts_count - 1 "
                 "WHERE id = $2 AND EXISTS (SELECT 1 FROM d) "
                 "RETURNING followers_count), "
                 "nd AS (DELETE FROM notifications "
                 "WHERE post_id = (SELECT id FROM d)) "
                 "SELECT t.author_id::text, "
                 NGX_SOCIAL_POSTS_CHANGED("dc") ", "
                 NGX_SOCIAL_POSTS_CHANGED("par") ", "
                 NGX_SOCIAL_POSTS_CHANGED("orig") ", "
                 "CASE WHEN uc.followers_count <= $3 THEN "
                 "(SELECT string_agg(follower_id::text, ',') FROM follows "
                 "WHERE followee_id = $2) END, "
                 "uc.followers_count, "
                 "(SELECT string_agg(author_id::text, ',') FROM sh) "
                 "FROM t "
                 "LEFT JOIN (SELECT " NGX_SOCIAL_POSTS_CHANGE("d")
                 " FROM d) dc ON true "
                 "LEFT JOIN par ON true LEFT JOIN orig ON true "
                 "LEFT JOIN uc ON true"),
      0, 0 }
};


ngx_int_t
ngx_social_posts_create_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_posts_create_stmts,
                                  sizeof(ngx_social_posts_create_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_posts_create(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                         *fields;
    ngx_str_t                       text, reply_to;
    ngx_social_posts_create_ctx_t  *pc;

    pc = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_create_ctx_t));
    fields = ngx_social_json_owned(r, json_object());

    if (pc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->ctx = ctx;

    (void) ngx_social_field_string(ctx->body, "text", 1, 1,
                                   NGX_SOCIAL_POSTS_MAX_TEXT, 0, &text,
                                   fields);

    if (ngx_social_field_string(ctx->body, "reply_to_id", 0, 1, 19, 1,
                                &reply_to, fields)
        == NGX_OK
        && reply_to.data != NULL
        && ngx_social_parse_id(&reply_to) == NGX_ERROR)
    {
        json_object_set_new(fields, "reply_to_id",
                            json_string("is not an id"));
    }

    if (ngx_social_idem_key(r, &pc->key) != NGX_OK) {
        json_object_set_new(fields, "Idempotency-Key",
                            json_string("must be 1 to 64 bytes"));
    }

    if (json_object_size(fields)) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the post is invalid",
                                     json_incref(fields));
    }

    if (ngx_social_posts_id_str(r, ctx->user_id, &pc->params[0]) != NGX_OK
        || ngx_social_posts_mentions(r, &text, &pc->params[3]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->params[1] = text;
    pc->params[2] = reply_to;
    pc->params[4] = ngx_social_posts_sync_fanout();

    if (pc->key.len) {
        return ngx_social_idem_claim(r, ctx, &pc->key,
                                     ngx_social_posts_claimed, pc);
    }

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_posts_create_stmts[
                                   NGX_SOCIAL_POSTS_CREATE],
                               pc->params, 5, ngx_social_posts_created, pc);
}


/*
 * '{"alice","bob"}': the distinct @usernames of text (lower case), at
 * most 10; a mention is "@" and 3 to 30 of [A-Za-z0-9_], not preceded or
 * followed by such a character (so "bob@example.com" mentions nobody).
 */

static ngx_int_t
ngx_social_posts_mentions(ngx_http_request_t *r, ngx_str_t *text,
    ngx_str_t *out)
{
    u_char      *p, *last, *start, *q, *names[NGX_SOCIAL_POSTS_MAX_MENTIONS];
    size_t       len, lens[NGX_SOCIAL_POSTS_MAX_MENTIONS];
    ngx_uint_t   i, n;

#define ngx_social_posts_name_char(c)                                        \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')                \
     || ((c) >= '0' && (c) <= '9') || (c) == '_')

    n = 0;
    last = text->data + text->len;

    for (p = text->data; p < last && n < NGX_SOCIAL_POSTS_MAX_MENTIONS; p++)
    {
        if (*p != '@'
            || (p > text->data && ngx_social_posts_name_char(p[-1])))
        {
            continue;
        }

        start = p + 1;

        for (q = start; q < last && ngx_social_posts_name_char(*q); q++) {
            /* void */
        }

        len = q - start;
        p = q - 1;

        if (len < 3 || len > 30) {
            continue;
        }

        for (i = 0; i < n; i++) {
            if (lens[i] == len && ngx_strncasecmp(names[i], start, len) == 0)
            {
                break;
            }
        }

        if (i == n) {
            names[n] = start;
            lens[n++] = len;
        }
    }

#undef ngx_social_posts_name_char

    out->data = ngx_pnalloc(r->pool, 2 + n * 33);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        *p++ = i ? ',' : '"';

        if (i) {
            *p++ = '"';
        }

        ngx_strlow(p, names[i], lens[i]);
        p += lens[i];
        *p++ = '"';
    }

    *p++ = '}';
    out->len = p - out->data;

    return NGX_OK;
}


static void
ngx_social_posts_claimed(ngx_http_request_t *r, ngx_social_pg_tx_t *tx,
    void *data)
{
    ngx_social_posts_create_ctx_t  *pc = data;

    pc->tx = tx;

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, tx,
                            &ngx_social_posts_create_stmts[
                                NGX_SOCIAL_POSTS_CREATE],
                            pc->params, 5, ngx_social_posts_created, pc));
}


static void
ngx_social_posts_created(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_create_ctx_t  *pc = data;

    PGresult                 *res;
    ngx_social_posts_view_t  *v;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;

    if (PQntuples(res) == 0) {
        /* no such post to reply to: nothing was written (rolled back) */
        ngx_http_finalize_request(r, ngx_social_send_error(r, 422,
                                      "validation_failed",
                                      "the post is invalid",
                                      json_pack("{s:s}", "reply_to_id",
                                                "is not a post")));
        return;
    }

    v = ngx_social_posts_view_create(r, 0, 1);
    if (v == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    pc->post = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                         PQgetlength(res, 0, 0));
    v->ids[0] = pc->post;

    if (ngx_social_posts_view_result(v, res) != NGX_OK
        || v->json[0].len == 0)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    pc->json = v->json[0];

    if (ngx_social_posts_after(r, res, 0, NGX_SOCIAL_POSTS_CREATE_FOLLOWERS,
                               &pc->after)
        != NGX_OK
        || ngx_social_posts_copy(r->pool, res, 0,
                                 NGX_SOCIAL_POSTS_CREATE_PARENT,
                                 NGX_SOCIAL_POSTS_NCHANGE, pc->parent)
           == NGX_ERROR
        || ngx_social_posts_copy(r->pool, res, 0,
                                 NGX_SOCIAL_POSTS_CREATE_EVENTS, 1,
                                 &pc->after.events)
           == NGX_ERROR)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (pc->tx == NULL) {
        ngx_http_finalize_request(r, ngx_social_posts_publish_new(r, pc));
        return;
    }

    /* the answer is stored with the key in the same transaction */

    ngx_http_finalize_request(r,
        ngx_social_idem_commit(r, pc->tx, pc->ctx->user_id, &pc->key,
                               NGX_HTTP_CREATED, &pc->json,
                               ngx_social_posts_committed, pc));
}


static void
ngx_social_posts_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_create_ctx_t  *pc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_posts_publish_new(r, pc));
}


/* committed: the feeds and the parent's counters, then the answer */

static ngx_int_t
ngx_social_posts_publish_new(ngx_http_request_t *r,
    ngx_social_posts_create_ctx_t *pc)
{
    ngx_social_posts_answer_t  *a;

    a = ngx_social_posts_answer_create(r, NGX_HTTP_CREATED);
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    a->body = pc->json;

    if (pc->parent[0].data != NULL) {
        ngx_social_posts_answer_hold(a,
            ngx_social_posts_changed(r, pc->parent, 0, &ngx_social_posts_none,
                                     ngx_social_posts_answer_synced, a));
    }

    ngx_social_posts_after_run(r, &pc->after, pc->post, pc->ctx->user_id, 0,
                               a);

    return ngx_social_posts_answer_send(a);
}


ngx_int_t
ngx_social_posts_delete(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    int64_t     id;
    ngx_str_t  *params;

    if (ngx_social_posts_id_param(&ctx->params[0], &id) != NGX_OK) {
        return ngx_social_posts_not_found(r);
    }

    params = ngx_palloc(r->pool, 3 * sizeof(ngx_str_t));
    if (params == NULL
        || ngx_social_posts_id_str(r, ctx->user_id, &params[1]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->params[0];
    params[2] = ngx_social_posts_sync_fanout();

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_posts_create_stmts[
                                   NGX_SOCIAL_POSTS_DELETE],
                               params, 3, ngx_social_posts_deleted, ctx);
}


static void
ngx_social_posts_deleted(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_ctx_t  *ctx = data;

    PGresult                       *res;
    ngx_uint_t                      i;
    ngx_social_posts_answer_t      *a;
    ngx_social_posts_delete_ctx_t  *dc;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;

    if (PQntuples(res) == 0) {
        ngx_http_finalize_request(r, ngx_social_posts_not_found(r));
        return;
    }

    if (ngx_atoof((u_char *) PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0))
        != ctx->user_id)
    {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_FORBIDDEN, "forbidden",
                                      "only the author deletes a post",
                                      NULL));
        return;
    }

    dc = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_delete_ctx_t));
    a = ngx_social_posts_answer_create(r, NGX_HTTP_NO_CONTENT);

    if (dc == NULL || a == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    for (i = 0; i < 3; i++) {
        if (ngx_social_posts_copy(r->pool, res, 0,
                                  1 + i * NGX_SOCIAL_POSTS_NCHANGE,
                                  NGX_SOCIAL_POSTS_NCHANGE, dc->change[i])
            == NGX_ERROR)
        {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    if (ngx_social_posts_after(r, res, 0, 1 + 3 * NGX_SOCIAL_POSTS_NCHANGE,
                               &dc->after)
        != NGX_OK
        || ngx_social_posts_copy(r->pool, res, 0,
                                 3 + 3 * NGX_SOCIAL_POSTS_NCHANGE, 1,
                                 &dc->sharers)
           == NGX_ERROR)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (dc->change[0][0].data == NULL) {
        /* deleted meanwhile by another request of the author: done */
        ngx_http_finalize_request(r, ngx_social_send_no_content(r));
        return;
    }

    /*
     * a deleted share changes its author's flags on the original: dropped,
     * to be read again
     */
    for (i = 0; i < 3; i++) {
        if (dc->change[i][0].data != NULL) {
            ngx_social_posts_answer_hold(a,
                ngx_social_posts_changed(r, dc->change[i],
                                         i == 2 ? ctx->user_id : 0,
                                         &ngx_social_posts_none,
                                         ngx_social_posts_answer_synced, a));
        }
    }

    if (dc->sharers.data != NULL) {
        ngx_social_posts_answer_hold(a,
            ngx_social_posts_forget_users(r, &dc->sharers,
                                          ngx_social_posts_answer_synced, a));
    }

    ngx_social_posts_after_run(r, &dc->after,
                               ngx_atoof(dc->change[0][0].data,
                                         dc->change[0][0].len),
                               ctx->user_id, 1, a);

    ngx_http_finalize_request(r, ngx_social_posts_answer_send(a));
}
