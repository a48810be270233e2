/* sandboxes.c — the /v1/sandboxes routes: validation of what users send, and the JSON form
 * of a sandbox. Every check answers with a message that names the field and the rule. */
#include "api/api.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/placement.h"
#include "log.h"
#include "net/dnsmsg.h"
#include "net/net.h"
#include "sandbox/sandbox.h"
#include "timeutil.h"

#define MAX_METADATA 64
#define MAX_ENVS 256
#define LIST_DEFAULT 100
#define LIST_MAX 1000

static json_t *time_or_null(int64_t ms) {
        char s[RFC3339_LEN + 1];

        if (ms <= 0)
                return json_null();
        format_rfc3339(ms, s);
        return json_string(s);
}

/* Where this engine's preview URLs live, for the SDKs' get_host / get_url; null without a
 * preview proxy. */
static json_t *preview_json(const struct config *cfg) {
        if (!cfg || streq(cfg->preview_listen, "off") || !*cfg->preview_listen)
                return json_null();
        return json_pack("{s:s, s:s}", "scheme", cfg->preview_scheme, "domain", cfg->preview_domain);
}

/* What a sandbox may reach: allow_internet_access and its own lists (empty when none). */
static json_t *network_json(const struct sandbox_rec *r) {
        json_t *rules = r->network_rules && *r->network_rules ? json_loads(r->network_rules, 0, NULL) : NULL;
        json_t *allow = json_object_get(rules, "allow_out"), *deny = json_object_get(rules, "deny_out");
        json_t *j = json_pack("{s:b, s:o, s:o}", "allow_internet_access", r->allow_internet_access, "allow_out",
                              allow ? json_incref(allow) : json_array(), "deny_out", deny ? json_incref(deny) : json_array());

        json_decref(rules);
        return j;
}

json_t *sandbox_to_json(const struct config *cfg, const struct sandbox_rec *r) {
        json_t *meta = json_loads(r->metadata ? r->metadata : "{}", 0, NULL);
        const char *kind = r->state == SANDBOX_RUNNING ? NULL : pause_kind_to_string(r->pause_kind);
        const char *end_reason = sandbox_end_reason(r);
        json_t *j;

        j = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:f, s:I, s:o, s:o}", "id", r->id, "template",
                         r->template_name, "state", sandbox_state_to_string(r->state), "created_at", time_or_null(r->created_at),
                         "started_at", time_or_null(r->started_at), "timeout",
                         r->timeout > 0 ? json_integer(r->timeout) : json_null(), "deadline", time_or_null(r->deadline),
                         "idle_timeout", (json_int_t) r->idle_timeout, "last_activity_at", time_or_null(r->last_activity),
                         "end_at", time_or_null(sandbox_end_at(r)), "end_reason", end_reason ? json_string(end_reason) : json_null(),
                         "metadata", meta ? meta : json_object(), "cpu_count",
                         r->cpu_count, "memory_mb", (json_int_t) r->memory_mb, "error",
                         *r->error ? json_string(r->error) : json_null(), "pause_kind", kind ? json_string(kind) : json_null());
        /* The token is the owning team's to hand to its users; other teams never see the sandbox. */
        if (j && (json_object_set_new(j, "preview", preview_json(cfg)) < 0 ||
                  json_object_set_new(j, "secure", json_boolean(*r->traffic_token)) < 0 ||
                  json_object_set_new(j, "node", json_string(r->node)) < 0 ||
                  json_object_set_new(j, "runtime", json_string(*r->runtime ? r->runtime : "runc")) < 0 ||
                  json_object_set_new(j, "disk_mb", r->disk_mb > 0 ? json_integer(r->disk_mb) : json_null()) < 0 ||
                  json_object_set_new(j, "template_version", *r->template_version ? json_string(r->template_version) : json_null()) < 0 ||
                  json_object_set_new(j, "traffic_access_token", *r->traffic_token ? json_string(r->traffic_token) : json_null()) < 0 ||
                  json_object_set_new(j, "network", network_json(r)) < 0)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static int check_fields(json_t *body, const char *const *allowed, size_t n, struct error *e) {
        const char *key;
        json_t *v;

        json_object_foreach(body, key, v) {
                bool ok = false;
                for (size_t i = 0; i < n && !ok; i++)
                        ok = streq(key, allowed[i]);
                if (!ok)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "unknown field '%.64s'", key);
        }
        return 0;
}

/* The value of a JSON number; NaN for anything else. */
static double number_or_nan(json_t *v) {
        return json_is_integer(v) ? (double) json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
}

/* An integer field in lo..hi; absent or null leaves *ret alone. */
static int get_int(json_t *body, const char *name, int64_t lo, int64_t hi, const char *unit, int64_t *ret, struct error *e) {
        json_t *v = json_object_get(body, name);
        double d;

        if (!v || json_is_null(v))
                return 0;
        d = number_or_nan(v);
        if (isnan(d) || d != floor(d))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s must be a whole number of %s between %lld and %lld", name, unit,
                                 (long long) lo, (long long) hi);
        if (d < (double) lo || d > (double) hi)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s must be between %lld and %lld %s, got %.0f", name, (long long) lo,
                                 (long long) hi, unit, d);
        *ret = (int64_t) d;
        return 0;
}

/* The "timeout" field of create, set_timeout and resume: whole seconds, at least 1; a longer
 * one than SANDBOX_MAX_TIMEOUT is capped to it, not refused (the seed's "max 24h"), so the
 * answer shows the deadline that applies. Absent or null leaves *ret alone. */
static int get_timeout(json_t *body, int64_t *ret, struct error *e) {
        json_t *v = json_object_get(body, "timeout");
        double d;

        if (!v || json_is_null(v))
                return 0;
        d = number_or_nan(v);
        if (isnan(d) || d != floor(d))
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "timeout must be a whole number of seconds, at least 1 (at most %d, 24 h: longer ones are capped to it)",
                                 SANDBOX_MAX_TIMEOUT);
        if (d < 1)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "timeout must be at least 1 second, got %.0f (at most %d, 24 h: longer ones are capped to it)", d,
                                 SANDBOX_MAX_TIMEOUT);
        *ret = d > SANDBOX_MAX_TIMEOUT ? SANDBOX_MAX_TIMEOUT : (int64_t) d;
        return 0;
}

static bool env_name_valid(const char *s) {
        if (!*s || !(isalpha((unsigned char) *s) || *s == '_'))
                return false;
        for (; *s; s++)
                if (!(isalnum((unsigned char) *s) || *s == '_'))
                        return false;
        return true;
}

int api_string_map(json_t *body, const char *name, size_t max, bool env_keys, char **ret, struct error *e) {
        json_t *v = json_object_get(body, name), *val;
        const char *key;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_object(v))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s must be an object of string values", name);
        if (json_object_size(v) > max)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s has %zu entries; at most %zu are allowed", name, json_object_size(v), max);
        json_object_foreach(v, key, val) {
                if (!json_is_string(val))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s.%.64s must be a string", name, key);
                if (strlen(key) > 256 || json_string_length(val) > 32768)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s.%.64s is too long", name, key);
                if (env_keys && !env_name_valid(key))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s: '%.64s' is not a valid environment variable name", name, key);
                if (!env_keys && !*key)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s keys must not be empty", name);
        }
        *ret = json_dumps(v, JSON_COMPACT);
        return *ret ? 0 : error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
}

/* memory_mb: from 64 MiB to the engine's max-memory-mb. Past the cap the message names the
 * setting, so that the caller knows whose cap it met. Absent or null leaves *ret alone. */
static int get_memory_mb(json_t *body, int64_t max, int64_t *ret, struct error *e) {
        json_t *v = json_object_get(body, "memory_mb");

        if (json_is_number(v) && json_number_value(v) > (double) max)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "memory_mb must be at most %lld MiB on this engine (its setting max-memory-mb), got %.0f",
                                 (long long) max, json_number_value(v));
        return get_int(body, "memory_mb", 64, max, "MiB", ret, e);
}

/* disk_mb: from 16 MiB to the engine's max-disk-mb, whose name the message gives past it;
 * an engine without the disk volume has no limits to give. */
static int get_disk_mb(json_t *body, const struct config *cfg, int64_t *ret, struct error *e) {
        json_t *v = json_object_get(body, "disk_mb");
        int64_t max = cfg->max_disk_mb;

        if (!cfg->disk_volume && v && !json_is_null(v))
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "disk_mb cannot be given: this engine has no disk limits (its setting disk-volume is off)");

        if (json_is_number(v) && json_number_value(v) > (double) max)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "disk_mb must be at most %lld MiB on this engine (its setting max-disk-mb), got %.0f", (long long) max,
                                 json_number_value(v));
        return get_int(body, "disk_mb", 16, max, "MiB", ret, e);
}

#define MAX_NETWORK_RULES 64

/* One entry of a "network" list into out (normalized): an IPv4 CIDR or address, or in
 * allow_out a domain ("pypi.org", "*.githubusercontent.com": net/domains.h). A domain in
 * deny_out is refused: an address can be reached without asking for its name. */
static int network_item(json_t *item, const char *name, size_t i, json_t *out, struct error *e) {
        char cidr[20], domain[DNSMSG_NAME_MAX + 1];
        const char *s = json_is_string(item) ? json_string_value(item) : NULL;
        size_t len = s ? json_string_length(item) : 0;
        bool allow = streq(name, "allow_out");

        if (s && net_cidr_normalize(s, len, cidr) == 0)
                return json_array_append_new(out, json_string(cidr)) < 0 ? error_set(e, ENOMEM, ERR_INTERNAL, "out of memory") : 0;
        if (s && !allow && dnsmsg_pattern_normalize(s, len, domain) == 0)
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "network.deny_out[%zu] '%.64s' is a domain: deny_out takes IPv4 CIDRs only (a sandbox can reach an "
                                 "address without asking for its name); list its addresses, or allow only what it needs with allow_out",
                                 i, s);
        if (!s || !allow || dnsmsg_pattern_normalize(s, len, domain) < 0)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, allow ? "network.allow_out[%zu] must be an IPv4 CIDR such as 10.1.2.0/24 "
                                                                     "or a domain such as pypi.org or *.example.com (at most 253 "
                                                                     "characters: letters, digits, '-', '_', dots)"
                                                                   : "network.deny_out[%zu] must be an IPv4 CIDR such as 10.1.2.0/24",
                                 i);
        return json_array_append_new(out, json_string(domain)) < 0 ? error_set(e, ENOMEM, ERR_INTERNAL, "out of memory") : 0;
}

/* One list of "network" into out. */
static int network_list(json_t *network, const char *name, json_t *out, struct error *e) {
        json_t *v = json_object_get(network, name), *item;
        size_t i;
        int r;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_array(v) || json_array_size(v) > MAX_NETWORK_RULES)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "network.%s must be an array of at most %d %s", name, MAX_NETWORK_RULES,
                                 streq(name, "allow_out") ? "IPv4 CIDRs and domains" : "IPv4 CIDRs");
        json_array_foreach(v, i, item) {
                if ((r = network_item(item, name, i, out, e)) < 0)
                        return r;
        }
        return 0;
}

/* "network": {"allow_out": [CIDR or domain…], "deny_out": [CIDR…]} into *ret as compact JSON ("" when
 * both are empty). */
static int get_network(json_t *body, char **ret, struct error *e) {
        json_t *v = json_object_get(body, "network"), *allow, *deny, *rules;
        static const char *const fields[] = {"allow_out", "deny_out"};
        int r;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_object(v))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "network must be an object with allow_out and deny_out");
        r = check_fields(v, fields, ELEMENTSOF(fields), e);
        if (r < 0)
                return r;
        allow = json_array();
        deny = json_array();
        if ((r = network_list(v, "allow_out", allow, e)) < 0 || (r = network_list(v, "deny_out", deny, e)) < 0) {
                json_decref(allow);
                json_decref(deny);
                return r;
        }
        if (json_array_size(allow) == 0 && json_array_size(deny) == 0) {
                json_decref(allow);
                json_decref(deny);
                return 0;
        }
        rules = json_pack("{s:o, s:o}", "allow_out", allow, "deny_out", deny);
        *ret = rules ? json_dumps(rules, JSON_COMPACT) : NULL;
        json_decref(rules);
        return *ret ? 0 : error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
}

static int parse_create(json_t *body, const struct config *cfg, struct sandbox_create_opts *o, char **meta, char **envs,
                        char **network, struct error *e) {
        static const char *const fields[] = {"template", "timeout", "metadata", "envs", "cpu_count", "memory_mb", "disk_mb", "secure",
                                             "allow_internet_access", "network", "runtime"};
        json_t *v;
        int r;

        r = check_fields(body, fields, ELEMENTSOF(fields), e);
        if (r < 0)
                return r;
        v = json_object_get(body, "template");
        if (v && !json_is_null(v)) {
                if (!json_is_string(v))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "template must be a string");
                o->template_name = json_string_value(v);
        }
        v = json_object_get(body, "runtime");
        if (v && !json_is_null(v)) {
                if (!json_is_string(v) || !runtime_kind_of(json_string_value(v)))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "runtime must be \"runc\" or \"gvisor\"");
                o->runtime = json_string_value(v);
        }
        if ((r = get_timeout(body, &o->timeout, e)) < 0 ||
            (r = get_memory_mb(body, cfg->max_memory_mb, &o->memory_mb, e)) < 0 ||
            (r = get_disk_mb(body, cfg, &o->disk_mb, e)) < 0 ||
            (r = api_string_map(body, "metadata", MAX_METADATA, false, meta, e)) < 0 ||
            (r = api_string_map(body, "envs", MAX_ENVS, true, envs, e)) < 0 || (r = get_network(body, network, e)) < 0)
                return r;
        v = json_object_get(body, "cpu_count");
        if (v && !json_is_null(v)) {
                if (!json_is_number(v) || json_number_value(v) < 0.1 || json_number_value(v) > 64)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "cpu_count must be a number between 0.1 and 64");
                o->cpu_count = json_number_value(v);
        }
        v = json_object_get(body, "secure");
        if (v && !json_is_null(v)) {
                if (!json_is_boolean(v))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "secure must be true or false");
                o->secure = json_is_true(v);
        }
        v = json_object_get(body, "allow_internet_access");
        o->allow_internet_access = -1; /* the engine's internet-access setting */
        if (v && !json_is_null(v)) {
                if (!json_is_boolean(v))
                        return error_set(e, EINVAL, ERR_BAD_REQUEST, "allow_internet_access must be true or false");
                o->allow_internet_access = json_is_true(v);
        }
        o->metadata = *meta;
        o->envs = *envs;
        o->network_rules = *network;
        return 0;
}

/* Creates the sandbox here. */
static int create_here(struct api_request *req, const struct sandbox_create_opts *o, struct api_response *resp,
                       struct error *e) {
        struct sandbox_rec rec;
        int r;

        r = sandbox_create(req->eng, req->team_id, o, &rec, e);
        if (r < 0)
                return r;
        resp->status = 201;
        resp->body = sandbox_to_json(&req->eng->cfg, &rec);
        sandbox_rec_done(&rec);
        return 0;
}

/* Tries the nodes placement chose, best first (cluster/placement.h), then this node: a node
 * that cannot be reached or answers 5xx (full, cordoned meanwhile, failing) is passed over
 * with a warning. A refusal that every node would give (a 4xx: the team cap) is final. */
static int create_placed(struct api_request *req, const struct sandbox_create_opts *o, struct api_response *resp,
                         struct error *e) {
        struct node_rec to[PLACEMENT_CHOICES];
        struct error why = {0};
        bool tried_here = false;
        unsigned n = 0;
        int r;

        if (placement_choose(req->eng, to, &n, &why) < 0)
                log_warn("placement: cannot read the nodes: %s; creating on this node", why.message);
        for (unsigned i = 0; i < n; i++) {
                bool here = streq(to[i].name, req->eng->cfg.node_name), final = false;

                error_clear(&why);
                r = here ? create_here(req, o, resp, &why) : api_relay_create(req, &to[i], resp, &final, &why);
                if (r >= 0)
                        return 0;
                tried_here |= here;
                if ((here && why.status < 500) || final) {
                        *e = why;
                        return r;
                }
                log_warn("placement: node %s did not take a create: %s; trying %s", to[i].name, why.message,
                         i + 1 < n ? to[i + 1].name : tried_here ? "no other" : "this node");
        }
        if (!tried_here)
                return create_here(req, o, resp, e);
        *e = why;
        return -(why.err > 0 ? why.err : EIO);
}

int api_sandbox_create(struct api_request *req, struct api_response *resp, struct error *e) {
        struct sandbox_create_opts o = {0};
        _cleanup_free_ char *meta = NULL, *envs = NULL, *network = NULL;
        json_t *body;
        int r;

        r = api_body_object(req, &body, e);
        if (r < 0)
                return r;
        /* Checked here first: a bad create is refused without a hop. */
        r = parse_create(body, &req->eng->cfg, &o, &meta, &envs, &network, e);
        if (r >= 0) {
                /* A create relayed here by another node was placed there: it is this node's. */
                if (req->eng->cfg.placement_local || MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_HOP_HEADER))
                        r = create_here(req, &o, resp, e);
                else
                        r = create_placed(req, &o, resp, e);
        }
        json_decref(body);
        return r;
}

struct list_ctx {
        const struct config *cfg;
        json_t *array;
        int64_t last_seq;
        unsigned count, limit;
};

static int list_add(void *data, const struct sandbox_rec *r) {
        struct list_ctx *l = data;

        if (l->count < l->limit) {
                json_array_append_new(l->array, sandbox_to_json(l->cfg, r));
                l->last_seq = r->seq;
        }
        l->count++;
        return 0;
}

struct meta_args {
        const char *keys[32];
        const char *values[32];
        unsigned n;
        bool too_many;
};

static enum MHD_Result collect_meta(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        struct meta_args *m = cls;

        if (strncmp(key, "metadata.", 9) != 0)
                return MHD_YES;
        if (m->n >= ELEMENTSOF(m->keys)) {
                m->too_many = true;
                return MHD_NO;
        }
        m->keys[m->n] = key + 9;
        m->values[m->n++] = value ? value : "";
        return MHD_YES;
}

static int parse_states(const char *s, unsigned *mask, struct error *e) {
        char copy[256], *tok, *save = NULL;

        if (!s || !*s) {
                /* A sandbox in the middle of a pause or resume is running or paused to a user. */
                *mask = 1u << SANDBOX_RUNNING | 1u << SANDBOX_PAUSED | 1u << SANDBOX_PAUSING | 1u << SANDBOX_RESUMING;
                return 0;
        }
        snprintf(copy, sizeof(copy), "%s", s);
        *mask = 0;
        for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                enum sandbox_state st;
                if (sandbox_state_from_string(tok, &st) < 0)
                        return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                         "state '%.32s' is unknown: use running, paused, pausing, resuming, creating, error or killed",
                                         tok);
                *mask |= 1u << st;
        }
        return 0;
}

static int parse_uint(const char *s, const char *name, int64_t lo, int64_t hi, int64_t *ret, struct error *e) {
        char *end;
        long long v;

        if (!s)
                return 0;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s must be an integer between %lld and %lld", name, (long long) lo,
                                 (long long) hi);
        *ret = v;
        return 0;
}

int api_sandbox_list(struct api_request *req, struct api_response *resp, struct error *e) {
        struct meta_args m = {0};
        struct sandbox_filter f = {.team_id = req->team_id};
        struct list_ctx l = {0};
        int64_t limit = LIST_DEFAULT, after = 0;
        int r;

        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, collect_meta, &m);
        if (m.too_many)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "at most %zu metadata filters are allowed", ELEMENTSOF(m.keys));
        if ((r = parse_states(MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "state"), &f.state_mask, e)) < 0 ||
            (r = parse_uint(MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "limit"), "limit", 1, LIST_MAX, &limit, e)) < 0 ||
            (r = parse_uint(MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "next_token"), "next_token", 0, INT64_MAX,
                            &after, e)) < 0)
                return r;
        f.meta_keys = m.keys;
        f.meta_values = m.values;
        f.n_meta = m.n;
        f.after_seq = after;
        f.limit = (unsigned) limit + 1; /* one more tells whether a next page exists */
        l.cfg = &req->eng->cfg;
        l.array = json_array();
        l.limit = (unsigned) limit;
        r = store_sandbox_foreach(req->eng->store, &f, list_add, &l, e);
        if (r < 0) {
                json_decref(l.array);
                return r;
        }
        json_t *next = json_null();
        if (l.count > (unsigned) limit) {
                char tok[32];
                snprintf(tok, sizeof(tok), "%lld", (long long) l.last_seq);
                next = json_string(tok);
        }
        resp->status = 200;
        resp->body = json_pack("{s:o, s:o}", "sandboxes", l.array, "next_token", next);
        return 0;
}

int api_sandbox_get(struct api_request *req, struct api_response *resp, struct error *e) {
        struct sandbox_rec rec;
        int r = sandbox_get(req->eng, req->team_id, req->id, &rec, e);

        if (r < 0)
                return r;
        if (rec.state == SANDBOX_RUNNING)
                sandbox_touch(req->eng, req->id);
        resp->status = 200;
        resp->body = sandbox_to_json(&req->eng->cfg, &rec);
        /* What its files take now, in whole MiB rounded up (null without a limited layer). */
        if (resp->body) {
                int64_t used;
                bool here = streq(rec.node, req->eng->cfg.node_name); /* another node's files are not on this host */
                json_object_set_new(resp->body, "disk_used_mb",
                                    here && sandbox_disk_used(req->eng, &rec, &used) >= 0 ? json_integer((used + (1 << 20) - 1) >> 20)
                                                                                  : json_null());
                /* A gVisor memory pause's image on disk: a stat of its three files. */
                json_object_set_new(resp->body, "memory_image_mb",
                                    here && rec.pause_kind == PAUSE_CHECKPOINT && rec.state == SANDBOX_PAUSED
                                            ? json_integer((sandbox_image_bytes(req->eng, rec.id) + (1 << 20) - 1) >> 20)
                                            : json_null());
        }
        sandbox_rec_done(&rec);
        return 0;
}

int api_sandbox_kill(struct api_request *req, struct api_response *resp, struct error *e) {
        int r = sandbox_kill(req->eng, req->team_id, req->id, "killed through the API", e);

        if (r < 0)
                return r;
        resp->status = 200;
        resp->body = json_pack("{s:s}", "status", "killed");
        return 0;
}

int api_sandbox_timeout(struct api_request *req, struct api_response *resp, struct error *e) {
        static const char *const fields[] = {"timeout"};
        struct sandbox_rec rec;
        int64_t timeout = -1;
        json_t *body, *v;
        int r;

        r = api_body_object(req, &body, e);
        if (r < 0)
                return r;
        r = check_fields(body, fields, 1, e);
        v = json_object_get(body, "timeout");
        if (r >= 0 && (!v || json_is_null(v)))
                r = error_set(e, EINVAL, ERR_BAD_REQUEST,
                              "timeout is required (seconds from now, at least 1, at most %d: longer ones are capped to it)",
                              SANDBOX_MAX_TIMEOUT);
        if (r >= 0)
                r = get_timeout(body, &timeout, e);
        json_decref(body);
        if (r < 0)
                return r;
        r = sandbox_set_timeout(req->eng, req->team_id, req->id, timeout, &rec, e);
        if (r < 0)
                return r;
        resp->status = 200;
        resp->body = sandbox_to_json(&req->eng->cfg, &rec);
        sandbox_rec_done(&rec);
        return 0;
}

/* The optional body of pause and resume: fields among allowed, nothing else. */
static int transition_body(struct api_request *req, const char *const *allowed, size_t n, json_t **ret, struct error *e) {
        int r = api_body_object(req, ret, e);

        if (r < 0)
                return r;
        r = check_fields(*ret, allowed, n, e);
        if (r < 0)
                json_decref(*ret);
        return r;
}

int api_sandbox_pause(struct api_request *req, struct api_response *resp, struct error *e) {
        static const char *const fields[] = {"keep_memory"};
        struct sandbox_rec rec;
        json_t *body, *v;
        bool keep_memory = false;
        int r;

        r = transition_body(req, fields, ELEMENTSOF(fields), &body, e);
        if (r < 0)
                return r;
        v = json_object_get(body, "keep_memory");
        if (v && !json_is_null(v) && !json_is_boolean(v))
                r = error_set(e, EINVAL, ERR_BAD_REQUEST, "keep_memory must be true or false");
        keep_memory = json_is_true(v);
        json_decref(body);
        if (r >= 0)
                r = sandbox_pause(req->eng, req->team_id, req->id, keep_memory, &rec, e);
        if (r < 0)
                return r;
        resp->status = 200;
        resp->body = json_pack("{s:s}", "status", sandbox_state_to_string(rec.state));
        sandbox_rec_done(&rec);
        return 0;
}

int api_sandbox_resume(struct api_request *req, struct api_response *resp, struct error *e) {
        static const char *const fields[] = {"timeout"};
        struct sandbox_rec rec;
        int64_t timeout = 0;
        json_t *body;
        int r;

        r = transition_body(req, fields, ELEMENTSOF(fields), &body, e);
        if (r < 0)
                return r;
        r = get_timeout(body, &timeout, e);
        json_decref(body);
        if (r >= 0)
                r = sandbox_resume(req->eng, req->team_id, req->id, timeout, &rec, e);
        if (r < 0)
                return r;
        resp->status = 200;
        resp->body = json_pack("{s:s}", "status", sandbox_state_to_string(rec.state));
        sandbox_rec_done(&rec);
        return 0;
}
