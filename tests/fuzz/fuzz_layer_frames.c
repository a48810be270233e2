/* fuzz_layer_frames — the framing of moved sandbox files (engine/cluster/layer-stream.c). The
 * input is fed in pieces whose size comes from its first byte. Checks the contract the layer
 * import relies on: progress on every call with input, what a call consumes lies within what
 * it was given and its data within that, nothing consumed on error and a failed decoder stays
 * failed, and the archive bytes counted are the data handed out. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "cluster/layer-stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct layer_frames f = {0};
        size_t off = 1, step, got = 0;

        if (size < 1)
                return 0;
        step = (size_t) data[0] % 17 + 1;
        while (off < size) {
                size_t avail = size - off < step ? size - off : step, used = 777, dlen = 777;
                const uint8_t *d = NULL;
                int r = layer_frames_decode(&f, data + off, avail, &used, &d, &dlen);

                if (r < 0) {
                        assert(r == -EBADMSG && used == 0 && dlen == 0 && f.state == LAYER_FRAMES_FAILED);
                        assert(layer_frames_decode(&f, data, 1, &used, &d, &dlen) == -EBADMSG);
                        break;
                }
                assert(used > 0 && used <= avail && dlen <= used);
                assert(dlen == 0 || d == data + off);
                got += dlen;
                off += used;
        }
        assert(f.total == got);
        return 0;
}
