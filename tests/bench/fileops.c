/* fileops.c — time one file operation in a tight loop.
 *
 *   fileops read PATH N     open + read + close of PATH, N times
 *   fileops write PATH N    open(O_TRUNC) + write "v\n" + close, N times
 *
 * Prints the mean time per operation in nanoseconds. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

static int
read_once (const char *path)
{
  char buf[4096];
  int fd = open (path, O_RDONLY);

  if (fd < 0 || read (fd, buf, sizeof buf) < 0)
    return -1;
  return close (fd);
}

static int
write_once (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

  if (fd < 0 || write (fd, "v\n", 2) != 2)
    return -1;
  return close (fd);
}

int
main (int argc, char **argv)
{
  int (*op) (const char *);
  long n;
  double t0;

  if (argc != 4 || (strcmp (argv[1], "read") != 0 && strcmp (argv[1], "write") != 0))
    {
      fprintf (stderr, "usage: fileops read|write PATH N\n");
      return 2;
    }
  op = strcmp (argv[1], "read") == 0 ? read_once : write_once;
  n = atol (argv[3]);
  if (op (argv[2]) < 0)  /* warm up, and fail early */
    {
      perror (argv[2]);
      return 1;
    }
  t0 = now_ns ();
  for (long i = 0; i < n; i++)
    if (op (argv[2]) < 0)
      {
        perror (argv[2]);
        return 1;
      }
  printf ("%.0f\n", (now_ns () - t0) / n);
  return 0;
}
