/* spawn.c — see spawn.h. fork + execve, a pipe for the child's output, and a wait on the pipe
 * and a pidfd under one deadline; past it the child's whole process group is killed.
 *
 * The engine is multi-threaded, so after fork the child may call only async-signal-safe
 * functions (another thread may have held malloc's lock at fork time): everything it needs —
 * the program's path, /dev/null — is prepared by the parent, and the child does dup2,
 * close_range, sigprocmask, setpgid, open, setns, unshare, mount, setrlimit, execve, write and
 * _exit only.
 * Descriptors: the pipe and /dev/null are O_CLOEXEC, and the child closes everything above
 * its stdio (and fd 3 when it passes one) before execve, whatever the rest of the process
 * opened without O_CLOEXEC.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "timeutil.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

/* Finds name on $PATH (or takes it as a path when it has a '/'), before fork. */
static int resolve(const char *name, char *out, size_t n) {
        const char *path = getenv("PATH");
        struct stat st;

        if (strchr(name, '/'))
                return snprintf(out, n, "%s", name) < (int) n ? 0 : -ENAMETOOLONG;
        for (const char *p = path && *path ? path : DEFAULT_PATH; *p;) {
                size_t len = strcspn(p, ":");
                if (len > 0 && snprintf(out, n, "%.*s/%s", (int) len, p, name) < (int) n && stat(out, &st) == 0 &&
                    S_ISREG(st.st_mode) && access(out, X_OK) == 0)
                        return 0;
                p += len + (p[len] == ':');
        }
        return -ENOENT;
}

static void say(const char *s) {
        (void) !write(2, s, strlen(s));
}

static _noreturn_ void child_exec(const char *path, char *const argv[], const struct spawn_opts *o, int null_fd, int out_w) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigset_t none;
        int first_closed = 3;

        sigemptyset(&none);
        (void) sigaction(SIGPIPE, &dfl, NULL);
        (void) setpgid(0, 0); /* its own group: a deadline kills whatever it started too */
        if (dup2(null_fd, 0) < 0)
                _exit(127);
        if (!o->passthrough && dup2(o->stdio_fd >= 0 ? o->stdio_fd : out_w, 1) < 0)
                _exit(127);
        if (!o->passthrough && dup2(1, 2) < 0)
                _exit(127);
        if (o->extra_fd >= 0) {
                if (o->extra_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(o->extra_fd, 3) < 0)
                        _exit(127);
                first_closed = 4;
        }
        if (o->netns_path) {
                int fd = open(o->netns_path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
                        say("cannot enter network namespace ");
                        say(o->netns_path);
                        say("\n");
                        _exit(127);
                }
                close(fd);
        }
        if (o->hide_dir && (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
                            mount("tmpfs", o->hide_dir, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") < 0)) {
                say("cannot hide ");
                say(o->hide_dir);
                say("\n");
                _exit(127);
        }
        if (o->open_files) {
                struct rlimit rl = {.rlim_cur = o->open_files, .rlim_max = o->open_files};
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                        say("cannot set the open-file limit\n");
                        _exit(127);
                }
        }
        (void) syscall(SYS_close_range, first_closed, ~0U, 0);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, environ);
        say("cannot execute ");
        say(path);
        say("\n");
        _exit(127);
}

/* Waits for pid to end, reading its output from out_r (-1 once it ended) into output, until
 * deadline (0: none). Returns 0 or -ETIMEDOUT (the child's group then killed and reaped). */
static int wait_child(pid_t pid, int out_r, int64_t deadline, struct buf *output, int *ret_status) {
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0), status, r = 0;
        char chunk[4096];

        for (;;) {
                struct pollfd p[2] = {{.fd = out_r, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
                int64_t left = deadline ? deadline - mono_ms() : -1;
                ssize_t k;

                if (deadline && left <= 0) {
                        (void) kill(-pid, SIGKILL);
                        (void) kill(pid, SIGKILL);
                        r = -ETIMEDOUT;
                        break;
                }
                if (out_r < 0 && pidfd < 0) { /* no pidfd (old kernel): poll for the end */
                        if (waitpid(pid, &status, WNOHANG) == pid)
                                goto reaped;
                        (void) poll(NULL, 0, left < 0 || left > 10 ? 10 : (int) left);
                        continue;
                }
                if (poll(p, 2, left < 0 || left > INT_MAX ? -1 : (int) left) <= 0)
                        continue;
                if (p[1].revents)
                        break; /* ended (its output, if any is left, is read below) */
                if (!p[0].revents)
                        continue;
                k = read(out_r, chunk, sizeof(chunk));
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (k <= 0)
                        out_r = -1; /* closed: it may still run (a daemonising child) */
                else if (output)
                        (void) buf_append(output, chunk, (size_t) k); /* past the cap: dropped */
        }
        while (r == 0 && out_r >= 0) { /* what it wrote last (non-blocking: a daemon it left may hold the pipe) */
                ssize_t k = read(out_r, chunk, sizeof(chunk));
                if (k <= 0)
                        break;
                if (output)
                        (void) buf_append(output, chunk, (size_t) k);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        r = r ? r : -errno;
                        break;
                }
reaped:
        if (pidfd >= 0)
                close(pidfd);
        if (r == 0)
                *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return r;
}

int spawn_run(char *const argv[], const struct spawn_opts *o, int *ret_status, struct buf *output) {
        struct spawn_opts dflt = {.extra_fd = -1, .stdio_fd = -1};
        int timeout_ms, pipefd[2], null_fd, r;
        char path[PATH_MAX];
        pid_t pid;

        o = o ? o : &dflt;
        timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : SPAWN_DEFAULT_TIMEOUT_MS;
        r = resolve(argv[0], path, sizeof(path));
        if (r < 0)
                return r;
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0)
                return -errno;
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                r = -errno;
                close(null_fd);
                return r;
        }
        (void) fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
        pid = fork();
        if (pid == 0)
                child_exec(path, argv, o, null_fd, pipefd[1]);
        r = pid < 0 ? -errno : 0;
        close(pipefd[1]);
        close(null_fd);
        if (r == 0) {
                (void) setpgid(pid, pid); /* as the child does: whichever runs first */
                r = wait_child(pid, pipefd[0], mono_ms() + timeout_ms, output, ret_status);
        }
        close(pipefd[0]);
        return r;
}

int spawn_check(char *const argv[], char *err, size_t errlen) {
        _cleanup_buf_ struct buf out;
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = -1};
        int status, r;

        buf_init(&out, 64 * 1024);
        r = spawn_run(argv, &o, &status, &out);
        if (r < 0) {
                if (err)
                        snprintf(err, errlen, "%s: %s", argv[0],
                                 r == -ETIMEDOUT ? "did not finish in time, killed" : strerror(-r));
                return r;
        }
        if (status != 0) {
                if (err)
                        text_last_line(out.data, out.len, err, errlen);
                return -EIO;
        }
        return 0;
}
