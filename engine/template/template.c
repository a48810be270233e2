/* template.c — building a template version with mmdebstrap (see template.h): the base
 * recipe is in base_packages and base_hook. The new version is staged in T/.<name>.build and
 * installed as every version is (version.c). */
#define _XOPEN_SOURCE 700
#include "template/template.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "spawn.h"
#include "timeutil.h"

static const char base_packages[] =
        "bash,coreutils,procps,iproute2,ca-certificates,curl,less,python3,"
        "python3-ipykernel,python3-numpy,python3-pandas,python3-matplotlib,nodejs";

/* Run by mmdebstrap inside the new tree: the unprivileged account and a few files a
 * container needs. */
static const char base_hook[] =
        "chroot \"$1\" useradd --create-home --uid 1000 --user-group --shell /bin/bash sandbox && "
        "printf '127.0.0.1 localhost sandbox\\n::1 localhost\\n' > \"$1/etc/hosts\" && "
        "echo sandbox > \"$1/etc/hostname\" && mkdir -p \"$1/.ai2in\" && : > \"$1/.ai2in/ai2in-agent\"";

/* nftw's callback takes no context: the shift's state, one shift at a time (template builds
 * hold the template lock). */
static int64_t shift_base;
static unsigned long shift_files;
static int shift_error;

/* Inodes with more than one name, already shifted: nftw visits a hard-linked file once per
 * name, and each visit would add uid-base again (mmdebstrap's tree has such files: perl,
 * perlbug). */
struct inode_id {
        dev_t dev;
        ino_t ino;
};
static struct inode_id *shifted_links;
static size_t n_shifted_links, cap_shifted_links;

static bool link_seen(const struct stat *st) {
        for (size_t i = 0; i < n_shifted_links; i++)
                if (shifted_links[i].dev == st->st_dev && shifted_links[i].ino == st->st_ino)
                        return true;
        return false;
}

static int link_add(const struct stat *st) {
        if (n_shifted_links == cap_shifted_links) {
                size_t cap = cap_shifted_links ? cap_shifted_links * 2 : 64;
                struct inode_id *p = reallocarray(shifted_links, cap, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                shifted_links = p;
                cap_shifted_links = cap;
        }
        shifted_links[n_shifted_links++] = (struct inode_id){st->st_dev, st->st_ino};
        return 0;
}

static int shift_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
                if (link_seen(st))
                        return 0;
                if ((shift_error = link_add(st)) < 0)
                        return 1;
        }
        if (lchown(path, (uid_t) (st->st_uid + shift_base), (gid_t) (st->st_gid + shift_base)) < 0) {
                shift_error = -errno;
                return 1;
        }
        /* chown clears set-id bits of executables: put them back. */
        if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) && chmod(path, st->st_mode & 07777) < 0) {
                shift_error = -errno;
                return 1;
        }
        shift_files++;
        return 0;
}

int template_shift(const char *root, int64_t uid_base, unsigned long *ret_files, struct error *e) {
        int r;

        shift_base = uid_base;
        shift_files = 0;
        shift_error = 0;
        n_shifted_links = 0;
        r = nftw(root, shift_one, 64, FTW_PHYS | FTW_MOUNT);
        free(shifted_links);
        shifted_links = NULL;
        n_shifted_links = cap_shifted_links = 0;
        if (r != 0)
                return error_set(e, shift_error ? shift_error : EIO, ERR_INTERNAL, "cannot shift ownership under %s: %s", root,
                                 strerror(shift_error ? -shift_error : EIO));
        if (ret_files)
                *ret_files = shift_files;
        return 0;
}

/* mmdebstrap into staged/rootfs, shifted into the sandboxes' uid range, with its template.json. */
static int build_staged(const struct template_ctx *c, const char *name, const char *version, const char *staged, struct error *e) {
        char rootfs[PATH_MAX], hook[1024];
        /* mmdebstrap takes a minute or two; an hour means something hangs (a dead mirror). */
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = -1, .passthrough = true, .timeout_ms = 60 * 60 * 1000};
        unsigned long files = 0;
        int status, r;

        snprintf(rootfs, sizeof(rootfs), "%s/rootfs", staged);
        printf("[1/3] building template '%s' with mmdebstrap (Debian bookworm: %s); this takes a minute or two\n", name, base_packages);
        fflush(stdout);
        snprintf(hook, sizeof(hook), "--customize-hook=%s", base_hook);
        char *argv[] = {"mmdebstrap", "--variant=minbase", "--include", (char *) base_packages, hook, "bookworm", rootfs, NULL};
        r = spawn_run(argv, &o, &status, NULL);
        if (r < 0 || status != 0)
                return error_set(e, r < 0 ? r : EIO, ERR_INTERNAL, "mmdebstrap failed (%s); is the Debian mirror reachable?",
                                 r < 0 ? strerror(-r) : "see its output above");
        printf("[2/3] shifting ownership into the sandboxes' uid range (base %lld)\n", (long long) c->uid_base);
        fflush(stdout);
        r = template_shift(rootfs, c->uid_base, &files, e);
        if (r < 0)
                return r;
        printf("[3/3] %lu files; recording version %s\n", files, version);
        fflush(stdout);
        json_t *extra = json_pack("{s:s, s:s}", "suite", "bookworm", "packages", base_packages);
        r = template_write_meta(staged, name, version, "mmdebstrap", extra, c->uid_base, e);
        json_decref(extra);
        return r;
}

int template_build(const struct template_ctx *c, const char *name, bool force, struct error *e) {
        char dest[PATH_MAX], staged[PATH_MAX], version[TEMPLATE_VERSION_MAX];
        int64_t t0 = mono_ms();
        struct stat st;
        int r;

        if (!streq(name, "base"))
                return error_set(e, ENOENT, ERR_NOT_FOUND, "no recipe for template '%s' (only 'base' can be built today)", name);
        umask(022); /* a root file system's own modes, not the engine's 077 */
        snprintf(dest, sizeof(dest), "%s/%s", c->dir, name);
        if (stat(dest, &st) == 0 && !force) {
                printf("template '%s' already exists at %s (use --force to build a new version)\n", name, dest);
                return 0;
        }
        r = mkdir_p(c->dir, 0755);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", c->dir, strerror(-r));
        /* Refused now rather than after the build: another state dir's versions, say. */
        if ((r = template_install_check(c, name, e)) < 0)
                return r;
        r = template_version_new(version);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot make a version id: %s", strerror(-r));
        snprintf(staged, sizeof(staged), "%s/.%s.build", c->dir, name);
        rm_rf(staged);
        r = mkdir_p(staged, 0755);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", staged, strerror(-r));
        r = build_staged(c, name, version, staged, e);
        if (r >= 0)
                r = template_install(c, name, version, staged, e);
        if (r < 0) {
                rm_rf(staged);
                return r;
        }
        printf("template '%s' version %s ready at %s, in %.1f s\n", name, version, dest, (mono_ms() - t0) / 1000.0);
        return 0;
}
