/* test_common.c — ids, keys, time formatting and the capped buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>

#include "buf.h"
#include "fsutil.h"
#include "id.h"
#include "log.h"
#include "timeutil.h"

static void test_sandbox_id(void **state) {
        char a[SANDBOX_ID_LEN + 1], b[SANDBOX_ID_LEN + 1];

        assert_int_equal(sandbox_id_new(a), 0);
        assert_int_equal(sandbox_id_new(b), 0);
        assert_int_equal(strlen(a), 24);
        assert_memory_equal(a, "sbx_", 4);
        assert_true(sandbox_id_valid(a));
        assert_string_not_equal(a, b);
        assert_false(sandbox_id_valid("sbx_ABCDEFGHIJKLMNOPQRST"));
        assert_false(sandbox_id_valid("sbx_abc"));
        assert_false(sandbox_id_valid("sbx_0123456789abcdefghij0"));
        assert_false(sandbox_id_valid("xyz_0123456789abcdefghij"));
        assert_false(sandbox_id_valid("../../../../etc/passwd000"));
        assert_false(sandbox_id_valid(NULL));
        assert_true(sandbox_id_valid("sbx_0123456789abcdefghij"));
}

static void test_api_key(void **state) {
        char k[API_KEY_LEN + 1];

        assert_int_equal(api_key_new(k), 0);
        assert_true(api_key_valid(k));
        assert_memory_equal(k, "ai2in_live_", 11);
        k[20] = '-';
        assert_false(api_key_valid(k));
        assert_false(api_key_valid("ai2in_live_short"));
}

static void test_rfc3339(void **state) {
        char s[RFC3339_LEN + 1];
        int64_t back;

        format_rfc3339(0, s);
        assert_string_equal(s, "1970-01-01T00:00:00.000Z");
        format_rfc3339(1795741323456LL, s);
        assert_string_equal(s, "2026-11-27T01:02:03.456Z");
        assert_int_equal(parse_rfc3339(s, &back), 0);
        assert_int_equal(back, 1795741323456LL);
        assert_int_equal(parse_rfc3339("2026-11-27T01:02:03Z", &back), 0);
        assert_int_equal(back, 1795741323000LL);
        assert_int_equal(parse_rfc3339("2026-11-27 01:02:03", &back), -EINVAL);
        assert_int_equal(parse_rfc3339("garbage", &back), -EINVAL);
}

static void test_buf_cap(void **state) {
        struct buf b;

        buf_init(&b, 10);
        assert_int_equal(buf_append_str(&b, "hello"), 0);
        assert_int_equal(buf_printf(&b, "%d", 1234), 0);
        assert_string_equal(b.data, "hello1234");
        assert_int_equal(buf_append_str(&b, "xy"), -E2BIG);
        assert_string_equal(b.data, "hello1234"); /* unchanged past the cap */
        assert_int_equal(buf_append_str(&b, "z"), 0);
        assert_int_equal(b.len, 10);
        buf_consume(&b, 5);
        assert_string_equal(b.data, "1234z");
        buf_free(&b);
}

static void test_last_line(void **state) {
        char out[16];
        const char *t = "first\nsecond line here\n\n  \n";

        text_last_line(t, strlen(t), out, sizeof(out));
        assert_string_equal(out, "second line her"); /* truncated to the buffer */
        text_last_line("only", 4, out, sizeof(out));
        assert_string_equal(out, "only");
        text_last_line("", 0, out, sizeof(out));
        assert_string_equal(out, "");
}

static void test_rm_rf_no_follow(void **state) {
        char dir[] = "/tmp/ai2in-test-XXXXXX", victim[] = "/tmp/ai2in-victim-XXXXXX", path[256], link[256];

        assert_non_null(mkdtemp(dir));
        assert_non_null(mkdtemp(victim));
        snprintf(path, sizeof(path), "%s/keep", victim);
        assert_int_equal(write_file_atomic(path, "x", 1, 0600), 0);
        snprintf(path, sizeof(path), "%s/a/b/c", dir);
        assert_int_equal(mkdir_p(path, 0700), 0);
        snprintf(link, sizeof(link), "%s/a/evil", dir);
        assert_int_equal(symlink(victim, link), 0);
        assert_int_equal(rm_rf(dir), 0);
        assert_int_equal(access(dir, F_OK), -1);
        snprintf(path, sizeof(path), "%s/keep", victim);
        assert_int_equal(access(path, F_OK), 0); /* the symlink's target survived */
        assert_int_equal(rm_rf(victim), 0);
        assert_int_equal(rm_rf("/tmp/ai2in-does-not-exist"), 0);
}

/* Issue 13: a tree 5000 levels deep (made inside a sandbox) survived kill on the host. Any
 * depth goes, with files at every level, and with few descriptors open. */
static void test_rm_rf_any_depth(void **state) {
        char dir[] = "/tmp/ai2in-deep-XXXXXX";
        struct rlimit saved, low;
        int fd, next;

        assert_non_null(mkdtemp(dir));
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; i < 5000; i++) {
                assert_int_equal(mkdirat(fd, "d", 0700), 0);
                close(openat(fd, "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
                next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(next >= 0);
                close(fd);
                fd = next;
        }
        close(fd);
        getrlimit(RLIMIT_NOFILE, &saved);
        low = (struct rlimit){.rlim_cur = 128, .rlim_max = saved.rlim_max}; /* depth must not cost descriptors */
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        assert_int_equal(rm_rf(dir), 0);
        setrlimit(RLIMIT_NOFILE, &saved);
        assert_int_equal(access(dir, F_OK), -1);
}

static void test_log_escapes_controls(void **state) {
        int p[2], saved = dup(STDERR_FILENO);
        char got[512] = {0};
        ssize_t n;

        assert_int_equal(pipe(p), 0);
        dup2(p[1], STDERR_FILENO);
        log_setup("test", LOG_LVL_INFO);
        log_msg(LOG_LVL_INFO, "GET %s -> 404", "/v1/x\r\n2026-01-01T00:00:00.000Z ai2ind info: forged\x1b[31m");
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(p[1]);
        n = read(p[0], got, sizeof(got) - 1);
        close(p[0]);
        assert_true(n > 0);
        /* One line: the CR, LF and ESC are visible escapes, only the final newline is real. */
        assert_non_null(strstr(got, "GET /v1/x\\x0d\\x0a2026-01-01T00:00:00.000Z ai2ind info: forged\\x1b[31m -> 404\n"));
        assert_ptr_equal(strchr(got, '\n'), got + n - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sandbox_id), cmocka_unit_test(test_api_key), cmocka_unit_test(test_log_escapes_controls), cmocka_unit_test(test_rfc3339),
                cmocka_unit_test(test_buf_cap), cmocka_unit_test(test_last_line), cmocka_unit_test(test_rm_rf_no_follow), cmocka_unit_test(test_rm_rf_any_depth),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
