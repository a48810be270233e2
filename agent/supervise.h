/* supervise.h — the supervisor of a command: the agent's own binary, run as
 * `ai2in-agent --supervise …` between the agent and each command, so that the command's
 * timeout or kill can end every process it started.
 *
 * The supervisor is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever the command starts
 * stays in the supervisor's tree for as long as the supervisor lives, even a process that
 * calls setsid() and whose parent exits (`setsid -f`, a daemon's double fork): orphans are
 * re-parented to the supervisor, not to the agent, and a process cannot choose its parent.
 * The agent finds the command's processes as the supervisor's descendants (ptree.h).
 *
 * Its life: it forks the program (which sets itself up as process_exec_child() does: its
 * own session, identity, cwd), reports the program's pid on SUPERVISE_REPORT_FD, reaps
 * every process re-parented to it, and when the program exits it exits the same way (the
 * same code, or killed by the same signal), so that the agent sees the program's status as
 * its own child's. Processes the program left running (a server started with nohup) are
 * then re-parented to the agent and run on, as they would without a supervisor. Once the
 * agent has sent it SIGTERM (the command is being ended), it stays instead until its tree
 * is empty, at most SUPERVISE_LINGER_MS, so that every process the command started can be
 * found and killed, however the program itself ends.
 *
 * It runs as the agent's user (root), not as the command's: a command of another user
 * cannot signal it. It is not dumpable, ignores the terminal and job-control signals, and
 * holds no fd but its report pipe (closed once the program runs) — fresh from execve(), it
 * holds none of the agent's memory either.
 */
#pragma once

#include "process.h"
#include "strv.h"

#define SUPERVISE_FLAG "--supervise"
#define SUPERVISE_REPORT_FD 3
#define SUPERVISE_LINGER_MS 10000

/* The supervisor's command line for spec (built in the agent before fork(): the forked
 * child may not allocate). Returns 0 with it in *ret (free with strv_done()), or -ENOMEM. */
int supervise_argv(const struct process_spec *spec, struct strv *ret);

/* The supervisor's main(), when the agent's binary runs with argv[1] == SUPERVISE_FLAG
 * (and the environment to give the program). Returns only on bad usage (2); otherwise
 * exits as the program did. */
int supervise_main(int argc, char **argv);
