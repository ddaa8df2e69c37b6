/*
 * GET /v1/stream: the user's live events over WebSocket (ws.c) or
 * Server-Sent Events (sse.c), served by the worker itself.
 *
 * Once the handshake is answered the HTTP request is freed, as nginx does
 * for a keepalive connection: a stream keeps only its connection and a
 * small structure allocated outside any pool, and reads into one scratch
 * buffer per worker.  Its access log line is written then.
 *
 * Per worker, each user with streams has one Redis subscription to the
 * channel "social:ev:<id>" (ngx_social_events.c), shared by the user's
 * streams of this worker (kept 30 s after the last one leaves, for the
 * reconnect).  An event is encoded once per protocol into a refcounted
 * frame that every local stream of the user queues.
 *
 * Replay without gap or duplicate: a stream waits until the user's
 * subscription is live, then a script reads what followed the stream's
 * last event (?since=, Last-Event-ID, or "now"); live events that arrive
 * meanwhile wait in the stream's pending list and go out after the
 * replay, those already replayed dropped by id.  When the subscription
 * comes back after Redis was away, every stream replays from the last
 * event it delivered.  A since older than what Redis keeps gets
 * stream.reset first, then live events.
 *
 * A stream whose unsent bytes pass social_stream_max_unsent is closed
 * (the client reconnects and replays).
 */

#include "ngx_social_chat.h"


#define NGX_SOCIAL_CHAT_SCRATCH      16384
#define NGX_SOCIAL_CHAT_REPLAY_PAGE  "200"
#define NGX_SOCIAL_CHAT_ENTRY_LEN    (2 * NGX_INT64_LEN + 2)

/* a user's subscription outlives its last stream this long (reconnects) */
#define NGX_SOCIAL_CHAT_LINGER       30000


struct ngx_social_chat_user_s {
    ngx_rbtree_node_t             node;      /* key: the user id */
    ngx_queue_t                   streams;
    ngx_social_redis_listener_t  *listener;
    ngx_event_t                   linger;
    unsigned                      live:1;    /* subscription confirmed */
    unsigned                      busy:1;    /* events being dispatched */
};


static void ngx_social_chat_stream_detach(ngx_event_t *ev);
static void ngx_social_chat_stream_free_request(ngx_connection_t *c);
static ngx_int_t ngx_social_chat_stream_since(ngx_http_request_t *r,
    ngx_social_chat_stream_t *s);
static ngx_int_t ngx_social_chat_user_attach(ngx_social_chat_stream_t *s);
static void ngx_social_chat_user_release(ngx_social_chat_user_t *u);
static void ngx_social_chat_user_expire(ngx_event_t *ev);
static void ngx_social_chat_user_free(ngx_social_chat_user_t *u);
static void ngx_social_chat_user_message(ngx_str_t *channel,
    ngx_str_t *message, void *data);
static void ngx_social_chat_user_resync(void *data);
static void ngx_social_chat_stream_event(ngx_social_chat_stream_t *s,
    ngx_str_t *json, uint64_t id, ngx_social_chat_frame_t **frames);
static void ngx_social_chat_replay(ngx_social_chat_stream_t *s);
static void ngx_social_chat_replayed(redisReply *reply, void *data);
static ngx_int_t ngx_social_chat_replay_entries(ngx_social_chat_stream_t *s,
    redisReply *reply);
static void ngx_social_chat_stream_live(ngx_social_chat_stream_t *s);
static ngx_int_t ngx_social_chat_stream_private(
    ngx_social_chat_stream_t *s, ngx_str_t *json, uint64_t id);
static void ngx_social_chat_out_free(ngx_social_chat_out_t *out);
static void ngx_social_chat_stream_write_handler(ngx_event_t *wev);
static void ngx_social_chat_stream_timer(ngx_event_t *ev);
static ngx_int_t ngx_social_chat_stream_bound(ngx_social_chat_stream_t *s);
static void ngx_social_chat_stream_free(ngx_social_chat_stream_t *s);
static ngx_int_t ngx_social_chat_stream_refuse(ngx_http_request_t *r,
    ngx_social_chat_stream_t *s, ngx_int_t status, const char *message,
    json_t *fields);
static ngx_int_t ngx_social_chat_entry_id(u_char *p, size_t len,
    uint64_t *id);


/*
 * KEYS: the user's stream and last-id key; ARGV: since, count, and "1"
 * when since is a time rather than an event the client saw (then there
 * is no chain to check).  {last}: nothing followed; {last, "reset"}: what
 * followed is not all held; {last, "", id, event, ...}: what followed.
 */
static ngx_social_redis_script_t  ngx_social_chat_replay_script = {
    ngx_string(
        "local last = redis.call('GET', KEYS[2]) or '0-0' "
        "if ARGV[1] == last then return {last} end "
        "local e = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', "
        "                     'COUNT', ARGV[2]) "
        "if ARGV[3] == '' and (#e == 0 or e[1][2][2] ~= ARGV[1]) then "
        "  return {last, 'reset'} "
        "end "
        "local out = {last, ''} "
        "for i = 1, #e do "
        "  out[#out + 1] = e[i][1] "
        "  out[#out + 1] = e[i][2][4] "
        "end "
        "return out"),
    { 0 }, 0
};


static ngx_str_t  ngx_social_chat_reset =
    ngx_string("{\"event\":\"stream.reset\",\"data\":{}}");


static ngx_rbtree_t                  ngx_social_chat_users;
static ngx_rbtree_node_t             ngx_social_chat_sentinel;
static u_char                       *ngx_social_chat_scratch;

/* the data of the users' timers, for nginx's debug log (fd -1) */
static ngx_connection_t              ngx_social_chat_dummy;

ngx_social_chat_main_conf_t         *ngx_social_chat_conf;


ngx_int_t
ngx_social_chat_stream_init(ngx_conf_t *cf)
{
    return ngx_social_redis_script_register(cf,
                                            &ngx_social_chat_replay_script);
}


ngx_int_t
ngx_social_chat_stream_init_process(ngx_cycle_t *cycle)
{
    ngx_social_chat_conf = ngx_http_cycle_get_module_main_conf(cycle,
                                                      ngx_social_chat_module);

    ngx_rbtree_init(&ngx_social_chat_users, &ngx_social_chat_sentinel,
                    ngx_rbtree_insert_value);

    ngx_social_chat_dummy.fd = (ngx_socket_t) -1;

    ngx_social_chat_scratch = ngx_alloc(NGX_SOCIAL_CHAT_SCRATCH, cycle->log);
    if (ngx_social_chat_scratch == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the worker ends: every stream closes (WebSocket: 1001) */

void
ngx_social_chat_stream_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t               *q;
    ngx_rbtree_node_t         *node;
    ngx_social_chat_user_t    *u;
    ngx_social_chat_stream_t  *s;

    while (ngx_social_chat_users.root != &ngx_social_chat_sentinel) {
        node = ngx_rbtree_min(ngx_social_chat_users.root,
                              &ngx_social_chat_sentinel);
        u = (ngx_social_chat_user_t *) node;

        if (ngx_queue_empty(&u->streams)) {
            ngx_social_chat_user_free(u);
            continue;
        }

        q = ngx_queue_head(&u->streams);
        s = ngx_queue_data(q, ngx_social_chat_stream_t, queue);

        if (s->ws != NULL && s->state != NGX_SOCIAL_CHAT_CLOSING) {
            ngx_social_chat_ws_close(s, 1001, "the server is going away");
        }

        ngx_social_chat_stream_close(s);
    }

    ngx_free(ngx_social_chat_scratch);
    ngx_social_chat_scratch = NULL;
}


u_char *
ngx_social_chat_stream_scratch(size_t *size)
{
    *size = NGX_SOCIAL_CHAT_SCRATCH;
    return ngx_social_chat_scratch;
}


/* the route: checks, the handshake answer queued, then the takeover */

ngx_int_t
ngx_social_chat_stream(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_str_t                  response;
    const char                *error;
    ngx_table_elt_t           *h;
    ngx_connection_t          *c;
    ngx_social_chat_frame_t   *frame;
    ngx_social_chat_stream_t  *s;

    c = r->connection;

    if (r->method != NGX_HTTP_GET) {
        return ngx_social_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "a stream is a GET", NULL);
    }

    if (r != r->main || r->http_version > NGX_HTTP_VERSION_11
        || r->headers_in.content_length_n > 0 || r->headers_in.chunked)
    {
        return ngx_social_send_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                     "a stream is a bodiless HTTP/1.1 GET",
                                     NULL);
    }

    s = ngx_calloc(sizeof(ngx_social_chat_stream_t), c->log);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->connection = c;
    s->user_id = ctx->user_id;
    s->out_last = &s->out;
    s->pending_last = &s->pending;
    ngx_queue_init(&s->queue);

    if (ngx_social_chat_header(r, "Upgrade") != NULL
        || ngx_social_chat_header(r, "Sec-WebSocket-Key") != NULL)
    {
        s->ws = ngx_calloc(sizeof(ngx_social_chat_ws_t), c->log);
        if (s->ws == NULL) {
            return ngx_social_chat_stream_refuse(r, s,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR,
                                             NULL, NULL);
        }

        rc = ngx_social_chat_ws_handshake(r, &response, &error);
        if (rc != NGX_OK) {
            return ngx_social_chat_stream_refuse(r, s, rc, error, NULL);
        }

    } else {
        h = ngx_social_chat_header(r, "Accept");

        if (h == NULL
            || ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                                (u_char *) "text/event-stream",
                                sizeof("text/event-stream") - 2)
               == NULL)
        {
            return ngx_social_chat_stream_refuse(r, s, NGX_HTTP_BAD_REQUEST,
                                             "a stream is a WebSocket "
                                             "upgrade or asks for "
                                             "text/event-stream", NULL);
        }

        rc = ngx_social_chat_sse_response(r, &response);
        if (rc != NGX_OK) {
            return ngx_social_chat_stream_refuse(r, s, rc, NULL, NULL);
        }
    }

    if (ngx_social_chat_stream_since(r, s) != NGX_OK) {
        return ngx_social_chat_stream_refuse(r, s, 422,
                                         "the stream position is invalid",
                                         json_pack("{s:s}",
                                                   s->ws ? "since"
                                                         : "Last-Event-ID",
                                                   "is not a stream id"));
    }

    frame = ngx_social_chat_frame_alloc(response.len);
    if (frame == NULL) {
        return ngx_social_chat_stream_refuse(r, s,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR,
                                             NULL, NULL);
    }

    ngx_memcpy(frame->data, response.data, response.len);
    rc = ngx_social_chat_stream_queue(s, frame, 0);
    ngx_social_chat_frame_release(frame);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * The request is freed outside its own call chain: the takeover waits
     * for the next turn of the event loop (or any event of the
     * connection before it).
     */

    ngx_http_set_ctx(r, s, ngx_social_chat_module);

    r->main->count++;
    r->headers_out.status = s->ws ? NGX_HTTP_SWITCHING_PROTOCOLS
                                  : NGX_HTTP_OK;

    c->read->handler = ngx_social_chat_stream_detach;
    c->write->handler = ngx_social_chat_stream_detach;
    ngx_post_event(c->write, &ngx_posted_events);

    return NGX_DONE;
}


static ngx_int_t
ngx_social_chat_stream_refuse(ngx_http_request_t *r,
    ngx_social_chat_stream_t *s, ngx_int_t status, const char *message,
    json_t *fields)
{
    if (s->ws != NULL) {
        ngx_free(s->ws);
    }

    ngx_free(s);

    if (message == NULL) {
        json_decref(fields);
        return status;
    }

    return ngx_social_send_error(r, status,
                                 status == NGX_SOCIAL_CHAT_UPGRADE_REQUIRED
                                 ? "upgrade_required"
                                 : status == 422 ? "validation_failed"
                                                 : "bad_request",
                                 message, fields);
}


/* ?since= (or Last-Event-ID for Server-Sent Events): the last event seen */

static ngx_int_t
ngx_social_chat_stream_since(ngx_http_request_t *r,
    ngx_social_chat_stream_t *s)
{
    off_t             n;
    ngx_str_t         since;
    ngx_time_t       *tp;
    ngx_table_elt_t  *h;

    h = (s->ws == NULL) ? ngx_social_chat_header(r, "Last-Event-ID") : NULL;

    if (h != NULL) {
        since = h->value;

    } else if (ngx_http_arg(r, (u_char *) "since", 5, &since) != NGX_OK) {

        /*
         * From the connection on: what the user's stream holds from a
         * second before now (the clocks of nodes and Redis may differ).
         */

        tp = ngx_timeofday();
        s->fresh = 1;
        s->last = ((uint64_t) tp->sec * 1000 + tp->msec - 1000)
                  * NGX_SOCIAL_CHAT_ID_SEQ;
        return NGX_OK;
    }

    n = (since.len > 0 && since.len <= 19)
        ? ngx_atoof(since.data, since.len) : NGX_ERROR;

    if (n == NGX_ERROR) {
        return NGX_DECLINED;
    }

    s->last = (uint64_t) n;

    return NGX_OK;
}


static void
ngx_social_chat_stream_detach(ngx_event_t *ev)
{
    u_char                    *p;
    size_t                     n, size;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_social_chat_stream_t  *s;

    c = ev->data;
    r = c->data;
    s = ngx_http_get_module_ctx(r, ngx_social_chat_module);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* frames a client sent with its handshake are in the header buffer */

    p = ngx_social_chat_stream_scratch(&size);
    n = 0;

    if (s->ws != NULL && r->header_in->last > r->header_in->pos) {
        n = ngx_min((size_t) (r->header_in->last - r->header_in->pos), size);
        ngx_memcpy(p, r->header_in->pos, n);
    }

    ngx_social_chat_stream_free_request(c);

    c->data = s;
    c->idle = 1;
    c->log->action = "streaming events";
    c->read->handler = s->ws ? ngx_social_chat_ws_read
                             : ngx_social_chat_sse_read;
    c->write->handler = ngx_social_chat_stream_write_handler;

    s->timer.handler = ngx_social_chat_stream_timer;
    s->timer.data = c;
    s->timer.log = c->log;
    s->timer.cancelable = 1;
    s->alive = 1;

    ngx_social_metrics_streams(1);

    if (ngx_social_chat_user_attach(s) != NGX_OK) {
        ngx_social_chat_stream_close(s);
        return;
    }

    ngx_add_timer(&s->timer, ngx_social_chat_conf->ping_interval);

    if (ngx_social_chat_stream_write(s) != NGX_OK) {
        return;
    }

    if (n && (ngx_social_chat_ws_input(s, p, n) == NGX_ERROR
              || c->destroyed))
    {
        return;
    }

    c->read->handler(c->read);
}


/*
 * The request goes (its log line is written), and so do the header
 * buffers: the connection keeps only its own small pool.
 */

static void
ngx_social_chat_stream_free_request(ngx_connection_t *c)
{
    ngx_chain_t            *cl;
    ngx_http_request_t     *r;
    ngx_http_connection_t  *hc;

    r = c->data;
    hc = r->http_connection;

    r->keepalive = 0;

    ngx_http_free_request(r, 0);

    c->destroyed = 0;

    if (ngx_pfree(c->pool, c->buffer->start) == NGX_OK) {
        c->buffer->pos = NULL;
    }

    for (cl = hc->busy; cl; cl = cl->next) {
        (void) ngx_pfree(c->pool, cl->buf->start);
    }

    for (cl = hc->free; cl; cl = cl->next) {
        (void) ngx_pfree(c->pool, cl->buf->start);
    }

    hc->busy = NULL;
    hc->free = NULL;
    hc->nbusy = 0;
}


ngx_table_elt_t *
ngx_social_chat_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/* users: one subscription per user and worker, shared by its streams */

static ngx_int_t
ngx_social_chat_user_attach(ngx_social_chat_stream_t *s)
{
    u_char                   buf[sizeof("social:ev:") + NGX_INT64_LEN];
    ngx_str_t                channel;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_social_chat_user_t  *u;

    node = ngx_social_chat_users.root;
    sentinel = ngx_social_chat_users.sentinel;
    u = NULL;

    while (node != sentinel) {
        if ((ngx_rbtree_key_t) s->user_id == node->key) {
            u = (ngx_social_chat_user_t *) node;
            break;
        }

        node = ((ngx_rbtree_key_t) s->user_id < node->key) ? node->left
                                                           : node->right;
    }

    if (u == NULL) {
        u = ngx_calloc(sizeof(ngx_social_chat_user_t), s->connection->log);
        if (u == NULL) {
            return NGX_ERROR;
        }

        channel.data = buf;
        channel.len = ngx_sprintf(buf, "social:ev:%L", s->user_id) - buf;

        u->listener = ngx_social_redis_subscribe(&channel, 0,
                                                ngx_social_chat_user_message,
                                                ngx_social_chat_user_resync,
                                                u);
        if (u->listener == NULL) {
            ngx_free(u);
            return NGX_ERROR;
        }

        u->node.key = (ngx_rbtree_key_t) s->user_id;
        u->linger.handler = ngx_social_chat_user_expire;
        u->linger.data = &ngx_social_chat_dummy;
        u->linger.log = ngx_cycle->log;
        u->linger.cancelable = 1;
        ngx_queue_init(&u->streams);
        ngx_rbtree_insert(&ngx_social_chat_users, &u->node);
    }

    if (u->linger.timer_set) {
        ngx_del_timer(&u->linger);
    }

    s->user = u;
    ngx_queue_insert_tail(&u->streams, &s->queue);

    if (u->live) {
        ngx_social_chat_replay(s);
    }

    return NGX_OK;
}


/*
 * The last stream left: the subscription stays a while for a reconnect
 * (which then replays at once), and avoids churning SUBSCRIBE and
 * UNSUBSCRIBE of the same channel.
 */

static void
ngx_social_chat_user_release(ngx_social_chat_user_t *u)
{
    if (u->busy || !ngx_queue_empty(&u->streams)) {
        return;
    }

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        ngx_social_chat_user_free(u);
        return;
    }

    if (!u->linger.timer_set) {
        ngx_add_timer(&u->linger, NGX_SOCIAL_CHAT_LINGER);
    }
}


static void
ngx_social_chat_user_expire(ngx_event_t *ev)
{
    ngx_social_chat_user_t  *u;

    u = (ngx_social_chat_user_t *) ((u_char *) ev
                                    - offsetof(ngx_social_chat_user_t,
                                               linger));

    if (u->busy || !ngx_queue_empty(&u->streams)) {
        return;
    }

    ngx_social_chat_user_free(u);
}


static void
ngx_social_chat_user_free(ngx_social_chat_user_t *u)
{
    if (u->linger.timer_set) {
        ngx_del_timer(&u->linger);
    }

    ngx_social_redis_unsubscribe(u->listener);
    ngx_rbtree_delete(&ngx_social_chat_users, &u->node);
    ngx_free(u);
}


/* the subscription is live (first, or again after Redis was away) */

static void
ngx_social_chat_user_resync(void *data)
{
    ngx_social_chat_user_t  *u = data;

    ngx_queue_t               *q, *next;
    ngx_social_chat_stream_t  *s;

    u->live = 1;
    u->busy = 1;

    for (q = ngx_queue_head(&u->streams);
         q != ngx_queue_sentinel(&u->streams);
         q = next)
    {
        next = ngx_queue_next(q);
        s = ngx_queue_data(q, ngx_social_chat_stream_t, queue);

        if (s->state == NGX_SOCIAL_CHAT_CLOSING) {
            continue;
        }

        if (s->busy) {
            s->again = 1;
            continue;
        }

        s->state = NGX_SOCIAL_CHAT_REPLAYING;
        ngx_social_chat_replay(s);
    }

    u->busy = 0;
    ngx_social_chat_user_release(u);
}


/* "<entry id> <event JSON>", or "- <event JSON>" for an ephemeral one */

static void
ngx_social_chat_user_message(ngx_str_t *channel, ngx_str_t *message,
    void *data)
{
    ngx_social_chat_user_t  *u = data;

    u_char                   *sp;
    uint64_t                  id;
    ngx_str_t                 json;
    ngx_queue_t              *q, *next;
    ngx_social_chat_frame_t  *frames[2];

    sp = ngx_strlchr(message->data, message->data + message->len, ' ');
    if (sp == NULL) {
        return;
    }

    id = 0;

    if (!(sp - message->data == 1 && message->data[0] == '-')
        && ngx_social_chat_entry_id(message->data, sp - message->data, &id)
           != NGX_OK)
    {
        return;
    }

    json.data = sp + 1;
    json.len = message->data + message->len - json.data;

    frames[0] = NULL;
    frames[1] = NULL;
    u->busy = 1;

    for (q = ngx_queue_head(&u->streams);
         q != ngx_queue_sentinel(&u->streams);
         q = next)
    {
        next = ngx_queue_next(q);

        ngx_social_chat_stream_event(ngx_queue_data(q,
                                         ngx_social_chat_stream_t, queue),
                                     &json, id, frames);
    }

    ngx_social_chat_frame_release(frames[0]);
    ngx_social_chat_frame_release(frames[1]);

    u->busy = 0;
    ngx_social_chat_user_release(u);
}


/* frames[0] (WebSocket) and frames[1] (SSE) are encoded on first need */

static void
ngx_social_chat_stream_event(ngx_social_chat_stream_t *s, ngx_str_t *json,
    uint64_t id, ngx_social_chat_frame_t **frames)
{
    ngx_uint_t                i;
    ngx_social_chat_out_t    *out;
    ngx_social_chat_frame_t  *frame;

    if (s->state == NGX_SOCIAL_CHAT_CLOSING
        || (id == 0 && s->state != NGX_SOCIAL_CHAT_LIVE)
        || (id != 0 && s->state == NGX_SOCIAL_CHAT_LIVE && id <= s->last))
    {
        return;
    }

    i = s->ws ? 0 : 1;

    if (frames[i] == NULL) {
        frames[i] = s->ws ? ngx_social_chat_ws_event(json, id)
                          : ngx_social_chat_sse_event(json, id);
        if (frames[i] == NULL) {
            ngx_social_chat_stream_close(s);
            return;
        }
    }

    frame = frames[i];

    if (s->state == NGX_SOCIAL_CHAT_LIVE) {
        if (id) {
            s->last = id;
            s->fresh = 0;
        }

        if (ngx_social_chat_stream_queue(s, frame, id) == NGX_OK) {
            (void) ngx_social_chat_stream_write(s);
        }

        return;
    }

    /* replaying, or waiting to: after the replay, unless replayed */

    out = ngx_alloc(sizeof(ngx_social_chat_out_t), s->connection->log);
    if (out == NULL) {
        ngx_social_chat_stream_close(s);
        return;
    }

    out->next = NULL;
    out->frame = frame;
    out->id = id;
    frame->refs++;

    *s->pending_last = out;
    s->pending_last = &out->next;
    s->unsent += frame->len;

    (void) ngx_social_chat_stream_bound(s);
}


static void
ngx_social_chat_replay(ngx_social_chat_stream_t *s)
{
    u_char                   keys[2][sizeof("social:evl:") + NGX_INT64_LEN];
    u_char                   since[NGX_SOCIAL_CHAT_ENTRY_LEN];
    size_t                   len[5];
    const char              *argv[5];
    ngx_social_redis_argv_t  args;

    argv[0] = (const char *) keys[0];
    len[0] = ngx_sprintf(keys[0], "social:ev:%L", s->user_id) - keys[0];
    argv[1] = (const char *) keys[1];
    len[1] = ngx_sprintf(keys[1], "social:evl:%L", s->user_id) - keys[1];

    argv[2] = (const char *) since;
    len[2] = ngx_sprintf(since, "%uL-%uL", s->last / NGX_SOCIAL_CHAT_ID_SEQ,
                         s->last % NGX_SOCIAL_CHAT_ID_SEQ)
             - since;

    argv[3] = NGX_SOCIAL_CHAT_REPLAY_PAGE;
    len[3] = sizeof(NGX_SOCIAL_CHAT_REPLAY_PAGE) - 1;

    argv[4] = s->fresh ? "1" : "";
    len[4] = s->fresh ? 1 : 0;

    args.argc = 5;
    args.argv = argv;
    args.argvlen = len;

    s->state = NGX_SOCIAL_CHAT_REPLAYING;

    if (ngx_social_redis_eval(NULL, &ngx_social_chat_replay_script, 2, &args,
                              ngx_social_chat_replayed, s)
        != NGX_OK)
    {
        /* Redis is away: the resync of its return replays */
        s->state = NGX_SOCIAL_CHAT_WAITING;
        return;
    }

    s->busy = 1;
}


static void
ngx_social_chat_replayed(redisReply *reply, void *data)
{
    ngx_social_chat_stream_t  *s = data;

    ngx_int_t  rc;

    /* s->busy holds the structure while the reply is read */

    if (s->freed) {
        ngx_free(s);
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 1)
    {
        ngx_log_error(NGX_LOG_WARN, s->connection->log, 0,
                      "social: stream replay failed: %s",
                      reply && reply->type == REDIS_REPLY_ERROR
                      ? reply->str : "no answer");

        /* again in a second, or at the resync once Redis is back */
        s->busy = 0;
        s->state = NGX_SOCIAL_CHAT_WAITING;

        if (ngx_social_redis_connected()) {
            s->retry = 1;

            if (s->timer.timer_set) {
                ngx_del_timer(&s->timer);
            }

            ngx_add_timer(&s->timer, 1000);
        }

        return;
    }

    rc = ngx_social_chat_replay_entries(s, reply);

    s->busy = 0;

    if (s->freed) {
        ngx_free(s);
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_social_chat_stream_close(s);
        return;
    }

    if (s->state == NGX_SOCIAL_CHAT_CLOSING) {
        return;
    }

    if (rc == NGX_AGAIN || s->again) {
        /* a full page, or Redis came back meanwhile: read on */
        s->again = 0;
        ngx_social_chat_replay(s);
        return;
    }

    ngx_social_chat_stream_live(s);
}


/* NGX_OK: replayed to the end; NGX_AGAIN: a full page, more may follow */

static ngx_int_t
ngx_social_chat_replay_entries(ngx_social_chat_stream_t *s,
    redisReply *reply)
{
    size_t        i;
    uint64_t      id, last;
    ngx_str_t     json;
    redisReply  **e;

    e = reply->element;

    for (i = 0; i < reply->elements; i++) {
        if (e[i]->type != REDIS_REPLY_STRING) {
            return NGX_ERROR;
        }
    }

    if (ngx_social_chat_entry_id((u_char *) e[0]->str, e[0]->len, &last)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (reply->elements == 1) {
        return NGX_OK;
    }

    if (e[1]->len) {
        /* what followed since is gone: the client refetches by HTTP */
        s->last = last;
        return ngx_social_chat_stream_private(s, &ngx_social_chat_reset, 0);
    }

    for (i = 2; i + 1 < reply->elements; i += 2) {
        if (ngx_social_chat_entry_id((u_char *) e[i]->str, e[i]->len, &id)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (id <= s->last) {
            continue;
        }

        json.data = (u_char *) e[i + 1]->str;
        json.len = e[i + 1]->len;

        s->last = id;
        s->fresh = 0;

        if (ngx_social_chat_stream_private(s, &json, id) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ((reply->elements - 2) / 2
            == (size_t) ngx_atoi((u_char *) NGX_SOCIAL_CHAT_REPLAY_PAGE,
                                 sizeof(NGX_SOCIAL_CHAT_REPLAY_PAGE) - 1))
           ? NGX_AGAIN : NGX_OK;
}


/* replayed: the events that came meanwhile follow, unless replayed */

static void
ngx_social_chat_stream_live(ngx_social_chat_stream_t *s)
{
    ngx_social_chat_out_t  *out, *next;

    out = s->pending;
    s->pending = NULL;
    s->pending_last = &s->pending;
    s->state = NGX_SOCIAL_CHAT_LIVE;

    for ( /* void */ ; out; out = next) {
        next = out->next;
        s->unsent -= out->frame->len;

        if ((out->id > s->last || out->id == 0) && s->connection != NULL) {
            if (out->id) {
                s->last = out->id;
                s->fresh = 0;
            }

            (void) ngx_social_chat_stream_queue(s, out->frame, out->id);
        }

        ngx_social_chat_out_free(out);
    }

    (void) ngx_social_chat_stream_write(s);
}


/* an event for this stream alone (replayed, or stream.reset) */

static ngx_int_t
ngx_social_chat_stream_private(ngx_social_chat_stream_t *s, ngx_str_t *json,
    uint64_t id)
{
    ngx_int_t                 rc;
    ngx_social_chat_frame_t  *frame;

    frame = s->ws ? ngx_social_chat_ws_event(json, id)
                  : ngx_social_chat_sse_event(json, id);

    if (frame == NULL) {
        ngx_social_chat_stream_close(s);
        return NGX_ERROR;
    }

    rc = ngx_social_chat_stream_queue(s, frame, id);
    ngx_social_chat_frame_release(frame);

    return rc;
}


/* frames */

ngx_social_chat_frame_t *
ngx_social_chat_frame_alloc(size_t len)
{
    ngx_social_chat_frame_t  *frame;

    frame = ngx_alloc(sizeof(ngx_social_chat_frame_t) + len, ngx_cycle->log);
    if (frame == NULL) {
        return NULL;
    }

    frame->refs = 1;
    frame->len = len;
    frame->data = (u_char *) (frame + 1);

    return frame;
}


void
ngx_social_chat_frame_release(ngx_social_chat_frame_t *frame)
{
    if (frame != NULL && --frame->refs == 0) {
        ngx_free(frame);
    }
}


static void
ngx_social_chat_out_free(ngx_social_chat_out_t *out)
{
    ngx_social_chat_frame_release(out->frame);
    ngx_free(out);
}


/* output */

/* NGX_ERROR: the stream is closed (no memory, or past its bound) */

ngx_int_t
ngx_social_chat_stream_queue(ngx_social_chat_stream_t *s,
    ngx_social_chat_frame_t *frame, uint64_t id)
{
    ngx_social_chat_out_t  *out;

    if (s->connection == NULL) {
        return NGX_ERROR;
    }

    if (s->state == NGX_SOCIAL_CHAT_CLOSING) {
        /* after the close frame nothing more */
        return NGX_OK;
    }

    out = ngx_alloc(sizeof(ngx_social_chat_out_t), s->connection->log);
    if (out == NULL) {
        ngx_social_chat_stream_close(s);
        return NGX_ERROR;
    }

    out->next = NULL;
    out->frame = frame;
    out->id = id;
    frame->refs++;

    *s->out_last = out;
    s->out_last = &out->next;
    s->unsent += frame->len;

    return ngx_social_chat_stream_bound(s);
}


/* past the bound of unsent bytes the stream goes: it reconnects */

static ngx_int_t
ngx_social_chat_stream_bound(ngx_social_chat_stream_t *s)
{
    if (s->unsent <= ngx_social_chat_conf->max_unsent) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                  "social: stream of user %L closed: %uz bytes unsent",
                  s->user_id, s->unsent);

    ngx_social_chat_stream_close(s);

    return NGX_ERROR;
}


static void
ngx_social_chat_stream_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c;

    c = wev->data;

    (void) ngx_social_chat_stream_write(c->data);
}


/*
 * Sends what the socket takes.  A closing WebSocket whose close frame is
 * out shuts its side and waits for the client's.  NGX_ERROR: closed.
 */

ngx_int_t
ngx_social_chat_stream_write(ngx_social_chat_stream_t *s)
{
    ssize_t                   n;
    ngx_connection_t         *c;
    ngx_social_chat_out_t    *out;
    ngx_social_chat_frame_t  *frame;

    c = s->connection;

    if (c == NULL) {
        return NGX_ERROR;
    }

    if (s->shut) {
        return NGX_OK;
    }

    while (s->out != NULL) {
        out = s->out;
        frame = out->frame;

        n = c->send(c, frame->data + s->pos, frame->len - s->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_social_chat_stream_close(s);
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        if (n == NGX_ERROR) {
            ngx_social_chat_stream_close(s);
            return NGX_ERROR;
        }

        s->pos += n;
        s->unsent -= n;
        s->alive |= (s->ws == NULL);

        if (s->pos < frame->len) {
            continue;
        }

        s->pos = 0;
        s->out = out->next;

        if (s->out == NULL) {
            s->out_last = &s->out;
        }

        ngx_social_chat_out_free(out);
    }

    if (s->state != NGX_SOCIAL_CHAT_CLOSING) {
        return NGX_OK;
    }

    if (s->ws == NULL || c->ssl) {
        ngx_social_chat_stream_close(s);
        return NGX_ERROR;
    }

    /* WebSocket: the close frame is out; wait for the client's end */

    if (ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1) {
        ngx_social_chat_stream_close(s);
        return NGX_ERROR;
    }

    s->shut = 1;

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    ngx_add_timer(&s->timer, ngx_social_chat_conf->close_timeout);

    return NGX_OK;
}


/* every ping interval: a ping (or heartbeat); a silent client goes */

static void
ngx_social_chat_stream_timer(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_social_chat_stream_t  *s;

    c = ev->data;
    s = c->data;

    if (s->retry) {
        s->retry = 0;
        ngx_add_timer(&s->timer, ngx_social_chat_conf->ping_interval);

        if (s->state == NGX_SOCIAL_CHAT_WAITING && !s->busy
            && s->user != NULL && s->user->live)
        {
            ngx_social_chat_replay(s);
        }

        return;
    }

    if (s->state == NGX_SOCIAL_CHAT_CLOSING || !s->alive) {
        ngx_social_chat_stream_close(s);
        return;
    }

    s->alive = 0;

    if (s->ws) {
        ngx_social_chat_ws_ping(s);

    } else {
        ngx_social_chat_sse_heartbeat(s);
    }

    if (s->connection != NULL && s->state != NGX_SOCIAL_CHAT_CLOSING) {
        ngx_add_timer(&s->timer, ngx_social_chat_conf->ping_interval);
    }
}


/*
 * Closes the connection and frees what the stream holds; the structure
 * itself waits for a Redis answer still due.
 */

void
ngx_social_chat_stream_close(ngx_social_chat_stream_t *s)
{
    ngx_connection_t  *c;

    c = s->connection;

    if (c == NULL) {
        return;
    }

    s->connection = NULL;
    s->state = NGX_SOCIAL_CHAT_CLOSING;

    if (s->user != NULL) {
        ngx_queue_remove(&s->queue);
        ngx_social_chat_user_release(s->user);
        s->user = NULL;
        ngx_social_metrics_streams(-1);

    } else if (c->data == s) {
        ngx_social_metrics_streams(-1);
    }

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    ngx_social_chat_stream_free(s);

    ngx_http_close_connection(c);

    if (s->busy) {
        s->freed = 1;
        return;
    }

    ngx_free(s);
}


static void
ngx_social_chat_stream_free(ngx_social_chat_stream_t *s)
{
    ngx_social_chat_out_t  *out, *next;

    for (out = s->out; out; out = next) {
        next = out->next;
        ngx_social_chat_out_free(out);
    }

    for (out = s->pending; out; out = next) {
        next = out->next;
        ngx_social_chat_out_free(out);
    }

    s->out = NULL;
    s->pending = NULL;

    if (s->ws != NULL) {
        ngx_social_chat_ws_free(s);
        ngx_free(s->ws);
        s->ws = NULL;
    }
}


/* "1733400000000-3" -> 1733400000000000003 */

static ngx_int_t
ngx_social_chat_entry_id(u_char *p, size_t len, uint64_t *id)
{
    u_char    *dash;
    off_t      ms;
    ngx_int_t  seq;

    dash = ngx_strlchr(p, p + len, '-');
    if (dash == NULL) {
        return NGX_ERROR;
    }

    ms = ngx_atoof(p, dash - p);
    seq = ngx_atoi(dash + 1, p + len - dash - 1);

    if (ms == NGX_ERROR || seq == NGX_ERROR || seq >= NGX_SOCIAL_CHAT_ID_SEQ
        || ms > (off_t) (NGX_MAX_OFF_T_VALUE / NGX_SOCIAL_CHAT_ID_SEQ - 1))
    {
        return NGX_ERROR;
    }

    *id = (uint64_t) ms * NGX_SOCIAL_CHAT_ID_SEQ + seq;

    return NGX_OK;
}
