/* Reports that must never be lost (docs/protocol.md, QoS): the persisted outbox
 * across broker outages, agent crashes and a damaged outbox file; a broker
 * that refuses the connection; and the reboot marker across an agent restart.
 *
 * Ordering note: the in-process cloud only records what reaches the broker
 * while it is subscribed, and after a broker restart both it and the agent
 * reconnect on their own. So that no report can reach the restarted broker
 * before the cloud listens, the agent is held with SIGSTOP while the broker
 * comes back and the cloud resubscribes (a paused process is just a slow one:
 * the agent's own reconnect logic runs unchanged after SIGCONT). */
#include "harness.h"
#include "outbox.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <unistd.h>

#define REPORT_VERSION(v) "{\"type\":\"report_version\",\"report\":{\"version\":\"" v "\"}}"
#define BURNING_10 "\"state\":\"burning\",\"percent\":\"10\""
#define BURNING_60 "\"state\":\"burning\",\"percent\":\"60\""
#define DONE_2_0                                                                                                   \
  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"done\",\"result_code\":\"0\","            \
  "\"result_msg\":\"\"},\"version\":\"2.0\"}}"
#define DUMMY_URL "http://127.0.0.1:9/fw.bin"
#define DUMMY_MD5 "0123456789abcdef0123456789abcdef"

static const char *fast_loop = "report_interval=600\nretry_interval=1\n";

/* ---- helpers ---- */

/* Connected as the agent says it right now (Properties.Get, not the cache). */
static gboolean
agent_connected_now (OtaTestEnv *env)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) value = NULL;

  reply = g_dbus_connection_call_sync (env->connection, "org.iv.Ota", "/org/iv/Ota",
                                       "org.freedesktop.DBus.Properties", "Get",
                                       g_variant_new ("(ss)", "org.iv.Ota", "Connected"), G_VARIANT_TYPE ("(v)"),
                                       G_DBUS_CALL_FLAGS_NONE, OTA_TEST_TIMEOUT_MS, NULL, &error);
  g_assert_no_error (error);
  g_variant_get (reply, "(v)", &value);
  return g_variant_get_boolean (value);
}

static guint
broker_log_count (OtaTestEnv *env, const char *needle)
{
  g_autofree char *path = g_build_filename (env->broker->dir, "mosquitto.log", NULL);

  return ota_test_file_count_lines (path, needle);
}

/* Stops the broker and waits until the agent says it is offline. */
static void
broker_stop_and_wait_offline (OtaTestEnv *env)
{
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  ota_test_broker_stop (env->broker);
  g_assert_true (ota_test_env_wait_connected (env, FALSE, OTA_TEST_TIMEOUT_MS));
}

static void
init_module (OtaTestEnv *env, const char *module, const char *version, gboolean ask)
{
  g_autoptr (GError) error = NULL;

  ota_test_init (env->proxy, module, version, env->fw_dir, ask, &error);
  g_assert_no_error (error);
}

static void
report_progress (OtaTestEnv *env, const char *module, const char *state, int percent, int code, const char *msg)
{
  g_autoptr (GError) error = NULL;

  ota_dbus_ota_call_report_progress_sync (env->proxy, module, state, percent, code, msg, NULL, &error);
  g_assert_no_error (error);
}

/* Offers @version of @module (owned with ask_before_download) and waits for
 * Progress(offered): from there a "fail" report is accepted. */
static void
offer_and_wait_offered (OtaTestEnv *env, const char *module, const char *version)
{
  g_autofree char *offer = ota_test_offer_json (module, version, DUMMY_URL, DUMMY_MD5, 1000);

  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, module, "offered", OTA_TEST_TIMEOUT_MS), >=, 0);
}

typedef struct {
  OtaTestSignals *sig;
  const char *module, *version;
} OfferedWait;

static gboolean
offered_found (gpointer data)
{
  OfferedWait *w = data;

  for (guint i = 0; i < w->sig->offered->len; i++) {
    const char *module, *version;
    g_variant_get (g_ptr_array_index (w->sig->offered, i), "(&s&st)", &module, &version, NULL);
    if (g_str_equal (module, w->module) && g_str_equal (version, w->version))
      return TRUE;
  }
  return FALSE;
}

static gboolean
firmware_ready_seen (gpointer data)
{
  return ((OtaTestSignals *) data)->ready->len > 0;
}

/* The main firmware goes through a real download of "2.0" served by
 * iv-ota-cloud, up to FirmwareReady. The tool is stopped afterwards so that it
 * takes no part in what the test does next. */
static void
download_main_firmware (OtaTestEnv *env)
{
  g_autofree char *image = g_build_filename (env->dir, "image-2.0.bin", NULL);
  g_autofree char *md5 = ota_test_make_file (image, 96 * 1024);
  OtaTestCloudTool *tool = ota_test_cloud_tool_start (env->dir, "cloud-tool", env->broker->port, "2.0", image, NULL);
  const char *version, *ready_md5;

  init_module (env, "", "1.0", FALSE);
  g_assert_true (ota_test_wait (firmware_ready_seen, env->signals, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (env->signals->ready->len, ==, 1);
  g_variant_get (g_ptr_array_index (env->signals->ready, 0), "(s&sst&s)", NULL, &version, NULL, NULL, &ready_md5);
  g_assert_cmpstr (version, ==, "2.0");
  g_assert_cmpstr (ready_md5, ==, md5);
  ota_test_cloud_tool_stop (tool);
  ota_test_cloud_tool_free (tool);
}

/* Waits for reports containing @needles after @from, in this order, then
 * checks that each was received exactly once in all. Returns the index of the
 * last one. */
static int
assert_reports_once_in_order (OtaTestEnv *env, guint from, const char *const *needles, guint n)
{
  int prev = (int) from - 1;

  for (guint i = 0; i < n; i++) {
    int idx = ota_test_cloud_wait_report_containing (env->cloud, from, needles[i], OTA_TEST_TIMEOUT_MS);
    if (idx < 0)
      g_error ("report containing %s never arrived", needles[i]);
    if (idx <= prev)
      g_error ("report containing %s arrived before %s", needles[i], needles[i - 1]);
    prev = idx;
  }
  for (guint i = 0; i < n; i++) {
    if (ota_test_cloud_count_reports (env->cloud, needles[i]) != 1)
      g_error ("report containing %s received %u times", needles[i],
               ota_test_cloud_count_reports (env->cloud, needles[i]));
  }
  return prev;
}

static char *
state_file (OtaTestEnv *env, const char *name)
{
  return g_build_filename (env->agent->state_dir, name, NULL);
}

/* The payloads queued in state_dir/outbox.json; NULL if missing or unparsable. */
static GPtrArray *
outbox_file_entries (OtaTestEnv *env)
{
  g_autofree char *path = state_file (env, "outbox.json");
  g_autofree char *data = NULL;
  g_autoptr (GPtrArray) entries = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  gsize length;

  if (!g_file_get_contents (path, &data, &length, NULL) || !ota_outbox_parse (data, length, entries, keys, NULL))
    return NULL;
  return g_steal_pointer (&entries);
}

/* Index of the first entry containing @needle, or -1. */
static int
entries_find (GPtrArray *entries, const char *needle)
{
  for (guint i = 0; i < entries->len; i++) {
    if (strstr (g_ptr_array_index (entries, i), needle) != NULL)
      return (int) i;
  }
  return -1;
}

static gboolean
outbox_file_empty (gpointer data)
{
  g_autoptr (GPtrArray) entries = outbox_file_entries (data);

  if (entries != NULL && entries->len == 0)
    return TRUE;
  g_usleep (20 * 1000);
  return FALSE;
}

typedef struct {
  OtaTestAgent *agent;
  const char *needle;
} LogWait;

static gboolean
log_has (gpointer data)
{
  LogWait *w = data;

  if (ota_test_agent_log_count (w->agent, w->needle) > 0)
    return TRUE;
  g_usleep (20 * 1000);
  return FALSE;
}

/* The in-process cloud's own link is refused too, and says so with a
 * warning: expected there, so neither fatal nor a TAP "Bail out!". */
static gboolean
cloud_refusal_not_fatal (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
  return strstr (message, "refused the connection") == NULL;
}

static void
cloud_refusal_log (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
  if (strstr (message, "refused the connection") != NULL)
    g_test_message ("expected: %s", message);
  else
    g_log_default_handler (domain, level, message, data);
}

/* ---- tests ---- */

/* Reports made while the broker is down all reach it after it comes back, in
 * order and once each; the D-Bus calls do not notice the outage; and the
 * agent subscribes again on the new session. */
static void
test_broker_outage_keeps_reports (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *state = NULL;
  g_autofree char *offer = ota_test_offer_json ("mcu", "3.0", DUMMY_URL, DUMMY_MD5, 1000);
  const char *needles[] = { BURNING_10, BURNING_60, DONE_2_0 };
  OfferedWait offered = { env->signals, "mcu", "3.0" };
  guint from;
  int done;

  download_main_firmware (env);
  init_module (env, "mcu", "1.0", TRUE);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0,
                                               "{\"type\":\"report_version\",\"report\":{\"version\":\"1.0\","
                                               "\"fw_type\":\"mcu\"}}",
                                               OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  broker_stop_and_wait_offline (env);

  ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  report_progress (env, "", "burning", 10, 0, "");
  report_progress (env, "", "burning", 60, 0, "");
  report_progress (env, "", "done", -1, 0, "");
  state = ota_test_status_get (env->proxy, "", "state");
  g_assert_cmpstr (state, ==, "done");
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"burning\""), ==, 0);

  from = env->cloud->reports->len;
  ota_test_env_broker_restart_cloud_first (env);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  done = assert_reports_once_in_order (env, from, needles, G_N_ELEMENTS (needles));
  /* The cloud must not hear of 2.0 as installed before it hears "done". */
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, from, REPORT_VERSION ("2.0"), OTA_TEST_TIMEOUT_MS), >,
                   done);

  /* The agent's reports came after its SUBSCRIBE on the same session: an
   * offer published now reaches it only if it subscribed again. */
  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
  g_assert_true (ota_test_wait (offered_found, &offered, OTA_TEST_TIMEOUT_MS));
}

/* A report in flight when the session dies (published, never acknowledged:
 * the broker was frozen, then killed) is sent again on the next session. */
static void
test_in_flight_report_resent (OtaTestEnv *env, gconstpointer data)
{
  const char *needles[] = { "\"result_msg\":\"in-flight\"" };
  guint from;

  init_module (env, "", "1.0", TRUE);
  offer_and_wait_offered (env, "", "1.1");
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (kill (env->broker->proc->pid, SIGSTOP), ==, 0);
  report_progress (env, "", "fail", -1, -5, "in-flight");
  ota_test_broker_stop (env->broker);
  g_assert_true (ota_test_env_wait_connected (env, FALSE, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, needles[0]), ==, 0);

  from = env->cloud->reports->len;
  ota_test_env_broker_restart_cloud_first (env);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  assert_reports_once_in_order (env, from, needles, G_N_ELEMENTS (needles));
}

/* Reports still in the outbox when the agent dies are in outbox.json, and the
 * next agent sends them on connect, before any app calls Init. */
static void
test_agent_killed_outbox_survives (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GPtrArray) entries = NULL;
  const char *needles[] = { "\"result_msg\":\"killed-first\"", "\"result_msg\":\"killed-second\"" };
  guint from;

  init_module (env, "", "1.0", TRUE);
  init_module (env, "mcu", "1.0", TRUE);
  offer_and_wait_offered (env, "", "1.1");
  offer_and_wait_offered (env, "mcu", "1.1");
  broker_stop_and_wait_offline (env);
  report_progress (env, "", "fail", -1, -5, "killed-first");
  report_progress (env, "mcu", "fail", -1, -5, "killed-second");
  ota_test_agent_kill (env->agent);

  entries = outbox_file_entries (env);
  g_assert_nonnull (entries);
  g_assert_cmpint (entries_find (entries, needles[0]), >=, 0);
  g_assert_cmpint (entries_find (entries, needles[1]), >, entries_find (entries, needles[0]));

  ota_test_broker_restart (env->broker);
  ota_test_env_cloud_sync (env);
  from = env->cloud->reports->len;
  ota_test_agent_start (env->agent);
  assert_reports_once_in_order (env, from, needles, G_N_ELEMENTS (needles));
  /* Delivered reports leave the file: a later restart does not send them again. */
  g_assert_true (ota_test_wait (outbox_file_empty, env, OTA_TEST_TIMEOUT_MS));
}

/* Several modules' reports queued while offline keep the order they were
 * made in (not the order of module names or of a hash table). */
static void
test_burst_of_modules_keeps_order (OtaTestEnv *env, gconstpointer data)
{
  const char *modules[] = { "mcu3", "mcu1", "mcu5", "mcu2", "mcu4" };
  const char *needles[G_N_ELEMENTS (modules)];
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
  guint from;

  for (guint i = 0; i < G_N_ELEMENTS (modules); i++) {
    init_module (env, modules[i], "1.0", TRUE);
    offer_and_wait_offered (env, modules[i], "2.0");
  }
  broker_stop_and_wait_offline (env);
  for (guint i = 0; i < G_N_ELEMENTS (modules); i++) {
    g_autofree char *msg = g_strdup_printf ("burst-%u-%s", i, modules[i]);
    report_progress (env, modules[i], "fail", -1, -5, msg);
    g_ptr_array_add (owned, g_strdup_printf ("\"result_msg\":\"%s\"", msg));
    needles[i] = g_ptr_array_index (owned, i);
  }
  from = env->cloud->reports->len;
  ota_test_env_broker_restart_cloud_first (env);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  assert_reports_once_in_order (env, from, needles, G_N_ELEMENTS (needles));
}

/* A damaged outbox.json does not stop the agent: it is moved aside, logged,
 * and reports flow again through a new outbox. */
static void
test_corrupt_outbox_is_set_aside (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *path = state_file (env, "outbox.json");
  g_autofree char *corrupt = state_file (env, "outbox.json.corrupt");
  g_autofree char *moved = NULL;
  const char *garbage = "{\"entries\":[{\"key\":\"\",\"payload\":\x01\x02 not json";
  guint from;

  ota_test_agent_kill (env->agent);
  g_assert_true (g_file_set_contents (path, garbage, -1, NULL));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "damaged"), ==, 0);
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "damaged"), >=, 1);
  g_assert_true (g_file_get_contents (corrupt, &moved, NULL, NULL));
  g_assert_cmpstr (moved, ==, garbage);

  from = env->cloud->reports->len;
  init_module (env, "", "4.2", FALSE);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, from, REPORT_VERSION ("4.2"), OTA_TEST_TIMEOUT_MS), >=,
                   0);
  g_assert_true (ota_test_wait (outbox_file_empty, env, OTA_TEST_TIMEOUT_MS));
}

/* A broker that answers CONNECT with "not authorised" leaves the agent
 * offline and says so in the log; once a normal broker is back, the agent
 * connects again by itself and reports.
 *
 * A refusal sets the reconnect backoff to its 7th step, 32 s ± 25 %, so the
 * last wait is allowed 60 s: the only long wait of the suite, kept because
 * "a refused connection never recovers" is the bug worth catching here. The
 * refusing broker is replaced as soon as the refusal is logged, so that the
 * agent meets it once only (a second refusal would double the backoff). */
static void
test_refused_connection_recovers (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *conf_path = g_build_filename (env->dir, "mosquitto-refusing.conf", NULL);
  g_autofree char *log_path = g_build_filename (env->dir, "mosquitto-refusing.log", NULL);
  g_autofree char *conf = g_strdup_printf ("listener %u 127.0.0.1\nallow_anonymous false\npersistence false\n"
                                           "log_dest stderr\nlog_type all\n%s",
                                           env->broker->port, geteuid () == 0 ? "user root\n" : "");
  g_autofree char *exe = g_find_program_in_path ("mosquitto");
  char *argv[] = { exe != NULL ? exe : "/usr/sbin/mosquitto", "-c", conf_path, NULL };
  LogWait refusal = { env->agent, "refused the connection" };
  OtaTestProcess *refusing;
  guint from, handler;

  init_module (env, "", "1.0", FALSE);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=, 0);
  broker_stop_and_wait_offline (env);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, refusal.needle), ==, 0);

  g_assert_true (g_file_set_contents (conf_path, conf, -1, NULL));
  g_test_log_set_fatal_handler (cloud_refusal_not_fatal, NULL);
  handler = g_log_set_handler ("iv-ota", G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL, cloud_refusal_log, NULL);
  refusing = ota_test_process_spawn (argv, NULL, log_path, NULL);
  g_assert_true (ota_test_wait (log_has, &refusal, OTA_TEST_TIMEOUT_MS));
  /* Give a wrongly "connected" state time to show; then the agent must say offline. */
  ota_test_spin (250);
  g_assert_false (agent_connected_now (env));
  ota_test_process_stop (refusing, SIGTERM);
  ota_test_process_free (refusing);

  from = env->cloud->reports->len;
  ota_test_env_broker_restart_cloud_first (env);
  g_log_remove_handler ("iv-ota", handler);
  g_test_log_set_fatal_handler (NULL, NULL);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, 3 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, from, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=,
                   0);
}

/* Download, burning, rebooting; the agent dies (the device reboots); the
 * app's Init with @version_after decides the outcome reported for 2.0. */
static void
reboot_across_agent_restart (OtaTestEnv *env, const char *version_after, const char *expected)
{
  g_autofree char *marker = state_file (env, "rebooting.json");
  guint from;
  int idx;

  download_main_firmware (env);
  report_progress (env, "", "burning", -1, 0, "");
  report_progress (env, "", "rebooting", -1, 0, "");
  g_assert_true (g_file_test (marker, G_FILE_TEST_IS_REGULAR));
  ota_test_agent_kill (env->agent);
  g_assert_true (g_file_test (marker, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, expected), ==, 0);

  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
  from = env->cloud->reports->len;
  init_module (env, "", version_after, FALSE);
  idx = ota_test_cloud_wait_report_containing (env->cloud, from, expected, OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (idx, >=, 0);
  g_assert_nonnull (strstr (g_ptr_array_index (env->cloud->reports, idx), "\"version\":\"2.0\""));
  g_assert_false (g_file_test (marker, G_FILE_TEST_EXISTS));
  /* The version report that follows the outcome: nothing was sent twice before it. */
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, (guint) idx + 1, "\"report_version\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >, idx);
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, expected), ==, 1);
}

static void
test_reboot_marker_target_version_reports_done (OtaTestEnv *env, gconstpointer data)
{
  reboot_across_agent_restart (env, "2.0", DONE_2_0);
}

static void
test_reboot_marker_other_version_reports_fail (OtaTestEnv *env, gconstpointer data)
{
  reboot_across_agent_restart (env, "1.0", "\"state\":\"fail\",\"result_code\":\"-5\"");
}

/* A marker left over (its deletion failed, say) does not take over a cycle
 * under way when its owner calls Init again: only an Init after a reboot
 * (a new owner, or one that said "rebooting") reads it. */
static void
test_reboot_marker_ignored_mid_cycle (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *marker = state_file (env, "rebooting.json");
  g_autofree char *state = NULL;
  g_autofree char *target = NULL;
  guint from;

  init_module (env, "", "1.0", TRUE);
  offer_and_wait_offered (env, "", "1.1");
  g_assert_true (g_file_set_contents (marker, "{\"module\":\"\",\"target_version\":\"9.9\"}", -1, NULL));
  from = env->cloud->reports->len;
  init_module (env, "", "1.0", TRUE);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, from, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=,
                   (int) from);
  state = ota_test_status_get (env->proxy, "", "state");
  target = ota_test_status_get (env->proxy, "", "target_version");
  g_assert_cmpstr (state, ==, "offered");
  g_assert_cmpstr (target, ==, "1.1");
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"fail\""), ==, 0);
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"done\""), ==, 0);
  g_assert_true (g_file_test (marker, G_FILE_TEST_IS_REGULAR));
  g_assert_true (ota_test_process_is_running (env->agent->proc));
}

/* ---- keepalive: the agent wakes for its pings only, and they still go out ---- */

/* Restarts the agent with [mqtt] keepalive=@seconds (the harness uses 10) and
 * waits until it is connected; returns the broker log's count of connections
 * of our client before that. */
static guint
restart_agent_with_keepalive (OtaTestEnv *env, guint seconds)
{
  g_autofree char *conf = NULL;
  g_autofree char *setting = g_strdup_printf ("keepalive=%u\n", seconds);
  g_autoptr (GString) edited = NULL;

  ota_test_agent_stop (env->agent);
  g_assert_true (g_file_get_contents (env->agent->config_path, &conf, NULL, NULL));
  edited = g_string_new (conf);
  g_assert_cmpuint (g_string_replace (edited, "keepalive=10\n", setting, 1), ==, 1);
  g_assert_true (g_file_set_contents (env->agent->config_path, edited->str, -1, NULL));
  ota_test_agent_start (env->agent);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  return broker_log_count (env, "as " OTA_TEST_PRODUCT OTA_TEST_DEVICE);
}

#define PINGREQ_LINE "Received PINGREQ from " OTA_TEST_PRODUCT OTA_TEST_DEVICE

/* After an idle stretch: two more pings than @pings reached the broker, and
 * the session of the @connects-th CONNECT is still the one, never timed out. */
static void
assert_pings_kept_session (OtaTestEnv *env, guint pings, guint connects)
{
  g_assert_cmpuint (broker_log_count (env, PINGREQ_LINE), >=, pings + 2);
  g_assert_cmpuint (broker_log_count (env, "as " OTA_TEST_PRODUCT OTA_TEST_DEVICE), ==, connects);
  g_assert_cmpuint (broker_log_count (env, OTA_TEST_PRODUCT OTA_TEST_DEVICE " has exceeded timeout"), ==, 0);
  g_assert_true (agent_connected_now (env));
}

/* An idle session with a short keepalive: the broker receives a PINGREQ every
 * keepalive and keeps the one session open, long past 1.5 x keepalive (when
 * mosquitto drops a silent client). */
static void
test_keepalive_pings_keep_idle_session (OtaTestEnv *env, gconstpointer data)
{
  guint connects = restart_agent_with_keepalive (env, 5);
  guint pings = broker_log_count (env, PINGREQ_LINE);

  ota_test_spin (13 * 1000);
  assert_pings_kept_session (env, pings, connects);
}

/* An MQTT 5 broker that imposes a shorter keepalive (Server Keep Alive in the
 * CONNACK: mosquitto's max_keepalive, 10 s at least) gets its pings on that
 * schedule: the agent's own 30 s would leave it silent past 1.5 x 10 s. */
static void
test_keepalive_follows_server_keepalive (OtaTestEnv *env, gconstpointer data)
{
  guint connects, pings;

  ota_test_agent_stop (env->agent);
  g_free (env->broker->extra_conf);
  env->broker->extra_conf = g_strdup ("max_keepalive 10\n");
  ota_test_env_broker_restart_cloud_first (env);
  connects = restart_agent_with_keepalive (env, 30);
  pings = broker_log_count (env, PINGREQ_LINE);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "sets the keepalive to 10 s"), ==, 1);

  ota_test_spin (25 * 1000);
  assert_pings_kept_session (env, pings, connects);
}

/* A broker that stops answering (frozen, socket open) is noticed by the
 * keepalive: the unanswered PINGREQ ends the session. */
static void
test_keepalive_notices_frozen_broker (OtaTestEnv *env, gconstpointer data)
{
  restart_agent_with_keepalive (env, 5);
  g_assert_cmpint (kill (env->broker->proc->pid, SIGSTOP), ==, 0);
  g_assert_true (ota_test_env_wait_connected (env, FALSE, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (kill (env->broker->proc->pid, SIGCONT), ==, 0);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "keepalive timeout"), >=, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn)                                                                                               \
  g_test_add ("/reliability/" path, OtaTestEnv, fast_loop, ota_test_env_setup, fn, ota_test_env_teardown)
  ADD ("broker-outage/reports-once-in-order-and-resubscribes", test_broker_outage_keeps_reports);
  ADD ("broker-outage/in-flight-report-resent", test_in_flight_report_resent);
  ADD ("agent-killed/outbox-sent-on-next-start", test_agent_killed_outbox_survives);
  ADD ("broker-outage/burst-of-modules-keeps-order", test_burst_of_modules_keeps_order);
  ADD ("outbox/corrupt-file-set-aside", test_corrupt_outbox_is_set_aside);
  ADD ("broker-refuses/offline-then-recovers", test_refused_connection_recovers);
  ADD ("reboot-marker/target-version-reports-done", test_reboot_marker_target_version_reports_done);
  ADD ("reboot-marker/other-version-reports-fail", test_reboot_marker_other_version_reports_fail);
  ADD ("reboot-marker/ignored-by-init-mid-cycle", test_reboot_marker_ignored_mid_cycle);
  ADD ("keepalive/pings-keep-idle-session", test_keepalive_pings_keep_idle_session);
  ADD ("keepalive/notices-frozen-broker", test_keepalive_notices_frozen_broker);
  ADD ("keepalive/follows-server-keepalive", test_keepalive_follows_server_keepalive);
  return g_test_run ();
}
