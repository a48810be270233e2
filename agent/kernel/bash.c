/* bash.c — the "bash" backend: one persistent bash per context (kernel.h), driven through
 * the protocol of ctx-shell.h over ctx-proc.h's process plumbing.
 *
 * Why an interactive shell (`bash -i`, reading from a socket, prompts emptied): a
 * non-interactive bash that gets SIGINT either exits (no trap) or runs a trap and carries on
 * with the next command, so `while true; do :; done` could never be interrupted without
 * losing the shell. An interactive bash abandons the command line it runs, returns to its
 * read loop and keeps its state, which is exactly "interrupt the execution". The price: the
 * code sees `$-` with `i`, aliases are expanded, `exit` prints "exit" on stderr, and SIGTERM
 * is ignored (kproc_stop also sends SIGHUP). History expansion is turned off.
 *
 * Why not a login shell: the environment the context starts with (contexts.c) is already
 * the one the user's login shell exports (login-env.h), as for commands, so the profile's
 * PATH applies without running the profile in the context, whose output and side effects
 * (a `cd`, a `set -e`) would be hard to tell apart from the user's.
 *
 * Errors: an execution whose code ends with a non-zero status gets an error event
 * {"name":"ExitCode","value":"exit status N"} (what its stderr said came before it, as
 * stderr events) and status "error", like a Jupyter bash kernel. An interrupted execution
 * gets no error event (its end says interrupted). `exit` in the code ends the shell: a
 * KernelDied error "the bash context exited (exit N)", and contexts.c starts a fresh one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "ctx-proc.h"
#include "ctx-shell.h"
#include "kernel.h"

#define MAX_LINE 4096 /* the shell's answers are short */
#define MAX_REQUEST (16 * 1024 * 1024) /* code and envs under 1 MiB each, quoted: at most 4 times as long */

struct kernel {
        struct kproc *kp;
        char token[BASH_TOKEN_LEN + 1];
        uint64_t count; /* executions so far: the execution_count */
};

/* "TOKEN WORD [N [STATUS]]". */
static enum kproc_line classify(void *userdata, const char *line, size_t len, uint64_t seq, json_t **ret_ev,
                                int *ret_status) {
        struct kernel *k = userdata;
        char word[8];
        uint64_t n = 0;
        int status = -1, fields;

        if (len <= BASH_TOKEN_LEN || strncmp(line, k->token, BASH_TOKEN_LEN) != 0 || line[BASH_TOKEN_LEN] != ' ')
                return KPROC_LINE_IGNORE;
        fields = sscanf(line + BASH_TOKEN_LEN + 1, "%7s %" SCNu64 " %d", word, &n, &status);
        if (fields >= 1 && streq(word, "ready"))
                return KPROC_LINE_READY;
        if (fields < 2 || n != seq || seq == 0)
                return KPROC_LINE_IGNORE;
        if (streq(word, "begin"))
                return KPROC_LINE_BEGIN;
        if (streq(word, "sync"))
                return KPROC_LINE_SYNC;
        if (streq(word, "end") && fields == 3) {
                *ret_status = status;
                return KPROC_LINE_END;
        }
        return KPROC_LINE_IGNORE;
}

static void bash_stop(struct kernel *k) {
        if (!k)
                return;
        kproc_stop(k->kp);
        free(k);
}

static int bash_start(const struct kernel_config *cfg, int64_t timeout_ms, struct kernel **ret, char **ret_error) {
        static const char alphabet[] = "0123456789abcdef";
        char *argv[] = {"/bin/bash", "--noprofile", "--norc", "--noediting", "-i", NULL};
        _cleanup_buf_ struct buf init = {};
        struct kernel *k;
        int r;

        *ret_error = NULL;
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        buf_init(&init, 4096);
        r = random_string(k->token, BASH_TOKEN_LEN, alphabet);
        if (r >= 0)
                r = bash_init_text(&init, k->token);
        if (r >= 0) {
                struct kproc_spec spec = {
                        .name = "bash",
                        .argv = argv,
                        .cfg = cfg,
                        .line = classify,
                        .userdata = k,
                        .init = init.data,
                        .max_line = MAX_LINE,
                };
                r = kproc_start(&spec, timeout_ms, &k->kp, ret_error);
        }
        if (r < 0) {
                free(k);
                return r;
        }
        *ret = k;
        return 0;
}

static int bash_execute(struct kernel *k, const char *code, json_t *envs, int64_t timeout_ms,
                        const struct kernel_sink *sink, struct kernel_outcome *out) {
        _cleanup_buf_ struct buf req = {}, sync = {};
        struct kproc_result res;
        char msg[64];
        uint64_t seq = ++k->count;
        int r;

        buf_init(&req, MAX_REQUEST);
        buf_init(&sync, 4096);
        r = bash_request_text(&req, k->token, seq, code, envs);
        if (r >= 0)
                r = bash_sync_text(&sync, k->token, seq);
        if (r < 0)
                return r;
        r = kproc_execute(k->kp, seq, req.data, req.len, sync.data, timeout_ms, sink, &res);
        if (r < 0)
                return r;

        kproc_outcome(&res, seq, "bash context", sink, out);
        if (!res.died && !res.interrupted && res.status != 0) {
                snprintf(msg, sizeof(msg), "exit status %d", res.status);
                (void) kproc_emit_error(sink, "ExitCode", msg);
                out->error = true;
        }
        return 0;
}

static bool bash_alive(struct kernel *k) {
        return kproc_alive(k->kp);
}

const struct kernel_ops kernel_bash_ops = {
        .language = "bash",
        .start = bash_start,
        .execute = bash_execute,
        .alive = bash_alive,
        .stop = bash_stop,
};
