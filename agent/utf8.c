/* utf8.c — see utf8.h. A table-free decoder after the Unicode Standard's "Well-Formed
 * UTF-8 Byte Sequences" table (section 3.9, table 3-7): the lead byte fixes the length
 * and the allowed range of the second byte; later bytes are plain continuation bytes. */
#include "utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* How many leading bytes of the sequence at s are a valid prefix: the length of the
 * maximal subpart to replace when the sequence is ill-formed (at least 1). */
static size_t sequence_scan(const unsigned char *s, size_t n, size_t *ret_valid_prefix) {
        unsigned char lo = 0x80, hi = 0xbf;
        size_t len, i;

        if (s[0] < 0x80) {
                *ret_valid_prefix = 1;
                return 1;
        }
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                len = 3;
                if (s[0] == 0xe0)
                        lo = 0xa0; /* no overlong forms */
                else if (s[0] == 0xed)
                        hi = 0x9f; /* no surrogates */
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                len = 4;
                if (s[0] == 0xf0)
                        lo = 0x90; /* no overlong forms */
                else if (s[0] == 0xf4)
                        hi = 0x8f; /* nothing past U+10FFFF */
        } else {
                *ret_valid_prefix = 1; /* 0x80..0xc1, 0xf5..0xff: never valid */
                return 0;
        }

        for (i = 1; i < len; i++) {
                if (i >= n || s[i] < lo || s[i] > hi) {
                        *ret_valid_prefix = i;
                        return 0;
                }
                lo = 0x80;
                hi = 0xbf;
        }
        *ret_valid_prefix = len;
        return len;
}

size_t utf8_valid_sequence(const unsigned char *s, size_t n) {
        size_t prefix;

        if (n == 0)
                return 0;
        return sequence_scan(s, n, &prefix);
}

/* Walks the input once; writes into out when it is not NULL. Returns the output length. */
static size_t sanitize_pass(const unsigned char *p, size_t n, char *out) {
        size_t i = 0, o = 0, prefix, len;

        while (i < n) {
                len = sequence_scan(p + i, n - i, &prefix);
                if (len > 0) {
                        if (out)
                                memcpy(out + o, p + i, len);
                        o += len;
                        i += len;
                } else {
                        if (out)
                                memcpy(out + o, replacement, 3);
                        o += 3;
                        i += prefix;
                }
        }
        return o;
}

int utf8_sanitize(const char *s, size_t n, char **ret, size_t *ret_len) {
        const unsigned char *p = (const unsigned char *) s;
        size_t len;
        char *out;

        /* Two passes so that the output is allocated exactly: it can be up to three times
         * the input (every byte a U+FFFD), and inputs are up to the 16 MiB output cap. */
        if (n > (SIZE_MAX - 1) / 3)
                return -ENOMEM;
        len = sanitize_pass(p, n, NULL);
        out = malloc(len + 1);
        if (!out)
                return -ENOMEM;
        sanitize_pass(p, n, out);
        out[len] = 0;
        *ret = out;
        *ret_len = len;
        return 0;
}
