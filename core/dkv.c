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
 * arrive, which runs the merge and makes the entry DIRTY again; if that
 * change is our own earlier write (a second put sent before the first one's
 * echo), its echo makes the entry DIRTY again, to go out on its revision.
 *
 * One saver thread per client sends DIRTY entries in batches; a batch whose
 * outcome is unknown is retried with backoff (puts carry writer id and gen,
 * so a retry is recognised).  Change events fire, with no lock held, for
 * every confirmed change, our own echoes included; never for local writes
 * or the initial load.
 *
 * Loading (and its progress) is in dkv-load.c, the saver in dkv-save.c;
 * dkv-private.h holds what they share.
 */
#define G_LOG_DOMAIN "conat"

#include "dkv-private.h"

#include <string.h>

typedef struct {
  guint id;
  ConatChangeFunc func;
  gpointer data;
  GDestroyNotify destroy;
  gint refs;  /* atomic; dropped with no lock held */
} Watcher;

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

gboolean
dkv_bytes_equal0 (GBytes *a, GBytes *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return g_bytes_equal (a, b);
}

gboolean
dkv_check_open (ConatDkv *kv, GError **error)
{
  if (!kv->closed)
    return TRUE;
  g_set_error (error, CONAT_ERROR, CONAT_ERROR_CLOSED, "store '%s' is closed", kv->name);
  return FALSE;
}

/* ------------------------------------------------------- change delivery */

void
dkv_fire_event (ConatDkv *kv, Event *ev)
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

void
dkv_mark_dirty (ConatDkv *kv, const char *key, LocalEntry *e)
{
  e->state = ENTRY_DIRTY;
  if (!e->cas_wait)
    g_hash_table_add (kv->dirty, g_strdup (key));
}

void
dkv_local_remove (ConatDkv *kv, const char *key)
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
  dkv_mark_dirty (kv, key, e);
}

/* A change by someone else while KEY holds local entry E (not ACKED).
 * Returns the value the event reports (borrowed). */
static GBytes *
resolve_conflict (ConatDkv *kv, const ConatChange *change, GBytes *prev)
{
  LocalEntry *e = g_hash_table_lookup (kv->local, change->key);
  GBytes *resolved = NULL;

  if (dkv_bytes_equal0 (e->value, change->value))
    {
      if (e->state == ENTRY_DIRTY)
        dkv_local_remove (kv, change->key);
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
  else if (dkv_bytes_equal0 (resolved, change->value))
    {
      g_bytes_unref (resolved);
      dkv_local_remove (kv, change->key);
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
    dkv_local_remove (kv, change->key);
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
    dkv_local_remove (kv, change->key);  /* a newer write than our ACKED one */

  e = g_hash_table_lookup (kv->local, change->key);
  if (e != NULL && e->cas_wait) /* our own earlier write: send on its revision */
    {
      e->cas_wait = FALSE;
      dkv_mark_dirty (kv, change->key, e);
    }

  ev->value = value ? g_bytes_ref (value) : NULL;
  g_cond_broadcast (&kv->cond);
}

gboolean
dkv_has_dirty (ConatDkv *kv)
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
  if (change->key == NULL) /* the backend starts over: revisions begin again */
    kv->loaded_revision = 0;
  if (change->key == NULL || kv->closed
      || (change->revision != 0 && change->revision <= kv->loaded_revision))
    {
      g_mutex_unlock (&kv->lock);
      return;
    }
  if (change->revision == 0)
    kv->loaded_revision = 0;  /* the backend lost the store: start over */
  apply_change (kv, change, &ev);
  dirty = dkv_has_dirty (kv);
  g_mutex_unlock (&kv->lock);

  if (dirty)
    dkv_saver_enqueue (kv);
  dkv_fire_event (kv, &ev);
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
  dkv_load_begin (kv);
  kv->store = backend->klass->store_open (backend, opts->scope, opts->name, opts->ephemeral,
                                          on_load, on_change, dkv_on_progress, kv,
                                          &kv->loaded_revision, error);
  dkv_load_end (kv, kv->store != NULL);
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

void
conat_dkv_set_merge (ConatDkv *kv, ConatMergeFunc merge, gpointer merge_data)
{
  g_mutex_lock (&kv->lock);
  kv->merge = merge;
  kv->merge_data = merge_data;
  g_mutex_unlock (&kv->lock);
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
      dkv_local_remove (kv, key);  /* never sent: forget it */
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
  if (!dkv_check_open (kv, error))
    {
      g_mutex_unlock (&kv->lock);
      return FALSE;
    }
  local_set (kv, key, value);
  g_mutex_unlock (&kv->lock);
  dkv_saver_enqueue (kv);
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
  if (!dkv_check_open (kv, error))
    {
      g_mutex_unlock (&kv->lock);
      return FALSE;
    }
  for (guint i = 0; i < keys->len; i++)
    local_set (kv, keys->pdata[i], NULL);
  g_mutex_unlock (&kv->lock);
  dkv_saver_enqueue (kv);
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
  if (dkv_check_open (kv, error) && (value = lookup_value (kv, key)) != NULL)
    g_bytes_ref (value);
  g_mutex_unlock (&kv->lock);
  return value;
}

gboolean
conat_dkv_has (ConatDkv *kv, const char *key, GError **error)
{
  gboolean has = FALSE;

  g_mutex_lock (&kv->lock);
  if (dkv_check_open (kv, error))
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
  if (dkv_check_open (kv, error))
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
  if (!dkv_check_open (kv, error))
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