/*
 * ngx_social_pg: libpq in nonblocking pipeline mode on nginx's event loop.
 *
 * Per worker, a pool of connections (and optionally one to a read-only
 * replica).  Each connection's socket is wrapped in an nginx connection,
 * registered level-triggered, so PQconsumeInput()/PQflush() are driven by
 * its read and write events and nothing is lost between wakeups.  Every
 * statement is prepared on connect with one multi-statement PREPARE batch.
 *
 * Connections run in pipeline mode: many queries of many requests are in
 * flight on one connection, read-only ones sent in one write per turn of
 * the event loop and closed by one Sync.  Statements between two Syncs run
 * in one implicit transaction, so a write always ends its segment: it is
 * acknowledged only when its own Sync arrives (committed), and an error of
 * another request's statement can only abort (never roll back) it.  An
 * aborted statement was not executed and is sent again.  Requests that find
 * every connection at its pipeline depth wait in a bounded FIFO.
 */

#include "ngx_social_core_module.h"


#define NGX_SOCIAL_PG_BACKOFF_MIN   100
#define NGX_SOCIAL_PG_BACKOFF_MAX   5000


typedef enum {
    NGX_SOCIAL_PG_DOWN = 0,        /* waiting for the reconnect timer */
    NGX_SOCIAL_PG_CONNECTING,
    NGX_SOCIAL_PG_PREPARING,
    NGX_SOCIAL_PG_READY            /* in pipeline mode */
} ngx_social_pg_state_e;


typedef enum {
    NGX_SOCIAL_PG_STMT = 0,
    NGX_SOCIAL_PG_BEGIN,
    NGX_SOCIAL_PG_COMMIT,
    NGX_SOCIAL_PG_ROLLBACK
} ngx_social_pg_kind_e;


typedef struct ngx_social_pg_pool_s   ngx_social_pg_pool_t;
typedef struct ngx_social_pg_conn_s   ngx_social_pg_conn_t;
typedef struct ngx_social_pg_query_s  ngx_social_pg_query_t;


struct ngx_social_pg_query_s {
    ngx_queue_t                 queue;     /* waiting, in flight, or free */
    ngx_social_pg_pool_t       *pool;
    ngx_social_pg_conn_t       *conn;      /* while in flight */
    ngx_http_request_t         *r;         /* NULL once r is gone */
    ngx_http_cleanup_t         *cleanup;
    ngx_social_pg_tx_t         *tx;        /* valid only while r is */
    ngx_social_pg_stmt_t       *stmt;
    ngx_social_pg_kind_e        kind;
    const char                **values;    /* from r->pool */
    int                         nparams;
    ngx_social_pg_handler_pt    handler;
    void                       *data;
    ngx_event_t                 timer;     /* queue wait, then query */
    PGresult                   *res;       /* held until its Sync */

    unsigned                    waiting:1; /* in pool->waiting */
    unsigned                    sync:1;    /* a Sync follows it */
    unsigned                    done:1;    /* its results have ended */
    unsigned                    aborted:1; /* not executed */
    unsigned                    retried:1;
    unsigned                    background:1; /* of no request */

    ngx_pool_t                 *temp;      /* its values, if background */
};


struct ngx_social_pg_conn_s {
    ngx_social_pg_pool_t       *pool;
    PGconn                     *pg;
    ngx_connection_t           *c;
    ngx_social_pg_state_e       state;
    ngx_queue_t                 inflight;  /* in the order sent */
    ngx_queue_t                *current;   /* first whose results continue */
    ngx_uint_t                  ninflight;
    ngx_uint_t                  open;      /* sent since the last Sync */
    ngx_event_t                 sync;      /* posted: Sync the open ones */
    PGresult                   *res;       /* of the PREPARE batch */
    ngx_social_pg_tx_t         *tx;        /* pinned by a transaction */
    ngx_uint_t                  rollback;  /* an abandoned one rolls back */
    ngx_uint_t                  flushing;
    ngx_event_t                 timer;     /* connect, or reconnect */
    ngx_msec_t                  backoff;
};


struct ngx_social_pg_pool_s {
    ngx_str_t                   name;      /* "primary", "replica" */
    ngx_str_t                   conninfo;
    ngx_str_t                   hostaddr;  /* resolved at config time */
    ngx_social_pg_conn_t       *conns;
    ngx_uint_t                  nconns;
    ngx_uint_t                  up;        /* READY connections */
    ngx_uint_t                  failed;    /* last connect failed */
    ngx_queue_t                 waiting;
    ngx_uint_t                  nwaiting;
    ngx_queue_t                 free;
};


struct ngx_social_pg_tx_s {
    ngx_http_request_t         *r;
    ngx_social_pg_conn_t       *conn;      /* pinned after the first query */
    ngx_http_cleanup_t         *cleanup;
    ngx_uint_t                  lost;      /* its connection failed */
};


typedef struct {
    ngx_str_t                   conninfo;
    ngx_str_t                   replica;
    ngx_uint_t                  pool_size;
    ngx_uint_t                  depth;
    ngx_uint_t                  queue_size;
    ngx_msec_t                  queue_timeout;
    ngx_msec_t                  query_timeout;
    ngx_msec_t                  connect_timeout;
    ngx_array_t                 stmts;     /* ngx_social_pg_stmt_t * */
    ngx_str_t                   prepare;   /* the PREPARE batch */
    ngx_str_t                   options;   /* server-side backstops */
    ngx_social_pg_pool_t        pools[2];
    ngx_uint_t                  npools;
} ngx_social_pg_main_conf_t;


#define ngx_social_pg_exclusive(conn)  ((conn)->tx || (conn)->rollback)

/* someone still waits for the query's outcome */
#define ngx_social_pg_wanted(q)         ((q)->r || (q)->background)


static ngx_social_pg_query_t *ngx_social_pg_alloc(ngx_social_pg_pool_t *pool);
static ngx_social_pg_query_t *ngx_social_pg_prepare_query(ngx_uint_t primary,
    ngx_social_pg_stmt_t *stmt, ngx_str_t *params, ngx_uint_t nparams,
    ngx_pool_t *pool, ngx_log_t *log);
static void ngx_social_pg_submit(ngx_social_pg_query_t *q);
static void ngx_social_pg_connect(ngx_social_pg_conn_t *conn);
static ngx_int_t ngx_social_pg_wrap(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_connect_poll(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_prepare(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_prepared(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_step_failed(ngx_social_pg_conn_t *conn,
    const char *step);
static void ngx_social_pg_notice(void *arg, const char *message);
static ngx_str_t *ngx_social_pg_message(const char *message, ngx_str_t *s);
static void ngx_social_pg_read_handler(ngx_event_t *ev);
static void ngx_social_pg_write_handler(ngx_event_t *ev);
static void ngx_social_pg_timer_handler(ngx_event_t *ev);
static void ngx_social_pg_sync_handler(ngx_event_t *ev);
static ngx_int_t ngx_social_pg_flush(ngx_social_pg_conn_t *conn);
static ngx_int_t ngx_social_pg_want_write(ngx_social_pg_conn_t *conn,
    ngx_uint_t on);
static ngx_int_t ngx_social_pg_sync(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_collect(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_segment_done(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_complete(ngx_social_pg_conn_t *conn,
    ngx_social_pg_query_t *q);
static void ngx_social_pg_fail(ngx_social_pg_conn_t *conn,
    ngx_social_pg_query_t *culprit, ngx_uint_t backoff);
static void ngx_social_pg_release(ngx_social_pg_conn_t *conn);
static void ngx_social_pg_close(ngx_social_pg_conn_t *conn);
static ngx_int_t ngx_social_pg_send(ngx_social_pg_conn_t *conn,
    ngx_social_pg_query_t *q);
static ngx_int_t ngx_social_pg_start(ngx_social_pg_conn_t *conn,
    ngx_social_pg_query_t *q);
static ngx_int_t ngx_social_pg_internal(ngx_social_pg_conn_t *conn,
    ngx_social_pg_kind_e kind);
static void ngx_social_pg_dispatch(ngx_social_pg_pool_t *pool);
static ngx_social_pg_conn_t *ngx_social_pg_free_conn(
    ngx_social_pg_pool_t *pool, ngx_social_pg_query_t *q);
static void ngx_social_pg_wait(ngx_social_pg_pool_t *pool,
    ngx_social_pg_query_t *q, ngx_uint_t front);
static void ngx_social_pg_finish(ngx_social_pg_query_t *q,
    ngx_social_pg_status_e status, PGresult *res);
static void ngx_social_pg_deliver(ngx_social_pg_query_t *q,
    ngx_social_pg_status_e status, PGresult *res);
static void ngx_social_pg_free_query(ngx_social_pg_query_t *q);
static void ngx_social_pg_fail_waiting(ngx_social_pg_pool_t *pool);
static void ngx_social_pg_query_timeout(ngx_event_t *ev);
static void ngx_social_pg_query_cleanup(void *data);
static void ngx_social_pg_tx_cleanup(void *data);
static ngx_social_pg_pool_t *ngx_social_pg_pick(ngx_social_pg_stmt_t *stmt);
static ngx_int_t ngx_social_pg_pool_conf(ngx_conf_t *cf,
    ngx_social_pg_pool_t *pool, ngx_str_t *conninfo);
static ngx_int_t ngx_social_pg_build_prepare(ngx_cycle_t *cycle,
    ngx_social_pg_main_conf_t *pmcf);
static void *ngx_social_pg_create_main_conf(ngx_conf_t *cf);
static char *ngx_social_pg_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_social_pg_init_process(ngx_cycle_t *cycle);
static void ngx_social_pg_exit_process(ngx_cycle_t *cycle);


static ngx_social_pg_stats_t        ngx_social_pg_stats;
static ngx_social_pg_main_conf_t   *ngx_social_pg_conf;

static const char  *ngx_social_pg_internal_sql[] = {
    NULL, "BEGIN", "COMMIT", "ROLLBACK"
};

static ngx_social_pg_stmt_t  ngx_social_pg_commit_stmt = {
    ngx_string("commit"), ngx_string("COMMIT"), 0, 0
};


static ngx_command_t  ngx_social_pg_commands[] = {

    /* libpq connection string of the primary */
    { ngx_string("social_pg_conninfo"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, conninfo),
      NULL },

    /* a read-only replica for statements declared read-only */
    { ngx_string("social_pg_replica_conninfo"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, replica),
      NULL },

    /* connections per worker (and per replica) */
    { ngx_string("social_pg_pool_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, pool_size),
      NULL },

    /* queries in flight on one connection */
    { ngx_string("social_pg_pipeline_depth"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, depth),
      NULL },

    /* queries that may wait for a connection; past it: 503 at once */
    { ngx_string("social_pg_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, queue_size),
      NULL },

    /* how long a query may wait for a connection */
    { ngx_string("social_pg_queue_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, queue_timeout),
      NULL },

    /* how long a query may run */
    { ngx_string("social_pg_query_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, query_timeout),
      NULL },

    /* how long connecting and preparing may take */
    { ngx_string("social_pg_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_pg_main_conf_t, connect_timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_social_pg_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_social_pg_create_main_conf,        /* create main configuration */
    ngx_social_pg_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_pg_module = {
    NGX_MODULE_V1,
    &ngx_social_pg_module_ctx,             /* module context */
    ngx_social_pg_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_social_pg_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_social_pg_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* ------------------------------------------------------------ public */


ngx_int_t
ngx_social_pg_register(ngx_conf_t *cf, ngx_social_pg_stmt_t *stmts,
    ngx_uint_t n)
{
    ngx_uint_t                  i, j;
    ngx_social_pg_stmt_t      **s, **all;
    ngx_social_pg_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_social_pg_module);

    for (i = 0; i < n; i++) {
        all = pmcf->stmts.elts;

        for (j = 0; j < pmcf->stmts.nelts; j++) {
            if (all[j]->name.len == stmts[i].name.len
                && ngx_strncmp(all[j]->name.data, stmts[i].name.data,
                               stmts[i].name.len)
                   == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "social: statement \"%V\" declared twice",
                                   &stmts[i].name);
                return NGX_ERROR;
            }
        }

        s = ngx_array_push(&pmcf->stmts);
        if (s == NULL) {
            return NGX_ERROR;
        }

        *s = &stmts[i];
    }

    return NGX_OK;
}


ngx_int_t
ngx_social_pg_query(ngx_http_request_t *r, ngx_social_pg_tx_t *tx,
    ngx_social_pg_stmt_t *stmt, ngx_str_t *params, ngx_uint_t nparams,
    ngx_social_pg_handler_pt handler, void *data)
{
    ngx_social_pg_query_t  *q;

    /* a transaction runs on the primary */
    q = ngx_social_pg_prepare_query(tx != NULL, stmt, params, nparams,
                                    r->pool, r->connection->log);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->cleanup = ngx_http_cleanup_add(r, 0);
    if (q->cleanup == NULL) {
        ngx_social_pg_free_query(q);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->cleanup->handler = ngx_social_pg_query_cleanup;
    q->cleanup->data = q;
    q->r = r;
    q->tx = tx;
    q->handler = handler;
    q->data = data;

    /* held until the handler runs: the handler finalizes once */
    r->main->count++;

    ngx_social_pg_submit(q);

    return NGX_DONE;
}


ngx_int_t
ngx_social_pg_run(ngx_social_pg_stmt_t *stmt, ngx_str_t *params,
    ngx_uint_t nparams, ngx_social_pg_handler_pt handler, void *data)
{
    ngx_pool_t             *temp;
    ngx_social_pg_query_t  *q;

    temp = ngx_create_pool(512, ngx_cycle->log);
    if (temp == NULL) {
        return NGX_ERROR;
    }

    q = ngx_social_pg_prepare_query(0, stmt, params, nparams, temp,
                                    ngx_cycle->log);
    if (q == NULL) {
        ngx_destroy_pool(temp);
        return NGX_ERROR;
    }

    q->temp = temp;
    q->background = 1;
    q->handler = handler;
    q->data = data;

    ngx_social_pg_submit(q);

    return NGX_OK;
}


/* a query record with its parameters copied (NUL-terminated) into pool */

static ngx_social_pg_query_t *
ngx_social_pg_prepare_query(ngx_uint_t primary, ngx_social_pg_stmt_t *stmt,
    ngx_str_t *params, ngx_uint_t nparams, ngx_pool_t *pool, ngx_log_t *log)
{
    u_char                 *p;
    ngx_uint_t              i;
    ngx_social_pg_query_t  *q;

    if (nparams > NGX_SOCIAL_PG_MAX_PARAMS || ngx_social_pg_conf == NULL
        || ngx_social_pg_conf->npools == 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "social: no PostgreSQL for \"%V\" "
                      "(social_pg_conninfo)", &stmt->name);
        return NULL;
    }

    q = ngx_social_pg_alloc(primary ? &ngx_social_pg_conf->pools[0]
                                    : ngx_social_pg_pick(stmt));
    if (q == NULL) {
        return NULL;
    }

    q->stmt = stmt;
    q->kind = (stmt == &ngx_social_pg_commit_stmt) ? NGX_SOCIAL_PG_COMMIT
                                                   : NGX_SOCIAL_PG_STMT;
    q->nparams = (int) nparams;

    q->values = ngx_palloc(pool, (nparams + 1) * sizeof(char *));
    if (q->values == NULL) {
        goto failed;
    }

    for (i = 0; i < nparams; i++) {
        if (params[i].data == NULL) {
            q->values[i] = NULL;
            continue;
        }

        p = ngx_pnalloc(pool, params[i].len + 1);
        if (p == NULL) {
            goto failed;
        }

        ngx_memcpy(p, params[i].data, params[i].len);
        p[params[i].len] = '\0';
        q->values[i] = (const char *) p;
    }

    return q;

failed:

    ngx_social_pg_free_query(q);
    return NULL;
}


/* sends q, or queues it, or answers it at once (down, queue full) */

static void
ngx_social_pg_submit(ngx_social_pg_query_t *q)
{
    ngx_social_pg_tx_t    *tx;
    ngx_social_pg_pool_t  *pool;
    ngx_social_pg_conn_t  *conn;

    pool = q->pool;
    tx = q->tx;

    ngx_social_pg_stats.queries++;

    if (tx && tx->lost) {
        ngx_social_pg_deliver(q, NGX_SOCIAL_PG_UNAVAILABLE, NULL);
        return;
    }

    if (tx && tx->conn) {
        conn = tx->conn;

    } else {
        /* nobody overtakes a query already waiting */
        conn = ngx_queue_empty(&pool->waiting)
               ? ngx_social_pg_free_conn(pool, q) : NULL;
    }

    if (conn != NULL) {
        if (ngx_social_pg_start(conn, q) != NGX_OK) {
            ngx_social_pg_deliver(q, NGX_SOCIAL_PG_UNAVAILABLE, NULL);
        }

        return;
    }

    if ((pool->up == 0 && pool->failed)
        || pool->nwaiting >= ngx_social_pg_conf->queue_size)
    {
        ngx_social_pg_stats.rejected++;
        ngx_social_pg_deliver(q, NGX_SOCIAL_PG_UNAVAILABLE, NULL);
        return;
    }

    ngx_social_pg_wait(pool, q, 0);
}


ngx_social_pg_tx_t *
ngx_social_pg_tx(ngx_http_request_t *r)
{
    ngx_social_pg_tx_t  *tx;

    tx = ngx_pcalloc(r->pool, sizeof(ngx_social_pg_tx_t));
    if (tx == NULL) {
        return NULL;
    }

    tx->cleanup = ngx_http_cleanup_add(r, 0);
    if (tx->cleanup == NULL) {
        return NULL;
    }

    tx->r = r;
    tx->cleanup->handler = ngx_social_pg_tx_cleanup;
    tx->cleanup->data = tx;

    return tx;
}


ngx_int_t
ngx_social_pg_commit(ngx_social_pg_tx_t *tx, ngx_social_pg_handler_pt handler,
    void *data)
{
    if (tx->conn == NULL && !tx->lost) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_pg_query(tx->r, tx, &ngx_social_pg_commit_stmt, NULL, 0,
                               handler, data);
}


ngx_int_t
ngx_social_pg_send_error(ngx_http_request_t *r, ngx_social_pg_result_t *result)
{
    const char  *state;

    if (result->status == NGX_SOCIAL_PG_UNAVAILABLE
        || result->status == NGX_SOCIAL_PG_TIMEOUT)
    {
        return ngx_social_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "unavailable",
                                     "the database is unavailable", NULL);
    }

    state = result->sqlstate;

    if (ngx_strcmp(state, "23505") == 0) {
        return ngx_social_send_error(r, NGX_HTTP_CONFLICT, "conflict",
                                     "the resource already exists", NULL);
    }

    if (ngx_strcmp(state, "22P02") == 0 || ngx_strcmp(state, "22003") == 0
        || ngx_strcmp(state, "23503") == 0)
    {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such resource", NULL);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "social: query failed: %s",
                  result->res ? PQresultErrorMessage(result->res) : "");

    return ngx_social_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal_error", "internal server error",
                                 NULL);
}


/* sends a JSON document that the query built (copied: res is short-lived) */

ngx_int_t
ngx_social_pg_send_json(ngx_http_request_t *r, ngx_uint_t status,
    PGresult *res, int row, int col)
{
    ngx_str_t  text;

    if (PQntuples(res) <= row || PQgetisnull(res, row, col)) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.len = PQgetlength(res, row, col);
    text.data = ngx_pnalloc(r->pool, text.len);
    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.len = ngx_social_json_compact(text.data,
                   (u_char *) PQgetvalue(res, row, col), text.len)
               - text.data;

    return ngx_social_send_json_text(r, status, &text);
}


/* in a worker: whether social_pg_conninfo is set */

ngx_uint_t
ngx_social_pg_configured(void)
{
    return ngx_social_pg_conf != NULL && ngx_social_pg_conf->npools > 0;
}


ngx_uint_t
ngx_social_pg_connected(void)
{
    if (ngx_social_pg_conf == NULL || ngx_social_pg_conf->npools == 0) {
        return 0;
    }

    return ngx_social_pg_conf->pools[0].up > 0;
}


void
ngx_social_pg_get_stats(ngx_social_pg_stats_t *stats)
{
    ngx_uint_t             i, j;
    ngx_social_pg_conn_t  *conn;
    ngx_social_pg_pool_t  *pool;

    *stats = ngx_social_pg_stats;

    if (ngx_social_pg_conf == NULL) {
        return;
    }

    for (i = 0; i < ngx_social_pg_conf->npools; i++) {
        pool = &ngx_social_pg_conf->pools[i];
        stats->queued += pool->nwaiting;

        for (j = 0; j < pool->nconns; j++) {
            conn = &pool->conns[j];

            if (conn->state != NGX_SOCIAL_PG_READY) {
                continue;
            }

            stats->connections++;
            stats->inflight += conn->ninflight;

            if (conn->ninflight || ngx_social_pg_exclusive(conn)) {
                stats->busy++;

            } else {
                stats->idle++;
            }
        }
    }
}


/* -------------------------------------------------------- connections */


static ngx_social_pg_query_t *
ngx_social_pg_alloc(ngx_social_pg_pool_t *pool)
{
    ngx_queue_t            *qu;
    ngx_social_pg_query_t  *q;

    if (!ngx_queue_empty(&pool->free)) {
        qu = ngx_queue_head(&pool->free);
        ngx_queue_remove(qu);
        q = ngx_queue_data(qu, ngx_social_pg_query_t, queue);

    } else {
        q = ngx_alloc(sizeof(ngx_social_pg_query_t), ngx_cycle->log);
        if (q == NULL) {
            return NULL;
        }
    }

    ngx_memzero(q, sizeof(ngx_social_pg_query_t));

    q->pool = pool;
    q->timer.handler = ngx_social_pg_query_timeout;
    q->timer.data = q;
    q->timer.log = ngx_cycle->log;

    return q;
}


static void
ngx_social_pg_connect(ngx_social_pg_conn_t *conn)
{
    int                    n;
    ngx_str_t              msg;
    const char            *keys[5], *vals[5];
    ngx_social_pg_pool_t  *pool;

    pool = conn->pool;
    n = 0;

    keys[n] = "dbname";
    vals[n++] = (const char *) pool->conninfo.data;
    keys[n] = "options";
    vals[n++] = (const char *) ngx_social_pg_conf->options.data;
    keys[n] = "application_name";
    vals[n++] = "ngx_social";

    if (pool->hostaddr.len) {
        keys[n] = "hostaddr";
        vals[n++] = (const char *) pool->hostaddr.data;
    }

    keys[n] = NULL;
    vals[n] = NULL;

    conn->pg = PQconnectStartParams(keys, vals, 1);

    if (conn->pg == NULL || PQstatus(conn->pg) == CONNECTION_BAD) {
        ngx_social_pg_message(conn->pg ? PQerrorMessage(conn->pg)
                                       : "out of memory", &msg);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "social: PostgreSQL %V: connect failed: %V",
                      &pool->name, &msg);
        ngx_social_pg_fail(conn, NULL, 1);
        return;
    }

    PQsetNoticeProcessor(conn->pg, ngx_social_pg_notice, conn);

    if (PQsetnonblocking(conn->pg, 1) != 0 || ngx_social_pg_wrap(conn)) {
        ngx_social_pg_fail(conn, NULL, 1);
        return;
    }

    conn->state = NGX_SOCIAL_PG_CONNECTING;
    ngx_add_timer(&conn->timer, ngx_social_pg_conf->connect_timeout);

    if (ngx_social_pg_want_write(conn, 1) != NGX_OK) {
        ngx_social_pg_fail(conn, NULL, 1);
    }
}


/*
 * Wraps the libpq socket in an nginx connection.  libpq may change the
 * socket while connecting (another address of the host), so this is
 * called again whenever PQsocket() differs.
 */

static ngx_int_t
ngx_social_pg_wrap(ngx_social_pg_conn_t *conn)
{
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    fd = PQsocket(conn->pg);

    if (conn->c != NULL) {
        if (conn->c->fd == fd) {
            return NGX_OK;
        }

        ngx_social_pg_close(conn);
    }

    if (fd == (ngx_socket_t) -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, ngx_cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = conn;
    c->read->handler = ngx_social_pg_read_handler;
    c->write->handler = ngx_social_pg_write_handler;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;

    conn->c = c;

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_social_pg_connect_poll(ngx_social_pg_conn_t *conn)
{
    PostgresPollingStatusType  st;

    st = PQconnectPoll(conn->pg);

    if (st != PGRES_POLLING_FAILED && ngx_social_pg_wrap(conn) != NGX_OK) {
        st = PGRES_POLLING_FAILED;
    }

    switch (st) {

    case PGRES_POLLING_READING:
        (void) ngx_social_pg_want_write(conn, 0);
        return;

    case PGRES_POLLING_WRITING:
        (void) ngx_social_pg_want_write(conn, 1);
        return;

    case PGRES_POLLING_OK:
        (void) ngx_social_pg_want_write(conn, 0);
        ngx_social_pg_prepare(conn);
        return;

    default:
        ngx_social_pg_step_failed(conn, "connect");
    }
}


/* every declared statement, prepared in one round trip before pipelining */

static void
ngx_social_pg_prepare(ngx_social_pg_conn_t *conn)
{
    conn->state = NGX_SOCIAL_PG_PREPARING;

    if (ngx_social_pg_conf->prepare.len == 0) {
        ngx_social_pg_prepared(conn);
        return;
    }

    if (!PQsendQuery(conn->pg, (const char *) ngx_social_pg_conf->prepare.data)
        || ngx_social_pg_flush(conn) != NGX_OK)
    {
        ngx_social_pg_step_failed(conn, "prepare");
    }
}


static void
ngx_social_pg_prepared(ngx_social_pg_conn_t *conn)
{
    ngx_social_pg_pool_t  *pool;

    pool = conn->pool;

    if (!PQenterPipelineMode(conn->pg)) {
        ngx_social_pg_step_failed(conn, "pipeline mode");
        return;
    }

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (pool->up == 0) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "social: PostgreSQL %V: connected", &pool->name);
    }

    conn->state = NGX_SOCIAL_PG_READY;
    conn->backoff = 0;
    pool->up++;
    pool->failed = 0;

    ngx_social_pg_dispatch(pool);
}


/* libpq's notices (and the server's) go to the error log, not stderr */

static void
ngx_social_pg_notice(void *arg, const char *message)
{
    ngx_social_pg_conn_t  *conn = arg;

    ngx_str_t  msg;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "social: PostgreSQL %V: %V", &conn->pool->name,
                  ngx_social_pg_message(message, &msg));
}


/* a connection step failed: say which and why, then retry with backoff */

static void
ngx_social_pg_step_failed(ngx_social_pg_conn_t *conn, const char *step)
{
    ngx_str_t  msg;

    ngx_social_pg_message(PQerrorMessage(conn->pg), &msg);
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "social: PostgreSQL %V: %s failed: %V",
                  &conn->pool->name, step, &msg);

    ngx_social_pg_fail(conn, NULL, 1);
}


/* libpq's messages end with a newline and may span lines */

static ngx_str_t *
ngx_social_pg_message(const char *message, ngx_str_t *s)
{
    s->data = (u_char *) message;
    s->len = ngx_strlen(message);

    while (s->len && (s->data[s->len - 1] == '\n'
                      || s->data[s->len - 1] == ' '))
    {
        s->len--;
    }

    return s;
}


static void
ngx_social_pg_read_handler(ngx_event_t *ev)
{
    ngx_str_t              msg;
    ngx_uint_t             level;
    ngx_connection_t      *c;
    ngx_social_pg_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (c->close) {
        /*
         * worker_shutdown_timeout closes every connection; a graceful
         * shutdown itself keeps them for the requests it still answers
         */
        ngx_social_pg_release(conn);
        conn->pool->up--;
        conn->state = NGX_SOCIAL_PG_DOWN;
        return;
    }

    if (conn->state == NGX_SOCIAL_PG_CONNECTING) {
        ngx_social_pg_connect_poll(conn);
        return;
    }

    if (!PQconsumeInput(conn->pg)) {
        /* an idle connection closed by the server is less alarming */
        level = (conn->ninflight == 0) ? NGX_LOG_WARN : NGX_LOG_ERR;
        ngx_social_pg_message(PQerrorMessage(conn->pg), &msg);
        ngx_log_error(level, ngx_cycle->log, 0,
                      "social: PostgreSQL %V: connection lost: %V",
                      &conn->pool->name, &msg);

        ngx_social_pg_fail(conn, NULL, 0);
        return;
    }

    if (conn->flushing && ngx_social_pg_flush(conn) != NGX_OK) {
        ngx_social_pg_fail(conn, NULL, 0);
        return;
    }

    ngx_social_pg_collect(conn);
}


static void
ngx_social_pg_write_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_social_pg_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (conn->state == NGX_SOCIAL_PG_CONNECTING) {
        ngx_social_pg_connect_poll(conn);
        return;
    }

    if (ngx_social_pg_flush(conn) != NGX_OK) {
        ngx_social_pg_fail(conn, NULL, 0);
    }
}


/* connect timeout, or the end of a reconnect backoff */

static void
ngx_social_pg_timer_handler(ngx_event_t *ev)
{
    ngx_social_pg_conn_t  *conn;

    conn = ev->data;

    if (conn->state == NGX_SOCIAL_PG_DOWN) {
        ngx_social_pg_stats.reconnects++;
        ngx_social_pg_connect(conn);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "social: PostgreSQL %V: connect timed out",
                  &conn->pool->name);

    ngx_social_pg_fail(conn, NULL, 1);
}


/*
 * Posted once per turn of the event loop when read-only statements were
 * sent: one Sync (and one write) for all of them.
 */

static void
ngx_social_pg_sync_handler(ngx_event_t *ev)
{
    ngx_social_pg_conn_t  *conn;

    conn = ev->data;

    if (conn->state == NGX_SOCIAL_PG_READY
        && ngx_social_pg_sync(conn) != NGX_OK)
    {
        ngx_social_pg_fail(conn, NULL, 0);
    }
}


static ngx_int_t
ngx_social_pg_flush(ngx_social_pg_conn_t *conn)
{
    switch (PQflush(conn->pg)) {

    case 0:
        conn->flushing = 0;
        return ngx_social_pg_want_write(conn, 0);

    case 1:
        conn->flushing = 1;
        return ngx_social_pg_want_write(conn, 1);

    default:
        return NGX_ERROR;
    }
}


static ngx_int_t
ngx_social_pg_want_write(ngx_social_pg_conn_t *conn, ngx_uint_t on)
{
    ngx_event_t  *wev;

    wev = conn->c->write;

    if (on && !wev->active) {
        return ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    if (!on && wev->active) {
        return ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


/* everything the connection holds, released: timers, events, libpq */

static void
ngx_social_pg_release(ngx_social_pg_conn_t *conn)
{
    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->sync.posted) {
        ngx_delete_posted_event(&conn->sync);
    }

    if (conn->c != NULL) {
        ngx_social_pg_close(conn);
    }

    if (conn->res != NULL) {
        PQclear(conn->res);
        conn->res = NULL;
    }

    if (conn->pg != NULL) {
        PQfinish(conn->pg);
        conn->pg = NULL;
    }
}


/* nginx's side of closing; the socket itself is libpq's to close */

static void
ngx_social_pg_close(ngx_social_pg_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->c;
    conn->c = NULL;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    /* libpq closes the socket: nginx must not count it as open */
    c->fd = (ngx_socket_t) -1;

    ngx_free_connection(c);
}


/* ends the open segment: a Sync after the last statement sent */

static ngx_int_t
ngx_social_pg_sync(ngx_social_pg_conn_t *conn)
{
    ngx_social_pg_query_t  *q;

    if (conn->sync.posted) {
        ngx_delete_posted_event(&conn->sync);
    }

    if (conn->open == 0) {
        return NGX_OK;
    }

    q = ngx_queue_data(ngx_queue_last(&conn->inflight), ngx_social_pg_query_t,
                       queue);
    q->sync = 1;
    conn->open = 0;

    if (!PQpipelineSync(conn->pg)) {
        return NGX_ERROR;
    }

    return ngx_social_pg_flush(conn);
}


/*
 * Reads results while libpq has them.  Each statement's results end with
 * a NULL; each segment ends with a PGRES_PIPELINE_SYNC, and only then are
 * its statements answered (a write is committed by then).
 */

static void
ngx_social_pg_collect(ngx_social_pg_conn_t *conn)
{
    PGresult               *res;
    ExecStatusType          st;
    ngx_social_pg_query_t  *q;

    while (conn->state == NGX_SOCIAL_PG_PREPARING && !PQisBusy(conn->pg)) {
        res = PQgetResult(conn->pg);

        if (res == NULL) {
            res = conn->res;
            conn->res = NULL;

            if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
                ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                              "social: PostgreSQL %V: preparing statements "
                              "failed: %s", &conn->pool->name,
                              res ? PQresultErrorMessage(res) : "no result");
                PQclear(res);
                ngx_social_pg_fail(conn, NULL, 1);
                return;
            }

            PQclear(res);
            ngx_social_pg_prepared(conn);
            return;
        }

        if (conn->res == NULL || PQresultStatus(res) == PGRES_FATAL_ERROR) {
            PQclear(conn->res);
            conn->res = res;

        } else {
            PQclear(res);
        }
    }

    while (conn->state == NGX_SOCIAL_PG_READY && !PQisBusy(conn->pg)) {
        res = PQgetResult(conn->pg);

        q = (conn->current == ngx_queue_sentinel(&conn->inflight))
            ? NULL
            : ngx_queue_data(conn->current, ngx_social_pg_query_t, queue);

        if (res == NULL) {
            if (q == NULL) {
                return;
            }

            q->done = 1;
            conn->current = ngx_queue_next(conn->current);
            continue;
        }

        st = PQresultStatus(res);

        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            ngx_social_pg_segment_done(conn);
            continue;
        }

        if (q == NULL) {
            PQclear(res);
            continue;
        }

        if (st == PGRES_PIPELINE_ABORTED) {
            q->aborted = 1;
            PQclear(res);
            continue;
        }

        if (q->res == NULL || st == PGRES_FATAL_ERROR) {
            PQclear(q->res);
            q->res = res;

        } else {
            PQclear(res);
        }
    }
}


static void
ngx_social_pg_segment_done(ngx_social_pg_conn_t *conn)
{
    ngx_uint_t              last;
    ngx_queue_t            *qu;
    ngx_social_pg_query_t  *q;

    do {
        if (ngx_queue_empty(&conn->inflight)) {
            break;
        }

        qu = ngx_queue_head(&conn->inflight);
        q = ngx_queue_data(qu, ngx_social_pg_query_t, queue);

        ngx_queue_remove(qu);
        conn->ninflight--;
        last = q->sync;

        ngx_social_pg_complete(conn, q);

    } while (!last && conn->state == NGX_SOCIAL_PG_READY);

    if (conn->state != NGX_SOCIAL_PG_READY) {
        return;
    }

    ngx_social_pg_dispatch(conn->pool);
}


/* one statement's segment was synced: its outcome is final */

static void
ngx_social_pg_complete(ngx_social_pg_conn_t *conn, ngx_social_pg_query_t *q)
{
    PGresult  *res;

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    res = q->res;
    q->res = NULL;

    switch (q->kind) {

    case NGX_SOCIAL_PG_BEGIN:
    case NGX_SOCIAL_PG_ROLLBACK:
        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "social: PostgreSQL %V: %s failed: %s",
                          &conn->pool->name,
                          ngx_social_pg_internal_sql[q->kind],
                          res ? PQresultErrorMessage(res) : "aborted");
        }

        if (q->kind == NGX_SOCIAL_PG_ROLLBACK) {
            conn->rollback = 0;
        }

        PQclear(res);
        ngx_social_pg_free_query(q);
        return;

    case NGX_SOCIAL_PG_COMMIT:
        if (conn->tx) {
            conn->tx->conn = NULL;
            conn->tx = NULL;
        }

        break;

    default:
        break;
    }

    if (q->aborted && ngx_social_pg_wanted(q) && q->tx == NULL) {
        /*
         * it was never executed: it runs again (as often as it takes,
         * each abort is some other statement's error, answered)
         */
        PQclear(res);
        ngx_social_pg_wait(q->pool, q, 1);
        return;
    }

    if (res == NULL) {
        ngx_social_pg_finish(q, NGX_SOCIAL_PG_UNAVAILABLE, NULL);
        return;
    }

    if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
        ngx_social_pg_stats.errors++;
        ngx_social_pg_finish(q, NGX_SOCIAL_PG_SQL_ERROR, res);

    } else {
        ngx_social_pg_finish(q, NGX_SOCIAL_PG_OK, res);
    }

    PQclear(res);
}


/*
 * The connection failed.  It is closed and reconnects after a backoff (at
 * once when backoff is 0: a lost or timed-out connection, where the server
 * itself may be fine).  Of its statements in flight, the culprit of a
 * timeout answers 503; read-only ones run again elsewhere once; writes,
 * whose fate is unknown, answer 503.
 */

static void
ngx_social_pg_fail(ngx_social_pg_conn_t *conn, ngx_social_pg_query_t *culprit,
    ngx_uint_t backoff)
{
    ngx_queue_t             inflight, *qu;
    ngx_social_pg_pool_t   *pool;
    ngx_social_pg_query_t  *q;

    pool = conn->pool;

    if (conn->state == NGX_SOCIAL_PG_READY) {
        pool->up--;
    }

    ngx_social_pg_release(conn);

    if (conn->tx != NULL) {
        conn->tx->conn = NULL;
        conn->tx->lost = 1;
        conn->tx = NULL;
    }

    conn->rollback = 0;
    conn->flushing = 0;
    conn->open = 0;
    conn->state = NGX_SOCIAL_PG_DOWN;

    /* take the statements out before calling back into requests */

    ngx_queue_init(&inflight);

    if (!ngx_queue_empty(&conn->inflight)) {
        ngx_queue_add(&inflight, &conn->inflight);
        ngx_queue_init(&conn->inflight);
    }

    conn->ninflight = 0;
    conn->current = ngx_queue_sentinel(&conn->inflight);

    if (backoff) {
        conn->backoff = conn->backoff
                        ? ngx_min(conn->backoff * 2, NGX_SOCIAL_PG_BACKOFF_MAX)
                        : NGX_SOCIAL_PG_BACKOFF_MIN;
        if (pool->up == 0) {
            pool->failed = 1;
        }

    } else {
        conn->backoff = 0;
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(&conn->timer, conn->backoff ? conn->backoff : 1);
    }

    /* from the last, so that those put back keep their order */

    while (!ngx_queue_empty(&inflight)) {
        qu = ngx_queue_last(&inflight);
        q = ngx_queue_data(qu, ngx_social_pg_query_t, queue);
        ngx_queue_remove(qu);

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        if (q == culprit) {
            ngx_social_pg_finish(q, NGX_SOCIAL_PG_TIMEOUT, NULL);

        } else if (ngx_social_pg_wanted(q) && q->kind == NGX_SOCIAL_PG_STMT
                   && !q->retried && q->tx == NULL && q->stmt->readonly)
        {
            q->retried = 1;
            PQclear(q->res);
            q->res = NULL;
            ngx_social_pg_wait(pool, q, 1);

        } else {
            ngx_social_pg_finish(q, NGX_SOCIAL_PG_UNAVAILABLE, NULL);
        }
    }

    if (pool->up == 0 && pool->failed) {
        ngx_social_pg_fail_waiting(pool);

    } else {
        ngx_social_pg_dispatch(pool);
    }
}


/* ------------------------------------------------------------ queries */


static ngx_int_t
ngx_social_pg_send(ngx_social_pg_conn_t *conn, ngx_social_pg_query_t *q)
{
    int        ok;
    ngx_str_t  msg;

    if (q->kind == NGX_SOCIAL_PG_STMT) {
        ok = PQsendQueryPrepared(conn->pg, (const char *) q->stmt->name.data,
                                 q->nparams, q->values, NULL, NULL, 0);

    } else {
        ok = PQsendQueryParams(conn->pg, ngx_social_pg_internal_sql[q->kind],
                               0, NULL, NULL, NULL, NULL, 0);
    }

    if (!ok) {
        ngx_social_pg_message(PQerrorMessage(conn->pg), &msg);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "social: PostgreSQL %V: send failed: %V",
                      &conn->pool->name, &msg);
        return NGX_ERROR;
    }

    q->conn = conn;
    q->sync = 0;
    q->done = 0;
    q->aborted = 0;

    ngx_queue_insert_tail(&conn->inflight, &q->queue);

    if (conn->current == ngx_queue_sentinel(&conn->inflight)) {
        conn->current = &q->queue;
    }

    conn->ninflight++;
    conn->open++;

    /* a write, or anything of a transaction, ends its segment at once */

    if (q->kind != NGX_SOCIAL_PG_STMT || !q->stmt->readonly
        || ngx_social_pg_exclusive(conn))
    {
        return ngx_social_pg_sync(conn);
    }

    if (!conn->sync.posted) {
        ngx_post_event(&conn->sync, &ngx_posted_events);
    }

    return NGX_OK;
}


/* NGX_ERROR: q was not sent and the connection failed; q is the caller's */

static ngx_int_t
ngx_social_pg_start(ngx_social_pg_conn_t *conn, ngx_social_pg_query_t *q)
{
    if (q->waiting) {
        ngx_queue_remove(&q->queue);
        q->pool->nwaiting--;
        q->waiting = 0;
    }

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (q->tx && q->tx->conn == NULL) {
        /* the first statement of a transaction pins the connection */
        q->tx->conn = conn;
        conn->tx = q->tx;

        if (ngx_social_pg_internal(conn, NGX_SOCIAL_PG_BEGIN) != NGX_OK) {
            ngx_social_pg_fail(conn, NULL, 0);
            return NGX_ERROR;
        }
    }

    if (ngx_social_pg_send(conn, q) != NGX_OK) {
        ngx_social_pg_fail(conn, NULL, 0);
        return NGX_ERROR;
    }

    ngx_add_timer(&q->timer, ngx_social_pg_conf->query_timeout);

    return NGX_OK;
}


/* BEGIN and ROLLBACK: statements of no request */

static ngx_int_t
ngx_social_pg_internal(ngx_social_pg_conn_t *conn, ngx_social_pg_kind_e kind)
{
    ngx_social_pg_query_t  *q;

    q = ngx_social_pg_alloc(conn->pool);
    if (q == NULL) {
        return NGX_ERROR;
    }

    q->kind = kind;

    if (ngx_social_pg_send(conn, q) != NGX_OK) {
        ngx_social_pg_free_query(q);
        return NGX_ERROR;
    }

    ngx_add_timer(&q->timer, ngx_social_pg_conf->query_timeout);

    return NGX_OK;
}


static void
ngx_social_pg_dispatch(ngx_social_pg_pool_t *pool)
{
    ngx_social_pg_conn_t   *conn;
    ngx_social_pg_query_t  *q;

    while (!ngx_queue_empty(&pool->waiting)) {
        q = ngx_queue_data(ngx_queue_head(&pool->waiting),
                           ngx_social_pg_query_t, queue);

        conn = ngx_social_pg_free_conn(pool, q);
        if (conn == NULL) {
            return;
        }

        if (ngx_social_pg_start(conn, q) != NGX_OK) {
            ngx_social_pg_finish(q, NGX_SOCIAL_PG_UNAVAILABLE, NULL);
        }
    }
}


/*
 * The least loaded connection below the pipeline depth; a transaction
 * takes a connection with nothing in flight, and keeps it to itself.
 */

static ngx_social_pg_conn_t *
ngx_social_pg_free_conn(ngx_social_pg_pool_t *pool, ngx_social_pg_query_t *q)
{
    ngx_uint_t             i;
    ngx_social_pg_conn_t  *conn, *best;

    best = NULL;

    for (i = 0; i < pool->nconns; i++) {
        conn = &pool->conns[i];

        if (conn->state != NGX_SOCIAL_PG_READY
            || ngx_social_pg_exclusive(conn))
        {
            continue;
        }

        if (q->tx) {
            if (conn->ninflight == 0) {
                return conn;
            }

            continue;
        }

        if (conn->ninflight >= ngx_social_pg_conf->depth) {
            continue;
        }

        if (best == NULL || conn->ninflight < best->ninflight) {
            best = conn;
        }
    }

    return best;
}


static void
ngx_social_pg_wait(ngx_social_pg_pool_t *pool, ngx_social_pg_query_t *q,
    ngx_uint_t front)
{
    if (front) {
        ngx_queue_insert_head(&pool->waiting, &q->queue);

    } else {
        ngx_queue_insert_tail(&pool->waiting, &q->queue);
    }

    pool->nwaiting++;
    q->waiting = 1;
    q->conn = NULL;

    ngx_add_timer(&q->timer, ngx_social_pg_conf->queue_timeout);
}


/*
 * Delivers the outcome from an event handler: then the request's posted
 * requests run, as after any event of the request's own connection.
 */

static void
ngx_social_pg_finish(ngx_social_pg_query_t *q, ngx_social_pg_status_e status,
    PGresult *res)
{
    ngx_connection_t  *c;

    if (q->r == NULL) {
        ngx_social_pg_deliver(q, status, res);
        return;
    }

    c = q->r->connection;

    ngx_social_pg_deliver(q, status, res);

    ngx_http_run_posted_requests(c);
}


/* delivers the outcome to the request, if it is still there */

static void
ngx_social_pg_deliver(ngx_social_pg_query_t *q, ngx_social_pg_status_e status,
    PGresult *res)
{
    ngx_http_request_t      *r;
    ngx_social_pg_result_t   result;

    r = q->r;

    if (!ngx_social_pg_wanted(q)) {
        ngx_social_pg_free_query(q);
        return;
    }

    if (r != NULL) {
        q->cleanup->handler = NULL;
        q->r = NULL;
    }

    q->background = 0;

    result.status = status;
    result.res = res;
    result.sqlstate = NULL;

    if (res != NULL && status == NGX_SOCIAL_PG_SQL_ERROR) {
        result.sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    }

    if (result.sqlstate == NULL) {
        result.sqlstate = "";
    }

    q->handler(r, &result, q->data);
    ngx_social_pg_free_query(q);
}


/* back to the free list; q is in no other list but perhaps the waiting */

static void
ngx_social_pg_free_query(ngx_social_pg_query_t *q)
{
    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (q->waiting) {
        ngx_queue_remove(&q->queue);
        q->pool->nwaiting--;
        q->waiting = 0;
    }

    if (q->r != NULL) {
        q->cleanup->handler = NULL;
        q->r = NULL;
    }

    if (q->res != NULL) {
        PQclear(q->res);
        q->res = NULL;
    }

    if (q->temp != NULL) {
        ngx_destroy_pool(q->temp);
        q->temp = NULL;
    }

    q->background = 0;

    ngx_queue_insert_head(&q->pool->free, &q->queue);
}


static void
ngx_social_pg_fail_waiting(ngx_social_pg_pool_t *pool)
{
    ngx_queue_t            *qu;
    ngx_social_pg_query_t  *q;

    while (!ngx_queue_empty(&pool->waiting)) {
        qu = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(qu, ngx_social_pg_query_t, queue);

        ngx_queue_remove(qu);
        pool->nwaiting--;
        q->waiting = 0;

        if (q->timer.timer_set) {
            ngx_del_timer(&q->timer);
        }

        ngx_social_pg_stats.rejected++;
        ngx_social_pg_finish(q, NGX_SOCIAL_PG_UNAVAILABLE, NULL);
    }
}


/*
 * A query waited too long for a connection, or ran too long.  A running
 * query cannot be cancelled without blocking (PQcancel), so its
 * connection is closed and replaced; the server stops the statement when
 * it notices (client_connection_check_interval, statement_timeout).
 */

static void
ngx_social_pg_query_timeout(ngx_event_t *ev)
{
    ngx_social_pg_pool_t   *pool;
    ngx_social_pg_query_t  *q;

    q = ev->data;
    pool = q->pool;

    ngx_social_pg_stats.timeouts++;

    if (q->waiting) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "social: PostgreSQL %V: no connection within %M ms",
                      &pool->name, ngx_social_pg_conf->queue_timeout);

        ngx_queue_remove(&q->queue);
        pool->nwaiting--;
        q->waiting = 0;

        ngx_social_pg_finish(q, NGX_SOCIAL_PG_TIMEOUT, NULL);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "social: PostgreSQL %V: \"%s\" timed out after %M ms",
                  &pool->name,
                  q->kind == NGX_SOCIAL_PG_STMT
                  ? (const char *) q->stmt->name.data
                  : ngx_social_pg_internal_sql[q->kind],
                  ngx_social_pg_conf->query_timeout);

    ngx_social_pg_fail(q->conn, q, 0);
}


/* the request is going away: its query must not call back into it */

static void
ngx_social_pg_query_cleanup(void *data)
{
    ngx_social_pg_query_t  *q = data;

    q->r = NULL;

    if (q->waiting) {
        ngx_social_pg_free_query(q);
    }
}


/* a transaction left without commit is rolled back, pipelined */

static void
ngx_social_pg_tx_cleanup(void *data)
{
    ngx_social_pg_tx_t  *tx = data;

    ngx_social_pg_conn_t  *conn;

    conn = tx->conn;

    if (conn == NULL) {
        return;
    }

    tx->conn = NULL;
    conn->tx = NULL;
    conn->rollback = 1;

    if (ngx_social_pg_internal(conn, NGX_SOCIAL_PG_ROLLBACK) != NGX_OK) {
        ngx_social_pg_fail(conn, NULL, 0);
    }
}


static ngx_social_pg_pool_t *
ngx_social_pg_pick(ngx_social_pg_stmt_t *stmt)
{
    ngx_social_pg_pool_t  *replica;

    if (stmt->replica && ngx_social_pg_conf->npools > 1) {
        replica = &ngx_social_pg_conf->pools[1];

        if (replica->up > 0) {
            return replica;
        }
    }

    return &ngx_social_pg_conf->pools[0];
}


/* ----------------------------------------------------- configuration */


static void *
ngx_social_pg_create_main_conf(ngx_conf_t *cf)
{
    ngx_social_pg_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_pg_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    pmcf->pool_size = NGX_CONF_UNSET_UINT;
    pmcf->depth = NGX_CONF_UNSET_UINT;
    pmcf->queue_size = NGX_CONF_UNSET_UINT;
    pmcf->queue_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->query_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->connect_timeout = NGX_CONF_UNSET_MSEC;

    if (ngx_array_init(&pmcf->stmts, cf->pool, 64,
                       sizeof(ngx_social_pg_stmt_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return pmcf;
}


static char *
ngx_social_pg_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_social_pg_main_conf_t  *pmcf = conf;

    u_char  *p;

    ngx_conf_init_uint_value(pmcf->pool_size, 8);
    ngx_conf_init_uint_value(pmcf->depth, 16);
    ngx_conf_init_uint_value(pmcf->queue_size, 1024);
    ngx_conf_init_msec_value(pmcf->queue_timeout, 2000);
    ngx_conf_init_msec_value(pmcf->query_timeout, 5000);
    ngx_conf_init_msec_value(pmcf->connect_timeout, 3000);

    if (pmcf->pool_size == 0 || pmcf->depth == 0) {
        return "social_pg_pool_size and social_pg_pipeline_depth must be "
               "at least 1";
    }

    /*
     * Server-side backstops: a statement outlives our timeout by at most
     * a second, and a backend notices a closed client while it runs.
     */

    p = ngx_pnalloc(cf->pool, 128);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    pmcf->options.data = p;
    p = ngx_sprintf(p, "-c statement_timeout=%M "
                    "-c client_connection_check_interval=1000%Z",
                    pmcf->query_timeout + 1000);
    pmcf->options.len = p - pmcf->options.data - 1;

    if (pmcf->conninfo.len == 0) {
        return NGX_CONF_OK;
    }

    ngx_str_set(&pmcf->pools[0].name, "primary");

    if (ngx_social_pg_pool_conf(cf, &pmcf->pools[0], &pmcf->conninfo)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    pmcf->npools = 1;

    if (pmcf->replica.len) {
        ngx_str_set(&pmcf->pools[1].name, "replica");

        if (ngx_social_pg_pool_conf(cf, &pmcf->pools[1], &pmcf->replica)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        pmcf->npools = 2;
    }

    return NGX_CONF_OK;
}


/*
 * Checks a conninfo and, when its host is a name, resolves it now:
 * PQconnectStart() would otherwise resolve it with a blocking call.
 */

static ngx_int_t
ngx_social_pg_pool_conf(ngx_conf_t *cf, ngx_social_pg_pool_t *pool,
    ngx_str_t *conninfo)
{
    char               *err;
    u_char             *p;
    size_t              len;
    ngx_url_t           u;
    PQconninfoOption   *opts, *o;
    const char         *host, *hostaddr;

    pool->conninfo.data = ngx_pnalloc(cf->pool, conninfo->len + 1);
    if (pool->conninfo.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(pool->conninfo.data, conninfo->data, conninfo->len);
    pool->conninfo.data[conninfo->len] = '\0';
    pool->conninfo.len = conninfo->len;

    err = NULL;
    opts = PQconninfoParse((const char *) pool->conninfo.data, &err);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid PostgreSQL conninfo \"%V\": %s",
                           conninfo, err ? err : "out of memory");
        PQfreemem(err);
        return NGX_ERROR;
    }

    host = NULL;
    hostaddr = NULL;

    for (o = opts; o->keyword; o++) {
        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = o->val;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = o->val;
        }
    }

    if (host == NULL || hostaddr != NULL || host[0] == '/'
        || host[0] == '@')
    {
        PQconninfoFree(opts);
        return NGX_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.len = ngx_strlen(host);
    u.url.data = (u_char *) host;
    u.default_port = 5432;
    u.no_resolve = 0;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot resolve PostgreSQL host \"%s\"%s%s",
                           host, u.err ? ": " : "", u.err ? u.err : "");
        PQconninfoFree(opts);
        return NGX_ERROR;
    }

    PQconninfoFree(opts);

    len = NGX_SOCKADDR_STRLEN;

    p = ngx_pnalloc(cf->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p, len, 0);
    p[len] = '\0';

    pool->hostaddr.data = p;
    pool->hostaddr.len = len;

    return NGX_OK;
}


/* the PREPARE batch: statement names and SQL are our own constants */

static ngx_int_t
ngx_social_pg_build_prepare(ngx_cycle_t *cycle,
    ngx_social_pg_main_conf_t *pmcf)
{
    size_t                  len;
    u_char                 *p;
    ngx_uint_t              i;
    ngx_social_pg_stmt_t  **s;

    s = pmcf->stmts.elts;
    len = 1;

    for (i = 0; i < pmcf->stmts.nelts; i++) {
        len += sizeof("PREPARE  AS ;\n") - 1 + s[i]->name.len
               + s[i]->sql.len;
    }

    p = ngx_pnalloc(cycle->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    pmcf->prepare.data = p;

    for (i = 0; i < pmcf->stmts.nelts; i++) {
        p = ngx_cpymem(p, "PREPARE ", sizeof("PREPARE ") - 1);
        p = ngx_cpymem(p, s[i]->name.data, s[i]->name.len);
        p = ngx_cpymem(p, " AS ", sizeof(" AS ") - 1);
        p = ngx_cpymem(p, s[i]->sql.data, s[i]->sql.len);
        p = ngx_cpymem(p, ";\n", sizeof(";\n") - 1);
    }

    *p = '\0';
    pmcf->prepare.len = p - pmcf->prepare.data;

    return NGX_OK;
}


static ngx_int_t
ngx_social_pg_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i, j;
    ngx_social_pg_pool_t       *pool;
    ngx_social_pg_conn_t       *conn;
    ngx_social_pg_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_social_pg_module);

    if (pmcf == NULL) {
        return NGX_OK;
    }

    ngx_social_pg_conf = pmcf;

    if (pmcf->npools == 0) {
        return NGX_OK;
    }

    if (ngx_social_pg_build_prepare(cycle, pmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the cached time may be that of the configuration's start: the
     * connect timeouts count from now */
    ngx_time_update();

    for (i = 0; i < pmcf->npools; i++) {
        pool = &pmcf->pools[i];

        ngx_queue_init(&pool->waiting);
        ngx_queue_init(&pool->free);

        pool->nconns = pmcf->pool_size;
        pool->conns = ngx_pcalloc(cycle->pool,
                                  pool->nconns * sizeof(ngx_social_pg_conn_t));
        if (pool->conns == NULL) {
            return NGX_ERROR;
        }

        for (j = 0; j < pool->nconns; j++) {
            conn = &pool->conns[j];
            conn->pool = pool;

            ngx_queue_init(&conn->inflight);
            conn->current = ngx_queue_sentinel(&conn->inflight);

            conn->timer.handler = ngx_social_pg_timer_handler;
            conn->timer.data = conn;
            conn->timer.log = cycle->log;
            conn->timer.cancelable = 1;

            conn->sync.handler = ngx_social_pg_sync_handler;
            conn->sync.data = conn;
            conn->sync.log = cycle->log;

            ngx_social_pg_connect(conn);
        }
    }

    return NGX_OK;
}


static void
ngx_social_pg_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t              i, j;
    ngx_queue_t            *qu;
    ngx_social_pg_pool_t   *pool;
    ngx_social_pg_conn_t   *conn;
    ngx_social_pg_query_t  *q;

    if (ngx_social_pg_conf == NULL) {
        return;
    }

    for (i = 0; i < ngx_social_pg_conf->npools; i++) {
        pool = &ngx_social_pg_conf->pools[i];

        for (j = 0; j < pool->nconns; j++) {
            conn = &pool->conns[j];

            ngx_social_pg_release(conn);

            while (!ngx_queue_empty(&conn->inflight)) {
                qu = ngx_queue_head(&conn->inflight);
                ngx_queue_remove(qu);
                q = ngx_queue_data(qu, ngx_social_pg_query_t, queue);
                q->r = NULL;
                ngx_social_pg_free_query(q);
            }
        }

        while (!ngx_queue_empty(&pool->waiting)) {
            qu = ngx_queue_head(&pool->waiting);
            q = ngx_queue_data(qu, ngx_social_pg_query_t, queue);
            q->r = NULL;
            ngx_social_pg_free_query(q);
        }

        while (!ngx_queue_empty(&pool->free)) {
            qu = ngx_queue_head(&pool->free);
            ngx_queue_remove(qu);
            ngx_free(ngx_queue_data(qu, ngx_social_pg_query_t, queue));
        }
    }

    ngx_social_pg_conf = NULL;
}
