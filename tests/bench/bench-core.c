/* bench-core.c — libconat speed on the embedded backend.
 *
 *   bench-core [REPEATS]
 *
 * Prints, as medians over REPEATS runs (default 5): local set() calls per
 * second, and confirmed saves per second (sets followed by save(), which the
 * saver sends in batches).  Not a test: it asserts nothing about time. */
#include <conat.h>

#include <stdlib.h>
#include <glib/gstdio.h>

#include "bench-util.h"

#define N_SETS 100000

/* One run: returns sets/s in *SET_RATE and confirmed saves/s in *SAVE_RATE. */
static void
run_once (ConatClient *client, int run, double *set_rate, double *save_rate)
{
  g_autofree char *name = g_strdup_printf ("bench-%d", run);
  ConatDkvOptions opts = { .scope = "bench", .name = name };
  g_autoptr (ConatDkv) kv = conat_dkv_open (client, &opts, NULL);
  g_autoptr (GBytes) value = g_bytes_new_static ("0123456789", 10);
  g_autoptr (GError) error = NULL;
  char key[32];
  gint64 t0, t1, t2;

  t0 = g_get_monotonic_time ();
  for (int i = 0; i < N_SETS; i++)
    {
      g_snprintf (key, sizeof key, "key-%d", i);
      conat_dkv_set (kv, key, value, NULL);
    }
  t1 = g_get_monotonic_time ();
  if (!conat_dkv_save (kv, 60000, &error))
    g_error ("save failed: %s", error->message);
  t2 = g_get_monotonic_time ();
  *set_rate = N_SETS / ((t1 - t0) / 1e6);
  *save_rate = N_SETS / ((t2 - t0) / 1e6);
}

int
main (int argc, char **argv)
{
  int repeats = argc > 1 ? atoi (argv[1]) : 5;
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("conat-bench-XXXXXX", &error);
  g_autofree char *cmd = NULL;
  double *sets = g_new (double, MAX (repeats, 1));
  double *saves = g_new (double, MAX (repeats, 1));
  ConatClient *client = conat_client_new_embedded (dir, &error);

  if (client == NULL)
    g_error ("%s", error->message);
  repeats = MAX (repeats, 1);
  for (int r = 0; r < repeats; r++)
    run_once (client, r, &sets[r], &saves[r]);
  conat_client_unref (client);

  g_print ("| figure | median of %d | target |\n|---|---|---|\n", repeats);
  g_print ("| set() calls/s (local) | %.0f | >= 200000 |\n", sorted_median (sets, repeats));
  g_print ("| confirmed saves/s (embedded, %d sets + save) | %.0f | >= 50000 |\n", N_SETS,
           sorted_median (saves, repeats));

  cmd = g_strdup_printf ("rm -rf '%s'", dir);
  if (system (cmd) != 0)
    g_printerr ("could not remove %s\n", dir);
  g_free (sets);
  g_free (saves);
  return 0;
}
