/* routes.c — see routes.h. Also home of the one-line handlers (health); anything bigger
 * gets its own file. */
#include "routes.h"

#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "log.h"
#include "timeutil.h"

struct route {
        const char *method;
        const char *path;
        int (*handler)(struct http_conn *c, const struct http_request *req, struct agent *a);
};

static int handle_health(struct http_conn *c, const struct http_request *req, struct agent *a) {
        json_t *body;
        int r;

        body = json_pack("{s:s,s:i,s:I}", "status", "ok", "pid", (int) getpid(), "uptime_ms",
                         (json_int_t) ((uint64_t) mono_ms() - a->started_ms));
        if (!body)
                return -ENOMEM;
        r = http_respond_json(c, 200, body);
        json_decref(body);
        return r;
}

static int handle_exec(struct http_conn *c, const struct http_request *req, struct agent *a) {
        return exec_handle(c, req);
}

static const struct route routes[] = {
        {"GET", "/health", handle_health},
        {"POST", "/exec", handle_exec},
};

int agent_route(struct http_conn *c, const struct http_request *req, void *userdata) {
        bool path_known = false;

        log_debug("%s %s", req->method, req->path);
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!streq(routes[i].path, req->path))
                        continue;
                if (streq(routes[i].method, req->method))
                        return routes[i].handler(c, req, userdata);
                path_known = true;
        }
        if (path_known)
                return http_respond_error(c, 405, "method_not_allowed", "method %s is not allowed on %s",
                                          req->method, req->path);
        return http_respond_error(c, 404, "not_found", "no route for %s %s", req->method, req->path);
}
