/* bundle.h — writes the OCI config.json of a sandbox: the one place that decides what a
 * sandbox may do (namespaces, id mapping, capabilities, seccomp, masked paths, cgroup
 * limits, mounts). */
#pragma once

#include <stdint.h>

#include "error.h"

struct bundle_spec {
        const char *id;
        const char *bundle_dir;   /* config.json goes here */
        const char *rootfs;       /* the overlay mount */
        const char *agent;        /* host path of ai2in-agent, bind-mounted read-only */
        const char *netns_path;   /* the namespace made by net/ */
        const char *sysfs;        /* its sysfs (net/), bound as /sys */
        const char *cgroup_path;  /* "/ai2in/sbx_…" */
        int64_t uid_base, uid_count;
        int64_t memory_mb, pids;
        double cpu_count;
};

/* Path of the agent inside every sandbox. */
#define AGENT_PATH_INSIDE "/.ai2in/ai2in-agent"

int bundle_write(const struct bundle_spec *spec, struct error *e);
