/*
 * Server-Sent Events for GET /v1/stream (Accept: text/event-stream): each
 * event is "id: <stream id>" and "data: <JSON>" (an ephemeral one has no
 * id line), a comment line is the heartbeat.  The body runs until the
 * connection closes: no chunked encoding, so every stream of a user
 * sends the very same bytes.
 */

#include "ngx_social_chat.h"


ngx_int_t
ngx_social_chat_sse_response(ngx_http_request_t *r, ngx_str_t *response)
{
    ngx_str_t  id;

    if (ngx_social_request_id(r, &id) != NGX_OK) {
        ngx_str_set(&id, "");
    }

    response->data = ngx_pnalloc(r->pool, 256 + id.len);
    if (response->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    response->len = ngx_sprintf(response->data,
                                "HTTP/1.1 200 OK\r\n"
                                "Content-Type: text/event-stream; "
                                "charset=utf-8\r\n"
                                "Cache-Control: no-cache\r\n"
                                "Connection: close\r\n"
                                "X-Accel-Buffering: no\r\n"
                                "X-Request-Id: %V\r\n\r\n", &id)
                    - response->data;

    return NGX_OK;
}


/* "id: N\ndata: JSON\n\n"; JSON has no line breaks outside strings */

ngx_social_chat_frame_t *
ngx_social_chat_sse_event(ngx_str_t *json, uint64_t id)
{
    u_char                   *p, *last;
    size_t                    len;
    ngx_social_chat_frame_t  *frame;

    len = sizeof("id: \ndata: \n\n") - 1 + NGX_INT64_LEN + json->len;

    frame = ngx_social_chat_frame_alloc(len);
    if (frame == NULL) {
        return NULL;
    }

    p = frame->data;

    if (id) {
        p = ngx_sprintf(p, "id: %uL\n", id);
    }

    p = ngx_cpymem(p, "data: ", sizeof("data: ") - 1);
    last = ngx_cpymem(p, json->data, json->len);

    for ( /* void */ ; p < last; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }

    *p++ = '\n';
    *p++ = '\n';

    frame->len = p - frame->data;

    return frame;
}


/* nothing is expected from the client but the end of its connection */

void
ngx_social_chat_sse_read(ngx_event_t *rev)
{
    u_char                    *buf;
    size_t                     size;
    ssize_t                    n;
    ngx_connection_t          *c;
    ngx_social_chat_stream_t  *s;

    c = rev->data;
    s = c->data;

    if (c->close) {
        /* the worker is shutting down: the body ends */
        ngx_social_chat_stream_close(s);
        return;
    }

    buf = ngx_social_chat_stream_scratch(&size);

    do {
        n = c->recv(c, buf, size);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_social_chat_stream_close(s);
            return;
        }

    } while (rev->ready);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_social_chat_stream_close(s);
    }
}


void
ngx_social_chat_sse_heartbeat(ngx_social_chat_stream_t *s)
{
    ngx_social_chat_frame_t  *frame;

    frame = ngx_social_chat_frame_alloc(sizeof(":\n\n") - 1);
    if (frame == NULL) {
        ngx_social_chat_stream_close(s);
        return;
    }

    ngx_memcpy(frame->data, ":\n\n", sizeof(":\n\n") - 1);

    if (ngx_social_chat_stream_queue(s, frame, 0) == NGX_OK) {
        (void) ngx_social_chat_stream_write(s);
    }

    ngx_social_chat_frame_release(frame);
}
