/* nullfs.c — the cheapest FUSE filesystem: one file "f" whose reads return
 * a fixed 100-byte value and whose writes are accepted and dropped.  The
 * benchmark times file operations on it to show the floor that any FUSE
 * daemon pays on this machine (the kernel round trips), next to tmpfs.
 *
 *   nullfs [--no-open] MOUNTPOINT     (foreground; unmount with fusermount3 -u)
 *
 * --no-open answers OPEN with ENOSYS, so the kernel stops sending OPEN and
 * RELEASE (but still sends FLUSH on every close). */
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char value[100];
static int no_open;

static void
fill_attr (fuse_ino_t ino, struct stat *st)
{
  memset (st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = ino == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0644;
  st->st_nlink = ino == FUSE_ROOT_ID ? 2 : 1;
  st->st_size = ino == FUSE_ROOT_ID ? 0 : (off_t) sizeof value;
}

static void
null_init (void *data, struct fuse_conn_info *conn)
{
  if (no_open)
    conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
}

static void
null_lookup (fuse_req_t req, fuse_ino_t parent, const char *name)
{
  struct fuse_entry_param e = { .ino = 2, .attr_timeout = 86400, .entry_timeout = 86400 };

  if (parent != FUSE_ROOT_ID || strcmp (name, "f") != 0)
    return (void) fuse_reply_err (req, ENOENT);
  fill_attr (2, &e.attr);
  fuse_reply_entry (req, &e);
}

static void
null_getattr (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct stat st;

  fill_attr (ino, &st);
  fuse_reply_attr (req, &st, 86400);
}

static void
null_setattr (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
              struct fuse_file_info *fi)
{
  null_getattr (req, ino, fi);
}

static void
null_open (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  if (no_open)
    return (void) fuse_reply_err (req, ENOSYS);
  fi->keep_cache = 1;
  fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
  fuse_reply_open (req, fi);
}

static void
null_read (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
  if (off >= (off_t) sizeof value)
    return (void) fuse_reply_buf (req, NULL, 0);
  size_t left = sizeof value - (size_t) off;

  fuse_reply_buf (req, value + off, size < left ? size : left);
}

static void
null_write (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
            struct fuse_file_info *fi)
{
  fuse_reply_write (req, size);
}

static void
null_ok (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  fuse_reply_err (req, 0);
}

static void
null_getxattr (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
  fuse_reply_err (req, ENODATA);
}

static const struct fuse_lowlevel_ops null_ops = {
  .init = null_init, .lookup = null_lookup, .getattr = null_getattr, .setattr = null_setattr,
  .open = null_open, .read = null_read, .write = null_write, .flush = null_ok,
  .release = null_ok, .getxattr = null_getxattr,
};

int
main (int argc, char **argv)
{
  char *fuse_argv[] = { argv[0], NULL };
  struct fuse_args args = FUSE_ARGS_INIT (1, fuse_argv);
  struct fuse_session *se;
  struct fuse_loop_config *cfg;
  int ret;

  no_open = argc == 3 && strcmp (argv[1], "--no-open") == 0;
  if (argc != 2 + no_open)
    {
      fprintf (stderr, "usage: nullfs [--no-open] MOUNTPOINT\n");
      return 2;
    }
  memset (value, 'x', sizeof value - 1);
  value[sizeof value - 1] = '\n';
  se = fuse_session_new (&args, &null_ops, sizeof null_ops, NULL);
  if (se == NULL || fuse_session_mount (se, argv[argc - 1]) != 0)
    return 1;
  cfg = fuse_loop_cfg_create ();
  ret = fuse_session_loop_mt (se, cfg);  /* multi-threaded, like conatfs */
  fuse_loop_cfg_destroy (cfg);
  fuse_session_unmount (se);
  fuse_session_destroy (se);
  return ret != 0;
}
