/* proc-stream.c — see proc-stream.h. A reader copies at most EVENT_RAW bytes out of the
 * ring per look, under the table lock, then encodes and sends them without it: a slow
 * client only makes its own cursor fall behind. Between looks it sleeps in poll() on its
 * waiter's eventfd and on the client's socket (http_conn_gone()), so it wakes for new output, for
 * the client hanging up, or for the keepalive.
 *
 * Output events are formatted here directly rather than through jansson: they are the bulk
 * of the traffic, and their only variable part is base64, which needs no escaping.
 */
#include "proc-stream.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base64.h"
#include "log.h"
#include "ndjson.h"
#include "proc-signal.h"
#include "timeutil.h"

#define EVENT_RAW (48 * 1024) /* output bytes per event: 64 KiB of base64 */
#define EVENT_LINE_MAX (base64_encoded_len(EVENT_RAW) + 128)

struct reader {
        struct http_conn *c;
        struct proc *p;
        struct proc_waiter w;
        uint64_t cursor;
        int64_t last_write; /* monotonic ms */
        uint8_t *raw;       /* EVENT_RAW bytes */
        char *line;         /* EVENT_LINE_MAX bytes */
};

/* What one look at the process found. */
struct news {
        uint64_t dropped;
        size_t n; /* bytes in reader.raw */
        uint8_t kind;
        bool ended; /* and the reader has had everything */
        int status;
        bool timed_out;
};

static int send_json(struct reader *rd, json_t *ev) {
        int r;

        if (!ev)
                return -ENOMEM;
        r = ndjson_event(rd->c, ev);
        json_decref(ev);
        rd->last_write = mono_ms();
        return r;
}

static int send_output(struct reader *rd, uint8_t kind, size_t n) {
        static const char *const names[] = {[PROC_STDOUT] = "stdout", [PROC_STDERR] = "stderr", [PROC_PTY] = "pty"};
        char ts[RFC3339_LEN + 1];
        size_t len;

        format_rfc3339(now_ms(), ts);
        len = (size_t) snprintf(rd->line, 128, "{\"type\":\"%s\",\"ts\":\"%s\",\"data\":\"", names[kind], ts);
        len += base64_encode(rd->raw, n, rd->line + len);
        memcpy(rd->line + len, "\"}\n", 3);
        rd->last_write = mono_ms();
        return http_chunked_write(rd->c, rd->line, len + 3);
}

static int send_end(struct reader *rd, const struct news *nw) {
        char buf[16];
        const char *sig = WIFSIGNALED(nw->status) ? signal_name(WTERMSIG(nw->status), buf) : NULL;
        int code = nw->timed_out ? 124 : wait_status_to_exit_code(nw->status);

        return send_json(rd, json_pack("{s:s,s:i,s:b,s:s?}", "type", "end", "exit_code", code, "timed_out",
                                       nw->timed_out, "signal", sig));
}

static void look(struct reader *rd, struct news *nw) {
        struct proc *p = rd->p;

        *nw = (struct news){};
        proc_lock();
        nw->n = ring_read(&p->ring, &rd->cursor, &nw->dropped, &nw->kind, rd->raw, EVENT_RAW);
        if (nw->n == 0 && p->ended) {
                nw->ended = true;
                nw->status = p->status;
                nw->timed_out = p->timed_out;
        }
        /* Checked under the lock the pump appends under: no wake-up can be missed. */
        if (nw->n == 0 && nw->dropped == 0 && !nw->ended)
                rd->w.armed = true;
        proc_unlock();
}

/* Sleeps until there is news, the keepalive is due (and sent), or the client has gone
 * (-ECONNRESET). */
static int wait_news(struct reader *rd) {
        int64_t left = rd->last_write + NDJSON_KEEPALIVE_MS - mono_ms();
        struct pollfd pfd[2] = {
                {.fd = rd->w.fd, .events = POLLIN},
                {.fd = http_conn_fd(rd->c), .events = http_conn_hangup_events(rd->c)},
        };
        uint64_t v;
        int r;

        if (left <= 0) {
                rd->last_write = mono_ms();
                return ndjson_keepalive(rd->c);
        }
        r = poll(pfd, ELEMENTSOF(pfd), (int) left);
        if (r < 0)
                return errno == EINTR ? 0 : -errno;
        if (http_conn_gone(rd->c, pfd[1].revents))
                return -ECONNRESET;
        if (pfd[0].revents)
                (void) !read(rd->w.fd, &v, sizeof(v));
        return 0;
}

/* Sends events until the end (returns 1) or a failure (-errno). */
static int pump_events(struct reader *rd) {
        struct news nw;
        int r = 0;

        for (;;) {
                look(rd, &nw);
                if (nw.dropped > 0)
                        r = send_json(rd, json_pack("{s:s,s:I}", "type", "dropped", "bytes", (json_int_t) nw.dropped));
                if (r >= 0 && nw.n > 0)
                        r = send_output(rd, nw.kind, nw.n);
                if (r >= 0 && nw.ended)
                        r = send_end(rd, &nw);
                if (r < 0)
                        return r;
                if (nw.ended)
                        return 1;
                if (nw.n == 0 && nw.dropped == 0) {
                        r = wait_news(rd);
                        if (r < 0)
                                return r;
                }
        }
}

static void waiter_add(struct proc *p, struct proc_waiter *w) {
        proc_lock();
        w->next = p->waiters;
        p->waiters = w;
        proc_unlock();
}

static void waiter_remove(struct proc *p, struct proc_waiter *w) {
        proc_lock();
        for (struct proc_waiter **q = &p->waiters; *q; q = &(*q)->next)
                if (*q == w) {
                        *q = w->next;
                        break;
                }
        proc_unlock();
}

/* The stream is over before the end: a foreground process goes with its starter's client. */
static void abandon(struct proc *p, bool starter, int r) {
        if (!starter || p->background)
                return;
        proc_lock();
        if (!p->ended) {
                log_info("process %d: its client went away (%s), terminating it", (int) p->pid, strerror(-r));
                proc_terminate(p, mono_ms());
        }
        proc_unlock();
}

int proc_stream_serve(struct http_conn *c, struct proc *p, bool starter) {
        struct reader rd = {.c = c, .p = p, .w = {.fd = -1}, .last_write = mono_ms()};
        int r;

        rd.w.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        rd.raw = malloc(EVENT_RAW);
        rd.line = malloc(EVENT_LINE_MAX);
        if (rd.w.fd < 0 || !rd.raw || !rd.line) {
                r = http_respond_error(c, 503, "unavailable", "cannot stream process %d: %s", (int) p->pid,
                                       rd.w.fd < 0 ? strerror(errno) : "out of memory");
                abandon(p, starter, -ENOMEM);
                goto out;
        }

        waiter_add(p, &rd.w);
        r = ndjson_begin(c);
        if (r >= 0)
                r = send_json(&rd, json_pack("{s:s,s:i}", "type", "start", "pid", (int) p->pid));
        if (r >= 0)
                r = pump_events(&rd);
        waiter_remove(p, &rd.w);
        if (r == -ENOMEM && send_json(&rd, json_pack("{s:s,s:s}", "type", "error", "message",
                                                      "the agent ran out of memory")) >= 0)
                (void) ndjson_end(c);
        if (r < 0)
                abandon(p, starter, r);
        else
                r = ndjson_end(c);
out:
        if (rd.w.fd >= 0)
                close(rd.w.fd);
        free(rd.raw);
        free(rd.line);
        return r < 0 ? r : 0;
}
