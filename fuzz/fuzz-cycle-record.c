/* ota_cycle_record_parse() on arbitrary cycle records: an accepted record's
 * target is reported to the cloud and its path compared with the firmware
 * directory, so every field must be valid. */
#include "protocol.h"
#include "state-store.h"

#include "fuzz-common.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_auto (OtaCycleRecord) record = { 0 };
  g_autoptr(GError) error = NULL;

  if (!ota_cycle_record_parse ((const char *) data, size, &record, &error)) {
    FUZZ_CHECK (error != NULL);
    FUZZ_CHECK (record.target_version == NULL && record.path == NULL && record.md5sum == NULL);
    return 0;
  }
  FUZZ_CHECK (ota_protocol_version_is_valid (record.target_version));
  FUZZ_CHECK (ota_protocol_md5sum_is_valid (record.md5sum));
  FUZZ_CHECK (record.file_size > 0);
  FUZZ_CHECK (record.path != NULL && g_path_is_absolute (record.path));
  FUZZ_CHECK (record.phase == OTA_CYCLE_PHASE_READY || record.phase == OTA_CYCLE_PHASE_BURNING);
  if (record.task_id != NULL)
    FUZZ_CHECK (strlen (record.task_id) <= OTA_PROTOCOL_MAX_TASK_ID_LEN);
  return 0;
}
