/* test_store_pause.c — the store's side of pause and resume: a database made by an engine
 * before pause existed opens, keeps its rows and gains pause_kind (SQLite: PostgreSQL's schema
 * starts after pause); the states round-trip; the running cap counts what holds a container
 * (creating, running, pausing, resuming, and paused with memory kept) and
 * store_sandbox_update_capped refuses over it (both backends: store-backend.h). */
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

#include "fsutil.h"
#include "store/backend.h"
#include "store/store.h"
#include "store-backend.h"
#include "timeutil.h"

static char dir[] = "/tmp/ai2in-store-pause-XXXXXX";
static char path[256];

/* The schema exactly as the first release created it, with one sandbox in it. */
static const char old_schema[] =
        "CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL);"
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id),"
        "  hash BLOB NOT NULL, created_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE sandboxes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
        "  team_id INTEGER NOT NULL, template TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',"
        "  created_at INTEGER NOT NULL, started_at INTEGER NOT NULL DEFAULT 0, killed_at INTEGER NOT NULL DEFAULT 0,"
        "  timeout INTEGER NOT NULL DEFAULT 0, deadline INTEGER NOT NULL DEFAULT 0, idle_timeout INTEGER NOT NULL,"
        "  last_activity INTEGER NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', envs TEXT NOT NULL DEFAULT '{}',"
        "  cpu_count REAL NOT NULL, memory_mb INTEGER NOT NULL, ip TEXT NOT NULL DEFAULT '');"
        "CREATE INDEX sandboxes_team_state ON sandboxes(team_id, state);"
        "INSERT INTO teams(name, created_at) VALUES('old', 1);"
        "INSERT INTO sandboxes(id, team_id, template, state, created_at, idle_timeout, last_activity, cpu_count, memory_mb, ip)"
        "  VALUES('sbx_old', 1, 'base', 'running', 1, 1800, 1, 1.0, 512, '10.0.0.2');";

static int open_store(struct store **ret) {
        struct error e = {0};
        int r = store_open(test_database, dir, ret, &e);

        if (r < 0)
                fprintf(stderr, "store_open: %s\n", e.message);
        return r;
}

static int setup(void **state) {
        sqlite3 *db;

        if (!mkdtemp(dir))
                return -1;
        snprintf(path, sizeof(path), "%s/state.db", dir);
        if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, old_schema, NULL, NULL, NULL) != SQLITE_OK)
                return -1;
        sqlite3_close(db);
        return 0;
}

static int teardown(void **state) {
        rm_rf(dir);
        return 0;
}

static int user_version(void) {
        sqlite3 *db;
        sqlite3_stmt *st;
        int v = -1;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void add(struct store *s, const char *id, int64_t cap, int expect) {
        struct sandbox_rec r = {.team_id = 1, .state = SANDBOX_CREATING, .created_at = now_ms(), .last_activity = now_ms(),
                                .idle_timeout = 60, .cpu_count = 1, .memory_mb = 256};
        struct error e = {0};

        snprintf(r.id, sizeof(r.id), "%s", id);
        snprintf(r.template_name, sizeof(r.template_name), "base");
        assert_int_equal(store_sandbox_insert(s, &r, cap, &e), expect);
}

static void set_state(struct store *s, const char *id, enum sandbox_state st, enum pause_kind kind) {
        struct sandbox_rec r;
        struct error e = {0};

        assert_int_equal(store_sandbox_get(s, id, &r, &e), 0);
        r.state = st;
        r.pause_kind = kind;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        sandbox_rec_done(&r);
}

static void test_migration_keeps_old_rows(void **state) {
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};

        assert_int_equal(user_version(), 0);
        assert_int_equal(open_store(&s), 0);
        assert_int_equal(user_version(), 9);
        assert_int_equal(store_sandbox_get(s, "sbx_old", &r, &e), 0);
        assert_true(r.allow_internet_access); /* an old sandbox gets the internet, as a create that does not say */
        assert_string_equal(r.network_rules, ""); /* and no rules of its own */
        assert_int_equal(r.state, SANDBOX_RUNNING);
        assert_int_equal(r.disk_mb, 0); /* an old sandbox has no disk limit: its files stay where they are */
        assert_int_equal(r.pause_kind, PAUSE_NONE);
        assert_string_equal(r.traffic_token, ""); /* an old sandbox is not secure */
        assert_string_equal(r.ip, "10.0.0.2");
        assert_string_equal(r.runtime, "runc"); /* an old sandbox ran on runc */
        /* The new column is written and read back. */
        r.state = SANDBOX_PAUSED;
        r.pause_kind = PAUSE_MEMORY;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        sandbox_rec_done(&r);
        store_close(s);

        /* Opening again migrates nothing and loses nothing. */
        assert_int_equal(open_store(&s), 0);
        assert_int_equal(user_version(), 9);
        assert_int_equal(store_sandbox_get(s, "sbx_old", &r, &e), 0);
        assert_true(r.allow_internet_access); /* an old sandbox gets the internet, as a create that does not say */
        assert_int_equal(r.state, SANDBOX_PAUSED);
        assert_int_equal(r.pause_kind, PAUSE_MEMORY);
        sandbox_rec_done(&r);
        store_close(s);
}

static void test_states_round_trip(void **state) {
        static const enum sandbox_state states[] = {SANDBOX_PAUSING, SANDBOX_RESUMING, SANDBOX_PAUSED};
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};
        enum sandbox_state parsed;

        assert_string_equal(sandbox_state_to_string(SANDBOX_PAUSING), "pausing");
        assert_string_equal(sandbox_state_to_string(SANDBOX_RESUMING), "resuming");
        assert_int_equal(sandbox_state_from_string("resuming", &parsed), 0);
        assert_int_equal(parsed, SANDBOX_RESUMING);
        assert_null(pause_kind_to_string(PAUSE_NONE));
        assert_string_equal(pause_kind_to_string(PAUSE_FILESYSTEM), "filesystem");
        /* A checkpoint (gVisor) is a memory pause to users, a kind of its own in the store. */
        assert_string_equal(pause_kind_to_string(PAUSE_CHECKPOINT), "memory");
        assert_string_equal(store_pause_kind_column(PAUSE_CHECKPOINT), "checkpoint");
        assert_int_equal(store_pause_kind_from_column("checkpoint"), PAUSE_CHECKPOINT);

        assert_int_equal(open_store(&s), 0);
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                set_state(s, "sbx_old", states[i], PAUSE_FILESYSTEM);
                assert_int_equal(store_sandbox_get(s, "sbx_old", &r, &e), 0);
                assert_int_equal(r.state, states[i]);
                assert_int_equal(r.pause_kind, PAUSE_FILESYSTEM);
                sandbox_rec_done(&r);
        }
        store_close(s);
}

static void test_cap_counts_what_holds_a_container(void **state) {
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};

        assert_int_equal(open_store(&s), 0);
        set_state(s, "sbx_old", SANDBOX_PAUSED, PAUSE_FILESYSTEM); /* counts for nothing */
        add(s, "sbx_a", 2, 0);
        add(s, "sbx_b", 2, 0);
        add(s, "sbx_c", 2, -EUSERS);
        /* Resuming the paused one is refused over the cap, and writes nothing. */
        assert_int_equal(store_sandbox_get(s, "sbx_old", &r, &e), 0);
        r.state = SANDBOX_RESUMING;
        assert_int_equal(store_sandbox_update_capped(s, &r, 2, &e), -EUSERS);
        assert_int_equal(e.status, 429);
        assert_non_null(strstr(e.message, "the cap is 2"));
        sandbox_rec_done(&r);
        assert_int_equal(store_sandbox_get(s, "sbx_old", &r, &e), 0);
        assert_int_equal(r.state, SANDBOX_PAUSED);

        /* One paused keeping only its files frees a place, for a create or that resume. */
        set_state(s, "sbx_a", SANDBOX_PAUSED, PAUSE_FILESYSTEM);
        r.state = SANDBOX_RESUMING;
        assert_int_equal(store_sandbox_update_capped(s, &r, 2, &e), 0);
        sandbox_rec_done(&r);
        add(s, "sbx_c", 2, -EUSERS); /* resuming counts */

        /* Paused with memory kept, and pausing, still count. */
        set_state(s, "sbx_old", SANDBOX_PAUSED, PAUSE_MEMORY);
        add(s, "sbx_c", 2, -EUSERS);
        set_state(s, "sbx_old", SANDBOX_PAUSING, PAUSE_FILESYSTEM);
        add(s, "sbx_c", 2, -EUSERS);
        set_state(s, "sbx_old", SANDBOX_PAUSING, PAUSE_CHECKPOINT);
        add(s, "sbx_c", 2, -EUSERS);
        /* Checkpointed to disk: no container, so not counted; round-trips its kind. */
        set_state(s, "sbx_old", SANDBOX_PAUSED, PAUSE_CHECKPOINT);
        assert_int_equal(store_sandbox_get(s, "sbx_old", &r, &e), 0);
        assert_int_equal(r.pause_kind, PAUSE_CHECKPOINT);
        sandbox_rec_done(&r);
        add(s, "sbx_c", 2, 0);
        set_state(s, "sbx_c", SANDBOX_PAUSED, PAUSE_FILESYSTEM);
        set_state(s, "sbx_old", SANDBOX_PAUSED, PAUSE_FILESYSTEM);
        add(s, "sbx_d", 2, 0);

        /* A sandbox is not counted against itself: an update of one already counted (a frozen
         * one thawing) passes at the cap. */
        assert_int_equal(store_sandbox_get(s, "sbx_b", &r, &e), 0);
        r.state = SANDBOX_RUNNING;
        assert_int_equal(store_sandbox_update_capped(s, &r, 2, &e), 0);
        sandbox_rec_done(&r);
        store_close(s);
}

/* PostgreSQL: a fresh database with the row the old SQLite one had (running, team 1). */
static int setup_postgres(void **state) {
        struct sandbox_rec r = {.team_id = 1, .state = SANDBOX_CREATING, .created_at = 1, .last_activity = 1, .idle_timeout = 1800,
                                .cpu_count = 1, .memory_mb = 512, .id = "sbx_old", .template_name = "base"};
        struct store *s;
        struct error e = {0};

        if (!mkdtemp(dir) || test_postgres_reset() < 0 || open_store(&s) < 0)
                return -1;
        if (store_sandbox_insert(s, &r, 100, &e) < 0)
                return -1;
        r.state = SANDBOX_RUNNING;
        snprintf(r.ip, sizeof(r.ip), "10.0.0.2");
        if (store_sandbox_update(s, &r, &e) < 0)
                return -1;
        store_close(s);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_migration_keeps_old_rows),
                cmocka_unit_test(test_states_round_trip),
                cmocka_unit_test(test_cap_counts_what_holds_a_container),
        };
        const struct CMUnitTest pg_tests[] = {
                cmocka_unit_test(test_states_round_trip),
                cmocka_unit_test(test_cap_counts_what_holds_a_container),
        };
        int failed = cmocka_run_group_tests_name("store pause on sqlite", tests, setup, teardown);

        test_database = test_postgres_url();
        if (!test_database) {
                test_postgres_skipped("test_store_pause");
                return failed;
        }
        snprintf(dir, sizeof(dir), "/tmp/ai2in-store-pause-XXXXXX");
        return failed + cmocka_run_group_tests_name("store pause on postgres", pg_tests, setup_postgres, teardown);
}
