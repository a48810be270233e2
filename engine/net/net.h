/* net.h — sandbox networking: one bridge per engine, and per sandbox a "slot": a network
 * namespace (a file bind-mounted under RUN/netns), a veth pair whose host end is an
 * isolated port of the bridge, an address from the pool, and a read-only sysfs of that
 * namespace mounted on RUN/sysfs/<id> (the sandbox's /sys: it lists the sandbox's own
 * network devices, lo and eth0, and not the host's or other sandboxes').
 *
 * IPv4 only: IPv6 is off in the namespace (all, default, lo, eth0), on the bridge and on the
 * veths' host ends. Bridge port isolation keeps sandboxes from reaching each other; the
 * engine's firewall rules (firewall.h) keep them from the host's services and from anything
 * beyond the bridge but the internet, and from that too unless they are allowed out.
 *
 * Allowed out or not is the half of the pool a sandbox's address comes from: the lower half
 * (with the gateway) goes out through NAT, the upper half does not. The rules are per half,
 * made at start, so a slot costs no firewall change and leaves none behind. The namespace is owned by the host's
 * user namespace, so root inside a sandbox can change none of this: not its addresses,
 * routes or links, nor the namespace's sysctls (IPv6 stays off).
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct net;

struct net_rules_job;

struct net_slot {
        char netns_path[256];
        char sysfs_path[256]; /* the sysfs of the namespace, for the sandbox's /sys */
        char veth[16];
        char ip[16];
        struct net_rules_job *job; /* net_slot_acquire's firewall work under way, or NULL */
};

struct net_config {
        const char *bridge;
        const char *pool;     /* IPv4 CIDR, prefix 8..28 */
        const char *run_dir;
        const char *dns;      /* upstream resolver; "": the host's (dns.h) */
        const char *deny_out; /* comma list of CIDRs (or addresses) no sandbox may reach; "" */
};

/* Prepares the bridge (creating it if missing; IPv6 off), the host firewall rules, the
 * pool, and net.ipv4.ip_forward (turned on, and said so in the log, if it was off: egress
 * needs it; the engine's forward chain decides what a sandbox may reach). */
int net_new(const struct net_config *c, struct net **ret, struct error *e);
void net_free(struct net *n);

/* A sandbox's rules of its own (network.allow_out, network.deny_out): IPv4 CIDRs, and in
 * allow_out domain patterns too (domains.h), as the API normalized them. */
struct net_rules {
        char **allow_out;
        unsigned n_allow_out;
        char **deny_out;
        unsigned n_deny_out;
};

/* Makes the namespace, veth, address and sysfs mount for sandbox id, its address from the
 * half of the pool that may go out (internet) or the other. A sandbox with rules of its own
 * (rules not NULL and not empty) takes its address from the other half whatever internet
 * says, and gets a chain of its own (firewall_sandbox_add), which net_slot_release removes.
 * That chain is made on a thread of its own while the caller starts the container (one
 * iptables-restore costs more than a create may add): the caller must call
 * net_slot_rules_wait before the sandbox is anybody's, and before releasing the slot. Until
 * then the sandbox reaches nothing beyond its gateway's DNS (its address is in the half
 * that is not let out): the wait costs time, never safety. On failure nothing is left. */
int net_slot_acquire(struct net *n, const char *id, bool internet, const struct net_rules *rules, struct net_slot *ret,
                     struct error *e);

/* Waits for slot's firewall work (net_slot_acquire), if any; its error if it failed (the slot
 * is then to be released as usual). e may be NULL. */
int net_slot_rules_wait(struct net *n, struct net_slot *slot, struct error *e);

/* The /etc/resolv.conf of every sandbox, into buf: the gateway (the engine's forwarder,
 * domains.h) as its nameserver, or a comment saying there is none (then lookups fail at once
 * rather than time out). */
void net_resolv_conf(struct net *n, char *buf, size_t size);

/* Gives the sandbox's interface in its namespace its address ip and default route again:
 * runsc takes them for its own network stack and removes them from the interface, and its
 * restore reads them there (runtime/runsc.c). */
int net_slot_readdress(struct net *n, const char *id, const char *ip, struct error *e);

/* Marks the slot of a sandbox found running at start-up (or paused with its memory) as
 * used, and notes its DNS and domain rules again (internet, rules: as for net_slot_acquire;
 * rules NULL for a slot about to be released). */
void net_slot_adopt(struct net *n, const char *id, const char *ip, bool internet, const struct net_rules *rules,
                    struct net_slot *ret);

/* Fills the slot paths of id without touching anything (for teardown of what may exist). */
void net_slot_paths(struct net *n, const char *id, struct net_slot *ret);

/* Removes the veth, the sysfs mount and the namespace and returns the address; missing
 * parts are fine.
 * Failures are logged as warnings and teardown goes on. */
void net_slot_release(struct net *n, const struct net_slot *slot);

/* Removes sysfs mounts, namespaces, veths and firewall chains of this engine whose sandbox id
 * is not in live (n_live); the chains of live ones are kept, and released with their slot. */
void net_remove_orphans(struct net *n, char **live, unsigned n_live);

/* Removes what net_new() left on the host for bridge: its firewall rules and chain
 * (firewall_remove) and the bridge itself (missing parts are fine). -EBUSY (409) while sandboxes are attached to it, unless
 * force. For uninstalling, and for tests and benches that make a bridge of their own. */
int net_remove(const char *bridge, bool force, struct error *e);

/* An IPv4 CIDR or address (s, len bytes) as "A.B.C.D/N" with the host bits cleared, into out;
 * -EINVAL if it is neither. */
int net_cidr_normalize(const char *s, size_t len, char out[20]);

/* Parses a listen address "HOST:PORT" (IPv4, or "localhost") into sa; name is the
 * setting's name, for the message. */
int net_parse_listen(const char *s, const char *name, struct sockaddr_in *sa, struct error *e);

/* Counts veths attached to this engine's bridge (for tests and diagnostics). */
int net_count_ports(struct net *n);
