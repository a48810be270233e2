/* base64.h — standard base64 (RFC 4648 §4, with '=' padding), for output bytes that travel
 * inside JSON strings.
 *
 * Both directions write into a buffer the caller sized with the matching _len() helper, so
 * neither allocates.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Characters base64_encode() writes for n input bytes, not counting the NUL. */
static inline size_t base64_encoded_len(size_t n) {
        return (n + 2) / 3 * 4;
}

/* Bytes base64_decode() may write for n input characters (an upper bound). */
static inline size_t base64_decoded_max(size_t n) {
        return n / 4 * 3 + 3;
}

/* Encodes n bytes of src into dst, which must hold base64_encoded_len(n) + 1 bytes; dst is
 * NUL-terminated. Returns the length written (without the NUL). */
size_t base64_encode(const void *src, size_t n, char *dst);

/* Decodes n characters of src into dst (base64_decoded_max(n) bytes). Padding is optional;
 * whitespace and any other character outside the alphabet are refused. Returns the number
 * of bytes written, or -EINVAL for malformed input. */
ssize_t base64_decode(const char *src, size_t n, void *dst);
