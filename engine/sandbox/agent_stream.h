/* agent_stream.h — one HTTP/1.1 exchange with a sandbox's agent over its unix socket: the
 * engine's only client of the agents (the routes it forwards — processes, PTYs, files — and
 * the small JSON calls of agent_client.h), and of other nodes when it forwards a request to
 * the node that owns its sandbox (agent_stream_open_tcp).
 *
 * Forwarding shapes it: the engine pulls the agent's answer a block at a time when its own
 * client is ready for more (libmicrohttpd's content reader), and pushes an upload to the
 * agent as it arrives. So this is a small blocking client: send a head, send the body
 * (Content-Length or chunked), read the answer's head, then read the body (Content-Length,
 * chunked, or up to the end of the connection) block by block, all with the strict shared
 * parser. Memory per exchange is a fixed buffer.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "error.h"

struct agent_stream;
struct conn_pool;  /* net/conn-pool.h */
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* Connects to the agent at socket_path and sends the request head. body_len is the
 * request body's length, or -1 for a chunked body of unknown length. watch_fd is the
 * engine's client socket (or -1): every wait of this exchange (connecting, sending, the
 * answer's head and body) ends when it hangs up. total_ms (-1: none) bounds the whole
 * exchange, body included, however the agent dribbles it: past it every call fails with
 * -ETIMEDOUT (504 in e). Errors: the agent not reachable → 502 in e; its backlog full for
 * 5 s → 503. Sending stalls of 60 s end the exchange. */
int agent_stream_open(const char *socket_path, const char *method, const char *target, const char *content_type,
                      int64_t body_len, int watch_fd, long total_ms, struct agent_stream **ret, struct error *e);

/* A request, for agent_stream_open_tcp. */
struct agent_stream_request {
        const char *method;
        const char *target;        /* path and query, percent-encoded */
        const char *extra_headers; /* complete "Name: value\r\n" lines to add, or NULL */
        const char *content_type;  /* or NULL */
        int64_t body_len;          /* -1: a chunked body of unknown length */
        struct ssl_ctx_st *tls;    /* TLS (net/tls.h: tls_client_new) with the host verified, or NULL */
        struct conn_pool *pool;    /* kept-alive connections to take from and give back to, or NULL */
};

/* Like agent_stream_open, to another engine's API at host:port over TCP (a request forwarded
 * to the node that owns a sandbox, api/relay.c): the same strict reading of its answer, as
 * from any peer not trusted. peer names it in messages ("node a (http://…)"). Connecting
 * takes at most connect_ms: a node that cannot be reached is 503 node_down in e; its other
 * failures are 502 node_error, a TLS handshake that fails (the peer's certificate not trusted,
 * not for host, or no TLS at all) among them. No deadline on the whole exchange (streams
 * last).
 *
 * With q->pool, an idle connection to host:port is used when there is one, and the
 * connection goes back to the pool when the stream is freed after a clean end (see
 * agent_stream_free). A kept connection the peer closed under the request is replaced by a
 * new one once: when sending the head fails (the peer cannot have taken the request), or,
 * for a GET without a body only, when it closes without a byte of answer (for any other
 * request that could run it twice: the error is returned). */
int agent_stream_open_tcp(const char *host, const char *port, const char *peer, long connect_ms,
                          const struct agent_stream_request *q, int watch_fd, struct agent_stream **ret, struct error *e);

/* Sends part of the request body (framed as a chunk for chunked bodies). */
int agent_stream_send(struct agent_stream *s, const void *data, size_t len, struct error *e);

/* Ends the request body (the last chunk of a chunked body) and reads the answer's head:
 * its status, Content-Type and framing. Waits at most timeout_ms for the head. */
int agent_stream_finish(struct agent_stream *s, long timeout_ms, struct error *e);

/* The answer's status, Content-Type ("" if none) and Content-Length (-1 if not known). */
int agent_stream_status(const struct agent_stream *s);
const char *agent_stream_content_type(const struct agent_stream *s);
int64_t agent_stream_content_length(const struct agent_stream *s);

/* The seconds of the answer's "Retry-After" (a 503 of a sandbox whose pids limit is
 * reached, say), or 0 when it has none (or not in delay-seconds form). */
int agent_stream_retry_after(const struct agent_stream *s);

/* Reads up to len bytes of the answer's body. Blocks until some arrive, the body ends
 * (returns 0), or watch_fd (if >= 0: the engine's client socket) hangs up (-ECONNRESET).
 * -EPROTO when the agent broke the framing or went away mid-body (-ECONNABORTED: reset). */
ssize_t agent_stream_read(struct agent_stream *s, void *buf, size_t len, int watch_fd);

/* Bounds each wait of agent_stream_read() for more body bytes to timeout_ms (-ETIMEDOUT
 * then); the default is to wait as long as the watched client stays. */
void agent_stream_set_read_timeout(struct agent_stream *s, long timeout_ms);

/* Reads the whole (small) body, at most max bytes, into a NUL-terminated malloc'd string.
 * -E2BIG past max; -EFBIG when the agent sends more than 2 max + 64 KiB in all (framing). */
int agent_stream_read_all(struct agent_stream *s, size_t max, char **ret, size_t *ret_len);

/* Takes the connection out of s (for an answer "101 Switching Protocols", after which the
 * socket carries raw bytes): returns the socket (non-blocking) and moves the bytes already
 * read past the answer's head to *ret_pending (which the caller frees). s can then only
 * be freed. -ENOMEM, nothing taken, when the bytes cannot be kept; -EOPNOTSUPP for a TLS
 * connection (its bytes are not raw). */
int agent_stream_detach(struct agent_stream *s, struct buf *ret_pending);

/* Closes the connection, or, for a stream of a pool (agent_stream_request.pool) whose request
 * went out whole and whose answer was read to its end with nothing after it, over a
 * connection the peer did not ask to close, gives it back to the pool. Accepts NULL. */
void agent_stream_free(struct agent_stream *s);

static inline void agent_stream_freep(struct agent_stream **s) { agent_stream_free(*s); }
#define _cleanup_agent_stream_ _cleanup_(agent_stream_freep)
