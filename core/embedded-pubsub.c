/* embedded-pubsub.c — PubSub of the embedded backend: subscriptions and
 * scope watches are receivers in the channels and watches tables (under
 * sub_lock); publish queues the message for the dispatcher like a batch of
 * changes.  Nothing is stored. */
#define G_LOG_DOMAIN "conat"

#include "embedded-private.h"

#include <string.h>

#define MAX_MESSAGE_SIZE (1024 * 1024)

static void
sub_finalize (Receiver *r)
{
  ConatBackendSub *sub = (ConatBackendSub *) r;

  g_bytes_unref (sub->key);
  g_free (sub);
}

/* "scope NUL [/path] NUL name": a NULL path and "" differ. */
static GBytes *
channel_key (const char *scope, const char *path, const char *name)
{
  g_autofree char *p = path != NULL ? g_strconcat ("/", path, NULL) : g_strdup ("");

  return embedded_names_key (scope, p, name);
}

static GBytes *
scope_key (const char *scope)
{
  return g_bytes_new (scope, strlen (scope) + 1);
}

/* A new receiver in TABLE under KEY (taken), for a callback set by the caller. */
static ConatBackendSub *
sub_add (EmbeddedBackend *b, GHashTable *table, GBytes *key, gpointer user_data,
         ConatBackendMessageCallback callback, ConatBackendChannelCallback seen)
{
  ConatBackendSub *sub = g_new0 (ConatBackendSub, 1);
  GPtrArray *subs;

  sub->r = (Receiver) { 1, FALSE, TRUE, user_data, sub_finalize };
  sub->backend = b;
  sub->table = table;
  sub->key = key;
  sub->callback = callback;
  sub->seen = seen;
  g_mutex_lock (&b->sub_lock);
  subs = g_hash_table_lookup (table, key);
  if (subs == NULL)
    g_hash_table_insert (table, g_bytes_ref (key), (subs = g_ptr_array_new ()));
  g_ptr_array_add (subs, sub);
  g_mutex_unlock (&b->sub_lock);
  return sub;
}

ConatBackendSub *
embedded_subscribe (ConatBackend *backend, const char *scope, const char *path, const char *name,
                    ConatBackendMessageCallback callback, gpointer user_data, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;

  return sub_add (b, b->channels, channel_key (scope, path, name), user_data, callback, NULL);
}

ConatBackendSub *
embedded_watch_scope (ConatBackend *backend, const char *scope,
                      ConatBackendChannelCallback callback, gpointer user_data, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;

  return sub_add (b, b->watches, scope_key (scope), user_data, NULL, callback);
}

void
embedded_unsubscribe (ConatBackendSub *sub)
{
  EmbeddedBackend *b = sub->backend;
  GPtrArray *subs;

  embedded_receiver_close (b, &sub->r);
  g_mutex_lock (&b->sub_lock);
  subs = g_hash_table_lookup (sub->table, sub->key);
  g_ptr_array_remove (subs, sub);
  if (subs->len == 0)
    g_hash_table_remove (sub->table, sub->key);
  g_mutex_unlock (&b->sub_lock);
  embedded_receiver_unref (&sub->r);
}

gboolean
embedded_publish (ConatBackend *backend, const char *scope, const char *path, const char *name,
                  GBytes *message, GError **error)
{
  EmbeddedBackend *b = (EmbeddedBackend *) backend;
  g_autoptr(GBytes) channel = channel_key (scope, path, name);
  g_autoptr(GBytes) scope_watched = scope_key (scope);
  GPtrArray *subs;

  if (g_bytes_get_size (message) > MAX_MESSAGE_SIZE)
    return embedded_fail (error, CONAT_ERROR_TOO_BIG, "message of %" G_GSIZE_FORMAT
                          " bytes is over the limit of %d bytes", g_bytes_get_size (message),
                          MAX_MESSAGE_SIZE);
  g_mutex_lock (&b->sub_lock);
  if ((subs = g_hash_table_lookup (b->channels, channel)) != NULL)
    embedded_event_push (b, subs, NULL, message);
  if ((subs = g_hash_table_lookup (b->watches, scope_watched)) != NULL)
    embedded_event_push_seen (b, subs, name, path);
  g_mutex_unlock (&b->sub_lock);
  return TRUE;
}

gsize
embedded_max_message_size (ConatBackend *backend)
{
  return MAX_MESSAGE_SIZE;
}
