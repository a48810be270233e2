/* config.c — see config.h. One table describes every setting; the file, environment and
 * flag parsers all walk it, so a new setting is one line. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

enum opt_type { OPT_STR, OPT_INT };

struct opt {
        const char *name;
        enum opt_type type;
        size_t offset;
        const char *def;
        int64_t min, max;
        const char *help;
};

#define S(n, f, d, h) {n, OPT_STR, offsetof(struct config, f), d, 0, 0, h}
#define I(n, f, d, lo, hi, h) {n, OPT_INT, offsetof(struct config, f), d, lo, hi, h}

static const struct opt opts[] = {
        S("config", config_file, "/etc/ai2in/ai2ind.conf", "config file (key = value lines)"),
        S("state-dir", state_dir, "/var/lib/ai2in", "state.db and sandboxes/"),
        S("database", database, "",
          "PostgreSQL URL (postgresql://USER:PASSWORD@HOST/DB?...) for engines sharing one database; unset: SQLite STATE-DIR/state.db"),
        S("template-dir", template_dir, "", "templates (default STATE-DIR/templates)"),
        S("run-dir", run_dir, "/run/ai2in", "runtime state: runc root, netns, agent sockets"),
        S("listen", listen, "127.0.0.1:7300", "API address HOST:PORT"),
        S("preview-listen", preview_listen, "127.0.0.1:7301", "preview proxy address HOST:PORT, or off"),
        S("preview-domain", preview_domain, "", "domain of preview URLs {port}-{id}.DOMAIN (default localhost:PREVIEW-PORT)"),
        S("preview-scheme", preview_scheme, "",
          "scheme of preview URLs: http, or https (behind a TLS proxy; the default with tls-cert, which the preview proxy then serves)"),
        S("runtime", runtime, "runc", "OCI runtime binary"),
        S("agent", agent, "", "ai2in-agent binary (default: beside ai2ind)"),
        S("bridge", bridge, "ai2in0", "bridge the sandboxes' veths attach to"),
        S("net-pool", net_pool, "10.77.0.0/16", "sandbox address pool (CIDR); .1 is the bridge"),
        S("internet-access", internet_access_setting, "on",
          "on: a sandbox reaches the internet (through NAT) unless created with allow_internet_access false; off: only if created with it true"),
        S("deny-out", deny_out, "",
          "comma list of IPv4 CIDRs no sandbox may reach, whatever it asks (beside the engine's own: the host, the pool, 169.254.0.0/16)"),
        S("dns", dns, "", "resolver the sandboxes' DNS goes to (IPv4; default: the host's first non-loopback nameserver)"),
        S("cgroup-parent", cgroup_parent, "ai2in", "cgroup under which sandboxes are placed"),
        S("log-level", log_level, "info", "debug, info, warn or error"),
        S("node-name", node_name, "", "this engine's name among the nodes sharing its database: 1-63 of a-z 0-9 - . (default: the host name)"),
        S("advertise", advertise, "",
          "URL other nodes reach this engine's API at, http[s]://HOST[:PORT] (default http[s]://LISTEN, https with tls-cert, the host name for 0.0.0.0)"),
        S("advertise-preview", advertise_preview, "",
          "[https://]HOST:PORT other nodes relay previews of this node's sandboxes to, https:// when it speaks TLS "
          "(default PREVIEW-LISTEN, https:// with tls-cert, the host name for 0.0.0.0; none when the preview proxy is off)"),
        S("tls-cert", tls_cert, "",
          "PEM certificate (chain) the API port serves HTTPS with (with tls-key); unset: plain HTTP (see docs/deploy.md)"),
        S("tls-key", tls_key, "", "PEM private key of tls-cert (unencrypted; mode 0600)"),
        S("cluster-ca", cluster_ca, "",
          "PEM CA certificate(s) other nodes' certificates must chain to; when set, every request to another node goes "
          "over verified TLS (their advertise must be https://) and this node's advertise must be https://"),
        S("cluster-secret-file", cluster_secret_file, "",
          "file holding the secret that requests between nodes carry (>= 32 bytes, mode 0600 or 0400, owned by root); "
          "required for nodes on more than one machine"),
        I("node-lease", node_lease, "15", 3, 3600,
          "seconds without a heartbeat after which this node counts as down (renewed every third of it)"),
        S("placement", placement_setting, "spread",
          "spread: a create goes to the node with the most room (of two drawn at random); local: to the node it reached"),
        I("node-capacity", node_capacity, "0", 0, 100000,
          "the most sandboxes this node runs at once: placement sends it no create beyond (0: its memory / default-memory-mb)"),
        S("pool", pool, "off",
          "sandboxes kept started ahead, per template: TEMPLATE=COUNT[,TEMPLATE=COUNT…] such as base=8, or off"),
        I("idle-timeout", idle_timeout, "1800", 1, 30 * 86400, "seconds of inactivity before reaping"),
        I("max-running", max_running, "20", 1, 100000, "running sandboxes per team"),
        I("max-streams", max_streams, "256", 1, 100000, "requests open at once inside one sandbox (streams included)"),
        I("api-connections-per-address", api_connections_per_address, "256", 1, 4000,
          "API connections one client address may hold open at once (see docs/security.md)"),
        I("api-head-timeout", api_head_timeout, "10", 1, 120,
          "seconds a client has to send a whole request head (without an API key: its whole request)"),
        I("reap-interval", reap_interval, "1", 1, 3600, "seconds between reaper passes"),
        I("default-memory-mb", default_memory_mb, "512", 64, 65536, "memory limit when create gives none (at most max-memory-mb)"),
        I("max-memory-mb", max_memory_mb, "0", 0, 65536, "largest memory_mb a create may ask for (0: half the host's memory)"),
        S("disk-volume", disk_volume_setting, "on",
          "on: each sandbox's files on STATE/disk.img, limited to its disk_mb; off: unlimited, on the state file system"),
        I("default-disk-mb", default_disk_mb, "2048", 16, 16777216, "disk limit of a sandbox when create gives none (at most max-disk-mb)"),
        I("max-disk-mb", max_disk_mb, "0", 0, 16777216, "largest disk_mb a create may ask for (0: the disk image's size)"),
        I("disk-image-mb", disk_image_mb, "0", 0, 16777216,
          "size of STATE/disk.img, the sparse image holding every sandbox's files (0: half the free space when made)"),
        I("default-pids", default_pids, "1024", 16, 1000000, "pids limit per sandbox"),
        I("sandbox-open-files", sandbox_open_files, "1024", 64, 1048576, "open-file limit (RLIMIT_NOFILE) of every process in a sandbox"),
        I("sandbox-ptys", sandbox_ptys, "128", 1, 3072, "terminals (PTYs) a sandbox may have open at once"),
        I("sandbox-inotify-instances", sandbox_inotify_instances, "128", 1, 65536,
          "inotify instances one user inside a sandbox may hold (see the README)"),
        I("sandbox-inotify-watches", sandbox_inotify_watches, "65536", 1, 4194304,
          "inotify watches one user inside a sandbox may hold (see the README)"),
        I("uid-base", uid_base, "1000000", 1, 4000000000LL, "first host uid mapped into sandboxes"),
        I("uid-count", uid_count, "65536", 1024, 65536, "size of the uid range"),
        I("owner-uid-base", owner_uid_base, "2000000000", 1, 4000000000LL,
          "host uids owning the sandboxes' user namespaces: this + the low 24 bits of the sandbox's address"),
        I("sandbox-uid-ranges-base", uid_ranges_base, "2147483648", 1, 4294967294LL,
          "first host uid of the sandboxes' own uid ranges (each uid-count long, one per running sandbox)"),
        I("sandbox-uid-ranges", uid_ranges, "32767", 1, 65535, "how many such ranges (a sandbox's is picked by its address)"),
};

static int opt_set(struct config *c, const struct opt *o, const char *value, const char *origin, struct error *e) {
        void *field = (char *) c + o->offset;

        if (o->type == OPT_STR) {
                char *copy = strdup(value);
                if (!copy)
                        return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
                free(*(char **) field);
                *(char **) field = copy;
                return 0;
        }
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < o->min || v > o->max)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s: %s must be an integer in %lld..%lld, not '%s'",
                                 origin, o->name, (long long) o->min, (long long) o->max, value);
        *(int64_t *) field = v;
        return 0;
}

static const struct opt *opt_find(const char *name, size_t n) {
        for (size_t i = 0; i < ELEMENTSOF(opts); i++)
                if (strlen(opts[i].name) == n && strncmp(opts[i].name, name, n) == 0)
                        return &opts[i];
        return NULL;
}

static char *trim(char *s) {
        char *end;

        while (isspace((unsigned char) *s))
                s++;
        end = s + strlen(s);
        while (end > s && isspace((unsigned char) end[-1]))
                *--end = 0;
        return s;
}

static int load_file(struct config *c, const char *path, bool required, struct error *e) {
        _cleanup_free_ char *data = NULL;
        char *line, *save = NULL;
        int r, lineno = 0;

        r = read_file(path, 1024 * 1024, &data, NULL);
        if (r == -ENOENT && !required)
                return 0;
        if (r < 0)
                return error_set(e, r, ERR_BAD_REQUEST, "cannot read config file %s: %s", path, strerror(-r));
        for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char origin[PATH_MAX + 32], *eq, *key;
                const struct opt *o;

                lineno++;
                line = trim(line);
                if (!*line || *line == '#')
                        continue;
                snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
                eq = strchr(line, '=');
                if (!eq)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s: expected 'key = value'", origin);
                *eq = 0;
                key = trim(line);
                o = opt_find(key, strlen(key));
                if (!o || streq(o->name, "config"))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s: unknown setting '%s'", origin, key);
                r = opt_set(c, o, trim(eq + 1), origin, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void env_name(const char *name, char *out, size_t n) {
        size_t i = snprintf(out, n, "AI2IN_");
        for (; *name && i + 1 < n; name++)
                out[i++] = *name == '-' ? '_' : (char) toupper((unsigned char) *name);
        out[i] = 0;
}

static int load_env(struct config *c, bool config_only, struct error *e) {
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                char name[64];
                const char *v;
                int r;

                if (config_only != streq(opts[i].name, "config"))
                        continue;
                env_name(opts[i].name, name, sizeof(name));
                v = getenv(name);
                if (!v || !*v)
                        continue;
                r = opt_set(c, &opts[i], v, name, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Walks the leading --flags of argv; with apply == false it only looks for --config. */
static int load_flags(struct config *c, int argc, char **argv, bool config_only, int *ret_argi, struct error *e) {
        int i;

        for (i = 1; i < argc; i++) {
                const char *a = argv[i], *value, *eq;
                const struct opt *o;
                size_t n;
                int r;

                if (strncmp(a, "--", 2) != 0 || streq(a, "--help"))
                        break;
                a += 2;
                eq = strchr(a, '=');
                n = eq ? (size_t) (eq - a) : strlen(a);
                o = opt_find(a, n);
                if (!o)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "unknown option '%s' (see --help)", argv[i]);
                if (eq)
                        value = eq + 1;
                else if (i + 1 < argc)
                        value = argv[++i];
                else
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "option --%s needs a value", o->name);
                if (config_only != streq(o->name, "config"))
                        continue;
                r = opt_set(c, o, value, "command line", e);
                if (r < 0)
                        return r;
        }
        if (ret_argi)
                *ret_argi = i;
        return 0;
}

static int fill_internet_access(struct config *c, struct error *e) {
        if (!streq(c->internet_access_setting, "on") && !streq(c->internet_access_setting, "off"))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "internet-access must be on or off, not '%.32s'",
                                 c->internet_access_setting);
        c->internet_access = streq(c->internet_access_setting, "on");
        return 0;
}

static int fill_placement(struct config *c, struct error *e) {
        if (!streq(c->placement_setting, "spread") && !streq(c->placement_setting, "local"))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "placement must be spread or local, not '%.32s'", c->placement_setting);
        c->placement_local = streq(c->placement_setting, "local");
        return 0;
}

static int fill_disk_volume(struct config *c, struct error *e) {
        if (!streq(c->disk_volume_setting, "on") && !streq(c->disk_volume_setting, "off"))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "disk-volume must be on or off, not '%.32s'", c->disk_volume_setting);
        c->disk_volume = streq(c->disk_volume_setting, "on");
        return 0;
}

static int set_string(char **field, const char *value, struct error *e) {
        char *copy = strdup(value);

        if (!copy)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        free(*field);
        *field = copy;
        return 0;
}

/* The preview URLs' domain defaults to localhost with the proxy's port: *.localhost is
 * loopback (RFC 6761), so the URLs work on the engine's machine with no DNS set-up. */
static int fill_preview(struct config *c, struct error *e) {
        const char *colon = strrchr(c->preview_listen, ':');
        char buf[128];

        if (!*c->preview_scheme && set_string(&c->preview_scheme, *c->tls_cert ? "https" : "http", e) < 0)
                return -ENOMEM;
        if (!streq(c->preview_scheme, "http") && !streq(c->preview_scheme, "https"))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "preview-scheme must be http or https, not '%.32s'",
                                 c->preview_scheme);
        for (const char *p = c->preview_domain; *p; p++)
                if (!isalnum((unsigned char) *p) && !strchr(".-:[]", *p))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                         "preview-domain '%.64s' is not a host name (with an optional :port)", c->preview_domain);
        if (*c->preview_domain || !colon)
                return 0;
        snprintf(buf, sizeof(buf), "localhost:%s", colon + 1);
        free(c->preview_domain);
        c->preview_domain = strdup(buf);
        return c->preview_domain ? 0 : error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
}

/* Half of the host's memory in MiB, from /proc/meminfo (0 if unreadable). */
static int64_t half_host_memory_mb(void) {
        _cleanup_free_ char *data = NULL;
        const char *p;
        long long kib;

        if (read_file("/proc/meminfo", 64 * 1024, &data, NULL) < 0 || !(p = strstr(data, "MemTotal:")))
                return 0;
        kib = strtoll(p + strlen("MemTotal:"), NULL, 10);
        return kib > 0 ? kib / 1024 / 2 : 0;
}

/* The sandboxes' own uid ranges (sandbox/idmap.h) must fit below 2^32-1 and meet neither the
 * canonical range the files are owned by on disk (a sandbox would then run as the owner of
 * every sandbox's files) nor the owner uids (a sandbox's uid would own another's namespace). */
static int check_uid_ranges(const struct config *c, int64_t owners, struct error *e) {
        int64_t lo = c->uid_ranges_base, hi = c->uid_ranges_base + c->uid_ranges * c->uid_count;

        if (hi - 1 > 4294967294LL)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "sandbox-uid-ranges-base %lld + sandbox-uid-ranges %lld x uid-count %lld goes past 2^32-2",
                                 (long long) lo, (long long) c->uid_ranges, (long long) c->uid_count);
        if (lo < c->uid_base + c->uid_count && c->uid_base < hi)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "sandbox-uid-ranges-base %lld: its ranges (up to %lld) overlap uid-base %lld + uid-count %lld",
                                 (long long) lo, (long long) hi - 1, (long long) c->uid_base, (long long) c->uid_count);
        if (lo < c->owner_uid_base + owners && c->owner_uid_base < hi)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "sandbox-uid-ranges-base %lld: its ranges (up to %lld) overlap the 2^24 owner uids from %lld",
                                 (long long) lo, (long long) hi - 1, (long long) c->owner_uid_base);
        return 0;
}

/* The caps that depend on each other or on the host: max-memory-mb (0: half the host's
 * memory, within 64..65536; default-memory-mb is lowered to it), and the owner uids, which
 * must not meet the mapped range: a host process running as a sandbox's owner would have
 * every capability over that sandbox. */
static int fill_limits(struct config *c, struct error *e) {
        const int64_t owners = 1 << 24;

        if (c->max_memory_mb == 0) {
                int64_t half = half_host_memory_mb();
                c->max_memory_mb = half < 64 ? 64 : half > 65536 ? 65536 : half;
        }
        if (c->max_memory_mb < 64)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "max-memory-mb must be at least 64 (or 0 for half the host's memory)");
        if (c->default_memory_mb > c->max_memory_mb)
                c->default_memory_mb = c->max_memory_mb;
        if (c->owner_uid_base + owners - 1 > 4294967294LL)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "owner-uid-base %lld leaves no room for 2^24 uids below 2^32-1",
                                 (long long) c->owner_uid_base);
        if (c->owner_uid_base < c->uid_base + c->uid_count && c->uid_base < c->owner_uid_base + owners)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "owner-uid-base %lld: its 2^24 uids overlap the sandboxes' range (uid-base %lld, uid-count %lld)",
                                 (long long) c->owner_uid_base, (long long) c->uid_base, (long long) c->uid_count);
        return check_uid_ranges(c, owners, e);
}

#define NODE_NAME_MAX_LEN 63 /* store.h's NODE_NAME_MAX */

static bool node_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > NODE_NAME_MAX_LEN)
                return false;
        for (; *s; s++)
                if (!(*s >= 'a' && *s <= 'z') && !(*s >= '0' && *s <= '9') && *s != '-' && *s != '.')
                        return false;
        return true;
}

/* http[s]://HOST[:PORT][/]: HOST a name, an IPv4 address or [an IPv6 one]; PORT 1..65535. */
static bool advertise_valid(const char *url) {
        const char *p = url, *host;
        size_t n;

        if (strncmp(p, "http://", 7) == 0)
                p += 7;
        else if (strncmp(p, "https://", 8) == 0)
                p += 8;
        else
                return false;
        host = p;
        if (*p == '[') {
                n = strspn(p + 1, "0123456789abcdefABCDEF:.");
                if (n == 0 || p[1 + n] != ']')
                        return false;
                p += n + 2;
        } else {
                n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.");
                if (n == 0 || n > 253)
                        return false;
                p += n;
        }
        if (*p == ':') {
                char *end;
                errno = 0;
                long port = strtol(p + 1, &end, 10);
                if (errno || end == p + 1 || port < 1 || port > 65535)
                        return false;
                p = end;
        }
        if (*p == '/')
                p++;
        return p > host && *p == 0;
}


/* [https://]HOST:PORT of the preview proxy for other nodes (https: it speaks TLS): default
 * the preview listen address (the host name in place of 0.0.0.0), https with tls-cert; ""
 * when the proxy is off. */
static int fill_advertise_preview(struct config *c, const char *host, struct error *e) {
        char url[600];
        const char *colon = strrchr(c->preview_listen, ':');
        const char *scheme = *c->tls_cert ? "https://" : "";
        const char *hostport = c->advertise_preview;

        if (streq(c->preview_listen, "off"))
                return set_string(&c->advertise_preview, "", e);
        if (!*c->advertise_preview) {
                if (colon && strncmp(c->preview_listen, "0.0.0.0:", 8) == 0)
                        snprintf(url, sizeof(url), "%s%s%s", scheme, host, colon);
                else
                        snprintf(url, sizeof(url), "%s%s", scheme, c->preview_listen);
                return set_string(&c->advertise_preview, url, e);
        }
        if (strncmp(hostport, "https://", 8) == 0)
                hostport += 8;
        /* The same HOST[:PORT] rules as advertise's. */
        snprintf(url, sizeof(url), "http://%s", hostport);
        if (strlen(c->advertise_preview) > 255 || !strchr(hostport, ':') || !advertise_valid(url) || url[strlen(url) - 1] == '/')
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "advertise-preview '%.80s' is not of the form [https://]HOST:PORT",
                                 c->advertise_preview);
        return 0;
}

#define CLUSTER_SECRET_MIN 32
#define CLUSTER_SECRET_MAX 4096

/* Reads the cluster secret: a file only root can read (it lets a request pass as another
 * node's), its contents trimmed of surrounding whitespace (a trailing newline). */
static int load_cluster_secret(struct config *c, struct error *e) {
        _cleanup_free_ char *data = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        ssize_t n;
        char *t;

        if (!*c->cluster_secret_file)
                return 0;
        fd = open(c->cluster_secret_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return error_set(e, errno, ERR_BAD_REQUEST, "cannot open cluster-secret-file %s: %s", c->cluster_secret_file,
                                 strerror(errno));
        if (fstat(fd, &st) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot stat cluster-secret-file %s: %s", c->cluster_secret_file,
                                 strerror(errno));
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0177) != 0)
                return error_set(e, EPERM, ERR_BAD_REQUEST,
                                 "cluster-secret-file %s must be a regular file owned by root with mode 0600 or 0400 (it is "
                                 "uid %u, mode %04o): chown root: %s && chmod 600 %s",
                                 c->cluster_secret_file, (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777),
                                 c->cluster_secret_file, c->cluster_secret_file);
        data = calloc(1, CLUSTER_SECRET_MAX + 2);
        if (!data)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        n = read(fd, data, CLUSTER_SECRET_MAX + 1);
        if (n < 0)
                return error_set(e, errno, ERR_BAD_REQUEST, "cannot read cluster-secret-file %s: %s", c->cluster_secret_file,
                                 strerror(errno));
        /* A NUL would cut the secret short: looked for before trim() writes its own. */
        bool nul = memchr(data, 0, (size_t) n) != NULL;
        t = trim(data);
        if (n > CLUSTER_SECRET_MAX || nul || strlen(t) < CLUSTER_SECRET_MIN)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "cluster-secret-file %s must hold %d to %d bytes (after trimming whitespace), e.g. "
                                 "`openssl rand -hex 32`",
                                 c->cluster_secret_file, CLUSTER_SECRET_MIN, CLUSTER_SECRET_MAX);
        /* Sent in a header: only visible ASCII, no whitespace. */
        for (const char *p = t; *p; p++)
                if (*p <= 0x20 || *p >= 0x7f)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                         "cluster-secret-file %s: the secret must be visible ASCII characters without spaces",
                                         c->cluster_secret_file);
        return set_string(&c->cluster_secret, t, e);
}

/* The node's name (default: the host name, lower-cased: host names ignore case) and the URL
 * it advertises (default: the API's address; the host name when that is every address). */
static int fill_node(struct config *c, struct error *e) {
        char host[256] = "", url[512];
        const char *colon = strrchr(c->listen, ':');
        const char *scheme = *c->tls_cert ? "https" : "http";
        int r;

        if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
                snprintf(host, sizeof(host), "localhost");
        /* The default must never stop an engine from starting: the host name lower-cased, any
         * other character made '-', cut to 63. A name given is taken as it is, or refused. */
        for (char *p = host; *p; p++) {
                *p = (char) tolower((unsigned char) *p);
                if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '.')
                        *p = '-';
        }
        host[NODE_NAME_MAX_LEN] = 0;
        if (!*c->node_name && (r = set_string(&c->node_name, host, e)) < 0)
                return r;
        if (!node_name_valid(c->node_name))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "node-name '%.80s' must be 1-63 characters of a-z, 0-9, '-' and '.'",
                                 c->node_name);
        if (!*c->advertise) {
                if (colon && strncmp(c->listen, "0.0.0.0:", 8) == 0)
                        snprintf(url, sizeof(url), "%s://%s%s", scheme, host, colon);
                else
                        snprintf(url, sizeof(url), "%s://%s", scheme, c->listen);
                if ((r = set_string(&c->advertise, url, e)) < 0)
                        return r;
        }
        if (strlen(c->advertise) > 255 || !advertise_valid(c->advertise))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "advertise '%.80s' is not a URL of the form http[s]://HOST[:PORT]",
                                 c->advertise);
        /* With a cluster CA, nodes talk TLS only: one that advertises http:// would be
         * refused by every other node. */
        if (*c->cluster_ca && strncmp(c->advertise, "https://", 8) != 0)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "cluster-ca is set, so other nodes reach this one over TLS only: advertise '%.80s' must be "
                                 "https:// (and tls-cert set, or TLS terminated in front of the API)",
                                 c->advertise);
        r = fill_advertise_preview(c, host, e);
        if (r < 0)
                return r;
        return load_cluster_secret(c, e);
}

static int fill_derived(struct config *c, struct error *e) {
        char buf[PATH_MAX];
        int r;

        if (!*c->template_dir) {
                snprintf(buf, sizeof(buf), "%s/templates", c->state_dir);
                free(c->template_dir);
                c->template_dir = strdup(buf);
        }
        if (!*c->agent) {
                ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 32);
                char *slash;
                if (n < 0)
                        return error_set(e, errno, ERR_INTERNAL, "cannot find own binary: %s", strerror(errno));
                buf[n] = 0;
                slash = strrchr(buf, '/');
                strcpy(slash + 1, "ai2in-agent");
                free(c->agent);
                c->agent = strdup(buf);
        }
        if (!c->template_dir || !c->agent)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        r = fill_preview(c, e);
        if (r < 0)
                return r;
        r = fill_disk_volume(c, e);
        if (r < 0)
                return r;
        r = fill_internet_access(c, e);
        if (r < 0)
                return r;
        r = fill_placement(c, e);
        if (r < 0)
                return r;
        r = fill_limits(c, e);
        if (r < 0)
                return r;
        r = fill_node(c, e);
        if (r < 0)
                return r;
        if (strlen(c->bridge) > 15 || strlen(c->bridge) == 0)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "bridge name '%s' must be 1..15 characters", c->bridge);
        return 0;
}

int config_load(struct config *c, int argc, char **argv, int *ret_argi, struct error *e) {
        bool explicit_file;
        int r;

        *c = (struct config){0};
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                r = opt_set(c, &opts[i], opts[i].def, "default", e);
                if (r < 0)
                        return r;
        }
        /* The config file's path may itself come from the environment or a flag. */
        r = load_env(c, true, e);
        if (r < 0)
                return r;
        r = load_flags(c, argc, argv, true, NULL, e);
        if (r < 0)
                return r;
        explicit_file = !streq(c->config_file, opts[0].def);
        r = load_file(c, c->config_file, explicit_file, e);
        if (r < 0)
                return r;
        r = load_env(c, false, e);
        if (r < 0)
                return r;
        r = load_flags(c, argc, argv, false, ret_argi, e);
        if (r < 0)
                return r;
        return fill_derived(c, e);
}

void config_free(struct config *c) {
        if (c->cluster_secret)
                OPENSSL_cleanse(c->cluster_secret, strlen(c->cluster_secret));
        free(c->cluster_secret);
        c->cluster_secret = NULL;
        for (size_t i = 0; i < ELEMENTSOF(opts); i++)
                if (opts[i].type == OPT_STR) {
                        char **f = (char **) ((char *) c + opts[i].offset);
                        free(*f);
                        *f = NULL;
                }
}

void config_help(FILE *f) {
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                char env[64];
                env_name(opts[i].name, env, sizeof(env));
                fprintf(f, "  --%-26s %s (default %s; env %s)\n", opts[i].name, opts[i].help,
                        *opts[i].def ? opts[i].def : streq(opts[i].name, "database") || streq(opts[i].name, "deny-out") ? "none" : "see text", env);
        }
}
