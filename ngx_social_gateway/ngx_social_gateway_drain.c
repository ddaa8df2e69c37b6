/*
 * Graceful reloads without dropped requests on kept-alive connections: a
 * worker that is shutting down (after a reload or a graceful stop) closes
 * each connection after its current request, so that request's answer
 * says "Connection: close" and the client opens a new connection (served
 * by the new workers) instead of sending its next request on one that is
 * about to close.
 */

#include "ngx_social_gateway.h"


static ngx_int_t ngx_social_gateway_drain_filter(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_social_gateway_drain_next;


ngx_int_t
ngx_social_gateway_drain_init(ngx_conf_t *cf)
{
    ngx_social_gateway_drain_next = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_social_gateway_drain_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_social_gateway_drain_filter(ngx_http_request_t *r)
{
    if (ngx_exiting || ngx_quit) {
        r->keepalive = 0;
    }

    return ngx_social_gateway_drain_next(r);
}
