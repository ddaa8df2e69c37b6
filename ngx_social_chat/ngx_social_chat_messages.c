/*
 * Messages: POST and GET /v1/conversations/{id}/messages, and POST
 * /v1/conversations/{id}/read.
 *
 * A message is stored (and, with an Idempotency-Key, its answer with it)
 * by one statement; only after the commit is it published, to every
 * member's stream as message.created.  The other member of a direct
 * conversation also gets a "message" notification, unless one for that
 * conversation is still unread (a partial unique index makes that exact
 * under concurrency); groups do not notify.  Read markers only move
 * forward, and a move is published as conversation.read.
 */

#include "ngx_social_chat.h"


typedef struct {
    ngx_http_request_t         *request;
    ngx_social_pg_tx_t         *tx;
    ngx_str_t                   params[5];
    int64_t                     user;
    int64_t                     conversation;
    int64_t                     message;
    ngx_str_t                   stored[5]; /* the columns of chat_send */
    ngx_social_list_t           list;
} ngx_social_chat_msg_ctx_t;


static ngx_social_chat_msg_ctx_t *ngx_social_chat_msg_ctx(
    ngx_http_request_t *r, ngx_social_ctx_t *ctx);
static void ngx_social_chat_send_claimed(ngx_http_request_t *r,
    ngx_social_pg_tx_t *tx, void *data);
static void ngx_social_chat_stored(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_chat_deliver(ngx_http_request_t *r,
    ngx_social_chat_msg_ctx_t *mc);
static void ngx_social_chat_published(redisReply *reply, void *data);
static ngx_int_t ngx_social_chat_answer(ngx_http_request_t *r,
    ngx_social_chat_msg_ctx_t *mc);
static void ngx_social_chat_history_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_read_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_chat_publish(ngx_http_request_t *r,
    u_char *members, size_t len, ngx_str_t *event);


enum {
    NGX_SOCIAL_CHAT_SEND = 0,
    NGX_SOCIAL_CHAT_HISTORY,
    NGX_SOCIAL_CHAT_READ
};


static ngx_social_pg_stmt_t  ngx_social_chat_msg_stmts[] = {

    /*
     * $1 the sender, $2 the conversation, $3 the text, $4 the path, $5
     * the Idempotency-Key or NULL.  No row: not a member.  Columns: the
     * message, its event, the members, and the notification's user and
     * event (NULL when none was written).
     */
    { ngx_string("chat_send"),
      ngx_string("WITH me AS (SELECT c.id, c.kind FROM conversation_members m "
                 "JOIN conversations c ON c.id = m.conversation_id "
                 "WHERE m.conversation_id = $2 AND m.user_id = $1), "
                 "msg AS (INSERT INTO messages (conversation_id, sender_id, "
                 "text) SELECT id, $1, $3 FROM me RETURNING *), "
                 "j AS (SELECT msg.id, " NGX_SOCIAL_CHAT_MESSAGE("msg")
                 " AS body FROM msg), "
                 "idem AS (" NGX_SOCIAL_IDEM_STORE("$1", "$4", "$5", "201",
                     "(SELECT body::text FROM j)") "), "
                 "n AS (INSERT INTO notifications (user_id, type, actor_id, "
                 "conversation_id) SELECT m.user_id, 'message', $1, me.id "
                 "FROM me JOIN conversation_members m "
                 "ON m.conversation_id = me.id WHERE me.kind = 'direct' "
                 "AND m.user_id <> $1 AND EXISTS (SELECT 1 FROM msg) "
                 "ON CONFLICT (user_id, conversation_id) "
                 "WHERE type = 'message' AND NOT read DO NOTHING "
                 "RETURNING id, user_id, conversation_id, created_at) "
                 "SELECT j.body::text, json_build_object('event', "
                 "'message.created', 'data', j.body)::text, "
                 "(SELECT array_agg(user_id) FROM conversation_members "
                 "WHERE conversation_id = $2)::text, "
                 "(SELECT n.user_id::text FROM n), "
                 "(SELECT json_build_object('event', 'notification.created', "
                 "'data', json_build_object('id', n.id::text, "
                 "'type', 'message', 'actor', (SELECT json_build_object("
                 "'id', u.id::text, 'username', u.username, "
                 "'display_name', u.display_name) FROM users u "
                 "WHERE u.id = $1), "
                 "'conversation_id', n.conversation_id::text, "
                 "'created_at', to_char(n.created_at AT TIME ZONE 'UTC', "
                 "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                 "'read', false))::text FROM n) "
                 "FROM j"),
      0, 0 },

    /* $1 limit + 1, $2 the conversation, $3 the reader, $4, $5 cursors */
    { ngx_string("chat_history"),
      ngx_string("(SELECT m.id::text, " NGX_SOCIAL_CHAT_MESSAGE("m") "::text "
                 "FROM messages m WHERE m.conversation_id = $2 "
                 "AND EXISTS (SELECT 1 FROM conversation_members "
                 "WHERE conversation_id = $2 AND user_id = $3) "
                 "AND ($4::bigint IS NULL OR m.id < $4) "
                 "AND ($5::bigint IS NULL OR m.id > $5) "
                 "ORDER BY m.id DESC LIMIT $1) "
                 "UNION ALL SELECT NULL, NULL WHERE NOT EXISTS (SELECT 1 "
                 "FROM conversation_members WHERE conversation_id = $2 "
                 "AND user_id = $3)"),
      1, 0 },

    /*
     * $1 the reader, $2 the conversation, $3 the message.  Columns:
     * member, the message is in the conversation, the marker moved, the
     * members.  Reading also marks the conversation's message
     * notification read, so the next message notifies again.
     */
    { ngx_string("chat_read"),
      ngx_string("WITH ok AS (SELECT 1 FROM messages "
                 "WHERE id = $3 AND conversation_id = $2 AND EXISTS ("
                 "SELECT 1 FROM conversation_members "
                 "WHERE conversation_id = $2 AND user_id = $1)), "
                 "up AS (UPDATE conversation_members SET last_read_id = $3 "
                 "WHERE conversation_id = $2 AND user_id = $1 "
                 "AND last_read_id < $3 AND EXISTS (SELECT 1 FROM ok) "
                 "RETURNING 1), "
                 "nr AS (UPDATE notifications SET read = true "
                 "WHERE user_id = $1 AND type = 'message' "
                 "AND conversation_id = $2 AND NOT read "
                 "AND EXISTS (SELECT 1 FROM ok)) "
                 "SELECT EXISTS (SELECT 1 FROM conversation_members "
                 "WHERE conversation_id = $2 AND user_id = $1), "
                 "EXISTS (SELECT 1 FROM ok), EXISTS (SELECT 1 FROM up), "
                 "(SELECT array_agg(user_id) FROM conversation_members "
                 "WHERE conversation_id = $2)::text"),
      0, 0 }
};


ngx_int_t
ngx_social_chat_messages_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_chat_msg_stmts,
                                  sizeof(ngx_social_chat_msg_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_chat_send(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                     *fields;
    ngx_str_t                   key;
    ngx_social_pg_stmt_t       *stmt;
    ngx_social_chat_msg_ctx_t  *mc;

    mc = ngx_social_chat_msg_ctx(r, ctx);
    fields = ngx_social_json_owned(r, json_object());

    if (mc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (mc->conversation == NGX_ERROR) {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such conversation", NULL);
    }

    (void) ngx_social_field_string(ctx->body, "text", 1, 1, 10000, 0,
                                   &mc->params[2], fields);

    if (ngx_social_idem_key(r, &key) != NGX_OK) {
        json_object_set_new(fields, "Idempotency-Key",
                            json_string("must be 1 to 64 bytes"));
    }

    if (json_object_size(fields)) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the message is invalid",
                                     json_incref(fields));
    }

    mc->params[3] = r->uri;

    if (key.len) {
        mc->params[4] = key;
        return ngx_social_idem_claim(r, ctx, &key,
                                     ngx_social_chat_send_claimed, mc);
    }

    stmt = &ngx_social_chat_msg_stmts[NGX_SOCIAL_CHAT_SEND];

    return ngx_social_pg_query(r, NULL, stmt, mc->params, 5,
                               ngx_social_chat_stored, mc);
}


static void
ngx_social_chat_send_claimed(ngx_http_request_t *r, ngx_social_pg_tx_t *tx,
    void *data)
{
    ngx_social_chat_msg_ctx_t  *mc = data;

    ngx_social_pg_stmt_t  *stmt;

    mc->tx = tx;
    stmt = &ngx_social_chat_msg_stmts[NGX_SOCIAL_CHAT_SEND];

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, tx, stmt, mc->params, 5,
                            ngx_social_chat_stored, mc));
}


static void
ngx_social_chat_stored(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_chat_msg_ctx_t  *mc = data;

    ngx_uint_t   i;
    ngx_str_t   *v;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        /* not a member; an open transaction rolls back, unremembered */
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such conversation", NULL));
        return;
    }

    /* the result lives only during this call */

    for (i = 0; i < 5; i++) {
        v = &mc->stored[i];
        v->len = PQgetlength(result->res, 0, i);
        v->data = ngx_pnalloc(r->pool, v->len + 1);

        if (v->data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        v->len = ngx_social_json_compact(v->data,
                     (u_char *) PQgetvalue(result->res, 0, i), v->len)
                 - v->data;

        if (PQgetisnull(result->res, 0, i)) {
            v->data = NULL;
        }
    }

    if (mc->tx == NULL) {
        ngx_http_finalize_request(r, ngx_social_chat_deliver(r, mc));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_commit(mc->tx, ngx_social_chat_committed, mc));
}


static void
ngx_social_chat_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_msg_ctx_t  *mc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_chat_deliver(r, mc));
}


/*
 * Committed: the event goes out, and the answer waits until Redis has
 * published it, so that the events of one sender's messages are in the
 * order of its messages on every stream.  Should Redis fail, the message
 * is answered all the same (it is stored; the live copy is lost).
 */

static ngx_int_t
ngx_social_chat_deliver(ngx_http_request_t *r, ngx_social_chat_msg_ctx_t *mc)
{
    int64_t     *users;
    ngx_str_t   *v;
    ngx_uint_t   n;

    v = mc->stored;

    if (v[2].data == NULL) {
        return ngx_social_chat_answer(r, mc);
    }

    users = ngx_palloc(r->pool, (v[2].len / 2 + 1) * sizeof(int64_t));
    if (users == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_social_chat_parse_users(v[2].data, v[2].len, users);

    r->main->count++;

    if (ngx_social_events_publish_then(r, users, n, &v[1], 0,
                                       ngx_social_chat_published, mc)
        != NGX_OK)
    {
        r->main->count--;
        return ngx_social_chat_answer(r, mc);
    }

    return NGX_DONE;
}


static void
ngx_social_chat_published(redisReply *reply, void *data)
{
    ngx_social_chat_msg_ctx_t  *mc = data;

    ngx_http_finalize_request(mc->request,
                              ngx_social_chat_answer(mc->request, mc));
}


static ngx_int_t
ngx_social_chat_answer(ngx_http_request_t *r, ngx_social_chat_msg_ctx_t *mc)
{
    ngx_str_t  *v;

    v = mc->stored;

    if (v[3].data != NULL && v[4].data != NULL) {
        (void) ngx_social_chat_publish(r, v[3].data, v[3].len, &v[4]);
    }

    return ngx_social_send_json_text(r, NGX_HTTP_CREATED, &v[0]);
}


/* members: "{1,2,3}" (a PostgreSQL array) or "7" */

static ngx_int_t
ngx_social_chat_publish(ngx_http_request_t *r, u_char *members, size_t len,
    ngx_str_t *event)
{
    int64_t     *users;
    ngx_uint_t   n;

    users = ngx_palloc(r->pool, (len / 2 + 1) * sizeof(int64_t));
    if (users == NULL) {
        return NGX_ERROR;
    }

    n = ngx_social_chat_parse_users(members, len, users);

    return ngx_social_events_publish(r, users, n, event, 0);
}


/* the ids in "{1,2,3}" into users (room for len / 2 + 1) */

ngx_uint_t
ngx_social_chat_parse_users(u_char *p, size_t len, int64_t *users)
{
    u_char      *last, *start;
    ngx_uint_t   n;

    n = 0;
    last = p + len;

    while (p < last) {

        while (p < last && (*p < '0' || *p > '9')) {
            p++;
        }

        for (start = p; p < last && *p >= '0' && *p <= '9'; p++) {
            /* void */
        }

        if (p > start) {
            users[n++] = ngx_atoof(start, p - start);
        }
    }

    return n;
}


ngx_int_t
ngx_social_chat_history(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                     *fields;
    ngx_str_t                   params[5];
    ngx_social_pg_stmt_t       *stmt;
    ngx_social_chat_msg_ctx_t  *mc;

    mc = ngx_social_chat_msg_ctx(r, ctx);
    fields = ngx_social_json_owned(r, json_object());

    if (mc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (mc->conversation == NGX_ERROR) {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such conversation", NULL);
    }

    if (ngx_social_list_args(r, &mc->list, fields) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the list arguments are invalid",
                                     json_incref(fields));
    }

    params[0] = mc->list.fetch;
    params[1] = mc->params[1];
    params[2] = mc->params[0];
    params[3] = mc->list.max_id;
    params[4] = mc->list.since_id;

    stmt = &ngx_social_chat_msg_stmts[NGX_SOCIAL_CHAT_HISTORY];

    return ngx_social_pg_query(r, NULL, stmt, params, 5,
                               ngx_social_chat_history_done, mc);
}


static void
ngx_social_chat_history_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_msg_ctx_t  *mc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 1 && PQgetisnull(result->res, 0, 0)) {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such conversation", NULL));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_list(r, &mc->list,
                                                      result->res, 0, 1));
}


ngx_int_t
ngx_social_chat_read(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                     *v;
    ngx_str_t                   s;
    ngx_social_pg_stmt_t       *stmt;
    ngx_social_chat_msg_ctx_t  *mc;

    mc = ngx_social_chat_msg_ctx(r, ctx);
    if (mc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (mc->conversation == NGX_ERROR) {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such conversation", NULL);
    }

    v = json_object_get(ctx->body, "message_id");
    mc->message = NGX_ERROR;

    if (json_is_string(v)) {
        s.data = (u_char *) json_string_value(v);
        s.len = json_string_length(v);
        mc->message = ngx_social_parse_id(&s);

    } else if (json_is_integer(v) && json_integer_value(v) > 0) {
        mc->message = json_integer_value(v);
    }

    if (mc->message == NGX_ERROR) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the read marker is invalid",
                                     json_pack("{s:s}", "message_id",
                                               v ? "must be a message id"
                                                 : "is required"));
    }

    mc->params[2].data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (mc->params[2].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mc->params[2].len = ngx_sprintf(mc->params[2].data, "%L", mc->message)
                        - mc->params[2].data;

    stmt = &ngx_social_chat_msg_stmts[NGX_SOCIAL_CHAT_READ];

    return ngx_social_pg_query(r, NULL, stmt, mc->params, 3,
                               ngx_social_chat_read_done, mc);
}


static void
ngx_social_chat_read_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_msg_ctx_t  *mc = data;

    u_char     *p;
    PGresult   *res;
    ngx_str_t   event;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;

    if (PQgetvalue(res, 0, 0)[0] != 't') {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such conversation", NULL));
        return;
    }

    if (PQgetvalue(res, 0, 1)[0] != 't') {
        ngx_http_finalize_request(r, ngx_social_send_error(r, 422,
            "validation_failed", "the read marker is invalid",
            json_pack("{s:s}", "message_id",
                      "is not a message of this conversation")));
        return;
    }

    if (PQgetvalue(res, 0, 2)[0] == 't') {
        p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN + 128);
        if (p == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        event.data = p;
        event.len = ngx_sprintf(p, "{\"event\":\"conversation.read\","
                                "\"data\":{\"conversation_id\":\"%L\","
                                "\"user_id\":\"%L\",\"message_id\":\"%L\"}}",
                                mc->conversation, mc->user, mc->message)
                    - p;

        (void) ngx_social_chat_publish(r, (u_char *) PQgetvalue(res, 0, 3),
                                       PQgetlength(res, 0, 3), &event);
    }

    r->header_only = 1;
    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;

    ngx_http_finalize_request(r, ngx_http_send_header(r));
}


static ngx_social_chat_msg_ctx_t *
ngx_social_chat_msg_ctx(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    u_char                     *p;
    ngx_social_chat_msg_ctx_t  *mc;

    mc = ngx_pcalloc(r->pool, sizeof(ngx_social_chat_msg_ctx_t));
    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);

    if (mc == NULL || p == NULL) {
        return NULL;
    }

    mc->request = r;
    mc->user = ctx->user_id;
    mc->conversation = ngx_social_parse_id(&ctx->params[0]);

    mc->params[0].data = p;
    mc->params[0].len = ngx_sprintf(p, "%L", mc->user) - p;
    mc->params[1] = ctx->params[0];

    return mc;
}
