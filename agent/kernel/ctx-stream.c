/* ctx-stream.c — see ctx-stream.h. The keepalive thread sleeps on the client's socket
 * (POLLRDHUP: the client went away) and on an eventfd (the stream is over) until the next
 * keepalive is due; every write, whoever makes it, takes the stream's lock and moves the
 * keepalive deadline.
 */
#include "ctx-stream.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "../ndjson.h"
#include "timeutil.h"

/* With the lock held: writes ev, beginning the response first if needed. */
static int write_locked(struct ctx_stream *s, json_t *ev) {
        int r;

        if (s->gone || s->answered || s->ended)
                return -EPIPE;
        if (!s->begun) {
                r = ndjson_begin(s->conn);
                if (r < 0) {
                        s->gone = true;
                        return -EPIPE;
                }
                s->begun = true;
        }
        r = ndjson_event(s->conn, ev);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                s->gone = true;
                return -EPIPE;
        }
        s->last_write_ms = mono_ms();
        return 0;
}

/* Tells the backend (watch fd) that it should stop; idempotent. */
static void signal_watch(struct ctx_stream *s) {
        if (s->watch[1] >= 0)
                (void) shutdown(s->watch[1], SHUT_WR);
}

static void *ticker_main(void *arg) {
        struct ctx_stream *s = arg;

        for (;;) {
                struct pollfd pfd[2] = {
                        {.fd = s->stop_fd, .events = POLLIN},
                        {.fd = http_conn_fd(s->conn), .events = http_conn_hangup_events(s->conn)},
                };
                int64_t left;
                bool gone;

                pthread_mutex_lock(&s->lock);
                left = s->last_write_ms + NDJSON_KEEPALIVE_MS - mono_ms();
                gone = s->gone;
                if (left <= 0 && !gone) {
                        json_t *ev = json_pack("{s:s}", "type", "keepalive");
                        if (ev)
                                (void) write_locked(s, ev);
                        json_decref(ev);
                        gone = s->gone;
                        left = NDJSON_KEEPALIVE_MS;
                }
                pthread_mutex_unlock(&s->lock);
                if (gone) {
                        signal_watch(s);
                        pfd[1].fd = -1; /* nothing more to watch there */
                }

                if (poll(pfd, 2, (int) MAX(left, 1)) < 0 && errno != EINTR)
                        return NULL;
                if (pfd[0].revents)
                        return NULL;
                if (pfd[1].fd >= 0 && http_conn_gone(s->conn, pfd[1].revents)) {
                        pthread_mutex_lock(&s->lock);
                        s->gone = true;
                        pthread_mutex_unlock(&s->lock);
                        signal_watch(s);
                        /* Keep running only to be stopped: nothing will be written any more. */
                        (void) poll(pfd, 1, -1);
                        return NULL;
                }
        }
}

int ctx_stream_open(struct ctx_stream *s, struct http_conn *conn) {
        int r;

        *s = (struct ctx_stream){.conn = conn, .watch = {-1, -1}, .stop_fd = -1};
        pthread_mutex_init(&s->lock, NULL);
        s->last_write_ms = mono_ms();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->watch) < 0)
                return -errno;
        s->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (s->stop_fd < 0)
                return -errno;
        r = pthread_create(&s->ticker, NULL, ticker_main, s);
        if (r != 0)
                return -r;
        s->ticker_running = true;
        return 0;
}

int ctx_stream_event(struct ctx_stream *s, json_t *ev) {
        int r;

        pthread_mutex_lock(&s->lock);
        r = write_locked(s, ev);
        if (r >= 0 && streq(json_string_value(json_object_get(ev, "type")) ?: "", "error"))
                s->error_sent = true;
        pthread_mutex_unlock(&s->lock);
        return r;
}

int ctx_stream_eventf(struct ctx_stream *s, const char *fmt, ...) {
        json_t *ev;
        va_list ap;
        int r;

        va_start(ap, fmt);
        ev = json_vpack_ex(NULL, 0, fmt, ap);
        va_end(ap);
        if (!ev)
                return -ENOMEM;
        r = ctx_stream_event(s, ev);
        json_decref(ev);
        return r;
}

int ctx_stream_error(struct ctx_stream *s, const char *name, const char *value) {
        return ctx_stream_eventf(s, "{s:s,s:s,s:s,s:[]}", "type", "error", "name", name, "value", value, "traceback");
}

/* kernel_sink.event: the output cap, then the write. */
static int sink_event(void *userdata, json_t *ev) {
        struct ctx_stream *s = userdata;
        const char *type = json_string_value(json_object_get(ev, "type")) ?: "";
        int r = 0;

        pthread_mutex_lock(&s->lock);
        if (streq(type, "stdout") || streq(type, "stderr")) {
                size_t len = json_string_length(json_object_get(ev, "text"));
                if (s->output_bytes + len > CTX_OUTPUT_CAP) {
                        s->dropped_bytes += len;
                        goto out;
                }
                s->output_bytes += len;
        }
        r = write_locked(s, ev);
        if (r >= 0 && streq(type, "error"))
                s->error_sent = true;
out:
        if (r >= 0 && (s->gone || s->cancelled))
                r = -ECANCELED;
        pthread_mutex_unlock(&s->lock);
        return r;
}

struct kernel_sink ctx_stream_sink(struct ctx_stream *s) {
        return (struct kernel_sink){.event = sink_event, .userdata = s, .watch_fd = s->watch[0]};
}

void ctx_stream_cancel(struct ctx_stream *s) {
        pthread_mutex_lock(&s->lock);
        s->cancelled = true;
        pthread_mutex_unlock(&s->lock);
        signal_watch(s);
}

bool ctx_stream_gone(struct ctx_stream *s) {
        bool gone;

        pthread_mutex_lock(&s->lock);
        gone = s->gone;
        pthread_mutex_unlock(&s->lock);
        return gone;
}

int ctx_stream_respond_error(struct ctx_stream *s, int status, const char *code, const char *message) {
        int r = 0;

        pthread_mutex_lock(&s->lock);
        if (!s->begun && !s->answered) {
                s->answered = true;
                (void) http_respond_error(s->conn, status, code, "%s", message);
                r = 1;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

int ctx_stream_end(struct ctx_stream *s, int64_t execution_count, const char *status, bool timed_out) {
        json_t *count = execution_count >= 0 ? json_integer(execution_count) : json_null();
        uint64_t dropped;
        int r = 0;

        pthread_mutex_lock(&s->lock);
        dropped = s->dropped_bytes;
        pthread_mutex_unlock(&s->lock);
        if (dropped > 0)
                r = ctx_stream_eventf(s, "{s:s,s:I}", "type", "dropped", "bytes", (json_int_t) dropped);
        if (r >= 0)
                r = ctx_stream_eventf(s, "{s:s,s:o,s:s,s:b}", "type", "end", "execution_count", count, "status",
                                      status, "timed_out", timed_out);
        else
                json_decref(count);
        pthread_mutex_lock(&s->lock);
        if (r >= 0 && s->begun && !s->ended) {
                s->ended = true;
                r = ndjson_end(s->conn);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

void ctx_stream_close(struct ctx_stream *s) {
        uint64_t one = 1;

        if (s->ticker_running) {
                (void) !write(s->stop_fd, &one, sizeof(one));
                pthread_join(s->ticker, NULL);
                s->ticker_running = false;
        }
        if (s->conn && s->begun && !s->ended && !s->gone) {
                s->ended = true;
                (void) ndjson_end(s->conn);
        }
        for (int i = 0; i < 2; i++)
                if (s->watch[i] >= 0)
                        close(s->watch[i]);
        if (s->stop_fd >= 0)
                close(s->stop_fd);
        if (s->conn)
                pthread_mutex_destroy(&s->lock);
        *s = (struct ctx_stream){.watch = {-1, -1}, .stop_fd = -1};
}
