/* raw-nats.c — raw libnats on a KV bucket: the anchor for conatfs over NATS.
 *
 *   raw-nats URL pipelined N   N puts of 100 B to distinct keys of a fresh
 *                              file bucket with js_PublishAsync (at most
 *                              4000 in flight), then js_PublishAsyncComplete;
 *                              prints confirmed puts per second
 *   raw-nats URL sync N        N kvStore_Put calls of 100 B (to 100 keys, after
 *                              100 warm-up puts); prints the median latency of
 *                              one put in nanoseconds
 *
 * The bucket is made as conatfs makes a persistent store's (history 1, file
 * storage) and deleted at the end.  Not a test: it asserts nothing about time.
 */
#include <nats/nats.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define VALUE_SIZE 100
#define MAX_PENDING 4000

static long errors;

static void
on_pub_error (jsCtx *js, jsPubAckErr *pae, void *closure)
{
  errors++;
}

static double
pipelined (jsCtx *js, const char *bucket, long n, const char *value)
{
  char subject[256];
  jsPubOptions po;
  double t0;

  jsPubOptions_Init (&po);
  po.MaxWait = 60000;
  t0 = now_ns ();
  for (long i = 0; i < n; i++)
    {
      snprintf (subject, sizeof subject, "$KV.%s.key-%ld", bucket, i);
      check (js_PublishAsync (js, subject, value, VALUE_SIZE, NULL), "js_PublishAsync");
    }
  check (js_PublishAsyncComplete (js, &po), "js_PublishAsyncComplete");
  if (errors > 0)
    {
      fprintf (stderr, "raw-nats: %ld puts failed\n", errors);
      exit (1);
    }
  return n / ((now_ns () - t0) / 1e9);
}

static double
sync_median (kvStore *kv, long n, const char *value)
{
  double *lat = malloc (sizeof *lat * n);
  char key[32];
  uint64_t rev;
  double median;

  for (long i = 0; i < 100; i++)
    {
      snprintf (key, sizeof key, "k%ld", i % 100);
      check (kvStore_Put (&rev, kv, key, value, VALUE_SIZE), "kvStore_Put");
    }
  for (long i = 0; i < n; i++)
    {
      double t0 = now_ns ();

      snprintf (key, sizeof key, "k%ld", i % 100);
      check (kvStore_Put (&rev, kv, key, value, VALUE_SIZE), "kvStore_Put");
      lat[i] = now_ns () - t0;
    }
  median = sorted_median (lat, n);
  free (lat);
  return median;
}

int
main (int argc, char **argv)
{
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  kvStore *kv = NULL;
  kvConfig cfg;
  jsOptions jo;
  char bucket[64];
  char value[VALUE_SIZE];
  long n;
  double result;

  if (argc != 4 || (strcmp (argv[2], "pipelined") != 0 && strcmp (argv[2], "sync") != 0)
      || (n = atol (argv[3])) <= 0)
    {
      fprintf (stderr, "usage: raw-nats URL pipelined|sync N\n");
      return 2;
    }
  memset (value, 'v', sizeof value);
  snprintf (bucket, sizeof bucket, "rawbench_%ld_%d", (long) getpid (), rand ());

  check (natsConnection_ConnectTo (&nc, argv[1]), "connect");
  jsOptions_Init (&jo);
  jo.PublishAsync.MaxPending = MAX_PENDING;
  jo.PublishAsync.StallWait = 10000;
  jo.PublishAsync.ErrHandler = on_pub_error;
  check (natsConnection_JetStream (&js, nc, &jo), "JetStream");
  kvConfig_Init (&cfg);
  cfg.Bucket = bucket;
  cfg.History = 1;
  cfg.StorageType = js_FileStorage;
  check (js_CreateKeyValue (&kv, js, &cfg), "js_CreateKeyValue");

  if (strcmp (argv[2], "pipelined") == 0)
    result = pipelined (js, bucket, n, value);
  else
    result = sync_median (kv, n, value);

  kvStore_Destroy (kv);
  check (js_DeleteKeyValue (js, bucket), "js_DeleteKeyValue");
  jsCtx_Destroy (js);
  natsConnection_Destroy (nc);
  nats_Close ();
  printf ("%.0f\n", result);
  return 0;
}
