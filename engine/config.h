/* config.h — the engine's settings, from defaults, a config file, AI2IN_* environment
 * variables and command-line flags, in rising order of precedence.
 *
 * Every setting has one name used in all three places: "idle-timeout" is the flag
 * --idle-timeout, the file line `idle-timeout = 1800` and the variable AI2IN_IDLE_TIMEOUT.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

struct config {
        char *config_file;   /* default /etc/ai2in/ai2ind.conf (missing is fine) */
        char *state_dir;     /* /var/lib/ai2in */
        char *database;      /* "" = SQLite at STATE/state.db; postgres[ql]://… = PostgreSQL (store.h) */
        char *template_dir;  /* STATE/templates */
        char *run_dir;       /* /run/ai2in */
        char *listen;        /* 127.0.0.1:7300 */
        char *preview_listen; /* 127.0.0.1:7301; "off" for none */
        char *preview_domain; /* what preview hosts end in; default "localhost:PORT" of preview_listen */
        char *preview_scheme; /* http, or https behind a TLS-terminating proxy */
        char *runtime;       /* runc */
        char *agent;         /* ai2in-agent beside the ai2ind binary */
        char *bridge;        /* ai2in0 */
        char *net_pool;      /* 10.77.0.0/16 */
        char *dns;           /* upstream resolver of the sandboxes; "": the host's (net/dns.h) */
        char *deny_out;      /* comma list of CIDRs no sandbox may reach; "" */
        char *internet_access_setting; /* "on" | "off", read into internet_access */
        bool internet_access; /* a create that does not say gets the internet */
        char *cgroup_parent; /* ai2in */
        char *log_level;     /* info */
        char *node_name;     /* this engine's name among the nodes sharing its store; default: the host name */
        char *advertise;     /* the URL other nodes reach its API at; default http://LISTEN (http://HOSTNAME:PORT for 0.0.0.0) */
        char *advertise_preview; /* HOST:PORT other nodes relay previews to; default PREVIEW-LISTEN; "" with the proxy off */
        char *tls_cert;      /* PEM certificate (chain) of the API port; "" = plain HTTP */
        char *tls_key;       /* its PEM private key */
        char *cluster_ca;    /* PEM CA the certificates of other nodes must chain to; "" = the system's */
        char *cluster_secret_file; /* "" = none: nodes forward to each other without a secret (one machine only) */
        char *cluster_secret; /* its contents, trimmed (>= 32 bytes), or NULL; never logged */
        int64_t node_lease;  /* s, 15: down (its sandboxes lost) once it has not renewed its lease for this long */
        char *placement_setting; /* "spread" | "local", read into placement_local */
        bool placement_local;    /* a create is made by the node it reached (cluster/placement.h) */
        char *pool;          /* "NAME=N,…" sandboxes kept started ahead per template (sandbox/pool.h); "" or "off": none */
        int64_t node_capacity; /* sandboxes it runs at once, for placement; 0: its memory / default_memory_mb */
        char *disk_volume_setting; /* "on" | "off", read into disk_volume */
        bool disk_volume;    /* sandboxes' files on the disk volume, limited (disk/disk.h) */
        int64_t idle_timeout;    /* s, 1800 */
        int64_t max_running;     /* per team, 20 */
        int64_t max_streams;     /* requests open at once inside one sandbox, 256 */
        int64_t api_connections_per_address; /* open at once from one client address, 256 */
        int64_t api_head_timeout; /* s, 10: for a whole request head (unauthenticated: whole request) */
        int64_t reap_interval;   /* s, 1 */
        int64_t default_memory_mb; /* 512, at most max_memory_mb */
        int64_t max_memory_mb;   /* largest memory_mb of a create; default half the host's memory, at most 65536 */
        int64_t default_disk_mb; /* 2048, at most max_disk_mb */
        int64_t max_disk_mb;     /* largest disk_mb of a create; 0 until the disk volume is open: its size */
        int64_t disk_image_mb;   /* STATE/disk.img's size when made (0: half the state file system's free space) */
        int64_t default_pids;    /* 1024 */
        int64_t sandbox_open_files; /* RLIMIT_NOFILE (soft = hard) of a sandbox's processes, 1024 */
        int64_t sandbox_ptys;    /* devpts max= of a sandbox, 128 */
        int64_t sandbox_inotify_instances; /* per user inside a sandbox (its user namespace's limit), 128 */
        int64_t sandbox_inotify_watches;   /* likewise, 65536 */
        int64_t uid_base;        /* first host uid of the sandboxes' range, 1000000 */
        int64_t uid_count;       /* 65536 */
        int64_t owner_uid_base;  /* owners of the sandboxes' user namespaces: + low 24 bits of the address */
        int64_t uid_ranges_base; /* the sandboxes' own ranges: this + k * uid_count, 2^31 */
        int64_t uid_ranges;      /* k < this, 32767 */
};

/* Fills c with defaults, then the config file, the environment and argv (flags before the
 * subcommand). On return *ret_argi is the index of the first non-flag argument. argv0_dir
 * is the directory of the running binary (to find the agent beside it). */
int config_load(struct config *c, int argc, char **argv, int *ret_argi, struct error *e);

/* Frees the strings. */
void config_free(struct config *c);

/* Prints the list of settings with their defaults (for --help). */
void config_help(FILE *f);
