/* strv.c — see strv.h. */
#include "strv.h"

#include <errno.h>
#include <stdlib.h>

int strv_push(struct strv *s, char *str) {
        char **v;

        if (!str)
                return -ENOMEM;
        v = realloc(s->v, (s->n + 2) * sizeof(char *));
        if (!v) {
                free(str);
                return -ENOMEM;
        }
        s->v = v;
        s->v[s->n++] = str;
        s->v[s->n] = NULL;
        return 0;
}

void strv_done(struct strv *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (struct strv){0};
}
