/* echo-dirs.c — scopes and stores made or removed elsewhere.
 *
 * The core has no event for a store or a scope that another client creates
 * or removes, so with a shared backend this thread lists, every two
 * seconds, the scopes and the stores of each scope the kernel has looked
 * up, compares each list with the last one, and queues an echo (mkdir or
 * rmdir, see echo.c) for each difference.  A directory's first list is only
 * remembered, except for a scope that appeared since the last pass: all
 * its stores are new.  This mount's own mkdir and rmdir update the lists
 * (conatfs_echo_dir_changed), so they raise no second event; a list taken
 * while one of them ran is dropped and taken again next time.
 *
 * Cost per pass: one listing of scopes and one of stores per scope the
 * kernel knows (on NATS, a JetStream API request each).
 */
#include "echo.h"

#define POLL_INTERVAL_US (2 * G_USEC_PER_SEC)

typedef struct {
  GHashTable *names;  /* file names (set, owned) */
  guint64 gen;        /* counts this mount's own mkdir and rmdir */
} Listing;

typedef struct {
  fuse_ino_t ino;
  char *file_name;    /* "" for the root */
  char *scope;        /* NULL for the root */
} PolledDir;

typedef struct {
  fuse_ino_t dir_ino;
  char *file_name;
  char *name;
  ConatfsEchoKind kind;
} DirChange;

struct _ConatfsDirPoller {
  ConatfsFs *fs;                /* immutable */
  ConatfsEcho *echo;            /* immutable */
  GThread *thread;              /* main thread only */

  GMutex lock;
  GCond cond;
  /* guarded by lock: */
  GHashTable *listings;         /* parent file name ("" for the root) -> Listing* */
  gboolean stopping;
  guint64 passes;               /* for the status file */
};

static void
listing_free (gpointer p)
{
  Listing *listing = p;

  g_hash_table_unref (listing->names);
  g_free (listing);
}

static Listing *
listing_new (GHashTable *names)
{
  Listing *listing = g_new0 (Listing, 1);

  listing->names = names ? names : g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return listing;
}

static void
polled_dir_clear (gpointer p)
{
  PolledDir *dir = p;

  g_free (dir->file_name);
  g_free (dir->scope);
}

static void
dir_change_free (gpointer p)
{
  DirChange *change = p;

  g_free (change->file_name);
  g_free (change->name);
  g_free (change);
}

/* The root, then every scope directory the kernel knows. */
static GArray *
polled_dirs (ConatfsFs *fs)
{
  GArray *dirs = g_array_new (FALSE, TRUE, sizeof (PolledDir));
  PolledDir root = { FUSE_ROOT_ID, g_strdup (""), NULL };
  GHashTableIter iter;
  gpointer value;

  g_array_set_clear_func (dirs, polled_dir_clear);
  g_array_append_val (dirs, root);
  g_mutex_lock (&fs->lock);
  g_hash_table_iter_init (&iter, fs->by_ino);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      ConatfsInode *inode = value;
      PolledDir dir;

      if (inode->kind != CONATFS_INODE_SCOPE || !inode->linked)
        continue;
      dir.ino = inode->ino;
      dir.file_name = g_strdup (inode->file_name);
      dir.scope = g_strdup (inode->name);
      g_array_append_val (dirs, dir);
    }
  g_mutex_unlock (&fs->lock);
  return dirs;
}

/* The file names of DIR's scopes or stores now, or NULL if the backend
 * could not tell. */
static GHashTable *
list_names (ConatfsFs *fs, const PolledDir *dir)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) names = NULL;
  GHashTable *set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  ConatfsNameKind kind = dir->scope ? CONATFS_NAME_STORE : CONATFS_NAME_SCOPE;

  names = dir->scope ? conat_client_list_stores (fs->client, dir->scope, &error)
                     : conat_client_list_scopes (fs->client, &error);
  if (names == NULL && !g_error_matches (error, CONAT_ERROR, CONAT_ERROR_NOT_FOUND))
    {
      g_debug ("echo: listing %s: %s", dir->scope ? dir->scope : "scopes", error->message);
      g_hash_table_unref (set);
      return NULL;
    }
  for (guint i = 0; names != NULL && i < names->len; i++)
    g_hash_table_add (set, conatfs_name_encode (kind, names->pdata[i]));
  return set;
}

static void
add_change (GPtrArray *changes, const PolledDir *dir, const char *file_name,
            ConatfsEchoKind kind)
{
  DirChange *change = g_new0 (DirChange, 1);
  ConatfsNameKind name_kind = dir->scope ? CONATFS_NAME_STORE : CONATFS_NAME_SCOPE;

  change->dir_ino = dir->ino;
  change->file_name = g_strdup (file_name);
  if (conatfs_name_decode (name_kind, file_name, &change->name) != CONATFS_NAME_DECODED)
    g_clear_pointer (&change->name, g_free);
  change->kind = kind;
  g_ptr_array_add (changes, change);
}

/* With poller->lock held: what changed in DIR from LISTING to NAMES.  A new
 * scope gets an empty listing (its stores are new); a removed one none. */
static void
listing_diff (ConatfsDirPoller *poller, const PolledDir *dir, Listing *listing,
              GHashTable *names, GPtrArray *changes)
{
  GHashTableIter iter;
  gpointer name;

  g_hash_table_iter_init (&iter, names);
  while (g_hash_table_iter_next (&iter, &name, NULL))
    if (!g_hash_table_contains (listing->names, name))
      {
        add_change (changes, dir, name, CONATFS_ECHO_DIR_CREATED);
        if (dir->scope == NULL)
          g_hash_table_insert (poller->listings, g_strdup (name), listing_new (NULL));
      }
  g_hash_table_iter_init (&iter, listing->names);
  while (g_hash_table_iter_next (&iter, &name, NULL))
    if (!g_hash_table_contains (names, name))
      {
        add_change (changes, dir, name, CONATFS_ECHO_DIR_DELETED);
        if (dir->scope == NULL)
          g_hash_table_remove (poller->listings, name);
      }
}

static void
poll_dir (ConatfsDirPoller *poller, const PolledDir *dir, GPtrArray *changes)
{
  g_autoptr (GHashTable) names = NULL;
  Listing *listing;
  gboolean known;
  guint64 gen = 0;

  g_mutex_lock (&poller->lock);
  listing = g_hash_table_lookup (poller->listings, dir->file_name);
  known = listing != NULL;
  if (known)
    gen = listing->gen;
  g_mutex_unlock (&poller->lock);

  names = list_names (poller->fs, dir);
  if (names == NULL)
    return;

  g_mutex_lock (&poller->lock);
  listing = g_hash_table_lookup (poller->listings, dir->file_name);
  if (listing == NULL)
    g_hash_table_insert (poller->listings, g_strdup (dir->file_name),
                         listing_new (g_steal_pointer (&names)));
  else if (known && listing->gen == gen)
    {
      listing_diff (poller, dir, listing, names, changes);
      g_hash_table_unref (listing->names);
      listing->names = g_steal_pointer (&names);
    }
  g_mutex_unlock (&poller->lock);
}

static void
poll_once (ConatfsDirPoller *poller)
{
  g_autoptr (GArray) dirs = polled_dirs (poller->fs);
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func (dir_change_free);

  for (guint i = 0; i < dirs->len; i++)
    poll_dir (poller, &g_array_index (dirs, PolledDir, i), changes);
  for (guint i = 0; i < changes->len; i++)
    {
      DirChange *change = changes->pdata[i];

      g_debug ("echo: %s %s elsewhere", change->file_name,
               change->kind == CONATFS_ECHO_DIR_CREATED ? "made" : "removed");
      conatfs_echo_queue (poller->echo, change->dir_ino, change->file_name, change->name,
                          change->kind, 0);
    }
}

static gpointer
poller_thread (gpointer data)
{
  ConatfsDirPoller *poller = data;

  g_mutex_lock (&poller->lock);
  while (!poller->stopping)
    {
      gint64 end = g_get_monotonic_time () + POLL_INTERVAL_US;

      g_mutex_unlock (&poller->lock);
      poll_once (poller);
      g_mutex_lock (&poller->lock);
      poller->passes++;
      while (!poller->stopping && g_cond_wait_until (&poller->cond, &poller->lock, end))
        ;
    }
  g_mutex_unlock (&poller->lock);
  return NULL;
}

/* This mount made (EXISTS) or removed FILE_NAME in the directory whose file
 * name is PARENT_FILE ("" for the root). */
void
conatfs_dir_poller_changed (ConatfsDirPoller *poller, const char *parent_file,
                            const char *file_name, gboolean exists)
{
  Listing *listing;
  gboolean root = parent_file[0] == '\0';

  g_mutex_lock (&poller->lock);
  listing = g_hash_table_lookup (poller->listings, parent_file);
  if (listing != NULL)
    {
      listing->gen++;
      if (exists)
        g_hash_table_add (listing->names, g_strdup (file_name));
      else
        g_hash_table_remove (listing->names, file_name);
    }
  if (root && exists)
    g_hash_table_insert (poller->listings, g_strdup (file_name), listing_new (NULL));
  else if (root)
    g_hash_table_remove (poller->listings, file_name);
  g_mutex_unlock (&poller->lock);
}

ConatfsDirPoller *
conatfs_dir_poller_new (ConatfsFs *fs, ConatfsEcho *echo)
{
  ConatfsDirPoller *poller = g_new0 (ConatfsDirPoller, 1);

  poller->fs = fs;
  poller->echo = echo;
  g_mutex_init (&poller->lock);
  g_cond_init (&poller->cond);
  poller->listings = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, listing_free);
  poller->thread = g_thread_new ("conatfs-dirs", poller_thread, poller);
  return poller;
}

/* Passes made so far: a test waits for two to know the lists are taken. */
guint64
conatfs_dir_poller_passes (ConatfsDirPoller *poller)
{
  guint64 passes;

  g_mutex_lock (&poller->lock);
  passes = poller->passes;
  g_mutex_unlock (&poller->lock);
  return passes;
}

void
conatfs_dir_poller_stop (ConatfsDirPoller *poller)
{
  if (poller->thread == NULL)
    return;
  g_mutex_lock (&poller->lock);
  poller->stopping = TRUE;
  g_cond_broadcast (&poller->cond);
  g_mutex_unlock (&poller->lock);
  g_thread_join (g_steal_pointer (&poller->thread));
}

void
conatfs_dir_poller_free (ConatfsDirPoller *poller)
{
  conatfs_dir_poller_stop (poller);
  g_hash_table_unref (poller->listings);
  g_mutex_clear (&poller->lock);
  g_cond_clear (&poller->cond);
  g_free (poller);
}
