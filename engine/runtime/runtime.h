/* runtime.h — the OCI runtime behind one small interface.
 *
 * The engine never does namespace work itself: a runtime (runc.c; runsc.c, gVisor; crun can
 * follow as a further file filling the same ops) runs an OCI bundle that sandbox/bundle.c
 * writes. Container ids are sandbox ids. Whatever a runtime keeps of its own (its state
 * files, where its containers' cgroups are and their removal) is known only in this
 * directory: the sandbox layer asks through these functions and reads none of it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

enum container_status { CONTAINER_MISSING, CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_PAUSED, CONTAINER_STOPPED };

struct runtime;

/* What a container is started with besides its bundle. */
struct runtime_start {
        const char *bundle;
        int listen_fd;          /* becomes fd 3 of the container's init; -1 when the driver
                                 * does not take one (takes_listen_fd) */
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
        const char *name; /* the program: "runc", "runsc" */
        const char *kind; /* what users choose and see (get_info()["runtime"]): "runc", "gvisor" */
        /* Whether the container joins a user namespace the engine made (by path: owned by a
         * host uid of the sandbox's own, sandbox/userns.h). runsc cannot (its multi-threaded
         * gofer cannot setns into a user namespace: EINVAL): it gets the id maps in the spec
         * and makes the namespace itself. */
        bool joins_userns;
        /* Whether /sys inside is a bind of the sysfs the engine mounted for the sandbox's
         * network namespace (net/). runsc's kernel has a sysfs of its own (and its gofer,
         * as the sandbox's root, could not reach the engine's 0700 run directory). */
        bool binds_sysfs;
        /* Whether the container's init can be given the engine's listening socket as fd 3.
         * runsc imports a donated descriptor as a host file, not a socket one can accept()
         * on (the agent fails with EINVAL): there the agent makes its socket itself, in a
         * host directory bound in (sandbox/bundle.h: socket_dir; runsc --host-uds=create). */
        bool takes_listen_fd;
        /* Whether the sandbox's open-file limit is the runtime's own, inherited (runc: see
         * runtime_start.open_files), or set in the spec's process.rlimits, which runsc's
         * kernel enforces itself (its own processes need far more host descriptors than the
         * sandbox may open: one per file open inside, at least). */
        bool rlimits_in_spec;
        /* Whether the spec names the sandbox's network namespace by path. runc cannot join it
         * after the engine's user namespace (it shares the one it is started in instead:
         * runtime_start.netns_path); runsc, left to itself, makes a new, empty one. */
        bool netns_in_spec;
        /* Whether /tmp must be named in the spec to stay the sandbox's own disk: runsc mounts
         * a tmpfs of its kernel over an empty /tmp that the spec does not name, whose files a
         * filesystem pause would lose (runc keeps them in the overlay). */
        bool tmp_in_spec;
        /* Creates and starts the container of s->bundle detached (see struct runtime_start). */
        int (*start)(struct runtime *rt, const char *id, const struct runtime_start *s, struct error *e);
        /* Reports the status and the init's host pid (0 when not running). */
        int (*status)(struct runtime *rt, const char *id, enum container_status *ret, pid_t *ret_pid, struct error *e);
        /* Kills every process and removes the container (a frozen one too) and its cgroups;
         * a missing container is success, and cheap (the engine asks every runtime it has). */
        int (*destroy)(struct runtime *rt, const char *id, struct error *e);
        /* Freezes every process of the container (cgroup freezer): no CPU, memory kept.
         * Freezing a frozen container is success. */
        int (*freeze)(struct runtime *rt, const char *id, struct error *e);
        /* Thaws a frozen container: its processes continue where they were. Thawing a
         * running one is success. */
        int (*thaw)(struct runtime *rt, const char *id, struct error *e);
        /* Lists the ids of every container under this runtime's root. */
        int (*list)(struct runtime *rt, char ***ret_ids, unsigned *ret_n, struct error *e);
        /* Sends sig to the container's init (the agent). Only where checkpoint is. */
        int (*signal)(struct runtime *rt, const char *id, int sig, struct error *e);
        /* NULL for a runtime that cannot (runc: its memory pause is freeze). Writes the
         * container's whole state, memory included, into image_dir (which exists and is empty),
         * and the container stops (what the runtime keeps of it goes at restore or destroy).
         * On failure the error says why, in the runtime's words, and the container is either
         * still running or dead (ask status). */
        int (*checkpoint)(struct runtime *rt, const char *id, const char *image_dir, struct error *e);
        /* Starts container id from image_dir, as start does from its bundle (the same s),
         * removing what is left of the checkpointed one first: its
         * processes continue where checkpoint stopped them. The files they held open must
         * still exist, and the network namespace must have the address back. */
        int (*restore)(struct runtime *rt, const char *id, const struct runtime_start *s, const char *image_dir, struct error *e);
};

struct runtime {
        const struct runtime_ops *ops;
        char *binary;        /* e.g. "runc" or a path */
        char *root;          /* the runtime's state directory, private to this engine */
        char *cgroup_parent; /* containers are at cgroup_parent/<id> of every hierarchy */
};

/* Builds the runtime called by binary's base name with state under root (made if missing)
 * and its containers' cgroups under cgroup_parent. */
int runtime_new(const char *binary, const char *root, const char *cgroup_parent, struct runtime **ret, struct error *e);
void runtime_free(struct runtime *rt);

/* cgroup.c: the spec's cgroupsPath for container id ("/PARENT/<id>"). */
void runtime_cgroup_path(const struct runtime *rt, const char *id, char *out, size_t n);
/* Removes the (empty) cgroups of container id in every hierarchy; failures are logged. */
void runtime_cgroups_remove(const struct runtime *rt, const char *id);
/* Limits changed in place on a running container (a pooled sandbox handed out): each field
 * 0 is left as it is. old_memory_bytes, the limit it has now, decides the order of writes. */
struct runtime_limits {
        int64_t memory_bytes, old_memory_bytes;
        int64_t cpu_quota;  /* µs per 100 ms period */
        int64_t cpu_shares; /* as the spec's (v1 cpu.shares) */
};
/* Writes l to the cgroups of container id (runc's: runsc keeps its own). Lowering memory
 * below what the container uses fails (EBUSY) and may leave the other fields unchanged. */
int runtime_cgroup_limits(const struct runtime *rt, const char *id, const struct runtime_limits *l, struct error *e);
/* Removes every empty cgroup under the parent whose name is none of live[0..n). */
void runtime_cgroups_remove_orphans(const struct runtime *rt, char *const *live, unsigned n);
/* Removes the parent itself in every hierarchy where it is empty; returns how many went. */
unsigned runtime_cgroups_remove_parent(const char *cgroup_parent);

/* Whether binary (a name looked up on PATH, or a path) is an executable file. */
bool runtime_installed(const char *binary);

struct buf;
struct spawn_opts;

/* For the drivers: runs argv (a command of rt's program) as spawn_run does, its output into
 * out (NULL: none); not being able to run it at all is an error in e, its exit status is
 * *status's to judge. */
int runtime_run(struct runtime *rt, char *const argv[], const struct spawn_opts *o, int *status, struct buf *out,
                struct error *e);

/* For a driver's status: runs argv (its `state <id>` command) and reads the OCI state it
 * prints (runc and runsc print the same document). A non-zero exit: CONTAINER_MISSING. */
int runtime_oci_state(struct runtime *rt, char **argv, const char *id, enum container_status *ret, pid_t *ret_pid,
                      struct error *e);

/* The kind ("runc", "gvisor") a user's name for a runtime means ("runsc" is "gvisor"), or
 * NULL when it names none. */
const char *runtime_kind_of(const char *name);

extern const struct runtime_ops runc_ops;
extern const struct runtime_ops runsc_ops;
