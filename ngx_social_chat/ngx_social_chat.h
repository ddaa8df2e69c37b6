/*
 * Internal declarations of the chat module.
 */

#ifndef _NGX_SOCIAL_CHAT_H_INCLUDED_
#define _NGX_SOCIAL_CHAT_H_INCLUDED_


#include <ngx_social_core.h>


/* a message as JSON text, from a row of messages aliased m */
#define NGX_SOCIAL_CHAT_MESSAGE(m)                                           \
    "json_build_object('id', " m ".id::text, "                              \
    "'conversation_id', " m ".conversation_id::text, "                      \
    "'sender_id', " m ".sender_id::text, 'text', " m ".text, "              \
    "'created_at', to_char(" m ".created_at AT TIME ZONE 'UTC', "           \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"

/* a stream id: a Redis entry id "ms-seq" as ms * 10^6 + seq */
#define NGX_SOCIAL_CHAT_ID_SEQ       1000000

#define NGX_SOCIAL_CHAT_UPGRADE_REQUIRED  426


typedef struct {
    ngx_msec_t                  ping_interval;
    size_t                      max_message;
    size_t                      max_unsent;
    ngx_msec_t                  typing_interval;
    ngx_msec_t                  close_timeout;
} ngx_social_chat_main_conf_t;


typedef struct ngx_social_chat_frame_s   ngx_social_chat_frame_t;
typedef struct ngx_social_chat_out_s     ngx_social_chat_out_t;
typedef struct ngx_social_chat_user_s    ngx_social_chat_user_t;
typedef struct ngx_social_chat_stream_s  ngx_social_chat_stream_t;


/* bytes ready for the wire, shared by the streams that send them */
struct ngx_social_chat_frame_s {
    ngx_uint_t                  refs;
    size_t                      len;
    u_char                     *data;      /* follows the structure */
};


/* a frame queued on a stream; id 0 for ephemeral and control frames */
struct ngx_social_chat_out_s {
    ngx_social_chat_out_t      *next;
    ngx_social_chat_frame_t    *frame;
    uint64_t                    id;
};


/* the reading side of a WebSocket: the frame being parsed */
typedef struct {
    u_char                      header[14];
    u_char                      nheader;
    u_char                      opcode;    /* of the current frame */
    u_char                      message;   /* opcode of the open message */
    u_char                      fin;
    u_char                      ncontrol;
    u_char                      control[125];
    uint64_t                    left;      /* payload still to read */
    uint64_t                    offset;    /* into the payload (mask) */
    uint64_t                    size;      /* of the open message */
    u_char                     *text;      /* a text message, unmasked */
} ngx_social_chat_ws_t;


typedef enum {
    NGX_SOCIAL_CHAT_WAITING = 0,   /* for the user's subscription */
    NGX_SOCIAL_CHAT_REPLAYING,     /* live events wait in pending */
    NGX_SOCIAL_CHAT_LIVE,
    NGX_SOCIAL_CHAT_CLOSING        /* sends what is queued, then closes */
} ngx_social_chat_state_e;


struct ngx_social_chat_stream_s {
    ngx_queue_t                 queue;     /* the user's local streams */
    ngx_connection_t           *connection;
    ngx_social_chat_user_t     *user;
    int64_t                     user_id;
    ngx_social_chat_out_t      *out;       /* to send, the first from pos */
    ngx_social_chat_out_t     **out_last;
    ngx_social_chat_out_t      *pending;   /* live events while replaying */
    ngx_social_chat_out_t     **pending_last;
    size_t                      pos;
    size_t                      unsent;    /* bytes in out and pending */
    uint64_t                    last;      /* the last event delivered */
    ngx_event_t                 timer;     /* pings, heartbeats, closing */
    ngx_social_chat_ws_t       *ws;        /* NULL: Server-Sent Events */

    unsigned                    state:2;
    unsigned                    busy:1;    /* a Redis command in flight */
    unsigned                    freed:1;   /* closed while busy */
    unsigned                    again:1;   /* resync during the replay */
    unsigned                    alive:1;   /* heard from since the ping */
    unsigned                    fresh:1;   /* last is a time, no event */
    unsigned                    shut:1;    /* the write side is shut */
    unsigned                    retry:1;   /* the timer replays again */
};


extern ngx_module_t                  ngx_social_chat_module;
extern ngx_social_chat_main_conf_t  *ngx_social_chat_conf;


ngx_int_t ngx_social_chat_conversations_init(ngx_conf_t *cf);
ngx_int_t ngx_social_chat_create(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_list(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_get(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_add_members(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_remove_member(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_send_conversation(ngx_http_request_t *r,
    int64_t user, int64_t conversation, ngx_uint_t status);
ngx_int_t ngx_social_chat_ids(ngx_http_request_t *r, json_t *array,
    int64_t self, ngx_uint_t max, ngx_str_t *out, ngx_uint_t *n,
    const char **reason);

ngx_int_t ngx_social_chat_messages_init(ngx_conf_t *cf);
ngx_int_t ngx_social_chat_send(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_history(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_read(ngx_http_request_t *r, ngx_social_ctx_t *ctx);
ngx_uint_t ngx_social_chat_parse_users(u_char *p, size_t len,
    int64_t *users);

ngx_int_t ngx_social_chat_stream_init(ngx_conf_t *cf);
ngx_int_t ngx_social_chat_stream(ngx_http_request_t *r,
    ngx_social_ctx_t *ctx);
ngx_int_t ngx_social_chat_stream_init_process(ngx_cycle_t *cycle);
void ngx_social_chat_stream_exit_process(ngx_cycle_t *cycle);
ngx_table_elt_t *ngx_social_chat_header(ngx_http_request_t *r,
    const char *name);
ngx_int_t ngx_social_chat_stream_queue(ngx_social_chat_stream_t *s,
    ngx_social_chat_frame_t *frame, uint64_t id);
ngx_int_t ngx_social_chat_stream_write(ngx_social_chat_stream_t *s);
void ngx_social_chat_stream_close(ngx_social_chat_stream_t *s);
ngx_social_chat_frame_t *ngx_social_chat_frame_alloc(size_t len);
void ngx_social_chat_frame_release(ngx_social_chat_frame_t *frame);
u_char *ngx_social_chat_stream_scratch(size_t *size);

ngx_int_t ngx_social_chat_typing_init(ngx_conf_t *cf);
void ngx_social_chat_typing(ngx_social_chat_stream_t *s,
    int64_t conversation);

ngx_int_t ngx_social_chat_ws_handshake(ngx_http_request_t *r,
    ngx_str_t *response, const char **error);
ngx_social_chat_frame_t *ngx_social_chat_ws_event(ngx_str_t *json,
    uint64_t id);
void ngx_social_chat_ws_read(ngx_event_t *rev);
ngx_int_t ngx_social_chat_ws_input(ngx_social_chat_stream_t *s, u_char *p,
    size_t n);
void ngx_social_chat_ws_ping(ngx_social_chat_stream_t *s);
void ngx_social_chat_ws_close(ngx_social_chat_stream_t *s, ngx_uint_t code,
    const char *reason);
void ngx_social_chat_ws_free(ngx_social_chat_stream_t *s);
ngx_uint_t ngx_social_chat_utf8_valid(u_char *p, size_t len);

ngx_int_t ngx_social_chat_sse_response(ngx_http_request_t *r,
    ngx_str_t *response);
ngx_social_chat_frame_t *ngx_social_chat_sse_event(ngx_str_t *json,
    uint64_t id);
void ngx_social_chat_sse_read(ngx_event_t *rev);
void ngx_social_chat_sse_heartbeat(ngx_social_chat_stream_t *s);


#endif /* _NGX_SOCIAL_CHAT_H_INCLUDED_ */
