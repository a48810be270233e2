/* test_userns.c — the owner uid of a sandbox's user namespace, and (as root) a namespace made
 * by userns_make: owned by that uid, with the id maps and the per-user inotify limits asked
 * for, and gone with its holder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/idmap.h"
#include "sandbox/userns.h"

static void test_owner(void **state) {
        uint32_t owner = 0;

        assert_int_equal(userns_owner(2000000000, "10.77.1.5", &owner), 0);
        assert_int_equal(owner, 2000000000u + (77u << 16) + (1u << 8) + 5u);
        assert_int_equal(userns_owner(2000000000, "10.78.1.5", &owner), 0);
        assert_int_not_equal(owner, 2000000000u + (77u << 16) + (1u << 8) + 5u); /* another pool, another uid */
        assert_int_equal(userns_owner(2000000000, "not an address", &owner), -EINVAL);
        assert_int_equal(userns_owner(2000000000, NULL, &owner), -EINVAL);
}

/* Reads one number from path as seen from inside the namespace at ns_path (a child joins it). */
static long long read_inside(const char *ns_path, const char *path) {
        int p[2], status;
        char buf[32] = "";
        pid_t pid;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        if (pid == 0) {
                int fd = open(ns_path, O_RDONLY), in;
                ssize_t k;
                if (fd < 0 || setns(fd, CLONE_NEWUSER) < 0 || (in = open(path, O_RDONLY)) < 0)
                        _exit(1);
                k = read(in, buf, sizeof(buf) - 1);
                _exit(k > 0 && write(p[1], buf, (size_t) k) == k ? 0 : 1);
        }
        close(p[1]);
        assert_true(read(p[0], buf, sizeof(buf) - 1) > 0);
        close(p[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return strtoll(buf, NULL, 10);
}

static void test_make(void **state) {
        struct userns_spec spec = {.owner = 2012345678, .uid_base = 1000000, .uid_count = 65536, .inotify_instances = 17,
                                   .inotify_watches = 1234};
        struct userns u;
        struct error e = {0};
        char path[64], map[128] = "";
        uid_t owner = 0;
        int fd;
        FILE *f;

        if (geteuid() != 0)
                skip();
        assert_int_equal(userns_make(&spec, &u, &e), 0);
        assert_true(u.pid > 0);
        fd = open(u.path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(ioctl(fd, NS_GET_OWNER_UID, &owner), 0);
        assert_int_equal(owner, 2012345678);
        close(fd);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int) u.pid);
        f = fopen(path, "re");
        assert_non_null(f);
        assert_non_null(fgets(map, sizeof(map), f));
        fclose(f);
        assert_non_null(strstr(map, "1000000"));
        assert_non_null(strstr(map, "65536"));
        assert_int_equal(read_inside(u.path, "/proc/sys/user/max_inotify_instances"), 17);
        assert_int_equal(read_inside(u.path, "/proc/sys/user/max_inotify_watches"), 1234);
        pid_t pid = u.pid;
        userns_release(&u);
        assert_int_equal(u.pid, 0);
        assert_int_equal(kill(pid, 0), -1); /* reaped */
        userns_release(&u); /* twice is fine */
}

/* A sandbox's range: base + k * count, k the address's low 24 bits folded into nranges. */
static void test_range(void **state) {
        uint32_t a = 0, b = 0;

        assert_int_equal(idmap_range(2147483648LL, 65536, 32767, "10.77.0.5", &a), 0);
        assert_int_equal(a, 2147483648u + ((77u << 16) + 5u) % 32767u * 65536u);
        assert_int_equal(idmap_range(2147483648LL, 65536, 32767, "10.80.0.5", &b), 0);
        assert_int_not_equal(a, b); /* the same host part in another pool */
        for (unsigned i = 1; i < 255; i++) { /* every address of a /24 a range of its own */
                char ip[32];
                snprintf(ip, sizeof(ip), "10.77.3.%u", i);
                assert_int_equal(idmap_range(2147483648LL, 65536, 32767, ip, &b), 0);
                assert_true(b >= 2147483648u && b <= 2147483648u + 32766u * 65536u);
                assert_true(i == 1 || b != a);
                a = b;
        }
        assert_int_equal(idmap_range(2147483648LL, 65536, 32767, "nope", &a), -EINVAL);
        assert_int_equal(idmap_range(2147483648LL, 65536, 0, "10.77.0.5", &a), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_owner), cmocka_unit_test(test_make), cmocka_unit_test(test_range)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
