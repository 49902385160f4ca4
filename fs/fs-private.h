/* fs-private.h — the types the parts of fs/ share.
 *
 * Locks.  ConatfsFs.lock guards the inode tables, every mutable inode field,
 * the store table and each store's local files.  ConatfsHandle.lock guards
 * one open file's buffer.  Order: a handle's lock, then fs->lock.  No libconat
 * call is made with fs->lock held (core callbacks take fs->lock, and closing
 * a store waits for them); libconat calls under a handle's lock are fine.
 * No fuse_lowlevel_notify_* call is made by a FUSE worker: notify.c has the
 * thread for them.
 */
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <glib.h>
#include <sys/stat.h>

#include "conat.h"
#include "fs.h"
#include "names.h"

G_BEGIN_DECLS

#define CONATFS_INO_STATUS_DIR 2
#define CONATFS_INO_STATUS_FILE 3
#define CONATFS_INO_FIRST_DYNAMIC 16
#define CONATFS_STATUS_DIR_NAME ".conatfs"
#define CONATFS_STATUS_FILE_NAME "status"

/* Kernel cache lifetimes (seconds).  Keys change only through this mount or
 * through change events, which invalidate explicitly; scopes and stores may
 * be created or removed by others without an event. */
#define CONATFS_KEY_TIMEOUT 86400.0
#define CONATFS_DIR_TIMEOUT 5.0

#define CONATFS_FSYNC_TIMEOUT_MS 10000
#define CONATFS_EXIT_SAVE_TIMEOUT_MS 5000

typedef enum {
  CONATFS_INODE_ROOT,
  CONATFS_INODE_STATUS_DIR,
  CONATFS_INODE_STATUS_FILE,
  CONATFS_INODE_SCOPE,
  CONATFS_INODE_STORE,
  CONATFS_INODE_KEY,   /* a key of the store the parent is */
  CONATFS_INODE_LOCAL, /* an editor's file kept in memory in the parent store dir */
  CONATFS_INODE_CHANNEL, /* a channel file in the parent scope dir (channel.c); name = file name */
} ConatfsInodeKind;

typedef struct _ConatfsFs ConatfsFs;
typedef struct _ConatfsInode ConatfsInode;
typedef struct _ConatfsStore ConatfsStore;
typedef struct _ConatfsHandle ConatfsHandle;
typedef struct _ConatfsNotifier ConatfsNotifier;
typedef struct _ConatfsEcho ConatfsEcho;
typedef struct _ConatfsChannelFile ConatfsChannelFile;

struct _ConatfsInode {
  gint refs;              /* atomic */
  fuse_ino_t ino;         /* immutable */
  gboolean fixed;         /* immutable: root and .conatfs, never freed before exit */
  /* guarded by fs->lock: */
  ConatfsInodeKind kind;  /* changes only between KEY and LOCAL (rename) */
  ConatfsInode *parent;   /* strong reference; NULL for the root */
  char *file_name;        /* the entry's name in parent */
  char *name;             /* decoded scope, store or key name; the file name of a LOCAL */
  guint64 nlookup;        /* the kernel's lookup count */
  gboolean linked;        /* (parent, file_name) leads here: in fs->by_name */
  gboolean cache_valid;   /* the kernel's cached pages hold the current value */
  gint64 pending_size;    /* an open handle's uncommitted size, or -1 */
};

/* A local (editor) file: its bytes and its time, kept by the store dir. */
typedef struct {
  GBytes *value;
  struct timespec mtime;
} ConatfsLocal;

struct _ConatfsStore {
  gint refs;              /* atomic */
  ConatfsFs *fs;
  char *scope;            /* immutable */
  char *name;             /* immutable */
  ConatDkv *kv;           /* immutable; a memory reference (conat_dkv_ref) */
  guint watch_id;         /* immutable after open */
  /* guarded by fs->lock: */
  GHashTable *locals;     /* file name -> ConatfsLocal* */
  gboolean closed;        /* out of fs->stores; kv is closed or being closed */
  char merge[16];         /* the store's options as last read (options.c) */
  ConatStoreLimits limits;
  gint64 options_us;      /* monotonic time they were read */
};

/* Where a file's bytes live right now: resolved from an inode or a name. */
typedef struct {
  ConatfsStore *store;    /* owned reference */
  char *key;              /* the key; for a local file, its file name */
  gboolean local;
} ConatfsTarget;

struct _ConatfsHandle {
  ConatfsInode *inode;    /* strong reference; immutable */
  int flags;              /* open flags; immutable */
  gsize max_size;         /* the store's value limit; immutable */
  ConatfsChannelFile *channel; /* immutable: a channel file's state (channel.c), or NULL */
  GMutex lock;
  /* guarded by lock: */
  GBytes *snapshot;       /* the value at open or at the last commit (NULL: empty) */
  GByteArray *buffer;     /* an edited copy; NULL until the first change */
  gboolean dirty;         /* buffer holds changes not yet committed */
  gboolean written;       /* changed since open by write or ftruncate, not only
                             by the truncation of O_TRUNC or O_CREAT */
  gboolean refused;       /* a write over max_size was logged */
};

struct _ConatfsFs {
  ConatClient *client;          /* immutable */
  char *mountpoint;             /* immutable */
  char **local_patterns;        /* immutable */
  uid_t uid;                    /* immutable: the mounting user */
  gid_t gid;
  struct timespec start_time;   /* immutable: times of directories */
  struct fuse_session *session; /* immutable while mounted */
  ConatfsNotifier *notifier;    /* immutable while mounted */
  ConatfsEcho *echo;            /* immutable while mounted (echo.c) */
  gsize channel_window;         /* immutable: bytes of recent lines kept per channel */

  /* Serializes what binds a file name to a value: a commit (its inode
   * still linked, then the set), unlink and rename.  Without it, the
   * commit of a RELEASE, which the kernel sends after close() returned,
   * could find the inode linked, let an unlink that came after the close
   * run, and set the value again.  Taken before lock; a commit holds its
   * handle's lock first. */
  GMutex names_lock;

  GMutex lock;
  /* guarded by lock: */
  GHashTable *by_ino;           /* fuse_ino_t -> ConatfsInode* (reference) */
  GHashTable *by_name;          /* "PARENT-INO/FILE-NAME" -> ConatfsInode* (no reference) */
  GHashTable *stores;           /* "SCOPE\x01STORE" -> ConatfsStore* (reference) */
  GHashTable *handles;          /* open ConatfsHandle* (set) */
  GHashTable *channels;         /* "LENGTH:SCOPE" + channel file name -> channel (channel.c) */
  GHashTable *scope_watches;    /* scope -> its channel traffic (channel-seen.c) */
  fuse_ino_t next_ino;
  char *last_error;             /* the reason of the last EIO, for the status file */
  guint64 messages_dropped;     /* atomic: channel messages lost (status.c) */
};

/* fs.c */
extern const struct fuse_lowlevel_ops conatfs_ops;
int conatfs_errno_from_error (const GError *error);
void conatfs_reply_err (fuse_req_t req, const char *op, int err);
int conatfs_fail (ConatfsFs *fs, const char *what, const GError *error);
int conatfs_fail_at (ConatfsFs *fs, const char *op, const char *scope, const char *store,
                     const char *key, const GError *error);
char *conatfs_log_what (const char *op, const char *scope, const char *store, const char *key);
void conatfs_log_rejected (ConatfsFs *fs, ConatfsInode *inode, gsize size, gsize limit);
void conatfs_fill_dir_attr (ConatfsFs *fs, fuse_ino_t ino, struct stat *st);
void conatfs_fill_file_attr (ConatfsFs *fs, fuse_ino_t ino, gsize size,
                             const struct timespec *mtime, mode_t perm, struct stat *st);
gboolean conatfs_name_is_local (ConatfsFs *fs, const char *file_name);

/* inode.c */
char *conatfs_name_key (fuse_ino_t parent, const char *file_name);
ConatfsInode *conatfs_inode_new_fixed (ConatfsFs *fs, fuse_ino_t ino, ConatfsInodeKind kind,
                                       ConatfsInode *parent, const char *file_name);
ConatfsInode *conatfs_inode_ref (ConatfsInode *inode);
void conatfs_inode_unref (ConatfsInode *inode);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConatfsInode, conatfs_inode_unref)
ConatfsInode *conatfs_inode_get (ConatfsFs *fs, fuse_ino_t ino);
ConatfsInode *conatfs_inode_child (ConatfsFs *fs, ConatfsInode *parent, const char *file_name);
ConatfsInode *conatfs_inode_lookup (ConatfsFs *fs, ConatfsInode *parent, const char *file_name,
                                    ConatfsInodeKind kind, const char *name);
void conatfs_inode_forget (ConatfsFs *fs, fuse_ino_t ino, guint64 nlookup);
void conatfs_inode_unlink (ConatfsFs *fs, ConatfsInode *parent, const char *file_name);
void conatfs_inode_move (ConatfsFs *fs, ConatfsInode *parent, const char *file_name,
                         ConatfsInode *new_parent, const char *new_file_name,
                         const ConatfsTarget *target);
ConatfsInodeKind conatfs_inode_kind (ConatfsFs *fs, ConatfsInode *inode);
char *conatfs_inode_name (ConatfsFs *fs, ConatfsInode *inode);
char *conatfs_inode_scope_name (ConatfsFs *fs, ConatfsInode *inode);
gboolean conatfs_inode_take_cache (ConatfsFs *fs, ConatfsInode *inode);
void conatfs_inode_changed (ConatfsFs *fs, ConatfsInode *inode, gint64 pending_size);
gint64 conatfs_inode_pending_size (ConatfsFs *fs, ConatfsInode *inode);
void conatfs_inode_table_free (ConatfsFs *fs);

/* store.c */
ConatfsStore *conatfs_store_get (ConatfsFs *fs, const char *scope, const char *name,
                                 GError **error);
ConatfsStore *conatfs_store_of_dir (ConatfsFs *fs, ConatfsInode *dir, int *err);
ConatfsStore *conatfs_store_ref (ConatfsStore *store);
void conatfs_store_unref (ConatfsStore *store);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConatfsStore, conatfs_store_unref)
void conatfs_store_close (ConatfsFs *fs, const char *scope, const char *name);
ConatfsStore *conatfs_store_find_open (ConatfsFs *fs, const char *scope, const char *name);
int conatfs_store_save_and_close (ConatfsFs *fs, ConatfsStore *store);
GPtrArray *conatfs_store_list_open (ConatfsFs *fs);
void conatfs_store_close_all (ConatfsFs *fs);
GPtrArray *conatfs_store_file_names (ConatfsFs *fs, ConatfsStore *store);
gboolean conatfs_store_is_empty (ConatfsFs *fs, ConatfsStore *store);

/* target.c */
int conatfs_target_of_inode (ConatfsFs *fs, ConatfsInode *inode, ConatfsTarget *target);
int conatfs_target_of_name (ConatfsFs *fs, ConatfsInode *dir, const char *file_name,
                            gboolean creating, ConatfsTarget *target);
void conatfs_target_clear (ConatfsTarget *target);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ConatfsTarget, conatfs_target_clear)
GBytes *conatfs_target_get (ConatfsFs *fs, const ConatfsTarget *target, struct timespec *mtime);
gboolean conatfs_target_exists (ConatfsFs *fs, const ConatfsTarget *target);
int conatfs_target_set (ConatfsFs *fs, const ConatfsTarget *target, GBytes *value);
int conatfs_target_delete (ConatfsFs *fs, const ConatfsTarget *target);
gsize conatfs_target_max_size (const ConatfsTarget *target);

/* handle.c */
ConatfsHandle *conatfs_handle_new (ConatfsFs *fs, ConatfsInode *inode, int flags,
                                   GBytes *snapshot, gboolean truncate, gsize max_size);
void conatfs_handle_free (ConatfsFs *fs, ConatfsHandle *handle);
int conatfs_handle_write (ConatfsFs *fs, ConatfsHandle *handle, const char *buf, gsize size,
                          off_t offset);
int conatfs_handle_truncate (ConatfsFs *fs, ConatfsHandle *handle, off_t size);
void conatfs_handle_reply_read (ConatfsHandle *handle, fuse_req_t req, gsize size, off_t offset);
gssize conatfs_handle_size (ConatfsHandle *handle);
int conatfs_handle_commit (ConatfsFs *fs, ConatfsHandle *handle);
int conatfs_handle_flush (ConatfsFs *fs, ConatfsHandle *handle);
void conatfs_handle_add_pending_names (ConatfsFs *fs, ConatfsInode *dir, GPtrArray *names);
void conatfs_handle_commit_all (ConatfsFs *fs);

/* notify.c */
ConatfsNotifier *conatfs_notifier_new (struct fuse_session *session);
void conatfs_notifier_inval_inode (ConatfsNotifier *notifier, fuse_ino_t ino);
void conatfs_notifier_inval_entry (ConatfsNotifier *notifier, fuse_ino_t parent,
                                   const char *file_name);
void conatfs_notifier_free (ConatfsNotifier *notifier);
void conatfs_notifier_inval_attr (ConatfsNotifier *notifier, fuse_ino_t ino);
void conatfs_notifier_poll (ConatfsNotifier *notifier, struct fuse_pollhandle *ph);

/* channel.c */
#define CONATFS_CHANNEL_WINDOW_DEFAULT (1024 * 1024)
gboolean conatfs_channel_in_scope (ConatfsFs *fs, fuse_ino_t parent, const char *file_name);
int conatfs_channel_lookup (ConatfsFs *fs, ConatfsInode *dir, const char *file_name,
                            ConatfsInode **child);
void conatfs_channel_op_create (fuse_req_t req, fuse_ino_t parent, const char *file_name,
                                struct fuse_file_info *fi);
int conatfs_channel_stat (ConatfsFs *fs, ConatfsInode *inode, struct stat *st);
int conatfs_channel_open (ConatfsFs *fs, ConatfsInode *inode, struct fuse_file_info *fi,
                          ConatfsHandle **handle);
void conatfs_channel_reply_read (ConatfsFs *fs, ConatfsChannelFile *file, fuse_req_t req,
                                 gsize size, off_t offset);
void conatfs_channel_write (ConatfsFs *fs, ConatfsChannelFile *file, fuse_req_t req,
                            const char *buf, gsize size);
int conatfs_channel_flush (ConatfsFs *fs, ConatfsChannelFile *file);
void conatfs_channel_file_free (ConatfsFs *fs, ConatfsChannelFile *file);
GPtrArray *conatfs_channel_file_names (ConatfsFs *fs, const char *scope);
void conatfs_channel_close_all (ConatfsFs *fs);
void conatfs_op_poll (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                      struct fuse_pollhandle *ph);

/* channel-seen.c */
#define CONATFS_CHANNEL_SEEN_MAX 1024 /* channels seen by traffic a scope remembers */
void conatfs_channel_seen_init (ConatfsFs *fs);
void conatfs_channel_watch_scope (ConatfsFs *fs, const char *scope);
void conatfs_channel_seen_add_names (ConatfsFs *fs, const char *scope, GPtrArray *names);
void conatfs_channel_watch_close_all (ConatfsFs *fs);

/* status.c */
GBytes *conatfs_status_json (ConatfsFs *fs);
void conatfs_status_count_dropped (ConatfsFs *fs, guint64 n);

/* options.c */
#define CONATFS_OPTIONS_TTL_US (5 * G_USEC_PER_SEC)
#define CONATFS_LIMIT_WAIT_MS 2000  /* close() waits so long for a limited store's verdict */
extern const char *const conatfs_store_xattr_names[];
gboolean conatfs_options_is_store_xattr (const char *name);
void conatfs_options_init (ConatfsStore *store, const ConatStoreInfo *info);
void conatfs_options_refresh (ConatfsFs *fs, ConatfsStore *store);
gsize conatfs_options_max_value (ConatfsFs *fs, ConatfsStore *store);
gboolean conatfs_options_has_limits (ConatfsFs *fs, ConatfsStore *store);
char *conatfs_options_get (ConatfsFs *fs, ConatfsInode *dir, const char *name, int *err);
int conatfs_options_set (ConatfsFs *fs, ConatfsInode *dir, const char *name, const char *value,
                         size_t size);
void conatfs_op_statfs (fuse_req_t req, fuse_ino_t ino);

/* session.c */
gboolean conatfs_session_start (ConatfsFs *fs, char **fuse_options, GSourceFunc on_unmounted,
                                gpointer on_unmounted_data, GError **error);
void conatfs_session_stop (ConatfsFs *fs);
void conatfs_session_free (ConatfsFs *fs);

/* ops-file.c */
int conatfs_stat (ConatfsFs *fs, ConatfsInode *inode, ConatfsHandle *handle, struct stat *st,
                  double *timeout);
int conatfs_open_file (ConatfsFs *fs, ConatfsInode *inode, struct fuse_file_info *fi,
                       gboolean created, ConatfsHandle **handle);

/* ops-dir.c, ops-file.c, xattr.c: the FUSE operations */
void conatfs_op_lookup (fuse_req_t req, fuse_ino_t parent, const char *name);
void conatfs_op_forget (fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void conatfs_op_forget_multi (fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void conatfs_op_mkdir (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void conatfs_op_rmdir (fuse_req_t req, fuse_ino_t parent, const char *name);
void conatfs_op_unlink (fuse_req_t req, fuse_ino_t parent, const char *name);
void conatfs_op_rename (fuse_req_t req, fuse_ino_t parent, const char *name,
                        fuse_ino_t new_parent, const char *new_name, unsigned int flags);
void conatfs_op_mknod (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       dev_t rdev);
void conatfs_op_create (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                        struct fuse_file_info *fi);
void conatfs_op_opendir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void conatfs_op_readdir (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                         struct fuse_file_info *fi);
void conatfs_op_releasedir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void conatfs_op_getattr (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void conatfs_op_setattr (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                         struct fuse_file_info *fi);
void conatfs_op_open (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void conatfs_op_read (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi);
void conatfs_op_write (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                       struct fuse_file_info *fi);
void conatfs_op_flush (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void conatfs_op_release (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void conatfs_op_fsync (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void conatfs_op_getxattr (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void conatfs_op_listxattr (fuse_req_t req, fuse_ino_t ino, size_t size);
void conatfs_op_setxattr (fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                          size_t size, int flags);
void conatfs_op_removexattr (fuse_req_t req, fuse_ino_t ino, const char *name);

G_END_DECLS
