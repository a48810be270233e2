/* node.h — this engine as one node among those sharing its store (issue 14).
 *
 * Every engine registers a row for itself at start (store_node_register) and renews its lease
 * every third of node-lease seconds from the reaper thread; a node whose lease lapsed is down.
 * Each sandbox is owned by the node that created it, and only that node touches it: starts,
 * stops, pauses, reaps, reconciles, gives it an address. Another node reads it (get, list)
 * from the store and relays every other request for it to its owner (api/relay.c).
 * Any live node, when it renews its lease, moves the running sandboxes of the nodes whose
 * lease lapsed to `error` "node NAME lost"; that node re-adopts them when it returns.
 */
#pragma once

#include "engine.h"
#include "error.h"
#include "sandbox/agent_stream.h"
#include "store/store.h"

/* Registers this node (its name, advertised URL, host capacity and a fresh lease) and claims
 * rows without an owner (store_node_register); logs what it adopted. */
int node_register(struct engine *eng, struct error *e);

/* Renews this node's lease (registering again if its row was removed) and marks the running
 * sandboxes of lost nodes (store_nodes_mark_lost). Failures are logged; the reaper calls it
 * every node-lease / 3 seconds. */
void node_renew_lease(struct engine *eng);

/* 0 when rec is this node's sandbox. Else a 503 naming its owner: ERR_NODE_DOWN when that
 * node's lease lapsed ("the sandbox's node A is down"), ERR_OTHER_NODE (-EREMOTE) with the
 * owner's advertised URL otherwise (the relay then sends the request there). */
int node_check_local(struct engine *eng, const struct sandbox_rec *rec, struct error *e);

/* How long a row of another node read for relaying is used again (node_owner). */
#define NODE_ROW_TTL_MS 1000

/* node_check_local, with the owner's row in *ret_owner when it returns -EREMOTE (a live
 * node other than this one: the relay's destination). The owner's row may be up to
 * NODE_ROW_TTL_MS old. */
int node_owner(struct engine *eng, const struct sandbox_rec *rec, struct node_rec *ret_owner, struct error *e);

/* 0 when this node takes new sandboxes: it is active (else ERR_NODE_CORDONED naming its
 * state) and, when node-capacity is set, runs fewer than that (else ERR_NODE_FULL). */
int node_check_accepting(struct engine *eng, struct error *e);

/* Writes this node's current figures (running sandboxes; the lease renewed with them) to its
 * row, so that placement on every node sees a create or a stop at once rather than at the
 * next renewal. A failure is logged at debug level and ignored. */
void node_refresh(struct engine *eng);

/* Whether rec is a sandbox of this node that another marked lost while this node was down
 * (its error is NODE_LOST_FMT with this node's name). */
bool node_lost_mark(struct engine *eng, const struct sandbox_rec *rec);

/* How long a connection to another node stays kept for reuse once idle (eng->node_conns):
 * well below the API's idle timeout (120 s), after which the peer would close it itself. */
#define NODE_CONN_IDLE_MS 20000

/* Opens request q to node to (agent_stream_open_tcp; peer names it in messages) at its
 * advertised URL: over TLS for https:// (the node's certificate verified against cluster-ca,
 * or the system's CAs, and its advertised host), plain for http:// — which, when cluster-ca
 * is set, is refused (502 node_error) rather than sent in plaintext. The connection is an
 * idle kept one to that node when there is one (eng->node_conns), and goes back there when
 * the exchange ends cleanly (agent_stream_free). */
int node_stream_open(const struct engine *eng, const struct node_rec *to, const char *peer, long connect_ms,
                     const struct agent_stream_request *q, int watch_fd, struct agent_stream **ret, struct error *e);
