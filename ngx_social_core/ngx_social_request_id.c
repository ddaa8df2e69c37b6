/*
 * Request ids: $social_request_id echoes a sane client X-Request-Id or makes
 * a new one; a header filter puts it on every response.  The value is an
 * indexed, cacheable variable, so it survives internal redirects (error
 * pages) and the header, the error body and the access log agree.
 */

#include "ngx_social_core_module.h"
#include <openssl/rand.h>


#define NGX_SOCIAL_REQUEST_ID_MAX  128


static ngx_int_t ngx_social_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_social_request_id_header_filter(ngx_http_request_t *r);
static ngx_table_elt_t *ngx_social_request_id_find(ngx_list_t *headers);
static ngx_uint_t ngx_social_request_id_sane(ngx_str_t *id);


static ngx_str_t  ngx_social_request_id_name =
    ngx_string("social_request_id");
static ngx_str_t  ngx_social_request_id_header = ngx_string("X-Request-Id");

static ngx_int_t  ngx_social_request_id_index = NGX_ERROR;

/* per worker: a random prefix and a counter make ids unique across nodes */
static uint64_t   ngx_social_request_id_prefix;
static uint64_t   ngx_social_request_id_counter;

static ngx_http_output_header_filter_pt  ngx_social_next_header_filter;


ngx_int_t
ngx_social_request_id_init(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_social_request_id_name, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_social_request_id_variable;

    ngx_social_request_id_index = ngx_http_get_variable_index(cf,
                                                &ngx_social_request_id_name);
    if (ngx_social_request_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_social_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_social_request_id_header_filter;

    return NGX_OK;
}


ngx_int_t
ngx_social_request_id_init_process(ngx_cycle_t *cycle)
{
    if (RAND_bytes((u_char *) &ngx_social_request_id_prefix,
                   sizeof(uint64_t))
        != 1)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "social: RAND_bytes() failed for request ids");
        return NGX_ERROR;
    }

    ngx_social_request_id_counter = 0;

    return NGX_OK;
}


ngx_int_t
ngx_social_request_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_http_variable_value_t  *v;

    v = ngx_http_get_indexed_variable(r->main, ngx_social_request_id_index);

    if (v == NULL || v->not_found) {
        return NGX_ERROR;
    }

    id->data = v->data;
    id->len = v->len;

    return NGX_OK;
}


static ngx_int_t
ngx_social_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    h = ngx_social_request_id_find(&r->main->headers_in.headers);

    if (h != NULL && ngx_social_request_id_sane(&h->value)) {
        p = h->value.data;
        v->len = h->value.len;

    } else {
        p = ngx_pnalloc(r->pool, 32);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(p, "%016uxL%016uxL", ngx_social_request_id_prefix,
                    ++ngx_social_request_id_counter);
        v->len = 32;
    }

    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_social_request_id_header_filter(ngx_http_request_t *r)
{
    ngx_str_t         id;
    ngx_table_elt_t  *h;

    if (r != r->main
        || ngx_social_request_id_find(&r->headers_out.headers) != NULL
        || ngx_social_request_id(r, &id) != NGX_OK)
    {
        return ngx_social_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = ngx_social_request_id_header;
    h->value = id;

    return ngx_social_next_header_filter(r);
}


static ngx_table_elt_t *
ngx_social_request_id_find(ngx_list_t *headers)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &headers->part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0
            && h[i].key.len == ngx_social_request_id_header.len
            && ngx_strncasecmp(h[i].key.data,
                               ngx_social_request_id_header.data,
                               h[i].key.len)
               == 0)
        {
            return &h[i];
        }
    }
}


/* 1-128 characters of [A-Za-z0-9._:-] */

static ngx_uint_t
ngx_social_request_id_sane(ngx_str_t *id)
{
    u_char      c;
    ngx_uint_t  i;

    if (id->len == 0 || id->len > NGX_SOCIAL_REQUEST_ID_MAX) {
        return 0;
    }

    for (i = 0; i < id->len; i++) {
        c = id->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':'
            || c == '-')
        {
            continue;
        }

        return 0;
    }

    return 1;
}
