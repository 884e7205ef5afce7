/* The words the agent, the tools and libiv-ota share: a module's local
 * states (docs/dbus.md), the kinds of a failure (the fail_kind key,
 * docs/dbus.md) and the meanings of the cloud's result codes
 * (docs/protocol.md). One table per vocabulary, here.
 *
 * Header-only and pure (plain C, no GLib, no allocation): libiv-ota builds
 * from it without exporting a symbol (its version script exports only
 * iv_ota_*), and the agent's and the tools' copies cannot drift apart. */
#pragma once

#include <stdbool.h>
#include <string.h>

/* A module's local state, in the order of a cycle. The agent's
 * OtaModuleState takes these values. */
typedef enum {
  OTA_VOCAB_STATE_IDLE,
  OTA_VOCAB_STATE_OFFERED,
  OTA_VOCAB_STATE_DOWNLOADING,
  OTA_VOCAB_STATE_VERIFYING,
  OTA_VOCAB_STATE_READY,
  OTA_VOCAB_STATE_BURNING,
  OTA_VOCAB_STATE_REBOOTING,
  OTA_VOCAB_STATE_DONE,
  OTA_VOCAB_STATE_FAIL,
  OTA_VOCAB_N_STATES,
} OtaVocabState;

/* The name of @state on the bus, or "unknown" out of range. */
static inline const char *
ota_vocab_state_name (int state)
{
  static const char *const names[OTA_VOCAB_N_STATES] = {
    [OTA_VOCAB_STATE_IDLE] = "idle",
    [OTA_VOCAB_STATE_OFFERED] = "offered",
    [OTA_VOCAB_STATE_DOWNLOADING] = "downloading",
    [OTA_VOCAB_STATE_VERIFYING] = "verifying",
    [OTA_VOCAB_STATE_READY] = "ready",
    [OTA_VOCAB_STATE_BURNING] = "burning",
    [OTA_VOCAB_STATE_REBOOTING] = "rebooting",
    [OTA_VOCAB_STATE_DONE] = "done",
    [OTA_VOCAB_STATE_FAIL] = "fail",
  };

  return state >= 0 && state < OTA_VOCAB_N_STATES ? names[state] : "unknown";
}

/* The state named @name, or -1 when @name is none (or NULL). */
static inline int
ota_vocab_state_parse (const char *name)
{
  for (int state = 0; name != NULL && state < OTA_VOCAB_N_STATES; state++) {
    if (strcmp (name, ota_vocab_state_name (state)) == 0)
      return state;
  }
  return -1;
}

/* Whether @name is @state's name. */
static inline bool
ota_vocab_state_is (const char *name, OtaVocabState state)
{
  return ota_vocab_state_parse (name) == (int) state;
}

/* Offered, downloading or verifying: a download the app has not been
 * handed yet. */
static inline bool
ota_vocab_state_is_download (int state)
{
  return state == OTA_VOCAB_STATE_OFFERED || state == OTA_VOCAB_STATE_DOWNLOADING ||
         state == OTA_VOCAB_STATE_VERIFYING;
}

/* The states an app may report with ReportProgress: burning, rebooting,
 * done, fail. */
static inline bool
ota_vocab_state_is_app_report (int state)
{
  return state == OTA_VOCAB_STATE_BURNING || state == OTA_VOCAB_STATE_REBOOTING ||
         state == OTA_VOCAB_STATE_DONE || state == OTA_VOCAB_STATE_FAIL;
}

/* What a cloud result code (0, -1..-5) means, in a few words; "error" for
 * any other code. */
static inline const char *
ota_vocab_result_meaning (int code)
{
  static const char *const meanings[] = {
    "ok", "download timeout", "not found", "signature expired", "MD5 mismatch", "failed",
  };

  return code <= 0 && code > -(int) (sizeof meanings / sizeof meanings[0]) ? meanings[-code] : "error";
}

/* What failed, as the fail_kind key of GetStatus names it. The names are a
 * contract with applications: never rename one; new kinds may be added
 * (before OTA_VOCAB_FAIL_OTHER). The agent's OtaFailKind takes these
 * values. */
typedef enum {
  OTA_VOCAB_FAIL_NONE,
  OTA_VOCAB_FAIL_TIMEOUT,
  OTA_VOCAB_FAIL_NOT_FOUND,
  OTA_VOCAB_FAIL_FORBIDDEN,
  OTA_VOCAB_FAIL_CHECKSUM,
  OTA_VOCAB_FAIL_SIZE,
  OTA_VOCAB_FAIL_NO_SPACE,
  OTA_VOCAB_FAIL_WRITE,
  OTA_VOCAB_FAIL_OPEN,
  OTA_VOCAB_FAIL_HTTP,
  OTA_VOCAB_FAIL_REFUSED,
  OTA_VOCAB_FAIL_APP,
  OTA_VOCAB_FAIL_VERSION,
  OTA_VOCAB_FAIL_INSTALL,
  OTA_VOCAB_FAIL_OTHER,
  OTA_VOCAB_N_FAIL_KINDS,
} OtaVocabFailKind;

/* "" for OTA_VOCAB_FAIL_NONE, "other" for a value out of range. */
static inline const char *
ota_vocab_fail_kind_name (int kind)
{
  static const char *const names[OTA_VOCAB_N_FAIL_KINDS] = {
    [OTA_VOCAB_FAIL_NONE] = "",
    [OTA_VOCAB_FAIL_TIMEOUT] = "timeout",
    [OTA_VOCAB_FAIL_NOT_FOUND] = "not-found",
    [OTA_VOCAB_FAIL_FORBIDDEN] = "forbidden",
    [OTA_VOCAB_FAIL_CHECKSUM] = "checksum",
    [OTA_VOCAB_FAIL_SIZE] = "size",
    [OTA_VOCAB_FAIL_NO_SPACE] = "no-space",
    [OTA_VOCAB_FAIL_WRITE] = "write",
    [OTA_VOCAB_FAIL_OPEN] = "open",
    [OTA_VOCAB_FAIL_HTTP] = "http",
    [OTA_VOCAB_FAIL_REFUSED] = "refused",
    [OTA_VOCAB_FAIL_APP] = "app",
    [OTA_VOCAB_FAIL_VERSION] = "version",
    [OTA_VOCAB_FAIL_INSTALL] = "install",
    [OTA_VOCAB_FAIL_OTHER] = "other",
  };

  return kind >= 0 && kind < OTA_VOCAB_N_FAIL_KINDS ? names[kind] : names[OTA_VOCAB_FAIL_OTHER];
}

/* The kind named @name ("" is OTA_VOCAB_FAIL_NONE), or -1 when @name is
 * none (or NULL): a kind added after this was built, for a client. */
static inline int
ota_vocab_fail_kind_parse (const char *name)
{
  for (int kind = 0; name != NULL && kind < OTA_VOCAB_N_FAIL_KINDS; kind++) {
    if (strcmp (name, ota_vocab_fail_kind_name (kind)) == 0)
      return kind;
  }
  return -1;
}
