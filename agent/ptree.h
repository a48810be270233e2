/* ptree.h — the sandbox's processes as /proc shows them: a snapshot of each one's parent,
 * process group, state, thread count and start time; the subtree of one process in it; and
 * signals that reach exactly the process that was seen.
 *
 * Why "exactly": a pid is a number the kernel hands out again once its process is gone (the
 * sandbox's fork bomb can cycle through all 32768 in a second or two), so "kill(pid)" some
 * time after looking is a signal to whoever has the number then. ptree_signal() opens
 * /proc/<pid> (a handle on one process, not on a number), checks through it that the process
 * has the start time the snapshot recorded — a pid and its start time name one process —
 * and signals through the same handle (pidfd_send_signal).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ptree_entry {
        pid_t pid, ppid, pgid;
        char state;       /* as in /proc/<pid>/stat: R S D Z T t X I … */
        unsigned threads; /* tasks of the process (each counts against a pids limit) */
        uint64_t start;   /* clock ticks after boot; with pid, names the process */
};

struct ptree {
        struct ptree_entry *v; /* sorted by pid */
        size_t n;
};

/* Reads every process of /proc into *ret (free with ptree_done()). Processes that vanish
 * while it reads are left out. Returns 0, or -errno (-ENOMEM; /proc not readable). */
int ptree_read(struct ptree *ret);

/* Frees what ptree_read() made. Accepts a zeroed struct. */
void ptree_done(struct ptree *t);

static inline void ptree_donep(struct ptree *t) { ptree_done(t); }
#define _cleanup_ptree_ __attribute__((cleanup(ptree_donep)))

/* The entry of pid, or NULL. */
const struct ptree_entry *ptree_find(const struct ptree *t, pid_t pid);

/* Whether e is a zombie or dead (it holds a pid until reaped, but runs no more). */
bool ptree_entry_dead(const struct ptree_entry *e);

/* Marks in in[i] (t->n of them, caller's) whether t->v[i] descends from root (root itself
 * is not marked). Returns how many are marked, or -ENOMEM. */
ssize_t ptree_subtree(const struct ptree *t, pid_t root, bool *in);

/* Sends sig to the process e was taken from if it is still that process (same pid and
 * start time). Returns 0, -ESRCH when it is gone (or its pid is now another process's), or
 * -errno. */
int ptree_signal(const struct ptree_entry *e, int sig);

/* Sends sig to every process that descends from root and, if pgid > 0, is in process group
 * pgid; live ones only. Returns how many were signalled, or -errno (the snapshot failed). */
ssize_t ptree_signal_subtree(pid_t root, pid_t pgid, int sig);

/* The tasks (threads) of all processes in t: what a pids limit counts. */
unsigned ptree_tasks(const struct ptree *t);
