/* base64.c — see base64.h. Three bytes become four characters; the decoder goes through a
 * 256-entry table in which everything outside the alphabet is invalid. */
#include "base64.h"

#include <errno.h>
#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(const void *src, size_t n, char *dst) {
        const uint8_t *s = src;
        char *d = dst;
        size_t i;

        for (i = 0; i + 3 <= n; i += 3) {
                uint32_t v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 | s[i + 2];
                *d++ = alphabet[v >> 18];
                *d++ = alphabet[(v >> 12) & 63];
                *d++ = alphabet[(v >> 6) & 63];
                *d++ = alphabet[v & 63];
        }
        if (i < n) {
                uint32_t v = (uint32_t) s[i] << 16 | (i + 1 < n ? (uint32_t) s[i + 1] << 8 : 0);
                *d++ = alphabet[v >> 18];
                *d++ = alphabet[(v >> 12) & 63];
                *d++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
                *d++ = '=';
        }
        *d = 0;
        return (size_t) (d - dst);
}

/* The value of c in the alphabet, or -1. */
static int value_of(unsigned char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

ssize_t base64_decode(const char *src, size_t n, void *dst) {
        uint8_t *d = dst;
        uint32_t acc = 0;
        size_t k = 0, pad = 0;

        /* Padding only at the end, and only as much as a final group can have. */
        while (n > 0 && src[n - 1] == '=' && pad < 2) {
                n--;
                pad++;
        }
        if (pad > 0 && (n + pad) % 4 != 0)
                return -EINVAL;
        if (n % 4 == 1)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                int v = value_of((unsigned char) src[i]);
                if (v < 0)
                        return -EINVAL;
                acc = acc << 6 | (uint32_t) v;
                if (++k == 4) {
                        *d++ = (uint8_t) (acc >> 16);
                        *d++ = (uint8_t) (acc >> 8);
                        *d++ = (uint8_t) acc;
                        acc = 0;
                        k = 0;
                }
        }
        if (k == 2)
                *d++ = (uint8_t) (acc >> 4);
        else if (k == 3) {
                *d++ = (uint8_t) (acc >> 10);
                *d++ = (uint8_t) (acc >> 2);
        }
        return (ssize_t) (d - (uint8_t *) dst);
}
