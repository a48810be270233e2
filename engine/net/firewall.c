/* firewall.c — see firewall.h. Rules are made with iptables and ip6tables (`-w`: they wait
 * for the xtables lock), a handful of program runs at the engine's start and none per
 * sandbox. Where a rule stands is read from `-S CHAIN`; a rule is the engine's when its
 * comment is exactly `ai2in:<bridge>`, another engine's when it starts `ai2in:`. */
#include "net/firewall.h"

#include <errno.h>
#include <libipset/ipset.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "fsutil.h"
#include "log.h"
#include "spawn.h"

#define SPEC_MAX 20
#define DELETE_MAX 64   /* copies of one rule removed at most (someone may have added more) */
#define LISTING_MAX (4 << 20)
#define SWEEP_MAX 4096  /* address sets destroyed per sweep, at most (the rest at the next) */

struct names {
        const char *bridge;
        char comment[32]; /* ai2in:<bridge>; a bridge name has at most 15 characters */
        char chain[32];   /* AI2IN-FWD-<bridge>: 25 at most, iptables allows 28 */
        char out[32];     /* AI2IN-OUT-<bridge>: the egress policy (filter) */
        char gateway[16]; /* the bridge's address, where the DNS forwarder listens */
        char nat[32];     /* AI2IN-NAT-<bridge>: the masquerade (nat) */
        char sbx[32];     /* AI2IN-SBX-<bridge>: jumps to the chains of sandboxes with rules of their own */
};

/* A rule: what follows the chain's name, NULL-terminated. */
struct rule {
        const char *spec[SPEC_MAX];
};

/* A built-in chain and the engine's rules in it, top to bottom. */
struct group {
        const char *tool;
        const char *table; /* "filter" or "nat" */
        const char *chain;
        unsigned n;
        struct rule rules[4];
};

#define TAG(nm) "-m", "comment", "--comment", (nm)->comment

#define GROUPS_MAX 5

static unsigned groups(const struct names *nm, bool ipv6, struct group out[GROUPS_MAX]) {
        const char *br = nm->bridge;
        unsigned n = 0;

        /* DNS to the gateway is the engine's forwarder's (dnsfwd.h), UDP and TCP. */
        out[n++] = (struct group){"iptables", "filter", "INPUT", 4, {
                {{"-i", br, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", TAG(nm), "-j", "ACCEPT", NULL}},
                {{"-i", br, "-d", nm->gateway, "-p", "udp", "--dport", "53", TAG(nm), "-j", "ACCEPT", NULL}},
                {{"-i", br, "-d", nm->gateway, "-p", "tcp", "--dport", "53", TAG(nm), "-j", "ACCEPT", NULL}},
                {{"-i", br, TAG(nm), "-j", "DROP", NULL}},
        }};
        out[n++] = (struct group){"iptables", "filter", "FORWARD", 2, {
                {{"-i", br, TAG(nm), "-j", nm->chain, NULL}},
                {{"-o", br, TAG(nm), "-j", nm->chain, NULL}},
        }};
        /* Above any other owner's too: a masquerade of theirs met first would take the packet
         * out with the wrong address. */
        out[n++] = (struct group){"iptables", "nat", "POSTROUTING", 1, {{{"!", "-o", br, TAG(nm), "-j", nm->nat, NULL}}}};
        if (!ipv6)
                return n;
        out[n++] = (struct group){"ip6tables", "filter", "INPUT", 1, {{{"-i", br, TAG(nm), "-j", "DROP", NULL}}}};
        out[n++] = (struct group){"ip6tables", "filter", "FORWARD", 2, {
                {{"-i", br, TAG(nm), "-j", "DROP", NULL}},
                {{"-o", br, TAG(nm), "-j", "DROP", NULL}},
        }};
        return n;
}

static void names_init(struct names *nm, const char *bridge, const char *gateway) {
        nm->bridge = bridge;
        snprintf(nm->gateway, sizeof(nm->gateway), "%s", gateway ? gateway : "");
        snprintf(nm->comment, sizeof(nm->comment), "ai2in:%s", bridge);
        snprintf(nm->chain, sizeof(nm->chain), "AI2IN-FWD-%s", bridge);
        snprintf(nm->out, sizeof(nm->out), "AI2IN-OUT-%s", bridge);
        snprintf(nm->nat, sizeof(nm->nat), "AI2IN-NAT-%s", bridge);
        snprintf(nm->sbx, sizeof(nm->sbx), "AI2IN-SBX-%s", bridge);
}

/* Runs `tool -w -t table op chain [pos] spec…`; as spawn_check. */
static int rule_run(const char *tool, const char *table, const char *op, const char *chain, const char *pos,
                    const char *const *spec, char *err, size_t errlen) {
        char *argv[8 + SPEC_MAX];
        unsigned i = 0;

        argv[i++] = (char *) tool;
        argv[i++] = "-w";
        argv[i++] = "-t";
        argv[i++] = (char *) table;
        argv[i++] = (char *) op;
        argv[i++] = (char *) chain;
        if (pos)
                argv[i++] = (char *) pos;
        for (unsigned k = 0; spec[k]; k++)
                argv[i++] = (char *) spec[k];
        argv[i] = NULL;
        return spawn_check(argv, err, errlen);
}

/* Deletes every copy of g's rules; returns how many there were. */
static unsigned delete_all(const struct group *g) {
        unsigned n = 0;

        for (unsigned i = 0; i < g->n; i++)
                for (unsigned k = 0; k < DELETE_MAX && rule_run(g->tool, g->table, "-D", g->chain, NULL, g->rules[i].spec, NULL, 0) >= 0; k++)
                        n++;
        return n;
}

/* Whether line (one rule of `-S`) carries the comment c exactly (iptables quotes it). */
static bool has_comment(const char *line, const char *c) {
        char quoted[40], bare[40];
        const char *p;

        snprintf(quoted, sizeof(quoted), "--comment \"%s\"", c);
        snprintf(bare, sizeof(bare), "--comment %s", c);
        if (strstr(line, quoted))
                return true;
        p = strstr(line, bare);
        return p && (p[strlen(bare)] == ' ' || p[strlen(bare)] == 0);
}

/* Whether g's chain holds exactly g->n rules of the engine and none of them comes after a
 * rule of another owner. */
static bool in_place(const struct group *g, const struct names *nm) {
        char *argv[] = {(char *) g->tool, "-w", "-t", (char *) g->table, "-S", (char *) g->chain, NULL};
        _cleanup_buf_ struct buf out;
        bool foreign = false, misplaced = false;
        unsigned ours = 0;
        int status;

        buf_init(&out, LISTING_MAX);
        if (spawn_run(argv, NULL, &status, &out) < 0 || status != 0 || !out.data)
                return false;
        for (char *line = out.data, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (strncmp(line, "-A ", 3) != 0)
                        continue;
                if (has_comment(line, nm->comment)) {
                        ours++;
                        misplaced |= foreign;
                } else if (!strstr(line, "--comment \"ai2in:") && !strstr(line, "--comment ai2in:"))
                        foreign = true;
        }
        return ours == g->n && !misplaced;
}

static int ensure_group(const struct group *g, const struct names *nm, struct error *e) {
        char msg[512];
        bool ok = in_place(g, nm);
        unsigned had;

        for (unsigned i = 0; ok && i < g->n; i++)
                ok = rule_run(g->tool, g->table, "-C", g->chain, NULL, g->rules[i].spec, NULL, 0) >= 0;
        if (ok)
                return 0;
        /* Removed, then put back at the top: a copy left below another owner's ACCEPT would
         * only mislead whoever reads the rules. */
        had = delete_all(g);
        for (unsigned i = g->n; i-- > 0;)
                if (rule_run(g->tool, g->table, "-I", g->chain, "1", g->rules[i].spec, msg, sizeof(msg)) < 0)
                        return error_set(e, EIO, ERR_INTERNAL, "cannot add a firewall rule for %s to %s %s: %s", nm->bridge,
                                         g->tool, g->chain, msg);
        if (had == 0)
                log_info("firewall: rules for %s installed in %s %s", nm->bridge, g->tool, g->chain);
        else
                log_info("firewall: the rules of %s in %s %s were incomplete or below another owner's; put back at the top",
                         nm->bridge, g->tool, g->chain);
        return 0;
}

/* The rules of the engine's own chains, in iptables-restore's format. */
static int chains_text(const struct names *nm, const struct firewall_policy *p, struct buf *b) {
        const char *rej = "-j REJECT --reject-with icmp-admin-prohibited";
        const char *c = nm->comment;
        int r = 0;

        r |= buf_printf(b, "*filter\n:%s - [0:0]\n:%s - [0:0]\n", nm->chain, nm->out);
        /* Replies (to the sandboxes' own connections; nothing from outside starts one). */
        r |= buf_printf(b, "-A %s -o %s -m conntrack --ctstate ESTABLISHED,RELATED -m comment --comment %s -j ACCEPT\n",
                        nm->chain, nm->bridge, c);
        r |= buf_printf(b, "-A %s -i %s -m comment --comment %s -j %s\n", nm->chain, nm->bridge, c, nm->sbx);
        r |= buf_printf(b, "-A %s -i %s -s %s -m comment --comment %s -j %s\n", nm->chain, nm->bridge, p->egress, c, nm->out);
        /* The rest from a sandbox is refused at once (EHOSTUNREACH), not left to time out. */
        r |= buf_printf(b, "-A %s -i %s -m comment --comment %s %s\n", nm->chain, nm->bridge, c, rej);
        r |= buf_printf(b, "-A %s -m comment --comment %s -j DROP\n", nm->chain, c);
        /* Egress: the engine's deny list first, whatever the sandbox asked. (DNS is not
         * forwarded: the engine's forwarder on the gateway asks the resolver itself.) */
        r |= buf_printf(b, "-A %s -d 169.254.0.0/16 -m comment --comment %s %s\n", nm->out, c, rej);
        r |= buf_printf(b, "-A %s -d %s -m comment --comment %s %s\n", nm->out, p->pool, c, rej);
        for (unsigned i = 0; i < p->n_deny_out; i++)
                r |= buf_printf(b, "-A %s -d %s -m comment --comment %s %s\n", nm->out, p->deny_out[i], c, rej);
        r |= buf_printf(b, "-A %s -m comment --comment %s -j ACCEPT\nCOMMIT\n", nm->out, c);
        r |= buf_printf(b, "*nat\n:%s - [0:0]\n", nm->nat);
        /* The whole pool: a sandbox with rules of its own has its address in the upper half;
         * what may leave at all is the filter table's to say. */
        r |= buf_printf(b, "-A %s -s %s -m comment --comment %s -j MASQUERADE\nCOMMIT\n", nm->nat, p->pool, c);
        return r < 0 ? -ENOMEM : 0;
}

/* Creates or refills the engine's chains in one iptables-restore transaction (--noflush: a
 * chain it declares is flushed and refilled at once, the rest of the tables untouched), so
 * that no packet ever meets a half-made chain. */
/* Runs iptables-restore --noflush on text (a chain it declares is flushed and refilled at
 * once, the rest of the tables untouched): one transaction, so no packet ever meets a
 * half-made chain. */
static int restore(const struct buf *text, const char *bridge, struct error *e) {
        char *argv[] = {"iptables-restore", "-w", "--noflush", "/dev/fd/3", NULL};
        _cleanup_buf_ struct buf out;
        _cleanup_close_ int fd = -1;
        int status, r;

        buf_init(&out, 64 * 1024);
        fd = memfd_create("ai2in-rules", MFD_CLOEXEC);
        if (fd < 0 || write(fd, text->data, text->len) != (ssize_t) text->len)
                return error_set(e, errno, ERR_INTERNAL, "cannot write the firewall rules of %s: %s", bridge, strerror(errno));
        struct spawn_opts o = {.extra_fd = fd, .stdio_fd = -1};
        r = spawn_run(argv, &o, &status, &out);
        if (r < 0 || status != 0) {
                char last[400] = "";
                if (out.data)
                        text_last_line(out.data, out.len, last, sizeof(last));
                return error_set(e, r < 0 ? -r : EIO, ERR_INTERNAL, "cannot load firewall rules for %s: %s", bridge,
                                 r < 0 ? strerror(-r) : last);
        }
        return 0;
}

static int load_chains(const struct names *nm, const struct firewall_policy *p, struct error *e) {
        char *create[] = {"iptables", "-w", "-N", (char *) nm->sbx, NULL};
        _cleanup_buf_ struct buf text;

        /* Not declared in the transaction, which would flush it: it holds the jumps of live
         * sandboxes, which outlive the engine. */
        (void) spawn_check(create, NULL, 0); /* fails when it exists, which is fine */
        buf_init(&text, 1 << 20);
        if (chains_text(nm, p, &text) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "too many firewall rules for %s", nm->bridge);
        return restore(&text, nm->bridge, e);
}

int firewall_ensure(const char *bridge, bool ipv6, const struct firewall_policy *p, struct error *e) {
        struct group g[GROUPS_MAX];
        struct names nm;
        unsigned n;
        int r;

        names_init(&nm, bridge, p->gateway);
        r = load_chains(&nm, p, e); /* before the jumps to them */
        if (r < 0)
                return r;
        n = groups(&nm, ipv6, g);
        for (unsigned i = 0; i < n; i++) {
                r = ensure_group(&g[i], &nm, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

int firewall_sandbox_sweep(const char *bridge, bool (*drop)(const char *veth, const char *ip, void *data), void *data);

static bool drop_all(const char *veth, const char *ip, void *data) {
        return true;
}

/* Deletes every rule of the engine's in g's chain as listed (`-S`), in one transaction:
 * for the rules that name the gateway, which whoever removes the bridge may not know. */
static void purge(const struct group *g, const struct names *nm) {
        char *argv[] = {(char *) g->tool, "-w", "-t", (char *) g->table, "-S", (char *) g->chain, NULL};
        _cleanup_buf_ struct buf out, text;
        struct error e = {0};
        unsigned found = 0;
        int status;

        buf_init(&out, LISTING_MAX);
        buf_init(&text, LISTING_MAX);
        if (spawn_run(argv, NULL, &status, &out) < 0 || status != 0 || !out.data)
                return;
        (void) buf_printf(&text, "*%s\n", g->table);
        for (char *line = out.data, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (strncmp(line, "-A ", 3) == 0 && has_comment(line, nm->comment) && buf_printf(&text, "-D%s\n", line + 2) >= 0)
                        found++;
        }
        (void) buf_printf(&text, "COMMIT\n");
        if (found > 0 && restore(&text, nm->bridge, &e) < 0)
                log_warn("%s, ignoring", e.message);
}

void firewall_remove(const char *bridge) {
        struct group g[GROUPS_MAX];
        struct names nm;
        unsigned n;

        names_init(&nm, bridge, NULL);
        n = groups(&nm, true, g);
        for (unsigned i = 0; i < n; i++) {
                if (streq(g[i].tool, "iptables"))
                        purge(&g[i], &nm);
                else
                        delete_all(&g[i]);
        }
        (void) firewall_sandbox_sweep(bridge, drop_all, NULL);
        /* Flushed first: the FWD chain jumps to the OUT chain, which cannot go before. */
        const char *chains[][2] = {{"filter", nm.chain}, {"filter", nm.out}, {"filter", nm.sbx}, {"nat", nm.nat}};
        for (unsigned op = 0; op < 2; op++)
                for (size_t i = 0; i < ELEMENTSOF(chains); i++) {
                        char *argv[] = {"iptables", "-w", "-t", (char *) chains[i][0], op ? "-X" : "-F", (char *) chains[i][1], NULL};
                        (void) spawn_check(argv, NULL, 0);
                }
}

/* The rules of one sandbox with rules of its own, in its chain AI2IN-<veth>, and its jump
 * from AI2IN-SBX-<bridge>. Order: with domain rules, no DNS but the forwarder's (port 53
 * anywhere else refused: another resolver's answers would not be admitted anyway, and it
 * would leak the names asked); its allow_out ranges and then its set of admitted addresses
 * (each through AI2IN-OUT, so the engine's deny list still applies), its deny_out ranges,
 * then the internet (AI2IN-OUT again) if it has it; what falls off the end is refused in
 * AI2IN-FWD. */
static int sandbox_text(const struct names *nm, const struct firewall_sandbox *s, struct buf *b) {
        const char *c = nm->comment, *rej = "-j REJECT --reject-with icmp-admin-prohibited";
        char chain[32];
        int r = 0;

        snprintf(chain, sizeof(chain), "AI2IN-%s", s->veth);
        r |= buf_printf(b, "*filter\n:%s - [0:0]\n", chain);
        for (unsigned i = 0; s->domains && i < 2; i++)
                r |= buf_printf(b, "-A %s -p %s --dport 53 -m comment --comment %s %s\n", chain, i ? "tcp" : "udp", c, rej);
        for (unsigned i = 0; i < s->n_allow_out; i++)
                r |= buf_printf(b, "-A %s -d %s -m comment --comment %s -j %s\n", chain, s->allow_out[i], c, nm->out);
        if (s->domains)
                r |= buf_printf(b, "-A %s -m set --match-set %s dst -m comment --comment %s -j %s\n", chain, chain, c, nm->out);
        for (unsigned i = 0; i < s->n_deny_out; i++)
                r |= buf_printf(b, "-A %s -d %s -m comment --comment %s %s\n", chain, s->deny_out[i], c, rej);
        if (s->internet)
                r |= buf_printf(b, "-A %s -m comment --comment %s -j %s\n", chain, c, nm->out);
        r |= buf_printf(b, "-A %s -s %s/32 -m comment --comment %s -j %s\nCOMMIT\n", nm->sbx, s->ip, c, chain);
        return r < 0 ? -ENOMEM : 0;
}

/* The address sets are made, filled and destroyed through libipset in this process: a run
 * of the `ipset` program costs 2-3 ms, a netlink request through the library some tens of
 * microseconds (bench/egress), which matters on the DNS forwarder's only thread. One
 * session for the process, under a mutex (libipset's sessions are not thread-safe). */
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ipset *set_session;
static char set_err[256];

static int set_custom_error(struct ipset *s, void *p, int status, const char *msg, ...) {
        va_list ap;

        va_start(ap, msg);
        vsnprintf(set_err, sizeof(set_err), msg, ap);
        va_end(ap);
        return -1;
}

/* An error (which `-exist` may turn into a return of 0: set_run looks at set_err). */
static int set_standard_error(struct ipset *s, void *p) {
        struct ipset_session *ss = ipset_session(s);
        const char *m = ipset_session_report_msg(ss);
        bool error = ipset_session_report_type(ss) == IPSET_ERROR;

        if (error)
                snprintf(set_err, sizeof(set_err), "%s", m && *m ? m : "ipset failed");
        ipset_session_report_reset(ss);
        return error ? -1 : 0;
}

static int set_discard_output(struct ipset_session *s, void *p, const char *fmt, ...) {
        return 0;
}

static void set_types_load(void) {
        ipset_load_types();
}

/* Runs each line of text (the `ipset` program's arguments, one command a line) in order;
 * stops at the first that fails, its reason in err. */
static int set_run(const char *text, char *err, size_t errlen) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        _cleanup_free_ char *copy = strdup(text);
        int r = 0;

        if (!copy) {
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
        }
        pthread_once(&once, set_types_load);
        pthread_mutex_lock(&set_lock);
        if (!set_session && (set_session = ipset_init()))
                ipset_custom_printf(set_session, set_custom_error, set_standard_error, set_discard_output, NULL);
        if (!set_session) {
                pthread_mutex_unlock(&set_lock);
                snprintf(err, errlen, "cannot open an ipset session");
                return -ENOMEM;
        }
        for (char *line = copy, *next; line && *line && r == 0; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                set_err[0] = 0;
                /* A line's -exist stays in the session: each starts without. */
                ipset_envopt_unset(ipset_session(set_session), IPSET_ENV_EXIST);
                if (ipset_parse_line(set_session, line) != 0 || *set_err) {
                        snprintf(err, errlen, "%s", *set_err ? set_err : "ipset failed");
                        err[strcspn(err, "\n")] = 0;
                        r = -EIO;
                }
                ipset_session_report_reset(ipset_session(set_session));
        }
        pthread_mutex_unlock(&set_lock);
        return r;
}

static void set_destroy(const char *veth) {
        char line[64], err[256];

        /* None is fine: whether it has one is not known after a restart. */
        snprintf(line, sizeof(line), "destroy AI2IN-%s", veth);
        if (set_run(line, err, sizeof(err)) < 0 && !strstr(err, "does not exist"))
                log_warn("cannot destroy the address set AI2IN-%s: %s, ignoring", veth, err);
}

int firewall_set_admit(const char *veth, const struct firewall_admit *a, unsigned n, char *err, size_t errlen) {
        _cleanup_buf_ struct buf text;
        int r = 0;

        buf_init(&text, 64 * 1024);
        for (unsigned i = 0; i < n; i++)
                r |= buf_printf(&text, "add -exist AI2IN-%s %s timeout %u\n", veth, a[i].ip, a[i].timeout);
        if (r < 0) {
                snprintf(err, errlen, "too many addresses");
                return -E2BIG;
        }
        return n == 0 ? 0 : set_run(text.data, err, errlen);
}

int firewall_sandbox_add(const char *bridge, const struct firewall_sandbox *s, struct error *e) {
        _cleanup_buf_ struct buf text;
        struct names nm;
        char set[160], msg[256];
        int r;

        names_init(&nm, bridge, s->gateway);
        buf_init(&text, 1 << 20);
        if (sandbox_text(&nm, s, &text) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "too many firewall rules for %s", s->veth);
        /* Before the chain that names it. Entries without a timeout of their own do not exist:
         * each comes with its answer's (firewall_set_admit). */
        snprintf(set, sizeof(set), "create -exist AI2IN-%s hash:ip family inet timeout %d maxelem %d\n", s->veth,
                 FIREWALL_SET_TIMEOUT_MAX, FIREWALL_SET_MAX);
        if (s->domains && (r = set_run(set, msg, sizeof(msg))) < 0)
                return error_set(e, -r, ERR_INTERNAL, "cannot create the address set of %s: %s", s->veth, msg);
        r = restore(&text, bridge, e);
        if (r < 0 && s->domains)
                set_destroy(s->veth);
        return r;
}

int firewall_sandbox_sweep(const char *bridge, bool (*drop)(const char *veth, const char *ip, void *data), void *data) {
        _cleanup_buf_ struct buf listing, text;
        struct error e = {0};
        struct names nm;
        unsigned dropped = 0;
        int status;

        char veths[SWEEP_MAX][16];
        unsigned nv = 0;

        names_init(&nm, bridge, NULL);
        char *argv[] = {"iptables", "-w", "-S", nm.sbx, NULL};
        buf_init(&listing, LISTING_MAX);
        buf_init(&text, LISTING_MAX);
        if (spawn_run(argv, NULL, &status, &listing) < 0 || status != 0 || !listing.data)
                return 0; /* no chain: no sandbox has rules */
        (void) buf_printf(&text, "*filter\n");
        for (char *line = listing.data, *next; line && *line; line = next) {
                char ip[16] = "";
                const char *target, *src;

                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                target = strstr(line, " -j AI2IN-");
                src = strstr(line, " -s ");
                if (strncmp(line, "-A ", 3) != 0 || !target || !src || sscanf(src, " -s %15[0-9.]", ip) != 1 ||
                    !drop(target + strlen(" -j AI2IN-"), ip, data))
                        continue;
                (void) buf_printf(&text, "-D%s\n-F %s\n-X %s\n", line + 2, target + 4, target + 4);
                if (nv < SWEEP_MAX)
                        snprintf(veths[nv++], 16, "%s", target + strlen(" -j AI2IN-"));
                dropped++;
        }
        (void) buf_printf(&text, "COMMIT\n");
        if (dropped > 0 && restore(&text, bridge, &e) < 0)
                log_warn("%s, ignoring", e.message);
        /* Their address sets, once no rule names them (a set in use cannot be destroyed). */
        for (unsigned i = 0; i < nv; i++)
                set_destroy(veths[i]);
        return (int) dropped;
}

int firewall_sandbox_remove(const char *bridge, const char *veth, const char *ip) {
        _cleanup_buf_ struct buf text;
        struct error e = {0};
        struct names nm;

        names_init(&nm, bridge, NULL);
        buf_init(&text, 4096);
        if (buf_printf(&text, "*filter\n-D %s -s %s/32 -m comment --comment %s -j AI2IN-%s\n-F AI2IN-%s\n-X AI2IN-%s\nCOMMIT\n",
                       nm.sbx, ip, nm.comment, veth, veth, veth) < 0 ||
            restore(&text, bridge, &e) < 0)
                return -EIO;
        /* Whether it has one is not known after a restart: a missing one costs a failed run. */
        set_destroy(veth);
        return 0;
}
