/* users.c — see users.h. Lines are "name:password:uid:gid:gecos:home:shell" and
 * "name:password:gid:member,member". Comment lines and NIS "+"/"-" entries are skipped;
 * a line too malformed to use is skipped unless it is the one asked for. */
#include "users.h"

#include "macro.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

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

        line[strcspn(line, "\n")] = 0;
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
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        char *fields[7];
        unsigned uid, gid;

        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ESRCH : -errno;
        while (getline(&line, &size, f) >= 0) {
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
        return ferror(f) ? -EIO : -ESRCH;
}

static bool member_of(char *members, const char *name) {
        char *m;

        while ((m = strsep(&members, ",")))
                if (streq(m, name))
                        return true;
        return false;
}

static int groups_add(const char *path, struct user_info *u) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        char *fields[4];
        unsigned gid;

        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? 0 : -errno;
        while (getline(&line, &size, f) >= 0 && u->n_groups < USER_MAX_GROUPS) {
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
        if (r == -ESRCH && streq(name, "root"))
                r = user_info_fill(&u, "root", 0, 0, "/root", "/bin/sh");
        if (r < 0)
                return r;
        r = groups_add(group_path, &u);
        if (r < 0) {
                user_info_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}

int user_lookup(const char *name, struct user_info *ret) {
        return user_lookup_in("/etc/passwd", "/etc/group", name, ret);
}
