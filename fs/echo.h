/* echo.h — inotify events for changes made elsewhere (DESIGN §4).
 *
 * The kernel raises inotify events only for operations that pass through
 * the VFS, so the daemon repeats each remote change through its own
 * mountpoint from one dedicated thread; see the essay in echo.c.
 */
#pragma once

#include "fs-private.h"

G_BEGIN_DECLS

typedef enum {
  CONATFS_ECHO_MODIFIED,     /* IN_MODIFY, IN_CLOSE_WRITE */
  CONATFS_ECHO_CREATED,      /* IN_CREATE (IN_MODIFY if not empty), IN_CLOSE_WRITE */
  CONATFS_ECHO_DELETED,      /* IN_DELETE */
  CONATFS_ECHO_DIR_CREATED,  /* IN_CREATE | IN_ISDIR */
  CONATFS_ECHO_DIR_DELETED,  /* IN_DELETE | IN_ISDIR */
  CONATFS_ECHO_SET_HERE,     /* a set of this mount's: IN_CREATE only if the
                                name is gone for watchers (see echo.c) */
} ConatfsEchoKind;

/* For channel files: queues an IN_MODIFY on FILE_NAME in the directory
 * DIR_INO.  The echo opens the file O_WRONLY, writes one byte at size - 1
 * (a channel file's last byte, '\n') and closes it: the write handler must
 * drop writes of the echo thread (conatfs_echo_is_caller), and writable
 * opens should be direct I/O.  Never blocks; bursts are coalesced. */
void conatfs_echo_modified (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name);

/* TRUE if REQ comes from the echo thread: the handler must not change
 * anything (a write is acked and dropped). */
gboolean conatfs_echo_is_caller (ConatfsFs *fs, fuse_req_t req);

/* Queues the echo of a change made elsewhere to FILE_NAME in DIR_INO.  NAME
 * is the decoded key, store or scope name (NULL if unknown); OLD_SIZE the
 * size of a deleted key's last value.  Never blocks; coalesced. */
void conatfs_echo_change (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name,
                          const char *name, ConatfsEchoKind kind, gsize old_size);
void conatfs_echo_queue (ConatfsEcho *echo, fuse_ino_t dir_ino, const char *file_name,
                         const char *name, ConatfsEchoKind kind, gsize old_size);

/* TRUE if some name's last event was IN_DELETE: a set of this mount's own
 * may need CONATFS_ECHO_SET_HERE (cheap; no lock). */
gboolean conatfs_echo_any_gone (ConatfsFs *fs);

/* Handler hooks (each a no-op for requests of other threads). */
gboolean conatfs_echo_reply_lookup (ConatfsFs *fs, fuse_req_t req, ConatfsInode *dir,
                                    const char *file_name);
void conatfs_echo_name_event (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name,
                              gboolean gone);
int conatfs_echo_unlink_result (ConatfsFs *fs, fuse_ino_t parent, const char *file_name);
void conatfs_echo_dir_changed (ConatfsFs *fs, ConatfsInode *dir, const char *file_name,
                               gboolean exists);

/* status.c: echoes queued or running; passes of the directory poller (0
 * if there is none). */
void conatfs_echo_get_status (ConatfsFs *fs, guint *pending, guint64 *dir_passes);

/* session.c: started once mounted; stopped while the loop still serves its
 * requests; freed after the stores are closed. */
ConatfsEcho *conatfs_echo_new (ConatfsFs *fs);
void conatfs_echo_stop (ConatfsEcho *echo);
void conatfs_echo_free (ConatfsEcho *echo);

/* echo-dirs.c: the poller of scopes and stores made or removed elsewhere
 * (backends without namespace events). */
typedef struct _ConatfsDirPoller ConatfsDirPoller;
ConatfsDirPoller *conatfs_dir_poller_new (ConatfsFs *fs, ConatfsEcho *echo);
void conatfs_dir_poller_changed (ConatfsDirPoller *poller, const char *parent_file,
                                 const char *file_name, gboolean exists);
guint64 conatfs_dir_poller_passes (ConatfsDirPoller *poller);
void conatfs_dir_poller_stop (ConatfsDirPoller *poller);
void conatfs_dir_poller_free (ConatfsDirPoller *poller);

G_END_DECLS
