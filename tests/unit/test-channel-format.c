/* test-channel-format.c — channel lines and channel file names (DESIGN §3,
 * fs/channel-format.c). */
#include "channel-format.h"

#include <string.h>

static void
assert_line (const char *message, gsize len, const char *line, gsize line_len)
{
  g_autoptr (GBytes) bytes = conatfs_channel_line_new ((const guint8 *) message, len);
  g_autoptr (GBytes) back = NULL;
  gsize size;
  const char *data = g_bytes_get_data (bytes, &size);

  g_assert_cmpmem (data, size, line, line_len);
  back = conatfs_channel_line_parse (data, size - 1);
  g_assert_nonnull (back);
  g_assert_cmpmem (g_bytes_get_data (back, NULL), g_bytes_get_size (back), message, len);
}

/* Literals may hold NUL bytes. */
#define ASSERT_LINE(message, line) \
  assert_line (message, sizeof message - 1, line, sizeof line - 1)

static void
test_line_escapes (void)
{
  ASSERT_LINE ("", "\n");
  ASSERT_LINE ("{\"x\":1}", "{\"x\":1}\n");
  ASSERT_LINE ("a\nb", "a\\nb\n");
  ASSERT_LINE ("a\\nb", "a\\\\nb\n");
  ASSERT_LINE ("\\", "\\\\\n");
  ASSERT_LINE ("\n\n", "\\n\\n\n");
  ASSERT_LINE ("tab\there \r caf\xc3\xa9", "tab\there \r caf\xc3\xa9\n");
  ASSERT_LINE ("nul\0byte", "nul\0byte\n");
}

static void
test_line_parse_rejects (void)
{
  g_assert_null (conatfs_channel_line_parse ("a\\", 2));
  g_assert_null (conatfs_channel_line_parse ("a\\tb", 4));
  g_assert_null (conatfs_channel_line_parse ("a\nb", 3));
}

static void
assert_name (const char *file_name, const char *name, const char *path)
{
  g_autofree char *parsed_name = NULL;
  g_autofree char *parsed_path = NULL;
  g_autofree char *again = NULL;

  g_assert_true (conatfs_channel_name_parse (file_name, &parsed_name, &parsed_path));
  g_assert_cmpstr (parsed_name, ==, name);
  g_assert_cmpstr (parsed_path, ==, path);
  again = conatfs_channel_file_name (name, path);
  g_assert_cmpstr (again, ==, file_name);
}

static void
assert_bad_name (const char *file_name)
{
  g_autofree char *name = NULL;
  g_autofree char *path = NULL;

  g_assert_false (conatfs_channel_name_parse (file_name, &name, &path));
  g_assert_null (name);
  g_assert_null (path);
}

static void
test_names (void)
{
  g_autofree char *long_name = g_strnfill (300, 'x');
  g_autofree char *long_file_name = g_strconcat ("@", long_name, NULL);

  assert_name ("@chat", "chat", NULL);
  assert_name ("@cursors:doc%2Fa.tex", "cursors", "doc/a.tex");
  assert_name ("@a%3Ab:c:d", "a:b", "c:d");
  assert_name ("@cursors:%00", "cursors", "");
  assert_name ("@x:%2E%2E", "x", "..");
  assert_name ("@%00", "", NULL);
  assert_bad_name ("chat");
  assert_bad_name ("@a:b/c");
  assert_bad_name ("@a:");
  assert_bad_name ("@a%zz");
  assert_bad_name ("@a:%41");
  assert_bad_name ("@abc%~0123456789abcdef");
  assert_bad_name (long_file_name);
  g_assert_null (conatfs_channel_file_name (long_name, NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/channel-format/line-escapes", test_line_escapes);
  g_test_add_func ("/channel-format/line-parse-rejects", test_line_parse_rejects);
  g_test_add_func ("/channel-format/names", test_names);
  return g_test_run ();
}
