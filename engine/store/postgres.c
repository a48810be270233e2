/* postgres.c — the PostgreSQL backend of the store (store.h, backend.h), for engines that
 * share one database. Every operation means exactly what it means in sqlite.c: the same
 * rows, the same order, the same cap, the same errors.
 *
 * One libpq connection behind a mutex. A PGconn must not be used by two threads at once;
 * the calls are short, so one connection serialised is enough for this slice (a small pool
 * can replace the mutex without changing anything else here). Every value travels as a
 * parameter (PQexecParams); the only SQL built at run time is placeholders ($3, $4…).
 *
 * The running cap must hold across engines, not only across this engine's threads: the count
 * and the write run in one transaction that first takes pg_advisory_xact_lock(team id). The
 * advisory lock, rather than SELECT … FOR UPDATE on the team's row, because it serialises
 * exactly the transactions that count one team, needs no row to exist (sandboxes carry a
 * team id, not a foreign key), and is released by the transaction's end whatever happens,
 * even when the connection dies. Under READ COMMITTED, a count taken after the lock sees every
 * write committed by the transactions that held it before.
 *
 * Migrations: numbered by the one row of schema_version, applied in one transaction that holds
 * an advisory lock (MIGRATE_LOCK), so that two engines starting at once do not race: the second
 * waits, then finds the work done.
 *
 * A lost connection: the call fails with ERR_UNAVAILABLE "the database is unreachable: …",
 * never a crash; the next call reconnects (PQreset). A call that cannot have written anything
 * (a read, an idempotent write, or a transaction's BEGIN) is retried once on a fresh
 * connection, so the first call after a database restart does not fail needlessly. While the
 * database stays down, reconnection is attempted at most once a second; calls in between fail
 * at once with the last error. The URL's password is never shown: it is masked in the URL and
 * scrubbed from libpq's messages.
 */
#include "store/backend.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "timeutil.h"

/* pg_advisory_xact_lock(int4, int4) keys of the migration lock: its own key space, apart
 * from the single-bigint keys the cap locks by team id. */
#define MIGRATE_LOCK "1095914057, 1" /* "AI2I" */
/* …and of node registration: which node claims the rows without an owner is decided by one
 * registration at a time. */
#define REGISTER_LOCK "1095914057, 2"

#define RECONNECT_INTERVAL_MS 1000

static inline void pgresult_freep(PGresult **p) {
        PQclear(*p);
}
#define _cleanup_pgresult_ _cleanup_(pgresult_freep)

struct pg_store {
        struct store base;
        pthread_mutex_t lock;
        PGconn *conn;
        char *password;      /* the URL's, to scrub from messages; NULL if none */
        char masked[512];    /* the URL as messages show it */
        int64_t retry_after; /* mono ms: no reconnection before (the database is down) */
        char down[1024];     /* why the last reconnection failed */
};

static struct pg_store *of(struct store *base) {
        return (struct pg_store *) base;
}

/* Copies msg to out without the password, on one line, without libpq's trailing newline. */
static void scrub(const struct pg_store *s, const char *msg, char *out, size_t n) {
        size_t len = 0, pw = s->password ? strlen(s->password) : 0;

        for (const char *p = msg ? msg : ""; *p && len + 1 < n;) {
                if (pw > 0 && strncmp(p, s->password, pw) == 0) {
                        len += (size_t) snprintf(out + len, n - len, "***");
                        if (len >= n)
                                len = n - 1;
                        p += pw;
                        continue;
                }
                out[len++] = (unsigned char) *p < 0x20 ? ' ' : *p; /* libpq's newlines and tabs */
                p++;
        }
        while (len > 0 && out[len - 1] == ' ')
                len--;
        out[len] = 0;
}

/* Whether a failed result means the server went away, not that the statement was wrong:
 * the connection is broken, or SQLSTATE class 08 (connection exception) or 57P01..57P03
 * (shut down by the administrator, crashed, cannot connect now). */
static bool unreachable(const struct pg_store *s, const PGresult *res) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        if (PQstatus(s->conn) != CONNECTION_OK)
                return true;
        return state && (strncmp(state, "08", 2) == 0 || streq(state, "57P01") || streq(state, "57P02") || streq(state, "57P03"));
}

static void unavailable_message(const struct pg_store *s, const char *what, const char *msg, char *out, size_t n) {
        char clean[512];

        scrub(s, msg, clean, sizeof(clean));
        snprintf(out, n, "the database is unreachable: %s (%s): %s", what, s->masked, clean);
}

static int unavailable(struct pg_store *s, struct error *e, const char *what, const char *msg) {
        char text[1024];

        unavailable_message(s, what, msg, text, sizeof(text));
        return error_set(e, EHOSTUNREACH, ERR_UNAVAILABLE, "%s", text);
}

/* The error of a failed res (which may be NULL: out of memory, or no connection). */
static int result_error(struct pg_store *s, const PGresult *res, const char *what, struct error *e) {
        const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn);
        char clean[512];

        if (unreachable(s, res))
                return unavailable(s, e, what, msg);
        scrub(s, msg, clean, sizeof(clean));
        return error_set(e, EIO, ERR_INTERNAL, "state store: %s: %s", what, clean);
}

/* Makes sure the connection is up, reconnecting if it broke (at most once a second while the
 * database stays down). */
static int ensure_connected(struct pg_store *s, struct error *e) {
        if (PQstatus(s->conn) == CONNECTION_OK) {
                /* An aborted transaction a failed ROLLBACK left open would fail every later
                 * statement. (Never one of ours in progress: they stop at their first error.) */
                if (PQtransactionStatus(s->conn) == PQTRANS_INERROR)
                        PQclear(PQexec(s->conn, "ROLLBACK"));
                return 0;
        }
        if (mono_ms() < s->retry_after)
                return error_set(e, EHOSTUNREACH, ERR_UNAVAILABLE, "%s", s->down);
        PQreset(s->conn);
        if (PQstatus(s->conn) == CONNECTION_OK) {
                s->retry_after = 0;
                return 0;
        }
        s->retry_after = mono_ms() + RECONNECT_INTERVAL_MS;
        unavailable_message(s, "reconnect", PQerrorMessage(s->conn), s->down, sizeof(s->down));
        return error_set(e, EHOSTUNREACH, ERR_UNAVAILABLE, "%s", s->down);
}

/* Runs sql with n text parameters (binary where formats says so) and checks its status.
 * retry: the statement cannot have had an effect if the connection broke (a read, an
 * idempotent write, a BEGIN), so it is sent once more on a fresh connection. The caller holds
 * s->lock and PQclears *ret. */
static int query_params(struct pg_store *s, const char *sql, int n, const char *const *values, const int *lengths, const int *formats,
                        bool retry, const char *what, PGresult **ret, struct error *e) {
        for (int attempt = 0;; attempt++) {
                PGresult *res;
                int r = ensure_connected(s, e);

                if (r < 0)
                        return r;
                res = PQexecParams(s->conn, sql, n, NULL, values, lengths, formats, 0);
                if (res && (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)) {
                        *ret = res;
                        return 0;
                }
                if (retry && attempt == 0 && PQstatus(s->conn) != CONNECTION_OK) {
                        PQclear(res);
                        s->retry_after = 0; /* it was up a moment ago: try at once */
                        continue;
                }
                r = result_error(s, res, what, e);
                PQclear(res);
                return r;
        }
}

static int query(struct pg_store *s, const char *sql, int n, const char *const *values, bool retry, const char *what, PGresult **ret,
                 struct error *e) {
        return query_params(s, sql, n, values, NULL, NULL, retry, what, ret, e);
}

/* Runs a statement whose result is not needed. */
static int run(struct pg_store *s, const char *sql, int n, const char *const *values, bool retry, const char *what, struct error *e) {
        _cleanup_pgresult_ PGresult *res = NULL;

        return query(s, sql, n, values, retry, what, &res, e);
}

/* Ends a failed transaction; nothing to do when the connection is gone (the server rolls
 * back by itself). */
static void rollback(struct pg_store *s) {
        if (PQstatus(s->conn) == CONNECTION_OK)
                PQclear(PQexec(s->conn, "ROLLBACK"));
}

#define I64(buf, v) (snprintf((buf), sizeof(buf), "%" PRId64, (int64_t) (v)), (const char *) (buf))

static int64_t col_i64(const PGresult *res, int row, int col) {
        return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static void col_text(const PGresult *res, int row, int col, char *dst, size_t n) {
        snprintf(dst, n, "%s", PQgetvalue(res, row, col));
}

/* Migration i (0-based) takes schema_version from i to i + 1. Append only. The first is the
 * schema that SQLite reaches at its user_version 4, with PostgreSQL's types. metadata and envs
 * stay text (filters cast to jsonb): jsonb would reorder keys, and the API gives back the text
 * it was given, as with SQLite. */
static const char *const migrations[] = {
        "CREATE TABLE teams (id BIGSERIAL PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_at BIGINT NOT NULL);"
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, team_id BIGINT NOT NULL REFERENCES teams(id),"
        "  hash BYTEA NOT NULL, created_at BIGINT NOT NULL, revoked BOOLEAN NOT NULL DEFAULT false);"
        "CREATE TABLE sandboxes (seq BIGSERIAL PRIMARY KEY, id TEXT UNIQUE NOT NULL,"
        "  team_id BIGINT NOT NULL, template TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',"
        "  created_at BIGINT NOT NULL, started_at BIGINT NOT NULL DEFAULT 0, killed_at BIGINT NOT NULL DEFAULT 0,"
        "  timeout BIGINT NOT NULL DEFAULT 0, deadline BIGINT NOT NULL DEFAULT 0, idle_timeout BIGINT NOT NULL,"
        "  last_activity BIGINT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', envs TEXT NOT NULL DEFAULT '{}',"
        "  cpu_count DOUBLE PRECISION NOT NULL, memory_mb BIGINT NOT NULL, ip TEXT NOT NULL DEFAULT '',"
        "  pause_kind TEXT NOT NULL DEFAULT '', traffic_token TEXT NOT NULL DEFAULT '',"
        "  template_version TEXT NOT NULL DEFAULT '', disk_mb BIGINT NOT NULL DEFAULT 0);"
        "CREATE INDEX sandboxes_team_state ON sandboxes(team_id, state);",
        /* 2: nodes (cluster/node.h), as SQLite's 5. Rows from before have no owner (''): the
         * first node to register claims them (store_node_register). */
        "ALTER TABLE sandboxes ADD COLUMN node TEXT NOT NULL DEFAULT '';"
        "CREATE INDEX sandboxes_node_state ON sandboxes(node, state);"
        "CREATE TABLE nodes (name TEXT PRIMARY KEY, advertise TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'active',"
        "  started_at BIGINT NOT NULL, heartbeat_at BIGINT NOT NULL, lease_until BIGINT NOT NULL,"
        "  memory_mb BIGINT NOT NULL DEFAULT 0, cpus BIGINT NOT NULL DEFAULT 0, running BIGINT NOT NULL DEFAULT 0);",
        /* 3: egress (issue 15), as SQLite's 6. Older rows get the internet, as a create that does not say,
         * and no rules of their own (network_rules: JSON {"allow_out": […], "deny_out": […]}). */
        /* One literal: clang takes two adjacent ones in an array for a missing comma. */
        "ALTER TABLE sandboxes ADD COLUMN allow_internet_access BOOLEAN NOT NULL DEFAULT true, ADD COLUMN network_rules TEXT NOT NULL DEFAULT '';",
        /* 4: where other nodes relay previews of a node's sandboxes, as SQLite's 7. */
        "ALTER TABLE nodes ADD COLUMN advertise_preview TEXT NOT NULL DEFAULT '';",
        /* 5: placement (cluster/placement.c), as SQLite's 8. */
        "ALTER TABLE nodes ADD COLUMN capacity BIGINT NOT NULL DEFAULT 0;",
        /* 6: runtimes per sandbox (issue 16), as SQLite's 9. Older rows ran on runc. */
        "ALTER TABLE sandboxes ADD COLUMN runtime TEXT NOT NULL DEFAULT 'runc';",
};

/* Applies migration i; no parameters: constant SQL, several statements (simple protocol). */
static int apply_migration(struct pg_store *s, size_t i, struct error *e) {
        _cleanup_pgresult_ PGresult *res = PQexec(s->conn, migrations[i]);
        char what[64];

        if (PQresultStatus(res) == PGRES_COMMAND_OK)
                return 0;
        snprintf(what, sizeof(what), "migration %zu", i + 1);
        return result_error(s, res, what, e);
}

/* Brings the schema up to date in one transaction under MIGRATE_LOCK. */
static int migrate(struct pg_store *s, struct error *e) {
        _cleanup_pgresult_ PGresult *res = NULL;
        int64_t version = 0;
        char v[24];
        int r;

        if ((r = run(s, "BEGIN", 0, NULL, true, "begin migration", e)) < 0)
                return r;
        if ((r = run(s, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", 0, NULL, false, "lock migration", e)) < 0 ||
            (r = run(s, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", 0, NULL, false, "schema_version",
                     e)) < 0 ||
            (r = query(s, "SELECT coalesce(max(version), 0) FROM schema_version", 0, NULL, false, "read schema_version", &res, e)) < 0)
                goto fail;
        version = PQntuples(res) == 1 ? col_i64(res, 0, 0) : 0;
        for (size_t i = (size_t) (version < 0 ? 0 : version); i < ELEMENTSOF(migrations); i++)
                if ((r = apply_migration(s, i, e)) < 0)
                        goto fail;
        if ((size_t) version < ELEMENTSOF(migrations) &&
            ((r = run(s, "DELETE FROM schema_version", 0, NULL, false, "write schema_version", e)) < 0 ||
             (r = run(s, "INSERT INTO schema_version(version) VALUES($1)", 1, (const char *[]){I64(v, ELEMENTSOF(migrations))}, false,
                      "write schema_version", e)) < 0))
                goto fail;
        if ((r = run(s, "COMMIT", 0, NULL, false, "commit migration", e)) < 0)
                return r;
        return 0;
fail:
        rollback(s);
        return r;
}

/* libpq prints NOTICEs (CREATE TABLE IF NOT EXISTS … skipping) on stderr by default. */
static void ignore_notice(void *arg, const char *message) {
}

static void pg_close(struct store *base) {
        struct pg_store *s = of(base);

        PQfinish(s->conn);
        if (s->password) {
                explicit_bzero(s->password, strlen(s->password));
                free(s->password);
        }
        pthread_mutex_destroy(&s->lock);
        free(s);
}

/* The password the URL carries (user:PASSWORD@ or ?password=), to scrub from messages. */
static int find_password(const char *url, char **ret) {
        PQconninfoOption *opts = PQconninfoParse(url, NULL);

        *ret = NULL;
        if (!opts)
                return -EINVAL;
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (streq(o->keyword, "password") && o->val && *o->val && !(*ret = strdup(o->val))) {
                        PQconninfoFree(opts);
                        return -ENOMEM;
                }
        PQconninfoFree(opts);
        return 0;
}

static const struct store_ops pg_ops;

int store_postgres_open(const char *url, struct store **ret, struct error *e) {
        /* Defaults the URL may override (expand_dbname: its values replace earlier ones). Over
         * TCP, a database that vanishes without closing the connection (a partition, a host
         * powered off) must not hold the store's mutex, and so every call, for long: keepalives
         * notice an idle dead peer in about 25 s, tcp_user_timeout unacknowledged data in 30 s. */
        static const char *const keys[] = {"connect_timeout", "application_name", "keepalives_idle", "keepalives_interval",
                                           "keepalives_count", "tcp_user_timeout", "dbname", NULL};
        struct pg_store *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        s->base.ops = &pg_ops;
        pthread_mutex_init(&s->lock, NULL);
        store_database_mask(url, s->masked, sizeof(s->masked));
        r = find_password(url, &s->password);
        if (r < 0) {
                r = error_set(e, -r, ERR_BAD_REQUEST, "database URL %s is not valid for libpq", s->masked);
                pg_close(&s->base);
                return r;
        }
        s->conn = PQconnectdbParams(keys, (const char *const[]){"10", "ai2ind", "10", "5", "3", "30000", url, NULL}, 1);
        if (!s->conn) {
                pg_close(&s->base);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        PQsetNoticeProcessor(s->conn, ignore_notice, NULL);
        if (PQstatus(s->conn) != CONNECTION_OK)
                r = unavailable(s, e, "connect", PQerrorMessage(s->conn));
        else
                r = migrate(s, e);
        if (r < 0) {
                error_wrap(e, "cannot open the state store");
                pg_close(&s->base);
                return r;
        }
        *ret = &s->base;
        return 0;
}

static int team_ensure(struct store *base, const char *name, int64_t *ret_id, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        char now[24];
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "INSERT INTO teams(name, created_at) VALUES($1, $2) ON CONFLICT(name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                  2, (const char *[]){name, I64(now, now_ms())}, true, "team", &res, e);
        if (r >= 0)
                *ret_id = col_i64(res, 0, 0);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int key_insert(struct store *base, const char *key_id, const unsigned char hash[32], int64_t team_id, struct error *e) {
        struct pg_store *s = of(base);
        char team[24], now[24];
        const char *values[] = {key_id, I64(team, team_id), (const char *) hash, I64(now, now_ms())};
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        /* Not retried: were the first attempt's reply lost after its commit, the second would
         * find the key there and fail. */
        r = query_params(s, "INSERT INTO api_keys(id, team_id, hash, created_at) VALUES($1, $2, $3, $4)", 4, values,
                         (const int[]){0, 0, 32, 0}, (const int[]){0, 0, 1, 0}, false, "insert key", &res, e);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int unhex(const char *hex, unsigned char *out, size_t n) {
        if (strlen(hex) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (unsigned char) v;
        }
        return 0;
}

static int key_lookup(struct store *base, const char *key_id, unsigned char ret_hash[32], int64_t *ret_team, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "SELECT encode(hash, 'hex'), team_id FROM api_keys WHERE id = $1 AND NOT revoked", 1, (const char *[]){key_id},
                  true, "key lookup", &res, e);
        if (r >= 0) {
                if (PQntuples(res) == 1 && unhex(PQgetvalue(res, 0, 0), ret_hash, 32) == 0)
                        *ret_team = col_i64(res, 0, 1);
                else
                        r = -ENOENT;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int key_revoke(struct store *base, const char *key_id, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "UPDATE api_keys SET revoked = true WHERE id = $1", 1, (const char *[]){key_id}, true, "revoke key", &res, e);
        if (r >= 0 && streq(PQcmdTuples(res), "0"))
                r = error_set(e, ENOENT, ERR_NOT_FOUND, "no key with id %s", key_id);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int key_foreach(struct store *base, void (*fn)(void *, const char *, const char *, int64_t, bool), void *data, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "SELECT k.id, t.name, k.created_at, k.revoked FROM api_keys k JOIN teams t ON t.id = k.team_id ORDER BY k.created_at",
                  0, NULL, true, "list keys", &res, e);
        pthread_mutex_unlock(&s->lock);
        /* The rows are in res: fn runs without the lock, and may call the store. */
        for (int i = 0; r >= 0 && i < PQntuples(res); i++)
                fn(data, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), col_i64(res, i, 2), streq(PQgetvalue(res, i, 3), "t"));
        return r;
}

#define SANDBOX_COLUMNS                                                                              \
        "seq, id, team_id, template, state, error, created_at, started_at, killed_at, timeout, deadline, " \
        "idle_timeout, last_activity, metadata, envs, cpu_count, memory_mb, ip, pause_kind, traffic_token, template_version, disk_mb, " \
        "node, allow_internet_access, network_rules, runtime"

static int row_to_rec(const PGresult *res, int i, struct sandbox_rec *r) {
        *r = (struct sandbox_rec){0};
        r->seq = col_i64(res, i, 0);
        col_text(res, i, 1, r->id, sizeof(r->id));
        r->team_id = col_i64(res, i, 2);
        col_text(res, i, 3, r->template_name, sizeof(r->template_name));
        if (sandbox_state_from_string(PQgetvalue(res, i, 4), &r->state) < 0)
                r->state = SANDBOX_ERROR;
        col_text(res, i, 5, r->error, sizeof(r->error));
        r->created_at = col_i64(res, i, 6);
        r->started_at = col_i64(res, i, 7);
        r->killed_at = col_i64(res, i, 8);
        r->timeout = col_i64(res, i, 9);
        r->deadline = col_i64(res, i, 10);
        r->idle_timeout = col_i64(res, i, 11);
        r->last_activity = col_i64(res, i, 12);
        r->metadata = strdup(PQgetvalue(res, i, 13));
        r->envs = strdup(PQgetvalue(res, i, 14));
        r->cpu_count = strtod(PQgetvalue(res, i, 15), NULL);
        r->memory_mb = col_i64(res, i, 16);
        col_text(res, i, 17, r->ip, sizeof(r->ip));
        r->pause_kind = store_pause_kind_from_column(PQgetvalue(res, i, 18));
        col_text(res, i, 19, r->traffic_token, sizeof(r->traffic_token));
        col_text(res, i, 20, r->template_version, sizeof(r->template_version));
        r->disk_mb = col_i64(res, i, 21);
        col_text(res, i, 22, r->node, sizeof(r->node));
        r->allow_internet_access = streq(PQgetvalue(res, i, 23), "t");
        r->network_rules = strdup(PQgetvalue(res, i, 24));
        col_text(res, i, 25, r->runtime, sizeof(r->runtime));
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

/* In a transaction: takes the team's advisory lock (see the top of the file) and counts its
 * sandboxes that hold a container, r itself left out; -EUSERS at the cap. */
static int lock_under_cap(struct pg_store *s, const struct sandbox_rec *r, int64_t max_running, struct error *e) {
        _cleanup_pgresult_ PGresult *res = NULL;
        char team[24];
        int64_t running;
        int q;

        if ((q = run(s, "SELECT pg_advisory_xact_lock($1::bigint)", 1, (const char *[]){I64(team, r->team_id)}, false, "lock team", e)) < 0)
                return q;
        q = query(s, "SELECT count(*) FROM sandboxes WHERE team_id = $1 AND id != $2 AND " STORE_HOLDS_A_CONTAINER, 2,
                  (const char *[]){team, r->id}, false, "count running", &res, e);
        if (q < 0)
                return q;
        running = col_i64(res, 0, 0);
        return running >= max_running ? store_cap_error(e, running, max_running) : 0;
}

/* Runs write (an INSERT or UPDATE of r) in a transaction under the cap. Only the BEGIN is
 * retried on a fresh connection: once anything else was sent, a lost reply leaves unknown
 * whether it was committed. */
static int capped(struct pg_store *s, const struct sandbox_rec *r, int64_t max_running, const char *sql, int n, const char *const *values,
                  const char *what, PGresult **ret, struct error *e) {
        int q;

        pthread_mutex_lock(&s->lock);
        if ((q = run(s, "BEGIN", 0, NULL, true, "begin", e)) < 0)
                goto out;
        if ((q = lock_under_cap(s, r, max_running, e)) < 0 || (q = query(s, sql, n, values, false, what, ret, e)) < 0) {
                rollback(s);
                goto out;
        }
        q = run(s, "COMMIT", 0, NULL, false, "commit", e);
        if (q < 0) {
                PQclear(*ret);
                *ret = NULL;
        }
out:
        pthread_mutex_unlock(&s->lock);
        return q;
}

static int sandbox_insert(struct store *base, struct sandbox_rec *r, int64_t max_running, struct error *e) {
        struct pg_store *s = of(base);
        char team[24], created[24], timeout[24], deadline[24], idle[24], last[24], cpu[32], mem[24], disk[24];
        const char *values[] = {r->id, I64(team, r->team_id), r->template_name, sandbox_state_to_string(r->state),
                                I64(created, r->created_at), I64(timeout, r->timeout), I64(deadline, r->deadline),
                                I64(idle, r->idle_timeout), I64(last, r->last_activity), r->metadata ? r->metadata : "{}",
                                r->envs ? r->envs : "{}", cpu, I64(mem, r->memory_mb), r->traffic_token, r->template_version,
                                I64(disk, r->disk_mb), r->node, r->allow_internet_access ? "true" : "false",
                                r->network_rules ? r->network_rules : "", *r->runtime ? r->runtime : "runc"};
        _cleanup_pgresult_ PGresult *res = NULL;
        int q;

        snprintf(cpu, sizeof(cpu), "%.17g", r->cpu_count);
        q = capped(s, r, max_running,
                   "INSERT INTO sandboxes(id, team_id, template, state, created_at, timeout, deadline, idle_timeout,"
                   " last_activity, metadata, envs, cpu_count, memory_mb, traffic_token, template_version, disk_mb, node,"
                   " allow_internet_access, network_rules, runtime)"
                   " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20) RETURNING seq",
                   (int) ELEMENTSOF(values), values, "insert sandbox", &res, e);
        if (q >= 0)
                r->seq = col_i64(res, 0, 0);
        return q;
}

static int sandbox_get(struct store *base, const char *id, struct sandbox_rec *ret, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE id = $1", 1, (const char *[]){id}, true, "get sandbox", &res, e);
        pthread_mutex_unlock(&s->lock);
        if (r >= 0)
                r = PQntuples(res) != 1 ? -ENOENT
                    : row_to_rec(res, 0, ret) < 0 ? error_set(e, ENOMEM, ERR_INTERNAL, "out of memory")
                                                  : 0;
        return r;
}

static const char update_sql[] =
        "UPDATE sandboxes SET state=$2, error=$3, started_at=$4, killed_at=$5, timeout=$6, deadline=$7,"
        " idle_timeout=$8, last_activity=GREATEST(last_activity, $9), ip=$10, pause_kind=$11, memory_mb=$12 WHERE id=$1";

struct update_values {
        char started[24], killed[24], timeout[24], deadline[24], idle[24], last[24], mem[24];
        const char *v[12];
};

static void update_values(const struct sandbox_rec *r, struct update_values *u) {
        const char *v[12] = {r->id, sandbox_state_to_string(r->state), r->error, I64(u->started, r->started_at),
                             I64(u->killed, r->killed_at), I64(u->timeout, r->timeout), I64(u->deadline, r->deadline),
                             I64(u->idle, r->idle_timeout), I64(u->last, r->last_activity), r->ip,
                             store_pause_kind_column(r->pause_kind), I64(u->mem, r->memory_mb)}; /* memory_mb: lowered at resume */

        memcpy(u->v, v, sizeof(v));
}

static int sandbox_update(struct store *base, const struct sandbox_rec *r, struct error *e) {
        struct pg_store *s = of(base);
        struct update_values u;
        int q;

        update_values(r, &u);
        pthread_mutex_lock(&s->lock);
        q = run(s, update_sql, 12, u.v, true, "update sandbox", e); /* idempotent: sets values (GREATEST too) */
        pthread_mutex_unlock(&s->lock);
        return q;
}

static int sandbox_update_capped(struct store *base, const struct sandbox_rec *r, int64_t max_running, struct error *e) {
        struct pg_store *s = of(base);
        struct update_values u;
        _cleanup_pgresult_ PGresult *res = NULL;
        int q;

        update_values(r, &u);
        q = capped(s, r, max_running, update_sql, 12, u.v, "update sandbox", &res, e);
        return q;
}

static int sandbox_touch(struct store *base, const char *id, int64_t at, struct error *e) {
        struct pg_store *s = of(base);
        char when[24];
        int r;

        pthread_mutex_lock(&s->lock);
        r = run(s, "UPDATE sandboxes SET last_activity = $2 WHERE id = $1 AND last_activity < $2", 2, (const char *[]){id, I64(when, at)},
                true, "touch sandbox", e);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int sandbox_delete(struct store *base, const char *id, struct error *e) {
        struct pg_store *s = of(base);
        int r;

        pthread_mutex_lock(&s->lock);
        r = run(s, "DELETE FROM sandboxes WHERE id = $1", 1, (const char *[]){id}, true, "delete sandbox", e);
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* The filter's states as a text[] literal ("{creating,running}"): constants, sent as a
 * parameter. */
static void state_array(unsigned mask, char *out, size_t n) {
        size_t len = (size_t) snprintf(out, n, "{");

        for (int i = 0; i < _SANDBOX_STATE_MAX && len < n; i++)
                if (mask & (1u << i))
                        len += (size_t) snprintf(out + len, n - len, "%s%s", len > 1 ? "," : "",
                                                 sandbox_state_to_string((enum sandbox_state) i));
        if (len < n)
                snprintf(out + len, n - len, "}");
}

/* The SELECT of a filter, with placeholders only: $1 after_seq, $2 the states, then the team,
 * then each metadata key and value, then the node, then the limit. Metadata matches as SQLite's json_each
 * does: a key of the top-level object whose value is that string. */
static int foreach_sql(const struct sandbox_filter *f, struct buf *sql) {
        int p = 3;

        buf_append_str(sql, "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE seq > $1 AND state = ANY($2::text[])");
        if (f->team_id >= 0)
                buf_printf(sql, " AND team_id = $%d", p++);
        for (unsigned i = 0; i < f->n_meta; i++, p += 2)
                buf_printf(sql,
                           " AND EXISTS (SELECT 1 FROM jsonb_each(CASE WHEN jsonb_typeof(metadata::jsonb) = 'object'"
                           " THEN metadata::jsonb ELSE '{}' END) m WHERE m.key = $%d AND m.value = to_jsonb($%d::text))",
                           p, p + 1);
        if (f->node)
                buf_printf(sql, " AND node = $%d", p++);
        buf_append_str(sql, " ORDER BY seq");
        if (f->limit)
                buf_printf(sql, " LIMIT $%d", p++);
        return p - 1;
}

static int sandbox_foreach(struct store *base, const struct sandbox_filter *f, int (*fn)(void *, const struct sandbox_rec *), void *data,
                           struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_buf_ struct buf sql;
        _cleanup_free_ const char **values = NULL;
        char after[24], states[128], team[24], limit[24];
        _cleanup_pgresult_ PGresult *res = NULL;
        int n, r, v = 0;

        if (f->n_meta > 1000)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "too many metadata filters");
        buf_init(&sql, 64 * 1024);
        n = foreach_sql(f, &sql);
        values = calloc((size_t) n, sizeof(*values));
        if (!values || !sql.data)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        state_array(f->state_mask, states, sizeof(states));
        values[v++] = I64(after, f->after_seq);
        values[v++] = states;
        if (f->team_id >= 0)
                values[v++] = I64(team, f->team_id);
        for (unsigned i = 0; i < f->n_meta; i++) {
                values[v++] = f->meta_keys[i];
                values[v++] = f->meta_values[i];
        }
        if (f->node)
                values[v++] = f->node;
        if (f->limit)
                values[v++] = I64(limit, f->limit);

        pthread_mutex_lock(&s->lock);
        r = query(s, sql.data, n, values, true, "list sandboxes", &res, e);
        pthread_mutex_unlock(&s->lock);
        /* The rows are in res: fn runs without the lock, and may call the store. */
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                struct sandbox_rec rec;
                int stop;

                if (row_to_rec(res, i, &rec) < 0) {
                        r = error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
                        break;
                }
                stop = fn(data, &rec);
                sandbox_rec_done(&rec);
                if (stop)
                        break;
        }
        return r;
}

static int sandbox_expired(struct store *base, const char *node, int64_t now, char ***ret, unsigned *ret_n, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        char when[24], **ids = NULL;
        unsigned n = 0;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s,
                  "SELECT id FROM sandboxes WHERE state = 'running' AND node = $2 AND CASE WHEN deadline > 0 THEN deadline"
                  " ELSE last_activity + idle_timeout * 1000 END <= $1 ORDER BY seq LIMIT 1000",
                  2, (const char *[]){I64(when, now), node}, true, "expired sandboxes", &res, e);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                return r;
        if (PQntuples(res) > 0 && !(ids = calloc((size_t) PQntuples(res), sizeof(char *)))) {
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        for (int i = 0; i < PQntuples(res); i++)
                if ((ids[n] = strdup(PQgetvalue(res, i, 0))))
                        n++;
        *ret = ids;
        *ret_n = n;
        return 0;
}

static int template_users(struct store *base, int (*fn)(void *, const char *, const char *, int64_t), void *data, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        /* COLLATE "C": byte order, as SQLite's BINARY, whatever the database's locale. */
        r = query(s,
                  "SELECT template, template_version, count(*) FROM sandboxes WHERE state != 'killed'"
                  " GROUP BY template, template_version ORDER BY template COLLATE \"C\", template_version COLLATE \"C\"",
                  0, NULL, true, "count template users", &res, e);
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; r >= 0 && i < PQntuples(res); i++)
                if (fn(data, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), col_i64(res, i, 2)))
                        break;
        return r;
}

static int sandbox_purge(struct store *base, int64_t killed_before, struct error *e) {
        struct pg_store *s = of(base);
        char when[24];
        int r;

        pthread_mutex_lock(&s->lock);
        r = run(s, "DELETE FROM sandboxes WHERE state = 'killed' AND killed_at < $1", 1, (const char *[]){I64(when, killed_before)}, true,
                "purge", e);
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* -- nodes ----------------------------------------------------------------------------- */

/* Shared by many engines: only rows without an owner ('', from before nodes) are claimed, and
 * only by the first node to register while no other is known, under REGISTER_LOCK, so that
 * two engines starting at once on such a database do not split its rows between them. */
static int node_register(struct store *base, const struct node_rec *n, int64_t *ret_adopted, struct error *e) {
        struct pg_store *s = of(base);
        char started[24], beat[24], lease[24], mem[24], cpus[24], cap[24];
        const char *values[] = {n->name, n->advertise, I64(started, n->started_at), I64(beat, n->heartbeat_at),
                                I64(lease, n->lease_until), I64(mem, n->memory_mb), I64(cpus, n->cpus), n->advertise_preview,
                                I64(cap, n->capacity)};
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        if ((r = run(s, "BEGIN", 0, NULL, true, "begin", e)) < 0)
                goto out;
        if ((r = run(s, "SELECT pg_advisory_xact_lock(" REGISTER_LOCK ")", 0, NULL, false, "lock node registration", e)) < 0 ||
            (r = run(s,
                     "INSERT INTO nodes(name, advertise, started_at, heartbeat_at, lease_until, memory_mb, cpus, advertise_preview,"
                     " capacity) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT(name) DO UPDATE SET"
                     " advertise = EXCLUDED.advertise, advertise_preview = EXCLUDED.advertise_preview, capacity = EXCLUDED.capacity,"
                     " started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, lease_until = EXCLUDED.lease_until,"
                     " memory_mb = EXCLUDED.memory_mb, cpus = EXCLUDED.cpus",
                     (int) ELEMENTSOF(values), values, false, "register node", e)) < 0 ||
            (r = query(s, "UPDATE sandboxes SET node = $1 WHERE node = '' AND NOT EXISTS (SELECT 1 FROM nodes WHERE name != $1)", 1,
                       values, false, "adopt sandboxes", &res, e)) < 0) {
                rollback(s);
                goto out;
        }
        if ((r = run(s, "COMMIT", 0, NULL, false, "commit", e)) >= 0 && ret_adopted)
                *ret_adopted = strtoll(PQcmdTuples(res), NULL, 10);
out:
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int node_renew(struct store *base, const char *name, int64_t now, int64_t lease_until, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        char when[24], lease[24];
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "UPDATE nodes SET heartbeat_at = $2, lease_until = $3, running = " STORE_NODE_RUNNING_SQL("$1") " WHERE name = $1", 3,
                  (const char *[]){name, I64(when, now), I64(lease, lease_until)}, true, "renew node lease", &res, e);
        if (r >= 0 && streq(PQcmdTuples(res), "0"))
                r = error_set(e, ENOENT, ERR_NOT_FOUND, "no node %s", name);
        pthread_mutex_unlock(&s->lock);
        return r;
}

#define NODE_COLUMNS "name, advertise, state, started_at, heartbeat_at, lease_until, memory_mb, cpus, running, advertise_preview, capacity"

static void row_to_node(const PGresult *res, int i, struct node_rec *n) {
        *n = (struct node_rec){0};
        col_text(res, i, 0, n->name, sizeof(n->name));
        col_text(res, i, 1, n->advertise, sizeof(n->advertise));
        if (node_state_from_string(PQgetvalue(res, i, 2), &n->state) < 0)
                n->state = NODE_CORDONED; /* a state of a newer engine: take no new sandboxes */
        n->started_at = col_i64(res, i, 3);
        n->heartbeat_at = col_i64(res, i, 4);
        n->lease_until = col_i64(res, i, 5);
        n->memory_mb = col_i64(res, i, 6);
        n->cpus = col_i64(res, i, 7);
        col_text(res, i, 9, n->advertise_preview, sizeof(n->advertise_preview));
        n->running = col_i64(res, i, 8);
        n->capacity = col_i64(res, i, 10);
}

static int node_get(struct store *base, const char *name, struct node_rec *ret, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "SELECT " NODE_COLUMNS " FROM nodes WHERE name = $1", 1, (const char *[]){name}, true, "get node", &res, e);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -ENOENT;
        row_to_node(res, 0, ret);
        return 0;
}

static int node_foreach(struct store *base, int (*fn)(void *, const struct node_rec *), void *data, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "SELECT " NODE_COLUMNS " FROM nodes ORDER BY name COLLATE \"C\"", 0, NULL, true, "list nodes", &res, e);
        pthread_mutex_unlock(&s->lock);
        /* The rows are in res: fn runs without the lock, and may call the store. */
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                struct node_rec n;

                row_to_node(res, i, &n);
                if (fn(data, &n))
                        break;
        }
        return r;
}

static int node_set_state(struct store *base, const char *name, enum node_state state, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        r = query(s, "UPDATE nodes SET state = $2 WHERE name = $1", 2, (const char *[]){name, node_state_to_string(state)}, true,
                  "set node state", &res, e);
        if (r >= 0 && streq(PQcmdTuples(res), "0"))
                r = error_set(e, ENOENT, ERR_NOT_FOUND, "no node %s", name);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int nodes_mark_lost(struct store *base, const char *self, int64_t now, int64_t *ret_n, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        char when[24];
        int r;

        pthread_mutex_lock(&s->lock);
        /* Retried: it sets values under a condition, so a second run changes nothing more. */
        r = query(s, STORE_MARK_LOST_SQL("$1", "$2"), 2, (const char *[]){self, I64(when, now)}, true,
                  "mark the sandboxes of lost nodes", &res, e);
        if (r >= 0 && ret_n)
                *ret_n = strtoll(PQcmdTuples(res), NULL, 10);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int sandbox_move(struct store *base, const char *id, const char *from, const char *to, struct error *e) {
        struct pg_store *s = of(base);
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        pthread_mutex_lock(&s->lock);
        /* Retried: guarded by the old owner, a second run changes nothing more. */
        r = query(s, STORE_MOVE_SQL("$1", "$2", "$3"), 3, (const char *[]){id, from, to}, true, "move a sandbox to another node",
                  &res, e);
        if (r >= 0 && streq(PQcmdTuples(res), "0"))
                r = error_set(e, ESTALE, ERR_CONFLICT, "sandbox %s is no longer a paused sandbox of node %s", id, from);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static const struct store_ops pg_ops = {
        .name = "postgres",
        .close = pg_close,
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
