/* idmap.h — a uid range of its own for every running sandbox, by idmapped mounts of its
 * overlay's layers.
 *
 * Why: with one range for all (uid-base, uid-count), root inside every sandbox was the same
 * host uid, so a process of one sandbox, or a host user given that uid, could signal or trace
 * every other sandbox's processes and write their files, and the budgets the kernel counts per
 * host uid (epoll watches, descriptors in flight over unix sockets, pipe pages, keys,
 * RLIMIT_NPROC) were one pool for all sandboxes.
 *
 * How: files stay on disk in the canonical range (uid-base: the templates, and every upper
 * dir, as before). Each time a sandbox's overlay is mounted, the engine makes an idmapped
 * clone of the template version (read-only) and one of the directory holding upper/ and
 * work/, both mapping uid-base + i on disk to R + i, where R is the sandbox's range for this
 * start (idmap_range), and 0 to 0 (the engine's own files, such as overlay's work dir). The
 * overlay is mounted on those, in the host's user namespace, and the sandbox's user namespace
 * maps 0 inside to R. Nothing on disk depends on R, so R may change at every resume (it is
 * picked by the address, which does) and sandboxes made before ranges existed just work.
 * Needs Linux >= 5.19 (overlayfs on idmapped layers).
 */
#pragma once

#include <stdint.h>

#include "error.h"

struct idmap_spec {
        const char *id;         /* the sandbox, for messages */
        const char *lower;      /* the template version's root file system */
        const char *lower_at;   /* an empty directory to attach lower's idmapped clone on (made if missing) */
        const char *layer;      /* the directory holding upper/ and work/ */
        uint32_t canonical;     /* uid-base: the on-disk owner of files owned by root inside */
        uint32_t range;         /* R: the host uid of root inside */
        uint32_t count;         /* uid-count */
};

/* The first host uid of the range of a sandbox at address ip: base + k * count, where
 * k = (low 24 bits of ip) mod nranges. Distinct for every address of a pool of up to nranges
 * addresses; engines whose pools differ may meet (config.c keeps the ranges clear of the
 * canonical range and of the owner uids). 0 and *ret set, or -EINVAL for a bad address. */
int idmap_range(int64_t base, int64_t count, int64_t nranges, const char *ip, uint32_t *ret);

/* Makes the two idmapped clones of spec: lower's read-only (so that nothing ever writes to a
 * template through it), attached on lower_at, for the overlay's lowerdir= to name (and the
 * template garbage collector to find by its inode); layer's detached, returned as an fd whose
 * /proc/self/fd/N/upper and .../work the overlay is given (the overlay takes its own private
 * references of both at mount). On failure nothing is left mounted and *ret_layer_fd is
 * untouched. */
int idmap_layers(const struct idmap_spec *spec, int *ret_layer_fd, struct error *e);

/* Detaches lower_at's mount if there is one (after the overlay that uses it); logs failures.
 * Returns 0, or a negative errno when something is still mounted there (the caller must then
 * not remove the directory tree above it). */
int idmap_unmount(const char *lower_at);
