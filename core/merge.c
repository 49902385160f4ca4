/* merge.c — the built-in 3-way merges: "lines" (diff3 in spirit) and
 * "json" (objects key by key).  Both return NULL, which keeps the local
 * value (local-first last write wins), for input they cannot merge. */
#include "conat.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* Past this many line comparisons the diff gives up and local wins. */
#define LINES_MAX_CELLS (16u * 1024 * 1024)

gboolean
conat_merge_lookup (const char *name, ConatMergeFunc *func)
{
  if (g_strcmp0 (name, "lww") == 0)
    *func = NULL;
  else if (g_strcmp0 (name, "lines") == 0)
    *func = conat_merge_lines;
  else if (g_strcmp0 (name, "json") == 0)
    *func = conat_merge_json;
  else
    return FALSE;
  return TRUE;
}

/* ----------------------------------------------------------------- lines */

/* A change one side made to PREV: lines [start, end) of PREV replaced by
 * lines [from, to) of that side. */
typedef struct {
  guint start, end;
  guint from, to;
} Hunk;

static gboolean
is_text (GBytes *value)
{
  gsize len = 0;
  const char *data = value ? g_bytes_get_data (value, &len) : "";

  return memchr (data, '\0', len) == NULL && g_utf8_validate (data, len, NULL);
}

/* Splits VALUE into lines that keep their '\n'; the strings are owned. */
static GPtrArray *
split_lines (GBytes *value)
{
  GPtrArray *lines = g_ptr_array_new_with_free_func (g_free);
  gsize len = 0;
  const char *data = value ? g_bytes_get_data (value, &len) : "";
  gsize start = 0;

  for (gsize i = 0; i < len; i++)
    if (data[i] == '\n')
      {
        g_ptr_array_add (lines, g_strndup (data + start, i + 1 - start));
        start = i + 1;
      }
  if (start < len)
    g_ptr_array_add (lines, g_strndup (data + start, len - start));
  return lines;
}

static gboolean
line_eq (GPtrArray *a, guint i, GPtrArray *b, guint j)
{
  return strcmp (a->pdata[i], b->pdata[j]) == 0;
}

/* The hunks that turn P into S (an LCS diff after trimming the common
 * prefix and suffix).  NULL if the inputs are too large to diff. */
static GArray *
diff_lines (GPtrArray *p, GPtrArray *s)
{
  GArray *hunks = g_array_new (FALSE, FALSE, sizeof (Hunk));
  guint lo = 0, hp = p->len, hs = s->len;
  guint n, m, i, j;
  g_autofree guint32 *lcs = NULL;

  while (lo < hp && lo < hs && line_eq (p, lo, s, lo))
    lo++;
  while (hp > lo && hs > lo && line_eq (p, hp - 1, s, hs - 1))
    hp--, hs--;
  n = hp - lo, m = hs - lo;
  if ((guint64) (n + 1) * (m + 1) > LINES_MAX_CELLS)
    {
      g_array_unref (hunks);
      return NULL;
    }

  /* lcs[i][j]: length of the LCS of p[lo+i..hp) and s[lo+j..hs). */
  lcs = g_new0 (guint32, (gsize) (n + 1) * (m + 1));
#define LCS(a, b) lcs[(gsize) (a) * (m + 1) + (b)]
  for (i = n; i-- > 0;)
    for (j = m; j-- > 0;)
      LCS (i, j) = line_eq (p, lo + i, s, lo + j) ? LCS (i + 1, j + 1) + 1
                   : MAX (LCS (i + 1, j), LCS (i, j + 1));

  i = 0, j = 0;
  while (i < n || j < m)
    {
      Hunk h = { lo + i, lo + i, lo + j, lo + j };
      while ((i < n || j < m) && !(i < n && j < m && line_eq (p, lo + i, s, lo + j)))
        {
          if (j < m && (i == n || LCS (i, j + 1) >= LCS (i + 1, j)))
            j++;
          else
            i++;
        }
      h.end = lo + i, h.to = lo + j;
      if (h.end > h.start || h.to > h.from)
        g_array_append_val (hunks, h);
      if (i < n && j < m)
        i++, j++;
    }
#undef LCS
  return hunks;
}

static gboolean
hunks_overlap (const Hunk *a, const Hunk *b)
{
  if (a->start == b->start)
    return TRUE;  /* both change (or insert at) the same place */
  if (a->start == a->end)
    return b->start < a->start && a->start < b->end;
  if (b->start == b->end)
    return a->start < b->start && b->start < a->end;
  return MAX (a->start, b->start) < MIN (a->end, b->end);
}

static gboolean
hunks_same (const Hunk *a, GPtrArray *la, const Hunk *b, GPtrArray *lb)
{
  if (a->start != b->start || a->end != b->end || a->to - a->from != b->to - b->from)
    return FALSE;
  for (guint k = 0; k < a->to - a->from; k++)
    if (!line_eq (la, a->from + k, lb, b->from + k))
      return FALSE;
  return TRUE;
}

static void
append_lines (GString *out, GPtrArray *lines, guint from, guint to)
{
  for (guint k = from; k < to; k++)
    g_string_append (out, lines->pdata[k]);
}

/* Marks remote hunks that clash with a local one: local wins there. */
static void
drop_conflicting (GArray *local, GArray *remote, GPtrArray *ll, GPtrArray *rl, gboolean *keep)
{
  for (guint r = 0; r < remote->len; r++)
    {
      Hunk *hr = &g_array_index (remote, Hunk, r);
      keep[r] = TRUE;
      for (guint l = 0; l < local->len && keep[r]; l++)
        {
          Hunk *hl = &g_array_index (local, Hunk, l);
          if (hunks_overlap (hl, hr) || hunks_same (hl, ll, hr, rl))
            keep[r] = FALSE;
        }
    }
}

/* Applies the local hunks and the kept remote hunks to PREV, in order. */
static GBytes *
apply_hunks (GPtrArray *pl, GArray *local, GPtrArray *ll, GArray *remote, GPtrArray *rl,
             const gboolean *keep)
{
  GString *out = g_string_new (NULL);
  guint pos = 0, l = 0, r = 0;

  while (l < local->len || r < remote->len)
    {
      Hunk *hl = l < local->len ? &g_array_index (local, Hunk, l) : NULL;
      Hunk *hr = NULL;
      while (r < remote->len && !keep[r])
        r++;
      hr = r < remote->len ? &g_array_index (remote, Hunk, r) : NULL;
      if (hl == NULL && hr == NULL)
        break;
      if (hr == NULL || (hl != NULL && hl->start <= hr->start))
        {
          append_lines (out, pl, pos, hl->start);
          append_lines (out, ll, hl->from, hl->to);
          pos = hl->end, l++;
        }
      else
        {
          append_lines (out, pl, pos, hr->start);
          append_lines (out, rl, hr->from, hr->to);
          pos = hr->end, r++;
        }
    }
  append_lines (out, pl, pos, pl->len);
  return g_string_free_to_bytes (out);
}

GBytes *
conat_merge_lines (const char *key, GBytes *local, GBytes *remote, GBytes *prev,
                   gpointer user_data)
{
  g_autoptr (GPtrArray) pl = NULL, ll = NULL, rl = NULL;
  g_autoptr (GArray) dl = NULL, dr = NULL;
  g_autofree gboolean *keep = NULL;

  if (local == NULL || remote == NULL || !is_text (local) || !is_text (remote)
      || !is_text (prev))
    return NULL;
  pl = split_lines (prev), ll = split_lines (local), rl = split_lines (remote);
  dl = diff_lines (pl, ll);
  dr = diff_lines (pl, rl);
  if (dl == NULL || dr == NULL)
    return NULL;
  keep = g_new0 (gboolean, dr->len + 1);
  drop_conflicting (dl, dr, ll, rl, keep);
  return apply_hunks (pl, dl, ll, dr, rl, keep);
}

/* ------------------------------------------------------------------ json */

/* The JSON object VALUE holds, or NULL (also for NULL or non-objects). */
static JsonNode *
parse_object (GBytes *value)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  gsize len = 0;
  const char *data = value ? g_bytes_get_data (value, &len) : NULL;
  JsonNode *root;

  if (data == NULL || !is_text (value) || !json_parser_load_from_data (parser, data, len, NULL))
    return NULL;
  root = json_parser_get_root (parser);
  return root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_copy (root) : NULL;
}

static gboolean
node_equal0 (JsonNode *a, JsonNode *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return json_node_equal (a, b);
}

static JsonObject *merge_objects (JsonObject *l, JsonObject *r, JsonObject *p);

/* The merged member: NULL means "absent". */
static JsonNode *
merge_member (JsonNode *l, JsonNode *r, JsonNode *p)
{
  if (node_equal0 (l, r) || node_equal0 (r, p))
    return l ? json_node_copy (l) : NULL;
  if (node_equal0 (l, p))
    return r ? json_node_copy (r) : NULL;
  if (l && r && JSON_NODE_HOLDS_OBJECT (l) && JSON_NODE_HOLDS_OBJECT (r))
    {
      g_autoptr (JsonObject) empty = json_object_new ();
      JsonObject *po = p && JSON_NODE_HOLDS_OBJECT (p) ? json_node_get_object (p) : empty;
      JsonNode *node = json_node_alloc ();
      json_node_take_object (node, merge_objects (json_node_get_object (l),
                                                  json_node_get_object (r), po));
      return node;
    }
  return l ? json_node_copy (l) : NULL;  /* both changed: local wins */
}

static void
merge_name (JsonObject *out, const char *name, JsonObject *l, JsonObject *r, JsonObject *p)
{
  JsonNode *node;

  if (json_object_has_member (out, name))
    return;
  node = merge_member (json_object_get_member (l, name), json_object_get_member (r, name),
                       json_object_get_member (p, name));
  if (node)
    json_object_set_member (out, name, node);
}

static JsonObject *
merge_objects (JsonObject *l, JsonObject *r, JsonObject *p)
{
  JsonObject *out = json_object_new ();
  JsonObject *sides[] = { l, r, p };

  for (guint s = 0; s < G_N_ELEMENTS (sides); s++)
    {
      g_autoptr (GList) names = json_object_get_members (sides[s]);
      for (GList *n = names; n != NULL; n = n->next)
        merge_name (out, n->data, l, r, p);
    }
  return out;
}

GBytes *
conat_merge_json (const char *key, GBytes *local, GBytes *remote, GBytes *prev,
                  gpointer user_data)
{
  g_autoptr (JsonNode) l = parse_object (local);
  g_autoptr (JsonNode) r = parse_object (remote);
  g_autoptr (JsonNode) p = prev ? parse_object (prev) : NULL;
  g_autoptr (JsonObject) empty = json_object_new ();
  g_autoptr (JsonNode) merged = NULL;
  g_autoptr (JsonGenerator) gen = NULL;
  gsize len = 0;
  const char *data;
  char *text;

  if (l == NULL || r == NULL || (prev != NULL && g_bytes_get_size (prev) > 0 && p == NULL))
    return NULL;
  merged = json_node_alloc ();
  json_node_take_object (merged, merge_objects (json_node_get_object (l),
                                                json_node_get_object (r),
                                                p ? json_node_get_object (p) : empty));
  gen = json_generator_new ();
  json_generator_set_root (gen, merged);
  text = json_generator_to_data (gen, &len);
  data = g_bytes_get_data (local, NULL);
  if (g_bytes_get_size (local) > 0 && data[g_bytes_get_size (local) - 1] == '\n')
    {
      text = g_realloc (text, len + 2);
      text[len++] = '\n';
      text[len] = '\0';
    }
  return g_bytes_new_take (text, len);
}
