/* test_jupyter.c — the Jupyter wire protocol layer of the Python backend (agent/kernel/jupyter.c):
 * signatures (against HMAC-SHA256 vectors and a message jupyter_client itself serialized),
 * building and parsing messages, refusing forged or malformed ones, ids and dates, and turning
 * IOPub output into run_code events, including large stream messages decoded from their frame.
 *
 * The agent is a separate static program, so its sources are compiled in here directly. Unit
 * tests link with the engine's libraries, which have OpenSSL but not libsodium: the three
 * libsodium HMAC calls jupyter.c makes are provided below on top of OpenSSL, which also makes
 * the signature tests a check against a second implementation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "../../agent/kernel/jupyter.c"
#include "../../agent/utf8.c"

/* ---- libsodium's streaming HMAC-SHA256 over OpenSSL (the state holds a pointer) ---- */

int crypto_auth_hmacsha256_init(crypto_auth_hmacsha256_state *state, const unsigned char *key, size_t keylen) {
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0),
                OSSL_PARAM_construct_end(),
        };

        EVP_MAC_free(mac);
        assert_non_null(ctx);
        assert_int_equal(EVP_MAC_init(ctx, key, keylen, params), 1);
        memcpy(state, &ctx, sizeof(ctx));
        return 0;
}

int crypto_auth_hmacsha256_update(crypto_auth_hmacsha256_state *state, const unsigned char *in,
                                  unsigned long long inlen) {
        EVP_MAC_CTX *ctx;

        memcpy(&ctx, state, sizeof(ctx));
        assert_int_equal(EVP_MAC_update(ctx, in, (size_t) inlen), 1);
        return 0;
}

int crypto_auth_hmacsha256_final(crypto_auth_hmacsha256_state *state, unsigned char *out) {
        EVP_MAC_CTX *ctx;
        size_t len = 0;

        memcpy(&ctx, state, sizeof(ctx));
        assert_int_equal(EVP_MAC_final(ctx, out, &len, crypto_auth_hmacsha256_BYTES), 1);
        assert_int_equal(len, crypto_auth_hmacsha256_BYTES);
        EVP_MAC_CTX_free(ctx);
        return 0;
}

/* ---- helpers ---- */

#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct iovec iov(const char *s) {
        return (struct iovec) {.iov_base = (char *) s, .iov_len = strlen(s)};
}

/* Collects events into an array. */
static int collect(void *userdata, json_t *ev) {
        return json_array_append(userdata, ev);
}

static json_t *events_of(const struct jupyter_message *m, int *ret_n) {
        json_t *events = json_array();

        *ret_n = jupyter_output_events(m, collect, events);
        return events;
}

/* Signs and parses a message with the given content text (and msg_type), as a kernel would
 * send it on IOPub. */
static int parse_signed(const struct jupyter_session *s, const char *msg_type, const char *parent_id,
                        const char *content, struct jupyter_message *ret) {
        char header[256], parent[128], sig[JUPYTER_SIGNATURE_LEN + 1];
        struct iovec frames[7];

        snprintf(header, sizeof(header), "{\"msg_id\": \"m1\", \"msg_type\": \"%s\", \"version\": \"5.3\"}", msg_type);
        snprintf(parent, sizeof(parent), "{\"msg_id\": \"%s\"}", parent_id);
        frames[0] = iov("kernel.x.topic");
        frames[1] = iov(JUPYTER_DELIMITER);
        frames[3] = iov(header);
        frames[4] = iov(parent);
        frames[5] = iov("{}");
        frames[6] = iov(content);
        jupyter_sign(s->key, s->key_len, &frames[3], 4, sig);
        frames[2] = iov(sig);
        return jupyter_parse(s, frames, 7, ret);
}

/* ---- signatures, ids, dates ---- */

static void test_sign_vectors(void **state) {
        struct iovec two[] = {iov("abc"), iov("def")};
        struct iovec rfc[] = {iov("what do ya want "), iov("for nothing?")};
        char hex[JUPYTER_SIGNATURE_LEN + 1];

        /* Python: hmac.new(b"key", b"abcdef", hashlib.sha256).hexdigest() */
        jupyter_sign("key", 3, two, 2, hex);
        assert_string_equal(hex, "4c5277d3e85316d1762c7e219862a9440546171f5ae5f1b29499ff9fbdd4c56a");
        /* RFC 4231, test case 2 */
        jupyter_sign("Jefe", 4, rfc, 2, hex);
        assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* A stream message exactly as jupyter_client 7.4's Session.serialize() put it on the wire. */
static void test_parse_jupyter_client_message(void **state) {
        struct jupyter_session s;
        struct jupyter_message m;
        struct iovec frames[] = {
                iov("kernel.abc.stream"),
                iov("<IDS|MSG>"),
                iov("a33e69443748339607f83fc3f02068f82dbe835525dd25bed6f4b0226874d41b"),
                iov("{\"msg_id\": \"99999999-8888-4777-8666-555555555555\", \"msg_type\": \"stream\", \"username\": "
                    "\"kernel\", \"session\": \"11111111-2222-4333-8444-555555555555\", \"date\": "
                    "\"2026-01-02T03:04:05.000006Z\", \"version\": \"5.3\"}"),
                iov("{\"msg_id\": \"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\", \"msg_type\": \"execute_request\"}"),
                iov("{}"),
                iov("{\"name\": \"stdout\", \"text\": \"h\xc3\xa9llo\\n\"}"),
        };
        json_t *events;
        int n;

        assert_int_equal(jupyter_session_init(&s, KEY), 0);
        assert_int_equal(jupyter_parse(&s, frames, ELEMENTSOF(frames), &m), 0);
        assert_string_equal(m.msg_type, "stream");
        assert_string_equal(m.parent_msg_id, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
        events = events_of(&m, &n);
        assert_int_equal(n, 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0), "type")), "stdout");
        assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0), "text")), "h\xc3\xa9llo\n");
        json_decref(events);
        jupyter_message_done(&m);

        /* One byte changed anywhere in the signed frames: refused. */
        frames[6] = iov("{\"name\": \"stdout\", \"text\": \"hallo\\n\"}");
        assert_int_equal(jupyter_parse(&s, frames, ELEMENTSOF(frames), &m), -EPERM);
        /* Another key: refused. */
        frames[6] = iov("{\"name\": \"stdout\", \"text\": \"h\xc3\xa9llo\\n\"}");
        assert_int_equal(jupyter_session_init(&s, "another key"), 0);
        assert_int_equal(jupyter_parse(&s, frames, ELEMENTSOF(frames), &m), -EPERM);
}

static void test_uuid_and_date(void **state) {
        char a[JUPYTER_ID_LEN + 1], b[JUPYTER_ID_LEN + 1], date[32];

        assert_int_equal(jupyter_uuid4(a), 0);
        assert_int_equal(jupyter_uuid4(b), 0);
        assert_int_equal(strlen(a), JUPYTER_ID_LEN);
        assert_string_not_equal(a, b);
        for (size_t i = 0; i < JUPYTER_ID_LEN; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23)
                        assert_int_equal(a[i], '-');
                else
                        assert_non_null(strchr("0123456789abcdef", a[i]));
        }
        assert_int_equal(a[14], '4');
        assert_non_null(strchr("89ab", a[19]));

        jupyter_date_now(date);
        assert_int_equal(strlen(date), strlen("2026-01-02T03:04:05.000006Z"));
        assert_int_equal(date[10], 'T');
        assert_int_equal(date[19], '.');
        assert_int_equal(date[26], 'Z');
}

/* ---- building and parsing ---- */

static void test_build_parse_roundtrip(void **state) {
        struct jupyter_outgoing out;
        struct jupyter_session s;
        struct jupyter_message m;
        struct iovec frames[1 + JUPYTER_FRAMES];
        json_t *content = json_pack("{s:s, s:b}", "code", "print('\xc3\xa9')\n", "silent", 0);
        const char *date;

        assert_int_equal(jupyter_session_init(&s, KEY), 0);
        assert_int_equal(jupyter_build(&s, "execute_request", content, &out), 0);
        assert_string_equal(out.frames[JUPYTER_FRAME_DELIMITER].iov_base, JUPYTER_DELIMITER);
        assert_int_equal(out.frames[JUPYTER_FRAME_SIGNATURE].iov_len, JUPYTER_SIGNATURE_LEN);

        /* As a ROUTER would see it: a routing identity first. */
        frames[0] = iov("\x00\x01routing");
        frames[0].iov_len = 9;
        memcpy(&frames[1], out.frames, sizeof(out.frames));
        assert_int_equal(jupyter_parse(&s, frames, ELEMENTSOF(frames), &m), 0);
        assert_string_equal(m.msg_type, "execute_request");
        assert_null(m.parent_msg_id);
        assert_string_equal(json_string_value(json_object_get(m.header, "msg_id")), out.msg_id);
        assert_string_equal(json_string_value(json_object_get(m.header, "session")), s.id);
        assert_string_equal(json_string_value(json_object_get(m.header, "version")), "5.3");
        assert_non_null(json_string_value(json_object_get(m.header, "username")));
        date = json_string_value(json_object_get(m.header, "date"));
        assert_non_null(date);
        assert_int_equal(date[strlen(date) - 1], 'Z');
        assert_int_equal(json_object_size(m.parent_header), 0);
        assert_int_equal(json_object_size(m.metadata), 0);
        assert_true(json_equal(m.content, content));
        jupyter_message_done(&m);

        /* The signature in upper case is the same signature. */
        for (char *p = out.signature; *p; p++)
                if (*p >= 'a' && *p <= 'f')
                        *p -= 'a' - 'A';
        assert_int_equal(jupyter_parse(&s, frames, ELEMENTSOF(frames), &m), 0);
        jupyter_message_done(&m);

        /* Each message gets its own id. */
        struct jupyter_outgoing again;
        assert_int_equal(jupyter_build(&s, "execute_request", content, &again), 0);
        assert_string_not_equal(again.msg_id, out.msg_id);
        jupyter_outgoing_done(&again);
        jupyter_outgoing_done(&out);
        json_decref(content);
}

static void test_parse_refuses(void **state) {
        struct jupyter_session s;
        struct jupyter_message m = {};
        struct iovec frames[6];
        char sig[JUPYTER_SIGNATURE_LEN + 1];

        assert_int_equal(jupyter_session_init(&s, KEY), 0);
        /* No delimiter; a delimiter with too few frames after it. */
        frames[0] = iov("a");
        frames[1] = iov("b");
        assert_int_equal(jupyter_parse(&s, frames, 2, &m), -EBADMSG);
        frames[0] = iov(JUPYTER_DELIMITER);
        assert_int_equal(jupyter_parse(&s, frames, 2, &m), -EBADMSG);

        /* Signature missing or cut short. */
        frames[2] = iov("{\"msg_type\": \"status\"}");
        frames[3] = iov("{}");
        frames[4] = iov("{}");
        frames[5] = iov("{}");
        frames[1] = iov("");
        assert_int_equal(jupyter_parse(&s, frames, 6, &m), -EPERM);
        jupyter_sign(s.key, s.key_len, &frames[2], 4, sig);
        sig[63] = '\0';
        frames[1] = iov(sig);
        assert_int_equal(jupyter_parse(&s, frames, 6, &m), -EPERM);

        /* Well signed but malformed: not JSON, not an object, no msg_type. */
        assert_int_equal(parse_signed(&s, "status", "p", "{nope", &m), -EBADMSG);
        assert_int_equal(parse_signed(&s, "status", "p", "[1, 2]", &m), -EBADMSG);
        frames[2] = iov("{\"msg_id\": \"x\"}");
        jupyter_sign(s.key, s.key_len, &frames[2], 4, sig);
        frames[1] = iov(sig);
        assert_int_equal(jupyter_parse(&s, frames, 6, &m), -EBADMSG);
        assert_null(m.header); /* untouched on failure */
}

/* Lone surrogates arrive as raw bytes (surrogateescape); Python ints have no size limit. */
static void test_parse_repairs(void **state) {
        struct jupyter_session s;
        struct jupyter_message m;
        json_t *events, *data;
        int n;

        assert_int_equal(jupyter_session_init(&s, KEY), 0);
        assert_int_equal(parse_signed(&s, "stream", "p", "{\"name\": \"stderr\", \"text\": \"a\xff" "b\"}", &m), 0);
        events = events_of(&m, &n);
        assert_int_equal(n, 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0), "type")), "stderr");
        assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0), "text")), "a\xef\xbf\xbd" "b");
        json_decref(events);
        jupyter_message_done(&m);

        assert_int_equal(parse_signed(&s, "execute_result", "p",
                                      "{\"data\": {\"application/json\": {\"n\": 123456789012345678901234567890}}, "
                                      "\"metadata\": {}, \"execution_count\": 3}",
                                      &m),
                         0);
        data = json_object_get(json_object_get(m.content, "data"), "application/json");
        assert_true(json_is_real(json_object_get(data, "n")));
        jupyter_message_done(&m);
}

/* ---- output to events ---- */

static void test_strip_ansi(void **state) {
        const char in[] = "\x1b[0;31mred\x1b[0m plain \x1b]0;title\x07x\x1b(By\x1b[?25l\x1b";
        size_t len;
        char *out = jupyter_strip_ansi(in, sizeof(in) - 1, &len);

        assert_string_equal(out, "red plain xy");
        assert_int_equal(len, strlen("red plain xy"));
        free(out);
}

static void test_error_event(void **state) {
        json_t *content = json_pack(
                "{s:s, s:s, s:[s, s, s]}", "ename", "ZeroDivisionError", "evalue", "division by zero", "traceback",
                "\x1b[0;31m-----\x1b[0m", "Cell \x1b[0;32mIn[3], line 1\x1b[0m\n----> 1 1/0\n",
                "ZeroDivisionError: division by zero");
        json_t *ev = jupyter_error_event(content), *tb;

        assert_string_equal(json_string_value(json_object_get(ev, "type")), "error");
        assert_string_equal(json_string_value(json_object_get(ev, "name")), "ZeroDivisionError");
        assert_string_equal(json_string_value(json_object_get(ev, "value")), "division by zero");
        tb = json_object_get(ev, "traceback");
        assert_int_equal(json_array_size(tb), 4);
        assert_string_equal(json_string_value(json_array_get(tb, 0)), "-----");
        assert_string_equal(json_string_value(json_array_get(tb, 1)), "Cell In[3], line 1");
        assert_string_equal(json_string_value(json_array_get(tb, 2)), "----> 1 1/0");
        assert_string_equal(json_string_value(json_array_get(tb, 3)), "ZeroDivisionError: division by zero");
        json_decref(ev);
        json_decref(content);

        /* Fields missing: empty, not absent. */
        content = json_object();
        ev = jupyter_error_event(content);
        assert_string_equal(json_string_value(json_object_get(ev, "name")), "");
        assert_int_equal(json_array_size(json_object_get(ev, "traceback")), 0);
        json_decref(ev);
        json_decref(content);
}

static void test_output_events(void **state) {
        struct jupyter_session s;
        struct jupyter_message m;
        json_t *events, *ev, *data;
        int n;

        assert_int_equal(jupyter_session_init(&s, KEY), 0);

        /* display_data and execute_result keep every MIME type as sent. */
        assert_int_equal(parse_signed(&s, "display_data", "p",
                                      "{\"data\": {\"text/plain\": \"<Figure>\", \"image/png\": \"iVBORw0KGgo=\\n\", "
                                      "\"application/json\": {\"a\": [1, null]}}, \"metadata\": {\"image/png\": "
                                      "{\"width\": 10}}, \"transient\": {}}",
                                      &m),
                         0);
        events = events_of(&m, &n);
        assert_int_equal(n, 1);
        ev = json_array_get(events, 0);
        assert_string_equal(json_string_value(json_object_get(ev, "type")), "result");
        assert_false(json_is_true(json_object_get(ev, "is_main_result")));
        data = json_object_get(ev, "data");
        assert_string_equal(json_string_value(json_object_get(data, "image/png")), "iVBORw0KGgo=\n");
        assert_true(json_is_object(json_object_get(data, "application/json")));
        data = json_object_get(json_object_get(ev, "metadata"), "image/png");
        assert_int_equal(json_integer_value(json_object_get(data, "width")), 10);
        json_decref(events);
        jupyter_message_done(&m);

        assert_int_equal(parse_signed(&s, "execute_result", "p",
                                      "{\"data\": {\"text/plain\": \"42\"}, \"execution_count\": 1}", &m),
                         0);
        events = events_of(&m, &n);
        assert_int_equal(n, 1);
        ev = json_array_get(events, 0);
        assert_true(json_is_true(json_object_get(ev, "is_main_result")));
        assert_int_equal(json_object_size(json_object_get(ev, "metadata")), 0); /* absent → {} */
        json_decref(events);
        jupyter_message_done(&m);

        /* Types that are not output map to nothing. */
        const char *none[][2] = {
                {"status", "{\"execution_state\": \"idle\"}"},
                {"execute_input", "{\"code\": \"1\", \"execution_count\": 1}"},
                {"clear_output", "{\"wait\": false}"},
                {"update_display_data", "{\"data\": {\"text/plain\": \"1\"}, \"metadata\": {}}"},
                {"display_data", "{\"data\": \"not an object\"}"},
        };
        for (size_t i = 0; i < ELEMENTSOF(none); i++) {
                assert_int_equal(parse_signed(&s, none[i][0], "p", none[i][1], &m), 0);
                events = events_of(&m, &n);
                assert_int_equal(n, 0);
                assert_int_equal(json_array_size(events), 0);
                json_decref(events);
                jupyter_message_done(&m);
        }
}

/* Builds the JSON content of a stream message whose text is `repeat` copies of unit, and the
 * expected decoded text. */
static void big_stream(const char *unit_json, const char *unit_text, size_t repeat, char **ret_content,
                       char **ret_text) {
        size_t uj = strlen(unit_json), ut = strlen(unit_text);
        char *content = malloc(64 + uj * repeat), *text = malloc(1 + ut * repeat), *p;

        p = content + sprintf(content, "{\"name\": \"stdout\", \"text\": \"");
        for (size_t i = 0; i < repeat; i++, p += uj)
                memcpy(p, unit_json, uj);
        strcpy(p, "\"}");
        for (size_t i = 0; i < repeat; i++)
                memcpy(text + i * ut, unit_text, ut);
        text[ut * repeat] = '\0';
        *ret_content = content;
        *ret_text = text;
}

/* Joins the texts of stream events, checking each is within the limit and valid UTF-8. */
static char *join_texts(json_t *events) {
        size_t i, total = 0, off = 0;
        json_t *ev;
        char *all;

        json_array_foreach(events, i, ev) {
                size_t len = json_string_length(json_object_get(ev, "text"));

                assert_string_equal(json_string_value(json_object_get(ev, "type")), "stdout");
                assert_true(len > 0);
                assert_true(len <= JUPYTER_STREAM_EVENT_MAX);
                total += len;
        }
        all = malloc(total + 1);
        json_array_foreach(events, i, ev) {
                json_t *t = json_object_get(ev, "text");

                memcpy(all + off, json_string_value(t), json_string_length(t));
                off += json_string_length(t);
        }
        all[total] = '\0';
        return all;
}

/* Stream text over the per-event limit (which only a message over JUPYTER_LAZY_STREAM_MIN can
 * carry) is decoded from its frame and split on character boundaries. */
static void test_stream_split(void **state) {
        static const struct {
                const char *json, *text;
                size_t repeat;
        } cases[] = {
                /* "é" straddles the 1 MiB mark */
                {"a\xc3\xa9", "a\xc3\xa9", 400 * 1024},
                /* every kind of escape, a surrogate pair, raw UTF-8 */
                {"x\\n\\\"\\\\\\/\\t\\u00e9\\ud83d\\ude00\xe2\x82\xac",
                 "x\n\"\\/\t\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac", 200 * 1024},
                /* a lone surrogate and a stray byte become U+FFFD */
                {"ab\\udcff\xff", "ab\xef\xbf\xbd\xef\xbf\xbd", 300 * 1024},
        };
        struct jupyter_session s;

        assert_int_equal(jupyter_session_init(&s, KEY), 0);
        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                _cleanup_free_ char *content = NULL, *want = NULL, *got = NULL;
                struct jupyter_message m;
                json_t *events;
                int n;

                big_stream(cases[c].json, cases[c].text, cases[c].repeat, &content, &want);
                assert_int_equal(parse_signed(&s, "stream", "p", content, &m), 0);
                assert_null(m.content); /* left for the frame decoder */
                events = events_of(&m, &n);
                assert_true(n >= 2);
                assert_int_equal((size_t) n, json_array_size(events));
                got = join_texts(events);
                assert_int_equal(strlen(got), strlen(want));
                assert_true(strcmp(got, want) == 0);
                json_decref(events);
                jupyter_message_done(&m);
        }
}

/* The frame decoder finds its fields in any order, skips others, and refuses junk. */
static void test_stream_fields(void **state) {
        struct iovec name, text;
        const char *ok = " { \"extra\" : [1, {\"text\": \"no\"}, \"]\"], \"text\":\"t\\\"x\" , "
                         "\"n\": -1.5e3,\"name\": \"stderr\" } ";
        const char *bad[] = {
                "",
                "[]",
                "{\"name\": \"stdout\"}",
                "{\"name\": 1, \"text\": \"x\"}",
                "{\"name\": \"a\" \"text\": \"b\"}",
                "{\"name\": \"a\", \"text\": \"unterminated}",
        };

        assert_int_equal(stream_fields(ok, strlen(ok), &name, &text), 0);
        assert_int_equal(name.iov_len, 6);
        assert_memory_equal(name.iov_base, "stderr", 6);
        assert_int_equal(text.iov_len, 4);
        assert_memory_equal(text.iov_base, "t\\\"x", 4);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(stream_fields(bad[i], strlen(bad[i]), &name, &text), -EBADMSG);
}

/* A content object cut right after a wanted key's colon: refused, without reading a byte past
 * the frame (which is exactly the message's size: the sanitizer build sees an over-read). */
static void test_stream_fields_cut_after_key(void **state) {
        const char *cut[] = {
                "{\"name\":\"stdout\",\"text\":",
                "{\"name\":\"stdout\",\"text\": ",
                "{\"text\":\"x\",\"name\":",
        };
        struct iovec name, text;

        for (size_t i = 0; i < ELEMENTSOF(cut); i++) {
                size_t n = strlen(cut[i]);
                char *frame = malloc(n); /* no terminating NUL: the frame ends where the data does */

                assert_non_null(frame);
                memcpy(frame, cut[i], n);
                assert_int_equal(stream_fields(frame, n, &name, &text), -EBADMSG);
                free(frame);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sign_vectors),      cmocka_unit_test(test_parse_jupyter_client_message),
                cmocka_unit_test(test_uuid_and_date),     cmocka_unit_test(test_build_parse_roundtrip),
                cmocka_unit_test(test_parse_refuses),     cmocka_unit_test(test_parse_repairs),
                cmocka_unit_test(test_strip_ansi),        cmocka_unit_test(test_error_event),
                cmocka_unit_test(test_output_events),     cmocka_unit_test(test_stream_split),
                cmocka_unit_test(test_stream_fields),     cmocka_unit_test(test_stream_fields_cut_after_key),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
