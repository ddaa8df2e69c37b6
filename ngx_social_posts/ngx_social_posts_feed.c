/*
 * The home feed, GET /v1/feed: the user's own and followed users' posts
 * and shares, newest first.
 *
 * Each user's feed is cached in Redis as a sorted set
 * "social:feed:<epoch>:<id>"
 * of zero-padded post ids (equal scores, so ordered by id), at most
 * social_feed_size of them, above a marker: "0...0" when the set holds the
 * whole feed, "0...1" when older posts were cut off (those pages come
 * from PostgreSQL).  A missing set is rebuilt from PostgreSQL, stored
 * only if the feed's generation did not move meanwhile: a follow, an
 * unfollow, another rebuild, or a fan-out that found the set being
 * rebuilt ("social:feedbuild:<id>") moves it.
 *
 * A page is listed in one pipeline of plain commands under the epoch
 * this worker last saw, and its posts viewed with plain commands too
 * (ngx_social_posts_fetch.c): in the same pipeline when the worker read
 * the same page before and its ids did not change (the ids it read last
 * are a guess, believed only once the listing is the same), or in a
 * second.  The feed script, which views the posts in the same call,
 * serves what that cannot: a feed or a post not cached, a deleted post,
 * a new epoch.
 *
 * New posts go into cached feeds by fan-out on write
 * (ngx_social_posts_fanout.c).
 */

#include "ngx_social_posts.h"


#define NGX_SOCIAL_POSTS_FEED_TTL      "86400"


typedef struct {
    ngx_social_ctx_t           *ctx;
    ngx_social_list_t           list;
    ngx_str_t                   params[4];
    ngx_str_t                   gen;       /* a rebuild: data not NULL */
    ngx_str_t                   epoch;
    /* the feed script's arguments: the viewer, max, since, how many */
    const char                 *argv[4];
    size_t                      argvlen[4];

    /* the page as listed without the script */
    ngx_uint_t                  listed;    /* replies so far */
    ngx_int_t                   outcome;   /* NGX_OK: as expected */
    ngx_str_t                   marker;
    ngx_str_t                   oldest;
    ngx_social_posts_view_t    *view;

    /* the page's posts asked with its ids, as the worker last read it */
    ngx_str_t                   name;
    ngx_social_posts_view_t    *guess;
    ngx_social_posts_fetch_t   *fetch;
} ngx_social_posts_feed_ctx_t;


static ngx_int_t ngx_social_posts_feed_page(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc);
static ngx_int_t ngx_social_posts_feed_range(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc);
static ngx_uint_t ngx_social_posts_feed_listing_n(
    ngx_social_posts_feed_ctx_t *fc);
static ngx_int_t ngx_social_posts_feed_guess(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, ngx_array_t *cmds);
static void ngx_social_posts_feed_listing(redisReply *reply, void *data);
static ngx_int_t ngx_social_posts_feed_ends(ngx_social_posts_feed_ctx_t *fc,
    redisReply *reply);
static ngx_int_t ngx_social_posts_feed_members(
    ngx_social_posts_feed_ctx_t *fc, redisReply *reply);
static void ngx_social_posts_feed_listed(redisReply *reply, void *data);
static ngx_uint_t ngx_social_posts_feed_guessed(
    ngx_social_posts_feed_ctx_t *fc);
static ngx_int_t ngx_social_posts_feed_rescript(ngx_http_request_t *r,
    ngx_social_posts_view_t *v);
static ngx_int_t ngx_social_posts_feed_scripted(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc);
static void ngx_social_posts_feed_cached(redisReply *reply, void *data);
static ngx_int_t ngx_social_posts_feed_beyond(ngx_social_posts_feed_ctx_t *fc,
    ngx_uint_t n, ngx_str_t *marker, ngx_str_t *oldest);
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
static void ngx_social_posts_feed_stored(redisReply *reply, void *data);


/*
 * ARGV[1] the viewer, [2] max ("(" member or "+"), [3] since ("(" member
 * or "-"), [4] how many posts.  {0, epoch, generation}: no cached feed;
 * else {1, epoch, the marker, the oldest cached member or "", member,
 * item, member, item ...} skipping deleted posts.
 */
static ngx_social_redis_script_t  ngx_social_posts_feed_script = {
    ngx_string(NGX_SOCIAL_POSTS_LUA_VIEW
        "local fk = " NGX_SOCIAL_POSTS_LUA_FEED_KEY("viewer") " "
        "if redis.call('EXISTS', fk) == 0 then "
        "  redis.call('SET', 'social:feedbuild:' .. viewer, 1, "
        "             'PX', " NGX_SOCIAL_CACHE_GEN_TTL ") "
        "  return {0, EP, redis.call('GET', 'social:feedgen:' .. viewer) "
        "                 or '0'} "
        "end "
        "local want = tonumber(ARGV[4]) "
        "local lo = redis.call('ZRANGE', fk, 0, 1) "
        "local out = {1, EP, lo[1], lo[2] or ''} "
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
    { 0 }, 0
};


/*
 * ARGV[1] the viewer, [2] the epoch and [3] the generation seen before
 * PostgreSQL was asked, [4] the marker, then the members.  A stored
 * rebuild moves the generation: another rebuild that started as early
 * but ends later cannot replace it.
 */
static ngx_social_redis_script_t  ngx_social_posts_feed_store_script = {
    ngx_string(
        NGX_SOCIAL_POSTS_LUA_SAME_EPOCH("ARGV[2]")
        "local fk = " NGX_SOCIAL_POSTS_LUA_FEED_KEY("ARGV[1]") " "
        "local g = 'social:feedgen:' .. ARGV[1] "
        "if (redis.call('GET', g) or '0') ~= ARGV[3] then return 0 end "
        "redis.call('INCR', g) "
        "redis.call('PEXPIRE', g, " NGX_SOCIAL_CACHE_GEN_TTL ") "
        "redis.call('DEL', fk) "
        "local z = {} "
        "for i = 4, #ARGV do z[#z + 1] = 0 z[#z + 1] = ARGV[i] end "
        "redis.call('ZADD', fk, unpack(z)) "
        "redis.call('EXPIRE', fk, " NGX_SOCIAL_POSTS_FEED_TTL ") "
        "return 1"),
    { 0 }, 0
};


enum {
    NGX_SOCIAL_POSTS_FEED_REBUILD = 0,
    NGX_SOCIAL_POSTS_FEED_OLDER
};


static ngx_social_pg_stmt_t  ngx_social_posts_feed_stmts[] = {

    /* $1 the user, $2 how many, $3 below this id (or NULL): the newest */
    { ngx_string("posts_feed"),
      ngx_string("SELECT p.id::text FROM posts p "
                 "WHERE p.author_id = ANY (ARRAY(SELECT followee_id "
                 "FROM follows WHERE follower_id = $1) || $1::bigint) "
                 "AND p.deleted_at IS NULL "
                 "AND ($3::bigint IS NULL OR p.id < $3) "
                 "ORDER BY p.id DESC LIMIT $2"),
      1, 0 },

    /* a page of the feed between cursors, beyond what the cache holds */
    { ngx_string("posts_feed_page"),
      ngx_string("SELECT p.id::text FROM posts p "
                 "WHERE p.author_id = ANY (ARRAY(SELECT followee_id "
                 "FROM follows WHERE follower_id = $1) || $1::bigint) "
                 "AND p.deleted_at IS NULL "
                 "AND ($3::bigint IS NULL OR p.id < $3) "
                 "AND ($4::bigint IS NULL OR p.id > $4) "
                 "ORDER BY p.id DESC LIMIT $2"),
      1, 0 },

};


ngx_int_t
ngx_social_posts_feed_init(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_posts_feed_script)
           != NGX_OK
        || ngx_social_redis_script_register(cf,
                                        &ngx_social_posts_feed_store_script)
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


/* the page from the cached feed */

static ngx_int_t
ngx_social_posts_feed_page(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, 2 * (NGX_SOCIAL_POSTS_ID_WIDTH + 2)
                             + NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fc->argv[0] = (const char *) fc->params[0].data;
    fc->argvlen[0] = fc->params[0].len;

    fc->argv[1] = (const char *) p;

    if (fc->list.max_id.data) {
        *p++ = '(';
        p = ngx_social_posts_member(p, ngx_social_parse_id(&fc->list.max_id));

    } else {
        *p++ = '+';
    }

    fc->argvlen[1] = p - (u_char *) fc->argv[1];
    fc->argv[2] = (const char *) p;

    if (fc->list.since_id.data) {
        *p++ = '(';
        p = ngx_social_posts_member(p,
                                    ngx_social_parse_id(&fc->list.since_id));

    } else {
        *p++ = '-';
    }

    fc->argvlen[2] = p - (u_char *) fc->argv[2];
    fc->argv[3] = (const char *) p;
    p = ngx_sprintf(p, "%ui", fc->list.limit + 1);
    fc->argvlen[3] = p - (u_char *) fc->argv[3];

    if (ngx_social_posts_epoch.len == 0) {
        return ngx_social_posts_feed_scripted(r, fc);
    }

    return ngx_social_posts_feed_range(r, fc);
}


/*
 * One pipeline: the feed's marker and oldest member, the page's members
 * (ZREVRANGEBYLEX, down to the marker at most), the posts of the page as
 * this worker last read it, then the epoch: as an epoch never comes back,
 * the one the keys were named with and still current at the end was
 * current all along.  Those posts are the page's if its members are the
 * same; otherwise they are asked again, in a second round trip.
 */

static ngx_int_t
ngx_social_posts_feed_range(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc)
{
    u_char                   *key, *p;
    size_t                    len;
    ngx_int_t                 rc;
    ngx_array_t               cmds;
    ngx_social_redis_argv_t  *cmd;
    const char               *lo[4], *page[7];
    size_t                    lo_len[4], page_len[7];

    key = ngx_pnalloc(r->pool, sizeof("social:feed::")
                               + 2 * ngx_social_posts_epoch.len
                               + fc->params[0].len);
    p = ngx_pnalloc(r->pool, fc->params[0].len + 3 + fc->argvlen[1]
                             + fc->argvlen[2] + fc->argvlen[3]);

    if (key == NULL || p == NULL
        || ngx_array_init(&cmds, r->pool, 32, sizeof(ngx_social_redis_argv_t))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the page's name: the user and the page's arguments */
    fc->name.data = p;
    p = ngx_cpymem(p, fc->params[0].data, fc->params[0].len);
    *p++ = ' ';
    p = ngx_cpymem(p, fc->argv[1], fc->argvlen[1]);
    *p++ = ' ';
    p = ngx_cpymem(p, fc->argv[2], fc->argvlen[2]);
    *p++ = ' ';
    p = ngx_cpymem(p, fc->argv[3], fc->argvlen[3]);
    fc->name.len = p - fc->name.data;

    /* the epoch the keys are read under, kept for the posts' keys */
    fc->epoch.data = ngx_cpymem(key, ngx_social_posts_epoch.data,
                                ngx_social_posts_epoch.len);
    fc->epoch.len = ngx_social_posts_epoch.len;
    key = fc->epoch.data;
    fc->epoch.data -= fc->epoch.len;

    len = ngx_sprintf(key, "social:feed:%V:%V", &fc->epoch, &fc->params[0])
          - key;

    lo[0] = "ZRANGE";
    lo_len[0] = sizeof("ZRANGE") - 1;
    lo[1] = (const char *) key;
    lo_len[1] = len;
    lo[2] = "0";
    lo_len[2] = 1;
    lo[3] = "1";
    lo_len[3] = 1;

    page[0] = "ZREVRANGEBYLEX";
    page_len[0] = sizeof("ZREVRANGEBYLEX") - 1;
    page[1] = (const char *) key;
    page_len[1] = len;
    page[2] = fc->argv[1];
    page_len[2] = fc->argvlen[1];
    page[3] = fc->argv[2];
    page_len[3] = fc->argvlen[2];
    page[4] = "LIMIT";
    page_len[4] = sizeof("LIMIT") - 1;
    page[5] = "0";
    page_len[5] = 1;
    page[6] = fc->argv[3];
    page_len[6] = fc->argvlen[3];

    cmd = ngx_array_push_n(&cmds, ngx_social_posts_feed_listing_n(fc));
    if (cmd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_posts_feed_listing_n(fc) == 2) {
        cmd->argc = 4;
        cmd->argv = lo;
        cmd->argvlen = lo_len;
        cmd++;
    }

    cmd->argc = 7;
    cmd->argv = page;
    cmd->argvlen = page_len;

    rc = ngx_social_posts_feed_guess(r, fc, &cmds);
    if (rc != NGX_OK) {
        return rc;
    }

    fc->listed = 0;
    fc->outcome = NGX_OK;

    r->main->count++;

    if (ngx_social_redis_pipeline(r, cmds.elts, cmds.nelts,
                                  ngx_social_posts_feed_listing,
                                  ngx_social_posts_feed_listed, fc)
        != NGX_OK)
    {
        r->main->count--;
        return ngx_social_posts_feed_scripted(r, fc);
    }

    return NGX_DONE;
}


/*
 * The listing's commands: the marker and the oldest member matter only to
 * a page that may end above the marker (since_id), any other lists the
 * marker if it reaches it; then the page's members
 */

static ngx_uint_t
ngx_social_posts_feed_listing_n(ngx_social_posts_feed_ctx_t *fc)
{
    return fc->list.since_id.data ? 2 : 1;
}


/*
 * The commands after the listing's: those of the posts of the page as
 * the worker last read it, if it did, and the epoch's GET
 */

static ngx_int_t
ngx_social_posts_feed_guess(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, ngx_array_t *cmds)
{
    ngx_int_t                 rc;
    ngx_str_t                *page;
    ngx_uint_t                n;
    ngx_social_posts_view_t  *v;

    page = ngx_social_posts_local_named_get(&fc->name);
    n = page ? page->len / sizeof(int64_t) : 0;

    if (n > 0) {
        v = ngx_social_posts_view_create(r, fc->ctx->user_id, n);
        if (v == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v->handler = ngx_social_posts_feed_viewed;
        v->data = fc;
        ngx_memcpy(v->ids, page->data, n * sizeof(int64_t));

        rc = ngx_social_posts_fetch_prepare(v, &fc->epoch,
                                            ngx_social_posts_feed_rescript,
                                            &fc->fetch, cmds);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK) {
            fc->guess = v;
            return NGX_OK;
        }

        fc->fetch = NULL;
    }

    return ngx_social_posts_epoch_push(cmds) == NGX_OK
           ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* the marker and the oldest member, then the page's members */

static void
ngx_social_posts_feed_listing(redisReply *reply, void *data)
{
    ngx_social_posts_feed_ctx_t  *fc = data;

    if (fc->listed == ngx_social_posts_feed_listing_n(fc)) {
        if (fc->fetch) {
            ngx_social_posts_fetch_each(reply, fc->fetch);
        }

        return;
    }

    if (fc->outcome == NGX_OK) {
        fc->outcome = (fc->listed + 1 < ngx_social_posts_feed_listing_n(fc))
                      ? ngx_social_posts_feed_ends(fc, reply)
                      : ngx_social_posts_feed_members(fc, reply);
    }

    fc->listed++;
}


/* NGX_DECLINED: no cached feed (the script has it rebuilt) */

static ngx_int_t
ngx_social_posts_feed_ends(ngx_social_posts_feed_ctx_t *fc, redisReply *reply)
{
    ngx_pool_t  *pool;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        return NGX_DECLINED;
    }

    pool = fc->ctx->request->pool;

    if (ngx_social_posts_reply_str(pool, reply->element[0], &fc->marker)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (reply->elements == 1) {
        ngx_str_set(&fc->oldest, "");
        return NGX_OK;
    }

    return ngx_social_posts_reply_str(pool, reply->element[1], &fc->oldest)
           == NGX_OK ? NGX_OK : NGX_DECLINED;
}


/* the page's members, down to the marker */

static ngx_int_t
ngx_social_posts_feed_members(ngx_social_posts_feed_ctx_t *fc,
    redisReply *reply)
{
    ngx_uint_t                n;
    redisReply               *m;
    ngx_social_posts_view_t  *v;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return NGX_DECLINED;
    }

    v = ngx_social_posts_view_create(fc->ctx->request, fc->ctx->user_id,
                                     reply->elements);
    if (v == NULL) {
        return NGX_ERROR;
    }

    v->handler = ngx_social_posts_feed_viewed;
    v->data = fc;

    for (n = 0; n < reply->elements; n++) {
        m = reply->element[n];

        if (m->type != REDIS_REPLY_STRING) {
            return NGX_DECLINED;
        }

        if (fc->list.since_id.data == NULL
            && m->len == NGX_SOCIAL_POSTS_ID_WIDTH
            && (ngx_strncmp(m->str, NGX_SOCIAL_POSTS_FEED_WHOLE, m->len)
                == 0
                || ngx_strncmp(m->str, NGX_SOCIAL_POSTS_FEED_CUT, m->len)
                   == 0))
        {
            /* listed without ZRANGE: the marker is the lowest member */
            if (ngx_social_posts_reply_str(fc->ctx->request->pool, m,
                                           &fc->marker)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (m->len == fc->marker.len
            && ngx_strncmp(m->str, fc->marker.data, m->len) == 0)
        {
            break;
        }

        v->ids[n] = ngx_atoof((u_char *) m->str, m->len);

        if (v->ids[n] <= 0) {
            return NGX_DECLINED;
        }
    }

    /* neither the marker nor a whole page: no cached feed */
    if (fc->marker.len == 0 && n <= fc->list.limit) {
        return NGX_DECLINED;
    }

    v->n = n;
    fc->view = v;

    return NGX_OK;
}


/* the pipeline's last reply, the epoch: the page viewed, or the script */

static void
ngx_social_posts_feed_listed(redisReply *reply, void *data)
{
    ngx_social_posts_feed_ctx_t  *fc = data;

    ngx_int_t            rc;
    ngx_str_t            page;
    ngx_http_request_t  *r;

    r = fc->ctx->request;

    if (fc->outcome == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (fc->outcome != NGX_OK
        || fc->listed != ngx_social_posts_feed_listing_n(fc) || reply == NULL
        || !ngx_social_posts_epoch_is(reply, &fc->epoch))
    {
        /* no cached feed, or a new epoch: the script reads (and the
         * worker remembers) it */
        ngx_http_finalize_request(r, ngx_social_posts_feed_scripted(r, fc));
        return;
    }

    if (ngx_social_posts_feed_beyond(fc, fc->view->n, &fc->marker,
                                     &fc->oldest))
    {
        ngx_str_null(&fc->gen);

        rc = ngx_social_posts_feed_query(r, fc, NGX_SOCIAL_POSTS_FEED_OLDER,
                                         &fc->list.max_id,
                                         fc->list.limit + 1);

    } else if (ngx_social_posts_feed_guessed(fc)) {
        /* its posts came with it */
        ngx_social_posts_fetch_got(reply, fc->fetch);
        return;

    } else {
        if (fc->view->n > 0) {
            page.data = (u_char *) fc->view->ids;
            page.len = fc->view->n * sizeof(int64_t);
            ngx_social_posts_local_named_put(&fc->name, &page);
        }

        rc = ngx_social_posts_fetch(fc->view, &fc->epoch,
                                    ngx_social_posts_feed_rescript);
    }

    ngx_http_finalize_request(r, rc);
}


/* the page's members are those of the page the worker asked the posts of */

static ngx_uint_t
ngx_social_posts_feed_guessed(ngx_social_posts_feed_ctx_t *fc)
{
    return fc->guess != NULL && fc->guess->n == fc->view->n
           && ngx_memcmp(fc->guess->ids, fc->view->ids,
                         fc->view->n * sizeof(int64_t))
              == 0;
}


/* the fast path could not view the page: the script does it all again */

static ngx_int_t
ngx_social_posts_feed_rescript(ngx_http_request_t *r,
    ngx_social_posts_view_t *v)
{
    return ngx_social_posts_feed_scripted(r, v->data);
}


/* the page from the cached feed, in one script call */

static ngx_int_t
ngx_social_posts_feed_scripted(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc)
{
    ngx_social_redis_argv_t  args;

    args.argc = 4;
    args.argv = fc->argv;
    args.argvlen = fc->argvlen;

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
        || reply->elements < 3
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING)
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
        if (ngx_social_posts_reply_str(r->pool, reply->element[1],
                                       &fc->epoch)
               != NGX_OK
            || ngx_social_posts_reply_str(r->pool, reply->element[2],
                                          &fc->gen)
               != NGX_OK)
        {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            rc = ngx_social_posts_feed_query(r, fc,
                                             NGX_SOCIAL_POSTS_FEED_REBUILD,
                                             NULL,
                                             ngx_social_posts_feed_size());
        }

    } else {
        ngx_social_posts_epoch_seen(reply->element[1]);
        rc = ngx_social_posts_feed_items(r, fc, reply);
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * A page of n cached posts that ends inside the part of the feed the
 * cache cut off: it comes from PostgreSQL instead.
 */

static ngx_int_t
ngx_social_posts_feed_beyond(ngx_social_posts_feed_ctx_t *fc, ngx_uint_t n,
    ngx_str_t *marker, ngx_str_t *oldest)
{
    return n <= fc->list.limit
           && marker->len == sizeof(NGX_SOCIAL_POSTS_FEED_CUT) - 1
           && marker->data[marker->len - 1] == '1'
           && (fc->list.since_id.data == NULL || oldest->len == 0
               || ngx_social_parse_id(&fc->list.since_id)
                  < ngx_atoof(oldest->data, oldest->len));
}


/* the cached page: the script viewed its items */

static ngx_int_t
ngx_social_posts_feed_items(ngx_http_request_t *r,
    ngx_social_posts_feed_ctx_t *fc, redisReply *reply)
{
    ngx_uint_t                i, n;
    redisReply               *m, *marker, *oldest;
    ngx_social_posts_view_t  *v;

    marker = reply->element[2];
    oldest = reply->element[3];
    n = (reply->elements - 4) / 2;

    if (marker->type != REDIS_REPLY_STRING
        || oldest->type != REDIS_REPLY_STRING
        || reply->elements != 4 + 2 * n)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fc->marker.data = (u_char *) marker->str;
    fc->marker.len = marker->len;
    fc->oldest.data = (u_char *) oldest->str;
    fc->oldest.len = oldest->len;

    if (ngx_social_posts_feed_beyond(fc, n, &fc->marker, &fc->oldest)) {
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

    if (ngx_social_posts_view_epoch(v, reply->element[1]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < n; i++) {
        m = reply->element[4 + 2 * i];

        if (m->type != REDIS_REPLY_STRING) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v->ids[i] = ngx_atoof((u_char *) m->str, m->len);

        if (v->ids[i] == NGX_ERROR
            || ngx_social_posts_view_item(v, i, reply->element[5 + 2 * i])
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

    argv = ngx_palloc(r->pool, (n + 4) * sizeof(char *));
    argvlen = ngx_palloc(r->pool, (n + 4) * sizeof(size_t));
    p = ngx_pnalloc(r->pool, (n + 1) * NGX_SOCIAL_POSTS_ID_WIDTH);

    if (argv == NULL || argvlen == NULL || p == NULL) {
        return NGX_ERROR;
    }

    argv[0] = (const char *) fc->params[0].data;
    argvlen[0] = fc->params[0].len;
    argv[1] = (const char *) fc->epoch.data;
    argvlen[1] = fc->epoch.len;
    argv[2] = (const char *) fc->gen.data;
    argvlen[2] = fc->gen.len;

    /* fewer posts than the cache holds: the whole feed is there */
    argv[3] = ((ngx_uint_t) n < ngx_social_posts_feed_size())
              ? NGX_SOCIAL_POSTS_FEED_WHOLE : NGX_SOCIAL_POSTS_FEED_CUT;
    argvlen[3] = NGX_SOCIAL_POSTS_ID_WIDTH;

    for (row = 0; row < n; row++) {
        argv[row + 4] = (const char *) p;
        p = ngx_social_posts_member(p,
                ngx_atoof((u_char *) PQgetvalue(res, row, 0),
                          PQgetlength(res, row, 0)));
        argvlen[row + 4] = NGX_SOCIAL_POSTS_ID_WIDTH;
    }

    args.argc = n + 4;
    args.argv = argv;
    args.argvlen = argvlen;

    return ngx_social_redis_eval(NULL, &ngx_social_posts_feed_store_script,
                                 0, &args, ngx_social_posts_feed_stored,
                                 NULL);
}


static ngx_int_t
ngx_social_posts_feed_viewed(ngx_http_request_t *r,
    ngx_social_posts_view_t *v)
{
    ngx_social_posts_feed_ctx_t  *fc = v->data;

    return ngx_social_posts_send_page(r, v, &fc->list);
}


/* the feed store's answer; a lost store is only a later rebuild */

static void
ngx_social_posts_feed_stored(redisReply *reply, void *data)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: a rebuilt feed was not cached: %s",
                      reply ? reply->str : "Redis did not answer");
    }
}


ngx_uint_t
ngx_social_posts_feed_size(void)
{
    ngx_social_posts_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_social_posts_module);

    return pmcf->feed_size;
}


/* a post id as a feed member: 19 digits, zero-padded */

u_char *
ngx_social_posts_member(u_char *p, int64_t id)
{
    return ngx_sprintf(p, "%019L", id);
}
