/* http-parse.c — the request-head parser of http.h, and the status tables: pure
 * functions on bytes, kept apart from the socket code so that they can be unit-tested and
 * fuzzed alone.
 *
 * Strict where laxness has bitten HTTP servers before (request smuggling): CRLF line ends
 * only, no obs-fold, no whitespace before a header's colon, conflicting Content-Length
 * values rejected, and any Transfer-Encoding refused rather than half-supported.
 */
#include "http.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (!is_tchar((unsigned char) *s))
                        return false;
        return true;
}

/* Field values: visible ASCII, space, tab, and obs-text (bytes >= 0x80). */
static bool is_field_value(const char *s) {
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
                        return false;
        }
        return true;
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
        if (!target || !version || !is_token(method))
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

static int parse_header_line(struct http_request *req, char *line) {
        char *colon = strchr(line, ':'), *value, *end;

        if (!colon)
                return -EBADMSG;
        *colon = 0;
        if (!is_token(line)) /* also rejects "Name :" and obs-fold continuation lines */
                return -EBADMSG;
        value = colon + 1;
        value += strspn(value, " \t");
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
                *--end = 0;
        if (!is_field_value(value))
                return -EBADMSG;
        if (req->n_headers >= HTTP_MAX_HEADERS)
                return -E2BIG;
        req->headers[req->n_headers++] = (struct http_header){.name = line, .value = value};
        return 0;
}

static int parse_content_length(const char *s, uint64_t *ret) {
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

/* Applies the headers that shape how the request is read and answered. */
static int apply_headers(struct http_request *req) {
        bool have_length = false, close = false, keep_alive = false;
        uint64_t length;
        int r;

        for (size_t i = 0; i < req->n_headers; i++) {
                const char *name = req->headers[i].name, *value = req->headers[i].value;

                if (strcasecmp(name, "Content-Length") == 0) {
                        r = parse_content_length(value, &length);
                        if (r < 0 || (have_length && length != req->content_length))
                                return -EBADMSG;
                        req->content_length = length;
                        have_length = true;
                } else if (strcasecmp(name, "Transfer-Encoding") == 0)
                        return -EOPNOTSUPP;
                else if (strcasecmp(name, "Connection") == 0) {
                        close = close || list_has_token(value, "close");
                        keep_alive = keep_alive || list_has_token(value, "keep-alive");
                } else if (strcasecmp(name, "Expect") == 0 && strcasecmp(value, "100-continue") == 0)
                        req->expect_continue = true;
        }
        req->keep_alive = req->minor_version >= 1 ? !close : keep_alive && !close;
        return 0;
}

int http_request_parse_head(struct http_request *req, const char *data, size_t len, size_t *ret_head_len) {
        struct http_request r = {};
        const char *end;
        size_t head_len;
        char *p, *line;
        int k;

        end = memmem(data, MIN(len, (size_t) HTTP_MAX_HEAD), "\r\n\r\n", 4);
        if (!end)
                return len >= HTTP_MAX_HEAD ? -E2BIG : 0;
        head_len = (size_t) (end - data) + 4;
        if (memchr(data, 0, head_len))
                return -EBADMSG;

        r.head = malloc(head_len + 1);
        if (!r.head)
                return -ENOMEM;
        memcpy(r.head, data, head_len);
        r.head[head_len] = 0;

        p = r.head;
        line = next_line(&p);
        k = parse_request_line(&r, line);
        while (k >= 0 && (line = next_line(&p)) && *line)
                k = parse_header_line(&r, line);
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

const char *http_status_text(int status) {
        static const struct {
                int status;
                const char *text;
        } table[] = {
                {100, "Continue"},
                {200, "OK"},
                {201, "Created"},
                {204, "No Content"},
                {400, "Bad Request"},
                {404, "Not Found"},
                {405, "Method Not Allowed"},
                {408, "Request Timeout"},
                {409, "Conflict"},
                {413, "Content Too Large"},
                {431, "Request Header Fields Too Large"},
                {500, "Internal Server Error"},
                {501, "Not Implemented"},
                {503, "Service Unavailable"},
                {505, "HTTP Version Not Supported"},
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
