/*
 * Revocation of access tokens, checked with no PostgreSQL query and no
 * Redis round trip: every worker mirrors the revocations in memory.
 *
 * PostgreSQL holds the truth: revoked token ids (until they would have
 * expired) and, per user, a mark "tokens issued until T are void, but the
 * one that set the mark".  A worker loads both when it starts, again after
 * its Redis subscriber reconnects and once a minute as a safety net; every
 * new revocation is published on the channel "social:revocations", which
 * every worker of every node subscribes to, so it is seen within
 * milliseconds.  Messages: "t <jti> <exp>" and "u <user> <T> <keep jti>".
 */

#include "ngx_social_users.h"


#define NGX_SOCIAL_USERS_RELOAD  60000


typedef struct {
    ngx_rbtree_node_t           node;      /* key: crc32 of the jti */
    u_char                      jti[NGX_SOCIAL_JTI_LEN];
    time_t                      exp;
} ngx_social_users_jti_t;


typedef struct {
    ngx_rbtree_node_t           node;      /* key: the user id */
    time_t                      valid_after;
    u_char                      keep[NGX_SOCIAL_JTI_LEN];
} ngx_social_users_mark_t;


static ngx_int_t ngx_social_users_revoked(ngx_social_token_t *token);
static void ngx_social_users_revocation_message(ngx_str_t *channel,
    ngx_str_t *message, void *data);
static void ngx_social_users_revocation_resync(void *data);
static void ngx_social_users_revocation_timer(ngx_event_t *ev);
static void ngx_social_users_revocation_load(void);
static void ngx_social_users_jtis_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_marks_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_add_jti(u_char *jti, time_t exp);
static void ngx_social_users_add_mark(int64_t user, time_t valid_after,
    u_char *keep);
static ngx_social_users_jti_t *ngx_social_users_find_jti(u_char *jti);
static void ngx_social_users_revocation_prune(ngx_uint_t all);
static void ngx_social_users_revocation_loaded(ngx_uint_t half);
static void ngx_social_users_publish(u_char *msg, size_t len);
static void ngx_social_users_published(redisReply *reply, void *data);


static ngx_social_pg_stmt_t  ngx_social_users_revocation_stmts[] = {

    { ngx_string("revocation_tokens"),
      ngx_string("SELECT jti, extract(epoch FROM expires_at)::bigint "
                 "FROM revoked_tokens WHERE expires_at > now()"),
      0, 0 },

    { ngx_string("revocation_marks"),
      ngx_string("SELECT user_id, "
                 "floor(extract(epoch FROM tokens_valid_after))::bigint, "
                 "coalesce(tokens_keep_jti, '') FROM credentials "
                 "WHERE tokens_valid_after > "
                 "now() - make_interval(secs => $1)"),
      0, 0 }
};


static ngx_str_t  ngx_social_users_revocation_channel =
    ngx_string("social:revocations");

static ngx_rbtree_t                  ngx_social_users_jtis;
static ngx_rbtree_node_t             ngx_social_users_jtis_sentinel;
static ngx_rbtree_t                  ngx_social_users_marks;
static ngx_rbtree_node_t             ngx_social_users_marks_sentinel;
static ngx_social_redis_listener_t  *ngx_social_users_listener;
static ngx_event_t                   ngx_social_users_reload;
static ngx_uint_t                    ngx_social_users_loaded;
static ngx_connection_t              ngx_social_users_reload_dummy;


ngx_int_t
ngx_social_users_revocation_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_users_revocation_stmts,
                                  sizeof(ngx_social_users_revocation_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


ngx_int_t
ngx_social_users_revocation_start(ngx_cycle_t *cycle)
{
    if (!ngx_social_pg_configured()) {
        /* no users without their database: nothing to mirror */
        return NGX_OK;
    }

    ngx_rbtree_init(&ngx_social_users_jtis, &ngx_social_users_jtis_sentinel,
                    ngx_rbtree_insert_value);
    ngx_rbtree_init(&ngx_social_users_marks,
                    &ngx_social_users_marks_sentinel,
                    ngx_rbtree_insert_value);

    ngx_social_users_listener = ngx_social_redis_subscribe(
                                    &ngx_social_users_revocation_channel, 0,
                                    ngx_social_users_revocation_message,
                                    ngx_social_users_revocation_resync,
                                    NULL);
    if (ngx_social_users_listener == NULL) {
        return NGX_ERROR;
    }

    ngx_social_users_reload_dummy.fd = (ngx_socket_t) -1;
    ngx_social_users_reload.handler = ngx_social_users_revocation_timer;
    ngx_social_users_reload.data = &ngx_social_users_reload_dummy;
    ngx_social_users_reload.log = cycle->log;
    ngx_social_users_reload.cancelable = 1;

    ngx_social_users_revocation_load();
    ngx_add_timer(&ngx_social_users_reload, 1000);

    ngx_social_auth_set_revocation(ngx_social_users_revoked);

    return NGX_OK;
}


void
ngx_social_users_revocation_stop(ngx_cycle_t *cycle)
{
    if (ngx_social_users_listener != NULL) {
        ngx_social_redis_unsubscribe(ngx_social_users_listener);
        ngx_social_users_listener = NULL;
    }

    if (ngx_social_users_reload.timer_set) {
        ngx_del_timer(&ngx_social_users_reload);
    }

    if (ngx_social_users_jtis.root != NULL) {
        ngx_social_users_revocation_prune(1);
    }
}


/*
 * A revocation decided by this worker, once it is stored: it applies here
 * at once and is published to every other worker and node.
 */

void
ngx_social_users_revoke_token(u_char *jti, time_t exp)
{
    u_char  msg[NGX_SOCIAL_JTI_LEN + NGX_TIME_T_LEN + 4];

    ngx_social_users_add_jti(jti, exp);

    ngx_social_users_publish(msg,
                             ngx_sprintf(msg, "t %*s %T",
                                         (size_t) NGX_SOCIAL_JTI_LEN, jti,
                                         exp)
                             - msg);
}


void
ngx_social_users_revoke_user(int64_t user, time_t valid_after, u_char *keep)
{
    u_char  msg[NGX_INT64_LEN + NGX_TIME_T_LEN + NGX_SOCIAL_JTI_LEN + 8];

    ngx_social_users_add_mark(user, valid_after, keep);

    ngx_social_users_publish(msg,
                             ngx_sprintf(msg, "u %L %T %*s", user,
                                         valid_after,
                                         (size_t) NGX_SOCIAL_JTI_LEN, keep)
                             - msg);
}


/* PUBLISH social:revocations <msg>, in the background */

static void
ngx_social_users_publish(u_char *msg, size_t len)
{
    ngx_social_redis_argv_t  cmd;
    const char              *argv[3];
    size_t                   argvlen[3];

    argv[0] = "PUBLISH";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_social_users_revocation_channel.data;
    argvlen[1] = ngx_social_users_revocation_channel.len;
    argv[2] = (const char *) msg;
    argvlen[2] = len;

    cmd.argc = 3;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    (void) ngx_social_redis_command(NULL, &cmd, ngx_social_users_published,
                                    NULL);
}


/* the check the core runs for every authenticated request */

static ngx_int_t
ngx_social_users_revoked(ngx_social_token_t *token)
{
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_social_users_mark_t  *m;

    if (ngx_social_users_loaded != 3) {
        return NGX_AGAIN;
    }

    if (ngx_social_users_find_jti(token->jti) != NULL) {
        return NGX_DECLINED;
    }

    node = ngx_social_users_marks.root;
    sentinel = ngx_social_users_marks.sentinel;

    while (node != sentinel) {
        if ((ngx_rbtree_key_t) token->sub != node->key) {
            node = ((ngx_rbtree_key_t) token->sub < node->key)
                   ? node->left : node->right;
            continue;
        }

        m = (ngx_social_users_mark_t *) node;

        return (token->iat <= m->valid_after
                && ngx_memcmp(token->jti, m->keep, NGX_SOCIAL_JTI_LEN) != 0)
               ? NGX_DECLINED : NGX_OK;
    }

    return NGX_OK;
}


/* both halves loaded once: the requests that waited for them go on */

static void
ngx_social_users_revocation_loaded(ngx_uint_t half)
{
    if (ngx_social_users_loaded == 3) {
        return;
    }

    ngx_social_users_loaded |= half;

    if (ngx_social_users_loaded == 3) {
        ngx_social_auth_ready();
    }
}


static void
ngx_social_users_revocation_message(ngx_str_t *channel, ngx_str_t *message,
    void *data)
{
    u_char   *p, *last, *sp;
    int64_t   user;
    time_t    t;

    p = message->data;
    last = p + message->len;

    if (message->len > 2 && p[0] == 't' && p[1] == ' '
        && message->len > 2 + NGX_SOCIAL_JTI_LEN + 1)
    {
        t = ngx_atotm(p + 3 + NGX_SOCIAL_JTI_LEN,
                      last - p - 3 - NGX_SOCIAL_JTI_LEN);
        if (t != NGX_ERROR) {
            ngx_social_users_add_jti(p + 2, t);
        }

        return;
    }

    if (message->len > 2 && p[0] == 'u' && p[1] == ' ') {
        p += 2;
        sp = ngx_strlchr(p, last, ' ');

        if (sp == NULL || last - sp < 2 + NGX_SOCIAL_JTI_LEN) {
            return;
        }

        user = ngx_atoof(p, sp - p);
        t = ngx_atotm(sp + 1, last - sp - 2 - NGX_SOCIAL_JTI_LEN);

        if (user > 0 && t != NGX_ERROR) {
            ngx_social_users_add_mark(user, t, last - NGX_SOCIAL_JTI_LEN);
        }
    }
}


/* messages may have been missed while Redis was away: load the truth */

static void
ngx_social_users_revocation_resync(void *data)
{
    ngx_social_users_revocation_load();
}


static void
ngx_social_users_revocation_timer(ngx_event_t *ev)
{
    ngx_social_users_revocation_prune(0);
    ngx_social_users_revocation_load();

    /* every second until the first load succeeded, then every minute */
    if (!ngx_exiting) {
        ngx_add_timer(ev, ngx_social_users_loaded == 3
                          ? NGX_SOCIAL_USERS_RELOAD : 1000);
    }
}


static void
ngx_social_users_revocation_load(void)
{
    u_char     buf[NGX_TIME_T_LEN];
    ngx_str_t  ttl;

    ttl.data = buf;
    ttl.len = ngx_sprintf(buf, "%T", ngx_social_jwt_ttl()) - buf;

    (void) ngx_social_pg_run(&ngx_social_users_revocation_stmts[0], NULL, 0,
                             ngx_social_users_jtis_loaded, NULL);
    (void) ngx_social_pg_run(&ngx_social_users_revocation_stmts[1], &ttl, 1,
                             ngx_social_users_marks_loaded, NULL);
}


static void
ngx_social_users_jtis_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    int  i, n;

    if (result->status != NGX_SOCIAL_PG_OK) {
        return;
    }

    n = PQntuples(result->res);

    for (i = 0; i < n; i++) {
        if (PQgetlength(result->res, i, 0) != NGX_SOCIAL_JTI_LEN) {
            continue;
        }

        ngx_social_users_add_jti((u_char *) PQgetvalue(result->res, i, 0),
                                 ngx_atotm((u_char *)
                                           PQgetvalue(result->res, i, 1),
                                           PQgetlength(result->res, i, 1)));
    }

    ngx_social_users_revocation_loaded(1);
}


static void
ngx_social_users_marks_loaded(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    int     i, n;
    u_char  keep[NGX_SOCIAL_JTI_LEN];

    if (result->status != NGX_SOCIAL_PG_OK) {
        return;
    }

    n = PQntuples(result->res);

    for (i = 0; i < n; i++) {
        ngx_memzero(keep, sizeof(keep));

        if (PQgetlength(result->res, i, 2) == NGX_SOCIAL_JTI_LEN) {
            ngx_memcpy(keep, PQgetvalue(result->res, i, 2), sizeof(keep));
        }

        ngx_social_users_add_mark(
            ngx_atoof((u_char *) PQgetvalue(result->res, i, 0),
                      PQgetlength(result->res, i, 0)),
            ngx_atotm((u_char *) PQgetvalue(result->res, i, 1),
                      PQgetlength(result->res, i, 1)),
            keep);
    }

    ngx_social_users_revocation_loaded(2);
}


static void
ngx_social_users_add_jti(u_char *jti, time_t exp)
{
    ngx_social_users_jti_t  *j;

    if (exp <= ngx_time() || ngx_social_users_find_jti(jti) != NULL) {
        return;
    }

    j = ngx_alloc(sizeof(ngx_social_users_jti_t), ngx_cycle->log);
    if (j == NULL) {
        return;
    }

    j->node.key = ngx_crc32_short(jti, NGX_SOCIAL_JTI_LEN);
    ngx_memcpy(j->jti, jti, NGX_SOCIAL_JTI_LEN);
    j->exp = exp;

    ngx_rbtree_insert(&ngx_social_users_jtis, &j->node);
}


/* a later mark replaces an earlier one of the same user */

static void
ngx_social_users_add_mark(int64_t user, time_t valid_after, u_char *keep)
{
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_social_users_mark_t  *m;

    node = ngx_social_users_marks.root;
    sentinel = ngx_social_users_marks.sentinel;

    while (node != sentinel) {
        if ((ngx_rbtree_key_t) user == node->key) {
            m = (ngx_social_users_mark_t *) node;

            if (valid_after >= m->valid_after) {
                m->valid_after = valid_after;
                ngx_memcpy(m->keep, keep, NGX_SOCIAL_JTI_LEN);
            }

            return;
        }

        node = ((ngx_rbtree_key_t) user < node->key) ? node->left
                                                      : node->right;
    }

    m = ngx_alloc(sizeof(ngx_social_users_mark_t), ngx_cycle->log);
    if (m == NULL) {
        return;
    }

    m->node.key = (ngx_rbtree_key_t) user;
    m->valid_after = valid_after;
    ngx_memcpy(m->keep, keep, NGX_SOCIAL_JTI_LEN);

    ngx_rbtree_insert(&ngx_social_users_marks, &m->node);
}


static ngx_social_users_jti_t *
ngx_social_users_find_jti(u_char *jti)
{
    uint32_t                 key;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_social_users_jti_t  *j;

    key = ngx_crc32_short(jti, NGX_SOCIAL_JTI_LEN);

    node = ngx_social_users_jtis.root;
    sentinel = ngx_social_users_jtis.sentinel;

    while (node != sentinel) {
        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        j = (ngx_social_users_jti_t *) node;

        if (ngx_memcmp(j->jti, jti, NGX_SOCIAL_JTI_LEN) == 0) {
            return j;
        }

        /* equal keys sit to the right (ngx_rbtree_insert_value) */
        node = node->right;
    }

    return NULL;
}


/* drops what can no longer matter (all of it, at exit) */

static void
ngx_social_users_revocation_prune(ngx_uint_t all)
{
    time_t                    now, horizon;
    ngx_rbtree_node_t        *node, *next;
    ngx_social_users_jti_t   *j;
    ngx_social_users_mark_t  *m;

    now = ngx_time();
    horizon = now - ngx_social_jwt_ttl();

    node = ngx_social_users_jtis.root == ngx_social_users_jtis.sentinel
           ? NULL
           : ngx_rbtree_min(ngx_social_users_jtis.root,
                            ngx_social_users_jtis.sentinel);

    while (node != NULL) {
        next = ngx_rbtree_next(&ngx_social_users_jtis, node);
        j = (ngx_social_users_jti_t *) node;

        if (all || j->exp <= now) {
            ngx_rbtree_delete(&ngx_social_users_jtis, node);
            ngx_free(j);
        }

        node = next;
    }

    node = ngx_social_users_marks.root == ngx_social_users_marks.sentinel
           ? NULL
           : ngx_rbtree_min(ngx_social_users_marks.root,
                            ngx_social_users_marks.sentinel);

    while (node != NULL) {
        next = ngx_rbtree_next(&ngx_social_users_marks, node);
        m = (ngx_social_users_mark_t *) node;

        /* every token issued before the mark has expired */
        if (all || m->valid_after < horizon) {
            ngx_rbtree_delete(&ngx_social_users_marks, node);
            ngx_free(m);
        }

        node = next;
    }
}


static void
ngx_social_users_published(redisReply *reply, void *data)
{
    if (reply == NULL) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "social: a revocation was not published (Redis); "
                      "other workers load it within a minute");
    }
}
