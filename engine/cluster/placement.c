/* placement.c — see placement.h. The draw is a reservoir sample of two over one walk of the
 * nodes table (no list of every node is kept); the randomness needs no secrecy, only
 * independence between nodes, so each thread draws from getrandom(2). */
#include "cluster/placement.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "timeutil.h"

struct draw {
        struct engine *eng;
        int64_t now;
        struct node_rec pick[PLACEMENT_CHOICES];
        unsigned seen; /* nodes that take new sandboxes, so far */
};

int64_t placement_capacity(const struct engine *eng, int64_t memory_mb) {
        int64_t c;

        if (eng->cfg.node_capacity > 0)
                return eng->cfg.node_capacity;
        c = eng->cfg.default_memory_mb > 0 ? memory_mb / eng->cfg.default_memory_mb : 0;
        return c > 0 ? c : 1;
}

/* A number in [0, n): getrandom of four bytes does not fail short (no signal can interrupt
 * a request this small); should it fail, 0 (the first candidate) is a fair answer. */
static uint32_t uniform(uint32_t n) {
        uint32_t x = 0;

        if (getrandom(&x, sizeof(x), 0) != (ssize_t) sizeof(x))
                return 0;
        return (uint32_t) (((uint64_t) x * n) >> 32);
}

static bool takes_creates(const struct node_rec *n, int64_t now) {
        return n->state == NODE_ACTIVE && n->lease_until >= now && n->capacity > 0 && n->running < n->capacity;
}

static int on_node(void *data, const struct node_rec *n) {
        struct draw *d = data;
        uint32_t j;

        if (!takes_creates(n, d->now))
                return 0;
        if (d->seen < PLACEMENT_CHOICES)
                d->pick[d->seen] = *n;
        else if ((j = uniform(d->seen + 1)) < PLACEMENT_CHOICES)
                d->pick[j] = *n;
        d->seen++;
        return 0;
}

/* Whether a is the better place: a lower share of its capacity in use (compared without
 * division: running/capacity < running'/capacity'); on a tie this node (no hop), else a coin:
 * the draw keeps the walk's order when it holds every candidate, and paused sandboxes moved
 * by a drain (which change no running count) would all go to the first name. */
static bool better(const struct engine *eng, const struct node_rec *a, const struct node_rec *b) {
        int64_t la = a->running * b->capacity, lb = b->running * a->capacity; /* both <= 100000 x the rows */

        if (la != lb)
                return la < lb;
        if (streq(a->name, eng->cfg.node_name) || streq(b->name, eng->cfg.node_name))
                return streq(a->name, eng->cfg.node_name);
        return uniform(2) == 0;
}

int placement_choose(struct engine *eng, struct node_rec ret[PLACEMENT_CHOICES], unsigned *ret_n, struct error *e) {
        struct draw d = {.eng = eng, .now = now_ms()};
        unsigned n;
        int r;

        r = store_node_foreach(eng->store, on_node, &d, e);
        if (r < 0)
                return r;
        n = d.seen < PLACEMENT_CHOICES ? d.seen : PLACEMENT_CHOICES;
        _Static_assert(PLACEMENT_CHOICES == 2, "the ordering below compares two");
        if (n == 2 && better(eng, &d.pick[1], &d.pick[0])) {
                struct node_rec t = d.pick[0];
                d.pick[0] = d.pick[1];
                d.pick[1] = t;
        }
        for (unsigned i = 0; i < n; i++)
                ret[i] = d.pick[i];
        *ret_n = n;
        return 0;
}
