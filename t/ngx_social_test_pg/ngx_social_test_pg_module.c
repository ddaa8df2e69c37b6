/*
 * ngx_social_test_pg: loaded by the test suite and the benchmarks only.
 * Routes under /t/pg/ run statements through the PostgreSQL adapter.
 */

#include <ngx_social_core.h>


typedef struct {
    ngx_str_t                   username;
    ngx_str_t                   email;
    int                         fail;
    ngx_social_pg_tx_t         *tx;
} ngx_social_test_pg_tx_ctx_t;


static ngx_int_t ngx_social_test_pg_echo(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static void ngx_social_test_pg_echo_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_test_pg_sleep(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static void ngx_social_test_pg_sleep_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_test_pg_user(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static void ngx_social_test_pg_user_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_test_pg_tx(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static void ngx_social_test_pg_tx_first(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_test_pg_tx_second(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_test_pg_tx_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_test_pg_whoami(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
static ngx_int_t ngx_social_test_pg_postconfiguration(ngx_conf_t *cf);


enum {
    NGX_SOCIAL_TEST_PG_ECHO = 0,
    NGX_SOCIAL_TEST_PG_SLEEP,
    NGX_SOCIAL_TEST_PG_USER_BY_ID,
    NGX_SOCIAL_TEST_PG_USER_BY_NAME,
    NGX_SOCIAL_TEST_PG_INSERT_USER
};


static ngx_social_pg_stmt_t  ngx_social_test_pg_stmts[] = {

    { ngx_string("test_echo"),
      ngx_string("SELECT json_build_object("
                 "'bigint', $1::bigint::text, 'text', $2::text, "
                 "'bool', $3::boolean, 'int', $4::integer, "
                 "'ts', to_char($5::timestamptz AT TIME ZONE 'UTC', "
                 "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                 "'float', $6::float8, 'null', $7::text)::text"),
      1, 0 },

    { ngx_string("test_sleep"),
      ngx_string("SELECT pg_sleep($1::float8)"),
      0, 0 },

    { ngx_string("test_user_by_id"),
      ngx_string("SELECT id::text, username FROM users WHERE id = $1"),
      1, 1 },

    { ngx_string("test_user_by_name"),
      ngx_string("SELECT id::text, username FROM users "
                 "WHERE lower(username) = lower($1)"),
      1, 1 },

    { ngx_string("test_insert_user"),
      ngx_string("INSERT INTO users (username, email) VALUES ($1, $2) "
                 "RETURNING id::text"),
      0, 0 }
};


static const char  *ngx_social_test_pg_echo_fields[] = {
    "bigint", "text", "bool", "int", "ts", "float", "null"
};


static ngx_social_route_t  ngx_social_test_pg_routes[] = {
    { NGX_HTTP_POST, ngx_string("/t/pg/echo"), ngx_social_test_pg_echo,
      NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/t/pg/sleep"), ngx_social_test_pg_sleep, 0 },
    { NGX_HTTP_GET, ngx_string("/t/pg/user"), ngx_social_test_pg_user, 0 },
    { NGX_HTTP_POST, ngx_string("/t/pg/tx"), ngx_social_test_pg_tx,
      NGX_SOCIAL_ROUTE_JSON_BODY },
    { NGX_HTTP_GET, ngx_string("/t/whoami"), ngx_social_test_pg_whoami,
      NGX_SOCIAL_ROUTE_AUTH }
};


static ngx_http_module_t  ngx_social_test_pg_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_social_test_pg_postconfiguration,  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_test_pg_module = {
    NGX_MODULE_V1,
    &ngx_social_test_pg_module_ctx,        /* module context */
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


/* POST /t/pg/echo: every parameter type round-trips as data */

static ngx_int_t
ngx_social_test_pg_echo(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    size_t       len;
    json_t      *v;
    ngx_str_t    params[7];
    ngx_uint_t   i;

    for (i = 0; i < 7; i++) {
        v = json_object_get(ctx->body, ngx_social_test_pg_echo_fields[i]);

        if (v == NULL || json_is_null(v)) {
            ngx_str_null(&params[i]);
            continue;
        }

        if (json_is_string(v)) {
            params[i].data = (u_char *) json_string_value(v);
            params[i].len = json_string_length(v);
            continue;
        }

        /* numbers and booleans travel as their JSON text */

        len = json_dumpb(v, NULL, 0, JSON_ENCODE_ANY);

        params[i].data = ngx_pnalloc(r->pool, len ? len : 1);
        if (params[i].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        params[i].len = json_dumpb(v, (char *) params[i].data, len,
                                   JSON_ENCODE_ANY);
    }

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_test_pg_stmts[
                                   NGX_SOCIAL_TEST_PG_ECHO],
                               params, 7, ngx_social_test_pg_echo_done,
                               NULL);
}


static void
ngx_social_test_pg_echo_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_pg_send_json(r, NGX_HTTP_OK,
                                                         result->res, 0, 0));
}


/* GET /t/pg/sleep?s=seconds */

static ngx_int_t
ngx_social_test_pg_sleep(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_str_t  s;

    if (ngx_http_arg(r, (u_char *) "s", 1, &s) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "s is required",
                                     json_pack("{s:s}", "s", "required"));
    }

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_test_pg_stmts[
                                   NGX_SOCIAL_TEST_PG_SLEEP],
                               &s, 1, ngx_social_test_pg_sleep_done, NULL);
}


static void
ngx_social_test_pg_sleep_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_json(r, NGX_HTTP_OK,
                                  json_pack("{s:b}", "slept", 1)));
}


/* GET /t/pg/user?id=N or ?username=NAME: one indexed row */

static ngx_int_t
ngx_social_test_pg_user(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_str_t  arg;

    if (ngx_http_arg(r, (u_char *) "id", 2, &arg) == NGX_OK) {
        return ngx_social_pg_query(r, NULL,
                                   &ngx_social_test_pg_stmts[
                                       NGX_SOCIAL_TEST_PG_USER_BY_ID],
                                   &arg, 1, ngx_social_test_pg_user_done,
                                   NULL);
    }

    if (ngx_http_arg(r, (u_char *) "username", 8, &arg) == NGX_OK) {
        return ngx_social_pg_query(r, NULL,
                                   &ngx_social_test_pg_stmts[
                                       NGX_SOCIAL_TEST_PG_USER_BY_NAME],
                                   &arg, 1, ngx_social_test_pg_user_done,
                                   NULL);
    }

    return ngx_social_send_error(r, 422, "validation_failed",
                                 "id or username is required", NULL);
}


static void
ngx_social_test_pg_user_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such user", NULL));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_json(r, NGX_HTTP_OK,
                                  json_pack("{s:s, s:s}",
                                            "id",
                                            PQgetvalue(result->res, 0, 0),
                                            "username",
                                            PQgetvalue(result->res, 0, 1))));
}


/*
 * POST /t/pg/tx {"username", "email", "fail"}: two users in one
 * transaction; with fail the second reuses the email, the unique index
 * refuses it and neither row stays.
 */

static ngx_int_t
ngx_social_test_pg_tx(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_str_t                     params[2];
    ngx_social_test_pg_tx_ctx_t  *tc;

    tc = ngx_pcalloc(r->pool, sizeof(ngx_social_test_pg_tx_ctx_t));
    if (tc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json_unpack(ctx->body, "{s:s%, s:s%, s?b}",
                    "username", &tc->username.data, &tc->username.len,
                    "email", &tc->email.data, &tc->email.len,
                    "fail", &tc->fail)
        != 0)
    {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "username and email are required",
                                     NULL);
    }

    tc->tx = ngx_social_pg_tx(r);
    if (tc->tx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = tc->username;
    params[1] = tc->email;

    return ngx_social_pg_query(r, tc->tx,
                               &ngx_social_test_pg_stmts[
                                   NGX_SOCIAL_TEST_PG_INSERT_USER],
                               params, 2, ngx_social_test_pg_tx_first, tc);
}


static void
ngx_social_test_pg_tx_first(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_test_pg_tx_ctx_t  *tc = data;

    u_char     *p;
    ngx_str_t   params[2];

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    p = ngx_pnalloc(r->pool, tc->username.len + 2);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    params[0].data = p;
    params[0].len = tc->username.len + 2;
    p = ngx_cpymem(p, tc->username.data, tc->username.len);
    *p++ = '_';
    *p = '2';

    if (tc->fail) {
        params[1] = tc->email;

    } else {
        p = ngx_pnalloc(r->pool, tc->email.len + 2);
        if (p == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        params[1].data = p;
        params[1].len = tc->email.len + 2;
        p = ngx_cpymem(p, "2.", 2);
        ngx_memcpy(p, tc->email.data, tc->email.len);
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, tc->tx,
                            &ngx_social_test_pg_stmts[
                                NGX_SOCIAL_TEST_PG_INSERT_USER],
                            params, 2, ngx_social_test_pg_tx_second, tc));
}


static void
ngx_social_test_pg_tx_second(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_test_pg_tx_ctx_t  *tc = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        /* finalizing without commit rolls the transaction back */
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_commit(tc->tx, ngx_social_test_pg_tx_committed, tc));
}


static void
ngx_social_test_pg_tx_committed(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_json(r, NGX_HTTP_CREATED,
                                  json_pack("{s:b}", "committed", 1)));
}


/* GET /t/whoami: authenticated (and limited), no I/O of its own */

static ngx_int_t
ngx_social_test_pg_whoami(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    return ngx_social_send_json(r, NGX_HTTP_OK,
                                json_pack("{s:I}", "user_id",
                                          (json_int_t) ctx->user_id));
}


static ngx_int_t
ngx_social_test_pg_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_social_pg_register(cf, ngx_social_test_pg_stmts,
                               sizeof(ngx_social_test_pg_stmts)
                               / sizeof(ngx_social_pg_stmt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_routes_add(cf, ngx_social_test_pg_routes,
                                 sizeof(ngx_social_test_pg_routes)
                                 / sizeof(ngx_social_route_t));
}
