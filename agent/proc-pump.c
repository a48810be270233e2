/* proc-pump.c — see proc-pump.h. Each watched fd is a struct source in the epoll set (level
 * triggered: one read per ready fd per round, so a process printing gigabytes cannot starve
 * the others). An output source reads at most READ_CHUNK bytes into a static buffer — only
 * this thread uses it — and appends them to the ring under the table lock. An exit source
 * is the child's eventfd from the reaper. Both record what happened in the entry and let
 * proc_table_tick() decide what it means.
 */
#include "proc-pump.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "thread.h"
#include "timeutil.h"

#define READ_CHUNK (64 * 1024)
#define MAX_EVENTS 64
#define PUMP_STACK_SIZE (128 * 1024)

enum source_type {
        SOURCE_OUTPUT,
        SOURCE_EXIT,
        SOURCE_WAKE,
};

struct source {
        enum source_type type;
        int fd;
        enum proc_stream kind; /* of output */
        struct proc *p;        /* a reference */
};

static int epoll_fd = -1;
static struct source wake = {.type = SOURCE_WAKE, .fd = -1};
static uint8_t chunk[READ_CHUNK];

void pump_wake(void) {
        static const uint64_t one = 1;

        (void) !write(wake.fd, &one, sizeof(one));
}

static int watch(struct source *s) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};

        return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s->fd, &ev) < 0 ? -errno : 0;
}

static struct source *source_new(enum source_type type, int fd, enum proc_stream kind, struct proc *p) {
        struct source *s = malloc(sizeof(*s));

        if (s)
                *s = (struct source){.type = type, .fd = fd, .kind = kind, .p = p};
        return s;
}

/* Stops watching s and frees it; closes its fd if it owns it (output fds). */
static void source_drop(struct source *s) {
        (void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
        if (s->type == SOURCE_OUTPUT)
                close(s->fd);
        proc_unref(s->p);
        free(s);
}

int pump_add(struct proc *p, int out_fd, enum proc_stream out_kind, int err_fd) {
        struct source *s[3];
        int n = 0, r;

        s[n++] = source_new(SOURCE_EXIT, child_exit_fd(p->child), 0, p);
        s[n++] = source_new(SOURCE_OUTPUT, out_fd, out_kind, p);
        if (err_fd >= 0)
                s[n++] = source_new(SOURCE_OUTPUT, err_fd, PROC_STDERR, p);
        for (int i = 0; i < n; i++)
                if (!s[i]) {
                        for (int j = 0; j < n; j++)
                                free(s[j]);
                        return -ENOMEM;
                }
        /* Every source holds its reference before the pump can see it. */
        proc_lock();
        for (int i = 0; i < n; i++)
                proc_ref(p);
        p->open_outputs = (unsigned) n - 1;
        proc_unlock();

        r = watch(s[0]);
        if (r < 0) {
                proc_lock();
                p->open_outputs = 0;
                p->refs -= (unsigned) n; /* the caller holds one more: p lives on */
                proc_unlock();
                for (int i = 0; i < n; i++)
                        free(s[i]);
                return r;
        }
        /* The exit is watched, so the entry will end: an output that cannot be watched is
         * lost (and logged) rather than failing a process that already runs. */
        for (int i = 1; i < n; i++) {
                r = watch(s[i]);
                if (r < 0) {
                        log_warn_errno(r, "cannot watch the output of process %d, discarding it", (int) p->pid);
                        proc_lock();
                        p->open_outputs--;
                        proc_unlock();
                        close(s[i]->fd);
                        proc_unref(p);
                        free(s[i]);
                }
        }
        return 0;
}

/* Reads once from an output source; on EOF (or EIO: a terminal whose every slave fd was
 * closed) or an error, drops it. Returns whether the entry's state changed. */
static bool read_output(struct source *s) {
        struct proc *p = s->p;
        ssize_t n = read(s->fd, chunk, sizeof(chunk));

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return false;
        proc_lock();
        if (n > 0 && !p->ended) {
                ring_append(&p->ring, (uint8_t) s->kind, chunk, (size_t) n);
                proc_notify(p);
        }
        if (n <= 0)
                p->open_outputs--;
        proc_unlock();
        if (n > 0)
                return false;
        source_drop(s);
        return true;
}

static bool read_exit(struct source *s) {
        struct proc *p = s->p;
        struct child *child;
        bool exited;
        int status;

        proc_lock();
        child = p->child;
        exited = child_exited(child, &status);
        if (exited) {
                p->exited = true;
                p->status = status;
                p->exited_ms = mono_ms();
                p->child = NULL;
        }
        proc_unlock();
        if (!exited)
                return false;
        source_drop(s); /* before child_free() closes the fd it watches */
        child_free(child);
        return true;
}

static void *pump_main(void *arg) {
        struct epoll_event events[MAX_EVENTS];
        int64_t next_tick = INT64_MAX, now;
        uint64_t v;

        for (;;) {
                bool tick = false;
                int timeout = -1, n;

                now = mono_ms();
                if (next_tick != INT64_MAX)
                        timeout = (int) MIN(MAX(next_tick - now, (int64_t) 0), (int64_t) 60000);
                n = epoll_wait(epoll_fd, events, MAX_EVENTS, timeout);
                if (n < 0 && errno != EINTR)
                        log_warn_errno(errno, "epoll_wait() failed, ignoring");
                for (int i = 0; i < n; i++) {
                        struct source *s = events[i].data.ptr;
                        switch (s->type) {
                        case SOURCE_WAKE:
                                (void) !read(s->fd, &v, sizeof(v));
                                tick = true;
                                break;
                        case SOURCE_EXIT:
                                tick |= read_exit(s);
                                break;
                        case SOURCE_OUTPUT:
                                tick |= read_output(s);
                                break;
                        }
                }
                now = mono_ms();
                if (tick || now >= next_tick)
                        next_tick = proc_table_tick(now);
        }
        return NULL;
}

int pump_start(void) {
        int r;

        epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0)
                return -errno;
        wake.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake.fd < 0)
                return -errno;
        r = watch(&wake);
        if (r < 0)
                return r;

        return thread_start_detached(pump_main, NULL, PUMP_STACK_SIZE);
}
