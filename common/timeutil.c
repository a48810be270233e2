/* timeutil.c — see timeutil.h. */
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void format_rfc3339(int64_t ms, char ret[RFC3339_LEN + 1]) {
        time_t sec = (time_t) (ms / 1000);
        int frac = (int) (ms % 1000);
        struct tm tm;

        if (frac < 0) {
                frac += 1000;
                sec -= 1;
        }
        char tmp[96];

        gmtime_r(&sec, &tm);
        snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
        memcpy(ret, tmp, RFC3339_LEN);
        ret[RFC3339_LEN] = 0;
}

int parse_rfc3339(const char *s, int64_t *ret) {
        struct tm tm = {0};
        const char *p;
        int ms = 0;

        p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        if (*p == '.') {
                int digits = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, digits++)
                        if (digits < 3)
                                ms = ms * 10 + (*p - '0');
                if (digits == 0)
                        return -EINVAL;
                for (; digits < 3; digits++)
                        ms *= 10;
        }
        if (strcmp(p, "Z") != 0)
                return -EINVAL;
        *ret = (int64_t) timegm(&tm) * 1000 + ms;
        return 0;
}
