/* fuzz_agent_stream — the engine's reader of a sandbox agent's answers
 * (engine/sandbox/agent_stream.c) against a hostile agent: a thread accepts the engine's
 * connection on a unix socket (in a directory under /tmp made for each input and removed
 * once the connection is made) and answers the engine's request with the fuzz input; this
 * thread reads the answer as the engine's callers do: agent_stream_open, _send (a chunked
 * upload), _finish, then _read_all, _read in odd sizes, or _detach after a 101, with small
 * timeouts.
 *
 * Checks besides the sanitizers: every call returns within WATCHDOG_MS (the harness's own
 * watchdog aborts, naming the call); the memory the engine's side holds stays within a fixed
 * bound (a malloc hook tracks its peak); read_all never returns more than its max; and the
 * status, the framing and every body byte the reader hands out are those of the answer
 * (computed from the input with the shared parser), all of them once it says the body ended.
 *
 * The first input byte chooses options (OPT_* below), the rest is the agent's answer. */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sanitizer/allocator_interface.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http-parse.h"
#include "log.h"
#include "macro.h"
#include "sandbox/agent_stream.h"
#include "timeutil.h"

#define FINISH_MS 50         /* the wait for the answer's head */
#define READ_MS 10           /* each wait for body bytes */
#define WATCHDOG_MS 3000     /* no call takes longer */
#define SENDS_MAX 1024       /* the agent sends its answer in at most this many pieces */
#define HELD_MAX (512 * 1024) /* the engine's side never holds more (its buffer is 256 KiB) */
#define READ_ALL_SMALL 64

enum {
        /* How the engine reads the body: 0 read_all(64 bytes), 1 read_all(64 KiB), 2 read in
         * odd sizes, 3 detach after a 101 (else as 2). */
        OPT_READ = 3 << 0,
        /* What the agent does after its answer: 0, 1 shuts its side; OPT_KEEP keeps it open
         * (the engine's waits time out); OPT_RUDE closes at once, having read nothing. */
        OPT_END = 3 << 2,
        OPT_KEEP = 2 << 2,
        OPT_RUDE = 3 << 2,
        OPT_UPLOAD = 1 << 4, /* the request has a chunked body, sent before the answer is read */
        /* Bits 5-7: n, the agent sends pieces of 4^n bytes (at least 1/SENDS_MAX of the answer). */
};

/* ---- the watchdog and the memory bound ---- */

static _Atomic int64_t watch_deadline; /* 0: no call under way */
static const char *_Atomic watch_what;
static _Atomic int64_t held, held_peak;
static _Atomic bool counting;

static void *watchdog_main(void *arg) {
        for (;;) {
                int64_t d = atomic_load(&watch_deadline);

                if (d && mono_ms() > d) {
                        fprintf(stderr, "fuzz_agent_stream: %s did not return within %d ms\n", atomic_load(&watch_what),
                                WATCHDOG_MS);
                        abort();
                }
                usleep(50 * 1000);
        }
        return NULL;
}

static void watch(const char *what) {
        atomic_store(&watch_what, what);
        atomic_store(&watch_deadline, what ? mono_ms() + WATCHDOG_MS : 0);
}

static void on_malloc(const volatile void *p, size_t n) {
        if (atomic_load(&counting)) {
                int64_t now = atomic_fetch_add(&held, (int64_t) n) + (int64_t) n;
                int64_t peak = atomic_load(&held_peak);
                while (now > peak && !atomic_compare_exchange_weak(&held_peak, &peak, now))
                        ;
        }
}

static void on_free(const volatile void *p) {
        if (atomic_load(&counting) && p)
                atomic_fetch_sub(&held, (int64_t) __sanitizer_get_allocated_size((const void *) p));
}

/* ---- the agent ---- */

struct agent {
        int listen_fd;
        uint8_t opt;
        const uint8_t *answer;
        size_t size;
};

/* Reads the request up to the end of its head (at most 1 s). */
static void read_head(int fd) {
        char buf[4096];
        size_t n = 0;

        while (n < sizeof(buf) - 1 && !memmem(buf, n, "\r\n\r\n", 4)) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t k;

                if (poll(&p, 1, 1000) <= 0 || (k = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) <= 0)
                        return;
                n += (size_t) k;
        }
}

static void *agent_main(void *arg) {
        struct agent *a = arg;
        struct pollfd p = {.fd = a->listen_fd, .events = POLLIN};
        size_t off = 0, piece = MAX((size_t) 1 << 2 * (a->opt >> 5), a->size / SENDS_MAX + 1);
        char junk[4096];
        int fd;

        if (poll(&p, 1, 2000) <= 0 || (fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
                return NULL;
        if ((a->opt & OPT_END) != OPT_RUDE)
                read_head(fd);
        while (off < a->size) {
                ssize_t k = send(fd, a->answer + off, MIN(piece, a->size - off), MSG_NOSIGNAL);
                if (k <= 0)
                        break; /* the engine gave up and closed */
                off += (size_t) k;
        }
        if ((a->opt & OPT_END) != OPT_RUDE) {
                if ((a->opt & OPT_END) != OPT_KEEP)
                        (void) shutdown(fd, SHUT_WR);
                while (recv(fd, junk, sizeof(junk), 0) > 0) /* until the engine closes */
                        ;
        }
        close(fd);
        return NULL;
}

/* A listening socket in a fresh directory under /tmp: its path in path. */
static int agent_listen(char dir[64], char path[128]) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        snprintf(dir, 64, "/tmp/fuzz-agent-stream-XXXXXX");
        assert(mkdtemp(dir));
        snprintf(path, 128, "%s/agent.sock", dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 && listen(fd, 1) == 0);
        return fd;
}

/* ---- what a correct reader hands out ---- */

struct expect {
        bool head;              /* the input starts with a complete, valid answer head */
        int status;
        int64_t content_length; /* -1 unless a Content-Length body */
        const uint8_t *after;   /* the bytes after the head, as sent */
        size_t after_len;
        uint8_t *body;          /* the body's bytes (the chunks' data, for a chunked body) */
        size_t len;
};

/* What the reader should find in the answer in (n bytes). */
static void expected(const uint8_t *in, size_t n, struct expect *x) {
        struct http_response resp;
        size_t head_len, used, data_len;
        int r;

        x->content_length = -1;
        if (http_response_parse_head(&resp, (const char *) in, n, &head_len) != 1)
                return;
        x->head = true;
        x->status = resp.status;
        in += head_len;
        n -= head_len;
        x->after = in;
        x->after_len = n;
        if (resp.chunked) {
                struct http_chunked d = {0};

                for (size_t i = 0; i < n; i += used) {
                        r = http_chunked_decode(&d, (const char *) in + i, n - i, SIZE_MAX, &used, &data_len);
                        if (r < 0)
                                break;
                        memcpy(x->body + x->len, in + i + used - data_len, data_len);
                        x->len += data_len;
                        if (r == 1)
                                break;
                }
        } else if (resp.content_length >= 0) {
                x->content_length = resp.content_length;
                x->len = (size_t) MIN((uint64_t) n, (uint64_t) resp.content_length);
                memcpy(x->body, in, x->len);
        } else {
                x->len = n;
                memcpy(x->body, in, n);
        }
        http_response_done(&resp);
}

/* ---- the engine's side ---- */

/* Reads the body as the callers do; checks every byte handed out against x. */
static void read_body(struct agent_stream *s, uint8_t opt, const struct expect *x) {
        static char buf[4096];
        size_t got = 0, want = 1;
        ssize_t k;

        if ((opt & OPT_READ) <= 1) {
                size_t max = (opt & OPT_READ) == 0 ? READ_ALL_SMALL : 64 * 1024, len = 7777;
                char *body = NULL;
                int r;

                watch("agent_stream_read_all");
                r = agent_stream_read_all(s, max, &body, &len);
                watch(NULL);
                if (r == -E2BIG)
                        assert(x->len > max && "read_all: too big, but the body is not");
                if (r < 0)
                        return;
                assert(len <= max && "read_all returned more than its max");
                assert(len == x->len && memcmp(body, x->body, len) == 0 && body[len] == 0 && "read_all: not the body sent");
                free(body);
                return;
        }
        for (;;) {
                want = want * 37 % 4093 + 1; /* 1 to 4093 bytes, varied */
                watch("agent_stream_read");
                k = agent_stream_read(s, buf, want, -1);
                watch(NULL);
                if (k <= 0)
                        break;
                assert((size_t) k <= want && got + (size_t) k <= x->len && "read: more than the body sent");
                assert(memcmp(buf, x->body + got, (size_t) k) == 0 && "read: not the bytes of the body");
                got += (size_t) k;
        }
        if (k == 0)
                assert(got == x->len && "read: the body ended early");
}

/* One exchange as the engine's callers make it, the agent answering in its thread. */
static void exchange(const char *dir, const char *path, uint8_t opt, const struct expect *x, pthread_t agent,
                     bool *ret_joined) {
        struct agent_stream *s = NULL;
        struct error e = {0};
        struct buf pending;
        int r, fd;

        watch("agent_stream_open");
        /* The whole exchange bounded as the engine's JSON calls and tunnels are (under the watchdog). */
        r = agent_stream_open(path, "POST", "/fuzz", "application/json", opt & OPT_UPLOAD ? -1 : 0, -1, 2000, &s, &e);
        watch(NULL);
        unlink(path); /* connected: nothing is left behind, even after a crash */
        rmdir(dir);
        if (r < 0)
                return;
        if (opt & OPT_UPLOAD) {
                watch("agent_stream_send");
                (void) agent_stream_send(s, "{\"hello\": 1}", 12, &e);
                watch(NULL);
        }
        watch("agent_stream_finish");
        r = agent_stream_finish(s, FINISH_MS, &e);
        watch(NULL);
        if (r >= 0) {
                assert(x->head && agent_stream_status(s) == x->status && "finish: not the answer's head");
                assert(agent_stream_content_length(s) == x->content_length);
                assert(strlen(agent_stream_content_type(s)) < 128);
                agent_stream_set_read_timeout(s, READ_MS);
                if ((opt & OPT_READ) == 3 && agent_stream_status(s) == 101) {
                        fd = agent_stream_detach(s, &pending);
                        assert(fd >= 0 && pending.len <= x->after_len && memcmp(pending.data, x->after, pending.len) == 0 &&
                               "detach: the bytes after the head are not those sent");
                        close(fd);
                        buf_free(&pending);
                } else
                        read_body(s, opt, x);
        }
        assert(atomic_load(&held_peak) <= HELD_MAX && "the engine's side held more memory than its bound");
        watch("agent_stream_free");
        agent_stream_free(s);
        pthread_join(agent, NULL); /* ends once the engine's side closed */
        *ret_joined = true;
        watch(NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        pthread_t th;

        log_setup("fuzz_agent_stream", LOG_LVL_ERROR);
        signal(SIGPIPE, SIG_IGN);
        assert(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0);
        assert(pthread_create(&th, NULL, watchdog_main, NULL) == 0);
        pthread_detach(th);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct expect x = {0};
        struct agent a;
        char dir[64], path[128];
        bool joined = false;
        pthread_t th;

        if (size < 1)
                return 0;
        a = (struct agent){.opt = data[0], .answer = data + 1, .size = size - 1};
        x.body = malloc(size);
        assert(x.body);
        expected(a.answer, a.size, &x);
        a.listen_fd = agent_listen(dir, path);
        assert(pthread_create(&th, NULL, agent_main, &a) == 0);
        atomic_store(&held, 0);
        atomic_store(&held_peak, 0);
        atomic_store(&counting, true);
        exchange(dir, path, a.opt, &x, th, &joined);
        atomic_store(&counting, false);
        if (!joined)
                pthread_join(th, NULL);
        unlink(path);
        rmdir(dir);
        close(a.listen_fd);
        free(x.body);
        return 0;
}
