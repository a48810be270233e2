/* pool.c — the warm pool (see pool.h): the setting, the refill workers, hand-out and the
 * figures GET /v1/health shows. */
#include "sandbox/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/node.h"
#include "id.h"
#include "log.h"
#include "sandbox/agent_stream.h"
#include "template/template.h"
#include "timeutil.h"

#define WARM_MS 60000          /* the kernel's first (empty) execution, the start included */
#define RETRY_MIN_MS 1000      /* after a failed start, doubling up to RETRY_MAX_MS */
#define RETRY_MAX_MS 60000
#define MAX_TEMPLATES 16

struct pooled {
        struct sandbox_rec rec;
        struct pooled *next;
};

struct pool_template {
        char name[64];
        unsigned size;           /* what refill keeps */
        unsigned ready, starting;
        unsigned taking;         /* taken by creates still deciding: refilled once they have */
        struct pooled *head;     /* ready ones, oldest first */
        uint64_t hits, misses, unsuited, failures;
        int64_t refill_ms_last, refill_ms_total, refills;
        int64_t retry_at;        /* mono ms: no start before, after a failure */
        int64_t retry_ms;
};

struct pool {
        struct engine *eng;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct pool_template t[MAX_TEMPLATES];
        unsigned n;
        pthread_t *workers;
        unsigned n_workers;
        bool stopping;
        /* Its write end is closed at stop: the read end's hang-up ends a kernel's warm-up,
         * which a loaded host (the pool's low CPU share) can stretch to many seconds. */
        int stop_pipe[2];
};

/* Parses setting into p's templates. */
static int parse(const char *setting, struct pool *p, struct error *e) {
        _cleanup_free_ char *copy = strdup(setting);
        char *save = NULL;
        unsigned n = 0;

        if (!copy)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        if (!*setting || streq(setting, "off"))
                return 0;
        for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(item, '='), *end;
                long v;

                if (!eq)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "pool: '%.64s' is not TEMPLATE=COUNT (such as base=8)", item);
                *eq = 0;
                if (template_name_check(item, e) < 0)
                        return error_wrap(e, "pool");
                errno = 0;
                v = strtol(eq + 1, &end, 10);
                if (errno || end == eq + 1 || *end || v < 0 || v > POOL_MAX_PER_TEMPLATE)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "pool: the count of %s must be 0 to %d, not '%.32s'", item,
                                         POOL_MAX_PER_TEMPLATE, eq + 1);
                for (unsigned i = 0; i < n; i++)
                        if (streq(p->t[i].name, item))
                                return error_set(e, EINVAL, ERR_BAD_REQUEST, "pool: template %s is named twice", item);
                if (n == MAX_TEMPLATES)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "pool: at most %d templates", MAX_TEMPLATES);
                snprintf(p->t[n].name, sizeof(p->t[n].name), "%s", item);
                p->t[n].size = (unsigned) v;
                p->t[n].retry_ms = RETRY_MIN_MS;
                n++;
        }
        p->n = n;
        return 0;
}

/* One warm-up exchange with the agent: POST path with body, whose NDJSON answer must end in
 * an "end" event without an "error" one. */
static int warm(struct engine *eng, const char *id, const char *path, const char *body, const char *what, int stop_fd,
                struct error *e) {
        _cleanup_free_ char *answer = NULL;
        _cleanup_agent_stream_ struct agent_stream *s = NULL;
        char sock[4200];
        size_t len;
        int r;

        sandbox_socket_path(eng, id, sock, sizeof(sock));
        r = agent_stream_open(sock, "POST", path, "application/json", (int64_t) strlen(body), stop_fd, WARM_MS, &s, e);
        if (r < 0)
                return r;
        if ((r = agent_stream_send(s, body, strlen(body), e)) < 0 || (r = agent_stream_finish(s, WARM_MS, e)) < 0)
                return r;
        r = agent_stream_read_all(s, 64 * 1024, &answer, &len);
        if (r < 0)
                return error_set(e, -r, ERR_SANDBOX, "cannot read the answer of %s: %s", what, strerror(-r));
        if (agent_stream_status(s) != 200 || strstr(answer, "\"type\":\"error\"") || !strstr(answer, "\"type\":\"end\""))
                return error_set(e, EIO, ERR_SANDBOX, "%s failed (HTTP %d: %.200s)", what, agent_stream_status(s), answer);
        return 0;
}

/* Waits until the default Python kernel, which the agent starts at its own start, is up,
 * with a blank cell: IPython runs it and counts nothing, so the user's first execution is
 * still number 1 and no variable is made. (The kernel's start also filled the agent's cache
 * of root's login environment, login-env.c, which a cold sandbox's first command fills.) */
static int warm_up(struct engine *eng, const char *id, int stop_fd, struct error *e) {
        return warm(eng, id, "/execute", "{\"code\":\"\\n\"}", "the default Python kernel's start", stop_fd, e);
}

/* Starts one sandbox of template t into *ret, with no row. */
static int start_one(struct engine *eng, const char *template_name, int stop_fd, struct sandbox_rec *ret, struct error *e) {
        struct sandbox_create_opts o = {.template_name = template_name, .allow_internet_access = -1};
        _cleanup_close_ int lock = -1;
        int r;

        r = sandbox_rec_new(eng, POOL_TEAM, &o, ret, e);
        if (r < 0)
                return r;
        lock = template_lock(eng->cfg.template_dir, false, e);
        r = lock < 0 && lock != -ENOENT ? lock : template_current(eng->cfg.template_dir, template_name, ret->template_version, e);
        if (lock >= 0) /* mount_rootfs takes it again: a build is not held up by a whole start */
                close(TAKE_FD(lock));
        if (r >= 0 && (r = sandbox_make_dirs(eng, ret, e)) >= 0 && (r = sandbox_start_parts(eng, ret, e)) >= 0)
                r = warm_up(eng, ret->id, stop_fd, e);
        if (r < 0) {
                sandbox_teardown(eng, ret->id, *ret->ip ? ret->ip : NULL); /* a failed start_parts gave it back */
                sandbox_rec_done(ret);
        }
        return r;
}

/* The template whose pool is furthest from its size and may start now, or NULL. */
static struct pool_template *next_to_fill(struct pool *p, int64_t now) {
        struct pool_template *best = NULL;

        for (unsigned i = 0; i < p->n; i++) {
                struct pool_template *t = &p->t[i];
                unsigned have = t->ready + t->starting + t->taking;
                if (have < t->size && t->retry_at <= now &&
                    (!best || t->size - have > best->size - best->ready - best->starting - best->taking))
                        best = t;
        }
        return best;
}

static void push(struct pool_template *t, struct pooled *item) {
        struct pooled **tail = &t->head;

        while (*tail)
                tail = &(*tail)->next;
        item->next = NULL;
        *tail = item;
        t->ready++;
}

static void *worker_main(void *arg) {
        struct pool *p = arg;

        pthread_mutex_lock(&p->lock);
        while (!p->stopping) {
                struct pool_template *t = next_to_fill(p, mono_ms());
                struct pooled *item;
                struct error e = {0};
                int64_t t0;
                int r;

                if (!t) { /* full, or waiting out a failure: a take or the retry time wakes it */
                        struct timespec until;
                        clock_gettime(CLOCK_REALTIME, &until);
                        until.tv_sec += 1;
                        pthread_cond_timedwait(&p->cond, &p->lock, &until);
                        continue;
                }
                t->starting++;
                pthread_mutex_unlock(&p->lock);

                t0 = mono_ms();
                item = calloc(1, sizeof(*item));
                r = item ? start_one(p->eng, t->name, p->stop_pipe[0], &item->rec, &e) : error_set(&e, ENOMEM, ERR_INTERNAL, "out of memory");

                pthread_mutex_lock(&p->lock);
                t->starting--;
                if (r < 0 && p->stopping) {
                        free(item);
                        break;
                }
                if (r < 0) {
                        free(item);
                        t->failures++;
                        t->retry_at = mono_ms() + t->retry_ms;
                        log_warn("pool: cannot start a sandbox of %s: %s; trying again in %lld s", t->name, e.message,
                                 (long long) t->retry_ms / 1000);
                        t->retry_ms = t->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : t->retry_ms * 2;
                        continue;
                }
                t->retry_ms = RETRY_MIN_MS;
                t->refill_ms_last = mono_ms() - t0;
                t->refill_ms_total += t->refill_ms_last;
                t->refills++;
                push(t, item);
                log_debug("pool: %s of %s ready in %lld ms (%u ready)", item->rec.id, t->name, (long long) t->refill_ms_last, t->ready);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int pool_start(struct engine *eng, struct error *e) {
        struct pool *p;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned total = 0;
        int r;

        if (!*eng->cfg.pool || streq(eng->cfg.pool, "off"))
                return 0;
        if (!streq(eng->runtime->ops->kind, "runc"))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "pool: the pool needs runtime runc (its limits change in place), not %s",
                                 eng->runtime->ops->kind);
        p = calloc(1, sizeof(*p));
        if (!p)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        p->eng = eng;
        if (pipe2(p->stop_pipe, O_CLOEXEC) < 0) {
                free(p);
                return error_set(e, errno, ERR_INTERNAL, "cannot make the pool's stop pipe: %s", strerror(errno));
        }
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        if ((r = parse(eng->cfg.pool, p, e)) < 0) {
                eng->pool = p;
                pool_stop(eng);
                return r;
        }
        for (unsigned i = 0; i < p->n; i++)
                total += p->t[i].size;
        /* One start per CPU at most, and no more workers than sandboxes to keep. */
        p->n_workers = (unsigned) (cpus > 0 ? cpus : 1);
        if (p->n_workers > total)
                p->n_workers = total;
        p->workers = calloc(p->n_workers ? p->n_workers : 1, sizeof(pthread_t));
        eng->pool = p;
        if (!p->workers) {
                p->n_workers = 0;
                pool_stop(eng);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        for (unsigned i = 0; i < p->n_workers; i++)
                if ((r = pthread_create(&p->workers[i], NULL, worker_main, p)) != 0) {
                        p->n_workers = i;
                        pool_stop(eng);
                        return error_set(e, r, ERR_INTERNAL, "cannot start the pool's workers: %s", strerror(r));
                }
        log_info("pool: keeping %s ready, %u starts at once at most", eng->cfg.pool, p->n_workers);
        return 0;
}

void pool_stop(struct engine *eng) {
        struct pool *p = eng->pool;
        unsigned n = 0;

        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        p->stopping = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        closep(&p->stop_pipe[1]); /* ends the warm-ups in flight */
        p->stop_pipe[1] = -1;
        for (unsigned i = 0; i < p->n_workers; i++)
                pthread_join(p->workers[i], NULL);
        for (unsigned i = 0; i < p->n; i++)
                while (p->t[i].head) {
                        struct pooled *item = p->t[i].head;
                        p->t[i].head = item->next;
                        sandbox_teardown(eng, item->rec.id, item->rec.ip);
                        sandbox_rec_done(&item->rec);
                        free(item);
                        n++;
                }
        if (p->n)
                log_info("pool: stopped, %u pooled sandboxes removed", n);
        eng->pool = NULL;
        closep(&p->stop_pipe[0]);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p->workers);
        free(p);
}

/* Whether a pooled sandbox, made with the engine's defaults (sandbox_rec_new with no
 * options), can be what o asks for, its limits aside (those are written at hand-out). */
static bool fits(struct engine *eng, const struct sandbox_create_opts *o) {
        const char *kind = o->runtime && *o->runtime ? runtime_kind_of(o->runtime) : NULL;

        if (kind && !streq(kind, eng->runtime->ops->kind))
                return false;
        if (o->disk_mb > 0 && (!eng->disk || o->disk_mb != eng->cfg.default_disk_mb))
                return false;
        if (o->network_rules && *o->network_rules)
                return false;
        return o->allow_internet_access < 0 || (o->allow_internet_access > 0) == eng->cfg.internet_access;
}

/* Takes the oldest ready sandbox of name that fits o, counting a miss or an unsuited create
 * when there is none (NULL); a taken one counts as taking until taken() or put_back(). */
static struct pooled *take(struct pool *p, const char *name, const struct sandbox_create_opts *o) {
        struct pooled *item = NULL;

        pthread_mutex_lock(&p->lock);
        for (unsigned i = 0; i < p->n; i++) {
                struct pool_template *t = &p->t[i];
                if (!streq(t->name, name))
                        continue;
                if (!fits(p->eng, o))
                        t->unsuited++;
                else if (!t->head)
                        t->misses++;
                else {
                        item = t->head;
                        t->head = item->next;
                        t->ready--;
                        t->taking++;
                }
                break;
        }
        pthread_mutex_unlock(&p->lock);
        return item;
}

/* Ends the taking of a sandbox of name, handed out (hit) or torn down (unsuited: the create
 * goes on cold; neither: it failed), and has a worker start its replacement. (A sandbox
 * given back is put_back's.) */
static void taken(struct pool *p, const char *name, bool hit, bool unsuited) {
        pthread_mutex_lock(&p->lock);
        for (unsigned i = 0; i < p->n; i++)
                if (streq(p->t[i].name, name)) {
                        p->t[i].taking--;
                        p->t[i].hits += hit;
                        p->t[i].unsuited += unsuited;
                }
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

/* Writes rec's limits (the create's, set by claim) to its cgroups in place: memory and CPU
 * quota where they differ from the pooled one's (was), and always the CPU shares (it had
 * POOL_CPU_SHARES). */
static int apply_limits(struct engine *eng, const struct sandbox_rec *rec, const struct sandbox_rec *was, struct error *e) {
        struct runtime_limits l = {.cpu_shares = (int64_t) (rec->cpu_count * 1024)};

        if (rec->memory_mb != was->memory_mb) {
                l.memory_bytes = rec->memory_mb * 1024 * 1024;
                l.old_memory_bytes = was->memory_mb * 1024 * 1024;
        }
        if (rec->cpu_count != was->cpu_count)
                l.cpu_quota = (int64_t) (rec->cpu_count * 100000.0);
        return runtime_cgroup_limits(eng->runtime, rec->id, &l, e);
}

/* Makes rec, taken from the pool, the team's as o asks: what sandbox_rec_new would have set
 * at a cold create, now. Its metadata and envs are new strings: the pooled ones stay the
 * caller's (in its copy of the pooled record, for pool_put_back). */
static int claim(struct engine *eng, int64_t team_id, const struct sandbox_create_opts *o, struct sandbox_rec *rec, struct error *e) {
        int64_t now = now_ms();

        rec->metadata = strdup(o->metadata ? o->metadata : "{}");
        rec->envs = strdup(o->envs ? o->envs : "{}");
        if (!rec->metadata || !rec->envs)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        rec->team_id = team_id;
        rec->state = SANDBOX_CREATING;
        rec->created_at = rec->last_activity = now;
        rec->timeout = o->timeout;
        rec->deadline = o->timeout > 0 ? now + o->timeout * 1000 : 0;
        rec->memory_mb = o->memory_mb > 0 ? o->memory_mb : eng->cfg.default_memory_mb;
        rec->cpu_count = o->cpu_count > 0 ? o->cpu_count : 1;
        if (o->secure) {
                int r = traffic_token_new(rec->traffic_token);
                if (r < 0)
                        return error_set(e, r, ERR_INTERNAL, "cannot make a traffic token: %s", strerror(-r));
        }
        return 0;
}

/* Gives item back to the pool as it was (was: its pooled record), first in line: a create
 * that failed before anything of the sandbox changed (the team's cap) costs it nothing. */
static void put_back(struct pool *p, struct pooled *item, const struct sandbox_rec *was) {
        free(item->rec.metadata);
        free(item->rec.envs);
        item->rec = *was;
        pthread_mutex_lock(&p->lock);
        for (unsigned i = 0; i < p->n; i++)
                if (streq(p->t[i].name, was->template_name)) {
                        item->next = p->t[i].head;
                        p->t[i].head = item;
                        p->t[i].taking--;
                        p->t[i].ready++;
                        break;
                }
        pthread_mutex_unlock(&p->lock);
}

int pool_take(struct engine *eng, int64_t team_id, const struct sandbox_create_opts *o, struct sandbox_rec *ret, struct error *e) {
        struct pool *p = eng->pool;
        const char *name = o->template_name ? o->template_name : "base";
        struct sandbox_rec was;
        struct pooled *item;
        struct sandbox_rec *rec;
        int64_t t0 = mono_ms();
        int r;

        if (!p || !(item = take(p, name, o)))
                return 0;
        rec = &item->rec;
        was = *rec; /* owns the pooled metadata and envs until the end */
        if (!sandbox_agent_listens(eng, rec->id)) { /* died while it waited: not given out */
                log_warn("pool: the agent of %s is gone; making one cold", rec->id);
                goto unsuited;
        }
        if ((r = claim(eng, team_id, o, rec, e)) < 0)
                goto fail;
        /* The row first, under the team's cap: a create over it leaves the sandbox untouched,
         * back in the pool (a team at its cap must not make the engine start sandboxes). */
        r = sandbox_insert_pooled(eng, rec, e);
        if (r == -EUSERS) {
                put_back(p, item, &was);
                return r;
        }
        if (r == -ESTALE) {
                log_info("pool: %s; making one cold", e->message);
                *e = (struct error){0};
                goto unsuited;
        }
        if (r < 0)
                goto fail;
        /* From here a crash leaves a creating row, which reconcile rolls back. */
        if ((r = apply_limits(eng, rec, &was, e)) < 0) {
                log_info("pool: %s cannot take the create's limits (%s): making one cold", rec->id, e->message);
                *e = (struct error){0};
                sandbox_forget_or_warn(eng, rec->id);
                goto unsuited;
        }
        rec->state = SANDBOX_RUNNING;
        rec->started_at = rec->last_activity = now_ms();
        r = store_sandbox_update(eng->store, rec, e);
        if (r < 0) {
                sandbox_kill(eng, -1, rec->id, "its state could not be recorded", NULL);
                goto fail_done;
        }
        log_info("created %s from the pool (template %s version %s, ip %s) in %lld ms", rec->id, rec->template_name,
                 *rec->template_version ? rec->template_version : TEMPLATE_LEGACY, rec->ip, (long long) (mono_ms() - t0));
        taken(p, name, true, false);
        node_refresh(eng);
        *ret = *rec;
        free(was.metadata);
        free(was.envs);
        free(item);
        return 1;

unsuited:
        r = 0;
fail:
        sandbox_teardown(eng, rec->id, rec->ip);
fail_done:
        taken(p, name, false, r == 0);
        if (rec->metadata != was.metadata) {
                free(was.metadata);
                free(was.envs);
        }
        sandbox_rec_done(rec);
        free(item);
        return r;
}

json_t *pool_stats_json(struct engine *eng) {
        struct pool *p = eng->pool;
        json_t *j;

        if (!p)
                return json_null();
        j = json_object();
        pthread_mutex_lock(&p->lock);
        for (unsigned i = 0; j && i < p->n; i++) {
                const struct pool_template *t = &p->t[i];
                json_object_set_new(j, t->name,
                                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "size", (json_int_t) t->size, "ready",
                                              (json_int_t) t->ready, "starting", (json_int_t) t->starting, "hits", (json_int_t) t->hits,
                                              "misses", (json_int_t) t->misses, "unsuited", (json_int_t) t->unsuited, "failures",
                                              (json_int_t) t->failures, "refill_ms_last",
                                              t->refills ? json_integer(t->refill_ms_last) : json_null(), "refill_ms_avg",
                                              t->refills ? json_integer(t->refill_ms_total / t->refills) : json_null()));
        }
        pthread_mutex_unlock(&p->lock);
        return j;
}
