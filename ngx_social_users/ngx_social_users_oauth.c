/*
 * OAuth 2.0: POST /oauth/token (RFC 6749: the "password" and
 * "refresh_token" grants) and POST /oauth/revoke (RFC 7009).
 *
 * Bodies are form-encoded or JSON.  Refresh tokens are 32 random bytes,
 * stored as their SHA-256; each use rotates the token within its family,
 * and presenting a token already rotated revokes the whole family (OAuth
 * 2.0 Security BCP, section 4.14).
 */

#include "ngx_social_users.h"
#include <openssl/rand.h>
#include <openssl/sha.h>


#define NGX_SOCIAL_USERS_REFRESH_BYTES  32


typedef struct {
    ngx_str_t                   grant_type;
    ngx_str_t                   username;
    ngx_str_t                   password;
    ngx_str_t                   refresh_token;
    ngx_str_t                   token;
} ngx_social_users_oauth_args_t;


typedef struct {
    ngx_social_users_oauth_args_t  args;
    ngx_social_users_verify_t      verify;
    ngx_str_t                      user_id;
    u_char                         refresh[64];
    size_t                         refresh_len;
    u_char                         refresh_hash[SHA256_DIGEST_LENGTH * 2];
    u_char                         old_hash[SHA256_DIGEST_LENGTH * 2];
} ngx_social_users_oauth_ctx_t;


static ngx_int_t ngx_social_users_oauth_args(ngx_http_request_t *r,
    ngx_social_users_oauth_args_t *args, const char **error);
static ngx_int_t ngx_social_users_oauth_form(ngx_http_request_t *r,
    ngx_str_t *body, ngx_social_users_oauth_args_t *args,
    const char **error);
static ngx_int_t ngx_social_users_form_value(ngx_http_request_t *r,
    u_char *start, u_char *end, ngx_str_t *value);
static ngx_int_t ngx_social_users_refresh_ttl(ngx_http_request_t *r,
    ngx_str_t *ttl);
static ngx_int_t ngx_social_users_oauth_json(ngx_http_request_t *r,
    ngx_str_t *body, ngx_social_users_oauth_args_t *args,
    const char **error);
static ngx_int_t ngx_social_users_oauth_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error, const char *description);
static ngx_int_t ngx_social_users_oauth_no_store(ngx_http_request_t *r);
static void ngx_social_users_token_hash(ngx_str_t *token, u_char *hex);
static ngx_int_t ngx_social_users_new_refresh(
    ngx_social_users_oauth_ctx_t *oc);
static void ngx_social_users_password_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_password_check(void *data);
static void ngx_social_users_password_checked(ngx_http_request_t *r,
    void *data);
static void ngx_social_users_refresh_rotated(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_refresh_reused(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_token_stored(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);
static void ngx_social_users_revoked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data);


enum {
    NGX_SOCIAL_USERS_BY_NAME = 0,
    NGX_SOCIAL_USERS_BY_EMAIL,
    NGX_SOCIAL_USERS_LOGIN,
    NGX_SOCIAL_USERS_ROTATE,
    NGX_SOCIAL_USERS_REUSED,
    NGX_SOCIAL_USERS_REVOKE_REFRESH,
    NGX_SOCIAL_USERS_REVOKE_ACCESS
};


static ngx_social_pg_stmt_t  ngx_social_users_oauth_stmts[] = {

    { ngx_string("oauth_user_by_name"),
      ngx_string("SELECT u.id::text, c.password_hash FROM users u "
                 "JOIN credentials c ON c.user_id = u.id "
                 "WHERE lower(u.username) = lower($1)"),
      1, 0 },

    { ngx_string("oauth_user_by_email"),
      ngx_string("SELECT u.id::text, c.password_hash FROM users u "
                 "JOIN credentials c ON c.user_id = u.id "
                 "WHERE lower(u.email) = lower($1)"),
      1, 0 },

    /* a new family; the password hash upgraded when $4 is given */
    { ngx_string("oauth_login"),
      ngx_string("WITH up AS (UPDATE credentials SET password_hash = $4, "
                 "updated_at = now() WHERE user_id = $1 "
                 "AND $4::text IS NOT NULL), "
                 "n AS (SELECT social_next_id() AS id) "
                 "INSERT INTO refresh_tokens "
                 "(id, user_id, family_id, token_hash, expires_at) "
                 "SELECT n.id, $1, n.id, decode($2, 'hex'), "
                 "now() + make_interval(secs => $3) FROM n"),
      0, 0 },

    /* the token is used: it rotates to a new one of its family */
    { ngx_string("oauth_rotate"),
      ngx_string("WITH old AS (UPDATE refresh_tokens SET rotated_at = now() "
                 "WHERE token_hash = decode($1, 'hex') "
                 "AND rotated_at IS NULL AND revoked_at IS NULL "
                 "AND expires_at > now() RETURNING user_id, family_id), "
                 "new AS (INSERT INTO refresh_tokens "
                 "(user_id, family_id, token_hash, expires_at) "
                 "SELECT user_id, family_id, decode($2, 'hex'), "
                 "now() + make_interval(secs => $3) FROM old "
                 "RETURNING user_id) "
                 "SELECT user_id::text FROM new"),
      0, 0 },

    /* a rotated token came back: its whole family is revoked */
    { ngx_string("oauth_reused"),
      ngx_string("UPDATE refresh_tokens SET revoked_at = now() "
                 "WHERE family_id = (SELECT family_id FROM refresh_tokens "
                 "WHERE token_hash = decode($1, 'hex') "
                 "AND rotated_at IS NOT NULL) AND revoked_at IS NULL"),
      0, 0 },

    { ngx_string("oauth_revoke_refresh"),
      ngx_string("UPDATE refresh_tokens SET revoked_at = now() "
                 "WHERE family_id = (SELECT family_id FROM refresh_tokens "
                 "WHERE token_hash = decode($1, 'hex')) "
                 "AND revoked_at IS NULL"),
      0, 0 },

    { ngx_string("oauth_revoke_access"),
      ngx_string("INSERT INTO revoked_tokens (jti, user_id, expires_at) "
                 "VALUES ($1, $2, to_timestamp($3)) "
                 "ON CONFLICT (jti) DO NOTHING"),
      0, 0 }
};


ngx_int_t
ngx_social_users_oauth_init(ngx_conf_t *cf)
{
    return ngx_social_pg_register(cf, ngx_social_users_oauth_stmts,
                                  sizeof(ngx_social_users_oauth_stmts)
                                  / sizeof(ngx_social_pg_stmt_t));
}


/* POST /oauth/token */

ngx_int_t
ngx_social_users_token(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_str_t                      params[3], ttl;
    ngx_uint_t                     by_email;
    const char                    *error;
    ngx_social_users_oauth_ctx_t  *oc;

    oc = ngx_pcalloc(r->pool, sizeof(ngx_social_users_oauth_ctx_t));
    if (oc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_social_users_oauth_args(r, &oc->args, &error);

    if (rc == NGX_DECLINED) {
        return ngx_social_users_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request", error);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (oc->args.grant_type.len == 0) {
        return ngx_social_users_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request",
                                            "grant_type is required");
    }

    if (oc->args.grant_type.len == sizeof("password") - 1
        && ngx_strncmp(oc->args.grant_type.data, "password",
                       sizeof("password") - 1)
           == 0)
    {
        if (oc->args.username.len == 0 || oc->args.password.len == 0) {
            return ngx_social_users_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                                                "invalid_request",
                                                "username and password are "
                                                "required");
        }

        by_email = ngx_strlchr(oc->args.username.data,
                               oc->args.username.data + oc->args.username.len,
                               '@')
                   != NULL;

        return ngx_social_pg_query(r, NULL,
                                   &ngx_social_users_oauth_stmts[by_email
                                       ? NGX_SOCIAL_USERS_BY_EMAIL
                                       : NGX_SOCIAL_USERS_BY_NAME],
                                   &oc->args.username, 1,
                                   ngx_social_users_password_found, oc);
    }

    if (oc->args.grant_type.len == sizeof("refresh_token") - 1
        && ngx_strncmp(oc->args.grant_type.data, "refresh_token",
                       sizeof("refresh_token") - 1)
           == 0)
    {
        if (oc->args.refresh_token.len == 0) {
            return ngx_social_users_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                                                "invalid_request",
                                                "refresh_token is required");
        }

        if (ngx_social_users_new_refresh(oc) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_social_users_token_hash(&oc->args.refresh_token, oc->old_hash);

        if (ngx_social_users_refresh_ttl(r, &ttl) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        params[0].data = oc->old_hash;
        params[0].len = sizeof(oc->old_hash);
        params[1].data = oc->refresh_hash;
        params[1].len = sizeof(oc->refresh_hash);
        params[2] = ttl;

        return ngx_social_pg_query(r, NULL,
                                   &ngx_social_users_oauth_stmts[
                                       NGX_SOCIAL_USERS_ROTATE],
                                   params, 3,
                                   ngx_social_users_refresh_rotated, oc);
    }

    return ngx_social_users_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                                        "unsupported_grant_type",
                                        "the grant types are password and "
                                        "refresh_token");
}


/* the user (or nobody): verify in the thread pool either way */

static void
ngx_social_users_password_found(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_oauth_ctx_t  *oc = data;

    ngx_social_users_main_conf_t  *umcf;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    oc->verify.password = oc->args.password;

    if (PQntuples(result->res) == 1) {
        oc->user_id.len = PQgetlength(result->res, 0, 0);
        oc->verify.phc.len = PQgetlength(result->res, 0, 1);

        oc->user_id.data = ngx_pnalloc(r->pool, oc->user_id.len);
        oc->verify.phc.data = ngx_pnalloc(r->pool, oc->verify.phc.len);

        if (oc->user_id.data == NULL || oc->verify.phc.data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(oc->user_id.data, PQgetvalue(result->res, 0, 0),
                   oc->user_id.len);
        ngx_memcpy(oc->verify.phc.data, PQgetvalue(result->res, 0, 1),
                   oc->verify.phc.len);

    } else {
        oc->verify.phc = ngx_social_users_dummy_phc;
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_social_users_module);

    ngx_http_finalize_request(r,
        ngx_social_thread_run(r, umcf->thread_pool,
                              ngx_social_users_password_check,
                              ngx_social_users_password_checked, oc));
}


/* in a pool thread */

static void
ngx_social_users_password_check(void *data)
{
    ngx_social_users_oauth_ctx_t  *oc = data;

    ngx_social_users_password_verify(&oc->verify);
}


static void
ngx_social_users_password_checked(ngx_http_request_t *r, void *data)
{
    ngx_social_users_oauth_ctx_t  *oc = data;

    ngx_str_t  params[4];

    if (!oc->verify.ok || oc->user_id.len == 0) {
        ngx_http_finalize_request(r, ngx_social_users_oauth_error(r,
                                      NGX_HTTP_BAD_REQUEST, "invalid_grant",
                                      "wrong username or password"));
        return;
    }

    if (ngx_social_users_new_refresh(oc) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    params[0] = oc->user_id;
    params[1].data = oc->refresh_hash;
    params[1].len = sizeof(oc->refresh_hash);

    if (ngx_social_users_refresh_ttl(r, &params[2]) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (oc->verify.rehash_len) {
        params[3].data = oc->verify.rehash;
        params[3].len = oc->verify.rehash_len;

    } else {
        ngx_str_null(&params[3]);
    }

    ngx_http_finalize_request(r,
        ngx_social_pg_query(r, NULL,
                            &ngx_social_users_oauth_stmts[
                                NGX_SOCIAL_USERS_LOGIN],
                            params, 4, ngx_social_users_token_stored, oc));
}


static void
ngx_social_users_refresh_rotated(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_oauth_ctx_t  *oc = data;

    ngx_str_t  hash;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (PQntuples(result->res) == 0) {
        /* unknown, expired, revoked, or already rotated: revoke the family
         * if it was rotated, and refuse */
        hash.data = oc->old_hash;
        hash.len = sizeof(oc->old_hash);

        ngx_http_finalize_request(r,
            ngx_social_pg_query(r, NULL,
                                &ngx_social_users_oauth_stmts[
                                    NGX_SOCIAL_USERS_REUSED],
                                &hash, 1, ngx_social_users_refresh_reused,
                                oc));
        return;
    }

    oc->user_id.len = PQgetlength(result->res, 0, 0);
    oc->user_id.data = ngx_pnalloc(r->pool, oc->user_id.len);

    if (oc->user_id.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(oc->user_id.data, PQgetvalue(result->res, 0, 0),
               oc->user_id.len);

    ngx_social_users_token_stored(r, result, oc);
}


static void
ngx_social_users_refresh_reused(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (ngx_atoi((u_char *) PQcmdTuples(result->res),
                 ngx_strlen(PQcmdTuples(result->res)))
        > 0)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "social: a rotated refresh token was presented "
                      "again; its family is revoked");
    }

    ngx_http_finalize_request(r, ngx_social_users_oauth_error(r,
                                  NGX_HTTP_BAD_REQUEST, "invalid_grant",
                                  "the refresh token is invalid, expired "
                                  "or revoked"));
}


/* the refresh token is stored: the answer with a new access token */

static void
ngx_social_users_token_stored(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_users_oauth_ctx_t  *oc = data;

    ngx_int_t  rc;
    ngx_str_t  access;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (ngx_social_jwt_issue(r, ngx_atoof(oc->user_id.data, oc->user_id.len),
                             &access, NULL)
        != NGX_OK
        || ngx_social_users_oauth_no_store(r) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_social_send_json(r, NGX_HTTP_OK,
                              json_pack("{s:s%, s:s, s:I, s:s%, s:s}",
                                        "access_token",
                                        (char *) access.data, access.len,
                                        "token_type", "Bearer",
                                        "expires_in",
                                        (json_int_t) ngx_social_jwt_ttl(),
                                        "refresh_token",
                                        (char *) oc->refresh,
                                        oc->refresh_len,
                                        "scope", "social"));

    ngx_http_finalize_request(r, rc);
}


/* POST /oauth/revoke: 200 for any token, known or not (RFC 7009 2.2) */

ngx_int_t
ngx_social_users_revoke(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    u_char                        *p, hash[SHA256_DIGEST_LENGTH * 2];
    ngx_int_t                      rc;
    ngx_str_t                      params[3];
    const char                    *error;
    ngx_social_token_t            *claims;
    ngx_social_token_t             t;
    ngx_social_users_oauth_args_t  args;

    ngx_memzero(&args, sizeof(ngx_social_users_oauth_args_t));

    rc = ngx_social_users_oauth_args(r, &args, &error);

    if (rc == NGX_DECLINED) {
        return ngx_social_users_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request", error);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (args.token.len == 0) {
        return ngx_social_users_oauth_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request",
                                            "token is required");
    }

    if (ngx_social_jwt_verify(r, &args.token, &t) == NGX_OK) {
        /* an access token: its id is void until it would have expired */
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN + NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        params[0].data = t.jti;
        params[0].len = NGX_SOCIAL_JTI_LEN;
        params[1].data = p;
        params[1].len = ngx_sprintf(p, "%L", t.sub) - p;
        params[2].data = p + params[1].len;
        params[2].len = ngx_sprintf(params[2].data, "%T", t.exp)
                        - params[2].data;

        claims = ngx_palloc(r->pool, sizeof(ngx_social_token_t));
        if (claims == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *claims = t;
        params[0].data = claims->jti;

        return ngx_social_pg_query(r, NULL,
                                   &ngx_social_users_oauth_stmts[
                                       NGX_SOCIAL_USERS_REVOKE_ACCESS],
                                   params, 3, ngx_social_users_revoked,
                                   claims);
    }

    /* a refresh token (or nothing known): its family is revoked */

    ngx_social_users_token_hash(&args.token, hash);

    params[0].data = hash;
    params[0].len = sizeof(hash);

    return ngx_social_pg_query(r, NULL,
                               &ngx_social_users_oauth_stmts[
                                   NGX_SOCIAL_USERS_REVOKE_REFRESH],
                               params, 1, ngx_social_users_revoked, NULL);
}


/* stored: for an access token, applied here and published everywhere */

static void
ngx_social_users_revoked(ngx_http_request_t *r,
    ngx_social_pg_result_t *result, void *data)
{
    ngx_social_token_t  *claims = data;

    if (result->status != NGX_SOCIAL_PG_OK) {
        ngx_http_finalize_request(r, ngx_social_pg_send_error(r, result));
        return;
    }

    if (claims != NULL) {
        ngx_social_users_revoke_token(claims->jti, claims->exp);
    }

    if (ngx_social_users_oauth_no_store(r) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_social_send_json(r, NGX_HTTP_OK,
                                                      json_object()));
}


/* ------------------------------------------------------------ helpers */


/*
 * The body into args: a JSON object when it says so or looks like one
 * (curl -d labels everything as a form), else a form.
 */

static ngx_int_t
ngx_social_users_oauth_args(ngx_http_request_t *r,
    ngx_social_users_oauth_args_t *args, const char **error)
{
    u_char           *p, *last;
    ngx_str_t         body;
    ngx_table_elt_t  *ct;

    if (ngx_social_body_bytes(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    p = body.data;
    last = p + body.len;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    ct = r->headers_in.content_type;

    if ((p < last && *p == '{')
        || (ct != NULL && ct->value.len >= sizeof("application/json") - 1
            && ngx_strncasecmp(ct->value.data, (u_char *) "application/json",
                               sizeof("application/json") - 1)
               == 0))
    {
        return ngx_social_users_oauth_json(r, &body, args, error);
    }

    return ngx_social_users_oauth_form(r, &body, args, error);
}


static ngx_int_t
ngx_social_users_oauth_form(ngx_http_request_t *r, ngx_str_t *body,
    ngx_social_users_oauth_args_t *args, const char **error)
{
    u_char     *p, *last, *amp, *eq;
    ngx_str_t   name, *field;

    p = body->data;
    last = p + body->len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');

        if (eq != NULL) {
            name.data = p;
            name.len = eq - p;
            field = NULL;

            if (name.len == 10 && ngx_strncmp(p, "grant_type", 10) == 0) {
                field = &args->grant_type;

            } else if (name.len == 8 && ngx_strncmp(p, "username", 8) == 0) {
                field = &args->username;

            } else if (name.len == 8 && ngx_strncmp(p, "password", 8) == 0) {
                field = &args->password;

            } else if (name.len == 13
                       && ngx_strncmp(p, "refresh_token", 13) == 0)
            {
                field = &args->refresh_token;

            } else if (name.len == 5 && ngx_strncmp(p, "token", 5) == 0) {
                field = &args->token;
            }

            if (field != NULL
                && ngx_social_users_form_value(r, eq + 1, amp, field)
                   != NGX_OK)
            {
                *error = "a parameter holds a NUL byte";
                return NGX_DECLINED;
            }
        }

        p = amp + 1;
    }

    return NGX_OK;
}


/* a form value: '+' is a space, then %XX; NUL is refused */

static ngx_int_t
ngx_social_users_form_value(ngx_http_request_t *r, u_char *start,
    u_char *end, ngx_str_t *value)
{
    u_char  *buf, *src, *dst;
    size_t   i, len;

    len = end - start;

    buf = ngx_pnalloc(r->pool, len ? len : 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }


    for (i = 0; i < len; i++) {
        buf[i] = (start[i] == '+') ? ' ' : start[i];
    }

    src = buf;
    dst = buf;
    ngx_unescape_uri(&dst, &src, len, 0);

    value->data = buf;
    value->len = dst - buf;

    if (ngx_strlchr(buf, dst, '\0') != NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_social_users_oauth_json(ngx_http_request_t *r, ngx_str_t *body,
    ngx_social_users_oauth_args_t *args, const char **error)
{
    size_t        i;
    json_t       *json, *v;
    ngx_str_t    *fields[5];
    const char   *names[5];

    json = ngx_social_json_owned(r, json_loadb((const char *) body->data,
                                               body->len,
                                               JSON_REJECT_DUPLICATES,
                                               NULL));
    if (json == NULL || !json_is_object(json)) {
        *error = "the body is neither a form nor a JSON object";
        return NGX_DECLINED;
    }

    names[0] = "grant_type";
    fields[0] = &args->grant_type;
    names[1] = "username";
    fields[1] = &args->username;
    names[2] = "password";
    fields[2] = &args->password;
    names[3] = "refresh_token";
    fields[3] = &args->refresh_token;
    names[4] = "token";
    fields[4] = &args->token;

    for (i = 0; i < 5; i++) {
        v = json_object_get(json, names[i]);

        if (v == NULL) {
            continue;
        }

        if (!json_is_string(v)) {
            *error = "parameters are strings";
            return NGX_DECLINED;
        }

        fields[i]->data = (u_char *) json_string_value(v);
        fields[i]->len = json_string_length(v);
    }

    return NGX_OK;
}


/* RFC 6749 section 5.2 */

static ngx_int_t
ngx_social_users_oauth_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, const char *description)
{
    if (ngx_social_users_oauth_no_store(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_send_json(r, status,
                                json_pack("{s:s, s:s}", "error", error,
                                          "error_description", description));
}


/* RFC 6749 section 5.1: Cache-Control: no-store, Pragma: no-cache */

static ngx_int_t
ngx_social_users_oauth_no_store(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Pragma");
    ngx_str_set(&h->value, "no-cache");

    return NGX_OK;
}


/* the refresh token lifetime in seconds, as a statement parameter */

static ngx_int_t
ngx_social_users_refresh_ttl(ngx_http_request_t *r, ngx_str_t *ttl)
{
    ngx_social_users_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_social_users_module);

    ttl->data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (ttl->data == NULL) {
        return NGX_ERROR;
    }

    ttl->len = ngx_sprintf(ttl->data, "%T", umcf->refresh_ttl) - ttl->data;

    return NGX_OK;
}


/* the SHA-256 of a token, in hex: how refresh tokens are stored */

static void
ngx_social_users_token_hash(ngx_str_t *token, u_char *hex)
{
    u_char  md[SHA256_DIGEST_LENGTH];

    SHA256(token->data, token->len, md);
    ngx_hex_dump(hex, md, sizeof(md));
}


static ngx_int_t
ngx_social_users_new_refresh(ngx_social_users_oauth_ctx_t *oc)
{
    u_char     rnd[NGX_SOCIAL_USERS_REFRESH_BYTES];
    ngx_str_t  src, dst, token;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    src.data = rnd;
    src.len = sizeof(rnd);
    dst.data = oc->refresh;

    ngx_encode_base64url(&dst, &src);
    oc->refresh_len = dst.len;

    token.data = oc->refresh;
    token.len = oc->refresh_len;

    ngx_social_users_token_hash(&token, oc->refresh_hash);

    return NGX_OK;
}
