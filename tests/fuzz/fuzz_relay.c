/* fuzz_relay — the preview proxy's request-following step (engine/proxy/relay.c), driven as
 * the proxy drives it: a client and a sandbox's server on the two ends of socketpairs, the
 * first head already read (proxy.c reads and checks it before the relay begins), then
 * relay_step() called with the events poll() reports for what the relay waits for (as the
 * loops' epoll would: one fd at a time), or without events (a tick) when nothing is ready;
 * the engine's real store underneath (SQLite in memory, for sandbox_touch).
 *
 * The oracle is a reference model (model() below), independent of relay.c: from the client's
 * bytes, the connection's sandbox, port and token, and the server's answers to Upgrade
 * requests, it computes the exact byte stream a correct relay sends to the server: each
 * accepted request's head without its token lines, then its body as sent (chunked framing
 * included), up to the first refused request or the failure point of a malformed body. It
 * uses only the shared parser and chunked decoder (common/http-parse.c). Checked: what
 * reached the server is a prefix of that stream; all of it once the relay ran to its end;
 * when the relay refuses, so did the model, and everything before the refused request went
 * up and nothing of it. Also: the relay's offsets stay within what it read, and it never
 * spins (asks for an event that is ready while moving nothing, step after step).
 *
 * The first input byte chooses options (OPT_* below), the rest is what the client sends. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "macro.h"
#include "proxy/proxy-internal.h"
#include "store/backend.h"
#include "timeutil.h"

/* The rules being added to the relay on main: 1 models the rule, 0 leaves it out (to test a
 * relay that does not have it yet, build with -DRULE_...=0). */
#ifndef RULE_UPGRADE_FIRST
#define RULE_UPGRADE_FIRST 1 /* (b) an Upgrade request that is not the connection's first is refused */
#endif
#ifndef RULE_ONE_HOST_TOKEN
#define RULE_ONE_HOST_TOKEN 1 /* (c) two Host headers, or two token headers, are refused */
#endif
#ifndef RULE_TRAILER_SYNTAX
#define RULE_TRAILER_SYNTAX 1 /* (d) a chunked body's trailer line is token ":" value */
#endif

#define ID "sbx_aaaaaaaaaaaaaaaaaaaa"
#define HOST_LABEL "8000-" ID /* the Host's first label for port 8000 of ID */
#define HOST_LABEL_DNS "8000-sbx-aaaaaaaaaaaaaaaaaaaa" /* the same, the id's '_' as '-' */
#define TOKEN "tok0123456789abcdefghijklmnopqrstuvwxyz0"
#define TOKEN_HEADER "X-Ai2in-Traffic-Token"
#define OUT_MAX (256 * 1024)
#define SENDS_MAX 4096    /* the client's input goes in at most this many pieces */
#define STEPS_MAX (1 << 18)
#define TICK_MS 1000      /* loop.c's: a step without events when nothing is ready */
#define STALL_MS 30000    /* OPT_STALL: how long the server reads nothing */
#define BUSY_MAX 1000     /* steps woken by a ready event without any progress: a busy loop */
#define PROGRESS_N 11

enum {
        OPT_SECURE = 1 << 0, /* the sandbox has a traffic token */
        OPT_101 = 1 << 1,    /* the server answers an Upgrade request with 101 (else 200) */
        OPT_STALL = 1 << 2,  /* the server reads the first head, answers it, then reads nothing for STALL_MS */
        OPT_ANSWER = 1 << 3, /* the server answers every request, not only Upgrade requests */
        /* Bits 4-7: n, the client sends pieces of 2^n bytes (at least 1/SENDS_MAX of the input);
         * n odd: the server's answer to an Upgrade request comes in two parts. */
};

static const char ANSWER_101[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n";
static const char ANSWER_200[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* ---- the model ---- */

enum end {
        END_INPUT,    /* nothing refused: the relay sends all of out */
        END_REFUSED,  /* a request head refused: out ends where it starts */
        END_BAD_BODY, /* a malformed chunked body: out ends before its first bad byte */
};

struct head_mark {
        size_t at; /* where an accepted head ends in out */
        bool upgrade;
};

struct expect {
        uint8_t *out; /* what a correct relay sends the server */
        size_t len;
        enum end end;
        size_t min_len;   /* END_BAD_BODY: what goes at least (up to the bad body's start) */
        bool upgrade;     /* an Upgrade request was accepted */
        struct head_mark *heads;
        size_t n_heads;
        size_t first_end; /* where the first accepted head ends in the client's bytes */
};

static size_t header_count(const struct http_request *req, const char *name) {
        size_t n = 0;

        for (size_t i = 0; i < req->n_headers; i++)
                n += strcasecmp(req->headers[i].name, name) == 0;
        return n;
}

/* Whether host names port 8000 of ID: its first label (up to '.' or ':') is HOST_LABEL or
 * HOST_LABEL_DNS. */
static bool host_ours(const char *host) {
        size_t n = strlen(HOST_LABEL);

        return host && (strncasecmp(host, HOST_LABEL, n) == 0 || strncasecmp(host, HOST_LABEL_DNS, n) == 0) &&
               (!host[n] || host[n] == '.' || host[n] == ':');
}

/* Whether the relay lets req through; n_before: the requests accepted before it. */
static bool accepted(const struct http_request *req, uint8_t opt, size_t n_before) {
        const char *token = http_request_header(req, TOKEN_HEADER);
        bool upgrade = http_request_header(req, "Upgrade") != NULL;

        /* Every request is for the connection's sandbox and port (else 421 or 400). */
        if (!host_ours(http_request_header(req, "Host")))
                return false;
        /* A secure sandbox's every request carries its token (else 403). */
        if ((opt & OPT_SECURE) && (!token || strcmp(token, TOKEN) != 0))
                return false;
        /* (a) An Upgrade request has no body: the relay would not follow it. */
        if (upgrade && (req->chunked || req->content_length > 0))
                return false;
        /* (b) Only the first request may be an Upgrade: no earlier answer is taken for its answer. */
        if (RULE_UPGRADE_FIRST && upgrade && n_before > 0)
                return false;
        /* (c) One Host, one token: no two readings of which sandbox or whether allowed. */
        if (RULE_ONE_HOST_TOKEN && (header_count(req, "Host") > 1 || header_count(req, TOKEN_HEADER) > 1))
                return false;
        return true;
}

static void put(struct expect *x, const uint8_t *p, size_t n) {
        memcpy(x->out + x->len, p, n);
        x->len += n;
}

/* A head as the relay sends it: without its token lines. */
static void put_head(struct expect *x, const uint8_t *h, size_t len) {
        const size_t name_len = strlen(TOKEN_HEADER);

        for (size_t p = 0, line; p < len; p += line) {
                const uint8_t *eol = memmem(h + p, len - p, "\r\n", 2);
                const uint8_t *colon = memchr(h + p, ':', (size_t) (eol - (h + p)));

                line = (size_t) (eol - (h + p)) + 2; /* a parsed head: every line ends in CRLF */
                if (p > 0 && colon == h + p + name_len && strncasecmp((const char *) h + p, TOKEN_HEADER, name_len) == 0)
                        continue;
                put(x, h + p, line);
        }
}

static bool is_tchar(uint8_t ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* (d) The trailer lines of the well-formed chunked body b (len bytes) are token ":" value.
 * If not, *ret_bad is where the relay stops at the latest: the bad line's CR. */
static bool trailers_ok(const uint8_t *b, size_t len, size_t *ret_bad) {
        size_t p = 0, end;
        uint64_t size;

        do { /* to the last chunk, over framing the decoder found valid */
                for (size = 0; isxdigit(b[p]); p++)
                        size = size * 16 + (uint64_t) (b[p] <= '9' ? b[p] - '0' : (b[p] | 0x20) - 'a' + 10);
                p = (size_t) ((const uint8_t *) memmem(b + p, len - p, "\r\n", 2) - b) + 2;
                p += size ? (size_t) size + 2 : 0;
        } while (size);
        for (; p < len - 2; p = end + 2) { /* the lines before the blank one */
                size_t name = 0;

                end = (size_t) ((const uint8_t *) memmem(b + p, len - p, "\r\n", 2) - b);
                while (p + name < end && is_tchar(b[p + name]))
                        name++;
                if (name == 0 || p + name == end || b[p + name] != ':') {
                        *ret_bad = end + 1; /* a decoder that notices at the LF may have passed the CR */
                        return false;
                }
        }
        return true;
}

/* A chunked body at in (n bytes): 1 when it ends (*ret_len its length), 0 when the input
 * ends first (*ret_len = n), -1 when malformed (*ret_len: its bytes before the first bad one). */
static int chunked_body(const uint8_t *in, size_t n, size_t *ret_len) {
        struct http_chunked d = {0}, before;
        size_t i = 0, used, data_len;
        int r = 0;

        while (i < n && r == 0) {
                before = d;
                r = http_chunked_decode(&d, (const char *) in + i, n - i, SIZE_MAX, &used, &data_len);
                if (r < 0) { /* again byte by byte: where exactly */
                        d = before;
                        while (i < n && http_chunked_decode(&d, (const char *) in + i, 1, SIZE_MAX, &used, &data_len) == 0)
                                i += used;
                        *ret_len = i;
                        return -1;
                }
                i += used;
        }
        *ret_len = i;
        if (r == 1 && RULE_TRAILER_SYNTAX && !trailers_ok(in, i, ret_len))
                return -1;
        return r;
}

/* What a correct relay sends the server for the client's bytes in (n bytes), options opt. */
static void model(const uint8_t *in, size_t n, uint8_t opt, struct expect *x) {
        size_t pos = 0, head_len, body;
        int r;

        while (pos < n) {
                struct http_request req;
                bool upgrade;

                r = http_request_parse_head(&req, (const char *) in + pos, n - pos, &head_len);
                if (r == 0)
                        return; /* cut by the end of the input: nothing of it goes */
                if (r < 0 || !accepted(&req, opt, x->n_heads)) {
                        http_request_done(&req);
                        x->end = END_REFUSED;
                        return;
                }
                upgrade = http_request_header(&req, "Upgrade") != NULL;
                put_head(x, in + pos, head_len);
                pos += head_len;
                if (x->n_heads == 0)
                        x->first_end = pos;
                x->heads[x->n_heads++] = (struct head_mark){.at = x->len, .upgrade = upgrade};
                x->upgrade |= upgrade;
                if (upgrade && (opt & OPT_101))
                        body = n - pos; /* raw bytes from now on */
                else if (req.chunked) {
                        r = chunked_body(in + pos, n - pos, &body);
                        if (r < 0) {
                                x->end = END_BAD_BODY;
                                x->min_len = x->len;
                        }
                } else
                        body = (size_t) MIN((uint64_t) (n - pos), req.content_length);
                put(x, in + pos, body);
                pos += body;
                http_request_done(&req);
                if (x->end != END_INPUT)
                        return;
        }
}

/* ---- the harness ---- */

static struct engine eng;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        struct error e = {0};

        log_setup("fuzz_relay", LOG_LVL_ERROR);
        if (store_sqlite_open(":memory:", &eng.store, &e) < 0) /* the real store, in memory: nothing left behind */
                abort();
        return 0;
}

struct run {
        struct pconn *c;
        uint8_t opt;
        size_t piece; /* the client sends this much at a time */
        const struct expect *x;
        int client, server; /* the test's ends of the socketpairs */
        uint8_t *up;        /* what reached the server */
        size_t up_len;
        size_t answered;         /* x->heads the server has answered */
        const char *rest;        /* the second part of an answer, sent at the next turn */
        int stall;               /* OPT_STALL: 0 before the first head, 1 stalled, 2 over */
        int64_t stall_until;
        bool server_eof, raw;
};

static void check_prefix(const struct run *t) {
        assert(t->up_len <= t->x->len && "the server got more than a correct relay sends");
        assert(memcmp(t->up, t->x->out, t->up_len) == 0 && "the server got other bytes than a correct relay sends");
}

/* The server answers every head it has read in full: an Upgrade request with 101 or 200
 * (OPT_101), others with 200 if OPT_ANSWER. */
static void answer(struct run *t) {
        if (t->rest) {
                (void) !send(t->server, t->rest, strlen(t->rest), MSG_NOSIGNAL | MSG_DONTWAIT);
                t->rest = NULL;
        }
        while (!t->raw && t->answered < t->x->n_heads && t->x->heads[t->answered].at <= t->up_len) {
                const char *a = ANSWER_200;
                size_t n = strlen(a);

                if (t->x->heads[t->answered++].upgrade) {
                        t->raw = t->opt & OPT_101;
                        a = t->raw ? ANSWER_101 : ANSWER_200;
                        n = strlen(a);
                        if ((t->opt >> 4) & 1) { /* the status line in two parts */
                                n = 6;
                                t->rest = a + n;
                        }
                } else if (!(t->opt & OPT_ANSWER) || (!RULE_UPGRADE_FIRST && t->x->upgrade))
                        continue; /* without (b), an early answer would be taken for the Upgrade's */
                (void) !send(t->server, a, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (t->rest)
                        break;
        }
}

/* The server's turn: reads what came (up to the first head only, then nothing for a while,
 * with OPT_STALL), answers, closes when the relay shut its side. */
static void serve(struct run *t, int64_t now) {
        size_t limit = OUT_MAX;
        ssize_t k = -1;
        char junk[4096];

        if (t->stall == 0 && (t->opt & OPT_STALL) && t->x->n_heads > 0)
                limit = t->x->heads[0].at;
        else if (t->stall == 1 && now < t->stall_until)
                limit = t->up_len;
        else if (t->stall == 1)
                t->stall = 2;
        while (t->up_len < limit && (k = recv(t->server, t->up + t->up_len, limit - t->up_len, MSG_DONTWAIT)) > 0)
                t->up_len += (size_t) k;
        check_prefix(t);
        if (t->stall == 0 && (t->opt & OPT_STALL) && t->up_len == limit) {
                t->stall = 1;
                t->stall_until = now + STALL_MS;
        }
        answer(t);
        if (k == 0 && !t->server_eof) {
                t->server_eof = true;
                (void) shutdown(t->server, SHUT_WR);
        }
        while (recv(t->client, junk, sizeof(junk), MSG_DONTWAIT) > 0) /* answers to the client */
                ;
}

/* Bytes waiting to be read on fd. */
static uint64_t inq(int fd) {
        int n = 0;

        (void) ioctl(fd, FIONREAD, &n);
        return (uint64_t) n;
}

/* What a step may change: if none of it does, the step made no progress. */
static void progress(const struct run *t, uint64_t p[PROGRESS_N]) {
        const struct pconn *c = t->c;
        const struct relay *rl = &c->rl;

        p[0] = c->len;
        p[1] = c->fwd;
        p[2] = (uint64_t) rl->mode;
        p[3] = rl->down.moved;
        p[4] = rl->down.in_pipe;
        p[5] = (uint64_t) rl->down.eof << 4 | (uint64_t) rl->down.done << 3 | (uint64_t) rl->client_eof << 2 |
               (uint64_t) rl->failed << 1 | rl->up_shut;
        p[6] = (uint64_t) rl->recheck_at;
        p[7] = rl->left;
        p[8] = inq(c->cfd);     /* read from the client */
        p[9] = inq(t->server);  /* sent to the server */
        p[10] = inq(t->client); /* sent to the client */
}

/* One step of the relay; its offsets stay within what it read (issue 11). */
static enum relay_result step(struct pconn *c, uint32_t crev, uint32_t urev, int64_t now) {
        enum relay_result r = relay_step(c, crev, urev, now);

        assert(c->fwd <= c->len && c->len <= PROXY_IN_MAX);
        return r;
}

/* Runs the relay over the client's bytes data (size), from off on, until it ends; returns its
 * last result. */
static enum relay_result drive(struct run *t, const uint8_t *data, size_t size, size_t off, bool *ret_shut) {
        int64_t now = mono_ms();
        enum relay_result r;
        unsigned busy = 0;

        r = step(t->c, 0, 0, now); /* conn_relay's first step */
        for (int i = 0; r == RELAY_GO_ON && i < STEPS_MAX; i++) {
                struct pollfd p[2] = {{.fd = t->c->cfd, .events = (short) t->c->rl.want_c},
                                      {.fd = t->c->rl.want_u ? t->c->ufd : -1, .events = (short) t->c->rl.want_u}};
                uint64_t before[PROGRESS_N], after[PROGRESS_N];

                if (off < size) {
                        ssize_t k = send(t->client, data + off, MIN(size - off, t->piece), MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (k > 0)
                                off += (size_t) k;
                } else if (!*ret_shut) {
                        (void) shutdown(t->client, SHUT_WR);
                        *ret_shut = true;
                }
                serve(t, now);
                assert(poll(p, 2, 0) >= 0);
                if (!p[0].revents && !p[1].revents) { /* nothing ready: the loop's tick */
                        now += TICK_MS;
                        r = step(t->c, 0, 0, now);
                        busy = 0;
                } else { /* as epoll reports them: one fd per step */
                        now += 1;
                        progress(t, before);
                        if (p[0].revents)
                                r = step(t->c, (uint32_t) p[0].revents, 0, now);
                        if (r == RELAY_GO_ON && p[1].revents)
                                r = step(t->c, 0, (uint32_t) p[1].revents, now);
                        progress(t, after);
                        busy = memcmp(before, after, sizeof(before)) == 0 ? busy + 1 : 0;
                        assert(busy <= BUSY_MAX && "the relay spins: woken by an event it waits for, it moves nothing");
                }
        }
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int cp[2], sp[2], small = 4096;
        struct expect x = {0};
        struct run t = {0};
        enum relay_result r;
        bool shut = false;
        size_t first = 0;
        ssize_t k;

        if (size < 1)
                return 0;
        t.opt = data[0];
        data++;
        size--;
        t.piece = MAX((size_t) 1 << (t.opt >> 4), size / SENDS_MAX + 1);
        x.out = malloc(size + 1);
        x.heads = malloc((size / 16 + 1) * sizeof(*x.heads)); /* a head is longer than 16 bytes */
        assert(x.out && x.heads);
        model(data, size, t.opt, &x);
        t.x = &x;

        assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cp) == 0);
        assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
        /* A server that does not read soon stops the relay's sends: its buffer can fill. */
        (void) setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        t.c = calloc(1, sizeof(*t.c));
        t.up = malloc(OUT_MAX);
        assert(t.c && t.up);
        *t.c = (struct pconn){.eng = &eng, .cfd = cp[0], .ufd = sp[0], .port = 8000, .in = malloc(PROXY_IN_MAX)};
        memcpy(t.c->id, ID, sizeof(ID));
        if (t.opt & OPT_SECURE)
                memcpy(t.c->token, TOKEN, sizeof(TOKEN));
        t.client = cp[1];
        t.server = sp[1];
        (void) fcntl(t.client, F_SETFL, O_NONBLOCK);
        (void) fcntl(t.server, F_SETFL, O_NONBLOCK);
        assert(t.c->in);
        if (x.n_heads > 0) { /* what proxy.c read (in pieces) up to a first head that its check let through */
                first = MIN(size, (x.first_end + t.piece - 1) / t.piece * t.piece);
                first = MIN(first, (size_t) PROXY_IN_MAX);
                memcpy(t.c->in, data, first);
                t.c->len = first;
        }
        assert(relay_begin(t.c) == 0 && t.c->fwd <= t.c->len);

        r = drive(&t, data, size, first, &shut);
        while ((k = recv(t.server, t.up + t.up_len, OUT_MAX - t.up_len, MSG_DONTWAIT)) > 0) /* what is still on its way */
                t.up_len += (size_t) k;
        check_prefix(&t);
        if (x.end == END_REFUSED)
                assert(t.up_len <= x.len && "a byte of a refused request reached the server");
        if (r == RELAY_ANSWER) { /* ended with its own answer: everything before the refusal went up */
                assert(x.end != END_INPUT && "the relay refused a request the model accepts");
                assert(t.up_len >= (x.end == END_BAD_BODY ? x.min_len : x.len) && "the relay held back accepted bytes");
        }
        if (r != RELAY_GO_ON && shut && x.end == END_INPUT) /* the client's bytes all in, the relay at its end */
                assert(t.up_len == x.len && "the relay held back accepted bytes");

        relay_end(t.c);
        free(t.c->in);
        free(t.c);
        free(t.up);
        free(x.out);
        free(x.heads);
        for (int i = 0; i < 2; i++) {
                close(cp[i]);
                close(sp[i]);
        }
        return 0;
}
