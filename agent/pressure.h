/* pressure.h — saying why the agent could not do something the sandbox's own load stopped:
 * no pid left under the sandbox's pids limit (EAGAIN from fork() or pthread_create()), no
 * memory, no file descriptor. These are the sandbox's state, not the caller's mistake: the
 * answers are 503 "unavailable" with a message that names the limit and says what to do.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Whether -err (or err) is such a resource error: EAGAIN, ENOMEM, EMFILE, ENFILE. */
bool pressure_errno(int err);

/* Writes into buf a description of the resource error err (either sign) for an error
 * message, e.g. "the sandbox's pids limit is reached (128 processes and threads are
 * running; commands.kill_all() ends them all)"; for any other error, strerror(). Returns buf. */
const char *pressure_describe(int err, char *buf, size_t n);
