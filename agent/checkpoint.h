/* checkpoint.h — what would keep a checkpoint of this sandbox from being taken.
 *
 * On gVisor the engine's memory pause is `runsc checkpoint`, which cannot save a TCP
 * connection to outside the sandbox (established, or closing: TIME_WAIT and the like) nor a
 * unix socket bound on a host-backed directory (the sandbox's disk: runsc --host-uds=create
 * makes it a host socket), and which leaves the container dead when it fails. The engine asks
 * first, and refuses the pause (409, the list in its message) while there are any:
 *
 *   GET /checkpoint/blockers → 200 {"blockers": ["tcp 10.0.0.2:8000 - 10.0.0.1:51234 (established)",
 *                                                "unix socket /home/sandbox/app.sock (on the disk)"]}
 *
 * Read from the sandbox's kernel (/proc/net/tcp, /proc/net/unix), at most CHECKPOINT_BLOCKERS_MAX.
 * Connections inside the sandbox (loopback to loopback) and sockets on a tmpfs (/tmp, /dev/shm,
 * the code kernels' directory) are saved with the rest, and are not listed; nor is the agent's
 * own socket, which it closes before the checkpoint (main.c).
 */
#pragma once

#include "http.h"

#define CHECKPOINT_BLOCKERS_MAX 16

int checkpoint_handle_blockers(struct http_conn *c, const struct http_request *req, const char *arg);

/* For tests and the fuzzer: the blockers in the text of /proc/net/tcp (tcp) and of
 * /proc/net/unix (unix; each path is checked with statfs), appended to list (a JSON array)
 * up to CHECKPOINT_BLOCKERS_MAX entries. */
void checkpoint_tcp_blockers(const char *text, json_t *list);
void checkpoint_unix_blockers(const char *text, json_t *list);
