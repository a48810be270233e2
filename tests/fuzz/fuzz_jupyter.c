/* fuzz_jupyter — the agent's parser of the messages a Jupyter kernel sends
 * (agent/kernel/jupyter.c: jupyter_parse, then jupyter_output_events). The kernel runs the
 * user's code, so its messages are hostile. The input is the message's frames separated by
 * "<|>"; when the first byte is odd the harness signs the four JSON frames after the
 * delimiter with the session's key, so that the fuzzer gets past the HMAC check into the
 * JSON and the event mapping (the build lowers JUPYTER_LAZY_STREAM_MIN, so the hand-written
 * scanner of large stream messages is reached by small inputs too). */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/jupyter.h"

#define FRAMES_MAX 32
#define SEP "<|>"

static struct jupyter_session session;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        assert(jupyter_session_init(&session, "fuzz-key-0123456789") == 0);
        return 0;
}

static int on_event(void *userdata, json_t *ev) {
        char *text = json_dumps(ev, JSON_COMPACT);

        assert(text && json_is_object(ev) && json_is_string(json_object_get(ev, "type")));
        free(text);
        ++*(int *) userdata;
        return 0;
}

/* Splits data at SEP into frames; returns how many. */
static size_t split(const uint8_t *data, size_t size, struct iovec *frames) {
        size_t n = 0, start = 0;

        for (size_t i = 0; n < FRAMES_MAX - 1 && i + 3 <= size; i++)
                if (memcmp(data + i, SEP, 3) == 0) {
                        frames[n++] = (struct iovec){.iov_base = (void *) (data + start), .iov_len = i - start};
                        start = i + 3;
                        i += 2;
                }
        frames[n++] = (struct iovec){.iov_base = (void *) (data + start), .iov_len = size - start};
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct iovec frames[FRAMES_MAX];
        char sig[JUPYTER_SIGNATURE_LEN + 1];
        struct jupyter_message m;
        size_t n;
        int r, events = 0;

        if (size < 1)
                return 0;
        n = split(data + 1, size - 1, frames);
        if (data[0] & 1)
                for (size_t i = 0; i + JUPYTER_FRAMES <= n; i++)
                        if (frames[i].iov_len == strlen(JUPYTER_DELIMITER) &&
                            memcmp(frames[i].iov_base, JUPYTER_DELIMITER, frames[i].iov_len) == 0) {
                                jupyter_sign(session.key, session.key_len, &frames[i + JUPYTER_FRAME_HEADER], 4, sig);
                                frames[i + JUPYTER_FRAME_SIGNATURE] = (struct iovec){.iov_base = sig, .iov_len = JUPYTER_SIGNATURE_LEN};
                                break;
                        }
        r = jupyter_parse(&session, frames, n, &m);
        if (r < 0) {
                assert(r == -EBADMSG || r == -EPERM);
                return 0;
        }
        assert(m.msg_type && m.header && m.parent_header && m.metadata);
        r = jupyter_output_events(&m, on_event, &events);
        assert(r == events || r == -ENOMEM);
        jupyter_message_done(&m);
        return 0;
}
