/* test_agent_checkpoint.c — what the agent reports as keeping a gVisor checkpoint from being
 * taken (agent/checkpoint.c): /proc/net/tcp lines in every state, loopback and outside, torn
 * and garbage lines; /proc/net/unix lines with and without paths, on a tmpfs (not listed) and
 * on a disk (listed once), the agent's own socket, and the cap on the list.
 *
 * The agent is a separate static program, so its sources are compiled in here directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../agent/checkpoint.c"
#include "../../agent/http.c"
#include "../../agent/utf8.c"

#define TCP_HEAD "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

static json_t *tcp(const char *text) {
        json_t *list = json_array();

        checkpoint_tcp_blockers(text, list);
        return list;
}

static void test_tcp(void **state) {
        /* 10.78.181.2:8001 <-> 10.78.181.1:48652 established; listeners; loopback pairs; a
         * connection from outside to a loopback-bound port is still one from outside. */
        json_t *l = tcp(TCP_HEAD
                        " 527: 00000000:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 528 1\n"
                        " 519: 0100007F:A6E7 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 520 1\n"
                        " 528: 02B54E0A:1F41 01B54E0A:BE0C 01 00000000:00000000 00:00000000 00000000     0        0 529 1\n"
                        " 529: 0100007F:2328 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 530 1\n"
                        " 530: 02B54E0A:1F41 01B54E0A:BE0D 06 00000000:00000000 00:00000000 00000000     0        0 531 1\n"
                        " 531: 02B54E0A:1F41 01B54E0A:BE0E 08 00000000:00000000 00:00000000 00000000     0        0 532 1\n"
                        " 532: 02B54E0A:1F41 01B54E0A:BE0F 07 00000000:00000000 00:00000000 00000000     0        0 533 1\n");

        assert_int_equal(json_array_size(l), 3);
        assert_string_equal(json_string_value(json_array_get(l, 0)), "tcp 10.78.181.2:8001 - 10.78.181.1:48652 (established)");
        assert_string_equal(json_string_value(json_array_get(l, 1)), "tcp 10.78.181.2:8001 - 10.78.181.1:48653 (time-wait)");
        assert_string_equal(json_string_value(json_array_get(l, 2)), "tcp 10.78.181.2:8001 - 10.78.181.1:48654 (close-wait)");
        json_decref(l);
}

static void test_tcp_garbage(void **state) {
        static const char *const bad[] = {"", "\n\n", TCP_HEAD, " 1: 0100007F", " 1: zz:1 yy:2 01", "no numbers at all\n",
                                          " 1: 02B54E0A:1F41 01B54E0A:BE0C", " 1: 02B54E0A:1F41 01B54E0A:BE0C 0A"};

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_t *l = tcp(bad[i]);

                assert_int_equal(json_array_size(l), 0);
                json_decref(l);
        }
        /* An unknown state is still a connection, named "?". */
        json_t *l = tcp(" 1: 02B54E0A:1F41 01B54E0A:BE0C 3F 0 0\n");
        assert_string_equal(json_string_value(json_array_get(l, 0)), "tcp 10.78.181.2:8001 - 10.78.181.1:48652 (?)");
        json_decref(l);
}

static void test_tcp_cap(void **state) {
        char text[64 * 100] = "";
        size_t n = 0;

        for (int i = 0; i < 50; i++)
                n += (size_t) snprintf(text + n, sizeof(text) - n, " %d: 02B54E0A:1F41 01B54E0A:%04X 01 0\n", i, 1000 + i);
        json_t *l = tcp(text);
        assert_int_equal(json_array_size(l), CHECKPOINT_BLOCKERS_MAX);
        json_decref(l);
}

static void test_unix(void **state) {
        char dir[] = "/var/tmp/ai2in-ckpt-XXXXXX", text[4096], sock[256];
        json_t *l = json_array();

        /* /var/tmp is on a disk here (not a tmpfs); /dev/shm is a tmpfs. */
        assert_non_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/app.sock", dir);
        FILE *f = fopen(sock, "w");
        assert_non_null(f);
        fclose(f);
        snprintf(text, sizeof(text),
                 "Num       RefCount Protocol Flags    Type St Inode Path\n"
                 "0000000000000000: 00000001 00000000 00000000 0001 03      511\n"
                 "0000000000000000: 00000001 00000000 00010000 0001 01      513 %s\n"
                 "0000000000000000: 00000001 00000000 00000000 0001 03      514 %s\n"
                 "0000000000000000: 00000002 00000000 00010000 0001 01        1 /.ai2in/run/agent.sock\n"
                 "0000000000000000: 00000001 00000000 00010000 0001 01      524 /dev/shm\n"
                 "0000000000000000: 00000001 00000000 00010000 0001 01      525 @abstract\n"
                 "0000000000000000: 00000001 00000000 00010000 0001 01      526 /no/such/path\n"
                 "torn line\n",
                 sock, sock);
        checkpoint_unix_blockers(text, l);
        assert_int_equal(json_array_size(l), 1);
        char want[300];
        snprintf(want, sizeof(want), "unix socket %s (on the disk)", sock);
        assert_string_equal(json_string_value(json_array_get(l, 0)), want);
        json_decref(l);
        unlink(sock);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tcp),
                cmocka_unit_test(test_tcp_garbage),
                cmocka_unit_test(test_tcp_cap),
                cmocka_unit_test(test_unix),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
