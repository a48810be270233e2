/* test_contexts.c — the parts of code contexts that run without an HTTP connection: the
 * /execute and /contexts body rules (agent/kernel/ctx-request.c), the shell protocol's text
 * (ctx-shell.c), UTF-8 pieces held back between reads (ctx-proc.c), and a real bash context
 * (bash.c over ctx-proc.c) driven through its kernel_ops as contexts.c drives it: state
 * across executions, heredocs, a failing status, envs set and restored, interrupts of a
 * sleeping and of a busy execution, `exit`.
 *
 * The agent is a separate static program, so its sources are compiled in here directly.
 * The javascript backend is not: its `struct kernel` would clash with bash's in this one
 * file (the live agent tests cover it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../agent/kernel/ctx-proc.c"
#include "../../agent/kernel/ctx-request.c"
#include "../../agent/kernel/ctx-shell.c"
#include "../../agent/kernel/bash.c"
#include "../../agent/process.c"
#include "../../agent/ptree.c"
#include "../../agent/supervise.c"
#include "../../agent/utf8.c"

/* What ctx-request.c needs from outside the unit. */
int proc_error_set(struct proc_error *err, int status, const char *fmt, ...) {
        va_list ap;

        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}
const struct kernel_ops kernel_python_ops = {.language = "python"};
const struct kernel_ops kernel_node_ops = {.language = "javascript"};

/* ---- request bodies ---- */

static json_t *parse(const char *text) {
        json_t *v = json_loads(text, JSON_ALLOW_NUL, NULL);
        assert_non_null(v);
        return v;
}

static void test_language(void **state) {
        assert_ptr_equal(ctx_language("python"), &kernel_python_ops);
        assert_ptr_equal(ctx_language("Bash"), &kernel_bash_ops);
        assert_ptr_equal(ctx_language("SH"), &kernel_bash_ops);
        assert_ptr_equal(ctx_language("JavaScript"), &kernel_node_ops);
        assert_ptr_equal(ctx_language("js"), &kernel_node_ops);
        assert_null(ctx_language("ruby"));
        assert_null(ctx_language("py"));
        assert_null(ctx_language(""));
}

static void test_parse_execute(void **state) {
        struct proc_error err = {};
        struct exec_request r;
        json_t *v;

        v = parse("{\"code\":\"1+1\"}");
        assert_int_equal(ctx_parse_execute(v, &r, &err), 0);
        assert_string_equal(r.code, "1+1");
        assert_null(r.ops);
        assert_null(r.context_id);
        assert_null(r.envs);
        assert_int_equal(r.timeout_ms, CTX_DEFAULT_TIMEOUT_MS);
        json_decref(v);

        v = parse("{\"code\":\"x\",\"language\":\"Js\",\"context_id\":\"ctx_a\",\"envs\":{\"A_1\":\"v\"},\"timeout_ms\":0}");
        assert_int_equal(ctx_parse_execute(v, &r, &err), 0);
        assert_ptr_equal(r.ops, &kernel_node_ops);
        assert_string_equal(r.context_id, "ctx_a");
        assert_string_equal(json_string_value(json_object_get(r.envs, "A_1")), "v");
        assert_int_equal(r.timeout_ms, 0);
        json_decref(v);

        /* Null counts as absent. */
        v = parse("{\"code\":\"x\",\"language\":null,\"context_id\":null,\"envs\":null,\"timeout_ms\":null}");
        assert_int_equal(ctx_parse_execute(v, &r, &err), 0);
        assert_null(r.ops);
        assert_int_equal(r.timeout_ms, CTX_DEFAULT_TIMEOUT_MS);
        json_decref(v);
}

static void test_parse_execute_errors(void **state) {
        static const struct {
                const char *body, *message;
        } cases[] = {
                {"{}", "missing field 'code'"},
                {"{\"code\":\"\"}", "'code' must not be empty"},
                {"{\"code\":\"a\\u0000b\"}", "'code' must not contain NUL characters (\\u0000)"},
                {"{\"code\":1}", "'code' must be a string"},
                {"{\"code\":\"x\",\"language\":\"cobol\"}",
                 "unknown language 'cobol': must be python, bash or javascript (also js, sh; any case)"},
                {"{\"code\":\"x\",\"timeout_ms\":-1}", "'timeout_ms' must be an integer from 0 (none) to 86400000"},
                {"{\"code\":\"x\",\"timeout_ms\":86400001}", "'timeout_ms' must be an integer from 0 (none) to 86400000"},
                {"{\"code\":\"x\",\"timeout_ms\":1.5}", "'timeout_ms' must be an integer from 0 (none) to 86400000"},
                {"{\"code\":\"x\",\"envs\":[]}", "'envs' must be an object of strings"},
                {"{\"code\":\"x\",\"envs\":{\"a-b\":\"v\"}}", "'envs' key 'a-b' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"},
                {"{\"code\":\"x\",\"envs\":{\"1a\":\"v\"}}", "'envs' key '1a' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"},
                {"{\"code\":\"x\",\"envs\":{\"A\":1}}", "'envs' value of 'A' must be a string"},
                {"{\"code\":\"x\",\"envs\":{\"A\":\"\\u0000\"}}", "'envs' value of 'A' must not contain NUL characters (\\u0000)"},
                {"{\"code\":\"x\",\"context_id\":\"\"}", "'context_id' must not be empty"},
                {"{\"code\":\"x\",\"cwd\":\"/\"}", "unknown field 'cwd'"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct proc_error err = {};
                struct exec_request r;
                json_t *v = parse(cases[i].body);

                assert_int_equal(ctx_parse_execute(v, &r, &err), -EINVAL);
                assert_int_equal(err.status, 400);
                assert_string_equal(err.message, cases[i].message);
                json_decref(v);
        }
}

static void test_parse_create(void **state) {
        struct proc_error err = {};
        struct create_request r;
        json_t *v;

        v = parse("{}");
        assert_int_equal(ctx_parse_create(v, &r, &err), 0);
        assert_ptr_equal(r.ops, &kernel_python_ops);
        assert_string_equal(r.user, "root");
        assert_null(r.cwd);
        json_decref(v);

        v = parse("{\"language\":\"sh\",\"cwd\":\"/tmp\",\"user\":\"sandbox\"}");
        assert_int_equal(ctx_parse_create(v, &r, &err), 0);
        assert_ptr_equal(r.ops, &kernel_bash_ops);
        assert_string_equal(r.cwd, "/tmp");
        assert_string_equal(r.user, "sandbox");
        json_decref(v);

        v = parse("{\"language\":\"bash\",\"envs\":{}}");
        assert_int_equal(ctx_parse_create(v, &r, &err), -EINVAL);
        assert_string_equal(err.message, "unknown field 'envs'");
        json_decref(v);
}

/* ---- the shell protocol's text ---- */

static void test_shell_quote(void **state) {
        _cleanup_buf_ struct buf b = {};

        buf_init(&b, 1024);
        assert_int_equal(shell_quote(&b, "it's a \"q\" $x\n"), 0);
        assert_string_equal(b.data, "'it'\\''s a \"q\" $x\n'");
        buf_reset(&b);
        assert_int_equal(shell_quote(&b, ""), 0);
        assert_string_equal(b.data, "''");
        buf_reset(&b);
        assert_int_equal(shell_quote(&b, "''"), 0);
        assert_string_equal(b.data, "''\\'''\\'''");

        assert_true(shell_is_name("_a1"));
        assert_true(shell_is_name("PATH"));
        assert_false(shell_is_name("1a"));
        assert_false(shell_is_name("a-b"));
        assert_false(shell_is_name(""));
}

static void test_request_text(void **state) {
        _cleanup_buf_ struct buf b = {};
        json_t *envs = parse("{\"A\":\"x'y\"}");

        buf_init(&b, 4096);
        assert_int_equal(bash_request_text(&b, "TOK", 7, "echo 'hi'", NULL), 0);
        assert_non_null(strstr(b.data, "__ai2in_code='echo '\\''hi'\\'''\n"));
        assert_non_null(strstr(b.data, "builtin printf '%s begin %s\\n' TOK 7 >&0; builtin eval \"$__ai2in_code\" </dev/null\n"));
        assert_non_null(strstr(b.data, "builtin printf '%s end %s %s\\n' TOK 7 \"$__ai2in_rc\" >&0\n"));
        assert_null(strstr(b.data, "export"));

        buf_reset(&b);
        assert_int_equal(bash_request_text(&b, "TOK", 8, "true", envs), 0);
        assert_non_null(strstr(b.data, "__ai2in_keys=(A ); __ai2in_saved=(); "
                                       "[[ -v A ]] && __ai2in_saved+=(\"${A@A}\"); builtin export A='x'\\''y'; "));
        json_decref(envs);

        envs = parse("{\"a b\":\"x\"}");
        assert_int_equal(bash_request_text(&b, "TOK", 9, "true", envs), -EINVAL);
        json_decref(envs);
}

static void test_incomplete_tail(void **state) {
        assert_int_equal(incomplete_tail((const unsigned char *) "abc", 3), 0);
        assert_int_equal(incomplete_tail((const unsigned char *) "a\xc3", 2), 1);          /* é cut after 1 */
        assert_int_equal(incomplete_tail((const unsigned char *) "a\xc3\xa9", 3), 0);      /* é whole */
        assert_int_equal(incomplete_tail((const unsigned char *) "\xe2\x82", 2), 2);       /* € cut after 2 */
        assert_int_equal(incomplete_tail((const unsigned char *) "\xf0\x9f\x98", 3), 3);   /* 😀 cut after 3 */
        assert_int_equal(incomplete_tail((const unsigned char *) "\xf0\x9f\x98\x80", 4), 0);
        assert_int_equal(incomplete_tail((const unsigned char *) "a\xff", 2), 0);          /* invalid: not held */
        assert_int_equal(incomplete_tail((const unsigned char *) "\x80\x80\x80", 3), 0);   /* stray continuations */
}

/* ---- a live bash context ---- */

struct collect {
        pthread_mutex_t lock;
        json_t *events;
};

static int collect_event(void *userdata, json_t *ev) {
        struct collect *c = userdata;

        pthread_mutex_lock(&c->lock);
        json_array_append(c->events, ev);
        pthread_mutex_unlock(&c->lock);
        return 0;
}

/* Runs code; returns its events (owned) and fills *out. */
static json_t *run(struct kernel *k, const char *code, json_t *envs, int64_t timeout_ms, struct kernel_outcome *out) {
        struct collect c = {.lock = PTHREAD_MUTEX_INITIALIZER, .events = json_array()};
        struct kernel_sink sink = {.event = collect_event, .userdata = &c, .watch_fd = -1};

        assert_int_equal(kernel_bash_ops.execute(k, code, envs, timeout_ms, &sink, out), 0);
        return c.events;
}

/* The concatenated text of the events of type (stdout or stderr). */
static char *text_of(json_t *events, const char *type) {
        struct buf b;
        json_t *ev;
        size_t i;

        buf_init(&b, 1 << 20);
        json_array_foreach(events, i, ev)
                if (streq(json_string_value(json_object_get(ev, "type")), type))
                        assert_int_equal(buf_append_str(&b, json_string_value(json_object_get(ev, "text"))), 0);
        return buf_steal(&b);
}

/* The value of the one error event, or NULL if there is none. */
static const char *error_of(json_t *events, const char *name) {
        const char *found = NULL;
        json_t *ev;
        size_t i;

        json_array_foreach(events, i, ev)
                if (streq(json_string_value(json_object_get(ev, "type")), "error")) {
                        assert_null(found);
                        assert_string_equal(json_string_value(json_object_get(ev, "name")), name);
                        found = json_string_value(json_object_get(ev, "value"));
                }
        return found;
}

/* Runs code and checks that it succeeded with stdout expected. */
static void expect_stdout(struct kernel *k, const char *code, json_t *envs, const char *expected) {
        struct kernel_outcome out;
        json_t *events = run(k, code, envs, 10000, &out);
        _cleanup_free_ char *text = text_of(events, "stdout");

        assert_false(out.error);
        assert_false(out.interrupted);
        assert_null(error_of(events, "none"));
        assert_string_equal(text, expected);
        json_decref(events);
}

static struct kernel *start_bash(void) {
        char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "PROBE=base", NULL};
        struct kernel_config cfg = {.cwd = "/tmp", .uid = geteuid(), .gid = getegid(), .envp = envp};
        _cleanup_free_ char *error = NULL;
        struct kernel *k = NULL;

        assert_int_equal(kernel_bash_ops.start(&cfg, 10000, &k, &error), 0);
        assert_null(error);
        return k;
}

static void test_bash_state(void **state) {
        struct kernel *k = start_bash();
        struct kernel_outcome out;

        expect_stdout(k, "a=1; f() { echo \"fn $1\"; }; cd /", NULL, "");
        expect_stdout(k, "echo $a; f x; pwd", NULL, "1\nfn x\n/\n");
        expect_stdout(k, "cat <<'EOF'\nhd $a\nEOF\nprintf 'no newline'", NULL, "hd $a\nno newline");
        expect_stdout(k, "read x; echo \"read '$x'\"", NULL, "read ''\n"); /* stdin is /dev/null */
        expect_stdout(k, "printf 'caf\\xc3'; printf '\\xa9 \\xff!\\n'", NULL, "café \xef\xbf\xbd!\n");

        /* A syntax error is eval's: the shell lives on. */
        json_t *events = run(k, "echo 'unbalanced", NULL, 10000, &out);
        assert_true(out.error);
        assert_string_equal(error_of(events, "ExitCode"), "exit status 2");
        json_decref(events);
        events = run(k, "echo out; echo err >&2; false", NULL, 10000, &out);
        _cleanup_free_ char *err = text_of(events, "stderr");
        assert_string_equal(err, "err\n");
        assert_string_equal(error_of(events, "ExitCode"), "exit status 1");
        assert_int_equal(out.execution_count, 7);
        json_decref(events);
        expect_stdout(k, "echo $a", NULL, "1\n");
        kernel_bash_ops.stop(k);
}

static void test_bash_envs(void **state) {
        struct kernel *k = start_bash();
        json_t *envs = parse("{\"PROBE\":\"it's $x\",\"NEW\":\"n\"}");

        expect_stdout(k, "plain=1", NULL, "");
        expect_stdout(k, "echo \"$PROBE|$NEW\"; bash -c 'echo \"$NEW\"'; PROBE=changed", envs, "it's $x|n\nn\n");
        expect_stdout(k, "echo \"$PROBE|${NEW-unset}|$plain\"; bash -c 'echo \"$PROBE\"'", NULL, "base|unset|1\nbase\n");
        json_decref(envs);
        kernel_bash_ops.stop(k);
}

static void test_bash_interrupt(void **state) {
        static const char *const codes[] = {"echo before; sleep 100; echo after", "while true; do :; done",
                                            "for i in 1 2 3; do sleep 10; done"};
        struct kernel *k = start_bash();

        expect_stdout(k, "kept=yes", NULL, "");
        for (size_t i = 0; i < ELEMENTSOF(codes); i++) {
                struct kernel_outcome out;
                int64_t t0 = mono_ms();
                json_t *events = run(k, codes[i], NULL, 300, &out);
                _cleanup_free_ char *text = text_of(events, "stdout");

                assert_true(mono_ms() - t0 < 3000);
                assert_true(out.interrupted);
                assert_true(out.timed_out);
                assert_false(out.died);
                assert_null(error_of(events, "none")); /* no error event: the end says interrupted */
                assert_string_equal(text, i == 0 ? "before\n" : "");
                json_decref(events);
                expect_stdout(k, "echo $kept", NULL, "yes\n");
        }
        kernel_bash_ops.stop(k);
}

static void test_bash_exit(void **state) {
        struct kernel *k = start_bash();
        struct kernel_outcome out;
        json_t *events = run(k, "echo bye; exit 3", NULL, 10000, &out);
        _cleanup_free_ char *text = text_of(events, "stdout");

        assert_true(out.died);
        assert_true(out.error);
        assert_string_equal(text, "bye\n");
        assert_string_equal(error_of(events, "KernelDied"), "the bash context exited (exit 3)");
        assert_false(kernel_bash_ops.alive(k));
        json_decref(events);
        kernel_bash_ops.stop(k);
}

static void test_bash_start_failure(void **state) {
        char *envp[] = {"PATH=/bin", NULL};
        struct kernel_config cfg = {.cwd = "/nonexistent-dir", .uid = geteuid(), .gid = getegid(), .envp = envp};
        _cleanup_free_ char *error = NULL;
        struct kernel *k = NULL;

        assert_int_equal(kernel_bash_ops.start(&cfg, 5000, &k, &error), -ENOENT);
        assert_null(k);
        assert_non_null(error);
        assert_non_null(strstr(error, "cannot change to its working directory"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_language),
                cmocka_unit_test(test_parse_execute),
                cmocka_unit_test(test_parse_execute_errors),
                cmocka_unit_test(test_parse_create),
                cmocka_unit_test(test_shell_quote),
                cmocka_unit_test(test_request_text),
                cmocka_unit_test(test_incomplete_tail),
                cmocka_unit_test(test_bash_state),
                cmocka_unit_test(test_bash_envs),
                cmocka_unit_test(test_bash_interrupt),
                cmocka_unit_test(test_bash_exit),
                cmocka_unit_test(test_bash_start_failure),
        };

        if (process_reaper_start() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
