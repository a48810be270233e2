/* log.h — leveled logging to stderr with a timestamp and the program's name.
 *
 * A function either logs or returns an error, never both. log_* return -abs(err) where
 * they take one, so `return log_error_errno(r, "…")` is the idiom at the top of a call chain.
 */
#pragma once

#include "macro.h"

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* Sets the program name printed on each line and the lowest level printed. */
void log_setup(const char *program, enum log_level min_level);

/* Limits the lines written to a burst of `burst`, then `per_sec` a second; the lines dropped
 * are counted and reported in one line when there is room again. 0, 0: no limit (the
 * default). So that whatever provokes messages (a sandbox) cannot fill a disk with them. */
void log_set_rate_limit(unsigned burst, unsigned per_sec);

/* Parses "debug", "info", "warn", "error"; returns -EINVAL otherwise. */
int log_level_from_string(const char *s, enum log_level *ret);

void log_msg(enum log_level level, const char *fmt, ...) _printf_(2, 3);

/* Logs "fmt: strerror(err)" and returns -abs(err). */
int log_errno(enum log_level level, int err, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn_errno(err, ...) log_errno(LOG_LVL_WARN, (err), __VA_ARGS__)
#define log_error_errno(err, ...) log_errno(LOG_LVL_ERROR, (err), __VA_ARGS__)
