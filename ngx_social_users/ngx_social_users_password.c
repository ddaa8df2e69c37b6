/*
 * Password hashing: scrypt from OpenSSL's EVP_KDF, a random salt per
 * password, the parameters stored with the hash in PHC form
 * ("$scrypt$ln=15,r=8,p=1$salt$hash") so they can be raised later.  The
 * functions here run in a thread of the pool; nothing here touches nginx
 * structures.
 */

#include "ngx_social_users.h"
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>


static ngx_int_t ngx_social_users_scrypt(ngx_str_t *password, u_char *salt,
    size_t salt_len, ngx_uint_t ln, ngx_uint_t r, ngx_uint_t p,
    u_char *out, size_t out_len);
static u_char *ngx_social_users_base64(u_char *dst, u_char *src, size_t len);


static EVP_KDF  *ngx_social_users_kdf;


ngx_int_t
ngx_social_users_password_init(ngx_cycle_t *cycle)
{
    ngx_social_users_kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);

    if (ngx_social_users_kdf == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "social: OpenSSL has no scrypt KDF");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_social_users_password_done(ngx_cycle_t *cycle)
{
    EVP_KDF_free(ngx_social_users_kdf);
    ngx_social_users_kdf = NULL;
}


/* in a pool thread: a new salt, the hash, the PHC string */

void
ngx_social_users_password_hash(ngx_social_users_hash_t *h)
{
    u_char  *p, salt[NGX_SOCIAL_USERS_SALT_LEN];
    u_char   hash[NGX_SOCIAL_USERS_HASH_LEN];

    h->phc_len = 0;

    if (RAND_bytes(salt, sizeof(salt)) != 1
        || ngx_social_users_scrypt(&h->password, salt, sizeof(salt),
                                   NGX_SOCIAL_USERS_SCRYPT_LN,
                                   NGX_SOCIAL_USERS_SCRYPT_R,
                                   NGX_SOCIAL_USERS_SCRYPT_P,
                                   hash, sizeof(hash))
           != NGX_OK)
    {
        return;
    }

    p = ngx_sprintf(h->phc, "$scrypt$ln=%ui,r=%ui,p=%ui$",
                    (ngx_uint_t) NGX_SOCIAL_USERS_SCRYPT_LN,
                    (ngx_uint_t) NGX_SOCIAL_USERS_SCRYPT_R,
                    (ngx_uint_t) NGX_SOCIAL_USERS_SCRYPT_P);
    p = ngx_social_users_base64(p, salt, sizeof(salt));
    *p++ = '$';
    p = ngx_social_users_base64(p, hash, sizeof(hash));

    h->phc_len = p - h->phc;

    OPENSSL_cleanse(hash, sizeof(hash));
}


static ngx_int_t
ngx_social_users_scrypt(ngx_str_t *password, u_char *salt, size_t salt_len,
    ngx_uint_t ln, ngx_uint_t r, ngx_uint_t p, u_char *out, size_t out_len)
{
    int            ok;
    uint64_t       n, maxmem;
    uint32_t       r32, p32;
    OSSL_PARAM     params[7], *q;
    EVP_KDF_CTX   *kctx;

    kctx = EVP_KDF_CTX_new(ngx_social_users_kdf);
    if (kctx == NULL) {
        return NGX_ERROR;
    }

    n = (uint64_t) 1 << ln;
    r32 = (uint32_t) r;
    p32 = (uint32_t) p;

    /* 128 * r * N bytes, with room to spare */
    maxmem = 2 * 128 * (uint64_t) r * n * p;

    q = params;
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                             password->data, password->len);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt,
                                             salt_len);
    *q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
    *q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32);
    *q++ = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32);
    *q++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    *q = OSSL_PARAM_construct_end();

    ok = EVP_KDF_derive(kctx, out, out_len, params);

    EVP_KDF_CTX_free(kctx);

    return ok == 1 ? NGX_OK : NGX_ERROR;
}


/* base64 without padding, as PHC strings have it */

static u_char *
ngx_social_users_base64(u_char *dst, u_char *src, size_t len)
{
    ngx_str_t  d, s;

    d.data = dst;
    s.data = src;
    s.len = len;

    ngx_encode_base64(&d, &s);

    while (d.len && d.data[d.len - 1] == '=') {
        d.len--;
    }

    return dst + d.len;
}
