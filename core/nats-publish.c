/* nats-publish.c — publishing on channels.
 *
 * One message (a write() of one line) goes out on the main connection,
 * which has SendAsap: the publish is its own socket write, the lowest
 * latency, with no 1 ms flusher wait and no PING.  A batch (the lines of
 * one write()) would be a socket write per line there, so it goes out on a
 * second connection without SendAsap, made at the first batch: the
 * publishes only fill libnats' buffer, and the flusher thread here writes
 * it with a PING right away and waits for the PONG, while the writer goes
 * on; lines written meanwhile go out with the next flush.
 *
 * Order is what one connection would give.  A batch after single messages
 * flushes the main connection first (a round trip, only at such a switch);
 * a single message after batches waits until a flush covered them, so the
 * server has them first.  While the second connection is not connected,
 * or could not be made, a batch is single messages.  A flush that fails
 * (a disconnect) leaves the messages to libnats, as any publish does.
 */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

#define BULK_FLUSH_MS 1000 /* a flush waits this long at most for its PONG */

static gboolean
publish_on (NatsBackend *be, natsConnection *nc, const char *subject, GBytes *message,
            GError **error)
{
  gsize len;
  const void *data = g_bytes_get_data (message, &len);
  gsize max = natsConnection_GetMaxPayload (nc);
  natsStatus s;

  if (len > max)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_TOO_BIG,
                   "message of %zu bytes is over the server's limit of %zu", len, max);
      return FALSE;
    }
  s = natsConnection_Publish (nc, subject, data, (int) len);
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, 0, "publishing on a NATS channel");
      return FALSE;
    }
  return TRUE;
}

static void
flush_quietly (natsConnection *nc, const char *which)
{
  natsStatus s = natsConnection_FlushTimeout (nc, BULK_FLUSH_MS);

  if (s != NATS_OK)
    g_debug ("flushing the %s connection: %s", which, natsStatus_GetText (s));
}

/* Returns once every batch published before is flushed (or given up on). */
static void
batches_wait_flushed (NatsBackend *be)
{
  guint64 sent;

  g_mutex_lock (&be->bulk_mu);
  sent = be->bulk_sent;
  while (be->bulk_flushed < sent && !be->bulk_stopping)
    g_cond_wait (&be->bulk_cond, &be->bulk_mu);
  g_mutex_unlock (&be->bulk_mu);
}

gboolean
nats_publish (ConatBackend *backend, const char *scope, const char *path, const char *name,
              GBytes *message, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *subject = conat_nats_channel_subject (scope, path, name, error);

  if (subject == NULL)
    return FALSE;
  batches_wait_flushed (be);
  if (!publish_on (be, be->nc, subject, message, error))
    return FALSE;
  g_atomic_int_set (&be->asap_unflushed, 1);
  return TRUE;
}

/* ------------------------------------------------------------ batches */

static gpointer
flusher_thread (gpointer data)
{
  NatsBackend *be = data;

  g_mutex_lock (&be->bulk_mu);
  for (;;)
    {
      guint64 sent;

      while (!be->bulk_stopping && be->bulk_flushed == be->bulk_sent)
        g_cond_wait (&be->bulk_cond, &be->bulk_mu);
      if (be->bulk_stopping)
        break;
      sent = be->bulk_sent;
      g_mutex_unlock (&be->bulk_mu);
      flush_quietly (be->bulk_nc, "batch");
      g_mutex_lock (&be->bulk_mu);
      be->bulk_flushed = sent;
      g_cond_broadcast (&be->bulk_cond);
    }
  g_mutex_unlock (&be->bulk_mu);
  return NULL;
}

static void
bulk_on_closed (natsConnection *nc, void *closure)
{
  NatsBackend *be = closure;

  g_mutex_lock (&be->mu);
  be->bulk_closed = TRUE;
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
}

static void
bulk_on_error (natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
  const char *text = nats_async_error_text (nc, err);

  g_debug ("NATS error %d on the batch connection: %s", err, text);
  nats_note_error (closure, text);
}

/* The batch connection if it is connected now, else NULL; made (with its
 * flusher) at the first call while the main connection is up. */
static natsConnection *
bulk_connection (NatsBackend *be)
{
  natsConnection *nc;
  natsStatus s;

  g_mutex_lock (&be->bulk_mu);
  if (be->bulk_nc == NULL && !be->bulk_failed && be->bulk_opts != NULL && nats_is_connected (be))
    {
      s = natsConnection_Connect (&be->bulk_nc, be->bulk_opts);
      if (s == NATS_OK)
        be->bulk_flusher = g_thread_new ("conat-nats-flush", flusher_thread, be);
      else
        {
          g_debug ("no batch connection, batches go out one by one: %s",
                   natsStatus_GetText (s));
          be->bulk_nc = NULL;
          be->bulk_failed = TRUE;
        }
    }
  nc = be->bulk_nc;
  g_mutex_unlock (&be->bulk_mu);
  return nc != NULL && natsConnection_Status (nc) == NATS_CONN_STATUS_CONNECTED ? nc : NULL;
}

gboolean
nats_publish_many (ConatBackend *backend, const char *scope, const char *path, const char *name,
                   GBytes *const *messages, guint n, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *subject = conat_nats_channel_subject (scope, path, name, error);
  natsConnection *bulk = subject != NULL ? bulk_connection (be) : NULL;

  if (subject == NULL)
    return FALSE;
  if (bulk == NULL)
    {
      for (guint i = 0; i < n; i++)
        if (!nats_publish (backend, scope, path, name, messages[i], error))
          return FALSE;
      return TRUE;
    }
  if (g_atomic_int_compare_and_exchange (&be->asap_unflushed, 1, 0) && nats_is_connected (be))
    flush_quietly (be->nc, "main");
  for (guint i = 0; i < n; i++)
    if (!publish_on (be, bulk, subject, messages[i], error))
      return FALSE;
  g_mutex_lock (&be->bulk_mu);
  be->bulk_sent++;
  g_cond_broadcast (&be->bulk_cond);
  g_mutex_unlock (&be->bulk_mu);
  return TRUE;
}

/* ---------------------------------------------------------------- life */

void
nats_batch_init (NatsBackend *be)
{
  g_mutex_init (&be->bulk_mu);
  g_cond_init (&be->bulk_cond);
}

/* Takes O, the main connection's options, for the batch connection. */
void
nats_batch_set_options (NatsBackend *be, natsOptions *o)
{
  natsOptions_SetSendAsap (o, false);
  natsOptions_SetDisconnectedCB (o, NULL, NULL);
  natsOptions_SetReconnectedCB (o, NULL, NULL);
  natsOptions_SetClosedCB (o, bulk_on_closed, be);
  natsOptions_SetErrorHandler (o, bulk_on_error, be);
  be->bulk_opts = o;
}

/* Stops the flusher and closes the connection, waiting until DEADLINE at
 * most for its last callback. */
void
nats_batch_close (NatsBackend *be, gint64 deadline)
{
  g_mutex_lock (&be->bulk_mu);
  be->bulk_stopping = TRUE;
  g_cond_broadcast (&be->bulk_cond);
  g_mutex_unlock (&be->bulk_mu);
  if (be->bulk_flusher != NULL)
    g_thread_join (be->bulk_flusher);
  if (be->bulk_nc != NULL)
    {
      natsConnection_Close (be->bulk_nc);
      g_mutex_lock (&be->mu);
      while (!be->bulk_closed && g_cond_wait_until (&be->cond, &be->mu, deadline))
        ;
      g_mutex_unlock (&be->mu);
      natsConnection_Destroy (be->bulk_nc);
    }
  natsOptions_Destroy (be->bulk_opts);
  g_cond_clear (&be->bulk_cond);
  g_mutex_clear (&be->bulk_mu);
}
