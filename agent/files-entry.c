/* files-entry.c — the entry object of docs/api.md ("Files") for one lstat() result, and
 * the uid/gid → name tables it takes owner and group from.
 *
 * The tables come from the sandbox's own /etc/passwd and /etc/group (the agent is static:
 * no NSS), read at most once per request, so that listing 100000 entries reads them once.
 * An id without a name is shown as its number. File names are bytes; what is not UTF-8 is
 * shown with U+FFFD in its place (JSON strings must be UTF-8).
 */
#include "files-util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "timeutil.h"
#include "users.h"
#include "utf8.h"

#define ACCOUNTS_MAX 65536

struct files_name_id {
        unsigned id;
        const char *name;
};

void files_names_done(struct files_names *n) {
        free(n->passwd);
        free(n->group);
        free(n->users);
        free(n->groups);
        *n = (struct files_names){};
}

/* Indexes "name:x:id:…" lines of text (modified in place) into *ret. A missing or
 * unreadable file gives an empty table: names are a nicety, numbers still show. */
static void load_table(const char *path, char **ret_text, struct files_name_id **ret, size_t *ret_n) {
        char *text = NULL, *line, *p, *fields[3];
        size_t len, n = 0, k, lines = 1;
        struct files_name_id *t;

        if (account_file_read(path, &text, &len) < 0)
                return;
        for (p = text; (p = strchr(p, '\n')); p++)
                lines++;
        lines = MIN(lines, (size_t) ACCOUNTS_MAX);
        t = calloc(lines, sizeof(*t));
        if (!t) {
                free(text);
                return;
        }
        p = text;
        while ((line = strsep(&p, "\n")) && n < lines) {
                if (line[0] == '#' || line[0] == '+' || line[0] == '-')
                        continue;
                for (k = 0; k < ELEMENTSOF(fields) && line; k++)
                        fields[k] = strsep(&line, ":");
                if (k == ELEMENTSOF(fields) && parse_id(fields[2], &t[n].id) >= 0 && *fields[0]) {
                        t[n].name = fields[0];
                        n++;
                }
        }
        *ret_text = text;
        *ret = t;
        *ret_n = n;
}

static const char *name_of(const struct files_name_id *t, size_t n, unsigned id, char buf[16]) {
        for (size_t i = 0; i < n; i++)
                if (t[i].id == id)
                        return t[i].name;
        snprintf(buf, 16, "%u", id);
        return buf;
}

static void names_load(struct files_names *n) {
        if (n->loaded)
                return;
        n->loaded = true;
        load_table("/etc/passwd", &n->passwd, &n->users, &n->n_users);
        load_table("/etc/group", &n->group, &n->groups, &n->n_groups);
}

/* ls(1)'s mode string: type, then rwx for user, group, others with s/S/t/T. */
static void format_permissions(mode_t m, char out[11]) {
        static const char bits[] = "rwxrwxrwx";

        out[0] = S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : S_ISCHR(m) ? 'c' : S_ISBLK(m) ? 'b' : S_ISFIFO(m) ? 'p'
                 : S_ISSOCK(m)                                                                  ? 's'
                                                                                                : '-';
        for (int i = 0; i < 9; i++)
                out[1 + i] = m & (1u << (8 - i)) ? bits[i] : '-';
        if (m & S_ISUID)
                out[3] = out[3] == 'x' ? 's' : 'S';
        if (m & S_ISGID)
                out[6] = out[6] == 'x' ? 's' : 'S';
        if (m & S_ISVTX)
                out[9] = out[9] == 'x' ? 't' : 'T';
        out[10] = 0;
}

static const char *type_of(mode_t m) {
        return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "symlink" : "other";
}

json_t *files_json_text(const char *s) {
        _cleanup_free_ char *clean = NULL;
        json_t *j = json_string(s);
        size_t len;

        if (j || utf8_sanitize(s, strlen(s), &clean, &len) < 0)
                return j;
        return json_stringn(clean, len);
}

json_t *files_entry_new(const char *path, const struct stat *st, const char *symlink_target,
                        struct files_names *names) {
        char perms[11], ts[RFC3339_LEN + 1], ubuf[16], gbuf[16];
        const char *name = streq(path, "/") ? "/" : strrchr(path, '/') + 1;
        int64_t mtime_ms = (int64_t) st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;

        names_load(names);
        format_permissions(st->st_mode, perms);
        format_rfc3339(mtime_ms, ts);
        return json_pack("{s:o,s:o,s:s,s:I,s:i,s:s,s:s,s:s,s:s,s:o}", "name", files_json_text(name), "path",
                         files_json_text(path), "type", type_of(st->st_mode), "size", (json_int_t) st->st_size, "mode",
                         (int) (st->st_mode & 07777), "permissions", perms, "owner",
                         name_of(names->users, names->n_users, st->st_uid, ubuf), "group",
                         name_of(names->groups, names->n_groups, st->st_gid, gbuf), "modified_time", ts,
                         "symlink_target", symlink_target ? files_json_text(symlink_target) : json_null());
}

int files_readlink_at(int dfd, const char *name, char **ret) {
        char buf[PATH_MAX + 1];
        ssize_t n = readlinkat(dfd, name, buf, sizeof(buf) - 1);

        if (n < 0)
                return -errno;
        buf[n] = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int files_entry_at(int dfd, const char *name, const char *path, struct files_names *names, json_t **ret) {
        _cleanup_free_ char *target = NULL;
        struct stat st;
        json_t *entry;
        int r;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (S_ISLNK(st.st_mode)) {
                r = files_readlink_at(dfd, name, &target);
                if (r < 0)
                        return r;
        }
        entry = files_entry_new(path, &st, target, names);
        if (!entry)
                return -ENOMEM;
        *ret = entry;
        return 0;
}
