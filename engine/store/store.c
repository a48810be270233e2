/* store.c — the store's front (store.h): picks a backend at open, dispatches every call to
 * its vtable (backend.h), and holds what both backends share: the names of states and pause
 * kinds, the cap's message, and the masking of a database URL's password. */
#include "store/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[_SANDBOX_STATE_MAX] = {
        [SANDBOX_CREATING] = "creating", [SANDBOX_RUNNING] = "running", [SANDBOX_PAUSED] = "paused",
        [SANDBOX_KILLED] = "killed",     [SANDBOX_ERROR] = "error",     [SANDBOX_PAUSING] = "pausing",
        [SANDBOX_RESUMING] = "resuming",
};

static const char *const node_state_names[_NODE_STATE_MAX] = {
        [NODE_ACTIVE] = "active", [NODE_CORDONED] = "cordoned", [NODE_DRAINING] = "draining",
        [NODE_EVACUATING] = "evacuating"};

const char *node_state_to_string(enum node_state s) {
        return s < _NODE_STATE_MAX ? node_state_names[s] : "unknown";
}

int node_state_from_string(const char *s, enum node_state *ret) {
        for (int i = 0; i < _NODE_STATE_MAX; i++)
                if (s && streq(s, node_state_names[i])) {
                        *ret = (enum node_state) i;
                        return 0;
                }
        return -EINVAL;
}

/* As stored in the pause_kind column ('' for none). The running cap counts 'memory' only
 * (backend.h). */
static const char *const pause_kind_names[_PAUSE_KIND_MAX] = {
        [PAUSE_NONE] = "", [PAUSE_FILESYSTEM] = "filesystem", [PAUSE_MEMORY] = "memory", [PAUSE_CHECKPOINT] = "checkpoint"};

const char *pause_kind_to_string(enum pause_kind k) {
        if (k == PAUSE_CHECKPOINT)
                return "memory";
        return k > PAUSE_NONE && k < _PAUSE_KIND_MAX ? pause_kind_names[k] : NULL;
}

const char *store_pause_kind_column(enum pause_kind k) {
        return k < _PAUSE_KIND_MAX ? pause_kind_names[k] : "";
}

enum pause_kind store_pause_kind_from_column(const char *s) {
        for (int i = 0; i < _PAUSE_KIND_MAX; i++)
                if (s && streq(s, pause_kind_names[i]))
                        return (enum pause_kind) i;
        return PAUSE_NONE;
}

const char *sandbox_state_to_string(enum sandbox_state s) {
        return s < _SANDBOX_STATE_MAX ? state_names[s] : "unknown";
}

int sandbox_state_from_string(const char *s, enum sandbox_state *ret) {
        for (int i = 0; i < _SANDBOX_STATE_MAX; i++)
                if (s && streq(s, state_names[i])) {
                        *ret = (enum sandbox_state) i;
                        return 0;
                }
        return -EINVAL;
}

void sandbox_rec_done(struct sandbox_rec *r) {
        free(r->metadata);
        free(r->envs);
        free(r->network_rules);
        r->metadata = r->envs = r->network_rules = NULL;
}

int store_cap_error(struct error *e, int64_t running, int64_t max_running) {
        return error_set(e, EUSERS, ERR_LIMIT, "the team already has %lld running sandboxes, the cap is %lld: kill or pause one first",
                         (long long) running, (long long) max_running);
}

bool store_database_is_postgres(const char *database) {
        return database && (strncmp(database, "postgres://", 11) == 0 || strncmp(database, "postgresql://", 13) == 0);
}

/* Appends src[0..n) to out (of size cap, at *len), truncating. */
static void put(char *out, size_t cap, size_t *len, const char *src, size_t n) {
        while (n-- > 0 && *len + 1 < cap)
                out[(*len)++] = *src++;
        out[*len] = 0;
}

void store_database_mask(const char *database, char *out, size_t n) {
        const char *p = database ? database : "", *scheme = strstr(p, "://"), *auth_end, *at = NULL;
        size_t len = 0;

        if (n == 0)
                return;
        out[0] = 0;
        if (scheme) {
                /* userinfo is what precedes the authority's last '@' (a password's own '@' is
                 * percent-encoded in a valid URI; a stray one only widens what is hidden). */
                const char *auth = scheme + 3;
                auth_end = auth + strcspn(auth, "/?#");
                for (const char *q = auth; q < auth_end; q++)
                        if (*q == '@')
                                at = q;
                const char *colon = at ? memchr(auth, ':', (size_t) (at - auth)) : NULL;
                if (colon) {
                        put(out, n, &len, p, (size_t) (colon + 1 - p));
                        put(out, n, &len, "***", 3);
                        p = at;
                }
        }
        /* password=… anywhere after (a URI's query, or key=value connection strings). */
        for (;;) {
                const char *pw = strstr(p, "password=");
                if (!pw) {
                        put(out, n, &len, p, strlen(p));
                        return;
                }
                pw += strlen("password=");
                put(out, n, &len, p, (size_t) (pw - p));
                put(out, n, &len, "***", 3);
                p = pw + strcspn(pw, "& ");
        }
}

int store_open(const char *database, const char *state_dir, struct store **ret, struct error *e) {
        char path[4200];

        if (store_database_is_postgres(database))
                return store_postgres_open(database, ret, e);
        if (database && *database) {
                char masked[512];
                store_database_mask(database, masked, sizeof(masked));
                return error_set(e, EINVAL, ERR_BAD_REQUEST,
                                 "database '%s' is not supported: leave it unset for SQLite in the state directory,"
                                 " or give a postgres:// or postgresql:// URL",
                                 masked);
        }
        if ((size_t) snprintf(path, sizeof(path), "%s/state.db", state_dir) >= sizeof(path))
                return error_set(e, ENAMETOOLONG, ERR_BAD_REQUEST, "state directory path too long");
        return store_sqlite_open(path, ret, e);
}

void store_close(struct store *s) {
        if (s)
                s->ops->close(s);
}

int store_team_ensure(struct store *s, const char *name, int64_t *ret_id, struct error *e) {
        return s->ops->team_ensure(s, name, ret_id, e);
}

int store_key_insert(struct store *s, const char *key_id, const unsigned char hash[32], int64_t team_id, struct error *e) {
        return s->ops->key_insert(s, key_id, hash, team_id, e);
}

int store_key_lookup(struct store *s, const char *key_id, unsigned char ret_hash[32], int64_t *ret_team, struct error *e) {
        return s->ops->key_lookup(s, key_id, ret_hash, ret_team, e);
}

int store_key_revoke(struct store *s, const char *key_id, struct error *e) {
        return s->ops->key_revoke(s, key_id, e);
}

int store_key_foreach(struct store *s, void (*fn)(void *, const char *, const char *, int64_t, bool), void *data, struct error *e) {
        return s->ops->key_foreach(s, fn, data, e);
}

int store_sandbox_insert(struct store *s, struct sandbox_rec *r, int64_t max_running, struct error *e) {
        return s->ops->sandbox_insert(s, r, max_running, e);
}

int store_sandbox_get(struct store *s, const char *id, struct sandbox_rec *ret, struct error *e) {
        return s->ops->sandbox_get(s, id, ret, e);
}

int store_sandbox_update(struct store *s, const struct sandbox_rec *r, struct error *e) {
        return s->ops->sandbox_update(s, r, e);
}

int store_sandbox_update_capped(struct store *s, const struct sandbox_rec *r, int64_t max_running, struct error *e) {
        return s->ops->sandbox_update_capped(s, r, max_running, e);
}

int store_sandbox_touch(struct store *s, const char *id, int64_t at, struct error *e) {
        return s->ops->sandbox_touch(s, id, at, e);
}

int store_sandbox_delete(struct store *s, const char *id, struct error *e) {
        return s->ops->sandbox_delete(s, id, e);
}

int store_sandbox_foreach(struct store *s, const struct sandbox_filter *f, int (*fn)(void *, const struct sandbox_rec *), void *data,
                          struct error *e) {
        return s->ops->sandbox_foreach(s, f, fn, data, e);
}

int store_sandbox_expired(struct store *s, const char *node, int64_t now, char ***ret, unsigned *ret_n, struct error *e) {
        return s->ops->sandbox_expired(s, node, now, ret, ret_n, e);
}

int store_template_users(struct store *s, int (*fn)(void *, const char *, const char *, int64_t), void *data, struct error *e) {
        return s->ops->template_users(s, fn, data, e);
}

int store_sandbox_purge(struct store *s, int64_t killed_before, struct error *e) {
        return s->ops->sandbox_purge(s, killed_before, e);
}

int store_node_register(struct store *s, const struct node_rec *n, int64_t *ret_adopted, struct error *e) {
        return s->ops->node_register(s, n, ret_adopted, e);
}

int store_node_renew(struct store *s, const char *name, int64_t now, int64_t lease_until, struct error *e) {
        return s->ops->node_renew(s, name, now, lease_until, e);
}

int store_node_get(struct store *s, const char *name, struct node_rec *ret, struct error *e) {
        return s->ops->node_get(s, name, ret, e);
}

int store_node_foreach(struct store *s, int (*fn)(void *, const struct node_rec *), void *data, struct error *e) {
        return s->ops->node_foreach(s, fn, data, e);
}

int store_node_set_state(struct store *s, const char *name, enum node_state state, struct error *e) {
        return s->ops->node_set_state(s, name, state, e);
}

int store_nodes_mark_lost(struct store *s, const char *self, int64_t now, int64_t *ret_n, struct error *e) {
        return s->ops->nodes_mark_lost(s, self, now, ret_n, e);
}

int store_sandbox_move(struct store *s, const char *id, const char *from, const char *to, struct error *e) {
        return s->ops->sandbox_move(s, id, from, to, e);
}
