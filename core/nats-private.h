/* nats-private.h — what backend-nats.c and nats-store.c share. */
#pragma once

#include "backend.h"
#include "nats-names.h"

#include <nats/nats.h>

G_BEGIN_DECLS

#define NATS_API_WAIT_MS 5000                     /* JetStream API requests */
#define NATS_LOAD_TIMEOUT_US (30 * G_USEC_PER_SEC) /* replay of a bucket that stalls */
#define NATS_LOAD_IDLE_US (250 * 1000)            /* then: is the awaited message gone? */
#define NATS_WRITER_HEADER "Conat-Writer"          /* "<writer_id hex>.<gen hex>" */
#define NATS_HEADER_RESERVE 512                    /* room for our headers; they take ~200 bytes */

typedef struct _NatsBackend NatsBackend;
typedef struct _Dispatch Dispatch;

/* A queue of callbacks run in order on the backend's dispatch pool. */
typedef struct {
  void (*deliver) (Dispatch *d, gpointer item);  /* runs the user callback */
  GDestroyNotify free_item;
  void (*finalize) (Dispatch *d);                /* frees the owner */
} DispatchClass;

struct _Dispatch {
  const DispatchClass *klass;
  NatsBackend *be;
  gint refs;          /* atomic */
  GMutex mu;          /* guards the fields below, and owner fields that say so */
  GCond cond;
  GPtrArray *items;   /* queued items from index head on (fifo_* in backend-nats.c) */
  guint head;
  gboolean started;   /* FALSE while store_open loads */
  gboolean scheduled; /* pushed to the pool or running */
  gboolean closing;   /* set once, by dispatch_close (atomically: dispatch_run reads it unlocked) */
  GThread *running;   /* the thread inside deliver, or NULL */
};

struct _NatsBackend {
  ConatBackend parent;
  natsConnection *nc;   /* immutable after connect */
  jsCtx *js;            /* immutable after connect */
  int replicas;
  char *servers;        /* for display: no credentials */
  GThreadPool *pool;    /* runs Dispatch queues */
  GThread *maint;
  natsSubscription *adv_subs[2]; /* stream and consumer advisories; set before maint starts */

  GMutex mu;            /* guards the fields below */
  GCond cond;
  gboolean connected;
  gboolean closed;
  gint64 connected_since_us;
  char *url;            /* the server connected to (or last), for display */
  char *last_error;
  gboolean stopping;
  GList *stores;        /* open ConatBackendStore*, not referenced */
  GHashTable *taps;     /* scope -> its ScopeTap (nats-pubsub.c), while used */
  guint adv_done;       /* how many of adv_subs deliver nothing more */
  gboolean maint_wanted;
  gboolean maint_reconnect;

  /* Channel publishes (nats-publish.c). */
  GMutex bulk_mu;       /* guards the fields below */
  GCond bulk_cond;
  natsOptions *bulk_opts;  /* the main connection's, without SendAsap */
  natsConnection *bulk_nc; /* made at the first batch */
  GThread *bulk_flusher;
  gboolean bulk_failed; /* it could not be made: batches go out as single publishes */
  gboolean bulk_stopping;
  guint64 bulk_sent;    /* batches published on bulk_nc */
  guint64 bulk_flushed; /* of those, the ones a flush has covered (or given up on) */
  gboolean bulk_closed; /* guarded by mu: bulk_nc's closed callback ran */
  gint asap_unflushed;  /* atomic: a channel message went out on nc since its last flush */

  /* Acks of pipelined puts: one wildcard subscription on ack_prefix + "*". */
  GMutex ack_mu;        /* guards the fields below */
  GCond ack_cond;
  char *ack_prefix;     /* "<inbox>." */
  natsSubscription *ack_sub;
  gboolean ack_sub_done;
  GHashTable *acks;     /* guint64 id -> AckSlot* */
  guint64 next_ack_id;
  guint ack_epoch;      /* bumped on every disconnect */
  guint perm_epoch;     /* bumped on every permission violation */
  char *perm_text;
};

/* An open store handle (nats-store.c; nats-put.c writes through it). */
struct _ConatBackendStore {
  Dispatch d;
  char *bucket;
  char *stream;            /* "KV_<bucket>" */
  char *prefix;            /* "$KV.<bucket>." */
  char *filter;            /* "$KV.<bucket>.>" */
  ConatChangeCallback on_change;
  gpointer user_data;
  GMutex sub_mu;           /* held while the subscription is replaced or checked */

  /* guarded by d.mu */
  natsSubscription *sub;
  char *consumer;          /* the name of sub's consumer */
  gint64 heard_us;         /* monotonic time the watch last heard anything */
  guint gen;               /* generation of the current subscription */
  gboolean stale;          /* ephemeral: the connection dropped since the watch began */
  gboolean broken;         /* the watch skipped a message: resume it after last_seq */
  gboolean ephemeral;
  gint64 created;          /* creation time of the bucket's stream (ns) */
  gboolean gone;           /* the bucket was missing at the last check */
  guint64 last_seq;        /* highest revision the handle knows */
  guint64 acked_seq;       /* highest revision of its own puts acked before the watch
                              had delivered them (nats-put.c), for store_reset */
  gint64 last_stored_ns;   /* server time of the last message delivered */
  gboolean loading;
  guint64 load_count;      /* messages replayed so far, while loading */
  guint64 load_total;      /* messages the bucket held at open */
  guint64 load_target;
  guint64 loaded_rev;
  GHashTable *load;        /* key -> Change*, while loading */
  GHashTable *keys;        /* ephemeral stores: key -> gint64* stored_ns, keys with a value */
  gboolean resetting;      /* writes wait while the bucket is re-created */
  gint64 max_value;        /* the bucket's value limit (nats-config.c), 0: none */
  gint64 max_age_ms;       /* the bucket's MaxAge, 0: none */
  GHashTable *ages;        /* with a max_age only: key -> gint64* stored_ns, keys with a value */
  gboolean ages_fill;      /* ages was made after the load: fill it from a scan */
  GHashTable *ages_seen;   /* while filling: keys the watch changed meanwhile */

  /* guarded by be->mu */
  gboolean check_wanted;
  gboolean remote_check_wanted;  /* someone else created or deleted the bucket */
  gboolean reconnect_wanted;     /* the connection came back since its last check */
};

/* nats-pubsub.c */
ConatBackendSub *nats_subscribe (ConatBackend *backend, const char *scope, const char *path,
                                 const char *name, ConatBackendMessageCallback callback,
                                 gpointer user_data, GError **error);
ConatBackendSub *nats_watch_scope (ConatBackend *backend, const char *scope,
                                   ConatBackendChannelCallback callback, gpointer user_data,
                                   GError **error);
void nats_unsubscribe (ConatBackendSub *sub);

/* nats-publish.c */
void nats_batch_init (NatsBackend *be);
void nats_batch_set_options (NatsBackend *be, natsOptions *o);
void nats_batch_close (NatsBackend *be, gint64 deadline);
gboolean nats_publish (ConatBackend *backend, const char *scope, const char *path,
                       const char *name, GBytes *message, GError **error);
gboolean nats_publish_many (ConatBackend *backend, const char *scope, const char *path,
                            const char *name, GBytes *const *messages, guint n,
                            GError **error);

/* A change a store handle reports (nats-store.c, nats-maint.c). */
typedef struct {
  char *key;
  GBytes *value;  /* NULL: deleted */
  guint64 revision;
  gint64 time_ms;
  gint64 stored_ns;  /* server time the message was stored; 0 if synthetic */
  guint64 writer_id;
  guint64 gen;
} NatsChange;

/* nats-store.c, for nats-maint.c */
natsSubscription *nats_store_take_sub_locked (ConatBackendStore *st);
gboolean nats_store_subscribe (ConatBackendStore *st, jsDeliverPolicy policy, guint64 start,
                               GError **error);
void nats_store_note_config_locked (ConatBackendStore *st, jsStreamInfo *si);

/* backend-nats.c */
void dispatch_init (Dispatch *d, const DispatchClass *klass, NatsBackend *be);
Dispatch *dispatch_ref (Dispatch *d);
void dispatch_unref (Dispatch *d);
void dispatch_push_locked (Dispatch *d, gpointer item);
gboolean dispatch_push_or_claim_locked (Dispatch *d, gpointer item, natsSubscription *sub);
void dispatch_run_claimed (Dispatch *d, gpointer item);
void dispatch_start (Dispatch *d);
void dispatch_close (Dispatch *d);

void nats_note_error (NatsBackend *be, const char *message);
const char *nats_async_error_text (natsConnection *nc, natsStatus err);
void nats_set_error (NatsBackend *be, GError **error, natsStatus s, jsErrCode jerr,
                     const char *context);
gboolean nats_is_connected (NatsBackend *be);

/* nats-namespace.c */
GPtrArray *nats_list_scopes (ConatBackend *backend, GError **error);
gboolean nats_create_scope (ConatBackend *backend, const char *scope, GError **error);
gboolean nats_remove_scope (ConatBackend *backend, const char *scope, GError **error);
gboolean nats_has_scope (ConatBackend *backend, const char *scope, GError **error);
GPtrArray *nats_list_stores (ConatBackend *backend, const char *scope, GError **error);
gboolean nats_create_store (ConatBackend *backend, const char *scope, const char *name,
                            gboolean ephemeral, GError **error);
gboolean nats_remove_store (ConatBackend *backend, const char *scope, const char *name,
                            GError **error);
gboolean nats_store_info (ConatBackend *backend, const char *scope, const char *name,
                          ConatStoreInfo *info, gboolean count, GError **error);
gboolean nats_set_store_ephemeral (ConatBackend *backend, const char *scope, const char *name,
                                   gboolean ephemeral, GError **error);
gboolean nats_stream_info (NatsBackend *be, const char *bucket, jsStreamInfo **si,
                           GError **error);
gboolean nats_bucket_create (NatsBackend *be, const char *bucket, gboolean ephemeral,
                             GError **error);
gboolean nats_bucket_ensure (NatsBackend *be, const char *bucket, gboolean ephemeral,
                             gboolean create, jsStreamInfo **si, gboolean *created,
                             GError **error);
void nats_bucket_skip_to (NatsBackend *be, const char *bucket, guint64 seq);
gboolean nats_bucket_passed (NatsBackend *be, const char *bucket, guint64 seq);
gboolean nats_scope_mark (NatsBackend *be, const char *scope, GError **error);
gboolean nats_msg_is_delete (natsMsg *msg);
gboolean nats_bucket_times (NatsBackend *be, const char *bucket,
                            void (*func) (const char *key, gint64 stored_ns, gpointer data),
                            gpointer data, GError **error);

/* nats-store.c */
ConatBackendStore *nats_store_open (ConatBackend *backend, const char *scope, const char *name,
                                    gboolean ephemeral, ConatChangeCallback on_load,
                                    ConatChangeCallback on_change,
                                    ConatLoadProgressCallback on_progress, gpointer user_data,
                                    guint64 *loaded_revision, GError **error);
void nats_store_close (ConatBackendStore *store);
void nats_store_request_check (ConatBackendStore *store);
void nats_stores_bucket_changed (NatsBackend *be, const char *bucket);
void nats_stores_note_config (NatsBackend *be, const char *bucket, jsStreamInfo *si);
void nats_stores_bucket_changed_remotely (NatsBackend *be, const char *bucket);
void nats_stores_disconnected (NatsBackend *be);
gpointer nats_maint_thread (gpointer data);

/* nats-config.c */
void nats_config_read (const jsStreamConfig *cfg, ConatStoreInfo *info);
gboolean nats_bucket_configure (NatsBackend *be, const char *bucket, jsStreamInfo *si,
                                const char *merge, const ConatStoreLimits *limits,
                                GError **error);
gboolean nats_set_store_config (ConatBackend *backend, const char *scope, const char *name,
                                const char *merge, const ConatStoreLimits *limits,
                                GError **error);

/* nats-put.c */
gboolean nats_put_many (ConatBackendStore *store, ConatPut *puts, guint n, GError **error);
gsize nats_max_value_size (ConatBackendStore *store);

void nats_acks_init (NatsBackend *be);
gboolean nats_acks_start (NatsBackend *be, GError **error);
void nats_acks_stop (NatsBackend *be);
void nats_acks_clear (NatsBackend *be);
void nats_acks_interrupt (NatsBackend *be);
void nats_acks_permission_error (NatsBackend *be, const char *text);
guint nats_permission_epoch (NatsBackend *be);
char *nats_permission_refused (NatsBackend *be, guint since, const char *name);

G_END_DECLS
