#include "fail-kind.h"

#include "protocol.h"

G_STATIC_ASSERT (OTA_FAIL_KIND_OTHER + 1 == OTA_VOCAB_N_FAIL_KINDS);

const char *
ota_fail_kind_to_string (OtaFailKind kind)
{
  return ota_vocab_fail_kind_name ((int) kind);
}

gboolean
ota_fail_kind_from_string (const char *text, OtaFailKind *kind)
{
  int parsed = ota_vocab_fail_kind_parse (text);

  g_return_val_if_fail (kind != NULL, FALSE);

  if (parsed < 0)
    return FALSE;
  *kind = (OtaFailKind) parsed;
  return TRUE;
}

OtaFailKind
ota_fail_kind_from_result_code (int result_code)
{
  switch (result_code) {
  case OTA_RESULT_OK:
    return OTA_FAIL_KIND_NONE;
  case OTA_RESULT_TIMEOUT:
    return OTA_FAIL_KIND_TIMEOUT;
  case OTA_RESULT_NOT_FOUND:
    return OTA_FAIL_KIND_NOT_FOUND;
  case OTA_RESULT_EXPIRED:
    return OTA_FAIL_KIND_FORBIDDEN;
  case OTA_RESULT_MD5_MISMATCH:
    return OTA_FAIL_KIND_CHECKSUM;
  default:
    return OTA_FAIL_KIND_OTHER;
  }
}
