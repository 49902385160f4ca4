/* handle.c — open files: a snapshot to read, a copy to edit, one commit.
 *
 * An open file reads the value it saw at open (a GBytes snapshot), so a key
 * deleted or replaced meanwhile keeps reading what it had.  The first change
 * (write, truncate) copies the snapshot into a buffer; every later change
 * edits the buffer, and reads see it.  flush (close) commits the buffer as
 * one set of the whole value; release commits what a flush did not.  The
 * inode's pending_size tells stat the size of the uncommitted buffer.
 *
 * A shell's `echo v > KEY` opens the file, dup2()s it and closes the first
 * descriptor before writing: that close is a flush of a file truncated by
 * its open and not written yet.  Committing it would set an empty value
 * before the real one, so such a flush commits nothing; release, or the
 * flush after the write, commits.  Until then lookup and readdir show a
 * created file from its open handle (pending_size).
 */
#include "fs-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

ConatfsHandle *
conatfs_handle_new (ConatfsFs *fs, ConatfsInode *inode, int flags, GBytes *snapshot,
                    gboolean truncate, gsize max_size)
{
  ConatfsHandle *handle = g_new0 (ConatfsHandle, 1);

  handle->inode = conatfs_inode_ref (inode);
  handle->flags = flags;
  handle->max_size = max_size;
  g_mutex_init (&handle->lock);
  handle->snapshot = snapshot ? g_bytes_ref (snapshot) : NULL;
  if (truncate)
    {
      handle->buffer = g_byte_array_new ();
      handle->dirty = TRUE;
      conatfs_inode_changed (fs, inode, 0);
    }
  g_mutex_lock (&fs->lock);
  g_hash_table_add (fs->handles, handle);
  g_mutex_unlock (&fs->lock);
  return handle;
}

void
conatfs_handle_free (ConatfsFs *fs, ConatfsHandle *handle)
{
  g_mutex_lock (&fs->lock);
  g_hash_table_remove (fs->handles, handle);
  g_mutex_unlock (&fs->lock);
  if (handle->channel != NULL)
    conatfs_channel_file_free (fs, handle->channel);
  g_clear_pointer (&handle->snapshot, g_bytes_unref);
  g_clear_pointer (&handle->buffer, g_byte_array_unref);
  conatfs_inode_unref (handle->inode);
  g_mutex_clear (&handle->lock);
  g_free (handle);
}

/* With handle->lock held: the buffer to edit, copied from the snapshot on
 * the first change. */
static GByteArray *
handle_edit (ConatfsHandle *handle)
{
  gsize size = 0;
  const guint8 *data;

  if (handle->buffer != NULL)
    return handle->buffer;
  data = handle->snapshot ? g_bytes_get_data (handle->snapshot, &size) : NULL;
  handle->buffer = g_byte_array_sized_new (size);
  if (size > 0)
    g_byte_array_append (handle->buffer, data, size);
  return handle->buffer;
}

/* With handle->lock held: after a change of the buffer. */
static void
handle_changed (ConatfsFs *fs, ConatfsHandle *handle)
{
  handle->dirty = TRUE;
  handle->written = TRUE;
  conatfs_inode_changed (fs, handle->inode, handle->buffer->len);
}

/* Resizes BUFFER to SIZE, zero-filling what it grows by. */
static void
buffer_resize (GByteArray *buffer, gsize size)
{
  gsize old = buffer->len;

  g_byte_array_set_size (buffer, size);
  if (size > old)
    memset (buffer->data + old, 0, size - old);
}

/* EFBIG for a value of SIZE bytes; the first refusal of HANDLE is logged. */
static int
handle_refuse (ConatfsFs *fs, ConatfsHandle *handle, gsize size)
{
  gboolean first;

  g_mutex_lock (&handle->lock);
  first = !handle->refused;
  handle->refused = TRUE;
  g_mutex_unlock (&handle->lock);
  if (first)
    conatfs_log_rejected (fs, handle->inode, size, handle->max_size);
  return EFBIG;
}

int
conatfs_handle_write (ConatfsFs *fs, ConatfsHandle *handle, const char *buf, gsize size,
                      off_t offset)
{
  GByteArray *buffer;
  gsize end;

  g_mutex_lock (&handle->lock);
  buffer = handle_edit (handle);
  if (handle->flags & O_APPEND)
    offset = buffer->len;
  end = (gsize) offset + size;
  if (offset < 0 || end > handle->max_size)
    {
      g_mutex_unlock (&handle->lock);
      return handle_refuse (fs, handle, end);
    }
  if (end > buffer->len)
    buffer_resize (buffer, end);
  memcpy (buffer->data + offset, buf, size);
  handle_changed (fs, handle);
  g_mutex_unlock (&handle->lock);
  return 0;
}

int
conatfs_handle_truncate (ConatfsFs *fs, ConatfsHandle *handle, off_t size)
{
  if (size < 0 || (gsize) size > handle->max_size)
    return handle_refuse (fs, handle, size);
  g_mutex_lock (&handle->lock);
  buffer_resize (handle_edit (handle), size);
  handle_changed (fs, handle);
  g_mutex_unlock (&handle->lock);
  return 0;
}

/* Replies to a read.  The reply is sent with no lock held: it may let
 * flush and release of this handle run at once. */
void
conatfs_handle_reply_read (ConatfsHandle *handle, fuse_req_t req, gsize size, off_t offset)
{
  g_autoptr (GBytes) data = NULL;
  gsize len = 0;

  g_mutex_lock (&handle->lock);
  if (handle->buffer != NULL) /* being edited: a copy of the part asked for */
    {
      len = handle->buffer->len;
      if ((gsize) offset < len)
        data = g_bytes_new (handle->buffer->data + offset, MIN (size, len - offset));
    }
  else if (handle->snapshot != NULL)
    {
      len = g_bytes_get_size (handle->snapshot);
      if ((gsize) offset < len)
        data = g_bytes_new_from_bytes (handle->snapshot, offset, MIN (size, len - offset));
    }
  g_mutex_unlock (&handle->lock);
  if (data == NULL)
    fuse_reply_buf (req, NULL, 0);
  else
    fuse_reply_buf (req, g_bytes_get_data (data, NULL), g_bytes_get_size (data));
}

/* The size a read sees. */
gssize
conatfs_handle_size (ConatfsHandle *handle)
{
  gssize size;

  g_mutex_lock (&handle->lock);
  if (handle->buffer != NULL)
    size = handle->buffer->len;
  else
    size = handle->snapshot ? (gssize) g_bytes_get_size (handle->snapshot) : 0;
  g_mutex_unlock (&handle->lock);
  return size;
}

/* With handle->lock held. */
static int
handle_commit_locked (ConatfsFs *fs, ConatfsHandle *handle)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GBytes) value = NULL;
  int err;

  if (!handle->dirty)
    return 0;
  g_mutex_lock (&fs->names_lock);
  err = conatfs_target_of_inode (fs, handle->inode, &target);
  if (err == 0)
    {
      value = g_byte_array_free_to_bytes (g_steal_pointer (&handle->buffer));
      err = conatfs_target_set (fs, &target, value);
    }
  g_mutex_unlock (&fs->names_lock);
  if (value == NULL) /* no target */
    {
      if (err != ENOENT)
        return err;
      handle->dirty = FALSE; /* unlinked (or its store removed) while open: nothing to keep */
      conatfs_inode_changed (fs, handle->inode, -1);
      return 0;
    }
  if (err != 0)
    {
      handle->buffer = g_bytes_unref_to_array (g_steal_pointer (&value));
      return err;
    }
  g_clear_pointer (&handle->snapshot, g_bytes_unref);
  handle->snapshot = g_steal_pointer (&value);
  handle->dirty = FALSE;
  handle->written = FALSE;
  conatfs_inode_changed (fs, handle->inode, -1);
  return 0;
}

/* Sets the edited value, if any, as one write of the whole value. */
int
conatfs_handle_commit (ConatfsFs *fs, ConatfsHandle *handle)
{
  int err;

  g_mutex_lock (&handle->lock);
  err = handle_commit_locked (fs, handle);
  g_mutex_unlock (&handle->lock);
  return err;
}

/* A flush: commits, unless all the handle did was truncate at open. */
int
conatfs_handle_flush (ConatfsFs *fs, ConatfsHandle *handle)
{
  int err = 0;

  g_mutex_lock (&handle->lock);
  if (handle->written)
    err = handle_commit_locked (fs, handle);
  g_mutex_unlock (&handle->lock);
  return err;
}

/* Adds to NAMES the file names in DIR of files created by an open handle
 * and not committed yet. */
void
conatfs_handle_add_pending_names (ConatfsFs *fs, ConatfsInode *dir, GPtrArray *names)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTableIter iter;
  gpointer key;

  for (guint i = 0; i < names->len; i++)
    g_hash_table_add (seen, names->pdata[i]);
  g_mutex_lock (&fs->lock);
  g_hash_table_iter_init (&iter, fs->handles);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      ConatfsInode *inode = ((ConatfsHandle *) key)->inode;

      if (inode->parent == dir && inode->linked && inode->pending_size >= 0
          && !g_hash_table_contains (seen, inode->file_name))
        {
          g_ptr_array_add (names, g_strdup (inode->file_name));
          g_hash_table_add (seen, names->pdata[names->len - 1]);
        }
    }
  g_mutex_unlock (&fs->lock);
}

/* At exit, after the session ended: commits and frees files still open. */
void
conatfs_handle_commit_all (ConatfsFs *fs)
{
  g_autoptr (GPtrArray) handles = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer handle;

  g_mutex_lock (&fs->lock);
  g_hash_table_iter_init (&iter, fs->handles);
  while (g_hash_table_iter_next (&iter, &handle, NULL))
    g_ptr_array_add (handles, handle);
  g_mutex_unlock (&fs->lock);
  for (guint i = 0; i < handles->len; i++)
    {
      int err = conatfs_handle_commit (fs, handles->pdata[i]);

      if (err != 0)
        g_warning ("a file still open at exit could not be saved: %s", g_strerror (err));
      conatfs_handle_free (fs, handles->pdata[i]);
    }
}
