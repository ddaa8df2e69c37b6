/*
 * The home feed, GET /v1/feed: the user's own and followed users' posts
 * and shares, newest first.
 *
 * Each user's feed is cached in Redis as a sorted set "social:feed:<id>"
 * of zero-padded post ids (equal scores, so ordered by id), at most
 * social_feed_size of them, above a marker: "0...0" when the set holds the
 * whole feed, "0...1" when older posts were cut off (those pages come
 * from PostgreSQL).  A missing set is rebuilt from PostgreSQL, stored
 * only if the feed's generation did not move meanwhile (a follow, an
 * unfollow or a fan-out that found no set bumps it).
 *
 * Fan-out on write: a new post goes into the cached feeds of its author
 * and followers.  For authors with at most social_posts_sync_fanout
 * followers this happens before the post is answered (their followers'
 * next reads show it); for larger accounts the followers are read from
 * PostgreSQL in batches after the answer, so posting stays fast however
 * many followers there are.
 */

#include "ngx_social_posts.h"


#define NGX_SOCIAL_POSTS_FEED_WHOLE   "0000000000000000000"
#define NGX_SOCIAL_POSTS_FEED_CUT     "0000000000000000001"

#define NGX_SOCIAL_POSTS_FANOUT_BATCH  500   /* followers per script call */
#define NGX_SOCIAL_POSTS_FEED_TTL      "86400"


typedef struct {
    ngx_social_ctx_t           *ctx;
    ngx_social_list_t           list;
    ngx_str_t                   params[4];
    ngx_str_t                   gen;
} ngx_social_posts_feed_ctx_t;


/* a fan-out of one post to a large account's followers, after the answer */
typedef struct {
    ngx_pool_t                 *pool;
    ngx_str_t                   member;
    ngx_str_t                   params[3];
    u_char                      author[NGX_INT64_LEN];
    u_char                      after[NGX_INT64_LEN];
    u_char                      batch[NGX_INT_T_LEN];
    ngx_uint_t                  remove;
} ngx_social_posts_fanout_t;


static ngx_int_t ngx_social_posts_feed_page(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc);
static void ngx_social_posts_feed_cached(redisReply *reply, void *data);
static ngx_int_t ngx_social_posts_feed_items(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, redisReply *reply);
static ngx_int_t ngx_social_posts_feed_query(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, ngx_uint_t stmt, ngx_str_t *max_id,
    ngx_uint_t want);
static void ngx_social_posts_feed_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static ngx_int_t ngx_social_posts_feed_store(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, PGresult *res);
static ngx_int_t ngx_social_posts_feed_viewed(ngx_http_request_t *r,
    ngx_social_posts_view_t *v);
static ngx_int_t ngx_social_posts_fanout_send(ngx_log_t *log,
    ngx_str_t *member, ngx_str_t *author, ngx_str_t *users, ngx_uint_t n,
    ngx_uint_t remove, ngx_http_request_t *r,
    ngx_social_redis_handler_pt handler, void *data);
static void ngx_social_posts_fanout_next(ngx_social_posts_fanout_t *fo);
static void ngx_social_posts_fanout_batch(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_posts_fanout_logged(redisReply *reply, void *data);
static ngx_uint_t ngx_social_posts_feed_size(void);
static u_char *ngx_social_posts_member(u_char *p, int64_t id);


/*
 * ARGV[1] the viewer, [2] max ("(" member or "+"), [3] since ("(" member
 * or "-"), [4] how many posts.  {0, generation}: no cached feed; else {1,
 * the marker, the oldest cached member or "", member, item, member, item
 * ...} skipping deleted posts.
 */
static ngx_social_redis_script_t  ngx_social_posts_feed_script = {
    ngx_string(NGX_SOCIAL_POSTS_LUA_VIEW
        "local fk = 'social:feed:' .. viewer "
        "if redis.call('EXISTS', fk) == 0 then "
        "  return {0, redis.call('GET', 'social:feedgen:' .. viewer) "
        "             or '0'} "
        "end "
        "local want = tonumber(ARGV[4]) "
        "local lo = redis.call('ZRANGE', fk, 0, 1) "
        "local out = {1, lo[1], lo[2] or ''} "
        "local hi = ARGV[2] "
        "local got = 0 "
        "while got < want do "
        "  local ask = want - got "
        "  local ids = redis.call('ZREVRANGEBYLEX', fk, hi, ARGV[3], "
        "                         'LIMIT', 0, ask) "
        "  for _, m in ipairs(ids) do "
        "    if m == lo[1] then return out end "
        "    local it = item(string.match(m, '^0*(%d+)$')) "
        "    if it[1] ~= 0 then "
        "      out[#out + 1] = m "
        "      out[#out + 1] = it "
        "      got = got + 1 "
        "    end "
        "    hi = '(' .. m "
        "  end "
        "  if #ids < ask then break end "
        "end "
        "return out"),
    { 0 }
};


/*
 * ARGV[1] the viewer, [2] the generation seen before PostgreSQL was
 * asked, [3] the marker, then the members.
 */
static ngx_social_redis_script_t  ngx_social_posts_feed_store_script = {
    ngx_string(
        "local fk = 'social:feed:' .. ARGV[1] "
        "if (redis.call('GET', 'social:feedgen:' .. ARGV[1]) or '0') "
        "   ~= ARGV[2] then return 0 end "
        "redis.call('DEL', fk) "
        "local z = {} "
        "for i = 3, #ARGV do z[#z + 1] = 0 z[#z + 1] = ARGV[i] end "
        "redis.call('ZADD', fk, unpack(z)) "
        "redis.call('EXPIRE', fk, " NGX_SOCIAL_POSTS_FEED_TTL ") "
        "return 1"),
    { 0 }
};


/*
 * ARGV[1] "add" or "del", [2] the member, [3] the feed size, [4] a user
 * whose profile changed (or ""), then the users whose feeds get it.  A
 * user with no cached feed gets its generation bumped instead, so that a
 * rebuild running meanwhile is not stored without the post.
 */
static ngx_social_redis_script_t  ngx_social_posts_fanout_script = {
    ngx_string(
        "local m, cap = ARGV[2], tonumber(ARGV[3]) "
        "if ARGV[4] ~= '' then redis.call('DEL', 'social:user:' .. ARGV[4]) "
        "end "
        "for i = 5, #ARGV do "
        "  local k = 'social:feed:' .. ARGV[i] "
        "  if ARGV[1] == 'del' then "
        "    redis.call('ZREM', k, m) "
        "  elseif redis.call('EXISTS', k) == 1 then "
        "    redis.call('ZADD', k, 0, m) "
        "    local n = redis.call('ZCARD', k) "
        "    if n > cap + 1 then "
        "      redis.call('ZREMRANGEBYRANK', k, 1, n - cap - 1) "
        "      if redis.call('ZREM', k, '" NGX_SOCIAL_POSTS_FEED_WHOLE "') "
        "         == 1 then "
        "        redis.call('ZADD', k, 0, '" NGX_SOCIAL_POSTS_FEED_CUT "') "
        "      end "
        "    end "
        "  else "
        "    local g = 'social:feedgen:' .. ARGV[i] "
        "    redis.call('INCR', g) "
        "    redis.call('PEXPIRE', g, " NGX_SOCIAL_CACHE_GEN_TTL ") "
        "  end "
        "end "
        "return #ARGV - 4"),
    { 0 }
};


enum {
    NGX_SOCIAL_POSTS_FEED_REBUILD = 0,
    NGX_SOCIAL_POSTS_FEED_OLDER,
    NGX_SOCIAL_POSTS_FEED_FOLLOWERS
};


static ngx_social_pg_stmt_t  ngx_social_posts_feed_stmts[] = {

    /* $1 the user, $2 how many, $3 below this id (or NULL): the newest */
    { ngx_string("posts_feed"),
      ngx_string("SELECT p.id::text FROM posts p "
                 "WHERE p.author_id IN (SELECT followee_id FROM follows "
                 "WHERE follower_id = $1 UNION ALL SELECT $1) "
                 "AND p.deleted_at IS NULL "
                 "AND ($3::bigint IS NULL OR p.id < $3) "
                 "ORDER BY p.id DESC LIMIT $2"),
      1, 0 },

    /* a page of the feed between cursors, beyond what the cache holds */
    { ngx_string("posts_feed_page"),
      ngx_string("SELECT p.id::text FROM posts p "
                 "WHERE p.author_id IN (SELECT followee_id FROM follows "
                 "WHERE follower_id = $1 UNION ALL SELECT $1) "
                 "AND p.deleted_at IS NULL "
                 "AND ($3::bigint IS NULL OR p.id < $3) "
                 "AND ($4::bigint IS NULL OR p.id > $4) "
                 "ORDER BY p.id DESC LIMIT $2"),
      1, 0 },

    /* $1 the author, $2 after this follow, $3 how many: followers */
    { ngx_string("posts_followers"),
      ngx_string("SELECT follower_id::text, id::text FROM follows "
                 "WHERE followee_id = $1 AND id > $2 "
                 "ORDER BY id LIMIT $3"),
      1, 0 }
};


ngx_int_t
ngx_social_posts_feed_init(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_posts_feed_script)
           != NGX_OK
        || ngx_social_redis_script_register(cf,
                                        &ngx_social_posts_feed_store_script)
           != NGX_OK
        || ngx_social_redis_script_register(cf,
                                            &ngx_social_posts_fanout_script)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_social_pg_register(cf, ngx_social_posts_feed_stmts,
                                  sizeof(ngx_social_posts_feed_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_posts_feed(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                       *fields;
    ngx_social_posts_feed_ctx_t  *fc;

    fc = ngx_pcalloc(r->pool, sizeof(ngx_social_posts_feed_ctx_t));
    fields = ngx_social_json_owned(r, json_object());

    if (fc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_list_args(r, &fc->list, fields) != NGX_OK) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the list arguments are invalid",
                                     json_incref(fields));
    }

    fc->ctx = ctx;

    if (ngx_social_posts_id_str(r, ctx->user_id, &fc->params[0]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_posts_feed_page(r, fc);
}


/* the page from the cached feed, in one script call */

static ngx_int_t
ngx_social_posts_feed_page(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc)
{
    u_char                   *p;
    const char               *argv[4];
    size_t                    argvlen[4];
    ngx_social_redis_argv_t   args;

    p = ngx_pnalloc(r->pool, 2 * (NGX_SOCIAL_POSTS_ID_WIDTH + 2)
                             + NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = (const char *) fc->params[0].data;
    argvlen[0] = fc->params[0].len;

    argv[1] = (const char *) p;

    if (fc->list.max_id.data) {
        *p++ = '(';
        p = ngx_social_posts_member(p, ngx_social_parse_id(&fc->list.max_id));

    } else {
        *p++ = '+';
    }

    argvlen[1] = p - (u_char *) argv[1];
    argv[2] = (const char *) p;

    if (fc->list.since_id.data) {
        *p++ = '(';
        p = ngx_social_posts_member(p,
                                    ngx_social_parse_id(&fc->list.since_id));

    } else {
        *p++ = '-';
    }

    argvlen[2] = p - (u_char *) argv[2];
    argv[3] = (const char *) p;
    p = ngx_sprintf(p, "%ui", fc->list.limit + 1);
    argvlen[3] = p - (u_char *) argv[3];

    args.argc = 4;
    args.argv = argv;
    args.argvlen = argvlen;

    r->main->count++;

    if (ngx_social_redis_eval(r, &ngx_social_posts_feed_script, 0, &args,
                              ngx_social_posts_feed_cached, fc)
        != NGX_OK)
    {
        /* Redis is away: the page from PostgreSQL, not stored */
        r->main->count--;
        ngx_str_null(&fc->gen);

        return ngx_social_posts_feed_query(r, fc,
                                           NGX_SOCIAL_POSTS_FEED_OLDER,
                                           &fc->list.max_id,
                                           fc->list.limit + 1);
    }

    return NGX_DONE;
}


static void
ngx_social_posts_feed_cached(redisReply *reply, void *data)
{
    ngx_social_posts_feed_ctx_t  *fc = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = fc->ctx->request;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "social: the feed in Redis: %s", reply->str);
        }

        ngx_str_null(&fc->gen);
        rc = ngx_social_posts_feed_query(r, fc, NGX_SOCIAL_POSTS_FEED_OLDER,
                                         &fc->list.max_id,
                                         fc->list.limit + 1);

    } else if (reply->element[0]->integer == 0) {
        /* no cached feed: rebuilt from PostgreSQL, then stored */
        fc->gen.len = reply->element[1]->len;
        fc->gen.data = ngx_pnalloc(r->pool, fc->gen.len + 1);

        if (fc->gen.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            ngx_memcpy(fc->gen.data, reply->element[1]->str, fc->gen.len);
            rc = ngx_social_posts_feed_query(r, fc,
                                             NGX_SOCIAL_POSTS_FEED_REBUILD,
                                             NULL,
                                             ngx_social_posts_feed_size());
        }

    } else {
        rc = ngx_social_posts_feed_items(r, fc, reply);
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The cached page: the script viewed its items.  When the page ends
 * inside the part of the feed the cache cut off, it comes from
 * PostgreSQL instead.
 */

static ngx_int_t
ngx_social_posts_feed_items(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, redisReply *reply)
{
    ngx_uint_t                i, n;
    redisReply               *m, *marker, *oldest;
    ngx_social_posts_view_t  *v;

    marker = reply->element[1];
    oldest = reply->element[2];
    n = (reply->elements - 3) / 2;

    if (marker->type != REDIS_REPLY_STRING
        || oldest->type != REDIS_REPLY_STRING
        || reply->elements != 3 + 2 * n)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (n <= fc->list.limit
        && marker->len == sizeof(NGX_SOCIAL_POSTS_FEED_CUT) - 1
        && marker->str[marker->len - 1] == '1'
        && (fc->list.since_id.data == NULL || oldest->len == 0
            || ngx_social_parse_id(&fc->list.since_id)
               < ngx_atoof((u_char *) oldest->str, oldest->len)))
    {
        ngx_str_null(&fc->gen);

        return ngx_social_posts_feed_query(r, fc,
                                           NGX_SOCIAL_POSTS_FEED_OLDER,
                                           &fc->list.max_id,
                                           fc->list.limit + 1);
    }

    v = ngx_social_posts_view_create(r, fc->ctx->user_id, n);
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v->handler = ngx_social_posts_feed_viewed;
    v->data = fc;

    for (i = 0; i < n; i++) {
        m = reply->element[3 + 2 * i];

        if (m->type != REDIS_REPLY_STRING) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v->ids[i] = ngx_atoof((u_char *) m->str, m->len);

        if (v->ids[i] == NGX_ERROR
            || ngx_social_posts_view_item(v, i, reply->element[4 + 2 * i])
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_social_posts_view_load(v);
}


static ngx_int_t
ngx_social_posts_feed_query(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, ngx_uint_t stmt, ngx_str_t *max_id,
    ngx_uint_t want)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fc->params[1].data = p;
    fc->params[1].len = ngx_sprintf(p, "%ui", want) - p;

    if (max_id != NULL) {
        fc->params[2] = *max_id;

    } else {
        ngx_str_null(&fc->params[2]);
    }

    fc->params[3] = fc->list.since_id;

    return ngx_social_pg_query(r, NULL, &ngx_social_posts_feed_stmts[stmt],
                               fc->params, stmt ? 4 : 3,
                               ngx_social_posts_feed_loaded, fc);
}


/*
 * Ids from PostgreSQL: a rebuild is stored (if nothing moved meanwhile)
 * and the page is cut from it, unless the page goes past it; a page
 * asked for is the page.
 */

static void
ngx_social_posts_feed_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_feed_ctx_t  *fc = data;

    int                       row, n;
    int64_t                   id, max, since;
    ngx_social_posts_view_t  *v;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    n = PQntuples(result->res);

    max = fc->list.max_id.data ? ngx_social_parse_id(&fc->list.max_id)
                               : NGX_MAX_OFF_T_VALUE;
    since = fc->list.since_id.data ? ngx_social_parse_id(&fc->list.since_id)
                                   : 0;

    v = ngx_social_posts_view_create(r, fc->ctx->user_id, n);
    if (v == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    v->handler = ngx_social_posts_feed_viewed;
    v->data = fc;
    v->n = 0;

    for (row = 0; row < n && v->n <= fc->list.limit; row++) {
        id = ngx_atoof((u_char *) PQgetvalue(result->res, row, 0),
                       PQgetlength(result->res, row, 0));

        if (id < max && id > since) {
            v->ids[v->n++] = id;
        }
    }

    if (fc->gen.data != NULL) {
        if (ngx_social_posts_feed_store(r, fc, result->res) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "social: a rebuilt feed was not cached");
        }

        ngx_str_null(&fc->gen);

        if (v->n <= fc->list.limit
            && (ngx_uint_t) n >= ngx_social_posts_feed_size())
        {
            /* the page reaches past the rebuilt part */
            ngx_http_finalize_request(r,
                ngx_social_posts_feed_query(r, fc,
                                            NGX_SOCIAL_POSTS_FEED_OLDER,
                                            &fc->list.max_id,
                                            fc->list.limit + 1));
            return;
        }
    }

    ngx_http_finalize_request(r, ngx_social_posts_view(v));
}


static ngx_int_t
ngx_social_posts_feed_store(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, PGresult *res)
{
    int                       row, n;
    u_char                   *p;
    const char              **argv;
    size_t                   *argvlen;
    ngx_social_redis_argv_t   args;

    n = PQntuples(res);

    argv = ngx_palloc(r->pool, (n + 3) * sizeof(char *));
    argvlen = ngx_palloc(r->pool, (n + 3) * sizeof(size_t));
    p = ngx_pnalloc(r->pool, (n + 1) * NGX_SOCIAL_POSTS_ID_WIDTH);

    if (argv == NULL || argvlen == NULL || p == NULL) {
        return NGX_ERROR;
    }

    argv[0] = (const char *) fc->params[0].data;
    argvlen[0] = fc->params[0].len;
    argv[1] = (const char *) fc->gen.data;
    argvlen[1] = fc->gen.len;

    /* fewer posts than the cache holds: the whole feed is there */
    argv[2] = ((ngx_uint_t) n < ngx_social_posts_feed_size())
              ? NGX_SOCIAL_POSTS_FEED_WHOLE : NGX_SOCIAL_POSTS_FEED_CUT;
    argvlen[2] = NGX_SOCIAL_POSTS_ID_WIDTH;

    for (row = 0; row < n; row++) {
        argv[row + 3] = (const char *) p;
        p = ngx_social_posts_member(p,
                ngx_atoof((u_char *) PQgetvalue(res, row, 0),
                          PQgetlength(res, row, 0)));
        argvlen[row + 3] = NGX_SOCIAL_POSTS_ID_WIDTH;
    }

    args.argc = n + 3;
    args.argv = argv;
    args.argvlen = argvlen;

    return ngx_social_redis_eval(NULL, &ngx_social_posts_feed_store_script,
                                 0, &args, ngx_social_posts_fanout_logged,
                                 NULL);
}


static ngx_int_t
ngx_social_posts_feed_viewed(ngx_http_request_t *r,
    ngx_social_posts_view_t *v)
{
    ngx_social_posts_feed_ctx_t  *fc = v->data;

    return ngx_social_posts_send_page(r, v, &fc->list);
}


/*
 * Puts post (remove: takes it out) into the cached feeds of the author
 * and of followers (a comma-separated list, or NULL) and forgets the
 * author's cached profile; as ngx_social_redis_command() for r, handler
 * and data.
 */

ngx_int_t
ngx_social_posts_fanout(ngx_http_request_t *r, int64_t post, int64_t author,
    ngx_str_t *followers, ngx_uint_t remove,
    ngx_social_redis_handler_pt handler, void *data)
{
    u_char       member[NGX_SOCIAL_POSTS_ID_WIDTH];
    ngx_str_t    m, a, *users;
    ngx_uint_t   n;

    m.data = member;
    m.len = ngx_social_posts_member(member, post) - member;

    /* the author first, then the followers */
    users = ngx_social_posts_split(r->pool, followers, 1, &n);

    if (users == NULL || ngx_social_posts_id_str(r, author, &users[0])
                         != NGX_OK)
    {
        return NGX_ERROR;
    }

    a = users[0];

    return ngx_social_posts_fanout_send(r->connection->log, &m, &a, users, n,
                                        remove, r, handler, data);
}


/*
 * The rest of a large account's followers, after the answer: they are
 * read from PostgreSQL in batches, each batch one script call.
 */

void
ngx_social_posts_fanout_later(int64_t post, int64_t author,
    ngx_uint_t remove)
{
    ngx_pool_t                 *pool;
    ngx_social_posts_fanout_t  *fo;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    fo = ngx_pcalloc(pool, sizeof(ngx_social_posts_fanout_t));
    if (fo == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    fo->pool = pool;
    fo->remove = remove;
    fo->member.data = ngx_pnalloc(pool, NGX_SOCIAL_POSTS_ID_WIDTH);

    if (fo->member.data == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    fo->member.len = ngx_social_posts_member(fo->member.data, post)
                     - fo->member.data;

    fo->params[0].data = fo->author;
    fo->params[0].len = ngx_sprintf(fo->author, "%L", author) - fo->author;
    fo->params[1].data = fo->after;
    fo->params[1].len = 1;
    fo->after[0] = '0';
    fo->params[2].data = fo->batch;
    fo->params[2].len = ngx_sprintf(fo->batch, "%ui",
                                    (ngx_uint_t)
                                    NGX_SOCIAL_POSTS_FANOUT_BATCH)
                        - fo->batch;

    ngx_social_posts_fanout_next(fo);
}


static void
ngx_social_posts_fanout_next(ngx_social_posts_fanout_t *fo)
{
    if (ngx_social_pg_run(&ngx_social_posts_feed_stmts[
                              NGX_SOCIAL_POSTS_FEED_FOLLOWERS],
                          fo->params, 3, ngx_social_posts_fanout_batch, fo)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: a fan-out to followers stopped");
        ngx_destroy_pool(fo->pool);
    }
}


static void
ngx_social_posts_fanout_batch(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_fanout_t  *fo = data;

    int         row, n;
    ngx_str_t  *users, none;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: a fan-out to followers stopped: "
                      "PostgreSQL failed");
        ngx_destroy_pool(fo->pool);
        return;
    }

    n = PQntuples(result->res);

    if (n == 0) {
        ngx_destroy_pool(fo->pool);
        return;
    }

    users = ngx_palloc(fo->pool, n * sizeof(ngx_str_t));
    if (users == NULL) {
        ngx_destroy_pool(fo->pool);
        return;
    }

    for (row = 0; row < n; row++) {
        users[row].data = (u_char *) PQgetvalue(result->res, row, 0);
        users[row].len = PQgetlength(result->res, row, 0);
    }

    ngx_str_null(&none);

    (void) ngx_social_posts_fanout_send(ngx_cycle->log, &fo->member, &none,
                                        users, n, fo->remove, NULL,
                                        ngx_social_posts_fanout_logged,
                                        NULL);

    if (n < NGX_SOCIAL_POSTS_FANOUT_BATCH) {
        ngx_destroy_pool(fo->pool);
        return;
    }

    fo->params[1].len = ngx_cpymem(fo->after,
                                   PQgetvalue(result->res, n - 1, 1),
                                   ngx_min((size_t)
                                           PQgetlength(result->res, n - 1, 1),
                                           NGX_INT64_LEN))
                        - fo->after;

    ngx_social_posts_fanout_next(fo);
}


static ngx_int_t
ngx_social_posts_fanout_send(ngx_log_t *log, ngx_str_t *member,
    ngx_str_t *author, ngx_str_t *users, ngx_uint_t n, ngx_uint_t remove,
    ngx_http_request_t *r, ngx_social_redis_handler_pt handler, void *data)
{
    u_char                    size[NGX_INT_T_LEN];
    ngx_int_t                 rc;
    ngx_uint_t                i;
    const char              **argv;
    size_t                   *argvlen;
    ngx_social_redis_argv_t   args;

    argv = ngx_alloc((n + 4) * (sizeof(char *) + sizeof(size_t)), log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + n + 4);

    argv[0] = remove ? "del" : "add";
    argvlen[0] = 3;
    argv[1] = (const char *) member->data;
    argvlen[1] = member->len;
    argv[2] = (const char *) size;
    argvlen[2] = ngx_sprintf(size, "%ui", ngx_social_posts_feed_size())
                 - size;
    argv[3] = (const char *) author->data;
    argvlen[3] = author->len;

    for (i = 0; i < n; i++) {
        argv[i + 4] = (const char *) users[i].data;
        argvlen[i + 4] = users[i].len;
    }

    args.argc = n + 4;
    args.argv = argv;
    args.argvlen = argvlen;

    rc = ngx_social_redis_eval(r, &ngx_social_posts_fanout_script, 0, &args,
                               handler, data);

    ngx_free(argv);

    return rc;
}


static void
ngx_social_posts_fanout_logged(redisReply *reply, void *data)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: feeds were not updated: %s",
                      reply ? reply->str : "Redis did not answer");
    }
}


static ngx_uint_t
ngx_social_posts_feed_size(void)
{
    ngx_social_posts_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_social_posts_module);

    return pmcf->feed_size;
}


/* a post id as a feed member: 19 digits, zero-padded */

static u_char *
ngx_social_posts_member(u_char *p, int64_t id)
{
    return ngx_sprintf(p, "%019L", id);
}
