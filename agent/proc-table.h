/* proc-table.h — the processes started through the API: one struct proc each, their life
 * (running → exited → ended → expired) and the table that finds them by pid.
 *
 * Life of an entry. proc_table_reserve() inserts it while its command is being started
 * (pid 0: invisible). Once started, the pump (proc-pump.h) reads its output into its ring
 * and notices its exit. It is "exited" when the reaper has collected its supervisor (which
 * exits as the command's session leader did, or, while the command is being killed, once
 * every process it started is gone: supervise.h), and "ended" once its output is drained
 * too (all pipes at EOF, or PROC_DRAIN_MS after the exit when a background grandchild it
 * left running holds them open): readers then send "end". It stays in the table
 * PROC_RETAIN_MS after that, for late readers, and is freed when the last reference goes.
 *
 * Locking. One mutex (proc_lock()) guards the table and every field marked "locked" below;
 * it is held only for short, non-blocking work (a memcpy into or out of a ring, signals to a
 * command's processes, found in /proc), never across I/O to a client or a pipe. Fields
 * marked "fixed" are set before the entry becomes visible and never change.
 *
 * Wake-ups. A reader waits with poll() on its own eventfd (a proc_waiter) together with its
 * client's socket, so it notices new output and a client hanging up at once; a condition
 * variable could not be polled along with a socket. A waiter is signalled only when it
 * has said it is about to sleep (armed), so a busy stream costs no extra syscalls.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "process.h"
#include "ring.h"

#define PROC_TABLE_MAX 1024          /* entries, running or retained */
#define PROC_RING_BYTES (1024 * 1024) /* output kept per process */
#define PROC_RING_SEGMENTS 8192      /* stdout/stderr switches indexed per process */
#define PROC_KILL_GRACE_MS 2000      /* SIGTERM → SIGKILL */
#define PROC_DRAIN_MS 200            /* reading pipes held open after the exit */
#define PROC_RETAIN_MS 60000         /* kept after the end */

/* What a ring segment holds: the stream of the event it becomes. */
enum proc_stream {
        PROC_STDOUT = 1,
        PROC_STDERR = 2,
        PROC_PTY = 3,
};

struct proc_waiter {
        int fd;     /* eventfd, owned by the reader */
        bool armed; /* locked: the reader found nothing new and is going to poll */
        struct proc_waiter *next;
};

struct proc {
        /* fixed once published (pid 0 before) */
        pid_t pid;
        char *cmd; /* NULL for an interactive terminal */
        char *tag, *cwd, *user;
        bool pty, has_stdin, background;
        int64_t started_at; /* wall-clock ms */

        /* locked */
        struct child *child;  /* until it exited (then freed: its eventfd is not kept) */
        unsigned refs;
        bool in_table;
        bool superseded;      /* its pid now belongs to a newer entry */
        int stdin_fd;         /* pipe write end or a dup of the PTY master; -1 none or closed */
        struct ring ring;
        struct proc_waiter *waiters;
        unsigned open_outputs; /* output fds the pump still reads */
        int64_t deadline_ms;  /* monotonic; 0: no timeout */
        int64_t kill_at_ms;   /* monotonic; (another) SIGKILL due: the command is being killed; 0: none */
        bool timed_out;
        bool exited;
        int status;           /* wait status, once exited */
        int64_t exited_ms;
        bool ended;
        int64_t expire_ms;    /* leaves the table then */
        struct proc *prev, *next;
};

void proc_lock(void);
void proc_unlock(void);

/* Makes an entry for a process about to be started and puts it in the table (pid 0,
 * invisible to lookups), so that the table's cap is checked before anything is spawned.
 * Makes room by forgetting the oldest ended entry if needed. Returns 0 with the entry in
 * *ret, holding a reference for the caller (besides the table's); -EAGAIN when
 * PROC_TABLE_MAX entries are all running or starting; -ENOMEM. */
int proc_table_reserve(struct proc **ret);

/* Takes a reserved entry back out of the table after its start failed; drops the caller's
 * reference. */
void proc_table_cancel(struct proc *p);

/* Publishes a reserved entry whose process now runs: child (owned by p from now on) and
 * pid are set, timeout_ms (0: none) arms its deadline. Locks itself. */
void proc_table_publish(struct proc *p, struct child *child, uint64_t timeout_ms);

/* The newest entry for pid with a new reference, or NULL. Locks itself. */
struct proc *proc_table_get(pid_t pid);

/* Takes a reference. Locked. */
void proc_ref(struct proc *p);

/* Drops a reference, freeing the entry with the last one. Locks itself. Accepts NULL. */
void proc_unref(struct proc *p);

static inline void proc_unrefp(struct proc **p) { proc_unref(*p); }
#define _cleanup_proc_ _cleanup_(proc_unrefp)

/* Calls f for every published entry, oldest first. Locked; f must not unlock. */
void proc_table_foreach(void (*f)(struct proc *p, void *userdata), void *userdata);

/* Wakes the readers that wait for news of p. Locked. */
void proc_notify(struct proc *p);

/* SIGTERM to every process of p's command now (supervise.h: the ones it started in other
 * sessions too) and SIGKILL PROC_KILL_GRACE_MS later, repeated until the command's
 * supervisor is gone, unless a kill is already under way or p has exited. Locked. Wakes
 * the pump so that it keeps the time. */
void proc_terminate(struct proc *p, int64_t now);

/* SIGKILL to every process of p's command now, repeated until its supervisor is gone.
 * Returns 0, or -ESRCH when p has exited. Locked. */
int proc_kill(struct proc *p, int64_t now);

/* Advances every entry's clock: timeouts, SIGKILLs due, the end of exited ones, expiry.
 * Called by the pump after each exit, EOF or wake-up, and when the time it returned last
 * (monotonic ms, INT64_MAX for none) has come. Locks itself. */
int64_t proc_table_tick(int64_t now);
