/* getstatus-latency: GetStatus round-trip times while a download runs.
 *
 * One process, one bus connection, synchronous calls timed with the
 * monotonic clock: no process start-up in the figures. It polls GetStatus
 * (errors included: the module may not exist yet) until the module reports
 * "downloading", then counts every call whose reply
 * still says "downloading", one call every INTERVAL_US, until the state
 * changes or MAX samples are taken. Output, on stdout:
 *
 *   rtt_us DOWNLOADED        one line per counted call
 *   samples=N first=BYTES last=BYTES
 *
 * Usage: getstatus-latency [MODULE [INTERVAL_US [MAX [WAIT_S]]]]
 * Defaults: module "" (main firmware), 2000 us, 100000 samples, wait 60 s
 * for the download to begin. Exit status 1 when no sample was taken. */
#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  char *state;
  guint64 downloaded;
} Status;

static void
status_clear (Status *status)
{
  g_clear_pointer (&status->state, g_free);
  status->downloaded = 0;
}

/* Returns the round trip in microseconds, or -1 with @error set. */
static gint64
call_get_status (GDBusConnection *bus, const char *module, Status *status, GError **error)
{
  gint64 start = g_get_monotonic_time ();
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      bus, "org.iv.Ota", "/org/iv/Ota", "org.iv.Ota", "GetStatus", g_variant_new ("(s)", module),
      G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NO_AUTO_START, 10000, NULL, error);
  gint64 rtt = g_get_monotonic_time () - start;
  g_autoptr (GVariant) dict = NULL;

  if (reply == NULL)
    return -1;
  dict = g_variant_get_child_value (reply, 0);
  status_clear (status);
  if (!g_variant_lookup (dict, "state", "s", &status->state))
    status->state = g_strdup ("");
  g_variant_lookup (dict, "downloaded", "t", &status->downloaded);
  return rtt;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, &error);
  const char *module = argc > 1 ? argv[1] : "";
  gulong interval = argc > 2 ? strtoul (argv[2], NULL, 10) : 2000;
  gulong max = argc > 3 ? strtoul (argv[3], NULL, 10) : 100000;
  gint64 deadline = g_get_monotonic_time () + (argc > 4 ? atoi (argv[4]) : 60) * G_USEC_PER_SEC;
  Status status = { 0 };
  gboolean started = FALSE;
  guint64 first = 0, last = 0;
  gulong samples = 0;

  setvbuf (stdout, NULL, _IOLBF, 0);
  while (bus != NULL && samples < max) {
    gint64 rtt = call_get_status (bus, module, &status, &error);

    if (rtt < 0 && !started && g_get_monotonic_time () < deadline) {
      /* No such module yet: the app has not called Init. */
      g_clear_error (&error);
      g_usleep (1000);
      continue;
    }
    if (rtt < 0)
      break;
    if (g_str_equal (status.state, "downloading")) {
      if (!started)
        first = status.downloaded;
      started = TRUE;
      last = status.downloaded;
      samples++;
      printf ("%" G_GINT64_FORMAT " %" G_GUINT64_FORMAT "\n", rtt, status.downloaded);
    } else if (started || g_get_monotonic_time () > deadline) {
      break;
    }
    g_usleep (started ? interval : 1000);
  }
  status_clear (&status);
  if (error != NULL)
    fprintf (stderr, "getstatus-latency: %s\n", error->message);
  printf ("samples=%lu first=%" G_GUINT64_FORMAT " last=%" G_GUINT64_FORMAT "\n", samples, first,
          last);
  return samples > 0 ? 0 : 1;
}
