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
#include <fcntl.h>
#include <sys/stat.h>
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

/* Writes value to the cgroup file at path: the whole text in one write, as the kernel
 * takes it. */
static int cgroup_write(const char *path, const char *value, struct error *e) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t n = strlen(value);

        if (fd < 0 || write(fd, value, n) != (ssize_t) n)
                return error_set(e, errno, ERR_INTERNAL, "cannot write %s to %s: %s", value, path, strerror(errno));
        return 0;
}

static int cgroup_write_int(const char *dir, const char *file, long long v, struct error *e) {
        char path[512], value[32];

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        snprintf(value, sizeof(value), "%lld", v);
        return cgroup_write(path, value, e);
}

/* v1 (this host's hybrid layout, where runc puts its limits): memory and memory+swap are
 * the same (no swap, as the spec says), and memsw may never be below memory: raised
 * memsw first, lowered memory first. */
static int limits_v1(const struct runtime *rt, const char *id, const struct runtime_limits *l, struct error *e) {
        char mem[512], cpu[512];
        int r;

        snprintf(mem, sizeof(mem), "/sys/fs/cgroup/memory/%s/%s", rt->cgroup_parent, id);
        snprintf(cpu, sizeof(cpu), "/sys/fs/cgroup/cpu/%s/%s", rt->cgroup_parent, id);
        if (l->memory_bytes > 0) {
                bool raise = l->memory_bytes > l->old_memory_bytes;
                const char *first = raise ? "memory.memsw.limit_in_bytes" : "memory.limit_in_bytes";
                const char *second = raise ? "memory.limit_in_bytes" : "memory.memsw.limit_in_bytes";
                if ((r = cgroup_write_int(mem, first, l->memory_bytes, e)) < 0 || (r = cgroup_write_int(mem, second, l->memory_bytes, e)) < 0)
                        return r;
        }
        if (l->cpu_quota > 0 && (r = cgroup_write_int(cpu, "cpu.cfs_quota_us", l->cpu_quota, e)) < 0)
                return r;
        return l->cpu_shares > 0 ? cgroup_write_int(cpu, "cpu.shares", l->cpu_shares, e) : 0;
}

/* v2 (a unified-only host): memory.max with no swap, cpu.max, and cpu.weight as runc maps
 * shares to it (1 + (shares - 2) * 9999 / 262142). */
static int limits_v2(const char *dir, const struct runtime_limits *l, struct error *e) {
        char path[512], value[64];
        int r;

        if (l->memory_bytes > 0 && (r = cgroup_write_int(dir, "memory.max", l->memory_bytes, e)) < 0)
                return r;
        if (l->cpu_quota > 0) {
                snprintf(path, sizeof(path), "%s/cpu.max", dir);
                snprintf(value, sizeof(value), "%lld 100000", (long long) l->cpu_quota);
                if ((r = cgroup_write(path, value, e)) < 0)
                        return r;
        }
        return l->cpu_shares > 0 ? cgroup_write_int(dir, "cpu.weight", 1 + (l->cpu_shares - 2) * 9999 / 262142, e) : 0;
}

int runtime_cgroup_limits(const struct runtime *rt, const char *id, const struct runtime_limits *l, struct error *e) {
        char v2[512];
        struct stat st;

        snprintf(v2, sizeof(v2), "/sys/fs/cgroup/%s/%s", rt->cgroup_parent, id);
        if (stat("/sys/fs/cgroup/memory", &st) == 0)
                return limits_v1(rt, id, l, e);
        return limits_v2(v2, l, e);
}
