/*
 * Field validation of JSON request bodies: the reasons collect in a
 * "fields" object, answered with 422 validation_failed.
 */

#include "ngx_social_core_module.h"


static size_t ngx_social_utf8_chars(u_char *p, size_t len);


/*
 * A string field.  NGX_OK: *out is set, or out->data is NULL when an
 * optional field is absent or null.  NGX_DECLINED: the reason is in fields.
 * Lengths count characters (code points), or bytes when bytes is set.
 */

ngx_int_t
ngx_social_field_string(json_t *body, const char *name, ngx_uint_t required,
    size_t min, size_t max, ngx_uint_t bytes, ngx_str_t *out, json_t *fields)
{
    size_t       len;
    json_t      *v;
    const char  *reason;

    ngx_str_null(out);

    v = json_object_get(body, name);

    if (v == NULL || json_is_null(v)) {
        if (!required) {
            return NGX_OK;
        }

        reason = "is required";
        goto invalid;
    }

    if (!json_is_string(v)) {
        reason = "must be a string";
        goto invalid;
    }

    out->data = (u_char *) json_string_value(v);
    out->len = json_string_length(v);

    if (ngx_strlchr(out->data, out->data + out->len, '\0') != NULL) {
        reason = "must not contain NUL characters";
        goto invalid;
    }

    len = bytes ? out->len : ngx_social_utf8_chars(out->data, out->len);

    if (len < min) {
        reason = "is too short";
        goto invalid;
    }

    if (len > max) {
        reason = "is too long";
        goto invalid;
    }

    return NGX_OK;

invalid:

    ngx_str_null(out);
    json_object_set_new(fields, name, json_string(reason));

    return NGX_DECLINED;
}


/* an id: 1 to 19 digits, above 0, within 64 bits; else NGX_ERROR */

int64_t
ngx_social_parse_id(ngx_str_t *s)
{
    off_t  n;

    if (s->len == 0 || s->len > 19) {
        return NGX_ERROR;
    }

    n = ngx_atoof(s->data, s->len);

    return n > 0 ? (int64_t) n : NGX_ERROR;
}


/* jansson has checked the UTF-8: count the bytes that start a character */

static size_t
ngx_social_utf8_chars(u_char *p, size_t len)
{
    size_t  n;

    for (n = 0; len; len--, p++) {
        n += ((*p & 0xc0) != 0x80);
    }

    return n;
}
