/* ota-bench-app: the application side of bench/run.
 *
 * Prints every org.iv.Ota signal as one line, prefixed with the
 * CLOCK_MONOTONIC and CLOCK_REALTIME microseconds of its delivery, so that the
 * benchmark can time the agent from outside without touching it:
 *
 *   MONO REAL subscribed                      (the match rule is active)
 *   MONO REAL owner NAME                      (after a successful Init)
 *   MONO REAL offered MODULE VERSION SIZE
 *   MONO REAL progress MODULE VERSION STATE PERCENT DOWNLOADED TOTAL CODE
 *   MONO REAL ready MODULE VERSION PATH SIZE MD5
 *   MONO REAL error MESSAGE
 *
 * Usage: ota-bench-app [MODULE VERSION FIRMWARE_DIR]
 * With arguments it also calls Init and so owns the module, like a device
 * app; without, it only observes (the fan-out stand-in). Runs until killed.
 * The session bus comes from the environment. */
#include <gio/gio.h>
#include <stdio.h>

#define OTA_NAME "org.iv.Ota"
#define OTA_PATH "/org/iv/Ota"
#define OTA_IFACE "org.iv.Ota"

static void
print_event (const char *format, ...) G_GNUC_PRINTF (1, 2);

static void
print_event (const char *format, ...)
{
  gint64 mono = g_get_monotonic_time ();
  gint64 real = g_get_real_time ();
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);
  printf ("%" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %s\n", mono, real, text);
}

static void
on_signal (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
           const char *name, GVariant *params, gpointer user_data)
{
  const char *module, *version, *state, *file, *md5, *msg;
  guint32 percent;
  guint64 size, downloaded;
  gint32 code;

  if (g_str_equal (name, "UpdateOffered") && g_variant_is_of_type (params, G_VARIANT_TYPE ("(sst)"))) {
    g_variant_get (params, "(&s&st)", &module, &version, &size);
    print_event ("offered %s %s %" G_GUINT64_FORMAT, module, version, size);
  } else if (g_str_equal (name, "Progress") &&
             g_variant_is_of_type (params, G_VARIANT_TYPE ("(sssuttis)"))) {
    g_variant_get (params, "(&s&s&suttis)", &module, &version, &state, &percent, &downloaded, &size,
                   &code, &msg);
    print_event ("progress %s %s %s %u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %d", module,
                 version, state, percent, downloaded, size, code);
  } else if (g_str_equal (name, "FirmwareReady") &&
             g_variant_is_of_type (params, G_VARIANT_TYPE ("(sssts)"))) {
    g_variant_get (params, "(&s&s&st&s)", &module, &version, &file, &size, &md5);
    print_event ("ready %s %s %s %" G_GUINT64_FORMAT " %s", module, version, file, size, md5);
  }
}

/* A round trip to the bus daemon: the AddMatch sent before it is in force. */
static gboolean
sync_with_bus (GDBusConnection *bus, GError **error)
{
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", NULL,
      G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, error);

  return reply != NULL;
}

static gboolean
call_init (GDBusConnection *bus, char **argv, GError **error)
{
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      bus, OTA_NAME, OTA_PATH, OTA_IFACE, "Init",
      g_variant_new ("(sss@a{sv})", argv[1], argv[2], argv[3], g_variant_new ("a{sv}", NULL)),
      G_VARIANT_TYPE_UNIT, G_DBUS_CALL_FLAGS_NO_AUTO_START, 10000, NULL, error);

  return reply != NULL;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) bus = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  if (argc != 1 && argc != 4) {
    fprintf (stderr, "usage: %s [MODULE VERSION FIRMWARE_DIR]\n", argv[0]);
    return 2;
  }
  setvbuf (stdout, NULL, _IOLBF, 0);
  bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, &error);
  if (bus != NULL) {
    g_dbus_connection_signal_subscribe (bus, NULL, OTA_IFACE, NULL, OTA_PATH, NULL,
                                        G_DBUS_SIGNAL_FLAGS_NONE, on_signal, NULL, NULL);
    if (sync_with_bus (bus, &error))
      print_event ("subscribed");
  }
  if (error == NULL && argc == 4 && call_init (bus, argv, &error))
    print_event ("owner %s", g_dbus_connection_get_unique_name (bus));
  if (error != NULL) {
    print_event ("error %s", error->message);
    return 1;
  }
  g_main_loop_run (loop);
  return 0;
}
