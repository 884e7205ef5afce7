/* ota_record_parse() on arbitrary resume-record files: an accepted record must
 * be valid (its module and version become path components) and survive
 * serialize + parse unchanged, since the agent rewrites it at every checkpoint. */
#include "protocol.h"
#include "record.h"

#include "fuzz-common.h"

#include <string.h>

static void
check_record (const OtaRecord *record)
{
  FUZZ_CHECK (record->module != NULL && ota_protocol_module_is_valid (record->module));
  FUZZ_CHECK (record->version != NULL && ota_protocol_version_is_valid (record->version));
  FUZZ_CHECK (record->md5sum != NULL && strlen (record->md5sum) == 32);
  FUZZ_CHECK (record->file_size >= 1 && record->downloaded_size <= record->file_size);
}

static void
check_round_trip (const OtaRecord *record)
{
  g_autofree char *text = ota_record_serialize (record);
  g_autoptr(GError) error = NULL;
  OtaRecord again = { 0 };

  FUZZ_CHECK (ota_record_parse (text, strlen (text), &again, &error));
  FUZZ_CHECK (g_str_equal (again.module, record->module));
  FUZZ_CHECK (g_str_equal (again.version, record->version));
  FUZZ_CHECK (g_str_equal (again.md5sum, record->md5sum));
  FUZZ_CHECK (again.file_size == record->file_size);
  FUZZ_CHECK (again.downloaded_size == record->downloaded_size);
  ota_record_clear (&again);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  OtaRecord record = { 0 };
  g_autoptr(GError) error = NULL;

  if (!ota_record_parse ((const char *) data, size, &record, &error)) {
    FUZZ_CHECK (error != NULL);
    FUZZ_CHECK (record.module == NULL && record.version == NULL && record.md5sum == NULL);
    return 0;
  }
  check_record (&record);
  check_round_trip (&record);
  ota_record_clear (&record);
  return 0;
}
