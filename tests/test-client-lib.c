/* libiv-ota against the real agent, a real broker and iv-ota-cloud: the
 * classic iv_ota.h flow of examples/device-app, modules and observers of
 * iv_ota_ext.h, the agent restarting under an app, callbacks calling the API,
 * exits during a download, argument checks, and what the library exports.
 *
 * The test process itself also uses the library (in-process apps): its
 * callbacks run on the library thread and are recorded under a mutex, while
 * the test's main thread runs the harness main loop and polls the records. */
#include "harness.h"

#include "iv_ota.h"
#include "iv_ota_ext.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>

#define TARGET "2.0"
#define DONE_REPORT(v)                                                                                             \
  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"done\",\"result_code\":\"0\","             \
  "\"result_msg\":\"\"},\"version\":\"" v "\"}}"
/* Slow downloads for tests that act while one runs; rate limits do not care about ASan. */
#define SLOW_SIZE 600000
#define SLOW_RATE "--rate=150000"

/* ---- the SDK's layout, checked at compile time ---- */

_Static_assert (IV_OTA_PROGRESS_TYPE_WRITE_FLASH == 0 && IV_OTA_PROGRESS_TYPE_REBOOT == 1 &&
                  IV_OTA_PROGRESS_TYPE_SUCCESS == 2 && IV_OTA_PROGRESS_TYPE_FAIL == 3 &&
                  IV_OTA_PROGRESS_TYPE_WRITING_FLASH == 4 && IV_OTA_PROGRESS_TYPE_BUTT == 5,
                "progress types");
_Static_assert (IV_OTA_FAIL_TYPE_OPEN_FILE == 0 && IV_OTA_FAIL_TYPE_WRONG_SIZE == 1 &&
                  IV_OTA_FAIL_TYPE_WRITE_FLASH == 2 && IV_OTA_FAIL_TYPE_REPORT_VERSION == 3 &&
                  IV_OTA_FAIL_TYPE_MALLOC == 4 && IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD == 5 &&
                  IV_OTA_FAIL_TYPE_MD5_CHECK == 6 && IV_OTA_FAIL_TYPE_WRITE_BUTT == 7,
                "fail types");
_Static_assert (IV_ERR_NONE == 0 && IV_ERR_OTA_INIT_PRM_NULL == -800 && IV_ERR_OTA_INIT_CB_NULL == -801 &&
                  IV_ERR_OTA_START_FAIL == -802 && IV_ERR_OTA_PROGRESS_TYPE_ERROR == -803 &&
                  IV_ERR_DEVICE_OFFLINE == -1001,
                "return codes");
_Static_assert (IV_OTA_LOCAL_FILE_NAME_MAX_LEN == 160 && IV_OTA_FIRMWARE_VERSION_MAX_LEN == 64, "sizes");
_Static_assert (offsetof (iv_ota_init_parm_s, iv_ota_firmware_update_cb) == 0, "parm order");
_Static_assert (offsetof (iv_ota_init_parm_s, firmware_path) == sizeof (void (*) (void)), "parm order");
_Static_assert (offsetof (iv_ota_init_parm_s, firmware_version) == offsetof (iv_ota_init_parm_s, firmware_path) + 160,
                "parm order");
_Static_assert (offsetof (iv_ota_init_parm_s, iv_ota_prepare_cb) >= offsetof (iv_ota_init_parm_s, firmware_version) + 64 &&
                  offsetof (iv_ota_init_parm_s, iv_ota_download_size_cb) > offsetof (iv_ota_init_parm_s, iv_ota_prepare_cb) &&
                  offsetof (iv_ota_init_parm_s, iv_ota_thread_exit_cb) >
                    offsetof (iv_ota_init_parm_s, iv_ota_download_size_cb) &&
                  offsetof (iv_ota_init_parm_s, iv_ota_download_fail_cb) >
                    offsetof (iv_ota_init_parm_s, iv_ota_thread_exit_cb),
                "parm order");
_Static_assert (offsetof (iv_ota_fail_info_s, fail_type) == 0 &&
                  offsetof (iv_ota_fail_info_s, err_code) < offsetof (iv_ota_fail_info_s, downloaded_size) &&
                  offsetof (iv_ota_fail_info_s, downloaded_size) < offsetof (iv_ota_fail_info_s, fw_file_size) &&
                  offsetof (iv_ota_fail_info_s, fw_file_size) < offsetof (iv_ota_fail_info_s, remote_version) &&
                  sizeof (((iv_ota_fail_info_s *) 0)->remote_version) == 64,
                "fail info");
_Static_assert (sizeof (iv_ota_thread_exit_status_s) == sizeof (int), "exit status");

/* ---- what the in-process app's callbacks saw ---- */

typedef enum {
  READY_IDLE,       /* firmware_update_cb only records */
  READY_REPORT_EXIT /* it reports burning and calls iv_ota_exit itself */
} ReadyAction;

static struct {
  GMutex lock;
  GPtrArray *calls;   /* "prepare V N", "size N", "ready P N", "fail T C D S V", "exit M" */
  guint defer_left;   /* prepare_cb answers "not now" this many times */
  ReadyAction ready_action;
  int rc_write_flash, rc_writing_flash, rc_exit, rc_after_exit;
  gboolean ready_returned, exit_after_ready, current_in_ready, current_in_exit;
} rec;

static void
rec_add (const char *format, ...) G_GNUC_PRINTF (1, 2);

static void
rec_add (const char *format, ...)
{
  va_list args;

  va_start (args, format);
  g_mutex_lock (&rec.lock);
  g_ptr_array_add (rec.calls, g_strdup_vprintf (format, args));
  g_mutex_unlock (&rec.lock);
  va_end (args);
}

static void
rec_reset (void)
{
  g_mutex_lock (&rec.lock);
  g_clear_pointer (&rec.calls, g_ptr_array_unref);
  rec.calls = g_ptr_array_new_with_free_func (g_free);
  rec.defer_left = 0;
  rec.ready_action = READY_IDLE;
  rec.rc_write_flash = rec.rc_writing_flash = rec.rc_exit = rec.rc_after_exit = 1;
  rec.ready_returned = rec.exit_after_ready = rec.current_in_ready = rec.current_in_exit = FALSE;
  g_mutex_unlock (&rec.lock);
}

/* Number of recorded calls starting with @prefix; the first one in *@first. */
static guint
rec_count (const char *prefix, char **first)
{
  guint n = 0;

  g_mutex_lock (&rec.lock);
  for (guint i = 0; i < rec.calls->len; i++) {
    const char *call = g_ptr_array_index (rec.calls, i);
    if (g_str_has_prefix (call, prefix) && n++ == 0 && first != NULL)
      *first = g_strdup (call);
  }
  g_mutex_unlock (&rec.lock);
  return n;
}

static gboolean
rec_has (gpointer prefix)
{
  return rec_count (prefix, NULL) > 0;
}

static guint
rec_total (void)
{
  guint n;

  g_mutex_lock (&rec.lock);
  n = rec.calls->len;
  g_mutex_unlock (&rec.lock);
  return n;
}

static int
on_prepare (char *version, uint32_t size)
{
  gboolean defer;

  rec_add ("prepare %s %u", version, size);
  g_mutex_lock (&rec.lock);
  defer = rec.defer_left > 0;
  if (defer)
    rec.defer_left--;
  g_mutex_unlock (&rec.lock);
  return defer ? 1 : 0;
}

static void
on_size (uint32_t size)
{
  rec_add ("size %u", size);
}

static void
on_fail (const iv_ota_fail_info_s *info)
{
  rec_add ("fail %d %d %u %u %s", (int) info->fail_type, info->err_code, info->downloaded_size, info->fw_file_size,
           info->remote_version);
}

/* The classic pattern: report from the callback and end the service in it. */
static void
ready_report_and_exit (void)
{
  int write_flash = iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITE_FLASH, 0);
  int writing = iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITING_FLASH, 50);
  int exit_rc = iv_ota_exit ();
  int after = iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_SUCCESS, 0);

  g_mutex_lock (&rec.lock);
  rec.rc_write_flash = write_flash;
  rec.rc_writing_flash = writing;
  rec.rc_exit = exit_rc;
  rec.rc_after_exit = after;
  g_mutex_unlock (&rec.lock);
}

static void
on_ready (char *path, uint32_t size)
{
  iv_ota_module_s *current = iv_ota_module_current ();

  rec_add ("ready %s %u", path, size);
  g_mutex_lock (&rec.lock);
  rec.current_in_ready = current != NULL && g_str_equal (iv_ota_module_name (current), "");
  g_mutex_unlock (&rec.lock);
  if (rec.ready_action == READY_REPORT_EXIT)
    ready_report_and_exit ();
  g_mutex_lock (&rec.lock);
  rec.ready_returned = TRUE;
  g_mutex_unlock (&rec.lock);
}

static void
on_thread_exit (iv_ota_thread_exit_status_s status)
{
  iv_ota_module_s *current = iv_ota_module_current ();

  g_mutex_lock (&rec.lock);
  /* thread_exit_cb must not run nested inside the callback that exited. */
  rec.exit_after_ready = rec.ready_returned;
  rec.current_in_exit = current != NULL;
  g_mutex_unlock (&rec.lock);
  rec_add ("exit %d", status.mqtt_online);
}

static void
parm_fill (iv_ota_init_parm_s *parm, const char *dir, const char *version, gboolean ask)
{
  memset (parm, 0, sizeof *parm);
  parm->iv_ota_firmware_update_cb = on_ready;
  parm->iv_ota_prepare_cb = ask ? on_prepare : NULL;
  parm->iv_ota_download_size_cb = on_size;
  parm->iv_ota_thread_exit_cb = on_thread_exit;
  parm->iv_ota_download_fail_cb = on_fail;
  g_strlcpy (parm->firmware_path, dir, sizeof parm->firmware_path);
  g_strlcpy (parm->firmware_version, version, sizeof parm->firmware_version);
}

/* ---- observers ---- */

typedef struct {
  GMutex lock;
  GPtrArray *events; /* "AGENT 1", "CONNECTION 1", "OFFERED m v", "PROGRESS m state v", "READY m v path" */
} Observed;

static void
on_event (const iv_ota_event_s *event, void *user_data)
{
  Observed *seen = user_data;
  char *text = NULL;

  switch (event->type) {
  case IV_OTA_EVENT_AGENT:
    text = g_strdup_printf ("AGENT %d", event->agent_present);
    break;
  case IV_OTA_EVENT_CONNECTION:
    text = g_strdup_printf ("CONNECTION %d", event->cloud_connected);
    break;
  case IV_OTA_EVENT_OFFERED:
    text = g_strdup_printf ("OFFERED %s %s %" G_GUINT64_FORMAT, event->module, event->version, event->total);
    break;
  case IV_OTA_EVENT_PROGRESS:
    text = g_strdup_printf ("PROGRESS %s %s %s", event->module, event->state, event->version);
    break;
  case IV_OTA_EVENT_READY:
    text = g_strdup_printf ("READY %s %s %s", event->module, event->version, event->path);
    break;
  }
  g_mutex_lock (&seen->lock);
  g_ptr_array_add (seen->events, text != NULL ? text : g_strdup ("UNKNOWN"));
  g_mutex_unlock (&seen->lock);
}

static Observed *
observed_new (void)
{
  Observed *seen = g_new0 (Observed, 1);

  g_mutex_init (&seen->lock);
  seen->events = g_ptr_array_new_with_free_func (g_free);
  return seen;
}

static void
observed_free (Observed *seen)
{
  g_ptr_array_unref (seen->events);
  g_mutex_clear (&seen->lock);
  g_free (seen);
}

/* Index of the first event equal to @text at or after @from, or -1. */
static int
observed_find (Observed *seen, guint from, const char *text)
{
  int found = -1;

  g_mutex_lock (&seen->lock);
  for (guint i = from; i < seen->events->len && found < 0; i++) {
    if (g_str_equal (g_ptr_array_index (seen->events, i), text))
      found = (int) i;
  }
  g_mutex_unlock (&seen->lock);
  return found;
}

typedef struct {
  Observed *seen;
  const char *text;
} ObservedWait;

static gboolean
observed_has (gpointer data)
{
  ObservedWait *w = data;
  return observed_find (w->seen, 0, w->text) >= 0;
}

static gboolean
observed_wait (Observed *seen, const char *text)
{
  ObservedWait w = { seen, text };
  return ota_test_wait (observed_has, &w, OTA_TEST_TIMEOUT_MS);
}

/* ---- fixture: the harness environment, cloud tools and app processes ---- */

typedef struct {
  OtaTestEnv env;
  GPtrArray *tools; /* OtaTestCloudTool */
  GPtrArray *md5s;  /* of each tool's firmware */
  GPtrArray *procs; /* OtaTestProcess */
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  /* @data: the [ota] keys of the test, when it needs others. */
  ota_test_env_setup (&f->env, data != NULL ? data : "retry_interval=1\n");
  f->tools = g_ptr_array_new_with_free_func ((GDestroyNotify) ota_test_cloud_tool_free);
  f->md5s = g_ptr_array_new_with_free_func (g_free);
  f->procs = g_ptr_array_new_with_free_func ((GDestroyNotify) ota_test_process_free);
  rec_reset ();
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_ptr_array_unref (f->procs);
  g_ptr_array_unref (f->tools);
  g_ptr_array_unref (f->md5s);
  ota_test_env_teardown (&f->env, NULL);
}

/* Starts iv-ota-cloud offering @size bytes as @version of @module, with up
 * to two more options (NULL: none). */
static OtaTestCloudTool *
start_cloud_with (Fixture *f, const char *module, gsize size, const char *extra_arg, const char *extra_arg2)
{
  g_autofree char *name = g_strdup_printf ("cloud-%s", *module != '\0' ? module : "main");
  g_autofree char *firmware = g_strdup_printf ("%s/%s.img", f->env.dir, name);
  g_autofree char *module_arg = g_strdup_printf ("--module=%s", module);
  const char *args[] = { module_arg, extra_arg, extra_arg != NULL ? extra_arg2 : NULL, NULL };
  OtaTestCloudTool *tool;

  g_ptr_array_add (f->md5s, ota_test_make_file (firmware, size));
  tool = ota_test_cloud_tool_start (f->env.dir, name, f->env.broker->port, TARGET, firmware, args);
  g_ptr_array_add (f->tools, tool);
  return tool;
}

static OtaTestCloudTool *
start_cloud (Fixture *f, const char *module, gsize size, const char *extra_arg)
{
  return start_cloud_with (f, module, size, extra_arg, NULL);
}

/* Spawns @argv with its output in DIR/@log_name, on the test's bus. */
static OtaTestProcess *
spawn_app (Fixture *f, const char *log_name, const char *const *argv)
{
  g_autofree char *log = g_build_filename (f->env.dir, log_name, NULL);
  g_auto (GStrv) envp = g_get_environ ();
  OtaTestProcess *proc;

  envp = g_environ_setenv (envp, "IV_OTA_BUS", "session", TRUE);
  envp = g_environ_setenv (envp, "IV_OTA_DEBUG", "1", TRUE);
  proc = ota_test_process_spawn ((char **) argv, envp, log, NULL);
  g_ptr_array_add (f->procs, proc);
  return proc;
}

static OtaTestProcess *
spawn_device_app (Fixture *f, const char *log_name)
{
  const char *argv[] = { g_getenv ("DEVICE_APP"), "-d", f->env.fw_dir, "-v", "1.0", NULL };

  g_assert_nonnull (argv[0]);
  return spawn_app (f, log_name, argv);
}

static OtaTestProcess *
spawn_module_app (Fixture *f, const char *module)
{
  g_autofree char *log_name = g_strdup_printf ("%s.log", module);
  const char *argv[] = { g_getenv ("CLIENT_MODULE"), module, f->env.fw_dir, "1.0", NULL };

  g_assert_nonnull (argv[0]);
  return spawn_app (f, log_name, argv);
}

static gboolean
process_exited (gpointer proc)
{
  return !ota_test_process_is_running (proc);
}

static void
assert_exits_cleanly (OtaTestProcess *proc, guint timeout_ms)
{
  g_assert_true (ota_test_wait (process_exited, proc, timeout_ms));
  g_assert_true (WIFEXITED (proc->status));
  g_assert_cmpint (WEXITSTATUS (proc->status), ==, 0);
}

static void
stop_cleanly (OtaTestProcess *proc)
{
  int status = ota_test_process_stop (proc, SIGTERM);

  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
}

static char *
log_text (OtaTestProcess *proc)
{
  char *text = NULL;

  if (!g_file_get_contents (proc->log_path, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

static guint
log_count (OtaTestProcess *proc, const char *needle)
{
  g_autofree char *text = log_text (proc);
  guint n = 0;

  for (const char *p = text; (p = strstr (p, needle)) != NULL; p++)
    n++;
  return n;
}

typedef struct {
  OtaTestProcess *proc;
  const char *needle;
} LogWait;

static gboolean
log_has (gpointer data)
{
  LogWait *w = data;
  return log_count (w->proc, w->needle) > 0;
}

static gboolean
wait_log (OtaTestProcess *proc, const char *needle, guint timeout_ms)
{
  LogWait w = { proc, needle };
  return ota_test_wait (log_has, &w, timeout_ms);
}

static char *
file_md5 (const char *path)
{
  g_autofree char *data = NULL;
  gsize len;

  if (!g_file_get_contents (path, &data, &len, NULL))
    return g_strdup ("none");
  return g_compute_checksum_for_data (G_CHECKSUM_MD5, (const guchar *) data, len);
}

static void
assert_installed (Fixture *f, const char *md5)
{
  g_autofree char *bin = g_build_filename (f->env.fw_dir, "installed.bin", NULL);
  g_autofree char *version_path = g_build_filename (f->env.fw_dir, "installed.version", NULL);
  g_autofree char *version = NULL;
  g_autofree char *installed_md5 = file_md5 (bin);

  g_assert_cmpstr (installed_md5, ==, md5);
  g_assert_true (g_file_get_contents (version_path, &version, NULL, NULL));
  g_assert_cmpstr (version, ==, TARGET);
}

/* ---- the classic flow, by examples/device-app ---- */

/* Second run of the device app: it runs the new version and the agent reports done by itself. */
static void
reboot_into_new_version (Fixture *f, const char *log_name)
{
  OtaTestProcess *app = spawn_device_app (f, log_name);

  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, 0, DONE_REPORT (TARGET), OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_true (wait_log (app, "registered with the OTA agent", OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (log_count (app, "firmware " TARGET " running"), ==, 1);
  stop_cleanly (app);
  g_assert_cmpuint (log_count (app, "OTA service ended"), ==, 1);
}

static void
test_classic_full_flow (Fixture *f, gconstpointer data)
{
  OtaTestProcess *app;
  g_autofree char *state = NULL;
  g_autofree char *owner = NULL;

  start_cloud (f, "", 300000, NULL);
  app = spawn_device_app (f, "app-1.log");
  assert_exits_cleanly (app, 3 * OTA_TEST_TIMEOUT_MS);
  g_assert_cmpuint (log_count (app, "update " TARGET " offered (300000 bytes): accepting"), ==, 1);
  g_assert_cmpuint (log_count (app, "firmware " TARGET " ready"), ==, 1);
  g_assert_cmpuint (log_count (app, "burning: 100%"), ==, 1);
  g_assert_cmpuint (log_count (app, "rebooting into " TARGET), ==, 1);
  /* iv_ota_exit from inside firmware_update_cb, then thread_exit_cb. */
  g_assert_cmpuint (log_count (app, "OTA service ended (cloud online)"), ==, 1);
  assert_installed (f, g_ptr_array_index (f->md5s, 0));
  g_assert_cmpint (ota_test_cloud_wait_report_containing (f->env.cloud, 0, "\"state\":\"burning\",\"percent\":\"100\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  state = ota_test_status_get (f->env.proxy, "", "state");
  owner = ota_test_status_get (f->env.proxy, "", "owner");
  g_assert_cmpstr (state, ==, "rebooting");
  g_assert_cmpstr (owner, ==, "");
  g_assert_cmpuint (ota_test_cloud_count_reports (f->env.cloud, "\"state\":\"done\""), ==, 0);
  reboot_into_new_version (f, "app-2.log");
}

/* Boot order: the app starts first. iv_ota_init waits for the agent (up to
 * IV_OTA_INIT_TIMEOUT, 30 s by default) instead of failing at once, and the
 * update goes through once the agent comes. */
static void
test_app_before_agent (Fixture *f, gconstpointer data)
{
  OtaTestProcess *app;

  start_cloud (f, "", 100000, NULL);
  ota_test_agent_stop (f->env.agent);
  app = spawn_device_app (f, "app-1.log");
  g_assert_true (wait_log (app, "waiting up to 30000 ms for the agent", OTA_TEST_TIMEOUT_MS));
  ota_test_spin (5000);
  g_assert_true (ota_test_process_is_running (app));
  ota_test_agent_start (f->env.agent);
  assert_exits_cleanly (app, 3 * OTA_TEST_TIMEOUT_MS);
  g_assert_cmpuint (log_count (app, "cannot start OTA"), ==, 0);
  g_assert_cmpuint (log_count (app, "firmware " TARGET " ready"), ==, 1);
  assert_installed (f, g_ptr_array_index (f->md5s, 0));
  reboot_into_new_version (f, "app-2.log");
}

/* ---- an app written the way vendors write it ---- */

static OtaTestProcess *
spawn_vendor_app (Fixture *f, const char *log_name)
{
  g_autofree char *version_file = g_build_filename (f->env.dir, "vendor.version", NULL);
  g_autofree char *flash = g_build_filename (f->env.dir, "vendor.flash", NULL);
  const char *argv[] = { g_getenv ("VENDOR_APP"), f->env.fw_dir, version_file, flash, NULL };

  g_assert_nonnull (argv[0]);
  return spawn_app (f, log_name, argv);
}

/* REBOOT and SUCCESS never reported, iv_ota_exit() inside firmware_update_cb,
 * the image moved away with mv, the "reboot" a restart of the process at the
 * new version; the download is cut once and resumed. The cloud ends with
 * done, once, and no fail. */
static void
test_vendor_app (Fixture *f, gconstpointer data)
{
  g_autofree char *version_file = g_build_filename (f->env.dir, "vendor.version", NULL);
  g_autofree char *flash = g_build_filename (f->env.dir, "vendor.flash", NULL);
  g_autofree char *flash_md5 = NULL;
  g_autofree char *version = NULL;
  g_autoptr (GArray) responses = NULL;
  g_autofree char *ready = g_strdup_printf ("ready %s/FW_" TARGET ".bin %u", f->env.fw_dir, SLOW_SIZE);
  OtaTestCloudTool *tool;
  OtaTestProcess *app;

  g_assert_true (g_file_set_contents (version_file, "1.0\n", -1, NULL));
  tool = start_cloud (f, "", SLOW_SIZE, "--cut-after=200000");
  app = spawn_vendor_app (f, "vendor-1.log");
  assert_exits_cleanly (app, 3 * OTA_TEST_TIMEOUT_MS);
  g_assert_cmpuint (log_count (app, ready), ==, 1);
  g_assert_cmpuint (log_count (app, "burnt " TARGET), ==, 1);
  g_assert_cmpuint (log_count (app, "thread exit"), ==, 1);
  flash_md5 = file_md5 (flash);
  g_assert_cmpstr (flash_md5, ==, g_ptr_array_index (f->md5s, 0));
  /* Cut at 200000 bytes, then resumed from where it was. */
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, >=, 2);
  g_assert_cmpint (g_array_index (responses, OtaTestResponse, 1).range_start, >, 0);
  g_assert_cmpuint (g_array_index (responses, OtaTestResponse, 1).status, ==, 206);
  g_assert_cmpint (ota_test_cloud_wait_report_containing (f->env.cloud, 0, "\"state\":\"burning\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  g_assert_cmpuint (ota_test_cloud_count_reports (f->env.cloud, "\"state\":\"done\""), ==, 0);
  /* The "reboot": the same program, now at the version it burnt. */
  g_assert_true (g_file_get_contents (version_file, &version, NULL, NULL));
  g_assert_cmpstr (version, ==, TARGET "\n");
  app = spawn_vendor_app (f, "vendor-2.log");
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, 0, DONE_REPORT (TARGET), OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_true (wait_log (app, "version " TARGET, OTA_TEST_TIMEOUT_MS));
  ota_test_spin (500);
  g_assert_cmpuint (ota_test_cloud_count_reports (f->env.cloud, "\"state\":\"done\""), ==, 1);
  g_assert_cmpuint (ota_test_cloud_count_reports (f->env.cloud, "\"state\":\"fail\""), ==, 0);
  g_assert_cmpuint (log_count (app, "offer "), ==, 0);
  ota_test_process_stop (app, SIGKILL);
}

/* ---- modules and observers ---- */

static const char *const modules[] = { "m1", "m2", "m3" };
#define MODULE_SIZE(i) (100000 + 1000 * (i))

/* The module app @i got its own image, once, and nobody else's. */
static void
assert_own_firmware (Fixture *f, OtaTestProcess *app, guint i)
{
  g_autofree char *text = log_text (app);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_autofree char *expected = g_strdup_printf ("READY %s %u %s/FW_%s_%s.bin", modules[i], MODULE_SIZE (i),
                                               f->env.fw_dir, modules[i], TARGET);
  g_autofree char *path = g_strdup_printf ("%s/FW_%s_%s.bin", f->env.fw_dir, modules[i], TARGET);
  g_autofree char *md5 = file_md5 (path);
  guint ready = 0;

  for (guint l = 0; lines[l] != NULL; l++) {
    if (g_str_has_prefix (lines[l], "READY ")) {
      g_assert_cmpstr (lines[l], ==, expected);
      ready++;
    }
  }
  g_assert_cmpuint (ready, ==, 1);
  g_assert_cmpuint (log_count (app, "MISMATCH"), ==, 0);
  g_assert_cmpstr (md5, ==, g_ptr_array_index (f->md5s, i));
}

static void
assert_snapshot (Observed *late)
{
  g_assert_true (observed_wait (late, "PROGRESS m3 done " TARGET));
  g_mutex_lock (&late->lock);
  g_assert_cmpstr (g_ptr_array_index (late->events, 0), ==, "AGENT 1");
  g_mutex_unlock (&late->lock);
  g_assert_cmpint (observed_find (late, 0, "CONNECTION 1"), >=, 0);
  for (guint i = 0; i < G_N_ELEMENTS (modules); i++) {
    g_autofree char *done = g_strdup_printf ("PROGRESS %s done %s", modules[i], TARGET);
    g_assert_cmpint (observed_find (late, 0, done), >=, 0);
  }
}

static void
test_three_modules_and_observer (Fixture *f, gconstpointer data)
{
  Observed *seen = observed_new (), *late = observed_new ();
  iv_ota_observer_s *observer = NULL, *late_observer = NULL;
  OtaTestProcess *apps[G_N_ELEMENTS (modules)];

  for (guint i = 0; i < G_N_ELEMENTS (modules); i++)
    start_cloud (f, modules[i], MODULE_SIZE (i), NULL);
  g_assert_cmpint (iv_ota_observer_add (on_event, seen, &observer), ==, IV_ERR_NONE);
  for (guint i = 0; i < G_N_ELEMENTS (modules); i++)
    apps[i] = spawn_module_app (f, modules[i]);
  for (guint i = 0; i < G_N_ELEMENTS (modules); i++) {
    g_autofree char *done = g_strdup_printf ("DONE %s 0", modules[i]);
    g_autofree char *ready = g_strdup_printf ("READY %s %s %s/FW_%s_%s.bin", modules[i], TARGET, f->env.fw_dir,
                                              modules[i], TARGET);
    g_autofree char *finished = g_strdup_printf ("PROGRESS %s done %s", modules[i], TARGET);
    g_assert_true (wait_log (apps[i], done, 2 * OTA_TEST_TIMEOUT_MS));
    g_assert_true (observed_wait (seen, ready));
    g_assert_true (observed_wait (seen, finished));
  }
  for (guint i = 0; i < G_N_ELEMENTS (modules); i++)
    assert_own_firmware (f, apps[i], i);
  /* A late observer gets the state of every module first. */
  g_assert_cmpint (iv_ota_observer_add (on_event, late, &late_observer), ==, IV_ERR_NONE);
  assert_snapshot (late);
  g_assert_cmpint (iv_ota_observer_remove (late_observer), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_observer_remove (observer), ==, IV_ERR_NONE);
  for (guint i = 0; i < G_N_ELEMENTS (modules); i++) {
    g_autofree char *exit_line = g_strdup_printf ("EXIT %s 1", modules[i]);
    stop_cleanly (apps[i]);
    g_assert_cmpuint (log_count (apps[i], exit_line), ==, 1);
  }
  observed_free (seen);
  observed_free (late);
}

static void
test_second_owner_refused (Fixture *f, gconstpointer data)
{
  OtaTestProcess *mcu = spawn_module_app (f, "mcu");
  OtaTestProcess *main_app = spawn_device_app (f, "main.log");
  iv_ota_module_s *handle = NULL, *radio = NULL, *again = NULL;
  iv_ota_init_parm_s parm;

  g_assert_true (wait_log (mcu, "OPEN mcu", OTA_TEST_TIMEOUT_MS));
  g_assert_true (wait_log (main_app, "registered with the OTA agent", OTA_TEST_TIMEOUT_MS));
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  /* Owned by another process: the agent says Busy. */
  g_assert_cmpint (iv_ota_module_open ("mcu", &parm, NULL, &handle), ==, IV_ERR_OTA_BUSY);
  g_assert_null (handle);
  g_assert_nonnull (strstr (iv_ota_last_error (), "owned"));
  /* The classic API knows only "could not start". */
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_START_FAIL);
  g_assert_cmpstr (iv_ota_last_error (), !=, "");
  /* Twice in one process: refused by the library itself. */
  g_assert_cmpint (iv_ota_module_open ("radio", &parm, NULL, &radio), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_module_open ("radio", &parm, NULL, &again), ==, IV_ERR_OTA_BUSY);
  g_assert_null (again);
  g_assert_cmpint (iv_ota_module_exit (radio), ==, IV_ERR_NONE);
  g_assert_cmpuint (rec_count ("exit ", NULL), ==, 1);
  stop_cleanly (mcu);
  stop_cleanly (main_app);
}

/* ---- the agent restarts under a running app ---- */

static gboolean
download_started (gpointer data)
{
  Fixture *f = data;
  g_autoptr (GVariant) status = NULL;
  guint64 downloaded = 0;

  /* NoSuchModule until the app has registered. */
  if (!ota_dbus_ota_call_get_status_sync (f->env.proxy, "", &status, NULL, NULL))
    return FALSE;
  return g_variant_lookup (status, "downloaded", "t", &downloaded) && downloaded > 0;
}

static void
test_agent_restart_mid_download (Fixture *f, gconstpointer data)
{
  Observed *seen = observed_new ();
  iv_ota_observer_s *observer = NULL;
  OtaTestProcess *app;
  int gone;

  start_cloud (f, "", SLOW_SIZE, SLOW_RATE);
  g_assert_cmpint (iv_ota_observer_add (on_event, seen, &observer), ==, IV_ERR_NONE);
  app = spawn_device_app (f, "app-1.log");
  g_assert_true (ota_test_wait (download_started, f, OTA_TEST_TIMEOUT_MS));
  ota_test_agent_kill (f->env.agent);
  ota_test_agent_start (f->env.agent);
  g_assert_true (ota_test_process_is_running (app));
  /* The library registered again by itself; the cloud offered again; it completes. */
  assert_exits_cleanly (app, 3 * OTA_TEST_TIMEOUT_MS);
  assert_installed (f, g_ptr_array_index (f->md5s, 0));
  g_assert_cmpuint (log_count (app, "failed"), ==, 0);
  g_assert_cmpuint (log_count (app, "registered again"), ==, 1);
  gone = observed_find (seen, 0, "AGENT 0");
  g_assert_cmpint (gone, >=, 0);
  g_assert_cmpint (observed_find (seen, (guint) gone, "AGENT 1"), >, gone);
  g_assert_cmpint (iv_ota_observer_remove (observer), ==, IV_ERR_NONE);
  observed_free (seen);
  reboot_into_new_version (f, "app-2.log");
}

/* ---- callbacks calling the API (in-process classic app) ---- */

static void
test_api_inside_callbacks (Fixture *f, gconstpointer data)
{
  iv_ota_init_parm_s parm;
  g_autofree char *owner = NULL;
  g_autofree char *first_exit = NULL;

  start_cloud (f, "", 200000, NULL);
  rec.ready_action = READY_REPORT_EXIT;
  parm_fill (&parm, f->env.fw_dir, "1.0", TRUE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_null (iv_ota_module_current ());
  g_assert_true (ota_test_wait (rec_has, "exit ", 2 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (rec.rc_write_flash, ==, IV_ERR_NONE);
  g_assert_cmpint (rec.rc_writing_flash, ==, IV_ERR_NONE);
  g_assert_cmpint (rec.rc_exit, ==, IV_ERR_NONE);
  g_assert_cmpint (rec.rc_after_exit, ==, IV_ERR_OTA_NOT_INITIALIZED);
  g_assert_true (rec.exit_after_ready);
  g_assert_true (rec.current_in_ready);
  g_assert_true (rec.current_in_exit);
  g_assert_cmpuint (rec_count ("exit ", &first_exit), ==, 1);
  g_assert_cmpstr (first_exit, ==, "exit 1");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (f->env.cloud, 0, "\"state\":\"burning\",\"percent\":\"50\"",
                                                          OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  owner = ota_test_status_get (f->env.proxy, "", "owner");
  g_assert_cmpstr (owner, ==, "");
  /* Initialised again from the main thread; its exit returns after thread_exit_cb. */
  rec.ready_action = READY_IDLE;
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_ALREADY_INITIALIZED);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
  g_assert_cmpuint (rec_count ("exit ", NULL), ==, 2);
}

/* ---- iv_ota_exit while a download runs ---- */

static gboolean
some_bytes_reported (gpointer data)
{
  g_autofree char *first = NULL;

  g_mutex_lock (&rec.lock);
  for (guint i = 0; i < rec.calls->len && first == NULL; i++) {
    const char *call = g_ptr_array_index (rec.calls, i);
    if (g_str_has_prefix (call, "size ") && !g_str_equal (call, "size 0"))
      first = g_strdup (call);
  }
  g_mutex_unlock (&rec.lock);
  return first != NULL;
}

static gboolean
file_exists (gpointer path)
{
  return g_file_test (path, G_FILE_TEST_EXISTS);
}

static void
test_exit_during_download (Fixture *f, gconstpointer data)
{
  g_autofree char *record = g_build_filename (f->env.fw_dir, "FW_" TARGET ".json", NULL);
  g_autofree char *state = NULL;
  g_autofree char *owner = NULL;
  iv_ota_init_parm_s parm;
  guint calls;

  start_cloud (f, "", SLOW_SIZE, SLOW_RATE);
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (some_bytes_reported, NULL, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
  /* On return thread_exit_cb has run, and nothing follows it. */
  g_assert_cmpuint (rec_count ("exit ", NULL), ==, 1);
  calls = rec_total ();
  state = ota_test_status_get (f->env.proxy, "", "state");
  owner = ota_test_status_get (f->env.proxy, "", "owner");
  g_assert_cmpstr (state, ==, "idle");
  g_assert_cmpstr (owner, ==, "");
  /* The partial download stays for resume. */
  g_assert_true (ota_test_wait (file_exists, record, OTA_TEST_TIMEOUT_MS));
  ota_test_spin (500);
  g_assert_cmpuint (rec_total (), ==, calls);
  g_assert_cmpuint (rec_count ("ready ", NULL), ==, 0);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_OTA_NOT_INITIALIZED);
}

/* ---- callbacks in the order the SDK calls them ---- */

/* The sizes download_size_cb got before the first firmware_update_cb: never
 * 0, never going back, the last one the image size. Returns how many. */
static guint
assert_sizes_then_ready (guint64 total, guint64 at_least_first)
{
  guint64 last = 0;
  guint sizes = 0;
  gboolean ready = FALSE;

  g_mutex_lock (&rec.lock);
  for (guint i = 0; i < rec.calls->len && !ready; i++) {
    const char *call = g_ptr_array_index (rec.calls, i);
    if (g_str_has_prefix (call, "size ")) {
      guint64 size = g_ascii_strtoull (call + 5, NULL, 10);
      if (sizes == 0)
        g_assert_cmpuint (size, >=, at_least_first);
      g_assert_cmpuint (size, >=, last);
      g_assert_cmpuint (size, >, 0);
      last = size;
      sizes++;
    }
    ready = g_str_has_prefix (call, "ready ");
  }
  g_mutex_unlock (&rec.lock);
  g_assert_true (ready);
  g_assert_cmpuint (last, ==, total);
  return sizes;
}

static gboolean
record_has_bytes (gpointer data)
{
  return ota_test_record_downloaded (data) > 0;
}

/* A slow download: sizes climb to the image size before the image is handed
 * over. Cut by iv_ota_exit, then a new session: the resumed image never
 * starts again at 0 (nor anywhere below where it resumed). */
static void
test_size_callbacks (Fixture *f, gconstpointer data)
{
  iv_ota_init_parm_s parm;
  gint64 resumed_at;

  start_cloud (f, "", SLOW_SIZE, SLOW_RATE);
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (some_bytes_reported, NULL, OTA_TEST_TIMEOUT_MS));
  g_assert_true (ota_test_wait (record_has_bytes, &f->env, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
  resumed_at = ota_test_record_downloaded (&f->env);
  g_assert_cmpint (resumed_at, >, 0);
  rec_reset ();
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (rec_has, "ready ", 3 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (assert_sizes_then_ready (SLOW_SIZE, (guint64) resumed_at), >=, 2);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
}

/* The longest run of equal consecutive sizes download_size_cb got. */
static gboolean
sizes_repeat (gpointer data)
{
  guint run = 0, longest = 0;
  const char *last = NULL;

  g_mutex_lock (&rec.lock);
  for (guint i = 0; i < rec.calls->len; i++) {
    const char *call = g_ptr_array_index (rec.calls, i);
    if (!g_str_has_prefix (call, "size "))
      continue;
    run = last != NULL && g_str_equal (call, last) ? run + 1 : 1;
    longest = MAX (longest, run);
    last = call;
  }
  g_mutex_unlock (&rec.lock);
  return longest >= GPOINTER_TO_UINT (data);
}

/* download_size_cb runs on the library's own clock (4 a second) while the
 * module downloads, not only when the agent's Progress comes: a transfer
 * that stalls (no byte, no Progress) still gets its calls, with the same
 * size. */
static void
test_size_ticks (Fixture *f, gconstpointer data)
{
  iv_ota_init_parm_s parm;

  /* Bytes for a while (the agent publishes some), then none. */
  start_cloud_with (f, "", SLOW_SIZE, SLOW_RATE, "--stall-after=400000");
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (sizes_repeat, GUINT_TO_POINTER (8), OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (rec_count ("size 0", NULL), ==, 0);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
}

/* firmware_update_cb ends its session and starts a new one, as some vendors
 * restart their OTA service: the old session's thread_exit_cb has run when
 * the new iv_ota_init returns (nested in the callback), and only once. */
static struct {
  int exit_rc, init_rc;
  guint exits_before_init_returned;
  const char *dir;
} reinit;

static void
on_ready_reinit (char *path, uint32_t size)
{
  iv_ota_init_parm_s parm;

  rec_add ("ready %s %u", path, size);
  parm_fill (&parm, reinit.dir, "1.0", FALSE);
  parm.iv_ota_firmware_update_cb = on_ready;
  reinit.exit_rc = iv_ota_exit ();
  reinit.init_rc = iv_ota_init (&parm);
  reinit.exits_before_init_returned = rec_count ("exit ", NULL);
  rec_add ("reinit done");
}

static void
test_reinit_inside_callback (Fixture *f, gconstpointer data)
{
  iv_ota_init_parm_s parm;

  start_cloud (f, "", 100000, NULL);
  reinit.dir = f->env.fw_dir;
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  parm.iv_ota_firmware_update_cb = on_ready_reinit;
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (rec_has, "reinit done", 2 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (reinit.exit_rc, ==, IV_ERR_NONE);
  g_assert_cmpint (reinit.init_rc, ==, IV_ERR_NONE);
  g_assert_cmpuint (reinit.exits_before_init_returned, ==, 1);
  ota_test_spin (200);
  g_assert_cmpuint (rec_count ("exit ", NULL), ==, 1);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
  g_assert_cmpuint (rec_count ("exit ", NULL), ==, 2);
}

/* An observer added from inside another observer's callback (on a live
 * event) gets its snapshot before any live event. */
typedef struct {
  Observed *seen;
  iv_ota_observer_s *added;
  int add_rc;
  GPtrArray *flags; /* "S" snapshot or "L" live, per event of the added observer */
} Nesting;

static void
on_event_flags (const iv_ota_event_s *event, void *user_data)
{
  Nesting *n = user_data;

  g_mutex_lock (&n->seen->lock);
  g_ptr_array_add (n->flags, g_strdup (event->snapshot ? "S" : "L"));
  g_mutex_unlock (&n->seen->lock);
}

static void
on_event_add_observer (const iv_ota_event_s *event, void *user_data)
{
  Nesting *n = user_data;

  if (event->snapshot || n->added != NULL)
    return;
  n->add_rc = iv_ota_observer_add (on_event_flags, n, &n->added);
}

static gboolean
nesting_has_live (gpointer data)
{
  Nesting *n = data;
  gboolean live = FALSE;

  g_mutex_lock (&n->seen->lock);
  for (guint i = 0; i < n->flags->len && !live; i++)
    live = g_str_equal (g_ptr_array_index (n->flags, i), "L");
  g_mutex_unlock (&n->seen->lock);
  return live;
}

static void
test_observer_added_inside_observer (Fixture *f, gconstpointer data)
{
  Nesting n = { observed_new (), NULL, 1, g_ptr_array_new_with_free_func (g_free) };
  iv_ota_observer_s *outer = NULL;
  g_autoptr (GString) order = g_string_new ("");

  start_cloud (f, "", 100000, NULL);
  g_assert_cmpint (iv_ota_observer_add (on_event_add_observer, &n, &outer), ==, IV_ERR_NONE);
  spawn_device_app (f, "app.log");
  g_assert_true (ota_test_wait (nesting_has_live, &n, 2 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (n.add_rc, ==, IV_ERR_NONE);
  g_mutex_lock (&n.seen->lock);
  for (guint i = 0; i < n.flags->len; i++)
    g_string_append (order, g_ptr_array_index (n.flags, i));
  g_mutex_unlock (&n.seen->lock);
  /* AGENT, CONNECTION and the module: snapshot first, then live. */
  g_assert_true (g_str_has_prefix (order->str, "SS"));
  g_assert_null (strstr (order->str, "LS"));
  g_assert_cmpint (iv_ota_observer_remove (n.added), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_observer_remove (outer), ==, IV_ERR_NONE);
  g_ptr_array_unref (n.flags);
  observed_free (n.seen);
}

/* ---- the agent restarts while firmware_update_cb burns ---- */

static struct {
  GMutex lock;
  int phase; /* 1: burning reported, 2: agent restarted, 3: reboot reported */
  int rc_burning, rc_reboot;
  char *reboot_error;
} burn;

static int
burn_phase (void)
{
  int phase;

  g_mutex_lock (&burn.lock);
  phase = burn.phase;
  g_mutex_unlock (&burn.lock);
  return phase;
}

static void
burn_set_phase (int phase)
{
  g_mutex_lock (&burn.lock);
  burn.phase = phase;
  g_mutex_unlock (&burn.lock);
}

static gboolean
burn_reached (gpointer phase)
{
  return burn_phase () >= GPOINTER_TO_INT (phase);
}

/* Burns for as long as the test needs to restart the agent, then reports the
 * reboot: from inside the callback, the library registers with the new
 * agent, which still knows the cycle. */
static void
on_ready_burn_slowly (char *path, uint32_t size)
{
  rec_add ("ready %s %u", path, size);
  burn.rc_burning = iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITE_FLASH, 0);
  burn_set_phase (1);
  while (burn_phase () < 2)
    g_usleep (10000);
  burn.rc_reboot = iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_REBOOT, 0);
  burn.reboot_error = g_strdup (iv_ota_last_error ());
  iv_ota_exit ();
  burn_set_phase (3);
}

static void
test_agent_restart_inside_callback (Fixture *f, gconstpointer data)
{
  iv_ota_init_parm_s parm;
  g_autofree char *state = NULL;

  start_cloud (f, "", 100000, NULL);
  burn.phase = 0;
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  parm.iv_ota_firmware_update_cb = on_ready_burn_slowly;
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (burn_reached, GINT_TO_POINTER (1), 2 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (burn.rc_burning, ==, IV_ERR_NONE);
  ota_test_agent_kill (f->env.agent);
  ota_test_agent_start (f->env.agent);
  ota_test_env_reconnect_app (&f->env);
  burn_set_phase (2);
  g_assert_true (ota_test_wait (burn_reached, GINT_TO_POINTER (3), 2 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpstr (burn.reboot_error, ==, "");
  g_assert_cmpint (burn.rc_reboot, ==, IV_ERR_NONE);
  state = ota_test_status_get (f->env.proxy, "", "state");
  g_assert_cmpstr (state, ==, "rebooting");
  g_clear_pointer (&burn.reboot_error, g_free);
  /* After the "reboot", the new version: done. */
  parm.iv_ota_firmware_update_cb = on_ready;
  g_strlcpy (parm.firmware_version, TARGET, sizeof parm.firmware_version);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, 0, DONE_REPORT (TARGET), OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
}

/* ---- fork ---- */

typedef struct {
  Fixture *f;
  const char *module;
} OwnerWait;

static gboolean
module_unowned (gpointer data)
{
  OwnerWait *w = data;
  g_autofree char *owner = ota_test_status_get (w->f->env.proxy, w->module, "owner");

  return g_str_equal (owner, "");
}

/* An app forks a helper that lingers without exec. The child does not hold
 * the parent's registration: when the parent dies, the agent releases its
 * module at once, child or no child. The child may use the library afresh. */
static void
test_fork_child (Fixture *f, gconstpointer data)
{
  g_autofree char *test_pid = g_strdup_printf ("%d", (int) getpid ());
  const char *argv[] = { g_getenv ("CLIENT_MODULE"), "forked", f->env.fw_dir, "1.0", "fork", NULL };
  OwnerWait w = { f, "forked" };
  g_autofree char *owner = NULL;
  g_autofree char *text = NULL;
  OtaTestProcess *app;
  int child = 0, rc = 1;
  const char *line;

  /* qemu 7.2 user mode aborts (an assertion in its vCPU setup) when a fork
   * child of a threaded program starts a thread, as the library does here:
   * an emulator bug, not ours; this case runs natively only. */
  if (ota_test_emulated ()) {
    g_test_skip ("qemu user mode cannot run threads in a fork child of a threaded program");
    return;
  }
  g_assert_nonnull (argv[0]);
  g_setenv ("TEST_PID", test_pid, TRUE);
  app = spawn_app (f, "forked.log", argv);
  g_unsetenv ("TEST_PID");
  g_assert_true (wait_log (app, "CHILD ", OTA_TEST_TIMEOUT_MS));
  text = log_text (app);
  line = strstr (text, "CHILD ");
  g_assert_cmpint (sscanf (line, "CHILD %d %d", &child, &rc), ==, 2);
  g_assert_cmpint (child, >, 1);
  g_assert_cmpint (rc, ==, IV_ERR_NONE);
  owner = ota_test_status_get (f->env.proxy, "forked", "owner");
  g_assert_cmpstr (owner, !=, "");
  ota_test_process_stop (app, SIGKILL);
  g_assert_true (ota_test_wait (module_unowned, &w, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (kill (child, SIGKILL), ==, 0);
}

/* ---- prepare_cb defers ---- */

static void
test_prepare_defers (Fixture *f, gconstpointer data)
{
  iv_ota_init_parm_s parm;
  g_autofree char *first = NULL;
  g_autofree char *ready = NULL;
  g_autofree char *expected = g_strdup_printf ("ready %s/FW_" TARGET ".bin 100000", f->env.fw_dir);

  start_cloud (f, "", 100000, NULL);
  rec.defer_left = 1;
  parm_fill (&parm, f->env.fw_dir, "1.0", TRUE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (rec_has, "ready ", 2 * OTA_TEST_TIMEOUT_MS));
  /* Asked again after the deferral: the agent re-reported, the cloud re-offered. */
  g_assert_cmpuint (rec_count ("prepare ", &first), >=, 2);
  g_assert_cmpstr (first, ==, "prepare " TARGET " 100000");
  g_assert_cmpuint (rec_count ("ready ", &ready), ==, 1);
  g_assert_cmpstr (ready, ==, expected);
  g_assert_cmpuint (rec_count ("fail ", NULL), ==, 0);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
}

/* ---- download_fail_cb ---- */

static void
assert_download_fails (Fixture *f, const char *fault, const char *expected_prefix)
{
  iv_ota_init_parm_s parm;
  g_autofree char *first = NULL;

  start_cloud (f, "", 100000, fault);
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (rec_has, "fail ", 2 * OTA_TEST_TIMEOUT_MS));
  rec_count ("fail ", &first);
  g_assert_true (g_str_has_prefix (first, expected_prefix));
  g_assert_true (g_str_has_suffix (first, " 100000 " TARGET));
  g_assert_cmpuint (rec_count ("ready ", NULL), ==, 0);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
}

static void
test_download_fail_not_found (Fixture *f, gconstpointer data)
{
  g_autofree char *prefix = g_strdup_printf ("fail %d -2 ", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD);

  assert_download_fails (f, "--status=404", prefix);
}

static void
test_download_fail_md5 (Fixture *f, gconstpointer data)
{
  g_autofree char *prefix = g_strdup_printf ("fail %d -4 ", IV_OTA_FAIL_TYPE_MD5_CHECK);

  assert_download_fails (f, "--md5=0123456789abcdef0123456789abcdef", prefix);
}

/* ---- binaries built against either generation of the SDK's iv_ota.h ---- */

/* Runs client-abi-app (@env_name) with its structure placed as @placement;
 * returns its output once it has exited cleanly. */
static char *
run_abi_app (Fixture *f, const char *env_name, const char *placement)
{
  g_autofree char *log_name = g_strdup_printf ("%s-%s.log", env_name, placement);
  const char *argv[] = { g_getenv (env_name), placement, f->env.fw_dir, "1.0", NULL };
  OtaTestProcess *app;

  g_assert_nonnull (argv[0]);
  app = spawn_app (f, log_name, argv);
  /* A read past the structure: ASan's report and exit 1, or SIGSEGV at the guard page. */
  assert_exits_cleanly (app, 3 * OTA_TEST_TIMEOUT_MS);
  return log_text (app);
}

/* An object compiled against the SDK's first iv_ota.h (no
 * iv_ota_download_fail_cb: 256 bytes on 64-bit targets, 240 on 32-bit ones)
 * calls the plain iv_ota_init: it reads no byte past the structure, and the
 * whole flow works. */
static void
test_abi_sdk_first_generation (Fixture *f, gconstpointer data)
{
  const char *placements[] = { "heap", "guard" };
  g_autofree char *layout =
    g_strdup_printf ("LAYOUT %d\n", (int) offsetof (iv_ota_init_parm_s, iv_ota_download_fail_cb));

  start_cloud (f, "", 100000, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (placements); i++) {
    g_autofree char *out = run_abi_app (f, "CLIENT_ABI_APP_SDK", placements[i]);
    g_assert_nonnull (strstr (out, layout));
    g_assert_nonnull (strstr (out, "INIT 0\n"));
    g_assert_nonnull (strstr (out, "READY 100000\n"));
    g_assert_nonnull (strstr (out, "DONE 0\n"));
  }
}

/* Rebuilt against our iv_ota.h, the same source reaches iv_ota_init_sized
 * with all its bytes (264 on 64-bit targets, 244 on 32-bit ones):
 * download_fail_cb is seen, and nothing past it is read. */
static void
test_abi_current_header (Fixture *f, gconstpointer data)
{
  const char *placements[] = { "heap", "guard" };
  g_autofree char *layout = g_strdup_printf ("LAYOUT %d\n", (int) sizeof (iv_ota_init_parm_s));
  g_autofree char *fail = g_strdup_printf ("FAIL %d -2\n", IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD);

  start_cloud (f, "", 100000, "--status=404");
  for (guint i = 0; i < G_N_ELEMENTS (placements); i++) {
    g_autofree char *out = run_abi_app (f, "CLIENT_ABI_APP", placements[i]);
    g_assert_nonnull (strstr (out, layout));
    g_assert_nonnull (strstr (out, "INIT 0\n"));
    g_assert_nonnull (strstr (out, fail));
  }
}

/* iv_ota_init_sized takes any size from the first generation's up, and
 * refuses smaller ones before reading anything. */
static void
test_abi_sizes (void)
{
  iv_ota_init_parm_s parm;

  memset (&parm, 0, sizeof parm);
  g_assert_cmpint (iv_ota_init_sized (&parm, 0), ==, IV_ERR_OTA_INIT_PRM_NULL);
  g_assert_nonnull (strstr (iv_ota_last_error (), "smaller"));
  g_assert_cmpint (iv_ota_init_sized (&parm, offsetof (iv_ota_init_parm_s, iv_ota_download_fail_cb) - 1), ==,
                   IV_ERR_OTA_INIT_PRM_NULL);
  /* Big enough: the checks of the fields come next. */
  g_assert_cmpint (iv_ota_init_sized (&parm, offsetof (iv_ota_init_parm_s, iv_ota_download_fail_cb)), ==,
                   IV_ERR_OTA_INIT_CB_NULL);
  g_assert_cmpint (iv_ota_init_sized (&parm, sizeof parm - 4), ==, IV_ERR_OTA_INIT_CB_NULL);
  g_assert_cmpint (iv_ota_init_sized (&parm, sizeof parm + 64), ==, IV_ERR_OTA_INIT_CB_NULL);
  g_assert_cmpint (iv_ota_init_sized (NULL, sizeof parm), ==, IV_ERR_OTA_INIT_PRM_NULL);
  g_assert_cmpint ((iv_ota_init) (NULL), ==, IV_ERR_OTA_INIT_PRM_NULL);
}

/* An image over max_firmware_size: the agent's fail_kind "size" makes it
 * IV_OTA_FAIL_TYPE_WRONG_SIZE, whatever its message says. */
static void
test_download_fail_size (Fixture *f, gconstpointer data)
{
  g_autofree char *prefix = g_strdup_printf ("fail %d -5 ", IV_OTA_FAIL_TYPE_WRONG_SIZE);

  /* Without the kind, a -5 would be IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD. */
  assert_download_fails (f, NULL, prefix);
}

/* ---- argument checks and return codes ---- */

static void
test_bad_arguments (Fixture *f, gconstpointer data)
{
  g_autofree char *file = g_build_filename (f->env.dir, "plain-file", NULL);
  g_autofree char *address = g_strdup (g_getenv ("DBUS_SESSION_BUS_ADDRESS"));
  iv_ota_init_parm_s parm;
  iv_ota_module_s *handle = NULL;

  g_assert_cmpint (iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITE_FLASH, 0), ==, IV_ERR_OTA_NOT_INITIALIZED);
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_OTA_NOT_INITIALIZED);
  g_assert_cmpint (iv_ota_init (NULL), ==, IV_ERR_OTA_INIT_PRM_NULL);
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  parm.iv_ota_firmware_update_cb = NULL;
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_INIT_CB_NULL);
  parm_fill (&parm, f->env.fw_dir, "", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_INIT_PRM_NULL);
  parm_fill (&parm, f->env.fw_dir, "1 0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_INIT_PRM_NULL);
  memset (parm.firmware_version, 'a', sizeof parm.firmware_version); /* no NUL */
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_INIT_PRM_NULL);
  parm_fill (&parm, "/nonexistent/dir", "1.0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_INIT_PRM_NULL);
  g_assert_true (g_file_set_contents (file, "x", -1, NULL));
  parm_fill (&parm, file, "1.0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_INIT_PRM_NULL);
  parm_fill (&parm, f->env.fw_dir, "1.0", FALSE);
  g_assert_cmpint (iv_ota_module_open ("../x", &parm, NULL, &handle), ==, IV_ERR_OTA_INIT_PRM_NULL);
  g_assert_cmpint (iv_ota_module_open ("a/b", &parm, NULL, &handle), ==, IV_ERR_OTA_INIT_PRM_NULL);
  g_assert_cmpint (iv_ota_module_open ("mcu", &parm, NULL, NULL), ==, IV_ERR_OTA_INIT_PRM_NULL);
  g_assert_cmpint (iv_ota_module_update_progress (NULL, IV_OTA_PROGRESS_TYPE_SUCCESS, 0), ==, IV_ERR_OTA_INVALID_ARG);
  g_assert_cmpint (iv_ota_module_exit (NULL), ==, IV_ERR_OTA_INVALID_ARG);
  g_assert_cmpint (iv_ota_observer_add (NULL, NULL, NULL), ==, IV_ERR_OTA_INVALID_ARG);
  g_assert_null (handle);

  /* The bus given as an address works like "session" (set while no library thread runs). */
  g_assert_nonnull (address);
  g_setenv ("IV_OTA_BUS", address, TRUE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_BUTT, 0), ==, IV_ERR_OTA_PROGRESS_TYPE_ERROR);
  g_assert_cmpint (iv_ota_update_progress ((iv_ota_progress_type_e) 99, 0), ==, IV_ERR_OTA_PROGRESS_TYPE_ERROR);
  g_assert_cmpint (iv_ota_update_progress ((iv_ota_progress_type_e) -1, 0), ==, IV_ERR_OTA_PROGRESS_TYPE_ERROR);
  /* Nothing to report about: the agent refuses. */
  g_assert_cmpint (iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_SUCCESS, 0), ==, IV_ERR_OTA_REFUSED);
  g_assert_cmpstr (iv_ota_last_error (), !=, "");
  g_assert_cmpint (iv_ota_exit (), ==, IV_ERR_NONE);
  g_assert_cmpstr (iv_ota_last_error (), ==, "");
  g_setenv ("IV_OTA_BUS", "session", TRUE);
}

static void
test_strerror (void)
{
  const int codes[] = { IV_ERR_NONE, IV_ERR_OTA_INIT_PRM_NULL, IV_ERR_OTA_INIT_CB_NULL, IV_ERR_OTA_START_FAIL,
                        IV_ERR_OTA_PROGRESS_TYPE_ERROR, IV_ERR_DEVICE_OFFLINE, IV_ERR_OTA_BUSY,
                        IV_ERR_OTA_ACCESS_DENIED, IV_ERR_OTA_INVALID_ARG, IV_ERR_OTA_NOT_INITIALIZED,
                        IV_ERR_OTA_ALREADY_INITIALIZED, IV_ERR_OTA_REFUSED, IV_ERR_OTA_NO_AGENT,
                        IV_ERR_OTA_NO_RESOURCES };
  g_autoptr (GHashTable) texts = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < G_N_ELEMENTS (codes); i++) {
    const char *text = iv_ota_strerror (codes[i]);
    g_assert_cmpstr (text, !=, "unknown error");
    g_assert_false (g_hash_table_contains (texts, text));
    g_hash_table_add (texts, (gpointer) text);
  }
  g_assert_cmpstr (iv_ota_strerror (12345), ==, "unknown error");
}

/* An observer that removes itself from inside its first callback. */
typedef struct {
  iv_ota_observer_s *observer;
  int calls;
  int rc;
} SelfRemoving;

static void
on_event_remove_self (const iv_ota_event_s *event, void *user_data)
{
  SelfRemoving *self = user_data;

  /* Set by iv_ota_observer_add before this first call. */
  self->rc = iv_ota_observer_remove (self->observer);
  g_atomic_int_inc (&self->calls);
}

static gboolean
called_once (gpointer data)
{
  return g_atomic_int_get (&((SelfRemoving *) data)->calls) == 1;
}

/* No agent on the bus, or no bus at all. */
static void
test_no_agent (void)
{
  Observed *seen = observed_new ();
  SelfRemoving self = { NULL, 0, 1 };
  iv_ota_observer_s *observer = NULL;
  iv_ota_module_s *handle = NULL;
  iv_ota_init_parm_s parm;
  g_autofree char *dir = g_dir_make_tmp ("iv-ota-client-XXXXXX", NULL);

  rec_reset ();
  /* Read when the library thread starts, as IV_OTA_BUS is: none runs now. */
  g_setenv ("IV_OTA_INIT_TIMEOUT", "1", TRUE);
  parm_fill (&parm, dir, "1.0", FALSE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_START_FAIL);
  g_assert_nonnull (strstr (iv_ota_last_error (), "did not appear on the bus within 1000 ms"));
  g_assert_nonnull (strstr (iv_ota_last_error (), "org.iv.Ota"));
  g_assert_cmpint (iv_ota_module_open ("mcu", &parm, NULL, &handle), ==, IV_ERR_OTA_START_FAIL);
  g_assert_null (handle);
  /* Observing needs no agent: the snapshot says it is absent. */
  g_assert_cmpint (iv_ota_observer_add (on_event, seen, &observer), ==, IV_ERR_NONE);
  g_assert_true (observed_wait (seen, "AGENT 0"));
  g_assert_cmpint (iv_ota_observer_remove (observer), ==, IV_ERR_NONE);
  g_assert_cmpint (iv_ota_observer_add (on_event_remove_self, &self, &self.observer), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (called_once, &self, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (self.rc, ==, IV_ERR_NONE);
  g_setenv ("IV_OTA_BUS", "unix:path=/nonexistent/iv-ota-bus", TRUE);
  g_assert_cmpint (iv_ota_init (&parm), ==, IV_ERR_OTA_START_FAIL);
  g_assert_cmpint (iv_ota_observer_add (on_event, seen, &observer), ==, IV_ERR_OTA_START_FAIL);
  g_setenv ("IV_OTA_BUS", "session", TRUE);
  g_unsetenv ("IV_OTA_INIT_TIMEOUT");
  g_assert_cmpuint (rec_total (), ==, 0);
  observed_free (seen);
  g_rmdir (dir);
}

/* ---- what the shared library exports ---- */

static void
test_exported_symbols (void)
{
  const char *lib = g_getenv ("LIBIV_OTA");
  g_autofree char *nm = g_find_program_in_path ("nm");
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_auto (GStrv) lines = NULL;
  const char *argv[] = { nm, "-D", "--defined-only", lib, NULL };
  guint api = 0;
  int status;

  g_assert_nonnull (lib);
  if (nm == NULL) {
    g_test_skip ("nm (binutils) is not installed");
    return;
  }
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, NULL));
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  lines = g_strsplit (out, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    g_auto (GStrv) fields = g_strsplit_set (lines[i], " ", -1);
    if (*lines[i] == '\0')
      continue;
    g_assert_cmpuint (g_strv_length (fields), ==, 3);
    /* The version node of the version script is the only other entry. */
    if (g_str_equal (fields[1], "A") && g_str_has_prefix (fields[2], "IV_OTA_"))
      continue;
    if (!g_str_has_prefix (fields[2], "iv_ota_"))
      g_error ("libiv-ota exports %s", fields[2]);
    api += g_str_has_prefix (fields[2], "iv_ota_init@") || g_str_has_prefix (fields[2], "iv_ota_exit@") ||
           g_str_has_prefix (fields[2], "iv_ota_update_progress@");
  }
  g_assert_cmpuint (api, ==, 3);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_mutex_init (&rec.lock);
  g_mutex_init (&burn.lock);
  rec_reset ();
  /* The in-process apps use the test's private session bus. */
  g_setenv ("IV_OTA_BUS", "session", TRUE);
  g_test_add_func ("/client-lib/exported-symbols", test_exported_symbols);
  g_test_add_func ("/client-lib/strerror", test_strerror);
  g_test_add_func ("/client-lib/no-agent", test_no_agent);
  g_test_add_func ("/client-lib/abi/sizes", test_abi_sizes);
#define ADD(path, fn) g_test_add ("/client-lib/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("bad-arguments", test_bad_arguments);
  ADD ("abi/sdk-first-generation", test_abi_sdk_first_generation);
  ADD ("abi/current-header", test_abi_current_header);
  ADD ("classic-full-flow", test_classic_full_flow);
  ADD ("app-before-agent", test_app_before_agent);
  ADD ("vendor-app", test_vendor_app);
  ADD ("api-inside-callbacks", test_api_inside_callbacks);
  ADD ("prepare-defers", test_prepare_defers);
  ADD ("download-fail/not-found", test_download_fail_not_found);
  ADD ("download-fail/md5", test_download_fail_md5);
  g_test_add ("/client-lib/download-fail/size", Fixture, "retry_interval=1\nmax_firmware_size=50000\n", fixture_setup,
              test_download_fail_size, fixture_teardown);
  ADD ("exit-during-download", test_exit_during_download);
  ADD ("callbacks/size", test_size_callbacks);
  ADD ("callbacks/size-ticks", test_size_ticks);
  ADD ("callbacks/reinit-inside-callback", test_reinit_inside_callback);
  ADD ("callbacks/observer-added-inside-observer", test_observer_added_inside_observer);
  ADD ("second-owner-refused", test_second_owner_refused);
  ADD ("three-modules-and-observer", test_three_modules_and_observer);
  ADD ("agent-restart-mid-download", test_agent_restart_mid_download);
  ADD ("agent-restart-inside-callback", test_agent_restart_inside_callback);
  ADD ("fork-child", test_fork_child);
#undef ADD
  return g_test_run ();
}
