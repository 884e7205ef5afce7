/* Typed errors of the agent, mapped to org.iv.Ota.Error.* in one place. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OTA_ERROR (ota_error_quark ())

/**
 * OtaError:
 * @OTA_ERROR_INVALID_ARGS: an argument is malformed or an option unknown
 * @OTA_ERROR_BUSY: the module is owned by another client
 * @OTA_ERROR_ACCESS_DENIED: the caller may not use this directory or file
 * @OTA_ERROR_NOT_OWNER: only the module's owner may do this
 * @OTA_ERROR_NO_SUCH_MODULE: nobody called Init for this module
 * @OTA_ERROR_FAILED: valid request that cannot be carried out now
 * @OTA_ERROR_OFFLINE: the agent is not connected to the cloud
 *
 * The order matches the D-Bus error names registered by ota_error_quark().
 */
typedef enum {
  OTA_ERROR_INVALID_ARGS,
  OTA_ERROR_BUSY,
  OTA_ERROR_ACCESS_DENIED,
  OTA_ERROR_NOT_OWNER,
  OTA_ERROR_NO_SUCH_MODULE,
  OTA_ERROR_FAILED,
  OTA_ERROR_OFFLINE,
} OtaError;

/* Registers the D-Bus error names on first use, so a GError of this domain
 * returned from a method handler travels as org.iv.Ota.Error.<Name>. */
GQuark ota_error_quark (void);

G_END_DECLS
