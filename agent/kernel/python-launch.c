/* python-launch.c — the Python kernel's process: its private directory and connection file,
 * starting ipykernel (as `python3 -m ipykernel_launcher` would) as the context's user,
 * waiting until it is ready, and ending it (shutdown_request, then TERM, then KILL to its
 * process group).
 *
 * Each kernel gets a directory (mode 0700, owned by the kernel's user, under
 * /run/ai2in-kernels/, or /tmp when /run cannot be used) holding the connection file and the
 * kernel's sockets: transport "ipc", so the channels are unix sockets that only that user
 * (and root) can reach, and no TCP port has to be picked or can collide. The key is 32 random
 * bytes in hex, and every message either way is signed with it.
 *
 * The directory is opened (O_NOFOLLOW) while it is still root's, and everything the agent does
 * to it afterwards, as root, goes through that fd: in /tmp its owner may rename it away and
 * put a symlink or another directory in its place, and a removal by path would then delete,
 * as root, the files of wherever that points. Through the fd, the removal empties the
 * directory that was made, wherever it is now, and the name is removed only if it still is
 * that directory (rmdir(2) removes nothing but an empty directory, and follows no symlink).
 * The directory has to be the user's: the kernel makes its sockets in it.
 *
 * Ready: the agent connects before the kernel binds (ZeroMQ retries every 10 ms), then sends
 * kernel_info_request on shell until a reply has come AND some IOPub message has come through:
 * a SUB socket only gets what is published after its subscription reached the kernel, so a
 * reply alone would not prove that an execution's first output cannot be lost.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "kernel/python-kernel.h"
#include "log.h"
#include "macro.h"
#include "process.h"

#define PYTHON_PATH "/usr/bin/python3"
#define KERNEL_DIR_PARENT "/run/ai2in-kernels"
#define KERNEL_DIR_FALLBACK "/tmp/ai2in-kernel-XXXXXX"
#define CONNECTION_FILE "connection.json"
#define KEY_BYTES 32
#define READY_RESEND_MS 50 /* kernel_info_request again while IOPub is still silent */
#define IOPUB_REOPEN_TIMEOUT_MS 5000
#define SHUTDOWN_GRACE_MS 1000
#define TERM_GRACE_MS 1000
#define STDERR_PIPE_SIZE (1024 * 1024)

void python_stderr_drain(struct kernel *k) {
        char chunk[4096];
        ssize_t n;

        if (k->stderr_fd < 0)
                return;
        while ((n = read(k->stderr_fd, chunk, sizeof(chunk))) > 0) {
                size_t take = MIN((size_t) n, sizeof(k->stderr_tail));
                size_t keep = MIN(k->stderr_len, sizeof(k->stderr_tail) - take);

                memmove(k->stderr_tail, k->stderr_tail + k->stderr_len - keep, keep);
                memcpy(k->stderr_tail + keep, chunk + n - take, take);
                k->stderr_len = keep + take;
        }
        if (n == 0) { /* the kernel and everything it started closed it */
                close(k->stderr_fd);
                k->stderr_fd = -1;
        }
}

static int set_error(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int set_error(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        if (ret_error && !*ret_error) {
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return r < 0 ? r : -EIO;
}

/* Opens the directory just made, and its parent, while the directory is still root's. Until
 * it is open, nothing would remove it: at worst an empty directory is left behind. */
static int dir_open(struct kernel *k) {
        _cleanup_close_ int fd = -1;
        char *slash = strrchr(k->dir, '/');
        struct stat st;

        *slash = '\0';
        k->parent_fd = open(k->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        *slash = '/';
        if (k->parent_fd < 0)
                return -errno;
        fd = openat(k->parent_fd, slash + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        /* Not the directory mkdtemp() made (a parent others may write to, and a quick swap). */
        if (st.st_uid != geteuid())
                return -EPERM;
        k->dir_fd = TAKE_FD(fd);
        return 0;
}

/* Makes the kernel's private directory (mode 0700; handed to the kernel's user once the
 * connection file is in it) and opens it. */
static int dir_make(struct kernel *k) {
        snprintf(k->dir, sizeof(k->dir), "%s/XXXXXX", KERNEL_DIR_PARENT);
        if ((mkdir(KERNEL_DIR_PARENT, 0711) < 0 && errno != EEXIST) || !mkdtemp(k->dir)) {
                snprintf(k->dir, sizeof(k->dir), "%s", KERNEL_DIR_FALLBACK);
                if (!mkdtemp(k->dir)) {
                        k->dir[0] = '\0';
                        return -errno;
                }
        }
        return dir_open(k);
}

static int connection_file_write(struct kernel *k, const struct kernel_config *cfg) {
        unsigned char raw[KEY_BYTES];
        char key[2 * KEY_BYTES + 1], ip[PATH_MAX + 8];
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -1;
        json_t *conn;
        size_t len;
        int r;

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(key, sizeof(key), raw, sizeof(raw));
        sodium_memzero(raw, sizeof(raw));
        r = jupyter_session_init(&k->session, key);
        if (r < 0)
                return r;

        snprintf(ip, sizeof(ip), "%s/kernel", k->dir);
        conn = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:s}", "transport", "ipc", "ip", ip,
                         "shell_port", 1, "iopub_port", 2, "stdin_port", 3, "control_port", 4, "hb_port", 5, "key",
                         key, "signature_scheme", "hmac-sha256", "kernel_name", "python3");
        sodium_memzero(key, sizeof(key));
        text = conn ? json_dumps(conn, JSON_INDENT(1)) : NULL;
        json_decref(conn);
        if (!text)
                return -ENOMEM;
        len = strlen(text);

        fd = openat(k->dir_fd, CONNECTION_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (write(fd, text, len) != (ssize_t) len)
                return errno > 0 ? -errno : -EIO;
        /* the kernel binds its sockets in the directory as its user */
        if ((cfg->uid != geteuid() || cfg->gid != getegid()) &&
            (fchown(fd, cfg->uid, cfg->gid) < 0 || fchown(k->dir_fd, cfg->uid, cfg->gid) < 0))
                return -errno;
        return 0;
}

static const char *spawn_stage_what(enum spawn_stage stage) {
        switch (stage) {
        case SPAWN_STAGE_FORK:
                return "fork";
        case SPAWN_STAGE_IDENTITY:
                return "switch to the kernel's user";
        case SPAWN_STAGE_CHDIR:
                return "enter the working directory";
        case SPAWN_STAGE_EXEC:
                return "run " PYTHON_PATH;
        default:
                return "set up the kernel's process";
        }
}

/* What `python3 -m ipykernel_launcher` runs (its argv[1] is the agent's pid, taken out before
 * ipykernel parses the rest), with three changes:
 *
 * - debugpy kept out while ipykernel loads: importing it costs a quarter of the start-up
 *   (100-150 ms) and only serves Jupyter's debugger, which contexts do not offer. Code run in
 *   the kernel can still import it.
 *
 * - Output written to fd 1 and 2 (C extensions, child processes) decoded leniently. ipykernel
 *   6.17's reader of those fds (OutStream._watch_pipe_fd) does a strict bytes.decode() of
 *   each 1000-byte read: the first byte that is not UTF-8, or a valid character cut in two by
 *   a read, raises in that thread and ends it, and the kernel's fd-level output is lost from
 *   then on. The replacement is the same loop with an incremental decoder that turns invalid
 *   bytes into U+FFFD and waits for a cut character's end. It is put in only where the
 *   method reads the attributes the loop uses, so that another ipykernel keeps its own.
 *
 * - A daemon thread that kills the kernel's process group once the agent is gone, when the
 *   agent is not pid 1 (an agent run on a host, by tests or for development; as pid 1, its
 *   pid namespace, and the kernel with it, ends with it). ipykernel's own parent_handle
 *   poller waits for the parent to become pid 1, which never happens when a subreaper adopts
 *   the orphan: a dev shell's, a test runner's, or another agent's (an agent that is not pid 1
 *   makes itself one, main.c). The thread waits on a pidfd of the agent (its exit is seen at
 *   once), or where there is none polls getppid(); it first checks that the agent is still
 *   its parent, so that a pid reused after the agent died cannot fool it. The agent cannot
 *   do it (it is gone), nor can PR_SET_PDEATHSIG: that fires when the thread that forked
 *   exits, and kernels are forked from connection threads and from the short-lived thread
 *   that starts the default context. */
static const char launcher[] =
        "import os, sys\n"
        "if sys.path[0] == '':\n" /* the cwd, back once the kernel runs */
        "    del sys.path[0]\n"
        "agent = int(sys.argv.pop(1))\n"
        "sys.modules['debugpy'] = None\n"
        "from ipykernel import iostream, kernelapp\n"
        "del sys.modules['debugpy']\n"
        "\n"
        "def watch_pipe_fd(self):\n"
        "    import codecs\n"
        "    decoder = codecs.getincrementaldecoder('utf-8')('replace')\n"
        "    try:\n"
        "        data = os.read(self._fid, 1000)\n"
        "        while data and self._should_watch:\n"
        "            text = decoder.decode(data)\n"
        "            if text:\n"
        "                self.write(text)\n"
        "            os.write(self._original_stdstream_copy, data)\n"
        "            data = os.read(self._fid, 1000)\n"
        "    except Exception:\n"
        "        self._exc = sys.exc_info()\n"
        "\n"
        "stock = getattr(getattr(iostream.OutStream, '_watch_pipe_fd', None), '__code__', None)\n"
        "if {'_fid', '_should_watch', '_original_stdstream_copy', '_exc'} <= set(getattr(stock, 'co_names', ())):\n"
        "    iostream.OutStream._watch_pipe_fd = watch_pipe_fd\n"
        "\n"
        "def watch_agent(agent):\n"
        "    import select, signal, time\n"
        "    try:\n"
        "        fd = os.pidfd_open(agent)\n"
        "    except (AttributeError, OSError):\n"
        "        fd = -1\n"
        "    if os.getppid() == agent and fd >= 0:\n"
        "        select.select([fd], [], [])\n"
        "    while os.getppid() == agent:\n"
        "        time.sleep(0.5)\n"
        "    os.killpg(0, signal.SIGKILL)\n"
        "\n"
        "if agent != 1:\n"
        "    import threading\n"
        "    threading.Thread(target=watch_agent, args=(agent,), name='ai2in-agent-watch', daemon=True).start()\n"
        "kernelapp.launch_new_instance()\n";

static int kernel_spawn(struct kernel *k, const struct kernel_config *cfg, const char *conn_file, char **ret_error) {
        char agent[16];

        snprintf(agent, sizeof(agent), "%d", (int) getpid());
        char *const argv[] = {
                (char *) PYTHON_PATH,
                (char *) "-c",
                (char *) launcher,
                agent,
                (char *) "-f",
                (char *) conn_file,
                /* no history database under $HOME: nothing to lock between contexts of one user */
                (char *) "--HistoryManager.hist_file=:memory:",
                /* tracebacks without ANSI colours (the events would strip them anyway) */
                (char *) "--InteractiveShell.colors=NoColor",
                NULL,
        };
        _cleanup_close_ int err_write = -1;
        enum spawn_stage stage;
        int pipefd[2], r;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return set_error(ret_error, -errno, "failed to make a pipe for the Python kernel: %m");
        k->stderr_fd = pipefd[0];
        err_write = pipefd[1];
        (void) fcntl(k->stderr_fd, F_SETFL, O_NONBLOCK);
        /* ipykernel copies all fd-level output of the code to its own stderr too; it is read
         * only while an execution runs, so leave room for what comes in between */
        (void) fcntl(err_write, F_SETPIPE_SZ, STDERR_PIPE_SIZE);

        struct process_spec spec = {
                .argv = argv,
                .envp = cfg->envp,
                .cwd = cfg->cwd,
                .set_identity = cfg->uid != geteuid() || cfg->gid != getegid(),
                .uid = cfg->uid,
                .gid = cfg->gid,
                .groups = cfg->groups,
                .n_groups = cfg->n_groups,
                .new_session = true, /* its own process group: SIGINT reaches it and its children only */
                .stdin_fd = -1,
                .stdout_fd = -1, /* ipykernel echoes fd-level output there too: not wanted */
                .stderr_fd = err_write,
        };
        r = process_spawn(&spec, &k->child, &stage);
        if (r < 0)
                return set_error(ret_error, r, "failed to %s for the Python kernel: %s", spawn_stage_what(stage),
                                 strerror(-r));
        return 0;
}

void python_describe_exit(int status, char *buf, size_t n) {
        if (WIFSIGNALED(status))
                snprintf(buf, n, "killed by signal %d (SIG%s)", WTERMSIG(status),
                         sigabbrev_np(WTERMSIG(status)) ?: "?");
        else
                snprintf(buf, n, "exit status %d", wait_status_to_exit_code(status));
}

static int start_failed(struct kernel *k, char **ret_error, int r, const char *what) {
        char last[512] = "";

        python_stderr_drain(k);
        text_last_line(k->stderr_tail, k->stderr_len, last, sizeof(last));
        return set_error(ret_error, r, "the Python kernel %s%s%s", what, last[0] ? ": " : "", last);
}

/* Waits until the kernel answers on shell and IOPub is known to be connected. */
static int wait_ready(struct kernel *k, int64_t deadline, char **ret_error) {
        int64_t resend_at = INT64_MAX;
        bool replied = false, iopub = false;
        struct incoming in;
        int status, r;

        r = python_channel_send(k, k->shell, "kernel_info_request", NULL, NULL);
        if (r < 0)
                return set_error(ret_error, r, "failed to send kernel_info_request to the Python kernel: %s",
                                 strerror(-r));
        for (;;) {
                while ((r = python_channel_recv(k, k->iopub, "iopub", &in)) > 0) {
                        iopub = true;
                        python_incoming_done(&in);
                }
                while (r >= 0 && (r = python_channel_recv(k, k->shell, "shell", &in)) > 0) {
                        replied = replied || streq(in.m.msg_type, "kernel_info_reply");
                        python_incoming_done(&in);
                }
                if (r < 0)
                        return set_error(ret_error, r, "failed to read from the Python kernel: %s", strerror(-r));
                if (replied && iopub)
                        return 0;
                python_stderr_drain(k);
                if (child_exited(k->child, &status)) {
                        char how[64], what[128];

                        python_describe_exit(status, how, sizeof(how));
                        snprintf(what, sizeof(what), "exited during start-up (%s)", how);
                        return start_failed(k, ret_error, -ECHILD, what);
                }
                if (deadline_left(deadline) == 0)
                        return start_failed(k, ret_error, -ETIMEDOUT, "did not answer in time");
                if (replied && resend_at == INT64_MAX)
                        resend_at = mono_ms() + READY_RESEND_MS;
                if (deadline_left(resend_at) == 0) {
                        log_debug("the Python kernel answered but IOPub is silent: kernel_info_request again");
                        r = python_channel_send(k, k->shell, "kernel_info_request", NULL, NULL);
                        if (r < 0)
                                return set_error(ret_error, r, "failed to send kernel_info_request: %s", strerror(-r));
                        resend_at = mono_ms() + READY_RESEND_MS;
                        continue; /* a send can consume the ZMQ_FD edge: read before polling */
                }

                struct pollfd fds[] = {
                        {.fd = k->shell_fd, .events = POLLIN},
                        {.fd = k->iopub_fd, .events = POLLIN},
                        {.fd = child_exit_fd(k->child), .events = POLLIN},
                        {.fd = k->stderr_fd, .events = POLLIN},
                };
                if (poll(fds, ELEMENTSOF(fds), deadline_poll_timeout(MIN(deadline, resend_at))) < 0 && errno != EINTR)
                        return set_error(ret_error, -errno, "failed to wait for the Python kernel: %m");
        }
}

/* A new IOPub socket, after the old one lost messages (the kernel's queue overflowed, or a
 * message over IOPUB_MAX_MESSAGE dropped the connection, which ZeroMQ does not re-establish),
 * checked the way start-up checks it. */
void python_iopub_reopen(struct kernel *k) {
        _cleanup_free_ char *error = NULL;
        int r;

        k->iopub_lost = false;
        zmq_close(k->iopub);
        k->iopub = NULL;
        r = python_iopub_open(k);
        if (r < 0) {
                log_error_errno(r, "failed to reopen the Python kernel's IOPub socket (pid %d)",
                                (int) child_pid(k->child));
                return;
        }
        r = wait_ready(k, mono_ms() + IOPUB_REOPEN_TIMEOUT_MS, &error);
        if (r < 0)
                log_error("the Python kernel's new IOPub socket (pid %d) is not working: %s", (int) child_pid(k->child),
                          error ? error : strerror(-r));
}

/* Empties the kernel's directory through its fd (see the top of the file), then removes its
 * name if that still is the directory. */
static void dir_remove(struct kernel *k) {
        const char *name = strrchr(k->dir, '/') + 1;
        struct stat st, now;
        struct dirent *de;
        DIR *d;

        if (k->dir_fd < 0)
                return;
        if (fstat(k->dir_fd, &st) < 0 || !(d = fdopendir(k->dir_fd))) {
                log_warn_errno(errno, "failed to open %s to remove it, ignoring", k->dir);
                return;
        }
        k->dir_fd = -1;
        /* The directory was opened when it was empty: btrfs (the sandbox's disk) lists only
         * what existed when it was opened, or last rewound (POSIX leaves later entries
         * unspecified), so rewind before reading. */
        rewinddir(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && unlinkat(dirfd(d), de->d_name, 0) < 0)
                        log_warn_errno(errno, "failed to remove %s/%s, ignoring", k->dir, de->d_name);
        closedir(d);
        if (fstatat(k->parent_fd, name, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_dev != st.st_dev ||
            now.st_ino != st.st_ino)
                log_warn("%s is no longer the Python kernel's directory (moved away?), leaving it", k->dir);
        else if (unlinkat(k->parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                log_warn_errno(errno, "failed to remove %s, ignoring", k->dir);
}

bool python_wait_exit(struct kernel *k, int64_t ms) {
        int64_t deadline = mono_ms() + ms;
        int status;

        while (!child_exited(k->child, &status)) {
                struct pollfd p = {.fd = child_exit_fd(k->child), .events = POLLIN};

                if (deadline_left(deadline) == 0)
                        return false;
                (void) poll(&p, 1, deadline_poll_timeout(deadline));
        }
        return true;
}

static int shutdown_request(struct kernel *k) {
        json_t *content = json_pack("{s:b}", "restart", 0);
        int r;

        if (!content)
                return -ENOMEM;
        r = python_channel_send(k, k->control, "shutdown_request", content, NULL);
        json_decref(content);
        return r;
}

void python_kernel_free(struct kernel *k, bool polite) {
        int status;

        if (!k)
                return;
        if (k->child) {
                if (!child_exited(k->child, &status)) {
                        (void) child_terminate(k->child, 0); /* notes its group's members */
                        if (polite && k->control && shutdown_request(k) == 0 && python_wait_exit(k, SHUTDOWN_GRACE_MS))
                                goto exited;
                        (void) child_terminate(k->child, SIGTERM);
                        if (!python_wait_exit(k, polite ? TERM_GRACE_MS : 200)) {
                                (void) child_terminate(k->child, SIGKILL);
                                if (!python_wait_exit(k, 5000))
                                        log_warn("the Python kernel (pid %d) did not exit after SIGKILL, ignoring",
                                                 (int) child_pid(k->child));
                        }
                }
        exited:
                /* whatever the code started in the kernel's group goes with it (the members
                 * it had while the kernel ran: its id may be another group's by now) */
                (void) child_terminate(k->child, SIGKILL);
                child_free(k->child);
        }
        python_shell_close(k);
        if (k->iopub)
                zmq_close(k->iopub);
        if (k->control)
                zmq_close(k->control);
        if (k->stderr_fd >= 0)
                close(k->stderr_fd);
        dir_remove(k);
        if (k->dir_fd >= 0)
                close(k->dir_fd);
        if (k->parent_fd >= 0)
                close(k->parent_fd);
        sodium_memzero(&k->session, sizeof(k->session));
        free(k);
}

int python_kernel_start(const struct kernel_config *cfg, int64_t timeout_ms, struct kernel **ret, char **ret_error) {
        int64_t t0 = mono_ms(), deadline = timeout_ms > 0 ? t0 + timeout_ms : INT64_MAX;
        char conn_file[PATH_MAX + 32];
        struct kernel *k;
        int r;

        *ret_error = NULL;
        if (sodium_init() < 0)
                return set_error(ret_error, -EIO, "failed to initialise libsodium");
        k = calloc(1, sizeof(*k));
        if (!k)
                return set_error(ret_error, -ENOMEM, "out of memory");
        k->stderr_fd = k->dir_fd = k->parent_fd = -1;
        k->shell_fd = k->shell_monitor_fd = k->iopub_fd = -1;

        r = dir_make(k);
        if (r < 0) {
                set_error(ret_error, r, "failed to make a directory for the Python kernel: %s", strerror(-r));
                goto fail;
        }
        snprintf(conn_file, sizeof(conn_file), "%s/" CONNECTION_FILE, k->dir);
        r = connection_file_write(k, cfg);
        if (r < 0) {
                set_error(ret_error, r, "failed to write %s: %s", conn_file, strerror(-r));
                goto fail;
        }
        r = python_sockets_open(k);
        if (r < 0) {
                set_error(ret_error, r, "failed to open the Python kernel's sockets: %s",
                          r == -ENOTCONN ? "ZeroMQ could not be set up when the agent started (see its log)"
                                         : strerror(-r));
                goto fail;
        }
        r = kernel_spawn(k, cfg, conn_file, ret_error);
        if (r < 0)
                goto fail;
        r = wait_ready(k, deadline, ret_error);
        if (r < 0)
                goto fail;

        log_info("Python kernel (pid %d, %s) ready in %lld ms", (int) child_pid(k->child), k->dir,
                 (long long) (mono_ms() - t0));
        *ret = k;
        return 0;
fail:
        python_kernel_free(k, false);
        return r;
}
