/*
 * Health and readiness: GET /healthz answers while the worker runs;
 * GET /readyz answers 200 only when PostgreSQL answers a query and Redis
 * a PING, both asked at once.
 */

#include "ngx_social_gateway.h"


typedef struct {
    ngx_http_request_t         *r;
    ngx_int_t                   pg;        /* -1 pending, 0 down, 1 ok */
    ngx_int_t                   redis;
} ngx_social_gateway_ready_t;


static void ngx_social_gateway_readyz_pg(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_gateway_readyz_redis(redisReply *reply, void *data);
static void ngx_social_gateway_readyz_answer(ngx_social_gateway_ready_t *rd);
static ngx_int_t ngx_social_gateway_readyz_send(
    ngx_social_gateway_ready_t *rd);


static ngx_social_pg_stmt_t  ngx_social_gateway_ready_stmt = {
    ngx_string("gateway_ready"), ngx_string("SELECT 1"), 1, 0
};


ngx_int_t
ngx_social_gateway_health_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, &ngx_social_gateway_ready_stmt, 1);
}


ngx_int_t
ngx_social_gateway_healthz(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_send_json(r, NGX_HTTP_OK,
                                json_pack("{s:s}", "status", "ok"));
}


ngx_int_t
ngx_social_gateway_readyz(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_social_redis_argv_t      ping;
    ngx_social_gateway_ready_t  *rd;

    static const char  *argv[] = { "PING" };
    static size_t       argvlen[] = { 4 };

    rd = ngx_pcalloc(r->pool, sizeof(ngx_social_gateway_ready_t));
    if (rd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rd->r = r;
    rd->pg = -1;
    rd->redis = -1;

    ping.argc = 1;
    ping.argv = argv;
    ping.argvlen = argvlen;

    /* held for the Redis answer; the PostgreSQL one holds its own */
    r->main->count++;

    if (ngx_social_redis_command(r, &ping, ngx_social_gateway_readyz_redis,
                                 rd)
        != NGX_OK)
    {
        r->main->count--;
        rd->redis = 0;
    }

    rc = ngx_social_pg_query(r, NULL, &ngx_social_gateway_ready_stmt, NULL,
                             0, ngx_social_gateway_readyz_pg, rd);

    if (rc == NGX_DONE) {
        return NGX_DONE;
    }

    rd->pg = 0;

    /* Redis answers later, or failed too: then this is the answer */
    return (rd->redis == -1) ? NGX_DONE : ngx_social_gateway_readyz_send(rd);
}


static void
ngx_social_gateway_readyz_pg(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_gateway_ready_t  *rd = data;

    rd->pg = (result->status == NGX_SOCIAL_PG_OK);

    ngx_social_gateway_readyz_answer(rd);
}


static void
ngx_social_gateway_readyz_redis(redisReply *reply, void *data)
{
    ngx_social_gateway_ready_t  *rd = data;

    rd->redis = (reply != NULL && reply->type == REDIS_REPLY_STATUS);

    ngx_social_gateway_readyz_answer(rd);
}


/* each answer releases its hold; the last one sends the response */

static void
ngx_social_gateway_readyz_answer(ngx_social_gateway_ready_t *rd)
{
    if (rd->pg == -1 || rd->redis == -1) {
        ngx_http_finalize_request(rd->r, NGX_DONE);
        return;
    }

    ngx_http_finalize_request(rd->r, ngx_social_gateway_readyz_send(rd));
}


static ngx_int_t
ngx_social_gateway_readyz_send(ngx_social_gateway_ready_t *rd)
{
    ngx_int_t  ok;

    ok = rd->pg && rd->redis;

    return ngx_social_send_json(rd->r,
                                ok ? NGX_HTTP_OK
                                   : NGX_HTTP_SERVICE_UNAVAILABLE,
                                json_pack("{s:s, s:s, s:s}",
                                          "status", ok ? "ok" : "unavailable",
                                          "postgresql",
                                          rd->pg ? "ok" : "down",
                                          "redis", rd->redis ? "ok" : "down"));
}
