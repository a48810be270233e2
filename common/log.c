/* log.c — see log.h. One line per message, written with a single write(2) so that
 * concurrent threads never interleave inside a line. Control bytes in a message (a CR or
 * LF in a decoded URL, escape sequences in a sandbox's log line) are written as \xNN, so
 * that nothing a user or a sandbox sends can forge a log line or drive a terminal. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *log_program = "ai2in";
static enum log_level log_min = LOG_LVL_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* The rate limit: a bucket of `burst` lines refilled at `per_sec`; lines past it are
 * counted and said in one line once there is room again (0: no limit). */
static struct {
        pthread_mutex_t lock;
        unsigned burst, per_sec;
        double tokens;
        struct timespec last;
        unsigned long suppressed;
} rate = {.lock = PTHREAD_MUTEX_INITIALIZER};

void log_set_rate_limit(unsigned burst, unsigned per_sec) {
        pthread_mutex_lock(&rate.lock);
        rate.burst = burst;
        rate.per_sec = per_sec;
        rate.tokens = burst;
        clock_gettime(CLOCK_MONOTONIC, &rate.last);
        pthread_mutex_unlock(&rate.lock);
}

/* Whether a line may be written now; *ret_suppressed: lines dropped since the last one. */
static bool rate_take(unsigned long *ret_suppressed) {
        struct timespec now;
        bool ok;

        *ret_suppressed = 0;
        pthread_mutex_lock(&rate.lock);
        if (rate.burst == 0) {
                pthread_mutex_unlock(&rate.lock);
                return true;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        rate.tokens += ((double) (now.tv_sec - rate.last.tv_sec) + (double) (now.tv_nsec - rate.last.tv_nsec) / 1e9) *
                       rate.per_sec;
        if (rate.tokens > rate.burst)
                rate.tokens = rate.burst;
        rate.last = now;
        ok = rate.tokens >= 1;
        if (ok) {
                rate.tokens -= 1;
                *ret_suppressed = rate.suppressed;
                rate.suppressed = 0;
        } else
                rate.suppressed++;
        pthread_mutex_unlock(&rate.lock);
        return ok;
}

void log_setup(const char *program, enum log_level min_level) {
        log_program = program;
        log_min = min_level;
}

int log_level_from_string(const char *s, enum log_level *ret) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcmp(s, level_names[i]) == 0) {
                        *ret = (enum log_level) i;
                        return 0;
                }
        return -EINVAL;
}

/* Copies len bytes of in to out (at most max bytes), control bytes as \xNN; returns the
 * length written. */
static size_t escape_controls(const char *in, size_t len, char *out, size_t max) {
        static const char hex[] = "0123456789abcdef";
        size_t n = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char) in[i];
                if (ch >= 0x20 && ch != 0x7f) {
                        if (n + 1 > max)
                                break;
                        out[n++] = (char) ch;
                        continue;
                }
                if (n + 4 > max)
                        break;
                out[n++] = '\\';
                out[n++] = 'x';
                out[n++] = hex[ch >> 4];
                out[n++] = hex[ch & 15];
        }
        return n;
}

static void log_emit(enum log_level level, const char *suffix, const char *fmt, va_list ap) {
        char line[2048], out[2048 * 4 + 1];
        unsigned long suppressed;
        struct timespec ts;
        struct tm tm;
        size_t n;
        int k;

        if (!rate_take(&suppressed))
                return;
        if (suppressed > 0) {
                k = snprintf(out, sizeof(out), "%s warn: %lu log messages suppressed (over %u a second)\n", log_program,
                             suppressed, rate.per_sec);
                (void) !write(STDERR_FILENO, out, (size_t) k);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s: ", ts.tv_nsec / 1000000, log_program,
                     level_names[level]);
        if (k > 0)
                n += MIN((size_t) k, sizeof(line) - n - 1);
        k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        if (k > 0)
                n += MIN((size_t) k, sizeof(line) - n - 1);
        if (suffix) {
                k = snprintf(line + n, sizeof(line) - n, ": %s", suffix);
                if (k > 0)
                        n += MIN((size_t) k, sizeof(line) - n - 1);
        }
        if (n >= sizeof(line) - 1)
                n = sizeof(line) - 2;
        n = escape_controls(line, n, out, sizeof(out) - 1);
        out[n++] = '\n';
        (void) !write(STDERR_FILENO, out, n);
}

void log_msg(enum log_level level, const char *fmt, ...) {
        va_list ap;

        if (level < log_min)
                return;
        va_start(ap, fmt);
        log_emit(level, NULL, fmt, ap);
        va_end(ap);
}

int log_errno(enum log_level level, int err, const char *fmt, ...) {
        va_list ap;
        char buf[128];

        err = err < 0 ? -err : err;
        if (level >= log_min) {
                va_start(ap, fmt);
                log_emit(level, strerror_r(err, buf, sizeof(buf)), fmt, ap);
                va_end(ap);
        }
        return -err;
}
