/* test_store.c — the store, against each backend (SQLite, and PostgreSQL when one is given:
 * store-backend.h): teams, keys, the running cap, filters, pagination, expiry and tombstones;
 * and what store_open accepts, and how it hides a database URL's password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "store/store.h"
#include "store-backend.h"
#include "timeutil.h"

static char dir[] = "/tmp/ai2in-store-XXXXXX";

static int setup(void **state) {
        struct store *s;
        struct error e = {0};

        snprintf(dir, sizeof(dir), "/tmp/ai2in-store-XXXXXX");
        if (!mkdtemp(dir) || (test_database && test_postgres_reset() < 0))
                return -1;
        if (store_open(test_database, dir, &s, &e) < 0) {
                fprintf(stderr, "store_open: %s\n", e.message);
                return -1;
        }
        *state = s;
        return 0;
}

static int teardown(void **state) {
        store_close(*state);
        rm_rf(dir);
        return 0;
}

static void add(struct store *s, const char *id, int64_t team, const char *meta, int64_t cap, int expect) {
        struct sandbox_rec r = {.team_id = team, .state = SANDBOX_CREATING, .created_at = now_ms(), .last_activity = now_ms(),
                                .idle_timeout = 60, .cpu_count = 1, .memory_mb = 256};
        struct error e = {0};

        snprintf(r.id, sizeof(r.id), "%s", id);
        snprintf(r.template_name, sizeof(r.template_name), "base");
        r.metadata = (char *) meta;
        assert_int_equal(store_sandbox_insert(s, &r, cap, &e), expect);
        if (expect == -EUSERS)
                assert_non_null(strstr(e.message, "cap is 2"));
}

static int count_cb(void *data, const struct sandbox_rec *r) {
        (*(int *) data)++;
        return 0;
}

struct page {
        char ids[8][32];
        unsigned n;
        int64_t last_seq;
};

static int page_cb(void *data, const struct sandbox_rec *r) {
        struct page *p = data;

        if (p->n < 8)
                snprintf(p->ids[p->n++], sizeof(p->ids[0]), "%s", r->id);
        p->last_seq = r->seq;
        return 0;
}

static void test_keys(void **state) {
        struct store *s = *state;
        unsigned char h[32], got[32];
        int64_t team, t2, found;
        struct error e = {0};

        memset(h, 7, sizeof(h));
        assert_int_equal(store_team_ensure(s, "acme", &team, &e), 0);
        assert_int_equal(store_team_ensure(s, "acme", &t2, &e), 0);
        assert_int_equal(team, t2);
        assert_int_equal(store_key_insert(s, "abcdefgh", h, team, &e), 0);
        assert_int_equal(store_key_lookup(s, "abcdefgh", got, &found, &e), 0);
        assert_memory_equal(h, got, 32);
        assert_int_equal(found, team);
        assert_int_equal(store_key_lookup(s, "zzzzzzzz", got, &found, &e), -ENOENT);
        assert_int_equal(store_key_revoke(s, "abcdefgh", &e), 0);
        assert_int_equal(store_key_lookup(s, "abcdefgh", got, &found, &e), -ENOENT);
}

static void test_cap_and_list(void **state) {
        struct store *s = *state;
        struct sandbox_rec r;
        struct error e = {0};
        const char *keys[] = {"user"}, *values[] = {"bob"};
        struct sandbox_filter f = {.team_id = 1, .state_mask = 1u << SANDBOX_CREATING};
        int n = 0;

        add(s, "sbx_a", 1, "{\"user\":\"alice\",\"n\":5}", 2, 0);
        add(s, "sbx_b", 1, "{\"user\":\"bob\",\"a\\\"b\":\"x\"}", 2, 0);
        add(s, "sbx_c", 1, "{}", 2, -EUSERS);
        add(s, "sbx_d", 2, "{}", 2, 0); /* another team has its own cap */

        assert_int_equal(store_sandbox_foreach(s, &f, count_cb, &n, &e), 0);
        assert_int_equal(n, 2);
        f.meta_keys = keys;
        f.meta_values = values;
        f.n_meta = 1;
        n = 0;
        assert_int_equal(store_sandbox_foreach(s, &f, count_cb, &n, &e), 0);
        assert_int_equal(n, 1);
        /* A key may hold any character; only a string value matches (5 is not "5"). */
        keys[0] = "a\"b";
        values[0] = "x";
        n = 0;
        assert_int_equal(store_sandbox_foreach(s, &f, count_cb, &n, &e), 0);
        assert_int_equal(n, 1);
        keys[0] = "n";
        values[0] = "5";
        n = 0;
        assert_int_equal(store_sandbox_foreach(s, &f, count_cb, &n, &e), 0);
        assert_int_equal(n, 0);

        /* Killing one frees a place under the cap. */
        assert_int_equal(store_sandbox_get(s, "sbx_a", &r, &e), 0);
        r.state = SANDBOX_KILLED;
        r.killed_at = 1;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        sandbox_rec_done(&r);
        add(s, "sbx_c", 1, "{}", 2, 0);

        /* Pagination: seq > after, in insertion order, limit at a time. */
        f = (struct sandbox_filter){.team_id = 1, .state_mask = 1u << SANDBOX_CREATING, .limit = 1};
        struct page pg = {0};
        assert_int_equal(store_sandbox_foreach(s, &f, page_cb, &pg, &e), 0);
        assert_int_equal(pg.n, 1);
        assert_string_equal(pg.ids[0], "sbx_b");
        f.after_seq = pg.last_seq;
        assert_int_equal(store_sandbox_foreach(s, &f, page_cb, &pg, &e), 0);
        assert_int_equal(pg.n, 2);
        assert_string_equal(pg.ids[1], "sbx_c");
        f.after_seq = pg.last_seq;
        assert_int_equal(store_sandbox_foreach(s, &f, page_cb, &pg, &e), 0);
        assert_int_equal(pg.n, 2);
        /* Every team, several states. */
        f = (struct sandbox_filter){.team_id = -1, .state_mask = 1u << SANDBOX_CREATING | 1u << SANDBOX_KILLED};
        pg = (struct page){0};
        assert_int_equal(store_sandbox_foreach(s, &f, page_cb, &pg, &e), 0);
        assert_int_equal(pg.n, 4);
        assert_string_equal(pg.ids[0], "sbx_a");
        assert_string_equal(pg.ids[3], "sbx_c");

        assert_int_equal(store_sandbox_purge(s, 2, &e), 0);
        assert_int_equal(store_sandbox_get(s, "sbx_a", &r, &e), -ENOENT);
}

static unsigned expired_at(struct store *s, int64_t now) {
        struct error e = {0};
        char **ids;
        unsigned n;

        assert_int_equal(store_sandbox_expired(s, "", now, &ids, &n, &e), 0);
        for (unsigned i = 0; i < n; i++) {
                assert_string_equal(ids[i], "sbx_b");
                free(ids[i]);
        }
        free(ids);
        return n;
}

static void test_expired(void **state) {
        struct store *s = *state;
        struct sandbox_rec r;
        struct error e = {0};
        int64_t now = now_ms();

        assert_int_equal(store_sandbox_get(s, "sbx_b", &r, &e), 0);
        r.state = SANDBOX_RUNNING;
        r.last_activity = now;
        /* Without a deadline: idle for longer than idle_timeout (60 s). */
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        assert_int_equal(expired_at(s, now + 59000), 0);
        assert_int_equal(expired_at(s, now + 61000), 1);
        /* A deadline replaces the idle limit: later than it, the sandbox outlives it... */
        r.deadline = now + 100000;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        assert_int_equal(expired_at(s, now), 0);
        assert_int_equal(expired_at(s, now + 61000), 0);
        assert_int_equal(expired_at(s, now + 100000), 1);
        /* ...and earlier than it, the sandbox ends at the deadline. */
        r.deadline = now + 10000;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        assert_int_equal(expired_at(s, now + 9000), 0);
        assert_int_equal(expired_at(s, now + 10000), 1);
        /* A paused sandbox is never expired. */
        r.state = SANDBOX_PAUSED;
        r.deadline = 0;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        assert_int_equal(expired_at(s, now + 10000000), 0);
        sandbox_rec_done(&r);
}

static void test_mask(void **state) {
        char out[256];

        store_database_mask("postgresql://ai2in:s3cret@db.example:5432/ai2in?sslmode=verify-full", out, sizeof(out));
        assert_string_equal(out, "postgresql://ai2in:***@db.example:5432/ai2in?sslmode=verify-full");
        store_database_mask("postgres://u:p%40ss@h/d?password=two&sslmode=require", out, sizeof(out));
        assert_string_equal(out, "postgres://u:***@h/d?password=***&sslmode=require");
        store_database_mask("postgresql://u@h/d", out, sizeof(out));
        assert_string_equal(out, "postgresql://u@h/d");
        store_database_mask("postgresql:///ai2in?host=/tmp/x", out, sizeof(out));
        assert_string_equal(out, "postgresql:///ai2in?host=/tmp/x");
        store_database_mask("postgresql://u:secret@h/d", out, 12); /* truncated, never a partial password */
        assert_null(strstr(out, "sec"));
}

static void test_open_refuses(void **state) {
        struct store *s = NULL;
        struct error e = {0};

        assert_true(store_database_is_postgres("postgres://h/d"));
        assert_true(store_database_is_postgres("postgresql://h/d"));
        assert_false(store_database_is_postgres("mysql://h/d"));
        assert_int_equal(store_open("mysql://u:hunter2@h/d", "/nonexistent", &s, &e), -EINVAL);
        assert_int_equal(e.status, 400);
        assert_null(strstr(e.message, "hunter2"));
        assert_non_null(strstr(e.message, "u:***@h/d"));
        /* Unreachable: 503, the URL shown without its password. */
        error_clear(&e);
        assert_true(store_open("postgresql://u:hunter2@localhost/d?host=/nonexistent-ai2in&connect_timeout=2", "/nonexistent", &s, &e) < 0);
        assert_int_equal(e.status, 503);
        assert_non_null(strstr(e.message, "the database is unreachable"));
        assert_null(strstr(e.message, "hunter2"));
        assert_null(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keys),
                cmocka_unit_test(test_cap_and_list),
                cmocka_unit_test(test_expired),
        };
        const struct CMUnitTest plain[] = {
                cmocka_unit_test(test_mask),
                cmocka_unit_test(test_open_refuses),
        };
        int failed = cmocka_run_group_tests_name("store open", plain, NULL, NULL);

        failed += cmocka_run_group_tests_name("store on sqlite", tests, setup, teardown);
        test_database = test_postgres_url();
        if (test_database)
                failed += cmocka_run_group_tests_name("store on postgres", tests, setup, teardown);
        else
                test_postgres_skipped("test_store");
        return failed;
}
