#include "state-store.h"

#include "protocol.h"

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

/* The rename itself is only durable once the directory is synced: without
 * it, a power cut right after "rebooting" could bring back the old state.
 * Best effort: the new content is in place either way. */
static void
state_store_sync_parent (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0 || fsync (fd) != 0)
    g_debug ("cannot sync directory %s: %s", dir, g_strerror (errno));
  if (fd >= 0)
    close (fd);
}

gboolean
ota_file_replace_atomically (const char *path, const char *data, gsize length, GError **error)
{
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);
  gsize done = 0;
  int saved = 0;
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);

  if (fd < 0) {
    saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot write %s: %s", tmp,
                 g_strerror (saved));
    return FALSE;
  }
  while (done < length) {
    ssize_t n = write (fd, data + done, length - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    done += (gsize) n;
  }
  if (done < length || fsync (fd) != 0)
    saved = errno != 0 ? errno : EIO;
  close (fd);
  if (saved == 0 && rename (tmp, path) != 0)
    saved = errno;
  if (saved != 0) {
    unlink (tmp);
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot write %s: %s", path,
                 g_strerror (saved));
    return FALSE;
  }
  state_store_sync_parent (path);
  return TRUE;
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
  return ota_file_replace_atomically (path, data, strlen (data), error);
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

  if (unlink (path) != 0 && errno != ENOENT) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot remove %s: %s", path,
                 g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}
