/*
 * JSON in and out: response bodies written with jansson, the contract's
 * error shape, and request bodies read, checked and parsed.
 */

#include "ngx_social_core_module.h"


#define NGX_SOCIAL_JSON_GUESS  256     /* bytes tried for a body first */


static void ngx_social_json_cleanup(void *data);


static ngx_str_t  ngx_social_json_type =
    ngx_string("application/json; charset=utf-8");


/* Sends json (a reference the caller gives up) as the whole response. */

ngx_int_t
ngx_social_send_json(ngx_http_request_t *r, ngx_uint_t status, json_t *json)
{
    ngx_str_t  text;

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* most bodies fit the first guess: dumped once, not measured first */

    text.data = ngx_pnalloc(r->pool, NGX_SOCIAL_JSON_GUESS);
    if (text.data == NULL) {
        json_decref(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.len = json_dumpb(json, (char *) text.data, NGX_SOCIAL_JSON_GUESS,
                          JSON_COMPACT);

    if (text.len > NGX_SOCIAL_JSON_GUESS) {
        text.data = ngx_pnalloc(r->pool, text.len);

        if (text.data == NULL
            || json_dumpb(json, (char *) text.data, text.len, JSON_COMPACT)
               != text.len)
        {
            json_decref(json);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    json_decref(json);

    return ngx_social_send_json_text(r, status, &text);
}


/*
 * Copies JSON text as PostgreSQL's json functions write it ({"a" : 1,
 * "b" : 2}) to dst compact, as every answer is: the whitespace between
 * tokens goes, strings stay as they are.  dst may be src.  Returns the
 * end of what was written.
 */

u_char *
ngx_social_json_compact(u_char *dst, u_char *src, size_t len)
{
    u_char      *end;
    ngx_uint_t   string, escape;

    string = 0;
    escape = 0;

    for (end = src + len; src < end; src++) {

        if (string) {
            if (escape) {
                escape = 0;

            } else if (*src == '\\') {
                escape = 1;

            } else if (*src == '"') {
                string = 0;
            }

        } else if (*src == '"') {
            string = 1;

        } else if (*src == ' ' || *src == '\n' || *src == '\r'
                   || *src == '\t')
        {
            continue;
        }

        *dst++ = *src;
    }

    return dst;
}


/* Sends text that already is JSON (from r->pool or living as long). */

ngx_int_t
ngx_social_send_json_text(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *text)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_type = ngx_social_json_type;
    r->headers_out.content_type_len = ngx_social_json_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = text->len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = text->data;
    b->last = text->data + text->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* 204: no body */

ngx_int_t
ngx_social_send_no_content(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


/*
 * {"error": {"code", "message", "request_id", "fields"?}}; fields is a
 * reference the caller gives up, or NULL.
 */

ngx_int_t
ngx_social_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, json_t *fields)
{
    json_t     *err;
    ngx_str_t   id;

    if (ngx_social_request_id(r, &id) != NGX_OK) {
        ngx_str_set(&id, "");
    }

    err = json_pack("{s:s, s:s, s:s%}", "code", code, "message", message,
                    "request_id", (char *) id.data, id.len);
    if (err == NULL) {
        json_decref(fields);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (fields != NULL && json_object_set_new(err, "fields", fields) != 0) {
        json_decref(err);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_social_send_json(r, status, json_pack("{s:o}", "error", err));
}


/* Ties a jansson value to the request: it is released with r->pool. */

json_t *
ngx_social_json_owned(ngx_http_request_t *r, json_t *json)
{
    ngx_pool_cleanup_t  *cln;

    if (json == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(json);
        return NULL;
    }

    cln->handler = ngx_social_json_cleanup;
    cln->data = json;

    return json;
}


json_t *
ngx_social_json_str(ngx_str_t *s)
{
    return json_stringn((const char *) s->data, s->len);
}


static void
ngx_social_json_cleanup(void *data)
{
    json_decref((json_t *) data);
}


/* The request body as one contiguous run of bytes (from r->pool). */

ngx_int_t
ngx_social_body_bytes(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t         len;
    ssize_t       n;
    u_char       *p;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * Parses the body into ctx->body, a JSON object.  jansson rejects invalid,
 * overlong and surrogate UTF-8; NUL inside strings is let through so that
 * field validation can answer it with 422 as the contract says.  When
 * ctx->body stays NULL an error response was sent and the result is that
 * of sending it.
 */

ngx_int_t
ngx_social_parse_json_body(ngx_http_request_t *r, ngx_social_ctx_t *ctx)
{
    u_char        msg[JSON_ERROR_TEXT_LENGTH + 64], *last;
    json_t       *json;
    ngx_str_t     body;
    json_error_t  err;

    if (ngx_social_body_bytes(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (body.len == 0) {
        return ngx_social_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                     "a JSON body is required", NULL);
    }

    json = json_loadb((const char *) body.data, body.len,
                      JSON_DECODE_ANY | JSON_ALLOW_NUL
                      | JSON_REJECT_DUPLICATES, &err);

    if (json == NULL) {
        last = ngx_snprintf(msg, sizeof(msg) - 1,
                            "malformed JSON at line %d column %d: %s",
                            err.line, err.column, err.text);
        *last = '\0';

        return ngx_social_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                     (const char *) msg, NULL);
    }

    if (ngx_social_json_owned(r, json) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!json_is_object(json)) {
        return ngx_social_send_error(r, 422, "validation_failed",
                                     "the body must be a JSON object",
                                     json_pack("{s:s}", "body",
                                               "must be an object"));
    }

    ctx->body = json;

    return NGX_OK;
}
