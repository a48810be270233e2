/* test_base64.c — common/base64.c: the RFC 4648 test vectors both ways, every byte value
 * through a round trip at every length modulo 3, and refusal of malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

static void test_vectors(void **state) {
        static const char *const vectors[][2] = {
                {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},           {"foo", "Zm9v"},
                {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
        };
        char enc[64], dec[64];

        for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
                size_t n = strlen(vectors[i][0]);
                assert_int_equal(base64_encoded_len(n), strlen(vectors[i][1]));
                assert_int_equal(base64_encode(vectors[i][0], n, enc), strlen(vectors[i][1]));
                assert_string_equal(enc, vectors[i][1]);
                assert_int_equal(base64_decode(enc, strlen(enc), dec), (ssize_t) n);
                assert_memory_equal(dec, vectors[i][0], n);
        }
        /* Padding is optional on input. */
        assert_int_equal(base64_decode("Zm8", 3, dec), 2);
        assert_memory_equal(dec, "fo", 2);
}

static void test_round_trip_binary(void **state) {
        uint8_t src[770], dst[800];
        char enc[1100];

        for (size_t i = 0; i < sizeof(src); i++)
                src[i] = (uint8_t) (i * 7 + (i >> 8));
        for (size_t n = 0; n <= sizeof(src); n += (n < 10 ? 1 : 97)) {
                size_t len = base64_encode(src, n, enc);
                assert_int_equal(len, base64_encoded_len(n));
                assert_int_equal(strlen(enc), len);
                assert_true(base64_decoded_max(len) >= n);
                assert_int_equal(base64_decode(enc, len, dst), (ssize_t) n);
                assert_memory_equal(dst, src, n);
        }
        /* All 256 byte values, including NUL and 0xff. */
        for (int i = 0; i < 256; i++)
                src[i] = (uint8_t) i;
        base64_encode(src, 256, enc);
        assert_int_equal(base64_decode(enc, strlen(enc), dst), 256);
        assert_memory_equal(dst, src, 256);
}

static void test_malformed(void **state) {
        char dec[64];

        assert_int_equal(base64_decode("Zm9v!", 5, dec), -EINVAL);
        assert_int_equal(base64_decode("Zm 9v", 5, dec), -EINVAL);
        assert_int_equal(base64_decode("Z", 1, dec), -EINVAL);
        assert_int_equal(base64_decode("Zm9vY", 5, dec), -EINVAL);
        assert_int_equal(base64_decode("Zg===", 5, dec), -EINVAL);
        assert_int_equal(base64_decode("Z=g=", 4, dec), -EINVAL);
        assert_int_equal(base64_decode("Zm9=", 4, dec), 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vectors),
                cmocka_unit_test(test_round_trip_binary),
                cmocka_unit_test(test_malformed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
