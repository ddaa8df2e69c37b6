/*
 * ngx_social_posts: posts, replies, likes, shares, the home feed and
 * notifications.  This file holds the directives, the route table and the
 * helpers every handler uses; each resource has its own file.
 */

#include "ngx_social_posts.h"


static void *ngx_social_posts_create_main_conf(ngx_conf_t *cf);
static char *ngx_social_posts_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_social_posts_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_social_posts_init_process(ngx_cycle_t *cycle);
static void ngx_social_posts_exit_process(ngx_cycle_t *cycle);
static void ngx_social_posts_epoch_move(void);
static void ngx_social_posts_epoch_moved(redisReply *reply, void *data);
static void ngx_social_posts_epoch_retry(ngx_event_t *ev);


/* every cached post and feed at once: the next epoch names other keys */
static ngx_social_redis_script_t  ngx_social_posts_epoch_script = {
    ngx_string("return redis.call('INCR', 'social:epoch')"),
    { 0 }, 1
};

static ngx_uint_t        ngx_social_posts_losses;   /* cache updates lost */
static ngx_uint_t        ngx_social_posts_moving;   /* losses being fixed */
static ngx_event_t       ngx_social_posts_epoch_timer;
static ngx_connection_t  ngx_social_posts_epoch_dummy;


ngx_str_t  ngx_social_posts_none = ngx_null_string;


static ngx_social_route_t  ngx_social_posts_routes[] = {
    { NGX_HTTP_POST, ngx_string("/v1/posts"), ngx_social_posts_create,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/v1/posts/{id}"), ngx_social_posts_get,
      NGX_SOCIAL_ROUTE_AUTH_OPTIONAL },
    { NGX_HTTP_DELETE, ngx_string("/v1/posts/{id}"), ngx_social_posts_delete,
      NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_POST, ngx_string("/v1/posts/{id}/like"),
      ngx_social_posts_like, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_DELETE, ngx_string("/v1/posts/{id}/like"),
      ngx_social_posts_unlike, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_GET, ngx_string("/v1/posts/{id}/likes"),
      ngx_social_posts_likers, 0 },
    { NGX_HTTP_POST, ngx_string("/v1/posts/{id}/share"),
      ngx_social_posts_share, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_DELETE, ngx_string("/v1/posts/{id}/share"),
      ngx_social_posts_unshare, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_GET, ngx_string("/v1/posts/{id}/replies"),
      ngx_social_posts_replies, NGX_SOCIAL_ROUTE_AUTH_OPTIONAL },
    { NGX_HTTP_GET, ngx_string("/v1/users/{id}/posts"),
      ngx_social_posts_of_user, NGX_SOCIAL_ROUTE_AUTH_OPTIONAL },
    { NGX_HTTP_GET, ngx_string("/v1/feed"), ngx_social_posts_feed,
      NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_GET, ngx_string("/v1/notifications"),
      ngx_social_posts_notifications, NGX_SOCIAL_ROUTE_AUTH },
    { NGX_HTTP_POST, ngx_string("/v1/notifications/read"),
      ngx_social_posts_notifications_read,
      NGX_SOCIAL_ROUTE_AUTH|NGX_SOCIAL_ROUTE_JSON_BODY }
};


static ngx_conf_num_bounds_t  ngx_social_posts_feed_bounds = {
    ngx_conf_check_num_bounds, 20, 10000
};


static ngx_command_t  ngx_social_posts_commands[] = {

    /* authors with at most this many followers fan out before answering */
    { ngx_string("social_posts_sync_fanout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_posts_main_conf_t, sync_fanout),
      NULL },

    /* posts kept in a user's cached home feed */
    { ngx_string("social_feed_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_posts_main_conf_t, feed_size),
      &ngx_social_posts_feed_bounds },

    /* bytes of posts' lasting parts each worker keeps (0: none) */
    { ngx_string("social_posts_local_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_posts_main_conf_t, local_cache),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_social_posts_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_posts_postconfiguration,    /* postconfiguration */

    ngx_social_posts_create_main_conf,     /* create main configuration */
    ngx_social_posts_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_posts_module = {
    NGX_MODULE_V1,
    &ngx_social_posts_module_ctx,          /* module context */
    ngx_social_posts_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_social_posts_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_social_posts_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_social_posts_create_main_conf(ngx_conf_t *cf)
{
    ngx_social_posts_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_posts_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    pmcf->sync_fanout = NGX_CONF_UNSET_UINT;
    pmcf->feed_size = NGX_CONF_UNSET_UINT;
    pmcf->local_cache = NGX_CONF_UNSET_SIZE;

    return pmcf;
}


static char *
ngx_social_posts_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_social_posts_main_conf_t  *pmcf = conf;

    ngx_conf_init_uint_value(pmcf->sync_fanout, 1000);
    ngx_conf_init_uint_value(pmcf->feed_size, 500);
    ngx_conf_init_size_value(pmcf->local_cache, 16 * 1024 * 1024);

    pmcf->sync_fanout_arg.data = pmcf->sync_fanout_buf;
    pmcf->sync_fanout_arg.len = ngx_sprintf(pmcf->sync_fanout_buf, "%ui",
                                            pmcf->sync_fanout)
                                - pmcf->sync_fanout_buf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_social_posts_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_posts_epoch_script)
           != NGX_OK
        || ngx_social_posts_view_init(cf) != NGX_OK
        || ngx_social_posts_fanout_init(cf) != NGX_OK
        || ngx_social_posts_create_init(cf) != NGX_OK
        || ngx_social_posts_react_init(cf) != NGX_OK
        || ngx_social_posts_read_init(cf) != NGX_OK
        || ngx_social_posts_feed_init(cf) != NGX_OK
        || ngx_social_posts_notify_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_routes_add(cf, ngx_social_posts_routes,
                                 sizeof(ngx_social_posts_routes)
                                 / sizeof(ngx_social_route_t));
}


static ngx_int_t
ngx_social_posts_init_process(ngx_cycle_t *cycle)
{
    ngx_social_posts_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_social_posts_module);
    if (pmcf != NULL) {
        ngx_social_posts_local_init(pmcf->local_cache);
    }

    ngx_social_posts_epoch_dummy.fd = (ngx_socket_t) -1;
    ngx_social_posts_epoch_timer.handler = ngx_social_posts_epoch_retry;
    ngx_social_posts_epoch_timer.data = &ngx_social_posts_epoch_dummy;
    ngx_social_posts_epoch_timer.log = cycle->log;
    ngx_social_posts_epoch_timer.cancelable = 1;

    return NGX_OK;
}


static void
ngx_social_posts_exit_process(ngx_cycle_t *cycle)
{
    ngx_social_posts_fanout_exit();
    ngx_social_posts_local_exit();
}


/*
 * A cache update could not be applied (Redis did not answer, or a
 * fan-out fell behind): cached posts and feeds may lack an acknowledged
 * write.  As soon as Redis answers, the cache epoch moves and every
 * cached post and feed is read afresh from PostgreSQL.
 */

void
ngx_social_posts_cache_lost(void)
{
    if (!ngx_social_redis_configured()) {
        return;
    }

    if (ngx_social_posts_losses++ == ngx_social_posts_moving) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: cache updates were lost; every cached post "
                      "and feed will be dropped once Redis answers");
    }

    if (!ngx_social_posts_epoch_timer.timer_set) {
        ngx_social_posts_epoch_move();
    }
}


static void
ngx_social_posts_epoch_move(void)
{
    ngx_social_posts_moving = ngx_social_posts_losses;

    if (ngx_social_redis_eval(NULL, &ngx_social_posts_epoch_script, 0, NULL,
                              ngx_social_posts_epoch_moved, NULL)
        != NGX_OK)
    {
        ngx_add_timer(&ngx_social_posts_epoch_timer, 1000);
    }
}


static void
ngx_social_posts_epoch_moved(redisReply *reply, void *data)
{
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        if (!ngx_social_posts_epoch_timer.timer_set && !ngx_exiting) {
            ngx_add_timer(&ngx_social_posts_epoch_timer, 1000);
        }

        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "social: cache epoch %L: cached posts and feeds dropped",
                  (int64_t) reply->integer);

    if (ngx_social_posts_losses != ngx_social_posts_moving) {
        /* lost while the move was on its way: once more */
        ngx_social_posts_epoch_move();
    }
}


static void
ngx_social_posts_epoch_retry(ngx_event_t *ev)
{
    if (!ngx_exiting) {
        ngx_social_posts_epoch_move();
    }
}


/* the {id} of a path: NGX_DECLINED when it is no id (then 404) */

ngx_int_t
ngx_social_posts_id_param(ngx_str_t *param, int64_t *id)
{
    *id = ngx_social_parse_id(param);

    return (*id == NGX_ERROR) ? NGX_DECLINED : NGX_OK;
}


/* an id as a statement parameter, from r->pool */

ngx_int_t
ngx_social_posts_id_str(ngx_http_request_t *r, int64_t id, ngx_str_t *s)
{
    s->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    s->len = ngx_social_posts_id_cpy(s->data, id) - s->data;

    return NGX_OK;
}


/*
 * An id (not negative) in decimal at p; cheaper than a format, as every
 * post of every page is named so several times
 */

u_char *
ngx_social_posts_id_cpy(u_char *p, int64_t id)
{
    u_char    buf[NGX_INT64_LEN], *d;
    uint64_t  v;

    v = (uint64_t) id;
    d = buf + NGX_INT64_LEN;

    do {
        *--d = (u_char) ('0' + v % 10);
        v /= 10;
    } while (v);

    return ngx_cpymem(p, d, buf + NGX_INT64_LEN - d);
}


ngx_int_t
ngx_social_posts_not_found(ngx_http_request_t *r)
{
    return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                 "no such post", NULL);
}


/*
 * The answer to a write, sent once the cache updates that must precede
 * it are done (read-after-write: a read that starts after the answer sees
 * the write).  Each update is sent with ngx_social_posts_answer_synced()
 * as its handler and counted with ngx_social_posts_answer_hold().
 */

ngx_social_posts_answer_t *
ngx_social_posts_answer_create(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_social_posts_answer_t  *a;

    a = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_answer_t));
    if (a == NULL) {
        return NULL;
    }

    a->request = r;
    a->status = status;

    return a;
}


/* an update was sent (rc of the send): the answer waits for it */

void
ngx_social_posts_answer_hold(ngx_social_posts_answer_t *a, ngx_int_t rc)
{
    if (rc == NGX_OK) {
        a->pending++;
        a->request->main->count++;
        return;
    }

    ngx_social_posts_cache_lost();
}


void
ngx_social_posts_answer_synced(redisReply *reply, void *data)
{
    ngx_social_posts_answer_t  *a = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, a->request->connection->log, 0,
                      "social: a cached copy was not updated: %s",
                      reply ? reply->str : "Redis did not answer");
        ngx_social_posts_cache_lost();
    }

    a->pending--;

    ngx_http_finalize_request(a->request,
                              a->pending ? NGX_DONE
                                         : ngx_social_posts_answer_send(a));
}


/* what a route handler returns: the answer, or NGX_DONE while held */

ngx_int_t
ngx_social_posts_answer_send(ngx_social_posts_answer_t *a)
{
    if (a->pending) {
        return NGX_DONE;
    }

    if (a->then) {
        return a->then(a->request, a->data);
    }

    if (a->status == NGX_HTTP_NO_CONTENT) {
        return ngx_social_send_no_content(a->request);
    }

    return ngx_social_send_json_text(a->request, a->status, &a->body);
}


/*
 * After a write of post by author: the followers (column col, a list,
 * NULL past the synchronous limit or without followers) and their number
 * (col + 1), copied from row.
 */

ngx_int_t
ngx_social_posts_after(ngx_http_request_t *r, PGresult *res, int row,
    int col, ngx_social_posts_after_t *after)
{
    ngx_str_t  n;

    if (ngx_social_posts_copy(r->pool, res, row, col, 1, &after->followers)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (ngx_social_posts_copy(r->pool, res, row, col + 1, 1, &n)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    after->nfollowers = n.data ? (ngx_uint_t) ngx_atoi(n.data, n.len) : 0;

    return NGX_OK;
}


/*
 * The post goes into (remove: out of) the cached feeds: the author's and,
 * up to the synchronous limit, the followers' before the answer a; a
 * larger account's followers after it.  Then the notifications.
 */

void
ngx_social_posts_after_run(ngx_http_request_t *r,
    ngx_social_posts_after_t *after, int64_t post, int64_t author,
    ngx_uint_t remove, ngx_social_posts_answer_t *a)
{
    ngx_uint_t                     later;
    ngx_social_posts_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_social_posts_module);

    later = (after->nfollowers > pmcf->sync_fanout);

    ngx_social_posts_answer_hold(a,
        ngx_social_posts_fanout(r, post, author,
                                later ? NULL : &after->followers, remove,
                                ngx_social_posts_answer_synced, a));

    if (later) {
        ngx_social_posts_fanout_later(post, author, remove);
    }

    if (after->events.len) {
        ngx_social_posts_notify(r, &after->events);
    }
}


/* the synchronous fan-out limit as a statement parameter */

ngx_str_t
ngx_social_posts_sync_fanout(void)
{
    ngx_social_posts_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_social_posts_module);

    return pmcf->sync_fanout_arg;
}


/* the cached views of the users of a list "1,2,3" are invalidated */

ngx_int_t
ngx_social_posts_forget_users(ngx_http_request_t *r, ngx_str_t *list,
    ngx_social_redis_handler_pt handler, void *data)
{
    ngx_str_t   *users;
    ngx_uint_t   n;

    users = ngx_social_posts_split(r->pool, list, 0, &n);
    if (users == NULL) {
        return NGX_ERROR;
    }

    return ngx_social_cache_forget(r, users, n, NULL, 0, handler, data);
}


/*
 * The items of a list "1,2,3" (or of none: list NULL or empty) after
 * skip empty slots; *n counts both.
 */

ngx_str_t *
ngx_social_posts_split(ngx_pool_t *pool, ngx_str_t *list, ngx_uint_t skip,
    ngx_uint_t *n)
{
    u_char      *p, *last;
    ngx_str_t   *items;
    ngx_uint_t   i;

    i = skip;
    p = (list != NULL) ? list->data : NULL;
    last = (list != NULL) ? list->data + list->len : NULL;

    if (p != last) {
        i++;

        while (p < last) {
            i += (*p++ == ',');
        }

        p = list->data;
    }

    items = ngx_pcalloc(pool, (i + 1) * sizeof(ngx_str_t));
    if (items == NULL) {
        return NULL;
    }

    *n = skip;

    while (p < last) {
        items[*n].data = p;

        while (p < last && *p != ',') {
            p++;
        }

        items[*n].len = p - items[*n].data;
        (*n)++;
        p++;
    }

    return items;
}
