/* kernel.h — the interface every code-context backend implements: one live interpreter
 * (an IPython kernel over the Jupyter protocol, a persistent bash, a persistent node) that
 * runs one execution at a time and reports what happens as events.
 *
 * contexts.c owns the contexts (ids, defaults, the one-at-a-time queue, the HTTP handlers
 * and the stream); a backend only starts its interpreter, runs code in it, interrupts it
 * and stops it. Backends: python.c (jupyter.c underneath), bash.c, node.c.
 *
 * Events are JSON objects exactly as docs/api.md ("Running code") puts them on the wire:
 * {"type":"stdout","text":…}, {"type":"stderr","text":…}, {"type":"result","data":{…},
 * "metadata":{…},"is_main_result":bool}, {"type":"error","name":…,"value":…,
 * "traceback":[…]}. The backend never emits start, end, dropped or keepalive: contexts.c
 * does (the 32 MiB output cap and keepalives are applied by the sink).
 */
#pragma once

#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct kernel;

/* How to start an interpreter. */
struct kernel_config {
        const char *cwd;   /* absolute, an existing directory */
        uid_t uid;         /* identity to run as (with gid and supplementary groups) */
        gid_t gid;
        const gid_t *groups;
        size_t n_groups;
        char *const *envp; /* the whole base environment (PATH, HOME, USER, LANG…) */
};

/* Where an execution's events go. event() gets each event in order (borrowed; it may add
 * fields). It returns 0, or < 0 once nobody is listening any more (the backend then
 * interrupts the execution as if it had timed out, but keeps waiting for its end). */
struct kernel_sink {
        int (*event)(void *userdata, json_t *ev);
        void *userdata;
        int watch_fd; /* ends when the client went away: poll it for KERNEL_SINK_GONE next to the
                       * interpreter's fds and treat a hang-up like a timeout; -1 if none */
};

/* The events of a kernel_sink's watch_fd that mean the client went away. Nothing is ever
 * written to it, so it is readable only at its end; gVisor reports no POLLRDHUP there. */
#define KERNEL_SINK_GONE (POLLIN | POLLRDHUP | POLLHUP | POLLERR)

/* How an execution ended. */
struct kernel_outcome {
        int64_t execution_count; /* -1 if the backend has none (bash, node count their own) */
        bool error;              /* an error event was sent */
        bool interrupted;        /* stopped by timeout or hang-up */
        bool timed_out;
        bool died;               /* the interpreter died; the backend already sent a KernelDied
                                  * error; contexts.c restarts it */
};

struct kernel_ops {
        const char *language; /* "python", "bash", "javascript" */

        /* Starts the interpreter and waits until it can run code (at most timeout_ms).
         * On failure returns -errno with a message (malloc'd) in *ret_error. */
        int (*start)(const struct kernel_config *cfg, int64_t timeout_ms, struct kernel **ret, char **ret_error);

        /* Runs code with envs (an object of strings, or NULL) set for this execution only.
         * timeout_ms 0 = none. Blocks until the execution ends; on timeout or hang-up it
         * interrupts the interpreter (SIGINT or the like) and waits up to 5 s more; if it still
         * has not ended, reports died (KernelDied error event: "did not stop after an
         * interrupt"). Returns 0 with *out filled, or -errno if the interpreter could not be
         * reached at all (contexts.c then reports a KernelDied error and restarts it). */
        int (*execute)(struct kernel *k, const char *code, json_t *envs, int64_t timeout_ms, const struct kernel_sink *sink,
                       struct kernel_outcome *out);

        /* Whether the interpreter process still runs. */
        bool (*alive)(struct kernel *k);

        /* Stops the interpreter (TERM, then KILL after a grace) and frees k. Accepts NULL. */
        void (*stop)(struct kernel *k);
};

extern const struct kernel_ops kernel_python_ops;
extern const struct kernel_ops kernel_bash_ops;

/* Sets up what every Python kernel shares: the agent's one ZeroMQ context, with its I/O and
 * reaper threads started now (python-channel.c). Call once, at start, before any Python
 * kernel. Returns 0 or -errno (Python kernels then cannot start, and say why). */
int python_backend_init(void);
extern const struct kernel_ops kernel_node_ops;
