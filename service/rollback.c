/* Anti-rollback state of signed images, in state_dir. */
#include "rollback.h"

#include "protocol.h"
#include "signature.h"
#include "util.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <string.h>

#define ROLLBACK_MAX_SIZE 4096

void
ota_rollback_state_clear (OtaRollbackState *state)
{
  g_clear_pointer (&state->pending_version, g_free);
  state->installed = state->pending = 0;
}

static char *
rollback_path (const char *state_dir, const char *module)
{
  g_autofree char *name = *module == '\0' ? g_strdup ("security.json")
                                          : g_strdup_printf ("security_%s.json", module);
  return g_build_filename (state_dir, name, NULL);
}

static gboolean
read_u32 (JsonObject *obj, const char *name, gboolean required, guint32 *value)
{
  JsonNode *node = json_object_get_member (obj, name);
  gint64 v;

  if (node == NULL)
    return !required;
  if (json_node_get_value_type (node) != G_TYPE_INT64 || (v = json_node_get_int (node)) < 0 ||
      v > (gint64) OTA_SIGNATURE_SECURITY_VERSION_MAX)
    return FALSE;
  *value = (guint32) v;
  return TRUE;
}

gboolean
ota_rollback_state_parse (const char *data, gsize length, OtaRollbackState *state, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonNode *root = NULL, *version = NULL;
  JsonObject *obj = NULL;
  guint32 installed = 0, pending = 0;

  g_return_val_if_fail (state != NULL, FALSE);

  /* Bounded like the reboot marker: at most this much nesting for json-glib's recursion. */
  if (length <= ROLLBACK_MAX_SIZE && memchr (data, '\0', length) == NULL &&
      json_parser_load_from_data (parser, data, (gssize) length, NULL) &&
      (root = json_parser_get_root (parser)) != NULL && JSON_NODE_HOLDS_OBJECT (root))
    obj = json_node_get_object (root);
  if (obj != NULL)
    version = json_object_get_member (obj, "pending_version");
  if (obj == NULL || !read_u32 (obj, "installed", TRUE, &installed) ||
      !read_u32 (obj, "pending", version != NULL, &pending) ||
      (version != NULL && (json_node_get_value_type (version) != G_TYPE_STRING ||
                           !ota_protocol_version_is_valid (json_node_get_string (version))))) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not a security version record");
    return FALSE;
  }
  state->installed = installed;
  state->pending = version != NULL ? pending : 0;
  state->pending_version = version != NULL ? g_strdup (json_node_get_string (version)) : NULL;
  return TRUE;
}

gboolean
ota_rollback_state_load (const char *state_dir, const char *module, OtaRollbackState *state, GError **error)
{
  g_autofree char *path = rollback_path (state_dir, module);
  g_autofree char *data = NULL;
  g_autoptr (GError) local_error = NULL;
  gsize length = 0;

  g_return_val_if_fail (state != NULL, FALSE);

  if (!g_file_get_contents (path, &data, &length, &local_error)) {
    if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
      memset (state, 0, sizeof *state);
      return TRUE;
    }
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", local_error->message);
    return FALSE;
  }
  if (!ota_rollback_state_parse (data, length, state, error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  return TRUE;
}

gboolean
ota_rollback_state_save (const char *state_dir, const char *module, const OtaRollbackState *state,
                         GError **error)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *path = rollback_path (state_dir, module);
  g_autofree char *data = NULL;

  g_return_val_if_fail (state != NULL, FALSE);

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "module");
  json_builder_add_string_value (builder, module);
  json_builder_set_member_name (builder, "installed");
  json_builder_add_int_value (builder, state->installed);
  if (state->pending_version != NULL) {
    json_builder_set_member_name (builder, "pending_version");
    json_builder_add_string_value (builder, state->pending_version);
    json_builder_set_member_name (builder, "pending");
    json_builder_add_int_value (builder, state->pending);
  }
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  data = json_to_string (root, FALSE);
  return ota_replace_file (path, data, strlen (data), error);
}
