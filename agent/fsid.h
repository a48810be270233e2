/* fsid.h — the filesystem identity of the calling thread, switched to a user's for the
 * span of one request.
 *
 * The agent runs as root. A file request made on behalf of another user must get the
 * kernel's own permission checks, on every path lookup, open, create, rename and unlink,
 * not checks of the agent's that a symlink planted by the user could get around. So the
 * connection thread takes the user's filesystem uid, gid and supplementary groups (which
 * also drops its file capabilities: CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER, …) and gives
 * them back when the request ends. The switch uses raw syscalls: they change the calling
 * thread only, where glibc's setgroups()/setfsuid() wrappers would change every thread of
 * the agent.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "macro.h"

#define FSID_GROUPS_MAX 64

/* The thread's own identity while it acts as another. */
struct fsid {
        bool active;
        uid_t uid;
        gid_t gid;
        gid_t groups[FSID_GROUPS_MAX];
        size_t n_groups;
};

/* Makes the calling thread act on files as uid:gid with the n supplementary groups, saving
 * its own identity in ret (release with fsid_leave()). uid 0 changes nothing (ret stays
 * inactive). Returns 0, or -errno with the thread unchanged. */
int fsid_enter(uid_t uid, gid_t gid, const gid_t *groups, size_t n, struct fsid *ret);

/* Gives the thread its own identity back; no-op for an inactive s. A thread that cannot get
 * it back would serve its next request as that user, so failure aborts the agent. */
void fsid_leave(struct fsid *s);

#define _cleanup_fsid_ _cleanup_(fsid_leave)
