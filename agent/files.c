/* files.c — see files.h. (Being written: every route answers 501 until it lands.) */
#include "files.h"

int files_handle_read(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int files_handle_write(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int files_handle_info(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int files_handle_list(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int files_handle_mkdir(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int files_handle_rename(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int files_handle_remove(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}

int files_handle_watch(struct http_conn *c, const struct http_request *req, const char *arg) {
        return http_respond_error(c, 501, "not_implemented", "%s is not implemented yet", req->path);
}
