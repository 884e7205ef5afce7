#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  gboolean (*cond) (gpointer);
  gpointer data;
  gboolean timed_out;
} WaitCtx;

static gboolean
wait_timeout_cb (gpointer user_data)
{
  ((WaitCtx *) user_data)->timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

static gboolean
wait_tick_cb (gpointer user_data)
{
  return G_SOURCE_CONTINUE;
}

guint
ota_test_time_scale (void)
{
  static guint scale = 0;

  if (scale == 0) {
    const char *text = g_getenv ("IV_OTA_TEST_TIME_SCALE");
    guint64 value = 1;

    if (text != NULL && !g_ascii_string_to_unsigned (text, 10, 1, 100, &value, NULL))
      g_error ("IV_OTA_TEST_TIME_SCALE=%s: expected 1..100", text);
    scale = (guint) value;
  }
  return scale;
}

gboolean
ota_test_emulated (void)
{
  const char *wrapper = g_getenv ("IV_OTA_TEST_WRAPPER");

  return wrapper != NULL && *wrapper != '\0';
}

gboolean
ota_test_wait (gboolean (*cond) (gpointer data), gpointer data, guint timeout_ms)
{
  WaitCtx ctx = { cond, data, FALSE };
  guint id = g_timeout_add (timeout_ms * ota_test_time_scale (), wait_timeout_cb, &ctx);
  /* Conditions on files or other processes are not main-loop events: poll them too. */
  guint tick = g_timeout_add (20, wait_tick_cb, NULL);
  gboolean ok;

  while (!(ok = cond (data)) && !ctx.timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!ctx.timed_out)
    g_source_remove (id);
  g_source_remove (tick);
  return ok;
}

static gboolean
never (gpointer data)
{
  return FALSE;
}

void
ota_test_spin (guint ms)
{
  ota_test_wait (never, NULL, ms);
}

/* ---- processes ---- */

static void
child_setup (gpointer user_data)
{
  /* Children die with the test, even when an assertion aborts it. */
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

/* e_machine of an ELF file, 0 when @path is not one (a script, missing). */
static guint
elf_machine (const char *path)
{
  guint8 header[20] = { 0 };
  g_autoptr (GFile) file = g_file_new_for_path (path);
  g_autoptr (GFileInputStream) in = g_file_read (file, NULL, NULL);

  if (in == NULL || !g_input_stream_read_all (G_INPUT_STREAM (in), header, sizeof header, NULL, NULL, NULL) ||
      memcmp (header, "\177ELF", 4) != 0)
    return 0;
  /* e_machine at byte 18, in the file's byte order (EI_DATA 1: little endian). */
  return header[5] == 1 ? (guint) (header[18] | header[19] << 8) : (guint) (header[18] << 8 | header[19]);
}

char **
ota_test_wrap_argv (const char *const *argv)
{
  const char *wrapper = g_getenv ("IV_OTA_TEST_WRAPPER");
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autofree char *self_exe = g_file_read_link ("/proc/self/exe", NULL);

  /* Only programs built for this test's own machine: mosquitto and the
   * shell stay native. */
  if (wrapper != NULL && *wrapper != '\0' && self_exe != NULL && elf_machine (argv[0]) != 0 &&
      elf_machine (argv[0]) == elf_machine (self_exe)) {
    g_auto (GStrv) words = g_strsplit (wrapper, " ", -1);
    g_strv_builder_addv (builder, (const char **) words);
  }
  g_strv_builder_addv (builder, (const char **) argv);
  return g_strv_builder_end (builder);
}

OtaTestProcess *
ota_test_process_spawn (char **argv_in, char **envp, const char *log_path, const char *stderr_path)
{
  g_auto (GStrv) argv = ota_test_wrap_argv ((const char *const *) argv_in);
  g_autoptr (GError) error = NULL;
  OtaTestProcess *proc = g_new0 (OtaTestProcess, 1);
  int out = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int err = stderr_path != NULL ? open (stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : out;
  gboolean ok;

  g_assert_cmpint (out, >=, 0);
  g_assert_cmpint (err, >=, 0);
  proc->log_path = g_strdup (log_path);
  ok = g_spawn_async_with_fds (NULL, argv, envp, G_SPAWN_DO_NOT_REAP_CHILD, child_setup, NULL, &proc->pid, -1,
                               out, err, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  close (out);
  if (err != out)
    close (err);
  return proc;
}

static gboolean
process_reap (OtaTestProcess *proc, gboolean block)
{
  int status;
  pid_t r;

  if (proc->exited)
    return TRUE;
  do
    r = waitpid (proc->pid, &status, block ? 0 : WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == proc->pid) {
    proc->exited = TRUE;
    proc->status = status;
    g_spawn_close_pid (proc->pid);
  }
  return proc->exited;
}

gboolean
ota_test_process_is_running (OtaTestProcess *proc)
{
  return !process_reap (proc, FALSE);
}

int
ota_test_process_stop (OtaTestProcess *proc, int sig)
{
  if (!process_reap (proc, FALSE)) {
    kill (proc->pid, sig);
    process_reap (proc, TRUE);
  }
  return proc->status;
}

void
ota_test_process_free (OtaTestProcess *proc)
{
  if (proc == NULL)
    return;
  ota_test_process_stop (proc, SIGKILL);
  g_free (proc->log_path);
  g_free (proc);
}

/* ---- broker ---- */

static gboolean
port_accepts (guint port)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;

  g_socket_client_set_timeout (client, 1);
  conn = g_socket_client_connect_to_host (client, "127.0.0.1", (guint16) port, NULL, NULL);
  return conn != NULL;
}

static gboolean
broker_try_start (OtaTestBroker *broker)
{
  g_autofree char *conf_path = g_build_filename (broker->dir, "mosquitto.conf", NULL);
  g_autofree char *log_path = g_build_filename (broker->dir, "mosquitto.log", NULL);
  /* max_queued_messages 1000000: a client that is slow to read (the agent under
   * ASan during a flood) gets every message late rather than some never: the
   * tests count messages, the broker's drop policy is not under test. Not 0
   * ("no limit"): mosquitto 2.0.11 then drops a connection after refusing
   * one of its QoS 1 messages. */
  g_autofree char *conf = g_strdup_printf ("listener %u 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                           "max_queued_messages 1000000\nlog_dest stderr\nlog_type all\n%s%s",
                                           broker->port, geteuid () == 0 ? "user root\n" : "",
                                           broker->extra_conf != NULL ? broker->extra_conf : "");
  g_autofree char *exe = g_find_program_in_path ("mosquitto");
  char *argv[] = { exe != NULL ? exe : "/usr/sbin/mosquitto", "-c", conf_path, NULL };

  g_assert_true (g_file_set_contents (conf_path, conf, -1, NULL));
  broker->proc = ota_test_process_spawn (argv, NULL, log_path, NULL);
  for (int i = 0; i < 100; i++) {
    if (!ota_test_process_is_running (broker->proc))
      break;
    if (port_accepts (broker->port))
      return TRUE;
    g_usleep (50 * 1000);
  }
  g_clear_pointer (&broker->proc, ota_test_process_free);
  return FALSE;
}

OtaTestBroker *
ota_test_broker_start (const char *dir)
{
  return ota_test_broker_start_with (dir, NULL);
}

OtaTestBroker *
ota_test_broker_start_with (const char *dir, const char *extra_conf)
{
  OtaTestBroker *broker = g_new0 (OtaTestBroker, 1);

  broker->dir = g_strdup (dir);
  broker->extra_conf = g_strdup (extra_conf);
  /* mosquitto cannot pick a free port itself: try random ones. */
  for (int attempt = 0; attempt < 20; attempt++) {
    broker->port = (guint) g_random_int_range (20000, 60000);
    if (!port_accepts (broker->port) && broker_try_start (broker))
      return broker;
  }
  g_error ("cannot start mosquitto (see %s/mosquitto.log)", dir);
  return NULL;
}

void
ota_test_broker_stop (OtaTestBroker *broker)
{
  g_clear_pointer (&broker->proc, ota_test_process_free);
}

void
ota_test_broker_restart (OtaTestBroker *broker)
{
  ota_test_broker_stop (broker);
  /* The port may linger briefly; mosquitto sets SO_REUSEADDR. */
  for (int i = 0; i < 50 && !broker_try_start (broker); i++)
    g_usleep (100 * 1000);
  g_assert_nonnull (broker->proc);
}

void
ota_test_broker_free (OtaTestBroker *broker)
{
  if (broker == NULL)
    return;
  ota_test_broker_stop (broker);
  g_free (broker->dir);
  g_free (broker->extra_conf);
  g_free (broker);
}

/* ---- the in-process cloud ---- */

static void
on_cloud_message (OtaMqttLink *link, const char *topic, GBytes *payload, OtaTestCloud *cloud)
{
  gsize len;
  const char *data = g_bytes_get_data (payload, &len);

  if (g_strcmp0 (topic, OTA_TEST_REPORT_TOPIC) == 0)
    g_ptr_array_add (cloud->reports, g_strndup (data, len));
}

static gboolean
cloud_connected (gpointer data)
{
  return ota_mqtt_link_get_connected (((OtaTestCloud *) data)->link);
}

OtaTestCloud *
ota_test_cloud_new (guint port)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *client_id = g_strdup_printf ("test-cloud-%d-%u", getpid (), g_random_int ());
  OtaMqttSettings settings = {
    .host = "127.0.0.1", .port = port, .client_id = client_id, .keepalive = 30,
    .backoff_min_ms = 100, .backoff_max_ms = 500, .unlimited_connects = TRUE,
  };
  OtaTestCloud *cloud = g_new0 (OtaTestCloud, 1);

  cloud->reports = g_ptr_array_new_with_free_func (g_free);
  cloud->link = ota_mqtt_link_new (&settings, &error);
  g_assert_no_error (error);
  g_signal_connect (cloud->link, "message", G_CALLBACK (on_cloud_message), cloud);
  ota_mqtt_link_add_subscription (cloud->link, OTA_TEST_REPORT_TOPIC, 1);
  ota_mqtt_link_start (cloud->link);
  g_assert_true (ota_test_wait (cloud_connected, cloud, OTA_TEST_TIMEOUT_MS));
  /* Let the SUBSCRIBE reach the broker before anything is published. */
  ota_test_spin (100);
  return cloud;
}

void
ota_test_cloud_publish (OtaTestCloud *cloud, const char *payload, gsize length)
{
  g_autoptr (GError) error = NULL;

  /* After a broker restart the link may still hold the dead session: a failed
   * publish makes it reconnect, so try again until one goes out. */
  for (int i = 0; i < 100; i++) {
    g_clear_error (&error);
    g_assert_true (ota_test_wait (cloud_connected, cloud, OTA_TEST_TIMEOUT_MS));
    if (ota_mqtt_link_publish (cloud->link, OTA_TEST_UPDATE_TOPIC, payload, length, 1, NULL, &error))
      break;
  }
  g_assert_no_error (error);
}

typedef struct {
  OtaTestCloud *cloud;
  guint from;
  const char *text;
  gboolean exact;
  int found;
} ReportWait;

static gboolean
report_found (gpointer data)
{
  ReportWait *w = data;

  for (guint i = w->from; i < w->cloud->reports->len; i++) {
    const char *r = g_ptr_array_index (w->cloud->reports, i);
    if (w->exact ? g_str_equal (r, w->text) : strstr (r, w->text) != NULL) {
      w->found = (int) i;
      return TRUE;
    }
  }
  return FALSE;
}

int
ota_test_cloud_wait_report (OtaTestCloud *cloud, guint from, const char *json, guint timeout_ms)
{
  ReportWait w = { cloud, from, json, TRUE, -1 };

  ota_test_wait (report_found, &w, timeout_ms);
  return w.found;
}

int
ota_test_cloud_wait_report_containing (OtaTestCloud *cloud, guint from, const char *needle, guint timeout_ms)
{
  ReportWait w = { cloud, from, needle, FALSE, -1 };

  ota_test_wait (report_found, &w, timeout_ms);
  return w.found;
}

guint
ota_test_cloud_count_reports (OtaTestCloud *cloud, const char *needle)
{
  guint n = 0;

  for (guint i = 0; i < cloud->reports->len; i++)
    n += strstr (g_ptr_array_index (cloud->reports, i), needle) != NULL;
  return n;
}

void
ota_test_cloud_free (OtaTestCloud *cloud)
{
  if (cloud == NULL)
    return;
  ota_mqtt_link_stop (cloud->link);
  g_object_unref (cloud->link);
  g_ptr_array_unref (cloud->reports);
  g_free (cloud);
}

/* ---- the agent ---- */

OtaTestAgent *
ota_test_agent_new (const char *dir, guint port, const char *extra_ota_keys)
{
  OtaTestAgent *agent = g_new0 (OtaTestAgent, 1);
  g_autofree char *conf = NULL;

  agent->dir = g_strdup (dir);
  agent->config_path = g_build_filename (dir, "iv-otad.conf", NULL);
  agent->log_path = g_build_filename (dir, "iv-otad.log", NULL);
  agent->state_dir = g_build_filename (dir, "state", NULL);
  /* Plain http from the local stand-in, unless the test says otherwise. */
  gboolean https_set = extra_ota_keys != NULL && strstr (extra_ota_keys, "require_https") != NULL;

  conf = g_strdup_printf ("[mqtt]\nport=%u\nkeepalive=10\n[device]\nproduct_id=%s\ndevice_name=%s\n"
                          "[ota]\nstate_dir=%s\n%s%s\n",
                          port, OTA_TEST_PRODUCT, OTA_TEST_DEVICE, agent->state_dir,
                          https_set ? "" : "require_https=false\n", extra_ota_keys != NULL ? extra_ota_keys : "");
  g_assert_true (g_file_set_contents (agent->config_path, conf, -1, NULL));
  return agent;
}

void
ota_test_agent_add_config (OtaTestAgent *agent, const char *text)
{
  g_autofree char *conf = NULL;
  g_autofree char *joined = NULL;

  g_assert_true (g_file_get_contents (agent->config_path, &conf, NULL, NULL));
  joined = g_strconcat (conf, text, NULL);
  g_assert_true (g_file_set_contents (agent->config_path, joined, -1, NULL));
}

void
ota_test_agent_setenv (OtaTestAgent *agent, const char *name, const char *value)
{
  agent->env = g_environ_setenv (agent->env, name, value, TRUE);
}

static gboolean
agent_name_has_owner (void)
{
  g_autoptr (GDBusConnection) bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, NULL);
  g_autoptr (GVariant) reply = NULL;
  gboolean has_owner = FALSE;

  reply = g_dbus_connection_call_sync (bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                       "NameHasOwner", g_variant_new ("(s)", "org.iv.Ota"), G_VARIANT_TYPE ("(b)"),
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL);
  if (reply != NULL)
    g_variant_get (reply, "(b)", &has_owner);
  return has_owner;
}

static gboolean
agent_on_bus (gpointer data)
{
  OtaTestAgent *agent = data;

  if (!ota_test_process_is_running (agent->proc))
    g_error ("iv-otad exited early, see %s", agent->log_path);
  return agent_name_has_owner ();
}

void
ota_test_agent_start (OtaTestAgent *agent)
{
  const char *exe = g_getenv ("IV_OTAD");
  char *argv[] = { (char *) exe, "--config", agent->config_path, "--bus", "session", NULL };
  g_auto (GStrv) envp = g_get_environ ();

  g_assert_nonnull (exe);
  envp = g_environ_setenv (envp, "G_MESSAGES_DEBUG", "all", TRUE);
  for (guint i = 0; agent->env != NULL && agent->env[i] != NULL; i++) {
    g_auto (GStrv) pair = g_strsplit (agent->env[i], "=", 2);
    envp = g_environ_setenv (envp, pair[0], pair[1] != NULL ? pair[1] : "", TRUE);
  }
  agent->proc = ota_test_process_spawn (argv, envp, agent->log_path, NULL);
  g_assert_true (ota_test_wait (agent_on_bus, agent, OTA_TEST_TIMEOUT_MS));
}

void
ota_test_agent_stop (OtaTestAgent *agent)
{
  ota_test_agent_stop_with (agent, SIGTERM);
}

void
ota_test_agent_stop_with (OtaTestAgent *agent, int sig)
{
  int status;

  if (agent->proc == NULL)
    return;
  status = ota_test_process_stop (agent->proc, sig);
  g_clear_pointer (&agent->proc, ota_test_process_free);
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    g_error ("iv-otad did not exit cleanly (wait status %d), see %s", status, agent->log_path);
}

static gboolean
agent_off_bus (gpointer data)
{
  return !agent_name_has_owner ();
}

void
ota_test_agent_kill (OtaTestAgent *agent)
{
  if (agent->proc != NULL)
    ota_test_process_stop (agent->proc, SIGKILL);
  g_clear_pointer (&agent->proc, ota_test_process_free);
  /* Otherwise the next start could mistake the dead agent's name for its own. */
  g_assert_true (ota_test_wait (agent_off_bus, agent, OTA_TEST_TIMEOUT_MS));
}

guint
ota_test_agent_log_count (OtaTestAgent *agent, const char *needle)
{
  return ota_test_file_count_lines (agent->log_path, needle);
}

guint
ota_test_file_count_lines (const char *path, const char *needle)
{
  g_autofree char *log = NULL;
  g_auto (GStrv) lines = NULL;
  guint n = 0;

  if (!g_file_get_contents (path, &log, NULL, NULL))
    return 0;
  lines = g_strsplit (log, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    n += strstr (lines[i], needle) != NULL;
  return n;
}

typedef struct {
  const char *path;
  const char *needle;
  guint count;
} OtaTestFileLines;

static gboolean
ota_test_file_has_lines (gpointer data)
{
  OtaTestFileLines *w = data;

  return ota_test_file_count_lines (w->path, w->needle) >= w->count;
}

gboolean
ota_test_wait_file_lines (const char *path, const char *needle, guint count, guint timeout_ms)
{
  OtaTestFileLines w = { path, needle, count };

  return ota_test_wait (ota_test_file_has_lines, &w, timeout_ms);
}

void
ota_test_agent_free (OtaTestAgent *agent)
{
  if (agent == NULL)
    return;
  ota_test_agent_kill (agent);
  g_free (agent->dir);
  g_free (agent->config_path);
  g_free (agent->log_path);
  g_free (agent->state_dir);
  g_strfreev (agent->env);
  g_free (agent);
}

/* ---- D-Bus clients ---- */

GDBusConnection *
ota_test_connection_new (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *address = g_dbus_address_get_for_bus_sync (G_BUS_TYPE_SESSION, NULL, &error);
  GDBusConnection *conn;

  g_assert_no_error (error);
  conn = g_dbus_connection_new_for_address_sync (address,
                                                 G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                   G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                 NULL, NULL, &error);
  g_assert_no_error (error);
  return conn;
}

gboolean
ota_test_proxy_has_owner (gpointer data)
{
  g_autofree char *owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (data));

  return owner != NULL;
}

OtaDBusOta *
ota_test_proxy_new (GDBusConnection *connection)
{
  g_autoptr (GError) error = NULL;
  OtaDBusOta *proxy = ota_dbus_ota_proxy_new_sync (connection, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START, "org.iv.Ota",
                                                   "/org/iv/Ota", NULL, &error);

  g_assert_no_error (error);
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (proxy), OTA_TEST_TIMEOUT_MS);
  return proxy;
}

static void
on_offered (OtaDBusOta *proxy, const char *module, const char *version, guint64 size, OtaTestSignals *sig)
{
  g_ptr_array_add (sig->offered, g_variant_ref_sink (g_variant_new ("(sst)", module, version, size)));
}

/* fail_kind of @module in the Modules property as the proxy has it now: the
 * agent updates the property before it sends Progress. "(none)" when the
 * property or the key is missing. */
static char *
modules_fail_kind (OtaDBusOta *proxy, const char *module)
{
  GVariant *modules = ota_dbus_ota_get_modules (proxy);
  g_autoptr (GVariant) status = NULL;
  const char *kind = NULL;

  if (modules == NULL || !g_variant_lookup (modules, module, "@a{sv}", &status) ||
      !g_variant_lookup (status, "fail_kind", "&s", &kind))
    return g_strdup ("(none)");
  return g_strdup (kind);
}

static void
on_progress (OtaDBusOta *proxy, const char *module, const char *version, const char *state, guint percent,
             guint64 downloaded, guint64 total, int code, const char *msg, OtaTestSignals *sig)
{
  g_ptr_array_add (sig->progress, g_variant_ref_sink (g_variant_new ("(sssuttis)", module, version, state, percent,
                                                                     downloaded, total, code, msg)));
  if (g_str_equal (state, "fail"))
    g_ptr_array_add (sig->fail_kinds, modules_fail_kind (proxy, module));
}

static void
on_ready (OtaDBusOta *proxy, const char *module, const char *version, const char *path, guint64 size,
          const char *md5, OtaTestSignals *sig)
{
  g_ptr_array_add (sig->ready, g_variant_ref_sink (g_variant_new ("(sssts)", module, version, path, size, md5)));
}

OtaTestSignals *
ota_test_signals_new (OtaDBusOta *proxy)
{
  OtaTestSignals *sig = g_new0 (OtaTestSignals, 1);

  sig->offered = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  sig->progress = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  sig->ready = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  sig->fail_kinds = g_ptr_array_new_with_free_func (g_free);
  g_signal_connect (proxy, "update-offered", G_CALLBACK (on_offered), sig);
  g_signal_connect (proxy, "progress", G_CALLBACK (on_progress), sig);
  g_signal_connect (proxy, "firmware-ready", G_CALLBACK (on_ready), sig);
  return sig;
}

typedef struct {
  OtaTestSignals *sig;
  const char *module, *state;
  int found;
} StateWait;

static gboolean
state_found (gpointer data)
{
  StateWait *w = data;

  for (guint i = 0; i < w->sig->progress->len; i++) {
    const char *module, *state;
    g_variant_get (g_ptr_array_index (w->sig->progress, i), "(&s&s&sutti&s)", &module, NULL, &state, NULL, NULL,
                   NULL, NULL, NULL);
    if (g_str_equal (module, w->module) && g_str_equal (state, w->state)) {
      w->found = (int) i;
      return TRUE;
    }
  }
  return FALSE;
}

int
ota_test_signals_wait_state (OtaTestSignals *sig, const char *module, const char *state, guint timeout_ms)
{
  StateWait w = { sig, module, state, -1 };

  ota_test_wait (state_found, &w, timeout_ms);
  return w.found;
}

const char *
ota_test_signals_last_fail_kind (OtaTestSignals *sig)
{
  return sig->fail_kinds->len > 0 ? g_ptr_array_index (sig->fail_kinds, sig->fail_kinds->len - 1) : "(no fail)";
}

void
ota_test_signals_free (OtaTestSignals *sig)
{
  if (sig == NULL)
    return;
  g_ptr_array_unref (sig->offered);
  g_ptr_array_unref (sig->progress);
  g_ptr_array_unref (sig->ready);
  g_ptr_array_unref (sig->fail_kinds);
  g_free (sig);
}

gboolean
ota_test_init (OtaDBusOta *proxy, const char *module, const char *version, const char *dir, gboolean ask,
               GError **error)
{
  g_auto (GVariantBuilder) opts = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);

  g_variant_builder_add (&opts, "{sv}", "ask_before_download", g_variant_new_boolean (ask));
  return ota_dbus_ota_call_init_sync (proxy, module, version, dir, g_variant_builder_end (&opts), NULL, error);
}

char *
ota_test_status_get (OtaDBusOta *proxy, const char *module, const char *key)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) status = NULL;
  g_autoptr (GVariant) value = NULL;

  ota_dbus_ota_call_get_status_sync (proxy, module, &status, NULL, &error);
  g_assert_no_error (error);
  value = g_variant_lookup_value (status, key, NULL);
  g_assert_nonnull (value);
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
    return g_variant_dup_string (value, NULL);
  return g_variant_print (value, FALSE);
}

/* ---- iv-ota-cloud ---- */

static gboolean
file_has_content (gpointer data)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents (data, &text, NULL, NULL) || strchr (text, '\n') == NULL) {
    g_usleep (20 * 1000);
    return FALSE;
  }
  return TRUE;
}

OtaTestCloudTool *
ota_test_cloud_tool_start (const char *dir, const char *name, guint port, const char *version, const char *firmware,
                           const char *const *extra_args)
{
  OtaTestCloudTool *tool = g_new0 (OtaTestCloudTool, 1);
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *ready = g_strdup_printf ("%s/%s.ready", dir, name);
  g_autofree char *text = NULL;
  const char *exe = g_getenv ("IV_OTA_CLOUD");

  g_assert_nonnull (exe);
  tool->stdout_path = g_strdup_printf ("%s/%s.out", dir, name);
  tool->stderr_path = g_strdup_printf ("%s/%s.err", dir, name);
  g_ptr_array_add (argv, g_strdup (exe));
  g_ptr_array_add (argv, g_strdup ("--product=" OTA_TEST_PRODUCT));
  g_ptr_array_add (argv, g_strdup ("--device=" OTA_TEST_DEVICE));
  g_ptr_array_add (argv, g_strdup_printf ("--port=%u", port));
  g_ptr_array_add (argv, g_strdup_printf ("--version=%s", version));
  g_ptr_array_add (argv, g_strdup_printf ("--firmware=%s", firmware));
  g_ptr_array_add (argv, g_strdup_printf ("--ready-file=%s", ready));
  for (guint i = 0; extra_args != NULL && extra_args[i] != NULL; i++)
    g_ptr_array_add (argv, g_strdup (extra_args[i]));
  g_ptr_array_add (argv, NULL);
  tool->proc = ota_test_process_spawn ((char **) argv->pdata, NULL, tool->stdout_path, tool->stderr_path);
  g_assert_true (ota_test_wait (file_has_content, ready, OTA_TEST_TIMEOUT_MS));
  g_assert_true (g_file_get_contents (ready, &text, NULL, NULL));
  tool->http_port = (guint) g_ascii_strtoull (text, NULL, 10);
  tool->url = g_strdup_printf ("http://127.0.0.1:%u/FW_%s.bin", tool->http_port, version);
  return tool;
}

/* The last "total_sent=" figure of the stats lines, and the number of responses. */
static guint64
cloud_tool_scan (OtaTestCloudTool *tool, guint *responses)
{
  g_autofree char *text = NULL;
  guint64 total = 0;
  const char *p;

  *responses = 0;
  if (!g_file_get_contents (tool->stderr_path, &text, NULL, NULL))
    return 0;
  for (p = text; (p = strstr (p, "total_sent=")) != NULL; p++) {
    total = g_ascii_strtoull (p + strlen ("total_sent="), NULL, 10);
  }
  for (p = text; (p = strstr (p, "http: GET ")) != NULL; p++) {
    const char *eol = strchr (p, '\n');
    /* "http: GET ... stalled after sent=N" announces a stall, not a response. */
    if (g_strstr_len (p, eol != NULL ? eol - p : -1, " status=") != NULL)
      (*responses)++;
  }
  return total;
}

guint64
ota_test_cloud_tool_total_sent (OtaTestCloudTool *tool)
{
  guint n;
  return cloud_tool_scan (tool, &n);
}

guint
ota_test_cloud_tool_requests (OtaTestCloudTool *tool)
{
  guint n;
  cloud_tool_scan (tool, &n);
  return n;
}

guint64
ota_test_cloud_tool_stop (OtaTestCloudTool *tool)
{
  int status;

  if (tool->proc == NULL)
    return ota_test_cloud_tool_total_sent (tool);
  status = ota_test_process_stop (tool->proc, SIGTERM);
  g_clear_pointer (&tool->proc, ota_test_process_free);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  return ota_test_cloud_tool_total_sent (tool);
}

void
ota_test_cloud_tool_free (OtaTestCloudTool *tool)
{
  if (tool == NULL)
    return;
  g_clear_pointer (&tool->proc, ota_test_process_free);
  g_free (tool->stdout_path);
  g_free (tool->stderr_path);
  g_free (tool->url);
  g_free (tool);
}

/* ---- a whole environment ---- */

void
ota_test_env_setup (OtaTestEnv *env, gconstpointer extra_ota_keys)
{
  g_autoptr (GError) error = NULL;

  env->dir = g_dir_make_tmp ("iv-ota-test-XXXXXX", &error);
  g_assert_no_error (error);
  env->fw_dir = g_build_filename (env->dir, "fw", NULL);
  g_assert_cmpint (g_mkdir (env->fw_dir, 0755), ==, 0);
  env->broker = ota_test_broker_start (env->dir);
  env->cloud = ota_test_cloud_new (env->broker->port);
  env->agent = ota_test_agent_new (env->dir, env->broker->port, extra_ota_keys);
  ota_test_agent_start (env->agent);
  env->connection = ota_test_connection_new ();
  env->proxy = ota_test_proxy_new (env->connection);
  env->signals = ota_test_signals_new (env->proxy);
}

void
ota_test_env_reconnect_app (OtaTestEnv *env)
{
  g_clear_pointer (&env->signals, ota_test_signals_free);
  g_clear_object (&env->proxy);
  g_dbus_connection_close_sync (env->connection, NULL, NULL);
  g_clear_object (&env->connection);
  env->connection = ota_test_connection_new ();
  env->proxy = ota_test_proxy_new (env->connection);
  env->signals = ota_test_signals_new (env->proxy);
}

void
ota_test_remove_tree (const char *path)
{
  g_autoptr (GFile) file = g_file_new_for_path (path);
  g_autoptr (GFileEnumerator) e =
    g_file_enumerate_children (file, G_FILE_ATTRIBUTE_STANDARD_NAME, G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS, NULL, NULL);
  GFileInfo *info;

  while (e != NULL && (info = g_file_enumerator_next_file (e, NULL, NULL)) != NULL) {
    g_autofree char *child = g_build_filename (path, g_file_info_get_name (info), NULL);
    gboolean is_dir = g_file_info_get_file_type (info) == G_FILE_TYPE_DIRECTORY;

    g_object_unref (info);
    if (is_dir)
      ota_test_remove_tree (child);
    else
      g_unlink (child);
  }
  g_rmdir (path);
}

void
ota_test_env_teardown (OtaTestEnv *env, gconstpointer unused)
{
  g_clear_pointer (&env->signals, ota_test_signals_free);
  g_clear_object (&env->proxy);
  if (env->connection != NULL)
    g_dbus_connection_close_sync (env->connection, NULL, NULL);
  g_clear_object (&env->connection);
  if (env->agent != NULL)
    ota_test_agent_stop (env->agent);
  g_clear_pointer (&env->agent, ota_test_agent_free);
  g_clear_pointer (&env->cloud, ota_test_cloud_free);
  g_clear_pointer (&env->broker, ota_test_broker_free);
  /* Keep the logs of a failing run for the reader. */
  if (!g_test_failed () && g_getenv ("OTA_TEST_KEEP") == NULL)
    ota_test_remove_tree (env->dir);
  else
    g_test_message ("test files kept in %s", env->dir);
  g_free (env->fw_dir);
  g_free (env->dir);
}

char *
ota_test_offer_json (const char *module, const char *version, const char *url, const char *md5, guint64 size)
{
  if (module != NULL && *module != '\0')
    return g_strdup_printf ("{\"type\":\"update_firmware\",\"version\":\"%s\",\"url\":\"%s\",\"md5sum\":\"%s\","
                            "\"file_size\":%" G_GUINT64_FORMAT ",\"fw_type\":\"%s\"}",
                            version, url, md5, size, module);
  return g_strdup_printf ("{\"type\":\"update_firmware\",\"version\":\"%s\",\"url\":\"%s\",\"md5sum\":\"%s\","
                          "\"file_size\":%" G_GUINT64_FORMAT "}",
                          version, url, md5, size);
}

char *
ota_test_make_file (const char *path, gsize size)
{
  g_autofree guint8 *data = g_malloc (size);
  g_autoptr (GRand) rand = g_rand_new_with_seed ((guint32) size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) g_rand_int (rand);
  g_assert_true (g_file_set_contents (path, (const char *) data, (gssize) size, NULL));
  return g_compute_checksum_for_data (G_CHECKSUM_MD5, data, size);
}

/* ---- the Modules property ---- */

typedef struct {
  OtaTestEnv *env;
  const char *module;
  const char *state; /* NULL: any */
  gboolean some_bytes;
} ModuleWait;

static gboolean
env_module_published (gpointer data)
{
  ModuleWait *w = data;
  GVariant *modules = ota_dbus_ota_get_modules (w->env->proxy);
  g_autoptr (GVariant) status = modules != NULL ? g_variant_lookup_value (modules, w->module, NULL) : NULL;
  const char *state = NULL;
  guint64 downloaded = 0;

  if (status == NULL)
    return FALSE;
  g_variant_lookup (status, "state", "&s", &state);
  g_variant_lookup (status, "downloaded", "t", &downloaded);
  return (w->state == NULL || g_strcmp0 (state, w->state) == 0) && (!w->some_bytes || downloaded > 0);
}

void
ota_test_env_wait_published (OtaTestEnv *env, const char *module, const char *state, gboolean some_bytes)
{
  ModuleWait w = { env, module, state, some_bytes };

  g_assert_true (ota_test_wait (env_module_published, &w, OTA_TEST_TIMEOUT_MS));
}

void
ota_test_env_init_published (OtaTestEnv *env, const char *module, const char *version)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (ota_test_init (env->proxy, module, version, env->fw_dir, FALSE, &error));
  g_assert_no_error (error);
  ota_test_env_wait_published (env, module, NULL, FALSE);
}

/* ---- the connection to the cloud, across broker restarts ---- */

static gboolean
env_connected_is (gpointer data)
{
  gpointer *args = data;
  return ota_dbus_ota_get_connected (args[0]) == GPOINTER_TO_INT (args[1]);
}

gboolean
ota_test_env_wait_connected (OtaTestEnv *env, gboolean value, guint timeout_ms)
{
  gpointer args[] = { env->proxy, GINT_TO_POINTER (value) };
  return ota_test_wait (env_connected_is, args, timeout_ms);
}

static gboolean
env_cloud_link_up (gpointer data)
{
  return ota_mqtt_link_get_connected (((OtaTestEnv *) data)->cloud->link);
}

/* Publishes one probe; TRUE once it came back within @timeout_ms. */
static gboolean
env_cloud_probe (OtaTestEnv *env, guint timeout_ms)
{
  static guint serial;
  g_autoptr (GError) error = NULL;
  g_autofree char *probe = g_strdup_printf ("cloud-sync-probe-%u", ++serial);

  /* The link may still believe in the old session: a failed publish makes it
   * reconnect, so try until one goes out. */
  for (int i = 0; i < 100; i++) {
    g_clear_error (&error);
    g_assert_true (ota_test_wait (env_cloud_link_up, env, OTA_TEST_TIMEOUT_MS));
    if (ota_mqtt_link_publish (env->cloud->link, OTA_TEST_REPORT_TOPIC, probe, strlen (probe), 1, NULL, &error))
      break;
  }
  g_assert_no_error (error);
  return ota_test_cloud_wait_report (env->cloud, 0, probe, timeout_ms) >= 0;
}

void
ota_test_env_cloud_sync (OtaTestEnv *env)
{
  /* A publish into the dead session of a restarted broker can still
   * "succeed" (the link has not read the close yet) and is lost: probe again. */
  for (int i = 0; i < 20; i++) {
    if (env_cloud_probe (env, 1000))
      return;
  }
  g_assert_true (env_cloud_probe (env, OTA_TEST_TIMEOUT_MS));
}

void
ota_test_env_broker_restart_cloud_first (OtaTestEnv *env)
{
  GPid pid = env->agent->proc != NULL ? env->agent->proc->pid : 0;

  if (pid > 0)
    g_assert_cmpint (kill (pid, SIGSTOP), ==, 0);
  ota_test_broker_restart (env->broker);
  ota_test_env_cloud_sync (env);
  if (pid > 0)
    g_assert_cmpint (kill (pid, SIGCONT), ==, 0);
}

/* ---- download tests: the main module, offered version "2.0" ---- */

void
ota_test_image_make (OtaTestEnv *env, gsize size, OtaTestImage *image)
{
  image->path = g_build_filename (env->dir, "image-2.0.bin", NULL);
  image->md5 = ota_test_make_file (image->path, size);
  image->size = size;
}

void
ota_test_image_clear (OtaTestImage *image)
{
  g_clear_pointer (&image->path, g_free);
  g_clear_pointer (&image->md5, g_free);
}

char *
ota_test_fw_path (OtaTestEnv *env, const char *ext)
{
  g_autofree char *name = g_strconcat ("FW_2.0.", ext, NULL);
  return g_build_filename (env->fw_dir, name, NULL);
}

void
ota_test_app_init (OtaTestEnv *env, const char *version)
{
  g_autoptr (GError) error = NULL;

  ota_test_init (env->proxy, "", version, env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
}

void
ota_test_app_report (OtaTestEnv *env, const char *state, int percent, int code, const char *msg)
{
  g_autoptr (GError) error = NULL;

  ota_dbus_ota_call_report_progress_sync (env->proxy, "", state, percent, code, msg, NULL, &error);
  g_assert_no_error (error);
}

gboolean
ota_test_ready_emitted (gpointer data)
{
  return ((OtaTestEnv *) data)->signals->ready->len > 0;
}

guint64
ota_test_status_downloaded (OtaTestEnv *env)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) status = NULL;
  guint64 downloaded = 0;

  ota_dbus_ota_call_get_status_sync (env->proxy, "", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_variant_lookup (status, "downloaded", "t", &downloaded));
  return downloaded;
}

typedef struct {
  OtaTestEnv *env;
  guint64 at_least;
} OtaTestDownloadedWait;

static gboolean
ota_test_downloaded_reaches (gpointer data)
{
  OtaTestDownloadedWait *w = data;

  return ota_test_status_downloaded (w->env) >= w->at_least;
}

gboolean
ota_test_wait_downloaded (OtaTestEnv *env, guint64 at_least, guint timeout_ms)
{
  OtaTestDownloadedWait w = { env, at_least };

  return ota_test_wait (ota_test_downloaded_reaches, &w, timeout_ms);
}

gint64
ota_test_record_downloaded (OtaTestEnv *env)
{
  g_autofree char *path = ota_test_fw_path (env, "json");
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *obj;

  if (!json_parser_load_from_file (parser, path, NULL) || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return -1;
  obj = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member_with_default (obj, "version", NULL), ==, "2.0");
  g_assert_true (json_object_has_member (obj, "downloaded_size"));
  return json_object_get_int_member (obj, "downloaded_size");
}

GArray *
ota_test_cloud_tool_responses (OtaTestCloudTool *tool)
{
  GArray *responses = g_array_new (FALSE, TRUE, sizeof (OtaTestResponse));
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (tool->stderr_path, &text, NULL, NULL))
    return responses;
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    const char *range = strstr (lines[i], " range=");
    const char *status = strstr (lines[i], " status=");
    const char *sent = strstr (lines[i], " sent=");
    OtaTestResponse r = { -1, 0, 0 };

    /* "... stalled after sent=N" lines are no response of their own. */
    if (!g_str_has_prefix (lines[i], "http: GET ") || range == NULL || status == NULL || sent == NULL)
      continue;
    if (g_ascii_isdigit (range[strlen (" range=")]))
      r.range_start = (gint64) g_ascii_strtoull (range + strlen (" range="), NULL, 10);
    r.status = (guint) g_ascii_strtoull (status + strlen (" status="), NULL, 10);
    r.sent = g_ascii_strtoull (sent + strlen (" sent="), NULL, 10);
    g_array_append_val (responses, r);
  }
  return responses;
}
