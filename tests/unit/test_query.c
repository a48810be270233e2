/* test_query.c — the agent's query-string parser (agent/query.c): percent-decoding, '+',
 * refused NUL bytes and malformed escapes, repeated and unknown keys, number and bool
 * values. The agent is a separate program, so its source is compiled in here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"

#include "../../agent/query.c"

static void test_decode(void **state) {
        struct query q = {};

        assert_int_equal(query_parse("path=%2Ftmp%2Fa%20b+c%2b&recursive=true&flag&=empty-key&&x=%e2%82%ac", &q), 0);
        assert_int_equal(q.n, 5);
        assert_string_equal(query_get(&q, "path"), "/tmp/a b c+");
        assert_string_equal(query_get(&q, "recursive"), "true");
        assert_string_equal(query_get(&q, "flag"), "");
        assert_string_equal(query_get(&q, ""), "empty-key");
        assert_string_equal(query_get(&q, "x"), "\xe2\x82\xac");
        assert_null(query_get(&q, "missing"));
        query_done(&q);

        /* Keys are decoded too; '=' inside a value is kept. */
        assert_int_equal(query_parse("p%61th=a=b", &q), 0);
        assert_string_equal(query_get(&q, "path"), "a=b");
        query_done(&q);

        /* No query at all, or an empty one. */
        assert_int_equal(query_parse(NULL, &q), 0);
        assert_int_equal(q.n, 0);
        assert_int_equal(query_parse("", &q), 0);
        assert_int_equal(q.n, 0);
}

static void test_errors(void **state) {
        static const struct {
                const char *text;
                int error;
        } cases[] = {
                {"path=%00", -EBADMSG},       {"path=/a%00b", -EBADMSG}, {"pa%00th=x", -EBADMSG},
                {"path=%", -EINVAL},          {"path=%2", -EINVAL},      {"path=%zz", -EINVAL},
                {"path=%2g", -EINVAL},        {"a=1&path=%", -EINVAL},   {"%=x", -EINVAL},
        };
        _cleanup_buf_ struct buf many = {};
        struct query q = {};

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = query_parse(cases[i].text, &q);
                if (r != cases[i].error)
                        fail_msg("case %zu (%s): got %d, want %d", i, cases[i].text, r, cases[i].error);
                assert_int_equal(q.n, 0);
        }
        assert_non_null(strstr(query_strerror(-EBADMSG), "%00"));

        buf_init(&many, 4096);
        for (int i = 0; i <= QUERY_MAX_PARAMS; i++)
                assert_int_equal(buf_printf(&many, "k%d=v&", i), 0);
        assert_int_equal(query_parse(many.data, &q), -E2BIG);
}

static void test_check(void **state) {
        static const char *const allowed[] = {"path", "user", NULL};
        const char *key = NULL;
        struct query q = {};

        assert_int_equal(query_parse("path=/a&user=root", &q), 0);
        assert_int_equal(query_check(&q, allowed, &key), 0);
        query_done(&q);

        assert_int_equal(query_parse("path=/a&bogus=1", &q), 0);
        assert_int_equal(query_check(&q, allowed, &key), -ENOENT);
        assert_string_equal(key, "bogus");
        query_done(&q);

        assert_int_equal(query_parse("path=/a&path=/b", &q), 0);
        assert_int_equal(query_check(&q, allowed, &key), -ENOTUNIQ);
        assert_string_equal(key, "path");
        assert_string_equal(query_get(&q, "path"), "/a"); /* the first one */
        query_done(&q);
}

static void test_values(void **state) {
        uint64_t v = 0;
        bool b = false;

        assert_int_equal(query_parse_uint("16", 1, 16, &v), 0);
        assert_int_equal(v, 16);
        assert_int_equal(query_parse_uint("0", 1, 16, &v), -EINVAL);
        assert_int_equal(query_parse_uint("17", 1, 16, &v), -EINVAL);
        assert_int_equal(query_parse_uint("", 1, 16, &v), -EINVAL);
        assert_int_equal(query_parse_uint("-1", 0, 16, &v), -EINVAL);
        assert_int_equal(query_parse_uint("1x", 0, 16, &v), -EINVAL);
        assert_int_equal(query_parse_uint("99999999999999999999999", 0, UINT64_MAX, &v), -EINVAL);

        assert_int_equal(query_parse_bool("true", &b), 0);
        assert_true(b);
        assert_int_equal(query_parse_bool("0", &b), 0);
        assert_false(b);
        assert_int_equal(query_parse_bool("yes", &b), -EINVAL);
        assert_int_equal(query_parse_bool("", &b), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decode),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_check),
                cmocka_unit_test(test_values),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
