/* Small persisted facts of the agent in state_dir: the "rebooting" marker that
 * lets the Init after a reboot report done or fail by itself. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *target_version;
  char *task_id;              /* NULL when the offer had none */
  gboolean task_id_is_number;
} OtaRebootMarker;

void ota_reboot_marker_clear (OtaRebootMarker *marker);

/* Writes state_dir/rebooting[_<module>].json atomically (fsync + rename). */
gboolean ota_reboot_marker_save (const char *state_dir, const char *module,
                                 const OtaRebootMarker *marker, GError **error);

/* G_IO_ERROR_NOT_FOUND when there is none; a damaged marker is
 * G_IO_ERROR_INVALID_DATA. */
gboolean ota_reboot_marker_load (const char *state_dir, const char *module,
                                 OtaRebootMarker *marker, GError **error);

/* Pure parser, for tests and fuzzing. */
gboolean ota_reboot_marker_parse (const char *data, gsize length, OtaRebootMarker *marker, GError **error);

gboolean ota_reboot_marker_delete (const char *state_dir, const char *module, GError **error);

G_END_DECLS
