/*
 * POST /v1/users: registration.  The body is validated, the password
 * hashed in the thread pool, then the user and its credentials are
 * inserted by one statement (one implicit transaction); the unique indexes
 * decide username_taken and email_taken, under any concurrency.
 */

#include "ngx_social_users.h"


typedef struct {
    ngx_str_t                   username;
    ngx_str_t                   email;
    ngx_str_t                   display_name;
    ngx_social_users_hash_t     hash;
} ngx_social_users_register_ctx_t;


static ngx_uint_t ngx_social_users_valid_username(ngx_str_t *s);
static ngx_uint_t ngx_social_users_valid_email(ngx_str_t *s);
static void ngx_social_users_register_hash(void *data);
static void ngx_social_users_register_hashed(ngx_http_request_t *r,
    void *data);
static void ngx_social_users_register_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


static ngx_social_pg_stmt_t  ngx_social_users_register_stmt = {
    ngx_string("users_register"),
    ngx_string("WITH u AS ("
               "INSERT INTO users (username, email, display_name) "
               "VALUES ($1, $2, $3) RETURNING *), "
               "c AS (INSERT INTO credentials (user_id, password_hash) "
               "SELECT id, $4 FROM u) "
               "SELECT " NGX_SOCIAL_USERS_OWN_VIEW " FROM u"),
    0, 0
};


ngx_int_t
ngx_social_users_register_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, &ngx_social_users_register_stmt, 1);
}


ngx_int_t
ngx_social_users_register(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    json_t                           *fields;
    ngx_social_users_register_ctx_t  *rc;
    ngx_social_users_main_conf_t     *umcf;

    rc = ngx_pcalloc(r->pool, sizeof(ngx_social_users_register_ctx_t));
    fields = ngx_social_json_owned(r, json_object());

    if (rc == NULL || fields == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_social_field_string(ctx->body, "username", 1, 3, 30, 0,
                                &rc->username, fields)
        == NGX_OK
        && !ngx_social_users_valid_username(&rc->username))
    {
        json_object_set_new(fields, "username",
                            json_string("may contain only letters, digits "
                                        "and underscores"));
    }

    if (ngx_social_field_string(ctx->body, "email", 1, 3, 254, 0,
                                &rc->email, fields)
        == NGX_OK
        && !ngx_social_users_valid_email(&rc->email))
    {
        json_object_set_new(fields, "email", json_string("is not an email "
                                                         "address"));
    }

    (void) ngx_social_field_string(ctx->body, "password", 1, 8, 1024, 1,
                                   &rc->hash.password, fields);
    (void) ngx_social_field_string(ctx->body, "display_name", 0, 0, 100, 0,
                                   &rc->display_name, fields);

    if (json_object_size(fields)) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the request has invalid fields",
                                     json_incref(fields));
    }

    if (rc->display_name.data == NULL) {
        rc->display_name = rc->username;
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_social_users_module);

    return ngx_social_thread_run(r, umcf->thread_pool,
                                 ngx_social_users_register_hash,
                                 ngx_social_users_register_hashed, rc);
}


/* in a pool thread */

static void
ngx_social_users_register_hash(void *data)
{
    ngx_social_users_register_ctx_t  *rc = data;

    ngx_social_users_password_hash(&rc->hash);
}


static void
ngx_social_users_register_hashed(ngx_http_request_t *r, void *data)
{
    ngx_social_users_register_ctx_t  *rc = data;

    ngx_str_t  params[4];

    if (rc->hash.phc_len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "social: password hashing failed");
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    params[0] = rc->username;
    params[1] = rc->email;
    params[2] = rc->display_name;
    params[3].data = rc->hash.phc;
    params[3].len = rc->hash.phc_len;

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, NULL, &ngx_social_users_register_stmt, params,
                            4, ngx_social_users_register_done, rc));
}


static void
ngx_social_users_register_done(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    const char  *constraint;

    if (result->status == NGX_SOCIAL_PG_SQL_ERROR
        && ngx_strcmp(result->sqlstate, "23505") == 0)
    {
        constraint = PQresultErrorField(result->res,
                                        PG_DIAG_CONSTRAINT_NAME);

        if (constraint && ngx_strcmp(constraint, "users_email_key") == 0) {
            ngx_http_finalize_request(r, ngx_social_send_error(r,
                                          NGX_HTTP_CONFLICT, "email_taken",
                                          "this email is already registered",
                                          NULL));
            return;
        }

        ngx_http_finalize_request(r, ngx_social_send_error(r,
                                      NGX_HTTP_CONFLICT, "username_taken",
                                      "this username is taken", NULL));
        return;
    }

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    ngx_http_finalize_request(r, ngx_social_pg_send_json(r, NGX_HTTP_CREATED,
                                                         result->res, 0, 0));
}


/* [A-Za-z0-9_] */

static ngx_uint_t
ngx_social_users_valid_username(ngx_str_t *s)
{
    u_char      c;
    ngx_uint_t  i;

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_'))
        {
            return 0;
        }
    }

    return 1;
}


/* one "@" with something on each side, no spaces or control characters */

static ngx_uint_t
ngx_social_users_valid_email(ngx_str_t *s)
{
    u_char      *at;
    ngx_uint_t   i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] <= ' ' || s->data[i] == 0x7f) {
            return 0;
        }
    }

    at = ngx_strlchr(s->data, s->data + s->len, '@');

    return at != NULL && at > s->data && at < s->data + s->len - 1
           && ngx_strlchr(at + 1, s->data + s->len, '@') == NULL;
}
