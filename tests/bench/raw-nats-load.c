/* raw-nats-load.c — big buckets and many buckets with raw libnats: the
 * set-up and the anchor of the store-size figures of run.py.
 *
 *   raw-nats-load URL fill BUCKET N       makes file bucket BUCKET (history
 *                                         1) holding key-000000 .. key-<N-1>,
 *                                         100 B each (pipelined puts)
 *   raw-nats-load URL load BUCKET         connects and loads every key with a
 *                                         kvWatcher (WatchAll, until the end-
 *                                         of-replay marker); prints the time
 *                                         from before the connect, in ns
 *   raw-nats-load URL buckets PREFIX N    makes buckets PREFIX0000 ..
 *                                         PREFIX<N-1>, each with key "k"
 *
 * Not a test: it asserts nothing about time. */
#include <nats/nats.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-util.h"

#define VALUE_SIZE 100
#define MAX_PENDING 4000

static kvStore *
bucket_create (jsCtx *js, const char *bucket)
{
  kvStore *kv = NULL;
  kvConfig cfg;

  kvConfig_Init (&cfg);
  cfg.Bucket = bucket;
  cfg.History = 1;
  cfg.StorageType = js_FileStorage;
  check (js_CreateKeyValue (&kv, js, &cfg), "js_CreateKeyValue");
  return kv;
}

static void
fill (jsCtx *js, const char *bucket, long n)
{
  char subject[512], value[VALUE_SIZE];
  jsPubOptions po;

  memset (value, 'v', sizeof value);
  kvStore_Destroy (bucket_create (js, bucket));
  jsPubOptions_Init (&po);
  po.MaxWait = 120000;
  for (long i = 0; i < n; i++)
    {
      snprintf (subject, sizeof subject, "$KV.%s.key-%06ld", bucket, i);
      check (js_PublishAsync (js, subject, value, VALUE_SIZE, NULL), "js_PublishAsync");
    }
  check (js_PublishAsyncComplete (js, &po), "js_PublishAsyncComplete");
}

static void
load (natsConnection *nc, const char *bucket, double t0)
{
  jsCtx *js = NULL;
  kvStore *kv = NULL;
  kvWatcher *w = NULL;
  kvEntry *e = NULL;
  long n = 0;

  check (natsConnection_JetStream (&js, nc, NULL), "JetStream");
  check (js_KeyValue (&kv, js, bucket), "js_KeyValue");
  check (kvStore_WatchAll (&w, kv, NULL), "kvStore_WatchAll");
  for (;;)
    {
      e = NULL;
      check (kvWatcher_Next (&e, w, 30000), "kvWatcher_Next");
      if (e == NULL)
        break;
      n++;
      kvEntry_Destroy (e);
    }
  if (n == 0)
    {
      fprintf (stderr, "raw-nats-load: bucket %s is empty\n", bucket);
      exit (1);
    }
  printf ("%.0f\n", now_ns () - t0);
  kvWatcher_Destroy (w);
  kvStore_Destroy (kv);
  jsCtx_Destroy (js);
}

static void
buckets (jsCtx *js, const char *prefix, long n)
{
  char bucket[256];
  uint64_t rev;

  for (long i = 0; i < n; i++)
    {
      kvStore *kv;

      snprintf (bucket, sizeof bucket, "%s%04ld", prefix, i);
      kv = bucket_create (js, bucket);
      check (kvStore_Put (&rev, kv, "k", "v\n", 2), "kvStore_Put");
      kvStore_Destroy (kv);
    }
}

int
main (int argc, char **argv)
{
  double t0 = now_ns ();
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  jsOptions jo;
  const char *mode = argc > 2 ? argv[2] : "";

  if (!((argc == 5 && (strcmp (mode, "fill") == 0 || strcmp (mode, "buckets") == 0))
        || (argc == 4 && strcmp (mode, "load") == 0)))
    {
      fprintf (stderr, "usage: raw-nats-load URL fill BUCKET N | load BUCKET | buckets PREFIX N\n");
      return 2;
    }
  check (natsConnection_ConnectTo (&nc, argv[1]), "connect");
  if (strcmp (mode, "load") == 0)
    load (nc, argv[3], t0);
  else
    {
      jsOptions_Init (&jo);
      jo.PublishAsync.MaxPending = MAX_PENDING;
      jo.PublishAsync.StallWait = 10000;
      jo.Wait = 30000;
      check (natsConnection_JetStream (&js, nc, &jo), "JetStream");
      if (strcmp (mode, "fill") == 0)
        fill (js, argv[3], atol (argv[4]));
      else
        buckets (js, argv[3], atol (argv[4]));
      jsCtx_Destroy (js);
    }
  natsConnection_Destroy (nc);
  nats_Close ();
  return 0;
}
