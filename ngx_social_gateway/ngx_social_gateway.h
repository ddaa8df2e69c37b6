/*
 * Internal declarations of the gateway module.
 */

#ifndef _NGX_SOCIAL_GATEWAY_H_INCLUDED_
#define _NGX_SOCIAL_GATEWAY_H_INCLUDED_


#include <ngx_social_core.h>


ngx_int_t ngx_social_gateway_health_init(ngx_conf_t *cf);
ngx_int_t ngx_social_gateway_healthz(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_gateway_readyz(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_gateway_metrics_handler(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);


#endif /* _NGX_SOCIAL_GATEWAY_H_INCLUDED_ */
