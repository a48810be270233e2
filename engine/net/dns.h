/* dns.h — where the sandboxes' DNS queries go. A sandbox's /etc/resolv.conf names the
 * bridge's address (its gateway), where the engine's forwarder (dnsfwd.h) listens and
 * passes queries on to one upstream resolver; this picks that upstream.
 */
#pragma once

#include "error.h"

/* The upstream resolver into ret: setting if not empty (an IPv4 address that is not
 * loopback, else -EINVAL), else the first such nameserver of the host's /etc/resolv.conf,
 * else of systemd-resolved's upstream list. None found is not an error: ret is "" and a
 * warning says why and what to set. */
int dns_upstream(const char *setting, char ret[16], struct error *e);
