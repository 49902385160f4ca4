/* readdir.c — directory listings.  A listing is taken when a directory
 * stream starts (offset 0) and served from that copy, so the offsets of one
 * pass stay stable while keys come and go. */
#include "fs-private.h"

#include <dirent.h>
#include <errno.h>

typedef struct {
  char *name;
  mode_t type; /* S_IFDIR or S_IFREG */
} DirEntry;

typedef struct {
  GMutex lock;
  GArray *entries; /* guarded by lock: DirEntry, or NULL before the first pass */
} DirHandle;

#define DIR_HANDLE(fi) ((DirHandle *) (uintptr_t) (fi)->fh)

static void
dir_entry_clear (gpointer p)
{
  g_free (((DirEntry *) p)->name);
}

static void
add_entries (GArray *entries, GPtrArray *names, ConatfsNameKind kind, mode_t type,
             gboolean encode)
{
  for (guint i = 0; names != NULL && i < names->len; i++)
    {
      DirEntry e = { .type = type };

      e.name = encode ? conatfs_name_encode (kind, names->pdata[i]) : g_strdup (names->pdata[i]);
      g_array_append_val (entries, e);
    }
}

static void
add_entry (GArray *entries, const char *name, mode_t type)
{
  DirEntry e = { .name = g_strdup (name), .type = type };

  g_array_append_val (entries, e);
}

/* The entries of DIR after "." and ".."; 0 or an errno. */
static int
list_children (ConatfsFs *fs, ConatfsInode *dir, GArray *entries)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) names = NULL;
  g_autoptr (ConatfsStore) store = NULL;
  g_autofree char *scope = NULL;
  int err = 0;

  switch (conatfs_inode_kind (fs, dir))
    {
    case CONATFS_INODE_ROOT:
      add_entry (entries, CONATFS_STATUS_DIR_NAME, S_IFDIR);
      names = conat_client_list_scopes (fs->client, &error);
      add_entries (entries, names, CONATFS_NAME_SCOPE, S_IFDIR, TRUE);
      break;
    case CONATFS_INODE_STATUS_DIR:
      add_entry (entries, CONATFS_STATUS_FILE_NAME, S_IFREG);
      return 0;
    case CONATFS_INODE_SCOPE:
      scope = conatfs_inode_name (fs, dir);
      names = conat_client_list_stores (fs->client, scope, &error);
      add_entries (entries, names, CONATFS_NAME_STORE, S_IFDIR, TRUE);
      {
        g_autoptr (GPtrArray) channels = conatfs_channel_file_names (fs, scope);

        conatfs_channel_watch_scope (fs, scope);
        conatfs_channel_seen_add_names (fs, scope, channels);
        add_entries (entries, channels, CONATFS_NAME_CHANNEL, S_IFREG, FALSE);
      }
      break;
    case CONATFS_INODE_STORE:
      store = conatfs_store_of_dir (fs, dir, &err);
      if (store == NULL)
        return err;
      conatfs_options_refresh (fs, store);  /* options set elsewhere (options.c) */
      names = conatfs_store_file_names (fs, store);
      conatfs_handle_add_pending_names (fs, dir, names);
      add_entries (entries, names, CONATFS_NAME_KEY, S_IFREG, FALSE);
      return 0;
    default:
      return ENOTDIR;
    }
  return names ? 0 : conatfs_fail (fs, "list", error);
}

void
conatfs_op_opendir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  DirHandle *handle = g_new0 (DirHandle, 1);

  g_mutex_init (&handle->lock);
  fi->fh = (uintptr_t) handle;
  if (fuse_reply_open (req, fi) != 0)
    {
      g_mutex_clear (&handle->lock);
      g_free (handle);
    }
}

/* With handle->lock held: takes a new listing. */
static int
dir_handle_fill (ConatfsFs *fs, DirHandle *handle, fuse_ino_t ino)
{
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (fs, ino);
  g_autoptr (GArray) entries = g_array_new (FALSE, FALSE, sizeof (DirEntry));
  int err;

  g_array_set_clear_func (entries, dir_entry_clear);
  if (dir == NULL)
    return ENOENT;
  add_entry (entries, ".", S_IFDIR);
  add_entry (entries, "..", S_IFDIR);
  err = list_children (fs, dir, entries);
  if (err != 0)
    return err;
  g_clear_pointer (&handle->entries, g_array_unref);
  handle->entries = g_steal_pointer (&entries);
  return 0;
}

/* With handle->lock held: the entries from OFF that fit in SIZE bytes. */
static size_t
fill_buffer (fuse_req_t req, DirHandle *handle, char *buf, size_t size, off_t off)
{
  size_t used = 0;

  for (guint i = off; i < handle->entries->len; i++)
    {
      DirEntry *e = &g_array_index (handle->entries, DirEntry, i);
      /* d_ino: not the inode (unknown until lookup), just distinct per name */
      struct stat st = { .st_ino = G_GUINT64_CONSTANT (1) << 32 | g_str_hash (e->name),
                         .st_mode = e->type };
      size_t need = fuse_add_direntry (req, buf + used, size - used, e->name, &st, i + 1);

      if (need > size - used)
        break;
      used += need;
    }
  return used;
}

void
conatfs_op_readdir (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
  DirHandle *handle = DIR_HANDLE (fi);
  g_autofree char *buf = g_malloc (size);
  size_t used = 0;
  int err = 0;

  /* Reply only after unlocking: the reply may let releasedir run at once. */
  g_mutex_lock (&handle->lock);
  if (off == 0 || handle->entries == NULL)
    err = dir_handle_fill (fuse_req_userdata (req), handle, ino);
  if (err == 0)
    used = fill_buffer (req, handle, buf, size, off);
  g_mutex_unlock (&handle->lock);
  if (err != 0)
    return conatfs_reply_err (req, "readdir", err);
  fuse_reply_buf (req, buf, used);
}

void
conatfs_op_releasedir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  DirHandle *handle = DIR_HANDLE (fi);

  g_clear_pointer (&handle->entries, g_array_unref);
  g_mutex_clear (&handle->lock);
  g_free (handle);
  conatfs_reply_err (req, "releasedir", 0);
}
