/* node.c — see node.h. The lease is an instant in the store (lease_until, Unix ms), written
 * by the node from its own clock and compared by the others with theirs: the nodes' clocks
 * must agree to well within the lease (NTP does; a lease is 15 s by default). A clean stop
 * leaves the row and lets the lease lapse: a restart within the lease is seen by nobody, and
 * a node that stays away is down either way. */
#include "cluster/node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "timeutil.h"

static int64_t lease_ms(const struct engine *eng) {
        return eng->cfg.node_lease * 1000;
}

static void host_capacity(struct node_rec *n) {
        long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE), cpus = sysconf(_SC_NPROCESSORS_ONLN);

        n->memory_mb = pages > 0 && size > 0 ? (int64_t) pages * size / (1024 * 1024) : 0;
        n->cpus = cpus > 0 ? cpus : 0;
}

int node_register(struct engine *eng, struct error *e) {
        struct node_rec n = {0};
        int64_t now = now_ms(), adopted = 0;
        int r;

        snprintf(n.name, sizeof(n.name), "%s", eng->cfg.node_name);
        snprintf(n.advertise, sizeof(n.advertise), "%s", eng->cfg.advertise);
        n.started_at = n.heartbeat_at = now;
        n.lease_until = now + lease_ms(eng);
        host_capacity(&n);
        r = store_node_register(eng->store, &n, &adopted, e);
        if (r < 0)
                return error_wrap(e, "cannot register node %s", n.name);
        if (adopted > 0)
                log_info("node %s: took ownership of %lld sandboxes that had no node (or another name of this host)", n.name,
                         (long long) adopted);
        eng->lease_renew_at = mono_ms() + lease_ms(eng) / 3;
        return 0;
}

void node_renew_lease(struct engine *eng) {
        /* Said once when renewals start failing and once when they work again, not at every try. */
        static bool failing = false;
        struct error e = {0};
        int64_t now = now_ms(), lost = 0;
        int r;

        r = store_node_renew(eng->store, eng->cfg.node_name, now, now + lease_ms(eng), &e);
        if (r == -ENOENT) {
                log_warn("node %s: its row was removed from the store; registering again", eng->cfg.node_name);
                r = node_register(eng, &e);
        }
        if (r >= 0)
                r = store_nodes_mark_lost(eng->store, eng->cfg.node_name, now, &lost, &e);
        if (r < 0) {
                if (!failing)
                        log_warn("node %s: cannot renew its lease: %s (other nodes see it as down once %llds pass)",
                                 eng->cfg.node_name, e.message, (long long) eng->cfg.node_lease);
                failing = true;
                return;
        }
        if (failing)
                log_info("node %s: its lease is renewed again", eng->cfg.node_name);
        failing = false;
        if (lost > 0)
                log_warn("marked %lld running sandboxes of lost nodes as error (their nodes' leases lapsed)", (long long) lost);
}

int node_check_local(struct engine *eng, const struct sandbox_rec *rec, struct error *e) {
        struct node_rec owner;
        int64_t now = now_ms();
        int r;

        if (streq(rec->node, eng->cfg.node_name))
                return 0;
        r = store_node_get(eng->store, rec->node, &owner, e); /* sets e on a failure, not for -ENOENT */
        if (r == -ENOENT)
                return error_set(e, EHOSTDOWN, ERR_NODE_DOWN,
                                 "the sandbox's node %s is down (it is not registered): sandbox %s is unavailable until that node returns",
                                 rec->node, rec->id);
        if (r < 0)
                return r;
        if (owner.lease_until < now)
                return error_set(e, EHOSTDOWN, ERR_NODE_DOWN,
                                 "the sandbox's node %s is down (no heartbeat for %llds): sandbox %s is unavailable until that node returns",
                                 owner.name, (long long) ((now - owner.heartbeat_at) / 1000), rec->id);
        return error_set(e, EREMOTE, ERR_OTHER_NODE,
                         "sandbox %s is on node %s (%s), not on this node (%s): send the request to %s (nodes do not forward requests yet)",
                         rec->id, owner.name, owner.advertise, eng->cfg.node_name, owner.advertise);
}

int node_check_accepting(struct engine *eng, struct error *e) {
        struct node_rec self;
        int r = store_node_get(eng->store, eng->cfg.node_name, &self, e);

        if (r == -ENOENT)
                return error_set(e, ENOENT, ERR_UNAVAILABLE, "node %s is not registered in the store (it registers again within %llds)",
                                 eng->cfg.node_name, (long long) eng->cfg.node_lease);
        if (r < 0)
                return r;
        if (self.state != NODE_ACTIVE)
                return error_set(e, EAGAIN, ERR_NODE_CORDONED,
                                 "node %s is %s: it takes no new sandboxes (create on another node, or `ai2ind node uncordon %s`)",
                                 self.name, node_state_to_string(self.state), self.name);
        return 0;
}

bool node_lost_mark(struct engine *eng, const struct sandbox_rec *rec) {
        char want[sizeof(rec->error)];

        if (rec->state != SANDBOX_ERROR)
                return false;
        snprintf(want, sizeof(want), NODE_LOST_FMT, eng->cfg.node_name);
        return streq(rec->error, want);
}
