/* names.h — the one mapping between conat names and file names (DESIGN §1).
 *
 * A conat name (scope, store, key or channel) is any NUL-terminated string of
 * bytes.  Its file name escapes only what a file name cannot hold or what
 * would be ambiguous:
 *
 *   every kind   ""  -> "%00"     "/" -> "%2F"     "%" -> "%25"
 *                "." -> "%2E"     ".." -> "%2E%2E"
 *   store        a leading "@" -> "%40"  (scope dirs also hold "@channels")
 *   scope        a leading "." -> "%2E"  (so ".conatfs" stays the daemon's)
 *   channel      the file name is "@" + the name, with ":" -> "%3A"
 *
 * Everything else, spaces and UTF-8 included, stays as it is.  A file name
 * longer than CONATFS_NAME_MAX becomes a shortened name: the first bytes of
 * the long form (cut at a character boundary), "%~", and 16 hex digits of a
 * 64-bit hash of the whole name.  The shortened name cannot be decoded; a
 * directory resolves it by encoding its known names and comparing
 * (conatfs_name_matches).
 *
 * The encoding is one-to-one: decoding accepts only the exact form the
 * encoder produces, so "%41" (not "A") or "%2f" (not "%2F") are invalid.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define CONATFS_NAME_MAX 255        /* longest file name (NAME_MAX) */
#define CONATFS_NAME_SHORT_PREFIX 200 /* bytes of the long form kept when shortened */

typedef enum {
  CONATFS_NAME_SCOPE,
  CONATFS_NAME_STORE,
  CONATFS_NAME_KEY,
  CONATFS_NAME_CHANNEL,
} ConatfsNameKind;

typedef enum {
  CONATFS_NAME_DECODED,   /* *name holds the conat name */
  CONATFS_NAME_SHORTENED, /* a well-formed shortened name: match it against known names */
  CONATFS_NAME_INVALID,   /* not a file name the encoder produces: EINVAL */
} ConatfsNameResult;

/* The file name of NAME, at most CONATFS_NAME_MAX bytes; free with g_free. */
char *conatfs_name_encode (ConatfsNameKind kind, const char *name);

/* Parses FILE_NAME.  On CONATFS_NAME_DECODED, *NAME is set to a new string
 * (free with g_free); otherwise *NAME is NULL. */
ConatfsNameResult conatfs_name_decode (ConatfsNameKind kind, const char *file_name, char **name);

/* TRUE if NAME is shown as FILE_NAME (how a shortened name is resolved). */
gboolean conatfs_name_matches (ConatfsNameKind kind, const char *name, const char *file_name);

/* TRUE if FILE_NAME is a shortened name (contains "%~"). */
gboolean conatfs_name_is_shortened (const char *file_name);

G_END_DECLS
