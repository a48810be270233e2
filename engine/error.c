/* error.c — see error.h. */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(struct error *e, int err, int status, const char *code, const char *fmt, ...) {
        va_list ap;

        err = err < 0 ? -err : err;
        if (err == 0)
                err = EINVAL;
        if (!e)
                return -err;
        e->err = err;
        e->status = status;
        e->code = code;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof(e->message), fmt, ap);
        va_end(ap);
        return -err;
}

int error_wrap(struct error *e, const char *fmt, ...) {
        char prefix[512], old[sizeof(e->message)];
        va_list ap;

        if (!e)
                return -EIO;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        memcpy(old, e->message, sizeof(old));
        snprintf(e->message, sizeof(e->message), "%s: %s", prefix, old);
        return -(e->err ? e->err : EIO);
}

void error_clear(struct error *e) {
        *e = (struct error){0};
}
