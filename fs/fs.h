/* fs.h — the conatfs filesystem, as the daemon (main.c) drives it.
 *
 * conatfs_fs_init() mounts CLIENT's scopes, stores and keys at MOUNTPOINT
 * and serves them from a FUSE session loop on its own thread; it returns
 * once the mount is up (or with the reason it is not).  When the mount goes
 * away by itself (`fusermount3 -u`), OPTIONS->on_unmounted runs in the
 * thread-default main context of the caller of conatfs_fs_init().
 * conatfs_fs_exit() stops serving, unmounts, and saves what is pending. */
#pragma once

#include <glib.h>

#include "conat.h"

G_BEGIN_DECLS

typedef struct {
  /* FUSE mount options ("ro", "allow_other", "default_permissions", ...),
   * NULL-terminated; NULL for none. */
  char **fuse_options;
  /* Shell patterns (fnmatch) of editor files kept in memory only, never
   * stored as keys; NULL for the defaults (conatfs_default_local_patterns). */
  char **local_patterns;
  /* Bytes of recent messages kept per channel file; 0 for the default (1 MiB). */
  gsize channel_window;
  GSourceFunc on_unmounted;
  gpointer on_unmounted_data;
} ConatfsOptions;

extern const char *const conatfs_default_local_patterns[];

gboolean conatfs_fs_init (ConatClient *client, const char *mountpoint,
                          const ConatfsOptions *options, GError **error);
/* Safe to call when init failed or was never called. */
void conatfs_fs_exit (void);
const char *conatfs_fs_get_mountpoint (void);

G_END_DECLS
