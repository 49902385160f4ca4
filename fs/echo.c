/* echo.c — inotify events for changes made elsewhere (DESIGN §4).
 *
 * Inode lifetime and the inotify echo
 * -----------------------------------
 * inotify events come from the VFS, never from a filesystem: a process on
 * this machine that writes, creates or unlinks through the mount raises
 * them, and no fuse_lowlevel_notify_* call does (notify_delete raises only
 * IN_DELETE_SELF on the file).  A change that arrives from the backend has
 * no such process, so the daemon plays one: this file's thread repeats the
 * change through the daemon's own mountpoint, the kernel raises the events
 * a local change would, and the handlers recognise the thread's requests by
 * fuse_req_ctx(req)->pid, which is the caller's thread id, and leave the
 * store alone.
 *
 *   value changed   open O_WRONLY, pwrite the value's last byte at size - 1
 *                   (ftruncate to 0 for an empty value), close:
 *                   IN_MODIFY, IN_CLOSE_WRITE.  The write handler acks and
 *                   drops the byte, and writable opens are direct I/O, so
 *                   neither the value nor the page cache can change.
 *   key created     open O_CREAT|O_EXCL while lookup answers ENOENT to this
 *                   thread for that one name; create sees the key exists
 *                   and opens it unchanged (IN_CREATE), then as above.
 *   key deleted     unlink while lookup answers with the entry (the key is
 *                   gone, but the kernel needs a dentry to unlink); unlink
 *                   acks without touching the store (IN_DELETE).  If this
 *                   mount shows the key again by then (made here since, or
 *                   elsewhere with its echo queued), the unlink fails with
 *                   ENOENT and raises nothing: an echo never contradicts
 *                   what the mount shows when the kernel handles it.
 *   store or scope  mkdir / rmdir in the same way (IN_ISDIR); made or
 *                   removed elsewhere, found by the poller in echo-dirs.c.
 *
 * The inodes the echo touches follow the rules of inode.c.  Its lookups and
 * creates count in nlookup like any other, and the kernel forgets them like
 * any other.  The entry the thread is answered for a deleted key is the
 * inode the name had (the kernel may hold it open: its size stays the last
 * value's), or a new one that the unlink then orphans.  The acked unlink
 * unlinks the name as a local unlink does: a file open here for writing
 * then writes nothing at close (its key stays deleted, as documented), and
 * a directory gets a new inode number if its store comes back (the kernel
 * marks an rmdir'ed directory dead).
 *
 * Create or modify?  The DKV reports a set with the value it replaced in
 * its mirror, which is not what this mount showed when a delete of its own
 * was pending.  So the thread remembers the names whose last event the
 * kernel raised was IN_DELETE (unlink, rename's source, the echo's unlink)
 * until one raises IN_CREATE (create, mknod, rename's target, the echo's
 * create), and when it runs a job for such a name that this mount shows,
 * it echoes a create, whatever the job was.  A name can come back without
 * IN_CREATE: a lookup by another process finds the key set again elsewhere
 * while its create echo waits, and the key is deleted and the echo
 * cancelled (a create then a delete is a delete) before that process opens
 * the positive entry it got and writes the key again.  That write is this
 * mount's own, so the DKV's echo of it queues a conditional create
 * (CONATFS_ECHO_SET_HERE), which runs only if the name is still gone.
 *
 * Order: the change callback invalidates the kernel's caches first (through
 * the notifier); the echo thread invalidates once more itself, right before
 * its syscall, so a watcher that reads when the event arrives reads the new
 * value.  The thread sends those notices holding no lock, outside any
 * handler, which is what the notify calls need.
 *
 * The thread works below an O_PATH descriptor of the mount's root, opened
 * for each echo and checked to be this mount's root: after an unmount, a
 * path through the mountpoint would reach the directory underneath (a
 * scope's mkdir would make one there).  While an echo runs, the mount is
 * busy: a `fusermount3 -u` at that moment fails with EBUSY (retry it, or
 * stop the daemon with SIGTERM, which ends the echo thread first).
 *
 * Deadlocks.  The thread's syscalls are served by FUSE workers, which take
 * fs->lock; so the thread holds no lock of ours while it makes one, and no
 * handler ever waits for the thread.  Change callbacks (core threads) only
 * add to the pending table under echo->lock, which nobody holds across a
 * syscall or while taking another lock.
 *
 * Coalescing.  Pending echoes are keyed by (directory inode, file name) and
 * merged: a burst of changes to one key while its echo waits is one echo,
 * and a change that arrives while its echo runs queues another, so a
 * watcher always gets an event after the last change.  A delete followed
 * by a create is both, in that order.  No echo is queued for a directory
 * the kernel has not looked up (nobody can watch it), nor for this mount's
 * own writes (the DKV marks their echoes as own).  A channel file's echoes
 * are paced: one begins at least CHANNEL_ECHO_US after the one before, so
 * a stream of messages costs a few echoes a second, not one per burst (six
 * FUSE round trips each); the first message after a quiet spell is echoed
 * at once, and the last one of a stream still gets its event.  Paced jobs
 * wait in `later` until they are due.
 */
#include "echo.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

enum {
  OP_DELETE = 1 << 0,
  OP_CREATE = 1 << 1,
  OP_MODIFY = 1 << 2,
  OP_DIR = 1 << 3,
  OP_IF_GONE = 1 << 4, /* with OP_CREATE: only if the name is gone for watchers */
};

#define CREATE_TRIES 3 /* a lookup by someone else may bring the entry back */
#define GONE_MAX 65536 /* names remembered as deleted */
#define CHANNEL_ECHO_US (10 * 1000) /* between the echoes of one channel file */

typedef struct {
  char *key;          /* "DIR-INO/FILE-NAME": the pending table's key */
  fuse_ino_t dir_ino;
  char *file_name;
  char *name;         /* decoded key, store or scope name; NULL if unknown */
  guint ops;          /* OP_* to make, in the order DELETE, CREATE, MODIFY */
  gsize old_size;     /* OP_DELETE: the size of the last value */
  gboolean paced;     /* a channel file's: waits for due in `later` */
  gint64 due;         /* paced: monotonic time it may run */
} Job;

struct _ConatfsEcho {
  ConatfsFs *fs;                /* immutable */
  ConatfsDirPoller *poller;     /* immutable; NULL if the backend needs none */
  GThread *thread;              /* main thread only */
  gint tid;                     /* atomic: the thread's id, 0 until it runs */
  dev_t dev;                    /* the thread's: the mount's device, once seen */

  GMutex lock;
  GCond cond;
  /* guarded by lock: */
  GHashTable *pending;          /* Job.key -> Job* (owned by queue) */
  GHashTable *gone;             /* "DIR-INO/FILE-NAME" whose last name event
                                   was IN_DELETE (set, owned) */
  gint n_gone;                  /* atomic: its size, read without the lock */
  GQueue queue;                 /* Job*, oldest first */
  GQueue later;                 /* paced Job* not due yet, by due */
  GHashTable *paced_at;         /* Job.key of a channel file -> gint64* monotonic
                                   time its last echo began (owned) */
  gboolean stopping;
  gboolean busy;                /* the thread is making an echo */
  Job current;                  /* what the thread is doing (ops 0: nothing
                                   a lookup must know about) */
};

static void
job_free (Job *job)
{
  g_free (job->key);
  g_free (job->file_name);
  g_free (job->name);
  g_free (job);
}

static guint
op_of_kind (ConatfsEchoKind kind)
{
  switch (kind)
    {
    case CONATFS_ECHO_CREATED:
      return OP_CREATE;
    case CONATFS_ECHO_DELETED:
      return OP_DELETE;
    case CONATFS_ECHO_DIR_CREATED:
      return OP_CREATE | OP_DIR;
    case CONATFS_ECHO_DIR_DELETED:
      return OP_DELETE | OP_DIR;
    case CONATFS_ECHO_SET_HERE:
      return OP_CREATE | OP_IF_GONE;
    case CONATFS_ECHO_MODIFIED:
    default:
      return OP_MODIFY;
    }
}

/* What a pending echo OLD becomes when change OP arrives. */
static guint
merge_ops (guint old, guint op)
{
  guint dir = op & OP_DIR;

  if (op & OP_IF_GONE) /* echo_run checks a real job's name anyway */
    return old != 0 ? old : op;
  if (old & OP_IF_GONE)
    old = 0;
  if (op & OP_DELETE)
    return OP_DELETE | dir;
  if (op & OP_CREATE)
    return (old & OP_DELETE) | OP_CREATE | dir;
  if (old & (OP_CREATE | OP_DELETE)) /* created, or re-created: a create covers it */
    return (old & ~OP_MODIFY) | OP_CREATE;
  return OP_MODIFY;
}

static gint
job_due_cmp (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const Job *x = a, *y = b;

  return x->due < y->due ? -1 : x->due > y->due;
}

/* With echo->lock held: a new job for KEY (taken), queued now or, if PACED
 * and the last echo of KEY began less than CHANNEL_ECHO_US ago, in later. */
static Job *
job_add (ConatfsEcho *echo, char *key, fuse_ino_t dir_ino, const char *file_name,
         gboolean paced)
{
  Job *job = g_new0 (Job, 1);
  gint64 *last = paced ? g_hash_table_lookup (echo->paced_at, key) : NULL;

  job->key = key;
  job->dir_ino = dir_ino;
  job->file_name = g_strdup (file_name);
  job->paced = paced;
  g_hash_table_insert (echo->pending, job->key, job);
  if (last != NULL && *last + CHANNEL_ECHO_US > g_get_monotonic_time ())
    {
      job->due = *last + CHANNEL_ECHO_US;
      g_queue_insert_sorted (&echo->later, job, job_due_cmp, NULL);
    }
  else
    g_queue_push_tail (&echo->queue, job);
  g_cond_signal (&echo->cond);
  return job;
}

static void
echo_queue (ConatfsEcho *echo, fuse_ino_t dir_ino, const char *file_name, const char *name,
            ConatfsEchoKind kind, gsize old_size, gboolean paced)
{
  g_autofree char *key = NULL;
  Job *job;

  if (echo == NULL || dir_ino == 0)
    return;
  key = conatfs_name_key (dir_ino, file_name);
  g_mutex_lock (&echo->lock);
  if (kind == CONATFS_ECHO_SET_HERE && !g_hash_table_contains (echo->gone, key))
    {
      g_mutex_unlock (&echo->lock);
      return;
    }
  job = echo->stopping ? NULL : g_hash_table_lookup (echo->pending, key);
  if (job == NULL && !echo->stopping)
    job = job_add (echo, g_steal_pointer (&key), dir_ino, file_name, paced);
  if (job != NULL)
    {
      job->ops = merge_ops (job->ops, op_of_kind (kind));
      if (job->name == NULL)
        job->name = g_strdup (name);
      if (kind == CONATFS_ECHO_DELETED)
        job->old_size = old_size;
    }
  g_mutex_unlock (&echo->lock);
}

void
conatfs_echo_queue (ConatfsEcho *echo, fuse_ino_t dir_ino, const char *file_name,
                    const char *name, ConatfsEchoKind kind, gsize old_size)
{
  echo_queue (echo, dir_ino, file_name, name, kind, old_size, FALSE);
}

void
conatfs_echo_change (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name, const char *name,
                     ConatfsEchoKind kind, gsize old_size)
{
  conatfs_echo_queue (fs->echo, dir_ino, file_name, name, kind, old_size);
}

void
conatfs_echo_modified (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name)
{
  echo_queue (fs->echo, dir_ino, file_name, NULL, CONATFS_ECHO_MODIFIED, 0, TRUE);
}

gboolean
conatfs_echo_is_caller (ConatfsFs *fs, fuse_req_t req)
{
  ConatfsEcho *echo = fs->echo;
  gint tid = echo ? g_atomic_int_get (&echo->tid) : 0;

  return tid != 0 && fuse_req_ctx (req)->pid == (pid_t) tid;
}

/* ------------------------------------------------------- handler hooks */

/* The entry of a name the backend no longer has, for the thread's unlink or
 * rmdir: the inode the name had, or a new one. */
static void
reply_present (ConatfsFs *fs, fuse_req_t req, ConatfsInode *dir, const char *file_name,
               const Job *job)
{
  g_autoptr (ConatfsInode) old = conatfs_inode_child (fs, dir, file_name);
  g_autoptr (ConatfsInode) child = NULL;
  g_autofree char *name = NULL;
  struct fuse_entry_param e = { 0 };
  gboolean is_dir = (job->ops & OP_DIR) != 0;
  ConatfsInodeKind kind;
  struct timespec now;

  if (old != NULL)
    {
      kind = conatfs_inode_kind (fs, old);
      name = conatfs_inode_name (fs, old);
    }
  else
    {
      kind = !is_dir ? CONATFS_INODE_KEY
             : dir->ino == FUSE_ROOT_ID ? CONATFS_INODE_SCOPE : CONATFS_INODE_STORE;
      name = g_strdup (job->name ? job->name : file_name);
    }
  child = conatfs_inode_lookup (fs, dir, file_name, kind, name);
  e.ino = child->ino;
  clock_gettime (CLOCK_REALTIME, &now);
  if (is_dir)
    conatfs_fill_dir_attr (fs, child->ino, &e.attr);
  else
    conatfs_fill_file_attr (fs, child->ino, job->old_size, &now, 0644, &e.attr);
  if (fuse_reply_entry (req, &e) != 0)
    conatfs_inode_forget (fs, child->ino, 1);
}

/* TRUE if this mount shows a file FILE_NAME in the store directory DIR now
 * (a key, or a file created and not yet committed). */
static gboolean
shows_file (ConatfsFs *fs, ConatfsInode *dir, const char *file_name)
{
  g_auto (ConatfsTarget) target = { 0 };
  g_autoptr (ConatfsInode) child = NULL;

  if (conatfs_inode_kind (fs, dir) != CONATFS_INODE_STORE
      || conatfs_target_of_name (fs, dir, file_name, FALSE, &target) != 0)
    return FALSE;
  if (conatfs_target_exists (fs, &target))
    return TRUE;
  child = conatfs_inode_child (fs, dir, file_name);
  return child != NULL && conatfs_inode_pending_size (fs, child) >= 0;
}

/* unlink: 0 to ack the echo of a delete (the name is unlinked, as by a
 * local unlink), ENOENT if the file is back (made here or elsewhere
 * since): then the unlink raises no event. */
int
conatfs_echo_unlink_result (ConatfsFs *fs, fuse_ino_t parent, const char *file_name)
{
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (fs, parent);
  gboolean shown;

  if (dir == NULL)
    return ENOENT;
  g_mutex_lock (&fs->names_lock);
  shown = shows_file (fs, dir, file_name);
  if (!shown)
    conatfs_inode_unlink (fs, dir, file_name);
  g_mutex_unlock (&fs->names_lock);
  if (shown)
    return ENOENT;
  conatfs_echo_name_event (fs, parent, file_name, TRUE);
  return 0;
}

/* lookup: the name the thread is creating does not exist for it, and the
 * one it is deleting does (unless it is back: then it is looked up as
 * usual, and the unlink fails).  FALSE (reply not sent) for anything else. */
gboolean
conatfs_echo_reply_lookup (ConatfsFs *fs, fuse_req_t req, ConatfsInode *dir,
                           const char *file_name)
{
  ConatfsEcho *echo = fs->echo;
  Job job = { 0 };

  if (!conatfs_echo_is_caller (fs, req))
    return FALSE;
  g_mutex_lock (&echo->lock);
  if (echo->current.ops != 0 && echo->current.dir_ino == dir->ino
      && strcmp (echo->current.file_name, file_name) == 0)
    {
      job = echo->current;
      job.name = g_strdup (job.name);
    }
  g_mutex_unlock (&echo->lock);

  if ((job.ops & OP_DELETE) && !(job.ops & OP_DIR) && shows_file (fs, dir, file_name))
    job.ops = 0;
  if (job.ops & OP_CREATE)
    conatfs_reply_err (req, "lookup (echo)", ENOENT);
  else if (job.ops & OP_DELETE)
    reply_present (fs, req, dir, file_name, &job);
  g_free (job.name);
  return (job.ops & (OP_CREATE | OP_DELETE)) != 0;
}

/* The kernel raised IN_DELETE (GONE) or IN_CREATE for FILE_NAME in
 * DIR_INO: a later change of the value is shown to watchers as a create
 * while the name is gone for them. */
void
conatfs_echo_name_event (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name,
                         gboolean gone)
{
  ConatfsEcho *echo = fs->echo;

  if (echo == NULL)
    return;
  g_mutex_lock (&echo->lock);
  if (gone && g_hash_table_size (echo->gone) >= GONE_MAX) /* forget old deletes */
    g_hash_table_remove_all (echo->gone);
  if (gone)
    g_hash_table_add (echo->gone, conatfs_name_key (dir_ino, file_name));
  else if (g_hash_table_size (echo->gone) > 0)
    {
      g_autofree char *key = conatfs_name_key (dir_ino, file_name);

      g_hash_table_remove (echo->gone, key);
    }
  g_atomic_int_set (&echo->n_gone, (gint) g_hash_table_size (echo->gone));
  g_mutex_unlock (&echo->lock);
}

gboolean
conatfs_echo_any_gone (ConatfsFs *fs)
{
  return fs->echo != NULL && g_atomic_int_get (&fs->echo->n_gone) > 0;
}

static gboolean
name_is_gone (ConatfsEcho *echo, const Job *job)
{
  gboolean gone;

  g_mutex_lock (&echo->lock);
  gone = g_hash_table_contains (echo->gone, job->key);
  g_mutex_unlock (&echo->lock);
  return gone;
}

/* This mount made or removed a store or scope itself: the poller must not
 * echo it. */
void
conatfs_echo_dir_changed (ConatfsFs *fs, ConatfsInode *dir, const char *file_name,
                          gboolean exists)
{
  g_autofree char *parent_file = NULL;

  if (fs->echo == NULL || fs->echo->poller == NULL)
    return;
  g_mutex_lock (&fs->lock);
  parent_file = g_strdup (dir->parent ? dir->file_name : "");
  g_mutex_unlock (&fs->lock);
  conatfs_dir_poller_changed (fs->echo->poller, parent_file, file_name, exists);
}

/* ------------------------------------------------------------ the thread */

/* The path of FILE_NAME in DIR_INO from the mount's root, or NULL if the
 * kernel does not know that directory (any more). */
static char *
echo_path (ConatfsFs *fs, fuse_ino_t dir_ino, const char *file_name)
{
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GString) path = g_string_new (NULL);
  ConatfsInode *inode;

  g_mutex_lock (&fs->lock);
  inode = g_hash_table_lookup (fs->by_ino, &dir_ino);
  for (; inode != NULL && inode->parent != NULL; inode = inode->parent)
    {
      if (!inode->linked)
        inode = NULL;
      if (inode == NULL)
        break;
      g_ptr_array_add (parts, g_strdup (inode->file_name));
    }
  g_mutex_unlock (&fs->lock);
  if (inode == NULL)
    return NULL;
  for (guint i = parts->len; i > 0; i--)
    g_string_append_printf (path, "%s/", (char *) parts->pdata[i - 1]);
  g_string_append (path, file_name);
  return g_string_free (g_steal_pointer (&path), FALSE);
}

/* An O_PATH descriptor of this mount's root, or -1 if the mountpoint no
 * longer shows it (unmounted: a path there would reach the directory
 * underneath).  Held for one echo, so every syscall of it reaches this
 * mount and nothing else. */
static int
echo_root (ConatfsEcho *echo)
{
  int fd = open (echo->fs->mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct stat st;

  if (fd >= 0 && fstat (fd, &st) == 0 && st.st_ino == FUSE_ROOT_ID
      && (echo->dev == 0 || st.st_dev == echo->dev))
    {
      echo->dev = st.st_dev;
      return fd;
    }
  if (fd >= 0)
    close (fd);
  return -1;
}

/* Tells lookups what the thread is about to do with JOB's name (OP), or,
 * with OP 0, that it is done. */
static void
echo_begin (ConatfsEcho *echo, const Job *job, guint op)
{
  g_mutex_lock (&echo->lock);
  g_clear_pointer (&echo->current.file_name, g_free);
  g_clear_pointer (&echo->current.name, g_free);
  echo->current.ops = op == 0 ? 0 : op | (job->ops & OP_DIR);
  echo->current.dir_ino = job->dir_ino;
  echo->current.file_name = g_strdup (job->file_name);
  echo->current.name = g_strdup (job->name);
  echo->current.old_size = job->old_size;
  g_mutex_unlock (&echo->lock);
}

static void
echo_inval_entry (ConatfsFs *fs, const Job *job)
{
  int res = fuse_lowlevel_notify_inval_entry (fs->session, job->dir_ino, job->file_name,
                                              strlen (job->file_name));

  if (res != 0 && res != -ENOENT)
    g_debug ("echo: inval entry %s: %s", job->file_name, strerrorname_np (-res));
}

/* The inode the kernel knows at JOB's name, if any (a new reference). */
static ConatfsInode *
echo_child (ConatfsFs *fs, const Job *job)
{
  g_autofree char *key = conatfs_name_key (job->dir_ino, job->file_name);
  ConatfsInode *child;

  g_mutex_lock (&fs->lock);
  child = g_hash_table_lookup (fs->by_name, key);
  if (child != NULL)
    conatfs_inode_ref (child);
  g_mutex_unlock (&fs->lock);
  return child;
}

/* The current value of a key inode, or NULL. */
static GBytes *
key_value (ConatfsFs *fs, ConatfsInode *inode)
{
  g_auto (ConatfsTarget) target = { 0 };

  if (conatfs_target_of_inode (fs, inode, &target) != 0)
    return NULL;
  return conatfs_target_get (fs, &target, NULL);
}

/* IN_MODIFY on the open FD: rewrites its last byte with itself, or
 * truncates an empty key to 0.  A file that is not a key (a channel file)
 * ends with '\n'. */
static void
echo_touch (ConatfsEcho *echo, const Job *job, int fd)
{
  g_autoptr (ConatfsInode) child = echo_child (echo->fs, job);
  g_autoptr (GBytes) value = NULL;
  gboolean is_key = child && conatfs_inode_kind (echo->fs, child) == CONATFS_INODE_KEY;
  const guint8 *data = NULL;
  guint8 last = '\n';
  gsize size = 0;
  struct stat st;
  int res;

  if (is_key)
    {
      value = key_value (echo->fs, child);
      if (value == NULL) /* deleted meanwhile: its own echo follows */
        return;
      data = g_bytes_get_data (value, &size);
      if (size > 0)
        last = data[size - 1];
    }
  else if (fstat (fd, &st) == 0)
    size = st.st_size;

  if (size > 0)
    res = pwrite (fd, &last, 1, size - 1) == 1 ? 0 : -1;
  else
    res = is_key ? ftruncate (fd, 0) : 0;
  if (res != 0)
    g_debug ("echo: write %s: %s", job->file_name, g_strerror (errno));
}

static void
echo_delete (ConatfsEcho *echo, const Job *job, int root, const char *path)
{
  gboolean is_dir = (job->ops & OP_DIR) != 0;

  echo_begin (echo, job, OP_DELETE);
  echo_inval_entry (echo->fs, job);
  if (unlinkat (root, path, is_dir ? AT_REMOVEDIR : 0) != 0)
    g_debug ("echo: %s %s: %s", is_dir ? "rmdir" : "unlink", path, g_strerror (errno));
  echo_begin (echo, job, 0);
}

/* Creates JOB's name; for a file, returns the open descriptor.  -1 with
 * errno set if it failed. */
static int
echo_create (ConatfsEcho *echo, const Job *job, int root, const char *path)
{
  gboolean is_dir = (job->ops & OP_DIR) != 0;
  int fd = -1, err = 0;

  for (int i = 0; i < CREATE_TRIES; i++)
    {
      echo_begin (echo, job, OP_CREATE);
      echo_inval_entry (echo->fs, job);
      if (is_dir)
        fd = mkdirat (root, path, 0755);
      else
        fd = openat (root, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      err = errno;
      echo_begin (echo, job, 0);
      if (fd >= 0 || err != EEXIST)
        break;
    }
  if (fd < 0)
    g_debug ("echo: create %s: %s", path, g_strerror (err));
  errno = err;
  return fd;
}

static void
echo_modify (ConatfsEcho *echo, const Job *job, int root, const char *path)
{
  g_autoptr (ConatfsInode) child = echo_child (echo->fs, job);
  int fd;

  if (child != NULL) /* a key's pages and size; a channel file's size */
    fuse_lowlevel_notify_inval_inode (echo->fs->session, child->ino,
                                      conatfs_inode_kind (echo->fs, child)
                                      == CONATFS_INODE_KEY ? 0 : -1, 0);
  fd = openat (root, path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    {
      g_debug ("echo: open %s: %s", path, g_strerror (errno));
      return;
    }
  echo_touch (echo, job, fd);
  close (fd);
}

/* TRUE if the kernel knows entries below the directory at JOB's name (it
 * was looked up here, and below, before the poller saw it made elsewhere).
 * A create echo would invalidate that entry and cut the whole subtree off:
 * its names would get new inodes, and a watch on a directory below would
 * never hear of a change again.  Such a directory gets no IN_CREATE (one
 * scan of the inode table; directories made elsewhere are rare). */
static gboolean
echo_has_subtree (ConatfsEcho *echo, const Job *job)
{
  g_autoptr (ConatfsInode) dir = echo_child (echo->fs, job);
  gboolean found = FALSE;
  GHashTableIter iter;
  gpointer value;

  if (dir == NULL)
    return FALSE;
  g_mutex_lock (&echo->fs->lock);
  g_hash_table_iter_init (&iter, echo->fs->by_ino);
  while (!found && g_hash_table_iter_next (&iter, NULL, &value))
    found = ((ConatfsInode *) value)->parent == dir;
  g_mutex_unlock (&echo->fs->lock);
  if (found)
    g_debug ("echo: %s has entries known here: no create echo", job->file_name);
  return found;
}

/* Makes JOB's syscalls below the mount's root ROOT. */
static void
echo_ops (ConatfsEcho *echo, const Job *job, int root, const char *path)
{
  int fd;

  if (job->ops & OP_DELETE)
    echo_delete (echo, job, root, path);
  if ((job->ops & OP_CREATE) && (job->ops & OP_DIR) && echo_has_subtree (echo, job))
    return;
  if (job->ops & OP_CREATE)
    {
      fd = echo_create (echo, job, root, path);
      if (job->ops & OP_DIR)
        return;
      if (fd >= 0)
        {
          echo_touch (echo, job, fd);
          close (fd);
          return;
        }
      if (errno != EEXIST) /* gone again: its delete follows */
        return;
    }
  if (!(job->ops & OP_DIR) && (job->ops & (OP_CREATE | OP_MODIFY)))
    echo_modify (echo, job, root, path);
}

/* TRUE if this mount shows JOB's file now. */
static gboolean
job_shown (ConatfsEcho *echo, const Job *job)
{
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (echo->fs, job->dir_ino);

  return dir != NULL && shows_file (echo->fs, dir, job->file_name);
}

/* A file's job after all: a name the watchers last saw deleted and this
 * mount shows gets IN_CREATE, whatever the changes were on the way. */
static guint
file_ops (ConatfsEcho *echo, const Job *job)
{
  if (name_is_gone (echo, job) && job_shown (echo, job))
    return OP_CREATE;
  return job->ops & OP_IF_GONE ? 0 : job->ops;
}

static void
echo_run (ConatfsEcho *echo, Job *job)
{
  g_autofree char *path = echo_path (echo->fs, job->dir_ino, job->file_name);
  int root;

  if (path == NULL) /* nobody watches a directory the kernel forgot */
    return;
  if (!(job->ops & OP_DIR))
    job->ops = file_ops (echo, job);
  if (job->ops == 0)
    return;
  g_debug ("echo %s%s%s%s %s", job->ops & OP_DELETE ? "delete " : "",
           job->ops & OP_CREATE ? "create " : "", job->ops & OP_MODIFY ? "modify " : "",
           job->ops & OP_DIR ? "dir" : "file", path);
  root = echo_root (echo);
  if (root < 0)
    {
      g_debug ("echo: %s no longer shows this mount", echo->fs->mountpoint);
      return;
    }
  echo_ops (echo, job, root, path);
  close (root);
}

/* With echo->lock held: the next job to run, waiting for one; NULL once
 * stopping.  A paced job records when its echo begins. */
static Job *
echo_next (ConatfsEcho *echo)
{
  Job *job;

  for (;;)
    {
      gint64 now = g_get_monotonic_time ();

      while ((job = g_queue_peek_head (&echo->later)) != NULL && job->due <= now)
        g_queue_push_tail (&echo->queue, g_queue_pop_head (&echo->later));
      if (echo->stopping || !g_queue_is_empty (&echo->queue))
        break;
      if (job != NULL)
        g_cond_wait_until (&echo->cond, &echo->lock, job->due);
      else
        g_cond_wait (&echo->cond, &echo->lock);
    }
  job = echo->stopping ? NULL : g_queue_pop_head (&echo->queue);
  if (job == NULL)
    return NULL;
  g_hash_table_remove (echo->pending, job->key);
  if (job->paced)
    {
      gint64 *at = g_new (gint64, 1);

      *at = g_get_monotonic_time ();
      g_hash_table_insert (echo->paced_at, g_strdup (job->key), at);
    }
  return job;
}

static gpointer
echo_thread (gpointer data)
{
  ConatfsEcho *echo = data;

  g_atomic_int_set (&echo->tid, (gint) gettid ());
  for (;;)
    {
      Job *job;

      g_mutex_lock (&echo->lock);
      echo->busy = FALSE;
      job = echo_next (echo);
      echo->busy = job != NULL;
      g_mutex_unlock (&echo->lock);
      if (job == NULL)
        return NULL;
      echo_run (echo, job);
      job_free (job);
    }
}

void
conatfs_echo_get_status (ConatfsFs *fs, guint *pending, guint64 *dir_passes)
{
  ConatfsEcho *echo = fs->echo;

  *pending = 0;
  *dir_passes = 0;
  if (echo == NULL)
    return;
  g_mutex_lock (&echo->lock);
  *pending = g_queue_get_length (&echo->queue) + g_queue_get_length (&echo->later)
             + (echo->busy ? 1 : 0);
  g_mutex_unlock (&echo->lock);
  if (echo->poller != NULL)
    *dir_passes = conatfs_dir_poller_passes (echo->poller);
}

/* --------------------------------------------------------------- life */

ConatfsEcho *
conatfs_echo_new (ConatfsFs *fs)
{
  ConatfsEcho *echo = g_new0 (ConatfsEcho, 1);

  echo->fs = fs;
  g_mutex_init (&echo->lock);
  g_cond_init (&echo->cond);
  echo->pending = g_hash_table_new (g_str_hash, g_str_equal);
  echo->gone = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_queue_init (&echo->queue);
  g_queue_init (&echo->later);
  echo->paced_at = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  echo->thread = g_thread_new ("conatfs-echo", echo_thread, echo);
  /* One embedded mount has no changes made elsewhere. */
  if (strcmp (conat_client_backend_name (fs->client), "embedded") != 0)
    echo->poller = conatfs_dir_poller_new (fs, echo);
  return echo;
}

/* Drops what is pending and joins the threads; later changes are ignored.
 * Called while the session loop still serves the thread's last syscall. */
void
conatfs_echo_stop (ConatfsEcho *echo)
{
  if (echo == NULL || echo->thread == NULL)
    return;
  if (echo->poller != NULL)
    conatfs_dir_poller_stop (echo->poller);
  g_mutex_lock (&echo->lock);
  echo->stopping = TRUE;
  g_hash_table_remove_all (echo->pending);
  g_queue_clear_full (&echo->queue, (GDestroyNotify) job_free);
  g_queue_clear_full (&echo->later, (GDestroyNotify) job_free);
  g_cond_broadcast (&echo->cond);
  g_mutex_unlock (&echo->lock);
  g_thread_join (g_steal_pointer (&echo->thread));
}

void
conatfs_echo_free (ConatfsEcho *echo)
{
  conatfs_echo_stop (echo);
  g_clear_pointer (&echo->poller, conatfs_dir_poller_free);
  g_hash_table_unref (echo->pending);
  g_hash_table_unref (echo->gone);
  g_hash_table_unref (echo->paced_at);
  g_free (echo->current.file_name);
  g_free (echo->current.name);
  g_mutex_clear (&echo->lock);
  g_cond_clear (&echo->cond);
  g_free (echo);
}
