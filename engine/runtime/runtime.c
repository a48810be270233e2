/* runtime.c — picks the runtime implementation from the binary's name. */
#include "runtime/runtime.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

int runtime_new(const char *binary, const char *root, struct runtime **ret, struct error *e) {
        _cleanup_free_ char *copy = strdup(binary);
        struct runtime *rt;
        const char *base;
        int r;

        if (!copy)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        base = basename(copy);
        if (!streq(base, "runc"))
                return error_set(e, ENOTSUP, ERR_INTERNAL,
                                 "runtime '%s' is not supported yet (runc is; crun and runsc are planned)", binary);
        r = mkdir_p(root, 0700);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create runtime root %s: %s", root, strerror(-r));
        rt = calloc(1, sizeof(*rt));
        if (!rt)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        rt->ops = &runc_ops;
        rt->binary = strdup(binary);
        rt->root = strdup(root);
        if (!rt->binary || !rt->root) {
                runtime_free(rt);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        *ret = rt;
        return 0;
}

void runtime_free(struct runtime *rt) {
        if (!rt)
                return;
        free(rt->binary);
        free(rt->root);
        free(rt);
}
