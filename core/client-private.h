/* client-private.h — what client.c, the dkv files and pubsub.c share. */
#pragma once

#include "backend.h"

struct _ConatClient {
  gint refs;              /* atomic */
  ConatBackend *backend;  /* owned; immutable */

  GMutex lock;            /* guards the fields below */
  GHashTable *cache;      /* "scope\0name" -> ConatDkv* (shared instances only) */
  GList *open_stores;     /* every open ConatDkv, shared or not */
  GList *loads;           /* ConatDkv* that conat_dkv_open is loading */

  /* The saver: one thread per client saves every autosaving store. */
  GThread *saver;
  GCond saver_cond;       /* signalled when saver_queue grows or on shutdown */
  GQueue saver_queue;     /* ConatDkv* holding a ref; each at most once */
  gboolean saver_stop;
};

/* dkv-save.c */
void conat_dkv_saver_run (ConatClient *client);
guint64 conat_dkv_pending_count (ConatDkv *kv);

/* client.c: cache key for (scope, name). */
char *conat_client_cache_key (const char *scope, const char *name, gsize *len);
