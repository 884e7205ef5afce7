/* iv-otad: the OTA agent. Wires config, agent and bus adapter together and
 * runs the GLib main loop until SIGTERM, SIGINT or SIGHUP, then shuts down
 * cleanly: downloads cancelled with their last checkpoint written, MQTT
 * DISCONNECT sent (the outbox is already on disk: it is saved on every
 * change). iv-otad has no reload: SIGHUP (a closed terminal, or an operator
 * used to reloading daemons with it) stops it cleanly like SIGTERM, and a
 * supervisor starts it again with the new configuration.
 *
 * The cloud session starts only once org.iv.Ota is ours: the platform allows
 * one MQTT connection per device, so a second agent started by mistake on the
 * same configuration must leave before it signs in, or it would take the
 * connection from the agent that serves the device. */
#include "agent.h"
#include "bus.h"
#include "cloud-relay.h"
#include "config.h"
#include "log-limit.h"
#include "ota-build-config.h"

#include <glib-unix.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  GMainLoop *loop;
  OtaAgent *agent;
  gboolean started; /* the cloud session was started */
  int exit_code;
} Daemon;

/* Info lines are the protocol events an operator wants in the journal, so
 * they are shown by default; debug only with G_MESSAGES_DEBUG. */
static GLogWriterOutput
log_writer_unlimited (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if (g_log_writer_is_journald (fileno (stderr)) &&
      g_log_writer_journald (level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
    return G_LOG_WRITER_HANDLED;
  return g_log_writer_standard_streams (level, fields, n_fields, user_data);
}

/* Repeated identical warnings are counted, not written again and again: a
 * peer repeating a bad message must not flood the journal. */
static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if ((level & G_LOG_LEVEL_DEBUG) && g_log_writer_default_would_drop (level, G_LOG_DOMAIN))
    return G_LOG_WRITER_HANDLED;
  return ota_log_limit_write (level, fields, n_fields, log_writer_unlimited, user_data);
}

static gboolean
on_quit_signal (gpointer user_data)
{
  Daemon *daemon = user_data;

  g_message ("shutting down");
  g_main_loop_quit (daemon->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_hangup_signal (gpointer user_data)
{
  g_message ("SIGHUP: iv-otad has no reload, it stops cleanly (start it again to apply a new configuration)");
  return on_quit_signal (user_data);
}

static void
on_name_acquired (OtaBus *bus, gpointer user_data)
{
  Daemon *daemon = user_data;

  if (daemon->started)
    return;
  daemon->started = TRUE;
  ota_agent_start (daemon->agent);
}

static void
on_name_lost (OtaBus *bus, gpointer user_data)
{
  Daemon *daemon = user_data;

  if (!daemon->started)
    g_printerr ("iv-otad: org.iv.Ota is not ours (see the line above): exiting before connecting to the cloud\n");
  daemon->exit_code = EXIT_FAILURE;
  g_main_loop_quit (daemon->loop);
}

static gboolean
parse_bus_type (const char *name, GBusType *type, GError **error)
{
  const char *starter = g_getenv ("DBUS_STARTER_BUS_TYPE");

  if (name == NULL)
    name = starter != NULL ? starter : "system";
  if (g_str_equal (name, "system")) {
    *type = G_BUS_TYPE_SYSTEM;
  } else if (g_str_equal (name, "session")) {
    *type = G_BUS_TYPE_SESSION;
  } else {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--bus must be system or session, not %s", name);
    return FALSE;
  }
  return TRUE;
}

static int
run (OtaConfig *config, GBusType bus_type)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) connection = NULL;
  g_autoptr (OtaAgent) agent = NULL;
  g_autoptr (OtaBus) bus = NULL;
  g_autoptr (OtaCloudRelay) relay = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  Daemon daemon = { loop, NULL, FALSE, EXIT_SUCCESS };
  guint sigterm, sigint, sighup;

  agent = ota_agent_new (config, &error);
  if (agent == NULL) {
    g_printerr ("iv-otad: %s\n", error->message);
    return EXIT_FAILURE;
  }
  connection = g_bus_get_sync (bus_type, NULL, &error);
  /* The relay is on the bus before the name is: a client that sees the
   * name finds both interfaces. */
  if (connection != NULL)
    relay = ota_cloud_relay_new (ota_agent_get_link (agent),
                                 ota_topic_rules_new (config->product_id, config->device_name,
                                                      (const char *const *) config->cloud_allowed_topics),
                                 connection, OTA_BUS_PATH, &error);
  if (relay != NULL)
    bus = ota_bus_new (agent, connection, &error);
  if (bus == NULL) {
    g_printerr ("iv-otad: cannot use the %s bus: %s\n", bus_type == G_BUS_TYPE_SYSTEM ? "system" : "session",
                error->message);
    return EXIT_FAILURE;
  }
  daemon.agent = agent;
  g_signal_connect (bus, "name-acquired", G_CALLBACK (on_name_acquired), &daemon);
  g_signal_connect (bus, "name-lost", G_CALLBACK (on_name_lost), &daemon);
  sigterm = g_unix_signal_add (SIGTERM, on_quit_signal, &daemon);
  sigint = g_unix_signal_add (SIGINT, on_quit_signal, &daemon);
  sighup = g_unix_signal_add (SIGHUP, on_hangup_signal, &daemon);
  g_main_loop_run (loop);
  ota_agent_shutdown (agent);
  /* Only now: a second signal during the wait must not kill us half-way. */
  g_source_remove (sigterm);
  g_source_remove (sigint);
  g_source_remove (sighup);
  g_dbus_connection_flush_sync (connection, NULL, NULL);
  g_message ("stopped");
  return daemon.exit_code;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) context = g_option_context_new ("- the iv-ota agent");
  g_autoptr (GError) error = NULL;
  g_autofree char *config_path = NULL;
  g_autofree char *bus_name = NULL;
  gboolean version = FALSE;
  OtaConfig *config;
  GBusType bus_type;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "Configuration file (default " OTA_DEFAULT_CONFIG ")", "FILE" },
    { "bus", 'b', 0, G_OPTION_ARG_STRING, &bus_name, "Bus to serve org.iv.Ota on: system (default) or session", "BUS" },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    G_OPTION_ENTRY_NULL,
  };

  setlocale (LC_ALL, "");
  /* stdout may be a pipe of the caller's; every log line belongs on stderr or the journal. */
  g_log_writer_default_set_use_stderr (TRUE);
  g_log_set_writer_func (log_writer, NULL, NULL);
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_set_description (context,
                                    "Keeps the connection with the cloud ($ota MQTT protocol), downloads firmware\n"
                                    "with resume and MD5 verification, and serves org.iv.Ota on D-Bus.\n"
                                    "Debug logs: G_MESSAGES_DEBUG=all.");
  if (!g_option_context_parse (context, &argc, &argv, &error) || !parse_bus_type (bus_name, &bus_type, &error)) {
    g_printerr ("iv-otad: %s\n", error->message);
    return 2;
  }
  if (version) {
    g_print ("iv-otad %s\n", PACKAGE_VERSION);
    return EXIT_SUCCESS;
  }
  if (config_path == NULL)
    config_path = g_strdup (OTA_DEFAULT_CONFIG);
  config = ota_config_load (config_path, &error);
  if (config == NULL) {
    g_printerr ("iv-otad: %s\n", error->message);
    return EXIT_FAILURE;
  }
  g_message ("iv-otad %s starting: config %s, %s bus", PACKAGE_VERSION, config_path,
             bus_type == G_BUS_TYPE_SYSTEM ? "system" : "session");
  return run (config, bus_type);
}
