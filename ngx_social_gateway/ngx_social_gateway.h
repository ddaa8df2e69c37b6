/*
 * Internal declarations of the gateway module.
 */

#ifndef _NGX_SOCIAL_GATEWAY_H_INCLUDED_
#define _NGX_SOCIAL_GATEWAY_H_INCLUDED_


#include <ngx_social_core.h>


/* social_metrics_route api | off (else a route index) */
#define NGX_SOCIAL_GATEWAY_ROUTE_API   -2
#define NGX_SOCIAL_GATEWAY_ROUTE_OFF   -3

/* social_limit_location */
#define NGX_SOCIAL_GATEWAY_LIMIT_OFF    0
#define NGX_SOCIAL_GATEWAY_LIMIT_ON     1
#define NGX_SOCIAL_GATEWAY_LIMIT_LOGIN  2

#define NGX_SOCIAL_GATEWAY_TOO_MANY     429

/* worker process figures shown */
#define NGX_SOCIAL_GATEWAY_WORKERS     64


typedef struct {
    ngx_uint_t                  auth;      /* NGX_SOCIAL_ROUTE_AUTH... */
    ngx_int_t                   metrics_route;
    ngx_uint_t                  limit;     /* NGX_SOCIAL_GATEWAY_LIMIT_... */

    ngx_array_t                *cors_origins;  /* NULL: no CORS */
    ngx_uint_t                  cors_any;      /* "*" */
    ngx_str_t                   cors_methods;  /* joined by ", " */
    ngx_str_t                   cors_headers;
    ngx_str_t                   cors_expose;
    time_t                      cors_max_age;
    ngx_flag_t                  cors_credentials;
} ngx_social_gateway_loc_conf_t;


/* a request's, in a plain location */
typedef struct {
    int64_t                     user_id;   /* by social_auth; 0: none */
    ngx_int_t                   limit_rc;  /* the limiter's verdict */
    unsigned                    limited:1; /* limit_rc is set */
} ngx_social_gateway_ctx_t;


typedef struct {
    ngx_str_t                   name;      /* "read", "write", "login" */
    ngx_msec_t                  interval;  /* between requests */
    ngx_int_t                   burst;     /* 0: not limited */
    ngx_str_t                   args[2];   /* both, as script arguments */
} ngx_social_gateway_limit_t;


typedef struct {
    ngx_social_gateway_limit_t  limits[3];
    ngx_uint_t                  fallback_local;
    ngx_shm_zone_t             *zone;
} ngx_social_gateway_main_conf_t;


extern ngx_module_t     ngx_social_gateway_module;
extern ngx_module_t     ngx_social_core_module;
extern ngx_conf_enum_t  ngx_social_gateway_auth_modes[];
extern ngx_conf_enum_t  ngx_social_gateway_limit_modes[];


ngx_int_t ngx_social_gateway_auth_init(ngx_conf_t *cf);
ngx_social_gateway_ctx_t *ngx_social_gateway_ctx(ngx_http_request_t *r);
ngx_int_t ngx_social_gateway_auth_handler(ngx_http_request_t *r);

ngx_int_t ngx_social_gateway_cors_init(ngx_conf_t *cf);
char *ngx_social_gateway_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_social_gateway_cors_list(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_social_gateway_drain_init(ngx_conf_t *cf);

ngx_int_t ngx_social_gateway_limit_init(ngx_conf_t *cf);
char *ngx_social_gateway_limit_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_social_gateway_limit_zone(ngx_conf_t *cf,
    ngx_social_gateway_main_conf_t *gmcf);

ngx_int_t ngx_social_gateway_health_init(ngx_conf_t *cf);
ngx_int_t ngx_social_gateway_healthz(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_gateway_readyz(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_gateway_metrics_handler(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_gateway_metrics_init(ngx_conf_t *cf);
char *ngx_social_gateway_metrics_route(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_SOCIAL_GATEWAY_H_INCLUDED_ */
