/*
 * Lists: ?limit= (default 20, at most 100), ?max_id= and ?since_id=
 * (exclusive cursors), answered as {"items": [...], "next_cursor"} with a
 * Link header for the next page.  Handlers fetch limit + 1 rows: the extra
 * row only tells that a next page exists.
 */

#include "ngx_social_core_module.h"


#define NGX_SOCIAL_LIST_DEFAULT  20
#define NGX_SOCIAL_LIST_MAX      100


static ngx_int_t ngx_social_list_cursor(ngx_http_request_t *r,
    const char *name, ngx_str_t *value, json_t *fields);


/* NGX_OK, or NGX_DECLINED with the reasons in fields */

ngx_int_t
ngx_social_list_args(ngx_http_request_t *r, ngx_social_list_t *l,
    json_t *fields)
{
    ngx_int_t  n;
    ngx_str_t  arg;

    ngx_memzero(l, sizeof(ngx_social_list_t));
    l->limit = NGX_SOCIAL_LIST_DEFAULT;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);

        if (n == NGX_ERROR || n == 0) {
            json_object_set_new(fields, "limit",
                                json_string("must be a whole number "
                                            "from 1"));
        } else {
            l->limit = ngx_min((ngx_uint_t) n, NGX_SOCIAL_LIST_MAX);
        }
    }

    (void) ngx_social_list_cursor(r, "max_id", &l->max_id, fields);
    (void) ngx_social_list_cursor(r, "since_id", &l->since_id, fields);

    l->fetch.data = l->fetch_buf;
    l->fetch.len = ngx_sprintf(l->fetch_buf, "%ui", l->limit + 1)
                   - l->fetch_buf;

    return json_object_size(fields) ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
ngx_social_list_cursor(ngx_http_request_t *r, const char *name,
    ngx_str_t *value, json_t *fields)
{
    ngx_str_null(value);

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), value) != NGX_OK)
    {
        ngx_str_null(value);
        return NGX_OK;
    }

    if (ngx_social_parse_id(value) == NGX_ERROR) {
        ngx_str_null(value);
        json_object_set_new(fields, name, json_string("is not a cursor"));
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The rows of res (cursor in column cursor, an item's JSON in column
 * item) as the contract's list.
 */

ngx_int_t
ngx_social_send_list(ngx_http_request_t *r, ngx_social_list_t *l,
    PGresult *res, int cursor, int item)
{
    int         i, n;
    ngx_str_t  *items, next;

    n = PQntuples(res);

    if ((ngx_uint_t) n > l->limit) {
        n = (int) l->limit;
        next.data = (u_char *) PQgetvalue(res, n - 1, cursor);
        next.len = PQgetlength(res, n - 1, cursor);

    } else {
        ngx_str_null(&next);
    }

    items = ngx_palloc(r->pool, (n + 1) * sizeof(ngx_str_t));
    if (items == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < n; i++) {
        items[i].data = (u_char *) PQgetvalue(res, i, item);
        items[i].len = PQgetlength(res, i, item);
    }

    return ngx_social_send_items(r, l, items, n, &next, 1);
}


/*
 * {"items": [the n items that are not empty], "next_cursor"} with a Link
 * header for the next page when next is not empty.
 */

ngx_int_t
ngx_social_send_items(ngx_http_request_t *r, ngx_social_list_t *l,
    ngx_str_t *items, ngx_uint_t n, ngx_str_t *next, ngx_uint_t compact)
{
    u_char           *p;
    size_t            len;
    ngx_str_t         body;
    ngx_uint_t        i, first;
    ngx_table_elt_t  *h;

    len = sizeof("{\"items\":[],\"next_cursor\":null}") + next->len + 2;

    for (i = 0; i < n; i++) {
        len += items[i].len + 1;
    }

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, "{\"items\":[", sizeof("{\"items\":[") - 1);
    first = 1;

    for (i = 0; i < n; i++) {
        if (items[i].len == 0) {
            continue;
        }

        if (!first) {
            *p++ = ',';
        }

        first = 0;
        p = compact ? ngx_social_json_compact(p, items[i].data, items[i].len)
                    : ngx_cpymem(p, items[i].data, items[i].len);
    }

    if (next->len) {
        p = ngx_sprintf(p, "],\"next_cursor\":\"%V\"}", next);

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.data = ngx_pnalloc(r->pool, r->uri.len + next->len + 64);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Link");
        h->value.len = ngx_sprintf(h->value.data,
                                   "<%V?limit=%ui&max_id=%V>; rel=\"next\"",
                                   &r->uri, l->limit, next)
                       - h->value.data;

    } else {
        p = ngx_cpymem(p, "],\"next_cursor\":null}",
                       sizeof("],\"next_cursor\":null}") - 1);
    }

    body.len = p - body.data;

    return ngx_social_send_json_text(r, NGX_HTTP_OK, &body);
}
