/* procs.c — see procs.h. (Being written: every route answers 501 until it lands.) */
#include "procs.h"

int procs_init(void) {
        return 0;
}

int procs_handle_start(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int procs_handle_list(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int procs_handle_stream(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int procs_handle_stdin_write(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int procs_handle_stdin_close(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int procs_handle_signal(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int procs_handle_kill(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int procs_handle_resize(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}
