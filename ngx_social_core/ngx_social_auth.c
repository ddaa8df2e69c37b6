/*
 * Authentication of API requests: the bearer token of the Authorization
 * header (or, where a route allows it, the access_token query argument) is
 * verified before the route's handler runs.  A route requires a user, or
 * takes one optionally; a token that is presented but invalid, expired or
 * revoked is 401 either way.
 */

#include "ngx_social_core_module.h"


static ngx_int_t ngx_social_auth_unauthorized(ngx_http_request_t *r,
    const char *error, const char *message);
static void ngx_social_auth_wait_timeout(ngx_event_t *ev);
static void ngx_social_auth_wait_cleanup(void *data);


/* requests waiting for the worker's revocation mirror, at start-up only */
#define NGX_SOCIAL_AUTH_WAIT  5000


static ngx_social_auth_revoked_pt  ngx_social_auth_revoked;
static ngx_queue_t                 ngx_social_auth_waiting;


void
ngx_social_auth_set_revocation(ngx_social_auth_revoked_pt revoked)
{
    ngx_social_auth_revoked = revoked;
    ngx_queue_init(&ngx_social_auth_waiting);
}


/* the mirror is loaded: the requests that waited for it go on */

void
ngx_social_auth_ready(void)
{
    ngx_queue_t         *q;
    ngx_connection_t    *c;
    ngx_social_ctx_t    *ctx;
    ngx_http_request_t  *r;

    while (!ngx_queue_empty(&ngx_social_auth_waiting)) {
        q = ngx_queue_head(&ngx_social_auth_waiting);
        ngx_queue_remove(q);
        ngx_queue_init(q);

        ctx = ngx_queue_data(q, ngx_social_ctx_t, waiting);
        r = ctx->request;
        c = r->connection;

        if (ctx->wait.timer_set) {
            ngx_del_timer(&ctx->wait);
        }

        ngx_http_finalize_request(r, ctx->resume(r, ctx));
        ngx_http_run_posted_requests(c);
    }
}


/* r waits for the mirror, held; ctx->resume goes on with it (or 503) */

ngx_int_t
ngx_social_auth_wait(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_http_cleanup_t  *cln;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_social_auth_wait_cleanup;
    cln->data = ctx;

    ctx->wait.handler = ngx_social_auth_wait_timeout;
    ctx->wait.data = r->connection;
    ctx->wait.log = r->connection->log;

    ngx_queue_insert_tail(&ngx_social_auth_waiting, &ctx->waiting);
    ngx_add_timer(&ctx->wait, NGX_SOCIAL_AUTH_WAIT);

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_social_auth_wait_timeout(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_social_ctx_t    *ctx;
    ngx_http_request_t  *r;

    ctx = (ngx_social_ctx_t *) ((u_char *) ev
                                - offsetof(ngx_social_ctx_t, wait));
    r = ctx->request;
    c = r->connection;

    ngx_queue_remove(&ctx->waiting);
    ngx_queue_init(&ctx->waiting);

    ngx_http_finalize_request(r, ngx_social_send_error(r,
                                  NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                  "token revocations are not loaded yet",
                                  NULL));
    ngx_http_run_posted_requests(c);
}


static void
ngx_social_auth_wait_cleanup(void *data)
{
    ngx_social_ctx_t  *ctx = data;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    if (ngx_queue_next(&ctx->waiting) != NULL
        && !ngx_queue_empty(&ctx->waiting))
    {
        ngx_queue_remove(&ctx->waiting);
        ngx_queue_init(&ctx->waiting);
    }
}


/*
 * The bearer token of r under the route or location flags.  NGX_OK: the
 * token is good (token->sub is the user), or there is none and none is
 * required (token->sub is 0).  NGX_DECLINED: 401, *error (RFC 6750, or
 * NULL when no token was given) and *message say why.  NGX_AGAIN: whether
 * the token was revoked is not known yet.
 */

ngx_int_t
ngx_social_auth_token(ngx_http_request_t *r, ngx_uint_t flags,
    ngx_social_token_t *token, const char **error, const char **message)
{
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    token->sub = 0;

    if (!(flags & (NGX_SOCIAL_ROUTE_AUTH | NGX_SOCIAL_ROUTE_AUTH_OPTIONAL))) {
        return NGX_OK;
    }

    h = r->headers_in.authorization;
    ngx_str_null(&value);

    if (h != NULL) {
        if (h->value.len <= sizeof("Bearer ") - 1
            || ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                               sizeof("Bearer ") - 1)
               != 0)
        {
            *error = "invalid_request";
            *message = "the Authorization header is not a bearer token";
            return NGX_DECLINED;
        }

        value.data = h->value.data + sizeof("Bearer ") - 1;
        value.len = h->value.len - (sizeof("Bearer ") - 1);

    } else if ((flags & NGX_SOCIAL_ROUTE_TOKEN_ARG)
               && ngx_http_arg(r, (u_char *) "access_token", 12, &value)
                  != NGX_OK)
    {
        ngx_str_null(&value);
    }

    if (value.len == 0) {
        if (flags & NGX_SOCIAL_ROUTE_AUTH) {
            *error = NULL;
            *message = "an access token is required";
            return NGX_DECLINED;
        }

        return NGX_OK;
    }

    if (ngx_social_jwt_verify(r, &value, token) != NGX_OK) {
        token->sub = 0;
        *error = "invalid_token";
        *message = "the access token is invalid or expired";
        return NGX_DECLINED;
    }

    switch (ngx_social_auth_revoked ? ngx_social_auth_revoked(token)
                                    : NGX_OK)
    {
    case NGX_OK:
        return NGX_OK;

    case NGX_AGAIN:
        token->sub = 0;
        return NGX_AGAIN;

    default:
        token->sub = 0;
        *error = "invalid_token";
        *message = "the access token was revoked";
        return NGX_DECLINED;
    }
}


/*
 * For the router.  NGX_OK: go on (ctx->user_id is set, or 0).
 * NGX_DECLINED: a 401 was sent; *rc is the result of sending it.
 * NGX_AGAIN: whether the token was revoked is not known yet.
 */

ngx_int_t
ngx_social_auth(ngx_http_request_t *r, ngx_social_ctx_t *ctx, ngx_int_t *rc)
{
    ngx_int_t    res;
    const char  *error, *message;

    res = ngx_social_auth_token(r, ctx->route->flags, &ctx->token, &error,
                                &message);

    if (res == NGX_DECLINED) {
        *rc = ngx_social_auth_unauthorized(r, error, message);
    }

    ctx->user_id = ctx->token.sub;

    return res;
}


/* WWW-Authenticate: Bearer (RFC 6750 section 3) on a 401 */

ngx_int_t
ngx_social_auth_challenge(ngx_http_request_t *r, const char *error)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");

    if (error == NULL) {
        ngx_str_set(&h->value, "Bearer");
        return NGX_OK;
    }

    h->value.data = ngx_pnalloc(r->pool, 64);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->value.len = ngx_sprintf(h->value.data, "Bearer error=\"%s\"", error)
                   - h->value.data;

    return NGX_OK;
}


static ngx_int_t
ngx_social_auth_unauthorized(ngx_http_request_t *r, const char *error,
    const char *message)
{
    if (ngx_social_auth_challenge(r, error) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_send_error(r, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                 message, NULL);
}
