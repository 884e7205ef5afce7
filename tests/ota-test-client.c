/* A stand-in application for integration tests: owns a module through its
 * own bus connection and prints what it receives, one line per signal, until
 * killed. Usage: ota-test-client MODULE VERSION FIRMWARE_DIR */
#include "ota-dbus-generated.h"

#include <stdio.h>
#include <stdlib.h>

static void
on_ready (OtaDBusOta *proxy, const char *module, const char *version, const char *path, guint64 size,
          const char *md5, gpointer user_data)
{
  printf ("firmware-ready %s %s %s %" G_GUINT64_FORMAT " %s\n", module, version, path, size, md5);
  fflush (stdout);
}

static void
on_offered (OtaDBusOta *proxy, const char *module, const char *version, guint64 size, gpointer user_data)
{
  printf ("offered %s %s %" G_GUINT64_FORMAT "\n", module, version, size);
  fflush (stdout);
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) bus = NULL;
  g_autoptr (OtaDBusOta) proxy = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  if (argc != 4) {
    fprintf (stderr, "usage: %s MODULE VERSION FIRMWARE_DIR\n", argv[0]);
    return 2;
  }
  bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, &error);
  if (bus != NULL)
    proxy = ota_dbus_ota_proxy_new_sync (bus, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START, "org.iv.Ota", "/org/iv/Ota",
                                         NULL, &error);
  if (proxy != NULL) {
    g_signal_connect (proxy, "firmware-ready", G_CALLBACK (on_ready), NULL);
    g_signal_connect (proxy, "update-offered", G_CALLBACK (on_offered), NULL);
    ota_dbus_ota_call_init_sync (proxy, argv[1], argv[2], argv[3], g_variant_new ("a{sv}", NULL), NULL, &error);
  }
  if (error != NULL) {
    printf ("error %s\n", error->message);
    return 1;
  }
  printf ("owner %s\n", g_dbus_connection_get_unique_name (bus));
  fflush (stdout);
  g_main_loop_run (loop);
  return 0;
}
