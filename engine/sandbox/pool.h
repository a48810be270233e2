/* pool.h — the warm pool: sandboxes started ahead, per template (the setting pool, such as
 * "base=8"), each with its network slot, overlay, agent and default Python kernel ready, that
 * a create takes and makes the team's in a few milliseconds instead of starting one.
 *
 * A pooled sandbox is a sandbox without a row: it belongs to no team, no list, cap or node
 * count sees it, and neither the API nor the preview proxy (which look sandboxes up in the
 * store) can reach it. Its id, made when it started, is shown to nobody before hand-out, so
 * it is a fresh one to its user. Nothing runs in it but the agent and an idle kernel that has
 * run nothing. A crash leaves containers, mounts, cgroups and veths without a row, which is
 * what reconcile removes at the next start; a stop tears the pool down (pool_stop).
 *
 * Hand-out (pool_take) inserts its row under the team's cap, as creating (over the cap it
 * goes back to the pool untouched), writes the create's limits to its cgroups in place
 * (memory, CPU quota and the CPU shares it lacked in the pool) and marks it running: the same
 * two writes and the same crash rollback as a cold create. Its envs and metadata live in the row, which is where every command and execution
 * gets its envs from (api/inside.c), so nothing is sent inside.
 *
 * Refill is the background's: one worker per CPU (never more starts at once), each starting
 * the container with POOL_CPU_SHARES, so that the start and the kernel's warm-up yield to
 * every running sandbox, until hand-out gives it its own share.
 */
#pragma once

#include <jansson.h>

#include "engine.h"
#include "error.h"
#include "sandbox/sandbox.h"

/* The team_id of a pooled sandbox's record: it has no row and belongs to nobody. */
#define POOL_TEAM (-1)
/* cpu.shares of a pooled sandbox (v1's minimum is 2; a running sandbox has 1024 a CPU). */
#define POOL_CPU_SHARES 2
/* The most sandboxes one template's pool may keep. */
#define POOL_MAX_PER_TEMPLATE 256

static inline bool sandbox_is_pooled(const struct sandbox_rec *rec) {
        return rec->team_id == POOL_TEAM;
}

/* Starts the pool of the setting pool ("" or "off": none; "NAME=N[,NAME=N…]", each N 0 to
 * POOL_MAX_PER_TEMPLATE, else a 400-like error naming the setting) and its refill workers;
 * after reconcile, which would take its sandboxes for orphans. */
int pool_start(struct engine *eng, struct error *e);

/* Stops refilling and tears every pooled sandbox down. */
void pool_stop(struct engine *eng);

/* Hands a pooled sandbox out for a create of team with o, its record in ret: 1. 0 when the
 * pool has none that fits (then the caller makes one cold): another template, a runtime,
 * disk limit or network other than the pool's, an empty pool, or limits its cgroups refuse.
 * < 0 with e set when the create itself fails (the team's cap). */
int pool_take(struct engine *eng, int64_t team_id, const struct sandbox_create_opts *o, struct sandbox_rec *ret, struct error *e);

/* {"base": {"size", "ready", "starting", "hits", "misses", "unsuited", "failures",
 * "refill_ms_last", "refill_ms_avg"}, …}, or null when the pool is off: for GET /v1/health. */
json_t *pool_stats_json(struct engine *eng);
