/* What failed, as data: the fail_kind of GetStatus and of the Modules
 * property while a module is in state "fail". Chosen where the failure
 * happens (a GError domain and code, an HTTP status, the path that failed),
 * never from the text of a message, so that rewording a message changes
 * nothing an app sees. */
#pragma once

#include "common/ota-vocabulary.h"

#include <glib.h>

G_BEGIN_DECLS

/**
 * OtaFailKind:
 * @OTA_FAIL_KIND_NONE: no failure ("")
 * @OTA_FAIL_KIND_TIMEOUT: the download stalled or timed out until its retries ran out (fail -1)
 * @OTA_FAIL_KIND_NOT_FOUND: HTTP 404 (fail -2)
 * @OTA_FAIL_KIND_FORBIDDEN: HTTP 403, e.g. an expired signature (fail -3)
 * @OTA_FAIL_KIND_CHECKSUM: the image's MD5 is not the offered one (fail -4)
 * @OTA_FAIL_KIND_SIZE: the image's size is not the offered one, or larger than allowed
 * @OTA_FAIL_KIND_NO_SPACE: not enough free space for the image
 * @OTA_FAIL_KIND_WRITE: writing or syncing the image failed
 * @OTA_FAIL_KIND_OPEN: the image (or its directory) cannot be opened or created
 * @OTA_FAIL_KIND_HTTP: another HTTP or network failure, after the retries
 * @OTA_FAIL_KIND_REFUSED: the agent's policy refused the offer (e.g. plain http under require_https)
 * @OTA_FAIL_KIND_APP: the owner reported "fail"
 * @OTA_FAIL_KIND_VERSION: after burning or a reboot the app came back with another version
 * @OTA_FAIL_KIND_INSTALL: an installer failed
 * @OTA_FAIL_KIND_OTHER: anything else
 *
 * The strings (ota_fail_kind_to_string()) are a contract with applications:
 * never rename one; new kinds may be added.
 */
typedef enum {
  OTA_FAIL_KIND_NONE = OTA_VOCAB_FAIL_NONE,
  OTA_FAIL_KIND_TIMEOUT = OTA_VOCAB_FAIL_TIMEOUT,
  OTA_FAIL_KIND_NOT_FOUND = OTA_VOCAB_FAIL_NOT_FOUND,
  OTA_FAIL_KIND_FORBIDDEN = OTA_VOCAB_FAIL_FORBIDDEN,
  OTA_FAIL_KIND_CHECKSUM = OTA_VOCAB_FAIL_CHECKSUM,
  OTA_FAIL_KIND_SIZE = OTA_VOCAB_FAIL_SIZE,
  OTA_FAIL_KIND_NO_SPACE = OTA_VOCAB_FAIL_NO_SPACE,
  OTA_FAIL_KIND_WRITE = OTA_VOCAB_FAIL_WRITE,
  OTA_FAIL_KIND_OPEN = OTA_VOCAB_FAIL_OPEN,
  OTA_FAIL_KIND_HTTP = OTA_VOCAB_FAIL_HTTP,
  OTA_FAIL_KIND_REFUSED = OTA_VOCAB_FAIL_REFUSED,
  OTA_FAIL_KIND_APP = OTA_VOCAB_FAIL_APP,
  OTA_FAIL_KIND_VERSION = OTA_VOCAB_FAIL_VERSION,
  OTA_FAIL_KIND_INSTALL = OTA_VOCAB_FAIL_INSTALL,
  OTA_FAIL_KIND_OTHER = OTA_VOCAB_FAIL_OTHER,
} OtaFailKind;

/* "" for OTA_FAIL_KIND_NONE, "other" for a value out of range. */
const char *ota_fail_kind_to_string (OtaFailKind kind);

/* FALSE for a string that names no kind. */
gboolean ota_fail_kind_from_string (const char *text, OtaFailKind *kind);

/* The kind a cloud result code implies on its own: -1..-4 name one, -5
 * (and anything else) says only "failed", which is OTA_FAIL_KIND_OTHER. */
OtaFailKind ota_fail_kind_from_result_code (int result_code);

G_END_DECLS
