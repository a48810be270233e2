/* store.h — the engine's durable state: teams, API keys, sandboxes and nodes (engines).
 *
 * An interface with two backends behind one vtable (store/backend.h): SQLite in WAL mode
 * (sqlite.c, the default: one machine, nothing to set up) and PostgreSQL (postgres.c, for
 * engines sharing one database). store_open picks one; every other call dispatches
 * (store.c) and means exactly the same on both. Every call is safe from any thread. Instants
 * are Unix milliseconds; 0 means "none". A PostgreSQL that cannot be reached makes a call
 * fail with ERR_UNAVAILABLE (503) "the database is unreachable: …"; the next call reconnects.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct store;

/* The longest node name (cluster/node.h says which names are valid). */
#define NODE_NAME_MAX 63

/* A node's error reason on its running sandboxes once its lease lapsed (store_nodes_mark_lost):
 * "node NAME lost". The node's reconcile recognises it and re-adopts what still runs. */
#define NODE_LOST_FMT "node %s lost"

enum sandbox_state {
        SANDBOX_CREATING,
        SANDBOX_RUNNING,
        SANDBOX_PAUSED,
        SANDBOX_KILLED,
        SANDBOX_ERROR,
        /* Transitions, written before the runtime is asked to stop or start anything, so that
         * a restarted engine knows what to finish or undo (sandbox/reconcile.c). */
        SANDBOX_PAUSING,
        SANDBOX_RESUMING,
        _SANDBOX_STATE_MAX,
};

/* What a paused (or pausing, resuming) sandbox keeps: its files only (the container is
 * gone), or also its memory: the container frozen (it still holds RAM and counts against
 * the running cap), or checkpointed to disk (gVisor: the container is gone, its image in
 * the sandbox's directory; it holds no RAM and does not count). PAUSE_NONE while running. */
enum pause_kind {
        PAUSE_NONE,
        PAUSE_FILESYSTEM,
        PAUSE_MEMORY,
        PAUSE_CHECKPOINT,
        _PAUSE_KIND_MAX,
};

/* What users see: "filesystem", "memory" (PAUSE_CHECKPOINT too: how the memory is kept is
 * the runtime's business), or NULL for PAUSE_NONE. */
const char *pause_kind_to_string(enum pause_kind k);

const char *sandbox_state_to_string(enum sandbox_state s);
int sandbox_state_from_string(const char *s, enum sandbox_state *ret);

struct sandbox_rec {
        char id[32];
        int64_t team_id;
        char template_name[64];
        char template_version[64]; /* the template version it was created on and always mounts;
                                    * "" = a template made before versions (template.h) */
        enum sandbox_state state;
        char error[512];
        int64_t created_at, started_at, killed_at;
        int64_t timeout;       /* s; 0 = no hard lifetime */
        int64_t deadline;      /* ms; 0 = none (reaped when idle instead); always 0 while paused */
        int64_t idle_timeout;  /* s */
        int64_t last_activity; /* ms */
        char *metadata;        /* JSON object text, owned */
        char *envs;            /* JSON object text, owned */
        double cpu_count;
        int64_t memory_mb;
        int64_t disk_mb;       /* its layer's limit (disk/disk.h); 0 = none: made by an engine before disk
                                * limits, its layer is STATE/sandboxes/<id>/upper on the state file system */
        char ip[16];
        enum pause_kind pause_kind;
        char traffic_token[48]; /* secure sandboxes: what preview requests must carry; "" = open */
        char node[NODE_NAME_MAX + 1]; /* the node (engine) that owns it: set at insert, never changed */
        bool allow_internet_access; /* its address comes from the pool's half that goes out (net.h) */
        char *network_rules;   /* "" or JSON {"allow_out": [CIDR…], "deny_out": [CIDR…]}, owned */
        char runtime[16];      /* the kind of runtime its containers run on: "runc", "gvisor" (runtime.h);
                                * set at insert, never changed; rows of older engines: "runc" */
        int64_t seq;           /* insertion order, for pagination */
};

/* Frees the owned strings of r (not r itself). */
void sandbox_rec_done(struct sandbox_rec *r);

/* Opens the store and migrates its schema. database NULL or "": SQLite at
 * STATE_DIR/state.db (created if needed); "postgres://…" or "postgresql://…": that
 * PostgreSQL database (libpq's URI syntax), which must exist. Anything else is refused.
 * Messages never show the URL's password. */
int store_open(const char *database, const char *state_dir, struct store **ret, struct error *e);

/* Whether database names a PostgreSQL database (its scheme), not SQLite. */
bool store_database_is_postgres(const char *database);

/* Copies database into out with its password (user:PASSWORD@ or password=…) replaced by
 * "***", for messages and logs. */
void store_database_mask(const char *database, char *out, size_t n);

/* Closes the store (NULL is fine). */
void store_close(struct store *s);

/* Finds or creates the team called name. */
int store_team_ensure(struct store *s, const char *name, int64_t *ret_id, struct error *e);

/* Stores a key: its public id and the SHA-256 of the whole key. */
int store_key_insert(struct store *s, const char *key_id, const unsigned char hash[32], int64_t team_id, struct error *e);

/* Looks up a key by id; -ENOENT when missing or revoked. */
int store_key_lookup(struct store *s, const char *key_id, unsigned char ret_hash[32], int64_t *ret_team, struct error *e);

/* Revokes a key by id; -ENOENT when there is none. */
int store_key_revoke(struct store *s, const char *key_id, struct error *e);

/* Calls fn for each key: id, team name, created_at, revoked. */
int store_key_foreach(struct store *s, void (*fn)(void *data, const char *key_id, const char *team, int64_t created_at, bool revoked),
                      void *data, struct error *e);

/* Inserts r (state creating) unless the team already has max_running sandboxes that count
 * against the cap (-EUSERS then, with a message naming the cap). Those are the ones that hold
 * a container's CPU or RAM: creating, running, pausing, resuming, and paused with their
 * memory kept. */
int store_sandbox_insert(struct store *s, struct sandbox_rec *r, int64_t max_running, struct error *e);

/* Reads a sandbox by id into ret (whose strings the caller frees); -ENOENT if none. */
int store_sandbox_get(struct store *s, const char *id, struct sandbox_rec *ret, struct error *e);

/* Writes every mutable field of r back. */
int store_sandbox_update(struct store *s, const struct sandbox_rec *r, struct error *e);

/* Writes r back like store_sandbox_update, unless r's team already has max_running other
 * sandboxes that count against the cap (-EUSERS then, with the message of
 * store_sandbox_insert, and nothing is written). The check and the write happen under the
 * lock that store_sandbox_insert counts under, so the cap is exact when a resume and a create
 * race. */
int store_sandbox_update_capped(struct store *s, const struct sandbox_rec *r, int64_t max_running, struct error *e);

/* Moves last_activity to at (ms) if later. */
int store_sandbox_touch(struct store *s, const char *id, int64_t at, struct error *e);

/* Deletes the row (a create that never finished). */
int store_sandbox_delete(struct store *s, const char *id, struct error *e);

struct sandbox_filter {
        int64_t team_id;          /* < 0: every team */
        unsigned state_mask;      /* 1 << enum sandbox_state */
        const char **meta_keys;   /* metadata key/value pairs that must all match */
        const char **meta_values;
        unsigned n_meta;
        const char *node;         /* only this node's sandboxes; NULL: every node's */
        int64_t after_seq;        /* pagination: only seq > after_seq */
        unsigned limit;           /* 0 = no limit */
};

/* Calls fn for each matching sandbox in seq order; fn's rec is valid only during the call.
 * fn returning non-zero stops the walk. */
int store_sandbox_foreach(struct store *s, const struct sandbox_filter *f, int (*fn)(void *data, const struct sandbox_rec *r),
                          void *data, struct error *e);

/* Collects ids of node's running sandboxes whose end has passed at now: their deadline if they
 * have one (the idle limit does not apply to them), else their idle limit (last_activity +
 * idle_timeout). ret is a malloc'd array of malloc'd strings; *ret_n its length. */
int store_sandbox_expired(struct store *s, const char *node, int64_t now, char ***ret, unsigned *ret_n, struct error *e);

/* Calls fn once for each template version that sandboxes not killed record (their
 * template_version; "" for a legacy template), with how many record it. Versions that no
 * such sandbox records may be removed (template/gc.c). fn returning non-zero stops the walk. */
int store_template_users(struct store *s, int (*fn)(void *data, const char *name, const char *version, int64_t n), void *data,
                         struct error *e);

/* Deletes killed sandboxes killed before the given instant. */
int store_sandbox_purge(struct store *s, int64_t killed_before, struct error *e);

/* -- nodes ------------------------------------------------------------------------------ */

/* What an operator set on a node. "down" is no state of its own: a node whose lease lapsed
 * (lease_until in the past) is down, whatever its state says. */
enum node_state {
        NODE_ACTIVE,   /* takes new sandboxes */
        NODE_CORDONED, /* takes no new sandboxes; its own keep running (ai2ind node cordon) */
        NODE_DRAINING, /* cordoned, and its paused sandboxes move away (cluster/drain.h) */
        NODE_EVACUATING, /* draining, and its running sandboxes are paused, moved and resumed too */
        _NODE_STATE_MAX,
};

const char *node_state_to_string(enum node_state s);
int node_state_from_string(const char *s, enum node_state *ret);

struct node_rec {
        char name[NODE_NAME_MAX + 1];
        char advertise[256];  /* the URL other nodes reach its API at */
        char advertise_preview[256]; /* [https://]HOST:PORT of its preview proxy for other nodes ("" if none) */
        enum node_state state;
        int64_t started_at;   /* ms: when the engine last registered */
        int64_t heartbeat_at; /* ms: its last renewal */
        int64_t lease_until;  /* ms: down once this has passed */
        int64_t memory_mb;    /* the host's memory */
        int64_t cpus;         /* the host's CPUs */
        int64_t running;      /* its running sandboxes at its last renewal */
        int64_t capacity;     /* the most sandboxes it runs at once (--node-capacity); 0: unknown */
};

/* Registers n (name, advertise, started_at, heartbeat_at, lease_until, memory_mb, cpus, capacity) as a
 * live node: inserted, or updated keeping the state an operator set (a cordoned node stays
 * cordoned across restarts). Then claims sandboxes that have no owner: the rows of an engine
 * from before nodes (node ''). Which: SQLite, one engine's own file, also takes the rows of
 * every other name (a host renamed keeps its sandboxes) and forgets those names' nodes;
 * PostgreSQL, shared, gives '' rows only to the first node to register (while no other node
 * is known), so that a second engine never adopts the first one's sandboxes. *ret_adopted (if
 * not NULL) gets how many rows changed owner. */
int store_node_register(struct store *s, const struct node_rec *n, int64_t *ret_adopted, struct error *e);

/* Renews name's lease: heartbeat_at = now, lease_until as given, and its count of running
 * sandboxes. -ENOENT when it has no row (someone removed it: register again). */
int store_node_renew(struct store *s, const char *name, int64_t now, int64_t lease_until, struct error *e);

/* Reads a node; -ENOENT if none. */
int store_node_get(struct store *s, const char *name, struct node_rec *ret, struct error *e);

/* Calls fn for each node, by name (byte order). fn returning non-zero stops the walk. */
int store_node_foreach(struct store *s, int (*fn)(void *data, const struct node_rec *n), void *data, struct error *e);

/* Sets a node's state (cordon, uncordon); -ENOENT when there is no such node. */
int store_node_set_state(struct store *s, const char *name, enum node_state state, struct error *e);

/* Moves every running sandbox of each node other than self whose lease lapsed before now to
 * `error` with the reason NODE_LOST_FMT, in one statement guarded by that lapse (a node that
 * renewed meanwhile is not touched). Its address stays recorded: the node re-adopts the
 * sandbox when it returns. *ret_n (if not NULL) gets how many rows changed. */
int store_nodes_mark_lost(struct store *s, const char *self, int64_t now, int64_t *ret_n, struct error *e);

/* Gives sandbox id, paused with its files only and owned by from, to node to (drain, once to
 * holds its files: cluster/drain.c). -ESTALE when the row is no longer so (resumed, killed,
 * moved meanwhile): nothing changed. */
int store_sandbox_move(struct store *s, const char *id, const char *from, const char *to, struct error *e);
