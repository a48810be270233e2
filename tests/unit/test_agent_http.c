/* test_agent_http.c — the agent's pure parts: the HTTP request-head parser, the UTF-8
 * sanitiser for command output, and the /etc/passwd and /etc/group reader.
 *
 * The agent is a separate static program, so its sources are compiled in here directly
 * rather than linked from the engine's objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../agent/http-parse.c"
#include "../../agent/http.c"
#include "../../agent/users.c"
#include "../../agent/utf8.c"

static int parse(const char *text, struct http_request *req, size_t *head_len) {
        return http_request_parse_head(req, text, strlen(text), head_len);
}

static void test_parse_get(void **state) {
        struct http_request req = {};
        size_t len = 0;
        const char *text = "GET /health?x=1&y HTTP/1.1\r\nHost: agent\r\nX-Thing:  spaced value \t\r\n\r\nNEXT";

        assert_int_equal(parse(text, &req, &len), 1);
        assert_int_equal(len, strlen(text) - 4);
        assert_string_equal(req.method, "GET");
        assert_string_equal(req.path, "/health");
        assert_string_equal(req.query, "x=1&y");
        assert_int_equal(req.minor_version, 1);
        assert_int_equal(req.n_headers, 2);
        assert_string_equal(http_request_header(&req, "host"), "agent");
        assert_string_equal(http_request_header(&req, "x-thing"), "spaced value");
        assert_null(http_request_header(&req, "Missing"));
        assert_true(req.keep_alive);
        assert_false(req.expect_continue);
        assert_int_equal(req.content_length, 0);
        http_request_done(&req);
}

static void test_parse_post(void **state) {
        struct http_request req = {};
        size_t len = 0;

        assert_int_equal(parse("POST /exec HTTP/1.1\r\ncontent-length: 17\r\nConnection: Keep-Alive, Close\r\n"
                               "Expect: 100-Continue\r\n\r\n",
                               &req, &len),
                         1);
        assert_string_equal(req.method, "POST");
        assert_null(req.query);
        assert_int_equal(req.content_length, 17);
        assert_false(req.keep_alive);
        assert_true(req.expect_continue);
        http_request_done(&req);

        /* HTTP/1.0 closes unless asked not to. */
        assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &req, &len), 1);
        assert_false(req.keep_alive);
        http_request_done(&req);
        assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &req, &len), 1);
        assert_true(req.keep_alive);
        http_request_done(&req);

        /* Repeated Content-Length is fine when the values agree. */
        assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &req, &len), 1);
        assert_int_equal(req.content_length, 5);
        http_request_done(&req);
}

static void test_parse_incomplete(void **state) {
        struct http_request req = {};
        size_t len = 0;

        assert_int_equal(parse("", &req, &len), 0);
        assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n", &req, &len), 0);
        assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n\r", &req, &len), 0);
        assert_null(req.head);
}

static void test_parse_errors(void **state) {
        static const struct {
                const char *text;
                int error;
        } cases[] = {
                {"GARBAGE\r\n\r\n", -EBADMSG},
                {"GET /\r\n\r\n", -EBADMSG},
                {"GET  / HTTP/1.1\r\n\r\n", -EBADMSG},
                {"GET http://host/ HTTP/1.1\r\n\r\n", -EBADMSG},
                {"GET /a b HTTP/1.1\r\n\r\n", -EBADMSG},
                {"G(T / HTTP/1.1\r\n\r\n", -EBADMSG},
                {"GET / FTP/1.1\r\n\r\n", -EBADMSG},
                {"GET / HTTP/2.0\r\n\r\n", -EPROTONOSUPPORT},
                {"GET / HTTP/1.10\r\n\r\n", -EPROTONOSUPPORT},
                {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nName : v\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", -EOPNOTSUPP},
        };
        struct http_request req = {};
        size_t len = 0;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = parse(cases[i].text, &req, &len);
                if (r != cases[i].error)
                        fail_msg("case %zu (%s): got %d, want %d", i, cases[i].text, r, cases[i].error);
                assert_null(req.head);
        }

        /* A NUL byte in the head. */
        static const char nul[] = "GET / HTTP/1.1\r\nA: \0\r\n\r\n";
        assert_int_equal(http_request_parse_head(&req, nul, sizeof(nul) - 1, &len), -EBADMSG);
}

static void test_parse_limits(void **state) {
        struct http_request req = {};
        _cleanup_buf_ struct buf b = {.cap = 4 * HTTP_MAX_HEAD};
        size_t len = 0;

        /* No end of head within HTTP_MAX_HEAD bytes. */
        assert_int_equal(buf_append_str(&b, "GET / HTTP/1.1\r\nX: "), 0);
        while (b.len < HTTP_MAX_HEAD)
                assert_int_equal(buf_append_str(&b, "aaaaaaaaaaaaaaaa"), 0);
        assert_int_equal(http_request_parse_head(&req, b.data, b.len, &len), -E2BIG);

        /* Too many header fields. */
        buf_reset(&b);
        assert_int_equal(buf_append_str(&b, "GET / HTTP/1.1\r\n"), 0);
        for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
                assert_int_equal(buf_printf(&b, "H%d: v\r\n", i), 0);
        assert_int_equal(buf_append_str(&b, "\r\n"), 0);
        assert_int_equal(http_request_parse_head(&req, b.data, b.len, &len), -E2BIG);
        assert_null(req.head);
}

static void test_status(void **state) {
        assert_string_equal(http_status_text(404), "Not Found");
        assert_string_equal(http_status_text(599), "Unknown");
        assert_int_equal(http_status_from_errno(-EBADMSG), 400);
        assert_int_equal(http_status_from_errno(-EFBIG), 413);
        assert_int_equal(http_status_from_errno(-E2BIG), 431);
        assert_int_equal(http_status_from_errno(-EOPNOTSUPP), 501);
        assert_int_equal(http_status_from_errno(-EPROTONOSUPPORT), 505);
        assert_int_equal(http_status_from_errno(-ENOMEM), 500);
}

static void assert_sanitized(const char *in, size_t n, const char *want, size_t want_len) {
        _cleanup_free_ char *out = NULL;
        size_t len = 0;

        assert_int_equal(utf8_sanitize(in, n, &out, &len), 0);
        assert_int_equal(len, want_len);
        assert_memory_equal(out, want, want_len);
        assert_int_equal(out[len], 0);
}
#define CHECK(in, want) assert_sanitized(in, sizeof(in) - 1, want, sizeof(want) - 1)
#define R "\xef\xbf\xbd"

static void test_utf8(void **state) {
        CHECK("", "");
        CHECK("plain ascii\n", "plain ascii\n");
        CHECK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
        CHECK("a\0b", "a\0b");                            /* NUL is data */
        CHECK("\xff", R);                                 /* never valid */
        CHECK("\xff\xfeok", R R "ok");
        CHECK("\x80", R);                                 /* stray continuation */
        CHECK("ok\xe2\x82", "ok" R);                      /* cut short: one replacement */
        CHECK("\xe2\x82x", R "x");
        CHECK("\xc0\x80", R R);                           /* overlong NUL */
        CHECK("\xe0\x80\x80", R R R);                     /* overlong */
        CHECK("\xed\xa0\x80", R R R);                     /* surrogate U+D800 */
        CHECK("\xf4\x90\x80\x80", R R R R);               /* past U+10FFFF */
        CHECK("\xf0\x9f\x98", R);                         /* 4-byte sequence cut short */
        CHECK("\xef\xbf\xbd", R);                         /* U+FFFD itself is valid */

        assert_int_equal(utf8_valid_sequence((const unsigned char *) "\xc3\xa9", 2), 2);
        assert_int_equal(utf8_valid_sequence((const unsigned char *) "\xc3", 1), 0);
        assert_int_equal(utf8_valid_sequence((const unsigned char *) "", 0), 0);
}

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void test_users(void **state) {
        char dir[] = "/tmp/test-agent-users-XXXXXX", passwd[64], group[64];
        struct user_info u = {};

        assert_non_null(mkdtemp(dir));
        snprintf(passwd, sizeof(passwd), "%s/passwd", dir);
        snprintf(group, sizeof(group), "%s/group", dir);
        write_text(passwd, "# comment\n"
                           "root:x:0:0:root:/root:/bin/bash\n"
                           "broken line\n"
                           "sandbox:x:1000:1000:Sandbox,,,:/home/sandbox:/bin/bash\n"
                           "nohome:x:1001:1001:::\n"
                           "badid:x:12a:1001::/:/bin/sh\n");
        write_text(group, "root:x:0:\nsandbox:x:1000:\nsudo:x:27:alice,sandbox\ndocker:x:999:alice\nusers:x:100:sandbox\n");

        assert_int_equal(user_lookup_in(passwd, group, "sandbox", &u), 0);
        assert_string_equal(u.name, "sandbox");
        assert_string_equal(u.home, "/home/sandbox");
        assert_string_equal(u.shell, "/bin/bash");
        assert_int_equal(u.uid, 1000);
        assert_int_equal(u.gid, 1000);
        assert_int_equal(u.n_groups, 3);
        assert_int_equal(u.groups[0], 1000);
        assert_int_equal(u.groups[1], 27);
        assert_int_equal(u.groups[2], 100);
        user_info_done(&u);

        assert_int_equal(user_lookup_in(passwd, group, "nohome", &u), 0);
        assert_string_equal(u.home, "/");
        user_info_done(&u);

        assert_int_equal(user_lookup_in(passwd, group, "nobody", &u), -ESRCH);
        assert_int_equal(user_lookup_in(passwd, group, "badid", &u), -EBADMSG);
        assert_int_equal(user_lookup_in(passwd, group, "root", &u), 0);
        assert_int_equal(u.uid, 0);
        user_info_done(&u);

        /* No passwd file at all: only root is known. */
        assert_int_equal(user_lookup_in("/nonexistent/passwd", "/nonexistent/group", "root", &u), 0);
        assert_string_equal(u.home, "/root");
        user_info_done(&u);
        assert_int_equal(user_lookup_in("/nonexistent/passwd", "/nonexistent/group", "sandbox", &u), -ESRCH);

        unlink(passwd);
        unlink(group);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_get),   cmocka_unit_test(test_parse_post),
                cmocka_unit_test(test_parse_incomplete), cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_parse_limits), cmocka_unit_test(test_status),
                cmocka_unit_test(test_utf8),        cmocka_unit_test(test_users),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
