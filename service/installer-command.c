/* method=command: any installer program (SWUpdate's "swupdate -i", a vendor
 * script). It runs as argv, no shell, in a process group of its own so that
 * a timeout ends it with everything it started; stdout lines "progress N"
 * are the burning percent, its last stderr line is the failure's reason. */
#include "installer.h"

#include "error.h"

#include <gio/gunixinputstream.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define STDERR_LINE_MAX 256

struct _OtaInstallerCommand {
  OtaInstaller parent_instance;
  GTask *task;          /* the install under way */
  GCancellable *cancellable;
  GPid pgid;            /* the command's pid, leader of its process group */
  guint child_watch;
  int wait_status;
  guint timer;
  gboolean timed_out;
  guint open_streams;   /* stdout and stderr until EOF */
  gboolean exited;
  char *last_stderr;
};

G_DECLARE_FINAL_TYPE (OtaInstallerCommand, ota_installer_command, OTA, INSTALLER_COMMAND, OtaInstaller)
G_DEFINE_TYPE (OtaInstallerCommand, ota_installer_command, OTA_TYPE_INSTALLER)

static void
command_query_version (OtaInstaller *installer, GAsyncReadyCallback callback, gpointer user_data)
{
  ota_installer_run_version_command (installer, ota_installer_get_install_config (installer)->version_command,
                                     callback, user_data);
}

static char *
command_query_version_finish (OtaInstaller *installer, GAsyncResult *result, GError **error)
{
  return ota_installer_run_version_command_finish (installer, result, error);
}

/* In the child, before exec: its own process group (the timeout kills the
 * whole group), and no life beyond the agent's: an install the agent can
 * no longer follow is ended, and the next start reports how it ended. */
static void
command_child_setup (gpointer user_data)
{
  setpgid (0, 0);
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static void
command_kill_group (OtaInstallerCommand *self)
{
  if (self->pgid > 0)
    kill (-self->pgid, SIGKILL);
}

/* The task ends once the process exited and both pipes reached EOF. */
static void
command_maybe_finish (OtaInstallerCommand *self)
{
  g_autoptr (GTask) task = NULL;
  const OtaInstallConfig *install = ota_installer_get_install_config (OTA_INSTALLER (self));
  const char *reason = self->last_stderr != NULL ? self->last_stderr : "";

  if (!self->exited || self->open_streams > 0 || self->task == NULL)
    return;
  task = g_steal_pointer (&self->task);
  g_clear_handle_id (&self->timer, g_source_remove);
  /* Whatever the command left behind in its group goes with it. */
  command_kill_group (self);
  if (self->timed_out)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "install command timed out after %u s%s%s",
                             install->timeout, *reason ? ": " : "", reason);
  else if (!WIFEXITED (self->wait_status))
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s%sinstall command killed by signal %d%s",
                             reason, *reason ? " (" : "", WTERMSIG (self->wait_status), *reason ? ")" : "");
  else if (WEXITSTATUS (self->wait_status) != 0 && *reason != '\0')
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", reason);
  else if (WEXITSTATUS (self->wait_status) != 0)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "install command exited with status %d",
                             WEXITSTATUS (self->wait_status));
  else
    g_task_return_boolean (task, TRUE);
  self->pgid = 0;
}

static void
on_exited (GPid pid, int wait_status, gpointer user_data)
{
  g_autoptr (OtaInstallerCommand) self = user_data;

  g_spawn_close_pid (pid);
  self->child_watch = 0;
  self->wait_status = wait_status;
  ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_DEBUG, "install command exited");
  self->exited = TRUE;
  command_maybe_finish (self);
}

/* "progress N" (0..100); anything else is only logged. */
static void
command_handle_stdout_line (OtaInstallerCommand *self, const char *line)
{
  guint64 percent = 0;

  if (g_str_has_prefix (line, "progress ") &&
      g_ascii_string_to_unsigned (g_strstrip ((char *) line + strlen ("progress ")), 10, 0, 100, &percent, NULL)) {
    ota_installer_report_percent (OTA_INSTALLER (self), (int) percent);
    return;
  }
  ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_INFO, "command: %s", line);
}

static void
command_handle_stderr_line (OtaInstallerCommand *self, const char *line)
{
  g_autofree char *clean = ota_installer_clean_line (line, STDERR_LINE_MAX);

  if (*clean == '\0')
    return;
  ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_INFO, "command error output: %s", clean);
  g_free (self->last_stderr);
  self->last_stderr = g_steal_pointer (&clean);
}

typedef struct {
  OtaInstallerCommand *self;
  gboolean is_stderr;
} LineReader;

static void read_next_line (GDataInputStream *stream, LineReader *reader);

static void
on_line (GObject *source, GAsyncResult *result, gpointer user_data)
{
  LineReader *reader = user_data;
  OtaInstallerCommand *self = reader->self;
  g_autoptr (GError) error = NULL;
  g_autofree char *line = g_data_input_stream_read_line_finish_utf8 (G_DATA_INPUT_STREAM (source), result, NULL,
                                                                     &error);

  if (line == NULL && error != NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CLOSED)) {
    /* Not UTF-8: skip what cannot be shown, keep reading. */
    read_next_line (G_DATA_INPUT_STREAM (source), reader);
    return;
  }
  if (line == NULL) {
    ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_DEBUG, "install command's %s closed%s%s",
                       reader->is_stderr ? "stderr" : "stdout", error != NULL ? ": " : "",
                       error != NULL ? error->message : "");
    self->open_streams--;
    command_maybe_finish (self);
    g_object_unref (self);
    g_free (reader);
    return;
  }
  if (reader->is_stderr)
    command_handle_stderr_line (self, line);
  else
    command_handle_stdout_line (self, line);
  read_next_line (G_DATA_INPUT_STREAM (source), reader);
}

static void
read_next_line (GDataInputStream *stream, LineReader *reader)
{
  g_data_input_stream_read_line_async (stream, G_PRIORITY_DEFAULT, reader->self->cancellable, on_line, reader);
}

static void
command_read_lines (OtaInstallerCommand *self, int fd, gboolean is_stderr)
{
  g_autoptr (GInputStream) pipe = g_unix_input_stream_new (fd, TRUE);
  g_autoptr (GDataInputStream) stream = g_data_input_stream_new (pipe);
  LineReader *reader = g_new0 (LineReader, 1);

  reader->self = g_object_ref (self);
  reader->is_stderr = is_stderr;
  self->open_streams++;
  /* The async read keeps the stream alive until it completes. */
  read_next_line (stream, reader);
}

static gboolean
command_timeout_cb (gpointer user_data)
{
  OtaInstallerCommand *self = user_data;
  const OtaInstallConfig *install = ota_installer_get_install_config (OTA_INSTALLER (self));

  self->timer = 0;
  self->timed_out = TRUE;
  ota_installer_log (OTA_INSTALLER (self), G_LOG_LEVEL_WARNING, "install command still running after %u s: killed",
                     install->timeout);
  command_kill_group (self);
  return G_SOURCE_REMOVE;
}

static void
command_install (OtaInstaller *installer, const char *path, const char *version, GAsyncReadyCallback callback,
                 gpointer user_data)
{
  OtaInstallerCommand *self = OTA_INSTALLER_COMMAND (installer);
  const OtaInstallConfig *install = ota_installer_get_install_config (installer);
  g_autoptr (GTask) task = g_task_new (self, NULL, callback, user_data);
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) argv = ota_install_config_expand_command (install->command, path, version, install->module);
  g_autofree char *line = g_strjoinv (" ", argv);
  int out_fd = -1, err_fd = -1;

  ota_installer_log (installer, G_LOG_LEVEL_INFO, "running %s", line);
  /* Not GSubprocess: its pid is gone once the child is reaped, which may
   * happen before it can be read; this one stays until the watch fires. */
  if (!g_spawn_async_with_pipes (NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                 command_child_setup, NULL, &self->pgid, NULL, &out_fd, &err_fd, &error)) {
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot run the install command: %s",
                             error->message);
    return;
  }
  self->task = g_steal_pointer (&task);
  self->timed_out = FALSE;
  g_clear_pointer (&self->last_stderr, g_free);
  g_clear_object (&self->cancellable);
  self->cancellable = g_cancellable_new ();
  command_read_lines (self, out_fd, FALSE);
  command_read_lines (self, err_fd, TRUE);
  self->exited = FALSE;
  self->child_watch = g_child_watch_add (self->pgid, on_exited, g_object_ref (self));
  self->timer = g_timeout_add_seconds (install->timeout, command_timeout_cb, self);
}

static gboolean
command_install_finish (OtaInstaller *installer, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* The command died with the previous agent (see command_child_setup()):
 * whether it had finished cannot be known. */
static void
command_resume (OtaInstaller *installer, const char *version, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (installer, NULL, callback, user_data);

  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                           "the install command of %s was interrupted: the agent stopped while it ran", version);
}

/* The agent stops: the command goes with it (see command_child_setup()). */
static void
command_stop (OtaInstaller *installer)
{
  OtaInstallerCommand *self = OTA_INSTALLER_COMMAND (installer);

  g_clear_handle_id (&self->timer, g_source_remove);
  command_kill_group (self);
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
}

static void
ota_installer_command_dispose (GObject *object)
{
  OtaInstallerCommand *self = OTA_INSTALLER_COMMAND (object);

  ota_installer_stop (OTA_INSTALLER (self));
  g_clear_handle_id (&self->timer, g_source_remove);
  G_OBJECT_CLASS (ota_installer_command_parent_class)->dispose (object);
}

static void
ota_installer_command_finalize (GObject *object)
{
  OtaInstallerCommand *self = OTA_INSTALLER_COMMAND (object);

  g_clear_object (&self->task);
  g_clear_object (&self->cancellable);
  g_free (self->last_stderr);
  G_OBJECT_CLASS (ota_installer_command_parent_class)->finalize (object);
}

static void
ota_installer_command_class_init (OtaInstallerCommandClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  OtaInstallerClass *installer_class = OTA_INSTALLER_CLASS (klass);

  object_class->dispose = ota_installer_command_dispose;
  object_class->finalize = ota_installer_command_finalize;
  installer_class->query_version = command_query_version;
  installer_class->query_version_finish = command_query_version_finish;
  installer_class->install = command_install;
  installer_class->install_finish = command_install_finish;
  installer_class->resume = command_resume;
  installer_class->stop = command_stop;
  installer_class->needs_reboot = FALSE;
  installer_class->method_name = "command";
}

static void
ota_installer_command_init (OtaInstallerCommand *self)
{
}
