/* template.h — root filesystems that sandboxes start from.
 *
 * A template is TEMPLATE_DIR/<name>/{rootfs/,template.json}: a Debian tree built once with
 * mmdebstrap, with every file's owner shifted into the sandboxes' uid range so that root
 * inside a sandbox owns what the image's root owned. Sandboxes mount it read-only as the
 * lower layer of their overlay.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* Builds template name (only "base" has a recipe today) unless it exists and !force.
 * Progress goes to stdout. */
int template_build(const char *template_dir, const char *name, bool force, int64_t uid_base, struct error *e);

/* Prints name, size and build date of every template. */
int template_list(const char *template_dir, struct error *e);

/* Shifts the owner of every file under root by uid_base (uid and gid), keeping the
 * set-id bits that chown clears. Does not follow symlinks. */
int template_shift(const char *root, int64_t uid_base, unsigned long *ret_files, struct error *e);
