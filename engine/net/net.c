/* net.c — see net.h. Links and the bridge are made with iproute2 (`ip`); the namespace, the
 * in-namespace addresses and its sysfs are set up here directly (unshare + bind mount; one
 * child that setns()es into it for the sysctls, ioctls and the sysfs mount), which avoids
 * program runs per sandbox. The host's firewall rules are firewall.c's. */
#include "net/net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fsutil.h"
#include "log.h"
#include "net/dns.h"
#include "net/dnsmsg.h"
#include "net/domains.h"
#include "net/firewall.h"
#include "spawn.h"
#include "strv.h"

struct net {
        char bridge[IFNAMSIZ];
        char netns_dir[256];
        char sysfs_dir[256];
        bool ipv6;        /* the kernel has IPv6 (and so it must be turned off, everywhere) */
        uint32_t network; /* host order */
        unsigned prefix;
        uint32_t size;    /* addresses in the pool */
        uint8_t *used;    /* one byte per address: simple and small enough (64 KiB for a /16); USED_RULES
                           * too when its sandbox has a firewall chain of its own */
        uint32_t next[2]; /* where the search for a free address starts, per half */
        char dns[16];     /* upstream resolver, "" for none */
        struct domains *domains; /* who gets DNS, and the domain rules (its forwarder) */
        pthread_mutex_t lock;
};

#define USED_RULES 2

static int parse_cidr(const char *s, uint32_t *net, unsigned *prefix) {
        char addr[32];
        const char *slash = strchr(s, '/');
        struct in_addr in;
        char *end;
        long p;

        if (!slash || (size_t) (slash - s) >= sizeof(addr))
                return -EINVAL;
        memcpy(addr, s, (size_t) (slash - s));
        addr[slash - s] = 0;
        p = strtol(slash + 1, &end, 10);
        if (*end || p < 8 || p > 28 || inet_pton(AF_INET, addr, &in) != 1)
                return -EINVAL;
        *prefix = (unsigned) p;
        *net = ntohl(in.s_addr) & (0xffffffffu << (32 - p));
        return 0;
}

static void ip_string(uint32_t host_order, char out[16]) {
        struct in_addr in = {.s_addr = htonl(host_order)};
        inet_ntop(AF_INET, &in, out, 16);
}

static int run(char *const argv[], struct error *e, const char *what) {
        char msg[512] = "";
        int r = spawn_check(argv, msg, sizeof(msg));
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "%s: %s", what, msg);
        return 0;
}

/* Turns IPv6 off on interface ifname (or "all", "default") of the caller's network namespace:
 * /proc/sys/net shows the namespace of the process that opens it. */
static int ipv6_off(const char *ifname) {
        char path[128];
        _cleanup_close_ int fd = -1;

        snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, "1", 1) != 1)
                return errno ? -errno : -EIO;
        return 0;
}

static int host_ipv6_off(struct net *n, const char *ifname, struct error *e) {
        int r = n->ipv6 ? ipv6_off(ifname) : 0;

        if (r < 0)
                return error_set(e, -r, ERR_INTERNAL, "cannot turn IPv6 off on %s: %s", ifname, strerror(-r));
        return 0;
}

int net_cidr_normalize(const char *s, size_t len, char out[20]) {
        char item[40], addr[16];
        unsigned prefix = 32;
        struct in_addr in;
        char *slash;

        if (len == 0 || len >= sizeof(item))
                return -EINVAL;
        memcpy(item, s, len);
        item[len] = 0;
        slash = strchr(item, '/');
        if (slash) {
                char *end;
                long v = strtol(slash + 1, &end, 10);
                if (*end || end == slash + 1 || v < 0 || v > 32)
                        return -EINVAL;
                prefix = (unsigned) v;
                *slash = 0;
        }
        if (inet_pton(AF_INET, item, &in) != 1)
                return -EINVAL;
        ip_string(ntohl(in.s_addr) & (prefix ? 0xffffffffu << (32 - prefix) : 0), addr);
        snprintf(out, 20, "%s/%u", addr, prefix);
        return 0;
}

/* Parses the deny-out setting (comma-separated CIDRs or addresses) into ret, normalized. */
static int parse_deny_out(const char *setting, struct strv *ret, struct error *e) {
        const char *p = setting;

        while (p && *p) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t) (comma - p) : strlen(p);
                char out[20];

                while (len && (*p == ' ' || *p == '\t'))
                        p++, len--;
                while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (net_cidr_normalize(p, len, out) < 0)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "deny-out: '%.*s' is not an IPv4 CIDR", (int) (len > 40 ? 40 : len), p);
                if (ret->n >= 256)
                        return error_set(e, E2BIG, ERR_BAD_REQUEST, "deny-out: more than 256 ranges");
                if (strv_push(ret, strdup(out)) < 0)
                        return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
                p = comma ? comma + 1 : NULL;
        }
        return 0;
}

/* Egress needs the host to forward; what it forwards from the bridge is the engine's chain's
 * to decide, whatever this says. */
static void ip_forward_on(const char *bridge) {
        _cleanup_close_ int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDWR | O_CLOEXEC);
        char c = 0;

        if (fd < 0 || read(fd, &c, 1) != 1) {
                log_warn_errno(errno, "cannot read net.ipv4.ip_forward: sandboxes may not reach the internet, ignoring");
                return;
        }
        if (c == '1')
                return;
        if (pwrite(fd, "1", 1, 0) != 1) {
                log_warn_errno(errno, "cannot set net.ipv4.ip_forward=1: sandboxes will not reach the internet, ignoring");
                return;
        }
        log_info("net.ipv4.ip_forward was 0: set to 1 for the sandboxes' egress (the host now forwards between its "
                 "interfaces as its FORWARD chain allows; the engine's chain decides for %s)", bridge);
}

static int ensure_firewall(struct net *n, const struct net_config *c, struct error *e) {
        _cleanup_(strv_done) struct strv deny = {0};
        char gw[16], pool[24], egress[24], base[16];
        int r;

        r = parse_deny_out(c->deny_out, &deny, e);
        if (r < 0)
                return r;
        r = dns_upstream(c->dns, n->dns, e);
        if (r < 0)
                return r;
        ip_string(n->network + 1, gw);
        ip_string(n->network, base);
        snprintf(pool, sizeof(pool), "%s/%u", base, n->prefix);
        snprintf(egress, sizeof(egress), "%s/%u", base, n->prefix + 1);
        struct firewall_policy p = {.pool = pool, .egress = egress, .gateway = gw, .deny_out = deny.v,
                                    .n_deny_out = (unsigned) deny.n};
        r = firewall_ensure(n->bridge, n->ipv6, &p, e);
        if (r < 0)
                return r;
        ip_forward_on(n->bridge);
        return 0;
}

static int ensure_bridge(struct net *n, struct error *e) {
        char gw[16], cidr[24], path[64];
        struct stat st;
        int r;

        ip_string(n->network + 1, gw);
        snprintf(cidr, sizeof(cidr), "%s/%u", gw, n->prefix);
        snprintf(path, sizeof(path), "/sys/class/net/%s", n->bridge);
        if (stat(path, &st) < 0) {
                char *add[] = {"ip", "link", "add", n->bridge, "type", "bridge", NULL};
                r = run(add, e, "cannot create bridge");
                if (r < 0)
                        return r;
        }
        char *addr[] = {"ip", "addr", "replace", cidr, "dev", n->bridge, NULL};
        char *up[] = {"ip", "link", "set", n->bridge, "up", NULL};
        /* Before it is up, or it would get a link-local IPv6 address the sandboxes could use. */
        if ((r = host_ipv6_off(n, n->bridge, e)) < 0 || (r = run(addr, e, "cannot address bridge")) < 0 ||
            (r = run(up, e, "cannot bring bridge up")) < 0)
                return r;
        return 0;
}

static int make_dir(const char *dir, struct error *e) {
        int r = mkdir_p(dir, 0700);

        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", dir, strerror(-r));
        return 0;
}

int net_new(const struct net_config *c, struct net **ret, struct error *e) {
        const char *bridge = c->bridge, *pool_cidr = c->pool, *run_dir = c->run_dir;
        struct net *n = calloc(1, sizeof(*n));
        int r;

        if (!n)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        pthread_mutex_init(&n->lock, NULL);
        snprintf(n->bridge, sizeof(n->bridge), "%s", bridge);
        snprintf(n->netns_dir, sizeof(n->netns_dir), "%s/netns", run_dir);
        snprintf(n->sysfs_dir, sizeof(n->sysfs_dir), "%s/sysfs", run_dir);
        n->ipv6 = access("/proc/sys/net/ipv6", F_OK) == 0;
        if (parse_cidr(pool_cidr, &n->network, &n->prefix) < 0) {
                net_free(n);
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "net-pool '%s' is not an IPv4 CIDR with a prefix of 8..28", pool_cidr);
        }
        n->size = 1u << (32 - n->prefix);
        n->used = calloc(n->size, 1);
        if (!n->used) {
                net_free(n);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        n->used[0] = n->used[1] = n->used[n->size - 1] = 1; /* network, gateway, broadcast */
        if ((r = make_dir(n->netns_dir, e)) < 0 || (r = make_dir(n->sysfs_dir, e)) < 0) {
                net_free(n);
                return r;
        }
        r = ensure_bridge(n, e);
        if (r >= 0)
                r = ensure_firewall(n, c, e);
        if (r >= 0) {
                char gw[16];
                ip_string(n->network + 1, gw);
                r = domains_new(n->network, n->size, gw, n->dns, &n->domains, e);
        }
        if (r < 0) {
                net_free(n);
                return r;
        }
        *ret = n;
        return 0;
}

void net_resolv_conf(struct net *n, char *buf, size_t size) {
        char gw[16];

        ip_string(n->network + 1, gw);
        if (*n->dns)
                snprintf(buf, size, "nameserver %s\n", gw);
        else
                snprintf(buf, size, "# no DNS: the engine found no resolver to send queries to (its log says why)\n");
}

void net_free(struct net *n) {
        if (!n)
                return;
        domains_free(n->domains);
        free(n->used);
        pthread_mutex_destroy(&n->lock);
        free(n);
}

void net_slot_paths(struct net *n, const char *id, struct net_slot *s) {
        const char *rand = strchr(id, '_');

        rand = rand ? rand + 1 : id;
        snprintf(s->netns_path, sizeof(s->netns_path), "%s/%s", n->netns_dir, id);
        snprintf(s->sysfs_path, sizeof(s->sysfs_path), "%s/%s", n->sysfs_dir, id);
        snprintf(s->veth, sizeof(s->veth), "ai%.12s", rand);
}

/* The first and one-past-last index of the pool's half for sandboxes allowed out (the
 * lower one: network and gateway at its start) or not (the upper one: broadcast at its end). */
static void half_range(const struct net *n, bool internet, uint32_t *lo, uint32_t *hi) {
        *lo = internet ? 2 : n->size / 2;
        *hi = internet ? n->size / 2 : n->size - 1;
}

static int ip_take(struct net *n, bool internet, char out[16]) {
        uint32_t lo, hi, *next = &n->next[internet];
        int r = -EADDRNOTAVAIL;

        half_range(n, internet, &lo, &hi);
        /* Round the half, not lowest-first: an address a sandbox gave back (paused, killed)
         * is the last to be handed out again, so that a client still holding it (a preview
         * connection, a cached DNS answer) is unlikely to meet another sandbox there. */
        pthread_mutex_lock(&n->lock);
        for (uint32_t k = 0, usable = hi - lo; k < usable && r < 0; k++) {
                uint32_t i = lo + (*next + k) % usable;
                if (!n->used[i]) {
                        n->used[i] = 1;
                        *next = i - lo + 1;
                        ip_string(n->network + i, out);
                        r = 0;
                }
        }
        pthread_mutex_unlock(&n->lock);
        return r;
}

static void ip_give(struct net *n, const char *ip) {
        struct in_addr in;
        uint32_t i;

        if (!ip || !*ip || inet_pton(AF_INET, ip, &in) != 1)
                return;
        i = ntohl(in.s_addr) - n->network;
        pthread_mutex_lock(&n->lock);
        if (i < n->size && i > 1)
                n->used[i] = 0;
        pthread_mutex_unlock(&n->lock);
}

/* Creates a new network namespace and pins it by bind-mounting it onto path. */
static int netns_create(const char *path, struct error *e) {
        int fd, status;
        pid_t pid;

        fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot create %s: %s", path, strerror(errno));
        close(fd);
        pid = fork();
        if (pid < 0)
                return error_set(e, errno, ERR_INTERNAL, "fork: %s", strerror(errno));
        if (pid == 0) {
                if (unshare(CLONE_NEWNET) < 0 || mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0)
                        _exit(errno & 0xff);
                _exit(0);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        break;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                unlink(path);
                return error_set(e, EIO, ERR_INTERNAL, "cannot create network namespace %s: %s", path,
                                 WIFEXITED(status) ? strerror(WEXITSTATUS(status)) : "helper crashed");
        }
        return 0;
}

static void netns_remove(const char *path) {
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                log_warn_errno(errno, "cannot unmount %s, ignoring", path);
        if (unlink(path) < 0 && errno != ENOENT)
                log_warn_errno(errno, "cannot remove %s, ignoring", path);
}

static int ifreq_set(int sock, const char *ifname, unsigned long req, uint32_t addr_host) {
        struct ifreq ifr = {0};
        struct sockaddr_in *sin = (struct sockaddr_in *) &ifr.ifr_addr;

        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(addr_host);
        return ioctl(sock, req, &ifr) < 0 ? -errno : 0;
}

static int link_up(int sock, const char *ifname) {
        struct ifreq ifr = {0};

        snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
        if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP;
        return ioctl(sock, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

/* Runs in a child that has entered the namespace: address, links up, default route. */
static int configure_inside(uint32_t ip, uint32_t mask, uint32_t gw) {
        struct rtentry rt = {0};
        int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;

        if (sock < 0)
                return -errno;
        if ((r = ifreq_set(sock, "eth0", SIOCSIFADDR, ip)) < 0 || (r = ifreq_set(sock, "eth0", SIOCSIFNETMASK, mask)) < 0 ||
            (r = link_up(sock, "eth0")) < 0 || (r = link_up(sock, "lo")) < 0)
                return r;
        ((struct sockaddr_in *) &rt.rt_dst)->sin_family = AF_INET;
        ((struct sockaddr_in *) &rt.rt_genmask)->sin_family = AF_INET;
        ((struct sockaddr_in *) &rt.rt_gateway)->sin_family = AF_INET;
        ((struct sockaddr_in *) &rt.rt_gateway)->sin_addr.s_addr = htonl(gw);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(sock, SIOCADDRT, &rt) < 0)
                return -errno;
        return 0;
}

/* What the child of netns_configure failed at, sent to the parent through a pipe. */
enum inside_step { STEP_ENTER, STEP_IPV6, STEP_ADDRESS, STEP_SYSFS };

struct inside_failure {
        int step;
        int err; /* positive errno; 0: no failure */
};

/* The child's work, in the namespace: IPv6 off before any link is up (so no address ever
 * appears, not even ::1), then IPv4, then a sysfs of this namespace mounted read-only on the
 * slot's sysfs path (in the host's mount namespace, which the child shares): sysfs shows
 * the network devices of the namespace its mounter is in, and the sandbox gets this one as
 * its /sys. The namespace is owned by the host's user namespace, so root inside the
 * sandbox can change none of this (no CAP_NET_ADMIN over it). */
static struct inside_failure configure_child(struct net *n, const struct net_slot *s, uint32_t ip, uint32_t mask, bool again) {
        static const char *const ifs[] = {"all", "default", "lo", "eth0"};
        int fd = open(s->netns_path, O_RDONLY | O_CLOEXEC), r;

        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
                return (struct inside_failure){STEP_ENTER, errno};
        if (again) /* the address and route only: the rest is still there */
                return (struct inside_failure){STEP_ADDRESS, (r = configure_inside(ip, mask, n->network + 1)) < 0 && r != -EEXIST ? -r : 0};
        for (size_t i = 0; n->ipv6 && i < ELEMENTSOF(ifs); i++)
                if ((r = ipv6_off(ifs[i])) < 0)
                        return (struct inside_failure){STEP_IPV6, -r};
        if ((r = configure_inside(ip, mask, n->network + 1)) < 0)
                return (struct inside_failure){STEP_ADDRESS, -r};
        if (mount("sysfs", s->sysfs_path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return (struct inside_failure){STEP_SYSFS, errno};
        return (struct inside_failure){0, 0};
}

static int netns_configure(struct net *n, const struct net_slot *s, bool again, struct error *e) {
        static const char *const what[] = {
                [STEP_ENTER] = "cannot enter the sandbox's network namespace",
                [STEP_IPV6] = "cannot turn IPv6 off in the sandbox's network namespace",
                [STEP_ADDRESS] = "cannot configure the sandbox's network",
                [STEP_SYSFS] = "cannot mount the sysfs of the sandbox's network namespace",
        };
        struct inside_failure f = {0, 0};
        uint32_t mask = 0xffffffffu << (32 - n->prefix);
        struct in_addr in;
        int pipefd[2], status = 0;
        ssize_t k;
        pid_t pid;

        inet_pton(AF_INET, s->ip, &in);
        if (!again && mkdir(s->sysfs_path, 0700) < 0 && errno != EEXIST)
                return error_set(e, errno, ERR_INTERNAL, "cannot create %s: %s", s->sysfs_path, strerror(errno));
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return error_set(e, errno, ERR_INTERNAL, "pipe: %s", strerror(errno));
        pid = fork();
        if (pid < 0) {
                close(pipefd[0]);
                close(pipefd[1]);
                return error_set(e, errno, ERR_INTERNAL, "fork: %s", strerror(errno));
        }
        if (pid == 0) {
                f = configure_child(n, s, ntohl(in.s_addr), mask, again);
                if (f.err)
                        (void) !write(pipefd[1], &f, sizeof(f));
                _exit(f.err ? 1 : 0);
        }
        close(pipefd[1]);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        break;
        k = read(pipefd[0], &f, sizeof(f)); /* the child has exited: whatever it wrote is there */
        close(pipefd[0]);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (k != (ssize_t) sizeof(f) || f.step < 0 || f.step > STEP_SYSFS)
                return error_set(e, EIO, ERR_INTERNAL, "cannot configure the sandbox's network: its helper failed");
        return error_set(e, f.err, ERR_INTERNAL, "%s: %s", what[f.step], strerror(f.err));
}

/* The pool index of ip, or n->size if it is not in the pool. */
static uint32_t ip_index(const struct net *n, const char *ip) {
        struct in_addr in;
        uint32_t i;

        if (!ip || inet_pton(AF_INET, ip, &in) != 1)
                return n->size;
        i = ntohl(in.s_addr) - n->network;
        return i < n->size ? i : n->size;
}

static void mark_rules(struct net *n, const char *ip) {
        uint32_t i = ip_index(n, ip);

        pthread_mutex_lock(&n->lock);
        if (i < n->size)
                n->used[i] |= USED_RULES;
        pthread_mutex_unlock(&n->lock);
}

static bool has_rules(struct net *n, const char *ip) {
        uint32_t i = ip_index(n, ip);
        bool r;

        pthread_mutex_lock(&n->lock);
        r = i < n->size && (n->used[i] & USED_RULES);
        pthread_mutex_unlock(&n->lock);
        return r;
}

/* rules' allow_out split into CIDRs and domain patterns (the API let only these through). */
static int split_allow(const struct net_rules *rules, struct strv *cidrs, struct strv *domains) {
        for (unsigned i = 0; i < rules->n_allow_out; i++) {
                char cidr[20];
                bool is_cidr = net_cidr_normalize(rules->allow_out[i], strlen(rules->allow_out[i]), cidr) == 0;
                if (strv_push(is_cidr ? cidrs : domains, strdup(rules->allow_out[i])) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* The sandbox's DNS and domain rules (domains.h), known again after a restart. */
static int set_domains(struct net *n, const struct net_slot *s, bool internet, const struct net_rules *rules) {
        _cleanup_(strv_done) struct strv cidrs = {0}, domains = {0};

        if (split_allow(rules, &cidrs, &domains) < 0)
                return -ENOMEM;
        return domains_set(n->domains, s->ip, s->veth, internet || rules->n_allow_out > 0, domains.v, (unsigned) domains.n);
}

/* A sandbox's chain, made on a thread while its container starts (net.h). */
struct net_rules_job {
        pthread_t thread;
        const char *bridge;
        char veth[16], ip[16], gateway[16];
        bool internet;
        struct strv cidrs, deny;
        bool domains;
        struct error e;
        int r;
};

static void *rules_job_run(void *data) {
        struct net_rules_job *j = data;
        struct firewall_sandbox fs = {.veth = j->veth, .ip = j->ip, .gateway = j->gateway, .internet = j->internet,
                                      .allow_out = j->cidrs.v, .n_allow_out = (unsigned) j->cidrs.n,
                                      .deny_out = j->deny.v, .n_deny_out = (unsigned) j->deny.n, .domains = j->domains};

        j->r = firewall_sandbox_add(j->bridge, &fs, &j->e);
        return NULL;
}

static void rules_job_free(struct net_rules_job *j) {
        strv_done(&j->cidrs);
        strv_done(&j->deny);
        free(j);
}

static int add_rules(struct net *n, struct net_slot *s, bool internet, const struct net_rules *rules, struct error *e) {
        _cleanup_(strv_done) struct strv domains = {0};
        struct net_rules_job *j = calloc(1, sizeof(*j));
        int r;

        if (!j || split_allow(rules, &j->cidrs, &domains) < 0 || set_domains(n, s, internet, rules) < 0)
                goto oom;
        for (unsigned i = 0; i < rules->n_deny_out; i++)
                if (strv_push(&j->deny, strdup(rules->deny_out[i])) < 0)
                        goto oom;
        j->bridge = n->bridge;
        snprintf(j->veth, sizeof(j->veth), "%s", s->veth);
        snprintf(j->ip, sizeof(j->ip), "%s", s->ip);
        ip_string(n->network + 1, j->gateway);
        j->internet = internet;
        j->domains = domains.n > 0;
        r = pthread_create(&j->thread, NULL, rules_job_run, j);
        if (r != 0) {
                (void) domains_clear(n->domains, s->ip);
                rules_job_free(j);
                return error_set(e, r, ERR_INTERNAL, "cannot start the firewall work of %s: %s", s->veth, strerror(r));
        }
        s->job = j;
        return 0;
oom:
        (void) domains_clear(n->domains, s->ip);
        if (j)
                rules_job_free(j);
        return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
}

int net_slot_rules_wait(struct net *n, struct net_slot *s, struct error *e) {
        struct net_rules_job *j = s->job;
        int r;

        if (!j)
                return 0;
        s->job = NULL;
        pthread_join(j->thread, NULL);
        r = j->r;
        if (r >= 0)
                mark_rules(n, s->ip);
        else {
                (void) domains_clear(n->domains, s->ip);
                if (e)
                        *e = j->e;
        }
        rules_job_free(j);
        return r;
}

int net_slot_acquire(struct net *n, const char *id, bool internet, const struct net_rules *rules, struct net_slot *s,
                     struct error *e) {
        bool own = rules && (rules->n_allow_out > 0 || rules->n_deny_out > 0);
        int r;

        net_slot_paths(n, id, s);
        s->job = NULL;
        /* With rules of its own, the other half: its chain says what it reaches. */
        if (ip_take(n, internet && !own, s->ip) < 0)
                return error_set(e, EADDRNOTAVAIL, ERR_UNAVAILABLE, "the address pool's half for sandboxes %s the internet is exhausted",
                                 internet ? "with" : "without");
        r = netns_create(s->netns_path, e);
        if (r < 0) {
                ip_give(n, s->ip);
                return r;
        }
        char *add[] = {"ip", "link", "add", s->veth, "type", "veth", "peer", "name", "eth0", "netns", s->netns_path, NULL};
        char *attach[] = {"ip", "link", "set", s->veth, "master", n->bridge, "up", NULL};
        char *isolate[] = {"ip", "link", "set", s->veth, "type", "bridge_slave", "isolated", "on", NULL};
        /* The host end's IPv6 off before it is up, as for the bridge. The chain's work starts
         * first: it runs while the rest is made (net_slot_rules_wait). */
        if ((own && (r = add_rules(n, s, internet, rules, e)) < 0) || (r = run(add, e, "cannot create veth")) < 0 ||
            (r = host_ipv6_off(n, s->veth, e)) < 0 || (r = run(attach, e, "cannot attach veth")) < 0 ||
            (r = run(isolate, e, "cannot isolate bridge port")) < 0 || (r = netns_configure(n, s, false, e)) < 0) {
                (void) net_slot_rules_wait(n, s, NULL);
                net_slot_release(n, s);
                return r;
        }
        return 0;
}

int net_slot_readdress(struct net *n, const char *id, const char *ip, struct error *e) {
        struct net_slot s;

        net_slot_paths(n, id, &s);
        snprintf(s.ip, sizeof(s.ip), "%s", ip);
        return netns_configure(n, &s, true, e);
}

void net_slot_adopt(struct net *n, const char *id, const char *ip, bool internet, const struct net_rules *rules, struct net_slot *s) {
        struct in_addr in;

        net_slot_paths(n, id, s);
        snprintf(s->ip, sizeof(s->ip), "%s", ip ? ip : "");
        if (rules && (rules->n_allow_out > 0 || rules->n_deny_out > 0) && set_domains(n, s, internet, rules) < 0)
                log_warn("cannot note the network rules of %s: out of memory; it gets no DNS, ignoring", id);
        if (inet_pton(AF_INET, s->ip, &in) == 1) {
                uint32_t i = ntohl(in.s_addr) - n->network;
                pthread_mutex_lock(&n->lock);
                if (i < n->size)
                        n->used[i] |= 1; /* USED_RULES, if set, stays: the chain is still there */
                pthread_mutex_unlock(&n->lock);
        }
}

static void veth_delete(const char *veth) {
        char path[64];
        struct stat st;

        snprintf(path, sizeof(path), "/sys/class/net/%s", veth);
        if (stat(path, &st) < 0)
                return;
        char *del[] = {"ip", "link", "del", (char *) veth, NULL};
        char msg[256];
        if (spawn_check(del, msg, sizeof(msg)) < 0 && stat(path, &st) == 0)
                log_warn("cannot delete veth %s: %s, ignoring", veth, msg);
}

/* The sysfs mount holds a reference to the namespace: unmounted before the namespace goes,
 * or the namespace would outlive the sandbox. */
static void sysfs_remove(const char *path) {
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                log_warn_errno(errno, "cannot unmount %s, ignoring", path);
        if (rmdir(path) < 0 && errno != ENOENT)
                log_warn_errno(errno, "cannot remove %s, ignoring", path);
}

static bool is_veth(const char *veth, const char *ip, void *data) {
        return streq(veth, data);
}

void net_slot_release(struct net *n, const struct net_slot *s) {
        (void) domains_clear(n->domains, s->ip);
        /* The jump is known: removed without a listing, unless it is not as made. */
        if (has_rules(n, s->ip) && firewall_sandbox_remove(n->bridge, s->veth, s->ip) < 0)
                (void) firewall_sandbox_sweep(n->bridge, is_veth, (void *) s->veth);
        veth_delete(s->veth);
        sysfs_remove(s->sysfs_path);
        netns_remove(s->netns_path);
        ip_give(n, s->ip);
}

static bool in_list(char **list, unsigned n, const char *s) {
        for (unsigned i = 0; i < n; i++)
                if (streq(list[i], s))
                        return true;
        return false;
}

/* Calls remove_one on every entry of dir (named after a sandbox id) that is not in live. */
static void remove_dead_entries(const char *dir, char **live, unsigned n_live, const char *what,
                                void (*remove_one)(const char *)) {
        DIR *d = opendir(dir);
        struct dirent *de;
        char path[512];

        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.' || in_list(live, n_live, de->d_name))
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                log_info("removing orphaned %s %s", what, path);
                remove_one(path);
        }
        if (d)
                closedir(d);
}

struct live_set {
        struct net *n;
        char **live;
        unsigned n_live;
};

/* A chain whose sandbox is not live goes; a live one's address is marked as having one. */
static bool not_live(const char *veth, const char *ip, void *data) {
        struct live_set *ls = data;

        for (unsigned i = 0; i < ls->n_live; i++) {
                struct net_slot s;
                net_slot_paths(ls->n, ls->live[i], &s);
                if (streq(s.veth, veth)) {
                        mark_rules(ls->n, ip);
                        return false;
                }
        }
        log_info("removing the orphaned firewall chain AI2IN-%s (%s)", veth, ip);
        return true;
}

void net_remove_orphans(struct net *n, char **live, unsigned n_live) {
        struct live_set ls = {n, live, n_live};
        struct dirent *de;
        char path[512], veths[64][16];
        unsigned nv = 0;
        DIR *d;

        (void) firewall_sandbox_sweep(n->bridge, not_live, &ls);
        /* The sysfs views first: each holds its namespace. */
        remove_dead_entries(n->sysfs_dir, live, n_live, "sysfs", sysfs_remove);
        remove_dead_entries(n->netns_dir, live, n_live, "network namespace", netns_remove);
        /* Ports of the bridge that belong to no live sandbox. */
        snprintf(path, sizeof(path), "/sys/class/net/%s/brif", n->bridge);
        d = opendir(path);
        while (d && (de = readdir(d)) && nv < ELEMENTSOF(veths)) {
                bool keep = false;
                if (de->d_name[0] == '.')
                        continue;
                for (unsigned i = 0; i < n_live && !keep; i++) {
                        struct net_slot s;
                        net_slot_paths(n, live[i], &s);
                        keep = streq(s.veth, de->d_name);
                }
                if (!keep)
                        snprintf(veths[nv++], 16, "%s", de->d_name);
        }
        if (d)
                closedir(d);
        for (unsigned i = 0; i < nv; i++) {
                log_info("removing orphaned veth %s", veths[i]);
                veth_delete(veths[i]);
        }
}

int net_count_ports(struct net *n) {
        char path[512];
        struct dirent *de;
        DIR *d;
        int count = 0;

        snprintf(path, sizeof(path), "/sys/class/net/%s/brif", n->bridge);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        count++;
        closedir(d);
        return count;
}

int net_parse_listen(const char *s, const char *name, struct sockaddr_in *sa, struct error *e) {
        char host[64];
        const char *colon = strrchr(s, ':');
        char *end;
        long port;

        if (!colon || (size_t) (colon - s) >= sizeof(host))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s address '%s' must be HOST:PORT", name, s);
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = 0;
        port = strtol(colon + 1, &end, 10);
        *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
        if (*end || port < 1 || port > 65535 || inet_pton(AF_INET, streq(host, "localhost") ? "127.0.0.1" : host, &sa->sin_addr) != 1)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s address '%s' must be IPv4-HOST:PORT", name, s);
        return 0;
}

int net_remove(const char *bridge, bool force, struct error *e) {
        char path[128];
        struct stat st;
        int ports = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/sys/class/net/%s/brif", bridge);
        d = opendir(path);
        if (d) {
                for (struct dirent *de; (de = readdir(d));)
                        ports += de->d_name[0] != '.';
                closedir(d);
        }
        if (ports > 0 && !force)
                return error_set(e, EBUSY, ERR_CONFLICT, "bridge %s still has %d sandbox%s attached: kill them first (or --force)",
                                 bridge, ports, ports == 1 ? "" : "es");
        firewall_remove(bridge);
        snprintf(path, sizeof(path), "/sys/class/net/%s", bridge);
        if (stat(path, &st) == 0) {
                char *del[] = {"ip", "link", "del", (char *) bridge, NULL};
                return run(del, e, "cannot remove the bridge");
        }
        return 0;
}
