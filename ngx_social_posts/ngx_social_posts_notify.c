/*
 * Notifications: GET /v1/notifications (newest first) and POST
 * /v1/notifications/read {"up_to_id"} (inclusive; read never becomes
 * unread).  Every notification is written in the statement of the write
 * that caused it and, once committed, published to its recipient's
 * streams as {"event": "notification.created", "data": Notification}
 * (ngx_social_events_publish(): channel "social:ev:<recipient>").
 */

#include "ngx_social_posts.h"


typedef struct {
    ngx_social_list_t           list;
    ngx_str_t                   params[4];
} ngx_social_posts_notify_ctx_t;


static void ngx_social_posts_notifications_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_posts_notifications_marked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


static ngx_social_pg_stmt_t  ngx_social_posts_notify_stmts[] = {

    /* $1 how many, $2 the user, $3 max_id, $4 since_id */
    { ngx_string("posts_notifications"),
      ngx_string("SELECT n.id::text, "
                 NGX_SOCIAL_SQL_NOTIFICATION("n", "a") "::text "
                 "FROM notifications n JOIN users a ON a.id = n.actor_id "
                 "WHERE n.user_id = $2 "
                 "AND ($3::bigint IS NULL OR n.id < $3) "
                 "AND ($4::bigint IS NULL OR n.id > $4) "
                 "ORDER BY n.id DESC LIMIT $1"),
      1, 0 },

    /* $1 the user, $2 up to this id */
    { ngx_string("posts_notifications_read"),
      ngx_string("UPDATE notifications SET read = true "
                 "WHERE user_id = $1 AND id <= $2 AND NOT read"),
      0, 0 }
};


ngx_int_t
ngx_social_posts_notify_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_posts_notify_stmts,
                                  sizeof(ngx_social_posts_notify_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_posts_notifications(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                         *fields;
    ngx_social_posts_notify_ctx_t  *nc;

    nc = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_notify_ctx_t));
    fields = ngx_social_json_owned(r, json_object());

    if (nc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_list_args(r, &nc->list, fields) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the list arguments are invalid",
                                     json_incref(fields));
    }

    if (ngx_social_posts_id_str(r, ctx->user_id, &nc->params[1]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nc->params[0] = nc->list.fetch;
    nc->params[2] = nc->list.max_id;
    nc->params[3] = nc->list.since_id;

    return ngx_social_pg_query(r, NULL, &ngx_social_posts_notify_stmts[0],
                               nc->params, 4,
                               ngx_social_posts_notifications_listed, nc);
}


static void
ngx_social_posts_notifications_listed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_notify_ctx_t  *nc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_list(r, &nc->list,
                                                      result->res, 0, 1));
}


ngx_int_t
ngx_social_posts_notifications_read(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx)
{
    json_t     *fields;
    ngx_str_t  *params;

    fields = ngx_social_json_owned(r, json_object());
    params = ngx_palloc(r->pool, 2 * sizeof(ngx_str_t));

    if (fields == NULL || params == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_field_string(ctx->body, "up_to_id", 1, 1, 19, 1,
                                &params[1], fields)
        == NGX_OK
        && ngx_social_parse_id(&params[1]) == NGX_ERROR)
    {
        json_object_set_new(fields, "up_to_id", json_string("is not an id"));
    }

    if (json_object_size(fields)) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "up_to_id is invalid",
                                     json_incref(fields));
    }

    if (ngx_social_posts_id_str(r, ctx->user_id, &params[0]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_pg_query(r, NULL, &ngx_social_posts_notify_stmts[1],
                               params, 2,
                               ngx_social_posts_notifications_marked, NULL);
}


static void
ngx_social_posts_notifications_marked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_no_content(r));
}


/*
 * Publishes committed notifications: events holds "user event" lines
 * (JSON has no raw newline), each to its user's streams.
 */

void
ngx_social_posts_notify(ngx_http_request_t *r, ngx_str_t *events)
{
    u_char     *p, *last, *sp, *nl;
    int64_t     user;
    ngx_str_t   event;

    p = events->data;
    last = p + events->len;

    while (p < last) {
        nl = ngx_strlchr(p, last, '\n');
        if (nl == NULL) {
            nl = last;
        }

        sp = ngx_strlchr(p, nl, ' ');

        if (sp != NULL) {
            user = ngx_atoof(p, sp - p);
            event.data = sp + 1;
            event.len = nl - sp - 1;

            if (user > 0) {
                (void) ngx_social_events_publish(r, &user, 1, &event, 0);
            }
        }

        p = nl + 1;
    }
}
