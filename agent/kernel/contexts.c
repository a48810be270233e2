/* contexts.c — see contexts.h. (Being written: every route answers 501 until it lands.) */
#include "kernel/contexts.h"

int contexts_init(void) {
        return 0;
}

int contexts_handle_execute(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int contexts_handle_create(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int contexts_handle_list(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int contexts_handle_restart(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int contexts_handle_remove(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}
