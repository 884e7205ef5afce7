/* The fail_kind vocabulary (service/fail-kind.c): the strings apps rely on,
 * in both directions, and what a bare result code implies. */
#include "fail-kind.h"
#include "protocol.h"

/* The contract: these names never change. */
static const char *const vocabulary[] = {
  "timeout", "not-found", "forbidden", "checksum", "size", "no-space", "write",
  "open", "http", "refused", "app", "version", "install", "other",
};

static void
test_every_kind_round_trips (void)
{
  g_assert_cmpstr (ota_fail_kind_to_string (OTA_FAIL_KIND_NONE), ==, "");
  for (guint i = 0; i < G_N_ELEMENTS (vocabulary); i++) {
    OtaFailKind kind = OTA_FAIL_KIND_NONE;

    g_assert_true (ota_fail_kind_from_string (vocabulary[i], &kind));
    g_assert_cmpint (kind, !=, OTA_FAIL_KIND_NONE);
    g_assert_cmpstr (ota_fail_kind_to_string (kind), ==, vocabulary[i]);
  }
  g_assert_cmpstr (ota_fail_kind_to_string (OTA_FAIL_KIND_OTHER + 1), ==, "other");
}

static void
test_unknown_names_are_refused (void)
{
  const char *bad[] = { "Timeout", "not_found", "md5", " other", NULL };
  OtaFailKind kind = OTA_FAIL_KIND_APP;

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    g_assert_false (ota_fail_kind_from_string (bad[i], &kind));
  g_assert_cmpint (kind, ==, OTA_FAIL_KIND_APP);
}

static void
test_result_codes (void)
{
  g_assert_cmpint (ota_fail_kind_from_result_code (OTA_RESULT_OK), ==, OTA_FAIL_KIND_NONE);
  g_assert_cmpint (ota_fail_kind_from_result_code (OTA_RESULT_TIMEOUT), ==, OTA_FAIL_KIND_TIMEOUT);
  g_assert_cmpint (ota_fail_kind_from_result_code (OTA_RESULT_NOT_FOUND), ==, OTA_FAIL_KIND_NOT_FOUND);
  g_assert_cmpint (ota_fail_kind_from_result_code (OTA_RESULT_EXPIRED), ==, OTA_FAIL_KIND_FORBIDDEN);
  g_assert_cmpint (ota_fail_kind_from_result_code (OTA_RESULT_MD5_MISMATCH), ==, OTA_FAIL_KIND_CHECKSUM);
  g_assert_cmpint (ota_fail_kind_from_result_code (OTA_RESULT_FAILED), ==, OTA_FAIL_KIND_OTHER);
  g_assert_cmpint (ota_fail_kind_from_result_code (-77), ==, OTA_FAIL_KIND_OTHER);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/fail-kind/every-kind-round-trips", test_every_kind_round_trips);
  g_test_add_func ("/fail-kind/unknown-names-are-refused", test_unknown_names_are_refused);
  g_test_add_func ("/fail-kind/result-codes", test_result_codes);
  return g_test_run ();
}
