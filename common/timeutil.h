/* timeutil.h — wall-clock milliseconds and RFC 3339 text ("2026-11-27T00:00:00.000Z").
 * The engine stores every instant as Unix milliseconds (int64) and formats only at the edge. */
#pragma once

#include <stdint.h>

#define RFC3339_LEN 24 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" */

/* Wall-clock time in ms since the epoch. */
int64_t now_ms(void);

/* Monotonic time in ms, for durations. */
int64_t mono_ms(void);

/* Formats ms as RFC 3339 UTC with milliseconds into ret (RFC3339_LEN + 1 bytes). */
void format_rfc3339(int64_t ms, char ret[RFC3339_LEN + 1]);

/* Parses the form format_rfc3339 writes (fraction optional); -EINVAL otherwise. */
int parse_rfc3339(const char *s, int64_t *ret);
