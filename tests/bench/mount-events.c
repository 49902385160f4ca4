/* mount-events.c — changes made on one conatfs mount, seen on another: the
 * conatfs side of the event and channel figures in run.py.  Both mounts
 * share a nats-server; times are CLOCK_MONOTONIC in this one process.
 *
 *   mount-events inotify A_KEY B_DIR N
 *       N times: open(O_TRUNC) + write 100 B to A_KEY (a key on mount A),
 *       then close() it and wait for the first inotify event on the same
 *       key name in B_DIR (its store on mount B); prints the p50 and p99
 *       of close() → event, in ns
 *   mount-events rate A_CHAN B_CHAN N LINES
 *       a thread writes N lines of 100 B to channel file A_CHAN, LINES per
 *       write() (1, or 40 as stdio's 4 KiB buffer would), while this thread
 *       reads B_CHAN (the same channel on mount B) with poll(); prints the
 *       messages per second from the first write to the last line read,
 *       and the number of lines it missed (they left the mount's window
 *       before it read them: it fell more than the window behind)
 *   mount-events poll A_CHAN B_CHAN N
 *       N times: write one line to A_CHAN, poll() B_CHAN until it wakes,
 *       read the line; prints the p50 and p99 of write() → poll() wake, in ns
 *
 * Not a test: it asserts nothing about time. */
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define LINE_SIZE 100
#define TIMEOUT_MS 5000
#define STALL_MS 3000

/* Reads inotify events until one names NAME and has a bit of MASK (events
 * read past it are kept for the next call); returns 0, or -1 after
 * TIMEOUT_MS without one. */
static int
wait_event (int ino, const char *name, uint32_t mask)
{
  static char buf[4096] __attribute__ ((aligned (__alignof__ (struct inotify_event))));
  static ssize_t len, pos;
  struct pollfd pfd = { ino, POLLIN, 0 };

  for (;;)
    {
      while (pos < len)
        {
          struct inotify_event *ev = (struct inotify_event *) (buf + pos);

          pos += sizeof *ev + ev->len;
          if ((ev->mask & mask) && ev->len > 0 && strcmp (ev->name, name) == 0)
            return 0;
        }
      if (poll (&pfd, 1, TIMEOUT_MS) <= 0)
        return -1;
      if ((len = read (ino, buf, sizeof buf)) <= 0)
        die ("inotify read");
      pos = 0;
    }
}

static int
inotify_latency (const char *a_key, const char *b_dir, long n)
{
  char *copy = strdup (a_key);
  const char *name = basename (copy);
  char value[LINE_SIZE];
  double *lat = malloc (sizeof *lat * n);
  int ino = inotify_init1 (IN_CLOEXEC);
  long lost = 0;

  if (ino < 0 || inotify_add_watch (ino, b_dir, IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE) < 0)
    die (b_dir);
  for (long i = -5; i < n; i++)  /* 5 warm-up rounds */
    {
      int fd = open (a_key, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      double t0;

      snprintf (value, sizeof value, "%0*ld", LINE_SIZE - 1, i + 5);
      value[LINE_SIZE - 1] = '\n';
      if (fd < 0 || write (fd, value, LINE_SIZE) != LINE_SIZE)
        die (a_key);
      t0 = now_ns ();
      if (close (fd) != 0)
        die (a_key);
      if (wait_event (ino, name, IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE) != 0)
        {
          lost++;
          i--;
          if (lost > 10)
            {
              fprintf (stderr, "mount-events: no event on %s/%s\n", b_dir, name);
              return 1;
            }
          continue;
        }
      if (i >= 0)
        lat[i] = now_ns () - t0;
      wait_event (ino, name, IN_CLOSE_WRITE);  /* the rest of the echo */
    }
  if (lost > 0)
    fprintf (stderr, "mount-events: %ld changes raised no event within %d ms\n", lost,
             TIMEOUT_MS);
  print_percentiles (lat, n);
  free (lat);
  free (copy);
  return 0;
}

typedef struct {
  const char *path;
  long n, lines;
  double t0;
} Writer;

static void *
writer_run (void *data)
{
  Writer *w = data;
  size_t size = LINE_SIZE * w->lines;
  char *lines = malloc (size);
  int fd = open (w->path, O_WRONLY | O_APPEND);

  if (fd < 0)
    die (w->path);
  memset (lines, 'm', size);
  for (long l = 1; l <= w->lines; l++)
    lines[l * LINE_SIZE - 1] = '\n';
  w->t0 = now_ns ();
  for (long i = 0; i < w->n; i += w->lines)
    if (write (fd, lines, size) != (ssize_t) size)
      die (w->path);
  close (fd);
  free (lines);
  return NULL;
}

/* Reads what B_FD has now; returns the number of newlines read. */
static long
read_lines (int fd, const char *path)
{
  static char buf[1 << 16];
  long lines = 0;
  ssize_t len = read (fd, buf, sizeof buf);

  if (len < 0)
    die (path);
  for (ssize_t i = 0; i < len; i++)
    lines += buf[i] == '\n';
  return lines;
}

static int
channel_rate (const char *a_chan, const char *b_chan, long n, long lines)
{
  Writer w = { a_chan, n - n % lines, lines, 0 };
  pthread_t tid;
  int fd = open (b_chan, O_RDONLY);
  struct pollfd pfd = { fd, POLLIN, 0 };
  long got = 0;
  double last = 0;

  if (fd < 0)
    die (b_chan);
  while (read_lines (fd, b_chan) > 0)  /* skip what the window holds */
    ;
  if (pthread_create (&tid, NULL, writer_run, &w) != 0)
    die ("pthread_create");
  n = w.n;
  while (got < n)
    {
      long read_now;

      if (poll (&pfd, 1, STALL_MS) <= 0)
        break;
      if ((read_now = read_lines (fd, b_chan)) > 0)
        {
          got += read_now;
          last = now_ns ();
        }
    }
  pthread_join (tid, NULL);
  if (got < n)
    fprintf (stderr, "mount-events: %ld of %ld messages not seen on %s\n", n - got, n, b_chan);
  printf ("%.0f %ld\n", got / ((last - w.t0) / 1e9), n - got);
  close (fd);
  return 0;
}

static int
channel_poll (const char *a_chan, const char *b_chan, long n)
{
  char line[LINE_SIZE];
  double *lat = malloc (sizeof *lat * n);
  int wfd = open (a_chan, O_WRONLY | O_APPEND), rfd = open (b_chan, O_RDONLY);
  struct pollfd pfd = { rfd, POLLIN, 0 };

  if (wfd < 0 || rfd < 0)
    die (wfd < 0 ? a_chan : b_chan);
  while (read_lines (rfd, b_chan) > 0)
    ;
  memset (line, 'p', sizeof line);
  line[LINE_SIZE - 1] = '\n';
  for (long i = -10; i < n; i++)
    {
      double t0 = now_ns ();
      long got = 0;

      if (write (wfd, line, LINE_SIZE) != LINE_SIZE)
        die (a_chan);
      if (poll (&pfd, 1, TIMEOUT_MS) <= 0)
        {
          fprintf (stderr, "mount-events: poll on %s did not wake\n", b_chan);
          return 1;
        }
      if (i >= 0)
        lat[i] = now_ns () - t0;
      while (got == 0)  /* poll may wake before the whole line is there */
        got = read_lines (rfd, b_chan);
    }
  print_percentiles (lat, n);
  close (wfd);
  close (rfd);
  free (lat);
  return 0;
}

int
main (int argc, char **argv)
{
  long n = argc >= 5 ? atol (argv[4]) : 0;

  if (n > 0 && strcmp (argv[1], "inotify") == 0)
    return inotify_latency (argv[2], argv[3], n);
  if (n > 0 && argc == 6 && strcmp (argv[1], "rate") == 0 && atol (argv[5]) > 0)
    return channel_rate (argv[2], argv[3], n, atol (argv[5]));
  if (n > 0 && strcmp (argv[1], "poll") == 0)
    return channel_poll (argv[2], argv[3], n);
  fprintf (stderr, "usage: mount-events inotify A_KEY B_DIR N | rate A_CHAN B_CHAN N LINES"
           " | poll A_CHAN B_CHAN N\n");
  return 2;
}
