/* process.h — child processes: spawning them, signalling them, and the one reaper that
 * collects every exit.
 *
 * The agent is the init of its sandbox, so every orphan in the sandbox becomes its child
 * and must be reaped. Exactly one thread calls waitpid(-1): the reaper started by
 * process_reaper_start(). A child started with process_spawn() is registered before it can be
 * reaped, and its exit status is delivered to its struct child (mutex + condvar, and an
 * eventfd for poll loops); the status of any other pid (an orphan) is discarded.
 *
 * A child can be supervised (spec.contain, for commands): it then runs under a supervisor
 * (supervise.h), a small process that is a child subreaper, so that nothing the program
 * starts can leave its tree, not even by setsid() and a double fork; the agent waits for
 * the supervisor, whose exit status is the program's. child_terminate() ends the whole tree.
 *
 * Signals reach processes, never numbers that may have been handed out again: a process
 * group is signalled only while its leader is unreaped (its id cannot be reused until then),
 * and a supervised child's processes are found in its supervisor's tree, which stays put
 * for as long as the supervisor is not reaped (ptree.h).
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
        bool keep_stdio;     /* ignore the three above: fds 0, 1, 2 are the child's already */
        bool contain;        /* run under a supervisor that holds every process it starts */
};

/* Which step of the child's set-up failed, for the caller's error message. */
enum spawn_stage {
        SPAWN_STAGE_FORK,
        SPAWN_STAGE_SETUP,    /* fds, session, signals; starting the supervisor */
        SPAWN_STAGE_IDENTITY, /* setgroups/setgid/setuid */
        SPAWN_STAGE_CHDIR,
        SPAWN_STAGE_EXEC,
};

/* What a starting child tells the agent on its report pipe: a failure (then it exits), or,
 * from a supervisor, the pid of the program it forked. Success is the pipe's end (execve()
 * closed it). */
struct spawn_report {
        int32_t kind; /* SPAWN_REPORT_* */
        int32_t stage; /* enum spawn_stage, of a failure */
        int32_t error; /* errno, of a failure */
        int32_t pid;   /* of SPAWN_REPORT_STARTED */
};
enum { SPAWN_REPORT_FAILED = 1, SPAWN_REPORT_STARTED = 2 };

/* Forks, sets the child up as spec says and execs it. Returns 0 once execve succeeded,
 * with the registered child in *ret (free with child_free). On failure returns -errno of
 * the step that failed, stored in *ret_stage; a child that failed has been reaped. The
 * caller still owns spec's fds and should close its copies of the child's ends. Waits
 * while process_spawns_hold() holds starts back. */
int process_spawn(const struct process_spec *spec, struct child **ret, enum spawn_stage *ret_stage);

/* In the forked child (or in a supervisor): sets the process up as spec says (signals,
 * session, fds, identity, cwd) and execs spec->argv; on failure writes a SPAWN_REPORT_FAILED
 * to report_fd and exits 127. Async-signal-safe. */
_Noreturn void process_exec_child(const struct process_spec *spec, int report_fd);

/* While hold is true, process_spawn() waits before forking: kill_all's way to keep the agent
 * itself from starting processes (a kernel's restart) while it ends every one. */
void process_spawns_hold(bool hold);

/* The program's pid (also its process group id when spawned with new_session); under a
 * supervisor, the program's, not the supervisor's. */
pid_t child_pid(const struct child *c);

/* An eventfd that becomes readable once the child has been reaped; for poll loops.
 * Owned by the child. */
int child_exit_fd(const struct child *c);

/* Whether the child has been reaped; if so stores its wait status in *ret_status. */
bool child_exited(struct child *c, int *ret_status);

/* Blocks until the child has been reaped; stores its wait status in *ret_status. */
void child_wait(struct child *c, int *ret_status);

/* Sends sig to the child's process group (new_session children only), while the agent has
 * not reaped the child (its leader, or its supervisor: for a supervised child, to the group's
 * members among the processes the supervisor holds). Returns 0, -ESRCH when the group is
 * empty or the child was reaped, or -errno. */
int child_signal_group(struct child *c, int sig);

/* Sends sig (SIGTERM to begin an end, SIGKILL to finish it; 0 only looks) to every process
 * of the child. Supervised: every process in the supervisor's tree, and the supervisor stays
 * until that tree is empty (however the program itself exits). Otherwise: its process group
 * while the leader is unreaped, and the members the group had when last looked at while it
 * was (so that a later call, after the leader's exit, still ends its background jobs).
 * Returns how many processes were signalled (0 once none is left), or -errno. */
int child_terminate(struct child *c, int sig);

/* Unregisters and frees the child. A child still running is not killed: when it exits
 * its status is discarded like an orphan's. Accepts NULL. */
void child_free(struct child *c);

/* Converts a wait status to a shell-style exit code: the exit status, or 128 + signal. */
int wait_status_to_exit_code(int status);

static inline void child_freep(struct child **c) { child_free(*c); }
#define _cleanup_child_ _cleanup_(child_freep)
