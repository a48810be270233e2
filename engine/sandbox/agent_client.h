/* agent_client.h — the engine's side of the data plane: HTTP/1.1 over the unix socket the
 * engine made for each sandbox (RUN/sandboxes/<id>/agent.sock, passed to the agent as its
 * listening fd). The socket lives on the host, outside anything the sandbox controls. */
#pragma once

#include <jansson.h>

#include "error.h"

/* Sends method path with body (may be NULL) and waits up to timeout_ms in all; on success
 * *ret_json holds the parsed answer (a JSON object of at most 1 MiB) and *ret_status the
 * HTTP status. Errors: not reachable → 502, no answer in time → 504, anything but a JSON
 * object → 502. */
int agent_call(const char *socket_path, const char *method, const char *path, json_t *body, long timeout_ms, json_t **ret_json,
               long *ret_status, struct error *e);
