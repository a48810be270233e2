/* thread.h — starting a detached thread, the shape every long-lived or per-connection
 * thread of the engine and the agent has. */
#pragma once

#include <stddef.h>

/* Starts fn(arg) on a detached thread with a stack of stack_size bytes (0: the default).
 * Returns 0, or -errno (nothing started: arg is still the caller's). */
int thread_start_detached(void *(*fn)(void *), void *arg, size_t stack_size);
