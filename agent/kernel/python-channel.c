/* python-channel.c — the ZeroMQ side of the Python backend: the sockets to one kernel
 * (DEALER shell and control, SUB IOPub over transport "ipc") and moving Jupyter messages over
 * them, whole multipart messages in, signed ones out (jupyter.c does the format).
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
#define IOPUB_MAX_MESSAGE ((int64_t) 64 << 20)
#define IOPUB_RCVHWM 2 /* few messages wait here unread (each may be large); the kernel queues the rest */

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

static void *socket_open(struct kernel *k, int type, const char *endpoint) {
        const int linger = 0, reconnect = RECONNECT_MS, sndtimeo = SEND_TIMEOUT_MS, rcvhwm = IOPUB_RCVHWM;
        const int64_t maxmsgsize = IOPUB_MAX_MESSAGE;
        void *s = zctx ? zmq_socket(zctx, type) : NULL;

        if (!s) {
                errno = zctx ? errno : ENOTCONN;
                return NULL;
        }
        /* An IOPub message this large is past the 32 MiB output cap on its own, so nothing it
         * carries would be sent anyway; refusing it keeps the agent from holding it whole.
         * ZeroMQ then drops the connection for good (with what was queued behind it, past the
         * cap too): python.c notices the missing "idle" and reopens IOPub. Options must be set
         * before connecting. */
        if ((type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsgsize, sizeof(maxmsgsize)) < 0) ||
            zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
            zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &reconnect, sizeof(reconnect)) < 0 ||
            zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof(sndtimeo)) < 0 ||
            zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof(rcvhwm)) < 0 ||
            (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) < 0) || zmq_connect(s, endpoint) < 0) {
                int saved = errno;

                zmq_close(s);
                errno = saved;
                return NULL;
        }
        return s;
}

int python_iopub_open(struct kernel *k) {
        char endpoint[PATH_MAX + 16];
        size_t fd_len = sizeof(int);

        snprintf(endpoint, sizeof(endpoint), "ipc://%s/kernel-2", k->dir);
        k->iopub = socket_open(k, ZMQ_SUB, endpoint);
        if (!k->iopub || zmq_getsockopt(k->iopub, ZMQ_FD, &k->iopub_fd, &fd_len) < 0)
                return -errno;
        return 0;
}

int python_sockets_open(struct kernel *k) {
        char endpoint[PATH_MAX + 16];
        size_t fd_len = sizeof(int);
        int r;

        snprintf(endpoint, sizeof(endpoint), "ipc://%s/kernel-1", k->dir);
        k->shell = socket_open(k, ZMQ_DEALER, endpoint);
        if (!k->shell)
                return -errno;
        r = python_iopub_open(k);
        if (r < 0)
                return r;
        snprintf(endpoint, sizeof(endpoint), "ipc://%s/kernel-4", k->dir);
        k->control = socket_open(k, ZMQ_DEALER, endpoint);
        if (!k->control)
                return -errno;
        if (zmq_getsockopt(k->shell, ZMQ_FD, &k->shell_fd, &fd_len) < 0)
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
