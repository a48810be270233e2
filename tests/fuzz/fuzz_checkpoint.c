/* fuzz_checkpoint — the agent's readers of /proc/net/tcp and /proc/net/unix (agent/checkpoint.c),
 * whose lines the sandbox shapes (the paths of the unix sockets it binds, the connections it
 * makes). The first byte picks the table, the rest is its text. Checks: at most
 * CHECKPOINT_BLOCKERS_MAX entries, each a string of bounded length. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *list = json_array(), *v;
        char *text;
        size_t i;

        if (size < 1 || !list)
                return json_decref(list), 0;
        text = strndup((const char *) data + 1, size - 1);
        assert(text);
        if (data[0] & 1)
                checkpoint_unix_blockers(text, list);
        else
                checkpoint_tcp_blockers(text, list);
        assert(json_array_size(list) <= CHECKPOINT_BLOCKERS_MAX);
        json_array_foreach(list, i, v)
                assert(json_is_string(v) && strlen(json_string_value(v)) < 4200);
        json_decref(list);
        free(text);
        return 0;
}
