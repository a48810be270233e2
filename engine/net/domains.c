/* domains.c — see domains.h. The table is one pointer per pool address, under one mutex
 * that the forwarder's thread takes only to read an entry or note an admission; the
 * `ipset` run that admits addresses happens outside it. An entry remembers its last
 * RECENT admissions so that a name asked again and again (every HTTP request of a client
 * that does not cache) costs no program run while its address has most of its time left. */
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

#define RECENT 32
#define WARN_EVERY_MS 60000 /* a sandbox's failed admissions are logged once a minute at most */

struct recent {
        uint32_t addr;
        int64_t until_ms;
};

struct entry {
        char veth[16];
        bool dns;
        struct strv patterns;
        struct recent recent[RECENT];
        unsigned next_recent;
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

/* Whether addr was admitted to en with at least half of timeout left. */
static bool recently(const struct entry *en, uint32_t addr, unsigned timeout, int64_t now) {
        for (unsigned i = 0; i < RECENT; i++)
                if (en->recent[i].addr == addr && en->recent[i].until_ms - now >= (int64_t) timeout * 500)
                        return true;
        return false;
}

/* The addresses of a that src's entry (veth) does not have for long enough, into out;
 * the TTLs in msg lowered to what the set keeps. Under the lock. */
static unsigned to_admit(struct domains *d, uint32_t i, const char *veth, const struct dnsmsg_addrs *a, uint8_t *msg,
                         struct firewall_admit *out) {
        struct entry *en = d->by_index[i];
        int64_t now = now_ms();
        unsigned n = 0;

        for (unsigned k = 0; k < a->n; k++) {
                unsigned ttl = a->a[k].ttl, timeout = ttl < DOMAINS_TTL_MIN ? DOMAINS_TTL_MIN : ttl;
                if (timeout > FIREWALL_SET_TIMEOUT_MAX) {
                        timeout = FIREWALL_SET_TIMEOUT_MAX;
                        dnsmsg_set_ttl(msg, a->a[k].ttl_offset, timeout);
                }
                if (!en || !streq(en->veth, veth) || recently(en, a->a[k].addr, timeout, now))
                        continue;
                struct in_addr in = {.s_addr = a->a[k].addr};
                inet_ntop(AF_INET, &in, out[n].ip, sizeof(out[n].ip));
                out[n++].timeout = timeout;
        }
        return n;
}

static void remember(struct domains *d, uint32_t i, const char *veth, const struct firewall_admit *a, unsigned n) {
        struct entry *en = d->by_index[i];
        int64_t now = now_ms();

        for (unsigned k = 0; en && streq(en->veth, veth) && k < n; k++) {
                struct in_addr in;
                inet_pton(AF_INET, a[k].ip, &in);
                en->recent[en->next_recent] = (struct recent){in.s_addr, now + (int64_t) a[k].timeout * 1000};
                en->next_recent = (en->next_recent + 1) % RECENT;
        }
}

static int answered(void *data, uint32_t src, const struct dnsmsg_question *q, uint8_t *msg, size_t len) {
        struct domains *d = data;
        struct firewall_admit admit[DNSMSG_ADDRS_MAX];
        struct dnsmsg_addrs a;
        uint32_t i = index_of(d, src);
        char veth[16] = "", err[256];
        unsigned n;

        if (i >= d->size)
                return 0;
        pthread_mutex_lock(&d->lock);
        if (d->by_index[i] && matches(d->by_index[i], q->name))
                snprintf(veth, sizeof(veth), "%s", d->by_index[i]->veth);
        pthread_mutex_unlock(&d->lock);
        /* Not a name of its rules, or no addresses: nothing to let through. */
        if (!*veth || dnsmsg_answer_addrs(msg, len, q, &a) < 0 || a.n == 0)
                return 0;
        pthread_mutex_lock(&d->lock);
        n = to_admit(d, i, veth, &a, msg, admit);
        pthread_mutex_unlock(&d->lock);
        if (n == 0)
                return 0;
        if (firewall_set_admit(veth, admit, n, err, sizeof(err)) < 0) {
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
