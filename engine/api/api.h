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
        json_t *body; /* owned */
};

/* Starts the API server on the configured address. */
int api_start(struct engine *eng, struct MHD_Daemon **ret, struct error *e);
void api_stop(struct MHD_Daemon *d);

/* Parses the request body as a JSON object (400 with the parser's message otherwise). */
int api_body_object(const struct api_request *req, json_t **ret, struct error *e);

/* Handlers: fill resp on success, or return a negative errno with e set. */
int api_health(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_create(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_list(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_get(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_kill(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_timeout(struct api_request *req, struct api_response *resp, struct error *e);
int api_sandbox_commands(struct api_request *req, struct api_response *resp, struct error *e);

/* The JSON form of a sandbox, as every route returns it. */
json_t *sandbox_to_json(const struct sandbox_rec *r);
