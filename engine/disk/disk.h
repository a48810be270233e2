/* disk.h — every sandbox's disk limit (issue 13): the engine's disk volume and one limited
 * layer per sandbox on it.
 *
 * A sandbox's writable layer (its overlay's upper and work dirs: its whole persistent file
 * system) lives on the engine's disk volume, STATE/disk: one btrfs file system in a sparse
 * image file, STATE/disk.img, attached to a loop device (auto-clearing: it goes when the file
 * system does) and mounted nosuid, nodev, noexec by the engine at start, or found mounted
 * there: like the sandboxes, the mount outlives the engine. Each sandbox's layer is a btrfs
 * subvolume, STATE/disk/<id>, whose quota group is limited to the sandbox's disk_mb: inside,
 * a write past it fails with EDQUOT ("Disk quota exceeded"), and all the sandboxes together
 * can never take more of the host's file system than the image's size.
 *
 * Why btrfs quota groups (measured, docs/architecture.md "Disk"): this kernel has neither ext4
 * quota files (CONFIG_QFMT_V2) nor XFS quotas, so project quotas are out; an image per sandbox
 * costs a mkfs, a loop device and a mount per create (~20 ms); a subvolume and its limit
 * cost ~0.1 ms, and btrfs enforces the limit on the overlay's writes, which run with the
 * mounting engine's credentials (host root), where ext4 quotas would let CAP_SYS_RESOURCE
 * pass.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* The disk volume of one state directory. */
struct disk {
        char dir[4096];   /* STATE/disk: the mount point, where each sandbox's layer is */
        char image[4096]; /* STATE/disk.img */
        int dir_fd;       /* dir, open: the btrfs ioctls are made on it */
        int64_t size_mb;  /* the image's size */
};

/* Mounts the disk volume of state_dir at STATE/disk, or finds it mounted. The image is made
 * when missing (sparse, image_mb MiB; 0: half the state file system's free space, at least
 * 256 MiB) with mkfs.btrfs; when it exists and is smaller than a non-zero image_mb it is
 * grown (file, loop device and file system, online); it is never shrunk. Quotas are turned
 * on (simple quotas where the kernel has them, else full quota groups). */
int disk_open(const char *state_dir, int64_t image_mb, struct disk **ret, struct error *e);

/* Closes what disk_open opened; the volume stays mounted (sandboxes use it). NULL is fine. */
void disk_free(struct disk *d);

/* The directory of sandbox id's layer: STATE/disk/<id>, holding upper/ and work/. */
void disk_layer_dir(const struct disk *d, const char *id, char *out, size_t n);

/* Makes sandbox id's layer: a subvolume limited to limit_mb MiB, root's alone (0700), with
 * upper/ owned by root_uid (the sandbox's root: it is "/" inside, 0755) and work/. On failure
 * what was made stays for disk_layer_remove (the caller's teardown). */
int disk_layer_make(struct disk *d, const char *id, int64_t limit_mb, uid_t root_uid, struct error *e);

/* Sets the limit of sandbox id's layer to limit_mb MiB; 0 lifts it. Overlayfs makes its work
 * dir afresh at every mount, and a layer at its limit would fail that and be mounted read-only
 * (silently, to the sandbox): the limit is lifted for the mount and set again after it. */
int disk_layer_limit(struct disk *d, const char *id, int64_t limit_mb, struct error *e);

/* Removes sandbox id's layer and everything in it, if it exists (the space is given back to
 * the volume by btrfs in the background, within seconds). Failures are logged. */
void disk_layer_remove(struct disk *d, const char *id);

/* How many bytes sandbox id's layer holds (its quota group's count); -ENOENT without one. */
int disk_layer_used(struct disk *d, const char *id, int64_t *ret_bytes);

/* For `net remove` (uninstall): unmounts state_dir's disk volume if it is mounted; its loop
 * device goes with the file system (once no running sandbox's overlay holds it). The image
 * stays: it holds paused sandboxes' files. *ret_unmounted says whether it was mounted. */
int disk_unmount(const char *state_dir, bool *ret_unmounted, struct error *e);
