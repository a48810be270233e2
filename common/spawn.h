/* spawn.h — run a helper program (runc, ip, mmdebstrap) to completion.
 *
 * The child gets /dev/null as stdin, its stdout and stderr captured into one capped buffer
 * (for error messages), and optionally one extra fd placed at fd 3. All other fds are closed
 * by O_CLOEXEC discipline. PATH is searched.
 */
#pragma once

#include <stdbool.h>

#include "buf.h"

struct spawn_opts {
        int extra_fd;        /* placed at fd 3 in the child, or -1 */
        int stdio_fd;        /* if >= 0, the child's stdout+stderr go here and are not captured */
        int timeout_ms;      /* 0 = none; on expiry the child is killed and -ETIMEDOUT returned */
        bool passthrough;    /* child's stdout/stderr are the parent's (progress output) */
};

/* Runs argv[0] with argv; on return *ret_status is the exit code (or 128+signal) and output
 * (if not NULL) holds what it printed, up to the buffer's cap. Returns 0 when the program
 * ran (whatever its exit code), or a negative errno when it could not be run. */
int spawn_run(char *const argv[], const struct spawn_opts *opts, int *ret_status, struct buf *output);

/* Convenience: runs argv and returns 0 on exit code 0, -EIO otherwise; the captured output's
 * last line is copied into err (errlen bytes) for error messages. */
int spawn_check(char *const argv[], char *err, size_t errlen);
