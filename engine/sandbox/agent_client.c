/* agent_client.c — see agent_client.h. A small JSON call over agent_stream.c, so that every
 * answer of a sandbox's agent is read by the one strict parser (common/http-parse.c).
 * Answers are capped at AGENT_CALL_MAX bytes. */
#include "sandbox/agent_client.h"

#include <errno.h>
#include <string.h>

#include "macro.h"
#include "sandbox/agent_stream.h"
#include "timeutil.h"

#define AGENT_CALL_MAX (1024 * 1024)

int agent_call(const char *socket_path, const char *method, const char *path, json_t *body, long timeout_ms, json_t **ret_json,
               long *ret_status, struct error *e) {
        _cleanup_agent_stream_ struct agent_stream *s = NULL;
        _cleanup_free_ char *text = NULL, *answer = NULL;
        size_t len;
        int r;

        if (body && !(text = json_dumps(body, JSON_COMPACT)))
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        r = agent_stream_open(socket_path, method, path, text ? "application/json" : NULL, text ? (int64_t) strlen(text) : 0,
                              -1, timeout_ms, &s, e);
        if (r >= 0 && text)
                r = agent_stream_send(s, text, strlen(text), e);
        if (r >= 0)
                r = agent_stream_finish(s, timeout_ms, e);
        if (r < 0)
                return r;
        *ret_status = agent_stream_status(s);
        r = agent_stream_read_all(s, AGENT_CALL_MAX, &answer, &len);
        if (r == -ETIMEDOUT)
                return error_set(e, ETIMEDOUT, 504, "timeout", "the sandbox's agent did not answer within %ld ms", timeout_ms);
        *ret_json = r < 0 ? NULL : json_loadb(answer, len, 0, NULL);
        if (!json_is_object(*ret_json)) {
                json_decref(*ret_json);
                *ret_json = NULL;
                return error_set(e, EIO, ERR_SANDBOX, "the sandbox's agent gave an unreadable answer (HTTP %ld)", *ret_status);
        }
        return 0;
}
