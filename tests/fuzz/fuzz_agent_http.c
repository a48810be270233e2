/* fuzz_agent_http — the agent's HTTP server (agent/http.c) reading whatever a client sends
 * on one connection: request heads, Content-Length and chunked bodies (buffered, or streamed
 * to a handler that reads them in odd sizes), "Expect: 100-continue", pipelining, and the
 * error answers. A thread plays the client through a socketpair (sends the input, half-closes,
 * reads every answer); the server runs on this thread with http_serve_connection().
 *
 * Paths choose what the handler does: /s… streams the body (read in pieces of 1..4096 bytes
 * chosen by the path's length), /c… answers chunked, /f… a fixed-length answer written in
 * two parts, anything else echoes the buffered body's length. */
#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

struct client {
        int fd;
        const uint8_t *data;
        size_t size;
};

static void *client_main(void *arg) {
        struct client *cl = arg;
        char junk[65536];
        size_t off = 0;

        while (off < cl->size) {
                ssize_t k = send(cl->fd, cl->data + off, cl->size - off, MSG_NOSIGNAL);
                if (k <= 0)
                        break; /* the server closed early (an error answer) */
                off += (size_t) k;
        }
        (void) shutdown(cl->fd, SHUT_WR);
        while (recv(cl->fd, junk, sizeof(junk), 0) > 0)
                ;
        return NULL;
}

static bool streams(const struct http_request *req) {
        return req->path[1] == 's';
}

static int handle(struct http_conn *c, const struct http_request *req, void *userdata) {
        char buf[4096], text[64];
        size_t piece = strlen(req->path) * 97 % sizeof(buf) + 1;
        uint64_t total = 0;
        ssize_t n;
        int r;

        switch (req->path[1]) {
        case 's':
                while ((n = http_body_read(c, buf, piece)) > 0)
                        total += (uint64_t) n;
                if (n < 0)
                        return http_respond_error(c, 400, "bad_request", "body: %zd", n);
                break;
        case 'c':
                if ((r = http_chunked_begin(c, 200, "application/x-ndjson")) < 0 ||
                    (r = http_chunked_write(c, req->path, strlen(req->path))) < 0)
                        return r;
                return http_chunked_end(c);
        case 'f':
                if ((r = http_respond_begin(c, 200, "text/plain", 10)) < 0 || (r = http_write(c, "01234", 5)) < 0)
                        return r;
                return http_write(c, "56789", 5);
        default:
                total = req->body.len;
        }
        snprintf(text, sizeof(text), "%llu", (unsigned long long) total);
        return http_respond(c, 200, "text/plain", text, strlen(text));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        log_setup("fuzz_agent_http", LOG_LVL_ERROR);
        signal(SIGPIPE, SIG_IGN);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct http_server s = {.listen_fd = -1, .handler = handle, .streams_body = streams, .max_connections = 1};
        struct client cl = {.data = data, .size = size};
        pthread_t th;
        int sp[2];

        assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
        cl.fd = sp[1];
        assert(pthread_create(&th, NULL, client_main, &cl) == 0);
        assert(http_serve_connection(&s, sp[0]) == 0);
        pthread_join(th, NULL);
        close(sp[1]);
        return 0;
}
