/* test_ring.c — the agent's output ring (agent/ring.c): wraparound, growth, the count of
 * dropped bytes each reader sees, segments of stdout/stderr, and a randomized comparison
 * with a model that keeps every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/ring.c"

/* Reads one event for the reader at *cursor into out. */
static size_t rd(struct ring *r, uint64_t *cursor, uint64_t *dropped, uint8_t *kind, char *out, size_t max) {
        size_t n = ring_read(r, cursor, dropped, kind, out, max);
        out[n] = 0;
        return n;
}

static void test_basic_and_segments(void **state) {
        struct ring r;
        uint64_t cur = 0, dropped;
        uint8_t kind;
        char out[64];

        ring_init(&r, 1024, 16);
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 0);
        ring_append(&r, 1, "hello ", 6);
        ring_append(&r, 1, "world", 5);
        ring_append(&r, 2, "oops", 4);
        ring_append(&r, 1, "!", 1);
        assert_int_equal(ring_head(&r), 16);
        assert_int_equal(ring_tail(&r), 0);

        /* Consecutive appends of one stream come back as one read; a change splits. */
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 11);
        assert_string_equal(out, "hello world");
        assert_int_equal(kind, 1);
        assert_int_equal(dropped, 0);
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 4);
        assert_string_equal(out, "oops");
        assert_int_equal(kind, 2);
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 1);
        assert_string_equal(out, "!");
        assert_int_equal(kind, 1);
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 0);
        assert_int_equal(cur, 16);

        /* max splits a segment. */
        cur = 0;
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 4), 4);
        assert_string_equal(out, "hell");
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 7);
        assert_string_equal(out, "o world");
        ring_done(&r);
}

static void test_wraparound_and_drops(void **state) {
        struct ring r;
        uint64_t a = 0, b = 0, dropped;
        uint8_t kind;
        char out[64];

        ring_init(&r, 16, 16);
        ring_append(&r, 1, "0123456789", 10);
        assert_int_equal(rd(&r, &a, &dropped, &kind, out, 63), 10);
        /* Wraps around the 16-byte buffer: 4 bytes (of b's) are lost. */
        ring_append(&r, 1, "abcdefghij", 10);
        assert_int_equal(ring_tail(&r), 4);
        assert_int_equal(rd(&r, &a, &dropped, &kind, out, 63), 10);
        assert_int_equal(dropped, 0);
        assert_string_equal(out, "abcdefghij");

        assert_int_equal(rd(&r, &b, &dropped, &kind, out, 63), 16);
        assert_int_equal(dropped, 4);
        assert_string_equal(out, "456789abcdefghij");
        assert_int_equal(b, 20);

        /* A reader far behind learns exactly how much it missed. */
        for (int i = 0; i < 10; i++)
                ring_append(&r, 2, "ABCDEFGHIJ", 10);
        assert_int_equal(rd(&r, &a, &dropped, &kind, out, 63), 16);
        assert_int_equal(dropped, 100 - 16);
        assert_string_equal(out, "EFGHIJABCDEFGHIJ");
        assert_int_equal(kind, 2);
        ring_done(&r);
}

static void test_append_over_capacity(void **state) {
        struct ring r;
        uint64_t cur = 0, dropped;
        uint8_t kind;
        char out[64], big[100];

        for (int i = 0; i < 100; i++)
                big[i] = (char) ('a' + i % 26);
        ring_init(&r, 16, 16);
        ring_append(&r, 1, "xy", 2);
        ring_append(&r, 2, big, sizeof(big));
        assert_int_equal(ring_head(&r), 102);
        assert_int_equal(ring_tail(&r), 86);
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 16);
        assert_int_equal(dropped, 86);
        assert_int_equal(kind, 2);
        assert_memory_equal(out, big + 84, 16);
        ring_done(&r);
        /* Emptied, offsets kept: a reader still gets an exact count. */
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 0);
        ring_append(&r, 1, "z", 1);
        cur = 0;
        assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 1);
        assert_int_equal(dropped, 102);
        ring_done(&r);
}

static void test_segment_cap(void **state) {
        struct ring r;
        uint64_t cur = 0, dropped;
        uint8_t kind;
        char out[64];

        ring_init(&r, 1024, 4);
        for (int i = 0; i < 10; i++)
                ring_append(&r, (uint8_t) (i % 2), i % 2 ? "o" : "e", 1);
        /* Only the last 4 stream changes are indexed; older bytes count as dropped. */
        assert_int_equal(ring_tail(&r), 6);
        for (int i = 6; i < 10; i++) {
                assert_int_equal(rd(&r, &cur, &dropped, &kind, out, 63), 1);
                assert_int_equal(dropped, i == 6 ? 6 : 0);
                assert_int_equal(kind, i % 2);
        }
        ring_done(&r);
}

/* Random appends of random streams against a model that keeps everything; readers of
 * random speeds must see the model's bytes with exact drop counts. */
static void test_random_model(void **state) {
        enum { CAP = 64 * 1024, TOTAL = 4 * 1024 * 1024, READERS = 3 };
        uint8_t *model = malloc(TOTAL), *kinds = malloc(TOTAL), *chunk = malloc(CAP * 3), out[5000];
        uint64_t cursors[READERS] = {0}, seen[READERS] = {0}, missed[READERS] = {0};
        size_t total = 0;
        struct ring r;

        srand(42);
        ring_init(&r, CAP, 256);
        while (total < TOTAL - CAP * 3) {
                size_t n = (size_t) rand() % (rand() % 10 ? 3000 : CAP * 3);
                uint8_t kind = (uint8_t) (rand() % 3 ? 1 : 2);
                for (size_t i = 0; i < n; i++) {
                        chunk[i] = (uint8_t) rand();
                        model[total + i] = chunk[i];
                        kinds[total + i] = kind;
                }
                ring_append(&r, kind, chunk, n);
                total += n;
                assert_int_equal(ring_head(&r), total);
                assert_true(ring_head(&r) - ring_tail(&r) <= CAP);
                for (int k = 0; k < READERS; k++)
                        for (int reads = rand() % (2 + k * 4); reads > 0; reads--) {
                                uint64_t dropped, before = cursors[k];
                                uint8_t kind_read;
                                size_t got = ring_read(&r, &cursors[k], &dropped, &kind_read, out, sizeof(out));
                                assert_int_equal(before + dropped + got, cursors[k]);
                                missed[k] += dropped;
                                for (size_t i = 0; i < got; i++) {
                                        assert_int_equal(out[i], model[before + dropped + i]);
                                        assert_int_equal(kind_read, kinds[before + dropped + i]);
                                }
                                seen[k] += got;
                        }
        }
        for (int k = 0; k < READERS; k++)
                assert_true(seen[k] + missed[k] <= total);
        assert_true(r.size <= CAP);
        ring_done(&r);
        free(model);
        free(kinds);
        free(chunk);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic_and_segments), cmocka_unit_test(test_wraparound_and_drops),
                cmocka_unit_test(test_append_over_capacity), cmocka_unit_test(test_segment_cap),
                cmocka_unit_test(test_random_model),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
