/* names.c — conat names <-> file names; the rules are in names.h. */
#include "names.h"

#include <string.h>

#define SHORT_MARK "%~"
#define HASH_DIGITS 16

static guint64
name_hash (const char *name)
{
  guint64 hash = G_GUINT64_CONSTANT (0xcbf29ce484222325); /* FNV-1a */

  for (const guchar *p = (const guchar *) name; *p != '\0'; p++)
    {
      hash ^= *p;
      hash *= G_GUINT64_CONSTANT (0x100000001b3);
    }
  return hash;
}

static gboolean
byte_needs_escape (ConatfsNameKind kind, const char *name, const char *p)
{
  switch (*p)
    {
    case '%':
    case '/':
      return TRUE;
    case '@':
      return kind == CONATFS_NAME_STORE && p == name;
    case '.':
      return kind == CONATFS_NAME_SCOPE && p == name;
    case ':':
      return kind == CONATFS_NAME_CHANNEL;
    default:
      return FALSE;
    }
}

static void
append_escaped (GString *out, ConatfsNameKind kind, const char *name)
{
  if (name[0] == '\0')
    {
      g_string_append (out, "%00");
      return;
    }
  if (kind != CONATFS_NAME_CHANNEL && (strcmp (name, ".") == 0 || strcmp (name, "..") == 0))
    {
      g_string_append (out, name[1] == '\0' ? "%2E" : "%2E%2E");
      return;
    }
  for (const char *p = name; *p != '\0'; p++)
    {
      if (byte_needs_escape (kind, name, p))
        g_string_append_printf (out, "%%%02X", (guchar) *p);
      else
        g_string_append_c (out, *p);
    }
}

/* The length to keep of the long form S: at most the prefix size, never
 * inside a "%XX" escape or a UTF-8 sequence. */
static gsize
short_prefix_length (const char *s)
{
  gsize cut = CONATFS_NAME_SHORT_PREFIX;

  while (cut > 0 && ((guchar) s[cut] & 0xC0) == 0x80)
    cut--;
  if (cut >= 1 && s[cut - 1] == '%')
    cut -= 1;
  else if (cut >= 2 && s[cut - 2] == '%')
    cut -= 2;
  return cut;
}

char *
conatfs_name_encode (ConatfsNameKind kind, const char *name)
{
  g_autoptr (GString) out = g_string_new (kind == CONATFS_NAME_CHANNEL ? "@" : "");

  append_escaped (out, kind, name);
  if (out->len > CONATFS_NAME_MAX)
    {
      g_string_truncate (out, short_prefix_length (out->str));
      g_string_append (out, SHORT_MARK);
      g_string_append_printf (out, "%016" G_GINT64_MODIFIER "x", name_hash (name));
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

gboolean
conatfs_name_is_shortened (const char *file_name)
{
  return strstr (file_name, SHORT_MARK) != NULL;
}

static gboolean
is_short_form (const char *body)
{
  const char *mark = strstr (body, SHORT_MARK);
  const char *hash = mark + strlen (SHORT_MARK);

  if (strlen (hash) != HASH_DIGITS)
    return FALSE;
  for (const char *p = hash; *p != '\0'; p++)
    if (!g_ascii_isdigit (*p) && !(*p >= 'a' && *p <= 'f'))
      return FALSE;
  return mark - body <= CONATFS_NAME_SHORT_PREFIX;
}

/* Undoes "%XX"; NULL for a stray "%", bad hex or an escaped NUL. */
static char *
unescape (const char *body)
{
  g_autoptr (GString) out = g_string_new (NULL);

  if (strcmp (body, "%00") == 0)
    return g_strdup ("");
  for (const char *p = body; *p != '\0'; p++)
    {
      int hi, lo;

      if (*p != '%')
        {
          g_string_append_c (out, *p);
          continue;
        }
      hi = g_ascii_xdigit_value (p[1]);
      lo = hi < 0 ? -1 : g_ascii_xdigit_value (p[2]);
      if (lo < 0 || (hi == 0 && lo == 0))
        return NULL;
      g_string_append_c (out, (char) (hi << 4 | lo));
      p += 2;
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

ConatfsNameResult
conatfs_name_decode (ConatfsNameKind kind, const char *file_name, char **name)
{
  const char *body = file_name;
  g_autofree char *decoded = NULL;
  g_autofree char *again = NULL;

  *name = NULL;
  if (strlen (file_name) > CONATFS_NAME_MAX)
    return CONATFS_NAME_INVALID;
  if (kind == CONATFS_NAME_CHANNEL)
    {
      if (file_name[0] != '@')
        return CONATFS_NAME_INVALID;
      body++;
    }
  if (conatfs_name_is_shortened (body))
    return is_short_form (body) ? CONATFS_NAME_SHORTENED : CONATFS_NAME_INVALID;

  decoded = unescape (body);
  if (decoded == NULL)
    return CONATFS_NAME_INVALID;
  again = conatfs_name_encode (kind, decoded);
  if (strcmp (again, file_name) != 0)
    return CONATFS_NAME_INVALID;
  *name = g_steal_pointer (&decoded);
  return CONATFS_NAME_DECODED;
}

gboolean
conatfs_name_matches (ConatfsNameKind kind, const char *name, const char *file_name)
{
  g_autofree char *encoded = conatfs_name_encode (kind, name);

  return strcmp (encoded, file_name) == 0;
}
