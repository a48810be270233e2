/* domains.h — the sandboxes' DNS, and the domain rules of network.allow_out ("pypi.org",
 * "*.githubusercontent.com"). The engine's forwarder (dnsfwd.h) answers every sandbox; this
 * says whom it answers and lets through what it answers:
 *
 *   - a sandbox allowed out by its address class (the pool's lower half, net.h) is answered;
 *   - one with rules of its own is answered if it may reach anything (internet, or an
 *     allow_out), and an A record in an answer to a name that one of its domain patterns
 *     matches (the name asked: CNAMEs from it are followed) is added to its address set
 *     (firewall.h) before the answer goes back, for the record's TTL clamped to
 *     DOMAINS_TTL_MIN..FIREWALL_SET_TIMEOUT_MAX seconds (a longer TTL is lowered to that in
 *     the answer, so the sandbox forgets it first);
 *   - any other (no internet, no rules) is refused: no DNS is a way out too.
 *
 * Which sandbox asked is the query's source address: a sandbox cannot send from another's
 * (no CAP_NET_RAW, no CAP_NET_ADMIN over its namespace, bridge ports isolated). Another
 * resolver gains it nothing: its chain refuses port 53 elsewhere, and an address it learns
 * any other way (its /etc/hosts) is not in its set.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define DOMAINS_TTL_MIN 10 /* seconds an admitted address stays at least */

struct domains;

/* The table for a pool of size addresses from network (host order) whose lower half is
 * allowed out; with upstream (not "") the forwarder on gateway:53 too. */
int domains_new(uint32_t network, uint32_t size, const char *gateway, const char *upstream, struct domains **ret, struct error *e);

/* Stops the forwarder and frees the table; accepts NULL. */
void domains_free(struct domains *d);

/* What the sandbox at ip (with that veth) gets: DNS (dns), and its patterns (normalized,
 * dnsmsg_pattern_normalize; n may be 0). Replaces what ip had. -ENOMEM, -EINVAL (not in
 * the pool). */
int domains_set(struct domains *d, const char *ip, const char *veth, bool dns, char **patterns, unsigned n);

/* Forgets ip; returns whether it had patterns. */
bool domains_clear(struct domains *d, const char *ip);
