/* backend-nats.c — the NATS backend: one JetStream key-value bucket per
 * store, core subjects for channels; naming in nats-names.h and
 * docs/nats-mapping.md.  This file: connection, status, callbacks, channels.
 * Scopes and stores: nats-namespace.c; store handles: nats-store.c; writes:
 * nats-put.c; channel subscriptions: nats-pubsub.c; channel publishes:
 * nats-publish.c.
 *
 * Threads.  libnats delivers every subscription on its shared delivery pool
 * (natsOptions_UseGlobalMessageDelivery).  Those threads do bookkeeping
 * (decode, update a handle, queue) and run no user code, so a callback that
 * blocks cannot hold up the acks or loads another call waits for.  User
 * callbacks run on our dispatch pool: each store handle and each channel is
 * a Dispatch whose queue at most one thread drains at a time, so its
 * callbacks are serialized and in order.  The one exception: a client whose
 * callbacks are quick (conat_client_set_quick_callbacks) has a change or
 * message delivered on the libnats thread that received it when its
 * Dispatch has nothing queued or running and no message of the
 * subscription waits behind it (dispatch_push_or_claim_locked): a lone
 * change skips the hand-off to the pool (about 25 µs of the latency here),
 * while a burst still goes through the pool, where its parsing and its
 * callbacks run on two threads at once (a channel carries about 15% more
 * messages/s that way than all on one).  Once something is queued, what
 * follows queues behind it, in order.  A slow callback would hold up the
 * other subscriptions of its libnats thread, acks included: hence "quick".
 * The thread count does not grow with open stores: libnats' pool (4), ours
 * (8), one maintenance thread and libnats' reader, flusher and timer
 * threads.
 */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

#define CONNECT_TIMEOUT_MS 5000
#define PING_INTERVAL_MS 10000
#define DELIVERY_POOL_SIZE 4
#define DISPATCH_THREADS 8
#define DISPATCH_BATCH 64
#define CLOSE_WAIT_US (5 * G_USEC_PER_SEC)

/* ------------------------------------------------------------- errors */

static int
error_code_for (natsStatus s, jsErrCode jerr)
{
  switch ((int) jerr)
    {
    case JSStreamNotFoundErr:
    case JSConsumerNotFoundErr:
    case JSNoMessageFoundErr:
      return CONAT_ERROR_NOT_FOUND;
    case JSInsufficientResourcesErr:
    case JSAccountResourcesExceededErr:
    case JSMemoryResourcesExceededErr:
    case JSStorageResourcesExceededErr:
    case JSMaximumStreamsLimitErr:
    case JSStreamLimitsErr:
      return CONAT_ERROR_NO_SPACE;
    case JSStreamWrongLastSequenceErr:
      return CONAT_ERROR_WRONG_REVISION;
    case JSStreamMessageExceedsMaximumErr:
      return CONAT_ERROR_TOO_BIG;
    case JSClusterNotAvailErr:
      return CONAT_ERROR_DISCONNECTED;
    default:
      break;
    }
  switch (s)
    {
    case NATS_TIMEOUT:
      return CONAT_ERROR_TIMEOUT;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_NOT_YET_CONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS:
    case NATS_INSUFFICIENT_BUFFER:
    case NATS_IO_ERROR:
      return CONAT_ERROR_DISCONNECTED;
    case NATS_NOT_PERMITTED:
    case NATS_CONNECTION_AUTH_FAILED:
      return CONAT_ERROR_PERMISSION;
    case NATS_NOT_FOUND:
      return CONAT_ERROR_NOT_FOUND;
    case NATS_MAX_PAYLOAD:
      return CONAT_ERROR_TOO_BIG;
    default:
      return CONAT_ERROR_FAILED;
    }
}

void
nats_note_error (NatsBackend *be, const char *message)
{
  g_mutex_lock (&be->mu);
  g_free (be->last_error);
  be->last_error = g_strdup (message);
  g_mutex_unlock (&be->mu);
}

/* Sets ERROR from a libnats status, with the library's text when it is about
 * this status; failures that are not expected outcomes go to the status. */
void
nats_set_error (NatsBackend *be, GError **error, natsStatus s, jsErrCode jerr,
                const char *context)
{
  natsStatus last = NATS_OK;
  const char *text = nats_GetLastError (&last);
  int code = error_code_for (s, jerr);
  g_autofree char *message = NULL;

  if (text == NULL || *text == '\0' || last != s)
    text = natsStatus_GetText (s);
  if (s == NATS_NO_RESPONDERS && jerr == 0)
    text = "JetStream did not answer (not enabled, or not ready yet)";
  message = g_strdup_printf ("%s: %s", context, text);
  if (code != CONAT_ERROR_NOT_FOUND && code != CONAT_ERROR_WRONG_REVISION)
    nats_note_error (be, message);
  g_set_error_literal (error, CONAT_ERROR, code, message);
}

gboolean
nats_is_connected (NatsBackend *be)
{
  gboolean connected;

  g_mutex_lock (&be->mu);
  connected = be->connected;
  g_mutex_unlock (&be->mu);
  return connected;
}

/* ----------------------------------------------------------- dispatch */

/* A Dispatch's queue is a FIFO in one array, d->items from d->head on:
 * no allocation per item (a GQueue took one per message, made on a libnats
 * thread and freed on the pool's).  With d->mu held. */
static gboolean
fifo_is_empty (Dispatch *d)
{
  return d->head == d->items->len;
}

static gpointer
fifo_pop (Dispatch *d)
{
  gpointer item = d->items->pdata[d->head++];

  if (d->head == d->items->len)
    {
      g_ptr_array_set_size (d->items, 0);
      d->head = 0;
    }
  else if (d->head >= DISPATCH_BATCH && d->head * 2 >= d->items->len)
    {
      /* Never empty in a steady stream: move the rest to the front. */
      g_ptr_array_remove_range (d->items, 0, d->head);
      d->head = 0;
    }
  return item;
}

static void
fifo_clear (Dispatch *d)
{
  for (guint i = d->head; i < d->items->len; i++)
    d->klass->free_item (d->items->pdata[i]);
  g_ptr_array_set_size (d->items, 0);
  d->head = 0;
}

void
dispatch_init (Dispatch *d, const DispatchClass *klass, NatsBackend *be)
{
  d->klass = klass;
  d->be = be;
  d->refs = 1;
  g_mutex_init (&d->mu);
  g_cond_init (&d->cond);
  d->items = g_ptr_array_new ();
}

Dispatch *
dispatch_ref (Dispatch *d)
{
  g_atomic_int_inc (&d->refs);
  return d;
}

void
dispatch_unref (Dispatch *d)
{
  if (!g_atomic_int_dec_and_test (&d->refs))
    return;
  fifo_clear (d);
  g_ptr_array_unref (d->items);
  g_cond_clear (&d->cond);
  g_mutex_clear (&d->mu);
  d->klass->finalize (d);
}

static void
dispatch_schedule_locked (Dispatch *d)
{
  if (d->started && !d->scheduled && !d->closing && !fifo_is_empty (d))
    {
      d->scheduled = TRUE;
      g_thread_pool_push (d->be->pool, dispatch_ref (d), NULL);
    }
}

void
dispatch_push_locked (Dispatch *d, gpointer item)
{
  g_ptr_array_add (d->items, item);
  dispatch_schedule_locked (d);
}

/* With d->mu held: the thread that ran D's callbacks is done; the pool takes
 * what was queued meanwhile. */
static void
dispatch_done_locked (Dispatch *d)
{
  d->running = NULL;
  d->scheduled = FALSE;
  dispatch_schedule_locked (d);
  g_cond_broadcast (&d->cond);
}

/* In a message callback of SUB: whether more of its messages wait behind
 * this one (a burst). */
static gboolean
sub_has_more (natsSubscription *sub)
{
  int msgs = 0;

  return natsSubscription_GetPending (sub, &msgs, NULL) == NATS_OK && msgs > 0;
}

/* With d->mu held, in a message callback of SUB that brought ITEM: TRUE if
 * this thread is to deliver ITEM itself, with dispatch_run_claimed once it
 * has let go of d->mu (quick callbacks, nothing of D queued or running,
 * and no message of SUB waiting behind this one); else ITEM is queued for
 * the pool. */
gboolean
dispatch_push_or_claim_locked (Dispatch *d, gpointer item, natsSubscription *sub)
{
  if (!g_atomic_int_get (&d->be->parent.quick_callbacks) || !d->started || d->scheduled
      || d->closing || !fifo_is_empty (d) || sub_has_more (sub))
    {
      dispatch_push_locked (d, item);
      return FALSE;
    }
  d->scheduled = TRUE;  /* the pool stays away; what comes meanwhile queues */
  d->running = g_thread_self ();
  return TRUE;
}

/* Delivers ITEM, claimed by dispatch_push_or_claim_locked, without d->mu. */
void
dispatch_run_claimed (Dispatch *d, gpointer item)
{
  d->klass->deliver (d, item);
  d->klass->free_item (item);
  g_mutex_lock (&d->mu);
  dispatch_done_locked (d);
  g_mutex_unlock (&d->mu);
}

void
dispatch_start (Dispatch *d)
{
  g_mutex_lock (&d->mu);
  d->started = TRUE;
  dispatch_schedule_locked (d);
  g_mutex_unlock (&d->mu);
}

static void
dispatch_run (gpointer data, gpointer pool_data)
{
  Dispatch *d = data;
  gpointer batch[DISPATCH_BATCH];
  guint n = 0;

  /* Up to DISPATCH_BATCH items at once, so that a burst takes the lock
   * twice, not twice per item; a close meanwhile stops the rest. */
  g_mutex_lock (&d->mu);
  d->running = g_thread_self ();
  while (n < DISPATCH_BATCH && !d->closing && !fifo_is_empty (d))
    batch[n++] = fifo_pop (d);
  g_mutex_unlock (&d->mu);
  for (guint i = 0; i < n; i++)
    {
      if (!g_atomic_int_get (&d->closing))
        d->klass->deliver (d, batch[i]);
      d->klass->free_item (batch[i]);
    }
  g_mutex_lock (&d->mu);
  dispatch_done_locked (d);
  g_mutex_unlock (&d->mu);
  dispatch_unref (d);
}

/* After this returns no callback of D runs, unless called from inside one
 * (that one finishes, and is the last). */
void
dispatch_close (Dispatch *d)
{
  g_mutex_lock (&d->mu);
  g_atomic_int_set (&d->closing, TRUE); /* dispatch_run reads it without the lock */
  fifo_clear (d);
  while (d->running != NULL && d->running != g_thread_self ())
    g_cond_wait (&d->cond, &d->mu);
  g_mutex_unlock (&d->mu);
}

static gsize
nats_max_message_size (ConatBackend *backend)
{
  return natsConnection_GetMaxPayload (((NatsBackend *) backend)->nc);
}

/* --------------------------------------------------------- advisories */

#define STREAM_ADVISORIES "$JS.EVENT.ADVISORY.STREAM."
#define CONSUMER_DELETED "$JS.EVENT.ADVISORY.CONSUMER.DELETED."

/* "$JS.EVENT.ADVISORY.STREAM.{CREATED,DELETED,LEADER_ELECTED}.KV_<bucket>"
 * and "$JS.EVENT.ADVISORY.CONSUMER.DELETED.KV_<bucket>.<consumer>": another
 * client made or removed a bucket, a cluster node that led it died (with the
 * ephemeral consumers it held), or a consumer of it is gone; open handles of
 * the bucket check it, and their watch, at once. */
static void
on_advisory (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  const char *subject = natsMsg_GetSubject (msg);
  g_autofree char *stream = NULL;

  if (g_str_has_prefix (subject, CONSUMER_DELETED))
    {
      const char *dot = strchr (subject + strlen (CONSUMER_DELETED), '.');

      if (dot != NULL)
        stream = g_strndup (subject + strlen (CONSUMER_DELETED),
                            dot - subject - strlen (CONSUMER_DELETED));
    }
  else if (g_str_has_prefix (subject, STREAM_ADVISORIES))
    {
      const char *action = subject + strlen (STREAM_ADVISORIES);
      const char *dot = strchr (action, '.');

      if (dot != NULL
          && (g_str_has_prefix (action, "CREATED.") || g_str_has_prefix (action, "DELETED.")
              || g_str_has_prefix (action, "LEADER_ELECTED.")))
        stream = g_strdup (dot + 1);
    }
  if (stream != NULL && g_str_has_prefix (stream, "KV_" CONAT_NATS_BUCKET_PREFIX))
    nats_stores_bucket_changed_remotely (closure, stream + strlen ("KV_"));
  natsMsg_Destroy (msg);
}

static void
advisories_done (void *closure)
{
  NatsBackend *be = closure;

  g_mutex_lock (&be->mu);
  be->adv_done++;
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
}

/* Without them, changes by others are still found, only later (nats-store.c). */
static void
advisories_start (NatsBackend *be)
{
  static const char *const subjects[2] = { STREAM_ADVISORIES "*.*", CONSUMER_DELETED "*.*" };

  for (guint i = 0; i < G_N_ELEMENTS (be->adv_subs); i++)
    {
      natsStatus s = natsConnection_Subscribe (&be->adv_subs[i], be->nc, subjects[i],
                                               on_advisory, be);

      if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB (be->adv_subs[i], advisories_done, be);
      if (s != NATS_OK)
        {
          g_debug ("no advisories %s: %s", subjects[i], natsStatus_GetText (s));
          g_clear_pointer (&be->adv_subs[i], natsSubscription_Destroy);
        }
    }
}

static void
advisories_stop (NatsBackend *be)
{
  gint64 deadline = g_get_monotonic_time () + CLOSE_WAIT_US;
  guint n = 0;

  for (guint i = 0; i < G_N_ELEMENTS (be->adv_subs); i++)
    if (be->adv_subs[i] != NULL && natsSubscription_Unsubscribe (be->adv_subs[i]) == NATS_OK)
      n++;
  g_mutex_lock (&be->mu);
  while (be->adv_done < n && g_cond_wait_until (&be->cond, &be->mu, deadline))
    ;
  g_mutex_unlock (&be->mu);
  for (guint i = 0; i < G_N_ELEMENTS (be->adv_subs); i++)
    g_clear_pointer (&be->adv_subs[i], natsSubscription_Destroy);
}

/* --------------------------------------------------------- connection */

static char *servers_display (char **urls);

/* The server NC is connected to, without credentials; NULL if none. */
static char *
connected_url (natsConnection *nc)
{
  char url[256] = "";
  char *urls[] = { url, NULL };

  if (natsConnection_GetConnectedUrl (nc, url, sizeof url) != NATS_OK || url[0] == '\0')
    return NULL;
  return servers_display (urls);
}

/* Records the new state; returns the server it concerns (the one lost on a
 * disconnect), for the log. */
static char *
set_connected (NatsBackend *be, gboolean connected, natsConnection *nc, const char *event)
{
  char *url = connected ? connected_url (nc) : NULL;

  g_mutex_lock (&be->mu);
  be->connected = connected;
  be->connected_since_us = g_get_real_time ();
  if (url != NULL)
    {
      g_free (be->url);
      be->url = g_strdup (url);
    }
  else
    url = g_strdup (be->url ? be->url : be->servers);
  if (!connected)
    {
      g_free (be->last_error);
      be->last_error = g_strdup (event);
    }
  else
    be->maint_reconnect = be->maint_wanted = TRUE;
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
  if (!connected)
    nats_stores_disconnected (be);
  nats_acks_interrupt (be);
  return url;
}

static gboolean
is_stopping (NatsBackend *be)
{
  gboolean stopping;

  g_mutex_lock (&be->mu);
  stopping = be->stopping;
  g_mutex_unlock (&be->mu);
  return stopping;
}

/* One log line per change of the connection's state, naming the server;
 * the ones our own close causes are debug output. */
static void
connection_changed (NatsBackend *be, natsConnection *nc, gboolean connected, const char *event,
                    const char *line, const char *suffix)
{
  g_autofree char *url = set_connected (be, connected, nc, event);

  if (is_stopping (be))
    g_debug ("%s NATS server %s", line, url);
  else
    g_message ("%s NATS server %s%s", line, url, suffix);
}

static void
on_disconnected (natsConnection *nc, void *closure)
{
  connection_changed (closure, nc, FALSE, "disconnected from the NATS server",
                      "disconnected from", "; reconnecting");
}

static void
on_reconnected (natsConnection *nc, void *closure)
{
  connection_changed (closure, nc, TRUE, NULL, "reconnected to", "");
}

static void
on_closed (natsConnection *nc, void *closure)
{
  NatsBackend *be = closure;

  connection_changed (be, nc, FALSE, "the NATS connection is closed", "closed the connection to",
                      "");
  g_mutex_lock (&be->mu);
  be->closed = TRUE;
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
}

/* The text of an asynchronous error ERR of NC. */
const char *
nats_async_error_text (natsConnection *nc, natsStatus err)
{
  const char *text = NULL;

  if (natsConnection_GetLastError (nc, &text) != err || text == NULL || *text == '\0')
    text = natsStatus_GetText (err);
  return text;
}

static void
on_error (natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
  NatsBackend *be = closure;
  /* SUB may already be destroyed (libnats posts these late): do not touch it. */
  g_autofree char *message = g_strdup (nats_async_error_text (nc, err));

  g_debug ("NATS error %d: %s", err, message);
  /* Watches report transient trouble here and recover by themselves. */
  if (sub == NULL || err == NATS_SLOW_CONSUMER)
    nats_note_error (be, message);
  if (err == NATS_NOT_PERMITTED)
    nats_acks_permission_error (be, message);
}

static int64_t
reconnect_delay (natsConnection *nc, int attempts, void *closure)
{
  int64_t ms = (int64_t) 100 << MIN (attempts, 5);

  return MIN (ms, 2000) + g_random_int_range (0, 100);
}

static char *
read_secret (const char *path, const char *what, GError **error)
{
  g_autoptr (GError) local = NULL;
  char *text = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &text, &len, &local))
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION, "cannot read the %s file: %s",
                   what, local->message);
      return NULL;
    }
  while (len > 0 && g_ascii_isspace (text[len - 1]))
    text[--len] = '\0';
  if (len == 0 || strlen (text) != len)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION, "the %s file %s is empty or binary",
                   what, path);
      g_free (text);
      return NULL;
    }
  return text;
}

static void
free_secret (char *secret)
{
  if (secret == NULL)
    return;
  memset (secret, 0, strlen (secret));
  g_free (secret);
}

static gboolean
options_set_credentials (natsOptions *o, const ConatNatsOptions *opts, GError **error)
{
  natsStatus s = NATS_OK;
  const char *what = NULL;

  if (opts->creds_file)
    {
      what = "credentials file";
      s = natsOptions_SetUserCredentialsFromFiles (o, opts->creds_file, NULL);
    }
  if (s == NATS_OK && opts->user)
    {
      char *password = NULL;

      if (opts->password_file && !(password = read_secret (opts->password_file, "password", error)))
        return FALSE;
      what = "user and password";
      s = natsOptions_SetUserInfo (o, opts->user, password);
      free_secret (password);
    }
  if (s == NATS_OK && opts->token_file)
    {
      char *token = read_secret (opts->token_file, "token", error);

      if (token == NULL)
        return FALSE;
      what = "token";
      s = natsOptions_SetToken (o, token);
      free_secret (token);
    }
  if (s == NATS_OK && opts->tls_ca)
    {
      what = "TLS CA file";
      s = natsOptions_LoadCATrustedCertificates (o, opts->tls_ca);
      if (s == NATS_OK)
        s = natsOptions_SetSecure (o, true);
    }
  if (s == NATS_OK && (opts->tls_cert || opts->tls_key))
    {
      what = "TLS certificate and key";
      if (!opts->tls_cert || !opts->tls_key)
        {
          g_set_error_literal (error, CONAT_ERROR, CONAT_ERROR_FAILED,
                               "a TLS certificate needs both --tls-cert and --tls-key");
          return FALSE;
        }
      s = natsOptions_LoadCertificatesChain (o, opts->tls_cert, opts->tls_key);
      if (s == NATS_OK)
        s = natsOptions_SetSecure (o, true);
    }
  if (s != NATS_OK)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION, "cannot use the NATS %s: %s", what,
                   natsStatus_GetText (s));
      return FALSE;
    }
  return TRUE;
}

/* The server list as shown in the status: no "user:password@". */
static char *
servers_display (char **urls)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; urls[i]; i++)
    {
      const char *url = urls[i];
      const char *scheme = strstr (url, "://");
      const char *host = scheme ? scheme + 3 : url;
      const char *at = strchr (host, '@');
      const char *slash = strchr (host, '/');

      if (out->len)
        g_string_append_c (out, ',');
      g_string_append_len (out, url, host - url);
      g_string_append (out, at && (!slash || at < slash) ? at + 1 : host);
    }
  return g_string_free (out, FALSE);
}

static natsOptions *
options_new (NatsBackend *be, const ConatNatsOptions *opts, GError **error)
{
  g_auto (GStrv) urls = g_strsplit (opts->servers ? opts->servers : "nats://127.0.0.1:4222", ",", -1);
  natsOptions *o = NULL;
  natsStatus s;

  for (guint i = 0; urls[i]; i++)
    g_strstrip (urls[i]);
  be->servers = servers_display (urls);
  s = natsOptions_Create (&o);
  if (s == NATS_OK)
    s = natsOptions_SetServers (o, (const char **) urls, g_strv_length (urls));
  if (s == NATS_OK)
    {
      natsOptions_SetName (o, "conatfs");
      natsOptions_SetSendAsap (o, true);
      natsOptions_SetTimeout (o, CONNECT_TIMEOUT_MS);
      natsOptions_SetMaxReconnect (o, -1);
      natsOptions_SetCustomReconnectDelay (o, reconnect_delay, be);
      natsOptions_SetPingInterval (o, PING_INTERVAL_MS);
      natsOptions_SetMaxPingsOut (o, 3);
      natsOptions_UseGlobalMessageDelivery (o, true);
      natsOptions_SetDisconnectedCB (o, on_disconnected, be);
      natsOptions_SetReconnectedCB (o, on_reconnected, be);
      natsOptions_SetClosedCB (o, on_closed, be);
      natsOptions_SetErrorHandler (o, on_error, be);
    }
  else
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_FAILED, "bad NATS server list %s: %s",
                   be->servers, natsStatus_GetText (s));
      natsOptions_Destroy (o);
      return NULL;
    }
  if (!options_set_credentials (o, opts, error))
    {
      natsOptions_Destroy (o);
      return NULL;
    }
  return o;
}

static gboolean
connect_server (NatsBackend *be, const ConatNatsOptions *opts, GError **error)
{
  natsOptions *o = options_new (be, opts, error);
  g_autofree char *url = NULL;
  jsAccountInfo *ai = NULL;
  jsErrCode jerr = 0;
  jsOptions jo;
  natsStatus s;

  if (o == NULL)
    return FALSE;
  nats_SetMessageDeliveryPoolSize (DELIVERY_POOL_SIZE);
  s = natsConnection_Connect (&be->nc, o);
  if (s == NATS_OK)
    nats_batch_set_options (be, g_steal_pointer (&o));
  natsOptions_Destroy (o);
  if (s == NATS_NO_SERVER || s == NATS_TIMEOUT || s == NATS_IO_ERROR)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED, "no NATS server answered at %s",
                   be->servers);
      return FALSE;
    }
  if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_PERMISSION,
                   "the NATS server at %s refused the credentials", be->servers);
      return FALSE;
    }
  if (s != NATS_OK)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_FAILED, "cannot connect to NATS at %s: %s",
                   be->servers, nats_GetLastError (NULL) ? nats_GetLastError (NULL)
                                                         : natsStatus_GetText (s));
      return FALSE;
    }
  be->connected = TRUE;
  be->connected_since_us = g_get_real_time ();
  url = connected_url (be->nc);
  g_debug ("connected to NATS server %s", url ? url : be->servers);
  g_mutex_lock (&be->mu);
  be->url = g_steal_pointer (&url);
  g_mutex_unlock (&be->mu);
  if (natsConnection_HasHeaderSupport (be->nc) != NATS_OK)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_FAILED,
                   "the NATS server at %s is too old (no message headers)", be->servers);
      return FALSE;
    }
  jsOptions_Init (&jo);
  jo.Wait = NATS_API_WAIT_MS;
  s = natsConnection_JetStream (&be->js, be->nc, &jo);
  if (s == NATS_OK)
    s = js_GetAccountInfo (&ai, be->js, NULL, &jerr);
  jsAccountInfo_Destroy (ai);
  if (s != NATS_OK)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_FAILED,
                   "JetStream is not available on the NATS server at %s: %s", be->servers,
                   natsStatus_GetText (s));
      return FALSE;
    }
  return TRUE;
}

static void nats_free (ConatBackend *backend);
static void nats_get_status (ConatBackend *backend, ConatClientStatus *status);

static const ConatBackendClass nats_class = {
  .name = "nats",
  .free = nats_free,
  .list_scopes = nats_list_scopes,
  .create_scope = nats_create_scope,
  .remove_scope = nats_remove_scope,
  .has_scope = nats_has_scope,
  .list_stores = nats_list_stores,
  .create_store = nats_create_store,
  .remove_store = nats_remove_store,
  .store_info = nats_store_info,
  .set_store_ephemeral = nats_set_store_ephemeral,
  .set_store_config = nats_set_store_config,
  .store_open = nats_store_open,
  .store_close = nats_store_close,
  .put_many = nats_put_many,
  .max_value_size = nats_max_value_size,
  .subscribe = nats_subscribe,
  .watch_scope = nats_watch_scope,
  .unsubscribe = nats_unsubscribe,
  .publish = nats_publish,
  .publish_many = nats_publish_many,
  .max_message_size = nats_max_message_size,
  .get_status = nats_get_status,
};

ConatBackend *
conat_backend_nats_new (const ConatNatsOptions *opts, GError **error)
{
  NatsBackend *be = g_new0 (NatsBackend, 1);

  be->parent.klass = &nats_class;
  be->replicas = opts->replicas;
  g_mutex_init (&be->mu);
  g_cond_init (&be->cond);
  be->taps = g_hash_table_new (g_str_hash, g_str_equal);
  nats_batch_init (be);
  nats_acks_init (be);
  be->pool = g_thread_pool_new (dispatch_run, be, DISPATCH_THREADS, FALSE, NULL);
  if (!connect_server (be, opts, error) || !nats_acks_start (be, error))
    {
      nats_free (&be->parent);
      return NULL;
    }
  advisories_start (be);
  be->maint = g_thread_new ("conat-nats-maint", nats_maint_thread, be);
  return &be->parent;
}

static void
nats_free (ConatBackend *backend)
{
  NatsBackend *be = (NatsBackend *) backend;
  gint64 deadline = g_get_monotonic_time () + CLOSE_WAIT_US;

  g_mutex_lock (&be->mu);
  be->stopping = TRUE;
  g_cond_broadcast (&be->cond);
  g_mutex_unlock (&be->mu);
  if (be->maint)
    g_thread_join (be->maint);
  if (be->stores != NULL)
    g_warning ("NATS backend freed with %u stores open", g_list_length (be->stores));
  advisories_stop (be);
  nats_acks_stop (be);
  jsCtx_Destroy (be->js);
  nats_batch_close (be, deadline);
  if (be->nc)
    {
      /* Callbacks hold BE: wait for the last one (closed) before freeing. */
      natsConnection_Close (be->nc);
      g_mutex_lock (&be->mu);
      while (!be->closed && g_cond_wait_until (&be->cond, &be->mu, deadline))
        ;
      g_mutex_unlock (&be->mu);
      natsConnection_Destroy (be->nc);
    }
  g_thread_pool_free (be->pool, FALSE, TRUE);
  nats_acks_clear (be);
  if (g_hash_table_size (be->taps) > 0)
    g_warning ("NATS backend freed with %u scopes subscribed", g_hash_table_size (be->taps));
  g_hash_table_unref (be->taps);
  g_cond_clear (&be->cond);
  g_mutex_clear (&be->mu);
  g_free (be->servers);
  g_free (be->url);
  g_free (be->last_error);
  g_free (be);
}

static void
nats_get_status (ConatBackend *backend, ConatClientStatus *status)
{
  NatsBackend *be = (NatsBackend *) backend;

  g_mutex_lock (&be->mu);
  status->connected = be->connected;
  status->connected_since_us = be->connected_since_us;
  g_free (status->last_error);
  status->last_error = g_strdup (be->last_error);
  g_free (status->servers);
  status->servers = g_strdup (be->servers);
  g_mutex_unlock (&be->mu);
}
