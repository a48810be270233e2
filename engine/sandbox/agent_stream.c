/* agent_stream.c — see agent_stream.h. The sandbox's agent is not trusted: its answer is
 * read with the strict shared parser (common/http-parse.h: the head, then a chunked body
 * through the same decoder the agent and the preview proxy use); anything malformed is
 * -EPROTO, and memory per exchange stays one fixed buffer. */
#include "sandbox/agent_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "http-parse.h"
#include "log.h"
#include "macro.h"
#include "net/conn-pool.h"
#include "net/tls.h"
#include "timeutil.h"

#define HEAD_MAX (16 * 1024)
#define CONNECT_TIMEOUT_MS 5000
#define SEND_STALL_MS 60000
#define IN_SIZE (256 * 1024)

enum framing { FRAMING_LENGTH, FRAMING_CHUNKED, FRAMING_CLOSE };

struct agent_stream {
        int fd;             /* non-blocking: every wait is a poll() that also watches watch_fd */
        SSL *ssl;           /* TLS over fd (to another node), or NULL */
        int watch_fd;       /* the engine's client, whose hang-up ends every wait; -1 if none */
        bool chunked_upload;
        int send_error;     /* the agent stopped reading the request (it may have answered early) */
        int status;
        int retry_after;    /* seconds of the answer's Retry-After, 0 if none */
        char content_type[128];
        int64_t content_length;
        enum framing framing;
        uint64_t remaining; /* of the Content-Length body */
        struct http_chunked dec; /* of a chunked body */
        bool done;
        long read_timeout_ms; /* each wait for body bytes; -1: none */
        char peer[160];     /* who answers, for messages: "the sandbox's agent", "node a (http://…)" */
        int err_status;     /* and the status and code of its failures */
        const char *err_code;
        int64_t deadline;   /* mono ms by which the whole exchange must be over; 0: none */
        uint64_t consumed;  /* bytes of the body taken out of in[] so far, framing included */
        char *in;           /* bytes read from the socket, in[pos..len) unconsumed */
        size_t pos, len;
        /* A connection of a pool (TCP to another node): where it goes back, and whether it
         * may (the request went out whole, the peer did not ask to close). */
        struct conn_pool *pool;
        char pool_key[CONN_POOL_KEY_MAX];
        bool reused;        /* it came from the pool */
        bool keep;          /* the answer did not say "Connection: close" */
        bool body_whole;    /* the request's body went out whole (its last chunk, for chunked) */
        int64_t body_left;  /* bytes of a Content-Length request body not sent yet */
        /* To open a new connection in place of a kept one the peer closed under a GET. */
        struct buf retry_head; /* the head sent; empty when the request is not retried */
        char host[256], port[8];
        long connect_ms;
        SSL_CTX *tls;
};

/* Waits until fd is ready for events, or watch_fd (if >= 0) hangs up (-ECONNRESET), or
 * timeout_ms passes (-ETIMEDOUT; < 0 waits for ever). */
static int wait_fd(int fd, short events, int watch_fd, long timeout_ms) {
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = watch_fd, .events = POLLRDHUP}};
        int n;

        for (;;) {
                n = poll(p, watch_fd >= 0 ? 2 : 1, timeout_ms < 0 ? -1 : (int) timeout_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ETIMEDOUT;
                if (watch_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
                        return -ECONNRESET;
                return 0;
        }
}

/* timeout_ms, cut to what is left of the exchange's deadline (0 once it has passed). */
static long bounded(const struct agent_stream *s, long timeout_ms) {
        int64_t left;

        if (!s->deadline)
                return timeout_ms;
        left = s->deadline - mono_ms();
        if (left <= 0)
                return 0;
        return timeout_ms < 0 || timeout_ms > left ? (long) left : timeout_ms;
}

/* SSL_write (out) or SSL_read of s's TLS, with the result read() and send() would give:
 * bytes, 0 at the end of the stream, or -1 with errno, EAGAIN with *want the poll() event
 * to wait for (a TLS read may need to write, and a write to read). */
static ssize_t tls_io(struct agent_stream *s, bool out, void *data, size_t len, short *want) {
        int n = (int) MIN(len, (size_t) INT_MAX), ret;

        ERR_clear_error(); /* SSL_get_error() reads the thread's queue: only this call's */
        errno = 0;
        ret = out ? SSL_write(s->ssl, data, n) : SSL_read(s->ssl, data, n);
        if (ret > 0)
                return ret;
        switch (SSL_get_error(s->ssl, ret)) {
        case SSL_ERROR_WANT_READ:
                *want = POLLIN;
                errno = EAGAIN;
                return -1;
        case SSL_ERROR_WANT_WRITE:
                *want = POLLOUT;
                errno = EAGAIN;
                return -1;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        case SSL_ERROR_SYSCALL:
                if (errno == 0 || errno == EAGAIN)
                        errno = EPIPE;
                ERR_clear_error();
                return -1;
        default: /* a TLS error: a record that does not decrypt, an alert */
                ERR_clear_error();
                errno = EPROTO;
                return -1;
        }
}

/* Sends all of data; gives up when the agent takes nothing for SEND_STALL_MS or the client
 * goes away, so that a sandbox that stops reading cannot hold an engine thread. */
static int send_all(struct agent_stream *s, const void *data, size_t len) {
        const char *p = data;
        int r;

        while (len > 0) {
                short want = POLLOUT;
                ssize_t k = s->ssl ? tls_io(s, true, (void *) p, len, &want)
                                   : send(s->fd, p, len, MSG_NOSIGNAL);
                if (k < 0 && errno == EAGAIN) {
                        r = wait_fd(s->fd, want, s->watch_fd, bounded(s, SEND_STALL_MS));
                        if (r < 0)
                                return r;
                        continue;
                }
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        /* The peer's reset, not to be taken for the client's hang-up (which
                         * wait_fd() says with -ECONNRESET): a kept connection's head is then
                         * sent again on a new one. */
                        return errno == ECONNRESET ? -ECONNABORTED : -errno;
                }
                p += k;
                len -= (size_t) k;
        }
        return 0;
}

/* Connects without blocking: a unix socket whose backlog is full answers EAGAIN at once;
 * retry for at most CONNECT_TIMEOUT_MS. */
static int connect_agent(struct agent_stream *s, const struct sockaddr_un *sa) {
        int64_t deadline = mono_ms() + bounded(s, CONNECT_TIMEOUT_MS);

        for (;;) {
                if (connect(s->fd, (const struct sockaddr *) sa, sizeof(*sa)) == 0)
                        return 0;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN || mono_ms() >= deadline)
                        return -errno;
                if (wait_fd(-1, 0, s->watch_fd, 10) == -ECONNRESET)
                        return -ECONNRESET;
        }
}

/* A new exchange, not connected yet: errors name peer and answer status/code. */
static int stream_new(const char *peer, int err_status, const char *err_code, int watch_fd, long total_ms,
                      struct agent_stream **ret) {
        struct agent_stream *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->fd = -1;
        s->in = malloc(IN_SIZE + 1);
        if (!s->in) {
                free(s);
                return -ENOMEM;
        }
        snprintf(s->peer, sizeof(s->peer), "%s", peer);
        s->err_status = err_status;
        s->err_code = err_code;
        s->content_length = -1;
        s->read_timeout_ms = -1;
        s->watch_fd = watch_fd;
        s->deadline = total_ms >= 0 ? mono_ms() + total_ms : 0;
        *ret = s;
        return 0;
}

/* The request head: the fixed lines ("Connection: close" unless the connection may be
 * kept), extra (complete header lines, may be NULL), the Content-Type and the body's framing. */
static int build_head(const char *host, const struct agent_stream_request *q, bool keep, struct buf *head) {
        int r;

        buf_init(head, HEAD_MAX);
        r = buf_printf(head, "%s %s HTTP/1.1\r\nHost: %s\r\n%s", q->method, q->target, host,
                       keep ? "" : "Connection: close\r\n");
        if (r >= 0 && q->extra_headers)
                r = buf_append_str(head, q->extra_headers);
        if (r >= 0 && q->content_type)
                r = buf_printf(head, "Content-Type: %s\r\n", q->content_type);
        if (r >= 0 && q->body_len >= 0)
                r = buf_printf(head, "Content-Length: %lld\r\n\r\n", (long long) q->body_len);
        else if (r >= 0)
                r = buf_append_str(head, "Transfer-Encoding: chunked\r\n\r\n");
        return r;
}

static int send_head_buf(struct agent_stream *s, const struct buf *head, const struct agent_stream_request *q,
                         struct error *e) {
        int r = send_all(s, head->data, head->len);

        if (r < 0)
                return error_set(e, r, s->err_status, s->err_code, "cannot send a request to %s: %s", s->peer,
                                 strerror(r == -ECONNABORTED ? ECONNRESET : -r));
        s->chunked_upload = q->body_len < 0;
        s->body_left = q->body_len;
        s->body_whole = q->body_len == 0;
        return 0;
}

/* Sends the request head (build_head). */
static int send_head(struct agent_stream *s, const char *host, const struct agent_stream_request *q, struct error *e) {
        _cleanup_buf_ struct buf head = {0};

        if (build_head(host, q, s->pool, &head) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory (a request head over %d bytes)", HEAD_MAX);
        return send_head_buf(s, &head, q, e);
}

int agent_stream_open(const char *socket_path, const char *method, const char *target, const char *content_type,
                      int64_t body_len, int watch_fd, long total_ms, struct agent_stream **ret, struct error *e) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        const struct agent_stream_request q = {method, target, NULL, content_type, body_len, NULL, NULL};
        _cleanup_agent_stream_ struct agent_stream *s = NULL;
        int r;

        _cleanup_close_ int node = -1;
        struct stat st;

        /* Under gVisor the sandbox made the socket file itself, in a directory it can write
         * (runtime.h: takes_listen_fd): its name could be swapped for a symbolic link to a
         * host socket between any check and connect(). The file is pinned with O_PATH,
         * without following links, and connected through that descriptor. */
        node = open(socket_path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (node < 0 || fstat(node, &st) < 0 || !S_ISSOCK(st.st_mode))
                return error_set(e, node < 0 ? errno : ENOTSOCK, ERR_SANDBOX, "the sandbox's agent is not reachable: %s",
                                 node < 0 ? strerror(errno) : "its socket is not a socket");
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", node);
        if (stream_new("the sandbox's agent", ERR_SANDBOX, watch_fd, total_ms, &s) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        r = s->fd < 0 ? -errno : connect_agent(s, &sa);
        if (r == -EAGAIN)
                return error_set(e, EAGAIN, ERR_UNAVAILABLE,
                                 "the sandbox's agent is not accepting connections (too many at once); try again");
        if (r < 0)
                return error_set(e, r, ERR_SANDBOX, "the sandbox's agent is not reachable: %s", strerror(-r));
        r = send_head(s, "agent", &q, e);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

/* Connects s to one address without blocking, waiting at most timeout_ms (and no longer
 * than the client stays). */
static int connect_tcp(struct agent_stream *s, const struct addrinfo *ai, long timeout_ms) {
        int one = 1, err = 0, r;
        socklen_t len = sizeof(err);

        s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->fd < 0)
                return -errno;
        /* Heads and small bodies go out at once: Nagle with delayed ACKs adds 40 ms a call. */
        (void) setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) == 0)
                return 0;
        if (errno != EINPROGRESS)
                return -errno;
        r = wait_fd(s->fd, POLLOUT, s->watch_fd, bounded(s, timeout_ms));
        if (r < 0)
                return r;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                return -errno;
        return -err;
}

/* The TLS handshake of s with host over its connected socket, within timeout_ms. */
static int handshake(struct agent_stream *s, SSL_CTX *ctx, const char *host, long timeout_ms, struct error *e) {
        char why[300];
        int r;

        s->ssl = SSL_new(ctx);
        if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1 || tls_client_expect_host(s->ssl, host) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        r = tls_handshake(s->ssl, s->fd, false, s->watch_fd, timeout_ms);
        if (r == -ECONNRESET)
                return error_set(e, ECONNRESET, ERR_BAD_REQUEST, "the client went away before the answer");
        if (r == -ETIMEDOUT)
                return error_set(e, ETIMEDOUT, ERR_NODE_DOWN, "no TLS connection with %s: no TLS handshake within %ld ms",
                                 s->peer, timeout_ms);
        if (r < 0)
                return error_set(e, EPROTO, ERR_NODE, "no TLS connection with %s: %s", s->peer,
                                 r == -EPROTO ? tls_error(s->ssl, why, sizeof(why)) : strerror(-r));
        return 0;
}

/* Connects s to s->host:s->port (over TLS with s->tls), on a new connection. */
static int dial(struct agent_stream *s, struct error *e) {
        const struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        struct addrinfo *res = NULL;
        int r;

        r = getaddrinfo(s->host, s->port, &hints, &res);
        if (r != 0)
                return error_set(e, EHOSTUNREACH, ERR_NODE_DOWN, "%s is not reachable: cannot resolve %s: %s", s->peer, s->host,
                                 gai_strerror(r));
        r = -EHOSTUNREACH;
        for (const struct addrinfo *ai = res; ai && r < 0 && r != -ECONNRESET; ai = ai->ai_next) {
                if (s->fd >= 0)
                        close(s->fd);
                s->fd = -1;
                r = connect_tcp(s, ai, s->connect_ms);
        }
        freeaddrinfo(res);
        if (r == -ECONNRESET)
                return error_set(e, ECONNRESET, ERR_BAD_REQUEST, "the client went away before the answer");
        if (r < 0)
                return error_set(e, -r, ERR_NODE_DOWN, "%s is not reachable: %s", s->peer,
                                 r == -ETIMEDOUT ? "no connection within the connect timeout" : strerror(-r));
        if (s->tls)
                return handshake(s, s->tls, s->host, s->connect_ms, e);
        return 0;
}

/* Drops s's kept connection, which the peer closed, and opens a new one in its place. */
static int redial(struct agent_stream *s, struct error *e) {
        SSL_free(s->ssl);
        s->ssl = NULL;
        close(s->fd);
        s->fd = -1;
        s->reused = false;
        s->pos = s->len = 0;
        error_clear(e);
        return dial(s, e);
}

int agent_stream_open_tcp(const char *host, const char *port, const char *peer, long connect_ms,
                          const struct agent_stream_request *q, int watch_fd, struct agent_stream **ret, struct error *e) {
        _cleanup_agent_stream_ struct agent_stream *s = NULL;
        _cleanup_buf_ struct buf head = {0};
        char host_header[300];
        int r;

        if (stream_new(peer, ERR_NODE, watch_fd, -1, &s) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        if ((size_t) snprintf(s->host, sizeof(s->host), "%s", host) >= sizeof(s->host) ||
            (size_t) snprintf(s->port, sizeof(s->port), "%s", port) >= sizeof(s->port))
                return error_set(e, EINVAL, ERR_NODE, "%s: its address is too long", peer);
        s->connect_ms = connect_ms;
        s->tls = q->tls;
        /* HEAD's answer has a Content-Length and no body: not worth telling apart, not kept. */
        if (q->pool && !streq(q->method, "HEAD")) {
                s->pool = q->pool;
                snprintf(s->pool_key, sizeof(s->pool_key), "%s:%s%s", host, port, q->tls ? "+tls" : "");
                s->fd = conn_pool_take(s->pool, s->pool_key, &s->ssl);
                s->reused = s->fd >= 0;
        }
        if (!s->reused && (r = dial(s, e)) < 0)
                return r;
        snprintf(host_header, sizeof(host_header), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
        if (build_head(host_header, q, s->pool, &head) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory (a request head over %d bytes)", HEAD_MAX);
        r = send_head_buf(s, &head, q, e);
        /* A head that did not go out whole was not taken: sent again on a new connection. */
        if (r < 0 && s->reused && e->err != ECONNRESET && (r = redial(s, e)) >= 0)
                r = send_head_buf(s, &head, q, e);
        if (r < 0)
                return r;
        if (s->reused && streq(q->method, "GET") && q->body_len == 0)
                s->retry_head = head, head = (struct buf) {0};
        *ret = TAKE_PTR(s);
        return 0;
}

int agent_stream_send(struct agent_stream *s, const void *data, size_t len, struct error *e) {
        char size_line[32];
        int r = 0;

        if (s->send_error)
                return error_set(e, s->send_error, s->err_status, s->err_code, "%s stopped reading the request: %s", s->peer,
                                 strerror(s->send_error == ECONNABORTED ? ECONNRESET : s->send_error));
        if (len == 0)
                return 0;
        if (s->chunked_upload) {
                snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
                r = send_all(s, size_line, strlen(size_line));
        }
        if (r >= 0)
                r = send_all(s, data, len);
        if (r >= 0 && s->chunked_upload)
                r = send_all(s, "\r\n", 2);
        if (r < 0) {
                s->send_error = -r;
                return error_set(e, r, s->err_status, s->err_code, "%s stopped reading the request: %s", s->peer,
                                 strerror(r == -ECONNABORTED ? ECONNRESET : -r));
        }
        if (!s->chunked_upload) {
                s->body_left -= (int64_t) len;
                s->body_whole = s->body_left == 0;
        }
        return 0;
}

/* Reads more from the socket into in[]; returns bytes read, 0 at EOF, -ETIMEDOUT past the
 * exchange's deadline (also while bytes keep coming: an agent that dribbles an endless body
 * must not hold the thread), -ECONNRESET when watch_fd's client went away, -ECONNABORTED
 * when the agent reset the connection. */
static ssize_t fill(struct agent_stream *s, int watch_fd, long timeout_ms) {
        ssize_t k;
        int r;

        if (s->pos == s->len)
                s->pos = s->len = 0;
        else if (s->len == IN_SIZE) {
                memmove(s->in, s->in + s->pos, s->len - s->pos);
                s->len -= s->pos;
                s->pos = 0;
        }
        if (s->len == IN_SIZE)
                return -E2BIG;
        /* TLS may hold decrypted bytes that poll() cannot see: it is asked first. */
        for (short want = s->ssl ? 0 : POLLIN;;) {
                if (s->deadline && mono_ms() >= s->deadline)
                        return -ETIMEDOUT;
                if (want) {
                        r = wait_fd(s->fd, want, watch_fd, bounded(s, timeout_ms));
                        if (r < 0)
                                return r;
                }
                if (s->ssl)
                        k = tls_io(s, false, s->in + s->len, IN_SIZE - s->len, &want);
                else
                        k = read(s->fd, s->in + s->len, IN_SIZE - s->len);
                if (k >= 0)
                        break;
                /* ECONNRESET here is the agent's doing (it closed with the request unread):
                 * not to be taken for the client going away, which wait_fd() says so. */
                if (errno == ECONNRESET)
                        return -ECONNABORTED;
                if (errno != EINTR && errno != EAGAIN) /* EAGAIN: woken for nothing */
                        return -errno;
        }
        s->len += (size_t) k;
        return k;
}

/* Takes what the engine needs of the answer's head: status, Content-Type, framing. */
static void take_head(struct agent_stream *s, const struct http_response *resp) {
        const char *type = http_response_header(resp, "Content-Type");

        const char *retry = http_response_header(resp, "Retry-After");

        const char *conn = http_response_header(resp, "Connection");

        s->status = resp->status;
        s->keep = resp->minor_version >= 1 && !(conn && strcasestr(conn, "close"));
        snprintf(s->content_type, sizeof(s->content_type), "%s", type ? type : "");
        /* Only delay-seconds of a sane size: the value is passed on to the client. */
        if (retry && strlen(retry) <= 5 && strspn(retry, "0123456789") == strlen(retry) && *retry)
                s->retry_after = (int) strtol(retry, NULL, 10);
        if (resp->chunked) {
                s->framing = FRAMING_CHUNKED;
                s->content_length = -1;
        } else if (resp->content_length >= 0) {
                s->framing = FRAMING_LENGTH;
                s->content_length = resp->content_length;
                s->remaining = (uint64_t) resp->content_length;
                s->done = s->remaining == 0;
        } else
                s->framing = FRAMING_CLOSE;
}

int agent_stream_finish(struct agent_stream *s, long timeout_ms, struct error *e) {
        int64_t deadline = mono_ms() + timeout_ms;
        struct http_response resp;
        size_t head_len;
        ssize_t k;
        int r;

        /* An agent that refused the request may have stopped reading its body: its answer
         * is read all the same. */
        if (s->chunked_upload && !s->send_error) {
                r = send_all(s, "0\r\n\r\n", 5);
                if (r < 0)
                        s->send_error = -r;
                s->body_whole = r >= 0;
        }
        for (;;) {
                r = http_response_parse_head(&resp, s->in + s->pos, s->len - s->pos, &head_len);
                if (r > 0)
                        break;
                if (r < 0)
                        return error_set(e, EPROTO, s->err_status, s->err_code, "%s sent an unreadable answer (%s)", s->peer,
                                         r == -E2BIG ? "head too large" : "malformed head");
                k = fill(s, s->watch_fd, MAX(deadline - mono_ms(), 1));
                if (k == -ECONNRESET)
                        return error_set(e, ECONNRESET, ERR_BAD_REQUEST, "the client went away before the answer");
                if (k == -ETIMEDOUT)
                        return error_set(e, ETIMEDOUT, 504, "timeout", "%s did not answer within %ld ms", s->peer, timeout_ms);
                /* A kept connection the peer closed as the GET went out: once on a new one. */
                if ((k == 0 || k == -ECONNABORTED || k == -EPIPE) && s->retry_head.len && s->len == 0) {
                        struct buf head = s->retry_head;
                        s->retry_head = (struct buf) {0};
                        r = redial(s, e);
                        r = r < 0 ? r : send_all(s, head.data, head.len);
                        buf_free(&head);
                        if (r < 0)
                                return e->err ? r
                                              : error_set(e, r, s->err_status, s->err_code, "cannot send a request to %s: %s",
                                                          s->peer, strerror(-r));
                        continue;
                }
                if (k <= 0 && s->send_error)
                        return error_set(e, s->send_error, s->err_status, s->err_code, "%s stopped reading the request: %s", s->peer,
                                         strerror(s->send_error == ECONNABORTED ? ECONNRESET : s->send_error));
                if (k <= 0)
                        return error_set(e, k < 0 ? (int) -k : EPIPE, s->err_status, s->err_code,
                                         "%s closed the connection without an answer", s->peer);
        }
        take_head(s, &resp);
        http_response_done(&resp);
        s->pos += head_len;
        return 0;
}

int agent_stream_status(const struct agent_stream *s) {
        return s->status;
}

int agent_stream_retry_after(const struct agent_stream *s) {
        return s->retry_after;
}

const char *agent_stream_content_type(const struct agent_stream *s) {
        return s->content_type;
}

int64_t agent_stream_content_length(const struct agent_stream *s) {
        return s->framing == FRAMING_LENGTH ? s->content_length : -1;
}

/* Makes sure at least one unconsumed byte is buffered; 0 at EOF. */
static ssize_t need(struct agent_stream *s, int watch_fd) {
        if (s->pos < s->len)
                return 1;
        return fill(s, watch_fd, s->read_timeout_ms);
}

/* Chunked: decodes what is buffered into buf (framing skipped by the shared decoder). */
static ssize_t read_chunked(struct agent_stream *s, void *buf, size_t len) {
        size_t used, data_len;
        int r;

        r = http_chunked_decode(&s->dec, s->in + s->pos, s->len - s->pos, len, &used, &data_len);
        if (r < 0)
                return -EPROTO;
        memcpy(buf, s->in + s->pos + used - data_len, data_len);
        s->pos += used;
        s->consumed += used;
        s->done = r == 1;
        return (ssize_t) data_len;
}

ssize_t agent_stream_read(struct agent_stream *s, void *buf, size_t len, int watch_fd) {
        size_t n;
        ssize_t k;

        while (!s->done && len > 0) {
                k = need(s, watch_fd);
                if (k < 0)
                        return k;
                if (k == 0) {
                        if (s->framing == FRAMING_CLOSE) {
                                s->done = true;
                                return 0;
                        }
                        return -EPROTO; /* the agent went away mid-body */
                }
                if (s->framing == FRAMING_CHUNKED) {
                        k = read_chunked(s, buf, len);
                        if (k != 0)
                                return k;
                        continue; /* framing only: read on */
                }
                n = MIN(len, s->len - s->pos);
                if (s->framing == FRAMING_LENGTH)
                        n = (size_t) MIN((uint64_t) n, s->remaining);
                memcpy(buf, s->in + s->pos, n);
                s->pos += n;
                s->consumed += n;
                if (s->framing == FRAMING_LENGTH) {
                        s->remaining -= n;
                        s->done = s->remaining == 0;
                }
                return (ssize_t) n;
        }
        return 0;
}

int agent_stream_read_all(struct agent_stream *s, size_t max, char **ret, size_t *ret_len) {
        _cleanup_buf_ struct buf b;
        uint64_t start = s->consumed;
        char tmp[4096];
        ssize_t k;
        int r;

        buf_init(&b, max);
        while ((k = agent_stream_read(s, tmp, sizeof(tmp), -1)) > 0) {
                r = buf_append(&b, tmp, (size_t) k);
                if (r < 0)
                        return r;
                /* Chunk framing counts too: size lines of 4 KiB around 1-byte chunks. */
                if (s->consumed - start > 2 * (uint64_t) max + 65536)
                        return -EFBIG;
        }
        if (k < 0)
                return (int) k;
        *ret_len = b.len;
        *ret = buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

void agent_stream_set_read_timeout(struct agent_stream *s, long timeout_ms) {
        s->read_timeout_ms = timeout_ms;
}

int agent_stream_detach(struct agent_stream *s, struct buf *ret_pending) {
        int fd;

        if (s->ssl)
                return -EOPNOTSUPP;
        buf_init(ret_pending, s->len - s->pos + 1);
        if (buf_append(ret_pending, s->in + s->pos, s->len - s->pos) < 0) {
                buf_free(ret_pending);
                return -ENOMEM;
        }
        fd = s->fd;
        s->fd = -1;
        s->pos = s->len = 0;
        return fd;
}

/* Whether s's connection can carry another request: see agent_stream_free. */
static bool reusable(const struct agent_stream *s) {
        return s->pool && s->fd >= 0 && s->keep && s->done && s->framing != FRAMING_CLOSE && s->status >= 200 &&
               !s->send_error && s->body_whole && s->pos == s->len;
}

void agent_stream_free(struct agent_stream *s) {
        if (!s)
                return;
        if (reusable(s)) {
                conn_pool_put(s->pool, s->pool_key, s->fd, s->ssl);
                s->fd = -1;
                s->ssl = NULL;
        }
        buf_free(&s->retry_head);
        SSL_free(s->ssl);
        if (s->fd >= 0)
                close(s->fd);
        free(s->in);
        free(s);
}
