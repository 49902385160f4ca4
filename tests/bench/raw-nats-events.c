/* raw-nats-events.c — raw libnats, two connections to one server: the
 * anchors for change events and channels of conatfs over NATS.
 *
 *   raw-nats-events URL watch N    kvStore_Put of 100 B on one connection,
 *                                  a kvWatcher (WatchAll) on another, ping-
 *                                  pong N times; prints the p50 and p99 of
 *                                  put call → kvWatcher_Next return, in ns
 *   raw-nats-events URL rate N     N core publishes of 100 B (default
 *                                  options) to a subscriber on the other
 *                                  connection; prints messages per second
 *                                  from the first publish to the last
 *                                  delivery
 *   raw-nats-events URL latency N  publish + natsConnection_Flush to a
 *                                  synchronous subscriber, ping-pong N
 *                                  times; prints the p50 and p99 in ns
 *
 * Times are CLOCK_MONOTONIC in this one process.  A fresh bucket or subject
 * per run; the bucket is deleted at the end.  Not a test: it asserts nothing
 * about time. */
#include <nats/nats.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define VALUE_SIZE 100
#define TIMEOUT_MS 5000

static char value[VALUE_SIZE];

static void
watch_latency (natsConnection *writer, natsConnection *reader, long n)
{
  jsCtx *js_w = NULL, *js_r = NULL;
  kvStore *kv_w = NULL, *kv_r = NULL;
  kvWatcher *watcher = NULL;
  kvEntry *e = NULL;
  kvConfig cfg;
  char bucket[64];
  double *lat = malloc (sizeof *lat * n);

  snprintf (bucket, sizeof bucket, "rawevents_%ld", (long) getpid ());
  check (natsConnection_JetStream (&js_w, writer, NULL), "JetStream");
  check (natsConnection_JetStream (&js_r, reader, NULL), "JetStream");
  kvConfig_Init (&cfg);
  cfg.Bucket = bucket;
  cfg.History = 1;
  cfg.StorageType = js_FileStorage;
  check (js_CreateKeyValue (&kv_w, js_w, &cfg), "js_CreateKeyValue");
  check (js_KeyValue (&kv_r, js_r, bucket), "js_KeyValue");
  check (kvStore_WatchAll (&watcher, kv_r, NULL), "kvStore_WatchAll");
  check (kvWatcher_Next (&e, watcher, TIMEOUT_MS), "initial marker");  /* empty bucket */
  kvEntry_Destroy (e);
  for (long i = -10; i < n; i++)  /* 10 warm-up rounds */
    {
      uint64_t rev;
      double t0 = now_ns ();

      check (kvStore_Put (&rev, kv_w, "k", value, VALUE_SIZE), "kvStore_Put");
      do
        {
          e = NULL;
          check (kvWatcher_Next (&e, watcher, TIMEOUT_MS), "kvWatcher_Next");
        }
      while (e == NULL || kvEntry_Revision (e) < rev ? (kvEntry_Destroy (e), 1) : 0);
      kvEntry_Destroy (e);
      if (i >= 0)
        lat[i] = now_ns () - t0;
    }
  print_percentiles (lat, n);
  kvWatcher_Destroy (watcher);
  kvStore_Destroy (kv_r);
  kvStore_Destroy (kv_w);
  check (js_DeleteKeyValue (js_w, bucket), "js_DeleteKeyValue");
  jsCtx_Destroy (js_r);
  jsCtx_Destroy (js_w);
  free (lat);
}

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  long received, wanted;
  double last_ns;
} Counter;

static void
on_msg (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  Counter *c = closure;

  natsMsg_Destroy (msg);
  pthread_mutex_lock (&c->mu);
  c->last_ns = now_ns ();
  if (++c->received >= c->wanted)
    pthread_cond_broadcast (&c->cond);
  pthread_mutex_unlock (&c->mu);
}

static void
pubsub_rate (natsConnection *pub, natsConnection *reader, long n)
{
  Counter c = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, n, 0 };
  natsSubscription *sub = NULL;
  char subject[64];
  struct timespec deadline;
  double t0;

  snprintf (subject, sizeof subject, "rawevents.rate.%ld", (long) getpid ());
  check (natsConnection_Subscribe (&sub, reader, subject, on_msg, &c), "subscribe");
  check (natsSubscription_SetPendingLimits (sub, -1, -1), "pending limits");
  check (natsConnection_Flush (reader), "flush");
  t0 = now_ns ();
  for (long i = 0; i < n; i++)
    check (natsConnection_Publish (pub, subject, value, VALUE_SIZE), "publish");
  check (natsConnection_Flush (pub), "flush");
  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 30;
  pthread_mutex_lock (&c.mu);
  while (c.received < n && pthread_cond_timedwait (&c.cond, &c.mu, &deadline) == 0)
    ;
  if (c.received < n)
    fprintf (stderr, "raw-nats-events: %ld of %ld messages lost\n", n - c.received, n);
  printf ("%.0f\n", c.received / ((c.last_ns - t0) / 1e9));
  pthread_mutex_unlock (&c.mu);
  natsSubscription_Destroy (sub);
}

static void
pubsub_latency (natsConnection *pub, natsConnection *reader, long n)
{
  natsSubscription *sub = NULL;
  char subject[64];
  double *lat = malloc (sizeof *lat * n);

  snprintf (subject, sizeof subject, "rawevents.latency.%ld", (long) getpid ());
  check (natsConnection_SubscribeSync (&sub, reader, subject), "subscribe");
  check (natsConnection_Flush (reader), "flush");
  for (long i = -10; i < n; i++)
    {
      natsMsg *msg = NULL;
      double t0 = now_ns ();

      check (natsConnection_Publish (pub, subject, value, VALUE_SIZE), "publish");
      check (natsConnection_Flush (pub), "flush");
      check (natsSubscription_NextMsg (&msg, sub, TIMEOUT_MS), "NextMsg");
      if (i >= 0)
        lat[i] = now_ns () - t0;
      natsMsg_Destroy (msg);
    }
  print_percentiles (lat, n);
  natsSubscription_Destroy (sub);
  free (lat);
}

int
main (int argc, char **argv)
{
  natsConnection *a = NULL, *b = NULL;
  long n;

  if (argc != 4 || (n = atol (argv[3])) <= 0
      || (strcmp (argv[2], "watch") != 0 && strcmp (argv[2], "rate") != 0
          && strcmp (argv[2], "latency") != 0))
    {
      fprintf (stderr, "usage: raw-nats-events URL watch|rate|latency N\n");
      return 2;
    }
  memset (value, 'v', sizeof value);
  check (natsConnection_ConnectTo (&a, argv[1]), "connect");
  check (natsConnection_ConnectTo (&b, argv[1]), "connect");
  if (strcmp (argv[2], "watch") == 0)
    watch_latency (a, b, n);
  else if (strcmp (argv[2], "rate") == 0)
    pubsub_rate (a, b, n);
  else
    pubsub_latency (a, b, n);
  natsConnection_Destroy (a);
  natsConnection_Destroy (b);
  nats_Close ();
  return 0;
}
