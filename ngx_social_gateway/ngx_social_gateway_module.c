/*
 * ngx_social_gateway: the edge of the API.  It declares the operational
 * routes; the core module's "social_api" handler dispatches to them.
 */

#include "ngx_social_gateway.h"


static void *ngx_social_gateway_create_main_conf(ngx_conf_t *cf);
static char *ngx_social_gateway_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_social_gateway_create_loc_conf(ngx_conf_t *cf);
static char *ngx_social_gateway_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_social_gateway_postconfiguration(ngx_conf_t *cf);


static ngx_conf_enum_t  ngx_social_gateway_fallbacks[] = {
    { ngx_string("open"), 0 },
    { ngx_string("local"), 1 },
    { ngx_null_string, 0 }
};


ngx_conf_enum_t  ngx_social_gateway_limit_modes[] = {
    { ngx_string("off"), NGX_SOCIAL_GATEWAY_LIMIT_OFF },
    { ngx_string("on"), NGX_SOCIAL_GATEWAY_LIMIT_ON },
    { ngx_string("login"), NGX_SOCIAL_GATEWAY_LIMIT_LOGIN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_social_gateway_commands[] = {

    /* bearer token check for a location: required | optional | off */
    { ngx_string("social_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_social_gateway_loc_conf_t, auth),
      &ngx_social_gateway_auth_modes },

    /* social_limit read|write|login rate=Nr/s|Nr/m burst=N */
    { ngx_string("social_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_social_gateway_limit_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* the limits for a plain location: on (read/write) | login | off */
    { ngx_string("social_limit_location"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_social_gateway_loc_conf_t, limit),
      &ngx_social_gateway_limit_modes },

    /* while Redis is away: limits per node in shared memory, or none */
    { ngx_string("social_limit_fallback"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_gateway_main_conf_t, fallback_local),
      &ngx_social_gateway_fallbacks },

    /* the route a plain location's requests count under in /metrics */
    { ngx_string("social_metrics_route"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_social_gateway_metrics_route,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* CORS: the origins allowed (or *), what a preflight allows */
    { ngx_string("social_cors_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_social_gateway_cors_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("social_cors_methods"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_social_gateway_cors_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_social_gateway_loc_conf_t, cors_methods),
      NULL },

    { ngx_string("social_cors_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_social_gateway_cors_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_social_gateway_loc_conf_t, cors_headers),
      NULL },

    { ngx_string("social_cors_expose_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_social_gateway_cors_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_social_gateway_loc_conf_t, cors_expose),
      NULL },

    { ngx_string("social_cors_max_age"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_social_gateway_loc_conf_t, cors_max_age),
      NULL },

    { ngx_string("social_cors_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_social_gateway_loc_conf_t, cors_credentials),
      NULL },

      ngx_null_command
};


static ngx_social_route_t  ngx_social_gateway_routes[] = {
    { NGX_HTTP_GET, ngx_string("/healthz"), ngx_social_gateway_healthz,
      NGX_SOCIAL_ROUTE_UNLIMITED },
    { NGX_HTTP_GET, ngx_string("/readyz"), ngx_social_gateway_readyz,
      NGX_SOCIAL_ROUTE_UNLIMITED },
    { NGX_HTTP_GET, ngx_string("/metrics"),
      ngx_social_gateway_metrics_handler, NGX_SOCIAL_ROUTE_UNLIMITED }
};


static ngx_http_module_t  ngx_social_gateway_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_gateway_postconfiguration,  /* postconfiguration */

    ngx_social_gateway_create_main_conf,   /* create main configuration */
    ngx_social_gateway_init_main_conf,     /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_social_gateway_create_loc_conf,    /* create location configuration */
    ngx_social_gateway_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_social_gateway_module = {
    NGX_MODULE_V1,
    &ngx_social_gateway_module_ctx,        /* module context */
    ngx_social_gateway_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_social_gateway_create_main_conf(ngx_conf_t *cf)
{
    ngx_social_gateway_main_conf_t  *gmcf;

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_gateway_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    gmcf->fallback_local = NGX_CONF_UNSET_UINT;

    if (ngx_social_gateway_limit_zone(cf, gmcf) != NGX_OK) {
        return NULL;
    }

    return gmcf;
}


static char *
ngx_social_gateway_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_social_gateway_main_conf_t  *gmcf = conf;

    ngx_conf_init_uint_value(gmcf->fallback_local, 1);

    return NGX_CONF_OK;
}


static void *
ngx_social_gateway_create_loc_conf(ngx_conf_t *cf)
{
    ngx_social_gateway_loc_conf_t  *glcf;

    glcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_gateway_loc_conf_t));
    if (glcf == NULL) {
        return NULL;
    }

    glcf->auth = NGX_CONF_UNSET_UINT;
    glcf->metrics_route = NGX_CONF_UNSET;
    glcf->limit = NGX_CONF_UNSET_UINT;
    glcf->cors_origins = NGX_CONF_UNSET_PTR;
    glcf->cors_max_age = NGX_CONF_UNSET;
    glcf->cors_credentials = NGX_CONF_UNSET;

    return glcf;
}


static char *
ngx_social_gateway_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_social_gateway_loc_conf_t  *prev = parent;
    ngx_social_gateway_loc_conf_t  *conf = child;

    ngx_conf_merge_uint_value(conf->auth, prev->auth, 0);
    ngx_conf_merge_uint_value(conf->limit, prev->limit,
                              NGX_SOCIAL_GATEWAY_LIMIT_OFF);
    ngx_conf_merge_value(conf->metrics_route, prev->metrics_route,
                         NGX_SOCIAL_METRICS_OTHER);

    if (conf->cors_origins == NGX_CONF_UNSET_PTR) {
        conf->cors_origins = (prev->cors_origins == NGX_CONF_UNSET_PTR)
                             ? NULL : prev->cors_origins;
        conf->cors_any = prev->cors_any;
    }

    ngx_conf_merge_str_value(conf->cors_methods, prev->cors_methods,
                             "GET, HEAD, POST, PUT, PATCH, DELETE");
    ngx_conf_merge_str_value(conf->cors_headers, prev->cors_headers,
                             "Authorization, Content-Type, Idempotency-Key, "
                             "X-Request-Id, Last-Event-ID");
    ngx_conf_merge_str_value(conf->cors_expose, prev->cors_expose,
                             "X-Request-Id, RateLimit-Limit, "
                             "RateLimit-Remaining, RateLimit-Reset, "
                             "Retry-After, Link");
    ngx_conf_merge_sec_value(conf->cors_max_age, prev->cors_max_age, 600);
    ngx_conf_merge_value(conf->cors_credentials, prev->cors_credentials, 0);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_social_gateway_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_social_gateway_health_init(cf) != NGX_OK
        || ngx_social_gateway_metrics_init(cf) != NGX_OK
        || ngx_social_gateway_cors_init(cf) != NGX_OK
        || ngx_social_gateway_drain_init(cf) != NGX_OK
        || ngx_social_gateway_limit_init(cf) != NGX_OK
        || ngx_social_gateway_auth_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_routes_add(cf, ngx_social_gateway_routes,
                                 sizeof(ngx_social_gateway_routes)
                                 / sizeof(ngx_social_route_t));
}
