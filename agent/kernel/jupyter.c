/* jupyter.c — see jupyter.h. The Jupyter wire format (messaging protocol 5.3) as pure
 * functions over frames and JSON: signing with libsodium's HMAC-SHA256, ids, dates, parsing
 * with signature checks, and the mapping of IOPub output to run_code events. The sockets are
 * python.c's business, which keeps this file compilable into the unit tests as is.
 */
#include "jupyter.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "macro.h"
#include "../utf8.h" /* spelled relative: the unit tests compile this file without -Iagent */

static void hex_encode(const unsigned char *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 0xf];
        }
        out[2 * n] = '\0';
}

int jupyter_uuid4(char ret[JUPYTER_ID_LEN + 1]) {
        unsigned char b[16];
        char hex[33];
        ssize_t n;

        do
                n = getrandom(b, sizeof(b), 0);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t) sizeof(b))
                return n < 0 ? -errno : -EIO;
        b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
        b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
        hex_encode(b, sizeof(b), hex);
        snprintf(ret, JUPYTER_ID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
        return 0;
}

int jupyter_session_init(struct jupyter_session *s, const char *key) {
        size_t len = strlen(key);

        if (len > JUPYTER_KEY_MAX)
                return -EINVAL;
        memcpy(s->key, key, len + 1);
        s->key_len = len;
        return jupyter_uuid4(s->id);
}

void jupyter_date_now(char ret[32]) {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(ret, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

void jupyter_sign(const char *key, size_t key_len, const struct iovec *frames, size_t n,
                  char ret[JUPYTER_SIGNATURE_LEN + 1]) {
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state st;

        crypto_auth_hmacsha256_init(&st, (const unsigned char *) key, key_len);
        for (size_t i = 0; i < n; i++)
                crypto_auth_hmacsha256_update(&st, frames[i].iov_base, frames[i].iov_len);
        crypto_auth_hmacsha256_final(&st, mac);
        hex_encode(mac, sizeof(mac), ret);
}

/* ---- sending ---- */

void jupyter_outgoing_done(struct jupyter_outgoing *m) {
        for (size_t i = 0; i < ELEMENTSOF(m->json); i++) {
                free(m->json[i]);
                m->json[i] = NULL;
        }
}

int jupyter_build(const struct jupyter_session *s, const char *msg_type, json_t *content,
                  struct jupyter_outgoing *ret) {
        json_t *header, *empty;
        char date[32];
        int r;

        *ret = (struct jupyter_outgoing) {};
        r = jupyter_uuid4(ret->msg_id);
        if (r < 0)
                return r;
        jupyter_date_now(date);
        header = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", ret->msg_id, "session", s->id, "username",
                           "ai2in", "date", date, "msg_type", msg_type, "version", JUPYTER_PROTOCOL_VERSION);
        empty = json_object();
        if (header && empty) {
                ret->json[0] = json_dumps(header, JSON_COMPACT);
                ret->json[1] = json_dumps(empty, JSON_COMPACT);
                ret->json[2] = json_dumps(empty, JSON_COMPACT);
                ret->json[3] = json_dumps(content ? content : empty, JSON_COMPACT);
        }
        json_decref(header);
        json_decref(empty);
        for (size_t i = 0; i < ELEMENTSOF(ret->json); i++)
                if (!ret->json[i]) {
                        jupyter_outgoing_done(ret);
                        return -ENOMEM;
                }

        for (size_t i = 0; i < ELEMENTSOF(ret->json); i++)
                ret->frames[JUPYTER_FRAME_HEADER + i] =
                        (struct iovec) {.iov_base = ret->json[i], .iov_len = strlen(ret->json[i])};
        jupyter_sign(s->key, s->key_len, &ret->frames[JUPYTER_FRAME_HEADER], 4, ret->signature);
        ret->frames[JUPYTER_FRAME_DELIMITER] =
                (struct iovec) {.iov_base = (char *) JUPYTER_DELIMITER, .iov_len = strlen(JUPYTER_DELIMITER)};
        ret->frames[JUPYTER_FRAME_SIGNATURE] = (struct iovec) {
                .iov_base = s->key_len > 0 ? ret->signature : "",
                .iov_len = s->key_len > 0 ? JUPYTER_SIGNATURE_LEN : 0,
        };
        return 0;
}

/* ---- receiving ---- */

static bool frame_is(const struct iovec *f, const char *s) {
        size_t n = strlen(s);

        return f->iov_len == n && memcmp(f->iov_base, s, n) == 0;
}

/* Compares in time that depends on the length only, and accepts upper-case hex. */
static bool signature_matches(const struct iovec *got, const char *want) {
        const unsigned char *g = got->iov_base;
        unsigned char diff = 0;

        if (got->iov_len != JUPYTER_SIGNATURE_LEN)
                return false;
        for (size_t i = 0; i < JUPYTER_SIGNATURE_LEN; i++) {
                unsigned char c = g[i];

                if (c >= 'A' && c <= 'F')
                        c += 'a' - 'A';
                diff |= c ^ (unsigned char) want[i];
        }
        return diff == 0;
}

/* Loads one JSON object frame. Kernels encode lone surrogates as raw bytes (surrogateescape),
 * which is not UTF-8, and Python ints have no size limit: both get a second chance. */
static json_t *load_object(const struct iovec *f) {
        const size_t flags = JSON_ALLOW_NUL;
        _cleanup_free_ char *fixed = NULL;
        json_error_t error;
        size_t fixed_len;
        json_t *v;

        v = json_loadb(f->iov_base, f->iov_len, flags, &error);
        if (!v && json_error_code(&error) == json_error_invalid_utf8 &&
            utf8_sanitize(f->iov_base, f->iov_len, &fixed, &fixed_len) == 0)
                v = json_loadb(fixed, fixed_len, flags, &error);
        if (!v && json_error_code(&error) == json_error_numeric_overflow)
                v = fixed ? json_loadb(fixed, fixed_len, flags | JSON_DECODE_INT_AS_REAL, NULL)
                          : json_loadb(f->iov_base, f->iov_len, flags | JSON_DECODE_INT_AS_REAL, NULL);
        if (v && !json_is_object(v)) {
                json_decref(v);
                return NULL;
        }
        return v;
}

void jupyter_message_done(struct jupyter_message *m) {
        json_decref(m->header);
        json_decref(m->parent_header);
        json_decref(m->metadata);
        json_decref(m->content);
        *m = (struct jupyter_message) {};
}

int jupyter_parse(const struct jupyter_session *s, const struct iovec *frames, size_t n,
                  struct jupyter_message *ret) {
        struct jupyter_message m = {};
        const struct iovec *f = NULL;
        json_t *parts[3]; /* header, parent_header, metadata; content below */
        json_t *v;

        for (size_t i = 0; i < n; i++)
                if (frame_is(&frames[i], JUPYTER_DELIMITER)) {
                        if (n - i >= JUPYTER_FRAMES)
                                f = &frames[i];
                        break;
                }
        if (!f)
                return -EBADMSG;

        if (s->key_len > 0) {
                char want[JUPYTER_SIGNATURE_LEN + 1];

                jupyter_sign(s->key, s->key_len, &f[JUPYTER_FRAME_HEADER], 4, want);
                if (!signature_matches(&f[JUPYTER_FRAME_SIGNATURE], want))
                        return -EPERM;
        }

        for (size_t i = 0; i < ELEMENTSOF(parts); i++)
                parts[i] = load_object(&f[JUPYTER_FRAME_HEADER + i]);
        m.header = parts[0];
        m.parent_header = parts[1];
        m.metadata = parts[2];
        m.content_raw = f[JUPYTER_FRAME_CONTENT];
        if (!m.header || !m.parent_header || !m.metadata)
                goto bad;
        m.msg_type = json_string_value(json_object_get(m.header, "msg_type"));
        if (!m.msg_type)
                goto bad;
        if (!streq(m.msg_type, "stream") || m.content_raw.iov_len < JUPYTER_LAZY_STREAM_MIN) {
                m.content = load_object(&m.content_raw);
                if (!m.content)
                        goto bad;
        }
        v = json_object_get(m.parent_header, "msg_id");
        m.parent_msg_id = json_string_value(v);
        *ret = m;
        return 0;
bad:
        jupyter_message_done(&m);
        return -EBADMSG;
}

/* ---- IOPub output to events ---- */

/* Length of the escape sequence at s[0] == ESC (at most n bytes). */
static size_t escape_len(const unsigned char *s, size_t n) {
        size_t i = 1;

        if (n < 2)
                return n;
        if (s[1] == '[') { /* CSI: parameters, intermediates, one final byte */
                for (i = 2; i < n && s[i] >= 0x20 && s[i] <= 0x3f; i++)
                        ;
                return i < n && s[i] >= 0x40 && s[i] <= 0x7e ? i + 1 : i;
        }
        if (s[1] == ']') { /* OSC: up to BEL or ESC \ */
                for (i = 2; i < n; i++) {
                        if (s[i] == 0x07)
                                return i + 1;
                        if (s[i] == 0x1b && i + 1 < n && s[i + 1] == '\\')
                                return i + 2;
                }
                return n;
        }
        for (; i < n && s[i] >= 0x20 && s[i] <= 0x2f; i++) /* intermediates, then a final byte */
                ;
        return i < n && s[i] >= 0x30 && s[i] <= 0x7e ? i + 1 : i;
}

char *jupyter_strip_ansi(const char *s, size_t n, size_t *ret_len) {
        const unsigned char *u = (const unsigned char *) s;
        char *out = malloc(n + 1);
        size_t len = 0;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n;) {
                if (u[i] == 0x1b) {
                        i += escape_len(u + i, n - i);
                        continue;
                }
                out[len++] = s[i++];
        }
        out[len] = '\0';
        if (ret_len)
                *ret_len = len;
        return out;
}

/* Appends the lines of one traceback entry (ANSI codes removed; a final newline ends the
 * last line rather than starting an empty one). */
static int append_traceback_lines(json_t *lines, const char *s, size_t n) {
        _cleanup_free_ char *plain = NULL;
        size_t len, start = 0;

        plain = jupyter_strip_ansi(s, n, &len);
        if (!plain)
                return -ENOMEM;
        for (size_t i = 0; i <= len; i++) {
                if (i < len && plain[i] != '\n')
                        continue;
                if (i == len && start == len && len > 0)
                        break;
                if (json_array_append_new(lines, json_stringn(plain + start, i - start)) < 0)
                        return -ENOMEM;
                start = i + 1;
        }
        return 0;
}

json_t *jupyter_error_event(json_t *content) {
        json_t *tb = json_object_get(content, "traceback"), *lines, *v;
        const char *name = json_string_value(json_object_get(content, "ename"));
        const char *value = json_string_value(json_object_get(content, "evalue"));
        size_t i;

        lines = json_array();
        if (!lines)
                return NULL;
        json_array_foreach(tb, i, v) {
                if (!json_is_string(v))
                        continue;
                if (append_traceback_lines(lines, json_string_value(v), json_string_length(v)) < 0) {
                        json_decref(lines);
                        return NULL;
                }
        }
        return json_pack("{s:s, s:s, s:s, s:o}", "type", "error", "name", name ? name : "", "value",
                         value ? value : "", "traceback", lines);
}

/* Hands out stream text (valid UTF-8) as events of at most JUPYTER_STREAM_EVENT_MAX bytes,
 * never cut inside a character. */
struct text_pieces {
        const char *type; /* "stdout" or "stderr" */
        jupyter_event_fn fn;
        void *userdata;
        int count;
};

static int piece_emit(struct text_pieces *tp, const char *s, size_t n) {
        json_t *ev;
        int r;

        if (n == 0)
                return 0;
        ev = json_pack("{s:s, s:s%}", "type", tp->type, "text", s, n);
        if (!ev)
                return -ENOMEM;
        r = tp->fn(tp->userdata, ev);
        json_decref(ev);
        if (r < 0)
                return r;
        tp->count++;
        return 0;
}

/* The length of s[0..n) to emit now so that a UTF-8 sequence cut off at the end stays for
 * the next piece. */
static size_t piece_cut(const char *s, size_t n) {
        const unsigned char *u = (const unsigned char *) s;

        for (size_t back = 1; back <= 4 && back <= n; back++) {
                unsigned char c = u[n - back];
                size_t want;

                if ((c & 0xc0) == 0x80)
                        continue; /* a continuation byte: look further back for its lead */
                want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
                return want > back ? n - back : n;
        }
        return n;
}

static int text_pieces_emit(struct text_pieces *tp, const char *s, size_t len) {
        size_t off = 0;

        while (off < len) {
                size_t piece = MIN(len - off, (size_t) JUPYTER_STREAM_EVENT_MAX);
                int r;

                if (off + piece < len) {
                        size_t cut = piece_cut(s + off, piece);

                        piece = cut > 0 ? cut : piece;
                }
                r = piece_emit(tp, s + off, piece);
                if (r < 0)
                        return r;
                off += piece;
        }
        return 0;
}

static const char *stream_type(const char *name) {
        return streq(name, "stderr") ? "stderr" : "stdout";
}

static int stream_events(json_t *content, jupyter_event_fn fn, void *userdata) {
        const char *name = json_string_value(json_object_get(content, "name"));
        json_t *text = json_object_get(content, "text");
        struct text_pieces tp = {.fn = fn, .userdata = userdata};
        int r;

        if (!name || !json_is_string(text))
                return 0;
        tp.type = stream_type(name);
        r = text_pieces_emit(&tp, json_string_value(text), json_string_length(text));
        return r < 0 ? r : tp.count;
}

/* ---- a large stream message, decoded from its frame ---- */

static const char *skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

/* p is just past a string's opening quote: returns its closing quote, or NULL. */
static const char *string_end(const char *p, const char *end) {
        for (; p < end; p++) {
                if (*p == '\\')
                        p++;
                else if (*p == '"')
                        return p;
        }
        return NULL;
}

/* Skips one JSON value (strings, numbers, literals, nested containers) starting at p. */
static const char *value_end(const char *p, const char *end) {
        size_t depth = 0;

        for (; p < end; p++) {
                if (*p == '"') {
                        p = string_end(p + 1, end);
                        if (!p)
                                return NULL;
                        if (depth == 0)
                                return p + 1;
                } else if (*p == '{' || *p == '[') {
                        depth++;
                } else if (*p == '}' || *p == ']') {
                        if (depth == 0)
                                return p; /* a scalar ended by its container */
                        if (--depth == 0)
                                return p + 1;
                } else if (depth == 0 && (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
                        return p;
                }
        }
        return depth == 0 ? p : NULL;
}

/* Finds the raw (still escaped) insides of the "name" and "text" strings of a stream
 * message's content object. */
static int stream_fields(const char *s, size_t n, struct iovec *name, struct iovec *text) {
        const char *p = s, *end = s + n;

        *name = *text = (struct iovec) {};
        p = skip_ws(p, end);
        if (p == end || *p++ != '{')
                return -EBADMSG;
        for (;;) {
                const char *key, *key_end, *v_end;
                struct iovec *want = NULL;

                p = skip_ws(p, end);
                if (p < end && *p == '}')
                        break;
                if (p == end || *p != '"' || !(key_end = string_end(p + 1, end)))
                        return -EBADMSG;
                key = p + 1;
                if (key_end - key == 4 && memcmp(key, "name", 4) == 0)
                        want = name;
                else if (key_end - key == 4 && memcmp(key, "text", 4) == 0)
                        want = text;
                p = skip_ws(key_end + 1, end);
                if (p == end || *p++ != ':')
                        return -EBADMSG;
                p = skip_ws(p, end);
                v_end = value_end(p, end);
                if (!v_end)
                        return -EBADMSG;
                if (want) {
                        if (p == end || *p != '"') /* "text": at the very end: no value */
                                return -EBADMSG;
                        *want = (struct iovec) {.iov_base = (char *) p + 1, .iov_len = (size_t) (v_end - p - 2)};
                }
                p = skip_ws(v_end, end);
                if (p < end && *p == ',') {
                        p++;
                        continue;
                }
                if (p < end && *p == '}')
                        break;
                return -EBADMSG;
        }
        return name->iov_base && text->iov_base ? 0 : -EBADMSG;
}

static int hex4(const char *p, const char *end, unsigned *ret) {
        unsigned v = 0;

        if (end - p < 4)
                return -EBADMSG;
        for (int i = 0; i < 4; i++) {
                char c = p[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (unsigned) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (unsigned) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (unsigned) (c - 'A' + 10);
                else
                        return -EBADMSG;
        }
        *ret = v;
        return 0;
}

static size_t utf8_encode(unsigned cp, char *out) {
        if (cp < 0x80) {
                out[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char) (0xc0 | (cp >> 6));
                out[1] = (char) (0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char) (0xe0 | (cp >> 12));
                out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char) (0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char) (0xf0 | (cp >> 18));
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char) (0x80 | (cp & 0x3f));
        return 4;
}

/* Decodes the escape at p (just past the backslash) into out; returns the input consumed. */
static int unescape(const char *p, const char *end, char out[4], size_t *ret_len) {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *hit;
        unsigned cp, low;

        if (p == end)
                return -EBADMSG;
        if (*p != 'u') {
                hit = memchr(from, *p, sizeof(from) - 1);
                if (!hit)
                        return -EBADMSG;
                out[0] = to[hit - from];
                *ret_len = 1;
                return 1;
        }
        if (hex4(p + 1, end, &cp) < 0)
                return -EBADMSG;
        if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 11 && p[5] == '\\' && p[6] == 'u' &&
            hex4(p + 7, end, &low) == 0 && low >= 0xdc00 && low <= 0xdfff) {
                *ret_len = utf8_encode(0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00), out);
                return 11;
        }
        if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xfffd; /* a lone surrogate */
        *ret_len = utf8_encode(cp, out);
        return 5;
}

/* Appends n bytes (whole characters) to the piece being built, handing the piece out first
 * if they would not fit. */
static int piece_append(struct text_pieces *tp, char *buf, size_t *len, const char *bytes, size_t n) {
        if (*len + n > JUPYTER_STREAM_EVENT_MAX) {
                int r = piece_emit(tp, buf, *len);

                if (r < 0)
                        return r;
                *len = 0;
        }
        memcpy(buf + *len, bytes, n);
        *len += n;
        return 0;
}

/* Decodes the text of a stream message from its frame into pieces, repairing what is not
 * UTF-8 (raw bytes of lone surrogates, \u escapes of them) with U+FFFD on the way. */
static int stream_events_raw(const struct iovec *raw, jupyter_event_fn fn, void *userdata) {
        static const char replacement[] = "\xef\xbf\xbd";
        struct text_pieces tp = {.fn = fn, .userdata = userdata};
        _cleanup_free_ char *buf = NULL, *name = NULL;
        struct iovec name_raw, text;
        const char *p, *end;
        size_t len = 0;
        int r = 0;

        if (stream_fields(raw->iov_base, raw->iov_len, &name_raw, &text) < 0)
                return 0;
        name = strndup(name_raw.iov_base, name_raw.iov_len);
        buf = malloc(JUPYTER_STREAM_EVENT_MAX);
        if (!name || !buf)
                return -ENOMEM;
        tp.type = stream_type(name);

        p = text.iov_base;
        end = p + text.iov_len;
        while (p < end && r >= 0) {
                const unsigned char c = (unsigned char) *p;
                char decoded[4];
                size_t n;

                if (c == '\\') {
                        int used = unescape(p + 1, end, decoded, &n);

                        if (used < 0)
                                break; /* malformed: what came so far stands */
                        r = piece_append(&tp, buf, &len, decoded, n);
                        p += 1 + used;
                } else if (c < 0x80) { /* a run of plain ASCII, split only by the piece limit */
                        for (n = 1; p + n < end && p[n] != '\\' && (unsigned char) p[n] < 0x80; n++)
                                ;
                        n = MIN(n, (size_t) JUPYTER_STREAM_EVENT_MAX);
                        r = piece_append(&tp, buf, &len, p, n);
                        p += n;
                } else {
                        n = utf8_valid_sequence((const unsigned char *) p, (size_t) (end - p));
                        r = n > 0 ? piece_append(&tp, buf, &len, p, n)
                                  : piece_append(&tp, buf, &len, replacement, sizeof(replacement) - 1);
                        p += n > 0 ? n : 1;
                }
        }
        if (r >= 0)
                r = piece_emit(&tp, buf, len);
        return r < 0 ? r : tp.count;
}

/* ---- other output ---- */

static int result_event(json_t *content, bool main_result, jupyter_event_fn fn, void *userdata) {
        json_t *data = json_object_get(content, "data");
        json_t *metadata = json_object_get(content, "metadata");
        json_t *ev;
        int r;

        if (!json_is_object(data))
                return 0;
        ev = json_pack("{s:s, s:O, s:o, s:b}", "type", "result", "data", data, "metadata",
                       json_is_object(metadata) ? json_incref(metadata) : json_object(), "is_main_result", main_result);
        if (!ev)
                return -ENOMEM;
        r = fn(userdata, ev);
        json_decref(ev);
        return r < 0 ? r : 1;
}

static int error_events(json_t *content, jupyter_event_fn fn, void *userdata) {
        json_t *ev = jupyter_error_event(content);
        int r;

        if (!ev)
                return -ENOMEM;
        r = fn(userdata, ev);
        json_decref(ev);
        return r < 0 ? r : 1;
}

int jupyter_output_events(const struct jupyter_message *m, jupyter_event_fn fn, void *userdata) {
        if (streq(m->msg_type, "stream"))
                return m->content ? stream_events(m->content, fn, userdata)
                                  : stream_events_raw(&m->content_raw, fn, userdata);
        if (!m->content)
                return 0;
        if (streq(m->msg_type, "display_data"))
                return result_event(m->content, false, fn, userdata);
        if (streq(m->msg_type, "execute_result"))
                return result_event(m->content, true, fn, userdata);
        if (streq(m->msg_type, "error"))
                return error_events(m->content, fn, userdata);
        return 0;
}
