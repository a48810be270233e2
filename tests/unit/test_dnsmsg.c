/* test_dnsmsg.c — what the engine's DNS forwarder reads of a message (engine/net/dnsmsg.c):
 * a query's question, the A records an answer gives for the name asked and the names its
 * CNAMEs lead to (and no other), compression, the messages it refuses; and the domain
 * patterns of network.allow_out, normalized and matched. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "net/dnsmsg.h"

struct msg {
        uint8_t b[8192];
        size_t n;
};

static void put(struct msg *m, const void *p, size_t n) {
        memcpy(m->b + m->n, p, n);
        m->n += n;
}

static void put16(struct msg *m, unsigned v) {
        uint8_t b[2] = {(uint8_t) (v >> 8), (uint8_t) v};
        put(m, b, 2);
}

static void put_name(struct msg *m, const char *name) {
        for (const char *p = name; *p;) {
                size_t l = strcspn(p, ".");
                m->b[m->n++] = (uint8_t) l;
                put(m, p, l);
                p += l + (p[l] == '.');
        }
        m->b[m->n++] = 0;
}

/* A record: owner (a name, or a pointer when ptr), type, TTL, data. */
static void put_rr(struct msg *m, const char *owner, unsigned ptr, unsigned type, unsigned ttl, const void *data, size_t n) {
        if (ptr)
                put16(m, 0xc000 | ptr);
        else
                put_name(m, owner);
        put16(m, type);
        put16(m, 1);
        put16(m, ttl >> 16);
        put16(m, ttl & 0xffff);
        put16(m, (unsigned) n);
        put(m, data, n);
}

static void header(struct msg *m, unsigned flags, unsigned qd, unsigned an, const char *qname) {
        m->n = 0;
        put16(m, 0x1234);
        put16(m, flags);
        put16(m, qd);
        put16(m, an);
        put16(m, 0);
        put16(m, 0);
        put_name(m, qname);
        put16(m, DNS_TYPE_A);
        put16(m, 1);
}

static void test_query_question(void **state) {
        struct dnsmsg_question q;
        struct msg m;

        header(&m, 0x0100, 1, 0, "PyPI.Org");
        assert_int_equal(dnsmsg_question(m.b, m.n, true, &q), 0);
        assert_string_equal(q.name, "pypi.org");
        assert_int_equal(q.type, DNS_TYPE_A);
        assert_int_equal(q.end, m.n);
        /* Not a query (QR set), an update (opcode 5), two questions, cut short. */
        assert_int_equal(dnsmsg_question(m.b, m.n, false, &q), -EBADMSG);
        header(&m, 0x2800, 1, 0, "pypi.org");
        assert_int_equal(dnsmsg_question(m.b, m.n, true, &q), -EBADMSG);
        header(&m, 0x0100, 2, 0, "pypi.org");
        assert_int_equal(dnsmsg_question(m.b, m.n, true, &q), -EBADMSG);
        header(&m, 0x0100, 1, 0, "pypi.org");
        assert_int_equal(dnsmsg_question(m.b, m.n - 1, true, &q), -EBADMSG);
        /* A label holding a dot cannot pass for two. */
        header(&m, 0x0100, 1, 0, "x");
        m.n = 12;
        put(&m, "\x08pypi.org\x00\x00\x01\x00\x01", 14);
        assert_int_equal(dnsmsg_question(m.b, m.n, true, &q), 0);
        assert_string_equal(q.name, "pypi?org");
}

static void test_answer_follows_cnames_from_the_name_asked(void **state) {
        struct dnsmsg_question q;
        struct dnsmsg_addrs a;
        struct msg m;
        uint8_t one[4] = {198, 18, 0, 1}, two[4] = {198, 18, 0, 2}, other[4] = {198, 18, 0, 9};
        size_t cname_at;

        header(&m, 0x8180, 1, 4, "files.cdn.test");
        assert_int_equal(dnsmsg_question(m.b, m.n, false, &q), 0);
        /* An unrelated A first, then the A of the CNAME's target before the CNAME itself. */
        put_rr(&m, "elsewhere.test", 0, DNS_TYPE_A, 30, other, 4);
        cname_at = m.n;
        put_rr(&m, "edge.test", 0, DNS_TYPE_A, 7200, one, 4);
        put_rr(&m, NULL, 12, DNS_TYPE_CNAME, 60, "\x04" "edge\x04" "test\x00", 11);
        put_rr(&m, NULL, (unsigned) cname_at, DNS_TYPE_A, 5, two, 4);
        assert_int_equal(dnsmsg_answer_addrs(m.b, m.n, &q, &a), 0);
        assert_int_equal(a.n, 2);
        assert_memory_equal(&a.a[0].addr, one, 4);
        assert_int_equal(a.a[0].ttl, 7200);
        assert_memory_equal(&a.a[1].addr, two, 4);
        assert_int_equal(a.a[1].ttl, 5);
        dnsmsg_set_ttl(m.b, a.a[0].ttl_offset, 3600);
        assert_int_equal(dnsmsg_answer_addrs(m.b, m.n, &q, &a), 0);
        assert_int_equal(a.a[0].ttl, 3600);
        /* An answer to another question gives nothing. */
        strcpy(q.name, "other.test");
        assert_int_equal(dnsmsg_answer_addrs(m.b, m.n, &q, &a), -EBADMSG);
        assert_int_equal(a.n, 0);
}

/* At most DNSMSG_ADDRS_MAX addresses from one answer; one with more says so (the forwarder
 * refuses it whole rather than pass on addresses it could not let through). */
static void test_an_answer_with_too_many_addresses_says_so(void **state) {
        struct dnsmsg_question q;
        struct dnsmsg_addrs a;
        struct msg m;

        for (unsigned count = DNSMSG_ADDRS_MAX; count <= DNSMSG_ADDRS_MAX + 1; count++) {
                header(&m, 0x8180, 1, count, "huge.test");
                assert_int_equal(dnsmsg_question(m.b, m.n, false, &q), 0);
                for (unsigned i = 0; i < count; i++) {
                        uint8_t addr[4] = {100, 65, (uint8_t) (i / 250), (uint8_t) (i % 250 + 1)};
                        put_rr(&m, NULL, 12, DNS_TYPE_A, 60, addr, 4);
                }
                assert_int_equal(dnsmsg_answer_addrs(m.b, m.n, &q, &a), 0);
                assert_int_equal(a.n, DNSMSG_ADDRS_MAX);
                assert_int_equal(a.more, count > DNSMSG_ADDRS_MAX);
        }
}

static void test_bad_pointers_are_refused(void **state) {
        struct dnsmsg_question q;
        struct dnsmsg_addrs a;
        struct msg m;
        uint8_t ip[4] = {198, 18, 0, 1};

        header(&m, 0x8180, 1, 1, "a.test");
        assert_int_equal(dnsmsg_question(m.b, m.n, false, &q), 0);
        size_t at = m.n;
        put_rr(&m, NULL, (unsigned) at, DNS_TYPE_A, 5, ip, 4); /* points at itself */
        assert_int_equal(dnsmsg_answer_addrs(m.b, m.n, &q, &a), -EBADMSG);
        m.n = at;
        put_rr(&m, NULL, 4, DNS_TYPE_A, 5, ip, 4); /* into the header */
        assert_int_equal(dnsmsg_answer_addrs(m.b, m.n, &q, &a), -EBADMSG);
        m.n = at;
        put_rr(&m, NULL, 12, DNS_TYPE_A, 5, ip, 3); /* an A of 3 bytes: not taken */
        assert_int_equal(dnsmsg_answer_addrs(m.b, m.n, &q, &a), 0);
        assert_int_equal(a.n, 0);
}

static void test_error_answer_keeps_the_question(void **state) {
        struct dnsmsg_question q, back;
        struct msg m;

        header(&m, 0x0100, 1, 0, "pypi.org");
        put(&m, "\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00", 11); /* an EDNS OPT record: dropped */
        m.b[11] = 1;
        assert_int_equal(dnsmsg_question(m.b, m.n, true, &q), 0);
        size_t n = dnsmsg_make_error(m.b, &q, DNS_RCODE_REFUSED);
        assert_int_equal(dnsmsg_question(m.b, n, false, &back), 0);
        assert_string_equal(back.name, "pypi.org");
        assert_int_equal(m.b[3] & 0x0f, DNS_RCODE_REFUSED);
        assert_int_equal(m.b[2], 0x81);
        assert_int_equal(m.b[11], 0);
}

static void test_patterns(void **state) {
        char out[DNSMSG_NAME_MAX + 1], long_name[300];
        const char *bad[] = {"", ".", "pypi", "*.org", "*.", "a..b", "-a.org", "a-.org", "*.*.org", "a*.org", "10.1.2", "pypi.org/",
                             "http://pypi.org", "pyp i.org", "1.2.3.4"};

        assert_int_equal(dnsmsg_pattern_normalize("PyPI.org.", 9, out), 0);
        assert_string_equal(out, "pypi.org");
        assert_int_equal(dnsmsg_pattern_normalize("*.GitHubUserContent.com", 23, out), 0);
        assert_string_equal(out, "*.githubusercontent.com");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(dnsmsg_pattern_normalize(bad[i], strlen(bad[i]), out), -EINVAL);
        memset(long_name, 'a', 63);
        strcpy(long_name + 63, ".org");
        assert_int_equal(dnsmsg_pattern_normalize(long_name, strlen(long_name), out), 0);
        long_name[63] = 'a';
        assert_int_equal(dnsmsg_pattern_normalize(long_name, strlen(long_name), out), -EINVAL); /* a label of 64 */
        for (int i = 0; i < 26; i++)
                memcpy(long_name + i * 10, "abcdefghi.", 10);
        strcpy(long_name + 260, "org");
        assert_int_equal(dnsmsg_pattern_normalize(long_name, strlen(long_name), out), -EINVAL); /* 263 bytes */

        assert_true(dnsmsg_pattern_match("pypi.org", "pypi.org"));
        assert_false(dnsmsg_pattern_match("pypi.org", "files.pypi.org"));
        assert_true(dnsmsg_pattern_match("*.githubusercontent.com", "raw.githubusercontent.com"));
        assert_true(dnsmsg_pattern_match("*.githubusercontent.com", "a.b.githubusercontent.com"));
        assert_false(dnsmsg_pattern_match("*.githubusercontent.com", "githubusercontent.com"));
        assert_false(dnsmsg_pattern_match("*.githubusercontent.com", "evilgithubusercontent.com"));
        assert_false(dnsmsg_pattern_match("*.pypi.org", "x.pypi?org"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_query_question), cmocka_unit_test(test_answer_follows_cnames_from_the_name_asked),
                cmocka_unit_test(test_an_answer_with_too_many_addresses_says_so),
                cmocka_unit_test(test_bad_pointers_are_refused), cmocka_unit_test(test_error_answer_keeps_the_question),
                cmocka_unit_test(test_patterns)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
