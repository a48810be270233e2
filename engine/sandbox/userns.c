/* userns.c — see userns.h. A forked child takes the owner's uid as its effective uid (its
 * capabilities kept: SECBIT_NO_SETUID_FIXUP), unshares a user namespace, which is therefore
 * owned by that uid, writes the namespace's own inotify limits (it has every capability in
 * it), reports, and waits on a pipe. The engine writes the id maps (root in the parent
 * namespace may map any range) and hands /proc/<child>/ns/user to the runtime, which joins
 * it; then it lets the child go. Nothing is left on disk: a crashed engine closes the pipe,
 * and the child exits.
 *
 * The engine is multi-threaded, so the child calls only async-signal-safe functions (raw
 * system calls, no allocation); everything it writes is formatted before fork.
 */
#include "sandbox/userns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

#define OWNER_BITS 0xffffffu

static const char *const limit_files[] = {"/proc/sys/user/max_inotify_instances", "/proc/sys/user/max_inotify_watches"};

/* What the child failed at, sent through its report pipe. */
enum child_step { STEP_OWNER, STEP_UNSHARE, STEP_LIMITS };

struct child_report {
        int step;
        int err; /* positive errno; 0: the namespace is ready */
};

int userns_owner(int64_t base, const char *ip, uint32_t *ret) {
        struct in_addr in;

        if (!ip || inet_pton(AF_INET, ip, &in) != 1)
                return -EINVAL;
        *ret = (uint32_t) (base + (ntohl(in.s_addr) & OWNER_BITS));
        return 0;
}

/* Closes every descriptor but keep_a and keep_b (the child holds nothing of the engine's:
 * no client connection waits for it to exit). */
static void close_all_but(int keep_a, int keep_b) {
        int lo = MIN(keep_a, keep_b), hi = MAX(keep_a, keep_b);

        if (lo > 0)
                (void) syscall(SYS_close_range, 0, lo - 1, 0);
        if (hi > lo + 1)
                (void) syscall(SYS_close_range, lo + 1, hi - 1, 0);
        (void) syscall(SYS_close_range, hi + 1, ~0U, 0);
}

static int write_all(int fd, const char *s, size_t n) {
        ssize_t k = write(fd, s, n);

        return k == (ssize_t) n ? 0 : k < 0 ? -errno : -EIO;
}

/* Opens path and writes s in one write(); async-signal-safe. */
static int write_proc(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CLOEXEC), r;

        if (fd < 0)
                return -errno;
        r = write_all(fd, s, strlen(s));
        close(fd);
        return r;
}

static _noreturn_ void child(uint32_t owner, char values[][24], int report_fd, int hold_fd) {
        struct child_report rep = {STEP_OWNER, 0};
        char c;
        int r;

        close_all_but(report_fd, hold_fd);
        /* The raw call changes this thread alone, as there is no other; capabilities stay
         * (root's in the host namespace are not needed past unshare, but kept harmlessly
         * until exit) so that unshare works even where unprivileged user namespaces are off. */
        if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) < 0 ||
            syscall(SYS_setresuid, (uid_t) -1, (uid_t) owner, (uid_t) -1) < 0)
                rep.err = errno;
        else if (rep.step = STEP_UNSHARE, unshare(CLONE_NEWUSER) < 0)
                rep.err = errno;
        else
                for (size_t i = 0; i < ELEMENTSOF(limit_files) && !rep.err; i++)
                        if (rep.step = STEP_LIMITS, (r = write_proc(limit_files[i], values[i])) < 0)
                                rep.err = -r;
        (void) !write(report_fd, &rep, sizeof(rep));
        if (rep.err)
                _exit(1);
        while (read(hold_fd, &c, 1) < 0 && errno == EINTR)
                ;
        _exit(0);
}

static int write_maps(pid_t pid, const struct userns_spec *s) {
        char path[64], map[64];
        int r;

        snprintf(map, sizeof(map), "0 %u %u\n", s->uid_base, s->uid_count);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int) pid);
        r = write_proc(path, map);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int) pid);
        return write_proc(path, map);
}

void userns_release(struct userns *u) {
        if (!u)
                return;
        if (u->hold_fd >= 0)
                close(u->hold_fd);
        if (u->pid > 0) {
                (void) kill(u->pid, SIGKILL);
                while (waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        *u = (struct userns){.pid = 0, .hold_fd = -1};
}

static int report_error(const struct child_report *rep, ssize_t k, const struct userns_spec *s, struct error *e) {
        static const char *const what[] = {
                [STEP_OWNER] = "cannot take the owner uid",
                [STEP_UNSHARE] = "cannot make a user namespace as uid",
                [STEP_LIMITS] = "cannot set the inotify limits of the user namespace of uid",
        };

        if (k != (ssize_t) sizeof(*rep) || rep->step < 0 || rep->step > STEP_LIMITS)
                return error_set(e, EIO, ERR_INTERNAL, "cannot make the sandbox's user namespace: its helper failed");
        return error_set(e, rep->err, ERR_INTERNAL, "%s %u: %s", what[rep->step], s->owner, strerror(rep->err));
}

int userns_make(const struct userns_spec *s, struct userns *ret, struct error *e) {
        struct userns u = {.pid = 0, .hold_fd = -1};
        struct child_report rep = {0, 0};
        char values[ELEMENTSOF(limit_files)][24];
        int report[2], hold[2], r;
        ssize_t k;

        *ret = u;
        snprintf(values[0], sizeof(values[0]), "%lld", (long long) s->inotify_instances);
        snprintf(values[1], sizeof(values[1]), "%lld", (long long) s->inotify_watches);
        if (pipe2(report, O_CLOEXEC) < 0)
                return error_set(e, errno, ERR_INTERNAL, "pipe: %s", strerror(errno));
        if (pipe2(hold, O_CLOEXEC) < 0) {
                r = errno;
                close(report[0]);
                close(report[1]);
                return error_set(e, r, ERR_INTERNAL, "pipe: %s", strerror(r));
        }
        u.pid = fork();
        if (u.pid == 0)
                child(s->owner, values, report[1], hold[0]);
        r = u.pid < 0 ? errno : 0;
        close(report[1]);
        close(hold[0]);
        u.hold_fd = hold[1];
        if (u.pid < 0) {
                u.pid = 0;
                close(report[0]);
                userns_release(&u);
                return error_set(e, r, ERR_INTERNAL, "fork: %s", strerror(r));
        }
        do
                k = read(report[0], &rep, sizeof(rep));
        while (k < 0 && errno == EINTR);
        close(report[0]);
        if (k != (ssize_t) sizeof(rep) || rep.err) {
                userns_release(&u);
                return report_error(&rep, k, s, e);
        }
        r = write_maps(u.pid, s);
        if (r < 0) {
                userns_release(&u);
                return error_set(e, r, ERR_INTERNAL, "cannot write the id maps of the user namespace of uid %u: %s", s->owner,
                                 strerror(-r));
        }
        snprintf(u.path, sizeof(u.path), "/proc/%d/ns/user", (int) u.pid);
        *ret = u;
        return 0;
}

/* Raises the host's sysctl at path to at least want; logs what it did. */
static void raise_host_limit(const char *path, int64_t want) {
        _cleanup_free_ char *data = NULL;
        char value[24];
        long long have;
        int r;

        r = read_file(path, 64, &data, NULL);
        if (r < 0) {
                log_warn_errno(r, "cannot read %s, ignoring", path);
                return;
        }
        have = strtoll(data, NULL, 10);
        if (have >= want)
                return;
        snprintf(value, sizeof(value), "%lld", (long long) want);
        r = write_proc(path, value);
        if (r < 0)
                log_warn_errno(r, "cannot raise %s from %lld to %lld, ignoring: a sandbox holds at most %lld", path, have,
                               (long long) want, have);
        else
                log_info("raised %s from %lld to %lld: each sandbox's user namespace counts as one host user", path, have,
                         (long long) want);
}

void userns_host_limits(int64_t instances, int64_t watches) {
        raise_host_limit("/proc/sys/fs/inotify/max_user_instances", instances);
        raise_host_limit("/proc/sys/fs/inotify/max_user_watches", watches);
}
