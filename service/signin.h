/* Device key sign-in of the Tencent IoT platform (docs/configuration.md): the MQTT
 * username and password signed with [device] device_secret.
 *
 *   username = {product_id}{device_name};12010126;{connid};{expiry}
 *   password = hex(HMAC-SHA256(base64decode(device_secret), username));hmacsha256
 *
 * ota_signin_compute() is pure (no clock, no randomness) so that it is tested
 * with fixed inputs; the link asks for fresh credentials before every
 * connection attempt (new connid, new expiry), so they never expire. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The platform's fixed "sdkappid" field. */
#define OTA_SIGNIN_SDK_APPID "12010126"
/* connid: this many characters of [A-Za-z0-9]. */
#define OTA_SIGNIN_CONNID_LENGTH 5
/* expiry = now + this. The platform checks it at CONNECT only; a short
 * validity bounds the replay of a captured password. */
#define OTA_SIGNIN_LIFETIME_S 3600

/* Computes the signed credentials. @device_secret is standard base64 (as the
 * console shows it), @connid must be OTA_SIGNIN_CONNID_LENGTH characters of
 * [A-Za-z0-9], @expiry unix seconds > 0. On success sets newly allocated
 * @username and @password; on failure returns FALSE with a G_IO_ERROR_INVALID_ARGUMENT
 * error naming the bad input. Thread-safe. */
gboolean ota_signin_compute (const char *product_id,
                             const char *device_name,
                             const char *device_secret,
                             const char *connid,
                             gint64 expiry,
                             char **username,
                             char **password,
                             GError **error);

/* A fresh random connid (OTA_SIGNIN_CONNID_LENGTH of [A-Za-z0-9]), newly allocated. */
char *ota_signin_new_connid (void);

/* Parses "connid:expiry" (the IV_OTAD_TEST_SIGNIN test hook) into a validated
 * connid and expiry. */
gboolean ota_signin_parse_fixed (const char *text, char **connid, gint64 *expiry, GError **error);

G_END_DECLS
