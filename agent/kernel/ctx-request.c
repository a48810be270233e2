/* ctx-request.c — see ctx-request.h. */
#include "ctx-request.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "ctx-shell.h"

static const struct {
        const char *name;
        const struct kernel_ops *ops;
} languages[] = {
        {"python", &kernel_python_ops}, {"bash", &kernel_bash_ops}, {"sh", &kernel_bash_ops},
        {"javascript", &kernel_node_ops}, {"js", &kernel_node_ops},
};

const struct kernel_ops *ctx_language(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(languages); i++)
                if (strcasecmp(name, languages[i].name) == 0)
                        return languages[i].ops;
        return NULL;
}

json_t *ctx_load_body(const struct http_request *req, struct proc_error *err) {
        json_error_t jerr;
        json_t *body;

        if (req->body.len == 0)
                return json_object();
        body = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!body) {
                proc_error_set(err, 400, "invalid JSON body: %s", jerr.text);
                return NULL;
        }
        if (!json_is_object(body)) {
                json_decref(body);
                proc_error_set(err, 400, "the request body must be a JSON object");
                return NULL;
        }
        return body;
}

/* A string field without NUL, 1..max bytes. */
static int parse_string(const char *key, json_t *v, size_t max, const char **ret, struct proc_error *err) {
        size_t len;

        if (!json_is_string(v))
                return proc_error_set(err, 400, "'%s' must be a string", key);
        len = json_string_length(v);
        if (len == 0)
                return proc_error_set(err, 400, "'%s' must not be empty", key);
        if (strlen(json_string_value(v)) != len)
                return proc_error_set(err, 400, "'%s' must not contain NUL characters (\\u0000)", key);
        if (len > max)
                return proc_error_set(err, 400, "'%s' must be shorter than %zu bytes", key, max + 1);
        *ret = json_string_value(v);
        return 0;
}

static int parse_language(json_t *v, const struct kernel_ops **ret, struct proc_error *err) {
        const char *name;

        if (parse_string("language", v, 64, &name, err) < 0)
                return -EINVAL;
        *ret = ctx_language(name);
        if (!*ret)
                return proc_error_set(err, 400,
                                      "unknown language '%s': must be python, bash or javascript (also js, sh; any case)",
                                      name);
        return 0;
}

static int parse_envs(json_t *envs, struct proc_error *err) {
        const char *key;
        json_t *v;

        if (!json_is_object(envs))
                return proc_error_set(err, 400, "'envs' must be an object of strings");
        if (json_object_size(envs) > CTX_MAX_ENVS)
                return proc_error_set(err, 400, "'envs' has more than %d entries", CTX_MAX_ENVS);
        json_object_foreach(envs, key, v) {
                if (!shell_is_name(key))
                        return proc_error_set(err, 400, "'envs' key '%s' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                                              key);
                if (!json_is_string(v))
                        return proc_error_set(err, 400, "'envs' value of '%s' must be a string", key);
                if (strlen(json_string_value(v)) != json_string_length(v))
                        return proc_error_set(err, 400, "'envs' value of '%s' must not contain NUL characters (\\u0000)",
                                              key);
        }
        return 0;
}

static int parse_execute_field(const char *key, json_t *v, struct exec_request *r, struct proc_error *err) {
        if (streq(key, "code"))
                return parse_string(key, v, CTX_MAX_CODE - 1, &r->code, err);
        if (streq(key, "language"))
                return parse_language(v, &r->ops, err);
        if (streq(key, "context_id"))
                return parse_string(key, v, CTX_MAX_STRING, &r->context_id, err);
        if (streq(key, "envs")) {
                r->envs = v;
                return parse_envs(v, err);
        }
        if (streq(key, "timeout_ms")) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > CTX_MAX_TIMEOUT_MS)
                        return proc_error_set(err, 400, "'timeout_ms' must be an integer from 0 (none) to %d",
                                              CTX_MAX_TIMEOUT_MS);
                r->timeout_ms = json_integer_value(v);
                return 0;
        }
        return proc_error_set(err, 400, "unknown field '%s'", key);
}

int ctx_parse_execute(json_t *body, struct exec_request *ret, struct proc_error *err) {
        struct exec_request r = {.timeout_ms = CTX_DEFAULT_TIMEOUT_MS};
        const char *key;
        json_t *v;

        if (!json_is_object(body))
                return proc_error_set(err, 400, "the request body must be a JSON object");
        json_object_foreach(body, key, v)
                if (!json_is_null(v) && parse_execute_field(key, v, &r, err) < 0)
                        return -EINVAL;
        if (!r.code)
                return proc_error_set(err, 400, "missing field 'code'");
        *ret = r;
        return 0;
}

int ctx_parse_create(json_t *body, struct create_request *ret, struct proc_error *err) {
        struct create_request r = {.ops = &kernel_python_ops, .user = "root"};
        const char *key;
        json_t *v;
        int k = 0;

        if (!json_is_object(body))
                return proc_error_set(err, 400, "the request body must be a JSON object");
        json_object_foreach(body, key, v) {
                if (json_is_null(v))
                        continue;
                if (streq(key, "language"))
                        k = parse_language(v, &r.ops, err);
                else if (streq(key, "cwd"))
                        k = parse_string(key, v, CTX_MAX_STRING, &r.cwd, err);
                else if (streq(key, "user"))
                        k = parse_string(key, v, CTX_MAX_STRING, &r.user, err);
                else
                        k = proc_error_set(err, 400, "unknown field '%s'", key);
                if (k < 0)
                        return -EINVAL;
        }
        *ret = r;
        return 0;
}
