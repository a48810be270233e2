/* fuzz_chunked — the chunked-body decoder of common/http-parse.c. The input is a body fed in
 * pieces whose sizes (and the most data handed out per call) come from its first bytes.
 * Checks the contract the proxy and the agent rely on: what a call consumes lies within what
 * it was given, data within what it consumed, nothing consumed on error, a failed decoder
 * stays failed; and differentially, that the pieces decode to exactly what the whole body
 * decodes to in one pass per call. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http-parse.h"

/* Decodes in (len bytes) in pieces of at most step bytes, max_data at a time; the data go to
 * out. Returns the last result and the input consumed in *ret_used. */
static int decode(const uint8_t *in, size_t len, size_t step, size_t max_data, uint8_t *out, size_t *out_len,
                  size_t *ret_used) {
        struct http_chunked d = {0};
        size_t off = 0;
        int r = 0;

        *out_len = 0;
        while (off < len && r == 0) {
                size_t avail = len - off < step ? len - off : step, used = 777, data_len = 777;

                r = http_chunked_decode(&d, (const char *) in + off, avail, max_data, &used, &data_len);
                if (r < 0) {
                        assert(r == -EBADMSG && used == 0 && data_len == 0);
                        assert(http_chunked_decode(&d, "0\r\n\r\n", 5, 1, &used, &data_len) == -EBADMSG);
                        break;
                }
                assert(used <= avail && data_len <= used && data_len <= max_data);
                if (used == 0 && r == 0)
                        return -EAGAIN; /* no progress with input available would loop */
                memcpy(out + *out_len, in + off + used - data_len, data_len);
                *out_len += data_len;
                off += used;
        }
        *ret_used = off;
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t step, max_data, n1, n2, u1, u2;
        uint8_t *o1, *o2;
        int r1, r2;

        if (size < 2)
                return 0;
        step = (size_t) data[0] % 17 + 1;
        max_data = data[1] & 0x80 ? SIZE_MAX : (size_t) (data[1] & 0x7f) + 1;
        data += 2;
        size -= 2;
        o1 = malloc(size + 1);
        o2 = malloc(size + 1);
        assert(o1 && o2);
        r1 = decode(data, size, SIZE_MAX, SIZE_MAX, o1, &n1, &u1);
        r2 = decode(data, size, step, max_data, o2, &n2, &u2);
        assert(r1 != -EAGAIN && r2 != -EAGAIN);
        /* Where both ran to an end (or a failure), they agree on where and on the data. */
        if (r1 == 1 || r2 == 1)
                assert(r1 == r2 && u1 == u2);
        if (r1 < 0 || r2 < 0)
                assert(r1 == r2);
        assert(n1 == n2 && memcmp(o1, o2, n1) == 0); /* data are handed out before any later failure */
        free(o1);
        free(o2);
        return 0;
}
