/* agentlog.c — keeps every sandbox's agent.log (STATE/sandboxes/<id>/agent.log: the agent's
 * stderr, a file on the host) within AGENT_LOG_MAX bytes. The agent limits its own lines
 * (log_set_rate_limit), and the reaper calls agentlog_rotate_all every few seconds: a log
 * over the cap has its last AGENT_LOG_KEEP bytes copied to agent.log.1 and is truncated.
 * Truncating, not renaming, because the agent holds the file open with O_APPEND: its next
 * line goes to the new end. Everything is opened relative to the sandboxes directory with
 * O_NOFOLLOW (the directory names are the engine's, but be careful anyway). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "id.h"
#include "log.h"
#include "macro.h"
#include "sandbox/sandbox.h"

#define AGENT_LOG_MAX (4 << 20)
#define AGENT_LOG_KEEP (256 << 10)

/* Rotates the agent.log of the sandbox directory open as dfd if it is over the cap. */
static void rotate_one(int dfd, const char *id) {
        _cleanup_close_ int fd = openat(dfd, "agent.log", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int old = -1;
        static char tail[AGENT_LOG_KEEP]; /* only the reaper's thread calls this */
        char note[160];
        struct stat st;
        ssize_t k;
        int n;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= AGENT_LOG_MAX)
                return;
        k = pread(fd, tail, sizeof(tail), st.st_size - (off_t) sizeof(tail));
        old = openat(dfd, "agent.log.1", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (k > 0 && old >= 0)
                (void) !write(old, tail, (size_t) k);
        if (ftruncate(fd, 0) < 0) {
                log_warn("cannot truncate the agent log of %s: %m, ignoring", id);
                return;
        }
        n = snprintf(note, sizeof(note), "ai2ind: agent.log was %lld bytes, over %d: its last %d bytes are in agent.log.1\n",
                     (long long) st.st_size, AGENT_LOG_MAX, AGENT_LOG_KEEP);
        (void) !write(fd, note, (size_t) n);
}

void agentlog_rotate_all(struct engine *eng) {
        _cleanup_close_ int top = open(eng->sandboxes_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        DIR *d;

        if (top < 0 || !(d = fdopendir(dup(top))))
                return;
        while ((de = readdir(d))) {
                if (!sandbox_id_valid(de->d_name))
                        continue;
                _cleanup_close_ int dfd = openat(top, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd >= 0)
                        rotate_one(dfd, de->d_name);
        }
        closedir(d);
}
