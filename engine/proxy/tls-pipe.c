/* tls-pipe.c — TLS for the preview proxy's connections (issue 14): a client's connection to
 * a proxy with tls-cert, and this proxy's connection to another node's proxy that advertises
 * https://. The proxy relays plain bytes with splice() between non-blocking sockets, which a
 * TLS stream cannot take part in (and this kernel may have no kTLS), so each TLS connection
 * gets a thread that runs TLS over the TCP socket and passes the plain bytes through one end
 * of a socketpair; the proxy takes the other end as the client's (or the tunnel's) socket and
 * relays exactly as for a plain connection.
 *
 * Bounded: one 16 KiB buffer each way (TLS's own records besides); a buffer is refilled only
 * once the other side took all of it, so a slow reader on either side stops this thread from
 * reading the other (back-pressure) without ever blocking it: it waits in poll() for what
 * either direction needs. It ends when the plain side has closed and what it sent went out
 * (close_notify after it), or on any error of either socket; the proxy's own timeouts and
 * its stop close the plain side. A side that hangs up while this thread waits only on the
 * other (bytes it holds for a client that reads nothing) is no longer polled — its lasting
 * POLLHUP would spin the loop — and from then on the pipe ends after FLUSH_MS without
 * progress, so a pipe never outlives its connection for long, whatever the client does.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "net/tls.h"
#include "proxy/proxy-internal.h"
#include "thread.h"
#include "timeutil.h"

#define BUF 16384
#define HANDSHAKE_MS 10000
#define FLUSH_MS 10000 /* after a side hung up: the longest wait without progress */
#define THREAD_STACK (128 * 1024)

struct dir {
        char buf[BUF];
        size_t off, len;
        bool eof;     /* its source ended */
        bool closed;  /* ... and its destination was told */
};

struct tls_pipe {
        SSL *ssl;
        int net;      /* the TCP socket TLS runs over */
        int plain;    /* this side of the socketpair */
        bool server;  /* the handshake is still to do, as the server */
        char peer[64];
        struct dir up;   /* net → plain */
        struct dir down; /* plain → net */
        short want_net, want_plain;
        bool net_gone, plain_gone; /* hung up while not waited on: polled no more */
        int64_t gone_at;           /* when the first went */
};

/* One SSL_read or SSL_write: > 0 bytes, 0 at the peer's end of stream, -EAGAIN (with the
 * poll event it waits for added to want_net) or -EPROTO. */
static int ssl_io(struct tls_pipe *t, bool out, void *data, size_t len) {
        int ret;

        ERR_clear_error();
        ret = out ? SSL_write(t->ssl, data, (int) len) : SSL_read(t->ssl, data, (int) len);
        if (ret > 0)
                return ret;
        switch (SSL_get_error(t->ssl, ret)) {
        case SSL_ERROR_WANT_READ:
                t->want_net |= POLLIN;
                return -EAGAIN;
        case SSL_ERROR_WANT_WRITE:
                t->want_net |= POLLOUT;
                return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        default:
                ERR_clear_error();
                return -EPROTO;
        }
}

/* Moves what it can from the TLS side to the plain one. false: the pipe is over. */
static bool step_up(struct tls_pipe *t, bool *progress) {
        struct dir *d = &t->up;
        ssize_t k;

        if (d->len == 0 && !d->eof) {
                k = ssl_io(t, false, d->buf, BUF);
                if (k > 0) {
                        d->off = 0;
                        d->len = (size_t) k;
                        *progress = true;
                } else if (k == 0) {
                        d->eof = *progress = true;
                } else if (k != -EAGAIN)
                        return false;
        }
        if (d->len > 0) {
                k = send(t->plain, d->buf + d->off, d->len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return false;
                if (k > 0) {
                        d->off += (size_t) k;
                        d->len -= (size_t) k;
                        *progress = true;
                } else
                        t->want_plain |= POLLOUT;
        }
        if (d->eof && d->len == 0 && !d->closed) {
                (void) shutdown(t->plain, SHUT_WR); /* the client's half-close, passed on */
                d->closed = true;
        }
        return true;
}

/* Moves what it can from the plain side to the TLS one. false: the pipe is over (an error,
 * or the plain side ended and all of it went out). */
static bool step_down(struct tls_pipe *t, bool *progress) {
        struct dir *d = &t->down;
        ssize_t k;

        if (d->len == 0 && !d->eof) {
                k = recv(t->plain, d->buf, BUF, MSG_DONTWAIT);
                if (k > 0) {
                        d->off = 0;
                        d->len = (size_t) k;
                        *progress = true;
                } else if (k == 0)
                        d->eof = *progress = true;
                else if (errno == EAGAIN || errno == EINTR)
                        t->want_plain |= POLLIN;
                else
                        return false;
        }
        if (d->len > 0) {
                k = ssl_io(t, true, d->buf + d->off, d->len);
                if (k > 0) {
                        d->off += (size_t) k;
                        d->len -= (size_t) k;
                        *progress = true;
                } else if (k != -EAGAIN)
                        return false;
        }
        return !(d->eof && d->len == 0);
}

static void pipe_free(struct tls_pipe *t) {
        if (t->ssl && !t->down.len)
                (void) SSL_shutdown(t->ssl); /* close_notify, best effort: the socket is non-blocking */
        SSL_free(t->ssl);
        close(t->net);
        close(t->plain);
        free(t);
}

static void *pipe_main(void *arg) {
        struct tls_pipe *t = arg;
        int r;

        if (t->server) {
                r = tls_handshake(t->ssl, t->net, true, t->plain, HANDSHAKE_MS);
                if (r < 0) {
                        char why[300];
                        log_debug("preview: no TLS with %s: %s", t->peer,
                                  r == -EPROTO ? tls_error(t->ssl, why, sizeof(why)) : strerror(-r));
                        SSL_free(t->ssl);
                        t->ssl = NULL;
                        pipe_free(t);
                        return NULL;
                }
        }
        for (;;) {
                bool progress = false;

                t->want_net = t->want_plain = 0;
                if (!step_up(t, &progress) || !step_down(t, &progress))
                        break;
                if (progress) {
                        if (t->gone_at) /* FLUSH_MS is for a stall: a slow reader that reads goes on */
                                t->gone_at = mono_ms();
                        continue;
                }
                /* A side that ended or hung up and is not waited on is left out: its lasting
                 * POLLHUP would wake this loop for nothing until the other side ends too. */
                struct pollfd p[2] = {{.fd = (t->up.eof || t->net_gone) && !t->want_net ? -1 : t->net, .events = t->want_net},
                                      {.fd = (t->down.eof || t->plain_gone) && !t->want_plain ? -1 : t->plain,
                                       .events = t->want_plain}};
                int64_t left = t->gone_at ? t->gone_at + FLUSH_MS - mono_ms() : -1;
                int n = poll(p, 2, t->gone_at ? (int) (left > 0 ? left : 0) : -1);

                if (n < 0 && errno != EINTR)
                        break;
                if (n == 0)
                        break; /* a side hung up, and nothing moved for FLUSH_MS */
                /* An error on either side ends the pipe. */
                if (((p[0].revents | p[1].revents) & (POLLERR | POLLNVAL)))
                        break;
                if ((p[0].revents & POLLHUP) && !t->want_net && !t->net_gone) {
                        t->net_gone = true;
                        t->gone_at = t->gone_at ? t->gone_at : mono_ms();
                }
                if ((p[1].revents & POLLHUP) && !t->want_plain && !t->plain_gone) {
                        t->plain_gone = true;
                        t->gone_at = t->gone_at ? t->gone_at : mono_ms();
                }
        }
        pipe_free(t);
        return NULL;
}

int tls_pipe_start(SSL *ssl, int net, bool server, const char *peer, int *ret_plain) {
        struct tls_pipe *t;
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                SSL_free(ssl);
                close(net);
                return r;
        }
        t = calloc(1, sizeof(*t));
        if (!t || fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(net, F_SETFL, fcntl(net, F_GETFL) | O_NONBLOCK) < 0) {
                r = t ? -errno : -ENOMEM;
                free(t);
                SSL_free(ssl);
                close(net);
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        *t = (struct tls_pipe){.ssl = ssl, .net = net, .plain = sv[1], .server = server};
        snprintf(t->peer, sizeof(t->peer), "%s", peer);
        r = thread_start_detached(pipe_main, t, THREAD_STACK);
        if (r < 0) {
                close(sv[0]);
                SSL_free(t->ssl);
                t->ssl = NULL;
                pipe_free(t);
                return r;
        }
        *ret_plain = sv[0];
        return 0;
}
