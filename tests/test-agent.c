/* The agent end to end: version reports, offers, progress reports on the wire,
 * and the D-Bus interface as a client sees it. */
#include "harness.h"

#include "agent.h"

#include <glib/gstdio.h>
#include <limits.h>
#include <sys/wait.h>

#define REPORT_VERSION(v) "{\"type\":\"report_version\",\"report\":{\"version\":\"" v "\"}}"

static const char *fast_loop = "report_interval=600\nretry_interval=1\n";

static void
test_init_reports_version (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *owner = NULL;

  ota_test_init (env->proxy, "", "1.0.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0.0"), OTA_TEST_TIMEOUT_MS), >=, 0);
  owner = ota_test_status_get (env->proxy, "", "owner");
  g_assert_cmpstr (owner, ==, g_dbus_connection_get_unique_name (env->connection));
}

static void
test_init_module_reports_fw_type (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  ota_test_init (env->proxy, "mcu", "2.1", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0,
                                               "{\"type\":\"report_version\",\"report\":{\"version\":\"2.1\","
                                               "\"fw_type\":\"mcu\"}}",
                                               OTA_TEST_TIMEOUT_MS),
                   >=, 0);
}

static void
test_init_again_reports_again (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=, 0);
  ota_test_init (env->proxy, "", "1.1", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.1"), OTA_TEST_TIMEOUT_MS), >=, 0);
}

static void
test_check_now_reports (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  int first;

  ota_test_init (env->proxy, "", "3.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  first = ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("3.0"), OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (first, >=, 0);
  ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) first + 1, REPORT_VERSION ("3.0"),
                                               OTA_TEST_TIMEOUT_MS),
                   >, first);
}

static void
test_periodic_report (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  int first;

  ota_test_init (env->proxy, "", "4.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  first = ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("4.0"), OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (first, >=, 0);
  /* report_interval=1 in this fixture: a second report comes without any action. */
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) first + 1, REPORT_VERSION ("4.0"),
                                               OTA_TEST_TIMEOUT_MS),
                   >, first);
}

/* An offer to an app that asked to be asked: UpdateOffered and Progress(offered). */
static void
test_offer_signals (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *offer = ota_test_offer_json (NULL, "1.1", "http://127.0.0.1:9/fw.bin",
                                                "0123456789abcdef0123456789abcdef", 708482);
  g_autofree char *target = NULL;
  const char *module, *version, *state, *msg;
  guint64 size, downloaded, total;
  guint percent;
  int idx, code;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=, 0);
  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
  idx = ota_test_signals_wait_state (env->signals, "", "offered", OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (idx, >=, 0);
  g_variant_get (g_ptr_array_index (env->signals->progress, idx), "(&s&s&sutti&s)", &module, &version, &state,
                 &percent, &downloaded, &total, &code, &msg);
  g_assert_cmpstr (version, ==, "1.1");
  g_assert_cmpuint (total, ==, 708482);
  g_assert_cmpuint (downloaded, ==, 0);
  g_assert_cmpint (code, ==, 0);
  g_assert_cmpuint (env->signals->offered->len, ==, 1);
  g_variant_get (g_ptr_array_index (env->signals->offered, 0), "(&s&st)", &module, &version, &size);
  g_assert_cmpstr (module, ==, "");
  g_assert_cmpstr (version, ==, "1.1");
  g_assert_cmpuint (size, ==, 708482);
  target = ota_test_status_get (env->proxy, "", "target_version");
  g_assert_cmpstr (target, ==, "1.1");
}

/* Prepare(false) defers: after retry_interval the version is reported again. */
static void
test_prepare_defer_reports_again (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *offer = ota_test_offer_json (NULL, "1.1", "http://127.0.0.1:9/fw.bin",
                                                "0123456789abcdef0123456789abcdef", 1000);
  g_autofree char *state = NULL;
  int first;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  first = ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (first, >=, 0);
  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "offered", OTA_TEST_TIMEOUT_MS), >=, 0);
  /* Wrong version: no such offer. */
  ota_dbus_ota_call_prepare_sync (env->proxy, "", "9.9", TRUE, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Failed");
  g_clear_error (&error);
  ota_dbus_ota_call_prepare_sync (env->proxy, "", "1.1", FALSE, NULL, &error);
  g_assert_no_error (error);
  state = ota_test_status_get (env->proxy, "", "state");
  g_assert_cmpstr (state, ==, "idle");
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) first + 1, REPORT_VERSION ("1.0"),
                                               OTA_TEST_TIMEOUT_MS),
                   >, first);
}

static void
test_unknown_option_rejected (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *remote = NULL;
  g_auto (GVariantBuilder) opts = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);

  g_variant_builder_add (&opts, "{sv}", "ask_before_dowload", g_variant_new_boolean (TRUE));
  ota_dbus_ota_call_init_sync (env->proxy, "", "1.0", env->fw_dir, g_variant_builder_end (&opts), NULL, &error);
  g_assert_nonnull (error);
  remote = g_dbus_error_get_remote_error (error);
  g_assert_cmpstr (remote, ==, "org.iv.Ota.Error.InvalidArgs");
  g_assert_nonnull (strstr (error->message, "ask_before_dowload"));
}

static void
test_init_bad_arguments (OtaTestEnv *env, gconstpointer data)
{
  struct {
    const char *module, *version, *dir, *error;
  } cases[] = {
    { "../x", "1.0", NULL, "org.iv.Ota.Error.InvalidArgs" },
    { "a/b", "1.0", NULL, "org.iv.Ota.Error.InvalidArgs" },
    { "", "", NULL, "org.iv.Ota.Error.InvalidArgs" },
    { "", "1 0", NULL, "org.iv.Ota.Error.InvalidArgs" },
    { "", "1.0", "relative/dir", "org.iv.Ota.Error.InvalidArgs" },
    { "", "1.0", "/nonexistent/dir", "org.iv.Ota.Error.InvalidArgs" },
  };

  g_autofree char *long_tail = g_strnfill (PATH_MAX, 'd');
  g_autofree char *long_dir = g_strconcat ("/", long_tail, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GError) error = NULL;
    g_autofree char *remote = NULL;

    ota_test_init (env->proxy, cases[i].module, cases[i].version, cases[i].dir ? cases[i].dir : env->fw_dir, FALSE,
                   &error);
    g_assert_nonnull (error);
    remote = g_dbus_error_get_remote_error (error);
    g_assert_cmpstr (remote, ==, cases[i].error);
  }
  /* A path no file system takes is refused without being quoted back. */
  {
    g_autoptr (GError) error = NULL;
    ota_test_init (env->proxy, "", "1.0", long_dir, FALSE, &error);
    ota_test_assert_remote_error (error, "org.iv.Ota.Error.InvalidArgs");
    g_assert_nonnull (strstr (error->message, "firmware_dir longer than"));
    g_assert_null (strstr (error->message, long_tail));
  }
  /* A refused Init creates nothing: 70 of them cannot fill the module table. */
  for (guint i = 0; i < OTA_AGENT_MAX_MODULES + 6; i++) {
    g_autoptr (GError) error = NULL;
    g_autofree char *name = g_strdup_printf ("m%u", i);
    ota_test_init (env->proxy, name, "1.0", "/nonexistent/dir", FALSE, &error);
    ota_test_assert_remote_error (error, "org.iv.Ota.Error.InvalidArgs");
  }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (GVariant) status = NULL;
    ota_dbus_ota_call_get_status_sync (env->proxy, "m0", &status, NULL, &error);
    ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
    g_clear_error (&error);
    ota_test_init (env->proxy, "fresh", "1.0", env->fw_dir, FALSE, &error);
    g_assert_no_error (error);
  }
}

static void
test_symlink_dir_refused (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *link = g_build_filename (env->dir, "fw-link", NULL);
  g_autofree char *remote = NULL;

  g_assert_cmpint (symlink (env->fw_dir, link), ==, 0);
  ota_test_init (env->proxy, "", "1.0", link, FALSE, &error);
  g_assert_nonnull (error);
  remote = g_dbus_error_get_remote_error (error);
  g_assert_cmpstr (remote, ==, "org.iv.Ota.Error.InvalidArgs");
}

static void
test_get_status_no_module (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) status = NULL;
  g_autofree char *remote = NULL;

  ota_dbus_ota_call_get_status_sync (env->proxy, "nothing", &status, NULL, &error);
  g_assert_nonnull (error);
  remote = g_dbus_error_get_remote_error (error);
  g_assert_cmpstr (remote, ==, "org.iv.Ota.Error.NoSuchModule");
}

static gboolean
connected_is (gpointer data)
{
  gpointer *args = data;
  return ota_dbus_ota_get_connected (args[0]) == GPOINTER_TO_INT (args[1]);
}

static void
test_properties (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) modules = NULL;
  g_autoptr (GVariant) mcu = NULL;
  gpointer args[] = { env->proxy, GINT_TO_POINTER (TRUE) };

  g_assert_true (ota_test_wait (connected_is, args, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpstr (ota_dbus_ota_get_daemon_version (env->proxy), !=, NULL);
  g_assert_cmpstr (ota_dbus_ota_get_daemon_version (env->proxy), !=, "");
  ota_test_init (env->proxy, "mcu", "2.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  /* The property follows through PropertiesChanged. */
  for (int i = 0; i < 200 && mcu == NULL; i++) {
    g_clear_pointer (&modules, g_variant_unref);
    modules = ota_dbus_ota_dup_modules (env->proxy);
    if (modules != NULL)
      mcu = g_variant_lookup_value (modules, "mcu", G_VARIANT_TYPE_VARDICT);
    if (mcu == NULL)
      ota_test_spin (50);
  }
  g_assert_nonnull (mcu);
  {
    const char *version = NULL;
    g_assert_true (g_variant_lookup (mcu, "version", "&s", &version));
    g_assert_cmpstr (version, ==, "2.0");
  }
  /* Connected follows the broker. */
  ota_test_broker_stop (env->broker);
  args[1] = GINT_TO_POINTER (FALSE);
  g_assert_true (ota_test_wait (connected_is, args, OTA_TEST_TIMEOUT_MS));
  ota_test_broker_restart (env->broker);
  args[1] = GINT_TO_POINTER (TRUE);
  g_assert_true (ota_test_wait (connected_is, args, 3 * OTA_TEST_TIMEOUT_MS));
}

/* busctl sees the whole interface. */
static void
test_busctl_introspect (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *address = g_dbus_address_get_for_bus_sync (G_BUS_TYPE_SESSION, NULL, NULL);
  g_autofree char *addr_arg = g_strdup_printf ("--address=%s", address);
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;
  int status = 0;
  const char *argv[] = { "busctl", addr_arg, "introspect", "org.iv.Ota", "/org/iv/Ota", "org.iv.Ota", NULL };
  const char *members[] = { "Init", "Prepare", "ReportProgress", "Cancel", "CheckNow", "Exit", "GetStatus",
                            "UpdateOffered", "Progress", "FirmwareReady", "Connected", "Modules", "DaemonVersion" };

  g_autofree char *busctl = g_find_program_in_path ("busctl");

  /* busctl comes with systemd, which scripts/deps.sh installs. */
  g_assert_nonnull (busctl);
  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL, &status, &error);
  g_assert_no_error (error);
  g_assert_cmpint (status, ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (members); i++) {
    g_autofree char *needle = g_strdup_printf (".%s ", members[i]);
    g_assert_nonnull (strstr (out, needle));
  }
}

/* A bad config stops the agent at once with a message naming the key. */
static void
test_bad_config_exits (void)
{
  struct {
    const char *config, *needle;
  } cases[] = {
    { "[device]\nproduct_id=P\n", "[device] device_name" },
    { "[device]\nproduct_id=P\ndevice_name=D\n[ota]\nreport_interval=soon\n", "[ota] report_interval" },
    { "[device]\nproduct_id=P\ndevice_name=D\n[mqtt]\nhots=x\n", "[mqtt] hots" },
    { "[device]\nproduct_id=P\ndevice_name=D\n[extra]\n", "[extra]" },
  };
  g_autofree char *dir = g_dir_make_tmp ("iv-ota-config-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "bad.conf", NULL);

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *err = NULL;
    g_autoptr (GError) error = NULL;
    int status = 0;
    const char *args[] = { g_getenv ("IV_OTAD"), "--config", path, "--bus", "session", NULL };
    g_auto (GStrv) argv = ota_test_wrap_argv (args);

    g_assert_true (g_file_set_contents (path, cases[i].config, -1, NULL));
    g_spawn_sync (NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err, &status, &error);
    g_assert_no_error (error);
    g_assert_false (g_spawn_check_wait_status (status, NULL));
    g_assert_nonnull (strstr (err, cases[i].needle));
  }
  g_unlink (path);
  g_rmdir (dir);
}

static void
test_bad_bus_option (void)
{
  const char *args[] = { g_getenv ("IV_OTAD"), "--bus", "tram", NULL };
  g_auto (GStrv) argv = ota_test_wrap_argv (args);
  g_autofree char *err = NULL;
  int status = 0;

  g_assert_true (g_spawn_sync (NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err,
                               &status, NULL));
  g_assert_false (g_spawn_check_wait_status (status, NULL));
  g_assert_nonnull (strstr (err, "--bus"));
}

#define FLOOD_CALLS 1000

static guint
count_version_reports_from (OtaTestEnv *env, guint from)
{
  guint n = 0;

  for (guint i = from; i < env->cloud->reports->len; i++)
    n += strstr (g_ptr_array_index (env->cloud->reports, i), "\"report_version\"") != NULL;
  return n;
}

/* One app calls Init (each time with a new version) and CheckNow as fast as
 * it can: the cloud gets at most one version report per second of the
 * flood, plus the one held back at its end, and that last one carries the
 * version of the last Init. Only counts are asserted, against the flood's own
 * duration, so a slow machine cannot make it fail. */
static void
test_local_flood_is_coalesced (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *last = NULL;
  g_autofree char *last_report = NULL;
  gint64 started;
  double seconds;
  guint from, sent;
  int index;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=, 0);
  ota_test_spin (1100); /* the flood starts with a report of its own */
  from = env->cloud->reports->len;
  started = g_get_monotonic_time ();
  for (guint i = 1; i <= FLOOD_CALLS; i++) {
    g_autofree char *version = g_strdup_printf ("1.%u", i);

    ota_test_init (env->proxy, "", version, env->fw_dir, FALSE, &error);
    g_assert_no_error (error);
    ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
    g_assert_no_error (error);
    /* The in-process cloud's MQTT link lives on this context: keep it alive
     * (a slow flood, under ASan, would outlast its keepalive). */
    while (g_main_context_iteration (NULL, FALSE))
      ;
  }
  seconds = (double) (g_get_monotonic_time () - started) / G_USEC_PER_SEC;
  last = g_strdup_printf (REPORT_VERSION ("1.%u"), FLOOD_CALLS);
  index = ota_test_cloud_wait_report (env->cloud, from, last, OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (index, >=, (int) from);
  ota_test_spin (1500); /* anything still held back would come now */
  sent = count_version_reports_from (env, from);
  g_test_message ("%u Init + %u CheckNow in %.2f s: %u version reports", FLOOD_CALLS, FLOOD_CALLS, seconds, sent);
  /* One at once, one per started second, the held-back last one. */
  g_assert_cmpuint (sent, <=, (guint) seconds + 2);
  /* The last report is the last Init's version: nothing newer was lost. */
  for (guint i = env->cloud->reports->len; i-- > from;) {
    const char *report = g_ptr_array_index (env->cloud->reports, i);
    if (strstr (report, "\"report_version\"") != NULL) {
      last_report = g_strdup (report);
      break;
    }
  }
  g_assert_cmpstr (last_report, ==, last);
}

/* ---- two modules, one file name ---- */

#define ANY_MD5 "0123456789abcdef0123456789abcdef"
/* Nothing listens there: a request made by mistake fails, but none is made. */
#define NO_SERVER "http://127.0.0.1:9/"

/* The Progress(fail) of @module: its code, and its message (owned by the signal log). */
static const char *
wait_fail_of (OtaTestEnv *env, const char *module, int *code)
{
  int idx = ota_test_signals_wait_state (env->signals, module, "fail", OTA_TEST_TIMEOUT_MS);
  const char *msg = NULL;

  g_assert_cmpint (idx, >=, 0);
  g_variant_get (g_ptr_array_index (env->signals->progress, idx), "(&s&s&sutti&s)", NULL, NULL, NULL, NULL, NULL,
                 NULL, code, &msg);
  g_test_message ("%s: fail %d: %s", module, *code, msg);
  return msg;
}

static guint
count_offered (OtaTestEnv *env, const char *module)
{
  guint n = 0;

  for (guint i = 0; i < env->signals->offered->len; i++) {
    const char *m = NULL;
    g_variant_get (g_ptr_array_index (env->signals->offered, i), "(&s&st)", &m, NULL, NULL);
    n += g_strcmp0 (m, module) == 0;
  }
  return n;
}

static void
publish_offer (OtaTestEnv *env, const char *module, const char *version)
{
  g_autofree char *offer = ota_test_offer_json (module, version, NO_SERVER, ANY_MD5, 1000);

  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
}

/* Module "" at version "mcu_2.0" and module "mcu" at "2.0" share a firmware
 * directory: both would be FW_mcu_2.0.bin. The main module's offer came first
 * (it waits for the app's answer): the mcu's is refused with fail -5, a
 * message naming both modules, no UpdateOffered and no file; the main
 * module's offer is untouched. */
static void
test_two_modules_one_file_name (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *bin = g_build_filename (env->fw_dir, "FW_mcu_2.0.bin", NULL);
  g_autofree char *state = NULL;
  const char *msg;
  int code = 0;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  publish_offer (env, "", "mcu_2.0");
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "offered", OTA_TEST_TIMEOUT_MS), >=, 0);
  publish_offer (env, "mcu", "2.0");
  msg = wait_fail_of (env, "mcu", &code);
  g_assert_cmpint (code, ==, -5);
  g_assert_nonnull (strstr (msg, "FW_mcu_2.0.bin"));
  g_assert_nonnull (strstr (msg, "module (main), version mcu_2.0"));
  g_assert_nonnull (strstr (msg, "module mcu will not"));
  g_assert_cmpint (ota_test_cloud_wait_report_containing (env->cloud, 0,
                                                          "\"result_code\":\"-5\",\"result_msg\":\"FW_mcu_2.0.bin",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  g_assert_cmpuint (count_offered (env, "mcu"), ==, 0);
  g_assert_false (g_file_test (bin, G_FILE_TEST_EXISTS));
  state = ota_test_status_get (env->proxy, "", "state");
  g_assert_cmpstr (state, ==, "offered");
}

/* The main module's partial FW_mcu_2.0.bin (its record says module "") is
 * in the directory, its cycle abandoned: an offer of mcu 2.0 fails with -5
 * naming both, and leaves the other module's image and record as they were. */
static void
test_other_module_partial_left_alone (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *bin = g_build_filename (env->fw_dir, "FW_mcu_2.0.bin", NULL);
  g_autofree char *record = g_build_filename (env->fw_dir, "FW_mcu_2.0.json", NULL);
  const char *record_text = "{\"module\":\"\",\"version\":\"mcu_2.0\",\"md5sum\":\"" ANY_MD5 "\","
                            "\"file_size\":1000,\"downloaded_size\":500}";
  g_autofree char *bin_text = g_strnfill (500, 'm');
  g_autofree char *bin_after = NULL;
  g_autofree char *record_after = NULL;
  const char *msg;
  int code = 0;

  g_assert_true (g_file_set_contents (record, record_text, -1, NULL));
  g_assert_true (g_file_set_contents (bin, bin_text, -1, NULL));
  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  publish_offer (env, "mcu", "2.0");
  msg = wait_fail_of (env, "mcu", &code);
  g_assert_cmpint (code, ==, -5);
  g_assert_nonnull (strstr (msg, "partial download of module (main), version mcu_2.0"));
  g_assert_nonnull (strstr (msg, "module mcu will not"));
  g_assert_true (g_file_get_contents (bin, &bin_after, NULL, NULL));
  g_assert_cmpstr (bin_after, ==, bin_text);
  g_assert_true (g_file_get_contents (record, &record_after, NULL, NULL));
  g_assert_cmpstr (record_after, ==, record_text);
}

static gboolean
process_exited (gpointer data)
{
  return !ota_test_process_is_running (data);
}

/* A second iv-otad started on the same configuration finds org.iv.Ota owned:
 * it exits with an error that says so before it ever connects to the broker,
 * so the live agent keeps the device's one MQTT session (mosquitto, like the
 * platform, would close the older connection of the same client id). */
static void
test_second_agent_leaves_before_connecting (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *broker_log = g_build_filename (env->dir, "mosquitto.log", NULL);
  g_autofree char *second_log = g_build_filename (env->dir, "second-iv-otad.log", NULL);
  const char *connected = " as " OTA_TEST_PRODUCT OTA_TEST_DEVICE " (";
  char *argv[] = { (char *) g_getenv ("IV_OTAD"), "--config", env->agent->config_path, "--bus", "session", NULL };
  OtaTestProcess *second;
  guint connects;
  int from;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=, 0);
  connects = ota_test_file_count_lines (broker_log, connected);
  g_assert_cmpuint (connects, ==, 1);

  second = ota_test_process_spawn (argv, NULL, second_log, NULL);
  g_assert_true (ota_test_wait (process_exited, second, OTA_TEST_TIMEOUT_MS));

  /* The live agent still serves, on its first and only session: a report it
   * sends now went through the broker after anything the second one did. */
  from = (int) env->cloud->reports->len;
  ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) from, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS),
                   >=, from);
  g_assert_cmpuint (ota_test_file_count_lines (broker_log, connected), ==, connects);
  g_assert_cmpuint (ota_test_file_count_lines (broker_log, "already connected, closing old connection"), ==, 0);
  g_assert_true (ota_dbus_ota_get_connected (env->proxy));

  g_assert_true (WIFEXITED (second->status));
  g_assert_cmpint (WEXITSTATUS (second->status), !=, 0);
  g_assert_cmpuint (ota_test_file_count_lines (second_log, "another iv-otad is running"), ==, 1);
  g_assert_cmpuint (ota_test_file_count_lines (second_log, "exiting before connecting to the cloud"), ==, 1);
  ota_test_process_free (second);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn, cfg) g_test_add ("/agent/" path, OtaTestEnv, cfg, ota_test_env_setup, fn, ota_test_env_teardown)
  ADD ("init/reports-version", test_init_reports_version, fast_loop);
  ADD ("init/module-reports-fw-type", test_init_module_reports_fw_type, fast_loop);
  ADD ("init/again-reports-again", test_init_again_reports_again, fast_loop);
  ADD ("init/unknown-option-rejected", test_unknown_option_rejected, fast_loop);
  ADD ("init/bad-arguments", test_init_bad_arguments, fast_loop);
  ADD ("init/symlink-dir-refused", test_symlink_dir_refused, fast_loop);
  ADD ("check-now/reports", test_check_now_reports, fast_loop);
  ADD ("init/local-flood-is-coalesced", test_local_flood_is_coalesced, fast_loop);
  ADD ("loop/periodic-report", test_periodic_report, "report_interval=1\n");
  ADD ("offer/signals", test_offer_signals, fast_loop);
  ADD ("offer/prepare-defer-reports-again", test_prepare_defer_reports_again, fast_loop);
  ADD ("offer/two-modules-one-file-name-later-refused", test_two_modules_one_file_name, fast_loop);
  ADD ("offer/other-modules-partial-left-alone", test_other_module_partial_left_alone, fast_loop);
  ADD ("status/no-such-module", test_get_status_no_module, fast_loop);
  ADD ("properties", test_properties, fast_loop);
  ADD ("busctl-introspect", test_busctl_introspect, fast_loop);
  ADD ("process/second-agent-leaves-before-connecting", test_second_agent_leaves_before_connecting, fast_loop);
  g_test_add_func ("/agent/config/bad-config-exits", test_bad_config_exits);
  g_test_add_func ("/agent/config/bad-bus-option", test_bad_bus_option);
  return g_test_run ();
}
