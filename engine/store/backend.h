/* backend.h — what a store backend provides (store.h's vtable), for sqlite.c, postgres.c and
 * store.c only (and the store's tests). A backend's state embeds struct store first; each
 * operation has the contract of the store_* function of the same name in store.h.
 */
#pragma once

#include "store/store.h"

struct store_ops {
        const char *name; /* "sqlite", "postgres" */
        void (*close)(struct store *s);
        int (*team_ensure)(struct store *s, const char *name, int64_t *ret_id, struct error *e);
        int (*key_insert)(struct store *s, const char *key_id, const unsigned char hash[32], int64_t team_id, struct error *e);
        int (*key_lookup)(struct store *s, const char *key_id, unsigned char ret_hash[32], int64_t *ret_team, struct error *e);
        int (*key_revoke)(struct store *s, const char *key_id, struct error *e);
        int (*key_foreach)(struct store *s, void (*fn)(void *data, const char *key_id, const char *team, int64_t created_at, bool revoked),
                           void *data, struct error *e);
        int (*sandbox_insert)(struct store *s, struct sandbox_rec *r, int64_t max_running, struct error *e);
        int (*sandbox_get)(struct store *s, const char *id, struct sandbox_rec *ret, struct error *e);
        int (*sandbox_update)(struct store *s, const struct sandbox_rec *r, struct error *e);
        int (*sandbox_update_capped)(struct store *s, const struct sandbox_rec *r, int64_t max_running, struct error *e);
        int (*sandbox_touch)(struct store *s, const char *id, int64_t at, struct error *e);
        int (*sandbox_delete)(struct store *s, const char *id, struct error *e);
        int (*sandbox_foreach)(struct store *s, const struct sandbox_filter *f, int (*fn)(void *data, const struct sandbox_rec *r),
                               void *data, struct error *e);
        int (*sandbox_expired)(struct store *s, const char *node, int64_t now, char ***ret, unsigned *ret_n, struct error *e);
        int (*template_users)(struct store *s, int (*fn)(void *data, const char *name, const char *version, int64_t n), void *data,
                              struct error *e);
        int (*sandbox_purge)(struct store *s, int64_t killed_before, struct error *e);
        int (*node_register)(struct store *s, const struct node_rec *n, int64_t *ret_adopted, struct error *e);
        int (*node_renew)(struct store *s, const char *name, int64_t now, int64_t lease_until, struct error *e);
        int (*node_get)(struct store *s, const char *name, struct node_rec *ret, struct error *e);
        int (*node_foreach)(struct store *s, int (*fn)(void *data, const struct node_rec *n), void *data, struct error *e);
        int (*node_set_state)(struct store *s, const char *name, enum node_state state, struct error *e);
        int (*nodes_mark_lost)(struct store *s, const char *self, int64_t now, int64_t *ret_n, struct error *e);
        int (*sandbox_move)(struct store *s, const char *id, const char *from, const char *to, struct error *e);
};

struct store {
        const struct store_ops *ops;
};

/* Opens (creating if needed) the SQLite database at path and migrates its schema. */
int store_sqlite_open(const char *path, struct store **ret, struct error *e);

/* Connects to the PostgreSQL database at url (libpq's URI or key=value syntax) and migrates
 * its schema; ERR_UNAVAILABLE when it cannot be reached. */
int store_postgres_open(const char *url, struct store **ret, struct error *e);

/* The sandboxes that hold a container's CPU or RAM, and so count against the running cap:
 * a condition on the sandboxes table, the same SQL in both backends. */
#define STORE_HOLDS_A_CONTAINER \
        "(state IN ('creating', 'running', 'pausing', 'resuming') OR (state = 'paused' AND pause_kind = 'memory'))"

/* The statement of store_nodes_mark_lost, the same in both backends but for its placeholders
 * (SELF: the calling node, NOW: the instant). */
#define STORE_MARK_LOST_SQL(SELF, NOW)                                                                      \
        "UPDATE sandboxes SET state = 'error', error = 'node ' || node || ' lost' WHERE state = 'running'" \
        " AND node != " SELF " AND node IN (SELECT name FROM nodes WHERE lease_until < " NOW ")"

/* The statement of store_sandbox_move (ID, FROM, TO: placeholders): guarded by the owner and a
 * pause that kept only files, so that a sandbox resumed or killed meanwhile never moves. */
#define STORE_MOVE_SQL(ID, FROM, TO) \
        "UPDATE sandboxes SET node = " TO " WHERE id = " ID " AND node = " FROM " AND state = 'paused' AND pause_kind = 'filesystem'"

/* The count of a node's running sandboxes, for its renewal (NAME: its placeholder). */
#define STORE_NODE_RUNNING_SQL(NAME) "(SELECT count(*) FROM sandboxes WHERE node = " NAME " AND state = 'running')"

/* The message of a create or resume refused by the cap (both backends). */
int store_cap_error(struct error *e, int64_t running, int64_t max_running);

/* pause_kind as stored in its column ('' for none), and back. */
const char *store_pause_kind_column(enum pause_kind k);
enum pause_kind store_pause_kind_from_column(const char *s);
