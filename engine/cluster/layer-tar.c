/* layer-tar.c — see layer-tar.h. */
#include "cluster/layer-tar.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "spawn.h"

/* A layer of many gigabytes over a slow link: generous, but a hung tar still ends. */
#define TAR_TIMEOUT_MS (6 * 3600 * 1000)
#define TAR_OUTPUT_MAX (16 * 1024)

struct layer_tar {
        pthread_t thread;
        int child_fd; /* tar's end of the pipe: closed by the thread once tar has ended */
        bool extract;
        char dir[4096];
        int r, status;
        struct buf output;
};

static void *run(void *arg) {
        struct layer_tar *t = arg;
        /* Owners by number (the sandbox's uid range, not names of this host), every
         * extended attribute (overlay's trusted.* among them) and ACL; --one-file-system
         * keeps a mount inside the layer (none is expected) out of the archive. */
        char *create[] = {"tar", "--create", "--file=/dev/fd/3", "--format=posix", "--numeric-owner", "--xattrs",
                          "--xattrs-include=*", "--acls", "--sparse", "--one-file-system", "--directory", t->dir, ".", NULL};
        /* --read-full-records: a pipe hands tar short reads, which it takes for a damaged
         * archive ("Unaligned block") when the archive is not its stdin. */
        char *extract[] = {"tar", "--extract", "--file=/dev/fd/3", "--read-full-records", "--numeric-owner", "--same-owner", "--preserve-permissions",
                           "--xattrs", "--xattrs-include=*", "--acls", "--directory", t->dir, NULL};
        struct spawn_opts o = {.extra_fd = t->child_fd, .stdio_fd = -1, .timeout_ms = TAR_TIMEOUT_MS};

        t->r = spawn_run(t->extract ? extract : create, &o, &t->status, &t->output);
        /* The other end now sees EOF (an archive made) or EPIPE (an extraction that ended). */
        close(t->child_fd);
        t->child_fd = -1;
        return NULL;
}

int layer_tar_start(const char *dir, bool extract, struct layer_tar **ret, int *ret_fd, struct error *e) {
        struct layer_tar *t;
        int p[2], r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        if (snprintf(t->dir, sizeof(t->dir), "%s", dir) >= (int) sizeof(t->dir)) {
                free(t);
                return error_set(e, ENAMETOOLONG, ERR_INTERNAL, "path too long: %s", dir);
        }
        if (pipe2(p, O_CLOEXEC) < 0) {
                r = errno;
                free(t);
                return error_set(e, r, ERR_INTERNAL, "cannot make a pipe for tar: %s", strerror(r));
        }
        t->extract = extract;
        t->child_fd = extract ? p[0] : p[1];
        buf_init(&t->output, TAR_OUTPUT_MAX);
        r = pthread_create(&t->thread, NULL, run, t);
        if (r != 0) {
                close(p[0]);
                close(p[1]);
                buf_free(&t->output);
                free(t);
                return error_set(e, r, ERR_INTERNAL, "cannot start a thread for tar: %s", strerror(r));
        }
        *ret_fd = extract ? p[1] : p[0];
        *ret = t;
        return 0;
}

int layer_tar_finish(struct layer_tar *t, struct error *e) {
        char last[512];
        int r = 0;

        pthread_join(t->thread, NULL);
        if (t->r < 0)
                r = error_set(e, t->r, ERR_INTERNAL, "tar on %s: %s", t->dir,
                              t->r == -ETIMEDOUT ? "did not finish in time, killed" : strerror(-t->r));
        else if (t->status != 0) {
                /* tar's first line names the cause; its last says only that it gave up. */
                size_t n = t->output.len < sizeof(last) - 1 ? t->output.len : sizeof(last) - 1;
                memcpy(last, t->output.data ? t->output.data : "", n);
                last[n] = 0;
                for (char *c = last; *c; c++)
                        if (*c == '\n' || (unsigned char) *c < 0x20)
                                *c = ' ';
                r = error_set(e, EIO, ERR_INTERNAL, "tar on %s exited with %d: %s", t->dir, t->status, last);
        }
        buf_free(&t->output);
        free(t);
        return r;
}
