/* reaper.c — one thread that kills sandboxes past their end_at (sandbox_end_at): their hard
 * deadline if they have one, active or not; else idle for longer than their idle timeout
 * (unless a stream is open on them). It also purges day-old tombstones of killed sandboxes.
 * Paused sandboxes are never touched: the store query selects running ones, and
 * sandbox_reap checks again under the sandbox's lock (a pause may come in between). Only this
 * node's sandboxes are reaped (cluster/node.h). Every few seconds it also keeps the agents'
 * logs under their cap (agentlog.c), and every third of node-lease seconds it renews this
 * node's lease, marks the sandboxes of lost nodes, and takes back its own if they were marked
 * lost while it was stalled. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/node.h"
#include "log.h"
#include "sandbox/sandbox.h"
#include "timeutil.h"

#define TOMBSTONE_MS (24LL * 3600 * 1000)
#define AGENTLOG_EVERY_MS 5000

static pthread_mutex_t stop_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond = PTHREAD_COND_INITIALIZER;

static void reap_pass(struct engine *eng) {
        /* A database that stays unreachable (PostgreSQL) fails every pass: say so when it
         * starts and when it ends, not once a second. Only the reaper thread touches it. */
        static bool store_failing = false;
        struct error e = {0};
        int64_t now = now_ms();
        char **ids = NULL;
        unsigned n = 0;

        if (store_sandbox_expired(eng->store, eng->cfg.node_name, now, &ids, &n, &e) < 0) {
                if (!store_failing || e.status != 503)
                        log_warn("reaper: %s%s", e.message, e.status == 503 ? " (reaping resumes when it is back)" : "");
                store_failing = e.status == 503;
                return;
        }
        if (store_failing)
                log_info("reaper: the state store answers again");
        store_failing = false;
        for (unsigned i = 0; i < n; i++) {
                if (sandbox_reap(eng, ids[i], now, &e) < 0)
                        log_warn("reaper: %s", e.message);
                free(ids[i]);
        }
        free(ids);
        if (store_sandbox_purge(eng->store, now - TOMBSTONE_MS, &e) < 0)
                log_warn("reaper: %s", e.message);
}

static void *reaper_main(void *arg) {
        struct engine *eng = arg;
        int64_t logs_at = 0, reap_at = 0;

        pthread_mutex_lock(&stop_mutex);
        while (!eng->stopping) {
                struct timespec ts;

                pthread_mutex_unlock(&stop_mutex);
                if (mono_ms() >= eng->lease_renew_at) {
                        /* Set first: a renewal that hangs on the database still leaves the next
                         * one its time. */
                        eng->lease_renew_at = mono_ms() + eng->cfg.node_lease * 1000 / 3;
                        node_renew_lease(eng);
                        reconcile_lost(eng);
                }
                if (mono_ms() >= reap_at) {
                        reap_at = mono_ms() + eng->cfg.reap_interval * 1000;
                        reap_pass(eng);
                }
                if (mono_ms() >= logs_at) {
                        agentlog_rotate_all(eng);
                        logs_at = mono_ms() + AGENTLOG_EVERY_MS;
                }
                pthread_mutex_lock(&stop_mutex);
                clock_gettime(CLOCK_REALTIME, &ts);
                /* A second: the lease is renewed on time whatever reap-interval says. */
                ts.tv_sec += 1;
                if (!eng->stopping)
                        pthread_cond_timedwait(&stop_cond, &stop_mutex, &ts);
        }
        pthread_mutex_unlock(&stop_mutex);
        return NULL;
}

int reaper_start(struct engine *eng, struct error *e) {
        int r = pthread_create(&eng->reaper, NULL, reaper_main, eng);

        if (r != 0)
                return error_set(e, r, ERR_INTERNAL, "cannot start the reaper: %s", strerror(r));
        eng->reaper_started = true;
        return 0;
}

void reaper_stop(struct engine *eng) {
        if (!eng->reaper_started)
                return;
        pthread_mutex_lock(&stop_mutex);
        eng->stopping = true;
        pthread_cond_broadcast(&stop_cond);
        pthread_mutex_unlock(&stop_mutex);
        pthread_join(eng->reaper, NULL);
        eng->reaper_started = false;
}
