/* loop.c — the threads that drive the preview relays: a few epoll loops (one per two CPUs,
 * up to four) instead of a thread per connection. Under load one wake-up serves every
 * connection that became ready meanwhile, where a thread per connection would pay a
 * context switch for each request and each answer.
 *
 * A connection arrives here with its tunnel open and its first step done (proxy.c), through
 * a queue the loop's thread empties when woken; from then on only that thread touches it. Each fd is registered for what the relay waits for
 * (level-triggered); the tunnel's fd is left out while nothing is awaited from it, or its
 * hang-up would wake the loop for ever. Every TICK_MS each connection gets a step without
 * events, for its timers (idle, a failed request's wait, a split status line). A connection
 * ends in the loop's thread, except one whose answer the proxy must send itself: that may
 * block, so a thread of its own sends it.
 */
#include "proxy/proxy-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "thread.h"
#include "timeutil.h"

#define TICK_MS 1000
#define ANSWER_STACK (256 * 1024)
#define EVENTS_MAX 128
#define UNREGISTERED UINT32_MAX
#define TAG_STOP 0 /* epoll data of the eventfds; connections are pointers, never this small */
#define TAG_WAKE 2

struct loop {
        int ep, stop_fd, wake_fd;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;   /* guards incoming */
        struct pconn *incoming; /* handed over by loop_add, not yet taken in */
        struct pconn *conns;    /* the loop thread's own */
};

/* The epoll data of an fd: the connection, with the low bit telling the tunnel's fd. */
static uint64_t tag(struct pconn *c, bool up) {
        return (uint64_t) (uintptr_t) c | (up ? 1u : 0u);
}

static int reg(struct loop *l, struct pconn *c, bool up) {
        int fd = up ? c->ufd : c->cfd;
        uint32_t *have = up ? &c->reg_u : &c->reg_c, want = up ? c->rl.want_u : c->rl.want_c;
        struct epoll_event ev = {.events = want, .data.u64 = tag(c, up)};
        int op;

        if (up && want == 0) {
                if (*have == UNREGISTERED)
                        return 0;
                op = EPOLL_CTL_DEL; /* see the top of the file */
        } else if (*have == want)
                return 0;
        else
                op = *have == UNREGISTERED ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(l->ep, op, fd, &ev) < 0)
                return -errno;
        *have = op == EPOLL_CTL_DEL ? UNREGISTERED : want;
        return 0;
}

/* Ends c: unregistered at once; freed after the batch of events, which may still name it. */
static void end(struct loop *l, struct pconn *c, enum relay_result r) {
        c->dead = true;
        c->answer = r == RELAY_ANSWER;
        if (c->reg_c != UNREGISTERED)
                (void) epoll_ctl(l->ep, EPOLL_CTL_DEL, c->cfd, NULL);
        if (c->reg_u != UNREGISTERED)
                (void) epoll_ctl(l->ep, EPOLL_CTL_DEL, c->ufd, NULL);
        c->reg_c = c->reg_u = UNREGISTERED;
}

static void step(struct loop *l, struct pconn *c, uint32_t crev, uint32_t urev, int64_t now) {
        enum relay_result r;

        if (c->dead)
                return;
        r = relay_step(c, crev, urev, now);
        if (r == RELAY_GO_ON && (reg(l, c, false) < 0 || reg(l, c, true) < 0))
                r = RELAY_END;
        if (r != RELAY_GO_ON)
                end(l, c, r);
}

static void *answer_main(void *arg) {
        struct pconn *c = arg;

        conn_finish(c, &c->rl.fail);
        return NULL;
}

/* Frees the connections that ended; one that must be answered first gets a thread. */
static void reap(struct loop *l) {
        struct pconn **pp = &l->conns, *c;

        while ((c = *pp)) {
                if (!c->dead) {
                        pp = &c->lnext;
                        continue;
                }
                *pp = c->lnext;
                relay_end(c);
                if (!c->answer) {
                        conn_finish(c, NULL);
                        continue;
                }
                if (thread_start_detached(answer_main, c, ANSWER_STACK) < 0)
                        conn_finish(c, NULL);
        }
}

/* Takes in what loop_add handed over. */
static void take_in(struct loop *l) {
        struct pconn *c, *next;
        uint64_t n;

        if (read(l->wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
                log_warn("preview loop: cannot read its wake-up: %m, ignoring");
        pthread_mutex_lock(&l->lock);
        c = l->incoming;
        l->incoming = NULL;
        pthread_mutex_unlock(&l->lock);
        for (; c; c = next) {
                next = c->lnext;
                c->lnext = l->conns;
                l->conns = c;
                c->reg_c = c->reg_u = UNREGISTERED;
                if (reg(l, c, false) < 0 || reg(l, c, true) < 0)
                        end(l, c, RELAY_END);
        }
}

static void *loop_main(void *arg) {
        struct loop *l = arg;
        struct epoll_event evs[EVENTS_MAX];
        int64_t last_tick = mono_ms();

        for (;;) {
                int n = epoll_wait(l->ep, evs, EVENTS_MAX, TICK_MS);
                int64_t now = mono_ms();

                if (n < 0 && errno != EINTR) {
                        log_error("preview loop: epoll_wait failed: %m");
                        break;
                }
                for (int i = 0; i < n; i++) {
                        uint64_t t = evs[i].data.u64;
                        if (t == TAG_STOP)
                                return NULL; /* proxy_stop: every connection has ended */
                        if (t == TAG_WAKE) {
                                take_in(l);
                                continue;
                        }
                        struct pconn *c = (struct pconn *) (uintptr_t) (t & ~(uint64_t) 1);
                        bool up = t & 1;
                        step(l, c, up ? 0 : evs[i].events, up ? evs[i].events : 0, now);
                }
                if (now - last_tick >= TICK_MS) {
                        last_tick = now;
                        for (struct pconn *c = l->conns; c; c = c->lnext)
                                step(l, c, 0, 0, now);
                }
                reap(l);
        }
        return NULL;
}

int loops_start(struct loop **ret, unsigned n) {
        struct loop *loops = calloc(n, sizeof(*loops));
        int r = 0;

        if (!loops)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
                loops[i] = (struct loop){.ep = -1, .stop_fd = -1, .wake_fd = -1};
        for (unsigned i = 0; i < n && r >= 0; i++) {
                struct loop *l = &loops[i];
                struct epoll_event stop = {.events = EPOLLIN, .data.u64 = TAG_STOP};
                struct epoll_event wake = {.events = EPOLLIN, .data.u64 = TAG_WAKE};

                pthread_mutex_init(&l->lock, NULL);
                l->ep = epoll_create1(EPOLL_CLOEXEC);
                l->stop_fd = eventfd(0, EFD_CLOEXEC);
                l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (l->ep < 0 || l->stop_fd < 0 || l->wake_fd < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, l->stop_fd, &stop) < 0 ||
                    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake_fd, &wake) < 0)
                        r = -errno;
                else if ((r = -pthread_create(&l->thread, NULL, loop_main, l)) == 0)
                        l->started = true;
        }
        if (r < 0) {
                loops_stop(loops, n);
                return r;
        }
        *ret = loops;
        return 0;
}

void loops_stop(struct loop *loops, unsigned n) {
        uint64_t one = 1;

        if (!loops)
                return;
        for (unsigned i = 0; i < n; i++) {
                struct loop *l = &loops[i];
                if (l->started) {
                        if (write(l->stop_fd, &one, sizeof(one)) < 0)
                                log_warn("preview loop: cannot signal its thread: %m, ignoring");
                        pthread_join(l->thread, NULL);
                }
                if (l->ep >= 0)
                        close(l->ep);
                if (l->stop_fd >= 0)
                        close(l->stop_fd);
                if (l->wake_fd >= 0)
                        close(l->wake_fd);
                pthread_mutex_destroy(&l->lock);
        }
        free(loops);
}

void loop_add(struct loop *loops, unsigned n, struct pconn *c) {
        static atomic_uint next;
        struct loop *l = &loops[atomic_fetch_add(&next, 1) % n];
        uint64_t one = 1;

        pthread_mutex_lock(&l->lock);
        c->lnext = l->incoming;
        l->incoming = c;
        pthread_mutex_unlock(&l->lock);
        if (write(l->wake_fd, &one, sizeof(one)) < 0)
                log_warn("preview loop: cannot wake its thread: %m, ignoring"); /* only at overflow: it is awake */
}
