/* files-util.h — what the /files handlers share: the error they answer with, paths (the
 * one the kernel resolves and the one shown), request parsing (query, JSON body), acting as
 * the request's user, directory walks that create missing parents, and the entry JSON of
 * docs/api.md.
 *
 * Every path a request names is handed to the kernel as given (made absolute against
 * FILES_HOME): the agent runs inside the sandbox, so ".." and symlinks resolve in the
 * sandbox's own root, which is the point. Only what is shown (entries, messages) is
 * normalized lexically.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fsid.h"
#include "http.h"
#include "query.h"

#define FILES_HOME "/home/sandbox"
#define FILES_PATH_MAX 4096
#define FILES_MESSAGE_MAX 1024

/* Why a request failed, as it will be answered. */
struct files_err {
        int status;
        const char *code;
        char message[FILES_MESSAGE_MAX];
};

/* Fills e and returns ret (a negative errno), so that `return files_fail(e, …)` reads. */
int files_fail(struct files_err *e, int ret, int status, const char *code, const char *fmt, ...) _printf_(5, 6);

/* Fills e from a failed file operation on path (shown as is): ENOENT → 404 "no such file
 * or directory: path", ENOTDIR/EISDIR/ELOOP/… → 400, EACCES/EPERM/EROFS → 403, EEXIST/
 * ENOTEMPTY/EBUSY → 409, ENOSPC/EDQUOT → 507, anything else 500 "cannot <op> path: …".
 * Returns -abs(err). */
int files_fail_errno(struct files_err *e, int err, const char *op, const char *path);

/* Sends e as the {"error":…} response. */
int files_respond_err(struct http_conn *c, const struct files_err *e);

/* files_fail_errno() and files_respond_err() in one. */
int files_respond_errno(struct http_conn *c, int err, const char *op, const char *path);

/* A path of a request. */
struct files_path {
        char *sys;     /* for the kernel: absolute, trailing slashes dropped ("/" stays) */
        char *display; /* lexically normalized: no ".", "..", "//", trailing '/' */
};

/* Checks and converts the path text of a request: not empty, at most FILES_PATH_MAX
 * bytes, absolute or relative to FILES_HOME. -EINVAL (400 in e) otherwise. */
int files_path_parse(const char *text, const char *field, struct files_path *ret, struct files_err *e);

/* Frees what files_path_parse() filled in; accepts a zeroed struct. */
void files_path_done(struct files_path *p);

/* Normalizes the len bytes of the absolute path s lexically into a new string. */
char *files_path_normalize(const char *s, size_t len);

/* Joins a normalized directory path and an entry name into a new string. */
char *files_path_join(const char *dir, const char *name);

/* The last component of p->sys ("" for "/"), pointing into it. */
const char *files_path_base(const struct files_path *p);

/* Opens (O_PATH) the directory that holds the last component of p->sys; with create,
 * missing directories on the way are made (mode 0755, owned by uid:gid). Returns the fd,
 * or -errno with e naming the component that failed ("not a directory: /a/file"). */
int files_open_parent(const struct files_path *p, bool create, uid_t uid, gid_t gid, struct files_err *e);

/* Opens (O_PATH) the directory sys (len bytes of it), following symlinks, creating it
 * and its missing parents like files_open_parent() when create. *ret_created (may be
 * NULL) tells whether the last component was made. On failure e names the component. */
int files_open_dir(const char *sys, size_t len, bool create, uid_t uid, gid_t gid, bool *ret_created,
                   struct files_err *e);

/* Parses req's query, allowing only the keys of allowed (NULL-terminated), each once. On
 * failure fills e (400) and returns -EINVAL; on success ret is released by query_done(). */
int files_query(const struct http_request *req, const char *const *allowed, struct query *ret, struct files_err *e);

/* Parses req's body as a JSON object (empty body = {}) with only the keys of allowed;
 * 400 in e if it is not. */
int files_body(const struct http_request *req, const char *const *allowed, json_t **ret, struct files_err *e);

/* The string field key of body: *ret is NULL when absent or null (-EINVAL with 400 in e
 * when required then, or when it is not a string). */
int files_body_string(json_t *body, const char *key, bool required, const char **ret, struct files_err *e);

/* Who a request acts as. */
struct files_as {
        uid_t uid;
        gid_t gid;
        struct fsid fsid; /* the thread's own identity, while it acts as a user */
};

/* Looks the user name up in the sandbox's /etc/passwd (NULL means root; 400 in e for an
 * unknown user) and, unless it is root, makes the calling thread act on files as that user
 * (fsid.h) until files_as_done(): from then on the kernel checks every path lookup, open,
 * create, rename and unlink as it would the user's own, and what the user may not do fails
 * with EACCES/EPERM (403, the message naming the user). A user the thread cannot act as is
 * 500 in e. */
int files_act_as(const char *name, struct files_as *ret, struct files_err *e);

/* Gives the thread its own identity back; accepts a zeroed struct. */
void files_as_done(struct files_as *as);

/* uid/gid → name, read once per request from the sandbox's /etc/passwd and /etc/group. */
struct files_names {
        bool loaded;
        char *passwd, *group; /* the files' text, which the tables point into */
        struct files_name_id *users, *groups;
        size_t n_users, n_groups;
};

/* Frees the tables; accepts a zeroed struct. */
void files_names_done(struct files_names *n);

/* The entry object of the thing at path (shown as is), described by st and, for a
 * symlink, its target. NULL on allocation failure. */
json_t *files_entry_new(const char *path, const struct stat *st, const char *symlink_target,
                        struct files_names *names);

/* lstat()s name in the directory dfd (or a path, with AT_FDCWD) and builds its entry,
 * shown as path. Returns 0 or -errno. */
int files_entry_at(int dfd, const char *name, const char *path, struct files_names *names, json_t **ret);

/* A JSON string of s, bytes that may not be UTF-8 (file names): ill-formed sequences
 * become U+FFFD. NULL on allocation failure. */
json_t *files_json_text(const char *s);

/* Reads the target of the symlink name in dfd into a new string. */
int files_readlink_at(int dfd, const char *name, char **ret);

#define _cleanup_as_ _cleanup_(files_as_done)
static inline void files_names_donep(struct files_names *n) { files_names_done(n); }
static inline void files_path_donep(struct files_path *p) { files_path_done(p); }
#define _cleanup_names_ _cleanup_(files_names_donep)
#define _cleanup_path_ _cleanup_(files_path_donep)
#define _cleanup_json_ _cleanup_(json_decrefp) /* jansson's own helper */
