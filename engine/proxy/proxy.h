/* proxy.h — the preview proxy: http://{port}-{sandbox id}.{domain}/ reaches that port of
 * that sandbox.
 *
 * A listener of its own (preview-listen, default 127.0.0.1:7301), a thread per client
 * connection. The first request's Host picks the sandbox and port; the proxy then asks the
 * sandbox's agent for a tunnel to that port (agent/tunnel.h: the agent connects from inside
 * the sandbox, so servers bound to its 127.0.0.1 answer too, and the route never depends on
 * the sandbox's address, which changes at resume) and relays the connection. Requests are
 * parsed on their way in (each must name the same sandbox and port, carry the traffic token
 * of a secure sandbox, which is stripped, and be framed soundly); answers are passed through
 * untouched with splice(). A request that upgrades the connection (WebSocket) turns it into
 * a plain byte tunnel. Preview traffic counts as activity for the idle reaper.
 *
 * No API key: a preview URL is public, like the sandbox's own port would be, unless the
 * sandbox was created secure.
 */
#pragma once

#include <stdint.h>

#include "engine.h"
#include "error.h"
#include "id.h"

struct proxy;

/* Starts listening on eng->cfg.preview_listen ("off": *ret = NULL, nothing started) and
 * serving in the background. */
int proxy_start(struct engine *eng, struct proxy **ret, struct error *e);

/* Stops accepting, ends the open connections and waits (briefly) for their threads.
 * Accepts NULL. */
void proxy_stop(struct proxy *p);

/* Parses a Host header value "{port}-{sandbox id}.{anything}" (an optional ":port" after
 * it; case-insensitive), the id either as the API gives it ("sbx_…") or DNS-safe ("sbx-…",
 * the form the SDKs make). Returns 0 with the id in its API form, or -EINVAL when host does
 * not have that shape. */
int preview_host_parse(const char *host, uint16_t *ret_port, char ret_id[SANDBOX_ID_LEN + 1]);
