/*
 * The parts of posts that never change (the text with its time and
 * reply_to_id, the author's id, the original of a share), kept by each
 * worker: a page of cached posts then asks Redis only for what changes.
 *
 * Post ids are never reused while nginx runs (a restore refuses while the
 * API is connected), so an entry never goes stale; whether the post still
 * exists, and everything that changes, is asked of Redis on every read.
 *
 * With them, values by name that are only believed once Redis confirms
 * them: the ids of the feed pages last read (by the user and the page's
 * arguments), a guess of the next read of the same page, whose posts are
 * then asked in the same round trip as the page's ids
 * (ngx_social_posts_feed.c); and authors with the generation of all
 * authors they were read under (ngx_social_posts_fetch.c).
 *
 * At most social_posts_local_cache bytes, the least recently used out
 * first, in a hash table of about one bucket per
 * NGX_SOCIAL_POSTS_LOCAL_BUCKET bytes; freed when the worker exits.
 */

#include "ngx_social_posts.h"


/* a named value's key: a hash of its name with the high bit (no post's) */
#define NGX_SOCIAL_POSTS_LOCAL_NAMED   ((uint64_t) 1 << 63)

/* bytes per bucket of the table, and its buckets at most */
#define NGX_SOCIAL_POSTS_LOCAL_BUCKET  256
#define NGX_SOCIAL_POSTS_LOCAL_BITS    20


typedef struct ngx_social_posts_local_node_s  ngx_social_posts_local_node_t;

struct ngx_social_posts_local_node_s {
    ngx_social_posts_local_node_t  *next;  /* in its bucket */
    uint64_t                    key;       /* the post's id, or the hash */
    ngx_queue_t                 queue;     /* the most recently used first */
    size_t                      size;
    ngx_social_posts_local_t    post;      /* named: text is the name */
    ngx_str_t                   value;
};


static ngx_social_posts_local_node_t **ngx_social_posts_local_bucket(
    uint64_t key);
static ngx_social_posts_local_node_t *ngx_social_posts_local_find(
    uint64_t key);
static void ngx_social_posts_local_insert(ngx_social_posts_local_node_t *ln,
    uint64_t key, size_t size);
static uint64_t ngx_social_posts_local_named_key(ngx_str_t *name);
static void ngx_social_posts_local_remove(ngx_social_posts_local_node_t *ln);
static void ngx_social_posts_local_evict(size_t size);


static ngx_social_posts_local_node_t  **ngx_social_posts_local_table;
static ngx_uint_t   ngx_social_posts_local_bits;
static ngx_queue_t  ngx_social_posts_local_lru;
static size_t       ngx_social_posts_local_used;
static size_t       ngx_social_posts_local_max;


void
ngx_social_posts_local_init(size_t max)
{
    ngx_uint_t  bits;

    ngx_queue_init(&ngx_social_posts_local_lru);
    ngx_social_posts_local_used = 0;
    ngx_social_posts_local_max = 0;

    if (max == 0) {
        return;
    }

    for (bits = 4;
         bits < NGX_SOCIAL_POSTS_LOCAL_BITS
         && ((size_t) 1 << bits) * NGX_SOCIAL_POSTS_LOCAL_BUCKET < max;
         bits++)
    {
        /* void */
    }

    ngx_social_posts_local_table =
        ngx_calloc(((size_t) 1 << bits)
                   * sizeof(ngx_social_posts_local_node_t *), ngx_cycle->log);
    if (ngx_social_posts_local_table == NULL) {
        return;
    }

    ngx_social_posts_local_bits = bits;
    ngx_social_posts_local_max = max;
}


/* the post's lasting parts, or NULL; valid until the next put */

ngx_social_posts_local_t *
ngx_social_posts_local_get(int64_t id)
{
    ngx_social_posts_local_node_t  *ln;

    ln = ngx_social_posts_local_find((uint64_t) id);

    return ln ? &ln->post : NULL;
}


/* Fibonacci hashing: post ids differ mostly in their high bits */

static ngx_social_posts_local_node_t **
ngx_social_posts_local_bucket(uint64_t key)
{
    key *= 0x9e3779b97f4a7c15ULL;
    key >>= 64 - ngx_social_posts_local_bits;

    return &ngx_social_posts_local_table[key];
}


static ngx_social_posts_local_node_t *
ngx_social_posts_local_find(uint64_t key)
{
    ngx_social_posts_local_node_t  *ln;

    if (ngx_social_posts_local_max == 0) {
        return NULL;
    }

    for (ln = *ngx_social_posts_local_bucket(key); ln; ln = ln->next) {

        if (ln->key == key) {
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(&ngx_social_posts_local_lru, &ln->queue);

            return ln;
        }
    }

    return NULL;
}


static void
ngx_social_posts_local_insert(ngx_social_posts_local_node_t *ln,
    uint64_t key, size_t size)
{
    ngx_social_posts_local_node_t  **bucket;

    bucket = ngx_social_posts_local_bucket(key);

    ln->key = key;
    ln->size = size;
    ln->next = *bucket;
    *bucket = ln;

    ngx_queue_insert_head(&ngx_social_posts_local_lru, &ln->queue);
    ngx_social_posts_local_used += size;
}


/* keeps a post's lasting parts (a copy); without memory, keeps nothing */

void
ngx_social_posts_local_put(int64_t id, int64_t author, int64_t share_of,
    ngx_str_t *text)
{
    size_t                          size;
    ngx_social_posts_local_node_t  *ln;

    size = sizeof(ngx_social_posts_local_node_t) + text->len;

    if (size > ngx_social_posts_local_max
        || ngx_social_posts_local_get(id) != NULL)
    {
        return;
    }

    ngx_social_posts_local_evict(size);

    ln = ngx_alloc(size, ngx_cycle->log);
    if (ln == NULL) {
        return;
    }

    ln->post.author = author;
    ln->post.share_of = share_of;
    ln->post.text.len = text->len;
    ln->post.text.data = (u_char *) &ln[1];
    ngx_memcpy(ln->post.text.data, text->data, text->len);

    ngx_social_posts_local_insert(ln, (uint64_t) id, size);
}


/* the value named name, or NULL; valid until the next put */

ngx_str_t *
ngx_social_posts_local_named_get(ngx_str_t *name)
{
    ngx_social_posts_local_node_t  *ln;

    ln = ngx_social_posts_local_find(ngx_social_posts_local_named_key(name));

    if (ln == NULL || ln->post.text.len != name->len
        || ngx_memcmp(ln->post.text.data, name->data, name->len) != 0)
    {
        return NULL;
    }

    return &ln->value;
}


/* keeps a copy of a value named name, in place of any before */

void
ngx_social_posts_local_named_put(ngx_str_t *name, ngx_str_t *value)
{
    size_t                          size;
    uint64_t                        key;
    ngx_social_posts_local_node_t  *ln;

    key = ngx_social_posts_local_named_key(name);

    ln = ngx_social_posts_local_find(key);
    if (ln != NULL) {
        ngx_social_posts_local_remove(ln);
    }

    size = sizeof(ngx_social_posts_local_node_t) + value->len + name->len;

    if (size > ngx_social_posts_local_max) {
        return;
    }

    ngx_social_posts_local_evict(size);

    ln = ngx_alloc(size, ngx_cycle->log);
    if (ln == NULL) {
        return;
    }

    ln->post.author = 0;
    ln->post.share_of = 0;
    ln->value.len = value->len;
    ln->value.data = (u_char *) &ln[1];
    ln->post.text.len = name->len;
    ln->post.text.data = ln->value.data + value->len;
    ngx_memcpy(ln->value.data, value->data, value->len);
    ngx_memcpy(ln->post.text.data, name->data, name->len);

    ngx_social_posts_local_insert(ln, key, size);
}


/* FNV-1a */

static uint64_t
ngx_social_posts_local_named_key(ngx_str_t *name)
{
    uint64_t    h;
    ngx_uint_t  i;

    h = 14695981039346656037ULL;

    for (i = 0; i < name->len; i++) {
        h = (h ^ name->data[i]) * 1099511628211ULL;
    }

    return h | NGX_SOCIAL_POSTS_LOCAL_NAMED;
}


static void
ngx_social_posts_local_remove(ngx_social_posts_local_node_t *ln)
{
    ngx_social_posts_local_node_t  **next;

    for (next = ngx_social_posts_local_bucket(ln->key);
         *next != ln;
         next = &(*next)->next)
    {
        /* void */
    }

    *next = ln->next;

    ngx_queue_remove(&ln->queue);
    ngx_social_posts_local_used -= ln->size;

    ngx_free(ln);
}


/* the least recently used out until size more fits */

static void
ngx_social_posts_local_evict(size_t size)
{
    ngx_queue_t                    *q;
    ngx_social_posts_local_node_t  *ln;

    while (ngx_social_posts_local_used + size > ngx_social_posts_local_max
           && !ngx_queue_empty(&ngx_social_posts_local_lru))
    {
        q = ngx_queue_last(&ngx_social_posts_local_lru);
        ln = ngx_queue_data(q, ngx_social_posts_local_node_t, queue);

        ngx_social_posts_local_remove(ln);
    }
}


void
ngx_social_posts_local_exit(void)
{
    if (ngx_social_posts_local_table == NULL) {
        return;
    }

    ngx_social_posts_local_max = 0;
    ngx_social_posts_local_evict(0);

    ngx_free(ngx_social_posts_local_table);
    ngx_social_posts_local_table = NULL;
}
