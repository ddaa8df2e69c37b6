/*
 * Viewing cached posts with plain commands, in one pipeline: MGET of the
 * posts' changing state (counters, or deleted), HMGET of the viewer's
 * flags for them, MGET of the authors.  What never changes in a post
 * comes from the worker's copy (ngx_social_posts_local.c); a post the
 * worker does not know yet is asked for by one more HMGET of its hash,
 * and its author and original in one more round.  Authors come from the
 * worker's copies too when the generation of all authors
 * ("social:authorsgen", read before them, bumped by any change of an
 * author) is still the one they were read under.  A script call per page
 * costs Redis several times as much: each command a script runs goes
 * through Lua and back (docs/PERFORMANCE.md).
 *
 * Only hits are served this way.  A post, author or viewer flag not
 * cached, a deleted post, or an epoch that moved: the caller's fallback
 * views them instead (a script, which fills what it missed).  The keys
 * are named with an epoch seen earlier, and every round reads the epoch
 * last: as an epoch never comes back, one still current then was current
 * all along, and no key of an abandoned epoch is believed.
 */

#include "ngx_social_posts.h"


/* what a command of a round asked, by its reply's place */
#define NGX_SOCIAL_POSTS_ASK_STATES   0
#define NGX_SOCIAL_POSTS_ASK_FLAGS    1
#define NGX_SOCIAL_POSTS_ASK_AUTHORS  2
#define NGX_SOCIAL_POSTS_ASK_GEN      3
#define NGX_SOCIAL_POSTS_ASK_POST     4    /* + the post's index */

/* the fields of a post's hash, in the order asked */
enum {
    NGX_SOCIAL_POSTS_F_TEXT = 0,
    NGX_SOCIAL_POSTS_F_AUTHOR,
    NGX_SOCIAL_POSTS_F_SHARE_OF,
    NGX_SOCIAL_POSTS_NFIELDS
};


typedef struct {
    ngx_social_posts_data_t     data;
    int64_t                     author;
    int64_t                     share_of;
    ngx_uint_t                  local;     /* the lasting parts known */
    ngx_str_t                   key;       /* its state's key */
    ngx_str_t                   id;        /* in the key */
} ngx_social_posts_part_t;


struct ngx_social_posts_fetch_s {
    ngx_social_posts_view_t    *view;
    ngx_social_posts_viewed_pt  fallback;
    ngx_str_t                   epoch;
    ngx_str_t                   flags_key; /* len 0: anonymous */

    /* the page's posts, then the originals they share */
    ngx_social_posts_part_t    *posts;
    ngx_uint_t                  nposts;

    int64_t                    *authors;
    ngx_str_t                  *author_json;
    u_char                     *author_local; /* the JSON the worker's */
    ngx_uint_t                  nauthors;
    ngx_str_t                   gen;       /* the worker's copies' */
    ngx_str_t                   round_gen; /* as the round read it */
    ngx_uint_t                  authors_again;

    /* what the round in flight asked: posts and authors up to these */
    ngx_uint_t                  posts_from;
    ngx_uint_t                  posts_to;
    ngx_uint_t                  authors_from;
    ngx_uint_t                  authors_to;
    ngx_uint_t                 *asked;     /* per reply but the last */
    ngx_uint_t                  nasked;
    ngx_uint_t                  replied;   /* replies of the round so far */
    ngx_int_t                   outcome;   /* NGX_OK: every one a hit */
};


static ngx_int_t ngx_social_posts_fetch_add(ngx_social_posts_fetch_t *f,
    int64_t id);
static ngx_int_t ngx_social_posts_fetch_known(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part);
static ngx_int_t ngx_social_posts_fetch_author(ngx_social_posts_fetch_t *f,
    int64_t id);
static ngx_int_t ngx_social_posts_fetch_round(ngx_social_posts_fetch_t *f);
static ngx_int_t ngx_social_posts_fetch_send(ngx_social_posts_fetch_t *f,
    ngx_array_t *cmds);
static ngx_int_t ngx_social_posts_fetch_build(ngx_social_posts_fetch_t *f,
    ngx_array_t *cmds);
static ngx_int_t ngx_social_posts_fetch_keys(ngx_social_posts_fetch_t *f,
    ngx_uint_t ask, ngx_social_redis_argv_t *cmd);
static ngx_int_t ngx_social_posts_fetch_hash(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, ngx_social_redis_argv_t *cmd);
static ngx_int_t ngx_social_posts_fetch_authors_get(
    ngx_social_posts_fetch_t *f, ngx_social_redis_argv_t *cmd);
static ngx_int_t ngx_social_posts_fetch_argv(ngx_social_posts_fetch_t *f,
    ngx_uint_t argc, ngx_social_redis_argv_t *cmd);
static ngx_int_t ngx_social_posts_fetch_states(ngx_social_posts_fetch_t *f,
    redisReply *reply);
static ngx_int_t ngx_social_posts_fetch_state(ngx_pool_t *pool,
    ngx_social_posts_data_t *d, redisReply *state);
static ngx_int_t ngx_social_posts_fetch_flags(ngx_social_posts_fetch_t *f,
    redisReply *reply);
static ngx_int_t ngx_social_posts_fetch_post(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, redisReply *reply);
static ngx_int_t ngx_social_posts_fetch_gen(ngx_social_posts_fetch_t *f,
    redisReply *reply);
static ngx_int_t ngx_social_posts_fetch_authors(ngx_social_posts_fetch_t *f,
    redisReply *reply);
static ngx_int_t ngx_social_posts_fetch_done(ngx_social_posts_fetch_t *f);


/* the generation of all authors this worker read last */
static u_char  ngx_social_posts_fetch_gen_buf[NGX_INT64_LEN];
static size_t  ngx_social_posts_fetch_gen_len;

static const char  *ngx_social_posts_fetch_gen_argv[] = {
    "GET", NGX_SOCIAL_CACHE_AUTHORS_GEN
};
static const size_t ngx_social_posts_fetch_gen_argvlen[] = {
    sizeof("GET") - 1, sizeof(NGX_SOCIAL_CACHE_AUTHORS_GEN) - 1
};

static const char  *ngx_social_posts_fetch_fields[] = { "t", "a", "s" };
static const size_t ngx_social_posts_fetch_fields_len[] = { 1, 1, 1 };


/*
 * Views v->ids under epoch (as the page's ids were read); v->handler is
 * called with the result, or fallback(v) when not everything was cached.
 * Returns what a route handler returns.
 */

ngx_int_t
ngx_social_posts_fetch(ngx_social_posts_view_t *v, ngx_str_t *epoch,
    ngx_social_posts_viewed_pt fallback)
{
    ngx_int_t                  rc;
    ngx_array_t                cmds;
    ngx_social_posts_fetch_t  *f;

    if (v->n == 0) {
        return v->handler(v->request, v);
    }

    if (ngx_array_init(&cmds, v->request->pool, v->n + 4,
                       sizeof(ngx_social_redis_argv_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_social_posts_fetch_prepare(v, epoch, fallback, &f, &cmds);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return fallback(v->request, v);
    }

    return ngx_social_posts_fetch_send(f, &cmds);
}


/*
 * The same as ngx_social_posts_fetch() for v->n > 0, up to its first
 * round's commands (the epoch's GET last), added to cmds and not sent:
 * the caller sends them in its own pipeline, after its own, and gives
 * their replies to ngx_social_posts_fetch_each() and, the last one,
 * ngx_social_posts_fetch_got() with *fp.  NGX_DECLINED: not to be
 * fetched so (the fallback views them).
 */

ngx_int_t
ngx_social_posts_fetch_prepare(ngx_social_posts_view_t *v, ngx_str_t *epoch,
    ngx_social_posts_viewed_pt fallback, ngx_social_posts_fetch_t **fp,
    ngx_array_t *cmds)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_pool_t                *pool;
    ngx_social_posts_fetch_t  *f;

    pool = v->request->pool;

    f = ngx_pcalloc(pool, sizeof(ngx_social_posts_fetch_t));
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->view = v;
    f->fallback = fallback;
    f->epoch = *epoch;

    f->posts = ngx_pcalloc(pool, 2 * v->n * sizeof(ngx_social_posts_part_t));
    f->authors = ngx_palloc(pool, 2 * v->n * sizeof(int64_t));
    f->author_json = ngx_pcalloc(pool, 2 * v->n * sizeof(ngx_str_t));
    f->author_local = ngx_pcalloc(pool, 2 * v->n);
    f->asked = ngx_palloc(pool, (2 * v->n + 4) * sizeof(ngx_uint_t));

    if (f->posts == NULL || f->authors == NULL || f->author_json == NULL
        || f->author_local == NULL || f->asked == NULL)
    {
        return NGX_ERROR;
    }

    /* copied: the worker's may move while the request waits */
    f->gen.len = ngx_social_posts_fetch_gen_len;
    f->gen.data = ngx_pnalloc(pool, f->gen.len + 1);
    if (f->gen.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(f->gen.data, ngx_social_posts_fetch_gen_buf, f->gen.len);

    if (v->viewer) {
        p = ngx_pnalloc(pool, sizeof("social:flags::") - 1 + epoch->len
                              + NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        f->flags_key.data = p;
        f->flags_key.len = ngx_sprintf(p, "social:flags:%V:%L", epoch,
                                       v->viewer)
                           - p;
    }

    for (i = 0; i < v->n; i++) {
        f->posts[i].data.id = v->ids[i];
    }

    f->nposts = v->n;

    for (i = 0; i < v->n; i++) {
        rc = ngx_social_posts_fetch_known(f, &f->posts[i]);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    *fp = f;

    return ngx_social_posts_fetch_build(f, cmds);
}


/* an original to ask for too, once */

static ngx_int_t
ngx_social_posts_fetch_add(ngx_social_posts_fetch_t *f, int64_t id)
{
    ngx_uint_t  i;

    for (i = f->view->n; i < f->nposts; i++) {
        if (f->posts[i].data.id == id) {
            return NGX_OK;
        }
    }

    f->posts[f->nposts].data.id = id;

    return ngx_social_posts_fetch_known(f, &f->posts[f->nposts++]);
}


/*
 * A post to ask for: its state's key, and what the worker keeps of it,
 * with its original then.  NGX_DECLINED: an original that is a share
 * itself (never viewed so).
 */

static ngx_int_t
ngx_social_posts_fetch_known(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part)
{
    u_char                    *p;
    ngx_pool_t                *pool;
    ngx_social_posts_local_t  *local;

    pool = f->view->request->pool;

    p = ngx_pnalloc(pool, sizeof("social:postc::") - 1 + f->epoch.len
                          + NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    part->key.data = p;
    p = ngx_cpymem(p, "social:postc:", sizeof("social:postc:") - 1);
    p = ngx_cpymem(p, f->epoch.data, f->epoch.len);
    *p++ = ':';
    part->id.data = p;
    p = ngx_social_posts_id_cpy(p, part->data.id);
    part->id.len = p - part->id.data;
    part->key.len = p - part->key.data;

    local = ngx_social_posts_local_get(part->data.id);
    if (local == NULL) {
        return NGX_OK;
    }

    if (local->share_of && part >= &f->posts[f->view->n]) {
        return NGX_DECLINED;
    }

    /* copied: the worker's copy may go while the request waits */
    p = ngx_pnalloc(pool, local->text.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    part->data.text.data = p;
    part->data.text.len = local->text.len;
    ngx_memcpy(p, local->text.data, local->text.len);

    part->local = 1;
    part->author = local->author;
    part->share_of = local->share_of;

    if (ngx_social_posts_fetch_author(f, part->author) != NGX_OK) {
        return NGX_ERROR;
    }

    return part->share_of ? ngx_social_posts_fetch_add(f, part->share_of)
                          : NGX_OK;
}


/*
 * An author to ask for, once; its JSON from the worker's copy when that
 * was read under the generation of all authors the worker saw last
 * ("<generation> <JSON>"), to be confirmed by the round
 */

static ngx_int_t
ngx_social_posts_fetch_author(ngx_social_posts_fetch_t *f, int64_t id)
{
    u_char      *p, name[sizeof("a:") + NGX_INT64_LEN];
    ngx_str_t    key, *copy, *json;
    ngx_uint_t   i;

    for (i = 0; i < f->nauthors; i++) {
        if (f->authors[i] == id) {
            return NGX_OK;
        }
    }

    i = f->nauthors++;
    f->authors[i] = id;

    if (f->gen.len == 0) {
        return NGX_OK;
    }

    name[0] = 'a';
    name[1] = ':';
    key.data = name;
    key.len = ngx_social_posts_id_cpy(&name[2], id) - name;

    copy = ngx_social_posts_local_named_get(&key);

    if (copy == NULL || copy->len <= f->gen.len + 1
        || copy->data[f->gen.len] != ' '
        || ngx_memcmp(copy->data, f->gen.data, f->gen.len) != 0)
    {
        return NGX_OK;
    }

    json = &f->author_json[i];
    json->len = copy->len - f->gen.len - 1;

    p = ngx_pnalloc(f->view->request->pool, json->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    json->data = p;
    ngx_memcpy(p, copy->data + f->gen.len + 1, json->len);
    f->author_local[i] = 1;

    return NGX_OK;
}


/* the next round of a fetch */

static ngx_int_t
ngx_social_posts_fetch_round(ngx_social_posts_fetch_t *f)
{
    ngx_array_t  cmds;

    if (ngx_array_init(&cmds, f->view->request->pool,
                       f->nposts - f->posts_to + 4,
                       sizeof(ngx_social_redis_argv_t))
        != NGX_OK
        || ngx_social_posts_fetch_build(f, &cmds) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_posts_fetch_send(f, &cmds);
}


static ngx_int_t
ngx_social_posts_fetch_send(ngx_social_posts_fetch_t *f, ngx_array_t *cmds)
{
    ngx_http_request_t  *r;

    r = f->view->request;

    r->main->count++;

    if (ngx_social_redis_pipeline(r, cmds->elts, cmds->nelts,
                                  ngx_social_posts_fetch_each,
                                  ngx_social_posts_fetch_got, f)
        != NGX_OK)
    {
        r->main->count--;
        return f->fallback(r, f->view);
    }

    return NGX_DONE;
}


/*
 * A round's commands added to cmds: the states of the posts not asked
 * yet, the viewer's flags for them, the hashes of those the worker does
 * not know, the authors not asked yet, then the epoch
 */

static ngx_int_t
ngx_social_posts_fetch_build(ngx_social_posts_fetch_t *f, ngx_array_t *cmds)
{
    ngx_uint_t                i, n;
    ngx_social_redis_argv_t  *cmd;

    f->posts_from = f->posts_to;
    f->posts_to = f->nposts;
    f->authors_from = f->authors_to;
    f->authors_to = f->nauthors;
    f->replied = 0;
    f->outcome = NGX_OK;

    n = 0;

    if (f->posts_from < f->posts_to) {
        cmd = ngx_array_push(cmds);
        f->asked[n++] = NGX_SOCIAL_POSTS_ASK_STATES;

        if (cmd == NULL
            || ngx_social_posts_fetch_keys(f, NGX_SOCIAL_POSTS_ASK_STATES,
                                           cmd)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (f->posts_from < f->posts_to && f->flags_key.len) {
        cmd = ngx_array_push(cmds);
        f->asked[n++] = NGX_SOCIAL_POSTS_ASK_FLAGS;

        if (cmd == NULL
            || ngx_social_posts_fetch_keys(f, NGX_SOCIAL_POSTS_ASK_FLAGS, cmd)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (i = f->posts_from; i < f->posts_to; i++) {
        if (f->posts[i].local) {
            continue;
        }

        cmd = ngx_array_push(cmds);
        f->asked[n++] = NGX_SOCIAL_POSTS_ASK_POST + i;

        if (cmd == NULL
            || ngx_social_posts_fetch_hash(f, &f->posts[i], cmd) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (f->authors_from < f->authors_to) {
        /* the generation first: what is read after it is as new */
        cmd = ngx_array_push(cmds);
        if (cmd == NULL) {
            return NGX_ERROR;
        }

        f->asked[n++] = NGX_SOCIAL_POSTS_ASK_GEN;
        cmd->argc = 2;
        cmd->argv = ngx_social_posts_fetch_gen_argv;
        cmd->argvlen = ngx_social_posts_fetch_gen_argvlen;

        for (i = f->authors_from; i < f->authors_to; i++) {
            if (!f->author_local[i]) {
                break;
            }
        }

        if (i < f->authors_to) {
            cmd = ngx_array_push(cmds);
            f->asked[n++] = NGX_SOCIAL_POSTS_ASK_AUTHORS;

            if (cmd == NULL
                || ngx_social_posts_fetch_authors_get(f, cmd) != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    f->nasked = n;

    return ngx_social_posts_epoch_push(cmds);
}


/* MGET of the round's posts' states, or HMGET of the viewer's flags */

static ngx_int_t
ngx_social_posts_fetch_keys(ngx_social_posts_fetch_t *f, ngx_uint_t ask,
    ngx_social_redis_argv_t *cmd)
{
    size_t                   *lens;
    ngx_uint_t                i, n, k;
    const char              **argv;
    ngx_social_posts_part_t  *part;

    n = f->posts_to - f->posts_from;
    k = (ask == NGX_SOCIAL_POSTS_ASK_FLAGS) ? 2 : 1;

    if (ngx_social_posts_fetch_argv(f, k + n, cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    argv = (const char **) cmd->argv;
    lens = (size_t *) cmd->argvlen;

    if (k == 2) {
        argv[0] = "HMGET";
        lens[0] = sizeof("HMGET") - 1;
        argv[1] = (const char *) f->flags_key.data;
        lens[1] = f->flags_key.len;

    } else {
        argv[0] = "MGET";
        lens[0] = sizeof("MGET") - 1;
    }

    for (i = 0; i < n; i++) {
        part = &f->posts[f->posts_from + i];

        if (k == 2) {
            argv[k + i] = (const char *) part->id.data;
            lens[k + i] = part->id.len;

        } else {
            argv[k + i] = (const char *) part->key.data;
            lens[k + i] = part->key.len;
        }
    }

    return NGX_OK;
}


/* HMGET of a post's lasting parts, for a post the worker does not know */

static ngx_int_t
ngx_social_posts_fetch_hash(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, ngx_social_redis_argv_t *cmd)
{
    u_char       *p;
    size_t       *lens;
    const char  **argv;

    p = ngx_pnalloc(f->view->request->pool,
                    sizeof("social:post::") - 1 + f->epoch.len
                    + NGX_INT64_LEN);

    if (p == NULL
        || ngx_social_posts_fetch_argv(f, 2 + NGX_SOCIAL_POSTS_NFIELDS, cmd)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    argv = (const char **) cmd->argv;
    lens = (size_t *) cmd->argvlen;

    argv[0] = "HMGET";
    lens[0] = sizeof("HMGET") - 1;
    argv[1] = (const char *) p;
    lens[1] = ngx_sprintf(p, "social:post:%V:%V", &f->epoch, &part->id) - p;

    ngx_memcpy(&argv[2], ngx_social_posts_fetch_fields,
               sizeof(ngx_social_posts_fetch_fields));
    ngx_memcpy(&lens[2], ngx_social_posts_fetch_fields_len,
               sizeof(ngx_social_posts_fetch_fields_len));

    return NGX_OK;
}


static ngx_int_t
ngx_social_posts_fetch_authors_get(ngx_social_posts_fetch_t *f,
    ngx_social_redis_argv_t *cmd)
{
    u_char       *p;
    size_t       *lens;
    ngx_uint_t    i, n;
    const char  **argv;

    n = f->authors_to - f->authors_from;

    p = ngx_pnalloc(f->view->request->pool,
                    n * (sizeof("social:author:") + NGX_INT64_LEN));

    if (p == NULL || ngx_social_posts_fetch_argv(f, 1 + n, cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    argv = (const char **) cmd->argv;
    lens = (size_t *) cmd->argvlen;

    argv[0] = "MGET";
    lens[0] = sizeof("MGET") - 1;
    cmd->argc = 1;

    for (i = f->authors_from; i < f->authors_to; i++) {
        if (f->author_local[i]) {
            continue;
        }

        argv[cmd->argc] = (const char *) p;
        p = ngx_sprintf(p, "social:author:%L", f->authors[i]);
        lens[cmd->argc] = p - (u_char *) argv[cmd->argc];
        cmd->argc++;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_posts_fetch_argv(ngx_social_posts_fetch_t *f, ngx_uint_t argc,
    ngx_social_redis_argv_t *cmd)
{
    ngx_pool_t  *pool;

    pool = f->view->request->pool;

    cmd->argc = argc;
    cmd->argv = ngx_palloc(pool, argc * sizeof(char *));
    cmd->argvlen = ngx_palloc(pool, argc * sizeof(size_t));

    return (cmd->argv == NULL || cmd->argvlen == NULL) ? NGX_ERROR : NGX_OK;
}


/* a reply of the round before its last */

void
ngx_social_posts_fetch_each(redisReply *reply, void *data)
{
    ngx_social_posts_fetch_t  *f = data;

    ngx_uint_t  ask;

    if (f->replied >= f->nasked) {
        f->outcome = NGX_DECLINED;
        return;
    }

    ask = f->asked[f->replied++];

    if (f->outcome != NGX_OK) {
        return;
    }

    switch (ask) {

    case NGX_SOCIAL_POSTS_ASK_STATES:
        f->outcome = ngx_social_posts_fetch_states(f, reply);
        break;

    case NGX_SOCIAL_POSTS_ASK_FLAGS:
        f->outcome = ngx_social_posts_fetch_flags(f, reply);
        break;

    case NGX_SOCIAL_POSTS_ASK_GEN:
        f->outcome = ngx_social_posts_fetch_gen(f, reply);
        break;

    case NGX_SOCIAL_POSTS_ASK_AUTHORS:
        f->outcome = ngx_social_posts_fetch_authors(f, reply);
        break;

    default:
        f->outcome = ngx_social_posts_fetch_post(f,
                                 &f->posts[ask - NGX_SOCIAL_POSTS_ASK_POST],
                                 reply);
    }
}


/* the round's last reply, the epoch: what next */

void
ngx_social_posts_fetch_got(redisReply *reply, void *data)
{
    ngx_social_posts_fetch_t  *f = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = f->view->request;
    rc = f->outcome;

    if (rc == NGX_OK
        && (reply == NULL || f->replied != f->nasked
            || !ngx_social_posts_epoch_is(reply, &f->epoch)))
    {
        rc = NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r, f->fallback(r, f->view));
        return;
    }

    if (f->authors_again) {
        /* the worker's copies of authors were not current: all asked */
        f->authors_again = 0;
        ngx_memzero(&f->author_local[f->authors_from],
                    f->authors_to - f->authors_from);
        f->authors_to = f->authors_from;
    }

    if (f->posts_to < f->nposts || f->authors_to < f->nauthors) {
        ngx_http_finalize_request(r, ngx_social_posts_fetch_round(f));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_posts_fetch_done(f));
}


/*
 * The replies' outcomes: NGX_OK every one a hit, NGX_DECLINED not,
 * NGX_ERROR no memory
 */

static ngx_int_t
ngx_social_posts_fetch_states(ngx_social_posts_fetch_t *f, redisReply *reply)
{
    ngx_int_t   rc;
    ngx_uint_t  i, n;

    n = f->posts_to - f->posts_from;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        return NGX_DECLINED;
    }

    for (i = 0; i < n; i++) {
        rc = ngx_social_posts_fetch_state(f->view->request->pool,
                                          &f->posts[f->posts_from + i].data,
                                          reply->element[i]);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (f->flags_key.len == 0) {
        for (i = f->posts_from; i < f->posts_to; i++) {
            ngx_str_set(&f->posts[i].data.flags, "00");
        }
    }

    return NGX_OK;
}


/* "<likes> <shares> <replies> <version>"; "d" (deleted) is no hit */

static ngx_int_t
ngx_social_posts_fetch_state(ngx_pool_t *pool, ngx_social_posts_data_t *d,
    redisReply *state)
{
    u_char     *p, *last;
    ngx_str_t   s, *counter[3];
    ngx_uint_t  i;

    if (state->type != REDIS_REPLY_STRING || state->len < 7) {
        return NGX_DECLINED;
    }

    if (ngx_social_posts_reply_str(pool, state, &s) != NGX_OK) {
        return NGX_ERROR;
    }

    counter[0] = &d->likes;
    counter[1] = &d->shares;
    counter[2] = &d->replies;

    p = s.data;
    last = s.data + s.len;

    for (i = 0; i < 3; i++) {
        counter[i]->data = p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        counter[i]->len = p - counter[i]->data;

        if (counter[i]->len == 0 || p == last || *p++ != ' ') {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_posts_fetch_flags(ngx_social_posts_fetch_t *f, redisReply *reply)
{
    ngx_uint_t   i, n;
    redisReply  *e;

    n = f->posts_to - f->posts_from;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        return NGX_DECLINED;
    }

    for (i = 0; i < n; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING || e->len != 2) {
            return NGX_DECLINED;
        }

        if (ngx_social_posts_reply_str(f->view->request->pool, e,
                                       &f->posts[f->posts_from + i]
                                        .data.flags)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The lasting parts of a post the worker did not know: its author and
 * original to ask next
 */

static ngx_int_t
ngx_social_posts_fetch_post(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, redisReply *reply)
{
    int64_t       author;
    redisReply  **e;

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != NGX_SOCIAL_POSTS_NFIELDS)
    {
        return NGX_DECLINED;
    }

    e = reply->element;

    if (e[NGX_SOCIAL_POSTS_F_TEXT]->type != REDIS_REPLY_STRING
        || e[NGX_SOCIAL_POSTS_F_AUTHOR]->type != REDIS_REPLY_STRING)
    {
        return NGX_DECLINED;
    }

    author = ngx_atoof((u_char *) e[NGX_SOCIAL_POSTS_F_AUTHOR]->str,
                       e[NGX_SOCIAL_POSTS_F_AUTHOR]->len);
    if (author <= 0) {
        return NGX_DECLINED;
    }

    if (ngx_social_posts_reply_str(f->view->request->pool,
                                   e[NGX_SOCIAL_POSTS_F_TEXT],
                                   &part->data.text)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part->author = author;
    e = &e[NGX_SOCIAL_POSTS_F_SHARE_OF];

    if ((*e)->type == REDIS_REPLY_STRING && (*e)->len) {
        part->share_of = ngx_atoof((u_char *) (*e)->str, (*e)->len);

        /* an original is never a share itself */
        if (part->share_of <= 0 || part >= &f->posts[f->view->n]) {
            return NGX_DECLINED;
        }
    }

    ngx_social_posts_local_put(part->data.id, author, part->share_of,
                               &part->data.text);

    if (ngx_social_posts_fetch_author(f, author) != NGX_OK) {
        return NGX_ERROR;
    }

    return part->share_of ? ngx_social_posts_fetch_add(f, part->share_of)
                          : NGX_OK;
}


/*
 * The generation of all authors: the worker's copies used in the round
 * must have been read under it, or all its authors are asked again in
 * another round
 */

static ngx_int_t
ngx_social_posts_fetch_gen(ngx_social_posts_fetch_t *f, redisReply *reply)
{
    ngx_uint_t  i;

    if (reply->type == REDIS_REPLY_STRING
        && reply->len <= sizeof(ngx_social_posts_fetch_gen_buf))
    {
        if (ngx_social_posts_reply_str(f->view->request->pool, reply,
                                       &f->round_gen)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_social_posts_fetch_gen_buf, reply->str, reply->len);
        ngx_social_posts_fetch_gen_len = reply->len;

    } else {
        ngx_str_null(&f->round_gen);
        ngx_social_posts_fetch_gen_len = 0;
    }

    if (f->round_gen.len == f->gen.len
        && (f->gen.len == 0
            || ngx_memcmp(f->round_gen.data, f->gen.data, f->gen.len) == 0))
    {
        return NGX_OK;
    }

    for (i = f->authors_from; i < f->authors_to; i++) {
        if (f->author_local[i]) {
            f->authors_again = 1;
        }
    }

    return NGX_OK;
}


/* the authors' JSON, kept by the worker with the round's generation */

static ngx_int_t
ngx_social_posts_fetch_authors(ngx_social_posts_fetch_t *f,
    redisReply *reply)
{
    u_char       *p, name[sizeof("a:") + NGX_INT64_LEN];
    ngx_str_t    *json, key, copy;
    ngx_uint_t    i, k;
    ngx_pool_t   *pool;
    redisReply   *e;

    pool = f->view->request->pool;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return NGX_DECLINED;
    }

    k = 0;

    for (i = f->authors_from; i < f->authors_to; i++) {
        if (f->author_local[i]) {
            continue;
        }

        if (k == reply->elements) {
            return NGX_DECLINED;
        }

        e = reply->element[k++];
        json = &f->author_json[i];

        if (e->type != REDIS_REPLY_STRING) {
            return NGX_DECLINED;
        }

        if (ngx_social_posts_reply_str(pool, e, json) != NGX_OK) {
            return NGX_ERROR;
        }

        if (f->round_gen.len == 0) {
            continue;
        }

        /* "<generation> <JSON>" */
        copy.len = f->round_gen.len + 1 + json->len;
        copy.data = ngx_pnalloc(pool, copy.len);
        if (copy.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(copy.data, f->round_gen.data, f->round_gen.len);
        *p++ = ' ';
        ngx_memcpy(p, json->data, json->len);

        key.data = name;
        key.len = ngx_sprintf(name, "a:%L", f->authors[i]) - name;

        ngx_social_posts_local_named_put(&key, &copy);
    }

    return k == reply->elements ? NGX_OK : NGX_DECLINED;
}


/* every post and author is there: the page's posts assembled */

static ngx_int_t
ngx_social_posts_fetch_done(ngx_social_posts_fetch_t *f)
{
    ngx_uint_t                i, j;
    ngx_social_posts_part_t  *part;
    ngx_social_posts_view_t  *v;

    v = f->view;

    for (i = 0; i < f->nposts; i++) {
        part = &f->posts[i];

        for (j = 0; f->authors[j] != part->author; j++) {
            /* void */
        }

        part->data.author = f->author_json[j];

        if (part->share_of == 0) {
            continue;
        }

        for (j = v->n; f->posts[j].data.id != part->share_of; j++) {
            /* void */
        }

        part->data.share_of = &f->posts[j].data;
    }

    for (i = 0; i < v->n; i++) {
        if (ngx_social_posts_assemble(v->request->pool, &f->posts[i].data,
                                      &v->json[i])
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return v->handler(v->request, v);
}
