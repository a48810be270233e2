/* files.h — the filesystem API: every file operation on the sandbox, done by the agent
 * inside the sandbox so that no host code ever resolves a path the sandbox controls, and
 * the inotify-based watch stream (see docs/api.md, "Files", for the wire contract).
 *
 * Every route takes a user (default root) and does all of its work, from the first path
 * lookup to the last unlink, with that user's filesystem identity (files_act_as()): the
 * kernel checks each access as the user's own, so that a symlink the user planted cannot
 * make the agent write, read or remove as root what the user could not.
 *
 * Handlers follow http_handler_t's rule: send exactly one response, return 0 or the
 * -errno of a failed reply. arg is unused (NULL).
 */
#pragma once

#include "http.h"

int files_handle_read(struct http_conn *c, const struct http_request *req, const char *arg);
int files_handle_write(struct http_conn *c, const struct http_request *req, const char *arg);
int files_handle_info(struct http_conn *c, const struct http_request *req, const char *arg);
int files_handle_list(struct http_conn *c, const struct http_request *req, const char *arg);
int files_handle_mkdir(struct http_conn *c, const struct http_request *req, const char *arg);
int files_handle_rename(struct http_conn *c, const struct http_request *req, const char *arg);
int files_handle_remove(struct http_conn *c, const struct http_request *req, const char *arg);
int files_handle_watch(struct http_conn *c, const struct http_request *req, const char *arg);
