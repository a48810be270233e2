/* files-watch.c — GET /files/watch: inotify events under a directory as an NDJSON stream.
 *
 * One inotify instance per stream. With recursive, every directory below gets a watch
 * (at most WATCH_MAX, symlinks never followed), and a directory that appears later is
 * watched and scanned at once: what was made in it before its watch was in place is
 * reported as created (so `mkdir -p a/b/c` is seen whole; a file made in that instant may
 * be reported twice). The kernel's events become the contract's:
 *   IN_CREATE → create, IN_MODIFY → write, IN_ATTRIB → chmod, IN_DELETE → remove,
 *   IN_MOVED_FROM + IN_MOVED_TO with one cookie → rename (watch paths follow a renamed
 *   directory), an unpaired IN_MOVED_TO → create, an unpaired IN_MOVED_FROM → remove.
 * A write is held back until WRITE_QUIET_MS pass without another write to that path (at
 * most WRITE_HOLD_MS) or another event comes: consecutive writes become one event that
 * still comes after the last write. A MOVED_FROM waits MOVE_PAIR_MS for its MOVED_TO.
 * The temp files of uploads (files.c) are hidden: an upload shows as create + write of
 * its target. The stream ends when the client goes away (http_conn_gone() on the connection),
 * when the watched directory is removed (after a remove event for it), or with an error
 * event (moved away, queue overflow, watch limit). At most STREAMS_MAX streams are open at
 * once in a sandbox (429 beyond): each holds an inotify instance, and the kernel allows only
 * fs.inotify.max_user_instances of them (128 by default) to a user.
 */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "files-util.h"
#include "macro.h"
#include "ndjson.h"
#include "timeutil.h"

#define WATCH_MAX 8192
#define STREAMS_MAX 16 /* each holds an inotify instance, of which the kernel allows few */
#define WATCH_MASK                                                                                               \
        (IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |          \
         IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
#define WRITE_QUIET_MS 50
#define WRITE_HOLD_MS 1000
#define MOVE_PAIR_MS 20
#define UPLOAD_PREFIX ".ai2in-upload-"
#define EVENT_BUF (64 * 1024)
#define STR_(x) #x
#define STR(x) STR_(x)

struct watch_dir {
        int wd;
        char *rel; /* relative to the root: "" for the root, else "a/b" */
};

struct watcher {
        struct http_conn *c;
        int ifd;
        bool recursive;
        const struct files_path *root;
        struct watch_dir *dirs; /* sorted by wd */
        size_t n, alloc;
        char *write_path; /* a held-back write */
        int64_t write_first, write_last;
        char *move_from; /* a MOVED_FROM waiting for its MOVED_TO (hidden: an upload's temp) */
        char *move_rel;
        uint32_t move_cookie;
        bool move_dir, move_hidden;
        int64_t move_at;
        int64_t last_sent;
        bool ended; /* the stream has ended (error event sent, or root gone) */
};

/* ---- streams ---- */

static atomic_uint streams_open;

/* Counts a new stream in; false when STREAMS_MAX are open already. */
static bool stream_slot_take(void) {
        unsigned n = atomic_load(&streams_open);

        do {
                if (n >= STREAMS_MAX)
                        return false;
        } while (!atomic_compare_exchange_weak(&streams_open, &n, n + 1));
        return true;
}

static void stream_slot_release(bool *taken) {
        if (*taken)
                atomic_fetch_sub(&streams_open, 1);
}

/* ---- the watch table ---- */

static struct watch_dir *dir_find(struct watcher *w, int wd) {
        size_t lo = 0, hi = w->n;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (w->dirs[mid].wd == wd)
                        return &w->dirs[mid];
                if (w->dirs[mid].wd < wd)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static void dir_forget(struct watcher *w, struct watch_dir *d) {
        free(d->rel);
        memmove(d, d + 1, (size_t) (w->dirs + w->n - (d + 1)) * sizeof(*d));
        w->n--;
}

static char *join_rel(const char *a, const char *b) {
        return *a ? files_path_join(a, b) : strdup(b);
}

/* The path shown for rel/name (name may be NULL). */
static char *shown_path(const struct watcher *w, const char *rel, const char *name) {
        _cleanup_free_ char *r = name ? join_rel(rel, name) : strdup(rel);

        if (!r)
                return NULL;
        return *r ? files_path_join(w->root->display, r) : strdup(w->root->display);
}

/* Adds a watch on the directory rel. -ENOENT/-ENOTDIR: it is gone or not a directory. */
static int dir_add(struct watcher *w, const char *rel) {
        _cleanup_free_ char *sys = *rel ? files_path_join(w->root->sys, rel) : strdup(w->root->sys);
        _cleanup_close_ int fd = -1;
        struct watch_dir *d;
        size_t i;
        int wd;

        if (!sys)
                return -ENOMEM;
        if (w->n >= WATCH_MAX)
                return -EMFILE;
        /* The root may be reached through a symlink; nothing below it is followed. Linux's
         * inotify_add_watch() needs read permission on the directory, gVisor's checks none:
         * opening it first gives a user acting through files_act_as() the same answer on both. */
        fd = open(sys, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (*rel ? O_NOFOLLOW : 0));
        if (fd < 0)
                return -errno;
        wd = inotify_add_watch(w->ifd, sys, WATCH_MASK | (*rel ? IN_DONT_FOLLOW : 0));
        if (wd < 0)
                return -errno;
        d = dir_find(w, wd);
        if (d) /* already watched (a bind mount, or seen twice in a race) */
                return 0;
        if (w->n == w->alloc) {
                size_t alloc = w->alloc ? w->alloc * 2 : 64;
                struct watch_dir *dirs = reallocarray(w->dirs, alloc, sizeof(*dirs));
                if (!dirs)
                        return -ENOMEM;
                w->dirs = dirs;
                w->alloc = alloc;
        }
        for (i = w->n; i > 0 && w->dirs[i - 1].wd > wd; i--)
                w->dirs[i] = w->dirs[i - 1];
        w->dirs[i] = (struct watch_dir){.wd = wd, .rel = strdup(rel)};
        w->n++;
        return w->dirs[i].rel ? 0 : -ENOMEM;
}

/* Stops watching rel and everything below it (moved out of the tree). */
static void dir_drop_tree(struct watcher *w, const char *rel) {
        size_t len = strlen(rel);

        for (size_t i = 0; i < w->n;) {
                const char *r = w->dirs[i].rel;
                if (strncmp(r, rel, len) == 0 && (r[len] == 0 || r[len] == '/')) {
                        (void) inotify_rm_watch(w->ifd, w->dirs[i].wd);
                        dir_forget(w, &w->dirs[i]);
                } else
                        i++;
        }
}

/* Renames the watches of from and below to to. */
static int dir_rename_tree(struct watcher *w, const char *from, const char *to) {
        size_t len = strlen(from);

        for (size_t i = 0; i < w->n; i++) {
                char *r = w->dirs[i].rel, *renamed;
                if (strncmp(r, from, len) != 0 || (r[len] != 0 && r[len] != '/'))
                        continue;
                if (asprintf(&renamed, "%s%s", to, r + len) < 0)
                        return -ENOMEM;
                free(r);
                w->dirs[i].rel = renamed;
        }
        return 0;
}

/* ---- events out ---- */

static int emit(struct watcher *w, const char *type, const char *path, const char *new_path) {
        _cleanup_json_ json_t *ev = NULL;
        int r;

        ev = json_pack("{s:s,s:o}", "type", type, "path", files_json_text(path));
        if (!ev || (new_path && json_object_set_new(ev, "new_path", files_json_text(new_path)) < 0))
                return -ENOMEM;
        r = ndjson_event(w->c, ev);
        w->last_sent = mono_ms();
        return r;
}

static int emit_error(struct watcher *w, const char *message) {
        _cleanup_json_ json_t *ev = json_pack("{s:s,s:s}", "type", "error", "message", message);

        w->ended = true;
        return ev ? ndjson_event(w->c, ev) : -ENOMEM;
}

static int flush_write(struct watcher *w) {
        _cleanup_free_ char *path = TAKE_PTR(w->write_path);

        return path ? emit(w, "write", path, NULL) : 0;
}

/* A MOVED_FROM without its MOVED_TO: the thing left the tree. */
static int flush_move(struct watcher *w) {
        _cleanup_free_ char *path = TAKE_PTR(w->move_from), *rel = TAKE_PTR(w->move_rel);

        if (!path || w->move_hidden)
                return 0;
        if (w->move_dir)
                dir_drop_tree(w, rel);
        return emit(w, "remove", path, NULL);
}

static int flush_pending(struct watcher *w) {
        int r = flush_move(w);

        return r < 0 ? r : flush_write(w);
}

static int hold_write(struct watcher *w, char *path) {
        int64_t now = mono_ms();
        int r;

        if (w->write_path && streq(w->write_path, path)) {
                free(path);
                w->write_last = now;
                return 0;
        }
        r = flush_pending(w);
        w->write_path = path;
        w->write_first = w->write_last = now;
        return r;
}

static const char *watch_limit_message(int r) {
        return r == -ENOSPC ? "the sandbox's inotify watch limit (fs.inotify.max_user_watches) is reached"
                            : "the tree has more than " STR(WATCH_MAX) " directories, too many to watch";
}

/* ---- directory trees ---- */

static bool is_hidden(const char *name) {
        return strncmp(name, UPLOAD_PREFIX, strlen(UPLOAD_PREFIX)) == 0;
}

static bool is_dir_at(int dfd, const struct dirent *de) {
        struct stat st;

        if (de->d_type != DT_UNKNOWN)
                return de->d_type == DT_DIR;
        return fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) >= 0 && S_ISDIR(st.st_mode);
}

/* Reads the directory rel: emits create for its entries when report, and appends its
 * subdirectories to the queue (of which the first head are done). A directory that
 * cannot be opened (gone) is skipped. */
static int scan_dir(struct watcher *w, const char *rel, bool report, char ***queue, size_t *n, size_t *alloc,
                    size_t head) {
        _cleanup_free_ char *sys = *rel ? files_path_join(w->root->sys, rel) : strdup(w->root->sys);
        struct dirent *de;
        DIR *d;
        int fd, r = 0;

        if (!sys)
                return -ENOMEM;
        fd = open(sys, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (*rel ? O_NOFOLLOW : 0));
        if (fd < 0 || !(d = fdopendir(fd))) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        while (r >= 0 && (de = readdir(d))) {
                _cleanup_free_ char *child = NULL, *path = NULL;

                if (streq(de->d_name, ".") || streq(de->d_name, "..") || is_hidden(de->d_name))
                        continue;
                child = join_rel(rel, de->d_name);
                if (!child) {
                        r = -ENOMEM;
                        break;
                }
                if (report) {
                        path = shown_path(w, child, NULL);
                        r = path ? emit(w, "create", path, NULL) : -ENOMEM;
                }
                if (r < 0 || !is_dir_at(dirfd(d), de))
                        continue;
                if (w->n + (*n - head) >= WATCH_MAX)
                        r = -EMFILE;
                else if (*n == *alloc) {
                        size_t k = *alloc ? *alloc * 2 : 64;
                        char **q = reallocarray(*queue, k, sizeof(*q));
                        if (!q)
                                r = -ENOMEM;
                        else {
                                *queue = q;
                                *alloc = k;
                        }
                }
                if (r >= 0)
                        (*queue)[(*n)++] = TAKE_PTR(child);
        }
        closedir(d);
        return r;
}

/* Watches rel and, with recursive, every directory below it (breadth first, no recursion:
 * trees can be deep); with report, emits create for everything below rel. */
static int watch_tree(struct watcher *w, const char *rel, bool report) {
        char **queue = NULL;
        size_t head = 0, n = 0, alloc = 0;
        int r = 0;

        queue = malloc(sizeof(*queue));
        if (!queue || !(queue[0] = strdup(rel))) {
                free(queue);
                return -ENOMEM;
        }
        n = alloc = 1;
        while (r >= 0 && head < n) {
                _cleanup_free_ char *cur = TAKE_PTR(queue[head]);

                head++;
                r = dir_add(w, cur);
                if (r == -ENOENT || r == -ENOTDIR) { /* gone already */
                        r = *cur ? 0 : r;
                        continue;
                }
                if (r >= 0 && w->recursive)
                        r = scan_dir(w, cur, report, &queue, &n, &alloc, head);
                /* scan_dir may have moved the queue; head still indexes it. */
        }
        for (; head < n; head++)
                free(queue[head]);
        free(queue);
        return r;
}

/* Watches a directory that appeared in the tree, or ends the stream if it cannot. */
static int watch_new_dir(struct watcher *w, const char *rel) {
        int r = watch_tree(w, rel, true);

        if (r == -EMFILE || r == -ENOSPC)
                return emit_error(w, watch_limit_message(r));
        return r;
}

/* ---- events in ---- */

/* The MOVED_TO half of a rename (or a move into the tree). */
static int on_moved_to(struct watcher *w, const struct inotify_event *ev, char *path, const char *rel) {
        _cleanup_free_ char *from = NULL, *from_rel = NULL;
        int r;

        if (w->move_from && w->move_cookie == ev->cookie) {
                from = TAKE_PTR(w->move_from);
                from_rel = TAKE_PTR(w->move_rel);
                if (w->move_hidden) { /* an upload landing: its target is (re)created with content */
                        char *copy = strdup(path);
                        r = copy ? emit(w, "create", path, NULL) : -ENOMEM;
                        if (r < 0) {
                                free(copy);
                                return r;
                        }
                        return hold_write(w, copy);
                }
                r = w->move_dir ? dir_rename_tree(w, from_rel, rel) : 0;
                return r < 0 ? r : emit(w, "rename", from, path);
        }
        r = flush_pending(w);
        if (r >= 0)
                r = emit(w, "create", path, NULL);
        if (r >= 0 && (ev->mask & IN_ISDIR) && w->recursive)
                r = watch_new_dir(w, rel);
        return r;
}

static int on_root_gone(struct watcher *w, const struct inotify_event *ev) {
        if (ev->mask & IN_DELETE_SELF) {
                w->ended = true;
                return emit(w, "remove", w->root->display, NULL);
        }
        if (ev->mask & IN_MOVE_SELF)
                return emit_error(w, "the watched directory was moved away");
        return w->ended ? 0 : emit_error(w, "the watched directory is gone");
}

static int on_event(struct watcher *w, const struct inotify_event *ev) {
        _cleanup_free_ char *path = NULL, *rel = NULL;
        const char *name = ev->len ? ev->name : NULL;
        struct watch_dir *d;
        bool root;
        int r;

        if (ev->mask & IN_Q_OVERFLOW)
                return emit_error(w, "events were lost: the kernel's event queue overflowed");
        d = dir_find(w, ev->wd);
        if (!d || (name && is_hidden(name) && !(ev->mask & (IN_MOVED_FROM | IN_MOVED_TO))))
                return 0;
        root = !*d->rel;
        if (ev->mask & IN_IGNORED) {
                dir_forget(w, d);
                return root ? on_root_gone(w, ev) : 0;
        }
        /* A subdirectory's own events (its chmod, its removal) also reach its parent's
         * watch, with its name: report them from there only. */
        if (!name && !root)
                return 0;
        rel = name ? join_rel(d->rel, name) : strdup(d->rel);
        path = shown_path(w, d->rel, name);
        if (!rel || !path)
                return -ENOMEM;

        if (ev->mask & IN_MOVED_TO)
                return on_moved_to(w, ev, path, rel);
        if (ev->mask & IN_MODIFY)
                return hold_write(w, TAKE_PTR(path));
        r = flush_pending(w);
        if (r < 0)
                return r;
        if (ev->mask & IN_MOVED_FROM) {
                w->move_from = TAKE_PTR(path);
                w->move_rel = TAKE_PTR(rel);
                w->move_cookie = ev->cookie;
                w->move_dir = ev->mask & IN_ISDIR;
                w->move_hidden = name && is_hidden(name);
                w->move_at = mono_ms();
                return 0;
        }
        if (ev->mask & IN_CREATE) {
                r = emit(w, "create", path, NULL);
                return r >= 0 && (ev->mask & IN_ISDIR) && w->recursive ? watch_new_dir(w, rel) : r;
        }
        if (ev->mask & IN_DELETE)
                return emit(w, "remove", path, NULL);
        if (ev->mask & IN_ATTRIB)
                return emit(w, "chmod", path, NULL);
        if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) && root)
                return on_root_gone(w, ev);
        return 0;
}

static int read_events(struct watcher *w, char *buf) {
        ssize_t n;
        int r;

        for (;;) {
                n = read(w->ifd, buf, EVENT_BUF);
                if (n < 0)
                        return errno == EAGAIN ? 0 : errno == EINTR ? 0 : -errno;
                for (char *p = buf; p < buf + n && !w->ended;) {
                        const struct inotify_event *ev = (const struct inotify_event *) p;
                        r = on_event(w, ev);
                        if (r < 0)
                                return r;
                        p += sizeof(*ev) + ev->len;
                }
                if (w->ended)
                        return 0;
        }
}

/* Serves the stream until the client goes away or the stream ends. */
static int watch_loop(struct watcher *w) {
        _cleanup_free_ char *buf = malloc(EVENT_BUF);
        struct pollfd pfd[2] = {
                {.fd = http_conn_fd(w->c), .events = http_conn_hangup_events(w->c)},
                {.fd = w->ifd, .events = POLLIN},
        };
        int64_t now, deadline;
        int r = 0;

        if (!buf)
                return -ENOMEM;
        while (!w->ended && r >= 0) {
                now = mono_ms();
                deadline = w->last_sent + NDJSON_KEEPALIVE_MS;
                if (w->write_path)
                        deadline = MIN(deadline, MIN(w->write_last + WRITE_QUIET_MS, w->write_first + WRITE_HOLD_MS));
                if (w->move_from)
                        deadline = MIN(deadline, w->move_at + MOVE_PAIR_MS);
                pfd[0].events = http_conn_hangup_events(w->c);
                if (poll(pfd, 2, (int) MAX(deadline - now, 0)) < 0 && errno != EINTR)
                        return -errno;
                if (http_conn_gone(w->c, pfd[0].revents))
                        return 0; /* the client went away */
                if (pfd[1].revents & POLLIN)
                        r = read_events(w, buf);
                now = mono_ms();
                if (r >= 0 && w->move_from && now >= w->move_at + MOVE_PAIR_MS)
                        r = flush_move(w);
                if (r >= 0 && w->write_path && (now >= w->write_last + WRITE_QUIET_MS || now >= w->write_first + WRITE_HOLD_MS))
                        r = flush_write(w);
                if (r >= 0 && now >= w->last_sent + NDJSON_KEEPALIVE_MS) {
                        r = ndjson_keepalive(w->c);
                        w->last_sent = now;
                }
        }
        return r;
}

static void watcher_done(struct watcher *w) {
        for (size_t i = 0; i < w->n; i++)
                free(w->dirs[i].rel);
        free(w->dirs);
        free(w->write_path);
        free(w->move_from);
        free(w->move_rel);
        if (w->ifd >= 0)
                close(w->ifd);
}
#define _cleanup_watcher_ _cleanup_(watcher_done)

int files_handle_watch(struct http_conn *c, const struct http_request *req, const char *arg) {
        static const char *const keys[] = {"path", "recursive", "user", NULL};
        _cleanup_(stream_slot_release) bool slot = false;
        _cleanup_as_ struct files_as as = {};
        _cleanup_query_ struct query q = {};
        _cleanup_path_ struct files_path p = {};
        _cleanup_watcher_ struct watcher w = {.c = c, .ifd = -1, .root = &p};
        _cleanup_json_ json_t *start = NULL;
        const char *recursive;
        struct files_err e;
        struct stat st;
        int r;

        if (files_query(req, keys, &q, &e) < 0 || files_path_parse(query_get(&q, "path"), "path", &p, &e) < 0)
                return files_respond_err(c, &e);
        recursive = query_get(&q, "recursive");
        if (recursive && query_parse_bool(recursive, &w.recursive) < 0)
                return http_respond_error(c, 400, "bad_request", "recursive must be true or false");
        if (files_act_as(query_get(&q, "user"), &as, &e) < 0)
                return files_respond_err(c, &e);
        if (stat(p.sys, &st) < 0)
                return files_respond_errno(c, errno, "watch", p.display);
        if (!S_ISDIR(st.st_mode))
                return files_respond_errno(c, ENOTDIR, "watch", p.display);
        slot = stream_slot_take();
        if (!slot)
                return http_respond_error(c, 429, "limit_exceeded",
                                          "a sandbox has at most %d watch streams open at once; stop one first",
                                          STREAMS_MAX);
        /* The kernel's inotify limits are the host's and the sandbox's state: 503. Only a
         * tree too large for one watch (WATCH_MAX) is the request's: 400. */
        w.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w.ifd < 0)
                return http_respond_error(c, errno == EMFILE || errno == ENOMEM ? 503 : 500,
                                          errno == EMFILE || errno == ENOMEM ? "unavailable" : "internal",
                                          "cannot start a watch: %s%s", strerror(errno),
                                          errno == EMFILE ? " (fs.inotify.max_user_instances is reached)" : "");
        r = watch_tree(&w, "", false);
        if (r == -EMFILE || r == -ENOSPC)
                return http_respond_error(c, r == -ENOSPC ? 503 : 400, r == -ENOSPC ? "unavailable" : "bad_request",
                                          "cannot watch %s: %s", p.display, watch_limit_message(r));
        if (r < 0)
                return files_respond_errno(c, r, "watch", p.display);

        r = ndjson_begin(c);
        start = json_pack("{s:s}", "type", "start");
        if (r >= 0)
                r = start ? ndjson_event(c, start) : -ENOMEM;
        w.last_sent = mono_ms();
        if (r >= 0)
                r = watch_loop(&w);
        if (r >= 0)
                r = flush_pending(&w);
        (void) ndjson_end(c);
        return r == -EPIPE || r == -ECONNRESET ? 0 : r;
}
