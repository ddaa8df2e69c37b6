/*
 * ngx_social_chat: conversations, messages, read markers and the user's
 * live stream over WebSocket or Server-Sent Events.  This file holds the
 * directives, the route table, the log-phase token mask and the process
 * hooks; each resource and protocol has its own file.
 */

#include "ngx_social_chat.h"


static void *ngx_social_chat_create_main_conf(ngx_conf_t *cf);
static char *ngx_social_chat_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_social_chat_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_social_chat_mask_token(ngx_http_request_t *r);
static ngx_int_t ngx_social_chat_init_process(ngx_cycle_t *cycle);
static void ngx_social_chat_exit_process(ngx_cycle_t *cycle);


static ngx_social_route_t  ngx_social_chat_routes[] = {
    { NGX_HTTP_POST, ngx_string("/v1/conversations"), ngx_social_chat_create,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/v1/conversations"), ngx_social_chat_list,
      NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_GET, ngx_string("/v1/conversations/{id}"),
      ngx_social_chat_get, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_POST, ngx_string("/v1/conversations/{id}/members"),
      ngx_social_chat_add_members,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_DELETE, ngx_string("/v1/conversations/{id}/members/{user}"),
      ngx_social_chat_remove_member, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_POST, ngx_string("/v1/conversations/{id}/messages"),
      ngx_social_chat_send,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/v1/conversations/{id}/messages"),
      ngx_social_chat_history, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_POST, ngx_string("/v1/conversations/{id}/read"),
      ngx_social_chat_read,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/v1/stream"), ngx_social_chat_stream,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_TOKEN_ARG }
};


static ngx_command_t  ngx_social_chat_commands[] = {

    /* a WebSocket ping (or an SSE heartbeat) after this much quiet */
    { ngx_string("social_stream_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_chat_main_conf_t, ping_interval),
      NULL },

    /* the largest WebSocket message a client may send (then 1009) */
    { ngx_string("social_stream_max_message"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_chat_main_conf_t, max_message),
      NULL },

    /* unsent bytes a stream may hold before it is disconnected */
    { ngx_string("social_stream_max_unsent"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_chat_main_conf_t, max_unsent),
      NULL },

    /* at most one typing event per user and conversation this often */
    { ngx_string("social_stream_typing_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_chat_main_conf_t, typing_interval),
      NULL },

    /* how long a closing WebSocket waits for the client's side */
    { ngx_string("social_stream_close_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_chat_main_conf_t, close_timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_social_chat_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_chat_postconfiguration,     /* postconfiguration */

    ngx_social_chat_create_main_conf,      /* create main configuration */
    ngx_social_chat_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_chat_module = {
    NGX_MODULE_V1,
    &ngx_social_chat_module_ctx,           /* module context */
    ngx_social_chat_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_social_chat_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_social_chat_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_social_chat_create_main_conf(ngx_conf_t *cf)
{
    ngx_social_chat_main_conf_t  *ccf;

    ccf = ngx_pcalloc(cf->pool, sizeof(ngx_social_chat_main_conf_t));
    if (ccf == NULL) {
        return NULL;
    }

    ccf->ping_interval = NGX_CONF_UNSET_MSEC;
    ccf->max_message = NGX_CONF_UNSET_SIZE;
    ccf->max_unsent = NGX_CONF_UNSET_SIZE;
    ccf->typing_interval = NGX_CONF_UNSET_MSEC;
    ccf->close_timeout = NGX_CONF_UNSET_MSEC;

    return ccf;
}


static char *
ngx_social_chat_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_social_chat_main_conf_t  *ccf = conf;

    ngx_conf_init_msec_value(ccf->ping_interval, 30000);
    ngx_conf_init_size_value(ccf->max_message, 64 * 1024);
    ngx_conf_init_size_value(ccf->max_unsent, 1024 * 1024);
    ngx_conf_init_msec_value(ccf->typing_interval, 3000);
    ngx_conf_init_msec_value(ccf->close_timeout, 5000);

    if (ccf->ping_interval == 0 || ccf->max_message == 0
        || ccf->max_unsent == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "social_stream_ping_interval, "
                           "social_stream_max_message and "
                           "social_stream_max_unsent must not be 0");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_social_chat_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h, *first;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_social_chat_conversations_init(cf) != NGX_OK
        || ngx_social_chat_messages_init(cf) != NGX_OK
        || ngx_social_chat_stream_init(cf) != NGX_OK
        || ngx_social_chat_typing_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * The log phase calls its handlers in the order they were added, so
     * the mask goes first: no access log sees the stream's token.
     */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    first = cmcf->phases[NGX_HTTP_LOG_PHASE].handlers.elts;
    ngx_memmove(first + 1, first, (h - first) * sizeof(ngx_http_handler_pt));
    *first = ngx_social_chat_mask_token;

    return ngx_social_routes_add(cf, ngx_social_chat_routes,
                                 sizeof(ngx_social_chat_routes)
                                 / sizeof(ngx_social_route_t));
}


/*
 * "?access_token=..." is overwritten in place in the request line, which
 * $request, $request_uri and $args all point into.
 */

static ngx_int_t
ngx_social_chat_mask_token(ngx_http_request_t *r)
{
    u_char  *p, *last;

    if (r->args.len == 0) {
        return NGX_OK;
    }

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        if ((size_t) (last - p) > sizeof("access_token=") - 1
            && ngx_strncmp(p, "access_token=", sizeof("access_token=") - 1)
               == 0
            && (p == r->args.data || p[-1] == '&'))
        {
            for (p += sizeof("access_token=") - 1;
                 p < last && *p != '&';
                 p++)
            {
                *p = '*';
            }

            continue;
        }

        p++;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_chat_init_process(ngx_cycle_t *cycle)
{
    return ngx_social_chat_stream_init_process(cycle);
}


static void
ngx_social_chat_exit_process(ngx_cycle_t *cycle)
{
    ngx_social_chat_stream_exit_process(cycle);
}
