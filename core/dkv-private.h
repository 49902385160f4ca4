/* dkv-private.h — what dkv.c, dkv-load.c and dkv-save.c share: the store's
 * state (see the essay at the top of dkv.c) and the helpers each side calls. */
#pragma once

#include "client-private.h"

typedef enum { ENTRY_DIRTY, ENTRY_INFLIGHT, ENTRY_ACKED } EntryState;

typedef struct {
  GBytes *value;      /* NULL: delete */
  guint64 gen;
  EntryState state;
  gboolean cas_wait;  /* CAS refused: wait for the newer change */
  gboolean sent;      /* some generation of this entry went to the backend */
  guint64 revision;   /* ACKED: assigned revision and time */
  gint64 time_ms;
  /* The newest change by someone else that arrived while this value was
   * INFLIGHT (it stayed shown, to land later): if the ack says ours landed
   * before it after all, that change is the last write and wins. */
  guint64 remote_revision;
  /* An ACKED value this entry replaced before its echo came: what the key
   * holds again if the new value is rejected. */
  gboolean has_acked;
  GBytes *acked_value;  /* NULL: a delete */
  guint64 acked_gen, acked_revision;
  gint64 acked_time_ms;
} LocalEntry;

typedef struct {
  GBytes *value;
  guint64 revision;
  gint64 time_ms;
} MirrorEntry;

typedef struct {
  guint64 gen;
  GError *error;
} Rejection;

typedef struct {
  char *key;
  GBytes *value, *prev;
  gboolean own;
} Event;

struct _ConatDkv {
  gint refs;             /* memory; atomic */
  gint users;            /* open() references; guarded by client->lock */
  ConatClient *client;
  char *scope, *name;
  char *cache_key;       /* NULL for no_cache instances */
  ConatMergeFunc merge;
  gpointer merge_data;
  gboolean autosave;
  guint64 writer_id;
  ConatBackendStore *store; /* owned; NULL after close */

  GMutex lock;           /* guards everything below */
  GCond cond;            /* broadcast when entries are confirmed or rejected */
  gboolean closed;
  guint saving;          /* save_batch calls using the backend store */
  GHashTable *mirror;    /* char* -> MirrorEntry* */
  GHashTable *local;     /* char* -> LocalEntry* */
  GHashTable *dirty;     /* set of keys whose local entry is DIRTY and not cas_wait */
  GHashTable *rejected;  /* char* -> Rejection* */
  guint64 loaded_revision;
  guint64 next_gen;
  gboolean queued;       /* in client->saver_queue */
  gint64 retry_at_us;    /* monotonic; 0: no backoff */
  guint retry_ms;
  GError *last_error;    /* last failed attempt, for save() */
  guint failures;        /* failed attempts so far */
  GList *watchers;       /* Watcher* */
  guint next_watch_id;
  /* The load in conat_dkv_open */
  guint64 load_keys, load_total;
  gint64 load_started_us;  /* monotonic */
  gint64 load_ms;          /* how long it took; -1 while loading */
  gint64 load_logged_us;   /* monotonic time of its last log line; 0: none */
};

/* dkv.c */
gboolean dkv_bytes_equal0 (GBytes *a, GBytes *b);
gboolean dkv_check_open (ConatDkv *kv, GError **error);
void dkv_fire_event (ConatDkv *kv, Event *ev);
void dkv_mark_dirty (ConatDkv *kv, const char *key, LocalEntry *e);
void dkv_local_remove (ConatDkv *kv, const char *key);
gboolean dkv_has_dirty (ConatDkv *kv);

/* dkv-load.c */
char *dkv_log_name (ConatDkv *kv);
void dkv_on_progress (guint64 keys, guint64 total, gpointer user_data);
void dkv_load_begin (ConatDkv *kv);
void dkv_load_end (ConatDkv *kv, gboolean ok);

/* dkv-save.c */
void dkv_saver_enqueue (ConatDkv *kv);
