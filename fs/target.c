/* target.c — where a file's bytes live: a key of a store, or a local
 * (editor) file kept in the store directory's memory.
 *
 * A name is local if a local file has it, or if it matches a local pattern
 * and no key has it; names that match a pattern need not decode (an
 * editor's backup of "a%25b" is "a%25b~").  Every file operation resolves
 * its target here, then reads or writes it with the functions below, so the
 * rest of fs/ never asks which kind it has.
 */
#include "fs-private.h"

#include <errno.h>
#include <string.h>

void
conatfs_target_clear (ConatfsTarget *target)
{
  g_clear_pointer (&target->store, conatfs_store_unref);
  g_clear_pointer (&target->key, g_free);
}

/* The target of an open file or of a stat: what INODE names now. */
int
conatfs_target_of_inode (ConatfsFs *fs, ConatfsInode *inode, ConatfsTarget *target)
{
  g_autoptr (ConatfsInode) dir = NULL;
  int err = 0;

  memset (target, 0, sizeof *target);
  g_mutex_lock (&fs->lock);
  if (inode->kind != CONATFS_INODE_KEY && inode->kind != CONATFS_INODE_LOCAL)
    err = EISDIR;
  else if (!inode->linked)
    err = ENOENT;
  else
    {
      dir = conatfs_inode_ref (inode->parent);
      target->key = g_strdup (inode->name);
      target->local = inode->kind == CONATFS_INODE_LOCAL;
    }
  g_mutex_unlock (&fs->lock);
  if (err == 0)
    target->store = conatfs_store_of_dir (fs, dir, &err);
  if (err != 0)
    conatfs_target_clear (target);
  return err;
}

/* A shortened key name: the key it stands for, or NULL. */
static char *
match_shortened (ConatfsStore *store, const char *file_name)
{
  g_autoptr (GPtrArray) keys = conat_dkv_keys (store->kv);

  for (guint i = 0; i < keys->len; i++)
    if (conatfs_name_matches (CONATFS_NAME_KEY, keys->pdata[i], file_name))
      return g_strdup (keys->pdata[i]);
  return NULL;
}

static int
resolve_key (ConatfsFs *fs, ConatfsTarget *target, const char *file_name, gboolean creating)
{
  gboolean pattern = conatfs_name_is_local (fs, file_name);
  g_autofree char *key = NULL;

  switch (conatfs_name_decode (CONATFS_NAME_KEY, file_name, &key))
    {
    case CONATFS_NAME_DECODED:
      if (pattern && creating && !conat_dkv_has (target->store->kv, key, NULL))
        break;
      target->key = g_steal_pointer (&key);
      return 0;
    case CONATFS_NAME_SHORTENED:
      target->key = match_shortened (target->store, file_name);
      if (target->key != NULL)
        return 0;
      if (!pattern)
        return creating ? EINVAL : ENOENT;
      break;
    case CONATFS_NAME_INVALID:
    default:
      if (!pattern)
        return EINVAL;
      break;
    }
  target->key = g_strdup (file_name);
  target->local = TRUE;
  return 0;
}

/* The target of FILE_NAME in the store directory DIR, whether or not it
 * exists; CREATING tells what a new file of that name would be. */
int
conatfs_target_of_name (ConatfsFs *fs, ConatfsInode *dir, const char *file_name,
                        gboolean creating, ConatfsTarget *target)
{
  gboolean have_local;
  int err = 0;

  memset (target, 0, sizeof *target);
  target->store = conatfs_store_of_dir (fs, dir, &err);
  if (target->store == NULL)
    return err;

  g_mutex_lock (&fs->lock);
  have_local = g_hash_table_contains (target->store->locals, file_name);
  g_mutex_unlock (&fs->lock);
  if (have_local)
    {
      target->key = g_strdup (file_name);
      target->local = TRUE;
      return 0;
    }
  err = resolve_key (fs, target, file_name, creating);
  if (err != 0)
    conatfs_target_clear (target);
  return err;
}

static void
time_from_ms (gint64 ms, struct timespec *ts)
{
  if (ms <= 0)
    {
      clock_gettime (CLOCK_REALTIME, ts);
      return;
    }
  ts->tv_sec = ms / 1000;
  ts->tv_nsec = (ms % 1000) * 1000000;
}

/* The current value (a new reference), or NULL if there is none.  MTIME,
 * if not NULL, gets the time of the last change (now if unconfirmed). */
GBytes *
conatfs_target_get (ConatfsFs *fs, const ConatfsTarget *target, struct timespec *mtime)
{
  ConatDkvEntry entry;
  ConatfsLocal *local;
  GBytes *value = NULL;

  if (target->local)
    {
      g_mutex_lock (&fs->lock);
      local = g_hash_table_lookup (target->store->locals, target->key);
      if (local != NULL)
        {
          value = g_bytes_ref (local->value);
          if (mtime)
            *mtime = local->mtime;
        }
      g_mutex_unlock (&fs->lock);
      return value;
    }
  if (!conat_dkv_get_entry (target->store->kv, target->key, &entry, NULL))
    return NULL;
  if (mtime)
    time_from_ms (entry.time_ms, mtime);
  return g_steal_pointer (&entry.value);
}

gboolean
conatfs_target_exists (ConatfsFs *fs, const ConatfsTarget *target)
{
  gboolean exists;

  if (!target->local)
    return conat_dkv_has (target->store->kv, target->key, NULL);
  g_mutex_lock (&fs->lock);
  exists = g_hash_table_contains (target->store->locals, target->key);
  g_mutex_unlock (&fs->lock);
  return exists;
}

/* Sets the value; 0 or an errno. */
int
conatfs_target_set (ConatfsFs *fs, const ConatfsTarget *target, GBytes *value)
{
  g_autoptr (GError) error = NULL;
  ConatfsLocal *local;

  if (target->local)
    {
      local = g_new0 (ConatfsLocal, 1);
      local->value = g_bytes_ref (value);
      clock_gettime (CLOCK_REALTIME, &local->mtime);
      g_mutex_lock (&fs->lock);
      g_hash_table_replace (target->store->locals, g_strdup (target->key), local);
      g_mutex_unlock (&fs->lock);
      return 0;
    }
  g_debug ("set %s/%s/%s (%zu bytes)", target->store->scope, target->store->name, target->key,
           g_bytes_get_size (value));
  if (!conat_dkv_set (target->store->kv, target->key, value, &error))
    return conatfs_fail_at (fs, "set", target->store->scope, target->store->name,
                            target->key, error);
  return 0;
}

/* Deletes the value; ENOENT if there is none. */
int
conatfs_target_delete (ConatfsFs *fs, const ConatfsTarget *target)
{
  g_autoptr (GError) error = NULL;
  gboolean removed;

  if (target->local)
    {
      g_mutex_lock (&fs->lock);
      removed = g_hash_table_remove (target->store->locals, target->key);
      g_mutex_unlock (&fs->lock);
      return removed ? 0 : ENOENT;
    }
  if (!conat_dkv_has (target->store->kv, target->key, NULL))
    return ENOENT;
  g_debug ("delete %s/%s/%s", target->store->scope, target->store->name, target->key);
  if (!conat_dkv_delete (target->store->kv, target->key, &error))
    return conatfs_fail_at (fs, "delete", target->store->scope, target->store->name,
                            target->key, error);
  return 0;
}

/* The largest value the target takes: the backend's limit or the store's. */
gsize
conatfs_target_max_size (const ConatfsTarget *target)
{
  return conatfs_options_max_value (target->store->fs, target->store);
}
