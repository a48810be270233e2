/* test_json.c — the JSON form of a sandbox, end_at and end_reason, as every route returns them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "api/api.h"
#include "sandbox/sandbox.h"

static struct sandbox_rec rec(void) {
        struct sandbox_rec r = {.team_id = 1, .state = SANDBOX_RUNNING, .created_at = 1000, .started_at = 2000,
                                .idle_timeout = 1800, .last_activity = 10000, .cpu_count = 1, .memory_mb = 512};
        strcpy(r.id, "sbx_0123456789abcdefghij");
        strcpy(r.template_name, "base");
        r.metadata = (char *) "{\"user\":\"alice\"}";
        r.envs = (char *) "{\"SECRET\":\"x\"}";
        return r;
}

static void test_end_at(void **state) {
        struct sandbox_rec r = rec();

        assert_int_equal(sandbox_end_at(&r), 10000 + 1800 * 1000); /* idle limit */
        assert_string_equal(sandbox_end_reason(&r), "idle");
        r.last_activity = 20000;
        assert_int_equal(sandbox_end_at(&r), 20000 + 1800 * 1000); /* moved by activity */
        /* A hard deadline replaces the idle limit, earlier or later than it. */
        r.deadline = 50000;
        assert_int_equal(sandbox_end_at(&r), 50000);
        assert_string_equal(sandbox_end_reason(&r), "timeout");
        r.deadline = 20000 + 3600 * 1000;
        assert_int_equal(sandbox_end_at(&r), 20000 + 3600 * 1000);
        r.last_activity = 30000;
        assert_int_equal(sandbox_end_at(&r), 20000 + 3600 * 1000); /* not moved by activity */
        assert_string_equal(sandbox_end_reason(&r), "timeout");
        r.state = SANDBOX_CREATING;
        assert_string_equal(sandbox_end_reason(&r), "timeout");
        /* Paused sandboxes never end by themselves; nor do killed or broken ones. */
        for (enum sandbox_state st = 0; st < _SANDBOX_STATE_MAX; st++) {
                if (st == SANDBOX_RUNNING || st == SANDBOX_CREATING)
                        continue;
                r.state = st;
                assert_int_equal(sandbox_end_at(&r), 0);
                assert_null(sandbox_end_reason(&r));
        }
}

static void test_sandbox_json(void **state) {
        struct sandbox_rec r = rec();
        json_t *j;

        r.timeout = 300;
        r.deadline = 1795741323456LL;
        j = sandbox_to_json(NULL, &r);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "id")), "sbx_0123456789abcdefghij");
        assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
        assert_int_equal(json_integer_value(json_object_get(j, "timeout")), 300);
        assert_string_equal(json_string_value(json_object_get(j, "deadline")), "2026-11-27T01:02:03.456Z");
        assert_string_equal(json_string_value(json_object_get(j, "end_at")), "2026-11-27T01:02:03.456Z");
        assert_string_equal(json_string_value(json_object_get(j, "end_reason")), "timeout");
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "metadata"), "user")), "alice");
        assert_null(json_object_get(j, "envs")); /* envs may hold secrets: never echoed */
        assert_true(json_is_null(json_object_get(j, "error")));
        /* A sandbox made on a template from before versions: present, null. */
        assert_non_null(json_object_get(j, "template_version"));
        assert_true(json_is_null(json_object_get(j, "template_version")));
        json_decref(j);

        strcpy(r.template_version, "20261207T175002Z-k3f9q");
        j = sandbox_to_json(NULL, &r);
        assert_string_equal(json_string_value(json_object_get(j, "template_version")), "20261207T175002Z-k3f9q");
        json_decref(j);
        r.template_version[0] = 0;

        r.deadline = 0;
        j = sandbox_to_json(NULL, &r);
        assert_string_equal(json_string_value(json_object_get(j, "end_at")), "1970-01-01T00:30:10.000Z");
        assert_string_equal(json_string_value(json_object_get(j, "end_reason")), "idle");
        json_decref(j);

        r.timeout = 0;
        r.deadline = 0;
        r.state = SANDBOX_ERROR;
        strcpy(r.error, "its container stopped");
        j = sandbox_to_json(NULL, &r);
        assert_true(json_is_null(json_object_get(j, "timeout")));
        assert_true(json_is_null(json_object_get(j, "end_at")));
        assert_true(json_is_null(json_object_get(j, "end_reason"))); /* present, null */
        assert_string_equal(json_string_value(json_object_get(j, "error")), "its container stopped");
        json_decref(j);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_end_at), cmocka_unit_test(test_sandbox_json)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
