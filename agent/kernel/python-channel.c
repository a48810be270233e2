/* python-channel.c — the ZeroMQ side of the Python backend: the sockets to one kernel
 * (DEALER shell and control, SUB IOPub over transport "ipc") and moving Jupyter messages over
 * them, whole multipart messages in, signed ones out (jupyter.c does the format).
 *
 * The kernel is the sandbox's code and may send anything. Every socket the agent connects has
 * a ZMQ_MAXMSGSIZE (stdin and heartbeat are never connected): ZeroMQ refuses a larger frame
 * when its header arrives, before allocating it, and drops the connection for good (a
 * protocol error is not reconnected). For shell, where the agent waits for replies, a monitor
 * reports that drop (ZMQ_EVENT_DISCONNECTED, sent by the I/O thread as it happens), so that
 * python.c ends the execution whose reply was lost and reopens the socket.
 *
 * Every kernel's sockets belong to one ZeroMQ context, made when the agent starts. libzmq
 * starts a context's threads (its reaper and its I/O thread) with its first socket, and
 * aborts the process when pthread_create() fails there (thread_t::start asserts): a context
 * per kernel, as before, made the first run_code after a fork bomb — a pids limit reached,
 * so no thread — kill the agent. The shared context makes its first socket at start, while
 * threads are still to be had, and is never terminated, so ZeroMQ never starts a thread
 * again; a socket needs only file descriptors, whose lack is an error, not an abort.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "kernel/python-kernel.h"
#include "log.h"
#include "macro.h"
#include "process.h"

#define RECONNECT_MS 10 /* connecting before the kernel has bound: retry this often */
#define SEND_TIMEOUT_MS 2000
#define RCVHWM 2 /* few messages wait here unread (each may be large); the kernel queues the rest */

/* An IOPub message this large is past the 32 MiB output cap on its own, so nothing it carries
 * would be sent anyway. ZeroMQ drops the connection for it (with what was queued behind it,
 * past the cap too): python.c notices the missing "idle" and reopens IOPub. */
#define IOPUB_MAX_MESSAGE ((int64_t) 64 << 20)

/* Shell brings the replies to execute_request and kernel_info_request, the only requests the
 * agent sends: a status, an execution count, a kernel's banner, or, on error, the exception's
 * name, value and traceback (also sent on IOPub, where the events come from), and payloads
 * (an IPython help page: `obj??` shows a module's source, rarely past 1 MiB). 8 MiB is far
 * past any of them that a person reads, and bounds what the agent holds per kernel (RCVHWM
 * messages and one being read). A larger reply (an exception whose message is megabytes) is
 * lost: the execution says so, its output having come on IOPub. */
#define SHELL_MAX_MESSAGE ((int64_t) PYTHON_SHELL_MAX_MESSAGE_MIB << 20)

/* Control brings only the reply to shutdown_request (under 1 KiB), which is never read: the
 * socket is closed just after. Whatever else the kernel sends there waits unread. */
#define CONTROL_MAX_MESSAGE ((int64_t) 64 << 10)

static void *zctx; /* set once at start */

void python_incoming_done(struct incoming *in) {
        jupyter_message_done(&in->m);
        for (size_t i = 0; i < in->n; i++)
                zmq_msg_close(&in->parts[i]);
        in->n = 0;
}

/* Receives all frames of the next message waiting on sock into in: 1, or 0 when none is
 * waiting, or -errno. Frames past PYTHON_MAX_FRAMES (binary buffers) are read and dropped. */
static int frames_recv(void *sock, struct incoming *in) {
        bool more;

        in->n = 0;
        zmq_msg_init(&in->parts[0]);
        while (zmq_msg_recv(&in->parts[0], sock, ZMQ_DONTWAIT) < 0) {
                int r = errno;

                if (r == EINTR)
                        continue;
                zmq_msg_close(&in->parts[0]);
                return r == EAGAIN ? 0 : -r;
        }
        in->n = 1;
        more = zmq_msg_more(&in->parts[0]);
        while (more) { /* the rest of a multipart message is already here */
                zmq_msg_t extra, *p = in->n < PYTHON_MAX_FRAMES ? &in->parts[in->n] : &extra;

                zmq_msg_init(p);
                if (zmq_msg_recv(p, sock, 0) < 0) {
                        zmq_msg_close(p);
                        break;
                }
                more = zmq_msg_more(p);
                if (p == &extra)
                        zmq_msg_close(p);
                else
                        in->n++;
        }
        return 1;
}

int python_channel_send(struct kernel *k, void *sock, const char *msg_type, json_t *content,
                        char ret_msg_id[JUPYTER_ID_LEN + 1]) {
        struct jupyter_outgoing m;
        int r;

        r = jupyter_build(&k->session, msg_type, content, &m);
        if (r < 0)
                return r;
        for (size_t i = 0; i < JUPYTER_FRAMES; i++) {
                int flags = i + 1 < JUPYTER_FRAMES ? ZMQ_SNDMORE : 0;

                while ((r = zmq_send(sock, m.frames[i].iov_base, m.frames[i].iov_len, flags)) < 0 && errno == EINTR)
                        ;
                if (r < 0) {
                        r = -errno;
                        jupyter_outgoing_done(&m);
                        return r;
                }
        }
        if (ret_msg_id)
                memcpy(ret_msg_id, m.msg_id, JUPYTER_ID_LEN + 1);
        jupyter_outgoing_done(&m);
        return 0;
}

int python_channel_recv(struct kernel *k, void *sock, const char *channel, struct incoming *in) {
        for (;;) {
                struct iovec frames[PYTHON_MAX_FRAMES];
                int r;

                /* jupyter_parse() leaves it untouched when it fails, and it is released then */
                in->m = (struct jupyter_message) {};
                r = frames_recv(sock, in);
                if (r <= 0)
                        return r;
                for (size_t i = 0; i < in->n; i++)
                        frames[i] = (struct iovec) {.iov_base = zmq_msg_data(&in->parts[i]),
                                                    .iov_len = zmq_msg_size(&in->parts[i])};
                r = jupyter_parse(&k->session, frames, in->n, &in->m);
                if (r == 0)
                        return 1;
                python_incoming_done(in);
                if (r == -EPERM)
                        log_warn("dropping a message with a bad signature on the Python kernel's %s channel (pid %d)",
                                 channel, (int) child_pid(k->child));
                else
                        log_warn("dropping a malformed message on the Python kernel's %s channel (pid %d)", channel,
                                 (int) child_pid(k->child));
        }
}

/* Connects a PAIR to a new monitor of s that reports ZMQ_EVENT_DISCONNECTED. The endpoint is
 * unique in the process (an old monitor may still be bound while its socket closes). */
static void *monitor_open(void *s) {
        static unsigned counter;
        char endpoint[64];
        void *m;

        snprintf(endpoint, sizeof(endpoint), "inproc://ai2in-monitor-%u",
                 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
        if (zmq_socket_monitor(s, endpoint, ZMQ_EVENT_DISCONNECTED) < 0)
                return NULL;
        m = zmq_socket(zctx, ZMQ_PAIR);
        if (m && zmq_connect(m, endpoint) < 0) {
                int saved = errno;

                zmq_close(m);
                errno = saved;
                return NULL;
        }
        return m;
}

/* Opens a socket of type connected to endpoint; with ret_monitor, also a monitor of it
 * (connected first, so that no drop goes unseen). */
static void *socket_open(int type, const char *endpoint, int64_t maxmsgsize, int sndtimeo, void **ret_monitor) {
        const int linger = 0, reconnect = RECONNECT_MS, rcvhwm = RCVHWM;
        void *s = zctx ? zmq_socket(zctx, type) : NULL, *m = NULL;

        if (!s) {
                errno = zctx ? errno : ENOTCONN;
                return NULL;
        }
        /* options must be set before connecting */
        if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsgsize, sizeof(maxmsgsize)) < 0 ||
            zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
            zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &reconnect, sizeof(reconnect)) < 0 ||
            zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof(sndtimeo)) < 0 ||
            zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof(rcvhwm)) < 0 ||
            (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) < 0) ||
            (ret_monitor && !(m = monitor_open(s))) || zmq_connect(s, endpoint) < 0) {
                int saved = errno;

                if (m)
                        zmq_close(m);
                zmq_close(s);
                errno = saved;
                return NULL;
        }
        if (ret_monitor)
                *ret_monitor = m;
        return s;
}

int python_iopub_open(struct kernel *k) {
        char endpoint[PATH_MAX + 16];
        size_t fd_len = sizeof(int);

        snprintf(endpoint, sizeof(endpoint), "ipc://%s/kernel-2", k->dir);
        k->iopub = socket_open(ZMQ_SUB, endpoint, IOPUB_MAX_MESSAGE, SEND_TIMEOUT_MS, NULL);
        if (!k->iopub || zmq_getsockopt(k->iopub, ZMQ_FD, &k->iopub_fd, &fd_len) < 0)
                return -errno;
        return 0;
}

static int shell_open(struct kernel *k) {
        char endpoint[PATH_MAX + 16];
        size_t fd_len = sizeof(int);

        snprintf(endpoint, sizeof(endpoint), "ipc://%s/kernel-1", k->dir);
        k->shell = socket_open(ZMQ_DEALER, endpoint, SHELL_MAX_MESSAGE, SEND_TIMEOUT_MS, &k->shell_monitor);
        if (!k->shell || zmq_getsockopt(k->shell, ZMQ_FD, &k->shell_fd, &fd_len) < 0 ||
            zmq_getsockopt(k->shell_monitor, ZMQ_FD, &k->shell_monitor_fd, &fd_len) < 0)
                return -errno;
        return 0;
}

bool python_shell_dropped(struct kernel *k) {
        for (;;) {
                zmq_msg_t event;
                bool more;

                zmq_msg_init(&event);
                if (zmq_msg_recv(&event, k->shell_monitor, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&event);
                        if (errno == EINTR)
                                continue;
                        return k->shell_dropped;
                }
                /* the only event asked for; its second frame (the endpoint) is dropped */
                k->shell_dropped = true;
                more = zmq_msg_more(&event);
                zmq_msg_close(&event);
                while (more) {
                        zmq_msg_init(&event);
                        if (zmq_msg_recv(&event, k->shell_monitor, 0) < 0)
                                more = false;
                        else
                                more = zmq_msg_more(&event);
                        zmq_msg_close(&event);
                }
        }
}

void python_shell_close(struct kernel *k) {
        if (k->shell)
                zmq_close(k->shell); /* stops its monitor too */
        if (k->shell_monitor)
                zmq_close(k->shell_monitor);
        k->shell = k->shell_monitor = NULL;
        k->shell_fd = k->shell_monitor_fd = -1;
}

int python_shell_reopen(struct kernel *k) {
        int r;

        python_shell_close(k);
        r = shell_open(k);
        k->shell_dropped = r < 0; /* the next execution tries again */
        return r;
}

int python_sockets_open(struct kernel *k) {
        char endpoint[PATH_MAX + 16];
        int r;

        r = shell_open(k);
        if (r < 0)
                return r;
        r = python_iopub_open(k);
        if (r < 0)
                return r;
        /* sends never wait: with the connection dropped, shutdown goes straight to SIGTERM */
        snprintf(endpoint, sizeof(endpoint), "ipc://%s/kernel-4", k->dir);
        k->control = socket_open(ZMQ_DEALER, endpoint, CONTROL_MAX_MESSAGE, 0, NULL);
        if (!k->control)
                return -errno;
        return 0;
}

int python_backend_init(void) {
        void *s;
        int r;

        zctx = zmq_ctx_new();
        if (!zctx)
                return -errno;
        if (zmq_ctx_set(zctx, ZMQ_IO_THREADS, 1) < 0)
                goto fail;
        s = zmq_socket(zctx, ZMQ_PAIR); /* starts the context's threads (see the top) */
        if (!s)
                goto fail;
        zmq_close(s);
        return 0;
fail:
        r = -errno;
        (void) zmq_ctx_term(zctx);
        zctx = NULL;
        return r;
}
