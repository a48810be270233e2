/* contexts.h — code contexts and run_code: the HTTP handlers for /execute and /contexts
 * (wire contract: docs/api.md, "Running code"), the context table with one default context
 * per language, the one-execution-at-a-time queue of each context, and the event stream
 * (start, the backend's events under a 32 MiB output cap, keepalives, end).
 *
 * Handlers follow http_handler_t's rule: send exactly one response, return 0 or the -errno
 * of a failed reply. arg is the {id} path segment for the routes that have one.
 */
#pragma once

#include "http.h"

/* Sets up the table and starts the default Python context's kernel in the background, so
 * that the first execution does not wait for it. Call once from main after procs_init(). */
int contexts_init(void);

int contexts_handle_execute(struct http_conn *c, const struct http_request *req, const char *arg);
int contexts_handle_create(struct http_conn *c, const struct http_request *req, const char *arg);
int contexts_handle_list(struct http_conn *c, const struct http_request *req, const char *arg);
int contexts_handle_restart(struct http_conn *c, const struct http_request *req, const char *arg);
int contexts_handle_remove(struct http_conn *c, const struct http_request *req, const char *arg);
