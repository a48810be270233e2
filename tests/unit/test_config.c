/* test_config.c — defaults, file, environment and flags, in that order of precedence, and
 * clear errors for bad values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static void test_precedence(void **state) {
        char path[] = "/tmp/ai2in-conf-XXXXXX";
        int fd = mkstemp(path), argi;
        const char *text = "# comment\nidle-timeout = 60\nmax-running=3\nbridge = br-file\n";
        struct config c;
        struct error e = {0};

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        setenv("AI2IN_MAX_RUNNING", "4", 1);
        char *argv[] = {"ai2ind", "--config", path, "--bridge=br-flag", "--listen", "127.0.0.1:9999", "serve", NULL};
        assert_int_equal(config_load(&c, 7, argv, &argi, &e), 0);
        assert_int_equal(argi, 6);
        assert_int_equal(c.idle_timeout, 60);   /* file */
        assert_int_equal(c.max_running, 4);     /* env over file */
        assert_string_equal(c.bridge, "br-flag"); /* flag over file */
        assert_string_equal(c.listen, "127.0.0.1:9999");
        assert_string_equal(c.state_dir, "/var/lib/ai2in"); /* default */
        assert_string_equal(c.template_dir, "/var/lib/ai2in/templates");
        config_free(&c);
        unsetenv("AI2IN_MAX_RUNNING");
        unlink(path);
}

static void test_errors(void **state) {
        struct config c;
        struct error e = {0};
        int argi;

        char *bad_int[] = {"ai2ind", "--idle-timeout", "-5", NULL};
        assert_true(config_load(&c, 3, bad_int, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "idle-timeout"));
        config_free(&c);

        char *unknown[] = {"ai2ind", "--frobnicate", "1", NULL};
        assert_true(config_load(&c, 3, unknown, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "--frobnicate"));
        config_free(&c);

        char *missing[] = {"ai2ind", "--config", "/nonexistent/ai2ind.conf", NULL};
        assert_true(config_load(&c, 3, missing, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "/nonexistent/ai2ind.conf"));
        config_free(&c);

        char *long_bridge[] = {"ai2ind", "--bridge", "a-very-long-bridge-name", NULL};
        assert_true(config_load(&c, 3, long_bridge, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "15"));
        config_free(&c);
}

/* The store: SQLite unless database is set, in the file, the environment or a flag. */
static void test_database(void **state) {
        char path[] = "/tmp/ai2in-conf-XXXXXX";
        int fd = mkstemp(path), argi;
        const char *text = "database = postgresql://file@h/d\n";
        struct config c;
        struct error e = {0};

        char *dflt[] = {"ai2ind", "--config", "/dev/null", NULL};
        assert_int_equal(config_load(&c, 3, dflt, &argi, &e), 0);
        assert_string_equal(c.database, "");
        config_free(&c);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        char *file[] = {"ai2ind", "--config", path, NULL};
        assert_int_equal(config_load(&c, 3, file, &argi, &e), 0);
        assert_string_equal(c.database, "postgresql://file@h/d");
        config_free(&c);
        setenv("AI2IN_DATABASE", "postgresql://env@h/d", 1);
        assert_int_equal(config_load(&c, 3, file, &argi, &e), 0);
        assert_string_equal(c.database, "postgresql://env@h/d");
        config_free(&c);
        char *flag[] = {"ai2ind", "--config", path, "--database", "postgres://flag@h/d", NULL};
        assert_int_equal(config_load(&c, 5, flag, &argi, &e), 0);
        assert_string_equal(c.database, "postgres://flag@h/d");
        config_free(&c);
        unsetenv("AI2IN_DATABASE");
        unlink(path);
}

/* The node: its name defaults to the host name and is checked when given; its advertised URL
 * follows the API's address (the host name for 0.0.0.0) and must parse. */
static void test_node(void **state) {
        struct config c;
        struct error e = {0};
        char host[256] = "", want[300];
        int argi;

        char *dflt[] = {"ai2ind", "--config", "/dev/null", "--listen", "127.0.0.1:9000", NULL};
        assert_int_equal(config_load(&c, 5, dflt, &argi, &e), 0);
        assert_true(strlen(c.node_name) >= 1 && strlen(c.node_name) <= 63);
        assert_int_equal(strspn(c.node_name, "abcdefghijklmnopqrstuvwxyz0123456789-."), strlen(c.node_name));
        assert_string_equal(c.advertise, "http://127.0.0.1:9000");
        assert_int_equal(c.node_lease, 15);
        config_free(&c);

        char *any[] = {"ai2ind", "--config", "/dev/null", "--listen", "0.0.0.0:7300", "--node-name", "n1.dc-2", NULL};
        assert_int_equal(config_load(&c, 7, any, &argi, &e), 0);
        assert_string_equal(c.node_name, "n1.dc-2");
        assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
        snprintf(want, sizeof(want), "http://%s:7300", host);
        for (char *p = want; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        assert_string_equal(c.advertise, want);
        config_free(&c);

        char *given[] = {"ai2ind", "--config", "/dev/null", "--advertise", "https://[fd00::1]:8443/", NULL};
        assert_int_equal(config_load(&c, 5, given, &argi, &e), 0);
        assert_string_equal(c.advertise, "https://[fd00::1]:8443/");
        config_free(&c);

        const char *bad_names[] = {"Upper", "under_score", "", "a234567890123456789012345678901234567890123456789012345678901234"};
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
                char *bad[] = {"ai2ind", "--config", "/dev/null", "--node-name", (char *) bad_names[i], NULL};
                error_clear(&e);
                if (!*bad_names[i]) /* empty: the default, which is always valid */
                        assert_int_equal(config_load(&c, 5, bad, &argi, &e), 0);
                else {
                        assert_true(config_load(&c, 5, bad, &argi, &e) < 0);
                        assert_non_null(strstr(e.message, "node-name"));
                }
                config_free(&c);
        }
        const char *bad_urls[] = {"ftp://h", "http://", "http://h:0", "http://h:99999", "http://h/path", "h:7300"};
        for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
                char *bad[] = {"ai2ind", "--config", "/dev/null", "--advertise", (char *) bad_urls[i], NULL};
                error_clear(&e);
                assert_true(config_load(&c, 5, bad, &argi, &e) < 0);
                assert_non_null(strstr(e.message, "advertise"));
                config_free(&c);
        }
        char *short_lease[] = {"ai2ind", "--config", "/dev/null", "--node-lease", "2", NULL};
        assert_true(config_load(&c, 5, short_lease, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "node-lease"));
        config_free(&c);
}

/* Preview URLs: the domain follows the proxy's port unless set; the scheme is http or https. */
static void test_preview(void **state) {
        struct config c;
        struct error e = {0};
        int argi;

        char *dflt[] = {"ai2ind", "--config", "/dev/null", "--preview-listen", "127.0.0.1:9301", NULL};
        assert_int_equal(config_load(&c, 5, dflt, &argi, &e), 0);
        assert_string_equal(c.preview_domain, "localhost:9301");
        assert_string_equal(c.preview_scheme, "http");
        config_free(&c);

        char *set[] = {"ai2ind", "--config", "/dev/null", "--preview-domain", "preview.example.com", "--preview-scheme",
                       "https", NULL};
        assert_int_equal(config_load(&c, 7, set, &argi, &e), 0);
        assert_string_equal(c.preview_domain, "preview.example.com");
        assert_string_equal(c.preview_scheme, "https");
        config_free(&c);

        char *bad_scheme[] = {"ai2ind", "--config", "/dev/null", "--preview-scheme", "ftp", NULL};
        assert_true(config_load(&c, 5, bad_scheme, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "preview-scheme"));
        config_free(&c);

        char *bad_domain[] = {"ai2ind", "--config", "/dev/null", "--preview-domain", "a/b", NULL};
        assert_true(config_load(&c, 5, bad_domain, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "preview-domain"));
        config_free(&c);
}

/* TLS (the files are read at serve, not here): tls-cert makes the advertised URLs and preview
 * URLs https by default; with a cluster CA, the node must advertise https://. */
static void test_tls(void **state) {
        struct config c;
        struct error e = {0};
        int argi;

        char *tls[] = {"ai2ind", "--config", "/dev/null", "--listen", "127.0.0.1:9000", "--preview-listen", "127.0.0.1:9001",
                       "--tls-cert", "/x.crt", "--tls-key", "/x.key", NULL};
        assert_int_equal(config_load(&c, 11, tls, &argi, &e), 0);
        assert_string_equal(c.advertise, "https://127.0.0.1:9000");
        assert_string_equal(c.advertise_preview, "https://127.0.0.1:9001");
        assert_string_equal(c.preview_scheme, "https");
        config_free(&c);

        char *ca_plain[] = {"ai2ind", "--config", "/dev/null", "--cluster-ca", "/ca.crt", NULL};
        assert_true(config_load(&c, 5, ca_plain, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "must be https://"));
        config_free(&c);

        char *ca_https[] = {"ai2ind", "--config", "/dev/null", "--cluster-ca", "/ca.crt", "--advertise", "https://n1:7300",
                            "--advertise-preview", "https://n1:7301", NULL};
        error_clear(&e);
        assert_int_equal(config_load(&c, 9, ca_https, &argi, &e), 0);
        assert_string_equal(c.advertise_preview, "https://n1:7301");
        config_free(&c);

        char *bad_preview[] = {"ai2ind", "--config", "/dev/null", "--advertise-preview", "ftp://n1:7301", NULL};
        assert_true(config_load(&c, 5, bad_preview, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "advertise-preview"));
        config_free(&c);
}

/* Half of MemTotal in MiB, read here independently of config.c. */
static long long half_memtotal_mb(void) {
        char line[256];
        long long kib = 0;
        FILE *f = fopen("/proc/meminfo", "re");

        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "MemTotal:", 9) == 0)
                        kib = strtoll(line + 9, NULL, 10);
        fclose(f);
        return kib / 1024 / 2;
}

/* The sandbox budgets: max-memory-mb derived from the host unless set, default-memory-mb
 * never above it; owner uids that meet the mapped range refused. */
static void test_budgets(void **state) {
        long long half = half_memtotal_mb();
        struct config c;
        struct error e = {0};
        int argi;

        char *dflt[] = {"ai2ind", "--config", "/dev/null", NULL};
        assert_int_equal(config_load(&c, 3, dflt, &argi, &e), 0);
        assert_int_equal(c.max_memory_mb, half < 64 ? 64 : half > 65536 ? 65536 : half);
        assert_int_equal(c.sandbox_open_files, 1024);
        assert_int_equal(c.sandbox_ptys, 128);
        assert_int_equal(c.sandbox_inotify_instances, 128);
        assert_int_equal(c.owner_uid_base, 2000000000);
        config_free(&c);

        char *low[] = {"ai2ind", "--config", "/dev/null", "--max-memory-mb", "256", NULL};
        assert_int_equal(config_load(&c, 5, low, &argi, &e), 0);
        assert_int_equal(c.max_memory_mb, 256);
        assert_int_equal(c.default_memory_mb, 256); /* lowered from 512 */
        config_free(&c);

        char *tiny[] = {"ai2ind", "--config", "/dev/null", "--max-memory-mb", "32", NULL};
        assert_true(config_load(&c, 5, tiny, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "max-memory-mb"));
        config_free(&c);

        char *overlap[] = {"ai2ind", "--config", "/dev/null", "--owner-uid-base", "990000", NULL};
        assert_true(config_load(&c, 5, overlap, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "overlap"));
        config_free(&c);

        char *too_high[] = {"ai2ind", "--config", "/dev/null", "--owner-uid-base", "4290000000", NULL};
        assert_true(config_load(&c, 5, too_high, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "owner-uid-base"));
        config_free(&c);
}

/* The sandboxes' own uid ranges fit below 2^32-1 and meet neither the canonical range nor
 * the owner uids. */
static void test_uid_ranges(void **state) {
        struct config c;
        struct error e = {0};
        int argi;

        char *dflt[] = {"ai2ind", "--config", "/dev/null", NULL};
        assert_int_equal(config_load(&c, 3, dflt, &argi, &e), 0);
        assert_int_equal(c.uid_ranges_base, 2147483648LL);
        assert_int_equal(c.uid_ranges, 32767);
        config_free(&c);

        char *canonical[] = {"ai2ind", "--config", "/dev/null", "--sandbox-uid-ranges-base", "65536", NULL};
        assert_true(config_load(&c, 5, canonical, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "overlap uid-base"));
        config_free(&c);

        char *owners[] = {"ai2ind", "--config", "/dev/null", "--sandbox-uid-ranges-base", "1900000000", NULL};
        assert_true(config_load(&c, 5, owners, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "owner uids"));
        config_free(&c);

        char *past[] = {"ai2ind", "--config", "/dev/null", "--sandbox-uid-ranges", "32768", NULL};
        assert_true(config_load(&c, 5, past, &argi, &e) < 0);
        assert_non_null(strstr(e.message, "past 2^32-2"));
        config_free(&c);

        char *fit[] = {"ai2ind", "--config", "/dev/null", "--sandbox-uid-ranges-base", "1065536", "--sandbox-uid-ranges",
                       "1000", NULL};
        assert_int_equal(config_load(&c, 7, fit, &argi, &e), 0);
        config_free(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_precedence), cmocka_unit_test(test_errors), cmocka_unit_test(test_database), cmocka_unit_test(test_node),
                                           cmocka_unit_test(test_preview), cmocka_unit_test(test_tls), cmocka_unit_test(test_budgets),
                                           cmocka_unit_test(test_uid_ranges)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
