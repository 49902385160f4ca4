/* embedded-db.c — the SQLite side of the embedded backend: the schema and
 * its migration, the prepared statements, and the embedded_db_ helpers that
 * query, step and report errors.  All of them run with db_lock held. */
#define G_LOG_DOMAIN "conat"

#include <stdarg.h>
#include <string.h>

#include "embedded-private.h"

#define SCHEMA_VERSION 2
#define BUSY_TIMEOUT_MS 5000

static const char *const statement_sql[N_STATEMENTS] = {
  [ST_KV_REVISION] = "SELECT revision, length(value) FROM kv WHERE store_id = ?1 AND key = ?2",
  [ST_KV_PUT] = "INSERT OR REPLACE INTO kv (store_id, key, value, revision, time_ms)"
                " VALUES (?1, ?2, ?3, ?4, ?5)",
  [ST_KV_DELETE] = "DELETE FROM kv WHERE store_id = ?1 AND key = ?2",
  [ST_STORE_REVISION] = "UPDATE stores SET revision = ?1 WHERE id = ?2",
};

static const char schema_sql[] =
  "BEGIN IMMEDIATE;"
  "CREATE TABLE scopes (name BLOB PRIMARY KEY) WITHOUT ROWID;"
  "CREATE TABLE stores (id INTEGER PRIMARY KEY, scope BLOB NOT NULL, name BLOB NOT NULL,"
  " revision INTEGER NOT NULL DEFAULT 0, UNIQUE (scope, name));"
  "CREATE TABLE kv (store_id INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
  " revision INTEGER NOT NULL, time_ms INTEGER NOT NULL, PRIMARY KEY (store_id, key))"
  " WITHOUT ROWID;"
  "PRAGMA user_version = 1;"
  "COMMIT;";

/* Version 1 to 2: the options of each store. */
static const char migrate_v2_sql[] =
  "BEGIN IMMEDIATE;"
  "ALTER TABLE stores ADD COLUMN merge TEXT NOT NULL DEFAULT 'lww';"
  "ALTER TABLE stores ADD COLUMN max_value_size INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE stores ADD COLUMN max_age_ms INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE stores ADD COLUMN max_bytes INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE stores ADD COLUMN max_keys INTEGER NOT NULL DEFAULT 0;"
  "PRAGMA user_version = 2;"
  "COMMIT;";

/* db_lock held, as for every db_ function.  Records and reports the error. */
gboolean
embedded_db_fail (EmbeddedBackend *b, int rc, GError **error)
{
  ConatError code = CONAT_ERROR_FAILED;

  if ((rc & 0xff) == SQLITE_FULL)
    code = CONAT_ERROR_NO_SPACE;
  else if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
    code = CONAT_ERROR_CORRUPT;
  g_free (b->last_error);
  b->last_error = g_strdup_printf ("%s: %s", b->db_path,
                                   b->db != NULL ? sqlite3_errmsg (b->db) : sqlite3_errstr (rc));
  return embedded_fail (error, code, "%s", b->last_error);
}

gboolean
embedded_db_exec (EmbeddedBackend *b, const char *sql, GError **error)
{
  int rc = sqlite3_exec (b->db, sql, NULL, NULL, NULL);

  return rc == SQLITE_OK ? TRUE : embedded_db_fail (b, rc, error);
}

/* Names are bound as BLOBs (any bytes, "" included), as values are. */
void
embedded_db_bind_name (sqlite3_stmt *st, int i, const char *s)
{
  sqlite3_bind_blob (st, i, s, (int) strlen (s), SQLITE_STATIC);
}

char *
embedded_db_column_name (sqlite3_stmt *st, int i)
{
  const char *data = sqlite3_column_blob (st, i);

  return g_strndup (data != NULL ? data : "", sqlite3_column_bytes (st, i));
}

/* Prepares SQL and binds one argument per letter of TYPES: 's' a name
 * (const char *), 'i' a gint64. */
sqlite3_stmt *
embedded_db_query (EmbeddedBackend *b, GError **error, const char *sql, const char *types, ...)
{
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2 (b->db, sql, -1, &st, NULL);
  va_list ap;

  if (rc != SQLITE_OK)
    {
      embedded_db_fail (b, rc, error);
      return NULL;
    }
  va_start (ap, types);
  for (int i = 0; types[i] != '\0'; i++)
    if (types[i] == 's')
      embedded_db_bind_name (st, i + 1, va_arg (ap, const char *));
    else
      sqlite3_bind_int64 (st, i + 1, va_arg (ap, gint64));
  va_end (ap);
  return st;
}

/* Steps ST once.  TRUE with *ROW if it gave a row, or if it is done. */
gboolean
embedded_db_step (EmbeddedBackend *b, sqlite3_stmt *st, gboolean *row, GError **error)
{
  int rc = sqlite3_step (st);

  *row = rc == SQLITE_ROW;
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? TRUE : embedded_db_fail (b, rc, error);
}

/* Runs and frees ST (from embedded_db_query, maybe NULL), a statement without rows. */
gboolean
embedded_db_run (EmbeddedBackend *b, sqlite3_stmt *st, GError **error)
{
  g_autoptr(sqlite3_stmt) owned = st;
  gboolean row;

  return st != NULL && embedded_db_step (b, st, &row, error);
}

gboolean
embedded_db_open (EmbeddedBackend *b, GError **error)
{
  g_autoptr(sqlite3_stmt) st = NULL;
  int rc = sqlite3_open_v2 (b->db_path, &b->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  gboolean row;
  int version;

  if (rc != SQLITE_OK)
    return embedded_db_fail (b, rc, error);
  sqlite3_busy_timeout (b->db, BUSY_TIMEOUT_MS);
  if (!embedded_db_exec (b, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL", error) ||
      (st = embedded_db_query (b, error, "PRAGMA user_version", "")) == NULL ||
      !embedded_db_step (b, st, &row, error))
    return FALSE;
  version = sqlite3_column_int (st, 0);
  if (version == 0 && !embedded_db_exec (b, schema_sql, error))
    return FALSE;
  if (version > SCHEMA_VERSION)
    return embedded_fail (error, CONAT_ERROR_CORRUPT, "%s: unknown schema version %d", b->db_path,
                          version);
  if (version < 2 && !embedded_db_exec (b, migrate_v2_sql, error))
    {
      sqlite3_exec (b->db, "ROLLBACK", NULL, NULL, NULL);
      return FALSE;
    }
  for (int i = 0; i < N_STATEMENTS; i++)
    if ((b->stmts[i] = embedded_db_query (b, error, statement_sql[i], "")) == NULL)
      return FALSE;
  return TRUE;
}

gboolean
embedded_db_insert_store (EmbeddedBackend *b, const char *scope, const char *name, guint64 revision,
                          gint64 *id, GError **error)
{
  const char *sql = "INSERT INTO stores (scope, name, revision) VALUES (?1, ?2, ?3)";

  if (!embedded_db_run (b, embedded_db_query (b, error, "INSERT OR IGNORE INTO scopes (name)"
                                              " VALUES (?1)", "s", scope), error) ||
      !embedded_db_run (b, embedded_db_query (b, error, sql, "ssi", scope, name,
                                              (gint64) revision), error))
    return FALSE;
  *id = sqlite3_last_insert_rowid (b->db);
  return TRUE;
}

gboolean
embedded_db_save_config (EmbeddedBackend *b, gint64 id, const Config *c, GError **error)
{
  const char *sql = "UPDATE stores SET merge = ?1, max_value_size = ?2, max_age_ms = ?3,"
                    " max_bytes = ?4, max_keys = ?5 WHERE id = ?6";

  return embedded_db_run (b, embedded_db_query (b, error, sql, "siiiii", c->merge,
                                                c->limits.max_value_size, c->limits.max_age_ms,
                                                c->limits.max_bytes, c->limits.max_keys, id),
                          error);
}

/* Reads columns FIRST.. of ST (merge and the four limits) into C. */
void
embedded_db_column_config (sqlite3_stmt *st, int first, Config *c)
{
  g_autofree char *merge = embedded_db_column_name (st, first);

  *c = embedded_default_config;
  if (strlen (merge) < sizeof c->merge)
    strcpy (c->merge, merge);
  c->limits.max_value_size = sqlite3_column_int64 (st, first + 1);
  c->limits.max_age_ms = sqlite3_column_int64 (st, first + 2);
  c->limits.max_bytes = sqlite3_column_int64 (st, first + 3);
  c->limits.max_keys = sqlite3_column_int64 (st, first + 4);
}

gboolean
embedded_db_delete_store (EmbeddedBackend *b, gint64 id, GError **error)
{
  return embedded_db_run (b, embedded_db_query (b, error, "DELETE FROM stores WHERE id = ?1", "i",
                                                id), error);
}

/* Adds the names SQL selects, with SCOPE as ?1, to SET. */
gboolean
embedded_db_collect_names (EmbeddedBackend *b, const char *sql, const char *scope, GHashTable *set,
                           GError **error)
{
  g_autoptr(sqlite3_stmt) st = embedded_db_query (b, error, sql, scope != NULL ? "s" : "", scope);
  gboolean row = FALSE;

  while (st != NULL && embedded_db_step (b, st, &row, error) && row)
    g_hash_table_add (set, embedded_db_column_name (st, 0));
  return st != NULL && !row;
}
