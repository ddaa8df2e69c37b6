/*
 * Redis replies without an allocation per element: hiredis builds every
 * reply object with the functions below, in blocks of memory that belong
 * to the connection.  hiredis parses one reply at a time and frees it
 * (only its top object) after the reply's callback, before it parses the
 * next: that free empties the blocks.  A page of posts is a few hundred
 * objects, each a malloc() and a free() with hiredis's own functions.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_social_redis.h"


#define NGX_SOCIAL_REDIS_ARENA_BLOCK  16384


typedef struct ngx_social_redis_block_s  ngx_social_redis_block_t;

struct ngx_social_redis_block_s {
    ngx_social_redis_block_t   *next;
    u_char                     *last;
    u_char                     *end;
};


struct ngx_social_redis_arena_s {
    ngx_social_redis_block_t   *first;     /* kept while the arena lives */
    ngx_social_redis_block_t   *current;
};


static void *ngx_social_redis_arena_string(const redisReadTask *task,
    char *str, size_t len);
static void *ngx_social_redis_arena_array(const redisReadTask *task,
    int elements);
static void *ngx_social_redis_arena_integer(const redisReadTask *task,
    long long value);
static void *ngx_social_redis_arena_nil(const redisReadTask *task);
static void ngx_social_redis_arena_reply_free(void *reply);
static redisReply *ngx_social_redis_arena_object(const redisReadTask *task,
    size_t extra);
static void *ngx_social_redis_arena_alloc(ngx_social_redis_arena_t *arena,
    size_t size);
static ngx_social_redis_block_t *ngx_social_redis_arena_block(size_t size);
static void ngx_social_redis_arena_reset(ngx_social_redis_arena_t *arena);


static redisReplyObjectFunctions  ngx_social_redis_arena_functions = {
    .createString = ngx_social_redis_arena_string,
    .createArray = ngx_social_redis_arena_array,
    .createInteger = ngx_social_redis_arena_integer,
    .createNil = ngx_social_redis_arena_nil,
    .freeObject = ngx_social_redis_arena_reply_free
};


ngx_social_redis_arena_t *
ngx_social_redis_arena_create(void)
{
    ngx_social_redis_arena_t  *arena;

    arena = ngx_alloc(sizeof(ngx_social_redis_arena_t), ngx_cycle->log);
    if (arena == NULL) {
        return NULL;
    }

    arena->first = ngx_social_redis_arena_block(NGX_SOCIAL_REDIS_ARENA_BLOCK);
    if (arena->first == NULL) {
        ngx_free(arena);
        return NULL;
    }

    arena->current = arena->first;

    return arena;
}


/* the replies of ac's connection from now on */

void
ngx_social_redis_arena_attach(ngx_social_redis_arena_t *arena,
    redisAsyncContext *ac)
{
    ngx_social_redis_arena_reset(arena);

    ac->c.reader->fn = &ngx_social_redis_arena_functions;
    ac->c.reader->privdata = arena;
}


/* after the connection's reader was freed */

void
ngx_social_redis_arena_free(ngx_social_redis_arena_t *arena)
{
    if (arena == NULL) {
        return;
    }

    ngx_social_redis_arena_reset(arena);
    ngx_free(arena->first);
    ngx_free(arena);
}


static void *
ngx_social_redis_arena_string(const redisReadTask *task, char *str,
    size_t len)
{
    redisReply  *r;

    r = ngx_social_redis_arena_object(task, len + 1);
    if (r == NULL) {
        return NULL;
    }

    r->str = (char *) &r[1];
    r->len = len;
    ngx_memcpy(r->str, str, len);
    r->str[len] = '\0';

    return r;
}


static void *
ngx_social_redis_arena_array(const redisReadTask *task, int elements)
{
    size_t       size;
    redisReply  *r;

    size = (size_t) elements * sizeof(redisReply *);

    r = ngx_social_redis_arena_object(task, size);
    if (r == NULL) {
        return NULL;
    }

    r->elements = elements;

    if (elements > 0) {
        r->element = (redisReply **) &r[1];
        ngx_memzero(r->element, size);
    }

    return r;
}


static void *
ngx_social_redis_arena_integer(const redisReadTask *task, long long value)
{
    redisReply  *r;

    r = ngx_social_redis_arena_object(task, 0);
    if (r == NULL) {
        return NULL;
    }

    r->integer = value;

    return r;
}


static void *
ngx_social_redis_arena_nil(const redisReadTask *task)
{
    redisReply  *r;

    /* the task's type is the one of "$-1" or "*-1" */

    r = ngx_social_redis_arena_object(task, 0);
    if (r == NULL) {
        return NULL;
    }

    r->type = REDIS_REPLY_NIL;

    return r;
}


/*
 * hiredis frees only whole replies, one at a time: every object is
 * preceded by its arena if it is a reply's top object, by NULL if not
 */

static void
ngx_social_redis_arena_reply_free(void *reply)
{
    ngx_social_redis_arena_t  *arena;

    arena = ((ngx_social_redis_arena_t **) reply)[-1];

    if (arena != NULL) {
        ngx_social_redis_arena_reset(arena);
    }
}


static redisReply *
ngx_social_redis_arena_object(const redisReadTask *task, size_t extra)
{
    u_char                     *p;
    redisReply                 *r, *parent;
    ngx_social_redis_arena_t   *arena;

    arena = task->privdata;

    p = ngx_social_redis_arena_alloc(arena, sizeof(ngx_social_redis_arena_t *)
                                            + sizeof(redisReply) + extra);
    if (p == NULL) {
        return NULL;
    }

    *(ngx_social_redis_arena_t **) p = (task->parent == NULL) ? arena : NULL;

    r = (redisReply *) (p + sizeof(ngx_social_redis_arena_t *));
    ngx_memzero(r, sizeof(redisReply));
    r->type = task->type;

    if (task->parent != NULL) {
        parent = task->parent->obj;
        parent->element[task->idx] = r;
    }

    return r;
}


static void *
ngx_social_redis_arena_alloc(ngx_social_redis_arena_t *arena, size_t size)
{
    u_char                    *p;
    ngx_social_redis_block_t  *b;

    size = ngx_align(size, sizeof(void *));
    b = arena->current;

    if ((size_t) (b->end - b->last) < size) {
        b = ngx_social_redis_arena_block(ngx_max(size,
                                             NGX_SOCIAL_REDIS_ARENA_BLOCK));
        if (b == NULL) {
            return NULL;
        }

        arena->current->next = b;
        arena->current = b;
    }

    p = b->last;
    b->last += size;

    return p;
}


static ngx_social_redis_block_t *
ngx_social_redis_arena_block(size_t size)
{
    ngx_social_redis_block_t  *b;

    b = ngx_alloc(sizeof(ngx_social_redis_block_t) + size, ngx_cycle->log);
    if (b == NULL) {
        return NULL;
    }

    b->next = NULL;
    b->last = (u_char *) &b[1];
    b->end = b->last + size;

    return b;
}


/* empty again: the first block kept, the others freed */

static void
ngx_social_redis_arena_reset(ngx_social_redis_arena_t *arena)
{
    ngx_social_redis_block_t  *b, *next;

    for (b = arena->first->next; b != NULL; b = next) {
        next = b->next;
        ngx_free(b);
    }

    arena->first->next = NULL;
    arena->first->last = (u_char *) &arena->first[1];
    arena->current = arena->first;
}
