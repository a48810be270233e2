/* files-list.c — GET /files/list: the entries under a directory, depth levels deep.
 *
 * The walk keeps a compact record per entry (path, lstat result, link target), sorts them
 * by path and only then makes JSON, one entry at a time, sent in chunks of LIST_FLUSH
 * bytes: 100000 entries (the cap) cost ~20 MB of records, not a JSON tree in memory.
 * Directories are opened with O_NOFOLLOW relative to their parent's fd, so a symlinked
 * directory is listed as a symlink and never descended. Entries that vanish or cannot
 * be read during the walk are left out.
 */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "files-util.h"
#include "macro.h"

#define LIST_DEPTH_MAX 16
#define LIST_ENTRIES_MAX 100000
#define LIST_FLUSH (64 * 1024)

struct item {
        char *path;
        char *target; /* symlinks only */
        struct stat st;
};

struct listing {
        struct item *items;
        size_t n, alloc;
        bool truncated;
};

static void listing_done(struct listing *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].path);
                free(l->items[i].target);
        }
        free(l->items);
}
#define _cleanup_listing_ _cleanup_(listing_done)

static int listing_add(struct listing *l, char *path, char *target, const struct stat *st) {
        if (l->n == l->alloc) {
                size_t alloc = l->alloc ? l->alloc * 2 : 256;
                struct item *items = reallocarray(l->items, alloc, sizeof(*items));
                if (!items)
                        return -ENOMEM;
                l->items = items;
                l->alloc = alloc;
        }
        l->items[l->n++] = (struct item){.path = path, .target = target, .st = *st};
        return 0;
}

/* Adds the entries of the directory dfd (taken over), shown as dir, and levels - 1 levels
 * below them. Only running out of memory is an error. */
static int list_dir(struct listing *l, int dfd, const char *dir, unsigned levels) {
        DIR *d = fdopendir(dfd);
        struct dirent *de;
        int r = 0;

        if (!d) {
                close(dfd);
                return errno == ENOMEM ? -ENOMEM : 0;
        }
        while (r >= 0 && (de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *target = NULL;
                struct stat st;
                const char *shown;
                int fd;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (l->n >= LIST_ENTRIES_MAX) {
                        l->truncated = true;
                        break;
                }
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISLNK(st.st_mode) && files_readlink_at(dirfd(d), de->d_name, &target) == -ENOMEM)
                        r = -ENOMEM;
                path = files_path_join(dir, de->d_name);
                if (r < 0 || !path || listing_add(l, path, target, &st) < 0) {
                        r = -ENOMEM;
                        break;
                }
                shown = TAKE_PTR(path);
                target = NULL;
                if (!S_ISDIR(st.st_mode) || levels <= 1)
                        continue;
                fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0)
                        r = list_dir(l, fd, shown, levels - 1);
        }
        closedir(d);
        return r;
}

static int compare_items(const void *a, const void *b) {
        return strcmp(((const struct item *) a)->path, ((const struct item *) b)->path);
}

/* Sends the sorted listing as {"entries":[…]} in chunks. */
static int send_listing(struct http_conn *c, const struct listing *l) {
        _cleanup_names_ struct files_names names = {};
        _cleanup_buf_ struct buf out = {};
        int r;

        buf_init(&out, 2 * LIST_FLUSH + 2 * FILES_PATH_MAX + 1024);
        r = http_chunked_begin(c, 200, "application/json");
        if (r >= 0)
                r = buf_append_str(&out, "{\"entries\":[");
        for (size_t i = 0; r >= 0 && i < l->n; i++) {
                _cleanup_json_ json_t *entry = NULL;
                _cleanup_free_ char *text = NULL;

                entry = files_entry_new(l->items[i].path, &l->items[i].st, l->items[i].target, &names);
                text = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
                if (!text)
                        return -ENOMEM;
                r = buf_append_str(&out, i > 0 ? "," : "");
                if (r >= 0)
                        r = buf_append_str(&out, text);
                if (r >= 0 && out.len >= LIST_FLUSH) {
                        r = http_chunked_write(c, out.data, out.len);
                        buf_reset(&out);
                }
        }
        if (r >= 0)
                r = buf_append_str(&out, l->truncated ? "],\"truncated\":true}" : "]}");
        if (r >= 0)
                r = http_chunked_write(c, out.data, out.len);
        if (r >= 0)
                r = http_chunked_end(c);
        return r;
}

int files_handle_list(struct http_conn *c, const struct http_request *req, const char *arg) {
        static const char *const keys[] = {"path", "depth", "user", NULL};
        _cleanup_as_ struct files_as as = {};
        _cleanup_query_ struct query q = {};
        _cleanup_path_ struct files_path p = {};
        _cleanup_listing_ struct listing l = {};
        const char *depth_text;
        uint64_t depth = 1;
        struct files_err e;
        int fd, r;

        if (files_query(req, keys, &q, &e) < 0 || files_path_parse(query_get(&q, "path"), "path", &p, &e) < 0)
                return files_respond_err(c, &e);
        depth_text = query_get(&q, "depth");
        if (depth_text && query_parse_uint(depth_text, 1, LIST_DEPTH_MAX, &depth) < 0)
                return http_respond_error(c, 400, "bad_request", "depth must be an integer from 1 to %d",
                                          LIST_DEPTH_MAX);
        if (files_act_as(query_get(&q, "user"), &as, &e) < 0)
                return files_respond_err(c, &e);

        /* The directory itself may be reached through symlinks; what is under it is not. */
        fd = open(p.sys, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return files_respond_errno(c, errno, "list", p.display);
        r = list_dir(&l, fd, p.display, (unsigned) depth);
        if (r < 0)
                return r;
        if (l.n > 1) /* an empty directory has no items array: qsort(NULL, 0) is undefined */
                qsort(l.items, l.n, sizeof(*l.items), compare_items);
        return send_listing(c, &l);
}
