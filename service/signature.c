/* Signed images: statement parsing, the canonical signed message, trusted
 * keys and Ed25519 verification (OpenSSL 3 EVP).
 *
 * What is signed is never the JSON text: it is a byte string rebuilt from the
 * parsed values (ota_signature_message()), so no JSON spelling, member order
 * or escaping can change what a signature covers, and the first line
 * separates it from anything else the same key might ever sign. */
#include "signature.h"

#include "protocol.h"
#include "util.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

/* The first line of every signed message: signatures made for anything else
 * with the same key never verify as image signatures. */
#define OTA_SIGNATURE_DOMAIN "iv-ota image signature v1"
/* user_defined can be as long as a cloud message; a statement is ~330 bytes. */
#define OTA_SIGNATURE_MAX_INPUT (64 * 1024)
/* json-glib recurses once per level: the text is bounded before it parses. */
#define OTA_SIGNATURE_MAX_DEPTH 32
#define OTA_SIGNATURE_MAX_KEY_FILE (16 * 1024)

G_DEFINE_QUARK (ota-signature-error-quark, ota_signature_error)

typedef struct {
  char key_id[OTA_SIGNATURE_KEY_ID_LEN + 1];
  char *origin;
  EVP_PKEY *pkey;
} OtaTrustedKey;

struct _OtaKeyring {
  GPtrArray *keys; /* of OtaTrustedKey */
};

void
ota_signature_statement_clear (OtaSignatureStatement *statement)
{
  g_clear_pointer (&statement->module, g_free);
  g_clear_pointer (&statement->version, g_free);
  memset (statement, 0, sizeof *statement);
}

/* ---- parsing ---- */

static gboolean G_GNUC_PRINTF (3, 4)
set_error (GError **error, OtaSignatureError code, const char *format, ...)
{
  va_list args;
  GError *local_error;

  va_start (args, format);
  local_error = g_error_new_valist (OTA_SIGNATURE_ERROR, code, format, args);
  va_end (args);
  g_propagate_error (error, local_error);
  return FALSE;
}

static JsonParser *
parse_json (const char *data, gsize length)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();

  if (length > OTA_SIGNATURE_MAX_INPUT || memchr (data, '\0', length) != NULL ||
      !ota_json_nesting_is_bounded (data, length, OTA_SIGNATURE_MAX_DEPTH, FALSE) ||
      !json_parser_load_from_data (parser, data, (gssize) length, NULL) ||
      json_parser_get_root (parser) == NULL)
    return NULL;
  return g_steal_pointer (&parser);
}

/* The statement object inside user_defined; @holder keeps it alive. */
static JsonObject *
find_statement (const char *data, gsize length, JsonParser **holder, GError **error)
{
  g_autoptr (JsonParser) outer = parse_json (data, length);
  JsonNode *root = outer != NULL ? json_parser_get_root (outer) : NULL;
  JsonNode *member;

  /* A console may pass the field on as a string holding the object's text. */
  if (root != NULL && json_node_get_value_type (root) == G_TYPE_STRING) {
    const char *inner = json_node_get_string (root);
    g_autoptr (JsonParser) parsed = parse_json (inner, strlen (inner));

    g_clear_object (&outer);
    outer = g_steal_pointer (&parsed);
    root = outer != NULL ? json_parser_get_root (outer) : NULL;
  }
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root) ||
      (member = json_object_get_member (json_node_get_object (root), OTA_SIGNATURE_MEMBER)) == NULL) {
    set_error (error, OTA_SIGNATURE_ERROR_MISSING, "no %s in user_defined", OTA_SIGNATURE_MEMBER);
    return NULL;
  }
  if (!JSON_NODE_HOLDS_OBJECT (member)) {
    set_error (error, OTA_SIGNATURE_ERROR_MALFORMED, "%s is not an object", OTA_SIGNATURE_MEMBER);
    return NULL;
  }
  *holder = g_steal_pointer (&outer);
  return json_node_get_object (member);
}

static const char *
get_string (JsonObject *object, const char *name, GError **error)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_STRING) {
    set_error (error, OTA_SIGNATURE_ERROR_MALFORMED, "%s: \"%s\" must be a string",
               OTA_SIGNATURE_MEMBER, name);
    return NULL;
  }
  return json_node_get_string (node);
}

static gboolean
get_integer (JsonObject *object, const char *name, guint64 min, guint64 max, guint64 *value,
             GError **error)
{
  JsonNode *node = json_object_get_member (object, name);
  gint64 v;

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_INT64 ||
      (v = json_node_get_int (node)) < 0 || (guint64) v < min || (guint64) v > max)
    return set_error (error, OTA_SIGNATURE_ERROR_MALFORMED,
                      "%s: \"%s\" must be an integer in %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT,
                      OTA_SIGNATURE_MEMBER, name, min, max);
  *value = (guint64) v;
  return TRUE;
}

static gboolean
is_lower_hex (const char *text, gsize length)
{
  gsize i;

  for (i = 0; text[i] != '\0'; i++) {
    if (!g_ascii_isdigit (text[i]) && !(text[i] >= 'a' && text[i] <= 'f'))
      return FALSE;
  }
  return i == length;
}

static gboolean
get_hex (JsonObject *object, const char *name, char *out, gsize length, GError **error)
{
  const char *text = get_string (object, name, error);

  if (text == NULL)
    return FALSE;
  if (!is_lower_hex (text, length))
    return set_error (error, OTA_SIGNATURE_ERROR_MALFORMED,
                      "%s: \"%s\" must be %zu lowercase hex digits", OTA_SIGNATURE_MEMBER, name, length);
  memcpy (out, text, length + 1);
  return TRUE;
}

/* Standard base64 with padding, exactly 64 bytes, in its one canonical spelling. */
static gboolean
get_signature (JsonObject *object, guint8 out[OTA_SIGNATURE_ED25519_LEN], GError **error)
{
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char *text = get_string (object, "sig", error);
  g_autofree guint8 *raw = NULL;
  g_autofree char *again = NULL;
  gsize length;

  if (text == NULL)
    return FALSE;
  length = strlen (text);
  if (length == 88 && strspn (text, alphabet) == 86 && strcmp (text + 86, "==") == 0) {
    raw = g_base64_decode (text, &length);
    again = g_base64_encode (raw, length);
  }
  if (raw == NULL || length != OTA_SIGNATURE_ED25519_LEN || strcmp (again, text) != 0)
    return set_error (error, OTA_SIGNATURE_ERROR_MALFORMED,
                      "%s: \"sig\" must be a %d-byte signature in base64", OTA_SIGNATURE_MEMBER,
                      OTA_SIGNATURE_ED25519_LEN);
  memcpy (out, raw, OTA_SIGNATURE_ED25519_LEN);
  return TRUE;
}

static const char *const statement_members[] = {
  "v", "key", "module", "version", "size", "sha256", "security_version", "sig",
};

static gboolean
check_members (JsonObject *object, GError **error)
{
  g_autoptr (GList) names = json_object_get_members (object);

  for (GList *l = names; l != NULL; l = l->next) {
    gboolean known = FALSE;

    for (gsize i = 0; i < G_N_ELEMENTS (statement_members); i++)
      known = known || g_str_equal (l->data, statement_members[i]);
    if (!known)
      return set_error (error, OTA_SIGNATURE_ERROR_MALFORMED, "%s: unknown member \"%.32s\"",
                        OTA_SIGNATURE_MEMBER, (const char *) l->data);
  }
  return TRUE;
}

static gboolean
read_names (JsonObject *object, OtaSignatureStatement *statement, GError **error)
{
  const char *module = get_string (object, "module", error);
  const char *version = module != NULL ? get_string (object, "version", error) : NULL;

  if (version == NULL)
    return FALSE;
  /* Both go into the signed message line by line: only validated names. */
  if (!ota_protocol_module_is_valid (module))
    return set_error (error, OTA_SIGNATURE_ERROR_MALFORMED, "%s: invalid \"module\"", OTA_SIGNATURE_MEMBER);
  if (!ota_protocol_version_is_valid (version))
    return set_error (error, OTA_SIGNATURE_ERROR_MALFORMED, "%s: invalid \"version\"", OTA_SIGNATURE_MEMBER);
  statement->module = g_strdup (module);
  statement->version = g_strdup (version);
  return TRUE;
}

static gboolean
read_statement (JsonObject *object, OtaSignatureStatement *statement, GError **error)
{
  guint64 format = 0, security_version = 0;

  if (!check_members (object, error) ||
      !get_integer (object, "v", 0, G_MAXINT64, &format, error))
    return FALSE;
  if (format != OTA_SIGNATURE_FORMAT)
    return set_error (error, OTA_SIGNATURE_ERROR_MALFORMED,
                      "%s: \"v\": format %" G_GUINT64_FORMAT " is not supported (this agent reads %d)",
                      OTA_SIGNATURE_MEMBER, format, OTA_SIGNATURE_FORMAT);
  if (!get_hex (object, "key", statement->key_id, OTA_SIGNATURE_KEY_ID_LEN, error) ||
      !read_names (object, statement, error) ||
      !get_integer (object, "size", 1, OTA_PROTOCOL_FILE_SIZE_LIMIT, &statement->size, error) ||
      !get_hex (object, "sha256", statement->sha256, OTA_SIGNATURE_SHA256_LEN, error) ||
      !get_integer (object, "security_version", 0, OTA_SIGNATURE_SECURITY_VERSION_MAX,
                    &security_version, error) ||
      !get_signature (object, statement->signature, error))
    return FALSE;
  statement->security_version = (guint32) security_version;
  return TRUE;
}

gboolean
ota_signature_statement_parse (const char *user_defined, gsize length, OtaSignatureStatement *statement,
                               GError **error)
{
  g_autoptr (JsonParser) holder = NULL;
  g_auto (OtaSignatureStatement) parsed = { 0 };
  JsonObject *object;

  g_return_val_if_fail (statement != NULL, FALSE);
  object = find_statement (user_defined != NULL ? user_defined : "", user_defined != NULL ? length : 0,
                           &holder, error);
  if (object == NULL || !read_statement (object, &parsed, error))
    return FALSE;
  *statement = parsed;
  memset (&parsed, 0, sizeof parsed);
  return TRUE;
}

/* ---- the signed bytes and the JSON form ---- */

char *
ota_signature_message (const OtaSignatureStatement *statement, gsize *length)
{
  GString *message = NULL;

  g_return_val_if_fail (statement != NULL, NULL);

  message = g_string_new (OTA_SIGNATURE_DOMAIN "\n");
  /* One "name value" line each, in this order; no value holds a space or a newline. */
  g_string_append_printf (message, "key %s\n", statement->key_id);
  g_string_append_printf (message, "module %s\n", statement->module);
  g_string_append_printf (message, "version %s\n", statement->version);
  g_string_append_printf (message, "size %" G_GUINT64_FORMAT "\n", statement->size);
  g_string_append_printf (message, "sha256 %s\n", statement->sha256);
  g_string_append_printf (message, "security_version %u\n", statement->security_version);
  if (length != NULL)
    *length = message->len;
  return g_string_free (message, FALSE);
}

char *
ota_signature_statement_to_json (const OtaSignatureStatement *statement)
{
  g_return_val_if_fail (statement != NULL, NULL);

  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *sig = g_base64_encode (statement->signature, OTA_SIGNATURE_ED25519_LEN);

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "v");
  json_builder_add_int_value (builder, OTA_SIGNATURE_FORMAT);
  json_builder_set_member_name (builder, "key");
  json_builder_add_string_value (builder, statement->key_id);
  json_builder_set_member_name (builder, "module");
  json_builder_add_string_value (builder, statement->module);
  json_builder_set_member_name (builder, "version");
  json_builder_add_string_value (builder, statement->version);
  json_builder_set_member_name (builder, "size");
  json_builder_add_int_value (builder, (gint64) statement->size);
  json_builder_set_member_name (builder, "sha256");
  json_builder_add_string_value (builder, statement->sha256);
  json_builder_set_member_name (builder, "security_version");
  json_builder_add_int_value (builder, statement->security_version);
  json_builder_set_member_name (builder, "sig");
  json_builder_add_string_value (builder, sig);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  return json_to_string (root, FALSE);
}

void
ota_signature_key_id (const guint8 raw_public_key[32], char key_id[OTA_SIGNATURE_KEY_ID_LEN + 1])
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  const char *hex;

  g_checksum_update (checksum, raw_public_key, 32);
  hex = g_checksum_get_string (checksum);
  memcpy (key_id, hex, OTA_SIGNATURE_KEY_ID_LEN);
  key_id[OTA_SIGNATURE_KEY_ID_LEN] = '\0';
}

/* ---- trusted keys ---- */

static void
trusted_key_free (gpointer data)
{
  OtaTrustedKey *key = data;

  EVP_PKEY_free (key->pkey);
  g_free (key->origin);
  g_free (key);
}

OtaKeyring *
ota_keyring_new (void)
{
  OtaKeyring *keyring = g_new0 (OtaKeyring, 1);

  keyring->keys = g_ptr_array_new_with_free_func (trusted_key_free);
  return keyring;
}

void
ota_keyring_free (OtaKeyring *keyring)
{
  if (keyring == NULL)
    return;
  g_ptr_array_unref (keyring->keys);
  g_free (keyring);
}

static const OtaTrustedKey *
keyring_find (const OtaKeyring *keyring, const char *key_id)
{
  for (guint i = 0; i < keyring->keys->len; i++) {
    const OtaTrustedKey *key = g_ptr_array_index (keyring->keys, i);

    if (strcmp (key->key_id, key_id) == 0)
      return key;
  }
  return NULL;
}

static EVP_PKEY *
read_public_key (const char *data, gsize length)
{
  BIO *bio;
  EVP_PKEY *pkey;

  if (length > OTA_SIGNATURE_MAX_KEY_FILE)
    return NULL;
  bio = BIO_new_mem_buf (data, (int) length);
  pkey = bio != NULL ? PEM_read_bio_PUBKEY (bio, NULL, NULL, NULL) : NULL;
  BIO_free (bio);
  return pkey;
}

gboolean
ota_keyring_add_pem (OtaKeyring *keyring, const char *data, gsize length, const char *origin,
                     GError **error)
{
  EVP_PKEY *pkey = read_public_key (data, length);
  guint8 raw[32];
  size_t raw_length = sizeof raw;
  OtaTrustedKey *key;
  const OtaTrustedKey *twin;

  g_return_val_if_fail (keyring != NULL, FALSE);

  if (pkey == NULL || EVP_PKEY_get_base_id (pkey) != EVP_PKEY_ED25519 ||
      EVP_PKEY_get_raw_public_key (pkey, raw, &raw_length) != 1 || raw_length != sizeof raw) {
    EVP_PKEY_free (pkey);
    return set_error (error, OTA_SIGNATURE_ERROR_KEY,
                      "%s: not an Ed25519 public key in PEM (iv-ota-sign keygen writes one to KEY.pub)",
                      origin);
  }
  key = g_new0 (OtaTrustedKey, 1);
  key->pkey = pkey;
  key->origin = g_strdup (origin);
  ota_signature_key_id (raw, key->key_id);
  if ((twin = keyring_find (keyring, key->key_id)) != NULL) {
    set_error (error, OTA_SIGNATURE_ERROR_KEY, "%s: the same key as %s", origin, twin->origin);
    trusted_key_free (key);
    return FALSE;
  }
  g_ptr_array_add (keyring->keys, key);
  return TRUE;
}

gboolean
ota_keyring_add_files (OtaKeyring *keyring, const char *const *paths, GError **error)
{
  g_return_val_if_fail (keyring != NULL, FALSE);
  for (gsize i = 0; paths != NULL && paths[i] != NULL; i++) {
    g_autofree char *data = NULL;
    g_autoptr (GError) local_error = NULL;
    gsize length = 0;

    if (!g_file_get_contents (paths[i], &data, &length, &local_error))
      return set_error (error, OTA_SIGNATURE_ERROR_KEY, "trusted key %s", local_error->message);
    if (!ota_keyring_add_pem (keyring, data, length, paths[i], error))
      return FALSE;
  }
  return TRUE;
}

guint
ota_keyring_get_size (const OtaKeyring *keyring)
{
  g_return_val_if_fail (keyring != NULL, 0);
  return keyring->keys->len;
}

const char *
ota_keyring_get_origin (const OtaKeyring *keyring, const char *key_id)
{
  g_return_val_if_fail (keyring != NULL, NULL);

  const OtaTrustedKey *key = keyring_find (keyring, key_id);

  return key != NULL ? key->origin : NULL;
}

/* ---- verification ---- */

static gboolean
verify_ed25519 (EVP_PKEY *pkey, const OtaSignatureStatement *statement)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  gsize length = 0;
  g_autofree char *message = ota_signature_message (statement, &length);
  gboolean ok;

  ok = ctx != NULL && EVP_DigestVerifyInit (ctx, NULL, NULL, NULL, pkey) == 1 &&
       EVP_DigestVerify (ctx, statement->signature, OTA_SIGNATURE_ED25519_LEN, (const guint8 *) message,
                         length) == 1;
  EVP_MD_CTX_free (ctx);
  return ok;
}

static gboolean
check_claims (const OtaSignatureStatement *statement, const char *module, const char *version, guint64 size,
              GError **error)
{
  if (g_strcmp0 (statement->module, module) != 0)
    return set_error (error, OTA_SIGNATURE_ERROR_MISMATCH,
                      "signed for module \"%s\", offered for module \"%s\"", statement->module, module);
  if (g_strcmp0 (statement->version, version) != 0)
    return set_error (error, OTA_SIGNATURE_ERROR_MISMATCH, "signed for version %s, offered version %s",
                      statement->version, version);
  if (statement->size != size)
    return set_error (error, OTA_SIGNATURE_ERROR_MISMATCH,
                      "signed for %" G_GUINT64_FORMAT " bytes, offered %" G_GUINT64_FORMAT " bytes",
                      statement->size, size);
  return TRUE;
}

gboolean
ota_keyring_check (const OtaKeyring *keyring, const char *user_defined, const char *module, const char *version,
                   guint64 size, OtaSignatureStatement *statement, GError **error)
{
  g_auto (OtaSignatureStatement) parsed = { 0 };
  const OtaTrustedKey *key;

  g_return_val_if_fail (keyring != NULL, FALSE);
  g_return_val_if_fail (statement != NULL, FALSE);

  if (user_defined == NULL)
    return set_error (error, OTA_SIGNATURE_ERROR_MISSING, "unsigned offer: no user_defined");
  if (!ota_signature_statement_parse (user_defined, strlen (user_defined), &parsed, error))
    return FALSE;
  if ((key = keyring_find (keyring, parsed.key_id)) == NULL)
    return set_error (error, OTA_SIGNATURE_ERROR_UNKNOWN_KEY, "signed by key %s, which is not trusted",
                      parsed.key_id);
  if (!check_claims (&parsed, module, version, size, error))
    return FALSE;
  if (!verify_ed25519 (key->pkey, &parsed))
    return set_error (error, OTA_SIGNATURE_ERROR_BAD_SIGNATURE, "the signature by key %s (%s) does not verify",
                      parsed.key_id, key->origin);
  *statement = parsed;
  memset (&parsed, 0, sizeof parsed);
  return TRUE;
}
