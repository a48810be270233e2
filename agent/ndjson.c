/* ndjson.c — see ndjson.h. */
#include "ndjson.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

int ndjson_begin(struct http_conn *c) {
        return http_chunked_begin(c, 200, "application/x-ndjson");
}

int ndjson_event(struct http_conn *c, json_t *ev) {
        char ts[RFC3339_LEN + 1];
        char *line;
        size_t n;
        int r;

        if (!json_object_get(ev, "ts")) {
                format_rfc3339(now_ms(), ts);
                if (json_object_set_new(ev, "ts", json_string(ts)) < 0)
                        return -ENOMEM;
        }
        line = json_dumps(ev, JSON_COMPACT);
        if (!line)
                return -ENOMEM;
        n = strlen(line);
        /* json_dumps gives a NUL-terminated string; swap the NUL for the newline. */
        line[n] = '\n';
        r = http_chunked_write(c, line, n + 1);
        free(line);
        return r;
}

int ndjson_keepalive(struct http_conn *c) {
        json_t *ev = json_pack("{s:s}", "type", "keepalive");
        int r;

        if (!ev)
                return -ENOMEM;
        r = ndjson_event(c, ev);
        json_decref(ev);
        return r;
}

int ndjson_end(struct http_conn *c) {
        return http_chunked_end(c);
}
