/* test_store_nodes.c — the nodes of the store (store.h), against each backend (SQLite, and
 * PostgreSQL when one is given: store-backend.h): registration keeps an operator's state,
 * leases renew with the running count, cordon and uncordon, rows without an owner are claimed
 * (by the one engine of a SQLite file; by the first node only on a shared PostgreSQL), the
 * sandboxes of a node whose lease lapsed are marked lost (its running ones only, never the
 * caller's), and the reaper's and reconcile's queries see one node's sandboxes only. */
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
#include "store-backend.h"
#include "store/store.h"
#include "timeutil.h"

static char dir[] = "/tmp/ai2in-nodes-XXXXXX";

static int setup(void **state) {
        struct store *s;
        struct error e = {0};

        snprintf(dir, sizeof(dir), "/tmp/ai2in-nodes-XXXXXX");
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

static void node_init(struct node_rec *n, const char *name, int64_t lease_until) {
        *n = (struct node_rec){.started_at = now_ms(), .heartbeat_at = now_ms(), .lease_until = lease_until, .memory_mb = 4096, .cpus = 2};
        snprintf(n->name, sizeof(n->name), "%s", name);
        snprintf(n->advertise, sizeof(n->advertise), "http://%s:7300", name);
}

/* Inserts sandbox id of team 1 owned by node, then moves it to state. */
static void add(struct store *s, const char *id, const char *node, enum sandbox_state state) {
        struct sandbox_rec r = {.team_id = 1, .state = SANDBOX_CREATING, .created_at = now_ms(), .last_activity = now_ms(),
                                .idle_timeout = 60, .cpu_count = 1, .memory_mb = 256, .template_name = "base"};
        struct error e = {0};

        snprintf(r.id, sizeof(r.id), "%s", id);
        snprintf(r.node, sizeof(r.node), "%s", node);
        snprintf(r.ip, sizeof(r.ip), "10.0.0.9");
        assert_int_equal(store_sandbox_insert(s, &r, 100, &e), 0);
        r.state = state;
        r.pause_kind = state == SANDBOX_PAUSED ? PAUSE_FILESYSTEM : PAUSE_NONE;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
}

static struct sandbox_rec get(struct store *s, const char *id) {
        struct sandbox_rec r;
        struct error e = {0};

        assert_int_equal(store_sandbox_get(s, id, &r, &e), 0);
        sandbox_rec_done(&r);
        return r;
}

static void test_register_renew_cordon(void **state) {
        struct store *s = *state;
        struct node_rec n, got;
        struct error e = {0};
        int64_t now = now_ms(), adopted = -1;

        node_init(&n, "node-a.example", now + 15000);
        assert_int_equal(store_node_register(s, &n, &adopted, &e), 0);
        assert_int_equal(adopted, 0);
        assert_int_equal(store_node_get(s, "node-a.example", &got, &e), 0);
        assert_string_equal(got.advertise, "http://node-a.example:7300");
        assert_int_equal(got.state, NODE_ACTIVE);
        assert_int_equal(got.lease_until, now + 15000);
        assert_int_equal(got.memory_mb, 4096);
        assert_int_equal(got.cpus, 2);
        assert_int_equal(store_node_get(s, "nobody", &got, &e), -ENOENT);

        /* Renewal: a new lease, and the count of its running sandboxes (not paused ones, not
         * another node's). */
        add(s, "sbx_run1", "node-a.example", SANDBOX_RUNNING);
        add(s, "sbx_run2", "node-a.example", SANDBOX_RUNNING);
        add(s, "sbx_pau", "node-a.example", SANDBOX_PAUSED);
        add(s, "sbx_oth", "node-b", SANDBOX_RUNNING);
        assert_int_equal(store_node_renew(s, "node-a.example", now + 1000, now + 16000, &e), 0);
        assert_int_equal(store_node_get(s, "node-a.example", &got, &e), 0);
        assert_int_equal(got.heartbeat_at, now + 1000);
        assert_int_equal(got.lease_until, now + 16000);
        assert_int_equal(got.running, 2);
        assert_int_equal(store_node_renew(s, "nobody", now, now, &e), -ENOENT);

        /* An operator's cordon survives the node's next registration (a restart). */
        assert_int_equal(store_node_set_state(s, "node-a.example", NODE_CORDONED, &e), 0);
        n.advertise[0] = 0;
        snprintf(n.advertise, sizeof(n.advertise), "https://a.example");
        assert_int_equal(store_node_register(s, &n, NULL, &e), 0);
        assert_int_equal(store_node_get(s, "node-a.example", &got, &e), 0);
        assert_int_equal(got.state, NODE_CORDONED);
        assert_string_equal(got.advertise, "https://a.example");
        assert_int_equal(store_node_set_state(s, "node-a.example", NODE_ACTIVE, &e), 0);
        assert_int_equal(store_node_get(s, "node-a.example", &got, &e), 0);
        assert_int_equal(got.state, NODE_ACTIVE);
        assert_int_equal(store_node_set_state(s, "nobody", NODE_CORDONED, &e), -ENOENT);
}

static int count_nodes(void *data, const struct node_rec *n) {
        (*(int *) data)++;
        return 0;
}

/* Rows from before nodes (node '') go to the first node that registers, on both backends. */
static void test_adopt_legacy_rows(void **state) {
        struct store *s = *state;
        struct node_rec n;
        struct error e = {0};
        int64_t adopted = -1;
        int nodes = 0;

        add(s, "sbx_old1", "", SANDBOX_RUNNING);
        add(s, "sbx_old2", "", SANDBOX_PAUSED);
        node_init(&n, "first", now_ms() + 15000);
        assert_int_equal(store_node_register(s, &n, &adopted, &e), 0);
        assert_int_equal(adopted, 2);
        assert_string_equal(get(s, "sbx_old1").node, "first");
        assert_string_equal(get(s, "sbx_old2").node, "first");

        /* A second registration: nothing more to claim. */
        assert_int_equal(store_node_register(s, &n, &adopted, &e), 0);
        assert_int_equal(adopted, 0);

        /* A second node. */
        add(s, "sbx_late", "", SANDBOX_RUNNING);
        node_init(&n, "second", now_ms() + 15000);
        assert_int_equal(store_node_register(s, &n, &adopted, &e), 0);
        assert_int_equal(store_node_foreach(s, count_nodes, &nodes, &e), 0);
        if (test_database) {
                /* Shared: the second node never takes rows, not even ones without an owner. */
                assert_int_equal(adopted, 0);
                assert_string_equal(get(s, "sbx_old1").node, "first");
                assert_string_equal(get(s, "sbx_late").node, "");
                assert_int_equal(nodes, 2);
        } else {
                /* One engine's own file: a renamed host keeps every sandbox. */
                assert_int_equal(adopted, 3);
                assert_string_equal(get(s, "sbx_old1").node, "second");
                assert_string_equal(get(s, "sbx_late").node, "second");
                assert_int_equal(nodes, 1);
        }
}

static void test_mark_lost(void **state) {
        struct store *s = *state;
        struct node_rec n;
        struct sandbox_rec r;
        struct error e = {0};
        int64_t now = now_ms(), changed = -1;

        /* gone's lease lapsed a second ago; "self" has no row (it need not, to look). */
        node_init(&n, "gone", now - 1000);
        assert_int_equal(store_node_register(s, &n, NULL, &e), 0);
        add(s, "sbx_run", "gone", SANDBOX_RUNNING);
        add(s, "sbx_pau", "gone", SANDBOX_PAUSED);
        add(s, "sbx_mine", "self", SANDBOX_RUNNING);

        assert_int_equal(store_nodes_mark_lost(s, "self", now, &changed, &e), 0);
        assert_int_equal(changed, 1);
        r = get(s, "sbx_run");
        assert_int_equal(r.state, SANDBOX_ERROR);
        assert_string_equal(r.error, "node gone lost");
        assert_string_equal(r.ip, "10.0.0.9"); /* kept: the node re-adopts it at that address */
        assert_int_equal(get(s, "sbx_pau").state, SANDBOX_PAUSED);
        assert_int_equal(get(s, "sbx_mine").state, SANDBOX_RUNNING);
        /* Again: nothing more. */
        assert_int_equal(store_nodes_mark_lost(s, "self", now, &changed, &e), 0);
        assert_int_equal(changed, 0);

        /* Never the caller's own, even when its own lease lapsed (it is alive: it asks). */
        add(s, "sbx_run2", "gone", SANDBOX_RUNNING);
        assert_int_equal(store_nodes_mark_lost(s, "gone", now, &changed, &e), 0);
        assert_int_equal(changed, 0);
        /* A node that renewed is not lost. */
        assert_int_equal(store_node_renew(s, "gone", now, now + 15000, &e), 0);
        assert_int_equal(store_nodes_mark_lost(s, "self", now, &changed, &e), 0);
        assert_int_equal(changed, 0);
        assert_int_equal(get(s, "sbx_run2").state, SANDBOX_RUNNING);
}

/* Placement's figure round-trips; drain moves a paused (files) sandbox only, from its owner. */
static void test_capacity_and_move(void **state) {
        struct store *s = *state;
        struct node_rec n;
        struct sandbox_rec r;
        struct error e = {0};

        node_init(&n, "a", now_ms() + 15000);
        n.capacity = 7;
        assert_int_equal(store_node_register(s, &n, NULL, &e), 0);
        assert_int_equal(store_node_get(s, "a", &n, &e), 0);
        assert_int_equal(n.capacity, 7);

        add(s, "sbx_files", "a", SANDBOX_PAUSED); /* a pause that kept files only */
        r = (struct sandbox_rec){.team_id = 1, .state = SANDBOX_CREATING, .created_at = now_ms(), .last_activity = now_ms(),
                                 .idle_timeout = 60, .cpu_count = 1, .memory_mb = 256, .template_name = "base", .id = "sbx_memory",
                                 .node = "a"};
        assert_int_equal(store_sandbox_insert(s, &r, 100, &e), 0);
        r.state = SANDBOX_PAUSED;
        r.pause_kind = PAUSE_MEMORY;
        assert_int_equal(store_sandbox_update(s, &r, &e), 0);
        add(s, "sbx_running", "a", SANDBOX_RUNNING);

        assert_int_equal(store_sandbox_move(s, "sbx_files", "b", "c", &e), -ESTALE); /* not b's */
        assert_int_equal(store_sandbox_move(s, "sbx_files", "a", "b", &e), 0);
        assert_string_equal(get(s, "sbx_files").node, "b");
        assert_int_equal(store_sandbox_move(s, "sbx_files", "a", "c", &e), -ESTALE); /* moved already */
        assert_int_equal(store_sandbox_move(s, "sbx_memory", "a", "b", &e), -ESTALE);
        assert_int_equal(store_sandbox_move(s, "sbx_running", "a", "b", &e), -ESTALE);
        assert_string_equal(get(s, "sbx_running").node, "a");
}

static int collect_ids(void *data, const struct sandbox_rec *r) {
        char *out = data;

        strcat(out, r->id);
        strcat(out, " ");
        return 0;
}

/* Reconcile lists and the reaper's expiry see one node's sandboxes only. */
static void test_per_node_queries(void **state) {
        struct store *s = *state;
        struct sandbox_filter f = {.team_id = -1, .state_mask = 1u << SANDBOX_RUNNING, .node = "a"};
        struct error e = {0};
        char ids[256] = "", **expired;
        unsigned n;

        add(s, "sbx_a1", "a", SANDBOX_RUNNING);
        add(s, "sbx_b1", "b", SANDBOX_RUNNING);
        add(s, "sbx_a2", "a", SANDBOX_RUNNING);
        assert_int_equal(store_sandbox_foreach(s, &f, collect_ids, ids, &e), 0);
        assert_string_equal(ids, "sbx_a1 sbx_a2 ");
        f.node = NULL; /* listing: every node's */
        ids[0] = 0;
        assert_int_equal(store_sandbox_foreach(s, &f, collect_ids, ids, &e), 0);
        assert_string_equal(ids, "sbx_a1 sbx_b1 sbx_a2 ");

        assert_int_equal(store_sandbox_expired(s, "b", now_ms() + 3600 * 1000, &expired, &n, &e), 0);
        assert_int_equal(n, 1);
        assert_string_equal(expired[0], "sbx_b1");
        free(expired[0]);
        free(expired);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_register_renew_cordon, setup, teardown),
                cmocka_unit_test_setup_teardown(test_adopt_legacy_rows, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mark_lost, setup, teardown),
                cmocka_unit_test_setup_teardown(test_per_node_queries, setup, teardown),
                cmocka_unit_test_setup_teardown(test_capacity_and_move, setup, teardown),
        };
        int failed = cmocka_run_group_tests_name("nodes on sqlite", tests, NULL, NULL);

        test_database = test_postgres_url();
        if (test_database)
                failed += cmocka_run_group_tests_name("nodes on postgres", tests, NULL, NULL);
        else
                test_postgres_skipped("test_store_nodes");
        return failed;
}
