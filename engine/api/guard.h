/* guard.h — who holds the API's connections, and for how long (issue 13).
 *
 * libmicrohttpd gives every connection a thread and closes one only after a stretch of
 * inactivity (CONN_IDLE_TIMEOUT_S), so a client without any key could hold thousands of
 * connections that send nothing, or a request head dribbled a byte at a time, and crowd
 * every other client out. The guard bounds what a client can hold:
 *   - at most api-connections-per-address connections from one address: one more is
 *     answered 503 and closed at once;
 *   - a connection that has not presented a valid API key must send its whole request
 *     (head and body) within api-head-timeout seconds of the moment it began waiting for
 *     it (its start, or the end of its previous answer), or it is closed;
 *   - an authenticated connection must send each whole request head within the idle
 *     timeout (a slow body, or a long answer such as a stream, is not limited here).
 * A watchdog thread enforces the deadlines by shutting the socket down, which makes the
 * connection's own thread see end-of-file and close it; answers being sent are never cut.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct api_guard;

/* Makes a guard and starts its watchdog: per_address connections at most from one address,
 * head_timeout_s for an unauthenticated request, idle_timeout_s for an authenticated head. */
int api_guard_new(unsigned per_address, int64_t head_timeout_s, int64_t idle_timeout_s, struct api_guard **ret,
                  struct error *e);

/* Stops the watchdog and frees the guard; call after the daemon stopped. Accepts NULL. */
void api_guard_free(struct api_guard *g);

/* Stops the watchdog (before the daemon stops: it must not touch a connection then). */
void api_guard_stop(struct api_guard *g);

/* The MHD_OPTION_NOTIFY_CONNECTION callback (cls: the guard): counts, admits or refuses. */
void api_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

/* Whether conn was refused at its start (its requests must not be served). */
bool api_guard_refused(struct MHD_Connection *conn);

/* conn's request head has arrived (first call of the request handler). */
void api_guard_head(struct MHD_Connection *conn);

/* conn presented a valid API key: from now on it is held only to the authenticated limits. */
void api_guard_authenticated(struct MHD_Connection *conn);

/* An answer to conn's request is queued: its request is no longer being read. */
void api_guard_answering(struct MHD_Connection *conn);

/* conn's request is over; it waits for the next request head from now on. */
void api_guard_completed(struct MHD_Connection *conn);
