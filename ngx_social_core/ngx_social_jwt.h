/*
 * Access tokens: JWTs signed with HS256 (a shared secret) or ES256 (an
 * EC P-256 key, so that a node holding only the public key can verify),
 * each key named by a "kid" so that keys can be rotated: several keys
 * verify at once, one of them signs.
 */

#ifndef _NGX_SOCIAL_JWT_H_INCLUDED_
#define _NGX_SOCIAL_JWT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_SOCIAL_JTI_LEN  32


typedef struct {
    int64_t                     sub;       /* the user id */
    time_t                      iat;
    time_t                      exp;
    u_char                      jti[NGX_SOCIAL_JTI_LEN];
} ngx_social_token_t;


/* a new access token for the user, from r->pool; claims may be NULL */
ngx_int_t ngx_social_jwt_issue(ngx_http_request_t *r, int64_t user_id,
    ngx_str_t *token, ngx_social_token_t *claims);

/*
 * NGX_OK: signature, key id, algorithm and expiry are good and claims
 * are set.  NGX_DECLINED: the token is invalid or expired.
 */
ngx_int_t ngx_social_jwt_verify(ngx_http_request_t *r, ngx_str_t *token,
    ngx_social_token_t *claims);

/* the lifetime of an access token, seconds */
time_t ngx_social_jwt_ttl(void);


#endif /* _NGX_SOCIAL_JWT_H_INCLUDED_ */
