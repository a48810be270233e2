/* users.c — see users.h. Lines are "name:password:uid:gid:gecos:home:shell" and
 * "name:password:gid:member,member". Comment lines and NIS "+"/"-" entries are skipped;
 * a line too malformed to use is skipped unless it is the one asked for.
 *
 * The account files belong to the sandbox, whose root may replace them with anything: they
 * are opened without blocking (a FIFO would otherwise hang the request, and with it the
 * agent's start of every process), must be regular files (symlinks are followed: a template
 * may link them) and are read whole, up to ACCOUNT_FILE_MAX bytes, then parsed in memory. */
#include "users.h"

#include "macro.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int account_file_read(const char *path, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        struct stat st;
        ssize_t n;

        fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if (st.st_size > ACCOUNT_FILE_MAX)
                return -EFBIG;
        text = malloc((size_t) st.st_size + 1);
        if (!text)
                return -ENOMEM;
        /* The size may change meanwhile: what was read up to it counts. */
        while (len < (size_t) st.st_size) {
                n = read(fd, text + len, (size_t) st.st_size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        text[len] = 0;
        *ret = TAKE_PTR(text);
        if (ret_len)
                *ret_len = len;
        return 0;
}

/* The next line of the text that ends at end (a NUL there), NUL-terminated in place; *p
 * moves past it. NULL at the end. */
static char *next_entry(char **p, char *end) {
        char *line = *p, *nl;

        if (line >= end)
                return NULL;
        nl = memchr(line, '\n', (size_t) (end - line));
        if (nl)
                *nl = 0;
        *p = nl ? nl + 1 : end;
        return line;
}

int parse_id(const char *s, unsigned *ret) {
        unsigned long v;
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != 0 || v >= UINT_MAX)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* Splits line in place at ':' into at most n fields; returns the number found. */
static size_t split_fields(char *line, char **fields, size_t n) {
        size_t k = 0;
        char *p = line;

        while (p && k < n)
                fields[k++] = strsep(&p, ":");
        return k;
}

void user_info_done(struct user_info *u) {
        free(u->name);
        free(u->home);
        free(u->shell);
        *u = (struct user_info){};
}

static int user_info_fill(struct user_info *u, const char *name, unsigned uid, unsigned gid,
                          const char *home, const char *shell) {
        u->name = strdup(name);
        u->home = strdup(home && *home ? home : "/");
        u->shell = strdup(shell && *shell ? shell : "/bin/sh");
        if (!u->name || !u->home || !u->shell) {
                user_info_done(u);
                return -ENOMEM;
        }
        u->uid = uid;
        u->gid = gid;
        u->groups[0] = gid;
        u->n_groups = 1;
        return 0;
}

static int passwd_find(const char *path, const char *name, struct user_info *ret) {
        _cleanup_free_ char *text = NULL;
        char *p, *end, *line, *fields[7];
        unsigned uid, gid;
        size_t len;
        int r;

        r = account_file_read(path, &text, &len);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;
        for (p = text, end = text + len; (line = next_entry(&p, end));) {
                if (line[0] == '#' || line[0] == '+' || line[0] == '-')
                        continue;
                if (split_fields(line, fields, ELEMENTSOF(fields)) != ELEMENTSOF(fields))
                        continue;
                if (!streq(fields[0], name))
                        continue;
                if (parse_id(fields[2], &uid) < 0 || parse_id(fields[3], &gid) < 0)
                        return -EBADMSG;
                return user_info_fill(ret, name, uid, gid, fields[5], fields[6]);
        }
        return -ESRCH;
}

static bool member_of(char *members, const char *name) {
        char *m;

        while ((m = strsep(&members, ",")))
                if (streq(m, name))
                        return true;
        return false;
}

static int groups_add(const char *path, struct user_info *u) {
        _cleanup_free_ char *text = NULL;
        char *p, *end, *line, *fields[4];
        unsigned gid;
        size_t len;
        int r;

        r = account_file_read(path, &text, &len);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        for (p = text, end = text + len; (line = next_entry(&p, end)) && u->n_groups < USER_MAX_GROUPS;) {
                if (line[0] == '#' || line[0] == '+' || line[0] == '-')
                        continue;
                if (split_fields(line, fields, ELEMENTSOF(fields)) != ELEMENTSOF(fields))
                        continue;
                if (parse_id(fields[2], &gid) < 0 || gid == u->gid)
                        continue;
                if (member_of(fields[3], u->name))
                        u->groups[u->n_groups++] = gid;
        }
        return 0;
}

int user_lookup_in(const char *passwd_path, const char *group_path, const char *name,
                   struct user_info *ret) {
        struct user_info u = {};
        int r;

        r = passwd_find(passwd_path, name, &u);
        /* Root needs no account files: a sandbox whose root broke them can still be repaired. */
        if (r < 0 && r != -ENOMEM && streq(name, "root"))
                r = user_info_fill(&u, "root", 0, 0, "/root", "/bin/sh");
        if (r < 0)
                return r;
        r = groups_add(group_path, &u);
        if (r < 0 && (r == -ENOMEM || !streq(name, "root"))) {
                user_info_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}

int user_lookup(const char *name, struct user_info *ret) {
        return user_lookup_in("/etc/passwd", "/etc/group", name, ret);
}

const char *user_strerror(int r) {
        _Static_assert(ACCOUNT_FILE_MAX == 4 * 1024 * 1024, "the message says 4 MiB");

        switch (r) {
        case -EINVAL:
                return "/etc/passwd or /etc/group is not a regular file";
        case -EFBIG:
                return "/etc/passwd or /etc/group is larger than 4 MiB";
        case -EBADMSG:
                return "its /etc/passwd entry is malformed";
        default:
                return strerror(-r);
        }
}
