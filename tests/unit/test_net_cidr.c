/* test_net_cidr.c — the CIDRs of deny-out and of a sandbox's network rules: normalized (host
 * bits cleared, a bare address as /32), anything else refused; and the internet-access
 * setting: on by default, off, and a clear error for anything else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "config.h"
#include "net/net.h"

static void check(const char *in, const char *want) {
        char out[20] = "";

        assert_int_equal(net_cidr_normalize(in, strlen(in), out), 0);
        assert_string_equal(out, want);
}

static void test_normalized(void **state) {
        check("10.1.2.3", "10.1.2.3/32");
        check("10.1.2.3/24", "10.1.2.0/24");
        check("169.254.169.254/32", "169.254.169.254/32");
        check("0.0.0.0/0", "0.0.0.0/0");
        check("255.255.255.255/1", "128.0.0.0/1");
        /* Only len bytes are read: the rest of a comma list is not part of it. */
        char out[20];
        assert_int_equal(net_cidr_normalize("10.0.0.0/8,192.168.0.0/16", 10, out), 0);
        assert_string_equal(out, "10.0.0.0/8");
}

static void test_refused(void **state) {
        static const char *const bad[] = {"", "pypi.org", "*.githubusercontent.com", "10.1.2.3/33", "10.1.2.3/", "10.1.2/24",
                                          "10.1.2.3/-1", "10.1.2.3/24x", "::1", "2001:db8::/32", " 10.1.2.3",
                                          "10.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20/8"};
        char out[20];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(net_cidr_normalize(bad[i], strlen(bad[i]), out), -EINVAL);
}

static void test_internet_access_setting(void **state) {
        struct config c;
        struct error e = {0};
        int argi;

        char *dflt[] = {"ai2ind", "--config", "/dev/null", "serve", NULL};
        assert_int_equal(config_load(&c, 4, dflt, &argi, &e), 0);
        assert_true(c.internet_access);
        assert_string_equal(c.deny_out, "");
        assert_string_equal(c.dns, "");
        config_free(&c);
        char *off[] = {"ai2ind", "--config", "/dev/null", "--internet-access", "off", "--deny-out", "10.0.0.0/8",
                       "--dns", "10.0.0.53", "serve", NULL};
        assert_int_equal(config_load(&c, 10, off, &argi, &e), 0);
        assert_false(c.internet_access);
        assert_string_equal(c.deny_out, "10.0.0.0/8");
        assert_string_equal(c.dns, "10.0.0.53");
        config_free(&c);
        char *bad[] = {"ai2ind", "--config", "/dev/null", "--internet-access", "yes", "serve", NULL};
        assert_true(config_load(&c, 6, bad, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "internet-access must be on or off"));
        config_free(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_normalized), cmocka_unit_test(test_refused),
                                           cmocka_unit_test(test_internet_access_setting)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
