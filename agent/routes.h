/* routes.h — the agent's routing table: which handler serves which method and path.
 *
 *   GET  /health → 200 {"status":"ok","pid":N,"uptime_ms":N}
 *   POST /exec   → see exec.h
 * Unknown paths answer 404, known paths with another method 405, in the
 * {"error":{"code","message"}} shape.
 */
#pragma once

#include <stdint.h>

#include "http.h"

/* What the handlers share; lives as long as the process. */
struct agent {
        uint64_t started_ms; /* CLOCK_MONOTONIC, for uptime */
};

/* The http_handler_t of the agent; userdata is a struct agent. */
int agent_route(struct http_conn *c, const struct http_request *req, void *userdata);
