/*
 * The route table: modules declare (methods, pattern, handler) entries at
 * configuration time; requests are matched segment by segment.
 */

#include "ngx_social_core_module.h"


static ngx_uint_t ngx_social_router_split(ngx_str_t *path, ngx_str_t *out,
    ngx_uint_t max);


#define NGX_SOCIAL_MAX_SEGMENTS  8


ngx_int_t
ngx_social_routes_add(ngx_conf_t *cf, ngx_social_route_t *routes,
    ngx_uint_t n)
{
    ngx_uint_t                    i, j, nseg, nparams;
    ngx_str_t                     seg[NGX_SOCIAL_MAX_SEGMENTS + 1];
    ngx_social_core_main_conf_t  *cmcf;
    ngx_social_compiled_route_t  *cr;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_social_core_module);

    for (i = 0; i < n; i++) {
        nseg = ngx_social_router_split(&routes[i].pattern, seg,
                                       NGX_SOCIAL_MAX_SEGMENTS + 1);
        if (nseg > NGX_SOCIAL_MAX_SEGMENTS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "social route \"%V\" has too many segments",
                               &routes[i].pattern);
            return NGX_ERROR;
        }

        cr = ngx_array_push(&cmcf->routes);
        if (cr == NULL) {
            return NGX_ERROR;
        }

        cr->route = &routes[i];
        cr->nsegments = nseg;
        cr->segments = ngx_palloc(cf->pool,
                                  nseg * sizeof(ngx_social_segment_t));
        if (cr->segments == NULL) {
            return NGX_ERROR;
        }

        nparams = 0;

        for (j = 0; j < nseg; j++) {
            cr->segments[j].text = seg[j];
            cr->segments[j].param = (seg[j].len > 1 && seg[j].data[0] == '{');
            nparams += cr->segments[j].param;
        }

        if (nparams > NGX_SOCIAL_MAX_PARAMS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "social route \"%V\" has too many parameters",
                               &routes[i].pattern);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Finds the route for r->uri.  NGX_OK: ctx->route and ctx->params are set.
 * NGX_HTTP_NOT_ALLOWED: the path exists, *allowed has its methods.
 * NGX_DECLINED: no such path.
 */

ngx_int_t
ngx_social_router_match(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_uint_t *allowed)
{
    ngx_uint_t                    i, j, nseg, method;
    ngx_str_t                     seg[NGX_SOCIAL_MAX_SEGMENTS + 1];
    ngx_social_core_main_conf_t  *cmcf;
    ngx_social_compiled_route_t  *cr;
    ngx_social_segment_t         *s;

    cmcf = ngx_http_get_module_main_conf(r, ngx_social_core_module);

    nseg = ngx_social_router_split(&r->uri, seg, NGX_SOCIAL_MAX_SEGMENTS + 1);

    method = (r->method == NGX_HTTP_HEAD) ? NGX_HTTP_GET : r->method;
    *allowed = 0;

    cr = cmcf->routes.elts;

    for (i = 0; i < cmcf->routes.nelts; i++) {

        if (cr[i].nsegments != nseg) {
            continue;
        }

        s = cr[i].segments;

        for (j = 0; j < nseg; j++) {
            if (s[j].param) {
                continue;
            }

            if (s[j].text.len != seg[j].len
                || ngx_strncmp(s[j].text.data, seg[j].data, seg[j].len) != 0)
            {
                break;
            }
        }

        if (j != nseg) {
            continue;
        }

        if (!(cr[i].route->methods & method)) {
            *allowed |= cr[i].route->methods;
            continue;
        }

        ctx->route = cr[i].route;
        ctx->nparams = 0;

        for (j = 0; j < nseg; j++) {
            if (s[j].param) {
                ctx->params[ctx->nparams++] = seg[j];
            }
        }

        return NGX_OK;
    }

    return *allowed ? NGX_HTTP_NOT_ALLOWED : NGX_DECLINED;
}


/*
 * "/v1/users/42" -> "v1", "users", "42".  An empty segment (a double or
 * trailing slash) is kept, so such paths match nothing.  Returns max when
 * the path has more segments than fit.
 */

static ngx_uint_t
ngx_social_router_split(ngx_str_t *path, ngx_str_t *out, ngx_uint_t max)
{
    u_char      *p, *last, *start;
    ngx_uint_t   n;

    p = path->data;
    last = p + path->len;

    if (p == last || *p != '/') {
        return max;
    }

    n = 0;
    p++;

    for ( ;; ) {
        if (n == max) {
            return max;
        }

        start = p;

        while (p < last && *p != '/') {
            p++;
        }

        out[n].data = start;
        out[n].len = p - start;
        n++;

        if (p == last) {
            return n;
        }

        p++;
    }
}
