/* test_conn_pool.c — kept-alive connections to another node (net/conn-pool.h through
 * agent_stream_open_tcp): reused after a clean exchange, not after "Connection: close" or a
 * body left unread, replaced when the peer closed it while idle, and a GET (only a GET) sent
 * again on a new connection when the peer closes a kept one under it. A thread plays the
 * peer on a loopback TCP port, one connection at a time, each request answered as a script
 * says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn-pool.h"
#include "sandbox/agent_stream.h"

enum act {
        KEEP,      /* answer "ok", keep the connection */
        SAY_CLOSE, /* answer "ok" with Connection: close, then close */
        DROP,      /* close without an answer (the peer closing a kept connection under it) */
        IDLE_CLOSE /* answer "ok", then close (the peer's idle timeout, before the next request) */
};

struct peer {
        int listen_fd;
        char port[8];
        const enum act *script; /* one per request, in order */
        size_t n;
        int accepts, requests;
        pthread_t thread;
};

/* Reads one request (head, and its Content-Length body); false at the end of the connection. */
static bool read_request(int fd) {
        char buf[8192];
        size_t len = 0;
        char *end;

        while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
                ssize_t k = read(fd, buf + len, sizeof(buf) - len);
                if (k <= 0)
                        return false;
                len += (size_t) k;
        }
        const char *cl = memmem(buf, (size_t) (end - buf), "Content-Length: ", 16);
        size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0, have = len - (size_t) (end + 4 - buf);
        while (have < body) {
                ssize_t k = read(fd, buf, sizeof(buf));
                if (k <= 0)
                        return false;
                have += (size_t) k;
        }
        return true;
}

static void *serve(void *arg) {
        struct peer *p = arg;

        while (p->requests < (int) p->n) {
                int fd = accept(p->listen_fd, NULL, NULL);
                bool open = fd >= 0;
                if (!open)
                        break;
                p->accepts++;
                while (open && p->requests < (int) p->n && read_request(fd)) {
                        enum act a = p->script[p->requests++];
                        const char *ans = a == SAY_CLOSE ? "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
                                                         : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if (a != DROP)
                                assert_true(write(fd, ans, strlen(ans)) == (ssize_t) strlen(ans));
                        open = a == KEEP;
                }
                close(fd);
        }
        return NULL;
}

static void peer_start(struct peer *p, const enum act *script, size_t n) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);

        memset(p, 0, sizeof(*p));
        p->script = script;
        p->n = n;
        p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(p->listen_fd >= 0);
        assert_int_equal(bind(p->listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(p->listen_fd, 8), 0);
        assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *) &sa, &len), 0);
        snprintf(p->port, sizeof(p->port), "%u", ntohs(sa.sin_port));
        assert_int_equal(pthread_create(&p->thread, NULL, serve, p), 0);
}

static void peer_join(struct peer *p) {
        pthread_join(p->thread, NULL);
        close(p->listen_fd);
}

/* One exchange through pool: 0 and the body read whole ("ok"), or the error. read_body
 * false leaves the body unread. */
static int exchange(struct conn_pool *pool, const struct peer *p, const char *method, const char *body, bool read_body) {
        struct agent_stream_request q = {method, "/x", NULL, NULL, body ? (int64_t) strlen(body) : 0, NULL, pool};
        struct agent_stream *s = NULL;
        struct error e = {0};
        char *got = NULL;
        size_t got_len;
        int r;

        r = agent_stream_open_tcp("127.0.0.1", p->port, "node t", 2000, &q, -1, &s, &e);
        if (r >= 0 && body)
                r = agent_stream_send(s, body, strlen(body), &e);
        if (r >= 0)
                r = agent_stream_finish(s, 2000, &e);
        if (r >= 0 && read_body) {
                r = agent_stream_read_all(s, 100, &got, &got_len);
                if (r >= 0)
                        assert_string_equal(got, "ok");
                free(got);
        }
        agent_stream_free(s);
        return r;
}

static void test_reused_after_a_clean_exchange(void **state) {
        static const enum act script[] = {KEEP, KEEP, KEEP, SAY_CLOSE, KEEP, KEEP, KEEP};
        struct conn_pool *pool;
        struct peer p;

        assert_int_equal(conn_pool_new(20000, &pool), 0);
        peer_start(&p, script, 7);
        for (int i = 0; i < 3; i++)
                assert_int_equal(exchange(pool, &p, i == 1 ? "POST" : "GET", i == 1 ? "body" : NULL, true), 0);
        assert_int_equal(p.accepts, 1); /* three requests, one connection */
        assert_int_equal(exchange(pool, &p, "GET", NULL, true), 0); /* Connection: close */
        assert_int_equal(exchange(pool, &p, "GET", NULL, false), 0); /* body left unread */
        assert_int_equal(exchange(pool, &p, "GET", NULL, true), 0);
        assert_int_equal(exchange(pool, &p, "GET", NULL, true), 0);
        peer_join(&p);
        assert_int_equal(p.accepts, 3);
        conn_pool_free(pool);
}

static void test_peer_closed_while_idle(void **state) {
        static const enum act script[] = {IDLE_CLOSE, KEEP};
        struct conn_pool *pool;
        struct peer p;

        assert_int_equal(conn_pool_new(20000, &pool), 0);
        peer_start(&p, script, 2);
        assert_int_equal(exchange(pool, &p, "GET", NULL, true), 0);
        usleep(50000); /* the peer's close arrives */
        assert_int_equal(exchange(pool, &p, "POST", "b", true), 0); /* on a new connection */
        peer_join(&p);
        assert_int_equal(p.accepts, 2);
        conn_pool_free(pool);
}

static void test_only_a_get_is_sent_again(void **state) {
        static const enum act script[] = {KEEP, DROP, KEEP, KEEP, DROP};
        struct conn_pool *pool;
        struct peer p;

        assert_int_equal(conn_pool_new(20000, &pool), 0);
        peer_start(&p, script, 5);
        assert_int_equal(exchange(pool, &p, "GET", NULL, true), 0);
        /* The kept connection is closed under the GET: sent again, answered on a new one. */
        assert_int_equal(exchange(pool, &p, "GET", NULL, true), 0);
        assert_int_equal(p.requests, 3);
        /* Under a POST: its body may have been taken, so the error is returned. */
        assert_int_equal(exchange(pool, &p, "GET", NULL, true), 0);
        assert_true(exchange(pool, &p, "POST", "once", true) < 0);
        peer_join(&p);
        assert_int_equal(p.requests, 5); /* the POST reached the peer once */
        assert_int_equal(p.accepts, 2);
        conn_pool_free(pool);
}

static void test_bounds(void **state) {
        struct conn_pool *pool;
        int fds[2 * (CONN_POOL_PER_PEER + 1)];
        struct ssl_st *ssl;

        assert_int_equal(conn_pool_new(20000, &pool), 0);
        for (int i = 0; i < CONN_POOL_PER_PEER + 1; i++) {
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds + 2 * i), 0);
                conn_pool_put(pool, "a:1", fds[2 * i], NULL);
        }
        /* The fifth was closed at once: its other end sees the end. */
        char c;
        assert_int_equal(read(fds[2 * CONN_POOL_PER_PEER + 1], &c, 1), 0);
        for (int i = 0; i < CONN_POOL_PER_PEER; i++)
                assert_true(conn_pool_take(pool, "a:1", &ssl) >= 0 && !ssl);
        assert_int_equal(conn_pool_take(pool, "a:1", &ssl), -ENOENT);
        assert_int_equal(conn_pool_take(pool, "b:1", &ssl), -ENOENT);
        conn_pool_free(pool);
        /* Expired: not handed out. */
        assert_int_equal(conn_pool_new(1, &pool), 0);
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp), 0);
        conn_pool_put(pool, "a:1", sp[0], NULL);
        usleep(10000);
        assert_int_equal(conn_pool_take(pool, "a:1", &ssl), -ENOENT);
        close(sp[1]);
        /* Expired ones make room for new ones of their peer, and are closed then. */
        int old[2 * CONN_POOL_PER_PEER];
        for (int i = 0; i < CONN_POOL_PER_PEER; i++) {
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, old + 2 * i), 0);
                conn_pool_put(pool, "a:1", old[2 * i], NULL);
        }
        usleep(10000);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp), 0);
        conn_pool_put(pool, "a:1", sp[0], NULL);
        for (int i = 0; i < CONN_POOL_PER_PEER; i++) {
                assert_int_equal(read(old[2 * i + 1], &c, 1), 0);
                close(old[2 * i + 1]);
        }
        conn_pool_free(pool);
        assert_int_equal(read(sp[1], &c, 1), 0); /* it was kept (and closed by conn_pool_free) */
        close(sp[1]);
        for (int i = 0; i < CONN_POOL_PER_PEER + 1; i++)
                close(fds[2 * i + 1]);
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reused_after_a_clean_exchange),
                cmocka_unit_test(test_peer_closed_while_idle),
                cmocka_unit_test(test_only_a_get_is_sent_again),
                cmocka_unit_test(test_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
