/* ctx-request.h — the bodies of POST /execute and POST /contexts, validated (docs/api.md,
 * "Running code"): every rule a request can break is a 400 (or 404 for an unknown context,
 * decided by contexts.c) before anything runs. Null counts as absent; unknown fields are
 * refused. Strings may not hold NUL: bodies are parsed with JSON_ALLOW_NUL so that a "\u0000"
 * gets a message naming the field rather than jansson's.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "../http.h"
#include "kernel.h"
#include "../proc-spawn.h"

#define CTX_MAX_CODE (1024 * 1024) /* code must be shorter */
#define CTX_DEFAULT_TIMEOUT_MS 300000
#define CTX_MAX_TIMEOUT_MS 86400000
#define CTX_MAX_ENVS 4096
#define CTX_MAX_STRING 4096 /* cwd, user, context_id */

/* A validated POST /execute body; strings and envs point into the parsed JSON. */
struct exec_request {
        const char *code;
        const struct kernel_ops *ops; /* NULL: not given (python, unless context_id) */
        const char *context_id;       /* NULL: the language's default context */
        json_t *envs;                 /* NULL: none */
        int64_t timeout_ms;           /* 0: none */
};

/* A validated POST /contexts body. */
struct create_request {
        const struct kernel_ops *ops; /* never NULL */
        const char *cwd;              /* NULL: the default */
        const char *user;             /* never NULL */
};

/* The backend of a language name: python, bash, javascript, or the aliases js and sh, in
 * any case. NULL for anything else. */
const struct kernel_ops *ctx_language(const char *name);

/* The request's body as a JSON object ({} when empty), or NULL with a 400 in err. */
json_t *ctx_load_body(const struct http_request *req, struct proc_error *err);

/* Validate a parsed body; -EINVAL with a 400 in err naming the field. */
int ctx_parse_execute(json_t *body, struct exec_request *ret, struct proc_error *err);
int ctx_parse_create(json_t *body, struct create_request *ret, struct proc_error *err);
