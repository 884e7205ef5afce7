/* Signed images (service/signature.c, service/rollback.c): the statement
 * parser, the exact signed bytes, trusted keys and the whole offer check,
 * and the persisted security version. Keys are made here with OpenSSL. */
#include "rollback.h"
#include "signature.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "baaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

typedef struct {
  EVP_PKEY *pkey;
  char *pub_pem;
  char key_id[OTA_SIGNATURE_KEY_ID_LEN + 1];
} TestKey;

static void
test_key_make (TestKey *key)
{
  BIO *bio = BIO_new (BIO_s_mem ());
  char *data = NULL;
  long length;
  guint8 raw[32];
  size_t raw_length = sizeof raw;

  key->pkey = EVP_PKEY_Q_keygen (NULL, NULL, "ED25519");
  g_assert_nonnull (key->pkey);
  g_assert_cmpint (PEM_write_bio_PUBKEY (bio, key->pkey), ==, 1);
  length = BIO_get_mem_data (bio, &data);
  key->pub_pem = g_strndup (data, (gsize) length);
  BIO_free (bio);
  g_assert_cmpint (EVP_PKEY_get_raw_public_key (key->pkey, raw, &raw_length), ==, 1);
  ota_signature_key_id (raw, key->key_id);
}

static void
test_key_clear (TestKey *key)
{
  EVP_PKEY_free (key->pkey);
  g_free (key->pub_pem);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (TestKey, test_key_clear)

static void
sign (const TestKey *key, OtaSignatureStatement *st)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  gsize length = 0;
  g_autofree char *message = ota_signature_message (st, &length);
  size_t sig_length = OTA_SIGNATURE_ED25519_LEN;

  g_assert_cmpint (EVP_DigestSignInit (ctx, NULL, NULL, NULL, key->pkey), ==, 1);
  g_assert_cmpint (EVP_DigestSign (ctx, st->signature, &sig_length, (const guint8 *) message, length), ==, 1);
  EVP_MD_CTX_free (ctx);
}

/* user_defined for module/version/size/sv, signed by @key, with @extra members
 * (",\"app\":1" say) after iv_ota_sig. */
static char *
signed_user_defined (const TestKey *key, const char *module, const char *version, guint64 size, guint32 sv,
                     const char *extra)
{
  OtaSignatureStatement st = { 0 };
  g_autofree char *json = NULL;

  memcpy (st.key_id, key->key_id, sizeof st.key_id);
  st.module = (char *) module;
  st.version = (char *) version;
  st.size = size;
  memcpy (st.sha256, SHA_A, sizeof st.sha256);
  st.security_version = sv;
  sign (key, &st);
  json = ota_signature_statement_to_json (&st);
  return g_strdup_printf ("{\"iv_ota_sig\":%s%s}", json, extra != NULL ? extra : "");
}

static OtaKeyring *
keyring_of (const TestKey *key)
{
  OtaKeyring *keyring = ota_keyring_new ();
  g_autoptr (GError) error = NULL;

  g_assert_true (ota_keyring_add_pem (keyring, key->pub_pem, strlen (key->pub_pem), "/keys/a.pub", &error));
  g_assert_no_error (error);
  return keyring;
}

/* ---- the signed bytes ---- */

/* The format is a contract with every signer: these exact bytes. */
static void
test_message_is_the_documented_byte_string (void)
{
  OtaSignatureStatement st = {
    .key_id = "0123456789abcdef",
    .module = (char *) "mcu",
    .version = (char *) "2.0.1",
    .size = 708482,
    .sha256 = SHA_A,
    .security_version = 7,
  };
  gsize length = 0;
  g_autofree char *message = ota_signature_message (&st, &length);
  const char *expected = "iv-ota image signature v1\n"
                         "key 0123456789abcdef\n"
                         "module mcu\n"
                         "version 2.0.1\n"
                         "size 708482\n"
                         "sha256 " SHA_A "\n"
                         "security_version 7\n";

  g_assert_cmpstr (message, ==, expected);
  g_assert_cmpuint (length, ==, strlen (expected));
}

/* ---- parsing ---- */

static void
test_parse_round_trip_with_app_members (void)
{
  g_auto (TestKey) key = { 0 };
  g_autofree char *text = NULL;
  g_auto (OtaSignatureStatement) st = { 0 };
  g_autoptr (GError) error = NULL;

  test_key_make (&key);
  text = signed_user_defined (&key, "", "2.0", 1234, 3, ",\"app\":{\"notes\":[1,2]},\"x\":\"y\"");
  g_assert_true (ota_signature_statement_parse (text, strlen (text), &st, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (st.key_id, ==, key.key_id);
  g_assert_cmpstr (st.module, ==, "");
  g_assert_cmpstr (st.version, ==, "2.0");
  g_assert_cmpuint (st.size, ==, 1234);
  g_assert_cmpstr (st.sha256, ==, SHA_A);
  g_assert_cmpuint (st.security_version, ==, 3);
}

/* A console that passes the field on as a JSON string of the object's text. */
static void
test_parse_accepts_the_object_as_a_json_string (void)
{
  g_auto (TestKey) key = { 0 };
  g_autofree char *text = NULL;
  g_autofree char *quoted = NULL;
  g_auto (OtaSignatureStatement) st = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_VALUE);

  test_key_make (&key);
  text = signed_user_defined (&key, "", "2.0", 1234, 0, NULL);
  json_node_set_string (node, text);
  quoted = json_to_string (node, FALSE);
  g_assert_true (quoted[0] == '"');
  g_assert_true (ota_signature_statement_parse (quoted, strlen (quoted), &st, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (st.version, ==, "2.0");
}

static void
test_parse_without_statement_is_missing (void)
{
  const char *cases[] = { "", "{}", "{\"app\":1}", "[1]", "42", "\"text\"", "null", "{\"iv_ota_sigX\":{}}",
                          "not json" };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_auto (OtaSignatureStatement) st = { 0 };
    g_autoptr (GError) error = NULL;

    g_assert_false (ota_signature_statement_parse (cases[i], strlen (cases[i]), &st, &error));
    g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_MISSING);
    g_assert_null (st.version);
  }
}

/* Each member, broken one at a time, is named in the error. */
static void
test_parse_rejects_each_malformed_member (void)
{
  static const char sig[] = "\"sig\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\"";
  struct {
    const char *member;
    const char *statement;
  } cases[] = {
    { "iv_ota_sig", "\"x\"" },
    { "v", "{\"v\":2,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "v", "{\"v\":\"1\",\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "key", "{\"v\":1,\"key\":\"0123456789ABCDEF\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "key", "{\"v\":1,\"key\":\"0123\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "module", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"a\\nb\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "version", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"..\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "version", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "size", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":0,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "size", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1.5,\"sha256\":\"" SHA_A "\",\"security_version\":0,%s}" },
    { "sha256", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"abc\",\"security_version\":0,%s}" },
    { "security_version", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":-1,%s}" },
    { "security_version", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":4294967296,%s}" },
    { "sig", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,\"sig\":\"AAAA\"}" },
    { "extra", "{\"v\":1,\"key\":\"0123456789abcdef\",\"module\":\"\",\"version\":\"2.0\",\"size\":1,\"sha256\":\"" SHA_A "\",\"security_version\":0,\"extra\":1,%s}" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_auto (GStrv) parts = g_strsplit (cases[i].statement, "%s", -1);
    g_autofree char *statement = g_strjoinv (sig, parts);
    g_autofree char *text = g_strdup_printf ("{\"iv_ota_sig\":%s}", statement);
    g_autofree char *quoted = g_strdup_printf ("\"%s\"", cases[i].member);
    g_auto (OtaSignatureStatement) st = { 0 };
    g_autoptr (GError) error = NULL;

    g_test_message ("case %zu: %s", i, text);
    g_assert_false (ota_signature_statement_parse (text, strlen (text), &st, &error));
    g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_MALFORMED);
    if (i > 0)
      g_assert_nonnull (strstr (error->message, quoted));
    g_assert_null (st.version);
  }
}

/* The parser bounds json-glib's recursion and the input size itself. */
static void
test_parse_deep_or_huge_input_is_refused (void)
{
  g_autoptr (GString) deep = g_string_new ("{\"iv_ota_sig\":");
  g_autofree char *huge = g_strnfill (70 * 1024, ' ');
  g_auto (OtaSignatureStatement) st = { 0 };
  g_autoptr (GError) error = NULL;

  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  g_assert_false (ota_signature_statement_parse (deep->str, deep->len, &st, &error));
  g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_MISSING);
  g_clear_error (&error);
  huge[0] = '{';
  g_assert_false (ota_signature_statement_parse (huge, strlen (huge), &st, &error));
  g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_MISSING);
}

/* ---- keys and the whole check ---- */

static void
test_check_accepts_exactly_what_was_signed (void)
{
  g_auto (TestKey) key = { 0 };
  g_autoptr (OtaKeyring) keyring = NULL;
  g_autofree char *text = NULL;
  g_auto (OtaSignatureStatement) st = { 0 };
  g_autoptr (GError) error = NULL;

  test_key_make (&key);
  keyring = keyring_of (&key);
  text = signed_user_defined (&key, "mcu", "2.0", 1234, 5, ",\"app\":true");
  g_assert_true (ota_keyring_check (keyring, text, "mcu", "2.0", 1234, &st, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (st.security_version, ==, 5);
  g_assert_cmpstr (ota_keyring_get_origin (keyring, st.key_id), ==, "/keys/a.pub");
}

static void
assert_check_fails (const OtaKeyring *keyring, const char *text, const char *module, const char *version,
                    guint64 size, int code, const char *needle)
{
  g_auto (OtaSignatureStatement) st = { 0 };
  g_autoptr (GError) error = NULL;

  g_assert_false (ota_keyring_check (keyring, text, module, version, size, &st, &error));
  g_assert_error (error, OTA_SIGNATURE_ERROR, code);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, needle));
  g_assert_null (st.version);
}

/* Replays of a valid statement for another module, version or size, and an unknown key. */
static void
test_check_refuses_replays_and_unknown_keys (void)
{
  g_auto (TestKey) key = { 0 };
  g_auto (TestKey) other = { 0 };
  g_autoptr (OtaKeyring) keyring = NULL;
  g_autofree char *text = NULL;
  g_autofree char *by_other = NULL;

  test_key_make (&key);
  test_key_make (&other);
  keyring = keyring_of (&key);
  text = signed_user_defined (&key, "", "2.0", 1234, 0, NULL);
  by_other = signed_user_defined (&other, "", "2.0", 1234, 0, NULL);
  assert_check_fails (keyring, text, "", "2.1", 1234, OTA_SIGNATURE_ERROR_MISMATCH, "signed for version 2.0");
  assert_check_fails (keyring, text, "mcu", "2.0", 1234, OTA_SIGNATURE_ERROR_MISMATCH, "module \"mcu\"");
  assert_check_fails (keyring, text, "", "2.0", 1235, OTA_SIGNATURE_ERROR_MISMATCH, "signed for 1234 bytes");
  assert_check_fails (keyring, by_other, "", "2.0", 1234, OTA_SIGNATURE_ERROR_UNKNOWN_KEY, other.key_id);
  assert_check_fails (keyring, NULL, "", "2.0", 1234, OTA_SIGNATURE_ERROR_MISSING, "unsigned");
  assert_check_fails (keyring, "{\"app\":1}", "", "2.0", 1234, OTA_SIGNATURE_ERROR_MISSING, "iv_ota_sig");
}

static char *
replace_once (const char *text, const char *from, const char *to)
{
  const char *at = strstr (text, from);

  g_assert_nonnull (at);
  return g_strdup_printf ("%.*s%s%s", (int) (at - text), text, to, at + strlen (from));
}

/* A statement edited after signing (the attacker raises the security
 * version, swaps the hash) or a damaged signature never verifies. */
static void
test_check_refuses_edited_statements (void)
{
  g_auto (TestKey) key = { 0 };
  g_autoptr (OtaKeyring) keyring = NULL;
  g_autofree char *text = NULL;
  g_autofree char *raised = NULL;
  g_autofree char *swapped = NULL;
  g_autofree char *bad_sig = NULL;
  char *sig;

  test_key_make (&key);
  keyring = keyring_of (&key);
  text = signed_user_defined (&key, "", "2.0", 1234, 1, NULL);
  raised = replace_once (text, "\"security_version\":1", "\"security_version\":9");
  swapped = replace_once (text, SHA_A, SHA_B);
  bad_sig = g_strdup (text);
  sig = strstr (bad_sig, "\"sig\":\"") + 7;
  sig[10] = sig[10] == 'A' ? 'B' : 'A';
  assert_check_fails (keyring, raised, "", "2.0", 1234, OTA_SIGNATURE_ERROR_BAD_SIGNATURE, "does not verify");
  assert_check_fails (keyring, swapped, "", "2.0", 1234, OTA_SIGNATURE_ERROR_BAD_SIGNATURE, "/keys/a.pub");
  assert_check_fails (keyring, bad_sig, "", "2.0", 1234, OTA_SIGNATURE_ERROR_BAD_SIGNATURE, "does not verify");
}

/* Rotation: statements by either of two keys verify. */
static void
test_keyring_holds_several_keys (void)
{
  g_auto (TestKey) old_key = { 0 };
  g_auto (TestKey) new_key = { 0 };
  g_autoptr (OtaKeyring) keyring = ota_keyring_new ();
  g_autofree char *by_old = NULL;
  g_autofree char *by_new = NULL;
  g_auto (OtaSignatureStatement) a = { 0 };
  g_auto (OtaSignatureStatement) b = { 0 };
  g_autoptr (GError) error = NULL;

  test_key_make (&old_key);
  test_key_make (&new_key);
  g_assert_true (ota_keyring_add_pem (keyring, old_key.pub_pem, strlen (old_key.pub_pem), "old.pub", NULL));
  g_assert_true (ota_keyring_add_pem (keyring, new_key.pub_pem, strlen (new_key.pub_pem), "new.pub", NULL));
  g_assert_cmpuint (ota_keyring_get_size (keyring), ==, 2);
  by_old = signed_user_defined (&old_key, "", "2.0", 10, 0, NULL);
  by_new = signed_user_defined (&new_key, "", "2.0", 10, 0, NULL);
  g_assert_true (ota_keyring_check (keyring, by_old, "", "2.0", 10, &a, &error));
  g_assert_true (ota_keyring_check (keyring, by_new, "", "2.0", 10, &b, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (ota_keyring_get_origin (keyring, a.key_id), ==, "old.pub");
  g_assert_cmpstr (ota_keyring_get_origin (keyring, b.key_id), ==, "new.pub");
  /* The same key twice is a configuration mistake worth naming. */
  g_assert_false (ota_keyring_add_pem (keyring, new_key.pub_pem, strlen (new_key.pub_pem), "again.pub", &error));
  g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_KEY);
  g_assert_nonnull (strstr (error->message, "new.pub"));
}

static void
test_keyring_refuses_other_keys_naming_the_file (void)
{
  g_autoptr (OtaKeyring) keyring = ota_keyring_new ();
  EVP_PKEY *ec = EVP_PKEY_Q_keygen (NULL, NULL, "EC", "P-256");
  BIO *bio = BIO_new (BIO_s_mem ());
  char *data = NULL;
  long length;
  g_autofree char *ec_pem = NULL;
  g_autofree char *dir = g_dir_make_tmp ("signature-XXXXXX", NULL);
  g_autofree char *missing = g_build_filename (dir, "missing.pub", NULL);
  const char *paths[] = { missing, NULL };
  g_autoptr (GError) error = NULL;

  g_assert_cmpint (PEM_write_bio_PUBKEY (bio, ec), ==, 1);
  length = BIO_get_mem_data (bio, &data);
  ec_pem = g_strndup (data, (gsize) length);
  BIO_free (bio);
  EVP_PKEY_free (ec);
  g_assert_false (ota_keyring_add_pem (keyring, ec_pem, strlen (ec_pem), "/etc/ec.pub", &error));
  g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_KEY);
  g_assert_nonnull (strstr (error->message, "/etc/ec.pub: not an Ed25519 public key"));
  g_clear_error (&error);
  g_assert_false (ota_keyring_add_pem (keyring, "garbage", 7, "/etc/junk.pub", &error));
  g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_KEY);
  g_clear_error (&error);
  g_assert_false (ota_keyring_add_files (keyring, paths, &error));
  g_assert_error (error, OTA_SIGNATURE_ERROR, OTA_SIGNATURE_ERROR_KEY);
  g_assert_nonnull (strstr (error->message, missing));
  g_assert_cmpuint (ota_keyring_get_size (keyring), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* ---- the persisted security version ---- */

static void
test_rollback_state_round_trip_and_damage (void)
{
  g_autofree char *dir = g_dir_make_tmp ("rollback-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "security_mcu.json", NULL);
  OtaRollbackState saved = { 4, (char *) "3.0", 6 };
  g_auto (OtaRollbackState) loaded = { 0 };
  g_auto (OtaRollbackState) none = { 0 };
  g_autoptr (GError) error = NULL;

  /* Nothing installed yet: zero, no error. */
  g_assert_true (ota_rollback_state_load (dir, "mcu", &none, &error));
  g_assert_cmpuint (none.installed, ==, 0);
  g_assert_null (none.pending_version);
  g_assert_true (ota_rollback_state_save (dir, "mcu", &saved, &error));
  g_assert_no_error (error);
  g_assert_true (ota_rollback_state_load (dir, "mcu", &loaded, &error));
  g_assert_cmpuint (loaded.installed, ==, 4);
  g_assert_cmpstr (loaded.pending_version, ==, "3.0");
  g_assert_cmpuint (loaded.pending, ==, 6);
  /* Damaged: an error naming the file, never "nothing installed". */
  g_assert_true (g_file_set_contents (path, "{\"installed\":-1}", -1, NULL));
  ota_rollback_state_clear (&loaded);
  g_assert_false (ota_rollback_state_load (dir, "mcu", &loaded, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/signature/message-is-the-documented-byte-string", test_message_is_the_documented_byte_string);
  g_test_add_func ("/signature/parse-round-trip-with-app-members", test_parse_round_trip_with_app_members);
  g_test_add_func ("/signature/parse-accepts-the-object-as-a-json-string",
                   test_parse_accepts_the_object_as_a_json_string);
  g_test_add_func ("/signature/parse-without-statement-is-missing", test_parse_without_statement_is_missing);
  g_test_add_func ("/signature/parse-rejects-each-malformed-member", test_parse_rejects_each_malformed_member);
  g_test_add_func ("/signature/parse-deep-or-huge-input-is-refused", test_parse_deep_or_huge_input_is_refused);
  g_test_add_func ("/signature/check-accepts-exactly-what-was-signed", test_check_accepts_exactly_what_was_signed);
  g_test_add_func ("/signature/check-refuses-replays-and-unknown-keys", test_check_refuses_replays_and_unknown_keys);
  g_test_add_func ("/signature/check-refuses-edited-statements", test_check_refuses_edited_statements);
  g_test_add_func ("/signature/keyring-holds-several-keys", test_keyring_holds_several_keys);
  g_test_add_func ("/signature/keyring-refuses-other-keys-naming-the-file",
                   test_keyring_refuses_other_keys_naming_the_file);
  g_test_add_func ("/signature/rollback-state-round-trip-and-damage", test_rollback_state_round_trip_and_damage);
  return g_test_run ();
}
