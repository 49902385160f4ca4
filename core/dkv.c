/* dkv.c — the conat DKV: a synchronous key-value store over a backend.
 *
 * Ordering, saving and conflicts
 * ------------------------------
 * Each instance keeps two maps under kv->lock:
 *
 *   mirror  key -> the value the backend confirmed, with its revision/time;
 *   local   key -> this instance's change not yet echoed (value or delete).
 *
 * Reads look at local first, then mirror, so a set is visible at once.
 * Every local change gets a new generation number (gen).  A local entry is
 * DIRTY (to send), INFLIGHT (sent, outcome unknown) or ACKED (the backend
 * gave it a revision; its echo has not arrived yet).  "Unsaved" means DIRTY
 * or INFLIGHT; save() waits until the entries it saw are ACKED or gone.
 *
 * The backend tells every handle about every confirmed change, in revision
 * order, with the writer id and gen of the put.  When a change arrives:
 *
 *   - it always replaces the mirror entry (prev = the old mirror value);
 *   - our own echo of gen g drops the local entry if it is still gen g;
 *   - a change by someone else while we hold an unsaved local value is a
 *     conflict: equal values resolve at once; with a merge callback the
 *     local value becomes merge(local, remote, prev) and is sent again
 *     with compare-and-set on the new revision; without one the local value
 *     stays and is sent (again), so it ends up last: local-first last write
 *     wins.  An ACKED entry does not conflict with an older change.
 *
 * Merge stores write with compare-and-set on the mirror's revision.  A put
 * refused with "wrong revision" waits (cas_wait) for the newer change to
 * arrive, which runs the merge and makes the entry DIRTY again.
 *
 * One saver thread per client sends DIRTY entries in batches; a batch whose
 * outcome is unknown is retried with backoff (puts carry writer id and gen,
 * so a retry is recognised).  Change events fire, with no lock held, for
 * every confirmed change, our own echoes included; never for local writes
 * or the initial load.
 */
#define G_LOG_DOMAIN "conat"

#include "client-private.h"

#include <string.h>

#define BATCH_MAX 500
#define LOAD_LOG_AFTER_US (1 * G_USEC_PER_SEC)  /* a slow load is logged from then on */
#define LOAD_LOG_EVERY_US (2 * G_USEC_PER_SEC)
#define RETRY_MIN_MS 150
#define RETRY_MAX_MS 10000

typedef enum { ENTRY_DIRTY, ENTRY_INFLIGHT, ENTRY_ACKED } EntryState;

typedef struct {
  GBytes *value;      /* NULL: delete */
  guint64 gen;
  EntryState state;
  gboolean cas_wait;  /* CAS refused: wait for the newer change */
  gboolean sent;      /* some generation of this entry went to the backend */
  guint64 revision;   /* ACKED: assigned revision and time */
  gint64 time_ms;
  /* The newest change by someone else that arrived while this value was
   * INFLIGHT (it stayed shown, to land later): if the ack says ours landed
   * before it after all, that change is the last write and wins. */
  guint64 remote_revision;
  /* An ACKED value this entry replaced before its echo came: what the key
   * holds again if the new value is rejected. */
  gboolean has_acked;
  GBytes *acked_value;  /* NULL: a delete */
  guint64 acked_gen, acked_revision;
  gint64 acked_time_ms;
} LocalEntry;

typedef struct {
  GBytes *value;
  guint64 revision;
  gint64 time_ms;
} MirrorEntry;

typedef struct {
  guint64 gen;
  GError *error;
} Rejection;

typedef struct {
  guint id;
  ConatChangeFunc func;
  gpointer data;
  GDestroyNotify destroy;
  gint refs;  /* atomic; dropped with no lock held */
} Watcher;

struct _ConatDkv {
  gint refs;             /* memory; atomic */
  gint users;            /* open() references; guarded by client->lock */
  ConatClient *client;
  char *scope, *name;
  char *cache_key;       /* NULL for no_cache instances */
  ConatMergeFunc merge;
  gpointer merge_data;
  gboolean autosave;
  guint64 writer_id;
  ConatBackendStore *store; /* owned; NULL after close */

  GMutex lock;           /* guards everything below */
  GCond cond;            /* broadcast when entries are confirmed or rejected */
  gboolean closed;
  guint saving;          /* save_batch calls using the backend store */
  GHashTable *mirror;    /* char* -> MirrorEntry* */
  GHashTable *local;     /* char* -> LocalEntry* */
  GHashTable *dirty;     /* set of keys whose local entry is DIRTY and not cas_wait */
  GHashTable *rejected;  /* char* -> Rejection* */
  guint64 loaded_revision;
  guint64 next_gen;
  gboolean queued;       /* in client->saver_queue */
  gint64 retry_at_us;    /* monotonic; 0: no backoff */
  guint retry_ms;
  GError *last_error;    /* last failed attempt, for save() */
  guint failures;        /* failed attempts so far */
  GList *watchers;       /* Watcher* */
  guint next_watch_id;
  /* The load in conat_dkv_open */
  guint64 load_keys, load_total;
  gint64 load_started_us;  /* monotonic */
  gint64 load_ms;          /* how long it took; -1 while loading */
  gint64 load_logged_us;   /* monotonic time of its last log line; 0: none */
};

static void
mirror_entry_free (gpointer p)
{
  MirrorEntry *m = p;

  g_bytes_unref (m->value);
  g_free (m);
}

static void
local_entry_free (gpointer p)
{
  LocalEntry *e = p;

  g_clear_pointer (&e->value, g_bytes_unref);
  g_clear_pointer (&e->acked_value, g_bytes_unref);
  g_free (e);
}

static void
rejection_free (gpointer p)
{
  Rejection *r = p;

  g_error_free (r->error);
  g_free (r);
}

ConatDkv *
conat_dkv_ref (ConatDkv *kv)
{
  g_atomic_int_inc (&kv->refs);
  return kv;
}

static void
watcher_unref (Watcher *w)
{
  if (!g_atomic_int_dec_and_test (&w->refs))
    return;
  if (w->destroy)
    w->destroy (w->data);
  g_free (w);
}

void
conat_dkv_unref (ConatDkv *kv)
{
  if (!g_atomic_int_dec_and_test (&kv->refs))
    return;
  g_list_free_full (kv->watchers, (GDestroyNotify) watcher_unref);
  g_hash_table_unref (kv->mirror);
  g_hash_table_unref (kv->local);
  g_hash_table_unref (kv->dirty);
  g_hash_table_unref (kv->rejected);
  g_clear_error (&kv->last_error);
  g_cond_clear (&kv->cond);
  g_mutex_clear (&kv->lock);
  g_free (kv->scope);
  g_free (kv->name);
  g_free (kv->cache_key);
  g_free (kv);
}

static gboolean
bytes_equal0 (GBytes *a, GBytes *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return g_bytes_equal (a, b);
}

static gboolean
check_open (ConatDkv *kv, GError **error)
{
  if (!kv->closed)
    return TRUE;
  g_set_error (error, CONAT_ERROR, CONAT_ERROR_CLOSED, "store '%s' is closed", kv->name);
  return FALSE;
}

/* Puts KV on its client's saver queue (not with kv->lock held). */
static void
saver_enqueue (ConatDkv *kv)
{
  ConatClient *client = kv->client;
  gboolean add;

  g_mutex_lock (&kv->lock);
  add = kv->autosave && !kv->closed && !kv->queued;
  kv->queued |= add;
  g_mutex_unlock (&kv->lock);
  if (!add)
    return;

  g_mutex_lock (&client->lock);
  g_queue_push_tail (&client->saver_queue, conat_dkv_ref (kv));
  g_cond_broadcast (&client->saver_cond);
  g_mutex_unlock (&client->lock);
}

/* ------------------------------------------------------- change delivery */

typedef struct {
  char *key;
  GBytes *value, *prev;
  gboolean own;
} Event;

static void
fire_event (ConatDkv *kv, Event *ev)
{
  GList *watchers = NULL;

  g_mutex_lock (&kv->lock);
  for (GList *l = kv->watchers; l != NULL && !kv->closed; l = l->next)
    {
      g_atomic_int_inc (&((Watcher *) l->data)->refs);
      watchers = g_list_prepend (watchers, l->data);
    }
  g_mutex_unlock (&kv->lock);

  watchers = g_list_reverse (watchers);
  for (GList *l = watchers; l != NULL; l = l->next)
    {
      Watcher *w = l->data;
      w->func (kv, ev->key, ev->value, ev->prev, ev->own, w->data);
    }

  g_list_free_full (watchers, (GDestroyNotify) watcher_unref);
}

static void
mirror_apply (ConatDkv *kv, const ConatChange *change)
{
  MirrorEntry *m;

  if (change->value == NULL)
    {
      g_hash_table_remove (kv->mirror, change->key);
      return;
    }
  m = g_new0 (MirrorEntry, 1);
  m->value = g_bytes_ref (change->value);
  m->revision = change->revision;
  m->time_ms = change->time_ms;
  g_hash_table_replace (kv->mirror, g_strdup (change->key), m);
}

static void
on_load (const ConatChange *change, gpointer user_data)
{
  ConatDkv *kv = user_data;

  g_mutex_lock (&kv->lock);
  mirror_apply (kv, change);
  g_mutex_unlock (&kv->lock);
}

/* Runs the merge callback with no lock held; returns with kv->lock held.
 * FALSE if the local entry changed meanwhile (it wins then). */
static gboolean
run_merge (ConatDkv *kv, const char *key, LocalEntry *e, GBytes *remote, GBytes *prev,
           GBytes **resolved)
{
  guint64 gen = e->gen;
  g_autoptr (GBytes) local = e->value ? g_bytes_ref (e->value) : NULL;
  ConatMergeFunc merge = kv->merge;
  gpointer merge_data = kv->merge_data;

  g_mutex_unlock (&kv->lock);
  *resolved = merge (key, local, remote, prev, merge_data);
  g_mutex_lock (&kv->lock);

  e = g_hash_table_lookup (kv->local, key);
  return e != NULL && e->gen == gen && !kv->closed;
}

static void
mark_dirty (ConatDkv *kv, const char *key, LocalEntry *e)
{
  e->state = ENTRY_DIRTY;
  if (!e->cas_wait)
    g_hash_table_add (kv->dirty, g_strdup (key));
}

static void
local_remove (ConatDkv *kv, const char *key)
{
  g_hash_table_remove (kv->dirty, key);
  g_hash_table_remove (kv->local, key);
}

static void
local_replace_value (ConatDkv *kv, const char *key, LocalEntry *e, GBytes *value)
{
  g_clear_pointer (&e->value, g_bytes_unref);
  e->value = value;
  e->gen = ++kv->next_gen;
  e->cas_wait = FALSE;
  e->remote_revision = 0;
  mark_dirty (kv, key, e);
}

/* A change by someone else while KEY holds local entry E (not ACKED).
 * Returns the value the event reports (borrowed). */
static GBytes *
resolve_conflict (ConatDkv *kv, const ConatChange *change, GBytes *prev)
{
  LocalEntry *e = g_hash_table_lookup (kv->local, change->key);
  GBytes *resolved = NULL;

  if (bytes_equal0 (e->value, change->value))
    {
      if (e->state == ENTRY_DIRTY)
        local_remove (kv, change->key);
      return change->value;
    }
  if (kv->merge == NULL)
    return e->value;  /* local first: a DIRTY value is sent, an INFLIGHT one lands later */
  if (e->value == NULL)
    {
      local_replace_value (kv, change->key, e, NULL);  /* a pending delete wins; CAS on the new revision */
      return NULL;
    }
  if (!run_merge (kv, change->key, e, change->value, prev, &resolved))
    {
      g_clear_pointer (&resolved, g_bytes_unref);
      e = g_hash_table_lookup (kv->local, change->key);
      return e ? e->value : change->value;
    }
  e = g_hash_table_lookup (kv->local, change->key);
  if (resolved == NULL)
    local_replace_value (kv, change->key, e, g_bytes_ref (e->value));
  else if (bytes_equal0 (resolved, change->value))
    {
      g_bytes_unref (resolved);
      local_remove (kv, change->key);
      return change->value;
    }
  else
    local_replace_value (kv, change->key, e, resolved);
  return e->value;
}

/* Applies CHANGE with kv->lock held; fills EV. */
static void
apply_change (ConatDkv *kv, const ConatChange *change, Event *ev)
{
  MirrorEntry *m = g_hash_table_lookup (kv->mirror, change->key);
  LocalEntry *e = g_hash_table_lookup (kv->local, change->key);
  GBytes *value = change->value;

  ev->key = g_strdup (change->key);
  ev->prev = m ? g_bytes_ref (m->value) : NULL;
  ev->own = change->writer_id == kv->writer_id;
  mirror_apply (kv, change);

  if (e != NULL && ev->own && e->gen <= change->gen)
    local_remove (kv, change->key);
  else if (e != NULL && ev->own && e->has_acked && e->acked_gen <= change->gen)
    {
      e->has_acked = FALSE;  /* the mirror has it now */
      g_clear_pointer (&e->acked_value, g_bytes_unref);
    }
  else if (e != NULL && !ev->own && e->state != ENTRY_ACKED)
    {
      if (e->state == ENTRY_INFLIGHT)
        e->remote_revision = MAX (e->remote_revision, change->revision);
      value = resolve_conflict (kv, change, ev->prev);
    }
  else if (e != NULL && !ev->own && e->revision < change->revision)
    local_remove (kv, change->key);  /* a newer write than our ACKED one */

  ev->value = value ? g_bytes_ref (value) : NULL;
  g_cond_broadcast (&kv->cond);
}

static gboolean
has_dirty (ConatDkv *kv)
{
  return g_hash_table_size (kv->dirty) > 0;
}

static void
on_change (const ConatChange *change, gpointer user_data)
{
  ConatDkv *kv = user_data;
  Event ev = { 0 };
  gboolean dirty;

  g_mutex_lock (&kv->lock);
  if (kv->closed || (change->revision != 0 && change->revision <= kv->loaded_revision))
    {
      g_mutex_unlock (&kv->lock);
      return;
    }
  if (change->revision == 0)
    kv->loaded_revision = 0;  /* the backend lost the store: start over */
  apply_change (kv, change, &ev);
  dirty = has_dirty (kv);
  g_mutex_unlock (&kv->lock);

  if (dirty)
    saver_enqueue (kv);
  fire_event (kv, &ev);
  g_free (ev.key);
  g_clear_pointer (&ev.value, g_bytes_unref);
  g_clear_pointer (&ev.prev, g_bytes_unref);
}

/* ------------------------------------------------------------ open/close */

static ConatDkv *
dkv_new (ConatClient *client, const ConatDkvOptions *opts)
{
  ConatDkv *kv = g_new0 (ConatDkv, 1);

  kv->refs = 1;
  kv->users = 1;
  kv->client = client;
  kv->scope = g_strdup (opts->scope);
  kv->name = g_strdup (opts->name);
  kv->merge = opts->merge;
  kv->merge_data = opts->merge_data;
  kv->autosave = !opts->no_autosave;
  kv->writer_id = ((guint64) g_random_int () << 32 | g_random_int ()) | 1;
  g_mutex_init (&kv->lock);
  g_cond_init (&kv->cond);
  kv->mirror = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, mirror_entry_free);
  kv->local = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, local_entry_free);
  kv->dirty = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  kv->rejected = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, rejection_free);
  kv->next_watch_id = 1;
  kv->load_started_us = g_get_monotonic_time ();
  kv->load_ms = -1;
  return kv;
}

static gboolean
validate_options (const ConatDkvOptions *opts, GError **error)
{
  if (opts == NULL || opts->scope == NULL || opts->scope[0] == '\0')
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME, "a store needs a scope");
  else if (opts->name == NULL || opts->name[0] == '\0')
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME, "a store needs a name");
  else
    return TRUE;
  return FALSE;
}

static ConatDkv *
cache_lookup (ConatClient *client, const char *cache_key)
{
  ConatDkv *kv;

  g_mutex_lock (&client->lock);
  kv = g_hash_table_lookup (client->cache, cache_key);
  if (kv != NULL)
    kv->users++;
  g_mutex_unlock (&client->lock);
  return kv;
}

/* ------------------------------------------------------------------ load */

/* "scope/name" for a log line, escaped. */
static char *
dkv_log_name (ConatDkv *kv)
{
  g_autofree char *scope = g_strescape (kv->scope, NULL);
  g_autofree char *name = g_strescape (kv->name, NULL);

  return g_strdup_printf ("%s/%s", scope, name);
}

/* The backend's progress: logs a big or slow load, at a bounded rate. */
static void
on_progress (guint64 keys, guint64 total, gpointer user_data)
{
  ConatDkv *kv = user_data;
  gint64 now = g_get_monotonic_time ();
  g_autofree char *shown = NULL;
  gboolean start, again;

  g_mutex_lock (&kv->lock);
  kv->load_keys = keys;
  kv->load_total = total;
  start = kv->load_logged_us == 0
          && (total >= CONAT_LOAD_LOG_KEYS || now - kv->load_started_us >= LOAD_LOG_AFTER_US);
  again = kv->load_logged_us != 0 && now - kv->load_logged_us >= LOAD_LOG_EVERY_US;
  if (start || again)
    kv->load_logged_us = now;
  g_mutex_unlock (&kv->lock);

  if (!start && !again)
    return;
  shown = dkv_log_name (kv);
  if (start && total > 0)
    g_message ("%s: loading %" G_GUINT64_FORMAT " keys", shown, total);
  else if (start)
    g_message ("%s: loading its keys", shown);
  else
    g_message ("%s: loading: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " keys so far", shown,
               keys, MAX (keys, total));
}

static void
load_begin (ConatDkv *kv)
{
  g_mutex_lock (&kv->client->lock);
  kv->client->loads = g_list_prepend (kv->client->loads, kv);
  g_mutex_unlock (&kv->client->lock);
}

/* The open is over (OK: loaded); the end of a logged load is logged. */
static void
load_end (ConatDkv *kv, gboolean ok)
{
  g_autofree char *shown = dkv_log_name (kv);
  gboolean logged;

  g_mutex_lock (&kv->client->lock);
  kv->client->loads = g_list_remove (kv->client->loads, kv);
  g_mutex_unlock (&kv->client->lock);

  g_mutex_lock (&kv->lock);
  kv->load_ms = (g_get_monotonic_time () - kv->load_started_us) / 1000;
  kv->load_keys = kv->load_total = g_hash_table_size (kv->mirror);
  logged = kv->load_logged_us != 0;
  g_mutex_unlock (&kv->lock);
  if (logged && ok)
    g_message ("%s: loaded %" G_GUINT64_FORMAT " keys in %.1f s", shown, kv->load_keys,
               kv->load_ms / 1000.0);
}

/* With kv->lock held. */
static void
load_fill_locked (ConatDkv *kv, ConatLoadStatus *status)
{
  status->keys = kv->load_keys;
  status->total = kv->load_total;
  status->loaded = kv->load_ms >= 0;
  status->elapsed_ms = status->loaded ? kv->load_ms
                                      : (g_get_monotonic_time () - kv->load_started_us) / 1000;
}

GPtrArray *
conat_client_list_loads (ConatClient *client)
{
  GPtrArray *loads = g_ptr_array_new_with_free_func ((GDestroyNotify) conat_load_status_free);

  g_mutex_lock (&client->lock);
  for (GList *l = client->loads; l != NULL; l = l->next)
    {
      ConatDkv *kv = l->data;
      ConatLoadStatus *status = g_new0 (ConatLoadStatus, 1);

      status->scope = g_strdup (kv->scope);
      status->name = g_strdup (kv->name);
      g_mutex_lock (&kv->lock);
      load_fill_locked (kv, status);
      g_mutex_unlock (&kv->lock);
      g_ptr_array_add (loads, status);
    }
  g_mutex_unlock (&client->lock);
  return loads;
}

void
conat_dkv_get_load (ConatDkv *kv, ConatLoadStatus *status)
{
  memset (status, 0, sizeof *status);
  g_mutex_lock (&kv->lock);
  load_fill_locked (kv, status);
  g_mutex_unlock (&kv->lock);
}

void
conat_load_status_free (ConatLoadStatus *status)
{
  g_free (status->scope);
  g_free (status->name);
  g_free (status);
}

ConatDkv *
conat_dkv_open (ConatClient *client, const ConatDkvOptions *opts, GError **error)
{
  g_autofree char *cache_key = NULL;
  ConatDkv *kv, *other;
  ConatBackend *backend = client->backend;

  if (!validate_options (opts, error))
    return NULL;
  if (!opts->no_cache)
    {
      cache_key = conat_client_cache_key (opts->scope, opts->name, NULL);
      if ((kv = cache_lookup (client, cache_key)) != NULL)
        return kv;
    }

  kv = dkv_new (client, opts);
  load_begin (kv);
  kv->store = backend->klass->store_open (backend, opts->scope, opts->name, opts->ephemeral,
                                          on_load, on_change, on_progress, kv,
                                          &kv->loaded_revision, error);
  load_end (kv, kv->store != NULL);
  if (kv->store == NULL)
    {
      conat_dkv_unref (kv);
      return NULL;
    }

  g_mutex_lock (&client->lock);
  other = cache_key ? g_hash_table_lookup (client->cache, cache_key) : NULL;
  if (other != NULL)
    other->users++;  /* lost a race with another open: use the first */
  else
    {
      if (cache_key)
        g_hash_table_insert (client->cache, (kv->cache_key = g_strdup (cache_key)), kv);
      client->open_stores = g_list_prepend (client->open_stores, kv);
    }
  g_mutex_unlock (&client->lock);

  if (other != NULL)
    {
      backend->klass->store_close (kv->store);
      conat_dkv_unref (kv);
      return other;
    }
  return kv;
}

void
conat_dkv_close (ConatDkv *kv)
{
  ConatClient *client;
  ConatBackendStore *store;

  if (kv == NULL)
    return;
  client = kv->client;
  g_mutex_lock (&client->lock);
  if (--kv->users > 0)
    {
      g_mutex_unlock (&client->lock);
      return;
    }
  if (kv->cache_key)
    g_hash_table_remove (client->cache, kv->cache_key);
  client->open_stores = g_list_remove (client->open_stores, kv);
  g_mutex_unlock (&client->lock);

  g_mutex_lock (&kv->lock);
  kv->closed = TRUE;
  g_cond_broadcast (&kv->cond);
  while (kv->saving > 0)
    g_cond_wait (&kv->cond, &kv->lock);
  store = g_steal_pointer (&kv->store);
  g_mutex_unlock (&kv->lock);

  client->backend->klass->store_close (store);
  conat_dkv_unref (kv);
}

const char *
conat_dkv_scope (ConatDkv *kv)
{
  return kv->scope;
}

const char *
conat_dkv_name (ConatDkv *kv)
{
  return kv->name;
}

/* ---------------------------------------------------------------- writes */

static void
local_set (ConatDkv *kv, const char *key, GBytes *value)
{
  LocalEntry *e = g_hash_table_lookup (kv->local, key);

  g_hash_table_remove (kv->rejected, key);
  if (value == NULL && e == NULL && !g_hash_table_contains (kv->mirror, key))
    return;  /* deleting a key that does not exist writes nothing */
  if (value == NULL && e != NULL && !e->sent && !g_hash_table_contains (kv->mirror, key))
    {
      local_remove (kv, key);  /* never sent: forget it */
      return;
    }
  if (e == NULL)
    {
      e = g_new0 (LocalEntry, 1);
      g_hash_table_insert (kv->local, g_strdup (key), e);
    }
  else if (e->state == ENTRY_ACKED)
    {
      g_clear_pointer (&e->acked_value, g_bytes_unref);
      e->has_acked = TRUE;
      e->acked_value = e->value ? g_bytes_ref (e->value) : NULL;
      e->acked_gen = e->gen;
      e->acked_revision = e->revision;
      e->acked_time_ms = e->time_ms;
    }
  local_replace_value (kv, key, e, value ? g_bytes_ref (value) : NULL);
}

gboolean
conat_dkv_set (ConatDkv *kv, const char *key, GBytes *value, GError **error)
{
  g_return_val_if_fail (key != NULL, FALSE);

  g_mutex_lock (&kv->lock);
  if (!check_open (kv, error))
    {
      g_mutex_unlock (&kv->lock);
      return FALSE;
    }
  local_set (kv, key, value);
  g_mutex_unlock (&kv->lock);
  saver_enqueue (kv);
  return TRUE;
}

gboolean
conat_dkv_delete (ConatDkv *kv, const char *key, GError **error)
{
  return conat_dkv_set (kv, key, NULL, error);
}

gboolean
conat_dkv_clear (ConatDkv *kv, GError **error)
{
  g_autoptr (GPtrArray) keys = conat_dkv_keys (kv);

  g_mutex_lock (&kv->lock);
  if (!check_open (kv, error))
    {
      g_mutex_unlock (&kv->lock);
      return FALSE;
    }
  for (guint i = 0; i < keys->len; i++)
    local_set (kv, keys->pdata[i], NULL);
  g_mutex_unlock (&kv->lock);
  saver_enqueue (kv);
  return TRUE;
}

/* ----------------------------------------------------------------- reads */

/* With kv->lock held: the current value (borrowed) or NULL. */
static GBytes *
lookup_value (ConatDkv *kv, const char *key)
{
  LocalEntry *e = g_hash_table_lookup (kv->local, key);
  MirrorEntry *m;

  if (e != NULL)
    return e->value;
  m = g_hash_table_lookup (kv->mirror, key);
  return m ? m->value : NULL;
}

GBytes *
conat_dkv_get (ConatDkv *kv, const char *key, GError **error)
{
  GBytes *value = NULL;

  g_mutex_lock (&kv->lock);
  if (check_open (kv, error) && (value = lookup_value (kv, key)) != NULL)
    g_bytes_ref (value);
  g_mutex_unlock (&kv->lock);
  return value;
}

gboolean
conat_dkv_has (ConatDkv *kv, const char *key, GError **error)
{
  gboolean has = FALSE;

  g_mutex_lock (&kv->lock);
  if (check_open (kv, error))
    has = lookup_value (kv, key) != NULL;
  g_mutex_unlock (&kv->lock);
  return has;
}

/* With kv->lock held: key -> value (refs) of the current state. */
static GHashTable *
snapshot (ConatDkv *kv)
{
  GHashTable *all = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify) g_bytes_unref);
  GHashTableIter it;
  gpointer key, value;

  g_hash_table_iter_init (&it, kv->mirror);
  while (g_hash_table_iter_next (&it, &key, &value))
    g_hash_table_insert (all, g_strdup (key), g_bytes_ref (((MirrorEntry *) value)->value));
  g_hash_table_iter_init (&it, kv->local);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      LocalEntry *e = value;
      if (e->value)
        g_hash_table_replace (all, g_strdup (key), g_bytes_ref (e->value));
      else
        g_hash_table_remove (all, key);
    }
  return all;
}

GHashTable *
conat_dkv_get_all (ConatDkv *kv, GError **error)
{
  GHashTable *all = NULL;

  g_mutex_lock (&kv->lock);
  if (check_open (kv, error))
    all = snapshot (kv);
  g_mutex_unlock (&kv->lock);
  return all;
}

GPtrArray *
conat_dkv_keys (ConatDkv *kv)
{
  GPtrArray *keys = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GHashTable) all = NULL;
  GHashTableIter it;
  gpointer key;

  g_mutex_lock (&kv->lock);
  if (!kv->closed)
    all = snapshot (kv);
  g_mutex_unlock (&kv->lock);
  if (all == NULL)
    return keys;

  g_hash_table_iter_init (&it, all);
  while (g_hash_table_iter_next (&it, &key, NULL))
    g_ptr_array_add (keys, g_strdup (key));
  return keys;
}

gssize
conat_dkv_length (ConatDkv *kv, GError **error)
{
  g_autoptr (GHashTable) all = conat_dkv_get_all (kv, error);

  return all ? (gssize) g_hash_table_size (all) : -1;
}

gboolean
conat_dkv_get_entry (ConatDkv *kv, const char *key, ConatDkvEntry *entry, GError **error)
{
  LocalEntry *e;
  MirrorEntry *m;
  gboolean found = FALSE;

  memset (entry, 0, sizeof *entry);
  g_mutex_lock (&kv->lock);
  if (!check_open (kv, error))
    goto out;
  e = g_hash_table_lookup (kv->local, key);
  m = g_hash_table_lookup (kv->mirror, key);
  if (e != NULL && e->value != NULL)
    {
      entry->value = g_bytes_ref (e->value);
      entry->unsaved = e->state != ENTRY_ACKED;
      entry->revision = e->state == ENTRY_ACKED ? e->revision : 0;
      entry->time_ms = e->state == ENTRY_ACKED ? e->time_ms : 0;
      found = TRUE;
    }
  else if (e == NULL && m != NULL)
    {
      entry->value = g_bytes_ref (m->value);
      entry->revision = m->revision;
      entry->time_ms = m->time_ms;
      found = TRUE;
    }
out:
  g_mutex_unlock (&kv->lock);
  return found;
}

void
conat_dkv_entry_clear (ConatDkvEntry *entry)
{
  g_clear_pointer (&entry->value, g_bytes_unref);
}

guint64
conat_dkv_revision (ConatDkv *kv, const char *key)
{
  ConatDkvEntry entry;
  guint64 revision = 0;

  if (conat_dkv_get_entry (kv, key, &entry, NULL))
    revision = entry.revision;
  conat_dkv_entry_clear (&entry);
  return revision;
}

gint64
conat_dkv_time (ConatDkv *kv, const char *key)
{
  ConatDkvEntry entry;
  gint64 time_ms = 0;

  if (conat_dkv_get_entry (kv, key, &entry, NULL))
    time_ms = entry.time_ms;
  conat_dkv_entry_clear (&entry);
  return time_ms;
}

gsize
conat_dkv_max_value_size (ConatDkv *kv)
{
  gsize max = G_MAXSIZE;

  g_mutex_lock (&kv->lock);
  if (kv->store != NULL)
    max = kv->client->backend->klass->max_value_size (kv->store);
  g_mutex_unlock (&kv->lock);
  return max;
}

/* ---------------------------------------------------------------- saving */

/* With kv->lock held: takes up to BATCH_MAX DIRTY entries into PUTS. */
static guint
batch_take (ConatDkv *kv, ConatPut *puts)
{
  GHashTableIter it;
  gpointer key;
  LocalEntry *e;
  guint n = 0;

  g_hash_table_iter_init (&it, kv->dirty);
  while (n < BATCH_MAX && g_hash_table_iter_next (&it, &key, NULL))
    {
      MirrorEntry *m;
      e = g_hash_table_lookup (kv->local, key);
      if (e == NULL || e->state != ENTRY_DIRTY || e->cas_wait)
        {
          g_hash_table_iter_remove (&it);
          continue;
        }
      m = g_hash_table_lookup (kv->mirror, key);
      e->state = ENTRY_INFLIGHT;
      e->sent = TRUE;
      puts[n] = (ConatPut) {
        .key = g_strdup (key),
        .value = e->value ? g_bytes_ref (e->value) : NULL,
        .cas = kv->merge != NULL,
        .expected_revision = m ? m->revision : 0,
        .writer_id = kv->writer_id,
        .gen = e->gen,
      };
      n++;
      g_hash_table_iter_remove (&it);
    }
  return n;
}

static void
put_clear (ConatPut *put)
{
  g_free ((char *) put->key);
  g_clear_pointer (&put->value, g_bytes_unref);
  g_clear_error (&put->error);
}

/* With kv->lock held: E's value was rejected; the key holds again the
 * confirmed value E replaced, until its echo arrives. */
static void
local_revert (ConatDkv *kv, const char *key, LocalEntry *e)
{
  g_hash_table_remove (kv->dirty, key);
  g_clear_pointer (&e->value, g_bytes_unref);
  e->value = g_steal_pointer (&e->acked_value);
  e->has_acked = FALSE;
  e->gen = e->acked_gen;
  e->state = ENTRY_ACKED;
  e->cas_wait = FALSE;
  e->revision = e->acked_revision;
  e->time_ms = e->acked_time_ms;
}

/* With kv->lock held: a compare-and-set was refused.  Wait for the newer
 * change (its arrival runs the merge) unless it has arrived already. */
static void
cas_refused (ConatDkv *kv, ConatPut *put, LocalEntry *e)
{
  MirrorEntry *m = g_hash_table_lookup (kv->mirror, put->key);

  if (bytes_equal0 (m ? m->value : NULL, e->value))
    local_remove (kv, put->key);
  else
    {
      e->cas_wait = (m ? m->revision : 0) == put->expected_revision;
      mark_dirty (kv, put->key, e);
    }
}

/* With kv->lock held: a change by someone else came while PUT was in
 * flight, and the ack says PUT landed before it: the key shows that change
 * now (the mirror has it), announced by an event in EVENTS. */
static void
batch_superseded (ConatDkv *kv, ConatPut *put, LocalEntry *e, GPtrArray *events)
{
  MirrorEntry *m = g_hash_table_lookup (kv->mirror, put->key);
  Event *ev = g_new0 (Event, 1);

  ev->key = g_strdup (put->key);
  ev->value = m ? g_bytes_ref (m->value) : NULL;
  ev->prev = e->value ? g_bytes_ref (e->value) : NULL;
  g_ptr_array_add (events, ev);
  local_remove (kv, put->key);
}

/* With kv->lock held: records the outcome of one put. */
static void
batch_result (ConatDkv *kv, ConatPut *put, GPtrArray *events)
{
  LocalEntry *e = g_hash_table_lookup (kv->local, put->key);

  if (e == NULL || e->gen != put->gen)
    return;  /* echoed already, or changed again since */
  if (put->error == NULL && put->revision == 0)
    local_remove (kv, put->key);  /* a delete of nothing */
  else if (put->error == NULL && put->revision < e->remote_revision)
    batch_superseded (kv, put, e, events);
  else if (put->error == NULL)
    {
      e->state = ENTRY_ACKED;
      e->revision = put->revision;
      e->time_ms = put->time_ms;
    }
  else if (g_error_matches (put->error, CONAT_ERROR, CONAT_ERROR_WRONG_REVISION))
    cas_refused (kv, put, e);
  else
    {
      Rejection *r = g_new0 (Rejection, 1);
      g_autofree char *store = dkv_log_name (kv);
      g_autofree char *shown = g_strescape (put->key, NULL);
      g_message ("%s: the write of key \"%s\" was rejected: %s", store, shown,
                 put->error->message);
      r->gen = put->gen;
      r->error = g_steal_pointer (&put->error);
      g_hash_table_replace (kv->rejected, g_strdup (put->key), r);
      if (e->has_acked)
        local_revert (kv, put->key, e);
      else
        local_remove (kv, put->key);
    }
}

/* With kv->lock held: the batch failed as a whole; its entries go back to DIRTY. */
static void
batch_failed (ConatDkv *kv, ConatPut *puts, guint n, GError *error)
{
  for (guint i = 0; i < n; i++)
    {
      LocalEntry *e = g_hash_table_lookup (kv->local, puts[i].key);
      if (e != NULL && e->gen == puts[i].gen && e->state == ENTRY_INFLIGHT)
        mark_dirty (kv, puts[i].key, e);
    }
  g_clear_error (&kv->last_error);
  kv->last_error = g_error_copy (error);
  kv->failures++;
  kv->retry_ms = CLAMP (kv->retry_ms ? kv->retry_ms * 13 / 10 : RETRY_MIN_MS, RETRY_MIN_MS,
                        RETRY_MAX_MS);
  kv->retry_at_us = g_get_monotonic_time () + kv->retry_ms * 1000;
}

/* One attempt: sends up to BATCH_MAX dirty entries.  Returns the number sent;
 * FALSE in *FAILED if the backend could not tell the outcome. */
static guint
save_batch (ConatDkv *kv, gboolean *failed)
{
  ConatPut *puts = g_new0 (ConatPut, BATCH_MAX);
  g_autoptr (GPtrArray) events = g_ptr_array_new ();
  ConatBackendStore *store;
  g_autoptr (GError) error = NULL;
  guint n;
  gboolean ok;

  g_mutex_lock (&kv->lock);
  store = kv->closed ? NULL : kv->store;
  n = store ? batch_take (kv, puts) : 0;
  kv->saving += n > 0;
  g_mutex_unlock (&kv->lock);

  *failed = FALSE;
  if (n > 0)
    {
      ok = kv->client->backend->klass->put_many (store, puts, n, &error);
      g_mutex_lock (&kv->lock);
      if (ok)
        {
          for (guint i = 0; i < n; i++)
            batch_result (kv, &puts[i], events);
          kv->retry_ms = 0;
          kv->retry_at_us = 0;
          g_clear_error (&kv->last_error);
        }
      else
        batch_failed (kv, puts, n, error);
      *failed = !ok;
      kv->saving--;
      g_cond_broadcast (&kv->cond);
      g_mutex_unlock (&kv->lock);
    }
  for (guint i = 0; i < events->len; i++)
    {
      Event *ev = events->pdata[i];

      fire_event (kv, ev);
      g_free (ev->key);
      g_clear_pointer (&ev->value, g_bytes_unref);
      g_clear_pointer (&ev->prev, g_bytes_unref);
      g_free (ev);
    }
  for (guint i = 0; i < n; i++)
    put_clear (&puts[i]);
  g_free (puts);
  return n;
}

/* Saves KV until nothing is dirty or an attempt fails; the saver thread. */
static void
saver_work (ConatDkv *kv)
{
  gboolean failed = FALSE;

  while (save_batch (kv, &failed) > 0 && !failed)
    ;
}

/* With client->lock held: the first queued store whose backoff is over, or
 * NULL; *WAIT_UNTIL is the earliest backoff end. */
static ConatDkv *
saver_pick (ConatClient *client, gint64 *wait_until)
{
  gint64 now = g_get_monotonic_time ();

  *wait_until = G_MAXINT64;
  for (GList *l = client->saver_queue.head; l != NULL; l = l->next)
    {
      ConatDkv *kv = l->data;
      gint64 at = kv->retry_at_us;  /* racy read, only a hint */
      if (at <= now)
        {
          g_queue_delete_link (&client->saver_queue, l);
          return kv;
        }
      *wait_until = MIN (*wait_until, at);
    }
  return NULL;
}

void
conat_dkv_saver_run (ConatClient *client)
{
  g_mutex_lock (&client->lock);
  while (!client->saver_stop)
    {
      gint64 wait_until;
      ConatDkv *kv = saver_pick (client, &wait_until);
      if (kv == NULL)
        {
          if (wait_until == G_MAXINT64)
            g_cond_wait (&client->saver_cond, &client->lock);
          else
            g_cond_wait_until (&client->saver_cond, &client->lock, wait_until);
          continue;
        }
      g_mutex_unlock (&client->lock);

      g_mutex_lock (&kv->lock);
      kv->queued = FALSE;
      g_mutex_unlock (&kv->lock);
      saver_work (kv);
      g_mutex_lock (&kv->lock);
      gboolean again = has_dirty (kv) && !kv->closed;
      g_mutex_unlock (&kv->lock);
      if (again)
        saver_enqueue (kv);
      conat_dkv_unref (kv);

      g_mutex_lock (&client->lock);
    }
  while (!g_queue_is_empty (&client->saver_queue))
    conat_dkv_unref (g_queue_pop_head (&client->saver_queue));
  g_mutex_unlock (&client->lock);
}

/* With kv->lock held: is the change of KEY that had generation GEN (or any
 * later one) confirmed?  Sets ERROR if it was rejected. */
static gboolean
key_done (ConatDkv *kv, const char *key, guint64 gen, GError **error)
{
  LocalEntry *e = g_hash_table_lookup (kv->local, key);
  Rejection *r = g_hash_table_lookup (kv->rejected, key);

  if (r != NULL && r->gen >= gen)
    {
      g_propagate_error (error, g_error_copy (r->error));
      return TRUE;
    }
  return e == NULL || e->state == ENTRY_ACKED;
}

/* With kv->lock held: key -> gen of every unsaved entry (or only KEY). */
static GHashTable *
unsaved_gens (ConatDkv *kv, const char *only)
{
  GHashTable *gens = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GHashTableIter it;
  gpointer key;
  LocalEntry *e;

  g_hash_table_iter_init (&it, kv->local);
  while (g_hash_table_iter_next (&it, &key, (gpointer *) &e))
    if (e->state != ENTRY_ACKED && (only == NULL || strcmp (only, key) == 0))
      g_hash_table_insert (gens, g_strdup (key), GSIZE_TO_POINTER (e->gen));
  return gens;
}

/* With kv->lock held: TRUE when every entry of GENS is done; removes the done ones. */
static gboolean
all_done (ConatDkv *kv, GHashTable *gens, GError **error)
{
  GHashTableIter it;
  gpointer key, gen;

  g_hash_table_iter_init (&it, gens);
  while (g_hash_table_iter_next (&it, &key, &gen))
    {
      if (!key_done (kv, key, GPOINTER_TO_SIZE (gen), error))
        continue;
      g_hash_table_iter_remove (&it);
      if (error && *error)
        return TRUE;
    }
  return g_hash_table_size (gens) == 0;
}

static gboolean
timeout_error (ConatDkv *kv, GError **error)
{
  if (kv->last_error)
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_TIMEOUT,
                 "changes to '%s' not confirmed in time: %s", kv->name, kv->last_error->message);
  else
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_TIMEOUT,
                 "changes to '%s' not confirmed in time", kv->name);
  return FALSE;
}

/* With kv->lock held: did an attempt since FAILURES fail for want of
 * space (a full disk)?  Those changes stay queued, but whoever waits hears
 * of it now rather than at the deadline. */
static gboolean
failed_for_space (ConatDkv *kv, guint failures, GError **error)
{
  if (kv->failures == failures
      || !g_error_matches (kv->last_error, CONAT_ERROR, CONAT_ERROR_NO_SPACE))
    return FALSE;
  g_set_error (error, CONAT_ERROR, CONAT_ERROR_NO_SPACE,
               "changes to '%s' not saved yet (they stay queued): %s", kv->name,
               kv->last_error->message);
  return TRUE;
}

/* With kv->lock held, autosave: waits for GENS. */
static gboolean
wait_saved (ConatDkv *kv, GHashTable *gens, gint64 deadline, GError **error)
{
  GError *rejected = NULL;
  guint failures = kv->failures;

  while (!all_done (kv, gens, &rejected))
    {
      if (kv->closed)
        return check_open (kv, error);
      if (failed_for_space (kv, failures, error))
        return FALSE;
      if (deadline < 0)
        g_cond_wait (&kv->cond, &kv->lock);
      else if (!g_cond_wait_until (&kv->cond, &kv->lock, deadline)
               && !all_done (kv, gens, &rejected))
        return timeout_error (kv, error);
    }
  if (rejected)
    {
      g_propagate_error (error, rejected);
      return FALSE;
    }
  return TRUE;
}

/* no_autosave: one attempt in the calling thread. */
static gboolean
save_once (ConatDkv *kv, GHashTable *gens, GError **error)
{
  gboolean failed = FALSE;
  GError *rejected = NULL;
  gboolean ok;
  guint failures;

  g_mutex_lock (&kv->lock);
  failures = kv->failures;
  g_mutex_unlock (&kv->lock);
  while (save_batch (kv, &failed) > 0 && !failed)
    ;
  g_mutex_lock (&kv->lock);
  if (failed)
    ok = !failed_for_space (kv, failures, error) && timeout_error (kv, error);
  else
    {
      all_done (kv, gens, &rejected);
      ok = rejected == NULL;
      if (rejected)
        g_propagate_prefixed_error (error, rejected, "there were errors saving '%s': ", kv->name);
    }
  g_mutex_unlock (&kv->lock);
  return ok;
}

static gboolean
save_common (ConatDkv *kv, const char *only, gint64 timeout_ms, GError **error)
{
  g_autoptr (GHashTable) gens = NULL;
  gint64 deadline = timeout_ms < 0 ? -1 : g_get_monotonic_time () + timeout_ms * 1000;
  gboolean ok;

  g_mutex_lock (&kv->lock);
  if (!check_open (kv, error))
    {
      g_mutex_unlock (&kv->lock);
      return FALSE;
    }
  gens = unsaved_gens (kv, only);
  if (only && g_hash_table_size (gens) == 0)
    {
      /* Nothing unsaved: the key's last change was confirmed, or rejected
       * already (a rejection lasts until the key is set again). */
      Rejection *r = g_hash_table_lookup (kv->rejected, only);
      g_hash_table_insert (gens, g_strdup (only),
                           GSIZE_TO_POINTER (r ? r->gen : kv->next_gen + 1));
    }
  if (!kv->autosave)
    {
      g_mutex_unlock (&kv->lock);
      return save_once (kv, gens, error);
    }
  kv->retry_at_us = 0;  /* someone waits: retry now */
  g_mutex_unlock (&kv->lock);
  saver_enqueue (kv);

  g_mutex_lock (&kv->lock);
  ok = wait_saved (kv, gens, deadline, error);
  g_mutex_unlock (&kv->lock);
  return ok;
}

gboolean
conat_dkv_save (ConatDkv *kv, gint64 timeout_ms, GError **error)
{
  return save_common (kv, NULL, timeout_ms, error);
}

gboolean
conat_dkv_save_key (ConatDkv *kv, const char *key, gint64 timeout_ms, GError **error)
{
  return save_common (kv, key, timeout_ms, error);
}

guint64
conat_dkv_pending_count (ConatDkv *kv)
{
  GHashTableIter it;
  LocalEntry *e;
  guint64 n = 0;

  g_mutex_lock (&kv->lock);
  g_hash_table_iter_init (&it, kv->local);
  while (g_hash_table_iter_next (&it, NULL, (gpointer *) &e))
    n += e->state != ENTRY_ACKED;
  g_mutex_unlock (&kv->lock);
  return n;
}

gboolean
conat_dkv_has_unsaved_changes (ConatDkv *kv)
{
  return conat_dkv_pending_count (kv) > 0;
}

GPtrArray *
conat_dkv_unsaved_changes (ConatDkv *kv)
{
  GPtrArray *keys = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter it;
  gpointer key;
  LocalEntry *e;

  g_mutex_lock (&kv->lock);
  g_hash_table_iter_init (&it, kv->local);
  while (g_hash_table_iter_next (&it, &key, (gpointer *) &e))
    if (e->state != ENTRY_ACKED)
      g_ptr_array_add (keys, g_strdup (key));
  g_mutex_unlock (&kv->lock);
  return keys;
}

void
conat_dkv_set_merge (ConatDkv *kv, ConatMergeFunc merge, gpointer merge_data)
{
  g_mutex_lock (&kv->lock);
  kv->merge = merge;
  kv->merge_data = merge_data;
  g_mutex_unlock (&kv->lock);
}

/* ---------------------------------------------------------------- events */

guint
conat_dkv_watch (ConatDkv *kv, ConatChangeFunc func, gpointer user_data, GDestroyNotify destroy)
{
  Watcher *w = g_new0 (Watcher, 1);

  w->func = func;
  w->data = user_data;
  w->destroy = destroy;
  w->refs = 1;
  g_mutex_lock (&kv->lock);
  w->id = kv->next_watch_id++;
  kv->watchers = g_list_append (kv->watchers, w);
  g_mutex_unlock (&kv->lock);
  return w->id;
}

void
conat_dkv_unwatch (ConatDkv *kv, guint watch_id)
{
  Watcher *found = NULL;

  g_mutex_lock (&kv->lock);
  for (GList *l = kv->watchers; l != NULL; l = l->next)
    {
      Watcher *w = l->data;
      if (w->id != watch_id)
        continue;
      kv->watchers = g_list_delete_link (kv->watchers, l);
      found = w;
      break;
    }
  g_mutex_unlock (&kv->lock);
  if (found)
    watcher_unref (found);
}
