/* conat.h — libconat: CoCalc conat DKV and PubSub semantics in C.
 *
 * A ConatClient talks to one backend: the embedded backend (SQLite + memory,
 * one process) or NATS (JetStream key-value buckets + core subjects).
 *
 * Names.  Scope, store, key and channel names are NUL-terminated strings of
 * any bytes except NUL; the empty key is allowed.  Values are GBytes of any
 * bytes.
 *
 * Threads.  Every function here may be called from any thread.  Callbacks
 * (change events, merge, messages) run on a thread owned by the core, with
 * no core lock held: they may call back into the API, but must not block on
 * a save of the store that called them.
 *
 * Ownership.  Returned GBytes, strings, arrays and hash tables belong to the
 * caller ("transfer full") unless a comment says otherwise.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define CONAT_ERROR (conat_error_quark ())
GQuark conat_error_quark (void);

typedef enum {
  CONAT_ERROR_FAILED,         /* anything else; maps to EIO */
  CONAT_ERROR_CLOSED,         /* the store or channel was closed */
  CONAT_ERROR_INVALID_NAME,   /* a name the backend cannot hold */
  CONAT_ERROR_NAME_TOO_LONG,  /* a name over the backend's limit */
  CONAT_ERROR_NOT_FOUND,
  CONAT_ERROR_EXISTS,
  CONAT_ERROR_NOT_EMPTY,
  CONAT_ERROR_TOO_BIG,        /* value or message over the limit */
  CONAT_ERROR_NO_SPACE,       /* disk full, or a store limit reached */
  CONAT_ERROR_PERMISSION,     /* the server refuses */
  CONAT_ERROR_TIMEOUT,        /* not confirmed in time; the change stays queued */
  CONAT_ERROR_DISCONNECTED,   /* backend unreachable; the change stays queued */
  CONAT_ERROR_BUSY,           /* e.g. making a non-empty store ephemeral */
  CONAT_ERROR_WRONG_REVISION, /* compare-and-set lost (handled inside the core) */
  CONAT_ERROR_CORRUPT,        /* unusable data directory or database */
  CONAT_ERROR_INVALID_ARGUMENT, /* e.g. an unknown merge strategy; maps to EINVAL */
} ConatError;

/* ---------------------------------------------------------------- client */

typedef struct _ConatClient ConatClient;

/* Opens the embedded backend on DATA_DIR (created if missing; NULL means
 * $XDG_DATA_HOME/conatfs).  Clients in one process on one directory share
 * one database and see each other at once; a second process on the same
 * directory is refused with CONAT_ERROR_BUSY. */
ConatClient *conat_client_new_embedded (const char *data_dir, GError **error);

typedef struct {
  const char *servers;       /* "nats://h:p[,nats://h2:p]" */
  const char *creds_file;    /* NATS .creds file */
  const char *user;
  const char *password_file; /* with user */
  const char *token_file;
  const char *tls_ca;
  const char *tls_cert;
  const char *tls_key;
  int replicas;              /* bucket replicas; 0 or 1 for a single server */
} ConatNatsOptions;

/* Connects to NATS; fails with a clear error if no server answers or the
 * credentials are refused.  Reconnects forever afterwards. */
ConatClient *conat_client_new_nats (const ConatNatsOptions *opts, GError **error);

ConatClient *conat_client_ref (ConatClient *client);
void conat_client_unref (ConatClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConatClient, conat_client_unref)

/* "embedded" or "nats". */
const char *conat_client_backend_name (ConatClient *client);

/* A promise about every callback of CLIENT (change events, merges,
 * messages, channels seen): it returns quickly and calls nothing that waits
 * for the backend (opening, closing or saving a store, a namespace or
 * store-options call, a subscribe); get, set, delete and publish are fine.
 * The backend may then run a callback on the thread that received the
 * change or message when nothing of that store or channel is queued,
 * running or arriving right behind it: on NATS one thread hand-off less
 * for a lone change or message (tens of microseconds; bursts still go
 * through the core's threads).  Order and "no callback after close" hold
 * as before.
 * Call it before opening stores and channels. */
void conat_client_set_quick_callbacks (ConatClient *client, gboolean quick);

/* Namespace.  Arrays hold char* names, freed with the array. */
GPtrArray *conat_client_list_scopes (ConatClient *client, GError **error);
gboolean conat_client_create_scope (ConatClient *client, const char *scope, GError **error);
gboolean conat_client_remove_scope (ConatClient *client, const char *scope, GError **error);
gboolean conat_client_has_scope (ConatClient *client, const char *scope, GError **error);

/* Limits of one store, kept by the backend with the store (so every client
 * sees the same); 0 means "no limit".  A write over a limit is rejected:
 * CONAT_ERROR_TOO_BIG for max_value_size, CONAT_ERROR_NO_SPACE for
 * max_bytes and max_keys; values older than max_age_ms are removed. */
typedef struct {
  gint64 max_value_size;  /* bytes of one value */
  gint64 max_age_ms;      /* age of a value */
  gint64 max_bytes;       /* bytes of all values */
  gint64 max_keys;        /* number of keys */
} ConatStoreLimits;

typedef struct {
  gboolean ephemeral;
  guint64 keys;   /* keys stored on the backend */
  guint64 bytes;  /* bytes of values stored on the backend */
  char merge[16]; /* the store's merge strategy: "lww", "lines" or "json" */
  ConatStoreLimits limits;
} ConatStoreInfo;

GPtrArray *conat_client_list_stores (ConatClient *client, const char *scope, GError **error);
/* CONAT_ERROR_EXISTS if it exists; creates the scope if missing. */
gboolean conat_client_create_store (ConatClient *client, const char *scope, const char *name,
                                    gboolean ephemeral, GError **error);
/* CONAT_ERROR_NOT_EMPTY if it holds keys. */
gboolean conat_client_remove_store (ConatClient *client, const char *scope, const char *name,
                                    GError **error);
/* FALSE with CONAT_ERROR_NOT_FOUND if there is no such store. */
gboolean conat_client_store_info (ConatClient *client, const char *scope, const char *name,
                                  ConatStoreInfo *info, GError **error);
/* The same without keys and bytes (left 0): whether the store exists, its
 * kind, merge and limits, without counting its keys (a bucket scan on NATS). */
gboolean conat_client_store_options (ConatClient *client, const char *scope, const char *name,
                                     ConatStoreInfo *info, GError **error);
/* CONAT_ERROR_BUSY if the store holds keys. */
gboolean conat_client_set_store_ephemeral (ConatClient *client, const char *scope,
                                           const char *name, gboolean ephemeral, GError **error);
/* Stores the merge strategy ("lww", "lines", "json"; else
 * CONAT_ERROR_INVALID_ARGUMENT) with the store, for every client. */
gboolean conat_client_set_store_merge (ConatClient *client, const char *scope, const char *name,
                                       const char *merge, GError **error);
gboolean conat_client_set_store_limits (ConatClient *client, const char *scope,
                                        const char *name, const ConatStoreLimits *limits,
                                        GError **error);

typedef struct {
  const char *backend;  /* static */
  char *servers;        /* NULL for embedded; never holds credentials */
  gboolean connected;
  gint64 connected_since_us; /* g_get_real_time () at the last state change */
  char *last_error;     /* NULL if none */
  guint stores_open;
  guint64 pending;      /* unsaved changes over all open stores */
} ConatClientStatus;

void conat_client_get_status (ConatClient *client, ConatClientStatus *status);
void conat_client_status_clear (ConatClientStatus *status);

/* ------------------------------------------------------------------- DKV */

typedef struct _ConatDkv ConatDkv;

/* 3-way merge: LOCAL is this client's unsaved value, REMOTE the newer value
 * the server holds (NULL if deleted), PREV the common ancestor (NULL if none).
 * Return a new reference to the merged value, or NULL to keep LOCAL. */
typedef GBytes *(*ConatMergeFunc) (const char *key, GBytes *local, GBytes *remote, GBytes *prev,
                                   gpointer user_data);

typedef struct {
  const char *scope;
  const char *name;
  gboolean ephemeral;
  ConatMergeFunc merge;  /* NULL: local-first last write wins */
  gpointer merge_data;
  gboolean no_autosave;  /* nothing is sent until conat_dkv_save() */
  gboolean no_cache;     /* a new instance, not shared, closed by one close */
} ConatDkvOptions;

/* Opens (and creates, if missing) a store.  Returns with the current state
 * loaded (late joiners read it at once).  Without no_cache, opening the same
 * (scope, name) again returns the same instance with one more reference; the
 * other options of a later open are then ignored. */
ConatDkv *conat_dkv_open (ConatClient *client, const ConatDkvOptions *opts, GError **error);
/* Releases one reference; the last one closes the store.  Does not save:
 * call conat_dkv_save() first to keep unsaved changes. */
void conat_dkv_close (ConatDkv *kv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConatDkv, conat_dkv_close)

/* Keep the instance's memory past its last close (calls then fail with
 * CONAT_ERROR_CLOSED) until the matching unref.  Not an open reference. */
ConatDkv *conat_dkv_ref (ConatDkv *kv);
void conat_dkv_unref (ConatDkv *kv);

const char *conat_dkv_scope (ConatDkv *kv);
const char *conat_dkv_name (ConatDkv *kv);

/* Local and immediate: the next get returns VALUE.  NULL deletes. */
gboolean conat_dkv_set (ConatDkv *kv, const char *key, GBytes *value, GError **error);
gboolean conat_dkv_delete (ConatDkv *kv, const char *key, GError **error);
/* Deletes every key this instance knows (another instance's unsaved keys survive). */
gboolean conat_dkv_clear (ConatDkv *kv, GError **error);

/* NULL without error if absent. */
GBytes *conat_dkv_get (ConatDkv *kv, const char *key, GError **error);
gboolean conat_dkv_has (ConatDkv *kv, const char *key, GError **error);
/* char* key -> GBytes* value: a snapshot. */
GHashTable *conat_dkv_get_all (ConatDkv *kv, GError **error);
/* char* keys, unsorted; empty after close. */
GPtrArray *conat_dkv_keys (ConatDkv *kv);
/* -1 with error after close. */
gssize conat_dkv_length (ConatDkv *kv, GError **error);

typedef struct {
  GBytes *value;     /* owned; never NULL when the call returned TRUE */
  guint64 revision;  /* server sequence of the confirmed value; 0 until confirmed */
  gint64 time_ms;    /* server time of the confirmed value (ms since epoch); 0 until confirmed */
  gboolean unsaved;  /* the value is a local change not yet confirmed */
} ConatDkvEntry;

/* FALSE without error if absent. */
gboolean conat_dkv_get_entry (ConatDkv *kv, const char *key, ConatDkvEntry *entry, GError **error);
void conat_dkv_entry_clear (ConatDkvEntry *entry);

/* 0 if the key's current value is not confirmed (or absent). */
guint64 conat_dkv_revision (ConatDkv *kv, const char *key);
gint64 conat_dkv_time (ConatDkv *kv, const char *key);

/* How the load of a store went.  conat_dkv_open reads every key before it
 * returns, which takes a while for a big store: the log tells of a load of
 * CONAT_LOAD_LOG_KEYS keys or more, or of one that takes over a second (a
 * line at its start, one every 2 s while it lasts, one at its end). */
#define CONAT_LOAD_LOG_KEYS 10000

typedef struct {
  char *scope;        /* conat_client_list_loads only; else NULL */
  char *name;
  guint64 keys;       /* keys read so far; once loaded, the keys it found */
  guint64 total;      /* keys expected; 0 while not known */
  gint64 elapsed_ms;  /* since the open began; once loaded, how long it took */
  gboolean loaded;
} ConatLoadStatus;

/* The stores a conat_dkv_open is loading now: ConatLoadStatus*, freed
 * with the array. */
GPtrArray *conat_client_list_loads (ConatClient *client);
/* The load of an open store (loaded is TRUE). */
void conat_dkv_get_load (ConatDkv *kv, ConatLoadStatus *status);
void conat_load_status_free (ConatLoadStatus *status);

/* Blocks until every change made before the call is confirmed by the
 * backend, or fails: CONAT_ERROR_TIMEOUT after TIMEOUT_MS (< 0: no limit;
 * the changes stay queued), CONAT_ERROR_NO_SPACE as soon as an attempt
 * fails on a full disk (the changes stay queued and are saved once space
 * is freed), or the error the backend gave a rejected change (the rejected
 * value is dropped).  With no_autosave this is one attempt. */
gboolean conat_dkv_save (ConatDkv *kv, gint64 timeout_ms, GError **error);
/* The same for one key only. */
gboolean conat_dkv_save_key (ConatDkv *kv, const char *key, gint64 timeout_ms, GError **error);

gboolean conat_dkv_has_unsaved_changes (ConatDkv *kv);
/* char* keys with changes not yet confirmed. */
GPtrArray *conat_dkv_unsaved_changes (ConatDkv *kv);

/* Largest value the backend takes for this store (bytes). */
gsize conat_dkv_max_value_size (ConatDkv *kv);

/* A change confirmed by the backend: VALUE is the new value (NULL when
 * deleted), PREV what this instance held before.  OWN is TRUE for the echo
 * of this instance's own write.  No event for local writes or the load. */
typedef void (*ConatChangeFunc) (ConatDkv *kv, const char *key, GBytes *value, GBytes *prev,
                                 gboolean own, gpointer user_data);

guint conat_dkv_watch (ConatDkv *kv, ConatChangeFunc func, gpointer user_data,
                       GDestroyNotify destroy);
void conat_dkv_unwatch (ConatDkv *kv, guint watch_id);

/* Replaces the merge callback of an open instance (NULL: local-first last
 * write wins); for a store whose strategy was changed meanwhile. */
void conat_dkv_set_merge (ConatDkv *kv, ConatMergeFunc merge, gpointer merge_data);

/* ---------------------------------------------------------------- merges */

/* Built-in ConatMergeFuncs (user_data is unused).
 *
 * lines: a 3-way line merge in the spirit of diff3: the edits each side
 *   made to PREV are kept where they do not overlap; where they overlap, the
 *   local side wins.  Values that are not text (a NUL byte or invalid UTF-8)
 *   fall back to local-first last write wins (NULL).
 * json: a 3-way merge of JSON objects key by key (recursively for nested
 *   objects): a member changed on one side only takes that side's value;
 *   changed on both, the local side wins; removals are kept.  Anything that
 *   is not a JSON object on all present sides falls back to NULL. */
GBytes *conat_merge_lines (const char *key, GBytes *local, GBytes *remote, GBytes *prev,
                           gpointer user_data);
GBytes *conat_merge_json (const char *key, GBytes *local, GBytes *remote, GBytes *prev,
                          gpointer user_data);
/* "lww" gives *FUNC = NULL; "lines" and "json" the functions above.  FALSE
 * for any other name. */
gboolean conat_merge_lookup (const char *name, ConatMergeFunc *func);

/* ---------------------------------------------------------------- PubSub */

typedef struct _ConatPubsub ConatPubsub;

/* Every message published on the channel after the subscription is
 * registered, this client's own included. */
typedef void (*ConatMessageFunc) (ConatPubsub *ps, GBytes *message, gpointer user_data);

/* PATH may be NULL (a channel not scoped to a file).  Returns once the
 * subscription is registered with the backend. */
ConatPubsub *conat_pubsub_open (ConatClient *client, const char *scope, const char *path,
                                const char *name, ConatMessageFunc func, gpointer user_data,
                                GDestroyNotify destroy, GError **error);
/* Fire and forget; CONAT_ERROR_TOO_BIG over the backend's message limit. */
gboolean conat_pubsub_publish (ConatPubsub *ps, GBytes *message, GError **error);
/* N messages in this order, as N publishes would send them, but handed to
 * the network together where the backend can.  Nothing is sent if one is
 * over the limit. */
gboolean conat_pubsub_publish_many (ConatPubsub *ps, GBytes *const *messages, guint n,
                                    GError **error);
gsize conat_pubsub_max_message_size (ConatPubsub *ps);
/* No callback runs after this returns. */
void conat_pubsub_close (ConatPubsub *ps);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConatPubsub, conat_pubsub_close)

/* Channel traffic of a whole scope: which channels are in use. */
typedef struct _ConatPubsubWatch ConatPubsubWatch;

/* A message was published on the channel NAME of the watched scope (PATH:
 * its file path, or NULL); NAME is never empty.  No message bytes.  Any
 * client's messages count, this one's included.  Called in order, at most
 * once per message: on NATS, a channel is reported at its first message
 * and then at most once a second while it keeps sending. */
typedef void (*ConatChannelSeenFunc) (ConatPubsubWatch *watch, const char *name,
                                      const char *path, gpointer user_data);

/* Watches every channel of SCOPE.  Returns once the watch is registered
 * with the backend.  CONAT_ERROR_NAME_TOO_LONG if the backend cannot name
 * the scope's channels (NATS: subject over its limit).  On NATS, messages
 * on the scope's subjects that are not a channel's (docs/nats-mapping.md)
 * are passed over, and once 1024 channels were reported within a second
 * (a flood), messages on other channels are not reported: a channel that
 * keeps sending is reported later. */
ConatPubsubWatch *conat_pubsub_watch_open (ConatClient *client, const char *scope,
                                           ConatChannelSeenFunc func, gpointer user_data,
                                           GDestroyNotify destroy, GError **error);
/* No callback runs after this returns. */
void conat_pubsub_watch_close (ConatPubsubWatch *watch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConatPubsubWatch, conat_pubsub_watch_close)

G_END_DECLS
