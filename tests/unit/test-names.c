/* test-names.c — the name encoding of DESIGN §1 (fs/names.c). */
#include "names.h"

#include <string.h>

static void
assert_encodes (ConatfsNameKind kind, const char *name, const char *file_name)
{
  g_autofree char *encoded = conatfs_name_encode (kind, name);
  g_autofree char *decoded = NULL;

  g_assert_cmpstr (encoded, ==, file_name);
  g_assert_cmpint (conatfs_name_decode (kind, file_name, &decoded), ==, CONATFS_NAME_DECODED);
  g_assert_cmpstr (decoded, ==, name);
}

static void
assert_invalid (ConatfsNameKind kind, const char *file_name)
{
  g_autofree char *decoded = NULL;

  g_assert_cmpint (conatfs_name_decode (kind, file_name, &decoded), ==, CONATFS_NAME_INVALID);
  g_assert_null (decoded);
}

static void
test_plain (void)
{
  assert_encodes (CONATFS_NAME_KEY, "theme", "theme");
  assert_encodes (CONATFS_NAME_KEY, "with space", "with space");
  assert_encodes (CONATFS_NAME_KEY, "caf\xc3\xa9 \xe2\x98\x83", "caf\xc3\xa9 \xe2\x98\x83");
  assert_encodes (CONATFS_NAME_KEY, "a:b@c~#", "a:b@c~#");
  assert_encodes (CONATFS_NAME_SCOPE, "project-1", "project-1");
  assert_encodes (CONATFS_NAME_STORE, "settings", "settings");
}

static void
test_escapes (void)
{
  assert_encodes (CONATFS_NAME_KEY, "a/b", "a%2Fb");
  assert_encodes (CONATFS_NAME_KEY, "100%", "100%25");
  assert_encodes (CONATFS_NAME_KEY, "/%/", "%2F%25%2F");
  assert_encodes (CONATFS_NAME_KEY, "%2F", "%252F");
  assert_encodes (CONATFS_NAME_STORE, "x/y", "x%2Fy");
  assert_encodes (CONATFS_NAME_SCOPE, "x%y", "x%25y");
}

static void
test_empty (void)
{
  assert_encodes (CONATFS_NAME_KEY, "", "%00");
  assert_encodes (CONATFS_NAME_STORE, "", "%00");
  assert_encodes (CONATFS_NAME_SCOPE, "", "%00");
  assert_encodes (CONATFS_NAME_CHANNEL, "", "@%00");
}

static void
test_dots (void)
{
  assert_encodes (CONATFS_NAME_KEY, ".", "%2E");
  assert_encodes (CONATFS_NAME_KEY, "..", "%2E%2E");
  assert_encodes (CONATFS_NAME_KEY, "...", "...");
  assert_encodes (CONATFS_NAME_KEY, ".hidden", ".hidden");
  assert_encodes (CONATFS_NAME_STORE, "..", "%2E%2E");
  assert_encodes (CONATFS_NAME_SCOPE, ".", "%2E");
  assert_encodes (CONATFS_NAME_SCOPE, "..", "%2E%2E");
}

static void
test_store_at (void)
{
  assert_encodes (CONATFS_NAME_STORE, "@x", "%40x");
  assert_encodes (CONATFS_NAME_STORE, "a@x", "a@x");
  assert_encodes (CONATFS_NAME_KEY, "@x", "@x");
  assert_encodes (CONATFS_NAME_SCOPE, "@x", "@x");
  assert_invalid (CONATFS_NAME_STORE, "@x");
  assert_invalid (CONATFS_NAME_KEY, "%40x");
}

static void
test_scope_dot (void)
{
  assert_encodes (CONATFS_NAME_SCOPE, ".conatfs", "%2Econatfs");
  assert_encodes (CONATFS_NAME_SCOPE, "a.b", "a.b");
  assert_encodes (CONATFS_NAME_STORE, ".conatfs", ".conatfs");
  assert_invalid (CONATFS_NAME_SCOPE, ".conatfs");
  assert_invalid (CONATFS_NAME_SCOPE, "%2E.");
}

static void
test_channel (void)
{
  assert_encodes (CONATFS_NAME_CHANNEL, "cursors", "@cursors");
  assert_encodes (CONATFS_NAME_CHANNEL, "a:b", "@a%3Ab");
  assert_encodes (CONATFS_NAME_CHANNEL, "a/b%", "@a%2Fb%25");
  assert_encodes (CONATFS_NAME_CHANNEL, ".", "@.");
  assert_encodes (CONATFS_NAME_CHANNEL, "@", "@@");
  assert_invalid (CONATFS_NAME_CHANNEL, "cursors");
  assert_invalid (CONATFS_NAME_CHANNEL, "@a:b");
  assert_encodes (CONATFS_NAME_KEY, "a:b", "a:b");
}

static void
test_invalid (void)
{
  assert_invalid (CONATFS_NAME_KEY, "%");
  assert_invalid (CONATFS_NAME_KEY, "50%");
  assert_invalid (CONATFS_NAME_KEY, "a%zz");
  assert_invalid (CONATFS_NAME_KEY, "a%2");
  assert_invalid (CONATFS_NAME_KEY, "a%00");
  assert_invalid (CONATFS_NAME_KEY, "%00%00");
  assert_invalid (CONATFS_NAME_KEY, "a%~");
  assert_invalid (CONATFS_NAME_KEY, "a%~0123456789abcdeg");
  assert_invalid (CONATFS_NAME_KEY, "a%~0123456789ABCDEF");
}

static void
test_not_canonical (void)
{
  assert_invalid (CONATFS_NAME_KEY, "%41");   /* "A" is written as is */
  assert_invalid (CONATFS_NAME_KEY, "a%2fb"); /* lower-case hex */
  assert_invalid (CONATFS_NAME_KEY, "%20");   /* spaces are not escaped */
  assert_invalid (CONATFS_NAME_KEY, "%2E.");  /* ".." is "%2E%2E" */
  assert_invalid (CONATFS_NAME_KEY, "%2Ex");  /* ".x" is written as is */
  assert_invalid (CONATFS_NAME_STORE, "%3A");
}

static void
test_long (void)
{
  g_autofree char *name = g_strnfill (300, 'k');
  g_autofree char *encoded = conatfs_name_encode (CONATFS_NAME_KEY, name);
  g_autofree char *decoded = NULL;
  g_autofree char *other = g_strdup (name);

  g_assert_cmpuint (strlen (encoded), <=, CONATFS_NAME_MAX);
  g_assert_true (g_str_has_prefix (encoded, "kkkk"));
  g_assert_true (conatfs_name_is_shortened (encoded));
  g_assert_cmpint (conatfs_name_decode (CONATFS_NAME_KEY, encoded, &decoded), ==,
                   CONATFS_NAME_SHORTENED);
  g_assert_null (decoded);
  g_assert_true (conatfs_name_matches (CONATFS_NAME_KEY, name, encoded));
  other[299] = 'x';
  g_assert_false (conatfs_name_matches (CONATFS_NAME_KEY, other, encoded));

  /* The longest name that is not shortened. */
  name[255] = '\0';
  assert_encodes (CONATFS_NAME_KEY, name, name);
}

static void
test_long_boundaries (void)
{
  g_autoptr (GString) name = g_string_new (NULL);
  g_autofree char *encoded = NULL;
  g_autofree char *prefix = NULL;
  g_autofree char *decoded = NULL;

  /* A long name of 2-byte characters and escapes is never cut inside one. */
  for (int i = 0; i < 60; i++)
    g_string_append (name, "\xc3\xa9/");
  encoded = conatfs_name_encode (CONATFS_NAME_KEY, name->str);
  g_assert_cmpuint (strlen (encoded), <=, CONATFS_NAME_MAX);
  prefix = g_strndup (encoded, strstr (encoded, "%~") - encoded);
  g_assert_true (g_utf8_validate (prefix, -1, NULL));
  g_assert_cmpint (conatfs_name_decode (CONATFS_NAME_KEY, prefix, &decoded), ==,
                   CONATFS_NAME_DECODED);

  g_clear_pointer (&encoded, g_free);
  g_string_assign (name, "");
  for (int i = 0; i < 300; i++)
    g_string_append_c (name, ':');
  encoded = conatfs_name_encode (CONATFS_NAME_CHANNEL, name->str);
  g_assert_true (g_str_has_prefix (encoded, "@%3A%3A"));
  g_assert_cmpuint (strlen (encoded), <=, CONATFS_NAME_MAX);
  g_assert_true (conatfs_name_matches (CONATFS_NAME_CHANNEL, name->str, encoded));
}

static void
test_round_trip_bytes (void)
{
  /* Every byte value, alone and in the middle of a name, round-trips. */
  for (int c = 1; c < 256; c++)
    for (ConatfsNameKind kind = CONATFS_NAME_SCOPE; kind <= CONATFS_NAME_CHANNEL; kind++)
      {
        char alone[2] = { (char) c, '\0' };
        char inside[4] = { 'a', (char) c, 'b', '\0' };
        const char *names[] = { alone, inside };

        for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
          {
            g_autofree char *encoded = conatfs_name_encode (kind, names[i]);
            g_autofree char *decoded = NULL;

            g_assert_null (strchr (encoded, '/'));
            g_assert_cmpint (conatfs_name_decode (kind, encoded, &decoded), ==,
                             CONATFS_NAME_DECODED);
            g_assert_cmpstr (decoded, ==, names[i]);
          }
      }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/names/plain", test_plain);
  g_test_add_func ("/names/escapes", test_escapes);
  g_test_add_func ("/names/empty", test_empty);
  g_test_add_func ("/names/dots", test_dots);
  g_test_add_func ("/names/store-at", test_store_at);
  g_test_add_func ("/names/scope-dot", test_scope_dot);
  g_test_add_func ("/names/channel", test_channel);
  g_test_add_func ("/names/invalid", test_invalid);
  g_test_add_func ("/names/not-canonical", test_not_canonical);
  g_test_add_func ("/names/long", test_long);
  g_test_add_func ("/names/long-boundaries", test_long_boundaries);
  g_test_add_func ("/names/round-trip-bytes", test_round_trip_bytes);
  return g_test_run ();
}
