/* http-parse.h — HTTP/1.1 request and answer heads and chunked bodies, parsed strictly:
 * pure functions on bytes shared by the agent's server (agent/http.c), the engine's preview
 * proxy (engine/proxy/) and the engine's client of the agents (sandbox/agent_stream.c), so
 * that every byte crossing a trust boundary is read by one parser, and none can be smuggled
 * past another.
 *
 * Every function sets every output on every return path; lengths it returns are bounded by
 * the input it was given (the fuzzers in tests/fuzz/ check both).
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
 * HTTP/1.0, two Host headers, a Content-Length over 2^63 - 1), -E2BIG head over HTTP_MAX_HEAD or too many headers (431), -EPROTONOSUPPORT
 * not HTTP/1.x (505), -EOPNOTSUPP a Transfer-Encoding other than "chunked" (501). On
 * every return but 1, *req is zeroed (nothing to free) and *ret_head_len is 0. */
int http_request_parse_head(struct http_request *req, const char *data, size_t len, size_t *ret_head_len);

/* An answer's head, from a peer the engine does not trust (a sandbox's agent). */
struct http_response {
        char *head; /* owned copy of the head; the header strings point into it */
        int status; /* 100-999 */
        int minor_version;
        struct http_header headers[HTTP_MAX_HEADERS];
        size_t n_headers;
        int64_t content_length; /* -1: none given */
        bool chunked;           /* Transfer-Encoding: chunked */
};

/* Parses the answer head at the start of data with the request parser's rules (CRLF lines,
 * token names, no control bytes in values, one Content-Length value, "chunked" alone and
 * never with a Content-Length). Returns 1 with *resp and *ret_head_len set (release with
 * http_response_done), 0 when the head is not complete yet, -EBADMSG malformed (also any
 * other Transfer-Encoding), -E2BIG over HTTP_MAX_HEAD or HTTP_MAX_HEADERS fields, -ENOMEM.
 * On every return but 1, *resp holds nothing (content_length -1) and *ret_head_len is 0. */
int http_response_parse_head(struct http_response *resp, const char *data, size_t len, size_t *ret_head_len);

/* Frees what the parser put in resp; leaves it empty. */
void http_response_done(struct http_response *resp);

/* The value of the first header of resp called name (case-insensitive), or NULL. */
const char *http_response_header(const struct http_response *resp, const char *name);

/* The state of a chunked-body decoder; start from a zeroed struct. */
struct http_chunked {
        int state;
        uint64_t size;      /* the chunk size being parsed, then the data bytes left of it */
        size_t line_len;    /* bytes of the current size line so far */
        size_t trailer_len; /* bytes of trailers so far */
        bool digits;        /* the size line has a digit */
        bool trailer_value; /* past the colon of the current trailer field */
};

/* Decodes the next piece of a chunked body from in (len bytes): consumes framing (size
 * lines, extensions, CRLFs, trailers, all skipped) up to and including at most max_data
 * bytes of chunk data, and stops after that data. *ret_used is the number of bytes of in
 * consumed; the data, if any, are the last *ret_data_len of them. Returns 1 once the end
 * of the body (the last chunk and the blank line after the trailers) has been consumed,
 * 0 when more input is needed or data was handed out, -EBADMSG on malformed framing, a
 * size line over HTTP_CHUNK_LINE_MAX, trailers over HTTP_MAX_TRAILERS or a chunk size
 * over 2^64 - 1. Always *ret_used <= len and *ret_data_len <= MIN(*ret_used, max_data);
 * on error both are 0 (nothing of this call may be passed on), and the decoder stays
 * failed: every later call returns -EBADMSG. */
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

/* Whether s is a non-empty token (RFC 9110 5.6.2): what a method or a header name must be. */
bool http_is_token(const char *s);

/* Whether the n bytes at s may be a field value: visible ASCII, space, HTAB and obs-text
 * (bytes >= 0x80); no other control byte (a CR or a NUL inside a value is how one parser
 * is made to see a header another does not). */
bool http_is_field_value(const char *s, size_t n);

/* Parses a Content-Length value: plain decimal digits, at least one, no sign or whitespace,
 * no value near 2^64 that could overflow. Returns 0 with *ret set, or -EBADMSG (then *ret
 * is untouched). */
int http_parse_content_length(const char *s, uint64_t *ret);

