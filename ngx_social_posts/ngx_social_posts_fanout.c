/*
 * Fan-out on write: a new post goes into the cached home feeds of its
 * author and followers (a deleted one comes out of them).
 *
 * An author with at most social_posts_sync_fanout followers gets this
 * done before the post is answered, in one script call with the
 * followers the post's own statement returned.  A larger account's
 * followers are read from PostgreSQL in batches after the answer, by a
 * per-worker queue of jobs: at most two run at once, and a post joins the
 * job of the same author waiting at the queue's end, so one pass over the
 * followers carries every post the author wrote meanwhile, however fast.
 * Should the queue still overflow, the cache epoch moves: every cached
 * feed is dropped at once and rebuilt from PostgreSQL when next read.
 */

#include "ngx_social_posts.h"


#define NGX_SOCIAL_POSTS_FANOUT_BATCH    500  /* followers per script call */
#define NGX_SOCIAL_POSTS_FANOUT_POSTS    64   /* posts per job */
#define NGX_SOCIAL_POSTS_FANOUT_RUNNING  2
#define NGX_SOCIAL_POSTS_FANOUT_QUEUED   256


typedef struct {
    ngx_queue_t                 queue;
    ngx_pool_t                 *pool;
    int64_t                     author;
    ngx_uint_t                  remove;
    ngx_uint_t                  nposts;
    ngx_str_t                   posts[NGX_SOCIAL_POSTS_FANOUT_POSTS];
    u_char                      members[NGX_SOCIAL_POSTS_FANOUT_POSTS]
                                       [NGX_SOCIAL_POSTS_ID_WIDTH];
    ngx_str_t                   params[3];
    u_char                      author_id[NGX_INT64_LEN];
    u_char                      after[NGX_INT64_LEN];
} ngx_social_posts_fanout_t;


static ngx_int_t ngx_social_posts_fanout_send(ngx_http_request_t *r,
    ngx_log_t *log, ngx_str_t *posts, ngx_uint_t nposts, ngx_str_t *author,
    ngx_str_t *users, ngx_uint_t n, ngx_uint_t remove,
    ngx_social_redis_handler_pt handler, void *data);
static void ngx_social_posts_fanout_start(void);
static void ngx_social_posts_fanout_next(ngx_social_posts_fanout_t *fo);
static void ngx_social_posts_fanout_batch(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_posts_fanout_done(ngx_social_posts_fanout_t *fo);
static void ngx_social_posts_fanout_overflow(void);
static void ngx_social_posts_fanout_logged(redisReply *reply, void *data);


/*
 * ARGV[1] "add", "add+trim" or "del", [2] the feed size, [3] a user whose
 * profile changed (or ""), [4] how many posts, then the posts (members),
 * then the users whose feeds get them.  Feeds are cut back to their size
 * only with "add+trim" (one post in ten): reads never need more than
 * the newest, and a feed a few posts over its size costs less than a cut
 * at every post.  A user whose feed is being rebuilt gets
 * its generation moved instead, so that the rebuild, which may have read
 * PostgreSQL before the posts, is not stored.
 */
static ngx_social_redis_script_t  ngx_social_posts_fanout_script = {
    ngx_string(
        NGX_SOCIAL_POSTS_LUA_EPOCH
        "local cap, n = tonumber(ARGV[2]), tonumber(ARGV[4]) "
        "local z = {} "
        "for j = 5, 4 + n do z[#z + 1] = 0 z[#z + 1] = ARGV[j] end "
        "if ARGV[3] ~= '' then redis.call('DEL', 'social:user:' .. ARGV[3]) "
        "end "
        "for i = 5 + n, #ARGV do "
        "  local k = " NGX_SOCIAL_POSTS_LUA_FEED_KEY("ARGV[i]") " "
        "  if ARGV[1] == 'del' then "
        "    for j = 5, 4 + n do redis.call('ZREM', k, ARGV[j]) end "
        "  elseif redis.call('EXISTS', k) == 1 then "
        "    redis.call('ZADD', k, unpack(z)) "
        "    local c = ARGV[1] == 'add+trim' and redis.call('ZCARD', k) or 0 "
        "    if c > cap + 1 then "
        "      redis.call('ZREMRANGEBYRANK', k, 1, c - cap - 1) "
        "      if redis.call('ZREM', k, '" NGX_SOCIAL_POSTS_FEED_WHOLE "') "
        "         == 1 then "
        "        redis.call('ZADD', k, 0, '" NGX_SOCIAL_POSTS_FEED_CUT "') "
        "      end "
        "    end "
        "  elseif redis.call('EXISTS', 'social:feedbuild:' .. ARGV[i]) "
        "         == 1 then "
        "    local g = 'social:feedgen:' .. ARGV[i] "
        "    redis.call('INCR', g) "
        "    redis.call('PEXPIRE', g, " NGX_SOCIAL_CACHE_GEN_TTL ") "
        "  end "
        "end "
        "return #ARGV - 4 - n"),
    { 0 }, 1
};


static ngx_social_pg_stmt_t  ngx_social_posts_fanout_stmts[] = {

    /* $1 the author, $2 after this follow, $3 how many: followers */
    { ngx_string("posts_followers"),
      ngx_string("SELECT follower_id::text, id::text FROM follows "
                 "WHERE followee_id = $1 AND id > $2 "
                 "ORDER BY id LIMIT $3"),
      1, 0 }
};


static ngx_queue_t  ngx_social_posts_fanout_queue;
static ngx_uint_t   ngx_social_posts_fanout_queued;
static ngx_uint_t   ngx_social_posts_fanout_running;
static ngx_str_t    ngx_social_posts_fanout_batch_size =
    ngx_string(NGX_SOCIAL_POSTS_STR(NGX_SOCIAL_POSTS_FANOUT_BATCH));


ngx_int_t
ngx_social_posts_fanout_init(ngx_conf_t *cf)
{
    if (ngx_social_redis_script_register(cf, &ngx_social_posts_fanout_script)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_queue_init(&ngx_social_posts_fanout_queue);

    return ngx_social_pg_register(cf, ngx_social_posts_fanout_stmts,
                                  sizeof(ngx_social_posts_fanout_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


/*
 * Puts post (remove: takes it out) into the cached feeds of the author
 * and of followers (a list "1,2,3", or NULL) and forgets the author's
 * cached profile; as ngx_social_redis_command() for r, handler and data.
 */

ngx_int_t
ngx_social_posts_fanout(ngx_http_request_t *r, int64_t post, int64_t author,
    ngx_str_t *followers, ngx_uint_t remove,
    ngx_social_redis_handler_pt handler, void *data)
{
    u_char       member[NGX_SOCIAL_POSTS_ID_WIDTH];
    ngx_str_t    m, *users;
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

    return ngx_social_posts_fanout_send(r, r->connection->log, &m, 1,
                                        &users[0], users, n, remove, handler,
                                        data);
}


/* the followers of a large account get post after the answer */

void
ngx_social_posts_fanout_later(int64_t post, int64_t author,
    ngx_uint_t remove)
{
    ngx_pool_t                 *pool;
    ngx_queue_t                *q;
    ngx_social_posts_fanout_t  *fo;

    fo = NULL;

    if (!ngx_queue_empty(&ngx_social_posts_fanout_queue)) {
        q = ngx_queue_last(&ngx_social_posts_fanout_queue);
        fo = ngx_queue_data(q, ngx_social_posts_fanout_t, queue);

        if (fo->author != author || fo->remove != remove
            || fo->nposts == NGX_SOCIAL_POSTS_FANOUT_POSTS)
        {
            fo = NULL;
        }
    }

    if (fo == NULL) {
        if (ngx_social_posts_fanout_queued == NGX_SOCIAL_POSTS_FANOUT_QUEUED) {
            ngx_social_posts_fanout_overflow();
            return;
        }

        pool = ngx_create_pool(1024, ngx_cycle->log);
        if (pool == NULL) {
            ngx_social_posts_fanout_overflow();
            return;
        }

        fo = ngx_pcalloc(pool, sizeof(ngx_social_posts_fanout_t));
        if (fo == NULL) {
            ngx_destroy_pool(pool);
            ngx_social_posts_fanout_overflow();
            return;
        }

        fo->pool = pool;
        fo->author = author;
        fo->remove = remove;

        fo->params[0].data = fo->author_id;
        fo->params[0].len = ngx_sprintf(fo->author_id, "%L", author)
                            - fo->author_id;
        fo->params[1].data = fo->after;
        fo->params[1].len = 1;
        fo->after[0] = '0';
        fo->params[2] = ngx_social_posts_fanout_batch_size;

        ngx_queue_insert_tail(&ngx_social_posts_fanout_queue, &fo->queue);
        ngx_social_posts_fanout_queued++;
    }

    fo->posts[fo->nposts].data = fo->members[fo->nposts];
    fo->posts[fo->nposts].len =
        ngx_social_posts_member(fo->members[fo->nposts], post)
        - fo->members[fo->nposts];
    fo->nposts++;

    ngx_social_posts_fanout_start();
}


/* jobs leave the queue when they start: a running one takes no post */

static void
ngx_social_posts_fanout_start(void)
{
    ngx_queue_t                *q;
    ngx_social_posts_fanout_t  *fo;

    while (ngx_social_posts_fanout_running < NGX_SOCIAL_POSTS_FANOUT_RUNNING
           && !ngx_queue_empty(&ngx_social_posts_fanout_queue))
    {
        q = ngx_queue_head(&ngx_social_posts_fanout_queue);
        ngx_queue_remove(q);
        ngx_social_posts_fanout_queued--;
        ngx_social_posts_fanout_running++;

        fo = ngx_queue_data(q, ngx_social_posts_fanout_t, queue);
        ngx_social_posts_fanout_next(fo);
    }
}


static void
ngx_social_posts_fanout_next(ngx_social_posts_fanout_t *fo)
{
    if (ngx_social_pg_run(&ngx_social_posts_fanout_stmts[0], fo->params, 3,
                          ngx_social_posts_fanout_batch, fo)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: a fan-out to followers stopped");
        ngx_social_posts_fanout_overflow();
        ngx_social_posts_fanout_done(fo);
    }
}


static void
ngx_social_posts_fanout_batch(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_posts_fanout_t  *fo = data;

    int         row, n;
    size_t      len;
    ngx_str_t  *users, none;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: a fan-out to followers stopped: "
                      "PostgreSQL failed");
        ngx_social_posts_fanout_overflow();
        ngx_social_posts_fanout_done(fo);
        return;
    }

    n = PQntuples(result->res);

    if (n == 0) {
        ngx_social_posts_fanout_done(fo);
        return;
    }

    users = ngx_palloc(fo->pool, n * sizeof(ngx_str_t));
    if (users == NULL) {
        ngx_social_posts_fanout_overflow();
        ngx_social_posts_fanout_done(fo);
        return;
    }

    for (row = 0; row < n; row++) {
        users[row].data = (u_char *) PQgetvalue(result->res, row, 0);
        users[row].len = PQgetlength(result->res, row, 0);
    }

    ngx_str_null(&none);

    if (ngx_social_posts_fanout_send(NULL, ngx_cycle->log, fo->posts,
                                     fo->nposts, &none, users, n, fo->remove,
                                     ngx_social_posts_fanout_logged, NULL)
        != NGX_OK)
    {
        ngx_social_posts_fanout_overflow();
        ngx_social_posts_fanout_done(fo);
        return;
    }

    if (n < NGX_SOCIAL_POSTS_FANOUT_BATCH) {
        ngx_social_posts_fanout_done(fo);
        return;
    }

    len = ngx_min((size_t) PQgetlength(result->res, n - 1, 1),
                  NGX_INT64_LEN);
    fo->params[1].len = ngx_cpymem(fo->after,
                                   PQgetvalue(result->res, n - 1, 1), len)
                        - fo->after;

    /* the pool grows by one batch of pointers, reused from here on */
    ngx_pfree(fo->pool, users);

    ngx_social_posts_fanout_next(fo);
}


static void
ngx_social_posts_fanout_done(ngx_social_posts_fanout_t *fo)
{
    ngx_destroy_pool(fo->pool);
    ngx_social_posts_fanout_running--;

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_social_posts_fanout_start();
    }
}


/*
 * A fan-out could not be done: rather than feeds without its posts, the
 * waiting jobs go and so does every cached feed (the cache epoch moves).
 */

static void
ngx_social_posts_fanout_overflow(void)
{
    ngx_queue_t                *q;
    ngx_social_posts_fanout_t  *fo;

    while (!ngx_queue_empty(&ngx_social_posts_fanout_queue)) {
        q = ngx_queue_head(&ngx_social_posts_fanout_queue);
        ngx_queue_remove(q);

        fo = ngx_queue_data(q, ngx_social_posts_fanout_t, queue);
        ngx_destroy_pool(fo->pool);
    }

    ngx_social_posts_fanout_queued = 0;

    ngx_social_posts_cache_lost();
}


/* a worker that exits leaves no fan-out half done */

void
ngx_social_posts_fanout_exit(void)
{
    if (ngx_social_posts_fanout_queued) {
        ngx_social_posts_fanout_overflow();
    }
}


static ngx_int_t
ngx_social_posts_fanout_send(ngx_http_request_t *r, ngx_log_t *log,
    ngx_str_t *posts, ngx_uint_t nposts, ngx_str_t *author, ngx_str_t *users,
    ngx_uint_t n, ngx_uint_t remove, ngx_social_redis_handler_pt handler,
    void *data)
{
    u_char                    size[NGX_INT_T_LEN], count[NGX_INT_T_LEN];
    ngx_int_t                 rc;
    ngx_str_t                 mode;
    ngx_uint_t                i, argc;
    const char              **argv;
    size_t                   *argvlen;
    ngx_social_redis_argv_t   args;

    argc = 4 + nposts + n;

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t)), log);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    argvlen = (size_t *) (argv + argc);

    if (remove) {
        ngx_str_set(&mode, "del");

    } else if (nposts > 1 || posts[0].data[posts[0].len - 1] == '0') {
        ngx_str_set(&mode, "add+trim");

    } else {
        ngx_str_set(&mode, "add");
    }

    argv[0] = (const char *) mode.data;
    argvlen[0] = mode.len;
    argv[1] = (const char *) size;
    argvlen[1] = ngx_sprintf(size, "%ui", ngx_social_posts_feed_size())
                 - size;
    argv[2] = (const char *) author->data;
    argvlen[2] = author->len;
    argv[3] = (const char *) count;
    argvlen[3] = ngx_sprintf(count, "%ui", nposts) - count;

    for (i = 0; i < nposts; i++) {
        argv[4 + i] = (const char *) posts[i].data;
        argvlen[4 + i] = posts[i].len;
    }

    for (i = 0; i < n; i++) {
        argv[4 + nposts + i] = (const char *) users[i].data;
        argvlen[4 + nposts + i] = users[i].len;
    }

    args.argc = argc;
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
        ngx_social_posts_cache_lost();
    }
}
