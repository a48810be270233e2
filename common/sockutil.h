/* sockutil.h — socket helpers shared by the engine's preview proxy and the agent's tunnel. */
#pragma once

#include <sys/socket.h>

/* Connects a new non-blocking TCP socket (close-on-exec, TCP_NODELAY) to sa, waiting at most
 * timeout_ms for the handshake. Returns the socket, or -errno (-ETIMEDOUT, -ECONNREFUSED...). */
int tcp_connect(const struct sockaddr *sa, socklen_t len, int timeout_ms);
