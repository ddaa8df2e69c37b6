/*
 * ngx_social_users: registration, the OAuth2 token endpoint, profiles
 * and follows.  This file holds the directives, the route table and the
 * process hooks; each resource has its own file.
 */

#include "ngx_social_users.h"


static void *ngx_social_users_create_main_conf(ngx_conf_t *cf);
static char *ngx_social_users_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_social_users_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_social_users_init_process(ngx_cycle_t *cycle);
static void ngx_social_users_exit_process(ngx_cycle_t *cycle);


static ngx_social_route_t  ngx_social_users_routes[] = {
    { NGX_HTTP_POST, ngx_string("/v1/users"), ngx_social_users_register,
      NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/v1/users/me"), ngx_social_users_me,
      NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_PATCH, ngx_string("/v1/users/me"), ngx_social_users_patch_me,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/v1/users/{id}"), ngx_social_users_profile,
      0 },
    { NGX_HTTP_POST, ngx_string("/v1/users/{id}/follow"),
      ngx_social_users_follow, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_DELETE, ngx_string("/v1/users/{id}/follow"),
      ngx_social_users_unfollow, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_GET, ngx_string("/v1/users/{id}/followers"),
      ngx_social_users_followers, 0 },
    { NGX_HTTP_GET, ngx_string("/v1/users/{id}/following"),
      ngx_social_users_following, 0 },
    { NGX_HTTP_POST, ngx_string("/oauth/token"), ngx_social_users_token,
      NGX_SOCIAL_ROUTE_RAW_BODY|NGX_SOCIAL_ROUTE_LOGIN },
    { NGX_HTTP_POST, ngx_string("/oauth/revoke"), ngx_social_users_revoke,
      NGX_SOCIAL_ROUTE_RAW_BODY }
};


static ngx_command_t  ngx_social_users_commands[] = {

    /* the thread pool that hashes and verifies passwords */
    { ngx_string("social_users_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_users_main_conf_t, thread_pool_name),
      NULL },

    /* how long a refresh token lives unused */
    { ngx_string("social_users_refresh_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_users_main_conf_t, refresh_ttl),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_social_users_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_users_postconfiguration,    /* postconfiguration */

    ngx_social_users_create_main_conf,     /* create main configuration */
    ngx_social_users_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_users_module = {
    NGX_MODULE_V1,
    &ngx_social_users_module_ctx,          /* module context */
    ngx_social_users_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_social_users_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_social_users_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_social_users_create_main_conf(ngx_conf_t *cf)
{
    ngx_social_users_main_conf_t  *umcf;

    umcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_users_main_conf_t));
    if (umcf == NULL) {
        return NULL;
    }

    umcf->refresh_ttl = NGX_CONF_UNSET;

    return umcf;
}


static char *
ngx_social_users_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_social_users_main_conf_t  *umcf = conf;

    ngx_conf_init_value(umcf->refresh_ttl, 30 * 86400);

    if (umcf->thread_pool_name.len == 0) {
        ngx_str_set(&umcf->thread_pool_name, "default");
    }

    /* the pool as declared by "thread_pool", or one with nginx's defaults */
    if (ngx_thread_pool_add(cf, &umcf->thread_pool_name) == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_social_users_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_social_users_register_init(cf) != NGX_OK
        || ngx_social_users_me_init(cf) != NGX_OK
        || ngx_social_users_profile_init(cf) != NGX_OK
        || ngx_social_users_follow_init(cf) != NGX_OK
        || ngx_social_users_oauth_init(cf) != NGX_OK
        || ngx_social_users_revocation_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_routes_add(cf, ngx_social_users_routes,
                                 sizeof(ngx_social_users_routes)
                                 / sizeof(ngx_social_route_t));
}


static ngx_int_t
ngx_social_users_init_process(ngx_cycle_t *cycle)
{
    ngx_social_users_main_conf_t  *umcf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_social_users_module);

    umcf->thread_pool = ngx_thread_pool_get(cycle, &umcf->thread_pool_name);

    if (umcf->thread_pool == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "social: thread pool \"%V\" not found",
                      &umcf->thread_pool_name);
        return NGX_ERROR;
    }

    if (ngx_social_users_password_init(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_social_users_revocation_start(cycle);
}


static void
ngx_social_users_exit_process(ngx_cycle_t *cycle)
{
    ngx_social_users_revocation_stop(cycle);
    ngx_social_users_password_done(cycle);
}
