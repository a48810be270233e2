/* domains.c — see domains.h. The table is one pointer per pool address, under one mutex
 * that the forwarder's thread takes only to read an entry or note an admission; the
 * admission itself (firewall_set_admit) happens outside it. An entry remembers every
 * address it admitted and until when (as many as its set holds), so that an address is
 * admitted again only when the answer's TTL outlasts what its set entry has left: a name
 * asked again and again (every HTTP request of a client that does not cache) costs nothing,
 * and an entry is never shortened below what an earlier answer told the sandbox. */
#include "net/domains.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "net/dnsfwd.h"
#include "net/dnsmsg.h"
#include "net/firewall.h"
#include "strv.h"
#include "timeutil.h"

#define WARN_EVERY_MS 60000 /* a sandbox's failed admissions are logged once a minute at most */

struct admitted {
        uint32_t addr;
        int64_t until_ms;
};

struct entry {
        char veth[16];
        bool dns;
        struct strv patterns;
        struct admitted *admitted; /* what its set holds, as far as this engine made it */
        unsigned n_admitted, cap_admitted;
        int64_t warned_ms; /* when a failed admission was last logged (a full set fails every answer) */
};

struct domains {
        pthread_mutex_t lock;
        uint32_t network, size;
        struct entry **by_index;
        struct dnsfwd *fwd;
};

static void entry_free(struct entry *en) {
        if (!en)
                return;
        strv_done(&en->patterns);
        free(en->admitted);
        free(en);
}

/* The index of address a (network order) in the pool, or d->size. */
static uint32_t index_of(const struct domains *d, uint32_t a) {
        uint32_t i = ntohl(a) - d->network;
        return i < d->size ? i : d->size;
}

static uint32_t index_of_text(const struct domains *d, const char *ip) {
        struct in_addr in;

        return ip && inet_pton(AF_INET, ip, &in) == 1 ? index_of(d, in.s_addr) : d->size;
}

static bool matches(const struct entry *en, const char *name) {
        for (size_t i = 0; i < en->patterns.n; i++)
                if (dnsmsg_pattern_match(en->patterns.v[i], name))
                        return true;
        return false;
}

/* A sandbox allowed out asks about anything. One that is not asks only about the names of
 * its domain rules: a query about any other name would be a way out too (it carries data to
 * whoever serves that name, and its answer brings data back: DNS tunnelling), so one
 * without domain rules (only addresses in allow_out) asks nothing. */
static bool may_ask(void *data, uint32_t src, const char *name) {
        struct domains *d = data;
        uint32_t i = index_of(d, src);
        const struct entry *en;
        bool r;

        if (i >= 2 && i < d->size / 2)
                return true;
        pthread_mutex_lock(&d->lock);
        en = i < d->size ? d->by_index[i] : NULL;
        r = en && en->dns && en->patterns.n > 0 && (!name || matches(en, name));
        pthread_mutex_unlock(&d->lock);
        return r;
}

static struct admitted *admitted_find(const struct entry *en, uint32_t addr) {
        for (unsigned i = 0; i < en->n_admitted; i++)
                if (en->admitted[i].addr == addr)
                        return &en->admitted[i];
        return NULL;
}

/* The addresses of a that src's entry (veth) does not have for at least their (clamped)
 * TTL, into out; the TTLs in msg lowered to what the set keeps. Under the lock. */
static unsigned to_admit(struct domains *d, uint32_t i, const char *veth, const struct dnsmsg_addrs *a, uint8_t *msg,
                         struct firewall_admit *out, unsigned *fresh) {
        struct entry *en = d->by_index[i];
        int64_t now = now_ms();
        unsigned n = 0;

        *fresh = 0;
        for (unsigned k = 0; k < a->n; k++) {
                unsigned ttl = a->a[k].ttl, timeout = ttl < DOMAINS_TTL_MIN ? DOMAINS_TTL_MIN : ttl;
                const struct admitted *had;

                if (timeout > FIREWALL_SET_TIMEOUT_MAX) {
                        timeout = FIREWALL_SET_TIMEOUT_MAX;
                        dnsmsg_set_ttl(msg, a->a[k].ttl_offset, timeout);
                }
                if (!en || !streq(en->veth, veth))
                        continue;
                /* Its entry outlasts this answer's TTL: nothing to do (and admitting it again
                 * with a shorter timeout would cut short an earlier, longer answer). */
                had = admitted_find(en, a->a[k].addr);
                if (had && had->until_ms - now >= (int64_t) timeout * 1000)
                        continue;
                *fresh += !had;
                struct in_addr in = {.s_addr = a->a[k].addr};
                inet_ntop(AF_INET, &in, out[n].ip, sizeof(out[n].ip));
                out[n++].timeout = timeout;
        }
        return n;
}

/* Forgets the addresses whose set entries have expired. */
static void admitted_expire(struct entry *en, int64_t now) {
        unsigned kept = 0;

        for (unsigned i = 0; i < en->n_admitted; i++)
                if (en->admitted[i].until_ms > now)
                        en->admitted[kept++] = en->admitted[i];
        en->n_admitted = kept;
}

/* Whether en's set has room for k more addresses (expired ones dropped first): the set
 * itself would refuse them, but not always at exactly its maxelem (a hash set with
 * timeouts may take one more before its garbage collection). */
static bool has_room(struct entry *en, unsigned k, int64_t now) {
        if (en->n_admitted + k > FIREWALL_SET_MAX)
                admitted_expire(en, now);
        return en->n_admitted + k <= FIREWALL_SET_MAX;
}

/* Room for one more admitted address: expired ones dropped first. */
static int admitted_room(struct entry *en, int64_t now) {
        if (en->n_admitted < en->cap_admitted)
                return 0;
        admitted_expire(en, now);
        if (en->n_admitted < en->cap_admitted)
                return 0;
        if (en->cap_admitted >= FIREWALL_SET_MAX)
                return -ENOSPC;
        unsigned cap = en->cap_admitted ? en->cap_admitted * 2 : 16;
        struct admitted *bigger = realloc(en->admitted, MIN(cap, FIREWALL_SET_MAX) * sizeof(*bigger));
        if (!bigger)
                return -ENOMEM;
        en->admitted = bigger;
        en->cap_admitted = MIN(cap, FIREWALL_SET_MAX);
        return 0;
}

static void remember(struct domains *d, uint32_t i, const char *veth, const struct firewall_admit *a, unsigned n) {
        struct entry *en = d->by_index[i];
        int64_t now = now_ms();

        for (unsigned k = 0; en && streq(en->veth, veth) && k < n; k++) {
                struct admitted *had;
                struct in_addr in;
                int64_t until = now + (int64_t) a[k].timeout * 1000;

                inet_pton(AF_INET, a[k].ip, &in);
                had = admitted_find(en, in.s_addr);
                if (had)
                        had->until_ms = until;
                else if (admitted_room(en, now) == 0)
                        en->admitted[en->n_admitted++] = (struct admitted){in.s_addr, until};
        }
}

static int answered(void *data, uint32_t src, const struct dnsmsg_question *q, uint8_t *msg, size_t len) {
        struct domains *d = data;
        struct firewall_admit admit[DNSMSG_ADDRS_MAX];
        struct dnsmsg_addrs a;
        uint32_t i = index_of(d, src);
        char veth[16] = "", err[256] = "";
        unsigned n, fresh;
        bool refused; /* before any admission: too many addresses, or no room for them */

        if (i >= d->size)
                return 0;
        pthread_mutex_lock(&d->lock);
        if (d->by_index[i] && matches(d->by_index[i], q->name))
                snprintf(veth, sizeof(veth), "%s", d->by_index[i]->veth);
        pthread_mutex_unlock(&d->lock);
        /* Not a name of its rules, or no addresses: nothing to let through. */
        if (!*veth || dnsmsg_answer_addrs(msg, len, q, &a) < 0 || a.n == 0)
                return 0;
        /* What it could not let through would be connected to and refused: refused whole. */
        if (a.more) {
                n = 0;
                refused = true;
                snprintf(err, sizeof(err), "the answer has more than %d addresses", DNSMSG_ADDRS_MAX);
        } else {
                pthread_mutex_lock(&d->lock);
                n = to_admit(d, i, veth, &a, msg, admit, &fresh);
                refused = fresh > 0 && d->by_index[i] && !has_room(d->by_index[i], fresh, now_ms());
                pthread_mutex_unlock(&d->lock);
                if (n == 0)
                        return 0;
                if (refused)
                        snprintf(err, sizeof(err), "its address set is full (%d addresses)", FIREWALL_SET_MAX);
        }
        if (refused || firewall_set_admit(veth, admit, n, err, sizeof(err)) < 0) {
                struct entry *en;
                bool warn;

                pthread_mutex_lock(&d->lock);
                en = d->by_index[i];
                warn = en && streq(en->veth, veth) && now_ms() - en->warned_ms >= WARN_EVERY_MS;
                if (warn)
                        en->warned_ms = now_ms();
                pthread_mutex_unlock(&d->lock);
                if (warn)
                        log_warn("dns: cannot let %s reach the addresses of %s: %s; it gets SERVFAIL (said once a minute)", veth,
                                 q->name, err);
                return -EIO;
        }
        pthread_mutex_lock(&d->lock);
        remember(d, i, veth, admit, n);
        pthread_mutex_unlock(&d->lock);
        return 0;
}

static const struct dnsfwd_ops ops = {.may_ask = may_ask, .answered = answered};

int domains_new(uint32_t network, uint32_t size, const char *gateway, const char *upstream, struct domains **ret, struct error *e) {
        struct domains *d = calloc(1, sizeof(*d));
        int r;

        if (!d || !(d->by_index = calloc(size, sizeof(*d->by_index)))) {
                free(d);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        pthread_mutex_init(&d->lock, NULL);
        d->network = network;
        d->size = size;
        if (upstream && *upstream && (r = dnsfwd_start(gateway, upstream, &ops, d, &d->fwd, e)) < 0) {
                domains_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

void domains_free(struct domains *d) {
        if (!d)
                return;
        dnsfwd_stop(d->fwd); /* first: its thread reads the table */
        for (uint32_t i = 0; i < d->size; i++)
                entry_free(d->by_index[i]);
        free(d->by_index);
        pthread_mutex_destroy(&d->lock);
        free(d);
}

int domains_set(struct domains *d, const char *ip, const char *veth, bool dns, char **patterns, unsigned n) {
        uint32_t i = index_of_text(d, ip);
        struct entry *en, *old;

        if (i >= d->size)
                return -EINVAL;
        en = calloc(1, sizeof(*en));
        if (!en)
                return -ENOMEM;
        snprintf(en->veth, sizeof(en->veth), "%s", veth);
        en->dns = dns;
        for (unsigned k = 0; k < n; k++)
                if (strv_push(&en->patterns, strdup(patterns[k])) < 0) {
                        entry_free(en);
                        return -ENOMEM;
                }
        pthread_mutex_lock(&d->lock);
        old = d->by_index[i];
        d->by_index[i] = en;
        pthread_mutex_unlock(&d->lock);
        entry_free(old);
        return 0;
}

bool domains_clear(struct domains *d, const char *ip) {
        uint32_t i = index_of_text(d, ip);
        struct entry *old = NULL;
        bool had;

        if (i >= d->size)
                return false;
        pthread_mutex_lock(&d->lock);
        old = d->by_index[i];
        d->by_index[i] = NULL;
        pthread_mutex_unlock(&d->lock);
        had = old && old->patterns.n > 0;
        entry_free(old);
        return had;
}
