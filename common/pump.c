/* pump.c — see pump.h. */
#include "pump.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "timeutil.h"

#define PIPE_SIZE (256 * 1024)

int pump_init(struct pump *p, int from, int to) {
        *p = (struct pump){.from = from, .to = to, .pipe = {-1, -1}};
        if (pipe2(p->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        (void) fcntl(p->pipe[1], F_SETPIPE_SZ, PIPE_SIZE); /* a smaller pipe works too */
        return 0;
}

ssize_t pump_step(struct pump *p) {
        ssize_t k, moved = 0;

        if (p->done)
                return 0;
        for (;;) {
                bool progress = false, drained = false;

                if (!p->eof && !p->full) {
                        k = splice(p->from, NULL, p->pipe[1], NULL, PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                        if (k > 0) {
                                p->in_pipe += (size_t) k;
                                progress = true;
                                drained = k < PIPE_SIZE / 2; /* a short read: most likely all there was */
                        } else if (k == 0)
                                p->eof = true;
                        else if (errno == EAGAIN && p->in_pipe > 0)
                                p->full = true; /* or `from` had nothing: either way, wait for `to` */
                        else if (errno == EAGAIN)
                                drained = true;
                        else if (errno != EINTR)
                                return -errno;
                }
                if (p->in_pipe > 0) {
                        k = splice(p->pipe[0], NULL, p->to, NULL, p->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                        if (k > 0) {
                                p->in_pipe -= (size_t) k;
                                p->full = false;
                                p->moved += (uint64_t) k;
                                moved += k;
                                progress = true;
                        } else if (k < 0 && errno != EAGAIN && errno != EINTR)
                                return -errno;
                }
                if (p->eof && p->in_pipe == 0) {
                        if (!p->keep_open)
                                (void) shutdown(p->to, SHUT_WR);
                        p->done = true;
                        return moved;
                }
                /* Nothing moved, or all of a short read went on: poll() says when there is more. */
                if (!progress || (drained && p->in_pipe == 0))
                        return moved;
        }
}

short pump_events_from(const struct pump *p) {
        return !p->done && !p->eof && !p->full && p->in_pipe < PIPE_SIZE ? POLLIN : 0;
}

short pump_events_to(const struct pump *p) {
        return !p->done && p->in_pipe > 0 ? POLLOUT : 0;
}

void pump_done(struct pump *p) {
        for (int i = 0; i < 2; i++)
                if (p->pipe[i] >= 0) {
                        close(p->pipe[i]);
                        p->pipe[i] = -1;
                }
}

int pump_relay(int a, int b, long idle_ms) {
        struct pump up, down;
        int64_t last = mono_ms();
        int r;

        (void) fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK);
        (void) fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK);
        r = pump_init(&up, a, b);
        if (r >= 0)
                r = pump_init(&down, b, a);
        else
                down = (struct pump){.pipe = {-1, -1}};
        while (r >= 0 && !(up.done && down.done)) {
                /* a is always watched, for its hang-up; b only when something waits on it. */
                struct pollfd pfd[2] = {
                        {.fd = a, .events = pump_events_from(&up) | pump_events_to(&down)},
                        {.fd = b, .events = pump_events_from(&down) | pump_events_to(&up)},
                };
                ssize_t k1, k2;
                int n;

                if (pfd[1].events == 0)
                        pfd[1].fd = -1;
                n = poll(pfd, 2, idle_ms < 0 ? -1 : 1000);
                if (n < 0 && errno != EINTR) {
                        r = -errno;
                        break;
                }
                if ((pfd[0].revents & (POLLHUP | POLLERR)) || (pfd[1].revents & POLLERR)) {
                        r = pfd[0].revents & POLLHUP ? -ECONNRESET : -EPIPE;
                        break;
                }
                k1 = (pfd[0].revents & POLLIN) || (pfd[1].revents & (POLLOUT | POLLHUP)) ? pump_step(&up) : 0;
                k2 = (pfd[1].revents & (POLLIN | POLLHUP)) || (pfd[0].revents & POLLOUT) ? pump_step(&down) : 0;
                if (k1 < 0 || k2 < 0) {
                        r = k1 < 0 ? (int) k1 : (int) k2;
                        break;
                }
                if (k1 > 0 || k2 > 0)
                        last = mono_ms();
                else if (idle_ms >= 0 && mono_ms() - last >= idle_ms)
                        r = -ETIMEDOUT;
        }
        pump_done(&up);
        pump_done(&down);
        return r < 0 ? r : 0;
}
