/* proxy-internal.h — what the preview proxy's files share: proxy.c (listener, a thread per
 * connection until its tunnel is open), route.c (where a request goes), relay.c (one
 * connection's relay, step by step), loop.c (the threads that drive the relays). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "http-parse.h"
#include "id.h"
#include "pump.h"

#define PROXY_IN_MAX (HTTP_MAX_HEAD + 64 * 1024) /* a head and some body bytes */

/* HEAD: expecting a request head; LENGTH, CHUNKED: inside its body; UPGRADE: an Upgrade
 * request went up, nothing more does until the answer's status says 101 (RAW: bytes both
 * ways from then on) or not (HEAD again). */
enum relay_mode { MODE_HEAD, MODE_LENGTH, MODE_CHUNKED, MODE_UPGRADE, MODE_RAW };

/* A failure answered to the client by the proxy itself. */
struct perr {
        int status;
        const char *code;
        char message[512];
};

/* The relay state of a connection whose tunnel is open (relay.c). */
struct relay {
        enum relay_mode mode;
        unsigned requests;         /* heads passed on so far */
        uint64_t left;             /* MODE_LENGTH: body bytes still to pass */
        struct http_chunked chunked;
        struct pump down;          /* sandbox → client */
        bool client_eof, up_shut;
        bool failed;               /* a request failed its check: answer fail, then end */
        struct perr fail;
        int64_t last_io, last_touch, fail_deadline, recheck_at;
        uint32_t want_c, want_u;   /* what the connection waits for on each fd (poll events) */
};

struct loop;

/* One client connection. */
struct pconn {
        struct engine *eng;
        struct proxy *proxy;
        int cfd;                   /* the client, non-blocking */
        int ufd;                   /* the tunnel to the sandbox's port, or -1 */
        char client[64];           /* "ip:port", for the log */
        char id[SANDBOX_ID_LEN + 1];
        uint16_t port;
        bool tunnel;               /* counted among its sandbox's tunnels (under the proxy's lock) */
        bool waiting;              /* has not sent its first head yet (under the proxy's lock) */
        uint32_t addr;             /* the client's IPv4 address, network order */
        char token[48];            /* the sandbox's traffic token ("" = open) */
        char ip[16];               /* the sandbox's address ("" if it has none) */
        char owner[256];           /* HOST:PORT of the owner node's preview proxy, for another node's sandbox; else "" */
        char *in;                  /* PROXY_IN_MAX bytes: [0, fwd) checked and due upstream, [fwd, len) not yet looked at */
        size_t len, fwd;
        struct pconn *prev, *next; /* in the proxy's list of open connections */
        struct relay rl;
        /* Owned by the loop that drives it (loop.c): */
        struct pconn *lnext;
        uint32_t reg_c, reg_u;     /* the events registered with the loop's epoll (UINT32_MAX: not registered) */
        bool dead;                 /* ended: freed after the loop's batch of events */
        bool answer;               /* ended with rl.fail to send to the client */
};

int perr_set(struct perr *pe, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fills pe for a request the parser refused with err (http_request_parse_head). */
int perr_from_parse(struct perr *pe, int err);

/* Sends the error pe as a plain-text answer and ends the connection's sending side. */
void proxy_send_error(struct pconn *c, const struct perr *pe);

/* Checks one request head for connection c: its Host must name c's sandbox and port (or,
 * for the first request, sets them), the traffic token must match for a secure sandbox.
 * first: the connection has no sandbox yet; the sandbox is then looked up (state checks)
 * and its token kept in c. */
int route_check(struct pconn *c, const struct http_request *req, bool first, struct perr *pe);

/* Connects c to its sandbox's port: c->ufd. Straight to the sandbox's address when a server
 * listens there (one relay: this one); else through a tunnel the sandbox's agent opens from
 * inside (servers bound to 127.0.0.1; or nothing listening: the agent's 502 says so). Bytes
 * the agent sent past its answer are written to the client. */
int route_connect(struct pconn *c, struct perr *pe);

enum relay_result {
        RELAY_GO_ON,   /* wait for c->rl.want_c / want_u, or the next tick */
        RELAY_END,     /* close the connection */
        RELAY_ANSWER,  /* send c->rl.fail to the client (it may block: not on a loop), then close */
};

/* Prepares c's relay once its tunnel is open; the first request is in c->in. -errno if no
 * pipe could be made. */
int relay_begin(struct pconn *c);

/* Moves what the ready fds allow: crev and urev are the poll events that came on the
 * client and the tunnel (0 and 0 for a timer tick, or the first step). Never blocks. */
enum relay_result relay_step(struct pconn *c, uint32_t crev, uint32_t urev, int64_t now);

/* Frees what relay_begin made. */
void relay_end(struct pconn *c);

/* The loops: threads with an epoll set each, which drive every open relay. */
int loops_start(struct loop **ret, unsigned n);

/* Stops the loops (after their connections have ended) and frees them. */
void loops_stop(struct loop *loops, unsigned n);

/* Hands c (relay begun, first step done, RELAY_GO_ON) over to one of the loops, which owns
 * it from then on (and ends it if its fds cannot be registered). */
void loop_add(struct loop *loops, unsigned n, struct pconn *c);

/* Ends a connection: unregisters it from the proxy, closes its fds, frees it (proxy.c).
 * With pe: sends that answer first (blocking, bounded). */
void conn_finish(struct pconn *c, const struct perr *pe);

/* Runs TLS (ssl, set up on the TCP socket net) on a thread of its own and returns in
 * *ret_plain the socket (blocking, a socketpair's end) that carries its plain bytes both ways
 * (tls-pipe.c). server: the handshake, as the server, is still to do (within 10 s); else it
 * is done. Owns ssl and net from then on, also on failure (-errno). peer names the other end
 * in the debug log. */
struct ssl_st;
int tls_pipe_start(struct ssl_st *ssl, int net, bool server, const char *peer, int *ret_plain);

/* Copies head (head_len bytes at src) to dst without its X-Ai2in-Traffic-Token lines;
 * dst may be src. Returns the new length. */
size_t head_strip_token(char *dst, const char *src, size_t head_len);
