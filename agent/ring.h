/* ring.h — a process's recent output: a bounded byte ring tagged by stream, read by any
 * number of readers, each with its own cursor.
 *
 * Every byte ever appended has an absolute offset (0 for the first). The ring keeps the
 * bytes from offset ring_tail() to ring_head(); appending past the capacity drops the oldest
 * bytes, which moves the tail. A reader is just an offset: when its cursor is behind the
 * tail, it learns exactly how many bytes it missed. The writer is never held back by a
 * reader.
 *
 * Where the stream changes (stdout → stderr) a segment starts; consecutive appends of one
 * stream share a segment. Segments are bounded too (max_segments): output that alternates
 * streams byte by byte drops its oldest segment rather than growing the index without
 * limit, so the ring may then hold less than its capacity.
 *
 * Memory starts small and doubles up to the capacity, as output arrives. Not thread-safe:
 * the caller locks.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ring_segment {
        uint64_t start; /* absolute offset of its first byte (may be behind the tail) */
        uint8_t kind;
};

struct ring {
        uint8_t *data;
        size_t size;         /* allocated bytes, a power of two; offset o lives at o & (size - 1) */
        size_t cap;          /* the most data ever allocated, a power of two */
        uint64_t head, tail; /* absolute offsets: [tail, head) is held */
        struct ring_segment *segs;
        size_t seg_size;     /* allocated entries, a power of two */
        size_t seg_first;    /* index of the oldest segment */
        size_t seg_count;
        size_t max_segments; /* a power of two */
};

/* Sets up an empty ring that will hold at most cap bytes (rounded up to a power of two)
 * and max_segments stream changes (likewise). Allocates nothing yet. */
void ring_init(struct ring *r, size_t cap, size_t max_segments);

/* Frees the memory; the ring is empty (offsets kept) and usable again. */
void ring_done(struct ring *r);

/* Appends n bytes of stream kind. Drops the oldest bytes (even from this append, when n
 * is over the capacity) to make room; if memory cannot grow, it drops more instead of
 * failing. Afterwards ring_head() has moved by n. */
void ring_append(struct ring *r, uint8_t kind, const void *src, size_t n);

/* Offset one past the newest byte: the total appended. */
static inline uint64_t ring_head(const struct ring *r) {
        return r->head;
}

/* Offset of the oldest byte still held. */
static inline uint64_t ring_tail(const struct ring *r) {
        return r->tail;
}

/* Reads for the reader at *cursor. If bytes before the tail were dropped since the
 * cursor, stores how many in *ret_dropped and moves the cursor to the tail (otherwise
 * *ret_dropped is 0). Then copies at most max bytes of one stream, starting at the
 * cursor, into dst, stores their stream in *ret_kind, moves the cursor past them and
 * returns the count: 0 when the reader has caught up with the head. */
size_t ring_read(const struct ring *r, uint64_t *cursor, uint64_t *ret_dropped, uint8_t *ret_kind, void *dst,
                 size_t max);
