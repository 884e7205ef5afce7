/* The digests of an image as it is read back: MD5 always (the offer names
 * it), SHA-256 too when a signature names it, both fed in one pass over the
 * same bytes (docs/downloads.md). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OTA_MD5_HEX_LENGTH 32
#define OTA_SHA256_HEX_LENGTH 64

typedef struct _OtaDigest OtaDigest;

OtaDigest *ota_digest_new (gboolean with_sha256);
void ota_digest_free (OtaDigest *digest);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaDigest, ota_digest_free)

/* Starts both digests over, as for an empty input. */
void ota_digest_reset (OtaDigest *digest);
void ota_digest_update (OtaDigest *digest, const guint8 *data, gsize length);
gboolean ota_digest_has_sha256 (const OtaDigest *digest);

/* The digests of the bytes so far, in lowercase hex; @digest may go on. */
void ota_digest_get_md5 (const OtaDigest *digest, char hex[OTA_MD5_HEX_LENGTH + 1]);
/* FALSE without SHA-256. */
gboolean ota_digest_get_sha256 (const OtaDigest *digest, char hex[OTA_SHA256_HEX_LENGTH + 1]);

/* On x86-64 our own loops compute MD5 and, with the SHA extensions, SHA-256
 * beside it; elsewhere libcrypto does. For tests, which compare the two ways:
 * whether ours exist here, and turning them off and on (on by default). */
gboolean ota_digest_fast_path_available (void);
void ota_digest_set_fast_path (gboolean use);

G_END_DECLS
