/*
 * Viewing cached posts with plain commands: one pipeline asks HMGET of
 * every post's hash and MGET of the authors.  What never changes in a
 * post comes from the worker's copy (ngx_social_posts_local.c) and only
 * the rest is asked; a post the worker does not know yet is asked whole,
 * and its author and original in one more round.  A script call per page
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


/*
 * HMGET fields of a post's hash, after the viewer's flags (when there is
 * a viewer), in this order: what changes, then what a worker keeps
 * (asked only when it does not have them)
 */
enum {
    NGX_SOCIAL_POSTS_F_DELETED = 0,
    NGX_SOCIAL_POSTS_F_AUTHOR,
    NGX_SOCIAL_POSTS_F_LIKES,
    NGX_SOCIAL_POSTS_F_SHARES,
    NGX_SOCIAL_POSTS_F_REPLIES,
    NGX_SOCIAL_POSTS_NCHANGING,
    NGX_SOCIAL_POSTS_F_TEXT = NGX_SOCIAL_POSTS_NCHANGING,
    NGX_SOCIAL_POSTS_F_SHARE_OF,
    NGX_SOCIAL_POSTS_NFIELDS
};


typedef struct {
    ngx_social_posts_data_t     data;
    int64_t                     author;
    int64_t                     share_of;
    ngx_uint_t                  local;     /* the lasting parts known */
} ngx_social_posts_part_t;


typedef struct {
    ngx_social_posts_view_t    *view;
    ngx_social_posts_viewed_pt  fallback;
    ngx_str_t                   epoch;

    /* every post's HMGET fields: "v:<viewer>" (if any), then the rest */
    const char                 *fields[1 + NGX_SOCIAL_POSTS_NFIELDS];
    size_t                      fields_len[1 + NGX_SOCIAL_POSTS_NFIELDS];
    ngx_uint_t                  nflags;    /* 1: a viewer, 0: anonymous */

    /* the page's posts, then the originals they share */
    ngx_social_posts_part_t    *posts;
    ngx_uint_t                  nposts;

    int64_t                    *authors;
    ngx_str_t                  *author_json;
    ngx_uint_t                  nauthors;

    /* what the round in flight asked: posts and authors up to these */
    ngx_uint_t                  posts_from;
    ngx_uint_t                  posts_to;
    ngx_uint_t                  authors_from;
    ngx_uint_t                  authors_to;
    ngx_uint_t                  replied;   /* replies of the round so far */
    ngx_int_t                   outcome;   /* NGX_OK: every one a hit */
} ngx_social_posts_fetch_t;


static ngx_int_t ngx_social_posts_fetch_add(ngx_social_posts_fetch_t *f,
    int64_t id);
static ngx_int_t ngx_social_posts_fetch_known(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part);
static void ngx_social_posts_fetch_author(ngx_social_posts_fetch_t *f,
    int64_t id);
static ngx_int_t ngx_social_posts_fetch_round(ngx_social_posts_fetch_t *f);
static ngx_int_t ngx_social_posts_fetch_hmget(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, ngx_social_redis_argv_t *cmd);
static ngx_int_t ngx_social_posts_fetch_mget(ngx_social_posts_fetch_t *f,
    ngx_social_redis_argv_t *cmd);
static ngx_int_t ngx_social_posts_fetch_argv(ngx_social_posts_fetch_t *f,
    ngx_uint_t argc, ngx_social_redis_argv_t *cmd);
static void ngx_social_posts_fetch_each(redisReply *reply, void *data);
static void ngx_social_posts_fetch_got(redisReply *reply, void *data);
static ngx_int_t ngx_social_posts_fetch_post(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, redisReply *reply);
static ngx_int_t ngx_social_posts_fetch_authors(ngx_social_posts_fetch_t *f,
    redisReply *reply);
static ngx_int_t ngx_social_posts_fetch_done(ngx_social_posts_fetch_t *f);
static ngx_int_t ngx_social_posts_fetch_counter(ngx_pool_t *pool,
    redisReply *reply, ngx_str_t *s);


static ngx_str_t  ngx_social_posts_fetch_fields[] = {
    ngx_string("d"), ngx_string("a"), ngx_string("lc"), ngx_string("sc"),
    ngx_string("rc"), ngx_string("t"), ngx_string("s")
};


/*
 * Views v->ids under epoch (as the page's ids were read); v->handler is
 * called with the result, or fallback(v) when not everything was cached.
 * Returns what a route handler returns.
 */

ngx_int_t
ngx_social_posts_fetch(ngx_social_posts_view_t *v, ngx_str_t *epoch,
    ngx_social_posts_viewed_pt fallback)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_pool_t                *pool;
    ngx_social_posts_fetch_t  *f;

    if (v->n == 0) {
        return v->handler(v->request, v);
    }

    pool = v->request->pool;

    f = ngx_pcalloc(pool, sizeof(ngx_social_posts_fetch_t));
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->view = v;
    f->fallback = fallback;
    f->epoch = *epoch;

    f->posts = ngx_pcalloc(pool, 2 * v->n * sizeof(ngx_social_posts_part_t));
    f->authors = ngx_palloc(pool, 2 * v->n * sizeof(int64_t));
    f->author_json = ngx_pcalloc(pool, 2 * v->n * sizeof(ngx_str_t));
    p = ngx_pnalloc(pool, sizeof("v:") + NGX_INT64_LEN);

    if (f->posts == NULL || f->authors == NULL || f->author_json == NULL
        || p == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->fields[0] = (const char *) p;
    f->fields_len[0] = ngx_sprintf(p, "v:%L", v->viewer) - p;
    f->nflags = v->viewer ? 1 : 0;

    for (i = 0; i < NGX_SOCIAL_POSTS_NFIELDS; i++) {
        f->fields[1 + i] =
                          (const char *) ngx_social_posts_fetch_fields[i].data;
        f->fields_len[1 + i] = ngx_social_posts_fetch_fields[i].len;
    }

    for (i = 0; i < v->n; i++) {
        f->posts[i].data.id = v->ids[i];
    }

    f->nposts = v->n;

    for (i = 0; i < v->n; i++) {
        rc = ngx_social_posts_fetch_known(f, &f->posts[i]);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            return fallback(v->request, v);
        }
    }

    return ngx_social_posts_fetch_round(f);
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
 * What the worker keeps of a post to ask for, and its original then.
 * NGX_DECLINED: an original that is a share itself (never viewed so).
 */

static ngx_int_t
ngx_social_posts_fetch_known(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part)
{
    u_char                    *p;
    ngx_social_posts_local_t  *local;

    local = ngx_social_posts_local_get(part->data.id);
    if (local == NULL) {
        return NGX_OK;
    }

    if (local->share_of && part >= &f->posts[f->view->n]) {
        return NGX_DECLINED;
    }

    /* copied: the worker's copy may go while the request waits */
    p = ngx_pnalloc(f->view->request->pool, local->text.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    part->data.text.data = p;
    part->data.text.len = local->text.len;
    ngx_memcpy(p, local->text.data, local->text.len);

    part->local = 1;
    part->author = local->author;
    part->share_of = local->share_of;

    ngx_social_posts_fetch_author(f, part->author);

    return part->share_of ? ngx_social_posts_fetch_add(f, part->share_of)
                          : NGX_OK;
}


static void
ngx_social_posts_fetch_author(ngx_social_posts_fetch_t *f, int64_t id)
{
    ngx_uint_t  i;

    for (i = 0; i < f->nauthors; i++) {
        if (f->authors[i] == id) {
            return;
        }
    }

    f->authors[f->nauthors++] = id;
}


/* one pipeline: the posts not asked yet, the authors, then the epoch */

static ngx_int_t
ngx_social_posts_fetch_round(ngx_social_posts_fetch_t *f)
{
    ngx_uint_t                i, n;
    ngx_http_request_t       *r;
    ngx_social_redis_argv_t  *cmds;

    r = f->view->request;

    f->posts_from = f->posts_to;
    f->posts_to = f->nposts;
    f->authors_from = f->authors_to;
    f->authors_to = f->nauthors;
    f->replied = 0;
    f->outcome = NGX_OK;

    cmds = ngx_palloc(r->pool,
                      (f->posts_to - f->posts_from + 2)
                      * sizeof(ngx_social_redis_argv_t));
    if (cmds == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    for (i = f->posts_from; i < f->posts_to; i++) {
        if (ngx_social_posts_fetch_hmget(f, &f->posts[i], &cmds[n++])
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (f->authors_from < f->authors_to) {
        if (ngx_social_posts_fetch_mget(f, &cmds[n++]) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    cmds[n++] = ngx_social_posts_epoch_get;

    r->main->count++;

    if (ngx_social_redis_pipeline(r, cmds, n, ngx_social_posts_fetch_each,
                                  ngx_social_posts_fetch_got, f)
        != NGX_OK)
    {
        r->main->count--;
        return f->fallback(r, f->view);
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_social_posts_fetch_hmget(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, ngx_social_redis_argv_t *cmd)
{
    u_char      *p;
    size_t      *lens;
    ngx_uint_t   n;
    const char **argv;

    n = f->nflags + (part->local ? NGX_SOCIAL_POSTS_NCHANGING
                                 : NGX_SOCIAL_POSTS_NFIELDS);

    p = ngx_pnalloc(f->view->request->pool,
                    sizeof("social:post::") + f->epoch.len + NGX_INT64_LEN);

    if (p == NULL || ngx_social_posts_fetch_argv(f, 2 + n, cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    argv = (const char **) cmd->argv;
    lens = (size_t *) cmd->argvlen;

    argv[0] = "HMGET";
    lens[0] = sizeof("HMGET") - 1;
    argv[1] = (const char *) p;
    lens[1] = ngx_sprintf(p, "social:post:%V:%L", &f->epoch,
                          part->data.id)
              - p;

    ngx_memcpy(&argv[2], &f->fields[1 - f->nflags], n * sizeof(char *));
    ngx_memcpy(&lens[2], &f->fields_len[1 - f->nflags], n * sizeof(size_t));

    return NGX_OK;
}


static ngx_int_t
ngx_social_posts_fetch_mget(ngx_social_posts_fetch_t *f,
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

    for (i = 0; i < n; i++) {
        argv[1 + i] = (const char *) p;
        p = ngx_sprintf(p, "social:author:%L",
                        f->authors[f->authors_from + i]);
        lens[1 + i] = p - (u_char *) argv[1 + i];
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


/* a reply of the round before its last: a post's HMGET, or the MGET */

static void
ngx_social_posts_fetch_each(redisReply *reply, void *data)
{
    ngx_social_posts_fetch_t  *f = data;

    ngx_uint_t  i;

    i = f->replied++;

    if (f->outcome != NGX_OK) {
        return;
    }

    if (i < f->posts_to - f->posts_from) {
        f->outcome = ngx_social_posts_fetch_post(f,
                                                 &f->posts[f->posts_from + i],
                                                 reply);

    } else {
        f->outcome = ngx_social_posts_fetch_authors(f, reply);
    }
}


/* the round's last reply, the epoch: what next */

static void
ngx_social_posts_fetch_got(redisReply *reply, void *data)
{
    ngx_social_posts_fetch_t  *f = data;

    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = f->view->request;
    rc = f->outcome;

    if (rc == NGX_OK
        && (reply == NULL
            || f->replied != f->posts_to - f->posts_from
                             + (f->authors_from < f->authors_to ? 1 : 0)
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

    if (f->posts_to < f->nposts || f->authors_to < f->nauthors) {
        ngx_http_finalize_request(r, ngx_social_posts_fetch_round(f));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_posts_fetch_done(f));
}


/*
 * A post's HMGET: NGX_OK a hit (its author and original to ask next, if
 * they were not known), NGX_DECLINED not a hit, NGX_ERROR no memory.
 */

static ngx_int_t
ngx_social_posts_fetch_post(ngx_social_posts_fetch_t *f,
    ngx_social_posts_part_t *part, redisReply *reply)
{
    int64_t                   author;
    ngx_pool_t               *pool;
    redisReply              **e, *flags;
    ngx_social_posts_data_t  *d;

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements
           != f->nflags + (part->local ? NGX_SOCIAL_POSTS_NCHANGING
                                       : NGX_SOCIAL_POSTS_NFIELDS))
    {
        return NGX_DECLINED;
    }

    flags = reply->element[0];
    e = &reply->element[f->nflags];

    if (e[NGX_SOCIAL_POSTS_F_DELETED]->type != REDIS_REPLY_NIL
        || e[NGX_SOCIAL_POSTS_F_AUTHOR]->type != REDIS_REPLY_STRING)
    {
        return NGX_DECLINED;
    }

    pool = f->view->request->pool;
    d = &part->data;

    if (f->nflags == 0) {
        ngx_str_set(&d->flags, "00");

    } else if (flags->type != REDIS_REPLY_STRING || flags->len != 2) {
        return NGX_DECLINED;

    } else if (ngx_social_posts_reply_str(pool, flags, &d->flags) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_social_posts_fetch_counter(pool, e[NGX_SOCIAL_POSTS_F_LIKES],
                                       &d->likes)
           != NGX_OK
        || ngx_social_posts_fetch_counter(pool, e[NGX_SOCIAL_POSTS_F_SHARES],
                                          &d->shares)
           != NGX_OK
        || ngx_social_posts_fetch_counter(pool,
                                          e[NGX_SOCIAL_POSTS_F_REPLIES],
                                          &d->replies)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    author = ngx_atoof((u_char *) e[NGX_SOCIAL_POSTS_F_AUTHOR]->str,
                       e[NGX_SOCIAL_POSTS_F_AUTHOR]->len);

    if (part->local) {
        return author == part->author ? NGX_OK : NGX_DECLINED;
    }

    /* not known to the worker: the lasting parts came too */

    if (author <= 0 || e[NGX_SOCIAL_POSTS_F_TEXT]->type != REDIS_REPLY_STRING)
    {
        return NGX_DECLINED;
    }

    if (ngx_social_posts_reply_str(pool, e[NGX_SOCIAL_POSTS_F_TEXT],
                                   &d->text)
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

    ngx_social_posts_local_put(d->id, author, part->share_of, &d->text);
    ngx_social_posts_fetch_author(f, author);

    return part->share_of ? ngx_social_posts_fetch_add(f, part->share_of)
                          : NGX_OK;
}


static ngx_int_t
ngx_social_posts_fetch_authors(ngx_social_posts_fetch_t *f,
    redisReply *reply)
{
    ngx_uint_t  i, n;

    n = f->authors_to - f->authors_from;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        return NGX_DECLINED;
    }

    for (i = 0; i < n; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            return NGX_DECLINED;
        }

        if (ngx_social_posts_reply_str(f->view->request->pool,
                                       reply->element[i],
                                       &f->author_json[f->authors_from + i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
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


/* a cached counter; one never set is 0 (as the view script answers) */

static ngx_int_t
ngx_social_posts_fetch_counter(ngx_pool_t *pool, redisReply *reply,
    ngx_str_t *s)
{
    if (reply->type == REDIS_REPLY_NIL) {
        ngx_str_set(s, "0");
        return NGX_OK;
    }

    return ngx_social_posts_reply_str(pool, reply, s);
}
