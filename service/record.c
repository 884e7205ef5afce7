/* Resume records (docs/files.md): pure JSON parse/serialize, and atomic load/save
 * relative to a directory fd, never following symlinks. */

#include "record.h"

#include "protocol.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A record is five short fields: anything bigger is not ours. */
#define OTA_RECORD_MAX_SIZE 4096

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaRecord, ota_record_clear)

char *
ota_firmware_stem (const char *module, const char *version)
{
  if (module == NULL || module[0] == '\0')
    return g_strdup_printf ("FW_%s", version);
  return g_strdup_printf ("FW_%s_%s", module, version);
}

void
ota_record_clear (OtaRecord *record)
{
  g_clear_pointer (&record->module, g_free);
  g_clear_pointer (&record->version, g_free);
  g_clear_pointer (&record->md5sum, g_free);
  record->file_size = 0;
  record->downloaded_size = 0;
}

static const char *
ota_record_get_string (JsonObject *obj, const char *key, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_STRING) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "\"%s\" must be a string", key);
    return NULL;
  }
  return json_node_get_string (node);
}

static gboolean
ota_record_get_size (JsonObject *obj, const char *key, guint64 *value, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_INT64 ||
      json_node_get_int (node) < 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "\"%s\" must be a non-negative integer", key);
    return FALSE;
  }
  *value = (guint64) json_node_get_int (node);
  return TRUE;
}

static gboolean
ota_record_parse_object (JsonObject *obj, OtaRecord *rec, GError **error)
{
  const char *module, *version, *md5sum;

  if ((module = ota_record_get_string (obj, "module", error)) == NULL ||
      (version = ota_record_get_string (obj, "version", error)) == NULL ||
      (md5sum = ota_record_get_string (obj, "md5sum", error)) == NULL ||
      !ota_record_get_size (obj, "file_size", &rec->file_size, error) ||
      !ota_record_get_size (obj, "downloaded_size", &rec->downloaded_size, error))
    return FALSE;
  /* Module and version become path components: validate like the cloud's. */
  if (!ota_protocol_module_is_valid (module) || !ota_protocol_version_is_valid (version) ||
      !ota_protocol_md5sum_is_valid (md5sum)) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                         "invalid module, version or md5sum");
    return FALSE;
  }
  if (rec->file_size == 0 || rec->downloaded_size > rec->file_size) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                         "downloaded_size must be within 0..file_size and file_size > 0");
    return FALSE;
  }
  rec->module = g_strdup (module);
  rec->version = g_strdup (version);
  rec->md5sum = g_strdup (md5sum);
  return TRUE;
}

gboolean
ota_record_parse (const char *data, gsize length, OtaRecord *record, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) local_error = NULL;
  JsonNode *root;

  g_return_val_if_fail (record != NULL, FALSE);

  if (length > OTA_RECORD_MAX_SIZE) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "record larger than %d bytes", OTA_RECORD_MAX_SIZE);
    return FALSE;
  }
  if (!json_parser_load_from_data (parser, data, (gssize) length, &local_error)) {
    /* Callers only need to know that the record is unusable, and why. */
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not JSON: %s",
                 local_error->message);
    return FALSE;
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not a JSON object");
    return FALSE;
  }
  if (!ota_record_parse_object (json_node_get_object (root), &rec, error))
    return FALSE;
  *record = rec;
  memset (&rec, 0, sizeof (rec));
  return TRUE;
}

char *
ota_record_serialize (const OtaRecord *record)
{
  g_autoptr(JsonBuilder) builder = json_builder_new_immutable ();
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  g_return_val_if_fail (record != NULL, NULL);

  /* Members are written in insertion order: the documented key order. */
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "module");
  json_builder_add_string_value (builder, record->module != NULL ? record->module : "");
  json_builder_set_member_name (builder, "version");
  json_builder_add_string_value (builder, record->version);
  json_builder_set_member_name (builder, "md5sum");
  json_builder_add_string_value (builder, record->md5sum);
  json_builder_set_member_name (builder, "file_size");
  json_builder_add_int_value (builder, (gint64) record->file_size);
  json_builder_set_member_name (builder, "downloaded_size");
  json_builder_add_int_value (builder, (gint64) record->downloaded_size);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  return json_generator_to_data (generator, NULL);
}

static gboolean
ota_record_read_fd (int fd, GString *buf, GError **error)
{
  char chunk[1024];

  /* Read one byte past the limit so an oversized file is noticed even if it grew. */
  while (buf->len <= OTA_RECORD_MAX_SIZE) {
    ssize_t n = read (fd, chunk, sizeof (chunk));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return ota_set_error_from_errno (error, errno, "read");
    if (n == 0)
      return TRUE;
    g_string_append_len (buf, chunk, n);
  }
  return TRUE;
}

gboolean
ota_record_load_at (int dir_fd, const char *name, OtaRecord *record, GError **error)
{
  g_autoptr(GString) buf = g_string_new (NULL);
  struct stat st;
  int fd;

  g_return_val_if_fail (record != NULL, FALSE);

  fd = openat (dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return ota_set_error_from_errno (error, errno, "cannot open %s", name);
  /* O_NONBLOCK only so that a FIFO planted here cannot block us; not a regular file is refused. */
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || st.st_size > OTA_RECORD_MAX_SIZE) {
    close (fd);
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "%s is not a regular file of at most %d bytes", name, OTA_RECORD_MAX_SIZE);
    return FALSE;
  }
  /* A record has one name. Another one means a hard link planted in the
   * app's directory, perhaps to a file the app may not read: its content
   * must not come back to anyone, not even in a parse error. */
  if (st.st_nlink != 1) {
    close (fd);
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s has %u names, not one", name,
                 (guint) st.st_nlink);
    return FALSE;
  }
  if (!ota_record_read_fd (fd, buf, error)) {
    close (fd);
    g_prefix_error (error, "%s: ", name);
    return FALSE;
  }
  close (fd);
  if (!ota_record_parse (buf->str, buf->len, record, error)) {
    g_prefix_error (error, "%s: ", name);
    return FALSE;
  }
  return TRUE;
}

gboolean
ota_record_save_at (int dir_fd, const char *name, const OtaRecord *record, uid_t owner,
                    gid_t group, GError **error)
{
  g_return_val_if_fail (record != NULL, FALSE);

  g_autofree char *data = ota_record_serialize (record);

  if (!ota_replace_file_at (dir_fd, name, data, strlen (data), 0644, owner, group, error)) {
    g_prefix_error (error, "cannot save %s: ", name);
    return FALSE;
  }
  return TRUE;
}
