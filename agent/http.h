/* http.h — the agent's HTTP/1.1 server: request parser, response writer, connections.
 *
 * The engine (through libcurl) is the only client, over a unix socket in production, so
 * this is a small, strict server: origin-form targets, keep-alive, "Expect: 100-continue",
 * request bodies framed by Content-Length or "Transfer-Encoding: chunked", responses with
 * a Content-Length (whole, or streamed from a file) or chunked for event streams. Each
 * connection is served by its own thread; a handler may block for as long as its work runs.
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
#include "macro.h"

#define HTTP_MAX_HEAD (16 * 1024)
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_BODY (1024 * 1024)
#define HTTP_CHUNK_LINE_MAX 4096        /* a chunk-size line, extensions included */
#define HTTP_MAX_TRAILERS (16 * 1024)   /* all trailer lines of a chunked body together */

struct http_header {
        const char *name;
        const char *value;
};

struct http_request {
        char *head; /* owned copy of the head; the strings below point into it */
        const char *method;
        const char *path;  /* the target up to '?' */
        const char *query; /* after '?', or NULL */
        int minor_version; /* HTTP/1.minor_version */
        struct http_header headers[HTTP_MAX_HEADERS];
        size_t n_headers;
        uint64_t content_length;
        bool chunked; /* Transfer-Encoding: chunked (then content_length is 0) */
        bool keep_alive;
        bool expect_continue;
        struct buf body; /* the whole body, unless the route streams it */
};

/* Parses the request head (request line and headers) at the start of data. Returns 0
 * when the head is not complete yet, 1 when it parsed, with its length in
 * *ret_head_len and req filled in (release with http_request_done). Errors: -EBADMSG
 * malformed (400; also a Transfer-Encoding together with a Content-Length, or in
 * HTTP/1.0), -E2BIG head over HTTP_MAX_HEAD or too many headers (431), -EPROTONOSUPPORT
 * not HTTP/1.x (505), -EOPNOTSUPP a Transfer-Encoding other than "chunked" (501). On
 * error req holds nothing that needs freeing. */
int http_request_parse_head(struct http_request *req, const char *data, size_t len, size_t *ret_head_len);

/* The state of a chunked-body decoder; start from a zeroed struct. */
struct http_chunked {
        int state;
        uint64_t size;      /* the chunk size being parsed, then the data bytes left of it */
        size_t line_len;    /* bytes of the current size line so far */
        size_t trailer_len; /* bytes of trailers so far */
        bool digits;        /* the size line has a digit */
};

/* Decodes the next piece of a chunked body from in (len bytes): consumes framing (size
 * lines, extensions, CRLFs, trailers, all skipped) up to and including at most max_data
 * bytes of chunk data, and stops after that data. *ret_used is the number of bytes of in
 * consumed; the data, if any, are the last *ret_data_len of them. Returns 1 once the end
 * of the body (the last chunk and the blank line after the trailers) has been consumed,
 * 0 when more input is needed or data was handed out, -EBADMSG on malformed framing, a
 * size line over HTTP_CHUNK_LINE_MAX, trailers over HTTP_MAX_TRAILERS or a chunk size
 * over 2^64 - 1. */
int http_chunked_decode(struct http_chunked *d, const char *in, size_t len, size_t max_data, size_t *ret_used,
                        size_t *ret_data_len);

/* The data bytes left of the current chunk (0 unless the decoder is inside chunk data). */
uint64_t http_chunked_data_left(const struct http_chunked *d);

/* Frees what the parser and the server put in req; leaves it zeroed. */
void http_request_done(struct http_request *req);

/* The value of the first header called name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);

/* The status line's reason phrase for status ("Unknown" if not in the table). */
const char *http_status_text(int status);

/* The HTTP status a negative errno from http_request_parse_head or body reading maps to. */
int http_status_from_errno(int err);

struct http_conn;

/* The connection's socket, e.g. to notice in a poll loop that the client went away
 * (POLLRDHUP). Do not read from or write to it directly. */
int http_conn_fd(const struct http_conn *c);

/* Reads the next bytes of the request body, for a route that streams its body (see
 * struct http_server): at most len bytes into buf. Returns the number read, 0 once the
 * body has been read to its end (at once for a request without a body), or -errno:
 * -EBADMSG malformed chunked framing, -ECONNRESET the client closed the connection before
 * the end, -ETIMEDOUT it sent nothing for the connection's I/O timeout, -EINVAL the body is
 * buffered in req->body instead. An error sticks: later calls return it again. Sends
 * "100 Continue" before the first read if the client waits for it. Whatever the handler
 * leaves unread is discarded by the server afterwards (or the connection closed). */
ssize_t http_body_read(struct http_conn *c, void *buf, size_t len);

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

/* Sends {"error":{"code":code,"message":<printf-formatted>}}. */
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
};

/* Accepts connections on s->listen_fd and serves each on a new thread until stop_fd (a
 * signalfd, say) becomes readable; returns 0 then, or -errno if accepting fails for
 * good. Connections still being served keep running: s must stay alive until the
 * process exits. */
int http_server_run(struct http_server *s, int stop_fd);
