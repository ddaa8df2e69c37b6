/*
 * "social_auth required | optional | off" for any location (a proxied
 * service, a static file), in the access phase, with the core's token
 * verification; and $social_user_id, the authenticated user of the request
 * (for logs and for proxying), whether a location or an API route
 * authenticated it.
 */

#include "ngx_social_gateway.h"


static ngx_int_t ngx_social_gateway_auth_resume(ngx_http_request_t *r,
    ngx_social_ctx_t *wait);
static ngx_int_t ngx_social_gateway_auth_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_social_gateway_user_var = ngx_string("social_user_id");

ngx_conf_enum_t  ngx_social_gateway_auth_modes[] = {
    { ngx_string("off"), 0 },
    { ngx_string("optional"), NGX_SOCIAL_ROUTE_AUTH_OPTIONAL },
    { ngx_string("required"), NGX_SOCIAL_ROUTE_AUTH },
    { ngx_null_string, 0 }
};


ngx_int_t
ngx_social_gateway_auth_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    const char                      *error, *message;
    ngx_social_ctx_t                *wait;
    ngx_social_token_t               token;
    ngx_social_gateway_ctx_t        *ctx;
    ngx_social_gateway_loc_conf_t   *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_social_gateway_module);

    if (glcf->auth == 0 || r != r->main
        || ngx_http_get_module_ctx(r, ngx_social_gateway_module) != NULL)
    {
        return NGX_DECLINED;
    }

    rc = ngx_social_auth_token(r, glcf->auth, &token, &error, &message);

    if (rc == NGX_AGAIN) {
        /* the worker is starting: wait for its revocation mirror */
        wait = ngx_pcalloc(r->pool, sizeof(ngx_social_ctx_t));
        if (wait == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        wait->request = r;
        wait->resume = ngx_social_gateway_auth_resume;

        return ngx_social_auth_wait(r, wait);
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "social: unauthorized: %s", message);

        if (ngx_social_auth_challenge(r, error) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_UNAUTHORIZED;
    }

    ctx = ngx_social_gateway_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->user_id = token.sub;

    return NGX_DECLINED;
}


/* the gateway's context of r, created on first use */

ngx_social_gateway_ctx_t *
ngx_social_gateway_ctx(ngx_http_request_t *r)
{
    ngx_social_gateway_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_social_gateway_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_social_gateway_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_social_gateway_module);
    }

    return ctx;
}


/* the mirror is loaded: the phases go on, this handler first */

static ngx_int_t
ngx_social_gateway_auth_resume(ngx_http_request_t *r, ngx_social_ctx_t *wait)
{
    ngx_http_core_run_phases(r);

    return NGX_DONE;
}


ngx_int_t
ngx_social_gateway_auth_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_variable_t        *var;
    ngx_http_core_main_conf_t  *cmcf;

    var = ngx_http_add_variable(cf, &ngx_social_gateway_user_var,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_social_gateway_auth_variable;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_social_gateway_auth_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_social_gateway_auth_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    int64_t                         id;
    u_char                         *p;
    ngx_social_ctx_t               *core;
    ngx_social_gateway_ctx_t       *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_social_gateway_module);
    core = ngx_http_get_module_ctx(r->main, ngx_social_core_module);

    id = ctx ? ctx->user_id : (core ? core->user_id : 0);

    if (id == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    v->len = ngx_sprintf(p, "%L", id) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
