/*
 * The nonblocking PostgreSQL adapter: a per-worker pool of libpq
 * connections driven by nginx events.
 *
 * Statements are declared at configuration time and prepared once per
 * connection; parameters always travel as parameters.
 */

#ifndef _NGX_SOCIAL_PG_H_INCLUDED_
#define _NGX_SOCIAL_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>


#define NGX_SOCIAL_PG_MAX_PARAMS     16


typedef struct {
    ngx_str_t                   name;      /* unique, "users_by_id" */
    ngx_str_t                   sql;
    ngx_uint_t                  readonly;  /* writes nothing: batched with
                                              others, sent again if lost */
    ngx_uint_t                  replica;   /* a stale read is acceptable:
                                              may run on the replica */
} ngx_social_pg_stmt_t;


typedef enum {
    NGX_SOCIAL_PG_OK = 0,          /* res holds the result */
    NGX_SOCIAL_PG_SQL_ERROR,       /* res holds the error, see sqlstate */
    NGX_SOCIAL_PG_UNAVAILABLE,     /* down, pool and queue full, or lost */
    NGX_SOCIAL_PG_TIMEOUT          /* the query or the queue wait expired */
} ngx_social_pg_status_e;


typedef struct {
    ngx_social_pg_status_e      status;
    PGresult                   *res;       /* valid during the callback */
    const char                 *sqlstate;  /* "23505" or "" */
} ngx_social_pg_result_t;


typedef void (*ngx_social_pg_handler_pt)(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


typedef struct ngx_social_pg_tx_s  ngx_social_pg_tx_t;


typedef struct {
    ngx_uint_t                  connections;
    ngx_uint_t                  busy;
    ngx_uint_t                  idle;
    ngx_uint_t                  queued;
    ngx_uint_t                  inflight;
    ngx_atomic_uint_t           queries;
    ngx_atomic_uint_t           errors;
    ngx_atomic_uint_t           timeouts;
    ngx_atomic_uint_t           rejected;
    ngx_atomic_uint_t           reconnects;
} ngx_social_pg_stats_t;


/* declares statements; call from a module's postconfiguration */
ngx_int_t ngx_social_pg_register(ngx_conf_t *cf, ngx_social_pg_stmt_t *stmts,
    ngx_uint_t n);

/*
 * Runs a statement for r.  params[i].data == NULL is SQL NULL.  With tx
 * the statement runs inside that transaction, else on its own.
 *
 * NGX_DONE: the request is held (r->main->count) and the handler will be
 * called exactly once, possibly before this returns; it ends with one
 * ngx_http_finalize_request(r, rc).  If r is finalized first the handler
 * is never called and the connection is drained or closed.  Anything
 * else is a status to finalize with.  A content handler returns the
 * result as it is.
 */
ngx_int_t ngx_social_pg_query(ngx_http_request_t *r, ngx_social_pg_tx_t *tx,
    ngx_social_pg_stmt_t *stmt, ngx_str_t *params, ngx_uint_t nparams,
    ngx_social_pg_handler_pt handler, void *data);

/*
 * A statement of no request (start-up loads, work after the answer): the
 * handler is called with r NULL, exactly once, possibly before this
 * returns.  NGX_ERROR: it will not be.
 */
ngx_int_t ngx_social_pg_run(ngx_social_pg_stmt_t *stmt, ngx_str_t *params,
    ngx_uint_t nparams, ngx_social_pg_handler_pt handler, void *data);

/*
 * A transaction of r: its first query pins a connection and begins;
 * ngx_social_pg_commit() commits and releases it.  A request finalized
 * without commit rolls back.
 */
ngx_social_pg_tx_t *ngx_social_pg_tx(ngx_http_request_t *r);
ngx_int_t ngx_social_pg_commit(ngx_social_pg_tx_t *tx,
    ngx_social_pg_handler_pt handler, void *data);

/* the contract's answer to a failed result: 503, 409 or 404 */
ngx_int_t ngx_social_pg_send_error(ngx_http_request_t *r,
    ngx_social_pg_result_t *result);

/* the JSON text in column col of row as the whole response */
ngx_int_t ngx_social_pg_send_json(ngx_http_request_t *r, ngx_uint_t status,
    PGresult *res, int row, int col);

ngx_uint_t ngx_social_pg_configured(void);
ngx_uint_t ngx_social_pg_connected(void);
void ngx_social_pg_get_stats(ngx_social_pg_stats_t *stats);


#endif /* _NGX_SOCIAL_PG_H_INCLUDED_ */
