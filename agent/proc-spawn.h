/* proc-spawn.h — POST /processes up to a running child: the request's validation, the
 * user, working directory and environment the command gets, and its pipes or terminal.
 *
 * The command runs under a supervisor (supervise.h: its timeout or kill ends every process
 * it started), in a new session, as the requested user (from the sandbox's
 * /etc/passwd), as "/bin/bash -c CMD" under the environment the user's login shell
 * exports (captured once and cached, login-env.h), or as "/bin/bash -lc CMD" where that
 * cannot be had; a terminal without cmd runs "/bin/bash -il". The environment: PATH, HOME,
 * USER, LOGNAME, SHELL=/bin/bash and LANG=C.UTF-8, as the login shell's startup files left
 * them, then TERM=xterm-256color on a terminal, then the request's envs, which win (under
 * "bash -lc" the startup files still run after them). See docs/api.md, "Processes", for
 * every field's rules.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "process.h"

#define PROC_HOME "/home/sandbox" /* default cwd, and the base of relative ones */
#define PROC_DEFAULT_TIMEOUT_MS 60000
#define PROC_MAX_TIMEOUT_MS (24ULL * 3600 * 1000)

/* Why a request failed: the HTTP status and the message for the error body. */
struct proc_error {
        int status;
        char message[512];
};

/* Fills err and returns -EINVAL, so that `return proc_error_set(…)` reads naturally. */
int proc_error_set(struct proc_error *err, int status, const char *fmt, ...) _printf_(3, 4);

/* The error code of docs/api.md for an HTTP status ("bad_request", "not_found", …). */
const char *proc_error_code(int status);

/* A validated POST /processes body; strings and envs point into the parsed JSON. */
struct proc_request {
        const char *cmd; /* NULL: an interactive terminal */
        json_t *envs;    /* NULL if absent */
        const char *cwd; /* as given, or NULL */
        const char *user;
        const char *tag; /* NULL if absent */
        uint64_t timeout_ms; /* 0: none */
        bool background;
        bool stdin;
        bool pty;
        unsigned cols, rows; /* when pty */
};

/* Validates root (a parsed body) into *ret. Refuses unknown fields, wrong types and
 * out-of-range values with a 400 in err naming the field; null counts as absent. */
int proc_request_parse(json_t *root, struct proc_request *ret, struct proc_error *err);

/* The agent's ends of a started process's standard fds, all O_CLOEXEC. */
struct proc_io {
        int out_fd;   /* stdout pipe's read end, or the terminal's master; non-blocking */
        int err_fd;   /* stderr pipe's read end; -1 on a terminal */
        int stdin_fd; /* stdin pipe's write end, or a dup of the master; non-blocking; -1
                       * when stdin is /dev/null */
};

struct user_info;

/* The environment a command or an interpreter of u starts with: PATH, HOME, USER, LOGNAME,
 * SHELL=/bin/bash and LANG=C.UTF-8, as u's login shell's startup files leave them when login
 * is true and that environment can be had (login-env.h), else as they are. Returns 0 with a
 * NULL-terminated array of "KEY=VALUE" in *ret (free with login_env_free()) and, if
 * ret_login is not NULL, whether it is the login shell's in *ret_login; or -ENOMEM. */
int proc_env(const struct user_info *u, bool login, char ***ret, bool *ret_login);

/* The working directory of a command or a context that asks for none: PROC_HOME, else home
 * (may be NULL), else "/" (an image without either). */
const char *proc_default_cwd(const char *home);

/* The absolute working directory given asks for: given itself when absolute, relative to
 * PROC_HOME otherwise, proc_default_cwd(home) when NULL. It must be an existing directory.
 * Returns 0 with it in *ret (malloc'd), or -EINVAL with err filled in: 400 when it does not
 * exist, cannot be reached or is not a directory, 503 when the sandbox's state prevents the
 * check (pressure.h), 500 when out of memory. */
int proc_resolve_cwd(const char *given, const char *home, char **ret, struct proc_error *err);

/* Starts the command req describes. On success returns 0 with the child in *ret_child,
 * the agent's fds in *ret_io and the absolute working directory in *ret_cwd (malloc'd).
 * On failure returns -EINVAL with err filled in: 400 for an unknown user or an unusable cwd,
 * 503 when the sandbox's state prevents it (no pid under its pids limit, no memory, no fd:
 * pressure.h), 500 otherwise. */
int proc_spawn(const struct proc_request *req, struct child **ret_child, struct proc_io *ret_io, char **ret_cwd,
               struct proc_error *err);
