/* runc.c — the runc driver: `runc --root R run -d --preserve-fds 1` (run inside the sandbox's
 * network namespace, with the sandbox's open-file limit: runtime.h), `state`, `delete -f`,
 * `pause` and `resume` (the cgroup freezer, for pauses that keep memory).
 *
 * runc 1.1 handles this host's hybrid cgroup layout. Note that `runc exec` cannot join a
 * network namespace created outside the container's user namespace (setns EPERM), which is
 * one reason the engine talks to its agent over a socket instead of exec'ing.
 */
#include "runtime/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "spawn.h"

static int runc_start(struct runtime *rt, const char *id, const struct runtime_start *s, struct error *e) {
        char *argv[] = {rt->binary, "--root", rt->root, "run", "--detach", "--preserve-fds", "1", "--bundle", (char *) s->bundle, (char *) id, NULL};
        struct spawn_opts o = {.extra_fd = s->listen_fd, .stdio_fd = s->log_fd, .timeout_ms = 30000, .netns_path = s->netns_path,
                               .open_files = s->open_files};
        int status, r;

        r = runtime_run(rt, argv, &o, &status, NULL, e);
        if (r < 0)
                return r;
        if (status != 0)
                return error_set(e, EIO, ERR_INTERNAL, "%s run exited with status %d", rt->binary, status);
        return 0;
}

static int runc_status(struct runtime *rt, const char *id, enum container_status *ret, pid_t *ret_pid, struct error *e) {
        char *argv[] = {rt->binary, "--root", rt->root, "state", (char *) id, NULL};

        return runtime_oci_state(rt, argv, id, ret, ret_pid, e);
}

/* The host pid of the container's init from runc's own state file, or 0. */
static pid_t init_pid(struct runtime *rt, const char *id) {
        char path[4096];
        json_t *j;
        pid_t pid;

        snprintf(path, sizeof(path), "%s/%s/state.json", rt->root, id);
        j = json_load_file(path, 0, NULL);
        pid = (pid_t) json_integer_value(json_object_get(j, "init_process_pid"));
        json_decref(j);
        return pid;
}

/* Kills the init (the pid namespace takes every other process with it) and waits for it
 * to exit: much faster than `delete --force`, which sleeps 100 ms between checks. */
static void kill_and_wait(struct runtime *rt, const char *id) {
        char *argv[] = {rt->binary, "--root", rt->root, "kill", (char *) id, "KILL", NULL};
        pid_t pid = init_pid(rt, id);
        int pidfd;

        if (pid <= 0)
                return;
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (spawn_check(argv, NULL, 0) < 0 || pidfd < 0) {
                if (pidfd >= 0)
                        close(pidfd);
                return;
        }
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        while (poll(&p, 1, 5000) < 0 && errno == EINTR)
                ;
        close(pidfd);
}

/* The container's freezer state file from runc's own state file (cgroup v1 freezer or the
 * v2 cgroup.freeze), or "" when it has none. */
static void freezer_file(struct runtime *rt, const char *id, char *out, size_t n) {
        char path[4096];
        json_t *j, *paths;
        const char *v1, *v2;

        out[0] = 0;
        snprintf(path, sizeof(path), "%s/%s/state.json", rt->root, id);
        j = json_load_file(path, 0, NULL);
        paths = json_object_get(j, "cgroup_paths");
        v1 = json_string_value(json_object_get(paths, "freezer"));
        v2 = json_string_value(json_object_get(paths, ""));
        if (v1)
                snprintf(out, n, "%s/freezer.state", v1);
        else if (v2)
                snprintf(out, n, "%s/cgroup.freeze", v2);
        json_decref(j);
}

/* A frozen container's processes cannot die of SIGKILL until thawed: thaw it first (a
 * file read when it is not frozen, which is nearly always). */
static void thaw_if_frozen(struct runtime *rt, const char *id) {
        char *argv[] = {rt->binary, "--root", rt->root, "resume", (char *) id, NULL};
        char path[4200], state[32] = "";
        FILE *f;

        freezer_file(rt, id, path, sizeof(path));
        if (!*path || !(f = fopen(path, "re")))
                return;
        if (!fgets(state, sizeof(state), f))
                state[0] = 0;
        fclose(f);
        if (strncmp(state, "FROZEN", 6) == 0 || strncmp(state, "FREEZING", 8) == 0 || streq(state, "1\n"))
                spawn_check(argv, NULL, 0);
}

static int runc_destroy(struct runtime *rt, const char *id, struct error *e) {
        char *argv[] = {rt->binary, "--root", rt->root, "delete", (char *) id, NULL};
        char *force[] = {rt->binary, "--root", rt->root, "delete", "--force", (char *) id, NULL};
        char path[4096], msg[512] = "";
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", rt->root, id);
        if (lstat(path, &st) < 0 && errno == ENOENT)
                return 0; /* not ours (the engine asks every runtime), or runc undid its failed start itself */
        thaw_if_frozen(rt, id);
        kill_and_wait(rt, id);
        if (spawn_check(argv, NULL, 0) < 0 && spawn_check(force, msg, sizeof(msg)) < 0 && lstat(path, &st) == 0)
                return error_set(e, EIO, ERR_INTERNAL, "%s delete %s failed: %s", rt->binary, id, msg);
        runtime_cgroups_remove(rt, id);
        return 0;
}

/* `runc pause` or `runc resume`; already in the wanted state is success. */
static int freezer_verb(struct runtime *rt, const char *id, const char *verb, enum container_status already, struct error *e) {
        char *argv[] = {rt->binary, "--root", rt->root, (char *) verb, (char *) id, NULL};
        enum container_status st;
        char msg[512] = "";
        pid_t pid;

        if (spawn_check(argv, msg, sizeof(msg)) == 0)
                return 0;
        if (runc_status(rt, id, &st, &pid, NULL) == 0 && st == already)
                return 0;
        return error_set(e, EIO, ERR_INTERNAL, "%s %s %s failed: %s", rt->binary, verb, id, *msg ? msg : "no message");
}

/* runc gives up ("unable to freeze") when the freezer does not settle within its own short
 * window, which a busy host can make it miss (a task in uninterruptible sleep, a kernel
 * starting up): a few more tries, with runc's thaw of the half-frozen cgroup in between. */
#define FREEZE_TRIES 3

static int runc_freeze(struct runtime *rt, const char *id, struct error *e) {
        int r = 0;

        for (int i = 0; i < FREEZE_TRIES; i++) {
                if (i > 0) {
                        log_info("freezing %s: %s; trying again", id, e->message);
                        usleep(100000 * i);
                }
                r = freezer_verb(rt, id, "pause", CONTAINER_PAUSED, e);
                if (r >= 0 || !strstr(e->message, "unable to freeze"))
                        break;
        }
        return r;
}

static int runc_thaw(struct runtime *rt, const char *id, struct error *e) {
        return freezer_verb(rt, id, "resume", CONTAINER_RUNNING, e);
}

static int runc_list(struct runtime *rt, char ***ret_ids, unsigned *ret_n, struct error *e) {
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
                char **more;
                if (de->d_name[0] == '.' || de->d_type != DT_DIR)
                        continue;
                more = realloc(ids, sizeof(char *) * (n + 1));
                if (!more)
                        break;
                ids = more;
                if ((ids[n] = strdup(de->d_name)))
                        n++;
        }
        closedir(d);
        *ret_ids = ids;
        *ret_n = n;
        return 0;
}

const struct runtime_ops runc_ops = {
        .name = "runc",
        .kind = "runc",
        .joins_userns = true,
        .binds_sysfs = true,
        .takes_listen_fd = true,
        .start = runc_start,
        .status = runc_status,
        .destroy = runc_destroy,
        .freeze = runc_freeze,
        .thaw = runc_thaw,
        .list = runc_list,
};
