/* main.c — ai2ind's entry point: wiring only. Parses the configuration, then runs one of the
 * subcommands: serve (the engine), keys (API keys), template (root filesystems), net, node (the nodes sharing the store). */
#include <dirent.h>
#include <errno.h>
#include <openssl/sha.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "api/api.h"
#include "cluster/drain.h"
#include "cluster/node.h"
#include "disk/disk.h"
#include "engine.h"
#include "fsutil.h"
#include "id.h"
#include "log.h"
#include "net/conn-pool.h"
#include "net/tls.h"
#include "proxy/proxy.h"
#include "sandbox/pool.h"
#include "sandbox/sandbox.h"
#include "sandbox/userns.h"
#include "template/template.h"
#include "timeutil.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: ai2ind [OPTIONS] COMMAND\n\n"
                "commands:\n"
                "  serve                         run the engine in the foreground (the default)\n"
                "  keys create --team NAME       make an API key for a team (printed once)\n"
                "  keys list                     list keys (ids and teams, never the keys)\n"
                "  keys revoke KEY_ID            revoke a key\n"
                "  template build NAME [--force] build a template (NAME: base) as a new version\n"
                "  template import NAME DIR      make DIR (a root file system owned by uid-base, on the template\n"
                "                                directory's file system) the new current version of NAME\n"
                "  template list                 list templates, their versions and the sandboxes on each\n"
                "  net remove [--force]          remove the bridge, its firewall rules and the disk volume's mount\n"
                "                                (once no sandbox runs)\n"
                "  node list                     the nodes (engines) sharing the store: state, lease, URL, sandboxes\n"
                "  node cordon NAME              NAME takes no new sandboxes (its own keep running)\n"
                "  node uncordon NAME            NAME takes new sandboxes again (and stops draining)\n"
                "  node drain NAME [SECONDS]     NAME takes no new sandboxes and moves its paused ones to other nodes\n"
                "    [--running pause-move-resume]  and its running ones too: paused, moved, resumed there\n\n"
                "options (also AI2IN_<NAME> environment variables and lines of the config file):\n");
        config_help(f);
}

/* The state directory may be traversed (the sandboxes' root reaches its rootfs through it)
 * but not listed; the store and its WAL are root's alone: they hold API key hashes, traffic
 * tokens and sandboxes' environment variables (which may be secrets). Modes are set, not
 * only created with: a state directory made by an older version was world-readable. */
static int open_store(struct engine *eng, struct error *e) {
        static const char *const files[] = {"state.db", "state.db-wal", "state.db-shm"};
        char path[4200];
        int r = mkdir_p(eng->cfg.state_dir, 0711);

        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", eng->cfg.state_dir, strerror(-r));
        if (chmod(eng->cfg.state_dir, 0711) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot restrict %s: %s", eng->cfg.state_dir, strerror(errno));
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                snprintf(path, sizeof(path), "%s/%s", eng->cfg.state_dir, files[i]);
                if (chmod(path, 0600) < 0 && errno != ENOENT)
                        return error_set(e, errno, ERR_INTERNAL, "cannot restrict %s: %s", path, strerror(errno));
        }
        return store_open(eng->cfg.database, eng->cfg.state_dir, &eng->store, e);
}

static int cmd_keys(struct engine *eng, int argc, char **argv, struct error *e);

static void print_key(void *data, const char *key_id, const char *team, int64_t created_at, bool revoked) {
        char when[RFC3339_LEN + 1];

        format_rfc3339(created_at, when);
        printf("%-10s %-20s %s%s\n", key_id, team, when, revoked ? "  (revoked)" : "");
}

static int cmd_keys(struct engine *eng, int argc, char **argv, struct error *e) {
        int r;

        if (argc >= 1 && streq(argv[0], "create")) {
                char key[API_KEY_LEN + 1], key_id[API_KEY_ID_LEN + 1];
                unsigned char hash[SHA256_DIGEST_LENGTH];
                int64_t team;

                if (argc != 3 || !streq(argv[1], "--team") || !*argv[2] || strlen(argv[2]) > 64)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "usage: ai2ind keys create --team NAME (1-64 characters)");
                if ((r = open_store(eng, e)) < 0 || (r = store_team_ensure(eng->store, argv[2], &team, e)) < 0)
                        return r;
                r = api_key_new(key);
                if (r < 0)
                        return error_set(e, r, ERR_INTERNAL, "cannot make a key: %s", strerror(-r));
                memcpy(key_id, key + strlen(API_KEY_PREFIX), API_KEY_ID_LEN);
                key_id[API_KEY_ID_LEN] = 0;
                SHA256((const unsigned char *) key, strlen(key), hash);
                r = store_key_insert(eng->store, key_id, hash, team, e);
                if (r < 0)
                        return r;
                printf("%s\n", key);
                fprintf(stderr, "API key %s for team '%s' created. It is shown only once: keep it now.\n"
                                "Use it as AI2IN_API_KEY=... or the X-API-Key header.\n", key_id, argv[2]);
                return 0;
        }
        if (argc == 1 && streq(argv[0], "list")) {
                if ((r = open_store(eng, e)) < 0)
                        return r;
                printf("%-10s %-20s %s\n", "KEY_ID", "TEAM", "CREATED");
                return store_key_foreach(eng->store, print_key, NULL, e);
        }
        if (argc == 2 && streq(argv[0], "revoke")) {
                if ((r = open_store(eng, e)) < 0)
                        return r;
                r = store_key_revoke(eng->store, argv[1], e);
                if (r >= 0)
                        printf("revoked %s\n", argv[1]);
                return r;
        }
        return error_set(e, EINVAL, ERR_BAD_REQUEST, "usage: ai2ind keys create --team NAME | keys list | keys revoke KEY_ID");
}

/* Every template command uses the store: it says which versions sandboxes use. */
static int cmd_template(struct engine *eng, int argc, char **argv, struct error *e) {
        struct template_ctx c = {.dir = eng->cfg.template_dir, .state_dir = eng->cfg.state_dir, .uid_base = eng->cfg.uid_base};
        bool build = argc >= 2 && streq(argv[0], "build") && (argc == 2 || (argc == 3 && streq(argv[2], "--force")));
        bool import = argc == 3 && streq(argv[0], "import"), list = argc == 1 && streq(argv[0], "list");
        int r;

        if (!build && !import && !list)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "usage: ai2ind template build NAME [--force] | template import NAME DIR | template list");
        /* Except a build of a template that exists, which does nothing (`make run` and
         * scripts/test.sh run one every time: it need not open the real engine's store). */
        if (build && argc == 2 && template_current(c.dir, argv[1], (char[TEMPLATE_VERSION_MAX]){0}, NULL) == 0)
                return template_build(&c, argv[1], false, e);
        if ((r = open_store(eng, e)) < 0)
                return r;
        c.store = eng->store;
        if (build)
                return template_build(&c, argv[1], argc == 3, e);
        return import ? template_import(&c, argv[1], argv[2], e) : template_list(&c, e);
}

static int print_node(void *data, const struct node_rec *n) {
        int64_t now = *(const int64_t *) data;
        bool down = n->lease_until < now;
        char state[48], lease[48];

        snprintf(state, sizeof(state), "%s%s%s%s", down ? "down" : node_state_to_string(n->state), down && n->state != NODE_ACTIVE ? " (" : "",
                 down && n->state != NODE_ACTIVE ? node_state_to_string(n->state) : "", down && n->state != NODE_ACTIVE ? ")" : "");
        if (down)
                snprintf(lease, sizeof(lease), "lapsed %llds ago", (long long) ((now - n->lease_until) / 1000));
        else
                snprintf(lease, sizeof(lease), "renewed %llds ago", (long long) ((now - n->heartbeat_at) / 1000));
        printf("%-24s %-18s %-20s %-8lld %-8lld %-6lld %-8lld %s\n", n->name, state, lease, (long long) n->running,
               (long long) n->capacity, (long long) n->cpus, (long long) n->memory_mb, n->advertise);
        return 0;
}

#define NODE_USAGE \
        "usage: ai2ind node list | node cordon NAME | node uncordon NAME | node drain NAME [SECONDS] [--running " \
        "pause-move-resume]"

/* `node list | cordon NAME | uncordon NAME | drain NAME [SECONDS] [--running pause-move-resume]`:
 * the rows of the nodes sharing the store. */
static int cmd_node(struct engine *eng, int argc, char **argv, struct error *e) {
        bool running = argc >= 4 && streq(argv[argc - 2], "--running");
        bool list = argc == 1 && streq(argv[0], "list");
        bool cordon = argc == 2 && streq(argv[0], "cordon"), uncordon = argc == 2 && streq(argv[0], "uncordon");
        bool drain = argc >= 2 && argc - (running ? 2 : 0) <= 3 && streq(argv[0], "drain");
        int64_t now = now_ms(), seconds = 600;
        char *end = NULL;
        int r;

        if (running) {
                if (!streq(argv[argc - 1], "pause-move-resume"))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                         "drain: --running takes 'pause-move-resume' (the only way to move a running sandbox), "
                                         "not '%.32s'",
                                         argv[argc - 1]);
                argc -= 2;
        }
        if (drain && argc == 3) {
                errno = 0;
                seconds = strtoll(argv[2], &end, 10);
                if (errno || !end || *end || seconds < 1 || seconds > 7 * 86400)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "drain: SECONDS must be 1 to 604800, not '%.32s'", argv[2]);
        }
        if (!list && !cordon && !uncordon && !drain)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, NODE_USAGE);
        if ((r = open_store(eng, e)) < 0)
                return r;
        if (list) {
                printf("%-24s %-18s %-20s %-8s %-8s %-6s %-8s %s\n", "NAME", "STATE", "LEASE", "RUNNING", "CAPACITY", "CPUS", "MEM_MB",
                       "ADVERTISE");
                return store_node_foreach(eng->store, print_node, &now, e);
        }
        if (drain)
                return drain_watch(eng->store, argv[1], seconds, running, e);
        r = store_node_set_state(eng->store, argv[1], cordon ? NODE_CORDONED : NODE_ACTIVE, e);
        if (r == -ENOENT)
                return error_set(e, ENOENT, ERR_NOT_FOUND, "no node %s in the store (see `ai2ind node list`)", argv[1]);
        if (r < 0)
                return r;
        printf(cordon ? "cordoned %s: it takes no new sandboxes\n" : "uncordoned %s: it takes new sandboxes\n", argv[1]);
        return 0;
}

/* Whether a child can make a user namespace: without one no sandbox starts, and runc's own
 * message for it ("can't get final child's PID from pipe: EOF") says nothing useful. */
static int userns_works(void) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return -errno;
        if (pid == 0)
                _exit(unshare(CLONE_NEWUSER) < 0 ? (errno & 0xff) : 0);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -(WIFEXITED(status) ? WEXITSTATUS(status) : EIO);
}

static int check_prerequisites(struct engine *eng, struct error *e) {
        struct stat st;
        char path[4200];
        int r;

        if (geteuid() != 0)
                return error_set(e, EPERM, ERR_INTERNAL, "ai2ind serve must run as root (it makes namespaces, mounts and cgroups)");
        if (stat(eng->cfg.agent, &st) < 0)
                return error_set(e, errno, ERR_INTERNAL, "the agent binary %s is missing: build it with `make`", eng->cfg.agent);
        r = userns_works();
        if (r < 0)
                return error_set(e, -r, ERR_INTERNAL,
                                 "this machine does not let ai2ind make user namespaces (%s), and every sandbox needs one: "
                                 "check sysctl user.max_user_namespaces (and kernel.unprivileged_userns_clone), and do not "
                                 "run the engine in a chroot (the kernel refuses user namespaces there; a container or a "
                                 "pivot_root is fine)",
                                 strerror(-r));
        snprintf(path, sizeof(path), "%s/base/rootfs", eng->cfg.template_dir);
        if (stat(path, &st) < 0)
                log_warn("template 'base' is missing in %s: build it with `ai2ind template build base` (or `make run`)",
                         eng->cfg.template_dir);
        return 0;
}

/* The disk volume, before reconcile (the sandboxes it re-adopts have their files on it), and
 * the disk limits that depend on its size: max-disk-mb 0 is the image's size, and the default
 * is lowered to the maximum. */
static int open_disk(struct engine *eng, struct error *e) {
        struct config *c = &eng->cfg;
        int r;

        if (!c->disk_volume) {
                log_warn("disk-volume is off: sandboxes write to %s without a limit", c->state_dir);
                return 0;
        }
        if ((r = disk_open(c->state_dir, c->disk_image_mb, &eng->disk, e)) < 0) {
                error_wrap(e, "cannot set up the sandboxes' disk volume (setting disk-volume off runs without disk limits)");
                return r;
        }
        if (r < 0)
                return r;
        if (c->max_disk_mb == 0)
                c->max_disk_mb = eng->disk->size_mb;
        if (c->max_disk_mb < 16)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "max-disk-mb must be at least 16 (or 0 for the disk image's size)");
        if (c->default_disk_mb > c->max_disk_mb)
                c->default_disk_mb = c->max_disk_mb;
        return 0;
}

/* The default runtime (--runtime) and the other one if its program is installed, each with
 * its state under RUN/<program> (runc's at RUN/runc, as before runtimes were several). */
static int open_runtimes(struct engine *eng, struct error *e) {
        static const char *const others[] = {"runc", "runsc"};
        char root[4200];
        unsigned n = 0;
        int r;

        const char *base = strrchr(eng->cfg.runtime, '/');

        snprintf(root, sizeof(root), "%s/%s", eng->cfg.run_dir, base ? base + 1 : eng->cfg.runtime);
        if ((r = runtime_new(eng->cfg.runtime, root, eng->cfg.cgroup_parent, &eng->runtime, e)) < 0)
                return r;
        eng->runtimes[n++] = eng->runtime;
        for (size_t i = 0; i < ELEMENTSOF(others) && n < ENGINE_RUNTIMES; i++) {
                struct runtime *rt;
                struct error ignore = {0};

                if (streq(runtime_kind_of(others[i]), eng->runtime->ops->kind) || !runtime_installed(others[i]))
                        continue;
                snprintf(root, sizeof(root), "%s/%s", eng->cfg.run_dir, others[i]);
                if (runtime_new(others[i], root, eng->cfg.cgroup_parent, &rt, &ignore) < 0)
                        log_warn("%s, ignoring: sandboxes cannot choose %s", ignore.message, others[i]);
                else
                        eng->runtimes[n++] = rt;
        }
        return 0;
}

static int serve_setup(struct engine *eng, struct error *e) {
        int r;

        snprintf(eng->sandboxes_dir, sizeof(eng->sandboxes_dir), "%s/sandboxes", eng->cfg.state_dir);
        snprintf(eng->run_sandboxes_dir, sizeof(eng->run_sandboxes_dir), "%s/sandboxes", eng->cfg.run_dir);
        if ((r = check_prerequisites(eng, e)) < 0 || (r = open_store(eng, e)) < 0)
                return r;
        /* sandboxes/ passable (each sandbox's root reaches its own directory through it), not
         * listable; set, not only created with (umask 077). RUN and RUN/sandboxes likewise: a
         * gVisor sandbox's gofer, as the sandbox's root, reaches its socket directory through
         * them (runtime.h: takes_listen_fd); everything in them is 0700 or named by id. */
        if ((r = mkdir_p(eng->sandboxes_dir, 0711)) < 0 || (r = mkdir_p(eng->run_sandboxes_dir, 0711)) < 0 ||
            (r = chmod(eng->sandboxes_dir, 0711) < 0 ? -errno : 0) < 0 || (r = chmod(eng->run_sandboxes_dir, 0711) < 0 ? -errno : 0) < 0 ||
            (r = chmod(eng->cfg.run_dir, 0711) < 0 ? -errno : 0) < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create the engine's directories: %s", strerror(-r));
        if ((r = open_disk(eng, e)) < 0)
                return r;
        if ((r = locks_new(&eng->locks)) < 0)
                return error_set(e, r, ERR_INTERNAL, "out of memory");
        userns_host_limits(eng->cfg.sandbox_inotify_instances, eng->cfg.sandbox_inotify_watches);
        struct net_config nc = {.bridge = eng->cfg.bridge, .pool = eng->cfg.net_pool, .run_dir = eng->cfg.run_dir,
                                .dns = eng->cfg.dns, .deny_out = eng->cfg.deny_out};
        if ((r = open_runtimes(eng, e)) < 0 || (r = net_new(&nc, &eng->net, e)) < 0 ||
            (r = node_register(eng, e)) < 0 || (r = reconcile(eng, e)) < 0 ||
            (r = reaper_start(eng, e)) < 0 || (r = drain_start(eng, e)) < 0 || (r = pool_start(eng, e)) < 0)
                return r;
        return 0;
}

/* This binary's path, as a user can paste it ("ai2ind" if unknown). */
static const char *self_path(void) {
        static char path[4096];
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

        if (n <= 0)
                return "ai2ind";
        path[n] = 0;
        return path;
}

/* The engine's own open-file limit goes up to its hard limit; that must be at least what
 * sandboxes get, which their runtime inherits (a raise past it takes CAP_SYS_RESOURCE). */
static int raise_open_files(struct engine *eng, struct error *e) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return error_set(e, errno, ERR_INTERNAL, "getrlimit: %s", strerror(errno));
        if (rl.rlim_max < (rlim_t) eng->cfg.sandbox_open_files)
                rl.rlim_max = (rlim_t) eng->cfg.sandbox_open_files;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_max < (rlim_t) eng->cfg.sandbox_open_files))
                return error_set(e, EPERM, ERR_BAD_REQUEST,
                                 "sandbox-open-files %lld is above ai2ind's own hard open-file limit (%llu), which it cannot raise",
                                 (long long) eng->cfg.sandbox_open_files, (unsigned long long) rl.rlim_max);
        return 0;
}

static int cmd_serve(struct engine *eng, struct error *e) {
        struct api_server *api = NULL;
        struct proxy *preview = NULL;
        char database[512];
        sigset_t set;
        int sig, r;

        /* Block the stop signals in every thread; the main thread waits for them. */
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        /* The TLS files first: a wrong one stops the start before anything is set up. */
        r = api_tls_load(eng, e);
        if (r >= 0)
                r = tls_client_new(eng->cfg.cluster_ca, &eng->cluster_tls, e);
        if (r >= 0 && conn_pool_new(NODE_CONN_IDLE_MS, &eng->node_conns) < 0)
                r = error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        if (r >= 0)
                r = raise_open_files(eng, e);
        if (r >= 0)
                r = serve_setup(eng, e);
        if (r >= 0)
                r = api_start(eng, &api, e);
        if (r >= 0)
                r = proxy_start(eng, &preview, e);
        if (r < 0) {
                api_stop(api);
                pool_stop(eng);
                reaper_stop(eng);
                drain_stop(eng);
                return r;
        }
        printf("ai2ind listening on %s://%s\n", eng->tls_cert_pem ? "https" : "http", eng->cfg.listen);
        if (preview)
                printf("preview URLs: %s://{port}-{sandbox id, \"_\" as \"-\"}.%s/ (proxy on %s)\n", eng->cfg.preview_scheme,
                       eng->cfg.preview_domain, eng->cfg.preview_listen);
        printf("make an API key, in another shell: %s --state-dir %s%s keys create --team default\n", self_path(),
               eng->cfg.state_dir, *eng->cfg.database ? " --database URL" : "");
        fflush(stdout);
        store_database_mask(*eng->cfg.database ? eng->cfg.database : "SQLite STATE/state.db", database, sizeof(database));
        log_info("engine ready (node %s at %s, runtime %s, bridge %s, pool %s, idle timeout %llds, cap %lld per team, store %s)",
                 eng->cfg.node_name, eng->cfg.advertise, eng->cfg.runtime, eng->cfg.bridge, eng->cfg.net_pool,
                 (long long) eng->cfg.idle_timeout, (long long) eng->cfg.max_running, database);
        /* Engines sharing PostgreSQL forward requests to each other: without a secret, anyone
         * who reaches a node's port can pass a request as another node's. */
        if (*eng->cfg.database && !eng->cfg.cluster_secret)
                log_warn("no cluster-secret-file: requests forwarded between nodes carry no secret; set one (the same "
                         "file on every node) for any deployment on more than one machine");
        sigwait(&set, &sig);
        log_info("stopping on signal %d; sandboxes keep running and are re-adopted at the next start", sig);
        proxy_stop(preview);
        api_stop(api);
        pool_stop(eng); /* pooled sandboxes are nobody's: none is re-adopted */
        reaper_stop(eng);
        drain_stop(eng);
        return 0;
}

/* `net remove`: what an engine leaves on the host besides its state directory — the bridge,
 * its firewall rules, the empty cgroup directories the sandboxes were placed under, the disk
 * volume's mount and loop device (its image stays in the state directory: paused sandboxes'
 * files are in it, and the next start mounts it again). */
static int cmd_net_remove(struct engine *eng, bool force, struct error *e) {
        unsigned cgroups;
        bool unmounted;
        int r = net_remove(eng->cfg.bridge, force, e);

        if (r < 0 || (r = disk_unmount(eng->cfg.state_dir, &unmounted, e)) < 0)
                return r;
        if (unmounted)
                printf("unmounted the disk volume %s/disk (its image %s/disk.img stays)\n", eng->cfg.state_dir, eng->cfg.state_dir);
        cgroups = runtime_cgroups_remove_parent(eng->cfg.cgroup_parent);
        printf("removed bridge %s and its firewall rules, and %u empty cgroup director%s (%s)\n", eng->cfg.bridge, cgroups,
               cgroups == 1 ? "y" : "ies", eng->cfg.cgroup_parent);
        return 0;
}

int main(int argc, char **argv) {
        struct engine eng = {0};
        struct error e = {0};
        enum log_level level = LOG_LVL_INFO;
        int argi = 1, r;

        pthread_mutex_init(&eng.node_rows.lock, NULL);

        log_setup("ai2ind", LOG_LVL_INFO);
        /* Nothing the engine makes is for other host users (the template's tree sets its own
         * modes: template.c). */
        umask(077);
        r = config_load(&eng.cfg, argc, argv, &argi, &e);
        if (r < 0) {
                fprintf(stderr, "ai2ind: %s\n", e.message);
                return 2;
        }
        if (argi < argc && (streq(argv[argi], "--help") || streq(argv[argi], "help"))) {
                usage(stdout);
                config_free(&eng.cfg);
                return 0;
        }
        if (log_level_from_string(eng.cfg.log_level, &level) < 0) {
                fprintf(stderr, "ai2ind: log-level must be debug, info, warn or error\n");
                config_free(&eng.cfg);
                return 2;
        }
        log_setup("ai2ind", level);
        log_set_rate_limit(2000, 200); /* sandboxes and clients can provoke lines too */

        if (argi >= argc || streq(argv[argi], "serve"))
                r = cmd_serve(&eng, &e);
        else if (streq(argv[argi], "keys"))
                r = cmd_keys(&eng, argc - argi - 1, argv + argi + 1, &e);
        else if (streq(argv[argi], "node"))
                r = cmd_node(&eng, argc - argi - 1, argv + argi + 1, &e);
        else if (streq(argv[argi], "template"))
                r = cmd_template(&eng, argc - argi - 1, argv + argi + 1, &e);
        else if (streq(argv[argi], "net") && argi + 2 <= argc && argi + 3 >= argc && streq(argv[argi + 1], "remove") &&
                 (argi + 2 == argc || streq(argv[argi + 2], "--force")))
                r = cmd_net_remove(&eng, argi + 3 == argc, &e);
        else {
                usage(stderr);
                r = error_set(&e, EINVAL, ERR_BAD_REQUEST, "unknown command '%s'", argv[argi]);
        }
        if (r < 0)
                fprintf(stderr, "ai2ind: %s\n", e.message);
        net_free(eng.net);
        disk_free(eng.disk);
        for (size_t i = 0; i < ENGINE_RUNTIMES; i++)
                runtime_free(eng.runtimes[i]);
        store_close(eng.store);
        locks_free(eng.locks);
        api_tls_free(&eng);
        conn_pool_free(eng.node_conns); /* before the context its connections were made with */
        SSL_CTX_free(eng.cluster_tls);
        config_free(&eng.cfg);
        return r < 0 ? 1 : 0;
}
