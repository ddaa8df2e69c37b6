/*
 * Idempotency-Key: a repeat of the same key by the same user on the same
 * path within 24 hours answers the first response (same status, same
 * body) and creates nothing new.
 *
 * Everything happens in one transaction of the request.  The claim
 * inserts (user, path, key); a concurrent repeat's insert waits inside
 * PostgreSQL for the first transaction to end.  The route's write
 * statement stores the response in the claimed row
 * (NGX_SOCIAL_IDEM_STORE) and the route commits: a repeat then reads the
 * stored response.  A refused attempt (4xx) never commits, so it is not
 * remembered.  Rows older than 24 hours are claimed again, and deleted by
 * worker 0 every 10 minutes.
 */

#include "ngx_social_core_module.h"


#define NGX_SOCIAL_IDEM_MAX_KEY  64
#define NGX_SOCIAL_IDEM_PURGE    (10 * 60 * 1000)


typedef struct {
    ngx_social_pg_tx_t         *tx;
    ngx_social_idem_pt          claimed;
    void                       *data;
    ngx_str_t                   params[3];
    u_char                      user[NGX_INT64_LEN];
} ngx_social_idem_ctx_t;


typedef struct {
    ngx_social_pg_tx_t         *tx;
    ngx_social_pg_handler_pt    handler;
    void                       *data;
    ngx_str_t                   params[5];
    u_char                      user[NGX_INT64_LEN];
    u_char                      status[NGX_INT_T_LEN];
} ngx_social_idem_commit_t;


static void ngx_social_idem_claim_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_idem_replay(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_idem_conflict(ngx_http_request_t *r);
static void ngx_social_idem_stored(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_idem_purge(ngx_event_t *ev);
static void ngx_social_idem_purged(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


static ngx_social_pg_stmt_t  ngx_social_idem_stmts[] = {

    { ngx_string("idem_claim"),
      ngx_string("INSERT INTO idempotency_keys (user_id, route, key) "
                 "VALUES ($1, $2, $3) "
                 "ON CONFLICT (user_id, route, key) DO UPDATE "
                 "SET status = NULL, body = NULL, created_at = now() "
                 "WHERE idempotency_keys.created_at "
                 "< now() - interval '24 hours' "
                 "RETURNING 1"),
      0, 0 },

    /* in the same transaction, after the claim waited: the committed row */
    { ngx_string("idem_stored"),
      ngx_string("SELECT status, body FROM idempotency_keys "
                 "WHERE user_id = $1 AND route = $2 AND key = $3"),
      0, 0 },

    { ngx_string("idem_store"),
      ngx_string("UPDATE idempotency_keys SET status = $4, body = $5 "
                 "WHERE user_id = $1 AND route = $2 AND key = $3"),
      0, 0 },

    { ngx_string("idem_purge"),
      ngx_string("DELETE FROM idempotency_keys "
                 "WHERE created_at < now() - interval '24 hours'"),
      0, 0 }
};


static ngx_event_t       ngx_social_idem_timer;
static ngx_connection_t  ngx_social_idem_dummy;


ngx_int_t
ngx_social_idem_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_idem_stmts,
                                  sizeof(ngx_social_idem_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_idem_init_process(ngx_cycle_t *cycle)
{
    if (ngx_worker != 0 || !ngx_social_pg_configured()) {
        return NGX_OK;
    }

    ngx_social_idem_dummy.fd = (ngx_socket_t) -1;
    ngx_social_idem_timer.handler = ngx_social_idem_purge;
    ngx_social_idem_timer.data = &ngx_social_idem_dummy;
    ngx_social_idem_timer.log = cycle->log;
    ngx_social_idem_timer.cancelable = 1;

    ngx_add_timer(&ngx_social_idem_timer, NGX_SOCIAL_IDEM_PURGE);

    return NGX_OK;
}


/*
 * The request's Idempotency-Key: NGX_OK with key->len 0 when there is
 * none; NGX_DECLINED when it is empty or longer than 64 bytes.
 */

ngx_int_t
ngx_social_idem_key(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(key);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_OK;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Idempotency-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Idempotency-Key",
                               sizeof("Idempotency-Key") - 1)
               == 0)
        {
            *key = h[i].value;

            return (key->len > 0 && key->len <= NGX_SOCIAL_IDEM_MAX_KEY)
                   ? NGX_OK : NGX_DECLINED;
        }
    }
}


/*
 * Claims key for the user of ctx on r's path in a new transaction.  When
 * it is claimed, claimed() goes on in that transaction: its write stores
 * the response (NGX_SOCIAL_IDEM_STORE with the path and the key) and it
 * commits.  When a response was stored already, that response is sent.
 * Returns what a route handler returns.
 */

ngx_int_t
ngx_social_idem_claim(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_str_t *key, ngx_social_idem_pt claimed, void *data)
{
    ngx_social_idem_ctx_t  *ic;

    ic = ngx_palloc(r->pool, sizeof(ngx_social_idem_ctx_t));
    if (ic == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ic->tx = ngx_social_pg_tx(r);
    if (ic->tx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ic->claimed = claimed;
    ic->data = data;

    ic->params[0].data = ic->user;
    ic->params[0].len = ngx_sprintf(ic->user, "%L", ctx->user_id) - ic->user;
    ic->params[1] = r->uri;
    ic->params[2] = *key;

    return ngx_social_pg_query(r, ic->tx, &ngx_social_idem_stmts[0],
                               ic->params, 3, ngx_social_idem_claim_done, ic);
}


static void
ngx_social_idem_claim_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_idem_ctx_t  *ic = data;

    if (result->status == NGX_SOCIAL_PG_TIMEOUT) {
        /* the first request holds the key for longer than a query may */
        ngx_http_finalize_request(r, ngx_social_idem_conflict(r));
        return;
    }

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 1) {
        ic->claimed(r, ic->tx, ic->data);
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, ic->tx, &ngx_social_idem_stmts[1], ic->params,
                            3, ngx_social_idem_replay, ic));
}


static void
ngx_social_idem_replay(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_str_t   body;
    ngx_int_t   status;
    PGresult   *res;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    res = result->res;

    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)
        || PQgetisnull(res, 0, 1))
    {
        ngx_http_finalize_request(r, ngx_social_idem_conflict(r));
        return;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    body.len = PQgetlength(res, 0, 1);
    body.data = ngx_pnalloc(r->pool, body.len + 1);

    if (status < NGX_HTTP_OK || body.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    body.len = ngx_social_json_compact(body.data,
                   (u_char *) PQgetvalue(res, 0, 1), body.len)
               - body.data;

    ngx_http_finalize_request(r, ngx_social_send_json_text(r, status, &body));
}


/*
 * For a route whose answer is not built by its write statement: stores
 * the answer (status, body) in the claimed row, then commits tx; handler
 * gets the result of the commit.  As ngx_social_pg_query() otherwise.
 */

ngx_int_t
ngx_social_idem_commit(ngx_http_request_t *r, ngx_social_pg_tx_t *tx,
    int64_t user, ngx_str_t *key, ngx_uint_t status, ngx_str_t *body,
    ngx_social_pg_handler_pt handler, void *data)
{
    ngx_social_idem_commit_t  *ic;

    ic = ngx_palloc(r->pool, sizeof(ngx_social_idem_commit_t));
    if (ic == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ic->tx = tx;
    ic->handler = handler;
    ic->data = data;

    ic->params[0].data = ic->user;
    ic->params[0].len = ngx_sprintf(ic->user, "%L", user) - ic->user;
    ic->params[1] = r->uri;
    ic->params[2] = *key;
    ic->params[3].data = ic->status;
    ic->params[3].len = ngx_sprintf(ic->status, "%ui", status) - ic->status;
    ic->params[4] = *body;

    return ngx_social_pg_query(r, tx, &ngx_social_idem_stmts[2], ic->params,
                               5, ngx_social_idem_stored, ic);
}


static void
ngx_social_idem_stored(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_idem_commit_t  *ic = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ic->handler(r, result, ic->data);
        return;
    }

    ngx_http_finalize_request(r, ngx_social_pg_commit(ic->tx, ic->handler,
                                                      ic->data));
}


static ngx_int_t
ngx_social_idem_conflict(ngx_http_request_t *r)
{
    return ngx_social_send_error(r, NGX_HTTP_CONFLICT, "conflict",
                                 "a request with this Idempotency-Key is "
                                 "still in progress", NULL);
}


static void
ngx_social_idem_purge(ngx_event_t *ev)
{
    if (ngx_exiting) {
        return;
    }

    if (ngx_social_pg_run(&ngx_social_idem_stmts[3], NULL, 0,
                          ngx_social_idem_purged, NULL)
        != NGX_OK)
    {
        ngx_add_timer(ev, NGX_SOCIAL_IDEM_PURGE);
    }
}


static void
ngx_social_idem_purged(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: expired idempotency keys not purged");
    }

    if (!ngx_exiting) {
        ngx_add_timer(&ngx_social_idem_timer, NGX_SOCIAL_IDEM_PURGE);
    }
}
