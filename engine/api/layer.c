/* layer.c — the receiving end of drain (issue 14): PUT /v1/internal/layers/{id} takes the
 * files of another node's paused sandbox (the framed tar archive of cluster/layer-stream.h)
 * into a layer of this node's, and DELETE drops such a copy.
 *
 * Only nodes speak here: a request must carry the cluster secret (server.c has checked it is
 * the right one) and name in its hop marker the node that owns the sandbox, and the sandbox
 * must be paused with its files only. The archive is extracted by tar into a fresh layer as
 * it arrives (its disk limit lifted meanwhile: btrfs counts a few blocks differently from
 * node to node), hashed on the way; at its end the digest the sender computed must equal
 * ours, tar must have exited 0, and the layer is synced to disk before the answer 200 — the
 * sender changes the sandbox's owner only after that answer. Any failure removes what was
 * made, so a copy is kept only when it is whole.
 */
#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/guard.h"
#include "cluster/layer-stream.h"
#include "cluster/layer-tar.h"
#include "disk/disk.h"
#include "log.h"
#include "sandbox/sandbox.h"

struct api_layer {
        struct engine *eng;
        struct sandbox_rec rec;
        bool locked, made, kept;
        struct layer_frames frames;
        EVP_MD_CTX *md;
        struct layer_tar *tar;
        int fd; /* the write end of tar's archive */
        char layer[4096];
};

/* The request is another node's, and names the sandbox's owner; rec gets the sandbox. */
static int check_peer(struct api_request *req, struct sandbox_rec *rec, struct error *e) {
        const char *hop = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_HOP_HEADER);
        int r;

        if (!req->eng->cfg.cluster_secret || !MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_SECRET_HEADER))
                return error_set(e, EACCES, ERR_FORBIDDEN,
                                 "moving a sandbox's files between nodes needs the cluster secret on every node (cluster-secret-file)");
        api_guard_authenticated(req->conn); /* a peer with the secret: the limits of a known caller */
        r = store_sandbox_get(req->eng->store, req->id, rec, e);
        if (r == -ENOENT)
                return error_set(e, ENOENT, ERR_NOT_FOUND, "sandbox %s not found", req->id);
        if (r < 0)
                return r;
        if (!hop || !streq(hop, rec->node) || streq(rec->node, req->eng->cfg.node_name)) {
                r = error_set(e, EPERM, ERR_CONFLICT, "sandbox %s is node %s's: node %.63s cannot move it here", req->id, rec->node,
                              hop ? hop : "(none)");
                sandbox_rec_done(rec);
                return r;
        }
        return 0;
}

void api_layer_free(struct api_layer *l) {
        struct error ignored = {0};

        if (!l)
                return;
        if (l->fd >= 0)
                close(l->fd);
        if (l->tar)
                (void) layer_tar_finish(l->tar, &ignored);
        EVP_MD_CTX_free(l->md);
        if (l->made && !l->kept) {
                log_info("drain: dropped the incomplete copy of %s's files", l->rec.id);
                sandbox_teardown(l->eng, l->rec.id, NULL);
        }
        if (l->locked)
                sandbox_unlock(l->eng, l->rec.id);
        sandbox_rec_done(&l->rec);
        free(l);
}

/* A fresh layer for the sandbox, its limit lifted, and tar extracting into its upper dir. */
static int prepare(struct api_layer *l, struct error *e) {
        char upper[4200];
        int r;

        r = sandbox_layer_dir(l->eng, &l->rec, l->layer, sizeof(l->layer), e);
        if (r < 0)
                return r;
        sandbox_teardown(l->eng, l->rec.id, NULL); /* what an earlier try left */
        l->made = true;
        r = sandbox_make_dirs(l->eng, &l->rec, e);
        if (r < 0)
                return r;
        if (l->rec.disk_mb > 0 && (r = disk_layer_limit(l->eng->disk, l->rec.id, 0, e)) < 0)
                return r;
        snprintf(upper, sizeof(upper), "%s/upper", l->layer);
        return layer_tar_start(upper, true, &l->tar, &l->fd, e);
}

int api_layer_begin(struct api_request *req, struct api_layer **ret, struct error *e) {
        struct api_layer *l;
        int r;

        *ret = NULL;
        l = calloc(1, sizeof(*l));
        if (!l)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        l->eng = req->eng;
        l->fd = -1;
        r = check_peer(req, &l->rec, e);
        if (r < 0) {
                free(l);
                return r;
        }
        sandbox_lock(l->eng, l->rec.id);
        l->locked = true;
        if (l->rec.state != SANDBOX_PAUSED || l->rec.pause_kind != PAUSE_FILESYSTEM) {
                r = error_set(e, EBUSY, ERR_CONFLICT, "sandbox %s is %s: only a sandbox paused with its files only moves", l->rec.id,
                              sandbox_state_to_string(l->rec.state));
                goto fail;
        }
        l->md = EVP_MD_CTX_new();
        if (!l->md || EVP_DigestInit_ex(l->md, EVP_sha256(), NULL) != 1) {
                r = error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
                goto fail;
        }
        r = prepare(l, e);
        if (r < 0)
                goto fail;
        *ret = l;
        return 0;
fail:
        api_layer_free(l);
        return r;
}

static int write_all(int fd, const uint8_t *p, size_t n, struct error *e) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return error_set(e, errno, ERR_INTERNAL, "tar stopped taking the archive: %s", strerror(errno));
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* tar stopped reading before the archive's end: its own message says why. */
static int tar_ended(struct api_layer *l, int r, struct error *e) {
        struct error why = {0};

        close(l->fd);
        l->fd = -1;
        if (layer_tar_finish(l->tar, &why) < 0)
                *e = why;
        l->tar = NULL;
        return r;
}

int api_layer_data(struct api_layer *l, const char *data, size_t len, struct error *e) {
        const uint8_t *in = (const uint8_t *) data;

        while (len > 0) {
                const uint8_t *d;
                size_t used, dlen;
                int r = layer_frames_decode(&l->frames, in, len, &used, &d, &dlen);

                if (r < 0)
                        return error_set(e, EBADMSG, ERR_BAD_REQUEST, "the files' stream is malformed after %llu bytes",
                                         (unsigned long long) l->frames.total);
                if (dlen > 0) {
                        if (EVP_DigestUpdate(l->md, d, dlen) != 1)
                                return error_set(e, EIO, ERR_INTERNAL, "cannot compute SHA-256");
                        if ((r = write_all(l->fd, d, dlen, e)) < 0)
                                return tar_ended(l, r, e);
                }
                in += used;
                len -= used;
        }
        return 0;
}

/* Syncs the file system of the layer: the answer 200 promises the files are on disk. */
static int sync_layer(const char *dir, struct error *e) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

        if (fd < 0)
                return error_set(e, errno, ERR_INTERNAL, "cannot open %s: %s", dir, strerror(errno));
        if (syncfs(fd) < 0)
                r = error_set(e, errno, ERR_INTERNAL, "cannot sync %s: %s", dir, strerror(errno));
        close(fd);
        return r;
}

static int finish(struct api_layer *l, uint8_t digest[32], struct error *e) {
        unsigned dlen = 0;
        int r;

        if (l->frames.state != LAYER_FRAMES_DONE)
                return error_set(e, EBADMSG, ERR_BAD_REQUEST,
                                 "the files' stream ended early (after %llu bytes, without its digest): nothing kept",
                                 (unsigned long long) l->frames.total);
        close(l->fd); /* the archive ends: tar finishes */
        l->fd = -1;
        /* The digest first: a damaged archive is said to be damaged, whatever tar made of it. */
        if (EVP_DigestFinal_ex(l->md, digest, &dlen) != 1)
                return error_set(e, EIO, ERR_INTERNAL, "cannot compute SHA-256");
        if (CRYPTO_memcmp(digest, l->frames.digest, LAYER_DIGEST_LEN) != 0)
                return error_set(e, EBADMSG, ERR_BAD_REQUEST,
                                 "the SHA-256 of the %llu bytes received is not the sender's: nothing kept",
                                 (unsigned long long) l->frames.total);
        r = layer_tar_finish(l->tar, e);
        l->tar = NULL;
        if (r < 0)
                return r;
        if (l->rec.disk_mb > 0 && (r = disk_layer_limit(l->eng->disk, l->rec.id, l->rec.disk_mb, e)) < 0)
                return r;
        return sync_layer(l->layer, e);
}

int api_layer_end(struct api_layer *l, struct api_response *resp, struct error *e) {
        uint8_t digest[32];
        char hex[65];
        int r = finish(l, digest, e);

        if (r < 0)
                return r;
        for (unsigned i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", digest[i]);
        l->kept = true;
        log_info("drain: took the files of %s from node %s (%llu bytes of archive, SHA-256 %s)", l->rec.id, l->rec.node,
                 (unsigned long long) l->frames.total, hex);
        resp->status = 200;
        resp->body = json_pack("{s:s,s:I,s:s}", "id", l->rec.id, "bytes", (json_int_t) l->frames.total, "sha256", hex);
        return resp->body ? 0 : error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
}

int api_layer_remove(struct api_request *req, struct api_response *resp, struct error *e) {
        struct sandbox_rec rec;
        int r = check_peer(req, &rec, e);

        if (r < 0)
                return r;
        sandbox_lock(req->eng, rec.id);
        sandbox_teardown(req->eng, rec.id, NULL);
        sandbox_unlock(req->eng, rec.id);
        log_info("drain: dropped the copy of %s's files at node %s's request", rec.id, rec.node);
        sandbox_rec_done(&rec);
        resp->status = 200;
        resp->body = json_pack("{s:b}", "removed", 1);
        return resp->body ? 0 : error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
}

int api_layer_resume(struct api_request *req, struct api_response *resp, struct error *e) {
        const char *hop = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_HOP_HEADER);
        struct sandbox_rec rec;
        int r;

        if (!req->eng->cfg.cluster_secret || !MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, RELAY_SECRET_HEADER) ||
            !hop)
                return error_set(e, EACCES, ERR_FORBIDDEN,
                                 "moving a sandbox between nodes needs the cluster secret on every node (cluster-secret-file)");
        api_guard_authenticated(req->conn);
        r = store_sandbox_get(req->eng->store, req->id, &rec, e);
        if (r == -ENOENT)
                return error_set(e, ENOENT, ERR_NOT_FOUND, "sandbox %s not found", req->id);
        if (r < 0)
                return r;
        if (!streq(rec.node, req->eng->cfg.node_name)) {
                r = error_set(e, EPERM, ERR_CONFLICT, "sandbox %s is node %s's, not this node's (%s)", req->id, rec.node,
                              req->eng->cfg.node_name);
                sandbox_rec_done(&rec);
                return r;
        }
        int64_t team = rec.team_id;
        sandbox_rec_done(&rec);
        r = sandbox_resume(req->eng, team, req->id, 0, &rec, e);
        if (r < 0)
                return r;
        log_info("drain: resumed %s, moved here running by node %.63s", req->id, hop);
        resp->status = 200;
        resp->body = json_pack("{s:s}", "status", sandbox_state_to_string(rec.state));
        sandbox_rec_done(&rec);
        return resp->body ? 0 : error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
}

int api_layer_streamed(struct api_request *req, struct api_response *resp, struct error *e) {
        return error_set(e, EINVAL, ERR_INTERNAL, "%s %s streams its body (server.c): not a buffered route", req->method, req->url);
}
