/* dnsmsg.h — the few things the engine's DNS forwarder (dnsfwd.h) reads in a DNS message
 * (RFC 1035), and the domain patterns of network.allow_out. Every message is hostile: a
 * query comes from a sandbox, an answer from the network. The parser is bounded (names of
 * at most 255 bytes, at most DNSMSG_JUMPS compression pointers per name, every read checked
 * against the message's length), never allocates, and is fuzzed (tests/fuzz/fuzz_dnsmsg.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNSMSG_NAME_MAX 255  /* a name in dotted text, without the final dot, plus its NUL */
#define DNSMSG_JUMPS 32      /* compression pointers followed per name, at most */
#define DNSMSG_ADDRS_MAX 256 /* A records taken from one answer, at most (as many as 4 KiB holds; more: `more`) */
#define DNSMSG_CHAIN_MAX 8   /* CNAMEs followed from the name asked, at most */

#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_REFUSED 5

/* The one question of a message: its name in lower case, dotted, no final dot ("" for the
 * root), its type and class, and where the question section ends (the answers start). */
struct dnsmsg_question {
        char name[DNSMSG_NAME_MAX + 1];
        uint16_t type;
        uint16_t klass;
        size_t end;
};

/* One A record of an answer: its address (network order), its TTL and where the TTL sits
 * in the message (to lower it in place). */
struct dnsmsg_addr {
        uint32_t addr;
        uint32_t ttl;
        size_t ttl_offset;
};

struct dnsmsg_addrs {
        struct dnsmsg_addr a[DNSMSG_ADDRS_MAX];
        unsigned n;
        bool more; /* the answer had more A records of the chain than a holds */
};

/* Reads the header and the only question of msg (len bytes) into ret. query: it must be a
 * standard query (QR 0, opcode 0), else an answer (QR 1). -EBADMSG if msg is not such a
 * message with exactly one question. */
int dnsmsg_question(const uint8_t *msg, size_t len, bool query, struct dnsmsg_question *ret);

/* The A records of answer msg whose owner is q's name or a name it leads to through the
 * answer's CNAMEs (followed DNSMSG_CHAIN_MAX deep), into ret. msg's question must be q's
 * (same name, type and class: else -EBADMSG), and the answer section well formed (else
 * -EBADMSG; ret then holds nothing). Records of other sections are not read. */
int dnsmsg_answer_addrs(const uint8_t *msg, size_t len, const struct dnsmsg_question *q, struct dnsmsg_addrs *ret);

/* The 16-bit fields of the header (ID, flags) read and written. */
uint16_t dnsmsg_id(const uint8_t *msg);
void dnsmsg_set_id(uint8_t *msg, uint16_t id);

/* Makes msg (a query of len >= 12 bytes, whose question is q) an answer with rcode and no
 * records, in place; returns its new length (header and question). */
size_t dnsmsg_make_error(uint8_t *msg, const struct dnsmsg_question *q, unsigned rcode);

/* Writes ttl into the TTL of a record at offset (from struct dnsmsg_addr). */
void dnsmsg_set_ttl(uint8_t *msg, size_t offset, uint32_t ttl);

/* A domain pattern of allow_out (s, len bytes): "pypi.org" (that name) or "*.example.com"
 * (every name below example.com, not example.com itself), in lower case into out. Labels
 * of letters, digits, '-' and '_' (1..63 bytes, no '-' at either end), at least two, the
 * last not all digits, 253 bytes at most, no final dot needed (one is dropped). -EINVAL
 * otherwise. */
int dnsmsg_pattern_normalize(const char *s, size_t len, char out[DNSMSG_NAME_MAX + 1]);

/* Whether name (lower case, as dnsmsg_question gives) matches pattern (normalized). */
bool dnsmsg_pattern_match(const char *pattern, const char *name);
