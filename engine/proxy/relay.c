/* relay.c — one preview connection once its tunnel is open.
 *
 * Client → sandbox: bytes are looked at before they go: each request head is checked
 * (route_check) and sent without the traffic token, then its body is passed on by its
 * framing (Content-Length, or chunked, followed through http_chunked_decode so that the next
 * head is found where the server will find it). After a request with an Upgrade header
 * (only as the first request, and without a body) nothing more goes up until the server's
 * answer starts: "101" makes the rest of the connection raw bytes, anything else keeps
 * checking requests. Sandbox → client: a pump
 * (splice, no copy).
 *
 * A request that fails its check goes no further: the server's side is shut for writing,
 * its answers to the earlier requests pass on until it closes (5 s at most), then the proxy
 * answers the failed request itself and the connection ends.
 */
#include "proxy/proxy-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "pump.h"
#include "sandbox/sandbox.h"
#include "timeutil.h"

#define IDLE_MS (10 * 60 * 1000) /* nothing either way for this long ends a connection */
#define TOUCH_EVERY_MS 1000      /* activity is written at most this often */
#define FAIL_DRAIN_MS 5000       /* a failed request waits this long at most for the answers before it */

/* The proxy learns whether an Upgrade took by peeking at the start of the server's next
 * answer, so that answer must be the Upgrade's own: only as the connection's first request
 * (clients open a connection of its own for a WebSocket anyway); and with no body, which the
 * server would read but the proxy would not follow while it waits. */
static int check_upgrade(struct relay *rl, const struct http_request *req) {
        if (rl->requests > 0)
                return perr_set(&rl->fail, 400, "bad_request",
                                "an Upgrade request must be the first on its connection: open a new connection for it");
        if (req->chunked || req->content_length > 0)
                return perr_set(&rl->fail, 400, "bad_request", "an Upgrade request cannot have a body");
        return 0;
}

/* Checks and rewrites the head at c->in + c->fwd, which is complete. */
static int take_head(struct pconn *c) {
        struct relay *rl = &c->rl;
        struct http_request req = {0};
        size_t head_len, new_len;
        int r;

        r = http_request_parse_head(&req, c->in + c->fwd, c->len - c->fwd, &head_len);
        if (r == 0)
                return 0; /* more to come (the parser refuses a head over HTTP_MAX_HEAD itself) */
        if (r < 0)
                return perr_from_parse(&rl->fail, r);
        if (head_len > c->len - c->fwd) { /* the parser's contract; checked, not trusted */
                http_request_done(&req);
                return perr_set(&rl->fail, 500, "internal", "request head longer than what was read");
        }
        r = route_check(c, &req, false, &rl->fail);
        if (r >= 0 && http_request_header(&req, "Upgrade"))
                r = check_upgrade(rl, &req);
        if (r >= 0) {
                if (http_request_header(&req, "Upgrade"))
                        rl->mode = MODE_UPGRADE;
                else if (req.chunked) {
                        rl->mode = MODE_CHUNKED;
                        rl->chunked = (struct http_chunked){0};
                } else if (req.content_length > 0) {
                        rl->mode = MODE_LENGTH;
                        rl->left = req.content_length;
                }
                rl->requests++;
                /* The owner node's proxy checks the token again: it goes on there. */
                new_len = *c->owner ? head_len : head_strip_token(c->in + c->fwd, c->in + c->fwd, head_len);
                memmove(c->in + c->fwd + new_len, c->in + c->fwd + head_len, c->len - c->fwd - head_len);
                c->len -= head_len - new_len;
                c->fwd += new_len;
                r = 1;
        }
        http_request_done(&req);
        return r;
}

/* Looks at what the client sent, as far as it can; sets rl->failed on a bad request. */
static void look(struct pconn *c) {
        struct relay *rl = &c->rl;

        while (c->fwd < c->len && !rl->failed) {
                size_t avail = c->len - c->fwd, used, data_len;
                int r;

                switch (rl->mode) {
                case MODE_HEAD:
                        r = take_head(c);
                        if (r < 0)
                                rl->failed = true;
                        if (r <= 0)
                                return;
                        break;
                case MODE_LENGTH:
                        used = avail < rl->left ? avail : (size_t) rl->left;
                        c->fwd += used;
                        rl->left -= used;
                        if (rl->left == 0)
                                rl->mode = MODE_HEAD;
                        break;
                case MODE_CHUNKED:
                        r = http_chunked_decode(&rl->chunked, c->in + c->fwd, avail, SIZE_MAX, &used, &data_len);
                        if (r < 0 || used > avail) {
                                /* Nothing of the bad framing goes up: the server has the request
                                 * up to the last good byte, then its end. */
                                perr_set(&rl->fail, 400, "bad_request", "malformed chunked request body");
                                rl->failed = true;
                                return;
                        }
                        c->fwd += used;
                        if (r == 1)
                                rl->mode = MODE_HEAD;
                        break;
                case MODE_UPGRADE:
                        return; /* held until the server has answered */
                case MODE_RAW:
                        c->fwd = c->len;
                        break;
                }
        }
}

/* Sends what is due upstream. Returns bytes sent, or -errno. */
static ssize_t push(struct pconn *c) {
        ssize_t k;

        if (c->fwd == 0)
                return 0;
        if (c->fwd > c->len || c->len > PROXY_IN_MAX)
                return -EFAULT; /* never sends or moves past what was read */
        k = send(c->ufd, c->in, c->fwd, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        memmove(c->in, c->in + k, c->len - (size_t) k);
        c->len -= (size_t) k;
        c->fwd -= (size_t) k;
        return k;
}

/* Reads from the client. Returns bytes read, 0 if none now, -errno; sets client_eof. */
static ssize_t pull(struct pconn *c) {
        struct relay *rl = &c->rl;
        ssize_t k;

        if (rl->client_eof || c->len == PROXY_IN_MAX)
                return 0;
        k = recv(c->cfd, c->in + c->len, PROXY_IN_MAX - c->len, 0);
        if (k == 0)
                rl->client_eof = true;
        if (k < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        c->len += (size_t) k;
        return k;
}

/* After an Upgrade request: the first bytes of the server's answer say whether the
 * connection is now the server's own protocol (101) or still HTTP. They are peeked at, not
 * taken, before the pump passes them on. 1 when decided, 0 to wait for more. */
static int upgrade_decide(struct relay *rl, int ufd) {
        char status[13];
        ssize_t k = recv(ufd, status, 12, MSG_PEEK | MSG_DONTWAIT);

        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k > 0 && k < 12)
                return 0;
        status[k > 0 ? k : 0] = 0;
        /* "HTTP/1.1 101": raw from now on; anything else (or the end): the requests go on. */
        rl->mode = k == 12 && strncmp(status, "HTTP/1.", 7) == 0 && strncmp(status + 8, " 101", 4) == 0 ? MODE_RAW : MODE_HEAD;
        return 1;
}

int relay_begin(struct pconn *c) {
        int64_t now = mono_ms();
        int r;

        c->rl = (struct relay){.last_io = now};
        r = pump_init(&c->rl.down, c->ufd, c->cfd);
        if (r < 0)
                return r;
        (void) fcntl(c->cfd, F_SETFL, fcntl(c->cfd, F_GETFL) | O_NONBLOCK);
        (void) fcntl(c->ufd, F_SETFL, fcntl(c->ufd, F_GETFL) | O_NONBLOCK);
        look(c); /* the first request */
        return 0;
}

void relay_end(struct pconn *c) {
        pump_done(&c->rl.down);
}

/* What c waits for next, on each fd. */
static void want(struct pconn *c, int64_t now) {
        struct relay *rl = &c->rl;
        bool deciding = rl->mode == MODE_UPGRADE;

        rl->want_c = deciding ? 0 : pump_events_to(&rl->down);
        if (!rl->client_eof && !rl->failed && c->len < PROXY_IN_MAX && !deciding)
                rl->want_c |= POLLIN;
        /* A status line that came in pieces is looked at again at the next tick, not at every
         * wake-up its unread bytes would cause; and only once the Upgrade request is all sent
         * (relay_step looks at it only then: asking earlier would spin). */
        rl->want_u = deciding ? (c->fwd == 0 && now >= rl->recheck_at ? POLLIN : 0) : pump_events_from(&rl->down);
        if (c->fwd > 0)
                rl->want_u |= POLLOUT;
}

enum relay_result relay_step(struct pconn *c, uint32_t crev, uint32_t urev, int64_t now) {
        struct relay *rl = &c->rl;
        ssize_t a = 0, b, d = 0;

        if ((crev & (POLLHUP | POLLERR)) || (urev & POLLERR))
                return RELAY_END; /* the client is gone for good, or the tunnel broke */
        /* Only what is ready: each syscall that would say EAGAIN costs as much as the work on
         * a small request. A request read is checked and sent on at once. */
        if (crev & POLLIN) {
                a = pull(c);
                if (a > 0)
                        look(c);
        }
        if (rl->mode == MODE_UPGRADE && c->fwd == 0 && ((urev & (POLLIN | POLLHUP)) || now >= rl->recheck_at)) {
                /* Nothing comes down until the answer to an Upgrade request is known. */
                if (upgrade_decide(rl, c->ufd) > 0)
                        look(c); /* back to HEAD: what the client sent meanwhile */
                else
                        rl->recheck_at = now + 1;
        }
        b = push(c);
        if (rl->mode != MODE_UPGRADE && ((urev & (POLLIN | POLLHUP)) || (crev & POLLOUT)))
                d = pump_step(&rl->down);
        if (a < 0 || b < 0 || d < 0)
                return RELAY_END;
        if (a > 0 || b > 0 || d > 0) {
                rl->last_io = now;
                if (now - rl->last_touch >= TOUCH_EVERY_MS) {
                        sandbox_touch(c->eng, c->id);
                        rl->last_touch = now;
                }
        } else if (now - rl->last_io >= IDLE_MS)
                return RELAY_END;

        if ((rl->client_eof || rl->failed) && c->fwd == 0 && !rl->up_shut) {
                /* A cut request, or one that failed its check: nothing more goes up. The
                 * server finishes what it answers and closes. */
                (void) shutdown(c->ufd, SHUT_WR);
                rl->up_shut = true;
                if (rl->failed) {
                        rl->fail_deadline = now + FAIL_DRAIN_MS;
                        rl->down.keep_open = true; /* the client still gets the proxy's answer */
                }
        }
        if (rl->failed && c->fwd == 0 && (rl->down.done || now >= rl->fail_deadline))
                /* The earlier answers are out (or the server keeps the connection open
                 * regardless): the failed request gets its answer, if nothing is half-way. */
                return rl->down.in_pipe == 0 ? RELAY_ANSWER : RELAY_END;
        if (rl->down.done && !rl->failed)
                return RELAY_END; /* the server ended the connection: so does the proxy */
        want(c, now);
        return RELAY_GO_ON;
}
