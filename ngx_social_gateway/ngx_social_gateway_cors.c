/*
 * CORS for browsers on other origins.  "social_cors_origins" lists the
 * origins allowed (or "*": any); where it is set, every response carries
 * "Vary: Origin", a response to an allowed Origin carries
 * Access-Control-Allow-Origin (that origin), -Expose-Headers and, with
 * "social_cors_credentials on", -Allow-Credentials; a preflight (OPTIONS
 * with Origin and Access-Control-Request-Method) is answered 204 in the
 * rewrite phase, before authentication, limits and the location's own
 * "return", with -Allow-Methods, -Allow-Headers and
 * -Max-Age when the origin is allowed, with none of them when it is not.
 */

#include "ngx_social_gateway.h"


static ngx_int_t ngx_social_gateway_cors_preflight(ngx_http_request_t *r);
static ngx_int_t ngx_social_gateway_cors_filter(ngx_http_request_t *r);
static ngx_uint_t ngx_social_gateway_cors_allowed(ngx_http_request_t *r,
    ngx_social_gateway_loc_conf_t *glcf, ngx_str_t *origin);
static ngx_int_t ngx_social_gateway_cors_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);


static ngx_str_t  ngx_social_gateway_cors_vars[] = {
    ngx_string("http_origin"),
    ngx_string("http_access_control_request_method")
};

static ngx_int_t  ngx_social_gateway_cors_index[2];

static ngx_str_t  ngx_social_gateway_cors_true = ngx_string("true");
static ngx_str_t  ngx_social_gateway_cors_vary = ngx_string("Origin");

static ngx_http_output_header_filter_pt  ngx_social_gateway_next_filter;


ngx_int_t
ngx_social_gateway_cors_init(ngx_conf_t *cf)
{
    ngx_uint_t                  i;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    for (i = 0; i < 2; i++) {
        ngx_social_gateway_cors_index[i] =
            ngx_http_get_variable_index(cf, &ngx_social_gateway_cors_vars[i]);
        if (ngx_social_gateway_cors_index[i] == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_social_gateway_cors_preflight;

    ngx_social_gateway_next_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_social_gateway_cors_filter;

    return NGX_OK;
}


/* social_cors_origins ORIGIN ... | * */

char *
ngx_social_gateway_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_social_gateway_loc_conf_t  *glcf = conf;

    ngx_str_t   *value, *o;
    ngx_uint_t   i;

    if (glcf->cors_origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    glcf->cors_origins = ngx_array_create(cf->pool, cf->args->nelts,
                                          sizeof(ngx_str_t));
    if (glcf->cors_origins == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "*") == 0) {
            glcf->cors_any = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "http://", 7) != 0
            && ngx_strncmp(value[i].data, "https://", 8) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" is not an origin (scheme://host"
                               "[:port])", &value[i]);
            return NGX_CONF_ERROR;
        }

        o = ngx_array_push(glcf->cors_origins);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        *o = value[i];
    }

    return NGX_CONF_OK;
}


/* a list directive (methods, headers): its arguments joined by ", " */

char *
ngx_social_gateway_cors_list(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *value, *field;
    ngx_uint_t   i;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    len = 0;

    for (i = 1; i < cf->args->nelts; i++) {
        len += value[i].len + 2;
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    field->data = p;

    for (i = 1; i < cf->args->nelts; i++) {
        p = ngx_cpymem(p, value[i].data, value[i].len);
        *p++ = ',';
        *p++ = ' ';
    }

    field->len = len - 2;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_social_gateway_cors_preflight(ngx_http_request_t *r)
{
    ngx_str_t                       origin, max_age;
    ngx_uint_t                      allowed;
    ngx_http_variable_value_t      *method;
    ngx_social_gateway_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_social_gateway_module);

    if (glcf->cors_origins == NULL || r != r->main
        || r->method != NGX_HTTP_OPTIONS)
    {
        return NGX_DECLINED;
    }

    method = ngx_http_get_indexed_variable(r,
                                           ngx_social_gateway_cors_index[1]);
    allowed = ngx_social_gateway_cors_allowed(r, glcf, &origin);

    if (method == NULL || method->not_found || origin.len == 0) {
        /* not a preflight: the location answers OPTIONS as it does */
        return NGX_DECLINED;
    }

    if (allowed) {
        max_age.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (max_age.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        max_age.len = ngx_sprintf(max_age.data, "%T", glcf->cors_max_age)
                      - max_age.data;

        if (ngx_social_gateway_cors_header(r, "Access-Control-Allow-Methods",
                                           &glcf->cors_methods)
               != NGX_OK
            || ngx_social_gateway_cors_header(r,
                                              "Access-Control-Allow-Headers",
                                              &glcf->cors_headers)
               != NGX_OK
            || ngx_social_gateway_cors_header(r, "Access-Control-Max-Age",
                                              &max_age)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* the header filter adds the origin's headers, as to any response */

    return NGX_HTTP_NO_CONTENT;
}


static ngx_int_t
ngx_social_gateway_cors_filter(ngx_http_request_t *r)
{
    ngx_str_t                       origin;
    ngx_social_gateway_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_social_gateway_module);

    if (glcf->cors_origins == NULL || r != r->main) {
        return ngx_social_gateway_next_filter(r);
    }

    if (ngx_social_gateway_cors_header(r, "Vary",
                                       &ngx_social_gateway_cors_vary)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!ngx_social_gateway_cors_allowed(r, glcf, &origin)) {
        return ngx_social_gateway_next_filter(r);
    }

    if (ngx_social_gateway_cors_header(r, "Access-Control-Allow-Origin",
                                       &origin)
           != NGX_OK
        || ngx_social_gateway_cors_header(r, "Access-Control-Expose-Headers",
                                          &glcf->cors_expose)
           != NGX_OK
        || (glcf->cors_credentials
            && ngx_social_gateway_cors_header(r,
                                       "Access-Control-Allow-Credentials",
                                       &ngx_social_gateway_cors_true)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    return ngx_social_gateway_next_filter(r);
}


/* *origin is the request's Origin (len 0: none); whether it is allowed */

static ngx_uint_t
ngx_social_gateway_cors_allowed(ngx_http_request_t *r,
    ngx_social_gateway_loc_conf_t *glcf, ngx_str_t *origin)
{
    ngx_str_t                  *o;
    ngx_uint_t                  i;
    ngx_http_variable_value_t  *v;

    v = ngx_http_get_indexed_variable(r, ngx_social_gateway_cors_index[0]);

    if (v == NULL || v->not_found || v->len == 0) {
        origin->len = 0;
        return 0;
    }

    origin->data = v->data;
    origin->len = v->len;

    if (glcf->cors_any) {
        return 1;
    }

    o = glcf->cors_origins->elts;

    for (i = 0; i < glcf->cors_origins->nelts; i++) {
        if (o[i].len == origin->len
            && ngx_strncasecmp(o[i].data, origin->data, origin->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_social_gateway_cors_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}
