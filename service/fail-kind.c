#include "fail-kind.h"

#include "protocol.h"

/* The one table of kinds and their strings, in OtaFailKind order. */
static const char *const fail_kind_names[] = {
  [OTA_FAIL_KIND_NONE] = "",
  [OTA_FAIL_KIND_TIMEOUT] = "timeout",
  [OTA_FAIL_KIND_NOT_FOUND] = "not-found",
  [OTA_FAIL_KIND_FORBIDDEN] = "forbidden",
  [OTA_FAIL_KIND_CHECKSUM] = "checksum",
  [OTA_FAIL_KIND_SIZE] = "size",
  [OTA_FAIL_KIND_NO_SPACE] = "no-space",
  [OTA_FAIL_KIND_WRITE] = "write",
  [OTA_FAIL_KIND_OPEN] = "open",
  [OTA_FAIL_KIND_HTTP] = "http",
  [OTA_FAIL_KIND_REFUSED] = "refused",
  [OTA_FAIL_KIND_APP] = "app",
  [OTA_FAIL_KIND_VERSION] = "version",
  [OTA_FAIL_KIND_INSTALL] = "install",
  [OTA_FAIL_KIND_OTHER] = "other",
};

G_STATIC_ASSERT (G_N_ELEMENTS (fail_kind_names) == OTA_FAIL_KIND_OTHER + 1);

const char *
ota_fail_kind_to_string (OtaFailKind kind)
{
  return (guint) kind < G_N_ELEMENTS (fail_kind_names) ? fail_kind_names[kind] : fail_kind_names[OTA_FAIL_KIND_OTHER];
}

gboolean
ota_fail_kind_from_string (const char *text, OtaFailKind *kind)
{
  g_return_val_if_fail (kind != NULL, FALSE);
  for (guint i = 0; text != NULL && i < G_N_ELEMENTS (fail_kind_names); i++) {
    if (g_str_equal (text, fail_kind_names[i])) {
      *kind = (OtaFailKind) i;
      return TRUE;
    }
  }
  return FALSE;
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
