/* query.c — see query.h. */
#include "query.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

static int hex_value(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* Decodes s[0..len) into a new string. */
static int decode(const char *s, size_t len, char **ret) {
        _cleanup_free_ char *out = malloc(len + 1);
        size_t k = 0;
        int hi, lo;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '+') {
                        out[k++] = ' ';
                        continue;
                }
                if (s[i] != '%') {
                        out[k++] = s[i];
                        continue;
                }
                if (len - i < 3 || (hi = hex_value(s[i + 1])) < 0 || (lo = hex_value(s[i + 2])) < 0)
                        return -EINVAL;
                if (hi == 0 && lo == 0)
                        return -EBADMSG;
                out[k++] = (char) (hi << 4 | lo);
                i += 2;
        }
        out[k] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

void query_done(struct query *q) {
        for (size_t i = 0; i < q->n; i++) {
                free(q->params[i].key);
                free(q->params[i].value);
        }
        q->n = 0;
}

int query_parse(const char *s, struct query *ret) {
        struct query q = {};
        size_t len, key_len;
        const char *eq;
        int r;

        while (s && *s) {
                len = strcspn(s, "&");
                if (len > 0) {
                        if (q.n >= QUERY_MAX_PARAMS) {
                                query_done(&q);
                                return -E2BIG;
                        }
                        eq = memchr(s, '=', len);
                        key_len = eq ? (size_t) (eq - s) : len;
                        r = decode(s, key_len, &q.params[q.n].key);
                        if (r >= 0) {
                                r = eq ? decode(eq + 1, len - key_len - 1, &q.params[q.n].value)
                                       : decode("", 0, &q.params[q.n].value);
                                if (r < 0)
                                        free(q.params[q.n].key);
                        }
                        if (r < 0) {
                                query_done(&q);
                                return r;
                        }
                        q.n++;
                }
                s += len;
                if (*s == '&')
                        s++;
        }
        *ret = q;
        return 0;
}

const char *query_strerror(int err) {
        switch (err) {
        case -EINVAL:
                return "the query string has a malformed percent-escape (want %XX, two hex digits)";
        case -EBADMSG:
                return "the query string contains a NUL byte (%00), which no parameter may hold";
        case -E2BIG:
                return "the query string has too many parameters";
        case -ENOMEM:
                return "out of memory while parsing the query string";
        default:
                return "the query string is malformed";
        }
}

const char *query_get(const struct query *q, const char *key) {
        for (size_t i = 0; i < q->n; i++)
                if (streq(q->params[i].key, key))
                        return q->params[i].value;
        return NULL;
}

int query_check(const struct query *q, const char *const *allowed, const char **ret_key) {
        for (size_t i = 0; i < q->n; i++) {
                const char *key = q->params[i].key;
                bool known = false;

                for (const char *const *a = allowed; *a && !known; a++)
                        known = streq(*a, key);
                if (!known) {
                        *ret_key = key;
                        return -ENOENT;
                }
                for (size_t j = 0; j < i; j++)
                        if (streq(q->params[j].key, key)) {
                                *ret_key = key;
                                return -ENOTUNIQ;
                        }
        }
        return 0;
}

int query_parse_bool(const char *s, bool *ret) {
        if (streq(s, "true") || streq(s, "1"))
                *ret = true;
        else if (streq(s, "false") || streq(s, "0"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

int query_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        if (v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}
