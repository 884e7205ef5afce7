/* The shared helpers of the agent (service/util.c): errno errors, whole
 * writes, atomic replacement that never writes through a planted link,
 * durable removal, backoff. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *
read_file (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  char *data = NULL;

  g_assert_true (g_file_get_contents (path, &data, NULL, NULL));
  return data;
}

static void
test_error_from_errno_keeps_code_and_text (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_false (ota_set_error_from_errno (&error, ENOSPC, "cannot write %s", "FW_2.0.bin"));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_assert_cmpstr (error->message, ==, "cannot write FW_2.0.bin: No space left on device");
}

static void
test_replace_file_at_replaces_content_and_leaves_no_temp (void)
{
  g_autofree char *dir = g_dir_make_tmp ("util-XXXXXX", NULL);
  g_autofree char *content = NULL;
  g_autofree char *tmp = g_build_filename (dir, "state.json.tmp", NULL);
  g_autofree char *path = g_build_filename (dir, "state.json", NULL);
  g_autoptr (GError) error = NULL;
  int dir_fd = open (dir, O_RDONLY | O_DIRECTORY);
  struct stat st;

  g_assert_cmpint (dir_fd, >=, 0);
  g_assert_true (ota_replace_file_at (dir_fd, "state.json", "old", 3, 0640, (uid_t) -1, (gid_t) -1, &error));
  g_assert_true (ota_replace_file_at (dir_fd, "state.json", "new", 3, 0640, (uid_t) -1, (gid_t) -1, &error));
  g_assert_no_error (error);
  content = read_file (dir, "state.json");
  g_assert_cmpstr (content, ==, "new");
  g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));
  g_assert_cmpint (fstatat (dir_fd, "state.json", &st, 0), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0640);
  close (dir_fd);
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* Someone who may write the directory plants the temporary name as a hard
 * link to a file of theirs (or of a victim): it must be replaced, never
 * written through. */
static void
test_replace_file_at_never_writes_through_planted_link (void)
{
  g_autofree char *dir = g_dir_make_tmp ("util-XXXXXX", NULL);
  g_autofree char *victim = g_build_filename (dir, "victim", NULL);
  g_autofree char *planted = g_build_filename (dir, "record.json.tmp", NULL);
  g_autofree char *victim_after = NULL;
  g_autofree char *record = NULL;
  g_autofree char *record_path = g_build_filename (dir, "record.json", NULL);
  g_autoptr (GError) error = NULL;
  int dir_fd = open (dir, O_RDONLY | O_DIRECTORY);

  g_assert_true (g_file_set_contents (victim, "precious", -1, NULL));
  g_assert_cmpint (link (victim, planted), ==, 0);
  g_assert_true (ota_replace_file_at (dir_fd, "record.json", "{}", 2, 0644, (uid_t) -1, (gid_t) -1, &error));
  g_assert_no_error (error);
  victim_after = read_file (dir, "victim");
  record = read_file (dir, "record.json");
  g_assert_cmpstr (victim_after, ==, "precious");
  g_assert_cmpstr (record, ==, "{}");
  close (dir_fd);
  g_unlink (victim);
  g_unlink (record_path);
  g_rmdir (dir);
}

static void
test_replace_file_fails_cleanly_in_missing_dir (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_false (ota_replace_file ("/nonexistent-iv-ota-dir/outbox.json", "x", 1, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "/nonexistent-iv-ota-dir"));
}

static void
test_remove_file_absent_is_fine (void)
{
  g_autofree char *dir = g_dir_make_tmp ("util-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "rebooting.json", NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (path, "{}", -1, NULL));
  g_assert_true (ota_remove_file (path, &error));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_assert_true (ota_remove_file (path, &error));
  g_assert_no_error (error);
  g_rmdir (dir);
}

static void
test_backoff_doubles_up_to_cap (void)
{
  g_assert_cmpuint (ota_backoff_delay (0, 500, 60000), ==, 500);
  g_assert_cmpuint (ota_backoff_delay (1, 500, 60000), ==, 1000);
  g_assert_cmpuint (ota_backoff_delay (3, 500, 60000), ==, 4000);
  g_assert_cmpuint (ota_backoff_delay (7, 500, 60000), ==, 60000);
  /* A huge attempt count neither overflows nor passes the cap. */
  g_assert_cmpuint (ota_backoff_delay (G_MAXUINT, 500, 60000), ==, 60000);
  g_assert_cmpuint (ota_backoff_delay (5, 600, 600), ==, 600);
}

static void
test_jitter_stays_within_a_quarter (void)
{
  guint64 low = G_MAXUINT64, high = 0;

  for (int i = 0; i < 2000; i++) {
    guint64 d = ota_jitter (10000);
    low = MIN (low, d);
    high = MAX (high, d);
  }
  g_assert_cmpuint (low, >=, 7500);
  g_assert_cmpuint (high, <=, 12500);
  /* It does spread: devices cut off together come back apart. */
  g_assert_cmpuint (high - low, >, 2500);
}

/* Brackets inside strings (escaped quotes too) do not count; closing
 * brackets never go below zero; strict refuses ', / and # outside strings. */
static void
test_json_nesting_is_bounded (void)
{
  const char *deep = "[[[1]]]";
  const char *in_string = "[\"[[[\\\"[[\"]"; /* ["[[[\"[["] */
  const char *unbalanced = "]]]][[1]]";
  const char *comment = "[1] /* x */";
  const char *quoted = "{\"a\":\"'/#\"}";

  g_assert_true (ota_json_nesting_is_bounded (deep, strlen (deep), 3, FALSE));
  g_assert_false (ota_json_nesting_is_bounded (deep, strlen (deep), 2, FALSE));
  g_assert_true (ota_json_nesting_is_bounded (in_string, strlen (in_string), 1, TRUE));
  g_assert_true (ota_json_nesting_is_bounded (unbalanced, strlen (unbalanced), 2, FALSE));
  g_assert_false (ota_json_nesting_is_bounded (unbalanced, strlen (unbalanced), 1, FALSE));
  g_assert_true (ota_json_nesting_is_bounded (comment, strlen (comment), 1, FALSE));
  g_assert_false (ota_json_nesting_is_bounded (comment, strlen (comment), 1, TRUE));
  g_assert_true (ota_json_nesting_is_bounded (quoted, strlen (quoted), 1, TRUE));
  g_assert_true (ota_json_nesting_is_bounded (NULL, 0, 0, TRUE));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/util/error-from-errno/keeps-code-and-text", test_error_from_errno_keeps_code_and_text);
  g_test_add_func ("/util/replace-file/replaces-content-leaves-no-temp",
                   test_replace_file_at_replaces_content_and_leaves_no_temp);
  g_test_add_func ("/util/replace-file/never-writes-through-planted-link",
                   test_replace_file_at_never_writes_through_planted_link);
  g_test_add_func ("/util/replace-file/missing-dir-is-a-clear-error", test_replace_file_fails_cleanly_in_missing_dir);
  g_test_add_func ("/util/remove-file/absent-is-fine", test_remove_file_absent_is_fine);
  g_test_add_func ("/util/backoff/doubles-up-to-cap", test_backoff_doubles_up_to_cap);
  g_test_add_func ("/util/backoff/jitter-within-a-quarter", test_jitter_stays_within_a_quarter);
  g_test_add_func ("/util/json/nesting-is-bounded", test_json_nesting_is_bounded);
  return g_test_run ();
}
