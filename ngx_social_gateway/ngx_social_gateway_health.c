/*
 * Health and readiness: GET /healthz answers while the worker runs;
 * GET /readyz answers 200 only when PostgreSQL answers a query.
 */

#include "ngx_social_gateway.h"


static void ngx_social_gateway_readyz_pg(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


static ngx_social_pg_stmt_t  ngx_social_gateway_ready_stmt = {
    ngx_string("gateway_ready"), ngx_string("SELECT 1"), 0
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
    return ngx_social_pg_query(r, NULL, &ngx_social_gateway_ready_stmt, NULL,
                               0, ngx_social_gateway_readyz_pg, NULL);
}


static void
ngx_social_gateway_readyz_pg(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_uint_t  pg_ok;

    pg_ok = (result->status == NGX_SOCIAL_PG_OK);

    ngx_http_finalize_request(r, ngx_social_send_json(r,
                                  pg_ok ? NGX_HTTP_OK
                                        : NGX_HTTP_SERVICE_UNAVAILABLE,
                                  json_pack("{s:s, s:s}",
                                            "status",
                                            pg_ok ? "ok" : "unavailable",
                                            "postgresql",
                                            pg_ok ? "ok" : "down")));
}
