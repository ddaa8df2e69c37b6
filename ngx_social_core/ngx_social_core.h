/*
 * ngx_social_core: the runtime every ngx_social_* module builds on.
 *
 * It is loaded first (nginx dlopens modules with RTLD_GLOBAL), so the
 * service modules call these functions directly.
 */

#ifndef _NGX_SOCIAL_CORE_H_INCLUDED_
#define _NGX_SOCIAL_CORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>
#include "ngx_social_pg.h"
#include "ngx_social_jwt.h"
#include "ngx_social_redis.h"


#define NGX_SOCIAL_MAX_PARAMS        4
#define NGX_SOCIAL_MAX_BODY          (1024 * 1024)

/* route flags */
#define NGX_SOCIAL_ROUTE_JSON_BODY   0x01    /* body must be a JSON object */
#define NGX_SOCIAL_ROUTE_AUTH        0x02    /* a user is required */
#define NGX_SOCIAL_ROUTE_AUTH_OPTIONAL  0x04 /* a user if a token is given */
#define NGX_SOCIAL_ROUTE_TOKEN_ARG   0x08    /* ?access_token= is accepted */
#define NGX_SOCIAL_ROUTE_RAW_BODY    0x10    /* the body is read, unparsed */
#define NGX_SOCIAL_ROUTE_UNLIMITED   0x20    /* no rate limit (operations) */
#define NGX_SOCIAL_ROUTE_LOGIN       0x40    /* the "login" rate limit */


typedef struct ngx_social_ctx_s  ngx_social_ctx_t;

/* work runs in a pool thread; done resumes the request on the loop */
typedef void (*ngx_social_work_pt)(void *data);
typedef void (*ngx_social_done_pt)(ngx_http_request_t *r, void *data);

typedef ngx_int_t (*ngx_social_handler_pt)(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);


typedef struct {
    ngx_uint_t                  methods;   /* NGX_HTTP_GET|NGX_HTTP_POST... */
    ngx_str_t                   pattern;   /* "/v1/users/{id}/follow" */
    ngx_social_handler_pt       handler;
    ngx_uint_t                  flags;
} ngx_social_route_t;


/*
 * Whether a verified token was revoked (set by the users module): NGX_OK
 * valid, NGX_DECLINED revoked, NGX_AGAIN not known yet (the worker's
 * mirror is loading; the request waits for ngx_social_auth_ready()).
 */
typedef ngx_int_t (*ngx_social_auth_revoked_pt)(ngx_social_token_t *token);


struct ngx_social_ctx_s {
    ngx_queue_t                 waiting;   /* for the revocation mirror */
    ngx_event_t                 wait;
    ngx_http_request_t         *request;
    ngx_social_handler_pt       resume;    /* once the mirror is loaded */
    ngx_social_route_t         *route;
    ngx_uint_t                  metric;    /* the route's metrics slot */
    int64_t                     user_id;   /* 0: anonymous */
    ngx_social_token_t          token;
    ngx_str_t                   params[NGX_SOCIAL_MAX_PARAMS];
    ngx_uint_t                  nparams;
    json_t                     *body;      /* owned by a pool cleanup */
};


/* the node's figures: every worker's, added up */
typedef struct {
    ngx_social_pg_stats_t       pg;
    ngx_social_redis_stats_t    redis;
    ngx_uint_t                  streams;   /* open WebSocket and SSE */
} ngx_social_metrics_t;


/* one worker's process figures */
typedef struct {
    ngx_pid_t                   pid;       /* 0: no such worker */
    uint64_t                    cpu_user;  /* microseconds */
    uint64_t                    cpu_system;
    uint64_t                    rss;       /* bytes */
} ngx_social_metrics_worker_t;


/*
 * Requests by route: API routes are named by their pattern, other
 * locations by "social_metrics_route"; slot 0 is "unmatched", 1 "other".
 * Every worker adds to the same atomics.  Latency buckets hold the
 * requests of their own range only (le = the bound, the last is +Inf).
 */
#define NGX_SOCIAL_METRICS_UNMATCHED  0
#define NGX_SOCIAL_METRICS_OTHER      1
#define NGX_SOCIAL_METRICS_STATUSES   600      /* below 100: slot 0 */
#define NGX_SOCIAL_METRICS_BUCKETS    14
#define NGX_SOCIAL_METRICS_NAME       96

typedef struct {
    ngx_atomic_t                status[NGX_SOCIAL_METRICS_STATUSES];
    ngx_atomic_t                latency[NGX_SOCIAL_METRICS_BUCKETS];
    ngx_atomic_t                latency_ms;    /* the sum */
    size_t                      len;
    u_char                      name[NGX_SOCIAL_METRICS_NAME];
} ngx_social_metrics_route_t;

extern ngx_msec_t  ngx_social_metrics_bounds[NGX_SOCIAL_METRICS_BUCKETS - 1];


/* Idempotency-Key: claimed() goes on in tx, whose write stores the answer */
typedef void (*ngx_social_idem_pt)(ngx_http_request_t *r,
    ngx_social_pg_tx_t *tx, void *data);

/*
 * A CTE body for a route's write statement: stores the answer in the
 * claimed row (user, path, key as parameters; a NULL key matches nothing,
 * so the same statement serves requests without a key).
 */
#define NGX_SOCIAL_IDEM_STORE(user, path, key, status, body)                 \
    "UPDATE idempotency_keys SET status = " status ", body = " body          \
    " WHERE user_id = " user " AND route = " path " AND key = " key


/* SQL: a timestamptz as the contract's RFC 3339 UTC with milliseconds */
#define NGX_SOCIAL_SQL_TIME(col)                                             \
    "to_char(" col " AT TIME ZONE 'UTC', "                                   \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* SQL: a user's public view as JSON text (columns of users unqualified) */
#define NGX_SOCIAL_SQL_USER_FIELDS                                           \
    "'id', id::text, 'username', username, "                                \
    "'display_name', display_name, 'bio', bio, "                            \
    "'created_at', " NGX_SOCIAL_SQL_TIME("created_at") ", "                 \
    "'followers_count', followers_count, "                                  \
    "'following_count', following_count, "                                  \
    "'posts_count', posts_count"

#define NGX_SOCIAL_SQL_USER_PUBLIC                                           \
    NGX_SOCIAL_SQL_OBJECT(NGX_SOCIAL_SQL_USER_FIELDS)

/*
 * SQL: an object of fields that are never null, as compact JSON text
 * (json_strip_nulls writes without spaces; the C-built parts of answers
 * are compact too)
 */
#define NGX_SOCIAL_SQL_OBJECT(fields)                                        \
    "json_strip_nulls(json_build_object(" fields "))::text"

/* SQL: a user as a post's author or a notification's actor, JSON text */
#define NGX_SOCIAL_SQL_ACTOR(u)                                              \
    "('{\"id\":\"' || " u ".id::text || '\",\"username\":' || "             \
    "to_json(" u ".username)::text || ',\"display_name\":' || "             \
    "to_json(" u ".display_name)::text || '}')"

/*
 * SQL: the notification.created event of notification row n whose actor
 * is users row a (post_id and conversation_id only when set)
 */
#define NGX_SOCIAL_SQL_NOTIFICATION(n, a)                                    \
    "json_strip_nulls(json_build_object('id', " n ".id::text, "             \
    "'type', " n ".type, 'actor', " NGX_SOCIAL_SQL_ACTOR(a) "::json, "       \
    "'post_id', " n ".post_id::text, "                                       \
    "'conversation_id', " n ".conversation_id::text, "                       \
    "'created_at', " NGX_SOCIAL_SQL_TIME(n ".created_at") ", "               \
    "'read', " n ".read))"

#define NGX_SOCIAL_SQL_NOTIFICATION_EVENT(n, a)                              \
    "json_build_object('event', 'notification.created', 'data', "           \
    NGX_SOCIAL_SQL_NOTIFICATION(n, a) ")::text"


/* shared cache keys: see ngx_social_cache.c */
#define NGX_SOCIAL_CACHE_GEN_TTL      "60000"    /* ms */
#define NGX_SOCIAL_CACHE_AUTHORS_GEN  "social:authorsgen"

/*
 * Lua: the generation of all authors' views set anew when Redis has none:
 * the server's time in microseconds, above any it had before it lost its
 * data (it moves by one per change)
 */
#define NGX_SOCIAL_CACHE_LUA_AUTHORS_GEN_NX                                  \
    "local t = redis.call('TIME') "                                          \
    "redis.call('SET', '" NGX_SOCIAL_CACHE_AUTHORS_GEN "', "                 \
    "           t[1] .. string.format('%06d', t[2]), 'NX') "


/* users' event streams ("social:ev:<id>"): see ngx_social_events.c */
#define NGX_SOCIAL_EVENTS_KEEP        "1000"     /* entries, at least */
#define NGX_SOCIAL_EVENTS_RETAIN_MS   "3600000"  /* after the last one */
#define NGX_SOCIAL_EVENTS_ID_LEN      NGX_INT64_LEN


/* list arguments: params for "... LIMIT $n" (limit + 1) and the cursors
 * (data NULL when absent) */
typedef struct {
    ngx_uint_t                  limit;
    ngx_str_t                   max_id;
    ngx_str_t                   since_id;
    ngx_str_t                   fetch;
    u_char                      fetch_buf[NGX_INT_T_LEN];
} ngx_social_list_t;

ngx_int_t ngx_social_list_args(ngx_http_request_t *r, ngx_social_list_t *l,
    json_t *fields);
ngx_int_t ngx_social_send_list(ngx_http_request_t *r, ngx_social_list_t *l,
    PGresult *res, int cursor, int item);
/* compact: the items may hold spaces to take out (PostgreSQL's JSON) */
ngx_int_t ngx_social_send_items(ngx_http_request_t *r, ngx_social_list_t *l,
    ngx_str_t *items, ngx_uint_t n, ngx_str_t *next, ngx_uint_t compact);


/*
 * A rate limiter of API routes (the gateway sets it).  It returns what a
 * route handler returns: ngx_social_core_proceed() when the request may
 * go on, NGX_DONE when it decides later (then it finalizes with
 * ngx_social_core_proceed() or its refusal), or the result of a refusal.
 */
typedef ngx_int_t (*ngx_social_limit_pt)(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

void ngx_social_set_limiter(ngx_social_limit_pt limit);
ngx_int_t ngx_social_core_proceed(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);


/* authentication */
void ngx_social_auth_set_revocation(ngx_social_auth_revoked_pt revoked);
ngx_int_t ngx_social_auth_token(ngx_http_request_t *r, ngx_uint_t flags,
    ngx_social_token_t *token, const char **error, const char **message);
ngx_int_t ngx_social_auth_challenge(ngx_http_request_t *r,
    const char *error);
ngx_int_t ngx_social_auth_wait(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
void ngx_social_auth_ready(void);


/* router */
ngx_int_t ngx_social_routes_add(ngx_conf_t *cf, ngx_social_route_t *routes,
    ngx_uint_t n);

/* request id: the value of $social_request_id */
ngx_int_t ngx_social_request_id(ngx_http_request_t *r, ngx_str_t *id);

/* JSON output */
ngx_int_t ngx_social_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json);
u_char *ngx_social_json_compact(u_char *dst, u_char *src, size_t len);
ngx_int_t ngx_social_send_json_text(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *text);
ngx_int_t ngx_social_send_no_content(ngx_http_request_t *r);
ngx_int_t ngx_social_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, json_t *fields);
json_t *ngx_social_json_owned(ngx_http_request_t *r, json_t *json);
json_t *ngx_social_json_str(ngx_str_t *s);

void ngx_social_metrics_collect(ngx_social_metrics_t *sum);
void ngx_social_metrics_streams(ngx_int_t delta);
ngx_social_metrics_worker_t *ngx_social_metrics_worker(ngx_uint_t n);
ngx_int_t ngx_social_metrics_route(ngx_conf_t *cf, ngx_str_t *name);
ngx_uint_t ngx_social_metrics_nroutes(ngx_http_request_t *r);
ngx_social_metrics_route_t *ngx_social_metrics_route_at(
    ngx_http_request_t *r, ngx_uint_t route);
void ngx_social_metrics_request(ngx_http_request_t *r, ngx_uint_t route,
    ngx_uint_t status, ngx_msec_t ms);
ngx_uint_t ngx_social_router_metric(ngx_http_request_t *r);

/* idempotency */
ngx_int_t ngx_social_idem_key(ngx_http_request_t *r, ngx_str_t *key);
ngx_int_t ngx_social_idem_claim(ngx_http_request_t *r, ngx_social_ctx_t *ctx,
    ngx_str_t *key, ngx_social_idem_pt claimed, void *data);
ngx_int_t ngx_social_idem_commit(ngx_http_request_t *r, ngx_social_pg_tx_t *tx,
    int64_t user, ngx_str_t *key, ngx_uint_t status, ngx_str_t *body,
    ngx_social_pg_handler_pt handler, void *data);

/* shared caches */
ngx_int_t ngx_social_cache_forget(ngx_http_request_t *r, ngx_str_t *users,
    ngx_uint_t n, ngx_str_t *feeds, ngx_uint_t m,
    ngx_social_redis_handler_pt handler, void *data);

/* live events */
ngx_int_t ngx_social_events_publish(ngx_http_request_t *r, int64_t *users,
    ngx_uint_t n, ngx_str_t *event, ngx_uint_t ephemeral);
ngx_int_t ngx_social_events_publish_then(ngx_http_request_t *r,
    int64_t *users, ngx_uint_t n, ngx_str_t *event, ngx_uint_t ephemeral,
    ngx_social_redis_handler_pt done, void *data);
ngx_int_t ngx_social_events_id_decimal(ngx_str_t *entry, u_char *buf,
    ngx_str_t *out);
ngx_int_t ngx_social_events_id_entry(ngx_str_t *decimal, u_char *buf,
    ngx_str_t *out);

/* CPU-heavy work: NGX_DONE, or a status to finalize with */
ngx_int_t ngx_social_thread_run(ngx_http_request_t *r, ngx_thread_pool_t *tp,
    ngx_social_work_pt work, ngx_social_done_pt done, void *data);

/* JSON input */
ngx_int_t ngx_social_parse_json_body(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_body_bytes(ngx_http_request_t *r, ngx_str_t *body);
int64_t ngx_social_parse_id(ngx_str_t *s);
ngx_int_t ngx_social_field_string(json_t *body, const char *name,
    ngx_uint_t required, size_t min, size_t max, ngx_uint_t bytes,
    ngx_str_t *out, json_t *fields);

#endif /* _NGX_SOCIAL_CORE_H_INCLUDED_ */
