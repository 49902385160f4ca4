/* nats-config.c — a store's options on NATS, kept in its bucket's stream
 * configuration so that every client sees them (docs/nats-mapping.md):
 *
 *   max_value_size  MaxMsgSize = limit + NATS_HEADER_RESERVE (the server
 *                   counts headers too)
 *   max_age_ms      MaxAge (at least 100 ms, a server rule), with the
 *                   duplicate window shortened to fit in it
 *   max_bytes       MaxBytes: the stream's bytes (keys, headers and values
 *                   of every message kept, delete markers included)
 *   max_keys        MaxMsgs: with history 1 and DiscardNew (as KV buckets
 *                   are made) a new key beyond it is refused, a replaced
 *                   one is not; a delete marker holds its key's place
 *   merge           Description "conat merge=<name>" (2.9 streams have no
 *                   metadata)
 *
 * An over-limit write is refused by the server: "message size exceeds
 * maximum allowed" (TOO_BIG), "maximum messages/bytes exceeded" (NO_SPACE),
 * as nats-put.c maps them.
 */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

#define MERGE_PREFIX "conat merge="
#define DUPLICATE_WINDOW_NS (G_GINT64_CONSTANT (120) * 1000 * 1000 * 1000)
#define MIN_AGE_MS 100

void
nats_config_read (const jsStreamConfig *cfg, ConatStoreInfo *info)
{
  const char *merge = cfg->Description ? strstr (cfg->Description, MERGE_PREFIX) : NULL;
  ConatMergeFunc func;
  gsize len;

  g_strlcpy (info->merge, "lww", sizeof info->merge);
  if (merge != NULL)
    {
      merge += strlen (MERGE_PREFIX);
      len = strcspn (merge, " ");
      if (len < sizeof info->merge)
        {
          memcpy (info->merge, merge, len);
          info->merge[len] = '\0';
        }
      if (!conat_merge_lookup (info->merge, &func))
        g_strlcpy (info->merge, "lww", sizeof info->merge);
    }
  info->limits.max_value_size = cfg->MaxMsgSize > NATS_HEADER_RESERVE
                                  ? cfg->MaxMsgSize - NATS_HEADER_RESERVE : 0;
  info->limits.max_age_ms = cfg->MaxAge > 0 ? cfg->MaxAge / 1000000 : 0;
  info->limits.max_bytes = cfg->MaxBytes > 0 ? cfg->MaxBytes : 0;
  info->limits.max_keys = cfg->MaxMsgs > 0 ? cfg->MaxMsgs : 0;
}

static gboolean
check_limits (const ConatStoreLimits *l, GError **error)
{
  if (l->max_value_size > G_MAXINT32 - NATS_HEADER_RESERVE)
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_ARGUMENT,
                 "a value limit over %d bytes is not supported by NATS",
                 G_MAXINT32 - NATS_HEADER_RESERVE);
  else if (l->max_age_ms > 0 && l->max_age_ms < MIN_AGE_MS)
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_ARGUMENT,
                 "NATS needs a maximum age of at least %d ms", MIN_AGE_MS);
  else if (l->max_age_ms > G_MAXINT64 / 1000000)
    g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_ARGUMENT, "maximum age too large");
  else
    return TRUE;
  return FALSE;
}

/* Writes MERGE (NULL: unchanged) and LIMITS (NULL: unchanged) into CFG;
 * *DESCRIPTION (owned) is what cfg->Description points to afterwards. */
static void
config_apply (jsStreamConfig *cfg, const char *merge, const ConatStoreLimits *l,
              char **description)
{
  if (merge != NULL)
    {
      *description = g_strconcat (MERGE_PREFIX, merge, NULL);
      cfg->Description = *description;
    }
  if (l == NULL)
    return;
  cfg->MaxMsgSize = l->max_value_size > 0 ? (int32_t) (l->max_value_size + NATS_HEADER_RESERVE)
                                          : -1;
  cfg->MaxAge = l->max_age_ms * 1000000;
  cfg->Duplicates = l->max_age_ms > 0 ? MIN (DUPLICATE_WINDOW_NS, cfg->MaxAge)
                                      : DUPLICATE_WINDOW_NS;
  cfg->MaxBytes = l->max_bytes > 0 ? l->max_bytes : -1;
  cfg->MaxMsgs = l->max_keys > 0 ? l->max_keys : -1;
  cfg->MaxMsgsPerSubject = 1;
  cfg->Discard = js_DiscardNew;
}

/* Stores the options in the stream of BUCKET, whose info is SI. */
gboolean
nats_bucket_configure (NatsBackend *be, const char *bucket, jsStreamInfo *si, const char *merge,
                       const ConatStoreLimits *limits, GError **error)
{
  const char *old_description = si->Config->Description;
  g_autofree char *description = NULL;
  jsStreamInfo *updated = NULL;
  jsErrCode jerr = 0;
  natsStatus s;

  if (limits != NULL && !check_limits (limits, error))
    return FALSE;
  config_apply (si->Config, merge, limits, &description);
  s = js_UpdateStream (&updated, be->js, si->Config, NULL, &jerr);
  si->Config->Description = old_description;  /* owned by SI */
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, jerr, "changing the options of a NATS bucket");
      return FALSE;
    }
  nats_stores_note_config (be, bucket, updated);
  jsStreamInfo_Destroy (updated);
  return TRUE;
}

gboolean
nats_set_store_config (ConatBackend *backend, const char *scope, const char *name,
                       const char *merge, const ConatStoreLimits *limits, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *bucket = conat_nats_bucket_name (scope, name, error);
  jsStreamInfo *si = NULL;
  gboolean ok;

  if (bucket == NULL || !nats_stream_info (be, bucket, &si, error))
    return FALSE;
  ok = nats_bucket_configure (be, bucket, si, merge, limits, error);
  jsStreamInfo_Destroy (si);
  return ok;
}
