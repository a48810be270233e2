/* proc-signal.h — signal names ("SIGINT") and numbers, both ways, for the signal route and
 * for the "signal" of an end event. */
#pragma once

#include <jansson.h>

/* The name of sig ("SIGKILL", "SIGRTMIN+3"), in a static string or in buf; NULL outside
 * 1..64. */
const char *signal_name(int sig, char buf[16]);

/* Parses a signal given as a name of the standard Linux signals ("SIGTERM"; the "SIG"
 * prefix is required) or as a number 1..64. Returns the number or -EINVAL. */
int signal_parse(const json_t *v);
