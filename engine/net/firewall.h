/* firewall.h — the host firewall rules the engine owns for its bridge (iptables and
 * ip6tables), all tagged with the comment `ai2in:<bridge>`:
 *
 *   iptables  INPUT    -i <bridge> conntrack ESTABLISHED,RELATED  ACCEPT   replies to the host
 *             INPUT    -i <bridge>                                 DROP     the host's services
 *             FORWARD  -i <bridge>                                 AI2IN-FWD-<bridge>
 *             FORWARD  -o <bridge>                                 AI2IN-FWD-<bridge>
 *             INPUT    -i <bridge> -d gateway udp 53, tcp 53       ACCEPT   the DNS forwarder (dnsfwd.h)
 *             AI2IN-FWD-<bridge>  -o <bridge> ESTABLISHED,RELATED  ACCEPT   replies to sandboxes
 *                                 -i <bridge>                      AI2IN-SBX-<bridge>  (own rules)
 *                                 -i <bridge> -s EGRESS            AI2IN-OUT-<bridge>
 *                                 -i <bridge>                      REJECT   (no waiting for a timeout)
 *                                                                  DROP     the forward policy
 *             AI2IN-OUT-<bridge>  169.254.0.0/16, the pool, deny-out REJECT the engine's deny list
 *                                                                  ACCEPT   the internet
 *   nat       POSTROUTING ! -o <bridge> AI2IN-NAT-<bridge>: -s POOL MASQUERADE
 *   ip6tables INPUT    -i <bridge>                                 DROP     (sandboxes have no
 *             FORWARD  -i <bridge>, -o <bridge>                    DROP      IPv6: second line)
 *
 * Policy by address class, not per sandbox: EGRESS is the half of the pool that sandboxes
 * allowed out take their addresses from (net.c), so creating or killing a sandbox runs no
 * iptables at all (one run costs more than a create may add: bench/README.md) and no rule can outlive its
 * sandbox. Only a sandbox with rules of its own (network.allow_out / deny_out) gets a chain,
 * AI2IN-<veth>, and with domain rules an ipset of the same name (hash:ip, an entry per
 * admitted address with its own timeout), jumped to from AI2IN-SBX-<bridge> (right after the replies in
 * AI2IN-FWD-<bridge>) by its source address: one iptables-restore when its slot is made
 * (on a thread of its own while the container starts: net.h), one when it is released, a
 * sweep at start for sandboxes no longer live. Address sets are made, filled and destroyed
 * through libipset in the engine's process (tens of microseconds; a run of the `ipset`
 * program costs 2-3 ms). The engine's chains are (re)loaded whole at start in one transaction
 * (AI2IN-SBX-<bridge> excepted: it holds live sandboxes' jumps); the jumps to them in the
 * built-in chains are kept above every rule that is not the engine's (Docker, Podman, ufw
 * and firewalld insert rules of their own), whatever the host's policies and
 * net.ipv4.ip_forward.
 */
#pragma once

#include <stdbool.h>

#include "error.h"

/* What the engine's chains say (CIDRs and addresses as text iptables accepts). */
struct firewall_policy {
        const char *pool;     /* every sandbox address: denied to every sandbox */
        const char *egress;   /* the part of the pool whose sandboxes may go out */
        const char *gateway;  /* the bridge's address, the sandboxes' resolver (the engine's forwarder) */
        char **deny_out;      /* the operator's deny-out ranges */
        unsigned n_deny_out;
};

/* Loads the engine's chains with p's rules (replacing what they held, atomically) and makes
 * sure the jumps to them and the INPUT rules exist, once, before any rule of another owner
 * (other ai2in engines' rules aside): missing or misplaced ones are (re)inserted at the top.
 * The ip6tables rules only when ipv6 (the kernel has IPv6). Idempotent; for the engine's
 * start. */
int firewall_ensure(const char *bridge, bool ipv6, const struct firewall_policy *p, struct error *e);

/* Removes every rule above and the chains (missing parts, or a missing ip6tables, are fine). */
void firewall_remove(const char *bridge);

/* A sandbox with rules of its own (allow_out, deny_out): its chain is AI2IN-<veth>. */
struct firewall_sandbox {
        const char *veth;
        const char *ip;
        const char *gateway;
        bool internet;          /* the rest of the internet too (after its deny_out) */
        char **allow_out;       /* CIDRs, reached even without internet (never the engine's deny list) */
        unsigned n_allow_out;
        char **deny_out;        /* CIDRs */
        unsigned n_deny_out;
        bool domains;           /* domain rules: the set AI2IN-<veth> is let through, and port 53
                                 * only to the gateway */
};

/* The address set of a sandbox with domain rules: at most FIREWALL_SET_MAX addresses at
 * once (an answer that would add more is not admitted: dnsfwd.h), each for as long as its
 * timeout, at most FIREWALL_SET_TIMEOUT_MAX seconds. */
#define FIREWALL_SET_MAX 4096
#define FIREWALL_SET_TIMEOUT_MAX 3600

struct firewall_admit {
        char ip[16];
        unsigned timeout; /* seconds, 1..FIREWALL_SET_TIMEOUT_MAX */
};

/* Adds (or renews) the n addresses of a in the set of the sandbox with that veth (libipset,
 * in this process). < 0 with the reason in err when it cannot (the set is full, or gone). */
int firewall_set_admit(const char *veth, const struct firewall_admit *a, unsigned n, char *err, size_t errlen);

/* Makes s's address set if it has domain rules, then s's chain and the jump to it from
 * AI2IN-SBX-<bridge> (source s->ip), in one iptables-restore transaction. Only for sandboxes with rules of their own: the others cost
 * no firewall change. */
int firewall_sandbox_add(const char *bridge, const struct firewall_sandbox *s, struct error *e);

/* Removes the chain and jump of every sandbox found in AI2IN-SBX-<bridge> for which
 * drop(veth, ip, data) says so, in one transaction, then their address sets. Returns how many (failures are logged
 * and ignored: teardown goes on). */
int firewall_sandbox_sweep(const char *bridge, bool (*drop)(const char *veth, const char *ip, void *data), void *data);

/* Removes the chain of the sandbox with that veth and its jump (source ip), without listing
 * anything first: one iptables-restore; then its address set, if any. -EIO if they were
 * not as made (then sweep). */
int firewall_sandbox_remove(const char *bridge, const char *veth, const char *ip);
