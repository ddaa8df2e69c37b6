/*
 * ngx_social_redis: the nonblocking Redis adapter, hiredis's async API
 * driven by nginx events.
 *
 * Per worker there are two connections: the command connection pipelines
 * every request's commands, the subscriber connection carries pub/sub.
 * Each wraps hiredis's socket in an nginx connection with level-triggered
 * events; hiredis owns the socket and closes it, the adapter only does
 * nginx's bookkeeping.  A connection goes DOWN -> CONNECTING (TCP, then a
 * pipelined AUTH / SELECT or PING handshake) -> READY; a lost or failed
 * connection is retried from a timer with exponential backoff.
 *
 * Beside hiredis's callback queue the adapter keeps its own FIFO of
 * command records, each with a timer.  hiredis calls every callback
 * exactly once (with NULL when the connection goes away), and the record
 * is freed there; a record whose handler already ran (timeout, finalized
 * request) just waits for that call.
 */

#include "ngx_social_core.h"
#include <openssl/sha.h>


#define NGX_SOCIAL_REDIS_DOWN          0
#define NGX_SOCIAL_REDIS_CONNECTING    1
#define NGX_SOCIAL_REDIS_READY         2

#define NGX_SOCIAL_REDIS_BACKOFF_MIN   100
#define NGX_SOCIAL_REDIS_BACKOFF_MAX   5000

/* channels per SUBSCRIBE when subscribing again after a reconnect */
#define NGX_SOCIAL_REDIS_BATCH         128


typedef struct {
    ngx_str_t                     address;   /* as configured, for logs */
    u_char                       *host;      /* IP address, or NULL */
    int                           port;
    u_char                       *path;      /* unix socket, or NULL */
    ngx_str_t                     user;
    ngx_str_t                     password;
    ngx_int_t                     database;
    ngx_msec_t                    connect_timeout;
    ngx_msec_t                    command_timeout;
} ngx_social_redis_main_conf_t;


typedef struct {
    redisAsyncContext            *ac;
    ngx_uint_t                    state;
    ngx_uint_t                    handshake; /* replies due before ready */
    ngx_msec_t                    backoff;   /* delay of the next retry */
    ngx_msec_t                    last_read;
    ngx_event_t                   timer;     /* connect timeout, retry */
    ngx_event_t                   drop;      /* posted: close it */
    ngx_queue_t                   pending;   /* records, in sending order */
    ngx_uint_t                    npending;
    const char                   *name;

    unsigned                      subscriber:1;
    unsigned                      failed:1;  /* the last attempt failed */
    unsigned                      was_ready:1;
    unsigned                      writing:1; /* in the write handler */
    unsigned                      broken:1;  /* no more commands */

    ngx_str_t                     out;       /* a command being formatted */
    size_t                        out_size;
    ngx_social_redis_arena_t     *arena;     /* the replies being read */
} ngx_social_redis_conn_t;


typedef struct {
    ngx_queue_t                   queue;     /* conn->pending, or failing */
    ngx_social_redis_conn_t      *conn;
    ngx_http_request_t           *request;
    ngx_http_cleanup_t           *cleanup;
    ngx_social_redis_handler_pt   handler;   /* NULL once called */
    ngx_social_redis_handler_pt   each;      /* a pipeline's other replies */
    void                         *data;
    ngx_event_t                   event;     /* timeout, or posted failure */
    ngx_uint_t                    replies;   /* hiredis callbacks due */
    ngx_uint_t                    write;     /* waits while Redis answers */

    /* EVALSHA: the saved argv, sent again as EVAL on NOSCRIPT */
    ngx_social_redis_script_t    *script;
    ngx_uint_t                    argc;
    const char                  **argv;
    size_t                       *argvlen;
} ngx_social_redis_cmd_t;


typedef struct {
    ngx_str_node_t                sn;        /* name, crc32 as the key */
    ngx_queue_t                   queue;     /* all channels */
    ngx_queue_t                   listeners;
    ngx_uint_t                    pattern;

    unsigned                      resync:1;  /* resync on SUBSCRIBE reply */
    unsigned                      busy:1;    /* listeners being called */
} ngx_social_redis_channel_t;


struct ngx_social_redis_listener_s {
    ngx_queue_t                   queue;
    ngx_social_redis_channel_t   *channel;
    ngx_social_redis_message_pt   handler;
    ngx_social_redis_resync_pt    resync;
    void                         *data;
    ngx_uint_t                    removed;   /* unsubscribed while busy */
};


typedef struct {
    ngx_social_redis_main_conf_t *conf;      /* NULL: no address */
    ngx_social_redis_conn_t      *cmd;
    ngx_social_redis_conn_t      *sub;
    ngx_rbtree_t                  trees[2];  /* channels, patterns */
    ngx_rbtree_node_t             sentinels[2];
    ngx_queue_t                   channels;
    ngx_queue_t                   failing;   /* records failing fast */
    ngx_social_redis_stats_t      stats;
    ngx_uint_t                    running;
} ngx_social_redis_worker_t;


static ngx_social_redis_conn_t *ngx_social_redis_conn_create(
    ngx_cycle_t *cycle, const char *name, ngx_uint_t subscriber);
static void ngx_social_redis_conn_close(ngx_social_redis_conn_t *conn);
static void ngx_social_redis_connect(ngx_social_redis_conn_t *conn);
static ngx_int_t ngx_social_redis_attach(redisAsyncContext *ac);
static ngx_int_t ngx_social_redis_handshake(ngx_social_redis_conn_t *conn);
static void ngx_social_redis_handshake_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_social_redis_ready(ngx_social_redis_conn_t *conn);
static void ngx_social_redis_drop(ngx_social_redis_conn_t *conn,
    const char *reason);
static void ngx_social_redis_lost(ngx_social_redis_conn_t *conn,
    const char *reason);
static ngx_uint_t ngx_social_redis_writable(ngx_social_redis_conn_t *conn);
static ngx_int_t ngx_social_redis_batch(ngx_http_request_t *r,
    ngx_social_redis_argv_t *cmds, ngx_uint_t n, ngx_uint_t multi,
    ngx_social_redis_handler_pt each, ngx_social_redis_handler_pt handler,
    void *data);
static u_char *ngx_social_redis_format_len(u_char *p, u_char type,
    size_t n);
static ngx_int_t ngx_social_redis_format(ngx_social_redis_conn_t *conn,
    ngx_uint_t argc, const char **argv, const size_t *argvlen);
static void ngx_social_redis_timer_handler(ngx_event_t *ev);
static void ngx_social_redis_drop_handler(ngx_event_t *ev);
static void ngx_social_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_social_redis_on_disconnect(const redisAsyncContext *ac,
    int status);

static void ngx_social_redis_read_handler(ngx_event_t *rev);
static void ngx_social_redis_write_handler(ngx_event_t *wev);
static void ngx_social_redis_add_read(void *privdata);
static void ngx_social_redis_del_read(void *privdata);
static void ngx_social_redis_add_write(void *privdata);
static void ngx_social_redis_del_write(void *privdata);
static void ngx_social_redis_cleanup(void *privdata);

static ngx_social_redis_cmd_t *ngx_social_redis_cmd_create(
    ngx_http_request_t *r, ngx_social_redis_handler_pt handler, void *data,
    size_t size);
static ngx_int_t ngx_social_redis_submit(ngx_social_redis_cmd_t *rec,
    ngx_social_redis_argv_t *cmds, ngx_uint_t n, ngx_uint_t multi);
static ngx_int_t ngx_social_redis_send(ngx_social_redis_cmd_t *rec,
    ngx_uint_t argc, const char **argv, const size_t *argvlen);
static void ngx_social_redis_track(ngx_social_redis_cmd_t *rec);
static void ngx_social_redis_fail(ngx_social_redis_cmd_t *rec);
static void ngx_social_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_social_redis_eval_retry(ngx_social_redis_cmd_t *rec);
static void ngx_social_redis_complete(ngx_social_redis_cmd_t *rec,
    redisReply *reply);
static void ngx_social_redis_cmd_timeout(ngx_event_t *ev);
static void ngx_social_redis_cmd_failed(ngx_event_t *ev);
static void ngx_social_redis_cmd_detach(void *data);
static void ngx_social_redis_cmd_free(ngx_social_redis_cmd_t *rec);
static ngx_uint_t ngx_social_redis_argv_allowed(ngx_social_redis_argv_t *cmd);
static ngx_uint_t ngx_social_redis_noscript(redisReply *reply);
static ngx_uint_t ngx_social_redis_str_is(redisReply *e, const char *s,
    size_t len);

static ngx_social_redis_channel_t *ngx_social_redis_channel_get(
    ngx_str_t *name, ngx_uint_t pattern);
static ngx_social_redis_channel_t *ngx_social_redis_channel_find(
    ngx_uint_t pattern, const char *name, size_t len);
static void ngx_social_redis_channel_send(ngx_social_redis_channel_t *ch,
    ngx_uint_t subscribe);
static void ngx_social_redis_channel_dispatch(ngx_social_redis_channel_t *ch,
    ngx_str_t *channel, ngx_str_t *message);
static void ngx_social_redis_channel_sweep(ngx_social_redis_channel_t *ch);
static void ngx_social_redis_channel_release(ngx_social_redis_channel_t *ch);
static void ngx_social_redis_resubscribe(ngx_social_redis_conn_t *conn);
static void ngx_social_redis_unsubscribed(redisReply **e);
static void ngx_social_redis_resubscribe_kind(ngx_social_redis_conn_t *conn,
    ngx_uint_t pattern);
static void ngx_social_redis_sub_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_social_redis_channels_free(void);

static char *ngx_social_redis_address(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_social_redis_create_main_conf(ngx_conf_t *cf);
static char *ngx_social_redis_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_social_redis_init_process(ngx_cycle_t *cycle);
static void ngx_social_redis_exit_process(ngx_cycle_t *cycle);


static ngx_social_redis_worker_t  ngx_social_redis_worker;


static ngx_command_t  ngx_social_redis_commands[] = {

    /* social_redis_address host:port | unix:/path; none: Redis disabled */
    { ngx_string("social_redis_address"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_social_redis_address,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* social_redis_password secret: AUTH on every connection */
    { ngx_string("social_redis_password"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_redis_main_conf_t, password),
      NULL },

    /* social_redis_user name: an ACL user, AUTH name secret */
    { ngx_string("social_redis_user"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_redis_main_conf_t, user),
      NULL },

    /* social_redis_database number: SELECT, default 0 */
    { ngx_string("social_redis_database"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_redis_main_conf_t, database),
      NULL },

    /* social_redis_connect_timeout time: TCP and handshake, default 1s */
    { ngx_string("social_redis_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_redis_main_conf_t, connect_timeout),
      NULL },

    /* social_redis_command_timeout time: per command, default 1s */
    { ngx_string("social_redis_command_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_redis_main_conf_t, command_timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_social_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_social_redis_create_main_conf,     /* create main configuration */
    ngx_social_redis_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_redis_module = {
    NGX_MODULE_V1,
    &ngx_social_redis_module_ctx,          /* module context */
    ngx_social_redis_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_social_redis_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_social_redis_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the public API */

ngx_int_t
ngx_social_redis_command(ngx_http_request_t *r,
    ngx_social_redis_argv_t *cmd, ngx_social_redis_handler_pt handler,
    void *data)
{
    ngx_social_redis_cmd_t  *rec;

    if (!ngx_social_redis_worker.running
        || !ngx_social_redis_argv_allowed(cmd))
    {
        return NGX_ERROR;
    }

    rec = ngx_social_redis_cmd_create(r, handler, data,
                                      sizeof(ngx_social_redis_cmd_t));
    if (rec == NULL) {
        return NGX_ERROR;
    }

    return ngx_social_redis_submit(rec, cmd, 1, 0);
}


ngx_int_t
ngx_social_redis_transaction(ngx_http_request_t *r,
    ngx_social_redis_argv_t *cmds, ngx_uint_t n,
    ngx_social_redis_handler_pt handler, void *data)
{
    return ngx_social_redis_batch(r, cmds, n, 1, NULL, handler, data);
}


ngx_int_t
ngx_social_redis_pipeline(ngx_http_request_t *r,
    ngx_social_redis_argv_t *cmds, ngx_uint_t n,
    ngx_social_redis_handler_pt each, ngx_social_redis_handler_pt handler,
    void *data)
{
    return ngx_social_redis_batch(r, cmds, n, 0, each, handler, data);
}


static ngx_int_t
ngx_social_redis_batch(ngx_http_request_t *r, ngx_social_redis_argv_t *cmds,
    ngx_uint_t n, ngx_uint_t multi, ngx_social_redis_handler_pt each,
    ngx_social_redis_handler_pt handler, void *data)
{
    ngx_uint_t               i;
    ngx_social_redis_cmd_t  *rec;

    if (!ngx_social_redis_worker.running || n == 0) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (!ngx_social_redis_argv_allowed(&cmds[i])) {
            return NGX_ERROR;
        }
    }

    rec = ngx_social_redis_cmd_create(r, handler, data,
                                      sizeof(ngx_social_redis_cmd_t));
    if (rec == NULL) {
        return NGX_ERROR;
    }

    rec->each = each;

    return ngx_social_redis_submit(rec, cmds, n, multi);
}


ngx_int_t
ngx_social_redis_script_register(ngx_conf_t *cf,
    ngx_social_redis_script_t *script)
{
    u_char  md[SHA_DIGEST_LENGTH];

    if (script->source.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "social redis: a script has no source");
        return NGX_ERROR;
    }

    SHA1(script->source.data, script->source.len, md);

    ngx_hex_dump(script->sha1, md, SHA_DIGEST_LENGTH);
    script->sha1[2 * SHA_DIGEST_LENGTH] = '\0';

    return NGX_OK;
}


/*
 * EVALSHA sha nkeys args...: the record keeps a copy of the argv so that
 * a NOSCRIPT reply can be answered by sending it again as EVAL (which
 * also loads the script for the next EVALSHA).
 */

ngx_int_t
ngx_social_redis_eval(ngx_http_request_t *r,
    ngx_social_redis_script_t *script, ngx_uint_t nkeys,
    ngx_social_redis_argv_t *args, ngx_social_redis_handler_pt handler,
    void *data)
{
    u_char                   *p;
    size_t                    size;
    ngx_uint_t                i, n;
    ngx_social_redis_cmd_t   *rec;
    ngx_social_redis_argv_t   cmd;

    n = (args != NULL) ? args->argc : 0;

    if (!ngx_social_redis_worker.running || nkeys > n
        || script->sha1[0] == '\0')
    {
        return NGX_ERROR;
    }

    size = sizeof(ngx_social_redis_cmd_t)
           + (n + 3) * (sizeof(char *) + sizeof(size_t)) + NGX_INT_T_LEN;

    for (i = 0; i < n; i++) {
        size += args->argvlen[i];
    }

    rec = ngx_social_redis_cmd_create(r, handler, data, size);
    if (rec == NULL) {
        return NGX_ERROR;
    }

    rec->script = script;
    rec->write = script->write;
    rec->argc = n + 3;
    rec->argv = (const char **) (rec + 1);
    rec->argvlen = (size_t *) (rec->argv + rec->argc);
    p = (u_char *) (rec->argvlen + rec->argc);

    rec->argv[0] = "EVALSHA";
    rec->argvlen[0] = sizeof("EVALSHA") - 1;
    rec->argv[1] = (const char *) script->sha1;
    rec->argvlen[1] = 2 * SHA_DIGEST_LENGTH;
    rec->argv[2] = (const char *) p;
    p = ngx_sprintf(p, "%ui", nkeys);
    rec->argvlen[2] = p - (u_char *) rec->argv[2];

    for (i = 0; i < n; i++) {
        rec->argv[i + 3] = (const char *) p;
        rec->argvlen[i + 3] = args->argvlen[i];
        p = ngx_cpymem(p, args->argv[i], args->argvlen[i]);
    }

    cmd.argc = rec->argc;
    cmd.argv = rec->argv;
    cmd.argvlen = rec->argvlen;

    return ngx_social_redis_submit(rec, &cmd, 1, 0);
}


ngx_social_redis_listener_t *
ngx_social_redis_subscribe(ngx_str_t *channel, ngx_uint_t pattern,
    ngx_social_redis_message_pt handler, ngx_social_redis_resync_pt resync,
    void *data)
{
    ngx_social_redis_channel_t   *ch;
    ngx_social_redis_listener_t  *l;

    if (!ngx_social_redis_worker.running || channel->len == 0) {
        return NULL;
    }

    l = ngx_calloc(sizeof(ngx_social_redis_listener_t), ngx_cycle->log);
    if (l == NULL) {
        return NULL;
    }

    ch = ngx_social_redis_channel_get(channel, pattern ? 1 : 0);
    if (ch == NULL) {
        ngx_free(l);
        return NULL;
    }

    l->channel = ch;
    l->handler = handler;
    l->resync = resync;
    l->data = data;

    ngx_queue_insert_tail(&ch->listeners, &l->queue);

    return l;
}


/*
 * While the channel's listeners are being called the listener is only
 * marked; the dispatch loop frees it.  After exit_process every listener
 * is already gone and this does nothing.
 */

void
ngx_social_redis_unsubscribe(ngx_social_redis_listener_t *l)
{
    ngx_social_redis_channel_t  *ch;

    if (l == NULL || !ngx_social_redis_worker.running) {
        return;
    }

    ch = l->channel;

    if (ch->busy) {
        l->removed = 1;
        return;
    }

    ngx_queue_remove(&l->queue);
    ngx_free(l);

    if (ngx_queue_empty(&ch->listeners)) {
        ngx_social_redis_channel_release(ch);
    }
}


ngx_uint_t
ngx_social_redis_configured(void)
{
    ngx_social_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_social_redis_module);

    return rmcf != NULL && rmcf->address.len > 0;
}


ngx_uint_t
ngx_social_redis_connected(void)
{
    ngx_social_redis_conn_t  *conn;

    conn = ngx_social_redis_worker.cmd;

    return conn != NULL && conn->state == NGX_SOCIAL_REDIS_READY;
}


void
ngx_social_redis_get_stats(ngx_social_redis_stats_t *stats)
{
    ngx_social_redis_conn_t  *cmd, *sub;

    cmd = ngx_social_redis_worker.cmd;
    sub = ngx_social_redis_worker.sub;

    *stats = ngx_social_redis_worker.stats;

    stats->pending = (cmd != NULL) ? cmd->npending : 0;
    stats->connected = ngx_social_redis_connected();
    stats->subscriber = (sub != NULL
                         && sub->state == NGX_SOCIAL_REDIS_READY);
}


/* connections: lifecycle */

static ngx_social_redis_conn_t *
ngx_social_redis_conn_create(ngx_cycle_t *cycle, const char *name,
    ngx_uint_t subscriber)
{
    ngx_social_redis_conn_t  *conn;

    conn = ngx_calloc(sizeof(ngx_social_redis_conn_t), cycle->log);
    if (conn == NULL) {
        return NULL;
    }

    conn->arena = ngx_social_redis_arena_create();
    if (conn->arena == NULL) {
        ngx_free(conn);
        return NULL;
    }

    conn->name = name;
    conn->subscriber = subscriber;
    ngx_queue_init(&conn->pending);

    conn->timer.handler = ngx_social_redis_timer_handler;
    conn->timer.data = conn;
    conn->timer.log = cycle->log;
    conn->timer.cancelable = 1;

    conn->drop.handler = ngx_social_redis_drop_handler;
    conn->drop.data = conn;
    conn->drop.log = cycle->log;

    return conn;
}


/*
 * exit_process: no handler is called any more; hiredis still calls every
 * callback once (with NULL), which frees the records.
 */

static void
ngx_social_redis_conn_close(ngx_social_redis_conn_t *conn)
{
    ngx_queue_t             *q;
    redisAsyncContext       *ac;
    ngx_social_redis_cmd_t  *rec;

    if (conn == NULL) {
        return;
    }

    for (q = ngx_queue_head(&conn->pending);
         q != ngx_queue_sentinel(&conn->pending);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_social_redis_cmd_t, queue);
        ngx_social_redis_cmd_detach(rec);
    }

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->drop.posted) {
        ngx_delete_posted_event(&conn->drop);
    }

    ac = conn->ac;
    conn->ac = NULL;
    conn->state = NGX_SOCIAL_REDIS_DOWN;

    if (ac != NULL) {
        redisAsyncFree(ac);
    }

    ngx_social_redis_arena_free(conn->arena);
    ngx_free(conn->out.data);
    ngx_free(conn);
}


static void
ngx_social_redis_connect(ngx_social_redis_conn_t *conn)
{
    redisAsyncContext             *ac;
    ngx_social_redis_main_conf_t  *conf;

    conf = ngx_social_redis_worker.conf;

    conn->state = NGX_SOCIAL_REDIS_CONNECTING;
    conn->broken = 0;

    /* no name lookup here: the address was resolved at configuration */

    if (conf->path != NULL) {
        ac = redisAsyncConnectUnix((const char *) conf->path);

    } else {
        ac = redisAsyncConnect((const char *) conf->host, conf->port);
    }

    if (ac == NULL) {
        ngx_social_redis_lost(conn, "out of memory");
        return;
    }

    if (ac->err) {
        ngx_social_redis_lost(conn, ac->errstr);
        redisAsyncFree(ac);
        return;
    }

    if (ngx_social_redis_attach(ac) != NGX_OK) {
        ngx_social_redis_lost(conn, "no free nginx connection");
        redisAsyncFree(ac);
        return;
    }

    ac->data = conn;
    conn->ac = ac;
    conn->last_read = ngx_current_msec;
    ngx_social_redis_arena_attach(conn->arena, ac);

    if (redisAsyncSetConnectCallback(ac, ngx_social_redis_on_connect)
        != REDIS_OK
        || redisAsyncSetDisconnectCallback(ac, ngx_social_redis_on_disconnect)
           != REDIS_OK
        || ngx_social_redis_handshake(conn) != NGX_OK)
    {
        ngx_social_redis_drop(conn, "the handshake could not be queued");
        return;
    }

    ngx_add_timer(&conn->timer, conf->connect_timeout);
}


/*
 * The handshake is queued at once, before the TCP connection completes:
 * commands issued meanwhile are pipelined behind it.
 */

static ngx_int_t
ngx_social_redis_handshake(ngx_social_redis_conn_t *conn)
{
    u_char                         db[NGX_INT_T_LEN];
    size_t                         len[3];
    ngx_uint_t                     n;
    const char                    *argv[3];
    ngx_social_redis_main_conf_t  *conf;

    conf = ngx_social_redis_worker.conf;
    conn->handshake = 0;

    if (conf->password.len) {
        n = 0;
        argv[n] = "AUTH";
        len[n++] = sizeof("AUTH") - 1;

        if (conf->user.len) {
            argv[n] = (const char *) conf->user.data;
            len[n++] = conf->user.len;
        }

        argv[n] = (const char *) conf->password.data;
        len[n++] = conf->password.len;

        if (redisAsyncCommandArgv(conn->ac, ngx_social_redis_handshake_reply,
                                  conn, (int) n, argv, len)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }

        conn->handshake++;
    }

    if (conf->database && !conn->subscriber) {
        argv[0] = "SELECT";
        len[0] = sizeof("SELECT") - 1;
        argv[1] = (const char *) db;
        len[1] = ngx_sprintf(db, "%i", conf->database) - db;

        if (redisAsyncCommandArgv(conn->ac, ngx_social_redis_handshake_reply,
                                  conn, 2, argv, len)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }

        conn->handshake++;
    }

    if (conn->handshake == 0) {
        /* one round trip at least: a connection is ready when Redis is */

        argv[0] = "PING";
        len[0] = sizeof("PING") - 1;

        if (redisAsyncCommandArgv(conn->ac, ngx_social_redis_handshake_reply,
                                  conn, 1, argv, len)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }

        conn->handshake++;
    }

    return NGX_OK;
}


static void
ngx_social_redis_handshake_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply               *reply = r;
    ngx_social_redis_conn_t  *conn = privdata;

    if (reply == NULL || conn->ac != ac) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* hiredis frees the context when this callback returns */
        ngx_social_redis_drop(conn, reply->str);
        return;
    }

    if (--conn->handshake == 0) {
        ngx_social_redis_ready(conn);
    }
}


static void
ngx_social_redis_ready(ngx_social_redis_conn_t *conn)
{
    ngx_social_redis_main_conf_t  *conf;

    conf = ngx_social_redis_worker.conf;

    conn->state = NGX_SOCIAL_REDIS_READY;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->failed || conn->was_ready) {
        ngx_social_redis_worker.stats.reconnects++;

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "social redis: %s connection to \"%V\" is back",
                      conn->name, &conf->address);

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "social redis: %s connection to \"%V\" ready",
                       conn->name, &conf->address);
    }

    conn->failed = 0;
    conn->was_ready = 1;
    conn->backoff = 0;
    conn->last_read = ngx_current_msec;

    if (conn->subscriber) {
        ngx_social_redis_resubscribe(conn);
    }
}


/*
 * Closes the connection from our side.  Inside a hiredis callback
 * redisAsyncFree() only marks the context and hiredis frees it when the
 * callback returns; either way every pending callback gets NULL.
 */

static void
ngx_social_redis_drop(ngx_social_redis_conn_t *conn, const char *reason)
{
    redisAsyncContext  *ac;

    ac = conn->ac;

    ngx_social_redis_lost(conn, reason);

    if (ac != NULL) {
        redisAsyncFree(ac);
    }
}


/*
 * The context is gone or going: forget it and schedule the next attempt.
 * A lost ready connection is retried at once, failed attempts back off
 * from 100 ms doubling to 5 s.  Logged once per outage at "error", later
 * attempts at "info".
 */

static void
ngx_social_redis_lost(ngx_social_redis_conn_t *conn, const char *reason)
{
    ngx_msec_t                     delay;
    ngx_uint_t                     level;
    ngx_queue_t                   *q;
    ngx_social_redis_channel_t    *ch;
    ngx_social_redis_main_conf_t  *conf;

    if (conn->state == NGX_SOCIAL_REDIS_DOWN) {
        return;
    }

    conf = ngx_social_redis_worker.conf;

    if (conn->state == NGX_SOCIAL_REDIS_READY) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "social redis: %s connection to \"%V\" lost: %s",
                      conn->name, &conf->address, reason);
        conn->backoff = 0;

    } else {
        level = conn->failed ? NGX_LOG_INFO : NGX_LOG_ERR;
        ngx_log_error(level, ngx_cycle->log, 0,
                      "social redis: %s connection to \"%V\" failed: %s",
                      conn->name, &conf->address, reason);
        conn->failed = 1;
    }

    conn->ac = NULL;
    conn->state = NGX_SOCIAL_REDIS_DOWN;
    conn->handshake = 0;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    delay = conn->backoff;
    conn->backoff = (delay == 0) ? NGX_SOCIAL_REDIS_BACKOFF_MIN
                    : ngx_min(delay * 2, NGX_SOCIAL_REDIS_BACKOFF_MAX);

    ngx_add_timer(&conn->timer, delay);

    if (!conn->subscriber) {
        return;
    }

    /* listeners may have missed messages: resync them once back */

    for (q = ngx_queue_head(&ngx_social_redis_worker.channels);
         q != ngx_queue_sentinel(&ngx_social_redis_worker.channels);
         q = ngx_queue_next(q))
    {
        ch = ngx_queue_data(q, ngx_social_redis_channel_t, queue);
        ch->resync = 1;
    }
}


/*
 * Commands are accepted when the connection is ready, or while it
 * connects unless the previous attempt failed: after a failure they fail
 * fast instead of waiting for the connect timeout.
 */

static ngx_uint_t
ngx_social_redis_writable(ngx_social_redis_conn_t *conn)
{
    if (conn == NULL || conn->ac == NULL || conn->broken
        || (conn->ac->c.flags & (REDIS_DISCONNECTING|REDIS_FREEING)))
    {
        return 0;
    }

    return conn->state == NGX_SOCIAL_REDIS_READY
           || (conn->state == NGX_SOCIAL_REDIS_CONNECTING && !conn->failed);
}


static void
ngx_social_redis_timer_handler(ngx_event_t *ev)
{
    ngx_social_redis_conn_t  *conn;

    conn = ev->data;

    if (conn->state == NGX_SOCIAL_REDIS_CONNECTING) {
        ngx_social_redis_drop(conn, "connect timed out");
        return;
    }

    ngx_social_redis_connect(conn);
}


static void
ngx_social_redis_drop_handler(ngx_event_t *ev)
{
    ngx_social_redis_conn_t  *conn;

    conn = ev->data;

    if (conn->ac != NULL) {
        ngx_social_redis_drop(conn, "a transaction could not be queued");
    }
}


/* hiredis: the connect attempt failed; it frees the context next */

static void
ngx_social_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_social_redis_conn_t  *conn;

    conn = ac->data;

    if (status != REDIS_OK) {
        ngx_social_redis_lost(conn, ac->errstr);
    }
}


/* hiredis: an established connection ended; never free or connect here */

static void
ngx_social_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_social_redis_conn_t  *conn;

    conn = ac->data;

    ngx_social_redis_lost(conn, (status == REDIS_OK) ? "closed"
                                                     : ac->errstr);
}


/* the event adapter */

static ngx_int_t
ngx_social_redis_attach(redisAsyncContext *ac)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    c->read->handler = ngx_social_redis_read_handler;
    c->write->handler = ngx_social_redis_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    ac->ev.data = c;
    ac->ev.addRead = ngx_social_redis_add_read;
    ac->ev.delRead = ngx_social_redis_del_read;
    ac->ev.addWrite = ngx_social_redis_add_write;
    ac->ev.delWrite = ngx_social_redis_del_write;
    ac->ev.cleanup = ngx_social_redis_cleanup;

    return NGX_OK;
}


static void
ngx_social_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t         *c;
    redisAsyncContext        *ac;
    ngx_social_redis_conn_t  *conn;

    c = rev->data;
    ac = c->data;
    conn = ac->data;

    conn->last_read = ngx_current_msec;

    redisAsyncHandleRead(ac);
}


static void
ngx_social_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t         *c;
    redisAsyncContext        *ac;
    ngx_social_redis_conn_t  *conn;

    c = wev->data;
    ac = c->data;
    conn = ac->data;

    conn->writing = 1;
    redisAsyncHandleWrite(ac);
    conn->writing = 0;
}


static void
ngx_social_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->read->active
        && ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "social redis: could not add a read event");
    }
}


static void
ngx_social_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->read->active
        && ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "social redis: could not delete a read event");
    }
}


/*
 * Commands of one event loop iteration are written together by a posted
 * write event, without a round through epoll; only a write that would
 * block (or a connect in progress) waits for the socket.
 */

static void
ngx_social_redis_add_write(void *privdata)
{
    ngx_connection_t         *c = privdata;
    redisAsyncContext        *ac;
    ngx_social_redis_conn_t  *conn;

    if (c->write->active || c->write->posted) {
        return;
    }

    ac = c->data;
    conn = ac->data;

    if ((ac->c.flags & REDIS_CONNECTED) && !conn->writing) {
        ngx_post_event(c->write, &ngx_posted_events);
        return;
    }

    if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "social redis: could not add a write event");
    }
}


static void
ngx_social_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->write->active
        && ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "social redis: could not delete a write event");
    }
}


/*
 * hiredis is freeing the context and will close the socket itself: only
 * nginx's bookkeeping here.  fd -1 makes stale epoll events of this
 * iteration recognizable, as ngx_close_connection() does.
 */

static void
ngx_social_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    if (ngx_del_conn) {
        ngx_del_conn(c, NGX_CLOSE_EVENT);

    } else {
        if (c->read->active) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }
    }

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;
}


/* command records */

static ngx_social_redis_cmd_t *
ngx_social_redis_cmd_create(ngx_http_request_t *r,
    ngx_social_redis_handler_pt handler, void *data, size_t size)
{
    ngx_http_cleanup_t      *cln;
    ngx_social_redis_cmd_t  *rec;

    rec = ngx_calloc(size, ngx_cycle->log);
    if (rec == NULL) {
        return NULL;
    }

    if (r != NULL) {
        cln = ngx_http_cleanup_add(r, 0);
        if (cln == NULL) {
            ngx_free(rec);
            return NULL;
        }

        cln->handler = ngx_social_redis_cmd_detach;
        cln->data = rec;

        rec->request = r;
        rec->cleanup = cln;
    }

    rec->handler = handler;
    rec->data = data;

    /*
     * The timeout is not cancelable: every command holds a graceful
     * shutdown until its reply (or timeout), background ones too, since
     * requests may wait for them (a batch of checks) and a write's effect
     * should be known before the worker goes.
     */
    rec->event.data = rec;
    rec->event.log = ngx_cycle->log;

    return rec;
}


/*
 * Queues one command, or MULTI, the commands and EXEC, in hiredis's
 * output buffer; they are written at the end of this event loop
 * iteration.  What cannot be sent fails fast from a posted event.
 */

static ngx_int_t
ngx_social_redis_submit(ngx_social_redis_cmd_t *rec,
    ngx_social_redis_argv_t *cmds, ngx_uint_t n, ngx_uint_t multi)
{
    ngx_int_t      rc;
    ngx_uint_t     i;

    static const char    *multi_argv[] = { "MULTI" };
    static const char    *exec_argv[] = { "EXEC" };
    static const size_t   multi_len[] = { sizeof("MULTI") - 1 };
    static const size_t   exec_len[] = { sizeof("EXEC") - 1 };

    rc = multi ? ngx_social_redis_send(rec, 1, multi_argv, multi_len)
               : NGX_OK;

    for (i = 0; rc == NGX_OK && i < n; i++) {
        rc = ngx_social_redis_send(rec, cmds[i].argc, cmds[i].argv,
                                   cmds[i].argvlen);
    }

    if (multi && rc == NGX_OK) {
        rc = ngx_social_redis_send(rec, 1, exec_argv, exec_len);
    }

    if (rec->replies == 0) {
        ngx_social_redis_fail(rec);
        return NGX_OK;
    }

    ngx_social_redis_track(rec);

    if (rc != NGX_OK) {
        /* a half-queued transaction: nothing more may follow it */

        rec->conn->broken = 1;
        ngx_post_event(&rec->conn->drop, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_redis_send(ngx_social_redis_cmd_t *rec, ngx_uint_t argc,
    const char **argv, const size_t *argvlen)
{
    ngx_social_redis_conn_t  *conn;

    conn = ngx_social_redis_worker.cmd;

    if (!ngx_social_redis_writable(conn)) {
        return NGX_DECLINED;
    }

    if (ngx_social_redis_format(conn, argc, argv, argvlen) != NGX_OK
        || redisAsyncFormattedCommand(conn->ac, ngx_social_redis_reply, rec,
                                      (const char *) conn->out.data,
                                      conn->out.len)
           != REDIS_OK)
    {
        return NGX_ERROR;
    }

    rec->replies++;

    return NGX_OK;
}


/* "*<n>\r\n" or "$<n>\r\n", without ngx_sprintf()'s parsing of a format */

static u_char *
ngx_social_redis_format_len(u_char *p, u_char type, size_t n)
{
    u_char   digits[NGX_SIZE_T_LEN];
    u_char  *d;

    d = digits + NGX_SIZE_T_LEN;

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    *p++ = type;
    p = ngx_cpymem(p, d, digits + NGX_SIZE_T_LEN - d);
    *p++ = '\r';
    *p++ = '\n';

    return p;
}


/*
 * The command in RESP into conn->out, which grows as needed: hiredis's
 * own formatting builds each argument with its allocations.
 */

static ngx_int_t
ngx_social_redis_format(ngx_social_redis_conn_t *conn, ngx_uint_t argc,
    const char **argv, const size_t *argvlen)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    /* hiredis finds the arguments with strchr(): a NUL after them */
    len = 1 + NGX_INT_T_LEN + 2 + 1;

    for (i = 0; i < argc; i++) {
        len += 1 + NGX_SIZE_T_LEN + 2 + argvlen[i] + 2;
    }

    if (len > conn->out_size) {
        p = ngx_alloc(ngx_max(len, 2 * conn->out_size), ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_free(conn->out.data);
        conn->out.data = p;
        conn->out_size = ngx_max(len, 2 * conn->out_size);
    }

    p = ngx_social_redis_format_len(conn->out.data, '*', argc);

    for (i = 0; i < argc; i++) {
        p = ngx_social_redis_format_len(p, '$', argvlen[i]);
        p = ngx_cpymem(p, argv[i], argvlen[i]);
        *p++ = '\r';
        *p++ = '\n';
    }

    conn->out.len = p - conn->out.data;
    *p = '\0';

    return NGX_OK;
}


static void
ngx_social_redis_track(ngx_social_redis_cmd_t *rec)
{
    ngx_social_redis_conn_t  *conn;

    conn = ngx_social_redis_worker.cmd;

    rec->conn = conn;
    ngx_queue_insert_tail(&conn->pending, &rec->queue);
    conn->npending++;

    rec->event.handler = ngx_social_redis_cmd_timeout;
    ngx_add_timer(&rec->event, ngx_social_redis_worker.conf->command_timeout);

    ngx_social_redis_worker.stats.commands++;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "social redis: command queued, %ui pending",
                   conn->npending);
}


/* Redis is down or disabled: the handler gets NULL from a posted event */

static void
ngx_social_redis_fail(ngx_social_redis_cmd_t *rec)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "social redis: not connected, the command fails");

    ngx_queue_insert_tail(&ngx_social_redis_worker.failing, &rec->queue);

    rec->event.handler = ngx_social_redis_cmd_failed;
    ngx_post_event(&rec->event, &ngx_posted_events);
}


/* hiredis: one reply (or NULL) for one of the record's commands */

static void
ngx_social_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply              *reply = r;
    ngx_social_redis_cmd_t  *rec = privdata;

    if (--rec->replies > 0) {
        /*
         * MULTI and QUEUED, or a pipeline's replies before its last; the
         * connection may be going away
         */

        if (reply == NULL) {
            ngx_social_redis_complete(rec, NULL);

        } else if (rec->each != NULL && rec->handler != NULL) {
            rec->each(reply, rec->data);
        }

        return;
    }

    ngx_queue_remove(&rec->queue);
    rec->conn->npending--;

    if (reply != NULL && rec->script != NULL && rec->handler != NULL
        && ngx_social_redis_noscript(reply)
        && ngx_social_redis_eval_retry(rec) == NGX_OK)
    {
        return;
    }

    ngx_social_redis_complete(rec, reply);
    ngx_social_redis_cmd_free(rec);
}


/* EVALSHA met NOSCRIPT: once more as EVAL, at the end of the pipeline */

static ngx_int_t
ngx_social_redis_eval_retry(ngx_social_redis_cmd_t *rec)
{
    ngx_social_redis_script_t  *script;

    script = rec->script;
    rec->script = NULL;

    rec->argv[0] = "EVAL";
    rec->argvlen[0] = sizeof("EVAL") - 1;
    rec->argv[1] = (const char *) script->source.data;
    rec->argvlen[1] = script->source.len;

    if (ngx_social_redis_send(rec, rec->argc, rec->argv, rec->argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&rec->conn->pending, &rec->queue);
    rec->conn->npending++;

    return NGX_OK;
}


/*
 * Calls the handler once.  A request-bound handler is unhooked from the
 * request's cleanup first and followed by the request's posted requests.
 */

static void
ngx_social_redis_complete(ngx_social_redis_cmd_t *rec, redisReply *reply)
{
    ngx_connection_t             *c;
    ngx_http_request_t           *r;
    ngx_social_redis_handler_pt   handler;

    handler = rec->handler;

    if (handler == NULL) {
        return;
    }

    rec->handler = NULL;

    if (rec->event.timer_set) {
        ngx_del_timer(&rec->event);
    }

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_social_redis_worker.stats.errors++;
    }

    r = rec->request;

    if (r == NULL) {
        handler(reply, rec->data);
        return;
    }

    rec->request = NULL;
    rec->cleanup->handler = NULL;

    c = r->connection;

    handler(reply, rec->data);

    ngx_http_run_posted_requests(c);
}


/*
 * The handler gets NULL; the record waits for its late reply, which is
 * dropped.  When nothing at all came from Redis for as long, the
 * connection is stalled and is replaced.  A write waits on while Redis
 * answers; a stalled connection gives it NULL as it is replaced.
 */

static void
ngx_social_redis_cmd_timeout(ngx_event_t *ev)
{
    ngx_msec_t                     timeout;
    ngx_uint_t                     stalled;
    ngx_social_redis_cmd_t        *rec;
    ngx_social_redis_conn_t       *conn;

    rec = ev->data;
    conn = rec->conn;
    timeout = ngx_social_redis_worker.conf->command_timeout;

    stalled = (ngx_msec_int_t) (ngx_current_msec - conn->last_read)
              >= (ngx_msec_int_t) timeout;

    if (rec->write && !stalled) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "social redis: a write is late, Redis answers: "
                       "waiting");
        ngx_add_timer(ev, timeout);
        return;
    }

    ngx_social_redis_worker.stats.timeouts++;

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "social redis: no reply within %M ms", timeout);

    if (!rec->write || conn->ac == NULL) {
        ngx_social_redis_complete(rec, NULL);
    }

    if (stalled && conn->ac != NULL) {
        ngx_social_redis_drop(conn, "no reply in time, reconnecting");
    }
}


static void
ngx_social_redis_cmd_failed(ngx_event_t *ev)
{
    ngx_social_redis_cmd_t  *rec;

    rec = ev->data;

    ngx_queue_remove(&rec->queue);

    ngx_social_redis_complete(rec, NULL);
    ngx_social_redis_cmd_free(rec);
}


/* the request is finalized (or the worker exits): no handler call */

static void
ngx_social_redis_cmd_detach(void *data)
{
    ngx_social_redis_cmd_t  *rec = data;

    if (rec->request != NULL) {
        rec->cleanup->handler = NULL;
        rec->request = NULL;
    }

    rec->handler = NULL;

    if (rec->event.timer_set) {
        ngx_del_timer(&rec->event);
    }
}


static void
ngx_social_redis_cmd_free(ngx_social_redis_cmd_t *rec)
{
    if (rec->event.timer_set) {
        ngx_del_timer(&rec->event);
    }

    if (rec->event.posted) {
        ngx_delete_posted_event(&rec->event);
    }

    ngx_free(rec);
}


/* pub/sub and MONITOR would take the shared command connection over */

static ngx_uint_t
ngx_social_redis_argv_allowed(ngx_social_redis_argv_t *cmd)
{
    ngx_uint_t  i;

    static ngx_str_t  refused[] = {
        ngx_string("subscribe"), ngx_string("psubscribe"),
        ngx_string("unsubscribe"), ngx_string("punsubscribe"),
        ngx_string("monitor")
    };

    if (cmd == NULL || cmd->argc == 0) {
        return 0;
    }

    for (i = 0; i < sizeof(refused) / sizeof(ngx_str_t); i++) {
        if (cmd->argvlen[0] == refused[i].len
            && ngx_strncasecmp((u_char *) cmd->argv[0], refused[i].data,
                               refused[i].len)
               == 0)
        {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_social_redis_noscript(redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR
           && reply->len >= sizeof("NOSCRIPT") - 1
           && ngx_strncmp(reply->str, "NOSCRIPT", sizeof("NOSCRIPT") - 1)
              == 0;
}


static ngx_uint_t
ngx_social_redis_str_is(redisReply *e, const char *s, size_t len)
{
    return e->type == REDIS_REPLY_STRING
           && e->len == len
           && ngx_strncmp(e->str, s, len) == 0;
}


/* pub/sub: the channel table */

static ngx_social_redis_channel_t *
ngx_social_redis_channel_get(ngx_str_t *name, ngx_uint_t pattern)
{
    ngx_social_redis_worker_t   *w;
    ngx_social_redis_channel_t  *ch;

    w = &ngx_social_redis_worker;

    ch = ngx_social_redis_channel_find(pattern, (const char *) name->data,
                                       name->len);
    if (ch != NULL) {
        return ch;
    }

    ch = ngx_calloc(sizeof(ngx_social_redis_channel_t) + name->len,
                    ngx_cycle->log);
    if (ch == NULL) {
        return NULL;
    }

    ch->sn.str.data = (u_char *) (ch + 1);
    ch->sn.str.len = name->len;
    ngx_memcpy(ch->sn.str.data, name->data, name->len);
    ch->sn.node.key = ngx_crc32_long(name->data, name->len);
    ch->pattern = pattern;
    ngx_queue_init(&ch->listeners);

    ngx_rbtree_insert(&w->trees[pattern], &ch->sn.node);
    ngx_queue_insert_tail(&w->channels, &ch->queue);
    w->stats.channels++;

    /*
     * Its listeners learn (resync) when the subscription is live: a
     * reader may then look for what it missed without a gap.  Until the
     * connection is ready it is subscribed with the others.
     */
    ch->resync = 1;

    if (w->sub != NULL && w->sub->state == NGX_SOCIAL_REDIS_READY) {
        ngx_social_redis_channel_send(ch, 1);
    }

    return ch;
}


static ngx_social_redis_channel_t *
ngx_social_redis_channel_find(ngx_uint_t pattern, const char *name,
    size_t len)
{
    ngx_str_t        key;
    ngx_str_node_t  *sn;

    key.data = (u_char *) name;
    key.len = len;

    sn = ngx_str_rbtree_lookup(&ngx_social_redis_worker.trees[pattern], &key,
                               ngx_crc32_long(key.data, key.len));

    return (ngx_social_redis_channel_t *) sn;
}


static void
ngx_social_redis_channel_send(ngx_social_redis_channel_t *ch,
    ngx_uint_t subscribe)
{
    size_t                    len[2];
    const char               *argv[2];
    ngx_social_redis_conn_t  *sub;

    sub = ngx_social_redis_worker.sub;

    if (sub == NULL || sub->state != NGX_SOCIAL_REDIS_READY
        || !ngx_social_redis_writable(sub))
    {
        ch->resync = 1;
        return;
    }

    if (subscribe) {
        argv[0] = ch->pattern ? "PSUBSCRIBE" : "SUBSCRIBE";

    } else {
        argv[0] = ch->pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE";
    }

    len[0] = ngx_strlen(argv[0]);
    argv[1] = (const char *) ch->sn.str.data;
    len[1] = ch->sn.str.len;

    if (redisAsyncCommandArgv(sub->ac, ngx_social_redis_sub_reply, sub, 2,
                              argv, len)
        != REDIS_OK)
    {
        ch->resync = 1;
    }
}


/*
 * Calls the channel's listeners (with the message, or their resync
 * callback when message is NULL).  Listeners may unsubscribe any
 * listener meanwhile; those added meanwhile are not called.
 */

static void
ngx_social_redis_channel_dispatch(ngx_social_redis_channel_t *ch,
    ngx_str_t *channel, ngx_str_t *message)
{
    ngx_queue_t                  *q, *last;
    ngx_social_redis_listener_t  *l;

    if (ngx_queue_empty(&ch->listeners)) {
        return;
    }

    ch->busy = 1;
    last = ngx_queue_last(&ch->listeners);

    for (q = ngx_queue_head(&ch->listeners); /* void */ ;
         q = ngx_queue_next(q))
    {
        l = ngx_queue_data(q, ngx_social_redis_listener_t, queue);

        if (!l->removed) {
            if (message != NULL) {
                l->handler(channel, message, l->data);

            } else if (l->resync != NULL) {
                l->resync(l->data);
            }
        }

        if (q == last) {
            break;
        }
    }

    ch->busy = 0;

    ngx_social_redis_channel_sweep(ch);
}


static void
ngx_social_redis_channel_sweep(ngx_social_redis_channel_t *ch)
{
    ngx_queue_t                  *q, *next;
    ngx_social_redis_listener_t  *l;

    for (q = ngx_queue_head(&ch->listeners);
         q != ngx_queue_sentinel(&ch->listeners);
         q = next)
    {
        next = ngx_queue_next(q);
        l = ngx_queue_data(q, ngx_social_redis_listener_t, queue);

        if (l->removed) {
            ngx_queue_remove(q);
            ngx_free(l);
        }
    }

    if (ngx_queue_empty(&ch->listeners)) {
        ngx_social_redis_channel_release(ch);
    }
}


/* the last local listener left: UNSUBSCRIBE and forget the channel */

static void
ngx_social_redis_channel_release(ngx_social_redis_channel_t *ch)
{
    ngx_social_redis_worker_t  *w;

    w = &ngx_social_redis_worker;

    ngx_social_redis_channel_send(ch, 0);

    ngx_rbtree_delete(&w->trees[ch->pattern], &ch->sn.node);
    ngx_queue_remove(&ch->queue);
    w->stats.channels--;

    ngx_free(ch);
}


static void
ngx_social_redis_resubscribe(ngx_social_redis_conn_t *conn)
{
    ngx_social_redis_resubscribe_kind(conn, 0);
    ngx_social_redis_resubscribe_kind(conn, 1);
}


/* every channel (or pattern) of the table, in argv batches */

static void
ngx_social_redis_resubscribe_kind(ngx_social_redis_conn_t *conn,
    ngx_uint_t pattern)
{
    size_t                       len[NGX_SOCIAL_REDIS_BATCH + 1];
    ngx_uint_t                   n;
    const char                  *argv[NGX_SOCIAL_REDIS_BATCH + 1];
    ngx_queue_t                 *q;
    ngx_social_redis_channel_t  *ch;

    argv[0] = pattern ? "PSUBSCRIBE" : "SUBSCRIBE";
    len[0] = ngx_strlen(argv[0]);
    n = 1;

    for (q = ngx_queue_head(&ngx_social_redis_worker.channels);
         /* void */ ;
         q = ngx_queue_next(q))
    {
        if (q != ngx_queue_sentinel(&ngx_social_redis_worker.channels)) {
            ch = ngx_queue_data(q, ngx_social_redis_channel_t, queue);

            if (ch->pattern != pattern) {
                continue;
            }

            argv[n] = (const char *) ch->sn.str.data;
            len[n++] = ch->sn.str.len;

            if (n <= NGX_SOCIAL_REDIS_BATCH) {
                continue;
            }
        }

        if (n > 1
            && redisAsyncCommandArgv(conn->ac, ngx_social_redis_sub_reply,
                                     conn, (int) n, argv, len)
               != REDIS_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "social redis: could not subscribe again");
            return;
        }

        n = 1;

        if (q == ngx_queue_sentinel(&ngx_social_redis_worker.channels)) {
            return;
        }
    }
}


/*
 * hiredis: a pub/sub reply on the subscriber connection.  Listeners are
 * found by name in our table, so hiredis never holds our pointers.
 */

static void
ngx_social_redis_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                  *reply = r;
    ngx_str_t                    channel, message;
    ngx_uint_t                   i;
    redisReply                 **e;
    ngx_social_redis_channel_t  *ch;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 3)
    {
        return;
    }

    e = reply->element;

    for (i = 0; i < 2; i++) {
        if (e[i]->type != REDIS_REPLY_STRING) {
            return;
        }
    }

    if (reply->elements == 3 && e[2]->type == REDIS_REPLY_STRING
        && ngx_social_redis_str_is(e[0], "message", sizeof("message") - 1))
    {
        ch = ngx_social_redis_channel_find(0, e[1]->str, e[1]->len);
        channel.data = (u_char *) e[1]->str;
        channel.len = e[1]->len;
        message.data = (u_char *) e[2]->str;
        message.len = e[2]->len;

    } else if (reply->elements == 4 && e[2]->type == REDIS_REPLY_STRING
               && e[3]->type == REDIS_REPLY_STRING
               && ngx_social_redis_str_is(e[0], "pmessage",
                                          sizeof("pmessage") - 1))
    {
        ch = ngx_social_redis_channel_find(1, e[1]->str, e[1]->len);
        channel.data = (u_char *) e[2]->str;
        channel.len = e[2]->len;
        message.data = (u_char *) e[3]->str;
        message.len = e[3]->len;

    } else {
        /* "subscribe"/"psubscribe": live again, resync if it was not */

        i = ngx_social_redis_str_is(e[0], "psubscribe",
                                    sizeof("psubscribe") - 1);

        if (!i && !ngx_social_redis_str_is(e[0], "subscribe",
                                           sizeof("subscribe") - 1))
        {
            ngx_social_redis_unsubscribed(e);
            return;
        }

        ch = ngx_social_redis_channel_find(i, e[1]->str, e[1]->len);

        if (ch != NULL && ch->resync) {
            ch->resync = 0;
            ngx_social_redis_channel_dispatch(ch, NULL, NULL);
        }

        return;
    }

    if (ch == NULL) {
        return;
    }

    ngx_social_redis_worker.stats.messages++;

    ngx_social_redis_channel_dispatch(ch, &channel, &message);
}


/*
 * An UNSUBSCRIBE answered.  If the channel was subscribed again while it
 * was in flight, hiredis 0.14 has just forgotten the channel (and, when
 * it was the last, that the connection is subscribed): the new SUBSCRIBE
 * would get no reply and its messages would be dropped.  Subscribing once
 * more tells hiredis again; Redis takes the repeat as a no-op.
 */

static void
ngx_social_redis_unsubscribed(redisReply **e)
{
    ngx_uint_t                   p;
    ngx_social_redis_channel_t  *ch;

    p = ngx_social_redis_str_is(e[0], "punsubscribe",
                                sizeof("punsubscribe") - 1);

    if (!p && !ngx_social_redis_str_is(e[0], "unsubscribe",
                                       sizeof("unsubscribe") - 1))
    {
        return;
    }

    ch = ngx_social_redis_channel_find(p, e[1]->str, e[1]->len);

    if (ch != NULL) {
        ngx_social_redis_channel_send(ch, 1);
    }
}


static void
ngx_social_redis_channels_free(void)
{
    ngx_queue_t                  *q, *lq;
    ngx_social_redis_channel_t   *ch;
    ngx_social_redis_listener_t  *l;

    while (!ngx_queue_empty(&ngx_social_redis_worker.channels)) {
        q = ngx_queue_head(&ngx_social_redis_worker.channels);
        ch = ngx_queue_data(q, ngx_social_redis_channel_t, queue);
        ngx_queue_remove(q);

        while (!ngx_queue_empty(&ch->listeners)) {
            lq = ngx_queue_head(&ch->listeners);
            l = ngx_queue_data(lq, ngx_social_redis_listener_t, queue);
            ngx_queue_remove(lq);
            ngx_free(l);
        }

        ngx_free(ch);
    }
}


/* configuration */

/*
 * A name is resolved here, in the master, with a blocking lookup: hiredis
 * 0.14 would resolve it in the worker with getaddrinfo() at each connect.
 */

static char *
ngx_social_redis_address(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_social_redis_main_conf_t *rmcf = conf;

    size_t               len;
    ngx_url_t            u;
    ngx_str_t           *value;
    struct sockaddr_un  *saun;

    if (rmcf->address.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in \"%V\"",
                               u.err, &u.url);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address found for \"%V\"", &u.url);
        return NGX_CONF_ERROR;
    }

    rmcf->address = value[1];

    if (u.addrs[0].sockaddr->sa_family == AF_UNIX) {
        saun = (struct sockaddr_un *) u.addrs[0].sockaddr;
        len = ngx_strlen(saun->sun_path);

        rmcf->path = ngx_pnalloc(cf->pool, len + 1);
        if (rmcf->path == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(rmcf->path, (u_char *) saun->sun_path, len + 1);

        return NGX_CONF_OK;
    }

    rmcf->host = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (rmcf->host == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, rmcf->host,
                        NGX_SOCKADDR_STRLEN, 0);
    rmcf->host[len] = '\0';
    rmcf->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}


static void *
ngx_social_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_social_redis_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_redis_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmcf->address = { 0, NULL };
     *     rmcf->host = NULL;
     *     rmcf->path = NULL;
     *     rmcf->user = { 0, NULL };
     *     rmcf->password = { 0, NULL };
     */

    rmcf->database = NGX_CONF_UNSET;
    rmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->command_timeout = NGX_CONF_UNSET_MSEC;

    return rmcf;
}


static char *
ngx_social_redis_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_social_redis_main_conf_t *rmcf = conf;

    ngx_conf_init_value(rmcf->database, 0);
    ngx_conf_init_msec_value(rmcf->connect_timeout, 1000);
    ngx_conf_init_msec_value(rmcf->command_timeout, 1000);

    if (rmcf->user.len && rmcf->password.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"social_redis_user\" requires "
                      "\"social_redis_password\"");
        return NGX_CONF_ERROR;
    }

    if (rmcf->connect_timeout == 0 || rmcf->command_timeout == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "social redis timeouts must not be zero");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the worker's connections */

static ngx_int_t
ngx_social_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_social_redis_worker_t     *w;
    ngx_social_redis_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    w = &ngx_social_redis_worker;
    ngx_memzero(w, sizeof(ngx_social_redis_worker_t));

    ngx_rbtree_init(&w->trees[0], &w->sentinels[0],
                    ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&w->trees[1], &w->sentinels[1],
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&w->channels);
    ngx_queue_init(&w->failing);

    w->running = 1;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_social_redis_module);

    if (rmcf == NULL || rmcf->address.len == 0) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                       "social redis: no address, disabled");
        return NGX_OK;
    }

    w->conf = rmcf;

    /* the cached time may be that of the configuration's start: the
     * connect timeouts count from now */
    ngx_time_update();

    w->cmd = ngx_social_redis_conn_create(cycle, "command", 0);
    w->sub = ngx_social_redis_conn_create(cycle, "subscriber", 1);

    if (w->cmd == NULL || w->sub == NULL) {
        return NGX_ERROR;
    }

    ngx_social_redis_connect(w->cmd);
    ngx_social_redis_connect(w->sub);

    return NGX_OK;
}


static void
ngx_social_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                *q;
    ngx_social_redis_cmd_t     *rec;
    ngx_social_redis_worker_t  *w;

    w = &ngx_social_redis_worker;

    if (!w->running) {
        return;
    }

    w->running = 0;

    ngx_social_redis_conn_close(w->cmd);
    ngx_social_redis_conn_close(w->sub);
    w->cmd = NULL;
    w->sub = NULL;

    while (!ngx_queue_empty(&w->failing)) {
        q = ngx_queue_head(&w->failing);
        rec = ngx_queue_data(q, ngx_social_redis_cmd_t, queue);
        ngx_queue_remove(q);

        ngx_social_redis_cmd_detach(rec);
        ngx_social_redis_cmd_free(rec);
    }

    ngx_social_redis_channels_free();
}
