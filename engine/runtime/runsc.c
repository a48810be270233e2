/* runsc.c — the gVisor driver: `runsc --root R --platform=systrap run --detach` (inside the
 * sandbox's network namespace, with its open-file limit, like runc: runtime.h), `state`,
 * `delete --force`, `pause` and `resume`, and the container's state files in R.
 *
 * systrap, not the default ptrace platform (about 85 times slower on system calls here) nor
 * kvm (this machine's /dev/kvm is a software one, and runsc hangs on it).
 *
 * gVisor issue #10704: runsc refuses to set up the sandbox's network ("cannot run with network
 * enabled in root network namespace") when /proc/sys/net/core/rmem_default exists, which it
 * takes for a sign of the host's namespace; kernel 6.18 (here) shows that file in every
 * network namespace. runsc is therefore run in a mount namespace of its own where /proc/sys/net
 * is an empty tmpfs (spawn.h: hide_dir). Hiding /proc/sys/net/core alone is not enough: runsc
 * checks after joining the sandbox's network namespace, where /proc/sys/net/core is another
 * directory that the mount does not cover; /proc/sys/net is the same in every namespace. What
 * runsc learns of the network it reads over netlink, and the sandbox's kernel (netstack)
 * reads nothing of the host's /proc/sys/net.
 *
 * Other differences from runc, each a flag of runsc_ops (runtime.h): the spec names the
 * network namespace (else runsc makes an empty one) and the open-file limit; the user
 * namespace is runsc's own, with the spec's id maps (its gofer cannot setns into the engine's);
 * /sys is its kernel's; the agent makes its socket in a bound host directory (--host-uds=create)
 * because a donated listening socket arrives as a plain host file. --overlay2=none: runsc would
 * otherwise put a memory-backed overlay over the root, and the sandbox's writes would miss its
 * upper dir (its persistent filesystem).
 *
 * runsc takes the veth's address for its own netstack and removes it from the interface
 * (the sandbox still answers on it: netstack replies to ARP on the veth).
 *
 * Checkpoint and restore (the memory pause, sandbox/pause.c): `runsc checkpoint` with its
 * default compression (flate-best-speed) into the image directory, after which the container
 * stops by itself (its state is deleted by the restore, or destroy); `runsc restore` from it,
 * in the sandbox's network namespace as run is. What a checkpoint cannot save, it refuses
 * with an "encoding error" naming it (a unix socket bound on a host-backed directory, a TCP
 * connection with an end outside); measured here, the container is dead afterwards, which is
 * why the engine asks the agent first (agent/checkpoint.h).
 */
#include "runtime/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "spawn.h"

#define RUNSC_HIDE_DIR "/proc/sys/net"
#define STATE_SUFFIX ".state"
/* runsc's own open-file limit: the engine's hard one (host root may lack CAP_SYS_RESOURCE
 * to go past it). The sentry and the gofer hold host descriptors for the sandbox's files;
 * the sandbox's own limit is in the spec (runtime.h: rlimits_in_spec). */
static unsigned long runsc_open_files(void) {
        struct rlimit rl;

        return getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY ? (unsigned long) rl.rlim_max : 1048576;
}

/* argv of `runsc <global flags> verb...`: the flags every call must repeat (runsc reads
 * its configuration from the command line each time, and a state call with another
 * platform or root would not find the container). */
#define RUNSC_ARGV(rt, ...) {(rt)->binary, "--root", (rt)->root, "--platform=systrap", "--network=sandbox", "--overlay2=none", \
                            "--host-uds=create", __VA_ARGS__, NULL}

/* `runsc run` or `restore` (argv, verb), in the sandbox's network namespace (see the top). */
static int run_in_netns(struct runtime *rt, char *const argv[], const char *verb, const struct runtime_start *s, struct error *e) {
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = s->log_fd, .timeout_ms = 30000, .netns_path = s->netns_path,
                               .open_files = runsc_open_files(), .hide_dir = RUNSC_HIDE_DIR};
        int status, r;

        r = runtime_run(rt, argv, &o, &status, NULL, e);
        if (r < 0)
                return r;
        if (status != 0)
                return error_set(e, EIO, ERR_INTERNAL, "%s %s exited with status %d", rt->binary, verb, status);
        return 0;
}

static int runsc_start(struct runtime *rt, const char *id, const struct runtime_start *s, struct error *e) {
        char *argv[] = RUNSC_ARGV(rt, "run", "--detach", "--bundle", (char *) s->bundle, (char *) id);

        return run_in_netns(rt, argv, "run", s, e);
}


static int runsc_status(struct runtime *rt, const char *id, enum container_status *ret, pid_t *ret_pid, struct error *e) {
        char *argv[] = RUNSC_ARGV(rt, "state", (char *) id);

        return runtime_oci_state(rt, argv, id, ret, ret_pid, e);
}

/* Whether runsc has state for container id: its file "<sandbox>_sandbox:<id>.state" in the
 * root (the sandbox is named after its first container, which is the only one here). */
static bool has_state(struct runtime *rt, const char *id) {
        char path[4096];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s_sandbox:%s" STATE_SUFFIX, rt->root, id, id);
        return lstat(path, &st) == 0;
}

static int runsc_destroy(struct runtime *rt, const char *id, struct error *e) {
        char *argv[] = RUNSC_ARGV(rt, "delete", "--force", (char *) id);
        char msg[512] = "";

        if (!has_state(rt, id))
                return 0; /* not ours: the engine asks every runtime */
        if (spawn_check(argv, msg, sizeof(msg)) < 0 && has_state(rt, id))
                return error_set(e, EIO, ERR_INTERNAL, "%s delete %s failed: %s", rt->binary, id, msg);
        runtime_cgroups_remove(rt, id);
        return 0;
}

static int runsc_restore(struct runtime *rt, const char *id, const struct runtime_start *s, const char *image_dir, struct error *e) {
        char *argv[] = RUNSC_ARGV(rt, "restore", "--detach", "--image-path", (char *) image_dir, "--bundle", (char *) s->bundle, (char *) id);
        int r;

        /* What the checkpoint left (runsc_checkpoint); by now it has stopped, cheap to remove. */
        r = runsc_destroy(rt, id, e);
        return r < 0 ? r : run_in_netns(rt, argv, "restore", s, e);
}

/* `runsc pause` or `resume` (the sandbox's kernel stops its tasks); already in the wanted
 * state is success. */
static int verb(struct runtime *rt, const char *id, const char *what, enum container_status already, struct error *e) {
        char *argv[] = RUNSC_ARGV(rt, (char *) what, (char *) id);
        enum container_status st;
        char msg[512] = "";
        pid_t pid;

        if (spawn_check(argv, msg, sizeof(msg)) == 0)
                return 0;
        if (runsc_status(rt, id, &st, &pid, NULL) == 0 && st == already)
                return 0;
        return error_set(e, EIO, ERR_INTERNAL, "%s %s %s failed: %s", rt->binary, what, id, *msg ? msg : "no message");
}

static int runsc_freeze(struct runtime *rt, const char *id, struct error *e) {
        return verb(rt, id, "pause", CONTAINER_PAUSED, e);
}

static int runsc_thaw(struct runtime *rt, const char *id, struct error *e) {
        return verb(rt, id, "resume", CONTAINER_RUNNING, e);
}

static int runsc_signal(struct runtime *rt, const char *id, int sig, struct error *e) {
        char signame[16], msg[512] = "";
        char *argv[] = RUNSC_ARGV(rt, "kill", (char *) id, signame);

        snprintf(signame, sizeof(signame), "%d", sig);
        if (spawn_check(argv, msg, sizeof(msg)) < 0)
                return error_set(e, EIO, ERR_INTERNAL, "%s kill %s %d failed: %s", rt->binary, id, sig, *msg ? msg : "no message");
        return 0;
}

/* The first line of a failed checkpoint's output, its reason (a Go stack dump follows),
 * with runsc's own prefixes ("checkpoint failed: checkpointing container \"…\": ") and a
 * trailing colon dropped. */
static void checkpoint_reason(const struct buf *out, char *msg, size_t n) {
        const char *p = out->data ? out->data : "", *end = memchr(p, '\n', out->len), *c;
        size_t len = end ? (size_t) (end - p) : out->len;

        if ((c = memmem(p, len, "\": ", 3))) {
                len -= (size_t) (c + 3 - p);
                p = c + 3;
        }
        while (len > 0 && (p[len - 1] == ':' || p[len - 1] == ' '))
                len--;
        snprintf(msg, n, "%.*s", (int) len, p);
}

static int runsc_checkpoint(struct runtime *rt, const char *id, const char *image_dir, struct error *e) {
        char *argv[] = RUNSC_ARGV(rt, "checkpoint", "--image-path", (char *) image_dir, (char *) id);
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = -1, .timeout_ms = 300000};
        _cleanup_buf_ struct buf out;
        char msg[512];
        int status, r;

        buf_init(&out, 1024 * 1024);
        r = runtime_run(rt, argv, &o, &status, &out, e);
        if (r < 0)
                return r;
        if (status != 0) {
                checkpoint_reason(&out, msg, sizeof(msg));
                return error_set(e, EIO, ERR_INTERNAL, "%s", *msg ? msg : "runsc checkpoint failed without a message");
        }
        /* The container stops by itself after the checkpoint, which takes its sandbox process
         * 1.5-2 s more here; `delete --force` now would wait for that (measured: it made the
         * pause twice as long). Its state is removed by the restore (or destroy) instead. */
        return 0;
}

/* The container id of a state file's name "<sandbox>_sandbox:<id>.state", or NULL. */
static char *id_of_state_file(const char *name) {
        const char *colon = strstr(name, "_sandbox:");
        size_t len = strlen(name), sl = strlen(STATE_SUFFIX);

        if (!colon || len <= sl || !streq(name + len - sl, STATE_SUFFIX))
                return NULL;
        colon += strlen("_sandbox:");
        return strndup(colon, (size_t) (name + len - sl - colon));
}

static int runsc_list(struct runtime *rt, char ***ret_ids, unsigned *ret_n, struct error *e) {
        DIR *d = opendir(rt->root);
        struct dirent *de;
        char **ids = NULL;
        unsigned n = 0;

        if (!d) {
                *ret_ids = NULL;
                *ret_n = 0;
                return errno == ENOENT ? 0 : error_set(e, errno, ERR_INTERNAL, "cannot list %s: %s", rt->root, strerror(errno));
        }
        while ((de = readdir(d))) {
                char *id = id_of_state_file(de->d_name), **more;

                if (!id)
                        continue;
                more = realloc(ids, sizeof(char *) * (n + 1));
                if (!more) {
                        free(id);
                        break;
                }
                ids = more;
                ids[n++] = id;
        }
        closedir(d);
        *ret_ids = ids;
        *ret_n = n;
        return 0;
}

const struct runtime_ops runsc_ops = {
        .name = "runsc",
        .kind = "gvisor",
        .rlimits_in_spec = true,
        .netns_in_spec = true,
        .tmp_in_spec = true,
        .start = runsc_start,
        .status = runsc_status,
        .destroy = runsc_destroy,
        .freeze = runsc_freeze,
        .thaw = runsc_thaw,
        .list = runsc_list,
        .signal = runsc_signal,
        .checkpoint = runsc_checkpoint,
        .restore = runsc_restore,
};
