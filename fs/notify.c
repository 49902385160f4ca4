/* notify.c — the thread that tells the kernel about changes made elsewhere.
 *
 * fuse_lowlevel_notify_inval_* may block on the kernel's locks of the very
 * inode or directory a FUSE request is working on, so they must not run in
 * a FUSE worker or while holding a lock a handler needs.  Change events
 * (core threads) only queue a notice here; this thread, which holds no lock,
 * sends it.  A poll wake-up takes no inode lock, so it goes out at once from
 * the caller's thread (one hand-off less between a message and poll()).
 * A channel file's attributes are invalidated ATTR_DELAY_US after its
 * first message since the last time: the messages of that spell cost one
 * notice, one wake-up of this thread and one syscall, not one each (tail
 * -f looks once a second; poll() wake-ups and inotify echoes do not wait
 * for it).
 * The inotify echo of remote changes (DESIGN §4) has a thread of
 * its own (echo.c), since its syscalls wait for FUSE workers.
 */
#include "fs-private.h"

#include <errno.h>
#include <string.h>

typedef enum {
  NOTICE_INVAL_INODE,
  NOTICE_INVAL_ENTRY,
  NOTICE_INVAL_ATTR,  /* attributes only: a channel file grew */
  NOTICE_STOP,
} NoticeKind;

#define ATTR_DELAY_US 1000

typedef struct {
  NoticeKind kind;
  fuse_ino_t ino;   /* the inode, or the parent of the entry */
  char *file_name;  /* NOTICE_INVAL_ENTRY */
  gint64 due;       /* NOTICE_INVAL_ATTR: monotonic time to send it */
} Notice;

struct _ConatfsNotifier {
  struct fuse_session *session; /* immutable */
  GAsyncQueue *queue;           /* Notice*; thread-safe */
  GHashTable *attr_pending;     /* inodes with a NOTICE_INVAL_ATTR queued (set);
                                   guarded by the queue's lock */
  GThread *thread;
};

static void
notice_free (Notice *notice)
{
  g_free (notice->file_name);
  g_free (notice);
}

static void
notice_send (struct fuse_session *session, const Notice *notice)
{
  int res;

  if (notice->kind == NOTICE_INVAL_INODE)
    res = fuse_lowlevel_notify_inval_inode (session, notice->ino, 0, 0);
  else if (notice->kind == NOTICE_INVAL_ATTR)
    res = fuse_lowlevel_notify_inval_inode (session, notice->ino, -1, 0);
  else
    res = fuse_lowlevel_notify_inval_entry (session, notice->ino, notice->file_name,
                                            strlen (notice->file_name));
  /* ENOENT: the kernel has nothing cached, which is fine. */
  if (res != 0 && res != -ENOENT)
    g_debug ("notify %" G_GUINT64_FORMAT ": %s", (guint64) notice->ino,
             strerrorname_np (-res));
}

/* Sends the attribute notices of DELAYED that are due (all if ALL). */
static void
send_due (ConatfsNotifier *notifier, GQueue *delayed, gboolean all)
{
  Notice *notice;

  while ((notice = g_queue_peek_head (delayed)) != NULL
         && (all || notice->due <= g_get_monotonic_time ()))
    {
      g_queue_pop_head (delayed);
      g_async_queue_lock (notifier->queue);
      g_hash_table_remove (notifier->attr_pending, GSIZE_TO_POINTER (notice->ino));
      g_async_queue_unlock (notifier->queue);
      notice_send (notifier->session, notice);
      notice_free (notice);
    }
}

static gpointer
notifier_thread (gpointer data)
{
  ConatfsNotifier *notifier = data;
  GQueue delayed = G_QUEUE_INIT; /* NOTICE_INVAL_ATTR, by due (FIFO) */

  for (;;)
    {
      Notice *notice, *next;

      send_due (notifier, &delayed, FALSE);
      next = g_queue_peek_head (&delayed);
      if (next == NULL)
        notice = g_async_queue_pop (notifier->queue);
      else
        notice = g_async_queue_timeout_pop (notifier->queue,
                                            MAX (next->due - g_get_monotonic_time (), 1));
      if (notice == NULL)
        continue;
      if (notice->kind == NOTICE_INVAL_ATTR)
        {
          g_queue_push_tail (&delayed, notice);
          continue;
        }
      if (notice->kind == NOTICE_STOP)
        {
          send_due (notifier, &delayed, TRUE);
          notice_free (notice);
          return NULL;
        }
      notice_send (notifier->session, notice);
      notice_free (notice);
    }
}

ConatfsNotifier *
conatfs_notifier_new (struct fuse_session *session)
{
  ConatfsNotifier *notifier = g_new0 (ConatfsNotifier, 1);

  notifier->session = session;
  notifier->queue = g_async_queue_new_full ((GDestroyNotify) notice_free);
  notifier->attr_pending = g_hash_table_new (NULL, NULL);
  notifier->thread = g_thread_new ("conatfs-notify", notifier_thread, notifier);
  return notifier;
}

static void
notifier_push (ConatfsNotifier *notifier, NoticeKind kind, fuse_ino_t ino, const char *file_name)
{
  Notice *notice = g_new0 (Notice, 1);

  notice->kind = kind;
  notice->ino = ino;
  notice->file_name = g_strdup (file_name);
  g_async_queue_push (notifier->queue, notice);
}

void
conatfs_notifier_inval_inode (ConatfsNotifier *notifier, fuse_ino_t ino)
{
  if (notifier != NULL)
    notifier_push (notifier, NOTICE_INVAL_INODE, ino, NULL);
}

void
conatfs_notifier_inval_entry (ConatfsNotifier *notifier, fuse_ino_t parent,
                              const char *file_name)
{
  if (notifier != NULL)
    notifier_push (notifier, NOTICE_INVAL_ENTRY, parent, file_name);
}

/* The kernel drops its attributes of INO (not its pages), ATTR_DELAY_US
 * from now: what `tail -f` needs to see a channel file grow.  Nothing is
 * added while one is queued. */
void
conatfs_notifier_inval_attr (ConatfsNotifier *notifier, fuse_ino_t ino)
{
  Notice *notice;

  if (notifier == NULL)
    return;
  g_async_queue_lock (notifier->queue);
  if (g_hash_table_add (notifier->attr_pending, GSIZE_TO_POINTER (ino)))
    {
      notice = g_new0 (Notice, 1);
      notice->kind = NOTICE_INVAL_ATTR;
      notice->ino = ino;
      notice->due = g_get_monotonic_time () + ATTR_DELAY_US;
      g_async_queue_push_unlocked (notifier->queue, notice);
    }
  g_async_queue_unlock (notifier->queue);
}

/* Wakes the poll() that PH came with, now; takes PH. */
void
conatfs_notifier_poll (ConatfsNotifier *notifier, struct fuse_pollhandle *ph)
{
  int res = notifier != NULL ? fuse_lowlevel_notify_poll (ph) : 0;

  if (res != 0 && res != -ENOENT)
    g_debug ("notify poll: %s", strerrorname_np (-res));
  fuse_pollhandle_destroy (ph);
}

/* Sends what is queued, then stops the thread. */
void
conatfs_notifier_free (ConatfsNotifier *notifier)
{
  notifier_push (notifier, NOTICE_STOP, 0, NULL);
  g_thread_join (notifier->thread);
  g_async_queue_unref (notifier->queue);
  g_hash_table_unref (notifier->attr_pending);
  g_free (notifier);
}
