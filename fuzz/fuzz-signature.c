/* ota_signature_statement_parse() and ota_keyring_check() on arbitrary
 * user_defined texts: an accepted statement's fields are valid (module and
 * version become lines of the signed message, so no newline may pass), its
 * JSON form parses back to the same statement, and the signed message is the
 * seven documented lines. No input verifies against the fixed key below
 * unless it carries a real signature by it (the seeds have one). */
#include "protocol.h"
#include "signature.h"

#include "fuzz-common.h"

#include <string.h>

/* The public half of the key that signed corpus/fuzz-signature/signed*.json. */
static const char trusted_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                  "MCowBQYDK2VwAyEAt/o72Ccmt7hBAJ9lU0yokV7ZgJlJROYfBbS6G0Hr3HQ=\n"
                                  "-----END PUBLIC KEY-----\n";

static gboolean
is_lower_hex (const char *text, gsize length)
{
  return strlen (text) == length && strspn (text, "0123456789abcdef") == length;
}

static void
check_statement (const OtaSignatureStatement *st)
{
  g_autofree char *json = NULL;
  g_autofree char *wrapped = NULL;
  g_autofree char *message = NULL;
  g_autoptr (GError) error = NULL;
  OtaSignatureStatement again = { 0 };
  gsize length = 0, lines = 0;

  FUZZ_CHECK (is_lower_hex (st->key_id, OTA_SIGNATURE_KEY_ID_LEN));
  FUZZ_CHECK (is_lower_hex (st->sha256, OTA_SIGNATURE_SHA256_LEN));
  FUZZ_CHECK (ota_protocol_module_is_valid (st->module));
  FUZZ_CHECK (ota_protocol_version_is_valid (st->version));
  FUZZ_CHECK (st->size >= 1 && st->size <= OTA_PROTOCOL_FILE_SIZE_LIMIT);
  message = ota_signature_message (st, &length);
  FUZZ_CHECK (strlen (message) == length);
  for (gsize i = 0; i < length; i++)
    lines += message[i] == '\n';
  FUZZ_CHECK (lines == 7 && message[length - 1] == '\n');
  json = ota_signature_statement_to_json (st);
  wrapped = g_strdup_printf ("{\"" OTA_SIGNATURE_MEMBER "\":%s}", json);
  FUZZ_CHECK (ota_signature_statement_parse (wrapped, strlen (wrapped), &again, &error));
  FUZZ_CHECK (strcmp (again.key_id, st->key_id) == 0 && strcmp (again.module, st->module) == 0 &&
              strcmp (again.version, st->version) == 0 && again.size == st->size &&
              strcmp (again.sha256, st->sha256) == 0 && again.security_version == st->security_version &&
              memcmp (again.signature, st->signature, sizeof again.signature) == 0);
  ota_signature_statement_clear (&again);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static OtaKeyring *keyring;
  OtaSignatureStatement st = { 0 };
  OtaSignatureStatement checked = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;

  if (keyring == NULL) {
    keyring = ota_keyring_new ();
    FUZZ_CHECK (ota_keyring_add_pem (keyring, trusted_pem, strlen (trusted_pem), "fuzz.pub", NULL));
  }
  if (!ota_signature_statement_parse ((const char *) data, size, &st, &error)) {
    FUZZ_CHECK (error != NULL && error->domain == OTA_SIGNATURE_ERROR);
    FUZZ_CHECK (st.module == NULL && st.version == NULL);
    return 0;
  }
  check_statement (&st);
  /* The agent's path: a NUL-terminated copy, checked against what the statement claims. */
  text = g_strndup ((const char *) data, size);
  if (strlen (text) == size &&
      ota_keyring_check (keyring, text, st.module, st.version, st.size, &checked, NULL)) {
    FUZZ_CHECK (strcmp (checked.sha256, st.sha256) == 0);
    ota_signature_statement_clear (&checked);
  }
  ota_signature_statement_clear (&st);
  return 0;
}
