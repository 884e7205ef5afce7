#include "error.h"

#include <gio/gio.h>

static const GDBusErrorEntry ota_error_entries[] = {
  { OTA_ERROR_INVALID_ARGS, "org.iv.Ota.Error.InvalidArgs" },
  { OTA_ERROR_BUSY, "org.iv.Ota.Error.Busy" },
  { OTA_ERROR_ACCESS_DENIED, "org.iv.Ota.Error.AccessDenied" },
  { OTA_ERROR_NOT_OWNER, "org.iv.Ota.Error.NotOwner" },
  { OTA_ERROR_NO_SUCH_MODULE, "org.iv.Ota.Error.NoSuchModule" },
  { OTA_ERROR_FAILED, "org.iv.Ota.Error.Failed" },
  { OTA_ERROR_OFFLINE, "org.iv.Ota.Error.Offline" },
};

GQuark
ota_error_quark (void)
{
  static gsize quark = 0;

  g_dbus_error_register_error_domain ("ota-error-quark", &quark, ota_error_entries,
                                      G_N_ELEMENTS (ota_error_entries));
  return (GQuark) quark;
}
