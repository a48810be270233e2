/* http.h — the agent's HTTP/1.1 server: request parser, response writer, connections.
 *
 * The engine (through libcurl) is the only client, over a unix socket in production, so
 * this is a small, strict server: origin-form targets, Content-Length bodies of at most
 * HTTP_MAX_BODY, keep-alive, "Expect: 100-continue", and chunked responses for
 * streaming. Each connection is served by its own thread; a handler may block for as
 * long as its command runs.
 */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "macro.h"

#define HTTP_MAX_HEAD (16 * 1024)
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_BODY (1024 * 1024)

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
        bool keep_alive;
        bool expect_continue;
        struct buf body;
};

/* Parses the request head (request line and headers) at the start of data. Returns 0
 * when the head is not complete yet, 1 when it parsed, with its length in
 * *ret_head_len and req filled in (release with http_request_done). Errors: -EBADMSG
 * malformed (400), -E2BIG head over HTTP_MAX_HEAD or too many headers (431),
 * -EPROTONOSUPPORT not HTTP/1.x (505), -EOPNOTSUPP a Transfer-Encoding (501). On error
 * req holds nothing that needs freeing. */
int http_request_parse_head(struct http_request *req, const char *data, size_t len, size_t *ret_head_len);

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

/* Sends a complete response with a Content-Length. One response per request. Returns 0
 * or -errno (the client went away: the connection is then closed). */
int http_respond(struct http_conn *c, int status, const char *content_type, const void *body, size_t len);

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

struct http_server {
        int listen_fd;                /* a listening stream socket, owned by the caller */
        http_handler_t handler;
        void *userdata;
        unsigned max_connections;     /* beyond it new connections get 503 */
        atomic_uint n_connections;    /* internal */
};

/* Accepts connections on s->listen_fd and serves each on a new thread until stop_fd (a
 * signalfd, say) becomes readable; returns 0 then, or -errno if accepting fails for
 * good. Connections still being served keep running: s must stay alive until the
 * process exits. */
int http_server_run(struct http_server *s, int stop_fd);
