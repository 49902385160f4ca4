/* test-merge.c — the built-in "lines" and "json" 3-way merges. */
#include "conat.h"

#include <string.h>

static GBytes *
b (const char *s)
{
  return s ? g_bytes_new (s, strlen (s)) : NULL;
}

/* Runs FUNC on strings; returns the merged string or NULL (keep local). */
static char *
merge (ConatMergeFunc func, const char *local, const char *remote, const char *prev)
{
  g_autoptr (GBytes) l = b (local), r = b (remote), p = b (prev);
  g_autoptr (GBytes) out = func ("k", l, r, p, NULL);

  return out ? g_strndup (g_bytes_get_data (out, NULL), g_bytes_get_size (out)) : NULL;
}

#define ASSERT_MERGE(func, local, remote, prev, expected)                  \
  G_STMT_START {                                                           \
    g_autofree char *got_ = merge (func, local, remote, prev);             \
    g_assert_cmpstr (got_, ==, expected);                                  \
  } G_STMT_END

static void
test_lookup (void)
{
  ConatMergeFunc f = conat_merge_lines;

  g_assert_true (conat_merge_lookup ("lww", &f));
  g_assert_null (f);
  g_assert_true (conat_merge_lookup ("lines", &f));
  g_assert_true (f == conat_merge_lines);
  g_assert_true (conat_merge_lookup ("json", &f));
  g_assert_true (f == conat_merge_json);
  g_assert_false (conat_merge_lookup ("diff3", &f));
}

static void
test_lines_different_lines (void)
{
  ASSERT_MERGE (conat_merge_lines, "one\nTWO\nthree\n", "one\ntwo\nTHREE\n",
                "one\ntwo\nthree\n", "one\nTWO\nTHREE\n");
  /* insertions at both ends, and a deletion in the middle */
  ASSERT_MERGE (conat_merge_lines, "zero\na\nb\nc\n", "a\nc\nd\n", "a\nb\nc\n",
                "zero\na\nc\nd\n");
}

static void
test_lines_overlap_local_wins (void)
{
  ASSERT_MERGE (conat_merge_lines, "a\nLOCAL\nc\n", "a\nREMOTE\nc\n", "a\nb\nc\n",
                "a\nLOCAL\nc\n");
  /* the conat test's strings: one line changed on both sides */
  ASSERT_MERGE (conat_merge_lines, "LOVE cocalc", "cocalc!", "cocalc", "LOVE cocalc");
}

static void
test_lines_identical_edits (void)
{
  ASSERT_MERGE (conat_merge_lines, "a\nX\nc\n", "a\nX\nc\n", "a\nb\nc\n", "a\nX\nc\n");
  ASSERT_MERGE (conat_merge_lines, "a\nX\nc\nd\n", "a\nX\nc\n", "a\nb\nc\n", "a\nX\nc\nd\n");
}

static void
test_lines_empty_values (void)
{
  ASSERT_MERGE (conat_merge_lines, "", "", "", "");
  ASSERT_MERGE (conat_merge_lines, "new\n", "", "", "new\n");
  ASSERT_MERGE (conat_merge_lines, "", "a\nb\n", "a\nb\n", "");
  /* no common ancestor: both inserted at the start; local wins */
  ASSERT_MERGE (conat_merge_lines, "l\n", "r\n", NULL, "l\n");
}

static void
test_lines_binary_falls_back (void)
{
  static const guint8 bin[] = { 'a', 0, 'b', '\n' };
  g_autoptr (GBytes) l = g_bytes_new (bin, sizeof bin);
  g_autoptr (GBytes) r = b ("a\n"), p = b ("b\n");
  g_autoptr (GBytes) bad = g_bytes_new ("\xff\xfe\n", 3);

  g_assert_null (conat_merge_lines ("k", l, r, p, NULL));
  g_assert_null (conat_merge_lines ("k", r, l, p, NULL));
  g_assert_null (conat_merge_lines ("k", r, bad, p, NULL));
  g_assert_null (conat_merge_lines ("k", r, NULL, p, NULL));  /* deleted remotely */
}

static void
test_json_different_fields (void)
{
  ASSERT_MERGE (conat_merge_json, "{\"a\":1,\"b\":2}", "{\"a\":0,\"b\":3}", "{\"a\":0,\"b\":2}",
                "{\"a\":1,\"b\":3}");
  /* an added field on each side, and a removal */
  ASSERT_MERGE (conat_merge_json, "{\"a\":0,\"x\":true}", "{\"y\":[1,2]}", "{\"a\":0,\"z\":1}",
                "{\"x\":true,\"y\":[1,2]}");
}

static void
test_json_nested_and_conflict (void)
{
  ASSERT_MERGE (conat_merge_json, "{\"o\":{\"a\":1,\"b\":0}}", "{\"o\":{\"a\":0,\"b\":2}}",
                "{\"o\":{\"a\":0,\"b\":0}}", "{\"o\":{\"a\":1,\"b\":2}}");
  ASSERT_MERGE (conat_merge_json, "{\"a\":\"local\"}", "{\"a\":\"remote\"}", "{\"a\":\"base\"}",
                "{\"a\":\"local\"}");
  /* identical edits on both sides */
  ASSERT_MERGE (conat_merge_json, "{\"a\":5}", "{\"a\":5}", "{\"a\":1}", "{\"a\":5}");
  /* the conat test: {...remote, ...local} without a common ancestor */
  ASSERT_MERGE (conat_merge_json, "{\"a\":5,\"b\":15,\"c\":12}", "{\"a\":5,\"b\":7,\"d\":3}",
                NULL, "{\"a\":5,\"b\":15,\"c\":12,\"d\":3}");
}

static void
test_json_keeps_trailing_newline (void)
{
  ASSERT_MERGE (conat_merge_json, "{\"a\":1}\n", "{\"b\":2}\n", "{}\n", "{\"a\":1,\"b\":2}\n");
}

static void
test_json_falls_back (void)
{
  g_autoptr (GBytes) bin = g_bytes_new ("{\"a\":\0}", 7);
  g_autoptr (GBytes) obj = b ("{\"a\":1}");

  ASSERT_MERGE (conat_merge_json, "[1,2]", "{\"a\":1}", "{}", NULL);
  ASSERT_MERGE (conat_merge_json, "{\"a\":1}", "not json", "{}", NULL);
  ASSERT_MERGE (conat_merge_json, "{\"a\":1}", "{\"a\":2}", "42", NULL);
  ASSERT_MERGE (conat_merge_json, "", "{\"a\":2}", "{}", NULL);
  g_assert_null (conat_merge_json ("k", bin, obj, obj, NULL));
  g_assert_null (conat_merge_json ("k", obj, NULL, obj, NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/merge/lookup", test_lookup);
  g_test_add_func ("/merge/lines/different-lines", test_lines_different_lines);
  g_test_add_func ("/merge/lines/overlap-local-wins", test_lines_overlap_local_wins);
  g_test_add_func ("/merge/lines/identical-edits", test_lines_identical_edits);
  g_test_add_func ("/merge/lines/empty-values", test_lines_empty_values);
  g_test_add_func ("/merge/lines/binary-falls-back", test_lines_binary_falls_back);
  g_test_add_func ("/merge/json/different-fields", test_json_different_fields);
  g_test_add_func ("/merge/json/nested-and-conflict", test_json_nested_and_conflict);
  g_test_add_func ("/merge/json/keeps-trailing-newline", test_json_keeps_trailing_newline);
  g_test_add_func ("/merge/json/falls-back", test_json_falls_back);
  return g_test_run ();
}
