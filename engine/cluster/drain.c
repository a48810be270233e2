/* drain.c — see drain.h. One sandbox at a time, under its lock (a resume or kill that comes
 * meanwhile waits for the move, then finds the sandbox another node's and is answered so):
 *
 *   0. (evacuating only) a running sandbox is paused first, its filesystem only, and noted
 *      as this node's doing;
 *
 *   1. the target: placement's best node (cluster/placement.h), never this one;
 *   2. tar archives the upper dir (cluster/layer-tar.h) and the archive streams, framed and
 *      followed by its SHA-256 (cluster/layer-stream.h), in PUT /v1/internal/layers/{id} to
 *      the target, with the cluster secret; the target extracts it into a layer of its own,
 *      checks the digest, syncs it to disk and answers 200 (api/layer.c);
 *   3. only then the row changes owner (store_sandbox_move, guarded: still paused, still
 *      this node's);
 *   4. and this node removes its copy.
 *
 *   5. (a sandbox noted at 0) the target, now its owner, is asked to resume it (POST
 *      /v1/internal/layers/{id}/resume).
 *
 * A failure at 2 leaves the row and this node's copy as they were (the target removes what it
 * took); at 3, this node asks the target to drop its copy (DELETE on the same path), and
 * keeps its own. The sandbox is tried again at the next pass; one paused at 0 stays paused
 * here meanwhile, never lost. A failure at 5 leaves it paused on the target (logged; any
 * resume through the API starts it there). The notes of 0 are in memory: after a restart of
 * this node, a sandbox it paused is still moved, and stays paused.
 */
#include "cluster/drain.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cluster/layer-stream.h"
#include "cluster/layer-tar.h"
#include "cluster/node.h"
#include "cluster/placement.h"
#include "id.h"
#include "log.h"
#include "sandbox/agent_stream.h"
#include "sandbox/sandbox.h"
#include "strv.h"
#include "timeutil.h"

#define CONNECT_TIMEOUT_MS 3000
/* The target extracts and syncs before it answers: up to a minute past the last byte. */
#define ANSWER_TIMEOUT_MS (10 * 60 * 1000)
#define FRAME (256 * 1024)
#define PASS_EVERY_MS 2000

/* The headers of a request to another node: the hop marker and the cluster secret. */
static int peer_headers(const struct engine *eng, struct buf *b) {
        int r;

        buf_init(b, 8192);
        r = buf_printf(b, "X-Ai2in-Forwarded-By: %s\r\n", eng->cfg.node_name);
        if (r >= 0 && eng->cfg.cluster_secret)
                r = buf_printf(b, "X-Ai2in-Cluster-Secret: %s\r\n", eng->cfg.cluster_secret);
        return r;
}

static int open_to(const struct engine *eng, const struct node_rec *to, const char *method, const char *id, int64_t body_len,
                   struct agent_stream **ret, struct error *e) {
        _cleanup_buf_ struct buf headers = {0};
        char target[128], peer[300];

        if (peer_headers(eng, &headers) < 0)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        snprintf(target, sizeof(target), "/v1/internal/layers/%s", id);
        snprintf(peer, sizeof(peer), "node %s (%s)", to->name, to->advertise);
        const struct agent_stream_request q = {
                .method = method,
                .target = target,
                .extra_headers = headers.data,
                .content_type = body_len != 0 ? LAYER_CONTENT_TYPE : NULL,
                .body_len = body_len,
        };
        return node_stream_open(eng, to, peer, CONNECT_TIMEOUT_MS, &q, -1, ret, e);
}

/* Reads the answer's head; an answer other than 200 becomes an error with its message. */
static int answer_ok(struct agent_stream *s, const char *to, struct error *e) {
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        int r = agent_stream_finish(s, ANSWER_TIMEOUT_MS, e);

        if (r < 0)
                return r;
        if (agent_stream_status(s) == 200)
                return 0;
        (void) agent_stream_read_all(s, 4096, &body, &len);
        return error_set(e, EIO, ERR_NODE, "node %s refused the files (HTTP %d): %.600s", to, agent_stream_status(s),
                         body ? body : "");
}

/* Streams the archive from fd, framed; its SHA-256 into digest. */
static int send_frames(struct engine *eng, int fd, struct agent_stream *s, uint64_t *ret_bytes, uint8_t digest[32],
                       struct error *e) {
        _cleanup_free_ uint8_t *frame = malloc(4 + FRAME);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        uint64_t total = 0;
        unsigned dlen = 0;
        int r = 0;

        if (!frame || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(md);
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        }
        for (;;) {
                ssize_t n = read(fd, frame + 4, FRAME);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = error_set(e, errno, ERR_INTERNAL, "cannot read the archive from tar: %s", strerror(errno));
                        break;
                }
                if (n == 0)
                        break;
                if (eng->stopping) {
                        r = error_set(e, ECANCELED, ERR_UNAVAILABLE, "the engine is stopping");
                        break;
                }
                layer_frame_head((uint32_t) n, frame);
                if (EVP_DigestUpdate(md, frame + 4, (size_t) n) != 1) {
                        r = error_set(e, EIO, ERR_INTERNAL, "cannot compute SHA-256");
                        break;
                }
                total += (uint64_t) n;
                r = agent_stream_send(s, frame, 4 + (size_t) n, e);
                if (r < 0)
                        break;
        }
        if (r >= 0 && EVP_DigestFinal_ex(md, digest, &dlen) != 1)
                r = error_set(e, EIO, ERR_INTERNAL, "cannot compute SHA-256");
        EVP_MD_CTX_free(md);
        *ret_bytes = total;
        return r;
}

/* Step 2: the files to node to, which answers once it holds them, verified. The end frame
 * and the digest go only once tar has ended well: a failed archive ends the body without
 * them, and the target drops what it took. */
static int send_layer(struct engine *eng, const struct sandbox_rec *rec, const struct node_rec *to, uint64_t *ret_bytes,
                      struct error *e) {
        _cleanup_(agent_stream_freep) struct agent_stream *s = NULL;
        struct layer_tar *tar = NULL;
        struct error tar_e = {0};
        char layer[4096], upper[4200];
        uint8_t digest[32], end[4 + LAYER_DIGEST_LEN];
        int fd = -1, r, rt;

        r = sandbox_layer_dir(eng, rec, layer, sizeof(layer), e);
        if (r < 0)
                return r;
        snprintf(upper, sizeof(upper), "%s/upper", layer);
        r = open_to(eng, to, "PUT", rec->id, -1, &s, e);
        if (r < 0)
                return r;
        r = layer_tar_start(upper, false, &tar, &fd, e);
        if (r < 0)
                return r;
        r = send_frames(eng, fd, s, ret_bytes, digest, e);
        close(fd); /* tar, if it still writes, ends on EPIPE */
        rt = layer_tar_finish(tar, &tar_e);
        if (r < 0)
                return r;
        if (rt < 0) {
                *e = tar_e;
                return rt;
        }
        layer_frame_head(0, end);
        memcpy(end + 4, digest, LAYER_DIGEST_LEN);
        r = agent_stream_send(s, end, sizeof(end), e);
        if (r < 0)
                return r;
        return answer_ok(s, to->name, e);
}

/* Asks node to to drop the copy it took (the move could not be recorded). */
static void drop_remote(struct engine *eng, const struct node_rec *to, const char *id) {
        _cleanup_(agent_stream_freep) struct agent_stream *s = NULL;
        struct error e = {0};

        if (open_to(eng, to, "DELETE", id, 0, &s, &e) < 0 || answer_ok(s, to->name, &e) < 0)
                log_warn("drain: node %s keeps a copy of the files of %s (%s): the next move of it there replaces it, ignoring",
                         to->name, id, e.message);
}

/* The best node to move to: placement's first choice that is not this node. */
static int pick_target(struct engine *eng, struct node_rec *ret, struct error *e) {
        struct node_rec c[PLACEMENT_CHOICES];
        unsigned n = 0;
        int r = placement_choose(eng, c, &n, e);

        if (r < 0)
                return r;
        for (unsigned i = 0; i < n; i++)
                if (!streq(c[i].name, eng->cfg.node_name)) {
                        *ret = c[i];
                        return 0;
                }
        return error_set(e, EAGAIN, ERR_UNAVAILABLE, "no active node with room to move to");
}

/* Step 5: asks node to, which now owns id, to resume it. */
static void resume_remote(struct engine *eng, const struct node_rec *to, const char *id) {
        _cleanup_(agent_stream_freep) struct agent_stream *s = NULL;
        struct error e = {0};
        char target[128];

        snprintf(target, sizeof(target), "%s/resume", id);
        if (open_to(eng, to, "POST", target, 0, &s, &e) < 0 || answer_ok(s, to->name, &e) < 0) {
                log_warn("drain: moved %s to node %s, which did not resume it: %s; it stays paused there", id, to->name,
                         e.message);
                return;
        }
        log_info("drain: %s runs again, on node %s", id, to->name);
}

/* Moves one sandbox, under its lock; *ret_to gets where. */
static int move_locked(struct engine *eng, struct sandbox_rec *rec, struct node_rec *ret_to, struct error *e) {
        struct node_rec to;
        uint64_t bytes = 0;
        int64_t t0 = mono_ms();
        int r;

        if (!streq(rec->node, eng->cfg.node_name) || rec->state != SANDBOX_PAUSED || rec->pause_kind != PAUSE_FILESYSTEM)
                return 0; /* resumed, killed or moved meanwhile */
        r = pick_target(eng, &to, e);
        if (r >= 0)
                r = send_layer(eng, rec, &to, &bytes, e);
        if (r < 0)
                return error_wrap(e, "cannot move the files of %s", rec->id);
        r = store_sandbox_move(eng->store, rec->id, eng->cfg.node_name, to.name, e);
        if (r < 0) {
                drop_remote(eng, &to, rec->id);
                return error_wrap(e, "cannot record that %s moved to node %s", rec->id, to.name);
        }
        sandbox_teardown(eng, rec->id, NULL);
        log_info("drain: moved %s to node %s (%llu bytes of archive, SHA-256 checked there) in %lld ms", rec->id, to.name,
                 (unsigned long long) bytes, (long long) (mono_ms() - t0));
        *ret_to = to;
        return 1;
}

struct next {
        char id[SANDBOX_ID_LEN + 1];
        int64_t team_id;
        int64_t after; /* seq: those before were tried in this pass */
};

/* Index of id in v, or -1. */
static ssize_t find(const struct strv *v, const char *id) {
        for (size_t i = 0; i < v->n; i++)
                if (streq(v->v[i], id))
                        return (ssize_t) i;
        return -1;
}

/* Takes id out of v (if there): whether it was. */
static bool take(struct strv *v, const char *id) {
        ssize_t i = find(v, id);

        if (i < 0)
                return false;
        free(v->v[i]);
        v->v[i] = v->v[--v->n];
        v->v[v->n] = NULL;
        return true;
}

static int first_any(void *data, const struct sandbox_rec *r) {
        struct next *n = data;

        snprintf(n->id, sizeof(n->id), "%s", r->id);
        n->team_id = r->team_id;
        n->after = r->seq;
        return 1;
}

/* Step 0: pauses this node's running sandboxes (filesystem only), noting each in paused. */
static void pause_running(struct engine *eng, struct strv *paused) {
        struct next n = {.after = 0};
        struct error e = {0};

        while (!eng->stopping) {
                struct sandbox_filter f = {.team_id = -1, .state_mask = 1u << SANDBOX_RUNNING, .node = eng->cfg.node_name,
                                           .after_seq = n.after};
                struct sandbox_rec rec;

                n.id[0] = 0;
                if (store_sandbox_foreach(eng->store, &f, first_any, &n, &e) < 0) {
                        log_warn("drain: %s", e.message);
                        return;
                }
                if (!n.id[0])
                        return;
                if (find(paused, n.id) < 0 && strv_push(paused, strdup(n.id)) < 0) {
                        log_warn("drain: out of memory: %s keeps running here, tried again at the next pass", n.id);
                        return;
                }
                if (sandbox_pause(eng, n.team_id, n.id, false, &rec, &e) < 0) {
                        log_warn("drain: cannot pause %s to move it: %s; it keeps running here, tried again at the next pass",
                                 n.id, e.message);
                        take(paused, n.id);
                } else {
                        log_info("drain: paused %s (running) to move it", n.id);
                        sandbox_rec_done(&rec);
                }
                error_clear(&e);
        }
}

static int first_movable(void *data, const struct sandbox_rec *r) {
        struct next *n = data;

        if (r->pause_kind != PAUSE_FILESYSTEM)
                return 0;
        snprintf(n->id, sizeof(n->id), "%s", r->id);
        n->after = r->seq;
        return 1;
}

/* One pass over this node's paused sandboxes; a failure is logged and the next one tried.
 * Those in paused (step 0) are resumed on their target once moved. */
static void drain_pass(struct engine *eng, struct strv *paused) {
        struct next n = {.after = 0};
        struct error e = {0};

        while (!eng->stopping) {
                struct sandbox_filter f = {.team_id = -1, .state_mask = 1u << SANDBOX_PAUSED, .node = eng->cfg.node_name,
                                           .after_seq = n.after};
                struct sandbox_rec rec;

                n.id[0] = 0;
                if (store_sandbox_foreach(eng->store, &f, first_movable, &n, &e) < 0) {
                        log_warn("drain: %s", e.message);
                        return;
                }
                if (!n.id[0])
                        return;
                struct node_rec to;
                int moved = 0;
                sandbox_lock(eng, n.id);
                if (store_sandbox_get(eng->store, n.id, &rec, &e) >= 0) {
                        moved = move_locked(eng, &rec, &to, &e);
                        if (moved < 0)
                                log_warn("drain: %s; tried again at the next pass", e.message);
                        sandbox_rec_done(&rec);
                }
                sandbox_unlock(eng, n.id);
                /* Outside its lock: the target resumes it under its own. */
                if (moved > 0 && take(paused, n.id))
                        resume_remote(eng, &to, n.id);
                error_clear(&e);
        }
}

/* This node's state (NODE_ACTIVE when it cannot be read: nothing moves then). */
static enum node_state own_state(struct engine *eng) {
        struct node_rec self;
        struct error e = {0};

        return store_node_get(eng->store, eng->cfg.node_name, &self, &e) >= 0 ? self.state : NODE_ACTIVE;
}

static void *drain_main(void *arg) {
        struct engine *eng = arg;
        struct strv paused = {0}; /* running sandboxes this node paused to move (step 0) */

        while (!eng->stopping) {
                struct timespec ts = {.tv_sec = PASS_EVERY_MS / 1000, .tv_nsec = PASS_EVERY_MS % 1000 * 1000000L};
                enum node_state st = own_state(eng);
                if (st == NODE_EVACUATING)
                        pause_running(eng, &paused);
                if (st == NODE_DRAINING || st == NODE_EVACUATING)
                        drain_pass(eng, &paused);
                nanosleep(&ts, NULL);
        }
        strv_done(&paused);
        return NULL;
}

int drain_start(struct engine *eng, struct error *e) {
        int r = pthread_create(&eng->drainer, NULL, drain_main, eng);

        if (r != 0)
                return error_set(e, r, ERR_INTERNAL, "cannot start the drain thread: %s", strerror(r));
        eng->drainer_started = true;
        return 0;
}

void drain_stop(struct engine *eng) {
        if (!eng->drainer_started)
                return;
        eng->stopping = true;
        pthread_join(eng->drainer, NULL);
        eng->drainer_started = false;
}
