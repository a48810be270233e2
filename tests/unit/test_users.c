/* test_users.c — the agent's account files (agent/users.c): lookups in a temporary passwd and
 * group, and what a sandbox's root may put in their place: a FIFO (which must not block), a
 * directory, a file over the size cap, a symlink to a real file (followed), lines without a
 * final newline or with a NUL in them. Root is found whatever the files are.
 *
 * The agent is a separate static program, so its sources are compiled in here directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>

#include "../../agent/users.c"

struct fixture {
        char root[64];
        char passwd[96];
        char group[96];
};

static void write_bytes(const char *path, const char *data, size_t n) {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *text) {
        write_bytes(path, text, strlen(text));
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        snprintf(f->root, sizeof(f->root), "/tmp/test-users-XXXXXX");
        if (!mkdtemp(f->root))
                return -1;
        snprintf(f->passwd, sizeof(f->passwd), "%s/passwd", f->root);
        snprintf(f->group, sizeof(f->group), "%s/group", f->root);
        write_text(f->passwd, "root:x:0:0:root:/root:/bin/bash\n"
                              "# a comment\n"
                              "sandbox:x:1000:1000::/home/sandbox:/bin/bash\n"
                              "broken:x:zz:1:::\n"
                              "last:x:1001:1001::/home/last:/bin/sh"); /* no final newline */
        write_text(f->group, "root:x:0:\nsandbox:x:1000:\ndocker:x:999:sandbox,other\naudio:x:29:other\n");
        *state = f;
        return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int teardown(void **state) {
        struct fixture *f = *state;

        nftw(f->root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static void test_lookup(void **state) {
        struct fixture *f = *state;
        struct user_info u = {};

        assert_int_equal(user_lookup_in(f->passwd, f->group, "sandbox", &u), 0);
        assert_int_equal(u.uid, 1000);
        assert_int_equal(u.gid, 1000);
        assert_string_equal(u.home, "/home/sandbox");
        assert_int_equal(u.n_groups, 2);
        assert_int_equal(u.groups[0], 1000);
        assert_int_equal(u.groups[1], 999);
        user_info_done(&u);

        assert_int_equal(user_lookup_in(f->passwd, f->group, "last", &u), 0);
        assert_string_equal(u.shell, "/bin/sh");
        user_info_done(&u);

        assert_int_equal(user_lookup_in(f->passwd, f->group, "nobody", &u), -ESRCH);
        assert_int_equal(user_lookup_in(f->passwd, f->group, "broken", &u), -EBADMSG);
}

/* A FIFO in place of an account file: refused at once (a blocking open would wait for a
 * writer forever; the alarm turns a hang into a failure). */
static void test_fifo_does_not_block(void **state) {
        struct fixture *f = *state;
        struct user_info u = {};
        char *text = NULL;

        assert_int_equal(unlink(f->passwd), 0);
        assert_int_equal(mkfifo(f->passwd, 0644), 0);
        alarm(5);
        assert_int_equal(account_file_read(f->passwd, &text, NULL), -EINVAL);
        assert_int_equal(user_lookup_in(f->passwd, f->group, "sandbox", &u), -EINVAL);
        assert_string_equal(user_strerror(-EINVAL), "/etc/passwd or /etc/group is not a regular file");

        /* Root is found anyway, so that the sandbox can still be repaired. */
        assert_int_equal(user_lookup_in(f->passwd, f->group, "root", &u), 0);
        assert_int_equal(u.uid, 0);
        assert_string_equal(u.home, "/root");
        user_info_done(&u);

        /* The group file as a FIFO: the same. */
        assert_int_equal(unlink(f->passwd), 0);
        write_text(f->passwd, "sandbox:x:1000:1000::/home/sandbox:/bin/bash\n");
        assert_int_equal(unlink(f->group), 0);
        assert_int_equal(mkfifo(f->group, 0644), 0);
        assert_int_equal(user_lookup_in(f->passwd, f->group, "sandbox", &u), -EINVAL);
        assert_int_equal(user_lookup_in(f->passwd, f->group, "root", &u), 0);
        user_info_done(&u);
        alarm(0);
}

static void test_not_regular_or_too_big(void **state) {
        struct fixture *f = *state;
        char path[128], *text = NULL;
        size_t len = 0;

        /* A directory. */
        assert_int_equal(unlink(f->passwd), 0);
        assert_int_equal(mkdir(f->passwd, 0755), 0);
        assert_int_equal(account_file_read(f->passwd, &text, NULL), -EINVAL);
        assert_int_equal(rmdir(f->passwd), 0);

        /* Over the cap (sparse: no disk used). */
        write_text(f->passwd, "sandbox:x:1000:1000::/home/sandbox:/bin/bash\n");
        assert_int_equal(truncate(f->passwd, ACCOUNT_FILE_MAX + 1), 0);
        assert_int_equal(account_file_read(f->passwd, &text, NULL), -EFBIG);
        assert_int_equal(truncate(f->passwd, ACCOUNT_FILE_MAX), 0);
        assert_int_equal(account_file_read(f->passwd, &text, &len), 0);
        assert_int_equal(len, ACCOUNT_FILE_MAX);
        free(text);

        /* A symlink to a regular file is followed. */
        snprintf(path, sizeof(path), "%s/link", f->root);
        assert_int_equal(symlink(f->group, path), 0);
        assert_int_equal(account_file_read(path, &text, &len), 0);
        assert_int_equal(len, strlen(text));
        assert_non_null(strstr(text, "docker:x:999:"));
        free(text);

        /* Missing. */
        snprintf(path, sizeof(path), "%s/missing", f->root);
        assert_int_equal(account_file_read(path, &text, NULL), -ENOENT);
}

/* A NUL inside a line ends that line's text, not the file: later lines still count. */
static void test_nul_in_a_line(void **state) {
        static const char data[] = "junk:x:5:5\0more::/:/bin/sh\nsandbox:x:1000:1000::/home/sandbox:/bin/bash\n";
        struct fixture *f = *state;
        struct user_info u = {};

        write_bytes(f->passwd, data, sizeof(data) - 1);
        assert_int_equal(user_lookup_in(f->passwd, f->group, "sandbox", &u), 0);
        assert_int_equal(u.uid, 1000);
        user_info_done(&u);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fifo_does_not_block, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_regular_or_too_big, setup, teardown),
                cmocka_unit_test_setup_teardown(test_nul_in_a_line, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
