/* http.h — the agent's HTTP/1.1 server: request parser, response writer, connections.
 *
 * The engine (sandbox/agent_stream.c) is the only client, over a unix socket in production, so
 * this is a small, strict server: origin-form targets, keep-alive, "Expect: 100-continue",
 * request bodies framed by Content-Length or "Transfer-Encoding: chunked", responses with
 * a Content-Length (whole, or streamed from a file) or chunked for event streams. Each
 * connection is served by its own thread; a handler may block for as long as its work runs.
 * When no thread can be started (the sandbox's pids limit), a few reserve threads started
 * with the server serve such connections, one request each (http_conn_reserved()).
 *
 * Request bodies are buffered whole (at most HTTP_MAX_BODY, else 413) into req->body,
 * except for the routes the server's streams_body predicate picks: their handler reads
 * the body itself with http_body_read(), of any size, in constant memory.
 */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "http-parse.h"
#include "macro.h"

struct http_conn;

/* The connection's socket, e.g. to notice in a poll loop that the client went away
 * (see http_conn_hangup_events()). Do not read from or write to it directly. */
int http_conn_fd(const struct http_conn *c);

/* The poll events that show, on http_conn_fd(), that the client of a streamed response went
 * away; http_conn_gone() then tells from the revents. Not POLLRDHUP alone: gVisor reports
 * none on the host socket its agents are reached through, only readability at the end. */
short http_conn_hangup_events(const struct http_conn *c);

/* Whether revents (of a poll for http_conn_hangup_events()) mean the client went away. A
 * client that sends bytes during a streamed response (it should not) is not taken for gone;
 * from then on only POLLRDHUP and POLLHUP are watched, so that its bytes cause no busy loop. */
bool http_conn_gone(struct http_conn *c, short revents);

/* Whether c is served by a reserve thread (no thread could be started for it): its handler
 * should not hold it long (no stream), so that the next such connection is served soon. */
bool http_conn_reserved(const struct http_conn *c);

/* Reads the next bytes of the request body, for a route that streams its body (see
 * struct http_server): at most len bytes into buf. Returns the number read, 0 once the
 * body has been read to its end (at once for a request without a body), or -errno:
 * -EBADMSG malformed chunked framing, -ECONNRESET the client closed the connection before
 * the end, -ETIMEDOUT it sent nothing for the connection's I/O timeout, -EINVAL the body is
 * buffered in req->body instead. An error sticks: later calls return it again. Sends
 * "100 Continue" before the first read if the client waits for it. Whatever the handler
 * leaves unread is discarded by the server afterwards (or the connection closed). */
ssize_t http_body_read(struct http_conn *c, void *buf, size_t len);

/* Answers "101 Switching Protocols" to protocol and hands the connection over: the handler
 * then owns the byte stream both ways on http_conn_fd() (bytes the client sent after the
 * head, if any, are first moved to *ret_pending, which the caller frees), and the server
 * closes the connection when the handler returns. */
int http_respond_upgrade(struct http_conn *c, const char *protocol, struct buf *ret_pending);

/* Sends a complete response with a Content-Length. One response per request. Returns 0
 * or -errno (the client went away: the connection is then closed). */
int http_respond(struct http_conn *c, int status, const char *content_type, const void *body, size_t len);

/* Starts a response of exactly len body bytes (Content-Length), which follow in
 * http_write() and http_sendfile() calls. If the handler returns having sent fewer, the
 * connection is closed (the client sees a short body, not a wrong one). */
int http_respond_begin(struct http_conn *c, int status, const char *content_type, uint64_t len);

/* Sends len bytes of the body started by http_respond_begin(). -EMSGSIZE (nothing sent)
 * if that would go beyond its Content-Length, -EINVAL if no such response is open. */
int http_write(struct http_conn *c, const void *data, size_t len);

/* Sends len bytes of the file fd, from its current offset, as body of the response
 * started by http_respond_begin() (sendfile: no copy through user space). -EMSGSIZE as
 * http_write; -ENODATA if the file ends before len bytes (it shrank); -errno if reading
 * or sending fails. */
int http_sendfile(struct http_conn *c, int fd, uint64_t len);

/* Sends body serialized as JSON (body is borrowed). */
int http_respond_json(struct http_conn *c, int status, const json_t *body);

/* Sends {"error":{"code":code,"message":<printf-formatted>}} (a 503 with "Retry-After"). */
int http_respond_error(struct http_conn *c, int status, const char *code, const char *fmt, ...) _printf_(4, 5);

/* Starts a chunked response; follow with http_chunked_write() calls and one
 * http_chunked_end(). */
int http_chunked_begin(struct http_conn *c, int status, const char *content_type);

/* Sends one chunk (nothing for len 0: an empty chunk would end the body). */
int http_chunked_write(struct http_conn *c, const void *data, size_t len);

/* Ends a chunked response. */
int http_chunked_end(struct http_conn *c);

/* Called once per request. It must send exactly one response; if it returns a negative
 * errno without having responded, the server answers 500 with that error. */
typedef int (*http_handler_t)(struct http_conn *c, const struct http_request *req, void *userdata);

/* Whether the route of req reads its request body itself with http_body_read(). */
typedef bool (*http_streams_body_t)(const struct http_request *req);

struct http_server {
        int listen_fd;                /* a listening stream socket, owned by the caller */
        http_handler_t handler;
        void *userdata;
        http_streams_body_t streams_body; /* NULL: every body is buffered */
        unsigned max_connections;     /* beyond it new connections get 503 */
        atomic_uint n_connections;    /* internal */
        struct http_reserve *reserve; /* internal */
        struct http_live *live;       /* internal: the connections' sockets */
};

/* Serves the connection fd (a connected stream socket, which it takes and closes) on the
 * calling thread until it ends, with s's handler; s->listen_fd and the connection count are
 * not used. For the fuzzer (tests/fuzz/), which drives the server through a socketpair.
 * Returns 0, or -ENOMEM (fd closed). */
int http_serve_connection(struct http_server *s, int fd);

/* Accepts connections on s->listen_fd and serves each on a new thread until stop_fd (a
 * signalfd, say) becomes readable; returns 0 then, or -errno if accepting fails for
 * good. Connections still being served keep running: s must stay alive until the
 * process exits. */
int http_server_run(struct http_server *s, int stop_fd);

/* Shuts down every connection s serves (their threads see the end and close them) and
 * waits up to timeout_ms until all are closed. For a checkpoint of the sandbox, which
 * cannot save a socket connected to the host (main.c). Returns 0, or -ETIMEDOUT with
 * connections still open. Set s->listen_fd to -1 first (closing it): with no listener
 * http_server_run() accepts nothing and only waits for its stop_fd. */
int http_server_close_connections(struct http_server *s, long timeout_ms);
