/* server.c — HTTP plumbing of the API: request framing checks (one unambiguous body
 * length, or the connection is refused and closed), routing and API-key authentication as
 * soon as a request head arrives (SHA-256 compared in constant time; keys are never
 * logged), body accumulation with a 1 MiB cap, and error bodies; the cluster secret of
 * requests from other nodes, and the choice, once a head is authenticated, to relay a
 * request for another node's sandbox to that node (relay.c). What a client may hold
 * (connections, time) is guard.c's. */
#include "api/api.h"
#include "api/guard.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "http-parse.h"
#include "id.h"
#include "log.h"
#include "net/tls.h"
#include "timeutil.h"

struct conn_ctx {
        struct buf body;
        bool too_large;
        int64_t started;
        const struct route *route; /* resolved when the head arrived */
        int resolved;              /* < 0: the request is refused (error says why) */
        char idbuf[128];           /* its {id} */
        int64_t team_id;           /* set by authentication */
        bool upload_route;         /* PUT …/files: the body streams to the agent */
        struct api_upload *upload; /* the streamed upload, until it ends or fails */
        bool upload_stalled;       /* the agent stopped reading it */
        struct error error;        /* why the request or its upload failed */
        struct api_relay *relay;   /* the request goes to the sandbox's owner node (relay.c) */
        bool layer_route;          /* PUT /v1/internal/layers/{id}: another node's files stream in (layer.c) */
        struct api_layer *layer;   /* the import, until it ends or fails */
        int layer_failed;          /* < 0: a piece of it failed (error says why); the rest is discarded */
        bool relay_stalled;        /* the owner stopped reading the body */
};

struct api_server {
        struct MHD_Daemon *daemon;
        struct api_guard *guard;
};

/* Per-connection buffer of libmicrohttpd: bigger pieces of an upload per call. */
#define CONN_MEMORY (256 * 1024)
#define CONN_IDLE_TIMEOUT_S 120

typedef int (*handler_fn)(struct api_request *, struct api_response *, struct error *);

struct route {
        const char *method;  /* "*": any (the agent answers 405 itself) */
        const char *pattern; /* "{id}" matches one path segment */
        handler_fn fn;
        bool auth;
        bool prefix;         /* also matches pattern + "/…" */
};

static const struct route routes[] = {
        {"GET", "/v1/health", api_health, false, false},
        {"POST", "/v1/sandboxes", api_sandbox_create, true, false},
        {"GET", "/v1/sandboxes", api_sandbox_list, true, false},
        {"GET", "/v1/sandboxes/{id}", api_sandbox_get, true, false},
        {"DELETE", "/v1/sandboxes/{id}", api_sandbox_kill, true, false},
        {"POST", "/v1/sandboxes/{id}/timeout", api_sandbox_timeout, true, false},
        {"POST", "/v1/sandboxes/{id}/pause", api_sandbox_pause, true, false},
        {"POST", "/v1/sandboxes/{id}/resume", api_sandbox_resume, true, false},
        {"*", "/v1/sandboxes/{id}/processes", api_inside_forward, true, true},
        {"*", "/v1/sandboxes/{id}/files", api_inside_forward, true, true},
        {"*", "/v1/sandboxes/{id}/execute", api_inside_forward, true, true},
        {"*", "/v1/sandboxes/{id}/contexts", api_inside_forward, true, true},
        /* Between nodes only: layer.c checks the cluster secret itself. */
        {"PUT", "/v1/internal/layers/{id}", api_layer_streamed, false, false},
        {"DELETE", "/v1/internal/layers/{id}", api_layer_remove, false, false},
        {"POST", "/v1/internal/layers/{id}/resume", api_layer_resume, false, false},
};

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char) (c | 0x20);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Set when the URL of the request being parsed on this thread decoded a %00. libmicrohttpd
 * hands values on as C strings, so a NUL would silently cut a path or a query value short
 * (`?path=/etc%00x` would become `/etc`); the request is refused instead. Thread-local
 * works because each connection has its own thread and its URL is decoded on it just
 * before the first call of on_request, which reads and clears the flag. */
static __thread bool url_had_nul;

/* Decodes %HH in place, noting a decoded NUL. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
        char *w = s;

        for (const char *r = s; *r; r++) {
                int hi, lo;
                if (*r == '%' && (hi = hex_value(r[1])) >= 0 && (lo = hex_value(r[2])) >= 0) {
                        *w++ = (char) (hi << 4 | lo);
                        url_had_nul |= hi == 0 && lo == 0;
                        r += 2;
                } else
                        *w++ = *r;
        }
        *w = 0;
        return (size_t) (w - s);
}

/* Matches url against pattern (or, with prefix, anything below it); the {id} segment is
 * copied to idbuf. */
static bool route_match(const char *pattern, bool prefix, const char *url, char *idbuf, size_t n) {
        const char *p = pattern, *u = url;

        while (*p && *u) {
                if (strncmp(p, "{id}", 4) == 0) {
                        size_t len = strcspn(u, "/");
                        if (len == 0 || len >= n)
                                return false;
                        memcpy(idbuf, u, len);
                        idbuf[len] = 0;
                        u += len;
                        p += 4;
                        continue;
                }
                if (*p++ != *u++)
                        return false;
        }
        if (prefix && *p == 0 && *u == '/')
                return true;
        if (*u == '/' && u[1] == 0) /* tolerate one trailing slash */
                u++;
        return *p == 0 && *u == 0;
}

int api_body_object(const struct api_request *req, json_t **ret, struct error *e) {
        json_error_t jerr;
        json_t *j;

        if (req->body_len == 0) {
                *ret = json_object();
                return 0;
        }
        j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (!j)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                                 jerr.line, jerr.column);
        if (!json_is_object(j)) {
                json_decref(j);
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "request body must be a JSON object");
        }
        *ret = j;
        return 0;
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

int api_encode_target(const struct api_request *req, const char *path, struct buf *b, struct error *e) {
        /* Room past API_TARGET_MAX: a target that does not fit is seen as too long, never
         * cut short by an append the cap refused. */
        buf_init(b, 2 * API_TARGET_MAX);
        percent_encode(b, path, strlen(path));
        MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, add_query_arg, b);
        if (!b->data || b->len > API_TARGET_MAX)
                return error_set(e, E2BIG, ERR_BAD_REQUEST,
                                 "the request's path and query are too long (%zu bytes percent-encoded, at most %d)",
                                 b->data ? b->len : 0, API_TARGET_MAX);
        return 0;
}

const char *api_request_key(struct MHD_Connection *conn) {
        const char *k = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key");
        const char *auth;

        if (k && *k)
                return k;
        auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
                return auth + 7;
        return NULL;
}

static int authenticate(struct api_request *req, struct error *e) {
        const char *key = api_request_key(req->conn);
        unsigned char want[32], got[SHA256_DIGEST_LENGTH];
        char key_id[API_KEY_ID_LEN + 1];
        int r;

        if (!key)
                return error_set(e, EACCES, ERR_UNAUTHORIZED,
                                 "missing API key: send it in the X-API-Key header (or Authorization: Bearer)");
        if (!api_key_valid(key))
                return error_set(e, EACCES, ERR_UNAUTHORIZED, "invalid API key");
        memcpy(key_id, key + strlen(API_KEY_PREFIX), API_KEY_ID_LEN);
        key_id[API_KEY_ID_LEN] = 0;
        r = store_key_lookup(req->eng->store, key_id, want, &req->team_id, e);
        if (r == -ENOENT)
                return error_set(e, EACCES, ERR_UNAUTHORIZED, "invalid API key");
        if (r < 0)
                return r;
        SHA256((const unsigned char *) key, strlen(key), got);
        if (CRYPTO_memcmp(want, got, sizeof(got)) != 0)
                return error_set(e, EACCES, ERR_UNAUTHORIZED, "invalid API key");
        api_guard_authenticated(req->conn);
        return 0;
}

/* A request from another node (it carries the hop marker or the secret header) must carry
 * this node's cluster secret when one is set; any secret sent to a node without one, or a
 * wrong one, is refused. Compared in constant time (digests: the length leaks nothing);
 * never logged. */
static int check_cluster_secret(const struct api_request *req, struct error *e) {
        const char *got = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_SECRET_HEADER);
        const char *want = req->eng->cfg.cluster_secret;
        unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];

        if (!got && !want)
                return 0;
        if (!got) {
                if (!MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_HOP_HEADER))
                        return 0;
                return error_set(e, EACCES, ERR_FORBIDDEN,
                                 "a request forwarded by another node must carry the cluster secret (%s): is "
                                 "cluster-secret-file set on every node?",
                                 RELAY_SECRET_HEADER);
        }
        if (!want)
                return error_set(e, EACCES, ERR_FORBIDDEN,
                                 "node %s has no cluster secret, and refuses requests that carry one (is cluster-secret-file "
                                 "set on every node?)",
                                 req->eng->cfg.node_name);
        SHA256((const unsigned char *) got, strlen(got), a);
        SHA256((const unsigned char *) want, strlen(want), b);
        if (CRYPTO_memcmp(a, b, sizeof(a)) != 0)
                return error_set(e, EACCES, ERR_FORBIDDEN, "wrong cluster secret (%s)", RELAY_SECRET_HEADER);
        return 0;
}

/* Finds the route of req, authenticates it and checks its {id} (kept in idbuf). */
static int resolve(struct api_request *req, char *idbuf, size_t n, const struct route **ret, struct error *e) {
        bool path_found = false;
        int r = check_cluster_secret(req, e);

        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!route_match(routes[i].pattern, routes[i].prefix, req->url, idbuf, n))
                        continue;
                path_found = true;
                if (!streq(routes[i].method, "*") && !streq(routes[i].method, req->method))
                        continue;
                if (routes[i].auth) {
                        r = authenticate(req, e);
                        if (r < 0)
                                return r;
                }
                if (strstr(routes[i].pattern, "{id}")) {
                        if (!sandbox_id_valid(idbuf))
                                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                                 "'%.40s' is not a sandbox id (expected sbx_ followed by 20 characters of a-z and 0-9)",
                                                 idbuf);
                        req->id = idbuf;
                }
                *ret = &routes[i];
                return 0;
        }
        if (path_found)
                return error_set(e, EINVAL, ERR_METHOD, "method %s is not allowed on %s", req->method, req->url);
        return error_set(e, ENOENT, ERR_NOT_FOUND, "no route %s %s", req->method, req->url);
}

static enum MHD_Result send_json(struct MHD_Connection *conn, int status, json_t *body, bool close) {
        char *text = json_dumps(body, JSON_COMPACT);
        struct MHD_Response *r;
        enum MHD_Result ret;
        size_t n;

        if (!text) {
                static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
                status = 500;
                r = MHD_create_response_from_buffer(sizeof(oom) - 1, (void *) oom, MHD_RESPMEM_PERSISTENT);
        } else {
                n = strlen(text);
                r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
                if (!r)
                        free(text);
        }
        if (!r)
                return MHD_NO; /* out of memory: the connection is closed without an answer */
        MHD_add_response_header(r, "Content-Type", "application/json");
        if (close)
                MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        ret = MHD_queue_response(conn, (unsigned) status, r);
        MHD_destroy_response(r);
        return ret;
}

/* The JSON body of the error e. Its message may quote bytes of the request that are not
 * UTF-8, which jansson refuses: those become '?'. */
static json_t *error_body(struct error *e) {
        const char *code = e->code ? e->code : "internal";
        json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", e->message);

        if (j)
                return j;
        for (char *p = e->message; *p; p++)
                if ((unsigned char) *p >= 0x80)
                        *p = '?';
        return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", e->message);
}

/* Queues resp, or the error in e when r < 0; frees what resp holds. */
static enum MHD_Result respond(struct MHD_Connection *conn, const char *method, const char *url, int64_t started, int r,
                               struct api_response *resp, struct error *e) {
        enum MHD_Result ret;

        api_guard_answering(conn);
        if (r < 0) {
                resp->status = e->status ? e->status : 500;
                resp->body = error_body(e);
                if (resp->status >= 500)
                        log_warn("%s %s -> %d: %s", method, url, resp->status, e->message);
        }
        log_debug("%s %s -> %d (%lld ms)", method, url, resp->status, (long long) (mono_ms() - started));
        if (resp->mhd) {
                ret = MHD_queue_response(conn, (unsigned) resp->status, resp->mhd);
                MHD_destroy_response(resp->mhd);
                resp->mhd = NULL;
        } else
                ret = send_json(conn, resp->status, resp->body, resp->close);
        json_decref(resp->body);
        resp->body = NULL;
        return ret;
}

/* The framing headers of a request, gathered by framing_header. */
struct framing {
        struct error *e;
        int r;                /* < 0 once a header was refused (e says why) */
        const char *length;   /* the first Content-Length */
        uint64_t length_value;
        const char *encoding; /* the Transfer-Encoding */
};

static int framing_length(struct framing *f, const char *value) {
        uint64_t n;

        if (http_parse_content_length(value, &n) < 0 || n > INT64_MAX)
                return error_set(f->e, EINVAL, ERR_BAD_REQUEST, "Content-Length '%.40s' is not a number of bytes", value);
        if (f->length && n != f->length_value)
                return error_set(f->e, EINVAL, ERR_BAD_REQUEST, "conflicting Content-Length headers (%.40s and %.40s)", f->length,
                                 value);
        if (!f->length) {
                f->length = value;
                f->length_value = n;
        }
        return 0;
}

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *name, size_t name_len,
                                      const char *value, size_t value_len) {
        struct framing *f = cls;

        /* libmicrohttpd 0.9.75 keeps "Content-Length : 5" as a header named "Content-Length "
         * and reads no body (a proxy in front may read 5 bytes); it keeps a bare CR inside a
         * value ("X: a\rContent-Length: 37": a proxy that splits lines there sees a length).
         * (It also ends a value at a NUL, length included: that cannot be seen from here.) */
        if (!http_is_token(name) || strlen(name) != name_len)
                f->r = error_set(f->e, EINVAL, ERR_BAD_REQUEST,
                                 "header name '%.40s' is not a token (no whitespace may come before the colon)", name);
        else if (!value || strlen(value) != value_len || !http_is_field_value(value, value_len))
                f->r = error_set(f->e, EINVAL, ERR_BAD_REQUEST, "the value of header %.40s holds a control byte", name);
        else if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
                f->r = framing_length(f, value);
        else if (strcasecmp(name, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
                if (f->encoding)
                        f->r = error_set(f->e, EINVAL, ERR_BAD_REQUEST, "a request cannot have two Transfer-Encoding headers");
                f->encoding = value;
        }
        return f->r < 0 ? MHD_NO : MHD_YES;
}

/* Refuses, before any of its body is read, a request whose body length two HTTP parsers
 * could read differently (request smuggling through a proxy in front). libmicrohttpd
 * 0.9.75 reads the first Content-Length and ignores the others, lets Transfer-Encoding
 * win over Content-Length, and takes any other coding as a body that ends with the
 * connection. The same rules as common/http-parse.c. *ret_body_len: -1 for a chunked body. */
static int check_framing(struct MHD_Connection *conn, const char *version, int64_t *ret_body_len, struct error *e) {
        struct framing f = {.e = e};

        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, framing_header, &f);
        /* http_parse_content_length caps a length well below 2^63. */
        *ret_body_len = f.encoding ? -1 : (int64_t) f.length_value;
        if (f.r < 0 || !f.encoding)
                return f.r;
        if (f.length)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "a request cannot have both Content-Length and Transfer-Encoding");
        if (streq(version, MHD_HTTP_VERSION_1_0))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "an HTTP/1.0 request cannot have a Transfer-Encoding");
        if (strcasecmp(f.encoding, "chunked") != 0)
                return error_set(e, EOPNOTSUPP, ERR_NOT_IMPLEMENTED,
                                 "Transfer-Encoding '%.40s' is not supported: send the body with Content-Length or "
                                 "Transfer-Encoding: chunked",
                                 f.encoding);
        return 0;
}

static bool is_upload_route(const char *method, const char *url) {
        char idbuf[128];

        return streq(method, "PUT") && route_match("/v1/sandboxes/{id}/files", false, url, idbuf, sizeof(idbuf));
}

/* PUT …/files: the body goes to the agent piece by piece as it arrives. The agent's
 * connection is opened when the head arrives (first call, once on_head resolved and
 * authenticated the request), so that a refusal is answered before the client sends its
 * body (libmicrohttpd then skips "100 Continue"). A failure midway is kept, the rest of the
 * body discarded, and the error answered at the end. */
static enum MHD_Result on_upload(struct api_request *req, struct conn_ctx *ctx, bool first, const char *upload,
                                 size_t *upload_size) {
        struct api_response resp = {0};
        int r;

        if (first) {
                r = api_upload_begin(req, &ctx->upload, &ctx->error);
                if (r < 0)
                        return respond(req->conn, req->method, req->url, ctx->started, r, &resp, &ctx->error);
                return MHD_YES;
        }
        if (!ctx->upload) { /* refused at the first call: nothing more to do */
                *upload_size = 0;
                return MHD_YES;
        }
        if (*upload_size > 0) {
                /* Once the agent stops reading (it refused the request early), the rest is
                 * discarded; its answer is read at the end. */
                if (!ctx->upload_stalled && api_upload_data(ctx->upload, upload, *upload_size, &ctx->error) < 0)
                        ctx->upload_stalled = true;
                *upload_size = 0;
                return MHD_YES;
        }
        r = api_upload_end(ctx->upload, &resp, &ctx->error);
        api_upload_free(ctx->upload);
        ctx->upload = NULL;
        return respond(req->conn, req->method, req->url, ctx->started, r, &resp, &ctx->error);
}

static bool is_layer_route(const char *method, const char *url) {
        char idbuf[128];

        return streq(method, "PUT") && route_match("/v1/internal/layers/{id}", false, url, idbuf, sizeof(idbuf));
}

/* PUT /v1/internal/layers/{id}: as an upload, the body streams in piece by piece (to tar);
 * a failure midway is kept, the rest discarded, and the error answered at the end. */
static enum MHD_Result on_layer(struct api_request *req, struct conn_ctx *ctx, bool first, const char *upload,
                                size_t *upload_size) {
        struct api_response resp = {0};
        int r;

        if (first) {
                r = api_layer_begin(req, &ctx->layer, &ctx->error);
                if (r < 0)
                        return respond(req->conn, req->method, req->url, ctx->started, r, &resp, &ctx->error);
                return MHD_YES;
        }
        if (!ctx->layer) {
                *upload_size = 0;
                return MHD_YES;
        }
        if (*upload_size > 0) {
                if (ctx->layer_failed >= 0)
                        ctx->layer_failed = api_layer_data(ctx->layer, upload, *upload_size, &ctx->error);
                *upload_size = 0;
                return MHD_YES;
        }
        r = ctx->layer_failed < 0 ? ctx->layer_failed : api_layer_end(ctx->layer, &resp, &ctx->error);
        api_layer_free(ctx->layer);
        ctx->layer = NULL;
        return respond(req->conn, req->method, req->url, ctx->started, r, &resp, &ctx->error);
}

/* A request relayed to the node that owns its sandbox: the body streams to it as it
 * arrives, then its answer streams back. Like an upload, a failure midway is kept, the rest
 * of the body discarded, and the owner's answer (or the error) given at the end. */
static enum MHD_Result on_relay(struct api_request *req, struct conn_ctx *ctx, const char *upload, size_t *upload_size) {
        struct api_response resp = {0};
        struct api_relay *rl;
        int r;

        if (*upload_size > 0) {
                if (!ctx->relay_stalled && api_relay_data(ctx->relay, upload, *upload_size, &ctx->error) < 0)
                        ctx->relay_stalled = true;
                *upload_size = 0;
                return MHD_YES;
        }
        rl = TAKE_PTR(ctx->relay);
        r = api_relay_end(rl, &resp, &ctx->error);
        return respond(req->conn, req->method, req->url, ctx->started, r, &resp, &ctx->error);
}

/* Whether the route of a resolved request names a sandbox that may be another node's: all
 * but GET /v1/sandboxes/{id}, which every node answers from the store. */
static bool relayable(const struct conn_ctx *ctx) {
        return ctx->resolved >= 0 && strstr(ctx->route->pattern, "{id}") && ctx->route->fn != api_sandbox_get &&
               strncmp(ctx->route->pattern, "/v1/internal/", 13) != 0;
}

/* The first call, once the head has arrived: checks its framing and URL, then finds its
 * route and authenticates it, before any of the body is read. A refused request with a
 * body is answered now, which makes libmicrohttpd skip the body and close the connection:
 * a client without a key cannot make the engine read a body it will refuse. One without
 * a body is answered at the end as usual, which keeps the connection alive. */
static enum MHD_Result on_head(struct api_request *req, struct conn_ctx *ctx, const char *version, const char *upload,
                               size_t *upload_size) {
        struct api_response resp = {0};
        struct error e = {0};
        int64_t body_len;
        int r;

        r = check_framing(req->conn, version, &body_len, &e);
        if (r < 0) {
                /* Closed even where libmicrohttpd would keep it alive (a first
                 * Content-Length of 0): the rest is no request of its own. */
                resp.close = true;
                return respond(req->conn, req->method, req->url, ctx->started, r, &resp, &e);
        }
        if (url_had_nul) {
                url_had_nul = false;
                r = error_set(&e, EINVAL, ERR_BAD_REQUEST, "the URL contains a NUL byte (%%00), which no path or value may hold");
                return respond(req->conn, req->method, req->url, ctx->started, r, &resp, &e);
        }
        ctx->resolved = resolve(req, ctx->idbuf, sizeof(ctx->idbuf), &ctx->route, &ctx->error);
        ctx->team_id = req->team_id;
        /* Another node's sandbox: everything, body included, goes to that node. Decided
         * before any of the body is read, so that it streams through rather than here. */
        if (relayable(ctx)) {
                ctx->resolved = api_relay_begin(req, body_len, &ctx->relay, &ctx->error);
                if (ctx->relay) {
                        ctx->upload_route = false;
                        return MHD_YES;
                }
        }
        if (ctx->resolved < 0 && (body_len != 0 || ctx->upload_route || ctx->layer_route))
                return respond(req->conn, req->method, req->url, ctx->started, ctx->resolved, &resp, &ctx->error);
        if (ctx->layer_route)
                return on_layer(req, ctx, true, upload, upload_size);
        if (ctx->upload_route)
                return on_upload(req, ctx, true, upload, upload_size);
        return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
        struct engine *eng = cls;
        struct conn_ctx *ctx = *con_cls;
        struct api_request req = {.eng = eng, .conn = conn, .method = method, .url = url, .team_id = -1};
        struct api_response resp = {0};
        struct error e = {0};
        int r;

        if (!ctx) {
                /* Over the per-address cap: answered 503 already, and never served. */
                if (api_guard_refused(conn))
                        return MHD_NO;
                api_guard_head(conn);
                ctx = calloc(1, sizeof(*ctx));
                if (!ctx)
                        return MHD_NO;
                buf_init(&ctx->body, API_MAX_BODY);
                ctx->started = mono_ms();
                ctx->upload_route = is_upload_route(method, url);
                ctx->layer_route = is_layer_route(method, url);
                *con_cls = ctx;
                return on_head(&req, ctx, version, upload, upload_size);
        }
        req.team_id = ctx->team_id;
        req.id = ctx->route && strstr(ctx->route->pattern, "{id}") ? ctx->idbuf : NULL;
        if (ctx->relay)
                return on_relay(&req, ctx, upload, upload_size);
        if (ctx->upload_route)
                return on_upload(&req, ctx, false, upload, upload_size);
        if (ctx->layer_route)
                return on_layer(&req, ctx, false, upload, upload_size);
        if (*upload_size > 0) {
                if (!ctx->too_large && buf_append(&ctx->body, upload, *upload_size) < 0) {
                        ctx->too_large = true;
                        buf_free(&ctx->body);
                }
                *upload_size = 0;
                return MHD_YES;
        }
        if (ctx->resolved < 0)
                return respond(conn, method, url, ctx->started, ctx->resolved, &resp, &ctx->error);
        if (ctx->too_large)
                r = error_set(&e, E2BIG, ERR_TOO_LARGE, "request body is larger than %d bytes", API_MAX_BODY);
        else {
                req.body = ctx->body.data ? ctx->body.data : "";
                req.body_len = ctx->body.len;
                r = ctx->route->fn(&req, &resp, &e);
        }
        return respond(conn, method, url, ctx->started, r, &resp, &e);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        struct conn_ctx *ctx = *con_cls;

        url_had_nul = false;
        api_guard_completed(conn);
        if (!ctx)
                return;
        buf_free(&ctx->body);
        api_upload_free(ctx->upload);
        api_relay_free(ctx->relay);
        api_layer_free(ctx->layer);
        free(ctx);
        *con_cls = NULL;
}

/* libmicrohttpd's own messages (a client that went away mid-stream: "Closing connection
 * (application error generating response)") go through the engine's log, at debug level:
 * they are about one connection, and the engine logs what matters of it itself. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
        char line[512];
        size_t n;

        vsnprintf(line, sizeof(line), fmt, ap);
        n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
        log_debug("libmicrohttpd: %s", line);
}

/* TLS 1.2 and 1.3 only, of GnuTLS's default ciphers. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

int api_tls_load(struct engine *eng, struct error *e) {
        if (!*eng->cfg.tls_cert && !*eng->cfg.tls_key)
                return 0;
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
                return error_set(e, EOPNOTSUPP, ERR_BAD_REQUEST,
                                 "tls-cert is set, but this libmicrohttpd was built without TLS (GnuTLS): install Debian's "
                                 "libmicrohttpd12, or terminate TLS in front of the engine");
        return tls_server_load(eng->cfg.tls_cert, eng->cfg.tls_key, &eng->tls_cert_pem, &eng->tls_key_pem, e);
}

void api_tls_free(struct engine *eng) {
        if (eng->tls_key_pem)
                OPENSSL_cleanse(eng->tls_key_pem, strlen(eng->tls_key_pem));
        free(eng->tls_key_pem);
        free(eng->tls_cert_pem);
        eng->tls_key_pem = eng->tls_cert_pem = NULL;
}

int api_start(struct engine *eng, struct api_server **ret, struct error *e) {
        _cleanup_free_ struct api_server *srv = calloc(1, sizeof(*srv));
        bool tls = eng->tls_cert_pem != NULL;
        struct MHD_OptionItem tls_opts[] = {
                {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, eng->tls_cert_pem},
                {MHD_OPTION_HTTPS_MEM_KEY, 0, eng->tls_key_pem},
                {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *) TLS_PRIORITIES},
                {MHD_OPTION_END, 0, NULL},
        };
        struct sockaddr_in sa;
        int r;

        if (!srv)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        r = net_parse_listen(eng->cfg.listen, "listen", &sa, e);
        if (r < 0)
                return r;
        r = api_guard_new((unsigned) eng->cfg.api_connections_per_address, eng->cfg.api_head_timeout, CONN_IDLE_TIMEOUT_S,
                          &srv->guard, e);
        if (r < 0)
                return r;
        /* poll(), not select(): connections with fds past 1023 must work. An idle
         * connection is closed after CONN_IDLE_TIMEOUT_S (streams send keepalives every
         * 10 s; the SDK replaces a kept-alive connection the engine closed); the guard
         * closes sooner one that is slow to send its request, or has no key. */
        srv->daemon = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0), 0,
                NULL, NULL, on_request,
                eng, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                MHD_OPTION_NOTIFY_CONNECTION, api_guard_notify, srv->guard, MHD_OPTION_CONNECTION_LIMIT, 4000u,
                MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) CONN_IDLE_TIMEOUT_S,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) CONN_MEMORY, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
        if (!srv->daemon) {
                api_guard_free(srv->guard);
                return error_set(e, EADDRINUSE, ERR_INTERNAL, "cannot listen on %s (in use, or not an address of this host)",
                                 eng->cfg.listen);
        }
        *ret = TAKE_PTR(srv);
        return 0;
}

void api_stop(struct api_server *srv) {
        if (!srv)
                return;
        /* The watchdog first: it must not shut down a connection the daemon is tearing down. */
        api_guard_stop(srv->guard);
        MHD_stop_daemon(srv->daemon);
        api_guard_free(srv->guard);
        free(srv);
}
