/* placement.h — which node a create goes to (issue 14).
 *
 * A create may arrive at any node. The receiving node picks where it runs from the nodes
 * table, whose figures (running sandboxes, capacity) each node keeps current when it renews
 * its lease and after each create: the better of two nodes drawn at random among those that
 * take new sandboxes (active, lease valid, below capacity), "better" being the lower share
 * of capacity in use. Two random choices rather than the least loaded: nodes deciding at
 * once from the same (slightly stale) figures do not all pile onto one node, and the load
 * still evens out (Mitzenmacher's "power of two choices").
 *
 * The receiving node then creates the sandbox itself (when chosen) or relays the create to
 * the chosen node (api/relay.c); a node that fails (unreachable, or 5xx: full, cordoned
 * meanwhile, broken) is passed over for the other candidate, then for the receiving node.
 */
#pragma once

#include "engine.h"
#include "error.h"
#include "store/store.h"

/* How many nodes are drawn (and so tried, before the receiving node itself). */
#define PLACEMENT_CHOICES 2

/* The capacity this node advertises: --node-capacity, or its memory / default-memory-mb
 * (at least 1). */
int64_t placement_capacity(const struct engine *eng, int64_t memory_mb);

/* Fills ret with up to PLACEMENT_CHOICES nodes a create should be tried on, best first, and
 * *ret_n with how many (0: no node takes new sandboxes). The receiving node may be among
 * them; it is placed first when its load ties. */
int placement_choose(struct engine *eng, struct node_rec ret[PLACEMENT_CHOICES], unsigned *ret_n, struct error *e);
