/* test-pubsub.c — conat PubSub on the embedded backend: delivery,
 * self-echo, no history, no cross-talk, watches of a scope's channels. */
#include "conat.h"

#include <string.h>
#include <glib/gstdio.h>

#define DEADLINE_US (10 * G_USEC_PER_SEC)

typedef struct {
  GMutex lock;
  GPtrArray *got;  /* char* messages */
} Inbox;

static void
inbox_init (Inbox *in)
{
  g_mutex_init (&in->lock);
  in->got = g_ptr_array_new_with_free_func (g_free);
}

static void
inbox_clear (Inbox *in)
{
  g_ptr_array_unref (in->got);
  g_mutex_clear (&in->lock);
}

static void
on_message (ConatPubsub *ps, GBytes *message, gpointer data)
{
  Inbox *in = data;

  g_mutex_lock (&in->lock);
  g_ptr_array_add (in->got, g_strndup (g_bytes_get_data (message, NULL),
                                       g_bytes_get_size (message)));
  g_mutex_unlock (&in->lock);
}

static guint
inbox_len (Inbox *in)
{
  guint n;

  g_mutex_lock (&in->lock);
  n = in->got->len;
  g_mutex_unlock (&in->lock);
  return n;
}

static gboolean
eventually_len (Inbox *in, guint n)
{
  gint64 deadline = g_get_monotonic_time () + DEADLINE_US;

  while (inbox_len (in) < n && g_get_monotonic_time () < deadline)
    g_usleep (1000);
  return inbox_len (in) >= n;
}

static void
publish_str (ConatPubsub *ps, const char *s)
{
  g_autoptr (GBytes) msg = g_bytes_new (s, strlen (s));
  g_autoptr (GError) error = NULL;

  g_assert_true (conat_pubsub_publish (ps, msg, &error));
  g_assert_no_error (error);
}

static ConatPubsub *
open_channel (ConatClient *client, const char *path, const char *name, Inbox *in)
{
  g_autoptr (GError) error = NULL;
  ConatPubsub *ps = conat_pubsub_open (client, "project-test", path, name, on_message, in, NULL,
                                       &error);

  g_assert_no_error (error);
  g_assert_nonnull (ps);
  return ps;
}

static void
remove_tree (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_remove (path);
    }
  g_rmdir (dir);
}

static void
test_pubsub (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("conat-pubsub-XXXXXX", &error);
  g_autoptr (ConatClient) client = conat_client_new_embedded (dir, &error);
  Inbox pub_in, sub_in, late_in, other_in;
  ConatPubsub *pub, *sub, *late, *other;

  g_assert_no_error (error);
  inbox_init (&pub_in), inbox_init (&sub_in), inbox_init (&late_in), inbox_init (&other_in);
  pub = open_channel (client, NULL, "cursors", &pub_in);
  sub = open_channel (client, NULL, "cursors", &sub_in);
  other = open_channel (client, "doc/a.tex", "cursors", &other_in);

  publish_str (pub, "hi");
  g_assert_true (eventually_len (&sub_in, 1));   /* subscriber gets it */
  g_assert_true (eventually_len (&pub_in, 1));   /* publisher gets its own */
  g_assert_cmpstr (sub_in.got->pdata[0], ==, "hi");
  g_assert_cmpstr (pub_in.got->pdata[0], ==, "hi");

  late = open_channel (client, NULL, "cursors", &late_in);  /* no history */
  publish_str (pub, "second");
  g_assert_true (eventually_len (&late_in, 1));
  g_assert_true (eventually_len (&sub_in, 2));
  g_assert_cmpstr (late_in.got->pdata[0], ==, "second");
  g_assert_cmpuint (inbox_len (&late_in), ==, 1);

  publish_str (other, "path-scoped");
  g_assert_true (eventually_len (&other_in, 1));
  g_assert_true (eventually_len (&pub_in, 2));
  /* the path-scoped channel and the plain one do not cross */
  g_assert_cmpuint (inbox_len (&sub_in), ==, 2);
  g_assert_cmpuint (inbox_len (&other_in), ==, 1);
  g_assert_cmpstr (other_in.got->pdata[0], ==, "path-scoped");

  conat_pubsub_close (pub), conat_pubsub_close (sub);
  conat_pubsub_close (late), conat_pubsub_close (other);
  inbox_clear (&pub_in), inbox_clear (&sub_in), inbox_clear (&late_in), inbox_clear (&other_in);
  g_clear_pointer (&client, conat_client_unref);
  remove_tree (dir);
}

static void
test_too_big (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("conat-pubsub-XXXXXX", &error);
  g_autoptr (ConatClient) client = conat_client_new_embedded (dir, &error);
  Inbox in;
  ConatPubsub *ps;
  g_autoptr (GBytes) big = NULL;

  inbox_init (&in);
  ps = open_channel (client, NULL, "big", &in);
  big = g_bytes_new_take (g_malloc0 (conat_pubsub_max_message_size (ps) + 1),
                          conat_pubsub_max_message_size (ps) + 1);
  g_assert_false (conat_pubsub_publish (ps, big, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  publish_str (ps, "still works");
  g_assert_true (eventually_len (&in, 1));
  conat_pubsub_close (ps);
  inbox_clear (&in);
  g_clear_pointer (&client, conat_client_unref);
  remove_tree (dir);
}

/* ------------------------------------------------------ scope watches */

/* A watch's reports go to an Inbox: "NAME" or "NAME\nPATH" per message. */
static void
on_seen (ConatPubsubWatch *watch, const char *name, const char *path, gpointer data)
{
  Inbox *in = data;

  g_mutex_lock (&in->lock);
  g_ptr_array_add (in->got, path ? g_strconcat (name, "\n", path, NULL) : g_strdup (name));
  g_mutex_unlock (&in->lock);
}

static gboolean seen_destroyed;

static void
on_seen_destroy (gpointer data)
{
  seen_destroyed = TRUE;
}

static void
test_watch_scope (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("conat-pubsub-XXXXXX", &error);
  g_autoptr (ConatClient) client = conat_client_new_embedded (dir, &error);
  char odd[256];
  Inbox in, seen;
  ConatPubsubWatch *watch;
  ConatPubsub *chat, *cursor, *other, *weird;

  g_assert_no_error (error);
  for (int i = 1; i < 256; i++)  /* every byte but NUL */
    odd[i - 1] = (char) i;
  odd[255] = '\0';
  inbox_init (&in), inbox_init (&seen);
  g_assert_null (conat_pubsub_watch_open (client, "", on_seen, &seen, NULL, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME);
  g_clear_error (&error);

  watch = conat_pubsub_watch_open (client, "project-test", on_seen, &seen, on_seen_destroy,
                                   &error);
  g_assert_no_error (error);
  chat = open_channel (client, NULL, "chat", &in);
  cursor = open_channel (client, "doc/a.tex", "cursors", &in);
  weird = open_channel (client, odd, odd, &in);
  other = conat_pubsub_open (client, "other-scope", NULL, "chat", on_message, &in, NULL, &error);
  g_assert_no_error (error);

  publish_str (other, "not in the watched scope");
  publish_str (chat, "one");
  publish_str (cursor, "two");
  publish_str (weird, "three");
  publish_str (chat, "four");
  g_assert_true (eventually_len (&seen, 4));
  g_assert_true (eventually_len (&in, 5));
  g_assert_cmpuint (inbox_len (&seen), ==, 4);
  g_assert_cmpstr (seen.got->pdata[0], ==, "chat");
  g_assert_cmpstr (seen.got->pdata[1], ==, "cursors\ndoc/a.tex");
  {
    g_autofree char *both = g_strconcat (odd, "\n", odd, NULL);

    g_assert_cmpstr (seen.got->pdata[2], ==, both);
  }
  g_assert_cmpstr (seen.got->pdata[3], ==, "chat");

  /* Closed: no callback after, and the destroy notify ran. */
  conat_pubsub_watch_close (watch);
  g_assert_true (seen_destroyed);
  publish_str (chat, "five");
  g_assert_true (eventually_len (&in, 6));
  g_assert_cmpuint (inbox_len (&seen), ==, 4);

  conat_pubsub_close (chat), conat_pubsub_close (cursor);
  conat_pubsub_close (weird), conat_pubsub_close (other);
  inbox_clear (&in), inbox_clear (&seen);
  g_clear_pointer (&client, conat_client_unref);
  remove_tree (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/pubsub/deliver-echo-history-crosstalk", test_pubsub);
  g_test_add_func ("/pubsub/too-big", test_too_big);
  g_test_add_func ("/pubsub/watch-scope", test_watch_scope);
  return g_test_run ();
}
