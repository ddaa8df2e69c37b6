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
 * first; freed when the worker exits.
 */

#include "ngx_social_posts.h"


/* a named value's key: a hash of its name with the high bit (no post's) */
#define NGX_SOCIAL_POSTS_LOCAL_NAMED                                          \
    ((ngx_rbtree_key_t) 1 << (sizeof(ngx_rbtree_key_t) * 8 - 1))


typedef struct {
    ngx_rbtree_node_t           node;      /* the post's id, or the hash */
    ngx_queue_t                 queue;     /* the most recently used first */
    size_t                      size;
    ngx_social_posts_local_t    post;      /* named: text is the name */
    ngx_str_t                   value;
} ngx_social_posts_local_node_t;


static ngx_social_posts_local_node_t *ngx_social_posts_local_find(
    ngx_rbtree_key_t key);
static ngx_rbtree_key_t ngx_social_posts_local_named_key(ngx_str_t *name);
static void ngx_social_posts_local_remove(ngx_social_posts_local_node_t *ln);
static void ngx_social_posts_local_evict(size_t size);


static ngx_rbtree_t       ngx_social_posts_local_tree;
static ngx_rbtree_node_t  ngx_social_posts_local_sentinel;
static ngx_queue_t        ngx_social_posts_local_lru;
static size_t             ngx_social_posts_local_used;
static size_t             ngx_social_posts_local_max;


void
ngx_social_posts_local_init(size_t max)
{
    ngx_rbtree_init(&ngx_social_posts_local_tree,
                    &ngx_social_posts_local_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&ngx_social_posts_local_lru);

    ngx_social_posts_local_used = 0;
    ngx_social_posts_local_max = max;
}


/* the post's lasting parts, or NULL; valid until the next put */

ngx_social_posts_local_t *
ngx_social_posts_local_get(int64_t id)
{
    ngx_social_posts_local_node_t  *ln;

    ln = ngx_social_posts_local_find((ngx_rbtree_key_t) id);

    return ln ? &ln->post : NULL;
}


static ngx_social_posts_local_node_t *
ngx_social_posts_local_find(ngx_rbtree_key_t key)
{
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_social_posts_local_node_t  *ln;

    node = ngx_social_posts_local_tree.root;
    sentinel = ngx_social_posts_local_tree.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        ln = (ngx_social_posts_local_node_t *) node;

        ngx_queue_remove(&ln->queue);
        ngx_queue_insert_head(&ngx_social_posts_local_lru, &ln->queue);

        return ln;
    }

    return NULL;
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

    ln->node.key = (ngx_rbtree_key_t) id;
    ln->size = size;
    ln->post.author = author;
    ln->post.share_of = share_of;
    ln->post.text.len = text->len;
    ln->post.text.data = (u_char *) &ln[1];
    ngx_memcpy(ln->post.text.data, text->data, text->len);

    ngx_rbtree_insert(&ngx_social_posts_local_tree, &ln->node);
    ngx_queue_insert_head(&ngx_social_posts_local_lru, &ln->queue);
    ngx_social_posts_local_used += size;
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
    ngx_rbtree_key_t                key;
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

    ln->node.key = key;
    ln->size = size;
    ln->post.author = 0;
    ln->post.share_of = 0;
    ln->value.len = value->len;
    ln->value.data = (u_char *) &ln[1];
    ln->post.text.len = name->len;
    ln->post.text.data = ln->value.data + value->len;
    ngx_memcpy(ln->value.data, value->data, value->len);
    ngx_memcpy(ln->post.text.data, name->data, name->len);

    ngx_rbtree_insert(&ngx_social_posts_local_tree, &ln->node);
    ngx_queue_insert_head(&ngx_social_posts_local_lru, &ln->queue);
    ngx_social_posts_local_used += size;
}


/* FNV-1a */

static ngx_rbtree_key_t
ngx_social_posts_local_named_key(ngx_str_t *name)
{
    uint64_t    h;
    ngx_uint_t  i;

    h = 14695981039346656037ULL;

    for (i = 0; i < name->len; i++) {
        h = (h ^ name->data[i]) * 1099511628211ULL;
    }

    return (ngx_rbtree_key_t) h | NGX_SOCIAL_POSTS_LOCAL_NAMED;
}


static void
ngx_social_posts_local_remove(ngx_social_posts_local_node_t *ln)
{
    ngx_queue_remove(&ln->queue);
    ngx_rbtree_delete(&ngx_social_posts_local_tree, &ln->node);
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
    if (ngx_social_posts_local_lru.next == NULL) {
        return;
    }

    ngx_social_posts_local_max = 0;
    ngx_social_posts_local_evict(0);
}
