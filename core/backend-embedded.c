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
 *
 * The SQLite side is in embedded-db.c, scopes and stores in
 * embedded-namespace.c, writes in embedded-put.c and PubSub in
 * embedded-pubsub.c; embedded-private.h holds what they share.
 */
#define G_LOG_DOMAIN "conat"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "embedded-private.h"

#define SWEEP_US (250 * 1000)
#define LOAD_PROGRESS_KEYS 4096  /* on_progress of store_open, every so many keys */

const Config embedded_default_config = { "lww", { 0, 0, 0, 0 } };

static GMutex registry_lock;
static GHashTable *registry;  /* registry_lock: char *data_dir -> EmbeddedBackend * */

static const ConatBackendClass embedded_class;

gboolean
embedded_fail (GError **error, ConatError code, const char *format, ...)
{
  va_list ap;

  va_start (ap, format);
  g_propagate_error (error, g_error_new_valist (CONAT_ERROR, code, format, ap));
  va_end (ap);
  return FALSE;
}

/* "A NUL B [NUL C]": a hash key made of names that hold any byte but NUL. */
GBytes *
embedded_names_key (const char *a, const char *b, const char *c)
{
  GByteArray *buf = g_byte_array_new ();

  g_byte_array_append (buf, (const guint8 *) a, strlen (a) + 1);
  g_byte_array_append (buf, (const guint8 *) b, strlen (b));
  if (c != NULL)
    g_byte_array_append (g_byte_array_append (buf, (const guint8 *) "", 1),
                         (const guint8 *) c, strlen (c));
  return g_byte_array_free_to_bytes (buf);
}

/* ------------------------------------------------------- receivers, events */

static gpointer
receiver_ref (gconstpointer src, gpointer unused)
{
  Receiver *r = (Receiver *) src;

  g_atomic_int_inc (&r->ref_count);
  return r;
}

void
embedded_receiver_unref (gpointer data)
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
void
embedded_receiver_close (EmbeddedBackend *b, Receiver *r)
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

GArray *
embedded_changes_new (void)
{
  GArray *changes = g_array_new (FALSE, FALSE, sizeof (ConatChange));

  g_array_set_clear_func (changes, change_clear);
  return changes;
}

void
embedded_changes_add (GArray *changes, const char *key, GBytes *value, guint64 revision,
                      gint64 time_ms, guint64 writer_id, guint64 gen)
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
  g_ptr_array_set_free_func (ev->receivers, embedded_receiver_unref);
  return ev;
}

/* Queues CHANGES (taken) or MESSAGE for every receiver in RECEIVERS. */
void
embedded_event_push (EmbeddedBackend *b, GPtrArray *receivers, GArray *changes, GBytes *message)
{
  Event *ev = event_new (receivers);

  ev->changes = changes;
  ev->message = message != NULL ? g_bytes_ref (message) : NULL;
  g_async_queue_push (b->events, ev);
}

/* Queues, for every watch in WATCHES, that a message was sent on NAME, PATH. */
void
embedded_event_push_seen (EmbeddedBackend *b, GPtrArray *watches, const char *name,
                          const char *path)
{
  Event *ev = event_new (watches);

  ev->name = g_strdup (name);
  ev->path = g_strdup (path);
  g_async_queue_push (b->events, ev);
}

/* An event for no receiver: wakes the dispatcher. */
Event *
embedded_event_wake_new (void)
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
          embedded_backend_sweep (b);
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
gint64
embedded_expiry_cutoff (const Config *c, gint64 now_ms)
{
  return c->limits.max_age_ms > 0 ? now_ms - c->limits.max_age_ms : G_MININT64;
}

/* db_lock held.  S, in memory, has new options: a max_age starts the
 * dispatcher's sweeps (an empty event wakes it). */
void
embedded_store_note_config (EmbeddedBackend *b, Store *s)
{
  if (s->config.limits.max_age_ms <= 0 || !g_atomic_int_compare_and_exchange (&b->sweep, 0, 1))
    return;
  g_async_queue_push (b->events, embedded_event_wake_new ());
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
void
embedded_store_set_kind (Store *s, gboolean ephemeral, gboolean pinned)
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
Store *
embedded_store_new (EmbeddedBackend *b, const char *scope, const char *name, gboolean ephemeral,
                    gboolean pinned)
{
  Store *s = g_new0 (Store, 1);

  s->ref_count = 1;
  s->backend = b;
  s->id_key = embedded_names_key (scope, name, NULL);
  s->scope = g_strdup (scope);
  s->name = g_strdup (name);
  s->exists = TRUE;
  s->handles = g_ptr_array_new ();
  s->config = embedded_default_config;
  embedded_store_set_kind (s, ephemeral, pinned);
  g_hash_table_insert (b->stores, g_bytes_ref (s->id_key), s);
  return s;
}

/* Drops S from memory unless a handle or an explicit creation keeps it. */
void
embedded_store_forget_if_unused (EmbeddedBackend *b, Store *s)
{
  g_autoptr(GBytes) key = g_bytes_ref (s->id_key);

  if (s->handles->len == 0 && !(s->ephemeral && s->exists && s->pinned))
    g_hash_table_remove (b->stores, key);
}

/* Makes S, removed while open, exist again with the kind asked for. */
gboolean
embedded_store_materialise (EmbeddedBackend *b, Store *s, gboolean ephemeral, gboolean pinned,
                            GError **error)
{
  if (!ephemeral && !embedded_db_insert_store (b, s->scope, s->name, s->revision, &s->id, error))
    return FALSE;
  embedded_store_set_kind (s, ephemeral, pinned);
  s->exists = TRUE;
  s->config = embedded_default_config;  /* a new store: the removed one's options went with it */
  return TRUE;
}

gboolean
embedded_store_find (EmbeddedBackend *b, const char *scope, const char *name, Found *f,
                     GError **error)
{
  g_autoptr(GBytes) key = embedded_names_key (scope, name, NULL);
  g_autoptr(sqlite3_stmt) st = NULL;
  Store *s = g_hash_table_lookup (b->stores, key);

  *f = (Found) { s, s && s->exists, s && s->ephemeral, s ? s->id : 0, s ? s->revision : 0,
                 s ? s->config : embedded_default_config };
  if (s != NULL)
    return TRUE;
  st = embedded_db_query (b, error, "SELECT id, revision, merge, max_value_size, max_age_ms,"
                          " max_bytes, max_keys FROM stores WHERE scope = ?1 AND name = ?2",
                          "ss", scope, name);
  if (st == NULL || !embedded_db_step (b, st, &f->exists, error))
    return FALSE;
  f->id = f->exists ? sqlite3_column_int64 (st, 0) : 0;
  f->revision = f->exists ? (guint64) sqlite3_column_int64 (st, 1) : 0;
  if (f->exists)
    embedded_db_column_config (st, 2, &f->config);
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

  if (!embedded_store_find (b, scope, name, &f, error))
    return NULL;
  if (f.store != NULL)
    return f.exists || embedded_store_materialise (b, f.store, ephemeral, FALSE, error)
           ? f.store : NULL;
  if (!f.exists && !ephemeral && !embedded_db_insert_store (b, scope, name, 0, &id, error))
    return NULL;
  s = embedded_store_new (b, scope, name, !f.exists && ephemeral, FALSE);
  s->id = f.exists ? f.id : id;
  s->revision = f.revision;
  s->config = f.config;
  embedded_store_note_config (b, s);
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
        embedded_changes_add (snapshot, key, ((Entry *) value)->value, ((Entry *) value)->revision,
                              ((Entry *) value)->time_ms, 0, 0);
      return TRUE;
    }
  st = embedded_db_query (b, error, "SELECT key, value, revision, time_ms FROM kv"
                                    " WHERE store_id = ?1 ORDER BY revision", "i", s->id);
  while (st != NULL && embedded_db_step (b, st, &row, error) && row)
    {
      g_autofree char *k = embedded_db_column_name (st, 0);
      g_autoptr(GBytes) v = g_bytes_new (sqlite3_column_blob (st, 1), sqlite3_column_bytes (st, 1));

      embedded_changes_add (snapshot, k, v, (guint64) sqlite3_column_int64 (st, 2),
                            sqlite3_column_int64 (st, 3), 0, 0);
    }
  return st != NULL && !row;
}

/* ------------------------------------------------------------ store handles */

static void
handle_finalize (Receiver *r)
{
  ConatBackendStore *h = (ConatBackendStore *) r;

  store_unref (h->store);
  g_free (h);
}

/* db_lock held.  Deletes the values of S past its max_age and tells the handles. */
static gboolean
store_expire (EmbeddedBackend *b, Store *s, GError **error)
{
  g_autoptr(GArray) changes = NULL;

  if (s->config.limits.max_age_ms <= 0)
    return TRUE;
  changes = embedded_changes_new ();
  if (!embedded_put_batch (b, s, NULL, 0, changes, error))
    return FALSE;
  if (changes->len > 0 && s->handles->len > 0)
    embedded_event_push (b, s->handles, g_steal_pointer (&changes), NULL);
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
      embedded_store_forget_if_unused (b, s);
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
  g_autoptr(GArray) snapshot = embedded_changes_new ();
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

  embedded_receiver_close (b, &h->r);
  g_mutex_lock (&b->db_lock);
  g_ptr_array_remove (s->handles, h);
  if (s->handles->len == 0 && s->ephemeral)
    {
      g_hash_table_remove_all (s->entries);
      s->bytes = 0;
    }
  embedded_store_forget_if_unused (b, s);
  g_mutex_unlock (&b->db_lock);
  embedded_receiver_unref (&h->r);
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
  embedded_fail (error, CONAT_ERROR_FAILED, "cannot use data directory %s: %s", dir,
                 g_strerror (e));
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
    return embedded_fail (error, CONAT_ERROR_BUSY, "data directory %s is in use by another process",
                          b->data_dir);
  return embedded_fail (error, CONAT_ERROR_FAILED, "cannot lock %s: %s", path, g_strerror (e));
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
  if (lock_data_dir (b, error) && embedded_db_open (b, error) &&
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
