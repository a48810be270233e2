/* agent_client.c — see agent_client.h. libcurl with CURLOPT_UNIX_SOCKET_PATH; a fresh easy
 * handle per call keeps threads independent. Answers are capped at 64 MiB. */
#include "sandbox/agent_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>

#include "buf.h"

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        struct buf *b = userdata;
        return buf_append(b, p, size * n) < 0 ? 0 : size * n;
}

int agent_call(const char *socket_path, const char *method, const char *path, json_t *body, long timeout_ms, json_t **ret_json,
               long *ret_status, struct error *e) {
        _cleanup_buf_ struct buf out;
        _cleanup_free_ char *text = NULL;
        struct curl_slist *headers = NULL;
        char url[512];
        json_error_t jerr;
        CURLcode rc;
        CURL *c;

        buf_init(&out, 64 * 1024 * 1024);
        c = curl_easy_init();
        if (!c)
                return error_set(e, ENOMEM, ERR_INTERNAL, "cannot make an HTTP client");
        snprintf(url, sizeof(url), "http://agent%s", path);
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
        if (body) {
                text = json_dumps(body, JSON_COMPACT);
                headers = curl_slist_append(headers, "Content-Type: application/json");
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, text ? text : "{}");
        }
        rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status);
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        if (rc == CURLE_OPERATION_TIMEDOUT)
                return error_set(e, ETIMEDOUT, 504, "timeout", "the sandbox's agent did not answer within %ld ms", timeout_ms);
        if (rc != CURLE_OK)
                return error_set(e, EIO, ERR_SANDBOX, "the sandbox's agent is not reachable: %s", curl_easy_strerror(rc));
        *ret_json = json_loadb(out.data ? out.data : "", out.len, 0, &jerr);
        if (!*ret_json || !json_is_object(*ret_json)) {
                json_decref(*ret_json);
                *ret_json = NULL;
                return error_set(e, EIO, ERR_SANDBOX, "the sandbox's agent gave an unreadable answer (HTTP %ld)", *ret_status);
        }
        return 0;
}
