/* proc-spawn.c — see proc-spawn.h. Owns the request's validation (the rules that were
 * POST /exec's, plus background, stdin, pty and tag), the environment and identity of the
 * command, and the plumbing of its fds. Everything a request can get wrong is refused with
 * a 400 before anything is spawned.
 */
#include "proc-spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "login-env.h"
#include "pressure.h"
#include "pty.h"
#include "strv.h"
#include "users.h"

#define MAX_ENVS 4096
#define MAX_ARG_LEN (128 * 1024) /* the kernel's MAX_ARG_STRLEN: longest string execve() takes */
#define MAX_PATH_LEN 4096
#define MAX_TAG_LEN 256
#define MAX_PTY_SIZE 1000

static const char default_path[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

int proc_error_set(struct proc_error *err, int status, const char *fmt, ...) {
        va_list ap;

        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

const char *proc_error_code(int status) {
        switch (status) {
        case 400:
                return "bad_request";
        case 404:
                return "not_found";
        case 409:
                return "conflict";
        case 429:
                return "limit_exceeded";
        case 503:
                return "unavailable";
        default:
                return "internal";
        }
}

/* ---- validation ---- */

/* A string field: no NUL inside, 1..max bytes (0..max when allow_empty). */
static int parse_string(const char *key, json_t *v, bool allow_empty, size_t max, const char **ret,
                        struct proc_error *err) {
        size_t len;

        if (!json_is_string(v))
                return proc_error_set(err, 400, "'%s' must be a string", key);
        len = json_string_length(v);
        if (len == 0 && !allow_empty)
                return proc_error_set(err, 400, "'%s' must not be empty", key);
        if (strlen(json_string_value(v)) != len)
                return proc_error_set(err, 400, "'%s' must not contain NUL characters", key);
        if (len > max)
                return proc_error_set(err, 400, "'%s' is longer than %zu bytes", key, max);
        *ret = json_string_value(v);
        return 0;
}

static int parse_envs(json_t *envs, struct proc_error *err) {
        const char *key;
        json_t *v;

        if (!json_is_object(envs))
                return proc_error_set(err, 400, "'envs' must be an object of strings");
        if (json_object_size(envs) > MAX_ENVS)
                return proc_error_set(err, 400, "'envs' has more than %d entries", MAX_ENVS);
        json_object_foreach(envs, key, v) {
                if (!*key || strchr(key, '='))
                        return proc_error_set(err, 400, "'envs' key '%s' is not a valid variable name", key);
                if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                        return proc_error_set(err, 400, "'envs' value of '%s' must be a string without NUL", key);
        }
        return 0;
}

static int parse_size(json_t *pty, const char *key, unsigned *ret, struct proc_error *err) {
        json_t *v = json_object_get(pty, key);

        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_PTY_SIZE)
                return proc_error_set(err, 400, "'pty.%s' must be an integer from 1 to %d", key, MAX_PTY_SIZE);
        *ret = (unsigned) json_integer_value(v);
        return 0;
}

static int parse_pty(json_t *pty, struct proc_request *r, struct proc_error *err) {
        const char *key;
        json_t *v;

        if (!json_is_object(pty))
                return proc_error_set(err, 400, "'pty' must be an object {\"cols\": N, \"rows\": N}");
        json_object_foreach(pty, key, v)
                if (!streq(key, "cols") && !streq(key, "rows"))
                        return proc_error_set(err, 400, "unknown field 'pty.%s'", key);
        if (parse_size(pty, "cols", &r->cols, err) < 0 || parse_size(pty, "rows", &r->rows, err) < 0)
                return -EINVAL;
        r->pty = true;
        return 0;
}

static int parse_bool(const char *key, json_t *v, bool *ret, struct proc_error *err) {
        if (!json_is_boolean(v))
                return proc_error_set(err, 400, "'%s' must be true or false", key);
        *ret = json_is_true(v);
        return 0;
}

static int parse_field(const char *key, json_t *v, struct proc_request *r, bool *timeout_set,
                       struct proc_error *err) {
        if (streq(key, "cmd"))
                return parse_string(key, v, false, MAX_ARG_LEN - 1, &r->cmd, err);
        if (streq(key, "cwd"))
                return parse_string(key, v, false, MAX_PATH_LEN, &r->cwd, err);
        if (streq(key, "user"))
                return parse_string(key, v, false, MAX_PATH_LEN, &r->user, err);
        if (streq(key, "tag"))
                return parse_string(key, v, true, MAX_TAG_LEN, &r->tag, err);
        if (streq(key, "background"))
                return parse_bool(key, v, &r->background, err);
        if (streq(key, "stdin"))
                return parse_bool(key, v, &r->stdin, err);
        if (streq(key, "pty"))
                return parse_pty(v, r, err);
        if (streq(key, "envs")) {
                r->envs = v;
                return parse_envs(v, err);
        }
        if (streq(key, "timeout_ms")) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                    (uint64_t) json_integer_value(v) > PROC_MAX_TIMEOUT_MS)
                        return proc_error_set(err, 400, "'timeout_ms' must be an integer from 0 (none) to %llu",
                                              (unsigned long long) PROC_MAX_TIMEOUT_MS);
                r->timeout_ms = (uint64_t) json_integer_value(v);
                *timeout_set = true;
                return 0;
        }
        return proc_error_set(err, 400, "unknown field '%s'", key);
}

int proc_request_parse(json_t *root, struct proc_request *ret, struct proc_error *err) {
        struct proc_request r = {.user = "root"};
        bool timeout_set = false;
        const char *key;
        json_t *v;

        if (!json_is_object(root))
                return proc_error_set(err, 400, "the request body must be a JSON object");
        json_object_foreach(root, key, v) {
                if (json_is_null(v))
                        continue;
                if (parse_field(key, v, &r, &timeout_set, err) < 0)
                        return -EINVAL;
        }
        if (!r.cmd && !r.pty)
                return proc_error_set(err, 400, "missing field 'cmd' (required unless 'pty' is given)");
        if (!timeout_set)
                r.timeout_ms = r.background || r.pty ? 0 : PROC_DEFAULT_TIMEOUT_MS;
        *ret = r;
        return 0;
}

/* ---- environment ---- */

/* Sets key=value, replacing an earlier value of key. */
static int env_set(struct strv *e, const char *key, const char *value) {
        size_t klen = strlen(key);
        char *entry;

        if (asprintf(&entry, "%s=%s", key, value) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < e->n; i++)
                if (strncmp(e->v[i], key, klen) == 0 && e->v[i][klen] == '=') {
                        free(e->v[i]);
                        e->v[i] = entry;
                        return 0;
                }
        return strv_push(e, entry);
}

/* The environment a login shell of u starts with. */
static int env_base(struct strv *e, const struct user_info *u) {
        const struct {
                const char *key, *value;
        } base[] = {
                {"PATH", default_path}, {"HOME", u->home},      {"USER", u->name},
                {"LOGNAME", u->name},   {"SHELL", "/bin/bash"}, {"LANG", "C.UTF-8"},
        };
        int r = 0;

        for (size_t i = 0; i < ELEMENTSOF(base) && r >= 0; i++)
                r = env_set(e, base[i].key, base[i].value);
        return r;
}

/* Replaces the base environment e with what u's login shell makes of it (login-env.h).
 * False when there is none to be had: the command must run as a login shell. */
static bool env_login(struct strv *e, const struct user_info *u) {
        char **login;

        if (login_env_get(u, e->v, &login) <= 0)
                return false;
        strv_done(e);
        e->v = login;
        while (e->v[e->n])
                e->n++;
        return true;
}

/* The base environment, then, when login, the login shell's (see proc_env()). */
static int env_init(struct strv *e, const struct user_info *u, bool login, bool *ret_login) {
        int r = env_base(e, u);

        *ret_login = r >= 0 && login && env_login(e, u);
        return r;
}

int proc_env(const struct user_info *u, bool login, char ***ret, bool *ret_login) {
        struct strv e = {};
        bool got_login;
        int r;

        r = env_init(&e, u, login, &got_login);
        if (r < 0) {
                strv_done(&e);
                return r;
        }
        *ret = TAKE_PTR(e.v);
        if (ret_login)
                *ret_login = got_login;
        return 0;
}

/* TERM on a terminal, then the request's envs, which win over everything. */
static int env_finish(struct strv *e, const struct proc_request *req) {
        const char *key;
        json_t *v;
        int r = 0;

        if (req->pty)
                r = env_set(e, "TERM", "xterm-256color");
        json_object_foreach(req->envs, key, v) {
                if (r < 0)
                        break;
                r = env_set(e, key, json_string_value(v));
        }
        return r;
}

/* ---- working directory ---- */

static bool is_dir(const char *path) {
        struct stat st;

        return stat(path, &st) >= 0 && S_ISDIR(st.st_mode);
}

const char *proc_default_cwd(const char *home) {
        if (is_dir(PROC_HOME))
                return PROC_HOME;
        return home && is_dir(home) ? home : "/";
}

int proc_resolve_cwd(const char *given, const char *home, char **ret, struct proc_error *err) {
        _cleanup_free_ char *path = NULL;
        struct stat st;

        if (!given)
                path = strdup(proc_default_cwd(home));
        else if (given[0] == '/')
                path = strdup(given);
        else if (asprintf(&path, "%s/%s", PROC_HOME, given) < 0)
                path = NULL;
        if (!path)
                return proc_error_set(err, 500, "out of memory");
        if (stat(path, &st) < 0) {
                if (errno == ENOENT)
                        return proc_error_set(err, 400, "cwd '%s' does not exist", path);
                return proc_error_set(err, pressure_errno(errno) ? 503 : 400, "cannot access cwd '%s': %s", path,
                                      strerror(errno));
        }
        if (!S_ISDIR(st.st_mode))
                return proc_error_set(err, 400, "cwd '%s' is not a directory", path);
        *ret = TAKE_PTR(path);
        return 0;
}

/* ---- fds ---- */

/* The fds the child gets as 0, 1, 2 (-1: /dev/null; a terminal's slave may be all three). */
struct child_fds {
        int fd[3];
};

static void child_fds_close(struct child_fds *c) {
        for (int i = 0; i < 3; i++)
                if (c->fd[i] >= 0 && (i == 0 || c->fd[i] != c->fd[i - 1]))
                        close(c->fd[i]);
}

static void io_close(struct proc_io *io) {
        int *fds[] = {&io->out_fd, &io->err_fd, &io->stdin_fd};

        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                if (*fds[i] >= 0) {
                        close(*fds[i]);
                        *fds[i] = -1;
                }
}

static int fd_error(int e, const char *what, struct proc_error *err) {
        char why[256];

        /* Out of fds is a passing condition: the caller may retry once others are gone. */
        return proc_error_set(err, pressure_errno(e) ? 503 : 500, "cannot create %s: %s", what,
                              pressure_describe(e, why, sizeof(why)));
}

/* A pipe whose agent end (the read end, or the write end when agent_writes) is non-blocking. */
static int make_pipe(bool agent_writes, int *ret_agent, int *ret_child, struct proc_error *err) {
        int p[2];

        if (pipe2(p, O_CLOEXEC) < 0)
                return fd_error(errno, "a pipe", err);
        *ret_agent = p[agent_writes ? 1 : 0];
        *ret_child = p[agent_writes ? 0 : 1];
        if (fcntl(*ret_agent, F_SETFL, O_NONBLOCK) < 0)
                return fd_error(errno, "a pipe", err);
        return 0;
}

static int plumb_pipes(const struct proc_request *req, struct child_fds *c, struct proc_io *io,
                       struct proc_error *err) {
        if (make_pipe(false, &io->out_fd, &c->fd[1], err) < 0 || make_pipe(false, &io->err_fd, &c->fd[2], err) < 0)
                return -EINVAL;
        if (req->stdin && make_pipe(true, &io->stdin_fd, &c->fd[0], err) < 0)
                return -EINVAL;
        return 0;
}

static int plumb_pty(const struct proc_request *req, uid_t uid, struct child_fds *c, struct proc_io *io,
                     struct proc_error *err) {
        int master, slave, r;

        r = pty_open(req->cols, req->rows, uid, &master, &slave);
        if (pressure_errno(r))
                return fd_error(-r, "a terminal", err);
        if (r == -ENOSPC) /* the terminals of the sandbox's /dev/pts are all taken */
                return proc_error_set(err, 503, "cannot open a terminal: every terminal of the sandbox is in use");
        if (r < 0)
                return proc_error_set(err, 500, "cannot open a terminal: %s", strerror(-r));
        io->out_fd = master;
        c->fd[0] = c->fd[1] = c->fd[2] = slave;
        /* Input goes through its own fd, so that the pump's and the writers' lives are apart. */
        io->stdin_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
        if (io->stdin_fd < 0)
                return fd_error(errno, "a terminal", err);
        return 0;
}

/* ---- starting ---- */

static int spawn_error(int r, enum spawn_stage stage, const struct proc_request *req, const char *cwd,
                       struct proc_error *err) {
        char why[256];

        /* Out of pids, memory or fds, at whichever step: the sandbox's state, not the
         * request's; it may pass once processes are gone. */
        if (pressure_errno(r))
                return proc_error_set(err, 503, "cannot start the command: %s", pressure_describe(r, why, sizeof(why)));
        switch (stage) {
        case SPAWN_STAGE_CHDIR:
                return proc_error_set(err, 400, "cannot change to cwd '%s' as user '%s': %s", cwd, req->user,
                                      strerror(-r));
        case SPAWN_STAGE_IDENTITY:
                return proc_error_set(err, 500, "cannot switch to user '%s': %s", req->user, strerror(-r));
        case SPAWN_STAGE_EXEC:
                if (r == -E2BIG)
                        return proc_error_set(err, 400, "'cmd' and 'envs' are too large to pass to a program: %s",
                                              strerror(-r));
                return proc_error_set(err, 500, "cannot start /bin/bash: %s", strerror(-r));
        case SPAWN_STAGE_FORK:
                return proc_error_set(err, 500, "cannot start a process: %s", strerror(-r));
        default:
                return proc_error_set(err, 500, "cannot set up /bin/bash%s: %s", req->pty ? " on its terminal" : "",
                                      strerror(-r));
        }
}

/* Runs req->cmd with "bash -c" when env is a login environment (login_env), else with
 * "bash -lc"; a terminal without cmd gets "bash -il". */
static int start(const struct proc_request *req, const struct user_info *u, const char *cwd, const struct strv *env,
                 bool login_env, struct child **ret_child, struct proc_io *io, struct proc_error *err) {
        const char *mode = !req->cmd ? "-il" : login_env ? "-c" : "-lc";
        char *argv[] = {(char *) "/bin/bash", (char *) mode, (char *) req->cmd, NULL};
        struct child_fds c = {{-1, -1, -1}};
        enum spawn_stage stage;
        int r;

        r = req->pty ? plumb_pty(req, u->uid, &c, io, err) : plumb_pipes(req, &c, io, err);
        if (r >= 0) {
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
                        .controlling_tty = req->pty,
                        .contain = true, /* its timeout or kill ends all it started */
                        .stdin_fd = c.fd[0],
                        .stdout_fd = c.fd[1],
                        .stderr_fd = c.fd[2],
                };
                r = process_spawn(&spec, ret_child, &stage);
                if (r < 0)
                        r = spawn_error(r, stage, req, cwd, err);
        }
        child_fds_close(&c);
        if (r < 0)
                io_close(io);
        return r;
}

int proc_spawn(const struct proc_request *req, struct child **ret_child, struct proc_io *ret_io, char **ret_cwd,
               struct proc_error *err) {
        struct proc_io io = {-1, -1, -1};
        _cleanup_free_ char *cwd = NULL;
        struct user_info u = {};
        struct strv env = {};
        bool login_env = false;
        int r;

        r = user_lookup(req->user, &u);
        if (r == -ESRCH)
                r = proc_error_set(err, 400, "unknown user '%s'", req->user);
        else if (r < 0)
                r = proc_error_set(err, pressure_errno(r) ? 503 : 500, "cannot look up user '%s': %s", req->user,
                                   user_strerror(r));
        if (r >= 0)
                r = proc_resolve_cwd(req->cwd, u.home, &cwd, err);
        /* A terminal without cmd runs a login shell anyway: no captured environment needed. */
        if (r >= 0 && env_init(&env, &u, req->cmd != NULL, &login_env) < 0)
                r = proc_error_set(err, 500, "out of memory building the environment");
        if (r >= 0 && env_finish(&env, req) < 0)
                r = proc_error_set(err, 500, "out of memory building the environment");
        if (r >= 0)
                r = start(req, &u, cwd, &env, login_env, ret_child, &io, err);
        strv_done(&env);
        user_info_done(&u);
        if (r < 0)
                return r;
        *ret_io = io;
        *ret_cwd = TAKE_PTR(cwd);
        return 0;
}
