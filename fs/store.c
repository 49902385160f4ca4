/* store.c — the stores this mount has open, and their change events.
 *
 * A store's DKV is opened on first use (a lookup of its directory) with the
 * default options, so it autosaves, and stays open until unmount, rmdir, or
 * a change of its ephemeral flag.  Its change events for writes made
 * elsewhere invalidate the kernel's caches through the notifier thread,
 * then queue the inotify echo (echo.c).
 */
#include "fs-private.h"
#include "echo.h"

#include <string.h>

static char *
store_key (const char *scope, const char *name)
{
  return g_strconcat (scope, "\x01", name, NULL);
}

static void
local_free (gpointer p)
{
  ConatfsLocal *local = p;

  g_bytes_unref (local->value);
  g_free (local);
}

ConatfsStore *
conatfs_store_ref (ConatfsStore *store)
{
  g_atomic_int_inc (&store->refs);
  return store;
}

void
conatfs_store_unref (ConatfsStore *store)
{
  if (store == NULL || !g_atomic_int_dec_and_test (&store->refs))
    return;
  conat_dkv_unref (store->kv);
  g_hash_table_unref (store->locals);
  g_free (store->scope);
  g_free (store->name);
  g_free (store);
}

/* With fs->lock held: the inode of the store's directory, if the kernel
 * knows it. */
static ConatfsInode *
store_dir_inode (ConatfsFs *fs, ConatfsStore *store)
{
  g_autofree char *scope_file = conatfs_name_encode (CONATFS_NAME_SCOPE, store->scope);
  g_autofree char *store_file = conatfs_name_encode (CONATFS_NAME_STORE, store->name);
  g_autofree char *scope_key = conatfs_name_key (FUSE_ROOT_ID, scope_file);
  g_autofree char *store_key_ = NULL;
  ConatfsInode *scope = g_hash_table_lookup (fs->by_name, scope_key);

  if (scope == NULL)
    return NULL;
  store_key_ = conatfs_name_key (scope->ino, store_file);
  return g_hash_table_lookup (fs->by_name, store_key_);
}

/* The inode number of the store's directory if the kernel knows it and
 * FILE_NAME is a shared key there (not a local file), else 0.  With
 * CHILD_INO: the key's inode, if the kernel knows it, is marked stale and
 * its number stored. */
static fuse_ino_t
store_key_dir (ConatfsStore *store, const char *file_name, fuse_ino_t *child_ino)
{
  ConatfsFs *fs = store->fs;
  g_autofree char *child_key = NULL;
  ConatfsInode *dir, *child = NULL;
  fuse_ino_t dir_ino = 0;

  g_mutex_lock (&fs->lock);
  dir = store->closed ? NULL : store_dir_inode (fs, store);
  if (dir != NULL && !g_hash_table_contains (store->locals, file_name))
    dir_ino = dir->ino;
  if (dir_ino != 0 && child_ino != NULL)
    {
      child_key = conatfs_name_key (dir_ino, file_name);
      child = g_hash_table_lookup (fs->by_name, child_key);
    }
  if (child != NULL && child->kind == CONATFS_INODE_KEY)
    {
      child->cache_valid = FALSE;
      *child_ino = child->ino;
    }
  g_mutex_unlock (&fs->lock);
  return dir_ino;
}

/* A confirmed change.  Made elsewhere: the kernel forgets what it cached of
 * the key, and watchers get its events.  A set of this mount's own needs
 * nothing, unless its name is gone for watchers (see echo.c): then they
 * get IN_CREATE. */
static void
store_on_change (ConatDkv *kv, const char *key, GBytes *value, GBytes *prev, gboolean own,
                 gpointer user_data)
{
  ConatfsStore *store = user_data;
  ConatfsFs *fs = store->fs;
  g_autofree char *file_name = NULL;
  fuse_ino_t dir_ino, child_ino = 0;

  if (own && (value == NULL || !conatfs_echo_any_gone (fs)))
    return;
  file_name = conatfs_name_encode (CONATFS_NAME_KEY, key);
  if (own)
    {
      dir_ino = store_key_dir (store, file_name, NULL);
      if (dir_ino != 0)
        conatfs_echo_change (fs, dir_ino, file_name, key, CONATFS_ECHO_SET_HERE, 0);
      return;
    }
  dir_ino = store_key_dir (store, file_name, &child_ino);
  g_debug ("change from elsewhere: %s/%s/%s (%s)", store->scope, store->name, file_name,
           value ? "set" : "deleted");
  if (child_ino != 0 && value != NULL)
    conatfs_notifier_inval_inode (fs->notifier, child_ino);
  if (dir_ino != 0 && (value == NULL || prev == NULL))
    conatfs_notifier_inval_entry (fs->notifier, dir_ino, file_name);
  if (dir_ino != 0 && (value != NULL || prev != NULL)) /* then the inotify events */
    conatfs_echo_change (fs, dir_ino, file_name, key,
                         value == NULL ? CONATFS_ECHO_DELETED
                         : prev == NULL ? CONATFS_ECHO_CREATED : CONATFS_ECHO_MODIFIED,
                         prev ? g_bytes_get_size (prev) : 0);
}

static ConatfsStore *
store_open (ConatfsFs *fs, const char *scope, const char *name, GError **error)
{
  ConatStoreInfo info = { .merge = "lww" };
  ConatDkvOptions opts = { .scope = scope, .name = name };
  g_autoptr (ConatDkv) kv = NULL;
  ConatfsStore *store;

  if (conat_client_store_options (fs->client, scope, name, &info, NULL))
    opts.ephemeral = info.ephemeral;
  if (!conat_merge_lookup (info.merge, &opts.merge))
    opts.merge = NULL;
  kv = conat_dkv_open (fs->client, &opts, error);
  if (kv == NULL)
    return NULL;

  store = g_new0 (ConatfsStore, 1);
  store->refs = 1;
  store->fs = fs;
  store->scope = g_strdup (scope);
  store->name = g_strdup (name);
  store->locals = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, local_free);
  store->kv = conat_dkv_ref (g_steal_pointer (&kv)); /* the open reference moves to the store */
  conatfs_options_init (store, &info);
  store->watch_id = conat_dkv_watch (store->kv, store_on_change, conatfs_store_ref (store),
                                     (GDestroyNotify) conatfs_store_unref);
  return store;
}

/* Stops events and closes the DKV of a store no longer in fs->stores. */
static void
store_shut (ConatfsStore *store)
{
  conat_dkv_unwatch (store->kv, store->watch_id);
  conat_dkv_close (store->kv);
}

/* A new reference to the open store (SCOPE, NAME), opening it if needed. */
ConatfsStore *
conatfs_store_get (ConatfsFs *fs, const char *scope, const char *name, GError **error)
{
  g_autofree char *key = store_key (scope, name);
  ConatfsStore *store, *other;

  g_mutex_lock (&fs->lock);
  store = g_hash_table_lookup (fs->stores, key);
  if (store != NULL)
    conatfs_store_ref (store);
  g_mutex_unlock (&fs->lock);
  if (store != NULL)
    return store;

  store = store_open (fs, scope, name, error);
  if (store == NULL)
    return NULL;
  g_mutex_lock (&fs->lock);
  other = g_hash_table_lookup (fs->stores, key);
  if (other != NULL)
    conatfs_store_ref (other);
  else
    g_hash_table_insert (fs->stores, g_steal_pointer (&key), conatfs_store_ref (store));
  g_mutex_unlock (&fs->lock);

  if (other != NULL) /* lost a race with another open */
    {
      store->closed = TRUE;
      store_shut (store);
      conatfs_store_unref (store);
      return other;
    }
  return store;
}

/* The store a store directory inode shows; NULL with *ERR set. */
ConatfsStore *
conatfs_store_of_dir (ConatfsFs *fs, ConatfsInode *dir, int *err)
{
  g_autofree char *scope = conatfs_inode_scope_name (fs, dir);
  g_autofree char *name = conatfs_inode_name (fs, dir);
  g_autoptr (GError) error = NULL;
  ConatfsStore *store = conatfs_store_get (fs, scope, name, &error);

  if (store == NULL)
    *err = conatfs_fail_at (fs, "open store", scope, name, NULL, error);
  return store;
}

/* Before rmdir or a change of kind: waits until the backend has what this
 * mount changed (the deletes that emptied the store), then closes it. */
int
conatfs_store_save_and_close (ConatfsFs *fs, ConatfsStore *store)
{
  g_autoptr (GError) error = NULL;

  if (!conat_dkv_save (store->kv, CONATFS_FSYNC_TIMEOUT_MS, &error))
    return conatfs_fail_at (fs, "save store", store->scope, store->name, NULL, error);
  conatfs_store_close (fs, store->scope, store->name);
  return 0;
}

/* Takes (SCOPE, NAME) out of the table and closes its DKV, if open.
 * Unsaved changes are dropped: see conatfs_store_save_and_close(). */
void
conatfs_store_close (ConatfsFs *fs, const char *scope, const char *name)
{
  g_autofree char *key = store_key (scope, name);
  gpointer stolen_key = NULL, value = NULL;
  g_autoptr (ConatfsStore) store = NULL;

  g_mutex_lock (&fs->lock);
  if (g_hash_table_steal_extended (fs->stores, key, &stolen_key, &value))
    {
      store = value;
      store->closed = TRUE;
    }
  g_mutex_unlock (&fs->lock);
  g_free (stolen_key);
  if (store != NULL)
    store_shut (store);
}

/* A new reference to (SCOPE, NAME) if this mount has it open, else NULL. */
ConatfsStore *
conatfs_store_find_open (ConatfsFs *fs, const char *scope, const char *name)
{
  g_autofree char *key = store_key (scope, name);
  ConatfsStore *store;

  g_mutex_lock (&fs->lock);
  store = g_hash_table_lookup (fs->stores, key);
  if (store != NULL)
    conatfs_store_ref (store);
  g_mutex_unlock (&fs->lock);
  return store;
}

/* New references to every open store. */
GPtrArray *
conatfs_store_list_open (ConatfsFs *fs)
{
  GPtrArray *stores = g_ptr_array_new_with_free_func ((GDestroyNotify) conatfs_store_unref);
  GHashTableIter iter;
  gpointer value;

  g_mutex_lock (&fs->lock);
  g_hash_table_iter_init (&iter, fs->stores);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (stores, conatfs_store_ref (value));
  g_mutex_unlock (&fs->lock);
  return stores;
}

static void
store_save_at_exit (ConatfsStore *store)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) unsaved = NULL;

  if (conat_dkv_save (store->kv, CONATFS_EXIT_SAVE_TIMEOUT_MS, &error))
    return;
  unsaved = conat_dkv_unsaved_changes (store->kv);
  g_warning ("%s/%s: %u changes not saved: %s", store->scope, store->name, unsaved->len,
             error->message);
}

/* At exit: saves what each store has pending (with a time limit), closes all. */
void
conatfs_store_close_all (ConatfsFs *fs)
{
  g_autoptr (GPtrArray) stores = conatfs_store_list_open (fs);

  for (guint i = 0; i < stores->len; i++)
    {
      ConatfsStore *store = stores->pdata[i];

      store_save_at_exit (store);
      conatfs_store_close (fs, store->scope, store->name);
    }
}

/* The file names a store directory lists: local files, then every key. */
GPtrArray *
conatfs_store_file_names (ConatfsFs *fs, ConatfsStore *store)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) keys = conat_dkv_keys (store->kv);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTableIter iter;
  gpointer file_name;

  g_mutex_lock (&fs->lock);
  g_hash_table_iter_init (&iter, store->locals);
  while (g_hash_table_iter_next (&iter, &file_name, NULL))
    {
      g_ptr_array_add (names, g_strdup (file_name));
      g_hash_table_add (seen, names->pdata[names->len - 1]);
    }
  g_mutex_unlock (&fs->lock);

  for (guint i = 0; i < keys->len; i++)
    {
      char *encoded = conatfs_name_encode (CONATFS_NAME_KEY, keys->pdata[i]);

      if (g_hash_table_contains (seen, encoded))
        g_free (encoded);
      else
        g_ptr_array_add (names, encoded);
    }
  return names;
}

gboolean
conatfs_store_is_empty (ConatfsFs *fs, ConatfsStore *store)
{
  gboolean empty;

  g_mutex_lock (&fs->lock);
  empty = g_hash_table_size (store->locals) == 0;
  g_mutex_unlock (&fs->lock);
  return empty && conat_dkv_length (store->kv, NULL) == 0;
}
