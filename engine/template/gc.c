/* gc.c — which template versions are in use, removing the others, and `template list`.
 *
 * A version is in use while it is current, while a sandbox of the owning store records it
 * and is not killed (a paused sandbox mounts it again at resume; an error one may be
 * re-adopted), or while an overlay on the host has it as its lower layer (a running sandbox
 * of another engine that shares the directory with a state dir of its own: the tests, the
 * benches). What is in use is decided under the template directory's exclusive lock, which
 * a create holds shared from reading the current version until its row is written, and a
 * mount from resolving the path until the overlay is up: so no sandbox can start using a
 * version that this pass has decided to remove. The decided versions are renamed to
 * `.removing-<version>` under the lock and deleted after it; a pass that dies midway leaves
 * those, which the next pass deletes.
 */
#include "template/template.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "store/store.h"

#define REMOVING ".removing-"
/* Distinct (template, version) pairs and overlay mounts looked at: far more than a host has. */
#define USES_MAX 65536

struct use {
        char *name, *version; /* name NULL: a mounted lowerdir (in version) */
        int64_t n;
        dev_t dev;            /* a mounted lowerdir's directory, if it could be looked at; else 0 */
        ino_t ino;
};

struct uses {
        struct use *v;
        size_t n;
        int err; /* set when an entry could not be added: the list is incomplete */
};

static void uses_free(struct uses *u) {
        for (size_t i = 0; i < u->n; i++) {
                free(u->v[i].name);
                free(u->v[i].version);
        }
        free(u->v);
        *u = (struct uses){0};
}

static int uses_add(struct uses *u, const char *name, const char *version, int64_t n) {
        struct use *more;

        if (u->n >= USES_MAX)
                return -E2BIG;
        more = realloc(u->v, sizeof(*more) * (u->n + 1));
        if (!more)
                return -ENOMEM;
        u->v = more;
        u->v[u->n] = (struct use){.name = name ? strdup(name) : NULL, .version = strdup(version), .n = n};
        if ((name && !u->v[u->n].name) || !u->v[u->n].version) {
                free(u->v[u->n].name);
                free(u->v[u->n].version);
                return -ENOMEM;
        }
        u->n++;
        return 0;
}

static int add_store_use(void *data, const char *name, const char *version, int64_t n) {
        struct uses *u = data;

        u->err = uses_add(u, name, version, n);
        return u->err < 0;
}

/* Sandboxes of the store recording name's version. */
static int64_t store_users(const struct uses *u, const char *name, const char *version) {
        for (size_t i = 0; i < u->n; i++)
                if (u->v[i].name && streq(u->v[i].name, name) && streq(u->v[i].version, version))
                        return u->v[i].n;
        return 0;
}

/* Whether an overlay has path as a lower layer: by name, or (by_inode) by the directory itself: a
 * sandbox's overlay names an idmapped clone of its version (sandbox/idmap.h), attached in the
 * sandbox's directory: the same directory (device and inode) under another path. */
static bool mounted(const struct uses *u, const char *path, bool by_inode) {
        struct stat st;
        bool known = by_inode && stat(path, &st) == 0;

        for (size_t i = 0; i < u->n; i++)
                if (!u->v[i].name && (streq(u->v[i].version, path) ||
                                      (known && u->v[i].ino && u->v[i].dev == st.st_dev && u->v[i].ino == st.st_ino)))
                        return true;
        return false;
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s) {
        char *w = s;

        for (char *p = s; *p; p++)
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
                        *w++ = (char) ((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else
                        *w++ = *p;
        *w = 0;
}

/* Adds the lower layers named in one overlay's super options (lowerdir=a:b, or lowerdir+=a
 * once per layer with the newer mount API). */
static int add_lowers(struct uses *u, char *opts) {
        char *save = NULL, *save2 = NULL;
        int r = 0;

        for (char *opt = strtok_r(opts, ",", &save); opt && r >= 0; opt = strtok_r(NULL, ",", &save)) {
                char *val = !strncmp(opt, "lowerdir=", 9) ? opt + 9 : !strncmp(opt, "lowerdir+=", 10) ? opt + 10 : NULL;

                for (char *dir = val ? strtok_r(val, ":", &save2) : NULL; dir && r >= 0; dir = strtok_r(NULL, ":", &save2)) {
                        struct stat st;

                        unescape(dir);
                        r = uses_add(u, NULL, dir, 1);
                        if (r >= 0 && stat(dir, &st) == 0) {
                                u->v[u->n - 1].dev = st.st_dev;
                                u->v[u->n - 1].ino = st.st_ino;
                        }
                }
        }
        return r;
}

/* Adds every lower layer of every overlay mounted on the host. */
static int add_mounted_lowers(struct uses *u) {
        FILE *f = fopen("/proc/self/mountinfo", "re");
        char *line = NULL;
        size_t cap = 0;
        int r = 0;

        if (!f)
                return -errno;
        while (r >= 0 && getline(&line, &cap, f) > 0) {
                /* ... - fstype source super-options */
                char *sep = strstr(line, " - "), *save = NULL, *fstype, *opts;

                if (sep && (fstype = strtok_r(sep + 3, " ", &save)) && streq(fstype, "overlay") && strtok_r(NULL, " ", &save) &&
                    (opts = strtok_r(NULL, " \n", &save)))
                        r = add_lowers(u, opts);
        }
        free(line);
        fclose(f);
        return r;
}

static bool in_use(const struct uses *u, const char *real, const char *name, const char *current, bool has_current,
                   const char *version) {
        char path[PATH_MAX * 2];

        if (has_current && streq(version, current))
                return true;
        if (store_users(u, name, version) > 0)
                return true;
        snprintf(path, sizeof(path), "%s/.versions/%s/%s/rootfs", real, name, *version ? version : TEMPLATE_LEGACY);
        if (mounted(u, path, true))
                return true;
        /* Mounted before it was moved among the versions (only a legacy one ever was); by name
         * only, since that path now leads to the current version. */
        snprintf(path, sizeof(path), "%s/%s/rootfs", real, name);
        return !*version && mounted(u, path, false);
}

struct trash {
        char **paths;
        size_t n;
};

static int trash_add(struct trash *t, const char *path) {
        char **more = realloc(t->paths, sizeof(char *) * (t->n + 1));

        if (!more || !(more[t->n] = strdup(path))) {
                if (more)
                        t->paths = more;
                return -ENOMEM;
        }
        t->paths = more;
        t->n++;
        return 0;
}

/* Under the lock: renames name's versions that nobody uses to .removing-<version>, adding
 * them (and leftovers of an earlier pass) to t. */
static void collect_name(const char *real, const char *name, const struct uses *u, struct trash *t) {
        char dir[PATH_MAX * 2], from[PATH_MAX * 3], to[PATH_MAX * 3], current[TEMPLATE_VERSION_MAX] = "";
        bool has_current = template_current(real, name, current, NULL) == 0;
        struct dirent *de;
        DIR *d;

        snprintf(dir, sizeof(dir), "%s/.versions/%s", real, name);
        d = opendir(dir);
        while (d && (de = readdir(d))) {
                const char *v = streq(de->d_name, TEMPLATE_LEGACY) ? "" : de->d_name;

                snprintf(from, sizeof(from), "%s/%s", dir, de->d_name);
                if (!strncmp(de->d_name, REMOVING, strlen(REMOVING))) {
                        trash_add(t, from);
                        continue;
                }
                if (de->d_name[0] == '.' || in_use(u, real, name, current, has_current, v))
                        continue;
                snprintf(to, sizeof(to), "%s/" REMOVING "%s", dir, de->d_name);
                if (rename(from, to) < 0)
                        log_warn_errno(errno, "cannot move %s aside to remove it, ignoring", from);
                else if (trash_add(t, to) >= 0)
                        log_info("removing version %s of template '%s': no sandbox uses it", *v ? v : TEMPLATE_LEGACY, name);
        }
        if (d)
                closedir(d);
}

static int collect(const struct template_ctx *c, const char *real, const char *only, struct trash *t, struct error *e) {
        char dir[PATH_MAX + 16];
        struct uses u = {0};
        struct dirent *de;
        DIR *d;
        int r;

        r = store_template_users(c->store, add_store_use, &u, e);
        if (r >= 0 && u.err < 0)
                r = error_set(e, u.err, ERR_INTERNAL, "%s", strerror(-u.err)); /* an incomplete list: nothing removed */
        if (r < 0) {
                uses_free(&u);
                return error_wrap(e, "cannot tell which template versions are in use");
        }
        r = add_mounted_lowers(&u);
        if (r < 0) {
                uses_free(&u);
                return error_set(e, r, ERR_INTERNAL, "cannot read the host's overlay mounts: %s", strerror(-r));
        }
        snprintf(dir, sizeof(dir), "%s/.versions", real);
        d = opendir(dir);
        while (d && (de = readdir(d)))
                if (de->d_name[0] != '.' && (!only || streq(only, de->d_name)) && template_name_check(de->d_name, NULL) == 0)
                        collect_name(real, de->d_name, &u, t);
        if (d)
                closedir(d);
        uses_free(&u);
        return 0;
}

int template_gc(const struct template_ctx *c, const char *only, struct error *e) {
        char real[PATH_MAX], versions[PATH_MAX + 16];
        struct trash t = {0};
        int lock, r;

        /* Nothing to do, and nothing is written or locked, where no version was ever made. */
        snprintf(versions, sizeof(versions), "%s/.versions", c->dir);
        if (access(versions, F_OK) < 0)
                return 0;
        if (!realpath(c->dir, real))
                return error_set(e, errno, ERR_INTERNAL, "cannot resolve %s: %s", c->dir, strerror(errno));
        r = template_owner_check(c, e);
        if (r <= 0) {
                if (r < 0)
                        log_info("%s; leaving its versions alone", e->message);
                error_clear(e);
                return 0;
        }
        lock = template_lock(c->dir, true, e);
        if (lock < 0)
                return lock;
        r = collect(c, real, only, &t, e);
        close(lock);
        for (size_t i = 0; i < t.n; i++) {
                int q = rm_rf(t.paths[i]);
                if (q < 0)
                        log_warn_errno(q, "cannot remove %s, ignoring", t.paths[i]);
                free(t.paths[i]);
        }
        free(t.paths);
        return r;
}

/* -- template list ---------------------------------------------------------------------- */

static void print_version(const char *name, const char *dir, const char *version, bool current, int64_t users) {
        char path[PATH_MAX * 2];
        json_t *j;

        snprintf(path, sizeof(path), "%s/template.json", dir);
        j = json_load_file(path, 0, NULL);
        printf("%-16s %-24s %-26s %7.0f MiB  %9lld%s\n", name, *version ? version : TEMPLATE_LEGACY,
               json_string_value(json_object_get(j, "built_at")) ?: "unknown",
               (double) json_integer_value(json_object_get(j, "size_bytes")) / 1048576.0, (long long) users,
               current ? "  current" : "");
        json_decref(j);
}

static int by_name_desc(const struct dirent **a, const struct dirent **b) {
        return -alphasort(a, b);
}

/* name's versions: the current one first, then the others newest first (legacy last), then
 * those that sandboxes record but that are gone. */
static void list_name(const char *real, const char *name, const struct uses *u) {
        char dir[PATH_MAX * 2], current[TEMPLATE_VERSION_MAX] = "";
        bool has_current = template_current(real, name, current, NULL) == 0;
        struct dirent **ents = NULL;
        int n;

        snprintf(dir, sizeof(dir), "%s/%s", real, name);
        if (has_current)
                print_version(name, dir, current, true, store_users(u, name, current));
        snprintf(dir, sizeof(dir), "%s/.versions/%s", real, name);
        n = scandir(dir, &ents, NULL, by_name_desc);
        for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < n; i++) {
                        const char *v = streq(ents[i]->d_name, TEMPLATE_LEGACY) ? "" : ents[i]->d_name;
                        char vdir[PATH_MAX * 3];

                        if (ents[i]->d_name[0] == '.' || (has_current && streq(v, current)) || (pass == 0) != (*v != 0))
                                continue;
                        snprintf(vdir, sizeof(vdir), "%s/%s", dir, ents[i]->d_name);
                        print_version(name, vdir, v, false, store_users(u, name, v));
                }
        for (size_t i = 0; i < u->n; i++) {
                char vdir[PATH_MAX * 3];
                const char *v = u->v[i].version;

                if (!u->v[i].name || !streq(u->v[i].name, name) || (has_current && streq(v, current)))
                        continue;
                snprintf(vdir, sizeof(vdir), "%s/%s", dir, *v ? v : TEMPLATE_LEGACY);
                if (access(vdir, F_OK) < 0)
                        printf("%-16s %-24s %-26s %11s  %9lld  gone\n", name, *v ? v : TEMPLATE_LEGACY, "-", "-", (long long) u->v[i].n);
        }
        for (int i = 0; i < n; i++)
                free(ents[i]);
        free(ents);
}

static int add_name(struct uses *names, const char *name) {
        for (size_t i = 0; i < names->n; i++)
                if (streq(names->v[i].version, name))
                        return 0;
        return template_name_check(name, NULL) == 0 ? uses_add(names, NULL, name, 0) : 0;
}

static int cmp_use_version(const void *a, const void *b) {
        return strcmp(((const struct use *) a)->version, ((const struct use *) b)->version);
}

/* Every template name: in the directory, among the versions, or recorded by sandboxes. */
static void collect_names(const char *real, const struct uses *u, struct uses *names) {
        char dir[PATH_MAX + 16];
        struct dirent *de;
        DIR *d;

        for (int pass = 0; pass < 2; pass++) {
                snprintf(dir, sizeof(dir), pass ? "%s/.versions" : "%s", real);
                d = opendir(dir);
                while (d && (de = readdir(d)))
                        if (de->d_name[0] != '.')
                                add_name(names, de->d_name);
                if (d)
                        closedir(d);
        }
        for (size_t i = 0; i < u->n; i++)
                add_name(names, u->v[i].name);
        if (names->n)
                qsort(names->v, names->n, sizeof(*names->v), cmp_use_version);
}

int template_list(const struct template_ctx *c, struct error *e) {
        char real[PATH_MAX];
        struct uses u = {0}, names = {0};
        int r;

        printf("%-16s %-24s %-26s %11s  %9s\n", "NAME", "VERSION", "BUILT", "SIZE", "SANDBOXES");
        if (!realpath(c->dir, real))
                return errno == ENOENT ? 0 : error_set(e, errno, ERR_INTERNAL, "cannot read %s: %s", c->dir, strerror(errno));
        r = store_template_users(c->store, add_store_use, &u, e);
        if (r < 0) {
                uses_free(&u);
                return r;
        }
        collect_names(real, &u, &names);
        for (size_t i = 0; i < names.n; i++)
                list_name(real, names.v[i].version, &u);
        if (template_owner_check(c, NULL) < 0)
                printf("(sandboxes counted in %s; another state dir owns the versions here, see %s/.versions/.state-dir)\n",
                       c->state_dir, c->dir);
        uses_free(&u);
        uses_free(&names);
        return 0;
}
