/* test_agent_stream.c — the engine's streamed client of the agent: request framing (fixed
 * length and chunked uploads) and every answer framing (Content-Length, chunked, to the end
 * of the connection), including answers the agent breaks off. A thread plays the agent on
 * a unix socket with a canned answer, sent in small pieces to exercise partial reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sandbox/agent_stream.h"
#include "timeutil.h"

struct fake_agent {
        char path[108];
        int listen_fd;
        const char *answer; /* sent in pieces of `piece` bytes, delay_us apart */
        size_t answer_len, piece;
        unsigned delay_us;
        char request[8192]; /* what the client sent, up to the client's shutdown or 8 KiB */
        size_t request_len;
        pthread_t thread;
};

static void *serve(void *arg) {
        struct fake_agent *f = arg;
        int fd = accept(f->listen_fd, NULL, NULL);
        ssize_t k;

        /* Read the request until its end marker: the last chunk, or the blank line. */
        while (f->request_len < sizeof(f->request) - 1) {
                k = read(fd, f->request + f->request_len, sizeof(f->request) - 1 - f->request_len);
                if (k <= 0)
                        break;
                f->request_len += (size_t) k;
                f->request[f->request_len] = 0;
                if (strstr(f->request, "0\r\n\r\n") || (strstr(f->request, "Content-Length: 0") && strstr(f->request, "\r\n\r\n")) ||
                    (strstr(f->request, "Content-Length: 5") && strstr(f->request, "\r\n\r\nhello")))
                        break;
        }
        for (size_t off = 0; off < f->answer_len; off += f->piece) {
                size_t n = f->answer_len - off < f->piece ? f->answer_len - off : f->piece;
                if (write(fd, f->answer + off, n) < 0)
                        break;
                usleep(f->delay_us);
        }
        close(fd);
        return NULL;
}

static void fake_start_n(struct fake_agent *f, const char *answer, size_t len, size_t piece, unsigned delay_us) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memset(f, 0, sizeof(*f));
        snprintf(f->path, sizeof(f->path), "/tmp/ai2in-test-agent-%d.sock", (int) getpid());
        unlink(f->path);
        strcpy(sa.sun_path, f->path);
        f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->listen_fd, 1), 0);
        f->answer = answer;
        f->answer_len = len;
        f->piece = piece;
        f->delay_us = delay_us;
        assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
}

static void fake_start(struct fake_agent *f, const char *answer) {
        fake_start_n(f, answer, strlen(answer), 7, 200);
}

static void fake_stop(struct fake_agent *f) {
        pthread_join(f->thread, NULL);
        close(f->listen_fd);
        unlink(f->path);
}

/* Reads the whole body with agent_stream_read in small steps; returns the last result. */
static ssize_t read_body(struct agent_stream *s, char *out, size_t max, size_t *ret_len) {
        ssize_t k;

        *ret_len = 0;
        while ((k = agent_stream_read(s, out + *ret_len, 5 < max - *ret_len ? 5 : max - *ret_len, -1)) > 0)
                *ret_len += (size_t) k;
        out[*ret_len] = 0;
        return k;
}

static struct agent_stream *exchange(struct fake_agent *f, const char *method, const char *body, int64_t body_len) {
        struct agent_stream *s = NULL;
        struct error e = {0};

        assert_int_equal(agent_stream_open(f->path, method, "/files?path=%2Ftmp", "application/octet-stream", body_len, -1, -1, &s, &e), 0);
        if (body)
                assert_int_equal(agent_stream_send(s, body, strlen(body), &e), 0);
        assert_int_equal(agent_stream_finish(s, 5000, &e), 0);
        return s;
}

static void test_content_length(void **state) {
        struct fake_agent f;
        char out[256];
        size_t n;

        fake_start(&f, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}");
        struct agent_stream *s = exchange(&f, "PUT", "hello", 5);
        assert_int_equal(agent_stream_status(s), 200);
        assert_string_equal(agent_stream_content_type(s), "application/json");
        assert_int_equal(agent_stream_content_length(s), 11);
        assert_int_equal(read_body(s, out, sizeof(out), &n), 0);
        assert_string_equal(out, "{\"ok\":true}");
        agent_stream_free(s);
        fake_stop(&f);
        assert_non_null(strstr(f.request, "PUT /files?path=%2Ftmp HTTP/1.1\r\n"));
        assert_non_null(strstr(f.request, "Content-Length: 5\r\n\r\nhello"));
}

static void test_chunked_answer(void **state) {
        struct fake_agent f;
        char out[256];
        size_t n;

        fake_start(&f, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "4\r\nabcd\r\na;ext=1\r\n0123456789\r\n1\r\n\n\r\n0\r\n\r\n");
        struct agent_stream *s = exchange(&f, "GET", NULL, 0);
        assert_int_equal(agent_stream_content_length(s), -1);
        assert_int_equal(read_body(s, out, sizeof(out), &n), 0);
        assert_string_equal(out, "abcd0123456789\n");
        agent_stream_free(s);
        fake_stop(&f);
}

static void test_chunked_upload(void **state) {
        struct fake_agent f;
        struct agent_stream *s = NULL;
        struct error e = {0};

        fake_start(&f, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        assert_int_equal(agent_stream_open(f.path, "PUT", "/files?path=a", NULL, -1, -1, -1, &s, &e), 0);
        assert_int_equal(agent_stream_send(s, "hello ", 6, &e), 0);
        assert_int_equal(agent_stream_send(s, "", 0, &e), 0); /* an empty piece must not end the body */
        assert_int_equal(agent_stream_send(s, "world, and more", 15, &e), 0);
        assert_int_equal(agent_stream_finish(s, 5000, &e), 0);
        assert_int_equal(agent_stream_status(s), 204);
        agent_stream_free(s);
        fake_stop(&f);
        assert_non_null(strstr(f.request, "Transfer-Encoding: chunked\r\n\r\n6\r\nhello \r\nf\r\nworld, and more\r\n0\r\n\r\n"));
}

static void test_close_delimited(void **state) {
        struct fake_agent f;
        char out[256];
        size_t n;

        fake_start(&f, "HTTP/1.0 200 OK\r\n\r\neverything until the end");
        struct agent_stream *s = exchange(&f, "GET", NULL, 0);
        assert_int_equal(read_body(s, out, sizeof(out), &n), 0);
        assert_string_equal(out, "everything until the end");
        agent_stream_free(s);
        fake_stop(&f);
}

static void test_broken_answers(void **state) {
        static const char *const broken[] = {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab",          /* cut inside a chunk */
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n",   /* not hex */
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", /* overflows */
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",                      /* short */
        };
        char out[256];
        size_t n;

        for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
                struct fake_agent f;
                fake_start(&f, broken[i]);
                struct agent_stream *s = exchange(&f, "GET", NULL, 0);
                assert_int_equal(read_body(s, out, sizeof(out), &n), -EPROTO);
                agent_stream_free(s);
                fake_stop(&f);
        }
}

/* Heads the old loose parser took (strtok, sscanf, strtoll) and the shared strict one refuses:
 * the answer is unreadable (502), not half-understood. */
static void test_malformed_heads(void **state) {
        static const char *const bad[] = {
                "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",                              /* bare LF */
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",  /* two lengths */
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
                "HTTP/1.1 2000 OK\r\n\r\n",
                "HTTP/2 200\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Type: a\x01b\r\n\r\n",                   /* control byte */
                "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct fake_agent f;
                struct agent_stream *s = NULL;
                struct error e = {0};

                fake_start(&f, bad[i]);
                assert_int_equal(agent_stream_open(f.path, "GET", "/x", NULL, 0, -1, -1, &s, &e), 0);
                if (agent_stream_finish(s, 5000, &e) >= 0)
                        fail_msg("case %zu accepted: %s", i, bad[i]);
                assert_int_equal(e.status, 502);
                /* (a head of bare LFs never ends: the agent closing is what is reported) */
                assert_non_null(strstr(e.message, strstr(bad[i], "\r\n\r\n") ? "unreadable answer" : "without an answer"));
                agent_stream_free(s);
                fake_stop(&f);
        }
}

/* A hostile agent that dribbles an endless body cannot hold the engine's thread past the
 * exchange's deadline, nor make read_all read without end through chunk framing. */
static void test_deadline_and_framing_cap(void **state) {
        static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        _cleanup_buf_ struct buf big = {0};
        struct fake_agent f;
        struct agent_stream *s = NULL;
        struct error e = {0};
        char *text = NULL;
        size_t len;
        int64_t t0;

        buf_init(&big, 64 << 20);
        assert_int_equal(buf_append_str(&big, head), 0);
        for (int i = 0; i < 100000; i++)
                assert_int_equal(buf_append_str(&big, "1\r\nx\r\n"), 0);
        fake_start_n(&f, big.data, big.len, 7, 200); /* ~35 KB/s: 17 s for all of it */
        t0 = mono_ms();
        assert_int_equal(agent_stream_open(f.path, "GET", "/x", NULL, 0, -1, 700, &s, &e), 0);
        assert_int_equal(agent_stream_finish(s, 5000, &e), 0);
        assert_int_equal(agent_stream_read_all(s, 1 << 20, &text, &len), -ETIMEDOUT);
        assert_true(mono_ms() - t0 < 2000);
        agent_stream_free(s);
        fake_stop(&f);

        /* 1-byte chunks behind 4000-digit size lines: 20 bytes of data, 80 KB on the wire. */
        buf_reset(&big);
        assert_int_equal(buf_append_str(&big, head), 0);
        for (int i = 0; i < 20; i++) {
                for (int z = 0; z < 4000; z++)
                        assert_int_equal(buf_append_str(&big, "0"), 0);
                assert_int_equal(buf_append_str(&big, "1\r\nx\r\n"), 0);
        }
        assert_int_equal(buf_append_str(&big, "0\r\n\r\n"), 0);
        fake_start_n(&f, big.data, big.len, 65536, 0);
        assert_int_equal(agent_stream_open(f.path, "GET", "/x", NULL, 0, -1, 5000, &s, &e), 0);
        assert_int_equal(agent_stream_finish(s, 5000, &e), 0);
        assert_int_equal(agent_stream_read_all(s, 64, &text, &len), -EFBIG);
        agent_stream_free(s);
        fake_stop(&f);
}

static void test_no_answer(void **state) {
        struct fake_agent f;
        struct agent_stream *s = NULL;
        struct error e = {0};

        fake_start(&f, "");
        assert_int_equal(agent_stream_open(f.path, "GET", "/health", NULL, 0, -1, -1, &s, &e), 0);
        assert_true(agent_stream_finish(s, 5000, &e) < 0);
        assert_int_equal(e.status, 502);
        assert_non_null(strstr(e.message, "without an answer"));
        agent_stream_free(s);
        fake_stop(&f);

        /* Nobody listening: a 502 that says the agent is not reachable. */
        assert_true(agent_stream_open("/tmp/ai2in-no-such-agent.sock", "GET", "/health", NULL, 0, -1, -1, &s, &e) < 0);
        assert_int_equal(e.status, 502);
        assert_non_null(strstr(e.message, "not reachable"));
}

int main(void) {
        signal(SIGPIPE, SIG_IGN); /* the fake agent writes on after the client hung up */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_content_length), cmocka_unit_test(test_chunked_answer),
                cmocka_unit_test(test_chunked_upload), cmocka_unit_test(test_close_delimited),
                cmocka_unit_test(test_broken_answers), cmocka_unit_test(test_malformed_heads),
                cmocka_unit_test(test_deadline_and_framing_cap), cmocka_unit_test(test_no_answer),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
