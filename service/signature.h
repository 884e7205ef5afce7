/* Signed images: the statement a device maker's key signs, carried in the
 * offer's user_defined as the member "iv_ota_sig", and its verification
 * against the agent's trusted keys. docs/signed-images.md describes the
 * format for people who sign.
 *
 * The parser and the canonical message are pure (bytes in, structs out, no
 * I/O) and fuzzed alone; verification uses libcrypto's EVP Ed25519. Nothing
 * here keeps global state: any thread may use it, one keyring at a time. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OTA_SIGNATURE_ERROR (ota_signature_error_quark ())

/**
 * OtaSignatureError:
 * @OTA_SIGNATURE_ERROR_MISSING: user_defined carries no "iv_ota_sig"
 * @OTA_SIGNATURE_ERROR_MALFORMED: the statement is not well-formed
 * @OTA_SIGNATURE_ERROR_UNKNOWN_KEY: signed by a key that is not trusted
 * @OTA_SIGNATURE_ERROR_MISMATCH: signed for another module, version or size
 * @OTA_SIGNATURE_ERROR_BAD_SIGNATURE: the signature does not verify
 * @OTA_SIGNATURE_ERROR_ROLLBACK: a security version below the installed one
 * @OTA_SIGNATURE_ERROR_KEY: a key file is unreadable or not an Ed25519 key
 */
typedef enum {
  OTA_SIGNATURE_ERROR_MISSING,
  OTA_SIGNATURE_ERROR_MALFORMED,
  OTA_SIGNATURE_ERROR_UNKNOWN_KEY,
  OTA_SIGNATURE_ERROR_MISMATCH,
  OTA_SIGNATURE_ERROR_BAD_SIGNATURE,
  OTA_SIGNATURE_ERROR_ROLLBACK,
  OTA_SIGNATURE_ERROR_KEY,
} OtaSignatureError;

GQuark ota_signature_error_quark (void);

/* The member of user_defined that holds the statement. */
#define OTA_SIGNATURE_MEMBER "iv_ota_sig"
/* The statement format this code reads and writes ("v"). */
#define OTA_SIGNATURE_FORMAT 1
#define OTA_SIGNATURE_KEY_ID_LEN 16 /* hex digits */
#define OTA_SIGNATURE_SHA256_LEN 64 /* hex digits */
#define OTA_SIGNATURE_ED25519_LEN 64 /* bytes */
#define OTA_SIGNATURE_SECURITY_VERSION_MAX G_MAXUINT32

typedef struct {
  char key_id[OTA_SIGNATURE_KEY_ID_LEN + 1];  /* lowercase hex */
  char *module;                               /* "" for the main firmware */
  char *version;
  guint64 size;
  char sha256[OTA_SIGNATURE_SHA256_LEN + 1];  /* lowercase hex */
  guint32 security_version;
  guint8 signature[OTA_SIGNATURE_ED25519_LEN];
} OtaSignatureStatement;

void ota_signature_statement_clear (OtaSignatureStatement *statement);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaSignatureStatement, ota_signature_statement_clear)

/**
 * ota_signature_statement_parse:
 * @user_defined: the offer's user_defined as JSON text: an object with the
 *     member "iv_ota_sig", or a JSON string holding such an object's text
 *     (consoles that pass the field on as a string); other members are the
 *     app's and are ignored. Not necessarily NUL-terminated.
 * @length: its length in bytes
 * @statement: (out caller-allocates): filled on success; clear with
 *     ota_signature_statement_clear()
 *
 * Pure. Every member of the statement is required, typed and range-checked,
 * unknown members are refused. Errors: %OTA_SIGNATURE_ERROR_MISSING when
 * there is no statement at all, %OTA_SIGNATURE_ERROR_MALFORMED naming the
 * member otherwise.
 */
gboolean ota_signature_statement_parse (const char *user_defined, gsize length,
                                        OtaSignatureStatement *statement, GError **error);

/* The exact bytes that are signed, newly allocated, NUL-terminated (the NUL
 * is not part of them): see docs/signed-images.md. */
char *ota_signature_message (const OtaSignatureStatement *statement, gsize *length);

/* The value of "iv_ota_sig" as compact JSON text, newly allocated. */
char *ota_signature_statement_to_json (const OtaSignatureStatement *statement);

/* Key id of a raw 32-byte Ed25519 public key: the first 8 bytes of its
 * SHA-256, in hex. */
void ota_signature_key_id (const guint8 raw_public_key[32], char key_id[OTA_SIGNATURE_KEY_ID_LEN + 1]);

/* ---- trusted keys ---- */

typedef struct _OtaKeyring OtaKeyring;

OtaKeyring *ota_keyring_new (void);
void ota_keyring_free (OtaKeyring *keyring);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaKeyring, ota_keyring_free)

/* Adds the Ed25519 public key in PEM @data (SubjectPublicKeyInfo, as
 * `iv-ota-sign keygen` writes KEY.pub); @origin names it in messages and in
 * ota_keyring_get_origin(). %OTA_SIGNATURE_ERROR_KEY when it is not one, or
 * is already in the keyring. */
gboolean ota_keyring_add_pem (OtaKeyring *keyring, const char *data, gsize length, const char *origin,
                              GError **error);

/* Reads each file of @paths and adds its key; the first failure is an
 * %OTA_SIGNATURE_ERROR_KEY that names the file. */
gboolean ota_keyring_add_files (OtaKeyring *keyring, const char *const *paths, GError **error);

guint ota_keyring_get_size (const OtaKeyring *keyring);

/* Where the key with @key_id came from (the file), NULL when not trusted. */
const char *ota_keyring_get_origin (const OtaKeyring *keyring, const char *key_id);

/**
 * ota_keyring_check:
 * @user_defined: (nullable): the offer's user_defined JSON text
 * @module, @version, @size: what the offer names
 * @statement: (out caller-allocates): on success, the verified statement
 *
 * The whole check of an offer before anything is downloaded: a well-formed
 * statement, by a trusted key, for exactly this module, version and size,
 * whose signature verifies. The error names the reason (its code says which
 * kind). The image's SHA-256 is the caller's to compare once downloaded.
 */
gboolean ota_keyring_check (const OtaKeyring *keyring, const char *user_defined, const char *module,
                            const char *version, guint64 size, OtaSignatureStatement *statement,
                            GError **error);

G_END_DECLS
