/* ota_reboot_marker_parse() on arbitrary marker files: an accepted marker's
 * target version is reported to the cloud after the reboot, so it must be valid. */
#include "protocol.h"
#include "state-store.h"

#include "fuzz-common.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  OtaRebootMarker marker = { 0 };
  g_autoptr(GError) error = NULL;

  if (!ota_reboot_marker_parse ((const char *) data, size, &marker, &error)) {
    FUZZ_CHECK (error != NULL);
    FUZZ_CHECK (marker.target_version == NULL && marker.task_id == NULL);
    return 0;
  }
  FUZZ_CHECK (ota_protocol_version_is_valid (marker.target_version));
  if (marker.task_id != NULL)
    FUZZ_CHECK (strlen (marker.task_id) <= OTA_PROTOCOL_MAX_TASK_ID_LEN);
  else
    FUZZ_CHECK (!marker.task_id_is_number);
  ota_reboot_marker_clear (&marker);
  return 0;
}
