/*
 * ngx_social_gateway: the edge of the API.  It declares the operational
 * routes; the core module's "social_api" handler dispatches to them.
 */

#include "ngx_social_gateway.h"


static ngx_int_t ngx_social_gateway_postconfiguration(ngx_conf_t *cf);


static ngx_social_route_t  ngx_social_gateway_routes[] = {
    { NGX_HTTP_GET, ngx_string("/healthz"), ngx_social_gateway_healthz, 0 },
    { NGX_HTTP_GET, ngx_string("/readyz"), ngx_social_gateway_readyz, 0 },
    { NGX_HTTP_GET, ngx_string("/metrics"),
      ngx_social_gateway_metrics_handler, 0 }
};


static ngx_http_module_t  ngx_social_gateway_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_gateway_postconfiguration,  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_gateway_module = {
    NGX_MODULE_V1,
    &ngx_social_gateway_module_ctx,        /* module context */
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
ngx_social_gateway_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_social_gateway_health_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_social_routes_add(cf, ngx_social_gateway_routes,
                                 sizeof(ngx_social_gateway_routes)
                                 / sizeof(ngx_social_route_t));
}
