/* cgroup.c — where a runtime's containers live in the cgroup trees, and their removal.
 *
 * Every driver places a container at PARENT/<id> of each hierarchy (v1 controllers and the
 * unified tree of this host's hybrid layout), through the spec's cgroupsPath. The runtimes
 * leave those directories behind when a container dies outside their control (killed init,
 * engine restart), so the engine removes them itself: after each destroy and, at start, any
 * that names no live sandbox. This knowledge stays in runtime/: the sandbox layer only asks.
 */
#include "runtime/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"

void runtime_cgroup_path(const struct runtime *rt, const char *id, char *out, size_t n) {
        snprintf(out, n, "/%s/%s", rt->cgroup_parent, id);
}

void runtime_cgroups_remove(const struct runtime *rt, const char *id) {
        static const char *const controllers[] = {"memory", "cpu", "cpuacct", "cpuset", "pids", "devices", "freezer", "blkio",
                                                  "systemd", "unified", "net_cls", "net_prio", "perf_event", "hugetlb"};
        char path[512];

        for (size_t i = 0; i < ELEMENTSOF(controllers); i++) {
                snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/%s", controllers[i], rt->cgroup_parent, id);
                if (rmdir(path) < 0 && errno != ENOENT)
                        log_warn_errno(errno, "cannot remove cgroup %s, ignoring", path);
        }
        snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", rt->cgroup_parent, id);
        if (rmdir(path) < 0 && errno != ENOENT && errno != ENOTDIR)
                log_warn_errno(errno, "cannot remove cgroup %s, ignoring", path);
}

static bool is_live(char *const *live, unsigned n, const char *id) {
        for (unsigned i = 0; i < n; i++)
                if (streq(live[i], id))
                        return true;
        return false;
}

void runtime_cgroups_remove_orphans(const struct runtime *rt, char *const *live, unsigned n) {
        DIR *top = opendir("/sys/fs/cgroup");
        struct dirent *c;

        while (top && (c = readdir(top))) {
                char path[512];
                DIR *d;
                struct dirent *de;

                if (c->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", c->d_name, rt->cgroup_parent);
                d = opendir(path);
                while (d && (de = readdir(d))) {
                        char sub[1024];
                        if (de->d_type != DT_DIR || de->d_name[0] == '.' || is_live(live, n, de->d_name))
                                continue;
                        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
                        if (rmdir(sub) == 0)
                                log_info("removed orphaned cgroup %s", sub);
                }
                if (d)
                        closedir(d);
        }
        if (top)
                closedir(top);
}

unsigned runtime_cgroups_remove_parent(const char *cgroup_parent) {
        DIR *top = opendir("/sys/fs/cgroup");
        unsigned removed = 0;

        for (struct dirent *c; top && (c = readdir(top));) {
                char path[512];

                if (c->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", c->d_name, cgroup_parent);
                removed += rmdir(path) == 0; /* only when empty: a live sandbox's stays */
        }
        if (top)
                closedir(top);
        return removed;
}
