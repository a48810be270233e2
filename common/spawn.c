/* spawn.c — see spawn.h. fork+exec with a pipe for output and a poll loop for the timeout. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "timeutil.h"

static _noreturn_ void child_exec(char *const argv[], const struct spawn_opts *o, int out_w) {
        int null = open("/dev/null", O_RDWR);
        sigset_t all;

        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (null < 0)
                _exit(127);
        if (o && o->extra_fd >= 0) {
                if (o->extra_fd == 3)
                        fcntl(3, F_SETFD, 0);
                else if (dup2(o->extra_fd, 3) < 0)
                        _exit(127);
        }
        dup2(null, 0);
        if (o && o->passthrough) {
                /* keep the parent's stdout and stderr */
        } else if (o && o->stdio_fd >= 0) {
                dup2(o->stdio_fd, 1);
                dup2(o->stdio_fd, 2);
        } else {
                dup2(out_w, 1);
                dup2(out_w, 2);
        }
        execvp(argv[0], argv);
        dprintf(2, "cannot execute %s: %s\n", argv[0], strerror(errno));
        _exit(127);
}

int spawn_run(char *const argv[], const struct spawn_opts *o, int *ret_status, struct buf *output) {
        int pipefd[2], status;
        int64_t deadline = o && o->timeout_ms > 0 ? mono_ms() + o->timeout_ms : 0;
        bool timed_out = false;
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(pipefd[0]);
                close(pipefd[1]);
                return r;
        }
        if (pid == 0)
                child_exec(argv, o, pipefd[1]);
        close(pipefd[1]);

        for (;;) {
                struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
                int wait = -1, n;
                char chunk[4096];

                if (deadline) {
                        int64_t left = deadline - mono_ms();
                        if (left <= 0) {
                                kill(pid, SIGKILL);
                                timed_out = true;
                                break;
                        }
                        wait = (int) left;
                }
                n = poll(&p, 1, wait);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        continue;
                ssize_t k = read(pipefd[0], chunk, sizeof(chunk));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                if (output)
                        (void) buf_append(output, chunk, (size_t) k); /* past the cap: dropped */
        }
        close(pipefd[0]);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (timed_out)
                return -ETIMEDOUT;
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return 0;
}

int spawn_check(char *const argv[], char *err, size_t errlen) {
        _cleanup_buf_ struct buf out;
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = -1};
        int status, r;

        buf_init(&out, 64 * 1024);
        r = spawn_run(argv, &o, &status, &out);
        if (r < 0) {
                if (err)
                        snprintf(err, errlen, "%s: %s", argv[0], strerror(-r));
                return r;
        }
        if (status != 0) {
                if (err)
                        text_last_line(out.data, out.len, err, errlen);
                return -EIO;
        }
        return 0;
}
