/* The preview proxy's pure parts: which sandbox and port a Host names, and the removal of
 * the traffic token from a request head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "proxy/proxy-internal.h"
#include "proxy/proxy.h"

static void test_host_parse(void **state) {
        char id[SANDBOX_ID_LEN + 1];
        uint16_t port;

        assert_int_equal(preview_host_parse("8000-sbx_abcdefghij0123456789.localhost:7301", &port, id), 0);
        assert_int_equal(port, 8000);
        assert_string_equal(id, "sbx_abcdefghij0123456789");
        /* Any domain, with or without a port; upper case as some clients send it. */
        assert_int_equal(preview_host_parse("65535-SBX_ABCDEFGHIJ0123456789.example.com", &port, id), 0);
        assert_int_equal(port, 65535);
        assert_string_equal(id, "sbx_abcdefghij0123456789");
        assert_int_equal(preview_host_parse("1-sbx_abcdefghij0123456789:80", &port, id), 0);
        assert_int_equal(port, 1);
        /* The DNS-safe form the SDKs make ("_" as "-"): the same id, in its API form. */
        assert_int_equal(preview_host_parse("8000-sbx-abcdefghij0123456789.localhost:7301", &port, id), 0);
        assert_int_equal(port, 8000);
        assert_string_equal(id, "sbx_abcdefghij0123456789");
        assert_int_equal(preview_host_parse("443-SBX-ABCDEFGHIJ0123456789.sbx.example.com", &port, id), 0);
        assert_int_equal(port, 443);
        assert_string_equal(id, "sbx_abcdefghij0123456789");
}

static void test_host_parse_refuses(void **state) {
        static const char *const bad[] = {
                "localhost:7301",
                "",
                "sbx_abcdefghij0123456789.localhost",
                "0-sbx_abcdefghij0123456789.localhost",      /* port 0 */
                "08000-sbx_abcdefghij0123456789.localhost",  /* leading zero */
                "65536-sbx_abcdefghij0123456789.localhost",  /* over 65535 */
                "123456-sbx_abcdefghij0123456789.localhost",
                "8000sbx_abcdefghij0123456789.localhost",
                "8000-sbx_abcdefghij012345678.localhost",    /* id too short */
                "8000-sbx_abcdefghij01234567890.localhost",  /* too long */
                "8000-sbx_abcdefghij012345678!.localhost",
                "8000-abc_abcdefghij0123456789.localhost",
                "-8000-sbx_abcdefghij0123456789.localhost",
                "8000--sbx_abcdefghij0123456789.localhost",
                "8000-sbx-abcdefghij012345678.localhost",    /* DNS-safe, too short */
                "8000-sbx-abcdefghij01234567890.localhost",  /* too long */
                "8000-sbx--abcdefghij012345678.localhost",   /* '-' in the random part */
                "8000-sbx-abcdefghij012345678_.localhost",   /* '_' in it */
                "8000-sbxabcdefghij0123456789.localhost",    /* no separator */
                "8000-abc-abcdefghij0123456789.localhost",
                "8000-sbx-.localhost",
        };
        char id[SANDBOX_ID_LEN + 1];
        uint16_t port;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (preview_host_parse(bad[i], &port, id) != -EINVAL)
                        fail_msg("accepted '%s'", bad[i]);
}

static void test_strip_token(void **state) {
        char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Ai2in-Traffic-Token: secret\r\nAccept: */*\r\n"
                      "x-ai2in-traffic-token:again\r\nX-Ai2in-Traffic-Tokens: kept\r\n\r\n";
        size_t n = head_strip_token(head, head, strlen(head));

        head[n] = 0;
        assert_string_equal(head, "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Ai2in-Traffic-Tokens: kept\r\n\r\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_host_parse),
                cmocka_unit_test(test_host_parse_refuses),
                cmocka_unit_test(test_strip_token),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
