/* nats-store.c — store handles of the NATS backend: the watch that keeps a
 * handle current, and recovery when a bucket vanishes.
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
 *
 * Vanishing buckets.  A memory bucket is gone after a server restart, and a
 * bucket can be removed or re-created (set_store_ephemeral) by any client.
 * The maintenance thread compares each open handle's bucket creation time
 * with the server's: after a reconnect, every 30 s, when a write found no
 * stream, and when a stream advisory says the bucket was created or deleted
 * (another client removed the store or flipped its ephemeral flag: the watch
 * alone would resume on the new bucket only after libnats' missed
 * heartbeats, keeping the old bucket's storage type, so a later server
 * restart would not empty an ephemeral store).  When the bucket is new
 * (re-created by us, for an ephemeral store after a reconnect or for any
 * store that is written to, or by someone else), the handle reports each of
 * the K keys it had as deleted, at revisions S+1 .. S+K (S = the highest
 * revision it knew), the bucket is moved on to sequence S+K+1 if it is still
 * empty (never backwards: a purge removes every message below its sequence,
 * and another client may have written to the new bucket already), and a new
 * watch starts after S+K.  So the revisions a handle reports only grow; a
 * client that writes to the new bucket before it was moved on keeps those
 * writes, but a handle that started after them misses them (a documented
 * gap).  After a disconnect the watches of ephemeral handles deliver nothing
 * until that check ran (nats_stores_disconnected): libnats resumes them on
 * whatever bucket has the name, maybe one re-created by another client.
 *
 * Old values.  The server drops the messages of a bucket with MaxAge
 * without a delete marker, so the watch never hears of it: the maintenance
 * thread reports each key whose value is past the age as deleted itself
 * (every AGE_SWEEP_US, by the local clock against the server's time of the
 * message), at revision last_seq + 1 without taking that revision: the next
 * message may carry the same one, and a newer write of ours (ACKED) stays.
 */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

#define MAINT_PERIOD_US (30 * G_USEC_PER_SEC)
#define MAINT_RETRY_US (1 * G_USEC_PER_SEC)
#define AGE_SWEEP_US (250 * 1000)
#define WATCH_HEARTBEAT_NS (5 * G_GINT64_CONSTANT (1000000000))
#define WATCH_SILENT_US (13 * G_USEC_PER_SEC)  /* heartbeats missed: 2.5 of them */

typedef struct {
  char *key;
  GBytes *value;  /* NULL: deleted */
  guint64 revision;
  gint64 time_ms;
  gint64 stored_ns;  /* server time the message was stored; 0 if synthetic */
  guint64 writer_id;
  guint64 gen;
} Change;

typedef struct {
  ConatBackendStore *store;  /* a reference */
  guint gen;
  guint64 dseq;              /* consumer sequence of the last message (d.mu) */
} Watch;

typedef enum {
  CHECK_NONE, CHECK_PERIODIC, CHECK_AGES, CHECK_REMOTE, CHECK_RECONNECT, CHECK_WRITE
} CheckKind;

static void
change_free (gpointer data)
{
  Change *c = data;

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
static Change *
change_from_msg (ConatBackendStore *st, natsMsg *msg, guint64 *seq, guint64 *dseq)
{
  const char *subject = natsMsg_GetSubject (msg);
  gsize prefix_len = strlen (st->prefix);
  jsMsgMetaData *meta = NULL;
  const char *writer = NULL;
  gint64 stored_ns;
  Change *c;
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
  c = g_new0 (Change, 1);
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
  Change *c = item;
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
store_track_key_locked (ConatBackendStore *st, Change *c)
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
 * the consumer sequence it says was sent last. */
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

/* On a libnats delivery thread: bookkeeping only. */
static void
store_on_msg (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  Watch *w = closure;
  ConatBackendStore *st = w->store;
  guint64 seq = 0, dseq = 0, last_dseq = 0;
  gboolean heartbeat = watch_heartbeat (msg, &last_dseq);
  Change *c = heartbeat ? NULL : change_from_msg (st, msg, &seq, &dseq);
  gboolean broke = FALSE;

  natsMsg_Destroy (msg);
  g_mutex_lock (&st->d.mu);
  if (w->gen == st->gen)
    st->heard_us = g_get_monotonic_time ();
  if (heartbeat && w->gen == st->gen && !st->d.closing && last_dseq != w->dseq)
    {
      g_debug ("the watch of %s missed messages %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
               "; resuming it", st->bucket, w->dseq + 1, last_dseq);
      st->gen++;  /* drops the rest of this watch */
      st->broken = broke = TRUE;
    }
  if (seq > 0 && w->gen == st->gen && !st->d.closing && dseq != w->dseq + 1)
    {
      g_debug ("the watch of %s skipped from message %" G_GUINT64_FORMAT " to %"
               G_GUINT64_FORMAT "; resuming it", st->bucket, w->dseq, dseq);
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
              Change *entry = g_steal_pointer (&c);

              g_hash_table_replace (st->load, entry->key, entry);
            }
          if (seq >= st->load_target)
            {
              st->loading = FALSE;
              st->loaded_rev = st->last_seq;
              g_cond_broadcast (&st->d.cond);
            }
        }
      else if (c)
        dispatch_push_locked (&st->d, g_steal_pointer (&c));
    }
  g_mutex_unlock (&st->d.mu);
  if (c)
    change_free (c);
  if (broke)
    nats_store_request_check (st);
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
static natsSubscription *
store_take_sub_locked (ConatBackendStore *st)
{
  natsSubscription *sub = st->sub;

  st->gen++;
  st->sub = NULL;
  return sub;
}

/* With sub_mu held: starts a new watch: a subscription on a new inbox,
 * then the consumer that delivers to it (interest first: nothing is lost). */
static gboolean
store_subscribe (ConatBackendStore *st, jsDeliverPolicy policy, guint64 start, GError **error)
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
  sub = store_take_sub_locked (st);
  g_mutex_unlock (&st->d.mu);
  if (sub)
    natsSubscription_Destroy (sub);  /* the server drops the consumer when idle */
  g_mutex_unlock (&st->sub_mu);
}

/* --------------------------------------------------------- open, close */

/* With d.mu held (or before the handle is shared): the bucket's options.
 * The times of the keys' values are kept only while the bucket has a
 * max_age (memory per key); a max_age set later fills them from a scan. */
static void
store_note_config_locked (ConatBackendStore *st, jsStreamInfo *si)
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
  store_note_config_locked (st, si);
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
  const Change *x = *(Change *const *) a;
  const Change *y = *(Change *const *) b;

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
  ok = store_subscribe (st, js_DeliverLastPerSubject, 0, error);
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
      Change *c = entries->pdata[i];
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


/* ----------------------------------------------------------- maintenance */

void
nats_store_request_check (ConatBackendStore *st)
{
  NatsBackend *be = st->d.be;

  g_mutex_lock (&be->mu);
  st->check_wanted = TRUE;
  be->maint_wanted = TRUE;
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
}

/* Asks the maintenance thread to check every handle of BUCKET: REMOTE when
 * another client made or removed it (check without re-creating it). */
static void
request_bucket_check (NatsBackend *be, const char *bucket, gboolean remote)
{
  g_mutex_lock (&be->mu);
  for (GList *l = be->stores; l; l = l->next)
    {
      ConatBackendStore *st = l->data;

      if (strcmp (st->bucket, bucket) != 0)
        continue;
      if (remote)
        st->remote_check_wanted = TRUE;
      else
        st->check_wanted = TRUE;
      be->maint_wanted = TRUE;
    }
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
}

void
nats_stores_bucket_changed (NatsBackend *be, const char *bucket)
{
  request_bucket_check (be, bucket, FALSE);
}

/* The server says BUCKET's stream was created or deleted. */
void
nats_stores_bucket_changed_remotely (NatsBackend *be, const char *bucket)
{
  request_bucket_check (be, bucket, TRUE);
}

/* The handles of BUCKET learn its new options at once (other clients' at
 * their next check). */
void
nats_stores_note_config (NatsBackend *be, const char *bucket, jsStreamInfo *si)
{
  g_mutex_lock (&be->mu);
  for (GList *l = be->stores; l; l = l->next)
    {
      ConatBackendStore *st = l->data;

      if (strcmp (st->bucket, bucket) != 0)
        continue;
      g_mutex_lock (&st->d.mu);
      store_note_config_locked (st, si);
      g_mutex_unlock (&st->d.mu);
    }
  be->maint_wanted = TRUE;  /* a max_age starts the sweeps */
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
}

/* The connection dropped.  A memory bucket is gone if the server restarted,
 * and libnats resumes a watch on whatever bucket has the name once it is
 * back: another client may have re-created it, and its messages would then
 * follow the old bucket's without the old keys being reported deleted.  So
 * the watches of ephemeral handles deliver nothing more; the check after the
 * reconnect resumes them (same bucket) or resets them (new bucket). */
void
nats_stores_disconnected (NatsBackend *be)
{
  g_mutex_lock (&be->mu);
  for (GList *l = be->stores; l; l = l->next)
    {
      ConatBackendStore *st = l->data;

      g_mutex_lock (&st->d.mu);
      if (st->ephemeral && !st->stale)
        {
          st->stale = TRUE;
          st->gen++;  /* drops the messages of the current watch */
        }
      g_mutex_unlock (&st->d.mu);
    }
  g_mutex_unlock (&be->mu);
}

/* With d.mu held: reports every key the handle had that was stored before
 * BEFORE_NS as deleted, each at its own revision from last_seq + 1 on (or
 * all at last_seq unless BUMP). */
static void
store_forget_keys_locked (ConatBackendStore *st, gint64 before_ns, gboolean bump)
{
  gint64 now_ms = g_get_real_time () / 1000;
  GHashTableIter iter;
  gpointer key, stored;

  if (st->keys == NULL)
    return;
  g_hash_table_iter_init (&iter, st->keys);
  while (g_hash_table_iter_next (&iter, &key, &stored))
    {
      Change *c;

      if (*(gint64 *) stored >= before_ns)
        continue;
      c = g_new0 (Change, 1);
      c->key = g_strdup (key);
      c->revision = bump ? ++st->last_seq : st->last_seq;
      c->time_ms = now_ms;
      if (st->ages != NULL)
        g_hash_table_remove (st->ages, key);
      dispatch_push_locked (&st->d, c);
      g_hash_table_iter_remove (&iter);
    }
}

/* With d.mu held: reports the keys stored before BEFORE_NS as deleted. */
static void
store_age_out_locked (ConatBackendStore *st, gint64 before_ns)
{
  gint64 now_ms = g_get_real_time () / 1000;
  GHashTableIter iter;
  gpointer key, stored;

  if (st->ages == NULL)
    return;
  g_hash_table_iter_init (&iter, st->ages);
  while (g_hash_table_iter_next (&iter, &key, &stored))
    {
      Change *c;

      if (*(gint64 *) stored >= before_ns)
        continue;
      c = g_new0 (Change, 1);
      c->key = g_strdup (key);
      c->revision = st->last_seq + 1;
      c->time_ms = now_ms;
      if (st->keys != NULL)
        g_hash_table_remove (st->keys, key);
      dispatch_push_locked (&st->d, c);
      g_hash_table_iter_remove (&iter);
    }
}

/* With be->mu held: a watch that heard nothing, not even a heartbeat, for
 * WATCH_SILENT_US lost its consumer: it is resumed. */
static void
stores_find_silent_locked (NatsBackend *be)
{
  gint64 now = g_get_monotonic_time ();

  for (GList *l = be->stores; l; l = l->next)
    {
      ConatBackendStore *st = l->data;
      gboolean silent;

      g_mutex_lock (&st->d.mu);
      silent = st->sub != NULL && !st->broken && !st->stale && !st->d.closing
               && now - st->heard_us > WATCH_SILENT_US;
      if (silent)
        {
          g_debug ("the watch of %s went silent; resuming it", st->bucket);
          st->gen++;  /* drops the rest of this watch */
          st->broken = TRUE;
        }
      g_mutex_unlock (&st->d.mu);
      if (silent)
        st->remote_check_wanted = TRUE;  /* never re-creates the bucket */
    }
}

/* With be->mu held: ages out the open stores; TRUE if one has a max_age. */
static gboolean
stores_age_out_locked (NatsBackend *be)
{
  gint64 now_ns = g_get_real_time () * 1000;
  gboolean aging = FALSE;

  for (GList *l = be->stores; l; l = l->next)
    {
      ConatBackendStore *st = l->data;

      g_mutex_lock (&st->d.mu);
      if (st->max_age_ms > 0 && !st->d.closing)
        {
          aging = TRUE;
          store_age_out_locked (st, now_ns - st->max_age_ms * 1000000);
        }
      g_mutex_unlock (&st->d.mu);
    }
  return aging;
}

/* The bucket is gone and not ours to re-create: its keys are gone too. */
static void
store_orphan (ConatBackendStore *st)
{
  natsSubscription *old;

  g_message ("NATS bucket %s was removed", st->bucket);
  g_mutex_lock (&st->d.mu);
  old = store_take_sub_locked (st);
  store_forget_keys_locked (st, G_MAXINT64, TRUE);
  st->gone = TRUE;
  g_mutex_unlock (&st->d.mu);
  if (old)
    natsSubscription_Destroy (old);
}

/* With d.mu held: the bucket behind the handle is now SI. */
static void
store_adopt_locked (ConatBackendStore *st, jsStreamInfo *si)
{
  st->created = si->Created;
  st->gone = FALSE;
  st->ephemeral = si->Config->Storage == js_MemoryStorage;
  store_note_config_locked (st, si);
  if (st->ephemeral && st->keys == NULL)
    st->keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  else if (!st->ephemeral)
    g_clear_pointer (&st->keys, g_hash_table_unref);
}

/* If the watch already delivered messages of the new bucket (a consumer
 * made on the new stream between our stream info calls), keep it and forget
 * only the keys of the old one (a rare race: they share the current
 * revision). */
static gboolean
store_follows_new_bucket (ConatBackendStore *st, jsStreamInfo *si)
{
  gboolean follows;

  g_mutex_lock (&st->d.mu);
  follows = st->sub != NULL && !st->gone && !st->stale && st->last_stored_ns >= si->Created;
  if (follows)
    {
      store_forget_keys_locked (st, si->Created, FALSE);
      store_adopt_locked (st, si);
    }
  g_mutex_unlock (&st->d.mu);
  return follows;
}

/* The bucket is new (SI), or missing (NULL: re-create it): see the top. */
static gboolean
store_reset (ConatBackendStore *st, jsStreamInfo *si)
{
  NatsBackend *be = st->d.be;
  jsStreamInfo *fresh = NULL;
  natsSubscription *old;
  gboolean ephemeral, ok = FALSE;
  guint64 next;

  if (si != NULL && store_follows_new_bucket (st, si))
    return TRUE;
  /* Stop the old watch first, so the set of keys to forget stays put. */
  g_mutex_lock (&st->d.mu);
  st->resetting = TRUE;
  old = store_take_sub_locked (st);
  next = st->last_seq + 1 + (st->keys ? g_hash_table_size (st->keys) : 0);
  ephemeral = st->ephemeral;
  g_mutex_unlock (&st->d.mu);
  if (old)
    natsSubscription_Destroy (old);

  if (si == NULL && nats_bucket_ensure (be, st->bucket, ephemeral, TRUE, &fresh, NULL, NULL))
    si = fresh;
  if (si != NULL && si->State.Msgs == 0 && si->State.LastSeq < next)
    {
      nats_bucket_skip_to (be, st->bucket, next);
      g_clear_pointer (&fresh, jsStreamInfo_Destroy);
      si = nats_stream_info (be, st->bucket, &fresh, NULL) ? fresh : NULL;
    }
  if (si != NULL)
    {
      g_message ("NATS bucket %s is new; reloading it", st->bucket);
      g_mutex_lock (&st->d.mu);
      store_forget_keys_locked (st, G_MAXINT64, TRUE);
      store_adopt_locked (st, si);
      g_mutex_unlock (&st->d.mu);
      ok = store_subscribe (st, js_DeliverByStartSequence, next, NULL);
    }
  g_clear_pointer (&fresh, jsStreamInfo_Destroy);
  g_mutex_lock (&st->d.mu);
  st->resetting = FALSE;
  g_mutex_unlock (&st->d.mu);
  return ok;
}

/* The server may have lost the consumer, and after a reconnect (RESUME)
 * or a gap the watch missed messages: resume it after the last revision
 * seen. */
static gboolean
store_check_consumer (ConatBackendStore *st, gboolean resume)
{
  g_autofree char *consumer = NULL;
  jsConsumerInfo *ci = NULL;
  natsSubscription *old;
  jsErrCode jerr = 0;
  guint64 start;

  g_mutex_lock (&st->d.mu);
  if (!st->stale && !st->broken && !resume && st->sub != NULL)
    consumer = g_strdup (st->consumer);
  g_mutex_unlock (&st->d.mu);
  if (consumer != NULL)
    {
      natsStatus s = js_GetConsumerInfo (&ci, st->d.be->js, st->stream, consumer, NULL, &jerr);

      jsConsumerInfo_Destroy (ci);
      if (s == NATS_OK)
        return TRUE;
      if (s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr)
        return FALSE;
    }
  g_mutex_lock (&st->d.mu);
  start = st->last_seq + 1;
  st->gone = FALSE;
  old = store_take_sub_locked (st);
  g_mutex_unlock (&st->d.mu);
  if (old)
    natsSubscription_Destroy (old);
  return store_subscribe (st, js_DeliverByStartSequence, start, NULL);
}

static void
fill_time (const char *key, gint64 stored_ns, gpointer data)
{
  g_hash_table_insert (data, g_strdup (key), g_memdup2 (&stored_ns, sizeof stored_ns));
}

/* A max_age was set after the load: the times of the values stored so far
 * come from a scan; what the watch delivers meanwhile is newer and stays. */
static gboolean
store_fill_ages (ConatBackendStore *st)
{
  g_autoptr (GHashTable) times = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  GHashTableIter iter;
  gpointer key, stored;
  gboolean ok;

  g_mutex_lock (&st->d.mu);
  if (st->ages_seen == NULL)
    st->ages_seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_unlock (&st->d.mu);
  ok = nats_bucket_times (st->d.be, st->bucket, fill_time, times, NULL);
  g_mutex_lock (&st->d.mu);
  if (ok && st->ages != NULL)
    {
      g_hash_table_iter_init (&iter, times);
      while (g_hash_table_iter_next (&iter, &key, &stored))
        if (!g_hash_table_contains (st->ages_seen, key) && !g_hash_table_contains (st->ages, key))
          {
            g_hash_table_iter_steal (&iter);
            g_hash_table_insert (st->ages, key, stored);
          }
    }
  if (ok)
    st->ages_fill = FALSE;
  g_clear_pointer (&st->ages_seen, g_hash_table_unref);
  g_mutex_unlock (&st->d.mu);
  return ok;
}

/* FALSE: try again soon. */
static gboolean
store_check (ConatBackendStore *st, CheckKind kind)
{
  g_autoptr (GError) error = NULL;
  jsStreamInfo *si = NULL;
  gboolean ok = TRUE, closing, ephemeral, gone, fill;
  gint64 created;

  g_mutex_lock (&st->sub_mu);
  g_mutex_lock (&st->d.mu);
  closing = st->d.closing;
  created = st->created;
  ephemeral = st->ephemeral;
  gone = st->gone;
  g_mutex_unlock (&st->d.mu);
  if (closing)
    ;
  else if (!nats_stream_info (st->d.be, st->bucket, &si, &error))
    {
      if (!g_error_matches (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND))
        ok = FALSE;
      else if (kind == CHECK_WRITE || (kind == CHECK_RECONNECT && ephemeral))
        ok = store_reset (st, NULL);
      else if (!gone)
        store_orphan (st);
    }
  else if (si->Created != created)
    ok = store_reset (st, si);
  else
    {
      g_mutex_lock (&st->d.mu);
      store_note_config_locked (st, si);
      g_mutex_unlock (&st->d.mu);
      ok = store_check_consumer (st, gone || kind == CHECK_RECONNECT);
    }
  jsStreamInfo_Destroy (si);
  g_mutex_lock (&st->d.mu);
  fill = st->ages_fill && !st->d.closing;
  g_mutex_unlock (&st->d.mu);
  if (fill && !store_fill_ages (st))
    ok = FALSE;
  g_mutex_unlock (&st->sub_mu);
  return ok;
}

typedef struct {
  ConatBackendStore *store;  /* a reference */
  CheckKind kind;
} Check;

/* With be->mu held: what to check now. */
static GArray *
maint_collect_locked (NatsBackend *be, gboolean reconnect, gboolean periodic)
{
  GArray *checks = g_array_new (FALSE, FALSE, sizeof (Check));

  for (GList *l = be->stores; l; l = l->next)
    ((ConatBackendStore *) l->data)->reconnect_wanted |= reconnect;
  for (GList *l = be->stores; l; l = l->next)
    {
      ConatBackendStore *st = l->data;
      gboolean ages_fill;

      g_mutex_lock (&st->d.mu);
      ages_fill = st->ages_fill;
      g_mutex_unlock (&st->d.mu);
      Check c = { st, st->check_wanted ? CHECK_WRITE
                      : st->reconnect_wanted ? CHECK_RECONNECT
                      : st->remote_check_wanted ? CHECK_REMOTE
                      : periodic   ? CHECK_PERIODIC
                      : ages_fill  ? CHECK_AGES
                                   : CHECK_NONE };

      st->check_wanted = st->remote_check_wanted = st->reconnect_wanted = FALSE;
      if (c.kind == CHECK_NONE)
        continue;
      dispatch_ref (&st->d);
      g_array_append_val (checks, c);
    }
  return checks;
}

gpointer
nats_maint_thread (gpointer data)
{
  NatsBackend *be = data;
  gint64 next_periodic = g_get_monotonic_time () + MAINT_PERIOD_US;
  gint64 next_age = 0;
  gint64 next_silence = g_get_monotonic_time () + WATCH_SILENT_US / 4;
  gboolean retry = FALSE, aging = FALSE;

  g_mutex_lock (&be->mu);
  while (!be->stopping)
    {
      gint64 deadline = retry ? MIN (next_periodic, g_get_monotonic_time () + MAINT_RETRY_US)
                              : next_periodic;
      gboolean reconnect, periodic, connected;
      GArray *checks;

      if (aging)
        deadline = MIN (deadline, next_age);
      deadline = MIN (deadline, next_silence);
      while (!be->stopping && !be->maint_wanted
             && g_cond_wait_until (&be->cond, &be->mu, deadline))
        ;
      if (be->stopping)
        break;
      if (be->maint_wanted || g_get_monotonic_time () >= next_age)
        {
          aging = stores_age_out_locked (be);
          next_age = g_get_monotonic_time () + AGE_SWEEP_US;
        }
      if (g_get_monotonic_time () >= next_silence)
        {
          if (be->connected)
            stores_find_silent_locked (be);
          next_silence = g_get_monotonic_time () + WATCH_SILENT_US / 4;
        }
      periodic = g_get_monotonic_time () >= next_periodic;
      if (periodic)
        next_periodic = g_get_monotonic_time () + MAINT_PERIOD_US;
      reconnect = be->maint_reconnect;
      be->maint_reconnect = be->maint_wanted = FALSE;
      connected = be->connected;
      checks = maint_collect_locked (be, reconnect, periodic);
      g_mutex_unlock (&be->mu);

      retry = FALSE;
      for (guint i = 0; i < checks->len; i++)
        {
          Check *c = &g_array_index (checks, Check, i);
          if (connected && store_check (c->store, c->kind))
            c->kind = CHECK_NONE;
        }
      g_mutex_lock (&be->mu);
      for (guint i = 0; i < checks->len; i++)
        {
          Check *c = &g_array_index (checks, Check, i);

          /* Failed checks run again in a second, or after the reconnect. */
          if (c->kind == CHECK_WRITE)
            c->store->check_wanted = TRUE;
          else if (c->kind == CHECK_REMOTE)
            c->store->remote_check_wanted = TRUE;
          else if (c->kind == CHECK_RECONNECT)
            c->store->reconnect_wanted = TRUE;
          retry = retry || (connected && c->kind != CHECK_NONE && c->kind != CHECK_PERIODIC);
        }
      g_mutex_unlock (&be->mu);
      for (guint i = 0; i < checks->len; i++)
        dispatch_unref (&g_array_index (checks, Check, i).store->d);
      g_array_unref (checks);
      g_mutex_lock (&be->mu);
    }
  g_mutex_unlock (&be->mu);
  return NULL;
}
