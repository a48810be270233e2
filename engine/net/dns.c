/* dns.c — see dns.h. The sandboxes' resolver is the bridge's address, where the engine's
 * forwarder listens (dnsfwd.h), so what the sandboxes are told never changes. The upstream
 * can be any address the host reaches but a loopback one (kept from when queries were
 * DNATed there, which needed route_localnet: the forwarder itself could use one).
 * systemd-resolved's stub (127.0.0.53) is a loopback one: its upstreams are in
 * /run/systemd/resolve/resolv.conf, read next.
 */
#include "net/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"

static const char *const host_files[] = {"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"};

/* The first `nameserver A.B.C.D` of text that is not loopback, into out. */
static bool first_usable(char *text, char out[16]) {
        char *save = NULL;

        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char addr[64];
                struct in_addr in;

                if (sscanf(line, " nameserver %63s", addr) != 1 || inet_pton(AF_INET, addr, &in) != 1 ||
                    (ntohl(in.s_addr) >> 24) == 127 || in.s_addr == 0)
                        continue;
                snprintf(out, 16, "%s", addr);
                return true;
        }
        return false;
}

int dns_upstream(const char *setting, char ret[16], struct error *e) {
        struct in_addr in;

        if (setting && *setting) {
                if (inet_pton(AF_INET, setting, &in) != 1 || (ntohl(in.s_addr) >> 24) == 127 || in.s_addr == 0)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "dns '%.64s' must be an IPv4 address, not a loopback one",
                                         setting);
                snprintf(ret, 16, "%s", setting);
                log_info("dns: the sandboxes' queries go to %s (the dns setting)", ret);
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(host_files); i++) {
                _cleanup_free_ char *text = NULL;

                if (read_file(host_files[i], 64 * 1024, &text, NULL) < 0 || !first_usable(text, ret))
                        continue;
                log_info("dns: the sandboxes' queries go to %s (from %s)", ret, host_files[i]);
                return 0;
        }
        ret[0] = 0;
        log_warn("dns: no nameserver other than a loopback one in %s or %s: sandboxes get no DNS (set --dns to a resolver "
                 "the host reaches)", host_files[0], host_files[1]);
        return 0;
}
