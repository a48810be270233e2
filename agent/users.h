/* users.h — user accounts from /etc/passwd and /etc/group.
 *
 * The agent is linked statically, and static glibc cannot load the NSS modules behind
 * getpwnam(3), so the account files are parsed here. Only the local files count: a
 * sandbox has no directory service.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#define USER_MAX_GROUPS 64
#define ACCOUNT_FILE_MAX (4 * 1024 * 1024)

struct user_info {
        char *name;
        char *home;
        char *shell;
        uid_t uid;
        gid_t gid;
        gid_t groups[USER_MAX_GROUPS]; /* supplementary groups, the primary one first */
        size_t n_groups;
};

/* Looks name up in passwd_path and its supplementary groups in group_path (a missing
 * group file means no supplementary groups). "root" is found even without a passwd entry
 * or usable account files (uid 0, home /root). On success fills ret (release with user_info_done) and returns 0;
 * -ESRCH when there is no such user, -EBADMSG when its entry is malformed, -errno when a
 * file cannot be read (see account_file_read()). */
int user_lookup_in(const char *passwd_path, const char *group_path, const char *name,
                   struct user_info *ret);

/* user_lookup_in() on /etc/passwd and /etc/group. */
int user_lookup(const char *name, struct user_info *ret);

/* Says why user_lookup() failed with r, for a message ("cannot look up user 'x': …"). */
const char *user_strerror(int r);

/* Frees what user_lookup filled in; accepts a zeroed struct. */
void user_info_done(struct user_info *u);

/* Reads the account file at path (symlinks followed) into a new NUL-terminated string,
 * without blocking on what is not a file: -EINVAL unless it is a regular file, -EFBIG
 * when it is over ACCOUNT_FILE_MAX bytes, -errno when it cannot be opened or read. */
int account_file_read(const char *path, char **ret, size_t *ret_len);

/* Parses a decimal uid/gid (no sign, no junk, not the reserved (uid_t) -1). */
int parse_id(const char *s, unsigned *ret);
