/* template.h — root filesystems that sandboxes start from, as immutable versions.
 *
 * A template version is a directory {rootfs/,template.json}: a root file system whose files
 * are owned by the sandboxes' uid range (root inside a sandbox owns what the image's root
 * owned), built once with mmdebstrap (template.c) or imported (version.c). Sandboxes mount a
 * version's rootfs read-only as the lower layer of their overlay, so a version is never
 * changed or moved while it exists: a rebuild or an import makes a new one current, and an
 * old one is removed only once no sandbox records it (gc.c).
 *
 * Layout of the template directory T (version.c has the why):
 *   T/.versions/<name>/<version>/{rootfs,template.json}   every version, at one path for life
 *   T/<name> -> .versions/<name>/<version>                the current version: a symlink,
 *                                                         replaced with one rename(2)
 *   T/<name>/{rootfs,template.json}                       a real directory: a template built
 *                                                         before versions existed (version "",
 *                                                         shown as "legacy"); it moves to
 *                                                         T/.versions/<name>/legacy when a
 *                                                         version replaces it
 *   T/.versions/.state-dir                                the state dir whose store says which
 *                                                         versions sandboxes use (the only one
 *                                                         whose engine removes versions here)
 * T/<name>/rootfs therefore always names the current version's root, as before.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "error.h"

struct store;

/* Longest version id + 1 ("20261207T175002Z-k3f9q": a UTC time and 5 random characters). */
#define TEMPLATE_VERSION_MAX 64
/* How version "" (a template made before versions existed) is shown and where it is kept. */
#define TEMPLATE_LEGACY "legacy"

/* What the template commands need besides the template directory. */
struct template_ctx {
        const char *dir;       /* the template directory, T */
        const char *state_dir; /* whose store counts the sandboxes (the CLI's --state-dir) */
        int64_t uid_base;      /* the sandboxes' root on the host */
        struct store *store;   /* open store of state_dir */
};

/* -- names, versions, paths (version.c) -------------------------------------------------- */

/* 0 when name is a template name (1-63 characters of a-z 0-9 . _ -, not starting with '.'
 * or '-'); otherwise a 400 error that says the rule. */
int template_name_check(const char *name, struct error *e);

/* Takes the template directory's lock (flock on the directory itself: nothing is written):
 * shared (exclusive false) for a sandbox reading a version and recording or mounting it,
 * exclusive for garbage collection and for replacing a legacy template. Returns the fd that
 * holds it (closing it releases), or a negative errno with e set. */
int template_lock(const char *template_dir, bool exclusive, struct error *e);

/* The version that is current for template name ("" for a legacy template) into ret_version.
 * -ENOENT (404) when there is no such template; -EINVAL (400) for a bad name. Callers that
 * record the version hold the shared lock until it is recorded. */
int template_current(const char *template_dir, const char *name, char ret_version[TEMPLATE_VERSION_MAX], struct error *e);

/* The canonical path of version (as template_current gives it) of template name's rootfs,
 * into ret (n bytes): the path a sandbox mounts, never another version's. -ENOENT (409,
 * saying the version is gone) when it does not exist. Call with the shared lock held until
 * the mount is done. */
int template_rootfs(const char *template_dir, const char *name, const char *version, char *ret, size_t n, struct error *e);

/* Makes dir (a root file system owned by uid_base, on the template directory's file system,
 * outside the template directory) the new current version of template name, by renaming it
 * into place: dir is gone afterwards. Checks everything before changing anything and refuses
 * with a message that says what is wrong. Then removes the versions nobody uses (template_gc). */
int template_import(const struct template_ctx *c, const char *name, const char *dir, struct error *e);

/* -- build (template.c) ------------------------------------------------------------------ */

/* Builds template name (only "base" has a recipe today) as a new version, unless the
 * template exists and !force; then makes it current and removes the versions nobody uses.
 * Progress goes to stdout. */
int template_build(const struct template_ctx *c, const char *name, bool force, struct error *e);

/* Shifts the owner of every file under root by uid_base (uid and gid), keeping the
 * set-id bits that chown clears. Does not follow symlinks. */
int template_shift(const char *root, int64_t uid_base, unsigned long *ret_files, struct error *e);

/* -- sharing between the files of the module -------------------------------------------- */

/* 1 when c's state dir owns the versions in c->dir, 0 when nobody does yet, -EPERM (e set,
 * naming the owner) when another state dir does. */
int template_owner_check(const struct template_ctx *c, struct error *e);

/* A new version id into ret. */
int template_version_new(char ret[TEMPLATE_VERSION_MAX]);

/* Checks, before anything changes, that the versions in c->dir may be managed with c's
 * store (its state dir owns them, or nobody does yet) and that name's legacy directory, if
 * it has one, can be moved aside. */
int template_install_check(const struct template_ctx *c, const char *name, struct error *e);

/* Moves staged (a complete {rootfs,template.json} directory on the template directory's
 * file system) to T/.versions/<name>/<version>, makes it current and removes the versions
 * nobody uses. On failure staged is left where it was. */
int template_install(const struct template_ctx *c, const char *name, const char *version, const char *staged, struct error *e);

/* Writes dir/template.json for a new version (name, version, built_at, source, uid_base,
 * size_bytes of dir/rootfs), with the fields of extra (an object, or NULL) added. source:
 * "mmdebstrap" or "import". */
int template_write_meta(const char *dir, const char *name, const char *version, const char *source, json_t *extra,
                        int64_t uid_base, struct error *e);

/* -- garbage collection and listing (gc.c) ----------------------------------------------- */

/* Removes every version of template only (NULL: of every template) that is not current, that
 * no sandbox of c->store records unless it is killed, and that no overlay mounted on the host
 * uses as its lower layer (a sandbox of another engine sharing the directory, still
 * running). Does nothing when another state dir owns the directory's versions. Decisions are
 * made under the exclusive lock; the removals (seconds for a large tree) after it. */
int template_gc(const struct template_ctx *c, const char *only, struct error *e);

/* Prints every template and its versions: which is current, when built, size, and how many
 * sandboxes of c->store (not killed) use each. */
int template_list(const struct template_ctx *c, struct error *e);
