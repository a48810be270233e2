/* login-env.c — see login-env.h. Owns the per-user cache of login environments: what a
 * login shell of a user exports, captured by running its startup files once, and the
 * stamps of those files that say when to capture again.
 *
 * Why: "bash -lc true" spends most of its time in /etc/profile and ~/.profile (they run
 * id and mesg); "bash -c true" under the environment they export is the same command for
 * what a program can see, at a fraction of the cost.
 *
 * A capture runs one script twice as the user, with the commands' base environment, in
 * the user's home, stdin /dev/null, stderr discarded: once in "bash -c" and once in
 * "bash -lc". The script prints a marker (what the startup files print comes before it
 * and is skipped), a header of the shell state that is not environment (umask, function
 * names, shell options, cwd), a NUL, and the environment (env -0). The login environment
 * is used only when both headers agree but for the login_shell option: startup files that
 * define functions (nvm, conda, pyenv in ~/.bashrc), set the umask or options, or cd leave
 * state that "bash -c" would lack, so that user's commands keep running as login shells.
 * So does a capture that fails: a shell that exits non-zero, outlives
 * LOGIN_ENV_TIMEOUT_MS or prints more than LOGIN_ENV_MAX_OUTPUT.
 *
 * Validity: an entry keeps a signature — the user's identity, the base environment, and
 * the stat of each startup file bash reads for a login shell (missing ones as missing),
 * /etc/profile.d and its *.sh, ~/.bashrc (Debian's ~/.profile sources it), and whether
 * ~/bin and ~/.local/bin exist (Debian's ~/.profile puts them on PATH then) — and is
 * reused while a fresh signature is byte for byte the same. A startup file that reads
 * other files or other state is seen as it was at the capture, until a listed file changes.
 * Failed captures are kept too, so that a broken profile costs one capture per change,
 * not one per command.
 *
 * Threads: the cache is under one mutex, never held while capturing; threads that miss on
 * the same user at once each capture, and the last to finish stores its result (all are
 * equally valid).
 */
#include "login-env.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "macro.h"
#include "process.h"
#include "strv.h"
#include "timeutil.h"

#define MARKER "\0AI2IN-LOGIN-ENV\0"
#define MARKER_LEN (sizeof(MARKER) - 1)
#define SIGNATURE_MAX (64 * 1024)

/* Prints MARKER, the header, a NUL, then the environment NUL-separated. */
static const char script[] = "printf '\\000AI2IN-LOGIN-ENV\\000'; umask; declare -F; shopt -p; set +o; pwd; "
                             "printf '\\000'; exec /usr/bin/env -0";

/* Variables of the capturing shell's own life, which the command's shell sets afresh. */
static const char *const dropped[] = {"PWD", "OLDPWD", "SHLVL", "_"};

/* Not const for the unit tests, which point them elsewhere. */
static const char *etc_dir = "/etc";
static int64_t capture_timeout_ms = LOGIN_ENV_TIMEOUT_MS;

/* ---- string arrays ---- */

void login_env_free(char **env) {
        if (!env)
                return;
        for (char **p = env; *p; p++)
                free(*p);
        free(env);
}

/* A copy of env, or NULL when out of memory. */
static char **strv_copy(char *const *env) {
        struct strv s = {};

        for (; *env; env++)
                if (strv_push(&s, strdup(*env)) < 0) {
                        login_env_free(s.v);
                        return NULL;
                }
        return s.v ? s.v : calloc(1, sizeof(char *));
}

/* ---- signature ---- */

/* One path's stat as bytes; the fields are all 64-bit so that there is no padding. */
struct stamp {
        int64_t state; /* 1 exists, 0 missing, -errno when stat failed otherwise */
        uint64_t dev, ino, mode, size;
        int64_t mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
};
_Static_assert(sizeof(struct stamp) == 9 * 8, "stamps are compared as bytes: no padding");

enum stamp_kind {
        STAMP_CONTENT,  /* the file as read: any change counts */
        STAMP_PRESENCE, /* only whether it exists, and as what: for paths tested with [ -d ] */
};

static int stamp_add(struct buf *sig, const char *path, enum stamp_kind kind) {
        struct stamp s = {};
        struct stat st;
        int r;

        if (stat(path, &st) < 0)
                s.state = errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        else {
                s.state = 1;
                s.dev = st.st_dev;
                s.ino = st.st_ino;
                s.mode = st.st_mode & (kind == STAMP_PRESENCE ? S_IFMT : ~0U);
                if (kind == STAMP_CONTENT) {
                        s.size = (uint64_t) st.st_size;
                        s.mtime_sec = st.st_mtim.tv_sec;
                        s.mtime_nsec = st.st_mtim.tv_nsec;
                        s.ctime_sec = st.st_ctim.tv_sec;
                        s.ctime_nsec = st.st_ctim.tv_nsec;
                }
        }
        r = buf_append(sig, path, strlen(path) + 1);
        return r < 0 ? r : buf_append(sig, &s, sizeof(s));
}

static int stamp_add_in(struct buf *sig, const char *dir, const char *name, enum stamp_kind kind) {
        char path[PATH_MAX];
        int k = snprintf(path, sizeof(path), "%s/%s", dir, name);

        if (k < 0 || (size_t) k >= sizeof(path))
                return -ENAMETOOLONG;
        return stamp_add(sig, path, kind);
}

static bool is_profile_script(const char *name) {
        size_t n = strlen(name);

        return name[0] != '.' && n > 3 && streq(name + n - 3, ".sh");
}

/* The directory itself (its mtime changes when an entry comes or goes) and each *.sh in it,
 * as /etc/profile's glob finds them. */
static int stamp_add_profile_d(struct buf *sig) {
        char dir[PATH_MAX];
        struct dirent *de;
        DIR *d;
        int r;

        snprintf(dir, sizeof(dir), "%s/profile.d", etc_dir);
        r = stamp_add(sig, dir, STAMP_CONTENT);
        d = opendir(dir);
        if (r < 0 || !d) {
                if (d)
                        closedir(d);
                return r;
        }
        while (r >= 0 && (de = readdir(d)))
                if (is_profile_script(de->d_name))
                        r = stamp_add_in(sig, dir, de->d_name, STAMP_CONTENT);
        closedir(d);
        return r;
}

/* Everything a login environment of u depends on, as bytes to compare, into sig. */
static int signature_take(const struct user_info *u, char *const *base_env, struct buf *sig) {
        static const char *const etc_files[] = {"profile", "bash.bashrc", "environment"};
        static const char *const home_files[] = {".bash_profile", ".bash_login", ".profile", ".bashrc"};
        static const char *const home_dirs[] = {"bin", ".local/bin"};
        int r;

        r = buf_printf(sig, "%s:%u:%u:%s:", u->name, (unsigned) u->uid, (unsigned) u->gid, u->home);
        if (r >= 0)
                r = buf_append(sig, u->groups, u->n_groups * sizeof(gid_t));
        for (char *const *e = base_env; r >= 0 && *e; e++)
                r = buf_append(sig, *e, strlen(*e) + 1);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(etc_files); i++)
                r = stamp_add_in(sig, etc_dir, etc_files[i], STAMP_CONTENT);
        if (r >= 0)
                r = stamp_add_profile_d(sig);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(home_files); i++)
                r = stamp_add_in(sig, u->home, home_files[i], STAMP_CONTENT);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(home_dirs); i++)
                r = stamp_add_in(sig, u->home, home_dirs[i], STAMP_PRESENCE);
        return r;
}

/* ---- running the script ---- */

/* Reads fd until it would block or ends; sets *eof at its end. */
static int pipe_drain(int fd, struct buf *out, bool *eof) {
        char chunk[16384];
        ssize_t n;
        int r;

        for (;;) {
                n = read(fd, chunk, sizeof(chunk));
                if (n > 0) {
                        r = buf_append(out, chunk, (size_t) n);
                        if (r < 0)
                                return r;
                } else if (n == 0) {
                        *eof = true;
                        return 0;
                } else if (errno == EAGAIN)
                        return 0;
                else if (errno != EINTR)
                        return -errno;
        }
}

/* Collects the child's stdout from fd until it exits. After the exit, what is in the pipe
 * is everything it wrote: the end of file is not awaited, since something the startup
 * files left in the background may hold the pipe open. */
static int collect(struct child *child, int fd, struct buf *out) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = child_exit_fd(child), .events = POLLIN}};
        int64_t deadline = mono_ms() + capture_timeout_ms, left;
        bool eof = false;
        int r;

        for (;;) {
                left = deadline - mono_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                if (poll(p, ELEMENTSOF(p), (int) left) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p[0].revents || p[1].revents) {
                        r = pipe_drain(fd, out, &eof);
                        if (r < 0 || p[1].revents)
                                return r;
                        if (eof)
                                p[0].fd = -1;
                }
        }
}

static const char *stage_what(enum spawn_stage stage) {
        switch (stage) {
        case SPAWN_STAGE_IDENTITY:
                return " as the user";
        case SPAWN_STAGE_CHDIR:
                return " in the user's home";
        default:
                return "";
        }
}

/* Runs script in bash ("-lc" when login) as u, with env, in cwd; its stdout into out. */
static int run_script(const struct user_info *u, char *const *env, const char *cwd, bool login, struct buf *out,
                      char *why, size_t n) {
        char *argv[] = {(char *) "/bin/bash", (char *) (login ? "-lc" : "-c"), (char *) script, NULL};
        _cleanup_close_ int rfd = -1, wfd = -1;
        _cleanup_child_ struct child *child = NULL;
        enum spawn_stage stage;
        int p[2], status, r;

        if (pipe2(p, O_CLOEXEC) < 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                snprintf(why, n, "cannot create a pipe: %s", strerror(-r));
                return r;
        }
        rfd = p[0];
        wfd = p[1];
        struct process_spec spec = {
                .argv = argv,
                .envp = env,
                .cwd = cwd,
                .set_identity = u->uid != geteuid() || u->gid != getegid(),
                .uid = u->uid,
                .gid = u->gid,
                .groups = u->groups,
                .n_groups = u->n_groups,
                .new_session = true,
                .stdin_fd = -1,
                .stdout_fd = wfd,
                .stderr_fd = -1,
        };
        r = process_spawn(&spec, &child, &stage);
        if (r < 0) {
                snprintf(why, n, "cannot start /bin/bash %s%s: %s", argv[1], stage_what(stage), strerror(-r));
                return r;
        }
        close(TAKE_FD(wfd));
        r = collect(child, rfd, out);
        if (r < 0 && !child_exited(child, &status))
                (void) child_signal_group(child, SIGKILL);
        child_wait(child, &status);
        if (r == -ETIMEDOUT)
                snprintf(why, n, "bash %s ran longer than %lld ms", argv[1], (long long) capture_timeout_ms);
        else if (r == -E2BIG)
                snprintf(why, n, "bash %s printed more than %d bytes", argv[1], LOGIN_ENV_MAX_OUTPUT);
        else if (r < 0)
                snprintf(why, n, "cannot read the output of bash %s: %s", argv[1], strerror(-r));
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                snprintf(why, n, "bash %s exited with status %d", argv[1], wait_status_to_exit_code(status));
                r = -EPROTO;
        }
        return r;
}

/* ---- the script's output ---- */

static bool is_dropped(const char *entry, size_t key_len) {
        for (size_t i = 0; i < ELEMENTSOF(dropped); i++)
                if (strlen(dropped[i]) == key_len && strncmp(entry, dropped[i], key_len) == 0)
                        return true;
        return false;
}

/* Splits the script's output (len bytes of data) into the header (*ret_header) and the
 * environment without the dropped variables (*ret_env; not parsed when NULL).
 * -EBADMSG when it is not what the script prints. */
static int parse_output(const char *data, size_t len, char **ret_header, char ***ret_env) {
        const char *p = memmem(data, len, MARKER, MARKER_LEN), *end = data + len, *nul, *eq;
        _cleanup_free_ char *header = NULL;
        struct strv env = {};
        int r = 0;

        if (!p)
                return -EBADMSG;
        p += MARKER_LEN;
        nul = memchr(p, 0, (size_t) (end - p));
        if (!nul)
                return -EBADMSG;
        header = strndup(p, (size_t) (nul - p));
        if (!header)
                return -ENOMEM;
        for (p = nul + 1; ret_env && r >= 0 && p < end; p = nul + 1) {
                nul = memchr(p, 0, (size_t) (end - p));
                eq = nul ? memchr(p, '=', (size_t) (nul - p)) : NULL;
                if (!eq || eq == p) {
                        r = -EBADMSG; /* and nul may be NULL: no step past it */
                        break;
                }
                if (!is_dropped(p, (size_t) (eq - p)))
                        r = strv_push(&env, strndup(p, (size_t) (nul - p)));
        }
        if (r >= 0 && ret_env && !env.v) {
                env.v = calloc(1, sizeof(char *)); /* an empty environment */
                if (!env.v)
                        r = -ENOMEM;
        }
        if (r < 0) {
                login_env_free(env.v);
                return r;
        }
        *ret_header = TAKE_PTR(header);
        if (ret_env)
                *ret_env = env.v;
        return 0;
}

/* The next line of *p that the comparison counts (login_shell is bound to differ), with
 * *p moved past it; false at the end. */
static bool next_line(const char **p, const char **ret, size_t *ret_len) {
        while (**p) {
                const char *s = *p;
                size_t n = strcspn(s, "\n");

                *p = s + n + (s[n] == '\n');
                if (n == strlen("shopt -s login_shell") &&
                    (strncmp(s, "shopt -s login_shell", n) == 0 || strncmp(s, "shopt -u login_shell", n) == 0))
                        continue;
                *ret = s;
                *ret_len = n;
                return true;
        }
        return false;
}

/* Whether the plain and the login shell's headers agree; if not, the login shell's first
 * different line goes to diff. */
static bool header_same(const char *plain, const char *login, char *diff, size_t n) {
        const char *a, *b;
        size_t la, lb;

        for (;;) {
                bool more_a = next_line(&plain, &a, &la), more_b = next_line(&login, &b, &lb);

                if (!more_a && !more_b)
                        return true;
                if (more_a != more_b || la != lb || memcmp(a, b, la) != 0) {
                        if (more_b)
                                snprintf(diff, n, "'%.*s'", (int) MIN(lb, 200), b);
                        else
                                snprintf(diff, n, "lacking '%.*s'", (int) MIN(la, 200), a);
                        return false;
                }
        }
}

/* ---- capturing ---- */

static int capture_one(const struct user_info *u, char *const *base_env, const char *cwd, bool login,
                       char **ret_header, char ***ret_env, char *why, size_t n) {
        _cleanup_buf_ struct buf out;
        int r;

        buf_init(&out, LOGIN_ENV_MAX_OUTPUT);
        r = run_script(u, base_env, cwd, login, &out, why, n);
        if (r < 0)
                return r;
        r = parse_output(out.data, out.len, ret_header, ret_env);
        if (r < 0)
                snprintf(why, n, "cannot parse the output of bash %s: %s", login ? "-lc" : "-c", strerror(-r));
        return r;
}

static bool is_dir(const char *path) {
        struct stat st;

        return stat(path, &st) >= 0 && S_ISDIR(st.st_mode);
}

/* Captures u's login environment. Returns 1 with it in *ret_env; 0 when the login shell
 * leaves state that an environment cannot carry; -errno when it could not be captured.
 * why says what went wrong in the last two cases. */
static int capture(const struct user_info *u, char *const *base_env, char ***ret_env, char *why, size_t n) {
        _cleanup_free_ char *plain = NULL, *login = NULL;
        const char *cwd = is_dir(u->home) ? u->home : "/";
        char **env = NULL;
        int r;

        r = capture_one(u, base_env, cwd, false, &plain, NULL, why, n);
        if (r >= 0)
                r = capture_one(u, base_env, cwd, true, &login, &env, why, n);
        if (r < 0)
                return r;
        if (!header_same(plain, login, why, n)) {
                login_env_free(env);
                return 0;
        }
        *ret_env = env;
        return 1;
}

/* ---- the cache ---- */

struct entry {
        char *user; /* NULL: a free slot */
        char *sig;
        size_t sig_len;
        char **env; /* NULL: run as login shells */
        uint64_t used;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry cache[LOGIN_ENV_MAX_USERS];
static uint64_t cache_clock;

static void entry_clear(struct entry *e) {
        free(e->user);
        free(e->sig);
        login_env_free(e->env);
        *e = (struct entry){};
}

/* With cache_lock held: user's entry, else a free one, else the least recently used. */
static struct entry *cache_slot(const char *user) {
        struct entry *best = NULL;

        for (size_t i = 0; i < ELEMENTSOF(cache); i++) {
                struct entry *e = &cache[i];

                if (e->user && streq(e->user, user))
                        return e;
                if (!best || (best->user && (!e->user || e->used < best->used)))
                        best = e;
        }
        return best;
}

/* -ENOENT when there is no valid entry; else 0 for login shells, or 1 with a copy of the
 * environment in *ret (0 when out of memory for it). */
static int cache_lookup(const char *user, const struct buf *sig, char ***ret) {
        struct entry *e;
        int r = -ENOENT;

        pthread_mutex_lock(&cache_lock);
        e = cache_slot(user);
        if (e->user && streq(e->user, user) && e->sig_len == sig->len && memcmp(e->sig, sig->data, sig->len) == 0) {
                e->used = ++cache_clock;
                *ret = e->env ? strv_copy(e->env) : NULL;
                r = *ret ? 1 : 0;
        }
        pthread_mutex_unlock(&cache_lock);
        return r;
}

/* Stores env (taken over; NULL for login shells) for user under sig, whose data is taken. */
static void cache_store(const char *user, struct buf *sig, char **env) {
        char *name = strdup(user);
        size_t sig_len = sig->len;
        char *sig_data = buf_steal(sig);
        struct entry *e;

        if (!name || !sig_data) {
                free(name);
                free(sig_data);
                login_env_free(env);
                return;
        }
        pthread_mutex_lock(&cache_lock);
        e = cache_slot(user);
        entry_clear(e);
        *e = (struct entry){.user = name, .sig = sig_data, .sig_len = sig_len, .env = env, .used = ++cache_clock};
        pthread_mutex_unlock(&cache_lock);
}

int login_env_get(const struct user_info *u, char *const *base_env, char ***ret) {
        static bool signature_warned;
        _cleanup_buf_ struct buf sig;
        char why[512] = "", **env = NULL, **copy = NULL;
        int r;

        buf_init(&sig, SIGNATURE_MAX);
        r = signature_take(u, base_env, &sig);
        if (r < 0) {
                if (!__atomic_exchange_n(&signature_warned, true, __ATOMIC_RELAXED))
                        log_warn_errno(r, "cannot check the startup files of user '%s', running commands as login "
                                          "shells while this lasts", u->name);
                return 0;
        }
        r = cache_lookup(u->name, &sig, ret);
        if (r != -ENOENT)
                return r;

        r = capture(u, base_env, &env, why, sizeof(why));
        if (r < 0)
                log_warn("cannot capture the login environment of user '%s' (%s), running their commands as login "
                         "shells until a startup file changes", u->name, why);
        else if (r == 0)
                log_info("the login shell of user '%s' differs from bash -c in more than the environment (%s), running "
                         "their commands as login shells", u->name, why);
        else
                copy = strv_copy(env);
        cache_store(u->name, &sig, env);
        if (!copy)
                return 0;
        *ret = copy;
        return 1;
}
