/*
 * ngx_social_core: directives, configuration and the two content handlers
 * every deployment uses: "social_api" dispatches a request to the route a
 * module declared, "social_error_page" answers nginx's own errors in the
 * contract's JSON shape.
 */

#include "ngx_social_core_module.h"


typedef struct {
    ngx_uint_t                  status;
    const char                 *code;
    const char                 *message;
} ngx_social_core_error_t;


static ngx_int_t ngx_social_core_api_handler(ngx_http_request_t *r);
static void ngx_social_core_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_social_core_not_allowed(ngx_http_request_t *r,
    ngx_uint_t allowed);
static ngx_int_t ngx_social_core_error_page_handler(ngx_http_request_t *r);
static char *ngx_social_core_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_social_core_error_page(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_social_core_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_social_core_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_social_core_init_process(ngx_cycle_t *cycle);
static void ngx_social_core_exit_process(ngx_cycle_t *cycle);


static ngx_social_core_error_t  ngx_social_core_errors[] = {
    { NGX_HTTP_BAD_REQUEST, "bad_request", "the request is malformed" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized",
      "a valid access token is required" },
    { NGX_HTTP_FORBIDDEN, "forbidden", "this is not allowed" },
    { NGX_HTTP_NOT_FOUND, "not_found", "no such resource" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
      "this method is not allowed here" },
    { NGX_HTTP_REQUEST_TIME_OUT, "request_timeout",
      "the request was not received in time" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
      "the request body is too large" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "uri_too_long",
      "the request URI is too long" },
    { NGX_HTTP_REQUEST_HEADER_TOO_LARGE, "bad_request",
      "a request header is too large" },
    { 429, "rate_limited", "too many requests" },
    { NGX_HTTP_BAD_GATEWAY, "bad_gateway", "an upstream service failed" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
      "the service is unavailable" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "gateway_timeout",
      "an upstream service timed out" },
    { 0, "internal_error", "internal server error" }
};


static ngx_social_limit_pt  ngx_social_core_limiter;


static ngx_str_t  ngx_social_core_methods[] = {
    ngx_string("GET"), ngx_string("POST"), ngx_string("PUT"),
    ngx_string("PATCH"), ngx_string("DELETE")
};

static ngx_uint_t  ngx_social_core_method_bits[] = {
    NGX_HTTP_GET, NGX_HTTP_POST, NGX_HTTP_PUT, NGX_HTTP_PATCH,
    NGX_HTTP_DELETE
};


static ngx_command_t  ngx_social_core_commands[] = {

    { ngx_string("social_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_social_core_api,
      0,
      0,
      NULL },

    { ngx_string("social_error_page"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_social_core_error_page,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_social_core_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_core_postconfiguration,     /* postconfiguration */

    ngx_social_core_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_core_module = {
    NGX_MODULE_V1,
    &ngx_social_core_module_ctx,           /* module context */
    ngx_social_core_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_social_core_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_social_core_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_social_core_api_handler(ngx_http_request_t *r)
{
    ngx_int_t          rc;
    ngx_uint_t         allowed;
    ngx_social_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_social_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_social_core_module);

    rc = ngx_social_router_match(r, ctx, &allowed);

    if (rc == NGX_OK
        && (ctx->route->flags
            & (NGX_SOCIAL_ROUTE_JSON_BODY|NGX_SOCIAL_ROUTE_RAW_BODY)))
    {
        rc = ngx_http_read_client_request_body(r,
                                               ngx_social_core_body_handler);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (rc) {

    case NGX_OK:
        return ngx_social_core_run(r, ctx);

    case NGX_HTTP_NOT_ALLOWED:
        return ngx_social_core_not_allowed(r, allowed);

    default:
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such resource", NULL);
    }
}


static void
ngx_social_core_body_handler(ngx_http_request_t *r)
{
    ngx_int_t          rc;
    ngx_social_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_social_core_module);

    if (!(ctx->route->flags & NGX_SOCIAL_ROUTE_JSON_BODY)) {
        ngx_http_finalize_request(r, ngx_social_core_run(r, ctx));
        return;
    }

    rc = ngx_social_parse_json_body(r, ctx);

    if (ctx->body != NULL) {
        rc = ngx_social_core_run(r, ctx);
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * Authenticates, then runs the route's handler.  While it waits for
 * PostgreSQL or Redis, a client that closes its connection is noticed (as
 * the proxy module does), so the request is finalized and its queries are
 * dropped.
 */

ngx_int_t
ngx_social_core_run(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t  rc;

    switch (ngx_social_auth(r, ctx, &rc)) {

    case NGX_OK:
        break;

    case NGX_AGAIN:
        ctx->resume = ngx_social_core_run;
        return ngx_social_auth_wait(r, ctx);

    default:
        return rc;
    }

    r->read_event_handler = ngx_http_test_reading;

    if (ngx_social_core_limiter
        && !(ctx->route->flags & NGX_SOCIAL_ROUTE_UNLIMITED))
    {
        return ngx_social_core_limiter(r, ctx);
    }

    return ctx->route->handler(r, ctx);
}


void
ngx_social_set_limiter(ngx_social_limit_pt limit)
{
    ngx_social_core_limiter = limit;
}


/* the request passed the limiter: its route's handler */

ngx_int_t
ngx_social_core_proceed(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ctx->route->handler(r, ctx);
}


static ngx_int_t
ngx_social_core_not_allowed(ngx_http_request_t *r, ngx_uint_t allowed)
{
    u_char           *p;
    size_t            len;
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    len = 0;

    for (i = 0; i < sizeof(ngx_social_core_method_bits) / sizeof(ngx_uint_t);
         i++)
    {
        if (allowed & ngx_social_core_method_bits[i]) {
            len += ngx_social_core_methods[i].len + sizeof(", ") - 1;
        }
    }

    if (allowed & NGX_HTTP_GET) {
        len += sizeof("HEAD, ") - 1;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value.data = p;

    for (i = 0; i < sizeof(ngx_social_core_method_bits) / sizeof(ngx_uint_t);
         i++)
    {
        if (allowed & ngx_social_core_method_bits[i]) {
            p = ngx_cpymem(p, ngx_social_core_methods[i].data,
                           ngx_social_core_methods[i].len);
            *p++ = ',';
            *p++ = ' ';
        }
    }

    if (allowed & NGX_HTTP_GET) {
        p = ngx_cpymem(p, "HEAD, ", sizeof("HEAD, ") - 1);
    }

    h->value.len = p - h->value.data - 2;

    return ngx_social_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                 "method_not_allowed",
                                 "this method is not allowed here", NULL);
}


/*
 * The target of "error_page ... @social_error": r->err_status still holds
 * the status nginx was about to answer with.
 */

static ngx_int_t
ngx_social_core_error_page_handler(ngx_http_request_t *r)
{
    ngx_uint_t                status, i;
    ngx_social_core_error_t  *e;

    status = r->err_status ? r->err_status : NGX_HTTP_INTERNAL_SERVER_ERROR;

    for (i = 0; ngx_social_core_errors[i].status != 0; i++) {
        if (ngx_social_core_errors[i].status == status) {
            break;
        }
    }

    e = &ngx_social_core_errors[i];

    if (e->status == 0 && status < NGX_HTTP_INTERNAL_SERVER_ERROR) {
        e = &ngx_social_core_errors[0];
    }

    /* nginx's own 494-499 are not statuses a client should see */

    if (status >= NGX_HTTP_REQUEST_HEADER_TOO_LARGE
        && status < NGX_HTTP_INTERNAL_SERVER_ERROR)
    {
        status = NGX_HTTP_BAD_REQUEST;
    }

    return ngx_social_send_error(r, status, e->code, e->message, NULL);
}


static char *
ngx_social_core_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_social_core_api_handler;

    return NGX_CONF_OK;
}


static char *
ngx_social_core_error_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_social_core_error_page_handler;

    return NGX_CONF_OK;
}


static void *
ngx_social_core_create_main_conf(ngx_conf_t *cf)
{
    ngx_str_t                    *name;
    ngx_social_core_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_core_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cmcf->routes, cf->pool, 32,
                       sizeof(ngx_social_compiled_route_t))
        != NGX_OK
        || ngx_array_init(&cmcf->metric_names, cf->pool, 32,
                          sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NULL;
    }

    /* NGX_SOCIAL_METRICS_UNMATCHED and NGX_SOCIAL_METRICS_OTHER */

    name = ngx_array_push_n(&cmcf->metric_names, 2);
    if (name == NULL) {
        return NULL;
    }

    ngx_str_set(&name[0], "unmatched");
    ngx_str_set(&name[1], "other");

    return cmcf;
}


static ngx_int_t
ngx_social_core_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_social_metrics_init(cf) != NGX_OK
        || ngx_social_events_init(cf) != NGX_OK
        || ngx_social_cache_init(cf) != NGX_OK
        || ngx_social_idem_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_request_id_init(cf);
}


static ngx_int_t
ngx_social_core_init_process(ngx_cycle_t *cycle)
{
    if (ngx_social_metrics_init_process(cycle) != NGX_OK
        || ngx_social_idem_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_request_id_init_process(cycle);
}


static void
ngx_social_core_exit_process(ngx_cycle_t *cycle)
{
    ngx_social_metrics_exit_process(cycle);
}
