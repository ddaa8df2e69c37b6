/*
 * Public profiles: GET /v1/users/{id} where {id} is an id or @username.
 *
 * The public view of a user by id is cached in Redis ("social:user:<id>",
 * 60 s) and invalidated by every write that changes it before that write
 * is answered (ngx_social_cache_forget()); a reader that missed fills
 * only if the user's generation did not move while it asked PostgreSQL.
 * With Redis down, profiles are read from PostgreSQL.  The expiry only
 * bounds what a write made while Redis was away may leave.
 */

#include "ngx_social_users.h"


#define NGX_SOCIAL_USERS_CACHE_TTL  "60"


typedef struct {
    ngx_str_t                   id;        /* digits, when known */
    ngx_str_t                   gen;       /* seen before a miss's query */
    ngx_str_t                   json;      /* what the writer answers */
    ngx_uint_t                  status;
} ngx_social_users_profile_ctx_t;


/* ARGV[1] the id: the cached view, or {the generation} */
static ngx_social_redis_script_t  ngx_social_users_profile_fetch = {
    ngx_string(
        "local v = redis.call('GET', 'social:user:' .. ARGV[1]) "
        "if v then return v end "
        "return {redis.call('GET', 'social:ugen:' .. ARGV[1]) or '0'}"),
    { 0 }, 0
};


/* ARGV[1] the id, [2] the generation seen before the query, [3] view */
static ngx_social_redis_script_t  ngx_social_users_profile_fill = {
    ngx_string(
        "if (redis.call('GET', 'social:ugen:' .. ARGV[1]) or '0') "
        "   ~= ARGV[2] then return 0 end "
        "redis.call('SET', 'social:user:' .. ARGV[1], ARGV[3], "
        "           'EX', " NGX_SOCIAL_USERS_CACHE_TTL ") "
        "return 1"),
    { 0 }, 0
};


static ngx_int_t ngx_social_users_profile_query(ngx_http_request_t *r,
    ngx_social_users_profile_ctx_t *pc, ngx_uint_t by_name,
    ngx_str_t *param);
static void ngx_social_users_profile_cached(redisReply *reply, void *data);
static void ngx_social_users_profile_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_profile_stored(redisReply *reply, void *data);
static void ngx_social_users_uncached(redisReply *reply, void *data);


static ngx_social_pg_stmt_t  ngx_social_users_profile_stmts[] = {

    { ngx_string("users_profile_by_id"),
      ngx_string("SELECT id::text, " NGX_SOCIAL_SQL_USER_PUBLIC
                 " FROM users WHERE id = $1"),
      1, 0 },

    { ngx_string("users_profile_by_name"),
      ngx_string("SELECT id::text, " NGX_SOCIAL_SQL_USER_PUBLIC
                 " FROM users WHERE lower(username) = lower($1)"),
      1, 0 }
};


ngx_int_t
ngx_social_users_profile_init(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_users_profile_fetch)
           != NGX_OK
        || ngx_social_redis_script_register(cf,
                                            &ngx_social_users_profile_fill)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_pg_register(cf, ngx_social_users_profile_stmts,
                                  sizeof(ngx_social_users_profile_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_users_profile(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_str_t                       *arg, name;
    ngx_social_redis_argv_t          cmd;
    ngx_social_users_profile_ctx_t  *pc;
    const char                      *argv[1];
    size_t                           argvlen[1];

    arg = &ctx->params[0];

    pc = ngx_pcalloc(r->pool, sizeof(ngx_social_users_profile_ctx_t));
    if (pc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (arg->len > 1 && arg->data[0] == '@') {
        name.data = arg->data + 1;
        name.len = arg->len - 1;

        return ngx_social_users_profile_query(r, pc, 1, &name);
    }

    if (ngx_social_parse_id(arg) == NGX_ERROR) {
        return ngx_social_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such user", NULL);
    }

    pc->id = *arg;

    argv[0] = (const char *) arg->data;
    argvlen[0] = arg->len;

    cmd.argc = 1;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    r->main->count++;

    if (ngx_social_redis_eval(r, &ngx_social_users_profile_fetch, 0, &cmd,
                              ngx_social_users_profile_cached, r)
        != NGX_OK)
    {
        r->main->count--;
        return ngx_social_users_profile_query(r, pc, 0, &pc->id);
    }

    ngx_http_set_ctx(r, pc, ngx_social_users_module);

    return NGX_DONE;
}


static ngx_int_t
ngx_social_users_profile_query(ngx_http_request_t *r,
    ngx_social_users_profile_ctx_t *pc, ngx_uint_t by_name, ngx_str_t *param)
{
    return ngx_social_pg_query(r, NULL, &ngx_social_users_profile_stmts[
                                            by_name ? 1 : 0],
                               param, 1, ngx_social_users_profile_loaded,
                               pc);
}


/*
 * A hit is the answer; a miss (with the generation to fill under), or
 * Redis away, asks PostgreSQL.
 */

static void
ngx_social_users_profile_cached(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    ngx_str_t                        json;
    redisReply                      *gen;
    ngx_social_users_profile_ctx_t  *pc;

    pc = ngx_http_get_module_ctx(r, ngx_social_users_module);

    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 1
        && reply->element[0]->type == REDIS_REPLY_STRING)
    {
        gen = reply->element[0];
        pc->gen.data = ngx_pnalloc(r->pool, gen->len + 1);

        if (pc->gen.data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        pc->gen.len = ngx_cpymem(pc->gen.data, gen->str, gen->len)
                      - pc->gen.data;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        ngx_http_finalize_request(r,
            ngx_social_users_profile_query(r, pc, 0, &pc->id));
        return;
    }

    json.len = reply->len;
    json.data = ngx_pnalloc(r->pool, json.len);

    if (json.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(json.data, reply->str, json.len);

    ngx_http_finalize_request(r, ngx_social_send_json_text(r, NGX_HTTP_OK,
                                                           &json));
}


static void
ngx_social_users_profile_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_profile_ctx_t  *pc = data;

    ngx_social_redis_argv_t  cmd;
    const char              *argv[3];
    size_t                   argvlen[3];

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

    if (pc->gen.data != NULL) {
        /* for the next reader, unless a write moved the generation */
        argv[0] = (const char *) pc->id.data;
        argvlen[0] = pc->id.len;
        argv[1] = (const char *) pc->gen.data;
        argvlen[1] = pc->gen.len;
        argv[2] = PQgetvalue(result->res, 0, 1);
        argvlen[2] = PQgetlength(result->res, 0, 1);

        cmd.argc = 3;
        cmd.argv = argv;
        cmd.argvlen = argvlen;

        (void) ngx_social_redis_eval(NULL, &ngx_social_users_profile_fill, 0,
                                     &cmd, ngx_social_users_profile_stored,
                                     NULL);
    }

    ngx_http_finalize_request(r, ngx_social_pg_send_json(r, NGX_HTTP_OK,
                                                         result->res, 0, 1));
}


static void
ngx_social_users_profile_stored(redisReply *reply, void *data)
{
    /* a cache fill that failed is only a later miss */
}


/*
 * A write changed these users' public views (and, with feeds, the home
 * feeds of the first ones): the cached copies are invalidated, then the
 * write is answered with column 0 of res (copied now: res ends with the
 * caller's callback).
 */

ngx_int_t
ngx_social_users_uncache_and_send(ngx_http_request_t *r, ngx_str_t *ids,
    ngx_uint_t n, ngx_uint_t feeds, ngx_uint_t status, PGresult *res)
{
    ngx_social_users_profile_ctx_t  *pc;

    pc = ngx_pcalloc(r->pool, sizeof(ngx_social_users_profile_ctx_t));
    if (pc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->status = status;
    pc->json.len = PQgetlength(res, 0, 0);
    pc->json.data = ngx_pnalloc(r->pool, pc->json.len);

    if (pc->json.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(pc->json.data, PQgetvalue(res, 0, 0), pc->json.len);

    ngx_http_set_ctx(r, pc, ngx_social_users_module);

    r->main->count++;

    if (ngx_social_cache_forget(r, ids, n, ids, feeds,
                                ngx_social_users_uncached, r)
        != NGX_OK)
    {
        r->main->count--;
        return ngx_social_send_json_text(r, status, &pc->json);
    }

    return NGX_DONE;
}


static void
ngx_social_users_uncached(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    ngx_social_users_profile_ctx_t  *pc;

    pc = ngx_http_get_module_ctx(r, ngx_social_users_module);

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "social: cached views could not be invalidated; "
                      "they expire within " NGX_SOCIAL_USERS_CACHE_TTL " s");
    }

    ngx_http_finalize_request(r, ngx_social_send_json_text(r, pc->status,
                                                           &pc->json));
}
