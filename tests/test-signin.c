/* Device key sign-in (docs/configuration.md): the signed username and password.
 *
 * The expected passwords were computed outside this code base, with OpenSSL:
 *
 *   key=$(printf %s "$device_secret" | base64 -d | od -An -tx1 | tr -d ' \n')
 *   printf %s "$username" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$key
 *
 * (for the first vector, whose key is printable, `openssl dgst -sha256 -hmac
 * 1234567890abcdef` gives the same digest). */
#include "signin.h"

#include <gio/gio.h>
#include <string.h>

typedef struct {
  const char *name;
  const char *product_id, *device_name, *device_secret, *connid;
  gint64 expiry;
  const char *username, *password;
} Vector;

static const Vector vectors[] = {
  { "printable-key", "ABCDEFGHIJ", "dev_01", "MTIzNDU2Nzg5MGFiY2RlZg==", "a1B2c", 1700000000,
    "ABCDEFGHIJdev_01;12010126;a1B2c;1700000000",
    "0d569ee99f6e2e489446585bb374e88f63e2d09fee3e37ab2ef75abd9e34219f;hmacsha256" },
  { "binary-16-byte-key", "PROD1", "dev1", "2/SrxBvnz4NW1Y2p04zVIg==", "Zz9Q0", 4102444800,
    "PROD1dev1;12010126;Zz9Q0;4102444800",
    "b582064e73da54dac15ffd0d6664943142e4b17210c6bba34acf4797441d5069;hmacsha256" },
  { "binary-48-byte-key", "Q7WJ2KX9ZM", "sensor-7",
    "U4S+XVC8ZFnpdI0qiS5DJnd24IR5cyz3BXWeLXKO7iFgD4iaCTe6cG7QOFtRowfy", "00000", 2147483647,
    "Q7WJ2KX9ZMsensor-7;12010126;00000;2147483647",
    "61a5c5a0450e2050f4209bbd5d17de1e9f728f33727bbaeef38aae72549d5c13;hmacsha256" },
};

static void
test_signed_credentials_match_openssl (gconstpointer data)
{
  const Vector *v = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *username = NULL;
  g_autofree char *password = NULL;

  g_assert_true (ota_signin_compute (v->product_id, v->device_name, v->device_secret, v->connid, v->expiry,
                                     &username, &password, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (username, ==, v->username);
  g_assert_cmpstr (password, ==, v->password);
}

static void
test_another_connid_changes_the_password (void)
{
  const Vector *v = &vectors[0];
  g_autofree char *u1 = NULL, *p1 = NULL, *u2 = NULL, *p2 = NULL;

  g_assert_true (ota_signin_compute (v->product_id, v->device_name, v->device_secret, "a1B2c", v->expiry, &u1,
                                     &p1, NULL));
  g_assert_true (ota_signin_compute (v->product_id, v->device_name, v->device_secret, "a1B2d", v->expiry, &u2,
                                     &p2, NULL));
  g_assert_cmpstr (u1, !=, u2);
  g_assert_cmpstr (p1, !=, p2);
}

static void
test_bad_inputs_are_refused (void)
{
  const char *bad_connids[] = { "", "abcd", "abcdef", "ab-cd", "ab cd", "ab;cd", "abcd\xc3\xa9" };
  char *username = NULL, *password = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (bad_connids); i++) {
    g_autoptr (GError) error = NULL;
    g_assert_false (ota_signin_compute ("P", "d", "MTIz", bad_connids[i], 1, &username, &password, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "connid"));
  }
  {
    g_autoptr (GError) error = NULL;
    g_assert_false (ota_signin_compute ("P", "d", "MTIz", "abcde", 0, &username, &password, &error));
    g_assert_nonnull (strstr (error->message, "expiry"));
  }
  {
    g_autoptr (GError) error = NULL;
    g_assert_false (ota_signin_compute ("P", "d", "", "abcde", 1, &username, &password, &error));
    g_assert_nonnull (strstr (error->message, "device_secret"));
  }
  g_assert_null (username);
  g_assert_null (password);
}

static void
test_fresh_connids_are_five_alphanumerics_and_differ (void)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (int i = 0; i < 200; i++) {
    char *connid = ota_signin_new_connid ();

    g_assert_cmpuint (strlen (connid), ==, OTA_SIGNIN_CONNID_LENGTH);
    for (const char *p = connid; *p != '\0'; p++)
      g_assert_true (g_ascii_isalnum (*p));
    g_hash_table_add (seen, connid);
  }
  /* 62^5 values: 200 draws practically never repeat (p < 2e-5). */
  g_assert_cmpuint (g_hash_table_size (seen), >=, 199);
}

static void
test_fixed_hook_parses_connid_and_expiry (void)
{
  const char *bad[] = { "", "abcde", "abcde:", ":123", "abcd:123", "abcde:0", "abcde:12x", "abcde:-5", "abc-e:1" };
  g_autofree char *connid = NULL;
  gint64 expiry = 0;

  g_assert_true (ota_signin_parse_fixed ("Ab3dE:1700000000", &connid, &expiry, NULL));
  g_assert_cmpstr (connid, ==, "Ab3dE");
  g_assert_cmpint (expiry, ==, 1700000000);
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    char *c = NULL;
    gint64 e = 0;

    g_assert_false (ota_signin_parse_fixed (bad[i], &c, &e, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_assert_null (c);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (vectors); i++) {
    g_autofree char *path = g_strdup_printf ("/signin/matches-openssl/%s", vectors[i].name);
    g_test_add_data_func (path, &vectors[i], test_signed_credentials_match_openssl);
  }
  g_test_add_func ("/signin/another-connid-changes-the-password", test_another_connid_changes_the_password);
  g_test_add_func ("/signin/bad-inputs-are-refused", test_bad_inputs_are_refused);
  g_test_add_func ("/signin/fresh-connids-are-five-alphanumerics-and-differ",
                   test_fresh_connids_are_five_alphanumerics_and_differ);
  g_test_add_func ("/signin/fixed-hook-parses-connid-and-expiry", test_fixed_hook_parses_connid_and_expiry);
  return g_test_run ();
}
