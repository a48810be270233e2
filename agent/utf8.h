/* utf8.h — making arbitrary bytes safe to put in a JSON string.
 *
 * Command output is whatever bytes a program wrote; JSON (and jansson) needs valid UTF-8.
 */
#pragma once

#include <stddef.h>

/* Copies the n bytes at s into a new NUL-terminated string in which every ill-formed
 * UTF-8 sequence (stray continuation bytes, overlong forms, surrogates, code points past
 * U+10FFFF, sequences cut short) is replaced by U+FFFD, one per maximal ill-formed
 * subpart as Unicode recommends. Valid input comes out unchanged; NUL bytes are kept
 * (the length says where the string ends). On success stores the string and its length
 * in ret/ret_len (the caller frees) and returns 0; -ENOMEM on allocation failure. */
int utf8_sanitize(const char *s, size_t n, char **ret, size_t *ret_len);

/* Returns the length of the valid UTF-8 sequence starting at s (1..4, at most n), or 0
 * if the bytes there do not start one. */
size_t utf8_valid_sequence(const unsigned char *s, size_t n);
