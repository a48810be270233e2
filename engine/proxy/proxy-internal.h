/* proxy-internal.h — what the preview proxy's files (proxy.c, route.c, relay.c) share. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "http-parse.h"
#include "id.h"

#define PROXY_IN_MAX (HTTP_MAX_HEAD + 64 * 1024) /* a head and some body bytes */

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
        char *in;                  /* PROXY_IN_MAX bytes: [0, fwd) checked and due upstream, [fwd, len) not yet looked at */
        size_t len, fwd;
        struct pconn *prev, *next; /* in the proxy's list of open connections */
};

/* A failure answered to the client by the proxy itself. */
struct perr {
        int status;
        const char *code;
        char message[512];
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

/* Relays c until either side ends, the connection idles out, or a request fails a check
 * (answered, if it can be, then the connection ends). The first request is in c->in. */
void relay_run(struct pconn *c);

/* Copies head (head_len bytes at src) to dst without its X-Ai2in-Traffic-Token lines;
 * dst may be src. Returns the new length. */
size_t head_strip_token(char *dst, const char *src, size_t head_len);
