/* dnsmsg.c — see dnsmsg.h. Names are read into text as DNS shows them (labels joined by
 * dots, lower case), with every byte that is not a letter, digit, '-' or '_' written as '?':
 * a label holding a dot ("pypi.org" as one label) or a NUL then cannot pass for another
 * name, and no pattern (dnsmsg_pattern_normalize allows no '?') matches it. */
#include "net/dnsmsg.h"

#include <errno.h>
#include <string.h>

#define HEADER_LEN 12

static uint16_t get16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

uint16_t dnsmsg_id(const uint8_t *msg) {
        return get16(msg);
}

void dnsmsg_set_id(uint8_t *msg, uint16_t id) {
        msg[0] = (uint8_t) (id >> 8);
        msg[1] = (uint8_t) id;
}

void dnsmsg_set_ttl(uint8_t *msg, size_t offset, uint32_t ttl) {
        msg[offset] = (uint8_t) (ttl >> 24);
        msg[offset + 1] = (uint8_t) (ttl >> 16);
        msg[offset + 2] = (uint8_t) (ttl >> 8);
        msg[offset + 3] = (uint8_t) ttl;
}

static char name_char(uint8_t c) {
        if (c >= 'A' && c <= 'Z')
                return (char) (c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')
                return (char) c;
        return '?';
}

/* Reads the name at *off into out (DNSMSG_NAME_MAX + 1 bytes) and moves *off past it (past
 * its first pointer, if any). A pointer must point backwards, past the header, at a name
 * that ends before the pointer (so no loop can be made of them, and a message cut after a
 * name still holds all of it); DNSMSG_JUMPS are followed at most. */
static int read_name(const uint8_t *msg, size_t len, size_t *off, char *out) {
        size_t p = *off, n = 0, end = 0, limit = len;
        unsigned jumps = 0;

        for (;;) {
                if (p >= limit)
                        return -EBADMSG;
                uint8_t l = msg[p];
                if ((l & 0xc0) == 0xc0) {
                        if (p + 1 >= limit || ++jumps > DNSMSG_JUMPS)
                                return -EBADMSG;
                        size_t to = (size_t) (l & 0x3f) << 8 | msg[p + 1];
                        if (to >= p || to < HEADER_LEN) /* backwards, and not into the header */
                                return -EBADMSG;
                        if (!end)
                                end = p + 2;
                        limit = p; /* what it points at lies wholly before it */
                        p = to;
                        continue;
                }
                if (l & 0xc0) /* the 0x40 and 0x80 label types are obsolete */
                        return -EBADMSG;
                if (l == 0)
                        break;
                if (p + 1 + l > limit || n + (n > 0) + l > DNSMSG_NAME_MAX - 1)
                        return -EBADMSG;
                if (n > 0)
                        out[n++] = '.';
                for (unsigned i = 0; i < l; i++)
                        out[n++] = name_char(msg[p + 1 + i]);
                p += 1 + (size_t) l;
        }
        out[n] = 0;
        *off = end ? end : p + 1;
        return 0;
}

int dnsmsg_question(const uint8_t *msg, size_t len, bool query, struct dnsmsg_question *ret) {
        size_t off = HEADER_LEN;

        if (len < HEADER_LEN || get16(msg + 4) != 1)
                return -EBADMSG;
        /* QR, and for a query the opcode (0: QUERY): no updates, notifies or status. */
        if (query ? (msg[2] & 0xf8) != 0 : !(msg[2] & 0x80))
                return -EBADMSG;
        if (read_name(msg, len, &off, ret->name) < 0 || off + 4 > len)
                return -EBADMSG;
        ret->type = get16(msg + off);
        ret->klass = get16(msg + off + 2);
        ret->end = off + 4;
        return 0;
}

size_t dnsmsg_make_error(uint8_t *msg, const struct dnsmsg_question *q, unsigned rcode) {
        msg[2] = (uint8_t) (0x80 | (msg[2] & 0x01)); /* QR, opcode 0, RD kept */
        msg[3] = (uint8_t) (0x80 | (rcode & 0x0f)); /* RA */
        memset(msg + 6, 0, 6);                         /* no answer, authority or additional */
        return q->end;
}

/* One resource record of the answer section at *off: its owner, type, class, TTL and
 * where its data lies; *off moves past it. */
struct record {
        char owner[DNSMSG_NAME_MAX + 1];
        uint16_t type, klass;
        size_t ttl_at, data, data_len;
};

static int read_record(const uint8_t *msg, size_t len, size_t *off, struct record *r) {
        if (read_name(msg, len, off, r->owner) < 0 || *off + 10 > len)
                return -EBADMSG;
        r->type = get16(msg + *off);
        r->klass = get16(msg + *off + 2);
        r->ttl_at = *off + 4;
        r->data_len = get16(msg + *off + 8);
        r->data = *off + 10;
        if (r->data + r->data_len > len)
                return -EBADMSG;
        *off = r->data + r->data_len;
        return 0;
}

struct chain {
        char names[DNSMSG_CHAIN_MAX + 1][DNSMSG_NAME_MAX + 1];
        unsigned n;
};

static bool in_chain(const struct chain *c, const char *name) {
        for (unsigned i = 0; i < c->n; i++)
                if (strcmp(c->names[i], name) == 0)
                        return true;
        return false;
}

/* One pass over the answer section: CNAMEs from the chain's names extend it (*grew says
 * so); with ret, the A records of its names are collected. */
static int scan(const uint8_t *msg, size_t len, size_t start, struct chain *c, bool *grew, struct dnsmsg_addrs *ret) {
        unsigned count = get16(msg + 6);
        size_t off = start;
        struct record r;

        for (unsigned i = 0; i < count; i++) {
                if (read_record(msg, len, &off, &r) < 0)
                        return -EBADMSG;
                if (r.klass != 1 || !in_chain(c, r.owner))
                        continue;
                if (r.type == DNS_TYPE_CNAME && !ret && c->n < DNSMSG_CHAIN_MAX + 1) {
                        size_t at = r.data;
                        if (read_name(msg, r.data + r.data_len, &at, c->names[c->n]) < 0)
                                return -EBADMSG;
                        if (!in_chain(c, c->names[c->n])) {
                                c->n++;
                                *grew = true;
                        }
                } else if (r.type == DNS_TYPE_A && ret && r.data_len == 4 && ret->n == DNSMSG_ADDRS_MAX) {
                        ret->more = true;
                } else if (r.type == DNS_TYPE_A && ret && r.data_len == 4) {
                        struct dnsmsg_addr *a = &ret->a[ret->n++];
                        memcpy(&a->addr, msg + r.data, 4);
                        a->ttl = get32(msg + r.ttl_at);
                        a->ttl_offset = r.ttl_at;
                }
        }
        return 0;
}

int dnsmsg_answer_addrs(const uint8_t *msg, size_t len, const struct dnsmsg_question *q, struct dnsmsg_addrs *ret) {
        struct dnsmsg_question got;
        struct chain c;
        bool grew = true;

        ret->n = 0;
        ret->more = false;
        if (dnsmsg_question(msg, len, false, &got) < 0 || strcmp(got.name, q->name) != 0 || got.type != q->type ||
            got.klass != q->klass)
                return -EBADMSG;
        memcpy(c.names[0], q->name, sizeof(c.names[0]));
        c.n = 1;
        /* Records may come in any order: the chain is followed to its end first. */
        for (unsigned pass = 0; grew && pass <= DNSMSG_CHAIN_MAX; pass++) {
                grew = false;
                if (scan(msg, len, got.end, &c, &grew, NULL) < 0)
                        return -EBADMSG;
        }
        if (scan(msg, len, got.end, &c, &grew, ret) < 0) {
                ret->n = 0;
                return -EBADMSG;
        }
        return 0;
}

int dnsmsg_pattern_normalize(const char *s, size_t len, char out[DNSMSG_NAME_MAX + 1]) {
        size_t i = 0, n = 0, label = 0;
        unsigned labels = 0;

        if (len > 0 && s[len - 1] == '.')
                len--;
        if (len >= 2 && s[0] == '*' && s[1] == '.') {
                out[n++] = '*';
                out[n++] = '.';
                i = 2;
        }
        if (len - i == 0 || len > 253)
                return -EINVAL;
        for (; i <= len; i++) {
                char c = i < len ? s[i] : '.';
                if (c == '.') {
                        if (label == 0 || label > 63 || out[n - 1] == '-' || out[n - label] == '-')
                                return -EINVAL;
                        labels++;
                        label = 0;
                        if (i < len)
                                out[n++] = '.';
                        continue;
                }
                if (name_char((uint8_t) c) == '?')
                        return -EINVAL;
                out[n++] = name_char((uint8_t) c);
                label++;
        }
        out[n] = 0;
        /* A top-level label is never all digits: "10.1.2" is a mistyped address, not a name. */
        return labels >= 2 && strspn(strrchr(out, '.') + 1, "0123456789") < strlen(strrchr(out, '.') + 1) ? 0 : -EINVAL;
}

bool dnsmsg_pattern_match(const char *pattern, const char *name) {
        size_t pl, nl;

        if (strncmp(pattern, "*.", 2) != 0)
                return strcmp(pattern, name) == 0;
        pattern += 1; /* ".example.com": name must end with it and have a label before */
        pl = strlen(pattern);
        nl = strlen(name);
        return nl > pl && strcmp(name + nl - pl, pattern) == 0;
}
