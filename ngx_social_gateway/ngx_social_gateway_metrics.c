/*
 * GET /metrics: the node's figures in the Prometheus text format.
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


static ngx_str_t  ngx_social_gateway_metrics_type =
    ngx_string("text/plain; version=0.0.4; charset=utf-8");


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
    size = n * 256;

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
