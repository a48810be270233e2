/* inside.c — the routes that reach inside a sandbox: /v1/sandboxes/{id}/processes…,
 * …/files…, …/execute and …/contexts…. The engine owns the team check, the sandbox's state,
 * the sandbox's envs (merged into process starts and code executions) and activity; the
 * agent owns everything
 * else, so the rest is forwarded unchanged: method, path without the /v1/sandboxes/{id}
 * prefix, query (re-encoded), Content-Type and body.
 *
 * Answers stream back through a libmicrohttpd content reader that pulls one block from the
 * agent whenever the client has taken the last one, so a slow client slows the agent's
 * socket rather than growing a buffer here, and memory per stream is fixed. An open
 * answer counts as an open stream of the sandbox (idle reaping waits for it); its status,
 * Content-Type and Retry-After are the agent's. When the
 * agent dies mid-stream, a newline-delimited JSON stream gets a last {"type":"error"}
 * event with the reason (the sandbox is then in `error`); other answers are cut short.
 */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "sandbox/agent_stream.h"
#include "sandbox/sandbox.h"
#include "timeutil.h"

#define MAX_ENVS 256
#define BLOCK_SIZE (64 * 1024)
#define HEAD_TIMEOUT_MS (300 * 1000)
#define TARGET_MAX (15 * 1024) /* encoded; the agent takes heads of up to 16 KiB */
#define DEATH_CHECKS 20
#define DEATH_CHECK_INTERVAL_MS 50

struct forward {
        struct engine *eng;
        char id[32];
        struct agent_stream *s;
        int client_fd;
        bool ndjson;
        bool finished; /* the error event went out: end at the next call */
        bool counted;  /* holds one of the sandbox's open-request slots */
};

struct api_upload {
        struct forward *f;
};

static void forward_free(struct forward *f) {
        if (!f)
                return;
        agent_stream_free(f->s);
        sandbox_touch(f->eng, f->id);
        if (f->counted)
                sandbox_stream_end(f->eng, f->id);
        free(f);
}

static void percent_encode(struct buf *b, const char *s, size_t n) {
        static const char hex[] = "0123456789ABCDEF";

        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) s[i];
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~/", ch))
                        buf_append(b, &s[i], 1);
                else
                        buf_printf(b, "%%%c%c", hex[ch >> 4], hex[ch & 15]);
        }
}

static enum MHD_Result add_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size, const char *value,
                                     size_t value_size) {
        struct buf *b = cls;

        buf_append_str(b, strchr(b->data, '?') ? "&" : "?");
        percent_encode(b, key, key_size);
        if (value) {
                buf_append_str(b, "=");
                percent_encode(b, value, value_size);
        }
        return MHD_YES;
}

/* The agent's target: the path after /v1/sandboxes/{id}, and the query. */
static int agent_target(const struct api_request *req, struct buf *b, struct error *e) {
        const char *path = req->url + strlen("/v1/sandboxes/") + strlen(req->id);

        /* Room past TARGET_MAX: a target that does not fit is seen as too long, never cut
         * short by an append the cap refused. */
        buf_init(b, 2 * TARGET_MAX);
        /* libmicrohttpd hands the path over decoded: encode it again, so that no byte of it
         * (a CR, an LF, a space) can change the request line sent to the agent. */
        percent_encode(b, path, strlen(path));
        MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, add_query_arg, b);
        if (!b->data || b->len > TARGET_MAX)
                return error_set(e, E2BIG, ERR_BAD_REQUEST,
                                 "the request's path and query are too long (%zu bytes percent-encoded, at most %d)",
                                 b->data ? b->len : 0, TARGET_MAX);
        return 0;
}

/* Checks the sandbox is the team's, this node's and running; leaves its record in rec. */
static int running_sandbox(const struct api_request *req, struct sandbox_rec *rec, struct error *e) {
        int r = sandbox_get_local(req->eng, req->team_id, req->id, rec, e);

        if (r < 0)
                return r;
        if (rec->state != SANDBOX_RUNNING) {
                r = error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s is %s, not running%s%s", req->id,
                              sandbox_state_to_string(rec->state), *rec->error ? ": " : "", rec->error);
                sandbox_rec_done(rec);
        }
        return r;
}

/* A process start or a code execution gets the sandbox's envs under its own. */
static int process_start_body(const struct api_request *req, const struct sandbox_rec *rec, char **ret, struct error *e) {
        _cleanup_free_ char *envs = NULL;
        json_t *body;
        int r;

        r = api_body_object(req, &body, e);
        if (r < 0)
                return r;
        r = api_string_map(body, "envs", MAX_ENVS, true, &envs, e);
        if (r >= 0) {
                json_object_set_new(body, "envs", sandbox_envs_merged(rec, json_object_get(body, "envs")));
                *ret = json_dumps(body, JSON_COMPACT);
                if (!*ret)
                        r = error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        json_decref(body);
        return r;
}

/* Opens the exchange with the agent; an agent that cannot be reached is checked on, so
 * that a dead one turns the sandbox to `error` and the answer carries the reason. */
static int forward_open(const struct api_request *req, int64_t body_len, struct forward **ret, struct error *e) {
        _cleanup_buf_ struct buf target = {0};
        char sock[4200];
        const char *ctype = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");
        const union MHD_ConnectionInfo *ci;
        struct forward *f;
        int r;

        r = agent_target(req, &target, e);
        if (r < 0)
                return r;
        f = calloc(1, sizeof(*f));
        if (!f)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        f->eng = req->eng;
        snprintf(f->id, sizeof(f->id), "%s", req->id);
        ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        f->client_fd = ci ? ci->connect_fd : -1;
        sandbox_touch(f->eng, f->id);
        if (sandbox_stream_begin(f->eng, f->id) < 0) {
                forward_free(f);
                return error_set(e, EUSERS, ERR_LIMIT,
                                 "sandbox %s already has %lld requests open (streams included), the most one sandbox may "
                                 "have at once; close some first",
                                 req->id, (long long) req->eng->cfg.max_streams);
        }
        f->counted = true;
        sandbox_socket_path(req->eng, req->id, sock, sizeof(sock));
        r = agent_stream_open(sock, req->method, target.data, ctype, body_len, f->client_fd, -1, &f->s, e);
        if (r < 0) {
                sandbox_check_alive(req->eng, req->id, e);
                forward_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

static ssize_t read_answer(void *cls, uint64_t pos, char *out, size_t max) {
        struct forward *f = cls;
        struct error e = {0};
        ssize_t k;
        int n;

        if (f->finished)
                return MHD_CONTENT_READER_END_OF_STREAM;
        k = agent_stream_read(f->s, out, max, f->client_fd);
        if (k > 0)
                return k;
        if (k == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (k == -ECONNRESET || !f->ndjson)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        /* The agent went away mid-stream: say why, as the stream's last event. A killed
         * agent may still look alive to the runtime for a moment (not reaped yet): ask
         * again for up to a second before calling it a plain close. */
        bool dead = false;
        for (int i = 0; i < DEATH_CHECKS && !dead; i++) {
                dead = sandbox_check_alive(f->eng, f->id, &e) < 0;
                if (!dead)
                        usleep(DEATH_CHECK_INTERVAL_MS * 1000);
        }
        if (!dead)
                error_set(&e, EPIPE, ERR_SANDBOX, "the sandbox's agent closed the stream");
        char ts[RFC3339_LEN + 1];
        format_rfc3339(now_ms(), ts);
        json_t *ev = json_pack("{s:s,s:s,s:s}", "type", "error", "message", e.message, "ts", ts);
        char *line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
        json_decref(ev);
        n = line ? snprintf(out, max, "%s\n", line) : -1;
        free(line);
        f->finished = true;
        return n > 0 && (size_t) n < max ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void free_answer(void *cls) {
        forward_free(cls);
}

static bool printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

/* Ends the request, reads the agent's answer head and makes the streamed response;
 * the response owns f from here on, also on failure. */
static int forward_finish(struct forward *f, struct api_response *resp, struct error *e) {
        struct MHD_Response *m;
        int64_t len;
        int r, status;

        r = agent_stream_finish(f->s, HEAD_TIMEOUT_MS, e);
        if (r < 0) {
                sandbox_check_alive(f->eng, f->id, e);
                forward_free(f);
                return r;
        }
        status = agent_stream_status(f->s);
        if (status < 200) { /* 1xx and 101 are not answers a client can use */
                forward_free(f);
                return error_set(e, EPROTO, ERR_SANDBOX, "the sandbox's agent sent an unusable answer (HTTP %d)", status);
        }
        len = agent_stream_content_length(f->s);
        f->ndjson = strncmp(agent_stream_content_type(f->s), "application/x-ndjson", 20) == 0;
        m = MHD_create_response_from_callback(len >= 0 ? (uint64_t) len : MHD_SIZE_UNKNOWN, BLOCK_SIZE, read_answer, f, free_answer);
        if (!m) {
                forward_free(f);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        if (*agent_stream_content_type(f->s) && printable(agent_stream_content_type(f->s)))
                MHD_add_response_header(m, "Content-Type", agent_stream_content_type(f->s));
        if (agent_stream_retry_after(f->s) > 0) {
                char retry[16];
                snprintf(retry, sizeof(retry), "%d", agent_stream_retry_after(f->s));
                MHD_add_response_header(m, "Retry-After", retry);
        }
        resp->status = status;
        resp->mhd = m;
        return 0;
}

int api_inside_forward(struct api_request *req, struct api_response *resp, struct error *e) {
        _cleanup_free_ char *body = NULL;
        struct sandbox_rec rec;
        struct forward *f;
        const char *path = req->url + strlen("/v1/sandboxes/") + strlen(req->id);
        size_t body_len = req->body_len;
        int r;

        r = running_sandbox(req, &rec, e);
        if (r < 0)
                return r;
        if (streq(req->method, "POST") && (streq(path, "/processes") || streq(path, "/execute"))) {
                r = process_start_body(req, &rec, &body, e);
                body_len = body ? strlen(body) : 0;
        }
        sandbox_rec_done(&rec);
        if (r < 0)
                return r;
        r = forward_open(req, (int64_t) body_len, &f, e);
        if (r < 0)
                return r;
        r = agent_stream_send(f->s, body ? body : req->body, body_len, e);
        if (r < 0) {
                forward_free(f);
                return r;
        }
        return forward_finish(f, resp, e);
}

int api_upload_begin(struct api_request *req, struct api_upload **ret, struct error *e) {
        struct sandbox_rec rec;
        struct api_upload *u;
        int r;

        r = running_sandbox(req, &rec, e);
        if (r < 0)
                return r;
        sandbox_rec_done(&rec);
        u = calloc(1, sizeof(*u));
        if (!u)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        r = forward_open(req, -1, &u->f, e);
        if (r < 0) {
                free(u);
                return r;
        }
        *ret = u;
        return 0;
}

int api_upload_data(struct api_upload *u, const char *data, size_t len, struct error *e) {
        return agent_stream_send(u->f->s, data, len, e);
}

int api_upload_end(struct api_upload *u, struct api_response *resp, struct error *e) {
        struct forward *f = u->f;

        u->f = NULL;
        return forward_finish(f, resp, e);
}

void api_upload_free(struct api_upload *u) {
        if (!u)
                return;
        forward_free(u->f);
        free(u);
}
