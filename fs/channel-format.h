/* channel-format.h — what a channel file's bytes and names look like
 * (DESIGN §1, §3); pure functions, tested by tests/unit/test-channel-format.c.
 *
 * Lines.  Each message received is one line of the file: the message's
 * bytes with "\" written "\\" and a newline written "\n" (two characters),
 * then a newline.  So every line is exactly one message, and no other byte
 * is changed.  Lines written to the file are published as they are: no
 * unescaping (a JSON line keeps its own "\n" and "\\" escapes).
 *
 * Names.  "@" + NAME is the channel NAME; "@" + NAME + ":" + PATH is the
 * channel NAME scoped to the file path PATH.  NAME is encoded as a channel
 * name (names.h: its ":" is "%3A"), PATH as a key name ("/" is "%2F"), so
 * the first ":" of the file name separates them.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The line that shows MESSAGE (LEN bytes), escaped, with its newline. */
GBytes *conatfs_channel_line_new (const guint8 *message, gsize len);

/* The message a line shows (LINE without its newline, LEN bytes):
 * the inverse of conatfs_channel_line_new; NULL if LINE is not one it makes. */
GBytes *conatfs_channel_line_parse (const char *line, gsize len);

/* Parses a channel file name.  TRUE with *NAME and *PATH set (free with
 * g_free; *PATH is NULL for a channel with no file path); FALSE if FILE_NAME
 * is not one conatfs_channel_file_name() makes (a shortened name included). */
gboolean conatfs_channel_name_parse (const char *file_name, char **name, char **path);

/* The file name of the channel NAME scoped to PATH (NULL: none); NULL if it
 * would be longer than a file name may be. */
char *conatfs_channel_file_name (const char *name, const char *path);

G_END_DECLS
