/* buf.c — see buf.h. Growth doubles up to the cap; sizes are checked for overflow before
 * any arithmetic that could wrap. */
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

void buf_init(struct buf *b, size_t cap) {
        *b = (struct buf){.cap = cap};
}

void buf_free(struct buf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->alloc = 0;
}

void buf_reset(struct buf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

static int buf_reserve(struct buf *b, size_t n) {
        size_t need, alloc;
        char *p;

        if (n > b->cap || b->len > b->cap - n)
                return -E2BIG;
        need = b->len + n + 1;
        if (need <= b->alloc)
                return 0;
        alloc = b->alloc ? b->alloc : 64;
        while (alloc < need)
                alloc = alloc > SIZE_MAX / 2 ? need : alloc * 2;
        if (alloc > b->cap + 1)
                alloc = b->cap + 1;
        p = realloc(b->data, alloc);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->alloc = alloc;
        return 0;
}

int buf_append(struct buf *b, const void *data, size_t n) {
        int r = buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, data, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int buf_append_str(struct buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...) {
        va_list ap;
        int n, r;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        r = buf_reserve(b, (size_t) n);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t) n;
        return 0;
}

void buf_consume(struct buf *b, size_t n) {
        if (n >= b->len) {
                buf_reset(b);
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = 0;
}

char *buf_steal(struct buf *b) {
        char *p = b->data;

        if (!p)
                p = calloc(1, 1);
        *b = (struct buf){.cap = b->cap};
        return p;
}

void text_last_line(const char *data, size_t len, char *out, size_t n) {
        size_t end = len, start;

        while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == ' '))
                end--;
        start = end;
        while (start > 0 && data[start - 1] != '\n')
                start--;
        snprintf(out, n, "%.*s", (int) (end - start), data ? data + start : "");
}
