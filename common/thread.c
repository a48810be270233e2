/* thread.c — see thread.h. */
#include "thread.h"

#include <pthread.h>

int thread_start_detached(void *(*fn)(void *), void *arg, size_t stack_size) {
        pthread_attr_t attr;
        pthread_t thread;
        int r;

        r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        r = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (r == 0 && stack_size > 0)
                r = pthread_attr_setstacksize(&attr, stack_size);
        if (r == 0)
                r = pthread_create(&thread, &attr, fn, arg);
        pthread_attr_destroy(&attr);
        return -r;
}
