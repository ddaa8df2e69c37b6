/*
 * Figures of every worker in one shared memory zone, so that /metrics,
 * served by any one worker, reports the whole node.  Each worker owns a
 * slot and refreshes it every second from its adapters' figures and its
 * process's CPU time and memory (and once more as it exits); readers add
 * the slots up.  Requests by route are counted at once into atomics that
 * every worker shares: no lock on the request path.
 */

#include "ngx_social_core_module.h"
#include <sys/resource.h>


#define NGX_SOCIAL_METRICS_SLOTS    64
#define NGX_SOCIAL_METRICS_ROUTES   128
#define NGX_SOCIAL_METRICS_PERIOD   1000


typedef struct {
    ngx_social_metrics_t        slots[NGX_SOCIAL_METRICS_SLOTS];
    ngx_social_metrics_worker_t workers[NGX_SOCIAL_METRICS_SLOTS];
    ngx_social_metrics_route_t  routes[NGX_SOCIAL_METRICS_ROUTES];
} ngx_social_metrics_shm_t;


static ngx_int_t ngx_social_metrics_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_social_metrics_map_routes(
    ngx_social_core_main_conf_t *cmcf, ngx_social_metrics_shm_t *shm,
    ngx_log_t *log);
static void ngx_social_metrics_refresh(ngx_event_t *ev);
static void ngx_social_metrics_publish(void);
static void ngx_social_metrics_process(ngx_social_metrics_worker_t *w);


/* upper bounds of the latency buckets, ms; the last bucket is +Inf */
ngx_msec_t  ngx_social_metrics_bounds[NGX_SOCIAL_METRICS_BUCKETS - 1] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


static ngx_shm_zone_t       *ngx_social_metrics_zone;
static ngx_social_metrics_t *ngx_social_metrics_slot;
static ngx_social_metrics_worker_t  *ngx_social_metrics_self;
static ngx_event_t           ngx_social_metrics_timer;
static ngx_uint_t            ngx_social_metrics_open_streams;

/* a timer's data is read as a connection by nginx's debug log */
static ngx_connection_t      ngx_social_metrics_dummy;


ngx_int_t
ngx_social_metrics_init(ngx_conf_t *cf)
{
    ngx_str_t                     name = ngx_string("social_metrics");
    ngx_social_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_social_core_module);

    ngx_social_metrics_zone = ngx_shared_memory_add(cf, &name,
                                  ngx_align(sizeof(ngx_social_metrics_shm_t),
                                            ngx_pagesize)
                                  + 8 * ngx_pagesize,
                                  &ngx_social_core_module);
    if (ngx_social_metrics_zone == NULL) {
        return NGX_ERROR;
    }

    ngx_social_metrics_zone->init = ngx_social_metrics_init_zone;

    /* the route names are complete when the zone is initialized */
    ngx_social_metrics_zone->data = cmcf;

    return NGX_OK;
}


/*
 * A route name (an API pattern or a location's name) for the request
 * figures: its index in the configuration, the same for the same name.
 */

ngx_int_t
ngx_social_metrics_route(ngx_conf_t *cf, ngx_str_t *name)
{
    u_char                       *p;
    ngx_str_t                    *names, *n;
    ngx_uint_t                    i;
    ngx_social_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_social_core_module);
    names = cmcf->metric_names.elts;

    for (i = 0; i < cmcf->metric_names.nelts; i++) {
        if (names[i].len == name->len
            && ngx_strncmp(names[i].data, name->data, name->len) == 0)
        {
            return i;
        }
    }

    if (name->len == 0 || name->len > NGX_SOCIAL_METRICS_NAME) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "social metrics: a route name must have 1 to %d "
                           "characters: \"%V\"", NGX_SOCIAL_METRICS_NAME,
                           name);
        return NGX_ERROR;
    }

    /* names become label values: no quote, backslash or control */

    for (p = name->data; p < name->data + name->len; p++) {
        if (*p == '"' || *p == '\\' || *p < 0x20 || *p == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "social metrics: the route name \"%V\" has "
                               "a quote, a backslash or a control character",
                               name);
            return NGX_ERROR;
        }
    }

    if (cmcf->metric_names.nelts == NGX_SOCIAL_METRICS_ROUTES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "social metrics: more than %d route names",
                           NGX_SOCIAL_METRICS_ROUTES);
        return NGX_ERROR;
    }

    n = ngx_array_push(&cmcf->metric_names);
    if (n == NULL) {
        return NGX_ERROR;
    }

    *n = *name;

    return cmcf->metric_names.nelts - 1;
}


static ngx_int_t
ngx_social_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t              *shpool;
    ngx_social_metrics_shm_t     *shm;
    ngx_social_core_main_conf_t  *cmcf;

    cmcf = zone->data;

    if (data) {
        /* a reload keeps the figures of the workers that go on */
        shm = data;

    } else {
        shpool = (ngx_slab_pool_t *) zone->shm.addr;

        shm = ngx_slab_calloc(shpool, sizeof(ngx_social_metrics_shm_t));
        if (shm == NULL) {
            return NGX_ERROR;
        }
    }

    zone->data = shm;

    return ngx_social_metrics_map_routes(cmcf, shm, zone->shm.log);
}


/*
 * Each configured name gets the shared slot of that name, or a free one:
 * across reloads a route keeps its counters, and old workers that go on
 * count into the slots of the names they know.
 */

static ngx_int_t
ngx_social_metrics_map_routes(ngx_social_core_main_conf_t *cmcf,
    ngx_social_metrics_shm_t *shm, ngx_log_t *log)
{
    ngx_str_t                   *names;
    ngx_uint_t                   i, j, free;
    ngx_social_metrics_route_t  *slot;

    names = cmcf->metric_names.elts;

    cmcf->metric_slots = ngx_palloc(cmcf->metric_names.pool,
                                    cmcf->metric_names.nelts
                                    * sizeof(ngx_social_metrics_route_t *));
    if (cmcf->metric_slots == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < cmcf->metric_names.nelts; i++) {
        free = NGX_SOCIAL_METRICS_ROUTES;

        for (j = 0; j < NGX_SOCIAL_METRICS_ROUTES; j++) {
            slot = &shm->routes[j];

            if (slot->len == 0) {
                free = ngx_min(free, j);
                continue;
            }

            if (slot->len == names[i].len
                && ngx_strncmp(slot->name, names[i].data, slot->len) == 0)
            {
                break;
            }
        }

        if (j == NGX_SOCIAL_METRICS_ROUTES) {
            if (free == NGX_SOCIAL_METRICS_ROUTES) {
                ngx_log_error(NGX_LOG_EMERG, log, 0,
                              "social metrics: no free route slot for "
                              "\"%V\" (restart nginx to reclaim the slots "
                              "of routes gone)", &names[i]);
                return NGX_ERROR;
            }

            j = free;
            slot = &shm->routes[j];
            ngx_memcpy(slot->name, names[i].data, names[i].len);
            slot->len = names[i].len;
        }

        cmcf->metric_slots[i] = &shm->routes[j];
    }

    return NGX_OK;
}


/* a finished request: its route (a configured index), status, latency */

void
ngx_social_metrics_request(ngx_http_request_t *r, ngx_uint_t route,
    ngx_uint_t status, ngx_msec_t ms)
{
    ngx_uint_t                    b;
    ngx_social_metrics_route_t   *slot;
    ngx_social_core_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_social_core_module);

    if (cmcf->metric_slots == NULL || route >= cmcf->metric_names.nelts) {
        return;
    }

    slot = cmcf->metric_slots[route];

    for (b = 0; b < NGX_SOCIAL_METRICS_BUCKETS - 1; b++) {
        if (ms <= ngx_social_metrics_bounds[b]) {
            break;
        }
    }

    if (status >= NGX_SOCIAL_METRICS_STATUSES || status < 100) {
        status = 0;
    }

    (void) ngx_atomic_fetch_add(&slot->status[status], 1);
    (void) ngx_atomic_fetch_add(&slot->latency[b], 1);
    (void) ngx_atomic_fetch_add(&slot->latency_ms, ms);
}


ngx_uint_t
ngx_social_metrics_nroutes(ngx_http_request_t *r)
{
    ngx_social_core_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_social_core_module);

    return cmcf->metric_slots ? cmcf->metric_names.nelts : 0;
}


ngx_social_metrics_route_t *
ngx_social_metrics_route_at(ngx_http_request_t *r, ngx_uint_t route)
{
    ngx_social_core_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_social_core_module);

    return cmcf->metric_slots[route];
}


/* worker n's process figures (pid 0: no such worker) */

ngx_social_metrics_worker_t *
ngx_social_metrics_worker(ngx_uint_t n)
{
    ngx_social_metrics_shm_t  *shm;

    if (ngx_social_metrics_zone == NULL || n >= NGX_SOCIAL_METRICS_SLOTS) {
        return NULL;
    }

    shm = ngx_social_metrics_zone->data;

    return &shm->workers[n];
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
    ngx_social_metrics_self = &shm->workers[ngx_worker];

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

    if (ngx_social_metrics_self != NULL
        && ngx_social_metrics_self->pid == ngx_pid)
    {
        ngx_memzero(ngx_social_metrics_self,
                    sizeof(ngx_social_metrics_worker_t));
        ngx_social_metrics_self = NULL;
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
    ngx_social_metrics_process(ngx_social_metrics_self);
}


/* CPU time (getrusage) and resident memory (/proc/self/statm) */

static void
ngx_social_metrics_process(ngx_social_metrics_worker_t *w)
{
    u_char         *p, *last;
    ssize_t         n;
    ngx_fd_t        fd;
    ngx_uint_t      field;
    struct rusage   ru;
    u_char          buf[128];

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        w->cpu_user = (uint64_t) ru.ru_utime.tv_sec * 1000000
                      + ru.ru_utime.tv_usec;
        w->cpu_system = (uint64_t) ru.ru_stime.tv_sec * 1000000
                        + ru.ru_stime.tv_usec;
    }

    w->pid = ngx_pid;

    /* "size resident shared ...", in pages; procfs does not block */

    fd = ngx_open_file("/proc/self/statm", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return;
    }

    n = ngx_read_fd(fd, buf, sizeof(buf));
    (void) ngx_close_file(fd);

    if (n <= 0) {
        return;
    }

    p = buf;
    last = buf + n;

    for (field = 0; field < 1 && p < last; p++) {
        if (*p == ' ') {
            field++;
        }
    }

    for (n = 0; p < last && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
    }

    w->rss = (uint64_t) n * ngx_pagesize;
}
