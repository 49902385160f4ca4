/* pubsub.c — conat PubSub: fire and forget, self-echo, no history. */
#include "client-private.h"

struct _ConatPubsub {
  ConatClient *client;    /* borrowed: close channels before the client */
  char *scope, *path, *name;
  ConatMessageFunc func;
  gpointer user_data;
  GDestroyNotify destroy;
  ConatBackendSub *sub;   /* owned */
};

static void
on_message (GBytes *message, gpointer user_data)
{
  ConatPubsub *ps = user_data;

  ps->func (ps, message, ps->user_data);
}

ConatPubsub *
conat_pubsub_open (ConatClient *client, const char *scope, const char *path, const char *name,
                   ConatMessageFunc func, gpointer user_data, GDestroyNotify destroy,
                   GError **error)
{
  ConatBackend *backend = client->backend;
  ConatPubsub *ps;

  if (scope == NULL || *scope == '\0' || name == NULL || *name == '\0')
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME,
                   "a channel needs a scope and a name");
      return NULL;
    }
  ps = g_new0 (ConatPubsub, 1);
  ps->client = client;
  ps->scope = g_strdup (scope);
  ps->path = g_strdup (path);
  ps->name = g_strdup (name);
  ps->func = func;
  ps->user_data = user_data;
  ps->destroy = destroy;
  ps->sub = backend->klass->subscribe (backend, scope, path, name, on_message, ps, error);
  if (ps->sub == NULL)
    {
      ps->destroy = NULL;
      conat_pubsub_close (ps);
      return NULL;
    }
  return ps;
}

static gboolean
check_size (ConatBackend *backend, GBytes *message, GError **error)
{
  gsize max = backend->klass->max_message_size (backend);

  if (g_bytes_get_size (message) <= max)
    return TRUE;
  g_set_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG,
               "message of %zu bytes is over the limit of %zu bytes", g_bytes_get_size (message),
               max);
  return FALSE;
}

gboolean
conat_pubsub_publish (ConatPubsub *ps, GBytes *message, GError **error)
{
  ConatBackend *backend = ps->client->backend;

  if (!check_size (backend, message, error))
    return FALSE;
  return backend->klass->publish (backend, ps->scope, ps->path, ps->name, message, error);
}

gboolean
conat_pubsub_publish_many (ConatPubsub *ps, GBytes *const *messages, guint n, GError **error)
{
  ConatBackend *backend = ps->client->backend;

  for (guint i = 0; i < n; i++)
    if (!check_size (backend, messages[i], error))
      return FALSE;
  if (n == 1 || backend->klass->publish_many == NULL)
    {
      for (guint i = 0; i < n; i++)
        if (!backend->klass->publish (backend, ps->scope, ps->path, ps->name, messages[i], error))
          return FALSE;
      return TRUE;
    }
  return backend->klass->publish_many (backend, ps->scope, ps->path, ps->name, messages, n,
                                       error);
}

gsize
conat_pubsub_max_message_size (ConatPubsub *ps)
{
  ConatBackend *backend = ps->client->backend;

  return backend->klass->max_message_size (backend);
}

void
conat_pubsub_close (ConatPubsub *ps)
{
  if (ps == NULL)
    return;
  if (ps->sub)
    ps->client->backend->klass->unsubscribe (ps->sub);
  if (ps->destroy)
    ps->destroy (ps->user_data);
  g_free (ps->scope);
  g_free (ps->path);
  g_free (ps->name);
  g_free (ps);
}

/* ------------------------------------------------------- scope watches */

struct _ConatPubsubWatch {
  ConatClient *client;    /* borrowed: close watches before the client */
  ConatChannelSeenFunc func;
  gpointer user_data;
  GDestroyNotify destroy;
  ConatBackendSub *sub;   /* owned */
};

static void
on_channel_seen (const char *name, const char *path, gpointer user_data)
{
  ConatPubsubWatch *watch = user_data;

  if (*name != '\0')
    watch->func (watch, name, path, watch->user_data);
}

ConatPubsubWatch *
conat_pubsub_watch_open (ConatClient *client, const char *scope, ConatChannelSeenFunc func,
                         gpointer user_data, GDestroyNotify destroy, GError **error)
{
  ConatBackend *backend = client->backend;
  ConatPubsubWatch *watch;

  if (scope == NULL || *scope == '\0')
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME, "a watch needs a scope");
      return NULL;
    }
  watch = g_new0 (ConatPubsubWatch, 1);
  watch->client = client;
  watch->func = func;
  watch->user_data = user_data;
  watch->destroy = destroy;
  watch->sub = backend->klass->watch_scope (backend, scope, on_channel_seen, watch, error);
  if (watch->sub == NULL)
    {
      watch->destroy = NULL;
      conat_pubsub_watch_close (watch);
      return NULL;
    }
  return watch;
}

void
conat_pubsub_watch_close (ConatPubsubWatch *watch)
{
  if (watch == NULL)
    return;
  if (watch->sub)
    watch->client->backend->klass->unsubscribe (watch->sub);
  if (watch->destroy)
    watch->destroy (watch->user_data);
  g_free (watch);
}
