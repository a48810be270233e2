/* layer-stream.h — the framing of a sandbox's files moved from node to node (drain, issue 14).
 *
 * The body of PUT /v1/internal/layers/{id} is a tar archive of the sandbox's upper dir, cut
 * into frames: a 4-byte big-endian length (1 .. LAYER_FRAME_MAX) and that many bytes of the
 * archive; then a frame of length 0, then the 32 bytes of the SHA-256 of the whole archive,
 * then nothing. The digest travels after the data, so the sender streams the archive as tar
 * makes it (no copy on its disk, no second pass) and the receiver checks, once it has it all,
 * that every byte arrived as sent, before it says it holds the files.
 *
 * The decoder is incremental (the body arrives in pieces of any size) and holds no data:
 * it points into the input it is given.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define LAYER_FRAME_MAX (1024 * 1024)
#define LAYER_DIGEST_LEN 32
#define LAYER_CONTENT_TYPE "application/x-ai2in-layer"

enum layer_frames_state {
        LAYER_FRAMES_LEN,    /* reading a length */
        LAYER_FRAMES_DATA,   /* inside a frame */
        LAYER_FRAMES_DIGEST, /* reading the digest */
        LAYER_FRAMES_DONE,   /* the digest is read: no byte may follow */
        LAYER_FRAMES_FAILED,
};

struct layer_frames {
        enum layer_frames_state state;
        uint8_t len_bytes[4];
        unsigned len_have;
        uint32_t left; /* bytes left in the current frame */
        uint8_t digest[LAYER_DIGEST_LEN];
        unsigned digest_have;
        uint64_t total; /* archive bytes so far */
};

/* Decodes from in (len bytes): *ret_used gets how many bytes it consumed (at most len), and
 * *ret_data / *ret_data_len the archive bytes among them (a span of in; length 0 when none).
 * Call again with the rest. 0 on progress; -EBADMSG (the decoder then stays failed, nothing
 * consumed) on a frame length above LAYER_FRAME_MAX or a byte after the digest. */
int layer_frames_decode(struct layer_frames *f, const uint8_t *in, size_t len, size_t *ret_used, const uint8_t **ret_data,
                        size_t *ret_data_len);

/* Writes the head of a frame of n bytes (n <= LAYER_FRAME_MAX; 0: the end) into out. */
void layer_frame_head(uint32_t n, uint8_t out[4]);
