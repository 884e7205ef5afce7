#include "signin.h"

#include <gio/gio.h>
#include <string.h>

static const char connid_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static gboolean
connid_is_valid (const char *connid)
{
  return connid != NULL && strlen (connid) == OTA_SIGNIN_CONNID_LENGTH &&
         strspn (connid, connid_alphabet) == OTA_SIGNIN_CONNID_LENGTH;
}

gboolean
ota_signin_compute (const char *product_id, const char *device_name, const char *device_secret,
                    const char *connid, gint64 expiry, char **username, char **password, GError **error)
{
  g_autofree guchar *key = NULL;
  g_autofree char *user = NULL;
  g_autofree char *token = NULL;
  gsize key_length = 0;

  g_return_val_if_fail (product_id != NULL && device_name != NULL && device_secret != NULL, FALSE);
  g_return_val_if_fail (username != NULL && password != NULL, FALSE);

  if (!connid_is_valid (connid)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "sign-in: connid must be %d characters of [A-Za-z0-9]", OTA_SIGNIN_CONNID_LENGTH);
    return FALSE;
  }
  if (expiry <= 0) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "sign-in: expiry must be positive");
    return FALSE;
  }
  if (device_secret != NULL && *device_secret != '\0')
    key = g_base64_decode (device_secret, &key_length);
  if (key_length == 0) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                         "sign-in: device_secret is empty or not base64");
    return FALSE;
  }
  user = g_strdup_printf ("%s%s;" OTA_SIGNIN_SDK_APPID ";%s;%" G_GINT64_FORMAT, product_id, device_name, connid,
                          expiry);
  /* Lowercase hex, as the platform's own SDK writes it. */
  token = g_compute_hmac_for_data (G_CHECKSUM_SHA256, key, key_length, (const guchar *) user, strlen (user));
  *password = g_strconcat (token, ";hmacsha256", NULL);
  *username = g_steal_pointer (&user);
  return TRUE;
}

char *
ota_signin_new_connid (void)
{
  char *connid = g_malloc (OTA_SIGNIN_CONNID_LENGTH + 1);

  /* Not a secret, only distinct per connection: GLib's generator is enough. */
  for (int i = 0; i < OTA_SIGNIN_CONNID_LENGTH; i++)
    connid[i] = connid_alphabet[g_random_int_range (0, (gint32) strlen (connid_alphabet))];
  connid[OTA_SIGNIN_CONNID_LENGTH] = '\0';
  return connid;
}

gboolean
ota_signin_parse_fixed (const char *text, char **connid, gint64 *expiry, GError **error)
{
  g_auto (GStrv) parts = NULL;
  guint64 value = 0;

  g_return_val_if_fail (text != NULL && connid != NULL && expiry != NULL, FALSE);

  parts = g_strsplit (text, ":", 2);
  if (g_strv_length (parts) != 2 || !connid_is_valid (parts[0]) ||
      !g_ascii_string_to_unsigned (parts[1], 10, 1, G_MAXINT64, &value, NULL)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "expected CONNID:EXPIRY (%d characters of [A-Za-z0-9], unix seconds), got \"%s\"",
                 OTA_SIGNIN_CONNID_LENGTH, text);
    return FALSE;
  }
  *connid = g_strdup (parts[0]);
  *expiry = (gint64) value;
  return TRUE;
}
