/* query.h — the query string of a request target ("path=%2Ftmp%2Fa&recursive=true"),
 * parsed once into decoded key/value pairs.
 *
 * Decoding is application/x-www-form-urlencoded's: "%XX" is the byte XX and '+' a space.
 * A decoded NUL (%00) is refused, since every value ends up as a C string (a path
 * would be cut short silently); so is a malformed escape. Repeated keys are kept in
 * order; query_check() is how a handler refuses unknown or repeated ones.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define QUERY_MAX_PARAMS 64

struct query_param {
        char *key;
        char *value; /* "" for a key without '=' */
};

struct query {
        struct query_param params[QUERY_MAX_PARAMS];
        size_t n;
};

/* Parses s (the part after '?', or NULL for none) into ret, which must be released with
 * query_done() on success. Empty pieces ("a=1&&b=2") are skipped. Returns 0, -EINVAL for a
 * malformed escape ('%' not followed by two hex digits), -EBADMSG for an escape decoding to
 * NUL, -E2BIG for more than QUERY_MAX_PARAMS parameters, -ENOMEM. On error ret is empty. */
int query_parse(const char *s, struct query *ret);

/* Frees what query_parse() filled in; accepts a zeroed struct. */
void query_done(struct query *q);
static inline void query_donep(struct query *q) { query_done(q); }
#define _cleanup_query_ _cleanup_(query_donep)

/* A sentence for a query_parse() error, for a 400 message ("the query string …"). */
const char *query_strerror(int err);

/* The value of the first parameter named key, or NULL. */
const char *query_get(const struct query *q, const char *key);

/* Checks that every key of q is one of allowed (NULL-terminated) and appears once.
 * Returns 0, or -ENOENT (unknown) / -ENOTUNIQ (repeated) with the key in *ret_key. */
int query_check(const struct query *q, const char *const *allowed, const char **ret_key);

/* Parses "true"/"false"/"1"/"0" into *ret. -EINVAL otherwise. */
int query_parse_bool(const char *s, bool *ret);

/* Parses a decimal number in [min, max] into *ret. -EINVAL otherwise. */
int query_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
