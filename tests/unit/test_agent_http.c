/* test_agent_http.c — the agent's HTTP server and its pure parts: the request-head
 * parser, the chunked body decoder, request bodies streamed to a handler or buffered
 * (served through a socketpair, one request at a time, in this thread), the fixed-length
 * response writer; also the UTF-8 sanitiser for command output and the /etc/passwd and
 * /etc/group reader.
 *
 * The agent is a separate static program, so its sources are compiled in here directly
 * rather than linked from the engine's objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../agent/http.c"
#include "../../agent/users.c"
#include "../../agent/utf8.c"

static int parse(const char *text, struct http_request *req, size_t *head_len) {
        return http_request_parse_head(req, text, strlen(text), head_len);
}

static void test_parse_get(void **state) {
        struct http_request req = {};
        size_t len = 0;
        const char *text = "GET /health?x=1&y HTTP/1.1\r\nHost: agent\r\nX-Thing:  spaced value \t\r\n\r\nNEXT";

        assert_int_equal(parse(text, &req, &len), 1);
        assert_int_equal(len, strlen(text) - 4);
        assert_string_equal(req.method, "GET");
        assert_string_equal(req.path, "/health");
        assert_string_equal(req.query, "x=1&y");
        assert_int_equal(req.minor_version, 1);
        assert_int_equal(req.n_headers, 2);
        assert_string_equal(http_request_header(&req, "host"), "agent");
        assert_string_equal(http_request_header(&req, "x-thing"), "spaced value");
        assert_null(http_request_header(&req, "Missing"));
        assert_true(req.keep_alive);
        assert_false(req.expect_continue);
        assert_int_equal(req.content_length, 0);
        http_request_done(&req);
}

static void test_parse_post(void **state) {
        struct http_request req = {};
        size_t len = 0;

        assert_int_equal(parse("POST /exec HTTP/1.1\r\ncontent-length: 17\r\nConnection: Keep-Alive, Close\r\n"
                               "Expect: 100-Continue\r\n\r\n",
                               &req, &len),
                         1);
        assert_string_equal(req.method, "POST");
        assert_null(req.query);
        assert_int_equal(req.content_length, 17);
        assert_false(req.keep_alive);
        assert_true(req.expect_continue);
        http_request_done(&req);

        /* HTTP/1.0 closes unless asked not to. */
        assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &req, &len), 1);
        assert_false(req.keep_alive);
        http_request_done(&req);
        assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &req, &len), 1);
        assert_true(req.keep_alive);
        http_request_done(&req);

        /* Repeated Content-Length is fine when the values agree. */
        assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &req, &len), 1);
        assert_int_equal(req.content_length, 5);
        http_request_done(&req);
}

static void test_parse_chunked_header(void **state) {
        struct http_request req = {};
        size_t len = 0;

        assert_int_equal(parse("PUT /f HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n", &req, &len), 1);
        assert_true(req.chunked);
        assert_int_equal(req.content_length, 0);
        http_request_done(&req);
}

static void test_parse_incomplete(void **state) {
        struct http_request req = {};
        size_t len = 0;

        assert_int_equal(parse("", &req, &len), 0);
        assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n", &req, &len), 0);
        assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n\r", &req, &len), 0);
        assert_null(req.head);
}

static void test_parse_errors(void **state) {
        static const struct {
                const char *text;
                int error;
        } cases[] = {
                {"GARBAGE\r\n\r\n", -EBADMSG},
                {"GET /\r\n\r\n", -EBADMSG},
                {"GET  / HTTP/1.1\r\n\r\n", -EBADMSG},
                {"GET http://host/ HTTP/1.1\r\n\r\n", -EBADMSG},
                {"GET /a b HTTP/1.1\r\n\r\n", -EBADMSG},
                {"G(T / HTTP/1.1\r\n\r\n", -EBADMSG},
                {"GET / FTP/1.1\r\n\r\n", -EBADMSG},
                {"GET / HTTP/2.0\r\n\r\n", -EPROTONOSUPPORT},
                {"GET / HTTP/1.10\r\n\r\n", -EPROTONOSUPPORT},
                {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nName : v\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", -EOPNOTSUPP},
                {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -EOPNOTSUPP},
                {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -EBADMSG},
                {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -EBADMSG},
                {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", -EBADMSG},     /* two Hosts */
                {"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", -EBADMSG}, /* 2^63 */
        };
        struct http_request req = {};
        size_t len = 0;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = parse(cases[i].text, &req, &len);
                if (r != cases[i].error)
                        fail_msg("case %zu (%s): got %d, want %d", i, cases[i].text, r, cases[i].error);
                assert_null(req.head);
        }

        /* A NUL byte in the head. */
        static const char nul[] = "GET / HTTP/1.1\r\nA: \0\r\n\r\n";
        assert_int_equal(http_request_parse_head(&req, nul, sizeof(nul) - 1, &len), -EBADMSG);
}

static void test_parse_limits(void **state) {
        struct http_request req = {};
        _cleanup_buf_ struct buf b = {.cap = 4 * HTTP_MAX_HEAD};
        size_t len = 0;

        /* No end of head within HTTP_MAX_HEAD bytes. */
        assert_int_equal(buf_append_str(&b, "GET / HTTP/1.1\r\nX: "), 0);
        while (b.len < HTTP_MAX_HEAD)
                assert_int_equal(buf_append_str(&b, "aaaaaaaaaaaaaaaa"), 0);
        assert_int_equal(http_request_parse_head(&req, b.data, b.len, &len), -E2BIG);

        /* Too many header fields. */
        buf_reset(&b);
        assert_int_equal(buf_append_str(&b, "GET / HTTP/1.1\r\n"), 0);
        for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
                assert_int_equal(buf_printf(&b, "H%d: v\r\n", i), 0);
        assert_int_equal(buf_append_str(&b, "\r\n"), 0);
        assert_int_equal(http_request_parse_head(&req, b.data, b.len, &len), -E2BIG);
        assert_null(req.head);
}

static void test_status(void **state) {
        assert_string_equal(http_status_text(404), "Not Found");
        assert_string_equal(http_status_text(599), "Unknown");
        assert_int_equal(http_status_from_errno(-EBADMSG), 400);
        assert_int_equal(http_status_from_errno(-EFBIG), 413);
        assert_int_equal(http_status_from_errno(-E2BIG), 431);
        assert_int_equal(http_status_from_errno(-EOPNOTSUPP), 501);
        assert_int_equal(http_status_from_errno(-EPROTONOSUPPORT), 505);
        assert_int_equal(http_status_from_errno(-ENOMEM), 500);
}

/* ---- the chunked decoder ---- */

/* Decodes in (len bytes) fed step bytes at a time, data handed out at most max_data at a
 * time; returns the decoder's last result and the data in out (*out_len). */
static int decode_all(const char *in, size_t len, size_t step, size_t max_data, char *out, size_t *out_len,
                      size_t *ret_used) {
        struct http_chunked d = {};
        size_t off = 0, used, data_len;
        int r = 0;

        *out_len = 0;
        while (off < len && r == 0) {
                size_t avail = MIN(step, len - off);
                r = http_chunked_decode(&d, in + off, avail, max_data, &used, &data_len);
                if (r < 0)
                        return r;
                assert_true(used <= avail);
                assert_true(data_len <= used && data_len <= max_data);
                memcpy(out + *out_len, in + off + used - data_len, data_len);
                *out_len += data_len;
                off += used;
        }
        *ret_used = off;
        return r;
}

static void test_chunked_decode(void **state) {
        static const char body[] = "5\r\nhello\r\n"
                                   "1;ext=\"a b\";other\r\n \r\n"
                                   "0000A \t;x\r\n0123456789\r\n"
                                   "0\r\nX-Checksum: abc\r\nY:\t2\r\n\r\n"
                                   "NEXT REQUEST";
        static const char want[] = "hello 0123456789";
        static const size_t steps[] = {1, 2, 3, 7, 1000};
        size_t end = sizeof(body) - 1 - strlen("NEXT REQUEST");
        char out[64];
        size_t out_len, used;

        for (size_t i = 0; i < ELEMENTSOF(steps); i++)
                for (size_t max_data = 1; max_data <= 16; max_data += 5) {
                        assert_int_equal(decode_all(body, sizeof(body) - 1, steps[i], max_data, out, &out_len, &used), 1);
                        assert_int_equal(out_len, strlen(want));
                        assert_memory_equal(out, want, out_len);
                        assert_int_equal(used, end); /* the next request is left alone */
                }

        /* An empty body, and the largest chunk size that does not overflow. */
        assert_int_equal(decode_all("0\r\n\r\n", 5, 5, 16, out, &out_len, &used), 1);
        assert_int_equal(out_len, 0);
        struct http_chunked d = {};
        size_t data_len;
        assert_int_equal(http_chunked_decode(&d, "ffffffffffffffff\r\nab", 20, 16, &used, &data_len), 0);
        assert_int_equal(used, 20);
        assert_int_equal(data_len, 2);
        assert_true(http_chunked_data_left(&d) == UINT64_MAX - 2);
}

/* Issue 11: a caller that read *ret_used after an error advanced by garbage. Every output
 * is set on every path: on error nothing is consumed, and the decoder stays failed. */
static void test_chunked_error_outputs(void **state) {
        static const char *const cases[] = {"-5\r\nhello\r\n0\r\n\r\n", "0\r\nX: \x01\r\n\r\n", "5\nhello"};

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct http_chunked d = {};
                size_t used = 12345, data_len = 678;

                assert_int_equal(http_chunked_decode(&d, cases[i], strlen(cases[i]), SIZE_MAX, &used, &data_len), -EBADMSG);
                assert_int_equal(used, 0);
                assert_int_equal(data_len, 0);
                used = data_len = 99;
                assert_int_equal(http_chunked_decode(&d, "0\r\n\r\n", 5, SIZE_MAX, &used, &data_len), -EBADMSG);
                assert_int_equal(used, 0);
                assert_int_equal(data_len, 0);
        }

        /* The head parser: outputs zeroed when incomplete or malformed. */
        struct http_request req;
        size_t head_len = 777;
        memset(&req, 0x5a, sizeof(req));
        assert_int_equal(http_request_parse_head(&req, "GET / HTTP/1.1\r\n", 16, &head_len), 0);
        assert_int_equal(head_len, 0);
        assert_null(req.head);
        head_len = 777;
        memset(&req, 0x5a, sizeof(req));
        assert_int_equal(http_request_parse_head(&req, "GET x HTTP/1.1\r\n\r\n", 18, &head_len), -EBADMSG);
        assert_int_equal(head_len, 0);
        assert_null(req.head);
}

static void test_chunked_errors(void **state) {
        static const char *const cases[] = {
                "\r\n",                        /* no size */
                "x\r\n",                       /* not hex */
                "-1\r\n",
                "+1\r\n",
                "0x5\r\n",
                "5\nhello\r\n0\r\n\r\n",       /* bare LF */
                "5\r\rhello",
                "5\r\nhelloX\r\n",             /* data longer than its size */
                "5\r\nhello\n0\r\n\r\n",
                "5 \r\nhello\r\n",             /* whitespace not followed by an extension */
                "5;a\x01\r\n",                 /* control byte in an extension */
                "10000000000000000\r\n",      /* 2^64: overflow */
                "fffffffffffffffff\r\n",
                "0\r\nX: a\nb\r\n\r\n",        /* bare LF in a trailer */
                "0\r\nX: \x7f\r\n\r\n",
                "0\r\nGET /x HTTP/1.1\r\n\r\n",   /* a trailer that is not a field */
                "0\r\n: v\r\n\r\n",              /* a trailer with no name */
                "0\r\nBad Name: v\r\n\r\n",
                "0\r\n\r\r",                   /* final CRLF broken */
                "0\r\n\n",
        };
        _cleanup_buf_ struct buf b = {};
        char out[64];
        size_t out_len, used;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int r = decode_all(cases[i], strlen(cases[i]), 1, 64, out, &out_len, &used);
                if (r != -EBADMSG)
                        fail_msg("case %zu (%s): got %d, want -EBADMSG", i, cases[i], r);
        }

        /* A size line over HTTP_CHUNK_LINE_MAX (long extension), and leading zeros past it. */
        buf_init(&b, 4 * HTTP_MAX_TRAILERS);
        assert_int_equal(buf_append_str(&b, "1;"), 0);
        while (b.len < HTTP_CHUNK_LINE_MAX)
                assert_int_equal(buf_append_str(&b, "aaaaaaaa"), 0);
        assert_int_equal(buf_append_str(&b, "\r\nx\r\n0\r\n\r\n"), 0);
        assert_int_equal(decode_all(b.data, b.len, 100, 64, out, &out_len, &used), -EBADMSG);
        buf_reset(&b);
        while (b.len <= HTTP_CHUNK_LINE_MAX)
                assert_int_equal(buf_append_str(&b, "00000000"), 0);
        assert_int_equal(buf_append_str(&b, "1\r\nx\r\n0\r\n\r\n"), 0);
        assert_int_equal(decode_all(b.data, b.len, 100, 64, out, &out_len, &used), -EBADMSG);

        /* Trailers over HTTP_MAX_TRAILERS in all, each line short. */
        buf_reset(&b);
        assert_int_equal(buf_append_str(&b, "0\r\n"), 0);
        while (b.len <= HTTP_MAX_TRAILERS)
                assert_int_equal(buf_append_str(&b, "X-Trailer: 0123456789\r\n"), 0);
        assert_int_equal(buf_append_str(&b, "\r\n"), 0);
        assert_int_equal(decode_all(b.data, b.len, 100, 64, out, &out_len, &used), -EBADMSG);
}

/* ---- the server, through a socketpair ---- */

struct served {
        int calls;
        bool read_body;      /* the handler reads the body with http_body_read */
        size_t read_step;    /* in pieces of this size */
        ssize_t last_read;   /* what the last http_body_read returned */
        char body[4096];
        size_t body_len;
        const char *feed[3]; /* sent to feed_fd by the handler, one before each read */
        const char *late;    /* sent 100 ms after the handler starts, from another thread */
        int feed_fd;
};

static bool streams_all(const struct http_request *req) {
        return strcmp(req->path, "/buffered") != 0;
}

static void *send_late(void *arg) {
        struct served *s = arg;

        usleep(100 * 1000);
        assert_int_equal(write(s->feed_fd, s->late, strlen(s->late)), (ssize_t) strlen(s->late));
        return NULL;
}

/* Echoes the body it read (streamed) or got (buffered) as the response. */
static int echo_handler(struct http_conn *c, const struct http_request *req, void *userdata) {
        struct served *s = userdata;
        pthread_t late;
        ssize_t n;

        s->calls++;
        s->body_len = 0;
        if (s->feed[0])
                assert_int_equal(c->in.len, 0); /* nothing of the body was read with the head */
        if (s->late)
                assert_int_equal(pthread_create(&late, NULL, send_late, s), 0);
        if (strcmp(req->path, "/buffered") == 0) {
                assert_int_equal(http_body_read(c, s->body, 1), -EINVAL);
                memcpy(s->body, req->body.data, req->body.len);
                s->body_len = req->body.len;
        } else if (s->read_body) {
                for (size_t i = 0;; i++) {
                        if (i < ELEMENTSOF(s->feed) && s->feed[i])
                                assert_int_equal(write(s->feed_fd, s->feed[i], strlen(s->feed[i])),
                                                 (ssize_t) strlen(s->feed[i]));
                        n = http_body_read(c, s->body + s->body_len, s->read_step);
                        if (n <= 0)
                                break;
                        s->body_len += (size_t) n;
                }
                s->last_read = n;
                memset(s->feed, 0, sizeof(s->feed));
                if (s->late) {
                        assert_int_equal(pthread_join(late, NULL), 0);
                        s->late = NULL;
                }
                if (n < 0)
                        return http_respond_error(c, 400, "bad_request", "body: %s", strerror((int) -n));
        }
        if (strcmp(req->path, "/short") == 0) {
                assert_int_equal(http_respond_begin(c, 200, "text/plain", 10), 0);
                assert_int_equal(http_write(c, "0123456789X", 11), -EMSGSIZE);
                return http_write(c, "01234", 5); /* 5 of 10: the connection must close */
        }
        return http_respond(c, 200, "text/plain", s->body, s->body_len);
}

struct pair {
        struct http_server server;
        struct http_conn conn;
        int client;
        struct served served;
};

static void pair_open(struct pair *p) {
        int fds[2];

        *p = (struct pair){};
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        p->server = (struct http_server){.handler = echo_handler, .userdata = &p->served, .streams_body = streams_all};
        p->conn = (struct http_conn){.server = &p->server, .fd = fds[0]};
        buf_init(&p->conn.in, CONN_IN_MAX);
        p->client = fds[1];
        p->served.read_body = true;
        p->served.read_step = 3;
}

static void pair_close(struct pair *p) {
        close(p->conn.fd);
        close(p->client);
        buf_free(&p->conn.in);
}

static void pair_send(struct pair *p, const char *text) {
        assert_int_equal(write(p->client, text, strlen(text)), (ssize_t) strlen(text));
}

/* Reads what the server has sent so far (it has finished: nothing blocks). */
static void pair_recv(struct pair *p, char *out, size_t size) {
        ssize_t n = recv(p->client, out, size - 1, MSG_DONTWAIT);

        out[n > 0 ? n : 0] = 0;
}

static void test_server_streamed_bodies(void **state) {
        struct pair p = {};
        char out[8192];

        pair_open(&p);
        /* Content-Length, read in 3-byte pieces, then a pipelined chunked one. */
        pair_send(&p, "PUT /a HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
                      "PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x\r\nchun\r\n3\r\nked\r\n0\r\nT: 1\r\n\r\n"
                      "PUT /c HTTP/1.1\r\n\r\n");
        assert_true(conn_serve_one(&p.conn));
        assert_true(conn_serve_one(&p.conn));
        assert_true(conn_serve_one(&p.conn)); /* no body at all: http_body_read says 0 at once */
        assert_int_equal(p.served.last_read, 0);
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "Content-Length: 11\r\n\r\nhello world"));
        assert_non_null(strstr(out, "Content-Length: 7\r\n\r\nchunked"));
        assert_non_null(strstr(out, "Content-Length: 0\r\n\r\n"));
        assert_null(strstr(out, "close"));

        /* Large reads decode in place in the handler's buffer; what follows the body
         * (the next request, after trailers) is kept for the next round. The body is sent
         * only once the head has been read, so nothing of it is buffered yet. */
        p.served.read_step = 8192;
        p.served.feed_fd = p.client;
        p.served.feed[0] = "3\r\none\r\n3;e=1\r\ntwo\r\n5\r\nthr";
        p.served.feed[1] = "ee";
        p.served.feed[2] = "\r\n"; /* a read of framing only must not look like the end */
        p.served.late = "0\r\nT: x\r\n\r\nPUT /e HTTP/1.1\r\nContent-Length: 4\r\n\r\nfour";
        pair_send(&p, "PUT /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_true(conn_serve_one(&p.conn));
        assert_int_equal(p.served.body_len, 11);
        assert_memory_equal(p.served.body, "onetwothree", 11);
        assert_true(conn_serve_one(&p.conn));
        assert_int_equal(p.served.body_len, 4);
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "Content-Length: 11\r\n\r\nonetwothree"));
        assert_non_null(strstr(out, "Content-Length: 4\r\n\r\nfour"));

        /* A chunked body to a buffered route lands in req->body. */
        pair_send(&p, "POST /buffered HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
        assert_true(conn_serve_one(&p.conn));
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "Content-Length: 2\r\n\r\n{}"));
        pair_close(&p);
}

static void test_server_unread_bodies(void **state) {
        struct pair p = {};
        char out[8192];

        /* A handler that reads nothing: a small Content-Length body is drained, the
         * connection lives on for the next request. */
        pair_open(&p);
        p.served.read_body = false;
        pair_send(&p, "PUT /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET /h HTTP/1.1\r\n\r\n");
        assert_true(conn_serve_one(&p.conn));
        assert_true(conn_serve_one(&p.conn));
        assert_int_equal(p.served.calls, 2);
        pair_recv(&p, out, sizeof(out));
        assert_null(strstr(out, "Connection: close"));
        pair_close(&p);

        /* An unread chunked body, or one beyond the drain limit: the answer says close. */
        pair_open(&p);
        p.served.read_body = false;
        pair_send(&p, "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n");
        shutdown(p.client, SHUT_WR);
        assert_false(conn_serve_one(&p.conn));
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
        assert_non_null(strstr(out, "Connection: close\r\n"));
        pair_close(&p);

        pair_open(&p);
        p.served.read_body = false;
        pair_send(&p, "PUT /a HTTP/1.1\r\nContent-Length: 100000000\r\n\r\nabc");
        shutdown(p.client, SHUT_WR);
        assert_false(conn_serve_one(&p.conn));
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "Connection: close\r\n"));
        pair_close(&p);
}

/* Sends HTTP_MAX_BODY + 1 bytes of chunk data from another thread (more than a
 * socketpair holds), then stops sending. */
static void *send_megabyte(void *arg) {
        struct pair *p = arg;
        char block[64 * 1024];
        size_t left = HTTP_MAX_BODY + 1;

        memset(block, 'x', sizeof(block));
        while (left > 0) {
                ssize_t n = send(p->client, block, MIN(left, sizeof(block)), MSG_NOSIGNAL);
                if (n <= 0)
                        break;
                left -= (size_t) n;
        }
        shutdown(p->client, SHUT_WR);
        return NULL;
}

static void test_server_body_errors(void **state) {
        struct pair p = {};
        pthread_t writer;
        char out[8192];

        /* The client goes away in the middle of a chunk: -ECONNRESET to the handler. */
        pair_open(&p);
        pair_send(&p, "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc");
        shutdown(p.client, SHUT_WR);
        assert_false(conn_serve_one(&p.conn));
        assert_int_equal(p.served.last_read, -ECONNRESET);
        assert_int_equal(p.conn.body.error, -ECONNRESET); /* sticky */
        pair_close(&p);

        /* Content-Length: the body ends early. */
        pair_open(&p);
        pair_send(&p, "PUT /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        shutdown(p.client, SHUT_WR);
        assert_false(conn_serve_one(&p.conn));
        assert_int_equal(p.served.last_read, -ECONNRESET);
        pair_close(&p);

        /* Malformed framing: -EBADMSG, and the connection closes. */
        pair_open(&p);
        pair_send(&p, "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n");
        assert_false(conn_serve_one(&p.conn));
        assert_int_equal(p.served.last_read, -EBADMSG);
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "HTTP/1.1 400 Bad Request\r\n"));
        assert_non_null(strstr(out, "Connection: close\r\n"));
        pair_close(&p);

        /* Buffered route: a chunked body over HTTP_MAX_BODY is 413, never seen by the handler. */
        pair_open(&p);
        pair_send(&p, "POST /buffered HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n");
        assert_int_equal(pthread_create(&writer, NULL, send_megabyte, &p), 0);
        assert_false(conn_serve_one(&p.conn));
        assert_int_equal(pthread_join(writer, NULL), 0);
        assert_int_equal(p.served.calls, 0);
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "HTTP/1.1 413 Content Too Large\r\n"));
        pair_close(&p);
}

static void test_server_fixed_length(void **state) {
        struct pair p = {};
        char out[8192];

        /* A response cut short of its Content-Length closes the connection. */
        pair_open(&p);
        pair_send(&p, "GET /short HTTP/1.1\r\n\r\n");
        assert_false(conn_serve_one(&p.conn));
        pair_recv(&p, out, sizeof(out));
        assert_non_null(strstr(out, "Content-Length: 10\r\n"));
        assert_non_null(strstr(out, "\r\n\r\n01234"));
        pair_close(&p);
}

static void assert_sanitized(const char *in, size_t n, const char *want, size_t want_len) {
        _cleanup_free_ char *out = NULL;
        size_t len = 0;

        assert_int_equal(utf8_sanitize(in, n, &out, &len), 0);
        assert_int_equal(len, want_len);
        assert_memory_equal(out, want, want_len);
        assert_int_equal(out[len], 0);
}
#define CHECK(in, want) assert_sanitized(in, sizeof(in) - 1, want, sizeof(want) - 1)
#define R "\xef\xbf\xbd"

static void test_utf8(void **state) {
        CHECK("", "");
        CHECK("plain ascii\n", "plain ascii\n");
        CHECK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
        CHECK("a\0b", "a\0b");                            /* NUL is data */
        CHECK("\xff", R);                                 /* never valid */
        CHECK("\xff\xfeok", R R "ok");
        CHECK("\x80", R);                                 /* stray continuation */
        CHECK("ok\xe2\x82", "ok" R);                      /* cut short: one replacement */
        CHECK("\xe2\x82x", R "x");
        CHECK("\xc0\x80", R R);                           /* overlong NUL */
        CHECK("\xe0\x80\x80", R R R);                     /* overlong */
        CHECK("\xed\xa0\x80", R R R);                     /* surrogate U+D800 */
        CHECK("\xf4\x90\x80\x80", R R R R);               /* past U+10FFFF */
        CHECK("\xf0\x9f\x98", R);                         /* 4-byte sequence cut short */
        CHECK("\xef\xbf\xbd", R);                         /* U+FFFD itself is valid */

        assert_int_equal(utf8_valid_sequence((const unsigned char *) "\xc3\xa9", 2), 2);
        assert_int_equal(utf8_valid_sequence((const unsigned char *) "\xc3", 1), 0);
        assert_int_equal(utf8_valid_sequence((const unsigned char *) "", 0), 0);
}

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void test_users(void **state) {
        char dir[] = "/tmp/test-agent-users-XXXXXX", passwd[64], group[64];
        struct user_info u = {};

        assert_non_null(mkdtemp(dir));
        snprintf(passwd, sizeof(passwd), "%s/passwd", dir);
        snprintf(group, sizeof(group), "%s/group", dir);
        write_text(passwd, "# comment\n"
                           "root:x:0:0:root:/root:/bin/bash\n"
                           "broken line\n"
                           "sandbox:x:1000:1000:Sandbox,,,:/home/sandbox:/bin/bash\n"
                           "nohome:x:1001:1001:::\n"
                           "badid:x:12a:1001::/:/bin/sh\n");
        write_text(group, "root:x:0:\nsandbox:x:1000:\nsudo:x:27:alice,sandbox\ndocker:x:999:alice\nusers:x:100:sandbox\n");

        assert_int_equal(user_lookup_in(passwd, group, "sandbox", &u), 0);
        assert_string_equal(u.name, "sandbox");
        assert_string_equal(u.home, "/home/sandbox");
        assert_string_equal(u.shell, "/bin/bash");
        assert_int_equal(u.uid, 1000);
        assert_int_equal(u.gid, 1000);
        assert_int_equal(u.n_groups, 3);
        assert_int_equal(u.groups[0], 1000);
        assert_int_equal(u.groups[1], 27);
        assert_int_equal(u.groups[2], 100);
        user_info_done(&u);

        assert_int_equal(user_lookup_in(passwd, group, "nohome", &u), 0);
        assert_string_equal(u.home, "/");
        user_info_done(&u);

        assert_int_equal(user_lookup_in(passwd, group, "nobody", &u), -ESRCH);
        assert_int_equal(user_lookup_in(passwd, group, "badid", &u), -EBADMSG);
        assert_int_equal(user_lookup_in(passwd, group, "root", &u), 0);
        assert_int_equal(u.uid, 0);
        user_info_done(&u);

        /* No passwd file at all: only root is known. */
        assert_int_equal(user_lookup_in("/nonexistent/passwd", "/nonexistent/group", "root", &u), 0);
        assert_string_equal(u.home, "/root");
        user_info_done(&u);
        assert_int_equal(user_lookup_in("/nonexistent/passwd", "/nonexistent/group", "sandbox", &u), -ESRCH);

        unlink(passwd);
        unlink(group);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_get),   cmocka_unit_test(test_parse_post),
                cmocka_unit_test(test_parse_incomplete), cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_parse_limits), cmocka_unit_test(test_status),
                cmocka_unit_test(test_parse_chunked_header), cmocka_unit_test(test_chunked_decode),
                cmocka_unit_test(test_chunked_errors), cmocka_unit_test(test_chunked_error_outputs), cmocka_unit_test(test_server_streamed_bodies),
                cmocka_unit_test(test_server_unread_bodies), cmocka_unit_test(test_server_body_errors),
                cmocka_unit_test(test_server_fixed_length),
                cmocka_unit_test(test_utf8),        cmocka_unit_test(test_users),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
