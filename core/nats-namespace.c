/* nats-namespace.c — scopes and stores of the NATS backend: one JetStream
 * key-value bucket per store, scope markers in the bucket "conat_scopes",
 * both discovered from the server's stream list. */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

/* ------------------------------------------------------------ buckets */

static char *
stream_name (const char *bucket)
{
  return g_strconcat ("KV_", bucket, NULL);
}

gboolean
nats_stream_info (NatsBackend *be, const char *bucket, jsStreamInfo **si, GError **error)
{
  g_autofree char *stream = stream_name (bucket);
  g_autofree char *refused = NULL;
  guint perm = nats_permission_epoch (be);
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo (si, be->js, stream, NULL, &jerr);

  if (s == NATS_OK)
    return TRUE;
  if (s == NATS_TIMEOUT && (refused = nats_permission_refused (be, perm, stream)) != NULL)
    {
      g_message ("permission denied for NATS bucket %s: %s", bucket, refused);
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION, "the NATS server refused: %s",
                   refused);
      return FALSE;
    }
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND, "no bucket %s", bucket);
      return FALSE;
    }
  nats_set_error (be, error, s, jerr, "reading NATS bucket info");
  return FALSE;
}

gboolean
nats_bucket_create (NatsBackend *be, const char *bucket, gboolean ephemeral, GError **error)
{
  kvConfig cfg;
  kvStore *kv = NULL;
  natsStatus s;

  kvConfig_Init (&cfg);
  cfg.Bucket = bucket;
  cfg.History = 1;
  cfg.StorageType = ephemeral ? js_MemoryStorage : js_FileStorage;
  cfg.Replicas = MAX (be->replicas, 1);
  s = js_CreateKeyValue (&kv, be->js, &cfg);
  kvStore_Destroy (kv);
  if (s == NATS_OK)
    return TRUE;
  nats_set_error (be, error, s, 0, "creating NATS bucket");
  return FALSE;
}

/* Stream info of BUCKET, created first if missing and CREATE. */
gboolean
nats_bucket_ensure (NatsBackend *be, const char *bucket, gboolean ephemeral, gboolean create,
                    jsStreamInfo **si, gboolean *created, GError **error)
{
  g_autoptr (GError) local = NULL;

  if (created)
    *created = FALSE;
  if (nats_stream_info (be, bucket, si, &local))
    return TRUE;
  if (!create || !g_error_matches (local, CONAT_ERROR, CONAT_ERROR_NOT_FOUND))
    {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  if (!nats_bucket_create (be, bucket, ephemeral, error))
    return FALSE;
  if (created)
    *created = TRUE;
  return nats_stream_info (be, bucket, si, error);
}

/* Makes the next message of an empty bucket get sequence SEQ, so that
 * revisions keep growing over a re-created bucket.  Best effort, and only
 * forward: a purge to sequence SEQ removes every message below SEQ (and one
 * to sequence 1 removes them all), so it must not run once a message of
 * the new bucket may be in it -- another client writes as soon as the bucket
 * exists.  The bucket is checked just before; what is left is the round
 * trip between the check and the purge. */
void
nats_bucket_skip_to (NatsBackend *be, const char *bucket, guint64 seq)
{
  g_autofree char *stream = stream_name (bucket);
  jsStreamInfo *si = NULL;
  gboolean empty;
  jsOptions o;
  jsErrCode jerr = 0;

  if (!nats_stream_info (be, bucket, &si, NULL))
    return;
  empty = si->State.Msgs == 0 && si->State.LastSeq + 1 < seq;
  jsStreamInfo_Destroy (si);
  if (!empty)
    return;
  jsOptions_Init (&o);
  o.Stream.Purge.Sequence = seq;
  if (js_PurgeStream (be->js, stream, &o, &jerr) != NATS_OK)
    g_debug ("could not move bucket %s to sequence %" G_GUINT64_FORMAT, bucket, seq);
}

/* Whether every message of BUCKET up to SEQ is gone (MaxAge, a purge), so
 * that a replay waiting for SEQ has all there is. */
gboolean
nats_bucket_passed (NatsBackend *be, const char *bucket, guint64 seq)
{
  jsStreamInfo *si = NULL;
  gboolean passed;

  if (!nats_stream_info (be, bucket, &si, NULL))
    return FALSE;
  passed = si->State.Msgs == 0 || si->State.FirstSeq > seq;
  jsStreamInfo_Destroy (si);
  return passed;
}

/* Calls FUNC for the last message of every key (headers only) until the
 * bucket's last sequence at the time of the call has been seen (or is gone). */
static gboolean
bucket_scan (NatsBackend *be, const char *bucket,
             void (*func) (const char *raw_key, natsMsg *msg, gpointer data), gpointer data,
             GError **error)
{
  g_autofree char *stream = stream_name (bucket);
  g_autofree char *filter = g_strconcat ("$KV.", bucket, ".>", NULL);
  gsize prefix_len = strlen (filter) - 1;
  jsStreamInfo *si = NULL;
  natsSubscription *sub = NULL;
  jsSubOptions so;
  jsErrCode jerr = 0;
  guint64 last;
  gint64 deadline;
  natsStatus s;

  if (!nats_stream_info (be, bucket, &si, error))
    return FALSE;
  last = si->State.Msgs > 0 ? si->State.LastSeq : 0;
  jsStreamInfo_Destroy (si);
  if (last == 0)
    return TRUE;

  /* A plain ephemeral consumer, not an ordered one: libnats re-creates an
   * ordered consumer in place after a gap or a reconnect, and that can race
   * natsSubscription_Destroy of this short-lived subscription (a freed
   * subscription left in the connection's table).  A scan needs no
   * recovery: a failed one is an error, and the caller may ask again. */
  jsSubOptions_Init (&so);
  so.Stream = stream;
  so.Config.AckPolicy = js_AckNone;
  so.Config.DeliverPolicy = js_DeliverLastPerSubject;
  so.Config.HeadersOnly = true;
  s = js_SubscribeSync (&sub, be->js, filter, NULL, &so, &jerr);
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, jerr, "listing NATS bucket");
      return FALSE;
    }
  deadline = g_get_monotonic_time () + NATS_LOAD_TIMEOUT_US;
  while (s == NATS_OK)
    {
      natsMsg *msg = NULL;
      jsMsgMetaData *meta = NULL;
      gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;
      guint64 seq = 0;

      s = natsSubscription_NextMsg (&msg, sub, CLAMP (left_ms, 1, NATS_LOAD_IDLE_US / 1000));
      if (s == NATS_TIMEOUT && left_ms > NATS_LOAD_IDLE_US / 1000)
        {
          s = NATS_OK;
          if (nats_bucket_passed (be, bucket, last))
            break;
          continue;
        }
      if (s != NATS_OK)
        break;
      if (natsMsg_GetMetaData (&meta, msg) == NATS_OK)
        {
          seq = meta->Sequence.Stream;
          jsMsgMetaData_Destroy (meta);
          if (!nats_msg_is_delete (msg) && strlen (natsMsg_GetSubject (msg)) > prefix_len)
            func (natsMsg_GetSubject (msg) + prefix_len, msg, data);
        }
      natsMsg_Destroy (msg);
      if (seq >= last)
        break;
    }
  natsSubscription_Unsubscribe (sub);  /* deletes the consumer */
  natsSubscription_Destroy (sub);
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, 0, "listing NATS bucket");
      return FALSE;
    }
  return TRUE;
}

typedef struct {
  void (*func) (const char *key, gint64 stored_ns, gpointer data);
  gpointer data;
} ScanTimes;

static void
scan_time (const char *raw_key, natsMsg *msg, gpointer data)
{
  ScanTimes *t = data;
  g_autofree char *key = conat_nats_key_decode (raw_key, strlen (raw_key));
  jsMsgMetaData *meta = NULL;

  if (key == NULL || natsMsg_GetMetaData (&meta, msg) != NATS_OK)
    return;
  t->func (key, meta->Timestamp, t->data);
  jsMsgMetaData_Destroy (meta);
}

/* Calls FUNC with the server time at which each key of BUCKET that has a
 * value was stored. */
gboolean
nats_bucket_times (NatsBackend *be, const char *bucket,
                   void (*func) (const char *key, gint64 stored_ns, gpointer data),
                   gpointer data, GError **error)
{
  ScanTimes t = { func, data };

  return bucket_scan (be, bucket, scan_time, &t, error);
}

gboolean
nats_msg_is_delete (natsMsg *msg)
{
  const char *op = NULL;

  return natsMsgHeader_Get (msg, "KV-Operation", &op) == NATS_OK && op != NULL
         && (strcmp (op, "DEL") == 0 || strcmp (op, "PURGE") == 0);
}

typedef struct {
  guint64 keys;
  guint64 bytes;
  GPtrArray *raw_keys;
} ScanCount;

static void
scan_count (const char *raw_key, natsMsg *msg, gpointer data)
{
  ScanCount *count = data;
  const char *size = NULL;

  count->keys++;
  if (natsMsgHeader_Get (msg, "Nats-Msg-Size", &size) == NATS_OK && size != NULL)
    count->bytes += g_ascii_strtoull (size, NULL, 10);
  if (count->raw_keys)
    g_ptr_array_add (count->raw_keys, g_strdup (raw_key));
}

static gboolean
bucket_count (NatsBackend *be, const char *bucket, ScanCount *count, GError **error)
{
  return bucket_scan (be, bucket, scan_count, count, error);
}

/* Every bucket name on the server (streams "KV_<bucket>"). */
static GPtrArray *
list_buckets (NatsBackend *be, GError **error)
{
  jsStreamNamesList *list = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_StreamNames (&list, be->js, NULL, &jerr);
  GPtrArray *buckets = g_ptr_array_new_with_free_func (g_free);

  if (s == NATS_NOT_FOUND)
    return buckets;
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, jerr, "listing NATS streams");
      g_ptr_array_unref (buckets);
      return NULL;
    }
  for (int i = 0; i < list->Count; i++)
    if (g_str_has_prefix (list->List[i], "KV_"))
      g_ptr_array_add (buckets, g_strdup (list->List[i] + 3));
  jsStreamNamesList_Destroy (list);
  return buckets;
}

/* Store names of SCOPE that have a bucket. */
static GPtrArray *
scope_buckets (NatsBackend *be, const char *scope, GError **error)
{
  g_autoptr (GPtrArray) buckets = list_buckets (be, error);
  GPtrArray *stores;

  if (buckets == NULL)
    return NULL;
  stores = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < buckets->len; i++)
    {
      char *s = NULL, *n = NULL;

      if (!conat_nats_bucket_parse (buckets->pdata[i], &s, &n))
        continue;
      if (strcmp (s, scope) == 0)
        g_ptr_array_add (stores, n);
      else
        g_free (n);
      g_free (s);
    }
  return stores;
}

/* ------------------------------------------------------------- scopes */

static gboolean
check_scope_name (const char *scope, GError **error)
{
  g_autofree char *escaped = conat_nats_name_escape (scope);

  if (*scope == '\0')
    {
      g_set_error_literal (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME, "empty scope name");
      return FALSE;
    }
  /* Room for "conat_", "-" and a one-byte store name. */
  if (strlen (escaped) > CONAT_NATS_BUCKET_MAX - strlen (CONAT_NATS_BUCKET_PREFIX) - 2)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG,
                   "scope name too long for NATS (%zu bytes encoded)", strlen (escaped));
      return FALSE;
    }
  return TRUE;
}

/* The scope marker bucket; NULL without error if it does not exist. */
static kvStore *
scopes_kv (NatsBackend *be, gboolean create, GError **error)
{
  kvStore *kv = NULL;
  natsStatus s = js_KeyValue (&kv, be->js, CONAT_NATS_SCOPES_BUCKET);

  if (s == NATS_OK)
    return kv;
  if (s != NATS_NOT_FOUND)
    {
      nats_set_error (be, error, s, 0, "opening the NATS scope bucket");
      return NULL;
    }
  if (!create)
    return NULL;
  if (!nats_bucket_create (be, CONAT_NATS_SCOPES_BUCKET, FALSE, error))
    return NULL;
  s = js_KeyValue (&kv, be->js, CONAT_NATS_SCOPES_BUCKET);
  if (s != NATS_OK)
    nats_set_error (be, error, s, 0, "opening the NATS scope bucket");
  return kv;
}

static gboolean
scope_marker_exists (NatsBackend *be, const char *scope, gboolean *exists, GError **error)
{
  g_autofree char *escaped = conat_nats_name_escape (scope);
  g_autoptr (GError) local = NULL;
  kvStore *kv = scopes_kv (be, FALSE, &local);
  kvEntry *entry = NULL;
  natsStatus s;

  *exists = FALSE;
  if (kv == NULL && local != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  if (kv == NULL)
    return TRUE;
  s = kvStore_Get (&entry, kv, escaped);
  kvEntry_Destroy (entry);
  kvStore_Destroy (kv);
  if (s == NATS_OK || s == NATS_NOT_FOUND)
    {
      *exists = (s == NATS_OK);
      return TRUE;
    }
  nats_set_error (be, error, s, 0, "reading the NATS scope bucket");
  return FALSE;
}

gboolean
nats_scope_mark (NatsBackend *be, const char *scope, GError **error)
{
  g_autofree char *escaped = conat_nats_name_escape (scope);
  kvStore *kv = scopes_kv (be, TRUE, error);
  uint64_t rev = 0;
  natsStatus s;

  if (kv == NULL)
    return FALSE;
  s = kvStore_Put (&rev, kv, escaped, NULL, 0);
  kvStore_Destroy (kv);
  if (s == NATS_OK)
    return TRUE;
  nats_set_error (be, error, s, 0, "writing the NATS scope bucket");
  return FALSE;
}

static gboolean
scope_exists (NatsBackend *be, const char *scope, gboolean *exists, GError **error)
{
  g_autoptr (GPtrArray) stores = NULL;

  if (!scope_marker_exists (be, scope, exists, error))
    return FALSE;
  if (*exists)
    return TRUE;
  stores = scope_buckets (be, scope, error);
  if (stores == NULL)
    return FALSE;
  *exists = stores->len > 0;
  return TRUE;
}

/* While disconnected the server cannot answer a query, and libnats would
 * hold it until its timeout (5 s): say so at once, so that a lookup falls
 * back on what the open stores know without waiting. */
static gboolean
offline (NatsBackend *be, GError **error)
{
  if (nats_is_connected (be))
    return FALSE;
  g_set_error_literal (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED, "not connected to NATS");
  return TRUE;
}

GPtrArray *
nats_list_scopes (ConatBackend *backend, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GPtrArray) buckets = offline (be, error) ? NULL : list_buckets (be, error);
  ScanCount markers = { 0, 0, NULL };
  GPtrArray *scopes;
  GHashTableIter iter;
  gpointer name;

  if (buckets == NULL)
    return NULL;
  for (guint i = 0; i < buckets->len; i++)
    {
      char *s = NULL, *n = NULL;

      if (strcmp (buckets->pdata[i], CONAT_NATS_SCOPES_BUCKET) == 0)
        {
          markers.raw_keys = g_ptr_array_new_with_free_func (g_free);
          if (!bucket_count (be, CONAT_NATS_SCOPES_BUCKET, &markers, error))
            {
              g_ptr_array_unref (markers.raw_keys);
              return NULL;
            }
        }
      else if (conat_nats_bucket_parse (buckets->pdata[i], &s, &n))
        {
          g_hash_table_add (seen, s);
          g_free (n);
        }
    }
  for (guint i = 0; markers.raw_keys && i < markers.raw_keys->len; i++)
    {
      char *scope = conat_nats_scope_unescape (markers.raw_keys->pdata[i]);

      if (scope != NULL && *scope != '\0')
        g_hash_table_add (seen, scope);
      else
        g_free (scope);
    }
  g_clear_pointer (&markers.raw_keys, g_ptr_array_unref);
  scopes = g_ptr_array_new_with_free_func (g_free);
  g_hash_table_iter_init (&iter, seen);
  while (g_hash_table_iter_next (&iter, &name, NULL))
    {
      g_hash_table_iter_steal (&iter);
      g_ptr_array_add (scopes, name);
    }
  return scopes;
}

gboolean
nats_create_scope (ConatBackend *backend, const char *scope, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  gboolean exists = FALSE;

  if (!check_scope_name (scope, error) || !scope_exists (be, scope, &exists, error))
    return FALSE;
  if (exists)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_EXISTS, "scope exists");
      return FALSE;
    }
  return nats_scope_mark (be, scope, error);
}

gboolean
nats_remove_scope (ConatBackend *backend, const char *scope, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autoptr (GPtrArray) stores = scope_buckets (be, scope, error);
  g_autofree char *escaped = conat_nats_name_escape (scope);
  gboolean marked = FALSE;
  kvStore *kv;
  natsStatus s;

  if (stores == NULL)
    return FALSE;
  if (stores->len > 0)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NOT_EMPTY, "scope holds stores");
      return FALSE;
    }
  if (!scope_marker_exists (be, scope, &marked, error))
    return FALSE;
  if (!marked)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND, "no such scope");
      return FALSE;
    }
  kv = scopes_kv (be, FALSE, error);
  if (kv == NULL)
    return FALSE;
  s = kvStore_Purge (kv, escaped, NULL);
  kvStore_Destroy (kv);
  if (s == NATS_OK)
    return TRUE;
  nats_set_error (be, error, s, 0, "removing the scope marker");
  return FALSE;
}

gboolean
nats_has_scope (ConatBackend *backend, const char *scope, GError **error)
{
  gboolean exists = FALSE;

  return !offline ((NatsBackend *) backend, error)
         && scope_exists ((NatsBackend *) backend, scope, &exists, error) && exists;
}

/* ------------------------------------------------------------- stores */

GPtrArray *
nats_list_stores (ConatBackend *backend, const char *scope, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  GPtrArray *stores = offline (be, error) ? NULL : scope_buckets (be, scope, error);
  gboolean marked = FALSE;

  if (stores == NULL || stores->len > 0)
    return stores;
  if (!scope_marker_exists (be, scope, &marked, error) || !marked)
    {
      if (!marked && (error == NULL || *error == NULL))
        g_set_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND, "no such scope");
      g_ptr_array_unref (stores);
      return NULL;
    }
  return stores;
}

gboolean
nats_create_store (ConatBackend *backend, const char *scope, const char *name,
                   gboolean ephemeral, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *bucket = conat_nats_bucket_name (scope, name, error);
  g_autoptr (GError) local = NULL;
  jsStreamInfo *si = NULL;

  if (bucket == NULL)
    return FALSE;
  if (nats_stream_info (be, bucket, &si, &local))
    {
      jsStreamInfo_Destroy (si);
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_EXISTS, "store exists");
      return FALSE;
    }
  if (!g_error_matches (local, CONAT_ERROR, CONAT_ERROR_NOT_FOUND))
    {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  return nats_bucket_create (be, bucket, ephemeral, error) && nats_scope_mark (be, scope, error);
}

gboolean
nats_remove_store (ConatBackend *backend, const char *scope, const char *name, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *bucket = conat_nats_bucket_name (scope, name, error);
  g_autofree char *stream = NULL;
  ScanCount count = { 0, 0, NULL };
  jsErrCode jerr = 0;
  natsStatus s;

  if (bucket == NULL || !bucket_count (be, bucket, &count, error))
    return FALSE;
  if (count.keys > 0)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NOT_EMPTY, "store holds %" G_GUINT64_FORMAT " keys",
                   count.keys);
      return FALSE;
    }
  stream = stream_name (bucket);
  s = js_DeleteStream (be->js, stream, NULL, &jerr);
  if (s == NATS_OK)
    return TRUE;
  nats_set_error (be, error, s, jerr, "removing NATS bucket");
  return FALSE;
}

gboolean
nats_store_info (ConatBackend *backend, const char *scope, const char *name,
                 ConatStoreInfo *info, gboolean count_keys, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *bucket = conat_nats_bucket_name (scope, name, error);
  ScanCount count = { 0, 0, NULL };
  jsStreamInfo *si = NULL;

  if (bucket == NULL || offline (be, error) || !nats_stream_info (be, bucket, &si, error))
    return FALSE;
  info->ephemeral = si->Config->Storage == js_MemoryStorage;
  nats_config_read (si->Config, info);
  jsStreamInfo_Destroy (si);
  if (!count_keys)
    return TRUE;
  if (!bucket_count (be, bucket, &count, error))
    return FALSE;
  info->keys = count.keys;
  info->bytes = count.bytes;
  return TRUE;
}

gboolean
nats_set_store_ephemeral (ConatBackend *backend, const char *scope, const char *name,
                          gboolean ephemeral, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *bucket = conat_nats_bucket_name (scope, name, error);
  g_autofree char *stream = NULL;
  ScanCount count = { 0, 0, NULL };
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  gboolean is_ephemeral;
  ConatStoreInfo options = { 0 };
  guint64 last;
  natsStatus s;

  if (bucket == NULL || !nats_stream_info (be, bucket, &si, error))
    return FALSE;
  is_ephemeral = si->Config->Storage == js_MemoryStorage;
  last = si->State.LastSeq;
  nats_config_read (si->Config, &options);
  g_clear_pointer (&si, jsStreamInfo_Destroy);
  if (is_ephemeral == !!ephemeral)
    return TRUE;
  if (!bucket_count (be, bucket, &count, error))
    return FALSE;
  if (count.keys > 0)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_BUSY, "store holds keys");
      return FALSE;
    }
  stream = stream_name (bucket);
  s = js_DeleteStream (be->js, stream, NULL, &jerr);
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, jerr, "re-creating NATS bucket");
      return FALSE;
    }
  if (!nats_bucket_create (be, bucket, ephemeral, error))
    return FALSE;
  nats_bucket_skip_to (be, bucket, last + 2);
  /* The options keep over a change of kind. */
  if (strcmp (options.merge, "lww") != 0 || options.limits.max_value_size > 0
      || options.limits.max_age_ms > 0 || options.limits.max_bytes > 0
      || options.limits.max_keys > 0)
    {
      gboolean ok = nats_stream_info (be, bucket, &si, error)
                    && nats_bucket_configure (be, bucket, si, options.merge, &options.limits,
                                              error);

      g_clear_pointer (&si, jsStreamInfo_Destroy);
      if (!ok)
        return FALSE;
    }
  nats_stores_bucket_changed (be, bucket);
  return TRUE;
}

