/* dnstcp.c — see dnstcp.h. A connection goes round READ_QUERY → CONNECT → SEND_UP →
 * READ_UP → REPLY → READ_QUERY; every read asks for exactly the bytes the current step still
 * needs, and every socket is non-blocking. Its buffer (2 + 65535 bytes) is allocated when a
 * query comes and freed when its answer has gone. */
#include "net/dnstcp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/dnsmsg.h"
#include "timeutil.h"

#define BUF_MAX (2 + 65535)

enum step { FREE, READ_QUERY, CONNECT, SEND_UP, READ_UP, REPLY };

struct dnstcp_conn {
        enum step step;
        int fd, up;              /* the sandbox's connection; the upstream's (-1 when none) */
        struct sockaddr_in peer;
        struct dnsmsg_question q;
        uint8_t *buf;
        size_t have, want;       /* bytes in buf; bytes the current step needs in all */
        int64_t deadline;
};

static void conn_close(struct dnstcp_conn *c) {
        if (c->fd >= 0)
                close(c->fd);
        if (c->up >= 0)
                close(c->up);
        free(c->buf);
        *c = (struct dnstcp_conn){.step = FREE, .fd = -1, .up = -1};
}

int dnstcp_open(struct dnstcp *t, const struct sockaddr_in *listen_at, const struct sockaddr_in *upstream,
                const struct dnsfwd_ops *ops, void *data) {
        int one = 1, r;

        *t = (struct dnstcp){.listen_fd = -1, .upstream = *upstream, .ops = ops, .data = data};
        t->conns = calloc(DNSTCP_CONNS, sizeof(*t->conns));
        if (!t->conns)
                return -ENOMEM;
        for (unsigned i = 0; i < DNSTCP_CONNS; i++)
                conn_close(&t->conns[i]);
        t->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (t->listen_fd < 0 || setsockopt(t->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(t->listen_fd, (const struct sockaddr *) listen_at, sizeof(*listen_at)) < 0 || listen(t->listen_fd, 16) < 0) {
                r = -errno;
                dnstcp_close(t);
                return r;
        }
        return 0;
}

void dnstcp_close(struct dnstcp *t) {
        for (unsigned i = 0; t->conns && i < DNSTCP_CONNS; i++)
                conn_close(&t->conns[i]);
        free(t->conns);
        t->conns = NULL;
        if (t->listen_fd >= 0)
                close(t->listen_fd);
        t->listen_fd = -1;
}

/* Waits for the next query: its 2-byte length first. */
static void next_query(struct dnstcp_conn *c) {
        if (c->up >= 0)
                close(c->up);
        c->up = -1;
        c->step = READ_QUERY;
        c->have = 0;
        c->want = 2;
        c->deadline = now_ms() + DNSFWD_TIMEOUT_MS;
}

static void on_accept(struct dnstcp *t) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof(peer);
        struct dnstcp_conn *free_slot = NULL;
        unsigned same = 0;
        int fd = accept4(t->listen_fd, (struct sockaddr *) &peer, &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0)
                return;
        for (unsigned i = 0; i < DNSTCP_CONNS; i++) {
                struct dnstcp_conn *c = &t->conns[i];
                if (c->step == FREE)
                        free_slot = free_slot ? free_slot : c;
                else
                        same += c->peer.sin_addr.s_addr == peer.sin_addr.s_addr;
        }
        /* Refused, or past a bound: closed at once (the resolver gives up without waiting). */
        if (!free_slot || same >= DNSTCP_PER_SOURCE || pl != sizeof(peer) || !t->ops->may_ask(t->data, peer.sin_addr.s_addr, NULL)) {
                close(fd);
                return;
        }
        free_slot->fd = fd;
        free_slot->peer = peer;
        next_query(free_slot);
}

/* Reads what the current step still needs from fd; 1 when it has it all, 0 for more, < 0
 * when the connection is done with (closed, or an error). */
static int read_some(struct dnstcp_conn *c, int fd) {
        ssize_t n;

        if (!c->buf && !(c->buf = malloc(BUF_MAX)))
                return -ENOMEM;
        n = read(fd, c->buf + c->have, c->want - c->have);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        c->have += (size_t) n;
        return c->have == c->want;
}

static int write_some(struct dnstcp_conn *c, int fd) {
        ssize_t n = send(fd, c->buf + c->have, c->want - c->have, MSG_NOSIGNAL);

        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        c->have += (size_t) n;
        return c->have == c->want;
}

static size_t msg_len(const uint8_t *b) {
        return (size_t) b[0] << 8 | b[1];
}

static void put_len(uint8_t *b, size_t len) {
        b[0] = (uint8_t) (len >> 8);
        b[1] = (uint8_t) len;
}

/* A whole query is in: checked, then on its way to the upstream. */
static int query_read(struct dnstcp *t, struct dnstcp_conn *c) {
        if (c->want == 2) { /* the length: now the message */
                c->want = 2 + msg_len(c->buf);
                return c->want < 2 + 12 || c->want > 2 + DNSTCP_QUERY_MAX ? -EBADMSG : 0;
        }
        if (dnsmsg_question(c->buf + 2, c->have - 2, true, &c->q) < 0)
                return -EBADMSG;
        if (!t->ops->may_ask(t->data, c->peer.sin_addr.s_addr, c->q.name)) {
                size_t len = dnsmsg_make_error(c->buf + 2, &c->q, DNS_RCODE_REFUSED);
                put_len(c->buf, len);
                c->step = REPLY;
                c->have = 0;
                c->want = 2 + len;
                return 0;
        }
        c->up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c->up < 0 || (connect(c->up, (struct sockaddr *) &t->upstream, sizeof(t->upstream)) < 0 && errno != EINPROGRESS))
                return -errno;
        /* The upstream's time starts now: a client slow to send its query does not take it. */
        c->deadline = now_ms() + DNSFWD_TIMEOUT_MS;
        c->step = CONNECT;
        return 0;
}

/* The whole answer is in: seen by the owner, then on its way back. */
static int answer_read(struct dnstcp *t, struct dnstcp_conn *c) {
        struct dnsmsg_question got;
        size_t len;

        if (c->want == 2) {
                c->want = 2 + msg_len(c->buf);
                return c->want < 2 + 12 ? -EBADMSG : 0;
        }
        len = c->have - 2;
        if (dnsmsg_question(c->buf + 2, len, false, &got) < 0 || strcmp(got.name, c->q.name) != 0 || got.type != c->q.type ||
            got.klass != c->q.klass)
                return -EBADMSG;
        if (t->ops->answered(t->data, c->peer.sin_addr.s_addr, &c->q, c->buf + 2, len) < 0) {
                len = dnsmsg_make_error(c->buf + 2, &got, DNS_RCODE_SERVFAIL);
                put_len(c->buf, len);
        }
        c->step = REPLY;
        c->have = 0;
        c->want = 2 + len;
        return 0;
}

static int step(struct dnstcp *t, struct dnstcp_conn *c) {
        int r, err = 0;
        socklen_t el = sizeof(err);

        switch (c->step) {
        case READ_QUERY:
                r = read_some(c, c->fd);
                return r <= 0 ? r : query_read(t, c);
        case CONNECT:
                if (getsockopt(c->up, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err)
                        return -ECONNREFUSED;
                c->step = SEND_UP;
                c->have = 0; /* want: the query, length included, as read */
                return 0;
        case SEND_UP:
                r = write_some(c, c->up);
                if (r > 0) {
                        c->step = READ_UP;
                        c->have = 0;
                        c->want = 2;
                }
                return r < 0 ? r : 0;
        case READ_UP:
                r = read_some(c, c->up);
                return r <= 0 ? r : answer_read(t, c);
        case REPLY:
                r = write_some(c, c->fd);
                if (r > 0)
                        next_query(c);
                return r < 0 ? r : 0;
        case FREE:
                break;
        }
        return 0;
}

unsigned dnstcp_poll_fds(struct dnstcp *t, int64_t now, struct pollfd *fds, struct dnstcp_conn **owners) {
        unsigned n = 0;

        fds[n] = (struct pollfd){.fd = t->listen_fd, .events = POLLIN};
        owners[n++] = NULL;
        for (unsigned i = 0; i < DNSTCP_CONNS; i++) {
                struct dnstcp_conn *c = &t->conns[i];
                if (c->step != FREE && c->deadline <= now)
                        conn_close(c);
                if (c->step == FREE)
                        continue;
                bool up = c->step == CONNECT || c->step == SEND_UP || c->step == READ_UP;
                bool out = c->step == CONNECT || c->step == SEND_UP || c->step == REPLY;
                fds[n] = (struct pollfd){.fd = up ? c->up : c->fd, .events = out ? POLLOUT : POLLIN};
                owners[n++] = c;
        }
        return n;
}

void dnstcp_ready(struct dnstcp *t, struct dnstcp_conn *c, short revents) {
        if (!c) {
                on_accept(t);
                return;
        }
        if (c->step != FREE && step(t, c) < 0)
                conn_close(c);
}
