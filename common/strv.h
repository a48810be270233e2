/* strv.h — a growable NULL-terminated array of malloc'd strings (an environment, an argv). */
#pragma once

#include <stddef.h>

struct strv {
        char **v; /* NULL-terminated once anything was pushed */
        size_t n;
};

/* Appends str, taking it over (it is freed on failure). str NULL (a failed strdup, say) is
 * -ENOMEM. Returns 0 or -ENOMEM. */
int strv_push(struct strv *s, char *str);

/* Frees the strings and the array; s is empty afterwards. */
void strv_done(struct strv *s);
