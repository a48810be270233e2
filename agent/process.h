/* process.h — child processes: spawning them, and the one reaper that collects every exit.
 *
 * The agent is the init of its sandbox, so every orphan in the sandbox becomes its child
 * and must be reaped. Exactly one thread calls waitpid(-1): the reaper started by
 * process_reaper_start(). A child started with process_spawn() is registered before it can be
 * reaped, and its exit status is delivered to its struct child (mutex + condvar, and an
 * eventfd for poll loops); the status of any other pid (an orphan) is discarded.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct child;

/* Blocks SIGCHLD in the calling thread and starts the reaper thread. Call it from main
 * before any other thread exists (so every thread inherits the blocked SIGCHLD) and
 * before spawning anything. Returns 0 or -errno. */
int process_reaper_start(void);

/* What to run and how. The child gets default signal dispositions, an empty signal mask
 * and no file descriptors but 0, 1 and 2. */
struct process_spec {
        char *const *argv;   /* argv[0] is the absolute path of the program */
        char *const *envp;   /* the whole environment */
        const char *cwd;     /* NULL: the agent's own */
        bool set_identity;   /* switch to uid/gid/groups below */
        uid_t uid;
        gid_t gid;
        const gid_t *groups; /* supplementary groups, n_groups of them */
        size_t n_groups;
        bool new_session;    /* setsid(): the child leads a new process group and session */
        bool controlling_tty; /* make fd 0 (a terminal's slave side) the session's controlling
                               * terminal (TIOCSCTTY); needs new_session */
        int stdin_fd;        /* become fds 0, 1, 2 in the child; -1 means /dev/null */
        int stdout_fd;
        int stderr_fd;
};

/* Which step of the child's set-up failed, for the caller's error message. */
enum spawn_stage {
        SPAWN_STAGE_FORK,
        SPAWN_STAGE_SETUP,    /* fds, session, signals */
        SPAWN_STAGE_IDENTITY, /* setgroups/setgid/setuid */
        SPAWN_STAGE_CHDIR,
        SPAWN_STAGE_EXEC,
};

/* Forks, sets the child up as spec says and execs it. Returns 0 once execve succeeded,
 * with the registered child in *ret (free with child_free). On failure returns -errno of
 * the step that failed, stored in *ret_stage; a child that failed has been reaped. The
 * caller still owns spec's fds and should close its copies of the child's ends. */
int process_spawn(const struct process_spec *spec, struct child **ret, enum spawn_stage *ret_stage);

/* The child's pid (also its process group id when spawned with new_session). */
pid_t child_pid(const struct child *c);

/* An eventfd that becomes readable once the child has been reaped; for poll loops.
 * Owned by the child. */
int child_exit_fd(const struct child *c);

/* Whether the child has been reaped; if so stores its wait status in *ret_status. */
bool child_exited(struct child *c, int *ret_status);

/* Blocks until the child has been reaped; stores its wait status in *ret_status. */
void child_wait(struct child *c, int *ret_status);

/* Sends sig to the child's process group (new_session children only). Returns 0, or
 * -ESRCH when the group is empty, or -errno. */
int child_signal_group(struct child *c, int sig);

/* Unregisters and frees the child. A child still running is not killed: when it exits
 * its status is discarded like an orphan's. Accepts NULL. */
void child_free(struct child *c);

/* Converts a wait status to a shell-style exit code: the exit status, or 128 + signal. */
int wait_status_to_exit_code(int status);

static inline void child_freep(struct child **c) { child_free(*c); }
#define _cleanup_child_ _cleanup_(child_freep)
