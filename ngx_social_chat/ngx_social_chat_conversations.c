/*
 * Conversations: POST /v1/conversations, GET /v1/conversations (mine, the
 * most recent activity first), GET /v1/conversations/{id}, POST
 * /v1/conversations/{id}/members and DELETE
 * /v1/conversations/{id}/members/{user}.
 *
 * A pair has one direct conversation: its "low:high" key is unique, so of
 * two simultaneous creations one inserts and the other finds that row.
 * Membership changes of a conversation lock its row first, so the limit
 * of 500 members and the rule that a group keeps an admin hold under
 * concurrency.  A non-member gets 404 for everything, as if the
 * conversation did not exist.
 */

#include "ngx_social_chat.h"


#define NGX_SOCIAL_CHAT_MAX_MEMBERS  500


typedef struct {
    ngx_social_pg_tx_t         *tx;
    int64_t                     user;
    int64_t                     conversation;
    int64_t                     target;
    ngx_str_t                   params[3];
    ngx_uint_t                  created;
} ngx_social_chat_conv_ctx_t;


static ngx_int_t ngx_social_chat_create_group(ngx_http_request_t *r,
    ngx_social_chat_conv_ctx_t *cc, ngx_str_t *title, ngx_str_t *ids);
static void ngx_social_chat_created(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_direct_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_conversation_sent(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_social_chat_conv_ctx_t *ngx_social_chat_conv_ctx(
    ngx_http_request_t *r, ngx_social_ctx_t *ctx, ngx_uint_t tx);
static ngx_int_t ngx_social_chat_lock(ngx_http_request_t *r,
    ngx_social_chat_conv_ctx_t *cc, ngx_social_pg_handler_pt handler);
static ngx_int_t ngx_social_chat_locked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, ngx_uint_t remove, ngx_int_t *rc);
static void ngx_social_chat_add_locked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_added(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_members_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_remove_locked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_chat_removed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_chat_unknown_users(ngx_http_request_t *r,
    const char *field);
static ngx_int_t ngx_social_chat_not_found(ngx_http_request_t *r);


/* the conversation c as JSON text, seen by the member me */
#define NGX_SOCIAL_CHAT_CONVERSATION                                         \
    "json_build_object('id', c.id::text, 'kind', c.kind, "                  \
    "'title', c.title, 'members', (SELECT json_agg(json_build_object("      \
    "'id', u.id::text, 'username', u.username, "                            \
    "'display_name', u.display_name, 'role', cm.role) "                     \
    "ORDER BY cm.joined_at, cm.user_id) FROM conversation_members cm "      \
    "JOIN users u ON u.id = cm.user_id WHERE cm.conversation_id = c.id), "  \
    "'last_message', (SELECT " NGX_SOCIAL_CHAT_MESSAGE("lm")                \
    " FROM messages lm WHERE lm.conversation_id = c.id "                    \
    "ORDER BY lm.id DESC LIMIT 1), "                                        \
    "'unread_count', (SELECT count(*) FROM messages um "                    \
    "WHERE um.conversation_id = c.id AND um.id > me.last_read_id "          \
    "AND um.sender_id <> me.user_id), "                                     \
    "'created_at', to_char(c.created_at AT TIME ZONE 'UTC', "               \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))::text"


enum {
    NGX_SOCIAL_CHAT_GET = 0,
    NGX_SOCIAL_CHAT_LIST,
    NGX_SOCIAL_CHAT_DIRECT,
    NGX_SOCIAL_CHAT_DIRECT_FIND,
    NGX_SOCIAL_CHAT_GROUP,
    NGX_SOCIAL_CHAT_LOCK,
    NGX_SOCIAL_CHAT_ADD,
    NGX_SOCIAL_CHAT_REMOVE
};

#define ngx_social_chat_stmt(i)  &ngx_social_chat_conv_stmts[i]


static ngx_social_pg_stmt_t  ngx_social_chat_conv_stmts[] = {

    /* $1 the viewer, $2 the conversation */
    { ngx_string("chat_conversation"),
      ngx_string("SELECT " NGX_SOCIAL_CHAT_CONVERSATION " "
                 "FROM conversations c JOIN conversation_members me "
                 "ON me.conversation_id = c.id AND me.user_id = $1 "
                 "WHERE c.id = $2"),
      1, 0 },

    /*
     * $1 limit + 1, $2 the viewer, $3 max_id, $4 since_id.  The activity
     * is the newest message's id, or the creation's: read from the
     * index, so that sending a message never updates (and locks) the
     * conversation's row.
     */
    { ngx_string("chat_conversations"),
      ngx_string("SELECT c.act::text, " NGX_SOCIAL_CHAT_CONVERSATION " "
                 "FROM conversation_members me JOIN LATERAL (SELECT cv.*, "
                 "COALESCE((SELECT max(m.id) FROM messages m "
                 "WHERE m.conversation_id = cv.id), cv.last_activity_id) "
                 "AS act FROM conversations cv "
                 "WHERE cv.id = me.conversation_id) c ON true "
                 "WHERE me.user_id = $2 "
                 "AND ($3::bigint IS NULL OR c.act < $3) "
                 "AND ($4::bigint IS NULL OR c.act > $4) "
                 "ORDER BY c.act DESC LIMIT $1"),
      1, 0 },

    /* $1 the creator, $2 the other, $3 "low:high"; no row: it exists */
    { ngx_string("chat_direct"),
      ngx_string("WITH c AS (INSERT INTO conversations (kind, direct_key) "
                 "VALUES ('direct', $3) ON CONFLICT (direct_key) "
                 "DO NOTHING RETURNING id), "
                 "m AS (INSERT INTO conversation_members "
                 "(conversation_id, user_id) SELECT c.id, v.u FROM c, "
                 "(VALUES ($1::bigint), ($2::bigint)) v (u)) "
                 "SELECT id FROM c"),
      0, 0 },

    /* a new statement: it sees the row a concurrent creation committed */
    { ngx_string("chat_direct_find"),
      ngx_string("SELECT id FROM conversations WHERE direct_key = $1"),
      1, 0 },

    /* $1 the creator (admin), $2 the title, $3 the other members */
    { ngx_string("chat_group"),
      ngx_string("WITH c AS (INSERT INTO conversations (kind, title) "
                 "VALUES ('group', $2) RETURNING id), "
                 "m AS (INSERT INTO conversation_members "
                 "(conversation_id, user_id, role) "
                 "SELECT c.id, $1, 'admin' FROM c UNION ALL "
                 "SELECT c.id, u, 'member' FROM c, unnest($3::bigint[]) u) "
                 "SELECT id FROM c"),
      0, 0 },

    /* in a transaction: $1 the caller, $2 the conversation, $3 a user */
    { ngx_string("chat_lock"),
      ngx_string("SELECT c.kind, me.role, EXISTS (SELECT 1 "
                 "FROM conversation_members t WHERE t.conversation_id = c.id "
                 "AND t.user_id = $3) "
                 "FROM conversations c JOIN conversation_members me "
                 "ON me.conversation_id = c.id AND me.user_id = $1 "
                 "WHERE c.id = $2 FOR UPDATE OF c"),
      0, 0 },

    /* after the lock: $1 the conversation, $2 users; the new total */
    { ngx_string("chat_add"),
      ngx_string("WITH ins AS (INSERT INTO conversation_members "
                 "(conversation_id, user_id) SELECT $1, u "
                 "FROM unnest($2::bigint[]) u ON CONFLICT DO NOTHING "
                 "RETURNING 1) "
                 "SELECT (SELECT count(*) FROM conversation_members "
                 "WHERE conversation_id = $1) + (SELECT count(*) FROM ins)"),
      0, 0 },

    /*
     * after the lock: $1 the conversation, $2 the user leaving.  When the
     * last admin leaves, the longest-standing member becomes admin; when
     * the last member leaves, the conversation goes.
     */
    { ngx_string("chat_remove"),
      ngx_string("WITH del AS (DELETE FROM conversation_members "
                 "WHERE conversation_id = $1 AND user_id = $2 "
                 "RETURNING role), "
                 "rest AS (SELECT user_id, role, joined_at "
                 "FROM conversation_members "
                 "WHERE conversation_id = $1 AND user_id <> $2), "
                 "heir AS (UPDATE conversation_members SET role = 'admin' "
                 "WHERE conversation_id = $1 AND user_id = (SELECT user_id "
                 "FROM rest ORDER BY joined_at, user_id LIMIT 1) "
                 "AND EXISTS (SELECT 1 FROM del WHERE role = 'admin') "
                 "AND NOT EXISTS (SELECT 1 FROM rest WHERE role = 'admin')), "
                 "gone AS (DELETE FROM conversations WHERE id = $1 "
                 "AND EXISTS (SELECT 1 FROM del) "
                 "AND NOT EXISTS (SELECT 1 FROM rest)) "
                 "SELECT count(*) FROM del"),
      0, 0 }
};


ngx_int_t
ngx_social_chat_conversations_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_chat_conv_stmts,
                                  sizeof(ngx_social_chat_conv_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


/*
 * The ids of a JSON array ("123" or 123) as a PostgreSQL array literal,
 * without duplicates and without self.  NGX_DECLINED: *reason says why.
 */

ngx_int_t
ngx_social_chat_ids(ngx_http_request_t *r, json_t *array, int64_t self,
    ngx_uint_t max, ngx_str_t *out, ngx_uint_t *n, const char **reason)
{
    u_char      *p;
    size_t       i, j, size;
    json_t      *v;
    int64_t     *ids, id;
    ngx_str_t    s;

    *n = 0;

    if (!json_is_array(array)) {
        *reason = "must be an array of user ids";
        return NGX_DECLINED;
    }

    size = json_array_size(array);

    if (size > max) {
        *reason = "names too many users";
        return NGX_DECLINED;
    }

    ids = ngx_palloc(r->pool, (size + 1) * sizeof(int64_t));
    out->data = ngx_pnalloc(r->pool, (size + 1) * (NGX_INT64_LEN + 1) + 2);

    if (ids == NULL || out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;
    *p++ = '{';

    json_array_foreach(array, i, v) {

        if (json_is_string(v)) {
            s.data = (u_char *) json_string_value(v);
            s.len = json_string_length(v);
            id = ngx_social_parse_id(&s);

        } else if (json_is_integer(v) && json_integer_value(v) > 0) {
            id = json_integer_value(v);

        } else {
            id = NGX_ERROR;
        }

        if (id == NGX_ERROR) {
            *reason = "must be an array of user ids";
            return NGX_DECLINED;
        }

        if (id == self) {
            continue;
        }

        for (j = 0; j < *n; j++) {
            if (ids[j] == id) {
                break;
            }
        }

        if (j < *n) {
            continue;
        }

        if (*n) {
            *p++ = ',';
        }

        ids[(*n)++] = id;
        p = ngx_sprintf(p, "%L", id);
    }

    *p++ = '}';
    out->len = p - out->data;

    return NGX_OK;
}


ngx_int_t
ngx_social_chat_create(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    u_char                      *p;
    json_t                      *fields;
    int64_t                      other;
    ngx_str_t                    title, ids;
    ngx_uint_t                   n;
    const char                  *reason;
    ngx_social_chat_conv_ctx_t  *cc;

    cc = ngx_social_chat_conv_ctx(r, ctx, 0);
    fields = ngx_social_json_owned(r, json_object());

    if (cc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_social_field_string(ctx->body, "title", 0, 1, 200, 0, &title,
                                   fields);

    switch (ngx_social_chat_ids(r, json_object_get(ctx->body, "member_ids"),
                                ctx->user_id, NGX_SOCIAL_CHAT_MAX_MEMBERS,
                                &ids, &n, &reason))
    {
    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_DECLINED:
        json_object_set_new(fields, "member_ids", json_string(reason));
        break;

    default:
        if (n == 0) {
            json_object_set_new(fields, "member_ids",
                                json_string("must name another user"));

        } else if (n >= NGX_SOCIAL_CHAT_MAX_MEMBERS) {
            json_object_set_new(fields, "member_ids",
                                json_string("a conversation has at most "
                                            "500 members"));
        }
    }

    if (json_object_size(fields)) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the conversation is invalid",
                                     json_incref(fields));
    }

    if (n > 1 || title.data != NULL) {
        return ngx_social_chat_create_group(r, cc, &title, &ids);
    }

    /* the direct conversation of the pair: "low:high" */

    other = ngx_atoof(ids.data + 1, ids.len - 2);

    p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN + 2);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cc->params[1].data = ids.data + 1;
    cc->params[1].len = ids.len - 2;
    cc->params[2].data = p;
    cc->params[2].len = ngx_sprintf(p, "%L:%L", ngx_min(other, cc->user),
                                    ngx_max(other, cc->user)) - p;

    return ngx_social_pg_query(r, NULL,
                               ngx_social_chat_stmt(NGX_SOCIAL_CHAT_DIRECT),
                               cc->params, 3, ngx_social_chat_created, cc);
}


static ngx_int_t
ngx_social_chat_create_group(ngx_http_request_t *r,
    ngx_social_chat_conv_ctx_t *cc, ngx_str_t *title, ngx_str_t *ids)
{
    cc->params[1] = *title;
    cc->params[2] = *ids;

    return ngx_social_pg_query(r, NULL,
                               ngx_social_chat_stmt(NGX_SOCIAL_CHAT_GROUP),
                               cc->params, 3, ngx_social_chat_created, cc);
}


static void
ngx_social_chat_created(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_chat_conv_ctx_t  *cc = data;

    if (result->status == NGX_SOCIAL_PG_SQL_ERROR
        && ngx_strcmp(result->sqlstate, "23503") == 0)
    {
        ngx_http_finalize_request(r,
            ngx_social_chat_unknown_users(r, "member_ids"));
        return;
    }

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        /* the pair's direct conversation exists (maybe just committed) */
        ngx_http_finalize_request(r,
            ngx_social_pg_query(r, NULL,
                ngx_social_chat_stmt(NGX_SOCIAL_CHAT_DIRECT_FIND),
                &cc->params[2], 1, ngx_social_chat_direct_found, cc));
        return;
    }

    cc->created = 1;
    cc->conversation = ngx_atoof((u_char *) PQgetvalue(result->res, 0, 0),
                                 PQgetlength(result->res, 0, 0));

    ngx_http_finalize_request(r,
        ngx_social_chat_send_conversation(r, cc->user, cc->conversation,
                                          NGX_HTTP_CREATED));
}


static void
ngx_social_chat_direct_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_conv_ctx_t  *cc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) != 1) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cc->conversation = ngx_atoof((u_char *) PQgetvalue(result->res, 0, 0),
                                 PQgetlength(result->res, 0, 0));

    ngx_http_finalize_request(r,
        ngx_social_chat_send_conversation(r, cc->user, cc->conversation,
                                          NGX_HTTP_OK));
}


/* the conversation as the user sees it, answered with status (or 404) */

ngx_int_t
ngx_social_chat_send_conversation(ngx_http_request_t *r, int64_t user,
    int64_t conversation, ngx_uint_t status)
{
    u_char     *p;
    ngx_str_t  *params;

    params = ngx_palloc(r->pool, 2 * sizeof(ngx_str_t));
    p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN);

    if (params == NULL || p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0].data = p;
    params[0].len = ngx_sprintf(p, "%L", user) - p;
    p += params[0].len;
    params[1].data = p;
    params[1].len = ngx_sprintf(p, "%L", conversation) - p;

    r->headers_out.status = status;

    return ngx_social_pg_query(r, NULL,
                               ngx_social_chat_stmt(NGX_SOCIAL_CHAT_GET),
                               params, 2, ngx_social_chat_conversation_sent,
                               NULL);
}


static void
ngx_social_chat_conversation_sent(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        ngx_http_finalize_request(r, ngx_social_chat_not_found(r));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_send_json(r, r->headers_out.status, result->res, 0, 0));
}


ngx_int_t
ngx_social_chat_get(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    int64_t  id;

    id = ngx_social_parse_id(&ctx->params[0]);
    if (id == NGX_ERROR) {
        return ngx_social_chat_not_found(r);
    }

    return ngx_social_chat_send_conversation(r, ctx->user_id, id,
                                             NGX_HTTP_OK);
}


ngx_int_t
ngx_social_chat_list(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                      *fields;
    ngx_str_t                    params[4];
    ngx_social_list_t           *list;
    ngx_social_chat_conv_ctx_t  *cc;

    cc = ngx_social_chat_conv_ctx(r, ctx, 0);
    list = ngx_palloc(r->pool, sizeof(ngx_social_list_t));
    fields = ngx_social_json_owned(r, json_object());

    if (cc == NULL || list == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_list_args(r, list, fields) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the list arguments are invalid",
                                     json_incref(fields));
    }

    params[0] = list->fetch;
    params[1] = cc->params[0];
    params[2] = list->max_id;
    params[3] = list->since_id;

    return ngx_social_pg_query(r, NULL,
                               ngx_social_chat_stmt(NGX_SOCIAL_CHAT_LIST),
                               params, 4, ngx_social_chat_listed, list);
}


static void
ngx_social_chat_listed(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_list_t  *list = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_list(r, list, result->res,
                                                      0, 1));
}


ngx_int_t
ngx_social_chat_add_members(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_uint_t                   n;
    const char                  *reason;
    ngx_social_chat_conv_ctx_t  *cc;

    cc = ngx_social_chat_conv_ctx(r, ctx, 1);
    if (cc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (cc->conversation == NGX_ERROR) {
        return ngx_social_chat_not_found(r);
    }

    switch (ngx_social_chat_ids(r, json_object_get(ctx->body, "user_ids"),
                                0, NGX_SOCIAL_CHAT_MAX_MEMBERS, &cc->params[2],
                                &n, &reason))
    {
    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_DECLINED:
        break;

    default:
        if (n > 0) {
            return ngx_social_chat_lock(r, cc, ngx_social_chat_add_locked);
        }

        reason = "must name at least one user";
    }

    return ngx_social_send_error(r, 422, "validation_failed",
                                 "the members are invalid",
                                 json_pack("{s:s}", "user_ids", reason));
}


static void
ngx_social_chat_add_locked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_conv_ctx_t  *cc = data;

    ngx_int_t  rc;
    ngx_str_t  params[2];

    if (ngx_social_chat_locked(r, result, 0, &rc) != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    params[0] = cc->params[1];
    params[1] = cc->params[2];

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, cc->tx,
                            ngx_social_chat_stmt(NGX_SOCIAL_CHAT_ADD),
                            params, 2, ngx_social_chat_added, cc));
}


static void
ngx_social_chat_added(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_chat_conv_ctx_t  *cc = data;

    ngx_int_t  total;

    if (result->status == NGX_SOCIAL_PG_SQL_ERROR
        && ngx_strcmp(result->sqlstate, "23503") == 0)
    {
        ngx_http_finalize_request(r,
            ngx_social_chat_unknown_users(r, "user_ids"));
        return;
    }

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    total = ngx_atoi((u_char *) PQgetvalue(result->res, 0, 0),
                     PQgetlength(result->res, 0, 0));

    if (total > NGX_SOCIAL_CHAT_MAX_MEMBERS) {
        /* not committed: the transaction rolls back with the request */
        ngx_http_finalize_request(r, ngx_social_send_error(r, 422,
            "validation_failed", "a conversation has at most 500 members",
            json_pack("{s:s}", "user_ids", "would pass 500 members")));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_commit(cc->tx, ngx_social_chat_members_committed, cc));
}


static void
ngx_social_chat_members_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_conv_ctx_t  *cc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (cc->target) {
        r->header_only = 1;
        r->headers_out.status = NGX_HTTP_NO_CONTENT;
        r->headers_out.content_length_n = 0;
        ngx_http_finalize_request(r, ngx_http_send_header(r));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_chat_send_conversation(r, cc->user, cc->conversation,
                                          NGX_HTTP_OK));
}


ngx_int_t
ngx_social_chat_remove_member(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_social_chat_conv_ctx_t  *cc;

    cc = ngx_social_chat_conv_ctx(r, ctx, 1);
    if (cc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cc->target = ngx_social_parse_id(&ctx->params[1]);

    if (cc->conversation == NGX_ERROR || cc->target == NGX_ERROR) {
        return ngx_social_chat_not_found(r);
    }

    cc->params[2] = ctx->params[1];

    return ngx_social_chat_lock(r, cc, ngx_social_chat_remove_locked);
}


static void
ngx_social_chat_remove_locked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_conv_ctx_t  *cc = data;

    ngx_int_t  rc;
    ngx_str_t  params[2];

    if (ngx_social_chat_locked(r, result, 1, &rc) != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (cc->target != cc->user
        && ngx_strcmp(PQgetvalue(result->res, 0, 1), "admin") != 0)
    {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
            NGX_HTTP_FORBIDDEN, "forbidden",
            "only an admin removes other members", NULL));
        return;
    }

    if (PQgetvalue(result->res, 0, 2)[0] != 't') {
        ngx_http_finalize_request(r, ngx_social_chat_not_found(r));
        return;
    }

    params[0] = cc->params[1];
    params[1] = cc->params[2];

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, cc->tx,
                            ngx_social_chat_stmt(NGX_SOCIAL_CHAT_REMOVE),
                            params, 2, ngx_social_chat_removed, cc));
}


static void
ngx_social_chat_removed(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_chat_conv_ctx_t  *cc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQgetvalue(result->res, 0, 0)[0] == '0') {
        ngx_http_finalize_request(r, ngx_social_chat_not_found(r));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_commit(cc->tx, ngx_social_chat_members_committed, cc));
}


static ngx_social_chat_conv_ctx_t *
ngx_social_chat_conv_ctx(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_uint_t tx)
{
    u_char                      *p;
    ngx_social_chat_conv_ctx_t  *cc;

    cc = ngx_pcalloc(r->pool, sizeof(ngx_social_chat_conv_ctx_t));
    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);

    if (cc == NULL || p == NULL) {
        return NULL;
    }

    if (tx) {
        cc->tx = ngx_social_pg_tx(r);
        if (cc->tx == NULL) {
            return NULL;
        }

        cc->conversation = ngx_social_parse_id(&ctx->params[0]);
        cc->params[1] = ctx->params[0];
    }

    cc->user = ctx->user_id;
    cc->params[0].data = p;
    cc->params[0].len = ngx_sprintf(p, "%L", cc->user) - p;

    return cc;
}


/* the conversation's row, locked, with the caller's role; $3 the target */

static ngx_int_t
ngx_social_chat_lock(ngx_http_request_t *r, ngx_social_chat_conv_ctx_t *cc,
    ngx_social_pg_handler_pt handler)
{
    ngx_str_t  params[3];

    params[0] = cc->params[0];
    params[1] = cc->params[1];
    params[2] = cc->target ? cc->params[2] : cc->params[0];

    return ngx_social_pg_query(r, cc->tx,
                               ngx_social_chat_stmt(NGX_SOCIAL_CHAT_LOCK),
                               params, 3, handler, cc);
}


/*
 * NGX_OK: the caller may change the members of this group; NGX_DECLINED:
 * an answer was sent, *rc is what to finalize with.
 */

static ngx_int_t
ngx_social_chat_locked(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    ngx_uint_t remove, ngx_int_t *rc)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        *rc = ngx_social_pg_send_error(r, result);
        return NGX_DECLINED;
    }

    if (PQntuples(result->res) == 0) {
        *rc = ngx_social_chat_not_found(r);
        return NGX_DECLINED;
    }

    if (ngx_strcmp(PQgetvalue(result->res, 0, 0), "direct") == 0) {
        *rc = ngx_social_send_error(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                    "a direct conversation keeps its two "
                                    "members", NULL);
        return NGX_DECLINED;
    }

    if (!remove && ngx_strcmp(PQgetvalue(result->res, 0, 1), "admin") != 0) {
        *rc = ngx_social_send_error(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                    "only an admin adds members", NULL);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_chat_unknown_users(ngx_http_request_t *r, const char *field)
{
    return ngx_social_send_error(r, 422, "validation_failed",
                                 "a user does not exist",
                                 json_pack("{s:s}", field,
                                           "names a user that does not "
                                           "exist"));
}


static ngx_int_t
ngx_social_chat_not_found(ngx_http_request_t *r)
{
    return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                 "no such conversation", NULL);
}
