/*
 * Figures of every worker in one shared memory zone, so that /metrics,
 * served by any one worker, reports the whole node.  Each worker owns a
 * slot and refreshes it every second from its adapters' figures (and once
 * more as it exits); readers add the slots up.
 */

#include "ngx_social_core_module.h"


#define NGX_SOCIAL_METRICS_SLOTS    64
#define NGX_SOCIAL_METRICS_PERIOD   1000


typedef struct {
    ngx_social_metrics_t        slots[NGX_SOCIAL_METRICS_SLOTS];
} ngx_social_metrics_shm_t;


static ngx_int_t ngx_social_metrics_init_zone(ngx_shm_zone_t *zone,
    void *data);
static void ngx_social_metrics_refresh(ngx_event_t *ev);
static void ngx_social_metrics_publish(void);


static ngx_shm_zone_t       *ngx_social_metrics_zone;
static ngx_social_metrics_t *ngx_social_metrics_slot;
static ngx_event_t           ngx_social_metrics_timer;
static ngx_uint_t            ngx_social_metrics_open_streams;

/* a timer's data is read as a connection by nginx's debug log */
static ngx_connection_t      ngx_social_metrics_dummy;


ngx_int_t
ngx_social_metrics_init(ngx_conf_t *cf)
{
    ngx_str_t  name = ngx_string("social_metrics");

    ngx_social_metrics_zone = ngx_shared_memory_add(cf, &name,
                                  ngx_align(sizeof(ngx_social_metrics_shm_t),
                                            ngx_pagesize)
                                  + 8 * ngx_pagesize,
                                  &ngx_social_core_module);
    if (ngx_social_metrics_zone == NULL) {
        return NGX_ERROR;
    }

    ngx_social_metrics_zone->init = ngx_social_metrics_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_social_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_social_metrics_shm_t  *shm;

    if (data) {
        /* a reload keeps the figures of the workers that go on */
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    shm = ngx_slab_calloc(shpool, sizeof(ngx_social_metrics_shm_t));
    if (shm == NULL) {
        return NGX_ERROR;
    }

    zone->data = shm;

    return NGX_OK;
}


ngx_int_t
ngx_social_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_social_metrics_shm_t  *shm;

    if (ngx_social_metrics_zone == NULL || ngx_worker
        >= NGX_SOCIAL_METRICS_SLOTS)
    {
        return NGX_OK;
    }

    shm = ngx_social_metrics_zone->data;
    ngx_social_metrics_slot = &shm->slots[ngx_worker];

    ngx_social_metrics_timer.handler = ngx_social_metrics_refresh;
    ngx_social_metrics_dummy.fd = (ngx_socket_t) -1;
    ngx_social_metrics_timer.data = &ngx_social_metrics_dummy;
    ngx_social_metrics_timer.log = cycle->log;
    ngx_social_metrics_timer.cancelable = 1;

    ngx_social_metrics_refresh(&ngx_social_metrics_timer);

    return NGX_OK;
}


/* an exiting worker's connections and queues are gone with it */

void
ngx_social_metrics_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_social_metrics_slot != NULL) {
        ngx_memzero(ngx_social_metrics_slot, sizeof(ngx_social_metrics_t));
        ngx_social_metrics_slot = NULL;
    }
}


/* the figures of every worker, added up */

void
ngx_social_metrics_collect(ngx_social_metrics_t *sum)
{
    ngx_uint_t                 i;
    ngx_social_metrics_t      *s;
    ngx_social_metrics_shm_t  *shm;

    ngx_memzero(sum, sizeof(ngx_social_metrics_t));

    if (ngx_social_metrics_slot != NULL) {
        ngx_social_metrics_publish();
    }

    if (ngx_social_metrics_zone == NULL) {
        return;
    }

    shm = ngx_social_metrics_zone->data;

    for (i = 0; i < NGX_SOCIAL_METRICS_SLOTS; i++) {
        s = &shm->slots[i];

        sum->pg.connections += s->pg.connections;
        sum->pg.busy += s->pg.busy;
        sum->pg.idle += s->pg.idle;
        sum->pg.queued += s->pg.queued;
        sum->pg.inflight += s->pg.inflight;
        sum->pg.queries += s->pg.queries;
        sum->pg.errors += s->pg.errors;
        sum->pg.timeouts += s->pg.timeouts;
        sum->pg.rejected += s->pg.rejected;
        sum->pg.reconnects += s->pg.reconnects;

        sum->redis.commands += s->redis.commands;
        sum->redis.errors += s->redis.errors;
        sum->redis.timeouts += s->redis.timeouts;
        sum->redis.reconnects += s->redis.reconnects;
        sum->redis.messages += s->redis.messages;
        sum->redis.pending += s->redis.pending;
        sum->redis.channels += s->redis.channels;
        sum->redis.connected += s->redis.connected;
        sum->redis.subscriber += s->redis.subscriber;

        sum->streams += s->streams;
    }
}


static void
ngx_social_metrics_refresh(ngx_event_t *ev)
{
    ngx_social_metrics_publish();

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_SOCIAL_METRICS_PERIOD);
    }
}


/* a stream opened (1) or closed (-1) on this worker */

void
ngx_social_metrics_streams(ngx_int_t delta)
{
    ngx_social_metrics_open_streams += delta;
}


/*
 * A worker writes only its own slot; a reader may see a slot half
 * written, which for monotonic counters read once a scrape is harmless.
 */

static void
ngx_social_metrics_publish(void)
{
    ngx_social_pg_get_stats(&ngx_social_metrics_slot->pg);
    ngx_social_redis_get_stats(&ngx_social_metrics_slot->redis);
    ngx_social_metrics_slot->streams = ngx_social_metrics_open_streams;
}
