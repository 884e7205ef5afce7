/* The agent's small persisted facts (service/state-store.c): the reboot marker
 * read back after a reboot, damaged or not. */
#include "state-store.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaRebootMarker, ota_reboot_marker_clear)

static gboolean
parse (const char *json, OtaRebootMarker *marker, GError **error)
{
  return ota_reboot_marker_parse (json, strlen (json), marker, error);
}

static void
test_marker_save_load_round_trip (void)
{
  g_autofree char *dir = g_dir_make_tmp ("state-store-XXXXXX", NULL);
  OtaRebootMarker saved = { .target_version = "0.2", .task_id = "42", .task_id_is_number = TRUE };
  g_auto (OtaRebootMarker) loaded = { 0 };
  g_autoptr (GError) error = NULL;

  g_assert_nonnull (dir);
  g_assert_true (ota_reboot_marker_save (dir, "mcu", &saved, &error));
  g_assert_no_error (error);
  g_assert_true (ota_reboot_marker_load (dir, "mcu", &loaded, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (loaded.target_version, ==, "0.2");
  g_assert_cmpstr (loaded.task_id, ==, "42");
  g_assert_true (loaded.task_id_is_number);
  g_assert_true (ota_reboot_marker_delete (dir, "mcu", &error));
  g_assert_no_error (error);
  g_assert_false (ota_reboot_marker_load (dir, "mcu", &loaded, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* Found by fuzz/fuzz-reboot-marker: an empty file has no JSON root node, and
 * asking its type was a critical (fatal under G_DEBUG=fatal-criticals). */
static void
test_marker_empty_file_is_invalid_data (void)
{
  const char *empty[] = { "", " \n\t", "\n" };

  for (gsize i = 0; i < G_N_ELEMENTS (empty); i++) {
    g_auto (OtaRebootMarker) marker = { 0 };
    g_autoptr (GError) error = NULL;

    g_assert_false (parse (empty[i], &marker, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_null (marker.target_version);
  }
}

/* Seen while writing fuzz/fuzz-reboot-marker: json_object_get_boolean_member_with_default()
 * is a critical on an object or array member. */
static void
test_marker_non_boolean_task_id_is_number_means_string (void)
{
  const char *members[] = { "[]", "{}", "\"yes\"", "1", "null" };

  for (gsize i = 0; i < G_N_ELEMENTS (members); i++) {
    g_autofree char *json = g_strdup_printf (
        "{\"target_version\":\"0.2\",\"task_id\":\"7\",\"task_id_is_number\":%s}", members[i]);
    g_auto (OtaRebootMarker) marker = { 0 };
    g_autoptr (GError) error = NULL;

    g_assert_true (parse (json, &marker, &error));
    g_assert_no_error (error);
    g_assert_cmpstr (marker.task_id, ==, "7");
    g_assert_false (marker.task_id_is_number);
  }
}

static void
test_marker_invalid_is_rejected (void)
{
  const char *bad[] = {
    "[\"target_version\",\"0.2\"]",
    "{\"target_version\":\"..\"}",
    "{\"target_version\":2}",
    ("{\"target_version\":\"0.2\",\"task_id\":\"" /* 65 characters */
     "12345678901234567890123456789012345678901234567890123456789012345\"}"),
  };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_auto (OtaRebootMarker) marker = { 0 };
    g_autoptr (GError) error = NULL;

    g_assert_false (parse (bad[i], &marker, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  }
}

/* ---- the cycle record ---- */

static void
test_cycle_save_load_round_trip (void)
{
  g_autofree char *dir = g_dir_make_tmp ("state-store-XXXXXX", NULL);
  g_autofree char *file = g_build_filename (dir, "cycle_mcu.json", NULL);
  OtaCycleRecord saved = {
    .phase = OTA_CYCLE_PHASE_BURNING,
    .target_version = "2.0",
    .md5sum = "0123456789abcdef0123456789abcdef",
    .file_size = 5000000000,
    .path = "/data/fw/FW_mcu_2.0.bin",
    .task_id = "T1",
    .owner = ":1.42",
    .boot_id = "b00t",
  };
  g_auto (OtaCycleRecord) loaded = { 0 };
  g_autoptr (GError) error = NULL;

  g_assert_true (ota_cycle_record_save (dir, "mcu", &saved, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (file, G_FILE_TEST_IS_REGULAR));
  g_assert_true (ota_cycle_record_load (dir, "mcu", &loaded, &error));
  g_assert_no_error (error);
  g_assert_cmpint (loaded.phase, ==, OTA_CYCLE_PHASE_BURNING);
  g_assert_cmpstr (loaded.target_version, ==, "2.0");
  g_assert_cmpstr (loaded.md5sum, ==, saved.md5sum);
  g_assert_cmpuint (loaded.file_size, ==, 5000000000);
  g_assert_cmpstr (loaded.path, ==, saved.path);
  g_assert_cmpstr (loaded.task_id, ==, "T1");
  g_assert_false (loaded.task_id_is_number);
  g_assert_cmpstr (loaded.owner, ==, ":1.42");
  g_assert_cmpstr (loaded.boot_id, ==, "b00t");
  g_assert_true (ota_cycle_record_delete (dir, "mcu", &error));
  g_assert_true (ota_cycle_record_delete (dir, "mcu", &error));
  g_assert_no_error (error);
  ota_cycle_record_clear (&loaded);
  g_assert_false (ota_cycle_record_load (dir, "mcu", &loaded, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_cycle_invalid_is_rejected (void)
{
  const char *bad[] = {
    "",
    "{}",
    "{\"phase\":\"burning\",\"target_version\":\"2.0\",\"md5sum\":\"0123456789abcdef0123456789abcdef\","
    "\"file_size\":10}",
    "{\"phase\":\"flashing\",\"target_version\":\"2.0\",\"md5sum\":\"0123456789abcdef0123456789abcdef\","
    "\"file_size\":10,\"path\":\"/a/b\"}",
    "{\"phase\":\"ready\",\"target_version\":\"2.0\",\"md5sum\":\"0123\",\"file_size\":10,\"path\":\"/a/b\"}",
    "{\"phase\":\"ready\",\"target_version\":\"2.0\",\"md5sum\":\"0123456789abcdef0123456789abcdef\","
    "\"file_size\":0,\"path\":\"/a/b\"}",
    "{\"phase\":\"ready\",\"target_version\":\"2.0\",\"md5sum\":\"0123456789abcdef0123456789abcdef\","
    "\"file_size\":10,\"path\":\"relative/b\"}",
    "{\"phase\":\"ready\",\"target_version\":\"../x\",\"md5sum\":\"0123456789abcdef0123456789abcdef\","
    "\"file_size\":10,\"path\":\"/a/b\"}",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_auto (OtaCycleRecord) record = { 0 };
    g_autoptr (GError) error = NULL;

    g_assert_false (ota_cycle_record_parse (bad[i], strlen (bad[i]), &record, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_null (record.target_version);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/state-store/reboot-marker/save-load-delete-round-trip", test_marker_save_load_round_trip);
  g_test_add_func ("/state-store/reboot-marker/empty-file-is-invalid-data", test_marker_empty_file_is_invalid_data);
  g_test_add_func ("/state-store/reboot-marker/non-boolean-task-id-is-number-means-string",
                   test_marker_non_boolean_task_id_is_number_means_string);
  g_test_add_func ("/state-store/reboot-marker/invalid-marker-is-rejected", test_marker_invalid_is_rejected);
  g_test_add_func ("/state-store/cycle-record/save-load-delete-round-trip", test_cycle_save_load_round_trip);
  g_test_add_func ("/state-store/cycle-record/invalid-record-is-rejected", test_cycle_invalid_is_rejected);
  return g_test_run ();
}
