/* files.c — see files.h: read, write, info, mkdir, rename and remove. (list is in
 * files-list.c, watch in files-watch.c, what they share in files-util.c.)
 *
 * read streams the file from disk (sendfile, Content-Length = its size), so memory stays
 * constant whatever the size; small files (and /proc, /sys files, whose size the kernel
 * does not know) are read whole first so the Content-Length is exact. write streams the
 * request body into a temp file beside the target and renames it over the target: readers
 * never see half a file, and an upload that fails leaves the old content and no temp file.
 * A symlink as the target is followed (the file it points to is replaced, like a shell's
 * `>`). No fsync by default (FILES_WRITE_FSYNC): a sandbox's disk does not outlive a host
 * crash in a usable state anyway, and fsync costs more than the copy (see the report).
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "files-util.h"
#include "pressure.h"
#include "fsutil.h"
#include "log.h"
#include "macro.h"

#ifndef FILES_WRITE_FSYNC
#define FILES_WRITE_FSYNC 0
#endif

#define READ_WHOLE_BELOW (64 * 1024) /* files this small are read whole, then sent */
#define READ_WHOLE_MAX (8 * 1024 * 1024)
#define UPLOAD_BUF (256 * 1024)
#define UPLOAD_PREFIX ".ai2in-upload-"
#define SYMLINK_HOPS_MAX 40

static const char *const query_path_user[] = {"path", "user", NULL};

/* Answers 200 with the entry of p. */
static int respond_entry(struct http_conn *c, const struct files_path *p) {
        _cleanup_names_ struct files_names names = {};
        _cleanup_json_ json_t *entry = NULL;
        int r;

        r = files_entry_at(AT_FDCWD, p->sys, p->display, &names, &entry);
        if (r < 0)
                return files_respond_errno(c, r, "stat", p->display);
        return http_respond_json(c, 200, entry);
}

/* Parses the query of a route that takes path and user, and acts as the user from then on
 * (the caller releases as, declared before anything it cleans up as the user). */
static int parse_path_query(const struct http_request *req, struct files_path *ret_path, struct files_as *as,
                            struct files_err *e) {
        _cleanup_query_ struct query q = {};
        int r;

        r = files_query(req, query_path_user, &q, e);
        if (r >= 0)
                r = files_path_parse(query_get(&q, "path"), "path", ret_path, e);
        if (r >= 0)
                r = files_act_as(query_get(&q, "user"), as, e);
        return r;
}

/* ---- read ---- */

static int read_small(struct http_conn *c, int fd, const char *path) {
        _cleanup_buf_ struct buf data = {};
        char chunk[16 * 1024];
        ssize_t n;
        int r;

        buf_init(&data, READ_WHOLE_MAX);
        for (;;) {
                n = read(fd, chunk, sizeof(chunk));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return files_respond_errno(c, errno, "read", path);
                if (n == 0)
                        break;
                r = buf_append(&data, chunk, (size_t) n);
                if (r < 0)
                        return http_respond_error(c, 500, "internal", "%s grew past %d bytes while being read",
                                                  path, READ_WHOLE_MAX);
        }
        return http_respond(c, 200, "application/octet-stream", data.data, data.len);
}

int files_handle_read(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_as_ struct files_as as = {};
        _cleanup_path_ struct files_path p = {};
        _cleanup_close_ int fd = -1;
        struct files_err e;
        struct stat st;
        int r;

        if (parse_path_query(req, &p, &as, &e) < 0)
                return files_respond_err(c, &e);
        /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
        fd = open(p.sys, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno == ENXIO)
                return http_respond_error(c, 400, "bad_request", "not a regular file: %s", p.display);
        if (fd < 0 || fstat(fd, &st) < 0)
                return files_respond_errno(c, errno, "open", p.display);
        if (S_ISDIR(st.st_mode))
                return files_respond_errno(c, EISDIR, "read", p.display);
        if (!S_ISREG(st.st_mode))
                return http_respond_error(c, 400, "bad_request", "not a regular file: %s", p.display);
        if (st.st_size < READ_WHOLE_BELOW)
                return read_small(c, fd, p.display);

        r = http_respond_begin(c, 200, "application/octet-stream", (uint64_t) st.st_size);
        if (r >= 0)
                r = http_sendfile(c, fd, (uint64_t) st.st_size);
        if (r == -ENODATA)
                log_warn("%s shrank while being sent, cutting the response short", p.display);
        return r;
}

/* ---- write ---- */

/* The temp file of an upload, removed unless renamed into place. */
struct upload {
        int dfd;   /* the target's directory (O_PATH) */
        int fd;    /* the temp file */
        char *base; /* the target's name in dfd (after following symlinks) */
        char tmp[sizeof(UPLOAD_PREFIX) + 16];
        mode_t mode;
};

/* Removes the temp file, if any. */
static void upload_abort(struct upload *u) {
        if (u->fd >= 0) {
                close(u->fd);
                (void) unlinkat(u->dfd, u->tmp, 0);
                u->fd = -1;
        }
}

static void upload_done(struct upload *u) {
        upload_abort(u);
        if (u->dfd >= 0)
                close(u->dfd);
        free(u->base);
}
#define _cleanup_upload_ _cleanup_(upload_done)

/* Follows the target through symlinks, as open(2) would, so that the upload replaces the
 * file a link points to: on return u->dfd and u->base name the real target (perhaps
 * missing: then a new file). A directory or a non-regular file is refused. */
static int upload_resolve(struct upload *u, const char *path, struct files_err *e) {
        _cleanup_free_ char *target = NULL;
        struct stat st;
        char *slash;
        int fd, r;

        for (int hops = 0;; hops++) {
                if (fstatat(u->dfd, u->base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return errno == ENOENT ? 0 : files_fail_errno(e, errno, "stat", path);
                if (S_ISDIR(st.st_mode))
                        return files_fail_errno(e, EISDIR, "write", path);
                if (S_ISREG(st.st_mode)) {
                        /* Keep the mode of the file replaced, but not set-id bits: new content. */
                        u->mode = st.st_mode & 01777;
                        return 0;
                }
                if (!S_ISLNK(st.st_mode))
                        return files_fail(e, -EINVAL, 400, "bad_request", "not a regular file: %s", path);
                if (hops >= SYMLINK_HOPS_MAX)
                        return files_fail_errno(e, ELOOP, "write", path);
                free(target);
                target = NULL;
                r = files_readlink_at(u->dfd, u->base, &target);
                if (r < 0)
                        return files_fail_errno(e, r, "read link", path);
                slash = strrchr(target, '/');
                if (slash) {
                        if (!slash[1] || streq(slash + 1, ".") || streq(slash + 1, ".."))
                                return files_fail_errno(e, EISDIR, "write", path);
                        *slash = 0;
                        fd = openat(u->dfd, slash == target ? "/" : target, O_PATH | O_DIRECTORY | O_CLOEXEC);
                        if (fd < 0)
                                return files_fail_errno(e, errno, "open the directory of the link target of",
                                                        path);
                        close(u->dfd);
                        u->dfd = fd;
                }
                free(u->base);
                u->base = strdup(slash ? slash + 1 : target);
                if (!u->base)
                        return files_fail(e, -ENOMEM, 500, "internal", "out of memory");
        }
}

static int upload_open(struct upload *u, const char *path, struct files_err *e) {
        uint64_t rnd;

        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
                return files_fail_errno(e, errno, "create a temp file for", path);
        snprintf(u->tmp, sizeof(u->tmp), UPLOAD_PREFIX "%016llx", (unsigned long long) rnd);
        u->fd = openat(u->dfd, u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (u->fd >= 0)
                return 0;
        if (errno == ENOSPC || errno == EDQUOT || errno == EROFS || errno == EACCES || errno == EPERM ||
            pressure_errno(errno)) /* out of fds or memory: the sandbox's state, a 503 */
                return files_fail_errno(e, errno, "create a temp file for", path);
        /* /proc, /sys and the like refuse new files with odd errors (ENOENT): not a 404. */
        return files_fail(e, -errno, 403, "permission_denied", "cannot create files beside %s: %s", path,
                          strerror(errno));
}

static int write_all(int fd, const char *p, size_t n) {
        ssize_t k;

        while (n > 0) {
                k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Copies the request body into the temp file. */
static int upload_copy(struct http_conn *c, struct upload *u, const char *path, struct files_err *e) {
        _cleanup_free_ char *buf = malloc(UPLOAD_BUF);
        size_t have;
        ssize_t n = 0;
        int r;

        if (!buf)
                return files_fail(e, -ENOMEM, 500, "internal", "out of memory");
        do {
                /* Gather a good part of the buffer first: chunked bodies come in small pieces. */
                for (have = 0; have < UPLOAD_BUF / 2; have += (size_t) n) {
                        n = http_body_read(c, buf + have, UPLOAD_BUF - have);
                        if (n <= 0)
                                break;
                }
                r = write_all(u->fd, buf, have);
                if (r < 0)
                        return files_fail_errno(e, r, "write", path);
        } while (n > 0);
        if (n == -EBADMSG)
                return files_fail(e, (int) n, 400, "bad_request", "malformed chunked request body");
        if (n == -ETIMEDOUT)
                return files_fail(e, (int) n, 408, "timeout", "the upload of %s stalled", path);
        if (n < 0)
                return files_fail(e, (int) n, 400, "bad_request", "the upload of %s ended early: %s", path,
                                  strerror((int) -n));
        return 0;
}

/* Gives the temp file its owner and mode and renames it over the target. */
static int upload_commit(struct upload *u, uid_t uid, gid_t gid, const char *path, struct files_err *e) {
        int fd = u->fd;

        if (fchown(fd, uid, gid) < 0 || fchmod(fd, u->mode) < 0)
                return files_fail_errno(e, errno, "set the owner and mode of", path);
        if (FILES_WRITE_FSYNC && fsync(fd) < 0)
                return files_fail_errno(e, errno, "sync", path);
        u->fd = -1;
        if (close(fd) < 0 || renameat(u->dfd, u->tmp, u->dfd, u->base) < 0) {
                int r = files_fail_errno(e, errno, "rename into place", path);
                (void) unlinkat(u->dfd, u->tmp, 0);
                return r;
        }
        return 0;
}

int files_handle_write(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_as_ struct files_as as = {};
        _cleanup_path_ struct files_path p = {};
        _cleanup_upload_ struct upload u = {.dfd = -1, .fd = -1, .mode = 0644};
        const char *base;
        struct files_err e;

        if (parse_path_query(req, &p, &as, &e) < 0)
                return files_respond_err(c, &e);
        base = files_path_base(&p);
        if (!*base || streq(base, ".") || streq(base, ".."))
                return files_respond_errno(c, EISDIR, "write", p.display);
        u.base = strdup(base);
        if (!u.base)
                return -ENOMEM;
        u.dfd = files_open_parent(&p, true, as.uid, as.gid, &e);
        if (u.dfd < 0 || upload_resolve(&u, p.display, &e) < 0 || upload_open(&u, p.display, &e) < 0 ||
            upload_copy(c, &u, p.display, &e) < 0 || upload_commit(&u, as.uid, as.gid, p.display, &e) < 0) {
                upload_abort(&u); /* before answering: the client may look at once */
                return files_respond_err(c, &e);
        }
        return respond_entry(c, &p);
}

/* ---- info, mkdir, rename, remove ---- */

int files_handle_info(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_as_ struct files_as as = {};
        _cleanup_path_ struct files_path p = {};
        struct files_err e;

        if (parse_path_query(req, &p, &as, &e) < 0)
                return files_respond_err(c, &e);
        return respond_entry(c, &p);
}

int files_handle_mkdir(struct http_conn *c, const struct http_request *req, const char *arg) {
        static const char *const fields[] = {"path", "user", NULL};
        _cleanup_as_ struct files_as as = {};
        _cleanup_json_ json_t *body = NULL, *reply = NULL;
        _cleanup_path_ struct files_path p = {};
        _cleanup_close_ int fd = -1;
        const char *path, *user;
        bool created = false;
        struct files_err e;
        struct stat st;

        if (files_body(req, fields, &body, &e) < 0 || files_body_string(body, "path", true, &path, &e) < 0 ||
            files_body_string(body, "user", false, &user, &e) < 0 || files_path_parse(path, "path", &p, &e) < 0 ||
            files_act_as(user, &as, &e) < 0)
                return files_respond_err(c, &e);
        if (stat(p.sys, &st) >= 0) {
                if (!S_ISDIR(st.st_mode))
                        return http_respond_error(c, 409, "conflict", "exists and is not a directory: %s",
                                                  p.display);
        } else {
                fd = files_open_dir(p.sys, strlen(p.sys), true, as.uid, as.gid, &created, &e);
                if (fd < 0)
                        return files_respond_err(c, &e);
        }
        reply = json_pack("{s:b}", "created", created);
        return reply ? http_respond_json(c, 200, reply) : -ENOMEM;
}

int files_handle_rename(struct http_conn *c, const struct http_request *req, const char *arg) {
        static const char *const fields[] = {"from", "to", "user", NULL};
        _cleanup_as_ struct files_as as = {};
        _cleanup_path_ struct files_path from = {}, to = {};
        _cleanup_json_ json_t *body = NULL;
        _cleanup_close_ int dfd = -1;
        const char *from_text, *to_text, *user, *base;
        struct files_err e;
        struct stat st;

        if (files_body(req, fields, &body, &e) < 0 || files_body_string(body, "from", true, &from_text, &e) < 0 ||
            files_body_string(body, "to", true, &to_text, &e) < 0 ||
            files_body_string(body, "user", false, &user, &e) < 0 ||
            files_path_parse(from_text, "from", &from, &e) < 0 || files_path_parse(to_text, "to", &to, &e) < 0 ||
            files_act_as(user, &as, &e) < 0)
                return files_respond_err(c, &e);
        if (lstat(from.sys, &st) < 0)
                return files_respond_errno(c, errno, "rename", from.display);
        base = files_path_base(&to);
        if (!*base || streq(base, ".") || streq(base, ".."))
                return http_respond_error(c, 400, "bad_request", "cannot rename onto %s", to.display);
        dfd = files_open_parent(&to, true, as.uid, as.gid, &e);
        if (dfd < 0)
                return files_respond_err(c, &e);
        if (renameat(AT_FDCWD, from.sys, dfd, base) < 0) {
                if (errno == EINVAL)
                        return http_respond_error(c, 400, "bad_request", "cannot move %s into itself (%s)",
                                                  from.display, to.display);
                return files_respond_errno(c, errno, "rename", errno == ENOENT ? from.display : to.display);
        }
        return respond_entry(c, &to);
}

int files_handle_remove(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_as_ struct files_as as = {};
        _cleanup_path_ struct files_path p = {};
        const char *base;
        struct files_err e;
        struct stat st;
        int r;

        if (parse_path_query(req, &p, &as, &e) < 0)
                return files_respond_err(c, &e);
        base = files_path_base(&p);
        if (streq(p.display, "/") || !*base)
                return http_respond_error(c, 400, "bad_request", "refusing to remove /");
        if (streq(base, ".") || streq(base, ".."))
                return http_respond_error(c, 400, "bad_request", "refusing to remove a path ending in . or ..: %s",
                                          p.display);
        if (lstat(p.sys, &st) < 0)
                return files_respond_errno(c, errno, "remove", p.display);
        /* Never follows a symlink: a link is removed, a directory emptied with openat(O_NOFOLLOW). */
        r = rm_rf(p.sys);
        if (r < 0)
                return files_respond_errno(c, r, "remove", p.display);
        return http_respond(c, 200, "application/json", "{}", 2);
}
