/* The agent as a citizen of the broker and of the device: one CONNECT per 5 s
 * at most while a twin client keeps taking the connection over, retained
 * offers never taken, a flood of identical bad messages does not flood the
 * log, and a message far over the limit does not cost its size in memory. */
#include "harness.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <unistd.h>

#define CLIENT_ID OTA_TEST_PRODUCT OTA_TEST_DEVICE
#define DUMMY_URL "http://127.0.0.1:9/fw.bin"
#define DUMMY_MD5 "0123456789abcdef0123456789abcdef"

static const char *fast_loop = "report_interval=600\nretry_interval=1\n";

static char *
broker_log_path (OtaTestEnv *env)
{
  return g_build_filename (env->dir, "mosquitto.log", NULL);
}

/* The agent's CONNECTs the broker logged: the twin signs in as user "rogue". */
static guint
agent_connects (OtaTestEnv *env)
{
  g_autofree char *path = broker_log_path (env);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  guint count = 0;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    if (strstr (lines[i], "New client connected") != NULL && strstr (lines[i], " as " CLIENT_ID " ") != NULL &&
        strstr (lines[i], "u'rogue'") == NULL)
      count++;
  }
  return count;
}

/* mosquitto_sub with the device's client id: it takes the connection over,
 * and once kicked out in turn it comes back within a second, forever. */
static OtaTestProcess *
twin_start (OtaTestEnv *env, const char *extra_arg)
{
  g_autofree char *port = g_strdup_printf ("%u", env->broker->port);
  g_autofree char *log = g_build_filename (env->dir, "twin.log", NULL);
  g_autofree char *exe = g_find_program_in_path ("mosquitto_sub");
  char *argv[] = { exe, "-h", "127.0.0.1", "-p", port, "-i", CLIENT_ID, "-u", "rogue", "-t", "twin/none",
                   (char *) extra_arg, extra_arg != NULL ? "1" : NULL, NULL };

  g_assert_nonnull (exe);
  return ota_test_process_spawn (argv, NULL, log, NULL);
}

static void
app_init (OtaTestEnv *env, const char *version, gboolean ask)
{
  g_autoptr (GError) error = NULL;

  ota_test_init (env->proxy, "", version, env->fw_dir, ask, &error);
  g_assert_no_error (error);
}

typedef struct {
  OtaTestEnv *env;
  guint count;
} ConnectWait;

static gboolean
agent_connected_again (gpointer data)
{
  ConnectWait *w = data;
  return agent_connects (w->env) >= w->count;
}

/* Before: each takeover made the agent CONNECT again 0.5 s later, forever. */
static void
test_twin_client_connects_at_most_every_5s (OtaTestEnv *env, gconstpointer data)
{
  OtaTestProcess *twin;
  guint before, during;
  gint64 start, elapsed_s;

  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  before = agent_connects (env);
  g_assert_cmpuint (before, ==, 1);
  start = g_get_monotonic_time ();
  twin = twin_start (env, NULL);
  ota_test_spin (20000);
  ota_test_process_stop (twin, SIGTERM);
  ota_test_process_free (twin);
  elapsed_s = (g_get_monotonic_time () - start) / G_USEC_PER_SEC;
  during = agent_connects (env) - before;
  g_test_message ("agent CONNECTs while the twin ran: %u in %" G_GINT64_FORMAT " s", during, elapsed_s);
  /* It did fight back (the broker took the session from it)... */
  g_assert_cmpuint (during, >=, 1);
  g_assert_cmpuint (ota_test_file_count_lines (env->agent->log_path, "session ended"), >=, 1);
  /* ...but never more than one CONNECT per 5 s since its last one. */
  g_assert_cmpuint (during, <=, (guint) (elapsed_s / 5) + 1);
}

static void
publish_retained (OtaTestEnv *env, const char *payload)
{
  g_autofree char *port = g_strdup_printf ("%u", env->broker->port);
  g_autofree char *log = g_build_filename (env->dir, "mosquitto_pub.log", NULL);
  g_autofree char *exe = g_find_program_in_path ("mosquitto_pub");
  char *argv[] = { exe, "-h", "127.0.0.1", "-p", port, "-q", "1", "-r", "-t", OTA_TEST_UPDATE_TOPIC, "-m",
                   (char *) payload, NULL };
  OtaTestProcess *proc = ota_test_process_spawn (argv, NULL, log, NULL);

  for (int i = 0; i < 200 && ota_test_process_is_running (proc); i++)
    ota_test_spin (50);
  g_assert_false (ota_test_process_is_running (proc));
  g_assert_true (WIFEXITED (proc->status) && WEXITSTATUS (proc->status) == 0);
  ota_test_process_free (proc);
}

static gboolean
offered_seen (gpointer data)
{
  return ((OtaTestSignals *) data)->offered->len > 0;
}

/* Before: the broker replayed the stale offer at the reconnect and the agent
 * took it as the cloud's target. */
static void
test_retained_offer_ignored (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *stale = ota_test_offer_json (NULL, "1.1", DUMMY_URL, DUMMY_MD5, 1000);
  g_autofree char *live = ota_test_offer_json (NULL, "1.2", DUMMY_URL, DUMMY_MD5, 1000);
  ConnectWait again = { env, 0 };
  OtaTestProcess *twin;
  const char *version;

  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  /* Left on the topic while no app owned the module: dropped as such. */
  publish_retained (env, stale);
  for (int i = 0; i < 200 && ota_test_agent_log_count (env->agent, "update_firmware 1.1 for module (main) dropped") == 0;
       i++)
    ota_test_spin (50);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "update_firmware 1.1 for module (main) dropped"), ==, 1);
  app_init (env, "1.0", TRUE);
  /* A reconnect: the broker replays the retained offer to the new session. */
  again.count = agent_connects (env) + 1;
  twin = twin_start (env, "-W");
  g_assert_true (ota_test_wait (agent_connected_again, &again, 3 * OTA_TEST_TIMEOUT_MS));
  ota_test_process_stop (twin, SIGTERM);
  ota_test_process_free (twin);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  ota_test_env_cloud_sync (env);
  ota_test_cloud_publish (env->cloud, live, strlen (live));
  g_assert_true (ota_test_wait (offered_seen, env->signals, OTA_TEST_TIMEOUT_MS));
  g_variant_get (g_ptr_array_index (env->signals->offered, 0), "(&s&st)", NULL, &version, NULL);
  g_assert_cmpstr (version, ==, "1.2");
  g_assert_cmpuint (env->signals->offered->len, ==, 1);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "retained message on " OTA_TEST_UPDATE_TOPIC " ignored"),
                    >=, 1);
}

#define BAD_RSP "{\"type\":\"report_version_rsp\",\"result_code\":1,\"result_msg\":\"no such version\",\"version\":\"1.0\"}"
/* Before: 40,000 bad report_version_rsp wrote 20,000 warnings. */
#define FLOOD 40000

static void
test_repeated_warnings_rate_limited (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *sync = ota_test_offer_json (NULL, "1.1", DUMMY_URL, DUMMY_MD5, 1000);
  guint lines;

  app_init (env, "1.0", TRUE);
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "report_version", OTA_TEST_TIMEOUT_MS), >=,
                   0);
  for (guint i = 0; i < FLOOD; i++) {
    g_autoptr (GError) error = NULL;
    g_assert_true (ota_mqtt_link_publish (env->cloud->link, OTA_TEST_UPDATE_TOPIC, BAD_RSP, strlen (BAD_RSP), 0,
                                          NULL, &error));
    if (i % 1000 == 999)
      ota_test_spin (10); /* let the socket drain */
  }
  /* Same publisher, same topic: the offer comes after every response. */
  ota_test_cloud_publish (env->cloud, sync, strlen (sync));
  g_assert_true (ota_test_wait (offered_seen, env->signals, 6 * OTA_TEST_TIMEOUT_MS));
  lines = ota_test_agent_log_count (env->agent, "cloud refused version report");
  g_test_message ("%u warning lines for %u bad responses", lines, FLOOD);
  g_assert_cmpuint (lines, >=, 1);
  g_assert_cmpuint (lines, <=, 10);
}

/* Peak resident memory of the agent (VmHWM), in KiB. */
static guint64
agent_peak_kib (OtaTestEnv *env)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", (int) env->agent->proc->pid);
  g_autofree char *text = NULL;
  const char *line;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  line = strstr (text, "VmHWM:");
  g_assert_nonnull (line);
  return g_ascii_strtoull (line + strlen ("VmHWM:"), NULL, 10);
}

#define BIG_MESSAGE (32 * 1024 * 1024)

/* Sends a BIG_MESSAGE-byte message on the update topic, then a valid offer
 * that must still come through; returns the growth of the agent's peak
 * memory in KiB. */
static guint64
big_message_cost (OtaTestEnv *env)
{
  g_autofree char *big = g_malloc (BIG_MESSAGE);
  g_autofree char *offer = ota_test_offer_json (NULL, "1.1", DUMMY_URL, DUMMY_MD5, 1000);
  guint64 before;

  memset (big, '{', BIG_MESSAGE);
  app_init (env, "1.0", TRUE);
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "report_version", OTA_TEST_TIMEOUT_MS), >=,
                   0);
  before = agent_peak_kib (env);
  ota_test_cloud_publish (env->cloud, big, BIG_MESSAGE);
  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
  g_assert_true (ota_test_wait (offered_seen, env->signals, 3 * OTA_TEST_TIMEOUT_MS));
  return agent_peak_kib (env) - before;
}

/* MQTT 5: the agent announces its maximum packet size, and the broker keeps
 * the message (before: the agent's peak grew by three times its size). */
static void
test_big_message_never_reaches_agent (OtaTestEnv *env, gconstpointer data)
{
  guint64 growth = big_message_cost (env);

  g_test_message ("MQTT 5: a %d MiB message raised the agent's peak memory by %" G_GUINT64_FORMAT " KiB",
                  BIG_MESSAGE >> 20, growth);
  /* Under qemu the peak includes the code it translates for the offer. */
  if (!ota_test_emulated ())
    g_assert_cmpuint (growth, <, 1024);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "cloud message rejected"), ==, 0);
}

static void
env_setup_mqtt311 (OtaTestEnv *env, gconstpointer data)
{
  g_setenv ("IV_OTAD_TEST_MQTT311", "1", TRUE);
  ota_test_env_setup (env, data);
  g_unsetenv ("IV_OTAD_TEST_MQTT311");
}

/* A broker of MQTT 3.1.1 sends it anyway: libmosquitto reads it whole (and
 * copies it once), the agent drops it without another copy. */
static void
test_big_message_mqtt311_costs_libmosquitto_only (OtaTestEnv *env, gconstpointer data)
{
  guint64 growth = big_message_cost (env);

  g_test_message ("MQTT 3.1.1: a %d MiB message raised the agent's peak memory by %" G_GUINT64_FORMAT " KiB (%.2f x)",
                  BIG_MESSAGE >> 20, growth, growth / (double) (BIG_MESSAGE >> 10));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "dropped unread"), ==, 1);
  /* libmosquitto's packet buffer and its copy of the payload; not a third. */
  g_assert_cmpuint (growth, <, 5 * (BIG_MESSAGE >> 10) / 2);
}

/* ---- a storm of refused offers ---- */

static const char *storm_keys = "report_interval=600\nretry_interval=1\nmax_firmware_size=1000\n";
#define STORM 500

static void
on_report_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;

  ota_dbus_ota_call_report_progress_finish (OTA_DBUS_OTA (source), result, &error);
  g_assert_no_error (error);
  *(gboolean *) data = TRUE;
}

static gboolean
flag_set (gpointer data)
{
  return *(gboolean *) data;
}

/* Before: the outbox filled at 256 and dropped reports, terminal ones too.
 * The agent is paused while the offers and the app's fail arrive, so that it
 * meets them all at once, as under a real storm: no acknowledgement of a
 * report can come back before it has read every offer. */
static void
test_storm_of_refused_offers_loses_no_terminal_report (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *main_offer = ota_test_offer_json (NULL, "2.0", DUMMY_URL, DUMMY_MD5, 500);
  g_autoptr (GError) error = NULL;
  gboolean reported = FALSE;
  int last_fail, main_fail;
  guint mcu_fails;

  app_init (env, "1.0", TRUE);
  g_assert_true (ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, FALSE, &error));
  g_assert_no_error (error);
  ota_test_cloud_publish (env->cloud, main_offer, strlen (main_offer));
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "offered", OTA_TEST_TIMEOUT_MS), >=, 0);

  g_assert_cmpint (kill (env->agent->proc->pid, SIGSTOP), ==, 0);
  for (guint i = 0; i < STORM; i++) {
    g_autofree char *version = g_strdup_printf ("3.%u", i);
    g_autofree char *offer = ota_test_offer_json ("mcu", version, DUMMY_URL, DUMMY_MD5, 2000);
    ota_test_cloud_publish (env->cloud, offer, strlen (offer));
    if (i == STORM / 2)
      ota_dbus_ota_call_report_progress (env->proxy, "", "fail", -1, -5, "app failed", NULL, on_report_done,
                                         &reported);
  }
  ota_test_spin (200);
  g_assert_cmpint (kill (env->agent->proc->pid, SIGCONT), ==, 0);
  g_assert_true (ota_test_wait (flag_set, &reported, OTA_TEST_TIMEOUT_MS));

  /* The storm's last refusal and the app's fail reach the cloud... */
  last_fail = ota_test_cloud_wait_report_containing (env->cloud, 0, "\"version\":\"3.499\"", 3 * OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (last_fail, >=, 0);
  g_assert_nonnull (strstr (g_ptr_array_index (env->cloud->reports, last_fail), "\"state\":\"fail\""));
  main_fail = ota_test_cloud_wait_report_containing (env->cloud, 0, "app failed", OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (main_fail, >=, 0);
  g_assert_nonnull (strstr (g_ptr_array_index (env->cloud->reports, main_fail), "\"version\":\"2.0\""));
  /* ...and nothing was dropped on the way: superseded fails were coalesced. */
  mcu_fails = ota_test_cloud_count_reports (env->cloud, "\"fw_type\":\"mcu\"");
  g_test_message ("%u reports of mcu reached the cloud for %d refused offers", mcu_fails, STORM);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "outbox full"), ==, 0);
  g_assert_cmpuint (mcu_fails, <, STORM);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add ("/etiquette/" path, OtaTestEnv, fast_loop, ota_test_env_setup, fn, ota_test_env_teardown)
  ADD ("twin-client/connects-at-most-every-5s", test_twin_client_connects_at_most_every_5s);
  ADD ("retained-offer/ignored", test_retained_offer_ignored);
  ADD ("log/repeated-warnings-rate-limited", test_repeated_warnings_rate_limited);
  ADD ("big-message/mqtt5-never-reaches-agent", test_big_message_never_reaches_agent);
  g_test_add ("/etiquette/storm/refused-offers-lose-no-terminal-report", OtaTestEnv, storm_keys, ota_test_env_setup,
              test_storm_of_refused_offers_loses_no_terminal_report, ota_test_env_teardown);
  g_test_add ("/etiquette/big-message/mqtt311-costs-libmosquitto-only", OtaTestEnv, fast_loop, env_setup_mqtt311,
              test_big_message_mqtt311_costs_libmosquitto_only, ota_test_env_teardown);
  return g_test_run ();
}
