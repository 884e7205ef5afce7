/* The persisted outbox: order, persistence across reopen, coalescing, bounds,
 * and recovery from a damaged file. */
#include "outbox.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>

typedef struct {
  char *dir;
  char *path;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp ("outbox-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
  f->path = g_build_filename (f->dir, "outbox.json", NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *corrupt = g_strconcat (f->path, ".corrupt", NULL);

  g_unlink (f->path);
  g_unlink (corrupt);
  g_rmdir (f->dir);
  g_free (f->path);
  g_free (f->dir);
}

static OtaOutbox *
open_outbox (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  OtaOutbox *outbox = ota_outbox_open (f->path, &error);

  g_assert_no_error (error);
  g_assert_nonnull (outbox);
  return outbox;
}

static void
push (OtaOutbox *outbox, const char *payload, const char *key)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (ota_outbox_push (outbox, payload, key, &error));
  g_assert_no_error (error);
}

static void
test_fifo_order_survives_reopen (Fixture *f, gconstpointer data)
{
  g_autoptr (OtaOutbox) outbox = open_outbox (f);
  g_autoptr (OtaOutbox) again = NULL;
  g_autoptr (GError) error = NULL;

  push (outbox, "burning", NULL);
  push (outbox, "done", NULL);
  push (outbox, "version", "v");
  g_assert_cmpstr (ota_outbox_peek (outbox), ==, "burning");
  g_clear_pointer (&outbox, ota_outbox_free);

  again = open_outbox (f);
  g_assert_cmpuint (ota_outbox_get_length (again), ==, 3);
  g_assert_cmpstr (ota_outbox_peek (again), ==, "burning");
  g_assert_true (ota_outbox_pop (again, &error));
  g_assert_cmpstr (ota_outbox_peek (again), ==, "done");
  g_assert_true (ota_outbox_pop (again, &error));
  g_assert_cmpstr (ota_outbox_peek (again), ==, "version");
  g_assert_true (ota_outbox_pop (again, &error));
  g_assert_null (ota_outbox_peek (again));
  g_assert_true (ota_outbox_pop (again, &error));
  g_assert_no_error (error);
}

static void
test_pop_is_persisted (Fixture *f, gconstpointer data)
{
  g_autoptr (OtaOutbox) outbox = open_outbox (f);
  g_autoptr (OtaOutbox) again = NULL;

  push (outbox, "a", NULL);
  push (outbox, "b", NULL);
  g_assert_true (ota_outbox_pop (outbox, NULL));
  g_clear_pointer (&outbox, ota_outbox_free);
  again = open_outbox (f);
  g_assert_cmpuint (ota_outbox_get_length (again), ==, 1);
  g_assert_cmpstr (ota_outbox_peek (again), ==, "b");
}

/* A report supersedes the queued ones of its key wherever they are (never
 * the head: it may be in flight) and goes at the tail; other entries keep
 * their order. */
static void
test_coalesce_supersedes_same_key (Fixture *f, gconstpointer data)
{
  g_autoptr (OtaOutbox) outbox = open_outbox (f);

  push (outbox, "v1", "version:");
  push (outbox, "v2", "version:");  /* head stays: in flight */
  g_assert_cmpuint (ota_outbox_get_length (outbox), ==, 2);
  push (outbox, "v3", "version:");  /* replaces v2 */
  g_assert_cmpuint (ota_outbox_get_length (outbox), ==, 2);
  push (outbox, "done", NULL);
  push (outbox, "v4", "version:");  /* replaces v3, after done */
  g_assert_cmpuint (ota_outbox_get_length (outbox), ==, 3);
  push (outbox, "m1", "version:mcu");  /* another key: appended */
  g_assert_cmpuint (ota_outbox_get_length (outbox), ==, 4);
  const char *expected[] = { "v1", "done", "v4", "m1" };
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++) {
    g_assert_cmpstr (ota_outbox_peek (outbox), ==, expected[i]);
    g_assert_true (ota_outbox_pop (outbox, NULL));
  }
}

/* The storm that lost reports: 500 refused offers of one module in a second,
 * each answered with a fail (and a version report), while another module's
 * terminal reports wait in the queue. Before, the outbox filled at 256 and
 * dropped them. Now every terminal report stays: the other module's burning
 * and done, the storm's last fail, the latest version of each module. */
static void
test_storm_keeps_terminal_reports (Fixture *f, gconstpointer data)
{
  g_autoptr (OtaOutbox) outbox = open_outbox (f);
  g_autoptr (GPtrArray) sent = g_ptr_array_new_with_free_func (g_free);

  push (outbox, "rv main 1.0", "report_version:");
  push (outbox, "burning main 2.0", NULL);
  for (int i = 0; i < 500; i++) {
    g_autofree char *fail = g_strdup_printf ("fail mcu %d", i);
    g_autofree char *version = g_strdup_printf ("rv mcu 1.%d", i % 2);
    push (outbox, fail, "fail:mcu");
    push (outbox, version, "report_version:mcu");
    if (i == 250)
      push (outbox, "done main 2.0", NULL);
  }
  /* Persisted as it is now. */
  g_clear_pointer (&outbox, ota_outbox_free);
  outbox = open_outbox (f);
  while (ota_outbox_peek (outbox) != NULL) {
    g_ptr_array_add (sent, g_strdup (ota_outbox_peek (outbox)));
    g_assert_true (ota_outbox_pop (outbox, NULL));
  }
  const char *expected[] = { "rv main 1.0", "burning main 2.0", "done main 2.0", "fail mcu 499", "rv mcu 1.1" };
  g_assert_cmpuint (sent->len, ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_cmpstr (g_ptr_array_index (sent, i), ==, expected[i]);
}

/* Only reports without end fill it: then the oldest after the head go. */
static void
test_bounded_keeps_head (Fixture *f, gconstpointer data)
{
  g_autoptr (OtaOutbox) outbox = open_outbox (f);

  for (int i = 0; i < OTA_OUTBOX_MAX_ENTRIES; i++) {
    g_autofree char *p = g_strdup_printf ("r%d", i);
    push (outbox, p, NULL);
  }
  g_test_expect_message ("iv-ota", G_LOG_LEVEL_WARNING, "outbox full*dropping r1");
  push (outbox, "last", NULL);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (ota_outbox_get_length (outbox), ==, OTA_OUTBOX_MAX_ENTRIES);
  g_assert_cmpstr (ota_outbox_peek (outbox), ==, "r0");
  g_assert_true (ota_outbox_pop (outbox, NULL));
  g_assert_cmpstr (ota_outbox_peek (outbox), ==, "r2");
}

static void
test_corrupt_file_quarantined (Fixture *f, gconstpointer data)
{
  const char *bad[] = { "{\"entries\":[{\"payload\":\"a\"}", "not json", "[]", "{\"entries\":[1]}",
                        "{\"entries\":[{\"payload\":5}]}", "" };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autofree char *corrupt = g_strconcat (f->path, ".corrupt", NULL);
    g_autoptr (OtaOutbox) outbox = NULL;

    g_assert_true (g_file_set_contents (f->path, bad[i], -1, NULL));
    g_test_expect_message ("iv-ota", G_LOG_LEVEL_WARNING, "*damaged*");
    outbox = open_outbox (f);
    g_test_assert_expected_messages ();
    g_assert_cmpuint (ota_outbox_get_length (outbox), ==, 0);
    g_assert_true (g_file_test (corrupt, G_FILE_TEST_EXISTS));
    /* Usable after recovery. */
    push (outbox, "x", NULL);
    g_assert_cmpstr (ota_outbox_peek (outbox), ==, "x");
    g_unlink (corrupt);
    g_unlink (f->path);
  }
}

static void
test_parse (void)
{
  g_autoptr (GPtrArray) entries = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  const char *good = "{\"entries\":[{\"key\":\"k\",\"payload\":\"p1\"},{\"payload\":\"p2\"}]}";

  g_assert_true (ota_outbox_parse (good, strlen (good), entries, keys, NULL));
  g_assert_cmpuint (entries->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (entries, 1), ==, "p2");
  g_assert_cmpstr (g_ptr_array_index (keys, 0), ==, "k");
  g_assert_cmpstr (g_ptr_array_index (keys, 1), ==, "");
}

/* Found with fuzz/fuzz-outbox on a hand-made input: json-glib recursed once
 * per '[' until the stack ran out. */
static void
test_parse_rejects_deep_nesting (void)
{
  g_autoptr (GPtrArray) entries = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  gsize length = 4 * 1024 * 1024;
  g_autofree char *deep = g_malloc (length);

  memset (deep, '[', length);
  g_assert_false (ota_outbox_parse (deep, length, entries, keys, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_cmpuint (entries->len, ==, 0);
}

/* The nesting check must not mistake brackets, quotes or comment marks inside payloads for damage. */
static void
test_payload_with_brackets_survives_reopen (Fixture *f, gconstpointer data)
{
  g_autofree char *brackets = g_strnfill (500, '[');
  g_autofree char *payload = g_strconcat ("it's /* a */ #b \"q\\\" {", brackets, NULL);

  {
    g_autoptr (OtaOutbox) outbox = open_outbox (f);
    push (outbox, payload, NULL);
  }
  {
    g_autoptr (OtaOutbox) outbox = open_outbox (f);
    g_assert_cmpuint (ota_outbox_get_length (outbox), ==, 1);
    g_assert_cmpstr (ota_outbox_peek (outbox), ==, payload);
  }
}

static void
test_unwritable_dir_keeps_entry_in_memory (Fixture *f, gconstpointer data)
{
  g_autoptr (OtaOutbox) outbox = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (f->dir, "missing", "outbox.json", NULL);

  outbox = ota_outbox_open (path, &error);
  g_assert_no_error (error);
  g_assert_false (ota_outbox_push (outbox, "done", NULL, &error));
  g_assert_nonnull (error);
  g_assert_cmpstr (ota_outbox_peek (outbox), ==, "done");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/outbox/fifo-order-survives-reopen", Fixture, NULL, fixture_setup, test_fifo_order_survives_reopen,
              fixture_teardown);
  g_test_add ("/outbox/pop-is-persisted", Fixture, NULL, fixture_setup, test_pop_is_persisted, fixture_teardown);
  g_test_add ("/outbox/coalesce-supersedes-same-key", Fixture, NULL, fixture_setup, test_coalesce_supersedes_same_key,
              fixture_teardown);
  g_test_add ("/outbox/storm-keeps-terminal-reports", Fixture, NULL, fixture_setup, test_storm_keeps_terminal_reports,
              fixture_teardown);
  g_test_add ("/outbox/bounded-keeps-head", Fixture, NULL, fixture_setup, test_bounded_keeps_head, fixture_teardown);
  g_test_add ("/outbox/corrupt-file-quarantined", Fixture, NULL, fixture_setup, test_corrupt_file_quarantined,
              fixture_teardown);
  g_test_add ("/outbox/unwritable-dir-keeps-entry", Fixture, NULL, fixture_setup,
              test_unwritable_dir_keeps_entry_in_memory, fixture_teardown);
  g_test_add_func ("/outbox/parse", test_parse);
  g_test_add_func ("/outbox/parse/deep-nesting-is-rejected-not-a-stack-overflow", test_parse_rejects_deep_nesting);
  g_test_add ("/outbox/payload-with-brackets-and-quotes-survives-reopen", Fixture, NULL, fixture_setup,
              test_payload_with_brackets_survives_reopen, fixture_teardown);
  return g_test_run ();
}
