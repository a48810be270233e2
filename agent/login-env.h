/* login-env.h — the environment a user's login shell exports, captured once and reused, so
 * that a command can run as "/bin/bash -c CMD" under it rather than paying for the startup
 * files of "/bin/bash -lc CMD" every time.
 *
 * An entry is reused while the startup files bash reads for a login shell (and what the
 * stock ones test) are unchanged; where a login shell would leave state that an
 * environment cannot carry (functions, umask, shell options, cwd), or the capture fails,
 * the user's commands keep running as login shells. See login-env.c for the details.
 */
#pragma once

#include "users.h"

#define LOGIN_ENV_MAX_USERS 16             /* cache entries; the least recently used goes */
#define LOGIN_ENV_TIMEOUT_MS 2000          /* for each shell a capture runs */
#define LOGIN_ENV_MAX_OUTPUT (256 * 1024)  /* of each shell a capture runs */

/* The login environment of u for commands whose base environment is base_env (the
 * environment a login shell of u would start with: NULL-terminated "KEY=VALUE" strings,
 * a function of u alone). Captures it when there is no valid cache entry, as u, in u's
 * home, taking up to twice LOGIN_ENV_TIMEOUT_MS.
 *
 * Returns 1 with a NULL-terminated copy in *ret (free with login_env_free): the complete
 * environment for "bash -c" — base_env as the startup files left it, without PWD, OLDPWD,
 * SHLVL and _. Returns 0 when u's commands must run as login shells instead (the capture
 * failed or is not faithful; logged once per change of the files). Never fails otherwise.
 * Thread-safe. */
int login_env_get(const struct user_info *u, char *const *base_env, char ***ret);

/* Frees a NULL-terminated array of strings and the strings; accepts NULL. */
void login_env_free(char **env);
