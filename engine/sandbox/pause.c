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
 * throughout. On a runtime that can checkpoint (gVisor) it writes the container's memory
 * to an image in the sandbox's directory instead and the container goes (PAUSE_CHECKPOINT:
 * no CPU, no RAM, not in the running cap); the network slot and the overlay mount stay, so
 * resume restores the container on the same address and files. The agent closes its host
 * socket and its connections first (a checkpoint cannot save them) and listens again after
 * the restore, or after a checkpoint that failed: the sandbox then keeps running, with the
 * runtime's reason in a 409. When the container does not survive a failed checkpoint or a
 * restore fails, the sandbox starts again on its files (its memory is lost, as when a
 * frozen container cannot be thawed).
 *
 * Every transition runs under the sandbox's lock and is written to the store before the
 * runtime is asked for anything (pausing, resuming, with the pause's kind) and after
 * (paused, running). sandbox_pause_reconcile, called at engine start, finishes a pause
 * that was interrupted and finishes or rolls back a resume; every path ends in running or
 * paused, and none removes the sandbox's directories.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/node.h"
#include "fsutil.h"
#include "log.h"
#include "sandbox/agent_client.h"
#include "sandbox/sandbox.h"
#include "timeutil.h"

#define HEALTH_TIMEOUT_MS 10000
#define CHECKPOINT_FINISH_MS 120000 /* a checkpoint the engine left running, at a restart */

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

/* -- checkpoint (runtime_ops.checkpoint) ------------------------------------------------ */

static int finish_resume(struct engine *eng, struct sandbox_rec *rec, struct error *e);
static int resume_files(struct engine *eng, struct sandbox_rec *rec, int64_t timeout, struct error *e);

/* The image's directory, and the file that says it is whole (written once the checkpoint
 * succeeded: a checkpoint interrupted by a restart leaves none). */
static void image_dir(struct engine *eng, const char *id, char *out, size_t n) {
        char dir[4096];

        sandbox_dir(eng, id, dir, sizeof(dir));
        snprintf(out, n, "%s/checkpoint", dir);
}

static bool image_whole(struct engine *eng, const char *id) {
        char dir[4200], path[4300];
        struct stat st;

        image_dir(eng, id, dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/whole", dir);
        return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void image_remove(struct engine *eng, const char *id) {
        char dir[4200];
        int r;

        image_dir(eng, id, dir, sizeof(dir));
        r = rm_rf(dir);
        if (r < 0 && r != -ENOENT)
                log_warn_errno(-r, "cannot remove %s, ignoring", dir);
}

long long sandbox_image_bytes(struct engine *eng, const char *id) {
        static const char *const files[] = {"checkpoint.img", "pages.img", "pages_meta.img"};
        char dir[4200], path[4300];
        long long total = 0;
        struct stat st;

        image_dir(eng, id, dir, sizeof(dir));
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
                if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
                        total += (long long) st.st_size;
        }
        return total;
}

static int image_make(struct engine *eng, const char *id, char *out, size_t n, struct error *e) {
        image_remove(eng, id);
        image_dir(eng, id, out, n);
        if (mkdir(out, 0700) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot create %s: %s", out, strerror(errno));
        return 0;
}

static int image_mark_whole(const char *dir, struct error *e) {
        char path[4300];
        int fd;

        snprintf(path, sizeof(path), "%s/whole", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return 0;
}

/* After a checkpoint failed: the sandbox running as before (409 with the runtime's reason),
 * or, if its container did not survive, started again on its files (500 saying so). */
static int checkpoint_failed(struct engine *eng, struct sandbox_rec *rec, struct runtime *rt, struct error *e) {
        char reason[512];
        struct error again = {0};
        enum container_status st = CONTAINER_MISSING;
        pid_t pid;

        snprintf(reason, sizeof(reason), "%s", e->message);
        image_remove(eng, rec->id);
        if (rt->ops->status(rt, rec->id, &st, &pid, &again) == 0 && st == CONTAINER_RUNNING &&
            sandbox_agent_wake(eng, rec, &again) >= 0) {
                rec->state = SANDBOX_RUNNING;
                rec->pause_kind = PAUSE_NONE;
                sandbox_save_or_warn(eng, rec);
                return error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s cannot be paused with its memory, it keeps running: %s", rec->id,
                                 reason);
        }
        log_warn("%s: its container did not survive a failed checkpoint (%s); starting it again on its files, its memory is lost",
                 rec->id, reason);
        rt->ops->destroy(rt, rec->id, &again);
        if (finish_files_pause(eng, rec, rec->ip, &again) < 0 || resume_files(eng, rec, 0, &again) < 0)
                return error_set(e, EIO, ERR_INTERNAL, "sandbox %s could not be checkpointed (%s) and not started again: %s", rec->id,
                                 reason, again.message);
        return error_set(e, EIO, ERR_INTERNAL, "sandbox %s could not be checkpointed (%s): it was started again on its files, its memory is lost",
                         rec->id, reason);
}

/* What the agent says a checkpoint cannot save (agent/checkpoint.h), joined with "; " into
 * out (truncated to n); "" when nothing, or when it cannot say (the checkpoint then tells).
 * The answer is the sandbox's: bounded by agent_call, only its strings are used. */
static void checkpoint_blockers(struct engine *eng, const char *id, char *out, size_t n) {
        char sock[4200];
        json_t *answer = NULL, *v;
        long status = 0;
        size_t i, len = 0;

        out[0] = 0;
        sandbox_socket_path(eng, id, sock, sizeof(sock));
        if (agent_call(sock, "GET", "/checkpoint/blockers", NULL, HEALTH_TIMEOUT_MS, &answer, &status, NULL) >= 0 && status == 200)
                json_array_foreach(json_object_get(answer, "blockers"), i, v) {
                        if (!json_is_string(v) || len >= n)
                                continue;
                        int k = snprintf(out + len, n - len, "%s%s", len ? "; " : "", json_string_value(v));
                        len = k < 0 ? n : len + (size_t) k;
                }
        json_decref(answer);
}

static int pause_checkpoint(struct engine *eng, struct sandbox_rec *rec, struct runtime *rt, struct error *e) {
        char dir[4200], blockers[512];
        int64_t t0 = mono_ms();
        int r;

        /* Refused before anything changes: a failed checkpoint leaves runsc's container dead. */
        checkpoint_blockers(eng, rec->id, blockers, sizeof(blockers));
        if (*blockers)
                return error_set(e, EBUSY, ERR_CONFLICT,
                                 "sandbox %s cannot be paused with its memory, it keeps running: a checkpoint cannot save %s "
                                 "(close them, or pause without keep_memory)",
                                 rec->id, blockers);
        rec->state = SANDBOX_PAUSING;
        rec->pause_kind = PAUSE_CHECKPOINT;
        r = record(eng, rec, e);
        if (r < 0)
                return r;
        r = image_make(eng, rec->id, dir, sizeof(dir), e);
        if (r >= 0)
                r = sandbox_agent_quiet(eng, rec, e);
        if (r >= 0)
                r = rt->ops->checkpoint(rt, rec->id, dir, e);
        if (r < 0)
                return checkpoint_failed(eng, rec, rt, e);
        r = image_mark_whole(dir, e);
        if (r < 0)
                return r; /* stays pausing: a restart's reconcile sees no whole image, the files are kept */
        log_info("checkpointed %s in %lld ms: image of %lld MiB", rec->id, (long long) (mono_ms() - t0),
                 sandbox_image_bytes(eng, rec->id) / (1024 * 1024));
        rec->state = SANDBOX_PAUSED;
        rec->deadline = 0;
        return record(eng, rec, e);
}

static int pause_memory(struct engine *eng, struct sandbox_rec *rec, struct error *e) {
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, e);
        int r;

        if (rt && rt->ops->checkpoint)
                return pause_checkpoint(eng, rec, rt, e);
        rec->state = SANDBOX_PAUSING;
        rec->pause_kind = PAUSE_MEMORY;
        r = record(eng, rec, e);
        if (r < 0)
                return r;
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

/* The container restored from its image; it counts against the cap again. When it cannot be,
 * it starts again on its files (its memory is lost), as resume_memory does. */
static int resume_checkpoint(struct engine *eng, struct sandbox_rec *rec, int64_t timeout, struct error *e) {
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, e);
        struct error restore = {0};
        char dir[4200];
        int r;

        rec->state = SANDBOX_RESUMING;
        if (timeout > 0)
                rec->timeout = timeout;
        r = store_sandbox_update_capped(eng->store, rec, eng->cfg.max_running, e);
        if (r < 0) {
                rec->state = SANDBOX_PAUSED;
                return error_wrap(e, "cannot resume sandbox %s", rec->id);
        }
        image_dir(eng, rec->id, dir, sizeof(dir));
        if (rt && image_whole(eng, rec->id) && sandbox_restore_container(eng, rec, dir, &restore) >= 0) {
                image_remove(eng, rec->id);
                return finish_resume(eng, rec, e);
        }
        log_warn("%s: cannot restore it (%s); starting it again on its files, its memory is lost", rec->id,
                 *restore.message ? restore.message : "no whole image");
        if (rt)
                rt->ops->destroy(rt, rec->id, &restore);
        image_remove(eng, rec->id);
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
                r = ret->pause_kind == PAUSE_MEMORY       ? resume_memory(eng, ret, timeout, e)
                    : ret->pause_kind == PAUSE_CHECKPOINT ? resume_checkpoint(eng, ret, timeout, e)
                                                          : resume_files(eng, ret, timeout, e);
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

/* A checkpoint's pause or resume, or its paused sandbox, after a restart: a container that
 * runs (a restore that got that far, or a checkpoint that never happened) is the sandbox if
 * its agent comes back; otherwise a whole image is; otherwise its files are. */
static void reconcile_checkpoint(struct engine *eng, struct sandbox_rec *rec) {
        enum sandbox_state was = rec->state;
        enum container_status st = container_status(eng, rec);
        struct runtime *rt = sandbox_runtime(eng, rec->runtime, NULL);
        const char *what = NULL;
        struct error e = {0};
        int r;

        /* runsc checkpoint runs on when the engine dies (spawn.h: a group of its own): once it
         * has begun its image, let it finish (the container then stops) rather than tell the
         * agent to listen again into a kernel that is being saved. */
        for (int64_t deadline = mono_ms() + CHECKPOINT_FINISH_MS;
             was == SANDBOX_PAUSING && st == CONTAINER_RUNNING && sandbox_image_bytes(eng, rec->id) > 0 && mono_ms() < deadline;
             st = container_status(eng, rec))
                usleep(100 * 1000);

        if (st == CONTAINER_RUNNING && (was == SANDBOX_RESUMING || !image_whole(eng, rec->id))) {
                adopt_address(eng, rec);
                if (sandbox_agent_wake(eng, rec, &e) >= 0) {
                        image_remove(eng, rec->id);
                        r = finish_resume(eng, rec, &e);
                        what = was == SANDBOX_RESUMING ? "finished its resume (memory restored)" : "rolled back its pause (it kept running)";
                        goto out;
                }
                log_warn("%s: %s; its container is stopped", rec->id, e.message);
                e = (struct error){0};
        }
        /* A checkpoint that finished after the engine died has no one to mark its image. One
         * that is bad after all fails its restore, which then starts the files. */
        if (was == SANDBOX_PAUSING && !image_whole(eng, rec->id) && sandbox_image_bytes(eng, rec->id) > 0 &&
            container_status(eng, rec) != CONTAINER_RUNNING) {
                char dir[4200];

                image_dir(eng, rec->id, dir, sizeof(dir));
                (void) image_mark_whole(dir, &e);
                e = (struct error){0};
        }
        if (rt)
                rt->ops->destroy(rt, rec->id, &e);
        if (image_whole(eng, rec->id)) {
                adopt_address(eng, rec);
                rec->state = SANDBOX_PAUSED;
                rec->deadline = 0;
                r = record(eng, rec, &e);
                what = was == SANDBOX_PAUSING ? "finished its pause (memory on disk)"
                       : was == SANDBOX_RESUMING ? "rolled back its resume (memory on disk)"
                                                 : NULL;
        } else {
                log_warn("%s: no whole checkpoint image; it keeps its files, not its memory", rec->id);
                image_remove(eng, rec->id);
                r = finish_files_pause(eng, rec, NULL, &e);
                what = "ended as a pause that keeps its files";
        }
out:
        if (r < 0)
                log_warn("%s, ignoring", e.message);
        else if (what)
                log_info("%s: %s after a restart, now %s", rec->id, what, sandbox_state_to_string(rec->state));
}

void sandbox_pause_reconcile(struct engine *eng, struct sandbox_rec *rec) {
        enum sandbox_state was = rec->state;
        enum container_status st = CONTAINER_MISSING;
        const char *what;
        struct error e = {0};
        int r;

        if (rec->pause_kind == PAUSE_CHECKPOINT) {
                reconcile_checkpoint(eng, rec);
                return;
        }

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
