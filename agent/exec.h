/* exec.h — POST /exec: run a shell command to completion and return its output.
 *
 * Request: {"cmd": "shell text", "envs": {"K": "V"}, "cwd": "/dir", "user": "root",
 *           "timeout_ms": 60000}; only cmd is required; null counts as absent; unknown
 *           fields are refused. user is a name from /etc/passwd (default root); cwd
 *           defaults to its home ("/" if that is missing); timeout_ms defaults to
 *           EXEC_DEFAULT_TIMEOUT_MS, 0 means none, at most EXEC_MAX_TIMEOUT_MS. envs go on
 *           top of PATH, HOME, USER, LOGNAME, SHELL=/bin/bash and LANG=C.UTF-8.
 * Reply 200: {"stdout": "...", "stderr": "...", "exit_code": N, "timed_out": bool}
 *            plus "stdout_truncated"/"stderr_truncated": true past EXEC_OUTPUT_CAP.
 */
#pragma once

#include "http.h"

#define EXEC_OUTPUT_CAP (16 * 1024 * 1024)
#define EXEC_DEFAULT_TIMEOUT_MS 60000
#define EXEC_MAX_TIMEOUT_MS (24ULL * 3600 * 1000)
#define EXEC_KILL_GRACE_MS 2000

/* Runs "/bin/bash -lc cmd" as the request says, in a new session, stdin /dev/null, and
 * answers on c: 200 with the result (a non-zero exit is a result), 400 for a bad request
 * (malformed JSON, wrong types, unknown user, missing cwd), 500 when the command cannot
 * be started. On timeout the process group gets SIGTERM, then SIGKILL EXEC_KILL_GRACE_MS
 * later, and exit_code is 124. If the client disconnects, the group is killed at once.
 * Returns 0 or the -errno of a failed reply. */
int exec_handle(struct http_conn *c, const struct http_request *req);
