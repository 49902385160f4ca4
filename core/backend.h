/* backend.h — the small interface every libconat backend implements.
 *
 * The DKV and PubSub layers (dkv.c, pubsub.c) call only these functions;
 * a backend (backend-embedded.c, backend-nats.c) fills a ConatBackendClass
 * and embeds ConatBackend as the first member of its own struct.
 *
 * The backend is "the server": it orders writes, assigns one increasing
 * revision per store (shared by all keys and deletes) and the time of each
 * write, keeps the data, and tells every open handle of a store about every
 * confirmed change, the writer's own included.
 *
 * Threads.  Every function may be called from any thread.  Callbacks run on
 * threads owned by the backend, never inside a call made by the caller and
 * never with a backend lock held that a backend function needs; the calls of
 * one store handle's on_change are serialized and in revision order.  With
 * quick_callbacks set, they may run on the thread that received the change
 * or message (see conat_client_set_quick_callbacks).
 */
#pragma once

#include "conat.h"

G_BEGIN_DECLS

#define CONAT_LOAD_PROGRESS_MS 250

typedef struct _ConatBackend ConatBackend;
typedef struct _ConatBackendClass ConatBackendClass;
typedef struct _ConatBackendStore ConatBackendStore;  /* defined by each backend */
typedef struct _ConatBackendSub ConatBackendSub;      /* defined by each backend */

/* One confirmed change of one key.  A change with no key (and revision 0)
 * says the store starts over: its bucket was made again and the changes
 * that follow carry the new one's revisions, which may be lower. */
typedef struct {
  const char *key;
  GBytes *value;     /* NULL: deleted */
  guint64 revision;
  gint64 time_ms;
  guint64 writer_id; /* from ConatPut; 0 if written by a client we cannot identify */
  guint64 gen;       /* from ConatPut */
} ConatChange;

typedef void (*ConatChangeCallback) (const ConatChange *change, gpointer user_data);
typedef void (*ConatBackendMessageCallback) (GBytes *message, gpointer user_data);
/* Progress of store_open's load: KEYS read so far, of TOTAL (0: unknown). */
typedef void (*ConatLoadProgressCallback) (guint64 keys, guint64 total, gpointer user_data);
/* A message was published on the channel NAME (PATH: its file path, or NULL). */
typedef void (*ConatBackendChannelCallback) (const char *name, const char *path,
                                             gpointer user_data);

/* One write in a batch.  The caller fills the first block; put_many fills
 * the results. */
typedef struct {
  const char *key;
  GBytes *value;              /* NULL deletes */
  gboolean cas;               /* compare-and-set on expected_revision */
  guint64 expected_revision;  /* with cas: 0 means "the key must not exist" */
  guint64 writer_id;          /* echoed in ConatChange, to recognise own writes */
  guint64 gen;
  /* results */
  guint64 revision;           /* assigned revision, 0 if not applied */
  gint64 time_ms;
  GError *error;              /* per-item failure, e.g. CONAT_ERROR_WRONG_REVISION,
                                 CONAT_ERROR_TOO_BIG; owned by the ConatPut */
} ConatPut;

struct _ConatBackendClass {
  const char *name;  /* "embedded", "nats" */
  void (*free) (ConatBackend *backend);

  /* Namespace, as in conat.h. */
  GPtrArray *(*list_scopes) (ConatBackend *backend, GError **error);
  gboolean (*create_scope) (ConatBackend *backend, const char *scope, GError **error);
  gboolean (*remove_scope) (ConatBackend *backend, const char *scope, GError **error);
  gboolean (*has_scope) (ConatBackend *backend, const char *scope, GError **error);
  GPtrArray *(*list_stores) (ConatBackend *backend, const char *scope, GError **error);
  gboolean (*create_store) (ConatBackend *backend, const char *scope, const char *name,
                            gboolean ephemeral, GError **error);
  gboolean (*remove_store) (ConatBackend *backend, const char *scope, const char *name,
                            GError **error);
  /* Without COUNT, keys and bytes may be left 0 (a cheap existence and
   * options query). */
  gboolean (*store_info) (ConatBackend *backend, const char *scope, const char *name,
                          ConatStoreInfo *info, gboolean count, GError **error);
  gboolean (*set_store_ephemeral) (ConatBackend *backend, const char *scope, const char *name,
                                   gboolean ephemeral, GError **error);
  /* Stores MERGE (a name conat_merge_lookup knows; NULL: unchanged) and
   * LIMITS (NULL: unchanged) with the store.  store_info reports both. */
  gboolean (*set_store_config) (ConatBackend *backend, const char *scope, const char *name,
                                const char *merge, const ConatStoreLimits *limits,
                                GError **error);

  /* Opens a handle on a store, creating the store (and scope) if missing.
   * Before returning, calls ON_LOAD once per stored key (the current value,
   * revision and time) and sets *LOADED_REVISION to the store's revision at
   * that point.  Afterwards calls ON_CHANGE for every change confirmed later;
   * it may also repeat changes at or below *LOADED_REVISION (callers skip
   * them).  ON_PROGRESS (may be NULL) runs on the calling thread with no
   * backend lock held: as keys arrive, at least every CONAT_LOAD_PROGRESS_MS
   * while the load waits for them, and once at the end. */
  ConatBackendStore *(*store_open) (ConatBackend *backend, const char *scope, const char *name,
                                    gboolean ephemeral, ConatChangeCallback on_load,
                                    ConatChangeCallback on_change,
                                    ConatLoadProgressCallback on_progress, gpointer user_data,
                                    guint64 *loaded_revision, GError **error);
  /* No callback of the handle runs after this returns. */
  void (*store_close) (ConatBackendStore *store);
  /* Applies N writes in order; blocks until each is confirmed or failed.
   * Returns FALSE only when the outcome of the batch is unknown (connection
   * lost, timeout): the caller retries it; retries must be harmless. */
  gboolean (*put_many) (ConatBackendStore *store, ConatPut *puts, guint n, GError **error);
  gsize (*max_value_size) (ConatBackendStore *store);

  /* PubSub: PATH may be NULL.  Subscribe returns once the interest is
   * registered; the callback receives every later message. */
  ConatBackendSub *(*subscribe) (ConatBackend *backend, const char *scope, const char *path,
                                 const char *name, ConatBackendMessageCallback callback,
                                 gpointer user_data, GError **error);
  /* Every channel of SCOPE: the callback hears the name and path of the
   * channel of later messages (not their bytes): at once for a channel's
   * first message, then about once a second while it keeps sending (a
   * backend may tell of each message; NATS tells at most once a second,
   * of at most 1024 channels a second).  Returns once the interest is
   * registered; ended by unsubscribe.  Channels whose names the backend
   * cannot decode (another client's subjects) are passed over. */
  ConatBackendSub *(*watch_scope) (ConatBackend *backend, const char *scope,
                                   ConatBackendChannelCallback callback, gpointer user_data,
                                   GError **error);
  /* No callback runs after this returns. */
  void (*unsubscribe) (ConatBackendSub *sub);
  gboolean (*publish) (ConatBackend *backend, const char *scope, const char *path,
                       const char *name, GBytes *message, GError **error);
  /* N messages in order, as N publish calls would send them; NULL: the
   * caller makes those calls.  Sizes are checked by the caller. */
  gboolean (*publish_many) (ConatBackend *backend, const char *scope, const char *path,
                            const char *name, GBytes *const *messages, guint n,
                            GError **error);
  gsize (*max_message_size) (ConatBackend *backend);

  /* Status: fills connected, connected_since_us, last_error, servers. */
  void (*get_status) (ConatBackend *backend, ConatClientStatus *status);
};

struct _ConatBackend {
  const ConatBackendClass *klass;
  /* atomic: callbacks are quick (conat_client_set_quick_callbacks); a
   * backend may then run them on its own delivery threads */
  gint quick_callbacks;
};

ConatBackend *conat_backend_embedded_new (const char *data_dir, GError **error);
ConatBackend *conat_backend_nats_new (const ConatNatsOptions *opts, GError **error);

G_END_DECLS
