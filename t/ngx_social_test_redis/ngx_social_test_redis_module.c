/*
 * ngx_social_test_redis: test-only routes that drive the Redis adapter.
 *
 *   POST /t/redis/cmd      {"argv": [...]}              one command
 *   POST /t/redis/multi    {"commands": [[...], ...]}   MULTI ... EXEC
 *   POST /t/redis/pipeline {"commands": [[...], ...]}   every reply
 *   POST /t/redis/eval     {"keys": [...], "args": [...]}
 *   POST /t/redis/write    the same, the script marked as a write
 *   POST /t/redis/publish  {"channel", "message" | "self": true}
 *   GET  /t/redis/listen?channel=&timeout=ms&pattern=1&foreign=1
 *   GET  /t/redis/status
 *   GET  /t/redis/get/{key}                             (the benchmark)
 *
 * An argv element is a JSON string (any bytes, "\u0000" included), an
 * integer, or {"b64": "..."} for bytes that are not UTF-8.  A reply comes
 * back as JSON: a string (or {"b64"} when not UTF-8), {"status"},
 * {"error"}, an integer, null, or an array; no reply at all is a 503.
 */

#include "ngx_social_core.h"


#define NGX_SOCIAL_TEST_REDIS_MAX_ARGS  64


typedef struct {
    ngx_http_request_t           *request;
    ngx_social_redis_listener_t  *listener;
    ngx_event_t                   timer;
    ngx_uint_t                    resyncs;
    ngx_uint_t                    foreign;
} ngx_social_test_redis_listen_t;


typedef struct {
    ngx_http_request_t           *request;
    json_t                       *replies;
} ngx_social_test_redis_pipe_t;


static ngx_int_t ngx_social_test_redis_cmd(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_multi(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_pipeline(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_commands(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx, ngx_social_redis_argv_t **cmds, ngx_uint_t *n);
static ngx_int_t ngx_social_test_redis_write(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_run(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx, ngx_social_redis_script_t *script);
static ngx_int_t ngx_social_test_redis_eval(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_publish(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_get(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_status(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_redis_listen(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

static void ngx_social_test_redis_reply_done(redisReply *reply, void *data);
static void ngx_social_test_redis_each(redisReply *reply, void *data);
static void ngx_social_test_redis_pipeline_done(redisReply *reply,
    void *data);
static void ngx_social_test_redis_eval_done(redisReply *reply, void *data);
static void ngx_social_test_redis_publish_done(redisReply *reply,
    void *data);
static void ngx_social_test_redis_get_done(redisReply *reply, void *data);
static ngx_int_t ngx_social_test_redis_wait(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_social_test_redis_unavailable(ngx_http_request_t *r);
static ngx_int_t ngx_social_test_redis_invalid(ngx_http_request_t *r,
    const char *message);

static void ngx_social_test_redis_message(ngx_str_t *channel,
    ngx_str_t *message, void *data);
static void ngx_social_test_redis_resync(void *data);
static void ngx_social_test_redis_listen_timeout(ngx_event_t *ev);
static void ngx_social_test_redis_listen_cleanup(void *data);
static void ngx_social_test_redis_listen_end(
    ngx_social_test_redis_listen_t *lc, ngx_uint_t status, json_t *json);

static ngx_int_t ngx_social_test_redis_argv(ngx_http_request_t *r,
    json_t *list, ngx_social_redis_argv_t *cmd);
static ngx_int_t ngx_social_test_redis_arg(ngx_http_request_t *r,
    json_t *value, const char **arg, size_t *len);
static json_t *ngx_social_test_redis_json(ngx_http_request_t *r,
    redisReply *reply);
static json_t *ngx_social_test_redis_bytes(ngx_http_request_t *r,
    const char *data, size_t len);
static ngx_int_t ngx_social_test_redis_postconfiguration(ngx_conf_t *cf);


static ngx_social_route_t  ngx_social_test_redis_routes[] = {
    { NGX_HTTP_POST, ngx_string("/t/redis/cmd"),
      ngx_social_test_redis_cmd, NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_POST, ngx_string("/t/redis/multi"),
      ngx_social_test_redis_multi, NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_POST, ngx_string("/t/redis/pipeline"),
      ngx_social_test_redis_pipeline, NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_POST, ngx_string("/t/redis/eval"),
      ngx_social_test_redis_eval, NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_POST, ngx_string("/t/redis/write"),
      ngx_social_test_redis_write, NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_POST, ngx_string("/t/redis/publish"),
      ngx_social_test_redis_publish, NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/t/redis/get/{key}"),
      ngx_social_test_redis_get, 0 },
    { NGX_HTTP_GET, ngx_string("/t/redis/status"),
      ngx_social_test_redis_status, 0 },
    { NGX_HTTP_GET, ngx_string("/t/redis/listen"),
      ngx_social_test_redis_listen, 0 }
};


/* listen requests of this worker that still have a listener */

static ngx_uint_t  ngx_social_test_redis_listeners;


/* KEYS[1] is incremented; the reply echoes the key and ARGV[1] */

#define NGX_SOCIAL_TEST_REDIS_LUA                                            \
    "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"

static ngx_social_redis_script_t  ngx_social_test_redis_script = {
    ngx_string(NGX_SOCIAL_TEST_REDIS_LUA), "", 0
};

static ngx_social_redis_script_t  ngx_social_test_redis_write_script = {
    ngx_string(NGX_SOCIAL_TEST_REDIS_LUA), "", 1
};


static ngx_http_module_t  ngx_social_test_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_test_redis_postconfiguration, /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_test_redis_module = {
    NGX_MODULE_V1,
    &ngx_social_test_redis_module_ctx,     /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_social_test_redis_cmd(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t                 rc;
    ngx_social_redis_argv_t   cmd;

    if (ngx_social_test_redis_argv(r, json_object_get(ctx->body, "argv"),
                                   &cmd)
        != NGX_OK)
    {
        return ngx_social_test_redis_invalid(r, "argv: a list of arguments");
    }

    rc = ngx_social_redis_command(r, &cmd, ngx_social_test_redis_reply_done,
                                  r);

    return ngx_social_test_redis_wait(r, rc);
}


static ngx_int_t
ngx_social_test_redis_multi(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t                 rc;
    ngx_uint_t                n;
    ngx_social_redis_argv_t  *cmds;

    rc = ngx_social_test_redis_commands(r, ctx, &cmds, &n);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_social_redis_transaction(r, cmds, n,
                                      ngx_social_test_redis_reply_done, r);

    return ngx_social_test_redis_wait(r, rc);
}


/* the replies as they come, in one array */

static ngx_int_t
ngx_social_test_redis_pipeline(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_uint_t                     n;
    ngx_social_redis_argv_t       *cmds;
    ngx_social_test_redis_pipe_t  *pipe;

    rc = ngx_social_test_redis_commands(r, ctx, &cmds, &n);
    if (rc != NGX_OK) {
        return rc;
    }

    pipe = ngx_palloc(r->pool, sizeof(ngx_social_test_redis_pipe_t));
    if (pipe == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pipe->request = r;
    pipe->replies = ngx_social_json_owned(r, json_array());
    if (pipe->replies == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_social_redis_pipeline(r, cmds, n, ngx_social_test_redis_each,
                                   ngx_social_test_redis_pipeline_done,
                                   pipe);

    return ngx_social_test_redis_wait(r, rc);
}


static ngx_int_t
ngx_social_test_redis_commands(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_social_redis_argv_t **cmds, ngx_uint_t *n)
{
    json_t      *list;
    ngx_uint_t   i;

    list = json_object_get(ctx->body, "commands");
    *n = json_array_size(list);

    if (*n == 0 || *n > NGX_SOCIAL_TEST_REDIS_MAX_ARGS) {
        return ngx_social_test_redis_invalid(r, "commands: a list of argv");
    }

    *cmds = ngx_palloc(r->pool, *n * sizeof(ngx_social_redis_argv_t));
    if (*cmds == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < *n; i++) {
        if (ngx_social_test_redis_argv(r, json_array_get(list, i),
                                       &(*cmds)[i])
            != NGX_OK)
        {
            return ngx_social_test_redis_invalid(r,
                                                 "commands: a list of argv");
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_test_redis_eval(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_test_redis_run(r, ctx, &ngx_social_test_redis_script);
}


static ngx_int_t
ngx_social_test_redis_write(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_test_redis_run(r, ctx,
                                     &ngx_social_test_redis_write_script);
}


static ngx_int_t
ngx_social_test_redis_run(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_social_redis_script_t *script)
{
    json_t                   *keys, *args, *all;
    ngx_int_t                 rc;
    ngx_uint_t                nkeys;
    ngx_social_redis_argv_t   cmd;

    keys = json_object_get(ctx->body, "keys");
    args = json_object_get(ctx->body, "args");

    if (!json_is_array(keys) || !json_is_array(args)) {
        return ngx_social_test_redis_invalid(r, "keys and args: lists");
    }

    all = ngx_social_json_owned(r, json_copy(keys));
    if (all == NULL || json_array_extend(all, args) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nkeys = json_array_size(keys);

    if (json_array_size(all) == 0) {
        cmd.argc = 0;

    } else if (ngx_social_test_redis_argv(r, all, &cmd) != NGX_OK) {
        return ngx_social_test_redis_invalid(r, "keys and args: strings");
    }

    rc = ngx_social_redis_eval(r, script, nkeys, &cmd,
                               ngx_social_test_redis_eval_done, r);

    return ngx_social_test_redis_wait(r, rc);
}


static ngx_int_t
ngx_social_test_redis_publish(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    u_char                   *pid;
    json_t                   *channel, *message;
    size_t                    len[3];
    ngx_int_t                 rc;
    const char               *argv[3];
    ngx_social_redis_argv_t   cmd;

    channel = json_object_get(ctx->body, "channel");
    message = json_object_get(ctx->body, "message");

    if (!json_is_string(channel)) {
        return ngx_social_test_redis_invalid(r, "channel: a string");
    }

    argv[0] = "PUBLISH";
    len[0] = sizeof("PUBLISH") - 1;
    argv[1] = json_string_value(channel);
    len[1] = json_string_length(channel);

    if (json_is_true(json_object_get(ctx->body, "self"))) {
        /* the message is this worker's pid */

        pid = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (pid == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argv[2] = (const char *) pid;
        len[2] = ngx_sprintf(pid, "%P", ngx_pid) - pid;

    } else if (json_is_string(message)) {
        argv[2] = json_string_value(message);
        len[2] = json_string_length(message);

    } else {
        return ngx_social_test_redis_invalid(r, "message: a string");
    }

    cmd.argc = 3;
    cmd.argv = argv;
    cmd.argvlen = len;

    rc = ngx_social_redis_command(r, &cmd,
                                  ngx_social_test_redis_publish_done, r);

    return ngx_social_test_redis_wait(r, rc);
}


/* the benchmark's route: one GET */

static ngx_int_t
ngx_social_test_redis_get(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    size_t                    len[2];
    ngx_int_t                 rc;
    const char               *argv[2];
    ngx_social_redis_argv_t   cmd;

    argv[0] = "GET";
    len[0] = sizeof("GET") - 1;
    argv[1] = (const char *) ctx->params[0].data;
    len[1] = ctx->params[0].len;

    cmd.argc = 2;
    cmd.argv = argv;
    cmd.argvlen = len;

    rc = ngx_social_redis_command(r, &cmd, ngx_social_test_redis_get_done,
                                  r);

    return ngx_social_test_redis_wait(r, rc);
}


static ngx_int_t
ngx_social_test_redis_status(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_social_redis_stats_t  st;

    ngx_social_redis_get_stats(&st);

    return ngx_social_send_json(r, NGX_HTTP_OK,
        json_pack("{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                  "connected", (int) st.connected,
                  "subscriber", (int) st.subscriber,
                  "pid", (json_int_t) ngx_pid,
                  "commands", (json_int_t) st.commands,
                  "errors", (json_int_t) st.errors,
                  "timeouts", (json_int_t) st.timeouts,
                  "reconnects", (json_int_t) st.reconnects,
                  "messages", (json_int_t) st.messages,
                  "pending", (json_int_t) st.pending,
                  "channels", (json_int_t) st.channels,
                  "listeners",
                  (json_int_t) ngx_social_test_redis_listeners));
}


/*
 * Long poll: answers with the first message of the channel (with
 * "foreign", the first one not published by this worker's pid), or 504
 * after the timeout; the listener goes when the request does.
 */

static ngx_int_t
ngx_social_test_redis_listen(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t                        timeout;
    ngx_str_t                        channel, value;
    ngx_uint_t                       pattern;
    ngx_http_cleanup_t              *cln;
    ngx_social_test_redis_listen_t  *lc;

    if (ngx_http_arg(r, (u_char *) "channel", 7, &channel) != NGX_OK
        || channel.len == 0)
    {
        return ngx_social_test_redis_invalid(r, "channel is required");
    }

    timeout = 5000;

    if (ngx_http_arg(r, (u_char *) "timeout", 7, &value) == NGX_OK) {
        timeout = ngx_atoi(value.data, value.len);
        if (timeout <= 0) {
            return ngx_social_test_redis_invalid(r, "timeout: milliseconds");
        }
    }

    pattern = (ngx_http_arg(r, (u_char *) "pattern", 7, &value) == NGX_OK);

    lc = ngx_pcalloc(r->pool, sizeof(ngx_social_test_redis_listen_t));
    cln = ngx_http_cleanup_add(r, 0);
    if (lc == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lc->request = r;
    lc->foreign = (ngx_http_arg(r, (u_char *) "foreign", 7, &value)
                   == NGX_OK);
    lc->timer.handler = ngx_social_test_redis_listen_timeout;
    lc->timer.data = lc;
    lc->timer.log = r->connection->log;

    lc->listener = ngx_social_redis_subscribe(&channel, pattern,
                                              ngx_social_test_redis_message,
                                              ngx_social_test_redis_resync,
                                              lc);
    if (lc->listener == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_social_test_redis_listeners++;

    cln->handler = ngx_social_test_redis_listen_cleanup;
    cln->data = lc;

    ngx_add_timer(&lc->timer, (ngx_msec_t) timeout);

    return ngx_social_test_redis_wait(r, NGX_OK);
}


static void
ngx_social_test_redis_reply_done(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t  *json;

    if (reply == NULL) {
        ngx_http_finalize_request(r, ngx_social_test_redis_unavailable(r));
        return;
    }

    json = ngx_social_test_redis_json(r, reply);

    ngx_http_finalize_request(r,
        ngx_social_send_json(r, NGX_HTTP_OK,
                             json ? json_pack("{s:o}", "reply", json)
                                  : NULL));
}


static void
ngx_social_test_redis_each(redisReply *reply, void *data)
{
    ngx_social_test_redis_pipe_t  *pipe = data;

    json_array_append_new(pipe->replies,
                          ngx_social_test_redis_json(pipe->request, reply));
}


static void
ngx_social_test_redis_pipeline_done(redisReply *reply, void *data)
{
    ngx_social_test_redis_pipe_t  *pipe = data;

    ngx_http_request_t  *r;

    r = pipe->request;

    if (reply == NULL) {
        ngx_http_finalize_request(r, ngx_social_test_redis_unavailable(r));
        return;
    }

    json_array_append_new(pipe->replies,
                          ngx_social_test_redis_json(r, reply));

    ngx_http_finalize_request(r,
        ngx_social_send_json(r, NGX_HTTP_OK,
                             json_pack("{s:O}", "replies", pipe->replies)));
}


static void
ngx_social_test_redis_eval_done(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t  *json;

    if (reply == NULL) {
        ngx_http_finalize_request(r, ngx_social_test_redis_unavailable(r));
        return;
    }

    json = ngx_social_test_redis_json(r, reply);

    ngx_http_finalize_request(r,
        ngx_social_send_json(r, NGX_HTTP_OK,
                             json ? json_pack("{s:s, s:o}", "sha1",
                                     ngx_social_test_redis_script.sha1,
                                     "reply", json)
                                  : NULL));
}


static void
ngx_social_test_redis_publish_done(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_finalize_request(r, ngx_social_test_redis_unavailable(r));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_send_json(r, NGX_HTTP_OK,
                             json_pack("{s:I, s:I}",
                                       "receivers",
                                       (json_int_t) reply->integer,
                                       "pid", (json_int_t) ngx_pid)));
}


static void
ngx_social_test_redis_get_done(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t  *value;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_finalize_request(r, ngx_social_test_redis_unavailable(r));
        return;
    }

    value = (reply->type == REDIS_REPLY_STRING)
            ? ngx_social_test_redis_bytes(r, reply->str, reply->len)
            : json_null();

    ngx_http_finalize_request(r,
        ngx_social_send_json(r, NGX_HTTP_OK,
                             value ? json_pack("{s:o}", "value", value)
                                   : NULL));
}


/*
 * The request now waits for a callback: one more reference, and a client
 * that goes away finalizes it (the adapter then drops the reply).
 */

static ngx_int_t
ngx_social_test_redis_wait(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc != NGX_OK) {
        return ngx_social_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal_error",
                                     "the adapter refused the command",
                                     NULL);
    }

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static ngx_int_t
ngx_social_test_redis_unavailable(ngx_http_request_t *r)
{
    return ngx_social_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "redis_unavailable",
                                 "Redis did not answer: down, timed out "
                                 "or not configured", NULL);
}


static ngx_int_t
ngx_social_test_redis_invalid(ngx_http_request_t *r, const char *message)
{
    return ngx_social_send_error(r, 422, "validation_failed", message, NULL);
}


static void
ngx_social_test_redis_message(ngx_str_t *channel, ngx_str_t *message,
    void *data)
{
    ngx_social_test_redis_listen_t  *lc = data;

    u_char  pid[NGX_INT_T_LEN];
    size_t  len;

    if (lc->foreign) {
        len = ngx_sprintf(pid, "%P", ngx_pid) - pid;

        if (message->len == len && ngx_strncmp(message->data, pid, len) == 0)
        {
            return;
        }
    }

    ngx_social_test_redis_listen_end(lc, NGX_HTTP_OK,
        json_pack("{s:o, s:o, s:I, s:I}",
                  "channel",
                  ngx_social_test_redis_bytes(lc->request,
                                              (char *) channel->data,
                                              channel->len),
                  "message",
                  ngx_social_test_redis_bytes(lc->request,
                                              (char *) message->data,
                                              message->len),
                  "pid", (json_int_t) ngx_pid,
                  "resyncs", (json_int_t) lc->resyncs));
}


static void
ngx_social_test_redis_resync(void *data)
{
    ngx_social_test_redis_listen_t  *lc = data;

    lc->resyncs++;
}


static void
ngx_social_test_redis_listen_timeout(ngx_event_t *ev)
{
    ngx_social_test_redis_listen_t  *lc = ev->data;

    ngx_social_test_redis_listen_end(lc, NGX_HTTP_GATEWAY_TIME_OUT,
        json_pack("{s:{s:s, s:s, s:I, s:I}}",
                  "error", "code", "timeout",
                  "message", "no message before the timeout",
                  "pid", (json_int_t) ngx_pid,
                  "resyncs", (json_int_t) lc->resyncs));
}


static void
ngx_social_test_redis_listen_cleanup(void *data)
{
    ngx_social_test_redis_listen_t  *lc = data;

    if (lc->listener != NULL) {
        ngx_social_redis_unsubscribe(lc->listener);
        lc->listener = NULL;
        ngx_social_test_redis_listeners--;
    }

    if (lc->timer.timer_set) {
        ngx_del_timer(&lc->timer);
    }
}


static void
ngx_social_test_redis_listen_end(ngx_social_test_redis_listen_t *lc,
    ngx_uint_t status, json_t *json)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = lc->request;
    c = r->connection;

    ngx_social_test_redis_listen_cleanup(lc);

    ngx_http_finalize_request(r, ngx_social_send_json(r, status, json));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_social_test_redis_argv(ngx_http_request_t *r, json_t *list,
    ngx_social_redis_argv_t *cmd)
{
    size_t       *len;
    ngx_uint_t    i, n;
    const char  **argv;

    n = json_array_size(list);

    if (n == 0 || n > NGX_SOCIAL_TEST_REDIS_MAX_ARGS) {
        return NGX_ERROR;
    }

    argv = ngx_palloc(r->pool, n * sizeof(char *));
    len = ngx_palloc(r->pool, n * sizeof(size_t));
    if (argv == NULL || len == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (ngx_social_test_redis_arg(r, json_array_get(list, i), &argv[i],
                                      &len[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    cmd->argc = n;
    cmd->argv = argv;
    cmd->argvlen = len;

    return NGX_OK;
}


static ngx_int_t
ngx_social_test_redis_arg(ngx_http_request_t *r, json_t *value,
    const char **arg, size_t *len)
{
    u_char     *p;
    json_t     *b64;
    ngx_str_t   src, dst;

    if (json_is_string(value)) {
        *arg = json_string_value(value);
        *len = json_string_length(value);
        return NGX_OK;
    }

    if (json_is_integer(value)) {
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        *arg = (const char *) p;
        *len = ngx_sprintf(p, "%L", (int64_t) json_integer_value(value)) - p;
        return NGX_OK;
    }

    b64 = json_object_get(value, "b64");
    if (!json_is_string(b64)) {
        return NGX_ERROR;
    }

    src.data = (u_char *) json_string_value(b64);
    src.len = json_string_length(b64);

    dst.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(src.len) + 1);
    if (dst.data == NULL || ngx_decode_base64(&dst, &src) != NGX_OK) {
        return NGX_ERROR;
    }

    *arg = (const char *) dst.data;
    *len = dst.len;

    return NGX_OK;
}


static json_t *
ngx_social_test_redis_json(ngx_http_request_t *r, redisReply *reply)
{
    json_t  *array, *item;
    size_t   i;

    switch (reply->type) {

    case REDIS_REPLY_STRING:
        return ngx_social_test_redis_bytes(r, reply->str, reply->len);

    case REDIS_REPLY_STATUS:
        return json_pack("{s:s%}", "status", reply->str, reply->len);

    case REDIS_REPLY_ERROR:
        return json_pack("{s:s%}", "error", reply->str, reply->len);

    case REDIS_REPLY_INTEGER:
        return json_integer(reply->integer);

    case REDIS_REPLY_ARRAY:
        array = json_array();

        for (i = 0; array != NULL && i < reply->elements; i++) {
            item = ngx_social_test_redis_json(r, reply->element[i]);

            if (item == NULL || json_array_append_new(array, item) != 0) {
                json_decref(array);
                array = NULL;
            }
        }

        return array;

    default: /* REDIS_REPLY_NIL */
        return json_null();
    }
}


/* a JSON string when the bytes are UTF-8, else {"b64": "..."} */

static json_t *
ngx_social_test_redis_bytes(ngx_http_request_t *r, const char *data,
    size_t len)
{
    json_t     *json;
    ngx_str_t   src, dst;

    json = json_stringn(data, len);
    if (json != NULL) {
        return json;
    }

    src.data = (u_char *) data;
    src.len = len;

    dst.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(len));
    if (dst.data == NULL) {
        return NULL;
    }

    ngx_encode_base64(&dst, &src);

    return json_pack("{s:s%}", "b64", (char *) dst.data, dst.len);
}


static ngx_int_t
ngx_social_test_redis_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_test_redis_script)
        != NGX_OK
        || ngx_social_redis_script_register(cf,
                                            &ngx_social_test_redis_write_script)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_routes_add(cf, ngx_social_test_redis_routes,
                                 sizeof(ngx_social_test_redis_routes)
                                 / sizeof(ngx_social_route_t));
}
