/* idmap.c — see idmap.h. An idmapped mount takes its mapping from a user namespace: a file
 * owned by on-disk uid u is shown as the host uid that u inside that namespace maps to. So the
 * namespace maps canonical + i (inside) to R + i (outside), and 0 to 0: overlayfs creates its
 * work directory and every copied-up file as its mounter (root, with the mounter's
 * credentials) before giving them their owner, and an unmapped creator fails (EOVERFLOW, and
 * overlayfs then mounts read-only). The namespace is kept as an fd for the two mount_setattr
 * calls, then dropped: each mount holds its own reference.
 */
#include "sandbox/idmap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

int idmap_range(int64_t base, int64_t count, int64_t nranges, const char *ip, uint32_t *ret) {
        struct in_addr in;

        if (!ip || nranges < 1 || inet_pton(AF_INET, ip, &in) != 1)
                return -EINVAL;
        *ret = (uint32_t) (base + (int64_t) ((ntohl(in.s_addr) & 0xffffffu) % (uint64_t) nranges) * count);
        return 0;
}

/* The raw call: libc's _exit may be intercepted (a sanitizer's exit hooks would run on this
 * child's small stack, in the engine's memory). */
static int exit_at_once(void *arg) {
        (void) syscall(SYS_exit, 0);
        return 0;
}

static int write_map(pid_t pid, const char *which, const char *map) {
        char path[64];
        _cleanup_close_ int fd = -1;
        ssize_t k;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, which);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        k = write(fd, map, strlen(map));
        return k == (ssize_t) strlen(map) ? 0 : k < 0 ? -errno : -EIO;
}

/* A user namespace mapping canonical.. to range.. and 0 to 0, as an fd. A child is cloned into
 * a new namespace and exits at once: CLONE_VFORK makes this thread wait for that exit (the
 * child runs first, and touches nothing but the stack below), CLONE_VM spares copying the
 * engine's page tables. The maps are written and the namespace opened while the child is a
 * zombie (its credentials, which hold the namespace, live until it is reaped), then it is
 * reaped: no round trip through the scheduler, unlike a forked child that waits on a pipe
 * (userns.c's way, which costs more than the rest of the mount: bench/README.md). */
static int idmap_userns(const struct idmap_spec *s, struct error *e) {
        char stack[16384] __attribute__((aligned(16))), map[96], path[64];
        int fd = -1, r = 0;
        pid_t pid;

        snprintf(map, sizeof(map), "0 0 1\n%u %u %u\n", s->canonical, s->range, s->count);
        pid = clone(exit_at_once, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | CLONE_NEWUSER | SIGCHLD, NULL);
        if (pid < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot make the idmapping of %s: clone: %s", s->id, strerror(errno));
        if ((r = write_map(pid, "uid_map", map)) < 0 || (r = write_map(pid, "gid_map", map)) < 0)
                error_set(e, r, ERR_INTERNAL, "cannot write the idmapping of %s (%u to %u): %s", s->id, s->canonical, s->range,
                          strerror(-r));
        else {
                snprintf(path, sizeof(path), "/proc/%d/ns/user", (int) pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        r = error_set(e, errno, ERR_INTERNAL, "cannot open %s for the idmapping of %s: %s", path, s->id,
                                      strerror(errno));
        }
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return r < 0 ? r : fd;
}

/* A detached clone of path, idmapped by userns_fd, with the extra attributes attr. */
static int idmapped_clone(const char *path, int userns_fd, uint64_t attr, const char *id, struct error *e) {
        struct mount_attr a = {.attr_set = MOUNT_ATTR_IDMAP | attr, .userns_fd = (uint64_t) userns_fd};
        _cleanup_close_ int fd = -1;

        fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (fd < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot clone %s for %s: %s", path, id, strerror(errno));
        if (mount_setattr(fd, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot idmap %s for %s: %s%s", path, id, strerror(errno),
                                 errno == EINVAL ? " (idmapped mounts need Linux >= 5.12, on overlayfs layers >= 5.19)" : "");
        return TAKE_FD(fd);
}

int idmap_layers(const struct idmap_spec *s, int *ret_layer_fd, struct error *e) {
        _cleanup_close_ int ns = -1, lower = -1, layer = -1;

        if (mkdir(s->lower_at, 0700) < 0 && errno != EEXIST)
                return error_set(e, errno, ERR_INTERNAL, "cannot create %s: %s", s->lower_at, strerror(errno));
        if ((ns = idmap_userns(s, e)) < 0)
                return ns;
        /* Read-only, so that nothing can write to the template through the clone (the
         * overlay never does; a tree walk that missed it as a mount point would fail). */
        if ((lower = idmapped_clone(s->lower, ns, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, s->id, e)) < 0)
                return lower;
        if ((layer = idmapped_clone(s->layer, ns, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, s->id, e)) < 0)
                return layer;
        if (move_mount(lower, "", AT_FDCWD, s->lower_at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot attach the idmapped template of %s on %s: %s", s->id, s->lower_at,
                                 strerror(errno));
        *ret_layer_fd = TAKE_FD(layer);
        return 0;
}

int idmap_unmount(const char *lower_at) {
        /* A crash between attaching and recording may have stacked more than one. */
        for (int i = 0; i < 8; i++)
                if (umount2(lower_at, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
                        int r = errno;

                        if (r == EINVAL || r == ENOENT)
                                return 0; /* not (or no longer) a mount point */
                        log_warn_errno(r, "cannot unmount %s", lower_at);
                        return -r;
                }
        log_warn("%s is still a mount point after 8 unmounts", lower_at);
        return -EBUSY;
}
