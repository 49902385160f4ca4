/* embedded-private.h — what the files of the embedded backend share:
 * backend-embedded.c (the essay on ordering and delivery, the dispatcher,
 * stores in memory, handles, lifetime), embedded-db.c, embedded-namespace.c,
 * embedded-put.c and embedded-pubsub.c. */
#pragma once

#include "backend.h"

#include <sqlite3.h>

G_BEGIN_DECLS

#define MAX_VALUE_SIZE (64 * 1024 * 1024)

G_DEFINE_AUTOPTR_CLEANUP_FUNC (sqlite3_stmt, sqlite3_finalize)

typedef struct _EmbeddedBackend EmbeddedBackend;
typedef struct _Receiver Receiver;
typedef struct _Store Store;

/* What the dispatcher calls back: a store handle or a subscription. */
struct _Receiver {
  gint ref_count;                  /* atomic */
  gint closing;                    /* atomic; set under cb_lock */
  gboolean ready;                  /* cb_lock */
  gpointer user_data;              /* immutable */
  void (*finalize) (Receiver *r);  /* immutable */
};

typedef struct {
  GBytes *value;
  guint64 revision;
  gint64 time_ms;
} Entry;

/* A store's options, as store_info reports them. */
typedef struct {
  char merge[16];
  ConatStoreLimits limits;
} Config;

extern const Config embedded_default_config;  /* backend-embedded.c */

/* A store in memory: every ephemeral store, and persistent ones with handles. */
struct _Store {
  gint ref_count;            /* atomic */
  EmbeddedBackend *backend;  /* immutable */
  GBytes *id_key;            /* immutable: "scope NUL name", its key in backend->stores */
  char *scope;               /* immutable */
  char *name;                /* immutable */
  gboolean ephemeral;        /* db_lock, as are all the fields below */
  gboolean exists;           /* FALSE once removed while handles stay open */
  gboolean pinned;           /* ephemeral, made explicitly: listed without handles */
  gint64 id;                 /* persistent and existing: stores.id */
  guint64 revision;
  GHashTable *entries;       /* ephemeral: char *key -> Entry */
  guint64 bytes;             /* ephemeral: sum of the value sizes */
  GPtrArray *handles;        /* ConatBackendStore *, unreferenced */
  Config config;             /* as in the database for a persistent store */
};

struct _ConatBackendStore {
  Receiver r;
  Store *store;                   /* immutable, referenced */
  ConatChangeCallback on_change;  /* immutable */
};

/* A channel's subscription, or (with seen) a watch of a scope's channels. */
struct _ConatBackendSub {
  Receiver r;
  EmbeddedBackend *backend;              /* immutable */
  GHashTable *table;                     /* immutable: backend->channels or ->watches */
  GBytes *key;                           /* immutable: its key there */
  ConatBackendMessageCallback callback;  /* immutable */
  ConatBackendChannelCallback seen;      /* immutable */
};

/* One item of the dispatcher queue; receivers == NULL stops the dispatcher. */
typedef struct {
  GPtrArray *receivers;  /* Receiver *, referenced */
  GArray *changes;       /* ConatChange with owned key and value, or NULL */
  GBytes *message;       /* or NULL */
  char *name, *path;     /* for watches: the channel a message was sent on */
} Event;

/* The prepared statements in stmts; their SQL is in embedded-db.c. */
enum { ST_KV_REVISION, ST_KV_PUT, ST_KV_DELETE, ST_STORE_REVISION, N_STATEMENTS };

struct _EmbeddedBackend {
  ConatBackend parent;
  char *data_dir;    /* immutable, canonical: its key in the registry */
  char *db_path;     /* immutable */
  int lock_fd;       /* immutable */
  pid_t pid;         /* immutable: a forked child must not share us */
  gint64 opened_us;  /* immutable */
  guint ref_count;   /* registry_lock */

  GMutex db_lock;
  sqlite3 *db;                        /* db_lock */
  sqlite3_stmt *stmts[N_STATEMENTS];  /* db_lock */
  GHashTable *stores;                 /* db_lock: GBytes id_key -> Store *, referenced */
  char *last_error;                   /* db_lock */

  GMutex sub_lock;
  GHashTable *channels;  /* sub_lock: GBytes channel -> GPtrArray of ConatBackendSub * */
  GHashTable *watches;   /* sub_lock: GBytes scope (NUL included) -> GPtrArray of the same */

  GMutex cb_lock;
  GCond cb_cond;         /* with cb_lock: running, a ready or a closing flag changed */
  Receiver *running;     /* cb_lock: the receiver whose callback runs now */

  GAsyncQueue *events;    /* Event *; locked by itself */
  GThread *dispatcher;    /* immutable once started */
  gboolean free_on_stop;  /* dispatcher thread only */
  gint sweep;             /* atomic: a store in memory has a max_age */
};

/* A (scope, name) as it stands: in memory (STORE) or only in the database. */
typedef struct {
  Store *store;
  gboolean exists;
  gboolean ephemeral;
  gint64 id;
  guint64 revision;
  Config config;
} Found;

/* backend-embedded.c */
gboolean embedded_fail (GError **error, ConatError code, const char *format, ...)
  G_GNUC_PRINTF (3, 4);
GBytes *embedded_names_key (const char *a, const char *b, const char *c);
void embedded_receiver_unref (gpointer data);
void embedded_receiver_close (EmbeddedBackend *b, Receiver *r);
GArray *embedded_changes_new (void);
void embedded_changes_add (GArray *changes, const char *key, GBytes *value, guint64 revision,
                           gint64 time_ms, guint64 writer_id, guint64 gen);
void embedded_event_push (EmbeddedBackend *b, GPtrArray *receivers, GArray *changes,
                          GBytes *message);
void embedded_event_push_seen (EmbeddedBackend *b, GPtrArray *watches, const char *name,
                               const char *path);
Event *embedded_event_wake_new (void);
gint64 embedded_expiry_cutoff (const Config *c, gint64 now_ms);
void embedded_store_note_config (EmbeddedBackend *b, Store *s);
void embedded_store_set_kind (Store *s, gboolean ephemeral, gboolean pinned);
Store *embedded_store_new (EmbeddedBackend *b, const char *scope, const char *name,
                           gboolean ephemeral, gboolean pinned);
void embedded_store_forget_if_unused (EmbeddedBackend *b, Store *s);
gboolean embedded_store_materialise (EmbeddedBackend *b, Store *s, gboolean ephemeral,
                                     gboolean pinned, GError **error);
gboolean embedded_store_find (EmbeddedBackend *b, const char *scope, const char *name, Found *f,
                              GError **error);

/* embedded-db.c: db_lock held */
gboolean embedded_db_open (EmbeddedBackend *b, GError **error);
gboolean embedded_db_fail (EmbeddedBackend *b, int rc, GError **error);
gboolean embedded_db_exec (EmbeddedBackend *b, const char *sql, GError **error);
sqlite3_stmt *embedded_db_query (EmbeddedBackend *b, GError **error, const char *sql,
                                 const char *types, ...);
gboolean embedded_db_step (EmbeddedBackend *b, sqlite3_stmt *st, gboolean *row, GError **error);
gboolean embedded_db_run (EmbeddedBackend *b, sqlite3_stmt *st, GError **error);
void embedded_db_bind_name (sqlite3_stmt *st, int i, const char *s);
char *embedded_db_column_name (sqlite3_stmt *st, int i);
void embedded_db_column_config (sqlite3_stmt *st, int first, Config *c);
gboolean embedded_db_insert_store (EmbeddedBackend *b, const char *scope, const char *name,
                                   guint64 revision, gint64 *id, GError **error);
gboolean embedded_db_save_config (EmbeddedBackend *b, gint64 id, const Config *c,
                                  GError **error);
gboolean embedded_db_delete_store (EmbeddedBackend *b, gint64 id, GError **error);
gboolean embedded_db_collect_names (EmbeddedBackend *b, const char *sql, const char *scope,
                                    GHashTable *set, GError **error);

/* embedded-namespace.c */
GPtrArray *embedded_list_scopes (ConatBackend *backend, GError **error);
GPtrArray *embedded_list_stores (ConatBackend *backend, const char *scope, GError **error);
gboolean embedded_has_scope (ConatBackend *backend, const char *scope, GError **error);
gboolean embedded_create_scope (ConatBackend *backend, const char *scope, GError **error);
gboolean embedded_remove_scope (ConatBackend *backend, const char *scope, GError **error);
gboolean embedded_create_store (ConatBackend *backend, const char *scope, const char *name,
                                gboolean ephemeral, GError **error);
gboolean embedded_remove_store (ConatBackend *backend, const char *scope, const char *name,
                                GError **error);
gboolean embedded_store_info (ConatBackend *backend, const char *scope, const char *name,
                              ConatStoreInfo *info, gboolean count, GError **error);
gboolean embedded_set_store_ephemeral (ConatBackend *backend, const char *scope,
                                       const char *name, gboolean ephemeral, GError **error);
gboolean embedded_set_store_config (ConatBackend *backend, const char *scope, const char *name,
                                    const char *merge, const ConatStoreLimits *limits,
                                    GError **error);

/* embedded-put.c */
gboolean embedded_put_batch (EmbeddedBackend *b, Store *s, ConatPut *puts, guint n,
                             GArray *changes, GError **error);
gboolean embedded_put_many (ConatBackendStore *h, ConatPut *puts, guint n, GError **error);
void embedded_backend_sweep (EmbeddedBackend *b);

/* embedded-pubsub.c */
ConatBackendSub *embedded_subscribe (ConatBackend *backend, const char *scope, const char *path,
                                     const char *name, ConatBackendMessageCallback callback,
                                     gpointer user_data, GError **error);
ConatBackendSub *embedded_watch_scope (ConatBackend *backend, const char *scope,
                                       ConatBackendChannelCallback callback, gpointer user_data,
                                       GError **error);
void embedded_unsubscribe (ConatBackendSub *sub);
gboolean embedded_publish (ConatBackend *backend, const char *scope, const char *path,
                           const char *name, GBytes *message, GError **error);
gsize embedded_max_message_size (ConatBackend *backend);

G_END_DECLS
