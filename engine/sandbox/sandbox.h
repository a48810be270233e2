/* sandbox.h — the sandbox lifecycle: create, pause, resume, kill, timeouts, activity, and the
 * per-sandbox lock that keeps two transitions of one sandbox from overlapping.
 *
 * Every transition is written to the store before and after the runtime call, so that a
 * restarted engine (reconcile.c) can finish or undo it.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "error.h"
#include "store/store.h"

/* The longest hard lifetime, in seconds (the seed's "max 24h"): the API caps a longer
 * timeout to it rather than refuse it. Every timeout below is 1..SANDBOX_MAX_TIMEOUT. */
#define SANDBOX_MAX_TIMEOUT 86400

struct sandbox_create_opts {
        const char *template_name; /* "base" when NULL */
        int64_t timeout;           /* s, 0 = none (reaped when idle instead) */
        const char *metadata;      /* JSON object text or NULL */
        const char *envs;          /* JSON object text or NULL */
        double cpu_count;          /* 0 = 1 */
        int64_t memory_mb;         /* 0 = engine default */
        int64_t disk_mb;           /* 0 = engine default */
        bool secure;               /* preview requests must carry the sandbox's traffic token */
        int allow_internet_access; /* 1, 0, or -1: the engine's internet-access setting */
        const char *network_rules; /* "" / NULL, or JSON {"allow_out": [CIDR…], "deny_out": [CIDR…]} */
        const char *runtime;       /* "runc", "gvisor" ("runsc"), or NULL: the engine's default */
};

int locks_new(struct lock_table **ret);
void locks_free(struct lock_table *t);
void sandbox_lock(struct engine *eng, const char *id);
void sandbox_unlock(struct engine *eng, const char *id);

/* Open streams (a command running, later PTYs and watches) count as activity: the idle
 * reaper leaves a sandbox with one open alone. */
/* Counts one more open request inside the sandbox; -EUSERS when it already has the engine's
 * max-streams of them (nothing counted then). */
int sandbox_stream_begin(struct engine *eng, const char *id);
void sandbox_stream_end(struct engine *eng, const char *id);
unsigned sandbox_streams(struct engine *eng, const char *id);

/* A new sandbox's record as o asks (id, template, limits, lifetime), not stored: for create,
 * and for the pool's sandboxes (team_id POOL_TEAM, pool.h). */
int sandbox_rec_new(struct engine *eng, int64_t team_id, const struct sandbox_create_opts *o, struct sandbox_rec *rec,
                    struct error *e);

/* Inserts the record of a pooled sandbox being handed out (its template version chosen when
 * it started), under the team's cap, if that version is still its template's current one:
 * -ESTALE when a build made another since (the same shared lock as a create's). */
int sandbox_insert_pooled(struct engine *eng, struct sandbox_rec *rec, struct error *e);

/* Creates and starts a sandbox for team: one of the pool's when one fits (pool.h), else a
 * cold one; ret is filled with its record (caller frees with
 * sandbox_rec_done). Failures leave nothing behind. */
int sandbox_create(struct engine *eng, int64_t team_id, const struct sandbox_create_opts *o, struct sandbox_rec *ret, struct error *e);

/* Looks up a sandbox of team; another team's sandbox is -ENOENT like a missing one. A
 * killed sandbox is -ENOENT with a message saying so. */
int sandbox_get(struct engine *eng, int64_t team_id, const char *id, struct sandbox_rec *ret, struct error *e);

/* sandbox_get, for a call that needs the sandbox's container: a sandbox of another node is a
 * 503 naming that node (cluster/node.h: node_check_local). Every transition below (kill,
 * pause, resume, set_timeout) looks its sandbox up through this. */
int sandbox_get_local(struct engine *eng, int64_t team_id, const char *id, struct sandbox_rec *ret, struct error *e);

/* Kills a sandbox of team (team < 0: any, for the reaper) of this node. reason is logged. */
int sandbox_kill(struct engine *eng, int64_t team_id, const char *id, const char *reason, struct error *e);

/* Pauses a running sandbox of team (pause.c). Without keep_memory: stops its container and
 * every process in it, gives back its address and network slot, unmounts its root and keeps
 * its directories (the upper dir is its whole filesystem); it then counts against no cap and
 * has no deadline. With keep_memory: freezes the container (no CPU, memory and address kept;
 * it still counts against the cap). A paused sandbox is left as it is (success). ret gets
 * the record afterwards. -EBUSY (409) from creating and error. */
int sandbox_pause(struct engine *eng, int64_t team_id, const char *id, bool keep_memory, struct sandbox_rec *ret, struct error *e);

/* Resumes a paused sandbox of team (pause.c): a new container on the same upper dir with a
 * fresh address and agent (through sandbox_start_parts), or the frozen container thawed.
 * Counts against the cap again (-EUSERS, 429, and nothing changes when over it). A hard
 * deadline is set again, timeout seconds from now (0: the sandbox's own timeout, if it has
 * one). A running sandbox is left as it is (success). On failure the sandbox stays paused
 * with its files. -EBUSY (409) from creating and error. */
int sandbox_resume(struct engine *eng, int64_t team_id, const char *id, int64_t timeout, struct sandbox_rec *ret, struct error *e);

/* Finishes or undoes, at engine start, a pause or resume that an engine crash interrupted,
 * and brings a paused sandbox's host parts in line with its kind (pause.c). rec is the
 * store's record of a sandbox pausing, resuming or paused; it is updated in place and in
 * the store. */
void sandbox_pause_reconcile(struct engine *eng, struct sandbox_rec *rec);

/* Sets the hard deadline to now + timeout seconds (1..SANDBOX_MAX_TIMEOUT), which replaces
 * the idle limit: the sandbox then lives until the deadline, active or not. On a paused
 * sandbox, sets the timeout that its resume arms. */
int sandbox_set_timeout(struct engine *eng, int64_t team_id, const char *id, int64_t timeout, struct sandbox_rec *ret, struct error *e);

/* Records activity on a sandbox now. */
void sandbox_touch(struct engine *eng, const char *id);

/* Writes rec back (or deletes the row of a create that never finished) on a path that goes on
 * whatever happens: a failure is logged, with what was being recorded, never ignored. */
void sandbox_save_or_warn(struct engine *eng, const struct sandbox_rec *rec);
void sandbox_forget_or_warn(struct engine *eng, const char *id);

/* The sandbox's envs from create (an object), with request_envs (an object or NULL) on top. */
json_t *sandbox_envs_merged(const struct sandbox_rec *rec, json_t *request_envs);

/* Checks that the container of a running sandbox still runs; if not, stops what is left,
 * moves the sandbox to `error` with the reason and returns -EPIPE with e saying so. A
 * sandbox paused meanwhile is -EBUSY (409) with e saying it is paused. */
int sandbox_check_alive(struct engine *eng, const char *id, struct error *e);

/* Which rule ends a creating or running sandbox: "timeout" when it has a hard deadline (it
 * lives until it, active or not, and is never reaped as idle), else "idle" (reaped after
 * idle_timeout s of inactivity). NULL in every other state: a paused sandbox ends by neither. */
const char *sandbox_end_reason(const struct sandbox_rec *r);

/* When a sandbox will end if nothing happens (ms; 0 = never, with sandbox_end_reason NULL):
 * its deadline if it has one, else last activity + idle timeout, which activity moves. */
int64_t sandbox_end_at(const struct sandbox_rec *r);

/* How many bytes the files of the sandbox of rec take on its disk (its layer's quota group);
 * -ENOENT for a sandbox without a limited layer (made before disk limits, or killed). */
int sandbox_disk_used(struct engine *eng, const struct sandbox_rec *rec, int64_t *ret_bytes);

/* Makes a new sandbox's directories and its layer (limited to rec->disk_mb on the disk
 * volume, or unlimited in its directory): for create, and for files moved here by drain. */
int sandbox_make_dirs(struct engine *eng, const struct sandbox_rec *rec, struct error *e);

/* The directory holding rec's upper/ and work/ dirs (its layer); ENOMEDIUM when its layer is
 * on a disk volume this engine does not mount. */
int sandbox_layer_dir(struct engine *eng, const struct sandbox_rec *rec, char *out, size_t n, struct error *e);

/* Whether the sandbox's agent accepts a connection on its socket now: a cheap sign of life
 * (a dead agent leaves nobody listening). */
bool sandbox_agent_listens(struct engine *eng, const char *id);

/* Paths of a sandbox's parts. */
void sandbox_dir(struct engine *eng, const char *id, char *out, size_t n);
void sandbox_socket_path(struct engine *eng, const char *id, char *out, size_t n);

/* Tears down every host-side part of a sandbox that exists (container, network, overlay,
 * directories, its layer on the disk volume, cgroups). ip: the address to give back to the pool, or NULL. Failures are
 * logged and teardown goes on. */
void sandbox_teardown(struct engine *eng, const char *id, const char *ip);

/* For create and resume, with the sandbox's lock held and its directories made: mounts the
 * overlay (template as lowerdir, the sandbox's upper dir), takes a network slot (its address
 * goes to rec->ip and, before the container starts, to the store), starts the container and
 * waits for its agent's health check. On failure it stops what it started, gives the address
 * back and clears rec->ip; the directories are kept. */
int sandbox_start_parts(struct engine *eng, struct sandbox_rec *rec, struct error *e);

/* Marks the address of rec's container, found alive, as used, and gives the network its
 * rules again (its DNS, its domain rules): for a restarted engine. */
void sandbox_net_adopt(struct engine *eng, const struct sandbox_rec *rec);

/* The container of rec (a runtime with checkpoint) started again from image_dir, on the
 * network slot and overlay it kept (its address given back to its interface first), and
 * its agent listening again and healthy. On failure a container may be left: destroy it. */
int sandbox_restore_container(struct engine *eng, const struct sandbox_rec *rec, const char *image_dir, struct error *e);

/* The size in bytes of the checkpoint image of a sandbox paused with its memory on a runtime
 * that checkpoints (pause.c), 0 when it has none on this host. */
long long sandbox_image_bytes(struct engine *eng, const char *id);

/* Before a checkpoint: tells the agent to close its socket and every connection on it
 * (SIGUSR1, agent/main.c) and waits until it has. sandbox_agent_wake (SIGUSR2) has it
 * listen again and waits for its health check: after a checkpoint that failed. */
int sandbox_agent_quiet(struct engine *eng, const struct sandbox_rec *rec, struct error *e);
int sandbox_agent_wake(struct engine *eng, const struct sandbox_rec *rec, struct error *e);

/* Stops everything that runs or holds host resources (container, network slot, overlay
 * mount, cgroups) but keeps the sandbox's directories. ip: the address to give back to the
 * pool, or NULL (when it is not this engine's to give: at reconcile). Failures are logged
 * and stopping goes on. */
void sandbox_stop_parts(struct engine *eng, const char *id, const char *ip);

/* The engine's runtime of kind ("runc", "gvisor"; "" or NULL: the engine's default), or NULL
 * with e set (409-like: the engine has no such runtime installed). */
struct runtime *sandbox_runtime(struct engine *eng, const char *kind, struct error *e);

/* The status of the container of rec on its runtime; a runtime this engine does not have
 * reports it missing. */
int sandbox_container_status(struct engine *eng, const struct sandbox_rec *rec, enum container_status *ret, pid_t *ret_pid,
                             struct error *e);

/* Kills a sandbox the reaper found expired at now, if it still is once its lock is held:
 * running and past its sandbox_end_at (its deadline if it has one, else its idle limit).
 * One idle with a stream open is touched instead (an open stream is activity). 0 when
 * nothing was to do. */
int sandbox_reap(struct engine *eng, const char *id, int64_t now, struct error *e);

/* Starts the reaper thread (deadlines, idle timeouts, purge of old tombstones). */
/* Keeps every sandbox's agent.log under its cap (agentlog.c); called by the reaper. */
void agentlog_rotate_all(struct engine *eng);

int reaper_start(struct engine *eng, struct error *e);
void reaper_stop(struct engine *eng);

/* Brings the host in line with the store after a start, for this node's sandboxes only:
 * re-adopts live containers (those another node marked "node NAME lost" too), marks
 * sandboxes whose container vanished as error, removes every orphaned part (a part of a
 * sandbox live on any node is kept). */
int reconcile(struct engine *eng, struct error *e);

/* For a running engine, from the reaper after it renewed the lease: this node's sandboxes
 * that another node marked lost (this node missed its heartbeats: a stall, the database out
 * of reach) go back to running when their container still runs, else to error. */
void reconcile_lost(struct engine *eng);
