/* embedded-namespace.c — scopes and stores of the embedded backend: their
 * lists (the database's names and the ephemeral ones in memory), creation,
 * removal, kind, options and store_info. */
#define G_LOG_DOMAIN "conat"

#include "embedded-private.h"

#include <string.h>

/* Like embedded_store_find, but fails with NOT_FOUND unless the store exists; fills INFO. */
static gboolean
store_find_existing (EmbeddedBackend *b, const char *scope, const char *name, Found *f,
                     ConatStoreInfo *info, GError **error)
{
  g_autoptr(sqlite3_stmt) st = NULL;
  gboolean row;

  if (!embedded_store_find (b, scope, name, f, error))
    return FALSE;
  if (!f->exists)
    return embedded_fail (error, CONAT_ERROR_NOT_FOUND, "no store %s/%s", scope, name);
  *info = (ConatStoreInfo) { f->ephemeral, 0, 0 };
  memcpy (info->merge, f->config.merge, sizeof info->merge);
  info->limits = f->config.limits;
  if (f->ephemeral)
    {
      info->keys = g_hash_table_size (f->store->entries);
      info->bytes = f->store->bytes;
      return TRUE;
    }
  /* Values past max_age count no more, swept or not. */
  st = embedded_db_query (b, error, "SELECT count(*), coalesce(sum(length(value)), 0) FROM kv"
                                    " WHERE store_id = ?1 AND time_ms > ?2", "ii", f->id,
                          embedded_expiry_cutoff (&f->config, g_get_real_time () / 1000));
  if (st == NULL || !embedded_db_step (b, st, &row, error))
    return FALSE;
  info->keys = (guint64) sqlite3_column_int64 (st, 0);
  info->bytes = (guint64) sqlite3_column_int64 (st, 1);
  return TRUE;
}

/* db_lock held.  Adds to SET the scopes of the existing ephemeral stores or,
 * with SCOPE, the names of those in SCOPE. */
static void
memory_names (EmbeddedBackend *b, const char *scope, GHashTable *set)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, b->stores);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Store *s = value;

      if (s->ephemeral && s->exists && (scope == NULL || strcmp (s->scope, scope) == 0))
        g_hash_table_add (set, g_strdup (scope == NULL ? s->scope : s->name));
    }
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Lists the database's names (SQL with SCOPE as ?1) and memory's, sorted. */
static GPtrArray *
list_names (EmbeddedBackend *b, const char *sql, const char *scope, GError **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  g_autoptr(GHashTable) set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter iter;
  gpointer name;

  if (!embedded_db_collect_names (b, sql, scope, set, error))
    return (g_ptr_array_unref (names), NULL);
  memory_names (b, scope, set);
  g_hash_table_iter_init (&iter, set);
  while (g_hash_table_iter_next (&iter, &name, NULL))
    {
      g_hash_table_iter_steal (&iter);
      g_ptr_array_add (names, name);
    }
  g_ptr_array_sort (names, compare_names);
  return names;
}

GPtrArray *
embedded_list_scopes (ConatBackend *backend, GError **error)
{
  return list_names ((EmbeddedBackend *) backend, "SELECT name FROM scopes", NULL, error);
}

GPtrArray *
embedded_list_stores (ConatBackend *backend, const char *scope, GError **error)
{
  return list_names ((EmbeddedBackend *) backend, "SELECT name FROM stores WHERE scope = ?1",
                     scope, error);
}

typedef enum { SCOPE_ABSENT, SCOPE_EMPTY, SCOPE_HOLDS_STORES } ScopeState;

/* db_lock held. */
static gboolean
scope_state (EmbeddedBackend *b, const char *scope, ScopeState *state, GError **error)
{
  g_autoptr(GHashTable) set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(sqlite3_stmt) st = embedded_db_query (b, error, "SELECT EXISTS (SELECT 1 FROM stores"
                                                  " WHERE scope = ?1), EXISTS (SELECT 1 FROM scopes"
                                                  " WHERE name = ?1)", "s", scope);
  gboolean row;

  if (st == NULL || !embedded_db_step (b, st, &row, error))
    return FALSE;
  memory_names (b, scope, set);
  *state = sqlite3_column_int (st, 0) || g_hash_table_size (set) > 0 ? SCOPE_HOLDS_STORES
           : sqlite3_column_int (st, 1) ? SCOPE_EMPTY : SCOPE_ABSENT;
  return TRUE;
}

gboolean
embedded_has_scope (ConatBackend *backend, const char *scope, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ScopeState state;

  return scope_state (b, scope, &state, error) && state != SCOPE_ABSENT;
}

gboolean
embedded_create_scope (ConatBackend *backend, const char *scope, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ScopeState state;

  if (!scope_state (b, scope, &state, error))
    return FALSE;
  if (state != SCOPE_ABSENT)
    return embedded_fail (error, CONAT_ERROR_EXISTS, "scope %s exists", scope);
  return embedded_db_run (b, embedded_db_query (b, error, "INSERT INTO scopes (name) VALUES (?1)",
                                                "s", scope), error);
}

gboolean
embedded_remove_scope (ConatBackend *backend, const char *scope, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ScopeState state;

  if (!scope_state (b, scope, &state, error))
    return FALSE;
  if (state == SCOPE_ABSENT)
    return embedded_fail (error, CONAT_ERROR_NOT_FOUND, "no scope %s", scope);
  if (state == SCOPE_HOLDS_STORES)
    return embedded_fail (error, CONAT_ERROR_NOT_EMPTY, "scope %s holds stores", scope);
  return embedded_db_run (b, embedded_db_query (b, error, "DELETE FROM scopes WHERE name = ?1",
                                                "s", scope), error);
}

gboolean
embedded_create_store (ConatBackend *backend, const char *scope, const char *name,
                       gboolean ephemeral, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  Found f;

  if (!embedded_store_find (b, scope, name, &f, error))
    return FALSE;
  if (f.exists)
    return embedded_fail (error, CONAT_ERROR_EXISTS, "store %s/%s exists", scope, name);
  if (f.store != NULL)
    return embedded_store_materialise (b, f.store, ephemeral, TRUE, error);
  if (!ephemeral)
    return embedded_db_insert_store (b, scope, name, 0, &f.id, error);
  embedded_store_new (b, scope, name, TRUE, TRUE);
  return TRUE;
}

gboolean
embedded_remove_store (ConatBackend *backend, const char *scope, const char *name,
                       GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ConatStoreInfo info;
  Found f;

  if (!store_find_existing (b, scope, name, &f, &info, error))
    return FALSE;
  if (info.keys > 0)
    return embedded_fail (error, CONAT_ERROR_NOT_EMPTY, "store %s/%s holds keys", scope, name);
  if (!f.ephemeral && !embedded_db_delete_store (b, f.id, error))
    return FALSE;
  if (f.store != NULL)
    {
      f.store->exists = FALSE;
      f.store->id = 0;
      embedded_store_forget_if_unused (b, f.store);
    }
  return TRUE;
}

gboolean
embedded_store_info (ConatBackend *backend, const char *scope, const char *name,
                     ConatStoreInfo *info, gboolean count, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  Found f;

  return store_find_existing (b, scope, name, &f, info, error);
}

/* An empty store changes kind; persistent to ephemeral pins it in memory. */
gboolean
embedded_set_store_ephemeral (ConatBackend *backend, const char *scope, const char *name,
                              gboolean ephemeral, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ConatStoreInfo info;
  Found f;

  if (!store_find_existing (b, scope, name, &f, &info, error))
    return FALSE;
  if (!f.ephemeral == !ephemeral)
    return TRUE;
  if (info.keys > 0)
    return embedded_fail (error, CONAT_ERROR_BUSY, "store %s/%s holds keys", scope, name);
  if (!ephemeral)
    {
      if (!embedded_db_insert_store (b, scope, name, f.store->revision, &f.store->id, error)
          || !embedded_db_save_config (b, f.store->id, &f.config, error))
        return FALSE;
      embedded_store_set_kind (f.store, FALSE, FALSE);
      embedded_store_forget_if_unused (b, f.store);
      return TRUE;
    }
  if (!embedded_db_delete_store (b, f.id, error))
    return FALSE;
  if (f.store == NULL)
    f.store = embedded_store_new (b, scope, name, TRUE, TRUE);
  embedded_store_set_kind (f.store, TRUE, TRUE);
  f.store->id = 0;
  f.store->revision = f.revision;
  f.store->config = f.config;  /* the options keep over a change of kind */
  embedded_store_note_config (b, f.store);
  return TRUE;
}

gboolean
embedded_set_store_config (ConatBackend *backend, const char *scope, const char *name,
                           const char *merge, const ConatStoreLimits *limits, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ConatStoreInfo info;
  Config config;
  Found f;

  if (merge != NULL && strlen (merge) >= sizeof config.merge)
    return embedded_fail (error, CONAT_ERROR_INVALID_ARGUMENT, "unknown merge strategy '%s'",
                          merge);
  if (!store_find_existing (b, scope, name, &f, &info, error))
    return FALSE;
  config = f.config;
  if (merge != NULL)
    strcpy (config.merge, merge);
  if (limits != NULL)
    config.limits = *limits;
  if (!f.ephemeral && !embedded_db_save_config (b, f.id, &config, error))
    return FALSE;
  if (f.store != NULL)
    {
      f.store->config = config;
      embedded_store_note_config (b, f.store);
    }
  return TRUE;
}
