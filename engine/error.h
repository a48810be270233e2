/* error.h — the one error type of the engine: an errno, an HTTP status hint, a machine code
 * and a message that says what failed and on what. Set where the failure happens, wrapped
 * with context on the way up (error_wrap), turned into JSON in exactly one place (api/).
 */
#pragma once

#include <stdbool.h>

#include "macro.h"

struct error {
        int err;           /* positive errno, or 0 */
        int status;        /* HTTP status to answer with */
        const char *code;  /* "bad_request", "not_found", … (static string) */
        char message[1024];
};

#define ERR_BAD_REQUEST 400, "bad_request"
#define ERR_UNAUTHORIZED 401, "unauthorized"
#define ERR_NOT_FOUND 404, "not_found"
#define ERR_METHOD 405, "method_not_allowed"
#define ERR_CONFLICT 409, "conflict"
#define ERR_TOO_LARGE 413, "payload_too_large"
#define ERR_LIMIT 429, "limit_exceeded"
#define ERR_INTERNAL 500, "internal"
#define ERR_NOT_IMPLEMENTED 501, "not_implemented"
#define ERR_SANDBOX 502, "sandbox_error"
#define ERR_UNAVAILABLE 503, "unavailable"
#define ERR_OTHER_NODE 503, "other_node"       /* the sandbox is another node's (cluster/node.h) */
#define ERR_NODE_DOWN 503, "node_down"         /* the sandbox's node is down */
#define ERR_NODE 502, "node_error"            /* the owner node of a forwarded request failed */
#define ERR_FORBIDDEN 403, "forbidden"         /* a wrong cluster secret */
#define ERR_NODE_CORDONED 503, "node_cordoned" /* this node takes no new sandboxes */
#define ERR_NODE_FULL 503, "node_full"         /* this node runs its capacity of sandboxes */

/* Fills e (if not NULL) and returns -abs(err) (or -EINVAL when err is 0), so that
 * `return error_set(e, r, ERR_INTERNAL, "…")` is the idiom. */
int error_set(struct error *e, int err, int status, const char *code, const char *fmt, ...) _printf_(5, 6);

/* Prefixes e's message with context ("context: old message"); returns -e->err. */
int error_wrap(struct error *e, const char *fmt, ...) _printf_(2, 3);

/* Clears e. */
void error_clear(struct error *e);
