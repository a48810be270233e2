/* ndjson.h — newline-delimited JSON event streams over a chunked HTTP response.
 *
 * Every stream the agent serves (a process's life, a file watch) is a 200 with content
 * type application/x-ndjson whose body is one JSON object per line, each written as one
 * chunk the moment it happens. ndjson_event() stamps each object with "ts" (RFC 3339,
 * milliseconds) unless it already has one.
 */
#pragma once

#include <jansson.h>

#include "http.h"

/* How long a stream may stay silent before the writer sends {"type":"keepalive"}. */
#define NDJSON_KEEPALIVE_MS 10000

/* Starts the 200 application/x-ndjson chunked response. Returns 0 or -errno. */
int ndjson_begin(struct http_conn *c);

/* Adds "ts" to ev (borrowed) if missing and writes it as one line. Returns 0, or -errno
 * when the client went away (nothing more can be sent). */
int ndjson_event(struct http_conn *c, json_t *ev);

/* Writes {"type":"keepalive"}. */
int ndjson_keepalive(struct http_conn *c);

/* Ends the response (the last chunk). */
int ndjson_end(struct http_conn *c);
