/* The resume record of a partial download (docs/files.md), beside the image:
 * {"module":"","version":"0.2","md5sum":"…","file_size":708482,"downloaded_size":524288}
 * Files are always opened relative to a directory fd with O_NOFOLLOW. */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef struct {
  char *module;
  char *version;
  char *md5sum;
  guint64 file_size;
  guint64 downloaded_size;
} OtaRecord;

/* "FW_<version>" for module "", "FW_<module>_<version>" otherwise. Both must
 * already be validated (ota_protocol_version_is_valid/module_is_valid). */
char *ota_firmware_stem (const char *module, const char *version);

/* Pure parse/serialize. Parse validates every field (module/version charset,
 * md5 format, downloaded_size <= file_size) and fails with G_IO_ERROR_INVALID_DATA. */
gboolean ota_record_parse (const char *data, gsize length, OtaRecord *record, GError **error);
char *ota_record_serialize (const OtaRecord *record);
void ota_record_clear (OtaRecord *record);

/* Reads @name under @dir_fd (O_NOFOLLOW, at most 4 KiB). A missing file is
 * G_IO_ERROR_NOT_FOUND; anything unparsable is G_IO_ERROR_INVALID_DATA. */
gboolean ota_record_load_at (int dir_fd, const char *name, OtaRecord *record, GError **error);

/* Writes @name.tmp, fsyncs it, renames it over @name. When @owner is not
 * (uid_t)-1 and we run as root, the file is given to @owner:@group. */
gboolean ota_record_save_at (int dir_fd, const char *name, const OtaRecord *record,
                             uid_t owner, gid_t group, GError **error);

G_END_DECLS
