/*
 * CPU-heavy work of a request (password hashing) runs in an nginx thread
 * pool, never on the event loop.  The request is held (count) and pinned
 * (blocked: even a client that goes away cannot free it while the thread
 * uses its memory); the done handler resumes it on the loop.
 *
 * A worker in a graceful shutdown exits as soon as it has only cancelable
 * timers left, whatever requests are still open, and a request waiting
 * for a thread has no timer: the task holds the shutdown with one of its
 * own until it is done.
 */

#include "ngx_social_core_module.h"


/* a task still out after this is stuck: the hold says so and lets go */
#define NGX_SOCIAL_THREAD_HOLD  600000


typedef struct {
    ngx_event_t                 hold;
    ngx_http_request_t         *r;
    ngx_social_work_pt          work;
    ngx_social_done_pt          done;
    void                       *data;
} ngx_social_thread_ctx_t;


static void ngx_social_thread_work(void *data, ngx_log_t *log);
static void ngx_social_thread_done(ngx_event_t *ev);
static void ngx_social_thread_stuck(ngx_event_t *ev);


ngx_int_t
ngx_social_thread_run(ngx_http_request_t *r, ngx_thread_pool_t *tp,
    ngx_social_work_pt work, ngx_social_done_pt done, void *data)
{
    ngx_thread_task_t        *task;
    ngx_social_thread_ctx_t  *ctx;

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_social_thread_ctx_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = task->ctx;
    ctx->r = r;
    ctx->work = work;
    ctx->done = done;
    ctx->data = data;

    task->handler = ngx_social_thread_work;
    task->event.handler = ngx_social_thread_done;
    task->event.data = ctx;

    if (ngx_thread_task_post(tp, task) != NGX_OK) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    /* the task's memory is zeroed: the hold needs no other field set */
    ctx->hold.handler = ngx_social_thread_stuck;
    ctx->hold.data = r->connection;
    ctx->hold.log = r->connection->log;
    ngx_add_timer(&ctx->hold, NGX_SOCIAL_THREAD_HOLD);

    r->main->count++;
    r->main->blocked++;

    return NGX_DONE;
}


static void
ngx_social_thread_work(void *data, ngx_log_t *log)
{
    ngx_social_thread_ctx_t  *ctx = data;

    ctx->work(ctx->data);
}


static void
ngx_social_thread_done(ngx_event_t *ev)
{
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_social_thread_ctx_t  *ctx;

    ctx = ev->data;
    r = ctx->r;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    if (ctx->hold.timer_set) {
        ngx_del_timer(&ctx->hold);
    }

    r->main->blocked--;

    if (c->error) {
        /* the client went away meanwhile: finish what was deferred */
        ngx_http_finalize_request(r, NGX_ERROR);

    } else {
        ctx->done(r, ctx->data);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_social_thread_stuck(ngx_event_t *ev)
{
    ngx_log_error(NGX_LOG_ALERT, ev->log, 0,
                  "social: a thread task is still out after %M ms; a "
                  "graceful shutdown no longer waits for it",
                  (ngx_msec_t) NGX_SOCIAL_THREAD_HOLD);
}
