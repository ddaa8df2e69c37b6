/*
 * Viewing posts: a batch of ids becomes Post objects for one viewer.
 *
 * Redis holds, per post, a hash "social:post:<id>" of the parts that
 * never change (the text fragment "t", the author's id "a", the share_of
 * id "s") and a string "social:postc:<id>" of what changes: the counters
 * and the version that set them, "<lc> <sc> <rc> <version>", or "d" once
 * deleted.  Each viewer's flags (liked, shared: "00".."11") are a hash
 * "social:flags:<viewer>" by post id, and authors "social:author:<id>"
 * (every key but the authors' carries the cache epoch).  A page's
 * changing state is thus one MGET and one HMGET.  One script call views
 * a batch that is not all cached; what it misses is read from
 * PostgreSQL in one query and filled back.
 *
 * Exactness: every write of a post bumps its generation
 * ("social:postgen:<id>") after the commit and before the answer, and
 * updates the cached counters only with a newer version; a reader fills
 * only if the generation it saw before asking PostgreSQL did not move.
 * A cached post therefore never shows less than an acknowledged write.
 * A viewer's flag is set by a write of that viewer only with counters
 * newer than the cached ones, and dropped by any other write of that
 * viewer (one that cannot tell its order), so it is never stale either.
 */

#include "ngx_social_posts.h"


/* the cache epoch this worker last saw; len 0: none yet */
static u_char  ngx_social_posts_epoch_buf[NGX_INT64_LEN];
ngx_str_t      ngx_social_posts_epoch;

static const char    *ngx_social_posts_epoch_argv[] = {
    "GET", "social:epoch"
};
static const size_t   ngx_social_posts_epoch_argvlen[] = {
    sizeof("GET") - 1, sizeof("social:epoch") - 1
};


/* the last command of a pipeline read under an epoch, added to cmds */

ngx_int_t
ngx_social_posts_epoch_push(ngx_array_t *cmds)
{
    ngx_social_redis_argv_t  *cmd;

    cmd = ngx_array_push(cmds);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->argc = 2;
    cmd->argv = ngx_social_posts_epoch_argv;
    cmd->argvlen = ngx_social_posts_epoch_argvlen;

    return NGX_OK;
}


/* fields per post in a hit: t, author, lc, sc, rc, flags, share_of */
#define NGX_SOCIAL_POSTS_HIT_FIELDS  7

/* flags cached for one viewer, at most */
#define NGX_SOCIAL_POSTS_FLAGS_MAX   "10000"


static ngx_int_t ngx_social_posts_view_scripted(ngx_http_request_t *r,
    ngx_social_posts_view_t *v);
static void ngx_social_posts_fetched(redisReply *reply, void *data);
static ngx_int_t ngx_social_posts_hit(ngx_social_posts_view_t *v,
    ngx_uint_t i, redisReply *item);
static ngx_int_t ngx_social_posts_miss(ngx_social_posts_view_t *v,
    ngx_uint_t i, redisReply *item);
static void ngx_social_posts_all_missed(ngx_social_posts_view_t *v);
static void ngx_social_posts_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_posts_rows(ngx_social_posts_view_t *v,
    PGresult *res);
static ngx_int_t ngx_social_posts_row_data(PGresult *res,
    ngx_social_posts_data_t *d, int64_t id);
static int ngx_social_posts_find(PGresult *res, int col, ngx_str_t *value);
static ngx_int_t ngx_social_posts_fill(ngx_social_posts_view_t *v,
    PGresult *res);
static ngx_int_t ngx_social_posts_fill_token(ngx_array_t *args,
    ngx_str_t *token, PGresult *res);
static void ngx_social_posts_cached(redisReply *reply, void *data);
static ngx_int_t ngx_social_posts_eval(ngx_http_request_t *r,
    ngx_social_redis_script_t *script, ngx_array_t *args,
    ngx_social_redis_handler_pt handler, void *data);


/* ARGV[1]: the viewer or ""; then the ids.  {epoch, item, ...} */
static ngx_social_redis_script_t  ngx_social_posts_view_script = {
    ngx_string(NGX_SOCIAL_POSTS_LUA_VIEW
        "local out = {EP} "
        "for i = 2, #ARGV do out[i] = item(ARGV[i]) end "
        "return out"),
    { 0 }, 0
};


/*
 * ARGV[1]: the viewer, [2] the epoch the reader saw; then fills of three
 * kinds, each with the generation its reader saw:
 * "p", id, gen, text, author id, share_of, lc, sc, rc, version, deleted;
 * "a", author id, gen, JSON; "v", post id, gen, flags.
 */
static ngx_social_redis_script_t  ngx_social_posts_fill_script = {
    ngx_string(
        NGX_SOCIAL_POSTS_LUA_SAME_EPOCH("ARGV[2]")
        "local fk = " NGX_SOCIAL_POSTS_LUA_FLAGS_KEY("ARGV[1]") " "
        "local i = 3 "
        "while i <= #ARGV do "
        "  local kind, id, gen = ARGV[i], ARGV[i + 1], ARGV[i + 2] "
        "  local same = (redis.call('GET', (kind == 'a' and 'social:ugen:' "
        "                or 'social:postgen:') .. id) or '0') == gen "
        "  if same and kind == 'p' then "
        "    local k = " NGX_SOCIAL_POSTS_LUA_POST_KEY("id") " "
        "    local ck = " NGX_SOCIAL_POSTS_LUA_STATE_KEY("id") " "
        "    local c = redis.call('GET', ck) or ' -1' "
        "    if ARGV[i + 10] == '1' then "
        "      redis.call('SET', ck, 'd', 'EX', " NGX_SOCIAL_POSTS_TTL ") "
        "      redis.call('DEL', k) "
        "    elseif c ~= 'd' then "
        "      if tonumber(string.match(c, ' (%-?%d+)$')) "
        "         < tonumber(ARGV[i + 9]) then "
        "        redis.call('SET', ck, ARGV[i + 6] .. ' ' .. ARGV[i + 7] "
        "                   .. ' ' .. ARGV[i + 8] .. ' ' .. ARGV[i + 9], "
        "                   'EX', " NGX_SOCIAL_POSTS_TTL ") "
        "      end "
        "      if redis.call('EXISTS', k) == 0 then "
        "        redis.call('HSET', k, 't', ARGV[i + 3], 'a', ARGV[i + 4], "
        "                   's', ARGV[i + 5]) "
        "        redis.call('EXPIRE', k, " NGX_SOCIAL_POSTS_TTL ") "
        "      end "
        "    end "
        "  elseif same and kind == 'a' then "
        "    redis.call('SET', 'social:author:' .. id, ARGV[i + 3], "
        "               'EX', " NGX_SOCIAL_POSTS_AUTHOR_TTL ") "
        "    " NGX_SOCIAL_CACHE_LUA_AUTHORS_GEN_NX
        "  elseif same then "
        "    local n = redis.call('HLEN', fk) "
        "    if n < " NGX_SOCIAL_POSTS_FLAGS_MAX " then "
        "      redis.call('HSETNX', fk, id, ARGV[i + 3]) "
        "      if n == 0 then "
        "        redis.call('EXPIRE', fk, " NGX_SOCIAL_POSTS_TTL ") "
        "      end "
        "    end "
        "  end "
        "  i = i + (kind == 'p' and 11 or 4) "
        "end "
        "return 1"),
    { 0 }, 0
};


/*
 * A write changed a post: ARGV id, version, lc, sc, rc, deleted, and the
 * viewer whose flags the write made known (or "") with those flags.  Run
 * after the commit, before the answer.  Flags are only set with newer
 * counters: otherwise they are dropped, to be read again.
 */
static ngx_social_redis_script_t  ngx_social_posts_changed_script = {
    ngx_string(
        NGX_SOCIAL_POSTS_LUA_EPOCH
        "local k = " NGX_SOCIAL_POSTS_LUA_POST_KEY("ARGV[1]") " "
        "local ck = " NGX_SOCIAL_POSTS_LUA_STATE_KEY("ARGV[1]") " "
        "local g = 'social:postgen:' .. ARGV[1] "
        "redis.call('INCR', g) "
        "redis.call('PEXPIRE', g, " NGX_SOCIAL_CACHE_GEN_TTL ") "
        "if ARGV[6] == '1' then "
        "  redis.call('SET', ck, 'd', 'EX', " NGX_SOCIAL_POSTS_TTL ") "
        "  redis.call('DEL', k) "
        "  return 1 "
        "end "
        "local fk = ARGV[7] ~= '' and "
        NGX_SOCIAL_POSTS_LUA_FLAGS_KEY("ARGV[7]") " "
        "local ver = string.match(redis.call('GET', ck) or '', ' (%d+)$') "
        "if ver and tonumber(ver) < tonumber(ARGV[2]) then "
        "  redis.call('SET', ck, ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] "
        "             .. ' ' .. ARGV[2], 'KEEPTTL') "
        "  if fk and ARGV[8] ~= '' and redis.call('EXISTS', fk) == 1 then "
        "    redis.call('HSET', fk, ARGV[1], ARGV[8]) "
        "    return 0 "
        "  end "
        "end "
        "if fk then redis.call('HDEL', fk, ARGV[1]) end "
        "return 0"),
    { 0 }, 1
};


static ngx_social_pg_stmt_t  ngx_social_posts_view_stmts[] = {

    /* $1: '{id,...}', $2: the viewer or NULL; the posts and originals */
    { ngx_string("posts_view"),
      ngx_string("SELECT " NGX_SOCIAL_POSTS_COLUMNS("$2")
                 " FROM posts p JOIN users u ON u.id = p.author_id "
                 "WHERE p.id IN (SELECT unnest($1::bigint[]) UNION "
                 "SELECT s.share_of_id FROM posts s "
                 "WHERE s.id = ANY($1::bigint[]))"),
      1, 0 }
};


ngx_int_t
ngx_social_posts_view_init(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_posts_view_script)
           != NGX_OK
        || ngx_social_redis_script_register(cf,
                                            &ngx_social_posts_fill_script)
           != NGX_OK
        || ngx_social_redis_script_register(cf,
                                            &ngx_social_posts_changed_script)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_pg_register(cf, ngx_social_posts_view_stmts,
                                  sizeof(ngx_social_posts_view_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_social_posts_view_t *
ngx_social_posts_view_create(ngx_http_request_t *r, int64_t viewer,
    ngx_uint_t n)
{
    ngx_social_posts_view_t  *v;

    v = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_view_t));
    if (v == NULL) {
        return NULL;
    }

    v->request = r;
    v->viewer = viewer;
    v->n = n;
    v->ids = ngx_pcalloc(r->pool, (n + 1) * sizeof(int64_t));
    v->json = ngx_pcalloc(r->pool, (n + 1) * sizeof(ngx_str_t));
    v->missed = ngx_pcalloc(r->pool, n + 1);

    if (v->ids == NULL || v->json == NULL || v->missed == NULL
        || ngx_array_init(&v->tokens, r->pool, 12, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NULL;
    }

    return v;
}


/*
 * Views v->ids; v->handler is called once with the result, and what it
 * returns is finalized with.  Returns what a route handler returns.
 * Posts all cached are read with plain commands under the epoch this
 * worker last saw (ngx_social_posts_fetch.c); anything else by the view
 * script, which fills what it missed.
 */

ngx_int_t
ngx_social_posts_view(ngx_social_posts_view_t *v)
{
    ngx_str_t  epoch;

    if (v->n == 0 || ngx_social_posts_epoch.len == 0) {
        return ngx_social_posts_view_scripted(v->request, v);
    }

    /* copied: the worker's may move while the request waits */
    epoch.len = ngx_social_posts_epoch.len;
    epoch.data = ngx_pstrdup(v->request->pool, &ngx_social_posts_epoch);
    if (epoch.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_posts_fetch(v, &epoch, ngx_social_posts_view_scripted);
}


/* the epoch a script read under: the next reads are keyed by it */

void
ngx_social_posts_epoch_seen(redisReply *epoch)
{
    if (epoch->type != REDIS_REPLY_STRING
        || epoch->len > sizeof(ngx_social_posts_epoch_buf))
    {
        return;
    }

    ngx_memcpy(ngx_social_posts_epoch_buf, epoch->str, epoch->len);
    ngx_social_posts_epoch.data = ngx_social_posts_epoch_buf;
    ngx_social_posts_epoch.len = epoch->len;
}


/* GET social:epoch answered epoch (a missing key is epoch "0") */

ngx_uint_t
ngx_social_posts_epoch_is(redisReply *reply, ngx_str_t *epoch)
{
    if (reply->type == REDIS_REPLY_NIL) {
        return epoch->len == 1 && epoch->data[0] == '0';
    }

    return reply->type == REDIS_REPLY_STRING && reply->len == epoch->len
           && ngx_strncmp(reply->str, epoch->data, epoch->len) == 0;
}


/* v by the view script */

static ngx_int_t
ngx_social_posts_view_scripted(ngx_http_request_t *r,
    ngx_social_posts_view_t *v)
{
    u_char       *p;
    ngx_str_t    *s;
    ngx_uint_t    i;
    ngx_array_t   args;

    if (ngx_array_init(&args, r->pool, v->n + 1, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, (v->n + 1) * NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i <= v->n; i++) {
        s = ngx_array_push(&args);
        s->data = p;

        if (i > 0) {
            p = ngx_sprintf(p, "%L", v->ids[i - 1]);

        } else if (v->viewer) {
            p = ngx_sprintf(p, "%L", v->viewer);
        }

        s->len = p - s->data;
    }

    r->main->count++;

    if (ngx_social_posts_eval(r, &ngx_social_posts_view_script, &args,
                              ngx_social_posts_fetched, v)
        != NGX_OK)
    {
        /* Redis is away: everything from PostgreSQL, nothing filled */
        r->main->count--;
        ngx_social_posts_all_missed(v);
        return ngx_social_posts_view_load(v);
    }

    return NGX_DONE;
}


static void
ngx_social_posts_fetched(redisReply *reply, void *data)
{
    ngx_social_posts_view_t  *v = data;

    ngx_uint_t           i;
    ngx_http_request_t  *r;

    r = v->request;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != v->n + 1
        || ngx_social_posts_view_epoch(v, reply->element[0]) != NGX_OK)
    {
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "social: viewing posts in Redis: %s", reply->str);
        }

        ngx_social_posts_all_missed(v);
        ngx_http_finalize_request(r, ngx_social_posts_view_load(v));
        return;
    }

    ngx_social_posts_epoch_seen(reply->element[0]);

    for (i = 0; i < v->n; i++) {
        if (ngx_social_posts_view_item(v, i, reply->element[i + 1])
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "social: viewing posts in Redis: a malformed "
                          "answer");
            ngx_social_posts_all_missed(v);
            break;
        }
    }

    ngx_http_finalize_request(r, ngx_social_posts_view_load(v));
}


/* every item from PostgreSQL, and nothing filled back */

static void
ngx_social_posts_all_missed(ngx_social_posts_view_t *v)
{
    ngx_memset(v->missed, 1, v->n);
    v->misses = v->n;
    v->tokens.nelts = 0;
}


/* the epoch the view script read under, for the fills */

ngx_int_t
ngx_social_posts_view_epoch(ngx_social_posts_view_t *v, redisReply *epoch)
{
    return ngx_social_posts_reply_str(v->request->pool, epoch, &v->epoch);
}


/*
 * Item i as the view script answered it: {1, fields of the post [and of
 * its original]}, {0}: not found, or {2, kind, id, gen, ...}: missed.
 */

ngx_int_t
ngx_social_posts_view_item(ngx_social_posts_view_t *v, ngx_uint_t i,
    redisReply *item)
{
    if (item->type != REDIS_REPLY_ARRAY || item->elements == 0
        || item->element[0]->type != REDIS_REPLY_INTEGER)
    {
        return NGX_ERROR;
    }

    switch (item->element[0]->integer) {

    case 0:
        ngx_str_null(&v->json[i]);
        return NGX_OK;

    case 1:
        return ngx_social_posts_hit(v, i, item);

    default:
        return ngx_social_posts_miss(v, i, item);
    }
}


static ngx_int_t
ngx_social_posts_hit(ngx_social_posts_view_t *v, ngx_uint_t i,
    redisReply *item)
{
    ngx_uint_t                j, k, n;
    ngx_pool_t               *pool;
    redisReply              **e;
    ngx_social_posts_data_t  *d;

    pool = v->request->pool;
    n = (item->elements - 1) / NGX_SOCIAL_POSTS_HIT_FIELDS;

    if (n == 0 || n > 2
        || item->elements != 1 + n * NGX_SOCIAL_POSTS_HIT_FIELDS)
    {
        return NGX_ERROR;
    }

    d = ngx_pcalloc(pool, 2 * sizeof(ngx_social_posts_data_t));
    if (d == NULL) {
        return NGX_ERROR;
    }

    d[0].id = v->ids[i];

    for (j = 0; j < n; j++) {
        k = 1 + j * NGX_SOCIAL_POSTS_HIT_FIELDS;
        e = &item->element[k];

        if (ngx_social_posts_reply_str(pool, e[0], &d[j].text) != NGX_OK
            || ngx_social_posts_reply_str(pool, e[1], &d[j].author)
               != NGX_OK
            || ngx_social_posts_reply_str(pool, e[2], &d[j].likes) != NGX_OK
            || ngx_social_posts_reply_str(pool, e[3], &d[j].shares)
               != NGX_OK
            || ngx_social_posts_reply_str(pool, e[4], &d[j].replies)
               != NGX_OK
            || ngx_social_posts_reply_str(pool, e[5], &d[j].flags) != NGX_OK
            || d[j].flags.len != 2
            || e[6]->type != REDIS_REPLY_STRING)
        {
            return NGX_ERROR;
        }
    }

    if (n == 2) {
        e = &item->element[NGX_SOCIAL_POSTS_HIT_FIELDS];
        d[1].id = ngx_atoof((u_char *) e[0]->str, e[0]->len);
        d[0].share_of = &d[1];
    }

    return ngx_social_posts_assemble(pool, d, &v->json[i]);
}


static ngx_int_t
ngx_social_posts_miss(ngx_social_posts_view_t *v, ngx_uint_t i,
    redisReply *item)
{
    ngx_str_t   *s;
    ngx_uint_t   j;

    if ((item->elements - 1) % 3 != 0) {
        return NGX_ERROR;
    }

    v->missed[i] = 1;
    v->misses++;

    for (j = 1; j < item->elements; j++) {
        s = ngx_array_push(&v->tokens);

        if (s == NULL
            || ngx_social_posts_reply_str(v->request->pool, item->element[j],
                                          s)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The missed items from PostgreSQL, then the handler.  Returns what a
 * route handler returns.
 */

ngx_int_t
ngx_social_posts_view_load(ngx_social_posts_view_t *v)
{
    u_char              *p;
    ngx_uint_t           i;
    ngx_str_t           *params;
    ngx_http_request_t  *r;

    r = v->request;

    if (v->misses == 0) {
        return v->handler(r, v);
    }

    params = ngx_palloc(r->pool, 2 * sizeof(ngx_str_t));
    p = ngx_pnalloc(r->pool, 2 + (v->misses + 1) * NGX_INT64_LEN);

    if (params == NULL || p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0].data = p;
    *p++ = '{';

    for (i = 0; i < v->n; i++) {
        if (v->missed[i]) {
            p = ngx_sprintf(p, "%L,", v->ids[i]);
        }
    }

    p[-1] = '}';
    params[0].len = p - params[0].data;

    if (v->viewer) {
        params[1].data = p;
        params[1].len = ngx_sprintf(p, "%L", v->viewer) - p;

    } else {
        ngx_str_null(&params[1]);
    }

    return ngx_social_pg_query(r, NULL, &ngx_social_posts_view_stmts[0],
                               params, 2, ngx_social_posts_loaded, v);
}


static void
ngx_social_posts_loaded(ngx_http_request_t *r, ngx_social_pg_result_t *result,
    void *data)
{
    ngx_social_posts_view_t  *v = data;

    ngx_int_t  rc;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    rc = ngx_social_posts_rows(v, result->res);

    ngx_http_finalize_request(r, rc == NGX_OK ? v->handler(r, v) : rc);
}


/* the missed items from the rows of the view statement, filled back */

static ngx_int_t
ngx_social_posts_rows(ngx_social_posts_view_t *v, PGresult *res)
{
    ngx_uint_t                i;
    ngx_pool_t               *pool;
    ngx_social_posts_data_t   d[2];

    pool = v->request->pool;

    for (i = 0; i < v->n; i++) {
        if (!v->missed[i]) {
            continue;
        }

        ngx_memzero(d, sizeof(d));

        if (ngx_social_posts_row_data(res, d, v->ids[i]) != NGX_OK) {
            ngx_str_null(&v->json[i]);
            continue;
        }

        /* the rows end with the callback: the text is copied */
        if (ngx_social_posts_assemble(pool, d, &v->json[i]) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (v->tokens.nelts && ngx_social_posts_fill(v, res) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, v->request->connection->log, 0,
                      "social: viewed posts were not cached");
    }

    return NGX_OK;
}


/*
 * d[0] from the row of id, and d[1] from its original's: NGX_DECLINED
 * when the post or its original does not exist or was deleted.
 */

static ngx_int_t
ngx_social_posts_row_data(PGresult *res, ngx_social_posts_data_t *d,
    int64_t id)
{
    int         row;
    u_char      buf[NGX_INT64_LEN];
    ngx_str_t   key;
    ngx_uint_t  j;

    key.data = buf;
    key.len = ngx_sprintf(buf, "%L", id) - buf;

    for (j = 0; j < 2; j++) {
        row = ngx_social_posts_find(res, NGX_SOCIAL_POSTS_COL_ID, &key);

        if (row < 0
            || *PQgetvalue(res, row, NGX_SOCIAL_POSTS_COL_DELETED) == '1')
        {
            return NGX_DECLINED;
        }

        d[j].id = ngx_atoof(key.data, key.len);

        d[j].text.data = (u_char *) PQgetvalue(res, row,
                                               NGX_SOCIAL_POSTS_COL_TEXT);
        d[j].text.len = PQgetlength(res, row, NGX_SOCIAL_POSTS_COL_TEXT);
        d[j].author.data = (u_char *) PQgetvalue(res, row,
                                                 NGX_SOCIAL_POSTS_COL_AUTHOR);
        d[j].author.len = PQgetlength(res, row, NGX_SOCIAL_POSTS_COL_AUTHOR);
        d[j].likes.data = (u_char *) PQgetvalue(res, row,
                                                NGX_SOCIAL_POSTS_COL_LIKES);
        d[j].likes.len = PQgetlength(res, row, NGX_SOCIAL_POSTS_COL_LIKES);
        d[j].shares.data = (u_char *) PQgetvalue(res, row,
                                                 NGX_SOCIAL_POSTS_COL_SHARES);
        d[j].shares.len = PQgetlength(res, row, NGX_SOCIAL_POSTS_COL_SHARES);
        d[j].replies.data = (u_char *)
                            PQgetvalue(res, row, NGX_SOCIAL_POSTS_COL_REPLIES);
        d[j].replies.len = PQgetlength(res, row,
                                       NGX_SOCIAL_POSTS_COL_REPLIES);

        if (PQgetisnull(res, row, NGX_SOCIAL_POSTS_COL_FLAGS)) {
            ngx_str_set(&d[j].flags, "00");

        } else {
            d[j].flags.data = (u_char *)
                              PQgetvalue(res, row, NGX_SOCIAL_POSTS_COL_FLAGS);
            d[j].flags.len = 2;
        }

        if (PQgetisnull(res, row, NGX_SOCIAL_POSTS_COL_SHARE_OF)) {
            break;
        }

        if (j == 1) {
            /* an original is never a share itself */
            return NGX_DECLINED;
        }

        key.data = (u_char *) PQgetvalue(res, row,
                                         NGX_SOCIAL_POSTS_COL_SHARE_OF);
        key.len = PQgetlength(res, row, NGX_SOCIAL_POSTS_COL_SHARE_OF);
        d[0].share_of = &d[1];
    }

    return NGX_OK;
}


static int
ngx_social_posts_find(PGresult *res, int col, ngx_str_t *value)
{
    int  row, n;

    n = PQntuples(res);

    for (row = 0; row < n; row++) {
        if ((size_t) PQgetlength(res, row, col) == value->len
            && ngx_strncmp(PQgetvalue(res, row, col), value->data,
                           value->len)
               == 0)
        {
            return row;
        }
    }

    return -1;
}


/* what the view script missed, from the rows, in the background */

static ngx_int_t
ngx_social_posts_fill(ngx_social_posts_view_t *v, PGresult *res)
{
    u_char       *p;
    ngx_str_t    *s, *t;
    ngx_uint_t    i;
    ngx_array_t   args;

    if (ngx_array_init(&args, v->request->pool, 64, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s = ngx_array_push(&args);
    p = ngx_pnalloc(v->request->pool, NGX_INT64_LEN);

    if (s == NULL || p == NULL) {
        return NGX_ERROR;
    }

    s->data = p;
    s->len = ngx_sprintf(p, "%L", v->viewer) - p;

    s = ngx_array_push(&args);
    if (s == NULL) {
        return NGX_ERROR;
    }

    *s = v->epoch;

    t = v->tokens.elts;

    for (i = 0; i + 2 < v->tokens.nelts; i += 3) {
        if (ngx_social_posts_fill_token(&args, &t[i], res) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (args.nelts == 2) {
        return NGX_OK;
    }

    return ngx_social_posts_eval(NULL, &ngx_social_posts_fill_script, &args,
                                 ngx_social_posts_cached, NULL);
}


/* the fill arguments of one missed piece (kind, id, gen) from its row */

static ngx_int_t
ngx_social_posts_fill_token(ngx_array_t *args, ngx_str_t *token,
    PGresult *res)
{
    int         row, i, n, cols[9];
    ngx_str_t  *s;

    switch (token[0].data[0]) {

    case 'p':
        row = ngx_social_posts_find(res, NGX_SOCIAL_POSTS_COL_ID, &token[1]);
        cols[0] = NGX_SOCIAL_POSTS_COL_TEXT;
        cols[1] = NGX_SOCIAL_POSTS_COL_AUTHOR_ID;
        cols[2] = NGX_SOCIAL_POSTS_COL_SHARE_OF;
        cols[3] = NGX_SOCIAL_POSTS_COL_LIKES;
        cols[4] = NGX_SOCIAL_POSTS_COL_SHARES;
        cols[5] = NGX_SOCIAL_POSTS_COL_REPLIES;
        cols[6] = NGX_SOCIAL_POSTS_COL_VERSION;
        cols[7] = NGX_SOCIAL_POSTS_COL_DELETED;
        n = 8;
        break;

    case 'a':
        row = ngx_social_posts_find(res, NGX_SOCIAL_POSTS_COL_AUTHOR_ID,
                                    &token[1]);
        cols[0] = NGX_SOCIAL_POSTS_COL_AUTHOR;
        n = 1;
        break;

    default:
        row = ngx_social_posts_find(res, NGX_SOCIAL_POSTS_COL_ID, &token[1]);
        cols[0] = NGX_SOCIAL_POSTS_COL_FLAGS;
        n = 1;
        break;
    }

    if (row < 0 || PQgetisnull(res, row, cols[n - 1])) {
        /* no such post (never cached as missing), or no viewer */
        return NGX_OK;
    }

    s = ngx_array_push_n(args, 3 + n);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s[0] = token[0];
    s[1] = token[1];
    s[2] = token[2];

    for (i = 0; i < n; i++) {
        s[3 + i].data = (u_char *) PQgetvalue(res, row, cols[i]);
        s[3 + i].len = PQgetlength(res, row, cols[i]);
    }

    return NGX_OK;
}


static void
ngx_social_posts_cached(redisReply *reply, void *data)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: posts were not cached: %s",
                      reply ? reply->str : "Redis did not answer");
    }
}


/*
 * A write changed a post: change holds the columns of
 * NGX_SOCIAL_POSTS_CHANGE; the viewer whose flags it changed (0: none)
 * has them now as flags, or unknown when flags is empty: they are then
 * dropped, to be read again.  As ngx_social_redis_eval() for r, handler
 * and data.
 */

ngx_int_t
ngx_social_posts_changed(ngx_http_request_t *r, ngx_str_t *change,
    int64_t viewer, ngx_str_t *flags, ngx_social_redis_handler_pt handler,
    void *data)
{
    u_char       *p;
    ngx_str_t    *s;
    ngx_array_t   args;

    if (ngx_array_init(&args, r->pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    s = ngx_array_push_n(&args, 8);
    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);

    if (s == NULL || p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s, change, NGX_SOCIAL_POSTS_NCHANGE * sizeof(ngx_str_t));

    s[6].data = p;
    s[6].len = viewer ? ngx_sprintf(p, "%L", viewer) - p : 0;
    s[7] = *flags;

    return ngx_social_posts_eval(r, &ngx_social_posts_changed_script, &args,
                                 handler, data);
}


/*
 * n columns from col of row, copied (the result ends with its callback);
 * NGX_DECLINED when the first is NULL (then s[0].data is NULL).
 */

ngx_int_t
ngx_social_posts_copy(ngx_pool_t *pool, PGresult *res, int row, int col,
    ngx_uint_t n, ngx_str_t *s)
{
    ngx_uint_t  i;

    ngx_memzero(s, n * sizeof(ngx_str_t));

    if (PQntuples(res) <= row || PQgetisnull(res, row, col)) {
        return NGX_DECLINED;
    }

    for (i = 0; i < n; i++) {
        s[i].len = PQgetlength(res, row, col + i);
        s[i].data = ngx_pnalloc(pool, s[i].len + 1);

        if (s[i].data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(s[i].data, PQgetvalue(res, row, col + i), s[i].len);
        s[i].data[s[i].len] = '\0';
    }

    return NGX_OK;
}


/* every post of v from the rows of a statement with the view's columns */

ngx_int_t
ngx_social_posts_view_result(ngx_social_posts_view_t *v, PGresult *res)
{
    ngx_memset(v->missed, 1, v->n);
    v->misses = v->n;

    return ngx_social_posts_rows(v, res);
}


/*
 * {"id", "author", "text", "created_at", "reply_to_id", "share_of",
 * "likes_count", "shares_count", "replies_count", "liked", "shared"}
 */

ngx_int_t
ngx_social_posts_assemble(ngx_pool_t *pool, ngx_social_posts_data_t *d,
    ngx_str_t *out)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   share_of, *f;

    static ngx_str_t  ngx_social_posts_flags[] = {
        ngx_string(",\"liked\":false,\"shared\":false}"),
        ngx_string(",\"liked\":false,\"shared\":true}"),
        ngx_string(",\"liked\":true,\"shared\":false}"),
        ngx_string(",\"liked\":true,\"shared\":true}")
    };

    if (d->share_of != NULL) {
        if (ngx_social_posts_assemble(pool, d->share_of, &share_of)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        ngx_str_set(&share_of, "null");
    }

    len = sizeof("{\"id\":\"\",\"author\":,,\"share_of\":,"
                 "\"likes_count\":,\"shares_count\":,\"replies_count\":,"
                 "\"liked\":false,\"shared\":false}")
          + NGX_INT64_LEN + d->author.len + d->text.len + share_of.len
          + d->likes.len + d->shares.len + d->replies.len;

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    /* piece by piece: for every post of every page, cheaper than a format */
    p = ngx_cpymem(out->data, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
    p = ngx_social_posts_id_cpy(p, d->id);
    p = ngx_cpymem(p, "\",\"author\":", sizeof("\",\"author\":") - 1);
    p = ngx_cpymem(p, d->author.data, d->author.len);
    *p++ = ',';
    p = ngx_cpymem(p, d->text.data, d->text.len);
    p = ngx_cpymem(p, ",\"share_of\":", sizeof(",\"share_of\":") - 1);
    p = ngx_cpymem(p, share_of.data, share_of.len);
    p = ngx_cpymem(p, ",\"likes_count\":", sizeof(",\"likes_count\":") - 1);
    p = ngx_cpymem(p, d->likes.data, d->likes.len);
    p = ngx_cpymem(p, ",\"shares_count\":",
                   sizeof(",\"shares_count\":") - 1);
    p = ngx_cpymem(p, d->shares.data, d->shares.len);
    p = ngx_cpymem(p, ",\"replies_count\":",
                   sizeof(",\"replies_count\":") - 1);
    p = ngx_cpymem(p, d->replies.data, d->replies.len);

    f = &ngx_social_posts_flags[(d->flags.data[0] == '1') * 2
                                + (d->flags.data[1] == '1')];
    p = ngx_cpymem(p, f->data, f->len);

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * The viewed posts as a page of l: v->n is at most l->limit + 1 and the
 * extra one only tells that a next page exists.
 */

ngx_int_t
ngx_social_posts_send_page(ngx_http_request_t *r, ngx_social_posts_view_t *v,
    ngx_social_list_t *l)
{
    ngx_str_t   next;
    ngx_uint_t  n;

    n = v->n;
    ngx_str_null(&next);

    if (n > l->limit) {
        n = l->limit;
        next.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (next.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        next.len = ngx_sprintf(next.data, "%L", v->ids[n - 1]) - next.data;
    }

    /* assembled compact: PostgreSQL's to_json() and our own text */
    return ngx_social_send_items(r, l, v->json, n, &next, 0);
}


/* a string of a reply, copied: the reply ends with its callback */

ngx_int_t
ngx_social_posts_reply_str(ngx_pool_t *pool, redisReply *reply, ngx_str_t *s)
{
    if (reply->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    s->len = reply->len;
    s->data = ngx_pnalloc(pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, reply->str, s->len);

    return NGX_OK;
}


static ngx_int_t
ngx_social_posts_eval(ngx_http_request_t *r, ngx_social_redis_script_t *script,
    ngx_array_t *args, ngx_social_redis_handler_pt handler, void *data)
{
    ngx_str_t                *s;
    ngx_uint_t                i;
    const char              **argv;
    size_t                   *argvlen;
    ngx_social_redis_argv_t   cmd;

    s = args->elts;

    argv = ngx_palloc(args->pool, args->nelts * sizeof(char *));
    argvlen = ngx_palloc(args->pool, args->nelts * sizeof(size_t));

    if (argv == NULL || argvlen == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < args->nelts; i++) {
        argv[i] = (const char *) s[i].data;
        argvlen[i] = s[i].len;
    }

    cmd.argc = args->nelts;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    return ngx_social_redis_eval(r, script, 0, &cmd, handler, data);
}
