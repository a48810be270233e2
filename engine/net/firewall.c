/* firewall.c — see firewall.h. Rules are made with iptables and ip6tables (`-w`: they wait
 * for the xtables lock), a handful of program runs at the engine's start and none per
 * sandbox. Where a rule stands is read from `-S CHAIN`; a rule is the engine's when its
 * comment is exactly `ai2in:<bridge>`, another engine's when it starts `ai2in:`. */
#include "net/firewall.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "spawn.h"

#define SPEC_MAX 14
#define DELETE_MAX 64   /* copies of one rule removed at most (someone may have added more) */
#define LISTING_MAX (4 << 20)

struct names {
        const char *bridge;
        char comment[32]; /* ai2in:<bridge>; a bridge name has at most 15 characters */
        char chain[32];   /* AI2IN-FWD-<bridge>: 25 at most, iptables allows 28 */
};

/* A rule: what follows the chain's name, NULL-terminated. */
struct rule {
        const char *spec[SPEC_MAX];
};

/* A built-in chain and the engine's rules in it, top to bottom. */
struct group {
        const char *tool;
        const char *chain;
        unsigned n;
        struct rule rules[2];
};

#define TAG(nm) "-m", "comment", "--comment", (nm)->comment

static unsigned groups(const struct names *nm, bool ipv6, struct group out[4]) {
        const char *br = nm->bridge;
        unsigned n = 0;

        out[n++] = (struct group){"iptables", "INPUT", 2, {
                {{"-i", br, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", TAG(nm), "-j", "ACCEPT", NULL}},
                {{"-i", br, TAG(nm), "-j", "DROP", NULL}},
        }};
        out[n++] = (struct group){"iptables", "FORWARD", 2, {
                {{"-i", br, TAG(nm), "-j", nm->chain, NULL}},
                {{"-o", br, TAG(nm), "-j", nm->chain, NULL}},
        }};
        if (!ipv6)
                return n;
        out[n++] = (struct group){"ip6tables", "INPUT", 1, {{{"-i", br, TAG(nm), "-j", "DROP", NULL}}}};
        out[n++] = (struct group){"ip6tables", "FORWARD", 2, {
                {{"-i", br, TAG(nm), "-j", "DROP", NULL}},
                {{"-o", br, TAG(nm), "-j", "DROP", NULL}},
        }};
        return n;
}

static void names_init(struct names *nm, const char *bridge) {
        nm->bridge = bridge;
        snprintf(nm->comment, sizeof(nm->comment), "ai2in:%s", bridge);
        snprintf(nm->chain, sizeof(nm->chain), "AI2IN-FWD-%s", bridge);
}

/* Runs `tool -w op chain [pos] spec…`; as spawn_check. */
static int rule_run(const char *tool, const char *op, const char *chain, const char *pos, const char *const *spec,
                    char *err, size_t errlen) {
        char *argv[6 + SPEC_MAX];
        unsigned i = 0;

        argv[i++] = (char *) tool;
        argv[i++] = "-w";
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
                for (unsigned k = 0; k < DELETE_MAX && rule_run(g->tool, "-D", g->chain, NULL, g->rules[i].spec, NULL, 0) >= 0; k++)
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
        char *argv[] = {(char *) g->tool, "-w", "-S", (char *) g->chain, NULL};
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
                ok = rule_run(g->tool, "-C", g->chain, NULL, g->rules[i].spec, NULL, 0) >= 0;
        if (ok)
                return 0;
        /* Removed, then put back at the top: a copy left below another owner's ACCEPT would
         * only mislead whoever reads the rules. */
        had = delete_all(g);
        for (unsigned i = g->n; i-- > 0;)
                if (rule_run(g->tool, "-I", g->chain, "1", g->rules[i].spec, msg, sizeof(msg)) < 0)
                        return error_set(e, EIO, ERR_INTERNAL, "cannot add a firewall rule for %s to %s %s: %s", nm->bridge,
                                         g->tool, g->chain, msg);
        if (had == 0)
                log_info("firewall: rules for %s installed in %s %s", nm->bridge, g->tool, g->chain);
        else
                log_info("firewall: the rules of %s in %s %s were incomplete or below another owner's; put back at the top",
                         nm->bridge, g->tool, g->chain);
        return 0;
}

static int ensure_chain(const struct names *nm, struct error *e) {
        const char *drop[] = {TAG(nm), "-j", "DROP", NULL};
        char *create[] = {"iptables", "-w", "-N", (char *) nm->chain, NULL};
        char msg[512];

        (void) spawn_check(create, NULL, 0); /* fails when it exists, which is fine */
        if (rule_run("iptables", "-C", nm->chain, NULL, drop, NULL, 0) >= 0)
                return 0;
        if (rule_run("iptables", "-A", nm->chain, NULL, drop, msg, sizeof(msg)) < 0)
                return error_set(e, EIO, ERR_INTERNAL, "cannot make the forward policy chain %s: %s", nm->chain, msg);
        return 0;
}

int firewall_ensure(const char *bridge, bool ipv6, struct error *e) {
        struct group g[4];
        struct names nm;
        unsigned n;
        int r;

        names_init(&nm, bridge);
        r = ensure_chain(&nm, e); /* before the jumps to it */
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

void firewall_remove(const char *bridge) {
        struct group g[4];
        struct names nm;
        unsigned n;

        names_init(&nm, bridge);
        n = groups(&nm, true, g);
        for (unsigned i = 0; i < n; i++)
                delete_all(&g[i]);
        char *flush[] = {"iptables", "-w", "-F", nm.chain, NULL};
        char *del[] = {"iptables", "-w", "-X", nm.chain, NULL};
        (void) spawn_check(flush, NULL, 0);
        (void) spawn_check(del, NULL, 0);
}
