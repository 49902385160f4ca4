/* channel.c — PubSub channels as stream files (DESIGN §3).
 *
 * SCOPE/@NAME and SCOPE/@NAME:PATH (channel-format.h) are regular files that
 * only grow.  The mount subscribes to a channel when its name is first
 * looked up or created, and stays subscribed until it unmounts.  Every
 * message received, this mount's own included (self-echo), is appended as
 * one escaped line.
 *
 * The window.  A channel keeps its most recent lines, at most
 * fs->channel_window bytes of them (and always the newest).  Offsets keep
 * growing: st_size counts every byte ever appended, and a line keeps its
 * offset while it is in the window.  The bytes below the window's start are
 * gone.  An open file that reads there skips them: the read returns bytes
 * from the window's first line, and every later offset of that open file is
 * shifted by the bytes skipped (its skew), so sequential readers (cat, grep,
 * wc) get whole lines in order and end at EOF.  A read returns whole lines
 * only, unless the first one does not fit in its buffer; a read that ends
 * inside a line holds that line for its open file, so the rest is still
 * there when the file reads on, even if the line left the window meanwhile.
 * No reader sees a torn line.
 *
 * Following.  Within a millisecond of an append the notifier thread
 * invalidates the file's attributes (GNU tail -f polls fstat on FUSE and
 * reads st_size - pos bytes; one invalidation covers the appends of that
 * millisecond), and the poll()s of its open files are woken at once; the
 * inotify echo raises IN_MODIFY (paced in a stream).  The attribute timeout
 * of channel files is 0 as well: the invalidation is queued, and an fstat
 * that overtakes it must not see an old size; a getattr costs one mutex
 * here.  poll() reports POLLIN while
 * the channel holds bytes past where the open file's last read ended
 * (before its first read: past the size at open).  Reads are direct I/O:
 * no page cache, and the kernel does not cut reads at a stale size.
 *
 * Writes.  Each line written is published as one message, as it is: no
 * unescaping; the lines of one write() are handed to the backend
 * together.  A partial line waits in its open file until its newline or a
 * flush (every close()).  Write offsets are ignored: everything appends,
 * through the channel, and truncation is ignored.  A line over the
 * backend's message limit is EFBIG: nothing of that write is published,
 * and the line is dropped: the writes that continue it, up to its newline
 * or a flush, are EFBIG as well (check_lines).
 *
 * Locks.  channel->lock is a leaf: it guards the window and the read and
 * poll state of the channel's open files; nothing else is locked and no
 * libconat call is made under it (message callbacks take it).
 * file->write_lock orders the writes of one open file and guards its
 * partial line; publish runs under it.  Channels live until unmount in
 * fs->channels (under fs->lock), which owns them.
 */
#include "fs-private.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>

#include "channel-format.h"
#include "echo.h"

#define COMPACT_MIN 1024 /* dropped lines kept in the array before it is compacted */

typedef struct {
  guint64 offset;   /* of the line's first byte in the file */
  GBytes *bytes;    /* the escaped line with its newline */
} Line;

typedef struct {
  ConatfsFs *fs;            /* immutable */
  char *scope;              /* immutable */
  char *file_name;          /* immutable: "@NAME" or "@NAME:PATH" */
  ConatPubsub *ps;          /* immutable once subscribed */
  gsize max_message;        /* immutable once subscribed */
  GMutex lock;
  /* guarded by lock: */
  GArray *lines;            /* Line; the window is lines[head..len) */
  guint head;
  guint64 start, end;       /* the window's offsets; end is the file's size */
  struct timespec mtime;    /* of the last append */
  fuse_ino_t ino, dir_ino;  /* the file's inode and its scope dir's, as last looked up */
  GPtrArray *files;         /* open ConatfsChannelFile* */
} Channel;

struct _ConatfsChannelFile {
  Channel *channel;         /* immutable */
  GMutex write_lock;
  /* guarded by write_lock: */
  GByteArray *partial;      /* a line not ended yet, or NULL */
  gboolean overflow;        /* the line being written went over the limit: drop it */
  /* guarded by channel->lock: */
  guint64 skew;             /* bytes skipped below the window: offset + skew is in the file */
  guint64 mark;             /* the file offset where the last read ended */
  GBytes *held;             /* the line the last read ended inside, or NULL */
  guint64 held_offset;
  struct fuse_pollhandle *ph; /* the last poll() waiting for a message, or NULL */
};

#define LINE(ch, i) (&g_array_index ((ch)->lines, Line, (i)))

/* ----------------------------------------------------------- the table */

static char *
channel_key (const char *scope, const char *file_name)
{
  return g_strdup_printf ("%zu:%s%s", strlen (scope), scope, file_name);
}

static Channel *
channel_new (ConatfsFs *fs, const char *scope, const char *file_name)
{
  Channel *ch = g_new0 (Channel, 1);

  ch->fs = fs;
  ch->scope = g_strdup (scope);
  ch->file_name = g_strdup (file_name);
  g_mutex_init (&ch->lock);
  ch->lines = g_array_new (FALSE, FALSE, sizeof (Line));
  ch->files = g_ptr_array_new ();
  clock_gettime (CLOCK_REALTIME, &ch->mtime);
  return ch;
}

/* Unsubscribes (no callback runs after) and frees CH. */
static void
channel_free (Channel *ch)
{
  g_clear_pointer (&ch->ps, conat_pubsub_close);
  for (guint i = ch->head; i < ch->lines->len; i++)
    g_bytes_unref (LINE (ch, i)->bytes);
  g_array_unref (ch->lines);
  g_ptr_array_unref (ch->files);
  g_mutex_clear (&ch->lock);
  g_free (ch->scope);
  g_free (ch->file_name);
  g_free (ch);
}

static Channel *
channel_find (ConatfsFs *fs, const char *scope, const char *file_name)
{
  g_autofree char *key = channel_key (scope, file_name);
  Channel *ch;

  g_mutex_lock (&fs->lock);
  ch = fs->channels ? g_hash_table_lookup (fs->channels, key) : NULL;
  g_mutex_unlock (&fs->lock);
  return ch;
}

static Channel *
channel_of_inode (ConatfsFs *fs, ConatfsInode *inode)
{
  g_autofree char *scope = conatfs_inode_scope_name (fs, inode);
  g_autofree char *file_name = conatfs_inode_name (fs, inode);

  return scope ? channel_find (fs, scope, file_name) : NULL;
}

/* --------------------------------------------------- receiving messages */

/* With ch->lock held: drops the oldest lines over the window. */
static void
window_trim (Channel *ch)
{
  while (ch->end - ch->start > ch->fs->channel_window && ch->lines->len - ch->head > 1)
    {
      g_bytes_unref (LINE (ch, ch->head)->bytes);
      ch->head++;
      ch->start = LINE (ch, ch->head)->offset;
    }
  if (ch->head >= COMPACT_MIN && ch->head * 2 >= ch->lines->len)
    {
      g_array_remove_range (ch->lines, 0, ch->head);
      ch->head = 0;
    }
}

static void
on_message (ConatPubsub *ps, GBytes *message, gpointer user_data)
{
  Channel *ch = user_data;
  ConatfsFs *fs = ch->fs;
  gsize len;
  const guint8 *data = g_bytes_get_data (message, &len);
  Line line = { .bytes = conatfs_channel_line_new (data, len) };
  g_autoptr (GPtrArray) polls = NULL; /* made only when a poll() waits */
  fuse_ino_t ino, dir_ino;

  g_mutex_lock (&ch->lock);
  line.offset = ch->end;
  ch->end += g_bytes_get_size (line.bytes);
  g_array_append_val (ch->lines, line);
  clock_gettime (CLOCK_REALTIME, &ch->mtime);
  window_trim (ch);
  ino = ch->ino;
  dir_ino = ch->dir_ino;
  for (guint i = 0; i < ch->files->len; i++)
    {
      ConatfsChannelFile *file = ch->files->pdata[i];

      if (file->ph == NULL)
        continue;
      if (polls == NULL)
        polls = g_ptr_array_new ();
      g_ptr_array_add (polls, g_steal_pointer (&file->ph));
    }
  g_mutex_unlock (&ch->lock);

  for (guint i = 0; polls != NULL && i < polls->len; i++)
    conatfs_notifier_poll (fs->notifier, polls->pdata[i]);
  if (ino == 0) /* a message before the lookup that subscribed has its inode */
    return;
  conatfs_notifier_inval_attr (fs->notifier, ino);
  conatfs_echo_modified (fs, dir_ino, ch->file_name); /* IN_MODIFY (DESIGN §4) */
}

/* The channel SCOPE/FILE_NAME, subscribed to now if it was not yet. */
static Channel *
channel_subscribe (ConatfsFs *fs, const char *scope, const char *file_name, const char *name,
                   const char *path, int *err)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *key = NULL;
  Channel *ch = channel_find (fs, scope, file_name);
  Channel *other;

  if (ch != NULL)
    return ch;
  ch = channel_new (fs, scope, file_name);
  ch->ps = conat_pubsub_open (fs->client, scope, path, name, on_message, ch, NULL, &error);
  if (ch->ps == NULL)
    {
      *err = conatfs_fail (fs, "subscribe", error);
      channel_free (ch);
      return NULL;
    }
  ch->max_message = conat_pubsub_max_message_size (ch->ps);

  key = channel_key (scope, file_name);
  g_mutex_lock (&fs->lock);
  other = g_hash_table_lookup (fs->channels, key);
  if (other == NULL)
    g_hash_table_insert (fs->channels, g_steal_pointer (&key), ch);
  g_mutex_unlock (&fs->lock);
  if (other != NULL) /* subscribed by a concurrent lookup */
    {
      channel_free (ch);
      return other;
    }
  g_debug ("subscribed to %s/%s", scope, file_name);
  return ch;
}

/* -------------------------------------------------------------- names */

gboolean
conatfs_channel_in_scope (ConatfsFs *fs, fuse_ino_t parent, const char *file_name)
{
  g_autoptr (ConatfsInode) dir = NULL;

  if (file_name[0] != '@')
    return FALSE;
  dir = conatfs_inode_get (fs, parent);
  return dir != NULL && conatfs_inode_kind (fs, dir) == CONATFS_INODE_SCOPE;
}

/* Looks up (and subscribes to) the channel FILE_NAME in the scope DIR. */
int
conatfs_channel_lookup (ConatfsFs *fs, ConatfsInode *dir, const char *file_name,
                        ConatfsInode **child)
{
  g_autofree char *scope = conatfs_inode_name (fs, dir);
  g_autofree char *name = NULL;
  g_autofree char *path = NULL;
  Channel *ch;
  int err = 0;

  if (!conatfs_channel_name_parse (file_name, &name, &path))
    return conatfs_name_is_shortened (file_name) ? ENOENT : EINVAL;
  ch = channel_subscribe (fs, scope, file_name, name, path, &err);
  if (ch == NULL)
    return err;
  *child = conatfs_inode_lookup (fs, dir, file_name, CONATFS_INODE_CHANNEL, file_name);
  g_mutex_lock (&ch->lock);
  ch->ino = (*child)->ino;
  ch->dir_ino = dir->ino;
  g_mutex_unlock (&ch->lock);
  return 0;
}

/* The file names of the channels of SCOPE this mount is subscribed to. */
GPtrArray *
conatfs_channel_file_names (ConatfsFs *fs, const char *scope)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter iter;
  gpointer value;

  g_mutex_lock (&fs->lock);
  g_hash_table_iter_init (&iter, fs->channels);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Channel *ch = value;

      if (strcmp (ch->scope, scope) == 0)
        g_ptr_array_add (names, g_strdup (ch->file_name));
    }
  g_mutex_unlock (&fs->lock);
  return names;
}

/* At exit, after the open files were freed: unsubscribes from everything. */
void
conatfs_channel_close_all (ConatfsFs *fs)
{
  GHashTable *channels;
  GHashTableIter iter;
  gpointer value;

  g_mutex_lock (&fs->lock);
  channels = g_steal_pointer (&fs->channels);
  g_mutex_unlock (&fs->lock);
  if (channels == NULL)
    return;
  g_hash_table_iter_init (&iter, channels);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    channel_free (value);
  g_hash_table_unref (channels);
}

/* ------------------------------------------------- attributes and open */

int
conatfs_channel_stat (ConatfsFs *fs, ConatfsInode *inode, struct stat *st)
{
  Channel *ch = channel_of_inode (fs, inode);
  struct timespec mtime;
  guint64 size;

  if (ch == NULL)
    return ENOENT;
  g_mutex_lock (&ch->lock);
  size = ch->end;
  mtime = ch->mtime;
  g_mutex_unlock (&ch->lock);
  conatfs_fill_file_attr (fs, inode->ino, size, &mtime, 0644, st);
  return 0;
}

int
conatfs_channel_open (ConatfsFs *fs, ConatfsInode *inode, struct fuse_file_info *fi,
                      ConatfsHandle **handle)
{
  Channel *ch = channel_of_inode (fs, inode);
  ConatfsChannelFile *file;

  if (ch == NULL)
    return ENOENT;
  file = g_new0 (ConatfsChannelFile, 1);
  file->channel = ch;
  g_mutex_init (&file->write_lock);
  g_mutex_lock (&ch->lock);
  file->mark = ch->end;
  g_ptr_array_add (ch->files, file);
  g_mutex_unlock (&ch->lock);

  fi->direct_io = 1;
  fi->keep_cache = 0;
  fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
  *handle = conatfs_handle_new (fs, inode, fi->flags, NULL, FALSE, ch->max_message);
  (*handle)->channel = file;
  fi->fh = (uintptr_t) *handle;
  return 0;
}

static void
reply_create (fuse_req_t req, ConatfsFs *fs, ConatfsInode *child, struct fuse_file_info *fi)
{
  struct fuse_entry_param e = { .ino = child->ino };
  ConatfsHandle *handle = NULL;
  int err = conatfs_channel_stat (fs, child, &e.attr);

  if (err == 0)
    err = conatfs_channel_open (fs, child, fi, &handle);
  if (err == 0 && fuse_reply_create (req, &e, fi) == 0)
    return;
  if (err != 0)
    conatfs_reply_err (req, "create", err);
  if (handle != NULL)
    conatfs_handle_free (fs, handle);
  conatfs_inode_forget (fs, child->ino, 1);
}

/* open(O_CREAT) of a channel name in a scope (touch SCOPE/@NAME): subscribes. */
void
conatfs_channel_op_create (fuse_req_t req, fuse_ino_t parent, const char *file_name,
                           struct fuse_file_info *fi)
{
  ConatfsFs *fs = fuse_req_userdata (req);
  g_autoptr (ConatfsInode) dir = conatfs_inode_get (fs, parent);
  g_autoptr (ConatfsInode) child = NULL;
  g_autofree char *scope = NULL;
  int err;

  if (dir == NULL)
    return conatfs_reply_err (req, "create", ENOENT);
  if (strlen (file_name) > CONATFS_NAME_MAX)
    return conatfs_reply_err (req, "create", ENAMETOOLONG);
  scope = conatfs_inode_name (fs, dir);
  if ((fi->flags & O_EXCL) && channel_find (fs, scope, file_name) != NULL)
    return conatfs_reply_err (req, "create", EEXIST);
  err = conatfs_channel_lookup (fs, dir, file_name, &child);
  if (err != 0)
    return conatfs_reply_err (req, "create", err);
  reply_create (req, fs, child, fi);
}

/* ---------------------------------------------------------------- read */

/* With ch->lock held: the index of the window's line that holds OFFSET
 * (start <= OFFSET < end). */
static guint
window_find (Channel *ch, guint64 offset)
{
  guint lo = ch->head, hi = ch->lines->len;

  while (hi - lo > 1)
    {
      guint mid = lo + (hi - lo) / 2;

      if (LINE (ch, mid)->offset <= offset)
        lo = mid;
      else
        hi = mid;
    }
  return lo;
}

/* With ch->lock held: appends to OUT the rest of the line held by FILE, if
 * the read at the file offset POS continues it; FALSE if it does not. */
static gboolean
read_held (ConatfsChannelFile *file, GByteArray *out, gsize size, guint64 pos)
{
  gsize len;
  const guint8 *data;
  gsize n;

  if (file->held == NULL)
    return FALSE;
  data = g_bytes_get_data (file->held, &len);
  if (pos < file->held_offset || pos >= file->held_offset + len)
    {
      g_clear_pointer (&file->held, g_bytes_unref);
      return FALSE;
    }
  n = MIN (size, file->held_offset + len - pos);
  g_byte_array_append (out, data + (pos - file->held_offset), n);
  file->mark = pos + n;
  if (file->mark == file->held_offset + len)
    g_clear_pointer (&file->held, g_bytes_unref);
  return TRUE;
}

/* With ch->lock held: the bytes a read of SIZE at OFFSET of FILE returns. */
static void
read_locked (Channel *ch, ConatfsChannelFile *file, GByteArray *out, gsize size, guint64 offset)
{
  guint64 pos = offset + file->skew;
  const guint8 *data;
  gsize len, skip;
  guint i;

  if (read_held (file, out, size, pos))
    return;
  file->mark = pos;
  if (pos >= ch->end || size == 0)
    return;
  if (pos < ch->start) /* left the window: skip to its first line */
    {
      file->skew += ch->start - pos;
      pos = ch->start;
    }
  i = window_find (ch, pos);
  data = g_bytes_get_data (LINE (ch, i)->bytes, &len);
  skip = pos - LINE (ch, i)->offset;
  if (len - skip > size) /* the line does not fit: hold it for the next read */
    {
      g_byte_array_append (out, data + skip, size);
      file->held = g_bytes_ref (LINE (ch, i)->bytes);
      file->held_offset = LINE (ch, i)->offset;
      file->mark = pos + size;
      return;
    }
  g_byte_array_append (out, data + skip, len - skip);
  for (i++; i < ch->lines->len; i++)
    {
      data = g_bytes_get_data (LINE (ch, i)->bytes, &len);
      if (len > size - out->len)
        break;
      g_byte_array_append (out, data, len);
    }
  file->mark = pos + out->len;
}

void
conatfs_channel_reply_read (ConatfsFs *fs, ConatfsChannelFile *file, fuse_req_t req, gsize size,
                            off_t offset)
{
  Channel *ch = file->channel;
  g_autoptr (GByteArray) out = g_byte_array_new ();

  if (offset < 0)
    return conatfs_reply_err (req, "read", EINVAL);
  g_mutex_lock (&ch->lock);
  read_locked (ch, file, out, size, offset);
  g_mutex_unlock (&ch->lock);
  fuse_reply_buf (req, (const char *) out->data, out->len);
}

/* ---------------------------------------------------------------- write */

static int
publish (ConatfsFs *fs, Channel *ch, GBytes *message)
{
  g_autoptr (GError) error = NULL;

  if (conat_pubsub_publish (ch->ps, message, &error))
    return 0;
  return conatfs_fail (fs, "publish", error);
}

/* With file->write_lock held: 0, or EFBIG if a line of BUF would be over
 * the limit; then nothing of BUF is taken.  If that line began in an earlier
 * write, which was taken, the line is dropped: every write up to and with
 * its newline is EFBIG too.  (The kernel splits a big write(); when a later
 * part fails it returns the count before it, and the caller's retry of the
 * rest must fail as well.) */
static int
check_lines (ConatfsChannelFile *file, const char *buf, gsize size)
{
  gsize max = file->channel->max_message;
  gsize held = file->partial ? file->partial->len : 0;
  const char *p = buf, *end = buf + size;

  if (file->overflow)
    {
      file->overflow = memchr (buf, '\n', size) == NULL;
      return EFBIG;
    }
  for (;;)
    {
      const char *nl = memchr (p, '\n', end - p);

      if (held + (gsize) ((nl ? nl : end) - p) > max)
        {
          if (p == buf && held > 0)
            {
              g_clear_pointer (&file->partial, g_byte_array_unref);
              file->overflow = TRUE;
            }
          return EFBIG;
        }
      if (nl == NULL)
        return 0;
      held = 0;
      p = nl + 1;
    }
}

/* Publishes the lines of BUF, together; keeps what follows the last newline. */
static int
channel_write (ConatfsFs *fs, ConatfsChannelFile *file, const char *buf, gsize size)
{
  g_autoptr (GPtrArray) messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr (GError) error = NULL;
  const char *p = buf, *end = buf + size, *nl;
  int err;

  g_mutex_lock (&file->write_lock);
  err = check_lines (file, buf, size);
  while (err == 0 && (nl = memchr (p, '\n', end - p)) != NULL)
    {
      if (file->partial != NULL)
        {
          g_byte_array_append (file->partial, (const guint8 *) p, nl - p);
          g_ptr_array_add (messages, g_byte_array_free_to_bytes (g_steal_pointer (&file->partial)));
        }
      else
        g_ptr_array_add (messages, g_bytes_new (p, nl - p));
      p = nl + 1;
    }
  if (err == 0 && messages->len > 0
      && !conat_pubsub_publish_many (file->channel->ps, (GBytes *const *) messages->pdata,
                                     messages->len, &error))
    err = conatfs_fail (fs, "publish", error);
  if (err == 0 && p < end)
    {
      if (file->partial == NULL)
        file->partial = g_byte_array_new ();
      g_byte_array_append (file->partial, (const guint8 *) p, end - p);
    }
  g_mutex_unlock (&file->write_lock);
  return err;
}

void
conatfs_channel_write (ConatfsFs *fs, ConatfsChannelFile *file, fuse_req_t req, const char *buf,
                       gsize size)
{
  int err = 0;

  /* The inotify echo's write raises IN_MODIFY and publishes nothing. */
  if (!conatfs_echo_is_caller (fs, req))
    err = channel_write (fs, file, buf, size);
  if (err != 0)
    return conatfs_reply_err (req, "write", err);
  fuse_reply_write (req, size);
}

/* Publishes the partial line, if any. */
int
conatfs_channel_flush (ConatfsFs *fs, ConatfsChannelFile *file)
{
  g_autoptr (GBytes) message = NULL;
  int err = 0;

  g_mutex_lock (&file->write_lock);
  file->overflow = FALSE;
  if (file->partial != NULL)
    {
      message = g_byte_array_free_to_bytes (g_steal_pointer (&file->partial));
      err = publish (fs, file->channel, message);
    }
  g_mutex_unlock (&file->write_lock);
  return err;
}

/* From conatfs_handle_free: publishes the partial line, forgets the file. */
void
conatfs_channel_file_free (ConatfsFs *fs, ConatfsChannelFile *file)
{
  Channel *ch = file->channel;
  int err = conatfs_channel_flush (fs, file);

  if (err != 0)
    g_debug ("the last line written to %s could not be sent: %s", ch->file_name,
             strerrorname_np (err));
  g_mutex_lock (&ch->lock);
  g_ptr_array_remove_fast (ch->files, file);
  g_clear_pointer (&file->held, g_bytes_unref);
  g_clear_pointer (&file->ph, fuse_pollhandle_destroy);
  g_mutex_unlock (&ch->lock);
  g_mutex_clear (&file->write_lock);
  g_free (file);
}

/* ----------------------------------------------------------------- poll */

#define HANDLE(fi) ((ConatfsHandle *) (uintptr_t) (fi)->fh)

/* Any file is readable and writable at once, except that a channel file
 * is readable only while it has bytes its open file has not read. */
void
conatfs_op_poll (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                 struct fuse_pollhandle *ph)
{
  ConatfsHandle *handle = HANDLE (fi);
  ConatfsChannelFile *file = handle->channel;
  struct fuse_pollhandle *old = NULL;
  unsigned revents = POLLOUT | POLLWRNORM;

  if (file == NULL)
    revents |= POLLIN | POLLRDNORM;
  else
    {
      Channel *ch = file->channel;

      g_mutex_lock (&ch->lock);
      if (file->mark < ch->end)
        revents |= POLLIN | POLLRDNORM;
      else if (ph != NULL)
        {
          old = file->ph;
          file->ph = g_steal_pointer (&ph);
        }
      g_mutex_unlock (&ch->lock);
    }
  if (old != NULL)
    fuse_pollhandle_destroy (old);
  if (ph != NULL)
    fuse_pollhandle_destroy (ph);
  fuse_reply_poll (req, revents);
}
