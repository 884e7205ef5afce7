/* Downloads end to end (docs/downloads.md): the real agent fetches an image from
 * iv-ota-cloud (the cloud stand-in, with its HTTP faults), reports on the wire,
 * resumes after cuts, stalls, cancels and a SIGKILL, and stays responsive. */
#include "harness.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define FW_SIZE (6 * MIB)
#define CHECKPOINT_BYTES 262144
#define REPORT_VERSION(v) "{\"type\":\"report_version\",\"report\":{\"version\":\"" v "\"}}"
#define PROGRESS(state_fields) \
  "{\"type\":\"report_progress\",\"report\":{\"progress\":{" state_fields "},\"version\":\"2.0\"}}"
#define DONE_REPORT PROGRESS ("\"state\":\"done\",\"result_code\":\"0\",\"result_msg\":\"\"")

/* retry_interval=1: a failed or cancelled offer comes back quickly. */
static const char *fast = "checkpoint_bytes=262144\nmax_retries=5\nstall_timeout=2\nretry_interval=1\n"
                          "report_interval=600\n";
/* retry_interval=60: a failed offer is not tried again while the test looks. */
static const char *no_second_cycle = "checkpoint_bytes=262144\nmax_retries=5\nstall_timeout=2\nretry_interval=60\n"
                                     "report_interval=600\n";
static const char *two_retries = "checkpoint_bytes=262144\nmax_retries=2\nstall_timeout=2\nretry_interval=60\n"
                                 "report_interval=600\n";
static const char *one_retry = "checkpoint_bytes=262144\nmax_retries=1\nstall_timeout=1\nretry_interval=60\n"
                               "report_interval=600\n";
static const char *small_max = "checkpoint_bytes=262144\nmax_firmware_size=1048576\nretry_interval=60\n"
                               "report_interval=600\n";

/* ---- helpers ---- */

/* Starts iv-ota-cloud offering @image as 2.0, with the NULL-terminated fault flags. */
static OtaTestCloudTool *
cloud_start (OtaTestEnv *env, const OtaTestImage *image, const char *const *args)
{
  return ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image->path, args);
}

static GVariant *
status_get (OtaTestEnv *env)
{
  g_autoptr (GError) error = NULL;
  GVariant *status = NULL;

  ota_dbus_ota_call_get_status_sync (env->proxy, "", &status, NULL, &error);
  g_assert_no_error (error);
  return status;
}

static void
assert_status (OtaTestEnv *env, const char *state, int result_code)
{
  g_autoptr (GVariant) status = status_get (env);
  const char *s = NULL;
  gint32 code = 0;

  g_assert_true (g_variant_lookup (status, "state", "&s", &s));
  g_assert_cmpstr (s, ==, state);
  g_assert_true (g_variant_lookup (status, "result_code", "i", &code));
  g_assert_cmpint (code, ==, result_code);
}

/* Progress(fail) with @code (and @msg unless NULL). Not GetStatus: the failed
 * cycle reports the version, the cloud offers again at once and the module
 * shows the next attempt (state "downloading", result reset) from then on. */
/* Progress(fail) with @code (and @msg unless NULL); the Modules property
 * said @kind as its fail_kind when the signal came. */
static void
assert_fail_signal (OtaTestEnv *env, int code, const char *msg, const char *kind)
{
  int idx = ota_test_signals_wait_state (env->signals, "", "fail", OTA_TEST_TIMEOUT_MS);
  const char *version, *got_msg;
  int got;

  g_assert_cmpint (idx, >=, 0);
  g_variant_get (g_ptr_array_index (env->signals->progress, idx), "(&s&s&sutti&s)", NULL, &version, NULL, NULL,
                 NULL, NULL, &got, &got_msg);
  g_assert_cmpstr (version, ==, "2.0");
  g_assert_cmpint (got, ==, code);
  if (msg != NULL)
    g_assert_cmpstr (got_msg, ==, msg);
  g_assert_cmpstr (ota_test_signals_last_fail_kind (env->signals), ==, kind);
}

/* FirmwareReady("", "2.0", fw_dir/FW_2.0.bin, size, md5), the image byte for
 * byte, no record left, GetStatus ready with every byte counted. */
static void
assert_ready (OtaTestEnv *env, const OtaTestImage *image)
{
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  g_autofree char *record = ota_test_fw_path (env, "json");
  g_autofree char *got = NULL;
  g_autofree char *want = NULL;
  g_autoptr (GVariant) status = NULL;
  const char *module, *version, *path, *md5, *state = NULL;
  gsize got_len = 0, want_len = 0;
  guint64 size, downloaded = 0, total = 0;

  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (env->signals->ready->len, ==, 1);
  g_variant_get (g_ptr_array_index (env->signals->ready, 0), "(&s&s&st&s)", &module, &version, &path, &size, &md5);
  g_assert_cmpstr (module, ==, "");
  g_assert_cmpstr (version, ==, "2.0");
  g_assert_cmpstr (path, ==, bin);
  g_assert_cmpuint (size, ==, image->size);
  g_assert_cmpstr (md5, ==, image->md5);
  g_assert_true (g_file_get_contents (bin, &got, &got_len, NULL));
  g_assert_true (g_file_get_contents (image->path, &want, &want_len, NULL));
  g_assert_cmpuint (got_len, ==, want_len);
  g_assert_true (memcmp (got, want, want_len) == 0);
  g_assert_false (g_file_test (record, G_FILE_TEST_EXISTS));
  status = status_get (env);
  g_assert_true (g_variant_lookup (status, "state", "&s", &state));
  g_assert_cmpstr (state, ==, "ready");
  g_assert_true (g_variant_lookup (status, "downloaded", "t", &downloaded));
  g_assert_true (g_variant_lookup (status, "total", "t", &total));
  g_assert_cmpuint (downloaded, ==, image->size);
  g_assert_cmpuint (total, ==, image->size);
}

/* Polls @cond every 50 ms: it needs no event on the main context to be true. */
static gboolean
poll_until (gboolean (*cond) (gpointer), gpointer data, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!cond (data)) {
    if (g_get_monotonic_time () > deadline)
      return FALSE;
    ota_test_spin (50);
  }
  return TRUE;
}

/* ---- what the HTTP server saw (ota_test_cloud_tool_responses ()) ---- */

static OtaTestResponse *
response_at (GArray *responses, guint i)
{
  g_assert_cmpuint (i, <, responses->len);
  return &g_array_index (responses, OtaTestResponse, i);
}

/* ---- reports on the broker ---- */

static JsonObject *
report_parse (JsonParser *parser, const char *text)
{
  g_assert_true (json_parser_load_from_data (parser, text, -1, NULL));
  g_assert_true (JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)));
  return json_node_get_object (json_parser_get_root (parser));
}

/* The progress object of a report_progress, NULL for another type. */
static JsonObject *
report_progress_of (JsonObject *root)
{
  if (g_strcmp0 (json_object_get_string_member_with_default (root, "type", ""), "report_progress") != 0)
    return NULL;
  return json_object_get_object_member (json_object_get_object_member (root, "report"), "progress");
}

static int
wait_fail_report (OtaTestEnv *env, const char *code)
{
  g_autofree char *needle = g_strdup_printf ("{\"state\":\"fail\",\"result_code\":\"%s\"", code);
  return ota_test_cloud_wait_report_containing (env->cloud, 0, needle, OTA_TEST_TIMEOUT_MS);
}

/* ---- 1. a clean download ---- */

static void
test_clean_download (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  gint64 started;
  guint64 elapsed_s, sent, downloading = 0, at_100 = 0;
  int last_downloading = -1, last_100 = -1;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, NULL);
  started = g_get_monotonic_time ();
  ota_test_app_init (env, "1.0");
  assert_ready (env, &image);
  elapsed_s = (guint64) (g_get_monotonic_time () - started) / G_USEC_PER_SEC;
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "downloading", 0), >=, 0);
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "ready", 0), >=, 0);

  /* The 100 % report is sent before FirmwareReady: give it time to cross the broker. */
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "\"percent\":\"100\"", OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  for (guint i = 0; i < env->cloud->reports->len; i++) {
    g_autoptr (JsonParser) parser = json_parser_new ();
    JsonObject *progress = report_progress_of (report_parse (parser, g_ptr_array_index (env->cloud->reports, i)));
    JsonNode *percent;

    if (progress == NULL || g_strcmp0 (json_object_get_string_member (progress, "state"), "downloading") != 0)
      continue;
    percent = json_object_get_member (progress, "percent");
    g_assert_nonnull (percent);
    g_assert_true (JSON_NODE_HOLDS_VALUE (percent));
    g_assert_cmpint (json_node_get_value_type (percent), ==, G_TYPE_STRING);
    g_assert_cmpint (json_node_get_value_type (json_object_get_member (progress, "result_code")), ==, G_TYPE_STRING);
    last_downloading = (int) i;
    if (g_str_equal (json_node_get_string (percent), "100")) {
      at_100++;
      last_100 = (int) i;
    } else {
      downloading++;
    }
  }
  /* progress_interval=1 s: at most one per started second, plus the one at 100. */
  g_assert_cmpuint (downloading, <=, elapsed_s + 1);
  g_assert_cmpuint (at_100, ==, 1);
  g_assert_cmpint (last_downloading, ==, last_100);

  sent = ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 1);
  g_assert_cmpint (response_at (responses, 0)->range_start, ==, -1);
  g_assert_cmpuint (response_at (responses, 0)->status, ==, 200);
  g_assert_cmpuint (sent, ==, image.size);
}

/* ---- 2. the rest of the cycle on the wire ---- */

static void
download_ready (OtaTestEnv *env, OtaTestImage *image, OtaTestCloudTool **tool, const char *const *args)
{
  ota_test_image_make (env, 2 * MIB, image);
  *tool = cloud_start (env, image, args);
  ota_test_app_init (env, "1.0");
  assert_ready (env, image);
}

static void
test_cycle_burning_done (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autofree char *version = NULL;
  int burning, done;

  download_ready (env, &image, &tool, NULL);
  ota_test_app_report (env, "burning", 50, 0, "");
  burning = ota_test_cloud_wait_report (
    env->cloud, 0, PROGRESS ("\"state\":\"burning\",\"percent\":\"50\",\"result_code\":\"0\",\"result_msg\":\"\""),
    OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (burning, >=, 0);
  assert_status (env, "burning", 0);
  ota_test_app_report (env, "done", 100, 0, "");
  done = ota_test_cloud_wait_report (env->cloud, (guint) burning + 1, DONE_REPORT, OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (done, >, burning);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) done + 1, REPORT_VERSION ("2.0"),
                                               OTA_TEST_TIMEOUT_MS),
                   >, done);
  assert_status (env, "done", 0);
  version = ota_test_status_get (env->proxy, "", "version");
  g_assert_cmpstr (version, ==, "2.0");
}

static void
test_cycle_fail (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  int burning, fail;

  download_ready (env, &image, &tool, NULL);
  ota_test_app_report (env, "burning", 10, 0, "");
  burning = ota_test_cloud_wait_report_containing (env->cloud, 0, "\"state\":\"burning\"", OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (burning, >=, 0);
  ota_test_app_report (env, "fail", -1, -5, "flash error");
  fail = ota_test_cloud_wait_report (
    env->cloud, (guint) burning + 1,
    PROGRESS ("\"state\":\"fail\",\"result_code\":\"-5\",\"result_msg\":\"flash error\""), OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (fail, >, burning);
  /* A failed cycle reports the installed version again: that drives the next offer. */
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) fail + 1, REPORT_VERSION ("1.0"),
                                               OTA_TEST_TIMEOUT_MS),
                   >, fail);
  assert_fail_signal (env, -5, "flash error", "app");
}

/* ready -> burning -> rebooting: the agent remembers it; nothing goes to the cloud. */
static int
cycle_to_rebooting (OtaTestEnv *env, OtaTestImage *image, OtaTestCloudTool **tool)
{
  int burning;

  download_ready (env, image, tool, NULL);
  ota_test_app_report (env, "burning", 100, 0, "");
  burning = ota_test_cloud_wait_report_containing (env->cloud, 0, "\"state\":\"burning\"", OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (burning, >=, 0);
  ota_test_app_report (env, "rebooting", -1, 0, "");
  assert_status (env, "rebooting", 0);
  return burning;
}

static void
test_rebooting_then_done (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GError) error = NULL;
  int burning = cycle_to_rebooting (env, &image, &tool);
  int version;

  ota_dbus_ota_call_exit_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  ota_test_app_init (env, "2.0");
  version = ota_test_cloud_wait_report (env->cloud, (guint) burning + 1, REPORT_VERSION ("2.0"), OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (version, >=, 0);
  /* Exactly done, then the version: "rebooting" itself never reached the cloud. */
  g_assert_cmpint (version, ==, burning + 2);
  g_assert_cmpstr (g_ptr_array_index (env->cloud->reports, burning + 1), ==, DONE_REPORT);
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "rebooting"), ==, 0);
  assert_status (env, "done", 0);
}

/* The marker survives the agent itself: a real reboot restarts both. */
static void
test_rebooting_then_other_version (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *root;
  int burning = cycle_to_rebooting (env, &image, &tool);
  int fail;

  ota_test_agent_stop (env->agent);
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
  ota_test_app_init (env, "1.0");
  fail = wait_fail_report (env, "-5");
  g_assert_cmpint (fail, >, burning);
  root = report_parse (parser, g_ptr_array_index (env->cloud->reports, fail));
  /* The report names the target it failed to reach. */
  g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (root, "report"), "version"), ==,
                   "2.0");
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "rebooting"), ==, 0);
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"done\""), ==, 0);
  assert_fail_signal (env, -5, "version after reboot is 1.0, expected 2.0", "version");
}

/* ---- 3. task_id ---- */

static void
test_task_id_echoed (OtaTestEnv *env, gconstpointer data)
{
  const char *args[] = { "--task-id=T42", NULL };
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autofree char *task = NULL;
  guint progress_reports = 0;

  download_ready (env, &image, &tool, args);
  ota_test_app_report (env, "burning", 30, 0, "");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "\"state\":\"burning\"", OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  task = ota_test_status_get (env->proxy, "", "task_id");
  g_assert_cmpstr (task, ==, "T42");
  for (guint i = 0; i < env->cloud->reports->len; i++) {
    g_autoptr (JsonParser) parser = json_parser_new ();
    JsonObject *root = report_parse (parser, g_ptr_array_index (env->cloud->reports, i));
    JsonObject *report = json_object_get_object_member (root, "report");

    if (report_progress_of (root) == NULL) {
      g_assert_false (json_object_has_member (report, "task_id"));
      continue;
    }
    progress_reports++;
    g_assert_cmpstr (json_object_get_string_member_with_default (report, "task_id", "(none)"), ==, "T42");
  }
  /* At least a downloading report, the one at 100 and burning. */
  g_assert_cmpuint (progress_reports, >=, 3);
}

/* ---- 4. faults ---- */

/* The download completes; returns the body bytes the server sent in all. */
static guint64
fault_completes (OtaTestEnv *env, const OtaTestImage *image, OtaTestCloudTool *tool)
{
  ota_test_app_init (env, "1.0");
  assert_ready (env, image);
  return ota_test_cloud_tool_stop (tool);
}

static void
test_cut_once (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *cut = g_strdup_printf ("--cut-after=%d", FW_SIZE * 2 / 5);
  const char *args[] = { cut, "--cut-once", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  guint64 sent;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  sent = fault_completes (env, &image, tool);
  g_assert_cmpuint (sent, >=, image.size);
  g_assert_cmpuint (sent, <=, image.size + CHECKPOINT_BYTES);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  /* Resumed where the cut left it, within this attempt: not even the checkpoint is lost. */
  g_assert_cmpint (response_at (responses, 1)->range_start, ==, FW_SIZE * 2 / 5);
  g_assert_cmpuint (response_at (responses, 1)->status, ==, 206);
}

/* Every response is cut after a quarter of the image: each retry brings a
 * quarter more, so 3 retries (of max_retries=5) finish it. */
static void
test_cut_every_response (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *cut = g_strdup_printf ("--cut-after=%d", FW_SIZE / 4);
  const char *args[] = { cut, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  guint64 sent;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  sent = fault_completes (env, &image, tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 4);
  for (guint i = 1; i < responses->len; i++) {
    g_assert_cmpint (response_at (responses, i)->range_start, ==, (gint64) i * (FW_SIZE / 4));
    g_assert_cmpuint (response_at (responses, i)->status, ==, 206);
  }
  g_assert_cmpuint (sent, >=, image.size);
  g_assert_cmpuint (sent, <=, image.size + CHECKPOINT_BYTES * (responses->len - 1));
}

static gboolean
agent_log_has_retry_wait (gpointer data)
{
  return ota_test_agent_log_count (data, "trying again in") > 0;
}

static void
fault_fails (OtaTestEnv *env, const char *const *args, const char *code, const char *kind, guint requests)
{
  g_autofree char *state = NULL;
  g_autofree char *result = NULL;
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;

  ota_test_image_make (env, 2 * MIB, &image);
  tool = cloud_start (env, &image, args);
  ota_test_app_init (env, "1.0");
  g_assert_cmpint (wait_fail_report (env, code), >=, 0);
  assert_fail_signal (env, (int) g_ascii_strtoll (code, NULL, 10), NULL, kind);
  g_assert_cmpuint (env->signals->ready->len, ==, 0);
  /* The cloud re-offers at once; the next attempt waits for retry_interval and
   * meanwhile GetStatus still tells the failure. */
  g_assert_true (ota_test_wait (agent_log_has_retry_wait, env->agent, OTA_TEST_TIMEOUT_MS));
  state = ota_test_status_get (env->proxy, "", "state");
  result = ota_test_status_get (env->proxy, "", "result_code");
  g_assert_cmpstr (state, ==, "fail");
  g_assert_cmpstr (result, ==, code);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, requests);
}

static void
test_status_404 (OtaTestEnv *env, gconstpointer data)
{
  const char *args[] = { "--status=404", NULL };

  /* No retry loop: one request, -2 at once. */
  fault_fails (env, args, "-2", "not-found", 1);
}

static void
test_status_403 (OtaTestEnv *env, gconstpointer data)
{
  const char *args[] = { "--status=403", NULL };

  fault_fails (env, args, "-3", "forbidden", 1);
}

static void
test_status_500_twice (OtaTestEnv *env, gconstpointer data)
{
  const char *args[] = { "--status=500", "--status-count=2", NULL };
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;

  ota_test_image_make (env, 2 * MIB, &image);
  tool = cloud_start (env, &image, args);
  g_assert_cmpuint (fault_completes (env, &image, tool), ==, image.size);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 3);
  g_assert_cmpuint (response_at (responses, 0)->status, ==, 500);
  g_assert_cmpuint (response_at (responses, 1)->status, ==, 500);
  g_assert_cmpuint (response_at (responses, 2)->status, ==, 200);
}

static void
test_status_500_always (OtaTestEnv *env, gconstpointer data)
{
  const char *args[] = { "--status=500", NULL };

  /* max_retries=2: the first request and two retries. */
  fault_fails (env, args, "-5", "http", 3);
}

static void
test_stall_once (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *stall = g_strdup_printf ("--stall-after=%d", FW_SIZE * 2 / 5);
  const char *args[] = { stall, "--stall-once", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  guint64 sent;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  sent = fault_completes (env, &image, tool);
  g_assert_cmpuint (sent, <=, image.size + CHECKPOINT_BYTES);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  g_assert_cmpint (response_at (responses, 1)->range_start, ==, FW_SIZE * 2 / 5);
}

/* Every response stalls: once the retries are used up the cycle fails as a timeout. */
static void
test_stall_always_times_out (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *stall = g_strdup_printf ("--stall-after=%d", MIB / 4);
  const char *args[] = { stall, NULL };

  /* max_retries=1: the first request and one retry, each given up after stall_timeout. */
  fault_fails (env, args, "-1", "timeout", 2);
}

/* A 200 to a Range request: what we had is dropped and the body taken from byte 0. */
static void
test_ignore_range_restarts (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *cut = g_strdup_printf ("--cut-after=%d", FW_SIZE * 2 / 5);
  const char *args[] = { cut, "--cut-once", "--ignore-range", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  guint64 sent;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  sent = fault_completes (env, &image, tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  g_assert_cmpint (response_at (responses, 1)->range_start, ==, FW_SIZE * 2 / 5);
  g_assert_cmpuint (response_at (responses, 1)->status, ==, 200);
  g_assert_cmpuint (response_at (responses, 1)->sent, ==, image.size);
  g_assert_cmpuint (sent, ==, FW_SIZE * 2 / 5 + image.size);
}

/* A 206 for other bytes than asked: never spliced in; the file still comes out right. */
static void
test_bad_content_range (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *cut = g_strdup_printf ("--cut-after=%d", FW_SIZE * 2 / 5);
  const char *args[] = { cut, "--cut-once", "--bad-content-range", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  fault_completes (env, &image, tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, >=, 3);
  g_assert_cmpint (response_at (responses, 1)->range_start, ==, FW_SIZE * 2 / 5);
  g_assert_cmpuint (response_at (responses, 1)->status, ==, 206);
  /* Whatever the downloader chose after it, the last body was the whole image. */
  g_assert_cmpint (response_at (responses, responses->len - 1)->range_start, ==, -1);
  g_assert_cmpuint (response_at (responses, responses->len - 1)->status, ==, 200);
}

static void
test_wrong_md5 (OtaTestEnv *env, gconstpointer data)
{
  const char *args[] = { "--md5=0123456789abcdef0123456789abcdef", NULL };
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  g_autofree char *record = ota_test_fw_path (env, "json");

  fault_fails (env, args, "-4", "checksum", 1);
  g_assert_false (g_file_test (bin, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (record, G_FILE_TEST_EXISTS));
}

/* file_size over max_firmware_size: the offer never becomes a download, and
 * the cloud hears why (fail -5 with the sizes). */
static void
test_max_firmware_size (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  int fail;

  ota_test_image_make (env, 2 * MIB, &image);
  tool = cloud_start (env, &image, NULL);
  ota_test_app_init (env, "1.0");
  fail = wait_fail_report (env, "-5");
  g_assert_cmpint (fail, >=, 0);
  g_assert_nonnull (strstr (g_ptr_array_index (env->cloud->reports, fail),
                            "\"result_msg\":\"file_size 2097152 exceeds max_firmware_size 1048576\""));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "cloud message rejected"), >, 0);
  assert_status (env, "fail", -5);
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "fail", OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_cmpstr (ota_test_signals_last_fail_kind (env->signals), ==, "size");
  g_assert_cmpuint (env->signals->offered->len, ==, 0);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 0);
  g_assert_false (g_file_test (bin, G_FILE_TEST_EXISTS));
  /* The cloud's immediate re-offer waits retry_interval (60 s): no loop of failures. */
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"fail\""), ==, 1);
}

/* ---- 5. the agent killed half way ---- */

typedef struct {
  OtaTestEnv *env;
  guint64 at_least;
} RecordWait;

#define SLOW_RATE (2 * MIB)

static void
test_resume_after_kill (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", SLOW_RATE);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  gint64 checkpoint;
  guint64 sent;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait_downloaded (env, FW_SIZE / 2, OTA_TEST_TIMEOUT_MS));
  ota_test_agent_kill (env->agent);
  checkpoint = ota_test_record_downloaded (env);
  g_assert_cmpint (checkpoint, >, 0);
  g_assert_cmpint (checkpoint, <, FW_SIZE);

  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
  ota_test_app_init (env, "1.0");
  assert_ready (env, &image);
  sent = ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  /* The new agent asked for the rest from its checkpoint, and got exactly that. */
  g_assert_cmpint (response_at (responses, 1)->range_start, ==, checkpoint);
  g_assert_cmpuint (response_at (responses, 1)->status, ==, 206);
  g_assert_cmpuint (response_at (responses, 1)->sent, ==, FW_SIZE - (guint64) checkpoint);
  /* Lost is what the killed agent had received but not checkpointed. A
   * checkpoint is taken when a buffer has been written, once checkpoint_bytes
   * or one second have passed since the last one; on a slow link a buffer is
   * handed over every 200 ms. So at most checkpoint_bytes plus one buffer
   * (rate * 0.2 s) were written unsynced, plus the buffer being filled
   * (rate * 0.2 s) and the server's chunk in flight (rate / 20). Were the
   * two conditions ANDed, it would be max (checkpoint_bytes, rate * 1.2 s)
   * + rate * 0.25 s: checkpoint_bytes + rate * 1.5 s bounds both. */
  g_assert_cmpuint (sent, <=, image.size + CHECKPOINT_BYTES + SLOW_RATE * 3 / 2);
}

/* ---- 6. Cancel, then CheckNow ---- */

static gboolean
record_covers (gpointer data)
{
  RecordWait *w = data;
  return ota_test_record_downloaded (w->env) >= (gint64) w->at_least;
}

static void
test_resume_after_cancel (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", SLOW_RATE);
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  g_autoptr (GError) error = NULL;
  RecordWait at_cancel = { env, 0 };
  gint64 checkpoint;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait_downloaded (env, FW_SIZE / 4, OTA_TEST_TIMEOUT_MS));
  ota_dbus_ota_call_cancel_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  assert_status (env, "idle", 0);
  at_cancel.at_least = ota_test_status_downloaded (env);
  g_assert_cmpuint (at_cancel.at_least, >=, FW_SIZE / 4);
  /* The last buffers are written and checkpointed after the call returns:
   * the record ends up covering at least every byte counted so far. */
  g_assert_true (poll_until (record_covers, &at_cancel, OTA_TEST_TIMEOUT_MS));
  g_assert_true (g_file_test (bin, G_FILE_TEST_IS_REGULAR));
  checkpoint = ota_test_record_downloaded (env);
  g_assert_cmpint (checkpoint, <, FW_SIZE);
  ota_test_spin (200);
  assert_status (env, "idle", 0);
  g_assert_cmpuint (env->signals->ready->len, ==, 0);

  ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  assert_ready (env, &image);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  /* The flush may still have moved the record on after we read it. */
  g_assert_cmpint (response_at (responses, 1)->range_start, >=, checkpoint);
  g_assert_cmpuint (response_at (responses, 1)->status, ==, 206);
}

/* The re-offer's download starts while the cancelled one may still be
 * flushing its last buffers to the same files: they must not interleave. */
static void
test_cancel_then_check_now_at_once (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", SLOW_RATE);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  g_autoptr (GError) error = NULL;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = cloud_start (env, &image, args);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait_downloaded (env, FW_SIZE / 4, OTA_TEST_TIMEOUT_MS));
  ota_dbus_ota_call_cancel_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  assert_ready (env, &image);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  g_assert_cmpuint (response_at (responses, 1)->status, ==, 206);
}

/* ---- 7. D-Bus stays answered while a big image streams in ---- */

/* Unthrottled, loopback brings 64 MiB in about 0.1 s: too short to be sure
 * that 20 round trips fit inside. 32 MiB/s still keeps the reader and the
 * worker busy (a buffer every 16 ms) for 2 s; an agent that read, wrote or
 * hashed on its main loop until the end would answer "verifying" or "ready". */
#define BUSY_RATE (32 * MIB)

static void
test_responsive_during_download (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", BUSY_RATE);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  guint answered_downloading = 0;

  ota_test_image_make (env, 64 * MIB, &image);
  tool = cloud_start (env, &image, args);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait_downloaded (env, 1, OTA_TEST_TIMEOUT_MS));
  for (guint i = 0; i < 20; i++) {
    /* status_get() asserts that the call succeeded. */
    g_autoptr (GVariant) status = status_get (env);
    const char *state = NULL;

    g_assert_true (g_variant_lookup (status, "state", "&s", &state));
    answered_downloading += g_str_equal (state, "downloading");
  }
  g_test_message ("%u of 20 GetStatus answered while downloading", answered_downloading);
  g_assert_cmpuint (answered_downloading, ==, 20);
  assert_ready (env, &image);
}

/* ---- 8. what is handed over is what was hashed ---- */

/* A local process tampers with the partial image while the agent writes it
 * (the tests run as root, like an app that could write the file: an app of
 * another uid cannot, see test-dir-ownership.sh). The agent must notice before
 * FirmwareReady, fail the cycle with -5 saying so, and remove its files, but
 * never a file that the app put under the image's name. */
typedef struct {
  const char *keys;  /* the agent's [ota] keys, for ota_test_env_setup () */
  void (*tamper) (const char *bin);
  gboolean foreign_file_stays; /* a 1000-byte file of the app's took the name */
} TamperCase;

#define TAMPER_SIZE (8 * MIB)

static void
tamper_truncate (const char *bin)
{
  /* The agent goes on writing where it was: 40 % of zeros, a hole. */
  g_assert_cmpint (truncate (bin, 0), ==, 0);
}

static void
tamper_delete (const char *bin)
{
  g_assert_cmpint (g_unlink (bin), ==, 0);
}

static void
tamper_replace (const char *bin)
{
  g_autofree char *other = g_strconcat (bin, ".app", NULL);
  g_autofree char *junk = g_strnfill (1000, 'x');

  g_assert_true (g_file_set_contents (other, junk, 1000, NULL));
  g_assert_cmpint (g_rename (other, bin), ==, 0);
}

static void
tamper_overwrite_middle (const char *bin)
{
  g_autofree char *junk = g_strnfill (65536, '\xa5');
  int fd = open (bin, O_WRONLY | O_CLOEXEC);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, junk, 65536, TAMPER_SIZE / 5), ==, 65536);
  close (fd);
}

static void
tamper_append (const char *bin)
{
  g_autofree char *junk = g_malloc0 (MIB);
  int fd = open (bin, O_WRONLY | O_APPEND | O_CLOEXEC);

  g_assert_cmpint (fd, >=, 0);
  for (guint i = 0; i < 40; i++)
    g_assert_cmpint (write (fd, junk, MIB), ==, MIB);
  close (fd);
}

static void
tamper_setup (OtaTestEnv *env, gconstpointer data)
{
  ota_test_env_setup (env, ((const TamperCase *) data)->keys);
}

static void
test_tampered_image_is_not_handed_over (OtaTestEnv *env, gconstpointer data)
{
  const TamperCase *tc = data;
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", SLOW_RATE);
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  g_autofree char *record = ota_test_fw_path (env, "json");
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  int idx;
  const char *msg;
  int code;

  ota_test_image_make (env, TAMPER_SIZE, &image);
  tool = cloud_start (env, &image, args);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait_downloaded (env, TAMPER_SIZE * 2 / 5, OTA_TEST_TIMEOUT_MS));
  tc->tamper (bin);
  idx = ota_test_signals_wait_state (env->signals, "", "fail", OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (idx, >=, 0);
  g_variant_get (g_ptr_array_index (env->signals->progress, idx), "(&s&s&sutti&s)", NULL, NULL, NULL, NULL, NULL,
                 NULL, &code, &msg);
  g_test_message ("fail %d: %s", code, msg);
  g_assert_cmpint (code, ==, -5);
  g_assert_nonnull (strstr (msg, "tampered with"));
  g_assert_cmpint (wait_fail_report (env, "-5"), >=, 0);
  g_assert_cmpuint (env->signals->ready->len, ==, 0);
  g_assert_false (g_file_test (record, G_FILE_TEST_EXISTS));
  if (tc->foreign_file_stays) {
    g_autofree char *content = NULL;
    gsize length = 0;

    g_assert_true (g_file_get_contents (bin, &content, &length, NULL));
    g_assert_cmpuint (length, ==, 1000);
  } else {
    g_assert_false (g_file_test (bin, G_FILE_TEST_EXISTS));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn, cfg) \
  g_test_add ("/downloads/" path, OtaTestEnv, cfg, ota_test_env_setup, fn, ota_test_env_teardown)
  ADD ("clean/ready-file-and-reports", test_clean_download, fast);
  ADD ("cycle/burning-then-done-on-the-wire", test_cycle_burning_done, fast);
  ADD ("cycle/fail-on-the-wire", test_cycle_fail, no_second_cycle);
  ADD ("cycle/rebooting-then-target-version-is-done", test_rebooting_then_done, fast);
  ADD ("cycle/rebooting-then-other-version-fails", test_rebooting_then_other_version, no_second_cycle);
  ADD ("task-id/echoed-in-progress-reports", test_task_id_echoed, fast);
  ADD ("fault/cut-once-resumes", test_cut_once, fast);
  ADD ("fault/cut-every-response-resumes", test_cut_every_response, fast);
  ADD ("fault/404-fails-not-found", test_status_404, no_second_cycle);
  ADD ("fault/403-fails-expired", test_status_403, no_second_cycle);
  ADD ("fault/500-twice-is-retried", test_status_500_twice, fast);
  ADD ("fault/500-always-gives-up", test_status_500_always, two_retries);
  ADD ("fault/stall-once-resumes", test_stall_once, fast);
  ADD ("fault/stall-always-fails-as-timeout", test_stall_always_times_out, one_retry);
  ADD ("fault/ignored-range-restarts-from-zero", test_ignore_range_restarts, fast);
  ADD ("fault/bad-content-range-never-spliced", test_bad_content_range, fast);
  ADD ("fault/wrong-md5-deletes-files", test_wrong_md5, no_second_cycle);
  ADD ("limit/max-firmware-size-rejects-offer", test_max_firmware_size, small_max);
  ADD ("resume/after-agent-sigkill", test_resume_after_kill, fast);
  ADD ("resume/after-cancel-and-check-now", test_resume_after_cancel, fast);
  ADD ("resume/cancel-then-check-now-at-once", test_cancel_then_check_now_at_once, fast);
  ADD ("responsive/get-status-during-download", test_responsive_during_download, fast);
  {
    static const TamperCase cases[] = {
      { NULL, tamper_truncate, FALSE },        { NULL, tamper_delete, FALSE }, { NULL, tamper_replace, TRUE },
      { NULL, tamper_overwrite_middle, FALSE }, { NULL, tamper_append, FALSE },
    };
    static const char *const names[] = { "truncated-to-a-40-percent-hole", "deleted", "replaced-by-mv-1000-bytes",
                                         "overwritten-in-the-middle", "appended-40-mib" };
    static TamperCase with_keys[G_N_ELEMENTS (cases)];

    for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
      g_autofree char *path = g_strdup_printf ("/downloads/handover/%s-is-not-handed-over", names[i]);

      with_keys[i] = cases[i];
      with_keys[i].keys = no_second_cycle;
      g_test_add (path, OtaTestEnv, &with_keys[i], tamper_setup, test_tampered_image_is_not_handed_over,
                  ota_test_env_teardown);
    }
  }
  return g_test_run ();
}
