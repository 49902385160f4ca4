/* client.c — a libconat client: one backend, its namespace and the saver
 * thread that every autosaving store of the client shares. */
#define G_LOG_DOMAIN "conat"

#include "client-private.h"

#include <string.h>

G_DEFINE_QUARK (conat-error-quark, conat_error)

static gpointer
saver_thread (gpointer data)
{
  conat_dkv_saver_run (data);
  return NULL;
}

static ConatClient *
client_new (ConatBackend *backend)
{
  ConatClient *client = g_new0 (ConatClient, 1);

  client->refs = 1;
  client->backend = backend;
  g_mutex_init (&client->lock);
  g_cond_init (&client->saver_cond);
  g_queue_init (&client->saver_queue);
  client->cache = g_hash_table_new (g_str_hash, g_str_equal);  /* keys owned by the ConatDkv */
  client->saver = g_thread_new ("conat-saver", saver_thread, client);
  return client;
}

ConatClient *
conat_client_new_embedded (const char *data_dir, GError **error)
{
  ConatBackend *backend = conat_backend_embedded_new (data_dir, error);

  return backend ? client_new (backend) : NULL;
}

ConatClient *
conat_client_new_nats (const ConatNatsOptions *opts, GError **error)
{
  ConatBackend *backend = conat_backend_nats_new (opts, error);

  return backend ? client_new (backend) : NULL;
}

void
conat_client_set_quick_callbacks (ConatClient *client, gboolean quick)
{
  g_atomic_int_set (&client->backend->quick_callbacks, quick);
}

ConatClient *
conat_client_ref (ConatClient *client)
{
  g_atomic_int_inc (&client->refs);
  return client;
}

/* Stores hold no reference on their client: close every store before the
 * last unref. */
void
conat_client_unref (ConatClient *client)
{
  if (client == NULL || !g_atomic_int_dec_and_test (&client->refs))
    return;

  g_mutex_lock (&client->lock);
  client->saver_stop = TRUE;
  g_cond_broadcast (&client->saver_cond);
  g_mutex_unlock (&client->lock);
  g_thread_join (client->saver);

  if (client->open_stores != NULL)
    g_warning ("conat: client freed with %u stores open", g_list_length (client->open_stores));
  client->backend->klass->free (client->backend);
  g_hash_table_unref (client->cache);
  g_cond_clear (&client->saver_cond);
  g_mutex_clear (&client->lock);
  g_free (client);
}

const char *
conat_client_backend_name (ConatClient *client)
{
  return client->backend->klass->name;
}

char *
conat_client_cache_key (const char *scope, const char *name, gsize *len)
{
  char *key = g_strdup_printf ("%zu:%s/%s", strlen (scope), scope, name);

  if (len)
    *len = strlen (key);
  return key;
}

/* ------------------------------------------------------------ namespace */

static gboolean
check_name (const char *what, const char *name, gboolean allow_empty, GError **error)
{
  if (name == NULL || (!allow_empty && name[0] == '\0'))
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME, "%s name must not be empty", what);
      return FALSE;
    }
  return TRUE;
}

GPtrArray *
conat_client_list_scopes (ConatClient *client, GError **error)
{
  return client->backend->klass->list_scopes (client->backend, error);
}

gboolean
conat_client_create_scope (ConatClient *client, const char *scope, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error))
    return FALSE;
  return client->backend->klass->create_scope (client->backend, scope, error);
}

gboolean
conat_client_remove_scope (ConatClient *client, const char *scope, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error))
    return FALSE;
  return client->backend->klass->remove_scope (client->backend, scope, error);
}

gboolean
conat_client_has_scope (ConatClient *client, const char *scope, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error))
    return FALSE;
  return client->backend->klass->has_scope (client->backend, scope, error);
}

GPtrArray *
conat_client_list_stores (ConatClient *client, const char *scope, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error))
    return NULL;
  return client->backend->klass->list_stores (client->backend, scope, error);
}

gboolean
conat_client_create_store (ConatClient *client, const char *scope, const char *name,
                           gboolean ephemeral, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error) || !check_name ("store", name, FALSE, error))
    return FALSE;
  return client->backend->klass->create_store (client->backend, scope, name, ephemeral, error);
}

gboolean
conat_client_remove_store (ConatClient *client, const char *scope, const char *name,
                           GError **error)
{
  if (!check_name ("scope", scope, FALSE, error) || !check_name ("store", name, FALSE, error))
    return FALSE;
  return client->backend->klass->remove_store (client->backend, scope, name, error);
}

gboolean
conat_client_store_info (ConatClient *client, const char *scope, const char *name,
                         ConatStoreInfo *info, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error) || !check_name ("store", name, FALSE, error))
    return FALSE;
  return client->backend->klass->store_info (client->backend, scope, name, info, TRUE, error);
}

gboolean
conat_client_store_options (ConatClient *client, const char *scope, const char *name,
                            ConatStoreInfo *info, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error) || !check_name ("store", name, FALSE, error))
    return FALSE;
  memset (info, 0, sizeof *info);
  return client->backend->klass->store_info (client->backend, scope, name, info, FALSE, error);
}

gboolean
conat_client_set_store_ephemeral (ConatClient *client, const char *scope, const char *name,
                                  gboolean ephemeral, GError **error)
{
  if (!check_name ("scope", scope, FALSE, error) || !check_name ("store", name, FALSE, error))
    return FALSE;
  return client->backend->klass->set_store_ephemeral (client->backend, scope, name, ephemeral,
                                                      error);
}

static gboolean
set_store_config (ConatClient *client, const char *scope, const char *name, const char *merge,
                  const ConatStoreLimits *limits, GError **error)
{
  ConatBackend *backend = client->backend;

  if (!check_name ("scope", scope, FALSE, error) || !check_name ("store", name, FALSE, error))
    return FALSE;
  if (backend->klass->set_store_config == NULL)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_FAILED,
                   "the %s backend cannot store options", backend->klass->name);
      return FALSE;
    }
  return backend->klass->set_store_config (backend, scope, name, merge, limits, error);
}

gboolean
conat_client_set_store_merge (ConatClient *client, const char *scope, const char *name,
                              const char *merge, GError **error)
{
  ConatMergeFunc func;

  if (merge == NULL || !conat_merge_lookup (merge, &func))
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_ARGUMENT,
                   "unknown merge strategy '%s' (lww, lines or json)", merge ? merge : "");
      return FALSE;
    }
  return set_store_config (client, scope, name, merge, NULL, error);
}

gboolean
conat_client_set_store_limits (ConatClient *client, const char *scope, const char *name,
                               const ConatStoreLimits *limits, GError **error)
{
  if (limits == NULL || limits->max_value_size < 0 || limits->max_age_ms < 0
      || limits->max_bytes < 0 || limits->max_keys < 0)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_ARGUMENT,
                   "store limits must be 0 (no limit) or positive");
      return FALSE;
    }
  return set_store_config (client, scope, name, NULL, limits, error);
}

/* --------------------------------------------------------------- status */

void
conat_client_get_status (ConatClient *client, ConatClientStatus *status)
{
  memset (status, 0, sizeof *status);
  status->backend = client->backend->klass->name;
  client->backend->klass->get_status (client->backend, status);

  g_mutex_lock (&client->lock);
  for (GList *l = client->open_stores; l != NULL; l = l->next)
    {
      status->stores_open++;
      status->pending += conat_dkv_pending_count (l->data);
    }
  g_mutex_unlock (&client->lock);
}

void
conat_client_status_clear (ConatClientStatus *status)
{
  g_clear_pointer (&status->servers, g_free);
  g_clear_pointer (&status->last_error, g_free);
}
