/* drain.h — a draining node moves its paused sandboxes' files to other nodes (issue 14).
 *
 * `ai2ind node drain NAME` sets NAME's state to draining in the store: placement sends it no
 * creates (as cordoned), and NAME's drain thread, which looks at its own state every two
 * seconds, moves each of its sandboxes paused with their files only to another active node,
 * node to node over the API with the cluster secret (drain.c says how, api/layer.c is the
 * receiving end). A sandbox paused with its memory cannot move (its processes are frozen in
 * this host's kernel): it stays, and the CLI names it. Uncordon stops the moves.
 *
 * `--running pause-move-resume` sets NAME evacuating instead: the same, and first each running
 * sandbox is paused (filesystem only: its processes end, its files stay), moved the same way,
 * and resumed on its target by that node (api/layer.c api_layer_resume). A sandbox whose move
 * fails stays paused on NAME (tried again at the next pass); one whose resume fails stays
 * paused on its target. Never lost either way.
 */
#pragma once

#include "engine.h"
#include "error.h"
#include "store/store.h"

/* Starts the drain thread (at engine start). */
int drain_start(struct engine *eng, struct error *e);

/* Stops it (sets eng->stopping; a move under way is abandoned: its sandbox stays here).
 * Accepts an engine whose thread never started. */
void drain_stop(struct engine *eng);

/* `ai2ind node drain NAME [SECONDS] [--running pause-move-resume]` (drain-watch.c): sets node
 * draining (evacuating with running), then prints each of its paused (and running) sandboxes
 * as it moves (and runs again on its target), until none is left (0) or seconds pass, the
 * node goes down or is uncordoned (an error saying how many are left). */
int drain_watch(struct store *st, const char *node, int64_t seconds, bool running, struct error *e);
