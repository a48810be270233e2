/* api.h — the REST API under /v1 (libmicrohttpd, a thread per connection).
 *
 * server.c owns the HTTP side: reading bodies (capped), authentication, routing, and the
 * one place where a struct error becomes a JSON error body. One file per resource holds
 * the handlers (sandboxes.c, health.c).
 */
#pragma once

#include <jansson.h>
#include <microhttpd.h>

#include "buf.h"
#include "engine.h"
#include "error.h"

#define API_MAX_BODY (1024 * 1024)

struct api_request {
        struct engine *eng;
        struct MHD_Connection *conn;
        const char *method;
        const char *url;
        int64_t team_id;     /* set once authenticated */
        const char *body;    /* NUL-terminated, may be empty */
        size_t body_len;
        const char *id;      /* the {id} of /v1/sandboxes/{id}/… routes */
};

struct api_response {
        int status;
        json_t *body;              /* owned */
        struct MHD_Response *mhd;  /* owned; when set, queued as is (a forwarded stream) */
        bool close;                /* close the connection after this answer (JSON bodies) */
};

/* Reads tls-cert and tls-key, when set, into eng (net/tls.h checks them) after making sure
 * this libmicrohttpd speaks TLS: called first thing at start, so that a missing or wrong
 * file stops the engine at once with a message naming it. */
int api_tls_load(struct engine *eng, struct error *e);
/* Forgets what api_tls_load read (the key wiped). */
void api_tls_free(struct engine *eng);

/* Starts the API server on the configured address, with its connection guard (guard.h),
 * speaking HTTPS when api_tls_load read a certificate. */
struct api_server;
int api_start(struct engine *eng, struct api_server **ret, struct error *e);
/* Stops it: open connections are closed. Accepts NULL. */
void api_stop(struct api_server *srv);

/* Parses the request body as a JSON object (400 with the parser's message otherwise). */
int api_body_object(const struct api_request *req, json_t **ret, struct error *e);

/* Handlers: fill resp on success, or return a negative errno with e set. */
int api_health(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_create(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_list(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_get(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_kill(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_timeout(struct api_request *req, struct api_response *resp, struct error *e);
/* POST /v1/sandboxes/{id}/pause {"keep_memory": bool} and …/resume {"timeout": s}: both
 * optional bodies; answer {"status": "paused" | "running"}. */
int api_sandbox_pause(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_resume(struct api_request *req, struct api_response *resp, struct error *e);

/* Everything under /v1/sandboxes/{id}/processes and …/files (inside.c): checks the team and
 * the sandbox's state, then forwards the request to the sandbox's agent and streams its
 * answer back (resp->mhd). The body of these routes is buffered (API_MAX_BODY) except for
 * PUT …/files, which streams through api_upload_*. */
int api_inside_forward(struct api_request *req, struct api_response *resp, struct error *e);

/* Streamed uploads (PUT …/files): begin once the request is authenticated, feed each
 * piece of the body as it arrives, end when it is complete (fills resp). free accepts
 * NULL and a half-done upload (the agent then sees the body cut short and keeps the old
 * file). */
struct api_upload;
int api_upload_begin(struct api_request *req, struct api_upload **ret, struct error *e);
int api_upload_data(struct api_upload *u, const char *data, size_t len, struct error *e);
int api_upload_end(struct api_upload *u, struct api_response *resp, struct error *e);
void api_upload_free(struct api_upload *u);

/* The target to send on for req: path (decoded, as libmicrohttpd hands it) percent-encoded
 * again, so that no byte of it can change the request line, and req's query re-encoded.
 * 400 in e when longer than API_TARGET_MAX. */
#define API_TARGET_MAX (15 * 1024) /* encoded; the agent and the engine take heads of up to 16 KiB */
int api_encode_target(const struct api_request *req, const char *path, struct buf *b, struct error *e);

/* The API key of a request (X-API-Key, or Authorization: Bearer), or NULL. */
const char *api_request_key(struct MHD_Connection *conn);

/* Relaying a request for another node's sandbox to its owner (relay.c). A relayed request
 * carries the sender's node name in RELAY_HOP_HEADER (never relayed again) and the cluster
 * secret, when configured, in RELAY_SECRET_HEADER (server.c checks it, 403 when wrong). */
#define RELAY_HOP_HEADER "X-Ai2in-Forwarded-By"
#define RELAY_SECRET_HEADER "X-Ai2in-Cluster-Secret"
struct api_relay;
/* Once req's head is authenticated: *ret NULL when this node answers req itself; else the
 * relay to the owner, its head sent (body_len: the caller's Content-Length, -1 chunked).
 * Errors: the owner down (503 node_down), a relayed request for a sandbox not this node's
 * (503 other_node), the owner not reachable. */
int api_relay_begin(struct api_request *req, int64_t body_len, struct api_relay **ret, struct error *e);
/* Streams a piece of the request body to the owner (blocks while the owner does not read). */
int api_relay_data(struct api_relay *rl, const char *data, size_t len, struct error *e);
/* Ends the body, reads the owner's answer head and fills resp with a response that streams
 * its body; owns rl from here on, also on failure. */
int api_relay_end(struct api_relay *rl, struct api_response *resp, struct error *e);
/* Relays the create req (its body read whole) to node to, which creates the sandbox as its
 * own. 0 with resp filled by to's answer, success or refusal (a 4xx: the team cap, a bad
 * body; final, since every node would answer the same); an error when to cannot be reached
 * or answered 5xx (full, cordoned meanwhile, failing): the caller then tries another node,
 * unless *ret_final (the connection broke after to had the whole create: it may exist). */
struct node_rec;
int api_relay_create(struct api_request *req, const struct node_rec *to, struct api_response *resp, bool *ret_final,
                     struct error *e);
/* Closes the relay (the owner sees the body cut short). Accepts NULL. */
void api_relay_free(struct api_relay *rl);

/* PUT /v1/internal/layers/{id} (layer.c): another node moving the files of its paused
 * sandbox here (drain). Streamed like an upload: begin once the head is resolved (checks the
 * peer and the sandbox, makes a fresh layer, starts tar), data per piece of the body, end
 * (checks the digest, syncs; fills resp). free accepts NULL and an unfinished import, whose
 * files it removes. */
struct api_layer;
int api_layer_begin(struct api_request *req, struct api_layer **ret, struct error *e);
int api_layer_data(struct api_layer *l, const char *data, size_t len, struct error *e);
int api_layer_end(struct api_layer *l, struct api_response *resp, struct error *e);
void api_layer_free(struct api_layer *l);
/* DELETE /v1/internal/layers/{id}: the sandbox's owner asks this node to drop the copy it
 * took (its move could not be recorded). */
int api_layer_remove(struct api_request *req, struct api_response *resp, struct error *e);
/* POST /v1/internal/layers/{id}/resume: a draining node that paused a running sandbox and
 * moved it here (`node drain --running pause-move-resume`) asks this node, now its owner, to
 * resume it. Cluster secret and hop marker required; the sandbox must be this node's. */
int api_layer_resume(struct api_request *req, struct api_response *resp, struct error *e);
/* The handler of the streamed route in the route table: never called (answers 500). */
int api_layer_streamed(struct api_request *req, struct api_response *resp, struct error *e);

/* A JSON object of string values named name in body, at most max entries, keys checked as
 * environment variable names when env_keys; absent or null leaves *ret alone; *ret gets
 * the object's compact text. */
int api_string_map(json_t *body, const char *name, size_t max, bool env_keys, char **ret, struct error *e);

/* The JSON form of a sandbox, as every route returns it; cfg (may be NULL) gives its
 * "preview" object (where preview URLs live). */
json_t *sandbox_to_json(const struct config *cfg, const struct sandbox_rec *r);
