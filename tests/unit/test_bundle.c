/* test_bundle.c — what config.json lets a sandbox do with the host's shared tables: the user
 * namespace is joined (made by the engine, owned by a uid of the sandbox's own), no network
 * namespace is named (the runtime runs in the sandbox's), devpts has the sandbox's PTY cap,
 * legacy AIO is denied, keyrings are denied, and no rlimit is set through the runtime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "sandbox/bundle.h"

static json_t *write_and_load(const struct bundle_spec *spec) {
        char path[4200];
        json_t *cfg;

        assert_int_equal(bundle_write(spec, NULL), 0);
        snprintf(path, sizeof(path), "%s/config.json", spec->bundle_dir);
        cfg = json_load_file(path, 0, NULL);
        assert_non_null(cfg);
        return cfg;
}

/* The rule of seccomp's syscall list that names call, or NULL. */
static json_t *seccomp_rule(json_t *cfg, const char *call) {
        json_t *rules = json_object_get(json_object_get(json_object_get(cfg, "linux"), "seccomp"), "syscalls"), *rule, *name;
        size_t i, j;

        json_array_foreach(rules, i, rule) {
                json_array_foreach(json_object_get(rule, "names"), j, name) {
                        if (strcmp(json_string_value(name), call) == 0)
                                return rule;
                }
        }
        return NULL;
}

static void test_shared_tables(void **state) {
        char dir[] = "/tmp/ai2in-bundle-XXXXXX";
        struct bundle_spec spec = {
                .id = "sbx_test", .bundle_dir = mkdtemp(dir), .rootfs = "/rootfs", .agent = "/agent",
                .userns_path = "/proc/4242/ns/user", .sysfs = "/sysfs", .cgroup_path = "/ai2in/sbx_test", .uid_base = 1000000,
                .uid_count = 65536, .memory_mb = 512, .pids = 1024, .ptys = 7, .cpu_count = 1,
        };
        json_t *cfg, *ns, *m, *opt;
        bool user = false, pts_max = false;
        size_t i, j;

        assert_non_null(spec.bundle_dir);
        cfg = write_and_load(&spec);
        json_array_foreach(json_object_get(json_object_get(cfg, "linux"), "namespaces"), i, ns) {
                const char *type = json_string_value(json_object_get(ns, "type"));
                assert_string_not_equal(type, "network");
                if (strcmp(type, "user") == 0) {
                        assert_string_equal(json_string_value(json_object_get(ns, "path")), "/proc/4242/ns/user");
                        user = true;
                }
        }
        assert_true(user);
        json_array_foreach(json_object_get(cfg, "mounts"), i, m) {
                if (strcmp(json_string_value(json_object_get(m, "destination")), "/dev/pts") != 0)
                        continue;
                json_array_foreach(json_object_get(m, "options"), j, opt) {
                        pts_max |= strcmp(json_string_value(opt), "max=7") == 0;
                        assert_string_not_equal(json_string_value(opt), "reserve");
                }
        }
        assert_true(pts_max);
        assert_null(json_object_get(json_object_get(cfg, "process"), "rlimits"));
        assert_int_equal(json_integer_value(json_object_get(seccomp_rule(cfg, "io_setup"), "errnoRet")), ENOSYS);
        assert_int_equal(json_integer_value(json_object_get(seccomp_rule(cfg, "io_submit"), "errnoRet")), ENOSYS);
        assert_int_equal(json_integer_value(json_object_get(seccomp_rule(cfg, "add_key"), "errnoRet")), EPERM);
        assert_int_equal(json_integer_value(json_object_get(seccomp_rule(cfg, "keyctl"), "errnoRet")), EPERM);
        json_decref(cfg);
        assert_int_equal(rm_rf(dir), 0);
}

/* The spec of a runtime that is a kernel of its own (runsc: runtime.h's flags): the user
 * namespace is made by the runtime with the id maps, the network namespace is named, /sys is
 * not bound, the agent listens in its socket directory, and the open-file limit is set. */
static void test_own_kernel(void **state) {
        char dir[] = "/tmp/ai2in-bundle-XXXXXX";
        struct bundle_spec spec = {
                .id = "sbx_test", .bundle_dir = mkdtemp(dir), .rootfs = "/rootfs", .agent = "/agent",
                .cgroup_path = "/ai2in/sbx_test", .uid_base = 1000000, .uid_count = 65536, .memory_mb = 512, .pids = 1024,
                .ptys = 7, .cpu_count = 1, .socket_dir = "/run/ai2in/sandboxes/sbx_test", .netns_path = "/run/ai2in/netns/sbx_test",
                .open_files = 4096,
        };
        json_t *cfg, *ns, *m, *rl, *args;
        bool user = false, net = false, sockdir = false;
        size_t i;

        assert_non_null(spec.bundle_dir);
        cfg = write_and_load(&spec);
        json_array_foreach(json_object_get(json_object_get(cfg, "linux"), "namespaces"), i, ns) {
                const char *type = json_string_value(json_object_get(ns, "type"));
                if (strcmp(type, "user") == 0) {
                        assert_null(json_object_get(ns, "path"));
                        user = true;
                } else if (strcmp(type, "network") == 0) {
                        assert_string_equal(json_string_value(json_object_get(ns, "path")), "/run/ai2in/netns/sbx_test");
                        net = true;
                }
        }
        assert_true(user && net);
        json_array_foreach(json_object_get(cfg, "mounts"), i, m) {
                const char *dest = json_string_value(json_object_get(m, "destination"));
                assert_string_not_equal(dest, "/sys");
                if (strcmp(dest, AGENT_SOCKET_DIR_INSIDE) == 0) {
                        assert_string_equal(json_string_value(json_object_get(m, "source")), "/run/ai2in/sandboxes/sbx_test");
                        sockdir = true;
                }
        }
        assert_true(sockdir);
        args = json_object_get(json_object_get(cfg, "process"), "args");
        assert_string_equal(json_string_value(json_array_get(args, 1)), "--listen");
        assert_string_equal(json_string_value(json_array_get(args, 2)), "unix:" AGENT_SOCKET_DIR_INSIDE "/agent.sock");
        rl = json_array_get(json_object_get(json_object_get(cfg, "process"), "rlimits"), 0);
        assert_string_equal(json_string_value(json_object_get(rl, "type")), "RLIMIT_NOFILE");
        assert_int_equal(json_integer_value(json_object_get(rl, "hard")), 4096);
        assert_int_equal(json_integer_value(json_object_get(rl, "soft")), 4096);
        json_decref(cfg);
        assert_int_equal(rm_rf(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_shared_tables), cmocka_unit_test(test_own_kernel)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
