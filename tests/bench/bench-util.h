/* bench-util.h — what the benchmark programs share: the clock, sorting
 * samples, and exiting on failure (with nats.h included first: on a libnats
 * error too).  Static inline, so each program takes what it uses. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline double
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static inline int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

/* Sorts V[0..N) and returns its median. */
static inline double
sorted_median (double *v, long n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Sorts LAT[0..N) and prints its p50 and p99. */
static inline void
print_percentiles (double *lat, long n)
{
  qsort (lat, n, sizeof *lat, cmp_double);
  printf ("%.0f %.0f\n", lat[n / 2], lat[(long) (n * 0.99)]);
}

static inline void
die (const char *what)
{
  fprintf (stderr, "%s: ", program_invocation_short_name);
  perror (what);
  exit (1);
}

#ifdef NATS_H_
static inline void
check (natsStatus s, const char *what)
{
  if (s == NATS_OK)
    return;
  fprintf (stderr, "%s: %s: %s (%s)\n", program_invocation_short_name, what,
           natsStatus_GetText (s), nats_GetLastError (NULL) ? nats_GetLastError (NULL) : "");
  exit (1);
}
#endif
