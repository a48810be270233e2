/* contexts.c — see contexts.h. Owns the context table, each context's queue and its
 * interpreter's lifecycle (start, restart after a death, stop); the streams are
 * ctx-stream.c's, the bodies' rules ctx-request.c's, the interpreters the backends'.
 *
 * One execution at a time per context, in arrival order: a context has a FIFO of turns;
 * the turn at its head may use the context's interpreter, everyone else waits on the
 * table's condition variable. Executions take a turn; so do restarts, removals and the
 * background start of the default Python kernel, which is how an execution that arrives
 * while that kernel starts simply waits for it. A restart or a removal cancels the turns
 * of the executions queued before it: the one running is interrupted (its stream's watch
 * fd, which the backend polls), the waiting ones leave the queue with an error event.
 *
 * Whoever holds the turn may start the interpreter (it is NULL before the first use, after
 * a failed start, or after a death) and stop it, without holding the table's lock, which
 * guards only the table, the queues and the reference counts.
 *
 * Streams answer 200 lazily (ctx-stream.h): an execution waiting for its turn sends nothing
 * until a keepalive is due, and one whose interpreter cannot start gets a 500 if nothing was
 * sent yet, else a KernelStartFailed error event.
 */
#include "contexts.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "id.h"
#include "ctx-request.h"
#include "ctx-stream.h"
#include "kernel.h"
#include "log.h"
#include "thread.h"
#include "../login-env.h"
#include "../pressure.h"
#include "../proc-spawn.h"
#include "../users.h"

#define CTX_MAX 32                    /* contexts made by POST /contexts; defaults come on top */
#define CTX_START_TIMEOUT_MS 60000    /* an interpreter's start */
#define CTX_ID_PREFIX "ctx_"
#define CTX_ID_RANDOM 12
#define CTX_ID_LEN (sizeof(CTX_ID_PREFIX) - 1 + CTX_ID_RANDOM)
#define WAIT_SLICE_MS 250             /* how often a waiting execution checks its client */

struct turn {
        struct turn *next;
        struct ctx_stream *stream; /* an execution's; NULL for restarts, removals, starts */
        const char *cancelled;     /* why it must leave the queue ("restarted", "removed"), or NULL */
};

struct context {
        unsigned refs;
        char id[CTX_ID_LEN + 1];
        const struct kernel_ops *ops;
        char *cwd, *user;
        bool is_default, removed;
        struct turn *queue;     /* its head holds the turn */
        struct kernel *kernel;  /* used by the turn holder only; NULL when not running */
        struct context *next;   /* table order: creation */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct context *table;
static unsigned n_created; /* non-default contexts in the table, or being created */

/* ---- the table ---- */

static void context_free(struct context *ctx) {
        if (!ctx)
                return;
        if (ctx->kernel)
                ctx->ops->stop(ctx->kernel);
        free(ctx->cwd);
        free(ctx->user);
        free(ctx);
}

static struct context *context_new(const struct kernel_ops *ops, const char *cwd, const char *user, bool is_default) {
        static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        struct context *ctx = calloc(1, sizeof(*ctx));

        if (!ctx)
                return NULL;
        ctx->refs = 1;
        ctx->ops = ops;
        ctx->is_default = is_default;
        ctx->cwd = strdup(cwd);
        ctx->user = strdup(user);
        memcpy(ctx->id, CTX_ID_PREFIX, sizeof(CTX_ID_PREFIX) - 1);
        if (!ctx->cwd || !ctx->user || random_string(ctx->id + sizeof(CTX_ID_PREFIX) - 1, CTX_ID_RANDOM, alphabet) < 0) {
                context_free(ctx);
                return NULL;
        }
        return ctx;
}

/* Drops a reference; the last one stops the interpreter and frees ctx. */
static void context_unref(struct context *ctx) {
        bool last;

        if (!ctx)
                return;
        pthread_mutex_lock(&lock);
        last = --ctx->refs == 0;
        pthread_mutex_unlock(&lock);
        if (last)
                context_free(ctx);
}

/* With the lock held. */
static void table_append(struct context *ctx) {
        struct context **p = &table;

        while (*p)
                p = &(*p)->next;
        *p = ctx;
        ctx->refs++;
}

/* With the lock held: takes ctx out of the table (the table's reference goes to the
 * caller). */
static void table_unlink(struct context *ctx) {
        for (struct context **p = &table; *p; p = &(*p)->next)
                if (*p == ctx) {
                        *p = ctx->next;
                        ctx->next = NULL;
                        ctx->removed = true;
                        if (!ctx->is_default)
                                n_created--;
                        return;
                }
}

/* The context called id, with a reference, or NULL. */
static struct context *context_find(const char *id) {
        struct context *ctx;

        pthread_mutex_lock(&lock);
        for (ctx = table; ctx && !streq(ctx->id, id); ctx = ctx->next)
                ;
        if (ctx)
                ctx->refs++;
        pthread_mutex_unlock(&lock);
        return ctx;
}

static bool context_removed(struct context *ctx) {
        bool removed;

        pthread_mutex_lock(&lock);
        removed = ctx->removed;
        pthread_mutex_unlock(&lock);
        return removed;
}

/* The default context of ops's language, made (not started) if there is none, with a
 * reference; NULL when out of memory. */
static struct context *default_get(const struct kernel_ops *ops) {
        struct context *ctx;

        pthread_mutex_lock(&lock);
        for (ctx = table; ctx && !(ctx->is_default && ctx->ops == ops); ctx = ctx->next)
                ;
        if (!ctx) {
                ctx = context_new(ops, proc_default_cwd("/root"), "root", true);
                if (ctx)
                        table_append(ctx);
        } else
                ctx->refs++;
        pthread_mutex_unlock(&lock);
        return ctx;
}

/* ---- turns ---- */

/* With the lock held. */
static void queue_remove(struct context *ctx, struct turn *t) {
        for (struct turn **p = &ctx->queue; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        break;
                }
        pthread_cond_broadcast(&cond);
}

/* With the lock held: cancels the executions queued on ctx (all turns when removing). */
static void queue_cancel(struct context *ctx, const char *why, bool all) {
        for (struct turn *t = ctx->queue; t; t = t->next) {
                if (!t->stream && !all)
                        continue;
                t->cancelled = why;
                if (t->stream)
                        ctx_stream_cancel(t->stream);
        }
        pthread_cond_broadcast(&cond);
}

/* Queues t and waits until it is at the head. Returns 0 holding the turn, -ECANCELED
 * (t->cancelled says why) or -EPIPE (the execution's client went away) having left the
 * queue. */
static int turn_take(struct context *ctx, struct turn *t) {
        struct turn **p;
        int r = 0;

        pthread_mutex_lock(&lock);
        for (p = &ctx->queue; *p; p = &(*p)->next)
                ;
        *p = t;
        while (ctx->queue != t) {
                struct timespec ts;

                if (t->cancelled || (t->stream && ctx_stream_gone(t->stream))) {
                        r = t->cancelled ? -ECANCELED : -EPIPE;
                        queue_remove(ctx, t);
                        break;
                }
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&cond, &lock, &ts);
        }
        pthread_mutex_unlock(&lock);
        return r;
}

static void turn_give(struct context *ctx, struct turn *t) {
        pthread_mutex_lock(&lock);
        queue_remove(ctx, t);
        pthread_mutex_unlock(&lock);
}

/* ---- interpreters ---- */

/* Why an interpreter did not start: the sandbox's state when that was the cause (no pid, no
 * memory left: pressure.h), else what the backend said. */
static const char *start_failure(int r, const char *why, char *buf, size_t n) {
        if (pressure_errno(r))
                return pressure_describe(r, buf, n);
        return why ?: strerror(-r);
}

/* The status of an interpreter's failed start: 503 when the sandbox's state was the cause. */
static int start_status(int r) {
        return pressure_errno(r) ? 503 : 500;
}

/* Starts ctx's interpreter if it has none running (the caller holds the turn). Returns 0,
 * or -errno with a message in *ret_error (malloc'd). */
static int interpreter_ensure(struct context *ctx, char **ret_error) {
        struct user_info u = {};
        char **env = NULL, *why = NULL, buf[256];
        int r;

        *ret_error = NULL;
        if (ctx->kernel && ctx->ops->alive(ctx->kernel))
                return 0;
        if (ctx->kernel) {
                log_warn("the %s interpreter of context %s died between executions; starting a fresh one",
                         ctx->ops->language, ctx->id);
                ctx->ops->stop(ctx->kernel);
                ctx->kernel = NULL;
        }
        r = user_lookup(ctx->user, &u);
        if (r < 0) {
                if (asprintf(ret_error, "cannot look up user '%s': %s", ctx->user, user_strerror(r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        /* As for commands: the environment u's login shell exports, or the base one. */
        r = proc_env(&u, true, &env, NULL);
        if (r >= 0) {
                struct kernel_config cfg = {
                        .cwd = ctx->cwd,
                        .uid = u.uid,
                        .gid = u.gid,
                        .groups = u.groups,
                        .n_groups = u.n_groups,
                        .envp = env,
                };
                r = ctx->ops->start(&cfg, CTX_START_TIMEOUT_MS, &ctx->kernel, &why);
        }
        if (r < 0 && asprintf(ret_error, "cannot start the %s interpreter of context %s: %s", ctx->ops->language,
                              ctx->id, start_failure(r, why, buf, sizeof(buf))) < 0)
                *ret_error = NULL;
        if (r < 0)
                ctx->kernel = NULL;
        free(why);
        login_env_free(env);
        user_info_done(&u);
        return r;
}

/* Replaces ctx's interpreter with a fresh one (the caller holds the turn). */
static int interpreter_restart(struct context *ctx, char **ret_error) {
        if (ctx->kernel)
                ctx->ops->stop(ctx->kernel);
        ctx->kernel = NULL;
        return interpreter_ensure(ctx, ret_error);
}

/* ---- JSON ---- */

static json_t *context_json(const struct context *ctx) {
        return json_pack("{s:s,s:s,s:s,s:s,s:b}", "id", ctx->id, "language", ctx->ops->language, "cwd", ctx->cwd,
                         "user", ctx->user, "default", ctx->is_default);
}

static int respond_context(struct http_conn *c, int status, const struct context *ctx) {
        json_t *body = context_json(ctx);
        int r;

        if (!body)
                return -ENOMEM;
        r = http_respond_json(c, status, body);
        json_decref(body);
        return r;
}

static int respond_error(struct http_conn *c, const struct proc_error *err) {
        return http_respond_error(c, err->status, proc_error_code(err->status), "%s", err->message);
}

/* ---- POST /execute ---- */

/* Whether t was cancelled; if so, says so in msg: "context ID was restarted WHEN". */
static bool cancelled(struct turn *t, char *msg, size_t n, const char *id, const char *when) {
        const char *why;

        pthread_mutex_lock(&lock);
        why = t->cancelled;
        pthread_mutex_unlock(&lock);
        if (why)
                snprintf(msg, n, "context %s was %s %s", id, why, when);
        return why != NULL;
}

/* The end status of an execution. */
static const char *end_status(const struct kernel_outcome *o) {
        if (o->died)
                return "error";
        if (o->interrupted)
                return "interrupted";
        return o->error ? "error" : "ok";
}

/* Runs req in ctx, whose turn the caller holds, and ends the stream. */
static void run(struct context *ctx, struct turn *t, struct ctx_stream *s, const struct exec_request *req) {
        struct kernel_sink sink = ctx_stream_sink(s);
        struct kernel_outcome out = {.execution_count = -1};
        _cleanup_free_ char *why = NULL;
        char msg[256];
        int r;

        if (ctx_stream_eventf(s, "{s:s,s:s}", "type", "start", "context_id", ctx->id) < 0)
                return; /* the client is gone: nothing to run for */
        r = ctx->ops->execute(ctx->kernel, req->code, req->envs, req->timeout_ms, &sink, &out);
        if (r < 0) {
                snprintf(msg, sizeof(msg), "the %s interpreter could not be reached: %s; it was restarted",
                         ctx->ops->language, strerror(-r));
                (void) ctx_stream_error(s, "KernelDied", msg);
                out.died = out.error = true;
        }
        if (cancelled(t, msg, sizeof(msg), ctx->id, "during this execution"))
                (void) ctx_stream_error(s, streq(t->cancelled, "removed") ? "ContextRemoved" : "ContextRestarted", msg);
        (void) ctx_stream_end(s, out.execution_count, end_status(&out), out.timed_out);

        /* The next execution gets a fresh interpreter: start it now, while holding the turn. */
        if (out.died && interpreter_restart(ctx, &why) < 0)
                log_warn("%s", why ?: "cannot restart an interpreter");
}

/* Reports that an execution never ran, as an error event and its end. */
static void fail(struct ctx_stream *s, const char *name, const char *msg) {
        (void) ctx_stream_error(s, name, msg);
        (void) ctx_stream_end(s, -1, "error", false);
}

static void execute(struct context *ctx, struct ctx_stream *s, const struct exec_request *req) {
        struct turn t = {.stream = s};
        _cleanup_free_ char *why = NULL;
        char msg[256];
        int r;

        r = turn_take(ctx, &t);
        if (r == -EPIPE)
                return;
        if (r == -ECANCELED) {
                (void) cancelled(&t, msg, sizeof(msg), ctx->id, "before this execution could run");
                fail(s, streq(t.cancelled, "removed") ? "ContextRemoved" : "ContextRestarted", msg);
                return;
        }
        if (context_removed(ctx)) { /* looked up just before its removal, queued after it */
                snprintf(msg, sizeof(msg), "context %s was removed before this execution could run", ctx->id);
                fail(s, "ContextRemoved", msg);
        } else if ((r = interpreter_ensure(ctx, &why)) < 0) {
                const char *m = why ?: "cannot start the interpreter";
                /* A 500 (503) while nothing was sent yet, else the stream says it. */
                if (!ctx_stream_respond_error(s, start_status(r), proc_error_code(start_status(r)), m))
                        fail(s, "KernelStartFailed", m);
        } else if (cancelled(&t, msg, sizeof(msg), ctx->id, "before this execution could run"))
                fail(s, streq(t.cancelled, "removed") ? "ContextRemoved" : "ContextRestarted", msg);
        else
                run(ctx, &t, s, req);
        turn_give(ctx, &t);
}

int contexts_handle_execute(struct http_conn *c, const struct http_request *req, const char *arg) {
        struct proc_error err = {};
        char why[256];
        struct exec_request ereq;
        struct ctx_stream s = {};
        struct context *ctx;
        json_t *body;
        int r;

        body = ctx_load_body(req, &err);
        if (!body || ctx_parse_execute(body, &ereq, &err) < 0) {
                json_decref(body);
                return respond_error(c, &err);
        }
        ctx = ereq.context_id ? context_find(ereq.context_id) : default_get(ereq.ops ?: &kernel_python_ops);
        if (!ctx) {
                r = ereq.context_id ? http_respond_error(c, 404, "not_found", "no context %s", ereq.context_id)
                                    : -ENOMEM;
                json_decref(body);
                return r;
        }
        r = ctx_stream_open(&s, c);
        if (r < 0)
                r = http_respond_error(c, pressure_errno(r) ? 503 : 500, pressure_errno(r) ? "unavailable" : "internal",
                                       "cannot start the execution: %s",
                                       pressure_describe(r, why, sizeof(why)));
        else
                execute(ctx, &s, &ereq);
        ctx_stream_close(&s);
        context_unref(ctx);
        json_decref(body);
        return r < 0 ? r : 0;
}

/* ---- /contexts ---- */

/* Makes the context creq asks for, not started yet. */
static int context_make(const struct create_request *creq, struct context **ret, struct proc_error *err) {
        _cleanup_free_ char *cwd = NULL;
        struct user_info u = {};
        int r;

        r = user_lookup(creq->user, &u);
        if (r == -ESRCH)
                return proc_error_set(err, 400, "unknown user '%s'", creq->user);
        if (r < 0)
                return proc_error_set(err, start_status(r), "cannot look up user '%s': %s", creq->user,
                                      user_strerror(r));
        r = proc_resolve_cwd(creq->cwd, u.home, &cwd, err); /* as commands resolve theirs */
        user_info_done(&u);
        if (r < 0)
                return r;
        *ret = context_new(creq->ops, cwd, creq->user, false);
        if (!*ret)
                return proc_error_set(err, 500, "out of memory");
        return 0;
}

int contexts_handle_create(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_free_ char *why = NULL;
        struct create_request creq;
        struct proc_error err = {};
        struct context *ctx = NULL;
        json_t *body;
        int r;

        body = ctx_load_body(req, &err);
        r = body ? ctx_parse_create(body, &creq, &err) : -EINVAL;
        if (r >= 0) {
                pthread_mutex_lock(&lock);
                if (n_created >= CTX_MAX)
                        r = proc_error_set(&err, 429, "a sandbox has at most %d contexts besides the default ones; "
                                                      "remove one first", CTX_MAX);
                else
                        n_created++;
                pthread_mutex_unlock(&lock);
        }
        if (r >= 0 && context_make(&creq, &ctx, &err) < 0) {
                r = -EINVAL;
                pthread_mutex_lock(&lock);
                n_created--;
                pthread_mutex_unlock(&lock);
        }
        json_decref(body);
        if (r < 0)
                return respond_error(c, &err);

        /* Nobody else knows ctx yet: no turn needed. */
        r = interpreter_ensure(ctx, &why);
        pthread_mutex_lock(&lock);
        if (r >= 0)
                table_append(ctx);
        else
                n_created--;
        pthread_mutex_unlock(&lock);
        if (r >= 0) {
                log_info("context %s (%s) started as %s in %s", ctx->id, ctx->ops->language, ctx->user, ctx->cwd);
                r = respond_context(c, 201, ctx);
        } else
                r = http_respond_error(c, start_status(r), proc_error_code(start_status(r)), "%s",
                                       why ?: "cannot start the interpreter");
        context_unref(ctx);
        return r;
}

int contexts_handle_list(struct http_conn *c, const struct http_request *req, const char *arg) {
        json_t *list = json_array(), *body;
        int r = 0;

        if (!list)
                return -ENOMEM;
        pthread_mutex_lock(&lock);
        for (struct context *ctx = table; ctx && r >= 0; ctx = ctx->next)
                r = json_array_append_new(list, context_json(ctx));
        pthread_mutex_unlock(&lock);
        body = json_pack("{s:o}", "contexts", list);
        if (r < 0 || !body) {
                json_decref(body);
                return -ENOMEM;
        }
        r = http_respond_json(c, 200, body);
        json_decref(body);
        return r;
}

int contexts_handle_restart(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_free_ char *why = NULL;
        struct context *ctx = context_find(arg ?: "");
        struct turn t = {};
        int r;

        if (!ctx)
                return http_respond_error(c, 404, "not_found", "no context %s", arg ?: "");
        pthread_mutex_lock(&lock);
        queue_cancel(ctx, "restarted", false);
        pthread_mutex_unlock(&lock);
        r = turn_take(ctx, &t);
        if (r >= 0 && context_removed(ctx)) {
                turn_give(ctx, &t);
                r = -ECANCELED;
        }
        if (r < 0)
                r = http_respond_error(c, 404, "not_found", "context %s was removed", ctx->id);
        else {
                r = interpreter_restart(ctx, &why);
                turn_give(ctx, &t);
                if (r >= 0)
                        log_info("context %s (%s) restarted", ctx->id, ctx->ops->language);
                r = r >= 0 ? respond_context(c, 200, ctx)
                           : http_respond_error(c, start_status(r), proc_error_code(start_status(r)), "%s",
                                                why ?: "cannot start the interpreter");
        }
        context_unref(ctx);
        return r;
}

int contexts_handle_remove(struct http_conn *c, const struct http_request *req, const char *arg) {
        struct context *ctx = context_find(arg ?: "");
        struct turn t = {};
        bool owner = false;

        if (!ctx)
                return http_respond_error(c, 404, "not_found", "no context %s", arg ?: "");
        pthread_mutex_lock(&lock);
        if (!ctx->removed) {
                table_unlink(ctx); /* its reference is now ours to drop */
                owner = true;
        }
        queue_cancel(ctx, "removed", true);
        pthread_mutex_unlock(&lock);

        /* Waits for the running execution to stop; waiting ones have left. */
        if (turn_take(ctx, &t) >= 0) {
                if (ctx->kernel)
                        ctx->ops->stop(ctx->kernel);
                ctx->kernel = NULL;
                turn_give(ctx, &t);
        }
        log_info("context %s (%s) removed", ctx->id, ctx->ops->language);
        if (owner)
                context_unref(ctx);
        context_unref(ctx);
        return http_respond(c, 200, "application/json", "{}", 2);
}

/* ---- the default Python kernel, started at agent start ---- */

static void *start_default_python(void *arg) {
        struct context *ctx = arg;
        _cleanup_free_ char *why = NULL;
        struct turn t = {};

        if (turn_take(ctx, &t) >= 0) {
                if (context_removed(ctx))
                        ;
                else if (interpreter_ensure(ctx, &why) < 0)
                        log_warn("the default Python context did not start: %s", why ?: "unknown error");
                else
                        log_info("default context %s (python) started", ctx->id);
                turn_give(ctx, &t);
        }
        context_unref(ctx);
        return NULL;
}

int contexts_init(void) {
        struct context *ctx;
        int r;

        r = python_backend_init();
        if (r < 0)
                log_error_errno(r, "cannot set up ZeroMQ: Python contexts will not start");
        ctx = default_get(&kernel_python_ops);
        if (!ctx)
                return -ENOMEM;
        r = thread_start_detached(start_default_python, ctx, 0);
        if (r < 0) {
                context_unref(ctx);
                return r;
        }
        return 0;
}
