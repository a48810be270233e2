/* net.h — sandbox networking: one bridge per engine, and per sandbox a "slot": a network
 * namespace (a file bind-mounted under RUN/netns), a veth pair whose host end is an
 * isolated port of the bridge, and an address from the pool.
 *
 * Bridge port isolation keeps sandboxes from reaching each other; an INPUT rule keeps them
 * from reaching the host's services. The namespace is owned by the host's user namespace,
 * so root inside a sandbox cannot change its own address or routes.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct net;

struct net_slot {
        char netns_path[256];
        char veth[16];
        char ip[16];
};

/* Prepares the bridge (creating it if missing), the host firewall rule and the pool. */
int net_new(const char *bridge, const char *pool_cidr, const char *run_dir, struct net **ret, struct error *e);
void net_free(struct net *n);

/* Makes the namespace, veth and address for sandbox id. On failure nothing is left. */
int net_slot_acquire(struct net *n, const char *id, struct net_slot *ret, struct error *e);

/* Marks the slot of a sandbox found running at start-up as used. */
void net_slot_adopt(struct net *n, const char *id, const char *ip, struct net_slot *ret);

/* Fills the slot paths of id without touching anything (for teardown of what may exist). */
void net_slot_paths(struct net *n, const char *id, struct net_slot *ret);

/* Removes the veth and namespace and returns the address; missing parts are fine.
 * Failures are logged as warnings and teardown goes on. */
void net_slot_release(struct net *n, const struct net_slot *slot);

/* Removes namespaces and veths of this engine whose sandbox id is not in live (n_live). */
void net_remove_orphans(struct net *n, char **live, unsigned n_live);

/* Removes what net_new() left on the host for bridge: its two INPUT rules and the bridge
 * itself (missing parts are fine). -EBUSY (409) while sandboxes are attached to it, unless
 * force. For uninstalling, and for tests and benches that make a bridge of their own. */
int net_remove(const char *bridge, bool force, struct error *e);

/* Parses a listen address "HOST:PORT" (IPv4, or "localhost") into sa; name is the
 * setting's name, for the message. */
int net_parse_listen(const char *s, const char *name, struct sockaddr_in *sa, struct error *e);

/* Counts veths attached to this engine's bridge (for tests and diagnostics). */
int net_count_ports(struct net *n);
