/* kill-all.c — POST /processes/kill_all: ends every process in the sandbox but the agent —
 * commands, background ones, terminals, the code contexts' interpreters, a running fork
 * bomb — and answers how many there were (docs/api.md, "Processes").
 *
 * As the sandbox's init (pid 1), the agent sends kill(-1, SIGKILL): one call that reaches
 * every other process of its pid namespace, including the ones that did not descend from
 * it (a `runc exec`). A fork bomb cannot outrun it: a process that is forking when the
 * signal comes has its fork fail (the kernel checks for a pending fatal signal before the
 * child becomes visible), so a child either gets the signal too or is never born. It is
 * repeated, ROUND_MS apart, until /proc shows no live process but the agent, for at most
 * KILL_ALL_TIMEOUT_MS (a process stuck in the kernel, state D, may outlive that: the answer
 * says how many remain). Outside a pid namespace (a development run) the same rounds kill
 * the agent's descendants one by one instead, never kill(-1).
 *
 * Meanwhile the agent starts nothing itself (process_spawns_hold): a code context whose
 * interpreter died would otherwise restart it into the next round. Interpreters start
 * afresh on their next use; entries of the process table end as killed by SIGKILL.
 */
#include "procs.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "process.h"
#include "ptree.h"
#include "timeutil.h"

#define KILL_ALL_TIMEOUT_MS 5000
#define ROUND_MS 20

/* The processes seen alive so far, by (pid, start time): to count each one once. */
struct tally {
        struct ptree_entry *v; /* sorted by pid, then start */
        size_t n, cap;
};

static int by_identity(const void *a, const void *b) {
        const struct ptree_entry *x = a, *y = b;

        if (x->pid != y->pid)
                return (x->pid > y->pid) - (x->pid < y->pid);
        return (x->start > y->start) - (x->start < y->start);
}

/* Adds e unless already counted. */
static int tally_add(struct tally *t, const struct ptree_entry *e) {
        if (t->n && bsearch(e, t->v, t->n, sizeof(*e), by_identity))
                return 0;
        if (t->n == t->cap) {
                size_t k = t->cap ? t->cap * 2 : 256;
                struct ptree_entry *v = reallocarray(t->v, k, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                t->v = v;
                t->cap = k;
        }
        t->v[t->n++] = *e;
        qsort(t->v, t->n, sizeof(*t->v), by_identity);
        return 0;
}

/* Keeps in t the live processes to kill: all but the agent as init, else its descendants. */
static int targets(struct ptree *t, pid_t self, bool init) {
        _cleanup_free_ bool *in = calloc(t->n + 1, sizeof(bool));
        size_t k = 0;

        if (!in || (!init && ptree_subtree(t, self, in) < 0))
                return -ENOMEM;
        for (size_t i = 0; i < t->n; i++)
                if ((init ? t->v[i].pid != self : in[i]) && !ptree_entry_dead(&t->v[i]))
                        t->v[k++] = t->v[i];
        t->n = k;
        return 0;
}

/* One round: looks, counts, kills. Returns how many live processes it found (0: done). */
static ssize_t round_once(struct tally *seen, pid_t self, bool init) {
        _cleanup_ptree_ struct ptree t = {};
        int r;

        r = ptree_read(&t);
        if (r >= 0)
                r = targets(&t, self, init);
        if (r < 0) {
                /* Cannot look (out of memory): kill blind and say there may be more. */
                if (init)
                        (void) kill(-1, SIGKILL);
                return 1;
        }
        for (size_t i = 0; i < t.n; i++)
                (void) tally_add(seen, &t.v[i]);
        if (t.n > 0 && init)
                (void) kill(-1, SIGKILL);
        for (size_t i = 0; t.n > 0 && !init && i < t.n; i++)
                (void) ptree_signal(&t.v[i], SIGKILL);
        return (ssize_t) t.n;
}

/* Whether the request's body is empty or {} (the API's rule: an empty body counts as {}). */
static bool empty_body(const struct http_request *req) {
        json_t *body;
        bool empty;

        if (req->body.len == 0)
                return true;
        body = json_loadb(req->body.data, req->body.len, 0, NULL);
        empty = json_is_object(body) && json_object_size(body) == 0;
        json_decref(body);
        return empty;
}

int procs_handle_kill_all(struct http_conn *c, const struct http_request *req, const char *arg) {
        int64_t start = mono_ms();
        struct tally seen = {};
        pid_t self = getpid();
        ssize_t left;
        json_t *body;
        int r;

        if (!empty_body(req))
                return http_respond_error(c, 400, "bad_request", "POST /processes/kill_all takes no fields");
        process_spawns_hold(true);
        for (;;) {
                left = round_once(&seen, self, self == 1);
                if (left == 0 || mono_ms() - start >= KILL_ALL_TIMEOUT_MS)
                        break;
                (void) usleep(ROUND_MS * 1000);
        }
        process_spawns_hold(false);
        log_info("kill_all: %zu processes killed in %lld ms%s", seen.n, (long long) (mono_ms() - start),
                 left ? ", some would not die" : "");
        body = json_pack("{s:I,s:I}", "killed", (json_int_t) (seen.n - MIN(seen.n, (size_t) left)), "remaining",
                         (json_int_t) left);
        free(seen.v);
        if (!body)
                return -ENOMEM;
        r = http_respond_json(c, 200, body);
        json_decref(body);
        return r;
}
