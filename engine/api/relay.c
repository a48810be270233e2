/* relay.c — a request for a sandbox that another node owns is relayed to that node (issue 14).
 *
 * Any node answers any request: when the {id} of a request names a sandbox of another live
 * node, this node opens a TCP connection to the owner's advertised URL (TLS, the owner's
 * certificate verified, for an https:// one: cluster/node.h node_stream_open), sends the same
 * method, path and query with the caller's API key and Content-Type, streams the request's
 * body through as it arrives (the caller's Content-Length, or chunked), then reads the
 * owner's answer head with the strict shared parser (sandbox/agent_stream.c) and streams its
 * body back through a libmicrohttpd content reader. Nothing is buffered whole: memory per
 * relayed request is agent_stream's fixed input buffer plus libmicrohttpd's block, and a slow
 * client slows the owner's socket (back-pressure), exactly as for a local sandbox's agent.
 *
 * The owner is another engine, but its bytes are still read as untrusted (caps, deadlines).
 * A relayed request carries the hop marker (RELAY_HOP_HEADER, the sender's node name) and,
 * when one is configured, the cluster secret (RELAY_SECRET_HEADER): a node receiving a
 * relayed request for a sandbox it does not own answers 503 and never relays it again, so
 * two nodes that disagree about an owner cannot bounce a request between them.
 *
 * GET /v1/sandboxes/{id} is answered from the store by every node (it must also work while
 * the owner is down, to show "node … lost"); list never names a sandbox. A create is relayed
 * whole (its body is already read: at most API_MAX_BODY) to the node placement chose
 * (cluster/placement.h, api_relay_create), which answers it as its own.
 */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cluster/node.h"
#include "log.h"
#include "sandbox/agent_stream.h"
#include "sandbox/sandbox.h"
#include "timeutil.h"

#define BLOCK_SIZE (64 * 1024)
#define CONNECT_TIMEOUT_MS 3000
/* The owner bounds its agent's answer head at 300 s itself (inside.c): a little more here. */
#define HEAD_TIMEOUT_MS (310 * 1000)
/* Streams carry a keepalive every 10 s and downloads keep coming: an owner silent this long
 * (a machine gone without a reset) is given up, as the owner's own idle timeout would. */
#define READ_TIMEOUT_MS (130 * 1000)

struct api_relay {
        struct agent_stream *s;
        int client_fd;
        bool ndjson;
        bool finished; /* the error event went out: end at the next call */
        char peer[160];
};

void api_relay_free(struct api_relay *r) {
        if (!r)
                return;
        agent_stream_free(r->s);
        free(r);
}

/* Where req must go: 0 with *ret_owner empty when this node answers it (its sandbox, a
 * killed one, or one the team cannot see: the local handler says so), 0 with the owner's
 * record in *ret_owner when it is relayed, or an error (the owner down, a loop). */
static int owner_of(const struct api_request *req, struct node_rec *ret_owner, struct error *e) {
        const char *hop = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_HOP_HEADER);
        struct sandbox_rec rec;
        struct error ignored = {0};
        int r;

        *ret_owner->name = 0;
        if (sandbox_get(req->eng, req->team_id, req->id, &rec, &ignored) < 0)
                return 0;
        if (streq(rec.node, req->eng->cfg.node_name) || rec.state == SANDBOX_KILLED) {
                sandbox_rec_done(&rec);
                return 0;
        }
        if (hop) {
                r = error_set(e, EREMOTE, ERR_OTHER_NODE,
                              "a request for sandbox %s forwarded by node %.63s reached node %s, which does not own it (its "
                              "owner is %s): it is not forwarded again (do the nodes share one database?)",
                              req->id, hop, req->eng->cfg.node_name, rec.node);
                sandbox_rec_done(&rec);
                return r;
        }
        /* ERR_NODE_DOWN when the owner's lease lapsed; otherwise the owner's row. */
        r = node_owner(req->eng, &rec, ret_owner, e);
        sandbox_rec_done(&rec);
        if (r == -EREMOTE) {
                error_clear(e);
                return 0;
        }
        return r;
}

/* The relayed request's own header lines: the caller's key (already checked here: the owner
 * checks it again), the hop marker and the cluster secret. */
static int relay_headers(const struct api_request *req, struct buf *b) {
        const char *key = api_request_key(req->conn);
        int r;

        buf_init(b, 8192);
        r = buf_printf(b, "X-API-Key: %s\r\n%s: %s\r\n", key ? key : "", RELAY_HOP_HEADER, req->eng->cfg.node_name);
        if (r >= 0 && req->eng->cfg.cluster_secret)
                r = buf_printf(b, "%s: %s\r\n", RELAY_SECRET_HEADER, req->eng->cfg.cluster_secret);
        return r;
}

/* Opens the relay of req to node to and sends its head (body_len: the caller's
 * Content-Length, -1 chunked). */
static int relay_open(struct api_request *req, const struct node_rec *to, int64_t body_len, struct api_relay **ret,
                      struct error *e) {
        _cleanup_buf_ struct buf target = {0}, headers = {0};
        struct api_relay *rl;
        const union MHD_ConnectionInfo *ci;
        int r;

        r = api_encode_target(req, req->url, &target, e);
        if (r < 0)
                return r;
        if (relay_headers(req, &headers) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        rl = calloc(1, sizeof(*rl));
        if (!rl)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        snprintf(rl->peer, sizeof(rl->peer), "%s node %s (%s)", req->id ? "the sandbox's" : "the", to->name, to->advertise);
        ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        rl->client_fd = ci ? ci->connect_fd : -1;
        const struct agent_stream_request q = {
                .method = req->method,
                .target = target.data,
                .extra_headers = headers.data,
                .content_type = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type"),
                .body_len = body_len,
        };
        r = node_stream_open(req->eng, to, rl->peer, CONNECT_TIMEOUT_MS, &q, rl->client_fd, &rl->s, e);
        if (r < 0) {
                api_relay_free(rl);
                return r;
        }
        agent_stream_set_read_timeout(rl->s, READ_TIMEOUT_MS);
        *ret = rl;
        return 0;
}

int api_relay_begin(struct api_request *req, int64_t body_len, struct api_relay **ret, struct error *e) {
        struct node_rec owner;
        int r;

        *ret = NULL;
        r = owner_of(req, &owner, e);
        if (r < 0 || !*owner.name)
                return r;
        return relay_open(req, &owner, body_len, ret, e);
}

int api_relay_data(struct api_relay *rl, const char *data, size_t len, struct error *e) {
        return agent_stream_send(rl->s, data, len, e);
}

static ssize_t read_answer(void *cls, uint64_t pos, char *out, size_t max) {
        struct api_relay *rl = cls;
        char ts[RFC3339_LEN + 1], msg[300];
        ssize_t k;
        int n;

        if (rl->finished)
                return MHD_CONTENT_READER_END_OF_STREAM;
        k = agent_stream_read(rl->s, out, max, rl->client_fd);
        if (k > 0)
                return k;
        if (k == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (k == -ECONNRESET || !rl->ndjson)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        /* The owner went away mid-stream: say so as the stream's last event, as a local
         * sandbox's stream does when its agent dies. */
        snprintf(msg, sizeof(msg), "%s broke off the stream: %s", rl->peer,
                 k == -ETIMEDOUT ? "nothing for too long" : k == -EPROTO ? "it closed the connection" : strerror((int) -k));
        format_rfc3339(now_ms(), ts);
        json_t *ev = json_pack("{s:s,s:s,s:s}", "type", "error", "message", msg, "ts", ts);
        char *line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
        json_decref(ev);
        n = line ? snprintf(out, max, "%s\n", line) : -1;
        free(line);
        rl->finished = true;
        return n > 0 && (size_t) n < max ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void free_answer(void *cls) {
        api_relay_free(cls);
}

static bool printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

/* The owner's answer head has been read: resp streams its body back. Owns rl. */
static int relay_answer(struct api_relay *rl, struct api_response *resp, struct error *e) {
        struct MHD_Response *m;
        const char *type;
        int64_t len;
        int r, status;

        status = agent_stream_status(rl->s);
        if (status < 200) { /* 1xx and 101 are not answers a client can use */
                r = error_set(e, EPROTO, ERR_NODE, "%s sent an unusable answer (HTTP %d)", rl->peer, status);
                api_relay_free(rl);
                return r;
        }
        len = agent_stream_content_length(rl->s);
        type = agent_stream_content_type(rl->s);
        rl->ndjson = strncmp(type, "application/x-ndjson", 20) == 0;
        m = MHD_create_response_from_callback(len >= 0 ? (uint64_t) len : MHD_SIZE_UNKNOWN, BLOCK_SIZE, read_answer, rl,
                                              free_answer);
        if (!m) {
                api_relay_free(rl);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        if (*type && printable(type))
                MHD_add_response_header(m, "Content-Type", type);
        if (agent_stream_retry_after(rl->s) > 0) {
                char retry[16];
                snprintf(retry, sizeof(retry), "%d", agent_stream_retry_after(rl->s));
                MHD_add_response_header(m, "Retry-After", retry);
        }
        resp->status = status;
        resp->mhd = m;
        return 0;
}

int api_relay_end(struct api_relay *rl, struct api_response *resp, struct error *e) {
        int r = agent_stream_finish(rl->s, HEAD_TIMEOUT_MS, e);

        if (r < 0) {
                api_relay_free(rl);
                return r;
        }
        return relay_answer(rl, resp, e);
}

int api_relay_create(struct api_request *req, const struct node_rec *to, struct api_response *resp, bool *ret_final,
                     struct error *e) {
        struct api_relay *rl;
        int r, status;

        *ret_final = false;

        r = relay_open(req, to, (int64_t) req->body_len, &rl, e);
        if (r < 0)
                return r;
        if (req->body_len > 0 && (r = agent_stream_send(rl->s, req->body, req->body_len, e)) < 0) {
                api_relay_free(rl);
                return r;
        }
        /* The whole create, not only its head: a slow template start is no failure (falling
         * back then would make a second sandbox). */
        r = agent_stream_finish(rl->s, HEAD_TIMEOUT_MS, e);
        if (r < 0) {
                /* The node had the whole create: it may have made the sandbox. */
                *ret_final = true;
                api_relay_free(rl);
                return r;
        }
        status = agent_stream_status(rl->s);
        if (status >= 500) {
                r = error_set(e, EAGAIN, ERR_NODE, "%s answered the create with HTTP %d", rl->peer, status);
                api_relay_free(rl);
                return r;
        }
        return relay_answer(rl, resp, e);
}
