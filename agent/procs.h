/* procs.h — processes started through the API: the process table, their output rings,
 * stdin pipes, PTYs, signals, and the HTTP handlers for /processes (see docs/api.md,
 * "Processes", for the wire contract).
 *
 * Handlers follow http_handler_t's rule: send exactly one response (an error JSON or a
 * stream), return 0 or the -errno of a failed reply. arg is the {pid} path segment, as
 * text, for the routes that have one (NULL otherwise).
 */
#pragma once

#include "http.h"

/* Sets up the process table. Call once from main after process_reaper_start(). */
int procs_init(void);

int procs_handle_start(struct http_conn *c, const struct http_request *req, const char *arg);
int procs_handle_list(struct http_conn *c, const struct http_request *req, const char *arg);
int procs_handle_stream(struct http_conn *c, const struct http_request *req, const char *arg);
int procs_handle_stdin_write(struct http_conn *c, const struct http_request *req, const char *arg);
int procs_handle_stdin_close(struct http_conn *c, const struct http_request *req, const char *arg);
int procs_handle_signal(struct http_conn *c, const struct http_request *req, const char *arg);
int procs_handle_kill(struct http_conn *c, const struct http_request *req, const char *arg);
int procs_handle_resize(struct http_conn *c, const struct http_request *req, const char *arg);
/* POST /processes/kill_all (kill-all.c): every process of the sandbox but the agent. */
int procs_handle_kill_all(struct http_conn *c, const struct http_request *req, const char *arg);
