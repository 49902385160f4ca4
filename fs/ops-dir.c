/* ops-dir.c — FUSE operations on names: lookup, forget, mkdir, rmdir,
 * mknod, create, unlink, rename.
 *
 * Root lists scopes (and .conatfs), a scope lists stores and @channels
 * (channel.c, channel-seen.c), a store lists keys and local files.  Each operation
 * resolves the parent's kind, acts, and replies exactly once; a reply that
 * carries an entry counts one lookup, undone if the reply fails.
 */
#include "fs-private.h"
#include "echo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

/* The name in NAMES (char*) whose shortened file name is FILE_NAME. */
static char *
match_shortened (GPtrArray *names, ConatfsNameKind kind, const char *file_name)
{
  for (guint i = 0; names != NULL && i < names->len; i++)
    if (conatfs_name_matches (kind, names->pdata[i], file_name))
      return g_strdup (names->pdata[i]);
  return NULL;
}

/* Whether this mount has a store of SCOPE open.  When the server does not
 * answer (down, frozen), a lookup of an open store's directories answers
 * from its replica, as reads of its keys do. */
static gboolean
scope_is_open (ConatfsFs *fs, const char *scope)
{
  g_autoptr (GPtrArray) stores = conatfs_store_list_open (fs);

  for (guint i = 0; i < stores->len; i++)
    if (strcmp (((ConatfsStore *) stores->pdata[i])->scope, scope) == 0)
      return TRUE;
  return FALSE;
}

/* The scope FILE_NAME shows in the root; ENOENT if none. */
static int
find_scope (ConatfsFs *fs, const char *file_name, char **scope)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) scopes = NULL;

  switch (conatfs_name_decode (CONATFS_NAME_SCOPE, file_name, scope))
    {
    case CONATFS_NAME_SHORTENED:
      scopes = conat_client_list_scopes (fs->client, &error);
      if (scopes == NULL)
        return conatfs_fail (fs, "list scopes", error);
      *scope = match_shortened (scopes, CONATFS_NAME_SCOPE, file_name);
      return *scope ? 0 : ENOENT;
    case CONATFS_NAME_DECODED:
      if (conat_client_has_scope (fs->client, *scope, &error)
          || (!g_error_matches (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND)
              && scope_is_open (fs, *scope)))
        return 0;
      g_clear_pointer (scope, g_free);
      return error ? conatfs_fail (fs, "scope", error) : ENOENT;
    case CONATFS_NAME_INVALID:
    default:
      return EINVAL;
    }
}

/* The store FILE_NAME shows in SCOPE; ENOENT if none. */
static int
find_store (ConatfsFs *fs, const char *scope, const char *file_name, char **store)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) stores = NULL;
  ConatStoreInfo info;
  int err;

  switch (conatfs_name_decode (CONATFS_NAME_STORE, file_name, store))
    {
    case CONATFS_NAME_SHORTENED:
      stores = conat_client_list_stores (fs->client, scope, &error);
      if (stores == NULL)
        return conatfs_fail (fs, "list stores", error);
      *store = match_shortened (stores, CONATFS_NAME_STORE, file_name);
      return *store ? 0 : ENOENT;
    case CONATFS_NAME_DECODED:
      if (conat_client_store_options (fs->client, scope, *store, &info, &error))
        return 0;
      if (!g_error_matches (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND))
        {
          g_autoptr (ConatfsStore) open = conatfs_store_find_open (fs, scope, *store);

          if (open != NULL)
            return 0;
        }
      err = conatfs_fail_at (fs, "store", scope, *store, NULL, error);
      g_clear_pointer (store, g_free);
      return err;
    case CONATFS_NAME_INVALID:
    default:
      return EINVAL;
    }
}

/* Replies with the entry of CHILD, whose lookup was counted. */
static void
reply_entry (fuse_req_t req, ConatfsFs *fs, ConatfsInode *child, const char *op)
{
  struct fuse_entry_param e = { .ino = child->ino };
  double timeout;
  int err = conatfs_stat (fs, child, NULL, &e.attr, &timeout);

  if (err != 0)
    {
      conatfs_inode_forget (fs, child->ino, 1);
      return conatfs_reply_err (req, op, err);
    }
  e.attr_timeout = e.entry_timeout = timeout;
  if (fuse_reply_entry (req, &e) != 0)
    conatfs_inode_forget (fs, child->ino, 1);
}

static int
lookup_in_root (ConatfsFs *fs, ConatfsInode *root, const char *name, ConatfsInode **child)
{
  g_autofree char *scope = NULL;
  int err;

  if (strcmp (name, CONATFS_STATUS_DIR_NAME) == 0)
    {
      *child = conatfs_inode_lookup (fs, root, name, CONATFS_INODE_STATUS_DIR, name);
      return 0;
    }
  err = find_scope (fs, name, &scope);
  if (err != 0)
    return err;
  conatfs_channel_watch_scope (fs, scope);
  *child = conatfs_inode_lookup (fs, root, name, CONATFS_INODE_SCOPE, scope);
  return 0;
}

static int
lookup_in_scope (ConatfsFs *fs, ConatfsInode *dir, const char *name, ConatfsInode **child)
{
  g_autofree char *scope = conatfs_inode_name (fs, dir);
  g_autofree char *store_name = NULL;
  g_autoptr (ConatfsStore) store = NULL;
  g_autoptr (GError) error = NULL;
  int err;

  if (name[0] == '@')
    return conatfs_channel_lookup (fs, dir, name, child);
  err = find_store (fs, scope, name, &store_name);
  if (err != 0)
    return err;
  store = conatfs_store_get (fs, scope, store_name, &error); /* starts watching it */
  if (store == NULL)
    return conatfs_fail_at (fs, "open store", scope, store_name, NULL, error);
  *child = conatfs_inode_lookup (fs, dir, name, CONATFS_INODE_STORE, store_name);
  return 0;
}

/* A file created but not yet flushed has an inode and no value yet. */
static gboolean
is_pending (ConatfsFs *fs, ConatfsInode *dir, const char *name)
{
  g_autoptr (ConatfsInode) child = conatfs_inode_child (fs, dir, name);

  return child != NULL && conatfs_inode_pending_size (fs, child) >= 0;
}

static int
lookup_in_store (ConatfsFs *fs, ConatfsInode *dir, const char *name, ConatfsInode **child)
{
  g_auto (ConatfsTarget) target = { 0 };
  int err = conatfs_target_of_name (fs, dir, name, FALSE, &target);

  if (err != 0)
    return err;
  if (!conatfs_target_exists (fs, &target) && !is_pending (fs, dir, name))
    return ENOENT;
  *child = conatfs_inode_lookup (fs, dir, name,
                                 target.local ? CONATFS_INODE_LOCAL : CONATFS_INODE_KEY,
                                 target.key);
  return 0;
}

static int
lookup_child (ConatfsFs *fs, ConatfsInode *dir, ConatfsInodeKind kind, const char *name,
              ConatfsInode **child)
{
  switch (kind)
    {
    case CONATFS_INODE_ROOT:
      return lookup_in_root (fs, dir, name, child);
    case CONATFS_INODE_STATUS_DIR:
      if (strcmp (name, CONATFS_STATUS_FILE_NAME) != 0)
        return ENOENT;
      *child = conatfs_inode_lookup (fs, dir, name, CONATFS_INODE_STATUS_FILE, name);
      return 0;
    case CONATFS_INODE_SCOPE:
      return lookup_in_scope (fs, dir, name, child);
    case CONATFS_INODE_STORE:
      return lookup_in_store (fs, dir, name, child);
    default:
      return ENOTDIR;
    }
}

void
conatfs_op_lookup (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (fs, parent);
  g_autoptr (ConatfsInode) child = NULL;
  struct fuse_entry_param negative = { .ino = 0 };
  ConatfsInodeKind kind;
  int err;

  if (dir == NULL)
    return conatfs_reply_err (req, "lookup", ENOENT);
  if (strlen (name) > CONATFS_NAME_MAX) /* FUSE passes up to 1024 bytes */
    return conatfs_reply_err (req, "lookup", ENAMETOOLONG);
  if (conatfs_echo_reply_lookup (fs, req, dir, name)) /* the inotify echo's own view */
    return;
  kind = conatfs_inode_kind (fs, dir);
  err = lookup_child (fs, dir, kind, name, &child);
  if (err == 0)
    return reply_entry (req, fs, child, "lookup");
  if (err != ENOENT)
    return conatfs_reply_err (req, "lookup", err);
  /* A negative entry: keys appear only through this mount or with a change
   * event (which invalidates it); scopes and stores may appear without one. */
  negative.entry_timeout = kind == CONATFS_INODE_STORE ? CONATFS_KEY_TIMEOUT : 0;
  fuse_reply_entry (req, &negative);
}

void
conatfs_op_forget (fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
  conatfs_inode_forget (fuse_req_userdata (req), ino, nlookup);
  fuse_reply_none (req);
}

void
conatfs_op_forget_multi (fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
  for (size_t i = 0; i < count; i++)
    conatfs_inode_forget (fuse_req_userdata (req), forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none (req);
}

/* -------------------------------------------------------- mkdir, rmdir */

static int
make_scope (ConatfsFs *fs, ConatfsInode *root, const char *name, ConatfsInode **child)
{
  g_autofree char *scope = NULL;
  g_autoptr (GError) error = NULL;

  if (strcmp (name, CONATFS_STATUS_DIR_NAME) == 0)
    return EEXIST;
  if (conatfs_name_decode (CONATFS_NAME_SCOPE, name, &scope) != CONATFS_NAME_DECODED)
    return EINVAL;
  if (!conat_client_create_scope (fs->client, scope, &error))
    return conatfs_fail (fs, "mkdir scope", error);
  conatfs_channel_watch_scope (fs, scope);
  *child = conatfs_inode_lookup (fs, root, name, CONATFS_INODE_SCOPE, scope);
  return 0;
}

static int
make_store (ConatfsFs *fs, ConatfsInode *dir, const char *name, ConatfsInode **child)
{
  g_autofree char *scope = conatfs_inode_name (fs, dir);
  g_autofree char *store_name = NULL;
  g_autoptr (ConatfsStore) store = NULL;
  g_autoptr (GError) error = NULL;

  if (conatfs_name_decode (CONATFS_NAME_STORE, name, &store_name) != CONATFS_NAME_DECODED)
    return EINVAL;
  if (!conat_client_create_store (fs->client, scope, store_name, FALSE, &error))
    return conatfs_fail_at (fs, "mkdir store", scope, store_name, NULL, error);
  store = conatfs_store_get (fs, scope, store_name, &error);
  if (store == NULL)
    return conatfs_fail_at (fs, "open store", scope, store_name, NULL, error);
  *child = conatfs_inode_lookup (fs, dir, name, CONATFS_INODE_STORE, store_name);
  return 0;
}

void
conatfs_op_mkdir (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (fs, parent);
  g_autoptr (ConatfsInode) child = NULL;
  int err = EPERM; /* keys are flat; .conatfs is the daemon's */

  if (dir == NULL)
    return conatfs_reply_err (req, "mkdir", ENOENT);
  if (conatfs_echo_is_caller (fs, req)) /* made elsewhere: the entry as it is */
    err = lookup_child (fs, dir, conatfs_inode_kind (fs, dir), name, &child);
  else switch (conatfs_inode_kind (fs, dir))
    {
    case CONATFS_INODE_ROOT:
      err = make_scope (fs, dir, name, &child);
      break;
    case CONATFS_INODE_SCOPE:
      err = make_store (fs, dir, name, &child);
      break;
    default:
      break;
    }
  if (err != 0)
    return conatfs_reply_err (req, "mkdir", err);
  if (!conatfs_echo_is_caller (fs, req))
    conatfs_echo_dir_changed (fs, dir, name, TRUE);
  reply_entry (req, fs, child, "mkdir");
}

static int
remove_scope (ConatfsFs *fs, const char *name)
{
  g_autofree char *scope = NULL;
  g_autoptr (GError) error = NULL;
  int err;

  if (strcmp (name, CONATFS_STATUS_DIR_NAME) == 0)
    return EBUSY;
  err = find_scope (fs, name, &scope);
  if (err != 0)
    return err;
  if (!conat_client_remove_scope (fs->client, scope, &error))
    return conatfs_fail (fs, "rmdir scope", error);
  return 0;
}

/* Saves this mount's deletes and closes its DKV of the store first: the
 * backend removes only an empty store. */
static int
remove_store (ConatfsFs *fs, ConatfsInode *dir, const char *name)
{
  g_autofree char *scope = conatfs_inode_name (fs, dir);
  g_autofree char *store_name = NULL;
  g_autoptr (ConatfsStore) store = NULL;
  g_autoptr (GError) error = NULL;
  int err = find_store (fs, scope, name, &store_name);

  if (err != 0)
    return err;
  store = conatfs_store_get (fs, scope, store_name, &error);
  if (store == NULL)
    return conatfs_fail_at (fs, "open store", scope, store_name, NULL, error);
  if (!conatfs_store_is_empty (fs, store))
    return ENOTEMPTY;
  err = conatfs_store_save_and_close (fs, store);
  if (err != 0)
    return err;
  if (!conat_client_remove_store (fs->client, scope, store_name, &error))
    return conatfs_fail_at (fs, "rmdir store", scope, store_name, NULL, error);
  return 0;
}

void
conatfs_op_rmdir (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (fs, parent);
  int err = ENOTDIR;

  if (dir == NULL)
    return conatfs_reply_err (req, "rmdir", ENOENT);
  if (conatfs_echo_is_caller (fs, req)) /* removed elsewhere */
    err = 0;
  else switch (conatfs_inode_kind (fs, dir))
    {
    case CONATFS_INODE_ROOT:
      err = remove_scope (fs, name);
      break;
    case CONATFS_INODE_SCOPE:
      err = remove_store (fs, dir, name);
      break;
    default:
      break;
    }
  if (err == 0 && !conatfs_echo_is_caller (fs, req))
    conatfs_echo_dir_changed (fs, dir, name, FALSE);
  if (err == 0)
    conatfs_inode_unlink (fs, dir, name);
  conatfs_reply_err (req, "rmdir", err);
}

/* ------------------------------------------------ files in a store */

/* The store directory PARENT, or NULL with *ERR set: files live only in
 * store directories (channel files in scopes are channel.c's). */
static ConatfsInode *
store_dir (ConatfsFs *fs, fuse_ino_t parent, int *err)
{
  ConatfsInode *dir = conatfs_inode_get (fs, parent);

  *err = ENOENT;
  if (dir != NULL && conatfs_inode_kind (fs, dir) != CONATFS_INODE_STORE)
    {
      *err = EPERM;
      g_clear_pointer (&dir, conatfs_inode_unref);
    }
  return dir;
}

void
conatfs_op_mknod (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);
  g_autoptr (ConatfsInode) dir = NULL;
  g_autoptr (ConatfsInode) child = NULL;
  int err;

  if (!S_ISREG (mode))
    return conatfs_reply_err (req, "mknod", EPERM);
  if (conatfs_channel_in_scope (fs, parent, name))
    {
      dir = conatfs_inode_get (fs, parent);
      err = conatfs_channel_lookup (fs, dir, name, &child);
      if (err != 0)
        return conatfs_reply_err (req, "mknod", err);
      return reply_entry (req, fs, child, "mknod");
    }
  dir = store_dir (fs, parent, &err);
  if (dir == NULL)
    return conatfs_reply_err (req, "mknod", err);
  err = conatfs_target_of_name (fs, dir, name, TRUE, &target);
  if (err == 0 && conatfs_target_exists (fs, &target))
    err = EEXIST;
  if (err == 0)
    err = conatfs_target_set (fs, &target, empty);
  if (err != 0)
    return conatfs_reply_err (req, "mknod", err);
  child = conatfs_inode_lookup (fs, dir, name,
                                target.local ? CONATFS_INODE_LOCAL : CONATFS_INODE_KEY,
                                target.key);
  conatfs_echo_name_event (fs, parent, name, FALSE);
  reply_entry (req, fs, child, "mknod");
}

static void
reply_create (fuse_req_t req, ConatfsFs *fs, ConatfsInode *child, ConatfsHandle *handle,
              struct fuse_file_info *fi)
{
  struct fuse_entry_param e = { .ino = child->ino };
  double timeout;
  int err = conatfs_stat (fs, child, handle, &e.attr, &timeout);

  if (err == 0)
    {
      e.attr_timeout = e.entry_timeout = timeout;
      if (fuse_reply_create (req, &e, fi) == 0)
        return;
    }
  else
    conatfs_reply_err (req, "create", err);
  conatfs_handle_free (fs, handle);
  conatfs_inode_forget (fs, child->ino, 1);
}

void
conatfs_op_create (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                   struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (ConatfsInode) dir = NULL;
  g_autoptr (ConatfsInode) child = NULL;
  ConatfsHandle *handle = NULL;
  gboolean exists;
  int err;

  if (conatfs_channel_in_scope (fs, parent, name))
    return conatfs_channel_op_create (req, parent, name, fi);
  dir = store_dir (fs, parent, &err);
  if (dir == NULL)
    return conatfs_reply_err (req, "create", err);
  err = conatfs_target_of_name (fs, dir, name, TRUE, &target);
  if (err != 0)
    return conatfs_reply_err (req, "create", err);
  exists = conatfs_target_exists (fs, &target) || is_pending (fs, dir, name);
  if (conatfs_echo_is_caller (fs, req)) /* made elsewhere: opened as it is */
    {
      if (!exists)
        return conatfs_reply_err (req, "create", ENOENT);
      fi->flags &= ~(O_EXCL | O_TRUNC);
    }
  if (exists && (fi->flags & O_EXCL))
    return conatfs_reply_err (req, "create", EEXIST);
  if (!exists && target.local) /* in memory: listed at once (vim's swap file) */
    {
      g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);

      conatfs_target_set (fs, &target, empty);
    }

  child = conatfs_inode_lookup (fs, dir, name,
                                target.local ? CONATFS_INODE_LOCAL : CONATFS_INODE_KEY,
                                target.key);
  err = conatfs_open_file (fs, child, fi, !exists, &handle);
  if (err != 0)
    {
      conatfs_inode_forget (fs, child->ino, 1);
      return conatfs_reply_err (req, "create", err);
    }
  conatfs_echo_name_event (fs, parent, name, FALSE);
  reply_create (req, fs, child, handle, fi);
}

void
conatfs_op_unlink (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (ConatfsInode) dir = NULL;
  int err;

  if (conatfs_echo_is_caller (fs, req)) /* deleted elsewhere: the store has it so */
    return conatfs_reply_err (req, "unlink", conatfs_echo_unlink_result (fs, parent, name));
  if (conatfs_channel_in_scope (fs, parent, name)) /* subscribed until unmount */
    return conatfs_reply_err (req, "unlink", EPERM);
  dir = store_dir (fs, parent, &err);
  if (dir == NULL)
    return conatfs_reply_err (req, "unlink", err == EPERM ? ENOENT : err);
  g_mutex_lock (&fs->names_lock); /* no commit sets it again in between */
  err = conatfs_target_of_name (fs, dir, name, FALSE, &target);
  if (err == 0)
    err = conatfs_target_delete (fs, &target);
  if (err == ENOENT && is_pending (fs, dir, name))
    err = 0;
  if (err == 0)
    conatfs_inode_unlink (fs, dir, name);
  g_mutex_unlock (&fs->names_lock);
  if (err == 0)
    conatfs_echo_name_event (fs, parent, name, TRUE);
  conatfs_reply_err (req, "unlink", err);
}

/* ------------------------------------------------------------- rename */

/* Moves a file between store directories: the target gets the source's
 * value, then the source is deleted.  Renaming a local file to a key name
 * saves it (an editor's save-by-rename); a key renamed to a local name
 * leaves the store. */
static int
rename_file (ConatfsFs *fs, ConatfsInode *dir, const char *name, ConatfsInode *new_dir,
             const char *new_name, unsigned int flags)
{
  g_auto (ConatfsTarget) source = { 0 };
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (GBytes) value = NULL;
  int err = conatfs_target_of_name (fs, dir, name, FALSE, &source);

  if (err == 0)
    err = conatfs_target_of_name (fs, new_dir, new_name, TRUE, &target);
  if (err != 0)
    return err;
  value = conatfs_target_get (fs, &source, NULL);
  if (value == NULL && is_pending (fs, dir, name)) /* its open file will set it */
    value = g_bytes_new (NULL, 0);
  if (value == NULL)
    return ENOENT;
  if (source.store == target.store && source.local == target.local
      && strcmp (source.key, target.key) == 0)
    return 0;
  if ((flags & RENAME_NOREPLACE) && conatfs_target_exists (fs, &target))
    return EEXIST;

  err = conatfs_target_set (fs, &target, value);
  if (err != 0)
    return err;
  err = conatfs_target_delete (fs, &source);
  if (err != 0 && err != ENOENT)
    g_warning ("rename: %s was copied to %s but could not be deleted: %s", name, new_name,
               g_strerror (err));
  conatfs_inode_move (fs, dir, name, new_dir, new_name, &target);
  return 0;
}

void
conatfs_op_rename (fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t new_parent,
                   const char *new_name, unsigned int flags)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (fs, parent);
  g_autoptr (ConatfsInode) new_dir = conatfs_inode_get (fs, new_parent);
  ConatfsInodeKind kind, new_kind;
  int err;

  if (dir == NULL || new_dir == NULL)
    return conatfs_reply_err (req, "rename", ENOENT);
  if (flags & ~RENAME_NOREPLACE) /* RENAME_EXCHANGE, RENAME_WHITEOUT */
    return conatfs_reply_err (req, "rename", EINVAL);
  kind = conatfs_inode_kind (fs, dir);
  new_kind = conatfs_inode_kind (fs, new_dir);
  if (conatfs_channel_in_scope (fs, parent, name)
      || conatfs_channel_in_scope (fs, new_parent, new_name))
    err = EPERM; /* a subscription, not data to move (nor to copy: no EXDEV) */
  else if (kind == CONATFS_INODE_STORE && new_kind == CONATFS_INODE_STORE)
    {
      g_mutex_lock (&fs->names_lock);
      err = rename_file (fs, dir, name, new_dir, new_name, flags);
      g_mutex_unlock (&fs->names_lock);
      if (err == 0) /* IN_MOVED_FROM, IN_MOVED_TO */
        {
          conatfs_echo_name_event (fs, parent, name, TRUE);
          conatfs_echo_name_event (fs, new_parent, new_name, FALSE);
        }
    }
  else if (kind == new_kind && (kind == CONATFS_INODE_ROOT || kind == CONATFS_INODE_SCOPE))
    err = EXDEV; /* stores and scopes cannot be renamed: mv copies them */
  else
    err = EPERM;
  conatfs_reply_err (req, "rename", err);
}
