/* nats-maint.c — the NATS backend's maintenance thread: checks of open
 * store handles against the server, recovery of their watches, and the
 * ageing of values (nats-store.c has the handles and their watches).
 *
 * Vanishing buckets.  A memory bucket is gone after a server restart, and a
 * bucket can be removed or re-created (set_store_ephemeral) by any client.
 * The maintenance thread compares each open handle's bucket creation time
 * with the server's: after a reconnect, every 30 s, when a write found no
 * stream, and when a stream advisory says the bucket was created or deleted
 * (another client removed the store or flipped its ephemeral flag: the
 * watch's consumer died with the old stream, and the handle must learn the
 * new bucket's storage type, or a later server restart would not empty an
 * ephemeral store).  When the bucket is new
 * (re-created by us, for an ephemeral store after a reconnect or for any
 * store that is written to, or by someone else), the handle reports each of
 * the K keys it had as deleted, at revisions S+1 .. S+K (S = the highest
 * revision it knew; its own puts the server acked count as known, keys and
 * revisions, even when the watch had not delivered them before the bucket
 * was lost).  If the handle made the new bucket itself, it moves
 * it on to sequence S+K+1 while it is still empty, and a new watch starts
 * after S+K: revisions keep growing.  A bucket someone else made is never
 * purged (a purge removes every message below its sequence, and a write
 * confirmed between the check for emptiness and the purge would be lost);
 * unless it is past S+K already, the handle starts over: it reports a
 * change with no key (the DKV then takes lower revisions again), and a new
 * watch replays the new bucket from its first message.  After a disconnect
 * the watches of ephemeral handles deliver nothing until that check ran
 * (nats_stores_disconnected): libnats resumes them on whatever bucket has
 * the name, maybe one re-created by another client.
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
#define WATCH_SILENT_US (13 * G_USEC_PER_SEC)  /* heartbeats missed: 2.5 of them */

typedef enum {
  CHECK_NONE, CHECK_PERIODIC, CHECK_AGES, CHECK_REMOTE, CHECK_RECONNECT, CHECK_WRITE
} CheckKind;

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
      nats_store_note_config_locked (st, si);
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

/* With d.mu held: reports each key of FROM stored before BEFORE_NS as
 * deleted, and forgets it in FROM and ALSO; at revisions last_seq + 1,
 * + 2, ... if BUMP (taking them), else all at AT. */
static void
store_report_deleted_locked (ConatBackendStore *st, GHashTable *from, GHashTable *also,
                             gint64 before_ns, gboolean bump, guint64 at)
{
  gint64 now_ms = g_get_real_time () / 1000;
  GHashTableIter iter;
  gpointer key, stored;

  if (from == NULL)
    return;
  g_hash_table_iter_init (&iter, from);
  while (g_hash_table_iter_next (&iter, &key, &stored))
    {
      NatsChange *c;

      if (*(gint64 *) stored >= before_ns)
        continue;
      c = g_new0 (NatsChange, 1);
      c->key = g_strdup (key);
      c->revision = bump ? ++st->last_seq : at;
      c->time_ms = now_ms;
      if (also != NULL)
        g_hash_table_remove (also, key);
      dispatch_push_locked (&st->d, c);
      g_hash_table_iter_remove (&iter);
    }
}

/* With d.mu held: reports every key the handle had (ephemeral stores) that
 * was stored before BEFORE_NS as deleted, each at its own revision from
 * last_seq + 1 on (or all at last_seq unless BUMP). */
static void
store_forget_keys_locked (ConatBackendStore *st, gint64 before_ns, gboolean bump)
{
  store_report_deleted_locked (st, st->keys, st->ages, before_ns, bump, st->last_seq);
}

/* With d.mu held: reports the keys stored before BEFORE_NS as deleted, at
 * last_seq + 1 without taking it (see the top). */
static void
store_age_out_locked (ConatBackendStore *st, gint64 before_ns)
{
  store_report_deleted_locked (st, st->ages, st->keys, before_ns, FALSE, st->last_seq + 1);
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
  old = nats_store_take_sub_locked (st);
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
  nats_store_note_config_locked (st, si);
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
      st->acked_seq = 0;  /* the watch delivers the new bucket's puts */
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
  gboolean ephemeral, made = FALSE, moved_on, ok = FALSE;
  guint64 next;

  if (si != NULL && store_follows_new_bucket (st, si))
    return TRUE;
  /* Stop the old watch first, so the set of keys to forget stays put. */
  g_mutex_lock (&st->d.mu);
  st->resetting = TRUE;
  old = nats_store_take_sub_locked (st);
  /* Our puts the watch had not delivered count as known (note_acked). */
  st->last_seq = MAX (st->last_seq, st->acked_seq);
  next = st->last_seq + 1 + (st->keys ? g_hash_table_size (st->keys) : 0);
  ephemeral = st->ephemeral;
  g_mutex_unlock (&st->d.mu);
  if (old)
    natsSubscription_Destroy (old);

  if (si == NULL && nats_bucket_ensure (be, st->bucket, ephemeral, TRUE, &fresh, &made, NULL))
    si = fresh;
  if (made && si->State.Msgs == 0 && si->State.LastSeq < next)
    {
      nats_bucket_skip_to (be, st->bucket, next);
      g_clear_pointer (&fresh, jsStreamInfo_Destroy);
      si = nats_stream_info (be, st->bucket, &fresh, NULL) ? fresh : NULL;
    }
  if (si != NULL)
    {
      moved_on = si->State.LastSeq + 1 >= next
                 && (si->State.Msgs == 0 || si->State.FirstSeq >= next);
      g_message ("NATS bucket %s is new; reloading it%s", st->bucket,
                 moved_on ? "" : " from its first revision");
      g_mutex_lock (&st->d.mu);
      store_forget_keys_locked (st, G_MAXINT64, TRUE);
      store_adopt_locked (st, si);
      st->acked_seq = 0;  /* revisions of the old bucket */
      if (!moved_on)
        {
          dispatch_push_locked (&st->d, g_new0 (NatsChange, 1)); /* no key: start over */
          st->last_seq = 0;
        }
      g_mutex_unlock (&st->d.mu);
      ok = moved_on ? nats_store_subscribe (st, js_DeliverByStartSequence, next, NULL)
                    : nats_store_subscribe (st, js_DeliverAll, 0, NULL);
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
  old = nats_store_take_sub_locked (st);
  g_mutex_unlock (&st->d.mu);
  if (old)
    natsSubscription_Destroy (old);
  return nats_store_subscribe (st, js_DeliverByStartSequence, start, NULL);
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
  gboolean ok = TRUE, closing, ephemeral, gone, healthy, fill;
  gint64 created;

  g_mutex_lock (&st->sub_mu);
  g_mutex_lock (&st->d.mu);
  closing = st->d.closing;
  created = st->created;
  ephemeral = st->ephemeral;
  gone = st->gone;
  healthy = st->sub != NULL && !st->broken && !st->stale;
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
      nats_store_note_config_locked (st, si);
      g_mutex_unlock (&st->d.mu);
      /* A watch that hears heartbeats has its consumer: the periodic check
       * asks the server about the others only. */
      if (kind != CHECK_PERIODIC || gone || !healthy)
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
    {
      ConatBackendStore *st = l->data;
      gboolean ages_fill;

      st->reconnect_wanted |= reconnect;
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
