/*
 * ngx_social_users: registration, the OAuth2 token endpoint, profiles
 * and follows.
 *
 * The module is loaded after ngx_social_core and declares its routes to the
 * core router; its handlers arrive with the work on this service.
 */

#include <ngx_social_core.h>


static ngx_http_module_t  ngx_social_users_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_users_module = {
    NGX_MODULE_V1,
    &ngx_social_users_module_ctx,          /* module context */
    NULL,                                  /* module directives */
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
