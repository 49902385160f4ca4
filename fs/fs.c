/* fs.c — conatfs's entry points: init and exit, errno translation, the one
 * reply helper, attributes, and the table of FUSE operations. */
#include "fs-private.h"

#include <errno.h>
#include <fnmatch.h>
#include <string.h>
#include <unistd.h>

const char *const conatfs_default_local_patterns[] = {
  ".*.sw?", "*~", ".#*", "#*#", "4913", ".*.tmp", NULL,
};

static ConatfsFs *the_fs; /* set by init, cleared by exit; main thread only */

/* ------------------------------------------------------------- errors */

/* The one translation of core errors to errno. */
int
conatfs_errno_from_error (const GError *error)
{
  if (error == NULL || error->domain != CONAT_ERROR)
    return EIO;
  switch ((ConatError) error->code)
    {
    case CONAT_ERROR_CLOSED:
    case CONAT_ERROR_NOT_FOUND:
      return ENOENT;
    case CONAT_ERROR_INVALID_NAME:
    case CONAT_ERROR_INVALID_ARGUMENT:
      return EINVAL;
    case CONAT_ERROR_NAME_TOO_LONG:
      return ENAMETOOLONG;
    case CONAT_ERROR_EXISTS:
      return EEXIST;
    case CONAT_ERROR_NOT_EMPTY:
      return ENOTEMPTY;
    case CONAT_ERROR_TOO_BIG:
      return EFBIG;
    case CONAT_ERROR_NO_SPACE:
      return ENOSPC;
    case CONAT_ERROR_PERMISSION:
      return EACCES;
    case CONAT_ERROR_TIMEOUT:
      return ETIMEDOUT;
    case CONAT_ERROR_BUSY:
      return EBUSY;
    default:
      return EIO;
    }
}

/* Translates ERROR for the reply to WHAT; an EIO is logged with its reason
 * and kept for the status file. */
int
conatfs_fail (ConatfsFs *fs, const char *what, const GError *error)
{
  int err = conatfs_errno_from_error (error);

  if (err == EIO)
    {
      const char *reason = error ? error->message : "unknown error";

      g_warning ("%s: %s", what, reason);
      g_mutex_lock (&fs->lock);
      g_free (fs->last_error);
      fs->last_error = g_strdup_printf ("%s: %s", what, reason);
      g_mutex_unlock (&fs->lock);
    }
  else
    g_debug ("%s: %s", what, error ? error->message : strerrorname_np (err));
  return err;
}

/* "OP SCOPE/STORE[/KEY]" for a log line, the names escaped. */
char *
conatfs_log_what (const char *op, const char *scope, const char *store, const char *key)
{
  g_autofree char *s = g_strescape (scope, NULL);
  g_autofree char *n = g_strescape (store, NULL);
  g_autofree char *k = key ? g_strescape (key, NULL) : NULL;

  if (k == NULL)
    return g_strdup_printf ("%s%s%s/%s", op ? op : "", op ? " " : "", s, n);
  return g_strdup_printf ("%s%s%s/%s/%s", op ? op : "", op ? " " : "", s, n, k);
}

/* conatfs_fail for an operation on a store or a key, which it names. */
int
conatfs_fail_at (ConatfsFs *fs, const char *op, const char *scope, const char *store,
                 const char *key, const GError *error)
{
  g_autofree char *what = conatfs_log_what (op, scope, store, key);

  return conatfs_fail (fs, what, error);
}

/* The one line for a write refused here, before the store saw it (a value
 * over the limit: EFBIG), naming the store and the key as the core does
 * for a write the store refused (dkv.c). */
void
conatfs_log_rejected (ConatfsFs *fs, ConatfsInode *inode, gsize size, gsize limit)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autofree char *store = NULL;
  g_autofree char *key = NULL;

  if (conatfs_target_of_inode (fs, inode, &target) != 0)
    return;
  store = conatfs_log_what (NULL, target.store->scope, target.store->name, NULL);
  key = g_strescape (target.key, NULL);
  g_message ("%s: the write of key \"%s\" was rejected: %zu bytes is over the limit of %zu"
             " bytes (EFBIG)", store, key, size, limit);
}

void
conatfs_reply_err (fuse_req_t req, const char *op, int err)
{
  if (err != 0)
    g_debug ("%s: %s", op, strerrorname_np (err));
  fuse_reply_err (req, err);
}

/* ------------------------------------------------------------ attributes */

void
conatfs_fill_dir_attr (ConatfsFs *fs, fuse_ino_t ino, struct stat *st)
{
  memset (st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = S_IFDIR | 0755;
  st->st_nlink = 2;
  st->st_uid = fs->uid;
  st->st_gid = fs->gid;
  st->st_blksize = 4096;
  st->st_atim = st->st_mtim = st->st_ctim = fs->start_time;
}

void
conatfs_fill_file_attr (ConatfsFs *fs, fuse_ino_t ino, gsize size,
                        const struct timespec *mtime, mode_t perm, struct stat *st)
{
  memset (st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = S_IFREG | perm;
  st->st_nlink = 1;
  st->st_uid = fs->uid;
  st->st_gid = fs->gid;
  st->st_size = size;
  st->st_blksize = 4096;
  st->st_blocks = (size + 511) / 512;
  st->st_atim = st->st_mtim = st->st_ctim = *mtime;
}

gboolean
conatfs_name_is_local (ConatfsFs *fs, const char *file_name)
{
  for (char **p = fs->local_patterns; *p != NULL; p++)
    if (fnmatch (*p, file_name, FNM_PERIOD) == 0)
      return TRUE;
  return FALSE;
}

/* ------------------------------------------------- small operations */

static void
op_link (fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char *new_name)
{
  conatfs_reply_err (req, "link", EPERM);
}

static void
op_symlink (fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
  conatfs_reply_err (req, "symlink", EPERM);
}

static void
op_fsyncdir (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
  conatfs_reply_err (req, "fsyncdir", 0);
}

static void
op_init (void *userdata, struct fuse_conn_info *conn)
{
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
    conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  conn->max_write = 1024 * 1024;
}

const struct fuse_lowlevel_ops conatfs_ops = {
  .init = op_init,
  .lookup = conatfs_op_lookup,
  .forget = conatfs_op_forget,
  .forget_multi = conatfs_op_forget_multi,
  .getattr = conatfs_op_getattr,
  .setattr = conatfs_op_setattr,
  .mknod = conatfs_op_mknod,
  .mkdir = conatfs_op_mkdir,
  .unlink = conatfs_op_unlink,
  .rmdir = conatfs_op_rmdir,
  .symlink = op_symlink,
  .rename = conatfs_op_rename,
  .link = op_link,
  .open = conatfs_op_open,
  .read = conatfs_op_read,
  .write = conatfs_op_write,
  .flush = conatfs_op_flush,
  .release = conatfs_op_release,
  .fsync = conatfs_op_fsync,
  .opendir = conatfs_op_opendir,
  .readdir = conatfs_op_readdir,
  .releasedir = conatfs_op_releasedir,
  .fsyncdir = op_fsyncdir,
  .statfs = conatfs_op_statfs,
  .setxattr = conatfs_op_setxattr,
  .getxattr = conatfs_op_getxattr,
  .listxattr = conatfs_op_listxattr,
  .removexattr = conatfs_op_removexattr,
  .create = conatfs_op_create,
  .poll = conatfs_op_poll,
};

/* ------------------------------------------------------- init and exit */

static ConatfsFs *
fs_new (ConatClient *client, const char *mountpoint, const ConatfsOptions *options)
{
  ConatfsFs *fs = g_new0 (ConatfsFs, 1);
  ConatfsInode *root, *status_dir;

  fs->client = conat_client_ref (client);
  /* Every callback here only takes short locks and queues work for the
   * notifier and echo threads: let the backend run them where changes and
   * messages arrive. */
  conat_client_set_quick_callbacks (client, TRUE);
  fs->mountpoint = g_strdup (mountpoint);
  fs->local_patterns = g_strdupv (options->local_patterns ? options->local_patterns
                                  : (char **) conatfs_default_local_patterns);
  fs->uid = getuid ();
  fs->gid = getgid ();
  clock_gettime (CLOCK_REALTIME, &fs->start_time);
  g_mutex_init (&fs->names_lock);
  g_mutex_init (&fs->lock);
  fs->by_ino = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL,
                                      (GDestroyNotify) conatfs_inode_unref);
  fs->by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  fs->stores = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify) conatfs_store_unref);
  fs->handles = g_hash_table_new (NULL, NULL);
  fs->channels = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  conatfs_channel_seen_init (fs);
  fs->channel_window = options->channel_window ? options->channel_window
                       : CONATFS_CHANNEL_WINDOW_DEFAULT;
  fs->next_ino = CONATFS_INO_FIRST_DYNAMIC;

  root = conatfs_inode_new_fixed (fs, FUSE_ROOT_ID, CONATFS_INODE_ROOT, NULL, "");
  status_dir = conatfs_inode_new_fixed (fs, CONATFS_INO_STATUS_DIR, CONATFS_INODE_STATUS_DIR,
                                        root, CONATFS_STATUS_DIR_NAME);
  conatfs_inode_new_fixed (fs, CONATFS_INO_STATUS_FILE, CONATFS_INODE_STATUS_FILE, status_dir,
                           CONATFS_STATUS_FILE_NAME);
  return fs;
}

/* After the session stopped: saves what is pending, then frees it all. */
static void
fs_free (ConatfsFs *fs)
{
  conatfs_handle_commit_all (fs);
  conatfs_store_close_all (fs);
  conatfs_channel_close_all (fs);
  conatfs_channel_watch_close_all (fs);
  conatfs_session_free (fs);
  conatfs_inode_table_free (fs);
  g_hash_table_unref (fs->stores);
  g_hash_table_unref (fs->handles);
  g_mutex_clear (&fs->names_lock);
  g_mutex_clear (&fs->lock);
  g_strfreev (fs->local_patterns);
  g_free (fs->mountpoint);
  g_free (fs->last_error);
  conat_client_unref (fs->client);
  g_free (fs);
}

gboolean
conatfs_fs_init (ConatClient *client, const char *mountpoint, const ConatfsOptions *options,
                 GError **error)
{
  ConatfsFs *fs;

  g_return_val_if_fail (the_fs == NULL, FALSE);
  fs = fs_new (client, mountpoint, options);
  if (!conatfs_session_start (fs, options->fuse_options, options->on_unmounted,
                              options->on_unmounted_data, error))
    {
      fs_free (fs);
      return FALSE;
    }
  the_fs = fs;
  return TRUE;
}

void
conatfs_fs_exit (void)
{
  if (the_fs == NULL)
    return;
  conatfs_session_stop (the_fs);
  fs_free (g_steal_pointer (&the_fs));
}

const char *
conatfs_fs_get_mountpoint (void)
{
  return the_fs ? the_fs->mountpoint : NULL;
}
