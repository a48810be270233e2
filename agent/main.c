/* main.c — ai2in-agent: the init process of a sandbox and the engine's way into it.
 *
 * Wiring only: parse the command line, get a listening socket (inherited from the engine
 * as --listen-fd, or bound here for development), set up signals for a pid 1, start the
 * reaper, and serve HTTP until SIGTERM or SIGINT. Run as `ai2in-agent --supervise …`, the
 * same binary is the supervisor of one command instead (supervise.h), and nothing else.
 *
 * The agent is not dumpable (PR_SET_DUMPABLE 0, before anything else): root in the sandbox
 * shares its uid, and must not ptrace it, read its memory or environment, or take its fds.
 * Changing a thread's filesystem ids (fsid.c) resets that to fs.suid_dumpable, so the
 * file handlers set it again.
 *
 * Signals: SIGCHLD, SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 are blocked in every thread (the
 * mask is set before any thread starts); the reaper takes SIGCHLD with sigwaitinfo(), the
 * main thread the others through a signalfd. SIGPIPE is ignored. Children get a clean
 * mask and default dispositions back before execve() (process.c).
 *
 * SIGUSR1 and SIGUSR2 are the engine's (`runsc kill`) around a checkpoint of a gVisor
 * sandbox, which cannot save a socket bound or connected to the host (the agent's, with
 * --listen unix: in a host directory): SIGUSR1 closes the listener and every connection,
 * then removes the socket's file, which tells the engine the agent is ready; SIGUSR2 (after
 * the restore, or when the checkpoint failed) listens again. Only with --listen unix:, whose
 * socket the agent can make again; otherwise they are ignored. A process of the sandbox
 * sending them only takes its own sandbox's channel away until the next SIGUSR2.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "timeutil.h"
#include "process.h"
#include "procs.h"
#include "kernel/contexts.h"
#include "routes.h"
#include "supervise.h"

#define MAX_CONNECTIONS 512
#define QUIESCE_TIMEOUT_MS 5000

struct options {
        int listen_fd;          /* -1 unless --listen-fd */
        const char *listen;     /* "unix:PATH" or "tcp:ADDR:PORT", or NULL */
        enum log_level log_level;
};

static void usage(FILE *f) {
        fputs("Usage: ai2in-agent (--listen-fd N | --listen unix:PATH | --listen tcp:ADDR:PORT)\n"
              "                   [--log-level debug|info|warn|error]\n"
              "Serves the sandbox agent's HTTP API; meant to run as the sandbox's init.\n",
              f);
}

static int parse_int(const char *s, long min, long max, long *ret) {
        long v;
        char *end;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != 0 || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Returns 1 to go on, 0 to exit successfully (--help), -EINVAL on bad usage. */
static int parse_options(int argc, char **argv, struct options *o) {
        static const struct option longopts[] = {
                {"listen-fd", required_argument, NULL, 'f'},
                {"listen", required_argument, NULL, 'l'},
                {"log-level", required_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        long fd;
        int c;

        *o = (struct options){.listen_fd = -1, .log_level = LOG_LVL_INFO};
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                switch (c) {
                case 'f':
                        if (parse_int(optarg, 0, INT_MAX, &fd) < 0)
                                return log_error_errno(EINVAL, "invalid --listen-fd '%s'", optarg);
                        o->listen_fd = (int) fd;
                        break;
                case 'l':
                        o->listen = optarg;
                        break;
                case 'v':
                        if (log_level_from_string(optarg, &o->log_level) < 0)
                                return log_error_errno(EINVAL, "invalid --log-level '%s'", optarg);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc || (o->listen_fd >= 0) == (o->listen != NULL)) {
                usage(stderr);
                return -EINVAL;
        }
        return 1;
}

static int listen_unix(const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        /* A socket left behind by an earlier run would make bind() fail. */
        if (lstat(path, &st) >= 0 && S_ISSOCK(st.st_mode))
                (void) unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 128) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int listen_tcp(const char *spec) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        _cleanup_free_ char *host = strdup(spec);
        _cleanup_close_ int fd = -1;
        char *colon;
        long port;
        int one = 1;

        if (!host)
                return -ENOMEM;
        colon = strrchr(host, ':');
        if (!colon)
                return -EINVAL;
        *colon = 0;
        if (parse_int(colon + 1, 1, 65535, &port) < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
                return -EINVAL;
        sa.sin_port = htons((uint16_t) port);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 128) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* Takes over an inherited listening socket: no child may inherit it. */
static int adopt_listen_fd(int fd) {
        int accepting = 0;
        socklen_t len = sizeof(accepting);

        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
                return -errno;
        if (!accepting)
                return -EINVAL;
        return fd;
}

static int open_listener(const struct options *o) {
        int r;

        if (o->listen_fd >= 0) {
                r = adopt_listen_fd(o->listen_fd);
                if (r < 0)
                        return log_error_errno(r, "fd %d is not a usable listening socket", o->listen_fd);
                return r;
        }
        if (strncmp(o->listen, "unix:", 5) == 0)
                r = listen_unix(o->listen + 5);
        else if (strncmp(o->listen, "tcp:", 4) == 0)
                r = listen_tcp(o->listen + 4);
        else
                r = -EINVAL;
        if (r < 0)
                return log_error_errno(r, "cannot listen on '%s'", o->listen);
        return r;
}

/* Blocks the signals that threads take synchronously, returns a signalfd for the
 * termination ones. Must run before any thread is created. */
static int setup_signals(void) {
        struct sigaction ignore = {.sa_handler = SIG_IGN};
        sigset_t set;
        int fd;

        if (sigaction(SIGPIPE, &ignore, NULL) < 0)
                return -errno;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGUSR1);
        sigaddset(&set, SIGUSR2);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                return -errno;
        sigdelset(&set, SIGCHLD);
        fd = signalfd(-1, &set, SFD_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* SIGUSR1: no listener, no connection, no socket file (see the top of the file). */
static void stop_listening(struct http_server *server, const char *path) {
        if (server->listen_fd < 0)
                return;
        close(server->listen_fd);
        server->listen_fd = -1;
        if (http_server_close_connections(server, QUIESCE_TIMEOUT_MS) < 0)
                log_warn("connections still open %d ms after they were shut down, removing the socket anyway",
                         QUIESCE_TIMEOUT_MS);
        if (unlink(path) < 0)
                log_warn_errno(errno, "cannot remove %s, ignoring", path);
        log_info("stopped listening on %s (checkpoint)", path);
}

/* SIGUSR2: the socket made again. */
static void listen_again(struct http_server *server, const char *path) {
        int fd;

        if (server->listen_fd >= 0)
                return;
        fd = listen_unix(path);
        if (fd < 0) {
                log_error_errno(fd, "cannot listen on %s again", path);
                return;
        }
        server->listen_fd = fd;
        log_info("listening on %s again", path);
}

int main(int argc, char **argv) {
        static struct agent agent;
        static struct http_server server;
        struct signalfd_siginfo si;
        _cleanup_close_ int signal_fd = -1;
        const char *unix_path;
        int listen_fd, r;
        struct options o;

        /* The same binary supervises each command (supervise.h): nothing of the agent's set-up. */
        if (argc > 1 && streq(argv[1], SUPERVISE_FLAG))
                return supervise_main(argc, argv);
        agent.started_ms = (uint64_t) mono_ms();
        log_setup("ai2in-agent", LOG_LVL_INFO);
        /* First of all: root in the sandbox has the agent's uid, and a dumpable process of
         * one's own uid can be ptraced or have its fds taken (pidfd_getfd): the listening
         * socket would let it answer the engine in the agent's place. Children get a
         * dumpable process back when they execve() a normal binary. */
        if (prctl(PR_SET_DUMPABLE, 0) < 0)
                return log_error_errno(errno, "failed to make the agent non-dumpable"), 1;
        r = parse_options(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        log_setup("ai2in-agent", o.log_level);
        /* Its log is a file on the host that the sandbox can provoke lines into (a kernel
         * sending badly signed messages): at most 20 lines a second after a burst. */
        log_set_rate_limit(200, 20);

        signal_fd = setup_signals();
        if (signal_fd < 0)
                return log_error_errno(signal_fd, "failed to set up signals"), 1;
        /* Outside a pid namespace, adopt orphans anyway so that tests see init's behaviour. */
        if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
                log_warn_errno(errno, "failed to become a child subreaper, ignoring");

        listen_fd = open_listener(&o);
        if (listen_fd < 0)
                return 1;
        r = process_reaper_start();
        if (r < 0)
                return log_error_errno(r, "failed to start the reaper"), 1;
        r = procs_init();
        if (r < 0)
                return log_error_errno(r, "failed to set up the process table"), 1;
        r = contexts_init();
        if (r < 0)
                return log_error_errno(r, "failed to set up code contexts"), 1;

        server = (struct http_server){
                .listen_fd = listen_fd,
                .handler = agent_route,
                .userdata = &agent,
                .max_connections = MAX_CONNECTIONS,
                .streams_body = agent_route_streams_body,
        };
        log_info("serving as pid %d on %s", (int) getpid(), o.listen ? o.listen : "the inherited socket");
        unix_path = o.listen && strncmp(o.listen, "unix:", 5) == 0 ? o.listen + 5 : NULL;
        for (;;) {
                r = http_server_run(&server, signal_fd);
                if (r < 0)
                        return log_error_errno(r, "accepting connections failed"), 1;
                if (read(signal_fd, &si, sizeof(si)) != (ssize_t) sizeof(si))
                        continue;
                if (si.ssi_signo == SIGUSR1 && unix_path)
                        stop_listening(&server, unix_path);
                else if (si.ssi_signo == SIGUSR2 && unix_path)
                        listen_again(&server, unix_path);
                else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                        break;
        }
        log_info("received %s, exiting", strsignal((int) si.ssi_signo));
        /* Connection threads may still be running: leave without running exit handlers. */
        _exit(0);
}
