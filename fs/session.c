/* session.c — the FUSE session: mount, the loop thread, and its end.
 *
 * conatfs_session_start() starts a thread that clears a stale mount, creates
 * the session, mounts, reports the outcome back (the startup handshake) and
 * then runs fuse_session_loop_mt().  The loop ends in one of two ways:
 *
 *   - from outside (`fusermount3 -u`): the kernel ends the connection, the
 *     loop returns, and the thread asks the caller's main context to run
 *     on_unmounted;
 *   - from conatfs_session_stop() (SIGTERM, SIGINT): fuse_session_exit(),
 *     then a signal to the loop thread, repeated until the loop has noticed,
 *     because its main thread sleeps in sem_wait() until a signal wakes it.
 *
 * Either way the caller then unmounts (harmless if already gone) and joins.
 */
#include "fs-private.h"
#include "echo.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define WAKE_SIGNAL SIGUSR2
#define FUSE_MAX_THREADS 16

typedef struct {
  ConatfsFs *fs;
  char **fuse_options;         /* immutable */
  GMainContext *context;       /* where on_unmounted runs */
  GSourceFunc on_unmounted;
  gpointer on_unmounted_data;
  GThread *thread;
  pthread_t pthread;           /* immutable once started */

  GMutex lock;
  GCond cond;
  /* guarded by lock: */
  gboolean started;            /* the handshake: mounted, or error set */
  GError *error;
  gboolean ended;              /* fuse_session_loop_mt returned */
  gboolean stopping;           /* conatfs_session_stop was called */
} Loop;

static Loop *the_loop; /* main thread only */

/* A daemon killed with SIGKILL leaves its mount behind: every access gives
 * ENOTCONN until it is unmounted. */
static void
clear_stale_mount (const char *mountpoint)
{
  const char *argv[] = { "fusermount3", "-uz", mountpoint, NULL };
  struct stat st;

  if (stat (mountpoint, &st) == 0 || errno != ENOTCONN)
    return;
  g_message ("%s: clearing the stale mount of a daemon that died", mountpoint);
  if (umount2 (mountpoint, MNT_DETACH) == 0)
    return;
  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL,
                NULL);
}

static struct fuse_session *
session_new (Loop *loop, GError **error)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  struct fuse_args args;
  struct fuse_session *session;

  g_ptr_array_add (argv, (char *) "conatfs");
  g_ptr_array_add (argv, (char *) "-ofsname=conatfs,subtype=conatfs");
  for (char **o = loop->fuse_options; o != NULL && *o != NULL; o++)
    {
      g_ptr_array_add (argv, (char *) "-o");
      g_ptr_array_add (argv, *o);
    }
  args = (struct fuse_args) FUSE_ARGS_INIT ((int) argv->len, (char **) argv->pdata);
  session = fuse_session_new (&args, &conatfs_ops, sizeof conatfs_ops, loop->fs);
  fuse_opt_free_args (&args);
  if (session == NULL)
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "invalid mount options");
  return session;
}

static struct fuse_session *
session_mount (Loop *loop, GError **error)
{
  const char *mountpoint = loop->fs->mountpoint;
  struct fuse_session *session;
  struct stat st;

  clear_stale_mount (mountpoint);
  if (stat (mountpoint, &st) != 0 || !S_ISDIR (st.st_mode))
    {
      int err = stat (mountpoint, &st) != 0 ? errno : ENOTDIR;

      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err), "%s: %s", mountpoint,
                   g_strerror (err));
      return NULL;
    }
  session = session_new (loop, error);
  if (session != NULL && fuse_session_mount (session, mountpoint) != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "cannot mount on %s", mountpoint);
      g_clear_pointer (&session, fuse_session_destroy);
    }
  return session;
}

static void
loop_started (Loop *loop, GError *error)
{
  g_mutex_lock (&loop->lock);
  loop->started = TRUE;
  loop->error = error;
  g_cond_broadcast (&loop->cond);
  g_mutex_unlock (&loop->lock);
}

static gpointer
loop_thread (gpointer data)
{
  Loop *loop = data;
  GError *error = NULL;
  struct fuse_session *session = session_mount (loop, &error);
  struct fuse_loop_config *config;
  gboolean stopping;

  loop->pthread = pthread_self ();
  if (session == NULL)
    {
      loop_started (loop, error);
      return NULL;
    }
  loop->fs->session = session;
  loop->fs->notifier = conatfs_notifier_new (session);
  loop->fs->echo = conatfs_echo_new (loop->fs);
  loop_started (loop, NULL);

  config = fuse_loop_cfg_create ();
  fuse_loop_cfg_set_clone_fd (config, 0);
  fuse_loop_cfg_set_max_threads (config, FUSE_MAX_THREADS);
  fuse_session_loop_mt (session, config);
  fuse_loop_cfg_destroy (config);

  g_mutex_lock (&loop->lock);
  loop->ended = TRUE;
  stopping = loop->stopping;
  g_cond_broadcast (&loop->cond);
  g_mutex_unlock (&loop->lock);
  if (!stopping && loop->on_unmounted != NULL)
    g_main_context_invoke (loop->context, loop->on_unmounted, loop->on_unmounted_data);
  return NULL;
}

static void
on_wake_signal (int signum)
{
}

static void
loop_free (Loop *loop)
{
  g_clear_error (&loop->error);
  g_mutex_clear (&loop->lock);
  g_cond_clear (&loop->cond);
  g_clear_pointer (&loop->context, g_main_context_unref);
  g_strfreev (loop->fuse_options);
  g_free (loop);
}

gboolean
conatfs_session_start (ConatfsFs *fs, char **fuse_options, GSourceFunc on_unmounted,
                       gpointer on_unmounted_data, GError **error)
{
  struct sigaction sa = { .sa_handler = on_wake_signal }; /* no SA_RESTART */
  Loop *loop = g_new0 (Loop, 1);

  sigaction (WAKE_SIGNAL, &sa, NULL);
  loop->fs = fs;
  loop->fuse_options = g_strdupv (fuse_options);
  loop->context = g_main_context_ref_thread_default ();
  loop->on_unmounted = on_unmounted;
  loop->on_unmounted_data = on_unmounted_data;
  g_mutex_init (&loop->lock);
  g_cond_init (&loop->cond);
  loop->thread = g_thread_new ("conatfs-fuse", loop_thread, loop);

  g_mutex_lock (&loop->lock);
  while (!loop->started)
    g_cond_wait (&loop->cond, &loop->lock);
  g_mutex_unlock (&loop->lock);
  if (loop->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&loop->error));
      g_thread_join (loop->thread);
      loop_free (loop);
      return FALSE;
    }
  the_loop = loop;
  return TRUE;
}

/* Ends the session loop (if still running), joins it, and unmounts. */
void
conatfs_session_stop (ConatfsFs *fs)
{
  Loop *loop = g_steal_pointer (&the_loop);

  if (loop == NULL)
    return;
  conatfs_echo_stop (fs->echo); /* its last syscall needs the loop */
  g_mutex_lock (&loop->lock);
  loop->stopping = TRUE;
  if (!loop->ended)
    fuse_session_exit (fs->session);
  while (!loop->ended)
    {
      pthread_kill (loop->pthread, WAKE_SIGNAL);
      g_cond_wait_until (&loop->cond, &loop->lock, g_get_monotonic_time () + 50 * 1000);
    }
  g_mutex_unlock (&loop->lock);
  g_thread_join (loop->thread);
  fuse_session_unmount (fs->session);
  loop_free (loop);
}

/* After stop, once nothing sends notices any more. */
void
conatfs_session_free (ConatfsFs *fs)
{
  g_clear_pointer (&fs->echo, conatfs_echo_free);
  g_clear_pointer (&fs->notifier, conatfs_notifier_free);
  g_clear_pointer (&fs->session, fuse_session_destroy);
}
