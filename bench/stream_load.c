/*
 * stream_load: a load client for GET /v1/stream (WebSocket), one thread,
 * epoll.  bench/stream.sh compiles it with cc into the bench's temporary
 * folder.  Access tokens are minted here with the bench's HS256 key, so
 * that thousands of users need no logins.
 *
 *   stream_load idle PORT KEYFILE IDS N SECONDS
 *       opens N streams (users from the file IDS, round robin), prints
 *       "open N" once every one answered 101, holds them SECONDS, exits.
 *
 *   stream_load fanout PORT KEYFILE IDS CONVERSATION RATE SECONDS
 *       one stream per user of IDS; the first user sends RATE messages a
 *       second to CONVERSATION for SECONDS (the text is the send time);
 *       prints the delivery latency (send to receipt) and how many of the
 *       expected deliveries arrived.
 *
 *   stream_load replay PORT KEYFILE IDS SINCE N
 *       one stream of the first user of IDS with ?since=SINCE; prints the
 *       time from sending the handshake to the Nth event.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


#define BUF_SIZE      16384
#define MAX_INFLIGHT  256
#define SENDERS       8

enum { CONNECTING, HANDSHAKING, OPEN, SENDER_IDLE, SENDER_BUSY };


typedef struct {
    int         fd;
    int         state;
    int         user;
    size_t      len;
    uint64_t    sent_at;
    char        buf[BUF_SIZE];
} conn_t;


static int        port;
static int        epfd;
static char       secret[256];
static size_t     secret_len;
static long long *users;
static int        nusers;
static uint32_t  *lat;
static size_t     nlat, maxlat;
static long       answered, refused, opened, events;
static const char *query = "";


static uint64_t
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static void
b64url(const unsigned char *in, size_t len, char *out)
{
    int  n, i;

    n = EVP_EncodeBlock((unsigned char *) out, in, (int) len);

    for (i = 0; i < n; i++) {
        if (out[i] == '+') {
            out[i] = '-';

        } else if (out[i] == '/') {
            out[i] = '_';
        }
    }

    while (n > 0 && out[n - 1] == '=') {
        n--;
    }

    out[n] = '\0';
}


/* {"alg":"HS256","typ":"JWT","kid":"main"} . claims . HMAC-SHA256 */

static void
mint(long long sub, char *token)
{
    char           claims[256], enc[512];
    unsigned char  rnd[16], sig[32];
    unsigned int   siglen;
    time_t         t;
    int            i, n;
    char           jti[33];

    RAND_bytes(rnd, sizeof(rnd));

    for (i = 0; i < 16; i++) {
        sprintf(jti + 2 * i, "%02x", rnd[i]);
    }

    t = time(NULL);
    n = snprintf(claims, sizeof(claims),
                 "{\"sub\":\"%lld\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"%s\"}",
                 sub, (long) t, (long) t + 3600, jti);

    b64url((const unsigned char *) "{\"alg\":\"HS256\",\"typ\":\"JWT\","
           "\"kid\":\"main\"}", 40, token);
    strcat(token, ".");
    b64url((unsigned char *) claims, n, enc);
    strcat(token, enc);

    HMAC(EVP_sha256(), secret, (int) secret_len, (unsigned char *) token,
         strlen(token), sig, &siglen);

    b64url(sig, siglen, enc);
    strcat(token, ".");
    strcat(token, enc);
}


static void
load(const char *keyfile, const char *idsfile)
{
    FILE       *f;
    long long   id;
    int         cap;

    f = fopen(keyfile, "r");
    if (f == NULL || (secret_len = fread(secret, 1, sizeof(secret), f)) == 0) {
        perror(keyfile);
        exit(1);
    }

    fclose(f);

    while (secret_len && (secret[secret_len - 1] == '\n'
                          || secret[secret_len - 1] == '\r'))
    {
        secret_len--;
    }

    f = fopen(idsfile, "r");
    if (f == NULL) {
        perror(idsfile);
        exit(1);
    }

    cap = 1024;
    users = malloc(cap * sizeof(long long));

    while (fscanf(f, "%lld", &id) == 1) {
        if (nusers == cap) {
            cap *= 2;
            users = realloc(users, cap * sizeof(long long));
        }

        users[nusers++] = id;
    }

    fclose(f);

    if (nusers == 0) {
        fprintf(stderr, "no user ids in %s\n", idsfile);
        exit(1);
    }
}


/* a sender: connected before it is used, then nonblocking */

static void
connect_sender(conn_t *c)
{
    struct sockaddr_in  sin;
    struct epoll_event  ev;
    int                 one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (c->fd < 0
        || connect(c->fd, (struct sockaddr *) &sin, sizeof(sin)) < 0)
    {
        perror("connect");
        exit(1);
    }

    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(c->fd, F_SETFL, O_NONBLOCK);

    c->state = SENDER_IDLE;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}


static int
connect_to(conn_t *c)
{
    struct sockaddr_in  sin;
    struct epoll_event  ev;
    int                 one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        perror("socket");
        exit(1);
    }

    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (connect(c->fd, (struct sockaddr *) &sin, sizeof(sin)) < 0
        && errno != EINPROGRESS)
    {
        perror("connect");
        exit(1);
    }

    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);

    return 0;
}


static void
send_all(conn_t *c, const char *p, size_t n)
{
    ssize_t  w;

    while (n) {
        w = write(c->fd, p, n);
        if (w < 0) {
            if (errno == EAGAIN) {
                continue;
            }

            perror("write");
            exit(1);
        }

        p += w;
        n -= w;
    }
}


static void
handshake(conn_t *c)
{
    char                req[1024], token[600];
    int                 n;
    struct epoll_event  ev;

    mint(users[c->user % nusers], token);

    n = snprintf(req, sizeof(req),
                 "GET /v1/stream%s HTTP/1.1\r\nHost: bench\r\n"
                 "Authorization: Bearer %s\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n", query, token);

    send_all(c, req, n);
    c->state = HANDSHAKING;

    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}


/* a masked pong for a ping's payload */

static void
pong(conn_t *c, const unsigned char *payload, size_t len)
{
    unsigned char  f[2 + 4 + 125];
    size_t         i;

    f[0] = 0x8a;
    f[1] = (unsigned char) (0x80 | len);
    memset(f + 2, 0, 4);

    for (i = 0; i < len; i++) {
        f[6 + i] = payload[i];
    }

    send_all(c, (char *) f, 6 + len);
}


/* the text of a message.created event is its send time in us */

static void
received(const char *p, size_t len, uint64_t t)
{
    const char  *text, *end;
    uint64_t     sent;

    end = p + len;
    text = memmem(p, len, "\"text\"", 6);
    if (text == NULL) {
        return;
    }

    for (text += 6; text < end && (*text < '0' || *text > '9'); text++) {
        /* void */
    }

    sent = strtoull(text, NULL, 10);

    if (sent && nlat < maxlat) {
        lat[nlat++] = (uint32_t) (t - sent);
    }
}


static void
frames(conn_t *c, uint64_t t)
{
    unsigned char  *p;
    size_t          hdr, len;

    for ( ;; ) {
        p = (unsigned char *) c->buf;

        if (c->len < 2) {
            return;
        }

        len = p[1] & 0x7f;
        hdr = 2;

        if (len == 126) {
            if (c->len < 4) {
                return;
            }

            len = (p[2] << 8) | p[3];
            hdr = 4;

        } else if (len == 127) {
            if (c->len < 10) {
                return;
            }

            len = ((size_t) p[6] << 24) | (p[7] << 16) | (p[8] << 8) | p[9];
            hdr = 10;
        }

        if (hdr + len > BUF_SIZE) {
            fprintf(stderr, "a frame of %zu bytes\n", len);
            exit(1);
        }

        if (c->len < hdr + len) {
            return;
        }

        if ((p[0] & 0x0f) == 0x1) {
            events++;
            received((char *) p + hdr, len, t);

        } else if ((p[0] & 0x0f) == 0x9) {
            pong(c, p + hdr, len);
        }

        memmove(c->buf, c->buf + hdr + len, c->len - hdr - len);
        c->len -= hdr + len;
    }
}


static void
readable(conn_t *c)
{
    ssize_t   n;
    char     *end, *cl;
    size_t    head, body;

    for ( ;; ) {
        n = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);

        if (n < 0 && errno == EAGAIN) {
            return;
        }

        if (n <= 0 && c->state == SENDER_IDLE) {
            /* keepalive_requests: a sender connects again */
            close(c->fd);
            c->len = 0;
            connect_sender(c);
            return;
        }

        if (n <= 0) {
            fprintf(stderr, "stream %d closed by the server\n", c->user);
            exit(1);
        }

        c->len += n;

        if (c->state == HANDSHAKING) {
            end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end == NULL) {
                continue;
            }

            if (strncmp(c->buf, "HTTP/1.1 101", 12) != 0) {
                fprintf(stderr, "refused: %.40s\n", c->buf);
                refused++;
            }

            head = end + 4 - c->buf;
            memmove(c->buf, end + 4, c->len - head);
            c->len -= head;
            c->state = OPEN;
            opened++;
        }

        if (c->state == OPEN) {
            frames(c, now_us());
            continue;
        }

        if (c->state == SENDER_BUSY) {
            end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end == NULL) {
                continue;
            }

            cl = memmem(c->buf, end - c->buf, "Content-Length: ", 16);
            body = cl ? strtoul(cl + 16, NULL, 10) : 0;
            head = end + 4 - c->buf;

            if (c->len < head + body) {
                continue;
            }

            if (strncmp(c->buf, "HTTP/1.1 201", 12) == 0) {
                answered++;

            } else {
                refused++;
            }

            memmove(c->buf, c->buf + head + body, c->len - head - body);
            c->len -= head + body;
            c->state = SENDER_IDLE;
        }
    }
}


static void
loop(conn_t *conns, int n, uint64_t until, int keep_connecting)
{
    struct epoll_event  evs[512];
    int                 i, k, started;
    conn_t             *c;

    started = 0;

    while (now_us() < until) {

        while (keep_connecting && started < n
               && started - opened < MAX_INFLIGHT)
        {
            connect_to(&conns[started++]);
        }

        if (keep_connecting && opened == n) {
            return;
        }

        k = epoll_wait(epfd, evs, 512, 1);

        for (i = 0; i < k; i++) {
            c = evs[i].data.ptr;

            if (c->state == CONNECTING && (evs[i].events & EPOLLOUT)) {
                handshake(c);
            }

            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
                readable(c);
            }
        }
    }
}


static int
cmp(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return x < y ? -1 : x > y;
}


int
main(int argc, char **argv)
{
    struct epoll_event  evs[512];
    conn_t             *conns, *senders, *s;
    uint64_t            start, next, end, interval;
    long                sent, i, n;
    int                 k, j, rate;
    char                token[600], req[2048], body[64];
    long long           conversation;

    if (argc < 7) {
        fprintf(stderr, "usage: stream_load idle PORT KEYFILE IDS N SECONDS\n"
                "       stream_load fanout PORT KEYFILE IDS CONVERSATION "
                "RATE SECONDS\n");
        return 2;
    }

    port = atoi(argv[2]);
    load(argv[3], argv[4]);
    epfd = epoll_create1(0);

    if (strcmp(argv[1], "idle") == 0) {
        n = atol(argv[5]);
        conns = calloc(n, sizeof(conn_t));

        for (i = 0; i < n; i++) {
            conns[i].user = (int) i;
        }

        loop(conns, (int) n, now_us() + 120 * 1000000ULL, 1);

        printf("open %ld refused %ld\n", opened, refused);
        fflush(stdout);

        loop(conns, (int) n, now_us() + atol(argv[6]) * 1000000ULL, 0);
        return refused ? 1 : 0;
    }

    if (strcmp(argv[1], "replay") == 0) {
        char  q[64];

        snprintf(q, sizeof(q), "?since=%s", argv[5]);
        query = q;
        n = atol(argv[6]);
        conns = calloc(1, sizeof(conn_t));
        start = now_us();

        loop(conns, 1, start + 30 * 1000000ULL, 1);

        while (events < n && now_us() < start + 30 * 1000000ULL) {
            loop(conns, 1, now_us() + 1000, 0);
        }

        printf("events %ld ms %.2f\n", events,
               (now_us() - start) / 1000.0);
        return events < n;
    }

    /* fanout */

    if (argc < 8) {
        return 2;
    }

    conversation = atoll(argv[5]);
    rate = atoi(argv[6]);
    n = nusers;

    conns = calloc(n + SENDERS, sizeof(conn_t));

    for (i = 0; i < n; i++) {
        conns[i].user = (int) i;
    }

    loop(conns, (int) n, now_us() + 60 * 1000000ULL, 1);

    if (opened != n) {
        fprintf(stderr, "only %ld of %ld streams opened\n", opened, n);
        return 1;
    }

    /* let every stream's subscription and replay settle */
    loop(conns, (int) n, now_us() + 1000000, 0);

    senders = conns + n;
    mint(users[0], token);

    for (j = 0; j < SENDERS; j++) {
        connect_sender(&senders[j]);
    }

    maxlat = (size_t) n * rate * (atol(argv[7]) + 1);
    lat = malloc(maxlat * sizeof(uint32_t));

    interval = 1000000 / rate;
    start = now_us();
    end = start + atol(argv[7]) * 1000000ULL;
    next = start;
    sent = 0;

    while (now_us() < end + 3000000) {
        while (now_us() >= next && next < end) {
            s = NULL;

            for (j = 0; j < SENDERS; j++) {
                s = &senders[(sent + j) % SENDERS];

                if (s->state == SENDER_IDLE) {
                    break;
                }

                s = NULL;
            }

            if (s == NULL) {
                break;
            }

            snprintf(body, sizeof(body), "{\"text\":\"%llu\"}",
                     (unsigned long long) now_us());
            k = snprintf(req, sizeof(req),
                         "POST /v1/conversations/%lld/messages HTTP/1.1\r\n"
                         "Host: bench\r\nAuthorization: Bearer %s\r\n"
                         "Content-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n%s",
                         conversation, token, strlen(body), body);
            send_all(s, req, k);
            s->state = SENDER_BUSY;
            sent++;
            next += interval;
        }

        k = epoll_wait(epfd, evs, 512, 1);

        for (j = 0; j < k; j++) {
            s = evs[j].data.ptr;

            if (evs[j].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
                readable(s);
            }
        }
    }

    qsort(lat, nlat, sizeof(uint32_t), cmp);

    printf("sent %ld answered %ld refused %ld expected %ld received %zu "
           "p50_ms %.2f p99_ms %.2f max_ms %.2f rate %.1f\n",
           sent, answered, refused, answered * n, nlat,
           nlat ? lat[nlat / 2] / 1000.0 : 0,
           nlat ? lat[(size_t) (nlat * 0.99)] / 1000.0 : 0,
           nlat ? lat[nlat - 1] / 1000.0 : 0,
           sent * 1000000.0 / (double) (end - start));

    return 0;
}
