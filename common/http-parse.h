/* http-parse.h — HTTP/1.1 request heads and chunked bodies, parsed strictly: pure functions
 * on bytes shared by the agent's server (agent/http.c) and the engine's preview proxy
 * (engine/proxy/), so that both read requests the same way and neither can be smuggled past
 * the other.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

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

