/* fuzz_relay — the preview proxy's request-following step (engine/proxy/relay.c), driven as
 * the proxy drives it: a client and a sandbox's server on the two ends of socketpairs,
 * relay_step() called as if the fds were ready, the engine's real store underneath (SQLite
 * in memory, for sandbox_touch).
 *
 * The first input byte chooses options (a secure sandbox, whether the server answers an
 * Upgrade with 101, how the client's bytes are cut into sends); the rest is what the client
 * sends. Checks what issue 11 broke: the relay's offsets stay within what it read, and every
 * byte that reaches the server came from the client, in order (the traffic token's lines
 * may be left out, nothing may be added: no byte of the engine's memory). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "proxy/proxy-internal.h"
#include "timeutil.h"

#define ID "sbx_aaaaaaaaaaaaaaaaaaaa"
#define TOKEN "tok0123456789abcdefghijklmnopqrstuvwxyz0"
#define OUT_MAX (256 * 1024)

static struct engine eng;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        struct error e = {0};

        log_setup("fuzz_relay", LOG_LVL_ERROR);
        if (store_open(":memory:", &eng.store, &e) < 0) /* the real store, in memory: nothing left behind */
                abort();
        return 0;
}

/* Whether a is a subsequence of b. */
static int subsequence(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
        size_t i = 0;

        for (size_t j = 0; j < nb && i < na; j++)
                i += a[i] == b[j];
        return i == na;
}

struct run {
        struct pconn *c;
        int client, server; /* the test's ends of the socketpairs */
        uint8_t *up;        /* what reached the server */
        size_t up_len;
        int server_eof, answered;
};

/* The server's side: reads what came, answers an Upgrade request once, closes when the
 * relay shut its side. */
static void serve(struct run *t, int answer_101) {
        char junk[4096];
        ssize_t k;

        while ((k = recv(t->server, t->up + t->up_len, OUT_MAX - t->up_len, MSG_DONTWAIT)) > 0)
                t->up_len += (size_t) k;
        if (k == 0 && !t->server_eof) {
                t->server_eof = 1;
                (void) shutdown(t->server, SHUT_WR);
        }
        if (t->c->rl.mode != MODE_UPGRADE)
                t->answered = 0;
        else if (!t->answered && t->c->fwd == 0 && !t->server_eof) {
                static const char yes[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
                static const char no[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                (void) !send(t->server, answer_101 ? yes : no, answer_101 ? sizeof(yes) - 1 : sizeof(no) - 1, MSG_NOSIGNAL);
                t->answered = 1;
        }
        while (recv(t->client, junk, sizeof(junk), MSG_DONTWAIT) > 0) /* answers to the client */
                ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int cp[2], sp[2], shut = 0;
        size_t off = 0, piece;
        struct run t = {0};
        uint8_t opt;
        int64_t now = mono_ms();

        if (size < 1)
                return 0;
        opt = data[0];
        data++;
        size--;
        piece = (size_t) 1 << (opt >> 4); /* 1 .. 32768 bytes per send */
        assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cp) == 0);
        assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
        t.c = calloc(1, sizeof(*t.c));
        t.up = malloc(OUT_MAX);
        assert(t.c && t.up);
        *t.c = (struct pconn){.eng = &eng, .cfd = cp[0], .ufd = sp[0], .port = 8000, .in = malloc(PROXY_IN_MAX)};
        memcpy(t.c->id, ID, sizeof(ID));
        if (opt & 1)
                memcpy(t.c->token, TOKEN, sizeof(TOKEN));
        t.client = cp[1];
        t.server = sp[1];
        (void) fcntl(t.client, F_SETFL, O_NONBLOCK);
        (void) fcntl(t.server, F_SETFL, O_NONBLOCK);
        assert(t.c->in && relay_begin(t.c) == 0);

        for (int step = 0; step < 4 * 65536; step++) {
                enum relay_result r;

                if (off < size) {
                        ssize_t k = send(t.client, data + off, size - off < piece ? size - off : piece, MSG_NOSIGNAL);
                        if (k > 0)
                                off += (size_t) k;
                } else if (!shut) {
                        (void) shutdown(t.client, SHUT_WR);
                        shut = 1;
                }
                r = relay_step(t.c, POLLIN | POLLOUT, POLLIN | POLLOUT, now);
                assert(t.c->fwd <= t.c->len && t.c->len <= PROXY_IN_MAX);
                serve(&t, opt & 2);
                now += shut ? 1000 : 1; /* the failed request's wait and the idle limit pass too */
                if (r != RELAY_GO_ON)
                        break;
        }
        assert(t.up_len <= size && subsequence(t.up, t.up_len, data, size));

        relay_end(t.c);
        free(t.c->in);
        free(t.c);
        free(t.up);
        for (int i = 0; i < 2; i++) {
                close(cp[i]);
                close(sp[i]);
        }
        return 0;
}
