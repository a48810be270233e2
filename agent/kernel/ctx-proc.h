/* ctx-proc.h — what the bash and javascript backends share: one interpreter process, with
 * its control channel on a unix socket (its fd 0 for bash, moved to fd 3 for node) and its
 * stdout and stderr on pipes; one I/O thread per interpreter that reads all of them for as
 * long as it lives; and the wait of one execution (timeout, hang-up, interrupt, grace).
 *
 * The I/O thread reads all the time, not only during executions, so that a background job
 * started by one execution never blocks on a full pipe: output that arrives while no
 * execution runs is discarded. Control lines are classified by the backend (a hook); output
 * and events go to the running execution's sink, from the I/O thread.
 *
 * An execution: kproc_execute() writes the request to the control socket, then waits for the
 * backend's "end" line. At the timeout, or when the client hangs up, it sends SIGINT to the
 * interpreter's process group (not before the interpreter said it began running the request:
 * a signal that arrives while the request is still being read would be lost) and, for bash,
 * writes a "sync" line that ends the execution even if the interrupt also swallowed the
 * request's last line. If the execution has not ended 5 s after the interrupt, it reports
 * died and the caller restarts the interpreter.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel.h"

#define KPROC_GRACE_MS 5000     /* after an interrupt */
#define KPROC_STOP_GRACE_MS 2000 /* after SIGTERM, before SIGKILL */

struct kproc;

/* What a control line is. */
enum kproc_line {
        KPROC_LINE_IGNORE, /* not for the running execution (a stale one), or noise */
        KPROC_LINE_READY,  /* the interpreter is up */
        KPROC_LINE_BEGIN,  /* the current execution started running */
        KPROC_LINE_END,    /* the current execution is over; *ret_status its status */
        KPROC_LINE_SYNC,   /* the line written after an interrupt was read */
        KPROC_LINE_EVENT,  /* *ret_ev is an event of the current execution, to forward */
};

/* Classifies one control line (NUL-terminated, without its newline) for execution seq (0
 * while none runs). */
typedef enum kproc_line (*kproc_line_fn)(void *userdata, const char *line, size_t len, uint64_t seq, json_t **ret_ev,
                                         int *ret_status);

struct kproc_spec {
        const char *name;         /* "bash", "javascript": for messages */
        char *const *argv;        /* what to run; argv[0] absolute */
        const struct kernel_config *cfg;
        kproc_line_fn line;
        void *userdata;
        const char *init;         /* written to the control socket once started; may be NULL */
        size_t max_line;          /* longest control line kept (longer ones are skipped) */
};

/* Starts the interpreter and waits (at most timeout_ms) until its READY line. On failure
 * returns -errno with a message in *ret_error (malloc'd): the interpreter's last line on
 * stderr if it exited. */
int kproc_start(const struct kproc_spec *spec, int64_t timeout_ms, struct kproc **ret, char **ret_error);

/* How an execution ended. */
struct kproc_result {
        bool ended;        /* its END (or after an interrupt, SYNC) line came */
        int status;        /* from the END line; -1 if none came */
        bool interrupted;  /* SIGINT was sent */
        bool timed_out;
        bool error_seen;   /* an error event was forwarded */
        bool died;         /* the interpreter exited, or did not stop after the interrupt */
        bool hung;         /* died because it did not stop within the grace */
        int wait_status;   /* when it exited */
};

/* Runs one execution: writes request (len bytes), and after an interrupt sync (NULL: none;
 * the execution then ends at its END line). Blocks until its end. Returns 0 with *ret
 * filled, or -errno if the interpreter could not be reached (it is dead already). */
int kproc_execute(struct kproc *kp, uint64_t seq, const char *request, size_t len, const char *sync,
                  int64_t timeout_ms, const struct kernel_sink *sink, struct kproc_result *ret);

/* Sends an event to the running execution's sink from the execute thread (after
 * kproc_execute returned; for the backend's own errors). */
int kproc_emit(const struct kernel_sink *sink, json_t *ev);

/* Sends the error event {"type":"error","name":name,"value":value,"traceback":[]}. */
int kproc_emit_error(const struct kernel_sink *sink, const char *name, const char *value);

/* Fills out from an execution's result (execution_count = seq); when the interpreter died
 * or hung, sends the KernelDied error event, naming it as `what` ("bash context"), and
 * marks out died. */
void kproc_outcome(const struct kproc_result *res, uint64_t seq, const char *what, const struct kernel_sink *sink,
                   struct kernel_outcome *out);

/* Whether the interpreter still runs. */
bool kproc_alive(struct kproc *kp);

/* Describes how the interpreter ended, from its wait status: "exit 3", "killed by SIGKILL". */
void kproc_describe_exit(int wait_status, char *buf, size_t n);

/* Stops the interpreter and every process of its group (closing its control socket,
 * SIGTERM and SIGHUP, SIGKILL after KPROC_STOP_GRACE_MS), then frees kp. Accepts NULL. */
void kproc_stop(struct kproc *kp);
