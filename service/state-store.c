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
  marker->task_id_is_number = FALSE;
}

static char *
marker_path (const char *state_dir, const char *module)
{
  g_autofree char *name = *module == '\0' ? g_strdup ("rebooting.json")
                                          : g_strdup_printf ("rebooting_%s.json", module);
  return g_build_filename (state_dir, name, NULL);
}

gboolean
ota_reboot_marker_save (const char *state_dir, const char *module, const OtaRebootMarker *marker,
                        GError **error)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *path = marker_path (state_dir, module);
  g_autofree char *data = NULL;

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "module");
  json_builder_add_string_value (builder, module);
  json_builder_set_member_name (builder, "target_version");
  json_builder_add_string_value (builder, marker->target_version);
  if (marker->task_id != NULL) {
    json_builder_set_member_name (builder, "task_id");
    json_builder_add_string_value (builder, marker->task_id);
    json_builder_set_member_name (builder, "task_id_is_number");
    json_builder_add_boolean_value (builder, marker->task_id_is_number);
  }
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
  return TRUE;
}

gboolean
ota_reboot_marker_load (const char *state_dir, const char *module, OtaRebootMarker *marker, GError **error)
{
  g_autofree char *path = marker_path (state_dir, module);
  g_autofree char *data = NULL;
  g_autoptr (GError) local_error = NULL;
  gsize length = 0;

  if (!g_file_get_contents (path, &data, &length, &local_error)) {
    int code = g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? G_IO_ERROR_NOT_FOUND
                                                                                : G_IO_ERROR_FAILED;
    g_set_error (error, G_IO_ERROR, code, "%s", local_error->message);
    return FALSE;
  }
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
