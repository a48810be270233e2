/* test_login_env.c — the agent's cache of login environments (agent/login-env.c): the
 * capture script's output parser, the comparison of the plain and the login shell's state,
 * the signature of the startup files (in a temporary /etc and home), and real captures by
 * /bin/bash of a temporary home's .profile as the user running the tests: reuse, capture
 * again after an edit, login shells for what an environment cannot carry, failing and
 * hanging profiles.
 *
 * The agent is a separate static program, so its sources are compiled in here directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>

#include "../../agent/login-env.c"
#include "../../agent/process.c"
#include "../../agent/ptree.c"
#include "../../agent/supervise.c"

/* ---- parsing ---- */

#define OUT(s) s, sizeof(s) - 1

static const char *find(char **env, const char *entry) {
        for (; *env; env++)
                if (streq(*env, entry))
                        return *env;
        return NULL;
}

static void test_parse_output(void **state) {
        static const char out[] = "profile noise\n" MARKER "0022\ndeclare -f f\n\0"
                                  "A=1\0PWD=/x\0B=x=y\nz\0SHLVL=2\0_=/usr/bin/env\0OLDPWD=/\0EMPTY=\0";
        char *header = NULL, **env = NULL;

        assert_int_equal(parse_output(OUT(out), &header, &env), 0);
        assert_string_equal(header, "0022\ndeclare -f f\n");
        assert_string_equal(env[0], "A=1");
        assert_string_equal(env[1], "B=x=y\nz");
        assert_string_equal(env[2], "EMPTY=");
        assert_null(env[3]);
        free(header);
        login_env_free(env);

        assert_int_equal(parse_output(OUT(MARKER "0022\n\0"), &header, &env), 0);
        assert_null(env[0]);
        free(header);
        login_env_free(env);
}

static void test_parse_output_bad(void **state) {
        char *header = NULL, **env = NULL;

        assert_int_equal(parse_output(OUT("0022\n\0A=1\0"), &header, &env), -EBADMSG);        /* no marker */
        assert_int_equal(parse_output(OUT(MARKER "0022\n"), &header, &env), -EBADMSG);       /* header cut */
        assert_int_equal(parse_output(OUT(MARKER "0022\n\0A=1\0B=2"), &header, &env), -EBADMSG); /* entry cut */
        assert_int_equal(parse_output(OUT(MARKER "0022\n\0A=1\0NOEQUALS\0"), &header, &env), -EBADMSG);
        assert_int_equal(parse_output(OUT(MARKER "0022\n\0=x\0"), &header, &env), -EBADMSG);
        /* The last entry has no NUL (a profile's function ran after env -0): no step past it.
         * Without '=' too; the UBSan build of clang traps on the NULL + 1 this used to compute. */
        assert_int_equal(parse_output(OUT(MARKER "0022\n\0A=1\0trailing noise"), &header, &env), -EBADMSG);
        assert_int_equal(parse_output(OUT(MARKER "0022\n\0A=1\0B=2\0C"), &header, &env), -EBADMSG);
        assert_null(header);
        assert_null(env);
}

static void test_header_same(void **state) {
        char diff[256] = "";

        assert_true(header_same("0022\nshopt -u login_shell\nshopt -u xpg_echo\n/root\n",
                                "0022\nshopt -s login_shell\nshopt -u xpg_echo\n/root\n", diff, sizeof(diff)));
        assert_false(header_same("0022\n/root\n", "0022\ndeclare -f nvm\n/root\n", diff, sizeof(diff)));
        assert_string_equal(diff, "'declare -f nvm'");
        assert_false(header_same("0022\n/root\n", "0077\n/root\n", diff, sizeof(diff)));
        assert_string_equal(diff, "'0077'");
        assert_false(header_same("0022\n/root\n", "0022\n", diff, sizeof(diff)));
        assert_string_equal(diff, "lacking '/root'");
}

/* ---- a temporary /etc and home ---- */

struct fixture {
        char root[64];
        char etc[96];
        char home[96];
        struct user_info u;
        char *base[7];
        char base_home[128];
};

static void write_file(const char *dir, const char *name, const char *text) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        char path[128];

        snprintf(f->root, sizeof(f->root), "/tmp/test-login-env-XXXXXX");
        if (!mkdtemp(f->root))
                return -1;
        snprintf(f->etc, sizeof(f->etc), "%s/etc", f->root);
        snprintf(f->home, sizeof(f->home), "%s/home", f->root);
        snprintf(path, sizeof(path), "%s/profile.d", f->etc);
        if (mkdir(f->etc, 0755) < 0 || mkdir(f->home, 0755) < 0 || mkdir(path, 0755) < 0)
                return -1;
        write_file(f->etc, "profile", "# nothing\n");
        f->u = (struct user_info){.name = (char *) "tester", .home = f->home, .uid = geteuid(), .gid = getegid()};
        snprintf(f->base_home, sizeof(f->base_home), "HOME=%s", f->home);
        f->base[0] = (char *) "PATH=/usr/local/bin:/usr/bin:/bin";
        f->base[1] = f->base_home;
        f->base[2] = (char *) "USER=tester";
        f->base[3] = (char *) "LOGNAME=tester";
        f->base[4] = (char *) "SHELL=/bin/bash";
        f->base[5] = (char *) "LANG=C.UTF-8";
        etc_dir = f->etc;
        *state = f;
        return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int teardown(void **state) {
        struct fixture *f = *state;

        nftw(f->root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        etc_dir = "/etc";
        capture_timeout_ms = LOGIN_ENV_TIMEOUT_MS;
        free(f);
        return 0;
}

/* The signature now, as a string to compare (caller frees). */
static char *sig_now(struct fixture *f, size_t *len) {
        struct buf sig;

        buf_init(&sig, SIGNATURE_MAX);
        assert_int_equal(signature_take(&f->u, f->base, &sig), 0);
        *len = sig.len;
        return buf_steal(&sig);
}

static bool sig_changed(struct fixture *f, char **prev, size_t *prev_len) {
        size_t len;
        char *now = sig_now(f, &len);
        bool changed = len != *prev_len || memcmp(now, *prev, len) != 0;

        free(*prev);
        *prev = now;
        *prev_len = len;
        return changed;
}

static void test_signature(void **state) {
        struct fixture *f = *state;
        char path[256], *sig;
        size_t len;

        sig = sig_now(f, &len);
        assert_false(sig_changed(f, &sig, &len));

        write_file(f->home, ".profile", "export A=1\n"); /* a file comes */
        assert_true(sig_changed(f, &sig, &len));
        write_file(f->home, ".profile", "export A=12\n"); /* is edited */
        assert_true(sig_changed(f, &sig, &len));
        write_file(f->home, ".bashrc", "x\n");
        assert_true(sig_changed(f, &sig, &len));
        snprintf(path, sizeof(path), "%s/profile.d", f->etc);
        write_file(path, "a.sh", "x\n");
        assert_true(sig_changed(f, &sig, &len));
        write_file(path, "a.sh", "xy\n");
        assert_true(sig_changed(f, &sig, &len));
        write_file(path, "b.txt", "x\n"); /* not sourced, but the directory changed */
        assert_true(sig_changed(f, &sig, &len));
        write_file(f->etc, "environment", "A=1\n");
        assert_true(sig_changed(f, &sig, &len));

        /* ~/.local/bin counts as present or not, whatever goes in it. */
        snprintf(path, sizeof(path), "%s/.local", f->home);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_false(sig_changed(f, &sig, &len));
        snprintf(path, sizeof(path), "%s/.local/bin", f->home);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_true(sig_changed(f, &sig, &len));
        write_file(path, "tool", "#!/bin/sh\n");
        assert_false(sig_changed(f, &sig, &len));

        /* A stale entry of the same user but another identity is not reused. */
        f->u.home = (char *) "/elsewhere";
        assert_true(sig_changed(f, &sig, &len));
        free(sig);
}

/* ---- real captures ---- */

static const char *get(char **env, const char *key) {
        size_t n = strlen(key);

        for (; *env; env++)
                if (strncmp(*env, key, n) == 0 && (*env)[n] == '=')
                        return *env + n + 1;
        return NULL;
}

/* login_env_get() after .profile was set to text: 1 with *ret, or 0. */
static int get_with_profile(struct fixture *f, const char *text, char ***ret) {
        write_file(f->home, ".profile", text);
        *ret = NULL;
        return login_env_get(&f->u, f->base, ret);
}

static void test_capture(void **state) {
        struct fixture *f = *state;
        char **env, **again, *pid;
        int r;

        r = get_with_profile(f, "export FOO=bar; export AT=$$; PATH=/opt/x:$PATH\necho noise; echo noise >&2\n", &env);
        if (r == 0)
                skip(); /* this machine's /etc/profile leaves functions or options behind */
        assert_int_equal(r, 1);
        assert_string_equal(get(env, "FOO"), "bar");
        assert_string_equal(get(env, "HOME"), f->home);
        assert_string_equal(get(env, "LANG"), "C.UTF-8");
        assert_non_null(strstr(get(env, "PATH"), "/opt/x:"));
        assert_null(get(env, "PWD"));
        assert_null(get(env, "SHLVL"));
        assert_null(get(env, "_"));
        pid = strdup(get(env, "AT"));

        /* Reused while nothing changed: the same capture's $$. */
        assert_int_equal(login_env_get(&f->u, f->base, &again), 1);
        assert_string_equal(get(again, "AT"), pid);
        login_env_free(again);

        /* Captured again after an edit. */
        assert_int_equal(get_with_profile(f, "export FOO=baz; export AT=$$\n", &again), 1);
        assert_string_equal(get(again, "FOO"), "baz");
        assert_string_not_equal(get(again, "AT"), pid);
        assert_null(find(again, "PWD=/"));
        login_env_free(again);
        login_env_free(env);
        free(pid);

        /* Unset by the profile: gone, not back from the base. */
        assert_int_equal(get_with_profile(f, "unset LANG\n", &env), 1);
        assert_null(get(env, "LANG"));
        login_env_free(env);
}

static void test_capture_not_faithful(void **state) {
        struct fixture *f = *state;
        char **env;

        if (get_with_profile(f, "export X=1\n", &env) == 0)
                skip();
        login_env_free(env);
        assert_int_equal(get_with_profile(f, "nvm() { :; }\n", &env), 0);
        assert_int_equal(get_with_profile(f, "umask 0077\n", &env), 0);
        assert_int_equal(get_with_profile(f, "shopt -s extglob\n", &env), 0);
        assert_int_equal(get_with_profile(f, "cd /\n", &env), 0);
        assert_int_equal(get_with_profile(f, "exit 3\n", &env), 0);
        /* Still login shells while the profile stays as it is, and back once it is fixed. */
        assert_int_equal(login_env_get(&f->u, f->base, &env), 0);
        assert_int_equal(get_with_profile(f, "export OK=yes\n", &env), 1);
        assert_string_equal(get(env, "OK"), "yes");
        login_env_free(env);
}

/* A profile whose functions garble what the capture script prints (here exec, which then
 * leaves output without a final NUL after the environment): the capture fails, cleanly, and
 * the user's commands run as login shells. */
static void test_capture_garbled_output(void **state) {
        struct fixture *f = *state;
        char **env;

        if (get_with_profile(f, "export X=1\n", &env) == 0)
                skip();
        login_env_free(env);
        assert_int_equal(get_with_profile(f, "exec() { /usr/bin/env -0; builtin printf 'no NUL after this'; }\n", &env),
                         0);
        assert_int_equal(get_with_profile(f, "printf() { builtin printf 'x'; }\n", &env), 0);
}

static void test_capture_slow_profiles(void **state) {
        struct fixture *f = *state;
        int64_t start;
        char **env;

        if (get_with_profile(f, "export X=1\n", &env) == 0)
                skip();
        login_env_free(env);
        capture_timeout_ms = 300;

        /* Hangs: given up on at the timeout. */
        start = mono_ms();
        assert_int_equal(get_with_profile(f, "sleep 5\n", &env), 0);
        assert_true(mono_ms() - start < 1500);

        /* Leaves something in the background that holds stdout: not waited for. */
        start = mono_ms();
        assert_int_equal(get_with_profile(f, "sleep 2 &\nexport BG=1\n", &env), 1);
        assert_true(mono_ms() - start < 1000);
        assert_string_equal(get(env, "BG"), "1");
        login_env_free(env);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_output),
                cmocka_unit_test(test_parse_output_bad),
                cmocka_unit_test(test_header_same),
                cmocka_unit_test_setup_teardown(test_signature, setup, teardown),
                cmocka_unit_test_setup_teardown(test_capture, setup, teardown),
                cmocka_unit_test_setup_teardown(test_capture_not_faithful, setup, teardown),
                cmocka_unit_test_setup_teardown(test_capture_garbled_output, setup, teardown),
                cmocka_unit_test_setup_teardown(test_capture_slow_profiles, setup, teardown),
        };

        log_setup("test_login_env", LOG_LVL_ERROR);
        if (process_reaper_start() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
