/* drain-watch.c — `ai2ind node drain NAME [SECONDS] [--running pause-move-resume]`, the
 * operator's side of drain (issue 14): sets NAME draining (evacuating, with --running) in the
 * store, then watches the store while NAME's engine moves its paused sandboxes (and pauses,
 * moves and resumes its running ones: drain.c), printing each one as its owner changes, until
 * none is left or SECONDS (600) pass. The CLI needs no connection to any engine: the store is the truth, and
 * the moves go on if the CLI is stopped (drain is a state, not a session).
 */
#include "cluster/drain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strv.h"
#include "timeutil.h"

/* How long a sandbox moved while running may stay paused on its target before the CLI says
 * that its resume there failed (the node resumes it right after the move). */
#define RESUME_GRACE_MS 30000

struct seen {
        const char *node;
        bool running_too;   /* --running pause-move-resume */
        struct strv files;  /* paused with files only: to move */
        struct strv memory; /* paused with memory: cannot move */
        struct strv running; /* running (seen so): to pause, move and resume */
        int64_t *since;     /* for each of running: mono ms it was first seen paused on its target, or 0 */
};

static bool has(const struct strv *v, const char *id) {
        for (size_t i = 0; i < v->n; i++)
                if (streq(v->v[i], id))
                        return true;
        return false;
}

static int collect(void *data, const struct sandbox_rec *r) {
        struct seen *s = data;
        struct strv *v = r->state == SANDBOX_RUNNING ? &s->running : r->pause_kind != PAUSE_FILESYSTEM ? &s->memory : &s->files;
        int64_t *since;

        /* Once in a list, a sandbox stays there: a running one paused for its move is not
         * one more paused sandbox. */
        if (has(&s->files, r->id) || has(&s->memory, r->id) || has(&s->running, r->id))
                return 0;
        if (v == &s->running) {
                since = realloc(s->since, (s->running.n + 1) * sizeof(*since));
                if (!since)
                        return -ENOMEM;
                s->since = since;
                s->since[s->running.n] = 0;
        }
        return strv_push(v, strdup(r->id)) < 0 ? -ENOMEM : 0;
}

/* Whether running sandbox i is done with (said so), for scan. */
static bool running_done(struct seen *s, size_t i, const struct sandbox_rec *rec) {
        const char *id = s->running.v[i];
        bool moved = !streq(rec->node, s->node);

        /* Between two states (being paused for its move, being resumed on its target):
         * looked at again at the next scan. */
        if (rec->state == SANDBOX_PAUSING || rec->state == SANDBOX_RESUMING)
                return false;
        if (moved && rec->state == SANDBOX_RUNNING) {
                printf("  paused %s, moved it to node %s and resumed it there\n", id, rec->node);
                return true;
        }
        if (moved && rec->state == SANDBOX_PAUSED) {
                if (!s->since[i])
                        s->since[i] = mono_ms();
                if (mono_ms() - s->since[i] < RESUME_GRACE_MS)
                        return false;
                printf("  paused %s and moved it to node %s, which did not resume it: it is paused there (see the nodes' "
                       "logs; a resume through the API starts it)\n",
                       id, rec->node);
                return true;
        }
        if (moved || (rec->state != SANDBOX_RUNNING && rec->state != SANDBOX_PAUSED)) {
                printf("  %s is %s now, on %s: not moved\n", id, sandbox_state_to_string(rec->state), rec->node);
                return true;
        }
        return false; /* still here: not paused yet, or paused and waiting for its move */
}

/* Whether running sandbox i is done with; -errno when its row cannot be read. */
static int scan_running(struct store *st, struct seen *s, size_t i, struct error *e) {
        struct sandbox_rec rec;
        bool done;
        int r = store_sandbox_get(st, s->running.v[i], &rec, e);

        if (r == -ENOENT) {
                printf("  %s is gone (its row was purged): not moved\n", s->running.v[i]);
                return 1;
        }
        if (r < 0)
                return r;
        done = running_done(s, i, &rec);
        sandbox_rec_done(&rec);
        return done;
}

/* Adds the node's paused (and, with running_too, running) sandboxes not seen yet; *ret_left
 * gets how many of them remain to move. */
static int scan(struct store *st, struct seen *s, size_t *ret_left, struct error *e) {
        struct sandbox_filter f = {.team_id = -1,
                                   .state_mask = 1u << SANDBOX_PAUSED | (s->running_too ? 1u << SANDBOX_RUNNING : 0),
                                   .node = s->node};
        size_t before = s->files.n;
        int r = store_sandbox_foreach(st, &f, collect, s, e);

        if (r < 0)
                return r;
        if (s->files.n > before && before > 0)
                printf("  %zu more paused since: to move too\n", s->files.n - before);
        *ret_left = 0;
        for (size_t i = 0; i < s->running.n; i++) {
                if (!s->running.v[i][0])
                        continue; /* reported */
                r = scan_running(st, s, i, e);
                if (r < 0)
                        return r;
                if (r)
                        s->running.v[i][0] = 0;
                else
                        (*ret_left)++;
        }
        for (size_t i = 0; i < s->files.n; i++) {
                char *id = s->files.v[i];
                struct sandbox_rec rec;
                bool done = true;

                if (!id[0])
                        continue; /* reported */
                r = store_sandbox_get(st, id, &rec, e);
                if (r == -ENOENT)
                        printf("  %s is gone (its row was purged): not moved\n", id);
                else if (r < 0)
                        return r;
                else if (!streq(rec.node, s->node))
                        printf("  moved %s to node %s\n", id, rec.node);
                else if (rec.state != SANDBOX_PAUSED)
                        printf("  %s is %s now, on %s: not moved\n", id, sandbox_state_to_string(rec.state), s->node);
                else
                        done = false;
                if (r >= 0)
                        sandbox_rec_done(&rec);
                if (done)
                        id[0] = 0;
                else
                        (*ret_left)++;
        }
        fflush(stdout);
        return 0;
}

static int watch(struct store *st, struct seen *s, int64_t seconds, struct error *e) {
        int64_t until = mono_ms() + seconds * 1000;
        size_t left = 0;
        int r;

        for (;;) {
                struct node_rec n;
                if ((r = scan(st, s, &left, e)) < 0)
                        return r;
                if (left == 0)
                        break;
                if ((r = store_node_get(st, s->node, &n, e)) < 0)
                        return r;
                if (n.state != (s->running_too ? NODE_EVACUATING : NODE_DRAINING))
                        return error_set(e, ECANCELED, ERR_CONFLICT, "node %s is %s now: the drain stopped with %zu sandboxes left",
                                         s->node, node_state_to_string(n.state), left);
                if (n.lease_until < now_ms())
                        return error_set(e, EHOSTDOWN, ERR_NODE_DOWN,
                                         "node %s is down: %zu sandboxes wait there (it goes on draining once it is back)",
                                         s->node, left);
                if (mono_ms() >= until)
                        return error_set(e, ETIMEDOUT, ERR_UNAVAILABLE,
                                         "%zu sandboxes are still on node %s after %llds (see its log; it goes on draining)",
                                         left, s->node, (long long) seconds);
                nanosleep(&(struct timespec){.tv_nsec = 500 * 1000000L}, NULL);
        }
        printf("node %s drained: no %s sandbox left to move; it takes no new sandboxes (`ai2ind node uncordon %s` takes it "
               "back)\n",
               s->node, s->running_too ? "running or paused" : "paused", s->node);
        return 0;
}

int drain_watch(struct store *st, const char *node, int64_t seconds, bool running, struct error *e) {
        struct seen s = {.node = node, .running_too = running};
        size_t left = 0;
        int r;

        r = store_node_set_state(st, node, running ? NODE_EVACUATING : NODE_DRAINING, e);
        if (r == -ENOENT)
                return error_set(e, ENOENT, ERR_NOT_FOUND, "no node %s in the store (see `ai2ind node list`)", node);
        if (r < 0)
                return r;
        printf("node %s is draining: it takes no new sandboxes, and its paused sandboxes move to other nodes%s\n", node,
               running ? "; its running ones are paused, moved and resumed there" : "");
        r = scan(st, &s, &left, e);
        if (r >= 0) {
                if (running)
                        printf("  %zu running to pause, move and resume\n", s.running.n);
                printf("  %zu paused with their files to move\n", s.files.n);
                if (s.memory.n > 0)
                        printf("  %zu paused with their memory stay (resume and pause them without keep_memory to move them)\n",
                               s.memory.n);
                fflush(stdout);
                r = watch(st, &s, seconds, e);
        }
        strv_done(&s.files);
        strv_done(&s.memory);
        strv_done(&s.running);
        free(s.since);
        return r;
}
