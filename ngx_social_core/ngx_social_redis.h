/*
 * The nonblocking Redis adapter: hiredis's async API on nginx events.
 *
 * Per worker, one command connection pipelines every request's commands
 * and one subscriber connection carries pub/sub.  Commands take argv form
 * only (binary-safe); user data never becomes a format string.
 */

#ifndef _NGX_SOCIAL_REDIS_H_INCLUDED_
#define _NGX_SOCIAL_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/*
 * reply is valid only during the call.  NULL means the command failed
 * without an answer: timeout, connection lost, or Redis down (failing
 * fast); a Redis error is a reply of type REDIS_REPLY_ERROR.
 */
typedef void (*ngx_social_redis_handler_pt)(redisReply *reply, void *data);

typedef void (*ngx_social_redis_message_pt)(ngx_str_t *channel,
    ngx_str_t *message, void *data);

/* called after a reconnect re-established the subscription */
typedef void (*ngx_social_redis_resync_pt)(void *data);


typedef struct {
    ngx_uint_t                  argc;
    const char                **argv;
    const size_t               *argvlen;
} ngx_social_redis_argv_t;


/*
 * A script marked "write" keeps its caller waiting for its outcome for as
 * long as Redis answers anything on the connection: a write that timed
 * out has an unknown effect, and a slow Redis is no reason to believe it
 * lost.  Only a stalled connection (nothing read for the command timeout)
 * ends the wait, with a NULL reply.
 */
typedef struct {
    ngx_str_t                   source;    /* Lua */
    u_char                      sha1[41];  /* hex, set at registration */
    ngx_uint_t                  write;
} ngx_social_redis_script_t;


typedef struct ngx_social_redis_listener_s  ngx_social_redis_listener_t;


/* this worker's figures */
typedef struct {
    ngx_atomic_uint_t           commands;  /* sent; a transaction is one */
    ngx_atomic_uint_t           errors;    /* no reply, or an error reply */
    ngx_atomic_uint_t           timeouts;
    ngx_atomic_uint_t           reconnects;
    ngx_atomic_uint_t           messages;  /* pub/sub messages received */
    ngx_uint_t                  pending;
    ngx_uint_t                  channels;
    ngx_uint_t                  connected;
    ngx_uint_t                  subscriber; /* pub/sub connection ready */
} ngx_social_redis_stats_t;


/*
 * Sends one command.  With r, the callback is bound to the request: if r
 * is finalized first the reply is dropped, and after the callback the
 * request's posted requests are run.  With r NULL the command stands
 * alone (background work).  NGX_OK: the handler will be called exactly
 * once, never before this returns (when Redis is down, from a posted
 * event of the same event loop iteration); NGX_ERROR: it will not.
 * (P)SUBSCRIBE, (P)UNSUBSCRIBE and MONITOR are refused (NGX_ERROR): the
 * command connection is shared, use ngx_social_redis_subscribe().
 */
ngx_int_t ngx_social_redis_command(ngx_http_request_t *r,
    ngx_social_redis_argv_t *cmd, ngx_social_redis_handler_pt handler,
    void *data);

/* MULTI, the commands, EXEC pipelined; the handler gets EXEC's reply */
ngx_int_t ngx_social_redis_transaction(ngx_http_request_t *r,
    ngx_social_redis_argv_t *cmds, ngx_uint_t n,
    ngx_social_redis_handler_pt handler, void *data);

/*
 * The commands pipelined, not a transaction: the replies of all but the
 * last go to each() as they come, the last one's to handler as with
 * ngx_social_redis_command().  each() only takes note (it must not
 * finalize the request) and is not called once handler was, as it is
 * with NULL when the pipeline fails before its end.
 */
ngx_int_t ngx_social_redis_pipeline(ngx_http_request_t *r,
    ngx_social_redis_argv_t *cmds, ngx_uint_t n,
    ngx_social_redis_handler_pt each, ngx_social_redis_handler_pt handler,
    void *data);

/* scripts are registered at configuration time, run with EVALSHA and
 * fall back to EVAL once on NOSCRIPT; argv holds keys then arguments */
ngx_int_t ngx_social_redis_script_register(ngx_conf_t *cf,
    ngx_social_redis_script_t *script);
ngx_int_t ngx_social_redis_eval(ngx_http_request_t *r,
    ngx_social_redis_script_t *script, ngx_uint_t nkeys,
    ngx_social_redis_argv_t *args, ngx_social_redis_handler_pt handler,
    void *data);

/*
 * Local listeners of one channel (or pattern) share one Redis
 * subscription; the last unsubscribe releases it.  A listener lives until
 * ngx_social_redis_unsubscribe(), across reconnects; resync is called
 * (may be NULL) once the channel's subscription is first live, and again
 * whenever it is live again after the subscriber connection was down, as
 * messages may have been lost meanwhile (a listener added to a channel
 * that is live already is not called).
 * Callbacks run from the subscriber connection's events and may
 * unsubscribe any listener; they are not bound to a request, so one that
 * finalizes a request runs ngx_http_run_posted_requests() itself.  With
 * no social_redis_address listeners are kept but never called.  NULL: no
 * memory.  After exit_process every listener is freed and unsubscribing
 * does nothing.
 */
ngx_social_redis_listener_t *ngx_social_redis_subscribe(ngx_str_t *channel,
    ngx_uint_t pattern, ngx_social_redis_message_pt handler,
    ngx_social_redis_resync_pt resync, void *data);
void ngx_social_redis_unsubscribe(ngx_social_redis_listener_t *l);

/* a connection's memory for its replies (ngx_social_redis_arena.c) */
typedef struct ngx_social_redis_arena_s  ngx_social_redis_arena_t;

ngx_social_redis_arena_t *ngx_social_redis_arena_create(void);
void ngx_social_redis_arena_attach(ngx_social_redis_arena_t *arena,
    redisAsyncContext *ac);
void ngx_social_redis_arena_free(ngx_social_redis_arena_t *arena);

/* the worker's command connection is ready (readiness probes) */
ngx_uint_t ngx_social_redis_connected(void);
/* social_redis_address is set */
ngx_uint_t ngx_social_redis_configured(void);
void ngx_social_redis_get_stats(ngx_social_redis_stats_t *stats);


#endif /* _NGX_SOCIAL_REDIS_H_INCLUDED_ */
