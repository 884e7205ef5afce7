#include "state-store.h"

#include "protocol.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <unistd.h>

#define MARKER_MAX_SIZE 4096

void
ota_reboot_marker_clear (OtaRebootMarker *marker)
{
  g_clear_pointer (&marker->target_version, g_free);
  g_clear_pointer (&marker->task_id, g_free);
  g_clear_pointer (&marker->owner, g_free);
  g_clear_pointer (&marker->boot_id, g_free);
  marker->task_id_is_number = FALSE;
}

/* state_dir/<kind>.json for the main firmware, <kind>_<module>.json otherwise. */
static char *
state_file_path (const char *state_dir, const char *kind, const char *module)
{
  g_autofree char *name = *module == '\0' ? g_strconcat (kind, ".json", NULL)
                                          : g_strdup_printf ("%s_%s.json", kind, module);
  return g_build_filename (state_dir, name, NULL);
}

static char *
marker_path (const char *state_dir, const char *module)
{
  return state_file_path (state_dir, "rebooting", module);
}

static void
builder_add_string (JsonBuilder *builder, const char *name, const char *value)
{
  if (value == NULL)
    return;
  json_builder_set_member_name (builder, name);
  json_builder_add_string_value (builder, value);
}

static void
builder_add_task_and_owner (JsonBuilder *builder, const char *task_id, gboolean task_id_is_number,
                            const char *owner, const char *boot_id)
{
  if (task_id != NULL) {
    builder_add_string (builder, "task_id", task_id);
    json_builder_set_member_name (builder, "task_id_is_number");
    json_builder_add_boolean_value (builder, task_id_is_number);
  }
  builder_add_string (builder, "owner", owner);
  builder_add_string (builder, "boot_id", boot_id);
}

gboolean
ota_reboot_marker_save (const char *state_dir, const char *module, const OtaRebootMarker *marker,
                        GError **error)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *path = marker_path (state_dir, module);
  g_autofree char *data = NULL;

  g_return_val_if_fail (marker != NULL, FALSE);

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "module");
  json_builder_add_string_value (builder, module);
  json_builder_set_member_name (builder, "target_version");
  json_builder_add_string_value (builder, marker->target_version);
  builder_add_task_and_owner (builder, marker->task_id, marker->task_id_is_number, marker->owner,
                              marker->boot_id);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  data = json_to_string (root, FALSE);
  return ota_replace_file (path, data, strlen (data), error);
}

static const char *
marker_get_string (JsonObject *obj, const char *name)
{
  JsonNode *node = json_object_get_member (obj, name);

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

/* A copy of an optional string member of at most 255 bytes (bus names and
 * boot ids are much shorter); NULL when absent or unreasonable. */
static char *
marker_get_short_string (JsonObject *obj, const char *name)
{
  const char *value = marker_get_string (obj, name);

  return value != NULL && strlen (value) < 256 ? g_strdup (value) : NULL;
}

/* Not json_object_get_boolean_member_with_default(): a non-value member is a critical there. */
static gboolean
marker_get_boolean (JsonObject *obj, const char *name)
{
  JsonNode *node = json_object_get_member (obj, name);

  return node != NULL && json_node_get_value_type (node) == G_TYPE_BOOLEAN && json_node_get_boolean (node);
}

gboolean
ota_reboot_marker_parse (const char *data, gsize length, OtaRebootMarker *marker, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonNode *root = NULL;
  JsonObject *obj;
  const char *version, *task_id;

  g_return_val_if_fail (marker != NULL, FALSE);

  /* An empty or blank file parses as JSON without a root node. */
  if (length > MARKER_MAX_SIZE || !json_parser_load_from_data (parser, data, (gssize) length, NULL) ||
      (root = json_parser_get_root (parser)) == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not a reboot marker");
    return FALSE;
  }
  obj = json_node_get_object (root);
  version = marker_get_string (obj, "target_version");
  task_id = marker_get_string (obj, "task_id");
  if (version == NULL || !ota_protocol_version_is_valid (version) ||
      (task_id != NULL && strlen (task_id) > OTA_PROTOCOL_MAX_TASK_ID_LEN)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "reboot marker: invalid target_version or task_id");
    return FALSE;
  }
  marker->target_version = g_strdup (version);
  marker->task_id = g_strdup (task_id);
  marker->task_id_is_number = task_id != NULL && marker_get_boolean (obj, "task_id_is_number");
  marker->owner = marker_get_short_string (obj, "owner");
  marker->boot_id = marker_get_short_string (obj, "boot_id");
  return TRUE;
}

/* The contents of @path; G_IO_ERROR_NOT_FOUND when it does not exist. */
static char *
state_file_read (const char *path, gsize *length, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  char *data = NULL;

  if (!g_file_get_contents (path, &data, length, &local_error)) {
    int code = g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? G_IO_ERROR_NOT_FOUND
                                                                                : G_IO_ERROR_FAILED;
    g_set_error (error, G_IO_ERROR, code, "%s", local_error->message);
    return NULL;
  }
  return data;
}

gboolean
ota_reboot_marker_load (const char *state_dir, const char *module, OtaRebootMarker *marker, GError **error)
{
  g_autofree char *path = marker_path (state_dir, module);
  gsize length = 0;
  g_autofree char *data = state_file_read (path, &length, error);

  g_return_val_if_fail (marker != NULL, FALSE);

  if (data == NULL)
    return FALSE;
  if (!ota_reboot_marker_parse (data, length, marker, error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  return TRUE;
}

gboolean
ota_reboot_marker_delete (const char *state_dir, const char *module, GError **error)
{
  g_autofree char *path = marker_path (state_dir, module);

  return ota_remove_file (path, error);
}

/* ---- the cycle record ---- */

static const char *const cycle_phase_names[] = { "ready", "burning" };

const char *
ota_cycle_phase_to_string (OtaCyclePhase phase)
{
  return phase < G_N_ELEMENTS (cycle_phase_names) ? cycle_phase_names[phase] : "unknown";
}

void
ota_cycle_record_clear (OtaCycleRecord *record)
{
  g_clear_pointer (&record->target_version, g_free);
  g_clear_pointer (&record->md5sum, g_free);
  g_clear_pointer (&record->path, g_free);
  g_clear_pointer (&record->task_id, g_free);
  g_clear_pointer (&record->owner, g_free);
  g_clear_pointer (&record->boot_id, g_free);
  record->file_size = 0;
  record->task_id_is_number = FALSE;
  record->phase = OTA_CYCLE_PHASE_READY;
}

gboolean
ota_cycle_record_save (const char *state_dir, const char *module, const OtaCycleRecord *record, GError **error)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *path = state_file_path (state_dir, "cycle", module);
  g_autofree char *data = NULL;

  g_return_val_if_fail (record != NULL, FALSE);

  json_builder_begin_object (builder);
  builder_add_string (builder, "module", module);
  builder_add_string (builder, "phase", ota_cycle_phase_to_string (record->phase));
  builder_add_string (builder, "target_version", record->target_version);
  builder_add_string (builder, "md5sum", record->md5sum);
  json_builder_set_member_name (builder, "file_size");
  json_builder_add_int_value (builder, (gint64) record->file_size);
  builder_add_string (builder, "path", record->path);
  builder_add_task_and_owner (builder, record->task_id, record->task_id_is_number, record->owner,
                              record->boot_id);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  data = json_to_string (root, FALSE);
  return ota_replace_file (path, data, strlen (data), error);
}

static gboolean
cycle_phase_from_string (const char *name, OtaCyclePhase *phase)
{
  for (guint i = 0; name != NULL && i < G_N_ELEMENTS (cycle_phase_names); i++) {
    if (g_str_equal (name, cycle_phase_names[i])) {
      *phase = (OtaCyclePhase) i;
      return TRUE;
    }
  }
  return FALSE;
}

static gint64
cycle_get_size (JsonObject *obj)
{
  JsonNode *node = json_object_get_member (obj, "file_size");

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_INT64)
    return -1;
  return json_node_get_int (node);
}

gboolean
ota_cycle_record_parse (const char *data, gsize length, OtaCycleRecord *record, GError **error)
{
  OtaRebootMarker marker = { 0 };
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonNode *root;
  JsonObject *obj;
  const char *md5, *path;
  OtaCyclePhase phase;
  gint64 size;

  g_return_val_if_fail (record != NULL, FALSE);

  /* The members shared with the reboot marker, validated the same way. */
  if (!ota_reboot_marker_parse (data, length, &marker, error))
    return FALSE;
  json_parser_load_from_data (parser, data, (gssize) length, NULL);
  root = json_parser_get_root (parser);
  obj = json_node_get_object (root);
  md5 = marker_get_string (obj, "md5sum");
  path = marker_get_string (obj, "path");
  size = cycle_get_size (obj);
  if (!cycle_phase_from_string (marker_get_string (obj, "phase"), &phase) || md5 == NULL || !ota_protocol_md5sum_is_valid (md5) ||
      size <= 0 || path == NULL || !g_path_is_absolute (path) || strlen (path) >= 4096) {
    ota_reboot_marker_clear (&marker);
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "cycle record: invalid phase, md5sum, file_size or path");
    return FALSE;
  }
  record->phase = phase;
  record->target_version = g_steal_pointer (&marker.target_version);
  record->task_id = g_steal_pointer (&marker.task_id);
  record->task_id_is_number = marker.task_id_is_number;
  record->owner = g_steal_pointer (&marker.owner);
  record->boot_id = g_steal_pointer (&marker.boot_id);
  record->md5sum = g_ascii_strdown (md5, -1);
  record->file_size = (guint64) size;
  record->path = g_strdup (path);
  return TRUE;
}

gboolean
ota_cycle_record_load (const char *state_dir, const char *module, OtaCycleRecord *record, GError **error)
{
  g_autofree char *path = state_file_path (state_dir, "cycle", module);
  gsize length = 0;
  g_autofree char *data = state_file_read (path, &length, error);

  g_return_val_if_fail (record != NULL, FALSE);

  if (data == NULL)
    return FALSE;
  if (!ota_cycle_record_parse (data, length, record, error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  return TRUE;
}

gboolean
ota_cycle_record_delete (const char *state_dir, const char *module, GError **error)
{
  g_autofree char *path = state_file_path (state_dir, "cycle", module);

  return ota_remove_file (path, error);
}

const char *
ota_state_boot_id (void)
{
  static char *boot_id;

  if (g_once_init_enter (&boot_id)) {
    const char *test_id = g_getenv ("IV_OTAD_TEST_BOOT_ID");
    char *text = NULL;

    /* Tests play a reboot by restarting the agent under another boot id. */
    if (test_id != NULL && *test_id != '\0') {
      g_warning ("IV_OTAD_TEST_BOOT_ID is set: this boot's id is taken to be \"%s\" (for tests only)", test_id);
      text = g_strdup (test_id);
    } else if (!g_file_get_contents ("/proc/sys/kernel/random/boot_id", &text, NULL, NULL)) {
      text = g_strdup ("");
    }
    g_once_init_leave (&boot_id, g_strstrip (text));
  }
  return boot_id;
}
