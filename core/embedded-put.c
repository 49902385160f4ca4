/* embedded-put.c — writes of the embedded backend: put_many applies a batch
 * under db_lock in one SQLite transaction (or to the memory of an ephemeral
 * store), checks each put against compare-and-set and the store's limits,
 * deletes the values past max_age first, and records the changes the
 * handles are told of.  The dispatcher's sweep of old values is here too. */
#define G_LOG_DOMAIN "conat"

#include "embedded-private.h"

/* The revision (0: absent) and value size of KEY. */
static int
key_lookup (EmbeddedBackend *b, Store *s, const char *key, guint64 *revision, gint64 *size)
{
  sqlite3_stmt *st = b->stmts[ST_KV_REVISION];
  Entry *e = s->ephemeral ? g_hash_table_lookup (s->entries, key) : NULL;
  int rc;

  *revision = e != NULL ? e->revision : 0;
  *size = e != NULL ? (gint64) g_bytes_get_size (e->value) : 0;
  if (s->ephemeral)
    return SQLITE_OK;
  sqlite3_bind_int64 (st, 1, s->id);
  embedded_db_bind_name (st, 2, key);
  rc = sqlite3_step (st);
  *revision = rc == SQLITE_ROW ? (guint64) sqlite3_column_int64 (st, 0) : 0;
  *size = rc == SQLITE_ROW ? sqlite3_column_int64 (st, 1) : 0;
  sqlite3_reset (st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* What a batch knows of its store's keys and value bytes: read once, when a
 * limit first needs it, then kept up to date by the batch. */
typedef struct {
  gboolean known;
  gint64 keys;
  gint64 bytes;
} Usage;

static int
usage_read (EmbeddedBackend *b, Store *s, Usage *u)
{
  g_autoptr(sqlite3_stmt) st = NULL;
  int rc;

  u->known = TRUE;
  u->keys = s->ephemeral ? g_hash_table_size (s->entries) : 0;
  u->bytes = s->ephemeral ? (gint64) s->bytes : 0;
  if (s->ephemeral)
    return SQLITE_OK;
  rc = sqlite3_prepare_v2 (b->db, "SELECT count(*), coalesce(sum(length(value)), 0) FROM kv"
                           " WHERE store_id = ?1", -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_int64 (st, 1, s->id);
  if ((rc = sqlite3_step (st)) != SQLITE_ROW)
    return rc;
  u->keys = sqlite3_column_int64 (st, 0);
  u->bytes = sqlite3_column_int64 (st, 1);
  return SQLITE_OK;
}

/* Refuses a write of SIZE bytes to a key that EXISTS with OLD bytes, if it
 * takes a key or bytes the store's limits do not have. */
static void
limits_check (const ConatStoreLimits *lim, const Usage *u, gboolean exists, gint64 old,
              gsize size, GError **error)
{
  if (!exists && lim->max_keys > 0 && u->keys >= lim->max_keys)
    embedded_fail (error, CONAT_ERROR_NO_SPACE, "the store holds %" G_GINT64_FORMAT
                   " keys, its limit", u->keys);
  else if (lim->max_bytes > 0 && (gint64) size > old && u->bytes - old + (gint64) size > lim->max_bytes)
    embedded_fail (error, CONAT_ERROR_NO_SPACE, "%" G_GSIZE_FORMAT " bytes more would take the"
                   " store over its limit of %" G_GINT64_FORMAT " bytes", size - old,
                   lim->max_bytes);
}

/* Writes P to the memory of an ephemeral store.  FALSE: deleted a missing key. */
static gboolean
memory_write (Store *s, const ConatPut *p, guint64 revision, gint64 time_ms)
{
  Entry *old = g_hash_table_lookup (s->entries, p->key);
  Entry *e;

  if (old != NULL)
    s->bytes -= g_bytes_get_size (old->value);
  if (p->value == NULL)
    return g_hash_table_remove (s->entries, p->key);
  e = g_new (Entry, 1);
  *e = (Entry) { g_bytes_ref (p->value), revision, time_ms };
  g_hash_table_replace (s->entries, g_strdup (p->key), e);
  s->bytes += g_bytes_get_size (p->value);
  return TRUE;
}

/* Writes P with REVISION; *APPLIED is FALSE for the delete of a missing key. */
static int
key_write (EmbeddedBackend *b, Store *s, const ConatPut *p, guint64 revision, gint64 time_ms,
           gboolean *applied)
{
  sqlite3_stmt *st = b->stmts[p->value != NULL ? ST_KV_PUT : ST_KV_DELETE];
  gsize size = 0;
  const void *data = p->value != NULL ? g_bytes_get_data (p->value, &size) : NULL;
  int rc;

  if (s->ephemeral)
    {
      *applied = memory_write (s, p, revision, time_ms);
      return SQLITE_OK;
    }
  sqlite3_bind_int64 (st, 1, s->id);
  embedded_db_bind_name (st, 2, p->key);
  if (p->value != NULL)
    {
      sqlite3_bind_blob64 (st, 3, size > 0 ? data : "", size, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 4, (sqlite3_int64) revision);
      sqlite3_bind_int64 (st, 5, time_ms);
    }
  rc = sqlite3_step (st);
  sqlite3_reset (st);
  *applied = p->value != NULL || sqlite3_changes (b->db) > 0;
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Applies one put of the batch.  Returns SQLITE_OK (applied, or a per-item
 * error in P) or the SQLite failure that aborts the batch. */
static int
put_apply (EmbeddedBackend *b, Store *s, ConatPut *p, guint64 *revision, gint64 time_ms,
           Usage *usage, GArray *changes)
{
  const ConatStoreLimits *lim = &s->config.limits;
  gsize size = p->value != NULL ? g_bytes_get_size (p->value) : 0;
  gboolean counted = lim->max_keys > 0 || lim->max_bytes > 0;
  guint64 current = 0;
  gint64 old = 0;
  gboolean applied;
  int rc = SQLITE_OK;

  if (p->value != NULL && size > MAX_VALUE_SIZE)
    embedded_fail (&p->error, CONAT_ERROR_TOO_BIG, "value of %" G_GSIZE_FORMAT
                   " bytes is over the limit of %d bytes", size, MAX_VALUE_SIZE);
  else if (p->value != NULL && lim->max_value_size > 0 && (gint64) size > lim->max_value_size)
    embedded_fail (&p->error, CONAT_ERROR_TOO_BIG, "value of %" G_GSIZE_FORMAT " bytes is over the"
                   " store's limit of %" G_GINT64_FORMAT " bytes", size, lim->max_value_size);
  else if ((p->cas || counted) && (rc = key_lookup (b, s, p->key, &current, &old)) != SQLITE_OK)
    return rc;
  else if (p->cas && current != p->expected_revision)
    embedded_fail (&p->error, CONAT_ERROR_WRONG_REVISION, "wrong last sequence");
  else if (counted && p->value != NULL && !usage->known && (rc = usage_read (b, s, usage)) != SQLITE_OK)
    return rc;
  else if (counted && p->value != NULL)
    limits_check (lim, usage, current != 0, old, size, &p->error);
  if (p->error != NULL)
    return SQLITE_OK;
  if ((rc = key_write (b, s, p, *revision + 1, time_ms, &applied)) != SQLITE_OK || !applied)
    return rc;
  if (usage->known)
    {
      usage->keys += (p->value != NULL) - (current != 0);
      usage->bytes += (gint64) size - old;
    }
  p->revision = ++*revision;
  p->time_ms = time_ms;
  embedded_changes_add (changes, p->key, p->value, p->revision, time_ms, p->writer_id, p->gen);
  return SQLITE_OK;
}

/* Deletes the values of S past its max_age, each at a new revision. */
static int
expire_apply (EmbeddedBackend *b, Store *s, guint64 *revision, gint64 time_ms, GArray *changes)
{
  gint64 cutoff = embedded_expiry_cutoff (&s->config, time_ms);
  g_autoptr(GPtrArray) keys = NULL;
  g_autoptr(sqlite3_stmt) st = NULL;
  GHashTableIter iter;
  gpointer key, value;
  int rc = SQLITE_OK;

  if (cutoff == G_MININT64)
    return SQLITE_OK;
  keys = g_ptr_array_new_with_free_func (g_free);
  if (s->ephemeral)
    {
      g_hash_table_iter_init (&iter, s->entries);
      while (g_hash_table_iter_next (&iter, &key, &value))
        if (((Entry *) value)->time_ms <= cutoff)
          g_ptr_array_add (keys, g_strdup (key));
    }
  else if ((rc = sqlite3_prepare_v2 (b->db, "SELECT key FROM kv WHERE store_id = ?1"
                                     " AND time_ms <= ?2 ORDER BY revision", -1, &st,
                                     NULL)) == SQLITE_OK)
    {
      sqlite3_bind_int64 (st, 1, s->id);
      sqlite3_bind_int64 (st, 2, cutoff);
      while ((rc = sqlite3_step (st)) == SQLITE_ROW)
        g_ptr_array_add (keys, embedded_db_column_name (st, 0));
      rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
  for (guint i = 0; i < keys->len && rc == SQLITE_OK; i++)
    {
      ConatPut del = { .key = keys->pdata[i] };
      gboolean applied;

      if ((rc = key_write (b, s, &del, *revision + 1, time_ms, &applied)) == SQLITE_OK && applied)
        embedded_changes_add (changes, del.key, NULL, ++*revision, time_ms, 0, 0);
    }
  return rc;
}

static void
puts_reset (ConatPut *puts, guint n, const GError *error)
{
  for (guint i = 0; i < n; i++)
    {
      puts[i].revision = 0;
      puts[i].time_ms = 0;
      g_clear_error (&puts[i].error);
      puts[i].error = error != NULL ? g_error_copy (error) : NULL;
    }
}

/* The transaction failed and is rolled back: nothing was applied.  The
 * batch as a whole failed, so the caller keeps it and tries again later: a
 * full disk (NO_SPACE) is a passing state, not a verdict on the values. */
static gboolean
put_batch_failed (EmbeddedBackend *b, ConatPut *puts, guint n, GArray *changes, int rc,
                  GError **error)
{
  embedded_db_fail (b, rc, error);
  if (!sqlite3_get_autocommit (b->db))
    sqlite3_exec (b->db, "ROLLBACK", NULL, NULL, NULL);
  g_array_set_size (changes, 0);
  puts_reset (puts, n, NULL);
  return FALSE;
}

/* db_lock held.  Applies the batch to S in one transaction. */
gboolean
embedded_put_batch (EmbeddedBackend *b, Store *s, ConatPut *puts, guint n, GArray *changes,
                    GError **error)
{
  sqlite3_stmt *st = b->stmts[ST_STORE_REVISION];
  gint64 time_ms = g_get_real_time () / 1000;
  guint64 revision = s->revision;
  Usage usage = { FALSE, 0, 0 };
  int rc = s->ephemeral ? SQLITE_OK : sqlite3_exec (b->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

  if (rc == SQLITE_OK)
    rc = expire_apply (b, s, &revision, time_ms, changes);
  for (guint i = 0; i < n && rc == SQLITE_OK; i++)
    rc = put_apply (b, s, &puts[i], &revision, time_ms, &usage, changes);
  if (rc == SQLITE_OK && !s->ephemeral && revision != s->revision)
    {
      sqlite3_bind_int64 (st, 1, (sqlite3_int64) revision);
      sqlite3_bind_int64 (st, 2, s->id);
      rc = sqlite3_step (st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode (b->db);
      sqlite3_reset (st);
    }
  if (rc == SQLITE_OK && !s->ephemeral)
    rc = sqlite3_exec (b->db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return put_batch_failed (b, puts, n, changes, rc, error);
  s->revision = revision;
  return TRUE;
}

gboolean
embedded_put_many (ConatBackendStore *h, ConatPut *puts, guint n, GError **error)
{
  Store *s = h->store;
  EmbeddedBackend *b = s->backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  g_autoptr(GArray) changes = embedded_changes_new ();

  puts_reset (puts, n, NULL);
  if (g_atomic_int_get (&h->r.closing))
    return embedded_fail (error, CONAT_ERROR_CLOSED, "store %s/%s is closed", s->scope, s->name);
  if (!s->exists && !embedded_store_materialise (b, s, s->ephemeral, FALSE, error))
    return FALSE;
  if (!embedded_put_batch (b, s, puts, n, changes, error))
    return FALSE;
  if (changes->len > 0)
    embedded_event_push (b, s->handles, g_steal_pointer (&changes), NULL);
  return TRUE;
}

/* The dispatcher, every SWEEP_US while a store in memory has a max_age:
 * deletes what is past it and tells the handles. */
void
embedded_backend_sweep (EmbeddedBackend *b)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  gboolean any = FALSE;
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, b->stores);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Store *s = value;
      g_autoptr(GArray) changes = NULL;
      g_autoptr(GError) error = NULL;

      if (!s->exists || s->config.limits.max_age_ms <= 0)
        continue;
      any = TRUE;
      changes = embedded_changes_new ();
      if (!embedded_put_batch (b, s, NULL, 0, changes, &error))
        g_warning ("removing old values of %s/%s: %s", s->scope, s->name, error->message);
      else if (changes->len > 0)
        embedded_event_push (b, s->handles, g_steal_pointer (&changes), NULL);
    }
  if (!any)
    g_atomic_int_set (&b->sweep, 0);
}
