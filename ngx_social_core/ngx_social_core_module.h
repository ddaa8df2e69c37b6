/*
 * Internal declarations of the core module, shared by its source files.
 */

#ifndef _NGX_SOCIAL_CORE_MODULE_H_INCLUDED_
#define _NGX_SOCIAL_CORE_MODULE_H_INCLUDED_


#include "ngx_social_core.h"


typedef struct {
    ngx_str_t                   text;
    ngx_uint_t                  param;     /* "{name}" matches any segment */
} ngx_social_segment_t;


typedef struct {
    ngx_social_route_t         *route;
    ngx_social_segment_t       *segments;
    ngx_uint_t                  nsegments;
    ngx_uint_t                  metric;    /* metrics slot of the pattern */
} ngx_social_compiled_route_t;


typedef struct {
    ngx_array_t                 routes;    /* ngx_social_compiled_route_t */
    ngx_array_t                 metric_names;  /* ngx_str_t */
    ngx_social_metrics_route_t **metric_slots; /* by name, in shm */
} ngx_social_core_main_conf_t;


extern ngx_module_t  ngx_social_core_module;


ngx_int_t ngx_social_router_match(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx, ngx_uint_t *allowed);

ngx_int_t ngx_social_auth(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_int_t *rc);
ngx_int_t ngx_social_core_run(ngx_http_request_t *r, ngx_social_ctx_t *ctx);

ngx_int_t ngx_social_metrics_init(ngx_conf_t *cf);
ngx_int_t ngx_social_metrics_init_process(ngx_cycle_t *cycle);
void ngx_social_metrics_exit_process(ngx_cycle_t *cycle);

ngx_int_t ngx_social_events_init(ngx_conf_t *cf);
ngx_int_t ngx_social_cache_init(ngx_conf_t *cf);

ngx_int_t ngx_social_idem_init(ngx_conf_t *cf);
ngx_int_t ngx_social_idem_init_process(ngx_cycle_t *cycle);

ngx_int_t ngx_social_request_id_init(ngx_conf_t *cf);
ngx_int_t ngx_social_request_id_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_SOCIAL_CORE_MODULE_H_INCLUDED_ */
