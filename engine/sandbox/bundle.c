/* bundle.c — see bundle.h. Defaults follow Docker's: its capability set less NET_RAW,
 * its masked and read-only paths, and a seccomp filter that allows by default but denies
 * the calls that have been kernel escape routes (io_uring, userfaultfd, bpf, keyrings,
 * perf, module loading, new user namespaces, mount-API syscalls) and legacy AIO, whose
 * contexts are a host-wide table. */
#include "sandbox/bundle.h"

#include <errno.h>
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "fsutil.h"

static const char *const caps[] = {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
};

static const char *const masked[] = {
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
        "/sys/kernel/debug", "/sys/kernel/security",
        /* The host's cgroup tree would list (and expose the usage of) every other sandbox. */
        "/sys/fs/cgroup",
};

static const char *const readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

static const char *const denied_syscalls[] = {
        "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf", "keyctl", "add_key",
        "request_key", "perf_event_open", "kexec_load", "kexec_file_load", "init_module", "finit_module",
        "delete_module", "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "reboot", "acct",
        "lookup_dcookie", "quotactl", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
        "syslog", "uselib", "vhangup", "iopl", "ioperm", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
        "open_tree", "mount_setattr", "pivot_root", "setns", "nfsservctl", "personality",
};

static const char *const aio_syscalls[] = {"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents"};

static json_t *string_array(const char *const *v, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static json_t *mount_entry(const char *dest, const char *type, const char *src, const char *const *options, size_t n) {
        return json_pack("{s:s, s:s, s:s, s:o}", "destination", dest, "type", type, "source", src, "options",
                         string_array(options, n));
}

static json_t *mounts(const struct bundle_spec *s) {
        static const char *const dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
        /* Every sandbox's devpts instance draws on the host's kernel.pty.max (4096, of which
         * 1024 are reserved to instances mounted from the host's initial mount namespace):
         * max= keeps one sandbox from taking the share of every other. */
        char max[32];
        const char *const pts[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", max};
        static const char *const shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"};
        static const char *const mq[] = {"nosuid", "noexec", "nodev"};
        /* A fresh sysfs cannot be mounted from a user namespace into a network namespace it
         * does not own (EPERM): the engine mounts one from inside the namespace, on the host
         * (net/), and it is bound here, read-only (sensitive parts are masked). It shows the
         * sandbox's own network devices only, and none of the host's submounts of /sys. */
        static const char *const sys[] = {"bind", "nosuid", "noexec", "nodev", "ro"};
        static const char *const agent[] = {"bind", "ro", "nosuid", "nodev"};
        static const char *const resolv[] = {"bind", "nosuid", "nodev", "noexec"};
        static const char *const sockdir[] = {"bind", "nosuid", "nodev", "noexec"};
        static const char *const kernels[] = {"nosuid", "nodev", "noexec", "mode=711", "size=16m"};
        static const char *const tmp[] = {"bind", "nosuid", "nodev"};
        json_t *m = json_array();

        snprintf(max, sizeof(max), "max=%lld", (long long) s->ptys);
        json_array_append_new(m, json_pack("{s:s, s:s, s:s}", "destination", "/proc", "type", "proc", "source", "proc"));
        json_array_append_new(m, mount_entry("/dev", "tmpfs", "tmpfs", dev, ELEMENTSOF(dev)));
        json_array_append_new(m, mount_entry("/dev/pts", "devpts", "devpts", pts, ELEMENTSOF(pts)));
        json_array_append_new(m, mount_entry("/dev/shm", "tmpfs", "shm", shm, ELEMENTSOF(shm)));
        json_array_append_new(m, mount_entry("/dev/mqueue", "mqueue", "mqueue", mq, ELEMENTSOF(mq)));
        if (s->sysfs)
                json_array_append_new(m, mount_entry("/sys", "none", s->sysfs, sys, ELEMENTSOF(sys)));
        if (s->socket_dir) {
                json_array_append_new(m, mount_entry(AGENT_SOCKET_DIR_INSIDE, "none", s->socket_dir, sockdir, ELEMENTSOF(sockdir)));
                json_array_append_new(m, mount_entry(KERNEL_SOCKET_DIR_INSIDE, "tmpfs", "tmpfs", kernels, ELEMENTSOF(kernels)));
        }
        if (s->tmp_dir)
                json_array_append_new(m, mount_entry("/tmp", "none", s->tmp_dir, tmp, ELEMENTSOF(tmp)));
        json_array_append_new(m, mount_entry(AGENT_PATH_INSIDE, "none", s->agent, agent, ELEMENTSOF(agent)));
        json_array_append_new(m, mount_entry("/etc/resolv.conf", "none", s->resolv_conf, resolv, ELEMENTSOF(resolv)));
        return m;
}

static json_t *seccomp(void) {
        json_t *rules = json_array();

        json_array_append_new(rules, json_pack("{s:o, s:s, s:i}", "names", string_array(denied_syscalls, ELEMENTSOF(denied_syscalls)),
                                               "action", "SCMP_ACT_ERRNO", "errnoRet", EPERM));
        /* Legacy AIO contexts are counted host-wide (fs.aio-max-nr, 65536, root included):
         * one io_setup(65536) would leave none to anyone. ENOSYS, as on a kernel built
         * without AIO, which libaio's users check for (glibc's POSIX AIO uses threads). */
        json_array_append_new(rules, json_pack("{s:o, s:s, s:i}", "names", string_array(aio_syscalls, ELEMENTSOF(aio_syscalls)),
                                               "action", "SCMP_ACT_ERRNO", "errnoRet", ENOSYS));
        /* clone3 cannot be filtered on its flags: ENOSYS makes libc fall back to clone. */
        json_array_append_new(rules, json_pack("{s:[s], s:s, s:i}", "names", "clone3", "action", "SCMP_ACT_ERRNO", "errnoRet", ENOSYS));
        /* No new user namespaces from inside (the usual first step of a kernel exploit). */
        json_array_append_new(rules, json_pack("{s:[s], s:s, s:i, s:[{s:i, s:I, s:I, s:s}]}", "names", "unshare", "action",
                                               "SCMP_ACT_ERRNO", "errnoRet", EPERM, "args", "index", 0, "value",
                                               (json_int_t) CLONE_NEWUSER, "valueTwo", (json_int_t) CLONE_NEWUSER, "op",
                                               "SCMP_CMP_MASKED_EQ"));
        json_array_append_new(rules, json_pack("{s:[s], s:s, s:i, s:[{s:i, s:I, s:I, s:s}]}", "names", "clone", "action",
                                               "SCMP_ACT_ERRNO", "errnoRet", EPERM, "args", "index", 0, "value",
                                               (json_int_t) CLONE_NEWUSER, "valueTwo", (json_int_t) CLONE_NEWUSER, "op",
                                               "SCMP_CMP_MASKED_EQ"));
        return json_pack("{s:s, s:[s], s:o}", "defaultAction", "SCMP_ACT_ALLOW", "architectures", "SCMP_ARCH_X86_64", "syscalls", rules);
}

static json_t *resources(const struct bundle_spec *s) {
        json_int_t mem = (json_int_t) s->memory_mb * 1024 * 1024;
        json_int_t quota = (json_int_t) (s->cpu_count * 100000.0);
        json_int_t shares = s->cpu_shares > 0 ? (json_int_t) s->cpu_shares : (json_int_t) (s->cpu_count * 1024);

        return json_pack("{s:{s:I, s:I}, s:{s:I, s:I, s:I}, s:{s:I}, s:[{s:b, s:s}]}", "memory", "limit", mem, "swap", mem, "cpu",
                         "quota", quota, "period", (json_int_t) 100000, "shares", shares, "pids",
                         "limit", (json_int_t) s->pids, "devices", "allow", 0, "access", "rwm");
}

/* rlimits are inherited from the runtime, which the engine starts with the sandbox's
 * open-file limit (runtime.h): nothing inside can raise a hard limit (that takes
 * CAP_SYS_RESOURCE in the host's user namespace). A runtime that is a kernel of its own
 * (runsc) enforces the spec's instead (s->open_files). */
static json_t *process(const struct bundle_spec *s) {
        json_t *c = string_array(caps, ELEMENTSOF(caps));
        char idenv[64];

        json_t *p;

        snprintf(idenv, sizeof(idenv), "AI2IN_SANDBOX_ID=%s", s->id);
        p = json_pack("{s:b, s:{s:i, s:i}, s:[s, s, s], s:[s, s, s], s:s, s:b, s:{s:O, s:O, s:O}, s:i}",
                         "terminal", 0, "user", "uid", 0, "gid", 0, "args", AGENT_PATH_INSIDE, s->socket_dir ? "--listen" : "--listen-fd",
                         s->socket_dir ? "unix:" AGENT_SOCKET_DIR_INSIDE "/agent.sock" : "3", "env",
                         "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", idenv, "cwd",
                         "/", "noNewPrivileges", 1, "capabilities", "bounding", c, "effective", c, "permitted", c, "oomScoreAdj", 500);
        json_decref(c);
        if (p && s->open_files > 0)
                json_object_set_new(p, "rlimits", json_pack("[{s:s, s:I, s:I}]", "type", "RLIMIT_NOFILE", "hard",
                                                            (json_int_t) s->open_files, "soft", (json_int_t) s->open_files));
        return p;
}

int bundle_write(const struct bundle_spec *s, struct error *e) {
        char path[4096];
        json_t *cfg, *namespaces;
        char *text;
        int r;

        /* No "network" unless given: the container shares the runtime's, the sandbox's (bundle.h). */
        namespaces = json_pack("[{s:s}, {s:s}, {s:s}, {s:s}, {s:s}]", "type", "pid", "type", "ipc", "type", "uts", "type", "mount",
                               "type", "cgroup");
        json_array_append_new(namespaces, s->userns_path ? json_pack("{s:s, s:s}", "type", "user", "path", s->userns_path)
                                                         : json_pack("{s:s}", "type", "user"));
        if (s->netns_path)
                json_array_append_new(namespaces, json_pack("{s:s, s:s}", "type", "network", "path", s->netns_path));
        cfg = json_pack("{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:{s:[{s:i, s:I, s:I}], s:[{s:i, s:I, s:I}], s:o, s:s, s:o, s:o, s:o, s:o}}",
                        "ociVersion", "1.0.2", "process", process(s), "root", "path", s->rootfs, "readonly", 0, "hostname",
                        "sandbox", "mounts", mounts(s), "linux", "uidMappings", "containerID", 0, "hostID",
                        (json_int_t) s->uid_base, "size", (json_int_t) s->uid_count, "gidMappings", "containerID", 0,
                        "hostID", (json_int_t) s->uid_base, "size", (json_int_t) s->uid_count, "namespaces", namespaces,
                        "cgroupsPath", s->cgroup_path, "resources", resources(s), "maskedPaths",
                        string_array(masked, ELEMENTSOF(masked)), "readonlyPaths", string_array(readonly, ELEMENTSOF(readonly)),
                        "seccomp", seccomp());
        if (!cfg)
                return error_set(e, ENOMEM, ERR_INTERNAL, "cannot build config.json for %s", s->id);
        text = json_dumps(cfg, JSON_COMPACT);
        json_decref(cfg);
        if (!text)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        snprintf(path, sizeof(path), "%s/config.json", s->bundle_dir);
        r = write_file_atomic(path, text, strlen(text), 0600);
        free(text);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot write %s: %s", path, strerror(-r));
        return 0;
}
