/* ptree.c — see ptree.h. A snapshot costs one open and one read of /proc/<pid>/stat per
 * process (a few milliseconds for a thousand), so it is taken only when something is to be
 * killed or counted, never on a hot path.
 */
#include "ptree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"

#define STAT_MAX 1024         /* /proc/<pid>/stat is a few hundred bytes, comm included */
#define PTREE_MAX (1 << 22)   /* pid_max can be at most 4194304 */

/* Parses a /proc/<pid>/stat line into e; -EINVAL if it is not one. */
static int parse_stat(const char *line, struct ptree_entry *e) {
        const char *p = strrchr(line, ')'); /* the command name may hold anything, ')' too */
        unsigned long long start;
        unsigned threads;
        int pid, ppid, pgid;
        char state;

        if (sscanf(line, "%d", &pid) != 1 || !p)
                return -EINVAL;
        /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
         * cutime cstime priority nice num_threads itrealvalue starttime */
        if (sscanf(p + 1, " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %u %*d %llu", &state,
                   &ppid, &pgid, &threads, &start) != 5)
                return -EINVAL;
        *e = (struct ptree_entry){
                .pid = pid, .ppid = ppid, .pgid = pgid, .state = state, .threads = threads, .start = start};
        return 0;
}

/* Reads the stat of the process whose /proc directory (or /proc itself, with name) is dirfd. */
static int read_stat_at(int dirfd, const char *name, struct ptree_entry *e) {
        char line[STAT_MAX];
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, line, sizeof(line) - 1);
        if (n <= 0)
                return n < 0 ? -errno : -ESRCH;
        line[n] = 0;
        return parse_stat(line, e);
}

static int by_pid(const void *a, const void *b) {
        const struct ptree_entry *x = a, *y = b;

        return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Appends e to t, growing it; -ENOMEM. */
static int append(struct ptree *t, size_t *cap, const struct ptree_entry *e) {
        if (t->n == *cap) {
                size_t k = *cap ? *cap * 2 : 256;
                struct ptree_entry *v = k <= PTREE_MAX ? reallocarray(t->v, k, sizeof(*v)) : NULL;
                if (!v)
                        return -ENOMEM;
                t->v = v;
                *cap = k;
        }
        t->v[t->n++] = *e;
        return 0;
}

int ptree_read(struct ptree *ret) {
        struct ptree t = {};
        struct ptree_entry e;
        struct dirent *de;
        size_t cap = 0;
        int r = 0;
        DIR *d;

        d = opendir("/proc");
        if (!d)
                return -errno;
        while (r >= 0 && (de = readdir(d))) {
                char name[32];

                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                snprintf(name, sizeof(name), "%s/stat", de->d_name);
                if (read_stat_at(dirfd(d), name, &e) < 0)
                        continue; /* gone meanwhile */
                r = append(&t, &cap, &e);
        }
        closedir(d);
        if (r < 0) {
                ptree_done(&t);
                return r;
        }
        if (t.n > 0)
                qsort(t.v, t.n, sizeof(*t.v), by_pid);
        *ret = t;
        return 0;
}

void ptree_done(struct ptree *t) {
        free(t->v);
        *t = (struct ptree){};
}

const struct ptree_entry *ptree_find(const struct ptree *t, pid_t pid) {
        struct ptree_entry key = {.pid = pid};

        return t->n ? bsearch(&key, t->v, t->n, sizeof(*t->v), by_pid) : NULL;
}

bool ptree_entry_dead(const struct ptree_entry *e) {
        return e->state == 'Z' || e->state == 'X' || e->state == 'x';
}

/* Decides whether entry i descends from root by walking up its parents until an entry whose
 * answer is known; marks every entry on the way. mark: 0 unknown, 1 in, 2 out. */
static void resolve(const struct ptree *t, size_t i, pid_t root, uint8_t *mark, size_t *path) {
        size_t depth = 0, j = i;
        uint8_t answer = 2;

        while (mark[j] == 0 && depth < t->n) {
                const struct ptree_entry *parent;

                path[depth++] = j;
                if (t->v[j].ppid == root) {
                        answer = 1;
                        break;
                }
                parent = ptree_find(t, t->v[j].ppid);
                if (!parent || parent->pid == t->v[j].pid)
                        break; /* reached the top (pid 1's parent is 0), or a torn snapshot */
                j = (size_t) (parent - t->v);
        }
        if (mark[j] != 0)
                answer = mark[j];
        while (depth > 0)
                mark[path[--depth]] = answer;
}

ssize_t ptree_subtree(const struct ptree *t, pid_t root, bool *in) {
        _cleanup_free_ uint8_t *mark = calloc(t->n + 1, 1);
        _cleanup_free_ size_t *path = calloc(t->n + 1, sizeof(size_t));
        ssize_t count = 0;

        const struct ptree_entry *r = ptree_find(t, root);

        if (!mark || !path)
                return -ENOMEM;
        if (r)
                mark[r - t->v] = 2; /* not its own descendant; its parents are not looked at */
        for (size_t i = 0; i < t->n; i++)
                if (mark[i] == 0)
                        resolve(t, i, root, mark, path);
        for (size_t i = 0; i < t->n; i++) {
                in[i] = mark[i] == 1;
                count += in[i];
        }
        return count;
}

int ptree_signal(const struct ptree_entry *e, int sig) {
        char path[32];
        struct ptree_entry now;
        _cleanup_close_ int fd = -1;
        int r;

        snprintf(path, sizeof(path), "/proc/%d", (int) e->pid);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : -errno;
        r = read_stat_at(fd, "stat", &now);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;
        if (now.start != e->start)
                return -ESRCH; /* the pid is another process's now */
        if (syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0)
                return 0;
        if (errno != ENOSYS)
                return -errno;
        /* gVisor (runsc 2024-07-29) has no pidfd calls at all, so the signal goes by number,
         * just after the start time was checked: a pid reused within those microseconds is
         * the one case left, and it can only be another process of this sandbox. */
        return kill(e->pid, sig) < 0 ? -errno : 0;
}

ssize_t ptree_signal_subtree(pid_t root, pid_t pgid, int sig) {
        _cleanup_ptree_ struct ptree t = {};
        _cleanup_free_ bool *in = NULL;
        ssize_t n, sent = 0;
        int r;

        r = ptree_read(&t);
        if (r < 0)
                return r;
        in = calloc(t.n + 1, sizeof(bool));
        if (!in)
                return -ENOMEM;
        n = ptree_subtree(&t, root, in);
        if (n < 0)
                return n;
        for (size_t i = 0; i < t.n; i++)
                if (in[i] && !ptree_entry_dead(&t.v[i]) && (pgid <= 0 || t.v[i].pgid == pgid) &&
                    ptree_signal(&t.v[i], sig) >= 0)
                        sent++;
        return sent;
}

unsigned ptree_tasks(const struct ptree *t) {
        unsigned n = 0;

        for (size_t i = 0; i < t->n; i++)
                n += t->v[i].threads;
        return n;
}
