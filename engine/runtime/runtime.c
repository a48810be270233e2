/* runtime.c — picks the runtime implementation (a driver per file: runc.c, runsc.c) from the
 * binary's name, and maps the names users give runtimes to the drivers' kinds. */
#include "runtime/runtime.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "fsutil.h"
#include "macro.h"
#include "spawn.h"

int runtime_new(const char *binary, const char *root, const char *cgroup_parent, struct runtime **ret, struct error *e) {
        _cleanup_free_ char *copy = strdup(binary);
        const struct runtime_ops *ops;
        struct runtime *rt;
        const char *base;
        int r;

        if (!copy)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        base = basename(copy);
        if (streq(base, "runc"))
                ops = &runc_ops;
        else if (streq(base, "runsc"))
                ops = &runsc_ops;
        else
                return error_set(e, ENOTSUP, ERR_INTERNAL, "runtime '%s' is not supported (runc and runsc are; crun is planned)",
                                 binary);
        r = mkdir_p(root, 0700);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create runtime root %s: %s", root, strerror(-r));
        rt = calloc(1, sizeof(*rt));
        if (!rt)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        rt->ops = ops;
        rt->binary = strdup(binary);
        rt->root = strdup(root);
        rt->cgroup_parent = strdup(cgroup_parent);
        if (!rt->binary || !rt->root || !rt->cgroup_parent) {
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
        free(rt->cgroup_parent);
        free(rt);
}

const char *runtime_kind_of(const char *name) {
        if (!name)
                return NULL;
        if (streq(name, "runc"))
                return "runc";
        if (streq(name, "gvisor") || streq(name, "runsc"))
                return "gvisor";
        return NULL;
}

bool runtime_installed(const char *binary) {
        const char *path = getenv("PATH");
        char full[4096];

        if (strchr(binary, '/'))
                return access(binary, X_OK) == 0;
        for (const char *p = path && *path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; *p;) {
                size_t len = strcspn(p, ":");

                if (len > 0 && snprintf(full, sizeof(full), "%.*s/%s", (int) len, p, binary) < (int) sizeof(full) &&
                    access(full, X_OK) == 0)
                        return true;
                p += len + (p[len] == ':');
        }
        return false;
}

int runtime_run(struct runtime *rt, char *const argv[], const struct spawn_opts *o, int *status, struct buf *out,
                struct error *e) {
        int r = spawn_run(argv, o, status, out);

        return r < 0 ? error_set(e, r, ERR_INTERNAL, "cannot run %s: %s", rt->binary, strerror(-r)) : 0;
}

int runtime_oci_state(struct runtime *rt, char **argv, const char *id, enum container_status *ret, pid_t *ret_pid,
                      struct error *e) {
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = -1, .timeout_ms = 10000};
        _cleanup_buf_ struct buf out;
        json_t *j;
        const char *st;
        int status, r;

        buf_init(&out, 1024 * 1024);
        r = runtime_run(rt, argv, &o, &status, &out, e);
        if (r < 0)
                return r;
        *ret_pid = 0;
        if (status != 0) {
                *ret = CONTAINER_MISSING;
                return 0;
        }
        j = json_loadb(out.data, out.len, 0, NULL);
        st = json_string_value(json_object_get(j, "status"));
        if (!st) {
                json_decref(j);
                return error_set(e, EIO, ERR_INTERNAL, "%s state %s: unreadable answer", rt->binary, id);
        }
        *ret = streq(st, "running")  ? CONTAINER_RUNNING
               : streq(st, "created") ? CONTAINER_CREATED
               : streq(st, "paused")  ? CONTAINER_PAUSED
                                      : CONTAINER_STOPPED;
        if (*ret == CONTAINER_RUNNING || *ret == CONTAINER_PAUSED)
                *ret_pid = (pid_t) json_integer_value(json_object_get(j, "pid"));
        json_decref(j);
        return 0;
}
