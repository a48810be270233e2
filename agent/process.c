/* process.c — see process.h. Owns the registry of children the agent waits for, the reaper
 * thread that feeds it, and how children are started and signalled.
 *
 * The race where a child exits before it is registered is closed by holding the
 * registry lock from before fork() until the child is in the list: the reaper takes the
 * same lock around its waitpid() loop, so it cannot reap a pid nobody has claimed yet.
 * The same lock makes signals exact: a child's process group, or its supervisor's tree, is
 * looked up and signalled with the lock held, so the reaper cannot reap the leader (or the
 * supervisor) meanwhile and free its pid for reuse.
 *
 * The forked child of this multithreaded program only makes async-signal-safe calls
 * (raw syscalls for the identity switch) before execve(); a supervised child execs the
 * agent's own binary as its supervisor (supervise.c), which forks the program from there.
 */
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "ptree.h"
#include "strv.h"
#include "supervise.h"
#include "thread.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct child {
        pid_t pid;      /* the program's: its process group's id */
        pid_t reap_pid; /* the agent's own child: the supervisor, or pid itself */
        bool contained; /* runs under a supervisor */
        bool exited;    /* reap_pid was reaped */
        int status;
        int exit_fd;    /* eventfd, written once by the reaper */
        struct ptree pinned; /* an unsupervised child's group members, as last seen while it ran */
        struct child *prev, *next;
};

/* The registry. One per process, like the reaper it belongs to. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t registry_cond = PTHREAD_COND_INITIALIZER;
static struct child *registry;
static bool spawns_held; /* under registry_lock */

static void registry_add(struct child *c) {
        c->next = registry;
        if (registry)
                registry->prev = c;
        registry = c;
}

static void registry_remove(struct child *c) {
        if (c->prev)
                c->prev->next = c->next;
        else if (registry == c)
                registry = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
}

/* Called with registry_lock held. */
static void deliver(pid_t pid, int status) {
        uint64_t one = 1;

        for (struct child *c = registry; c; c = c->next)
                if (c->reap_pid == pid && !c->exited) {
                        c->exited = true;
                        c->status = status;
                        (void) !write(c->exit_fd, &one, sizeof(one));
                        pthread_cond_broadcast(&registry_cond);
                        return;
                }
        /* An orphan reparented to us, or a child whose waiter gave up: nothing to do. */
}

static void *reaper_main(void *arg) {
        sigset_t set;
        int status;
        pid_t pid;

        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        for (;;) {
                if (sigwaitinfo(&set, NULL) < 0) {
                        if (errno != EINTR)
                                log_warn_errno(errno, "sigwaitinfo(SIGCHLD) failed, ignoring");
                        continue;
                }
                /* One SIGCHLD may stand for many exits: reap until nothing is left. */
                pthread_mutex_lock(&registry_lock);
                while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                        deliver(pid, status);
                pthread_mutex_unlock(&registry_lock);
        }
        return NULL;
}

int process_reaper_start(void) {
        sigset_t set;
        int r;

        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        r = pthread_sigmask(SIG_BLOCK, &set, NULL);
        if (r != 0)
                return -r;

        r = thread_start_detached(reaper_main, NULL, 128 * 1024);
        if (r < 0)
                return r;

        /* Children that exited before the thread existed left a SIGCHLD pending; it is
         * still pending for sigwaitinfo(), so nothing is lost. */
        return 0;
}

/* Moves fd out of the 0..2 range so that the dup2() calls below cannot clobber it. */
static int fd_above_stdio(int fd) {
        if (fd < 0 || fd > 2)
                return fd;
        return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static _noreturn_ void child_fail(int report_fd, enum spawn_stage stage) {
        struct spawn_report f = {.kind = SPAWN_REPORT_FAILED, .stage = (int32_t) stage, .error = errno};

        (void) !write(report_fd, &f, sizeof(f));
        _exit(127);
}

/* Default dispositions (ignored ones stay ignored across execve()) and an empty mask. */
static int reset_signals(void) {
        struct sigaction sa = {.sa_handler = SIG_DFL};
        sigset_t none;

        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &sa, NULL);
        sigemptyset(&none);
        return sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Makes spec's fds the child's 0, 1, 2 (/dev/null for -1). */
static int plumb_stdio(const struct process_spec *spec) {
        int fds[3] = {spec->stdin_fd, spec->stdout_fd, spec->stderr_fd};

        if (spec->keep_stdio)
                return 0;
        for (int i = 0; i < 3; i++) {
                if (fds[i] < 0)
                        fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
                else
                        fds[i] = fd_above_stdio(fds[i]);
                if (fds[i] < 0)
                        return -1;
        }
        for (int i = 0; i < 3; i++)
                if (dup2(fds[i], i) < 0)
                        return -1;
        return 0;
}

_Noreturn void process_exec_child(const struct process_spec *spec, int report_fd) {
        if (reset_signals() < 0)
                child_fail(report_fd, SPAWN_STAGE_SETUP);
        if (spec->new_session && setsid() < 0)
                child_fail(report_fd, SPAWN_STAGE_SETUP);
        if (plumb_stdio(spec) < 0)
                child_fail(report_fd, SPAWN_STAGE_SETUP);
        if (spec->controlling_tty && ioctl(0, TIOCSCTTY, 0) < 0)
                child_fail(report_fd, SPAWN_STAGE_SETUP);
        /* Whatever the agent inherited without O_CLOEXEC must not reach the command. */
        (void) syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

        /* Raw syscalls: they act on this thread only, which is all the child has. */
        if (spec->set_identity) {
                if (syscall(SYS_setgroups, spec->n_groups, spec->groups) < 0 ||
                    syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) < 0 ||
                    syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) < 0)
                        child_fail(report_fd, SPAWN_STAGE_IDENTITY);
        }

        if (spec->cwd && chdir(spec->cwd) < 0)
                child_fail(report_fd, SPAWN_STAGE_CHDIR);

        execve(spec->argv[0], spec->argv, spec->envp);
        child_fail(report_fd, SPAWN_STAGE_EXEC);
}

/* In the forked child of a supervised spawn: the program's fds as 0, 1, 2, the report pipe
 * as SUPERVISE_REPORT_FD (inherited), nothing else; then the agent's binary as supervisor. */
static _noreturn_ void exec_supervisor(const struct process_spec *spec, int report_fd, char **argv) {
        if (reset_signals() < 0 || plumb_stdio(spec) < 0)
                child_fail(report_fd, SPAWN_STAGE_SETUP);
        if (report_fd != SUPERVISE_REPORT_FD) {
                if (dup2(report_fd, SUPERVISE_REPORT_FD) < 0) /* dup2 clears O_CLOEXEC */
                        child_fail(report_fd, SPAWN_STAGE_SETUP);
                report_fd = SUPERVISE_REPORT_FD;
        } else if (fcntl(report_fd, F_SETFD, 0) < 0)
                child_fail(report_fd, SPAWN_STAGE_SETUP);
        (void) syscall(SYS_close_range, SUPERVISE_REPORT_FD + 1U, ~0U, CLOSE_RANGE_CLOEXEC);
        execve("/proc/self/exe", argv, spec->envp);
        child_fail(report_fd, SPAWN_STAGE_SETUP);
}

/* Reads the child's reports until the pipe's end: 0 when execve() succeeded (the pipe
 * closed), with a supervisor's STARTED giving the program's pid; or the failure. */
static int read_reports(int fd, struct child *c, enum spawn_stage *ret_stage) {
        struct spawn_report rep;
        ssize_t n;

        for (;;) {
                do
                        n = read(fd, &rep, sizeof(rep));
                while (n < 0 && errno == EINTR);
                if (n == 0 && c->pid > 0)
                        return 0;
                *ret_stage = SPAWN_STAGE_SETUP;
                if (n != (ssize_t) sizeof(rep))
                        return n < 0 ? -errno : -EIO; /* also: a supervisor gone without a word */
                if (rep.kind == SPAWN_REPORT_STARTED && rep.pid > 0 && c->pid == 0) {
                        c->pid = rep.pid; /* written once, before the child is shared */
                        continue;
                }
                if (rep.kind != SPAWN_REPORT_FAILED)
                        return -EIO;
                *ret_stage = (enum spawn_stage) rep.stage;
                return rep.error > 0 ? -rep.error : -EIO;
        }
}

static int child_new(struct child **ret) {
        struct child *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->exit_fd < 0) {
                r = -errno;
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void process_spawns_hold(bool hold) {
        pthread_mutex_lock(&registry_lock);
        spawns_held = hold;
        if (!hold)
                pthread_cond_broadcast(&registry_cond);
        pthread_mutex_unlock(&registry_lock);
}

/* Forks with the registry locked (see the top of the file); the child never returns. */
static pid_t fork_registered(const struct process_spec *spec, char **sv_argv, int report_fd, struct child *c) {
        pid_t pid;

        pthread_mutex_lock(&registry_lock);
        while (spawns_held)
                pthread_cond_wait(&registry_cond, &registry_lock);
        pid = fork();
        if (pid == 0) {
                if (sv_argv)
                        exec_supervisor(spec, report_fd, sv_argv);
                process_exec_child(spec, report_fd);
        }
        if (pid > 0) {
                c->reap_pid = pid;
                c->pid = sv_argv ? 0 : pid;
                c->contained = sv_argv != NULL;
                registry_add(c);
        }
        pthread_mutex_unlock(&registry_lock);
        return pid;
}

int process_spawn(const struct process_spec *spec, struct child **ret, enum spawn_stage *ret_stage) {
        _cleanup_close_ int report_read = -1, report_write = -1;
        struct strv sv_argv = {};
        struct child *c = NULL;
        int pipefd[2], status, r;
        pid_t pid;

        *ret_stage = SPAWN_STAGE_FORK;
        if (spec->contain && (r = supervise_argv(spec, &sv_argv)) < 0)
                return r;
        r = child_new(&c);
        if (r >= 0 && pipe2(pipefd, O_CLOEXEC) < 0) {
                r = -errno;
                child_free(c);
        }
        if (r < 0) {
                strv_done(&sv_argv);
                return r;
        }
        report_read = pipefd[0];
        report_write = pipefd[1];
        pid = fork_registered(spec, sv_argv.v, report_write, c);
        r = pid < 0 ? -errno : 0;
        strv_done(&sv_argv);
        if (pid < 0) {
                child_free(c);
                return r;
        }
        (void) close(TAKE_FD(report_write));
        r = read_reports(report_read, c, ret_stage);
        if (r < 0) {
                child_wait(c, &status);
                child_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

pid_t child_pid(const struct child *c) {
        return c->pid;
}

int child_exit_fd(const struct child *c) {
        return c->exit_fd;
}

bool child_exited(struct child *c, int *ret_status) {
        bool exited;

        pthread_mutex_lock(&registry_lock);
        exited = c->exited;
        if (exited)
                *ret_status = c->status;
        pthread_mutex_unlock(&registry_lock);
        return exited;
}

void child_wait(struct child *c, int *ret_status) {
        pthread_mutex_lock(&registry_lock);
        while (!c->exited)
                pthread_cond_wait(&registry_cond, &registry_lock);
        *ret_status = c->status;
        pthread_mutex_unlock(&registry_lock);
}

int child_signal_group(struct child *c, int sig) {
        ssize_t n;
        int r = 0;

        pthread_mutex_lock(&registry_lock);
        if (c->exited)
                r = -ESRCH;
        else if (!c->contained)
                r = kill(-c->pid, sig) < 0 ? -errno : 0;
        else {
                n = ptree_signal_subtree(c->reap_pid, c->pid, sig);
                r = n < 0 ? (int) n : n == 0 ? -ESRCH : 0;
        }
        pthread_mutex_unlock(&registry_lock);
        return r;
}

/* A supervised child: the supervisor is told to stay until its tree is empty (SIGTERM),
 * then every process in the tree gets sig. With the registry locked. */
static int terminate_tree(struct child *c, int sig) {
        ssize_t n;

        if (c->exited)
                return 0; /* the supervisor left, so its tree was empty (see supervise.c) */
        if (sig != 0)
                (void) kill(c->reap_pid, SIGTERM);
        n = ptree_signal_subtree(c->reap_pid, 0, sig);
        return (int) n;
}

/* Keeps the live members of c's process group (its leader unreaped: the group is c's). */
static void pin_group(struct child *c) {
        struct ptree t = {};
        size_t k = 0;

        if (ptree_read(&t) < 0)
                return; /* keep the older pins */
        for (size_t i = 0; i < t.n; i++)
                if (t.v[i].pgid == c->pid && t.v[i].pid != c->pid && !ptree_entry_dead(&t.v[i]))
                        t.v[k++] = t.v[i];
        t.n = k;
        ptree_done(&c->pinned);
        c->pinned = t;
}

/* An unsupervised child: its group while the leader is unreaped, else the pinned members.
 * With the registry locked. */
static int terminate_group(struct child *c, int sig) {
        int n = 0;

        if (!c->exited) {
                pin_group(c);
                if (kill(-c->pid, sig) < 0)
                        return errno == ESRCH ? 0 : -errno;
                return (int) c->pinned.n + 1;
        }
        for (size_t i = 0; i < c->pinned.n; i++)
                if (ptree_signal(&c->pinned.v[i], sig) >= 0)
                        n++;
        return n;
}

int child_terminate(struct child *c, int sig) {
        int r;

        pthread_mutex_lock(&registry_lock);
        r = c->contained ? terminate_tree(c, sig) : terminate_group(c, sig);
        pthread_mutex_unlock(&registry_lock);
        return r;
}

void child_free(struct child *c) {
        if (!c)
                return;
        pthread_mutex_lock(&registry_lock);
        registry_remove(c);
        pthread_mutex_unlock(&registry_lock);
        if (c->exit_fd >= 0)
                close(c->exit_fd);
        ptree_done(&c->pinned);
        free(c);
}

int wait_status_to_exit_code(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return 255;
}
