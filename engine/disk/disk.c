/* disk.c — the disk volume and the sandboxes' limited layers (see disk.h).
 *
 * The volume is set up once per state directory and then only found: at start the engine
 * looks for it mounted at STATE/disk; if it is not, it looks for a loop device already
 * backed by the image (a volume unmounted by `net remove --force` while sandboxes ran stays
 * alive on it, and attaching the image a second time would mount one btrfs twice) and
 * attaches one only if there is none. The image is made under a temporary name and renamed
 * into place once mkfs.btrfs has finished, so a crash never leaves a half-made image at
 * STATE/disk.img. Every descriptor is O_CLOEXEC; the loop device's is closed once the mount
 * holds it (the auto-clear flag then detaches it when the file system goes).
 */
#include "disk/disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/btrfs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "spawn.h"

#define MIB (1024 * 1024LL)
#define MIN_IMAGE_MB 256
#define BTRFS_MAGIC 0x9123683EL
#define SUBVOL_ROOT_INO 256 /* BTRFS_FIRST_FREE_OBJECTID: every subvolume's root inode */
#ifndef BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA
#define BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA 4 /* Linux 6.7 */
#endif
#define MOUNT_OPTIONS "discard=async" /* freed space goes back to the host: the loop device punches holes */

static bool is_btrfs_mount(const char *dir, const char *parent) {
        struct stat a, b;
        struct statfs f;

        return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev && statfs(dir, &f) == 0 &&
               (long) f.f_type == BTRFS_MAGIC;
}

/* Half the free space of the file system holding dir, in MiB, at least MIN_IMAGE_MB. */
static int64_t default_image_mb(const char *dir) {
        struct statvfs v;
        int64_t half;

        if (statvfs(dir, &v) < 0)
                return MIN_IMAGE_MB;
        half = (int64_t) ((unsigned long long) v.f_bavail * v.f_frsize / 2 / MIB);
        return half < MIN_IMAGE_MB ? MIN_IMAGE_MB : half;
}

/* A sparse image of size_mb with an empty btrfs, made at a temporary path and renamed to
 * d->image. Metadata single, not DUP: two copies in one file guard against nothing. */
static int make_image(struct disk *d, int64_t size_mb, struct error *e) {
        char tmp[4200], msg[512] = "";
        char *argv[] = {"mkfs.btrfs", "-q", "-f", "-m", "single", "-d", "single", "-L", "ai2in-disk", tmp, NULL};
        int fd, r;

        snprintf(tmp, sizeof(tmp), "%s.new", d->image);
        (void) unlink(tmp); /* left by a start that died while making it */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot create the disk image %s: %s", tmp, strerror(errno));
        r = ftruncate(fd, (off_t) (size_mb * MIB)) < 0 ? -errno : 0;
        close(fd);
        if (r < 0) {
                (void) unlink(tmp);
                return error_set(e, -r, ERR_INTERNAL, "cannot size the disk image %s: %s", tmp, strerror(-r));
        }
        r = spawn_check(argv, msg, sizeof(msg));
        if (r >= 0 && rename(tmp, d->image) < 0)
                r = -errno, snprintf(msg, sizeof(msg), "rename: %s", strerror(errno));
        if (r < 0) {
                (void) unlink(tmp);
                return error_set(e, -r, ERR_INTERNAL, "cannot make the disk volume's file system (mkfs.btrfs, package btrfs-progs): %s",
                                 msg);
        }
        log_info("made the disk volume %s: %lld MiB, sparse (it takes the host's space only as sandboxes write)", d->image,
                 (long long) size_mb);
        return 0;
}

/* The loop device already backed by the image st names, into dev; -ENOENT if none. */
static int find_loop(const struct stat *st, char *dev, size_t n) {
        DIR *dir = opendir("/sys/block");
        struct dirent *de;
        int r = -ENOENT;

        while (dir && r < 0 && (de = readdir(dir))) {
                struct loop_info64 info;
                char bound[300];
                int fd;

                if (strncmp(de->d_name, "loop", 4) != 0)
                        continue;
                snprintf(bound, sizeof(bound), "/sys/block/%s/loop", de->d_name);
                if (access(bound, F_OK) < 0) /* not attached */
                        continue;
                snprintf(dev, n, "/dev/%s", de->d_name);
                fd = open(dev, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                if (ioctl(fd, LOOP_GET_STATUS64, &info) == 0 && info.lo_inode == st->st_ino && info.lo_device == st->st_dev)
                        r = 0;
                close(fd);
        }
        if (dir)
                closedir(dir);
        return r;
}

/* Attaches img_fd to a free loop device (auto-clearing, direct I/O: the host's page cache
 * does not hold the volume's blocks a second time); its path into dev, its fd returned. */
static int attach_loop(const char *image, int img_fd, char *dev, size_t n, struct error *e) {
        _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        int err = 0;

        if (ctl < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot open /dev/loop-control (the disk volume needs a loop device): %s",
                                 strerror(errno));
        for (int tries = 0; tries < 16; tries++) { /* another process may take the free one first */
                struct loop_config c = {.fd = (unsigned) img_fd, .info = {.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO}};
                int nr = ioctl(ctl, LOOP_CTL_GET_FREE), fd;

                if (nr < 0)
                        return error_set(e, errno, ERR_INTERNAL, "no free loop device for the disk volume: %s", strerror(errno));
                snprintf(dev, n, "/dev/loop%d", nr);
                snprintf((char *) c.info.lo_file_name, sizeof(c.info.lo_file_name), "%s", image);
                fd = open(dev, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                        return error_set(e, errno, ERR_INTERNAL, "cannot open %s: %s", dev, strerror(errno));
                if (ioctl(fd, LOOP_CONFIGURE, &c) == 0)
                        return fd;
                err = errno;
                close(fd);
                if (err != EBUSY)
                        break;
        }
        return error_set(e, err, ERR_INTERNAL, "cannot attach the disk image %s to a loop device: %s", image, strerror(err));
}

/* Mounts the image at d->dir, making it first when missing. */
static int mount_volume(struct disk *d, int64_t image_mb, const char *state_dir, struct error *e) {
        _cleanup_close_ int img = -1, loop = -1;
        char dev[64];
        struct stat st;
        int r;

        img = open(d->image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (img < 0 && errno == ENOENT) {
                if ((r = make_image(d, image_mb > 0 ? image_mb : default_image_mb(state_dir), e)) < 0)
                        return r;
                img = open(d->image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        }
        if (img < 0 || fstat(img, &st) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot open the disk image %s: %s", d->image, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return error_set(e, EINVAL, ERR_INTERNAL, "the disk image %s is not a regular file", d->image);
        if (find_loop(&st, dev, sizeof(dev)) < 0 && (loop = attach_loop(d->image, img, dev, sizeof(dev), e)) < 0)
                return loop;
        if (mount(dev, d->dir, "btrfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, MOUNT_OPTIONS) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot mount the disk volume %s (%s) on %s: %s", d->image, dev, d->dir,
                                 strerror(errno));
        log_info("mounted the disk volume %s (%s) on %s", d->image, dev, d->dir);
        return 0;
}

/* Grows the image to image_mb (file, loop device, file system) when it is smaller. */
static void grow_volume(struct disk *d, int64_t image_mb) {
        struct btrfs_ioctl_vol_args a = {.name = "1:max"};
        _cleanup_close_ int img = -1, loop = -1;
        char dev[64];
        struct stat st;

        if (image_mb <= 0 || image_mb <= d->size_mb)
                return;
        img = open(d->image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (img < 0 || fstat(img, &st) < 0 || find_loop(&st, dev, sizeof(dev)) < 0 || (loop = open(dev, O_RDWR | O_CLOEXEC)) < 0 ||
            ftruncate(img, (off_t) (image_mb * MIB)) < 0 || ioctl(loop, LOOP_SET_CAPACITY, 0) < 0 ||
            ioctl(d->dir_fd, BTRFS_IOC_RESIZE, &a) < 0) {
                log_warn_errno(errno, "cannot grow the disk volume %s from %lld to %lld MiB, ignoring", d->image,
                               (long long) d->size_mb, (long long) image_mb);
                return;
        }
        log_info("grew the disk volume %s from %lld to %lld MiB", d->image, (long long) d->size_mb, (long long) image_mb);
        d->size_mb = image_mb;
}

/* Quotas on: simple quotas (Linux 6.7: counted where space is allocated, cheap), else full
 * quota groups. Turning them on again is a no-op. */
static int enable_quota(struct disk *d, struct error *e) {
        struct btrfs_ioctl_quota_ctl_args q = {.cmd = BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA};

        if (ioctl(d->dir_fd, BTRFS_IOC_QUOTA_CTL, &q) == 0)
                return 0;
        q = (struct btrfs_ioctl_quota_ctl_args){.cmd = BTRFS_QUOTA_CTL_ENABLE};
        if (ioctl(d->dir_fd, BTRFS_IOC_QUOTA_CTL, &q) == 0)
                return 0;
        return error_set(e, errno, ERR_INTERNAL, "cannot turn quotas on in the disk volume %s: %s", d->dir, strerror(errno));
}

int disk_open(const char *state_dir, int64_t image_mb, struct disk **ret, struct error *e) {
        _cleanup_free_ struct disk *d = calloc(1, sizeof(*d));
        struct stat st;
        int r;

        if (!d)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        d->dir_fd = -1;
        snprintf(d->dir, sizeof(d->dir), "%s/disk", state_dir);
        snprintf(d->image, sizeof(d->image), "%s/disk.img", state_dir);
        if ((r = mkdir_p(d->dir, 0700)) < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", d->dir, strerror(-r));
        if (!is_btrfs_mount(d->dir, state_dir) && (r = mount_volume(d, image_mb, state_dir, e)) < 0)
                return r;
        d->dir_fd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        /* Nobody but root reaches into a sandbox's layer (what it wrote, setuid files included). */
        if (d->dir_fd < 0 || fchmod(d->dir_fd, 0700) < 0 || stat(d->image, &st) < 0) {
                r = error_set(e, errno, ERR_INTERNAL, "cannot open the disk volume %s: %s", d->dir, strerror(errno));
                disk_free(TAKE_PTR(d));
                return r;
        }
        d->size_mb = (int64_t) (st.st_size / MIB);
        grow_volume(d, image_mb);
        if ((r = enable_quota(d, e)) < 0) {
                disk_free(TAKE_PTR(d));
                return r;
        }
        *ret = TAKE_PTR(d);
        return 0;
}

void disk_free(struct disk *d) {
        if (!d)
                return;
        if (d->dir_fd >= 0)
                close(d->dir_fd);
        free(d);
}

void disk_layer_dir(const struct disk *d, const char *id, char *out, size_t n) {
        snprintf(out, n, "%s/%s", d->dir, id);
}

/* The subvolume (and level-0 quota group) id of the layer open at fd. */
static int subvol_id(int fd, __u64 *ret) {
        struct btrfs_ioctl_ino_lookup_args la = {.objectid = SUBVOL_ROOT_INO};

        if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &la) < 0)
                return -errno;
        *ret = la.treeid;
        return 0;
}

/* Limits the layer open at fd to limit_mb MiB (0: no limit). */
static int set_limit(int fd, int64_t limit_mb) {
        struct btrfs_ioctl_qgroup_limit_args q = {
                .lim = {.flags = BTRFS_QGROUP_LIMIT_MAX_RFER, .max_rfer = limit_mb > 0 ? (__u64) limit_mb * MIB : (__u64) -1}};
        int r = subvol_id(fd, &q.qgroupid);

        if (r < 0)
                return r;
        return ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &q) < 0 ? -errno : 0;
}

/* The limit, the modes and the two directories of a new layer open at fd; *what says which
 * step failed. */
static int prepare_layer(int fd, int64_t limit_mb, uid_t root_uid, const char **what) {
        int r;

        *what = "limit";
        if ((r = set_limit(fd, limit_mb)) < 0)
                return r;
        *what = "prepare";
        if (fchmod(fd, 0700) < 0 || mkdirat(fd, "upper", 0755) < 0 || mkdirat(fd, "work", 0700) < 0 ||
            fchownat(fd, "upper", root_uid, root_uid, AT_SYMLINK_NOFOLLOW) < 0 || fchmodat(fd, "upper", 0755, 0) < 0)
                return -errno;
        return 0;
}

int disk_layer_make(struct disk *d, const char *id, int64_t limit_mb, uid_t root_uid, struct error *e) {
        struct btrfs_ioctl_vol_args a = {0};
        _cleanup_close_ int fd = -1;
        const char *what = "open";
        int r;

        snprintf(a.name, sizeof(a.name), "%s", id);
        if (ioctl(d->dir_fd, BTRFS_IOC_SUBVOL_CREATE, &a) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot create the disk of %s in %s: %s", id, d->dir, strerror(errno));
        fd = openat(d->dir_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        r = fd < 0 ? -errno : prepare_layer(fd, limit_mb, root_uid, &what);
        if (r < 0)
                return error_set(e, -r, ERR_INTERNAL, "cannot %s the disk of %s (%lld MiB): %s", what, id, (long long) limit_mb,
                                 strerror(-r));
        return 0;
}

int disk_layer_limit(struct disk *d, const char *id, int64_t limit_mb, struct error *e) {
        _cleanup_close_ int fd = openat(d->dir_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int r = fd < 0 ? -errno : set_limit(fd, limit_mb);

        if (r < 0)
                return error_set(e, -r, ERR_INTERNAL, "cannot %s the disk limit of %s: %s", limit_mb > 0 ? "set" : "lift", id,
                                 strerror(-r));
        return 0;
}

void disk_layer_remove(struct disk *d, const char *id) {
        struct btrfs_ioctl_vol_args a = {0};
        char path[4400];
        int r;

        if (!d)
                return;
        snprintf(a.name, sizeof(a.name), "%s", id);
        if (ioctl(d->dir_fd, BTRFS_IOC_SNAP_DESTROY, &a) == 0 || errno == ENOENT)
                return;
        /* Not a subvolume (a stray directory), or btrfs refused: removed file by file. */
        disk_layer_dir(d, id, path, sizeof(path));
        r = rm_rf(path);
        if (r < 0)
                log_warn_errno(r, "cannot remove the disk of %s (%s), ignoring", id, path);
}

int disk_layer_used(struct disk *d, const char *id, int64_t *ret_bytes) {
        struct btrfs_ioctl_fs_info_args info = {0};
        _cleanup_close_ int fd = openat(d->dir_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ char *data = NULL;
        char path[256], *p = path;
        __u64 subvol = 0;
        int r;

        if (fd < 0)
                return -errno;
        if ((r = subvol_id(fd, &subvol)) < 0 || ioctl(fd, BTRFS_IOC_FS_INFO, &info) < 0)
                return r < 0 ? r : -errno;
        /* The quota group's live count, in sysfs under the file system's id. */
        p += snprintf(p, sizeof(path), "/sys/fs/btrfs/");
        for (int i = 0; i < 16; i++)
                p += snprintf(p, 8, "%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "", info.fsid[i]);
        snprintf(p, sizeof(path) - (size_t) (p - path), "/qgroups/0_%llu/referenced", (unsigned long long) subvol);
        if ((r = read_file(path, 64, &data, NULL)) < 0)
                return r;
        *ret_bytes = strtoll(data, NULL, 10);
        return 0;
}

int disk_unmount(const char *state_dir, bool *ret_unmounted, struct error *e) {
        char dir[4200];

        snprintf(dir, sizeof(dir), "%s/disk", state_dir);
        *ret_unmounted = false;
        if (!is_btrfs_mount(dir, state_dir))
                return 0;
        if (umount2(dir, 0) < 0 && (errno != EBUSY || umount2(dir, MNT_DETACH) < 0))
                return error_set(e, errno, ERR_INTERNAL, "cannot unmount the disk volume %s: %s", dir, strerror(errno));
        *ret_unmounted = true;
        return 0;
}
