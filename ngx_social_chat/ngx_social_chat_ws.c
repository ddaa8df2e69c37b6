/*
 * WebSocket (RFC 6455) for GET /v1/stream: the opening handshake, the
 * frames the server sends (unmasked, encoded once per event), and the
 * client's frames read with a small per-stream state machine over the
 * worker's scratch buffer.
 *
 * Client frames must be masked; reserved bits, unknown opcodes, control
 * frames over 125 bytes or fragmented, and continuation frames out of
 * place are closed with 1002; a message over social_stream_max_message
 * with 1009; a text message that is not UTF-8 with 1007.  Pings get
 * pongs, a close frame is answered with one.  Text messages
 * {"type":"typing","conversation_id":"..."} are typing indicators; other
 * messages are ignored.
 */

#include "ngx_social_chat.h"
#include <ngx_sha1.h>


#define NGX_SOCIAL_CHAT_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#define NGX_SOCIAL_CHAT_WS_TEXT    0x1
#define NGX_SOCIAL_CHAT_WS_BINARY  0x2
#define NGX_SOCIAL_CHAT_WS_CLOSE   0x8
#define NGX_SOCIAL_CHAT_WS_PING    0x9
#define NGX_SOCIAL_CHAT_WS_PONG    0xa


static ngx_uint_t ngx_social_chat_ws_token(ngx_table_elt_t *h,
    const char *token);
static ngx_social_chat_frame_t *ngx_social_chat_ws_frame(ngx_uint_t opcode,
    size_t len, u_char **payload);
static ngx_int_t ngx_social_chat_ws_header(ngx_social_chat_stream_t *s);
static ngx_int_t ngx_social_chat_ws_start(ngx_social_chat_stream_t *s);
static ngx_int_t ngx_social_chat_ws_frame_done(ngx_social_chat_stream_t *s);
static ngx_int_t ngx_social_chat_ws_control(ngx_social_chat_stream_t *s);
static void ngx_social_chat_ws_message(ngx_social_chat_stream_t *s);


/*
 * Checks the upgrade request and builds the 101 answer in r's pool.
 * NGX_OK, or the status to refuse with (*error says why).
 */

ngx_int_t
ngx_social_chat_ws_handshake(ngx_http_request_t *r, ngx_str_t *response,
    const char **error)
{
    u_char            hash[20], accept[28], raw[32];
    ngx_str_t         id, src, dst;
    ngx_sha1_t        sha1;
    ngx_table_elt_t  *key, *version, *h;

    key = ngx_social_chat_header(r, "Sec-WebSocket-Key");
    version = ngx_social_chat_header(r, "Sec-WebSocket-Version");

    if (r->http_version != NGX_HTTP_VERSION_11
        || !ngx_social_chat_ws_token(ngx_social_chat_header(r, "Upgrade"),
                                     "websocket")
        || !ngx_social_chat_ws_token(ngx_social_chat_header(r, "Connection"),
                                     "upgrade")
        || key == NULL || version == NULL)
    {
        *error = "a WebSocket upgrade needs HTTP/1.1, Upgrade: websocket, "
                 "Connection: Upgrade, Sec-WebSocket-Key and "
                 "Sec-WebSocket-Version";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (version->value.len != 2
        || ngx_strncmp(version->value.data, "13", 2) != 0)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Sec-WebSocket-Version");
        ngx_str_set(&h->value, "13");

        *error = "only WebSocket version 13 is spoken here";
        return NGX_SOCIAL_CHAT_UPGRADE_REQUIRED;
    }

    /* the key is 16 bytes in base64 */

    dst.data = raw;

    if (key->value.len != 24
        || ngx_decode_base64(&dst, &key->value) != NGX_OK || dst.len != 16)
    {
        *error = "Sec-WebSocket-Key is not 16 bytes in base64";
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key->value.data, key->value.len);
    ngx_sha1_update(&sha1, NGX_SOCIAL_CHAT_WS_GUID,
                    sizeof(NGX_SOCIAL_CHAT_WS_GUID) - 1);
    ngx_sha1_final(hash, &sha1);

    src.data = hash;
    src.len = sizeof(hash);
    dst.data = accept;
    ngx_encode_base64(&dst, &src);

    if (ngx_social_request_id(r, &id) != NGX_OK) {
        ngx_str_set(&id, "");
    }

    response->data = ngx_pnalloc(r->pool, 256 + id.len);
    if (response->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    response->len = ngx_sprintf(response->data,
                                "HTTP/1.1 101 Switching Protocols\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: %V\r\n"
                                "X-Request-Id: %V\r\n\r\n", &dst, &id)
                    - response->data;

    return NGX_OK;
}


/* whether the comma-separated header value lists token */

static ngx_uint_t
ngx_social_chat_ws_token(ngx_table_elt_t *h, const char *token)
{
    size_t   len;
    u_char  *p, *last, *start;

    if (h == NULL) {
        return 0;
    }

    len = ngx_strlen(token);
    p = h->value.data;
    last = p + h->value.len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* a server frame: FIN, opcode, length; the payload is the caller's */

static ngx_social_chat_frame_t *
ngx_social_chat_ws_frame(ngx_uint_t opcode, size_t len, u_char **payload)
{
    u_char                   *p;
    size_t                    header;
    ngx_social_chat_frame_t  *frame;

    header = (len < 126) ? 2 : (len < 65536) ? 4 : 10;

    frame = ngx_social_chat_frame_alloc(header + len);
    if (frame == NULL) {
        return NULL;
    }

    p = frame->data;
    *p++ = (u_char) (0x80 | opcode);

    if (len < 126) {
        *p++ = (u_char) len;

    } else if (len < 65536) {
        *p++ = 126;
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;

    } else {
        *p++ = 127;
        *p++ = 0;
        *p++ = 0;
        *p++ = 0;
        *p++ = 0;
        *p++ = (u_char) (len >> 24);
        *p++ = (u_char) (len >> 16);
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;
    }

    *payload = p;

    return frame;
}


/*
 * An event as one text frame: {"event":..,"data":..,"stream_id":"N"}
 * (json ends with '}'); an ephemeral one (id 0) has no stream_id.
 */

ngx_social_chat_frame_t *
ngx_social_chat_ws_event(ngx_str_t *json, uint64_t id)
{
    u_char                   *p, sid[NGX_INT64_LEN];
    size_t                    len, body, sidlen;
    ngx_social_chat_frame_t  *frame;

    body = json->len;

    while (body && json->data[body - 1] != '}') {
        body--;
    }

    if (body == 0) {
        return NULL;
    }

    if (id == 0) {
        frame = ngx_social_chat_ws_frame(NGX_SOCIAL_CHAT_WS_TEXT, body, &p);
        if (frame != NULL) {
            ngx_memcpy(p, json->data, body);
        }

        return frame;
    }

    sidlen = ngx_sprintf(sid, "%uL", id) - sid;
    len = body - 1 + sizeof(",\"stream_id\":\"\"}") - 1 + sidlen;

    frame = ngx_social_chat_ws_frame(NGX_SOCIAL_CHAT_WS_TEXT, len, &p);
    if (frame == NULL) {
        return NULL;
    }

    p = ngx_cpymem(p, json->data, body - 1);
    p = ngx_cpymem(p, ",\"stream_id\":\"", sizeof(",\"stream_id\":\"") - 1);
    p = ngx_cpymem(p, sid, sidlen);
    *p++ = '"';
    *p = '}';

    return frame;
}


/* the client's bytes */

void
ngx_social_chat_ws_read(ngx_event_t *rev)
{
    u_char                    *buf;
    size_t                     size;
    ssize_t                    n;
    ngx_connection_t          *c;
    ngx_social_chat_stream_t  *s;

    c = rev->data;
    s = c->data;

    if (c->close) {
        /* the worker is shutting down */
        c->close = 0;
        c->idle = 0;

        if (s->state != NGX_SOCIAL_CHAT_CLOSING) {
            ngx_social_chat_ws_close(s, 1001, "the server is going away");
        }

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

        s->alive = 1;

        if (s->state == NGX_SOCIAL_CHAT_CLOSING) {
            /* the close handshake is under way: the rest is discarded */
            continue;
        }

        /* answering a close frame may have closed the connection */

        if (ngx_social_chat_ws_input(s, buf, n) == NGX_ERROR
            || c->destroyed)
        {
            return;
        }

    } while (rev->ready);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_social_chat_stream_close(s);
    }
}


/*
 * Parses n bytes of client frames.  NGX_OK: go on reading; NGX_DONE: the
 * stream is closing (the rest is not parsed); NGX_ERROR: it is closed.
 */

ngx_int_t
ngx_social_chat_ws_input(ngx_social_chat_stream_t *s, u_char *p, size_t n)
{
    size_t                 m, i, need;
    ngx_int_t              rc;
    ngx_social_chat_ws_t  *ws;

    ws = s->ws;

    while (n) {

        if (ws->left == 0 && ws->nheader < sizeof(ws->header)) {

            /* the frame header: 2 bytes, the extended length, the mask */

            need = 2;

            if (ws->nheader >= 2) {
                need = 2 + 4 + ((ws->header[1] & 0x7f) == 126 ? 2
                                : (ws->header[1] & 0x7f) == 127 ? 8 : 0);
            }

            m = ngx_min(n, need - ws->nheader);
            ngx_memcpy(ws->header + ws->nheader, p, m);
            ws->nheader += m;
            p += m;
            n -= m;

            if (ws->nheader < need) {
                continue;
            }

            rc = (need == 2) ? ngx_social_chat_ws_header(s)
                             : ngx_social_chat_ws_start(s);

            if (rc != NGX_OK) {
                return rc;
            }

            if (need == 2 || ws->left > 0) {
                continue;
            }

        } else {

            /* the payload, unmasked as it comes */

            m = (size_t) ngx_min((uint64_t) n, ws->left);

            for (i = 0; i < m; i++) {
                p[i] ^= ws->header[ws->nheader - 4 + ((ws->offset + i) & 3)];
            }

            if (ws->opcode & 0x8) {
                ngx_memcpy(ws->control + ws->ncontrol, p, m);
                ws->ncontrol += m;

            } else if (ws->text != NULL) {
                ngx_memcpy(ws->text + ws->size - ws->left, p, m);
            }

            ws->offset += m;
            ws->left -= m;
            p += m;
            n -= m;

            if (ws->left > 0) {
                continue;
            }
        }

        rc = ngx_social_chat_ws_frame_done(s);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/* the first two bytes of a frame */

static ngx_int_t
ngx_social_chat_ws_header(ngx_social_chat_stream_t *s)
{
    u_char                 b0, b1, opcode;
    ngx_social_chat_ws_t  *ws;

    ws = s->ws;
    b0 = ws->header[0];
    b1 = ws->header[1];
    opcode = b0 & 0x0f;

    if (b0 & 0x70) {
        ngx_social_chat_ws_close(s, 1002, "reserved bits are set");
        return NGX_DONE;
    }

    if (!(b1 & 0x80)) {
        ngx_social_chat_ws_close(s, 1002, "client frames must be masked");
        return NGX_DONE;
    }

    switch (opcode) {

    case 0:
        if (ws->message == 0) {
            ngx_social_chat_ws_close(s, 1002, "a continuation frame "
                                     "without a message");
            return NGX_DONE;
        }

        break;

    case NGX_SOCIAL_CHAT_WS_TEXT:
    case NGX_SOCIAL_CHAT_WS_BINARY:
        if (ws->message != 0) {
            ngx_social_chat_ws_close(s, 1002, "a new message inside "
                                     "a fragmented one");
            return NGX_DONE;
        }

        break;

    case NGX_SOCIAL_CHAT_WS_CLOSE:
    case NGX_SOCIAL_CHAT_WS_PING:
    case NGX_SOCIAL_CHAT_WS_PONG:
        if (!(b0 & 0x80) || (b1 & 0x7f) > 125) {
            ngx_social_chat_ws_close(s, 1002, "control frames are short "
                                     "and never fragmented");
            return NGX_DONE;
        }

        break;

    default:
        ngx_social_chat_ws_close(s, 1002, "unknown opcode");
        return NGX_DONE;
    }

    ws->opcode = opcode;
    ws->fin = (b0 & 0x80) ? 1 : 0;

    return NGX_OK;
}


/* the header is complete: the payload's length, room for a text message */

static ngx_int_t
ngx_social_chat_ws_start(ngx_social_chat_stream_t *s)
{
    u_char                *text;
    size_t                 i, ext;
    uint64_t               len;
    ngx_social_chat_ws_t  *ws;

    ws = s->ws;
    len = ws->header[1] & 0x7f;
    ext = (len == 126) ? 2 : (len == 127) ? 8 : 0;

    if (ext) {
        len = 0;

        for (i = 0; i < ext; i++) {
            len = (len << 8) | ws->header[2 + i];
        }

        if (len >> 63) {
            ngx_social_chat_ws_close(s, 1002, "the length is too large");
            return NGX_DONE;
        }
    }

    ws->left = len;
    ws->offset = 0;
    ws->ncontrol = 0;

    if (ws->opcode & 0x8) {
        return NGX_OK;
    }

    if (ws->opcode != 0) {
        ws->message = ws->opcode;
        ws->size = 0;
    }

    if (len > ngx_social_chat_conf->max_message - ws->size) {
        ngx_social_chat_ws_close(s, 1009, "the message is too big");
        return NGX_DONE;
    }

    ws->size += len;

    if (ws->message != NGX_SOCIAL_CHAT_WS_TEXT || len == 0) {
        return NGX_OK;
    }

    /* a text message is kept whole: it is checked and read at its end */

    text = ngx_alloc(ws->size, s->connection->log);
    if (text == NULL) {
        ngx_social_chat_stream_close(s);
        return NGX_ERROR;
    }

    if (ws->text != NULL) {
        ngx_memcpy(text, ws->text, ws->size - len);
        ngx_free(ws->text);
    }

    ws->text = text;

    return NGX_OK;
}


static ngx_int_t
ngx_social_chat_ws_frame_done(ngx_social_chat_stream_t *s)
{
    ngx_social_chat_ws_t  *ws;

    ws = s->ws;
    ws->nheader = 0;

    if (ws->opcode & 0x8) {
        return ngx_social_chat_ws_control(s);
    }

    if (!ws->fin) {
        return NGX_OK;
    }

    if (ws->message == NGX_SOCIAL_CHAT_WS_TEXT
        && !ngx_social_chat_utf8_valid(ws->text, ws->size))
    {
        ngx_social_chat_ws_close(s, 1007, "the text is not UTF-8");
        return NGX_DONE;
    }

    if (ws->message == NGX_SOCIAL_CHAT_WS_TEXT && ws->size) {
        ngx_social_chat_ws_message(s);
    }

    ngx_social_chat_ws_free(s);

    return (s->connection == NULL) ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_social_chat_ws_control(ngx_social_chat_stream_t *s)
{
    u_char                   *p;
    ngx_uint_t                code;
    ngx_social_chat_ws_t     *ws;
    ngx_social_chat_frame_t  *frame;

    ws = s->ws;

    switch (ws->opcode) {

    case NGX_SOCIAL_CHAT_WS_PING:
        frame = ngx_social_chat_ws_frame(NGX_SOCIAL_CHAT_WS_PONG,
                                         ws->ncontrol, &p);
        if (frame == NULL) {
            ngx_social_chat_stream_close(s);
            return NGX_ERROR;
        }

        ngx_memcpy(p, ws->control, ws->ncontrol);

        if (ngx_social_chat_stream_queue(s, frame, 0) != NGX_OK) {
            ngx_social_chat_frame_release(frame);
            return NGX_ERROR;
        }

        ngx_social_chat_frame_release(frame);

        return ngx_social_chat_stream_write(s);

    case NGX_SOCIAL_CHAT_WS_PONG:
        return NGX_OK;

    default: /* close */
        break;
    }

    if (ws->ncontrol == 0) {
        ngx_social_chat_ws_close(s, 0, NULL);
        return NGX_DONE;
    }

    code = (ws->control[0] << 8) | ws->control[1];

    if (ws->ncontrol == 1 || code < 1000 || code >= 5000
        || (code >= 1004 && code <= 1006) || (code >= 1015 && code < 3000))
    {
        ngx_social_chat_ws_close(s, 1002, "a bad close code");
        return NGX_DONE;
    }

    if (!ngx_social_chat_utf8_valid(ws->control + 2, ws->ncontrol - 2)) {
        ngx_social_chat_ws_close(s, 1007, "the reason is not UTF-8");
        return NGX_DONE;
    }

    ngx_social_chat_ws_close(s, code, NULL);

    return NGX_DONE;
}


/* {"type":"typing","conversation_id":"..."}; anything else is ignored */

static void
ngx_social_chat_ws_message(ngx_social_chat_stream_t *s)
{
    json_t                *msg, *type, *id;
    int64_t                conversation;
    ngx_str_t              v;
    ngx_social_chat_ws_t  *ws;

    ws = s->ws;

    msg = json_loadb((char *) ws->text, ws->size, JSON_REJECT_DUPLICATES,
                     NULL);
    if (msg == NULL) {
        return;
    }

    type = json_object_get(msg, "type");
    id = json_object_get(msg, "conversation_id");

    if (json_is_string(type) && json_is_string(id)
        && ngx_strcmp(json_string_value(type), "typing") == 0)
    {
        v.data = (u_char *) json_string_value(id);
        v.len = json_string_length(id);
        conversation = ngx_social_parse_id(&v);

        if (conversation != NGX_ERROR) {
            ngx_social_chat_typing(s, conversation);
        }
    }

    json_decref(msg);
}


/*
 * Queues a close frame (code 0: without a code) and closes once it is
 * sent and the client has closed its side, or after close_timeout.
 */

void
ngx_social_chat_ws_close(ngx_social_chat_stream_t *s, ngx_uint_t code,
    const char *reason)
{
    u_char                   *p;
    size_t                    len;
    ngx_social_chat_frame_t  *frame;

    if (s->connection == NULL || s->state == NGX_SOCIAL_CHAT_CLOSING) {
        return;
    }

    len = reason ? ngx_min(ngx_strlen(reason), 123) : 0;

    frame = ngx_social_chat_ws_frame(NGX_SOCIAL_CHAT_WS_CLOSE,
                                     code ? 2 + len : 0, &p);
    if (frame == NULL) {
        ngx_social_chat_stream_close(s);
        return;
    }

    if (code) {
        *p++ = (u_char) (code >> 8);
        *p++ = (u_char) code;
        ngx_memcpy(p, reason, len);
    }

    if (ngx_social_chat_stream_queue(s, frame, 0) != NGX_OK) {
        ngx_social_chat_frame_release(frame);
        return;
    }

    ngx_social_chat_frame_release(frame);

    s->state = NGX_SOCIAL_CHAT_CLOSING;

    (void) ngx_social_chat_stream_write(s);
}


void
ngx_social_chat_ws_ping(ngx_social_chat_stream_t *s)
{
    u_char                   *p;
    ngx_social_chat_frame_t  *frame;

    frame = ngx_social_chat_ws_frame(NGX_SOCIAL_CHAT_WS_PING, 0, &p);
    if (frame == NULL) {
        ngx_social_chat_stream_close(s);
        return;
    }

    if (ngx_social_chat_stream_queue(s, frame, 0) == NGX_OK) {
        (void) ngx_social_chat_stream_write(s);
    }

    ngx_social_chat_frame_release(frame);
}


/* the open message's buffer goes; the next frame starts a new one */

void
ngx_social_chat_ws_free(ngx_social_chat_stream_t *s)
{
    if (s->ws == NULL) {
        return;
    }

    if (s->ws->text != NULL) {
        ngx_free(s->ws->text);
        s->ws->text = NULL;
    }

    s->ws->message = 0;
    s->ws->size = 0;
}


/* RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF */

ngx_uint_t
ngx_social_chat_utf8_valid(u_char *p, size_t len)
{
    u_char    c;
    size_t    i, n;
    uint32_t  cp, min;

    for (i = 0; i < len; /* void */) {
        c = p[i++];

        if (c < 0x80) {
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
            min = 0x80;

        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
            min = 0x800;

        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        while (n--) {
            c = p[i++];

            if ((c & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (c & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}
