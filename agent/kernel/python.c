/* python.c — the Python backend of code contexts (kernel_python_ops): a real IPython kernel
 * (ipykernel) spoken to over ZeroMQ with the Jupyter messaging protocol. jupyter.c builds and
 * parses the messages, python-channel.c moves them, python-launch.c starts and ends the
 * kernel; this file runs executions. The interface and its rules are kernel.h's.
 *
 * An execution is one execute_request (a "step") for the user's code, between two silent
 * ones that set and then restore its envs. Each step is one poll() loop over the sockets'
 * ZMQ_FDs, the kernel's exit eventfd, its stderr and the client's socket (POLLRDHUP). Each
 * IOPub message of the step is turned into events and handed to the sink as it arrives, so
 * output never accumulates here. A step ends when both its execute_reply and its "idle" status
 * have come. Timeout or hang-up: SIGINT to the kernel's process group (ipykernel's
 * interrupt_mode "signal"), then 5 s of grace before the kernel is declared dead.
 *
 * Either message can be lost while the kernel lives: a reply or a status past its channel's
 * cap drops that connection (python-channel.c). A lost "idle" only has IOPub reopened. A lost
 * reply, seen as shell's monitor reporting the drop (or as no reply long after "idle"), ends
 * the step once its code has ended (its "idle") with an error event that says so, or at once
 * if its request never reached the code; shell is then reopened, and the kernel keeps its state.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "kernel/python-kernel.h"
#include "log.h"
#include "macro.h"
#include "process.h"

#define DRAIN_BATCH 64          /* messages read from one socket before looking at the clock */
#define INTERRUPT_GRACE_MS 5000 /* after SIGINT, before the kernel counts as dead */
#define ENV_STEP_TIMEOUT_MS 10000
#define IDLE_AFTER_REPLY_MS 2000 /* a reply with no "idle" after it: the status was lost */
#define REPLY_AFTER_IDLE_MS 5000 /* "idle" with no reply after it, shell still up: the reply was lost */
#define START_AFTER_DROP_MS 5000 /* shell dropped, the request not started: it never reached the kernel */
#define DROP_SETTLE_MS 50 /* ZeroMQ reports a drop just before it hands over what came ahead of it */
#define ABORTED_RETRIES 5
#define EXIT_SETTLE_MS 20 /* a dead kernel's last messages: quiet this long means all came */
#define EXIT_SETTLE_MAX_MS 200

/* One execution: the user's code and the silent steps around it. */
struct run {
        struct kernel *k;
        const struct kernel_sink *sink;
        struct kernel_outcome *out;
        bool sink_gone; /* event() failed or the client hung up: nobody listens any more */
        bool watching;  /* still polling sink->watch_fd */
};

/* One execute_request and what has come back for it. */
struct step {
        char msg_id[JUPYTER_ID_LEN + 1];
        bool user;        /* the user's code (interruptible, counted) rather than an env step */
        bool started;     /* its execute_input has come: SIGINT now lands in its code */
        bool want_sigint; /* interrupted before it started */
        bool idle;
        json_t *reply;      /* execute_reply content */
        int64_t replied_at; /* when the reply came */
        int64_t idle_at;    /* when "idle" came */
        int64_t dropped_at; /* when shell's connection was seen dropped during the step (0: not) */
        int64_t deadline;   /* when to interrupt it */
        int64_t kill_at;    /* when an interrupted step counts as hung */
};

static void interrupt(struct run *run, struct step *st, bool timed_out) {
        if (!st->user || st->kill_at != INT64_MAX)
                return;
        run->out->interrupted = true;
        run->out->timed_out = timed_out;
        st->deadline = INT64_MAX;
        st->kill_at = mono_ms() + INTERRUPT_GRACE_MS;
        if (st->started)
                (void) child_signal_group(run->k->child, SIGINT);
        else
                st->want_sigint = true; /* ipykernel ignores SIGINT until it runs the code */
}

static void emit(struct run *run, struct step *st, json_t *ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));

        if (type && streq(type, "error"))
                run->out->error = true;
        if (run->sink_gone)
                return;
        if (run->sink->event(run->sink->userdata, ev) < 0) {
                run->sink_gone = true;
                interrupt(run, st, false);
        }
}

/* jupyter_output_events()'s callback: the event goes to the run's current step. */
struct emit_ctx {
        struct run *run;
        struct step *st;
};

static int emit_output(void *userdata, json_t *ev) {
        struct emit_ctx *ctx = userdata;

        emit(ctx->run, ctx->st, ev);
        return 0;
}

static void emit_died(struct run *run, struct step *st, const char *why) {
        json_t *ev = json_pack("{s:s, s:s, s:s+, s:[]}", "type", "error", "name", "KernelDied", "value", why,
                               "; its state is lost and a fresh kernel takes its place", "traceback");

        run->out->died = true;
        if (ev)
                emit(run, st, ev);
        run->out->error = true;
        json_decref(ev);
}

static void handle_iopub(struct run *run, struct step *st, struct jupyter_message *m) {
        if (!m->parent_msg_id || !streq(m->parent_msg_id, st->msg_id))
                return; /* late output of an earlier execution, or another client's */
        if (streq(m->msg_type, "status")) {
                const char *state = json_string_value(json_object_get(m->content, "execution_state"));

                if (state && streq(state, "idle") && !st->idle) {
                        st->idle = true;
                        st->idle_at = mono_ms();
                }
                return;
        }
        if (streq(m->msg_type, "execute_input")) {
                json_t *count = json_object_get(m->content, "execution_count");

                st->started = true;
                if (st->user && json_is_integer(count))
                        run->out->execution_count = json_integer_value(count);
                if (st->want_sigint) {
                        st->want_sigint = false;
                        (void) child_signal_group(run->k->child, SIGINT);
                }
                return;
        }
        if (jupyter_output_events(m, emit_output, &(struct emit_ctx) {.run = run, .st = st}) < 0)
                log_warn("out of memory turning the Python kernel's %s into events, dropping it", m->msg_type);
}

static void handle_shell(struct run *run, struct step *st, struct jupyter_message *m) {
        if (!streq(m->msg_type, "execute_reply") || !m->parent_msg_id || !streq(m->parent_msg_id, st->msg_id) ||
            st->reply)
                return;
        st->reply = json_incref(m->content);
        st->replied_at = mono_ms();
}

/* Reads what has come for the step, at most a batch per socket. Returns 1 if more may be
 * waiting, 0 if both sockets are drained, -errno on a socket failure. */
static int drain(struct run *run, struct step *st) {
        struct incoming in;
        bool more;
        int r = 0, n;

        for (n = 0; n < DRAIN_BATCH && (r = python_channel_recv(run->k, run->k->iopub, "iopub", &in)) > 0; n++) {
                handle_iopub(run, st, &in.m);
                python_incoming_done(&in);
        }
        if (r < 0)
                return r;
        more = n == DRAIN_BATCH;
        for (n = 0; n < DRAIN_BATCH && (r = python_channel_recv(run->k, run->k->shell, "shell", &in)) > 0; n++) {
                handle_shell(run, st, &in.m);
                python_incoming_done(&in);
        }
        if (r < 0)
                return r;
        return more || n == DRAIN_BATCH;
}

/* Takes in what the kernel sent just before it died: messages still on their way through
 * ZeroMQ's I/O thread, until IOPub has been quiet for a moment. */
static void drain_after_exit(struct run *run, struct step *st) {
        int64_t until = mono_ms() + EXIT_SETTLE_MAX_MS;

        for (;;) {
                struct pollfd p = {.fd = run->k->iopub_fd, .events = POLLIN};

                while (drain(run, st) > 0)
                        ;
                if (deadline_left(until) == 0 || poll(&p, 1, EXIT_SETTLE_MS) <= 0)
                        return;
        }
}

/* Ends a step whose reply is lost with an error event that says why and what became of the
 * code, unless the code's own error already came (from IOPub: the reply would only have said
 * "error"; an exception megabytes long makes a reply past the cap); shell is to be reopened. */
static void emit_reply_lost(struct run *run, struct step *st) {
        char why[512];
        json_t *ev;

        if (st->dropped_at)
                snprintf(why, sizeof(why),
                         "the Python kernel's shell connection dropped (as it does for a message over the %d MiB cap "
                         "on that channel), and this execution's %s with it; %s; the kernel keeps its state",
                         PYTHON_SHELL_MAX_MESSAGE_MIB, st->idle ? "reply" : "request",
                         st->idle ? "the code ran to its end and its output above is complete"
                                  : "the code did not run");
        else
                snprintf(why, sizeof(why),
                         "the Python kernel's reply to this execution never came (%d s after the code ended); its "
                         "output above is complete; the kernel keeps its state",
                         REPLY_AFTER_IDLE_MS / 1000);
        log_warn("%s (%s)", why, st->msg_id);
        run->k->shell_dropped = true;
        if (run->out->error)
                return;
        ev = json_pack("{s:s, s:s, s:s, s:[]}", "type", "error", "name", "KernelReplyLost", "value", why,
                       "traceback");
        if (ev)
                emit(run, st, ev);
        run->out->error = true;
        json_decref(ev);
}

/* Whether the step is over: its reply and "idle" came, or one of them is lost. */
static bool step_done(struct run *run, struct step *st) {
        struct kernel *k = run->k;
        int64_t now = mono_ms();
        /* read every time: an unread event keeps the monitor's fd readable, and poll() spinning */
        bool dropped = python_shell_dropped(k);

        if (st->reply) {
                if (st->idle)
                        return true;
                if (now - st->replied_at >= IDLE_AFTER_REPLY_MS) {
                        log_warn("the Python kernel's idle status for %s never came; reconnecting IOPub", st->msg_id);
                        k->iopub_lost = true;
                        return true;
                }
                return false;
        }
        if (dropped && !st->dropped_at)
                st->dropped_at = now;
        /* dropped: no reply will come (once what came before the drop was read); wait for the
         * code to end, if it ever started */
        if ((st->dropped_at && now - st->dropped_at >= DROP_SETTLE_MS &&
             (st->idle || (!st->started && now - st->dropped_at >= START_AFTER_DROP_MS))) ||
            (st->idle && now - st->idle_at >= REPLY_AFTER_IDLE_MS)) {
                emit_reply_lost(run, st);
                return true;
        }
        return false;
}

/* When step_done() may change without a message: the step's next time limit. */
static int64_t step_wake(const struct step *st) {
        int64_t wake = MIN(st->deadline, st->kill_at);

        if (st->reply)
                return MIN(wake, st->replied_at + IDLE_AFTER_REPLY_MS);
        if (st->dropped_at && !st->started)
                wake = MIN(wake, st->dropped_at + START_AFTER_DROP_MS);
        if (st->idle) /* (past times here mean step_done() is true: no spinning) */
                wake = MIN(wake, MIN(st->idle_at + REPLY_AFTER_IDLE_MS,
                                     st->dropped_at ? st->dropped_at + DROP_SETTLE_MS : INT64_MAX));
        return wake;
}

/* Runs one execute_request until its reply and idle status have come, the kernel died or it
 * hung after an interrupt (both reported as died). Returns 0, or -errno if the kernel could
 * not be reached at all. */
static int step_run(struct run *run, struct step *st, const char *code, bool silent, int64_t timeout_ms) {
        struct kernel *k = run->k;
        int status, r = 0;

        json_t *content = json_pack("{s:s, s:b, s:b, s:{}, s:b, s:b}", "code", code, "silent", silent, "store_history",
                                    !silent, "user_expressions", "allow_stdin", 0, "stop_on_error", !silent);
        if (!content)
                return -ENOMEM;
        /* dropped since the last step (a message between executions): a request sent now would
         * be lost with it */
        if (python_shell_dropped(k)) {
                log_warn("the Python kernel's shell connection (pid %d) dropped; reconnecting",
                         (int) child_pid(k->child));
                r = python_shell_reopen(k);
        }
        if (r >= 0)
                r = python_channel_send(k, k->shell, "execute_request", content, st->msg_id);
        json_decref(content);
        if (r < 0)
                return r;
        st->deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : INT64_MAX;
        st->kill_at = INT64_MAX;

        for (;;) {
                int more = drain(run, st);

                if (more < 0)
                        return more;
                if (step_done(run, st)) {
                        if (k->iopub_lost)
                                python_iopub_reopen(k);
                        return k->shell_dropped ? python_shell_reopen(k) : 0;
                }
                if (child_exited(k->child, &status)) {
                        char how[64], why[160];

                        drain_after_exit(run, st);
                        python_describe_exit(status, how, sizeof(how));
                        snprintf(why, sizeof(why), "the Python kernel died (%s) during the execution", how);
                        emit_died(run, st, why);
                        return 0;
                }
                if (deadline_left(st->kill_at) == 0) {
                        (void) child_signal_group(k->child, SIGKILL);
                        (void) python_wait_exit(k, 1000); /* so that alive() says so from now on */
                        emit_died(run, st,
                                  st->user ? "the Python kernel did not stop within 5 s after an interrupt"
                                           : "the Python kernel did not answer while setting the execution's envs");
                        return 0;
                }
                if (deadline_left(st->deadline) == 0) {
                        if (st->user) {
                                interrupt(run, st, true);
                        } else { /* an env step is not interruptible: past its time it is hung */
                                st->kill_at = mono_ms();
                                st->deadline = INT64_MAX;
                        }
                        continue;
                }

                struct pollfd fds[] = {
                        {.fd = k->shell_fd, .events = POLLIN},
                        {.fd = k->iopub_fd, .events = POLLIN},
                        {.fd = child_exit_fd(k->child), .events = POLLIN},
                        {.fd = k->stderr_fd, .events = POLLIN},
                        {.fd = run->watching ? run->sink->watch_fd : -1, .events = KERNEL_SINK_GONE},
                        {.fd = k->shell_monitor_fd, .events = POLLIN},
                };

                if (poll(fds, ELEMENTSOF(fds), more ? 0 : deadline_poll_timeout(step_wake(st))) < 0 && errno != EINTR)
                        return -errno;
                if (fds[3].revents)
                        python_stderr_drain(k);
                if (fds[4].revents & KERNEL_SINK_GONE) {
                        run->watching = false; /* it stays readable: stop asking */
                        run->sink_gone = true;
                        interrupt(run, st, false);
                }
        }
}

/* Runs code as one step, again when the kernel answers "aborted" (a request that arrives
 * while ipykernel still discards the queue after an error with stop_on_error). */
static int step_run_retrying(struct run *run, struct step *st, const char *code, bool silent, int64_t timeout_ms) {
        for (int attempt = 0;; attempt++) {
                const char *status;
                int r;

                json_decref(st->reply);
                *st = (struct step) {.user = st->user};
                r = step_run(run, st, code, silent, timeout_ms);
                if (r < 0 || run->out->died || !st->reply)
                        return r;
                status = json_string_value(json_object_get(st->reply, "status"));
                if (!status || !streq(status, "aborted") || attempt == ABORTED_RETRIES)
                        return 0;
                log_debug("the Python kernel aborted %s, sending it again", st->msg_id);
        }
}

/* Python source for the silent steps around the user's code. The names and values travel
 * as JSON in hex, so no byte of them is ever read as Python source. */
static char *env_code(json_t *envs, bool restore) {
        _cleanup_free_ char *json = NULL, *hex = NULL;
        char *code = NULL;
        size_t len;

        if (restore)
                return strdup("(lambda os: [os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)"
                              " for k, v in os.__dict__.pop('_ai2in_saved_env', {}).items()])(__import__('os'))");
        json = json_dumps(envs, JSON_COMPACT);
        if (!json)
                return NULL;
        len = strlen(json);
        hex = malloc(2 * len + 1);
        if (!hex)
                return NULL;
        sodium_bin2hex(hex, 2 * len + 1, (const unsigned char *) json, len);
        if (asprintf(&code,
                     "(lambda os, new: (setattr(os, '_ai2in_saved_env', {k: os.environ.get(k) for k in new}),"
                     " os.environ.update(new)))(__import__('os'), __import__('json').loads(bytes.fromhex('%s')))",
                     hex) < 0)
                return NULL;
        return code;
}

/* Sends the error of a step whose reply says "error" when IOPub did not carry it. */
static void emit_reply_error(struct run *run, struct step *st) {
        const char *status = json_string_value(json_object_get(st->reply, "status"));
        json_t *ev;

        if (!status || !streq(status, "error") || run->out->error)
                return;
        ev = jupyter_error_event(st->reply);
        if (ev)
                emit(run, st, ev);
        json_decref(ev);
}

static int python_execute(struct kernel *k, const char *code, json_t *envs, int64_t timeout_ms,
                          const struct kernel_sink *sink, struct kernel_outcome *out) {
        struct run run = {.k = k, .sink = sink, .out = out, .watching = sink->watch_fd >= 0};
        struct step env_step = {}, user = {.user = true};
        bool with_envs = json_is_object(envs) && json_object_size(envs) > 0;
        int status, r = 0;

        *out = (struct kernel_outcome) {.execution_count = -1};
        if (child_exited(k->child, &status))
                return -ESRCH;

        if (with_envs) {
                _cleanup_free_ char *set = env_code(envs, false);

                if (!set)
                        return -ENOMEM;
                r = step_run_retrying(&run, &env_step, set, true, ENV_STEP_TIMEOUT_MS);
                if (r < 0 || out->died)
                        goto finish;
                emit_reply_error(&run, &env_step);
        }
        if (run.sink_gone) {
                out->interrupted = true; /* the client left before the code ran: do not run it */
        } else if (!out->error) {
                r = step_run_retrying(&run, &user, code, false, timeout_ms);
                if (r < 0 || out->died)
                        goto finish;
                if (user.reply) {
                        json_t *count = json_object_get(user.reply, "execution_count");

                        if (json_is_integer(count))
                                out->execution_count = json_integer_value(count);
                        emit_reply_error(&run, &user);
                }
        }
        if (with_envs) {
                _cleanup_free_ char *restore = env_code(envs, true);
                bool had_error = out->error;

                if (!restore) {
                        r = -ENOMEM;
                        goto finish;
                }
                r = step_run_retrying(&run, &env_step, restore, true, ENV_STEP_TIMEOUT_MS);
                if (r == 0 && !out->died && !had_error)
                        emit_reply_error(&run, &env_step);
        }
finish:
        json_decref(env_step.reply);
        json_decref(user.reply);
        if (r < 0)
                log_warn_errno(r, "lost the Python kernel (pid %d) during an execution", (int) child_pid(k->child));
        return r;
}

static bool python_alive(struct kernel *k) {
        int status;

        python_stderr_drain(k);
        return !child_exited(k->child, &status);
}

static void python_stop(struct kernel *k) {
        python_kernel_free(k, true);
}

const struct kernel_ops kernel_python_ops = {
        .language = "python",
        .start = python_kernel_start,
        .execute = python_execute,
        .alive = python_alive,
        .stop = python_stop,
};
