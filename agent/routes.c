/* routes.c — see routes.h. Also home of the one-line handlers (health); anything bigger
 * gets its own file. */
#include "routes.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "files.h"
#include "kernel/contexts.h"
#include "log.h"
#include "pressure.h"
#include "procs.h"
#include "timeutil.h"
#include "tunnel.h"

#define ARG_MAX_LEN 32

struct route {
        const char *method;
        const char *pattern; /* "{pid}" or "{id}" matches one path segment, handed to the handler */
        int (*handler)(struct http_conn *c, const struct http_request *req, const char *arg);
        bool streams_body;
        bool lasts; /* its answer is a stream that may last (not served by a reserve thread) */
};

static struct agent *the_agent;

static int handle_health(struct http_conn *c, const struct http_request *req, const char *arg) {
        json_t *body;
        int r;

        body = json_pack("{s:s,s:i,s:I}", "status", "ok", "pid", (int) getpid(), "uptime_ms",
                         (json_int_t) ((uint64_t) mono_ms() - the_agent->started_ms));
        if (!body)
                return -ENOMEM;
        r = http_respond_json(c, 200, body);
        json_decref(body);
        return r;
}

static const struct route routes[] = {
        {"GET", "/health", handle_health, false, false},
        {"POST", "/processes", procs_handle_start, false, true},
        {"GET", "/processes", procs_handle_list, false, false},
        {"POST", "/processes/kill_all", procs_handle_kill_all, false, false},
        {"GET", "/processes/{pid}/stream", procs_handle_stream, false, true},
        {"POST", "/processes/{pid}/stdin", procs_handle_stdin_write, false, false},
        {"DELETE", "/processes/{pid}/stdin", procs_handle_stdin_close, false, false},
        {"POST", "/processes/{pid}/signal", procs_handle_signal, false, false},
        {"POST", "/processes/{pid}/resize", procs_handle_resize, false, false},
        {"DELETE", "/processes/{pid}", procs_handle_kill, false, false},
        {"GET", "/files", files_handle_read, false, false},
        {"PUT", "/files", files_handle_write, true, false},
        {"DELETE", "/files", files_handle_remove, false, false},
        {"GET", "/files/info", files_handle_info, false, false},
        {"GET", "/files/list", files_handle_list, false, false},
        {"POST", "/files/mkdir", files_handle_mkdir, false, false},
        {"POST", "/files/rename", files_handle_rename, false, false},
        {"GET", "/files/watch", files_handle_watch, false, true},
        {"POST", "/execute", contexts_handle_execute, false, true},
        {"POST", "/contexts", contexts_handle_create, false, false},
        {"GET", "/contexts", contexts_handle_list, false, false},
        {"POST", "/contexts/{id}/restart", contexts_handle_restart, false, false},
        {"DELETE", "/contexts/{id}", contexts_handle_remove, false, false},
        {"GET", "/tunnel", tunnel_handle, false, true},
        {"GET", "/checkpoint/blockers", checkpoint_handle_blockers, false, false},
};

/* A stream asked for while the agent had no thread for it (http.h): it would hold one of the
 * few kept for the owner's calls, for as long as it lasts. */
static int respond_no_thread(struct http_conn *c) {
        char why[256];

        return http_respond_error(c, 503, "unavailable",
                                  "the agent cannot start a thread for this stream: %s; try again once processes "
                                  "have ended",
                                  pressure_describe(EAGAIN, why, sizeof(why)));
}

/* Matches path against pattern; the {pid} or {id} segment, if any, is copied to arg. */
static bool route_match(const char *pattern, const char *path, char arg[ARG_MAX_LEN]) {
        const char *p = pattern, *u = path;

        arg[0] = 0;
        while (*p && *u) {
                if (strncmp(p, "{pid}", 5) == 0 || strncmp(p, "{id}", 4) == 0) {
                        size_t len = strcspn(u, "/");
                        if (len == 0 || len >= ARG_MAX_LEN)
                                return false;
                        memcpy(arg, u, len);
                        arg[len] = 0;
                        u += len;
                        p += p[1] == 'p' ? 5 : 4;
                        continue;
                }
                if (*p++ != *u++)
                        return false;
        }
        return *p == 0 && *u == 0;
}

static const struct route *route_find(const struct http_request *req, bool *ret_path_known, char arg[ARG_MAX_LEN]) {
        *ret_path_known = false;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!route_match(routes[i].pattern, req->path, arg))
                        continue;
                if (streq(routes[i].method, req->method))
                        return &routes[i];
                *ret_path_known = true;
        }
        return NULL;
}

bool agent_route_streams_body(const struct http_request *req) {
        char arg[ARG_MAX_LEN];
        bool known;
        const struct route *rt = route_find(req, &known, arg);

        return rt && rt->streams_body;
}

int agent_route(struct http_conn *c, const struct http_request *req, void *userdata) {
        char arg[ARG_MAX_LEN];
        bool path_known;
        const struct route *rt;

        the_agent = userdata;
        log_debug("%s %s", req->method, req->path);
        rt = route_find(req, &path_known, arg);
        if (rt && rt->lasts && http_conn_reserved(c))
                return respond_no_thread(c);
        if (rt)
                return rt->handler(c, req, arg[0] ? arg : NULL);
        if (path_known)
                return http_respond_error(c, 405, "method_not_allowed", "method %s is not allowed on %s",
                                          req->method, req->path);
        return http_respond_error(c, 404, "not_found", "no route for %s %s", req->method, req->path);
}
