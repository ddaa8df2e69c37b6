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


static ngx_int_t ngx_social_users_phc_param(u_char **pos, u_char *last,
    const char *name, u_char stop);
static ngx_int_t ngx_social_users_scrypt(ngx_str_t *password, u_char *salt,
    size_t salt_len, ngx_uint_t ln, ngx_uint_t r, ngx_uint_t p,
    u_char *out, size_t out_len);
static u_char *ngx_social_users_base64(u_char *dst, u_char *src, size_t len);


static EVP_KDF  *ngx_social_users_kdf;


/*
 * Verified in place of an unknown user's hash, with the same parameters,
 * so that an unknown user and a wrong password cost the same time.
 */
ngx_str_t  ngx_social_users_dummy_phc = ngx_string(
    "$scrypt$ln=15,r=8,p=1$c29jaWFsLWR1bW15LXNhbHQ"
    "$RHVtbXkgaGFzaCBmb3IgdW5rbm93biB1c2Vycywgbm90IHJlYWw");


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


/*
 * In a pool thread: checks the password against a stored PHC string; when
 * the stored parameters are weaker than the current ones, hashes again.
 */

void
ngx_social_users_password_verify(ngx_social_users_verify_t *v)
{
    u_char                   *p, *last, *dollar;
    u_char                    salt[64], hash[64], out[64];
    ngx_int_t                 ln, r, pp;
    ngx_str_t                 src, dst_salt, dst_hash;
    ngx_social_users_hash_t   h;

    v->ok = 0;
    v->rehash_len = 0;

    p = v->phc.data;
    last = p + v->phc.len;

    if (v->phc.len < sizeof("$scrypt$") - 1
        || ngx_strncmp(p, "$scrypt$", sizeof("$scrypt$") - 1) != 0)
    {
        return;
    }

    p += sizeof("$scrypt$") - 1;

    ln = ngx_social_users_phc_param(&p, last, "ln=", ',');
    r = ngx_social_users_phc_param(&p, last, "r=", ',');
    pp = ngx_social_users_phc_param(&p, last, "p=", '$');

    /* bounds keep a corrupt row from costing the worker its memory */
    if (p == NULL || ln < 10 || ln > 20 || r < 1 || r > 16 || pp < 1
        || pp > 4)
    {
        return;
    }

    dollar = ngx_strlchr(p, last, '$');

    if (dollar == NULL || (size_t) (dollar - p) > 80
        || (size_t) (last - dollar - 1) > 80)
    {
        return;
    }

    src.data = p;
    src.len = dollar - p;
    dst_salt.data = salt;

    if (ngx_decode_base64(&dst_salt, &src) != NGX_OK) {
        return;
    }

    src.data = dollar + 1;
    src.len = last - dollar - 1;
    dst_hash.data = hash;

    if (ngx_decode_base64(&dst_hash, &src) != NGX_OK || dst_hash.len == 0) {
        return;
    }

    if (ngx_social_users_scrypt(&v->password, salt, dst_salt.len, ln, r, pp,
                                out, dst_hash.len)
        != NGX_OK)
    {
        return;
    }

    v->ok = (CRYPTO_memcmp(out, hash, dst_hash.len) == 0);

    OPENSSL_cleanse(out, sizeof(out));

    if (v->ok && (ln < NGX_SOCIAL_USERS_SCRYPT_LN
                  || r < NGX_SOCIAL_USERS_SCRYPT_R
                  || pp < NGX_SOCIAL_USERS_SCRYPT_P))
    {
        h.password = v->password;
        ngx_social_users_password_hash(&h);

        ngx_memcpy(v->rehash, h.phc, h.phc_len);
        v->rehash_len = h.phc_len;
    }
}


/* "name=123<stop>" at *pos: 123, *pos past the stop; -1 if malformed */

static ngx_int_t
ngx_social_users_phc_param(u_char **pos, u_char *last, const char *name,
    u_char stop)
{
    u_char     *p, *end;
    size_t      len;
    ngx_int_t   n;

    p = *pos;
    len = ngx_strlen(name);

    if (p == NULL || (size_t) (last - p) < len
        || ngx_strncmp(p, name, len) != 0)
    {
        *pos = NULL;
        return -1;
    }

    p += len;
    end = ngx_strlchr(p, last, stop);

    if (end == NULL || (n = ngx_atoi(p, end - p)) == NGX_ERROR) {
        *pos = NULL;
        return -1;
    }

    *pos = end + 1;

    return n;
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
