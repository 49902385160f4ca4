/* test-embedded.c — the embedded backend, through the ConatBackendClass vtable. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <sqlite3.h>

#include "backend.h"

#define WAIT_US (5 * G_USEC_PER_SEC)

/* ---------------------------------------------------------------- helpers */

static void
rm_rf (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      rm_rf (child);
    }
  g_remove (path);
}

static ConatBackend *
backend_open (const char *dir)
{
  g_autoptr(GError) error = NULL;
  ConatBackend *backend = conat_backend_embedded_new (dir, &error);

  g_assert_no_error (error);
  g_assert_nonnull (backend);
  return backend;
}

/* A temporary data directory and the backend B opened on it. */
typedef struct {
  char *dir;
  ConatBackend *b;
} Fixture;

static Fixture *
fixture_new (void)
{
  g_autoptr(GError) error = NULL;
  Fixture *fx = g_new0 (Fixture, 1);

  fx->dir = g_dir_make_tmp ("test-embedded-XXXXXX", &error);
  g_assert_no_error (error);
  fx->b = backend_open (fx->dir);
  return fx;
}

static void
fixture_reopen (Fixture *fx)
{
  fx->b->klass->free (fx->b);
  fx->b = backend_open (fx->dir);
}

static void
fixture_free (Fixture *fx)
{
  if (fx->b != NULL)
    fx->b->klass->free (fx->b);
  rm_rf (fx->dir);
  g_free (fx->dir);
  g_free (fx);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Fixture, fixture_free)

/* Records what a handle (on_load, on_change) or a subscription receives. */
typedef struct {
  GMutex lock;
  GPtrArray *loads;     /* ConatChange, deep copies */
  GPtrArray *changes;   /* ConatChange, deep copies */
  GPtrArray *messages;  /* GBytes */
  /* optional behaviour of the callback (set before the first one) */
  ConatBackend *b;
  ConatBackendStore *close_self;  /* closed from its first callback */
  ConatBackendStore *write_to;    /* put "echo" there from the first callback */
  gulong slow_us;                 /* each callback sleeps so long */
} Recorder;

static void
change_free (gpointer data)
{
  ConatChange *c = data;

  g_free ((char *) c->key);
  g_clear_pointer (&c->value, g_bytes_unref);
  g_free (c);
}

static Recorder *
recorder_new (ConatBackend *b)
{
  Recorder *rec = g_new0 (Recorder, 1);

  g_mutex_init (&rec->lock);
  rec->b = b;
  rec->loads = g_ptr_array_new_with_free_func (change_free);
  rec->changes = g_ptr_array_new_with_free_func (change_free);
  rec->messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  return rec;
}

static void
recorder_free (Recorder *rec)
{
  g_ptr_array_unref (rec->loads);
  g_ptr_array_unref (rec->changes);
  g_ptr_array_unref (rec->messages);
  g_mutex_clear (&rec->lock);
  g_free (rec);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Recorder, recorder_free)

static GBytes *
bytes (const char *s)
{
  return s != NULL ? g_bytes_new (s, strlen (s)) : NULL;
}

static gboolean
bytes_is (GBytes *value, const char *s)
{
  return value != NULL && g_bytes_get_size (value) == strlen (s) &&
         memcmp (g_bytes_get_data (value, NULL), s, strlen (s)) == 0;
}

/* Puts one key (VALUE NULL deletes) as writer 7, generation GEN.  Returns
 * the revision (0 if not applied); a per-item error goes to ERROR. */
static guint64
put_gen (ConatBackend *b, ConatBackendStore *h, const char *key, const char *value,
         guint64 expected, gboolean cas, guint64 gen, GError **error)
{
  ConatPut p = { .key = key, .value = bytes (value), .cas = cas, .expected_revision = expected,
                 .writer_id = 7, .gen = gen };
  g_autoptr(GError) batch_error = NULL;

  g_assert_true (b->klass->put_many (h, &p, 1, &batch_error));
  g_assert_no_error (batch_error);
  if (p.error != NULL)
    g_propagate_error (error, g_steal_pointer (&p.error));
  g_clear_pointer (&p.value, g_bytes_unref);
  return p.revision;
}

static guint64
put (ConatBackend *b, ConatBackendStore *h, const char *key, const char *value)
{
  g_autoptr(GError) error = NULL;
  guint64 revision = put_gen (b, h, key, value, 0, FALSE, 1, &error);

  g_assert_no_error (error);
  return revision;
}

static ConatChange *
change_copy (const ConatChange *change)
{
  ConatChange *c = g_new (ConatChange, 1);

  *c = *change;
  c->key = g_strdup (change->key);
  c->value = change->value != NULL ? g_bytes_ref (change->value) : NULL;
  return c;
}

static void
record_load (const ConatChange *change, gpointer user_data)
{
  Recorder *rec = user_data;

  g_mutex_lock (&rec->lock);
  g_ptr_array_add (rec->loads, change_copy (change));
  g_mutex_unlock (&rec->lock);
}

static void
record_change (const ConatChange *change, gpointer user_data)
{
  Recorder *rec = user_data;
  ConatChange *c = change_copy (change);
  ConatBackendStore *close_self, *write_to;

  if (rec->slow_us > 0)
    g_usleep (rec->slow_us);
  g_mutex_lock (&rec->lock);
  g_ptr_array_add (rec->changes, c);
  close_self = g_steal_pointer (&rec->close_self);
  write_to = g_steal_pointer (&rec->write_to);
  g_mutex_unlock (&rec->lock);
  if (close_self != NULL)
    rec->b->klass->store_close (close_self);
  if (write_to != NULL)
    {
      g_autoptr(GPtrArray) scopes = rec->b->klass->list_scopes (rec->b, NULL);

      g_assert_nonnull (scopes);
      g_assert_cmpuint (put (rec->b, write_to, "echo", "1"), >, 0);
    }
}

static void
record_message (GBytes *message, gpointer user_data)
{
  Recorder *rec = user_data;

  g_mutex_lock (&rec->lock);
  g_ptr_array_add (rec->messages, g_bytes_ref (message));
  g_mutex_unlock (&rec->lock);
}

static guint
recorder_count (Recorder *rec, gboolean messages)
{
  guint n;

  g_mutex_lock (&rec->lock);
  n = messages ? rec->messages->len : rec->changes->len;
  g_mutex_unlock (&rec->lock);
  return n;
}

/* Polls until REC holds N changes (or messages), at most 5 s; returns the count. */
static guint
wait_count (Recorder *rec, gboolean messages, guint n)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_US;

  while (recorder_count (rec, messages) < n && g_get_monotonic_time () < deadline)
    g_usleep (1000);
  return recorder_count (rec, messages);
}

/* Returns once the dispatcher delivered everything queued before the call:
 * a message to a private channel comes after it. */
static void
drain (ConatBackend *b)
{
  g_autoptr(Recorder) rec = recorder_new (b);
  g_autoptr(GBytes) msg = bytes ("x");
  ConatBackendSub *sub = b->klass->subscribe (b, "drain", NULL, "drain", record_message, rec, NULL);

  g_assert_true (b->klass->publish (b, "drain", NULL, "drain", msg, NULL));
  g_assert_cmpuint (wait_count (rec, TRUE, 1), ==, 1);
  b->klass->unsubscribe (sub);
}

static const ConatChange *
change_at (GPtrArray *changes, guint i)
{
  g_assert_cmpuint (i, <, changes->len);
  return g_ptr_array_index (changes, i);
}

/* Opens a handle that records in REC. */
static ConatBackendStore *
open_store (Fixture *fx, const char *scope, const char *name, gboolean ephemeral,
            Recorder *rec, guint64 *loaded_revision)
{
  g_autoptr(GError) error = NULL;
  guint64 revision = G_MAXUINT64;
  ConatBackendStore *h = fx->b->klass->store_open (fx->b, scope, name, ephemeral,
                                                   record_load, record_change, NULL, rec,
                                                   &revision, &error);

  g_assert_no_error (error);
  g_assert_nonnull (h);
  g_assert_cmpuint (revision, !=, G_MAXUINT64);
  if (loaded_revision != NULL)
    *loaded_revision = revision;
  return h;
}

static gboolean
names_equal (GPtrArray *names, const char *const *expected)
{
  guint n = g_strv_length ((char **) expected);

  for (guint i = 0; names != NULL && i < names->len && i < n; i++)
    if (strcmp (g_ptr_array_index (names, i), expected[i]) != 0)
      return FALSE;
  return names != NULL && names->len == n;
}

static ConatStoreInfo
info_of (Fixture *fx, const char *scope, const char *name)
{
  g_autoptr(GError) error = NULL;
  ConatStoreInfo info = { 0 };

  g_assert_true (fx->b->klass->store_info (fx->b, scope, name, &info, TRUE, &error));
  g_assert_no_error (error);
  return info;
}

static void
assert_no_store (Fixture *fx, const char *scope, const char *name)
{
  g_autoptr(GError) error = NULL;
  ConatStoreInfo info;

  g_assert_false (fx->b->klass->store_info (fx->b, scope, name, &info, TRUE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
}

/* ------------------------------------------------------------------ open */

static void
test_open_shared (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autofree char *alias = g_build_filename (fx->dir, ".", NULL);
  ConatBackend *again = backend_open (alias);
  ConatClientStatus status = { 0 };

  g_assert_true (again == fx->b);
  g_assert_cmpstr (fx->b->klass->name, ==, "embedded");
  fx->b->klass->get_status (fx->b, &status);
  g_assert_true (status.connected);
  g_assert_null (status.servers);
  g_assert_null (status.last_error);
  g_assert_cmpuint (fx->b->klass->max_message_size (fx->b), ==, 1024 * 1024);
  again->klass->free (again);
  g_assert_false (fx->b->klass->has_scope (fx->b, "s", NULL));  /* still open */
  fixture_reopen (fx);
}

static void
test_open_default_dir (void)
{
  g_autofree char *dir = g_build_filename (g_get_user_data_dir (), "conatfs", NULL);
  g_autofree char *db = g_build_filename (dir, "conat.db", NULL);
  ConatBackend *b = backend_open (NULL);

  g_assert_true (g_file_test (db, G_FILE_TEST_IS_REGULAR));
  b->klass->free (b);
}

static void
assert_open_fails (const char *dir, ConatError code, const char *needle)
{
  g_autoptr(GError) error = NULL;

  g_assert_null (conat_backend_embedded_new (dir, &error));
  g_assert_error (error, CONAT_ERROR, (gint) code);
  g_assert_nonnull (strstr (error->message, needle));
}

static void
test_open_errors (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autofree char *file = g_build_filename (fx->dir, "file", NULL);
  g_autofree char *bad = g_build_filename (fx->dir, "bad", NULL);
  g_autofree char *bad_db = g_build_filename (bad, "conat.db", NULL);
  g_autofree char *garbage = g_strnfill (8192, 'x');

  g_assert_true (g_file_set_contents (file, "", 0, NULL));
  assert_open_fails (file, CONAT_ERROR_FAILED, "file");
  g_assert_cmpint (g_mkdir (bad, 0700), ==, 0);
  g_assert_true (g_file_set_contents (bad_db, garbage, -1, NULL));
  assert_open_fails (bad, CONAT_ERROR_CORRUPT, "conat.db");
}

static void
test_open_locked (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autofree char *dir = g_build_filename (fx->dir, "other", NULL);
  g_autofree char *lock = g_build_filename (dir, "lock", NULL);
  ConatBackend *other;
  int fd, status;
  pid_t pid;

  /* Another process's lock, held through another open file description. */
  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  fd = open (lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (flock (fd, LOCK_EX | LOCK_NB), ==, 0);
  assert_open_fails (dir, CONAT_ERROR_BUSY, "in use by another process");
  close (fd);
  other = backend_open (dir);
  other->klass->free (other);

  /* A child process while we hold the directory. */
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      g_autoptr(GError) error = NULL;
      ConatBackend *b = conat_backend_embedded_new (fx->dir, &error);

      _exit (b == NULL && g_error_matches (error, CONAT_ERROR, CONAT_ERROR_BUSY) ? 0 : 1);
    }
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
}

/* ------------------------------------------------------------- namespace */

static void
test_namespace_scopes (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  const ConatBackendClass *k = fx->b->klass;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) scopes = NULL;
  const char *expected[] = { "", "%", "a/b", "hub", "\xff", NULL };

  g_assert_false (k->has_scope (fx->b, "hub", &error));
  g_assert_no_error (error);
  for (guint i = 0; expected[i] != NULL; i++)
    g_assert_true (k->create_scope (fx->b, expected[i], NULL));
  g_assert_false (k->create_scope (fx->b, "hub", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_true (k->has_scope (fx->b, "hub", NULL));
  scopes = k->list_scopes (fx->b, NULL);
  g_assert_true (names_equal (scopes, expected));

  g_assert_false (k->remove_scope (fx->b, "nope", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_true (k->create_store (fx->b, "hub", "s", FALSE, NULL));
  g_assert_false (k->remove_scope (fx->b, "hub", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_EMPTY);
  g_clear_error (&error);
  g_assert_true (k->remove_store (fx->b, "hub", "s", NULL));
  g_assert_true (k->remove_scope (fx->b, "hub", NULL));
  g_assert_false (k->has_scope (fx->b, "hub", NULL));
}

static void
test_namespace_stores (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  const ConatBackendClass *k = fx->b->klass;
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) stores = NULL;
  const char *expected[] = { "", "eph", "p", NULL };
  ConatBackendStore *h;

  g_assert_true (k->create_store (fx->b, "s", "p", FALSE, NULL));
  g_assert_true (k->has_scope (fx->b, "s", NULL));
  g_assert_false (k->create_store (fx->b, "s", "p", TRUE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_true (k->create_store (fx->b, "s", "eph", TRUE, NULL));
  g_assert_true (k->create_store (fx->b, "s", "", FALSE, NULL));
  stores = k->list_stores (fx->b, "s", NULL);
  g_assert_true (names_equal (stores, expected));
  g_clear_pointer (&stores, g_ptr_array_unref);
  stores = k->list_stores (fx->b, "none", NULL);
  g_assert_cmpuint (stores->len, ==, 0);
  g_assert_true (info_of (fx, "s", "eph").ephemeral);
  g_assert_false (info_of (fx, "s", "p").ephemeral);
  assert_no_store (fx, "s", "missing");
  g_assert_false (k->remove_store (fx->b, "s", "missing", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* keys, bytes, NOT_EMPTY and BUSY */
  h = open_store (fx, "s", "p", FALSE, rec, NULL);
  put (fx->b, h, "k", "hello");
  g_assert_cmpuint (info_of (fx, "s", "p").keys, ==, 1);
  g_assert_cmpuint (info_of (fx, "s", "p").bytes, ==, 5);
  g_assert_false (k->remove_store (fx->b, "s", "p", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_EMPTY);
  g_clear_error (&error);
  g_assert_false (k->set_store_ephemeral (fx->b, "s", "p", TRUE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_BUSY);
  g_clear_error (&error);
  put (fx->b, h, "k", NULL);
  g_assert_cmpuint (info_of (fx, "s", "p").keys, ==, 0);

  /* kind changes of empty stores; removal while a handle is open */
  g_assert_true (k->set_store_ephemeral (fx->b, "s", "p", TRUE, NULL));
  g_assert_true (info_of (fx, "s", "p").ephemeral);
  g_assert_true (k->set_store_ephemeral (fx->b, "s", "p", FALSE, NULL));
  g_assert_false (info_of (fx, "s", "p").ephemeral);
  g_assert_true (k->set_store_ephemeral (fx->b, "s", "p", FALSE, NULL));
  g_assert_false (k->set_store_ephemeral (fx->b, "s", "nope", TRUE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_true (k->remove_store (fx->b, "s", "p", NULL));
  assert_no_store (fx, "s", "p");
  g_assert_cmpuint (put (fx->b, h, "k2", "v"), ==, 3);  /* the write makes it again */
  g_assert_cmpuint (info_of (fx, "s", "p").keys, ==, 1);
  k->store_close (h);
}

static void
test_namespace_ephemeral_scope (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  const ConatBackendClass *k = fx->b->klass;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) scopes = NULL;
  const char *expected[] = { "mem", NULL };

  g_assert_true (k->create_store (fx->b, "mem", "e", TRUE, NULL));
  g_assert_true (k->has_scope (fx->b, "mem", NULL));
  scopes = k->list_scopes (fx->b, NULL);
  g_assert_true (names_equal (scopes, expected));
  g_assert_false (k->create_scope (fx->b, "mem", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_false (k->remove_scope (fx->b, "mem", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_EMPTY);
  g_clear_error (&error);
  fixture_reopen (fx);  /* ephemeral: gone with the backend */
  g_assert_false (k->has_scope (fx->b, "mem", NULL));
  assert_no_store (fx, "mem", "e");
}

/* ------------------------------------------------------------------ writes */

static void
test_put_revisions (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(GError) error = NULL;
  ConatBackendStore *h = open_store (fx, "s", "kv", FALSE, rec, NULL);
  ConatPut puts[3] = { { .key = "a", .value = bytes ("1") }, { .key = "b", .value = bytes ("2") },
                       { .key = "", .value = bytes ("") } };
  gint64 now_ms = g_get_real_time () / 1000;

  g_assert_true (fx->b->klass->put_many (h, puts, 3, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < 3; i++)
    {
      g_assert_no_error (puts[i].error);
      g_assert_cmpuint (puts[i].revision, ==, i + 1);
      g_assert_cmpint (puts[i].time_ms, >=, now_ms - 1000);
      g_assert_cmpint (puts[i].time_ms, <=, now_ms + 60000);
      g_bytes_unref (puts[i].value);
    }
  g_assert_cmpuint (put (fx->b, h, "a", "3"), ==, 4);
  g_assert_cmpuint (put (fx->b, h, "a", NULL), ==, 5);
  g_assert_cmpuint (put (fx->b, h, "a", NULL), ==, 0);        /* missing: no-op */
  g_assert_cmpuint (put (fx->b, h, "never", NULL), ==, 0);
  g_assert_cmpuint (put (fx->b, h, "b", "4"), ==, 6);
  g_assert_cmpuint (wait_count (rec, FALSE, 6), ==, 6);
  drain (fx->b);
  g_assert_cmpuint (recorder_count (rec, FALSE), ==, 6);      /* no event for the no-ops */
  g_assert_cmpuint (fx->b->klass->max_value_size (h), >=, 1024 * 1024);
  fx->b->klass->store_close (h);
}

static void
test_put_cas (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(GError) error = NULL;
  ConatBackendStore *h = open_store (fx, "s", "kv", FALSE, rec, NULL);

  g_assert_cmpuint (put_gen (fx->b, h, "k", "v1", 0, TRUE, 1, &error), ==, 1);
  g_assert_no_error (error);
  g_assert_cmpuint (put_gen (fx->b, h, "k", "v2", 0, TRUE, 1, &error), ==, 0);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_WRONG_REVISION);
  g_assert_cmpstr (error->message, ==, "wrong last sequence");
  g_clear_error (&error);
  g_assert_cmpuint (put_gen (fx->b, h, "k", "v2", 5, TRUE, 1, &error), ==, 0);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_WRONG_REVISION);
  g_clear_error (&error);
  g_assert_cmpuint (put_gen (fx->b, h, "k", "v2", 1, TRUE, 1, &error), ==, 2);
  g_assert_no_error (error);
  g_assert_cmpuint (put_gen (fx->b, h, "k", NULL, 2, TRUE, 1, &error), ==, 3);
  g_assert_no_error (error);
  g_assert_cmpuint (info_of (fx, "s", "kv").keys, ==, 0);
  fx->b->klass->store_close (h);
}

static void
test_put_batch_errors (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(GError) error = NULL;
  ConatBackendStore *h = open_store (fx, "s", "kv", FALSE, rec, NULL);
  gsize max = fx->b->klass->max_value_size (h);
  ConatPut puts[4] = {
    { .key = "a", .value = bytes ("1") },
    { .key = "big", .value = g_bytes_new_take (g_malloc0 (max + 1), max + 1) },
    { .key = "a", .value = bytes ("2"), .cas = TRUE, .expected_revision = 7 },
    { .key = "a", .value = bytes ("3"), .cas = TRUE, .expected_revision = 1 },
  };

  g_assert_true (fx->b->klass->put_many (h, puts, 4, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (puts[0].revision, ==, 1);
  g_assert_error (puts[1].error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  g_assert_error (puts[2].error, CONAT_ERROR, CONAT_ERROR_WRONG_REVISION);
  g_assert_cmpuint (puts[2].revision, ==, 0);
  g_assert_cmpuint (puts[3].revision, ==, 2);
  for (guint i = 0; i < 4; i++)
    {
      g_clear_error (&puts[i].error);
      g_bytes_unref (puts[i].value);
    }
  g_assert_cmpuint (wait_count (rec, FALSE, 2), ==, 2);
  fx->b->klass->store_close (h);
}

/* -------------------------------------------------------------- delivery */

static void
test_load (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(Recorder) rec2 = recorder_new (fx->b);
  ConatBackendStore *h = open_store (fx, "s", "kv", FALSE, rec, NULL);
  ConatBackendStore *h2;
  guint64 loaded;

  put (fx->b, h, "a", "1");
  put (fx->b, h, "b", "2");
  put (fx->b, h, "a", "3");
  put (fx->b, h, "c", "4");
  put (fx->b, h, "c", NULL);
  h2 = open_store (fx, "s", "kv", FALSE, rec2, &loaded);
  g_assert_cmpuint (loaded, ==, 5);
  g_assert_cmpuint (rec2->loads->len, ==, 2);
  g_assert_cmpstr (change_at (rec2->loads, 0)->key, ==, "b");
  g_assert_cmpuint (change_at (rec2->loads, 0)->revision, ==, 2);
  g_assert_true (bytes_is (change_at (rec2->loads, 0)->value, "2"));
  g_assert_cmpstr (change_at (rec2->loads, 1)->key, ==, "a");
  g_assert_cmpuint (change_at (rec2->loads, 1)->revision, ==, 3);
  g_assert_true (bytes_is (change_at (rec2->loads, 1)->value, "3"));
  g_assert_cmpint (change_at (rec2->loads, 1)->time_ms, >, 0);
  drain (fx->b);
  for (guint i = 0; i < recorder_count (rec2, FALSE); i++)
    g_assert_cmpuint (change_at (rec2->changes, i)->revision, <=, loaded);  /* only repeats */
  fx->b->klass->store_close (h2);
  fx->b->klass->store_close (h);
}

static void
ignore_change (const ConatChange *change, gpointer user_data)
{
}

/* on_progress of a load: from 0 of N, never backwards, ending at N of N. */
typedef struct {
  guint calls;
  guint64 keys, total, first_keys;
  gboolean backwards;
} Progress;

static void
record_progress (guint64 keys, guint64 total, gpointer user_data)
{
  Progress *p = user_data;

  if (p->calls++ == 0)
    p->first_keys = keys;
  p->backwards |= keys < p->keys || keys > total;
  p->keys = keys;
  p->total = total;
}

static void
test_load_progress (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  ConatBackendStore *h = open_store (fx, "s", "big", FALSE, rec, NULL);
  ConatPut *puts = g_new0 (ConatPut, 10000);
  g_autoptr(GError) error = NULL;
  Progress progress = { 0 };
  guint64 loaded;

  for (guint i = 0; i < 10000; i++)
    {
      puts[i].key = g_strdup_printf ("key-%u", i);
      puts[i].value = bytes ("v");
    }
  g_assert_true (fx->b->klass->put_many (h, puts, 10000, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < 10000; i++)
    {
      g_free ((char *) puts[i].key);
      g_bytes_unref (puts[i].value);
    }
  g_free (puts);
  fx->b->klass->store_close (h);

  h = fx->b->klass->store_open (fx->b, "s", "big", FALSE, NULL, ignore_change, record_progress,
                                &progress, &loaded, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (progress.calls, >=, 2);
  g_assert_cmpuint (progress.first_keys, ==, 0);
  g_assert_false (progress.backwards);
  g_assert_cmpuint (progress.keys, ==, 10000);
  g_assert_cmpuint (progress.total, ==, 10000);
  fx->b->klass->store_close (h);
}

static void
test_change_two_handles (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) r1 = recorder_new (fx->b);
  g_autoptr(Recorder) r2 = recorder_new (fx->b);
  g_autoptr(Recorder) other = recorder_new (fx->b);
  ConatBackendStore *h1 = open_store (fx, "s", "kv", FALSE, r1, NULL);
  ConatBackendStore *h2 = open_store (fx, "s", "kv", FALSE, r2, NULL);
  ConatBackendStore *h3 = open_store (fx, "s", "other", FALSE, other, NULL);
  Recorder *recs[] = { r1, r2 };

  g_assert_cmpuint (put_gen (fx->b, h1, "k", "v", 0, FALSE, 42, NULL), ==, 1);
  g_assert_cmpuint (put_gen (fx->b, h2, "k", NULL, 0, FALSE, 43, NULL), ==, 2);
  for (guint i = 0; i < G_N_ELEMENTS (recs); i++)
    {
      g_assert_cmpuint (wait_count (recs[i], FALSE, 2), ==, 2);
      g_assert_cmpstr (change_at (recs[i]->changes, 0)->key, ==, "k");
      g_assert_true (bytes_is (change_at (recs[i]->changes, 0)->value, "v"));
      g_assert_cmpuint (change_at (recs[i]->changes, 0)->revision, ==, 1);
      g_assert_cmpuint (change_at (recs[i]->changes, 0)->writer_id, ==, 7);
      g_assert_cmpuint (change_at (recs[i]->changes, 0)->gen, ==, 42);
      g_assert_null (change_at (recs[i]->changes, 1)->value);
      g_assert_cmpuint (change_at (recs[i]->changes, 1)->revision, ==, 2);
      g_assert_cmpuint (change_at (recs[i]->changes, 1)->gen, ==, 43);
    }
  drain (fx->b);
  g_assert_cmpuint (recorder_count (other, FALSE), ==, 0);
  fx->b->klass->store_close (h1);
  g_assert_cmpuint (put (fx->b, h2, "k", "w"), ==, 3);
  g_assert_cmpuint (wait_count (r2, FALSE, 3), ==, 3);
  drain (fx->b);
  g_assert_cmpuint (recorder_count (r1, FALSE), ==, 2);  /* closed: nothing more */
  fx->b->klass->store_close (h2);
  fx->b->klass->store_close (h3);
}

/* Callbacks may call the backend, and close their own handle. */
static void
test_change_reentry (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) r1 = recorder_new (fx->b);
  g_autoptr(Recorder) r2 = recorder_new (fx->b);
  ConatBackendStore *h1 = open_store (fx, "s", "kv", FALSE, r1, NULL);
  ConatBackendStore *h2 = open_store (fx, "s", "kv", FALSE, r2, NULL);
  ConatPut puts[2] = { { .key = "a", .value = bytes ("1") }, { .key = "b", .value = bytes ("2") } };

  r1->close_self = h1;  /* gets "a" only, though "b" is in the same event */
  r2->write_to = h2;    /* writes "echo" from its callback */
  g_assert_true (fx->b->klass->put_many (h2, puts, 2, NULL));
  g_assert_cmpuint (wait_count (r2, FALSE, 3), ==, 3);
  g_assert_cmpstr (change_at (r2->changes, 2)->key, ==, "echo");
  drain (fx->b);
  g_assert_cmpuint (recorder_count (r1, FALSE), ==, 1);
  g_bytes_unref (puts[0].value);
  g_bytes_unref (puts[1].value);
  fx->b->klass->store_close (h2);
}

typedef struct {
  ConatBackend *b;
  ConatBackendStore *h;
} PutJob;

static gpointer
put_thread (gpointer data)
{
  PutJob *job = data;

  for (int i = 0; i < 20; i++)
    put (job->b, job->h, "k", "v");
  return NULL;
}

/* store_close waits for a callback of the handle that is running. */
static void
test_change_close_waits (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) slow = recorder_new (fx->b);
  g_autoptr(Recorder) writer = recorder_new (fx->b);
  ConatBackendStore *hs = open_store (fx, "s", "kv", FALSE, slow, NULL);
  ConatBackendStore *hw = open_store (fx, "s", "kv", FALSE, writer, NULL);
  PutJob job = { fx->b, hw };
  GThread *thread;
  guint after;

  slow->slow_us = 20000;
  thread = g_thread_new ("put", put_thread, &job);
  g_assert_cmpuint (wait_count (slow, FALSE, 1), >=, 1);
  fx->b->klass->store_close (hs);
  after = recorder_count (slow, FALSE);
  g_thread_join (thread);
  g_assert_cmpuint (wait_count (writer, FALSE, 20), ==, 20);
  drain (fx->b);
  g_assert_cmpuint (recorder_count (slow, FALSE), ==, after);
  fx->b->klass->store_close (hw);
}

/* ------------------------------------------------------------- lifetimes */

static void
test_persistence (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(Recorder) rec2 = recorder_new (fx->b);
  ConatBackendStore *h = open_store (fx, "s", "kv", FALSE, rec, NULL);
  guint64 loaded;

  put (fx->b, h, "a", "1");
  put (fx->b, h, "b", "2");
  put (fx->b, h, "b", NULL);
  fx->b->klass->store_close (h);
  fixture_reopen (fx);
  h = open_store (fx, "s", "kv", TRUE, rec2, &loaded);  /* the existing kind wins */
  g_assert_cmpuint (loaded, ==, 3);
  g_assert_cmpuint (rec2->loads->len, ==, 1);
  g_assert_cmpstr (change_at (rec2->loads, 0)->key, ==, "a");
  g_assert_false (info_of (fx, "s", "kv").ephemeral);
  g_assert_cmpuint (put (fx->b, h, "c", "3"), ==, 4);
  fx->b->klass->store_close (h);
}

/* A committed batch survives kill -9 of the process that wrote it. */
static void
test_persistence_kill (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (NULL);
  ConatBackendStore *h;
  int status;
  pid_t pid;

  fx->b->klass->free (g_steal_pointer (&fx->b));
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      ConatBackend *b = conat_backend_embedded_new (fx->dir, NULL);
      guint64 loaded;
      ConatBackendStore *hc = b ? b->klass->store_open (b, "s", "kv", FALSE, NULL, ignore_change,
                                                        NULL, NULL, &loaded, NULL) : NULL;
      ConatPut p = { .key = "k", .value = g_bytes_new_static ("survives", 8) };

      if (hc != NULL && b->klass->put_many (hc, &p, 1, NULL) && p.revision == 1)
        kill (getpid (), SIGKILL);
      _exit (1);
    }
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
  fx->b = backend_open (fx->dir);
  h = open_store (fx, "s", "kv", FALSE, rec, NULL);
  g_assert_cmpuint (rec->loads->len, ==, 1);
  g_assert_true (bytes_is (change_at (rec->loads, 0)->value, "survives"));
  fx->b->klass->store_close (h);
}

static void
test_ephemeral (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) r1 = recorder_new (fx->b);
  g_autoptr(Recorder) r2 = recorder_new (fx->b);
  ConatBackendStore *h1 = open_store (fx, "s", "e", TRUE, r1, NULL);
  ConatBackendStore *h2;
  guint64 loaded;

  g_assert_cmpuint (put (fx->b, h1, "a", "1"), ==, 1);
  g_assert_cmpuint (put (fx->b, h1, "b", "22"), ==, 2);
  g_assert_cmpuint (put (fx->b, h1, "b", NULL), ==, 3);
  g_assert_cmpuint (put (fx->b, h1, "b", NULL), ==, 0);
  g_assert_true (info_of (fx, "s", "e").ephemeral);
  g_assert_cmpuint (info_of (fx, "s", "e").keys, ==, 1);
  g_assert_cmpuint (info_of (fx, "s", "e").bytes, ==, 1);
  h2 = open_store (fx, "s", "e", FALSE, r2, &loaded);  /* the existing kind wins */
  g_assert_cmpuint (loaded, ==, 3);
  g_assert_cmpuint (r2->loads->len, ==, 1);
  g_assert_true (bytes_is (change_at (r2->loads, 0)->value, "1"));
  g_assert_cmpuint (wait_count (r1, FALSE, 3), ==, 3);
  fx->b->klass->store_close (h1);
  g_assert_cmpuint (info_of (fx, "s", "e").keys, ==, 1);     /* h2 still holds it */
  fx->b->klass->store_close (h2);
  assert_no_store (fx, "s", "e");                             /* gone after the last close */

  /* made explicitly: listed without handles, but its keys still go */
  g_assert_true (fx->b->klass->create_store (fx->b, "s", "x", TRUE, NULL));
  h1 = open_store (fx, "s", "x", TRUE, r1, NULL);
  put (fx->b, h1, "a", "1");
  fx->b->klass->store_close (h1);
  g_assert_true (info_of (fx, "s", "x").ephemeral);
  g_assert_cmpuint (info_of (fx, "s", "x").keys, ==, 0);
  g_assert_true (fx->b->klass->remove_store (fx->b, "s", "x", NULL));
  assert_no_store (fx, "s", "x");
}

/* ----------------------------------------------------------------- options */

static void
set_config (Fixture *fx, const char *scope, const char *name, const char *merge,
            gint64 max_value_size, gint64 max_age_ms, gint64 max_bytes, gint64 max_keys)
{
  g_autoptr(GError) error = NULL;
  ConatStoreLimits limits = { max_value_size, max_age_ms, max_bytes, max_keys };

  g_assert_true (fx->b->klass->set_store_config (fx->b, scope, name, merge, &limits, &error));
  g_assert_no_error (error);
}

/* Options are kept with the store: over a reopen, over a change of kind,
 * and back to the defaults for a store removed and made again. */
static void
test_options_kept (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(GError) error = NULL;
  ConatStoreInfo info;

  g_assert_true (fx->b->klass->create_store (fx->b, "s", "p", FALSE, NULL));
  info = info_of (fx, "s", "p");
  g_assert_cmpstr (info.merge, ==, "lww");
  g_assert_cmpint (info.limits.max_keys, ==, 0);
  set_config (fx, "s", "p", "lines", 10, 20, 30, 40);
  g_assert_true (fx->b->klass->set_store_config (fx->b, "s", "p", "json", NULL, NULL));
  fixture_reopen (fx);
  info = info_of (fx, "s", "p");
  g_assert_cmpstr (info.merge, ==, "json");
  g_assert_cmpint (info.limits.max_value_size, ==, 10);
  g_assert_cmpint (info.limits.max_age_ms, ==, 20);
  g_assert_cmpint (info.limits.max_bytes, ==, 30);
  g_assert_cmpint (info.limits.max_keys, ==, 40);

  g_assert_true (fx->b->klass->set_store_ephemeral (fx->b, "s", "p", TRUE, NULL));
  g_assert_cmpstr (info_of (fx, "s", "p").merge, ==, "json");
  g_assert_cmpint (info_of (fx, "s", "p").limits.max_keys, ==, 40);
  g_assert_true (fx->b->klass->set_store_ephemeral (fx->b, "s", "p", FALSE, NULL));
  fixture_reopen (fx);
  g_assert_cmpstr (info_of (fx, "s", "p").merge, ==, "json");
  g_assert_cmpint (info_of (fx, "s", "p").limits.max_bytes, ==, 30);

  g_assert_true (fx->b->klass->remove_store (fx->b, "s", "p", NULL));
  g_assert_false (fx->b->klass->set_store_config (fx->b, "s", "p", "lines", NULL, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_assert_true (fx->b->klass->create_store (fx->b, "s", "p", FALSE, NULL));
  g_assert_cmpstr (info_of (fx, "s", "p").merge, ==, "lww");
  g_assert_cmpint (info_of (fx, "s", "p").limits.max_value_size, ==, 0);
}

/* A database of schema version 1 gains the option columns. */
static void
test_options_migration (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-embedded-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "conat.db", NULL);
  sqlite3 *db = NULL;
  ConatBackend *b;
  ConatStoreInfo info;

  g_assert_no_error (error);
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db,
    "CREATE TABLE scopes (name BLOB PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE stores (id INTEGER PRIMARY KEY, scope BLOB NOT NULL, name BLOB NOT NULL,"
    " revision INTEGER NOT NULL DEFAULT 0, UNIQUE (scope, name));"
    "CREATE TABLE kv (store_id INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
    " revision INTEGER NOT NULL, time_ms INTEGER NOT NULL, PRIMARY KEY (store_id, key))"
    " WITHOUT ROWID;"
    "INSERT INTO scopes VALUES (CAST('s' AS BLOB));"
    "INSERT INTO stores (id, scope, name, revision) VALUES (1, CAST('s' AS BLOB),"
    " CAST('old' AS BLOB), 1);"
    "INSERT INTO kv VALUES (1, CAST('k' AS BLOB), CAST('v' AS BLOB), 1, 1);"
    "PRAGMA user_version = 1;", NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
  b = backend_open (dir);
  g_assert_true (b->klass->store_info (b, "s", "old", &info, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (info.keys, ==, 1);
  g_assert_cmpstr (info.merge, ==, "lww");
  g_assert_true (b->klass->set_store_config (b, "s", "old", "lines", NULL, &error));
  g_assert_no_error (error);
  b->klass->free (b);
  b = backend_open (dir);
  g_assert_true (b->klass->store_info (b, "s", "old", &info, TRUE, NULL));
  g_assert_cmpstr (info.merge, ==, "lines");
  b->klass->free (b);
  rm_rf (dir);
}

/* Each limit refuses the write over it, with the error the API names; the
 * value and key counts stay as they were. */
static void
check_limits (gboolean ephemeral)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(GError) error = NULL;
  ConatBackendStore *h = open_store (fx, "s", "lim", ephemeral, rec, NULL);
  ConatStoreInfo info;

  set_config (fx, "s", "lim", NULL, 4, 0, 0, 0);
  g_assert_cmpuint (fx->b->klass->max_value_size (h), ==, 4);
  g_assert_cmpuint (put (fx->b, h, "a", "1234"), ==, 1);
  g_assert_cmpuint (put_gen (fx->b, h, "a", "12345", 0, FALSE, 2, &error), ==, 0);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  g_clear_error (&error);

  set_config (fx, "s", "lim", NULL, 0, 0, 0, 2);
  g_assert_cmpuint (fx->b->klass->max_value_size (h), >, 1000);
  g_assert_cmpuint (put (fx->b, h, "b", "12345"), ==, 2);
  g_assert_cmpuint (put_gen (fx->b, h, "c", "1", 0, FALSE, 3, &error), ==, 0);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NO_SPACE);
  g_clear_error (&error);
  g_assert_cmpuint (put (fx->b, h, "a", "changed"), ==, 3);  /* an existing key is fine */
  g_assert_cmpuint (put (fx->b, h, "a", NULL), ==, 4);
  g_assert_cmpuint (put (fx->b, h, "c", "1"), ==, 5);        /* room again */

  set_config (fx, "s", "lim", NULL, 0, 0, 10, 0);            /* holds 5 + 1 bytes */
  g_assert_cmpuint (put (fx->b, h, "d", "1234"), ==, 6);     /* exactly 10 */
  g_assert_cmpuint (put_gen (fx->b, h, "d", "12345", 0, FALSE, 4, &error), ==, 0);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NO_SPACE);
  g_clear_error (&error);
  g_assert_cmpuint (put (fx->b, h, "b", "1"), ==, 7);        /* shrinking is fine */
  g_assert_cmpuint (put (fx->b, h, "d", "12345"), ==, 8);
  info = info_of (fx, "s", "lim");
  g_assert_cmpuint (info.keys, ==, 3);
  g_assert_cmpuint (info.bytes, ==, 7);
  g_assert_cmpint (info.limits.max_bytes, ==, 10);
  g_assert_cmpuint (wait_count (rec, FALSE, 8), ==, 8);
  fx->b->klass->store_close (h);
}

static void
test_options_limits (void)
{
  check_limits (FALSE);
}

static void
test_options_limits_ephemeral (void)
{
  check_limits (TRUE);
}

/* Values past max_age go: by the dispatcher's sweep (the handle sees the
 * delete), and when a store is opened again. */
static void
test_options_max_age (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  g_autoptr(Recorder) rec2 = recorder_new (fx->b);
  ConatBackendStore *h = open_store (fx, "s", "age", FALSE, rec, NULL);
  const ConatChange *c;

  put (fx->b, h, "old", "1");
  g_assert_cmpuint (wait_count (rec, FALSE, 1), ==, 1);
  set_config (fx, "s", "age", NULL, 0, 300, 0, 0);
  g_assert_cmpuint (wait_count (rec, FALSE, 2), ==, 2);
  c = change_at (rec->changes, 1);
  g_assert_cmpstr (c->key, ==, "old");
  g_assert_null (c->value);
  g_assert_cmpuint (c->revision, ==, 2);
  g_assert_cmpuint (info_of (fx, "s", "age").keys, ==, 0);

  put (fx->b, h, "new", "2");
  fx->b->klass->store_close (h);
  fixture_reopen (fx);
  g_usleep (400 * 1000);  /* the value must grow old: nothing to poll */
  h = open_store (fx, "s", "age", FALSE, rec2, NULL);
  g_assert_cmpuint (rec2->loads->len, ==, 0);
  g_assert_cmpuint (info_of (fx, "s", "age").keys, ==, 0);
  fx->b->klass->store_close (h);
}

/* ------------------------------------------------------------------ PubSub */

static void
test_pubsub (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  const ConatBackendClass *k = fx->b->klass;
  g_autoptr(Recorder) a = recorder_new (fx->b);
  g_autoptr(Recorder) b = recorder_new (fx->b);
  g_autoptr(Recorder) nopath = recorder_new (fx->b);
  g_autoptr(Recorder) empty = recorder_new (fx->b);
  g_autoptr(Recorder) late = recorder_new (fx->b);
  g_autoptr(GBytes) m1 = bytes ("one");
  g_autoptr(GBytes) m2 = bytes ("two");
  g_autoptr(GBytes) huge = g_bytes_new_take (g_malloc0 (k->max_message_size (fx->b) + 1),
                                             k->max_message_size (fx->b) + 1);
  g_autoptr(GError) error = NULL;
  ConatBackendSub *sa = k->subscribe (fx->b, "p", "f.txt", "cursors", record_message, a, NULL);
  ConatBackendSub *sb = k->subscribe (fx->b, "p", "f.txt", "cursors", record_message, b, NULL);
  ConatBackendSub *sn = k->subscribe (fx->b, "p", NULL, "cursors", record_message, nopath, NULL);
  ConatBackendSub *se = k->subscribe (fx->b, "p", "", "cursors", record_message, empty, NULL);
  ConatBackendSub *sl;

  g_assert_true (k->publish (fx->b, "p", "f.txt", "cursors", m1, NULL));
  g_assert_true (k->publish (fx->b, "p", "f.txt", "cursors", m2, NULL));
  g_assert_true (k->publish (fx->b, "p", NULL, "cursors", m2, NULL));
  g_assert_false (k->publish (fx->b, "p", "f.txt", "cursors", huge, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  sl = k->subscribe (fx->b, "p", "f.txt", "cursors", record_message, late, NULL);
  g_assert_cmpuint (wait_count (a, TRUE, 2), ==, 2);
  g_assert_cmpuint (wait_count (b, TRUE, 2), ==, 2);
  g_assert_true (g_bytes_equal (g_ptr_array_index (a->messages, 0), m1));  /* in order */
  g_assert_true (g_bytes_equal (g_ptr_array_index (a->messages, 1), m2));
  g_assert_cmpuint (wait_count (nopath, TRUE, 1), ==, 1);
  drain (fx->b);
  g_assert_cmpuint (recorder_count (nopath, TRUE), ==, 1);  /* no cross-talk */
  g_assert_cmpuint (recorder_count (empty, TRUE), ==, 0);
  g_assert_cmpuint (recorder_count (late, TRUE), ==, 0);    /* no history */
  k->unsubscribe (sa);
  g_assert_true (k->publish (fx->b, "p", "f.txt", "cursors", m1, NULL));
  g_assert_cmpuint (wait_count (late, TRUE, 1), ==, 1);
  drain (fx->b);
  g_assert_cmpuint (recorder_count (a, TRUE), ==, 2);
  g_assert_cmpuint (recorder_count (b, TRUE), ==, 3);
  k->unsubscribe (sb);
  k->unsubscribe (sn);
  k->unsubscribe (se);
  k->unsubscribe (sl);
}

/* -------------------------------------------------------------- throughput */

static void
test_throughput (void)
{
  g_autoptr(Fixture) fx = fixture_new ();
  g_autoptr(Recorder) rec = recorder_new (fx->b);
  ConatBackendStore *h = open_store (fx, "s", "bulk", FALSE, rec, NULL);
  g_autoptr(GBytes) value = bytes ("{\"status\":\"ok\",\"n\":12345}");
  ConatPut puts[500];
  char keys[500][16];
  gint64 start = g_get_monotonic_time ();
  double seconds;

  for (guint batch = 0; batch < 20; batch++)
    {
      for (guint i = 0; i < 500; i++)
        {
          g_snprintf (keys[i], sizeof keys[i], "key-%u", batch * 500 + i);
          puts[i] = (ConatPut) { .key = keys[i], .value = value };
        }
      g_assert_true (fx->b->klass->put_many (h, puts, 500, NULL));
      for (guint i = 0; i < 500; i++)
        g_assert_cmpuint (puts[i].revision, ==, batch * 500 + i + 1);
    }
  seconds = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;
  g_test_message ("10000 confirmed puts in %.3f s: %.0f puts/s", seconds, 10000 / seconds);
  g_assert_cmpuint (wait_count (rec, FALSE, 10000), ==, 10000);
  g_assert_cmpuint (info_of (fx, "s", "bulk").keys, ==, 10000);
  fx->b->klass->store_close (h);
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *home = g_dir_make_tmp ("test-embedded-home-XXXXXX", &error);
  int ret;

  g_assert_no_error (error);
  g_setenv ("XDG_DATA_HOME", home, TRUE);  /* before GLib reads it */
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/embedded/open/shared", test_open_shared);
  g_test_add_func ("/embedded/open/default-dir", test_open_default_dir);
  g_test_add_func ("/embedded/open/errors", test_open_errors);
  g_test_add_func ("/embedded/open/locked", test_open_locked);
  g_test_add_func ("/embedded/namespace/scopes", test_namespace_scopes);
  g_test_add_func ("/embedded/namespace/stores", test_namespace_stores);
  g_test_add_func ("/embedded/namespace/ephemeral-scope", test_namespace_ephemeral_scope);
  g_test_add_func ("/embedded/put/revisions", test_put_revisions);
  g_test_add_func ("/embedded/put/cas", test_put_cas);
  g_test_add_func ("/embedded/put/batch-errors", test_put_batch_errors);
  g_test_add_func ("/embedded/change/load", test_load);
  g_test_add_func ("/embedded/change/two-handles", test_change_two_handles);
  g_test_add_func ("/embedded/change/reentry", test_change_reentry);
  g_test_add_func ("/embedded/change/close-waits", test_change_close_waits);
  g_test_add_func ("/embedded/persistence/reopen", test_persistence);
  g_test_add_func ("/embedded/persistence/kill", test_persistence_kill);
  g_test_add_func ("/embedded/ephemeral", test_ephemeral);
  g_test_add_func ("/embedded/options/kept", test_options_kept);
  g_test_add_func ("/embedded/options/migration", test_options_migration);
  g_test_add_func ("/embedded/options/limits", test_options_limits);
  g_test_add_func ("/embedded/options/limits-ephemeral", test_options_limits_ephemeral);
  g_test_add_func ("/embedded/options/max-age", test_options_max_age);
  g_test_add_func ("/embedded/load-progress", test_load_progress);
  g_test_add_func ("/embedded/pubsub", test_pubsub);
  g_test_add_func ("/embedded/throughput", test_throughput);
  ret = g_test_run ();
  rm_rf (home);
  return ret;
}
