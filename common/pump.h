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
        bool eof;         /* `from` has ended */
        bool done;        /* eof, pipe drained and `to` shut down for writing */
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
 * POLLOUT for `to` when the pipe holds bytes. */
short pump_events_from(const struct pump *p);
short pump_events_to(const struct pump *p);

/* Closes the pipe. Accepts a zeroed or half-made pump. */
void pump_done(struct pump *p);

/* Relays between a and b both ways until both directions have ended, either side fails,
 * or nothing moves for idle_ms (< 0: never). Returns 0 when both ended, -ETIMEDOUT, or the
 * -errno of the failure. Makes a and b non-blocking. */
int pump_relay(int a, int b, long idle_ms);
