/* dnsfwd.c — see dnsfwd.h. One poll() loop over the listening socket, a stop eventfd and
 * one connected socket per query in flight (the kernel then drops datagrams from any other
 * address; the random ID guards against a guessed port). */
#include "net/dnsfwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "net/dnstcp.h"
#include "timeutil.h"

#define MSG_MAX 4096 /* queries longer than this are dropped, answers answered truncated (EDNS' usual size) */

struct pending {
        int fd;                    /* -1: a free slot */
        uint16_t id;               /* ours, sent upstream */
        uint16_t client_id;
        struct sockaddr_in client;
        struct dnsmsg_question q;
        int64_t deadline;
};

struct dnsfwd {
        int listen_fd, stop_fd;
        struct sockaddr_in upstream;
        const struct dnsfwd_ops *ops;
        void *data;
        pthread_t thread;
        struct pending pending[DNSFWD_PENDING];
        struct dnstcp tcp;
        uint8_t buf[MSG_MAX + 1];
};

static void pending_drop(struct pending *p) {
        if (p->fd >= 0)
                close(p->fd);
        p->fd = -1;
}

static void reply(struct dnsfwd *f, const struct sockaddr_in *to, const uint8_t *msg, size_t len) {
        (void) sendto(f->listen_fd, msg, len, MSG_DONTWAIT, (const struct sockaddr *) to, sizeof(*to));
}

/* A free slot, or NULL when DNSFWD_PENDING are in flight or DNSFWD_PER_SOURCE from src. */
static struct pending *slot_for(struct dnsfwd *f, uint32_t src) {
        struct pending *free_slot = NULL;
        unsigned same = 0;

        for (unsigned i = 0; i < DNSFWD_PENDING; i++) {
                struct pending *p = &f->pending[i];
                if (p->fd < 0)
                        free_slot = free_slot ? free_slot : p;
                else
                        same += p->client.sin_addr.s_addr == src;
        }
        return same < DNSFWD_PER_SOURCE ? free_slot : NULL;
}

static void on_query(struct dnsfwd *f) {
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        struct dnsmsg_question q;
        struct pending *p;
        ssize_t n = recvfrom(f->listen_fd, f->buf, sizeof(f->buf), MSG_DONTWAIT, (struct sockaddr *) &from, &fl);
        uint16_t id;

        if (n <= 0 || n > MSG_MAX || fl != sizeof(from) || dnsmsg_question(f->buf, (size_t) n, true, &q) < 0)
                return; /* not a query this forwarder reads: no answer, as for a lost datagram */
        p = f->ops->may_ask(f->data, from.sin_addr.s_addr, q.name) ? slot_for(f, from.sin_addr.s_addr) : NULL;
        if (!p) {
                reply(f, &from, f->buf, dnsmsg_make_error(f->buf, &q, DNS_RCODE_REFUSED));
                return;
        }
        if (getrandom(&id, sizeof(id), 0) != sizeof(id))
                return;
        p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (p->fd < 0 || connect(p->fd, (struct sockaddr *) &f->upstream, sizeof(f->upstream)) < 0) {
                pending_drop(p);
                reply(f, &from, f->buf, dnsmsg_make_error(f->buf, &q, DNS_RCODE_SERVFAIL));
                return;
        }
        p->id = id;
        p->client_id = dnsmsg_id(f->buf);
        p->client = from;
        p->q = q;
        p->deadline = now_ms() + DNSFWD_TIMEOUT_MS;
        dnsmsg_set_id(f->buf, id);
        if (send(p->fd, f->buf, (size_t) n, 0) != n)
                pending_drop(p);
}

static void on_answer(struct dnsfwd *f, struct pending *p) {
        struct dnsmsg_question got;
        ssize_t n = recv(p->fd, f->buf, sizeof(f->buf), MSG_DONTWAIT);
        size_t len;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n < 12) {
                if (n < 0) /* ICMP unreachable from the upstream: nothing will come */
                        pending_drop(p);
                return;
        }
        /* Another query's answer, or not one to ours: still waiting for ours. (Of a longer
         * one, only the first MSG_MAX bytes are read: its question is there.) */
        if (dnsmsg_id(f->buf) != p->id || dnsmsg_question(f->buf, MIN((size_t) n, MSG_MAX), false, &got) < 0 ||
            strcmp(got.name, p->q.name) != 0 || got.type != p->q.type || got.klass != p->q.klass)
                return;
        len = (size_t) n;
        dnsmsg_set_id(f->buf, p->client_id);
        if (n > MSG_MAX) {
                /* Too long to read whole: no records, TC set, so that the client asks again over
                 * TCP (dnstcp.c), where it is read whole and admitted like any answer. */
                len = dnsmsg_make_error(f->buf, &got, 0);
                f->buf[2] |= 0x02;
        } else if (f->ops->answered(f->data, p->client.sin_addr.s_addr, &p->q, f->buf, len) < 0)
                len = dnsmsg_make_error(f->buf, &got, DNS_RCODE_SERVFAIL);
        reply(f, &p->client, f->buf, len);
        pending_drop(p);
}

#define POLL_MAX (2 + DNSFWD_PENDING + 1 + DNSTCP_CONNS)

static void *loop(void *arg) {
        struct dnsfwd *f = arg;
        struct pollfd fds[POLL_MAX];
        struct pending *owner[POLL_MAX];
        struct dnstcp_conn *tcp_owner[1 + DNSTCP_CONNS];

        for (;;) {
                int64_t now = now_ms();
                nfds_t n = 2, udp_end;

                fds[0] = (struct pollfd){.fd = f->stop_fd, .events = POLLIN};
                fds[1] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
                for (unsigned i = 0; i < DNSFWD_PENDING; i++) {
                        struct pending *p = &f->pending[i];
                        if (p->fd >= 0 && p->deadline <= now)
                                pending_drop(p);
                        if (p->fd < 0)
                                continue;
                        owner[n] = p;
                        fds[n++] = (struct pollfd){.fd = p->fd, .events = POLLIN};
                }
                udp_end = n;
                n += dnstcp_poll_fds(&f->tcp, now, fds + n, tcp_owner);
                if (poll(fds, n, 1000) < 0 && errno != EINTR) {
                        log_warn_errno(errno, "dns: poll failed; the sandboxes have no DNS until the engine restarts");
                        return NULL;
                }
                if (fds[0].revents)
                        return NULL;
                for (nfds_t i = 2; i < udp_end; i++)
                        if (fds[i].revents)
                                on_answer(f, owner[i]);
                if (fds[1].revents & POLLIN)
                        on_query(f);
                for (nfds_t i = udp_end; i < n; i++)
                        if (fds[i].revents)
                                dnstcp_ready(&f->tcp, tcp_owner[i - udp_end], fds[i].revents);
        }
}

static void close_all(struct dnsfwd *f) {
        for (unsigned i = 0; i < DNSFWD_PENDING; i++)
                pending_drop(&f->pending[i]);
        dnstcp_close(&f->tcp);
        if (f->listen_fd >= 0)
                close(f->listen_fd);
        if (f->stop_fd >= 0)
                close(f->stop_fd);
        free(f);
}

int dnsfwd_start(const char *listen_ip, const char *upstream, const struct dnsfwd_ops *ops, void *data, struct dnsfwd **ret,
                 struct error *e) {
        struct dnsfwd *f = calloc(1, sizeof(*f));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
        int r;

        if (!f)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        for (unsigned i = 0; i < DNSFWD_PENDING; i++)
                f->pending[i].fd = -1;
        f->tcp.listen_fd = -1;
        f->ops = ops;
        f->data = data;
        f->upstream = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(53)};
        f->stop_fd = eventfd(0, EFD_CLOEXEC);
        f->listen_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (inet_pton(AF_INET, listen_ip, &sa.sin_addr) != 1 || inet_pton(AF_INET, upstream, &f->upstream.sin_addr) != 1) {
                close_all(f);
                return error_set(e, EINVAL, ERR_INTERNAL, "dns: bad address %s or %s", listen_ip, upstream);
        }
        if (f->stop_fd < 0 || f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = errno;
                close_all(f);
                return error_set(e, r, ERR_INTERNAL, "dns: cannot listen on %s:53: %s", listen_ip, strerror(r));
        }
        r = dnstcp_open(&f->tcp, &sa, &f->upstream, ops, data);
        if (r < 0) {
                close_all(f);
                return error_set(e, -r, ERR_INTERNAL, "dns: cannot listen on %s:53 (TCP): %s", listen_ip, strerror(-r));
        }
        r = pthread_create(&f->thread, NULL, loop, f);
        if (r != 0) {
                close_all(f);
                return error_set(e, r, ERR_INTERNAL, "dns: cannot start the forwarder: %s", strerror(r));
        }
        *ret = f;
        return 0;
}

void dnsfwd_stop(struct dnsfwd *f) {
        uint64_t one = 1;

        if (!f)
                return;
        if (write(f->stop_fd, &one, sizeof(one)) == sizeof(one))
                pthread_join(f->thread, NULL);
        close_all(f);
}
