/* xattr.c — extended attributes (DESIGN §2):
 *
 *   keys      user.conat.revision  the server's sequence number, decimal
 *             user.conat.time      the server's time of the change, decimal
 *                                  milliseconds since the epoch
 *             (both ENODATA until the server confirmed the value)
 *   stores    user.conat.ephemeral "1" or "0"; settable on an empty store
 *             user.conat.merge, max_value_size, max_age, max_bytes,
 *             max_keys, keys, bytes: see options.c
 *   channels  user.conat.name      the channel's name, as sent (without "@")
 *             user.conat.path      the file path of @NAME:PATH (absent for @NAME)
 *   all       user.conat.name      the full decoded name
 */
#include "fs-private.h"

#include "channel-format.h"

#include <errno.h>
#include <string.h>

#define XATTR_NAME "user.conat.name"
#define XATTR_PATH "user.conat.path"
#define XATTR_REVISION "user.conat.revision"
#define XATTR_TIME "user.conat.time"
#define XATTR_EPHEMERAL "user.conat.ephemeral"

static const char *const xattr_names[] = {
  XATTR_NAME, XATTR_PATH, XATTR_REVISION, XATTR_TIME, XATTR_EPHEMERAL,
};

static char *
key_xattr (ConatfsFs *fs, ConatfsInode *inode, const char *name, int *err)
{
  g_auto (ConatfsTarget) target = { 0 };
  ConatDkvEntry entry;
  char *value = NULL;

  *err = conatfs_target_of_inode (fs, inode, &target);
  if (*err != 0)
    return NULL;
  if (target.local || !conat_dkv_get_entry (target.store->kv, target.key, &entry, NULL))
    {
      *err = ENODATA;
      return NULL;
    }
  if (entry.revision == 0)
    *err = ENODATA;
  else if (strcmp (name, XATTR_REVISION) == 0)
    value = g_strdup_printf ("%" G_GUINT64_FORMAT, entry.revision);
  else
    value = g_strdup_printf ("%" G_GINT64_FORMAT, entry.time_ms);
  conat_dkv_entry_clear (&entry);
  return value;
}

static char *
store_ephemeral_xattr (ConatfsFs *fs, ConatfsInode *inode, int *err)
{
  g_autofree char *scope = conatfs_inode_scope_name (fs, inode);
  g_autofree char *store = conatfs_inode_name (fs, inode);
  g_autoptr (GError) error = NULL;
  ConatStoreInfo info;

  if (!conat_client_store_info (fs->client, scope, store, &info, &error))
    {
      *err = conatfs_fail_at (fs, "store info", scope, store, NULL, error);
      return NULL;
    }
  return g_strdup (info.ephemeral ? "1" : "0");
}

/* The channel's name or path, from its file name; NULL if it has no path. */
static char *
channel_xattr (ConatfsFs *fs, ConatfsInode *inode, const char *name)
{
  g_autofree char *file_name = conatfs_inode_name (fs, inode);
  g_autofree char *channel = NULL;
  g_autofree char *path = NULL;

  if (!conatfs_channel_name_parse (file_name, &channel, &path))
    return NULL;
  return strcmp (name, XATTR_NAME) == 0 ? g_steal_pointer (&channel) : g_steal_pointer (&path);
}

/* The value of attribute NAME of INODE, or NULL with *ERR set. */
static char *
xattr_get (ConatfsFs *fs, ConatfsInode *inode, const char *name, int *err)
{
  ConatfsInodeKind kind = conatfs_inode_kind (fs, inode);
  gboolean file = kind == CONATFS_INODE_KEY || kind == CONATFS_INODE_LOCAL;

  *err = ENODATA;
  if ((strcmp (name, XATTR_NAME) == 0 || strcmp (name, XATTR_PATH) == 0)
      && kind == CONATFS_INODE_CHANNEL)
    return channel_xattr (fs, inode, name);
  if (strcmp (name, XATTR_NAME) == 0 && (file || kind == CONATFS_INODE_SCOPE
                                         || kind == CONATFS_INODE_STORE))
    return conatfs_inode_name (fs, inode);
  if ((strcmp (name, XATTR_REVISION) == 0 || strcmp (name, XATTR_TIME) == 0) && file)
    return key_xattr (fs, inode, name, err);
  if (strcmp (name, XATTR_EPHEMERAL) == 0 && kind == CONATFS_INODE_STORE)
    return store_ephemeral_xattr (fs, inode, err);
  if (conatfs_options_is_store_xattr (name) && kind == CONATFS_INODE_STORE)
    return conatfs_options_get (fs, inode, name, err);
  return NULL;
}

/* Replies to a getxattr or listxattr of SIZE with the LEN bytes of VALUE. */
static void
reply_xattr (fuse_req_t req, const char *op, const char *value, size_t len, size_t size)
{
  if (size == 0)
    fuse_reply_xattr (req, len);
  else if (len > size)
    conatfs_reply_err (req, op, ERANGE);
  else
    fuse_reply_buf (req, value, len);
}

void
conatfs_op_getxattr (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) inode = conatfs_inode_get (fs, ino);
  g_autofree char *value = NULL;
  int err = ENOENT;

  if (inode != NULL)
    value = xattr_get (fs, inode, name, &err);
  if (value == NULL)
    return conatfs_reply_err (req, "getxattr", err);
  reply_xattr (req, "getxattr", value, strlen (value), size);
}

void
conatfs_op_listxattr (fuse_req_t req, fuse_ino_t ino, size_t size)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) inode = conatfs_inode_get (fs, ino);
  g_autoptr (GString) list = g_string_new (NULL);

  if (inode == NULL)
    return conatfs_reply_err (req, "listxattr", ENOENT);
  for (gsize i = 0; i < G_N_ELEMENTS (xattr_names); i++)
    {
      g_autofree char *value = NULL;
      int err;

      value = xattr_get (fs, inode, xattr_names[i], &err);
      if (value != NULL)
        g_string_append_len (list, xattr_names[i], strlen (xattr_names[i]) + 1);
    }
  /* A store has them all (each getxattr asks the backend, so not here). */
  for (gsize i = 0; conatfs_inode_kind (fs, inode) == CONATFS_INODE_STORE
                    && conatfs_store_xattr_names[i] != NULL; i++)
    g_string_append_len (list, conatfs_store_xattr_names[i],
                         strlen (conatfs_store_xattr_names[i]) + 1);
  reply_xattr (req, "listxattr", list->str, list->len, size);
}

/* Makes an empty store ephemeral (or persistent).  This mount closes its
 * DKV of the store first and opens it again, with the new kind, on next use. */
static int
set_ephemeral (ConatfsFs *fs, ConatfsInode *inode, const char *value, size_t size)
{
  g_autofree char *scope = conatfs_inode_scope_name (fs, inode);
  g_autofree char *name = conatfs_inode_name (fs, inode);
  g_autoptr (ConatfsStore) store = NULL;
  g_autoptr (GError) error = NULL;
  ConatStoreInfo info;
  int err = 0;

  if (size != 1 || (value[0] != '0' && value[0] != '1'))
    return EINVAL;
  if (!conat_client_store_info (fs->client, scope, name, &info, &error))
    return conatfs_fail_at (fs, "store info", scope, name, NULL, error);
  if (info.ephemeral == (value[0] == '1')) /* as it is: fine even if not empty */
    return 0;
  store = conatfs_store_of_dir (fs, inode, &err);
  if (store == NULL)
    return err;
  if (!conatfs_store_is_empty (fs, store))
    return EBUSY;
  err = conatfs_store_save_and_close (fs, store);
  if (err != 0)
    return err;
  if (!conat_client_set_store_ephemeral (fs->client, scope, name, value[0] == '1', &error))
    return conatfs_fail_at (fs, "set ephemeral", scope, name, NULL, error);
  return 0;
}

static gboolean
is_known (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (xattr_names); i++)
    if (strcmp (name, xattr_names[i]) == 0)
      return TRUE;
  return conatfs_options_is_store_xattr (name);
}

/* Other attributes cannot be set: ENOTSUP, which cp -a and mv pass over
 * quietly when they copy attributes. */
void
conatfs_op_setxattr (fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                     size_t size, int flags)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) inode = conatfs_inode_get (fs, ino);
  int err = ENOTSUP;

  if (inode == NULL)
    err = ENOENT;
  else if (strcmp (name, XATTR_EPHEMERAL) == 0
           && conatfs_inode_kind (fs, inode) == CONATFS_INODE_STORE)
    err = set_ephemeral (fs, inode, value, size);
  else if (conatfs_options_is_store_xattr (name)
           && conatfs_inode_kind (fs, inode) == CONATFS_INODE_STORE)
    err = conatfs_options_set (fs, inode, name, value, size);
  conatfs_reply_err (req, "setxattr", err);
}

void
conatfs_op_removexattr (fuse_req_t req, fuse_ino_t ino, const char *name)
{
  conatfs_reply_err (req, "removexattr", is_known (name) ? EPERM : ENODATA);
}
