/* ctx-shell.h — the text the agent writes to a bash context's shell (bash.c), kept apart
 * from the process plumbing so that the unit tests can check it.
 *
 * The shell is an interactive bash reading commands from its fd 0, a unix socket whose other
 * end is the agent; it answers on the same socket with lines "TOKEN WORD N [STATUS]". One
 * execution N is three lines:
 *
 *   __ai2in_code='CODE'                                  the code as one quoted string
 *   SAVE+EXPORT envs; printf 'TOKEN begin N'; eval "$__ai2in_code" </dev/null
 *   __ai2in_rc=$?; RESTORE envs; printf 'TOKEN end N RC'
 *
 * eval runs the code in the shell itself (variables, functions, cwd persist) and copes with
 * anything the code holds: no trailing newline, heredocs, unbalanced quotes (a syntax error
 * reported by eval, status 2). Its stdin is /dev/null, so code that reads stdin never eats
 * the agent's requests. After an interrupt the agent writes a "sync" line, which restores
 * the envs (if the interrupt also cut the last line short) and answers "TOKEN sync N".
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

#define BASH_TOKEN_LEN 32

/* Appends s to b as one single-quoted shell word ('\'' for each quote). */
int shell_quote(struct buf *b, const char *s);

/* Whether s is a shell variable name: [A-Za-z_][A-Za-z0-9_]*. */
bool shell_is_name(const char *s);

/* The line that sets the interactive shell up quietly (no prompts, no history expansion)
 * and answers "TOKEN ready". */
int bash_init_text(struct buf *b, const char *token);

/* The three lines of execution seq (see above). envs: an object of strings or NULL; its
 * keys must be shell names (-EINVAL otherwise). */
int bash_request_text(struct buf *b, const char *token, uint64_t seq, const char *code, json_t *envs);

/* The line written after an interrupt of execution seq. */
int bash_sync_text(struct buf *b, const char *token, uint64_t seq);
