/* hello-dkv.c — libconat in one page: open a store, set a key, watch the
 * change come back from the backend, and publish on a channel.
 *
 *   hello-dkv [DATA_DIR]         embedded backend (default data directory)
 *   hello-dkv --server URL       NATS backend
 *
 * Prints what it sees; exits 0 when both the change and the message arrived.
 */
#include <conat.h>

#include <string.h>

typedef struct {
  GMutex lock;
  GCond cond;
  gboolean changed, messaged;
} Seen;

static void
on_change (ConatDkv *kv, const char *key, GBytes *value, GBytes *prev, gboolean own,
           gpointer data)
{
  Seen *seen = data;

  g_print ("change: %s = %.*s (%s)\n", key, value ? (int) g_bytes_get_size (value) : 6,
           value ? (const char *) g_bytes_get_data (value, NULL) : "<gone>",
           own ? "our own echo" : "from elsewhere");
  g_mutex_lock (&seen->lock);
  seen->changed = TRUE;
  g_cond_signal (&seen->cond);
  g_mutex_unlock (&seen->lock);
}

static void
on_message (ConatPubsub *ps, GBytes *message, gpointer data)
{
  Seen *seen = data;

  g_print ("message: %.*s\n", (int) g_bytes_get_size (message),
           (const char *) g_bytes_get_data (message, NULL));
  g_mutex_lock (&seen->lock);
  seen->messaged = TRUE;
  g_cond_signal (&seen->cond);
  g_mutex_unlock (&seen->lock);
}

static gboolean
wait_both (Seen *seen)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  gboolean ok = TRUE;

  g_mutex_lock (&seen->lock);
  while (ok && !(seen->changed && seen->messaged))
    ok = g_cond_wait_until (&seen->cond, &seen->lock, deadline);
  ok = seen->changed && seen->messaged;
  g_mutex_unlock (&seen->lock);
  return ok;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (ConatClient) client = NULL;
  ConatDkvOptions opts = { .scope = "project-hello", .name = "settings" };
  g_autoptr (GBytes) value = g_bytes_new_static ("dark", 4);
  g_autoptr (GBytes) hello = g_bytes_new_static ("{\"hello\":1}", 11);
  Seen seen = { 0 };
  ConatDkv *kv;
  ConatPubsub *ps;
  gboolean ok;

  if (argc == 3 && strcmp (argv[1], "--server") == 0)
    client = conat_client_new_nats (&(ConatNatsOptions) { .servers = argv[2] }, &error);
  else
    client = conat_client_new_embedded (argc > 1 ? argv[1] : NULL, &error);
  if (client == NULL)
    {
      g_printerr ("hello-dkv: %s\n", error->message);
      return 1;
    }

  kv = conat_dkv_open (client, &opts, &error);
  ps = kv ? conat_pubsub_open (client, "project-hello", NULL, "chat", on_message, &seen, NULL,
                               &error) : NULL;
  if (ps == NULL)
    {
      g_printerr ("hello-dkv: %s\n", error->message);
      conat_dkv_close (kv);
      return 1;
    }
  conat_dkv_watch (kv, on_change, &seen, NULL);

  ok = conat_dkv_set (kv, "theme", value, &error)       /* local, immediate */
       && conat_dkv_save (kv, 10000, &error)            /* confirmed by the backend */
       && conat_pubsub_publish (ps, hello, &error);     /* fire and forget */
  if (ok)
    g_print ("theme is saved at revision %" G_GUINT64_FORMAT "\n",
             conat_dkv_revision (kv, "theme"));
  else
    g_printerr ("hello-dkv: %s\n", error->message);
  ok = ok && wait_both (&seen);

  conat_pubsub_close (ps);
  conat_dkv_close (kv);
  return ok ? 0 : 1;
}
