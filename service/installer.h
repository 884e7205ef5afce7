/* An installer: the agent itself as the owner of a module ([install] groups
 * of the config), for firmware that needs no application code to install.
 *
 * It plays the part of an app through the same agent calls an app's D-Bus
 * requests make (Init with the running version, then ReportProgress
 * burning / rebooting / done / fail once the image is ready), so the module
 * state machine does not know it is there. The subclasses say how the
 * running version is found and how an image is installed:
 * installer-rauc.c (RAUC over D-Bus) and installer-command.c (a command). */
#pragma once

#include "agent.h"
#include "install-config.h"

#include <gio/gio.h>

G_BEGIN_DECLS

#define OTA_TYPE_INSTALLER (ota_installer_get_type ())
G_DECLARE_DERIVABLE_TYPE (OtaInstaller, ota_installer, OTA, INSTALLER, GObject)

struct _OtaInstallerClass {
  GObjectClass parent_class;

  /* The running version (a newly allocated string), or an error telling why
   * it cannot be known now: the agent then shows that error in GetStatus
   * and asks again every retry_interval. */
  void (*query_version) (OtaInstaller *self, GAsyncReadyCallback callback, gpointer user_data);
  char *(*query_version_finish) (OtaInstaller *self, GAsyncResult *result, GError **error);

  /* Optional: the reboot reached @version: make that final before done is
   * reported (RAUC: mark the booted slot good). A failure is logged. */
  void (*confirm) (OtaInstaller *self, const char *version, GAsyncReadyCallback callback, gpointer user_data);
  gboolean (*confirm_finish) (OtaInstaller *self, GAsyncResult *result, GError **error);

  /* Installs the verified image @path of @version; percent through
   * ota_installer_report_percent(). The error message becomes the fail
   * report's result_msg. */
  void (*install) (OtaInstaller *self, const char *path, const char *version, GAsyncReadyCallback callback,
                   gpointer user_data);
  gboolean (*install_finish) (OtaInstaller *self, GAsyncResult *result, GError **error);

  /* An install of @version started before the agent restarted (the module
   * went on in burning): completes like install (install_finish reads the
   * result), TRUE when it finished by itself and the reboot may follow,
   * else the reason it did not. */
  void (*resume) (OtaInstaller *self, const char *version, GAsyncReadyCallback callback, gpointer user_data);

  /* Optional: the agent stops; an install under way is abandoned. */
  void (*stop) (OtaInstaller *self);

  /* TRUE: the new version runs only after a reboot, even when
   * reboot_command is empty (then someone else reboots). FALSE: an empty
   * reboot_command means the install is done at once. */
  gboolean needs_reboot;
  /* "rauc", "command": logs and the owner name "iv-otad:<method>". */
  const char *method_name;
};

/* The installer of @install (a copy is kept), owning its module in @agent
 * (not referenced: the agent owns the installer). @config must outlive it. */
OtaInstaller *ota_installer_new (const OtaInstallConfig *install, const OtaConfig *config, OtaAgent *agent);

/* Creates firmware_dir, finds the running version and registers the module. */
void ota_installer_start (OtaInstaller *self);
void ota_installer_stop (OtaInstaller *self);

const char *ota_installer_get_module (OtaInstaller *self);
/* The owner name the module shows: "iv-otad:rauc" or "iv-otad:command". Not
 * a bus name, so no app can take it. */
const char *ota_installer_get_owner (OtaInstaller *self);

/* For the subclasses. */
const OtaInstallConfig *ota_installer_get_install_config (OtaInstaller *self);
const OtaConfig *ota_installer_get_config (OtaInstaller *self);
/* The install under way reached @percent (0..100). */
void ota_installer_report_percent (OtaInstaller *self, int percent);
/* Log line of this installer's module, "module <name>: ...". */
void ota_installer_log (OtaInstaller *self, GLogLevelFlags level, const char *format, ...) G_GNUC_PRINTF (3, 4);

/* Runs @argv (no shell) and returns the first line it printed, stripped, as a
 * version; errors name the command and its last stderr line. */
void ota_installer_run_version_command (OtaInstaller *self, char **argv, GAsyncReadyCallback callback,
                                        gpointer user_data);
char *ota_installer_run_version_command_finish (OtaInstaller *self, GAsyncResult *result, GError **error);

/* A line of a child's output fit for a result_msg: valid UTF-8, no control
 * characters, at most @max_bytes. */
char *ota_installer_clean_line (const char *line, gsize max_bytes);

G_END_DECLS
