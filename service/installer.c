#include "installer.h"

#include "error.h"
#include "protocol.h"
#include "state-store.h"
#include "util.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a fail report may carry (the module refuses longer messages). */
#define RESULT_MSG_MAX 256
/* version_command must answer quickly: it runs at every start. */
#define VERSION_COMMAND_TIMEOUT_S 60

typedef struct {
  OtaInstallConfig *install;
  const OtaConfig *config;
  OtaAgent *agent;
  char *owner;
  gboolean running;     /* between start and stop */
  gboolean registered;  /* the module's Init went through */
  gboolean installing;
  char *problem;        /* why the module cannot be registered now, NULL when it can */
  guint retry_timer;
  gulong ready_handler;
  int last_percent;     /* the last burning percent reported */
  gint64 last_percent_time;
  int pending_percent;  /* a newer one, held back until progress_interval passed */
  guint percent_timer;
} OtaInstallerPrivate;

G_DEFINE_TYPE_WITH_PRIVATE (OtaInstaller, ota_installer, G_TYPE_OBJECT)

#define PRIV(self) ((OtaInstallerPrivate *) ota_installer_get_instance_private (self))

static void installer_attempt (OtaInstaller *self);
static void installer_resume_cycle (OtaInstaller *self);

void
ota_installer_log (OtaInstaller *self, GLogLevelFlags level, const char *format, ...)
{
  g_return_if_fail (OTA_IS_INSTALLER (self));

  OtaInstallerPrivate *priv = PRIV (self);
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);
  g_log_structured (G_LOG_DOMAIN, level, "IV_OTA_MODULE", priv->install->module, "MESSAGE", "module %s: %s installer: %s",
                    ota_protocol_module_label (priv->install->module), OTA_INSTALLER_GET_CLASS (self)->method_name,
                    text);
}

char *
ota_installer_clean_line (const char *line, gsize max_bytes)
{
  g_autofree char *valid = g_utf8_make_valid (line, -1);
  const char *end;

  for (char *p = valid; *p != '\0'; p++) {
    if (g_ascii_iscntrl (*p))
      *p = ' ';
  }
  g_strstrip (valid);
  if (strlen (valid) <= max_bytes)
    return g_steal_pointer (&valid);
  /* Cut at a character boundary. */
  end = g_utf8_find_prev_char (valid, valid + max_bytes + 1);
  return g_strndup (valid, end != NULL ? (gsize) (end - valid) : 0);
}

/* ---- the firmware directory: root's, nobody else's ---- */

static gboolean
installer_prepare_dir (OtaInstaller *self, GError **error)
{
  const char *dir = PRIV (self)->install->firmware_dir;
  struct stat st;

  if (g_mkdir_with_parents (dir, 0700) != 0 || lstat (dir, &st) != 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create firmware_dir %s: %s", dir,
                 g_strerror (saved));
    return FALSE;
  }
  if (!S_ISDIR (st.st_mode) || st.st_uid != geteuid ()) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                 "firmware_dir %s must be a directory of the agent's user (uid %u), not a symlink", dir,
                 (guint) geteuid ());
    return FALSE;
  }
  /* Images wait there before installation: nobody else may read or swap them. */
  if ((st.st_mode & 077) != 0 && chmod (dir, 0700) != 0) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot make firmware_dir %s private: %s", dir,
                 g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}

/* ---- registration: the agent as the module's owner ---- */

static gboolean
installer_retry_cb (gpointer user_data)
{
  OtaInstaller *self = user_data;

  PRIV (self)->retry_timer = 0;
  installer_attempt (self);
  return G_SOURCE_REMOVE;
}

/* The module cannot be registered now: GetStatus shows why, and the next
 * attempt comes after retry_interval. */
static void
installer_set_problem (OtaInstaller *self, const char *problem)
{
  OtaInstallerPrivate *priv = PRIV (self);

  /* Logged once per new reason, not at every retry. */
  if (g_strcmp0 (priv->problem, problem) != 0)
    ota_installer_log (self, G_LOG_LEVEL_WARNING, "%s (trying again every %u s)", problem,
                       priv->config->retry_interval);
  g_free (priv->problem);
  priv->problem = g_strdup (problem);
  ota_agent_set_module_problem (priv->agent, priv->install->module, problem);
  if (priv->running && priv->retry_timer == 0)
    priv->retry_timer = g_timeout_add_seconds (priv->config->retry_interval, installer_retry_cb, self);
}

static void
installer_register (OtaInstaller *self, const char *version)
{
  OtaInstallerPrivate *priv = PRIV (self);
  g_autoptr (GError) error = NULL;

  if (priv->problem != NULL)
    ota_agent_set_module_problem (priv->agent, priv->install->module, NULL);
  if (!ota_agent_init_module (priv->agent, priv->owner, geteuid (), getegid (), priv->install->module, version,
                              priv->install->firmware_dir, FALSE, &error)) {
    installer_set_problem (self, error->message);
    return;
  }
  if (priv->problem != NULL)
    ota_installer_log (self, G_LOG_LEVEL_INFO, "available again");
  g_clear_pointer (&priv->problem, g_free);
  priv->registered = TRUE;
  installer_resume_cycle (self);
}

typedef struct {
  OtaInstaller *self;
  char *version;
} ConfirmData;

static void
confirm_data_free (ConfirmData *data)
{
  g_object_unref (data->self);
  g_free (data->version);
  g_free (data);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ConfirmData, confirm_data_free)

static void
on_confirmed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (ConfirmData) data = user_data;
  g_autoptr (GError) error = NULL;

  if (!OTA_INSTALLER_GET_CLASS (data->self)->confirm_finish (data->self, result, &error))
    ota_installer_log (data->self, G_LOG_LEVEL_WARNING, "cannot confirm %s after the reboot: %s", data->version,
                       error->message);
  else
    ota_installer_log (data->self, G_LOG_LEVEL_INFO, "%s confirmed after the reboot", data->version);
  if (PRIV (data->self)->running)
    installer_register (data->self, data->version);
}

/* The running version is the target of a pending cycle (a reboot marker,
 * or an install the agent was stopped in, RAUC finishing it and the device
 * rebooting meanwhile): this start completes that update, and the installer
 * makes it final before the module reports done. */
static gboolean
installer_reached_target (OtaInstaller *self, const char *version)
{
  OtaInstallerPrivate *priv = PRIV (self);
  OtaRebootMarker marker = { 0 };
  g_auto (OtaCycleRecord) record = { 0 };
  gboolean reached = FALSE;

  if (ota_reboot_marker_load (priv->config->state_dir, priv->install->module, &marker, NULL)) {
    reached = g_strcmp0 (marker.target_version, version) == 0;
    ota_reboot_marker_clear (&marker);
    return reached;
  }
  return ota_cycle_record_load (priv->config->state_dir, priv->install->module, &record, NULL) &&
         record.phase == OTA_CYCLE_PHASE_BURNING && g_strcmp0 (record.target_version, version) == 0;
}

static void
on_version (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (OtaInstaller) self = user_data;
  OtaInstallerClass *klass = OTA_INSTALLER_GET_CLASS (self);
  g_autoptr (GError) error = NULL;
  g_autofree char *version = klass->query_version_finish (self, result, &error);
  ConfirmData *data;

  if (!PRIV (self)->running)
    return;
  if (version == NULL) {
    installer_set_problem (self, error->message);
    return;
  }
  if (klass->confirm == NULL || !installer_reached_target (self, version)) {
    installer_register (self, version);
    return;
  }
  data = g_new0 (ConfirmData, 1);
  data->self = g_object_ref (self);
  data->version = g_strdup (version);
  klass->confirm (self, version, on_confirmed, data);
}

static void
installer_attempt (OtaInstaller *self)
{
  g_autoptr (GError) error = NULL;

  if (!installer_prepare_dir (self, &error)) {
    installer_set_problem (self, error->message);
    return;
  }
  OTA_INSTALLER_GET_CLASS (self)->query_version (self, on_version, g_object_ref (self));
}

/* ---- one install ---- */

static void
installer_report (OtaInstaller *self, const char *state, int percent, int code, const char *msg)
{
  OtaInstallerPrivate *priv = PRIV (self);
  g_autoptr (GError) error = NULL;

  if (!ota_agent_report_progress (priv->agent, priv->owner, priv->install->module, state, percent, code, msg,
                                  &error))
    ota_installer_log (self, G_LOG_LEVEL_WARNING, "cannot report %s: %s", state, error->message);
}

static void
installer_send_percent (OtaInstaller *self, int percent)
{
  OtaInstallerPrivate *priv = PRIV (self);

  priv->last_percent = percent;
  priv->last_percent_time = g_get_monotonic_time ();
  installer_report (self, "burning", percent, 0, "");
}

static gboolean
installer_percent_timer_cb (gpointer user_data)
{
  OtaInstaller *self = user_data;
  OtaInstallerPrivate *priv = PRIV (self);

  priv->percent_timer = 0;
  if (priv->installing && priv->pending_percent != priv->last_percent)
    installer_send_percent (self, priv->pending_percent);
  return G_SOURCE_REMOVE;
}

void
ota_installer_report_percent (OtaInstaller *self, int percent)
{
  g_return_if_fail (OTA_IS_INSTALLER (self));

  OtaInstallerPrivate *priv = PRIV (self);
  gint64 interval = (gint64) priv->config->progress_interval * G_USEC_PER_SEC;
  gint64 wait = priv->last_percent_time + interval - g_get_monotonic_time ();

  percent = CLAMP (percent, 0, 100);
  if (!priv->installing || percent == priv->last_percent)
    return;
  /* Every burning report is a reliable message: at most one per
   * progress_interval; one held back goes out when the interval is over
   * (100 at once: it is the last). */
  if (percent == 100 || wait <= 0) {
    g_clear_handle_id (&priv->percent_timer, g_source_remove);
    installer_send_percent (self, percent);
    return;
  }
  priv->pending_percent = percent;
  if (priv->percent_timer == 0)
    priv->percent_timer = g_timeout_add ((guint) (wait / 1000) + 1, installer_percent_timer_cb, self);
}

static void
installer_remove_image (OtaInstaller *self, const char *path)
{
  g_autoptr (GError) error = NULL;

  if (!ota_remove_file (path, &error))
    ota_installer_log (self, G_LOG_LEVEL_WARNING, "%s", error->message);
}

static void
on_reboot_command_exited (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (OtaInstaller) self = user_data;
  g_autoptr (GError) error = NULL;

  if (!g_subprocess_wait_check_finish (G_SUBPROCESS (source), result, &error))
    ota_installer_log (self, G_LOG_LEVEL_WARNING,
                       "reboot_command failed: %s (the new version runs after the next reboot)", error->message);
}

static void
installer_reboot (OtaInstaller *self)
{
  OtaInstallerPrivate *priv = PRIV (self);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) process = NULL;
  g_autofree char *line = g_strjoinv (" ", priv->install->reboot_command);

  ota_installer_log (self, G_LOG_LEVEL_INFO, "rebooting: %s", line);
  process = g_subprocess_newv ((const char *const *) priv->install->reboot_command, G_SUBPROCESS_FLAGS_NONE, &error);
  if (process == NULL) {
    ota_installer_log (self, G_LOG_LEVEL_WARNING,
                       "cannot run reboot_command: %s (the new version runs after the next reboot)", error->message);
    return;
  }
  g_subprocess_wait_check_async (process, NULL, on_reboot_command_exited, g_object_ref (self));
}

static void
installer_succeeded (OtaInstaller *self, const char *version)
{
  OtaInstallerPrivate *priv = PRIV (self);
  gboolean reboot = priv->install->reboot_command[0] != NULL;

  ota_installer_log (self, G_LOG_LEVEL_INFO, "%s installed", version);
  if (!reboot && !OTA_INSTALLER_GET_CLASS (self)->needs_reboot) {
    installer_report (self, "done", -1, 0, "");
    return;
  }
  /* The marker first: whatever happens next, the start after the reboot
   * tells the cloud how it went. */
  installer_report (self, "rebooting", -1, 0, "");
  if (reboot)
    installer_reboot (self);
  else
    ota_installer_log (self, G_LOG_LEVEL_INFO, "reboot_command is empty: %s runs after the next reboot", version);
}

typedef struct {
  OtaInstaller *self;
  char *path;
  char *version;
} InstallData;

static void
install_data_free (InstallData *data)
{
  g_object_unref (data->self);
  g_free (data->path);
  g_free (data->version);
  g_free (data);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (InstallData, install_data_free)

static void
on_installed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (InstallData) data = user_data;
  OtaInstaller *self = data->self;
  OtaInstallerPrivate *priv = PRIV (self);
  g_autoptr (GError) error = NULL;
  gboolean ok = OTA_INSTALLER_GET_CLASS (self)->install_finish (self, result, &error);
  g_autofree char *msg = NULL;

  priv->installing = FALSE;
  g_clear_handle_id (&priv->percent_timer, g_source_remove);
  if (!priv->running)
    return; /* the agent stops: the next start resolves this install */
  if (*data->path != '\0')
    installer_remove_image (self, data->path);
  if (ok) {
    installer_succeeded (self, data->version);
    return;
  }
  msg = ota_installer_clean_line (error->message, RESULT_MSG_MAX);
  ota_installer_log (self, G_LOG_LEVEL_WARNING, "installing %s failed: %s", data->version, msg);
  installer_report (self, "fail", -1, OTA_RESULT_FAILED, msg);
}

static InstallData *
install_data_new (OtaInstaller *self, const char *path, const char *version)
{
  InstallData *data = g_new0 (InstallData, 1);

  data->self = g_object_ref (self);
  data->path = g_strdup (path);
  data->version = g_strdup (version);
  return data;
}

static void
installer_install (OtaInstaller *self, const char *version, const char *path)
{
  OtaInstallerPrivate *priv = PRIV (self);

  ota_installer_log (self, G_LOG_LEVEL_INFO, "installing %s from %s", version, path);
  priv->installing = TRUE;
  installer_send_percent (self, 0);
  OTA_INSTALLER_GET_CLASS (self)->install (self, path, version, on_installed, install_data_new (self, path, version));
}

static void
on_firmware_ready (OtaAgent *agent, const char *module, const char *version, const char *path, guint64 size,
                   const char *md5, OtaInstaller *self)
{
  OtaInstallerPrivate *priv = PRIV (self);

  if (g_str_equal (module, priv->install->module) && priv->registered && !priv->installing)
    installer_install (self, version, path);
}

/* The module went on with a cycle of this installer's from before the agent
 * restarted (in this boot): an image handed over but not installed yet is
 * installed now; an install that was under way is looked at again. */
static void
installer_resume_cycle (OtaInstaller *self)
{
  OtaInstallerPrivate *priv = PRIV (self);
  OtaModuleStatus status;
  const char *target, *path;

  if (!ota_agent_get_status (priv->agent, priv->install->module, &status, NULL))
    return;
  target = status.target_version;
  path = status.path;
  if (status.state == OTA_MODULE_STATE_READY && *path != '\0') {
    installer_install (self, target, path);
  } else if (status.state == OTA_MODULE_STATE_BURNING) {
    ota_installer_log (self, G_LOG_LEVEL_INFO, "the agent stopped while %s was being installed: how did it end?",
                       target);
    priv->installing = TRUE;
    OTA_INSTALLER_GET_CLASS (self)->resume (self, target, on_installed, install_data_new (self, path, target));
  }
}

/* ---- version_command ---- */

typedef struct {
  GSubprocess *process;
  char *line;
  guint timer;
  gboolean timed_out;
} VersionRun;

static void
version_run_free (VersionRun *run)
{
  g_clear_handle_id (&run->timer, g_source_remove);
  g_clear_object (&run->process);
  g_free (run->line);
  g_free (run);
}

static gboolean
version_run_timeout_cb (gpointer user_data)
{
  VersionRun *run = user_data;

  run->timer = 0;
  run->timed_out = TRUE;
  g_subprocess_force_exit (run->process);
  return G_SOURCE_REMOVE;
}

static char *
last_line (GBytes *bytes)
{
  g_autofree char *text = bytes != NULL ? g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes)) : NULL;
  g_auto (GStrv) lines = NULL;

  if (text == NULL)
    return g_strdup ("");
  g_strchomp (text);
  lines = g_strsplit (text, "\n", -1);
  return ota_installer_clean_line (lines[0] != NULL ? lines[g_strv_length (lines) - 1] : "", RESULT_MSG_MAX);
}

static char *
first_line (GBytes *bytes)
{
  g_autofree char *text = bytes != NULL ? g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes)) : NULL;

  if (text == NULL)
    return g_strdup ("");
  text[strcspn (text, "\n")] = '\0';
  return g_strstrip (g_steal_pointer (&text));
}

static void
on_version_command_output (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  VersionRun *run = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) out = NULL;
  g_autoptr (GBytes) err = NULL;
  g_autofree char *stderr_line = NULL;
  g_autofree char *version = NULL;

  if (!g_subprocess_communicate_finish (run->process, result, &out, &err, &error)) {
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "version_command %s: %s", run->line, error->message);
    return;
  }
  stderr_line = last_line (err);
  if (run->timed_out || !g_subprocess_get_successful (run->process)) {
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "version_command %s %s%s%s", run->line,
                             run->timed_out ? "did not answer in time" : "failed",
                             *stderr_line != '\0' ? ": " : "", stderr_line);
    return;
  }
  version = first_line (out);
  if (!ota_protocol_installed_version_is_valid (version)) {
    g_autofree char *shown = ota_installer_clean_line (version, 64);
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                             "version_command %s printed \"%s\", not a version (1..63 printable characters "
                             "without spaces)", run->line, shown);
    return;
  }
  g_task_return_pointer (task, g_steal_pointer (&version), g_free);
}

void
ota_installer_run_version_command (OtaInstaller *self, char **argv, GAsyncReadyCallback callback,
                                   gpointer user_data)
{
  g_return_if_fail (OTA_IS_INSTALLER (self));

  g_autoptr (GTask) task = g_task_new (self, NULL, callback, user_data);
  g_autoptr (GError) error = NULL;
  VersionRun *run = g_new0 (VersionRun, 1);

  g_task_set_task_data (task, run, (GDestroyNotify) version_run_free);
  run->line = g_strjoinv (" ", argv);
  run->process = g_subprocess_newv ((const char *const *) argv,
                                    G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  if (run->process == NULL) {
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot run version_command %s: %s", run->line,
                             error->message);
    return;
  }
  run->timer = g_timeout_add_seconds (VERSION_COMMAND_TIMEOUT_S, version_run_timeout_cb, run);
  g_subprocess_communicate_async (run->process, NULL, NULL, on_version_command_output, g_steal_pointer (&task));
}

char *
ota_installer_run_version_command_finish (OtaInstaller *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (OTA_IS_INSTALLER (self), NULL);
  g_return_val_if_fail (result != NULL, NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- life cycle ---- */

void
ota_installer_start (OtaInstaller *self)
{
  g_return_if_fail (OTA_IS_INSTALLER (self));

  OtaInstallerPrivate *priv = PRIV (self);

  priv->running = TRUE;
  ota_installer_log (self, G_LOG_LEVEL_INFO, "the agent owns this module; images in %s", priv->install->firmware_dir);
  installer_attempt (self);
}

void
ota_installer_stop (OtaInstaller *self)
{
  g_return_if_fail (OTA_IS_INSTALLER (self));

  OtaInstallerPrivate *priv = PRIV (self);
  OtaInstallerClass *klass = OTA_INSTALLER_GET_CLASS (self);

  if (!priv->running)
    return;
  priv->running = FALSE;
  g_clear_handle_id (&priv->retry_timer, g_source_remove);
  g_clear_handle_id (&priv->percent_timer, g_source_remove);
  if (priv->installing && klass->stop != NULL)
    klass->stop (self);
}

const char *
ota_installer_get_module (OtaInstaller *self)
{
  g_return_val_if_fail (OTA_IS_INSTALLER (self), NULL);
  return PRIV (self)->install->module;
}

const char *
ota_installer_get_owner (OtaInstaller *self)
{
  g_return_val_if_fail (OTA_IS_INSTALLER (self), NULL);
  return PRIV (self)->owner;
}

const OtaInstallConfig *
ota_installer_get_install_config (OtaInstaller *self)
{
  g_return_val_if_fail (OTA_IS_INSTALLER (self), NULL);
  return PRIV (self)->install;
}

const OtaConfig *
ota_installer_get_config (OtaInstaller *self)
{
  g_return_val_if_fail (OTA_IS_INSTALLER (self), NULL);
  return PRIV (self)->config;
}

GType ota_installer_rauc_get_type (void);
GType ota_installer_command_get_type (void);

OtaInstaller *
ota_installer_new (const OtaInstallConfig *install, const OtaConfig *config, OtaAgent *agent)
{
  g_return_val_if_fail (install != NULL, NULL);
  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (OTA_IS_AGENT (agent), NULL);

  GType type = install->method == OTA_INSTALL_METHOD_RAUC ? ota_installer_rauc_get_type ()
                                                           : ota_installer_command_get_type ();
  OtaInstaller *self = g_object_new (type, NULL);
  OtaInstallerPrivate *priv = PRIV (self);

  priv->install = g_new0 (OtaInstallConfig, 1);
  priv->install->module = g_strdup (install->module);
  priv->install->method = install->method;
  priv->install->reboot_command = g_strdupv (install->reboot_command);
  priv->install->firmware_dir = g_strdup (install->firmware_dir);
  priv->install->rauc_system_bus = install->rauc_system_bus;
  priv->install->version_command = g_strdupv (install->version_command);
  priv->install->command = g_strdupv (install->command);
  priv->install->timeout = install->timeout;
  priv->config = config;
  priv->agent = agent;
  priv->owner = g_strconcat ("iv-otad:", OTA_INSTALLER_GET_CLASS (self)->method_name, NULL);
  priv->ready_handler = g_signal_connect (agent, "firmware-ready", G_CALLBACK (on_firmware_ready), self);
  return self;
}

static void
ota_installer_dispose (GObject *object)
{
  OtaInstaller *self = OTA_INSTALLER (object);
  OtaInstallerPrivate *priv = PRIV (self);

  ota_installer_stop (self);
  if (priv->agent != NULL && priv->ready_handler != 0)
    g_signal_handler_disconnect (priv->agent, priv->ready_handler);
  priv->ready_handler = 0;
  priv->agent = NULL;
  G_OBJECT_CLASS (ota_installer_parent_class)->dispose (object);
}

static void
ota_installer_finalize (GObject *object)
{
  OtaInstallerPrivate *priv = PRIV (OTA_INSTALLER (object));

  ota_install_config_free (priv->install);
  g_free (priv->owner);
  g_free (priv->problem);
  G_OBJECT_CLASS (ota_installer_parent_class)->finalize (object);
}

static void
ota_installer_class_init (OtaInstallerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = ota_installer_dispose;
  object_class->finalize = ota_installer_finalize;
}

static void
ota_installer_init (OtaInstaller *self)
{
  PRIV (self)->last_percent = -1;
}
