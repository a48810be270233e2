/* routes.h — the agent's routing table: which handler serves which method and path.
 *
 *   GET  /health                      → 200 {"status":"ok","pid":N,"uptime_ms":N}
 *   /processes…                       → procs.h
 *   /files…                           → files.h
 *   /execute, /contexts…              → kernel/contexts.h
 *   GET  /checkpoint/blockers         → checkpoint.h (the engine's, before a gVisor memory pause)
 * The wire contract of each route is in docs/api.md ("Inside a sandbox"): the engine
 * serves the same paths under /v1/sandboxes/{id}. Unknown paths answer 404, known paths
 * with another method 405, in the {"error":{"code","message"}} shape. A route whose answer
 * is a lasting stream (a command's events, an execution, a watch, a tunnel) answers 503
 * on a connection served by a reserve thread (http.h: the sandbox's pids limit is reached).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "http.h"

/* What the handlers share; lives as long as the process. */
struct agent {
        uint64_t started_ms; /* CLOCK_MONOTONIC, for uptime */
};

/* The http_handler_t of the agent; userdata is a struct agent. */
int agent_route(struct http_conn *c, const struct http_request *req, void *userdata);

/* Whether the route of req reads its request body itself, as a stream (file uploads),
 * instead of getting it buffered (at most HTTP_MAX_BODY) in req->body. */
bool agent_route_streams_body(const struct http_request *req);
