/* layer-tar.h — a sandbox's upper dir as a tar stream, and back (drain, issue 14).
 *
 * GNU tar, not our own walker: the upper dir of an overlay holds what a file-system walker
 * gets wrong easily — whiteouts (0:0 character devices), opaque directories (trusted.overlay.*
 * extended attributes), hard links, sparse files, ACLs, the sandbox's numeric owners — and
 * tar has carried exactly these for decades. It runs as a child (common/spawn.c) with one end
 * of a pipe at fd 3, on a thread of its own that waits for it, so that the caller streams the
 * other end to or from the network as tar makes or takes it: nothing is staged on disk.
 */
#pragma once

#include <stdbool.h>

#include "error.h"

struct layer_tar;

/* Starts tar on dir: creating an archive of it (extract false: *ret_fd is the read end of
 * the archive, EOF once tar has ended) or extracting one into it (extract true: *ret_fd is
 * the write end; close it to end the archive). The caller owns *ret_fd and closes it (before
 * layer_tar_finish when extracting). */
int layer_tar_start(const char *dir, bool extract, struct layer_tar **ret, int *ret_fd, struct error *e);

/* Waits for tar to end: 0 when it exited 0, else an error with its last line of output. Frees t. */
int layer_tar_finish(struct layer_tar *t, struct error *e);
