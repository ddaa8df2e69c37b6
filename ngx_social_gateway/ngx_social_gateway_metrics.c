/*
 * GET /metrics: the node's figures in the Prometheus text format; and the
 * request figures behind them, recorded in the log phase (so every
 * request counts, errors and proxied ones included) by route: the API
 * route pattern the request matched, or the name a location gives with
 * "social_metrics_route" (the same value as $social_route).
 */

#include "ngx_social_gateway.h"


#define NGX_SOCIAL_METRIC(field)  offsetof(ngx_social_metrics_t, field)


typedef struct {
    const char                 *name;
    const char                 *type;
    const char                 *help;
    const char                 *labels;    /* NULL: a new family */
    size_t                      offset;    /* of an ngx_uint_t field */
} ngx_social_gateway_metric_t;


static ngx_social_gateway_metric_t  ngx_social_gateway_metrics[] = {

    { "social_pg_connections", "gauge",
      "PostgreSQL connections open, by state.", NULL, 0 },
    { "social_pg_connections", NULL, NULL, "{state=\"busy\"}",
      NGX_SOCIAL_METRIC(pg.busy) },
    { "social_pg_connections", NULL, NULL, "{state=\"idle\"}",
      NGX_SOCIAL_METRIC(pg.idle) },

    { "social_pg_inflight", "gauge",
      "Statements sent to PostgreSQL and not answered yet.", "",
      NGX_SOCIAL_METRIC(pg.inflight) },
    { "social_pg_queued", "gauge",
      "Statements waiting for room on a connection.", "",
      NGX_SOCIAL_METRIC(pg.queued) },
    { "social_pg_queries_total", "counter",
      "Statements submitted.", "",
      NGX_SOCIAL_METRIC(pg.queries) },
    { "social_pg_errors_total", "counter",
      "Statements PostgreSQL answered with an error.", "",
      NGX_SOCIAL_METRIC(pg.errors) },
    { "social_pg_timeouts_total", "counter",
      "Statements that waited or ran past their timeout.", "",
      NGX_SOCIAL_METRIC(pg.timeouts) },
    { "social_pg_rejected_total", "counter",
      "Statements refused at once: PostgreSQL down or the queue full.", "",
      NGX_SOCIAL_METRIC(pg.rejected) },
    { "social_pg_reconnects_total", "counter",
      "Connection attempts after a failure.", "",
      NGX_SOCIAL_METRIC(pg.reconnects) },

    { "social_redis_connected", "gauge",
      "Workers whose Redis connections are ready, by connection.", NULL, 0 },
    { "social_redis_connected", NULL, NULL, "{connection=\"command\"}",
      NGX_SOCIAL_METRIC(redis.connected) },
    { "social_redis_connected", NULL, NULL, "{connection=\"subscriber\"}",
      NGX_SOCIAL_METRIC(redis.subscriber) },

    { "social_redis_pending", "gauge",
      "Redis commands sent and not answered yet.", "",
      NGX_SOCIAL_METRIC(redis.pending) },
    { "social_redis_channels", "gauge",
      "Redis channels subscribed to.", "",
      NGX_SOCIAL_METRIC(redis.channels) },
    { "social_redis_commands_total", "counter",
      "Redis commands sent.", "",
      NGX_SOCIAL_METRIC(redis.commands) },
    { "social_redis_errors_total", "counter",
      "Redis commands that failed or got an error reply.", "",
      NGX_SOCIAL_METRIC(redis.errors) },
    { "social_redis_timeouts_total", "counter",
      "Redis commands past their timeout.", "",
      NGX_SOCIAL_METRIC(redis.timeouts) },
    { "social_redis_reconnects_total", "counter",
      "Redis connection attempts after a failure.", "",
      NGX_SOCIAL_METRIC(redis.reconnects) },
    { "social_redis_messages_total", "counter",
      "Pub/sub messages received.", "",
      NGX_SOCIAL_METRIC(redis.messages) },

    { "social_streams_open", "gauge",
      "WebSocket and Server-Sent Events streams open.", "",
      NGX_SOCIAL_METRIC(streams) }
};


static ngx_int_t ngx_social_gateway_route(ngx_http_request_t *r);
static ngx_int_t ngx_social_gateway_metrics_log(ngx_http_request_t *r);
static ngx_int_t ngx_social_gateway_route_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static size_t ngx_social_gateway_metrics_size(ngx_http_request_t *r);
static u_char *ngx_social_gateway_metrics_workers(u_char *p, u_char *last);
static u_char *ngx_social_gateway_metrics_requests(ngx_http_request_t *r,
    u_char *p, u_char *last);
static ngx_social_metrics_route_t *ngx_social_gateway_metrics_slot(
    ngx_http_request_t *r, ngx_uint_t i, ngx_str_t *name);
static u_char *ngx_social_gateway_metrics_seconds(u_char *p, u_char *last,
    uint64_t ms);


static ngx_str_t  ngx_social_gateway_metrics_type =
    ngx_string("text/plain; version=0.0.4; charset=utf-8");

static ngx_str_t  ngx_social_gateway_route_var = ngx_string("social_route");


ngx_int_t
ngx_social_gateway_metrics_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_variable_t        *var;
    ngx_http_core_main_conf_t  *cmcf;

    var = ngx_http_add_variable(cf, &ngx_social_gateway_route_var,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_social_gateway_route_variable;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_social_gateway_metrics_log;

    return NGX_OK;
}


/* social_metrics_route api | off | NAME */

char *
ngx_social_gateway_metrics_route(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_social_gateway_loc_conf_t  *glcf = conf;

    ngx_str_t  *value;

    if (glcf->metrics_route != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "api") == 0) {
        glcf->metrics_route = NGX_SOCIAL_GATEWAY_ROUTE_API;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        glcf->metrics_route = NGX_SOCIAL_GATEWAY_ROUTE_OFF;

    } else {
        glcf->metrics_route = ngx_social_metrics_route(cf, &value[1]);

        if (glcf->metrics_route == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * The request's route: the pattern an API location matched (or
 * "unmatched"); else the location's setting; NGX_DECLINED: not counted.
 */

static ngx_int_t
ngx_social_gateway_route(ngx_http_request_t *r)
{
    ngx_social_ctx_t               *ctx;
    ngx_social_gateway_loc_conf_t  *glcf;

    ctx = ngx_http_get_module_ctx(r->main, ngx_social_core_module);

    if (ctx != NULL) {
        return ctx->metric;
    }

    glcf = ngx_http_get_module_loc_conf(r, ngx_social_gateway_module);

    switch (glcf->metrics_route) {

    case NGX_SOCIAL_GATEWAY_ROUTE_OFF:
        return NGX_DECLINED;

    case NGX_SOCIAL_GATEWAY_ROUTE_API:
        return ngx_social_router_metric(r);

    default:
        return glcf->metrics_route;
    }
}


static ngx_int_t
ngx_social_gateway_metrics_log(ngx_http_request_t *r)
{
    ngx_int_t    route;
    ngx_uint_t   status;
    ngx_time_t  *tp;
    ngx_msec_t   ms;

    route = ngx_social_gateway_route(r);

    if (route == NGX_DECLINED) {
        return NGX_OK;
    }

    /* as $status has it */

    if (r->err_status) {
        status = r->err_status;

    } else {
        status = r->headers_out.status;
    }

    tp = ngx_timeofday();
    ms = (ngx_msec_t) ((tp->sec - r->start_sec) * 1000
                       + (tp->msec - r->start_msec));

    ngx_social_metrics_request(r, route, status, ms);

    return NGX_OK;
}


static ngx_int_t
ngx_social_gateway_route_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_int_t                    route;
    ngx_social_metrics_route_t  *slot;

    route = ngx_social_gateway_route(r);

    if (route == NGX_DECLINED
        || (ngx_uint_t) route >= ngx_social_metrics_nroutes(r))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    slot = ngx_social_metrics_route_at(r, route);

    v->data = slot->name;
    v->len = slot->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_social_gateway_metrics_handler(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx)
{
    u_char                       *p, *last;
    size_t                        size;
    ngx_int_t                     rc;
    ngx_uint_t                    i, n;
    ngx_buf_t                    *b;
    ngx_chain_t                   out;
    ngx_social_metrics_t          sum;
    ngx_social_gateway_metric_t  *m;

    ngx_social_metrics_collect(&sum);

    n = sizeof(ngx_social_gateway_metrics)
        / sizeof(ngx_social_gateway_metric_t);
    size = n * 256 + ngx_social_gateway_metrics_size(r);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->pos;
    last = b->end;

    for (i = 0; i < n; i++) {
        m = &ngx_social_gateway_metrics[i];

        if (m->type) {
            p = ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s %s\n",
                             m->name, m->help, m->name, m->type);
        }

        if (m->labels) {
            p = ngx_slprintf(p, last, "%s%s %ui\n", m->name, m->labels,
                             *(ngx_uint_t *) ((u_char *) &sum + m->offset));
        }
    }

    p = ngx_social_gateway_metrics_workers(p, last);
    p = ngx_social_gateway_metrics_requests(r, p, last);

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = ngx_social_gateway_metrics_type;
    r->headers_out.content_type_len = ngx_social_gateway_metrics_type.len;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* room for the per-worker and per-route lines, at most */

static size_t
ngx_social_gateway_metrics_size(ngx_http_request_t *r)
{
    size_t                       size, line;
    ngx_uint_t                   i, s, n;
    ngx_social_metrics_route_t  *slot;

    size = 1024 + 3 * 128 * NGX_SOCIAL_GATEWAY_WORKERS;

    n = ngx_social_metrics_nroutes(r);

    for (i = 0; i < n; i++) {
        slot = ngx_social_metrics_route_at(r, i);
        line = slot->len + 128;

        for (s = 0; s < NGX_SOCIAL_METRICS_STATUSES; s++) {
            if (slot->status[s]) {
                size += line;
            }
        }

        size += (NGX_SOCIAL_METRICS_BUCKETS + 3) * line;
    }

    return size;
}


static u_char *
ngx_social_gateway_metrics_workers(u_char *p, u_char *last)
{
    ngx_uint_t                    i;
    ngx_social_metrics_worker_t  *w;

    p = ngx_slprintf(p, last,
                     "# HELP social_worker_cpu_seconds_total CPU time of "
                     "each worker process, by mode.\n"
                     "# TYPE social_worker_cpu_seconds_total counter\n");

    for (i = 0; i < NGX_SOCIAL_GATEWAY_WORKERS; i++) {
        w = ngx_social_metrics_worker(i);

        if (w == NULL || w->pid == 0) {
            continue;
        }

        p = ngx_slprintf(p, last,
                  "social_worker_cpu_seconds_total{worker=\"%ui\","
                  "mode=\"user\"} %uL.%06uL\n"
                  "social_worker_cpu_seconds_total{worker=\"%ui\","
                  "mode=\"system\"} %uL.%06uL\n",
                  i, w->cpu_user / 1000000, w->cpu_user % 1000000,
                  i, w->cpu_system / 1000000, w->cpu_system % 1000000);
    }

    p = ngx_slprintf(p, last,
                     "# HELP social_worker_resident_memory_bytes Resident "
                     "memory of each worker process.\n"
                     "# TYPE social_worker_resident_memory_bytes gauge\n");

    for (i = 0; i < NGX_SOCIAL_GATEWAY_WORKERS; i++) {
        w = ngx_social_metrics_worker(i);

        if (w == NULL || w->pid == 0) {
            continue;
        }

        p = ngx_slprintf(p, last,
                  "social_worker_resident_memory_bytes{worker=\"%ui\"} "
                  "%uL\n", i, w->rss);
    }

    return p;
}


/*
 * Requests by route and status, the latency histogram and the 5xx count
 * by route; each counter is read once, so a histogram's _count is the
 * sum of the buckets it prints.
 */

static u_char *
ngx_social_gateway_metrics_requests(ngx_http_request_t *r, u_char *p,
    u_char *last)
{
    uint64_t                     cum, errors;
    ngx_str_t                    name;
    ngx_uint_t                   i, s, b, n;
    ngx_atomic_uint_t            count;
    ngx_social_metrics_route_t  *slot;

    n = ngx_social_metrics_nroutes(r);

    p = ngx_slprintf(p, last,
                     "# HELP social_http_requests_total Requests answered, "
                     "by route and status.\n"
                     "# TYPE social_http_requests_total counter\n");

    for (i = 0; i < n; i++) {
        slot = ngx_social_gateway_metrics_slot(r, i, &name);

        for (s = 0; s < NGX_SOCIAL_METRICS_STATUSES; s++) {
            count = slot->status[s];

            if (count) {
                p = ngx_slprintf(p, last,
                                 "social_http_requests_total{route=\"%V\","
                                 "status=\"%ui\"} %uA\n", &name, s, count);
            }
        }
    }

    p = ngx_slprintf(p, last,
                     "# HELP social_http_request_duration_seconds Time from "
                     "the first byte of the request to the log, by "
                     "route.\n"
                     "# TYPE social_http_request_duration_seconds "
                     "histogram\n");

    for (i = 0; i < n; i++) {
        slot = ngx_social_gateway_metrics_slot(r, i, &name);
        cum = 0;

        for (b = 0; b < NGX_SOCIAL_METRICS_BUCKETS; b++) {
            cum += slot->latency[b];

            p = ngx_slprintf(p, last,
                             "social_http_request_duration_seconds_bucket"
                             "{route=\"%V\",le=\"", &name);

            if (b == NGX_SOCIAL_METRICS_BUCKETS - 1) {
                p = ngx_slprintf(p, last, "+Inf");

            } else {
                p = ngx_social_gateway_metrics_seconds(p, last,
                                                ngx_social_metrics_bounds[b]);
            }

            p = ngx_slprintf(p, last, "\"} %uL\n", cum);
        }

        p = ngx_slprintf(p, last,
                         "social_http_request_duration_seconds_sum"
                         "{route=\"%V\"} ", &name);
        p = ngx_social_gateway_metrics_seconds(p, last, slot->latency_ms);
        p = ngx_slprintf(p, last,
                         "\nsocial_http_request_duration_seconds_count"
                         "{route=\"%V\"} %uL\n", &name, cum);
    }

    p = ngx_slprintf(p, last,
                     "# HELP social_http_errors_total Requests answered "
                     "with a 5xx status, by route.\n"
                     "# TYPE social_http_errors_total counter\n");

    for (i = 0; i < n; i++) {
        slot = ngx_social_gateway_metrics_slot(r, i, &name);
        errors = 0;

        for (s = 500; s < NGX_SOCIAL_METRICS_STATUSES; s++) {
            errors += slot->status[s];
        }

        p = ngx_slprintf(p, last,
                         "social_http_errors_total{route=\"%V\"} %uL\n",
                         &name, errors);
    }

    return p;
}


static ngx_social_metrics_route_t *
ngx_social_gateway_metrics_slot(ngx_http_request_t *r, ngx_uint_t i,
    ngx_str_t *name)
{
    ngx_social_metrics_route_t  *slot;

    slot = ngx_social_metrics_route_at(r, i);
    name->data = slot->name;
    name->len = slot->len;

    return slot;
}


/* ms as seconds: 2500 -> "2.5", 10 -> "0.01" */

static u_char *
ngx_social_gateway_metrics_seconds(u_char *p, u_char *last, uint64_t ms)
{
    u_char  frac[4];
    size_t  len;

    p = ngx_slprintf(p, last, "%uL", ms / 1000);

    if (ms % 1000 == 0) {
        return p;
    }

    ngx_sprintf(frac, "%03uL", ms % 1000);

    for (len = 3; frac[len - 1] == '0'; len--) { /* void */ }

    return ngx_slprintf(p, last, ".%*s", len, frac);
}
