/* options.c — a store's options and usage as xattrs of its directory, the
 * options each open store keeps in memory, and statfs.
 *
 *   user.conat.merge           lww | lines | json          (EINVAL otherwise)
 *   user.conat.max_value_size  bytes of one value          decimal, 0 = none
 *   user.conat.max_age         milliseconds                decimal, 0 = none
 *   user.conat.max_bytes       bytes of all values         decimal, 0 = none
 *   user.conat.max_keys        number of keys              decimal, 0 = none
 *   user.conat.keys            keys the backend holds      read-only
 *   user.conat.bytes           value bytes it holds        read-only
 *
 * Options are kept by the backend with the store, so every mount shares
 * them.  Each open store remembers them: its DKV merges with the store's
 * strategy, and a file opened for writing refuses (EFBIG) to grow past the
 * value limit.  A change made through this mount applies at once; one made
 * elsewhere is picked up at the next getxattr of the store, or at the first
 * listing of the store or file open for writing CONATFS_OPTIONS_TTL_US (5 s)
 * after the last look.
 *
 * statfs tells the stores this mount has open: f_files - f_ffree is their
 * keys and f_blocks - f_bfree the 4 KiB blocks of their values, as this
 * mount sees them; the totals are nominal (STATFS_BLOCKS, STATFS_FILES).
 */
#include "fs-private.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

#define XATTR_MERGE "user.conat.merge"
#define XATTR_MAX_VALUE_SIZE "user.conat.max_value_size"
#define XATTR_MAX_AGE "user.conat.max_age"
#define XATTR_MAX_BYTES "user.conat.max_bytes"
#define XATTR_MAX_KEYS "user.conat.max_keys"
#define XATTR_KEYS "user.conat.keys"
#define XATTR_BYTES "user.conat.bytes"

#define STATFS_BSIZE 4096
#define STATFS_BLOCKS (G_GUINT64_CONSTANT (1) << 28)  /* 1 TiB */
#define STATFS_FILES (G_GUINT64_CONSTANT (1) << 32)

const char *const conatfs_store_xattr_names[] = {
  XATTR_MERGE, XATTR_MAX_VALUE_SIZE, XATTR_MAX_AGE, XATTR_MAX_BYTES, XATTR_MAX_KEYS,
  XATTR_KEYS, XATTR_BYTES, NULL,
};

/* The limit field NAME stands for, or NULL. */
static gint64 *
limit_field (ConatStoreLimits *limits, const char *name)
{
  if (strcmp (name, XATTR_MAX_VALUE_SIZE) == 0)
    return &limits->max_value_size;
  if (strcmp (name, XATTR_MAX_AGE) == 0)
    return &limits->max_age_ms;
  if (strcmp (name, XATTR_MAX_BYTES) == 0)
    return &limits->max_bytes;
  if (strcmp (name, XATTR_MAX_KEYS) == 0)
    return &limits->max_keys;
  return NULL;
}

gboolean
conatfs_options_is_store_xattr (const char *name)
{
  for (guint i = 0; conatfs_store_xattr_names[i] != NULL; i++)
    if (strcmp (name, conatfs_store_xattr_names[i]) == 0)
      return TRUE;
  return FALSE;
}

/* ------------------------------------------------- options of open stores */

/* STORE learns INFO: its DKV gets the store's merge strategy. */
static void
options_note (ConatfsFs *fs, ConatfsStore *store, const ConatStoreInfo *info)
{
  ConatMergeFunc merge = NULL;
  gboolean changed;

  g_mutex_lock (&fs->lock);
  changed = strcmp (store->merge, info->merge) != 0;
  memcpy (store->merge, info->merge, sizeof store->merge);
  store->limits = info->limits;
  store->options_us = g_get_monotonic_time ();
  g_mutex_unlock (&fs->lock);
  if (changed && conat_merge_lookup (info->merge, &merge))
    {
      g_debug ("%s/%s: merge strategy %s", store->scope, store->name, info->merge);
      conat_dkv_set_merge (store->kv, merge, NULL);
    }
}

/* Called when STORE opens with INFO, before it is shared. */
void
conatfs_options_init (ConatfsStore *store, const ConatStoreInfo *info)
{
  memcpy (store->merge, info->merge, sizeof store->merge);
  store->limits = info->limits;
  store->options_us = g_get_monotonic_time ();
}

/* Reads the options again if they are older than CONATFS_OPTIONS_TTL_US. */
void
conatfs_options_refresh (ConatfsFs *fs, ConatfsStore *store)
{
  ConatStoreInfo info;
  gboolean fresh;

  g_mutex_lock (&fs->lock);
  fresh = g_get_monotonic_time () - store->options_us < CONATFS_OPTIONS_TTL_US;
  g_mutex_unlock (&fs->lock);
  if (!fresh && conat_client_store_options (fs->client, store->scope, store->name, &info, NULL))
    options_note (fs, store, &info);
}

/* The largest value a file of STORE may hold. */
gsize
conatfs_options_max_value (ConatfsFs *fs, ConatfsStore *store)
{
  gsize max = conat_dkv_max_value_size (store->kv);
  gint64 limit;

  g_mutex_lock (&fs->lock);
  limit = store->limits.max_value_size;
  g_mutex_unlock (&fs->lock);
  return limit > 0 && (guint64) limit < max ? (gsize) limit : max;
}

/* Whether the backend may refuse a write to STORE for its limits. */
gboolean
conatfs_options_has_limits (ConatfsFs *fs, ConatfsStore *store)
{
  gboolean limited;

  g_mutex_lock (&fs->lock);
  limited = store->limits.max_value_size > 0 || store->limits.max_bytes > 0
            || store->limits.max_keys > 0;
  g_mutex_unlock (&fs->lock);
  return limited;
}

/* ------------------------------------------------------------------ xattrs */

/* The store info of the store directory DIR, noted by the open store. */
static gboolean
dir_info (ConatfsFs *fs, ConatfsInode *dir, ConatStoreInfo *info, int *err)
{
  g_autofree char *scope = conatfs_inode_scope_name (fs, dir);
  g_autofree char *name = conatfs_inode_name (fs, dir);
  g_autoptr (ConatfsStore) store = NULL;
  g_autoptr (GError) error = NULL;

  if (!conat_client_store_info (fs->client, scope, name, info, &error))
    {
      *err = conatfs_fail_at (fs, "store info", scope, name, NULL, error);
      return FALSE;
    }
  store = conatfs_store_find_open (fs, scope, name);
  if (store != NULL)
    options_note (fs, store, info);
  return TRUE;
}

char *
conatfs_options_get (ConatfsFs *fs, ConatfsInode *dir, const char *name, int *err)
{
  ConatStoreInfo info;
  gint64 *limit;

  if (!dir_info (fs, dir, &info, err))
    return NULL;
  if (strcmp (name, XATTR_MERGE) == 0)
    return g_strdup (info.merge);
  if (strcmp (name, XATTR_KEYS) == 0)
    return g_strdup_printf ("%" G_GUINT64_FORMAT, info.keys);
  if (strcmp (name, XATTR_BYTES) == 0)
    return g_strdup_printf ("%" G_GUINT64_FORMAT, info.bytes);
  if ((limit = limit_field (&info.limits, name)) != NULL)
    return g_strdup_printf ("%" G_GINT64_FORMAT, *limit);
  *err = ENODATA;
  return NULL;
}

/* A decimal number of VALUE's SIZE bytes (a final newline allowed). */
static gboolean
parse_limit (const char *value, size_t size, gint64 *out)
{
  g_autofree char *text = g_strndup (value, size);
  guint64 n;

  if (size > 0 && text[size - 1] == '\n')
    text[size - 1] = '\0';
  if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT64, &n, NULL))
    return FALSE;
  *out = (gint64) n;
  return TRUE;
}

/* Sets option NAME of the store directory DIR; 0 or an errno.  Read-only
 * attributes are ENOTSUP, as in xattr.c. */
int
conatfs_options_set (ConatfsFs *fs, ConatfsInode *dir, const char *name, const char *value,
                     size_t size)
{
  g_autofree char *scope = conatfs_inode_scope_name (fs, dir);
  g_autofree char *store_name = conatfs_inode_name (fs, dir);
  g_autofree char *text = g_strndup (value, size);
  g_autoptr (GError) error = NULL;
  ConatMergeFunc merge;
  ConatStoreInfo info;
  gint64 *limit;
  int err = 0;

  if (strcmp (name, XATTR_MERGE) == 0)
    {
      g_strchomp (text);
      if (!conat_merge_lookup (text, &merge))
        return EINVAL;
      if (!conat_client_set_store_merge (fs->client, scope, store_name, text, &error))
        return conatfs_fail_at (fs, "set merge", scope, store_name, NULL, error);
    }
  else if ((limit = limit_field (&info.limits, name)) != NULL)
    {
      gint64 n;

      if (!parse_limit (value, size, &n))
        return EINVAL;
      if (!dir_info (fs, dir, &info, &err))
        return err;
      *limit = n;
      if (!conat_client_set_store_limits (fs->client, scope, store_name, &info.limits, &error))
        return conatfs_fail_at (fs, "set limits", scope, store_name, NULL, error);
    }
  else
    return ENOTSUP;
  return dir_info (fs, dir, &info, &err) ? 0 : err;
}

/* ------------------------------------------------------------------ statfs */

void
conatfs_op_statfs (fuse_req_t req, fuse_ino_t ino)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (GPtrArray) stores = conatfs_store_list_open (fs);
  guint64 keys = 0, blocks = 0;
  struct statvfs st = { 0 };

  for (guint i = 0; i < stores->len; i++)
    {
      ConatfsStore *store = stores->pdata[i];
      g_autoptr (GHashTable) all = conat_dkv_get_all (store->kv, NULL);
      GHashTableIter iter;
      gpointer value;

      if (all == NULL)
        continue;
      keys += g_hash_table_size (all);
      g_hash_table_iter_init (&iter, all);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        blocks += (g_bytes_get_size (value) + STATFS_BSIZE - 1) / STATFS_BSIZE;
    }
  st.f_bsize = st.f_frsize = STATFS_BSIZE;
  st.f_blocks = STATFS_BLOCKS;
  st.f_bfree = st.f_bavail = STATFS_BLOCKS - MIN (blocks, STATFS_BLOCKS);
  st.f_files = STATFS_FILES;
  st.f_ffree = st.f_favail = STATFS_FILES - MIN (keys, STATFS_FILES);
  st.f_namemax = CONATFS_NAME_MAX;
  fuse_reply_statfs (req, &st);
}
