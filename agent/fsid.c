/* fsid.c — see fsid.h.
 *
 * setfsuid(2) and setfsgid(2) do not report failure: they return the previous id whatever
 * happens, so each switch is checked by asking for the current id (an invalid id, -1, is
 * never set and gets it back). Any change of a thread's filesystem ids resets the process's
 * dumpable flag to fs.suid_dumpable, which an administrator may have set to 1: the flag is
 * cleared again after each switch back (main.c says why the agent must not be dumpable).
 *
 * gVisor has no setfsuid/setfsgid (ENOSYS; measured with runsc 2024-07-29). There the
 * thread switches its effective ids instead (setresuid/setresgid with -1 for the real and
 * saved ids, which stay 0 so that it can switch back): the filesystem ids follow the
 * effective ones, the effective capabilities go while it is another user and come back from
 * the permitted set after, and a process of that user still cannot signal or trace the
 * thread (those checks look at the real and saved ids, and at the dumpable flag).
 */
#include "fsid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* Whether the kernel has setfsuid: Linux's never fails, gVisor's is ENOSYS. */
static bool have_fsuid(void) {
        static int known; /* 0: not asked yet, 1: yes, -1: no; the same answer for every thread */

        if (known == 0)
                known = syscall(SYS_setfsuid, (uid_t) -1) < 0 && errno == ENOSYS ? -1 : 1;
        return known > 0;
}

static uid_t get_fsuid(void) {
        return have_fsuid() ? (uid_t) syscall(SYS_setfsuid, (uid_t) -1) : (uid_t) syscall(SYS_geteuid);
}

static gid_t get_fsgid(void) {
        return have_fsuid() ? (gid_t) syscall(SYS_setfsgid, (gid_t) -1) : (gid_t) syscall(SYS_getegid);
}

static int set_fsuid(uid_t uid) {
        if (have_fsuid())
                (void) syscall(SYS_setfsuid, uid);
        else if (syscall(SYS_setresuid, (uid_t) -1, uid, (uid_t) -1) < 0)
                return -errno;
        return get_fsuid() == uid ? 0 : -EPERM;
}

static int set_fsgid(gid_t gid) {
        if (have_fsuid())
                (void) syscall(SYS_setfsgid, gid);
        else if (syscall(SYS_setresgid, (gid_t) -1, gid, (gid_t) -1) < 0)
                return -errno;
        return get_fsgid() == gid ? 0 : -EPERM;
}

static int set_groups(const gid_t *groups, size_t n) {
        return syscall(SYS_setgroups, n, groups) < 0 ? -errno : 0;
}

/* Sets all three, or none: on failure what was changed is put back. */
static int set_identity(uid_t uid, gid_t gid, const gid_t *groups, size_t n, const struct fsid *back) {
        int r;

        r = set_groups(groups, n);
        if (r < 0)
                return r;
        r = set_fsgid(gid);
        if (r >= 0) {
                r = set_fsuid(uid);
                if (r >= 0)
                        return 0;
                (void) set_fsgid(back->gid);
        }
        (void) set_groups(back->groups, back->n_groups);
        return r;
}

int fsid_enter(uid_t uid, gid_t gid, const gid_t *groups, size_t n, struct fsid *ret) {
        struct fsid s = {.active = true};
        int k, r;

        *ret = (struct fsid){};
        if (uid == 0)
                return 0;
        if (n > FSID_GROUPS_MAX)
                return -E2BIG;
        k = getgroups(FSID_GROUPS_MAX, s.groups); /* a plain syscall: this thread's groups */
        if (k < 0)
                return errno == EINVAL ? -E2BIG : -errno;
        s.n_groups = (size_t) k;
        s.uid = get_fsuid();
        s.gid = get_fsgid();

        r = set_identity(uid, gid, groups, n, &s);
        /* Whether or not it worked, the ids may have changed, and the dumpable flag with them. */
        if (prctl(PR_SET_DUMPABLE, 0) < 0 && r >= 0) {
                r = -errno;
                fsid_leave(&s);
        }
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

void fsid_leave(struct fsid *s) {
        int saved = errno;

        if (!s->active)
                return;
        if (set_fsuid(s->uid) < 0 || set_fsgid(s->gid) < 0 || set_groups(s->groups, s->n_groups) < 0) {
                log_error("cannot give a connection thread its own identity back after acting as a user, aborting");
                abort();
        }
        if (prctl(PR_SET_DUMPABLE, 0) < 0) {
                log_error_errno(errno, "cannot make the agent non-dumpable again, aborting");
                abort();
        }
        s->active = false;
        errno = saved;
}
