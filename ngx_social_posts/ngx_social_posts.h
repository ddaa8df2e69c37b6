/*
 * Internal declarations of the posts module.
 */

#ifndef _NGX_SOCIAL_POSTS_H_INCLUDED_
#define _NGX_SOCIAL_POSTS_H_INCLUDED_


#include <ngx_social_core.h>


#define NGX_SOCIAL_POSTS_MAX_TEXT      5000    /* characters */
#define NGX_SOCIAL_POSTS_MAX_MENTIONS  10
#define NGX_SOCIAL_POSTS_ID_WIDTH      19      /* digits, zero-padded */

/* feed markers: the cache holds the whole feed, or was cut off */
#define NGX_SOCIAL_POSTS_FEED_WHOLE    "0000000000000000000"
#define NGX_SOCIAL_POSTS_FEED_CUT      "0000000000000000001"

#define NGX_SOCIAL_POSTS_STR_(n)       #n
#define NGX_SOCIAL_POSTS_STR(n)        NGX_SOCIAL_POSTS_STR_(n)

/*
 * Lua: the keys of cached posts and feeds carry the cache epoch
 * ("social:epoch"), which moves when cache updates were lost: then every
 * cached post and feed is gone at once (see ngx_social_posts_module.c).
 */
#define NGX_SOCIAL_POSTS_LUA_EPOCH                                           \
    "local EP = redis.call('GET', 'social:epoch') or '0' "                   \
    "local E = EP .. ':' "

/* Lua: a fill stops unless the epoch it read under (ARGV[n]) is current */
#define NGX_SOCIAL_POSTS_LUA_SAME_EPOCH(n)                                   \
    NGX_SOCIAL_POSTS_LUA_EPOCH "if EP ~= " n " then return 0 end "
#define NGX_SOCIAL_POSTS_LUA_POST_KEY(id)  "'social:post:' .. E .. " id
#define NGX_SOCIAL_POSTS_LUA_STATE_KEY(id) "'social:postc:' .. E .. " id
#define NGX_SOCIAL_POSTS_LUA_FLAGS_KEY(v)  "('social:flags:' .. E .. " v ")"
#define NGX_SOCIAL_POSTS_LUA_FEED_KEY(id)  "'social:feed:' .. E .. " id

/* a cached post, and a cached author, how long (s) */
#define NGX_SOCIAL_POSTS_TTL           "600"
#define NGX_SOCIAL_POSTS_AUTHOR_TTL    "60"

/*
 * SQL: what a change of post p tells its cached copy, as named columns
 * (in RETURNING), and those columns of a relation c in this order
 */
#define NGX_SOCIAL_POSTS_CHANGE(p)                                           \
    p ".id::text AS c_id, " p ".version AS c_ver, "                          \
    p ".likes_count AS c_lc, " p ".shares_count AS c_sc, "                   \
    p ".replies_count AS c_rc, (" p ".deleted_at IS NOT NULL)::int AS c_del"

#define NGX_SOCIAL_POSTS_CHANGED(c)                                          \
    c ".c_id, " c ".c_ver, " c ".c_lc, " c ".c_sc, " c ".c_rc, " c ".c_del"

#define NGX_SOCIAL_POSTS_NCHANGE       6


/*
 * SQL: the columns a post is viewed from, for posts row p by users row u
 * and the viewer $V (NULL: anonymous), in the order of the view's columns
 */
#define NGX_SOCIAL_POSTS_COLUMNS(viewer)                                     \
    "p.id::text, p.author_id::text, " NGX_SOCIAL_SQL_ACTOR("u") ", "         \
    "'\"text\":' || to_json(p.text)::text || ',\"created_at\":\"' || "       \
    NGX_SOCIAL_SQL_TIME("p.created_at") " || '\",\"reply_to_id\":' || "      \
    "COALESCE('\"' || p.reply_to_id::text || '\"', 'null'), "               \
    "p.share_of_id::text, p.likes_count, p.shares_count, p.replies_count, "  \
    "p.version, (p.deleted_at IS NOT NULL)::int, "                           \
    "CASE WHEN " viewer "::bigint IS NULL THEN NULL ELSE "                   \
    "EXISTS (SELECT 1 FROM likes l WHERE l.post_id = p.id "                  \
    "AND l.user_id = " viewer ")::int::text || "                             \
    "EXISTS (SELECT 1 FROM posts s WHERE s.share_of_id = p.id "              \
    "AND s.author_id = " viewer " AND s.deleted_at IS NULL)::int::text END"

enum {
    NGX_SOCIAL_POSTS_COL_ID = 0,
    NGX_SOCIAL_POSTS_COL_AUTHOR_ID,
    NGX_SOCIAL_POSTS_COL_AUTHOR,
    NGX_SOCIAL_POSTS_COL_TEXT,
    NGX_SOCIAL_POSTS_COL_SHARE_OF,
    NGX_SOCIAL_POSTS_COL_LIKES,
    NGX_SOCIAL_POSTS_COL_SHARES,
    NGX_SOCIAL_POSTS_COL_REPLIES,
    NGX_SOCIAL_POSTS_COL_VERSION,
    NGX_SOCIAL_POSTS_COL_DELETED,
    NGX_SOCIAL_POSTS_COL_FLAGS,
    NGX_SOCIAL_POSTS_NCOLS
};


typedef struct {
    ngx_uint_t                  sync_fanout;
    ngx_uint_t                  feed_size;
    size_t                      local_cache;
    ngx_str_t                   sync_fanout_arg;
    u_char                      sync_fanout_buf[NGX_INT_T_LEN];
} ngx_social_posts_main_conf_t;


/* the answer to a write, held until the cache updates before it are done */
typedef struct {
    ngx_http_request_t         *request;
    ngx_uint_t                  status;
    ngx_str_t                   body;
    ngx_uint_t                  pending;
    /* instead of the body: what a route handler returns */
    ngx_int_t                 (*then)(ngx_http_request_t *r, void *data);
    void                       *data;
} ngx_social_posts_answer_t;


/* what a write's commit leaves to do for the feeds and the streams */
typedef struct {
    ngx_str_t                   followers; /* "1,2,3"; data NULL: none */
    ngx_uint_t                  nfollowers;
    ngx_str_t                   events;    /* "user event\n..." */
} ngx_social_posts_after_t;


/* what a post is viewed from: JSON fragments and figures */
typedef struct ngx_social_posts_data_s  ngx_social_posts_data_t;

struct ngx_social_posts_data_s {
    int64_t                     id;
    ngx_str_t                   text;      /* "text":..,"created_at":.. */
    ngx_str_t                   author;    /* {"id","username",..} */
    ngx_str_t                   likes;
    ngx_str_t                   shares;
    ngx_str_t                   replies;
    ngx_str_t                   flags;     /* "00".."11": liked, shared */
    ngx_social_posts_data_t    *share_of;
};


typedef struct ngx_social_posts_view_s  ngx_social_posts_view_t;

/* returns what a route handler returns */
typedef ngx_int_t (*ngx_social_posts_viewed_pt)(ngx_http_request_t *r,
    ngx_social_posts_view_t *v);

/*
 * A batch of posts to view for one viewer: in ids, out json (each item's
 * Post; len 0 when the post does not exist or was deleted).
 */
struct ngx_social_posts_view_s {
    ngx_http_request_t         *request;
    int64_t                     viewer;    /* 0: anonymous */
    ngx_uint_t                  n;
    int64_t                    *ids;
    ngx_str_t                  *json;
    ngx_social_posts_viewed_pt  handler;
    void                       *data;

    u_char                     *missed;    /* per item */
    ngx_uint_t                  misses;
    ngx_array_t                 tokens;    /* ngx_str_t: kind, id, gen */
    ngx_str_t                   epoch;     /* the tokens were read under */
};


/*
 * Lua shared by the scripts that view posts: item(id) answers {1, the
 * post's t, author, lc, sc, rc, flags, share_of [, the same of the
 * original]}, {0} when it is deleted (or its original is), or {2, kind,
 * id, generation, ...}: what was missed.  ARGV[1] is the viewer or "".
 */
#define NGX_SOCIAL_POSTS_LUA_VIEW                                            \
    NGX_SOCIAL_POSTS_LUA_EPOCH                                               \
    "local viewer = ARGV[1] "                                                \
    "local fk = viewer ~= '' and "                                           \
    NGX_SOCIAL_POSTS_LUA_FLAGS_KEY("viewer") " "                             \
    "local authors = {} "                                                    \
    "local function miss(m, kind, id, g) "                                   \
    "  m[#m + 1] = kind "                                                    \
    "  m[#m + 1] = id "                                                      \
    "  m[#m + 1] = redis.call('GET', g .. id) or '0' "                       \
    "end "                                                                   \
    "local function post(id, m) "                                            \
    "  local c = redis.call('GET', " NGX_SOCIAL_POSTS_LUA_STATE_KEY("id")     \
    ") "                                                                     \
    "  if c == 'd' then return 0 end "                                       \
    "  local h = redis.call('HMGET', " NGX_SOCIAL_POSTS_LUA_POST_KEY("id")    \
    ", 't', 'a', 's') "                                                      \
    "  local lc, sc, rc "                                                    \
    "  if c then "                                                           \
    "    lc, sc, rc = string.match(c, '^(%d+) (%d+) (%d+) %d+$') "           \
    "  end "                                                                 \
    "  if not (lc and h[1] and h[2]) then "                                  \
    "    miss(m, 'p', id, 'social:postgen:') "                               \
    "    return nil "                                                        \
    "  end "                                                                 \
    "  local a = authors[h[2]] "                                             \
    "  if not a then "                                                       \
    "    a = redis.call('GET', 'social:author:' .. h[2]) "                   \
    "    if a then authors[h[2]] = a "                                       \
    "    else miss(m, 'a', h[2], 'social:ugen:') end "                       \
    "  end "                                                                 \
    "  local f = '00' "                                                      \
    "  if fk then "                                                          \
    "    f = redis.call('HGET', fk, id) "                                    \
    "    if not f then miss(m, 'v', id, 'social:postgen:') end "             \
    "  end "                                                                 \
    "  return {h[1], a or '', lc, sc, rc, f or '', h[3] or ''} "             \
    "end "                                                                   \
    "local function item(id) "                                               \
    "  local m = {} "                                                        \
    "  local p = post(id, m) "                                               \
    "  if p == 0 then return {0} end "                                       \
    "  local o "                                                             \
    "  if p and p[7] ~= '' then "                                            \
    "    o = post(p[7], m) "                                                 \
    "    if o == 0 then return {0} end "                                     \
    "  end "                                                                 \
    "  local r = {#m > 0 and 2 or 1} "                                       \
    "  for _, x in ipairs(#m > 0 and m or p) do r[#r + 1] = x end "          \
    "  if #m == 0 and o then "                                               \
    "    for _, x in ipairs(o) do r[#r + 1] = x end "                        \
    "  end "                                                                 \
    "  return r "                                                            \
    "end "


extern ngx_module_t  ngx_social_posts_module;
extern ngx_str_t     ngx_social_posts_none;
extern ngx_str_t     ngx_social_posts_epoch;   /* the worker saw last */


/* viewing (ngx_social_posts_view.c) */
ngx_int_t ngx_social_posts_view_init(ngx_conf_t *cf);
ngx_social_posts_view_t *ngx_social_posts_view_create(ngx_http_request_t *r,
    int64_t viewer, ngx_uint_t n);
ngx_int_t ngx_social_posts_view(ngx_social_posts_view_t *v);
void ngx_social_posts_epoch_seen(redisReply *epoch);
ngx_uint_t ngx_social_posts_epoch_is(redisReply *reply, ngx_str_t *epoch);
ngx_int_t ngx_social_posts_epoch_push(ngx_array_t *cmds);
ngx_int_t ngx_social_posts_view_item(ngx_social_posts_view_t *v,
    ngx_uint_t i, redisReply *item);
ngx_int_t ngx_social_posts_view_epoch(ngx_social_posts_view_t *v,
    redisReply *epoch);
ngx_int_t ngx_social_posts_view_load(ngx_social_posts_view_t *v);
ngx_int_t ngx_social_posts_view_result(ngx_social_posts_view_t *v,
    PGresult *res);
ngx_int_t ngx_social_posts_changed(ngx_http_request_t *r, ngx_str_t *change,
    int64_t viewer, ngx_str_t *flags, ngx_social_redis_handler_pt handler,
    void *data);
ngx_int_t ngx_social_posts_copy(ngx_pool_t *pool, PGresult *res, int row,
    int col, ngx_uint_t n, ngx_str_t *s);
ngx_int_t ngx_social_posts_send_page(ngx_http_request_t *r,
    ngx_social_posts_view_t *v, ngx_social_list_t *l);
ngx_int_t ngx_social_posts_assemble(ngx_pool_t *pool,
    ngx_social_posts_data_t *d, ngx_str_t *out);
ngx_int_t ngx_social_posts_reply_str(ngx_pool_t *pool, redisReply *reply,
    ngx_str_t *s);

/* a post's parts that never change, as a worker keeps them */
typedef struct {
    int64_t                     author;
    int64_t                     share_of;  /* 0: not a share */
    ngx_str_t                   text;      /* "text":..,"created_at":.. */
} ngx_social_posts_local_t;

/* the worker's copies of them (ngx_social_posts_local.c) */
void ngx_social_posts_local_init(size_t max);
ngx_social_posts_local_t *ngx_social_posts_local_get(int64_t id);
void ngx_social_posts_local_put(int64_t id, int64_t author,
    int64_t share_of, ngx_str_t *text);
ngx_str_t *ngx_social_posts_local_named_get(ngx_str_t *name);
void ngx_social_posts_local_named_put(ngx_str_t *name, ngx_str_t *value);
void ngx_social_posts_local_exit(void);

/* viewing cached posts without a script (ngx_social_posts_fetch.c) */
typedef struct ngx_social_posts_fetch_s  ngx_social_posts_fetch_t;

ngx_int_t ngx_social_posts_fetch(ngx_social_posts_view_t *v,
    ngx_str_t *epoch, ngx_social_posts_viewed_pt fallback);
ngx_int_t ngx_social_posts_fetch_prepare(ngx_social_posts_view_t *v,
    ngx_str_t *epoch, ngx_social_posts_viewed_pt fallback,
    ngx_social_posts_fetch_t **fp, ngx_array_t *cmds);
void ngx_social_posts_fetch_each(redisReply *reply, void *data);
void ngx_social_posts_fetch_got(redisReply *reply, void *data);

/* posts (ngx_social_posts_create.c) */
ngx_int_t ngx_social_posts_create_init(ngx_conf_t *cf);
ngx_int_t ngx_social_posts_create(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_delete(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

/* likes and shares (ngx_social_posts_react.c) */
ngx_int_t ngx_social_posts_react_init(ngx_conf_t *cf);
ngx_int_t ngx_social_posts_like(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_unlike(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_share(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_unshare(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_likers(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

/* reading (ngx_social_posts_read.c) */
ngx_int_t ngx_social_posts_read_init(ngx_conf_t *cf);
ngx_int_t ngx_social_posts_get(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_replies(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_of_user(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

/* the home feed (ngx_social_posts_feed.c) */
ngx_int_t ngx_social_posts_feed_init(ngx_conf_t *cf);
ngx_int_t ngx_social_posts_feed(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_fanout(ngx_http_request_t *r, int64_t post,
    int64_t author, ngx_str_t *followers, ngx_uint_t remove,
    ngx_social_redis_handler_pt handler, void *data);
void ngx_social_posts_fanout_later(int64_t post, int64_t author,
    ngx_uint_t remove);

/* fan-out (ngx_social_posts_fanout.c) */
ngx_int_t ngx_social_posts_fanout_init(ngx_conf_t *cf);
void ngx_social_posts_fanout_exit(void);

/* notifications (ngx_social_posts_notify.c) */
ngx_int_t ngx_social_posts_notify_init(ngx_conf_t *cf);
ngx_int_t ngx_social_posts_notifications(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_posts_notifications_read(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
void ngx_social_posts_notify(ngx_http_request_t *r, ngx_str_t *events);

/* helpers (ngx_social_posts_module.c) */
ngx_int_t ngx_social_posts_id_param(ngx_str_t *param, int64_t *id);
ngx_int_t ngx_social_posts_id_str(ngx_http_request_t *r, int64_t id,
    ngx_str_t *s);
u_char *ngx_social_posts_id_cpy(u_char *p, int64_t id);
ngx_int_t ngx_social_posts_not_found(ngx_http_request_t *r);
ngx_social_posts_answer_t *ngx_social_posts_answer_create(
    ngx_http_request_t *r, ngx_uint_t status);
void ngx_social_posts_answer_hold(ngx_social_posts_answer_t *a,
    ngx_int_t rc);
void ngx_social_posts_answer_synced(redisReply *reply, void *data);
ngx_int_t ngx_social_posts_answer_send(ngx_social_posts_answer_t *a);
ngx_int_t ngx_social_posts_after(ngx_http_request_t *r, PGresult *res,
    int row, int col, ngx_social_posts_after_t *after);
void ngx_social_posts_after_run(ngx_http_request_t *r,
    ngx_social_posts_after_t *after, int64_t post, int64_t author,
    ngx_uint_t remove, ngx_social_posts_answer_t *a);
ngx_str_t ngx_social_posts_sync_fanout(void);
void ngx_social_posts_cache_lost(void);
ngx_uint_t ngx_social_posts_feed_size(void);
u_char *ngx_social_posts_member(u_char *p, int64_t id);
ngx_int_t ngx_social_posts_forget_users(ngx_http_request_t *r,
    ngx_str_t *list, ngx_social_redis_handler_pt handler, void *data);
ngx_str_t *ngx_social_posts_split(ngx_pool_t *pool, ngx_str_t *list,
    ngx_uint_t skip, ngx_uint_t *n);


#endif /* _NGX_SOCIAL_POSTS_H_INCLUDED_ */
