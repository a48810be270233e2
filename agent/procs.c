/* procs.c — see procs.h. The HTTP face of the process API: each handler parses its
 * request, finds or makes the table entry (proc-table.h) and answers; starting is
 * proc-spawn.c, output collection proc-pump.c, streams proc-stream.c.
 *
 * Notes on the contract. stdin writes block while the pipe (or terminal) is full, for at
 * most STDIN_TIMEOUT_MS, then answer 503 with how much went in. On a terminal, DELETE
 * …/stdin types the end-of-file character (the program reading it sees EOF) and the
 * terminal stays open for input. Signals go to the process group, and only while the
 * command runs: after its supervisor was reaped its pid may be reused. A kill ends every
 * process the command started, in whatever session (supervise.h).
 */
#include "procs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pressure.h"
#include "proc-pump.h"
#include "proc-signal.h"
#include "proc-spawn.h"
#include "proc-stream.h"
#include "proc-table.h"
#include "pty.h"
#include "timeutil.h"

#define STDIN_TIMEOUT_MS 10000

int procs_init(void) {
        return pump_start();
}

static int respond_error(struct http_conn *c, const struct proc_error *err) {
        return http_respond_error(c, err->status, proc_error_code(err->status), "%s", err->message);
}

static int respond_empty(struct http_conn *c) {
        return http_respond(c, 200, "application/json", "{}", 2);
}

/* The JSON object of a request body ({} for an empty one), or NULL with err set. */
static json_t *load_body(const struct http_request *req, struct proc_error *err) {
        json_error_t jerr;
        json_t *body;

        if (req->body.len == 0)
                return json_object();
        body = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!body) {
                proc_error_set(err, 400, "invalid JSON body: %s", jerr.text);
                return NULL;
        }
        if (!json_is_object(body)) {
                json_decref(body);
                proc_error_set(err, 400, "the request body must be a JSON object");
                return NULL;
        }
        return body;
}

/* The entry named by the {pid} path segment, with a reference. */
static int lookup(const char *arg, struct proc **ret, struct proc_error *err) {
        char *end;
        long pid;

        errno = 0;
        pid = arg ? strtol(arg, &end, 10) : 0;
        if (!arg || errno != 0 || *end != 0 || end == arg || pid <= 0 || pid > INT_MAX || arg[0] == '+')
                return proc_error_set(err, 400, "invalid pid '%s': must be a positive integer", arg ? arg : "");
        *ret = proc_table_get((pid_t) pid);
        if (!*ret)
                return proc_error_set(err, 404, "no process with pid %ld", pid);
        return 0;
}

/* Checks, with the lock held, that p's session leader still runs. */
static int check_running(struct proc *p, struct proc_error *err) {
        if (p->exited)
                return proc_error_set(err, 404, "process %d is not running (it has exited)", (int) p->pid);
        return 0;
}

/* ---- POST /processes ---- */

/* Fills the entry's fixed fields from the request. */
static int describe(struct proc *p, const struct proc_request *req) {
        p->cmd = req->cmd ? strdup(req->cmd) : NULL;
        p->tag = req->tag ? strdup(req->tag) : NULL;
        p->user = strdup(req->user);
        p->pty = req->pty;
        p->has_stdin = req->stdin || req->pty;
        p->background = req->background;
        p->started_at = now_ms();
        if ((req->cmd && !p->cmd) || (req->tag && !p->tag) || !p->user)
                return -ENOMEM;
        return 0;
}

/* Starts the process of req in the reserved entry p. */
static int start(struct proc *p, const struct proc_request *req, struct proc_error *err) {
        struct child *child;
        struct proc_io io;
        int r;

        if (describe(p, req) < 0)
                return proc_error_set(err, 500, "out of memory");
        r = proc_spawn(req, &child, &io, &p->cwd, err);
        if (r < 0)
                return r;
        p->stdin_fd = io.stdin_fd; /* not visible to anyone yet: no lock needed */
        proc_table_publish(p, child, req->timeout_ms);
        r = pump_add(p, io.out_fd, req->pty ? PROC_PTY : PROC_STDOUT, io.err_fd);
        if (r < 0) {
                /* Nobody could see its exit or output: it must not run on. */
                int status;
                (void) child_terminate(child, SIGKILL);
                child_wait(child, &status);
                close(io.out_fd);
                if (io.err_fd >= 0)
                        close(io.err_fd);
                return proc_error_set(err, 503, "cannot watch the new process: %s", strerror(-r));
        }
        log_info("process %d started as %s in %s%s%s%s", (int) p->pid, p->user, p->cwd, p->pty ? ", on a terminal" : "",
                 p->background ? ", in the background" : "", p->has_stdin && !p->pty ? ", with stdin" : "");
        return 0;
}

int procs_handle_start(struct http_conn *c, const struct http_request *req, const char *arg) {
        json_auto_t *body = NULL;
        struct proc_error err = {};
        struct proc_request preq;
        struct proc *p = NULL;
        int r;

        body = load_body(req, &err);
        if (!body || proc_request_parse(body, &preq, &err) < 0)
                return respond_error(c, &err);
        r = proc_table_reserve(&p);
        if (r == -EAGAIN)
                return http_respond_error(c, 429, "limit_exceeded",
                                          "too many processes: %d started through the API are running", PROC_TABLE_MAX);
        if (r < 0)
                return http_respond_error(c, 500, "internal", "cannot make a process entry: %s", strerror(-r));
        if (start(p, &preq, &err) < 0) {
                proc_table_cancel(p);
                return respond_error(c, &err);
        }
        r = proc_stream_serve(c, p, true);
        proc_unref(p);
        return r;
}

/* ---- GET /processes ---- */

static void list_one(struct proc *p, void *userdata) {
        json_t *list = userdata;
        char started[RFC3339_LEN + 1];

        if (p->exited)
                return;
        format_rfc3339(p->started_at, started);
        (void) json_array_append_new(
                list, json_pack("{s:i,s:s?,s:s?,s:s,s:s,s:b,s:b,s:b,s:s}", "pid", (int) p->pid, "cmd", p->cmd, "tag",
                                p->tag, "cwd", p->cwd, "user", p->user, "pty", p->pty, "stdin", p->has_stdin,
                                "background", p->background, "started_at", started));
}

int procs_handle_list(struct http_conn *c, const struct http_request *req, const char *arg) {
        json_auto_t *list = json_array(), *body = NULL;

        if (!list)
                return -ENOMEM;
        proc_lock();
        proc_table_foreach(list_one, list);
        proc_unlock();
        body = json_pack("{s:O}", "processes", list);
        if (!body)
                return -ENOMEM;
        return http_respond_json(c, 200, body);
}

/* ---- GET /processes/{pid}/stream ---- */

int procs_handle_stream(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_proc_ struct proc *p = NULL;
        struct proc_error err = {};

        if (lookup(arg, &p, &err) < 0)
                return respond_error(c, &err);
        return proc_stream_serve(c, p, false);
}

/* ---- stdin ---- */

/* Writes len bytes to the non-blocking fd, waiting while it is full; gives up after
 * timeout_ms without progress (-ETIMEDOUT). The count written goes to *ret_written. */
static int write_all(int fd, const char *data, size_t len, int timeout_ms, size_t *ret_written) {
        int64_t deadline = mono_ms() + timeout_ms;
        size_t done = 0;
        int r = 0;

        while (done < len) {
                ssize_t n = write(fd, data + done, len - done);
                if (n >= 0) {
                        done += (size_t) n;
                        deadline = mono_ms() + timeout_ms;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN) {
                        r = -errno;
                        break;
                }
                int64_t left = deadline - mono_ms();
                if (left <= 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                (void) poll(&pfd, 1, (int) left);
        }
        *ret_written = done;
        return r;
}

/* With the lock held: checks that p takes input, and returns its stdin fd. */
static int stdin_fd_locked(struct proc *p, struct proc_error *err) {
        if (check_running(p, err) < 0)
                return -EINVAL;
        if (!p->has_stdin)
                return proc_error_set(err, 409, "process %d was started without stdin=true", (int) p->pid);
        if (p->stdin_fd < 0)
                return proc_error_set(err, 409, "the stdin of process %d was closed", (int) p->pid);
        return p->stdin_fd;
}

int procs_handle_stdin_write(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_proc_ struct proc *p = NULL;
        _cleanup_close_ int fd = -1;
        struct proc_error err = {};
        size_t written = 0;
        int r;

        if (lookup(arg, &p, &err) < 0)
                return respond_error(c, &err);
        proc_lock();
        r = stdin_fd_locked(p, &err);
        /* A dup: the write happens without the lock, and a concurrent close cannot pull
         * the fd away from under it (the process sees EOF once this write is done). */
        if (r >= 0 && (fd = fcntl(r, F_DUPFD_CLOEXEC, 3)) < 0)
                r = proc_error_set(&err, 503, "cannot write to the stdin of process %d: %s", (int) p->pid,
                                   strerror(errno));
        proc_unlock();
        if (r < 0)
                return respond_error(c, &err);

        r = write_all(fd, req->body.data, req->body.len, STDIN_TIMEOUT_MS, &written);
        if (r == -EPIPE || r == -EIO)
                return http_respond_error(c, 409, "conflict",
                                          "process %d no longer reads its stdin (%s): wrote %zu of %zu bytes",
                                          (int) p->pid, p->pty ? "its terminal is closed" : "the pipe is closed",
                                          written, req->body.len);
        if (r == -ETIMEDOUT)
                return http_respond_error(c, 503, "unavailable",
                                          "process %d did not read its stdin for %d s: wrote %zu of %zu bytes",
                                          (int) p->pid, STDIN_TIMEOUT_MS / 1000, written, req->body.len);
        if (r < 0)
                return http_respond_error(c, 500, "internal", "cannot write to the stdin of process %d: %s",
                                          (int) p->pid, strerror(-r));
        json_auto_t *body = json_pack("{s:I}", "written", (json_int_t) written);
        return body ? http_respond_json(c, 200, body) : -ENOMEM;
}

int procs_handle_stdin_close(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_proc_ struct proc *p = NULL;
        struct proc_error err = {};
        int r;

        if (lookup(arg, &p, &err) < 0)
                return respond_error(c, &err);
        proc_lock();
        r = stdin_fd_locked(p, &err);
        if (r >= 0 && p->pty) {
                r = pty_send_eof(p->stdin_fd);
                if (r < 0)
                        r = proc_error_set(&err, r == -EAGAIN ? 503 : 409,
                                           "cannot send end-of-file to the terminal of process %d: %s", (int) p->pid,
                                           strerror(-r));
        } else if (r >= 0) {
                close(p->stdin_fd);
                p->stdin_fd = -1;
        }
        proc_unlock();
        return r < 0 ? respond_error(c, &err) : respond_empty(c);
}

/* ---- signals, kill, resize ---- */

/* Sends sig to the group of the process named by arg (SIGKILL to every process of its
 * command when whole) and answers with reply. */
static int signal_and_reply(struct http_conn *c, const char *arg, int sig, bool whole, const char *reply) {
        _cleanup_proc_ struct proc *p = NULL;
        struct proc_error err = {};
        char why[256];
        int r;

        if (lookup(arg, &p, &err) < 0)
                return respond_error(c, &err);
        proc_lock();
        r = check_running(p, &err);
        if (r >= 0) {
                r = whole ? proc_kill(p, mono_ms()) : child_signal_group(p->child, sig);
                if (r == -ESRCH)
                        r = proc_error_set(&err, 404, "process %d is not running", (int) p->pid);
                else if (r < 0)
                        r = proc_error_set(&err, pressure_errno(r) ? 503 : 500, "cannot signal process %d: %s",
                                           (int) p->pid, pressure_describe(r, why, sizeof(why)));
        }
        proc_unlock();
        if (r < 0)
                return respond_error(c, &err);
        return http_respond(c, 200, "application/json", reply, strlen(reply));
}

int procs_handle_signal(struct http_conn *c, const struct http_request *req, const char *arg) {
        json_auto_t *body = NULL;
        struct proc_error err = {};
        const char *key;
        json_t *v, *sig = NULL;
        int signo;

        body = load_body(req, &err);
        if (!body)
                return respond_error(c, &err);
        json_object_foreach(body, key, v) {
                if (!streq(key, "signal"))
                        return http_respond_error(c, 400, "bad_request", "unknown field '%s'", key);
                sig = v;
        }
        if (!sig || json_is_null(sig))
                return http_respond_error(c, 400, "bad_request", "missing field 'signal'");
        signo = signal_parse(sig);
        if (signo < 0)
                return http_respond_error(c, 400, "bad_request",
                                          "'signal' must be a signal name (\"SIGINT\", \"SIGTERM\", …) or a number "
                                          "from 1 to 64");
        return signal_and_reply(c, arg, signo, false, "{}");
}

int procs_handle_kill(struct http_conn *c, const struct http_request *req, const char *arg) {
        return signal_and_reply(c, arg, SIGKILL, true, "{\"killed\":true}");
}

static int parse_dimension(json_t *body, const char *key, unsigned *ret, struct proc_error *err) {
        json_t *v = json_object_get(body, key);

        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
                return proc_error_set(err, 400, "'%s' must be an integer from 1 to 1000", key);
        *ret = (unsigned) json_integer_value(v);
        return 0;
}

int procs_handle_resize(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_proc_ struct proc *p = NULL;
        json_auto_t *body = NULL;
        struct proc_error err = {};
        unsigned cols, rows;
        const char *key;
        json_t *v;
        int r;

        body = load_body(req, &err);
        if (!body)
                return respond_error(c, &err);
        json_object_foreach(body, key, v)
                if (!streq(key, "cols") && !streq(key, "rows"))
                        return http_respond_error(c, 400, "bad_request", "unknown field '%s'", key);
        if (parse_dimension(body, "cols", &cols, &err) < 0 || parse_dimension(body, "rows", &rows, &err) < 0 ||
            lookup(arg, &p, &err) < 0)
                return respond_error(c, &err);
        proc_lock();
        r = check_running(p, &err);
        if (r >= 0 && !p->pty)
                r = proc_error_set(&err, 409, "process %d has no terminal (it was started without 'pty')",
                                   (int) p->pid);
        if (r >= 0 && p->stdin_fd >= 0) {
                r = pty_resize(p->stdin_fd, cols, rows);
                if (r < 0)
                        r = proc_error_set(&err, 500, "cannot resize the terminal of process %d: %s", (int) p->pid,
                                           strerror(-r));
        }
        proc_unlock();
        return r < 0 ? respond_error(c, &err) : respond_empty(c);
}
