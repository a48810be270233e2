/* test_template_shift.c — template_shift moves a tree into the sandboxes' uid range exactly
 * once per file: a file with several names (hard links, as perl in Debian's tree) is shifted
 * once, not once per name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"
#include "template/template.h"

static uid_t owner(const char *dir, const char *name) {
        char path[4200];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        assert_int_equal(lstat(path, &st), 0);
        return st.st_uid;
}

static void test_hard_links_are_shifted_once(void **state) {
        char dir[] = "/tmp/ai2in-shift-XXXXXX", path[4200], link2[4200], link3[4200];
        struct error e = {0};
        unsigned long files = 0;
        int fd;

        if (geteuid() != 0)
                skip(); /* chown to another uid needs root */
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/perl", dir);
        snprintf(link2, sizeof(link2), "%s/perl5.36.0", dir);
        snprintf(link3, sizeof(link3), "%s/sub/perl-again", dir);
        assert_true((fd = open(path, O_WRONLY | O_CREAT, 0755)) >= 0);
        close(fd);
        assert_int_equal(link(path, link2), 0);
        snprintf(path, sizeof(path), "%s/sub", dir);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/perl", dir);
        assert_int_equal(link(path, link3), 0);
        snprintf(path, sizeof(path), "%s/single", dir);
        assert_true((fd = open(path, O_WRONLY | O_CREAT, 0644)) >= 0);
        close(fd);
        assert_int_equal(chown(path, 5, 5), 0);

        assert_int_equal(template_shift(dir, 1000000, &files, &e), 0);
        assert_int_equal(owner(dir, "perl"), 1000000);
        assert_int_equal(owner(dir, "perl5.36.0"), 1000000);
        assert_int_equal(owner(dir, "sub/perl-again"), 1000000);
        assert_int_equal(owner(dir, "single"), 1000005);
        assert_int_equal(owner(dir, "."), 1000000);
        assert_int_equal(files, 4); /* ., sub, single and the one inode with three names */

        /* A second shift (another tree) starts from nothing remembered. */
        assert_int_equal(template_shift(dir, 10, &files, &e), 0);
        assert_int_equal(owner(dir, "perl"), 1000010);
        assert_int_equal(rm_rf(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hard_links_are_shifted_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
