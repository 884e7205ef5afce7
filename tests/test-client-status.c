/* libiv-ota for tools (iv_ota_ext.h, "any module, by name"): the status
 * snapshot of the agent and every module, CheckNow and Cancel by module name
 * from a process that may not own the module, and the snapshot flag of
 * observer events. Against the real agent, broker and iv-ota-cloud. */
#include "harness.h"
#include "ota-build-config.h"

#include "iv_ota_ext.h"

#include <unistd.h>

#define TARGET "2.0"
#define VERSION_REPORT "{\"type\":\"report_version\",\"report\":{\"version\":\"1.0\"}}"

typedef struct {
  OtaTestEnv env;
  OtaTestCloudTool *tool;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  ota_test_env_setup (&f->env, NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  ota_test_cloud_tool_free (f->tool);
  ota_test_env_teardown (&f->env, NULL);
}

static char *
agent_unique_name (Fixture *f)
{
  g_autoptr (GVariant) reply = NULL;
  char *owner = NULL;

  reply = g_dbus_connection_call_sync (f->env.connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetNameOwner", g_variant_new ("(s)", "org.iv.Ota"),
                                       G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL);
  g_assert_nonnull (reply);
  g_variant_get (reply, "(s)", &owner);
  return owner;
}

/* ---- without an agent ---- */

static void
test_no_agent (void)
{
  iv_ota_status_s *status = NULL;

  g_assert_cmpint (iv_ota_status_get (&status), ==, IV_ERR_OTA_NO_AGENT);
  g_assert_null (status);
  g_assert_nonnull (strstr (iv_ota_last_error (), "org.iv.Ota"));
  g_assert_cmpint (iv_ota_check_module (""), ==, IV_ERR_OTA_NO_AGENT);
  g_assert_cmpint (iv_ota_cancel_module ("mcu"), ==, IV_ERR_OTA_NO_AGENT);
  /* Arguments are checked before anything is asked. */
  g_assert_cmpint (iv_ota_status_get (NULL), ==, IV_ERR_OTA_INVALID_ARG);
  g_assert_cmpint (iv_ota_check_module (NULL), ==, IV_ERR_OTA_INVALID_ARG);
  g_assert_cmpint (iv_ota_cancel_module ("bad/name"), ==, IV_ERR_OTA_INVALID_ARG);
  g_assert_cmpstr (iv_ota_last_error (), !=, "");
  iv_ota_status_free (NULL);
}

static void
test_strerror_new_codes (void)
{
  const char *not_owner = iv_ota_strerror (IV_ERR_OTA_NOT_OWNER);
  const char *no_module = iv_ota_strerror (IV_ERR_OTA_NO_SUCH_MODULE);

  g_assert_cmpstr (not_owner, !=, "unknown error");
  g_assert_cmpstr (no_module, !=, "unknown error");
  g_assert_cmpstr (not_owner, !=, no_module);
  g_assert_cmpstr (not_owner, !=, iv_ota_strerror (IV_ERR_OTA_REFUSED));
}

/* ---- the status snapshot ---- */

static void
test_status_of_every_module (Fixture *f, gconstpointer data)
{
  g_autofree char *agent = agent_unique_name (f);
  iv_ota_status_s *status = NULL;
  const iv_ota_module_status_s *m;

  g_assert_cmpint (iv_ota_status_get (&status), ==, IV_ERR_NONE);
  g_assert_cmpstr (status->agent, ==, agent);
  g_assert_cmpstr (status->daemon_version, ==, PACKAGE_VERSION);
  g_assert_cmpuint (status->n_modules, ==, 0);
  iv_ota_status_free (status);

  /* Registered in the other order: the snapshot is sorted by name. */
  ota_test_env_init_published (&f->env, "mcu", "3.1");
  ota_test_env_init_published (&f->env, "", "1.0");
  status = NULL;
  g_assert_cmpint (iv_ota_status_get (&status), ==, IV_ERR_NONE);
  g_assert_cmpint (status->cloud_connected, ==, 1);
  g_assert_cmpuint (status->n_modules, ==, 2);
  g_assert_cmpstr (status->modules[0].module, ==, "");
  g_assert_cmpstr (status->modules[1].module, ==, "mcu");
  for (size_t i = 0; i < status->n_modules; i++) {
    m = &status->modules[i];
    g_assert_cmpstr (m->state, ==, "idle");
    g_assert_cmpstr (m->target_version, ==, "");
    g_assert_cmpstr (m->owner, ==, g_dbus_connection_get_unique_name (f->env.connection));
    g_assert_cmpuint (m->owner_pid, ==, (guint) getpid ());
    g_assert_cmpint (m->result_code, ==, 0);
    g_assert_cmpuint (m->total, ==, 0);
    g_assert_nonnull (m->path);
    g_assert_nonnull (m->result_msg);
  }
  g_assert_cmpstr (status->modules[0].version, ==, "1.0");
  g_assert_cmpstr (status->modules[1].version, ==, "3.1");
  iv_ota_status_free (status);
}

/* After a download: target, bytes, percent and the image's path. */
static void
test_status_after_download (Fixture *f, gconstpointer data)
{
  g_autofree char *firmware = g_build_filename (f->env.dir, "firmware.img", NULL);
  g_autofree char *md5 = ota_test_make_file (firmware, 200000);
  g_autofree char *image = g_build_filename (f->env.fw_dir, "FW_" TARGET ".bin", NULL);
  g_autofree char *contents = NULL, *served = NULL;
  iv_ota_status_s *status = NULL;
  const iv_ota_module_status_s *m;
  gsize length = 0;

  f->tool = ota_test_cloud_tool_start (f->env.dir, "cloud-tool", f->env.broker->port, TARGET, firmware, NULL);
  ota_test_env_init_published (&f->env, "", "1.0");
  ota_test_env_wait_published (&f->env, "", "ready", TRUE);
  g_assert_cmpint (iv_ota_status_get (&status), ==, IV_ERR_NONE);
  g_assert_cmpuint (status->n_modules, ==, 1);
  m = &status->modules[0];
  g_assert_cmpstr (m->state, ==, "ready");
  g_assert_cmpstr (m->version, ==, "1.0");
  g_assert_cmpstr (m->target_version, ==, TARGET);
  g_assert_cmpuint (m->downloaded, ==, 200000);
  g_assert_cmpuint (m->total, ==, 200000);
  g_assert_cmpuint (m->percent, ==, 100);
  g_assert_cmpstr (m->path, ==, image);
  iv_ota_status_free (status);
  /* The image the agent verified is the one the cloud served. */
  g_assert_true (g_file_get_contents (image, &contents, &length, NULL));
  g_assert_cmpuint (length, ==, 200000);
  served = g_compute_checksum_for_data (G_CHECKSUM_MD5, (const guchar *) contents, length);
  g_assert_cmpstr (served, ==, md5);
}

/* ---- requests by module name ---- */

static void
on_ready (char *path, uint32_t size)
{
}

static void
test_requests_by_name (Fixture *f, gconstpointer data)
{
  iv_ota_init_parm_s parm = { .iv_ota_firmware_update_cb = on_ready };
  iv_ota_module_s *radio = NULL;
  guint before;

  ota_test_env_init_published (&f->env, "", "1.0");
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, 0, VERSION_REPORT, OTA_TEST_TIMEOUT_MS), >=, 0);
  before = f->env.cloud->reports->len;
  /* CheckNow: anyone may ask. */
  g_assert_cmpint (iv_ota_check_module (""), ==, IV_ERR_NONE);
  g_assert_cmpstr (iv_ota_last_error (), ==, "");
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, before, VERSION_REPORT, OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_cmpint (iv_ota_check_module ("nosuch"), ==, IV_ERR_OTA_NO_SUCH_MODULE);
  /* Cancel: only the owner, which this process is not. */
  g_assert_cmpint (iv_ota_cancel_module (""), ==, IV_ERR_OTA_NOT_OWNER);
  g_assert_nonnull (strstr (iv_ota_last_error (), "NotOwner"));
  g_assert_cmpint (iv_ota_cancel_module ("nosuch"), ==, IV_ERR_OTA_NO_SUCH_MODULE);
  /* A module this process owns: the request goes out on the owner's connection. */
  g_strlcpy (parm.firmware_path, f->env.fw_dir, sizeof parm.firmware_path);
  g_strlcpy (parm.firmware_version, "1.0", sizeof parm.firmware_version);
  g_assert_cmpint (iv_ota_module_open ("radio", &parm, NULL, &radio), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_cancel_module ("radio"), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_check_module ("radio"), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_module_exit (radio), ==, IV_ERR_NONE);
}

/* ---- observers: which events are the snapshot ---- */

typedef struct {
  GMutex lock;
  GPtrArray *events; /* "AGENT 1", "CONNECTION 0"...: type and snapshot flag */
} Seen;

static void
on_event (const iv_ota_event_s *event, void *user_data)
{
  static const char *const names[] = { "AGENT", "CONNECTION", "OFFERED", "PROGRESS", "READY" };
  Seen *seen = user_data;

  g_mutex_lock (&seen->lock);
  g_ptr_array_add (seen->events, g_strdup_printf ("%s %s %d", event->type < G_N_ELEMENTS (names) ? names[event->type] : "?",
                                                  event->type == IV_OTA_EVENT_CONNECTION
                                                    ? (event->cloud_connected ? "up" : "down")
                                                    : event->module,
                                                  event->snapshot));
  g_mutex_unlock (&seen->lock);
}

typedef struct {
  Seen *seen;
  const char *text;
} SeenWait;

static gboolean
seen_has (gpointer data)
{
  SeenWait *w = data;
  gboolean found = FALSE;

  g_mutex_lock (&w->seen->lock);
  for (guint i = 0; i < w->seen->events->len && !found; i++)
    found = g_str_equal (g_ptr_array_index (w->seen->events, i), w->text);
  g_mutex_unlock (&w->seen->lock);
  return found;
}

static void
seen_wait (Seen *seen, const char *text)
{
  SeenWait w = { seen, text };

  if (!ota_test_wait (seen_has, &w, OTA_TEST_TIMEOUT_MS))
    g_error ("no event \"%s\"", text);
}

static void
test_snapshot_flag (Fixture *f, gconstpointer data)
{
  Seen seen = { .events = g_ptr_array_new_with_free_func (g_free) };
  iv_ota_observer_s *observer = NULL;

  g_mutex_init (&seen.lock);
  ota_test_env_init_published (&f->env, "mcu", "3.1");
  g_assert_cmpint (iv_ota_observer_add (on_event, &seen, &observer), ==, IV_ERR_NONE);
  seen_wait (&seen, "AGENT  1");
  seen_wait (&seen, "CONNECTION up 1");
  seen_wait (&seen, "PROGRESS mcu 1");
  /* Live: the broker goes away, the agent's cloud session with it. */
  ota_test_broker_stop (f->env.broker);
  seen_wait (&seen, "CONNECTION down 0");
  g_assert_cmpint (iv_ota_observer_remove (observer), ==, IV_ERR_NONE);
  g_ptr_array_unref (seen.events);
  g_mutex_clear (&seen.lock);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_setenv ("IV_OTA_BUS", "session", TRUE);
  g_test_add_func ("/client-status/no-agent", test_no_agent);
  g_test_add_func ("/client-status/strerror-new-codes", test_strerror_new_codes);
#define ADD(path, fn) g_test_add ("/client-status/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("status-of-every-module", test_status_of_every_module);
  ADD ("status-after-download", test_status_after_download);
  ADD ("requests-by-name", test_requests_by_name);
  ADD ("snapshot-flag", test_snapshot_flag);
#undef ADD
  return g_test_run ();
}
