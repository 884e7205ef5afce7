/* Fault suite (issue 6): the real agent, broker and iv-ota-cloud, with the
 * agent SIGKILLed at random points of a download and of the burning/done
 * reports, and a damaged resume record.
 *
 * The report rule asserted for the kill loop: the sequence of burning/done/
 * fail reports seen on the broker, after collapsing runs of byte-identical
 * consecutive reports, must equal exactly what the app reported, in order.
 * QoS 1 is at-least-once: a report published but not yet acknowledged when
 * the agent dies stays in the persisted outbox and is sent again by the next
 * agent, so an exact duplicate of the last in-flight report may appear, but
 * only immediately after itself (no other burning/done/fail report between);
 * anything else (a loss, a reordering, a duplicate after a later report) fails. */
#include "harness.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define KILL_FW_SIZE (4 * MIB)
#define KILL_RATE (1 * MIB)
#define MIN_KILLS 20
#define DOWNLOAD_KILLS 25

static const char *fast = "checkpoint_bytes=65536\nmax_retries=5\nstall_timeout=2\nretry_interval=1\n"
                          "report_interval=600\n";

/* The file in the firmware dir is the image byte for byte, and the last
 * FirmwareReady (if this connection saw one) names it. */
static void
assert_file_identical (OtaTestEnv *env, const OtaTestImage *image)
{
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  g_autofree char *got = NULL;
  g_autofree char *want = NULL;
  gsize got_len = 0, want_len = 0;
  const char *version, *path, *md5;
  guint64 size;

  if (env->signals->ready->len > 0)
    g_variant_get (g_ptr_array_index (env->signals->ready, env->signals->ready->len - 1), "(&s&s&st&s)", NULL,
                   &version, &path, &size, &md5);
  if (env->signals->ready->len > 0) {
    g_assert_cmpstr (version, ==, "2.0");
    g_assert_cmpstr (path, ==, bin);
    g_assert_cmpuint (size, ==, image->size);
    g_assert_cmpstr (md5, ==, image->md5);
  }
  g_assert_true (g_file_get_contents (bin, &got, &got_len, NULL));
  g_assert_true (g_file_get_contents (image->path, &want, &want_len, NULL));
  g_assert_cmpuint (got_len, ==, want_len);
  g_assert_true (memcmp (got, want, want_len) == 0);
}

static void
agent_restart (OtaTestEnv *env)
{
  ota_test_agent_kill (env->agent);
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
}

/* The agent dies and comes back while the app keeps running: the app
 * registers again on the same connection, as libiv-ota does, and its cycle
 * goes on in the state the agent persisted. */
static void
agent_restart_app_stays (OtaTestEnv *env, const char *version, const char *state)
{
  g_autofree char *now = NULL;

  ota_test_agent_kill (env->agent);
  ota_test_agent_start (env->agent);
  g_assert_true (ota_test_wait (ota_test_proxy_has_owner, env->proxy, OTA_TEST_TIMEOUT_MS));
  ota_test_app_init (env, version);
  now = ota_test_status_get (env->proxy, "", "state");
  g_assert_cmpstr (now, ==, state);
}

/* The burning/done/fail reports on the broker, in order. */
static GPtrArray *
final_state_reports (OtaTestEnv *env)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < env->cloud->reports->len; i++) {
    const char *r = g_ptr_array_index (env->cloud->reports, i);
    if (strstr (r, "\"report_progress\"") == NULL)
      continue;
    if (strstr (r, "\"state\":\"burning\"") != NULL || strstr (r, "\"state\":\"done\"") != NULL ||
        strstr (r, "\"state\":\"fail\"") != NULL)
      g_ptr_array_add (out, g_strdup (r));
  }
  return out;
}

/* ---- 1. the agent SIGKILLed at random points ---- */

static void
test_agent_killed_at_random (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  /* An emulated agent restarts that much slower: the download is stretched
   * alike, so that as many kills land in it. */
  g_autofree char *rate = g_strdup_printf ("--rate=%u", KILL_RATE / ota_test_time_scale ());
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GPtrArray) seen = NULL;
  g_autoptr (GPtrArray) collapsed = g_ptr_array_new ();
  guint kills = 0, download_kills = 0, report_kills = 0, duplicates = 0;
  const char *expected[] = { "\"state\":\"burning\",\"percent\":\"30\"", "\"state\":\"burning\",\"percent\":\"60\"",
                             "\"state\":\"done\"" };

  ota_test_image_make (env, KILL_FW_SIZE, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_app_init (env, "1.0");

  /* The download: kill at a random moment, restart, re-Init, until ready or
   * DOWNLOAD_KILLS kills; then it is let finish. */
  while (download_kills < DOWNLOAD_KILLS) {
    guint delay = (guint) g_test_rand_int_range (20, 300);

    ota_test_spin (delay);
    if (env->signals->ready->len > 0)
      break;
    agent_restart (env);
    kills++;
    download_kills++;
    ota_test_app_init (env, "1.0");
  }
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  assert_file_identical (env, &image);

  /* The reports: killed right after each one was accepted, at a random
   * moment within the next 100 ms, so some are in flight. The app keeps
   * running and registers again: its burning goes on. */
  ota_test_app_report (env, "burning", 30, 0, "");
  ota_test_spin ((guint) g_test_rand_int_range (0, 100));
  agent_restart_app_stays (env, "1.0", "burning");
  kills++;
  report_kills++;
  ota_test_app_report (env, "burning", 60, 0, "");
  ota_test_spin ((guint) g_test_rand_int_range (0, 100));
  agent_restart_app_stays (env, "1.0", "burning");
  kills++;
  report_kills++;
  ota_test_app_report (env, "done", 100, 0, "");
  ota_test_spin ((guint) g_test_rand_int_range (0, 100));
  agent_restart (env);
  kills++;
  report_kills++;
  ota_test_app_init (env, "2.0");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "\"state\":\"done\"", OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  /* Whatever the last agent still had in flight: its outbox drains. */
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "\"report_version\",\"report\":{\"version\":\"2.0\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  ota_test_spin (500);
  assert_file_identical (env, &image);

  seen = final_state_reports (env);
  for (guint i = 0; i < seen->len; i++) {
    if (collapsed->len > 0 && g_str_equal (g_ptr_array_index (collapsed, collapsed->len - 1),
                                           g_ptr_array_index (seen, i))) {
      duplicates++;
      continue;
    }
    g_ptr_array_add (collapsed, g_ptr_array_index (seen, i));
  }
  for (guint i = 0; i < collapsed->len; i++)
    g_test_message ("final-state report %u: %s", i, (const char *) g_ptr_array_index (collapsed, i));
  g_assert_cmpuint (collapsed->len, ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_nonnull (strstr (g_ptr_array_index (collapsed, i), expected[i]));

  g_test_message ("agent SIGKILLed %u times (%u during the download, %u between reports), all survived; "
                  "%u immediately repeated report(s) (QoS 1 redelivery)",
                  kills, download_kills, report_kills, duplicates);
  g_assert_cmpuint (kills, >=, MIN_KILLS);
}

/* ---- 2. the app killed mid-flow ---- */

/* Number of HTTP responses of iv-ota-cloud to a Range request from a
 * non-zero offset, with 206. */
static guint
ranged_responses (OtaTestCloudTool *tool)
{
  g_autoptr (GArray) responses = ota_test_cloud_tool_responses (tool);
  guint n = 0;

  for (guint i = 0; i < responses->len; i++) {
    const OtaTestResponse *r = &g_array_index (responses, OtaTestResponse, i);
    if (r->range_start > 0 && r->status == 206)
      n++;
  }
  return n;
}

static void
test_app_killed_mid_download (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", KILL_RATE);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  GStatBuf st;
  g_autofree char *log = g_build_filename (env->dir, "app.log", NULL);
  const char *client = g_getenv ("OTA_TEST_CLIENT");
  char *argv[] = { (char *) client, "", "1.0", env->fw_dir, NULL };
  OtaTestProcess *app;
  gint64 deadline, kept;
  g_autoptr (GError) error = NULL;

  g_assert_nonnull (client);
  ota_test_image_make (env, KILL_FW_SIZE, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  app = ota_test_process_spawn (argv, NULL, log, NULL);
  deadline = g_get_monotonic_time () + OTA_TEST_TIMEOUT_MS * 1000LL;
  while (ota_test_record_downloaded (env) < MIB) {
    g_assert_cmpint (g_get_monotonic_time (), <, deadline);
    ota_test_spin (50);
  }
  ota_test_process_stop (app, SIGKILL);
  ota_test_process_free (app);
  ota_test_spin (500);
  /* The agent is still there, the partial download and its record are kept. */
  g_assert_true (ota_test_process_is_running (env->agent->proc));
  kept = ota_test_record_downloaded (env);
  g_assert_cmpint (kept, >, 0);
  g_assert_cmpint (kept, <, (gint64) image.size);
  g_assert_cmpint (g_stat (bin, &st), ==, 0);
  g_assert_cmpint (st.st_size, >=, kept);

  /* The module was released: another app may own it, and the re-offer resumes. */
  ota_test_init (env->proxy, "", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  assert_file_identical (env, &image);
  g_assert_cmpuint (ranged_responses (tool), >=, 1);
  g_assert_true (ota_test_process_is_running (env->agent->proc));
}

/* ---- 2b. the broker SIGKILLed during a download ---- */

/* The MQTT session dies (broker SIGKILLed) with a download at 25 %: the
 * download goes on over HTTP without a new request, the agent reconnects
 * when the broker is back, and the burning/done reports the app makes while
 * the broker is away reach the cloud exactly once, in order. */
static void
test_broker_killed_mid_download (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", KILL_RATE);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GPtrArray) seen = NULL;
  const char *expected[] = { "\"state\":\"burning\",\"percent\":\"50\"", "\"state\":\"done\"" };
  gint64 at_kill, deadline;

  ota_test_image_make (env, KILL_FW_SIZE, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_app_init (env, "1.0");
  deadline = g_get_monotonic_time () + OTA_TEST_TIMEOUT_MS * 1000LL;
  while ((at_kill = ota_test_record_downloaded (env)) < MIB) {
    g_assert_cmpint (g_get_monotonic_time (), <, deadline);
    ota_test_spin (50);
  }
  g_assert_cmpint (kill (env->broker->proc->pid, SIGKILL), ==, 0);
  ota_test_broker_stop (env->broker);
  g_assert_true (ota_test_env_wait_connected (env, FALSE, OTA_TEST_TIMEOUT_MS));

  /* Offline, the download goes on: the image completes and the app is told. */
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  assert_file_identical (env, &image);
  g_assert_false (ota_dbus_ota_get_connected (env->proxy));
  ota_test_app_report (env, "burning", 50, 0, "");
  ota_test_app_report (env, "done", 100, 0, "");
  seen = final_state_reports (env);
  g_assert_cmpuint (seen->len, ==, 0);
  g_clear_pointer (&seen, g_ptr_array_unref);

  ota_test_env_broker_restart_cloud_first (env);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "\"state\":\"done\"", OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0,
                                                          "\"report_version\",\"report\":{\"version\":\"2.0\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  seen = final_state_reports (env);
  g_assert_cmpuint (seen->len, ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_nonnull (strstr (g_ptr_array_index (seen, i), expected[i]));
  /* One HTTP request did it all: the MQTT outage never touched the download. */
  g_assert_cmpuint (ranged_responses (tool), ==, 0);
  g_assert_cmpuint (ota_test_cloud_tool_stop (tool), ==, image.size);
  g_test_message ("broker SIGKILLed at byte %" G_GINT64_FORMAT " of %" G_GSIZE_FORMAT
                  ": download finished offline, reports delivered once after the reconnect",
                  at_kill, image.size);
}

/* ---- 3. a full disk ---- */

static const char *no_second_cycle = "checkpoint_bytes=65536\nmax_retries=5\nstall_timeout=2\nretry_interval=60\n"
                                     "report_interval=600\n";

/* The tmpfs mounted by the running test, unmounted by its teardown (before
 * the environment's tree is removed). */
static char *tiny_mount;

static void
tiny_teardown (OtaTestEnv *env, gconstpointer data)
{
  if (tiny_mount != NULL) {
    if (umount2 (tiny_mount, MNT_DETACH) != 0)
      g_printerr ("umount %s: %s\n", tiny_mount, g_strerror (errno));
    g_clear_pointer (&tiny_mount, g_free);
  }
  ota_test_env_teardown (env, data);
}

/* Mounts a 2 MiB tmpfs at @dir (NULL: @env->dir/tiny); FALSE (test skipped) when not root or refused. */
static gboolean
tiny_mount_make (OtaTestEnv *env, const char *at)
{
  g_autofree char *dir = at != NULL ? g_strdup (at) : g_build_filename (env->dir, "tiny", NULL);

  if (geteuid () != 0) {
    g_test_skip ("a tmpfs can only be mounted as root");
    return FALSE;
  }
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  if (mount ("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0755") != 0) {
    g_autofree char *why = g_strdup_printf ("cannot mount a tmpfs (%s)", g_strerror (errno));
    g_test_skip (why);
    return FALSE;
  }
  tiny_mount = g_steal_pointer (&dir);
  return TRUE;
}

static void
test_full_disk_firmware_dir (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *state = NULL;
  const char *version, *msg;
  gint32 code;
  int idx;
  guint64 used = 0;
  g_autoptr (GDir) dir = NULL;
  const char *name;

  if (!tiny_mount_make (env, NULL))
    return;
  ota_test_image_make (env, 4 * MIB, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, NULL);
  ota_test_init (env->proxy, "", "1.0", tiny_mount, FALSE, &error);
  g_assert_no_error (error);

  idx = ota_test_signals_wait_state (env->signals, "", "fail", OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (idx, >=, 0);
  g_variant_get (g_ptr_array_index (env->signals->progress, idx), "(&s&s&sutti&s)", NULL, &version, NULL, NULL,
                 NULL, NULL, &code, &msg);
  g_test_message ("fail on a full disk: %d %s", code, msg);
  g_assert_cmpstr (version, ==, "2.0");
  g_assert_cmpint (code, ==, -5);
  g_assert_nonnull (strstr (msg, "space"));
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0,
                                                          "{\"state\":\"fail\",\"result_code\":\"-5\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  /* Nothing half-written is left on the small disk. */
  dir = g_dir_open (tiny_mount, 0, NULL);
  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (tiny_mount, name, NULL);
    GStatBuf st;
    g_assert_cmpint (g_stat (path, &st), ==, 0);
    g_test_message ("left on the tmpfs: %s (%" G_GUINT64_FORMAT " bytes)", name, (guint64) st.st_size);
    used += (guint64) st.st_size;
  }
  g_assert_cmpuint (used, <=, 2 * MIB);
  /* The agent keeps serving. */
  g_assert_true (ota_test_process_is_running (env->agent->proc));
  state = ota_test_status_get (env->proxy, "", "state");
  g_assert_nonnull (state);
}

static gboolean
file_reached (const char *path, goffset size)
{
  GStatBuf st;

  return g_stat (path, &st) == 0 && st.st_size >= size;
}

/* Fills the file system of @dir with a file @dir/hog until ENOSPC. */
static void
hog_fill (const char *dir)
{
  g_autofree char *hog = g_build_filename (dir, "hog", NULL);
  static const char block[4096];
  int fd = open (hog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ssize_t n;

  g_assert_cmpint (fd, >=, 0);
  do
    n = write (fd, block, sizeof block);
  while (n > 0);
  g_assert_cmpint (errno, ==, ENOSPC);
  close (fd);
}

/* The disk fills up while the download runs: fail -5 naming the cause, the
 * part downloaded so far and its record are kept; once space is back, the
 * next attempt resumes from the record. */
static void
test_full_disk_during_download (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", 512 * 1024);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *bin = NULL, *record = NULL, *hog = NULL, *got = NULL, *want = NULL;
  gsize got_len = 0, want_len = 0;
  const char *msg;
  gint32 code;
  int idx;

  if (!tiny_mount_make (env, NULL))
    return;
  bin = g_build_filename (tiny_mount, "FW_2.0.bin", NULL);
  record = g_build_filename (tiny_mount, "FW_2.0.json", NULL);
  hog = g_build_filename (tiny_mount, "hog", NULL);
  /* 1.5 MiB on a 2 MiB disk: passes the free space check made before the request. */
  ota_test_image_make (env, 3 * MIB / 2, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_init (env->proxy, "", "1.0", tiny_mount, FALSE, &error);
  g_assert_no_error (error);
  for (int i = 0; i < 200 && !file_reached (bin, 256 * 1024); i++)
    ota_test_spin (50);
  g_assert_true (file_reached (bin, 256 * 1024));
  hog_fill (tiny_mount);

  idx = ota_test_signals_wait_state (env->signals, "", "fail", OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (idx, >=, 0);
  g_variant_get (g_ptr_array_index (env->signals->progress, idx), "(&s&s&sutti&s)", NULL, NULL, NULL, NULL,
                 NULL, NULL, &code, &msg);
  g_test_message ("fail when the disk filled up: %d %s", code, msg);
  g_assert_cmpint (code, ==, -5);
  g_assert_nonnull (strstr (msg, g_strerror (ENOSPC)));
  g_assert_cmpstr (ota_test_signals_last_fail_kind (env->signals), ==, "no-space");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0,
                                                          "{\"state\":\"fail\",\"result_code\":\"-5\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  g_assert_true (file_reached (bin, 1));
  g_assert_true (g_file_test (record, G_FILE_TEST_IS_REGULAR));
  g_assert_true (ota_test_process_is_running (env->agent->proc));

  /* Space is back: the next attempt continues where the record says. */
  g_assert_cmpint (g_unlink (hog), ==, 0);
  ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  g_assert_true (g_file_get_contents (bin, &got, &got_len, NULL));
  g_assert_true (g_file_get_contents (image.path, &want, &want_len, NULL));
  g_assert_cmpmem (got, got_len, want, want_len);
  g_assert_false (g_file_test (record, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (ranged_responses (tool), ==, 1);
}

/* The state dir (outbox) on a full disk: reports are still sent while the
 * agent runs, kept in memory, with a warning. */
static void
test_full_disk_state_dir (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *filler = NULL;
  g_autofree char *offer = ota_test_offer_json ("", "2.0", "http://127.0.0.1:9/fw.bin",
                                                "0123456789abcdef0123456789abcdef", 1000);
  g_autofree char *chunk = g_malloc0 (64 * 1024);
  g_autoptr (GError) error = NULL;
  FILE *f;

  ota_test_agent_kill (env->agent);
  if (!tiny_mount_make (env, env->agent->state_dir))
    return;
  filler = g_build_filename (tiny_mount, "filler", NULL);
  f = fopen (filler, "w");
  g_assert_nonnull (f);
  while (fwrite (chunk, 1, 64 * 1024, f) == 64 * 1024 && fflush (f) == 0)
    ;
  fclose (f);
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
  ota_test_init (env->proxy, "", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "offered", OTA_TEST_TIMEOUT_MS), >=, 0);
  ota_dbus_ota_call_report_progress_sync (env->proxy, "", "fail", -1, -5, "disk-full-report", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0, "\"result_msg\":\"disk-full-report\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "report not persisted"), >=, 1);
  g_assert_true (ota_test_process_is_running (env->agent->proc));
}

/* "burning" is as durable as "rebooting": when the state dir cannot take
 * the record, the call fails (the app learns its report was not kept) and
 * the module stays ready; with room again, it is accepted and persisted. */
static void
test_full_disk_state_dir_refuses_burning (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *filler = NULL;
  g_autofree char *record = NULL;
  g_autofree char *state = NULL;
  g_autofree char *text = NULL;
  g_autofree char *chunk = g_malloc0 (4096);
  FILE *f;

  ota_test_agent_kill (env->agent);
  if (!tiny_mount_make (env, env->agent->state_dir))
    return;
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
  ota_test_image_make (env, MIB, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, NULL);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  filler = g_build_filename (tiny_mount, "filler", NULL);
  f = fopen (filler, "w");
  g_assert_nonnull (f);
  while (fwrite (chunk, 1, 4096, f) == 4096 && fflush (f) == 0)
    ;
  fclose (f);
  ota_dbus_ota_call_report_progress_sync (env->proxy, "", "burning", 0, 0, "", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Failed");
  g_assert_nonnull (strstr (error->message, "cannot remember the burning"));
  state = ota_test_status_get (env->proxy, "", "state");
  g_assert_cmpstr (state, ==, "ready");
  g_assert_cmpint (g_unlink (filler), ==, 0);
  ota_test_app_report (env, "burning", 0, 0, "");
  record = g_build_filename (env->agent->state_dir, "cycle.json", NULL);
  g_assert_true (g_file_get_contents (record, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"phase\":\"burning\""));
}

/* ---- 4. a damaged resume record ---- */

static void
record_damaged (OtaTestEnv *env, const char *garbage)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *rate = g_strdup_printf ("--rate=%d", KILL_RATE);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autofree char *record = ota_test_fw_path (env, "json");
  gint64 deadline;

  ota_test_image_make (env, KILL_FW_SIZE, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_app_init (env, "1.0");
  deadline = g_get_monotonic_time () + OTA_TEST_TIMEOUT_MS * 1000LL;
  while (ota_test_status_downloaded (env) < MIB || !g_file_test (record, G_FILE_TEST_EXISTS)) {
    g_assert_cmpint (g_get_monotonic_time (), <, deadline);
    ota_test_spin (50);
  }
  ota_test_agent_kill (env->agent);
  g_assert_true (g_file_set_contents (record, garbage, -1, NULL));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "starting over"), ==, 0);
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 3 * OTA_TEST_TIMEOUT_MS));
  assert_file_identical (env, &image);
  g_assert_false (g_file_test (record, G_FILE_TEST_EXISTS));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "starting over"), >=, 1);
  g_assert_true (ota_test_process_is_running (env->agent->proc));
}

static void
test_record_garbage (OtaTestEnv *env, gconstpointer data)
{
  record_damaged (env, "\x01\x02{\"version\":\"2.0\",\"downloaded_size\":");
}

static void
test_record_truncated (OtaTestEnv *env, gconstpointer data)
{
  record_damaged (env, "{\"version\":\"2.0\",\"downl");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn, cfg) g_test_add ("/faults/" path, OtaTestEnv, cfg, ota_test_env_setup, fn, ota_test_env_teardown)
  ADD ("agent-sigkill/random-points-download-and-reports", test_agent_killed_at_random, fast);
  ADD ("app-sigkill/module-released-download-resumes", test_app_killed_mid_download, fast);
  ADD ("broker-sigkill/download-finishes-reports-delivered-once", test_broker_killed_mid_download, fast);
  g_test_add ("/faults/full-disk/firmware-dir-fails-agent-serves", OtaTestEnv, no_second_cycle, ota_test_env_setup,
              test_full_disk_firmware_dir, tiny_teardown);
  g_test_add ("/faults/full-disk/fills-during-download-resumes-after", OtaTestEnv, no_second_cycle,
              ota_test_env_setup, test_full_disk_during_download, tiny_teardown);
  g_test_add ("/faults/full-disk/state-dir-refuses-burning-until-room", OtaTestEnv,
              "report_interval=600\nretry_interval=1\n", ota_test_env_setup, test_full_disk_state_dir_refuses_burning,
              tiny_teardown);
  g_test_add ("/faults/full-disk/state-dir-reports-sent-from-memory", OtaTestEnv,
              "report_interval=600\nretry_interval=1\n", ota_test_env_setup, test_full_disk_state_dir,
              tiny_teardown);
  ADD ("record/garbage-restarts-from-zero", test_record_garbage, fast);
  ADD ("record/truncated-restarts-from-zero", test_record_truncated, fast);
  return g_test_run ();
}
