/* fuzz_http_head — the request-head and answer-head parsers of common/http-parse.c on any
 * bytes. Checks the contract every caller relies on: a head length within the input and
 * ending in CRLF CRLF, every header inside the parser's own copy, every output zeroed on
 * every return but 1 (issue 11: a caller advanced by an output the parser had not set). */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "http-parse.h"

static void check_request(const uint8_t *data, size_t size) {
        struct http_request req;
        size_t head_len;
        int r;

        memset(&req, 0xa5, sizeof(req));
        head_len = 12345;
        r = http_request_parse_head(&req, (const char *) data, size, &head_len);
        if (r != 1) {
                assert(r <= 0 && head_len == 0 && !req.head && req.n_headers == 0);
                return;
        }
        assert(head_len >= 4 && head_len <= size && head_len <= HTTP_MAX_HEAD);
        assert(memcmp(data + head_len - 4, "\r\n\r\n", 4) == 0);
        assert(req.n_headers <= HTTP_MAX_HEADERS && req.method && req.path);
        assert(!(req.chunked && req.content_length));
        for (size_t i = 0; i < req.n_headers; i++) {
                assert(req.headers[i].name >= req.head && req.headers[i].name < req.head + head_len);
                assert(strlen(req.headers[i].name) > 0 && !strpbrk(req.headers[i].name, ": \r\n"));
                assert(!strpbrk(req.headers[i].value, "\r\n"));
        }
        (void) http_request_header(&req, "Host");
        http_request_done(&req);
}

static void check_response(const uint8_t *data, size_t size) {
        struct http_response resp;
        size_t head_len;
        int r;

        memset(&resp, 0xa5, sizeof(resp));
        head_len = 12345;
        r = http_response_parse_head(&resp, (const char *) data, size, &head_len);
        if (r != 1) {
                assert(r <= 0 && head_len == 0 && !resp.head && resp.content_length == -1);
                return;
        }
        assert(head_len >= 4 && head_len <= size && head_len <= HTTP_MAX_HEAD);
        assert(resp.status >= 100 && resp.status <= 999);
        assert(!(resp.chunked && resp.content_length >= 0));
        for (size_t i = 0; i < resp.n_headers; i++)
                assert(!strpbrk(resp.headers[i].value, "\r\n"));
        (void) http_response_header(&resp, "Content-Type");
        http_response_done(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        check_request(data, size);
        check_response(data, size);
        return 0;
}
