/* Every state of a module has a way out (docs/module-states.md): an image
 * handed over is remembered as "ready", then "burning", in state_dir; the
 * next Init settles it by the version it brings (done, or fail -5 naming both
 * versions), whether the app crashed, exited inside its callback, rebooted or
 * the agent restarted meanwhile; the same app registering again after an
 * agent restart goes on with its cycle; an offer of an image kept as ready is
 * answered from the file; and an ignored offer says why.
 *
 * The cloud is iv-ota-cloud offering "2.0" of a 1 MiB image whenever the
 * device reports another version; the app is played over D-Bus by the test. */
#include "harness.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#define DONE_2_0 "\"state\":\"done\",\"result_code\":\"0\",\"result_msg\":\"\"},\"version\":\"2.0\""
#define FAIL_BURNING_1_0                                                                                           \
  "\"state\":\"fail\",\"result_code\":\"-5\",\"result_msg\":\"version after burning is 1.0, expected 2.0\"},"      \
  "\"version\":\"2.0\""
#define TERMINAL_2_0 "\"version\":\"2.0\""

static const char *fast = "report_interval=600\nretry_interval=1\n";

typedef struct {
  OtaTestImage image;
  OtaTestCloudTool *tool;
} Cycle;

static void
cycle_clear (Cycle *c)
{
  g_clear_pointer (&c->tool, ota_test_cloud_tool_free);
  ota_test_image_clear (&c->image);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Cycle, cycle_clear)

static char *
state_file (OtaTestEnv *env, const char *name)
{
  return g_build_filename (env->agent->state_dir, name, NULL);
}

static char *
status (OtaTestEnv *env, const char *key)
{
  return ota_test_status_get (env->proxy, "", key);
}

static void
assert_state (OtaTestEnv *env, const char *expected)
{
  g_autofree char *state = status (env, "state");

  g_assert_cmpstr (state, ==, expected);
}

/* The app at 1.0 gets "2.0" downloaded and announced. */
static void
cycle_to_ready (OtaTestEnv *env, Cycle *c)
{
  ota_test_image_make (env, 1024 * 1024, &c->image);
  c->tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", c->image.path, NULL);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  assert_state (env, "ready");
}

static void
cycle_to_burning (OtaTestEnv *env, Cycle *c)
{
  g_autofree char *record = state_file (env, "cycle.json");
  g_autofree char *text = NULL;

  cycle_to_ready (env, c);
  ota_test_app_report (env, "burning", 10, 0, "");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "\"state\":\"burning\"", OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  /* Durable before the call returned. */
  g_assert_true (g_file_get_contents (record, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"phase\":\"burning\""));
  g_assert_nonnull (strstr (text, "\"target_version\":\"2.0\""));
}

/* The terminal reports (done or fail) for 2.0 the cloud got. */
static guint
terminal_reports (OtaTestEnv *env)
{
  guint n = 0;

  for (guint i = 0; i < env->cloud->reports->len; i++) {
    const char *r = g_ptr_array_index (env->cloud->reports, i);
    if ((strstr (r, "\"state\":\"done\"") != NULL || strstr (r, "\"state\":\"fail\"") != NULL) &&
        strstr (r, TERMINAL_2_0) != NULL)
      n++;
  }
  return n;
}

/* Init of the (restarted) app at @version; waits for @terminal at the cloud,
 * the only terminal report of the cycle, and checks that nothing of the
 * cycle stays in state_dir. */
static void
init_settles (OtaTestEnv *env, const char *version, const char *terminal, const char *state)
{
  g_autofree char *record = state_file (env, "cycle.json");
  g_autofree char *marker = state_file (env, "rebooting.json");

  ota_test_app_init (env, version);
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, terminal, OTA_TEST_TIMEOUT_MS), >=, 0);
  /* The module went through @state. After a fail the cloud's re-offer may
   * already have moved it on, so the signal is the proof, not GetStatus. */
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", state, OTA_TEST_TIMEOUT_MS), >=, 0);
  if (g_str_equal (state, "done"))
    assert_state (env, state);
  g_assert_false (g_file_test (record, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (marker, G_FILE_TEST_EXISTS));
  ota_test_spin (300);
  g_assert_cmpuint (terminal_reports (env), ==, 1);
}

static gboolean
module_released (gpointer data)
{
  g_autofree char *owner = status (data, "owner");

  return g_str_equal (owner, "");
}

/* The app crashes (its connection goes), the agent keeps running. */
static void
app_crashes (OtaTestEnv *env)
{
  ota_test_env_reconnect_app (env);
  g_assert_true (ota_test_wait (module_released, env, OTA_TEST_TIMEOUT_MS));
}

static void
agent_restarts_app_too (OtaTestEnv *env)
{
  ota_test_agent_kill (env->agent);
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
}

/* ---- burning is durable ---- */

/* The vendor's way: WRITE_FLASH, iv_ota_exit() inside the callback, the
 * image moved away, "reboot" (a new process) at the new version; SUCCESS is
 * never sent. */
static void
test_burning_exit_mv_reboot_reports_done (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  g_autofree char *moved = g_build_filename (env->dir, "burnt.bin", NULL);

  cycle_to_burning (env, &c);
  ota_dbus_ota_call_exit_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_rename (bin, moved), ==, 0);
  app_crashes (env);
  init_settles (env, "2.0", DONE_2_0, "done");
}

/* The app crashed after burning and came back at the old version: fail -5
 * naming both versions, and the cloud's re-offer gets through at once,
 * without an agent restart. */
static void
test_burning_app_crash_old_version_fails_then_reoffer (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };

  cycle_to_burning (env, &c);
  app_crashes (env);
  init_settles (env, "1.0", FAIL_BURNING_1_0, "fail");
  g_assert_cmpstr (ota_test_signals_last_fail_kind (env->signals), ==, "version");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  g_assert_true (ota_test_agent_log_count (env->agent, "after burning is 1.0, expected 2.0") > 0);
}

/* The agent died too (a real reboot restarts both). */
static void
test_burning_agent_restart_target_reports_done (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };

  cycle_to_burning (env, &c);
  agent_restarts_app_too (env);
  init_settles (env, "2.0", DONE_2_0, "done");
}

static void
test_burning_agent_restart_old_version_fails (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };

  cycle_to_burning (env, &c);
  agent_restarts_app_too (env);
  init_settles (env, "1.0", FAIL_BURNING_1_0, "fail");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
}

/* The owner itself, still connected, calls Init at the target (an MCU
 * flashed in-process): that is done too. */
static void
test_burning_same_owner_init_at_target_done (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };

  cycle_to_burning (env, &c);
  init_settles (env, "2.0", DONE_2_0, "done");
}

/* The owner repeats its Init at the old version while burning: its cycle
 * goes on (nothing reported); once it said "rebooting", the same Init tells
 * the reboot did not bring the target: fail -5. */
static void
test_same_owner_repeated_init (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };

  cycle_to_burning (env, &c);
  ota_test_app_init (env, "1.0");
  assert_state (env, "burning");
  ota_test_spin (300);
  g_assert_cmpuint (terminal_reports (env), ==, 0);
  ota_test_app_report (env, "rebooting", -1, 0, "");
  init_settles (env, "1.0",
                "\"state\":\"fail\",\"result_code\":\"-5\",\"result_msg\":\"version after reboot is 1.0, "
                "expected 2.0\"",
                "fail");
  g_assert_cmpstr (ota_test_signals_last_fail_kind (env->signals), ==, "version");
}

/* ---- the same app registering again after an agent restart ---- */

static void
agent_restarts_app_stays (OtaTestEnv *env)
{
  ota_test_agent_kill (env->agent);
  ota_test_agent_start (env->agent);
  g_assert_true (ota_test_wait (ota_test_proxy_has_owner, env->proxy, OTA_TEST_TIMEOUT_MS));
}

/* Burning goes on: rebooting is remembered, done after the reboot. */
static void
test_same_app_burning_goes_on_after_agent_restart (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };
  g_autofree char *marker = state_file (env, "rebooting.json");
  g_autofree char *target = NULL;
  g_autofree char *path = NULL;
  g_autofree char *bin = ota_test_fw_path (env, "bin");

  cycle_to_burning (env, &c);
  agent_restarts_app_stays (env);
  ota_test_app_init (env, "1.0");
  assert_state (env, "burning");
  target = status (env, "target_version");
  path = status (env, "path");
  g_assert_cmpstr (target, ==, "2.0");
  g_assert_cmpstr (path, ==, bin);
  ota_test_app_report (env, "burning", 90, 0, "");
  ota_test_app_report (env, "rebooting", -1, 0, "");
  g_assert_true (g_file_test (marker, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpuint (terminal_reports (env), ==, 0);
  agent_restarts_app_too (env);
  init_settles (env, "2.0", DONE_2_0, "done");
}

/* Rebooting, the agent restarts before the device does: the app still
 * running registers again and is not taken for the rebooted one. */
static void
test_same_app_rebooting_survives_agent_restart (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };

  cycle_to_burning (env, &c);
  ota_test_app_report (env, "rebooting", -1, 0, "");
  agent_restarts_app_stays (env);
  ota_test_app_init (env, "1.0");
  assert_state (env, "rebooting");
  ota_test_spin (300);
  g_assert_cmpuint (terminal_reports (env), ==, 0);
  app_crashes (env);
  init_settles (env, "2.0", DONE_2_0, "done");
}

/* Ready goes on: the image announced before is still the app's, no
 * download, and burning/done work. */
static void
test_same_app_ready_goes_on_after_agent_restart (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };
  g_autofree char *path = NULL;
  guint requests;

  cycle_to_ready (env, &c);
  requests = ota_test_cloud_tool_requests (c.tool);
  agent_restarts_app_stays (env);
  ota_test_app_init (env, "1.0");
  assert_state (env, "ready");
  path = status (env, "path");
  g_assert_cmpstr (path, !=, "");
  ota_test_spin (500);
  g_assert_cmpuint (ota_test_cloud_tool_requests (c.tool), ==, requests);
  ota_test_app_report (env, "burning", 50, 0, "");
  ota_test_app_report (env, "done", -1, 0, "");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, DONE_2_0, OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_cmpuint (terminal_reports (env), ==, 1);
}

/* ---- the image kept as ready answers the next offer ---- */

static guint64
file_inode (const char *path)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  return (guint64) st.st_ino;
}

/* The app crashed in ready (it never said burning): the module does not
 * stay "ready" with nobody, the re-offer is answered from the file, which
 * is not rewritten; the agent restarted in between or not. */
static void
ready_app_crash_reoffer_from_file (OtaTestEnv *env, gboolean agent_restart)
{
  g_auto (Cycle) c = { 0 };
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  guint64 inode;
  guint requests;

  cycle_to_ready (env, &c);
  inode = file_inode (bin);
  requests = ota_test_cloud_tool_requests (c.tool);
  if (agent_restart)
    agent_restarts_app_too (env);
  else
    app_crashes (env);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (ota_test_cloud_tool_requests (c.tool), ==, requests);
  g_assert_cmpuint (file_inode (bin), ==, inode);
  g_assert_true (ota_test_agent_log_count (env->agent, "answered from the kept image") > 0);
  ota_test_app_report (env, "burning", 50, 0, "");
  ota_test_app_report (env, "done", -1, 0, "");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, DONE_2_0, OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_cmpuint (terminal_reports (env), ==, 1);
}

static void
test_ready_app_crash_reoffer_from_file (OtaTestEnv *env, gconstpointer data)
{
  ready_app_crash_reoffer_from_file (env, FALSE);
}

static void
test_ready_agent_restart_reoffer_from_file (OtaTestEnv *env, gconstpointer data)
{
  ready_app_crash_reoffer_from_file (env, TRUE);
}

/* A kept image changed on disk (same size, one byte) is not announced:
 * it is downloaded again. */
static void
test_ready_kept_image_changed_is_downloaded (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  g_autofree char *bytes = NULL;
  gsize length = 0;
  guint requests;

  cycle_to_ready (env, &c);
  requests = ota_test_cloud_tool_requests (c.tool);
  agent_restarts_app_too (env);
  g_assert_true (g_file_get_contents (bin, &bytes, &length, NULL));
  bytes[length / 2] ^= 0x5a;
  g_assert_true (g_file_set_contents (bin, bytes, (gssize) length, NULL));
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (ota_test_cloud_tool_requests (c.tool), >, requests);
  g_assert_true (ota_test_agent_log_count (env->agent, "is not the verified one") > 0);
  g_clear_pointer (&bytes, g_free);
  g_assert_true (g_file_get_contents (bin, &bytes, &length, NULL));
  g_assert_cmpuint (length, ==, c.image.size);
  {
    g_autofree char *md5 = g_compute_checksum_for_data (G_CHECKSUM_MD5, (const guchar *) bytes, length);
    g_assert_cmpstr (md5, ==, c.image.md5);
  }
}

/* ---- offers that are ignored say why ---- */

static void
test_ignored_offer_says_why (OtaTestEnv *env, gconstpointer data)
{
  g_auto (Cycle) c = { 0 };
  g_autofree char *offer = ota_test_offer_json ("", "3.0", "http://127.0.0.1:9/x.bin",
                                                "0123456789abcdef0123456789abcdef", 1000);

  cycle_to_burning (env, &c);
  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
  ota_test_spin (500);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "offer of 3.0 ignored: "), ==, 1);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "is burning 2.0"), ==, 1);
  assert_state (env, "burning");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn)                                                                                               \
  g_test_add ("/module-states/" path, OtaTestEnv, fast, ota_test_env_setup, fn, ota_test_env_teardown)
  ADD ("burning/exit-in-callback-mv-reboot-at-target-reports-done", test_burning_exit_mv_reboot_reports_done);
  ADD ("burning/app-crash-old-version-fails-then-reoffer", test_burning_app_crash_old_version_fails_then_reoffer);
  ADD ("burning/agent-restart-target-reports-done", test_burning_agent_restart_target_reports_done);
  ADD ("burning/agent-restart-old-version-fails-then-reoffer", test_burning_agent_restart_old_version_fails);
  ADD ("burning/same-owner-init-at-target-reports-done", test_burning_same_owner_init_at_target_done);
  ADD ("burning/same-owner-repeated-init-goes-on-rebooting-settles", test_same_owner_repeated_init);
  ADD ("agent-restart/same-app-burning-goes-on", test_same_app_burning_goes_on_after_agent_restart);
  ADD ("agent-restart/same-app-rebooting-goes-on", test_same_app_rebooting_survives_agent_restart);
  ADD ("agent-restart/same-app-ready-goes-on-without-download", test_same_app_ready_goes_on_after_agent_restart);
  ADD ("ready/app-crash-reoffer-answered-from-file", test_ready_app_crash_reoffer_from_file);
  ADD ("ready/agent-restart-reoffer-answered-from-file", test_ready_agent_restart_reoffer_from_file);
  ADD ("ready/kept-image-changed-is-downloaded-again", test_ready_kept_image_changed_is_downloaded);
  ADD ("ignored-offer/says-why-at-info", test_ignored_offer_says_why);
  return g_test_run ();
}
