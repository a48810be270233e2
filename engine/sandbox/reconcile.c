/* reconcile.c — makes the host match the store when the engine starts.
 *
 * Only this node's sandboxes are decided on (cluster/node.h): another engine sharing the
 * store owns its own. Those that another node marked "node NAME lost" while this one was down
 * are treated as running (they are re-adopted if their container still runs); the same is
 * done for a running engine whose lease had lapsed (reconcile_lost). The cleanup keeps
 * every part of a sandbox live on ANY node: a part here that names one is never another
 * node's to lose (a host renamed keeps its sandboxes' files).
 *
 * Sandboxes outlive the engine process: a running container is re-adopted (its address is
 * marked used; its overlay, namespace and socket are still there). A sandbox whose container
 * is gone goes to `error` with the reason; a create that never finished is rolled back. A
 * pause or resume that never finished is finished or rolled back, and paused sandboxes are
 * checked (pause.c: sandbox_pause_reconcile). Then every part on the host that belongs to no
 * live sandbox is removed: containers under our runtime root, overlay mounts and directories,
 * layers on the disk volume (which main.c has mounted before this runs), sysfs mounts, namespaces, veths (net_remove_orphans) and cgroups, and every template version
 * that neither is current nor is recorded by a sandbox not killed (template/gc.c).
 *
 * Pooled sandboxes (pool.h) have no row: after a crash, everything of theirs is such a part.
 *
 * Only adoption marks an address used; nothing else gives one back here: the pool starts
 * empty, and an address a row still names may by now belong to a sandbox adopted earlier.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "cluster/node.h"
#include "disk/disk.h"
#include "fsutil.h"
#include "id.h"
#include "log.h"
#include "sandbox/sandbox.h"
#include "template/template.h"
#include "timeutil.h"

struct live {
        char **ids;
        unsigned n;
};

static int collect(void *data, const struct sandbox_rec *r) {
        struct live *l = data;
        char **more = realloc(l->ids, sizeof(char *) * (l->n + 1));

        if (!more)
                return 1;
        l->ids = more;
        l->ids[l->n] = strdup(r->id);
        if (l->ids[l->n])
                l->n++;
        return 0;
}

static bool is_live(const struct live *l, const char *id) {
        for (unsigned i = 0; i < l->n; i++)
                if (streq(l->ids[i], id))
                        return true;
        return false;
}

/* Decides the fate of one sandbox of this node the store says is creating, running, pausing,
 * resuming or paused, or that another node marked lost. */
static void reconcile_one(struct engine *eng, const char *id) {
        struct sandbox_rec rec;
        struct error e = {0};
        enum container_status st = CONTAINER_MISSING;
        pid_t pid;

        if (store_sandbox_get(eng->store, id, &rec, &e) < 0)
                return;
        /* Another node's (the caller asked for this node's: a row may change owner only at a
         * registration, never while this runs), or an error of its own that is not a loss. */
        if (!streq(rec.node, eng->cfg.node_name) || (rec.state == SANDBOX_ERROR && !node_lost_mark(eng, &rec))) {
                sandbox_rec_done(&rec);
                return;
        }
        if (rec.state != SANDBOX_CREATING && rec.state != SANDBOX_RUNNING && rec.state != SANDBOX_ERROR) {
                sandbox_pause_reconcile(eng, &rec);
                sandbox_rec_done(&rec);
                return;
        }
        if (sandbox_container_status(eng, &rec, &st, &pid, &e) < 0)
                log_warn("%s, treating %s as stopped", e.message, id);
        if (rec.state == SANDBOX_CREATING) {
                log_info("rolling back %s: its creation did not finish", id);
                sandbox_teardown(eng, id, NULL);
                sandbox_forget_or_warn(eng, id);
        } else if (st == CONTAINER_RUNNING) {
                sandbox_net_adopt(eng, &rec);
                log_info("re-adopted %s (pid %d, ip %s)%s", id, (int) pid, rec.ip,
                         rec.state == SANDBOX_ERROR ? ", which other nodes had marked lost" : "");
                if (rec.state == SANDBOX_ERROR) {
                        rec.state = SANDBOX_RUNNING;
                        rec.error[0] = 0;
                        sandbox_save_or_warn(eng, &rec);
                }
        } else {
                log_warn("%s: its container is gone; marking it as error", id);
                sandbox_teardown(eng, id, NULL);
                rec.state = SANDBOX_ERROR;
                snprintf(rec.error, sizeof(rec.error), "its container stopped while the engine was not running");
                rec.ip[0] = 0;
                sandbox_save_or_warn(eng, &rec);
        }
        sandbox_rec_done(&rec);
}

/* Removes every entry of dir whose name is not a live sandbox. */
static void remove_dead_dirs(struct engine *eng, const char *dir, const struct live *l) {
        DIR *d = opendir(dir);
        struct dirent *de;

        while (d && (de = readdir(d))) {
                char path[4400];
                if (de->d_name[0] == '.' || is_live(l, de->d_name))
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                log_info("removing orphaned %s", path);
                if (sandbox_id_valid(de->d_name))
                        sandbox_teardown(eng, de->d_name, NULL);
                else if (umount2(path, MNT_DETACH) == 0)
                        log_info("unmounted stray %s", path);
                rm_rf(path);
        }
        if (d)
                closedir(d);
}

static void remove_dead_containers(struct engine *eng, struct runtime *rt, const struct live *l) {
        struct error e = {0};
        char **ids = NULL;
        unsigned n = 0;

        if (rt->ops->list(rt, &ids, &n, &e) < 0)
                log_warn("%s, ignoring", e.message);
        for (unsigned i = 0; i < n; i++) {
                if (!is_live(l, ids[i])) {
                        log_info("removing orphaned %s container %s", rt->ops->name, ids[i]);
                        sandbox_teardown(eng, ids[i], NULL);
                }
                free(ids[i]);
        }
        free(ids);
}

/* Template versions are parts of the host too: those no sandbox records go (a build or import
 * that ran while sandboxes still used the old version left it). */
static void remove_unused_templates(struct engine *eng) {
        struct template_ctx c = {.dir = eng->cfg.template_dir, .state_dir = eng->cfg.state_dir, .uid_base = eng->cfg.uid_base,
                                 .store = eng->store};
        struct error e = {0};

        if (template_gc(&c, NULL, &e) < 0)
                log_warn("%s, ignoring", e.message);
}

/* Runs reconcile_one on every sandbox of this node in the states of mask. */
static int reconcile_states(struct engine *eng, unsigned mask, struct error *e) {
        struct sandbox_filter f = {.team_id = -1, .state_mask = mask, .node = eng->cfg.node_name};
        struct live todo = {0};
        int r = store_sandbox_foreach(eng->store, &f, collect, &todo, e);

        for (unsigned i = 0; i < todo.n; i++) {
                if (r >= 0)
                        reconcile_one(eng, todo.ids[i]);
                free(todo.ids[i]);
        }
        free(todo.ids);
        return r;
}

void reconcile_lost(struct engine *eng) {
        struct sandbox_filter f = {.team_id = -1, .state_mask = 1u << SANDBOX_ERROR, .node = eng->cfg.node_name};
        struct live todo = {0};
        struct error e = {0};

        if (store_sandbox_foreach(eng->store, &f, collect, &todo, &e) < 0)
                log_warn("cannot look for sandboxes marked lost: %s, ignoring", e.message);
        for (unsigned i = 0; i < todo.n; i++) {
                struct sandbox_rec rec;
                bool lost;

                sandbox_lock(eng, todo.ids[i]);
                lost = store_sandbox_get(eng->store, todo.ids[i], &rec, &e) >= 0;
                if (lost) {
                        lost = node_lost_mark(eng, &rec);
                        sandbox_rec_done(&rec);
                }
                if (lost) /* its address was never given back: adopting it again changes nothing */
                        reconcile_one(eng, todo.ids[i]);
                sandbox_unlock(eng, todo.ids[i]);
                free(todo.ids[i]);
        }
        free(todo.ids);
}

int reconcile(struct engine *eng, struct error *e) {
        const unsigned transitions = 1u << SANDBOX_PAUSING | 1u << SANDBOX_RESUMING;
        struct sandbox_filter f = {.team_id = -1};
        struct live live = {0};
        int r;

        /* Error rows too: those marked lost by another node. */
        r = reconcile_states(eng,
                             1u << SANDBOX_CREATING | 1u << SANDBOX_RUNNING | 1u << SANDBOX_PAUSED | 1u << SANDBOX_ERROR | transitions, e);
        if (r < 0)
                return r;

        /* What is live now: running and paused sandboxes keep their parts (and one whose
         * transition could not be recorded keeps its files), whichever node they are on. */
        f.state_mask = 1u << SANDBOX_RUNNING | 1u << SANDBOX_PAUSED | transitions;
        r = store_sandbox_foreach(eng->store, &f, collect, &live, e);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ENGINE_RUNTIMES; i++)
                if (eng->runtimes[i])
                        remove_dead_containers(eng, eng->runtimes[i], &live);
        remove_dead_dirs(eng, eng->sandboxes_dir, &live);
        if (eng->disk)
                remove_dead_dirs(eng, eng->disk->dir, &live);
        remove_dead_dirs(eng, eng->run_sandboxes_dir, &live);
        net_remove_orphans(eng->net, live.ids, live.n);
        runtime_cgroups_remove_orphans(eng->runtime, live.ids, live.n);
        remove_unused_templates(eng);
        log_info("reconciled: %u sandboxes live in the store (this node: %s)", live.n, eng->cfg.node_name);
        for (unsigned i = 0; i < live.n; i++)
                free(live.ids[i]);
        free(live.ids);
        return 0;
}
