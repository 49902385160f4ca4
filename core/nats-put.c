/* nats-put.c — writes of the NATS backend.
 *
 * put_many publishes the whole batch at once, each message with its own
 * reply subject "<inbox>.<id>" under one wildcard subscription, and waits
 * until every ack arrived, the connection dropped, or no ack came for
 * PUT_IDLE_TIMEOUT_US.  The connection has SendAsap, so each message is on
 * its way once published; a flush (PING and PONG) after the batch, as this
 * did until it was measured, only kept the server busy while the change
 * travelled (close() -> inotify elsewhere was 24 µs slower with it).
 * Unanswered messages may still be applied later, so the batch then fails
 * as "outcome unknown"; retries are harmless
 * because each message carries Nats-Msg-Id "<writer>.<gen>.<key hash>",
 * which the stream's duplicate window (2 minutes) recognizes.  The ack holds
 * no server time: a put's time is the local clock when its ack arrived (the
 * change event later carries the server's time).
 */
#define G_LOG_DOMAIN "conat-nats"

#include "nats-private.h"

#include <string.h>

#define PUT_IDLE_TIMEOUT_US (5 * G_USEC_PER_SEC)
/* The server's payload limit, and the bucket's own if it has one. */
gsize
nats_max_value_size (ConatBackendStore *st)
{
  int64_t max = natsConnection_GetMaxPayload (st->d.be->nc) - NATS_HEADER_RESERVE;
  gint64 bucket;

  g_mutex_lock (&st->d.mu);
  bucket = st->max_value;
  g_mutex_unlock (&st->d.mu);
  if (bucket > 0 && bucket < max)
    max = bucket;
  return max > 0 ? (gsize) max : 0;
}

/* ------------------------------------------------------------------ acks */

typedef enum { ITEM_UNSENT, ITEM_WAITING, ITEM_DONE, ITEM_UNKNOWN } ItemState;

typedef struct {
  ConatPut *puts;
  guint n;
  ItemState *state;        /* guarded by be->ack_mu while sent */
  guint64 *ids;
  char **subjects;
  guint64 *conflict;       /* "wrong last sequence: N" of must-not-exist puts */
  guint outstanding;
  gboolean no_stream;
  gint64 progress_us;
} Batch;

typedef struct {
  guint64 id;
  Batch *batch;
  guint index;
} AckSlot;

static gboolean
json_u64 (const char *json, const char *field, guint64 *out)
{
  g_autofree char *pattern = g_strdup_printf ("\"%s\":", field);
  const char *p = strstr (json, pattern);
  char *end = NULL;

  if (p == NULL)
    return FALSE;
  p += strlen (pattern);
  while (*p == ' ')
    p++;
  *out = g_ascii_strtoull (p, &end, 10);
  return end != p;
}

static char *
json_str (const char *json, const char *field)
{
  g_autofree char *pattern = g_strdup_printf ("\"%s\":\"", field);
  const char *p = strstr (json, pattern);
  GString *out;

  if (p == NULL)
    return g_strdup ("");
  out = g_string_new (NULL);
  for (p += strlen (pattern); *p && *p != '"'; p++)
    {
      if (*p == '\\' && p[1])
        p++;
      g_string_append_c (out, *p);
    }
  return g_string_free (out, FALSE);
}

static GError *
ack_error (guint64 code, const char *text)
{
  int err = CONAT_ERROR_FAILED;

  if (code == JSStreamWrongLastSequenceErr || strstr (text, "wrong last sequence"))
    err = CONAT_ERROR_WRONG_REVISION;
  else if (code == JSStreamMessageExceedsMaximumErr || strstr (text, "exceeds maximum"))
    err = CONAT_ERROR_TOO_BIG;
  else if (code == JSInsufficientResourcesErr || code == JSStorageResourcesExceededErr
           || code == JSMemoryResourcesExceededErr || code == JSAccountResourcesExceededErr
           || strstr (text, "resources") || strstr (text, "maximum bytes")
           || strstr (text, "maximum messages"))
    err = CONAT_ERROR_NO_SPACE;
  return g_error_new (CONAT_ERROR, err, "JetStream refused the write: %s", text);
}

/* With ack_mu held. */
static void
ack_apply (Batch *b, guint i, const char *body, gboolean no_responders)
{
  ConatPut *p = &b->puts[i];
  guint64 seq = 0, code = 0;

  b->outstanding--;
  b->progress_us = g_get_monotonic_time ();
  if (no_responders)
    {
      b->state[i] = ITEM_UNKNOWN;
      b->no_stream = TRUE;
      return;
    }
  b->state[i] = ITEM_DONE;
  if (strstr (body, "\"error\"") != NULL)
    {
      g_autofree char *text = json_str (body, "description");
      const char *wrong = strstr (text, "wrong last sequence: ");

      json_u64 (body, "err_code", &code);
      p->error = ack_error (code, text);
      if (wrong && p->cas && p->expected_revision == 0 && b->conflict)
        b->conflict[i] = g_ascii_strtoull (wrong + strlen ("wrong last sequence: "), NULL, 10);
    }
  else if (json_u64 (body, "seq", &seq) && seq > 0)
    {
      p->revision = seq;
      p->time_ms = g_get_real_time () / 1000;  /* the ack carries no server time */
    }
  else
    p->error = g_error_new (CONAT_ERROR, CONAT_ERROR_FAILED,
                            "unexpected answer from JetStream: %.100s", body);
}

static void
on_ack (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  NatsBackend *be = closure;
  const char *subject = natsMsg_GetSubject (msg);
  gsize prefix_len = strlen (be->ack_prefix);
  g_autofree char *body = NULL;
  gboolean no_responders;
  AckSlot *slot;
  guint64 id;

  if (strlen (subject) <= prefix_len)
    {
      natsMsg_Destroy (msg);
      return;
    }
  id = g_ascii_strtoull (subject + prefix_len, NULL, 10);
  body = g_strndup (natsMsg_GetData (msg) ? natsMsg_GetData (msg) : "",
                    natsMsg_GetDataLength (msg));
  no_responders = natsMsg_IsNoResponders (msg);
  natsMsg_Destroy (msg);

  g_mutex_lock (&be->ack_mu);
  slot = g_hash_table_lookup (be->acks, &id);
  if (slot != NULL)
    {
      ack_apply (slot->batch, slot->index, body, no_responders);
      g_hash_table_remove (be->acks, &id);
      g_cond_broadcast (&be->ack_cond);
    }
  g_mutex_unlock (&be->ack_mu);
}

static void
acks_done (void *closure)
{
  NatsBackend *be = closure;

  g_mutex_lock (&be->ack_mu);
  be->ack_sub_done = TRUE;
  g_cond_broadcast (&be->ack_cond);
  g_mutex_unlock (&be->ack_mu);
}

void
nats_acks_init (NatsBackend *be)
{
  g_mutex_init (&be->ack_mu);
  g_cond_init (&be->ack_cond);
  be->acks = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, g_free);
}

gboolean
nats_acks_start (NatsBackend *be, GError **error)
{
  natsInbox *inbox = NULL;
  g_autofree char *subject = NULL;
  natsStatus s = natsInbox_Create (&inbox);

  if (s == NATS_OK)
    {
      be->ack_prefix = g_strconcat (inbox, ".", NULL);
      subject = g_strconcat (inbox, ".*", NULL);
      natsInbox_Destroy (inbox);
      s = natsConnection_Subscribe (&be->ack_sub, be->nc, subject, on_ack, be);
    }
  if (s == NATS_OK)
    s = natsSubscription_SetOnCompleteCB (be->ack_sub, acks_done, be);
  if (s == NATS_OK)
    s = natsSubscription_SetPendingLimits (be->ack_sub, -1, -1);
  if (s == NATS_OK)
    s = natsConnection_FlushTimeout (be->nc, NATS_API_WAIT_MS);
  if (s != NATS_OK)
    nats_set_error (be, error, s, 0, "subscribing to NATS acknowledgements");
  return s == NATS_OK;
}

void
nats_acks_stop (NatsBackend *be)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  if (be->ack_sub == NULL)
    return;
  natsSubscription_Unsubscribe (be->ack_sub);
  g_mutex_lock (&be->ack_mu);
  while (!be->ack_sub_done && g_cond_wait_until (&be->ack_cond, &be->ack_mu, deadline))
    ;
  g_mutex_unlock (&be->ack_mu);
  natsSubscription_Destroy (be->ack_sub);
  be->ack_sub = NULL;
}

void
nats_acks_clear (NatsBackend *be)
{
  g_hash_table_unref (be->acks);
  g_free (be->ack_prefix);
  g_free (be->perm_text);
  g_cond_clear (&be->ack_cond);
  g_mutex_clear (&be->ack_mu);
}

void
nats_acks_interrupt (NatsBackend *be)
{
  g_mutex_lock (&be->ack_mu);
  be->ack_epoch++;
  g_cond_broadcast (&be->ack_cond);
  g_mutex_unlock (&be->ack_mu);
}

void
nats_acks_permission_error (NatsBackend *be, const char *text)
{
  g_mutex_lock (&be->ack_mu);
  be->perm_epoch++;
  g_free (be->perm_text);
  be->perm_text = g_strdup (text);
  g_cond_broadcast (&be->ack_cond);
  g_mutex_unlock (&be->ack_mu);
}

/* The count of permission violations so far, for nats_permission_refused(). */
guint
nats_permission_epoch (NatsBackend *be)
{
  guint epoch;

  g_mutex_lock (&be->ack_mu);
  epoch = be->perm_epoch;
  g_mutex_unlock (&be->ack_mu);
  return epoch;
}

/* The server's text if a permission violation naming NAME came after epoch
 * SINCE, else NULL: a request the server refuses is not answered, it times
 * out, and the refusal arrives apart (on_error). */
char *
nats_permission_refused (NatsBackend *be, guint since, const char *name)
{
  char *text = NULL;

  g_mutex_lock (&be->ack_mu);
  if (be->perm_epoch != since && be->perm_text != NULL && strstr (be->perm_text, name) != NULL)
    text = g_strdup (be->perm_text);
  g_mutex_unlock (&be->ack_mu);
  return text;
}

/* ---------------------------------------------------------------- writes */

static guint64
key_hash (const char *key)
{
  guint64 h = G_GUINT64_CONSTANT (14695981039346656037);

  for (const guchar *p = (const guchar *) key; *p; p++)
    h = (h ^ *p) * G_GUINT64_CONSTANT (1099511628211);
  return h;
}

static natsMsg *
put_msg_new (const ConatPut *p, const char *subject, const char *reply, guint64 expected,
             natsStatus *status)
{
  natsMsg *msg = NULL;
  gsize len = 0;
  const char *data = p->value ? g_bytes_get_data (p->value, &len) : NULL;
  char text[96];
  natsStatus s = natsMsg_Create (&msg, subject, reply, data, (int) len);

  if (s == NATS_OK && p->value == NULL)
    s = natsMsgHeader_Set (msg, "KV-Operation", "DEL");
  if (s == NATS_OK && (p->writer_id || p->gen))
    {
      g_snprintf (text, sizeof text, "%" G_GINT64_MODIFIER "x.%" G_GINT64_MODIFIER "x",
                  p->writer_id, p->gen);
      s = natsMsgHeader_Set (msg, NATS_WRITER_HEADER, text);
      g_snprintf (text + strlen (text), sizeof text - strlen (text),
                  ".%016" G_GINT64_MODIFIER "x", key_hash (p->key));
      if (s == NATS_OK)
        s = natsMsgHeader_Set (msg, "Nats-Msg-Id", text);
    }
  if (s == NATS_OK && p->cas)
    {
      g_snprintf (text, sizeof text, "%" G_GUINT64_FORMAT, expected);
      s = natsMsgHeader_Set (msg, "Nats-Expected-Last-Subject-Sequence", text);
    }
  if (s != NATS_OK)
    g_clear_pointer (&msg, natsMsg_Destroy);
  *status = s;
  return msg;
}

/* Sends item I; returns a connection failure, after which nothing more is sent. */
static natsStatus
batch_send (ConatBackendStore *st, Batch *b, guint i, guint64 expected, gsize max_value)
{
  NatsBackend *be = st->d.be;
  ConatPut *p = &b->puts[i];
  g_autofree char *key = conat_nats_key_encode (p->key);
  g_autofree char *reply = NULL;
  AckSlot *slot;
  natsMsg *msg;
  natsStatus s;

  b->subjects[i] = g_strconcat (st->prefix, key, NULL);
  if (strlen (b->subjects[i]) > CONAT_NATS_SUBJECT_MAX)
    {
      p->error = g_error_new (CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG,
                              "key too long for NATS (%zu bytes encoded)", strlen (key));
      b->state[i] = ITEM_DONE;
      return NATS_OK;
    }
  if (p->value && g_bytes_get_size (p->value) > max_value)
    {
      p->error = g_error_new (CONAT_ERROR, CONAT_ERROR_TOO_BIG,
                              "value of %zu bytes is over the store's limit of %zu",
                              g_bytes_get_size (p->value), max_value);
      b->state[i] = ITEM_DONE;
      return NATS_OK;
    }
  slot = g_new0 (AckSlot, 1);
  slot->batch = b;
  slot->index = i;
  g_mutex_lock (&be->ack_mu);
  slot->id = b->ids[i] = ++be->next_ack_id;
  g_hash_table_insert (be->acks, &slot->id, slot);
  b->state[i] = ITEM_WAITING;
  b->outstanding++;
  g_mutex_unlock (&be->ack_mu);

  reply = g_strdup_printf ("%s%" G_GUINT64_FORMAT, be->ack_prefix, b->ids[i]);
  msg = put_msg_new (p, b->subjects[i], reply, expected, &s);
  if (msg != NULL)
    {
      s = natsConnection_PublishMsg (be->nc, msg);
      natsMsg_Destroy (msg);
    }
  if (s == NATS_OK)
    return NATS_OK;

  g_mutex_lock (&be->ack_mu);
  if (g_hash_table_remove (be->acks, &b->ids[i]))
    {
      b->outstanding--;
      b->state[i] = s == NATS_MAX_PAYLOAD ? ITEM_DONE : ITEM_UNKNOWN;
    }
  g_mutex_unlock (&be->ack_mu);
  if (s != NATS_MAX_PAYLOAD)
    return s;
  p->error = g_error_new (CONAT_ERROR, CONAT_ERROR_TOO_BIG, "value over the NATS server's limit");
  return NATS_OK;
}

/* With ack_mu held: fails the waiting items named by a permission violation. */
static void
batch_permission_locked (NatsBackend *be, Batch *b)
{
  for (guint i = 0; i < b->n; i++)
    {
      g_autofree char *quoted = NULL;

      if (b->state[i] != ITEM_WAITING)
        continue;
      quoted = g_strdup_printf ("\"%s\"", b->subjects[i]);
      if (be->perm_text == NULL || strstr (be->perm_text, quoted) == NULL)
        continue;
      g_hash_table_remove (be->acks, &b->ids[i]);
      b->outstanding--;
      b->state[i] = ITEM_DONE;
      b->puts[i].error = g_error_new (CONAT_ERROR, CONAT_ERROR_PERMISSION,
                                      "the NATS server refused: %s", be->perm_text);
    }
}

/* Waits for the acks; FALSE if the connection dropped meanwhile. */
static gboolean
batch_wait (NatsBackend *be, Batch *b, guint epoch, guint perm)
{
  gboolean connected;

  g_mutex_lock (&be->ack_mu);
  b->progress_us = g_get_monotonic_time ();
  while (b->outstanding > 0 && be->ack_epoch == epoch)
    {
      if (be->perm_epoch != perm)
        {
          perm = be->perm_epoch;
          batch_permission_locked (be, b);
          continue;
        }
      if (g_get_monotonic_time () >= b->progress_us + PUT_IDLE_TIMEOUT_US)
        break;
      g_cond_wait_until (&be->ack_cond, &be->ack_mu, b->progress_us + PUT_IDLE_TIMEOUT_US);
    }
  connected = be->ack_epoch == epoch;
  for (guint i = 0; i < b->n; i++)
    if (b->state[i] == ITEM_WAITING)
      {
        g_hash_table_remove (be->acks, &b->ids[i]);  /* a late ack is ignored */
        b->state[i] = ITEM_UNKNOWN;
        b->outstanding--;
      }
  g_mutex_unlock (&be->ack_mu);
  return connected;
}

/* Puts of PUTS the server took that the watch has not delivered yet: a
 * reset (store_reset, nats-maint.c) counts them, so that if the bucket is
 * lost with them (a memory bucket in a server restart) their keys are
 * reported deleted above their revisions, which drops the values the DKV
 * holds for them while it waits for their echoes. */
static void
note_acked (ConatBackendStore *st, const ConatPut *puts, guint n)
{
  g_mutex_lock (&st->d.mu);
  for (guint i = 0; i < n; i++)
    {
      const ConatPut *p = &puts[i];
      gint64 stored_ns = p->time_ms * G_GINT64_CONSTANT (1000000);

      if (p->revision == 0 || p->error != NULL || p->revision <= st->last_seq)
        continue;
      st->acked_seq = MAX (st->acked_seq, p->revision);
      if (st->keys != NULL && p->value != NULL && !g_hash_table_contains (st->keys, p->key))
        g_hash_table_insert (st->keys, g_strdup (p->key), g_memdup2 (&stored_ns, sizeof stored_ns));
    }
  g_mutex_unlock (&st->d.mu);
}

static gboolean
batch_run (ConatBackendStore *st, ConatPut *puts, guint n, const guint64 *expected,
           guint64 *conflict, GError **error)
{
  NatsBackend *be = st->d.be;
  gsize max_value = nats_max_value_size (st);
  Batch b = { puts, n, g_new0 (ItemState, n), g_new0 (guint64, n), g_new0 (char *, n + 1),
              conflict, 0, FALSE, 0 };
  natsStatus failed = NATS_OK;
  gboolean connected, unknown = FALSE;
  guint epoch, perm;

  g_mutex_lock (&be->ack_mu);
  epoch = be->ack_epoch;
  perm = be->perm_epoch;
  g_mutex_unlock (&be->ack_mu);

  for (guint i = 0; i < n && failed == NATS_OK; i++)
    failed = batch_send (st, &b, i, expected ? expected[i] : puts[i].expected_revision,
                         max_value);
  connected = batch_wait (be, &b, epoch, perm);
  note_acked (st, puts, n);

  for (guint i = 0; i < n; i++)
    unknown = unknown || b.state[i] == ITEM_UNSENT || b.state[i] == ITEM_UNKNOWN;
  if (unknown && b.no_stream)
    {
      nats_store_request_check (st);
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED,
                   "NATS bucket %s is missing; re-creating it", st->bucket);
    }
  else if (unknown && failed != NATS_OK)
    nats_set_error (be, error, failed, 0, "sending to NATS");
  else if (unknown && !connected)
    g_set_error_literal (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED,
                         "the NATS connection dropped before the writes were confirmed");
  else if (unknown)
    g_set_error_literal (error, CONAT_ERROR, CONAT_ERROR_TIMEOUT,
                         "NATS did not confirm the writes in time");
  g_free (b.state);
  g_free (b.ids);
  g_strfreev (b.subjects);
  return !unknown;
}

/* Whether revision SEQ of the bucket is a delete marker of KEY. */
static gboolean
is_delete_marker (ConatBackendStore *st, guint64 seq, const char *key)
{
  g_autofree char *enc = conat_nats_key_encode (key);
  g_autofree char *subject = g_strconcat (st->prefix, enc, NULL);
  natsMsg *msg = NULL;
  jsErrCode jerr = 0;
  gboolean marker;

  if (js_GetMsg (&msg, st->d.be->js, st->stream, seq, NULL, &jerr) != NATS_OK)
    return FALSE;
  marker = g_strcmp0 (natsMsg_GetSubject (msg), subject) == 0 && nats_msg_is_delete (msg);
  natsMsg_Destroy (msg);
  return marker;
}

gboolean
nats_put_many (ConatBackendStore *st, ConatPut *puts, guint n, GError **error)
{
  g_autofree guint64 *conflict = g_new0 (guint64, n);
  gboolean resetting;

  for (guint i = 0; i < n; i++)
    {
      puts[i].revision = 0;
      puts[i].time_ms = 0;
      g_clear_error (&puts[i].error);
    }
  g_mutex_lock (&st->d.mu);
  resetting = st->resetting;
  g_mutex_unlock (&st->d.mu);
  if (resetting || !nats_is_connected (st->d.be))
    {
      g_set_error_literal (error, CONAT_ERROR, CONAT_ERROR_DISCONNECTED,
                           resetting ? "the NATS bucket is being re-created"
                                     : "not connected to NATS");
      return FALSE;
    }
  if (!batch_run (st, puts, n, NULL, conflict, error))
    return FALSE;
  /* "Must not exist" also holds over a delete marker: retry on top of it. */
  for (guint i = 0; i < n; i++)
    if (conflict[i] != 0 && is_delete_marker (st, conflict[i], puts[i].key))
      {
        g_clear_error (&puts[i].error);
        if (!batch_run (st, &puts[i], 1, &conflict[i], NULL, error))
          return FALSE;
      }
  return TRUE;
}

