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

/* What a container is started with besides its bundle. */
struct runtime_start {
        const char *bundle;
        int listen_fd;          /* becomes fd 3 of the container's init */
        int log_fd;             /* receives the init's stdout/stderr and the runtime's own errors */
        /* The runtime runs in this network namespace and the container shares it (config.json
         * names none): the bundle's user namespace is one the engine made (sandbox/userns.h),
         * which a runtime joins before the others, after which it could no longer join a
         * network namespace owned by the host's (EPERM). */
        const char *netns_path;
        /* RLIMIT_NOFILE, soft and hard, that the runtime runs with and the container inherits
         * (0: the engine's own). Not set through config.json: the runtime would set it with
         * prlimit() on the container's init from outside, which takes CAP_SYS_RESOURCE over
         * the sandbox's user namespace, and host root may not have that capability at all. */
        unsigned long open_files;
};

struct runtime_ops {
        const char *name;
        /* Creates and starts the container of s->bundle detached (see struct runtime_start). */
        int (*start)(struct runtime *rt, const char *id, const struct runtime_start *s, struct error *e);
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
