/* dkv-save.c — the saver: how a store's DIRTY local entries reach the backend.
 *
 * One saver thread per client (conat_dkv_saver_run) takes the queued stores,
 * sends up to BATCH_MAX entries per put_many, records each put's outcome
 * (ACKED, refused by compare-and-set, rejected) and backs off after a batch
 * whose outcome is unknown.  conat_dkv_save and conat_dkv_save_key wait for
 * the entries they saw, or save once in the caller's thread without autosave.
 * The ordering, saving and conflicts essay is at the top of dkv.c. */
#define G_LOG_DOMAIN "conat"

#include "dkv-private.h"

#include <string.h>

#define BATCH_MAX 500
#define RETRY_MIN_MS 150
#define RETRY_MAX_MS 10000

/* Puts KV on its client's saver queue (not with kv->lock held). */
void
dkv_saver_enqueue (ConatDkv *kv)
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
 * change (its arrival runs the merge, or, if it is our own earlier write,
 * sends again) unless it has arrived already.  While the mirror still has
 * the revision the put expected, it says nothing of what the backend
 * holds: a delete refused there is not "already deleted". */
static void
cas_refused (ConatDkv *kv, ConatPut *put, LocalEntry *e)
{
  MirrorEntry *m = g_hash_table_lookup (kv->mirror, put->key);
  gboolean stale = (m ? m->revision : 0) == put->expected_revision;

  if (!stale && dkv_bytes_equal0 (m ? m->value : NULL, e->value))
    dkv_local_remove (kv, put->key);
  else
    {
      e->cas_wait = stale;
      dkv_mark_dirty (kv, put->key, e);
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
  dkv_local_remove (kv, put->key);
}

/* With kv->lock held: records the outcome of one put. */
static void
batch_result (ConatDkv *kv, ConatPut *put, GPtrArray *events)
{
  LocalEntry *e = g_hash_table_lookup (kv->local, put->key);

  if (e == NULL || e->gen != put->gen)
    return;  /* echoed already, or changed again since */
  if (put->error == NULL && put->revision == 0)
    dkv_local_remove (kv, put->key);  /* a delete of nothing */
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
        dkv_local_remove (kv, put->key);
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
        dkv_mark_dirty (kv, puts[i].key, e);
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

      dkv_fire_event (kv, ev);
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
      gboolean again = dkv_has_dirty (kv) && !kv->closed;
      g_mutex_unlock (&kv->lock);
      if (again)
        dkv_saver_enqueue (kv);
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
        return dkv_check_open (kv, error);
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
  if (!dkv_check_open (kv, error))
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
  dkv_saver_enqueue (kv);

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
