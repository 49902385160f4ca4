/* nats-store.c — store handles of the NATS backend: opening and loading a
 * store, and the watch that keeps a handle current (its checks and
 * recovery run in nats-maint.c).
 *
 * Watch.  A handle owns one ephemeral push consumer on "$KV.<bucket>.>"
 * (no acks, idle heartbeats) delivering to a plain subscription on an inbox
 * of its own.  store_open reads the bucket's last sequence L, then starts
 * the consumer with "last message per subject": that replay comes in
 * sequence order and always includes L, so once a message with sequence >= L
 * arrived the handle holds every key.  Every subscription carries a
 * generation; messages of a replaced subscription are dropped, so changes
 * stay in revision order over re-subscriptions.  The handle keeps the watch
 * whole itself, with none of libnats' JetStream subscription machinery: its
 * ordered consumers re-create themselves under a new subscription id from
 * libnats' threads, and its heartbeat timer frees subscriptions, both racing
 * natsSubscription_Destroy (a freed subscription left in the connection's
 * table hung or crashed the reader thread when stores were removed under
 * load).  A message whose consumer sequence is not the next one, or a
 * heartbeat whose last consumer sequence is not the last one seen, means
 * the watch skipped something; so does a watch silent for WATCH_SILENT_US
 * (its consumer died with a cluster node, say).  Then its later messages
 * are dropped and the maintenance thread resumes it after the last revision
 * delivered, as it does after every reconnect (messages sent meanwhile are
 * lost to a consumer without acks) and when a check finds the consumer
 * gone: checks also run on the server's advisories that a consumer of the
 * bucket was deleted or that the stream has a new leader, and every 30 s.
 */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

#define WATCH_HEARTBEAT_NS (5 * G_GINT64_CONSTANT (1000000000))

typedef struct {
  ConatBackendStore *store;  /* a reference */
  guint gen;
  guint64 dseq;              /* consumer sequence of the last message (d.mu) */
} Watch;

static void
change_free (gpointer data)
{
  NatsChange *c = data;

  g_free (c->key);
  if (c->value)
    g_bytes_unref (c->value);
  g_free (c);
}

static void
parse_writer (const char *text, guint64 *writer_id, guint64 *gen)
{
  char *end = NULL;
  guint64 w = g_ascii_strtoull (text, &end, 16);
  const char *g;
  guint64 n;

  if (end == text || *end != '.')
    return;
  g = end + 1;
  n = g_ascii_strtoull (g, &end, 16);
  if (end == g || *end != '\0')
    return;
  *writer_id = w;
  *gen = n;
}

/* NULL for messages that are no key of ours (then only *SEQ and *DSEQ,
 * the consumer's sequence, are set). */
static NatsChange *
change_from_msg (ConatBackendStore *st, natsMsg *msg, guint64 *seq, guint64 *dseq)
{
  const char *subject = natsMsg_GetSubject (msg);
  gsize prefix_len = strlen (st->prefix);
  jsMsgMetaData *meta = NULL;
  const char *writer = NULL;
  gint64 stored_ns;
  NatsChange *c;
  char *key;

  if (natsMsg_GetMetaData (&meta, msg) != NATS_OK)
    return NULL;
  *seq = meta->Sequence.Stream;
  *dseq = meta->Sequence.Consumer;
  stored_ns = meta->Timestamp;
  jsMsgMetaData_Destroy (meta);
  if (!g_str_has_prefix (subject, st->prefix))
    return NULL;
  key = conat_nats_key_decode (subject + prefix_len, strlen (subject) - prefix_len);
  if (key == NULL)
    {
      g_debug ("ignoring key %s of bucket %s: not in conat's encoding", subject + prefix_len,
               st->bucket);
      return NULL;
    }
  c = g_new0 (NatsChange, 1);
  c->key = key;
  c->revision = *seq;
  c->time_ms = stored_ns / 1000000;
  c->stored_ns = stored_ns;
  if (!nats_msg_is_delete (msg))
    c->value = g_bytes_new (natsMsg_GetData (msg), natsMsg_GetDataLength (msg));
  if (natsMsgHeader_Get (msg, NATS_WRITER_HEADER, &writer) == NATS_OK && writer != NULL)
    parse_writer (writer, &c->writer_id, &c->gen);
  return c;
}

static void
store_deliver (Dispatch *d, gpointer item)
{
  ConatBackendStore *st = (ConatBackendStore *) d;
  NatsChange *c = item;
  ConatChange change = { c->key, c->value, c->revision, c->time_ms, c->writer_id, c->gen };

  st->on_change (&change, st->user_data);
}

static void
store_finalize (Dispatch *d)
{
  ConatBackendStore *st = (ConatBackendStore *) d;

  g_clear_pointer (&st->load, g_hash_table_unref);
  g_clear_pointer (&st->keys, g_hash_table_unref);
  g_clear_pointer (&st->ages, g_hash_table_unref);
  g_clear_pointer (&st->ages_seen, g_hash_table_unref);
  g_free (st->consumer);
  g_mutex_clear (&st->sub_mu);
  g_free (st->bucket);
  g_free (st->stream);
  g_free (st->prefix);
  g_free (st->filter);
  g_free (st);
}

static const DispatchClass store_class = { store_deliver, change_free, store_finalize };

/* ----------------------------------------------------------------- watch */

static void
store_track_key_locked (ConatBackendStore *st, NatsChange *c)
{
  if (st->ages != NULL && c->value)
    g_hash_table_insert (st->ages, g_strdup (c->key), g_memdup2 (&c->stored_ns, sizeof c->stored_ns));
  else if (st->ages != NULL)
    g_hash_table_remove (st->ages, c->key);
  if (st->ages_seen != NULL)
    g_hash_table_add (st->ages_seen, g_strdup (c->key));
  if (st->keys == NULL)
    return;
  if (c->value)
    g_hash_table_insert (st->keys, g_strdup (c->key), g_memdup2 (&c->stored_ns, sizeof c->stored_ns));
  else
    g_hash_table_remove (st->keys, c->key);
}

/* An idle heartbeat of the consumer (status 100, no data); *LAST_DSEQ is
 * the consumer sequence it says was sent last (left alone if it does not
 * say). */
static gboolean
watch_heartbeat (natsMsg *msg, guint64 *last_dseq)
{
  const char *status = NULL, *last = NULL;

  if (natsMsg_GetDataLength (msg) != 0
      || natsMsgHeader_Get (msg, "Status", &status) != NATS_OK || status == NULL
      || strcmp (status, "100") != 0)
    return FALSE;
  if (natsMsgHeader_Get (msg, "Nats-Last-Consumer", &last) == NATS_OK && last != NULL)
    *last_dseq = g_ascii_strtoull (last, NULL, 10);
  return TRUE;
}

/* On a libnats delivery thread: bookkeeping, and the callback itself if
 * the client's callbacks are quick and nothing else of the handle is
 * queued, running or arriving (dispatch_push_or_claim_locked). */
static void
store_on_msg (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  Watch *w = closure;
  ConatBackendStore *st = w->store;
  guint64 seq = 0, dseq = 0, sent_before = G_MAXUINT64;
  gboolean heartbeat = watch_heartbeat (msg, &sent_before);
  NatsChange *c = heartbeat ? NULL : change_from_msg (st, msg, &seq, &dseq);
  NatsChange *claimed = NULL;
  gboolean broke = FALSE;

  natsMsg_Destroy (msg);
  if (seq > 0)
    sent_before = dseq - 1;
  g_mutex_lock (&st->d.mu);
  if (w->gen == st->gen)
    st->heard_us = g_get_monotonic_time ();
  if (w->gen == st->gen && !st->d.closing && sent_before != G_MAXUINT64
      && sent_before != w->dseq)
    {
      g_debug ("the watch of %s missed messages %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
               "; resuming it", st->bucket, w->dseq + 1, sent_before);
      st->gen++;  /* drops the rest of this watch */
      st->broken = broke = TRUE;
    }
  else if (seq > 0)
    w->dseq = dseq;
  if (seq > 0 && w->gen == st->gen && !st->d.closing)
    {
      st->last_seq = MAX (st->last_seq, seq);
      if (c)
        st->last_stored_ns = c->stored_ns;
      if (c)
        store_track_key_locked (st, c);
      if (st->loading)
        {
          st->load_count++;
          if (c)
            {
              NatsChange *entry = g_steal_pointer (&c);

              g_hash_table_replace (st->load, entry->key, entry);
            }
          if (seq >= st->load_target)
            {
              st->loading = FALSE;
              st->loaded_rev = st->last_seq;
              g_cond_broadcast (&st->d.cond);
            }
        }
      else if (c && dispatch_push_or_claim_locked (&st->d, c, sub))
        claimed = g_steal_pointer (&c);
      else
        c = NULL;  /* queued */
    }
  g_mutex_unlock (&st->d.mu);
  if (claimed)
    dispatch_run_claimed (&st->d, claimed);
  if (c)
    change_free (c);
  if (broke)  /* a check that never re-creates the bucket */
    nats_stores_bucket_changed_remotely (st->d.be, st->bucket);
}

static void
watch_done (void *closure)
{
  Watch *w = closure;

  dispatch_unref (&w->store->d);
  g_free (w);
}

/* With d.mu held: detaches the subscription; its messages are dropped from
 * now on.  The caller destroys it without d.mu. */
natsSubscription *
nats_store_take_sub_locked (ConatBackendStore *st)
{
  natsSubscription *sub = st->sub;

  st->gen++;
  st->sub = NULL;
  return sub;
}

/* With sub_mu held: starts a new watch: a subscription on a new inbox,
 * then the consumer that delivers to it (interest first: nothing is lost). */
gboolean
nats_store_subscribe (ConatBackendStore *st, jsDeliverPolicy policy, guint64 start, GError **error)
{
  NatsBackend *be = st->d.be;
  Watch *w = g_new0 (Watch, 1);
  natsSubscription *sub = NULL;
  jsConsumerInfo *ci = NULL;
  natsInbox *inbox = NULL;
  jsConsumerConfig cfg;
  jsErrCode jerr = 0;
  natsStatus s;

  w->store = (ConatBackendStore *) dispatch_ref (&st->d);
  g_mutex_lock (&st->d.mu);
  w->gen = ++st->gen;
  st->heard_us = g_get_monotonic_time ();
  g_mutex_unlock (&st->d.mu);

  s = natsInbox_Create (&inbox);
  if (s == NATS_OK)
    s = natsConnection_Subscribe (&sub, be->nc, inbox, store_on_msg, w);
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, 0, "watching NATS bucket");
      natsInbox_Destroy (inbox);
      watch_done (w);
      return FALSE;
    }
  if (natsSubscription_SetOnCompleteCB (sub, watch_done, w) != NATS_OK)
    g_debug ("watch of %s closed before it started", st->bucket);
  /* No limit: libnats would drop what a big replay queues up (a gap). */
  natsSubscription_SetPendingLimits (sub, -1, -1);

  jsConsumerConfig_Init (&cfg);
  cfg.DeliverSubject = inbox;
  cfg.DeliverPolicy = policy;
  cfg.OptStartSeq = start;
  cfg.AckPolicy = js_AckNone;
  cfg.FilterSubject = st->filter;
  cfg.Heartbeat = WATCH_HEARTBEAT_NS;
  s = js_AddConsumer (&ci, be->js, st->stream, &cfg, NULL, &jerr);
  natsInbox_Destroy (inbox);
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, jerr, "watching NATS bucket");
      natsSubscription_Destroy (sub);
      return FALSE;
    }

  g_mutex_lock (&st->d.mu);
  if (st->gen == w->gen && !st->d.closing)
    {
      st->sub = sub;
      g_free (st->consumer);
      st->consumer = g_strdup (ci->Name);
      st->stale = FALSE;
      st->broken = FALSE;
      sub = NULL;
    }
  g_mutex_unlock (&st->d.mu);
  jsConsumerInfo_Destroy (ci);
  if (sub)
    natsSubscription_Destroy (sub);
  return TRUE;
}

/* Ends the watch; no callback runs afterwards. */
static void
store_shutdown (ConatBackendStore *st)
{
  natsSubscription *sub;

  dispatch_close (&st->d);
  g_mutex_lock (&st->sub_mu);
  g_mutex_lock (&st->d.mu);
  sub = nats_store_take_sub_locked (st);
  g_mutex_unlock (&st->d.mu);
  if (sub)
    natsSubscription_Destroy (sub);  /* the server drops the consumer when idle */
  g_mutex_unlock (&st->sub_mu);
}

/* --------------------------------------------------------- open, close */

/* With d.mu held (or before the handle is shared): the bucket's options.
 * The times of the keys' values are kept only while the bucket has a
 * max_age (memory per key); a max_age set later fills them from a scan. */
void
nats_store_note_config_locked (ConatBackendStore *st, jsStreamInfo *si)
{
  ConatStoreInfo info = { 0 };

  nats_config_read (si->Config, &info);
  st->max_value = info.limits.max_value_size;
  st->max_age_ms = info.limits.max_age_ms;
  if (st->max_age_ms > 0 && st->ages == NULL)
    {
      st->ages = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      st->ages_fill = TRUE;
    }
  else if (st->max_age_ms <= 0 && st->ages != NULL)
    {
      g_clear_pointer (&st->ages, g_hash_table_unref);
      st->ages_fill = FALSE;
    }
}

static ConatBackendStore *
store_new (NatsBackend *be, const char *bucket, ConatChangeCallback on_change,
           gpointer user_data, jsStreamInfo *si)
{
  ConatBackendStore *st = g_new0 (ConatBackendStore, 1);

  dispatch_init (&st->d, &store_class, be);
  g_mutex_init (&st->sub_mu);
  st->bucket = g_strdup (bucket);
  st->stream = g_strconcat ("KV_", bucket, NULL);
  st->prefix = g_strconcat ("$KV.", bucket, ".", NULL);
  st->filter = g_strconcat ("$KV.", bucket, ".>", NULL);
  st->on_change = on_change;
  st->user_data = user_data;
  st->ephemeral = si->Config->Storage == js_MemoryStorage;
  st->created = si->Created;
  nats_store_note_config_locked (st, si);
  st->ages_fill = FALSE;  /* the load fills the times */
  if (st->ephemeral)
    st->keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  st->last_seq = si->State.LastSeq;
  if (si->State.Msgs > 0)
    {
      st->loading = TRUE;
      st->load_total = si->State.Msgs;
      st->load_target = si->State.LastSeq;
      st->load = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, change_free);
    }
  else
    st->loaded_rev = si->State.LastSeq;
  return st;
}

/* Waits until the replay reached load_target, or the messages up to it are
 * gone (MaxAge, a purge): they will not come.  Gives up when the replay
 * stalls for NATS_LOAD_TIMEOUT_US; a long one that moves on is waited for. */
static gboolean
store_wait_loaded (ConatBackendStore *st, ConatLoadProgressCallback on_progress,
                   gpointer user_data, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + NATS_LOAD_TIMEOUT_US;
  guint64 target, seen = 0, total;
  gboolean loading;

  g_mutex_lock (&st->d.mu);
  while (st->loading && g_get_monotonic_time () < deadline)
    {
      if (st->load_count > seen)
        deadline = g_get_monotonic_time () + NATS_LOAD_TIMEOUT_US;
      seen = st->load_count;
      total = st->load_total;
      if (on_progress != NULL)
        {
          g_mutex_unlock (&st->d.mu);
          on_progress (seen, total, user_data);
          g_mutex_lock (&st->d.mu);
        }
      if (g_cond_wait_until (&st->d.cond, &st->d.mu,
                             MIN (deadline, g_get_monotonic_time () + NATS_LOAD_IDLE_US))
          || !st->loading || st->load_count > seen)
        continue;
      target = st->load_target;
      g_mutex_unlock (&st->d.mu);
      loading = !nats_bucket_passed (st->d.be, st->bucket, target);
      g_mutex_lock (&st->d.mu);
      if (!loading && st->loading)
        {
          st->loading = FALSE;
          st->loaded_rev = MAX (st->last_seq, target);
        }
    }
  loading = st->loading;
  g_mutex_unlock (&st->d.mu);
  if (loading)
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_TIMEOUT,
                 "loading NATS bucket %s stalled after %" G_GUINT64_FORMAT " keys", st->bucket,
                 seen);
  return !loading;
}

static gint
change_cmp (gconstpointer a, gconstpointer b)
{
  const NatsChange *x = *(NatsChange *const *) a;
  const NatsChange *y = *(NatsChange *const *) b;

  return x->revision < y->revision ? -1 : x->revision > y->revision;
}

/* The loaded keys, in revision order. */
static GPtrArray *
store_take_load (ConatBackendStore *st, guint64 *loaded_revision)
{
  GPtrArray *entries = g_ptr_array_new_with_free_func (change_free);
  GHashTable *load;
  GHashTableIter iter;
  gpointer value;

  g_mutex_lock (&st->d.mu);
  load = g_steal_pointer (&st->load);
  *loaded_revision = st->loaded_rev;
  g_mutex_unlock (&st->d.mu);
  if (load == NULL)
    return entries;
  g_hash_table_iter_init (&iter, load);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      g_hash_table_iter_steal (&iter);
      g_ptr_array_add (entries, value);
    }
  g_hash_table_unref (load);
  g_ptr_array_sort (entries, change_cmp);
  return entries;
}

ConatBackendStore *
nats_store_open (ConatBackend *backend, const char *scope, const char *name, gboolean ephemeral,
                 ConatChangeCallback on_load, ConatChangeCallback on_change,
                 ConatLoadProgressCallback on_progress, gpointer user_data,
                 guint64 *loaded_revision, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *bucket = conat_nats_bucket_name (scope, name, error);
  g_autoptr (GPtrArray) entries = NULL;
  jsStreamInfo *si = NULL;
  gboolean created = FALSE, ok;
  ConatBackendStore *st;
  guint64 n = 0;

  if (bucket == NULL || !nats_bucket_ensure (be, bucket, ephemeral, TRUE, &si, &created, error))
    return NULL;
  if (created)
    nats_scope_mark (be, scope, NULL);
  st = store_new (be, bucket, on_change, user_data, si);
  jsStreamInfo_Destroy (si);

  g_mutex_lock (&st->sub_mu);
  ok = nats_store_subscribe (st, js_DeliverLastPerSubject, 0, error);
  g_mutex_unlock (&st->sub_mu);
  if (!ok || !store_wait_loaded (st, on_progress, user_data, error))
    {
      store_shutdown (st);
      dispatch_unref (&st->d);
      return NULL;
    }
  entries = store_take_load (st, loaded_revision);
  for (guint i = 0; i < entries->len; i++)
    {
      NatsChange *c = entries->pdata[i];
      ConatChange change = { c->key, c->value, c->revision, c->time_ms, c->writer_id, c->gen };

      if (c->value)
        on_load (&change, user_data);
      n += c->value != NULL;
    }
  if (on_progress != NULL)
    on_progress (n, n, user_data);
  g_mutex_lock (&be->mu);
  be->stores = g_list_prepend (be->stores, st);
  be->maint_wanted = TRUE;  /* it may have a max_age */
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
  dispatch_start (&st->d);
  return st;
}

void
nats_store_close (ConatBackendStore *st)
{
  NatsBackend *be = st->d.be;

  g_mutex_lock (&be->mu);
  be->stores = g_list_remove (be->stores, st);
  g_mutex_unlock (&be->mu);
  store_shutdown (st);
  dispatch_unref (&st->d);
}
