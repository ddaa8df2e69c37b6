/*
 * The parts of posts that never change (the text with its time and
 * reply_to_id, the author's id, the original of a share), kept by each
 * worker: a page of cached posts then asks Redis only for what changes.
 *
 * Post ids are never reused while nginx runs (a restore refuses while the
 * API is connected), so an entry never goes stale; whether the post still
 * exists, and everything that changes, is asked of Redis on every read.
 * At most social_posts_local_cache bytes, the least recently used out
 * first; freed when the worker exits.
 */

#include "ngx_social_posts.h"


typedef struct {
    ngx_rbtree_node_t           node;      /* key: the post's id */
    ngx_queue_t                 queue;     /* the most recently used first */
    size_t                      size;
    ngx_social_posts_local_t    post;
} ngx_social_posts_local_node_t;


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
    ngx_rbtree_key_t                key;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_social_posts_local_node_t  *ln;

    key = (ngx_rbtree_key_t) id;
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

        return &ln->post;
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

        ngx_queue_remove(q);
        ngx_rbtree_delete(&ngx_social_posts_local_tree, &ln->node);
        ngx_social_posts_local_used -= ln->size;

        ngx_free(ln);
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
