/* dnsfwd.h — the engine's DNS forwarder: one thread with a UDP and a TCP socket on the
 * bridge's address, port 53, the nameserver of every sandbox's /etc/resolv.conf. It passes each
 * query on to the upstream resolver from a socket of its own (a fresh source port and a
 * random ID per query: an answer from anyone but the upstream, or to another query, is not
 * taken), and each answer back, after its owner (domains.c) has seen it: that is where the
 * addresses of a sandbox's allowed domains are let through, before the sandbox learns them.
 *
 * Bounded: DNSFWD_PENDING queries in flight, DNSFWD_PER_SOURCE of them from one address
 * (more are refused: one sandbox cannot starve the others' DNS), each forgotten after
 * DNSFWD_TIMEOUT_MS (the sandbox's resolver asks again). TCP on the same port too, for a
 * resolver whose UDP answer came back truncated (dnstcp.h), driven by the same thread.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "net/dnsmsg.h"

#define DNSFWD_PENDING 256
#define DNSFWD_PER_SOURCE 32
#define DNSFWD_TIMEOUT_MS 5000

struct dnsfwd;

struct dnsfwd_ops {
        /* Whether a query from src (network order) about name is passed on (true) or refused;
         * name NULL: whether src may ask anything at all (a TCP connection being accepted). */
        bool (*may_ask)(void *data, uint32_t src, const char *name);
        /* The answer msg (len bytes) to q, about to go back to src; may lower TTLs in it in
         * place. < 0: the sandbox gets SERVFAIL instead. Runs on the forwarder's thread. */
        int (*answered)(void *data, uint32_t src, const struct dnsmsg_question *q, uint8_t *msg, size_t len);
};

/* Binds listen_ip:53 (UDP and TCP) and starts the thread, which sends to upstream:53. ops and data
 * must outlive the forwarder. */
int dnsfwd_start(const char *listen_ip, const char *upstream, const struct dnsfwd_ops *ops, void *data, struct dnsfwd **ret,
                 struct error *e);

/* Stops the thread and closes every socket; accepts NULL. */
void dnsfwd_stop(struct dnsfwd *f);
