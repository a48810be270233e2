/* sqlite.c — the SQLite backend of the store (store.h, backend.h), the default: one file,
 * nothing to set up. One connection in WAL mode behind a mutex; other processes (the `keys`
 * subcommand) may use the same file at the same time. The running cap is exact because the
 * count and the write happen under that one mutex, and SQLite serialises writers across
 * processes (the count is a read in the same connection, never interleaved).
 *
 * The schema of the first release is created as it was; later changes are migrations,
 * numbered by SQLite's user_version and applied in one transaction at open, so that a
 * database made by an older engine keeps working (and keeps its sandboxes). */
#include "store/backend.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "timeutil.h"

struct sqlite_store {
        struct store base;
        sqlite3 *db;
        pthread_mutex_t lock;
};

static struct sqlite_store *of(struct store *base) {
        return (struct sqlite_store *) base;
}

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS teams (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id),"
        "  hash BLOB NOT NULL, created_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS sandboxes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
        "  team_id INTEGER NOT NULL, template TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',"
        "  created_at INTEGER NOT NULL, started_at INTEGER NOT NULL DEFAULT 0, killed_at INTEGER NOT NULL DEFAULT 0,"
        "  timeout INTEGER NOT NULL DEFAULT 0, deadline INTEGER NOT NULL DEFAULT 0, idle_timeout INTEGER NOT NULL,"
        "  last_activity INTEGER NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', envs TEXT NOT NULL DEFAULT '{}',"
        "  cpu_count REAL NOT NULL, memory_mb INTEGER NOT NULL, ip TEXT NOT NULL DEFAULT '');"
        "CREATE INDEX IF NOT EXISTS sandboxes_team_state ON sandboxes(team_id, state);";

/* Migration i (0-based) takes the schema from user_version i to i + 1. Append only. */
static const char *const migrations[] = {
        /* 1: pause and resume. Rows of older engines are not paused: ''. */
        "ALTER TABLE sandboxes ADD COLUMN pause_kind TEXT NOT NULL DEFAULT '';",
        /* 2: preview URLs of secure sandboxes need a traffic token ('' = none). */
        "ALTER TABLE sandboxes ADD COLUMN traffic_token TEXT NOT NULL DEFAULT '';",
        /* 3: template versions. Older rows were made on a template from before versions: ''. */
        "ALTER TABLE sandboxes ADD COLUMN template_version TEXT NOT NULL DEFAULT '';",
        /* 4: disk limits. Older rows have their files on the state file system, unlimited: 0. */
        "ALTER TABLE sandboxes ADD COLUMN disk_mb INTEGER NOT NULL DEFAULT 0;",
        /* 5: nodes (cluster/node.h). Older rows have no owner (''): the engine claims them when
         * it registers (store_node_register). */
        "ALTER TABLE sandboxes ADD COLUMN node TEXT NOT NULL DEFAULT '';"
        "CREATE INDEX sandboxes_node_state ON sandboxes(node, state);"
        "CREATE TABLE nodes (name TEXT PRIMARY KEY, advertise TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'active',"
        "  started_at INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL, lease_until INTEGER NOT NULL,"
        "  memory_mb INTEGER NOT NULL DEFAULT 0, cpus INTEGER NOT NULL DEFAULT 0, running INTEGER NOT NULL DEFAULT 0);",
        /* 6: egress (issue 15). Older rows get the internet, as a create that does not say,
         * and no rules of their own (network_rules: JSON {"allow_out": […], "deny_out": […]}). */
        /* One literal: clang takes two adjacent ones in an array for a missing comma. */
        "ALTER TABLE sandboxes ADD COLUMN allow_internet_access INTEGER NOT NULL DEFAULT 1; ALTER TABLE sandboxes ADD COLUMN network_rules TEXT NOT NULL DEFAULT '';",
        /* 7: where other nodes relay previews of a node's sandboxes ('' = they do not). */
        "ALTER TABLE nodes ADD COLUMN advertise_preview TEXT NOT NULL DEFAULT '';",
        /* 8: placement (cluster/placement.c): the most sandboxes a node runs at once (0: a
         * node of an older engine, which placement then passes over). */
        "ALTER TABLE nodes ADD COLUMN capacity INTEGER NOT NULL DEFAULT 0;",
        /* 9: runtimes per sandbox (issue 16). Older rows ran on runc. */
        "ALTER TABLE sandboxes ADD COLUMN runtime TEXT NOT NULL DEFAULT 'runc';",
};

static int db_error(struct sqlite_store *s, struct error *e, const char *what) {
        return error_set(e, EIO, ERR_INTERNAL, "state store: %s: %s", what, sqlite3_errmsg(s->db));
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t n) {
        char *msg = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
                return 0;
        snprintf(err, n, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -EIO;
}

/* Brings the schema up to date in one transaction (BEGIN IMMEDIATE: another process opening
 * the same file at the same time waits, then finds the work done). */
static int migrate(sqlite3 *db, char *err, size_t n) {
        sqlite3_stmt *st = NULL;
        int version = 0, r;
        char sql[64];

        r = exec_sql(db, "BEGIN IMMEDIATE;", err, n);
        if (r < 0)
                return r;
        if (sqlite3_prepare_v2(db, "PRAGMA user_version;", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        for (size_t i = (size_t) version; i < ELEMENTSOF(migrations) && r >= 0; i++)
                r = exec_sql(db, migrations[i], err, n);
        if (r >= 0 && (size_t) version < ELEMENTSOF(migrations)) {
                snprintf(sql, sizeof(sql), "PRAGMA user_version = %zu;", ELEMENTSOF(migrations));
                r = exec_sql(db, sql, err, n);
        }
        if (r >= 0)
                return exec_sql(db, "COMMIT;", err, n);
        sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
        return r;
}

/* Prepares sql under the lock; the caller finishes with finish(). */
static int prepare(struct sqlite_store *s, const char *sql, sqlite3_stmt **st, struct error *e) {
        pthread_mutex_lock(&s->lock);
        if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
                int r = db_error(s, e, "prepare");
                pthread_mutex_unlock(&s->lock);
                return r;
        }
        return 0;
}

static void finish(struct sqlite_store *s, sqlite3_stmt *st) {
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
}

/* Steps a statement that returns no rows. */
static int step_done(struct sqlite_store *s, sqlite3_stmt *st, const char *what, struct error *e) {
        int rc = sqlite3_step(st), r = 0;

        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                r = db_error(s, e, what);
        finish(s, st);
        return r;
}

static int team_ensure(struct store *base, const char *name, int64_t *ret_id, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r;

        r = prepare(s, "INSERT INTO teams(name, created_at) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET name=name RETURNING id", &st, e);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, now_ms());
        if (sqlite3_step(st) != SQLITE_ROW) {
                r = db_error(s, e, "team");
                finish(s, st);
                return r;
        }
        *ret_id = sqlite3_column_int64(st, 0);
        finish(s, st);
        return 0;
}

static int key_insert(struct store *base, const char *key_id, const unsigned char hash[32], int64_t team_id, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "INSERT INTO api_keys(id, team_id, hash, created_at) VALUES(?1, ?2, ?3, ?4)", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, key_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, team_id);
        sqlite3_bind_blob(st, 3, hash, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, now_ms());
        return step_done(s, st, "insert key", e);
}

static int key_lookup(struct store *base, const char *key_id, unsigned char ret_hash[32], int64_t *ret_team, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "SELECT hash, team_id FROM api_keys WHERE id = ?1 AND revoked = 0", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, key_id, -1, SQLITE_TRANSIENT);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
                memcpy(ret_hash, sqlite3_column_blob(st, 0), 32);
                *ret_team = sqlite3_column_int64(st, 1);
                r = 0;
        } else if (r == SQLITE_ROW || r == SQLITE_DONE)
                r = -ENOENT;
        else
                r = db_error(s, e, "key lookup");
        finish(s, st);
        return r;
}

static int key_revoke(struct store *base, const char *key_id, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "UPDATE api_keys SET revoked = 1 WHERE id = ?1", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, key_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
                r = db_error(s, e, "revoke key");
        else if (sqlite3_changes(s->db) == 0)
                r = error_set(e, ENOENT, ERR_NOT_FOUND, "no key with id %s", key_id);
        finish(s, st);
        return r;
}

static int key_foreach(struct store *base, void (*fn)(void *, const char *, const char *, int64_t, bool), void *data, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "SELECT k.id, t.name, k.created_at, k.revoked FROM api_keys k JOIN teams t ON t.id = k.team_id ORDER BY k.created_at", &st, e);

        if (r < 0)
                return r;
        while (sqlite3_step(st) == SQLITE_ROW)
                fn(data, (const char *) sqlite3_column_text(st, 0), (const char *) sqlite3_column_text(st, 1),
                   sqlite3_column_int64(st, 2), sqlite3_column_int(st, 3) != 0);
        finish(s, st);
        return 0;
}

#define SANDBOX_COLUMNS                                                                              \
        "seq, id, team_id, template, state, error, created_at, started_at, killed_at, timeout, deadline, " \
        "idle_timeout, last_activity, metadata, envs, cpu_count, memory_mb, ip, pause_kind, traffic_token, template_version, disk_mb, " \
        "node, allow_internet_access, network_rules, runtime"

static void copy_text(char *dst, size_t n, const unsigned char *src) {
        snprintf(dst, n, "%s", src ? (const char *) src : "");
}

static int row_to_rec(sqlite3_stmt *st, struct sandbox_rec *r) {
        const unsigned char *meta, *envs;

        *r = (struct sandbox_rec){0};
        r->seq = sqlite3_column_int64(st, 0);
        copy_text(r->id, sizeof(r->id), sqlite3_column_text(st, 1));
        r->team_id = sqlite3_column_int64(st, 2);
        copy_text(r->template_name, sizeof(r->template_name), sqlite3_column_text(st, 3));
        if (sandbox_state_from_string((const char *) sqlite3_column_text(st, 4), &r->state) < 0)
                r->state = SANDBOX_ERROR;
        copy_text(r->error, sizeof(r->error), sqlite3_column_text(st, 5));
        r->created_at = sqlite3_column_int64(st, 6);
        r->started_at = sqlite3_column_int64(st, 7);
        r->killed_at = sqlite3_column_int64(st, 8);
        r->timeout = sqlite3_column_int64(st, 9);
        r->deadline = sqlite3_column_int64(st, 10);
        r->idle_timeout = sqlite3_column_int64(st, 11);
        r->last_activity = sqlite3_column_int64(st, 12);
        meta = sqlite3_column_text(st, 13);
        envs = sqlite3_column_text(st, 14);
        r->metadata = strdup(meta ? (const char *) meta : "{}");
        r->envs = strdup(envs ? (const char *) envs : "{}");
        r->cpu_count = sqlite3_column_double(st, 15);
        r->memory_mb = sqlite3_column_int64(st, 16);
        copy_text(r->ip, sizeof(r->ip), sqlite3_column_text(st, 17));
        r->pause_kind = store_pause_kind_from_column((const char *) sqlite3_column_text(st, 18));
        copy_text(r->traffic_token, sizeof(r->traffic_token), sqlite3_column_text(st, 19));
        copy_text(r->template_version, sizeof(r->template_version), sqlite3_column_text(st, 20));
        r->disk_mb = sqlite3_column_int64(st, 21);
        copy_text(r->node, sizeof(r->node), sqlite3_column_text(st, 22));
        r->allow_internet_access = sqlite3_column_int(st, 23) != 0;
        r->network_rules = strdup(sqlite3_column_text(st, 24) ? (const char *) sqlite3_column_text(st, 24) : "");
        copy_text(r->runtime, sizeof(r->runtime), sqlite3_column_text(st, 25));
        if (!r->network_rules) {
                sandbox_rec_done(r);
                return -ENOMEM;
        }
        if (!r->metadata || !r->envs) {
                sandbox_rec_done(r);
                return -ENOMEM;
        }
        return 0;
}

/* Takes the store's lock and counts r's team's sandboxes that hold a container, r itself
 * left out. Under the cap: returns 0 with the lock still held, for the caller's write to
 * follow under it. Otherwise releases the lock and returns the error. */
static int lock_under_cap(struct sqlite_store *s, const struct sandbox_rec *r, int64_t max_running, struct error *e) {
        sqlite3_stmt *st;
        int64_t running;
        int q;

        q = prepare(s, "SELECT count(*) FROM sandboxes WHERE team_id = ?1 AND id != ?2 AND " STORE_HOLDS_A_CONTAINER, &st, e);
        if (q < 0)
                return q;
        sqlite3_bind_int64(st, 1, r->team_id);
        sqlite3_bind_text(st, 2, r->id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_ROW) {
                q = db_error(s, e, "count running");
                finish(s, st);
                return q;
        }
        running = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (running >= max_running) {
                pthread_mutex_unlock(&s->lock);
                return store_cap_error(e, running, max_running);
        }
        return 0;
}

static int sandbox_insert(struct store *base, struct sandbox_rec *r, int64_t max_running, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int q;

        /* Count and insert under the one lock: no other insert can slip between. */
        q = lock_under_cap(s, r, max_running, e);
        if (q < 0)
                return q;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO sandboxes(id, team_id, template, state, created_at, timeout, deadline, idle_timeout,"
                               " last_activity, metadata, envs, cpu_count, memory_mb, traffic_token, template_version, disk_mb, node,"
                               " allow_internet_access, network_rules, runtime)"
                               " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)"
                               " RETURNING seq",
                               -1, &st, NULL) != SQLITE_OK) {
                q = db_error(s, e, "prepare insert");
                pthread_mutex_unlock(&s->lock);
                return q;
        }
        sqlite3_bind_text(st, 1, r->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, r->team_id);
        sqlite3_bind_text(st, 3, r->template_name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, sandbox_state_to_string(r->state), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, r->created_at);
        sqlite3_bind_int64(st, 6, r->timeout);
        sqlite3_bind_int64(st, 7, r->deadline);
        sqlite3_bind_int64(st, 8, r->idle_timeout);
        sqlite3_bind_int64(st, 9, r->last_activity);
        sqlite3_bind_text(st, 10, r->metadata ? r->metadata : "{}", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 11, r->envs ? r->envs : "{}", -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 12, r->cpu_count);
        sqlite3_bind_int64(st, 13, r->memory_mb);
        sqlite3_bind_text(st, 14, r->traffic_token, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 15, r->template_version, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 16, r->disk_mb);
        sqlite3_bind_text(st, 17, r->node, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 18, r->allow_internet_access);
        sqlite3_bind_text(st, 19, r->network_rules ? r->network_rules : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 20, *r->runtime ? r->runtime : "runc", -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_ROW)
                q = db_error(s, e, "insert sandbox");
        else
                r->seq = sqlite3_column_int64(st, 0);
        finish(s, st);
        return q;
}

static int sandbox_get(struct store *base, const char *id, struct sandbox_rec *ret, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE id = ?1", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                r = row_to_rec(st, ret) < 0 ? error_set(e, ENOMEM, ERR_INTERNAL, "out of memory") : 0;
        else if (r == SQLITE_DONE)
                r = -ENOENT;
        else
                r = db_error(s, e, "get sandbox");
        finish(s, st);
        return r;
}

static const char update_sql[] =
        "UPDATE sandboxes SET state=?2, error=?3, started_at=?4, killed_at=?5, timeout=?6, deadline=?7,"
        " idle_timeout=?8, last_activity=MAX(last_activity, ?9), ip=?10, pause_kind=?11, memory_mb=?12 WHERE id=?1";

static void bind_update(sqlite3_stmt *st, const struct sandbox_rec *r) {
        sqlite3_bind_text(st, 1, r->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, sandbox_state_to_string(r->state), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->error, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, r->started_at);
        sqlite3_bind_int64(st, 5, r->killed_at);
        sqlite3_bind_int64(st, 6, r->timeout);
        sqlite3_bind_int64(st, 7, r->deadline);
        sqlite3_bind_int64(st, 8, r->idle_timeout);
        sqlite3_bind_int64(st, 9, r->last_activity);
        sqlite3_bind_text(st, 10, r->ip, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 11, store_pause_kind_column(r->pause_kind), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 12, r->memory_mb); /* lowered at resume when over max-memory-mb */
}

static int sandbox_update(struct store *base, const struct sandbox_rec *r, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int q = prepare(s, update_sql, &st, e);

        if (q < 0)
                return q;
        bind_update(st, r);
        return step_done(s, st, "update sandbox", e);
}

static int sandbox_update_capped(struct store *base, const struct sandbox_rec *r, int64_t max_running, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int q = lock_under_cap(s, r, max_running, e);

        if (q < 0)
                return q;
        if (sqlite3_prepare_v2(s->db, update_sql, -1, &st, NULL) != SQLITE_OK) {
                q = db_error(s, e, "prepare update");
                pthread_mutex_unlock(&s->lock);
                return q;
        }
        bind_update(st, r);
        return step_done(s, st, "update sandbox", e);
}

static int sandbox_touch(struct store *base, const char *id, int64_t at, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "UPDATE sandboxes SET last_activity = ?2 WHERE id = ?1 AND last_activity < ?2", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, at);
        return step_done(s, st, "touch sandbox", e);
}

static int sandbox_delete(struct store *base, const char *id, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "DELETE FROM sandboxes WHERE id = ?1", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        return step_done(s, st, "delete sandbox", e);
}

static int sandbox_foreach(struct store *base, const struct sandbox_filter *f, int (*fn)(void *, const struct sandbox_rec *), void *data,
                          struct error *e) {
        struct sqlite_store *s = of(base);
        _cleanup_buf_ struct buf sql;
        sqlite3_stmt *st;
        bool first = true;
        int r, bind = 1;

        buf_init(&sql, 64 * 1024);
        buf_append_str(&sql, "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE seq > ?1");
        if (f->team_id >= 0)
                buf_append_str(&sql, " AND team_id = ?2");
        buf_append_str(&sql, " AND state IN (");
        for (int i = 0; i < _SANDBOX_STATE_MAX; i++)
                if (f->state_mask & (1u << i)) {
                        buf_printf(&sql, "%s'%s'", first ? "" : ",", sandbox_state_to_string((enum sandbox_state) i));
                        first = false;
                }
        buf_append_str(&sql, first ? "'')" : ")");
        for (unsigned i = 0; i < f->n_meta; i++)
                /* json_each, not a JSON path: a key may hold any character (a '"' made the
                 * path invalid and the list a 500). */
                buf_printf(&sql, " AND EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ?%u AND value IS ?%u)", 3 + 2 * i,
                           4 + 2 * i);
        if (f->node)
                buf_printf(&sql, " AND node = ?%u", 3 + 2 * f->n_meta);
        buf_append_str(&sql, " ORDER BY seq");
        if (f->limit)
                buf_printf(&sql, " LIMIT %u", f->limit);

        r = prepare(s, sql.data, &st, e);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, bind, f->after_seq);
        if (f->team_id >= 0)
                sqlite3_bind_int64(st, 2, f->team_id);
        for (unsigned i = 0; i < f->n_meta; i++) {
                sqlite3_bind_text(st, 3 + 2 * i, f->meta_keys[i], -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(st, 4 + 2 * i, f->meta_values[i], -1, SQLITE_TRANSIENT);
        }
        if (f->node)
                sqlite3_bind_text(st, 3 + 2 * (int) f->n_meta, f->node, -1, SQLITE_TRANSIENT);
        for (;;) {
                struct sandbox_rec rec;
                int rc = sqlite3_step(st), stop;

                if (rc == SQLITE_DONE)
                        break;
                if (rc != SQLITE_ROW) {
                        r = db_error(s, e, "list sandboxes");
                        break;
                }
                if (row_to_rec(st, &rec) < 0) {
                        r = error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
                        break;
                }
                stop = fn(data, &rec);
                sandbox_rec_done(&rec);
                if (stop)
                        break;
        }
        finish(s, st);
        return r;
}

static int sandbox_expired(struct store *base, const char *node, int64_t now, char ***ret, unsigned *ret_n, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        char **ids = NULL;
        unsigned n = 0;
        int r = prepare(s,
                        "SELECT id FROM sandboxes WHERE state = 'running' AND node = ?2 AND CASE WHEN deadline > 0 THEN deadline"
                        " ELSE last_activity + idle_timeout * 1000 END <= ?1 LIMIT 1000",
                        &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_text(st, 2, node, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(st) == SQLITE_ROW) {
                char **more = realloc(ids, sizeof(char *) * (n + 1));
                if (!more)
                        break;
                ids = more;
                ids[n] = strdup((const char *) sqlite3_column_text(st, 0));
                if (ids[n])
                        n++;
        }
        finish(s, st);
        *ret = ids;
        *ret_n = n;
        return 0;
}

static int template_users(struct store *base, int (*fn)(void *, const char *, const char *, int64_t), void *data, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int rc, r = prepare(s,
                            "SELECT template, template_version, count(*) FROM sandboxes WHERE state != 'killed'"
                            " GROUP BY template, template_version ORDER BY template, template_version",
                            &st, e);

        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                if (fn(data, (const char *) sqlite3_column_text(st, 0), (const char *) sqlite3_column_text(st, 1),
                       sqlite3_column_int64(st, 2)))
                        break;
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = db_error(s, e, "count template users");
        finish(s, st);
        return r;
}

static int sandbox_purge(struct store *base, int64_t killed_before, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "DELETE FROM sandboxes WHERE state = 'killed' AND killed_at < ?1", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, killed_before);
        return step_done(s, st, "purge", e);
}

/* -- nodes ----------------------------------------------------------------------------- */

/* Runs one statement of a transaction, the lock held, with name bound as ?1. */
static int step_named(struct sqlite_store *s, const char *sql, const char *name, const char *what, struct error *e) {
        sqlite3_stmt *st;
        int rc;

        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return db_error(s, e, what);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_error(s, e, what);
}

static int upsert_node(struct sqlite_store *s, const struct node_rec *n, struct error *e) {
        sqlite3_stmt *st;
        int rc;

        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO nodes(name, advertise, started_at, heartbeat_at, lease_until, memory_mb, cpus, advertise_preview,"
                               " capacity) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(name) DO UPDATE SET"
                               " advertise = excluded.advertise, advertise_preview = excluded.advertise_preview, capacity = excluded.capacity,"
                               " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                               " lease_until = excluded.lease_until, memory_mb = excluded.memory_mb, cpus = excluded.cpus",
                               -1, &st, NULL) != SQLITE_OK)
                return db_error(s, e, "register node");
        sqlite3_bind_text(st, 1, n->name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, n->advertise, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, n->started_at);
        sqlite3_bind_int64(st, 4, n->heartbeat_at);
        sqlite3_bind_int64(st, 5, n->lease_until);
        sqlite3_bind_int64(st, 6, n->memory_mb);
        sqlite3_bind_int64(st, 7, n->cpus);
        sqlite3_bind_text(st, 8, n->advertise_preview, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 9, n->capacity);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : db_error(s, e, "register node");
}

/* One engine's own file: every row not this node's becomes its own (rows from before nodes,
 * and those of a name the host had before), and the other names' nodes are forgotten. */
static int node_register(struct store *base, const struct node_rec *n, int64_t *ret_adopted, struct error *e) {
        struct sqlite_store *s = of(base);
        char msg[256];
        int64_t adopted = 0;
        int r;

        pthread_mutex_lock(&s->lock);
        if (exec_sql(s->db, "BEGIN IMMEDIATE;", msg, sizeof(msg)) < 0) {
                r = error_set(e, EIO, ERR_INTERNAL, "state store: register node: %s", msg);
                goto out;
        }
        if ((r = upsert_node(s, n, e)) >= 0 &&
            (r = step_named(s, "UPDATE sandboxes SET node = ?1 WHERE node != ?1", n->name, "adopt sandboxes", e)) >= 0) {
                adopted = sqlite3_changes(s->db);
                r = step_named(s, "DELETE FROM nodes WHERE name != ?1", n->name, "forget old names", e);
        }
        if (r >= 0 && exec_sql(s->db, "COMMIT;", msg, sizeof(msg)) < 0)
                r = error_set(e, EIO, ERR_INTERNAL, "state store: register node: %s", msg);
        if (r < 0)
                sqlite3_exec(s->db, "ROLLBACK;", NULL, NULL, NULL);
        else if (ret_adopted)
                *ret_adopted = adopted;
out:
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int node_renew(struct store *base, const char *name, int64_t now, int64_t lease_until, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "UPDATE nodes SET heartbeat_at = ?2, lease_until = ?3, running = " STORE_NODE_RUNNING_SQL("?1") " WHERE name = ?1",
                        &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int64(st, 3, lease_until);
        if (sqlite3_step(st) != SQLITE_DONE)
                r = db_error(s, e, "renew node lease");
        else if (sqlite3_changes(s->db) == 0)
                r = error_set(e, ENOENT, ERR_NOT_FOUND, "no node %s", name);
        finish(s, st);
        return r;
}

#define NODE_COLUMNS "name, advertise, state, started_at, heartbeat_at, lease_until, memory_mb, cpus, running, advertise_preview, capacity"

static void row_to_node(sqlite3_stmt *st, struct node_rec *n) {
        *n = (struct node_rec){0};
        copy_text(n->name, sizeof(n->name), sqlite3_column_text(st, 0));
        copy_text(n->advertise, sizeof(n->advertise), sqlite3_column_text(st, 1));
        if (node_state_from_string((const char *) sqlite3_column_text(st, 2), &n->state) < 0)
                n->state = NODE_CORDONED; /* a state of a newer engine: take no new sandboxes */
        n->started_at = sqlite3_column_int64(st, 3);
        n->heartbeat_at = sqlite3_column_int64(st, 4);
        n->lease_until = sqlite3_column_int64(st, 5);
        n->memory_mb = sqlite3_column_int64(st, 6);
        n->cpus = sqlite3_column_int64(st, 7);
        n->running = sqlite3_column_int64(st, 8);
        copy_text(n->advertise_preview, sizeof(n->advertise_preview), sqlite3_column_text(st, 9));
        n->capacity = sqlite3_column_int64(st, 10);
}

static int node_get(struct store *base, const char *name, struct node_rec *ret, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "SELECT " NODE_COLUMNS " FROM nodes WHERE name = ?1", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                row_to_node(st, ret);
                r = 0;
        } else
                r = r == SQLITE_DONE ? -ENOENT : db_error(s, e, "get node");
        finish(s, st);
        return r;
}

static int node_foreach(struct store *base, int (*fn)(void *, const struct node_rec *), void *data, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int rc, r = prepare(s, "SELECT " NODE_COLUMNS " FROM nodes ORDER BY name", &st, e);

        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct node_rec n;

                row_to_node(st, &n);
                if (fn(data, &n))
                        break;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = db_error(s, e, "list nodes");
        finish(s, st);
        return r;
}

static int node_set_state(struct store *base, const char *name, enum node_state state, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, "UPDATE nodes SET state = ?2 WHERE name = ?1", &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, node_state_to_string(state), -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
                r = db_error(s, e, "set node state");
        else if (sqlite3_changes(s->db) == 0)
                r = error_set(e, ENOENT, ERR_NOT_FOUND, "no node %s", name);
        finish(s, st);
        return r;
}

static int nodes_mark_lost(struct store *base, const char *self, int64_t now, int64_t *ret_n, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, STORE_MARK_LOST_SQL("?1", "?2"), &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, self, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, now);
        if (sqlite3_step(st) != SQLITE_DONE)
                r = db_error(s, e, "mark the sandboxes of lost nodes");
        else if (ret_n)
                *ret_n = sqlite3_changes(s->db);
        finish(s, st);
        return r;
}

static int sandbox_move(struct store *base, const char *id, const char *from, const char *to, struct error *e) {
        struct sqlite_store *s = of(base);
        sqlite3_stmt *st;
        int r = prepare(s, STORE_MOVE_SQL("?1", "?2", "?3"), &st, e);

        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, from, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, to, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
                r = db_error(s, e, "move a sandbox to another node");
        else if (sqlite3_changes(s->db) == 0)
                r = error_set(e, ESTALE, ERR_CONFLICT, "sandbox %s is no longer a paused sandbox of node %s", id, from);
        finish(s, st);
        return r;
}

static void sqlite_close(struct store *base) {
        struct sqlite_store *s = of(base);

        sqlite3_close(s->db);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static const struct store_ops sqlite_ops = {
        .name = "sqlite",
        .close = sqlite_close,
        .team_ensure = team_ensure,
        .key_insert = key_insert,
        .key_lookup = key_lookup,
        .key_revoke = key_revoke,
        .key_foreach = key_foreach,
        .sandbox_insert = sandbox_insert,
        .sandbox_get = sandbox_get,
        .sandbox_update = sandbox_update,
        .sandbox_update_capped = sandbox_update_capped,
        .sandbox_touch = sandbox_touch,
        .sandbox_delete = sandbox_delete,
        .sandbox_foreach = sandbox_foreach,
        .sandbox_expired = sandbox_expired,
        .template_users = template_users,
        .sandbox_purge = sandbox_purge,
        .node_register = node_register,
        .node_renew = node_renew,
        .node_get = node_get,
        .node_foreach = node_foreach,
        .node_set_state = node_set_state,
        .nodes_mark_lost = nodes_mark_lost,
        .sandbox_move = sandbox_move,
};

int store_sqlite_open(const char *path, struct store **ret, struct error *e) {
        struct sqlite_store *s = calloc(1, sizeof(*s));
        char msg[512] = "";
        int r;

        if (!s)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        s->base.ops = &sqlite_ops;
        pthread_mutex_init(&s->lock, NULL);
        if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
                r = error_set(e, EIO, ERR_INTERNAL, "cannot open state store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
                sqlite_close(&s->base);
                return r;
        }
        sqlite3_busy_timeout(s->db, 5000);
        if (exec_sql(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", msg, sizeof(msg)) < 0 ||
            exec_sql(s->db, schema, msg, sizeof(msg)) < 0 || migrate(s->db, msg, sizeof(msg)) < 0) {
                r = error_set(e, EIO, ERR_INTERNAL, "cannot prepare state store %s: %s", path, msg);
                sqlite_close(&s->base);
                return r;
        }
        *ret = &s->base;
        return 0;
}
