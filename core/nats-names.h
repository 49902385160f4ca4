/* nats-names.h — how conat names map onto NATS names (docs/nats-mapping.md).
 *
 * Every mapping is reversible and has exactly one encoded form per name, so
 * programs using any NATS client can compute the same names.  Decoders accept
 * only that canonical form and return NULL for anything else.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define CONAT_NATS_BUCKET_PREFIX "conat_"   /* every store bucket starts with it */
#define CONAT_NATS_SCOPES_BUCKET "conat_scopes" /* keys: scope markers */
#define CONAT_NATS_BUCKET_MAX 252           /* stream names "KV_<bucket>" ≤ 255 */
#define CONAT_NATS_SUBJECT_MAX 3000         /* far below the 4096-byte control line */

/* A scope or store name as a bucket-name part: [A-Za-z0-9] stay, every other
 * byte is "_HH" (upper-case hex).  Never contains '-'. */
char *conat_nats_name_escape (const char *name);
/* "conat_" SCOPE "-" STORE; NULL with CONAT_ERROR_INVALID_NAME (empty name)
 * or CONAT_ERROR_NAME_TOO_LONG (over CONAT_NATS_BUCKET_MAX). */
char *conat_nats_bucket_name (const char *scope, const char *store, GError **error);
/* The inverse; FALSE for any other bucket name. */
gboolean conat_nats_bucket_parse (const char *bucket, char **scope, char **store);
/* The scope part of a bucket name alone: the marker key in CONAT_NATS_SCOPES_BUCKET. */
char *conat_nats_scope_unescape (const char *escaped);

/* A key as a NATS KV key: [A-Za-z0-9_/-] stay, '.' stays unless it would be
 * first, last or follow another '.', every other byte is "=HH"; the empty key
 * is "=00". */
char *conat_nats_key_encode (const char *key);
char *conat_nats_key_decode (const char *encoded, gsize len);

/* A name as one subject token: like a key, but '.' is always "=2E". */
char *conat_nats_token_encode (const char *name);
char *conat_nats_token_decode (const char *encoded, gsize len);

/* "conat." SCOPE ".pubsub." NAME ["." PATH]; NULL with
 * CONAT_ERROR_NAME_TOO_LONG over CONAT_NATS_SUBJECT_MAX. */
char *conat_nats_channel_subject (const char *scope, const char *path, const char *name,
                                  GError **error);
/* "conat." SCOPE ".pubsub.>": every channel of SCOPE; NULL with
 * CONAT_ERROR_NAME_TOO_LONG when no channel subject of SCOPE fits. */
char *conat_nats_channel_wildcard (const char *scope, GError **error);
/* The inverse of conat_nats_channel_subject: TRUE with *SCOPE, *NAME and
 * *PATH (NULL: none) set, free with g_free; FALSE for any other subject,
 * one over CONAT_NATS_SUBJECT_MAX and one naming the empty channel included. */
gboolean conat_nats_channel_parse (const char *subject, char **scope, char **name, char **path);

G_END_DECLS
