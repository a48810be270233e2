/* fsutil.c — see fsutil.h. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

int mkdir_p(const char *path, mode_t mode) {
        char tmp[PATH_MAX];
        size_t n = strlen(path);

        if (n == 0 || n >= sizeof(tmp))
                return -EINVAL;
        memcpy(tmp, path, n + 1);
        for (char *p = tmp + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(tmp, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Directories deeper than this below the top are not descended into: they are moved up to
 * the top (a rename within the file system, relative to fds held) and removed in a later
 * pass. So neither the stack nor the open descriptors grow with a tree's depth, which the
 * sandbox chooses (5000 levels used to stop the walk and leave the tree on the host). */
#define RM_RF_DEPTH 64

struct rm_walk {
        int top;          /* the directory being emptied */
        dev_t dev;
        unsigned hoisted; /* directories moved up to the top in this pass */
        unsigned long serial;
};

static int rm_rf_children(struct rm_walk *w, int dfd, unsigned depth);

/* Removes the entry name of the directory open as dfd (at depth). */
static int rm_entry(struct rm_walk *w, int dfd, const char *name, unsigned depth) {
        char hoist[64];
        struct stat st;
        int cfd, r;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        if (st.st_dev != w->dev)
                return -EBUSY; /* a mount point: left alone */
        if (unlinkat(dfd, name, AT_REMOVEDIR) == 0)
                return 0; /* was empty */
        if (depth >= RM_RF_DEPTH) {
                snprintf(hoist, sizeof(hoist), ".ai2in-rm-%lu", w->serial++);
                if (renameat(dfd, name, w->top, hoist) < 0)
                        return errno == ENOENT ? 0 : -errno;
                w->hoisted++;
                return 0;
        }
        cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0)
                return errno == ENOENT ? 0 : -errno;
        r = rm_rf_children(w, cfd, depth + 1);
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

/* Empties the directory open as dfd (which it takes over). */
static int rm_rf_children(struct rm_walk *w, int dfd, unsigned depth) {
        struct dirent *de;
        DIR *d = fdopendir(dfd);
        int r = 0, q;

        if (!d) {
                r = -errno;
                close(dfd);
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                q = rm_entry(w, dirfd(d), de->d_name, depth);
                if (q < 0 && r == 0)
                        r = q;
        }
        if (errno && r == 0)
                r = -errno;
        closedir(d);
        return r;
}

int rm_rf(const char *path) {
        struct rm_walk w = {0};
        struct stat st;
        int r;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
        w.top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (w.top < 0)
                return -errno;
        w.dev = st.st_dev;
        /* Each pass removes at least RM_RF_DEPTH levels of whatever it hoists, so the passes
         * end; a failure (not hoisting) ends them too. */
        do {
                int dfd = openat(w.top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                w.hoisted = 0;
                r = dfd < 0 ? -errno : rm_rf_children(&w, dfd, 0);
        } while (r == 0 && w.hoisted > 0);
        close(w.top);
        if (rmdir(path) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode) {
        char tmp[PATH_MAX];
        const char *p = data;
        _cleanup_close_ int fd = -1;

        if ((size_t) snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= sizeof(tmp))
                return -ENAMETOOLONG;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        unlink(tmp);
                        return r;
                }
                p += k;
                n -= (size_t) k;
        }
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
                int r = -errno;
                unlink(tmp);
                return r;
        }
        return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;

        if (fd < 0)
                return -errno;
        data = malloc(max + 1);
        if (!data)
                return -ENOMEM;
        while (len < max) {
                ssize_t k = read(fd, data + len, max - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        data[len] = 0;
        *ret = TAKE_PTR(data);
        if (ret_len)
                *ret_len = len;
        return 0;
}

static int du_at(int dfd, unsigned long long *sum, unsigned depth) {
        DIR *d = fdopendir(dfd);
        struct dirent *de;

        if (!d) {
                close(dfd);
                return -errno;
        }
        while ((de = readdir(d))) {
                struct stat st;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                *sum += (unsigned long long) st.st_blocks * 512;
                if (S_ISDIR(st.st_mode) && depth < 4096) {
                        int cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (cfd >= 0)
                                du_at(cfd, sum, depth + 1);
                }
        }
        closedir(d);
        return 0;
}

int disk_usage(const char *path, unsigned long long *ret) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        *ret = 0;
        if (fd < 0)
                return -errno;
        return du_at(fd, ret, 0);
}
