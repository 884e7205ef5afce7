/* Downloads on weak and managed links, end to end (docs/network.md): the real
 * agent against iv-ota-cloud, suspended mid-download, with secrets in the
 * offered URL, and through a real HTTP proxy (tinyproxy) configured in the
 * config file or in the environment. */
#include "harness.h"

#include <signal.h>
#include <string.h>
#include <sys/types.h>

#define MIB (1024 * 1024)
#define FW_SIZE (6 * MIB)

static const char *one_retry = "checkpoint_bytes=262144\nmax_retries=1\nstall_timeout=2\nretry_interval=60\n"
                               "report_interval=600\n";
static const char *fast = "checkpoint_bytes=262144\nmax_retries=5\nstall_timeout=2\nretry_interval=1\n"
                          "report_interval=600\n";

/* ---- helpers ---- */

static guint
free_port (void)
{
  g_autoptr (GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_true (g_socket_bind (socket, address, TRUE, &error));
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static gboolean
port_accepts (guint port)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;

  g_socket_client_set_enable_proxy (client, FALSE);
  conn = g_socket_client_connect_to_host (client, "127.0.0.1", (guint16) port, NULL, NULL);
  return conn != NULL;
}

static void
assert_ready (OtaTestEnv *env, const OtaTestImage *image)
{
  g_autofree char *bin = ota_test_fw_path (env, "bin");
  g_autofree char *got = NULL;
  g_autofree char *md5 = NULL;
  gsize length = 0;

  g_assert_true (ota_test_wait (ota_test_ready_emitted, env, 60000));
  g_assert_true (g_file_get_contents (bin, &got, &length, NULL));
  g_assert_cmpuint (length, ==, image->size);
  md5 = g_compute_checksum_for_data (G_CHECKSUM_MD5, (const guchar *) got, length);
  g_assert_cmpstr (md5, ==, image->md5);
}

static gboolean
downloaded_some (gpointer data)
{
  return ota_test_status_downloaded (data) >= MIB;
}

/* ---- a real proxy ---- */

typedef struct {
  guint port;
  char *log_path;
  OtaTestProcess *proc;
} TinyProxy;

/* NULL when tinyproxy is not installed (scripts/deps.sh installs it). */
static TinyProxy *
tinyproxy_start (OtaTestEnv *env, const char *basic_auth)
{
  g_autofree char *exe = g_find_program_in_path ("tinyproxy");
  g_autofree char *conf_path = g_build_filename (env->dir, "tinyproxy.conf", NULL);
  g_autofree char *out_path = g_build_filename (env->dir, "tinyproxy.out", NULL);
  g_autofree char *conf = NULL;
  TinyProxy *proxy;

  if (exe == NULL)
    return NULL;
  proxy = g_new0 (TinyProxy, 1);
  proxy->port = free_port ();
  proxy->log_path = g_build_filename (env->dir, "tinyproxy.log", NULL);
  conf = g_strdup_printf ("Port %u\nListen 127.0.0.1\nTimeout 30\nLogFile \"%s\"\nLogLevel Info\nMaxClients 20\n%s%s\n",
                          proxy->port, proxy->log_path, basic_auth != NULL ? "BasicAuth " : "",
                          basic_auth != NULL ? basic_auth : "");
  g_assert_true (g_file_set_contents (conf_path, conf, -1, NULL));
  {
    char *argv[] = { exe, "-d", "-c", conf_path, NULL };
    proxy->proc = ota_test_process_spawn (argv, NULL, out_path, NULL);
  }
  for (guint i = 0; i < 200 && !port_accepts (proxy->port); i++) {
    g_assert_true (ota_test_process_is_running (proxy->proc));
    g_usleep (25 * 1000);
  }
  g_assert_true (port_accepts (proxy->port));
  return proxy;
}

/* Requests for the image that reached the proxy (one refused with 407 counts
 * too: a client sends credentials only once challenged). */
static guint
tinyproxy_requests (TinyProxy *proxy, OtaTestCloudTool *tool)
{
  g_autofree char *needle = g_strdup_printf ("GET http://127.0.0.1:%u/FW_2.0.bin ", tool->http_port);

  return ota_test_file_count_lines (proxy->log_path, needle);
}

static void
tinyproxy_free (TinyProxy *proxy)
{
  if (proxy == NULL)
    return;
  ota_test_process_stop (proxy->proc, SIGTERM);
  ota_test_process_free (proxy->proc);
  g_free (proxy->log_path);
  g_free (proxy);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TinyProxy, tinyproxy_free)

static void
agent_restart_with (OtaTestEnv *env, const char *config)
{
  ota_test_agent_stop (env->agent);
  if (config != NULL)
    ota_test_agent_add_config (env->agent, config);
  ota_test_agent_start (env->agent);
  ota_test_env_reconnect_app (env);
}

/* ---- tests ---- */

/* SIGSTOP for longer than stall_timeout mid-download, then SIGCONT: the bytes
 * that waited in the socket are read, the same request goes on. */
static void
test_sigstop_keeps_the_request (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  const char *args[] = { "--rate=1048576", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait (downloaded_some, env, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (kill (env->agent->proc->pid, SIGSTOP), ==, 0);
  g_usleep (5 * G_USEC_PER_SEC); /* stall_timeout is 2 s */
  g_assert_cmpint (kill (env->agent->proc->pid, SIGCONT), ==, 0);
  assert_ready (env, &image);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 1);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "interrupted at byte"), ==, 0);
}

/* A link that drops every second (iv-ota-cloud --cut-after-seconds) under a
 * slow rate: each attempt brings about 512 KiB, far more than 10 % of the
 * image, so with max_retries=1 the download still finishes, without a
 * single fail report. */
static void
test_link_that_drops_often_finishes (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  const char *args[] = { "--rate=524288", "--cut-after-seconds=1", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;

  ota_test_image_make (env, 3 * MIB, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_app_init (env, "1.0");
  assert_ready (env, &image);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, >=, 3);
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"fail\""), ==, 0);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "interrupted at byte"), >=, 2);
}

/* user:password@ and the query (a presigned URL's signature) never reach the log. */
static void
test_logged_urls_hide_secrets (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  guint port = free_port ();
  g_autofree char *port_arg = g_strdup_printf ("--http-port=%u", port);
  g_autofree char *url_arg =
    g_strdup_printf ("--url=http://user:s3cretpw@127.0.0.1:%u/FW_2.0.bin?sign=T0PSECRETSIG&expires=1", port);
  g_autofree char *shown = g_strdup_printf ("from http://127.0.0.1:%u/FW_2.0.bin", port);
  const char *args[] = { port_arg, url_arg, "--cut-after=1048576", "--cut-once", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;

  ota_test_image_make (env, 2 * MIB, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_app_init (env, "1.0");
  assert_ready (env, &image);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, shown), >=, 1);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "interrupted at byte"), >=, 1);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "s3cretpw"), ==, 0);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "T0PSECRETSIG"), ==, 0);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "expires="), ==, 0);
}

/* [ota] proxy= with credentials: both attempts of a cut download go through
 * the proxy, the second one resumes with a range, the password is not logged. */
static void
test_config_proxy_with_resume (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (TinyProxy) proxy = tinyproxy_start (env, "otauser s3cretpw");
  g_auto (OtaTestImage) image = { 0 };
  g_autofree char *cut = g_strdup_printf ("--cut-after=%d", 2 * MIB);
  const char *args[] = { cut, "--cut-once", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GArray) responses = NULL;
  g_autofree char *config = NULL;
  OtaTestResponse *second;

  if (proxy == NULL) {
    g_test_skip ("tinyproxy is not installed (scripts/deps.sh installs it)");
    return;
  }
  config = g_strdup_printf ("[ota]\nproxy=http://otauser:s3cretpw@127.0.0.1:%u\n", proxy->port);
  agent_restart_with (env, config);
  ota_test_image_make (env, FW_SIZE, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  ota_test_app_init (env, "1.0");
  assert_ready (env, &image);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  second = &g_array_index (responses, OtaTestResponse, 1);
  g_assert_cmpint (second->range_start, >, 0);
  g_assert_cmpint (second->range_start, <=, 2 * MIB);
  g_assert_cmpuint (second->status, ==, 206);
  /* Both went through the proxy (the first one also drew a 407 challenge, answered). */
  g_assert_cmpuint (tinyproxy_requests (proxy, tool), >=, 2);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "s3cretpw"), ==, 0);
}

/* Without [ota] proxy the environment decides: http_proxy, unless no_proxy names the host. */
static void
environment_proxy (OtaTestEnv *env, gboolean bypass)
{
  g_autoptr (TinyProxy) proxy = tinyproxy_start (env, NULL);
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autofree char *value = NULL;

  if (proxy == NULL) {
    g_test_skip ("tinyproxy is not installed (scripts/deps.sh installs it)");
    return;
  }
  value = g_strdup_printf ("127.0.0.1:%u", proxy->port);
  ota_test_agent_setenv (env->agent, "http_proxy", value);
  if (bypass)
    ota_test_agent_setenv (env->agent, "no_proxy", "localhost, 127.0.0.1");
  agent_restart_with (env, NULL);
  ota_test_image_make (env, 2 * MIB, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, NULL);
  ota_test_app_init (env, "1.0");
  assert_ready (env, &image);
  g_assert_cmpuint (tinyproxy_requests (proxy, tool), ==, bypass ? 0 : 1);
}

static void
test_http_proxy_environment (OtaTestEnv *env, gconstpointer data)
{
  environment_proxy (env, FALSE);
}

static void
test_no_proxy_environment (OtaTestEnv *env, gconstpointer data)
{
  environment_proxy (env, TRUE);
}

/* ---- Inhibit / Uninhibit ---- */

static char **
status_inhibited (OtaDBusOta *proxy)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) status = NULL;
  char **reasons = NULL;

  ota_dbus_ota_call_get_status_sync (proxy, "", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_variant_lookup (status, "inhibited", "^as", &reasons));
  return reasons;
}

static guint32
inhibit (OtaDBusOta *proxy, const char *module, const char *reason)
{
  g_autoptr (GError) error = NULL;
  guint32 cookie = 0;

  ota_dbus_ota_call_inhibit_sync (proxy, module, reason, &cookie, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (cookie, !=, 0);
  return cookie;
}

static void
uninhibit (OtaDBusOta *proxy, guint32 cookie)
{
  g_autoptr (GError) error = NULL;

  ota_dbus_ota_call_uninhibit_sync (proxy, cookie, NULL, &error);
  g_assert_no_error (error);
}

typedef struct {
  OtaTestCloudTool *tool;
  guint responses;
} ResponsesWait;

static gboolean
cloud_answered (gpointer data)
{
  ResponsesWait *wait = data;
  g_autoptr (GArray) responses = ota_test_cloud_tool_responses (wait->tool);

  return responses->len >= wait->responses;
}

/* A running download pauses while a cookie is held (no more bytes, no fail,
 * still "downloading", the reasons in GetStatus), and when the last cookie
 * goes it resumes from the bytes it had. */
static void
test_inhibit_pauses_running_download (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  const char *args[] = { "--rate=2097152", NULL };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GDBusConnection) other_connection = ota_test_connection_new ();
  g_autoptr (OtaDBusOta) other = ota_test_proxy_new (other_connection);
  g_autoptr (GArray) responses = NULL;
  g_auto (GStrv) reasons = NULL;
  g_autofree char *state = NULL;
  ResponsesWait first = { NULL, 1 };
  guint64 at_pause, later;
  guint32 video, call;

  ota_test_image_make (env, FW_SIZE, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, args);
  first.tool = tool;
  ota_test_app_init (env, "1.0");
  g_assert_true (ota_test_wait (downloaded_some, env, OTA_TEST_TIMEOUT_MS));
  video = inhibit (other, "", "streaming live video");
  call = inhibit (other, "", "video call");
  reasons = status_inhibited (env->proxy);
  g_assert_cmpuint (g_strv_length (reasons), ==, 2);
  g_assert_cmpstr (reasons[0], ==, "streaming live video");
  g_assert_cmpstr (reasons[1], ==, "video call");
  /* The transfer stopped: the server's response ended, and nothing more comes in. */
  g_assert_true (ota_test_wait (cloud_answered, &first, OTA_TEST_TIMEOUT_MS));
  ota_test_spin (500);
  at_pause = ota_test_status_downloaded (env);
  ota_test_spin (2000);
  later = ota_test_status_downloaded (env);
  g_assert_cmpuint (later, ==, at_pause);
  g_assert_cmpuint (at_pause, <, image.size);
  state = ota_test_status_get (env->proxy, "", "state");
  g_assert_cmpstr (state, ==, "downloading");
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 1);
  g_clear_pointer (&responses, g_array_unref);

  uninhibit (other, video);
  ota_test_spin (1000);
  g_assert_cmpuint (ota_test_cloud_tool_requests (tool), ==, 1);
  uninhibit (other, call);
  assert_ready (env, &image);
  ota_test_cloud_tool_stop (tool);
  responses = ota_test_cloud_tool_responses (tool);
  g_assert_cmpuint (responses->len, ==, 2);
  /* Resumed from every byte it had counted. */
  g_assert_cmpint (g_array_index (responses, OtaTestResponse, 1).range_start, >=, (gint64) at_pause);
  g_assert_cmpuint (g_array_index (responses, OtaTestResponse, 1).status, ==, 206);
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"fail\""), ==, 0);
  g_strfreev (reasons);
  reasons = status_inhibited (env->proxy);
  g_assert_cmpuint (g_strv_length (reasons), ==, 0);
}

/* A cookie taken before the module exists holds its first download; the
 * holder leaving the bus releases it. */
static void
test_inhibit_before_start_and_holder_leaves (OtaTestEnv *env, gconstpointer data)
{
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) tool = NULL;
  g_autoptr (GDBusConnection) other_connection = ota_test_connection_new ();
  g_autoptr (OtaDBusOta) other = ota_test_proxy_new (other_connection);
  g_auto (GStrv) reasons = NULL;
  g_autofree char *state = NULL;

  inhibit (other, "", "battery low");
  ota_test_image_make (env, 2 * MIB, &image);
  tool = ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image.path, NULL);
  ota_test_app_init (env, "1.0");
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "downloading", OTA_TEST_TIMEOUT_MS), >=, 0);
  ota_test_spin (2000);
  g_assert_cmpuint (ota_test_cloud_tool_requests (tool), ==, 0);
  reasons = status_inhibited (env->proxy);
  g_assert_cmpuint (g_strv_length (reasons), ==, 1);
  g_assert_cmpstr (reasons[0], ==, "battery low");
  state = ota_test_status_get (env->proxy, "", "state");
  g_assert_cmpstr (state, ==, "downloading");
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "waits: inhibited (battery low)"), ==, 1);
  /* The holder crashes, say. */
  g_dbus_connection_close_sync (other_connection, NULL, NULL);
  assert_ready (env, &image);
  g_strfreev (reasons);
  reasons = status_inhibited (env->proxy);
  g_assert_cmpuint (g_strv_length (reasons), ==, 0);
}

static void
test_inhibit_bad_requests (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GDBusConnection) other_connection = ota_test_connection_new ();
  g_autoptr (OtaDBusOta) other = ota_test_proxy_new (other_connection);
  g_autofree char *long_reason = g_strnfill (257, 'x');
  g_autoptr (GError) error = NULL;
  guint32 cookie = 0, mine;

  ota_dbus_ota_call_inhibit_sync (env->proxy, "bad/module", "x", &cookie, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  ota_dbus_ota_call_inhibit_sync (env->proxy, "", "", &cookie, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  ota_dbus_ota_call_inhibit_sync (env->proxy, "", long_reason, &cookie, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  ota_dbus_ota_call_inhibit_sync (env->proxy, "", "a\nb", &cookie, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  ota_dbus_ota_call_uninhibit_sync (env->proxy, 12345, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);
  /* Only the holder ends its cookie. */
  mine = inhibit (env->proxy, "mcu", "flashing the MCU");
  ota_dbus_ota_call_uninhibit_sync (other, mine, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);
  /* At most 32 per client; ending one makes room. */
  for (guint i = 1; i < 32; i++)
    inhibit (env->proxy, "mcu", "more");
  ota_dbus_ota_call_inhibit_sync (env->proxy, "mcu", "one too many", &cookie, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Failed");
  g_clear_error (&error);
  uninhibit (env->proxy, mine);
  ota_dbus_ota_call_uninhibit_sync (env->proxy, mine, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);
  g_assert_cmpuint (inhibit (env->proxy, "mcu", "room again"), !=, mine);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/network/stall/sigstop-keeps-the-request", OtaTestEnv, fast, ota_test_env_setup,
              test_sigstop_keeps_the_request, ota_test_env_teardown);
  g_test_add ("/network/retry/link-that-drops-often-finishes-without-fail", OtaTestEnv, one_retry,
              ota_test_env_setup, test_link_that_drops_often_finishes, ota_test_env_teardown);
  g_test_add ("/network/log/urls-without-userinfo-or-query", OtaTestEnv, fast, ota_test_env_setup,
              test_logged_urls_hide_secrets, ota_test_env_teardown);
  g_test_add ("/network/proxy/config-proxy-with-credentials-and-resume", OtaTestEnv, fast, ota_test_env_setup,
              test_config_proxy_with_resume, ota_test_env_teardown);
  g_test_add ("/network/proxy/http-proxy-environment", OtaTestEnv, fast, ota_test_env_setup,
              test_http_proxy_environment, ota_test_env_teardown);
  g_test_add ("/network/proxy/no-proxy-environment-goes-direct", OtaTestEnv, fast, ota_test_env_setup,
              test_no_proxy_environment, ota_test_env_teardown);
  g_test_add ("/network/inhibit/pauses-a-running-download-and-resumes", OtaTestEnv, fast, ota_test_env_setup,
              test_inhibit_pauses_running_download, ota_test_env_teardown);
  g_test_add ("/network/inhibit/holds-the-start-until-the-holder-leaves", OtaTestEnv, fast, ota_test_env_setup,
              test_inhibit_before_start_and_holder_leaves, ota_test_env_teardown);
  g_test_add ("/network/inhibit/bad-requests", OtaTestEnv, fast, ota_test_env_setup, test_inhibit_bad_requests,
              ota_test_env_teardown);
  return g_test_run ();
}
