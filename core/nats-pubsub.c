/* nats-pubsub.c — channel subscriptions and scope watches on NATS.
 *
 * A channel's subscription hears one subject; a scope watch hears every
 * channel of its scope ("conat.<scope>.pubsub.>") and passes each
 * message's channel name on (not its bytes).  The server sends a message
 * once per matching subscription, so a mount that watches a scope and is
 * subscribed to one of its channels would receive each message of that
 * channel twice, and parse, copy and drop one of them: a third of the
 * channel messages/s a writer's and a reader's mounts reach together.
 *
 * So a scope's wildcard subscription is a ScopeTap, shared: the watches of
 * the scope hear it, and so do the channel subscriptions made while it
 * exists, which then make no subscription of their own; each message is
 * handed to the subscriptions of its subject, found by the exact subject.
 * A channel subscription uses the tap only if the server took the
 * wildcard: subscribed while connected, confirmed by a PING, and no
 * permission violation named it (a user may be allowed some channels of
 * a scope and not the rest).  Otherwise, or when no watch of the scope is
 * open, the channel subscribes on its own, as before.  A channel that
 * joins the tap gets only the messages the tap receives after it joined
 * (tap_received), as from a subscription of its own.  The tap lives while
 * a watch or a channel uses it.
 *
 * Locks: be->mu guards the table of taps and their users; a tap's mu (a
 * leaf, but for the Dispatch locks taken after it is let go) guards who
 * hears it.
 */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

#define WATCH_NOTE_US G_USEC_PER_SEC /* a watch hears of a channel at most this often */
#define WATCH_NOTED_MAX 1024         /* channels a watch hears of in that time */
#define TAP_FANOUT_MAX 8     /* subscriptions of one subject served without an allocation */

typedef struct {
  gint refs;                /* atomic: the table's, and the NATS subscription's until complete */
  NatsBackend *be;          /* immutable */
  char *scope;              /* immutable; the key in be->taps */
  natsSubscription *nsub;   /* immutable once made */
  gboolean shared;          /* immutable: channel subscriptions may use it */
  guint users;              /* guarded by be->mu: watches and channels using it */
  GMutex mu;
  /* guarded by mu: */
  guint64 count;            /* messages delivered so far: the last one's number */
  GPtrArray *watches;       /* ConatBackendSub* (references) */
  GHashTable *channels;     /* subject -> GPtrArray of ConatBackendSub* (references) */
} ScopeTap;

/* A channel's subscription, or (watch_scope) one on every channel of a
 * scope, whose items are SeenChannel. */
struct _ConatBackendSub {
  Dispatch d;
  ConatBackendMessageCallback callback;
  ConatBackendChannelCallback seen;
  char *subject;          /* immutable: a channel's subject, when it uses a tap */
  GHashTable *noted;      /* d.mu: a watch's subject -> gint64* when last queued */
  gint64 pruned_us;       /* d.mu: when noted was last pruned */
  gpointer user_data;
  natsSubscription *sub;  /* its own subscription (owned by unsubscribe's caller), or NULL */
  ScopeTap *tap;          /* immutable: the tap it hears instead, or NULL */
  guint64 after;          /* tap->mu: it gets the tap's messages numbered above
                             this (TAP_NOT_YET: none yet) */
};

#define TAP_NOT_YET G_MAXUINT64

typedef struct {
  char *name, *path;
} SeenChannel;

static void
sub_deliver (Dispatch *d, gpointer item)
{
  ConatBackendSub *sub = (ConatBackendSub *) d;

  sub->callback (item, sub->user_data);
}

static void
sub_finalize (Dispatch *d)
{
  ConatBackendSub *sub = (ConatBackendSub *) d;

  g_clear_pointer (&sub->noted, g_hash_table_unref);
  g_free (sub->subject);
  g_free (sub);
}

static const DispatchClass sub_class = {
  sub_deliver, (GDestroyNotify) g_bytes_unref, sub_finalize,
};

static void
seen_deliver (Dispatch *d, gpointer item)
{
  ConatBackendSub *sub = (ConatBackendSub *) d;
  SeenChannel *seen = item;

  sub->seen (seen->name, seen->path, sub->user_data);
}

static void
seen_free (gpointer item)
{
  SeenChannel *seen = item;

  g_free (seen->name);
  g_free (seen->path);
  g_free (seen);
}

static const DispatchClass watch_class = { seen_deliver, seen_free, sub_finalize };

static ConatBackendSub *
sub_ref (ConatBackendSub *sub)
{
  dispatch_ref (&sub->d);
  return sub;
}

static void
sub_unref (ConatBackendSub *sub)
{
  dispatch_unref (&sub->d);
}

/* MSG's payload, without a copy: MSG (taken) is freed with it. */
static GBytes *
message_bytes (natsMsg *msg)
{
  return g_bytes_new_with_free_func (natsMsg_GetData (msg), natsMsg_GetDataLength (msg),
                                     (GDestroyNotify) natsMsg_Destroy, msg);
}

/* On libnats' delivery pool: hands MESSAGE (taken) to channel SUB, whose
 * messages arrive on NSUB. */
static void
channel_offer (ConatBackendSub *sub, GBytes *message, natsSubscription *nsub)
{
  gboolean claimed = FALSE;

  g_mutex_lock (&sub->d.mu);
  if (!sub->d.closing)
    claimed = dispatch_push_or_claim_locked (&sub->d, message, nsub);
  else
    g_clear_pointer (&message, g_bytes_unref);
  g_mutex_unlock (&sub->d.mu);
  if (claimed)
    dispatch_run_claimed (&sub->d, message);
}

static void
sub_on_msg (natsConnection *nc, natsSubscription *nsub, natsMsg *msg, void *closure)
{
  ConatBackendSub *sub = closure;

  channel_offer (sub, message_bytes (msg), nsub);
}

static gboolean
noted_long_ago (gpointer key, gpointer value, gpointer user_data)
{
  return *(gint64 *) value < *(gint64 *) user_data;
}

/* With d.mu held: whether watch SUB is to hear of a message on SUBJECT
 * now: at most once per WATCH_NOTE_US for each channel, and for at most
 * WATCH_NOTED_MAX channels in that time (a flood the watcher need not keep
 * up with: it hears of the channels that keep sending later). */
static gboolean
watch_due_locked (ConatBackendSub *sub, const char *subject, gint64 now)
{
  gint64 *last = g_hash_table_lookup (sub->noted, subject);

  if (last != NULL)
    {
      if (now - *last < WATCH_NOTE_US)
        return FALSE;
      *last = now;
      return TRUE;
    }
  if (g_hash_table_size (sub->noted) >= WATCH_NOTED_MAX && now - sub->pruned_us >= WATCH_NOTE_US)
    {
      gint64 before = now - WATCH_NOTE_US;

      g_hash_table_foreach_remove (sub->noted, noted_long_ago, &before);
      sub->pruned_us = now;
    }
  if (g_hash_table_size (sub->noted) >= WATCH_NOTED_MAX)
    return FALSE;
  last = g_new (gint64, 1);
  *last = now;
  g_hash_table_insert (sub->noted, g_strdup (subject), last);
  return TRUE;
}

/* On libnats' delivery pool: queues the channel of a message on SUBJECT for
 * watch SUB when it is due.  Subjects that are not a channel's are passed
 * over. */
static void
watch_note (ConatBackendSub *sub, const char *subject)
{
  g_autofree char *scope = NULL;
  SeenChannel *seen = NULL;
  gboolean due;

  g_mutex_lock (&sub->d.mu);
  due = !sub->d.closing && watch_due_locked (sub, subject, g_get_monotonic_time ());
  g_mutex_unlock (&sub->d.mu);
  if (!due)
    return;
  seen = g_new0 (SeenChannel, 1);
  if (!conat_nats_channel_parse (subject, &scope, &seen->name, &seen->path)
      || strcmp (scope, sub->tap->scope) != 0)
    {
      seen_free (seen);
      return;
    }
  g_mutex_lock (&sub->d.mu);
  if (!sub->d.closing)
    dispatch_push_locked (&sub->d, g_steal_pointer (&seen));
  g_mutex_unlock (&sub->d.mu);
  g_clear_pointer (&seen, seen_free);
}

/* On libnats' delivery pool: a message of the tap's scope goes to the
 * channel subscriptions of its subject, then to the watches. */
static void
tap_on_msg (natsConnection *nc, natsSubscription *nsub, natsMsg *msg, void *closure)
{
  ScopeTap *tap = closure;
  const char *subject = natsMsg_GetSubject (msg);
  ConatBackendSub *fixed[TAP_FANOUT_MAX];
  ConatBackendSub **to = fixed;
  g_autofree ConatBackendSub **allocated = NULL;
  guint n = 0, n_channels, n_watches;
  guint64 number;
  GPtrArray *channels;

  g_mutex_lock (&tap->mu);
  number = ++tap->count;
  channels = g_hash_table_lookup (tap->channels, subject);
  n_channels = channels != NULL ? channels->len : 0;
  n_watches = tap->watches->len;
  if (n_channels + n_watches > TAP_FANOUT_MAX)
    to = allocated = g_new (ConatBackendSub *, n_channels + n_watches);
  for (guint i = 0; i < n_channels; i++)
    {
      ConatBackendSub *sub = g_ptr_array_index (channels, i);

      if (sub->after != TAP_NOT_YET && number > sub->after)
        to[n++] = sub_ref (sub);
    }
  for (guint i = 0; i < n_watches; i++)
    to[n + i] = sub_ref (g_ptr_array_index (tap->watches, i));
  g_mutex_unlock (&tap->mu);

  for (guint i = 0; i < n_watches; i++)
    watch_note (to[n + i], subject);
  if (n > 0)
    {
      GBytes *bytes = message_bytes (msg); /* SUBJECT goes with it */

      for (guint i = 0; i < n; i++)
        channel_offer (to[i], i + 1 < n ? g_bytes_ref (bytes) : bytes, nsub);
    }
  else
    natsMsg_Destroy (msg);
  for (guint i = 0; i < n + n_watches; i++)
    sub_unref (to[i]);
}

static void
tap_unref (ScopeTap *tap)
{
  if (!g_atomic_int_dec_and_test (&tap->refs))
    return;
  g_ptr_array_unref (tap->watches);
  g_hash_table_unref (tap->channels);
  g_mutex_clear (&tap->mu);
  g_free (tap->scope);
  g_free (tap);
}

static void
tap_on_complete (void *closure)
{
  tap_unref (closure);
}

/* One user fewer; the last one ends the subscription. */
static void
tap_release (ScopeTap *tap)
{
  NatsBackend *be = tap->be;
  gboolean last;

  g_mutex_lock (&be->mu);
  last = --tap->users == 0;
  if (last)
    g_hash_table_remove (be->taps, tap->scope);
  g_mutex_unlock (&be->mu);
  if (!last)
    return;
  natsSubscription_Unsubscribe (tap->nsub);
  natsSubscription_Destroy (tap->nsub);
  tap_unref (tap);
}

/* With be->mu held: the open tap of SCOPE (only a shared one if
 * SHARED_ONLY), with one user more, or NULL. */
static ScopeTap *
tap_take_locked (NatsBackend *be, const char *scope, gboolean shared_only)
{
  ScopeTap *tap = g_hash_table_lookup (be->taps, scope);

  if (tap == NULL || (shared_only && !tap->shared))
    return NULL;
  tap->users++;
  return tap;
}

/* The shared tap of SCOPE, with one user more, if there is one. */
static ScopeTap *
tap_find_shared (NatsBackend *be, const char *scope)
{
  ScopeTap *tap;

  g_mutex_lock (&be->mu);
  tap = tap_take_locked (be, scope, TRUE);
  g_mutex_unlock (&be->mu);
  return tap;
}

/* Whether the server took SUBJECT, subscribed while connected, after a
 * PING answered: a refusal (-ERR) comes before the PONG, and libnats keeps
 * its text as the connection's last error before it tells on_error. */
static gboolean
subscription_confirmed (NatsBackend *be, const char *subject, guint perm_epoch)
{
  const char *text = NULL;
  g_autofree char *refused = NULL;

  if (natsConnection_FlushTimeout (be->nc, NATS_API_WAIT_MS) != NATS_OK)
    return FALSE;
  if (natsConnection_GetLastError (be->nc, &text) == NATS_NOT_PERMITTED && text != NULL
      && strstr (text, subject) != NULL)
    return FALSE;
  refused = nats_permission_refused (be, perm_epoch, subject);
  return refused == NULL;
}

/* The tap of SCOPE, with one user more: the open one, or a new one. */
static ScopeTap *
tap_get (NatsBackend *be, const char *scope, GError **error)
{
  g_autofree char *subject = conat_nats_channel_wildcard (scope, error);
  guint perm_epoch = nats_permission_epoch (be);
  gboolean connected;
  ScopeTap *tap, *other;
  natsStatus s;

  if (subject == NULL)
    return NULL;
  g_mutex_lock (&be->mu);
  tap = tap_take_locked (be, scope, FALSE);
  connected = be->connected;
  g_mutex_unlock (&be->mu);
  if (tap != NULL)
    return tap;

  tap = g_new0 (ScopeTap, 1);
  tap->refs = 2; /* the table's, the subscription's */
  tap->be = be;
  tap->scope = g_strdup (scope);
  tap->users = 1;
  g_mutex_init (&tap->mu);
  tap->watches = g_ptr_array_new_with_free_func ((GDestroyNotify) sub_unref);
  tap->channels = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify) g_ptr_array_unref);
  s = natsConnection_Subscribe (&tap->nsub, be->nc, subject, tap_on_msg, tap);
  if (s == NATS_OK && natsSubscription_SetOnCompleteCB (tap->nsub, tap_on_complete, tap) != NATS_OK)
    g_debug ("scope subscription closed before it started");
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, 0, "subscribing to the channels of a scope");
      tap->refs = 1;
      tap_unref (tap);
      return NULL;
    }
  /* While disconnected, libnats registers it on reconnect, unconfirmed. */
  tap->shared = connected && subscription_confirmed (be, subject, perm_epoch);

  g_mutex_lock (&be->mu);
  other = tap_take_locked (be, scope, FALSE);
  if (other == NULL)
    g_hash_table_insert (be->taps, tap->scope, tap);
  g_mutex_unlock (&be->mu);
  if (other == NULL)
    return tap;
  /* A racing call made the scope's tap first: use that one. */
  natsSubscription_Unsubscribe (tap->nsub);
  natsSubscription_Destroy (tap->nsub);
  tap_unref (tap);
  return other;
}

static void
sub_on_complete (void *closure)
{
  dispatch_unref (closure);
}

/* Takes SUB's tap, if any, off the tap. */
static void
tap_remove (ConatBackendSub *sub)
{
  ScopeTap *tap = sub->tap;

  g_mutex_lock (&tap->mu);
  if (sub->subject != NULL)
    {
      GPtrArray *channels = g_hash_table_lookup (tap->channels, sub->subject);

      if (channels != NULL && g_ptr_array_remove_fast (channels, sub) && channels->len == 0)
        g_hash_table_remove (tap->channels, sub->subject);
    }
  else
    g_ptr_array_remove_fast (tap->watches, sub);
  g_mutex_unlock (&tap->mu);
}

void
nats_unsubscribe (ConatBackendSub *sub)
{
  if (sub->tap != NULL)
    tap_remove (sub);
  dispatch_close (&sub->d);
  if (sub->tap != NULL)
    tap_release (sub->tap);
  else
    {
      natsSubscription_Unsubscribe (sub->sub);
      natsSubscription_Destroy (sub->sub);
    }
  dispatch_unref (&sub->d);
}

static ConatBackendSub *
sub_new (NatsBackend *be, const DispatchClass *klass, gpointer user_data)
{
  ConatBackendSub *sub = g_new0 (ConatBackendSub, 1);

  dispatch_init (&sub->d, klass, be);
  sub->d.started = TRUE;
  sub->user_data = user_data;
  return sub;
}

/* Subscribes SUB (new, from sub_new) to SUBJECT; frees it on failure. */
static ConatBackendSub *
sub_start (NatsBackend *be, ConatBackendSub *sub, const char *subject, GError **error)
{
  natsStatus s;

  s = natsConnection_Subscribe (&sub->sub, be->nc, subject, sub_on_msg, dispatch_ref (&sub->d));
  if (s != NATS_OK)
    {
      nats_set_error (be, error, s, 0, "subscribing to a NATS channel");
      dispatch_unref (&sub->d);
      dispatch_unref (&sub->d);
      return NULL;
    }
  if (natsSubscription_SetOnCompleteCB (sub->sub, sub_on_complete, sub) != NATS_OK)
    g_debug ("channel subscription closed before it started");
  /* The interest is registered once the server answered a PING; while
   * disconnected, libnats registers it on reconnect. */
  if (nats_is_connected (be) && (s = natsConnection_FlushTimeout (be->nc, NATS_API_WAIT_MS)) != NATS_OK
      && nats_is_connected (be))
    {
      nats_set_error (be, error, s, 0, "subscribing to a NATS channel");
      nats_unsubscribe (sub);
      return NULL;
    }
  return sub;
}

/* How many messages TAP's subscription had received when the server
 * answered a PING sent now: a channel that joins the tap gets the ones
 * after.  That is what a subscription of its own would get: the server
 * handles the PING where it would have handled its SUB, so messages sent
 * before are in the count, and a message published once subscribe
 * returned is not.  Messages the tap received but has not delivered yet
 * are in the count too (libnats keeps them, the tap numbers them as it
 * delivers them); without it, a late subscriber got such a message,
 * published before it subscribed. */
static guint64
tap_received (ScopeTap *tap)
{
  NatsBackend *be = tap->be;
  int64_t delivered = 0;
  int pending = 0;

  if (nats_is_connected (be))
    natsConnection_FlushTimeout (be->nc, NATS_API_WAIT_MS);
  if (natsSubscription_GetStats (tap->nsub, &pending, NULL, NULL, NULL, &delivered, NULL)
      != NATS_OK)
    g_debug ("no statistics of the subscription of scope %s", tap->scope);
  return (guint64) MAX (delivered, 0) + (guint64) MAX (pending, 0);
}

ConatBackendSub *
nats_subscribe (ConatBackend *backend, const char *scope, const char *path, const char *name,
                ConatBackendMessageCallback callback, gpointer user_data, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  g_autofree char *subject = conat_nats_channel_subject (scope, path, name, error);
  ConatBackendSub *sub;
  ScopeTap *tap;
  GPtrArray *channels;
  guint64 after;

  if (subject == NULL)
    return NULL;
  sub = sub_new (be, &sub_class, user_data);
  sub->callback = callback;
  tap = tap_find_shared (be, scope);
  if (tap == NULL)
    return sub_start (be, sub, subject, error);
  sub->tap = tap;
  sub->subject = g_strdup (subject);
  sub->after = TAP_NOT_YET;
  g_mutex_lock (&tap->mu);
  channels = g_hash_table_lookup (tap->channels, subject);
  if (channels == NULL)
    {
      channels = g_ptr_array_new_with_free_func ((GDestroyNotify) sub_unref);
      g_hash_table_insert (tap->channels, g_steal_pointer (&subject), channels);
    }
  g_ptr_array_add (channels, sub_ref (sub));
  g_mutex_unlock (&tap->mu);
  after = tap_received (tap);
  g_mutex_lock (&tap->mu);
  sub->after = after;
  g_mutex_unlock (&tap->mu);
  return sub;
}

/* Hears the scope's tap (one wildcard subscription on its channels). */
ConatBackendSub *
nats_watch_scope (ConatBackend *backend, const char *scope, ConatBackendChannelCallback callback,
                  gpointer user_data, GError **error)
{
  NatsBackend *be = (NatsBackend *) backend;
  ScopeTap *tap = tap_get (be, scope, error);
  ConatBackendSub *sub;

  if (tap == NULL)
    return NULL;
  sub = sub_new (be, &watch_class, user_data);
  sub->seen = callback;
  sub->noted = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  sub->tap = tap;
  g_mutex_lock (&tap->mu);
  g_ptr_array_add (tap->watches, sub_ref (sub));
  g_mutex_unlock (&tap->mu);
  return sub;
}
