/* checkpoint.c — see checkpoint.h. Both tables are read whole (bounded) and parsed line by
 * line with sscanf: a line that does not parse is skipped. */
#include "checkpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>

#include "fsutil.h"
#include "log.h"
#include "macro.h"

#define TABLE_MAX (4 * 1024 * 1024)
#define AGENT_DIR "/.ai2in/"

/* /proc/net/tcp's states (include/net/tcp_states.h): those that hold no connection. */
#define STATE_CLOSE 0x07
#define STATE_LISTEN 0x0A

static const char *tcp_state_name(unsigned st) {
        static const char *const names[] = {"?", "established", "syn-sent", "syn-received", "fin-wait-1", "fin-wait-2",
                                            "time-wait", "close", "close-wait", "last-ack", "listen", "closing"};

        return st < ELEMENTSOF(names) ? names[st] : "?";
}

static bool full(json_t *list) {
        return json_array_size(list) >= CHECKPOINT_BLOCKERS_MAX;
}

/* An address of /proc/net/tcp: the 32 bits in network order, printed as a native integer. */
static void ip_of(unsigned raw, char out[INET_ADDRSTRLEN]) {
        struct in_addr in = {.s_addr = raw};

        inet_ntop(AF_INET, &in, out, INET_ADDRSTRLEN);
}

static bool loopback(unsigned raw) {
        return (ntohl(raw) >> 24) == 127;
}

void checkpoint_tcp_blockers(const char *text, json_t *list) {
        for (const char *line = text; line && *line && !full(list); line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                unsigned local, lport, remote, rport, st;
                char l[INET_ADDRSTRLEN], r[INET_ADDRSTRLEN], item[128];

                if (sscanf(line, " %*u: %8x:%4x %8x:%4x %2x", &local, &lport, &remote, &rport, &st) != 5)
                        continue;
                if (st == STATE_LISTEN || st == STATE_CLOSE || (loopback(local) && loopback(remote)))
                        continue;
                ip_of(local, l);
                ip_of(remote, r);
                snprintf(item, sizeof(item), "tcp %s:%u - %s:%u (%s)", l, lport, r, rport, tcp_state_name(st));
                json_array_append_new(list, json_string(item));
        }
}

static bool listed(json_t *list, const char *item) {
        size_t i;
        json_t *v;

        json_array_foreach(list, i, v)
                if (streq(json_string_value(v), item))
                        return true;
        return false;
}

void checkpoint_unix_blockers(const char *text, json_t *list) {
        for (const char *line = text; line && *line && !full(list); line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                char path[4096], item[4200];
                struct statfs fs;
                int n = 0;

                /* "Num: RefCount Protocol Flags Type St Inode Path" (the path is optional). */
                if (sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %n", &n) < 0 || n == 0 || line[n] != '/')
                        continue;
                size_t len = strcspn(line + n, "\n");
                if (len >= sizeof(path))
                        continue;
                memcpy(path, line + n, len);
                path[len] = 0;
                /* The agent's own closes before the checkpoint; on a tmpfs, it is saved. A path
                 * that is gone cannot be told apart: not listed. */
                if (strncmp(path, AGENT_DIR, strlen(AGENT_DIR)) == 0 || statfs(path, &fs) < 0 || fs.f_type == TMPFS_MAGIC)
                        continue;
                snprintf(item, sizeof(item), "unix socket %s (on the disk)", path);
                if (!listed(list, item))
                        json_array_append_new(list, json_string(item));
        }
}

int checkpoint_handle_blockers(struct http_conn *c, const struct http_request *req, const char *arg) {
        _cleanup_free_ char *tcp = NULL, *unx = NULL;
        size_t len;
        json_t *list = json_array(), *body;
        int r;

        if (!list)
                return -ENOMEM;
        if (read_file("/proc/net/tcp", TABLE_MAX, &tcp, &len) >= 0)
                checkpoint_tcp_blockers(tcp, list);
        else
                log_warn("cannot read /proc/net/tcp, ignoring");
        if (read_file("/proc/net/unix", TABLE_MAX, &unx, &len) >= 0)
                checkpoint_unix_blockers(unx, list);
        else
                log_warn("cannot read /proc/net/unix, ignoring");
        body = json_pack("{s:o}", "blockers", list);
        if (!body)
                return -ENOMEM;
        r = http_respond_json(c, 200, body);
        json_decref(body);
        return r;
}
