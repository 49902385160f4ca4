/* main.c — the conatfs daemon: options, backend, mount, main loop, signals.
 *
 *   conatfs [OPTIONS] MOUNTPOINT            (DESIGN §7)
 *
 * The GLib main loop owns the process; the filesystem (fs.h) runs its FUSE
 * loop on its own thread.  SIGTERM and SIGINT, or an unmount from outside,
 * end the main loop; then conatfs_fs_exit() stops serving, unmounts and
 * saves what is pending.
 *
 * Without -f the daemon forks before anything starts a thread, and the
 * parent waits until the child has mounted: it exits 0 then, or 1 if the
 * child failed (the child's error is on the same stderr).
 */
#include "config.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  char *server;
  char *data;
  gboolean foreground;
  gboolean debug;
  gboolean version;
  char **mount_options;
  char *creds;
  char *user;
  char *password_file;
  char *token_file;
  char *tls_ca;
  char *tls_cert;
  char *tls_key;
  int replicas;
  gsize channel_window;
  char **rest;
} Options;

static Options opt;

static const GOptionEntry entries[] = {
  { "server", 0, 0, G_OPTION_ARG_STRING, &opt.server,
    "NATS servers; without it the embedded backend is used", "URL[,URL...]" },
  { "data", 0, 0, G_OPTION_ARG_FILENAME, &opt.data,
    "Data directory of the embedded backend (default $XDG_DATA_HOME/conatfs)", "DIR" },
  { "foreground", 'f', 0, G_OPTION_ARG_NONE, &opt.foreground, "Stay in the foreground", NULL },
  { "options", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &opt.mount_options,
    "Mount options (see below)", "OPT[,OPT...]" },
  { "debug", 'v', 0, G_OPTION_ARG_NONE, &opt.debug, "Log every operation and error", NULL },
  { "version", 0, 0, G_OPTION_ARG_NONE, &opt.version, "Print the version and exit", NULL },
  { "creds", 0, 0, G_OPTION_ARG_FILENAME, &opt.creds, "NATS credentials file", "FILE" },
  { "user", 0, 0, G_OPTION_ARG_STRING, &opt.user, "NATS user name", "NAME" },
  { "password-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.password_file,
    "File holding the NATS password", "FILE" },
  { "token-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.token_file,
    "File holding the NATS token", "FILE" },
  { "tls-ca", 0, 0, G_OPTION_ARG_FILENAME, &opt.tls_ca, "TLS CA certificate", "FILE" },
  { "tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &opt.tls_cert, "TLS client certificate", "FILE" },
  { "tls-key", 0, 0, G_OPTION_ARG_FILENAME, &opt.tls_key, "TLS client key", "FILE" },
  { "replicas", 0, 0, G_OPTION_ARG_INT, &opt.replicas,
    "Replicas of each new NATS bucket (default 1)", "N" },
  { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt.rest, NULL,
    "[SOURCE] MOUNTPOINT" },
  { NULL },
};

static const char description[] =
  "Mount options (-o):\n"
  "  ro, allow_other, default_permissions, ...   as for any FUSE filesystem\n"
  "  local_patterns=PAT[:PAT...]   editor files kept in memory, never stored as keys\n"
  "                                (default .*.sw?:*~:.#*:#*#:4913:.*.tmp)\n"
  "  channel_window=BYTES[K|M|G]   recent messages kept per channel file (default 1M)\n"
  "  server=, data=, creds=, user=, password_file=, token_file=, tls_ca=, tls_cert=,\n"
  "  tls_key=, replicas=           the options above, for mount -t fuse.conatfs and fstab\n"
  "\n"
  "SOURCE (from mount or fstab) is ignored unless it is a nats:// URL, which then\n"
  "stands for --server.\n"
  "\n"
  "Unmount with `fusermount3 -u MOUNTPOINT`, or send SIGTERM or SIGINT.";

/* ------------------------------------------------------------- daemon */

static int ready_fd = -1; /* the pipe to the waiting parent, without -f */

static void
daemon_fork (void)
{
  int fds[2];
  char status = 1;
  pid_t pid;

  if (pipe (fds) != 0 || (pid = fork ()) < 0)
    {
      g_printerr ("conatfs: cannot start the daemon: %s\n", g_strerror (errno));
      exit (1);
    }
  if (pid > 0)
    {
      close (fds[1]);
      if (read (fds[0], &status, 1) != 1)
        status = 1;
      _exit (status);
    }
  close (fds[0]);
  ready_fd = fds[1];
  setsid ();
}

/* The mount is up: let the parent exit 0 and detach from the terminal. */
static void
daemon_ready (void)
{
  char status = 0;
  int null_fd;

  if (ready_fd < 0)
    return;
  if (chdir ("/") != 0)
    g_debug ("chdir /: %s", g_strerror (errno));
  null_fd = open ("/dev/null", O_RDWR);
  if (null_fd >= 0)
    {
      dup2 (null_fd, STDIN_FILENO);
      dup2 (null_fd, STDOUT_FILENO);
      dup2 (null_fd, STDERR_FILENO);
      if (null_fd > STDERR_FILENO)
        close (null_fd);
    }
  if (write (ready_fd, &status, 1) != 1)
    g_debug ("daemon handshake: %s", g_strerror (errno));
  close (ready_fd);
  ready_fd = -1;
}

/* ------------------------------------------------------------- options */

/* -o NAME=VALUE forms of the command-line options, for mount(8) and fstab. */
static const struct {
  const char *name;
  char **value;
} option_aliases[] = {
  { "server=", &opt.server },           { "data=", &opt.data },
  { "creds=", &opt.creds },             { "user=", &opt.user },
  { "password_file=", &opt.password_file }, { "token_file=", &opt.token_file },
  { "tls_ca=", &opt.tls_ca },           { "tls_cert=", &opt.tls_cert },
  { "tls_key=", &opt.tls_key },
};

/* fstab options that mean nothing to a FUSE mount. */
static gboolean
is_fstab_only (const char *o)
{
  static const char *const names[] = { "defaults", "auto", "noauto", "nofail", "_netdev",
                                       "user", "users", "nouser", NULL };

  return g_strv_contains (names, o) || g_str_has_prefix (o, "x-")
         || g_str_has_prefix (o, "comment=");
}

/* Takes O if it is one of our NAME=VALUE options. */
static gboolean
take_alias (const char *o)
{
  if (g_str_has_prefix (o, "replicas="))
    {
      opt.replicas = atoi (o + strlen ("replicas="));
      return TRUE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (option_aliases); i++)
    if (g_str_has_prefix (o, option_aliases[i].name))
      {
        g_free (*option_aliases[i].value);
        *option_aliases[i].value = g_strdup (o + strlen (option_aliases[i].name));
        return TRUE;
      }
  return FALSE;
}

/* "1048576", "64K", "1M": a size in bytes, at least 1. */
static gboolean
parse_size (const char *text, gsize *size)
{
  char *end;
  guint64 value = g_ascii_strtoull (text, &end, 10);
  int shift = 0;

  if (end == text)
    return FALSE;
  if (*end != '\0')
    shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : -1;
  if (shift < 0 || (*end != '\0' && end[1] != '\0') || value == 0 || value > G_MAXSIZE >> shift)
    return FALSE;
  *size = value << shift;
  return TRUE;
}

/* Splits the -o options into FUSE's and ours. */
static gboolean
split_mount_options (GPtrArray *fuse_options, char ***local_patterns, GError **error)
{
  for (char **o = opt.mount_options; o != NULL && *o != NULL; o++)
    {
      g_auto (GStrv) parts = g_strsplit (*o, ",", -1);

      for (char **p = parts; *p != NULL; p++)
        {
          if (g_str_has_prefix (*p, "local_patterns="))
            {
              g_strfreev (*local_patterns);
              *local_patterns = g_strsplit (*p + strlen ("local_patterns="), ":", -1);
            }
          else if (g_str_has_prefix (*p, "channel_window="))
            {
              if (!parse_size (*p + strlen ("channel_window="), &opt.channel_window))
                {
                  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                               "invalid mount option %s (a size: BYTES, or with K, M or G)", *p);
                  return FALSE;
                }
            }
          else if (take_alias (*p) || is_fstab_only (*p))
            continue;
          else if (**p != '\0')
            g_ptr_array_add (fuse_options, g_strdup (*p));
        }
    }
  g_ptr_array_add (fuse_options, NULL);
  return TRUE;
}

static gboolean
parse_options (int *argc, char ***argv, GError **error)
{
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);

  g_option_context_set_summary (context, "Mount conat scopes, stores and keys as files.");
  g_option_context_set_description (context, description);
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, argc, argv, error))
    return FALSE;
  if (opt.version)
    return TRUE;
  if (opt.rest == NULL || opt.rest[0] == NULL
      || (opt.rest[1] != NULL && opt.rest[2] != NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                   "exactly one MOUNTPOINT is needed (see --help)");
      return FALSE;
    }
  if (opt.rest[1] != NULL)  /* mount(8) style: SOURCE MOUNTPOINT */
    {
      char *source = opt.rest[0];
      if (opt.server == NULL && (g_str_has_prefix (source, "nats://")
                                 || g_str_has_prefix (source, "tls://")))
        opt.server = g_strdup (source);
      memmove (opt.rest, opt.rest + 1, 2 * sizeof *opt.rest);
      g_free (source);
    }
  return TRUE;
}

static ConatClient *
open_backend (GError **error)
{
  ConatNatsOptions nats = {
    .servers = opt.server,
    .creds_file = opt.creds,
    .user = opt.user,
    .password_file = opt.password_file,
    .token_file = opt.token_file,
    .tls_ca = opt.tls_ca,
    .tls_cert = opt.tls_cert,
    .tls_key = opt.tls_key,
    .replicas = opt.replicas,
  };

  if (opt.server != NULL)
    return conat_client_new_nats (&nats, error);
  return conat_client_new_embedded (opt.data, error);
}

/* Relative paths would break when the daemon changes to "/". */
static void
make_paths_absolute (void)
{
  char *path;

  path = g_canonicalize_filename (opt.rest[0], NULL);
  g_free (opt.rest[0]);
  opt.rest[0] = path;
  if (opt.data != NULL)
    {
      path = g_canonicalize_filename (opt.data, NULL);
      g_free (opt.data);
      opt.data = path;
    }
}

/* ------------------------------------------------------------- main */

static gboolean
on_quit (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_CONTINUE;
}

static int
run (ConatClient *client, const ConatfsOptions *fs_options)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  ConatfsOptions options = *fs_options;
  g_autoptr (GError) error = NULL;
  guint term_id, int_id;

  options.on_unmounted = on_quit;
  options.on_unmounted_data = loop;
  if (!conatfs_fs_init (client, opt.rest[0], &options, &error))
    {
      g_printerr ("conatfs: %s\n", error->message);
      return 1;
    }
  daemon_ready ();
  term_id = g_unix_signal_add (SIGTERM, on_quit, loop);
  int_id = g_unix_signal_add (SIGINT, on_quit, loop);
  g_main_loop_run (loop);
  g_source_remove (term_id);
  g_source_remove (int_id);
  conatfs_fs_exit ();
  return 0;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (ConatClient) client = NULL;
  g_autoptr (GPtrArray) fuse_options = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) local_patterns = NULL;
  ConatfsOptions fs_options = { 0 };

  if (!parse_options (&argc, &argv, &error))
    {
      g_printerr ("conatfs: %s\n", error->message);
      return 1;
    }
  if (opt.version)
    {
      printf ("conatfs %s\n", CONATFS_VERSION);
      return 0;
    }
  if (opt.debug)
    g_log_set_debug_enabled (TRUE);
  g_log_writer_default_set_use_stderr (TRUE);
  if (!split_mount_options (fuse_options, &local_patterns, &error))
    {
      g_printerr ("conatfs: %s\n", error->message);
      return 1;
    }
  make_paths_absolute ();
  if (!opt.foreground)
    daemon_fork ();

  client = open_backend (&error);
  if (client == NULL)
    {
      g_printerr ("conatfs: cannot open the %s backend: %s\n",
                  opt.server ? "NATS" : "embedded", error->message);
      return 1;
    }
  fs_options.fuse_options = (char **) fuse_options->pdata;
  fs_options.local_patterns = local_patterns;
  fs_options.channel_window = opt.channel_window;
  return run (client, &fs_options);
}
