/* dnstcp.h — DNS over TCP for the engine's forwarder (dnsfwd.h): what a sandbox's resolver
 * falls back to when a UDP answer comes back truncated. Each connection is read one query
 * at a time (a 2-byte length, then at most DNSTCP_QUERY_MAX bytes: the rest stays in the
 * kernel until that query is answered), passed on to the upstream over a TCP connection of
 * its own, and the answer (at most 65535 bytes, as the length allows) goes back after the
 * forwarder's owner has seen it, as for UDP. Bounded: DNSTCP_CONNS connections, DNSTCP_PER_SOURCE
 * from one address; a query must come whole within DNSFWD_TIMEOUT_MS of the connection (or
 * of the previous answer), and its answer within DNSFWD_TIMEOUT_MS more, or the connection
 * is closed.
 * Driven by the forwarder's poll loop: no thread of its own.
 */
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>

#include "net/dnsfwd.h"

#define DNSTCP_CONNS 32
#define DNSTCP_PER_SOURCE 4
#define DNSTCP_QUERY_MAX 4096

struct dnstcp_conn;

struct dnstcp {
        int listen_fd;
        struct sockaddr_in upstream;
        const struct dnsfwd_ops *ops;
        void *data;
        struct dnstcp_conn *conns; /* DNSTCP_CONNS of them */
};

/* Listens on listen:53 (TCP). -errno, nothing left open, on failure. */
int dnstcp_open(struct dnstcp *t, const struct sockaddr_in *listen, const struct sockaddr_in *upstream,
                const struct dnsfwd_ops *ops, void *data);

/* Closes every connection and the listening socket; accepts a zeroed or closed t. */
void dnstcp_close(struct dnstcp *t);

/* The descriptors to poll (at most 1 + DNSTCP_CONNS, into fds) with for each its owner (into
 * owners: NULL for the listening socket); connections past their deadline are closed first. */
unsigned dnstcp_poll_fds(struct dnstcp *t, int64_t now, struct pollfd *fds, struct dnstcp_conn **owners);

/* Handles readiness of a descriptor dnstcp_poll_fds gave (owner as it gave it). */
void dnstcp_ready(struct dnstcp *t, struct dnstcp_conn *owner, short revents);
