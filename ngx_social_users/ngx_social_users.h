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


typedef struct {
    ngx_str_t                   thread_pool_name;
    ngx_thread_pool_t          *thread_pool;
} ngx_social_users_main_conf_t;


typedef struct {
    ngx_str_t                   password;  /* in */
    u_char                      phc[NGX_SOCIAL_USERS_PHC_LEN];
    size_t                      phc_len;   /* out; 0 on failure */
} ngx_social_users_hash_t;


extern ngx_module_t  ngx_social_users_module;


ngx_int_t ngx_social_users_password_init(ngx_cycle_t *cycle);
void ngx_social_users_password_done(ngx_cycle_t *cycle);
void ngx_social_users_password_hash(ngx_social_users_hash_t *h);

ngx_int_t ngx_social_users_register_init(ngx_conf_t *cf);
ngx_int_t ngx_social_users_register(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);


#endif /* _NGX_SOCIAL_USERS_H_INCLUDED_ */
