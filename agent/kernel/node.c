/* node.c — the "javascript" backend: one persistent node per context (kernel.h) running the
 * driver of ctx-node-driver.c, over ctx-proc.h's process plumbing.
 *
 * The control socket reaches node as fd 3: a one-line bash moves it there from fd 0 (which
 * becomes /dev/null) and execs node, found on the context's PATH. The processes the code
 * starts do not inherit it: at start node marks every fd it inherited close-on-exec (libuv's
 * uv_disable_stdio_inheritance(), from node's platform init; seen on node 18 and 20 as
 * O_CLOEXEC in /proc/self/fdinfo/3), and a child gets its fds 0 to 2 dup2()ed anew, so only
 * code that names fd 3 in a spawn's stdio array passes it on. Requests are JSON lines
 * {"x":N,"code":…,"envs":{…}}; the driver's answers are JSON lines tagged with N, which
 * this file checks and forwards without the tag (begin and done mark the execution's
 * bounds). The driver reports the code's errors itself; an interrupt gives no error event
 * (the end says interrupted). Whatever node's children write to the inherited stdout and
 * stderr pipes arrives as stdout and stderr events too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx-node-driver.h"
#include "ctx-proc.h"
#include "kernel.h"
#include "macro.h"

#define MAX_LINE (16 * 1024 * 1024) /* the driver sends output in pieces of 256 Ki characters */

struct kernel {
        struct kproc *kp;
        uint64_t count; /* executions so far: the execution_count */
};

/* Whether ev has the fields its type needs on the wire. */
static bool event_valid(const char *type, json_t *ev) {
        if (streq(type, "stdout") || streq(type, "stderr"))
                return json_is_string(json_object_get(ev, "text"));
        if (streq(type, "result"))
                return json_is_object(json_object_get(ev, "data"));
        if (streq(type, "error"))
                return json_is_string(json_object_get(ev, "name")) && json_is_string(json_object_get(ev, "value")) &&
                       json_is_array(json_object_get(ev, "traceback"));
        return false;
}

static enum kproc_line classify(void *userdata, const char *line, size_t len, uint64_t seq, json_t **ret_ev,
                                int *ret_status) {
        json_t *ev = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *x = json_object_get(ev, "x");
        enum kproc_line what = KPROC_LINE_IGNORE;

        if (!type)
                goto out;
        if (streq(type, "ready")) {
                what = KPROC_LINE_READY;
                goto out;
        }
        if (seq == 0 || !json_is_integer(x) || (uint64_t) json_integer_value(x) != seq)
                goto out;
        if (streq(type, "begin"))
                what = KPROC_LINE_BEGIN;
        else if (streq(type, "done")) {
                what = KPROC_LINE_END;
                *ret_status = 0;
        } else if (event_valid(type, ev)) {
                json_object_del(ev, "x");
                *ret_ev = TAKE_PTR(ev);
                what = KPROC_LINE_EVENT;
        }
out:
        json_decref(ev);
        return what;
}

static void node_stop(struct kernel *k) {
        if (!k)
                return;
        kproc_stop(k->kp);
        free(k);
}

static int node_start(const struct kernel_config *cfg, int64_t timeout_ms, struct kernel **ret, char **ret_error) {
        char *argv[] = {"/bin/bash", "-c", "exec 3<&0 </dev/null; exec node --expose-internals -e \"$1\"", "node",
                        (char *) node_driver_js, NULL};
        struct kernel *k;
        int r;

        *ret_error = NULL;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        struct kproc_spec spec = {
                .name = "javascript",
                .argv = argv,
                .cfg = cfg,
                .line = classify,
                .userdata = k,
                .max_line = MAX_LINE,
        };
        r = kproc_start(&spec, timeout_ms, &k->kp, ret_error);
        if (r < 0) {
                free(k);
                return r;
        }
        *ret = k;
        return 0;
}

static int node_execute(struct kernel *k, const char *code, json_t *envs, int64_t timeout_ms,
                        const struct kernel_sink *sink, struct kernel_outcome *out) {
        uint64_t seq = ++k->count;
        _cleanup_free_ char *req = NULL;
        struct kproc_result res;
        json_t *body;
        size_t len;
        int r;

        body = json_pack("{s:I,s:s,s:o}", "x", (json_int_t) seq, "code", code, "envs",
                         envs ? json_incref(envs) : json_object());
        if (!body)
                return -ENOMEM;
        req = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!req)
                return -ENOMEM;
        len = strlen(req);
        req[len] = '\n'; /* over the NUL: the length says where it ends */
        r = kproc_execute(k->kp, seq, req, len + 1, NULL, timeout_ms, sink, &res);
        if (r < 0)
                return r;

        kproc_outcome(&res, seq, "javascript context", sink, out);
        return 0;
}

static bool node_alive(struct kernel *k) {
        return kproc_alive(k->kp);
}

const struct kernel_ops kernel_node_ops = {
        .language = "javascript",
        .start = node_start,
        .execute = node_execute,
        .alive = node_alive,
        .stop = node_stop,
};
