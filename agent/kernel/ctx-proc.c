/* ctx-proc.c — see ctx-proc.h. Two threads touch a struct kproc: its I/O thread (reads,
 * classifies, forwards to the sink) and the thread of the execution in progress (writes the
 * request, waits, interrupts). They share the execution's state under kp->lock; the I/O
 * thread wakes the other through an eventfd (state_fd), so that the latter can poll it next
 * to the client's hang-up fd and the control socket's writability.
 *
 * Output is UTF-8 text on the wire: a multi-byte character cut in two by a read is held
 * back until its end arrives; anything ill-formed becomes U+FFFD (utf8.h).
 */
#include "ctx-proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "../process.h"
#include "timeutil.h"
#include "../utf8.h"

#define READ_SIZE (64 * 1024)
#define DRAIN_READS 64 /* at most this many reads of a pipe when an execution ends */

enum { OUT, ERR };

struct carry {
        unsigned char b[4];
        size_t n;
};

struct kproc {
        char name[16];
        struct child *child;
        int ctl_fd, out_fd[2]; /* agent ends, non-blocking */
        int state_fd;          /* eventfd: the I/O thread tells the execute thread of news */
        int wake_fd;           /* eventfd: stops the I/O thread */
        pthread_t thread;
        bool thread_running;
        kproc_line_fn line;
        void *userdata;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Under lock. */
        bool ready, dead;
        int wait_status;
        uint64_t seq; /* the running execution, 0 when none */
        const struct kernel_sink *sink;
        unsigned in_sink;
        bool begun, ended, synced, want_sync, sink_failed, error_seen;
        int status;
        char start_err[256]; /* the last line on stderr before READY */
        int64_t started_ms;

        /* I/O thread only. */
        struct buf line_buf;
        bool skipping; /* inside an overlong line */
        struct carry carry[2];
};

static void notify(struct kproc *kp) {
        uint64_t one = 1;

        (void) !write(kp->state_fd, &one, sizeof(one));
        pthread_cond_broadcast(&kp->cond);
}

/* ---- the I/O thread ---- */

/* Hands ev (owned) to the running execution's sink; dropped when none runs. */
static void forward(struct kproc *kp, json_t *ev) {
        const struct kernel_sink *sink;
        bool is_error = streq(json_string_value(json_object_get(ev, "type")) ?: "", "error");
        int r;

        pthread_mutex_lock(&kp->lock);
        sink = kp->seq ? kp->sink : NULL;
        if (sink)
                kp->in_sink++;
        pthread_mutex_unlock(&kp->lock);
        if (!sink) {
                json_decref(ev);
                return;
        }
        r = sink->event(sink->userdata, ev);
        json_decref(ev);
        pthread_mutex_lock(&kp->lock);
        kp->in_sink--;
        if (is_error)
                kp->error_seen = true;
        if (r < 0 && !kp->sink_failed) {
                kp->sink_failed = true;
                notify(kp);
        }
        pthread_cond_broadcast(&kp->cond);
        pthread_mutex_unlock(&kp->lock);
}

/* How many bytes at the end of s (n bytes) start a UTF-8 character that is not complete
 * yet: they wait for the next read. */
static size_t incomplete_tail(const unsigned char *s, size_t n) {
        for (size_t k = 1; k <= 3 && k <= n; k++) {
                unsigned char c = s[n - k];
                size_t need;

                if ((c & 0xC0) == 0x80)
                        continue;
                need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
                return need > k ? k : 0;
        }
        return 0;
}

/* Turns data (n bytes, after the carried bytes of stream i) into a stdout/stderr event;
 * eof flushes the carry. */
static void emit_output(struct kproc *kp, int i, const char *data, size_t n, bool eof) {
        struct carry *c = &kp->carry[i];
        _cleanup_free_ char *joined = NULL, *text = NULL;
        size_t len = c->n + n, keep, text_len;
        bool before_ready;
        json_t *ev;

        joined = malloc(len + 1);
        if (!joined)
                return;
        memcpy(joined, c->b, c->n);
        if (n > 0)
                memcpy(joined + c->n, data, n);
        keep = eof ? 0 : incomplete_tail((unsigned char *) joined, len);
        c->n = keep;
        memcpy(c->b, joined + len - keep, keep);
        len -= keep;
        if (len == 0 || utf8_sanitize(joined, len, &text, &text_len) < 0)
                return;

        pthread_mutex_lock(&kp->lock);
        before_ready = !kp->ready;
        if (before_ready && i == ERR) {
                char line[sizeof(kp->start_err)];
                text_last_line(text, text_len, line, sizeof(line));
                if (line[0])
                        memcpy(kp->start_err, line, sizeof(line));
        }
        pthread_mutex_unlock(&kp->lock);
        if (before_ready)
                return;
        ev = json_pack("{s:s,s:s%}", "type", i == OUT ? "stdout" : "stderr", "text", text, text_len);
        if (ev)
                forward(kp, ev);
}

/* Reads what pipe i has. Returns 0, or -1 at its end (EOF or a read error). */
static int read_output(struct kproc *kp, int i) {
        char buf[READ_SIZE];
        ssize_t n = read(kp->out_fd[i], buf, sizeof(buf));

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                emit_output(kp, i, NULL, 0, true);
                return -1;
        }
        emit_output(kp, i, buf, (size_t) n, false);
        return 0;
}

/* Reads what the pipes hold right now, so that output written before an END line goes
 * out before the end. */
static void drain_output(struct kproc *kp, struct pollfd *pfd) {
        for (int i = 0; i < 2; i++)
                for (int k = 0; k < DRAIN_READS && pfd[1 + i].fd >= 0; k++) {
                        struct pollfd p = {.fd = pfd[1 + i].fd, .events = POLLIN};
                        if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLIN | POLLHUP)))
                                break;
                        if (read_output(kp, i) < 0)
                                pfd[1 + i].fd = -1;
                }
}

static void handle_line(struct kproc *kp, const char *line, size_t len, struct pollfd *pfd) {
        json_t *ev = NULL;
        enum kproc_line what;
        uint64_t seq;
        int status = -1;

        pthread_mutex_lock(&kp->lock);
        seq = kp->seq;
        pthread_mutex_unlock(&kp->lock);
        what = kp->line(kp->userdata, line, len, seq, &ev, &status);
        if (what == KPROC_LINE_EVENT) {
                if (ev)
                        forward(kp, ev);
                return;
        }
        if (what == KPROC_LINE_END || what == KPROC_LINE_SYNC)
                drain_output(kp, pfd);
        pthread_mutex_lock(&kp->lock);
        switch (what) {
        case KPROC_LINE_READY:
                kp->ready = true;
                break;
        case KPROC_LINE_BEGIN:
                kp->begun = true;
                break;
        case KPROC_LINE_END:
                kp->ended = true;
                kp->status = status;
                break;
        case KPROC_LINE_SYNC:
                kp->synced = true;
                break;
        default:
                pthread_mutex_unlock(&kp->lock);
                return;
        }
        notify(kp);
        pthread_mutex_unlock(&kp->lock);
}

/* Reads the control socket and handles every complete line. Returns -1 at its end. */
static int read_control(struct kproc *kp, struct pollfd *pfd) {
        char buf[READ_SIZE];
        ssize_t n = read(kp->ctl_fd, buf, sizeof(buf));
        const char *p = buf, *end;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0)
                return -1;
        end = buf + n;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t chunk = nl ? (size_t) (nl - p) : (size_t) (end - p);

                if (!kp->skipping && buf_append(&kp->line_buf, p, chunk) < 0) {
                        log_warn("%s context: dropping a control line longer than %zu bytes", kp->name,
                                 kp->line_buf.cap);
                        buf_reset(&kp->line_buf);
                        kp->skipping = true;
                }
                p += chunk;
                if (!nl)
                        break;
                p++;
                if (!kp->skipping)
                        handle_line(kp, kp->line_buf.data ?: "", kp->line_buf.len, pfd);
                buf_reset(&kp->line_buf);
                kp->skipping = false;
        }
        return 0;
}

static void *io_main(void *arg) {
        struct kproc *kp = arg;
        struct pollfd pfd[5] = {
                {.fd = kp->ctl_fd, .events = POLLIN},
                {.fd = kp->out_fd[OUT], .events = POLLIN},
                {.fd = kp->out_fd[ERR], .events = POLLIN},
                {.fd = child_exit_fd(kp->child), .events = POLLIN},
                {.fd = kp->wake_fd, .events = POLLIN},
        };
        int status;

        for (;;) {
                if (poll(pfd, ELEMENTSOF(pfd), -1) < 0) {
                        /* Only EINTR or ENOMEM can happen here: try again. */
                        if (errno != EINTR)
                                (void) poll(NULL, 0, 10);
                        continue;
                }
                if (pfd[4].revents)
                        return NULL;
                for (int i = 0; i < 2; i++)
                        if (pfd[1 + i].revents && read_output(kp, i) < 0)
                                pfd[1 + i].fd = -1;
                if (pfd[0].revents && read_control(kp, pfd) < 0)
                        pfd[0].fd = -1;
                if (pfd[3].revents)
                        break;
        }

        /* The interpreter exited: what it wrote last still counts. */
        while (pfd[0].fd >= 0 && read_control(kp, pfd) >= 0) {
                struct pollfd p = {.fd = kp->ctl_fd, .events = POLLIN};
                if (poll(&p, 1, 0) <= 0)
                        break;
        }
        drain_output(kp, pfd);
        child_wait(kp->child, &status);
        pthread_mutex_lock(&kp->lock);
        kp->dead = true;
        kp->wait_status = status;
        notify(kp);
        pthread_mutex_unlock(&kp->lock);

        /* Wait to be stopped, so that kproc_stop() always has a thread to join. */
        (void) poll(&pfd[4], 1, -1);
        return NULL;
}

/* ---- starting and stopping ---- */

void kproc_describe_exit(int wait_status, char *buf, size_t n) {
        if (WIFSIGNALED(wait_status))
                snprintf(buf, n, "killed by %s", sigabbrev_np(WTERMSIG(wait_status)) ?: "a signal");
        else
                snprintf(buf, n, "exit %d", WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 255);
}

static int set_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

static const char *stage_text(enum spawn_stage stage) {
        switch (stage) {
        case SPAWN_STAGE_IDENTITY:
                return "cannot switch to its user";
        case SPAWN_STAGE_CHDIR:
                return "cannot change to its working directory";
        case SPAWN_STAGE_EXEC:
                return "cannot execute it";
        default:
                return "cannot set it up";
        }
}

/* Creates the fds and the process; kp gets the agent's ends. */
static int spawn(struct kproc *kp, const struct kproc_spec *spec, char **ret_error) {
        int sp[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, r = 0;
        const struct kernel_config *cfg = spec->cfg;
        enum spawn_stage stage = SPAWN_STAGE_SETUP;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
            pipe2(err, O_CLOEXEC) < 0)
                r = -errno;
        if (r >= 0) {
                struct process_spec ps = {
                        .argv = spec->argv,
                        .envp = cfg->envp,
                        .cwd = cfg->cwd,
                        .set_identity = cfg->uid != geteuid() || cfg->gid != getegid(),
                        .uid = cfg->uid,
                        .gid = cfg->gid,
                        .groups = cfg->groups,
                        .n_groups = cfg->n_groups,
                        .new_session = true,
                        .stdin_fd = sp[1],
                        .stdout_fd = out[1],
                        .stderr_fd = err[1],
                };
                r = process_spawn(&ps, &kp->child, &stage);
        }
        kp->ctl_fd = sp[0];
        kp->out_fd[OUT] = out[0];
        kp->out_fd[ERR] = err[0];
        for (int i = 0; i < 3; i++) {
                int fd = (int[]){sp[1], out[1], err[1]}[i];
                if (fd >= 0)
                        close(fd);
        }
        if (r >= 0 && (set_nonblock(kp->ctl_fd) < 0 || set_nonblock(kp->out_fd[OUT]) < 0 ||
                       set_nonblock(kp->out_fd[ERR]) < 0))
                r = -errno;
        if (r < 0 && asprintf(ret_error, "cannot start %s (%s): %s: %s", spec->name, spec->argv[0],
                              stage_text(stage), strerror(-r)) < 0)
                *ret_error = NULL;
        return r;
}

/* Writes all of data (len bytes) to the control socket, waiting at most until deadline. */
static int write_all(struct kproc *kp, const char *data, size_t len, int64_t deadline) {
        while (len > 0) {
                struct pollfd p = {.fd = kp->ctl_fd, .events = POLLOUT};
                ssize_t n = write(kp->ctl_fd, data, len);

                if (n > 0) {
                        data += n;
                        len -= (size_t) n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (mono_ms() >= deadline)
                        return -ETIMEDOUT;
                (void) poll(&p, 1, (int) MIN(deadline - mono_ms(), 1000));
        }
        return 0;
}

static struct kproc *kproc_new(const struct kproc_spec *spec) {
        struct kproc *kp = calloc(1, sizeof(*kp));

        if (!kp)
                return NULL;
        snprintf(kp->name, sizeof(kp->name), "%s", spec->name);
        kp->ctl_fd = kp->out_fd[OUT] = kp->out_fd[ERR] = -1;
        kp->line = spec->line;
        kp->userdata = spec->userdata;
        kp->status = -1;
        pthread_mutex_init(&kp->lock, NULL);
        pthread_cond_init(&kp->cond, NULL);
        buf_init(&kp->line_buf, spec->max_line);
        kp->state_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        kp->wake_fd = eventfd(0, EFD_CLOEXEC);
        if (kp->state_fd < 0 || kp->wake_fd < 0) {
                kproc_stop(kp);
                return NULL;
        }
        return kp;
}

/* Waits for READY, death or the deadline. Returns 0 or -errno with a message. */
static int wait_ready(struct kproc *kp, int64_t deadline, char **ret_error) {
        char how[64], msg[512];
        int r = 0;

        pthread_mutex_lock(&kp->lock);
        while (!kp->ready && !kp->dead && mono_ms() < deadline) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 20 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&kp->cond, &kp->lock, &ts);
        }
        if (!kp->ready && kp->dead) {
                kproc_describe_exit(kp->wait_status, how, sizeof(how));
                snprintf(msg, sizeof(msg), "%s exited (%s) before it was ready%s%s", kp->name, how,
                         kp->start_err[0] ? ": " : "", kp->start_err);
                r = -ECHILD;
        } else if (!kp->ready) {
                snprintf(msg, sizeof(msg), "%s was not ready within %lld ms", kp->name,
                         (long long) (mono_ms() - kp->started_ms));
                r = -ETIMEDOUT;
        }
        pthread_mutex_unlock(&kp->lock);
        if (r < 0)
                *ret_error = strdup(msg);
        return r;
}

int kproc_start(const struct kproc_spec *spec, int64_t timeout_ms, struct kproc **ret, char **ret_error) {
        int64_t deadline = mono_ms() + timeout_ms;
        struct kproc *kp;
        int r;

        *ret_error = NULL;
        kp = kproc_new(spec);
        if (!kp)
                return -ENOMEM;
        kp->started_ms = mono_ms();
        r = spawn(kp, spec, ret_error);
        if (r >= 0) {
                r = -pthread_create(&kp->thread, NULL, io_main, kp);
                kp->thread_running = r == 0;
                if (r < 0 && asprintf(ret_error, "cannot start a thread for %s: %s", spec->name, strerror(-r)) < 0)
                        *ret_error = NULL;
        }
        if (r >= 0 && spec->init) {
                r = write_all(kp, spec->init, strlen(spec->init), deadline);
                if (r < 0 && r != -EPIPE && asprintf(ret_error, "cannot talk to %s: %s", spec->name, strerror(-r)) < 0)
                        *ret_error = NULL;
                if (r == -EPIPE) /* it exited: wait_ready says how */
                        r = 0;
        }
        if (r >= 0)
                r = wait_ready(kp, deadline, ret_error);
        if (r < 0) {
                kproc_stop(kp);
                return r;
        }
        *ret = kp;
        return 0;
}

/* Signals the interpreter's group; its leader (the interpreter) is sig's main target. Once
 * the leader is gone, the members its group had while it ran (process.h). */
static void signal_group(struct kproc *kp, int sig) {
        int r = child_terminate(kp->child, sig);

        if (r < 0)
                log_warn_errno(r, "%s context: cannot send signal %d to process group %d, ignoring", kp->name, sig,
                               (int) child_pid(kp->child));
}

void kproc_stop(struct kproc *kp) {
        uint64_t one = 1;
        int status;

        if (!kp)
                return;
        if (kp->ctl_fd >= 0)
                (void) shutdown(kp->ctl_fd, SHUT_WR); /* the interpreter reads EOF */
        if (kp->child) {
                struct pollfd p = {.fd = child_exit_fd(kp->child), .events = POLLIN};
                if (!child_exited(kp->child, &status)) {
                        signal_group(kp, SIGTERM);
                        signal_group(kp, SIGHUP); /* an interactive bash ignores SIGTERM */
                        (void) poll(&p, 1, KPROC_STOP_GRACE_MS);
                }
                /* Whatever is left of its group (background jobs) goes too. */
                signal_group(kp, SIGKILL);
                child_wait(kp->child, &status);
        }
        if (kp->thread_running) {
                (void) !write(kp->wake_fd, &one, sizeof(one));
                pthread_join(kp->thread, NULL);
        }
        for (int i = 0; i < 5; i++) {
                int fd = (int[]){kp->ctl_fd, kp->out_fd[OUT], kp->out_fd[ERR], kp->state_fd, kp->wake_fd}[i];
                if (fd >= 0)
                        close(fd);
        }
        child_free(kp->child);
        buf_free(&kp->line_buf);
        pthread_mutex_destroy(&kp->lock);
        pthread_cond_destroy(&kp->cond);
        free(kp);
}

bool kproc_alive(struct kproc *kp) {
        bool dead;

        pthread_mutex_lock(&kp->lock);
        dead = kp->dead;
        pthread_mutex_unlock(&kp->lock);
        return !dead;
}

/* ---- executions ---- */

int kproc_emit(const struct kernel_sink *sink, json_t *ev) {
        int r;

        if (!ev)
                return -ENOMEM;
        r = sink->event(sink->userdata, ev);
        json_decref(ev);
        return r;
}

int kproc_emit_error(const struct kernel_sink *sink, const char *name, const char *value) {
        return kproc_emit(sink, json_pack("{s:s,s:s,s:s,s:[]}", "type", "error", "name", name, "value", value,
                                          "traceback"));
}

void kproc_outcome(const struct kproc_result *res, uint64_t seq, const char *what, const struct kernel_sink *sink,
                   struct kernel_outcome *out) {
        char msg[128], how[64];

        *out = (struct kernel_outcome){
                .execution_count = (int64_t) seq,
                .error = res->error_seen,
                .interrupted = res->interrupted,
                .timed_out = res->timed_out,
        };
        if (!res->died)
                return;
        if (res->hung)
                snprintf(msg, sizeof(msg), "the %s did not stop within %d s after an interrupt", what, KPROC_GRACE_MS / 1000);
        else {
                kproc_describe_exit(res->wait_status, how, sizeof(how));
                snprintf(msg, sizeof(msg), "the %s exited (%s)", what, how);
        }
        (void) kproc_emit_error(sink, "KernelDied", msg);
        out->died = out->error = true;
}

/* The execution's request, then (after an interrupt) its sync line, written as the socket
 * takes them. */
struct pending {
        const char *data[2];
        size_t len[2];
};

static bool pending_empty(const struct pending *p) {
        return p->len[0] == 0 && p->len[1] == 0;
}

/* Writes what the socket takes now. Returns 0, or -errno (EPIPE: the interpreter is gone). */
static int pending_write(struct kproc *kp, struct pending *p) {
        for (int i = 0; i < 2; i++)
                while (p->len[i] > 0) {
                        ssize_t n = write(kp->ctl_fd, p->data[i], p->len[i]);
                        if (n < 0)
                                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
                        p->data[i] += n;
                        p->len[i] -= (size_t) n;
                }
        return 0;
}

/* What the execute loop knows, copied out under the lock. */
struct snapshot {
        bool over, dead, begun, ended, sink_failed;
};

static struct snapshot snap(struct kproc *kp) {
        struct snapshot s;

        pthread_mutex_lock(&kp->lock);
        s.dead = kp->dead;
        s.begun = kp->begun;
        s.ended = kp->ended;
        s.sink_failed = kp->sink_failed;
        s.over = kp->synced || (kp->ended && !kp->want_sync) || kp->dead;
        pthread_mutex_unlock(&kp->lock);
        return s;
}

/* Sends the interrupt unless the execution ended meanwhile. Returns whether it went out. */
static bool interrupt(struct kproc *kp, const char *sync, struct pending *p) {
        bool send;

        pthread_mutex_lock(&kp->lock);
        send = !kp->ended && !kp->dead;
        if (send && sync)
                kp->want_sync = true;
        pthread_mutex_unlock(&kp->lock);
        if (!send)
                return false;
        (void) child_signal_group(kp->child, SIGINT);
        if (sync) {
                p->data[1] = sync;
                p->len[1] = strlen(sync);
        }
        return true;
}

static void execution_begin(struct kproc *kp, uint64_t seq, const struct kernel_sink *sink) {
        uint64_t junk;

        pthread_mutex_lock(&kp->lock);
        kp->seq = seq;
        kp->sink = sink;
        kp->begun = kp->ended = kp->synced = kp->want_sync = kp->sink_failed = kp->error_seen = false;
        kp->status = -1;
        pthread_mutex_unlock(&kp->lock);
        while (read(kp->state_fd, &junk, sizeof(junk)) > 0)
                ;
}

/* Detaches the execution from the I/O thread and waits until no sink call is in flight. */
static void execution_end(struct kproc *kp, struct kproc_result *res) {
        pthread_mutex_lock(&kp->lock);
        kp->seq = 0;
        kp->sink = NULL;
        while (kp->in_sink > 0)
                pthread_cond_wait(&kp->cond, &kp->lock);
        res->ended = kp->ended || kp->synced;
        res->status = kp->status;
        res->error_seen = kp->error_seen;
        if (kp->dead) {
                res->died = true;
                res->wait_status = kp->wait_status;
        }
        pthread_mutex_unlock(&kp->lock);
}

int kproc_execute(struct kproc *kp, uint64_t seq, const char *request, size_t len, const char *sync,
                  int64_t timeout_ms, const struct kernel_sink *sink, struct kproc_result *ret) {
        int64_t deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : INT64_MAX, asked = 0;
        struct kproc_result res = {.status = -1};
        struct pending p = {{request, NULL}, {len, 0}};
        bool want_interrupt = false, sent = false, writable = true;

        if (!kproc_alive(kp))
                return -ESRCH;
        execution_begin(kp, seq, sink);
        for (;;) {
                struct snapshot s = snap(kp);
                struct pollfd pfd[3] = {
                        {.fd = kp->state_fd, .events = POLLIN},
                        {.fd = want_interrupt ? -1 : sink->watch_fd, .events = KERNEL_SINK_GONE},
                        {.fd = writable && !pending_empty(&p) ? kp->ctl_fd : -1, .events = POLLOUT},
                };
                int64_t now = mono_ms(), wake;
                uint64_t junk;

                if (s.over)
                        break;
                if (!want_interrupt && (now >= deadline || s.sink_failed)) {
                        want_interrupt = true;
                        res.timed_out = now >= deadline;
                        asked = now;
                }
                if (want_interrupt && !sent && s.begun) {
                        sent = true;
                        res.interrupted = interrupt(kp, sync, &p);
                }
                if (want_interrupt && now >= asked + KPROC_GRACE_MS) {
                        res.hung = true;
                        break;
                }
                if (writable && pending_write(kp, &p) < 0)
                        writable = false; /* it closed its end: its death follows */

                wake = want_interrupt ? asked + KPROC_GRACE_MS : deadline;
                if (poll(pfd, 3, wake == INT64_MAX ? -1 : (int) MAX(MIN(wake - now, 60000), 0)) < 0 && errno != EINTR) {
                        log_warn_errno(errno, "%s context: poll failed, giving the interpreter up", kp->name);
                        res.hung = true;
                        break;
                }
                if (pfd[0].revents)
                        while (read(kp->state_fd, &junk, sizeof(junk)) > 0)
                                ;
                if (!want_interrupt && (pfd[1].revents & KERNEL_SINK_GONE)) {
                        want_interrupt = true;
                        asked = mono_ms();
                }
        }
        /* Asked to stop but ended on its own before the signal went out: it completed. */
        res.interrupted = res.interrupted || res.hung;
        res.timed_out = res.timed_out && res.interrupted;
        execution_end(kp, &res);
        if (res.hung)
                res.died = true;
        *ret = res;
        return 0;
}
