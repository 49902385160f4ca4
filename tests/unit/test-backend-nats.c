/* test-backend-nats.c — the NATS backend against a real nats-server.
 *
 * Each test starts `nats-server -js` on a free loopback port with its store
 * in a temporary directory and stops it by pid.  The server also gets
 * PR_SET_PDEATHSIG, so a failed assertion (abort) leaves no process behind.
 */
#include "backend.h"
#include "nats-names.h"
#include "nats-private.h"

#include <glib/gstdio.h>
#include <errno.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 30000

static GThread *main_thread;

/* ---------------------------------------------------------------- server */

typedef struct {
  char *dir;       /* temporary: store dir and password files */
  int port;
  GPid pid;
  char *config;    /* a configuration file, or NULL */
} Server;

static char *
nats_server_path (void)
{
  const char *env = g_getenv ("NATS_SERVER");
  const char *sbin[] = { "/usr/sbin/nats-server", "/usr/local/sbin/nats-server" };
  char *path;

  if (env != NULL)
    return g_strdup (env);
  path = g_find_program_in_path ("nats-server");
  for (guint i = 0; path == NULL && i < G_N_ELEMENTS (sbin); i++)
    if (g_file_test (sbin[i], G_FILE_TEST_IS_EXECUTABLE))
      path = g_strdup (sbin[i]);
  return path;
}

static int
free_port (void)
{
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
  socklen_t len = sizeof addr;
  int fd = socket (AF_INET, SOCK_STREAM, 0);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (bind (fd, (struct sockaddr *) &addr, sizeof addr), ==, 0);
  g_assert_cmpint (getsockname (fd, (struct sockaddr *) &addr, &len), ==, 0);
  close (fd);
  return ntohs (addr.sin_port);
}

static gboolean
port_accepts (int port)
{
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons (port),
                              .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
  int fd = socket (AF_INET, SOCK_STREAM, 0);
  gboolean ok = connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0;

  close (fd);
  return ok;
}

static void
child_setup (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static void
server_start (Server *srv)
{
  g_autofree char *exe = nats_server_path ();
  g_autofree char *port = g_strdup_printf ("%d", srv->port);
  g_autofree char *store = g_build_filename (srv->dir, "js", NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  int status;

  g_assert_nonnull (exe);
  g_ptr_array_add (argv, exe);
  g_ptr_array_add (argv, "-js");
  g_ptr_array_add (argv, "-a");
  g_ptr_array_add (argv, "127.0.0.1");
  g_ptr_array_add (argv, "-p");
  g_ptr_array_add (argv, port);
  g_ptr_array_add (argv, "-sd");
  g_ptr_array_add (argv, store);
  if (srv->config)
    {
      g_ptr_array_add (argv, "-c");
      g_ptr_array_add (argv, srv->config);
    }
  g_ptr_array_add (argv, NULL);
  g_spawn_async (NULL, (char **) argv->pdata, NULL,
                 G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                 child_setup, NULL, &srv->pid, &error);
  g_assert_no_error (error);
  while (!port_accepts (srv->port))
    {
      g_assert_cmpint (waitpid (srv->pid, &status, WNOHANG), ==, 0);  /* still running */
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10000);
    }
}

static void
server_stop_signal (Server *srv, int sig)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  int status;

  if (srv->pid <= 0)
    return;
  kill (srv->pid, sig);
  while (waitpid (srv->pid, &status, WNOHANG) == 0)
    {
      if (g_get_monotonic_time () > deadline)
        {
          kill (srv->pid, SIGKILL);
          waitpid (srv->pid, &status, 0);
          break;
        }
      g_usleep (10000);
    }
  srv->pid = 0;
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)))
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        remove_tree (child);
      else
        g_unlink (child);
    }
  if (dir)
    g_dir_close (dir);
  g_rmdir (path);
}

typedef struct {
  Server srv;
  char *url;
} Fixture;

static void
fixture_setup (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fx->srv.dir = g_dir_make_tmp ("conat-nats-XXXXXX", &error);
  g_assert_no_error (error);
  fx->srv.port = free_port ();
  if (data != NULL)
    {
      fx->srv.config = g_build_filename (fx->srv.dir, "server.conf", NULL);
      g_assert_true (g_file_set_contents (fx->srv.config, data, -1, NULL));
    }
  fx->url = g_strdup_printf ("nats://127.0.0.1:%d", fx->srv.port);
  server_start (&fx->srv);
}

static void
fixture_teardown (Fixture *fx, gconstpointer data)
{
  server_stop_signal (&fx->srv, SIGTERM);
  remove_tree (fx->srv.dir);
  g_free (fx->srv.dir);
  g_free (fx->srv.config);
  g_free (fx->url);
}

static ConatBackend *
backend_new (Fixture *fx)
{
  ConatNatsOptions opts = { .servers = fx->url };
  g_autoptr (GError) error = NULL;
  ConatBackend *be = conat_backend_nats_new (&opts, &error);

  g_assert_no_error (error);
  g_assert_nonnull (be);
  g_assert_cmpstr (be->klass->name, ==, "nats");
  return be;
}

static void
backend_free (ConatBackend *be)
{
  be->klass->free (be);
}

static gboolean
backend_connected (ConatBackend *be)
{
  ConatClientStatus status = { 0 };
  gboolean connected;

  be->klass->get_status (be, &status);
  connected = status.connected;
  g_free (status.servers);
  g_free (status.last_error);
  return connected;
}

/* -------------------------------------------------------------- recorder */

typedef struct {
  char *key;
  GBytes *value;
  guint64 revision;
  gint64 time_ms;
  guint64 writer_id;
  guint64 gen;
} Seen;

typedef struct {
  GMutex mu;
  GCond cond;
  GPtrArray *loaded;   /* Seen*, from on_load */
  GPtrArray *changes;  /* Seen*, from on_change */
  guint64 last_revision;
  guint restarts;      /* changes with no key: the store started over */
  gboolean out_of_order;
  gboolean on_caller_thread;
} Recorder;

static void
seen_free (gpointer data)
{
  Seen *s = data;

  g_free (s->key);
  if (s->value)
    g_bytes_unref (s->value);
  g_free (s);
}

static Seen *
seen_new (const ConatChange *c)
{
  Seen *s = g_new0 (Seen, 1);

  s->key = g_strdup (c->key);
  s->value = c->value ? g_bytes_ref (c->value) : NULL;
  s->revision = c->revision;
  s->time_ms = c->time_ms;
  s->writer_id = c->writer_id;
  s->gen = c->gen;
  return s;
}

static void
recorder_init (Recorder *r)
{
  memset (r, 0, sizeof *r);
  g_mutex_init (&r->mu);
  g_cond_init (&r->cond);
  r->loaded = g_ptr_array_new_with_free_func (seen_free);
  r->changes = g_ptr_array_new_with_free_func (seen_free);
}

static void
recorder_clear (Recorder *r)
{
  g_ptr_array_unref (r->loaded);
  g_ptr_array_unref (r->changes);
  g_cond_clear (&r->cond);
  g_mutex_clear (&r->mu);
}

static void
on_load (const ConatChange *c, gpointer data)
{
  Recorder *r = data;

  g_mutex_lock (&r->mu);
  g_ptr_array_add (r->loaded, seen_new (c));
  g_mutex_unlock (&r->mu);
}

static void
on_change (const ConatChange *c, gpointer data)
{
  Recorder *r = data;

  g_mutex_lock (&r->mu);
  if (c->key == NULL) /* the store starts over: revisions begin again */
    {
      r->restarts++;
      r->last_revision = 0;
      g_mutex_unlock (&r->mu);
      return;
    }
  if (c->revision <= r->last_revision)
    {
      g_test_message ("change %s at %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT, c->key,
                      c->revision, r->last_revision);
      r->out_of_order = TRUE;
    }
  r->last_revision = c->revision;
  if (g_thread_self () == main_thread)
    r->on_caller_thread = TRUE;
  g_ptr_array_add (r->changes, seen_new (c));
  g_cond_broadcast (&r->cond);
  g_mutex_unlock (&r->mu);
}

/* Waits until at least COUNT changes arrived. */
static void
recorder_wait (Recorder *r, guint count)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  g_mutex_lock (&r->mu);
  while (r->changes->len < count)
    if (!g_cond_wait_until (&r->cond, &r->mu, deadline))
      break;
  g_assert_cmpuint (r->changes->len, >=, count);
  g_assert_false (r->out_of_order);
  g_assert_false (r->on_caller_thread);
  g_mutex_unlock (&r->mu);
}

static Seen *
recorder_change (Recorder *r, guint i)
{
  Seen *s;

  g_mutex_lock (&r->mu);
  s = r->changes->pdata[i];
  g_mutex_unlock (&r->mu);
  return s;
}

static Seen *
find_loaded (Recorder *r, const char *key)
{
  for (guint i = 0; i < r->loaded->len; i++)
    if (strcmp (((Seen *) r->loaded->pdata[i])->key, key) == 0)
      return r->loaded->pdata[i];
  return NULL;
}

static ConatBackendStore *
store_open (ConatBackend *be, const char *scope, const char *name, gboolean ephemeral,
            Recorder *r, guint64 *loaded)
{
  g_autoptr (GError) error = NULL;
  guint64 rev = 0;
  ConatBackendStore *st = be->klass->store_open (be, scope, name, ephemeral, on_load, on_change,
                                                 NULL, r, loaded ? loaded : &rev, &error);

  g_assert_no_error (error);
  g_assert_nonnull (st);
  return st;
}

static void
put_init (ConatPut *p, const char *key, GBytes *value, guint64 writer, guint64 gen)
{
  memset (p, 0, sizeof *p);
  p->key = key;
  p->value = value;
  p->writer_id = writer;
  p->gen = gen;
}

static void
puts_clear (ConatPut *puts, guint n)
{
  for (guint i = 0; i < n; i++)
    g_clear_error (&puts[i].error);
}

/* One write; returns its revision (0 with *ERROR_CODE set if refused). */
static guint64
put_one (ConatBackend *be, ConatBackendStore *st, const char *key, GBytes *value,
         guint64 writer, guint64 gen)
{
  g_autoptr (GError) error = NULL;
  ConatPut p;
  guint64 rev;

  put_init (&p, key, value, writer, gen);
  g_assert_true (be->klass->put_many (st, &p, 1, &error));
  g_assert_no_error (error);
  g_assert_no_error (p.error);
  g_assert_cmpuint (p.revision, >, 0);
  g_assert_cmpint (p.time_ms, >, 0);
  rev = p.revision;
  puts_clear (&p, 1);
  return rev;
}

static GBytes *
bytes (const char *s)
{
  return g_bytes_new (s, strlen (s));
}

static gboolean
has_name (GPtrArray *names, const char *name)
{
  for (guint i = 0; names && i < names->len; i++)
    if (strcmp (names->pdata[i], name) == 0)
      return TRUE;
  return FALSE;
}

/* ----------------------------------------------------------------- names */

static void
test_names (void)
{
  const char *keys[] = { "", "a", "a.b", ".", "..", ".a", "a.", "a..b", "a...b", "=", "=00",
                         "a b", "*", ">", "x=y", "d\xc3\xa9j\xc3\xa0", "\x01\xff",
                         "a/b\\c_-", "_kv.x", "%2F" };
  g_autoptr (GError) error = NULL;
  g_autofree char *long_name = g_strnfill (200, '.');
  char *bucket, *scope = NULL, *store = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autofree char *enc = conat_nats_key_encode (keys[i]);
      g_autofree char *dec = conat_nats_key_decode (enc, strlen (enc));
      g_autofree char *tok = conat_nats_token_encode (keys[i]);
      g_autofree char *tdec = conat_nats_token_decode (tok, strlen (tok));

      g_assert_cmpstr (dec, ==, keys[i]);
      g_assert_cmpstr (tdec, ==, keys[i]);
      g_assert_cmpuint (strlen (enc), >, 0);
      g_assert_false (enc[0] == '.' || enc[strlen (enc) - 1] == '.');
      g_assert_null (strstr (enc, ".."));
      g_assert_cmpuint (strspn (enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789_-/=."), ==, strlen (enc));
      g_assert_null (strchr (tok, '.'));
    }
  {
    g_autofree char *e0 = conat_nats_key_encode ("");

    g_autofree char *e1 = conat_nats_key_encode ("a..b");
    g_autofree char *e2 = conat_nats_key_encode ("x y=");
    g_autofree char *e3 = conat_nats_key_encode ("dir/f\\g_-");

    g_assert_cmpstr (e0, ==, "=00");
    g_assert_cmpstr (e1, ==, "a.=2Eb");
    g_assert_cmpstr (e2, ==, "x=20y=3D");
    g_assert_cmpstr (e3, ==, "dir/f=5Cg_-");
  }
  /* Only the canonical form decodes. */
  g_assert_null (conat_nats_key_decode ("=41", 3));
  g_assert_null (conat_nats_key_decode ("a=2e", 4));
  g_assert_null (conat_nats_key_decode ("a=b", 3));
  g_assert_null (conat_nats_key_decode (".a", 2));

  bucket = conat_nats_bucket_name ("project-1", "my store", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bucket, ==, "conat_project_2D1-my_20store");
  g_assert_true (conat_nats_bucket_parse (bucket, &scope, &store));
  g_assert_cmpstr (scope, ==, "project-1");
  g_assert_cmpstr (store, ==, "my store");
  g_free (bucket);
  g_free (scope);
  g_free (store);
  g_assert_false (conat_nats_bucket_parse ("conat_scopes", &scope, &store));
  g_assert_false (conat_nats_bucket_parse ("conat_a-b-c", &scope, &store));
  g_assert_false (conat_nats_bucket_parse ("conat_a_41-b", &scope, &store));
  g_assert_false (conat_nats_bucket_parse ("other_a-b", &scope, &store));

  g_assert_null (conat_nats_bucket_name ("s", long_name, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG);
  g_clear_error (&error);
  g_assert_null (conat_nats_bucket_name ("", "x", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME);
  g_clear_error (&error);

  {
    g_autofree char *s1 = conat_nats_channel_subject ("hub", NULL, "cursors", NULL);
    g_autofree char *s2 = conat_nats_channel_subject ("p.1", "a b/c.txt", "x>", NULL);

    g_assert_cmpstr (s1, ==, "conat.hub.pubsub.cursors");
    g_assert_cmpstr (s2, ==, "conat.p=2E1.pubsub.x=3E.a=20b/c=2Etxt");
  }
}

/* Channel subjects parse back; a scope's wildcard matches its channels only. */
static void
test_channel_names (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *wild = conat_nats_channel_wildcard ("p.1 *>", &error);
  g_autofree char *long_scope = g_strnfill (3000, 's');
  g_autofree char *long_subject = g_strconcat ("conat.s.pubsub.", long_scope, NULL);
  const char *const bad[] = {
    "conat.p.pubsub", "conat.p.pubsub.a.b.c", "conat.p.pubsub.=41", "conat.p.pubsub.=00",
    "conat.p.pubsub.a.", "conat.p.pubsub..a", "conat.p.pubsub.a=2", "conat.p.pubsub.a=2e",
    "conat.=00.pubsub.a", "conat.p.pubsub.a.b=zz", "conat.p.other.a", "other.p.pubsub.a",
    "conat.p.pubsub.*", "conat.p.pubsub.>", "conat.p.pubsub.a b", long_subject,
  };
  char odd[256];

  g_assert_no_error (error);
  g_assert_cmpstr (wild, ==, "conat.p=2E1=20=2A=3E.pubsub.>");
  g_assert_null (conat_nats_channel_wildcard (long_scope, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG);
  g_clear_error (&error);
  for (int i = 1; i < 256; i++)  /* every byte but NUL */
    odd[i - 1] = (char) i;
  odd[255] = '\0';
  for (int with_path = 0; with_path < 2; with_path++)
    {
      g_autofree char *subject = conat_nats_channel_subject (odd, with_path ? odd : NULL, odd,
                                                             &error);
      g_autofree char *scope = NULL, *name = NULL, *path = NULL;

      g_assert_no_error (error);
      g_assert_true (conat_nats_channel_parse (subject, &scope, &name, &path));
      g_assert_cmpstr (scope, ==, odd);
      g_assert_cmpstr (name, ==, odd);
      g_assert_cmpstr (path, ==, with_path ? odd : NULL);
    }
  {
    g_autofree char *scope = NULL, *name = NULL, *path = NULL;

    g_assert_true (conat_nats_channel_parse ("conat.p.pubsub.a.=00", &scope, &name, &path));
    g_assert_cmpstr (path, ==, "");  /* the empty path is a path */
  }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      char *scope = NULL, *name = NULL, *path = NULL;

      g_assert_false (conat_nats_channel_parse (bad[i], &scope, &name, &path));
      g_assert_null (scope);
    }
}

/* ------------------------------------------------------------- namespace */

static void
test_namespace (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) scopes = NULL;
  g_autoptr (GPtrArray) stores = NULL;
  ConatStoreInfo info = { 0 };
  ConatBackendStore *st;
  Recorder r;

  recorder_init (&r);
  g_assert_false (a->klass->has_scope (a, "proj 1", &error));
  g_assert_no_error (error);
  g_assert_true (a->klass->create_scope (a, "proj 1", &error));
  g_assert_no_error (error);
  g_assert_false (a->klass->create_scope (a, "proj 1", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_true (b->klass->has_scope (b, "proj 1", &error));
  scopes = b->klass->list_scopes (b, &error);
  g_assert_no_error (error);
  g_assert_true (has_name (scopes, "proj 1"));
  g_clear_pointer (&scopes, g_ptr_array_unref);

  /* An empty scope lists no stores; a missing one is NOT_FOUND. */
  stores = b->klass->list_stores (b, "proj 1", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (stores->len, ==, 0);
  g_clear_pointer (&stores, g_ptr_array_unref);
  g_assert_null (b->klass->list_stores (b, "nope", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_assert_true (a->klass->create_store (a, "proj 1", "settings", FALSE, &error));
  g_assert_true (a->klass->create_store (a, "proj 1", "cursors.x", TRUE, &error));
  g_assert_true (a->klass->create_store (a, "hub", "s", FALSE, &error));  /* makes the scope */
  g_assert_no_error (error);
  g_assert_false (a->klass->create_store (a, "proj 1", "settings", FALSE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_EXISTS);
  g_clear_error (&error);

  stores = b->klass->list_stores (b, "proj 1", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (stores->len, ==, 2);
  g_assert_true (has_name (stores, "settings"));
  g_assert_true (has_name (stores, "cursors.x"));
  scopes = b->klass->list_scopes (b, &error);
  g_assert_true (has_name (scopes, "hub"));
  g_assert_true (has_name (scopes, "proj 1"));
  g_clear_pointer (&scopes, g_ptr_array_unref);

  g_assert_true (b->klass->store_info (b, "proj 1", "settings", &info, TRUE, &error));
  g_assert_false (info.ephemeral);
  g_assert_cmpuint (info.keys, ==, 0);
  g_assert_true (b->klass->store_info (b, "proj 1", "cursors.x", &info, TRUE, &error));
  g_assert_true (info.ephemeral);
  g_assert_false (b->klass->store_info (b, "proj 1", "missing", &info, TRUE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_clear_error (&error);

  /* Ephemeral flag: flips while empty, BUSY with keys. */
  g_assert_true (a->klass->set_store_ephemeral (a, "proj 1", "settings", TRUE, &error));
  g_assert_no_error (error);
  g_assert_true (b->klass->store_info (b, "proj 1", "settings", &info, TRUE, &error));
  g_assert_true (info.ephemeral);
  g_assert_true (a->klass->set_store_ephemeral (a, "proj 1", "settings", FALSE, &error));
  g_assert_true (b->klass->store_info (b, "proj 1", "settings", &info, TRUE, &error));
  g_assert_false (info.ephemeral);

  st = store_open (a, "proj 1", "settings", FALSE, &r, NULL);
  put_one (a, st, "k", bytes ("12345"), 1, 1);
  g_assert_true (b->klass->store_info (b, "proj 1", "settings", &info, TRUE, &error));
  g_assert_cmpuint (info.keys, ==, 1);
  g_assert_cmpuint (info.bytes, ==, 5);
  g_assert_false (b->klass->set_store_ephemeral (b, "proj 1", "settings", TRUE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_BUSY);
  g_clear_error (&error);
  g_assert_false (b->klass->remove_store (b, "proj 1", "settings", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_EMPTY);
  g_clear_error (&error);
  put_one (a, st, "k", NULL, 1, 2);
  g_assert_true (b->klass->store_info (b, "proj 1", "settings", &info, TRUE, &error));
  g_assert_cmpuint (info.keys, ==, 0);
  a->klass->store_close (st);

  g_assert_false (a->klass->remove_scope (a, "proj 1", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_EMPTY);
  g_clear_error (&error);
  g_assert_true (b->klass->remove_store (b, "proj 1", "settings", &error));
  g_assert_true (b->klass->remove_store (b, "proj 1", "cursors.x", &error));
  g_assert_no_error (error);
  g_assert_false (b->klass->remove_store (b, "proj 1", "settings", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_clear_error (&error);
  stores = a->klass->list_stores (a, "proj 1", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (stores->len, ==, 0);
  g_assert_true (a->klass->remove_scope (a, "proj 1", &error));
  g_assert_no_error (error);
  g_assert_false (b->klass->has_scope (b, "proj 1", &error));
  g_assert_false (b->klass->remove_scope (b, "proj 1", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND);
  g_clear_error (&error);
  scopes = b->klass->list_scopes (b, &error);
  g_assert_false (has_name (scopes, "proj 1"));
  g_assert_true (has_name (scopes, "hub"));

  recorder_clear (&r);
  backend_free (a);
  backend_free (b);
}

/* ------------------------------------------------------- puts and changes */

static void
test_put_change (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v1 = bytes ("one");
  g_autoptr (GBytes) v2 = bytes ("two");
  g_autoptr (GBytes) v3 = bytes ("");
  Recorder ra, rb, rc;
  ConatBackendStore *sa, *sb, *sc;
  ConatPut puts[3];
  guint64 loaded = 99;
  Seen *s;

  recorder_init (&ra);
  recorder_init (&rb);
  recorder_init (&rc);
  sa = store_open (a, "p", "kv", FALSE, &ra, &loaded);
  g_assert_cmpuint (loaded, ==, 0);
  sb = store_open (b, "p", "kv", FALSE, &rb, NULL);

  put_init (&puts[0], "x", v1, 0xabc, 1);
  put_init (&puts[1], "y", v2, 0xabc, 2);
  put_init (&puts[2], "z", v3, 0xabc, 3);
  g_assert_true (a->klass->put_many (sa, puts, 3, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < 3; i++)
    {
      g_assert_no_error (puts[i].error);
      g_assert_cmpuint (puts[i].revision, ==, i + 1);
    }
  puts_clear (puts, 3);

  /* Both handles see every change, with the writer's id and gen. */
  recorder_wait (&ra, 3);
  recorder_wait (&rb, 3);
  for (guint i = 0; i < 3; i++)
    {
      Seen *x = recorder_change (&ra, i), *y = recorder_change (&rb, i);

      g_assert_cmpuint (x->revision, ==, i + 1);
      g_assert_cmpuint (y->revision, ==, i + 1);
      g_assert_cmpuint (x->writer_id, ==, 0xabc);
      g_assert_cmpuint (y->gen, ==, i + 1);
      g_assert_cmpstr (x->key, ==, y->key);
      g_assert_true (g_bytes_equal (x->value, y->value));
      g_assert_cmpint (x->time_ms, >, 0);
    }
  g_assert_cmpuint (g_bytes_get_size (recorder_change (&rb, 2)->value), ==, 0);

  /* A change from the other connection, then a delete. */
  g_assert_cmpuint (put_one (b, sb, "x", v2, 0xdef, 7), ==, 4);
  g_assert_cmpuint (put_one (b, sb, "y", NULL, 0xdef, 8), ==, 5);
  recorder_wait (&ra, 5);
  s = recorder_change (&ra, 3);
  g_assert_cmpstr (s->key, ==, "x");
  g_assert_cmpuint (s->writer_id, ==, 0xdef);
  g_assert_cmpuint (s->gen, ==, 7);
  s = recorder_change (&ra, 4);
  g_assert_cmpstr (s->key, ==, "y");
  g_assert_null (s->value);

  /* A late joiner loads the current state. */
  sc = store_open (b, "p", "kv", FALSE, &rc, &loaded);
  g_assert_cmpuint (loaded, ==, 5);
  g_assert_cmpuint (rc.loaded->len, ==, 2);
  g_assert_true (g_bytes_equal (find_loaded (&rc, "x")->value, v2));
  g_assert_cmpuint (find_loaded (&rc, "x")->writer_id, ==, 0xdef);
  g_assert_cmpuint (find_loaded (&rc, "z")->revision, ==, 3);
  g_assert_null (find_loaded (&rc, "y"));

  /* The same write sent twice (a retry) is stored once. */
  put_init (&puts[0], "w", v1, 0xabc, 9);
  g_assert_true (a->klass->put_many (sa, puts, 1, &error));
  g_assert_cmpuint (puts[0].revision, ==, 6);
  puts_clear (puts, 1);
  put_init (&puts[0], "w", v1, 0xabc, 9);
  g_assert_true (a->klass->put_many (sa, puts, 1, &error));
  g_assert_cmpuint (puts[0].revision, ==, 6);
  puts_clear (puts, 1);

  a->klass->store_close (sa);
  b->klass->store_close (sb);
  b->klass->store_close (sc);
  recorder_clear (&ra);
  recorder_clear (&rb);
  recorder_clear (&rc);
  backend_free (a);
  backend_free (b);
}

/* The server loses the consumer behind a watch (deleted here by another
 * client; a cluster node that dies does the same): the watch misses its
 * heartbeats, resumes after the last revision, and later changes arrive. */
static void
test_watch_consumer_lost (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GBytes) v1 = bytes ("one");
  g_autoptr (GBytes) v2 = bytes ("two");
  g_autofree char *bucket = conat_nats_bucket_name ("p", "lost", NULL);
  g_autofree char *stream = g_strconcat ("KV_", bucket, NULL);
  jsConsumerNamesList *names = NULL;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  ConatBackendStore *sa, *sb;
  Recorder ra, rb;

  recorder_init (&ra);
  recorder_init (&rb);
  sa = store_open (a, "p", "lost", FALSE, &ra, NULL);
  sb = store_open (b, "p", "lost", FALSE, &rb, NULL);
  g_assert_cmpuint (put_one (b, sb, "x", v1, 0xdef, 1), ==, 1);
  recorder_wait (&ra, 1);

  g_assert_cmpint (natsConnection_ConnectTo (&nc, fx->url), ==, NATS_OK);
  g_assert_cmpint (natsConnection_JetStream (&js, nc, NULL), ==, NATS_OK);
  g_assert_cmpint (js_ConsumerNames (&names, js, stream, NULL, NULL), ==, NATS_OK);
  g_assert_cmpint (names->Count, ==, 2);  /* a's and b's watches */
  for (int i = 0; i < names->Count; i++)
    g_assert_cmpint (js_DeleteConsumer (js, stream, names->List[i], NULL, NULL), ==, NATS_OK);
  jsConsumerNamesList_Destroy (names);

  g_assert_cmpuint (put_one (b, sb, "x", v2, 0xdef, 2), ==, 2);
  recorder_wait (&ra, 2);
  g_assert_cmpuint (recorder_change (&ra, 1)->revision, ==, 2);
  g_assert_true (g_bytes_equal (recorder_change (&ra, 1)->value, v2));

  jsCtx_Destroy (js);
  natsConnection_Destroy (nc);
  a->klass->store_close (sa);
  b->klass->store_close (sb);
  recorder_clear (&ra);
  recorder_clear (&rb);
  backend_free (a);
  backend_free (b);
}

static void
test_cas (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  ConatBackendStore *st;
  ConatPut p;
  Recorder r;
  guint64 rev;

  recorder_init (&r);
  st = store_open (a, "p", "merge", FALSE, &r, NULL);

  put_init (&p, "k", v, 1, 1);
  p.cas = TRUE;
  p.expected_revision = 0;
  g_assert_true (a->klass->put_many (st, &p, 1, &error));
  g_assert_no_error (p.error);
  rev = p.revision;
  g_assert_cmpuint (rev, ==, 1);

  put_init (&p, "k", v, 1, 2);
  p.cas = TRUE;
  g_assert_true (a->klass->put_many (st, &p, 1, &error));
  g_assert_error (p.error, CONAT_ERROR, CONAT_ERROR_WRONG_REVISION);
  g_assert_cmpuint (p.revision, ==, 0);
  puts_clear (&p, 1);

  put_init (&p, "k", v, 1, 3);
  p.cas = TRUE;
  p.expected_revision = rev;
  g_assert_true (a->klass->put_many (st, &p, 1, &error));
  g_assert_no_error (p.error);
  g_assert_cmpuint (p.revision, ==, 2);

  put_init (&p, "k", v, 1, 4);
  p.cas = TRUE;
  p.expected_revision = rev;  /* stale */
  g_assert_true (a->klass->put_many (st, &p, 1, &error));
  g_assert_error (p.error, CONAT_ERROR, CONAT_ERROR_WRONG_REVISION);
  puts_clear (&p, 1);

  /* "Must not exist" holds over a delete marker. */
  put_one (a, st, "k", NULL, 1, 5);
  put_init (&p, "k", v, 1, 6);
  p.cas = TRUE;
  g_assert_true (a->klass->put_many (st, &p, 1, &error));
  g_assert_no_error (p.error);
  g_assert_cmpuint (p.revision, ==, 4);
  g_assert_no_error (error);

  a->klass->store_close (st);
  recorder_clear (&r);
  backend_free (a);
}

/* ------------------------------------------------------ keys and values */

static void
test_keys_values (Fixture *fx, gconstpointer data)
{
  const char *keys[] = { "", ".", "..", "a..b", ".hidden", "trail.", "a b", "*", ">", "x=y",
                         "=00", "d\xc3\xa9j\xc3\xa0 vu", "\x01\x7f\xff", "a/b\\c", "_kv.x",
                         "%2F", "tab\there", "new\nline" };
  ConatBackend *a = backend_new (fx);
  g_autoptr (GError) error = NULL;
  guchar all[256];
  g_autoptr (GBytes) every = NULL;
  ConatPut puts[G_N_ELEMENTS (keys)];
  ConatBackendStore *st, *st2;
  Recorder r, r2;

  for (guint i = 0; i < 256; i++)
    all[i] = i;
  every = g_bytes_new (all, sizeof all);
  recorder_init (&r);
  recorder_init (&r2);
  st = store_open (a, "odd scope/\xc3\xa9", "odd.store \x01", FALSE, &r, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autoptr (GBytes) v = g_bytes_new_from_bytes (every, i, 256 - i);

      put_init (&puts[i], keys[i], v, 5, i + 1);
      puts[i].value = g_bytes_ref (v);
    }
  g_assert_true (a->klass->put_many (st, puts, G_N_ELEMENTS (keys), &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_assert_no_error (puts[i].error);
      g_assert_cmpuint (puts[i].revision, ==, i + 1);
    }
  recorder_wait (&r, G_N_ELEMENTS (keys));
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      Seen *s = recorder_change (&r, i);

      g_assert_cmpstr (s->key, ==, keys[i]);
      g_assert_true (g_bytes_equal (s->value, puts[i].value));
    }

  /* A new handle loads every key back, byte for byte. */
  st2 = store_open (a, "odd scope/\xc3\xa9", "odd.store \x01", FALSE, &r2, NULL);
  g_assert_cmpuint (r2.loaded->len, ==, G_N_ELEMENTS (keys));
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      Seen *s = find_loaded (&r2, keys[i]);

      g_assert_nonnull (s);
      g_assert_true (g_bytes_equal (s->value, puts[i].value));
      g_bytes_unref (puts[i].value);
    }
  puts_clear (puts, G_N_ELEMENTS (keys));
  {
    g_autoptr (GPtrArray) scopes = a->klass->list_scopes (a, &error);
    g_autoptr (GPtrArray) stores = a->klass->list_stores (a, "odd scope/\xc3\xa9", &error);

    g_assert_true (has_name (scopes, "odd scope/\xc3\xa9"));
    g_assert_true (has_name (stores, "odd.store \x01"));
  }

  a->klass->store_close (st);
  a->klass->store_close (st2);
  recorder_clear (&r);
  recorder_clear (&r2);
  backend_free (a);
}

static void
test_limits (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autofree char *long_key = g_strnfill (5000, 'k');
  g_autofree char *odd_long_key = g_strnfill (1200, ' ');  /* 3600 bytes encoded */
  g_autoptr (GBytes) v = bytes ("v");
  g_autoptr (GBytes) big = NULL;
  g_autoptr (GBytes) max = NULL;
  g_autoptr (GBytes) too_big = NULL;
  ConatBackendStore *st;
  ConatPut puts[3];
  gsize limit;
  Recorder r;

  recorder_init (&r);
  st = store_open (a, "p", "limits", FALSE, &r, NULL);

  /* Keys that would overflow the server's control line are never sent. */
  put_init (&puts[0], long_key, v, 1, 1);
  put_init (&puts[1], "fine", v, 1, 2);
  put_init (&puts[2], odd_long_key, v, 1, 3);
  g_assert_true (a->klass->put_many (st, puts, 3, &error));
  g_assert_no_error (error);
  g_assert_error (puts[0].error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG);
  g_assert_no_error (puts[1].error);
  g_assert_error (puts[2].error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG);
  g_assert_cmpuint (puts[1].revision, ==, 1);
  puts_clear (puts, 3);
  g_assert_true (backend_connected (a));
  g_assert_cmpuint (put_one (a, st, "after", v, 1, 4), ==, 2);

  /* Values: up to max_value_size, TOO_BIG beyond, and the connection stays. */
  limit = a->klass->max_value_size (st);
  g_assert_cmpuint (limit, >, 1000 * 1000);
  g_assert_cmpuint (limit, <=, 1024 * 1024);
  big = g_bytes_new_take (g_malloc0 (limit + 1), limit + 1);
  max = g_bytes_new_from_bytes (big, 0, limit);
  too_big = g_bytes_new_from_bytes (big, 0, limit + 1);
  put_init (&puts[0], "big", too_big, 1, 5);
  put_init (&puts[1], "max", max, 1, 6);
  g_assert_true (a->klass->put_many (st, puts, 2, &error));
  g_assert_error (puts[0].error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  g_assert_no_error (puts[1].error);
  g_assert_cmpuint (puts[1].revision, ==, 3);
  puts_clear (puts, 2);
  g_assert_true (backend_connected (a));
  g_assert_cmpuint (put_one (a, st, "after2", v, 1, 7), ==, 4);
  recorder_wait (&r, 4);

  a->klass->store_close (st);
  recorder_clear (&r);
  backend_free (a);
}

/* A put refused with CODE. */
static void
put_refused (ConatBackend *be, ConatBackendStore *st, const char *key, GBytes *value,
             guint64 gen, gint code)
{
  g_autoptr (GError) error = NULL;
  ConatPut p;

  put_init (&p, key, value, 1, gen);
  g_assert_true (be->klass->put_many (st, &p, 1, &error));
  g_assert_no_error (error);
  g_assert_error (p.error, CONAT_ERROR, code);
  g_assert_cmpuint (p.revision, ==, 0);
  puts_clear (&p, 1);
}

/* Merge and limits live in the bucket's config: another client sees them,
 * and the server refuses over-limit writes. */
static void
test_options (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  g_autoptr (GBytes) big = bytes ("0123456789abcdef");
  ConatStoreLimits limits = { 10, 0, 0, 2 };
  ConatStoreInfo info;
  ConatBackendStore *st;
  Recorder r;

  recorder_init (&r);
  st = store_open (a, "p", "opts", FALSE, &r, NULL);
  g_assert_true (b->klass->store_info (b, "p", "opts", &info, TRUE, &error));
  g_assert_cmpstr (info.merge, ==, "lww");
  g_assert_cmpint (info.limits.max_keys, ==, 0);
  g_assert_true (a->klass->set_store_config (a, "p", "opts", "lines", &limits, &error));
  g_assert_no_error (error);
  g_assert_true (b->klass->store_info (b, "p", "opts", &info, TRUE, &error));
  g_assert_cmpstr (info.merge, ==, "lines");
  g_assert_cmpint (info.limits.max_value_size, ==, 10);
  g_assert_cmpint (info.limits.max_keys, ==, 2);

  put_one (a, st, "k1", v, 1, 1);
  put_one (a, st, "k2", v, 1, 2);
  put_refused (a, st, "k3", v, 3, CONAT_ERROR_NO_SPACE);   /* a new key */
  put_one (a, st, "k1", v, 1, 4);                          /* a replaced one */
  put_refused (a, st, "k1", big, 5, CONAT_ERROR_TOO_BIG);
  g_assert_cmpuint (a->klass->max_value_size (st), ==, 10);

  limits = (ConatStoreLimits) { 0, 0, 200, 0 };
  g_assert_true (a->klass->set_store_config (a, "p", "opts", NULL, &limits, &error));
  g_assert_no_error (error);
  put_refused (a, st, "k3", big, 6, CONAT_ERROR_NO_SPACE);
  limits = (ConatStoreLimits) { 0, 50, 0, 0 };
  g_assert_false (a->klass->set_store_config (a, "p", "opts", NULL, &limits, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  limits = (ConatStoreLimits) { 0, 60000, 0, 0 };
  g_assert_true (a->klass->set_store_config (a, "p", "opts", "json", &limits, &error));
  g_assert_no_error (error);
  g_assert_true (b->klass->store_info (b, "p", "opts", &info, TRUE, &error));
  g_assert_cmpstr (info.merge, ==, "json");
  g_assert_cmpint (info.limits.max_age_ms, ==, 60000);
  g_assert_cmpint (info.limits.max_bytes, ==, 0);
  put_one (a, st, "k3", big, 1, 7);
  a->klass->store_close (st);
  recorder_clear (&r);

  /* The server drops old values without a marker: the handle reports them. */
  recorder_init (&r);
  st = store_open (a, "p", "aged", FALSE, &r, NULL);
  put_one (a, st, "old", v, 1, 1);
  limits = (ConatStoreLimits) { 0, 300, 0, 0 };
  g_assert_true (a->klass->set_store_config (a, "p", "aged", NULL, &limits, &error));
  g_assert_no_error (error);
  recorder_wait (&r, 2);
  g_assert_cmpstr (recorder_change (&r, 1)->key, ==, "old");
  g_assert_null (recorder_change (&r, 1)->value);
  g_assert_true (b->klass->store_info (b, "p", "aged", &info, TRUE, &error));
  g_assert_cmpuint (info.keys, ==, 0);

  a->klass->store_close (st);
  recorder_clear (&r);
  backend_free (a);
  backend_free (b);
}

/* ---------------------------------------------------------------- pubsub */

typedef struct {
  GMutex mu;
  GCond cond;
  GPtrArray *messages;  /* GBytes* */
} Inbox;

static void
inbox_init (Inbox *in)
{
  g_mutex_init (&in->mu);
  g_cond_init (&in->cond);
  in->messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
}

static void
inbox_clear (Inbox *in)
{
  g_ptr_array_unref (in->messages);
  g_cond_clear (&in->cond);
  g_mutex_clear (&in->mu);
}

static void
on_message (GBytes *message, gpointer data)
{
  Inbox *in = data;

  g_mutex_lock (&in->mu);
  g_ptr_array_add (in->messages, g_bytes_ref (message));
  g_cond_broadcast (&in->cond);
  g_mutex_unlock (&in->mu);
}

static void
inbox_wait (Inbox *in, guint count)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  g_mutex_lock (&in->mu);
  while (in->messages->len < count && g_cond_wait_until (&in->cond, &in->mu, deadline))
    ;
  g_assert_cmpuint (in->messages->len, >=, count);
  g_mutex_unlock (&in->mu);
}

static void
test_pubsub (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) m1 = bytes ("{\"x\":1}");
  g_autoptr (GBytes) m2 = bytes ("second");
  g_autoptr (GBytes) huge = NULL;
  ConatBackendSub *sa, *sb, *sother, *spath;
  Inbox ia, ib, iother, ipath;
  gsize max;

  inbox_init (&ia);
  inbox_init (&ib);
  inbox_init (&iother);
  inbox_init (&ipath);
  sa = a->klass->subscribe (a, "p.1", NULL, "cursors", on_message, &ia, &error);
  g_assert_no_error (error);
  sb = b->klass->subscribe (b, "p.1", NULL, "cursors", on_message, &ib, &error);
  sother = b->klass->subscribe (b, "p.2", NULL, "cursors", on_message, &iother, &error);
  spath = b->klass->subscribe (b, "p.1", "src/a.c", "cursors", on_message, &ipath, &error);
  g_assert_no_error (error);

  g_assert_true (a->klass->publish (a, "p.1", NULL, "cursors", m1, &error));
  g_assert_true (b->klass->publish (b, "p.1", "src/a.c", "cursors", m2, &error));
  g_assert_no_error (error);
  inbox_wait (&ia, 1);  /* the sender's own echo */
  inbox_wait (&ib, 1);
  inbox_wait (&ipath, 1);
  g_assert_true (g_bytes_equal (ia.messages->pdata[0], m1));
  g_assert_true (g_bytes_equal (ib.messages->pdata[0], m1));
  g_assert_true (g_bytes_equal (ipath.messages->pdata[0], m2));

  /* No cross-talk: publish once more and check what each one got. */
  g_assert_true (a->klass->publish (a, "p.2", NULL, "cursors", m2, &error));
  inbox_wait (&iother, 1);
  g_assert_cmpuint (ia.messages->len, ==, 1);
  g_assert_cmpuint (ib.messages->len, ==, 1);
  g_assert_cmpuint (ipath.messages->len, ==, 1);
  g_assert_cmpuint (iother.messages->len, ==, 1);

  max = a->klass->max_message_size (a);
  g_assert_cmpuint (max, ==, 1024 * 1024);
  huge = g_bytes_new_take (g_malloc0 (max + 1), max + 1);
  g_assert_false (a->klass->publish (a, "p.1", NULL, "cursors", huge, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG);
  g_clear_error (&error);
  g_assert_true (backend_connected (a));

  /* No callback after unsubscribe. */
  a->klass->unsubscribe (sa);
  g_assert_true (b->klass->publish (b, "p.1", NULL, "cursors", m2, &error));
  inbox_wait (&ib, 2);
  g_assert_cmpuint (ia.messages->len, ==, 1);

  b->klass->unsubscribe (sb);
  b->klass->unsubscribe (sother);
  b->klass->unsubscribe (spath);
  inbox_clear (&ia);
  inbox_clear (&ib);
  inbox_clear (&iother);
  inbox_clear (&ipath);
  backend_free (a);
  backend_free (b);
}

/* Batches go out on a connection of their own: single messages and
 * batches, mixed, still arrive as published, in order and once each, at
 * another backend and at both of the sender's own subscriptions. */
static void
test_pubsub_batches (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) sent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr (GBytes) marker = bytes ("from b");
  ConatBackendSub *sa, *sa2, *sb;
  Inbox ia, ia2, ib;

  inbox_init (&ia);
  inbox_init (&ia2);
  inbox_init (&ib);
  sa = a->klass->subscribe (a, "p", NULL, "batch", on_message, &ia, &error);
  sa2 = a->klass->subscribe (a, "p", NULL, "batch", on_message, &ia2, &error);
  sb = b->klass->subscribe (b, "p", NULL, "batch", on_message, &ib, &error);
  g_assert_no_error (error);
  for (guint round = 0; round < 6; round++)
    {
      guint first = sent->len;
      guint n = round % 2 == 0 ? 1 : 100 * round;

      for (guint i = 0; i < n; i++)
        {
          g_autofree char *text = g_strdup_printf ("round %u message %u", round, i);

          g_ptr_array_add (sent, bytes (text));
        }
      if (n == 1)
        g_assert_true (a->klass->publish (a, "p", NULL, "batch", sent->pdata[first], &error));
      else
        g_assert_true (a->klass->publish_many (a, "p", NULL, "batch",
                                               (GBytes *const *) sent->pdata + first, n, &error));
      g_assert_no_error (error);
    }
  inbox_wait (&ib, sent->len);
  /* A message of B's after them: A has all the server sent it before. */
  g_assert_true (b->klass->publish (b, "p", NULL, "batch", marker, &error));
  inbox_wait (&ia, sent->len + 1);
  inbox_wait (&ia2, sent->len + 1);
  inbox_wait (&ib, sent->len + 1);
  for (guint i = 0; i < sent->len; i++)
    {
      g_assert_true (g_bytes_equal (ib.messages->pdata[i], sent->pdata[i]));
      g_assert_true (g_bytes_equal (ia.messages->pdata[i], sent->pdata[i]));
      g_assert_true (g_bytes_equal (ia2.messages->pdata[i], sent->pdata[i]));
    }
  g_assert_true (g_bytes_equal (ia.messages->pdata[sent->len], marker));
  a->klass->unsubscribe (sa);
  a->klass->unsubscribe (sa2);
  b->klass->unsubscribe (sb);
  g_assert_cmpuint (ia.messages->len, ==, sent->len + 1);
  g_assert_cmpuint (ia2.messages->len, ==, sent->len + 1);
  g_assert_cmpuint (ib.messages->len, ==, sent->len + 1);
  inbox_clear (&ia);
  inbox_clear (&ia2);
  inbox_clear (&ib);
  backend_free (a);
  backend_free (b);
}

/* What a scope watch saw: "NAME" or "NAME\nPATH" per message, as GBytes. */
static void
on_seen (const char *name, const char *path, gpointer data)
{
  g_autofree char *s = path ? g_strconcat (name, "\n", path, NULL) : g_strdup (name);
  g_autoptr (GBytes) b = bytes (s);

  on_message (b, data);
}

static gboolean
inbox_has (Inbox *in, const char *s)
{
  g_autoptr (GBytes) want = bytes (s);
  gboolean found = FALSE;

  g_mutex_lock (&in->mu);
  for (guint i = 0; i < in->messages->len && !found; i++)
    found = g_bytes_equal (in->messages->pdata[i], want);
  g_mutex_unlock (&in->mu);
  return found;
}

/* Waits until watch inbox SEEN has heard of channel NAME. */
static void
deadline_wait_seen (Inbox *seen, const char *name)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (!inbox_has (seen, name) && g_get_monotonic_time () < deadline)
    g_usleep (1000);
  g_assert_true (inbox_has (seen, name));
}

static void
raw_publish (natsConnection *nc, const char *subject)
{
  g_assert_cmpint (natsConnection_PublishString (nc, subject, "x"), ==, NATS_OK);
}

/* A watch hears every channel of its scope, from any client, and passes
 * over subjects that are not channels'. */
static void
test_watch_scope (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) m = bytes ("m");
  g_autofree char *long_name = g_strnfill (2990, 'n');
  g_autofree char *long_subject = g_strconcat ("conat.p=2E1.pubsub.", long_name, NULL);
  natsConnection *nc = NULL;
  ConatBackendSub *watch;
  Inbox seen;
  gint64 deadline;

  inbox_init (&seen);
  g_assert_cmpint (natsConnection_ConnectTo (&nc, fx->url), ==, NATS_OK);
  watch = a->klass->watch_scope (a, "p.1", on_seen, &seen, &error);
  g_assert_no_error (error);

  g_assert_true (b->klass->publish (b, "p.1", NULL, "chat", m, &error));
  g_assert_true (b->klass->publish (b, "p.1", "src/a.c", "cursors", m, &error));
  g_assert_true (b->klass->publish (b, "p.2", NULL, "elsewhere", m, &error));
  g_assert_true (a->klass->publish (a, "p.1", NULL, "own", m, &error));
  g_assert_no_error (error);
  /* Another client, on subjects that do not decode, then on a channel's. */
  raw_publish (nc, "conat.p=2E1.pubsub.a.b.c");
  raw_publish (nc, "conat.p=2E1.pubsub.=41");
  raw_publish (nc, "conat.p=2E1.pubsub.=00");
  raw_publish (nc, "conat.p=2E1.pubsub.bad=zz");
  raw_publish (nc, "conat.p=2E1.pubsub.x.=2");
  raw_publish (nc, long_subject);
  raw_publish (nc, "conat.p=2E1.pubsub.from-raw.doc/x=2Etex");
  g_assert_cmpint (natsConnection_Flush (nc), ==, NATS_OK);
  inbox_wait (&seen, 4);
  g_assert_true (inbox_has (&seen, "chat"));
  g_assert_true (inbox_has (&seen, "cursors\nsrc/a.c"));
  g_assert_true (inbox_has (&seen, "own"));
  g_assert_true (inbox_has (&seen, "from-raw\ndoc/x.tex"));
  g_assert_cmpuint (seen.messages->len, ==, 4);

  /* A flood of channels: the watch keeps up or drops reports, and a
   * channel that keeps sending is heard afterwards. */
  for (guint i = 0; i < 20000; i++)
    {
      g_autofree char *subject = g_strdup_printf ("conat.p=2E1.pubsub.flood%u", i);

      raw_publish (nc, subject);
    }
  deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  while (!inbox_has (&seen, "after") && g_get_monotonic_time () < deadline)
    {
      raw_publish (nc, "conat.p=2E1.pubsub.after");
      g_usleep (20000);
    }
  g_assert_true (inbox_has (&seen, "after"));
  g_assert_true (backend_connected (a));

  /* No callback after unsubscribe. */
  a->klass->unsubscribe (watch);
  g_mutex_lock (&seen.mu);
  g_ptr_array_set_size (seen.messages, 0);
  g_mutex_unlock (&seen.mu);
  g_assert_true (b->klass->publish (b, "p.1", NULL, "chat", m, &error));
  raw_publish (nc, "conat.p=2E1.pubsub.chat");
  g_assert_cmpint (natsConnection_Flush (nc), ==, NATS_OK);
  g_assert_cmpuint (seen.messages->len, ==, 0);

  natsConnection_Destroy (nc);
  inbox_clear (&seen);
  backend_free (a);
  backend_free (b);
}

/* Messages the server has sent BACKEND's connection so far. */
static guint64
backend_in_msgs (ConatBackend *backend)
{
  natsStatistics *stats = NULL;
  uint64_t in_msgs = 0;

  g_assert_cmpint (natsStatistics_Create (&stats), ==, NATS_OK);
  g_assert_cmpint (natsConnection_GetStats (((NatsBackend *) backend)->nc, stats), ==, NATS_OK);
  g_assert_cmpint (natsStatistics_GetCounts (stats, &in_msgs, NULL, NULL, NULL, NULL), ==,
                   NATS_OK);
  natsStatistics_Destroy (stats);
  return in_msgs;
}

static guint
backend_taps (ConatBackend *backend)
{
  NatsBackend *be = (NatsBackend *) backend;
  guint n;

  g_mutex_lock (&be->mu);
  n = g_hash_table_size (be->taps);
  g_mutex_unlock (&be->mu);
  return n;
}

/* A backend that watches a scope hears each message of the scope once
 * (the server sends it once): its channel subscriptions there share the
 * watch's subscription, get every message of their channel once and in
 * order, and keep it after the watch is closed. */
static void
test_scope_tap (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) sent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr (GBytes) m = bytes ("m");
  ConatBackendSub *watch, *s1, *s2, *spath;
  Inbox seen, i1, i2, ipath;
  guint64 before;

  inbox_init (&seen);
  inbox_init (&i1);
  inbox_init (&i2);
  inbox_init (&ipath);
  watch = a->klass->watch_scope (a, "p", on_seen, &seen, &error);
  g_assert_no_error (error);
  s1 = a->klass->subscribe (a, "p", NULL, "chat", on_message, &i1, &error);
  s2 = a->klass->subscribe (a, "p", NULL, "chat", on_message, &i2, &error);
  spath = a->klass->subscribe (a, "p", "doc/a.tex", "chat", on_message, &ipath, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (backend_taps (a), ==, 1);
  before = backend_in_msgs (a);

  for (guint i = 0; i < 300; i++)
    {
      g_autofree char *text = g_strdup_printf ("message %u", i);

      g_ptr_array_add (sent, bytes (text));
    }
  g_assert_true (b->klass->publish (b, "p", NULL, "chat", sent->pdata[0], &error));
  g_assert_true (b->klass->publish_many (b, "p", NULL, "chat", (GBytes *const *) sent->pdata + 1,
                                         sent->len - 1, &error));
  g_assert_true (b->klass->publish (b, "p", "doc/a.tex", "chat", m, &error));
  g_assert_true (b->klass->publish (b, "p", NULL, "other", m, &error));
  g_assert_no_error (error);
  inbox_wait (&i1, sent->len);
  inbox_wait (&i2, sent->len);
  inbox_wait (&ipath, 1);
  inbox_wait (&seen, 3);
  for (guint i = 0; i < sent->len; i++)
    {
      g_assert_true (g_bytes_equal (i1.messages->pdata[i], sent->pdata[i]));
      g_assert_true (g_bytes_equal (i2.messages->pdata[i], sent->pdata[i]));
    }
  g_assert_true (g_bytes_equal (ipath.messages->pdata[0], m));
  g_assert_true (inbox_has (&seen, "chat"));
  g_assert_true (inbox_has (&seen, "chat\ndoc/a.tex"));
  g_assert_true (inbox_has (&seen, "other"));
  /* Once each: 300 + 1 + 1, not once per subscription. */
  g_assert_cmpuint (backend_in_msgs (a) - before, ==, sent->len + 2);

  /* The watch goes; the channels keep hearing. */
  a->klass->unsubscribe (watch);
  g_assert_true (b->klass->publish (b, "p", NULL, "chat", m, &error));
  inbox_wait (&i1, sent->len + 1);
  inbox_wait (&i2, sent->len + 1);
  g_assert_true (g_bytes_equal (i1.messages->pdata[sent->len], m));
  a->klass->unsubscribe (s1);
  a->klass->unsubscribe (spath);
  g_assert_cmpuint (backend_taps (a), ==, 1);
  a->klass->unsubscribe (s2);
  g_assert_cmpuint (backend_taps (a), ==, 0);

  /* No callback after unsubscribe; a new watch makes a new tap. */
  watch = a->klass->watch_scope (a, "p", on_seen, &seen, &error);
  g_assert_no_error (error);
  g_assert_true (b->klass->publish (b, "p", NULL, "later", m, &error));
  g_assert_true (b->klass->publish (b, "p", NULL, "chat", m, &error));
  deadline_wait_seen (&seen, "later");
  a->klass->unsubscribe (watch);
  g_assert_cmpuint (backend_taps (a), ==, 0);
  g_assert_cmpuint (i1.messages->len, ==, sent->len + 1);
  g_assert_cmpuint (i2.messages->len, ==, sent->len + 1);
  g_assert_cmpuint (ipath.messages->len, ==, 1);

  inbox_clear (&seen);
  inbox_clear (&i1);
  inbox_clear (&i2);
  inbox_clear (&ipath);
  backend_free (a);
  backend_free (b);
}

/* A channel callback that holds up the thread it runs on at its first
 * message, until released. */
typedef struct {
  GMutex mu;
  GCond cond;
  gboolean entered, released, in_pool;
} Gate;

static void
on_gated (GBytes *message, gpointer data)
{
  Gate *g = data;
  char name[16] = "";

  pthread_getname_np (pthread_self (), name, sizeof name);
  g_mutex_lock (&g->mu);
  if (!g->entered)
    {
      g->entered = TRUE;
      g->in_pool = g_str_has_prefix (name, "pool");
      g_cond_broadcast (&g->cond);
      while (!g->released)
        g_cond_wait (&g->cond, &g->mu);
    }
  g_mutex_unlock (&g->mu);
}

/* A channel that joins the scope's subscription gets only the messages
 * published after it subscribed, even when the subscription has received
 * earlier ones it has not delivered yet (its thread is held up by a quick
 * callback of another channel). */
static void
test_scope_tap_late (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) m = bytes ("m");
  g_autoptr (GBytes) first = bytes ("first");
  g_autoptr (GBytes) second = bytes ("second");
  ConatBackendSub *watch, *held, *news;
  Gate gate = { 0 };
  Inbox seen, in;

  inbox_init (&seen);
  inbox_init (&in);
  g_mutex_init (&gate.mu);
  g_cond_init (&gate.cond);
  g_atomic_int_set (&a->quick_callbacks, TRUE);
  watch = a->klass->watch_scope (a, "p", on_seen, &seen, &error);
  held = a->klass->subscribe (a, "p", NULL, "x", on_gated, &gate, &error);
  g_assert_no_error (error);

  g_assert_true (b->klass->publish (b, "p", NULL, "x", m, &error));
  g_mutex_lock (&gate.mu);
  while (!gate.entered)
    g_cond_wait (&gate.cond, &gate.mu);
  g_assert_false (gate.in_pool); /* it holds up the libnats thread of the scope */
  g_mutex_unlock (&gate.mu);

  g_assert_true (b->klass->publish (b, "p", NULL, "news", first, &error));
  g_assert_cmpint (natsConnection_Flush (((NatsBackend *) b)->nc), ==, NATS_OK);
  news = a->klass->subscribe (a, "p", NULL, "news", on_message, &in, &error);
  g_assert_no_error (error);
  g_mutex_lock (&gate.mu);
  gate.released = TRUE;
  g_cond_broadcast (&gate.cond);
  g_mutex_unlock (&gate.mu);

  g_assert_true (b->klass->publish (b, "p", NULL, "news", second, &error));
  inbox_wait (&in, 1);
  g_assert_true (g_bytes_equal (in.messages->pdata[0], second));
  g_assert_cmpuint (in.messages->len, ==, 1);

  a->klass->unsubscribe (news);
  a->klass->unsubscribe (held);
  a->klass->unsubscribe (watch);
  g_mutex_clear (&gate.mu);
  g_cond_clear (&gate.cond);
  inbox_clear (&seen);
  inbox_clear (&in);
  backend_free (a);
  backend_free (b);
}

/* A backend of user alice (password s3cret), whom the server's
 * configuration limits. */
static ConatBackend *
alice_backend_new (Fixture *fx)
{
  g_autofree char *password = g_build_filename (fx->srv.dir, "password", NULL);
  ConatNatsOptions opts = { .servers = fx->url, .user = "alice", .password_file = password };
  g_autoptr (GError) error = NULL;
  ConatBackend *be;

  g_assert_true (g_file_set_contents (password, "s3cret", -1, NULL));
  be = conat_backend_nats_new (&opts, &error);
  g_assert_no_error (error);
  return be;
}

/* A user who may subscribe to one channel of a scope and not to the whole
 * scope: the watch is refused, and the channel subscribes on its own. */
static void
test_scope_tap_refused (Fixture *fx, gconstpointer data)
{
  ConatBackend *be = alice_backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) m = bytes ("m");
  ConatBackendSub *watch, *chat;
  Inbox seen, in;

  inbox_init (&seen);
  inbox_init (&in);
  watch = be->klass->watch_scope (be, "p", on_seen, &seen, &error);
  g_assert_no_error (error);
  chat = be->klass->subscribe (be, "p", NULL, "chat", on_message, &in, &error);
  g_assert_no_error (error);
  g_assert_true (be->klass->publish (be, "p", NULL, "chat", m, &error));
  g_assert_no_error (error);
  inbox_wait (&in, 1);
  g_assert_true (g_bytes_equal (in.messages->pdata[0], m));
  be->klass->unsubscribe (chat);
  be->klass->unsubscribe (watch);
  g_assert_cmpuint (backend_taps (be), ==, 0);
  g_assert_true (backend_connected (be));
  inbox_clear (&seen);
  inbox_clear (&in);
  backend_free (be);
}

/* ------------------------------------------------------------------ scale */

static guint
thread_count (void)
{
  GDir *dir = g_dir_open ("/proc/self/task", 0, NULL);
  guint n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir))
    n++;
  g_dir_close (dir);
  return n;
}

/* Many open stores share a bounded set of threads. */
static void
test_many_stores (Fixture *fx, gconstpointer data)
{
  enum { N = 1000 };
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GBytes) v = bytes ("v");
  ConatBackendStore **stores = g_new0 (ConatBackendStore *, N);
  Recorder *recs = g_new0 (Recorder, N);
  ConatBackendStore *writer;
  Recorder rw;
  gint64 start = g_get_monotonic_time ();

  recorder_init (&rw);
  for (guint i = 0; i < N; i++)
    {
      g_autofree char *name = g_strdup_printf ("s%u", i);

      recorder_init (&recs[i]);
      stores[i] = store_open (a, "many", name, i % 2, &recs[i], NULL);
    }
  g_test_message ("opened %d stores in %" G_GINT64_FORMAT " ms", N,
                  (g_get_monotonic_time () - start) / 1000);
  g_assert_cmpuint (thread_count (), <=, 64);

  writer = store_open (b, "many", "s999", FALSE, &rw, NULL);
  put_one (b, writer, "k", v, 9, 1);
  recorder_wait (&recs[999], 1);
  g_assert_cmpuint (recorder_change (&recs[999], 0)->writer_id, ==, 9);
  g_assert_cmpuint (thread_count (), <=, 64);

  b->klass->store_close (writer);
  for (guint i = 0; i < N; i++)
    {
      a->klass->store_close (stores[i]);
      recorder_clear (&recs[i]);
    }
  recorder_clear (&rw);
  g_free (stores);
  g_free (recs);
  backend_free (a);
  backend_free (b);
}

/* ----------------------------------------------------- quick callbacks */

typedef struct {
  GMutex mu;
  GCond cond;
  guint count;         /* changes or messages, numbered 0, 1, ... in order */
  gboolean out_of_order;
  gboolean closed;     /* set once store_close or unsubscribe returned */
  gboolean after_close;
  guint on_pool;       /* calls on our dispatch pool's threads */
  guint elsewhere;     /* calls on the thread that received them */
} Quick;

/* Counts where the call runs and checks the number N in its order. */
static void
quick_note (Quick *q, guint n)
{
  char name[16] = "";

  pthread_getname_np (pthread_self (), name, sizeof name);
  g_mutex_lock (&q->mu);
  if (q->closed)
    q->after_close = TRUE;
  if (n != q->count)
    q->out_of_order = TRUE;
  q->count++;
  if (g_str_has_prefix (name, "pool"))
    q->on_pool++;
  else
    q->elsewhere++;
  g_cond_broadcast (&q->cond);
  g_mutex_unlock (&q->mu);
}

static void
quick_on_change (const ConatChange *c, gpointer data)
{
  if (c->key != NULL)
    quick_note (data, (guint) g_ascii_strtoull (c->key, NULL, 10));
}

static void
quick_on_message (GBytes *message, gpointer data)
{
  g_autofree char *text = g_strndup (g_bytes_get_data (message, NULL), g_bytes_get_size (message));

  quick_note (data, (guint) g_ascii_strtoull (text, NULL, 10));
}

static void
quick_wait (Quick *q, guint count)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  g_mutex_lock (&q->mu);
  while (q->count < count && g_cond_wait_until (&q->cond, &q->mu, deadline))
    ;
  g_assert_cmpuint (q->count, ==, count);
  g_assert_false (q->out_of_order);
  g_mutex_unlock (&q->mu);
}

static void
quick_closed (Quick *q)
{
  g_mutex_lock (&q->mu);
  q->closed = TRUE;
  g_mutex_unlock (&q->mu);
}

typedef struct {
  ConatBackend *be;
  ConatBackendStore *st;
  ConatBackendSub *sub;
  Quick changes, messages;
} QuickReader;

static void
quick_reader_open (QuickReader *r, Fixture *fx, gboolean quick)
{
  g_autoptr (GError) error = NULL;
  guint64 rev = 0;

  g_mutex_init (&r->changes.mu);
  g_cond_init (&r->changes.cond);
  g_mutex_init (&r->messages.mu);
  g_cond_init (&r->messages.cond);
  r->be = backend_new (fx);
  g_atomic_int_set (&r->be->quick_callbacks, quick);
  r->st = r->be->klass->store_open (r->be, "p", "quick", FALSE, on_load, quick_on_change, NULL,
                                    &r->changes, &rev, &error);
  g_assert_no_error (error);
  r->sub = r->be->klass->subscribe (r->be, "p", NULL, "quick", quick_on_message, &r->messages,
                                    &error);
  g_assert_no_error (error);
}

/* Frees R's backend; its store and subscription are closed already. */
static void
quick_reader_free (QuickReader *r)
{
  backend_free (r->be);
  g_mutex_clear (&r->changes.mu);
  g_cond_clear (&r->changes.cond);
  g_mutex_clear (&r->messages.mu);
  g_cond_clear (&r->messages.cond);
}

/* A client whose callbacks are quick gets a change or message on the thread
 * that received it (one hand-off less) when none waits behind it, and a
 * burst through its dispatch pool; another client always through the pool;
 * all in order, and none after the close returned, even in a stream of
 * writes. */
static void
test_quick_callbacks (Fixture *fx, gconstpointer data)
{
  enum { ALONE = 50, N = 650, BATCH = 100 };
  ConatBackend *a = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  QuickReader quick = { 0 }, slow = { 0 };
  ConatBackendStore *sa;
  Recorder ra;

  recorder_init (&ra);
  sa = store_open (a, "p", "quick", FALSE, &ra, NULL);
  quick_reader_open (&quick, fx, TRUE);
  quick_reader_open (&slow, fx, FALSE);

  /* One at a time: each on the thread that received it.  (A store's
   * heartbeat may happen to wait behind one change.) */
  for (guint i = 0; i < ALONE; i++)
    {
      g_autofree char *key = g_strdup_printf ("%u", i);
      g_autoptr (GBytes) m = bytes (key);

      put_one (a, sa, key, v, 1, i + 1);
      g_assert_true (a->klass->publish (a, "p", NULL, "quick", m, &error));
      quick_wait (&quick.changes, i + 1);
      quick_wait (&quick.messages, i + 1);
    }
  g_assert_cmpuint (quick.changes.elsewhere, >=, ALONE - 1);
  g_assert_cmpuint (quick.messages.elsewhere, ==, ALONE);

  /* Bursts. */
  for (guint i = ALONE; i < N; i += BATCH)
    {
      char keys[BATCH][16];
      ConatPut puts[BATCH];

      for (guint j = 0; j < BATCH; j++)
        {
          g_autoptr (GBytes) m = NULL;

          g_snprintf (keys[j], sizeof keys[j], "%u", i + j);
          put_init (&puts[j], keys[j], v, 1, i + j + 1);
          m = bytes (keys[j]);
          g_assert_true (a->klass->publish (a, "p", NULL, "quick", m, &error));
        }
      g_assert_true (a->klass->put_many (sa, puts, BATCH, &error));
      g_assert_no_error (error);
      puts_clear (puts, BATCH);
    }
  quick_wait (&quick.changes, N);
  quick_wait (&quick.messages, N);
  quick_wait (&slow.changes, N);
  quick_wait (&slow.messages, N);
  g_test_message ("quick client: changes %u where received, %u on the pool; messages %u, %u",
                  quick.changes.elsewhere, quick.changes.on_pool, quick.messages.elsewhere,
                  quick.messages.on_pool);
  g_assert_cmpuint (slow.changes.on_pool, ==, N);
  g_assert_cmpuint (slow.messages.on_pool, ==, N);

  /* Closing in a stream of writes: no call after the close returns. */
  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *key = g_strdup_printf ("%u", N + i);
      g_autoptr (GBytes) m = bytes (key);

      put_one (a, sa, key, v, 1, N + i + 1);
      g_assert_true (a->klass->publish (a, "p", NULL, "quick", m, &error));
      if (i == 100)
        {
          quick.be->klass->store_close (quick.st);
          quick_closed (&quick.changes);
          quick.be->klass->unsubscribe (quick.sub);
          quick_closed (&quick.messages);
        }
    }
  quick_wait (&slow.changes, N + 200);  /* so B had its chance to get them too */
  quick_wait (&slow.messages, N + 200);
  g_assert_false (quick.changes.after_close);
  g_assert_false (quick.messages.after_close);
  g_assert_false (quick.changes.out_of_order);
  g_assert_false (quick.messages.out_of_order);

  slow.be->klass->store_close (slow.st);
  slow.be->klass->unsubscribe (slow.sub);
  quick_reader_free (&quick);
  quick_reader_free (&slow);
  a->klass->store_close (sa);
  recorder_clear (&ra);
  backend_free (a);
}

/* --------------------------------------------------------------- restart */

static void
wait_connected (ConatBackend *be)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (!backend_connected (be))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20000);
    }
}

static void
wait_disconnected (ConatBackend *be)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (backend_connected (be))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10000);
    }
}

/* Writes are refused while a bucket is re-created: retry like the DKV does. */
static guint64
put_retrying (ConatBackend *be, ConatBackendStore *st, const char *key, GBytes *value)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  for (;;)
    {
      g_autoptr (GError) error = NULL;
      ConatPut p;

      put_init (&p, key, value, 3, 1);
      if (be->klass->put_many (st, &p, 1, &error))
        {
          g_assert_no_error (p.error);
          return p.revision;
        }
      g_test_message ("write retried: %s", error->message);
      g_assert_true (g_error_matches (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED)
                     || g_error_matches (error, CONAT_ERROR, CONAT_ERROR_TIMEOUT));
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50000);
    }
}

static void
test_restart (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  ConatBackendStore *pa, *ea, *eb, *pb;
  Recorder rp, re, reb, rpb;
  ConatStoreInfo info;
  ConatPut p;
  guint64 before;
  Seen *s;

  recorder_init (&rp);
  recorder_init (&re);
  recorder_init (&reb);
  recorder_init (&rpb);
  pa = store_open (a, "p", "persist", FALSE, &rp, NULL);
  ea = store_open (a, "p", "ephem", TRUE, &re, NULL);
  eb = store_open (b, "p", "ephem", TRUE, &reb, NULL);
  put_one (a, pa, "p1", v, 1, 1);
  put_one (a, pa, "p2", v, 1, 2);
  put_one (a, ea, "e1", v, 1, 3);
  before = put_one (a, ea, "e2", v, 1, 4);
  recorder_wait (&rp, 2);
  recorder_wait (&re, 2);
  recorder_wait (&reb, 2);

  /* While the server is down a write fails as "outcome unknown". */
  server_stop_signal (&fx->srv, SIGKILL);
  wait_disconnected (a);
  put_init (&p, "p-offline", v, 1, 5);
  g_assert_false (a->klass->put_many (pa, &p, 1, &error));
  g_assert_true (g_error_matches (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED)
                 || g_error_matches (error, CONAT_ERROR, CONAT_ERROR_TIMEOUT));
  g_clear_error (&error);
  server_start (&fx->srv);
  wait_connected (a);
  wait_connected (b);

  /* The persistent store kept its keys, and the open handle sees new writes. */
  g_assert_true (b->klass->store_info (b, "p", "persist", &info, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (info.keys, ==, 2);
  pb = store_open (b, "p", "persist", FALSE, &rpb, NULL);
  g_assert_cmpuint (rpb.loaded->len, ==, 2);
  put_retrying (b, pb, "p3", v);
  recorder_wait (&rp, 3);
  s = recorder_change (&rp, 2);
  g_assert_cmpstr (s->key, ==, "p3");
  g_assert_cmpuint (s->revision, ==, 3);

  /* The ephemeral store lost its keys: every handle reports them deleted,
   * with revisions above what it had, and the store works again. */
  recorder_wait (&re, 4);
  recorder_wait (&reb, 4);
  for (guint i = 2; i < 4; i++)
    {
      Seen *x = recorder_change (&re, i), *y = recorder_change (&reb, i);

      g_assert_null (x->value);
      g_assert_null (y->value);
      g_assert_cmpuint (x->revision, >, before);
      g_assert_cmpuint (y->revision, >, before);
      g_assert_true (g_str_has_prefix (x->key, "e"));
    }
  g_assert_cmpstr (recorder_change (&re, 2)->key, !=, recorder_change (&re, 3)->key);
  g_assert_cmpuint (put_retrying (a, ea, "e3", v), >, before + 2);
  recorder_wait (&re, 5);
  recorder_wait (&reb, 5);
  s = recorder_change (&reb, 4);
  g_assert_cmpstr (s->key, ==, "e3");
  g_assert_nonnull (s->value);
  g_assert_true (b->klass->store_info (b, "p", "ephem", &info, TRUE, &error));
  g_assert_true (info.ephemeral);
  g_assert_cmpuint (info.keys, ==, 1);

  a->klass->store_close (pa);
  a->klass->store_close (ea);
  b->klass->store_close (eb);
  b->klass->store_close (pb);
  recorder_clear (&rp);
  recorder_clear (&re);
  recorder_clear (&reb);
  recorder_clear (&rpb);
  backend_free (a);
  backend_free (b);
}

/* ---------------------------------------------------------------- errors */

static const char auth_config[] = "authorization { user: alice, password: s3cret }\n";
static const char token_config[] = "authorization { token: t0k3n }\n";
static const char deny_config[] =
  "authorization { users = [ { user: alice, password: s3cret,\n"
  "  permissions: { publish: { deny: \"$KV.conat_p-ro.>\" } } } ] }\n";
static const char one_channel_config[] =
  "authorization { users = [ { user: alice, password: s3cret,\n"
  "  permissions: { subscribe: { allow: [\"_INBOX.>\", \"$JS.>\", \"conat.p.pubsub.chat\"] } } } ] }\n";

static void
test_credentials (Fixture *fx, gconstpointer data)
{
  g_autofree char *good = g_build_filename (fx->srv.dir, "good", NULL);
  g_autofree char *bad = g_build_filename (fx->srv.dir, "bad", NULL);
  g_autofree char *url_user = g_strdup_printf ("nats://alice:s3cret@127.0.0.1:%d", fx->srv.port);
  g_autofree char *url_bad = g_strdup_printf ("nats://bob:hunter2@127.0.0.1:%d", fx->srv.port);
  g_autoptr (GError) error = NULL;
  ConatNatsOptions opts = { .servers = fx->url, .user = "alice" };
  ConatClientStatus status = { 0 };
  ConatBackend *be;

  g_assert_true (g_file_set_contents (good, "s3cret\n", -1, NULL));
  g_assert_true (g_file_set_contents (bad, "wrong\n", -1, NULL));

  opts.password_file = bad;
  g_assert_null (conat_backend_nats_new (&opts, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION);
  g_assert_null (strstr (error->message, "wrong"));
  g_clear_error (&error);

  opts.password_file = "/nonexistent/password";
  g_assert_null (conat_backend_nats_new (&opts, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION);
  g_clear_error (&error);

  opts.password_file = good;
  be = conat_backend_nats_new (&opts, &error);
  g_assert_no_error (error);
  g_assert_true (backend_connected (be));
  backend_free (be);

  /* Credentials in a URL work but never reach the status or a message. */
  opts.servers = url_user;
  opts.user = NULL;
  opts.password_file = NULL;
  be = conat_backend_nats_new (&opts, &error);
  g_assert_no_error (error);
  be->klass->get_status (be, &status);
  g_assert_true (status.connected);
  g_assert_cmpstr (status.servers, ==, fx->url);
  g_assert_null (status.last_error);
  g_free (status.servers);
  g_free (status.last_error);
  backend_free (be);

  opts.servers = url_bad;
  g_assert_null (conat_backend_nats_new (&opts, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION);
  g_assert_null (strstr (error->message, "hunter2"));
  g_clear_error (&error);
}

static void
test_token (Fixture *fx, gconstpointer data)
{
  g_autofree char *good = g_build_filename (fx->srv.dir, "token", NULL);
  g_autofree char *bad = g_build_filename (fx->srv.dir, "bad-token", NULL);
  g_autoptr (GError) error = NULL;
  ConatNatsOptions opts = { .servers = fx->url, .token_file = bad };
  ConatBackend *be;

  g_assert_true (g_file_set_contents (good, "t0k3n\n", -1, NULL));
  g_assert_true (g_file_set_contents (bad, "nope\n", -1, NULL));
  g_assert_null (conat_backend_nats_new (&opts, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION);
  g_clear_error (&error);
  opts.token_file = good;
  be = conat_backend_nats_new (&opts, &error);
  g_assert_no_error (error);
  g_assert_true (backend_connected (be));
  backend_free (be);
}

/* The server refuses writes to one store: per-item PERMISSION, and
 * the connection keeps working. */
static void
test_permission (Fixture *fx, gconstpointer data)
{
  ConatBackend *be = alice_backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  ConatBackendStore *ro, *rw;
  Recorder r1, r2;
  ConatPut p;

  recorder_init (&r1);
  recorder_init (&r2);
  ro = store_open (be, "p", "ro", FALSE, &r1, NULL);
  rw = store_open (be, "p", "rw", FALSE, &r2, NULL);

  put_init (&p, "k", v, 1, 1);
  g_assert_true (be->klass->put_many (ro, &p, 1, &error));
  g_assert_no_error (error);
  g_assert_error (p.error, CONAT_ERROR, CONAT_ERROR_PERMISSION);
  puts_clear (&p, 1);
  g_assert_true (backend_connected (be));
  put_one (be, rw, "k", v, 1, 2);

  be->klass->store_close (ro);
  be->klass->store_close (rw);
  recorder_clear (&r1);
  recorder_clear (&r2);
  backend_free (be);
}

/* A store made ephemeral while a handle is open keeps working for it. */
static void
test_ephemeral_flip (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  ConatStoreInfo info;
  ConatBackendStore *st;
  guint64 first;
  Recorder r;

  recorder_init (&r);
  st = store_open (a, "p", "flip", FALSE, &r, NULL);
  first = put_one (a, st, "k", v, 1, 1);
  put_one (a, st, "k", NULL, 1, 2);
  recorder_wait (&r, 2);
  g_assert_true (a->klass->set_store_ephemeral (a, "p", "flip", TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (put_retrying (a, st, "k2", v), >, first + 1);
  recorder_wait (&r, 3);
  g_assert_cmpstr (recorder_change (&r, 2)->key, ==, "k2");
  g_assert_true (a->klass->store_info (a, "p", "flip", &info, TRUE, &error));
  g_assert_true (info.ephemeral);
  g_assert_cmpuint (info.keys, ==, 1);

  a->klass->store_close (st);

  /* A store removed while a handle is open comes back when written to. */
  recorder_clear (&r);
  recorder_init (&r);
  st = store_open (a, "p", "gone", FALSE, &r, NULL);
  g_assert_true (a->klass->remove_store (a, "p", "gone", &error));
  g_assert_no_error (error);
  first = put_retrying (a, st, "back", v);
  recorder_wait (&r, 1);
  g_assert_cmpstr (recorder_change (&r, 0)->key, ==, "back");
  g_assert_cmpuint (recorder_change (&r, 0)->revision, ==, first);
  g_assert_true (a->klass->store_info (a, "p", "gone", &info, TRUE, &error));
  g_assert_false (info.ephemeral);
  g_assert_cmpuint (info.keys, ==, 1);

  a->klass->store_close (st);
  recorder_clear (&r);
  backend_free (a);
}

/* Another client flips a store that a handle has open to ephemeral: the
 * handle follows the new bucket (stream advisories), so a server restart
 * later empties the store for it too. */
static void
test_ephemeral_flip_elsewhere (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  ConatBackendStore *sa, *sb;
  Recorder ra, rb;

  recorder_init (&ra);
  recorder_init (&rb);
  sa = store_open (a, "p", "flip", FALSE, &ra, NULL);
  sb = store_open (b, "p", "flip", FALSE, &rb, NULL);
  g_assert_true (a->klass->set_store_ephemeral (a, "p", "flip", TRUE, &error));
  g_assert_no_error (error);
  put_retrying (a, sa, "k", v);
  recorder_wait (&rb, 1);
  recorder_wait (&ra, 1);  /* both handles follow the new bucket */
  g_assert_cmpstr (recorder_change (&rb, 0)->key, ==, "k");

  server_stop_signal (&fx->srv, SIGTERM);
  wait_disconnected (b);
  server_start (&fx->srv);
  recorder_wait (&rb, 2);  /* the memory bucket is gone, and with it the key */
  g_assert_cmpstr (recorder_change (&rb, 1)->key, ==, "k");
  g_assert_null (recorder_change (&rb, 1)->value);
  put_retrying (b, sb, "k2", v);
  recorder_wait (&ra, 3);  /* k, its deletion, k2 */
  g_assert_cmpstr (recorder_change (&ra, 2)->key, ==, "k2");

  a->klass->store_close (sa);
  b->klass->store_close (sb);
  recorder_clear (&ra);
  recorder_clear (&rb);
  backend_free (a);
  backend_free (b);
}

static guint64
recorder_last_revision (Recorder *r)
{
  guint64 last;

  g_mutex_lock (&r->mu);
  last = r->last_revision;
  g_mutex_unlock (&r->mu);
  return last;
}

/* Index of the first change of KEY that Recorder R saw, waiting for it; -1
 * if none came in time. */
static int
recorder_find (Recorder *r, const char *key)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  int found = -1;

  g_mutex_lock (&r->mu);
  for (;;)
    {
      for (guint i = 0; found < 0 && i < r->changes->len; i++)
        if (strcmp (((Seen *) r->changes->pdata[i])->key, key) == 0)
          found = (int) i;
      if (found >= 0 || !g_cond_wait_until (&r->cond, &r->mu, deadline))
        break;
    }
  g_mutex_unlock (&r->mu);
  return found;
}

/* One client removes the bucket of open handles, another makes it again
 * and writes to it through its handle at once, before the handles caught
 * up: each handle starts over on the new bucket (its revisions begin
 * again) and sees that write, instead of waiting for revisions past the
 * old bucket's. */
static void
test_bucket_made_again_elsewhere (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  ConatBackend *b = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) v = bytes ("v");
  ConatBackendStore *sa, *sb;
  Recorder ra, rb;
  ConatPut p;
  int x;

  recorder_init (&ra);
  recorder_init (&rb);
  g_assert_true (a->klass->create_store (a, "p", "again", FALSE, &error));
  g_assert_no_error (error);
  sa = store_open (a, "p", "again", FALSE, &ra, NULL);
  sb = store_open (b, "p", "again", FALSE, &rb, NULL);
  for (guint i = 0; i < 40; i++) /* the old bucket goes on to revision 40 */
    {
      put_init (&p, "k", i % 2 ? NULL : v, 3, i + 1);
      g_assert_true (a->klass->put_many (sa, &p, 1, &error));
      g_assert_no_error (p.error);
    }
  /* History 1: the watch may skip values overwritten before it sent them. */
  g_assert_cmpint (recorder_find (&ra, "k"), >=, 0);
  for (gint64 end = g_get_monotonic_time () + WAIT_MS * 1000;
       recorder_last_revision (&ra) < 40 && g_get_monotonic_time () < end;)
    g_usleep (1000);
  g_assert_cmpuint (recorder_last_revision (&ra), ==, 40);
  g_assert_true (a->klass->remove_store (a, "p", "again", &error));
  g_assert_true (b->klass->create_store (b, "p", "again", FALSE, &error));
  g_assert_no_error (error);
  put_retrying (b, sb, "x", v);
  for (Recorder *r = &ra; r != NULL; r = r == &ra ? &rb : NULL)
    {
      x = recorder_find (r, "x");
      g_assert_cmpint (x, >=, 0);
      g_test_message ("x at revision %" G_GUINT64_FORMAT ", %u restarts",
                      recorder_change (r, x)->revision, r->restarts);
      if (recorder_change (r, x)->revision < 40)
        g_assert_cmpuint (r->restarts, ==, 1);
    }

  a->klass->store_close (sa);
  b->klass->store_close (sb);
  recorder_clear (&ra);
  recorder_clear (&rb);
  backend_free (a);
  backend_free (b);
}

/* Queries while disconnected fail at once as DISCONNECTED (callers fall
 * back on the open stores), not after the 5 s JetStream timeout. */
static void
test_offline_queries (Fixture *fx, gconstpointer data)
{
  ConatBackend *a = backend_new (fx);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) names = NULL;
  ConatStoreInfo info;

  g_assert_true (a->klass->create_store (a, "p", "s", FALSE, &error));
  g_assert_no_error (error);
  server_stop_signal (&fx->srv, SIGTERM);
  wait_disconnected (a);
  g_assert_false (a->klass->store_info (a, "p", "s", &info, TRUE, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_false (a->klass->has_scope (a, "p", &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED);
  g_clear_error (&error);
  names = a->klass->list_stores (a, "p", &error);
  g_assert_null (names);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED);
  g_clear_error (&error);
  names = a->klass->list_scopes (a, &error);
  g_assert_null (names);
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED);
  backend_free (a);
}

static void
test_no_server (void)
{
  g_autofree char *url = g_strdup_printf ("nats://127.0.0.1:%d", free_port ());
  ConatNatsOptions opts = { .servers = url };
  g_autoptr (GError) error = NULL;

  g_assert_null (conat_backend_nats_new (&opts, &error));
  g_assert_error (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (error->message, url));
}

int
main (int argc, char **argv)
{
  g_autofree char *exe = nats_server_path ();

  g_test_init (&argc, &argv, NULL);
  main_thread = g_thread_self ();
  signal (SIGPIPE, SIG_IGN);

  g_test_add_func ("/nats/names", test_names);
  g_test_add_func ("/nats/channel-names", test_channel_names);
  if (exe == NULL)
    {
      g_test_message ("nats-server not found (set NATS_SERVER)");
      return g_test_run ();
    }
#define ADD(path, func, data) \
  g_test_add (path, Fixture, data, fixture_setup, func, fixture_teardown)
  ADD ("/nats/namespace", test_namespace, NULL);
  ADD ("/nats/put-change", test_put_change, NULL);
  ADD ("/nats/watch-consumer-lost", test_watch_consumer_lost, NULL);
  ADD ("/nats/cas", test_cas, NULL);
  ADD ("/nats/keys-values", test_keys_values, NULL);
  ADD ("/nats/limits", test_limits, NULL);
  ADD ("/nats/options", test_options, NULL);
  ADD ("/nats/pubsub", test_pubsub, NULL);
  ADD ("/nats/pubsub-batches", test_pubsub_batches, NULL);
  ADD ("/nats/watch-scope", test_watch_scope, NULL);
  ADD ("/nats/scope-tap", test_scope_tap, NULL);
  ADD ("/nats/scope-tap-late", test_scope_tap_late, NULL);
  ADD ("/nats/scope-tap-refused", test_scope_tap_refused, one_channel_config);
  ADD ("/nats/many-stores", test_many_stores, NULL);
  ADD ("/nats/quick-callbacks", test_quick_callbacks, NULL);
  ADD ("/nats/restart", test_restart, NULL);
  ADD ("/nats/credentials", test_credentials, auth_config);
  ADD ("/nats/token", test_token, token_config);
  ADD ("/nats/permission", test_permission, deny_config);
  ADD ("/nats/ephemeral-flip", test_ephemeral_flip, NULL);
  ADD ("/nats/ephemeral-flip-elsewhere", test_ephemeral_flip_elsewhere, NULL);
  ADD ("/nats/bucket-made-again-elsewhere", test_bucket_made_again_elsewhere, NULL);
  ADD ("/nats/offline-queries", test_offline_queries, NULL);
#undef ADD
  g_test_add_func ("/nats/no-server", test_no_server);
  return g_test_run ();
}
