/* fsutil.h — file-system helpers that never follow a symlink a sandbox could have planted.
 *
 * Directories inside a sandbox's upper layer are controlled by the sandbox, so anything that
 * walks them (rm_rf) opens every component with O_NOFOLLOW and works relative to directory
 * fds, never by re-resolving a path.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Creates path and its missing parents with mode; existing directories are fine. */
int mkdir_p(const char *path, mode_t mode);

/* Removes path and everything under it without following symlinks and without crossing
 * into other file systems (mount points are left alone and reported as -EBUSY), whatever
 * the tree's depth, with a bounded stack and a bounded number of open descriptors.
 * A missing path is success. */
int rm_rf(const char *path);

/* Writes data to path atomically (temp file + fsync + rename) with mode. */
int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);

/* Reads at most max bytes of path into a new NUL-terminated buffer (*ret, *ret_len). */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Sums the apparent size in bytes of every file under path (not following symlinks). */
int disk_usage(const char *path, unsigned long long *ret);
