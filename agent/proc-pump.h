/* proc-pump.h — the one thread that moves every process's output into its ring and
 * notices every exit.
 *
 * Why one epoll thread rather than one thread per process: the work per event is a read
 * and a memcpy, which one thread does at memory speed for all processes; idle background
 * processes then cost no thread stack; and every timer (timeouts, SIGTERM → SIGKILL, the
 * drain after an exit, retention) is kept in one place, proc_table_tick(), driven by one
 * clock. Readers never slow it: it only takes the table lock to append.
 */
#pragma once

#include "proc-table.h"

/* Starts the pump thread. Call once, after process_reaper_start(). Returns 0 or -errno. */
int pump_start(void);

/* Takes over p's output fds (non-blocking read ends; err_fd -1 for a terminal, whose
 * output all comes through out_fd as out_kind) and starts watching its child's exit; each
 * holds a reference to p until the pump is done with it. Output read after p ended is
 * discarded, but the fds are read until EOF so that a background grandchild writing to
 * them is never blocked or killed by SIGPIPE. p must be published. Returns 0 when the
 * pump owns the fds, or -errno with nothing taken over. */
int pump_add(struct proc *p, int out_fd, enum proc_stream out_kind, int err_fd);

/* Makes the pump run proc_table_tick() soon: a timer was set from another thread. */
void pump_wake(void);
