/* files-util.c — see files-util.h: errors, paths, directory walks and request parsing
 * for the /files handlers. (Entries and the uid/gid names are in files-entry.c.)
 */
#include "files-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "pressure.h"
#include "users.h"

int files_fail(struct files_err *e, int ret, int status, const char *code, const char *fmt, ...) {
        va_list ap;

        e->status = status;
        e->code = code;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof(e->message), fmt, ap);
        va_end(ap);
        return ret;
}

/* The user the calling thread acts as (files_act_as()), for messages; "" for root. */
static _Thread_local char acting_as[64];

int files_fail_errno(struct files_err *e, int err, const char *op, const char *path) {
        static const struct {
                int err;
                int status;
                const char *code;
                const char *text;
        } map[] = {
                {ENOENT, 404, "not_found", "no such file or directory"},
                {ENOTDIR, 400, "bad_request", "not a directory"},
                {EISDIR, 400, "bad_request", "is a directory"},
                {ELOOP, 400, "bad_request", "too many levels of symbolic links"},
                {ENAMETOOLONG, 400, "bad_request", "file name too long"},
                {EXDEV, 400, "bad_request", "cannot move across file systems"},
                {EINVAL, 400, "bad_request", "invalid argument"},
                {EACCES, 403, "permission_denied", "permission denied"},
                {EPERM, 403, "permission_denied", "operation not permitted"},
                {EROFS, 403, "permission_denied", "read-only file system"},
                {EEXIST, 409, "conflict", "file exists"},
                {ENOTEMPTY, 409, "conflict", "directory not empty"},
                {EBUSY, 409, "conflict", "device or resource busy (a mount point?)"},
                {ETXTBSY, 409, "conflict", "text file busy"},
                {EMLINK, 409, "conflict", "too many links"},
                {ENOSPC, 507, "insufficient_storage", "no space left on device"},
                {EDQUOT, 507, "insufficient_storage", "disk quota exceeded"},
                {EFBIG, 507, "insufficient_storage", "file too large"},
        };
        bool as_user;

        err = abs(err);
        if (pressure_errno(err)) { /* the sandbox's state, not the request's */
                char why[256];
                return files_fail(e, -err, 503, "unavailable", "cannot %s %s: %s", op, path,
                                  pressure_describe(err, why, sizeof(why)));
        }
        /* Say whose permission was lacking: the request's user, not root. */
        as_user = (err == EACCES || err == EPERM) && acting_as[0];
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (map[i].err == err)
                        return files_fail(e, -err, map[i].status, map[i].code, "%s: %s%s%s%s", map[i].text, path,
                                          as_user ? " (as user " : "", as_user ? acting_as : "", as_user ? ")" : "");
        return files_fail(e, -err, 500, "internal", "cannot %s %s: %s", op, path, strerror(err));
}

int files_respond_err(struct http_conn *c, const struct files_err *e) {
        return http_respond_error(c, e->status, e->code, "%s", e->message);
}

int files_respond_errno(struct http_conn *c, int err, const char *op, const char *path) {
        struct files_err e;

        files_fail_errno(&e, err, op, path);
        return files_respond_err(c, &e);
}

/* ---- paths ---- */

char *files_path_normalize(const char *s, size_t len) {
        char *out = malloc(len + 2), *o = out;
        const char *p = s, *end = s + len;

        if (!out)
                return NULL;
        while (p < end) {
                const char *slash = memchr(p, '/', (size_t) (end - p));
                size_t n = slash ? (size_t) (slash - p) : (size_t) (end - p);

                if (n == 0 || (n == 1 && p[0] == '.')) {
                        /* nothing */
                } else if (n == 2 && p[0] == '.' && p[1] == '.') {
                        while (o > out && *--o != '/')
                                ;
                } else {
                        *o++ = '/';
                        memcpy(o, p, n);
                        o += n;
                }
                p += n + (slash ? 1 : 0);
        }
        if (o == out)
                *o++ = '/';
        *o = 0;
        return out;
}

char *files_path_join(const char *dir, const char *name) {
        char *out;

        if (asprintf(&out, "%s%s%s", dir, streq(dir, "/") ? "" : "/", name) < 0)
                return NULL;
        return out;
}

void files_path_done(struct files_path *p) {
        free(p->sys);
        free(p->display);
        *p = (struct files_path){};
}

int files_path_parse(const char *text, const char *field, struct files_path *ret, struct files_err *e) {
        struct files_path p = {};
        size_t len;

        if (!text || !*text)
                return files_fail(e, -EINVAL, 400, "bad_request", "%s must not be empty", field);
        len = strlen(text);
        if (len > FILES_PATH_MAX)
                return files_fail(e, -EINVAL, 400, "bad_request", "%s is longer than %d bytes", field,
                                  FILES_PATH_MAX);
        if (asprintf(&p.sys, "%s%s", text[0] == '/' ? "" : FILES_HOME "/", text) < 0)
                return files_fail(e, -ENOMEM, 500, "internal", "out of memory");
        len = strlen(p.sys);
        while (len > 1 && p.sys[len - 1] == '/')
                p.sys[--len] = 0;
        p.display = files_path_normalize(p.sys, len);
        if (!p.display) {
                files_path_done(&p);
                return files_fail(e, -ENOMEM, 500, "internal", "out of memory");
        }
        *ret = p;
        return 0;
}

const char *files_path_base(const struct files_path *p) {
        return strrchr(p->sys, '/') + 1;
}

/* ---- directory walks ---- */

/* Opens component name of dfd as a directory, making it first if create and missing. */
static int open_component(int dfd, const char *name, bool create, uid_t uid, gid_t gid, bool *ret_created) {
        int fd;

        *ret_created = false;
        fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT || !create || streq(name, ".."))
                return fd >= 0 ? fd : -errno;
        if (mkdirat(dfd, name, 0755) < 0) {
                if (errno != EEXIST)
                        return -errno;
                /* Made meanwhile, or a dangling symlink (then open fails again). */
        } else {
                *ret_created = true;
                if (fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return -errno;
        }
        fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
        return fd >= 0 ? fd : errno == ENOENT ? -EEXIST : -errno;
}

int files_open_dir(const char *sys, size_t len, bool create, uid_t uid, gid_t gid, bool *ret_created,
                   struct files_err *e) {
        _cleanup_close_ int dfd = -1;
        char name[FILES_PATH_MAX + 1];
        const char *p = sys, *end = sys + len;
        bool created = false;
        int fd;

        dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return files_fail_errno(e, errno, "open", "/");
        while (p < end) {
                const char *slash = memchr(p, '/', (size_t) (end - p));
                size_t n = slash ? (size_t) (slash - p) : (size_t) (end - p);

                if (n == 0 || (n == 1 && p[0] == '.')) {
                        p += n + 1;
                        continue;
                }
                if (n >= sizeof(name))
                        return files_fail_errno(e, ENAMETOOLONG, "open", sys);
                memcpy(name, p, n);
                name[n] = 0;
                fd = open_component(dfd, name, create, uid, gid, &created);
                if (fd < 0) {
                        _cleanup_free_ char *where = files_path_normalize(sys, (size_t) (p + n - sys));
                        if (fd == -EEXIST)
                                fd = -ENOTDIR; /* something that is not a directory is in the way */
                        return files_fail_errno(e, fd, create ? "create directory" : "open directory",
                                                where ? where : sys);
                }
                close(dfd);
                dfd = fd;
                p += n + 1;
        }
        if (ret_created)
                *ret_created = created;
        return TAKE_FD(dfd);
}

int files_open_parent(const struct files_path *p, bool create, uid_t uid, gid_t gid, struct files_err *e) {
        const char *base = files_path_base(p);

        return files_open_dir(p->sys, (size_t) (base - p->sys), create, uid, gid, NULL, e);
}

/* ---- requests ---- */

int files_query(const struct http_request *req, const char *const *allowed, struct query *ret, struct files_err *e) {
        const char *key = NULL;
        int r;

        r = query_parse(req->query, ret);
        if (r < 0)
                return files_fail(e, -EINVAL, 400, "bad_request", "%s", query_strerror(r));
        r = query_check(ret, allowed, &key);
        if (r < 0) {
                files_fail(e, -EINVAL, 400, "bad_request", "%s query parameter '%s'",
                           r == -ENOTUNIQ ? "repeated" : "unknown", key);
                query_done(ret);
                return -EINVAL;
        }
        return 0;
}

int files_body(const struct http_request *req, const char *const *allowed, json_t **ret, struct files_err *e) {
        json_error_t jerr;
        const char *key;
        json_t *body, *value;

        if (req->body.len == 0)
                body = json_object();
        else
                body = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!body)
                return files_fail(e, -EINVAL, 400, "bad_request", "malformed JSON body: %s", jerr.text);
        if (!json_is_object(body)) {
                json_decref(body);
                return files_fail(e, -EINVAL, 400, "bad_request", "the body must be a JSON object");
        }
        json_object_foreach(body, key, value) {
                bool known = false;

                for (const char *const *a = allowed; *a && !known; a++)
                        known = streq(*a, key);
                if (!known) {
                        files_fail(e, -EINVAL, 400, "bad_request", "unknown field '%s'", key);
                        json_decref(body);
                        return -EINVAL;
                }
        }
        *ret = body;
        return 0;
}

int files_body_string(json_t *body, const char *key, bool required, const char **ret, struct files_err *e) {
        json_t *v = json_object_get(body, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return required ? files_fail(e, -EINVAL, 400, "bad_request", "'%s' is required", key) : 0;
        if (!json_is_string(v))
                return files_fail(e, -EINVAL, 400, "bad_request", "'%s' must be a string", key);
        *ret = json_string_value(v);
        return 0;
}

int files_act_as(const char *name, struct files_as *ret, struct files_err *e) {
        struct user_info u = {};
        int r;

        *ret = (struct files_as){};
        if (!name)
                return 0; /* root, who needs no account files */
        r = user_lookup(name, &u);
        if (r == -ESRCH)
                return files_fail(e, -EINVAL, 400, "bad_request", "no such user in the sandbox: %s", name);
        if (r < 0)
                return files_fail(e, r, pressure_errno(r) ? 503 : 500, pressure_errno(r) ? "unavailable" : "internal",
                                  "cannot look up user '%s': %s", name, user_strerror(r));
        r = fsid_enter(u.uid, u.gid, u.groups, u.n_groups, &ret->fsid);
        if (r < 0) {
                files_fail(e, r, pressure_errno(r) ? 503 : 500, pressure_errno(r) ? "unavailable" : "internal",
                           "cannot act as user %s: %s", u.name, strerror(-r));
                user_info_done(&u);
                return r;
        }
        if (ret->fsid.active)
                snprintf(acting_as, sizeof(acting_as), "%s", u.name);
        ret->uid = u.uid;
        ret->gid = u.gid;
        user_info_done(&u);
        return 0;
}

void files_as_done(struct files_as *as) {
        if (!as->fsid.active)
                return;
        fsid_leave(&as->fsid);
        acting_as[0] = 0;
}
