/*
 * Events of users' live streams.  Any module publishes them; the chat
 * module serves them on GET /v1/stream.
 *
 * A stored event of a user is appended to the Redis stream
 * "social:ev:<user id>" (capped, for replay; fields "p", the id of the
 * user's previous event or "0-0", and "e", the event's JSON) and then
 * published on the channel of the same name as "<entry id> <JSON>", so
 * that whichever worker on whichever node holds one of the user's streams
 * receives it.  "social:evl:<user id>" keeps the id of the user's last
 * event: with the "p" chain it tells a reader whether entries it wants
 * were trimmed.  An ephemeral event (typing) is only published, as
 * "- <JSON>".
 *
 * Publishing comes after the commit of what the event tells and never
 * holds up the answer: a Redis failure loses the live copy only; the
 * truth stays in PostgreSQL.
 */

#include "ngx_social_core_module.h"


#define NGX_SOCIAL_EVENTS_BATCH  256       /* users per script call */


static ngx_int_t ngx_social_events_send(ngx_http_request_t *r,
    int64_t *users, ngx_uint_t n, ngx_str_t *event, ngx_uint_t ephemeral,
    ngx_social_redis_handler_pt done, void *data);
static void ngx_social_events_sent(redisReply *reply, void *data);


/* KEYS: each user's stream and last-id key; ARGV[1] the event JSON */
static ngx_social_redis_script_t  ngx_social_events_stored = {
    ngx_string(
        "local ev = ARGV[1] "
        "for i = 1, #KEYS, 2 do "
        "  local prev = redis.call('GET', KEYS[i + 1]) or '0-0' "
        "  local id = redis.call('XADD', KEYS[i], 'MAXLEN', '~', "
        "                        '" NGX_SOCIAL_EVENTS_KEEP "', '*', "
        "                        'p', prev, 'e', ev) "
        "  redis.call('SET', KEYS[i + 1], id) "
        "  redis.call('PEXPIRE', KEYS[i], "
        "             '" NGX_SOCIAL_EVENTS_RETAIN_MS "') "
        "  redis.call('PUBLISH', KEYS[i], id .. ' ' .. ev) "
        "end "
        "return #KEYS / 2"),
    { 0 }, 1
};


/* KEYS: each user's channel; ARGV[1] the event JSON */
static ngx_social_redis_script_t  ngx_social_events_ephemeral = {
    ngx_string(
        "local msg = '- ' .. ARGV[1] "
        "for i = 1, #KEYS do redis.call('PUBLISH', KEYS[i], msg) end "
        "return #KEYS"),
    { 0 }, 0
};


ngx_int_t
ngx_social_events_init(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_events_stored)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_redis_script_register(cf, &ngx_social_events_ephemeral);
}


/*
 * Publishes event (a JSON object {"event": ..., "data": ...}, in writable
 * memory: it is made compact in place) to the streams of users; r may be
 * NULL.  The commands stand alone: they go on
 * if r is finalized.  NGX_ERROR: nothing was sent (Redis is down or not
 * configured, or no memory), already logged.
 */

ngx_int_t
ngx_social_events_publish(ngx_http_request_t *r, int64_t *users,
    ngx_uint_t n, ngx_str_t *event, ngx_uint_t ephemeral)
{
    return ngx_social_events_publish_then(r, users, n, event, ephemeral,
                                          NULL, NULL);
}


/*
 * The same; then done (if not NULL) is called, bound to r, once Redis
 * has published to every user (reply NULL or an error reply if the last
 * batch failed): an answer sent after it orders the events of causally
 * related requests.  NGX_ERROR: nothing was sent, done is not called.
 */

ngx_int_t
ngx_social_events_publish_then(ngx_http_request_t *r, int64_t *users,
    ngx_uint_t n, ngx_str_t *event, ngx_uint_t ephemeral,
    ngx_social_redis_handler_pt done, void *data)
{
    ngx_uint_t  i, k;

    event->len = ngx_social_json_compact(event->data, event->data,
                                         event->len)
                 - event->data;

    for (i = 0; i < n; i += k) {
        k = ngx_min(n - i, NGX_SOCIAL_EVENTS_BATCH);

        /* one connection, in order: the last batch's reply comes last */

        if (ngx_social_events_send(r, users + i, k, event, ephemeral,
                                   (i + k == n) ? done : NULL, data)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_events_send(ngx_http_request_t *r, int64_t *users, ngx_uint_t n,
    ngx_str_t *event, ngx_uint_t ephemeral, ngx_social_redis_handler_pt done,
    void *data)
{
    u_char                   *p, *last;
    ngx_log_t                *log;
    ngx_uint_t                i, argc, per;
    const char              **argv;
    size_t                   *argvlen;
    ngx_social_redis_argv_t   args;

    log = r ? r->connection->log : ngx_cycle->log;

    per = ephemeral ? 1 : 2;
    argc = n * per + 1;

    /* the adapter copies the arguments: a scratch buffer will do */
    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t))
                     + n * per * sizeof("social:evl:") + n * per
                       * NGX_INT64_LEN, log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + argc);
    p = (u_char *) (argvlen + argc);

    for (i = 0; i < n; i++) {
        last = ngx_sprintf(p, "social:ev:%L", users[i]);
        argv[i * per] = (const char *) p;
        argvlen[i * per] = last - p;
        p = last;

        if (!ephemeral) {
            last = ngx_sprintf(p, "social:evl:%L", users[i]);
            argv[i * per + 1] = (const char *) p;
            argvlen[i * per + 1] = last - p;
            p = last;
        }
    }

    argv[argc - 1] = (const char *) event->data;
    argvlen[argc - 1] = event->len;

    args.argc = argc;
    args.argv = argv;
    args.argvlen = argvlen;

    if (ngx_social_redis_eval(done ? r : NULL,
                              ephemeral ? &ngx_social_events_ephemeral
                                        : &ngx_social_events_stored,
                              argc - 1, &args,
                              done ? done : ngx_social_events_sent, data)
        != NGX_OK)
    {
        ngx_free(argv);
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "social: an event for %ui users was not published "
                      "(Redis)", n);
        return NGX_ERROR;
    }

    ngx_free(argv);

    return NGX_OK;
}


static void
ngx_social_events_sent(redisReply *reply, void *data)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: an event was not published: %s",
                      reply ? reply->str : "Redis did not answer");
    }
}


/*
 * "1733400000000-3" <-> "1733400000000000003": a stream entry's id as the
 * decimal stream id clients see (milliseconds * 10^6 + sequence), which
 * grows with the entry id.  NGX_ERROR: not an entry id.
 */

ngx_int_t
ngx_social_events_id_decimal(ngx_str_t *entry, u_char *buf, ngx_str_t *out)
{
    u_char     *dash;
    ngx_int_t   seq;
    int64_t     ms;

    dash = ngx_strlchr(entry->data, entry->data + entry->len, '-');
    if (dash == NULL) {
        return NGX_ERROR;
    }

    ms = ngx_atoof(entry->data, dash - entry->data);
    seq = ngx_atoi(dash + 1, entry->data + entry->len - dash - 1);

    if (ms == NGX_ERROR || seq == NGX_ERROR || seq >= 1000000
        || ms > (int64_t) (NGX_MAX_OFF_T_VALUE / 1000000 - 1))
    {
        return NGX_ERROR;
    }

    out->data = buf;
    out->len = ngx_sprintf(buf, "%L", ms * 1000000 + seq) - buf;

    return NGX_OK;
}


ngx_int_t
ngx_social_events_id_entry(ngx_str_t *decimal, u_char *buf, ngx_str_t *out)
{
    off_t  n;

    if (decimal->len == 0 || decimal->len > 19) {
        return NGX_ERROR;
    }

    n = ngx_atoof(decimal->data, decimal->len);
    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    out->data = buf;
    out->len = ngx_sprintf(buf, "%O-%O", n / 1000000, n % 1000000) - buf;

    return NGX_OK;
}
