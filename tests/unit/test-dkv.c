/* test-dkv.c — the conat DKV contract on the embedded backend. */
#include "conat.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>

#define DEADLINE_US (10 * G_USEC_PER_SEC)

typedef struct {
  char *dir;
  ConatClient *client;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->dir = g_dir_make_tmp ("conat-dkv-XXXXXX", &error);
  g_assert_no_error (error);
  f->client = conat_client_new_embedded (f->dir, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->client);
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
fixture_teardown (Fixture *f, gconstpointer data)
{
  conat_client_unref (f->client);
  remove_tree (f->dir);
  g_free (f->dir);
}

static ConatDkv *
open_store (Fixture *f, const char *name, gboolean no_cache, gboolean no_autosave)
{
  g_autoptr (GError) error = NULL;
  ConatDkvOptions opts = {
    .scope = "project-test", .name = name, .no_cache = no_cache, .no_autosave = no_autosave,
  };
  ConatDkv *kv = conat_dkv_open (f->client, &opts, &error);

  g_assert_no_error (error);
  g_assert_nonnull (kv);
  return kv;
}

static GBytes *
str_bytes (const char *s)
{
  return g_bytes_new (s, strlen (s));
}

static void
set_str (ConatDkv *kv, const char *key, const char *value)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bytes = value ? str_bytes (value) : NULL;

  g_assert_true (conat_dkv_set (kv, key, bytes, &error));
  g_assert_no_error (error);
}

/* The value of KEY as a string, or NULL. */
static char *
get_str (ConatDkv *kv, const char *key)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) value = conat_dkv_get (kv, key, &error);
  gsize len;
  const char *data;

  g_assert_no_error (error);
  if (value == NULL)
    return NULL;
  data = g_bytes_get_data (value, &len);
  return g_strndup (data, len);
}

static void
save (ConatDkv *kv)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (conat_dkv_save (kv, 10000, &error));
  g_assert_no_error (error);
}

/* Polls COND until it holds or the deadline passes; its value. */
#define EVENTUALLY(cond)                                                   \
  ({                                                                       \
    gint64 deadline_ = g_get_monotonic_time () + DEADLINE_US;              \
    gboolean ok_;                                                          \
    while (!(ok_ = (cond)) && g_get_monotonic_time () < deadline_)         \
      g_usleep (1000);                                                     \
    ok_;                                                                   \
  })

static gboolean
reads_str (ConatDkv *kv, const char *key, const char *value)
{
  g_autofree char *now = get_str (kv, key);

  return g_strcmp0 (now, value) == 0;
}

/* Polls until KEY reads VALUE (NULL: absent) or the deadline passes. */
static gboolean
eventually_str (ConatDkv *kv, const char *key, const char *value)
{
  return EVENTUALLY (reads_str (kv, key, value));
}

static gboolean
eventually_length (ConatDkv *kv, gssize length)
{
  return EVENTUALLY (conat_dkv_length (kv, NULL) == length);
}

/* 1 */
static void
test_basics (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv = open_store (f, "basics", FALSE, FALSE);
  g_autoptr (GHashTable) all = NULL;
  g_autofree char *value = NULL;

  g_assert_false (conat_dkv_has (kv, "foo", NULL));
  set_str (kv, "foo", "10");
  g_assert_true (conat_dkv_has (kv, "foo", NULL));
  value = get_str (kv, "foo");
  g_assert_cmpstr (value, ==, "10");
  all = conat_dkv_get_all (kv, NULL);
  g_assert_cmpuint (g_hash_table_size (all), ==, 1);
  g_assert_true (g_hash_table_contains (all, "foo"));

  g_assert_true (conat_dkv_delete (kv, "foo", NULL));
  g_assert_false (conat_dkv_has (kv, "foo", NULL));
  g_assert_cmpint (conat_dkv_length (kv, NULL), ==, 0);
}

/* 2 */
static void
test_late_joiner (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv1 = open_store (f, "late", TRUE, FALSE);
  g_autoptr (ConatDkv) kv2 = NULL;
  g_autofree char *co = NULL;

  set_str (kv1, "co", "nat");
  save (kv1);
  kv2 = open_store (f, "late", TRUE, FALSE);
  co = get_str (kv2, "co");
  g_assert_cmpstr (co, ==, "nat");

  set_str (kv1, "x", "1974");
  save (kv1);
  g_assert_true (eventually_str (kv2, "x", "1974"));
}

/* 3 */
static void
test_clear (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv1 = open_store (f, "clear", TRUE, FALSE);
  g_autoptr (ConatDkv) kv2 = open_store (f, "clear", TRUE, TRUE);

  set_str (kv1, "foo", "1");
  save (kv1);
  g_assert_true (eventually_str (kv2, "foo", "1"));
  set_str (kv2, "bar", "unsaved");   /* kv2 is no_autosave: stays local */
  g_assert_true (conat_dkv_clear (kv1, NULL));
  g_assert_cmpint (conat_dkv_length (kv1, NULL), ==, 0);
  save (kv1);
  g_assert_true (eventually_str (kv2, "foo", NULL));
  g_assert_true (conat_dkv_has (kv2, "bar", NULL));
  g_assert_cmpint (conat_dkv_length (kv2, NULL), ==, 1);
}

/* 4 */
static void
test_odd_keys_and_values (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv1 = open_store (f, "odd", TRUE, FALSE);
  g_autoptr (ConatDkv) kv2 = NULL;
  g_autofree char *long_key = g_strnfill (1000, 'k');
  guint8 all_bytes[256];
  g_autoptr (GBytes) binary = NULL;
  g_autoptr (GBytes) got = NULL;
  g_autofree char *empty = NULL;
  g_autofree char *longv = NULL;

  for (guint i = 0; i < 256; i++)
    all_bytes[i] = i;
  binary = g_bytes_new (all_bytes, sizeof all_bytes);
  set_str (kv1, long_key, "long");
  set_str (kv1, "", "empty key");
  g_assert_true (conat_dkv_set (kv1, "bin\x01\xff key", binary, NULL));
  save (kv1);

  kv2 = open_store (f, "odd", TRUE, FALSE);
  longv = get_str (kv2, long_key);
  g_assert_cmpstr (longv, ==, "long");
  empty = get_str (kv2, "");
  g_assert_cmpstr (empty, ==, "empty key");
  got = conat_dkv_get (kv2, "bin\x01\xff key", NULL);
  g_assert_nonnull (got);
  g_assert_true (g_bytes_equal (got, binary));
}

/* 5 */
static void
test_unsaved_changes (Fixture *f, gconstpointer data)
{
  /* no_autosave, so that a fast save cannot confirm before the checks */
  g_autoptr (ConatDkv) kv1 = open_store (f, "unsaved", TRUE, TRUE);
  g_autoptr (ConatDkv) kv2 = open_store (f, "unsaved", TRUE, FALSE);
  g_autoptr (GPtrArray) keys = NULL;

  g_assert_false (conat_dkv_has_unsaved_changes (kv1));
  set_str (kv1, "unsaved", "[1,2,3]");
  g_assert_true (conat_dkv_has_unsaved_changes (kv1));
  keys = conat_dkv_unsaved_changes (kv1);
  g_assert_cmpuint (keys->len, ==, 1);
  g_assert_cmpstr (keys->pdata[0], ==, "unsaved");
  g_assert_false (conat_dkv_has_unsaved_changes (kv2));
  save (kv1);
  g_assert_false (conat_dkv_has_unsaved_changes (kv1));
}

/* 6 */
static void
test_revision_and_time (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv = open_store (f, "revision", FALSE, TRUE);
  gint64 before = g_get_real_time () / 1000;
  guint64 rev1, rev2;
  gint64 t;

  set_str (kv, "x", "1");
  g_assert_cmpuint (conat_dkv_revision (kv, "x"), ==, 0);
  g_assert_cmpint (conat_dkv_time (kv, "x"), ==, 0);
  save (kv);
  rev1 = conat_dkv_revision (kv, "x");
  t = conat_dkv_time (kv, "x");
  g_assert_cmpuint (rev1, >, 0);
  g_assert_cmpint (t, >=, before);
  g_assert_cmpint (t, <=, g_get_real_time () / 1000);

  set_str (kv, "x", "2");
  save (kv);
  rev2 = conat_dkv_revision (kv, "x");
  g_assert_cmpuint (rev2, ==, rev1 + 1);
}

/* 7a */
static void
test_persistence_reopen (Fixture *f, gconstpointer data)
{
  ConatDkv *kv = open_store (f, "persist", TRUE, FALSE);
  g_autofree char *value = NULL;
  g_autoptr (GError) error = NULL;

  set_str (kv, "a", "10");
  save (kv);
  conat_dkv_close (kv);
  kv = open_store (f, "persist", TRUE, FALSE);
  value = get_str (kv, "a");
  g_assert_cmpstr (value, ==, "10");
  g_assert_true (conat_dkv_clear (kv, NULL));
  conat_dkv_close (kv);
}

/* 7b: a child saves, then is killed with SIGKILL at once; the parent reads
 * the value from the database afterwards. */
static void
test_persistence_after_kill (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("conat-kill-XXXXXX", &error);
  int status = 0;
  pid_t pid;

  g_assert_no_error (error);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      ConatClient *client = conat_client_new_embedded (dir, NULL);
      ConatDkvOptions opts = { .scope = "project-test", .name = "killed" };
      ConatDkv *kv = client ? conat_dkv_open (client, &opts, NULL) : NULL;
      g_autoptr (GBytes) v = str_bytes ("survives");
      if (kv == NULL || !conat_dkv_set (kv, "k", v, NULL) || !conat_dkv_save (kv, 10000, NULL))
        _exit (3);
      kill (getpid (), SIGKILL);
      _exit (4);
    }
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFSIGNALED (status));
  g_assert_cmpint (WTERMSIG (status), ==, SIGKILL);

  {
    g_autoptr (ConatClient) client = conat_client_new_embedded (dir, &error);
    ConatDkvOptions opts = { .scope = "project-test", .name = "killed" };
    g_autoptr (ConatDkv) kv = NULL;
    g_autofree char *value = NULL;
    g_assert_no_error (error);
    kv = conat_dkv_open (client, &opts, &error);
    g_assert_no_error (error);
    value = get_str (kv, "k");
    g_assert_cmpstr (value, ==, "survives");
  }
  remove_tree (dir);
}

/* 8 */
static void
test_reference_counting (Fixture *f, gconstpointer data)
{
  ConatDkv *a = open_store (f, "refs", FALSE, FALSE);
  ConatDkv *b = open_store (f, "refs", FALSE, FALSE);
  ConatDkv *c;
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) all = NULL;

  g_assert_true (a == b);
  conat_dkv_ref (a);  /* keep the memory to observe the closed state */
  conat_dkv_close (a);
  set_str (b, "still", "works");
  g_assert_true (conat_dkv_has (b, "still", NULL));
  conat_dkv_close (b);

  all = conat_dkv_get_all (a, &error);
  g_assert_null (all);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (conat_dkv_set (a, "k", NULL, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_cmpint (conat_dkv_length (a, &error), ==, -1);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_CLOSED);

  c = open_store (f, "refs", FALSE, FALSE);
  g_assert_true (c != a);
  conat_dkv_close (c);
  conat_dkv_unref (a);
}

/* 9 */
static void
test_no_autosave (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv1 = open_store (f, "manual", TRUE, TRUE);
  g_autoptr (ConatDkv) kv2 = open_store (f, "manual", TRUE, TRUE);
  g_autofree char *before = NULL;

  set_str (kv1, "a", "25");
  g_usleep (50000);  /* give a wrongly autosaving store a chance to leak */
  before = get_str (kv2, "a");
  g_assert_null (before);
  save (kv1);
  g_assert_true (eventually_str (kv2, "a", "25"));
}

/* 10 */
static void
test_four_instances (Fixture *f, gconstpointer data)
{
  ConatDkv *kvs[4];

  for (guint i = 0; i < 4; i++)
    {
      g_autofree char *key = g_strdup_printf ("key%u", i);
      kvs[i] = open_store (f, "four", TRUE, FALSE);
      set_str (kvs[i], key, key);
      g_assert_true (conat_dkv_has (kvs[i], key, NULL));
    }
  for (guint i = 0; i < 4; i++)
    save (kvs[i]);
  for (guint i = 0; i < 4; i++)
    {
      g_assert_true (eventually_length (kvs[i], 4));
      for (guint j = 0; j < 4; j++)
        {
          g_autofree char *key = g_strdup_printf ("key%u", j);
          g_assert_true (eventually_str (kvs[i], key, key));
        }
    }
  for (guint i = 0; i < 4; i++)
    conat_dkv_close (kvs[i]);
}

/* 11 */
static void
conflict_default (Fixture *f, const char *store, gboolean kv1_first)
{
  g_autoptr (ConatDkv) kv1 = open_store (f, store, TRUE, TRUE);
  g_autoptr (ConatDkv) kv2 = open_store (f, store, TRUE, TRUE);
  g_autofree char *still = NULL;

  if (kv1_first)
    set_str (kv1, "x", "5"), set_str (kv2, "x", "10");
  else
    set_str (kv2, "x", "10"), set_str (kv1, "x", "5");
  save (kv2);
  g_assert_true (eventually_str (kv2, "x", "10"));
  still = get_str (kv1, "x");
  g_assert_cmpstr (still, ==, "5");
  save (kv1);
  g_assert_true (eventually_str (kv2, "x", "5"));
  g_assert_true (eventually_str (kv1, "x", "5"));
}

static void
test_conflict_default (Fixture *f, gconstpointer data)
{
  conflict_default (f, "conflict-a", TRUE);
  conflict_default (f, "conflict-b", FALSE);
}

/* 12 */
static GBytes *
merge_constant (const char *key, GBytes *local, GBytes *remote, GBytes *prev, gpointer data)
{
  return str_bytes ("conflict");
}

/* A toy 3-way merge for the test: each side is PREV with text added before
 * and after it; the result keeps both sides' additions. */
static GBytes *
merge_affix (const char *key, GBytes *local, GBytes *remote, GBytes *prev, gpointer data)
{
  g_autofree char *l = g_strndup (g_bytes_get_data (local, NULL), g_bytes_get_size (local));
  g_autofree char *r = remote ? g_strndup (g_bytes_get_data (remote, NULL),
                                           g_bytes_get_size (remote)) : g_strdup ("");
  g_autofree char *p = prev ? g_strndup (g_bytes_get_data (prev, NULL), g_bytes_get_size (prev))
                            : g_strdup ("");
  const char *lp = strstr (l, p), *rp = strstr (r, p);
  g_autofree char *merged = NULL;
  GPtrArray **seen = data;

  g_ptr_array_add (*seen, g_strdup (p));
  if (lp == NULL || rp == NULL)
    return NULL;
  merged = g_strdup_printf ("%.*s%.*s%s%s%s", (int) (lp - l), l, (int) (rp - r), r, p,
                            lp + strlen (p), rp + strlen (p));
  return str_bytes (merged);
}

static ConatDkv *
open_merge (Fixture *f, const char *name, ConatMergeFunc merge, gpointer data)
{
  ConatDkvOptions opts = {
    .scope = "project-test", .name = name, .no_cache = TRUE, .no_autosave = TRUE,
    .merge = merge, .merge_data = data,
  };
  ConatDkv *kv = conat_dkv_open (f->client, &opts, NULL);

  g_assert_nonnull (kv);
  return kv;
}

static void
test_merge_constant (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv1 = open_merge (f, "merge-const", merge_constant, NULL);
  g_autoptr (ConatDkv) kv2 = open_merge (f, "merge-const", merge_constant, NULL);

  set_str (kv1, "x", "5");
  set_str (kv2, "x", "10");
  save (kv2);
  g_assert_true (eventually_str (kv1, "x", "conflict"));
  save (kv1);
  g_assert_true (eventually_str (kv2, "x", "conflict"));
  g_assert_true (eventually_str (kv1, "x", "conflict"));
}

static void
test_merge_three_way (Fixture *f, gconstpointer data)
{
  g_autoptr (GPtrArray) seen = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (ConatDkv) kv1 = open_merge (f, "merge-3way", merge_affix, &seen);
  g_autoptr (ConatDkv) kv2 = open_merge (f, "merge-3way", merge_affix, &seen);

  set_str (kv1, "doc", "cocalc");
  save (kv1);
  g_assert_true (eventually_str (kv2, "doc", "cocalc"));
  set_str (kv2, "doc", "cocalc!");
  set_str (kv1, "doc", "LOVE cocalc");
  save (kv2);
  g_assert_true (eventually_str (kv1, "doc", "LOVE cocalc!"));
  save (kv1);
  g_assert_true (eventually_str (kv2, "doc", "LOVE cocalc!"));
  g_assert_cmpuint (seen->len, >=, 1);
  g_assert_cmpstr (seen->pdata[0], ==, "cocalc");
}

/* Quick successive writes of one key in a merge store: the second put goes
 * out with the revision the mirror had before the first one's echo came
 * back, and the backend refuses it.  The refusal must wait for that echo
 * (our own write) and send again; it must not read the stale mirror as
 * "already so" (a delete after a set was lost that way) nor wait forever
 * (a set after a set was).  Timing decides how often the race happens:
 * many rounds, each checked by a handle opened afterwards. */
static void
test_merge_quick_rewrites (Fixture *f, gconstpointer data)
{
  enum { ROUNDS = 3000 };
  ConatDkvOptions opts = {
    .scope = "project-test", .name = "merge-quick", .no_cache = TRUE,
    .merge = merge_constant,
  };
  g_autoptr (ConatDkv) kv = conat_dkv_open (f->client, &opts, NULL);
  g_autoptr (ConatDkv) later = NULL;

  g_assert_nonnull (kv);
  for (int i = 0; i < ROUNDS; i++)
    {
      g_autofree char *a = g_strdup_printf ("a%d", i);
      g_autofree char *b = g_strdup_printf ("b%d", i);

      set_str (kv, a, "1");
      set_str (kv, a, NULL);  /* set, then delete at once */
      set_str (kv, b, "1");
      set_str (kv, b, "2");   /* set, then set again at once */
    }
  save (kv);
  later = conat_dkv_open (f->client, &opts, NULL);
  for (int i = 0; i < ROUNDS; i++)
    {
      g_autofree char *a = g_strdup_printf ("a%d", i);
      g_autofree char *b = g_strdup_printf ("b%d", i);

      g_assert_true (eventually_str (kv, a, NULL));
      g_assert_true (eventually_str (kv, b, "2"));
      g_assert_true (eventually_str (later, a, NULL));
      g_assert_true (eventually_str (later, b, "2"));
    }
}

/* 13 */
typedef struct {
  GMutex lock;
  GPtrArray *events;  /* "key=value|prev|own" strings */
} Events;

static void
record_change (ConatDkv *kv, const char *key, GBytes *value, GBytes *prev, gboolean own,
               gpointer data)
{
  Events *ev = data;
  g_autofree char *v = value ? g_strndup (g_bytes_get_data (value, NULL), g_bytes_get_size (value))
                             : g_strdup ("<none>");
  g_autofree char *p = prev ? g_strndup (g_bytes_get_data (prev, NULL), g_bytes_get_size (prev))
                            : g_strdup ("<none>");

  g_mutex_lock (&ev->lock);
  g_ptr_array_add (ev->events, g_strdup_printf ("%s=%s|%s|%s", key, v, p, own ? "own" : "other"));
  g_mutex_unlock (&ev->lock);
}

static guint
events_len (Events *ev)
{
  guint len;

  g_mutex_lock (&ev->lock);
  len = ev->events->len;
  g_mutex_unlock (&ev->lock);
  return len;
}

static gboolean
eventually_events (Events *ev, guint n)
{
  return EVENTUALLY (events_len (ev) >= n);
}

static void
test_change_events (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) seed = open_store (f, "events", TRUE, FALSE);
  g_autoptr (ConatDkv) kv1 = NULL;
  g_autoptr (ConatDkv) kv2 = NULL;
  Events ev1 = { .events = g_ptr_array_new_with_free_func (g_free) };
  Events ev2 = { .events = g_ptr_array_new_with_free_func (g_free) };

  set_str (seed, "loaded", "before");
  save (seed);
  kv1 = open_store (f, "events", TRUE, TRUE);
  kv2 = open_store (f, "events", TRUE, FALSE);
  conat_dkv_watch (kv1, record_change, &ev1, NULL);
  conat_dkv_watch (kv2, record_change, &ev2, NULL);

  set_str (kv1, "a", "1");   /* local write: no event yet */
  g_assert_cmpuint (ev1.events->len, ==, 0);
  save (kv1);
  g_assert_true (eventually_events (&ev1, 1));
  g_assert_true (eventually_events (&ev2, 1));
  g_assert_cmpstr (ev1.events->pdata[0], ==, "a=1|<none>|own");
  g_assert_cmpstr (ev2.events->pdata[0], ==, "a=1|<none>|other");

  g_assert_true (conat_dkv_delete (kv1, "a", NULL));
  save (kv1);
  g_assert_true (eventually_events (&ev2, 2));
  g_assert_cmpstr (ev2.events->pdata[1], ==, "a=<none>|1|other");
  g_assert_true (eventually_events (&ev1, 2));
  g_assert_cmpstr (ev1.events->pdata[1], ==, "a=<none>|1|own");

  conat_dkv_close (g_steal_pointer (&kv1));
  conat_dkv_close (g_steal_pointer (&kv2));
  /* the initial load fired nothing: only the two changes were seen */
  g_assert_cmpuint (ev1.events->len, ==, 2);
  g_ptr_array_unref (ev1.events);
  g_ptr_array_unref (ev2.events);
}

/* A delete right after a set whose echo has not arrived is still sent (the
 * conat quirk Q7 loses it: the set's echo brings the key back).  A watcher
 * that blocks holds back every echo of the embedded backend meanwhile. */
typedef struct {
  GMutex lock;
  GCond cond;
  gboolean blocking, released;
} Blocker;

static void
block_on_change (ConatDkv *kv, const char *key, GBytes *value, GBytes *prev, gboolean own,
                 gpointer data)
{
  Blocker *b = data;

  g_mutex_lock (&b->lock);
  b->blocking = TRUE;
  g_cond_broadcast (&b->cond);
  while (!b->released)
    g_cond_wait (&b->cond, &b->lock);
  g_mutex_unlock (&b->lock);
}

static void
test_delete_after_unconfirmed_set (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv = open_store (f, "q7", TRUE, FALSE);
  g_autoptr (ConatDkv) blocked = open_store (f, "q7", TRUE, FALSE);
  g_autoptr (ConatDkv) late = NULL;
  Blocker b = { 0 };
  guint id = conat_dkv_watch (blocked, block_on_change, &b, NULL);

  set_str (kv, "block", "1");
  save (kv);
  g_mutex_lock (&b.lock);
  while (!b.blocking)
    g_cond_wait (&b.cond, &b.lock);
  g_mutex_unlock (&b.lock);

  set_str (kv, "k", "v1");
  save (kv);                 /* confirmed; its echo is held back */
  set_str (kv, "k", "v2");
  g_assert_true (conat_dkv_delete (kv, "k", NULL));

  g_mutex_lock (&b.lock);
  b.released = TRUE;
  g_cond_broadcast (&b.cond);
  g_mutex_unlock (&b.lock);
  conat_dkv_unwatch (blocked, id);
  save (kv);

  late = open_store (f, "q7", TRUE, FALSE);
  g_assert_false (conat_dkv_has (late, "k", NULL));
  g_assert_true (eventually_str (kv, "k", NULL));
  g_assert_true (eventually_str (blocked, "k", NULL));
}

/* save_key() reports a rejection that happened before it was called. */
static void
test_save_key_after_rejection (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv = open_store (f, "rejected", TRUE, FALSE);
  gsize max = conat_dkv_max_value_size (kv);
  g_autoptr (GBytes) huge = g_bytes_new_take (g_malloc0 (max + 1), max + 1);
  g_autoptr (GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + DEADLINE_US;

  g_assert_true (conat_dkv_set (kv, "big", huge, NULL));
  while (conat_dkv_has_unsaved_changes (kv) && g_get_monotonic_time () < deadline)
    g_usleep (1000);
  g_assert_false (conat_dkv_has_unsaved_changes (kv));  /* rejected, not pending */
  g_assert_false (conat_dkv_save_key (kv, "big", 10000, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  g_clear_error (&error);
  set_str (kv, "big", "small");  /* a new value clears the rejection */
  g_assert_true (conat_dkv_save_key (kv, "big", 10000, &error));
  g_assert_no_error (error);
}

/* A rejected value gives way to the confirmed one it replaced, even before
 * that one's echo arrived (it was dropped, and the key looked absent). */
static void
test_rejection_keeps_confirmed_value (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) kv = open_store (f, "revert", TRUE, FALSE);
  g_autoptr (ConatDkv) blocked = open_store (f, "revert", TRUE, FALSE);
  gsize max = conat_dkv_max_value_size (kv);
  g_autoptr (GBytes) huge = g_bytes_new_take (g_malloc0 (max + 1), max + 1);
  g_autoptr (GBytes) value = NULL;
  g_autoptr (GError) error = NULL;
  Blocker b = { 0 };
  guint id = conat_dkv_watch (blocked, block_on_change, &b, NULL);

  set_str (kv, "block", "1");
  save (kv);
  g_mutex_lock (&b.lock);
  while (!b.blocking)
    g_cond_wait (&b.cond, &b.lock);
  g_mutex_unlock (&b.lock);

  set_str (kv, "k", "old");
  save (kv);                 /* confirmed; its echo is held back */
  g_assert_true (conat_dkv_set (kv, "k", huge, NULL));
  g_assert_false (conat_dkv_save_key (kv, "k", 10000, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  value = conat_dkv_get (kv, "k", NULL);
  g_assert_nonnull (value);
  g_assert_cmpmem (g_bytes_get_data (value, NULL), g_bytes_get_size (value), "old", 3);
  g_assert_cmpuint (conat_dkv_revision (kv, "k"), >, 0);

  g_mutex_lock (&b.lock);
  b.released = TRUE;
  g_cond_broadcast (&b.cond);
  g_mutex_unlock (&b.lock);
  conat_dkv_unwatch (blocked, id);
  g_assert_true (eventually_str (kv, "k", "old"));
  g_assert_false (conat_dkv_has_unsaved_changes (kv));
}

/* 14 */
static void
test_ephemeral (Fixture *f, gconstpointer data)
{
  ConatDkvOptions eph = { .scope = "project-test", .name = "eph", .ephemeral = TRUE };
  ConatDkvOptions per = { .scope = "project-test", .name = "per" };
  ConatDkv *kv;
  g_autofree char *gone = NULL;
  g_autofree char *kept = NULL;

  kv = conat_dkv_open (f->client, &eph, NULL);
  set_str (kv, "k", "v");
  save (kv);
  conat_dkv_close (kv);
  kv = conat_dkv_open (f->client, &eph, NULL);
  gone = get_str (kv, "k");
  g_assert_null (gone);
  conat_dkv_close (kv);

  kv = conat_dkv_open (f->client, &per, NULL);
  set_str (kv, "k", "v");
  save (kv);
  conat_dkv_close (kv);
  kv = conat_dkv_open (f->client, &per, NULL);
  kept = get_str (kv, "k");
  g_assert_cmpstr (kept, ==, "v");
  conat_dkv_close (kv);
}

/* Messages of the "conat" log domain, kept while a test wants them. */
static GMutex log_lock;
static GPtrArray *log_lines;  /* char*, or NULL: not kept */

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  const char *domain = NULL, *message = NULL;

  for (gsize i = 0; i < n_fields; i++)
    if (strcmp (fields[i].key, "GLIB_DOMAIN") == 0)
      domain = fields[i].value;
    else if (strcmp (fields[i].key, "MESSAGE") == 0)
      message = fields[i].value;
  g_mutex_lock (&log_lock);
  if (log_lines != NULL && g_strcmp0 (domain, "conat") == 0 && message != NULL)
    g_ptr_array_add (log_lines, g_strdup (message));
  g_mutex_unlock (&log_lock);
  return g_log_writer_default (level, fields, n_fields, data);
}

/* How many kept lines start with PREFIX. */
static guint
log_count (const char *prefix)
{
  guint n = 0;

  g_mutex_lock (&log_lock);
  for (guint i = 0; i < log_lines->len; i++)
    n += g_str_has_prefix (log_lines->pdata[i], prefix);
  g_mutex_unlock (&log_lock);
  return n;
}

static void
fill_store (Fixture *f, const char *name, guint n)
{
  g_autoptr (ConatDkv) kv = open_store (f, name, TRUE, FALSE);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("key-%u", i);
      set_str (kv, key, "v");
    }
  save (kv);
}

/* A big load is logged at its start and end and its status is kept; a
 * small quick one is not logged. */
static void
test_load_status_and_log (Fixture *f, gconstpointer data)
{
  g_autoptr (ConatDkv) big = NULL;
  g_autoptr (ConatDkv) small = NULL;
  g_autoptr (GPtrArray) loads = NULL;
  ConatLoadStatus status;
  gboolean quick;

  fill_store (f, "big", CONAT_LOAD_LOG_KEYS);
  fill_store (f, "small", 10);
  g_mutex_lock (&log_lock);
  log_lines = g_ptr_array_new_with_free_func (g_free);
  g_mutex_unlock (&log_lock);

  big = open_store (f, "big", TRUE, FALSE);
  small = open_store (f, "small", TRUE, FALSE);
  conat_dkv_get_load (big, &status);
  g_assert_true (status.loaded);
  g_assert_cmpuint (status.keys, ==, CONAT_LOAD_LOG_KEYS);
  g_assert_cmpuint (status.total, ==, CONAT_LOAD_LOG_KEYS);
  g_assert_cmpint (status.elapsed_ms, >=, 0);
  g_assert_null (status.scope);
  conat_dkv_get_load (small, &status);
  g_assert_cmpuint (status.keys, ==, 10);
  quick = status.elapsed_ms < 1000;
  loads = conat_client_list_loads (f->client);
  g_assert_cmpuint (loads->len, ==, 0);  /* none running */

  g_assert_cmpuint (log_count ("project-test/big: loading 10000 keys"), ==, 1);
  g_assert_cmpuint (log_count ("project-test/big: loaded 10000 keys in "), ==, 1);
  if (quick)  /* a slow one is logged, even if small */
    g_assert_cmpuint (log_count ("project-test/small:"), ==, 0);
  g_mutex_lock (&log_lock);
  g_clear_pointer (&log_lines, g_ptr_array_unref);
  g_mutex_unlock (&log_lock);
}

int
main (int argc, char **argv)
{
  g_log_set_writer_func (log_writer, NULL, NULL);
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/dkv/basics", test_basics);
  ADD ("/dkv/late-joiner", test_late_joiner);
  ADD ("/dkv/clear", test_clear);
  ADD ("/dkv/odd-keys-and-values", test_odd_keys_and_values);
  ADD ("/dkv/unsaved-changes", test_unsaved_changes);
  ADD ("/dkv/revision-and-time", test_revision_and_time);
  ADD ("/dkv/persistence/reopen", test_persistence_reopen);
  g_test_add_func ("/dkv/persistence/after-sigkill", test_persistence_after_kill);
  ADD ("/dkv/reference-counting", test_reference_counting);
  ADD ("/dkv/no-autosave", test_no_autosave);
  ADD ("/dkv/four-instances", test_four_instances);
  ADD ("/dkv/conflict/default", test_conflict_default);
  ADD ("/dkv/conflict/merge-constant", test_merge_constant);
  ADD ("/dkv/conflict/merge-three-way", test_merge_three_way);
  ADD ("/dkv/conflict/merge-quick-rewrites", test_merge_quick_rewrites);
  ADD ("/dkv/change-events", test_change_events);
  ADD ("/dkv/ephemeral", test_ephemeral);
  ADD ("/dkv/delete-after-unconfirmed-set", test_delete_after_unconfirmed_set);
  ADD ("/dkv/save-key-after-rejection", test_save_key_after_rejection);
  ADD ("/dkv/rejection-keeps-confirmed-value", test_rejection_keeps_confirmed_value);
  ADD ("/dkv/load/status-and-log", test_load_status_and_log);
#undef ADD
  return g_test_run ();
}
