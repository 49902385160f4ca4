/* conat-kv — a test helper: another client of an embedded data directory,
 * or of a NATS server when DATA is a nats:// URL.
 *
 *   conat-kv DATA set SCOPE STORE KEY     value from stdin
 *   conat-kv DATA fill SCOPE STORE N      keys key-0 ... key-(N-1), value "vI"
 *   conat-kv DATA keys SCOPE STORE        one key per line, sorted
 *   conat-kv DATA get SCOPE STORE KEY     value to stdout; exit 2 if absent
 *
 * Only while no daemon holds DATA (the embedded backend allows one process).
 * On NATS it fills a bucket fast (pipelined batches), for tests of big stores.
 * The end-to-end tests use it to make names a shell cannot (over 255 bytes)
 * and to look at the store behind the mount.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conat.h"

static GBytes *
read_stdin (void)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  guint8 chunk[65536];
  ssize_t n;

  while ((n = read (STDIN_FILENO, chunk, sizeof chunk)) > 0)
    g_byte_array_append (buf, chunk, n);
  return g_byte_array_free_to_bytes (g_steal_pointer (&buf));
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static gboolean
run (ConatDkv *kv, const char *command, char **args, int n_args, int *status, GError **error)
{
  if (strcmp (command, "set") == 0 && n_args == 1)
    {
      g_autoptr (GBytes) value = read_stdin ();
      return conat_dkv_set (kv, args[0], value, error);
    }
  if (strcmp (command, "fill") == 0 && n_args == 1)
    {
      for (long i = 0; i < atol (args[0]); i++)
        {
          g_autofree char *key = g_strdup_printf ("key-%ld", i);
          g_autofree char *text = g_strdup_printf ("v%ld", i);
          g_autoptr (GBytes) value = g_bytes_new (text, strlen (text));

          if (!conat_dkv_set (kv, key, value, error))
            return FALSE;
        }
      return TRUE;
    }
  if (strcmp (command, "keys") == 0 && n_args == 0)
    {
      g_autoptr (GPtrArray) keys = conat_dkv_keys (kv);

      g_ptr_array_sort (keys, compare_strings);
      for (guint i = 0; i < keys->len; i++)
        printf ("%s\n", (char *) keys->pdata[i]);
      return TRUE;
    }
  if (strcmp (command, "get") == 0 && n_args == 1)
    {
      g_autoptr (GBytes) value = conat_dkv_get (kv, args[0], error);
      gsize size;
      const void *data = value ? g_bytes_get_data (value, &size) : NULL;

      if (value == NULL)
        *status = 2;
      else
        fwrite (data, 1, size, stdout);
      return *error == NULL;
    }
  g_set_error (error, CONAT_ERROR, CONAT_ERROR_FAILED, "bad command (see the source)");
  return FALSE;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (ConatClient) client = NULL;
  g_autoptr (ConatDkv) kv = NULL;
  ConatDkvOptions opts = { 0 };
  int status = 0;

  if (argc < 5)
    {
      fprintf (stderr, "usage: conat-kv DATA|nats://URL COMMAND SCOPE STORE [ARG]\n");
      return 1;
    }
  opts.scope = argv[3];
  opts.name = argv[4];
  if (g_str_has_prefix (argv[1], "nats://"))
    {
      ConatNatsOptions nats = { .servers = argv[1] };
      client = conat_client_new_nats (&nats, &error);
    }
  else
    client = conat_client_new_embedded (argv[1], &error);
  if (client != NULL)
    kv = conat_dkv_open (client, &opts, &error);
  if (kv == NULL || !run (kv, argv[2], argv + 5, argc - 5, &status, &error)
      || !conat_dkv_save (kv, 30000, &error))
    {
      fprintf (stderr, "conat-kv: %s\n", error->message);
      return 1;
    }
  fflush (stdout);
  return status;
}
