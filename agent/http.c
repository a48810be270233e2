/* http.c — see http.h. The response writer (Content-Length, streamed fixed-length and
 * chunked), request bodies (buffered or streamed to the handler, Content-Length or
 * chunked), and the connections: one thread each, reading requests (head parsed by
 * http-parse.c) and handing them to the handler, and the accept loop that starts them.
 *
 * Limits: the head is at most HTTP_MAX_HEAD bytes with HTTP_MAX_HEADERS headers, a
 * buffered body at most HTTP_MAX_BODY, connections at most server->max_connections; a
 * connection idle for CONN_IO_TIMEOUT_S while the server waits for the client is closed.
 *
 * Threads. A connection gets a thread of its own; when none can be started (the sandbox's
 * pids limit is reached: a fork bomb, and threads count against it too), it goes to a queue
 * served by RESERVE_THREADS threads started with the server and kept for exactly that,
 * which serve such connections one request each, one after another. So the owner can still
 * list and kill processes (kill_all) while the sandbox has no pid left; what would hold a
 * reserve thread for long (streams) is refused by the router (http_conn_reserved()). Only
 * when that queue is full too is a connection refused, with a 503 sent from the accepting
 * thread. Every 503 says "Retry-After: 1".
 *
 * What a handler leaves unread of a streamed body decides the connection's fate when it
 * responds: up to DRAIN_MAX bytes of a Content-Length body are read and dropped afterwards
 * so the connection can be reused; more than that, an unfinished chunked body, or a body
 * the client holds back until "100 Continue" make the response say "Connection: close".
 */
#include "http.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "thread.h"
#include "timeutil.h"
#include "utf8.h"

#define CONN_IO_TIMEOUT_S 300
#define CONN_STACK_SIZE (512 * 1024)
#define READ_CHUNK (16 * 1024)
#define DISCARD_MAX (64 * 1024 * 1024)
#define DRAIN_MAX (1024 * 1024)
#define SENDFILE_STEP (4 * 1024 * 1024)
#define IN_PLACE_MIN (4 * 1024)   /* a chunked-body read this large decodes in the reader's buffer */
#define IN_PLACE_MAX (64 * 1024)  /* ... reading at most this much at once */
#define CONN_IN_MAX (HTTP_MAX_HEAD + IN_PLACE_MAX)
#define RESERVE_THREADS 4
#define RESERVE_QUEUE 64
#define RETRY_AFTER_S 1

/* Connections waiting for a reserve thread (see the top of the file). */
struct http_reserve {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct http_conn *queue[RESERVE_QUEUE];
        unsigned head, n;
        unsigned threads; /* started: with none, nothing may be queued */
};

/* Every connection being served, so that they can be closed from outside their threads
 * (http_server_close_connections). */
struct http_live {
        pthread_mutex_t lock;
        struct http_conn *head;
};

/* The request body being read, streamed or buffered. */
struct body_reader {
        bool active;          /* the current request's body is being read through this */
        bool streamed;        /* the handler reads it (http_body_read) */
        bool chunked;
        bool done;            /* read to its end */
        bool expect_continue; /* the client waits for "100 Continue" before sending it */
        bool continue_sent;
        int error;            /* sticky -errno */
        uint64_t left;        /* Content-Length bytes not read yet */
        struct http_chunked dec;
};

struct http_conn {
        struct http_server *server;
        int fd;
        struct buf in;   /* bytes read but not yet consumed */
        int minor_version;
        bool close;      /* close once the current response is out */
        bool responded;  /* the current request has its response (or its head, if streamed) */
        bool chunked;    /* a chunked response is open */
        bool fixed;      /* a response of known length is open (http_respond_begin) */
        bool raw_stream; /* HTTP/1.0 client: stream unframed, then close */
        bool broken;     /* a write failed; nothing more can be sent */
        bool reserved;   /* served by a reserve thread: one request, then closed */
        bool sent_more;  /* the client sent bytes during a streamed response (http_conn_gone) */
        uint64_t out_left; /* body bytes the open fixed-length response still owes */
        struct body_reader body;
        struct http_conn *prev, *next; /* in server->live, when there is one */
        bool listed;
};

int http_conn_fd(const struct http_conn *c) {
        return c->fd;
}

short http_conn_hangup_events(const struct http_conn *c) {
        return POLLRDHUP | (c->sent_more ? 0 : POLLIN);
}

bool http_conn_gone(struct http_conn *c, short revents) {
        char b;
        ssize_t n;

        if (revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
                return true;
        if (!(revents & POLLIN))
                return false;
        n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return true;
        if (n > 0)
                c->sent_more = true;
        return false;
}

bool http_conn_reserved(const struct http_conn *c) {
        return c->reserved;
}

/* ---- response writing ---- */

static int send_iov(struct http_conn *c, struct iovec *iov, int n) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t) n};
        ssize_t k;

        if (c->broken)
                return -EPIPE;
        while (msg.msg_iovlen > 0) {
                k = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        c->broken = true;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                while (msg.msg_iovlen > 0 && (size_t) k >= msg.msg_iov->iov_len) {
                        k -= (ssize_t) msg.msg_iov->iov_len;
                        msg.msg_iov++;
                        msg.msg_iovlen--;
                }
                if (msg.msg_iovlen > 0) {
                        msg.msg_iov->iov_base = (char *) msg.msg_iov->iov_base + k;
                        msg.msg_iov->iov_len -= (size_t) k;
                }
        }
        return 0;
}

/* Decides, as the response starts, whether the connection survives the part of a
 * streamed request body the handler has not read (see the top of the file). */
static void body_settle(struct http_conn *c) {
        const struct body_reader *b = &c->body;

        if (!b->active || b->done)
                return;
        if (b->error || b->chunked || b->left > DRAIN_MAX || (b->expect_continue && !b->continue_sent))
                c->close = true;
}

/* Builds the status line and headers; content_length < 0 means chunked (or unframed). */
static int format_head(struct http_conn *c, struct buf *head, int status, const char *content_type,
                       int64_t content_length) {
        int r;

        body_settle(c);
        r = buf_printf(head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status, http_status_text(status),
                       content_type);
        if (r >= 0 && content_length >= 0)
                r = buf_printf(head, "Content-Length: %lld\r\n", (long long) content_length);
        else if (r >= 0 && !c->raw_stream)
                r = buf_append_str(head, "Transfer-Encoding: chunked\r\n");
        if (r >= 0 && status == 503)
                r = buf_printf(head, "Retry-After: %d\r\n", RETRY_AFTER_S);
        if (r >= 0 && c->close)
                r = buf_append_str(head, "Connection: close\r\n");
        else if (r >= 0 && c->minor_version == 0)
                r = buf_append_str(head, "Connection: keep-alive\r\n");
        if (r >= 0)
                r = buf_append_str(head, "\r\n");
        return r;
}

int http_respond(struct http_conn *c, int status, const char *content_type, const void *body, size_t len) {
        _cleanup_buf_ struct buf head = {.cap = 1024};
        struct iovec iov[2];
        int r;

        if (c->responded)
                return -EALREADY;
        c->responded = true;
        r = format_head(c, &head, status, content_type, (int64_t) len);
        if (r < 0)
                return r;
        iov[0] = (struct iovec){.iov_base = head.data, .iov_len = head.len};
        iov[1] = (struct iovec){.iov_base = (void *) body, .iov_len = len};
        return send_iov(c, iov, len > 0 ? 2 : 1);
}

int http_respond_json(struct http_conn *c, int status, const json_t *body) {
        _cleanup_free_ char *text = NULL;

        text = json_dumps(body, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        return http_respond(c, status, "application/json", text, strlen(text));
}

int http_respond_error(struct http_conn *c, int status, const char *code, const char *fmt, ...) {
        _cleanup_free_ char *text = NULL;
        char message[1024];
        size_t len;
        json_t *body;
        va_list ap;
        int r;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        /* The message can quote user input, cut anywhere; jansson wants valid UTF-8. */
        if (utf8_sanitize(message, strlen(message), &text, &len) < 0)
                return -ENOMEM;
        body = json_pack("{s:{s:s,s:s%}}", "error", "code", code, "message", text, len);
        if (!body)
                return -ENOMEM;
        r = http_respond_json(c, status, body);
        json_decref(body);
        return r;
}

int http_respond_begin(struct http_conn *c, int status, const char *content_type, uint64_t len) {
        _cleanup_buf_ struct buf head = {.cap = 1024};
        struct iovec iov;
        int r;

        if (c->responded)
                return -EALREADY;
        if (len > INT64_MAX)
                return -EINVAL;
        c->responded = true;
        c->fixed = true;
        c->out_left = len;
        r = format_head(c, &head, status, content_type, (int64_t) len);
        if (r < 0)
                return r;
        iov = (struct iovec){.iov_base = head.data, .iov_len = head.len};
        return send_iov(c, &iov, 1);
}

int http_write(struct http_conn *c, const void *data, size_t len) {
        struct iovec iov = {.iov_base = (void *) data, .iov_len = len};
        int r;

        if (!c->fixed)
                return -EINVAL;
        if (len > c->out_left)
                return -EMSGSIZE;
        if (len == 0)
                return 0;
        r = send_iov(c, &iov, 1);
        if (r >= 0)
                c->out_left -= len;
        return r;
}

int http_sendfile(struct http_conn *c, int fd, uint64_t len) {
        ssize_t k;

        if (!c->fixed)
                return -EINVAL;
        if (len > c->out_left)
                return -EMSGSIZE;
        while (len > 0) {
                if (c->broken)
                        return -EPIPE;
                k = sendfile(c->fd, fd, NULL, (size_t) MIN(len, (uint64_t) SENDFILE_STEP));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        /* The socket or the file failed; either way the body stays short. */
                        c->broken = true;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                if (k == 0)
                        return -ENODATA;
                len -= (uint64_t) k;
                c->out_left -= (uint64_t) k;
        }
        return 0;
}

int http_chunked_begin(struct http_conn *c, int status, const char *content_type) {
        _cleanup_buf_ struct buf head = {.cap = 1024};
        struct iovec iov;
        int r;

        if (c->responded)
                return -EALREADY;
        c->responded = true;
        c->chunked = true;
        if (c->minor_version == 0) {
                c->raw_stream = true;
                c->close = true;
        }
        r = format_head(c, &head, status, content_type, -1);
        if (r < 0)
                return r;
        iov = (struct iovec){.iov_base = head.data, .iov_len = head.len};
        return send_iov(c, &iov, 1);
}

int http_chunked_write(struct http_conn *c, const void *data, size_t len) {
        char size_line[32];
        struct iovec iov[3];
        int n;

        if (!c->chunked)
                return -EINVAL;
        if (len == 0)
                return 0;
        if (c->raw_stream) {
                iov[0] = (struct iovec){.iov_base = (void *) data, .iov_len = len};
                return send_iov(c, iov, 1);
        }
        n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
        iov[0] = (struct iovec){.iov_base = size_line, .iov_len = (size_t) n};
        iov[1] = (struct iovec){.iov_base = (void *) data, .iov_len = len};
        iov[2] = (struct iovec){.iov_base = (void *) "\r\n", .iov_len = 2};
        return send_iov(c, iov, 3);
}

int http_chunked_end(struct http_conn *c) {
        struct iovec iov = {.iov_base = (void *) "0\r\n\r\n", .iov_len = 5};

        if (!c->chunked)
                return -EINVAL;
        c->chunked = false;
        if (c->raw_stream)
                return 0;
        return send_iov(c, &iov, 1);
}

/* ---- request bodies ---- */

/* Reads at most max bytes into dst; returns the count, 0 at EOF, -ETIMEDOUT when idle. */
static ssize_t conn_read(struct http_conn *c, void *dst, size_t max) {
        ssize_t n;

        do
                n = read(c->fd, dst, max);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        return n;
}

/* Reads more bytes into c->in (which must have room); -ECONNRESET at EOF. */
static int conn_fill(struct http_conn *c) {
        char chunk[READ_CHUNK];
        ssize_t n;

        n = conn_read(c, chunk, MIN(sizeof(chunk), c->in.cap - c->in.len));
        if (n <= 0)
                return n == 0 ? -ECONNRESET : (int) n;
        return buf_append(&c->in, chunk, (size_t) n);
}

static void body_start(struct http_conn *c, const struct http_request *req, bool streamed) {
        c->body = (struct body_reader){
                .active = true,
                .streamed = streamed,
                .chunked = req->chunked,
                .expect_continue = req->expect_continue,
                .left = req->content_length,
        };
        c->body.done = !req->chunked && req->content_length == 0;
}

static int body_send_continue(struct http_conn *c) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec iov = {.iov_base = (void *) cont, .iov_len = sizeof(cont) - 1};

        if (c->body.continue_sent)
                return 0;
        c->body.continue_sent = true;
        /* A client that has started sending does not wait for it. */
        if (!c->body.expect_continue || c->in.len > 0 || c->responded)
                return 0;
        return send_iov(c, &iov, 1);
}

static ssize_t body_read_length(struct http_conn *c, char *dst, size_t len) {
        size_t want = (size_t) MIN((uint64_t) len, c->body.left);
        ssize_t n;

        if (c->in.len > 0) {
                n = (ssize_t) MIN(want, c->in.len);
                memcpy(dst, c->in.data, (size_t) n);
                buf_consume(&c->in, (size_t) n);
        } else {
                n = conn_read(c, dst, want);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0)
                        return n;
        }
        c->body.left -= (uint64_t) n;
        c->body.done = c->body.left == 0;
        return n;
}

/* With nothing buffered and framing next: reads into dst and decodes there, moving the
 * data over the framing, so that a body of many chunks costs one read per IN_PLACE_MAX
 * bytes, not two per chunk. What follows the body's end (a pipelined request) goes back
 * to c->in, which has room for IN_PLACE_MAX bytes beyond a head. */
static ssize_t body_read_chunked_in_place(struct http_conn *c, char *dst, size_t len) {
        size_t got = 0, off = 0, used, data_len;
        ssize_t n;
        int r = 0;

        n = conn_read(c, dst, len);
        if (n <= 0)
                return n == 0 ? -ECONNRESET : n;
        while (off < (size_t) n && r == 0) {
                r = http_chunked_decode(&c->body.dec, dst + off, (size_t) n - off, SIZE_MAX, &used, &data_len);
                if (r < 0)
                        return r;
                memmove(dst + got, dst + off + used - data_len, data_len);
                got += data_len;
                off += used;
        }
        c->body.done = r == 1;
        if (off < (size_t) n) {
                r = buf_append(&c->in, dst + off, (size_t) n - off);
                if (r < 0)
                        return r;
        }
        return (ssize_t) got;
}

/* Decodes what c->in holds into dst; reads more only when nothing could be decoded. */
static ssize_t body_read_chunked(struct http_conn *c, char *dst, size_t len) {
        struct http_chunked *d = &c->body.dec;
        size_t got = 0, off, used, data_len;
        ssize_t n;
        int r = 0;

        for (;;) {
                off = 0;
                while (off < c->in.len && got < len && r == 0) {
                        r = http_chunked_decode(d, c->in.data + off, c->in.len - off, len - got, &used, &data_len);
                        if (r < 0)
                                return r;
                        memcpy(dst + got, c->in.data + off + used - data_len, data_len);
                        got += data_len;
                        off += used;
                }
                buf_consume(&c->in, off);
                c->body.done = r == 1;
                if (got > 0 || c->body.done)
                        return (ssize_t) got;

                if (http_chunked_data_left(d) > 0) {
                        /* Inside chunk data with nothing buffered: read it straight into dst. */
                        n = conn_read(c, dst, (size_t) MIN((uint64_t) len, http_chunked_data_left(d)));
                        if (n <= 0)
                                return n == 0 ? -ECONNRESET : n;
                        (void) http_chunked_decode(d, dst, (size_t) n, (size_t) n, &used, &data_len);
                        return n;
                }
                if (len >= IN_PLACE_MIN) {
                        n = body_read_chunked_in_place(c, dst, MIN(len, (size_t) IN_PLACE_MAX));
                        if (n != 0 || c->body.done)
                                return n;
                        continue; /* that read held framing only */
                }
                r = conn_fill(c);
                if (r < 0)
                        return r;
        }
}

static ssize_t body_read(struct http_conn *c, void *buf, size_t len) {
        ssize_t n;
        int r;

        if (!c->body.active)
                return -EINVAL;
        if (c->body.error)
                return c->body.error;
        if (c->body.done || len == 0)
                return 0;
        r = body_send_continue(c);
        if (r < 0)
                return c->body.error = r;
        n = c->body.chunked ? body_read_chunked(c, buf, len) : body_read_length(c, buf, len);
        if (n < 0)
                c->body.error = (int) n;
        return n;
}

ssize_t http_body_read(struct http_conn *c, void *buf, size_t len) {
        return c->body.streamed ? body_read(c, buf, len) : -EINVAL;
}

/* Reads a whole body of a route that does not stream it into req->body. */
static int read_body(struct http_conn *c, struct http_request *req) {
        char chunk[READ_CHUNK];
        ssize_t n;
        int r;

        buf_init(&req->body, HTTP_MAX_BODY);
        if (req->content_length > HTTP_MAX_BODY)
                return -EFBIG;
        for (;;) {
                n = body_read(c, chunk, sizeof(chunk));
                if (n <= 0)
                        return (int) n;
                r = buf_append(&req->body, chunk, (size_t) n);
                if (r < 0)
                        return r == -E2BIG ? -EFBIG : r;
        }
}

/* After refusing a request, reads and drops up to n more bytes of it (giving up after a
 * second of silence or at EOF): a client still sending then sees the response instead of
 * a reset connection. */
static void conn_discard(struct http_conn *c, uint64_t n) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        char chunk[READ_CHUNK];
        ssize_t k;

        n = MIN(n, (uint64_t) DISCARD_MAX);
        while (n > 0 && poll(&pfd, 1, 1000) > 0) {
                k = conn_read(c, chunk, (size_t) MIN(n, sizeof(chunk)));
                if (k <= 0)
                        break;
                n -= (uint64_t) k;
        }
}

/* After the handler: drops what it left of a streamed body when body_settle() kept the
 * connection open for it, else lets the client read the response before the close. */
static void body_finish(struct http_conn *c) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        char chunk[READ_CHUNK];

        if (!c->body.active || c->body.done)
                return;
        if (!c->close && !c->broken) {
                while ((c->in.len > 0 || poll(&pfd, 1, 1000) > 0) && body_read(c, chunk, sizeof(chunk)) > 0)
                        ;
                if (c->body.done)
                        return;
                c->close = true;
        }
        if (c->broken)
                return;
        (void) shutdown(c->fd, SHUT_WR);
        conn_discard(c, DISCARD_MAX);
}

int http_respond_upgrade(struct http_conn *c, const char *protocol, struct buf *ret_pending) {
        _cleanup_buf_ struct buf head = {0};
        struct iovec iov;
        int r;

        if (c->responded)
                return -EINVAL;
        buf_init(&head, 512);
        r = buf_printf(&head, "HTTP/1.1 101 %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", http_status_text(101),
                       protocol);
        if (r < 0)
                return r;
        c->responded = true;
        c->close = true;
        iov = (struct iovec){.iov_base = head.data, .iov_len = head.len};
        r = send_iov(c, &iov, 1);
        if (r < 0)
                return r;
        buf_init(ret_pending, c->in.len + 1);
        r = buf_append(ret_pending, c->in.data, c->in.len);
        buf_consume(&c->in, c->in.len);
        return r;
}

/* ---- connections ---- */

static int read_head(struct http_conn *c, struct http_request *req) {
        size_t head_len;
        int r;

        for (;;) {
                if (c->in.len > 0) {
                        r = http_request_parse_head(req, c->in.data, c->in.len, &head_len);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                }
                r = conn_fill(c);
                if (r < 0)
                        return r;
        }
        buf_consume(&c->in, head_len);
        return 0;
}

static void respond_read_error(struct http_conn *c, const struct http_request *req, int r) {
        int status = http_status_from_errno(r);

        switch (status) {
        case 400:
                (void) http_respond_error(c, status, "bad_request", "malformed HTTP request%s",
                                          req->head ? " body (chunked framing)" : "");
                break;
        case 413:
                if (req->chunked)
                        (void) http_respond_error(c, status, "payload_too_large",
                                                  "the request body is over the limit of %d bytes", HTTP_MAX_BODY);
                else
                        (void) http_respond_error(c, status, "payload_too_large",
                                                  "the request body (%llu bytes) is over the limit of %d bytes",
                                                  (unsigned long long) req->content_length, HTTP_MAX_BODY);
                break;
        case 431:
                (void) http_respond_error(c, status, "bad_request",
                                          "the request head is over %d bytes or %d header fields", HTTP_MAX_HEAD,
                                          HTTP_MAX_HEADERS);
                break;
        case 501:
                (void) http_respond_error(c, status, "not_implemented",
                                          "only \"Transfer-Encoding: chunked\" is supported");
                break;
        case 505:
                (void) http_respond_error(c, status, "bad_request", "only HTTP/1.x is supported");
                break;
        default:
                (void) http_respond_error(c, status, "internal", "cannot read the request: %s", strerror(-r));
        }
}

/* Serves one request; returns false when the connection must be closed afterwards. */
static bool conn_serve_one(struct http_conn *c) {
        struct http_request req = {};
        bool streamed = false;
        int r;

        c->responded = c->chunked = c->fixed = c->raw_stream = false;
        c->close = false;
        c->out_left = 0;
        c->body = (struct body_reader){};
        c->minor_version = 1;

        r = read_head(c, &req);
        if (r >= 0) {
                c->minor_version = req.minor_version;
                c->close = !req.keep_alive || c->reserved;
                streamed = c->server->streams_body && c->server->streams_body(&req);
                body_start(c, &req, streamed);
                if (!streamed)
                        r = read_body(c, &req);
        }
        if (r < 0) {
                if (r != -ECONNRESET && r != -ETIMEDOUT && r != -EPIPE && !c->broken) {
                        c->close = true;
                        respond_read_error(c, &req, r);
                        /* Let the client read the answer before it sees the connection go. */
                        (void) shutdown(c->fd, SHUT_WR);
                        conn_discard(c, DISCARD_MAX);
                }
                http_request_done(&req);
                return false;
        }

        r = c->server->handler(c, &req, c->server->userdata);
        if (!c->responded)
                (void) http_respond_error(c, 500, "internal", "request failed: %s",
                                          r < 0 ? strerror(-r) : "no response");
        /* A stream the handler left unfinished cannot be continued. */
        if (c->chunked || (c->fixed && c->out_left > 0))
                c->close = true;
        if (streamed)
                body_finish(c);
        http_request_done(&req);
        return !c->close && !c->broken;
}

static void live_add(struct http_conn *c) {
        struct http_live *l = c->server->live;

        if (!l)
                return;
        pthread_mutex_lock(&l->lock);
        c->next = l->head;
        if (l->head)
                l->head->prev = c;
        l->head = c;
        c->listed = true;
        pthread_mutex_unlock(&l->lock);
}

/* Before c's socket is closed: whoever shuts the listed ones down holds the lock, so it
 * never touches a descriptor number already reused. */
static void live_remove(struct http_conn *c) {
        struct http_live *l = c->server->live;

        if (!c->listed)
                return;
        pthread_mutex_lock(&l->lock);
        if (c->prev)
                c->prev->next = c->next;
        else
                l->head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->listed = false;
        pthread_mutex_unlock(&l->lock);
}

int http_server_close_connections(struct http_server *s, long timeout_ms) {
        int64_t deadline = mono_ms() + timeout_ms;

        if (s->live) {
                pthread_mutex_lock(&s->live->lock);
                for (struct http_conn *c = s->live->head; c; c = c->next)
                        (void) shutdown(c->fd, SHUT_RDWR);
                pthread_mutex_unlock(&s->live->lock);
        }
        while (atomic_load(&s->n_connections) > 0) {
                if (mono_ms() >= deadline)
                        return -ETIMEDOUT;
                (void) poll(NULL, 0, 10);
        }
        return 0;
}

/* Serves c's requests until the connection ends, then closes it and frees c. */
static void conn_serve(struct http_conn *c) {
        struct timeval tv = {.tv_sec = CONN_IO_TIMEOUT_S};
        int one = 1;

        (void) setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on unix sockets */

        while (conn_serve_one(c))
                ;

        live_remove(c);
        close(c->fd);
        buf_free(&c->in);
        free(c);
}

static void *conn_main(void *arg) {
        struct http_conn *c = arg;
        struct http_server *s = c->server;

        conn_serve(c);
        atomic_fetch_sub(&s->n_connections, 1);
        return NULL;
}

int http_serve_connection(struct http_server *s, int fd) {
        struct http_conn *c = calloc(1, sizeof(*c));

        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->server = s;
        c->fd = fd;
        buf_init(&c->in, CONN_IN_MAX);
        conn_serve(c);
        return 0;
}

/* Refuses fd from the accepting thread (so without blocking): 503 with message. */
static void reject(int fd, const char *message) {
        char body[512], resp[768];
        int n;

        snprintf(body, sizeof(body), "{\"error\":{\"code\":\"unavailable\",\"message\":\"%s\"}}", message);
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Retry-After: %d\r\nConnection: close\r\n\r\n%s",
                     strlen(body), RETRY_AFTER_S, body);
        if (n > 0 && (size_t) n < sizeof(resp))
                (void) !send(fd, resp, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
}

static void *reserve_main(void *arg) {
        struct http_server *s = arg;
        struct http_reserve *rs = s->reserve;
        struct http_conn *c;

        for (;;) {
                pthread_mutex_lock(&rs->lock);
                while (rs->n == 0)
                        pthread_cond_wait(&rs->cond, &rs->lock);
                c = rs->queue[rs->head];
                rs->head = (rs->head + 1) % RESERVE_QUEUE;
                rs->n--;
                pthread_mutex_unlock(&rs->lock);
                c->reserved = true;
                conn_serve(c);
                atomic_fetch_sub(&s->n_connections, 1);
        }
        return NULL;
}

/* Starts the reserve threads; fewer than asked for (even none) is logged, not fatal. */
static void reserve_start(struct http_server *s) {
        struct http_reserve *rs = calloc(1, sizeof(*rs));
        unsigned started = 0;

        if (!rs) {
                log_warn("cannot allocate the reserve of connection threads, going without");
                return;
        }
        pthread_mutex_init(&rs->lock, NULL);
        pthread_cond_init(&rs->cond, NULL);
        s->reserve = rs;
        for (unsigned i = 0; i < RESERVE_THREADS; i++)
                if (thread_start_detached(reserve_main, s, CONN_STACK_SIZE) >= 0)
                        started++;
        rs->threads = started;
        if (started < RESERVE_THREADS)
                log_warn("started %u of %d reserve connection threads", started, RESERVE_THREADS);
}

/* Queues c for a reserve thread; -EBUSY when the queue is full (or there is none). */
static int reserve_push(struct http_server *s, struct http_conn *c) {
        struct http_reserve *rs = s->reserve;
        int r = -EBUSY;

        if (!rs || rs->threads == 0)
                return r;
        pthread_mutex_lock(&rs->lock);
        if (rs->n < RESERVE_QUEUE) {
                rs->queue[(rs->head + rs->n) % RESERVE_QUEUE] = c;
                rs->n++;
                pthread_cond_signal(&rs->cond);
                r = 0;
        }
        pthread_mutex_unlock(&rs->lock);
        return r;
}

static void conn_start(struct http_server *s, int fd) {
        struct http_conn *c;
        int r;

        if (atomic_fetch_add(&s->n_connections, 1) >= s->max_connections) {
                atomic_fetch_sub(&s->n_connections, 1);
                log_warn("too many connections (%u), refusing one", s->max_connections);
                reject(fd, "too many connections");
                return;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                atomic_fetch_sub(&s->n_connections, 1);
                reject(fd, "the sandbox is out of memory");
                return;
        }
        c->server = s;
        c->fd = fd;
        buf_init(&c->in, CONN_IN_MAX);
        live_add(c);

        r = thread_start_detached(conn_main, c, CONN_STACK_SIZE);
        if (r < 0 && reserve_push(s, c) == 0)
                return;
        if (r < 0) {
                log_warn_errno(-r, "no thread for a connection and the reserve is busy, refusing it");
                atomic_fetch_sub(&s->n_connections, 1);
                live_remove(c);
                reject(fd, "the agent cannot start a thread for this request (the sandbox's pids limit is reached?) "
                           "and its reserve threads are busy; try again, or end processes first");
                free(c);
        }
}

int http_server_run(struct http_server *s, int stop_fd) {
        struct pollfd pfd[2] = {
                {.fd = s->listen_fd, .events = POLLIN},
                {.fd = stop_fd, .events = POLLIN},
        };
        int fd;

        if (!s->reserve)
                reserve_start(s);
        if (!s->live) {
                s->live = calloc(1, sizeof(*s->live));
                if (s->live)
                        pthread_mutex_init(&s->live->lock, NULL);
                else
                        log_warn("cannot allocate the list of connections, going without");
        }
        for (;;) {
                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (pfd[1].revents)
                        return 0;
                if (!pfd[0].revents)
                        continue;
                fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        switch (errno) {
                        case EINTR:
                        case EAGAIN:
                        case ECONNABORTED:
                        case EPROTO:
                                continue;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                log_warn_errno(errno, "accept() failed, retrying");
                                (void) poll(NULL, 0, 100); /* let connections finish */
                                continue;
                        default:
                                return -errno;
                        }
                }
                conn_start(s, fd);
        }
}
