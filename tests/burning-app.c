/* burning-app: a device app written the way vendors write theirs, for the
 * kill-anywhere cycle test (test-kill-cycle). It burns for real and never
 * reports done:
 *
 *  - runs the version in HOME/version ("1.0" when absent) and registers the
 *    main module with it, again each time org.iv.Ota appears on the bus (the
 *    agent restarted): the same connection, as libiv-ota registers again;
 *  - on FirmwareReady, or when its (re-)registration finds the module
 *    "ready" with a path (it may have missed the signal), it burns in a
 *    thread of its own: reports burning, copies the image slowly to
 *    HOME/installed.bin (fsync, rename), writes the new version to
 *    HOME/version, reports rebooting, and "reboots": exec of itself, which
 *    then starts at the new version. D-Bus errors of its reports are
 *    ignored, as a vendor's app ignores them (the agent may be down).
 *
 * Usage: burning-app HOME FIRMWARE_DIR
 * stdout: one line per event ("start 1.0", "registered :1.7 1.0",
 * "burn 2.0 PATH", "burnt 2.0", "report burning: error ...", "reboot 2.0"). */
#include "ota-dbus-generated.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define CHUNK_PAUSE_US (15 * 1000)
/* Moving the image away before burning, and the reboot itself, take time on
 * a device too: the agent gets killed in "ready" and "rebooting" as well. */
#define PREPARE_PAUSE_US (100 * 1000)
#define REBOOT_DELAY_MS 150

typedef struct {
  char **argv;
  char *home;
  char *fw_dir;
  char *version;
  GDBusConnection *bus;
  OtaDBusOta *proxy;
  gint burning; /* atomic: a burn thread runs, or ran and reboots */
  guint retry;
} App;

typedef struct {
  App *app;
  char *path;
  char *target;
} Burn;

static void
say (const char *format, ...) G_GNUC_PRINTF (1, 2);

static void
say (const char *format, ...)
{
  va_list args;

  va_start (args, format);
  vprintf (format, args);
  va_end (args);
  putchar ('\n');
  fflush (stdout);
}

static void
report (App *app, const char *state, int percent)
{
  g_autoptr (GError) error = NULL;

  if (!ota_dbus_ota_call_report_progress_sync (app->proxy, "", state, percent, 0, "", NULL, &error))
    say ("report %s: error %s", state, error->message);
}

/* Copies @from to @to through a temporary file, slowly, like a flash. */
static gboolean
burn_copy (App *app, const char *from, const char *to)
{
  g_autofree char *tmp = g_strconcat (to, ".tmp", NULL);
  g_autofree guint8 *buf = g_malloc (CHUNK);
  int in = open (from, O_RDONLY | O_CLOEXEC);
  int out = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  gboolean ok = in >= 0 && out >= 0;
  ssize_t n = 0;

  while (ok && (n = read (in, buf, CHUNK)) > 0) {
    ok = write (out, buf, (size_t) n) == n;
    g_usleep (CHUNK_PAUSE_US);
  }
  ok = ok && n == 0 && fsync (out) == 0;
  if (in >= 0)
    close (in);
  if (out >= 0)
    close (out);
  return ok && rename (tmp, to) == 0;
}

/* Starts this program again in place. Under qemu user mode (the cross
 * build's tests, IV_OTA_TEST_WRAPPER) an emulated program cannot exec an ARM
 * binary itself: the wrapper goes first, as for every program of ours. */
static void
exec_self (char **argv)
{
  const char *wrapper = g_getenv ("IV_OTA_TEST_WRAPPER");
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_auto (GStrv) words = NULL;
  g_auto (GStrv) full = NULL;

  if (wrapper == NULL || *wrapper == '\0') {
    execv (argv[0], argv);
    return;
  }
  words = g_strsplit (wrapper, " ", -1);
  g_strv_builder_addv (builder, (const char **) words);
  g_strv_builder_addv (builder, (const char **) argv);
  full = g_strv_builder_end (builder);
  execv (full[0], full);
}

static gboolean
reboot_cb (gpointer data)
{
  App *app = data;

  say ("reboot");
  exec_self (app->argv);
  say ("exec failed: %s", g_strerror (errno));
  _exit (1);
  return G_SOURCE_REMOVE;
}

static gpointer
burn_thread (gpointer data)
{
  Burn *b = data;
  App *app = b->app;
  g_autofree char *installed = g_build_filename (app->home, "installed.bin", NULL);
  g_autofree char *version_file = g_build_filename (app->home, "version", NULL);

  say ("burn %s %s", b->target, b->path);
  g_usleep (PREPARE_PAUSE_US);
  report (app, "burning", 0);
  if (!burn_copy (app, b->path, installed)) {
    say ("burn failed: %s", g_strerror (errno));
    g_atomic_int_set (&app->burning, 0);
  } else if (!g_file_set_contents (version_file, b->target, -1, NULL)) {
    say ("cannot write the version");
    g_atomic_int_set (&app->burning, 0);
  } else {
    say ("burnt %s", b->target);
    report (app, "rebooting", -1);
    g_timeout_add (REBOOT_DELAY_MS, reboot_cb, app);
  }
  g_free (b->path);
  g_free (b->target);
  g_free (b);
  return NULL;
}

static void
burn_start (App *app, const char *path, const char *target)
{
  Burn *b;

  if (!g_atomic_int_compare_and_exchange (&app->burning, 0, 1))
    return;
  b = g_new0 (Burn, 1);
  b->app = app;
  b->path = g_strdup (path);
  b->target = g_strdup (target);
  g_thread_unref (g_thread_new ("burn", burn_thread, b));
}

static void
on_ready (OtaDBusOta *proxy, const char *module, const char *version, const char *path, guint64 size,
          const char *md5, App *app)
{
  if (*module == '\0')
    burn_start (app, path, version);
}

/* After a registration: an image handed over before (maybe the signal was
 * lost with a killed agent) is still ours to burn. */
static void
check_ready (App *app)
{
  g_autoptr (GVariant) status = NULL;
  const char *state = NULL, *path = NULL, *target = NULL;

  if (!ota_dbus_ota_call_get_status_sync (app->proxy, "", &status, NULL, NULL))
    return;
  if (g_variant_lookup (status, "state", "&s", &state) && g_str_equal (state, "ready") &&
      g_variant_lookup (status, "path", "&s", &path) && *path != '\0' &&
      g_variant_lookup (status, "target_version", "&s", &target))
    burn_start (app, path, target);
}

static gboolean register_cb (gpointer data);

static void
app_register (App *app)
{
  g_autoptr (GError) error = NULL;

  if (!ota_dbus_ota_call_init_sync (app->proxy, "", app->version, app->fw_dir, g_variant_new ("a{sv}", NULL), NULL,
                                    &error)) {
    say ("init: error %s", error->message);
    if (app->retry == 0)
      app->retry = g_timeout_add (200, register_cb, app);
    return;
  }
  say ("registered %s %s", g_dbus_connection_get_unique_name (app->bus), app->version);
  check_ready (app);
}

static gboolean
register_cb (gpointer data)
{
  App *app = data;

  app->retry = 0;
  app_register (app);
  return G_SOURCE_REMOVE;
}

static void
on_agent_appeared (GDBusConnection *bus, const char *name, const char *owner, gpointer data)
{
  app_register (data);
}

static char *
read_version (const char *home)
{
  g_autofree char *file = g_build_filename (home, "version", NULL);
  char *text = NULL;

  if (!g_file_get_contents (file, &text, NULL, NULL))
    return g_strdup ("1.0");
  return g_strstrip (text);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  App app = { 0 };

  if (argc != 3) {
    fprintf (stderr, "usage: %s HOME FIRMWARE_DIR\n", argv[0]);
    return 2;
  }
  app.argv = argv;
  app.home = argv[1];
  app.fw_dir = argv[2];
  app.version = read_version (app.home);
  say ("start %s", app.version);
  app.bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, &error);
  if (app.bus != NULL)
    app.proxy = ota_dbus_ota_proxy_new_sync (app.bus,
                                             G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START |
                                               G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES,
                                             "org.iv.Ota", "/org/iv/Ota", NULL, &error);
  if (app.proxy == NULL) {
    say ("error %s", error->message);
    return 1;
  }
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (app.proxy), 20000);
  g_signal_connect (app.proxy, "firmware-ready", G_CALLBACK (on_ready), &app);
  g_bus_watch_name_on_connection (app.bus, "org.iv.Ota", G_BUS_NAME_WATCHER_FLAGS_NONE, on_agent_appeared, NULL,
                                  &app, NULL);
  g_main_loop_run (loop);
  return 0;
}
