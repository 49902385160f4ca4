/* ops-file.c — FUSE operations on files: attributes, open, read, write,
 * flush, release, fsync. */
#include "fs-private.h"
#include "echo.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#define HANDLE(fi) ((ConatfsHandle *) (uintptr_t) (fi)->fh)

static int
stat_file (ConatfsFs *fs, ConatfsInode *inode, ConatfsHandle *handle, struct stat *st)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GBytes) value = NULL;
  struct timespec mtime;
  gint64 pending;
  int err = conatfs_target_of_inode (fs, inode, &target);

  if (err == 0)
    value = conatfs_target_get (fs, &target, &mtime);
  pending = conatfs_inode_pending_size (fs, inode);
  if (pending < 0 && value == NULL && handle != NULL) /* unlinked while open */
    pending = conatfs_handle_size (handle);
  if (pending >= 0)
    clock_gettime (CLOCK_REALTIME, &mtime);
  else if (value == NULL)
    return err ? err : ENOENT;
  conatfs_fill_file_attr (fs, inode->ino, pending >= 0 ? (gsize) pending : g_bytes_get_size (value),
                          &mtime, 0644, st);
  return 0;
}

/* The attributes of INODE (HANDLE, if given, is an open file of it) and how
 * long the kernel may cache them. */
int
conatfs_stat (ConatfsFs *fs, ConatfsInode *inode, ConatfsHandle *handle, struct stat *st,
              double *timeout)
{
  g_autoptr (GBytes) status = NULL;
  struct timespec now;

  *timeout = CONATFS_KEY_TIMEOUT;
  switch (conatfs_inode_kind (fs, inode))
    {
    case CONATFS_INODE_KEY:
    case CONATFS_INODE_LOCAL:
      return stat_file (fs, inode, handle, st);
    case CONATFS_INODE_CHANNEL:
      *timeout = 0; /* it grows with every message */
      return conatfs_channel_stat (fs, inode, st);
    case CONATFS_INODE_STATUS_FILE:
      status = conatfs_status_json (fs);
      clock_gettime (CLOCK_REALTIME, &now);
      conatfs_fill_file_attr (fs, inode->ino, g_bytes_get_size (status), &now, 0444, st);
      *timeout = 0;
      return 0;
    case CONATFS_INODE_SCOPE:
    case CONATFS_INODE_STORE:
      *timeout = CONATFS_DIR_TIMEOUT;
      G_GNUC_FALLTHROUGH;
    case CONATFS_INODE_ROOT:
    case CONATFS_INODE_STATUS_DIR:
    default:
      conatfs_fill_dir_attr (fs, inode->ino, st);
      return 0;
    }
}

static void
reply_attr (fuse_req_t req, ConatfsFs *fs, ConatfsInode *inode, struct fuse_file_info *fi,
            const char *op)
{
  struct stat st;
  double timeout;
  int err = conatfs_stat (fs, inode, fi ? HANDLE (fi) : NULL, &st, &timeout);

  if (err != 0)
    return conatfs_reply_err (req, op, err);
  fuse_reply_attr (req, &st, timeout);
}

void
conatfs_op_getattr (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) inode = conatfs_inode_get (fs, ino);

  if (inode == NULL)
    return conatfs_reply_err (req, "getattr", ENOENT);
  reply_attr (req, fs, inode, fi, "getattr");
}

/* truncate(2) of a file nobody has open: sets the resized value. */
static int
truncate_value (ConatfsFs *fs, ConatfsInode *inode, off_t size)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GBytes) value = NULL;
  g_autoptr (GByteArray) copy = NULL;
  const guint8 *data;
  gsize old = 0;
  int err = conatfs_target_of_inode (fs, inode, &target);

  if (err != 0)
    return err;
  if (size < 0 || (gsize) size > conatfs_target_max_size (&target))
    {
      conatfs_log_rejected (fs, inode, size, conatfs_target_max_size (&target));
      return EFBIG;
    }
  value = conatfs_target_get (fs, &target, NULL);
  if (value == NULL)
    return ENOENT;
  data = g_bytes_get_data (value, &old); /* before OLD is read: argument order is unspecified */
  copy = g_byte_array_sized_new (size);
  g_byte_array_append (copy, data, MIN (old, (gsize) size));
  g_byte_array_set_size (copy, size);
  if ((gsize) size > old)
    memset (copy->data + old, 0, size - old);
  g_clear_pointer (&value, g_bytes_unref);
  value = g_byte_array_free_to_bytes (g_steal_pointer (&copy));
  err = conatfs_target_set (fs, &target, value);
  if (err == 0)
    conatfs_inode_changed (fs, inode, -1);
  return err;
}

static int
setattr_size (ConatfsFs *fs, ConatfsInode *inode, off_t size, struct fuse_file_info *fi)
{
  switch (conatfs_inode_kind (fs, inode))
    {
    case CONATFS_INODE_KEY:
    case CONATFS_INODE_LOCAL:
      if (fi != NULL)
        return conatfs_handle_truncate (fs, HANDLE (fi), size);
      return truncate_value (fs, inode, size);
    case CONATFS_INODE_CHANNEL:
      return 0; /* it only grows: truncation is ignored */
    case CONATFS_INODE_STATUS_FILE:
      return EACCES;
    default:
      return EISDIR;
    }
}

/* Mode, owner and times are not stored: changing them succeeds (editors and
 * cp -p do it) and changes nothing.  Size edits the value. */
void
conatfs_op_setattr (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                    struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) inode = conatfs_inode_get (fs, ino);
  int err;

  if (inode == NULL)
    return conatfs_reply_err (req, "setattr", ENOENT);
  if (conatfs_echo_is_caller (fs, req)) /* the echo's ftruncate: IN_MODIFY only */
    to_set = 0;
  if (to_set & FUSE_SET_ATTR_SIZE)
    {
      err = setattr_size (fs, inode, attr->st_size, fi);
      if (err != 0)
        return conatfs_reply_err (req, "setattr", err);
    }
  reply_attr (req, fs, inode, fi, "setattr");
}

static void
reply_open (fuse_req_t req, ConatfsFs *fs, ConatfsHandle *handle, struct fuse_file_info *fi)
{
  fi->fh = (uintptr_t) handle;
  if (fuse_reply_open (req, fi) != 0)
    conatfs_handle_free (fs, handle);
}

static void
open_status (fuse_req_t req, ConatfsFs *fs, ConatfsInode *inode, struct fuse_file_info *fi)
{
  g_autoptr (GBytes) status = NULL;

  if ((fi->flags & O_ACCMODE) != O_RDONLY)
    return conatfs_reply_err (req, "open", EACCES);
  status = conatfs_status_json (fs);
  fi->direct_io = 1;
  fi->noflush = 1;
  reply_open (req, fs, conatfs_handle_new (fs, inode, fi->flags, status, FALSE, 0), fi);
}

/* Opens a key or local file, with its current value as the snapshot; a
 * CREATED file starts empty and dirty, so its first flush sets it (one set
 * for `echo v > new`, an empty value for `touch new`). */
int
conatfs_open_file (ConatfsFs *fs, ConatfsInode *inode, struct fuse_file_info *fi,
                   gboolean created, ConatfsHandle **handle)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GBytes) value = NULL;
  gboolean writable = (fi->flags & O_ACCMODE) != O_RDONLY;
  gboolean truncate = created || (writable && (fi->flags & O_TRUNC));
  gboolean keep_cache;
  int err = conatfs_target_of_inode (fs, inode, &target);

  if (err != 0)
    return err;
  /* Only a reader's open vouches for the pages: a writer's (the inotify
   * echo's too) reads nothing into them. */
  keep_cache = !writable && conatfs_inode_take_cache (fs, inode);
  if (!truncate)
    {
      value = conatfs_target_get (fs, &target, NULL);
      if (value == NULL && !writable && conatfs_inode_pending_size (fs, inode) < 0)
        return ENOENT;
    }
  if (writable && !target.local)
    conatfs_options_refresh (fs, target.store);  /* a value limit set elsewhere */
  fi->keep_cache = keep_cache && !truncate;
  fi->noflush = !writable;
  /* Writes go to the buffer here anyway; direct I/O spares each write the
   * kernel's getxattr of security.capability (file_remove_privs). */
  fi->direct_io = writable;
  *handle = conatfs_handle_new (fs, inode, fi->flags, value, truncate,
                                conatfs_target_max_size (&target));
  fi->fh = (uintptr_t) *handle;
  return 0;
}

void
conatfs_op_open (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) inode = conatfs_inode_get (fs, ino);
  ConatfsHandle *handle;
  int err;

  if (inode == NULL)
    return conatfs_reply_err (req, "open", ENOENT);
  switch (conatfs_inode_kind (fs, inode))
    {
    case CONATFS_INODE_KEY:
    case CONATFS_INODE_LOCAL:
      err = conatfs_open_file (fs, inode, fi, FALSE, &handle);
      if (err != 0)
        return conatfs_reply_err (req, "open", err);
      return reply_open (req, fs, handle, fi);
    case CONATFS_INODE_CHANNEL:
      err = conatfs_channel_open (fs, inode, fi, &handle);
      if (err != 0)
        return conatfs_reply_err (req, "open", err);
      return reply_open (req, fs, handle, fi);
    case CONATFS_INODE_STATUS_FILE:
      return open_status (req, fs, inode, fi);
    default:
      return conatfs_reply_err (req, "open", EISDIR);
    }
}

void
conatfs_op_read (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
  if (HANDLE (fi)->channel != NULL)
    return conatfs_channel_reply_read (fuse_req_userdata (req), HANDLE (fi)->channel, req, size,
                                       off);
  conatfs_handle_reply_read (HANDLE (fi), req, size, off);
}

void
conatfs_op_write (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                  struct fuse_file_info *fi)
{
  int err;

  if (conatfs_echo_is_caller (fuse_req_userdata (req), req)) /* IN_MODIFY, nothing else */
    return (void) fuse_reply_write (req, size);
  if (HANDLE (fi)->channel != NULL)
    return conatfs_channel_write (fuse_req_userdata (req), HANDLE (fi)->channel, req, buf, size);
  err = conatfs_handle_write (fuse_req_userdata (req), HANDLE (fi), buf, size, off);
  if (err != 0)
    return conatfs_reply_err (req, "write", err);
  fuse_reply_write (req, size);
}

/* Whether a flush of HANDLE will set a value. */
static gboolean
flush_commits (ConatfsHandle *handle)
{
  gboolean commits;

  g_mutex_lock (&handle->lock);
  commits = handle->written && handle->dirty;
  g_mutex_unlock (&handle->lock);
  return commits;
}

/* After the flush of a key of a store with limits: the backend may refuse
 * the value (the DKV then drops it), so close() waits a little for the
 * verdict and reports a refusal (ENOSPC, EFBIG); a value not confirmed in
 * time stays queued and close() succeeds. */
static int
flush_verdict (ConatfsFs *fs, ConatfsInode *inode)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *file_name = NULL;
  fuse_ino_t parent = 0;
  int err;

  if (conatfs_target_of_inode (fs, inode, &target) != 0 || target.local
      || !conatfs_options_has_limits (fs, target.store)
      || conat_dkv_save_key (target.store->kv, target.key, CONATFS_LIMIT_WAIT_MS, &error))
    return 0;
  err = conatfs_errno_from_error (error);
  if (err != ENOSPC && err != EFBIG)
    return 0;
  g_debug ("flush: %s", error->message);
  g_mutex_lock (&fs->lock);
  if (inode->linked)
    {
      parent = inode->parent->ino;
      file_name = g_strdup (inode->file_name);
    }
  g_mutex_unlock (&fs->lock);
  conatfs_notifier_inval_inode (fs->notifier, inode->ino);  /* the kernel forgets the size */
  if (file_name != NULL && !conatfs_target_exists (fs, &target))
    conatfs_notifier_inval_entry (fs->notifier, parent, file_name);  /* a refused new key */
  return err;
}

void
conatfs_op_flush (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  ConatfsHandle *handle = HANDLE (fi);
  gboolean commits;
  int err;

  if (handle->channel != NULL)
    return conatfs_reply_err (req, "flush", conatfs_channel_flush (fs, handle->channel));
  commits = flush_commits (handle);
  err = conatfs_handle_flush (fs, handle);
  if (err == 0 && commits)
    err = flush_verdict (fs, handle->inode);
  conatfs_reply_err (req, "flush", err);
}

void
conatfs_op_release (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  int err = conatfs_handle_commit (fs, HANDLE (fi));

  if (err != 0 && err != EIO) /* an EIO was logged where it happened */
    {
      g_autofree char *name = conatfs_inode_name (fs, HANDLE (fi)->inode);
      g_autofree char *shown = g_strescape (name, NULL);

      g_warning ("key \"%s\" (inode %" G_GUINT64_FORMAT "): the last write could not be saved: %s",
                 shown, (guint64) ino, g_strerror (err));
    }
  conatfs_handle_free (fs, HANDLE (fi));
  conatfs_reply_err (req, "release", 0);
}

/* Waits until the server confirmed the key's value. */
static int
save_key (ConatfsFs *fs, ConatfsInode *inode)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GError) error = NULL;
  int err = conatfs_target_of_inode (fs, inode, &target);

  if (err == ENOENT || (err == 0 && target.local))
    return 0;
  if (err != 0)
    return err;
  if (conat_dkv_save_key (target.store->kv, target.key, CONATFS_FSYNC_TIMEOUT_MS, &error))
    return 0;
  return conatfs_fail_at (fs, "fsync", target.store->scope, target.store->name, target.key,
                          error);
}

void
conatfs_op_fsync (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  ConatfsHandle *handle = HANDLE (fi);
  int err = conatfs_handle_commit (fs, handle);

  if (err == 0 && conatfs_inode_kind (fs, handle->inode) == CONATFS_INODE_KEY)
    err = save_key (fs, handle->inode);
  conatfs_reply_err (req, "fsync", err);
}
