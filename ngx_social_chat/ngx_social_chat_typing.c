/*
 * Typing indicators from WebSocket clients: at most one per user and
 * conversation each social_stream_typing_interval (a Redis key, so
 * across devices, workers and nodes), then, if the typist is a member,
 * an ephemeral typing event to the conversation's other members.
 * Nothing is stored.
 */

#include "ngx_social_chat.h"


typedef struct {
    int64_t                       user;
    int64_t                       conversation;
} ngx_social_chat_typing_t;


static void ngx_social_chat_typing_allowed(redisReply *reply, void *data);
static void ngx_social_chat_typing_members(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


static ngx_social_pg_stmt_t  ngx_social_chat_typing_stmt =
    /* $1 the typist, $2 the conversation: the other members, if a member */
    { ngx_string("chat_typing"),
      ngx_string("SELECT array_agg(m.user_id)::text "
                 "FROM conversation_members m "
                 "WHERE m.conversation_id = $2 AND m.user_id <> $1 "
                 "AND EXISTS (SELECT 1 FROM conversation_members "
                 "WHERE conversation_id = $2 AND user_id = $1)"),
      1, 0 };


ngx_int_t
ngx_social_chat_typing_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, &ngx_social_chat_typing_stmt, 1);
}


void
ngx_social_chat_typing(ngx_social_chat_stream_t *s, int64_t conversation)
{
    u_char                     key[sizeof("social:typing::")
                                   + 2 * NGX_INT64_LEN];
    u_char                     px[NGX_INT_T_LEN];
    size_t                     len[6];
    const char                *argv[6];
    ngx_social_redis_argv_t    cmd;
    ngx_social_chat_typing_t  *t;

    t = ngx_alloc(sizeof(ngx_social_chat_typing_t), s->connection->log);
    if (t == NULL) {
        return;
    }

    t->user = s->user_id;
    t->conversation = conversation;

    argv[0] = "SET";
    argv[1] = (const char *) key;
    len[1] = ngx_sprintf(key, "social:typing:%L:%L", t->user, conversation)
             - key;
    argv[2] = "1";
    argv[3] = "PX";
    argv[4] = (const char *) px;
    len[4] = ngx_sprintf(px, "%M", ngx_social_chat_conf->typing_interval)
             - px;
    argv[5] = "NX";

    len[0] = 3;
    len[2] = 1;
    len[3] = 2;
    len[5] = 2;

    cmd.argc = 6;
    cmd.argv = argv;
    cmd.argvlen = len;

    if (ngx_social_chat_conf->typing_interval == 0) {
        cmd.argc = 3;
    }

    if (ngx_social_redis_command(NULL, &cmd, ngx_social_chat_typing_allowed,
                                 t)
        != NGX_OK)
    {
        ngx_free(t);
    }
}


static void
ngx_social_chat_typing_allowed(redisReply *reply, void *data)
{
    ngx_social_chat_typing_t  *t = data;

    u_char     buf[2][NGX_INT64_LEN];
    ngx_str_t  params[2];

    if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
        /* throttled (nil), or Redis is away */
        ngx_free(t);
        return;
    }

    params[0].data = buf[0];
    params[0].len = ngx_sprintf(buf[0], "%L", t->user) - buf[0];
    params[1].data = buf[1];
    params[1].len = ngx_sprintf(buf[1], "%L", t->conversation) - buf[1];

    if (ngx_social_pg_run(&ngx_social_chat_typing_stmt, params, 2,
                          ngx_social_chat_typing_members, t)
        != NGX_OK)
    {
        ngx_free(t);
    }
}


static void
ngx_social_chat_typing_members(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_chat_typing_t  *t = data;

    u_char      *p;
    u_char       json[sizeof("{\"event\":\"typing\",\"data\":{"
                             "\"conversation_id\":\"\",\"user_id\":\"\"}}")
                      + 2 * NGX_INT64_LEN];
    size_t       len;
    int64_t     *users;
    ngx_str_t    event;
    ngx_uint_t   n;

    if (result->status != NGX_SOCIAL_PG_OK || PQntuples(result->res) != 1
        || PQgetisnull(result->res, 0, 0))
    {
        /* not a member (or alone): nobody to tell */
        ngx_free(t);
        return;
    }

    p = (u_char *) PQgetvalue(result->res, 0, 0);
    len = PQgetlength(result->res, 0, 0);

    users = ngx_alloc((len / 2 + 1) * sizeof(int64_t), ngx_cycle->log);
    if (users == NULL) {
        ngx_free(t);
        return;
    }

    n = ngx_social_chat_parse_users(p, len, users);

    event.data = json;
    event.len = ngx_sprintf(json, "{\"event\":\"typing\",\"data\":{"
                            "\"conversation_id\":\"%L\",\"user_id\":\"%L\"}}",
                            t->conversation, t->user)
                - json;

    (void) ngx_social_events_publish(NULL, users, n, &event, 1);

    ngx_free(users);
    ngx_free(t);
}
