/* dkv-load.c — the load of a store in conat_dkv_open: the backend's progress
 * reports, the log lines of a big or slow load, and the load status that
 * conat_client_list_loads and conat_dkv_get_load report. */
#define G_LOG_DOMAIN "conat"

#include "dkv-private.h"

#include <string.h>

#define LOAD_LOG_AFTER_US (1 * G_USEC_PER_SEC)  /* a slow load is logged from then on */
#define LOAD_LOG_EVERY_US (2 * G_USEC_PER_SEC)

/* "scope/name" for a log line, escaped. */
char *
dkv_log_name (ConatDkv *kv)
{
  g_autofree char *scope = g_strescape (kv->scope, NULL);
  g_autofree char *name = g_strescape (kv->name, NULL);

  return g_strdup_printf ("%s/%s", scope, name);
}

/* The backend's progress: logs a big or slow load, at a bounded rate. */
void
dkv_on_progress (guint64 keys, guint64 total, gpointer user_data)
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

void
dkv_load_begin (ConatDkv *kv)
{
  g_mutex_lock (&kv->client->lock);
  kv->client->loads = g_list_prepend (kv->client->loads, kv);
  g_mutex_unlock (&kv->client->lock);
}

/* The open is over (OK: loaded); the end of a logged load is logged. */
void
dkv_load_end (ConatDkv *kv, gboolean ok)
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
