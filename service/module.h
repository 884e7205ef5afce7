/* One firmware module's update cycle: the state machine between the cloud's
 * offers and the owner's answers. Knows neither MQTT nor D-Bus: it emits
 * encoded reports and state changes, the agent routes them. */
#pragma once

#include "common/ota-vocabulary.h"
#include "config.h"
#include "protocol.h"
#include "signature.h"

#include <libsoup/soup.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef enum {
  OTA_MODULE_STATE_IDLE = OTA_VOCAB_STATE_IDLE,
  OTA_MODULE_STATE_OFFERED = OTA_VOCAB_STATE_OFFERED,
  OTA_MODULE_STATE_DOWNLOADING = OTA_VOCAB_STATE_DOWNLOADING,
  OTA_MODULE_STATE_VERIFYING = OTA_VOCAB_STATE_VERIFYING,
  OTA_MODULE_STATE_READY = OTA_VOCAB_STATE_READY,
  OTA_MODULE_STATE_BURNING = OTA_VOCAB_STATE_BURNING,
  OTA_MODULE_STATE_REBOOTING = OTA_VOCAB_STATE_REBOOTING,
  OTA_MODULE_STATE_DONE = OTA_VOCAB_STATE_DONE,
  OTA_MODULE_STATE_FAIL = OTA_VOCAB_STATE_FAIL,
} OtaModuleState;

const char *ota_module_state_to_string (OtaModuleState state);

/* What the Progress signal carries. Strings owned by the module. */
typedef struct {
  const char *version;   /* target version, or the installed one when none */
  OtaModuleState state;
  guint percent;
  guint64 downloaded;
  guint64 total;
  int result_code;
  const char *result_msg;
} OtaModuleProgress;

#define OTA_TYPE_MODULE (ota_module_get_type ())
G_DECLARE_FINAL_TYPE (OtaModule, ota_module, OTA, MODULE, GObject)

/*
 * Signals:
 *  "report" (const char *payload, gboolean reliable, const char *coalesce_key):
 *      a report for the cloud; reliable ones must go through the outbox.
 *  "offered" (const char *version, guint64 size): UpdateOffered.
 *  "progress" (gboolean transfer): something GetStatus shows changed; @transfer
 *      when only a download's byte counts moved (after every chunk: whoever
 *      shows them rate-limits).
 *  "firmware-ready" (const char *version, const char *path, guint64 size, const char *md5).
 */

/* Two modules may share a firmware directory, and their file names may meet:
 * module "" at version "mcu_2.0" and module "mcu" at "2.0" both name
 * FW_mcu_2.0.bin. The agent, which knows every module, answers why @self may
 * not use @file_name in the directory @dir_fd (naming the module that holds
 * it), or NULL. */
typedef char *(*OtaModuleNameGuard) (OtaModule *self, int dir_fd, const char *file_name, gpointer user_data);

/* @config and @session must outlive the module. */
OtaModule *ota_module_new (const char *name, const OtaConfig *config, SoupSession *session);

/* With a keyring (it must outlive the module), every offer needs a valid
 * signature by one of its keys, the image the SHA-256 it names, and a
 * security version no lower than the highest installed. NULL: no check. */
void ota_module_set_keyring (OtaModule *self, const OtaKeyring *keyring);

const char *ota_module_get_name (OtaModule *self);

/* Consulted before an offer becomes the module's target: a refusal ends the
 * cycle with fail -5 and the guard's reason. */
void ota_module_set_name_guard (OtaModule *self, OtaModuleNameGuard guard, gpointer user_data);

/* The image this module holds from an offer taken to its end (offered,
 * downloading, verifying, ready, burning, rebooting): TRUE with the identity
 * of its firmware directory and the file name (owned by the module). */
gboolean ota_module_get_image_name (OtaModule *self, dev_t *dev, ino_t *ino, const char **file_name);
/* Unique bus name of the owner, NULL when released. */
const char *ota_module_get_owner (OtaModule *self);

/* Init: makes @owner the owner (OTA_ERROR_BUSY if another one owns it),
 * validates @version and @firmware_dir (OTA_ERROR_INVALID_ARGS; for @uid != 0
 * the directory must belong to @uid, else OTA_ERROR_ACCESS_DENIED), completes
 * a pending reboot, then reports the version and starts the loop. */
gboolean ota_module_activate (OtaModule *self, const char *owner, uid_t uid, gid_t gid,
                              const char *version, const char *firmware_dir,
                              gboolean ask_before_download, GError **error);

/* Exit, or the owner left the bus: cancels a download (keeping the partial
 * file), stops the loop, releases ownership. */
void ota_module_deactivate (OtaModule *self);

void ota_module_handle_offer (OtaModule *self, const OtaOffer *offer);
void ota_module_handle_version_ack (OtaModule *self, const OtaVersionAck *ack);
/* The MQTT session came up: report the version. */
void ota_module_handle_connected (OtaModule *self);

gboolean ota_module_prepare (OtaModule *self, const char *version, gboolean accept, GError **error);
gboolean ota_module_report_progress (OtaModule *self, const char *state, int percent,
                                     int result_code, const char *result_msg, GError **error);
void ota_module_cancel (OtaModule *self);
gboolean ota_module_check_now (OtaModule *self, GError **error);
/* Shutdown: a version report that an app asked for and that is held back (at
 * most one per second goes out) is queued now, so that it is not lost. */
void ota_module_flush_reports (OtaModule *self);

/* The reasons of the Inhibit cookies held for this module (NULL or empty:
 * none; copied). While there are some, no download starts and a running one
 * pauses, keeping its bytes; when they go, it resumes. */
void ota_module_set_inhibitors (OtaModule *self, const char *const *reasons);

/* For a module that cannot be activated now (the agent's own installer of it
 * is unavailable): GetStatus and Progress show result -5 with @problem;
 * NULL clears it. */
void ota_module_set_problem (OtaModule *self, const char *problem);

void ota_module_get_progress (OtaModule *self, OtaModuleProgress *progress);

/* Everything GetStatus shows of a module (docs/dbus.md); the bus adapter
 * gives it its shape on the bus. Strings and @inhibited are the module's,
 * valid until it next changes: copy what must live longer. */
typedef struct {
  OtaModuleState state;
  const char *version;        /* installed; "" when not known */
  const char *target_version; /* "" without an offer */
  guint64 downloaded;
  guint64 total;
  guint percent;
  const char *path;  /* "" until the image is ready */
  const char *owner; /* "" without one */
  int result_code;
  const char *result_msg;
  const char *fail_kind;    /* "" unless in state fail */
  const char *task_id;      /* NULL: the offer has none */
  const char *user_defined; /* NULL: the offer has none */
  /* The agent checks image signatures (it has trusted keys): only then is
   * signature_checked shown, and the key's fields only once checked. */
  gboolean signatures;
  gboolean signature_checked;
  const char *signing_key;
  const char *signing_key_file;
  guint32 security_version;
  const char *const *inhibited; /* reasons of the Inhibit cookies; NULL: none */
} OtaModuleStatus;

void ota_module_get_status (OtaModule *self, OtaModuleStatus *status);

G_END_DECLS
