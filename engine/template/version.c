/* version.c — template versions on disk: names and paths, which version is current, how a
 * new one becomes current (install, import), and the lock that keeps sandboxes and garbage
 * collection apart. The layout is in template.h.
 *
 * Why every version lives at one path for its whole life, with a symlink naming the current
 * one (rather than the current version at T/<name> and older ones moved aside):
 * - a sandbox mounts its version's own path, which no later build or import moves, so a
 *   create or resume never races with a rename of the version it is mounting;
 * - making a version current is one rename(2) of a symlink over the old one: atomic on
 *   every file system, so T/<name>/rootfs resolves at every instant, for the engine and for
 *   anything else that reads it (the benches, `make run`);
 * - an overlay's lowerdir in /proc/self/mountinfo names the version it uses, so garbage
 *   collection can also see sandboxes of other engines that share the directory (gc.c).
 * A template built before versions existed is a real directory; the first version that
 * replaces it swaps it with the symlink in one renameat2(RENAME_EXCHANGE), then moves it to
 * T/.versions/<name>/legacy. Both steps happen under the exclusive lock, which the engine
 * takes shared to resolve a path and mount it, so no sandbox sees the moment between them
 * (nor, on a file system without RENAME_EXCHANGE, the two plain renames that replace it).
 *
 * Which versions are in use is known to a store; the versions in T belong to the store of
 * the state dir recorded in T/.versions/.state-dir (the first one to install a version). An
 * import or build with another state dir is refused: its sandboxes would not be counted, and
 * the engines of the tests and benches, which share the default template directory with
 * private state dirs, must never remove what a real engine's sandboxes still use.
 */
#include "template/template.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "id.h"
#include "log.h"
#include "timeutil.h"

#define OWNER_FILE ".versions/.state-dir"

int template_name_check(const char *name, struct error *e) {
        size_t n = strlen(name);
        bool ok = n > 0 && n <= 63 && name[0] != '.' && name[0] != '-';

        for (size_t i = 0; ok && i < n; i++)
                ok = strchr("abcdefghijklmnopqrstuvwxyz0123456789._-", name[i]) != NULL;
        if (!ok)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "template name '%.64s' is invalid: use 1-63 characters of a-z, 0-9, '.', '_' and '-'", name);
        return 0;
}

/* A version as found in a symlink or a directory name: what template_version_new makes. */
static bool version_valid(const char *v) {
        size_t n = strlen(v);

        if (n == 0 || n >= TEMPLATE_VERSION_MAX || v[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", v[i]))
                        return false;
        return true;
}

int template_version_new(char ret[TEMPLATE_VERSION_MAX]) {
        char rnd[6];
        time_t t = (time_t) (now_ms() / 1000);
        struct tm tm;
        int r;

        r = random_string(rnd, 5, "abcdefghijklmnopqrstuvwxyz0123456789");
        if (r < 0)
                return r;
        rnd[5] = 0;
        gmtime_r(&t, &tm);
        strftime(ret, TEMPLATE_VERSION_MAX, "%Y%m%dT%H%M%SZ-", &tm);
        strncat(ret, rnd, TEMPLATE_VERSION_MAX - strlen(ret) - 1);
        return 0;
}

int template_lock(const char *template_dir, bool exclusive, struct error *e) {
        int fd = open(template_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return errno == ENOENT ? error_set(e, ENOENT, ERR_NOT_FOUND, "template directory %s does not exist", template_dir)
                                       : error_set(e, errno, ERR_INTERNAL, "cannot open %s: %s", template_dir, strerror(errno));
        while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0)
                if (errno != EINTR) {
                        int r = error_set(e, errno, ERR_INTERNAL, "cannot lock %s: %s", template_dir, strerror(errno));
                        close(fd);
                        return r;
                }
        return fd;
}

static int not_found(const char *name, struct error *e) {
        return error_set(e, ENOENT, ERR_NOT_FOUND,
                         "template '%s' does not exist (build it with `ai2ind template build %s` or import one with "
                         "`ai2ind template import %s DIR`)",
                         name, name, name);
}

static bool is_dir(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The version T/<name> names: "" for a real directory (legacy), the last component of its
 * symlink's target otherwise. -ENOENT when there is neither. */
static int current_of(const char *template_dir, const char *name, char ret[TEMPLATE_VERSION_MAX], struct error *e) {
        char path[PATH_MAX], target[PATH_MAX], want[PATH_MAX];
        struct stat st;
        ssize_t n;

        snprintf(path, sizeof(path), "%s/%s", template_dir, name);
        if (lstat(path, &st) < 0)
                return not_found(name, e);
        if (S_ISDIR(st.st_mode)) {
                ret[0] = 0;
                return 0;
        }
        n = S_ISLNK(st.st_mode) ? readlink(path, target, sizeof(target) - 1) : -1;
        if (n < 0)
                return error_set(e, EINVAL, ERR_INTERNAL, "%s is neither a template directory nor a link to a version", path);
        target[n] = 0;
        n = snprintf(want, sizeof(want), ".versions/%s/", name);
        if (strncmp(target, want, (size_t) n) != 0 || !version_valid(target + n))
                return error_set(e, EINVAL, ERR_INTERNAL, "%s links to %s, which is not a version of it", path, target);
        snprintf(ret, TEMPLATE_VERSION_MAX, "%s", target + n);
        return 0;
}

int template_current(const char *template_dir, const char *name, char ret_version[TEMPLATE_VERSION_MAX], struct error *e) {
        char version[TEMPLATE_VERSION_MAX], rootfs[PATH_MAX];
        int r;

        if ((r = template_name_check(name, e)) < 0 || (r = current_of(template_dir, name, version, e)) < 0)
                return r;
        snprintf(rootfs, sizeof(rootfs), "%s/%s/rootfs", template_dir, name);
        if (!is_dir(rootfs))
                return not_found(name, e);
        snprintf(ret_version, TEMPLATE_VERSION_MAX, "%s", version);
        return 0;
}

/* The path of version's directory (not canonical). */
static void version_dir(const char *template_dir, const char *name, const char *version, char *ret, size_t n) {
        snprintf(ret, n, "%s/.versions/%s/%s", template_dir, name, *version ? version : TEMPLATE_LEGACY);
}

int template_rootfs(const char *template_dir, const char *name, const char *version, char *ret, size_t n, struct error *e) {
        char real[PATH_MAX], path[PATH_MAX * 2];
        struct stat st;
        int r;

        if ((r = template_name_check(name, e)) < 0)
                return r;
        if (*version && !version_valid(version))
                return error_set(e, EINVAL, ERR_INTERNAL, "'%.64s' is not a template version", version);
        /* Canonical: the mount's lowerdir is what gc.c compares with. */
        if (!realpath(template_dir, real))
                return errno == ENOENT ? error_set(e, ENOENT, ERR_CONFLICT, "version %s of template '%s' is gone: %s does not exist",
                                                   *version ? version : TEMPLATE_LEGACY, name, template_dir)
                                       : error_set(e, errno, ERR_INTERNAL, "cannot resolve %s: %s", template_dir, strerror(errno));
        snprintf(path, sizeof(path), "%s/%s", real, name);
        if (!*version && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
                snprintf(path, sizeof(path), "%s/%s/rootfs", real, name); /* still in place */
        else {
                version_dir(real, name, version, path, sizeof(path));
                strncat(path, "/rootfs", sizeof(path) - strlen(path) - 1);
        }
        if (!is_dir(path))
                return error_set(e, ENOENT, ERR_CONFLICT, "version %s of template '%s' is gone from %s",
                                 *version ? version : TEMPLATE_LEGACY, name, template_dir);
        if ((size_t) snprintf(ret, n, "%s", path) >= n)
                return error_set(e, ENAMETOOLONG, ERR_INTERNAL, "%s: path too long", path);
        return 0;
}

/* -- ownership of the versions ---------------------------------------------------------- */

/* The owner's state dir into ret ("" when none is recorded). */
static int owner_read(const char *template_dir, char *ret, size_t n) {
        char path[PATH_MAX];
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r;

        snprintf(path, sizeof(path), "%s/" OWNER_FILE, template_dir);
        r = read_file(path, PATH_MAX, &data, &len);
        ret[0] = 0;
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        while (len > 0 && data[len - 1] == '\n')
                data[--len] = 0;
        snprintf(ret, n, "%s", data);
        return 0;
}

int template_owner_check(const struct template_ctx *c, struct error *e) {
        char owner[PATH_MAX], mine[PATH_MAX];
        int r = owner_read(c->dir, owner, sizeof(owner));

        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot read %s/" OWNER_FILE ": %s", c->dir, strerror(-r));
        if (!realpath(c->state_dir, mine))
                return error_set(e, errno, ERR_INTERNAL, "cannot resolve the state dir %s: %s", c->state_dir, strerror(errno));
        if (!*owner)
                return 0;
        if (!streq(owner, mine))
                return error_set(e, EPERM, ERR_CONFLICT,
                                 "the template versions in %s belong to the engine whose state dir is %s (its store says which "
                                 "versions sandboxes use), not %s: run this with --state-dir %s",
                                 c->dir, owner, mine, owner);
        return 1;
}

static int owner_claim(const struct template_ctx *c, struct error *e) {
        char path[PATH_MAX], mine[PATH_MAX + 1];
        int r;

        if (!realpath(c->state_dir, mine))
                return error_set(e, errno, ERR_INTERNAL, "cannot resolve the state dir %s: %s", c->state_dir, strerror(errno));
        strncat(mine, "\n", sizeof(mine) - strlen(mine) - 1);
        snprintf(path, sizeof(path), "%s/" OWNER_FILE, c->dir);
        r = write_file_atomic(path, mine, strlen(mine), 0644);
        return r < 0 ? error_set(e, r, ERR_INTERNAL, "cannot write %s: %s", path, strerror(-r)) : 0;
}

/* -- making a version current ----------------------------------------------------------- */

/* mkdir with mode set whatever the umask (the engine's is 077): the sandboxes' root must
 * pass through to a rootfs that runc uses directly (the benches' baseline). */
static int make_dir(const char *path, struct error *e) {
        if ((mkdir(path, 0755) < 0 && errno != EEXIST) || chmod(path, 0755) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot create %s: %s", path, strerror(errno));
        return 0;
}

int template_install_check(const struct template_ctx *c, const char *name, struct error *e) {
        char path[PATH_MAX], legacy[PATH_MAX];
        struct stat st;
        int r;

        if ((r = template_name_check(name, e)) < 0 || (r = template_owner_check(c, e)) < 0)
                return r;
        snprintf(path, sizeof(path), "%s/%s", c->dir, name);
        if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
                return error_set(e, EEXIST, ERR_CONFLICT, "%s exists and is neither a template nor a link to one", path);
        version_dir(c->dir, name, "", legacy, sizeof(legacy));
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && lstat(legacy, &st) == 0)
                return error_set(e, EEXIST, ERR_CONFLICT,
                                 "%s is a template made before versions, and %s exists already: move one of them away first", path,
                                 legacy);
        return 0;
}

/* Makes T/.versions/<name>/<version> current, with the exclusive lock held. */
static int publish(const struct template_ctx *c, const char *name, const char *version, struct error *e) {
        char cur[PATH_MAX], link[PATH_MAX], target[PATH_MAX], legacy[PATH_MAX];
        struct stat st;

        snprintf(cur, sizeof(cur), "%s/%s", c->dir, name);
        snprintf(link, sizeof(link), "%s/.%s.link-%s", c->dir, name, version);
        snprintf(target, sizeof(target), ".versions/%s/%s", name, version);
        unlink(link);
        if (symlink(target, link) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot create %s: %s", link, strerror(errno));
        if (lstat(cur, &st) < 0 || !S_ISDIR(st.st_mode)) {
                /* No template yet, or a link to its current version: replaced atomically. */
                if (rename(link, cur) == 0)
                        return 0;
                unlink(link);
                return error_set(e, errno, ERR_INTERNAL, "cannot make %s current: %s", target, strerror(errno));
        }
        /* A legacy template: swapped with the link, then moved to its place among versions. */
        version_dir(c->dir, name, "", legacy, sizeof(legacy));
        if (renameat2(AT_FDCWD, link, AT_FDCWD, cur, RENAME_EXCHANGE) == 0) {
                if (rename(link, legacy) == 0)
                        return 0;
                int r = error_set(e, errno, ERR_INTERNAL, "cannot move the legacy template %s to %s: %s", link, legacy, strerror(errno));
                renameat2(AT_FDCWD, link, AT_FDCWD, cur, RENAME_EXCHANGE); /* back as it was */
                unlink(link);
                return r;
        }
        if (errno != EINVAL && errno != ENOSYS) {
                int r = error_set(e, errno, ERR_INTERNAL, "cannot make %s current: %s", target, strerror(errno));
                unlink(link);
                return r;
        }
        /* No RENAME_EXCHANGE here: two renames, which the engine does not see apart (it
         * resolves paths under the shared lock). */
        if (rename(cur, legacy) < 0) {
                int r = error_set(e, errno, ERR_INTERNAL, "cannot move the legacy template %s to %s: %s", cur, legacy, strerror(errno));
                unlink(link);
                return r;
        }
        if (rename(link, cur) == 0)
                return 0;
        int r = error_set(e, errno, ERR_INTERNAL, "cannot make %s current: %s", target, strerror(errno));
        rename(legacy, cur);
        unlink(link);
        return r;
}

static int install_locked(const struct template_ctx *c, const char *name, const char *version, const char *staged,
                          struct error *e) {
        char dir[PATH_MAX];
        int owned, r;

        /* Checked again under the lock: another install may have claimed the versions. */
        if ((r = template_install_check(c, name, e)) < 0 || (owned = template_owner_check(c, e)) < 0)
                return r < 0 ? r : owned;
        snprintf(dir, sizeof(dir), "%s/.versions", c->dir);
        if ((r = make_dir(dir, e)) < 0 || (!owned && (r = owner_claim(c, e)) < 0))
                return r;
        snprintf(dir, sizeof(dir), "%s/.versions/%s", c->dir, name);
        if ((r = make_dir(dir, e)) < 0)
                return r;
        version_dir(c->dir, name, version, dir, sizeof(dir));
        if (rename(staged, dir) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot move %s to %s: %s", staged, dir, strerror(errno));
        r = publish(c, name, version, e);
        if (r < 0 && rename(dir, staged) < 0)
                error_wrap(e, "(and %s could not go back to %s: %s)", dir, staged, strerror(errno));
        return r;
}

int template_install(const struct template_ctx *c, const char *name, const char *version, const char *staged, struct error *e) {
        struct error gc = {0};
        int lock, r;

        lock = template_lock(c->dir, true, e);
        if (lock < 0)
                return lock;
        r = install_locked(c, name, version, staged, e);
        close(lock);
        if (r < 0)
                return r;
        if (template_gc(c, name, &gc) < 0)
                log_warn("%s; the versions nobody uses stay until the next import or engine start", gc.message);
        return 0;
}

int template_write_meta(const char *dir, const char *name, const char *version, const char *source, json_t *extra,
                        int64_t uid_base, struct error *e) {
        char path[PATH_MAX], when[RFC3339_LEN + 1];
        unsigned long long size = 0;
        json_t *j;
        char *text;
        int r;

        snprintf(path, sizeof(path), "%s/rootfs", dir);
        disk_usage(path, &size);
        format_rfc3339(now_ms(), when);
        j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "name", name, "version", version, "built_at", when, "source", source,
                      "uid_base", (json_int_t) uid_base, "size_bytes", (json_int_t) size);
        if (j && extra)
                json_object_update(j, extra);
        text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        json_decref(j);
        if (!text)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        snprintf(path, sizeof(path), "%s/template.json", dir);
        r = write_file_atomic(path, text, strlen(text), 0644);
        free(text);
        return r < 0 ? error_set(e, r, ERR_INTERNAL, "cannot write %s: %s", path, strerror(-r)) : 0;
}

/* -- import ----------------------------------------------------------------------------- */

/* dir is a directory owned by the sandboxes' root, on the template directory's file system,
 * neither inside it nor holding it; its canonical path goes to ret. */
static int check_source(const struct template_ctx *c, const char *dir, char ret[PATH_MAX], struct error *e) {
        char tdir[PATH_MAX];
        struct stat st, tst;
        size_t n;

        if (lstat(dir, &st) < 0)
                return error_set(e, errno, ERR_BAD_REQUEST, "cannot import %s: %s", dir, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return error_set(e, ENOTDIR, ERR_BAD_REQUEST, "cannot import %s: it is not a directory%s", dir,
                                 S_ISLNK(st.st_mode) ? " (a symlink: give the directory it points to)" : "");
        if (st.st_uid != (uid_t) c->uid_base || st.st_gid != (gid_t) c->uid_base)
                return error_set(e, EPERM, ERR_BAD_REQUEST,
                                 "cannot import %s: it is owned by %u:%u, and a template's root must be owned by the sandboxes' "
                                 "root, %lld:%lld (--uid-base), with every file below shifted the same way (as `template build` "
                                 "makes it)",
                                 dir, (unsigned) st.st_uid, (unsigned) st.st_gid, (long long) c->uid_base, (long long) c->uid_base);
        if (stat(c->dir, &tst) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot use the template directory %s: %s", c->dir, strerror(errno));
        if (st.st_dev != tst.st_dev)
                return error_set(e, EXDEV, ERR_BAD_REQUEST,
                                 "cannot import %s: it is on another file system than the template directory %s; it is moved in "
                                 "with a rename, never copied: put it on that file system first",
                                 dir, c->dir);
        if (!realpath(dir, ret) || !realpath(c->dir, tdir))
                return error_set(e, errno, ERR_INTERNAL, "cannot resolve %s: %s", dir, strerror(errno));
        n = strlen(tdir);
        if ((strncmp(ret, tdir, n) == 0 && (ret[n] == '/' || ret[n] == 0)) ||
            (strncmp(tdir, ret, strlen(ret)) == 0 && (tdir[strlen(ret)] == '/' || streq(ret, "/"))))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "cannot import %s: it is inside the template directory %s, or holds it",
                                 dir, c->dir);
        return 0;
}

/* Stages dir as T/.<name>.import-<version>/rootfs with its template.json, and installs it. */
static int import_staged(const struct template_ctx *c, const char *name, const char *version, const char *src, struct error *e) {
        char staged[PATH_MAX], rootfs[PATH_MAX + 16];
        int r;

        snprintf(staged, sizeof(staged), "%s/.%s.import-%s", c->dir, name, version);
        snprintf(rootfs, sizeof(rootfs), "%s/rootfs", staged);
        if (mkdir(staged, 0755) < 0 || chmod(staged, 0755) < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot create %s: %s", staged, strerror(errno));
        if (rename(src, rootfs) < 0) {
                r = error_set(e, errno, ERR_BAD_REQUEST, "cannot move %s into the template directory: %s%s", src, strerror(errno),
                              errno == EXDEV ? " (it must be on the same mount of the same file system: it is renamed, never "
                                               "copied)"
                                             : "");
                rmdir(staged);
                return r;
        }
        json_t *extra = json_pack("{s:s}", "imported_from", src);
        r = template_write_meta(staged, name, version, "import", extra, c->uid_base, e);
        json_decref(extra);
        if (r >= 0)
                r = template_install(c, name, version, staged, e);
        if (r < 0) {
                if (rename(rootfs, src) < 0)
                        error_wrap(e, "(%s stays at %s: %s)", src, rootfs, strerror(errno));
                else
                        rm_rf(staged);
        }
        return r;
}

int template_import(const struct template_ctx *c, const char *name, const char *dir, struct error *e) {
        char src[PATH_MAX], version[TEMPLATE_VERSION_MAX];
        int64_t t0 = mono_ms();
        int r;

        if ((r = template_install_check(c, name, e)) < 0 || (r = check_source(c, dir, src, e)) < 0)
                return r;
        r = template_version_new(version);
        if (r < 0)
                return error_set(e, r, ERR_INTERNAL, "cannot make a version id: %s", strerror(-r));
        r = import_staged(c, name, version, src, e);
        if (r < 0)
                return r;
        printf("template '%s' version %s imported from %s and current, in %.1f s\n", name, version, src,
               (mono_ms() - t0) / 1000.0);
        return 0;
}
