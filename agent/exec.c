/* exec.c — see exec.h. Owns the request's validation, the command's environment and
 * identity, and the loop that collects its output until it exits or times out.
 *
 * The command is done when bash (the session leader) has exited: its output is then
 * whatever is in the pipes at that moment. Background jobs it left behind keep running
 * (that is how servers are started) and are not waited for; only on timeout or client
 * disconnect is the whole process group killed.
 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "timeutil.h"
#include "process.h"
#include "users.h"
#include "utf8.h"

#define MAX_ENVS 4096
#define MAX_ARG_LEN (128 * 1024) /* the kernel's MAX_ARG_STRLEN: longest string execve() takes */
#define READ_CHUNK (64 * 1024)

static const char default_path[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/* Why a request failed: the HTTP status and the message for the error body. */
struct exec_error {
        int status;
        char message[512];
};

static int exec_error_set(struct exec_error *err, int status, const char *fmt, ...) _printf_(3, 4);
static int exec_error_set(struct exec_error *err, int status, const char *fmt, ...) {
        va_list ap;

        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

struct exec_request {
        const char *cmd;
        json_t *envs; /* borrowed from the parsed body; NULL if absent */
        const char *cwd;
        const char *user;
        uint64_t timeout_ms; /* 0: none */
};

/* A stdout or stderr pipe and what was read from it. */
struct stream {
        int fd;
        struct buf data;
        bool truncated;
};

struct run_result {
        int status;
        bool timed_out;
        bool cancelled;
};

static int parse_envs(json_t *envs, struct exec_error *err) {
        const char *key;
        json_t *v;

        if (json_object_size(envs) > MAX_ENVS)
                return exec_error_set(err, 400, "'envs' has more than %d entries", MAX_ENVS);
        json_object_foreach(envs, key, v) {
                if (!*key || strchr(key, '='))
                        return exec_error_set(err, 400, "'envs' key '%s' is not a valid variable name", key);
                if (!json_is_string(v))
                        return exec_error_set(err, 400, "'envs' value of '%s' must be a string", key);
        }
        return 0;
}

static int parse_request(json_t *root, struct exec_request *ret, struct exec_error *err) {
        struct exec_request r = {.user = "root", .timeout_ms = EXEC_DEFAULT_TIMEOUT_MS};
        const char *key;
        json_t *v;

        if (!json_is_object(root))
                return exec_error_set(err, 400, "the request body must be a JSON object");
        json_object_foreach(root, key, v) {
                if (json_is_null(v))
                        continue;
                if (streq(key, "cmd") || streq(key, "cwd") || streq(key, "user")) {
                        if (!json_is_string(v) || json_string_length(v) == 0)
                                return exec_error_set(err, 400, "'%s' must be a non-empty string", key);
                        if (streq(key, "cmd"))
                                r.cmd = json_string_value(v);
                        else if (streq(key, "cwd"))
                                r.cwd = json_string_value(v);
                        else
                                r.user = json_string_value(v);
                } else if (streq(key, "envs")) {
                        if (!json_is_object(v))
                                return exec_error_set(err, 400, "'envs' must be an object of strings");
                        if (parse_envs(v, err) < 0)
                                return -EINVAL;
                        r.envs = v;
                } else if (streq(key, "timeout_ms")) {
                        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                            (uint64_t) json_integer_value(v) > EXEC_MAX_TIMEOUT_MS)
                                return exec_error_set(err, 400, "'timeout_ms' must be an integer from 0 (none) to %llu",
                                                      (unsigned long long) EXEC_MAX_TIMEOUT_MS);
                        r.timeout_ms = (uint64_t) json_integer_value(v);
                } else
                        return exec_error_set(err, 400, "unknown field '%s'", key);
        }
        if (!r.cmd)
                return exec_error_set(err, 400, "missing field 'cmd'");
        if (strlen(r.cmd) >= MAX_ARG_LEN)
                return exec_error_set(err, 400, "'cmd' is longer than %d bytes", MAX_ARG_LEN - 1);
        if (r.cwd && r.cwd[0] != '/')
                return exec_error_set(err, 400, "'cwd' must be an absolute path");
        *ret = r;
        return 0;
}

/* ---- environment ---- */

struct env {
        char **v; /* NULL-terminated */
        size_t n;
};

static void env_done(struct env *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->v[i]);
        free(e->v);
        *e = (struct env){};
}

/* Sets key=value, replacing an earlier value of key. */
static int env_set(struct env *e, const char *key, const char *value) {
        size_t klen = strlen(key);
        char *entry, **v;

        if (asprintf(&entry, "%s=%s", key, value) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < e->n; i++)
                if (strncmp(e->v[i], key, klen) == 0 && e->v[i][klen] == '=') {
                        free(e->v[i]);
                        e->v[i] = entry;
                        return 0;
                }
        v = realloc(e->v, (e->n + 2) * sizeof(char *));
        if (!v) {
                free(entry);
                return -ENOMEM;
        }
        e->v = v;
        e->v[e->n++] = entry;
        e->v[e->n] = NULL;
        return 0;
}

static int env_build(struct env *e, const struct user_info *u, json_t *envs) {
        const char *key;
        json_t *v;
        int r = 0;

        r = env_set(e, "PATH", default_path);
        if (r >= 0)
                r = env_set(e, "HOME", u->home);
        if (r >= 0)
                r = env_set(e, "USER", u->name);
        if (r >= 0)
                r = env_set(e, "LOGNAME", u->name);
        if (r >= 0)
                r = env_set(e, "SHELL", "/bin/bash");
        if (r >= 0)
                r = env_set(e, "LANG", "C.UTF-8");
        json_object_foreach(envs, key, v) {
                if (r < 0)
                        break;
                r = env_set(e, key, json_string_value(v));
        }
        return r;
}

/* ---- running ---- */

static void stream_store(struct stream *s, const char *data, size_t n) {
        size_t room = s->data.cap - s->data.len;

        if (n > room) {
                n = room;
                s->truncated = true;
        }
        if (n > 0 && buf_append(&s->data, data, n) < 0)
                s->truncated = true; /* out of memory: keep draining, stop storing */
}

/* Reads once, at most max bytes. Returns the count; 0 at EOF or on error (the pipe is
 * closed then); -EAGAIN when there was nothing to read. */
static ssize_t stream_read(struct stream *s, size_t max) {
        char chunk[READ_CHUNK];
        ssize_t n;

        n = read(s->fd, chunk, MIN(max, sizeof(chunk)));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return -EAGAIN;
        if (n <= 0) {
                close(s->fd);
                s->fd = -1;
                return 0;
        }
        stream_store(s, chunk, (size_t) n);
        return n;
}

/* Reads what is in the pipe right now, and not more: a background job that keeps writing
 * must not keep us here. */
static void stream_drain(struct stream *s) {
        int avail = 0;
        size_t left;
        ssize_t n;

        if (s->fd < 0 || ioctl(s->fd, FIONREAD, &avail) < 0 || avail <= 0)
                return;
        for (left = (size_t) avail; left > 0; left -= (size_t) n) {
                n = stream_read(s, left);
                if (n <= 0)
                        break;
        }
}

static int poll_timeout(int current, uint64_t now, uint64_t until) {
        uint64_t left = until > now ? until - now : 0;
        int t = (int) MIN(left, (uint64_t) 60000);

        return current < 0 ? t : MIN(current, t);
}

static void run_loop(struct child *child, struct stream s[2], int cancel_fd, uint64_t timeout_ms,
                     struct run_result *res) {
        uint64_t deadline = timeout_ms ? (uint64_t) mono_ms() + timeout_ms : 0, kill_at = 0;
        bool exited = false, killed = false;

        for (;;) {
                uint64_t now = (uint64_t) mono_ms();
                int wait_ms = -1;

                if (deadline && !res->timed_out && now >= deadline) {
                        res->timed_out = true;
                        (void) child_signal_group(child, SIGTERM);
                        kill_at = now + EXEC_KILL_GRACE_MS;
                }
                if (res->timed_out && !killed && now >= kill_at) {
                        (void) child_signal_group(child, SIGKILL);
                        killed = true;
                }
                if (exited) {
                        stream_drain(&s[0]);
                        stream_drain(&s[1]);
                        /* After SIGTERM, wait out the grace period while the group lives. */
                        if (!res->timed_out || killed || child_signal_group(child, 0) == -ESRCH)
                                return;
                        wait_ms = 50;
                }
                if (deadline && !res->timed_out)
                        wait_ms = poll_timeout(wait_ms, now, deadline);
                if (res->timed_out && !killed)
                        wait_ms = poll_timeout(wait_ms, now, kill_at);

                struct pollfd pfd[4] = {
                        {.fd = s[0].fd, .events = POLLIN},
                        {.fd = s[1].fd, .events = POLLIN},
                        {.fd = exited ? -1 : child_exit_fd(child), .events = POLLIN},
                        {.fd = cancel_fd, .events = POLLRDHUP},
                };
                if (poll(pfd, ELEMENTSOF(pfd), wait_ms) < 0)
                        continue; /* EINTR; nothing else is expected with these fds */
                for (int i = 0; i < 2; i++)
                        if (pfd[i].revents)
                                stream_read(&s[i], READ_CHUNK);
                if (pfd[2].revents)
                        exited = child_exited(child, &res->status);
                if (pfd[3].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                        res->cancelled = true;
                        (void) child_signal_group(child, SIGKILL);
                        killed = true;
                        cancel_fd = -1;
                }
        }
}

/* ---- the handler ---- */

static bool is_dir(const char *path) {
        struct stat st;

        return stat(path, &st) >= 0 && S_ISDIR(st.st_mode);
}

static int check_cwd(const char *cwd, struct exec_error *err) {
        struct stat st;

        if (stat(cwd, &st) < 0) {
                if (errno == ENOENT)
                        return exec_error_set(err, 400, "cwd '%s' does not exist", cwd);
                return exec_error_set(err, 400, "cannot access cwd '%s': %s", cwd, strerror(errno));
        }
        if (!S_ISDIR(st.st_mode))
                return exec_error_set(err, 400, "cwd '%s' is not a directory", cwd);
        return 0;
}

static int spawn_error(int r, enum spawn_stage stage, const struct exec_request *req, const char *cwd,
                       struct exec_error *err) {
        switch (stage) {
        case SPAWN_STAGE_CHDIR:
                return exec_error_set(err, 400, "cannot change to cwd '%s' as user '%s': %s", cwd, req->user,
                                      strerror(-r));
        case SPAWN_STAGE_IDENTITY:
                return exec_error_set(err, 500, "cannot switch to user '%s': %s", req->user, strerror(-r));
        case SPAWN_STAGE_EXEC:
                if (r == -E2BIG)
                        return exec_error_set(err, 400, "'cmd' and 'envs' are too large to pass to a program: %s",
                                              strerror(-r));
                return exec_error_set(err, 500, "cannot start /bin/bash: %s", strerror(-r));
        default:
                return exec_error_set(err, 500, "cannot start /bin/bash: %s", strerror(-r));
        }
}

/* Starts bash with its stdout and stderr on new pipes, whose read ends go to s. */
static int start_command(const struct exec_request *req, const char *cwd, const struct user_info *u,
                         const struct env *env, struct stream s[2], struct child **ret, struct exec_error *err) {
        char *argv[] = {(char *) "/bin/bash", (char *) "-lc", (char *) req->cmd, NULL};
        _cleanup_close_ int out_write = -1, err_write = -1;
        enum spawn_stage stage;
        int p[2], r;

        for (int i = 0; i < 2; i++) {
                if (pipe2(p, O_CLOEXEC) < 0)
                        return exec_error_set(err, 500, "cannot create a pipe: %s", strerror(errno));
                s[i].fd = p[0];
                *(i == 0 ? &out_write : &err_write) = p[1];
                if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0)
                        return exec_error_set(err, 500, "cannot set up a pipe: %s", strerror(errno));
        }

        struct process_spec spec = {
                .argv = argv,
                .envp = env->v,
                .cwd = cwd,
                .set_identity = u->uid != geteuid() || u->gid != getegid(),
                .uid = u->uid,
                .gid = u->gid,
                .groups = u->groups,
                .n_groups = u->n_groups,
                .new_session = true,
                .stdin_fd = -1,
                .stdout_fd = out_write,
                .stderr_fd = err_write,
        };
        r = process_spawn(&spec, ret, &stage);
        if (r < 0)
                return spawn_error(r, stage, req, cwd, err);
        return 0;
}

static int reply_add_stream(json_t *reply, const char *name, const char *truncated_name, struct stream *s) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        r = utf8_sanitize(s->data.data ? s->data.data : "", s->data.len, &text, &len);
        buf_free(&s->data);
        if (r < 0)
                return r;
        if (json_object_set_new(reply, name, json_stringn(text, len)) < 0)
                return -ENOMEM;
        if (s->truncated && json_object_set_new(reply, truncated_name, json_true()) < 0)
                return -ENOMEM;
        return 0;
}

static json_t *build_reply(struct stream s[2], const struct run_result *res) {
        json_t *reply = json_object();
        int exit_code = res->timed_out ? 124 : wait_status_to_exit_code(res->status);

        if (!reply || reply_add_stream(reply, "stdout", "stdout_truncated", &s[0]) < 0 ||
            reply_add_stream(reply, "stderr", "stderr_truncated", &s[1]) < 0 ||
            json_object_set_new(reply, "exit_code", json_integer(exit_code)) < 0 ||
            json_object_set_new(reply, "timed_out", json_boolean(res->timed_out)) < 0) {
                json_decref(reply);
                return NULL;
        }
        return reply;
}

/* Resolves the user, builds the environment, runs the command; the reply in *ret. */
static int exec_run(const struct exec_request *req, int cancel_fd, json_t **ret, struct exec_error *err) {
        struct user_info u = {};
        struct env env = {};
        struct stream s[2] = {{.fd = -1}, {.fd = -1}};
        struct run_result res = {};
        struct child *child = NULL;
        const char *cwd;
        uint64_t started = (uint64_t) mono_ms();
        int r;

        r = user_lookup(req->user, &u);
        if (r == -ESRCH)
                return exec_error_set(err, 400, "unknown user '%s'", req->user);
        if (r < 0)
                return exec_error_set(err, 500, "cannot look up user '%s': %s", req->user, strerror(-r));

        cwd = req->cwd ? req->cwd : is_dir(u.home) ? u.home : "/"; /* "/" if the home is missing */
        r = check_cwd(cwd, err);
        if (r >= 0 && env_build(&env, &u, req->envs) < 0)
                r = exec_error_set(err, 500, "out of memory building the environment");
        for (int i = 0; i < 2; i++)
                buf_init(&s[i].data, EXEC_OUTPUT_CAP);
        if (r >= 0)
                r = start_command(req, cwd, &u, &env, s, &child, err);
        if (r >= 0) {
                run_loop(child, s, cancel_fd, req->timeout_ms, &res);
                log_info("exec pid %d as %s: %s %d after %llu ms%s", (int) child_pid(child), req->user,
                         res.timed_out ? "timed out, status" : "exit", wait_status_to_exit_code(res.status),
                         (unsigned long long) ((uint64_t) mono_ms() - started), res.cancelled ? " (client went away)" : "");
                *ret = build_reply(s, &res);
                if (!*ret)
                        r = exec_error_set(err, 500, "out of memory building the reply");
        }

        child_free(child);
        for (int i = 0; i < 2; i++) {
                if (s[i].fd >= 0)
                        close(s[i].fd);
                buf_free(&s[i].data);
        }
        env_done(&env);
        user_info_done(&u);
        return r;
}

int exec_handle(struct http_conn *c, const struct http_request *req) {
        json_auto_t *body = NULL, *reply = NULL;
        struct exec_error err = {};
        struct exec_request r = {};
        json_error_t jerr;

        body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!body)
                return http_respond_error(c, 400, "bad_request", "invalid JSON body: %s", jerr.text);
        if (parse_request(body, &r, &err) < 0 || exec_run(&r, http_conn_fd(c), &reply, &err) < 0)
                return http_respond_error(c, err.status, err.status == 400 ? "bad_request" : "internal", "%s",
                                          err.message);
        return http_respond_json(c, 200, reply);
}
