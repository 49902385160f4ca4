/* status.c — the JSON of .conatfs/status, made fresh at each open:
 *
 *   {"backend": "embedded", "servers": null, "connected": true,
 *    "connected_since": 1700000000000, "pending": 0, "stores_open": 1,
 *    "messages_dropped": 0,
 *    "stores": [{"scope": "project-x", "store": "settings", "pending": 0,
 *                "loaded": {"keys": 3, "ms": 2}},
 *               {"scope": "project-x", "store": "big",
 *                "loading": {"keys": 12000, "of": 50000}}],
 *    "last_error": null}
 *
 * servers is the NATS server list (null for embedded); connected_since is
 * in milliseconds since the epoch, the time of the last connect or
 * disconnect (the start, for embedded); pending counts the changes not yet
 * confirmed, in all and per open store; loaded tells how many keys the
 * store held when it was opened and how long reading them took; a store
 * still being opened shows instead the keys read so far and how many it
 * holds ("of": null if not known yet); messages_dropped counts channel
 * messages this mount lost; last_error is the backend's last error, or
 * else the reason of this mount's last EIO.
 * Credentials never appear (the core leaves them out of servers).
 */
#include "fs-private.h"
#include "echo.h"

#include <string.h>

static void
append_json_string (GString *out, const char *s)
{
  g_autofree char *valid = NULL;

  if (s == NULL)
    {
      g_string_append (out, "null");
      return;
    }
  valid = g_utf8_make_valid (s, -1);
  g_string_append_c (out, '"');
  for (const char *p = valid; *p != '\0'; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_printf (out, "\\%c", *p);
      else if ((guchar) *p < 0x20)
        g_string_append_printf (out, "\\u%04x", (guchar) *p);
      else
        g_string_append_c (out, *p);
    }
  g_string_append_c (out, '"');
}

/* Channels (channel.c) count the messages they could not keep. */
void
conatfs_status_count_dropped (ConatfsFs *fs, guint64 n)
{
  __atomic_add_fetch (&fs->messages_dropped, n, __ATOMIC_RELAXED);
}

static void
append_store_name (GString *out, gboolean first, const char *scope, const char *name)
{
  g_string_append (out, first ? "\n    {\"scope\": " : ",\n    {\"scope\": ");
  append_json_string (out, scope);
  g_string_append (out, ", \"store\": ");
  append_json_string (out, name);
}

/* The open stores, then those being opened (their keys being read). */
static void
append_stores (GString *out, GPtrArray *stores, GPtrArray *loads)
{
  g_string_append (out, "  \"stores\": [");
  for (guint i = 0; i < stores->len; i++)
    {
      ConatfsStore *store = stores->pdata[i];
      g_autoptr (GPtrArray) unsaved = conat_dkv_unsaved_changes (store->kv);
      ConatLoadStatus load;

      conat_dkv_get_load (store->kv, &load);
      append_store_name (out, i == 0, store->scope, store->name);
      g_string_append_printf (out, ", \"pending\": %u, \"loaded\": {\"keys\": %" G_GUINT64_FORMAT
                              ", \"ms\": %" G_GINT64_FORMAT "}}",
                              unsaved->len, load.keys, load.elapsed_ms);
    }
  for (guint i = 0; i < loads->len; i++)
    {
      ConatLoadStatus *load = loads->pdata[i];

      append_store_name (out, stores->len + i == 0, load->scope, load->name);
      g_string_append_printf (out, ", \"loading\": {\"keys\": %" G_GUINT64_FORMAT ", \"of\": ",
                              load->keys);
      if (load->total > 0)
        g_string_append_printf (out, "%" G_GUINT64_FORMAT "}}", load->total);
      else
        g_string_append (out, "null}}");
    }
  g_string_append (out, stores->len + loads->len > 0 ? "\n  ],\n" : "],\n");
}

GBytes *
conatfs_status_json (ConatfsFs *fs)
{
  g_autoptr (GString) out = g_string_new ("{\n");
  g_autoptr (GPtrArray) loads = conat_client_list_loads (fs->client); /* first: none missed */
  g_autoptr (GPtrArray) stores = conatfs_store_list_open (fs);
  g_autofree char *fs_error = NULL;
  ConatClientStatus status;
  guint64 dir_passes;
  guint echoes;

  conat_client_get_status (fs->client, &status);
  conatfs_echo_get_status (fs, &echoes, &dir_passes);
  g_mutex_lock (&fs->lock);
  fs_error = g_strdup (fs->last_error);
  g_mutex_unlock (&fs->lock);

  g_string_append (out, "  \"backend\": ");
  append_json_string (out, status.backend);
  g_string_append (out, ",\n  \"servers\": ");
  append_json_string (out, status.servers);
  g_string_append_printf (out, ",\n  \"connected\": %s,\n", status.connected ? "true" : "false");
  g_string_append_printf (out, "  \"connected_since\": %" G_GINT64_FORMAT ",\n",
                          status.connected_since_us / 1000);
  g_string_append_printf (out, "  \"pending\": %" G_GUINT64_FORMAT ",\n", status.pending);
  g_string_append_printf (out, "  \"stores_open\": %u,\n", stores->len);
  g_string_append_printf (out, "  \"messages_dropped\": %" G_GUINT64_FORMAT ",\n",
                          (guint64) __atomic_load_n (&fs->messages_dropped, __ATOMIC_RELAXED));
  g_string_append_printf (out, "  \"echoes_pending\": %u,\n", echoes);
  g_string_append_printf (out, "  \"dir_polls\": %" G_GUINT64_FORMAT ",\n", dir_passes);
  append_stores (out, stores, loads);
  g_string_append (out, "  \"last_error\": ");
  append_json_string (out, status.last_error ? status.last_error : fs_error);
  g_string_append (out, "\n}\n");
  conat_client_status_clear (&status);
  return g_string_free_to_bytes (g_steal_pointer (&out));
}
