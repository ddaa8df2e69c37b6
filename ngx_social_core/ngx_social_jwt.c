/*
 * ngx_social_jwt: issuing and verifying access tokens.
 *
 * Only tokens of the form this module issues are accepted: the header of
 * each key is fixed ({"alg","typ","kid"}), so a token's header must be
 * byte for byte that of one configured key.  That rejects "alg":"none",
 * an algorithm swapped for another and an unknown kid before any
 * cryptography runs.
 */

#include "ngx_social_core_module.h"
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>


#define NGX_SOCIAL_JWT_HS256      1
#define NGX_SOCIAL_JWT_ES256      2

#define NGX_SOCIAL_JWT_MAX_TOKEN  2048
#define NGX_SOCIAL_JWT_MAX_PART   512

/* verified tokens, per worker: a token seen again costs one memcmp */
#define NGX_SOCIAL_JWT_CACHE      1024
#define NGX_SOCIAL_JWT_CACHED     384
#define NGX_SOCIAL_JWT_HASHED     16       /* bytes that pick the slot */


typedef struct {
    ngx_str_t                   kid;
    ngx_uint_t                  alg;
    ngx_str_t                   secret;    /* HS256 */
    EVP_PKEY                   *pkey;      /* ES256 */
    ngx_uint_t                  can_sign;
    ngx_str_t                   header;    /* base64url, with its "." */
} ngx_social_jwt_key_t;


typedef struct {
    ngx_array_t                 keys;      /* ngx_social_jwt_key_t */
    ngx_str_t                   signing;   /* kid */
    ngx_social_jwt_key_t       *signer;
    time_t                      ttl;
} ngx_social_jwt_main_conf_t;


typedef struct {
    size_t                      len;
    u_char                      token[NGX_SOCIAL_JWT_CACHED];
    ngx_social_token_t          claims;
} ngx_social_jwt_cached_t;


static ngx_int_t ngx_social_jwt_sign(ngx_social_jwt_key_t *key,
    u_char *data, size_t len, u_char *sig, size_t *sig_len);
static ngx_int_t ngx_social_jwt_check(ngx_social_jwt_key_t *key,
    u_char *data, size_t len, u_char *sig, size_t sig_len);
static ngx_int_t ngx_social_jwt_claims(ngx_str_t *payload,
    ngx_social_token_t *claims);
static char *ngx_social_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_social_jwt_load(ngx_conf_t *cf,
    ngx_social_jwt_key_t *key, ngx_str_t *text);
static void ngx_social_jwt_free_key(void *data);
static void *ngx_social_jwt_create_main_conf(ngx_conf_t *cf);
static char *ngx_social_jwt_init_main_conf(ngx_conf_t *cf, void *conf);


static ngx_command_t  ngx_social_jwt_commands[] = {

    /* a key: its id and the file holding it (a secret, or a PEM key) */
    { ngx_string("social_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_social_jwt_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* the id of the key that signs new tokens */
    { ngx_string("social_jwt_signing_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_jwt_main_conf_t, signing),
      NULL },

    /* the lifetime of an access token */
    { ngx_string("social_jwt_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_social_jwt_main_conf_t, ttl),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_social_jwt_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_social_jwt_create_main_conf,       /* create main configuration */
    ngx_social_jwt_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_social_jwt_module = {
    NGX_MODULE_V1,
    &ngx_social_jwt_module_ctx,            /* module context */
    ngx_social_jwt_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static time_t                    ngx_social_jwt_lifetime = 900;
static ngx_social_jwt_cached_t   ngx_social_jwt_cache[NGX_SOCIAL_JWT_CACHE];


ngx_int_t
ngx_social_jwt_issue(ngx_http_request_t *r, int64_t user_id,
    ngx_str_t *token, ngx_social_token_t *claims)
{
    u_char                      *p, *start, payload[256];
    u_char                       rnd[NGX_SOCIAL_JTI_LEN / 2];
    u_char                       sig[128];
    size_t                       sig_len;
    ngx_str_t                    src, dst;
    ngx_social_token_t           t;
    ngx_social_jwt_key_t        *key;
    ngx_social_jwt_main_conf_t  *jmcf;

    jmcf = ngx_http_get_module_main_conf(r, ngx_social_jwt_module);
    key = jmcf->signer;

    if (key == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "social: no key can sign tokens (social_jwt_key)");
        return NGX_ERROR;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    t.sub = user_id;
    t.iat = ngx_time();
    t.exp = t.iat + jmcf->ttl;
    ngx_hex_dump(t.jti, rnd, sizeof(rnd));

    src.data = payload;
    src.len = ngx_sprintf(payload,
                          "{\"sub\":\"%L\",\"iat\":%T,\"exp\":%T,"
                          "\"jti\":\"%*s\"}",
                          t.sub, t.iat, t.exp,
                          (size_t) NGX_SOCIAL_JTI_LEN, t.jti)
              - payload;

    start = ngx_pnalloc(r->pool, key->header.len
                                 + ngx_base64_encoded_length(src.len) + 1
                                 + ngx_base64_encoded_length(sizeof(sig)));
    if (start == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(start, key->header.data, key->header.len);

    dst.data = p;
    ngx_encode_base64url(&dst, &src);
    p += dst.len;

    if (ngx_social_jwt_sign(key, start, p - start, sig, &sig_len) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "social: signing a token failed");
        return NGX_ERROR;
    }

    *p++ = '.';

    src.data = sig;
    src.len = sig_len;
    dst.data = p;
    ngx_encode_base64url(&dst, &src);
    p += dst.len;

    token->data = start;
    token->len = p - start;

    if (claims) {
        *claims = t;
    }

    return NGX_OK;
}


ngx_int_t
ngx_social_jwt_verify(ngx_http_request_t *r, ngx_str_t *token,
    ngx_social_token_t *claims)
{
    u_char                      *dot, *end, sig[NGX_SOCIAL_JWT_MAX_PART];
    u_char                       payload[NGX_SOCIAL_JWT_MAX_PART];
    ngx_str_t                    src, dst, s;
    ngx_uint_t                   i;
    ngx_social_jwt_key_t        *key;
    ngx_social_jwt_cached_t     *cached;
    ngx_social_jwt_main_conf_t  *jmcf;

    jmcf = ngx_http_get_module_main_conf(r, ngx_social_jwt_module);

    if (token->len > NGX_SOCIAL_JWT_MAX_TOKEN) {
        return NGX_DECLINED;
    }

    /*
     * The same bytes verified before: only the expiry can have changed.
     * The slot is chosen by the end of the signature, where tokens differ
     * most; hashing the whole token cost more than the rest of the check.
     */

    i = ngx_min(token->len, NGX_SOCIAL_JWT_HASHED);
    cached = &ngx_social_jwt_cache[ngx_crc32_short(token->data
                                                   + token->len - i, i)
                                   % NGX_SOCIAL_JWT_CACHE];

    if (cached->len == token->len
        && ngx_memcmp(cached->token, token->data, token->len) == 0)
    {
        if (cached->claims.exp <= ngx_time()) {
            return NGX_DECLINED;
        }

        *claims = cached->claims;
        return NGX_OK;
    }

    key = NULL;

    for (i = 0; i < jmcf->keys.nelts; i++) {
        key = &((ngx_social_jwt_key_t *) jmcf->keys.elts)[i];

        if (token->len > key->header.len
            && ngx_memcmp(token->data, key->header.data, key->header.len)
               == 0)
        {
            break;
        }
    }

    if (i == jmcf->keys.nelts) {
        return NGX_DECLINED;
    }

    end = token->data + token->len;
    src.data = token->data + key->header.len;
    dot = ngx_strlchr(src.data, end, '.');

    if (dot == NULL || dot == src.data || dot + 1 == end) {
        return NGX_DECLINED;
    }

    src.len = dot - src.data;

    if (ngx_base64_decoded_length(src.len) > sizeof(payload)
        || ngx_base64_decoded_length((size_t) (end - dot - 1)) > sizeof(sig))
    {
        return NGX_DECLINED;
    }

    dst.data = payload;
    if (ngx_decode_base64url(&dst, &src) != NGX_OK) {
        return NGX_DECLINED;
    }

    src.data = dot + 1;
    src.len = end - dot - 1;
    s.data = sig;

    if (ngx_decode_base64url(&s, &src) != NGX_OK
        || ngx_social_jwt_check(key, token->data, dot - token->data, sig,
                                s.len)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (ngx_social_jwt_claims(&dst, claims) != NGX_OK
        || claims->exp <= ngx_time())
    {
        return NGX_DECLINED;
    }

    if (token->len <= NGX_SOCIAL_JWT_CACHED) {
        ngx_memcpy(cached->token, token->data, token->len);
        cached->len = token->len;
        cached->claims = *claims;
    }

    return NGX_OK;
}


time_t
ngx_social_jwt_ttl(void)
{
    return ngx_social_jwt_lifetime;
}


static ngx_int_t
ngx_social_jwt_sign(ngx_social_jwt_key_t *key, u_char *data, size_t len,
    u_char *sig, size_t *sig_len)
{
    int                  ok;
    size_t               der_len;
    u_char               der[128];
    unsigned int         n;
    EVP_MD_CTX          *md;
    ECDSA_SIG           *es;
    const BIGNUM        *br, *bs;
    const u_char        *p;

    if (key->alg == NGX_SOCIAL_JWT_HS256) {
        if (HMAC(EVP_sha256(), key->secret.data, (int) key->secret.len,
                 data, len, sig, &n)
            == NULL)
        {
            return NGX_ERROR;
        }

        *sig_len = n;
        return NGX_OK;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    der_len = sizeof(der);

    ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) == 1
         && EVP_DigestSign(md, der, &der_len, data, len) == 1;

    EVP_MD_CTX_free(md);

    if (!ok) {
        return NGX_ERROR;
    }

    /* JWS wants r || s, 32 bytes each, not DER */

    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long) der_len);
    if (es == NULL) {
        return NGX_ERROR;
    }

    ECDSA_SIG_get0(es, &br, &bs);

    ok = BN_bn2binpad(br, sig, 32) == 32 && BN_bn2binpad(bs, sig + 32, 32)
                                            == 32;
    ECDSA_SIG_free(es);

    *sig_len = 64;

    return ok ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_social_jwt_check(ngx_social_jwt_key_t *key, u_char *data, size_t len,
    u_char *sig, size_t sig_len)
{
    int           ok, der_len;
    u_char        mac[EVP_MAX_MD_SIZE], *der;
    BIGNUM       *br, *bs;
    ECDSA_SIG    *es;
    EVP_MD_CTX   *md;
    unsigned int  n;

    if (key->alg == NGX_SOCIAL_JWT_HS256) {
        if (HMAC(EVP_sha256(), key->secret.data, (int) key->secret.len,
                 data, len, mac, &n)
            == NULL)
        {
            return NGX_ERROR;
        }

        return (sig_len == n && CRYPTO_memcmp(mac, sig, n) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    if (sig_len != 64) {
        return NGX_DECLINED;
    }

    es = ECDSA_SIG_new();
    br = BN_bin2bn(sig, 32, NULL);
    bs = BN_bin2bn(sig + 32, 32, NULL);

    if (es == NULL || br == NULL || bs == NULL
        || ECDSA_SIG_set0(es, br, bs) != 1)
    {
        ECDSA_SIG_free(es);
        BN_free(br);
        BN_free(bs);
        return NGX_ERROR;
    }

    der = NULL;
    der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);

    if (der_len <= 0) {
        return NGX_ERROR;
    }

    md = EVP_MD_CTX_new();

    ok = md != NULL
         && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key->pkey)
            == 1
         && EVP_DigestVerify(md, der, der_len, data, len) == 1;

    EVP_MD_CTX_free(md);
    OPENSSL_free(der);

    return ok ? NGX_OK : NGX_DECLINED;
}


/* {"sub":"<id>","iat":N,"exp":N,"jti":"<32 hex>"}, nothing missing */

static ngx_int_t
ngx_social_jwt_claims(ngx_str_t *payload, ngx_social_token_t *claims)
{
    size_t        sub_len, jti_len;
    json_t       *json;
    ngx_int_t     rc;
    json_int_t    iat, exp;
    const char   *sub, *jti;

    json = json_loadb((const char *) payload->data, payload->len, 0, NULL);
    if (json == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    if (json_unpack(json, "{s:s%, s:I, s:I, s:s%}", "sub", &sub, &sub_len,
                    "iat", &iat, "exp", &exp, "jti", &jti, &jti_len)
        == 0
        && jti_len == NGX_SOCIAL_JTI_LEN && sub_len > 0 && sub_len < 20)
    {
        claims->sub = ngx_atoof((u_char *) sub, sub_len);
        claims->iat = (time_t) iat;
        claims->exp = (time_t) exp;
        ngx_memcpy(claims->jti, jti, NGX_SOCIAL_JTI_LEN);

        if (claims->sub > 0) {
            rc = NGX_OK;
        }
    }

    json_decref(json);

    return rc;
}


/* social_jwt_key kid file */

static char *
ngx_social_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_social_jwt_main_conf_t  *jmcf = conf;

    u_char                *p;
    ssize_t                n;
    ngx_str_t             *value, text;
    ngx_uint_t             i;
    ngx_file_t             file;
    ngx_file_info_t        fi;
    ngx_social_jwt_key_t  *key;

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '-'
              || value[1].data[i] == '_' || value[1].data[i] == '.'))
        {
            return "has a key id that is not [A-Za-z0-9._-]";
        }
    }

    key = jmcf->keys.elts;

    for (i = 0; i < jmcf->keys.nelts; i++) {
        if (key[i].kid.len == value[1].len
            && ngx_strncmp(key[i].kid.data, value[1].data, value[1].len) == 0)
        {
            return "declares a key id twice";
        }
    }

    if (ngx_conf_full_name(cf->cycle, &value[2], 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = value[2];
    file.log = cf->log;

    file.fd = ngx_open_file(value[2].data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open key file \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 16384)
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" is unreadable or too large",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    text.len = (size_t) ngx_file_size(&fi);
    text.data = ngx_pnalloc(cf->pool, text.len + 1);
    if (text.data == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, text.data, text.len, 0);
    ngx_close_file(file.fd);

    if (n != (ssize_t) text.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read key file \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    text.data[text.len] = '\0';

    key = ngx_array_push(&jmcf->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_social_jwt_key_t));
    key->kid = value[1];

    if (ngx_social_jwt_load(cf, key, &text) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" holds neither a secret of at "
                           "least 32 bytes nor an EC P-256 key", &value[2]);
        return NGX_CONF_ERROR;
    }

    /* the header of this key's tokens, encoded once: {"alg","typ","kid"} */

    p = ngx_pnalloc(cf->pool, 64 + key->kid.len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    text.data = p;
    text.len = ngx_sprintf(p,
                           "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%V\"}",
                           key->alg == NGX_SOCIAL_JWT_HS256 ? "HS256"
                                                            : "ES256",
                           &key->kid)
               - p;

    key->header.data = ngx_pnalloc(cf->pool,
                                   ngx_base64_encoded_length(text.len) + 1);
    if (key->header.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_encode_base64url(&key->header, &text);
    key->header.data[key->header.len++] = '.';

    return NGX_CONF_OK;
}


/* a PEM EC P-256 key (private, or public only), or else a raw secret */

static ngx_int_t
ngx_social_jwt_load(ngx_conf_t *cf, ngx_social_jwt_key_t *key,
    ngx_str_t *text)
{
    BIO                 *bio;
    char                 group[32];
    size_t               len;
    EVP_PKEY            *pkey;
    ngx_pool_cleanup_t  *cln;

    if (ngx_strstr(text->data, "-----BEGIN") == NULL) {
        len = text->len;

        while (len && (text->data[len - 1] == '\n'
                       || text->data[len - 1] == '\r'))
        {
            len--;
        }

        if (len < 32) {
            return NGX_ERROR;
        }

        key->alg = NGX_SOCIAL_JWT_HS256;
        key->secret.data = text->data;
        key->secret.len = len;
        key->can_sign = 1;

        return NGX_OK;
    }

    bio = BIO_new_mem_buf(text->data, (int) text->len);
    if (bio == NULL) {
        return NGX_ERROR;
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    key->can_sign = (pkey != NULL);

    if (pkey == NULL) {
        (void) BIO_reset(bio);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }

    BIO_free(bio);

    if (pkey == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        EVP_PKEY_free(pkey);
        return NGX_ERROR;
    }

    cln->handler = ngx_social_jwt_free_key;
    cln->data = pkey;

    if (!EVP_PKEY_is_a(pkey, "EC")
        || EVP_PKEY_get_utf8_string_param(pkey, "group", group,
                                          sizeof(group), NULL)
           != 1
        || ngx_strcmp(group, "prime256v1") != 0)
    {
        return NGX_ERROR;
    }

    key->alg = NGX_SOCIAL_JWT_ES256;
    key->pkey = pkey;

    return NGX_OK;
}


static void
ngx_social_jwt_free_key(void *data)
{
    EVP_PKEY_free(data);
}


static void *
ngx_social_jwt_create_main_conf(ngx_conf_t *cf)
{
    ngx_social_jwt_main_conf_t  *jmcf;

    jmcf = ngx_pcalloc(cf->pool, sizeof(ngx_social_jwt_main_conf_t));
    if (jmcf == NULL) {
        return NULL;
    }

    jmcf->ttl = NGX_CONF_UNSET;

    if (ngx_array_init(&jmcf->keys, cf->pool, 4, sizeof(ngx_social_jwt_key_t))
        != NGX_OK)
    {
        return NULL;
    }

    return jmcf;
}


static char *
ngx_social_jwt_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_social_jwt_main_conf_t  *jmcf = conf;

    ngx_uint_t             i;
    ngx_social_jwt_key_t  *key;

    ngx_conf_init_value(jmcf->ttl, 900);
    ngx_social_jwt_lifetime = jmcf->ttl;

    key = jmcf->keys.elts;

    for (i = 0; i < jmcf->keys.nelts; i++) {
        if (jmcf->signing.len == 0) {
            if (key[i].can_sign) {
                jmcf->signer = &key[i];
                break;
            }

            continue;
        }

        if (key[i].kid.len == jmcf->signing.len
            && ngx_strncmp(key[i].kid.data, jmcf->signing.data,
                           jmcf->signing.len)
               == 0)
        {
            if (!key[i].can_sign) {
                return "social_jwt_signing_key names a public key";
            }

            jmcf->signer = &key[i];
            break;
        }
    }

    if (jmcf->signing.len && jmcf->signer == NULL) {
        return "social_jwt_signing_key names no social_jwt_key";
    }

    return NGX_CONF_OK;
}
