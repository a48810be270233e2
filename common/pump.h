/* pump.h — one direction of a byte relay between two non-blocking sockets, through a pipe
 * with splice(): the bytes never pass through user space. Two pumps make a tunnel (the
 * agent's side of a preview connection); the engine's proxy uses one for the answers of a
 * sandbox's server while it reads the requests itself.
 *
 * A pump never blocks: pump_step() moves what it can and says what to poll() for next.
 * When its source ends, it drains the pipe and then shuts its destination down for
 * writing, so that a half-close travels through the relay.
 */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct pump {
        int from, to;     /* borrowed, non-blocking */
        int pipe[2];      /* owned */
        size_t in_pipe;   /* bytes taken from `from` and not yet given to `to` */
        bool full;        /* the pipe took nothing more: its slots (one per packet) may be used up
                           * before PIPE_SIZE bytes; cleared when `to` takes some */
        bool eof;         /* `from` has ended */
        bool done;        /* eof, pipe drained and `to` shut down for writing (unless keep_open) */
        bool keep_open;   /* set by the caller: `to` is not shut down at the end */
        uint64_t moved;   /* bytes given to `to` so far */
};

/* Sets p up to move bytes from `from` to `to` (both sockets, non-blocking). -errno if no
 * pipe could be made. */
int pump_init(struct pump *p, int from, int to);

/* Moves as much as it can without blocking. Returns the number of bytes that reached `to`
 * (0: nothing could move now), or -errno when either side failed (-EPIPE, -ECONNRESET...).
 * Once p->done, returns 0. */
ssize_t pump_step(struct pump *p);

/* The poll() events that would let p move on: POLLIN for `from` when the pipe has room,
 * POLLOUT for `to` when the pipe holds bytes. An fd with no events must be left out of
 * poll() (fd -1), or its hang-up would wake the caller for ever. */
short pump_events_from(const struct pump *p);
short pump_events_to(const struct pump *p);

/* Closes the pipe. Accepts a zeroed or half-made pump. */
void pump_done(struct pump *p);

/* Relays between a and b both ways until both directions have ended, either side fails,
 * a hangs up entirely (closed, not only shut down for writing: nothing can reach it any
 * more), or nothing moves for idle_ms (< 0: never). Returns 0 when both ended, -ECONNRESET
 * when a hung up, -ETIMEDOUT, or the -errno of the failure. Makes a and b non-blocking. */
int pump_relay(int a, int b, long idle_ms);
