/* nats-names.c — conat names as NATS bucket names, keys and subjects. */
#include "nats-names.h"

#include "conat.h"

#include <string.h>

static const char hex_digits[] = "0123456789ABCDEF";

static gboolean
is_alnum (guchar c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;  /* lower case is not canonical */
}

static void
append_escape (GString *out, char mark, guchar c)
{
  g_string_append_c (out, mark);
  g_string_append_c (out, hex_digits[c >> 4]);
  g_string_append_c (out, hex_digits[c & 0xf]);
}

/* ---------------------------------------------------------------- buckets */

char *
conat_nats_name_escape (const char *name)
{
  GString *out = g_string_sized_new (strlen (name) + 8);

  for (const guchar *p = (const guchar *) name; *p; p++)
    {
      if (is_alnum (*p))
        g_string_append_c (out, *p);
      else
        append_escape (out, '_', *p);
    }
  return g_string_free (out, FALSE);
}

/* Decodes LEN bytes of an escaped part; NULL unless canonical. */
static char *
name_unescape_len (const char *s, gsize len)
{
  GString *out = g_string_sized_new (len);

  for (gsize i = 0; i < len; i++)
    {
      guchar c = s[i];

      if (is_alnum (c))
        {
          g_string_append_c (out, c);
          continue;
        }
      if (c == '_' && i + 2 < len)
        {
          int hi = hex_value (s[i + 1]);
          int lo = hex_value (s[i + 2]);
          guchar v = (guchar) (hi * 16 + lo);

          if (hi >= 0 && lo >= 0 && v != 0 && !is_alnum (v))
            {
              g_string_append_c (out, v);
              i += 2;
              continue;
            }
        }
      g_string_free (out, TRUE);
      return NULL;
    }
  return g_string_free (out, FALSE);
}

char *
conat_nats_scope_unescape (const char *escaped)
{
  return name_unescape_len (escaped, strlen (escaped));
}

char *
conat_nats_bucket_name (const char *scope, const char *store, GError **error)
{
  g_autofree char *s = NULL;
  g_autofree char *n = NULL;
  char *bucket;

  if (*scope == '\0' || *store == '\0')
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_INVALID_NAME,
                   "empty scope or store name");
      return NULL;
    }
  s = conat_nats_name_escape (scope);
  n = conat_nats_name_escape (store);
  bucket = g_strconcat (CONAT_NATS_BUCKET_PREFIX, s, "-", n, NULL);
  if (strlen (bucket) > CONAT_NATS_BUCKET_MAX)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG,
                   "scope and store names too long for a NATS bucket (%zu > %d bytes encoded)",
                   strlen (bucket), CONAT_NATS_BUCKET_MAX);
      g_free (bucket);
      return NULL;
    }
  return bucket;
}

gboolean
conat_nats_bucket_parse (const char *bucket, char **scope, char **store)
{
  const char *body, *dash;
  char *s, *n;

  if (!g_str_has_prefix (bucket, CONAT_NATS_BUCKET_PREFIX))
    return FALSE;
  body = bucket + strlen (CONAT_NATS_BUCKET_PREFIX);
  dash = strchr (body, '-');
  if (dash == NULL || dash == body || dash[1] == '\0' || strchr (dash + 1, '-') != NULL)
    return FALSE;
  s = name_unescape_len (body, dash - body);
  n = name_unescape_len (dash + 1, strlen (dash + 1));
  if (s == NULL || n == NULL)
    {
      g_free (s);
      g_free (n);
      return FALSE;
    }
  *scope = s;
  *store = n;
  return TRUE;
}

/* ------------------------------------------------------- keys and tokens */

/* ADR-8's key characters, except '.' and '=': libnats 3.4.1 would also take
 * '\\', but other clients refuse it. */
static gboolean
key_byte_plain (guchar c)
{
  return is_alnum (c) || c == '_' || c == '-' || c == '/';
}

static char *
encode (const char *name, gboolean dots)
{
  gsize len = strlen (name);
  GString *out;

  if (len == 0)
    return g_strdup ("=00");
  out = g_string_sized_new (len + 8);
  for (gsize i = 0; i < len; i++)
    {
      guchar c = name[i];

      if (key_byte_plain (c))
        g_string_append_c (out, c);
      else if (c == '.' && dots && i > 0 && i + 1 < len && name[i - 1] != '.')
        g_string_append_c (out, c);
      else
        append_escape (out, '=', c);
    }
  return g_string_free (out, FALSE);
}

static char *
decode (const char *s, gsize len, gboolean dots)
{
  g_autofree char *again = NULL;
  GString *out;
  char *result;

  if (len == 3 && memcmp (s, "=00", 3) == 0)
    return g_strdup ("");
  out = g_string_sized_new (len);
  for (gsize i = 0; i < len; i++)
    {
      guchar c = s[i];

      if (c == '=' && i + 2 < len)
        {
          int hi = hex_value (s[i + 1]);
          int lo = hex_value (s[i + 2]);

          if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            goto bad;
          g_string_append_c (out, (char) (hi * 16 + lo));
          i += 2;
        }
      else if (key_byte_plain (c) || (c == '.' && dots))
        g_string_append_c (out, c);
      else
        goto bad;
    }
  result = g_string_free (out, FALSE);
  /* Only the canonical form decodes: "=41" for "A" or ".a" would not. */
  again = encode (result, dots);
  if (strlen (again) != len || memcmp (again, s, len) != 0)
    {
      g_free (result);
      return NULL;
    }
  return result;

bad:
  g_string_free (out, TRUE);
  return NULL;
}

char *
conat_nats_key_encode (const char *key)
{
  return encode (key, TRUE);
}

char *
conat_nats_key_decode (const char *encoded, gsize len)
{
  return decode (encoded, len, TRUE);
}

char *
conat_nats_token_encode (const char *name)
{
  return encode (name, FALSE);
}

char *
conat_nats_token_decode (const char *encoded, gsize len)
{
  return decode (encoded, len, FALSE);
}

char *
conat_nats_channel_subject (const char *scope, const char *path, const char *name,
                            GError **error)
{
  g_autofree char *s = conat_nats_token_encode (scope);
  g_autofree char *n = conat_nats_token_encode (name);
  g_autofree char *p = path ? conat_nats_token_encode (path) : NULL;
  char *subject = g_strconcat ("conat.", s, ".pubsub.", n, p ? "." : NULL, p, NULL);

  if (strlen (subject) > CONAT_NATS_SUBJECT_MAX)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG,
                   "channel subject too long for NATS (%zu > %d bytes)", strlen (subject),
                   CONAT_NATS_SUBJECT_MAX);
      g_free (subject);
      return NULL;
    }
  return subject;
}

char *
conat_nats_channel_wildcard (const char *scope, GError **error)
{
  g_autofree char *s = conat_nats_token_encode (scope);
  char *subject = g_strconcat ("conat.", s, ".pubsub.>", NULL);

  /* The shortest channel subject of the scope: ">" stands for one byte. */
  if (strlen (subject) > CONAT_NATS_SUBJECT_MAX)
    {
      g_set_error (error, CONAT_ERROR, CONAT_ERROR_NAME_TOO_LONG,
                   "scope name too long for a NATS channel subject (%zu > %d bytes)",
                   strlen (subject), CONAT_NATS_SUBJECT_MAX);
      g_free (subject);
      return NULL;
    }
  return subject;
}

gboolean
conat_nats_channel_parse (const char *subject, char **scope, char **name, char **path)
{
  g_auto (GStrv) tokens = NULL;
  guint n;
  g_autofree char *s = NULL, *c = NULL, *p = NULL;

  if (strlen (subject) > CONAT_NATS_SUBJECT_MAX)
    return FALSE;
  tokens = g_strsplit (subject, ".", 6);
  n = g_strv_length (tokens);
  if ((n != 4 && n != 5) || strcmp (tokens[0], "conat") != 0 || strcmp (tokens[2], "pubsub") != 0)
    return FALSE;
  s = conat_nats_token_decode (tokens[1], strlen (tokens[1]));
  c = conat_nats_token_decode (tokens[3], strlen (tokens[3]));
  p = n == 5 ? conat_nats_token_decode (tokens[4], strlen (tokens[4])) : NULL;
  if (s == NULL || *s == '\0' || c == NULL || *c == '\0' || (n == 5 && p == NULL))
    return FALSE;
  *scope = g_steal_pointer (&s);
  *name = g_steal_pointer (&c);
  *path = g_steal_pointer (&p);
  return TRUE;
}
