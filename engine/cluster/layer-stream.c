/* layer-stream.c — see layer-stream.h. */
#include "cluster/layer-stream.h"

#include <errno.h>
#include <string.h>

void layer_frame_head(uint32_t n, uint8_t out[4]) {
        out[0] = (uint8_t) (n >> 24);
        out[1] = (uint8_t) (n >> 16);
        out[2] = (uint8_t) (n >> 8);
        out[3] = (uint8_t) n;
}

static int fail(struct layer_frames *f) {
        f->state = LAYER_FRAMES_FAILED;
        return -EBADMSG;
}

int layer_frames_decode(struct layer_frames *f, const uint8_t *in, size_t len, size_t *ret_used, const uint8_t **ret_data,
                        size_t *ret_data_len) {
        size_t n;

        *ret_used = 0;
        *ret_data = NULL;
        *ret_data_len = 0;
        switch (f->state) {
        case LAYER_FRAMES_LEN:
                n = len < 4 - f->len_have ? len : 4 - f->len_have;
                memcpy(f->len_bytes + f->len_have, in, n);
                f->len_have += (unsigned) n;
                if (f->len_have == 4) {
                        uint32_t v = (uint32_t) f->len_bytes[0] << 24 | (uint32_t) f->len_bytes[1] << 16 |
                                     (uint32_t) f->len_bytes[2] << 8 | f->len_bytes[3];
                        if (v > LAYER_FRAME_MAX) {
                                f->len_have -= (unsigned) n;
                                return fail(f);
                        }
                        f->len_have = 0;
                        f->left = v;
                        f->state = v == 0 ? LAYER_FRAMES_DIGEST : LAYER_FRAMES_DATA;
                }
                *ret_used = n;
                return 0;
        case LAYER_FRAMES_DATA:
                n = len < f->left ? len : f->left;
                f->left -= (uint32_t) n;
                f->total += n;
                if (f->left == 0)
                        f->state = LAYER_FRAMES_LEN;
                *ret_used = n;
                *ret_data = in;
                *ret_data_len = n;
                return 0;
        case LAYER_FRAMES_DIGEST:
                n = len < LAYER_DIGEST_LEN - f->digest_have ? len : LAYER_DIGEST_LEN - f->digest_have;
                memcpy(f->digest + f->digest_have, in, n);
                f->digest_have += (unsigned) n;
                if (f->digest_have == LAYER_DIGEST_LEN)
                        f->state = LAYER_FRAMES_DONE;
                *ret_used = n;
                return 0;
        case LAYER_FRAMES_DONE:
                return len == 0 ? 0 : fail(f);
        default:
                return -EBADMSG;
        }
}
