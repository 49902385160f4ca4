/* nats-files.c — file operations on a conatfs mount timed until the server
 * confirmed them: the conatfs side of the NATS figures in run.py.
 *
 *   nats-files confirmed DIR N THREADS STATUS
 *       THREADS threads write N new files DIR/key-<i> between them (open
 *       O_CREAT|O_TRUNC, write 100 B, close), then STATUS (the mount's
 *       .conatfs/status) is polled until it shows "pending": 0; prints N
 *       divided by the time from the first open to that moment, in sets/s
 *   nats-files fsync PATH N
 *       N times open(O_TRUNC) + write 100 B + fsync + close of PATH (fsync
 *       waits until the server confirmed the value); prints the median time
 *       of one, in nanoseconds
 *
 * Not a test: it asserts nothing about time. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define VALUE_SIZE 100
#define MAX_THREADS 64

static char value[VALUE_SIZE];

typedef struct {
  const char *dir;
  long first, step, n;
} Writer;

static void *
writer_run (void *data)
{
  Writer *w = data;
  char path[4096];

  for (long i = w->first; i < w->n; i += w->step)
    {
      int fd;

      snprintf (path, sizeof path, "%s/key-%ld", w->dir, i);
      fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || write (fd, value, VALUE_SIZE) != VALUE_SIZE || close (fd) != 0)
        die (path);
    }
  return NULL;
}

/* The top-level "pending" of the status file; -1 if unreadable. */
static long
pending (const char *status)
{
  char buf[65536];
  int fd = open (status, O_RDONLY);
  ssize_t len = fd < 0 ? -1 : read (fd, buf, sizeof buf - 1);
  const char *p;

  if (fd >= 0)
    close (fd);
  if (len <= 0)
    return -1;
  buf[len] = '\0';
  p = strstr (buf, "\"pending\": ");
  return p ? atol (p + strlen ("\"pending\": ")) : -1;
}

static int
confirmed (const char *dir, long n, int threads, const char *status)
{
  pthread_t tid[MAX_THREADS];
  Writer w[MAX_THREADS];
  struct timespec pause = { 0, 100000 };
  double t0;
  long left;

  if (threads < 1 || threads > MAX_THREADS)
    return 2;
  if (pending (status) != 0)
    {
      fprintf (stderr, "nats-files: %s: writes pending before the start\n", status);
      return 1;
    }
  t0 = now_ns ();
  for (int t = 0; t < threads; t++)
    {
      w[t] = (Writer) { dir, t, threads, n };
      if (pthread_create (&tid[t], NULL, writer_run, &w[t]) != 0)
        die ("pthread_create");
    }
  for (int t = 0; t < threads; t++)
    pthread_join (tid[t], NULL);
  while ((left = pending (status)) != 0)
    {
      if (left < 0)
        die (status);
      nanosleep (&pause, NULL);
    }
  printf ("%.0f\n", n / ((now_ns () - t0) / 1e9));
  return 0;
}

static int
fsync_median (const char *path, long n)
{
  double *lat = malloc (sizeof *lat * (n + 1));

  for (long i = 0; i <= n; i++)  /* the first creates the key: not counted */
    {
      double t0 = now_ns ();
      int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

      if (fd < 0 || write (fd, value, VALUE_SIZE) != VALUE_SIZE || fsync (fd) != 0
          || close (fd) != 0)
        die (path);
      lat[i] = now_ns () - t0;
    }
  printf ("%.0f\n", sorted_median (lat + 1, n));
  free (lat);
  return 0;
}

int
main (int argc, char **argv)
{
  memset (value, 'v', sizeof value);
  value[VALUE_SIZE - 1] = '\n';
  if (argc == 6 && strcmp (argv[1], "confirmed") == 0)
    return confirmed (argv[2], atol (argv[3]), atoi (argv[4]), argv[5]);
  if (argc == 4 && strcmp (argv[1], "fsync") == 0)
    return fsync_median (argv[2], atol (argv[3]));
  fprintf (stderr, "usage: nats-files confirmed DIR N THREADS STATUS | fsync PATH N\n");
  return 2;
}
