/*
 * ngx_social_core: the runtime every ngx_social_* module builds on.
 *
 * It is loaded first (nginx dlopens modules with RTLD_GLOBAL), so the
 * service modules call these functions directly.
 */

#ifndef _NGX_SOCIAL_CORE_H_INCLUDED_
#define _NGX_SOCIAL_CORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>


#define NGX_SOCIAL_MAX_PARAMS        4
#define NGX_SOCIAL_MAX_BODY          (1024 * 1024)

/* route flags */
#define NGX_SOCIAL_ROUTE_JSON_BODY   0x01    /* body must be a JSON object */


typedef struct ngx_social_ctx_s  ngx_social_ctx_t;

typedef ngx_int_t (*ngx_social_handler_pt)(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);


typedef struct {
    ngx_uint_t                  methods;   /* NGX_HTTP_GET|NGX_HTTP_POST... */
    ngx_str_t                   pattern;   /* "/v1/users/{id}/follow" */
    ngx_social_handler_pt       handler;
    ngx_uint_t                  flags;
} ngx_social_route_t;


struct ngx_social_ctx_s {
    ngx_social_route_t         *route;
    ngx_str_t                   params[NGX_SOCIAL_MAX_PARAMS];
    ngx_uint_t                  nparams;
    json_t                     *body;      /* owned by a pool cleanup */
};


/* router */
ngx_int_t ngx_social_routes_add(ngx_conf_t *cf, ngx_social_route_t *routes,
    ngx_uint_t n);

/* request id: the value of $social_request_id */
ngx_int_t ngx_social_request_id(ngx_http_request_t *r, ngx_str_t *id);

/* JSON output */
ngx_int_t ngx_social_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json);
ngx_int_t ngx_social_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, json_t *fields);
json_t *ngx_social_json_owned(ngx_http_request_t *r, json_t *json);
json_t *ngx_social_json_str(ngx_str_t *s);

/* JSON input */
ngx_int_t ngx_social_parse_json_body(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_body_bytes(ngx_http_request_t *r, ngx_str_t *body);


#include "ngx_social_redis.h"


#endif /* _NGX_SOCIAL_CORE_H_INCLUDED_ */
