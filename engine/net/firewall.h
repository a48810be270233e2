/* firewall.h — the host firewall rules the engine owns for its bridge (iptables and
 * ip6tables, filter table), all tagged with the comment `ai2in:<bridge>`:
 *
 *   iptables  INPUT    -i <bridge> conntrack ESTABLISHED,RELATED  ACCEPT   replies to the host
 *             INPUT    -i <bridge>                                 DROP     the host's services
 *             FORWARD  -i <bridge>                                 AI2IN-FWD-<bridge>
 *             FORWARD  -o <bridge>                                 AI2IN-FWD-<bridge>
 *             AI2IN-FWD-<bridge>                                   DROP     the forward policy
 *   ip6tables INPUT    -i <bridge>                                 DROP     (sandboxes have no
 *             FORWARD  -i <bridge>, -o <bridge>                    DROP      IPv6: second line)
 *
 * The forward policy lives in a chain of the engine's own so that what a sandbox may reach
 * beyond the bridge (egress through NAT, later) is added there, before its final DROP,
 * without touching the built-in chains. The rules in INPUT and FORWARD are kept above every
 * rule that is not the engine's (Docker, Podman, ufw and firewalld insert ACCEPT rules of
 * their own), whatever the host's policies and net.ipv4.ip_forward.
 */
#pragma once

#include <stdbool.h>

#include "error.h"

/* Makes sure every rule above exists, once, and that the rules in INPUT and FORWARD come
 * before any rule of another owner (other ai2in engines' rules aside): missing or misplaced
 * ones are (re)inserted at the top. The ip6tables rules only when ipv6 (the kernel has
 * IPv6). Idempotent; for the engine's start. */
int firewall_ensure(const char *bridge, bool ipv6, struct error *e);

/* Removes every rule above and the chain (missing parts, or a missing ip6tables, are fine). */
void firewall_remove(const char *bridge);
