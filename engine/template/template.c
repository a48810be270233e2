/* template.c — see template.h. The base recipe is in base_packages and base_hooks. */
#define _XOPEN_SOURCE 700
#include "template/template.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
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

static int64_t shift_base;
static unsigned long shift_files;
static int shift_error;

static int shift_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
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
        shift_base = uid_base;
        shift_files = 0;
        shift_error = 0;
        if (nftw(root, shift_one, 64, FTW_PHYS | FTW_MOUNT) != 0)
                return error_set(e, shift_error ? shift_error : EIO, ERR_INTERNAL, "cannot shift ownership under %s: %s", root,
                                 strerror(shift_error ? -shift_error : EIO));
        if (ret_files)
                *ret_files = shift_files;
        return 0;
}

static int write_meta(const char *dir, const char *name, int64_t uid_base, unsigned long long size, struct error *e) {
        char path[4200], when[RFC3339_LEN + 1];
        json_t *j;
        char *text;
        int r;

        format_rfc3339(now_ms(), when);
        j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "name", name, "built_at", when, "suite", "bookworm", "packages",
                      base_packages, "uid_base", (json_int_t) uid_base, "size_bytes", (json_int_t) size);
        text = json_dumps(j, JSON_INDENT(2));
        json_decref(j);
        if (!text)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        snprintf(path, sizeof(path), "%s/template.json", dir);
        r = write_file_atomic(path, text, strlen(text), 0644);
        free(text);
        return r < 0 ? error_set(e, r, ERR_INTERNAL, "cannot write %s: %s", path, strerror(-r)) : 0;
}

int template_build(const char *template_dir, const char *name, bool force, int64_t uid_base, struct error *e) {
        char dest[4096], tmp[4200], rootfs[4300], old[4200], hook[1024];
        /* mmdebstrap takes a minute or two; an hour means something hangs (a dead mirror). */
        struct spawn_opts o = {.extra_fd = -1, .stdio_fd = -1, .passthrough = true, .timeout_ms = 60 * 60 * 1000};
        unsigned long files = 0;
        unsigned long long size = 0;
        int64_t t0 = mono_ms();
        struct stat st;
        int status, r;

        if (!streq(name, "base"))
                return error_set(e, ENOENT, ERR_NOT_FOUND, "no recipe for template '%s' (only 'base' can be built today)", name);
        umask(022); /* a root file system's own modes, not the engine's 077 */
        snprintf(dest, sizeof(dest), "%s/%s", template_dir, name);
        if (stat(dest, &st) == 0 && !force) {
                printf("template '%s' already exists at %s (use --force to rebuild)\n", name, dest);
                return 0;
        }
        r = mkdir_p(template_dir, 0755);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", template_dir, strerror(-r));
        snprintf(tmp, sizeof(tmp), "%s/.%s.build", template_dir, name);
        snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmp);
        rm_rf(tmp);
        r = mkdir_p(tmp, 0755);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot create %s: %s", tmp, strerror(-r));

        printf("[1/3] building template '%s' with mmdebstrap (Debian bookworm: %s); this takes a minute or two\n", name, base_packages);
        fflush(stdout);
        snprintf(hook, sizeof(hook), "--customize-hook=%s", base_hook);
        char *argv[] = {"mmdebstrap", "--variant=minbase", "--include", (char *) base_packages, hook, "bookworm", rootfs, NULL};
        r = spawn_run(argv, &o, &status, NULL);
        if (r < 0 || status != 0) {
                rm_rf(tmp);
                return error_set(e, r < 0 ? r : EIO, ERR_INTERNAL, "mmdebstrap failed (%s); is the Debian mirror reachable?",
                                 r < 0 ? strerror(-r) : "see its output above");
        }
        printf("[2/3] shifting ownership into the sandboxes' uid range (base %lld)\n", (long long) uid_base);
        fflush(stdout);
        r = template_shift(rootfs, uid_base, &files, e);
        if (r < 0) {
                rm_rf(tmp);
                return r;
        }
        disk_usage(rootfs, &size);
        r = write_meta(tmp, name, uid_base, size, e);
        if (r < 0) {
                rm_rf(tmp);
                return r;
        }
        snprintf(old, sizeof(old), "%s/.%s.old", template_dir, name);
        rm_rf(old);
        if (stat(dest, &st) == 0 && rename(dest, old) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot move the old template aside: %s", strerror(errno));
        if (rename(tmp, dest) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot move the template into place: %s", strerror(errno));
        rm_rf(old);
        printf("[3/3] template '%s' ready at %s: %lu files, %.0f MiB, in %.1f s\n", name, dest, files, size / 1048576.0,
               (mono_ms() - t0) / 1000.0);
        return 0;
}

int template_list(const char *template_dir, struct error *e) {
        DIR *d = opendir(template_dir);
        struct dirent *de;

        printf("%-16s %10s  %s\n", "NAME", "SIZE", "BUILT");
        if (!d)
                return errno == ENOENT ? 0 : error_set(e, errno, ERR_INTERNAL, "cannot read %s: %s", template_dir, strerror(errno));
        while ((de = readdir(d))) {
                char path[4200];
                json_t *j;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s/template.json", template_dir, de->d_name);
                j = json_load_file(path, 0, NULL);
                printf("%-16s %7.0f MiB  %s\n", de->d_name,
                       (double) json_integer_value(json_object_get(j, "size_bytes")) / 1048576.0,
                       json_string_value(json_object_get(j, "built_at")) ?: "unknown");
                json_decref(j);
        }
        closedir(d);
        return 0;
}
