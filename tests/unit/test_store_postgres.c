/* test_store_postgres.c — what only the PostgreSQL backend has to prove, against a real
 * server (AI2IN_TEST_DATABASE, from scripts/test-postgres.sh; skipped without one):
 *   - engines starting at once on an empty database migrate it once, without an error;
 *   - the team's running cap is exact when many connections (as many engines) create at once;
 *   - a database that stops gives 503 "the database is unreachable" (never a crash), and the
 *     same store works again once it is back, with nothing lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store-backend.h"
#include "timeutil.h"

#define OPENERS 6
#define CREATORS 12
#define PER_CREATOR 4
#define CAP 10

static int reset(void **state) {
        return test_postgres_reset();
}

static void rec_init(struct sandbox_rec *r, const char *id, int64_t team) {
        *r = (struct sandbox_rec){.team_id = team, .state = SANDBOX_CREATING, .created_at = now_ms(), .last_activity = now_ms(),
                                  .idle_timeout = 60, .cpu_count = 0.5, .memory_mb = 256, .template_name = "base"};
        snprintf(r->id, sizeof(r->id), "%s", id);
}

static pthread_barrier_t start;

static void *open_one(void *arg) {
        struct store *s = NULL;
        struct error e = {0};
        intptr_t r;

        pthread_barrier_wait(&start);
        r = store_open(test_database, "/nonexistent", &s, &e);
        if (r < 0)
                fprintf(stderr, "store_open: %s\n", e.message);
        store_close(s);
        return (void *) r;
}

static void test_concurrent_migration(void **state) {
        pthread_t t[OPENERS];
        void *r;

        pthread_barrier_init(&start, NULL, OPENERS);
        for (int i = 0; i < OPENERS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, open_one, NULL), 0);
        for (int i = 0; i < OPENERS; i++) {
                assert_int_equal(pthread_join(t[i], &r), 0);
                assert_int_equal((intptr_t) r, 0);
        }
        pthread_barrier_destroy(&start);
        assert_int_equal(test_postgres_scalar("SELECT count(*) FROM schema_version"), 1);
        assert_int_equal(test_postgres_scalar("SELECT version FROM schema_version"), 6); /* the last migration: runtimes per sandbox */
        assert_int_equal(test_postgres_scalar("SELECT count(*) FROM sandboxes"), 0);
}

struct creator {
        int index, created, refused, other;
};

/* One engine: its own store (its own connection), creating PER_CREATOR sandboxes for team 7. */
static void *create_some(void *arg) {
        struct creator *c = arg;
        struct store *s = NULL;
        struct error e = {0};

        if (store_open(test_database, "/nonexistent", &s, &e) < 0) {
                c->other = PER_CREATOR;
                return NULL;
        }
        pthread_barrier_wait(&start);
        for (int i = 0; i < PER_CREATOR; i++) {
                struct sandbox_rec r;
                char id[32];
                int q;

                snprintf(id, sizeof(id), "sbx_c%d_%d", c->index, i);
                rec_init(&r, id, 7);
                q = store_sandbox_insert(s, &r, CAP, &e);
                if (q == 0)
                        c->created++;
                else if (q == -EUSERS)
                        c->refused++;
                else {
                        fprintf(stderr, "insert: %s\n", e.message);
                        c->other++;
                }
        }
        store_close(s);
        return NULL;
}

static void test_cap_exact_across_connections(void **state) {
        struct creator c[CREATORS] = {{0}};
        pthread_t t[CREATORS];
        int created = 0, refused = 0, other = 0;

        pthread_barrier_init(&start, NULL, CREATORS);
        for (int i = 0; i < CREATORS; i++) {
                c[i].index = i;
                assert_int_equal(pthread_create(&t[i], NULL, create_some, &c[i]), 0);
        }
        for (int i = 0; i < CREATORS; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                created += c[i].created;
                refused += c[i].refused;
                other += c[i].other;
        }
        pthread_barrier_destroy(&start);
        assert_int_equal(other, 0);
        assert_int_equal(created, CAP);
        assert_int_equal(refused, CREATORS * PER_CREATOR - CAP);
        assert_int_equal(test_postgres_scalar("SELECT count(*) FROM sandboxes WHERE team_id = 7"), CAP);
}

static int run_command(const char *env) {
        const char *cmd = getenv(env);

        if (!cmd || !*cmd)
                return -1;
        return system(cmd) == 0 ? 0 : -1;
}

static void test_outage(void **state) {
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};
        int q = -1;

        if (!getenv("AI2IN_TEST_PG_STOP") || !getenv("AI2IN_TEST_PG_START"))
                skip(); /* a database given by hand: the test must not stop it */
        assert_int_equal(store_open(test_database, "/nonexistent", &s, &e), 0);
        rec_init(&r, "sbx_before", 1);
        assert_int_equal(store_sandbox_insert(s, &r, 5, &e), 0);

        assert_int_equal(run_command("AI2IN_TEST_PG_STOP"), 0);
        /* Reads, writes and capped writes all fail cleanly while it is down. */
        error_clear(&e);
        assert_int_equal(store_sandbox_get(s, "sbx_before", &r, &e), -EHOSTUNREACH);
        assert_int_equal(e.status, 503);
        assert_non_null(strstr(e.message, "the database is unreachable"));
        error_clear(&e);
        rec_init(&r, "sbx_during", 1);
        assert_int_equal(store_sandbox_insert(s, &r, 5, &e), -EHOSTUNREACH);
        assert_int_equal(e.status, 503);
        error_clear(&e);
        assert_int_equal(store_sandbox_touch(s, "sbx_before", now_ms(), &e), -EHOSTUNREACH);
        assert_int_equal(e.status, 503);

        assert_int_equal(run_command("AI2IN_TEST_PG_START"), 0);
        /* The same store reconnects by itself (within its once-a-second retry). */
        for (int i = 0; i < 50 && q != 0; i++) {
                error_clear(&e);
                q = store_sandbox_get(s, "sbx_before", &r, &e);
                if (q == 0)
                        break;
                assert_int_equal(e.status, 503);
                usleep(100 * 1000);
        }
        assert_int_equal(q, 0);
        assert_string_equal(r.id, "sbx_before");
        sandbox_rec_done(&r);
        rec_init(&r, "sbx_after", 1);
        assert_int_equal(store_sandbox_insert(s, &r, 5, &e), 0);
        assert_int_equal(test_postgres_scalar("SELECT count(*) FROM sandboxes WHERE team_id = 1"), 2);
        store_close(s);
}

/* A restart between two calls (no call while it is down): the first call after it is not
 * failed needlessly, the broken connection is replaced and the read retried. */
static void test_restart_between_calls(void **state) {
        struct store *s;
        struct sandbox_rec r;
        struct error e = {0};

        if (!getenv("AI2IN_TEST_PG_STOP") || !getenv("AI2IN_TEST_PG_START"))
                skip();
        assert_int_equal(store_open(test_database, "/nonexistent", &s, &e), 0);
        rec_init(&r, "sbx_x", 3);
        assert_int_equal(store_sandbox_insert(s, &r, 5, &e), 0);
        assert_int_equal(run_command("AI2IN_TEST_PG_STOP"), 0);
        assert_int_equal(run_command("AI2IN_TEST_PG_START"), 0);
        assert_int_equal(store_sandbox_get(s, "sbx_x", &r, &e), 0);
        sandbox_rec_done(&r);
        rec_init(&r, "sbx_y", 3);
        assert_int_equal(run_command("AI2IN_TEST_PG_STOP"), 0);
        assert_int_equal(run_command("AI2IN_TEST_PG_START"), 0);
        assert_int_equal(store_sandbox_insert(s, &r, 5, &e), 0); /* its BEGIN is what is retried */
        store_close(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_concurrent_migration, reset),
                cmocka_unit_test_setup(test_cap_exact_across_connections, reset),
                cmocka_unit_test_setup(test_outage, reset),
                cmocka_unit_test_setup(test_restart_between_calls, reset),
        };

        test_database = test_postgres_url();
        if (!test_database) {
                test_postgres_skipped("test_store_postgres");
                return 0;
        }
        return cmocka_run_group_tests_name("postgres store", tests, NULL, NULL);
}
