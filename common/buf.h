/* buf.h — a growable byte buffer with a hard cap (curl's dynbuf idea).
 *
 * Every buffer that grows with outside input is a struct buf with a cap set at init:
 * appending past the cap fails with -E2BIG and leaves the contents as they were.
 * The data is always NUL-terminated (the NUL is not counted in len).
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "macro.h"

struct buf {
        char *data;
        size_t len;
        size_t alloc;
        size_t cap;
};

/* Initializes an empty buffer that will never hold more than cap bytes. */
void buf_init(struct buf *b, size_t cap);

/* Frees the memory; the buffer is empty and reusable afterwards. Accepts a zeroed buf. */
void buf_free(struct buf *b);

/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);

/* Appends n bytes; -E2BIG past the cap, -ENOMEM on allocation failure. */
int buf_append(struct buf *b, const void *data, size_t n);

/* Appends a C string. */
int buf_append_str(struct buf *b, const char *s);

/* Appends printf-formatted text. */
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);

/* Removes the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);

/* Hands the data on to the caller (who frees it) and empties the buffer. Never NULL
 * unless allocation fails. */
char *buf_steal(struct buf *b);

/* Copies the last non-empty line of data (len bytes; trailing newlines and spaces ignored)
 * into out (n bytes, truncated, NUL-terminated). For error messages from program output. */
void text_last_line(const char *data, size_t len, char *out, size_t n);

static inline void buf_freep(struct buf *b) { buf_free(b); }
#define _cleanup_buf_ _cleanup_(buf_freep)
