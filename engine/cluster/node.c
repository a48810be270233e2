/* node.c — see node.h. The lease is an instant in the store (lease_until, Unix ms), written
 * by the node from its own clock and compared by the others with theirs: the nodes' clocks
 * must agree to well within the lease (NTP does; a lease is 15 s by default). A clean stop
 * leaves the row and lets the lease lapse: a restart within the lease is seen by nobody, and
 * a node that stays away is down either way. */
#include "cluster/node.h"
#include "cluster/placement.h"

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
        snprintf(n.advertise_preview, sizeof(n.advertise_preview), "%s", eng->cfg.advertise_preview);
        n.started_at = n.heartbeat_at = now;
        n.lease_until = now + lease_ms(eng);
        host_capacity(&n);
        n.capacity = placement_capacity(eng, n.memory_mb);
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

        return node_owner(eng, rec, &owner, e);
}

/* Node name's row, as read at most NODE_ROW_TTL_MS ago: a relayed request then costs one
 * store lookup fewer. A row that old is good enough to relay by: a node that died since is
 * not reached (503 node_down all the same), and one that came back is seen down for at most
 * that long. Only rows that were found are kept. */
static int node_row(struct engine *eng, const char *name, struct node_rec *ret, struct error *e) {
        struct node_rows *c = &eng->node_rows;
        int64_t now = mono_ms();
        size_t oldest = 0;
        int r;

        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < NODE_ROWS_CACHED; i++) {
                if (c->read_at[i] && now - c->read_at[i] <= NODE_ROW_TTL_MS && streq(c->rows[i].name, name)) {
                        *ret = c->rows[i];
                        pthread_mutex_unlock(&c->lock);
                        return 0;
                }
                if (c->read_at[i] < c->read_at[oldest])
                        oldest = i;
        }
        pthread_mutex_unlock(&c->lock);
        r = store_node_get(eng->store, name, ret, e);
        if (r < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        c->rows[oldest] = *ret;
        c->read_at[oldest] = now;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

int node_owner(struct engine *eng, const struct sandbox_rec *rec, struct node_rec *ret_owner, struct error *e) {
        struct node_rec owner;
        int64_t now = now_ms();
        int r;

        if (streq(rec->node, eng->cfg.node_name))
                return 0;
        r = node_row(eng, rec->node, &owner, e); /* sets e on a failure, not for -ENOENT */
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
        *ret_owner = owner;
        return error_set(e, EREMOTE, ERR_OTHER_NODE,
                         "sandbox %s is on node %s (%s), not on this node (%s): send the request to %s",
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
        /* Refused here only under a capacity an operator set: the default (memory over
         * default-memory-mb) only steers placement, and a lone engine takes what it is sent.
         * The figure is the last renewal's or create's: creates in flight at once on this node
         * may pass it by as many (the team cap, counted in the store, is the hard limit). */
        if (eng->cfg.node_capacity > 0 && self.running >= eng->cfg.node_capacity)
                return error_set(e, EAGAIN, ERR_NODE_FULL, "node %s is full: it runs %lld sandboxes, its capacity (node-capacity)",
                                 self.name, (long long) self.running);
        return 0;
}

void node_refresh(struct engine *eng) {
        struct error e = {0};
        int64_t now = now_ms();

        /* A failure leaves the figure of the last renewal, which the next one corrects. */
        if (store_node_renew(eng->store, eng->cfg.node_name, now, now + lease_ms(eng), &e) < 0)
                log_debug("node %s: cannot refresh its figures: %s, ignoring", eng->cfg.node_name, e.message);
}

/* HOST and PORT of a node's advertised URL http[s]://HOST[:PORT][/] (config.c checked its
 * form; PORT 80 or 443 when absent), and whether it is https. */
static int url_split(const char *url, char *host, size_t host_size, char *port, size_t port_size, bool *ret_tls,
                     struct error *e) {
        const char *p, *end;
        size_t n;

        *ret_tls = strncmp(url, "https://", 8) == 0;
        if (!*ret_tls && strncmp(url, "http://", 7) != 0)
                return error_set(e, EINVAL, ERR_NODE, "the node advertises '%.80s', not an http[s]:// URL", url);
        p = url + (*ret_tls ? 8 : 7);
        if (*p == '[') {
                end = strchr(p, ']');
                if (!end)
                        return error_set(e, EINVAL, ERR_NODE, "the node advertises '%.80s', not a URL", url);
                n = (size_t) (end - p - 1);
                p++;
                end++;
        } else {
                end = p + strcspn(p, ":/");
                n = (size_t) (end - p);
        }
        if (n == 0 || n >= host_size)
                return error_set(e, EINVAL, ERR_NODE, "the node advertises '%.80s', not a URL", url);
        memcpy(host, p, n);
        host[n] = 0;
        if (*end == ':') {
                n = strspn(end + 1, "0123456789");
                if (n == 0 || n >= port_size)
                        return error_set(e, EINVAL, ERR_NODE, "the node advertises '%.80s', not a URL", url);
                memcpy(port, end + 1, n);
                port[n] = 0;
        } else
                snprintf(port, port_size, *ret_tls ? "443" : "80");
        return 0;
}

int node_stream_open(const struct engine *eng, const struct node_rec *to, const char *peer, long connect_ms,
                     const struct agent_stream_request *q, int watch_fd, struct agent_stream **ret, struct error *e) {
        struct agent_stream_request tq = *q;
        char host[256], port[8];
        bool tls;
        int r;

        r = url_split(to->advertise, host, sizeof(host), port, sizeof(port), &tls, e);
        if (r < 0)
                return r;
        if (!tls && *eng->cfg.cluster_ca) {
                log_warn("not forwarding to %s: cluster-ca is set and it advertises a plain http:// URL", peer);
                return error_set(e, EPROTO, ERR_NODE,
                                 "%s advertises a plain http:// URL, but this node sends nothing to other nodes in plaintext "
                                 "(cluster-ca is set): that node must advertise https://",
                                 peer);
        }
        tq.tls = tls ? eng->cluster_tls : NULL;
        tq.pool = eng->node_conns;
        r = agent_stream_open_tcp(host, port, peer, connect_ms, &tq, watch_fd, ret, e);
        /* A peer that fails verification is an operator's problem (a wrong certificate, or
         * not the node it claims): said in the engine's log too, not only to the caller. */
        if (r < 0 && tls && e->err == EPROTO)
                log_warn("%s", e->message);
        return r;
}

bool node_lost_mark(struct engine *eng, const struct sandbox_rec *rec) {
        char want[sizeof(rec->error)];

        if (rec->state != SANDBOX_ERROR)
                return false;
        snprintf(want, sizeof(want), NODE_LOST_FMT, eng->cfg.node_name);
        return streq(rec->error, want);
}
