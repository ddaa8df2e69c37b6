/*
 * The route table: modules declare (methods, pattern, handler) entries at
 * configuration time; requests are matched segment by segment.
 */

#include "ngx_social_core_module.h"


static ngx_social_compiled_route_t *ngx_social_router_find(
    ngx_http_request_t *r, ngx_str_t *seg, ngx_uint_t nseg,
    ngx_uint_t *allowed);
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
        cr->metric = ngx_social_metrics_route(cf, &routes[i].pattern);

        if (cr->metric == (ngx_uint_t) NGX_ERROR) {
            return NGX_ERROR;
        }

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
 * NGX_DECLINED: no such path.  ctx->metric is the path's pattern, if any.
 */

ngx_int_t
ngx_social_router_match(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_uint_t *allowed)
{
    ngx_uint_t                    j, nseg;
    ngx_str_t                     seg[NGX_SOCIAL_MAX_SEGMENTS + 1];
    ngx_social_compiled_route_t  *cr;

    nseg = ngx_social_router_split(&r->uri, seg, NGX_SOCIAL_MAX_SEGMENTS + 1);

    cr = ngx_social_router_find(r, seg, nseg, allowed);

    if (cr == NULL) {
        return *allowed ? NGX_HTTP_NOT_ALLOWED : NGX_DECLINED;
    }

    ctx->metric = cr->metric;

    if (*allowed) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    ctx->route = cr->route;
    ctx->nparams = 0;

    for (j = 0; j < nseg; j++) {
        if (cr->segments[j].param) {
            ctx->params[ctx->nparams++] = seg[j];
        }
    }

    return NGX_OK;
}


/* the metrics slot of the route pattern r->uri matches, whatever method */

ngx_uint_t
ngx_social_router_metric(ngx_http_request_t *r)
{
    ngx_uint_t                    nseg, allowed;
    ngx_str_t                     seg[NGX_SOCIAL_MAX_SEGMENTS + 1];
    ngx_social_compiled_route_t  *cr;

    nseg = ngx_social_router_split(&r->uri, seg, NGX_SOCIAL_MAX_SEGMENTS + 1);

    cr = ngx_social_router_find(r, seg, nseg, &allowed);

    return cr ? cr->metric : NGX_SOCIAL_METRICS_UNMATCHED;
}


/*
 * The route of the path's segments for r's method; else the last route of
 * the path with *allowed holding the path's methods; else NULL.
 */

static ngx_social_compiled_route_t *
ngx_social_router_find(ngx_http_request_t *r, ngx_str_t *seg,
    ngx_uint_t nseg, ngx_uint_t *allowed)
{
    ngx_uint_t                    i, j, method;
    ngx_social_core_main_conf_t  *cmcf;
    ngx_social_compiled_route_t  *cr, *found;
    ngx_social_segment_t         *s;

    cmcf = ngx_http_get_module_main_conf(r, ngx_social_core_module);

    method = (r->method == NGX_HTTP_HEAD) ? NGX_HTTP_GET : r->method;
    *allowed = 0;
    found = NULL;

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
            found = &cr[i];
            continue;
        }

        *allowed = 0;

        return &cr[i];
    }

    return found;
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
