/* proc-signal.c — see proc-signal.h. The table is the standard Linux signals (x86 and arm
 * numbering, which agree); real-time ones are named SIGRTMIN+n, the
 * two below them SIG32 and SIG33. */
#include "proc-signal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"

#define SIGNAL_MAX 64

static const char *const names[] = {
        [SIGHUP] = "SIGHUP",       [SIGINT] = "SIGINT",     [SIGQUIT] = "SIGQUIT",   [SIGILL] = "SIGILL",
        [SIGTRAP] = "SIGTRAP",     [SIGABRT] = "SIGABRT",   [SIGBUS] = "SIGBUS",     [SIGFPE] = "SIGFPE",
        [SIGKILL] = "SIGKILL",     [SIGUSR1] = "SIGUSR1",   [SIGSEGV] = "SIGSEGV",   [SIGUSR2] = "SIGUSR2",
        [SIGPIPE] = "SIGPIPE",     [SIGALRM] = "SIGALRM",   [SIGTERM] = "SIGTERM",   [SIGSTKFLT] = "SIGSTKFLT",
        [SIGCHLD] = "SIGCHLD",     [SIGCONT] = "SIGCONT",   [SIGSTOP] = "SIGSTOP",   [SIGTSTP] = "SIGTSTP",
        [SIGTTIN] = "SIGTTIN",     [SIGTTOU] = "SIGTTOU",   [SIGURG] = "SIGURG",     [SIGXCPU] = "SIGXCPU",
        [SIGXFSZ] = "SIGXFSZ",     [SIGVTALRM] = "SIGVTALRM", [SIGPROF] = "SIGPROF", [SIGWINCH] = "SIGWINCH",
        [SIGIO] = "SIGIO",         [SIGPWR] = "SIGPWR",     [SIGSYS] = "SIGSYS",
};

const char *signal_name(int sig, char buf[16]) {
        if (sig > 0 && (size_t) sig < ELEMENTSOF(names) && names[sig])
                return names[sig];
        if (sig >= SIGRTMIN && sig <= SIGNAL_MAX)
                snprintf(buf, 16, "SIGRTMIN+%d", sig - SIGRTMIN);
        else if (sig > 0 && sig <= SIGNAL_MAX)
                snprintf(buf, 16, "SIG%d", sig); /* 32 and 33: the C library's own */
        else
                return NULL;
        return buf;
}

int signal_parse(const json_t *v) {
        if (json_is_integer(v)) {
                json_int_t n = json_integer_value(v);
                return n >= 1 && n <= SIGNAL_MAX ? (int) n : -EINVAL;
        }
        if (!json_is_string(v))
                return -EINVAL;
        for (size_t i = 1; i < ELEMENTSOF(names); i++)
                if (names[i] && streq(names[i], json_string_value(v)))
                        return (int) i;
        return -EINVAL;
}
