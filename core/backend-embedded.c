/* backend-embedded.c — the embedded backend: "the server" inside one process.
 *
 * Persistent stores live in one SQLite database, DATA_DIR/conat.db (WAL,
 * synchronous=NORMAL: a committed batch survives kill -9 of the process).
 * Ephemeral stores and PubSub channels live in memory.  One process owns a
 * data directory (flock on DATA_DIR/lock); inside it, every
 * conat_backend_embedded_new() on the same directory returns one shared,
 * reference-counted backend, so all its clients see each other at once.
 *
 * Kinds.  A (scope, name) is either persistent or ephemeral; opening it
 * with the other kind uses the kind it has.  An ephemeral store made by
 * store_open is listed while a handle is open; one made by create_store or
 * set_store_ephemeral stays listed (maybe empty) until remove_store or the
 * end of the backend.  Either way its keys are dropped when its last handle
 * closes.  A scope that holds only ephemeral stores lives in memory too.
 *
 * Ordering and delivery.  One mutex, db_lock, orders every write: put_many
 * takes it, applies the batch in one SQLite transaction (or to the memory
 * table of an ephemeral store), assigns the revisions and, still holding
 * it, queues one event with the batch's changes and a reference to every
 * handle open on the store at that moment.  Events are thus queued in commit
 * order, and a handle opened later saw the batch in its snapshot, because
 * store_open reads the snapshot and registers the handle in one critical
 * section.  publish queues its message the same way under sub_lock, with
 * one more event (the channel's name and path) for the watches of its scope.
 *
 * One dispatcher thread pops the events and runs the callbacks holding no
 * lock, so a callback may call any backend function.  Before each callback
 * it checks the receiver's closing flag and marks the receiver running
 * (under cb_lock).  store_close and unsubscribe set the flag under cb_lock
 * and wait while the dispatcher runs that receiver; called from a callback,
 * on the dispatcher thread itself, they cannot wait, and the flag stops the
 * callbacks still due.  A new handle becomes ready only once store_open has
 * replayed its snapshot through on_load: the dispatcher waits for that, so
 * on_change never overtakes on_load.
 *
 * Options.  A store's merge strategy and limits (Config) live in its row of
 * the stores table, or in memory for an ephemeral store, and are kept in
 * the Store while it is in memory.  put_many refuses a value over
 * max_value_size (TOO_BIG), a new key beyond max_keys and a write that grows
 * the store's value bytes over max_bytes (NO_SPACE); deletes and writes that
 * do not grow the store always pass.  Values older than max_age_ms are
 * deleted, each at a new revision, with the change delivered like any other
 * write: when a handle opens, before each batch, and by the dispatcher,
 * which sweeps every store in memory that has a max_age every SWEEP_US.
 */
#define G_LOG_DOMAIN "conat"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backend.h"

#define SCHEMA_VERSION 2
#define MAX_VALUE_SIZE (64 * 1024 * 1024)
#define SWEEP_US (250 * 1000)
#define LOAD_PROGRESS_KEYS 4096  /* on_progress of store_open, every so many keys */
#define MAX_MESSAGE_SIZE (1024 * 1024)
#define BUSY_TIMEOUT_MS 5000

G_DEFINE_AUTOPTR_CLEANUP_FUNC (sqlite3_stmt, sqlite3_finalize)

typedef struct _EmbeddedBackend EmbeddedBackend;
typedef struct _Receiver Receiver;
typedef struct _Store Store;

/* What the dispatcher calls back: a store handle or a subscription. */
struct _Receiver {
  gint ref_count;                  /* atomic */
  gint closing;                    /* atomic; set under cb_lock */
  gboolean ready;                  /* cb_lock */
  gpointer user_data;              /* immutable */
  void (*finalize) (Receiver *r);  /* immutable */
};

typedef struct {
  GBytes *value;
  guint64 revision;
  gint64 time_ms;
} Entry;

/* A store's options, as store_info reports them. */
typedef struct {
  char merge[16];
  ConatStoreLimits limits;
} Config;

static const Config default_config = { "lww", { 0, 0, 0, 0 } };

/* A store in memory: every ephemeral store, and persistent ones with handles. */
struct _Store {
  gint ref_count;            /* atomic */
  EmbeddedBackend *backend;  /* immutable */
  GBytes *id_key;            /* immutable: "scope NUL name", its key in backend->stores */
  char *scope;               /* immutable */
  char *name;                /* immutable */
  gboolean ephemeral;        /* db_lock, as are all the fields below */
  gboolean exists;           /* FALSE once removed while handles stay open */
  gboolean pinned;           /* ephemeral, made explicitly: listed without handles */
  gint64 id;                 /* persistent and existing: stores.id */
  guint64 revision;
  GHashTable *entries;       /* ephemeral: char *key -> Entry */
  guint64 bytes;             /* ephemeral: sum of the value sizes */
  GPtrArray *handles;        /* ConatBackendStore *, unreferenced */
  Config config;             /* as in the database for a persistent store */
};

struct _ConatBackendStore {
  Receiver r;
  Store *store;                   /* immutable, referenced */
  ConatChangeCallback on_change;  /* immutable */
};

/* A channel's subscription, or (with seen) a watch of a scope's channels. */
struct _ConatBackendSub {
  Receiver r;
  EmbeddedBackend *backend;              /* immutable */
  GHashTable *table;                     /* immutable: backend->channels or ->watches */
  GBytes *key;                           /* immutable: its key there */
  ConatBackendMessageCallback callback;  /* immutable */
  ConatBackendChannelCallback seen;      /* immutable */
};

/* One item of the dispatcher queue; receivers == NULL stops the dispatcher. */
typedef struct {
  GPtrArray *receivers;  /* Receiver *, referenced */
  GArray *changes;       /* ConatChange with owned key and value, or NULL */
  GBytes *message;       /* or NULL */
  char *name, *path;     /* for watches: the channel a message was sent on */
} Event;

enum { ST_KV_REVISION, ST_KV_PUT, ST_KV_DELETE, ST_STORE_REVISION, N_STATEMENTS };

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

struct _EmbeddedBackend {
  ConatBackend parent;
  char *data_dir;    /* immutable, canonical: its key in the registry */
  char *db_path;     /* immutable */
  int lock_fd;       /* immutable */
  pid_t pid;         /* immutable: a forked child must not share us */
  gint64 opened_us;  /* immutable */
  guint ref_count;   /* registry_lock */

  GMutex db_lock;
  sqlite3 *db;                        /* db_lock */
  sqlite3_stmt *stmts[N_STATEMENTS];  /* db_lock */
  GHashTable *stores;                 /* db_lock: GBytes id_key -> Store *, referenced */
  char *last_error;                   /* db_lock */

  GMutex sub_lock;
  GHashTable *channels;  /* sub_lock: GBytes channel -> GPtrArray of ConatBackendSub * */
  GHashTable *watches;   /* sub_lock: GBytes scope (NUL included) -> GPtrArray of the same */

  GMutex cb_lock;
  GCond cb_cond;         /* with cb_lock: running, a ready or a closing flag changed */
  Receiver *running;     /* cb_lock: the receiver whose callback runs now */

  GAsyncQueue *events;    /* Event *; locked by itself */
  GThread *dispatcher;    /* immutable once started */
  gboolean free_on_stop;  /* dispatcher thread only */
  gint sweep;             /* atomic: a store in memory has a max_age */
};

static GMutex registry_lock;
static GHashTable *registry;  /* registry_lock: char *data_dir -> EmbeddedBackend * */

static const ConatBackendClass embedded_class;

static gboolean fail (GError **error, ConatError code, const char *format, ...)
  G_GNUC_PRINTF (3, 4);

static gboolean
fail (GError **error, ConatError code, const char *format, ...)
{
  va_list ap;

  va_start (ap, format);
  g_propagate_error (error, g_error_new_valist (CONAT_ERROR, code, format, ap));
  va_end (ap);
  return FALSE;
}

/* "A NUL B [NUL C]": a hash key made of names that hold any byte but NUL. */
static GBytes *
names_key (const char *a, const char *b, const char *c)
{
  GByteArray *buf = g_byte_array_new ();

  g_byte_array_append (buf, (const guint8 *) a, strlen (a) + 1);
  g_byte_array_append (buf, (const guint8 *) b, strlen (b));
  if (c != NULL)
    g_byte_array_append (g_byte_array_append (buf, (const guint8 *) "", 1),
                         (const guint8 *) c, strlen (c));
  return g_byte_array_free_to_bytes (buf);
}

/* ---------------------------------------------------------------- SQLite */

/* db_lock held, as for every db_ function.  Records and reports the error. */
static gboolean
db_fail (EmbeddedBackend *b, int rc, GError **error)
{
  ConatError code = CONAT_ERROR_FAILED;

  if ((rc & 0xff) == SQLITE_FULL)
    code = CONAT_ERROR_NO_SPACE;
  else if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB)
    code = CONAT_ERROR_CORRUPT;
  g_free (b->last_error);
  b->last_error = g_strdup_printf ("%s: %s", b->db_path,
                                   b->db != NULL ? sqlite3_errmsg (b->db) : sqlite3_errstr (rc));
  return fail (error, code, "%s", b->last_error);
}

static gboolean
db_exec (EmbeddedBackend *b, const char *sql, GError **error)
{
  int rc = sqlite3_exec (b->db, sql, NULL, NULL, NULL);

  return rc == SQLITE_OK ? TRUE : db_fail (b, rc, error);
}

/* Names are bound as BLOBs (any bytes, "" included), as values are. */
static void
bind_name (sqlite3_stmt *st, int i, const char *s)
{
  sqlite3_bind_blob (st, i, s, (int) strlen (s), SQLITE_STATIC);
}

static char *
column_name (sqlite3_stmt *st, int i)
{
  const char *data = sqlite3_column_blob (st, i);

  return g_strndup (data != NULL ? data : "", sqlite3_column_bytes (st, i));
}

/* Prepares SQL and binds one argument per letter of TYPES: 's' a name
 * (const char *), 'i' a gint64. */
static sqlite3_stmt *
db_query (EmbeddedBackend *b, GError **error, const char *sql, const char *types, ...)
{
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2 (b->db, sql, -1, &st, NULL);
  va_list ap;

  if (rc != SQLITE_OK)
    {
      db_fail (b, rc, error);
      return NULL;
    }
  va_start (ap, types);
  for (int i = 0; types[i] != '\0'; i++)
    if (types[i] == 's')
      bind_name (st, i + 1, va_arg (ap, const char *));
    else
      sqlite3_bind_int64 (st, i + 1, va_arg (ap, gint64));
  va_end (ap);
  return st;
}

/* Steps ST once.  TRUE with *ROW if it gave a row, or if it is done. */
static gboolean
db_step (EmbeddedBackend *b, sqlite3_stmt *st, gboolean *row, GError **error)
{
  int rc = sqlite3_step (st);

  *row = rc == SQLITE_ROW;
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? TRUE : db_fail (b, rc, error);
}

/* Runs and frees ST (from db_query, maybe NULL), a statement without rows. */
static gboolean
db_run (EmbeddedBackend *b, sqlite3_stmt *st, GError **error)
{
  g_autoptr(sqlite3_stmt) owned = st;
  gboolean row;

  return st != NULL && db_step (b, st, &row, error);
}

static gboolean
db_open (EmbeddedBackend *b, GError **error)
{
  g_autoptr(sqlite3_stmt) st = NULL;
  int rc = sqlite3_open_v2 (b->db_path, &b->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  gboolean row;
  int version;

  if (rc != SQLITE_OK)
    return db_fail (b, rc, error);
  sqlite3_busy_timeout (b->db, BUSY_TIMEOUT_MS);
  if (!db_exec (b, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL", error) ||
      (st = db_query (b, error, "PRAGMA user_version", "")) == NULL ||
      !db_step (b, st, &row, error))
    return FALSE;
  version = sqlite3_column_int (st, 0);
  if (version == 0 && !db_exec (b, schema_sql, error))
    return FALSE;
  if (version > SCHEMA_VERSION)
    return fail (error, CONAT_ERROR_CORRUPT, "%s: unknown schema version %d", b->db_path, version);
  if (version < 2 && !db_exec (b, migrate_v2_sql, error))
    {
      sqlite3_exec (b->db, "ROLLBACK", NULL, NULL, NULL);
      return FALSE;
    }
  for (int i = 0; i < N_STATEMENTS; i++)
    if ((b->stmts[i] = db_query (b, error, statement_sql[i], "")) == NULL)
      return FALSE;
  return TRUE;
}

static gboolean
db_insert_store (EmbeddedBackend *b, const char *scope, const char *name, guint64 revision,
                 gint64 *id, GError **error)
{
  const char *sql = "INSERT INTO stores (scope, name, revision) VALUES (?1, ?2, ?3)";

  if (!db_run (b, db_query (b, error, "INSERT OR IGNORE INTO scopes (name) VALUES (?1)", "s",
                            scope), error) ||
      !db_run (b, db_query (b, error, sql, "ssi", scope, name, (gint64) revision), error))
    return FALSE;
  *id = sqlite3_last_insert_rowid (b->db);
  return TRUE;
}

static gboolean
db_save_config (EmbeddedBackend *b, gint64 id, const Config *c, GError **error)
{
  const char *sql = "UPDATE stores SET merge = ?1, max_value_size = ?2, max_age_ms = ?3,"
                    " max_bytes = ?4, max_keys = ?5 WHERE id = ?6";

  return db_run (b, db_query (b, error, sql, "siiiii", c->merge, c->limits.max_value_size,
                              c->limits.max_age_ms, c->limits.max_bytes, c->limits.max_keys, id),
                 error);
}

/* Reads columns FIRST.. of ST (merge and the four limits) into C. */
static void
column_config (sqlite3_stmt *st, int first, Config *c)
{
  g_autofree char *merge = column_name (st, first);

  *c = default_config;
  if (strlen (merge) < sizeof c->merge)
    strcpy (c->merge, merge);
  c->limits.max_value_size = sqlite3_column_int64 (st, first + 1);
  c->limits.max_age_ms = sqlite3_column_int64 (st, first + 2);
  c->limits.max_bytes = sqlite3_column_int64 (st, first + 3);
  c->limits.max_keys = sqlite3_column_int64 (st, first + 4);
}

static gboolean
db_delete_store (EmbeddedBackend *b, gint64 id, GError **error)
{
  return db_run (b, db_query (b, error, "DELETE FROM stores WHERE id = ?1", "i", id), error);
}

/* Adds the names SQL selects, with SCOPE as ?1, to SET. */
static gboolean
db_collect_names (EmbeddedBackend *b, const char *sql, const char *scope, GHashTable *set,
                  GError **error)
{
  g_autoptr(sqlite3_stmt) st = db_query (b, error, sql, scope != NULL ? "s" : "", scope);
  gboolean row = FALSE;

  while (st != NULL && db_step (b, st, &row, error) && row)
    g_hash_table_add (set, column_name (st, 0));
  return st != NULL && !row;
}

/* ------------------------------------------------------- receivers, events */

static gpointer
receiver_ref (gconstpointer src, gpointer unused)
{
  Receiver *r = (Receiver *) src;

  g_atomic_int_inc (&r->ref_count);
  return r;
}

static void
receiver_unref (gpointer data)
{
  Receiver *r = data;

  if (g_atomic_int_dec_and_test (&r->ref_count))
    r->finalize (r);
}

/* Dispatcher: FALSE if R is closing; else R runs until receiver_end. */
static gboolean
receiver_begin (EmbeddedBackend *b, Receiver *r)
{
  gboolean ok;

  g_mutex_lock (&b->cb_lock);
  while (!r->ready && !g_atomic_int_get (&r->closing))
    g_cond_wait (&b->cb_cond, &b->cb_lock);
  ok = !g_atomic_int_get (&r->closing);
  b->running = ok ? r : NULL;
  g_mutex_unlock (&b->cb_lock);
  return ok;
}

static void
receiver_end (EmbeddedBackend *b)
{
  g_mutex_lock (&b->cb_lock);
  b->running = NULL;
  g_cond_broadcast (&b->cb_cond);
  g_mutex_unlock (&b->cb_lock);
}

/* No callback of R runs after this returns (but the one we may be inside). */
static void
receiver_close (EmbeddedBackend *b, Receiver *r)
{
  g_mutex_lock (&b->cb_lock);
  g_atomic_int_set (&r->closing, TRUE);
  g_cond_broadcast (&b->cb_cond);
  while (b->running == r && g_thread_self () != b->dispatcher)
    g_cond_wait (&b->cb_cond, &b->cb_lock);
  g_mutex_unlock (&b->cb_lock);
}

static void
change_clear (gpointer data)
{
  ConatChange *c = data;

  g_free ((char *) c->key);
  g_clear_pointer (&c->value, g_bytes_unref);
}

static GArray *
changes_new (void)
{
  GArray *changes = g_array_new (FALSE, FALSE, sizeof (ConatChange));

  g_array_set_clear_func (changes, change_clear);
  return changes;
}

static void
changes_add (GArray *changes, const char *key, GBytes *value, guint64 revision, gint64 time_ms,
             guint64 writer_id, guint64 gen)
{
  ConatChange c = { g_strdup (key), value != NULL ? g_bytes_ref (value) : NULL, revision,
                    time_ms, writer_id, gen };

  g_array_append_val (changes, c);
}

static void
event_free (gpointer data)
{
  Event *ev = data;

  g_clear_pointer (&ev->receivers, g_ptr_array_unref);
  g_clear_pointer (&ev->changes, g_array_unref);
  g_clear_pointer (&ev->message, g_bytes_unref);
  g_free (ev->name);
  g_free (ev->path);
  g_free (ev);
}

static Event *
event_new (GPtrArray *receivers)
{
  Event *ev = g_new0 (Event, 1);

  ev->receivers = g_ptr_array_copy (receivers, receiver_ref, NULL);
  g_ptr_array_set_free_func (ev->receivers, receiver_unref);
  return ev;
}

/* Queues CHANGES (taken) or MESSAGE for every receiver in RECEIVERS. */
static void
event_push (EmbeddedBackend *b, GPtrArray *receivers, GArray *changes, GBytes *message)
{
  Event *ev = event_new (receivers);

  ev->changes = changes;
  ev->message = message != NULL ? g_bytes_ref (message) : NULL;
  g_async_queue_push (b->events, ev);
}

/* Queues, for every watch in WATCHES, that a message was sent on NAME, PATH. */
static void
event_push_seen (EmbeddedBackend *b, GPtrArray *watches, const char *name, const char *path)
{
  Event *ev = event_new (watches);

  ev->name = g_strdup (name);
  ev->path = g_strdup (path);
  g_async_queue_push (b->events, ev);
}

/* An event for no receiver: wakes the dispatcher. */
static Event *
event_wake_new (void)
{
  Event *ev = g_new0 (Event, 1);

  ev->receivers = g_ptr_array_new ();
  return ev;
}

static void
event_deliver (EmbeddedBackend *b, Event *ev)
{
  for (guint i = 0; i < ev->receivers->len; i++)
    {
      Receiver *r = g_ptr_array_index (ev->receivers, i);
      ConatBackendStore *h = (ConatBackendStore *) r;

      if (!receiver_begin (b, r))
        continue;
      for (guint j = 0; ev->changes && j < ev->changes->len && !g_atomic_int_get (&r->closing); j++)
        h->on_change (&g_array_index (ev->changes, ConatChange, j), r->user_data);
      if (ev->message != NULL)
        ((ConatBackendSub *) r)->callback (ev->message, r->user_data);
      if (ev->name != NULL)
        ((ConatBackendSub *) r)->seen (ev->name, ev->path, r->user_data);
      receiver_end (b);
    }
}

static void backend_finalize (EmbeddedBackend *b);
static void backend_sweep (EmbeddedBackend *b);

static gpointer
dispatcher_main (gpointer data)
{
  EmbeddedBackend *b = data;
  gint64 next_sweep = g_get_monotonic_time () + SWEEP_US;
  gboolean stop = FALSE;

  while (!stop)
    {
      gint64 wait = next_sweep - g_get_monotonic_time ();
      Event *ev = !g_atomic_int_get (&b->sweep) ? g_async_queue_pop (b->events)
                  : wait > 0 ? g_async_queue_timeout_pop (b->events, wait) : NULL;

      if (g_atomic_int_get (&b->sweep) && g_get_monotonic_time () >= next_sweep)
        {
          backend_sweep (b);
          next_sweep = g_get_monotonic_time () + SWEEP_US;
        }
      if (ev == NULL)
        continue;
      stop = ev->receivers == NULL;
      if (!stop)
        event_deliver (b, ev);
      event_free (ev);
    }
  if (b->free_on_stop)
    backend_finalize (b);
  return NULL;
}

/* ------------------------------------------------------------------ stores */

/* Values written at or before this time (ms) are past C's max_age. */
static gint64
expiry_cutoff (const Config *c, gint64 now_ms)
{
  return c->limits.max_age_ms > 0 ? now_ms - c->limits.max_age_ms : G_MININT64;
}

/* db_lock held.  S, in memory, has new options: a max_age starts the
 * dispatcher's sweeps (an empty event wakes it). */
static void
store_note_config (EmbeddedBackend *b, Store *s)
{
  if (s->config.limits.max_age_ms <= 0 || !g_atomic_int_compare_and_exchange (&b->sweep, 0, 1))
    return;
  g_async_queue_push (b->events, event_wake_new ());
}

static void
entry_free (gpointer data)
{
  Entry *e = data;

  g_bytes_unref (e->value);
  g_free (e);
}

static void
store_unref (gpointer data)
{
  Store *s = data;

  if (!g_atomic_int_dec_and_test (&s->ref_count))
    return;
  g_bytes_unref (s->id_key);
  g_free (s->scope);
  g_free (s->name);
  g_clear_pointer (&s->entries, g_hash_table_unref);
  g_ptr_array_unref (s->handles);
  g_free (s);
}

/* db_lock held, as for every function below that takes a Store. */
static void
store_set_kind (Store *s, gboolean ephemeral, gboolean pinned)
{
  s->ephemeral = ephemeral;
  s->pinned = ephemeral && pinned;
  s->bytes = 0;
  if (!ephemeral)
    g_clear_pointer (&s->entries, g_hash_table_unref);
  else if (s->entries == NULL)
    s->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_free);
}

/* A new store in memory, registered in B. */
static Store *
store_new (EmbeddedBackend *b, const char *scope, const char *name, gboolean ephemeral,
           gboolean pinned)
{
  Store *s = g_new0 (Store, 1);

  s->ref_count = 1;
  s->backend = b;
  s->id_key = names_key (scope, name, NULL);
  s->scope = g_strdup (scope);
  s->name = g_strdup (name);
  s->exists = TRUE;
  s->handles = g_ptr_array_new ();
  s->config = default_config;
  store_set_kind (s, ephemeral, pinned);
  g_hash_table_insert (b->stores, g_bytes_ref (s->id_key), s);
  return s;
}

/* Drops S from memory unless a handle or an explicit creation keeps it. */
static void
store_forget_if_unused (EmbeddedBackend *b, Store *s)
{
  g_autoptr(GBytes) key = g_bytes_ref (s->id_key);

  if (s->handles->len == 0 && !(s->ephemeral && s->exists && s->pinned))
    g_hash_table_remove (b->stores, key);
}

/* Makes S, removed while open, exist again with the kind asked for. */
static gboolean
store_materialise (EmbeddedBackend *b, Store *s, gboolean ephemeral, gboolean pinned,
                   GError **error)
{
  if (!ephemeral && !db_insert_store (b, s->scope, s->name, s->revision, &s->id, error))
    return FALSE;
  store_set_kind (s, ephemeral, pinned);
  s->exists = TRUE;
  s->config = default_config;  /* a new store: the removed one's options went with it */
  return TRUE;
}

/* A (scope, name) as it stands: in memory (STORE) or only in the database. */
typedef struct {
  Store *store;
  gboolean exists;
  gboolean ephemeral;
  gint64 id;
  guint64 revision;
  Config config;
} Found;

static gboolean
store_find (EmbeddedBackend *b, const char *scope, const char *name, Found *f, GError **error)
{
  g_autoptr(GBytes) key = names_key (scope, name, NULL);
  g_autoptr(sqlite3_stmt) st = NULL;
  Store *s = g_hash_table_lookup (b->stores, key);

  *f = (Found) { s, s && s->exists, s && s->ephemeral, s ? s->id : 0, s ? s->revision : 0,
                 s ? s->config : default_config };
  if (s != NULL)
    return TRUE;
  st = db_query (b, error, "SELECT id, revision, merge, max_value_size, max_age_ms, max_bytes,"
                 " max_keys FROM stores WHERE scope = ?1 AND name = ?2", "ss", scope, name);
  if (st == NULL || !db_step (b, st, &f->exists, error))
    return FALSE;
  f->id = f->exists ? sqlite3_column_int64 (st, 0) : 0;
  f->revision = f->exists ? (guint64) sqlite3_column_int64 (st, 1) : 0;
  if (f->exists)
    column_config (st, 2, &f->config);
  return TRUE;
}

/* Like store_find, but fails with NOT_FOUND unless the store exists; fills INFO. */
static gboolean
store_find_existing (EmbeddedBackend *b, const char *scope, const char *name, Found *f,
                     ConatStoreInfo *info, GError **error)
{
  g_autoptr(sqlite3_stmt) st = NULL;
  gboolean row;

  if (!store_find (b, scope, name, f, error))
    return FALSE;
  if (!f->exists)
    return fail (error, CONAT_ERROR_NOT_FOUND, "no store %s/%s", scope, name);
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
  st = db_query (b, error, "SELECT count(*), coalesce(sum(length(value)), 0) FROM kv"
                           " WHERE store_id = ?1 AND time_ms > ?2", "ii", f->id,
                 expiry_cutoff (&f->config, g_get_real_time () / 1000));
  if (st == NULL || !db_step (b, st, &row, error))
    return FALSE;
  info->keys = (guint64) sqlite3_column_int64 (st, 0);
  info->bytes = (guint64) sqlite3_column_int64 (st, 1);
  return TRUE;
}

/* Finds an existing store, whatever its kind, or creates one of kind EPHEMERAL. */
static Store *
store_get (EmbeddedBackend *b, const char *scope, const char *name, gboolean ephemeral,
           GError **error)
{
  Found f;
  gint64 id = 0;
  Store *s;

  if (!store_find (b, scope, name, &f, error))
    return NULL;
  if (f.store != NULL)
    return f.exists || store_materialise (b, f.store, ephemeral, FALSE, error) ? f.store : NULL;
  if (!f.exists && !ephemeral && !db_insert_store (b, scope, name, 0, &id, error))
    return NULL;
  s = store_new (b, scope, name, !f.exists && ephemeral, FALSE);
  s->id = f.exists ? f.id : id;
  s->revision = f.revision;
  s->config = f.config;
  store_note_config (b, s);
  return s;
}

/* Adds every entry of S to SNAPSHOT, in revision order for a persistent store. */
static gboolean
store_snapshot (EmbeddedBackend *b, Store *s, GArray *snapshot, GError **error)
{
  g_autoptr(sqlite3_stmt) st = NULL;
  gboolean row = FALSE;
  GHashTableIter iter;
  gpointer key, value;

  if (s->ephemeral)
    {
      g_hash_table_iter_init (&iter, s->entries);
      while (g_hash_table_iter_next (&iter, &key, &value))
        changes_add (snapshot, key, ((Entry *) value)->value, ((Entry *) value)->revision,
                     ((Entry *) value)->time_ms, 0, 0);
      return TRUE;
    }
  st = db_query (b, error, "SELECT key, value, revision, time_ms FROM kv WHERE store_id = ?1"
                           " ORDER BY revision", "i", s->id);
  while (st != NULL && db_step (b, st, &row, error) && row)
    {
      g_autofree char *k = column_name (st, 0);
      g_autoptr(GBytes) v = g_bytes_new (sqlite3_column_blob (st, 1), sqlite3_column_bytes (st, 1));

      changes_add (snapshot, k, v, (guint64) sqlite3_column_int64 (st, 2),
                   sqlite3_column_int64 (st, 3), 0, 0);
    }
  return st != NULL && !row;
}

/* ------------------------------------------------------------- namespace */

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

  if (!db_collect_names (b, sql, scope, set, error))
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

static GPtrArray *
embedded_list_scopes (ConatBackend *backend, GError **error)
{
  return list_names ((EmbeddedBackend *) backend, "SELECT name FROM scopes", NULL, error);
}

static GPtrArray *
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
  g_autoptr(sqlite3_stmt) st = db_query (b, error, "SELECT EXISTS (SELECT 1 FROM stores"
                                         " WHERE scope = ?1), EXISTS (SELECT 1 FROM scopes"
                                         " WHERE name = ?1)", "s", scope);
  gboolean row;

  if (st == NULL || !db_step (b, st, &row, error))
    return FALSE;
  memory_names (b, scope, set);
  *state = sqlite3_column_int (st, 0) || g_hash_table_size (set) > 0 ? SCOPE_HOLDS_STORES
           : sqlite3_column_int (st, 1) ? SCOPE_EMPTY : SCOPE_ABSENT;
  return TRUE;
}

static gboolean
embedded_has_scope (ConatBackend *backend, const char *scope, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ScopeState state;

  return scope_state (b, scope, &state, error) && state != SCOPE_ABSENT;
}

static gboolean
embedded_create_scope (ConatBackend *backend, const char *scope, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ScopeState state;

  if (!scope_state (b, scope, &state, error))
    return FALSE;
  if (state != SCOPE_ABSENT)
    return fail (error, CONAT_ERROR_EXISTS, "scope %s exists", scope);
  return db_run (b, db_query (b, error, "INSERT INTO scopes (name) VALUES (?1)", "s", scope),
                 error);
}

static gboolean
embedded_remove_scope (ConatBackend *backend, const char *scope, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ScopeState state;

  if (!scope_state (b, scope, &state, error))
    return FALSE;
  if (state == SCOPE_ABSENT)
    return fail (error, CONAT_ERROR_NOT_FOUND, "no scope %s", scope);
  if (state == SCOPE_HOLDS_STORES)
    return fail (error, CONAT_ERROR_NOT_EMPTY, "scope %s holds stores", scope);
  return db_run (b, db_query (b, error, "DELETE FROM scopes WHERE name = ?1", "s", scope),
                 error);
}

static gboolean
embedded_create_store (ConatBackend *backend, const char *scope, const char *name,
                       gboolean ephemeral, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  Found f;

  if (!store_find (b, scope, name, &f, error))
    return FALSE;
  if (f.exists)
    return fail (error, CONAT_ERROR_EXISTS, "store %s/%s exists", scope, name);
  if (f.store != NULL)
    return store_materialise (b, f.store, ephemeral, TRUE, error);
  if (!ephemeral)
    return db_insert_store (b, scope, name, 0, &f.id, error);
  store_new (b, scope, name, TRUE, TRUE);
  return TRUE;
}

static gboolean
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
    return fail (error, CONAT_ERROR_NOT_EMPTY, "store %s/%s holds keys", scope, name);
  if (!f.ephemeral && !db_delete_store (b, f.id, error))
    return FALSE;
  if (f.store != NULL)
    {
      f.store->exists = FALSE;
      f.store->id = 0;
      store_forget_if_unused (b, f.store);
    }
  return TRUE;
}

static gboolean
embedded_store_info (ConatBackend *backend, const char *scope, const char *name,
                     ConatStoreInfo *info, gboolean count, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  Found f;

  return store_find_existing (b, scope, name, &f, info, error);
}

/* An empty store changes kind; persistent to ephemeral pins it in memory. */
static gboolean
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
    return fail (error, CONAT_ERROR_BUSY, "store %s/%s holds keys", scope, name);
  if (!ephemeral)
    {
      if (!db_insert_store (b, scope, name, f.store->revision, &f.store->id, error)
          || !db_save_config (b, f.store->id, &f.config, error))
        return FALSE;
      store_set_kind (f.store, FALSE, FALSE);
      store_forget_if_unused (b, f.store);
      return TRUE;
    }
  if (!db_delete_store (b, f.id, error))
    return FALSE;
  if (f.store == NULL)
    f.store = store_new (b, scope, name, TRUE, TRUE);
  store_set_kind (f.store, TRUE, TRUE);
  f.store->id = 0;
  f.store->revision = f.revision;
  f.store->config = f.config;  /* the options keep over a change of kind */
  store_note_config (b, f.store);
  return TRUE;
}

static gboolean
embedded_set_store_config (ConatBackend *backend, const char *scope, const char *name,
                           const char *merge, const ConatStoreLimits *limits, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  ConatStoreInfo info;
  Config config;
  Found f;

  if (merge != NULL && strlen (merge) >= sizeof config.merge)
    return fail (error, CONAT_ERROR_INVALID_ARGUMENT, "unknown merge strategy '%s'", merge);
  if (!store_find_existing (b, scope, name, &f, &info, error))
    return FALSE;
  config = f.config;
  if (merge != NULL)
    strcpy (config.merge, merge);
  if (limits != NULL)
    config.limits = *limits;
  if (!f.ephemeral && !db_save_config (b, f.id, &config, error))
    return FALSE;
  if (f.store != NULL)
    {
      f.store->config = config;
      store_note_config (b, f.store);
    }
  return TRUE;
}

/* ------------------------------------------------------------ store handles */

static void
handle_finalize (Receiver *r)
{
  ConatBackendStore *h = (ConatBackendStore *) r;

  store_unref (h->store);
  g_free (h);
}

static gboolean put_batch (EmbeddedBackend *b, Store *s, ConatPut *puts, guint n,
                           GArray *changes, GError **error);

/* db_lock held.  Deletes the values of S past its max_age and tells the handles. */
static gboolean
store_expire (EmbeddedBackend *b, Store *s, GError **error)
{
  g_autoptr(GArray) changes = NULL;

  if (s->config.limits.max_age_ms <= 0)
    return TRUE;
  changes = changes_new ();
  if (!put_batch (b, s, NULL, 0, changes, error))
    return FALSE;
  if (changes->len > 0 && s->handles->len > 0)
    event_push (b, s->handles, g_steal_pointer (&changes), NULL);
  return TRUE;
}

/* db_lock held.  Registers a new handle on (SCOPE, NAME) and takes its snapshot. */
static ConatBackendStore *
handle_new (EmbeddedBackend *b, const char *scope, const char *name, gboolean ephemeral,
            GArray *snapshot, guint64 *loaded_revision, GError **error)
{
  Store *s = store_get (b, scope, name, ephemeral, error);
  ConatBackendStore *h;

  if (s == NULL)
    return NULL;
  if (!store_expire (b, s, error) || !store_snapshot (b, s, snapshot, error))
    {
      store_forget_if_unused (b, s);
      return NULL;
    }
  h = g_new0 (ConatBackendStore, 1);
  h->r.ref_count = 1;
  h->r.finalize = handle_finalize;
  h->store = s;
  g_atomic_int_inc (&s->ref_count);
  g_ptr_array_add (s->handles, h);
  *loaded_revision = s->revision;
  return h;
}

static ConatBackendStore *
embedded_store_open (ConatBackend *backend, const char *scope, const char *name,
                     gboolean ephemeral, ConatChangeCallback on_load,
                     ConatChangeCallback on_change, ConatLoadProgressCallback on_progress,
                     gpointer user_data, guint64 *loaded_revision, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GArray) snapshot = changes_new ();
  ConatBackendStore *h;

  g_mutex_lock (&b->db_lock);
  h = handle_new (b, scope, name, ephemeral, snapshot, loaded_revision, error);
  if (h != NULL)
    {
      h->r.user_data = user_data;
      h->on_change = on_change;
    }
  g_mutex_unlock (&b->db_lock);
  if (h == NULL)
    return NULL;
  for (guint i = 0; i < snapshot->len; i++)
    {
      if (on_progress != NULL && i % LOAD_PROGRESS_KEYS == 0)
        on_progress (i, snapshot->len, user_data);
      if (on_load != NULL)
        on_load (&g_array_index (snapshot, ConatChange, i), user_data);
    }
  if (on_progress != NULL)
    on_progress (snapshot->len, snapshot->len, user_data);
  g_mutex_lock (&b->cb_lock);
  h->r.ready = TRUE;
  g_cond_broadcast (&b->cb_cond);
  g_mutex_unlock (&b->cb_lock);
  return h;
}

static void
embedded_store_close (ConatBackendStore *h)
{
  Store *s = h->store;
  EmbeddedBackend *b = s->backend;

  receiver_close (b, &h->r);
  g_mutex_lock (&b->db_lock);
  g_ptr_array_remove (s->handles, h);
  if (s->handles->len == 0 && s->ephemeral)
    {
      g_hash_table_remove_all (s->entries);
      s->bytes = 0;
    }
  store_forget_if_unused (b, s);
  g_mutex_unlock (&b->db_lock);
  receiver_unref (&h->r);
}

static gsize
embedded_max_value_size (ConatBackendStore *h)
{
  EmbeddedBackend *b = h->store->backend;
  gint64 limit;

  g_mutex_lock (&b->db_lock);
  limit = h->store->config.limits.max_value_size;
  g_mutex_unlock (&b->db_lock);
  return limit > 0 && limit < MAX_VALUE_SIZE ? (gsize) limit : MAX_VALUE_SIZE;
}

/* ------------------------------------------------------------------ writes */

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
  bind_name (st, 2, key);
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
    fail (error, CONAT_ERROR_NO_SPACE, "the store holds %" G_GINT64_FORMAT
          " keys, its limit", u->keys);
  else if (lim->max_bytes > 0 && (gint64) size > old && u->bytes - old + (gint64) size > lim->max_bytes)
    fail (error, CONAT_ERROR_NO_SPACE, "%" G_GSIZE_FORMAT " bytes more would take the store"
          " over its limit of %" G_GINT64_FORMAT " bytes", size - old, lim->max_bytes);
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
  bind_name (st, 2, p->key);
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
    fail (&p->error, CONAT_ERROR_TOO_BIG, "value of %" G_GSIZE_FORMAT
          " bytes is over the limit of %d bytes", size, MAX_VALUE_SIZE);
  else if (p->value != NULL && lim->max_value_size > 0 && (gint64) size > lim->max_value_size)
    fail (&p->error, CONAT_ERROR_TOO_BIG, "value of %" G_GSIZE_FORMAT " bytes is over the"
          " store's limit of %" G_GINT64_FORMAT " bytes", size, lim->max_value_size);
  else if ((p->cas || counted) && (rc = key_lookup (b, s, p->key, &current, &old)) != SQLITE_OK)
    return rc;
  else if (p->cas && current != p->expected_revision)
    fail (&p->error, CONAT_ERROR_WRONG_REVISION, "wrong last sequence");
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
  changes_add (changes, p->key, p->value, p->revision, time_ms, p->writer_id, p->gen);
  return SQLITE_OK;
}

/* Deletes the values of S past its max_age, each at a new revision. */
static int
expire_apply (EmbeddedBackend *b, Store *s, guint64 *revision, gint64 time_ms, GArray *changes)
{
  gint64 cutoff = expiry_cutoff (&s->config, time_ms);
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
        g_ptr_array_add (keys, column_name (st, 0));
      rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
  for (guint i = 0; i < keys->len && rc == SQLITE_OK; i++)
    {
      ConatPut del = { .key = keys->pdata[i] };
      gboolean applied;

      if ((rc = key_write (b, s, &del, *revision + 1, time_ms, &applied)) == SQLITE_OK && applied)
        changes_add (changes, del.key, NULL, ++*revision, time_ms, 0, 0);
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
  db_fail (b, rc, error);
  if (!sqlite3_get_autocommit (b->db))
    sqlite3_exec (b->db, "ROLLBACK", NULL, NULL, NULL);
  g_array_set_size (changes, 0);
  puts_reset (puts, n, NULL);
  return FALSE;
}

/* db_lock held.  Applies the batch to S in one transaction. */
static gboolean
put_batch (EmbeddedBackend *b, Store *s, ConatPut *puts, guint n, GArray *changes,
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

static gboolean
embedded_put_many (ConatBackendStore *h, ConatPut *puts, guint n, GError **error)
{
  Store *s = h->store;
  EmbeddedBackend *b = s->backend;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&b->db_lock);
  g_autoptr(GArray) changes = changes_new ();

  puts_reset (puts, n, NULL);
  if (g_atomic_int_get (&h->r.closing))
    return fail (error, CONAT_ERROR_CLOSED, "store %s/%s is closed", s->scope, s->name);
  if (!s->exists && !store_materialise (b, s, s->ephemeral, FALSE, error))
    return FALSE;
  if (!put_batch (b, s, puts, n, changes, error))
    return FALSE;
  if (changes->len > 0)
    event_push (b, s->handles, g_steal_pointer (&changes), NULL);
  return TRUE;
}

/* The dispatcher, every SWEEP_US while a store in memory has a max_age:
 * deletes what is past it and tells the handles. */
static void
backend_sweep (EmbeddedBackend *b)
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
      changes = changes_new ();
      if (!put_batch (b, s, NULL, 0, changes, &error))
        g_warning ("removing old values of %s/%s: %s", s->scope, s->name, error->message);
      else if (changes->len > 0)
        event_push (b, s->handles, g_steal_pointer (&changes), NULL);
    }
  if (!any)
    g_atomic_int_set (&b->sweep, 0);
}

/* ------------------------------------------------------------------ PubSub */

static void
sub_finalize (Receiver *r)
{
  ConatBackendSub *sub = (ConatBackendSub *) r;

  g_bytes_unref (sub->key);
  g_free (sub);
}

/* "scope NUL [/path] NUL name": a NULL path and "" differ. */
static GBytes *
channel_key (const char *scope, const char *path, const char *name)
{
  g_autofree char *p = path != NULL ? g_strconcat ("/", path, NULL) : g_strdup ("");

  return names_key (scope, p, name);
}

static GBytes *
scope_key (const char *scope)
{
  return g_bytes_new (scope, strlen (scope) + 1);
}

/* A new receiver in TABLE under KEY (taken), for a callback set by the caller. */
static ConatBackendSub *
sub_add (EmbeddedBackend *b, GHashTable *table, GBytes *key, gpointer user_data,
         ConatBackendMessageCallback callback, ConatBackendChannelCallback seen)
{
  ConatBackendSub *sub = g_new0 (ConatBackendSub, 1);
  GPtrArray *subs;

  sub->r = (Receiver) { 1, FALSE, TRUE, user_data, sub_finalize };
  sub->backend = b;
  sub->table = table;
  sub->key = key;
  sub->callback = callback;
  sub->seen = seen;
  g_mutex_lock (&b->sub_lock);
  subs = g_hash_table_lookup (table, key);
  if (subs == NULL)
    g_hash_table_insert (table, g_bytes_ref (key), (subs = g_ptr_array_new ()));
  g_ptr_array_add (subs, sub);
  g_mutex_unlock (&b->sub_lock);
  return sub;
}

static ConatBackendSub *
embedded_subscribe (ConatBackend *backend, const char *scope, const char *path, const char *name,
                    ConatBackendMessageCallback callback, gpointer user_data, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;

  return sub_add (b, b->channels, channel_key (scope, path, name), user_data, callback, NULL);
}

static ConatBackendSub *
embedded_watch_scope (ConatBackend *backend, const char *scope,
                      ConatBackendChannelCallback callback, gpointer user_data, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;

  return sub_add (b, b->watches, scope_key (scope), user_data, NULL, callback);
}

static void
embedded_unsubscribe (ConatBackendSub *sub)
{
  EmbeddedBackend *b = sub->backend;
  GPtrArray *subs;

  receiver_close (b, &sub->r);
  g_mutex_lock (&b->sub_lock);
  subs = g_hash_table_lookup (sub->table, sub->key);
  g_ptr_array_remove (subs, sub);
  if (subs->len == 0)
    g_hash_table_remove (sub->table, sub->key);
  g_mutex_unlock (&b->sub_lock);
  receiver_unref (&sub->r);
}

static gboolean
embedded_publish (ConatBackend *backend, const char *scope, const char *path, const char *name,
                  GBytes *message, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GBytes) channel = channel_key (scope, path, name);
  g_autoptr(GBytes) scope_watched = scope_key (scope);
  GPtrArray *subs;

  if (g_bytes_get_size (message) > MAX_MESSAGE_SIZE)
    return fail (error, CONAT_ERROR_TOO_BIG, "message of %" G_GSIZE_FORMAT
                 " bytes is over the limit of %d bytes", g_bytes_get_size (message),
                 MAX_MESSAGE_SIZE);
  g_mutex_lock (&b->sub_lock);
  if ((subs = g_hash_table_lookup (b->channels, channel)) != NULL)
    event_push (b, subs, NULL, message);
  if ((subs = g_hash_table_lookup (b->watches, scope_watched)) != NULL)
    event_push_seen (b, subs, name, path);
  g_mutex_unlock (&b->sub_lock);
  return TRUE;
}

static gsize
embedded_max_message_size (ConatBackend *backend)
{
  return MAX_MESSAGE_SIZE;
}

static void
embedded_get_status (ConatBackend *backend, ConatClientStatus *status)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;

  status->connected = TRUE;
  status->connected_since_us = b->opened_us;
  status->servers = NULL;
  g_mutex_lock (&b->db_lock);
  status->last_error = g_strdup (b->last_error);
  g_mutex_unlock (&b->db_lock);
}

/* --------------------------------------------------------------- lifetime */

static void
backend_finalize (EmbeddedBackend *b)
{
  if (b->dispatcher != NULL)
    g_thread_unref (b->dispatcher);
  for (int i = 0; i < N_STATEMENTS; i++)
    sqlite3_finalize (b->stmts[i]);
  sqlite3_close (b->db);
  if (b->lock_fd >= 0)
    close (b->lock_fd);
  g_hash_table_unref (b->stores);
  g_hash_table_unref (b->channels);
  g_hash_table_unref (b->watches);
  g_async_queue_unref (b->events);
  g_mutex_clear (&b->db_lock);
  g_mutex_clear (&b->sub_lock);
  g_mutex_clear (&b->cb_lock);
  g_cond_clear (&b->cb_cond);
  g_free (b->last_error);
  g_free (b->db_path);
  g_free (b->data_dir);
  g_free (b);
}

/* Stops the dispatcher after the events already queued, then frees B.  On
 * the dispatcher thread (a callback dropped the last reference) the
 * dispatcher frees B itself once it has left the callback. */
static void
backend_stop (EmbeddedBackend *b)
{
  gboolean self = g_thread_self () == b->dispatcher;

  b->free_on_stop = self;
  g_async_queue_push (b->events, g_new0 (Event, 1));
  if (self)
    return;
  g_thread_join (g_steal_pointer (&b->dispatcher));
  backend_finalize (b);
}

static void
embedded_free (ConatBackend *backend)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  gboolean last;

  g_mutex_lock (&registry_lock);
  last = --b->ref_count == 0;
  if (last && g_hash_table_lookup (registry, b->data_dir) == b)
    g_hash_table_remove (registry, b->data_dir);
  g_mutex_unlock (&registry_lock);
  if (last)
    backend_stop (b);
}

static char *
canonical_data_dir (const char *data_dir, GError **error)
{
  g_autofree char *dir = data_dir != NULL
                           ? g_strdup (data_dir)
                           : g_build_filename (g_get_user_data_dir (), "conatfs", NULL);
  g_autofree char *real = NULL;
  int e;

  if (g_mkdir_with_parents (dir, 0700) == 0 && (real = realpath (dir, NULL)) != NULL)
    return g_steal_pointer (&real);  /* malloc and g_malloc are one allocator (GLib >= 2.46) */
  e = errno;
  fail (error, CONAT_ERROR_FAILED, "cannot use data directory %s: %s", dir, g_strerror (e));
  return NULL;
}

static gboolean
lock_data_dir (EmbeddedBackend *b, GError **error)
{
  g_autofree char *path = g_build_filename (b->data_dir, "lock", NULL);
  int e;

  b->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (b->lock_fd >= 0 && flock (b->lock_fd, LOCK_EX | LOCK_NB) == 0)
    return TRUE;
  e = errno;
  if (b->lock_fd >= 0 && e == EWOULDBLOCK)
    return fail (error, CONAT_ERROR_BUSY, "data directory %s is in use by another process",
                 b->data_dir);
  return fail (error, CONAT_ERROR_FAILED, "cannot lock %s: %s", path, g_strerror (e));
}

/* Takes DIR. */
static EmbeddedBackend *
backend_open (char *dir, GError **error)
{
  EmbeddedBackend *b = g_new0 (EmbeddedBackend, 1);

  b->parent.klass = &embedded_class;
  b->data_dir = dir;
  b->db_path = g_build_filename (dir, "conat.db", NULL);
  b->lock_fd = -1;
  b->pid = getpid ();
  b->opened_us = g_get_real_time ();
  b->ref_count = 1;
  g_mutex_init (&b->db_lock);
  g_mutex_init (&b->sub_lock);
  g_mutex_init (&b->cb_lock);
  g_cond_init (&b->cb_cond);
  b->stores = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                     (GDestroyNotify) g_bytes_unref, store_unref);
  b->channels = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                       (GDestroyNotify) g_bytes_unref,
                                       (GDestroyNotify) g_ptr_array_unref);
  b->watches = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                      (GDestroyNotify) g_bytes_unref,
                                      (GDestroyNotify) g_ptr_array_unref);
  b->events = g_async_queue_new_full (event_free);
  if (lock_data_dir (b, error) && db_open (b, error) &&
      (b->dispatcher = g_thread_try_new ("conat-embedded", dispatcher_main, b, error)) != NULL)
    return b;
  backend_finalize (b);
  return NULL;
}

ConatBackend *
conat_backend_embedded_new (const char *data_dir, GError **error)
{
  g_autofree char *dir = canonical_data_dir (data_dir, error);
  g_autoptr(GMutexLocker) locker = NULL;
  EmbeddedBackend *b;

  if (dir == NULL)
    return NULL;
  locker = g_mutex_locker_new (&registry_lock);
  if (registry == NULL)
    registry = g_hash_table_new (g_str_hash, g_str_equal);
  b = g_hash_table_lookup (registry, dir);
  if (b != NULL && b->pid == getpid ())
    {
      b->ref_count++;
      return &b->parent;
    }
  if ((b = backend_open (g_steal_pointer (&dir), error)) == NULL)
    return NULL;
  g_hash_table_replace (registry, b->data_dir, b);
  return &b->parent;
}

static const ConatBackendClass embedded_class = {
  .name = "embedded",
  .free = embedded_free,
  .list_scopes = embedded_list_scopes,
  .create_scope = embedded_create_scope,
  .remove_scope = embedded_remove_scope,
  .has_scope = embedded_has_scope,
  .list_stores = embedded_list_stores,
  .create_store = embedded_create_store,
  .remove_store = embedded_remove_store,
  .store_info = embedded_store_info,
  .set_store_ephemeral = embedded_set_store_ephemeral,
  .set_store_config = embedded_set_store_config,
  .store_open = embedded_store_open,
  .store_close = embedded_store_close,
  .put_many = embedded_put_many,
  .max_value_size = embedded_max_value_size,
  .subscribe = embedded_subscribe,
  .watch_scope = embedded_watch_scope,
  .unsubscribe = embedded_unsubscribe,
  .publish = embedded_publish,
  .max_message_size = embedded_max_message_size,
  .get_status = embedded_get_status,
};
