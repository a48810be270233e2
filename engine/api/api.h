/* api.h — the REST API under /v1 (libmicrohttpd, a thread per connection).
 *
 * server.c owns the HTTP side: reading bodies (capped), authentication, routing, and the
 * one place where a struct error becomes a JSON error body. One file per resource holds
 * the handlers (sandboxes.c, health.c).
 */
#pragma once

#include <jansson.h>
#include <microhttpd.h>

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

/* Starts the API server on the configured address, with its connection guard (guard.h). */
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

/* A JSON object of string values named name in body, at most max entries, keys checked as
 * environment variable names when env_keys; absent or null leaves *ret alone; *ret gets
 * the object's compact text. */
int api_string_map(json_t *body, const char *name, size_t max, bool env_keys, char **ret, struct error *e);

/* The JSON form of a sandbox, as every route returns it; cfg (may be NULL) gives its
 * "preview" object (where preview URLs live). */
json_t *sandbox_to_json(const struct config *cfg, const struct sandbox_rec *r);
