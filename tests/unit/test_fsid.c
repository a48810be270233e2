/* test_fsid.c — a thread's filesystem identity (agent/fsid.c): while one thread acts as a
 * user, the kernel checks that thread's file accesses as the user's (a root-only file is
 * out of reach, what it creates is the user's), and no other thread's; leaving gives the
 * thread root's access, groups and ids back, and the process stays non-dumpable.
 *
 * Needs root (CAP_SETUID, CAP_SETGID); skipped otherwise. The agent is a separate static
 * program, so its sources are compiled in here directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#include "../../agent/fsid.c"

#define NOBODY 65534

struct shared {
        char dir[64];
        char secret[96]; /* root's, mode 0600 */
        pthread_barrier_t switched, checked;
        int user_open_errno;  /* what the switched thread got opening the secret */
        uid_t created_uid;    /* owner of what the switched thread created */
};

static int try_open(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return errno;
        close(fd);
        return 0;
}

static void *as_nobody(void *arg) {
        struct shared *s = arg;
        gid_t groups[] = {NOBODY};
        struct fsid id;
        char path[128];
        struct stat st;
        int fd;

        assert_int_equal(fsid_enter(NOBODY, NOBODY, groups, 1, &id), 0);
        assert_true(id.active);
        s->user_open_errno = try_open(s->secret);
        snprintf(path, sizeof(path), "%s/made", s->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        s->created_uid = st.st_uid;
        close(fd);
        pthread_barrier_wait(&s->switched); /* the main thread checks it is still root */
        pthread_barrier_wait(&s->checked);
        fsid_leave(&id);
        assert_false(id.active);
        assert_int_equal(try_open(s->secret), 0);
        assert_int_equal((int) syscall(SYS_setfsuid, -1), 0);
        assert_int_equal((int) syscall(SYS_setfsgid, -1), 0);
        return NULL;
}

static void test_switch_is_per_thread(void **state) {
        struct shared s = {};
        gid_t before[FSID_GROUPS_MAX], after[FSID_GROUPS_MAX];
        int n_before, n_after, fd;
        pthread_t t;

        if (geteuid() != 0)
                skip();
        assert_int_equal(prctl(PR_SET_DUMPABLE, 1), 0);
        n_before = getgroups(FSID_GROUPS_MAX, before);
        snprintf(s.dir, sizeof(s.dir), "/tmp/test-fsid-XXXXXX");
        assert_non_null(mkdtemp(s.dir));
        assert_int_equal(chmod(s.dir, 0777), 0);
        snprintf(s.secret, sizeof(s.secret), "%s/secret", s.dir);
        fd = open(s.secret, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        pthread_barrier_init(&s.switched, NULL, 2);
        pthread_barrier_init(&s.checked, NULL, 2);

        assert_int_equal(pthread_create(&t, NULL, as_nobody, &s), 0);
        pthread_barrier_wait(&s.switched);
        assert_int_equal(s.user_open_errno, EACCES);
        assert_int_equal(s.created_uid, NOBODY);
        assert_int_equal(try_open(s.secret), 0); /* this thread is root all along */
        pthread_barrier_wait(&s.checked);
        assert_int_equal(pthread_join(t, NULL), 0);

        n_after = getgroups(FSID_GROUPS_MAX, after);
        assert_int_equal(n_after, n_before);
        assert_memory_equal(after, before, (size_t) n_before * sizeof(gid_t));
        assert_int_equal(prctl(PR_GET_DUMPABLE), 0);

        unlink(s.secret);
        snprintf(s.secret, sizeof(s.secret), "%s/made", s.dir);
        unlink(s.secret);
        rmdir(s.dir);
}

static void test_root_is_no_switch(void **state) {
        struct fsid id;

        if (geteuid() != 0)
                skip();
        assert_int_equal(fsid_enter(0, 0, NULL, 0, &id), 0);
        assert_false(id.active);
        fsid_leave(&id); /* a no-op */
        assert_int_equal(fsid_enter(NOBODY, NOBODY, NULL, FSID_GROUPS_MAX + 1, &id), -E2BIG);
        assert_false(id.active);
        assert_int_equal((int) syscall(SYS_setfsuid, -1), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_switch_is_per_thread),
                cmocka_unit_test(test_root_is_no_switch),
        };

        log_setup("test_fsid", LOG_LVL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
