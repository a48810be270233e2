/* test_spawn.c — helper programs: output and exit code, a deadline that kills the whole
 * process group, no descriptor of the engine leaking into the child, a child that leaves a
 * daemon holding its output does not hold the caller, a missing program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spawn.h"
#include "timeutil.h"

static void test_output_and_status(void **state) {
        _cleanup_buf_ struct buf out;
        char *argv[] = {"sh", "-c", "echo hello; echo oops >&2; exit 3", NULL};
        int status = -1;

        buf_init(&out, 4096);
        assert_int_equal(spawn_run(argv, NULL, &status, &out), 0);
        assert_int_equal(status, 3);
        assert_int_equal(out.len, 11);
        assert_memory_equal(out.data, "hello\noops\n", 11);
}

/* Whether pid is gone or a zombie (killed, not yet reaped by whoever adopted it). */
static bool dead(pid_t pid) {
        char path[64], stat[256];
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "r");
        if (!f)
                return true;
        bool z = fgets(stat, sizeof(stat), f) && strstr(stat, ") Z ");
        fclose(f);
        return z;
}

static void test_deadline_kills_the_group(void **state) {
        _cleanup_buf_ struct buf out;
        char *argv[] = {"sh", "-c", "sleep 60 & echo $!; sleep 60", NULL};
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = -1, .timeout_ms = 300};
        int64_t t0 = mono_ms();
        int status;
        pid_t grandchild;

        buf_init(&out, 4096);
        assert_int_equal(spawn_run(argv, &o, &status, &out), -ETIMEDOUT);
        assert_true(mono_ms() - t0 < 3000);
        assert_true(out.len > 0);
        grandchild = (pid_t) atoi(out.data);
        assert_true(grandchild > 0);
        for (int i = 0; i < 100 && !dead(grandchild); i++)
                usleep(10000);
        assert_true(dead(grandchild)); /* not only the child: what it started too */
}

static void test_no_descriptor_leaks(void **state) {
        _cleanup_buf_ struct buf out;
        /* The shell's own descriptors above 2 (test -e opens nothing). */
        char *argv[] = {"sh", "-c", "f=3; while [ $f -lt 256 ]; do [ -e /proc/$$/fd/$f ] && echo $f; f=$((f+1)); done; true",
                        NULL};
        int leaked = open("/dev/null", O_RDONLY), status; /* no O_CLOEXEC: the engine's libraries may do this */
        int extra = open("/dev/null", O_RDONLY | O_CLOEXEC);
        struct spawn_opts o = {.extra_fd = extra, .stdio_fd = -1};

        assert_true(leaked >= 3 && extra >= 3);
        buf_init(&out, 4096);
        assert_int_equal(spawn_run(argv, NULL, &status, &out), 0);
        assert_int_equal(out.len, 0); /* none: the leaked one was closed */
        buf_free(&out);
        buf_init(&out, 4096);
        assert_int_equal(spawn_run(argv, &o, &status, &out), 0);
        assert_int_equal(out.len, 2);
        assert_memory_equal(out.data, "3\n", 2); /* only the one passed on */
        close(leaked);
        close(extra);
}

static void test_daemon_holding_the_output_does_not_hold_us(void **state) {
        _cleanup_buf_ struct buf out;
        char *argv[] = {"sh", "-c", "sleep 5 & echo started", NULL};
        int64_t t0 = mono_ms();
        int status;

        buf_init(&out, 4096);
        assert_int_equal(spawn_run(argv, NULL, &status, &out), 0);
        assert_int_equal(status, 0);
        assert_true(mono_ms() - t0 < 2000);
        assert_int_equal(out.len, 8);
        assert_memory_equal(out.data, "started\n", 8);
}

static void test_missing_program(void **state) {
        char *argv[] = {"ai2in-no-such-program", NULL};
        char err[128];
        int status;

        assert_int_equal(spawn_run(argv, NULL, &status, NULL), -ENOENT);
        assert_int_equal(spawn_check(argv, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "ai2in-no-such-program"));
}

int main(void) {
        signal(SIGCHLD, SIG_DFL);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_output_and_status), cmocka_unit_test(test_deadline_kills_the_group),
                cmocka_unit_test(test_no_descriptor_leaks), cmocka_unit_test(test_daemon_holding_the_output_does_not_hold_us),
                cmocka_unit_test(test_missing_program),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
