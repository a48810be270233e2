/* pressure.c — see pressure.h. The sandbox's /sys/fs/cgroup is masked, so the agent cannot
 * read the pids limit itself; when a fork or a thread fails for want of a pid, it counts the
 * tasks that exist (what the limit counts), which is the limit give or take a few. Counting
 * reads /proc (milliseconds under a fork bomb), so the count is kept for a second.
 */
#include "pressure.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ptree.h"
#include "timeutil.h"

#define COUNT_TTL_MS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned cached_tasks;
static int64_t cached_at;
static bool cached;

bool pressure_errno(int err) {
        err = abs(err);
        return err == EAGAIN || err == ENOMEM || err == EMFILE || err == ENFILE;
}

/* The tasks (processes and threads) in the sandbox, or 0 if they cannot be counted. */
static unsigned count_tasks(void) {
        struct ptree t = {};
        int64_t now = mono_ms();
        unsigned n;

        pthread_mutex_lock(&lock);
        if (cached && now - cached_at < COUNT_TTL_MS) {
                n = cached_tasks;
                pthread_mutex_unlock(&lock);
                return n;
        }
        pthread_mutex_unlock(&lock);
        n = ptree_read(&t) >= 0 ? ptree_tasks(&t) : 0;
        ptree_done(&t);
        pthread_mutex_lock(&lock);
        cached_tasks = n;
        cached_at = now;
        cached = n > 0;
        pthread_mutex_unlock(&lock);
        return n;
}

const char *pressure_describe(int err, char *buf, size_t n) {
        unsigned tasks;

        switch (abs(err)) {
        case EAGAIN:
                tasks = count_tasks();
                if (tasks > 0)
                        snprintf(buf, n,
                                 "the sandbox's pids limit is reached (%u processes and threads are running; "
                                 "commands.kill_all() ends them all)",
                                 tasks);
                else
                        snprintf(buf, n, "the sandbox's pids limit is reached (commands.kill_all() ends every "
                                         "process)");
                break;
        case ENOMEM:
                snprintf(buf, n, "the sandbox is out of memory");
                break;
        case EMFILE:
                snprintf(buf, n, "the sandbox's agent has too many files open");
                break;
        case ENFILE:
                snprintf(buf, n, "the system has too many files open");
                break;
        default:
                snprintf(buf, n, "%s", strerror(abs(err)));
        }
        return buf;
}
