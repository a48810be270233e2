/* route.c — which sandbox and port a preview request is for, whether it may go there, and
 * the tunnel to it. A sandbox of another live node is reached through that node's preview
 * proxy (its advertise-preview address): the connection is relayed there as it is, traffic
 * token included, and the owner checks it again. */
#include "proxy/proxy-internal.h"
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "cluster/node.h"
#include "log.h"
#include "net/tls.h"
#include "sandbox/agent_stream.h"
#include "sandbox/sandbox.h"
#include "sockutil.h"

#define TOKEN_HEADER "X-Ai2in-Traffic-Token"
#define TUNNEL_ANSWER_MS 10000
#define DIRECT_CONNECT_MS 1000
#define OWNER_CONNECT_MS 3000

int perr_set(struct perr *pe, int status, const char *code, const char *fmt, ...) {
        va_list ap;

        pe->status = status;
        pe->code = code;
        va_start(ap, fmt);
        vsnprintf(pe->message, sizeof(pe->message), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

int perr_from_parse(struct perr *pe, int err) {
        int status = http_status_from_errno(err);

        return perr_set(pe, status, "bad_request", "malformed HTTP request (%s)",
                        status == 431   ? "head over 16 KiB or 64 fields"
                        : status == 505 ? "not HTTP/1.x"
                        : status == 501 ? "a Transfer-Encoding other than chunked"
                                        : "syntax");
}

int preview_host_parse(const char *host, uint16_t *ret_port, char ret_id[SANDBOX_ID_LEN + 1]) {
        char label[64];
        size_t n = strcspn(host, ".:");
        unsigned long port = 0;
        size_t i;

        if (n == 0 || n >= sizeof(label))
                return -EINVAL;
        for (i = 0; i < n; i++)
                label[i] = (char) tolower((unsigned char) host[i]);
        label[n] = 0;
        /* "{port}-": 1 to 5 digits, no leading zero. */
        for (i = 0; isdigit((unsigned char) label[i]) && i < 6; i++)
                port = port * 10 + (unsigned long) (label[i] - '0');
        if (i == 0 || i > 5 || label[i] != '-' || label[0] == '0' || port > 65535)
                return -EINVAL;
        /* The id as the API gives it ("sbx_…"), or in the DNS-safe form the SDKs make
         * ("sbx-…": "_" is no host name character, and no wildcard certificate matches it). */
        if (strncmp(label + i + 1, SANDBOX_ID_DNS_PREFIX, strlen(SANDBOX_ID_DNS_PREFIX)) == 0)
                label[i + strlen(SANDBOX_ID_PREFIX)] = '_';
        if (!sandbox_id_valid(label + i + 1))
                return -EINVAL;
        *ret_port = (uint16_t) port;
        memcpy(ret_id, label + i + 1, SANDBOX_ID_LEN + 1);
        return 0;
}

/* The sandbox's state, as a preview request sees it. Keeps its token in c. */
static int lookup(struct pconn *c, struct perr *pe) {
        struct sandbox_rec rec;
        struct error e = {0};
        int r;

        r = store_sandbox_get(c->eng->store, c->id, &rec, &e);
        if (r == -ENOENT)
                return perr_set(pe, 404, "not_found", "no sandbox %s: it does not exist or was killed", c->id);
        if (r < 0)
                return perr_set(pe, 500, "internal", "%s", e.message);
        snprintf(c->token, sizeof(c->token), "%s", rec.traffic_token);
        snprintf(c->ip, sizeof(c->ip), "%s", rec.ip);
        /* Another node's sandbox: its address is on that node's bridge; its preview proxy
         * takes the connection, or (none advertised, or the node down) a 503 says why. */
        *c->owner = 0;
        if (rec.state != SANDBOX_KILLED) {
                struct node_rec owner;
                r = node_owner(c->eng, &rec, &owner, &e);
                if (r == -EREMOTE && *owner.advertise_preview)
                        snprintf(c->owner, sizeof(c->owner), "%s", owner.advertise_preview);
                else if (r < 0) {
                        r = perr_set(pe, e.status, e.code, "%s%s", e.message,
                                     r == -EREMOTE ? " (that node's previews are not reachable from other nodes: it has no "
                                                     "preview proxy)"
                                                   : "");
                        sandbox_rec_done(&rec);
                        return r;
                }
        }
        switch (rec.state) {
        case SANDBOX_RUNNING:
                r = 0;
                break;
        case SANDBOX_KILLED:
                r = perr_set(pe, 404, "not_found", "no sandbox %s: it does not exist or was killed", c->id);
                break;
        case SANDBOX_PAUSED:
        case SANDBOX_PAUSING:
                r = perr_set(pe, 409, "paused", "sandbox %s is paused: resume it to reach port %u", c->id, (unsigned) c->port);
                break;
        case SANDBOX_CREATING:
        case SANDBOX_RESUMING:
                r = perr_set(pe, 503, "starting", "sandbox %s is starting: try again in a moment", c->id);
                break;
        default:
                r = perr_set(pe, 502, "sandbox_error", "sandbox %s has failed: %s", c->id, *rec.error ? rec.error : "unknown error");
        }
        sandbox_rec_done(&rec);
        return r;
}

/* A secure sandbox's request must carry its token (compared in constant time): else 403.
 * Two of them are a 400: which one a server would see is not this proxy's guess to make. */
static int check_token(const struct pconn *c, const struct http_request *req, struct perr *pe) {
        const char *got = http_request_header(req, TOKEN_HEADER);
        size_t n = strlen(c->token), count = 0;

        for (size_t i = 0; i < req->n_headers; i++)
                count += strcasecmp(req->headers[i].name, TOKEN_HEADER) == 0;
        if (count > 1)
                return perr_set(pe, 400, "bad_request", "a request cannot carry two %s headers", TOKEN_HEADER);

        if (n == 0 || (got && strlen(got) == n && CRYPTO_memcmp(c->token, got, n) == 0))
                return 0;
        return perr_set(pe, 403, "forbidden", "sandbox %s is secure: send its traffic token in the %s header", c->id,
                        TOKEN_HEADER);
}

int route_check(struct pconn *c, const struct http_request *req, bool first, struct perr *pe) {
        const char *host = http_request_header(req, "Host");
        char id[SANDBOX_ID_LEN + 1];
        uint16_t port;
        int r, t;

        if (!host || preview_host_parse(host, &port, id) < 0)
                return perr_set(pe, 400, "bad_host",
                                "'%.200s' is not a preview host: preview URLs look like http://{port}-{sandbox id, \"_\" as "
                                "\"-\"}.{domain}/",
                                host ? host : "(no Host header)");
        if (first) {
                memcpy(c->id, id, sizeof(c->id));
                c->port = port;
                r = lookup(c, pe);
                /* A secure sandbox's state is not told without its token. */
                t = check_token(c, req, pe);
                return t < 0 ? t : r;
        }
        if (port != c->port || !streq(id, c->id))
                return perr_set(pe, 421, "misdirected",
                                "this connection is for port %u of %s; open another connection for another preview host",
                                (unsigned) c->port, c->id);
        return check_token(c, req, pe);
}

/* The agent's message from its JSON error answer, else a generic one. */
static void agent_error(struct agent_stream *s, char *out, size_t n) {
        _cleanup_free_ char *body = NULL;
        json_t *doc, *msg;
        size_t len;

        snprintf(out, n, "the sandbox's agent refused the connection (HTTP %d)", agent_stream_status(s));
        if (agent_stream_read_all(s, 4096, &body, &len) < 0 || !(doc = json_loads(body, 0, NULL)))
                return;
        msg = json_object_get(json_object_get(doc, "error"), "message");
        if (json_is_string(msg))
                snprintf(out, n, "%s", json_string_value(msg));
        json_decref(doc);
}

/* Connects to the port on the sandbox's own address (which the engine gave it and the
 * sandbox cannot change), within DIRECT_CONNECT_MS. Returns the socket or -errno. */
static int connect_direct(const struct pconn *c) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};

        if (inet_pton(AF_INET, c->ip, &sa.sin_addr) != 1)
                return -EADDRNOTAVAIL;
        return tcp_connect((struct sockaddr *) &sa, sizeof(sa), DIRECT_CONNECT_MS);
}

/* The tunnel through the sandbox's agent: it connects from inside, where a server bound to
 * 127.0.0.1 can be reached. */
static int connect_tunnel(struct pconn *c, struct perr *pe) {
        _cleanup_agent_stream_ struct agent_stream *s = NULL;
        _cleanup_buf_ struct buf pending = {0};
        struct error e = {0};
        char path[4200], target[64], why[400];
        int r;

        sandbox_socket_path(c->eng, c->id, path, sizeof(path));
        snprintf(target, sizeof(target), "/tunnel?port=%u", (unsigned) c->port);
        /* Not watching the client: one that shut its sending side after the request (it is
         * waiting for the answer) is not gone. The whole exchange, the agent's refusal
         * included, is bounded by TUNNEL_ANSWER_MS instead. */
        r = agent_stream_open(path, "GET", target, NULL, 0, -1, TUNNEL_ANSWER_MS, &s, &e);
        if (r >= 0)
                r = agent_stream_finish(s, TUNNEL_ANSWER_MS, &e);
        if (r < 0)
                return perr_set(pe, e.status == 503 ? 503 : 502, "sandbox_unreachable", "sandbox %s: %s", c->id, e.message);
        if (agent_stream_status(s) != 101) {
                agent_error(s, why, sizeof(why));
                return perr_set(pe, agent_stream_status(s) == 503 ? 503 : 502, "port_closed", "sandbox %s: %s", c->id, why);
        }
        r = agent_stream_detach(s, &pending);
        if (r < 0)
                return perr_set(pe, 500, "internal", "out of memory");
        c->ufd = r;
        if (pending.len > 0 && send(c->cfd, pending.data, pending.len, MSG_NOSIGNAL) != (ssize_t) pending.len)
                return perr_set(pe, 502, "client_gone", "the client went away");
        return 0;
}

/* Whether c's sandbox still runs at the address it was connected to: between the lookup and
 * the connect it may have been paused and its address given to another sandbox. */
static int still_there(struct pconn *c, struct perr *pe) {
        char ip[sizeof(c->ip)];
        int r;

        memcpy(ip, c->ip, sizeof(ip));
        r = lookup(c, pe);
        if (r < 0)
                return r;
        if (!streq(ip, c->ip))
                return perr_set(pe, 503, "starting", "sandbox %s moved while the proxy connected to it: try again", c->id);
        return 0;
}

/* TLS over fd, connected to the owner node's proxy at host: its certificate verified
 * (cluster-ca, else the system's CAs) before anything is sent; c->ufd is then the plain end
 * of a TLS pipe (tls-pipe.c). Owns fd. */
static int owner_tls(struct pconn *c, int fd, const char *host, struct perr *pe) {
        SSL *ssl = SSL_new(c->eng->cluster_tls);
        char why[300];
        int plain, r;

        if (!ssl || SSL_set_fd(ssl, fd) != 1 || tls_client_expect_host(ssl, host) < 0) {
                SSL_free(ssl);
                close(fd);
                return perr_set(pe, 500, "internal", "out of memory");
        }
        r = tls_handshake(ssl, fd, false, c->cfd, OWNER_CONNECT_MS);
        if (r < 0) {
                perr_set(pe, r == -ETIMEDOUT ? 503 : 502, r == -ETIMEDOUT ? "node_down" : "node_error",
                         "sandbox %s: no TLS connection with its node's preview proxy %s: %s", c->id, c->owner,
                         r == -EPROTO ? tls_error(ssl, why, sizeof(why)) : strerror(-r));
                log_warn("preview: %s", pe->message);
                SSL_free(ssl);
                close(fd);
                return r;
        }
        r = tls_pipe_start(ssl, fd, false, c->owner, &plain);
        if (r < 0)
                return perr_set(pe, 503, "unavailable", "sandbox %s: cannot relay to its node: %s", c->id, strerror(-r));
        (void) fcntl(plain, F_SETFL, O_NONBLOCK); /* as a tunnel's socket is */
        c->ufd = plain;
        return 0;
}

/* Connects to the owner node's preview proxy (c->owner, [https://]HOST:PORT). */
static int connect_owner(struct pconn *c, struct perr *pe) {
        const struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        char host[256];
        bool tls = strncmp(c->owner, "https://", 8) == 0;
        const char *hostport = c->owner + (tls ? 8 : 0);
        const char *colon = strrchr(hostport, ':');
        struct addrinfo *res = NULL;
        size_t n = colon ? (size_t) (colon - hostport) : 0;
        int fd = -EHOSTUNREACH, r;

        if (!tls && *c->eng->cfg.cluster_ca) {
                perr_set(pe, 502, "node_error",
                         "sandbox %s: its node's preview proxy %s is plain HTTP, but this node sends nothing to other nodes in "
                         "plaintext (cluster-ca is set): that node must advertise-preview https://HOST:PORT",
                         c->id, c->owner);
                log_warn("preview: %s", pe->message);
                return -EPROTO;
        }
        if (n >= 2 && hostport[0] == '[' && hostport[n - 1] == ']') { /* [v6]:port */
                memcpy(host, hostport + 1, n - 2);
                host[n - 2] = 0;
        } else if (n > 0 && n < sizeof(host)) {
                memcpy(host, hostport, n);
                host[n] = 0;
        } else
                return perr_set(pe, 502, "node_error", "sandbox %s: its node advertises '%.80s', not HOST:PORT", c->id, c->owner);
        r = getaddrinfo(host, colon + 1, &hints, &res);
        if (r != 0)
                return perr_set(pe, 503, "node_down", "sandbox %s: its node's preview proxy %s is not reachable: %s", c->id,
                                c->owner, gai_strerror(r));
        for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
                fd = tcp_connect(ai->ai_addr, ai->ai_addrlen, OWNER_CONNECT_MS);
        freeaddrinfo(res);
        if (fd < 0)
                return perr_set(pe, 503, "node_down", "sandbox %s: its node's preview proxy %s is not reachable: %s", c->id,
                                c->owner, strerror(-fd));
        if (tls)
                return owner_tls(c, fd, host, pe);
        c->ufd = fd;
        return 0;
}

int route_connect(struct pconn *c, struct perr *pe) {
        if (*c->owner)
                return connect_owner(c, pe);
        int fd = *c->ip ? connect_direct(c) : -EADDRNOTAVAIL;

        if (fd >= 0) {
                if (still_there(c, pe) < 0) {
                        close(fd);
                        return -EAGAIN;
                }
                c->ufd = fd;
                return 0;
        }
        /* Refused on the sandbox's address: maybe bound to loopback only, or nothing there
         * (the agent then says which). */
        return connect_tunnel(c, pe);
}

size_t head_strip_token(char *dst, const char *src, size_t head_len) {
        const size_t name_len = strlen(TOKEN_HEADER);
        size_t in = 0, out = 0;

        while (in < head_len) {
                const char *eol = memmem(src + in, head_len - in, "\r\n", 2);
                size_t line = eol ? (size_t) (eol - (src + in)) + 2 : head_len - in;
                bool drop = line > name_len && src[in + name_len] == ':' && strncasecmp(src + in, TOKEN_HEADER, name_len) == 0;

                if (!drop) {
                        memmove(dst + out, src + in, line);
                        out += line;
                }
                in += line;
        }
        return out;
}
