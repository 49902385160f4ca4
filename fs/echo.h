/* echo.h — inotify events for changes made elsewhere (DESIGN §4).
 *
 * The kernel raises inotify events only for operations that pass through
 * the VFS, so the daemon repeats each remote change through its own
 * mountpoint from one dedicated thread; see the essay in echo.c.
 */
#pragma once

#include "fs-private.h"

G_BEGIN_DECLS

typedef struct _ConatfsEcho ConatfsEcho;

typedef enum {
  CONATFS_ECHO_MODIFIED,     /* IN_MODIFY (+ IN_CLOSE_WRITE for keys) */
  CONATFS_ECHO_CREATED,      /* IN_CREATE */
  CONATFS_ECHO_DELETED,      /* IN_DELETE */
  CONATFS_ECHO_DIR_CREATED,  /* IN_CREATE | IN_ISDIR */
  CONATFS_ECHO_DIR_DELETED,  /* IN_DELETE | IN_ISDIR */
} ConatfsEchoKind;

/* Queues an IN_MODIFY on FILE_NAME in the directory DIR_INO (a key or a
 * channel file).  Never blocks on the echo thread; bursts are coalesced. */
void conatfs_echo_modified (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name);

/* TRUE if REQ comes from the echo thread: the handler must not change
 * anything (a write is acked and dropped). */
gboolean conatfs_echo_is_caller (ConatfsFs *fs, fuse_req_t req);

G_END_DECLS
