/* channel-format.c — channel lines and channel file names; the rules are in
 * channel-format.h. */
#include "channel-format.h"

#include <string.h>

#include "names.h"

GBytes *
conatfs_channel_line_new (const guint8 *message, gsize len)
{
  gsize extra = 1;
  guint8 *line, *out;

  if (len == 0 || (memchr (message, '\n', len) == NULL && memchr (message, '\\', len) == NULL))
    {
      line = g_malloc (len + 1); /* the usual line: nothing to escape */
      if (len > 0)
        memcpy (line, message, len);
      line[len] = '\n';
      return g_bytes_new_take (line, len + 1);
    }
  for (gsize i = 0; i < len; i++)
    if (message[i] == '\\' || message[i] == '\n')
      extra++;
  out = line = g_malloc (len + extra);
  for (gsize i = 0; i < len; i++)
    {
      switch (message[i])
        {
        case '\\':
          *out++ = '\\';
          *out++ = '\\';
          break;
        case '\n':
          *out++ = '\\';
          *out++ = 'n';
          break;
        default:
          *out++ = message[i];
        }
    }
  *out = '\n';
  return g_bytes_new_take (line, len + extra);
}

GBytes *
conatfs_channel_line_parse (const char *line, gsize len)
{
  g_autoptr (GByteArray) message = g_byte_array_sized_new (len);

  for (gsize i = 0; i < len; i++)
    {
      guint8 c = line[i];

      if (c == '\n')
        return NULL;
      if (c == '\\')
        {
          if (i + 1 == len || (line[i + 1] != '\\' && line[i + 1] != 'n'))
            return NULL;
          c = line[++i] == 'n' ? '\n' : '\\';
        }
      g_byte_array_append (message, &c, 1);
    }
  return g_byte_array_free_to_bytes (g_steal_pointer (&message));
}

gboolean
conatfs_channel_name_parse (const char *file_name, char **name, char **path)
{
  const char *colon = strchr (file_name, ':');
  g_autofree char *name_part = colon ? g_strndup (file_name, colon - file_name)
                                     : g_strdup (file_name);
  g_autofree char *decoded_name = NULL;
  g_autofree char *decoded_path = NULL;

  *name = *path = NULL;
  if (strlen (file_name) > CONATFS_NAME_MAX)
    return FALSE;
  if (conatfs_name_decode (CONATFS_NAME_CHANNEL, name_part, &decoded_name)
      != CONATFS_NAME_DECODED)
    return FALSE;
  if (colon != NULL
      && conatfs_name_decode (CONATFS_NAME_KEY, colon + 1, &decoded_path) != CONATFS_NAME_DECODED)
    return FALSE;
  *name = g_steal_pointer (&decoded_name);
  *path = g_steal_pointer (&decoded_path);
  return TRUE;
}

char *
conatfs_channel_file_name (const char *name, const char *path)
{
  g_autofree char *name_part = conatfs_name_encode (CONATFS_NAME_CHANNEL, name);
  g_autofree char *path_part = path ? conatfs_name_encode (CONATFS_NAME_KEY, path) : NULL;
  char *file_name;

  if (conatfs_name_is_shortened (name_part)
      || (path_part != NULL && conatfs_name_is_shortened (path_part)))
    return NULL;
  file_name = path_part ? g_strconcat (name_part, ":", path_part, NULL) : g_strdup (name_part);
  if (strlen (file_name) > CONATFS_NAME_MAX)
    g_clear_pointer (&file_name, g_free);
  return file_name;
}
