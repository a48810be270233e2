/* bundle.h — writes the OCI config.json of a sandbox: the one place that decides what a
 * sandbox may do (namespaces, id mapping, capabilities, seccomp, masked paths, cgroup
 * limits, mounts; the open-file limit is the runtime's to pass on: runtime.h).
 *
 * Two namespaces are made by the engine, not the runtime: the user namespace (joined by
 * path: its owner is a host uid of the sandbox's own, sandbox/userns.h) and the network
 * namespace (net/: owned by the host, so root inside cannot configure it), which the
 * config does not name at all: the runtime runs in it and the container shares it (see
 * runtime.h, start). */
#pragma once

#include <stdint.h>

#include "error.h"

struct bundle_spec {
        const char *id;
        const char *bundle_dir;   /* config.json goes here */
        const char *rootfs;       /* the overlay mount */
        const char *agent;        /* host path of ai2in-agent, bind-mounted read-only */
        const char *userns_path;  /* the user namespace made by sandbox/userns.h, joined; NULL: the
                                   * runtime makes one with the id maps (runtime.h: joins_userns) */
        const char *sysfs;        /* the sysfs of its network namespace (net/), bound as /sys; NULL:
                                   * none (the runtime's kernel has its own: runtime.h) */
        const char *resolv_conf;  /* bound as /etc/resolv.conf (net_resolv_conf) */
        const char *cgroup_path;  /* "/ai2in/sbx_…" */
        /* NULL: the agent listens on fd 3, a socket the engine made. Otherwise this host
         * directory (the sandbox's own, RUN/sandboxes/<id>) is bound read-write at
         * AGENT_SOCKET_DIR_INSIDE and the agent makes its socket there (runtime.h:
         * takes_listen_fd). Then the code kernels' directory, KERNEL_SOCKET_DIR_INSIDE, is
         * a tmpfs of the sandbox's own kernel: with runsc --host-uds=create a unix socket
         * bound on a host-backed directory is a host socket, which a checkpoint cannot save,
         * and the kernels' ZeroMQ sockets are unix ones. */
        const char *socket_dir;
        /* NULL, or the rootfs's own /tmp (a directory, checked by the engine while nothing of
         * the sandbox ran), bound at /tmp (runtime.h: tmp_in_spec). */
        const char *tmp_dir;
        const char *netns_path;   /* the sandbox's network namespace, named in the spec; NULL: not
                                   * named, the runtime's own is shared (runtime.h: netns_in_spec) */
        int64_t uid_base, uid_count;
        int64_t memory_mb, pids;
        int64_t ptys;             /* terminals open at once (its devpts instance's max=) */
        int64_t open_files;       /* RLIMIT_NOFILE in the spec; 0: none, inherited from the runtime */
        double cpu_count;
        int64_t cpu_shares;     /* 0: cpu_count * 1024; a pooled sandbox starts with few (pool.h) */
};

/* Path of the agent inside every sandbox. */
#define AGENT_PATH_INSIDE "/.ai2in/ai2in-agent"
/* Where the agent makes its socket when it cannot be given one (bundle_spec.socket_dir). */
#define AGENT_SOCKET_DIR_INSIDE "/.ai2in/run"
/* Where the agent makes its code kernels' directories (agent/kernel/python-launch.c). */
#define KERNEL_SOCKET_DIR_INSIDE "/run/ai2in-kernels"

int bundle_write(const struct bundle_spec *spec, struct error *e);
