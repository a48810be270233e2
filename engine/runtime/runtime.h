/* runtime.h — the OCI runtime behind one small interface.
 *
 * The engine never does namespace work itself: a runtime (runc today; crun and runsc can
 * follow as further files filling the same ops) runs an OCI bundle that sandbox/bundle.c
 * writes. Container ids are sandbox ids.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

enum container_status { CONTAINER_MISSING, CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_PAUSED, CONTAINER_STOPPED };

struct runtime;

struct runtime_ops {
        const char *name;
        /* Creates and starts the container of bundle detached; listen_fd becomes fd 3 of its
         * init; log_fd receives the init's stdout/stderr and the runtime's own errors. */
        int (*start)(struct runtime *rt, const char *id, const char *bundle, int listen_fd, int log_fd, struct error *e);
        /* Reports the status and the init's host pid (0 when not running). */
        int (*status)(struct runtime *rt, const char *id, enum container_status *ret, pid_t *ret_pid, struct error *e);
        /* Kills every process and removes the container (a frozen one too); a missing
         * container is success. */
        int (*destroy)(struct runtime *rt, const char *id, struct error *e);
        /* Freezes every process of the container (cgroup freezer): no CPU, memory kept.
         * Freezing a frozen container is success. */
        int (*freeze)(struct runtime *rt, const char *id, struct error *e);
        /* Thaws a frozen container: its processes continue where they were. Thawing a
         * running one is success. */
        int (*thaw)(struct runtime *rt, const char *id, struct error *e);
        /* Lists the ids of every container under this runtime's root. */
        int (*list)(struct runtime *rt, char ***ret_ids, unsigned *ret_n, struct error *e);
};

struct runtime {
        const struct runtime_ops *ops;
        char *binary; /* e.g. "runc" or a path */
        char *root;   /* the runtime's state directory, private to this engine */
};

/* Builds the runtime called by binary's base name ("runc" today) with state under root. */
int runtime_new(const char *binary, const char *root, struct runtime **ret, struct error *e);
void runtime_free(struct runtime *rt);

extern const struct runtime_ops runc_ops;
