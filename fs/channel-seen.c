/* channel-seen.c — channels a scope lists because of their traffic (DESIGN §3).
 *
 * `ls SCOPE` shows the channels this mount is subscribed to (channel.c) and
 * those it has seen messages on.  When a scope is first looked up or
 * listed, the mount watches all the scope's channels (conat_pubsub_watch,
 * one wildcard subscription on NATS) until it unmounts; each message names
 * its channel, which is remembered by its file name.  A scope remembers at
 * most CONATFS_CHANNEL_SEEN_MAX channels: when one more is seen, the one
 * whose last message is the oldest is forgotten.  A channel whose file name
 * would be too long (channel-format.h) is not shown.  Looking a seen
 * channel up subscribes to it as any lookup does.
 *
 * Locks.  fs->lock guards the table of watches; each watch's lock (a leaf)
 * guards what it has seen.  The watch is opened and closed with no lock held.
 */
#include "fs-private.h"

#include "channel-format.h"

typedef struct {
  char *scope;               /* immutable */
  ConatPubsubWatch *watch;   /* set once opened (or NULL if that failed); closed at exit */
  GMutex lock;
  /* guarded by lock: */
  GQueue order;              /* file names, the least recently seen first */
  GHashTable *seen;          /* file name -> its GList link in order */
} ScopeWatch;

static ScopeWatch *
scope_watch_new (const char *scope)
{
  ScopeWatch *sw = g_new0 (ScopeWatch, 1);

  sw->scope = g_strdup (scope);
  g_mutex_init (&sw->lock);
  g_queue_init (&sw->order);
  sw->seen = g_hash_table_new (g_str_hash, g_str_equal);
  return sw;
}

/* Closes the watch (no callback runs after) and frees SW. */
static void
scope_watch_free (ScopeWatch *sw)
{
  g_clear_pointer (&sw->watch, conat_pubsub_watch_close);
  g_hash_table_unref (sw->seen);
  g_queue_clear_full (&sw->order, g_free);
  g_mutex_clear (&sw->lock);
  g_free (sw->scope);
  g_free (sw);
}

static void
on_channel_seen (ConatPubsubWatch *watch, const char *name, const char *path, gpointer user_data)
{
  ScopeWatch *sw = user_data;
  char *file_name = conatfs_channel_file_name (name, path);
  GList *link;

  if (file_name == NULL)
    return;
  g_mutex_lock (&sw->lock);
  link = g_hash_table_lookup (sw->seen, file_name);
  if (link != NULL)
    {
      g_queue_unlink (&sw->order, link);
      g_queue_push_tail_link (&sw->order, link);
      g_free (file_name);
    }
  else
    {
      g_queue_push_tail (&sw->order, file_name);
      g_hash_table_insert (sw->seen, file_name, sw->order.tail);
    }
  if (sw->order.length > CONATFS_CHANNEL_SEEN_MAX)
    {
      char *oldest = g_queue_pop_head (&sw->order);

      g_hash_table_remove (sw->seen, oldest);
      g_free (oldest);
    }
  g_mutex_unlock (&sw->lock);
}

/* Starts watching the channels of SCOPE, unless this mount already does. */
void
conatfs_channel_watch_scope (ConatfsFs *fs, const char *scope)
{
  g_autoptr (GError) error = NULL;
  ScopeWatch *sw = NULL;
  ConatPubsubWatch *watch;

  g_mutex_lock (&fs->lock);
  if (fs->scope_watches != NULL && !g_hash_table_contains (fs->scope_watches, scope))
    {
      sw = scope_watch_new (scope);
      g_hash_table_insert (fs->scope_watches, sw->scope, sw);
    }
  g_mutex_unlock (&fs->lock);
  if (sw == NULL)
    return;
  /* Lookups racing this one find SW and go on: the watch is a hint. */
  watch = conat_pubsub_watch_open (fs->client, scope, on_channel_seen, sw, NULL, &error);
  if (watch == NULL)
    g_debug ("no channel traffic seen in %s: %s", scope, error->message);
  g_mutex_lock (&sw->lock);
  sw->watch = watch;
  g_mutex_unlock (&sw->lock);
}

/* Adds to NAMES the file names of the channels seen in SCOPE that it lacks. */
void
conatfs_channel_seen_add_names (ConatfsFs *fs, const char *scope, GPtrArray *names)
{
  g_autoptr (GHashTable) have = g_hash_table_new (g_str_hash, g_str_equal);
  ScopeWatch *sw;

  g_mutex_lock (&fs->lock);
  sw = fs->scope_watches ? g_hash_table_lookup (fs->scope_watches, scope) : NULL;
  g_mutex_unlock (&fs->lock);
  if (sw == NULL)
    return;
  for (guint i = 0; i < names->len; i++)
    g_hash_table_add (have, names->pdata[i]);
  g_mutex_lock (&sw->lock);
  for (GList *l = sw->order.head; l != NULL; l = l->next)
    if (!g_hash_table_contains (have, l->data))
      g_ptr_array_add (names, g_strdup (l->data));
  g_mutex_unlock (&sw->lock);
}

void
conatfs_channel_seen_init (ConatfsFs *fs)
{
  fs->scope_watches = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                             (GDestroyNotify) scope_watch_free);
}

/* At exit: closes every watch. */
void
conatfs_channel_watch_close_all (ConatfsFs *fs)
{
  GHashTable *watches;

  g_mutex_lock (&fs->lock);
  watches = g_steal_pointer (&fs->scope_watches);
  g_mutex_unlock (&fs->lock);
  if (watches != NULL)
    g_hash_table_unref (watches);
}
