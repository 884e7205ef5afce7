#include "module.h"

#include "downloader.h"
#include "record.h"
#include "network.h"
#include "error.h"
#include "fail-kind.h"
#include "rollback.h"
#include "state-store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Version reports asked for by apps (Init, CheckNow): at most one per module
 * per second, however often they ask. */
#define LOCAL_REPORT_INTERVAL_US G_USEC_PER_SEC
#define MAX_RESULT_MSG_LEN 256

struct _OtaModule {
  GObject parent_instance;
  char *name;
  const OtaConfig *config;
  SoupSession *session;

  /* Ownership, set by Init. */
  char *owner;
  uid_t uid;
  gid_t gid;
  char *version;           /* installed version */
  char *firmware_dir;
  int dir_fd;
  gboolean ask;

  OtaModuleState state;
  OtaOffer *offer;         /* the cycle's target, NULL when none */
  OtaDownload *download;    /* NULL in state downloading while inhibited */
  char **inhibitors;        /* reasons of the Inhibit cookies held for us, NULL: none */
  guint64 downloaded;
  guint64 total;
  char *path;
  int result_code;
  char *result_msg;
  OtaFailKind fail_kind;   /* what failed, in state fail */

  guint report_timer;      /* every report_interval while owned */
  guint retry_timer;       /* one-shot report after a deferral or a refused report */
  guint start_timer;       /* delayed start after failures of the same offer */
  guint local_report_timer; /* the last report asked for by an app, held back */
  OtaModuleNameGuard name_guard;
  gpointer name_guard_data;
  char *image_name;        /* what ota_module_get_image_name() returned last */
  gint64 last_local_report; /* when an app's request last sent one */
  guint fail_streak;       /* consecutive failed cycles of the same offer */
  OtaOffer *failed_offer;
  GCancellable *verifying; /* re-hashing a kept ready image, NULL when not */
  /* Some Init made an owner since the agent started: from then on the
   * agent itself knows who had the cycle, the persisted owner is history. */
  gboolean had_owner;
  gint64 last_cloud_progress;

  const OtaKeyring *keyring;          /* NULL: offers need no signature */
  OtaSignatureStatement *signed_by;   /* the target's verified statement, NULL when none */
};

G_DEFINE_TYPE (OtaModule, ota_module, G_TYPE_OBJECT)

enum { SIGNAL_REPORT, SIGNAL_OFFERED, SIGNAL_PROGRESS, SIGNAL_FIRMWARE_READY, N_SIGNALS };
static guint signals[N_SIGNALS];

const char *
ota_module_state_to_string (OtaModuleState state)
{
  return ota_vocab_state_name ((int) state);
}

/* The module name as logs show it. */
static void module_log (OtaModule *self, GLogLevelFlags level, const char *format, ...) G_GNUC_PRINTF (3, 4);

/* One line per event of this module, "module <name>: ...". In the journal
 * the module is also a field of its own, IV_OTA_MODULE (empty for the main
 * firmware): journalctl -u iv-otad IV_OTA_MODULE=mcu */
static void
module_log (OtaModule *self, GLogLevelFlags level, const char *format, ...)
{
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);
  g_log_structured (G_LOG_DOMAIN, level, "IV_OTA_MODULE", self->name, "MESSAGE", "module %s: %s",
                    ota_protocol_module_label (self->name), text);
}

static void
module_emit_progress (OtaModule *self)
{
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, FALSE);
}

static void
module_set_state (OtaModule *self, OtaModuleState state)
{
  if (self->state != state)
    module_log (self, G_LOG_LEVEL_INFO, "%s -> %s", ota_module_state_to_string (self->state),
                ota_module_state_to_string (state));
  self->state = state;
  module_emit_progress (self);
}

/* Also clears the failure kind: failures set theirs after this. */
static void
module_set_result (OtaModule *self, int code, const char *msg)
{
  self->fail_kind = OTA_FAIL_KIND_NONE;
  self->result_code = code;
  g_free (self->result_msg);
  self->result_msg = g_strdup (msg != NULL ? msg : "");
}

static void
module_report_version (OtaModule *self)
{
  g_autofree char *payload = NULL;
  g_autofree char *key = NULL;

  if (self->owner == NULL)
    return;
  payload = ota_protocol_encode_report_version (self->name, self->version);
  key = g_strconcat ("report_version:", self->name, NULL);
  module_log (self, G_LOG_LEVEL_INFO, "report_version %s", self->version);
  g_signal_emit (self, signals[SIGNAL_REPORT], 0, payload, TRUE, key);
}

/* ---- signed images ---- */

static void
module_clear_signature (OtaModule *self)
{
  if (self->signed_by == NULL)
    return;
  ota_signature_statement_clear (self->signed_by);
  g_clear_pointer (&self->signed_by, g_free);
}

/* Why @offer's signature is refused, NULL when it is valid; @verified (if
 * not NULL) then receives the statement. Checked before any byte is asked
 * for: signature, then the rollback rule. */
static char *
module_signature_refusal (OtaModule *self, const OtaOffer *offer, OtaSignatureStatement *verified)
{
  g_auto (OtaSignatureStatement) statement = { 0 };
  g_auto (OtaRollbackState) rollback = { 0 };
  g_autoptr (GError) error = NULL;

  if (!ota_keyring_check (self->keyring, offer->user_defined, self->name, offer->version, offer->file_size,
                          &statement, &error))
    return g_strdup_printf ("signature refused: %s", error->message);
  if (!ota_rollback_state_load (self->config->state_dir, self->name, &rollback, &error))
    return g_strdup_printf ("rollback check impossible: %s", error->message);
  if (statement.security_version < rollback.installed)
    return g_strdup_printf ("rollback: security version %u is lower than %u, the highest installed",
                            statement.security_version, rollback.installed);
  if (verified != NULL) {
    *verified = statement;
    memset (&statement, 0, sizeof statement);
  }
  return NULL;
}

/* The signed image is handed over: if it is reported done, even after a
 * reboot and a restart of the agent, its security version becomes the floor. */
static void
module_remember_pending_security_version (OtaModule *self)
{
  g_auto (OtaRollbackState) rollback = { 0 };
  g_autoptr (GError) error = NULL;

  if (self->signed_by == NULL)
    return;
  if (ota_rollback_state_load (self->config->state_dir, self->name, &rollback, &error)) {
    g_free (rollback.pending_version);
    rollback.pending_version = g_strdup (self->signed_by->version);
    rollback.pending = self->signed_by->security_version;
    ota_rollback_state_save (self->config->state_dir, self->name, &rollback, &error);
  }
  if (error != NULL)
    module_log (self, G_LOG_LEVEL_WARNING, "cannot record the security version of %s: %s",
                self->signed_by->version, error->message);
}

/* "done" for the target: the highest installed security version moves up. */
static void
module_commit_security_version (OtaModule *self)
{
  g_auto (OtaRollbackState) rollback = { 0 };
  g_autoptr (GError) error = NULL;
  guint32 installed;

  if (self->keyring == NULL || self->offer == NULL)
    return;
  if (!ota_rollback_state_load (self->config->state_dir, self->name, &rollback, &error)) {
    module_log (self, G_LOG_LEVEL_WARNING, "cannot update the security version: %s", error->message);
    return;
  }
  installed = rollback.installed;
  if (self->signed_by != NULL && g_strcmp0 (self->signed_by->version, self->offer->version) == 0)
    installed = MAX (installed, self->signed_by->security_version);
  else if (g_strcmp0 (rollback.pending_version, self->offer->version) == 0)
    installed = MAX (installed, rollback.pending);
  else
    return; /* not a signed image: nothing to raise */
  rollback.installed = installed;
  g_clear_pointer (&rollback.pending_version, g_free);
  rollback.pending = 0;
  if (!ota_rollback_state_save (self->config->state_dir, self->name, &rollback, &error))
    module_log (self, G_LOG_LEVEL_WARNING, "cannot record the security version: %s", error->message);
  else
    module_log (self, G_LOG_LEVEL_INFO, "highest installed security version: %u", installed);
}

/* What a queued report may be superseded by (ota_outbox_push()): a fail by
 * the module's next fail, which is about a newer offer (the cloud's target
 * moved on). burning and done are never coalesced. */
static char *
module_coalesce_key (OtaModule *self, const char *state)
{
  if (g_str_equal (state, "fail"))
    return g_strconcat ("fail:", self->name, NULL);
  return NULL;
}

/* A report_progress about the current target. */
static void
module_report_progress (OtaModule *self, const char *state, int percent, int code, const char *msg,
                        gboolean reliable)
{
  g_autofree char *payload = NULL;
  g_autofree char *key = module_coalesce_key (self, state);
  OtaProgressReport report = {
    .module = self->name,
    .version = self->offer->version,
    .state = state,
    .percent = percent,
    .result_code = code,
    .result_msg = msg,
    .task_id = self->offer->task_id,
    .task_id_is_number = self->offer->task_id_is_number,
  };

  if (g_str_equal (state, "done"))
    module_commit_security_version (self);
  payload = ota_protocol_encode_progress (&report);
  if (reliable)
    module_log (self, G_LOG_LEVEL_INFO, "report %s of %s (code %d%s%s)", state,
                self->offer->version, code, msg != NULL && *msg ? ": " : "", msg != NULL ? msg : "");
  else
    module_log (self, G_LOG_LEVEL_DEBUG, "report %s of %s (%d %%)", state, self->offer->version, percent);
  g_signal_emit (self, signals[SIGNAL_REPORT], 0, payload, reliable, key);
}

static gboolean
module_local_report_cb (gpointer user_data)
{
  OtaModule *self = user_data;

  self->local_report_timer = 0;
  self->last_local_report = g_get_monotonic_time ();
  module_report_version (self);
  return G_SOURCE_REMOVE;
}

/* A report an app asked for (Init, CheckNow). An app in a loop must not turn
 * into a flood of reports to the cloud, each one an outbox rewrite and two
 * fsyncs on the main loop: within LOCAL_REPORT_INTERVAL_US of the last one,
 * the report waits for the end of the interval instead. The last request is
 * never lost: the held report is built when it goes, with the version of the
 * latest Init. */
static void
module_report_version_for_app (OtaModule *self)
{
  gint64 now = g_get_monotonic_time ();
  gint64 wait = self->last_local_report + LOCAL_REPORT_INTERVAL_US - now;

  if (self->local_report_timer != 0)
    return;
  if (self->last_local_report == 0 || wait <= 0) {
    self->last_local_report = now;
    module_report_version (self);
    return;
  }
  self->local_report_timer = g_timeout_add ((guint) (wait / 1000) + 1, module_local_report_cb, self);
}

static gboolean
module_retry_cb (gpointer user_data)
{
  OtaModule *self = user_data;

  self->retry_timer = 0;
  module_report_version (self);
  return G_SOURCE_REMOVE;
}

static void
module_schedule_retry (OtaModule *self)
{
  if (self->retry_timer == 0)
    self->retry_timer = g_timeout_add_seconds (self->config->retry_interval, module_retry_cb, self);
}

static gboolean
module_report_timer_cb (gpointer user_data)
{
  module_report_version (user_data);
  return G_SOURCE_CONTINUE;
}

static void
module_stop_download (OtaModule *self)
{
  g_clear_handle_id (&self->start_timer, g_source_remove);
  if (self->verifying != NULL)
    g_cancellable_cancel (self->verifying);
  g_clear_object (&self->verifying);
  if (self->download == NULL)
    return;
  g_signal_handlers_disconnect_by_data (self->download, self);
  ota_download_cancel (self->download);
  g_clear_object (&self->download);
}

static gboolean
offers_equal (const OtaOffer *a, const OtaOffer *b)
{
  return a != NULL && b != NULL && g_strcmp0 (a->version, b->version) == 0 &&
         g_strcmp0 (a->md5sum, b->md5sum) == 0 && a->file_size == b->file_size;
}

static void
module_send_cloud_progress (OtaModule *self, guint percent)
{
  self->last_cloud_progress = g_get_monotonic_time ();
  module_report_progress (self, "downloading", (int) percent, 0, "", FALSE);
}

static guint
module_percent (OtaModule *self)
{
  return self->total > 0 ? (guint) MIN (self->downloaded * 100 / self->total, 100) : 0;
}

static void
on_download_progress (OtaDownload *download, guint64 downloaded, guint64 total, OtaModule *self)
{
  gint64 now = g_get_monotonic_time ();

  self->downloaded = downloaded;
  self->total = total;
  if (now - self->last_cloud_progress >= (gint64) self->config->progress_interval * G_USEC_PER_SEC &&
      downloaded < total)
    module_send_cloud_progress (self, module_percent (self));
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, TRUE);
}

static void
on_download_verifying (OtaDownload *download, OtaModule *self)
{
  module_set_state (self, OTA_MODULE_STATE_VERIFYING);
}

/* The cycle's persisted phase, so that a restarted agent or a new owner can
 * finish it (see ota_module_activate()). */
static gboolean
module_save_cycle (OtaModule *self, OtaCyclePhase phase, GError **error)
{
  OtaCycleRecord record = {
    .phase = phase,
    .target_version = self->offer->version,
    .md5sum = self->offer->md5sum,
    .file_size = self->offer->file_size,
    .path = self->path,
    .task_id = self->offer->task_id,
    .task_id_is_number = self->offer->task_id_is_number,
    .owner = self->owner,
    .boot_id = (char *) ota_state_boot_id (),
  };

  return ota_cycle_record_save (self->config->state_dir, self->name, &record, error);
}

static void
module_forget_cycle_record (OtaModule *self)
{
  g_autoptr (GError) error = NULL;

  if (!ota_cycle_record_delete (self->config->state_dir, self->name, &error))
    module_log (self, G_LOG_LEVEL_WARNING, "%s", error->message);
}

/* The cycle ended (or another target replaces it): nothing of it is pending. */
static void
module_forget_cycle (OtaModule *self)
{
  g_autoptr (GError) error = NULL;

  if (!ota_reboot_marker_delete (self->config->state_dir, self->name, &error) ||
      !ota_cycle_record_delete (self->config->state_dir, self->name, &error))
    module_log (self, G_LOG_LEVEL_WARNING, "%s", error->message);
}

/* A cycle ended: the cloud learns the version again, which drives the next offer. */
static void
module_cycle_failed (OtaModule *self, int code, OtaFailKind kind, const char *msg)
{
  if (offers_equal (self->failed_offer, self->offer)) {
    self->fail_streak++;
  } else {
    g_clear_pointer (&self->failed_offer, ota_offer_free);
    self->failed_offer = ota_offer_copy (self->offer);
    self->fail_streak = 1;
  }
  module_set_result (self, code, msg);
  self->fail_kind = kind;
  module_report_progress (self, "fail", -1, code, msg, TRUE);
  module_forget_cycle (self);
  module_set_state (self, OTA_MODULE_STATE_FAIL);
  module_report_version (self);
}

/* The verified image at @path is the owner's now. It is remembered as
 * "ready" first: an agent restarted after FirmwareReady answers the cloud's
 * re-offer from this file instead of downloading over it. */
static void
module_hand_over (OtaModule *self, const char *path)
{
  g_autoptr (GError) error = NULL;

  self->downloaded = self->total = self->offer->file_size;
  g_free (self->path);
  self->path = g_strdup (path);
  g_clear_pointer (&self->failed_offer, ota_offer_free);
  self->fail_streak = 0;
  module_set_result (self, 0, "");
  if (!module_save_cycle (self, OTA_CYCLE_PHASE_READY, &error))
    module_log (self, G_LOG_LEVEL_WARNING, "cannot remember the ready image (an agent restart will download it "
                "again): %s", error->message);
  module_remember_pending_security_version (self);
  module_send_cloud_progress (self, 100);
  module_log (self, G_LOG_LEVEL_INFO, "firmware %s ready at %s", self->offer->version, self->path);
  self->state = OTA_MODULE_STATE_READY;
  /* FirmwareReady first: a client that sees Progress(ready) already has the path. */
  g_signal_emit (self, signals[SIGNAL_FIRMWARE_READY], 0, self->offer->version, self->path,
                 self->offer->file_size, self->offer->md5sum);
  module_emit_progress (self);
}

static void
on_download_finished (OtaDownload *download, int code, const char *message, OtaModule *self)
{
  g_autoptr (OtaDownload) done = g_steal_pointer (&self->download);

  g_signal_handlers_disconnect_by_data (done, self);
  if (code != 0) {
    module_log (self, G_LOG_LEVEL_WARNING, "download of %s failed (%d): %s", self->offer->version,
                code, message);
    module_cycle_failed (self, code, ota_download_get_fail_kind (done), message);
    return;
  }
  module_hand_over (self, ota_download_get_path (done));
}


static gboolean
module_is_inhibited (OtaModule *self)
{
  return self->inhibitors != NULL && self->inhibitors[0] != NULL;
}

static void
module_start_download (OtaModule *self)
{
  g_autofree char *shown_url = ota_url_for_log (self->offer->url);
  OtaDownloadParams params = {
    .url = self->offer->url,
    .module = self->name,
    .version = self->offer->version,
    .md5sum = self->offer->md5sum,
    .file_size = self->offer->file_size,
    .dir_fd = self->dir_fd,
    .dir_path = self->firmware_dir,
    .owner_uid = self->uid,
    .owner_gid = self->gid,
    .checkpoint_bytes = self->config->checkpoint_bytes,
    .stall_timeout = self->config->stall_timeout,
    .min_download_rate = self->config->min_download_rate,
    .max_download_rate = self->config->max_download_rate,
    .max_retries = self->config->max_retries,
    .max_firmware_size = self->config->max_firmware_size,
    .sha256 = self->signed_by != NULL ? self->signed_by->sha256 : NULL,
  };

  if (module_is_inhibited (self)) {
    g_autofree char *why = g_strjoinv ("; ", self->inhibitors);
    module_log (self, G_LOG_LEVEL_INFO, "download of %s waits: inhibited (%s)", self->offer->version, why);
    return;
  }
  self->download = ota_download_new (self->session, &params);
  g_signal_connect (self->download, "progress", G_CALLBACK (on_download_progress), self);
  g_signal_connect (self->download, "verifying", G_CALLBACK (on_download_verifying), self);
  g_signal_connect (self->download, "finished", G_CALLBACK (on_download_finished), self);
  self->last_cloud_progress = 0;
  /* Neither the query (a presigned URL's signature) nor user:password@. */
  module_log (self, G_LOG_LEVEL_INFO, "downloading %s (%" G_GUINT64_FORMAT " bytes) from %s",
              self->offer->version, self->offer->file_size, shown_url);
  ota_download_start (self->download);
}

/* The same offer failing again and again (a 404, a bad image) must not turn
 * into a hot loop of offers: back off from retry_interval up to report_interval. */
static guint
module_failure_delay (OtaModule *self)
{
  if (!offers_equal (self->failed_offer, self->offer) || self->fail_streak == 0)
    return 0;
  return (guint) ota_backoff_delay (self->fail_streak - 1, self->config->retry_interval,
                                    MAX (self->config->report_interval, self->config->retry_interval));
}

/* ---- an offer answered from the image kept as ready ---- */

typedef struct {
  int dir_fd;
  char *name;
  guint64 size;
  char *md5sum;
} ReadyCheck;

static void
ready_check_free (gpointer data)
{
  ReadyCheck *check = data;

  if (check->dir_fd >= 0)
    close (check->dir_fd);
  g_free (check->name);
  g_free (check->md5sum);
  g_free (check);
}

/* The MD5 of the regular file @fd, which must have @size bytes. */
static char *
ready_check_hash (int fd, guint64 size, GCancellable *cancellable, GError **error)
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_MD5);
  g_autofree guint8 *buf = g_malloc (1024 * 1024);
  guint64 total = 0;
  ssize_t n;

  while ((n = read (fd, buf, 1024 * 1024)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot read: %s", g_strerror (errno));
      return NULL;
    }
    if (g_cancellable_set_error_if_cancelled (cancellable, error))
      return NULL;
    g_checksum_update (checksum, buf, (gsize) n);
    total += (guint64) n;
  }
  if (total != size) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "read %" G_GUINT64_FORMAT " bytes", total);
    return NULL;
  }
  return g_strdup (g_checksum_get_string (checksum));
}

/* Worker thread: the kept image is still the verified one (size, then MD5
 * of what is on disk now). */
static void
ready_check_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  ReadyCheck *check = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *md5 = NULL;
  struct stat st;
  int fd = openat (check->dir_fd, check->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

  if (fd < 0) {
    g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (errno), "cannot open it: %s",
                             g_strerror (errno));
    return;
  }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode) || (guint64) st.st_size != check->size) {
    close (fd);
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not a regular file of %" G_GUINT64_FORMAT
                             " bytes any more", check->size);
    return;
  }
  md5 = ready_check_hash (fd, check->size, cancellable, &error);
  close (fd);
  if (md5 == NULL)
    g_task_return_error (task, g_steal_pointer (&error));
  else if (g_ascii_strcasecmp (md5, check->md5sum) != 0)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "its MD5 is %s now", md5);
  else
    g_task_return_boolean (task, TRUE);
}

static void
module_start_fresh_download (OtaModule *self)
{
  module_set_state (self, OTA_MODULE_STATE_DOWNLOADING);
  module_start_download (self);
}

static void
on_ready_checked (GObject *source, GAsyncResult *res, gpointer user_data)
{
  OtaModule *self = OTA_MODULE (source);
  g_autofree char *path = user_data;
  g_autoptr (GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (res), &error)) {
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return;
    g_clear_object (&self->verifying);
    module_log (self, G_LOG_LEVEL_WARNING, "kept image %s of %s is not the verified one (%s): downloading again",
                path, self->offer->version, error->message);
    module_forget_cycle (self);
    module_start_fresh_download (self);
    return;
  }
  g_clear_object (&self->verifying);
  module_log (self, G_LOG_LEVEL_INFO, "offer of %s answered from the kept image %s (size and MD5 verified again)",
              self->offer->version, path);
  module_hand_over (self, path);
}

/* The offer is the one whose image was handed over as ready before (this
 * agent's or the previous one's), and the file is where it was announced:
 * its bytes are checked again off the main loop and handed over without a
 * download. A download would take the file's name while the app may be
 * reading or burning it. */
static gboolean
module_reuse_ready_image (OtaModule *self)
{
  g_auto (OtaCycleRecord) record = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GTask) task = NULL;
  g_autofree char *name = NULL;
  g_autofree char *expected = NULL;
  ReadyCheck *check;

  /* Signed images are checked against their SHA-256 as they are written:
   * with trusted keys a kept image is downloaded again instead. */
  if (self->keyring != NULL)
    return FALSE;
  if (!ota_cycle_record_load (self->config->state_dir, self->name, &record, &error)) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
      module_log (self, G_LOG_LEVEL_WARNING, "ignoring the cycle record: %s", error->message);
    return FALSE;
  }
  name = g_path_get_basename (record.path);
  expected = g_build_filename (self->firmware_dir, name, NULL);
  if (record.phase != OTA_CYCLE_PHASE_READY || g_strcmp0 (record.target_version, self->offer->version) != 0 ||
      g_ascii_strcasecmp (record.md5sum, self->offer->md5sum) != 0 || record.file_size != self->offer->file_size ||
      g_strcmp0 (expected, record.path) != 0) {
    /* Another target replaces it: that image is no longer pending. */
    module_log (self, G_LOG_LEVEL_INFO, "the kept image of %s is not taken for %s", record.target_version,
                self->offer->version);
    module_forget_cycle (self);
    return FALSE;
  }
  check = g_new0 (ReadyCheck, 1);
  check->dir_fd = fcntl (self->dir_fd, F_DUPFD_CLOEXEC, 0);
  check->name = g_steal_pointer (&name);
  check->size = record.file_size;
  check->md5sum = g_strdup (record.md5sum);
  self->verifying = g_cancellable_new ();
  task = g_task_new (self, self->verifying, on_ready_checked, g_strdup (record.path));
  g_task_set_task_data (task, check, ready_check_free);
  g_task_run_in_thread (task, ready_check_thread);
  module_set_state (self, OTA_MODULE_STATE_VERIFYING);
  return TRUE;
}

static void
module_accept (OtaModule *self)
{
  self->downloaded = 0;
  self->total = self->offer->file_size;
  module_set_result (self, 0, "");
  if (!module_reuse_ready_image (self))
    module_start_fresh_download (self);
}

/* "FW_<version>.bin" or "FW_<module>_<version>.bin". */
static char *
module_image_name (OtaModule *self, const OtaOffer *offer)
{
  g_autofree char *stem = ota_firmware_stem (self->name, offer->version);

  return g_strconcat (stem, ".bin", NULL);
}

/* Why this agent will not take a well-formed offer, by its own rules; NULL
 * when it will. */
static char *
module_offer_refusal (OtaModule *self, const OtaOffer *offer, OtaFailKind *kind)
{
  g_autofree char *name = module_image_name (self, offer);
  char *taken;

  if (self->name_guard != NULL && self->dir_fd >= 0 &&
      (taken = self->name_guard (self, self->dir_fd, name, self->name_guard_data)) != NULL) {
    *kind = OTA_FAIL_KIND_REFUSED;
    return taken;
  }
  if (offer->file_size > self->config->max_firmware_size) {
    *kind = OTA_FAIL_KIND_SIZE;
    return g_strdup_printf ("file_size %" G_GUINT64_FORMAT " exceeds max_firmware_size %" G_GUINT64_FORMAT,
                            offer->file_size, self->config->max_firmware_size);
  }
  if (self->config->require_https && g_ascii_strncasecmp (offer->url, "https:", 6) != 0) {
    *kind = OTA_FAIL_KIND_REFUSED;
    return g_strdup ("plain http URL while require_https=true");
  }
  if (self->keyring != NULL) {
    *kind = OTA_FAIL_KIND_REFUSED;
    return module_signature_refusal (self, offer, NULL);
  }
  return NULL;
}

static const char *
module_key_origin (OtaModule *self, const OtaSignatureStatement *statement)
{
  const char *origin = ota_keyring_get_origin (self->keyring, statement->key_id);

  return origin != NULL ? origin : "";
}

/* The offer passed module_offer_refusal(): keep its verified statement. */
static void
module_take_signature (OtaModule *self)
{
  g_autofree OtaSignatureStatement *statement = g_new0 (OtaSignatureStatement, 1);
  g_autofree char *refusal = NULL;

  if (self->keyring == NULL)
    return;
  refusal = module_signature_refusal (self, self->offer, statement);
  if (refusal != NULL)
    return; /* cannot happen: it was just checked */
  module_log (self, G_LOG_LEVEL_INFO, "%s signed by key %s (%s), security version %u", self->offer->version,
              statement->key_id, module_key_origin (self, statement),
              statement->security_version);
  self->signed_by = g_steal_pointer (&statement);
}

/* The offer in self->offer becomes the cycle's target. */
static void
module_begin_offer (OtaModule *self)
{
  OtaFailKind kind = OTA_FAIL_KIND_NONE;
  g_autofree char *refusal = module_offer_refusal (self, self->offer, &kind);

  module_clear_signature (self);
  g_clear_pointer (&self->path, g_free);
  self->downloaded = 0;
  self->total = self->offer->file_size;
  /* A refused offer is a failed cycle, not silence: the cloud hears why (and
   * its re-offers back off like those of any failure). The app is not asked. */
  if (refusal != NULL) {
    module_log (self, G_LOG_LEVEL_WARNING, "cloud message rejected: update_firmware %s: %s", self->offer->version,
                refusal);
    module_cycle_failed (self, OTA_RESULT_FAILED, kind, refusal);
    return;
  }
  module_set_result (self, 0, "");
  module_take_signature (self);
  module_log (self, G_LOG_LEVEL_INFO, "offered %s (%" G_GUINT64_FORMAT " bytes, md5 %s%s%s)",
              self->offer->version, self->offer->file_size, self->offer->md5sum,
              self->offer->task_id != NULL ? ", task " : "", self->offer->task_id != NULL ? self->offer->task_id : "");
  self->state = OTA_MODULE_STATE_OFFERED;
  /* UpdateOffered first, so that a client sees it before Progress(offered). */
  g_signal_emit (self, signals[SIGNAL_OFFERED], 0, self->offer->version, self->offer->file_size);
  module_emit_progress (self);
  if (!self->ask)
    module_accept (self);
}

static gboolean
module_start_timer_cb (gpointer user_data)
{
  OtaModule *self = user_data;

  self->start_timer = 0;
  module_begin_offer (self);
  return G_SOURCE_REMOVE;
}

/* An offer is being taken, not yet handed over to the app's burning. */
static gboolean
module_cycle_under_way (OtaModule *self)
{
  return self->state == OTA_MODULE_STATE_OFFERED || self->state == OTA_MODULE_STATE_DOWNLOADING ||
         self->state == OTA_MODULE_STATE_VERIFYING || self->state == OTA_MODULE_STATE_READY;
}

static gboolean
module_offer_is_news (OtaModule *self, const OtaOffer *offer)
{
  /* Re-offers of what is already under way are expected: the version is reported periodically. */
  if (module_cycle_under_way (self))
    return !offers_equal (self->offer, offer);
  return self->state != OTA_MODULE_STATE_BURNING && self->state != OTA_MODULE_STATE_REBOOTING;
}

/* Every ignored offer says why: a module that seems to ignore the cloud
 * must be explained by its log. */
static void
module_log_ignored_offer (OtaModule *self, const OtaOffer *offer)
{
  if (module_cycle_under_way (self))
    module_log (self, G_LOG_LEVEL_INFO, "offer of %s ignored: the same offer is already %s", offer->version,
                ota_module_state_to_string (self->state));
  else
    module_log (self, G_LOG_LEVEL_INFO,
                "offer of %s ignored: %s is %s %s; its report, or the next Init of the module, ends that",
                offer->version, self->owner, ota_module_state_to_string (self->state), self->offer->version);
}

void
ota_module_handle_offer (OtaModule *self, const OtaOffer *offer)
{
  g_autofree char *refusal = NULL;
  OtaFailKind kind = OTA_FAIL_KIND_NONE;
  guint delay;

  g_return_if_fail (OTA_IS_MODULE (self));
  g_return_if_fail (offer != NULL);

  if (self->owner == NULL)
    return;
  if (g_strcmp0 (offer->version, self->version) == 0) {
    module_log (self, G_LOG_LEVEL_INFO, "offer of %s ignored: already installed", offer->version);
    return;
  }
  if (!module_offer_is_news (self, offer)) {
    module_log_ignored_offer (self, offer);
    return;
  }
  /* An offer this agent refuses must not end a cycle that is under way: it
   * is only logged then (otherwise it fails like any other, see
   * module_begin_offer()). */
  refusal = module_offer_refusal (self, offer, &kind);
  if (refusal != NULL && module_cycle_under_way (self)) {
    module_log (self, G_LOG_LEVEL_WARNING, "cloud message rejected: update_firmware %s: %s (%s of %s goes on)",
                offer->version, refusal, ota_module_state_to_string (self->state), self->offer->version);
    return;
  }
  /* While a failed offer waits for its next attempt, its re-offers only
   * refresh the URL (presigned URLs change): the wait is not restarted. */
  if (self->start_timer != 0 && offers_equal (self->offer, offer)) {
    g_clear_pointer (&self->offer, ota_offer_free);
    self->offer = ota_offer_copy (offer);
    return;
  }
  module_stop_download (self);
  g_clear_pointer (&self->offer, ota_offer_free);
  self->offer = ota_offer_copy (offer);
  delay = module_failure_delay (self);
  if (delay > 0) {
    /* State and result stay those of the failure until the next attempt. */
    module_log (self, G_LOG_LEVEL_INFO, "%s failed %u time(s), trying again in %u s", offer->version,
                self->fail_streak, delay);
    self->start_timer = g_timeout_add_seconds (delay, module_start_timer_cb, self);
    return;
  }
  module_begin_offer (self);
}

void
ota_module_handle_version_ack (OtaModule *self, const OtaVersionAck *ack)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  g_return_if_fail (ack != NULL);
  if (ack->result_code == 0) {
    module_log (self, G_LOG_LEVEL_DEBUG, "version %s acknowledged", ack->version);
    return;
  }
  module_log (self, G_LOG_LEVEL_WARNING, "cloud refused version report %s: %" G_GINT64_FORMAT " %s",
              ack->version, ack->result_code, ack->result_msg);
  if (self->owner != NULL)
    module_schedule_retry (self);
}

void
ota_module_handle_connected (OtaModule *self)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  module_report_version (self);
}

static gboolean
module_open_dir (OtaModule *self, const char *dir, uid_t uid, GError **error)
{
  struct stat st;
  int fd;

  /* Checked first: the messages below quote the path back to the caller. */
  if (strlen (dir) >= PATH_MAX) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "firmware_dir longer than %d bytes", PATH_MAX - 1);
    return FALSE;
  }
  if (!g_path_is_absolute (dir)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "firmware_dir must be an absolute path: %s", dir);
    return FALSE;
  }
  /* O_NOFOLLOW: a symlink in place of the directory is refused, not followed. */
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    g_set_error (error, OTA_ERROR, errno == EACCES ? OTA_ERROR_ACCESS_DENIED : OTA_ERROR_INVALID_ARGS,
                 "cannot open firmware_dir %s: %s", dir, g_strerror (errno));
    return FALSE;
  }
  if (fstat (fd, &st) != 0 || (uid != 0 && st.st_uid != uid)) {
    close (fd);
    g_set_error (error, OTA_ERROR, OTA_ERROR_ACCESS_DENIED,
                 "firmware_dir %s is not owned by the caller (uid %u)", dir, (guint) uid);
    return FALSE;
  }
  if (self->dir_fd >= 0)
    close (self->dir_fd);
  self->dir_fd = fd;
  g_free (self->firmware_dir);
  self->firmware_dir = g_strdup (dir);
  return TRUE;
}

/* ---- Init after the image was handed over ---- */

/* The target of a persisted cycle becomes self->offer (no URL: nothing is
 * downloaded for it). */
static void
module_set_target (OtaModule *self, const char *version, const char *md5sum, guint64 size, const char *task_id,
                   gboolean task_id_is_number)
{
  OtaOffer *target = g_new0 (OtaOffer, 1);

  target->module = g_strdup (self->name);
  target->version = g_strdup (version);
  target->url = g_strdup ("");
  target->md5sum = g_strdup (md5sum != NULL ? md5sum : "");
  target->file_size = size;
  target->task_id = g_strdup (task_id);
  target->task_id_is_number = task_id_is_number;
  /* A persisted target has no statement in memory: its security version is the pending one on disk. */
  module_clear_signature (self);
  g_clear_pointer (&self->offer, ota_offer_free);
  self->offer = target;
}

/* The owner had the image (@phase "burning", "rebooting" or "ready"); the
 * version it runs now tells how that went: the target is done, anything
 * else a failure naming both. The version report follows from the Init. */
static void
module_settle (OtaModule *self, const char *phase)
{
  g_autofree char *msg = NULL;

  if (g_strcmp0 (self->version, self->offer->version) == 0) {
    module_log (self, G_LOG_LEVEL_INFO, "Init at the target %s after %s: done", self->version, phase);
    module_set_result (self, 0, "");
    module_report_progress (self, "done", -1, 0, "", TRUE);
    module_forget_cycle (self);
    module_set_state (self, OTA_MODULE_STATE_DONE);
    return;
  }
  msg = g_strdup_printf ("version after %s is %s, expected %s", phase, self->version, self->offer->version);
  module_log (self, G_LOG_LEVEL_INFO, "Init %s: fail", msg);
  module_set_result (self, OTA_RESULT_FAILED, msg);
  self->fail_kind = OTA_FAIL_KIND_VERSION;
  module_report_progress (self, "fail", -1, OTA_RESULT_FAILED, msg, TRUE);
  module_forget_cycle (self);
  module_set_state (self, OTA_MODULE_STATE_FAIL);
}

/* Whether the persisted @owner is the caller of this Init in this boot: the
 * app process that had the cycle registers again after an agent restart
 * (unique bus names are not reused while the bus runs, the boot id tells a
 * reboot, after which names start over). */
static gboolean
module_same_app (OtaModule *self, const char *owner, const char *boot_id)
{
  return !self->had_owner && owner != NULL && g_strcmp0 (owner, self->owner) == 0 && boot_id != NULL &&
         *boot_id != '\0' && g_str_equal (boot_id, ota_state_boot_id ());
}

/* A previous agent's "rebooting" marker; FALSE when there is none. */
static gboolean
module_resume_reboot_marker (OtaModule *self)
{
  OtaRebootMarker marker = { 0 };
  g_autoptr (GError) error = NULL;

  if (!ota_reboot_marker_load (self->config->state_dir, self->name, &marker, &error)) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
      module_log (self, G_LOG_LEVEL_WARNING, "ignoring reboot marker: %s", error->message);
    return FALSE;
  }
  module_set_target (self, marker.target_version, NULL, 0, marker.task_id, marker.task_id_is_number);
  if (g_strcmp0 (self->version, marker.target_version) != 0 && module_same_app (self, marker.owner, marker.boot_id)) {
    module_log (self, G_LOG_LEVEL_INFO, "%s registered again before its reboot into %s: still rebooting",
                self->owner, marker.target_version);
    module_set_state (self, OTA_MODULE_STATE_REBOOTING);
  } else {
    module_settle (self, "reboot");
  }
  ota_reboot_marker_clear (&marker);
  return TRUE;
}

/* A previous owner's (or agent's) image handed over as ready, or burning. */
static void
module_resume_cycle_record (OtaModule *self)
{
  g_auto (OtaCycleRecord) record = { 0 };
  g_autoptr (GError) error = NULL;
  gboolean at_target;

  if (!ota_cycle_record_load (self->config->state_dir, self->name, &record, &error)) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
      module_log (self, G_LOG_LEVEL_WARNING, "ignoring the cycle record: %s", error->message);
    return;
  }
  at_target = g_strcmp0 (self->version, record.target_version) == 0;
  /* Only handed over, never reported burning: an app at another version did
   * not start with it, and the image stays to answer the next offer. */
  if (record.phase == OTA_CYCLE_PHASE_READY && !at_target && !module_same_app (self, record.owner, record.boot_id))
    return;
  module_set_target (self, record.target_version, record.md5sum, record.file_size, record.task_id,
                     record.task_id_is_number);
  if (at_target || !module_same_app (self, record.owner, record.boot_id)) {
    module_settle (self, ota_cycle_phase_to_string (record.phase));
    return;
  }
  module_log (self, G_LOG_LEVEL_INFO, "%s registered again: %s of %s (%s) goes on", self->owner,
              ota_cycle_phase_to_string (record.phase), record.target_version, record.path);
  g_free (self->path);
  self->path = g_strdup (record.path);
  self->downloaded = self->total = record.file_size;
  module_set_result (self, 0, "");
  module_set_state (self, record.phase == OTA_CYCLE_PHASE_BURNING ? OTA_MODULE_STATE_BURNING
                                                                  : OTA_MODULE_STATE_READY);
}

/* Init while the image of a cycle is with its app, or was: a new owner (the
 * app restarted, or the device rebooted), one at the target version, or the
 * owner that said "rebooting" (the reboot did not happen, or the module was
 * restarted under the running app) ends the cycle by the version it runs;
 * the same app registering again while burning (its repeated Init, or after
 * an agent restart) goes on with it. */
static void
module_resolve_handed_over (OtaModule *self, gboolean fresh)
{
  if (self->state == OTA_MODULE_STATE_BURNING || self->state == OTA_MODULE_STATE_REBOOTING) {
    if (fresh || self->state == OTA_MODULE_STATE_REBOOTING || g_strcmp0 (self->version, self->offer->version) == 0)
      module_settle (self, self->state == OTA_MODULE_STATE_BURNING ? "burning" : "reboot");
    return;
  }
  if (fresh && !module_resume_reboot_marker (self))
    module_resume_cycle_record (self);
}

gboolean
ota_module_activate (OtaModule *self, const char *owner, uid_t uid, gid_t gid, const char *version,
                     const char *firmware_dir, gboolean ask_before_download, GError **error)
{
  g_return_val_if_fail (OTA_IS_MODULE (self), FALSE);

  gboolean fresh = self->owner == NULL;

  if (self->owner != NULL && g_strcmp0 (self->owner, owner) != 0) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_BUSY, "module \"%s\" is owned by %s", self->name, self->owner);
    return FALSE;
  }
  if (!ota_protocol_installed_version_is_valid (version)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS,
                 "version must be 1..63 printable characters without spaces");
    return FALSE;
  }
  if (!module_open_dir (self, firmware_dir, uid, error))
    return FALSE;
  if (fresh)
    module_log (self, G_LOG_LEVEL_INFO, "owned by %s (uid %u), version %s", owner, (guint) uid, version);
  g_free (self->owner);
  self->owner = g_strdup (owner);
  self->uid = uid;
  self->gid = gid;
  self->ask = ask_before_download;
  g_free (self->version);
  self->version = g_strdup (version);
  /* The owner re-initialising mid-cycle keeps its cycle (a cycle still
   * being downloaded is never settled by an Init). */
  module_resolve_handed_over (self, fresh);
  self->had_owner = TRUE;
  if (self->report_timer == 0)
    self->report_timer = g_timeout_add_seconds (self->config->report_interval, module_report_timer_cb, self);
  module_report_version_for_app (self);
  module_emit_progress (self);
  return TRUE;
}

void
ota_module_deactivate (OtaModule *self)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  if (self->owner == NULL)
    return;
  module_log (self, G_LOG_LEVEL_INFO, "released by %s", self->owner);
  module_stop_download (self);
  g_clear_handle_id (&self->report_timer, g_source_remove);
  g_clear_handle_id (&self->retry_timer, g_source_remove);
  g_clear_handle_id (&self->local_report_timer, g_source_remove);
  g_clear_pointer (&self->owner, g_free);
  if (self->dir_fd >= 0)
    close (self->dir_fd);
  self->dir_fd = -1;
  if (module_cycle_under_way (self)) {
    /* The cycle is abandoned (its partial file stays for resume, a ready
     * image stays for the next offer of it): no target any more. A cycle
     * whose image is being burnt waits for the next owner's Init. */
    g_clear_pointer (&self->offer, ota_offer_free);
    module_set_state (self, OTA_MODULE_STATE_IDLE);
  } else {
    module_emit_progress (self);
  }
}

gboolean
ota_module_prepare (OtaModule *self, const char *version, gboolean accept, GError **error)
{
  g_return_val_if_fail (OTA_IS_MODULE (self), FALSE);
  if (self->state != OTA_MODULE_STATE_OFFERED || g_strcmp0 (self->offer->version, version) != 0) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "no offer of version %s is waiting for an answer", version);
    return FALSE;
  }
  if (accept) {
    module_accept (self);
    return TRUE;
  }
  module_log (self, G_LOG_LEVEL_INFO, "owner deferred %s, asking again in %u s", version,
              self->config->retry_interval);
  module_set_state (self, OTA_MODULE_STATE_IDLE);
  module_schedule_retry (self);
  return TRUE;
}

/* Which states each ReportProgress state may follow. */
static gboolean
module_may_report (OtaModule *self, OtaModuleState reported)
{
  OtaModuleState s = self->state;

  if (self->offer == NULL || s == OTA_MODULE_STATE_IDLE || s == OTA_MODULE_STATE_DONE ||
      s == OTA_MODULE_STATE_FAIL)
    return FALSE;
  if (reported == OTA_MODULE_STATE_FAIL)
    return TRUE;
  if (reported == OTA_MODULE_STATE_DONE)
    return s == OTA_MODULE_STATE_READY || s == OTA_MODULE_STATE_BURNING || s == OTA_MODULE_STATE_REBOOTING;
  return s == OTA_MODULE_STATE_READY || s == OTA_MODULE_STATE_BURNING;
}

/* The state an app reports (burning, rebooting, done or fail), parsed once. */
static gboolean
module_parse_reported_state (const char *state, OtaModuleState *reported, GError **error)
{
  int parsed = ota_vocab_state_parse (state);

  if (!ota_vocab_state_is_app_report (parsed)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS,
                 "state must be burning, rebooting, done or fail, not \"%s\"", state);
    return FALSE;
  }
  *reported = (OtaModuleState) parsed;
  return TRUE;
}

static gboolean
module_check_progress_args (const char *state, OtaModuleState *reported, int percent, const char *msg,
                            GError **error)
{
  if (!module_parse_reported_state (state, reported, error))
    return FALSE;
  if (percent < -1 || percent > 100) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "percent must be -1..100, not %d", percent);
    return FALSE;
  }
  if (strlen (msg) > MAX_RESULT_MSG_LEN) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "result_msg longer than %d bytes", MAX_RESULT_MSG_LEN);
    return FALSE;
  }
  return TRUE;
}

static gboolean
module_mark_rebooting (OtaModule *self, GError **error)
{
  OtaRebootMarker marker = {
    .target_version = self->offer->version,
    .task_id = self->offer->task_id,
    .task_id_is_number = self->offer->task_id_is_number,
    .owner = self->owner,
    .boot_id = (char *) ota_state_boot_id (),
  };

  g_autoptr (GError) local_error = NULL;

  if (!ota_reboot_marker_save (self->config->state_dir, self->name, &marker, &local_error)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "cannot remember the reboot: %s", local_error->message);
    return FALSE;
  }
  return TRUE;
}

/* As durable as "rebooting": whoever registers next (this app again, a
 * restarted one, the app after a reboot, the agent restarted meanwhile)
 * learns that the image went to the app. */
static gboolean
module_mark_burning (OtaModule *self, GError **error)
{
  g_autoptr (GError) local_error = NULL;

  if (!module_save_cycle (self, OTA_CYCLE_PHASE_BURNING, &local_error)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "cannot remember the burning: %s", local_error->message);
    return FALSE;
  }
  return TRUE;
}

static void
module_finish_done (OtaModule *self)
{
  module_set_result (self, 0, "");
  module_report_progress (self, "done", -1, 0, "", TRUE);
  g_free (self->version);
  self->version = g_strdup (self->offer->version);
  module_forget_cycle (self);
  module_set_state (self, OTA_MODULE_STATE_DONE);
  module_report_version (self);
}

gboolean
ota_module_report_progress (OtaModule *self, const char *state, int percent, int result_code,
                            const char *result_msg, GError **error)
{
  OtaModuleState reported = OTA_MODULE_STATE_FAIL;

  g_return_val_if_fail (OTA_IS_MODULE (self), FALSE);

  if (!module_check_progress_args (state, &reported, percent, result_msg, error))
    return FALSE;
  if (!module_may_report (self, reported)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "cannot report %s in state %s", state,
                 ota_module_state_to_string (self->state));
    return FALSE;
  }
  if (reported == OTA_MODULE_STATE_BURNING) {
    if (self->state != OTA_MODULE_STATE_BURNING && !module_mark_burning (self, error))
      return FALSE;
    module_report_progress (self, "burning", percent, 0, result_msg, TRUE);
    module_set_state (self, OTA_MODULE_STATE_BURNING);
  } else if (reported == OTA_MODULE_STATE_REBOOTING) {
    if (!module_mark_rebooting (self, error))
      return FALSE;
    /* The marker says all the record said. */
    module_forget_cycle_record (self);
    module_set_state (self, OTA_MODULE_STATE_REBOOTING);
  } else if (reported == OTA_MODULE_STATE_DONE) {
    module_finish_done (self);
  } else {
    module_stop_download (self);
    module_cycle_failed (self, result_code < 0 ? result_code : OTA_RESULT_FAILED, OTA_FAIL_KIND_APP, result_msg);
  }
  return TRUE;
}

void
ota_module_cancel (OtaModule *self)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  if (self->start_timer != 0)
    module_log (self, G_LOG_LEVEL_INFO, "next attempt of %s cancelled", self->offer->version);
  g_clear_handle_id (&self->start_timer, g_source_remove);
  if (self->state != OTA_MODULE_STATE_DOWNLOADING && self->state != OTA_MODULE_STATE_VERIFYING)
    return;
  module_log (self, G_LOG_LEVEL_INFO, "download of %s cancelled at %" G_GUINT64_FORMAT " bytes",
              self->offer->version, self->downloaded);
  module_stop_download (self);
  module_set_result (self, 0, "cancelled");
  module_set_state (self, OTA_MODULE_STATE_IDLE);
}

gboolean
ota_module_check_now (OtaModule *self, GError **error)
{
  g_return_val_if_fail (OTA_IS_MODULE (self), FALSE);
  if (self->owner == NULL) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "module \"%s\" has no owner: nothing to check", self->name);
    return FALSE;
  }
  /* Someone asks to try now (the cause of a failure was fixed, say): the
   * wait before the next attempt is skipped, and the cloud's answer to this
   * report starts it. */
  if (self->fail_streak > 0 || self->start_timer != 0)
    module_log (self, G_LOG_LEVEL_INFO, "check requested: the next attempt is not delayed");
  g_clear_handle_id (&self->start_timer, g_source_remove);
  self->fail_streak = 0;
  module_report_version_for_app (self);
  return TRUE;
}

void
ota_module_flush_reports (OtaModule *self)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  if (self->local_report_timer == 0)
    return;
  g_clear_handle_id (&self->local_report_timer, g_source_remove);
  module_report_version (self);
}

void
ota_module_set_name_guard (OtaModule *self, OtaModuleNameGuard guard, gpointer user_data)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  self->name_guard = guard;
  self->name_guard_data = user_data;
}

gboolean
ota_module_get_image_name (OtaModule *self, dev_t *dev, ino_t *ino, const char **file_name)
{
  struct stat st;

  g_return_val_if_fail (OTA_IS_MODULE (self), FALSE);

  if (self->dir_fd < 0 || self->offer == NULL)
    return FALSE;
  switch (self->state) {
  case OTA_MODULE_STATE_OFFERED:
  case OTA_MODULE_STATE_DOWNLOADING:
  case OTA_MODULE_STATE_VERIFYING:
  case OTA_MODULE_STATE_READY:
  case OTA_MODULE_STATE_BURNING:
  case OTA_MODULE_STATE_REBOOTING:
    break;
  default:
    return FALSE;
  }
  if (fstat (self->dir_fd, &st) != 0)
    return FALSE;
  *dev = st.st_dev;
  *ino = st.st_ino;
  g_free (self->image_name);
  self->image_name = module_image_name (self, self->offer);
  *file_name = self->image_name;
  return TRUE;
}

const char *
ota_module_get_name (OtaModule *self)
{
  g_return_val_if_fail (OTA_IS_MODULE (self), NULL);
  return self->name;
}

const char *
ota_module_get_owner (OtaModule *self)
{
  g_return_val_if_fail (OTA_IS_MODULE (self), NULL);
  return self->owner;
}

void
ota_module_set_problem (OtaModule *self, const char *problem)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  module_set_result (self, problem != NULL ? OTA_RESULT_FAILED : 0, problem);
  module_emit_progress (self);
}

void
ota_module_get_progress (OtaModule *self, OtaModuleProgress *progress)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  g_return_if_fail (progress != NULL);
  progress->version = self->offer != NULL ? self->offer->version : (self->version ? self->version : "");
  progress->state = self->state;
  progress->percent = module_percent (self);
  progress->downloaded = self->downloaded;
  progress->total = self->total;
  progress->result_code = self->result_code;
  progress->result_msg = self->result_msg != NULL ? self->result_msg : "";
}

/* fail_kind of GetStatus: "" unless in state fail, where there always is one. */
static const char *
module_fail_kind (OtaModule *self)
{
  if (self->state != OTA_MODULE_STATE_FAIL)
    return "";
  return ota_fail_kind_to_string (self->fail_kind != OTA_FAIL_KIND_NONE ? self->fail_kind : OTA_FAIL_KIND_OTHER);
}

/* Only agents with trusted keys show these. */
static void
module_fill_signature_status (OtaModule *self, OtaModuleStatus *status)
{
  const OtaSignatureStatement *st = self->signed_by;

  status->signatures = self->keyring != NULL;
  status->signature_checked = status->signatures && st != NULL && self->offer != NULL &&
                              g_strcmp0 (st->version, self->offer->version) == 0;
  if (!status->signature_checked)
    return;
  status->signing_key = st->key_id;
  status->signing_key_file = module_key_origin (self, st);
  status->security_version = st->security_version;
}

void
ota_module_set_keyring (OtaModule *self, const OtaKeyring *keyring)
{
  g_return_if_fail (OTA_IS_MODULE (self));
  self->keyring = keyring;
}

void
ota_module_get_status (OtaModule *self, OtaModuleStatus *status)
{
  const OtaOffer *offer = NULL;

  g_return_if_fail (OTA_IS_MODULE (self));
  g_return_if_fail (status != NULL);

  offer = self->offer;
  *status = (OtaModuleStatus) {
    .state = self->state,
    .version = self->version ? self->version : "",
    .target_version = offer ? offer->version : "",
    .downloaded = self->downloaded,
    .total = self->total,
    .percent = module_percent (self),
    .path = self->path ? self->path : "",
    .owner = self->owner ? self->owner : "",
    .result_code = self->result_code,
    .result_msg = self->result_msg ? self->result_msg : "",
    .fail_kind = module_fail_kind (self),
    .task_id = offer != NULL ? offer->task_id : NULL,
    .user_defined = offer != NULL ? offer->user_defined : NULL,
    .inhibited = (const char *const *) self->inhibitors,
  };
  module_fill_signature_status (self, status);
}

/* The transfer stops; every byte received is written and checkpointed (the
 * download's cancel), the state stays downloading. */
static void
module_pause_download (OtaModule *self)
{
  g_autofree char *why = g_strjoinv ("; ", self->inhibitors);

  module_log (self, G_LOG_LEVEL_INFO, "download of %s paused at %" G_GUINT64_FORMAT " bytes: inhibited (%s)",
              self->offer->version, self->downloaded, why);
  g_signal_handlers_disconnect_by_data (self->download, self);
  ota_download_cancel (self->download);
  g_clear_object (&self->download);
}

void
ota_module_set_inhibitors (OtaModule *self, const char *const *reasons)
{
  g_return_if_fail (OTA_IS_MODULE (self));

  gboolean was = module_is_inhibited (self);

  g_strfreev (self->inhibitors);
  self->inhibitors = g_strdupv ((char **) reasons);
  /* Only a transfer pauses: once verifying, the bytes are all here. */
  if (!was && module_is_inhibited (self) && self->download != NULL && self->state == OTA_MODULE_STATE_DOWNLOADING) {
    module_pause_download (self);
  } else if (was && !module_is_inhibited (self) && self->state == OTA_MODULE_STATE_DOWNLOADING &&
             self->download == NULL && self->offer != NULL && self->owner != NULL) {
    module_log (self, G_LOG_LEVEL_INFO, "no longer inhibited: download of %s goes on", self->offer->version);
    module_start_download (self);
  }
  module_emit_progress (self);
}

OtaModule *
ota_module_new (const char *name, const OtaConfig *config, SoupSession *session)
{
  OtaModule *self = g_object_new (OTA_TYPE_MODULE, NULL);

  g_return_val_if_fail (config != NULL, NULL);

  self->name = g_strdup (name);
  self->config = config;
  self->session = g_object_ref (session);
  return self;
}

static void
ota_module_dispose (GObject *object)
{
  OtaModule *self = OTA_MODULE (object);

  module_stop_download (self);
  g_clear_handle_id (&self->report_timer, g_source_remove);
  g_clear_handle_id (&self->retry_timer, g_source_remove);
  g_clear_handle_id (&self->local_report_timer, g_source_remove);
  g_clear_object (&self->session);
  G_OBJECT_CLASS (ota_module_parent_class)->dispose (object);
}

static void
ota_module_finalize (GObject *object)
{
  OtaModule *self = OTA_MODULE (object);

  if (self->dir_fd >= 0)
    close (self->dir_fd);
  g_clear_pointer (&self->offer, ota_offer_free);
  g_clear_pointer (&self->failed_offer, ota_offer_free);
  module_clear_signature (self);
  g_free (self->name);
  g_strfreev (self->inhibitors);
  g_free (self->owner);
  g_free (self->version);
  g_free (self->firmware_dir);
  g_free (self->image_name);
  g_free (self->path);
  g_free (self->result_msg);
  G_OBJECT_CLASS (ota_module_parent_class)->finalize (object);
}

static void
ota_module_class_init (OtaModuleClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GType type = G_TYPE_FROM_CLASS (klass);

  object_class->dispose = ota_module_dispose;
  object_class->finalize = ota_module_finalize;
  signals[SIGNAL_REPORT] = g_signal_new ("report", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                         3, G_TYPE_STRING, G_TYPE_BOOLEAN, G_TYPE_STRING);
  signals[SIGNAL_OFFERED] = g_signal_new ("offered", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                          2, G_TYPE_STRING, G_TYPE_UINT64);
  signals[SIGNAL_PROGRESS] = g_signal_new ("progress", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                           G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
  signals[SIGNAL_FIRMWARE_READY] = g_signal_new ("firmware-ready", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                 G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_UINT64,
                                                 G_TYPE_STRING);
}

static void
ota_module_init (OtaModule *self)
{
  self->dir_fd = -1;
  self->state = OTA_MODULE_STATE_IDLE;
  self->result_msg = g_strdup ("");
}
