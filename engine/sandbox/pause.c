/* pause.c — pause and resume (see sandbox.h), and how a restarted engine finishes them.
 *
 * A pause that keeps the filesystem (the default) stops the container and gives back
 * everything that holds CPU, RAM or an address: container and its processes, cgroups, the
 * overlay mount, the network slot. It keeps the sandbox's directories: the overlay's upper
 * dir is the sandbox's whole filesystem (/home, /tmp, /etc, installed packages). Resume
 * mounts the same upper dir again and starts a new container on it with the code path of
 * create (sandbox_start_parts): a fresh address and a fresh agent, so a fresh code kernel.
 * A pause that keeps memory freezes the container instead (cgroup freezer) and resume
 * thaws it: its processes continue where they were, and it holds its RAM and address
 * throughout.
 *
 * Every transition runs under the sandbox's lock and is written to the store before the
 * runtime is asked for anything (pausing, resuming, with the pause's kind) and after
 * (paused, running). sandbox_pause_reconcile, called at engine start, finishes a pause
 * that was interrupted and finishes or rolls back a resume; every path ends in running or
 * paused, and none removes the sandbox's directories.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/node.h"
#include "log.h"
#include "sandbox/agent_client.h"
#include "sandbox/sandbox.h"
#include "timeutil.h"

#define HEALTH_TIMEOUT_MS 10000

/* Writes rec (already changed by the caller) to the store; on failure the caller's error
 * says what could not be recorded. */
static int record(struct engine *eng, const struct sandbox_rec *rec, struct error *e) {
        int r = store_sandbox_update(eng->store, rec, e);

        if (r < 0)
                error_wrap(e, "cannot record that sandbox %s is %s", rec->id, sandbox_state_to_string(rec->state));
        return r;
}

/* The end state of every pause that keeps files only. ip: as for sandbox_stop_parts. */
static int finish_files_pause(struct engine *eng, struct sandbox_rec *rec, const char *ip, struct error *e) {
        sandbox_stop_parts(eng, rec->id, ip);
        rec->state = SANDBOX_PAUSED;
        rec->pause_kind = PAUSE_FILESYSTEM;
        rec->ip[0] = 0;
        rec->deadline = 0;
        return record(eng, rec, e);
}

static int pause_files(struct engine *eng, struct sandbox_rec *rec, struct error *e) {
        int r;

        rec->state = SANDBOX_PAUSING;
        rec->pause_kind = PAUSE_FILESYSTEM;
        r = record(eng, rec, e);
        if (r < 0)
                return r;
        /* The address is this engine's to give back: pausing was recorded with it. */
        return finish_files_pause(eng, rec, rec->ip, e);
}

static int pause_memory(struct engine *eng, struct sandbox_rec *rec, struct error *e) {
        int r;

        rec->state = SANDBOX_PAUSING;
        rec->pause_kind = PAUSE_MEMORY;
        r = record(eng, rec, e);
        if (r < 0)
                return r;
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, e);

        r = rt ? rt->ops->freeze(rt, rec->id, e) : -ENOENT;
        if (r < 0) {
                rec->state = SANDBOX_RUNNING;
                rec->pause_kind = PAUSE_NONE;
                sandbox_save_or_warn(eng, rec);
                return error_wrap(e, "cannot freeze sandbox %s", rec->id);
        }
        rec->state = SANDBOX_PAUSED;
        rec->deadline = 0;
        return record(eng, rec, e);
}

int sandbox_pause(struct engine *eng, int64_t team_id, const char *id, bool keep_memory, struct sandbox_rec *ret, struct error *e) {
        int64_t t0 = mono_ms();
        int r;

        sandbox_lock(eng, id);
        r = sandbox_get_local(eng, team_id, id, ret, e);
        if (r < 0)
                goto out;
        switch (ret->state) {
        case SANDBOX_PAUSED:
                break; /* a harmless repeat, whatever kind was asked for */
        case SANDBOX_RUNNING:
                r = keep_memory ? pause_memory(eng, ret, e) : pause_files(eng, ret, e);
                if (r >= 0)
                        log_info("paused %s (%s) in %lld ms", id, pause_kind_to_string(ret->pause_kind),
                                 (long long) (mono_ms() - t0));
                break;
        case SANDBOX_PAUSING:
        case SANDBOX_RESUMING:
                /* Only seen here when recording a transition's end failed: whatever runs is
                 * stopped and the files are kept, which is always a consistent end. The
                 * address may have been given back already: it is kept out of the pool
                 * until the next start rather than risk handing it out twice. */
                r = finish_files_pause(eng, ret, NULL, e);
                break;
        case SANDBOX_ERROR:
                r = error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s is in error, it cannot be paused (kill it): %s", id, ret->error);
                break;
        default:
                r = error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s is %s: only a running sandbox can be paused", id,
                              sandbox_state_to_string(ret->state));
        }
        if (r < 0)
                sandbox_rec_done(ret);
out:
        sandbox_unlock(eng, id);
        return r;
}

/* The end state of every resume. */
static int finish_resume(struct engine *eng, struct sandbox_rec *rec, struct error *e) {
        rec->state = SANDBOX_RUNNING;
        rec->pause_kind = PAUSE_NONE;
        rec->last_activity = now_ms();
        rec->deadline = rec->timeout > 0 ? rec->last_activity + rec->timeout * 1000 : 0;
        return record(eng, rec, e);
}

/* A new container on the kept upper dir. */
static int resume_files(struct engine *eng, struct sandbox_rec *rec, int64_t timeout, struct error *e) {
        int64_t old_timeout = rec->timeout;
        int r;

        rec->state = SANDBOX_RESUMING;
        if (timeout > 0)
                rec->timeout = timeout;
        r = store_sandbox_update_capped(eng->store, rec, eng->cfg.max_running, e);
        if (r < 0)
                return error_wrap(e, "cannot resume sandbox %s", rec->id);
        r = sandbox_start_parts(eng, rec, e);
        if (r < 0) {
                error_wrap(e, "cannot resume sandbox %s", rec->id);
                log_warn("%s; it stays paused", e->message);
                rec->state = SANDBOX_PAUSED;
                rec->timeout = old_timeout;
                sandbox_save_or_warn(eng, rec);
                return r;
        }
        rec->started_at = now_ms();
        return finish_resume(eng, rec, e);
}

/* The frozen container thawed. It counts against the cap already: no check. */
static int resume_memory(struct engine *eng, struct sandbox_rec *rec, int64_t timeout, struct error *e) {
        struct error thaw = {0};
        int r;

        rec->state = SANDBOX_RESUMING;
        if (timeout > 0)
                rec->timeout = timeout;
        r = record(eng, rec, e);
        if (r < 0)
                return r;
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, &thaw);

        if (rt && rt->ops->thaw(rt, rec->id, &thaw) >= 0)
                return finish_resume(eng, rec, e);
        /* The container cannot continue (it died while frozen?): start a new one on the
         * same files, as after a pause that kept only those. */
        log_warn("%s; starting %s again on its files, its memory is lost", thaw.message, rec->id);
        r = finish_files_pause(eng, rec, rec->ip, e);
        return r < 0 ? r : resume_files(eng, rec, 0, e);
}

int sandbox_resume(struct engine *eng, int64_t team_id, const char *id, int64_t timeout, struct sandbox_rec *ret, struct error *e) {
        int64_t t0 = mono_ms();
        int r;

        sandbox_lock(eng, id);
        r = sandbox_get_local(eng, team_id, id, ret, e);
        if (r < 0)
                goto out;
        switch (ret->state) {
        case SANDBOX_RUNNING:
                break; /* a harmless repeat */
        case SANDBOX_PAUSED:
                r = ret->pause_kind == PAUSE_MEMORY ? resume_memory(eng, ret, timeout, e) : resume_files(eng, ret, timeout, e);
                if (r >= 0) {
                        log_info("resumed %s (ip %s) in %lld ms", id, ret->ip, (long long) (mono_ms() - t0));
                        node_refresh(eng);
                }
                break;
        case SANDBOX_ERROR:
                r = error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s is in error, it cannot be resumed (kill it): %s", id, ret->error);
                break;
        default:
                r = error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s is %s: only a paused sandbox can be resumed", id,
                              sandbox_state_to_string(ret->state));
        }
        if (r < 0)
                sandbox_rec_done(ret);
out:
        sandbox_unlock(eng, id);
        return r;
}

/* -- after a restart ------------------------------------------------------------------ */

static enum container_status container_status(struct engine *eng, const struct sandbox_rec *rec) {
        enum container_status st = CONTAINER_MISSING;
        struct error e = {0};
        pid_t pid;

        if (sandbox_container_status(eng, rec, &st, &pid, &e) < 0) {
                log_warn("%s, treating %s as stopped", e.message, rec->id);
                return CONTAINER_MISSING;
        }
        return st;
}

static bool agent_healthy(struct engine *eng, const char *id) {
        char sock[4200];
        json_t *answer = NULL;
        long status = 0;
        int r;

        sandbox_socket_path(eng, id, sock, sizeof(sock));
        r = agent_call(sock, "GET", "/health", NULL, HEALTH_TIMEOUT_MS, &answer, &status, NULL);
        json_decref(answer);
        return r >= 0 && status == 200;
}

/* Marks the address of a container found alive as used, as for a running sandbox. */
static void adopt_address(struct engine *eng, const struct sandbox_rec *rec) {
        sandbox_net_adopt(eng, rec);
}

/* A memory pause's container is there, frozen or not: freeze it and keep it. */
static int keep_frozen(struct engine *eng, struct sandbox_rec *rec, enum container_status st) {
        struct error e = {0};

        if (st != CONTAINER_RUNNING && st != CONTAINER_PAUSED)
                return -ENOENT;
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, &e);

        if (st == CONTAINER_RUNNING && (!rt || rt->ops->freeze(rt, rec->id, &e) < 0)) {
                log_warn("%s", e.message);
                return -EIO;
        }
        adopt_address(eng, rec);
        rec->state = SANDBOX_PAUSED;
        rec->pause_kind = PAUSE_MEMORY;
        rec->deadline = 0;
        return 0;
}

void sandbox_pause_reconcile(struct engine *eng, struct sandbox_rec *rec) {
        enum sandbox_state was = rec->state;
        enum container_status st = CONTAINER_MISSING;
        const char *what;
        struct error e = {0};
        int r;

        if (rec->pause_kind == PAUSE_MEMORY || was == SANDBOX_RESUMING)
                st = container_status(eng, rec);
        if (was == SANDBOX_RESUMING && st == CONTAINER_RUNNING && agent_healthy(eng, rec->id)) {
                adopt_address(eng, rec);
                if (rec->pause_kind != PAUSE_MEMORY)
                        rec->started_at = now_ms();
                r = finish_resume(eng, rec, &e);
                what = "finished its resume";
        } else if (rec->pause_kind == PAUSE_MEMORY && keep_frozen(eng, rec, st) >= 0) {
                r = record(eng, rec, &e);
                what = was == SANDBOX_PAUSING ? "finished its pause (memory kept)"
                       : was == SANDBOX_RESUMING ? "rolled back its resume (memory kept)"
                                                 : NULL;
        } else {
                /* Everything else ends as a pause that keeps the files: whatever was started
                 * is stopped. The address is not this engine's to give back (nothing marked
                 * it used since the start), hence NULL. */
                if (rec->pause_kind == PAUSE_MEMORY)
                        log_warn("%s: its frozen container is gone or cannot be frozen; it keeps its files, not its memory", rec->id);
                r = finish_files_pause(eng, rec, NULL, &e);
                what = was == SANDBOX_PAUSING ? "finished its pause" : was == SANDBOX_RESUMING ? "rolled back its resume" : NULL;
        }
        if (r < 0)
                log_warn("%s, ignoring", e.message);
        else if (what)
                log_info("%s: %s after a restart, now %s", rec->id, what, sandbox_state_to_string(rec->state));
}
