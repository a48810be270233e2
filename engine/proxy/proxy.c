/* proxy.c — see proxy.h: the listener, the connections' threads and the answers the proxy
 * gives itself. route.c decides where a request goes, relay.c moves the bytes. */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "net/tls.h"
#include "proxy/proxy-internal.h"
#include "thread.h"
#include "timeutil.h"

#define MAX_CONNECTIONS 4000
/* Tunnels into one sandbox at once: below the agent's own cap (512 connections), so that
 * strangers with a preview URL cannot take every connection the owner's calls need. */
#define MAX_PER_SANDBOX 256
/* Connections that have not sent their first head yet, from one address and in all: idle
 * connections opened by the thousand (slowloris) cannot crowd out the others. */
#define MAX_WAITING_PER_ADDRESS 64
#define MAX_WAITING 1000
#define FIRST_HEAD_TIMEOUT_S 30 /* a client has this long to send its first request head */
#define SEND_ERROR_MS 5000
#define DRAIN_MS 2000           /* after an error answer, the unread request is read and dropped for this long... */
#define DRAIN_MAX (4 << 20)     /* ... or up to this much, so that closing does not reset the answer away */
#define STOP_WAIT_MS 3000
#define THREAD_STACK (256 * 1024)
#define LOOPS_MAX 4

struct proxy {
        struct engine *eng;
        SSL_CTX *tls;            /* with tls-cert: clients speak TLS (tls-pipe.c); else NULL */
        struct loop *loops;
        unsigned n_loops;
        int listen_fd, stop_fd;
        int listen6_fd;          /* [::1] beside 127.0.0.1 (names under localhost resolve to both), or -1 */
        pthread_t acceptor;
        pthread_mutex_t lock;
        struct pconn *conns; /* open connections */
        unsigned n_conns;
        bool stopping;
};

/* Sends all of data within SEND_ERROR_MS (fd may be non-blocking). */
static void send_all_bounded(int fd, const char *data, size_t len) {
        int64_t deadline = mono_ms() + SEND_ERROR_MS;

        while (len > 0 && mono_ms() < deadline) {
                ssize_t k = send(fd, data, len, MSG_NOSIGNAL);
                if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
                        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                        (void) poll(&pfd, 1, 100);
                        continue;
                }
                if (k <= 0)
                        return;
                data += k;
                len -= (size_t) k;
        }
}

/* Reads and drops what the client still sends, briefly: a close with unread bytes would
 * reset the connection, and the client could lose the answer before reading it. */
static void drain(int fd) {
        int64_t deadline = mono_ms() + DRAIN_MS;
        size_t total = 0;
        char junk[16384];

        while (total < DRAIN_MAX && mono_ms() < deadline) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                if (poll(&pfd, 1, 100) <= 0)
                        continue;
                ssize_t k = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                        return;
                if (k > 0)
                        total += (size_t) k;
        }
}

void proxy_send_error(struct pconn *c, const struct perr *pe) {
        _cleanup_buf_ struct buf out = {0};

        log_info("preview %u-%s from %s: %d %s", (unsigned) c->port, *c->id ? c->id : "?", c->client, pe->status, pe->message);
        buf_init(&out, 4096);
        if (buf_printf(&out,
                       "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                       "X-Ai2in-Error: %s\r\nCache-Control: no-store\r\nConnection: close\r\n%s\r\n%s\n",
                       pe->status, http_status_text(pe->status), strlen(pe->message) + 1, pe->code,
                       pe->status == 503 ? "Retry-After: 1\r\n" : "", pe->message) < 0)
                return;
        send_all_bounded(c->cfd, out.data, out.len);
        (void) shutdown(c->cfd, SHUT_WR);
        drain(c->cfd);
}

/* Counts c among its sandbox's tunnels, unless there are MAX_PER_SANDBOX already (503). */
static int claim_slot(struct pconn *c, struct perr *pe) {
        struct proxy *p = c->proxy;
        unsigned n = 0;

        pthread_mutex_lock(&p->lock);
        for (struct pconn *o = p->conns; o; o = o->next)
                n += o->tunnel && streq(o->id, c->id);
        c->tunnel = n < MAX_PER_SANDBOX;
        pthread_mutex_unlock(&p->lock);
        return c->tunnel ? 0
                         : perr_set(pe, 503, "busy", "sandbox %s has %d preview connections open, the most there can be at once",
                                    c->id, MAX_PER_SANDBOX);
}

/* Reads the first request head (blocking, FIRST_HEAD_TIMEOUT_S), checks it and opens the
 * tunnel; answers the client itself when any of that fails. */
/* Reads until the first request head is complete (1, req filled), malformed (< 0 from the
 * parser), or the client goes away or takes over FIRST_HEAD_TIMEOUT_S in all (-ECONNRESET:
 * nothing to answer). */
static int read_first_head(struct pconn *c, struct http_request *req) {
        int64_t deadline = mono_ms() + FIRST_HEAD_TIMEOUT_S * 1000;
        size_t head_len;
        int r;

        for (;;) {
                int64_t left = deadline - mono_ms();
                struct pollfd pfd = {.fd = c->cfd, .events = POLLIN};
                ssize_t k;

                if (left <= 0)
                        return -ECONNRESET; /* also a head sent a byte at a time */
                r = poll(&pfd, 1, (int) left);
                if (r < 0 && errno != EINTR)
                        return -ECONNRESET;
                if (r <= 0)
                        continue;
                k = recv(c->cfd, c->in + c->len, PROXY_IN_MAX - c->len, MSG_DONTWAIT);
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (k <= 0)
                        return -ECONNRESET;
                c->len += (size_t) k;
                r = http_request_parse_head(req, c->in, c->len, &head_len);
                if (r != 0)
                        return r;
        }
}

/* Reads the first request head, checks it and opens the tunnel; answers the client itself
 * when any of that fails. */
static int conn_open(struct pconn *c) {
        struct http_request req = {0};
        struct perr pe = {0};
        int r;

        r = read_first_head(c, &req);
        if (r == -ECONNRESET)
                return r;
        if (r < 0)
                perr_from_parse(&pe, r);
        else {
                r = route_check(c, &req, true, &pe);
                if (r >= 0)
                        r = claim_slot(c, &pe);
                if (r >= 0)
                        r = route_connect(c, &pe);
        }
        http_request_done(&req);
        if (r < 0 && pe.status)
                proxy_send_error(c, &pe);
        return r;
}

static void conns_remove(struct proxy *p, struct pconn *c) {
        pthread_mutex_lock(&p->lock);
        if (c->prev)
                c->prev->next = c->next;
        else
                p->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        p->n_conns--;
        pthread_mutex_unlock(&p->lock);
}

void conn_finish(struct pconn *c, const struct perr *pe) {
        if (pe)
                proxy_send_error(c, pe);
        conns_remove(c->proxy, c);
        if (c->ufd >= 0)
                close(c->ufd);
        close(c->cfd);
        free(c->in);
        free(c);
}

/* Starts the relay of c, whose tunnel is open, and hands it to a loop; or ends it. */
static void conn_relay(struct pconn *c) {
        enum relay_result r = RELAY_END;

        if (relay_begin(c) >= 0) {
                r = relay_step(c, 0, 0, mono_ms());
                if (r == RELAY_GO_ON) {
                        loop_add(c->proxy->loops, c->proxy->n_loops, c);
                        return;
                }
        }
        relay_end(c);
        conn_finish(c, r == RELAY_ANSWER ? &c->rl.fail : NULL);
}

static void *conn_main(void *arg) {
        struct pconn *c = arg;
        struct proxy *p = c->proxy;
        struct timeval tv = {.tv_sec = SEND_ERROR_MS / 1000};
        int one = 1, r;

        /* Blocking until the relay starts: sends are bounded (an answer of the proxy, bytes the
         * tunnel brought along), reads are bounded in conn_open. */
        (void) setsockopt(c->cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        (void) setsockopt(c->cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        r = conn_open(c);
        pthread_mutex_lock(&p->lock);
        c->waiting = false;
        pthread_mutex_unlock(&p->lock);
        if (r >= 0) {
                log_debug("preview %u-%s from %s: open", (unsigned) c->port, c->id, c->client);
                conn_relay(c);
        } else
                conn_finish(c, NULL);
        return NULL;
}

static void reject_busy(int fd) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                   "Content-Length: 47\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                                   "the preview proxy has too many connections now\n";
        _Static_assert(sizeof("the preview proxy has too many connections now\n") - 1 == 47, "fix the Content-Length");

        char junk[4096];

        (void) send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) shutdown(fd, SHUT_WR);
        while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0) /* what came already: a close */
                ;                                              /* with it unread would reset */
        close(fd);
}

/* Registers and starts a thread for the accepted client fd; on failure closes it. */
/* A client's address as the per-address limits count it, and as the log shows it. */
static uint32_t peer_key(const struct sockaddr_storage *peer, char *out, size_t n) {
        char ip[INET6_ADDRSTRLEN] = "?";

        if (peer->ss_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) peer;
                uint32_t w[4];

                memcpy(w, &s6->sin6_addr, sizeof(w));
                inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
                snprintf(out, n, "[%s]:%u", ip, (unsigned) ntohs(s6->sin6_port));
                return w[0] ^ w[1] ^ w[2] ^ w[3];
        }
        const struct sockaddr_in *s4 = (const struct sockaddr_in *) peer;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, (unsigned) ntohs(s4->sin_port));
        return s4->sin_addr.s_addr;
}

static void conn_start(struct proxy *p, int fd, const struct sockaddr_storage *peer) {
        struct pconn *c = calloc(1, sizeof(*c));
        uint32_t addr;
        int r;

        if (!c || !(c->in = malloc(PROXY_IN_MAX))) {
                if (c)
                        free(c->in);
                free(c);
                close(fd);
                return;
        }
        *c = (struct pconn){.eng = p->eng, .proxy = p, .cfd = fd, .ufd = -1, .in = c->in, .waiting = true};
        addr = peer_key(peer, c->client, sizeof(c->client));
        c->addr = addr;

        pthread_mutex_lock(&p->lock);
        c->next = p->conns;
        if (p->conns)
                p->conns->prev = c;
        p->conns = c;
        p->n_conns++;
        pthread_mutex_unlock(&p->lock);

        r = thread_start_detached(conn_main, c, THREAD_STACK);
        if (r < 0) {
                log_warn("preview: cannot start a connection thread: %s, dropping the connection", strerror(-r));
                conn_finish(c, NULL);
        }
}

/* A client of a proxy with TLS: its TLS runs on a pipe's thread, and the connection is
 * relayed from the pipe's plain end, counted under the client's own address. */
static void conn_start_tls(struct proxy *p, int fd, const struct sockaddr_storage *peer) {
        char client[64];
        SSL *ssl = SSL_new(p->tls);
        int plain, r;

        peer_key(peer, client, sizeof(client));
        if (!ssl || SSL_set_fd(ssl, fd) != 1) {
                SSL_free(ssl);
                close(fd);
                return;
        }
        r = tls_pipe_start(ssl, fd, true, client, &plain);
        if (r < 0) {
                log_warn("preview: cannot start TLS for %s: %s, dropping the connection", client, strerror(-r));
                return;
        }
        conn_start(p, plain, peer);
}

/* Whether one more connection from addr fits the limits. */
static bool admissible(struct proxy *p, uint32_t addr) {
        unsigned waiting = 0, same = 0;
        bool ok;

        pthread_mutex_lock(&p->lock);
        for (struct pconn *c = p->conns; c; c = c->next)
                if (c->waiting) {
                        waiting++;
                        same += c->addr == addr;
                }
        ok = p->n_conns < MAX_CONNECTIONS && waiting < MAX_WAITING && same < MAX_WAITING_PER_ADDRESS;
        pthread_mutex_unlock(&p->lock);
        return ok;
}

static void *acceptor_main(void *arg) {
        struct proxy *p = arg;

        for (;;) {
                struct pollfd pfd[3] = {{.fd = p->stop_fd, .events = POLLIN}, {.fd = p->listen_fd, .events = POLLIN},
                                        {.fd = p->listen6_fd, .events = POLLIN}};
                struct sockaddr_storage peer;
                socklen_t len = sizeof(peer);
                int fd, from;

                if (poll(pfd, 3, -1) < 0 && errno != EINTR)
                        break;
                if (pfd[0].revents)
                        break;
                from = pfd[1].revents & POLLIN ? p->listen_fd : pfd[2].revents & POLLIN ? p->listen6_fd : -1;
                if (from < 0)
                        continue;
                fd = accept4(from, (struct sockaddr *) &peer, &len, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                usleep(10000); /* out of fds or memory: let connections end */
                        continue;
                }
                if (!admissible(p, peer_key(&peer, (char[64]){0}, 64)))
                        reject_busy(fd);
                else if (p->tls)
                        conn_start_tls(p, fd, &peer);
                else
                        conn_start(p, fd, &peer);
        }
        return NULL;
}

/* With the proxy on 127.0.0.1, also [::1] on the same port: *.localhost resolves to ::1 first
 * on hosts with libnss-myhostname, and some clients (Node 18's fetch) do not try the next
 * address. Best effort: a host without IPv6 loopback keeps the IPv4 socket only. */
static int listen_loopback6(const struct sockaddr_in *sa) {
        struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = sa->sin_port, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        int fd, one = 1;

        if (sa->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
                return -1;
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &sa6, sizeof(sa6)) < 0 || listen(fd, 1024) < 0) {
                log_debug("preview proxy: not listening on [::1] too: %m");
                close(fd);
                return -1;
        }
        return fd;
}

/* One loop per two CPUs, LOOPS_MAX at most: the loops share the CPUs with the sandboxes'
 * servers and the clients; on 2 CPUs one loop relays more than two (bench/proxy). */
static unsigned loops_count(void) {
        long n = sysconf(_SC_NPROCESSORS_ONLN) / 2;

        return n < 1 ? 1 : n > LOOPS_MAX ? LOOPS_MAX : (unsigned) n;
}

int proxy_start(struct engine *eng, struct proxy **ret, struct error *e) {
        struct sockaddr_in sa;
        struct proxy *p;
        int one = 1, r;

        *ret = NULL;
        if (streq(eng->cfg.preview_listen, "off") || !*eng->cfg.preview_listen)
                return 0;
        r = net_parse_listen(eng->cfg.preview_listen, "preview-listen", &sa, e);
        if (r < 0)
                return r;
        p = calloc(1, sizeof(*p));
        if (!p)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        *p = (struct proxy){.eng = eng, .listen_fd = -1, .listen6_fd = -1, .stop_fd = -1, .n_loops = loops_count()};
        /* The API's certificate: a wildcard one (*.DOMAIN) serves every preview host. */
        if (eng->tls_cert_pem && (r = tls_server_ctx_new(eng->cfg.tls_cert, eng->cfg.tls_key, &p->tls, e)) < 0) {
                free(p);
                return r;
        }
        pthread_mutex_init(&p->lock, NULL);
        p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        p->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (p->listen_fd < 0 || p->stop_fd < 0)
                r = error_set(e, errno, ERR_INTERNAL, "preview proxy: cannot make a socket: %s", strerror(errno));
        else if (setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                 bind(p->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(p->listen_fd, 1024) < 0)
                r = error_set(e, errno, ERR_INTERNAL, "cannot listen on %s for the preview proxy: %s (set preview-listen, or off)",
                              eng->cfg.preview_listen, strerror(errno));
        if (r >= 0)
                p->listen6_fd = listen_loopback6(&sa);
        if (r >= 0 && (r = loops_start(&p->loops, p->n_loops)) < 0)
                r = error_set(e, -r, ERR_INTERNAL, "preview proxy: cannot start its loops: %s", strerror(-r));
        else if (r >= 0 && (r = pthread_create(&p->acceptor, NULL, acceptor_main, p)) != 0) {
                loops_stop(p->loops, p->n_loops);
                r = error_set(e, r, ERR_INTERNAL, "preview proxy: cannot start a thread: %s", strerror(r));
        }
        if (r < 0) {
                if (p->listen_fd >= 0)
                        close(p->listen_fd);
                if (p->listen6_fd >= 0)
                        close(p->listen6_fd);
                if (p->stop_fd >= 0)
                        close(p->stop_fd);
                SSL_CTX_free(p->tls);
                pthread_mutex_destroy(&p->lock);
                free(p);
                return r;
        }
        *ret = p;
        return 0;
}

void proxy_stop(struct proxy *p) {
        int64_t deadline = mono_ms() + STOP_WAIT_MS;
        uint64_t one = 1;
        unsigned n;

        if (!p)
                return;
        if (write(p->stop_fd, &one, sizeof(one)) < 0)
                log_warn("preview proxy: cannot signal its thread: %m, ignoring");
        pthread_join(p->acceptor, NULL);
        close(p->listen_fd);
        if (p->listen6_fd >= 0)
                close(p->listen6_fd);
        pthread_mutex_lock(&p->lock);
        for (struct pconn *c = p->conns; c; c = c->next)
                (void) shutdown(c->cfd, SHUT_RDWR); /* every wait of its thread ends */
        pthread_mutex_unlock(&p->lock);
        do {
                pthread_mutex_lock(&p->lock);
                n = p->n_conns;
                pthread_mutex_unlock(&p->lock);
                if (n > 0)
                        usleep(10000);
        } while (n > 0 && mono_ms() < deadline);
        if (n > 0) {
                log_warn("preview proxy: %u connections still closing at stop", n);
                return; /* their threads still use p */
        }
        loops_stop(p->loops, p->n_loops);
        close(p->stop_fd);
        SSL_CTX_free(p->tls); /* a pipe still ending holds its own reference through its SSL */
        pthread_mutex_destroy(&p->lock);
        free(p);
}
