/* libiv-ota's one table from the agent's fail_kind to the SDK's
 * iv_ota_fail_type_e (client-event.c), without a bus: every kind of the
 * agent's vocabulary, kinds it may add later, and messages that must not
 * matter. */
#include "client.h"

#include <glib.h>

static const struct {
  const char *kind;
  iv_ota_fail_type_e type;
} expected[] = {
  { "timeout", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD },  { "not-found", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD },
  { "forbidden", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD }, { "http", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD },
  { "refused", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD },  { "other", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD },
  { "checksum", IV_OTA_FAIL_TYPE_MD5_CHECK },     { "size", IV_OTA_FAIL_TYPE_WRONG_SIZE },
  { "no-space", IV_OTA_FAIL_TYPE_WRITE_FLASH },   { "write", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "open", IV_OTA_FAIL_TYPE_OPEN_FILE },         { "app", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "version", IV_OTA_FAIL_TYPE_WRITE_FLASH },    { "install", IV_OTA_FAIL_TYPE_WRITE_FLASH },
};

/* The kind decides, whatever the result code. */
static void
test_vocabulary (void)
{
  const int codes[] = { -1, -2, -3, -4, -5 };

  for (guint i = 0; i < G_N_ELEMENTS (expected); i++) {
    for (guint c = 0; c < G_N_ELEMENTS (codes); c++)
      g_assert_cmpint (client_fail_type (codes[c], expected[i].kind), ==, expected[i].type);
  }
}

/* No kind (an agent that does not send one) or a kind added later: the
 * result code decides, never a message. */
static void
test_unknown_kinds (void)
{
  const char *unknown[] = { "", "quota", "TIMEOUT", "timeout ", "not_found", "checksum-sha256", NULL };

  for (guint i = 0; i < G_N_ELEMENTS (unknown); i++) {
    g_assert_cmpint (client_fail_type (-4, unknown[i]), ==, IV_OTA_FAIL_TYPE_MD5_CHECK);
    g_assert_cmpint (client_fail_type (-1, unknown[i]), ==, IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD);
    g_assert_cmpint (client_fail_type (-5, unknown[i]), ==, IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD);
  }
}

/* Which failures are download_fail_cb's: getting the image, not installing it. */
static void
test_download_or_install (void)
{
  const char *download[] = { "timeout", "not-found", "forbidden", "http", "refused", "checksum",
                             "size", "no-space", "write", "open", "other" };
  const char *install[] = { "app", "version", "install" };

  for (guint i = 0; i < G_N_ELEMENTS (download); i++) {
    g_assert_true (client_fail_is_download (download[i], FALSE));
    g_assert_true (client_fail_is_download (download[i], TRUE));
  }
  for (guint i = 0; i < G_N_ELEMENTS (install); i++) {
    g_assert_false (client_fail_is_download (install[i], FALSE));
    g_assert_false (client_fail_is_download (install[i], TRUE));
  }
  /* No kind, or one added later: what the module was doing decides. */
  g_assert_true (client_fail_is_download ("", TRUE));
  g_assert_false (client_fail_is_download ("", FALSE));
  g_assert_true (client_fail_is_download ("quota", TRUE));
  g_assert_false (client_fail_is_download ("quota", FALSE));
}

/* What download_fail_cb receives: the kind, not the words of the message. */
static void
test_fail_info (void)
{
  ClientEvent *event = client_event_new (CLIENT_EVENT_PROGRESS);
  iv_ota_fail_info_s info;

  g_assert_nonnull (event);
  g_assert_true (client_event_set (&event->version, "2.0"));
  g_assert_true (client_event_set (&event->result_msg, "cannot open FW_2.0.bin: size mismatch"));
  event->result_code = -5;
  event->downloaded = 1000;
  event->total = (guint64) G_MAXUINT32 + 10;
  g_strlcpy (event->fail_kind, "no-space", sizeof event->fail_kind);
  client_event_to_fail_info (event, &info);
  g_assert_cmpint (info.fail_type, ==, IV_OTA_FAIL_TYPE_WRITE_FLASH);
  g_assert_cmpint (info.err_code, ==, -5);
  g_assert_cmpuint (info.downloaded_size, ==, 1000);
  g_assert_cmpuint (info.fw_file_size, ==, G_MAXUINT32);
  g_assert_cmpstr (info.remote_version, ==, "2.0");
  /* Reworded: the same kind, the same type. */
  g_assert_true (client_event_set (&event->result_msg, "disk full while writing"));
  client_event_to_fail_info (event, &info);
  g_assert_cmpint (info.fail_type, ==, IV_OTA_FAIL_TYPE_WRITE_FLASH);
  client_event_free (event);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/client-fail-kind/vocabulary", test_vocabulary);
  g_test_add_func ("/client-fail-kind/unknown-kinds", test_unknown_kinds);
  g_test_add_func ("/client-fail-kind/download-or-install", test_download_or_install);
  g_test_add_func ("/client-fail-kind/fail-info", test_fail_info);
  return g_test_run ();
}
