/* test_ptree.c — finding and ending a command's processes (agent/ptree.c, agent/supervise.c,
 * agent/process.c): /proc/<pid>/stat lines with awkward command names, subtrees of made-up
 * process tables (deep, torn, with cycles), a signal that must not reach a process that took
 * over a pid, the supervisor's command line both ways, and a real supervised command whose
 * children leave its session (setsid, a double fork) and are all ended by child_terminate().
 *
 * The agent is a separate static program, so its sources are compiled in here directly; this
 * test's own binary doubles as the supervisor (main() hands "--supervise" to supervise_main(),
 * as the agent's does), since a supervised spawn runs /proc/self/exe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/prctl.h>

#include "../../agent/process.c"
#include "../../agent/ptree.c"
#include "../../agent/supervise.c"

static void test_parse_stat(void **state) {
        struct ptree_entry e;

        assert_int_equal(parse_stat("42 (a) b) c) S 7 42 42 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 3 0 12345 99", &e), 0);
        assert_int_equal(e.pid, 42);
        assert_int_equal(e.ppid, 7);
        assert_int_equal(e.pgid, 42);
        assert_int_equal(e.state, 'S');
        assert_int_equal(e.threads, 3);
        assert_int_equal(e.start, 12345);
        assert_int_equal(parse_stat("42 (x) Z 1 2", &e), -EINVAL);
        assert_int_equal(parse_stat("nonsense", &e), -EINVAL);
}

static struct ptree table(struct ptree_entry *v, size_t n) {
        qsort(v, n, sizeof(*v), by_pid);
        return (struct ptree){.v = v, .n = n};
}

static bool marked(const struct ptree *t, const bool *in, pid_t pid) {
        const struct ptree_entry *e = ptree_find(t, pid);

        assert_non_null(e);
        return in[e - t->v];
}

static void test_subtree(void **state) {
        /* 1 ─ 10 (root) ─ 11 ─ 12 ─ 13;  10 ─ 14;  1 ─ 20 ─ 21;  30's parent is unknown;
         * 40 and 41 are each other's parent (a torn snapshot). */
        struct ptree_entry v[] = {
                {.pid = 13, .ppid = 12}, {.pid = 1, .ppid = 0},   {.pid = 10, .ppid = 1}, {.pid = 11, .ppid = 10},
                {.pid = 12, .ppid = 11}, {.pid = 14, .ppid = 10}, {.pid = 20, .ppid = 1}, {.pid = 21, .ppid = 20},
                {.pid = 30, .ppid = 99}, {.pid = 40, .ppid = 41}, {.pid = 41, .ppid = 40},
        };
        struct ptree t = table(v, ELEMENTSOF(v));
        bool in[ELEMENTSOF(v)];

        assert_int_equal(ptree_subtree(&t, 10, in), 4);
        assert_true(marked(&t, in, 11) && marked(&t, in, 12) && marked(&t, in, 13) && marked(&t, in, 14));
        assert_false(marked(&t, in, 10) || marked(&t, in, 1) || marked(&t, in, 20) || marked(&t, in, 21));
        assert_false(marked(&t, in, 30) || marked(&t, in, 40) || marked(&t, in, 41));
        assert_int_equal(ptree_subtree(&t, 1, in), 7); /* all but 1 itself, 30, 40 and 41 */
        assert_int_equal(ptree_subtree(&t, 21, in), 0);
        assert_int_equal(ptree_subtree(&t, 12345, in), 0);
}

static void test_deep_chain(void **state) {
        enum { N = 5000 };
        struct ptree_entry *v = calloc(N, sizeof(*v));
        bool *in = calloc(N, sizeof(bool));
        struct ptree t;

        for (int i = 0; i < N; i++)
                v[i] = (struct ptree_entry){.pid = 100 + i, .ppid = 99 + i};
        t = table(v, N);
        assert_int_equal(ptree_subtree(&t, 100, in), N - 1);
        assert_int_equal(ptree_subtree(&t, 100 + N / 2, in), N / 2 - 1);
        free(v);
        free(in);
}

static void test_signal_is_exact(void **state) {
        struct ptree t = {};
        struct ptree_entry e;
        pid_t pid = fork();

        if (pid == 0) {
                pause();
                _exit(0);
        }
        assert_true(pid > 0);
        assert_int_equal(ptree_read(&t), 0);
        assert_non_null(ptree_find(&t, getpid()));
        assert_non_null(ptree_find(&t, pid));
        e = *ptree_find(&t, pid);
        ptree_done(&t);

        e.start++; /* as if the pid were another process's now */
        assert_int_equal(ptree_signal(&e, SIGKILL), -ESRCH);
        assert_int_equal(kill(pid, 0), 0);
        e.start--;
        assert_int_equal(ptree_signal(&e, SIGKILL), 0);
        for (int i = 0; i < 500 && kill(pid, 0) == 0; i++) /* the reaper collects it */
                usleep(10000);
        assert_int_equal(kill(pid, 0), -1);
        assert_int_equal(ptree_signal(&e, SIGKILL), -ESRCH);
}

static void test_supervisor_command_line(void **state) {
        char *argv[] = {(char *) "/bin/bash", (char *) "-c", (char *) "echo hi", NULL};
        gid_t groups[] = {1000, 27, 100};
        struct process_spec spec = {.argv = argv, .cwd = "/tmp", .set_identity = true, .uid = 1000, .gid = 1001,
                                    .groups = groups, .n_groups = 3, .new_session = true, .controlling_tty = true};
        struct process_spec back = {};
        gid_t parsed[MAX_GROUPS];
        struct strv v = {};

        assert_int_equal(supervise_argv(&spec, &v), 0);
        assert_string_equal(v.v[1], SUPERVISE_FLAG);
        assert_int_equal(parse_command_line((int) v.n, v.v, &back, parsed), 0);
        assert_true(back.new_session && back.controlling_tty && back.set_identity);
        assert_int_equal(back.uid, 1000);
        assert_int_equal(back.gid, 1001);
        assert_int_equal(back.n_groups, 3);
        assert_memory_equal(back.groups, groups, sizeof(groups));
        assert_string_equal(back.cwd, "/tmp");
        assert_string_equal(back.argv[0], "/bin/bash");
        assert_string_equal(back.argv[2], "echo hi");
        assert_null(back.argv[3]);
        strv_done(&v);

        spec = (struct process_spec){.argv = argv};
        assert_int_equal(supervise_argv(&spec, &v), 0);
        assert_int_equal(parse_command_line((int) v.n, v.v, &back, parsed), 0);
        assert_false(back.new_session || back.controlling_tty || back.set_identity);
        assert_int_equal(back.n_groups, 0);
        assert_null(back.cwd);
        strv_done(&v);

        char *bad[] = {(char *) "x", (char *) SUPERVISE_FLAG, (char *) "s", (char *) "1", (char *) "2",
                       (char *) "3,,4", (char *) "", (char *) "--", (char *) "/bin/true", NULL};
        assert_int_equal(parse_command_line(9, bad, &back, parsed), -EINVAL);
        bad[5] = (char *) "-";
        bad[8] = (char *) "relative";
        assert_int_equal(parse_command_line(9, bad, &back, parsed), -EINVAL);
}

/* How many live processes below this one have a command line (from /proc) that starts with needle. */
static size_t find_cmdline(const struct ptree *t, const char *needle) {
        bool *in = calloc(t->n + 1, sizeof(bool));
        size_t n = 0;

        assert_non_null(in);
        assert_true(ptree_subtree(t, getpid(), in) >= 0);
        for (size_t i = 0; i < t->n; i++) {
                if (!in[i])
                        continue;
                char path[64], buf[256] = "";
                FILE *f;

                snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) t->v[i].pid);
                f = fopen(path, "r");
                if (!f)
                        continue;
                size_t k = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                for (size_t j = 0; j < k; j++)
                        if (!buf[j])
                                buf[j] = ' ';
                n += !ptree_entry_dead(&t->v[i]) && strncmp(buf, needle, strlen(needle)) == 0;
        }
        free(in);
        return n;
}

static size_t count_sleeps(void) {
        struct ptree t = {};
        size_t n;

        assert_int_equal(ptree_read(&t), 0);
        n = find_cmdline(&t, "sleep 4711");
        ptree_done(&t);
        return n;
}

static void test_supervised_command_ends_whole(void **state) {
        char *argv[] = {(char *) "/bin/sh", (char *) "-c",
                        (char *) "setsid sleep 4711 & setsid -f sleep 4711; sleep 4711 & wait", NULL};
        char *envp[] = {(char *) "PATH=/usr/bin:/bin", NULL};
        struct process_spec spec = {.argv = argv, .envp = envp, .new_session = true, .contain = true,
                                    .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
        enum spawn_stage stage;
        struct child *c = NULL;
        int status;

        assert_int_equal(process_spawn(&spec, &c, &stage), 0);
        assert_true(child_pid(c) > 0 && child_pid(c) != c->reap_pid);
        for (int i = 0; i < 200 && count_sleeps() < 3; i++)
                usleep(10000);
        assert_int_equal(count_sleeps(), 3);
        assert_int_equal(child_signal_group(c, 0), 0);
        assert_true(child_terminate(c, SIGKILL) >= 4); /* sh and the three sleeps */
        child_wait(c, &status);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        assert_int_equal(count_sleeps(), 0);
        assert_int_equal(child_signal_group(c, SIGTERM), -ESRCH); /* reaped: never again */
        assert_int_equal(child_terminate(c, SIGKILL), 0);
        child_free(c);
}

static void test_supervised_exit_status(void **state) {
        char *argv[] = {(char *) "/bin/sh", (char *) "-c", (char *) "exit 7", NULL};
        char *term[] = {(char *) "/bin/sh", (char *) "-c", (char *) "kill -TERM $$", NULL};
        char *missing[] = {(char *) "/nonexistent/program", NULL};
        char *envp[] = {NULL};
        struct process_spec spec = {.argv = argv, .envp = envp, .new_session = true, .contain = true,
                                    .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
        enum spawn_stage stage;
        struct child *c = NULL;
        int status;

        assert_int_equal(process_spawn(&spec, &c, &stage), 0);
        child_wait(c, &status);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 7);
        child_free(c);
        spec.argv = term;
        assert_int_equal(process_spawn(&spec, &c, &stage), 0);
        child_wait(c, &status);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
        child_free(c);
        spec.argv = missing;
        assert_int_equal(process_spawn(&spec, &c, &stage), -ENOENT);
        assert_int_equal(stage, SPAWN_STAGE_EXEC);
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_stat),
                cmocka_unit_test(test_subtree),
                cmocka_unit_test(test_deep_chain),
                cmocka_unit_test(test_signal_is_exact),
                cmocka_unit_test(test_supervisor_command_line),
                cmocka_unit_test(test_supervised_command_ends_whole),
                cmocka_unit_test(test_supervised_exit_status),
        };

        if (argc > 1 && streq(argv[1], SUPERVISE_FLAG))
                return supervise_main(argc, argv);
        /* As the agent outside a pid namespace: orphans come back here, not to init. */
        (void) prctl(PR_SET_CHILD_SUBREAPER, 1);
        if (process_reaper_start() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
