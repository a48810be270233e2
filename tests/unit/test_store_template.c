/* test_store_template.c — the store's side of template versions: a database of the release
 * before them (schema version 2, with sandboxes running and paused) opens, keeps its rows and
 * gains template_version '' (the legacy template they were made on); a fresh database has the
 * column too; a new sandbox's version round-trips and no update changes it; and
 * store_template_users counts, per template version, the sandboxes that are not killed.
 * The migration is SQLite's; the rest runs on both backends (store-backend.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "store/store.h"
#include "store-backend.h"
#include "timeutil.h"

static char dir[] = "/tmp/ai2in-store-template-XXXXXX";
static char path[256];

/* The schema as the release before template versions left it (user_version 2). */
static const char v2_schema[] =
        "CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL);"
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id),"
        "  hash BLOB NOT NULL, created_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE sandboxes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
        "  team_id INTEGER NOT NULL, template TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',"
        "  created_at INTEGER NOT NULL, started_at INTEGER NOT NULL DEFAULT 0, killed_at INTEGER NOT NULL DEFAULT 0,"
        "  timeout INTEGER NOT NULL DEFAULT 0, deadline INTEGER NOT NULL DEFAULT 0, idle_timeout INTEGER NOT NULL,"
        "  last_activity INTEGER NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', envs TEXT NOT NULL DEFAULT '{}',"
        "  cpu_count REAL NOT NULL, memory_mb INTEGER NOT NULL, ip TEXT NOT NULL DEFAULT '',"
        "  pause_kind TEXT NOT NULL DEFAULT '', traffic_token TEXT NOT NULL DEFAULT '');"
        "CREATE INDEX sandboxes_team_state ON sandboxes(team_id, state);"
        "PRAGMA user_version = 2;"
        "INSERT INTO teams(name, created_at) VALUES('old', 1);"
        "INSERT INTO sandboxes(id, team_id, template, state, created_at, idle_timeout, last_activity, cpu_count, memory_mb, ip,"
        "  pause_kind, traffic_token)"
        "  VALUES('sbx_running', 1, 'base', 'running', 1, 1800, 1, 1.0, 512, '10.0.0.2', '', 'tok'),"
        "        ('sbx_paused', 1, 'base', 'paused', 2, 1800, 2, 1.0, 512, '', 'filesystem', ''),"
        "        ('sbx_killed', 1, 'base', 'killed', 3, 1800, 3, 1.0, 512, '', '', '');";

static int open_store(const char *state_dir, struct store **ret) {
        struct error e = {0};
        int r = store_open(test_database, state_dir, ret, &e);

        if (r < 0)
                fprintf(stderr, "store_open: %s\n", e.message);
        return r;
}

static int setup(void **state) {
        sqlite3 *db;

        if (!mkdtemp(dir))
                return -1;
        snprintf(path, sizeof(path), "%s/state.db", dir);
        if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, v2_schema, NULL, NULL, NULL) != SQLITE_OK)
                return -1;
        sqlite3_close(db);
        return 0;
}

static int teardown(void **state) {
        rm_rf(dir);
        return 0;
}

static int user_version(const char *db_path) {
        sqlite3 *db;
        sqlite3_stmt *st;
        int v = -1;

        assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void add(struct store *s, const char *id, const char *tmpl, const char *version) {
        struct sandbox_rec r = {.team_id = 1, .state = SANDBOX_CREATING, .created_at = now_ms(), .last_activity = now_ms(),
                                .idle_timeout = 60, .cpu_count = 1, .memory_mb = 256};
        struct error e = {0};

        snprintf(r.id, sizeof(r.id), "%s", id);
        snprintf(r.template_name, sizeof(r.template_name), "%s", tmpl);
        snprintf(r.template_version, sizeof(r.template_version), "%s", version);
        assert_int_equal(store_sandbox_insert(s, &r, 100, &e), 0);
}

static void set_state(struct store *s, const char *id, enum sandbox_state st) {
        struct sandbox_rec r;
        struct error e = {0};

        assert_int_equal(store_sandbox_get(s, id, &r, &e), 0);
        r.state = st;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        sandbox_rec_done(&r);
}

struct seen {
        char lines[16][160];
        unsigned n;
};

static int record_use(void *data, const char *name, const char *version, int64_t n) {
        struct seen *s = data;

        if (s->n < 16)
                snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s@%s=%lld", name, version, (long long) n);
        return 0;
}

static void test_migration_from_v2(void **state) {
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};
        struct seen seen = {0};

        assert_int_equal(user_version(path), 2);
        assert_int_equal(open_store(dir, &s), 0);
        assert_int_equal(user_version(path), 9);
        /* Old rows keep everything and were made on the legacy template. */
        assert_int_equal(store_sandbox_get(s, "sbx_paused", &r, &e), 0);
        assert_int_equal(r.state, SANDBOX_PAUSED);
        assert_int_equal(r.pause_kind, PAUSE_FILESYSTEM);
        assert_string_equal(r.template_name, "base");
        assert_string_equal(r.template_version, "");
        assert_string_equal(r.node, ""); /* no owner until a node registers (test_store_nodes.c) */
        sandbox_rec_done(&r);
        assert_int_equal(store_sandbox_get(s, "sbx_running", &r, &e), 0);
        assert_string_equal(r.traffic_token, "tok");
        assert_string_equal(r.ip, "10.0.0.2");
        assert_string_equal(r.template_version, "");
        sandbox_rec_done(&r);
        /* The killed one is not a user of the legacy version; the two others are. */
        assert_int_equal(store_template_users(s, record_use, &seen, &e), 0);
        assert_int_equal(seen.n, 1);
        assert_string_equal(seen.lines[0], "base@=2");
        store_close(s);

        /* Opening again migrates nothing and loses nothing. */
        assert_int_equal(open_store(dir, &s), 0);
        assert_int_equal(user_version(path), 9);
        assert_int_equal(store_sandbox_get(s, "sbx_paused", &r, &e), 0);
        assert_string_equal(r.template_version, "");
        sandbox_rec_done(&r);
        store_close(s);
}

static void test_version_recorded_and_counted(void **state) {
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};
        struct seen seen = {0};

        assert_int_equal(open_store(dir, &s), 0);
        add(s, "sbx_v1a", "base", "20261207T170000Z-aaaaa");
        add(s, "sbx_v1b", "base", "20261207T170000Z-aaaaa");
        add(s, "sbx_v2", "base", "20261207T180000Z-bbbbb");
        add(s, "sbx_other", "py", "20261207T180000Z-bbbbb");
        assert_int_equal(store_sandbox_get(s, "sbx_v1a", &r, &e), 0);
        assert_string_equal(r.template_version, "20261207T170000Z-aaaaa");
        /* Every transition writes the row back; none changes the version it mounts. */
        r.state = SANDBOX_PAUSED;
        r.pause_kind = PAUSE_FILESYSTEM;
        snprintf(r.template_version, sizeof(r.template_version), "changed");
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        sandbox_rec_done(&r);
        assert_int_equal(store_sandbox_get(s, "sbx_v1a", &r, &e), 0);
        assert_int_equal(r.state, SANDBOX_PAUSED);
        assert_string_equal(r.template_version, "20261207T170000Z-aaaaa");
        sandbox_rec_done(&r);

        set_state(s, "sbx_v2", SANDBOX_KILLED);
        set_state(s, "sbx_v1b", SANDBOX_ERROR); /* may be re-adopted some day: still a user */
        assert_int_equal(store_template_users(s, record_use, &seen, &e), 0);
        assert_int_equal(seen.n, 3);
        assert_string_equal(seen.lines[0], "base@=2");
        assert_string_equal(seen.lines[1], "base@20261207T170000Z-aaaaa=2");
        assert_string_equal(seen.lines[2], "py@20261207T180000Z-bbbbb=1");
        store_close(s);
}

static void test_fresh_database(void **state) {
        char fresh[300];
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};

        snprintf(fresh, sizeof(fresh), "%s/fresh", dir);
        assert_int_equal(mkdir(fresh, 0700), 0);
        if (test_database) {
                assert_int_equal(test_postgres_reset(), 0);
                assert_int_equal(open_store(fresh, &s), 0);
                assert_int_equal(test_postgres_scalar("SELECT version FROM schema_version"), 6);
        } else {
                assert_int_equal(open_store(fresh, &s), 0);
                snprintf(fresh, sizeof(fresh), "%s/fresh/state.db", dir);
                assert_int_equal(user_version(fresh), 9);
        }
        add(s, "sbx_new", "base", "20261207T190000Z-ccccc");
        assert_int_equal(store_sandbox_get(s, "sbx_new", &r, &e), 0);
        assert_string_equal(r.template_version, "20261207T190000Z-ccccc");
        sandbox_rec_done(&r);
        store_close(s);
}

/* Puts in s the sandbox id of the legacy template in the given state. */
static int legacy_row(struct store *s, const char *id, enum sandbox_state st, enum pause_kind kind, const char *ip, const char *token) {
        struct sandbox_rec r = {.team_id = 1, .state = SANDBOX_CREATING, .created_at = 1, .last_activity = 1, .idle_timeout = 1800,
                                .cpu_count = 1, .memory_mb = 512, .template_name = "base"};
        struct error e = {0};

        snprintf(r.id, sizeof(r.id), "%s", id);
        snprintf(r.traffic_token, sizeof(r.traffic_token), "%s", token);
        if (store_sandbox_insert(s, &r, 100, &e) < 0)
                return -1;
        r.state = st;
        r.pause_kind = kind;
        snprintf(r.ip, sizeof(r.ip), "%s", ip);
        return store_sandbox_update(s, &r, &e);
}

/* PostgreSQL: a fresh database holding the rows the v2 SQLite one had. */
static int setup_postgres(void **state) {
        struct store *s;

        if (!mkdtemp(dir) || test_postgres_reset() < 0 || open_store(dir, &s) < 0)
                return -1;
        if (legacy_row(s, "sbx_running", SANDBOX_RUNNING, PAUSE_NONE, "10.0.0.2", "tok") < 0 ||
            legacy_row(s, "sbx_paused", SANDBOX_PAUSED, PAUSE_FILESYSTEM, "", "") < 0 ||
            legacy_row(s, "sbx_killed", SANDBOX_KILLED, PAUSE_NONE, "", "") < 0)
                return -1;
        store_close(s);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_migration_from_v2),
                cmocka_unit_test(test_version_recorded_and_counted),
                cmocka_unit_test(test_fresh_database),
        };
        const struct CMUnitTest pg_tests[] = {
                cmocka_unit_test(test_version_recorded_and_counted),
                cmocka_unit_test(test_fresh_database),
        };
        int failed = cmocka_run_group_tests_name("store template on sqlite", tests, setup, teardown);

        test_database = test_postgres_url();
        if (!test_database) {
                test_postgres_skipped("test_store_template");
                return failed;
        }
        snprintf(dir, sizeof(dir), "/tmp/ai2in-store-template-XXXXXX");
        return failed + cmocka_run_group_tests_name("store template on postgres", pg_tests, setup_postgres, teardown);
}
