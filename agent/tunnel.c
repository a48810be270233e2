/* tunnel.c — see tunnel.h. */
#include "tunnel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "pump.h"
#include "query.h"
#include "sockutil.h"

#define CONNECT_TIMEOUT_MS 5000
#define TUNNEL_IDLE_MS (60 * 60 * 1000) /* the engine closes idle preview connections sooner */

/* Loopback first (v4, v6), then every address of the sandbox's own interfaces. Returns the
 * connected socket, or the error of the loopback attempt (the telling one). */
static int connect_port(uint16_t port) {
        struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        struct ifaddrs *ifs = NULL;
        int fd, first;

        first = fd = tcp_connect((struct sockaddr *) &v4, sizeof(v4), CONNECT_TIMEOUT_MS);
        if (fd >= 0 || fd == -ETIMEDOUT)
                return fd;
        fd = tcp_connect((struct sockaddr *) &v6, sizeof(v6), CONNECT_TIMEOUT_MS);
        if (fd >= 0 || getifaddrs(&ifs) < 0)
                return fd >= 0 ? fd : first;
        fd = first;
        for (struct ifaddrs *i = ifs; i && fd < 0; i = i->ifa_next) {
                if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
                        continue;
                struct sockaddr_in a = *(struct sockaddr_in *) i->ifa_addr;
                if (a.sin_addr.s_addr == htonl(INADDR_LOOPBACK))
                        continue;
                a.sin_port = htons(port);
                fd = tcp_connect((struct sockaddr *) &a, sizeof(a), CONNECT_TIMEOUT_MS);
        }
        freeifaddrs(ifs);
        return fd >= 0 ? fd : first;
}

int tunnel_handle(struct http_conn *c, const struct http_request *req, const char *arg) {
        static const char *const allowed[] = {"port", NULL};
        _cleanup_query_ struct query q = {};
        _cleanup_buf_ struct buf pending = {0};
        _cleanup_close_ int fd = -1;
        const char *bad;
        uint64_t port;
        int r;

        r = query_parse(req->query, &q);
        if (r < 0)
                return http_respond_error(c, 400, "bad_request", "%s", query_strerror(r));
        if (query_check(&q, allowed, &bad) < 0)
                return http_respond_error(c, 400, "bad_request", "unknown or repeated query parameter '%s'", bad);
        if (!query_get(&q, "port") || query_parse_uint(query_get(&q, "port"), 1, 65535, &port) < 0)
                return http_respond_error(c, 400, "bad_request", "port must be a number between 1 and 65535");

        fd = connect_port((uint16_t) port);
        if (fd == -ECONNREFUSED)
                return http_respond_error(c, 502, "port_closed", "nothing is listening on port %u in the sandbox",
                                          (unsigned) port);
        if (fd < 0)
                return http_respond_error(c, 502, "port_unreachable", "cannot connect to port %u in the sandbox: %s",
                                          (unsigned) port, strerror(-fd));
        r = http_respond_upgrade(c, "ai2in-tunnel", &pending);
        if (r < 0)
                return 0; /* the engine went away */
        if (pending.len > 0 && send(fd, pending.data, pending.len, MSG_NOSIGNAL) != (ssize_t) pending.len)
                return 0;
        r = pump_relay(http_conn_fd(c), fd, TUNNEL_IDLE_MS);
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                log_debug("tunnel to port %u ended: %s", (unsigned) port, strerror(-r));
        return 0;
}
