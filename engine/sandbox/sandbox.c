/* sandbox.c — create, get, kill, set_timeout and exec (see sandbox.h), and the lifetime rule
 * that get_info shows and the reaper applies: a hard deadline if the sandbox has one, else
 * its idle limit (sandbox_end_at, sandbox_end_reason, reap_reason).
 *
 * A sandbox on the host is: a row in the store; STATE/sandboxes/<id>/{rootfs,bundle,agent.log,
 * lower} with the overlay mounted on rootfs and the idmapped template on lower (idmap.h: each
 * start runs in the uid range of its address); its layer STATE/disk/<id>/{upper,work}, limited
 * to its disk_mb (disk/disk.h; a sandbox of an engine from before disk limits has its layer in
 * STATE/sandboxes/<id>, unlimited); RUN/sandboxes/<id>/agent.sock; a network slot; a runc
 * container (with its cgroups, runtime/). Creation makes the
 * directories, then starts the rest (sandbox_start_parts, which resume uses too, pause.c)
 * in that order, and a failure at any step tears down whatever exists. A sandbox records the
 * template version it was created on (the current one then) and every mount of its overlay
 * uses that version (template/template.h): its upper dir holds changes to that tree.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "buf.h"
#include "cluster/node.h"
#include "disk/disk.h"
#include "fsutil.h"
#include "strv.h"
#include "id.h"
#include "log.h"
#include "sandbox/agent_client.h"
#include "sandbox/bundle.h"
#include "sandbox/idmap.h"
#include "sandbox/pool.h"
#include "sandbox/userns.h"
#include "template/template.h"
#include "timeutil.h"

void sandbox_dir(struct engine *eng, const char *id, char *out, size_t n) {
        snprintf(out, n, "%s/%s", eng->sandboxes_dir, id);
}

int sandbox_disk_used(struct engine *eng, const struct sandbox_rec *rec, int64_t *ret_bytes) {
        if (rec->disk_mb <= 0 || rec->state == SANDBOX_KILLED || !eng->disk)
                return -ENOENT;
        return disk_layer_used(eng->disk, rec->id, ret_bytes);
}

void sandbox_socket_path(struct engine *eng, const char *id, char *out, size_t n) {
        snprintf(out, n, "%s/%s/agent.sock", eng->run_sandboxes_dir, id);
}

const char *sandbox_end_reason(const struct sandbox_rec *r) {
        if (r->state != SANDBOX_RUNNING && r->state != SANDBOX_CREATING)
                return NULL;
        return r->deadline > 0 ? "timeout" : "idle";
}

int64_t sandbox_end_at(const struct sandbox_rec *r) {
        if (!sandbox_end_reason(r))
                return 0;
        return r->deadline > 0 ? r->deadline : r->last_activity + r->idle_timeout * 1000;
}

/* The template version a new sandbox gets (the current one) into rec, and rec inserted, both
 * under the template directory's shared lock: the version cannot be removed (template/gc.c)
 * between being read and being recorded. */
static int insert_on_current(struct engine *eng, struct sandbox_rec *rec, struct error *e) {
        _cleanup_close_ int lock = -1;
        int r;

        if ((r = template_name_check(rec->template_name, e)) < 0)
                return r;
        lock = template_lock(eng->cfg.template_dir, false, e);
        if (lock < 0)
                return lock == -ENOENT ? template_current(eng->cfg.template_dir, rec->template_name, rec->template_version, e) : lock;
        if ((r = template_current(eng->cfg.template_dir, rec->template_name, rec->template_version, e)) < 0)
                return r;
        return store_sandbox_insert(eng->store, rec, eng->cfg.max_running, e);
}

int sandbox_insert_pooled(struct engine *eng, struct sandbox_rec *rec, struct error *e) {
        char current[TEMPLATE_VERSION_MAX];
        _cleanup_close_ int lock = template_lock(eng->cfg.template_dir, false, e);
        int r;

        if (lock < 0 && lock != -ENOENT) /* no template directory: template_current says so */
                return lock;
        if ((r = template_current(eng->cfg.template_dir, rec->template_name, current, e)) < 0)
                return r;
        if (!streq(current, rec->template_version))
                return error_set(e, ESTALE, ERR_CONFLICT, "template %s has a new version since %s was started", rec->template_name,
                                 rec->id);
        return store_sandbox_insert(eng->store, rec, eng->cfg.max_running, e);
}

/* upper/ (the sandbox's "/", owned by its root) and work/ in dir. */
static int make_unlimited_layer(struct engine *eng, const char *dir, struct error *e) {
        char path[4200];
        int r;

        snprintf(path, sizeof(path), "%s/work", dir);
        if ((r = mkdir_p(path, 0700)) < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", path, strerror(-r));
        snprintf(path, sizeof(path), "%s/upper", dir);
        if ((r = mkdir_p(path, 0755)) < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", path, strerror(-r));
        if (chown(path, (uid_t) eng->cfg.uid_base, (gid_t) eng->cfg.uid_base) < 0 || chmod(path, 0755) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot prepare %s: %s", path, strerror(errno));
        return 0;
}

int sandbox_make_dirs(struct engine *eng, const struct sandbox_rec *rec, struct error *e) {
        static const char *const parts[] = {"rootfs", "bundle"};
        char dir[4096], path[4200];
        int r;

        sandbox_dir(eng, rec->id, dir, sizeof(dir));
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, parts[i]);
                r = mkdir_p(path, 0700);
                if (r < 0)
                        return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", path, strerror(-r));
        }
        /* The sandbox's directory is its root's alone (runc init reaches rootfs through it as
         * that uid, before it has taken the matching group) and nobody else's on the host. Its
         * layer, whose upper dir is "/" inside (owned by its root), is on the disk volume,
         * which is root's alone: what a sandbox writes — setuid binaries included — is out of
         * reach of other host users. */
        if (chown(dir, (uid_t) eng->cfg.uid_base, (gid_t) eng->cfg.uid_base) < 0 || chmod(dir, 0700) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot prepare %s: %s", dir, strerror(errno));
        if (rec->disk_mb > 0)
                r = disk_layer_make(eng->disk, rec->id, rec->disk_mb, (uid_t) eng->cfg.uid_base, e);
        else /* disk-volume off: unlimited, on the state file system, inside the sandbox's directory */
                r = make_unlimited_layer(eng, dir, e);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "%s/%s", eng->run_sandboxes_dir, rec->id);
        r = mkdir_p(path, 0700);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", path, strerror(-r));
        return 0;
}

/* The directory holding the sandbox's upper and work dirs: its layer on the disk volume, or,
 * for a sandbox without a limit (disk_mb 0: made before disk limits, or with disk-volume off),
 * its directory on the state file system. A limited sandbox on an engine that now runs
 * without the volume cannot be mounted: -ENOMEDIUM, said plainly. */
int sandbox_layer_dir(struct engine *eng, const struct sandbox_rec *rec, char *out, size_t n, struct error *e) {
        if (rec->disk_mb <= 0)
                sandbox_dir(eng, rec->id, out, n);
        else if (eng->disk)
                disk_layer_dir(eng->disk, rec->id, out, n);
        else
                return error_set(e, ENOMEDIUM, ERR_UNAVAILABLE,
                                 "the files of %s are on the engine's disk volume, which this engine does not mount (its "
                                 "setting disk-volume is off): start it with disk-volume on to resume it",
                                 rec->id);
        return 0;
}

/* The overlay's options: its layers are idmapped clones into the sandbox's range (idmap.h). */
static int idmap_opts(struct engine *eng, const struct sandbox_rec *rec, const char *dir, const char *layer_dir, const char *lower,
                      uint32_t range, char *opts, size_t n, struct error *e) {
        char lower_at[4200];
        _cleanup_close_ int layer = -1;
        struct idmap_spec s = {.id = rec->id, .lower = lower, .lower_at = lower_at, .layer = layer_dir,
                               .canonical = (uint32_t) eng->cfg.uid_base, .range = range, .count = (uint32_t) eng->cfg.uid_count};
        int r;

        snprintf(lower_at, sizeof(lower_at), "%s/lower", dir);
        /* runc init reaches rootfs through dir as root inside (R), and the engine through the
         * clone of dir, when it holds the layer (where R is nobody), as group root: R:0, 0710. */
        if (chown(dir, range, 0) < 0 || chmod(dir, 0710) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot prepare %s: %s", dir, strerror(errno));
        r = idmap_layers(&s, &layer, e);
        if (r < 0)
                return r;
        snprintf(opts, n, "lowerdir=%s,upperdir=/proc/self/fd/%d/upper,workdir=/proc/self/fd/%d/work", lower_at, layer, layer);
        return TAKE_FD(layer);
}

/* Mounts the overlay on the sandbox's rootfs: exactly the template version it records as the
 * lower layer (never another: its upper dir holds changes to that one), its upper dir, both
 * shown to the kernel in the sandbox's range. The shared lock keeps the version from being
 * removed between its path and the mount. */
static int mount_rootfs(struct engine *eng, const struct sandbox_rec *rec, uint32_t range, struct error *e) {
        char dir[4096], layer[4096], lower[4096], opts[12800], target[4200];
        _cleanup_close_ int lock = -1, layer_fd = -1;
        int r, q;

        lock = template_lock(eng->cfg.template_dir, false, e);
        if (lock < 0 && lock != -ENOENT) /* no template directory: template_rootfs says it is gone */
                return lock;
        r = template_rootfs(eng->cfg.template_dir, rec->template_name, rec->template_version, lower, sizeof(lower), e);
        if (r == -ENOENT) {
                char gone[sizeof(e->message)];

                snprintf(gone, sizeof(gone), "%s", e->message);
                return error_set(e, ENOENT, ERR_CONFLICT,
                                 "%s; sandbox %s was created on it and cannot start on another version (kill it)", gone, rec->id);
        }
        if (r < 0)
                return r;
        sandbox_dir(eng, rec->id, dir, sizeof(dir));
        if ((r = sandbox_layer_dir(eng, rec, layer, sizeof(layer), e)) < 0)
                return r;
        layer_fd = idmap_opts(eng, rec, dir, layer, lower, range, opts, sizeof(opts), e);
        if (layer_fd < 0)
                return layer_fd;
        snprintf(target, sizeof(target), "%s/rootfs", dir);
        /* Lifted for the mount: overlayfs makes its work dir then, and mounts read-only a
         * sandbox at its limit otherwise (disk.h); set again (or for the first time, after a
         * restart that changed nothing) before anything runs in it. */
        if (rec->disk_mb > 0 && (r = disk_layer_limit(eng->disk, rec->id, 0, e)) < 0)
                return r;
        r = mount("overlay", target, "overlay", MS_NODEV | MS_NOSUID, opts) < 0 ? -errno : 0; /* no_new_privs inside anyway */
        if (rec->disk_mb > 0 && (q = disk_layer_limit(eng->disk, rec->id, rec->disk_mb, e)) < 0) {
                if (r == 0)
                        (void) umount2(target, MNT_DETACH);
                return q;
        }
        if (r < 0)
                return error_set(e, -r, ERR_INTERNAL, "cannot mount the overlay for %s: %s", rec->id, strerror(-r));
        return 0;
}

static int listen_socket(const char *path, struct error *e) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return error_set(e, ENAMETOOLONG, ERR_INTERNAL, "socket path %s is too long", path);
        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return error_set(e, errno, ERR_INTERNAL, "socket: %s", strerror(errno));
        unlink(path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
                int r = error_set(e, errno, ERR_INTERNAL, "cannot listen on %s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        return fd;
}

/* The last line of the agent's log, to explain a start that failed. */
/* The last line of the agent's log (its last 64 KiB are read), as printable ASCII: the
 * sandbox can write to that log, and the line becomes part of an error reason that is
 * stored, logged and sent as JSON. */
#define LOG_TAIL_MAX (64 * 1024)

static void log_tail(const char *path, char *out, size_t n) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        char data[LOG_TAIL_MAX];
        struct stat st;
        ssize_t len;

        out[0] = 0;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return;
        len = pread(fd, data, sizeof(data), st.st_size > LOG_TAIL_MAX ? st.st_size - LOG_TAIL_MAX : 0);
        if (len <= 0)
                return;
        text_last_line(data, (size_t) len, out, n);
        for (char *p = out; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                        *p = '?';
}

/* The user namespace of the container at slot, owned by a host uid of its own (userns.h). */
static int make_userns(struct engine *eng, const struct net_slot *slot, uint32_t range, struct userns *ret, struct error *e) {
        struct userns_spec us = {
                .uid_base = range, .uid_count = (uint32_t) eng->cfg.uid_count,
                .inotify_instances = eng->cfg.sandbox_inotify_instances, .inotify_watches = eng->cfg.sandbox_inotify_watches,
        };

        if (userns_owner(eng->cfg.owner_uid_base, slot->ip, &us.owner) < 0)
                return error_set(e, EINVAL, ERR_INTERNAL, "the sandbox's address '%s' is not an IPv4 address", slot->ip);
        return userns_make(&us, ret, e);
}

/* The sandbox's /etc/resolv.conf, written at every start (create, resume) and bound over
 * the template's (a copy of the host's, naming a resolver the sandbox may not reach). Its
 * root (host uid range, this start's range: the file is bound, not seen through the idmapped
 * layers) owns it, so it can edit its own copy, as in Docker; the next start writes it anew. */
static int write_resolv_conf(struct engine *eng, const char *path, uint32_t range, struct error *e) {
        _cleanup_close_ int fd = -1;
        char text[256];
        size_t n;

        net_resolv_conf(eng->net, text, sizeof(text));
        n = strlen(text);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, text, n) != (ssize_t) n || fchown(fd, (uid_t) range, (gid_t) range) < 0 ||
            fchmod(fd, 0644) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
        return 0;
}

/* The agent's socket: listening here, returned to be handed in as fd 3; or, for a runtime
 * that cannot hand one in (runtime.h: takes_listen_fd), none (-EAGAIN): the agent makes it
 * in dir, its own (bound in), which only its root may reach besides host root. Whatever was
 * left at the path by the sandbox's previous run is removed first. */
static int agent_socket(const struct runtime *rt, const char *path, const char *dir, uint32_t range, struct error *e) {
        if (rt->ops->takes_listen_fd)
                return listen_socket(path, e);
        if (unlink(path) < 0 && errno != ENOENT)
                return error_set(e, errno, ERR_INTERNAL, "cannot remove %s: %s", path, strerror(errno));
        if (chown(dir, (uid_t) range, (gid_t) range) < 0 || chmod(dir, 0700) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot prepare %s: %s", dir, strerror(errno));
        return -EAGAIN;
}

/* Waits until the agent's socket accepts connections: at once when the engine made it, else
 * once the agent has made it and listens (bind and listen are two steps: in between, a
 * connection is refused), AGENT_UP_MS at most. Through O_PATH, as agent_stream.c connects. */
#define AGENT_UP_MS 10000

static bool socket_accepts(const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int node = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC), fd = -1;
        struct stat st;

        if (node < 0 || fstat(node, &st) < 0 || !S_ISSOCK(st.st_mode))
                return false;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", node);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
}

bool sandbox_agent_listens(struct engine *eng, const char *id) {
        char sock[4200];

        sandbox_socket_path(eng, id, sock, sizeof(sock));
        return socket_accepts(sock);
}

static int wait_socket(const char *path, struct error *e) {
        int64_t deadline = mono_ms() + AGENT_UP_MS;

        while (!socket_accepts(path)) {
                if (mono_ms() >= deadline)
                        return error_set(e, ETIMEDOUT, ERR_SANDBOX, "the agent did not listen at %s within %d ms", path, AGENT_UP_MS);
                usleep(5000);
        }
        return 0;
}

struct runtime *sandbox_runtime(struct engine *eng, const char *kind, struct error *e) {
        const char *k = kind && *kind ? runtime_kind_of(kind) : eng->runtime->ops->kind;

        for (size_t i = 0; k && i < ENGINE_RUNTIMES; i++)
                if (eng->runtimes[i] && streq(eng->runtimes[i]->ops->kind, k))
                        return eng->runtimes[i];
        if (!k)
                error_set(e, EINVAL, ERR_BAD_REQUEST, "unknown runtime '%s' (runc or gvisor)", kind);
        else
                error_set(e, ENOENT, ERR_BAD_REQUEST, "runtime '%s' is not available on this engine (%s is not installed)", k,
                          streq(k, "gvisor") ? "runsc" : k);
        return NULL;
}

int sandbox_container_status(struct engine *eng, const struct sandbox_rec *rec, enum container_status *ret, pid_t *ret_pid,
                             struct error *e) {
        struct error ignore = {0};
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, &ignore);

        if (!rt) {
                *ret = CONTAINER_MISSING;
                *ret_pid = 0;
                return 0;
        }
        return rt->ops->status(rt, rec->id, ret, ret_pid, e);
}

/* The agent answers its health check; wait: first until its socket accepts (the agent makes
 * it, not the engine). logpath: its log, whose last line goes into the error. */
static int agent_up(const char *sock, bool wait, const char *logpath, struct error *e) {
        json_t *answer = NULL;
        long status = 0;
        char tail[400];
        int r;

        r = wait ? wait_socket(sock, e) : 0;
        if (r >= 0)
                r = agent_call(sock, "GET", "/health", NULL, 10000, &answer, &status, e);
        json_decref(answer);
        if (r < 0 || status != 200) {
                log_tail(logpath, tail, sizeof(tail));
                if (r >= 0)
                        error_set(e, EIO, ERR_SANDBOX, "health check answered HTTP %ld", status);
                return error_wrap(e, "the sandbox's agent did not come up%s%s", *tail ? " (" : "", *tail ? tail : "");
        }
        return 0;
}

/* Whether the rootfs's /tmp is a directory, not a symlink or anything else the sandbox may
 * have put there: the runtime resolves a bind's source on the host, so it must not be led
 * anywhere. Asked while no process of the sandbox runs (before its container starts), so
 * nothing can change it between this look and the runtime's. A sandbox that replaced its /tmp
 * gets no bind (the runtime's own /tmp, or none), never a host path. */
static bool rootfs_tmp_is_dir(const char *rootfs) {
        _cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int fd = -1;

        if (root < 0)
                return false;
        fd = openat(root, "tmp", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                log_warn("%s/tmp is not a directory (the sandbox replaced it?): no /tmp bound", rootfs);
        return fd >= 0;
}

static int start_container(struct engine *eng, const char *id, const struct sandbox_rec *rec, const struct net_slot *slot,
                           uint32_t range, struct error *e) {
        char dir[4096], bundle[4200], rootfs[4200], cgroup[256], sock[4200], logpath[4200], tail[400], resolv[4200];
        char socket_dir[4200], tmp[4200];
        _cleanup_close_ int lfd = -1, logfd = -1;
        _cleanup_(userns_release) struct userns ns = {.pid = 0, .hold_fd = -1};
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, e);
        int r;

        if (!rt)
                return -ENOENT;
        sandbox_dir(eng, id, dir, sizeof(dir));
        snprintf(bundle, sizeof(bundle), "%s/bundle", dir);
        snprintf(rootfs, sizeof(rootfs), "%s/rootfs", dir);
        runtime_cgroup_path(rt, id, cgroup, sizeof(cgroup));
        snprintf(logpath, sizeof(logpath), "%s/agent.log", dir);
        snprintf(resolv, sizeof(resolv), "%s/resolv.conf", dir);
        sandbox_socket_path(eng, id, sock, sizeof(sock));
        snprintf(socket_dir, sizeof(socket_dir), "%s/%s", eng->run_sandboxes_dir, id);

        r = write_resolv_conf(eng, resolv, range, e);
        if (r < 0)
                return r;
        if (rt->ops->joins_userns && (r = make_userns(eng, slot, range, &ns, e)) < 0)
                return r;
        struct bundle_spec spec = {
                .id = id, .bundle_dir = bundle, .rootfs = rootfs, .agent = eng->cfg.agent, .userns_path = rt->ops->joins_userns ? ns.path : NULL,
                .sysfs = rt->ops->binds_sysfs ? slot->sysfs_path : NULL, .resolv_conf = resolv, .cgroup_path = cgroup, .uid_base = range,
                .uid_count = eng->cfg.uid_count,
                .memory_mb = rec->memory_mb, .pids = eng->cfg.default_pids, .ptys = eng->cfg.sandbox_ptys,
                .cpu_count = rec->cpu_count, .cpu_shares = sandbox_is_pooled(rec) ? POOL_CPU_SHARES : 0, .open_files = rt->ops->rlimits_in_spec ? eng->cfg.sandbox_open_files : 0,
        };
        if (!rt->ops->takes_listen_fd)
                spec.socket_dir = socket_dir;
        if (rt->ops->netns_in_spec)
                spec.netns_path = slot->netns_path;
        if (rt->ops->tmp_in_spec && rootfs_tmp_is_dir(rootfs)) {
                snprintf(tmp, sizeof(tmp), "%s/tmp", rootfs);
                spec.tmp_dir = tmp;
        }
        r = bundle_write(&spec, e);
        if (r < 0)
                return r;
        lfd = agent_socket(rt, sock, socket_dir, range, e);
        if (lfd < 0 && lfd != -EAGAIN)
                return lfd;
        logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot open %s: %s", logpath, strerror(errno));
        struct runtime_start start = {.bundle = bundle, .listen_fd = lfd >= 0 ? lfd : -1, .log_fd = logfd, .netns_path = slot->netns_path,
                                      .open_files = (unsigned long) eng->cfg.sandbox_open_files};
        r = rt->ops->start(rt, id, &start, e);
        userns_release(&ns); /* the container's processes hold the namespace now */
        if (r < 0) {
                log_tail(logpath, tail, sizeof(tail));
                return error_wrap(e, "%s%s%s", "cannot start the container", *tail ? ": " : "", tail);
        }
        return agent_up(sock, !rt->ops->takes_listen_fd, logpath, e);
}

int sandbox_restore_container(struct engine *eng, const struct sandbox_rec *rec, const char *image_dir, struct error *e) {
        char dir[4096], bundle[4200], sock[4200], logpath[4200], tail[400];
        _cleanup_close_ int logfd = -1;
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, e);
        struct net_slot slot;
        int r;

        if (!rt)
                return -ENOENT;
        if (!rt->ops->restore)
                return error_set(e, ENOTSUP, ERR_INTERNAL, "runtime %s cannot restore a checkpoint", rt->ops->name);
        sandbox_dir(eng, rec->id, dir, sizeof(dir));
        snprintf(bundle, sizeof(bundle), "%s/bundle", dir);
        snprintf(logpath, sizeof(logpath), "%s/agent.log", dir);
        sandbox_socket_path(eng, rec->id, sock, sizeof(sock));
        net_slot_paths(eng->net, rec->id, &slot);
        r = net_slot_readdress(eng->net, rec->id, rec->ip, e);
        if (r < 0)
                return r;
        logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot open %s: %s", logpath, strerror(errno));
        struct runtime_start start = {.bundle = bundle, .listen_fd = -1, .log_fd = logfd, .netns_path = slot.netns_path,
                                      .open_files = (unsigned long) eng->cfg.sandbox_open_files};
        r = rt->ops->restore(rt, rec->id, &start, image_dir, e);
        if (r < 0) {
                log_tail(logpath, tail, sizeof(tail));
                return error_wrap(e, "%s%s%s", "cannot restore the container", *tail ? ": " : "", tail);
        }
        /* The agent was told to close its socket before the checkpoint (sandbox_agent_quiet). */
        r = rt->ops->signal(rt, rec->id, SIGUSR2, e);
        return r < 0 ? r : agent_up(sock, true, logpath, e);
}

/* Until the agent's socket file is gone (agent/main.c: it removes it last, once its listener
 * and connections are closed), AGENT_UP_MS at most. */
int sandbox_agent_quiet(struct engine *eng, const struct sandbox_rec *rec, struct error *e) {
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, e);
        int64_t deadline = mono_ms() + AGENT_UP_MS;
        char sock[4200];
        struct stat st;
        int r;

        if (!rt)
                return -ENOENT;
        sandbox_socket_path(eng, rec->id, sock, sizeof(sock));
        r = rt->ops->signal(rt, rec->id, SIGUSR1, e);
        if (r < 0)
                return r;
        while (lstat(sock, &st) == 0) {
                if (mono_ms() >= deadline)
                        return error_set(e, ETIMEDOUT, ERR_SANDBOX, "the agent did not close its socket within %d ms", AGENT_UP_MS);
                usleep(5000);
        }
        return 0;
}

int sandbox_agent_wake(struct engine *eng, const struct sandbox_rec *rec, struct error *e) {
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, e);
        char dir[4096], sock[4200], logpath[4200];
        int r;

        if (!rt)
                return -ENOENT;
        sandbox_dir(eng, rec->id, dir, sizeof(dir));
        snprintf(logpath, sizeof(logpath), "%s/agent.log", dir);
        sandbox_socket_path(eng, rec->id, sock, sizeof(sock));
        r = rt->ops->signal(rt, rec->id, SIGUSR2, e);
        return r < 0 ? r : agent_up(sock, true, logpath, e);
}

void sandbox_stop_parts(struct engine *eng, const char *id, const char *ip) {
        char dir[4096], path[4200];
        struct net_slot slot;
        struct error e = {0};

        /* Every runtime's: the caller may not know which ran it (an orphan), and asking one
         * that never did costs a stat. */
        for (size_t i = 0; i < ENGINE_RUNTIMES; i++)
                if (eng->runtimes[i] && eng->runtimes[i]->ops->destroy(eng->runtimes[i], id, &e) < 0)
                        log_warn("%s, ignoring", e.message);
        net_slot_adopt(eng->net, id, ip, false, NULL, &slot);
        net_slot_release(eng->net, &slot);
        sandbox_dir(eng, id, dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/rootfs", dir);
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                log_warn_errno(errno, "cannot unmount %s, ignoring", path);
        snprintf(path, sizeof(path), "%s/lower", dir);
        (void) idmap_unmount(path);
}

void sandbox_teardown(struct engine *eng, const char *id, const char *ip) {
        char dir[4096], path[4200];
        int r;

        sandbox_stop_parts(eng, id, ip);
        sandbox_dir(eng, id, dir, sizeof(dir));
        r = rm_rf(dir);
        if (r < 0)
                log_warn_errno(r, "cannot remove %s, ignoring", dir);
        disk_layer_remove(eng->disk, id);
        snprintf(path, sizeof(path), "%s/%s", eng->run_sandboxes_dir, id);
        r = rm_rf(path);
        if (r < 0)
                log_warn_errno(r, "cannot remove %s, ignoring", path);
}

/* The list name of the record's network_rules JSON into v (validated by the API at create). */
static int rules_list(json_t *rules, const char *name, struct strv *v) {
        json_t *item;
        size_t i;

        json_array_foreach(json_object_get(rules, name), i, item)
                if (json_is_string(item) && strv_push(v, strdup(json_string_value(item))) < 0)
                        return -ENOMEM;
        return 0;
}

/* A sandbox's rules of its own, from its record, into allow and deny. */
static int rules_of(const struct sandbox_rec *rec, struct strv *allow, struct strv *deny, struct error *e) {
        json_t *rules;
        int r;

        if (!rec->network_rules || !*rec->network_rules)
                return 0;
        rules = json_loads(rec->network_rules, 0, NULL);
        if (!rules)
                return error_set(e, EINVAL, ERR_INTERNAL, "the network rules of %s are not JSON", rec->id);
        r = rules_list(rules, "allow_out", allow);
        if (r >= 0)
                r = rules_list(rules, "deny_out", deny);
        json_decref(rules);
        return r < 0 ? error_set(e, -r, ERR_INTERNAL, "out of memory") : 0;
}

void sandbox_net_adopt(struct engine *eng, const struct sandbox_rec *rec) {
        _cleanup_(strv_done) struct strv allow = {0}, deny = {0};
        struct net_slot slot;
        struct net_rules rules;
        struct error e = {0};

        if (rules_of(rec, &allow, &deny, &e) < 0)
                log_warn("%s, ignoring", e.message);
        rules = (struct net_rules){allow.v, (unsigned) allow.n, deny.v, (unsigned) deny.n};
        net_slot_adopt(eng->net, rec->id, rec->ip, rec->allow_internet_access, &rules, &slot);
}

int sandbox_start_parts(struct engine *eng, struct sandbox_rec *rec, struct error *e) {
        _cleanup_(strv_done) struct strv allow = {0}, deny = {0};
        struct net_slot slot = {0};
        struct net_rules rules;
        uint32_t range;
        int r;

        rec->ip[0] = 0;
        /* Created under a larger max-memory-mb (resume after a restart that lowered it): it
         * gets the cap, and its record says so. */
        if (rec->memory_mb > eng->cfg.max_memory_mb) {
                log_warn("%s asks for %lld MiB of memory, above max-memory-mb: it gets %lld MiB", rec->id,
                         (long long) rec->memory_mb, (long long) eng->cfg.max_memory_mb);
                rec->memory_mb = eng->cfg.max_memory_mb;
        }
        if ((r = rules_of(rec, &allow, &deny, e)) < 0)
                goto fail;
        rules = (struct net_rules){allow.v, (unsigned) allow.n, deny.v, (unsigned) deny.n};
        r = net_slot_acquire(eng->net, rec->id, rec->allow_internet_access, &rules, &slot, e);
        if (r < 0)
                goto fail; /* it gave its address back itself */
        /* Recorded before the container starts: a restarted engine must know which address
         * a container it finds running holds. */
        snprintf(rec->ip, sizeof(rec->ip), "%s", slot.ip);
        /* The uid range goes with the address, which is this sandbox's alone while it runs. */
        if (idmap_range(eng->cfg.uid_ranges_base, eng->cfg.uid_count, eng->cfg.uid_ranges, slot.ip, &range) < 0) {
                r = error_set(e, EINVAL, ERR_INTERNAL, "the sandbox's address '%s' is not an IPv4 address", slot.ip);
                goto fail;
        }
        /* (A pooled sandbox has no row to record it in: reconcile removes it whole.) */
        /* Its firewall chain, if it has rules of its own, is being made meanwhile: waited
         * for before anyone gets the sandbox (net.h). */
        if ((!sandbox_is_pooled(rec) && (r = store_sandbox_update(eng->store, rec, e)) < 0) || (r = mount_rootfs(eng, rec, range, e)) < 0 ||
            (r = start_container(eng, rec->id, rec, &slot, range, e)) < 0 || (r = net_slot_rules_wait(eng->net, &slot, e)) < 0)
                goto fail;
        return 0;
fail:
        (void) net_slot_rules_wait(eng->net, &slot, NULL);
        sandbox_stop_parts(eng, rec->id, *rec->ip ? rec->ip : NULL);
        rec->ip[0] = 0;
        return r;
}

int sandbox_rec_new(struct engine *eng, int64_t team_id, const struct sandbox_create_opts *o, struct sandbox_rec *rec,
                    struct error *e) {
        int64_t now = now_ms();
        int r;

        *rec = (struct sandbox_rec){.team_id = team_id, .state = SANDBOX_CREATING, .created_at = now, .last_activity = now};
        r = sandbox_id_new(rec->id);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot make a sandbox id: %s", strerror(-r));
        snprintf(rec->template_name, sizeof(rec->template_name), "%s", o->template_name ? o->template_name : "base");
        rec->timeout = o->timeout;
        rec->deadline = o->timeout > 0 ? now + o->timeout * 1000 : 0;
        rec->idle_timeout = eng->cfg.idle_timeout;
        snprintf(rec->node, sizeof(rec->node), "%s", eng->cfg.node_name);
        rec->metadata = strdup(o->metadata ? o->metadata : "{}");
        rec->envs = strdup(o->envs ? o->envs : "{}");
        rec->cpu_count = o->cpu_count > 0 ? o->cpu_count : 1;
        rec->memory_mb = o->memory_mb > 0 ? o->memory_mb : eng->cfg.default_memory_mb;
        rec->disk_mb = !eng->disk ? 0 : o->disk_mb > 0 ? o->disk_mb : eng->cfg.default_disk_mb; /* 0: unlimited */
        rec->allow_internet_access = o->allow_internet_access < 0 ? eng->cfg.internet_access : o->allow_internet_access > 0;
        rec->network_rules = strdup(o->network_rules ? o->network_rules : "");
        snprintf(rec->runtime, sizeof(rec->runtime), "%s", o->runtime && *o->runtime ? runtime_kind_of(o->runtime) : eng->runtime->ops->kind);
        if (!rec->network_rules)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        if (o->secure) {
                _Static_assert(sizeof(rec->traffic_token) > TRAFFIC_TOKEN_LEN, "traffic_token too small");
                r = traffic_token_new(rec->traffic_token);
                if (r < 0)
                        return error_set(e, r, ERR_INTERNAL, "cannot make a traffic token: %s", strerror(-r));
        }
        if (!rec->metadata || !rec->envs)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        return 0;
}

int sandbox_create(struct engine *eng, int64_t team_id, const struct sandbox_create_opts *o, struct sandbox_rec *ret,
                   struct error *e) {
        struct sandbox_rec rec;
        int64_t t0 = mono_ms();
        int r;

        r = node_check_accepting(eng, e); /* a cordoned node takes no new sandboxes */
        if (r < 0)
                return r;
        if (!sandbox_runtime(eng, o->runtime, e)) /* before anything is made: a plain 400 */
                return -EINVAL;
        r = pool_take(eng, team_id, o, ret, e); /* 1: handed out; 0: none fits, made cold below */
        if (r != 0)
                return r < 0 ? r : 0;
        r = sandbox_rec_new(eng, team_id, o, &rec, e);
        if (r < 0)
                goto fail_rec;
        r = insert_on_current(eng, &rec, e);
        if (r < 0)
                goto fail_rec;

        sandbox_lock(eng, rec.id);
        if ((r = sandbox_make_dirs(eng, &rec, e)) < 0 || (r = sandbox_start_parts(eng, &rec, e)) < 0) {
                error_wrap(e, "cannot create sandbox %s", rec.id);
                log_warn("%s", e->message);
                sandbox_teardown(eng, rec.id, NULL); /* the address is already given back */
                sandbox_forget_or_warn(eng, rec.id);
                sandbox_unlock(eng, rec.id);
                goto fail_rec;
        }
        rec.state = SANDBOX_RUNNING;
        rec.started_at = rec.last_activity = now_ms();
        r = store_sandbox_update(eng->store, &rec, e);
        sandbox_unlock(eng, rec.id);
        if (r < 0) {
                sandbox_kill(eng, -1, rec.id, "its state could not be recorded", NULL);
                goto fail_rec;
        }
        log_info("created %s (template %s version %s, ip %s) in %lld ms", rec.id, rec.template_name,
                 *rec.template_version ? rec.template_version : TEMPLATE_LEGACY, rec.ip, (long long) (mono_ms() - t0));
        node_refresh(eng); /* placement on the other nodes sees this one at once */
        *ret = rec;
        return 0;

fail_rec:
        sandbox_rec_done(&rec);
        return r;
}

int sandbox_get(struct engine *eng, int64_t team_id, const char *id, struct sandbox_rec *ret, struct error *e) {
        int r = store_sandbox_get(eng->store, id, ret, e);

        if (r == -ENOENT)
                return error_set(e, ENOENT, ERR_NOT_FOUND, "sandbox %s not found", id);
        if (r < 0)
                return r;
        if (team_id >= 0 && ret->team_id != team_id) {
                sandbox_rec_done(ret);
                return error_set(e, ENOENT, ERR_NOT_FOUND, "sandbox %s not found", id);
        }
        if (ret->state == SANDBOX_KILLED) {
                char when[RFC3339_LEN + 1];
                format_rfc3339(ret->killed_at, when);
                sandbox_rec_done(ret);
                return error_set(e, ENOENT, ERR_NOT_FOUND, "sandbox %s not found: it was killed at %s", id, when);
        }
        return 0;
}

int sandbox_get_local(struct engine *eng, int64_t team_id, const char *id, struct sandbox_rec *ret, struct error *e) {
        int r = sandbox_get(eng, team_id, id, ret, e);

        if (r < 0)
                return r;
        r = node_check_local(eng, ret, e);
        if (r < 0)
                sandbox_rec_done(ret);
        return r;
}

/* Kills the sandbox of rec, whose lock the caller holds, from whatever state it is in. */
static int kill_locked(struct engine *eng, struct sandbox_rec *rec, const char *reason, struct error *e) {
        int r;

        sandbox_teardown(eng, rec->id, rec->ip);
        rec->state = SANDBOX_KILLED;
        rec->killed_at = now_ms();
        rec->ip[0] = 0;
        r = store_sandbox_update(eng->store, rec, e);
        if (r < 0)
                return r;
        log_info("killed %s (%s)", rec->id, reason);
        return 0;
}

int sandbox_kill(struct engine *eng, int64_t team_id, const char *id, const char *reason, struct error *e) {
        struct sandbox_rec rec;
        int r;

        sandbox_lock(eng, id);
        r = sandbox_get_local(eng, team_id, id, &rec, e);
        if (r >= 0) {
                r = kill_locked(eng, &rec, reason, e);
                sandbox_rec_done(&rec);
        }
        sandbox_unlock(eng, id);
        return r;
}

/* Why the reaper should kill the sandbox of r at now, or NULL: it is running and past its
 * end_at. An open stream is activity: a sandbox without a deadline is touched instead of
 * being reaped as idle (one with a deadline dies at it, streams or not). */
static const char *reap_reason(struct engine *eng, const struct sandbox_rec *r, int64_t now) {
        if (r->state != SANDBOX_RUNNING || sandbox_end_at(r) > now)
                return NULL;
        if (r->deadline > 0)
                return "its timeout passed";
        if (sandbox_streams(eng, r->id) > 0) {
                sandbox_touch(eng, r->id);
                return NULL;
        }
        return "it was idle for longer than its idle timeout";
}

int sandbox_reap(struct engine *eng, const char *id, int64_t now, struct error *e) {
        struct sandbox_rec rec;
        const char *reason;
        int r;

        sandbox_lock(eng, id);
        r = store_sandbox_get(eng->store, id, &rec, e);
        if (r < 0) {
                sandbox_unlock(eng, id);
                return r == -ENOENT ? 0 : r;
        }
        /* Decided again under the lock: the sandbox may have been paused, given a new
         * timeout or used since the reaper's query. (Only this node's: the query asked.) */
        reason = streq(rec.node, eng->cfg.node_name) ? reap_reason(eng, &rec, now) : NULL;
        r = reason ? kill_locked(eng, &rec, reason, e) : 0;
        sandbox_rec_done(&rec);
        sandbox_unlock(eng, id);
        return r;
}

int sandbox_set_timeout(struct engine *eng, int64_t team_id, const char *id, int64_t timeout, struct sandbox_rec *ret, struct error *e) {
        int r;

        /* The API caps longer ones; anything else out of range is a caller's mistake. */
        if (timeout < 1 || timeout > SANDBOX_MAX_TIMEOUT)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "timeout must be between 1 and %d seconds (24 h), got %lld",
                                 SANDBOX_MAX_TIMEOUT, (long long) timeout);
        sandbox_lock(eng, id);
        r = sandbox_get_local(eng, team_id, id, ret, e);
        if (r >= 0) {
                ret->timeout = timeout;
                ret->last_activity = now_ms();
                /* A paused sandbox has no deadline: it starts again at resume, this long. */
                ret->deadline = ret->state == SANDBOX_PAUSED ? 0 : ret->last_activity + timeout * 1000;
                r = store_sandbox_update(eng->store, ret, e);
                if (r < 0)
                        sandbox_rec_done(ret);
        }
        sandbox_unlock(eng, id);
        return r;
}

void sandbox_save_or_warn(struct engine *eng, const struct sandbox_rec *rec) {
        struct error e = {0};

        if (store_sandbox_update(eng->store, rec, &e) < 0)
                log_warn("cannot record sandbox %s as %s: %s; the next start of the engine reconciles it", rec->id,
                         sandbox_state_to_string(rec->state), e.message);
}

void sandbox_forget_or_warn(struct engine *eng, const char *id) {
        struct error e = {0};

        if (store_sandbox_delete(eng->store, id, &e) < 0)
                log_warn("cannot forget sandbox %s: %s; the next start of the engine reconciles it", id, e.message);
}

void sandbox_touch(struct engine *eng, const char *id) {
        struct error e = {0};

        if (store_sandbox_touch(eng->store, id, now_ms(), &e) < 0)
                log_warn("%s, ignoring", e.message);
}

json_t *sandbox_envs_merged(const struct sandbox_rec *rec, json_t *request_envs) {
        json_t *envs = json_loads(rec->envs ? rec->envs : "{}", 0, NULL);

        if (!json_is_object(envs)) {
                json_decref(envs);
                envs = json_object();
        }
        if (json_is_object(request_envs))
                json_object_update(envs, request_envs);
        return envs;
}

int sandbox_check_alive(struct engine *eng, const char *id, struct error *e) {
        enum container_status st = CONTAINER_MISSING;
        struct sandbox_rec rec;
        char dir[4096], logpath[4200], tail[300];
        struct error ignore = {0};
        pid_t pid;
        int r = 0;

        sandbox_lock(eng, id);
        if (store_sandbox_get(eng->store, id, &rec, &ignore) < 0) {
                sandbox_unlock(eng, id);
                return 0;
        }
        if (rec.state == SANDBOX_RUNNING && streq(rec.node, eng->cfg.node_name) && sandbox_container_status(eng, &rec, &st, &pid, &ignore) == 0 &&
            st != CONTAINER_RUNNING) {
                sandbox_dir(eng, id, dir, sizeof(dir));
                snprintf(logpath, sizeof(logpath), "%s/agent.log", dir);
                log_tail(logpath, tail, sizeof(tail));
                snprintf(rec.error, sizeof(rec.error), "the sandbox's agent (its init process) exited%s%s%s",
                         *tail ? " (last log line: " : "", tail, *tail ? ")" : "");
                log_warn("%s: %s; marking it as error", id, rec.error);
                sandbox_stop_parts(eng, id, rec.ip);
                rec.state = SANDBOX_ERROR;
                rec.ip[0] = 0;
                sandbox_save_or_warn(eng, &rec);
                r = error_set(e, EPIPE, ERR_SANDBOX, "sandbox %s is in error: %s", id, rec.error);
        } else if (rec.state == SANDBOX_PAUSED || rec.state == SANDBOX_PAUSING || rec.state == SANDBOX_RESUMING)
                /* Paused under a call (its container stopped or froze meanwhile). */
                r = error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s is %s, not running", id, sandbox_state_to_string(rec.state));
        sandbox_rec_done(&rec);
        sandbox_unlock(eng, id);
        return r;
}

