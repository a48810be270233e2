/* python-kernel.h — the parts of the Python backend shared by its files (private to them):
 * the kernel object, the ZeroMQ channels to it (python-channel.c) and its process and
 * lifecycle (python-launch.c). python.c runs executions and holds kernel_python_ops.
 */
#pragma once

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "kernel/jupyter.h"
#include "kernel/kernel.h"
#include "timeutil.h"

#define PYTHON_MAX_FRAMES 16 /* frames kept of one message; later ones are buffers, unread */
#define PYTHON_STDERR_TAIL 4096

struct kernel {
        struct child *child;
        int stderr_fd; /* read end of the kernel's stderr, non-blocking; -1 once closed */
        char stderr_tail[PYTHON_STDERR_TAIL];
        size_t stderr_len;
        char dir[PATH_MAX]; /* the private directory: connection file and IPC sockets */
        int dir_fd;         /* it, opened when made (-1 if not); removal goes through it */
        int parent_fd;      /* its parent (O_PATH; -1 if not open) */
        void *shell, *control, *iopub; /* sockets of the agent's one ZeroMQ context */
        void *shell_monitor;    /* PAIR receiving shell's ZMQ_EVENT_DISCONNECTED (python-channel.c) */
        int shell_fd, iopub_fd, shell_monitor_fd; /* ZMQ_FD of each: readable when its events may have changed */
        bool iopub_lost;        /* a status went missing: IOPub is to be reconnected */
        bool shell_dropped;     /* shell's connection dropped: replies are lost until it is reopened */
        struct jupyter_session session;
};

/* Milliseconds until deadline (0 once past it), or -1 for INT64_MAX (no deadline). */
static inline int64_t deadline_left(int64_t deadline) {
        int64_t now = mono_ms();

        if (deadline == INT64_MAX)
                return -1;
        return deadline > now ? deadline - now : 0;
}

/* deadline_left() as a poll() timeout. */
static inline int deadline_poll_timeout(int64_t deadline) {
        int64_t ms = deadline_left(deadline);

        return ms < 0 ? -1 : (int) (ms < INT_MAX ? ms : INT_MAX);
}

/* ---- python-channel.c ---- */

/* A received message with the frames it was parsed from (a large stream message is decoded
 * from its frame later, when it is turned into events). */
struct incoming {
        zmq_msg_t parts[PYTHON_MAX_FRAMES];
        size_t n;
        struct jupyter_message m;
};

/* Releases a message python_channel_recv() filled in. */
void python_incoming_done(struct incoming *in);

/* Builds, signs and sends a message of msg_type with content (borrowed; NULL for {}) on sock;
 * its id goes to ret_msg_id if not NULL. Returns 0 or -errno. */
int python_channel_send(struct kernel *k, void *sock, const char *msg_type, json_t *content,
                        char ret_msg_id[JUPYTER_ID_LEN + 1]);

/* Receives the next valid message waiting on sock (never blocks): 1 with in filled (release
 * with python_incoming_done), 0 when none is waiting, -errno on a socket failure. Messages
 * with a bad signature or a bad shape are logged (channel names the socket) and dropped. */
int python_channel_recv(struct kernel *k, void *sock, const char *channel, struct incoming *in);

/* Connects shell, control and IOPub to the sockets in k->dir (which may not exist yet:
 * ZeroMQ retries). Returns 0 or -errno (-ENOTCONN: python_backend_init() failed); the caller
 * cleans up. */
int python_sockets_open(struct kernel *k);

/* Connects a new IOPub socket (after the old one was closed). Returns 0 or -errno. */
int python_iopub_open(struct kernel *k);

/* Whether shell's connection has dropped since it was opened (a message over
 * PYTHON_SHELL_MAX_MESSAGE_MIB, or the kernel closed its end): reads the monitor's events and sets
 * k->shell_dropped. What was in flight on it either way is lost. Never blocks. */
bool python_shell_dropped(struct kernel *k);

/* Closes shell and its monitor (if open). */
void python_shell_close(struct kernel *k);

/* Replaces shell (and its monitor) with a new connection to the kernel; k->shell_dropped is
 * cleared. Returns 0, or -errno with shell closed and k->shell_dropped still set. */
int python_shell_reopen(struct kernel *k);

/* The cap on one frame from the kernel on shell, in MiB (python-channel.c says why this much);
 * python.c names it in the error of an execution whose reply it lost. */
#define PYTHON_SHELL_MAX_MESSAGE_MIB 8

/* ---- python-launch.c ---- */

/* Starts a kernel: kernel_ops.start. */
int python_kernel_start(const struct kernel_config *cfg, int64_t timeout_ms, struct kernel **ret, char **ret_error);

/* Ends the kernel (with a shutdown_request first when polite), whatever is left of its process
 * group, its sockets and its directory, and frees k. Accepts NULL. */
void python_kernel_free(struct kernel *k, bool polite);

/* Reads what the kernel wrote to its stderr, keeping the last PYTHON_STDERR_TAIL bytes. */
void python_stderr_drain(struct kernel *k);

/* Says how a process ended ("exit status 1", "killed by signal 9 (SIGKILL)"). */
void python_describe_exit(int status, char *buf, size_t n);

/* Waits up to ms for the kernel to have exited; returns whether it has. */
bool python_wait_exit(struct kernel *k, int64_t ms);

/* Replaces IOPub with a new socket, checked the way start-up checks it; failures are logged. */
void python_iopub_reopen(struct kernel *k);
