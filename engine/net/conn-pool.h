/* conn-pool.h — idle kept-alive connections to other nodes, for reuse by the next request
 * to the same node (issue 14: a relayed request otherwise pays a TCP connect and, over TLS,
 * a full handshake).
 *
 * A connection enters the pool only once its exchange ended cleanly (the answer read to the
 * end of its framing, nothing left over, the peer not asking to close), and leaves it either
 * for one new exchange or closed: a peer keeps at most CONN_POOL_PER_PEER idle connections,
 * the pool at most CONN_POOL_PEERS peers, and a connection idle for longer than the pool's
 * idle time is closed rather than reused (well below the peer's own idle timeout, 120 s, so
 * that the peer rarely closes one under a request). A connection the peer closed, reset, or
 * sent anything on while idle is dropped when taken. Thread-safe: one lock, held only to
 * move an entry in or out.
 */
#pragma once

#include <stdbool.h>

struct ssl_st; /* OpenSSL's SSL */

#define CONN_POOL_PER_PEER 4
#define CONN_POOL_PEERS 16
#define CONN_POOL_KEY_MAX 300

struct conn_pool;

/* A pool whose connections are closed after idle_ms unused. */
int conn_pool_new(long idle_ms, struct conn_pool **ret);

/* Closes every idle connection. Accepts NULL. */
void conn_pool_free(struct conn_pool *p);

/* An idle connection to key ("host:port", "+tls" for TLS) that still looks open: returns its
 * socket and its TLS in *ret_ssl (NULL for plain TCP), which the caller now owns; -ENOENT when
 * there is none. */
int conn_pool_take(struct conn_pool *p, const char *key, struct ssl_st **ret_ssl);

/* Gives the connection fd (with its TLS ssl, or NULL) back for key, idle from now. Takes
 * ownership: closes it when key already has CONN_POOL_PER_PEER idle or no peer slot is free. */
void conn_pool_put(struct conn_pool *p, const char *key, int fd, struct ssl_st *ssl);
