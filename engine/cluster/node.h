/* node.h — this engine as one node among those sharing its store (issue 14).
 *
 * Every engine registers a row for itself at start (store_node_register) and renews its lease
 * every third of node-lease seconds from the reaper thread; a node whose lease lapsed is down.
 * Each sandbox is owned by the node that created it, and only that node touches it: starts,
 * stops, pauses, reaps, reconciles, gives it an address. Another node reads it (get, list)
 * but answers 503 to anything that needs its container (no forwarding between nodes yet).
 * Any live node, when it renews its lease, moves the running sandboxes of the nodes whose
 * lease lapsed to `error` "node NAME lost"; that node re-adopts them when it returns.
 */
#pragma once

#include "engine.h"
#include "error.h"
#include "store/store.h"

/* Registers this node (its name, advertised URL, host capacity and a fresh lease) and claims
 * rows without an owner (store_node_register); logs what it adopted. */
int node_register(struct engine *eng, struct error *e);

/* Renews this node's lease (registering again if its row was removed) and marks the running
 * sandboxes of lost nodes (store_nodes_mark_lost). Failures are logged; the reaper calls it
 * every node-lease / 3 seconds. */
void node_renew_lease(struct engine *eng);

/* 0 when rec is this node's sandbox. Else a 503 naming its owner: ERR_NODE_DOWN when that
 * node's lease lapsed ("the sandbox's node A is down"), ERR_OTHER_NODE with the owner's
 * advertised URL otherwise. */
int node_check_local(struct engine *eng, const struct sandbox_rec *rec, struct error *e);

/* 0 when this node takes new sandboxes (it is active); ERR_NODE_CORDONED naming its state
 * otherwise. */
int node_check_accepting(struct engine *eng, struct error *e);

/* Whether rec is a sandbox of this node that another marked lost while this node was down
 * (its error is NODE_LOST_FMT with this node's name). */
bool node_lost_mark(struct engine *eng, const struct sandbox_rec *rec);
