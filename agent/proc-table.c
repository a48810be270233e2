/* proc-table.c — see proc-table.h. The table is a list in start order (so the oldest
 * ended entry is the first one to forget when it is full); lookups scan it, which is fine
 * for PROC_TABLE_MAX entries. All time-driven changes of state happen in
 * proc_table_tick(), run by the pump thread, so there is one place to read for "when
 * does a process end".
 */
#include "proc-table.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "proc-pump.h"
#include "timeutil.h"

#define KILL_REPEAT_MS 50 /* SIGKILL again to what is left of a command being killed */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct proc *first, *last;
static unsigned count;

void proc_lock(void) {
        pthread_mutex_lock(&lock);
}

void proc_unlock(void) {
        pthread_mutex_unlock(&lock);
}

static void list_remove(struct proc *p) {
        if (p->prev)
                p->prev->next = p->next;
        else
                first = p->next;
        if (p->next)
                p->next->prev = p->prev;
        else
                last = p->prev;
        p->prev = p->next = NULL;
        p->in_table = false;
        count--;
}

static void proc_free(struct proc *p) {
        if (p->stdin_fd >= 0)
                close(p->stdin_fd);
        child_free(p->child);
        ring_done(&p->ring);
        free(p->cmd);
        free(p->tag);
        free(p->cwd);
        free(p->user);
        free(p);
}

void proc_ref(struct proc *p) {
        p->refs++;
}

/* Drops a reference with the lock held; returns whether p must be freed (after unlocking). */
static bool unref_locked(struct proc *p) {
        return --p->refs == 0;
}

void proc_unref(struct proc *p) {
        bool dead;

        if (!p)
                return;
        proc_lock();
        dead = unref_locked(p);
        proc_unlock();
        if (dead)
                proc_free(p);
}

/* Takes p out of the table and drops the table's reference; returns p if that was the
 * last one (free it after unlocking), else NULL. */
static struct proc *forget(struct proc *p) {
        list_remove(p);
        /* A grandchild may hold its pipes for long: keep no output for it meanwhile. */
        if (p->open_outputs > 0)
                ring_done(&p->ring);
        return unref_locked(p) ? p : NULL;
}

/* Forgets the oldest entry that has ended; false if every entry is still running. */
static bool evict_oldest_ended(struct proc **ret_dead) {
        for (struct proc *p = first; p; p = p->next)
                if (p->ended) {
                        *ret_dead = forget(p);
                        return true;
                }
        return false;
}

int proc_table_reserve(struct proc **ret) {
        struct proc *p = calloc(1, sizeof(*p)), *dead = NULL;

        if (!p)
                return -ENOMEM;
        p->refs = 2; /* the table's and the caller's */
        p->stdin_fd = -1;
        ring_init(&p->ring, PROC_RING_BYTES, PROC_RING_SEGMENTS);
        proc_lock();
        if (count >= PROC_TABLE_MAX && !evict_oldest_ended(&dead)) {
                proc_unlock();
                free(p);
                return -EAGAIN;
        }
        p->prev = last;
        if (last)
                last->next = p;
        else
                first = p;
        last = p;
        p->in_table = true;
        count++;
        proc_unlock();
        if (dead)
                proc_free(dead);
        *ret = p;
        return 0;
}

void proc_table_cancel(struct proc *p) {
        proc_lock();
        if (p->in_table) {
                list_remove(p);
                (void) unref_locked(p); /* the caller's reference is still there */
        }
        proc_unlock();
        proc_unref(p);
}

void proc_table_publish(struct proc *p, struct child *child, uint64_t timeout_ms) {
        int64_t now = mono_ms();

        proc_lock();
        /* A pid is reused only after its entry exited; the newer process wins. */
        for (struct proc *q = first; q; q = q->next)
                if (q != p && q->pid == child_pid(child))
                        q->superseded = true;
        p->child = child;
        p->pid = child_pid(child);
        p->deadline_ms = timeout_ms ? now + (int64_t) timeout_ms : 0;
        proc_unlock();
        pump_wake();
}

struct proc *proc_table_get(pid_t pid) {
        struct proc *found = NULL;

        if (pid <= 0)
                return NULL;
        proc_lock();
        for (struct proc *p = last; p; p = p->prev)
                if (p->pid == pid && !p->superseded) {
                        found = p;
                        proc_ref(p);
                        break;
                }
        proc_unlock();
        return found;
}

void proc_table_foreach(void (*f)(struct proc *p, void *userdata), void *userdata) {
        for (struct proc *p = first; p; p = p->next)
                if (p->pid > 0 && !p->superseded)
                        f(p, userdata);
}

void proc_notify(struct proc *p) {
        static const uint64_t one = 1;

        for (struct proc_waiter *w = p->waiters; w; w = w->next)
                if (w->armed) {
                        w->armed = false;
                        (void) !write(w->fd, &one, sizeof(one));
                }
}

void proc_terminate(struct proc *p, int64_t now) {
        if (p->kill_at_ms || p->exited || !p->child)
                return;
        (void) child_terminate(p->child, SIGTERM);
        p->kill_at_ms = now + PROC_KILL_GRACE_MS;
        pump_wake();
}

int proc_kill(struct proc *p, int64_t now) {
        int r;

        if (p->exited || !p->child)
                return -ESRCH;
        r = child_terminate(p->child, SIGKILL);
        if (r < 0)
                return r;
        p->kill_at_ms = now + KILL_REPEAT_MS; /* again, for what was being forked meanwhile */
        pump_wake();
        return 0;
}

static void end(struct proc *p, int64_t now) {
        p->ended = true;
        p->expire_ms = now + PROC_RETAIN_MS;
        if (p->stdin_fd >= 0) {
                close(p->stdin_fd);
                p->stdin_fd = -1;
        }
        log_info("process %d %s %d after %lld ms%s", (int) p->pid, p->timed_out ? "timed out, status" : "exit",
                 wait_status_to_exit_code(p->status), (long long) (now_ms() - p->started_at),
                 p->open_outputs ? " (its output is still held open)" : "");
        proc_notify(p);
}

/* Ends p when it can; returns when to look again (INT64_MAX: not before an event). Its
 * supervisor exited, so nothing it started runs any more (supervise.h); only output still
 * held open by such a process's pipes (it was left running: a daemon) may be drained. */
static int64_t try_end(struct proc *p, int64_t now) {
        p->kill_at_ms = 0;
        if (p->open_outputs > 0 && now < p->exited_ms + PROC_DRAIN_MS)
                return p->exited_ms + PROC_DRAIN_MS;
        end(p, now);
        return p->expire_ms;
}

/* Advances one entry; returns when it needs looking at again. */
static int64_t tick_one(struct proc *p, int64_t now) {
        int64_t next = INT64_MAX;

        if (!p->exited && p->deadline_ms && !p->timed_out) {
                if (now >= p->deadline_ms) {
                        p->timed_out = true;
                        proc_terminate(p, now);
                } else
                        next = p->deadline_ms;
        }
        /* SIGKILL to every process left, again and again until the supervisor is gone: a
         * process that was forking when the last one was sent may have a new child. */
        if (p->kill_at_ms && now >= p->kill_at_ms && !p->exited && p->child) {
                (void) child_terminate(p->child, SIGKILL);
                p->kill_at_ms = now + KILL_REPEAT_MS;
        }
        if (p->kill_at_ms && !p->exited)
                next = MIN(next, p->kill_at_ms);
        if (p->exited && !p->ended) {
                int64_t t = try_end(p, now); /* not inside MIN(): it would run twice */
                next = MIN(next, t);
        } else if (p->ended)
                next = MIN(next, p->expire_ms);
        return next;
}

int64_t proc_table_tick(int64_t now) {
        struct proc *p, *next_p, *dead = NULL;
        int64_t next = INT64_MAX;

        proc_lock();
        for (p = first; p; p = next_p) {
                next_p = p->next;
                if (p->pid == 0) /* still starting */
                        continue;
                if (p->ended && now >= p->expire_ms) {
                        struct proc *d = forget(p);
                        if (d) {
                                d->next = dead;
                                dead = d;
                        }
                        continue;
                }
                int64_t t = tick_one(p, now);
                next = MIN(next, t);
        }
        proc_unlock();
        while (dead) {
                p = dead;
                dead = p->next;
                proc_free(p);
        }
        return next;
}
