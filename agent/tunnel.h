/* tunnel.h — GET /tunnel?port=N: the agent's end of a preview connection.
 *
 * The engine's preview proxy cannot always reach a sandbox's server from outside: one bound
 * to 127.0.0.1 is only reachable from inside the sandbox's network namespace, where the
 * agent lives. So the proxy asks the agent for a tunnel: the agent connects to the port on
 * the sandbox's loopback (127.0.0.1, then ::1, then the sandbox's own addresses: a server
 * bound to any of them answers), answers "101 Switching Protocols" and relays bytes both
 * ways until both sides end. Nothing listening there is a 502 that says so.
 */
#pragma once

#include "http.h"

int tunnel_handle(struct http_conn *c, const struct http_request *req, const char *arg);
