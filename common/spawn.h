/* spawn.h — run a helper program (runc, ip, iptables, mmdebstrap) to completion, with a
 * deadline.
 *
 * The child gets /dev/null as stdin, its stdout and stderr captured into one capped buffer
 * (for error messages), and optionally one extra fd placed at fd 3; every other descriptor is
 * closed. It runs in a process group of its own, which is killed whole when the deadline
 * passes. PATH is searched (by the parent, before fork).
 */
#pragma once

#include <stdbool.h>

#include "buf.h"

/* A hung helper (runc waiting on a frozen cgroup, iptables on the xtables lock) must not hold
 * an API thread and a sandbox's lock for ever. */
#define SPAWN_DEFAULT_TIMEOUT_MS 30000

struct spawn_opts {
        int extra_fd;        /* placed at fd 3 in the child, or -1 */
        int stdio_fd;        /* if >= 0, the child's stdout+stderr go here and are not captured */
        int timeout_ms;      /* deadline (0: SPAWN_DEFAULT_TIMEOUT_MS); past it the child's group is
                              * killed and -ETIMEDOUT returned */
        bool passthrough;    /* child's stdout/stderr are the parent's (progress output) */
        const char *netns_path; /* if not NULL, the child joins this network namespace first */
        unsigned long open_files; /* if not 0, the child's RLIMIT_NOFILE, soft and hard */
        /* If not NULL, the child runs in a mount namespace of its own (the host's mounts seen
         * as a slave: later unmounts still reach it) where this directory is an empty
         * read-only tmpfs. For a helper whose check of a host path gives the wrong answer on
         * this kernel (runsc: runtime/runsc.c). Done after netns_path is joined. */
        const char *hide_dir;
};

/* Runs argv[0] with argv; on return *ret_status is the exit code (or 128+signal) and output
 * (if not NULL) holds what it printed, up to the buffer's cap. Returns 0 when the program
 * ran (whatever its exit code), -ENOENT when it is not on PATH, -ETIMEDOUT when it was killed
 * at its deadline, or another negative errno when it could not be run. opts may be NULL. */
int spawn_run(char *const argv[], const struct spawn_opts *opts, int *ret_status, struct buf *output);

/* Convenience: runs argv with the default deadline and returns 0 on exit code 0, -EIO
 * otherwise (or spawn_run's error); the captured output's last line (or the reason it did
 * not run) is copied into err (errlen bytes) for error messages. */
int spawn_check(char *const argv[], char *err, size_t errlen);
