/* http-parse.c — see http-parse.h: the request-head parser, the chunked body decoder, and the
 * status tables: pure functions on bytes, kept apart from the socket code so that they can
 * be unit-tested and fuzzed alone.
 *
 * Strict where laxness has bitten HTTP servers before (request smuggling): CRLF line ends
 * only, no obs-fold, no whitespace before a header's colon, conflicting Content-Length
 * values rejected, Transfer-Encoding accepted only as exactly "chunked" and never together
 * with a Content-Length or in HTTP/1.0. The chunked decoder bounds every line it reads
 * (size lines, trailers) and refuses chunk sizes that would overflow.
 */
#include "http-parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"

static bool is_tchar(unsigned char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

bool http_is_token(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (!is_tchar((unsigned char) *s))
                        return false;
        return true;
}

bool http_is_field_value(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) s[i];
                if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
                        return false;
        }
        return true;
}

static bool is_field_value(const char *s) {
        return http_is_field_value(s, strlen(s));
}

/* Cuts the line starting at *p (ended by CRLF) off in place and advances *p past it. */
static char *next_line(char **p) {
        char *line = *p, *crlf = strstr(line, "\r\n");

        if (!crlf)
                return NULL;
        crlf[0] = 0;
        *p = crlf + 2;
        return line;
}

static int parse_request_line(struct http_request *req, char *line) {
        char *method, *target, *version, *q;

        method = strsep(&line, " ");
        target = strsep(&line, " ");
        version = line;
        if (!target || !version || !http_is_token(method))
                return -EBADMSG;
        if (target[0] != '/')
                return -EBADMSG; /* origin-form only */
        for (const char *t = target; *t; t++)
                if ((unsigned char) *t <= 0x20 || (unsigned char) *t >= 0x7f)
                        return -EBADMSG;
        if (strncmp(version, "HTTP/", 5) != 0)
                return -EBADMSG;
        if (version[5] != '1' || version[6] != '.' || version[7] < '0' || version[7] > '9' || version[8])
                return -EPROTONOSUPPORT;

        q = strchr(target, '?');
        if (q)
                *q++ = 0;
        req->method = method;
        req->path = target;
        req->query = q;
        req->minor_version = version[7] - '0';
        return 0;
}

static int parse_header_line(struct http_header *headers, size_t *n_headers, char *line) {
        char *colon = strchr(line, ':'), *value, *end;

        if (!colon)
                return -EBADMSG;
        *colon = 0;
        if (!http_is_token(line)) /* also rejects "Name :" and obs-fold continuation lines */
                return -EBADMSG;
        value = colon + 1;
        value += strspn(value, " \t");
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
                *--end = 0;
        if (!is_field_value(value))
                return -EBADMSG;
        if (*n_headers >= HTTP_MAX_HEADERS)
                return -E2BIG;
        headers[(*n_headers)++] = (struct http_header){.name = line, .value = value};
        return 0;
}

int http_parse_content_length(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!*s)
                return -EBADMSG;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

/* Whether the comma-separated list s contains token (case-insensitive). */
static bool list_has_token(const char *s, const char *token) {
        size_t n = strlen(token);

        while (*s) {
                s += strspn(s, " \t,");
                size_t len = strcspn(s, ",");
                size_t trimmed = len;
                while (trimmed > 0 && (s[trimmed - 1] == ' ' || s[trimmed - 1] == '\t'))
                        trimmed--;
                if (trimmed == n && strncasecmp(s, token, n) == 0)
                        return true;
                s += len;
        }
        return false;
}

/* Transfer-Encoding: only a single "chunked" is understood. Another coding is 501; a
 * repeated "chunked" (chunked twice) is malformed. */
static int apply_transfer_encoding(struct http_request *req, const char *value) {
        if (strcasecmp(value, "chunked") != 0)
                return -EOPNOTSUPP;
        if (req->chunked)
                return -EBADMSG;
        req->chunked = true;
        return 0;
}

/* Applies the headers that shape how the request is read and answered. */
static int apply_headers(struct http_request *req) {
        bool have_length = false, have_host = false, close = false, keep_alive = false;
        uint64_t length;
        int r;

        for (size_t i = 0; i < req->n_headers; i++) {
                const char *name = req->headers[i].name, *value = req->headers[i].value;

                if (strcasecmp(name, "Host") == 0) {
                        if (have_host)
                                return -EBADMSG; /* RFC 9112 3.2: two Hosts are a 400 */
                        have_host = true;
                } else if (strcasecmp(name, "Content-Length") == 0) {
                        r = http_parse_content_length(value, &length);
                        if (r < 0 || length > INT64_MAX || (have_length && length != req->content_length))
                                return -EBADMSG;
                        req->content_length = length;
                        have_length = true;
                } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
                        r = apply_transfer_encoding(req, value);
                        if (r < 0)
                                return r;
                } else if (strcasecmp(name, "Connection") == 0) {
                        close = close || list_has_token(value, "close");
                        keep_alive = keep_alive || list_has_token(value, "keep-alive");
                } else if (strcasecmp(name, "Expect") == 0 && strcasecmp(value, "100-continue") == 0)
                        req->expect_continue = true;
        }
        /* Both framings at once is the classic smuggling vector; HTTP/1.0 has no chunked. */
        if (req->chunked && (have_length || req->minor_version == 0))
                return -EBADMSG;
        req->keep_alive = req->minor_version >= 1 ? !close : keep_alive && !close;
        return 0;
}

/* Finds the end of the head at the start of data and copies the head, NUL-terminated, to
 * *ret_head (malloc'd). 0: not complete yet; 1: copied; -E2BIG over HTTP_MAX_HEAD; -EBADMSG
 * a NUL byte in it. */
static int head_copy(const char *data, size_t len, char **ret_head, size_t *ret_len) {
        const char *end = memmem(data, MIN(len, (size_t) HTTP_MAX_HEAD), "\r\n\r\n", 4);
        size_t n;

        if (!end)
                return len >= HTTP_MAX_HEAD ? -E2BIG : 0;
        n = (size_t) (end - data) + 4;
        if (memchr(data, 0, n))
                return -EBADMSG;
        *ret_head = malloc(n + 1);
        if (!*ret_head)
                return -ENOMEM;
        memcpy(*ret_head, data, n);
        (*ret_head)[n] = 0;
        *ret_len = n;
        return 1;
}

int http_request_parse_head(struct http_request *req, const char *data, size_t len, size_t *ret_head_len) {
        struct http_request r = {};
        size_t head_len;
        char *p, *line;
        int k;

        /* Every output is set on every path (see the chunked decoder). */
        *req = (struct http_request){};
        *ret_head_len = 0;
        k = head_copy(data, len, &r.head, &head_len);
        if (k <= 0)
                return k;

        p = r.head;
        line = next_line(&p);
        k = parse_request_line(&r, line);
        while (k >= 0 && (line = next_line(&p)) && *line)
                k = parse_header_line(r.headers, &r.n_headers, line);
        if (k >= 0)
                k = apply_headers(&r);
        if (k < 0) {
                free(r.head);
                return k;
        }
        *req = r;
        *ret_head_len = head_len;
        return 1;
}

void http_request_done(struct http_request *req) {
        free(req->head);
        buf_free(&req->body);
        *req = (struct http_request){};
}

const char *http_request_header(const struct http_request *req, const char *name) {
        for (size_t i = 0; i < req->n_headers; i++)
                if (strcasecmp(req->headers[i].name, name) == 0)
                        return req->headers[i].value;
        return NULL;
}

/* ---- response heads ---- */

/* "HTTP/1.x SSS[ reason]": the reason phrase is text without control bytes but HTAB. */
static int parse_status_line(struct http_response *resp, const char *line) {
        if (strncmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' || line[8] != ' ')
                return -EBADMSG;
        for (int i = 9; i < 12; i++)
                if (line[i] < '0' || line[i] > '9')
                        return -EBADMSG;
        if (line[12] != 0 && line[12] != ' ')
                return -EBADMSG;
        if (line[12] && !is_field_value(line + 13))
                return -EBADMSG;
        resp->minor_version = line[7] - '0';
        resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
        return resp->status >= 100 ? 0 : -EBADMSG;
}

/* The same framing rules as for requests: one Content-Length value, "chunked" alone and
 * never beside a Content-Length; any other Transfer-Encoding cannot be read. */
static int apply_response_headers(struct http_response *resp) {
        bool have_length = false;
        uint64_t length;

        for (size_t i = 0; i < resp->n_headers; i++) {
                const char *name = resp->headers[i].name, *value = resp->headers[i].value;

                if (strcasecmp(name, "Content-Length") == 0) {
                        if (http_parse_content_length(value, &length) < 0 || length > INT64_MAX ||
                            (have_length && (int64_t) length != resp->content_length))
                                return -EBADMSG;
                        resp->content_length = (int64_t) length;
                        have_length = true;
                } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
                        if (strcasecmp(value, "chunked") != 0 || resp->chunked)
                                return -EBADMSG;
                        resp->chunked = true;
                }
        }
        return resp->chunked && have_length ? -EBADMSG : 0;
}

int http_response_parse_head(struct http_response *resp, const char *data, size_t len, size_t *ret_head_len) {
        struct http_response r = {.content_length = -1};
        size_t head_len;
        char *p, *line;
        int k;

        *resp = (struct http_response){.content_length = -1};
        *ret_head_len = 0;
        k = head_copy(data, len, &r.head, &head_len);
        if (k <= 0)
                return k;
        p = r.head;
        line = next_line(&p);
        k = parse_status_line(&r, line);
        while (k >= 0 && (line = next_line(&p)) && *line)
                k = parse_header_line(r.headers, &r.n_headers, line);
        if (k >= 0)
                k = apply_response_headers(&r);
        if (k < 0) {
                free(r.head);
                return k;
        }
        *resp = r;
        *ret_head_len = head_len;
        return 1;
}

void http_response_done(struct http_response *resp) {
        free(resp->head);
        *resp = (struct http_response){.content_length = -1};
}

const char *http_response_header(const struct http_response *resp, const char *name) {
        for (size_t i = 0; i < resp->n_headers; i++)
                if (strcasecmp(resp->headers[i].name, name) == 0)
                        return resp->headers[i].value;
        return NULL;
}

/* ---- chunked bodies ---- */

enum {
        CH_SIZE,         /* hex digits of a chunk size */
        CH_SIZE_WS,      /* whitespace after the size: only a ';' extension may follow */
        CH_EXT,          /* a chunk extension, ignored up to the CR */
        CH_SIZE_LF,      /* the LF ending the size line */
        CH_DATA,         /* chunk data (d->size bytes left) */
        CH_DATA_CR,      /* the CRLF after chunk data */
        CH_DATA_LF,
        CH_TRAILER,      /* the start of a trailer line, or of the final CRLF */
        CH_TRAILER_LINE, /* a trailer field, skipped up to its CR */
        CH_TRAILER_LF,
        CH_END_LF,       /* the LF of the final CRLF */
        CH_DONE,
        CH_ERROR,        /* malformed: every later call fails too */
};

static bool is_hex(unsigned char ch, unsigned *ret) {
        if (ch >= '0' && ch <= '9')
                *ret = ch - '0';
        else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
                *ret = (ch | 0x20) - 'a' + 10;
        else
                return false;
        return true;
}

/* Text allowed inside extensions and trailer lines: no control bytes but HTAB. */
static bool is_line_byte(unsigned char ch) {
        return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* Consumes one framing byte (any state but CH_DATA and CH_DONE). */
static int chunked_step(struct http_chunked *d, unsigned char ch) {
        unsigned digit;

        if (d->state <= CH_SIZE_LF && ++d->line_len > HTTP_CHUNK_LINE_MAX)
                return -EBADMSG;
        if (d->state >= CH_TRAILER && d->state <= CH_END_LF && ++d->trailer_len > HTTP_MAX_TRAILERS)
                return -EBADMSG;

        switch (d->state) {
        case CH_SIZE:
                if (is_hex(ch, &digit)) {
                        if (d->size > (UINT64_MAX >> 4))
                                return -EBADMSG; /* would overflow */
                        d->size = d->size << 4 | digit;
                        d->digits = true;
                        return 0;
                }
                if (!d->digits)
                        return -EBADMSG;
                if (ch == ' ' || ch == '\t')
                        d->state = CH_SIZE_WS;
                else if (ch == ';')
                        d->state = CH_EXT;
                else if (ch == '\r')
                        d->state = CH_SIZE_LF;
                else
                        return -EBADMSG;
                return 0;
        case CH_SIZE_WS:
                if (ch == ';')
                        d->state = CH_EXT;
                else if (ch != ' ' && ch != '\t')
                        return -EBADMSG;
                return 0;
        case CH_EXT:
                if (ch == '\r')
                        d->state = CH_SIZE_LF;
                else if (!is_line_byte(ch))
                        return -EBADMSG;
                return 0;
        case CH_SIZE_LF:
                if (ch != '\n')
                        return -EBADMSG;
                d->state = d->size > 0 ? CH_DATA : CH_TRAILER;
                d->line_len = 0;
                d->digits = false;
                return 0;
        case CH_DATA_CR:
                if (ch != '\r')
                        return -EBADMSG;
                d->state = CH_DATA_LF;
                return 0;
        case CH_DATA_LF:
                if (ch != '\n')
                        return -EBADMSG;
                d->state = CH_SIZE;
                return 0;
        case CH_TRAILER:
                /* A trailer field is `token ":" value`, as a header: a line that is not one
                 * could be read by a lax server as a request line. */
                d->state = ch == '\r' ? CH_END_LF : CH_TRAILER_LINE;
                d->trailer_value = false;
                return ch == '\r' || is_tchar(ch) ? 0 : -EBADMSG;
        case CH_TRAILER_LINE:
                if (!d->trailer_value && ch == ':')
                        d->trailer_value = true;
                else if (!d->trailer_value && !is_tchar(ch))
                        return -EBADMSG; /* also a CR before any colon */
                else if (ch == '\r')
                        d->state = CH_TRAILER_LF;
                else if (!is_line_byte(ch))
                        return -EBADMSG;
                return 0;
        case CH_TRAILER_LF:
                if (ch != '\n')
                        return -EBADMSG;
                d->state = CH_TRAILER;
                return 0;
        case CH_END_LF:
                if (ch != '\n')
                        return -EBADMSG;
                d->state = CH_DONE;
                return 0;
        default:
                return -EINVAL;
        }
}

int http_chunked_decode(struct http_chunked *d, const char *in, size_t len, size_t max_data, size_t *ret_used,
                        size_t *ret_data_len) {
        size_t i = 0, n = 0;
        int r;

        /* Every output is set on every path: a caller that reads them after an error
         * must find "nothing consumed", never a stale or uninitialised length. */
        *ret_used = 0;
        *ret_data_len = 0;
        if (d->state == CH_ERROR)
                return -EBADMSG;
        while (i < len && d->state != CH_DONE) {
                if (d->state == CH_DATA) {
                        n = (size_t) MIN((uint64_t) MIN(len - i, max_data), d->size);
                        i += n;
                        d->size -= n;
                        if (d->size == 0)
                                d->state = CH_DATA_CR;
                        break; /* hand the data out before decoding further */
                }
                r = chunked_step(d, (unsigned char) in[i]);
                if (r < 0) {
                        d->state = CH_ERROR; /* stays failed: a later call cannot resume mid-line */
                        return r;
                }
                i++;
        }
        *ret_used = i;
        *ret_data_len = n;
        return d->state == CH_DONE;
}

uint64_t http_chunked_data_left(const struct http_chunked *d) {
        return d->state == CH_DATA ? d->size : 0;
}

const char *http_status_text(int status) {
        static const struct {
                int status;
                const char *text;
        } table[] = {
                {100, "Continue"},
                {101, "Switching Protocols"},
                {200, "OK"},
                {201, "Created"},
                {204, "No Content"},
                {400, "Bad Request"},
                {403, "Forbidden"},
                {404, "Not Found"},
                {405, "Method Not Allowed"},
                {408, "Request Timeout"},
                {409, "Conflict"},
                {413, "Content Too Large"},
                {421, "Misdirected Request"},
                {414, "URI Too Long"},
                {431, "Request Header Fields Too Large"},
                {500, "Internal Server Error"},
                {501, "Not Implemented"},
                {502, "Bad Gateway"},
                {503, "Service Unavailable"},
                {504, "Gateway Timeout"},
                {505, "HTTP Version Not Supported"},
                {507, "Insufficient Storage"},
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].status == status)
                        return table[i].text;
        return "Unknown";
}

int http_status_from_errno(int err) {
        switch (err) {
        case -EBADMSG:
                return 400;
        case -E2BIG:
                return 431;
        case -EFBIG:
                return 413;
        case -EOPNOTSUPP:
                return 501;
        case -EPROTONOSUPPORT:
                return 505;
        default:
                return 500;
        }
}
