/*
 * Rate limits that hold across workers and nodes: GCRA in Redis, time
 * taken from Redis so that node clocks do not matter, atomic so that
 * counts are exact under any concurrency.  The checks of all the requests
 * of one turn of a worker's event loop go to Redis as one EVALSHA over
 * all their keys (posted to the end of the turn): the script's cost and
 * the round trip are shared, and the script still runs the keys one after
 * the other, so a key that appears twice is counted twice, exactly.
 *
 * "social_limit read|write|login rate=Nr/s|Nr/m burst=B": API requests
 * with GET or HEAD are "read", the others "write", a route flagged
 * NGX_SOCIAL_ROUTE_LOGIN (POST /oauth/token) "login"; a group not
 * configured is not limited.  The key is the user
 * for an authenticated request, else the client address.  Answers carry
 * RateLimit-Limit/-Remaining/-Reset; a refusal is 429 rate_limited with
 * Retry-After.
 *
 * "social_limit_location on | login | off" applies the same limits in the
 * access phase of a plain location (a proxied service): "on" by method,
 * "login" the login group; the user is the one social_auth found, which
 * is why this handler runs after social_auth's.  A refusal there is the
 * status 429, answered through error_page like nginx's own errors.
 *
 * While Redis does not answer, the same algorithm runs on this node's
 * buckets in shared memory ("social_limit_fallback local", the default):
 * the limits then hold per node, approximately across nodes; or requests
 * go through ("social_limit_fallback open").
 */

#include "ngx_social_gateway.h"


typedef struct {
    ngx_queue_t                     queue;     /* in the turn's batch */
    ngx_social_ctx_t               *ctx;       /* an API route's, or NULL */
    ngx_social_gateway_ctx_t       *gctx;      /* a plain location's */
    ngx_http_request_t             *r;
    ngx_social_gateway_limit_t     *limit;
    ngx_str_t                       key;
    void                          **sent;      /* its place in a batch */
    unsigned                        queued:1;
} ngx_social_gateway_limit_ctx_t;


/*
 * A batch sent: the checks in key order (NULL: terminated meanwhile),
 * then the script's argv.
 */
typedef struct {
    ngx_uint_t                      n;
    ngx_social_gateway_limit_ctx_t *lc[1];
} ngx_social_gateway_batch_t;


/* a node's bucket in shared memory: the key follows the struct */
typedef struct {
    ngx_rbtree_node_t               node;
    ngx_queue_t                     queue;     /* least recently used last */
    uint64_t                        tat;       /* ms */
    u_short                         len;
    u_char                          key[1];
} ngx_social_gateway_bucket_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;
} ngx_social_gateway_buckets_t;


typedef struct {
    ngx_int_t                       allowed;
    ngx_int_t                       remaining;
    ngx_int_t                       reset;     /* ms until full again */
    ngx_int_t                       retry;     /* ms until allowed */
} ngx_social_gateway_verdict_t;


static ngx_social_gateway_limit_t *ngx_social_gateway_limit_group(
    ngx_http_request_t *r, ngx_uint_t login);
static ngx_int_t ngx_social_gateway_limit(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_gateway_limit_access(ngx_http_request_t *r);
static ngx_int_t ngx_social_gateway_limit_check(
    ngx_social_gateway_limit_ctx_t *lc, int64_t user_id);
static void ngx_social_gateway_limit_flush(ngx_event_t *ev);
static void ngx_social_gateway_limit_cancel(void *data);
static void ngx_social_gateway_limited(redisReply *reply, void *data);
static void ngx_social_gateway_limit_resume(
    ngx_social_gateway_limit_ctx_t *lc, ngx_int_t rc);
static ngx_int_t ngx_social_gateway_limit_done(
    ngx_social_gateway_limit_ctx_t *lc, ngx_int_t rc);
static ngx_int_t ngx_social_gateway_limit_local(
    ngx_social_gateway_limit_ctx_t *lc);
static void ngx_social_gateway_limit_gcra(ngx_social_gateway_limit_t *limit,
    uint64_t now, uint64_t *tat, ngx_social_gateway_verdict_t *v);
static ngx_int_t ngx_social_gateway_limit_answer(
    ngx_social_gateway_limit_ctx_t *lc, ngx_social_gateway_verdict_t *v);
static ngx_int_t ngx_social_gateway_buckets_init(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_social_gateway_limit_header(ngx_http_request_t *r,
    const char *name, ngx_int_t value);


/* checks in one batch at most (the script's argv: 3 strings a check) */
#define NGX_SOCIAL_GATEWAY_BATCH  512


/*
 * KEYS[i] a bucket; ARGV[2i-1] its ms between requests, ARGV[2i] its
 * burst.  Returns {allowed, remaining, ms until full again, ms until
 * allowed} for each key, one after the other.
 */
static ngx_social_redis_script_t  ngx_social_gateway_gcra = {
    ngx_string(
        "local t = redis.call('TIME') "
        "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
        "local out = {} "
        "for i = 1, #KEYS do "
        "  local interval = tonumber(ARGV[2 * i - 1]) "
        "  local burst = tonumber(ARGV[2 * i]) "
        "  local tat = tonumber(redis.call('GET', KEYS[i])) or now "
        "  if tat < now then tat = now end "
        "  local new_tat = tat + interval "
        "  local allow_at = new_tat - interval * burst "
        "  local n = #out "
        "  if allow_at > now then "
        "    out[n + 1] = 0 out[n + 2] = 0 "
        "    out[n + 3] = tat - now out[n + 4] = allow_at - now "
        "  else "
        "    redis.call('SET', KEYS[i], new_tat, 'PX', new_tat - now) "
        "    out[n + 1] = 1 "
        "    out[n + 2] = math.floor((now - allow_at) / interval) "
        "    out[n + 3] = new_tat - now out[n + 4] = 0 "
        "  end "
        "end "
        "return out"),
    { 0 }, 0
};


/* this worker's checks of the current turn, sent when it ends */
static ngx_queue_t       ngx_social_gateway_batch;
static ngx_uint_t        ngx_social_gateway_nbatch;
static ngx_event_t       ngx_social_gateway_flush;
static ngx_connection_t  ngx_social_gateway_flush_conn;


/* call before ngx_social_gateway_auth_init(): this handler runs after */

ngx_int_t
ngx_social_gateway_limit_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_social_redis_script_register(cf, &ngx_social_gateway_gcra)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_social_set_limiter(ngx_social_gateway_limit);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_social_gateway_limit_access;

    return NGX_OK;
}


/* the shared memory of the fallback; from the main configuration */

ngx_int_t
ngx_social_gateway_limit_zone(ngx_conf_t *cf,
    ngx_social_gateway_main_conf_t *gmcf)
{
    ngx_str_t  name = ngx_string("social_limits");

    gmcf->zone = ngx_shared_memory_add(cf, &name, 1024 * 1024,
                                       &ngx_social_gateway_module);
    if (gmcf->zone == NULL) {
        return NGX_ERROR;
    }

    gmcf->zone->init = ngx_social_gateway_buckets_init;

    return NGX_OK;
}


static ngx_int_t
ngx_social_gateway_buckets_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t               *shpool;
    ngx_social_gateway_buckets_t  *b;

    if (data) {
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    b = ngx_slab_alloc(shpool, sizeof(ngx_social_gateway_buckets_t));
    if (b == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&b->rbtree, &b->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&b->queue);

    zone->data = b;

    return NGX_OK;
}


/* social_limit read|write|login rate=... burst=... */

char *
ngx_social_gateway_limit_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_social_gateway_main_conf_t  *gmcf = conf;

    u_char                      *p;
    ngx_int_t                    rate, scale, burst;
    ngx_str_t                   *value;
    ngx_uint_t                   i, group;
    ngx_social_gateway_limit_t  *limit;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "read") == 0) {
        group = 0;

    } else if (ngx_strcmp(value[1].data, "write") == 0) {
        group = 1;

    } else if (ngx_strcmp(value[1].data, "login") == 0) {
        group = 2;

    } else {
        return "has an unknown group: read, write or login";
    }

    rate = NGX_ERROR;
    scale = 1;
    burst = NGX_ERROR;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            p = value[i].data + value[i].len - 3;

            if (value[i].len > 8 && ngx_strncmp(p, "r/s", 3) == 0) {
                scale = 1;

            } else if (value[i].len > 8 && ngx_strncmp(p, "r/m", 3) == 0) {
                scale = 60;

            } else {
                return "has a rate that is not Nr/s or Nr/m";
            }

            rate = ngx_atoi(value[i].data + 5, value[i].len - 8);
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);
            continue;
        }

        return "takes rate= and burst=";
    }

    if (rate <= 0 || burst <= 0) {
        return "needs a rate and a burst above 0";
    }

    limit = &gmcf->limits[group];
    limit->name = value[1];
    limit->interval = 1000 * scale / rate;
    limit->burst = burst;

    if (limit->interval == 0) {
        return "has a rate above 1000 requests a second";
    }

    p = ngx_pnalloc(cf->pool, 2 * NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    limit->args[0].data = p;
    limit->args[0].len = ngx_sprintf(p, "%M", limit->interval) - p;
    limit->args[1].data = p + limit->args[0].len;
    limit->args[1].len = ngx_sprintf(limit->args[1].data, "%i", burst)
                         - limit->args[1].data;

    return NGX_CONF_OK;
}


static ngx_social_gateway_limit_t *
ngx_social_gateway_limit_group(ngx_http_request_t *r, ngx_uint_t login)
{
    ngx_uint_t                       group;
    ngx_social_gateway_limit_t      *limit;
    ngx_social_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_social_gateway_module);

    if (login) {
        group = 2;

    } else if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        group = 0;

    } else {
        group = 1;
    }

    limit = &gmcf->limits[group];

    return limit->burst ? limit : NULL;
}


/* the limiter of API routes, before the route's handler */

static ngx_int_t
ngx_social_gateway_limit(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_social_gateway_limit_ctx_t  *lc;

    lc = ngx_pcalloc(r->pool, sizeof(ngx_social_gateway_limit_ctx_t));
    if (lc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lc->r = r;
    lc->ctx = ctx;
    lc->limit = ngx_social_gateway_limit_group(r,
                                 ctx->route->flags & NGX_SOCIAL_ROUTE_LOGIN);

    if (lc->limit == NULL) {
        return ngx_social_core_proceed(r, ctx);
    }

    return ngx_social_gateway_limit_check(lc, ctx->user_id);
}


/*
 * The access-phase limiter of plain locations.  While Redis answers the
 * request waits (NGX_DONE, held); the verdict then runs the phases again
 * from here, and this returns it.
 */

static ngx_int_t
ngx_social_gateway_limit_access(ngx_http_request_t *r)
{
    ngx_social_gateway_ctx_t        *gctx;
    ngx_social_gateway_limit_ctx_t  *lc;
    ngx_social_gateway_loc_conf_t   *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_social_gateway_module);

    if (glcf->limit == NGX_SOCIAL_GATEWAY_LIMIT_OFF || r != r->main) {
        return NGX_DECLINED;
    }

    gctx = ngx_social_gateway_ctx(r);
    if (gctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (gctx->limited) {
        return gctx->limit_rc;
    }

    lc = ngx_pcalloc(r->pool, sizeof(ngx_social_gateway_limit_ctx_t));
    if (lc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lc->r = r;
    lc->gctx = gctx;
    lc->limit = ngx_social_gateway_limit_group(r,
                           glcf->limit == NGX_SOCIAL_GATEWAY_LIMIT_LOGIN);

    if (lc->limit == NULL) {
        return NGX_DECLINED;
    }

    return ngx_social_gateway_limit_check(lc, gctx->user_id);
}


/*
 * The check joins this turn's batch; the request is held until the
 * verdict, and a request terminated meanwhile leaves the batch (or its
 * verdict is dropped).
 */

static ngx_int_t
ngx_social_gateway_limit_check(ngx_social_gateway_limit_ctx_t *lc,
    int64_t user_id)
{
    u_char                      *key, *p;
    ngx_http_cleanup_t          *cln;
    ngx_http_request_t          *r;
    ngx_social_gateway_limit_t  *limit;

    r = lc->r;
    limit = lc->limit;

    key = ngx_pnalloc(r->pool, sizeof("social:rl:login:u:") + NGX_INT64_LEN
                               + r->connection->addr_text.len);
    cln = ngx_http_cleanup_add(r, 0);

    if (key == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (user_id) {
        p = ngx_sprintf(key, "social:rl:%V:u:%L", &limit->name, user_id);

    } else {
        p = ngx_sprintf(key, "social:rl:%V:a:%V", &limit->name,
                        &r->connection->addr_text);
    }

    lc->key.data = key;
    lc->key.len = p - key;

    cln->handler = ngx_social_gateway_limit_cancel;
    cln->data = lc;

    if (ngx_social_gateway_nbatch == 0) {
        ngx_queue_init(&ngx_social_gateway_batch);
        ngx_social_gateway_flush.handler = ngx_social_gateway_limit_flush;
        ngx_social_gateway_flush_conn.fd = (ngx_socket_t) -1;
        ngx_social_gateway_flush.data = &ngx_social_gateway_flush_conn;
        ngx_social_gateway_flush.log = ngx_cycle->log;
        ngx_post_event(&ngx_social_gateway_flush, &ngx_posted_events);
    }

    ngx_queue_insert_tail(&ngx_social_gateway_batch, &lc->queue);
    lc->queued = 1;
    r->main->count++;

    if (++ngx_social_gateway_nbatch == NGX_SOCIAL_GATEWAY_BATCH) {
        ngx_delete_posted_event(&ngx_social_gateway_flush);
        ngx_social_gateway_limit_flush(&ngx_social_gateway_flush);
    }

    return NGX_DONE;
}


/* the end of the turn: one EVALSHA for every check queued in it */

static void
ngx_social_gateway_limit_flush(ngx_event_t *ev)
{
    size_t                           size;
    ngx_uint_t                       i, n;
    ngx_queue_t                     *q;
    const char                     **argv;
    size_t                          *argvlen;
    ngx_social_redis_argv_t          args;
    ngx_social_gateway_batch_t      *b;
    ngx_social_gateway_limit_ctx_t  *lc;

    n = ngx_social_gateway_nbatch;
    ngx_social_gateway_nbatch = 0;

    if (n == 0) {
        return;
    }

    size = sizeof(ngx_social_gateway_batch_t)
           + n * sizeof(ngx_social_gateway_limit_ctx_t *)
           + 3 * n * (sizeof(char *) + sizeof(size_t));

    b = ngx_alloc(size, ev->log);

    i = 0;

    while (!ngx_queue_empty(&ngx_social_gateway_batch)) {
        q = ngx_queue_head(&ngx_social_gateway_batch);
        ngx_queue_remove(q);

        lc = ngx_queue_data(q, ngx_social_gateway_limit_ctx_t, queue);
        lc->queued = 0;

        if (b == NULL) {
            /* no memory: the node's buckets decide */
            ngx_social_gateway_limit_resume(lc,
                                           ngx_social_gateway_limit_local(lc));
            continue;
        }

        lc->sent = (void **) &b->lc[i];
        b->lc[i++] = lc;
    }

    if (b == NULL) {
        return;
    }

    b->n = i;
    argv = (const char **) &b->lc[i];
    argvlen = (size_t *) (argv + 3 * i);

    for (i = 0; i < b->n; i++) {
        lc = b->lc[i];

        argv[i] = (const char *) lc->key.data;
        argvlen[i] = lc->key.len;
        argv[b->n + 2 * i] = (const char *) lc->limit->args[0].data;
        argvlen[b->n + 2 * i] = lc->limit->args[0].len;
        argv[b->n + 2 * i + 1] = (const char *) lc->limit->args[1].data;
        argvlen[b->n + 2 * i + 1] = lc->limit->args[1].len;
    }

    args.argc = 3 * b->n;
    args.argv = argv;
    args.argvlen = argvlen;

    if (ngx_social_redis_eval(NULL, &ngx_social_gateway_gcra, b->n, &args,
                              ngx_social_gateway_limited, b)
        != NGX_OK)
    {
        ngx_social_gateway_limited(NULL, b);
    }
}


static void
ngx_social_gateway_limit_cancel(void *data)
{
    ngx_social_gateway_limit_ctx_t  *lc = data;

    if (lc->queued) {
        ngx_queue_remove(&lc->queue);
        lc->queued = 0;
        ngx_social_gateway_nbatch--;
    }

    /* lc goes with the request's pool: the batch forgets it */

    if (lc->sent != NULL) {
        *lc->sent = NULL;
    }
}


static void
ngx_social_gateway_limited(redisReply *reply, void *data)
{
    ngx_social_gateway_batch_t  *b = data;

    ngx_uint_t                       i;
    redisReply                     **e;
    ngx_social_gateway_limit_ctx_t  *lc;
    ngx_social_gateway_verdict_t     v;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4 * b->n)
    {
        /* the Redis adapter logs the outage itself, once */
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "social: %ui rate limit checks made on this node: "
                      "Redis did not answer", b->n);
        reply = NULL;
    }

    for (i = 0; i < b->n; i++) {
        lc = b->lc[i];

        if (lc == NULL) {
            continue;
        }

        lc->sent = NULL;

        if (reply == NULL) {
            ngx_social_gateway_limit_resume(lc,
                                           ngx_social_gateway_limit_local(lc));
            continue;
        }

        e = &reply->element[4 * i];
        v.allowed = e[0]->integer;
        v.remaining = e[1]->integer;
        v.reset = e[2]->integer;
        v.retry = e[3]->integer;

        ngx_social_gateway_limit_resume(lc,
                                      ngx_social_gateway_limit_answer(lc, &v));
    }

    ngx_free(b);
}


/* the verdict reached a held request */

static void
ngx_social_gateway_limit_resume(ngx_social_gateway_limit_ctx_t *lc,
    ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = lc->r->connection;

    ngx_http_finalize_request(lc->r, ngx_social_gateway_limit_done(lc, rc));
    ngx_http_run_posted_requests(c);
}


/* an API route's answer is final; a location's verdict resumes it */

static ngx_int_t
ngx_social_gateway_limit_done(ngx_social_gateway_limit_ctx_t *lc,
    ngx_int_t rc)
{
    if (lc->gctx == NULL) {
        return rc;
    }

    lc->gctx->limited = 1;
    lc->gctx->limit_rc = rc;

    ngx_http_core_run_phases(lc->r);

    return NGX_DONE;
}


/* the fallback: the same algorithm on this node's shared buckets */

static ngx_int_t
ngx_social_gateway_limit_local(ngx_social_gateway_limit_ctx_t *lc)
{
    uint32_t                         hash;
    uint64_t                         now, tat;
    ngx_time_t                      *tp;
    ngx_slab_pool_t                 *shpool;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_social_gateway_bucket_t     *bk;
    ngx_social_gateway_buckets_t    *b;
    ngx_social_gateway_verdict_t     v;
    ngx_social_gateway_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(lc->r, ngx_social_gateway_module);

    if (!gmcf->fallback_local) {
        return lc->ctx ? ngx_social_core_proceed(lc->r, lc->ctx)
                       : NGX_DECLINED;
    }

    shpool = (ngx_slab_pool_t *) gmcf->zone->shm.addr;
    b = gmcf->zone->data;

    tp = ngx_timeofday();
    now = (uint64_t) tp->sec * 1000 + tp->msec;
    hash = ngx_crc32_short(lc->key.data, lc->key.len);

    ngx_shmtx_lock(&shpool->mutex);

    node = b->rbtree.root;
    sentinel = b->rbtree.sentinel;
    bk = NULL;

    while (node != sentinel) {
        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        bk = (ngx_social_gateway_bucket_t *) node;

        if (bk->len == lc->key.len
            && ngx_memcmp(bk->key, lc->key.data, bk->len) == 0)
        {
            break;
        }

        bk = NULL;
        node = node->right;
    }

    tat = bk ? bk->tat : now;

    ngx_social_gateway_limit_gcra(lc->limit, now, &tat, &v);

    if (bk == NULL && v.allowed) {
        bk = ngx_slab_alloc_locked(shpool, sizeof(ngx_social_gateway_bucket_t)
                                           + lc->key.len);

        while (bk == NULL && !ngx_queue_empty(&b->queue)) {
            /* full: the least recently used bucket goes */
            node = (ngx_rbtree_node_t *) ((u_char *) ngx_queue_last(&b->queue)
                   - offsetof(ngx_social_gateway_bucket_t, queue));
            ngx_queue_remove(ngx_queue_last(&b->queue));
            ngx_rbtree_delete(&b->rbtree, node);
            ngx_slab_free_locked(shpool, node);

            bk = ngx_slab_alloc_locked(shpool,
                                       sizeof(ngx_social_gateway_bucket_t)
                                       + lc->key.len);
        }

        if (bk != NULL) {
            bk->node.key = hash;
            bk->len = (u_short) lc->key.len;
            ngx_memcpy(bk->key, lc->key.data, lc->key.len);
            ngx_rbtree_insert(&b->rbtree, &bk->node);
            ngx_queue_insert_head(&b->queue, &bk->queue);
        }

    } else if (bk != NULL) {
        ngx_queue_remove(&bk->queue);
        ngx_queue_insert_head(&b->queue, &bk->queue);
    }

    if (bk != NULL) {
        bk->tat = tat;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return ngx_social_gateway_limit_answer(lc, &v);
}


/* GCRA: *tat is the theoretical arrival time, updated when allowed */

static void
ngx_social_gateway_limit_gcra(ngx_social_gateway_limit_t *limit,
    uint64_t now, uint64_t *tat, ngx_social_gateway_verdict_t *v)
{
    uint64_t  t, new_tat, allow_at;

    t = (*tat < now) ? now : *tat;
    new_tat = t + limit->interval;
    allow_at = new_tat - (uint64_t) limit->interval * limit->burst;

    if (new_tat > (uint64_t) limit->interval * limit->burst
        && allow_at > now)
    {
        v->allowed = 0;
        v->remaining = 0;
        v->reset = t - now;
        v->retry = allow_at - now;
        return;
    }

    *tat = new_tat;

    v->allowed = 1;
    v->remaining = (now + (uint64_t) limit->interval * limit->burst
                    - new_tat) / limit->interval;
    v->reset = new_tat - now;
    v->retry = 0;
}


/* the RateLimit headers, then the route, or 429 */

static ngx_int_t
ngx_social_gateway_limit_answer(ngx_social_gateway_limit_ctx_t *lc,
    ngx_social_gateway_verdict_t *v)
{
    ngx_http_request_t  *r;

    r = lc->r;

    if (ngx_social_gateway_limit_header(r, "RateLimit-Limit",
                                        lc->limit->burst)
           != NGX_OK
        || ngx_social_gateway_limit_header(r, "RateLimit-Remaining",
                                           v->remaining)
           != NGX_OK
        || ngx_social_gateway_limit_header(r, "RateLimit-Reset",
                                           (v->reset + 999) / 1000)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (v->allowed) {
        return lc->ctx ? ngx_social_core_proceed(r, lc->ctx) : NGX_DECLINED;
    }

    if (ngx_social_gateway_limit_header(r, "Retry-After",
                                        ngx_max((v->retry + 999) / 1000, 1))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (lc->ctx == NULL) {
        return NGX_SOCIAL_GATEWAY_TOO_MANY;
    }

    return ngx_social_send_error(r, 429, "rate_limited", "too many requests",
                                 NULL);
}


static ngx_int_t
ngx_social_gateway_limit_header(ngx_http_request_t *r, const char *name,
    ngx_int_t value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.len = ngx_sprintf(h->value.data, "%i", value) - h->value.data;

    return NGX_OK;
}
