/* process.c — see process.h. Owns the registry of children the agent waits for and the
 * reaper thread that feeds it.
 *
 * The race where a child exits before it is registered is closed by holding the
 * registry lock from before fork() until the child is in the list: the reaper takes the
 * same lock around its waitpid() loop, so it cannot reap a pid nobody has claimed yet.
 * The forked child of this multithreaded program only makes async-signal-safe calls
 * (raw syscalls for the identity switch) before execve().
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
#include "thread.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct child {
        pid_t pid;
        bool exited;
        int status;
        int exit_fd; /* eventfd, written once by the reaper */
        struct child *prev, *next;
};

/* The registry. One per process, like the reaper it belongs to. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t registry_cond = PTHREAD_COND_INITIALIZER;
static struct child *registry;

/* What a child that failed before execve() writes to its error pipe. */
struct spawn_failure {
        int stage;
        int error;
};

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
                if (c->pid == pid && !c->exited) {
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

static _noreturn_ void child_fail(int err_fd, enum spawn_stage stage) {
        struct spawn_failure f = {.stage = stage, .error = errno};

        (void) !write(err_fd, &f, sizeof(f));
        _exit(127);
}

/* Runs in the forked child: async-signal-safe calls only. */
static _noreturn_ void child_exec(const struct process_spec *spec, int err_fd) {
        struct sigaction sa = {.sa_handler = SIG_DFL};
        int fds[3] = {spec->stdin_fd, spec->stdout_fd, spec->stderr_fd};
        sigset_t none;

        /* Ignored signals (SIGPIPE) stay ignored across execve(); reset all of them. */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &sa, NULL);
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                child_fail(err_fd, SPAWN_STAGE_SETUP);

        if (spec->new_session && setsid() < 0)
                child_fail(err_fd, SPAWN_STAGE_SETUP);

        for (int i = 0; i < 3; i++) {
                if (fds[i] < 0)
                        fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
                else
                        fds[i] = fd_above_stdio(fds[i]);
                if (fds[i] < 0)
                        child_fail(err_fd, SPAWN_STAGE_SETUP);
        }
        for (int i = 0; i < 3; i++)
                if (dup2(fds[i], i) < 0)
                        child_fail(err_fd, SPAWN_STAGE_SETUP);
        if (spec->controlling_tty && ioctl(0, TIOCSCTTY, 0) < 0)
                child_fail(err_fd, SPAWN_STAGE_SETUP);
        /* Whatever the agent inherited without O_CLOEXEC must not reach the command. */
        (void) syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

        /* Raw syscalls: they act on this thread only, which is all the child has. */
        if (spec->set_identity) {
                if (syscall(SYS_setgroups, spec->n_groups, spec->groups) < 0 ||
                    syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) < 0 ||
                    syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) < 0)
                        child_fail(err_fd, SPAWN_STAGE_IDENTITY);
        }

        if (spec->cwd && chdir(spec->cwd) < 0)
                child_fail(err_fd, SPAWN_STAGE_CHDIR);

        execve(spec->argv[0], spec->argv, spec->envp);
        child_fail(err_fd, SPAWN_STAGE_EXEC);
}

/* Reads the child's report: 0 when execve() succeeded (EOF), or the failure. */
static int read_spawn_report(int fd, enum spawn_stage *ret_stage) {
        struct spawn_failure f;
        ssize_t n;

        do
                n = read(fd, &f, sizeof(f));
        while (n < 0 && errno == EINTR);
        if (n == 0)
                return 0;
        if (n != (ssize_t) sizeof(f)) {
                *ret_stage = SPAWN_STAGE_SETUP;
                return n < 0 ? -errno : -EIO;
        }
        *ret_stage = (enum spawn_stage) f.stage;
        return f.error > 0 ? -f.error : -EIO;
}

int process_spawn(const struct process_spec *spec, struct child **ret, enum spawn_stage *ret_stage) {
        _cleanup_close_ int err_read = -1, err_write = -1;
        struct child *c;
        int pipefd[2], status, r;
        pid_t pid;

        *ret_stage = SPAWN_STAGE_FORK;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->exit_fd < 0) {
                r = -errno;
                free(c);
                return r;
        }
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                r = -errno;
                child_free(c);
                return r;
        }
        err_read = pipefd[0];
        err_write = pipefd[1];

        pthread_mutex_lock(&registry_lock);
        pid = fork();
        if (pid == 0)
                child_exec(spec, err_write);
        if (pid < 0) {
                r = -errno;
                pthread_mutex_unlock(&registry_lock);
                close(c->exit_fd);
                free(c);
                return r;
        }
        c->pid = pid;
        registry_add(c);
        pthread_mutex_unlock(&registry_lock);

        (void) close(TAKE_FD(err_write));
        r = read_spawn_report(err_read, ret_stage);
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
        if (kill(-c->pid, sig) < 0)
                return -errno;
        return 0;
}

void child_free(struct child *c) {
        if (!c)
                return;
        pthread_mutex_lock(&registry_lock);
        registry_remove(c);
        pthread_mutex_unlock(&registry_lock);
        if (c->exit_fd >= 0)
                close(c->exit_fd);
        free(c);
}

int wait_status_to_exit_code(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return 255;
}
