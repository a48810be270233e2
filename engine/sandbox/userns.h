/* userns.h — the user namespace of a sandbox, made by the engine before its container and
 * joined by the runtime, so that the namespace's owner is a host uid of that sandbox alone.
 *
 * Why: the kernel counts several per-user budgets twice, at each level of the user
 * namespace tree: a process's use against its uid in its own namespace (under that
 * namespace's limit), and the namespace's whole use against the namespace's OWNER in the
 * parent (under the parent's limit). Those budgets: inotify instances and watches, fanotify
 * groups and marks, POSIX message-queue bytes, queued signals, locked shared memory, and
 * the counts of namespaces (/proc/sys/user/ and the RLIMIT_MSGQUEUE, _SIGPENDING, _MEMLOCK
 * accounting). A namespace made by runc is owned by host root, so every sandbox charged host
 * root's budget: one sandbox holding 128 inotify instances, or 800 KB of message queues, left
 * every other sandbox and host root without any. Owned by a uid of its own, a sandbox counts
 * as one more host user: it can use up only its own budget (the host's per-user limits).
 *
 * The owner is owner-uid-base + the low 24 bits of the sandbox's IPv4 address: distinct for
 * every running sandbox of every engine on the machine whose pools differ in those bits
 * (pools in 10.0.0.0/8 always do). No host account may use those uids: a process running as
 * a sandbox's owner would have every capability over that sandbox (as one running as a uid
 * of the mapped range could already signal or trace its processes).
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "error.h"

struct userns_spec {
        uint32_t owner;                 /* host uid that owns the namespace */
        uint32_t uid_base, uid_count;   /* 0 inside = uid_base outside, for uid_count ids (gids alike) */
        int64_t inotify_instances;      /* the namespace's own limits: per user inside it */
        int64_t inotify_watches;
};

struct userns {
        pid_t pid;      /* the child holding the namespace; 0: none */
        int hold_fd;    /* its end of the pipe the child waits on */
        char path[64];  /* /proc/<pid>/ns/user, for config.json */
};

/* The owner uid of a sandbox at address ip ("10.77.0.5"): base + its low 24 bits. Returns
 * 0 and sets *ret, or -EINVAL for an address that does not parse. */
int userns_owner(int64_t base, const char *ip, uint32_t *ret);

/* Makes a user namespace owned by spec->owner, with the id maps of spec and its inotify
 * limits set, held by a child process until userns_release(). On failure nothing is left
 * and *ret is { .pid = 0, .hold_fd = -1 }. */
int userns_make(const struct userns_spec *spec, struct userns *ret, struct error *e);

/* Lets the holding child go and reaps it. The namespace lives on while processes are in it
 * (the container's). Accepts a released or never-made u ({.hold_fd = -1}). */
void userns_release(struct userns *u);

/* A sandbox's whole use is bounded by the host's per-user inotify limits
 * (fs.inotify.max_user_instances, max_user_watches): raises either that is below what one
 * user inside a sandbox may hold (instances, watches), so that the setting can be met, and
 * logs what it changed. Failures are logged and ignored. */
void userns_host_limits(int64_t instances, int64_t watches);
