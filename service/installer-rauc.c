/* method=rauc: the image is a RAUC bundle, installed by RAUC's service over
 * D-Bus (de.pengutronix.rauc.Installer on "/"), the way rauc-hawkbit-updater
 * drives it. The running version is the booted slot's bundle.version; after
 * the reboot into the new slot, Mark("good", "booted") makes it final before
 * the module reports done. */
#include "installer.h"

#include "protocol.h"

#include <string.h>

#define RAUC_NAME "de.pengutronix.rauc"
#define RAUC_PATH "/"
#define RAUC_INTERFACE "de.pengutronix.rauc.Installer"
/* Short calls (slot status, mark): RAUC answers at once when it runs. */
#define RAUC_CALL_TIMEOUT_MS 30000

struct _OtaInstallerRauc {
  OtaInstaller parent_instance;
  GDBusConnection *connection;
  GTask *task;          /* the install under way */
  guint completed_id;   /* Completed signal subscription while installing */
  guint progress_id;    /* PropertiesChanged subscription while installing */
};

G_DECLARE_FINAL_TYPE (OtaInstallerRauc, ota_installer_rauc, OTA, INSTALLER_RAUC, OtaInstaller)
G_DEFINE_TYPE (OtaInstallerRauc, ota_installer_rauc, OTA_TYPE_INSTALLER)

static const char *
rauc_bus_name (OtaInstallerRauc *self)
{
  return ota_installer_get_install_config (OTA_INSTALLER (self))->rauc_system_bus ? "system" : "session";
}

/* RAUC's error, or that RAUC is not there, in words an operator can act on. */
static void
rauc_prefix_error (OtaInstallerRauc *self, GError **error, const char *what)
{
  g_dbus_error_strip_remote_error (*error);
  g_prefix_error (error, "RAUC (%s on the %s bus) %s: ", RAUC_NAME, rauc_bus_name (self), what);
}

static GDBusConnection *
rauc_connection (OtaInstallerRauc *self, GError **error)
{
  GBusType type = ota_installer_get_install_config (OTA_INSTALLER (self))->rauc_system_bus ? G_BUS_TYPE_SYSTEM
                                                                                            : G_BUS_TYPE_SESSION;

  if (self->connection == NULL || g_dbus_connection_is_closed (self->connection)) {
    g_clear_object (&self->connection);
    self->connection = g_bus_get_sync (type, NULL, error);
  }
  return self->connection;
}

static void
rauc_call (OtaInstallerRauc *self, const char *method, GVariant *parameters, const char *reply_type, GTask *task,
           GAsyncReadyCallback callback)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *connection = rauc_connection (self, &error);

  if (connection == NULL) {
    g_variant_unref (g_variant_ref_sink (parameters));
    rauc_prefix_error (self, &error, "cannot be reached");
    g_task_return_error (task, g_steal_pointer (&error));
    g_object_unref (task);
    return;
  }
  g_dbus_connection_call (connection, RAUC_NAME, RAUC_PATH, RAUC_INTERFACE, method, parameters,
                          G_VARIANT_TYPE (reply_type), G_DBUS_CALL_FLAGS_NONE, RAUC_CALL_TIMEOUT_MS, NULL, callback,
                          task);
}

/* ---- the running version ---- */

/* bundle.version of the slot in state "booted"; NULL with @slot set when that
 * slot has none (factory-flashed), NULL with @slot NULL when no slot is booted. */
static char *
booted_bundle_version (GVariant *slots, char **slot)
{
  GVariantIter iter;
  const char *name;
  GVariant *status;

  g_variant_iter_init (&iter, slots);
  while (g_variant_iter_loop (&iter, "(&s@a{sv})", &name, &status)) {
    const char *state = NULL;
    const char *version = NULL;

    if (!g_variant_lookup (status, "state", "&s", &state) || g_strcmp0 (state, "booted") != 0)
      continue;
    *slot = g_strdup (name);
    g_variant_lookup (status, "bundle.version", "&s", &version);
    return g_strdup (version);
  }
  return NULL;
}

static void
on_version_command (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;
  char *version = ota_installer_run_version_command_finish (OTA_INSTALLER (source), result, &error);

  if (version == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, version, g_free);
}

static void
on_slot_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  OtaInstallerRauc *self = g_task_get_source_object (task);
  const OtaInstallConfig *install = ota_installer_get_install_config (OTA_INSTALLER (self));
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) slots = NULL;
  g_autofree char *slot = NULL;
  g_autofree char *version = NULL;

  if (reply == NULL) {
    rauc_prefix_error (self, &error, "does not answer GetSlotStatus");
    g_task_return_error (task, g_steal_pointer (&error));
    return;
  }
  slots = g_variant_get_child_value (reply, 0);
  version = booted_bundle_version (slots, &slot);
  if (version != NULL && ota_protocol_installed_version_is_valid (version)) {
    g_task_return_pointer (task, g_steal_pointer (&version), g_free);
    return;
  }
  if (install->version_command[0] != NULL) {
    /* A factory-flashed slot has no bundle information. */
    ota_installer_run_version_command (OTA_INSTALLER (self), install->version_command, on_version_command,
                                       g_steal_pointer (&task));
    return;
  }
  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                           slot == NULL ? "RAUC reports no booted slot%s (check its bootloader configuration), and no "
                                          "version_command is set"
                                        : "the booted slot %s has no valid bundle.version (not installed by RAUC), "
                                          "and no version_command is set",
                           slot != NULL ? slot : "");
}

static void
rauc_query_version (OtaInstaller *installer, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (installer, NULL, callback, user_data);

  rauc_call (OTA_INSTALLER_RAUC (installer), "GetSlotStatus", g_variant_new ("()"), "(a(sa{sv}))", task,
             on_slot_status);
}

static char *
rauc_query_version_finish (OtaInstaller *installer, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- after the reboot ---- */

static void
on_marked (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  OtaInstallerRauc *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  const char *slot = NULL;
  const char *message = NULL;

  if (reply == NULL) {
    rauc_prefix_error (self, &error, "refused to mark the booted slot good");
    g_task_return_error (task, g_steal_pointer (&error));
    return;
  }
  g_variant_get (reply, "(&s&s)", &slot, &message);
  ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_INFO, "slot %s marked good: %s", slot, message);
  g_task_return_boolean (task, TRUE);
}

static void
rauc_confirm (OtaInstaller *installer, const char *version, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (installer, NULL, callback, user_data);

  rauc_call (OTA_INSTALLER_RAUC (installer), "Mark", g_variant_new ("(ss)", "good", "booted"), "(ss)", task,
             on_marked);
}

static gboolean
rauc_confirm_finish (OtaInstaller *installer, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- installing a bundle ---- */

static void
rauc_unsubscribe (OtaInstallerRauc *self)
{
  if (self->connection == NULL)
    return;
  if (self->completed_id != 0)
    g_dbus_connection_signal_unsubscribe (self->connection, self->completed_id);
  if (self->progress_id != 0)
    g_dbus_connection_signal_unsubscribe (self->connection, self->progress_id);
  self->completed_id = self->progress_id = 0;
}

static void
rauc_finish_install (OtaInstallerRauc *self, GError *error)
{
  g_autoptr (GTask) task = g_steal_pointer (&self->task);

  rauc_unsubscribe (self);
  if (task == NULL) {
    g_clear_error (&error);
    return;
  }
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_last_error (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (OtaInstallerRauc) self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) value = NULL;
  const char *last_error = "";

  if (reply != NULL) {
    g_variant_get (reply, "(v)", &value);
    if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
      last_error = g_variant_get_string (value, NULL);
  }
  rauc_finish_install (self, g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "RAUC: %s",
                                          *last_error != '\0' ? last_error : "installation failed"));
}

static void
on_completed (GDBusConnection *connection, const char *sender, const char *path, const char *interface,
              const char *signal, GVariant *parameters, gpointer user_data)
{
  OtaInstallerRauc *self = user_data;
  gint32 code = -1;

  if (self->task == NULL || !g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(i)")))
    return;
  g_variant_get (parameters, "(i)", &code);
  if (code == 0) {
    rauc_finish_install (self, NULL);
    return;
  }
  /* Read it now: the property's change may come after the signal. */
  g_dbus_connection_call (connection, RAUC_NAME, RAUC_PATH, "org.freedesktop.DBus.Properties", "Get",
                          g_variant_new ("(ss)", RAUC_INTERFACE, "LastError"), G_VARIANT_TYPE ("(v)"),
                          G_DBUS_CALL_FLAGS_NONE, RAUC_CALL_TIMEOUT_MS, NULL, on_last_error, g_object_ref (self));
}

static void
on_properties_changed (GDBusConnection *connection, const char *sender, const char *path, const char *interface,
                       const char *signal, GVariant *parameters, gpointer user_data)
{
  OtaInstallerRauc *self = user_data;
  const char *changed_interface = NULL;
  g_autoptr (GVariant) changed = NULL;
  g_autoptr (GVariant) progress = NULL;
  gint32 percent = 0;
  const char *message = NULL;
  gint32 depth = 0;

  if (self->task == NULL || !g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)")))
    return;
  g_variant_get (parameters, "(&s@a{sv}@as)", &changed_interface, &changed, NULL);
  if (g_strcmp0 (changed_interface, RAUC_INTERFACE) != 0)
    return;
  progress = g_variant_lookup_value (changed, "Progress", G_VARIANT_TYPE ("(isi)"));
  if (progress == NULL)
    return;
  g_variant_get (progress, "(i&si)", &percent, &message, &depth);
  ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_DEBUG, "RAUC %d %%: %s", percent, message);
  ota_installer_report_percent (OTA_INSTALLER (self), percent);
}

static void
on_install_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (OtaInstallerRauc) self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply != NULL)
    return; /* RAUC works on it: Completed tells how it went */
  rauc_prefix_error (self, &error, "refused the installation");
  rauc_finish_install (self, g_steal_pointer (&error));
}

static void
rauc_install (OtaInstaller *installer, const char *path, const char *version, GAsyncReadyCallback callback,
              gpointer user_data)
{
  OtaInstallerRauc *self = OTA_INSTALLER_RAUC (installer);
  g_autoptr (GTask) task = g_task_new (self, NULL, callback, user_data);
  g_autoptr (GError) error = NULL;
  GDBusConnection *connection = rauc_connection (self, &error);

  if (connection == NULL) {
    rauc_prefix_error (self, &error, "cannot be reached");
    g_task_return_error (task, g_steal_pointer (&error));
    return;
  }
  self->task = g_steal_pointer (&task);
  /* Subscribed before the call: Completed may follow its reply closely. */
  self->completed_id = g_dbus_connection_signal_subscribe (connection, RAUC_NAME, RAUC_INTERFACE, "Completed",
                                                           RAUC_PATH, NULL, G_DBUS_SIGNAL_FLAGS_NONE, on_completed,
                                                           self, NULL);
  self->progress_id = g_dbus_connection_signal_subscribe (connection, RAUC_NAME, "org.freedesktop.DBus.Properties",
                                                          "PropertiesChanged", RAUC_PATH, NULL,
                                                          G_DBUS_SIGNAL_FLAGS_NONE, on_properties_changed, self, NULL);
  /* RAUC replies once the installation started; writing the slot takes as
   * long as it takes, and Completed ends it. */
  g_dbus_connection_call (connection, RAUC_NAME, RAUC_PATH, RAUC_INTERFACE, "InstallBundle",
                          g_variant_new ("(s@a{sv})", path, g_variant_new ("a{sv}", NULL)), G_VARIANT_TYPE ("()"),
                          G_DBUS_CALL_FLAGS_NONE, RAUC_CALL_TIMEOUT_MS, NULL, on_install_started, g_object_ref (self));
}

static gboolean
rauc_install_finish (OtaInstaller *installer, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- an installation the previous agent started ---- */

/* The slot RAUC boots next is another than the booted one and holds @version:
 * the installation completed while no agent was listening. */
static gboolean
slots_show_installed (GVariant *slots, const char *primary, const char *version)
{
  GVariantIter iter;
  const char *name;
  GVariant *status;

  g_variant_iter_init (&iter, slots);
  while (g_variant_iter_loop (&iter, "(&s@a{sv})", &name, &status)) {
    const char *state = NULL;
    const char *installed = NULL;

    if (!g_str_equal (name, primary))
      continue;
    g_variant_lookup (status, "state", "&s", &state);
    g_variant_lookup (status, "bundle.version", "&s", &installed);
    g_variant_unref (status); /* leaving g_variant_iter_loop early */
    return g_strcmp0 (state, "booted") != 0 && g_strcmp0 (installed, version) == 0;
  }
  return FALSE;
}

static void
on_resume_slot_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  OtaInstallerRauc *self = g_task_get_source_object (task);
  const char *version = g_task_get_task_data (task);
  const char *primary = g_object_get_data (G_OBJECT (task), "primary");
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) slots = NULL;

  if (reply == NULL) {
    rauc_prefix_error (self, &error, "does not answer GetSlotStatus");
    g_task_return_error (task, g_steal_pointer (&error));
    return;
  }
  slots = g_variant_get_child_value (reply, 0);
  if (slots_show_installed (slots, primary, version)) {
    ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_INFO, "RAUC completed %s into slot %s meanwhile", version,
                       primary);
    g_task_return_boolean (task, TRUE);
    return;
  }
  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                           "the installation of %s was interrupted (the agent stopped) and RAUC's next slot %s "
                           "does not hold it", version, primary);
}

static void
on_resume_primary (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  OtaInstallerRauc *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  const char *primary = NULL;

  if (reply == NULL) {
    rauc_prefix_error (self, &error, "does not answer GetPrimary");
    g_task_return_error (task, g_steal_pointer (&error));
    g_object_unref (task);
    return;
  }
  g_variant_get (reply, "(&s)", &primary);
  g_object_set_data_full (G_OBJECT (task), "primary", g_strdup (primary), g_free);
  rauc_call (self, "GetSlotStatus", g_variant_new ("()"), "(a(sa{sv}))", task, on_resume_slot_status);
}

/* RAUC's installations outlive the agent: by the time the module is
 * registered again RAUC answers calls, so it is idle, and its slots tell
 * whether the installation completed. */
static void
rauc_resume (OtaInstaller *installer, const char *version, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (installer, NULL, callback, user_data);

  g_task_set_task_data (task, g_strdup (version), g_free);
  rauc_call (OTA_INSTALLER_RAUC (installer), "GetPrimary", g_variant_new ("()"), "(s)", task, on_resume_primary);
}

/* The agent stops: RAUC goes on by itself, the next start reads the outcome. */
static void
rauc_stop (OtaInstaller *installer)
{
  OtaInstallerRauc *self = OTA_INSTALLER_RAUC (installer);

  rauc_finish_install (self, g_error_new (G_IO_ERROR, G_IO_ERROR_CANCELLED, "the agent stopped"));
}

static void
ota_installer_rauc_dispose (GObject *object)
{
  OtaInstallerRauc *self = OTA_INSTALLER_RAUC (object);

  ota_installer_stop (OTA_INSTALLER (self));
  rauc_unsubscribe (self);
  g_clear_object (&self->connection);
  G_OBJECT_CLASS (ota_installer_rauc_parent_class)->dispose (object);
}

static void
ota_installer_rauc_class_init (OtaInstallerRaucClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  OtaInstallerClass *installer_class = OTA_INSTALLER_CLASS (klass);

  object_class->dispose = ota_installer_rauc_dispose;
  installer_class->query_version = rauc_query_version;
  installer_class->query_version_finish = rauc_query_version_finish;
  installer_class->confirm = rauc_confirm;
  installer_class->confirm_finish = rauc_confirm_finish;
  installer_class->install = rauc_install;
  installer_class->install_finish = rauc_install_finish;
  installer_class->resume = rauc_resume;
  installer_class->stop = rauc_stop;
  installer_class->needs_reboot = TRUE;
  installer_class->method_name = "rauc";
}

static void
ota_installer_rauc_init (OtaInstallerRauc *self)
{
}
