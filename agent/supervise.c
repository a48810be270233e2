/* supervise.c — see supervise.h. The agent's side builds the command line; the rest is the
 * supervisor's program: parse it, fork the program, watch, exit as the program did.
 *
 * Command line: ai2in-agent --supervise FLAGS UID GID GROUPS CWD -- PROGRAM ARGS…, where
 * FLAGS holds 's' (new session), 't' (controlling terminal), 'i' (switch identity) or is
 * "-"; GROUPS is a comma-separated list or "-"; CWD is "" for none. The environment is the
 * program's.
 */
#include "supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "timeutil.h"

#define MAX_GROUPS 256

/* ---- in the agent ---- */

static int push_printf(struct strv *v, const char *fmt, ...) _printf_(2, 3);
static int push_printf(struct strv *v, const char *fmt, ...) {
        char *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return strv_push(v, s);
}

static int push_groups(struct strv *v, const struct process_spec *spec) {
        _cleanup_free_ char *list = NULL;
        size_t len = 0;
        FILE *f;

        if (spec->n_groups == 0)
                return strv_push(v, strdup("-"));
        f = open_memstream(&list, &len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < spec->n_groups; i++)
                fprintf(f, "%s%u", i ? "," : "", (unsigned) spec->groups[i]);
        if (fclose(f) != 0)
                return -ENOMEM;
        return strv_push(v, TAKE_PTR(list));
}

int supervise_argv(const struct process_spec *spec, struct strv *ret) {
        char flags[4] = "", *f = flags;
        struct strv v = {};
        int r;

        if (spec->new_session)
                *f++ = 's';
        if (spec->controlling_tty)
                *f++ = 't';
        if (spec->set_identity)
                *f++ = 'i';
        r = strv_push(&v, strdup("ai2in-agent"));
        if (r >= 0)
                r = strv_push(&v, strdup(SUPERVISE_FLAG));
        if (r >= 0)
                r = strv_push(&v, strdup(flags[0] ? flags : "-"));
        if (r >= 0)
                r = push_printf(&v, "%u", (unsigned) spec->uid);
        if (r >= 0)
                r = push_printf(&v, "%u", (unsigned) spec->gid);
        if (r >= 0)
                r = push_groups(&v, spec);
        if (r >= 0)
                r = strv_push(&v, strdup(spec->cwd ?: ""));
        if (r >= 0)
                r = strv_push(&v, strdup("--"));
        for (size_t i = 0; r >= 0 && spec->argv[i]; i++)
                r = strv_push(&v, strdup(spec->argv[i]));
        if (r < 0) {
                strv_done(&v);
                return r;
        }
        *ret = v;
        return 0;
}

/* ---- the supervisor ---- */

static int parse_number(const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || (*end && *end != ',') || v > UINT32_MAX - 1)
                return -EINVAL;
        *ret = (unsigned) v;
        return (int) (end - s);
}

static int parse_groups(const char *s, gid_t *groups, size_t *ret_n) {
        size_t n = 0;
        unsigned id;
        int k;

        if (streq(s, "-")) {
                *ret_n = 0;
                return 0;
        }
        for (;;) {
                if (n == MAX_GROUPS || (k = parse_number(s, &id)) < 0)
                        return -EINVAL;
                groups[n++] = id;
                s += k;
                if (!*s)
                        break;
                s++;
        }
        *ret_n = n;
        return 0;
}

static int parse_command_line(int argc, char **argv, struct process_spec *spec, gid_t *groups) {
        unsigned uid, gid;

        if (argc < 9 || !streq(argv[7], "--") || parse_number(argv[3], &uid) < 0 || parse_number(argv[4], &gid) < 0 ||
            parse_groups(argv[5], groups, &spec->n_groups) < 0 || argv[8][0] != '/')
                return -EINVAL;
        spec->new_session = strchr(argv[2], 's') != NULL;
        spec->controlling_tty = strchr(argv[2], 't') != NULL;
        spec->set_identity = strchr(argv[2], 'i') != NULL;
        spec->uid = uid;
        spec->gid = gid;
        spec->groups = groups;
        spec->cwd = argv[6][0] ? argv[6] : NULL;
        spec->argv = argv + 8;
        return 0;
}

static void report_to_agent(int kind, int stage, int error, pid_t pid) {
        struct spawn_report r = {.kind = kind, .stage = stage, .error = error, .pid = pid};

        (void) !write(SUPERVISE_REPORT_FD, &r, sizeof(r));
}

/* SIGCHLD and SIGTERM are taken with sigwaitinfo(); what a terminal or a stray kill could
 * send is ignored (the program gets default dispositions back before its execve()). */
static void supervisor_signals(sigset_t *ret_set) {
        static const int ignored[] = {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2};
        struct sigaction ign = {.sa_handler = SIG_IGN};

        for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
                (void) sigaction(ignored[i], &ign, NULL);
        sigemptyset(ret_set);
        sigaddset(ret_set, SIGCHLD);
        sigaddset(ret_set, SIGTERM);
        (void) sigprocmask(SIG_BLOCK, ret_set, NULL);
}

/* Lets go of the program's stdio: its pipes and terminal must close when it is done. */
static void drop_stdio(void) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

        for (int i = 0; i < 3; i++) {
                if (fd >= 0)
                        (void) dup2(fd, i);
                else
                        (void) close(i);
        }
        if (fd > 2)
                close(fd);
}

/* Reaps every child that has exited, noting the program's status; returns whether any child
 * (the program, or a process re-parented here) is left. */
static bool reap_children(pid_t program, int *status, bool *done) {
        int st;
        pid_t p;

        while ((p = waitpid(-1, &st, WNOHANG)) > 0)
                if (p == program) {
                        *status = st;
                        *done = true;
                }
        return p == 0;
}

static bool take_term(void) {
        const struct timespec zero = {0};
        sigset_t term;

        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        return sigtimedwait(&term, NULL, &zero) == SIGTERM;
}

/* Waits for the program's exit (and, once SIGTERM came, for the tree to empty); returns
 * the wait status to exit with. */
static int watch_program(pid_t program, const sigset_t *set) {
        int64_t until = 0;
        bool done = false, ending = false, left;
        int status = SIGKILL; /* a wait status: killed by SIGKILL */

        for (;;) {
                left = reap_children(program, &status, &done);
                ending = ending || (done && take_term());
                if (done && (!ending || !left))
                        return status;
                if (ending && until == 0)
                        until = mono_ms() + SUPERVISE_LINGER_MS;
                if (ending && mono_ms() >= until)
                        return done ? status : SIGKILL;
                if (ending) {
                        int64_t ms = until - mono_ms();
                        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
                        if (sigtimedwait(set, NULL, &ts) == SIGTERM)
                                continue;
                } else if (sigwaitinfo(set, NULL) == SIGTERM)
                        ending = true;
        }
}

/* Exits as the program did: its exit code, or killed by its signal (without a core). */
static _noreturn_ void exit_like(int status) {
        const struct rlimit none = {0, 0};
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigset_t set;
        int sig;

        if (!WIFSIGNALED(status))
                _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 255);
        sig = WTERMSIG(status);
        (void) setrlimit(RLIMIT_CORE, &none);
        (void) sigaction(sig, &dfl, NULL);
        sigemptyset(&set);
        sigaddset(&set, sig);
        (void) sigprocmask(SIG_UNBLOCK, &set, NULL);
        (void) raise(sig);
        _exit(128 + sig);
}

int supervise_main(int argc, char **argv) {
        extern char **environ;
        struct process_spec spec = {.keep_stdio = true};
        gid_t groups[MAX_GROUPS];
        sigset_t set;
        pid_t pid;

        (void) prctl(PR_SET_DUMPABLE, 0);
        if (parse_command_line(argc, argv, &spec, groups) < 0) {
                fputs("usage: ai2in-agent " SUPERVISE_FLAG " FLAGS UID GID GROUPS CWD -- PROGRAM [ARG]...\n", stderr);
                return 2;
        }
        spec.envp = environ;
        (void) fcntl(SUPERVISE_REPORT_FD, F_SETFD, FD_CLOEXEC);
        (void) prctl(PR_SET_CHILD_SUBREAPER, 1);
        (void) prctl(PR_SET_NAME, "ai2in-supervise");
        supervisor_signals(&set);
        pid = fork();
        if (pid == 0)
                process_exec_child(&spec, SUPERVISE_REPORT_FD);
        if (pid < 0) {
                report_to_agent(SPAWN_REPORT_FAILED, SPAWN_STAGE_FORK, errno, 0);
                _exit(127);
        }
        report_to_agent(SPAWN_REPORT_STARTED, 0, 0, pid);
        close(SUPERVISE_REPORT_FD);
        drop_stdio();
        exit_like(watch_program(pid, &set));
}
