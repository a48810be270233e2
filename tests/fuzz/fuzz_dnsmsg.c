/* fuzz_dnsmsg — the DNS messages the engine's forwarder reads (engine/net/dnsmsg.c): queries
 * from sandboxes and answers from the network. The input is read as a query and as an
 * answer to its own question, and its first bytes as a domain pattern. Checks that every
 * offset handed back lies inside the message, that an error answer made of a query keeps
 * its question and reads back as an answer to it, and that a normalized pattern is stable. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "net/dnsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct dnsmsg_question q, back;
        struct dnsmsg_addrs a;
        char pat[DNSMSG_NAME_MAX + 1], again[DNSMSG_NAME_MAX + 1];
        uint8_t *msg;

        if (dnsmsg_pattern_normalize((const char *) data, size < 300 ? size : 300, pat) == 0) {
                assert(dnsmsg_pattern_normalize(pat, strlen(pat), again) == 0 && strcmp(pat, again) == 0);
                assert(strncmp(pat, "*.", 2) == 0 || dnsmsg_pattern_match(pat, pat));
        }
        msg = malloc(size ? size : 1);
        memcpy(msg, data, size);
        if (dnsmsg_question(msg, size, false, &q) == 0) {
                assert(q.end <= size && strlen(q.name) < sizeof(q.name));
                if (dnsmsg_answer_addrs(msg, size, &q, &a) == 0)
                        for (unsigned i = 0; i < a.n; i++) {
                                assert(a.a[i].ttl_offset + 4 <= size);
                                dnsmsg_set_ttl(msg, a.a[i].ttl_offset, 5);
                        }
                else
                        assert(a.n == 0);
        }
        if (dnsmsg_question(msg, size, true, &q) == 0) {
                size_t n = dnsmsg_make_error(msg, &q, DNS_RCODE_REFUSED);
                assert(n == q.end && n <= size);
                assert(dnsmsg_question(msg, n, false, &back) == 0 && strcmp(back.name, q.name) == 0);
                assert(dnsmsg_answer_addrs(msg, n, &q, &a) == 0 && a.n == 0);
        }
        free(msg);
        return 0;
}
