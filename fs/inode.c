/* inode.c — the inode table.
 *
 * Inode lifetime
 * --------------
 * The kernel names files by inode number.  Each number it knows came from a
 * reply that carried an entry (lookup, create, mknod, mkdir), and each such
 * reply adds one to the inode's lookup count (nlookup); FORGET gives counts
 * back.  An inode number must stay valid, and mean the same file, until its
 * count is back at zero.  So:
 *
 *   - (parent inode, file name) -> inode is fs->by_name, while the entry is
 *     linked; the same name gives the same inode, so numbers are stable for
 *     as long as the kernel remembers them.
 *   - fs->by_ino holds one reference while nlookup > 0.  When a forget
 *     brings nlookup to zero the inode leaves both tables; open handles and
 *     children keep their own references, so the struct outlives the number.
 *   - Numbers count up from CONATFS_INO_FIRST_DYNAMIC and are never reused,
 *     so the generation is always 0.  Root and .conatfs are fixed.
 *   - unlink, rmdir and the target of rename unlink the entry: the inode
 *     stays in by_ino (the kernel may still hold it, e.g. an open file), but
 *     its name now leads nowhere; a later lookup of the name makes a new one.
 *   - A reply carrying an entry that fails (the request was interrupted)
 *     is undone with conatfs_inode_forget (ino, 1).
 *
 * Counts never underflow: a forget of more than we counted is logged and
 * clamped.  All of it runs under fs->lock; freeing an inode drops its parent
 * reference, which may free the parent too.
 */
#include "fs-private.h"

#include <string.h>

/* The key of fs->by_name. */
char *
conatfs_name_key (fuse_ino_t parent, const char *file_name)
{
  char digits[20];
  gsize n = 0, name_len = strlen (file_name);
  guint64 v = parent;
  char *key, *p;

  /* "PARENT/FILE-NAME", without printf: channel messages make one each. */
  do
    digits[n++] = (char) ('0' + v % 10);
  while ((v /= 10) != 0);
  key = p = g_malloc (n + 1 + name_len + 1);
  while (n > 0)
    *p++ = digits[--n];
  *p++ = '/';
  memcpy (p, file_name, name_len + 1);
  return key;
}

ConatfsInode *
conatfs_inode_ref (ConatfsInode *inode)
{
  g_atomic_int_inc (&inode->refs);
  return inode;
}

void
conatfs_inode_unref (ConatfsInode *inode)
{
  if (inode == NULL || !g_atomic_int_dec_and_test (&inode->refs))
    return;
  g_clear_pointer (&inode->parent, conatfs_inode_unref);
  g_free (inode->file_name);
  g_free (inode->name);
  g_free (inode);
}

static ConatfsInode *
inode_new (fuse_ino_t ino, ConatfsInodeKind kind, ConatfsInode *parent, const char *file_name,
           const char *name)
{
  ConatfsInode *inode = g_new0 (ConatfsInode, 1);

  inode->refs = 1;
  inode->ino = ino;
  inode->kind = kind;
  inode->parent = parent ? conatfs_inode_ref (parent) : NULL;
  inode->file_name = g_strdup (file_name);
  inode->name = g_strdup (name);
  inode->pending_size = -1;
  return inode;
}

/* With fs->lock held: enters INODE (with the table's reference) in both maps. */
static void
table_insert (ConatfsFs *fs, ConatfsInode *inode)
{
  g_hash_table_insert (fs->by_ino, &inode->ino, inode);
  if (inode->parent != NULL)
    {
      g_hash_table_insert (fs->by_name, conatfs_name_key (inode->parent->ino, inode->file_name), inode);
      inode->linked = TRUE;
    }
}

/* With fs->lock held. */
static void
table_unlink (ConatfsFs *fs, ConatfsInode *inode)
{
  g_autofree char *key = NULL;

  if (!inode->linked)
    return;
  key = conatfs_name_key (inode->parent->ino, inode->file_name);
  g_hash_table_remove (fs->by_name, key);
  inode->linked = FALSE;
}

/* Called before the session starts; the table owns the inode. */
ConatfsInode *
conatfs_inode_new_fixed (ConatfsFs *fs, fuse_ino_t ino, ConatfsInodeKind kind,
                         ConatfsInode *parent, const char *file_name)
{
  ConatfsInode *inode = inode_new (ino, kind, parent, file_name, file_name);

  inode->fixed = TRUE;
  g_mutex_lock (&fs->lock);
  table_insert (fs, inode);
  g_mutex_unlock (&fs->lock);
  return inode;
}

/* A new reference to inode INO, or NULL if the kernel should not know it. */
ConatfsInode *
conatfs_inode_get (ConatfsFs *fs, fuse_ino_t ino)
{
  ConatfsInode *inode;

  g_mutex_lock (&fs->lock);
  inode = g_hash_table_lookup (fs->by_ino, &ino);
  if (inode != NULL)
    conatfs_inode_ref (inode);
  g_mutex_unlock (&fs->lock);
  return inode;
}

/* A new reference to the inode linked at (PARENT, FILE_NAME), or NULL. */
ConatfsInode *
conatfs_inode_child (ConatfsFs *fs, ConatfsInode *parent, const char *file_name)
{
  g_autofree char *key = conatfs_name_key (parent->ino, file_name);
  ConatfsInode *inode;

  g_mutex_lock (&fs->lock);
  inode = g_hash_table_lookup (fs->by_name, key);
  if (inode != NULL)
    conatfs_inode_ref (inode);
  g_mutex_unlock (&fs->lock);
  return inode;
}

/* Counts one lookup of (PARENT, FILE_NAME), making the inode if needed, and
 * returns a new reference to it.  KIND and NAME describe what the name is
 * now (a key renamed over a local file changes kind). */
ConatfsInode *
conatfs_inode_lookup (ConatfsFs *fs, ConatfsInode *parent, const char *file_name,
                      ConatfsInodeKind kind, const char *name)
{
  g_autofree char *key = conatfs_name_key (parent->ino, file_name);
  ConatfsInode *inode;

  g_mutex_lock (&fs->lock);
  inode = g_hash_table_lookup (fs->by_name, key);
  if (inode == NULL)
    {
      inode = inode_new (fs->next_ino++, kind, parent, file_name, name);
      table_insert (fs, inode);
    }
  else if (!inode->fixed && (inode->kind != kind || g_strcmp0 (inode->name, name) != 0))
    {
      inode->kind = kind;
      g_free (inode->name);
      inode->name = g_strdup (name);
      inode->cache_valid = FALSE;
    }
  inode->nlookup++;
  conatfs_inode_ref (inode);
  g_mutex_unlock (&fs->lock);
  return inode;
}

void
conatfs_inode_forget (ConatfsFs *fs, fuse_ino_t ino, guint64 nlookup)
{
  ConatfsInode *inode;

  g_mutex_lock (&fs->lock);
  inode = g_hash_table_lookup (fs->by_ino, &ino);
  if (inode == NULL)
    g_warning ("forget of unknown inode %" G_GUINT64_FORMAT, (guint64) ino);
  else if (nlookup > inode->nlookup)
    {
      g_warning ("forget of %" G_GUINT64_FORMAT " lookups of inode %" G_GUINT64_FORMAT
                 " that has %" G_GUINT64_FORMAT, nlookup, (guint64) ino, inode->nlookup);
      inode->nlookup = 0;
    }
  else
    inode->nlookup -= nlookup;

  if (inode != NULL && inode->nlookup == 0 && !inode->fixed)
    {
      table_unlink (fs, inode);
      g_hash_table_remove (fs->by_ino, &ino); /* drops the table's reference */
    }
  g_mutex_unlock (&fs->lock);
}

void
conatfs_inode_unlink (ConatfsFs *fs, ConatfsInode *parent, const char *file_name)
{
  g_autofree char *key = conatfs_name_key (parent->ino, file_name);
  ConatfsInode *inode;

  g_mutex_lock (&fs->lock);
  inode = g_hash_table_lookup (fs->by_name, key);
  if (inode != NULL && !inode->fixed)
    table_unlink (fs, inode);
  g_mutex_unlock (&fs->lock);
}

/* After a rename: the inode at (PARENT, FILE_NAME), if any, is now at
 * (NEW_PARENT, NEW_FILE_NAME) and holds TARGET; what was there is unlinked. */
void
conatfs_inode_move (ConatfsFs *fs, ConatfsInode *parent, const char *file_name,
                    ConatfsInode *new_parent, const char *new_file_name,
                    const ConatfsTarget *target)
{
  g_autofree char *key = conatfs_name_key (parent->ino, file_name);
  g_autofree char *new_key = conatfs_name_key (new_parent->ino, new_file_name);
  ConatfsInode *inode, *old;

  g_mutex_lock (&fs->lock);
  old = g_hash_table_lookup (fs->by_name, new_key);
  if (old != NULL)
    table_unlink (fs, old);
  inode = g_hash_table_lookup (fs->by_name, key);
  if (inode != NULL)
    {
      table_unlink (fs, inode);
      g_clear_pointer (&inode->parent, conatfs_inode_unref);
      inode->parent = conatfs_inode_ref (new_parent);
      g_free (inode->file_name);
      inode->file_name = g_strdup (new_file_name);
      g_free (inode->name);
      inode->name = g_strdup (target->key);
      inode->kind = target->local ? CONATFS_INODE_LOCAL : CONATFS_INODE_KEY;
      g_hash_table_insert (fs->by_name, g_steal_pointer (&new_key), inode);
      inode->linked = TRUE;
    }
  g_mutex_unlock (&fs->lock);
}

ConatfsInodeKind
conatfs_inode_kind (ConatfsFs *fs, ConatfsInode *inode)
{
  ConatfsInodeKind kind;

  g_mutex_lock (&fs->lock);
  kind = inode->kind;
  g_mutex_unlock (&fs->lock);
  return kind;
}

/* The decoded name (a copy). */
char *
conatfs_inode_name (ConatfsFs *fs, ConatfsInode *inode)
{
  char *name;

  g_mutex_lock (&fs->lock);
  name = g_strdup (inode->name);
  g_mutex_unlock (&fs->lock);
  return name;
}

/* The name of the scope a store inode is in (a copy). */
char *
conatfs_inode_scope_name (ConatfsFs *fs, ConatfsInode *inode)
{
  char *name;

  g_mutex_lock (&fs->lock);
  name = g_strdup (inode->parent ? inode->parent->name : NULL);
  g_mutex_unlock (&fs->lock);
  return name;
}

/* For an open: TRUE if the kernel may keep its cached pages.  Either way
 * they are valid from now on, until the value changes. */
gboolean
conatfs_inode_take_cache (ConatfsFs *fs, ConatfsInode *inode)
{
  gboolean valid;

  g_mutex_lock (&fs->lock);
  valid = inode->cache_valid;
  inode->cache_valid = TRUE;
  g_mutex_unlock (&fs->lock);
  return valid;
}

/* The value of INODE changed (or is being changed: PENDING_SIZE >= 0 is the
 * size of the uncommitted buffer; -1 when committed). */
void
conatfs_inode_changed (ConatfsFs *fs, ConatfsInode *inode, gint64 pending_size)
{
  g_mutex_lock (&fs->lock);
  inode->cache_valid = FALSE;
  inode->pending_size = pending_size;
  g_mutex_unlock (&fs->lock);
}

gint64
conatfs_inode_pending_size (ConatfsFs *fs, ConatfsInode *inode)
{
  gint64 size;

  g_mutex_lock (&fs->lock);
  size = inode->pending_size;
  g_mutex_unlock (&fs->lock);
  return size;
}

/* At exit, after the session ended: the kernel forgets everything. */
void
conatfs_inode_table_free (ConatfsFs *fs)
{
  g_hash_table_remove_all (fs->by_name);
  g_hash_table_remove_all (fs->by_ino);
  g_hash_table_unref (fs->by_name);
  g_hash_table_unref (fs->by_ino);
}
