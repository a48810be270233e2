/* ring.c — see ring.h. Offsets are absolute 64-bit counts, so "how far behind is this
 * reader" is a subtraction and never wraps in practice (2^64 bytes). The data buffer and
 * the segment index are both power-of-two rings; growing either re-lays the held part out
 * in the new buffer. */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

#include "macro.h"

#define RING_MIN_SIZE 4096
#define SEG_MIN_SIZE 8

static size_t round_pow2(size_t n) {
        size_t p = 1;

        while (p < n && p <= SIZE_MAX / 2)
                p *= 2;
        return p;
}

void ring_init(struct ring *r, size_t cap, size_t max_segments) {
        *r = (struct ring){
                .cap = round_pow2(MAX(cap, (size_t) 1)),
                .max_segments = round_pow2(MAX(max_segments, (size_t) 2)),
        };
}

void ring_done(struct ring *r) {
        free(r->data);
        free(r->segs);
        r->data = NULL;
        r->segs = NULL;
        r->size = r->seg_size = r->seg_first = r->seg_count = 0;
        r->tail = r->head;
}

static struct ring_segment *seg_at(const struct ring *r, size_t i) {
        return &r->segs[(r->seg_first + i) & (r->seg_size - 1)];
}

static void seg_pop_first(struct ring *r) {
        r->seg_first = (r->seg_first + 1) & (r->seg_size - 1);
        r->seg_count--;
}

/* Forgets segments wholly behind the tail; the first one left may start behind it. */
static void seg_trim(struct ring *r) {
        while (r->seg_count >= 2 && seg_at(r, 1)->start <= r->tail)
                seg_pop_first(r);
}

static int seg_grow(struct ring *r) {
        size_t size = r->seg_size ? r->seg_size * 2 : SEG_MIN_SIZE;
        struct ring_segment *segs;

        size = MIN(size, r->max_segments);
        segs = malloc(size * sizeof(*segs));
        if (!segs)
                return -ENOMEM;
        for (size_t i = 0; i < r->seg_count; i++)
                segs[i] = *seg_at(r, i);
        free(r->segs);
        r->segs = segs;
        r->seg_size = size;
        r->seg_first = 0;
        return 0;
}

/* Starts a segment of kind at the head, unless the newest one already is of that kind. */
static void seg_push(struct ring *r, uint8_t kind) {
        if (r->seg_count > 0 && seg_at(r, r->seg_count - 1)->kind == kind)
                return;
        if (r->seg_count == r->seg_size && (r->seg_size == r->max_segments || seg_grow(r) < 0)) {
                /* Index full (or no memory for more): drop the oldest segment's bytes. */
                if (r->seg_count >= 2) {
                        r->tail = MAX(r->tail, seg_at(r, 1)->start);
                        seg_pop_first(r);
                } else if (r->seg_count == 0)
                        return; /* no index at all: nothing can be held */
                else {
                        r->tail = r->head;
                        seg_pop_first(r);
                }
        }
        *seg_at(r, r->seg_count) = (struct ring_segment){.start = r->head, .kind = kind};
        r->seg_count++;
}

/* Copies the held bytes into a new buffer of size bytes (more than the held count). */
static int data_grow(struct ring *r, size_t size) {
        uint8_t *data = malloc(size);
        uint64_t pos;

        if (!data)
                return -ENOMEM;
        for (pos = r->tail; pos < r->head;) {
                size_t from = (size_t) pos & (r->size - 1), to = (size_t) pos & (size - 1);
                size_t len = (size_t) MIN(r->head - pos, (uint64_t) MIN(r->size - from, size - to));
                memcpy(data + to, r->data + from, len);
                pos += len;
        }
        free(r->data);
        r->data = data;
        r->size = size;
        return 0;
}

void ring_append(struct ring *r, uint8_t kind, const void *src, size_t n) {
        const uint8_t *s = src;
        uint64_t need;

        if (n == 0)
                return;
        seg_push(r, kind);
        if (r->seg_count == 0) { /* no memory for the index: count the bytes as dropped */
                r->head += n;
                r->tail = r->head;
                return;
        }
        if (n > r->cap) { /* only the last cap bytes can be kept */
                r->head += n - r->cap;
                s += n - r->cap;
                n = r->cap;
                r->tail = r->head;
        }
        need = r->head + n - r->tail;
        if (need > r->size && r->size < r->cap)
                (void) data_grow(r, MIN(r->cap, round_pow2(MAX((size_t) need, (size_t) RING_MIN_SIZE))));
        if (need > r->size)
                r->tail = r->head + n - r->size;
        for (size_t done = 0, len; done < n && r->size > 0; done += len) {
                size_t at = (size_t) (r->head + done) & (r->size - 1);
                len = MIN(n - done, r->size - at);
                memcpy(r->data + at, s + done, len);
        }
        r->head += n;
        seg_trim(r);
}

/* The index of the last segment starting at or before pos (there is one: the first
 * segment never starts after the tail). */
static size_t seg_find(const struct ring *r, uint64_t pos) {
        size_t lo = 0, hi = r->seg_count - 1;

        while (lo < hi) {
                size_t mid = lo + (hi - lo + 1) / 2;
                if (seg_at(r, mid)->start <= pos)
                        lo = mid;
                else
                        hi = mid - 1;
        }
        return lo;
}

size_t ring_read(const struct ring *r, uint64_t *cursor, uint64_t *ret_dropped, uint8_t *ret_kind, void *dst,
                 size_t max) {
        uint64_t pos = *cursor, end;
        uint8_t *d = dst;
        size_t i, n, done, len;

        *ret_dropped = 0;
        if (pos < r->tail) {
                *ret_dropped = r->tail - pos;
                pos = r->tail;
        }
        if (pos >= r->head || r->seg_count == 0 || max == 0) {
                *cursor = MIN(pos, r->head);
                return 0;
        }
        i = seg_find(r, pos);
        end = i + 1 < r->seg_count ? seg_at(r, i + 1)->start : r->head;
        n = (size_t) MIN(end - pos, (uint64_t) max);
        for (done = 0; done < n; done += len) {
                size_t at = (size_t) (pos + done) & (r->size - 1);
                len = MIN(n - done, r->size - at);
                memcpy(d + done, r->data + at, len);
        }
        *ret_kind = seg_at(r, i)->kind;
        *cursor = pos + n;
        return n;
}
