/*
 * Internal declarations of the users module.
 */

#ifndef _NGX_SOCIAL_USERS_H_INCLUDED_
#define _NGX_SOCIAL_USERS_H_INCLUDED_


#include <ngx_social_core.h>


/* scrypt, N = 2^15, r = 8, p = 1: 32 MiB and tens of ms per hash */
#define NGX_SOCIAL_USERS_SCRYPT_LN   15
#define NGX_SOCIAL_USERS_SCRYPT_R    8
#define NGX_SOCIAL_USERS_SCRYPT_P    1
#define NGX_SOCIAL_USERS_SALT_LEN    16
#define NGX_SOCIAL_USERS_HASH_LEN    32

/* "$scrypt$ln=NN,r=NN,p=NN$" + base64 salt + "$" + base64 hash */
#define NGX_SOCIAL_USERS_PHC_LEN     128


/* a user's own view (the public view and the email), as JSON text */
#define NGX_SOCIAL_USERS_OWN_VIEW                                            \
    NGX_SOCIAL_SQL_OBJECT(NGX_SOCIAL_SQL_USER_FIELDS ", 'email', email")


typedef struct {
    ngx_str_t                   thread_pool_name;
    ngx_thread_pool_t          *thread_pool;
    time_t                      refresh_ttl;
} ngx_social_users_main_conf_t;


typedef struct {
    ngx_str_t                   password;  /* in */
    u_char                      phc[NGX_SOCIAL_USERS_PHC_LEN];
    size_t                      phc_len;   /* out; 0 on failure */
} ngx_social_users_hash_t;


typedef struct {
    ngx_str_t                   password;  /* in */
    ngx_str_t                   phc;       /* in: the stored hash */
    ngx_uint_t                  ok;        /* out */
    u_char                      rehash[NGX_SOCIAL_USERS_PHC_LEN];
    size_t                      rehash_len; /* out: weaker params, new hash */
} ngx_social_users_verify_t;


extern ngx_module_t  ngx_social_users_module;
extern ngx_str_t     ngx_social_users_dummy_phc;


ngx_int_t ngx_social_users_password_init(ngx_cycle_t *cycle);
void ngx_social_users_password_done(ngx_cycle_t *cycle);
void ngx_social_users_password_hash(ngx_social_users_hash_t *h);
void ngx_social_users_password_verify(ngx_social_users_verify_t *v);

ngx_int_t ngx_social_users_me_init(ngx_conf_t *cf);
ngx_int_t ngx_social_users_me(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_users_patch_me(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

ngx_int_t ngx_social_users_follow_init(ngx_conf_t *cf);
ngx_int_t ngx_social_users_follow(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_users_unfollow(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_users_followers(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_users_following(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

ngx_int_t ngx_social_users_profile_init(ngx_conf_t *cf);
ngx_int_t ngx_social_users_profile(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_users_uncache_and_send(ngx_http_request_t *r,
    ngx_str_t *ids, ngx_uint_t n, ngx_uint_t feeds, ngx_uint_t status,
    PGresult *res);

ngx_int_t ngx_social_users_oauth_init(ngx_conf_t *cf);
ngx_int_t ngx_social_users_token(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_users_revoke(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);

ngx_int_t ngx_social_users_revocation_init(ngx_conf_t *cf);
ngx_int_t ngx_social_users_revocation_start(ngx_cycle_t *cycle);
void ngx_social_users_revocation_stop(ngx_cycle_t *cycle);
void ngx_social_users_revoke_token(u_char *jti, time_t exp);
void ngx_social_users_revoke_user(int64_t user, time_t valid_after,
    u_char *keep);

ngx_int_t ngx_social_users_register_init(ngx_conf_t *cf);
ngx_int_t ngx_social_users_register(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);


#endif /* _NGX_SOCIAL_USERS_H_INCLUDED_ */
