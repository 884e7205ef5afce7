/* Module ownership (docs/dbus.md): one owner per module; only the owner steers
 * it; ownership ends with Exit or when the owner's connection leaves the bus;
 * offers reach the module their fw_type names, and only an owned one. */
#include "harness.h"

#include <signal.h>
#include <stdio.h>

#define REPORT_VERSION(v) "{\"type\":\"report_version\",\"report\":{\"version\":\"" v "\"}}"
#define REPORT_MODULE_VERSION(m, v)                                                                                \
  "{\"type\":\"report_version\",\"report\":{\"version\":\"" v "\",\"fw_type\":\"" m "\"}}"
#define FAKE_MD5 "0123456789abcdef0123456789abcdef"
/* Nothing listens on the discard port: offers to apps that ask first never get that far. */
#define UNUSED_URL "http://127.0.0.1:9/fw.bin"
/* argv[1] that turns this binary into an owner that asks before downloading. */
#define ASK_OWNER_ARG "--ask-owner"

static const char *fast_loop = "report_interval=600\nretry_interval=1\n";

/* ---- another application on the bus ---- */

typedef struct {
  GDBusConnection *connection;
  OtaDBusOta *proxy;
  OtaTestSignals *signals;
  char *name;
} App;

static App *
app_new (void)
{
  App *app = g_new0 (App, 1);

  app->connection = ota_test_connection_new ();
  app->proxy = ota_test_proxy_new (app->connection);
  app->signals = ota_test_signals_new (app->proxy);
  app->name = g_strdup (g_dbus_connection_get_unique_name (app->connection));
  return app;
}

static void
app_free (App *app)
{
  g_signal_handlers_disconnect_by_data (app->proxy, app->signals);
  g_clear_object (&app->proxy);
  ota_test_signals_free (app->signals);
  if (!g_dbus_connection_is_closed (app->connection))
    g_dbus_connection_close_sync (app->connection, NULL, NULL);
  g_clear_object (&app->connection);
  g_free (app->name);
  g_free (app);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (App, app_free)

static void
app_init (App *app, const char *module, const char *version, const char *dir, gboolean ask)
{
  g_autoptr (GError) error = NULL;

  ota_test_init (app->proxy, module, version, dir, ask, &error);
  g_assert_no_error (error);
}

/* A round trip to the agent, then every signal it sent before the reply is dispatched. */
static void
sync_signals (OtaDBusOta *proxy)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
    g_dbus_connection_call_sync (g_dbus_proxy_get_connection (G_DBUS_PROXY (proxy)), "org.iv.Ota", "/org/iv/Ota",
                                 "org.freedesktop.DBus.Peer", "Ping", NULL, NULL, G_DBUS_CALL_FLAGS_NONE,
                                 OTA_TEST_TIMEOUT_MS, NULL, &error);

  g_assert_no_error (error);
  g_assert_nonnull (reply);
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* ---- waiting ---- */

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* ota_test_wait for conditions no event of ours announces (files, remote state): polls. */
static gboolean
wait_polling (gboolean (*cond) (gpointer data), gpointer data)
{
  guint tick = g_timeout_add (20, tick_cb, NULL);
  gboolean ok = ota_test_wait (cond, data, OTA_TEST_TIMEOUT_MS);

  g_source_remove (tick);
  return ok;
}

typedef struct {
  OtaDBusOta *proxy;
  const char *module, *key, *expected;
} StatusWait;

static gboolean
status_is (gpointer data)
{
  StatusWait *w = data;
  g_autofree char *value = ota_test_status_get (w->proxy, w->module, w->key);

  return g_str_equal (value, w->expected);
}

static void
assert_status (OtaDBusOta *proxy, const char *module, const char *key, const char *expected)
{
  g_autofree char *value = ota_test_status_get (proxy, module, key);

  g_assert_cmpstr (value, ==, expected);
}

static void
assert_status_becomes (OtaDBusOta *proxy, const char *module, const char *key, const char *expected)
{
  StatusWait w = { proxy, module, key, expected };

  wait_polling (status_is, &w);
  assert_status (proxy, module, key, expected);
}

typedef struct {
  OtaTestSignals *sig;
  const char *module;
  guint from;
  int found;
} OfferedWait;

static gboolean
offered_found (gpointer data)
{
  OfferedWait *w = data;

  for (guint i = w->from; i < w->sig->offered->len; i++) {
    const char *module;
    g_variant_get (g_ptr_array_index (w->sig->offered, i), "(&s&st)", &module, NULL, NULL);
    if (g_str_equal (module, w->module)) {
      w->found = (int) i;
      return TRUE;
    }
  }
  return FALSE;
}

/* Index of the first UpdateOffered of @module at or after @from, or -1. */
static int
wait_offered (OtaTestSignals *sig, const char *module, guint from)
{
  OfferedWait w = { sig, module, from, -1 };

  ota_test_wait (offered_found, &w, OTA_TEST_TIMEOUT_MS);
  return w.found;
}

static void
assert_offered_at (OtaTestSignals *sig, guint index, const char *module, const char *version)
{
  const char *m, *v;

  g_assert_cmpuint (index, <, sig->offered->len);
  g_variant_get (g_ptr_array_index (sig->offered, index), "(&s&st)", &m, &v, NULL);
  g_assert_cmpstr (m, ==, module);
  g_assert_cmpstr (v, ==, version);
}

static guint
count_progress (OtaTestSignals *sig, const char *module, const char *state)
{
  guint n = 0;

  for (guint i = 0; i < sig->progress->len; i++) {
    const char *m, *s;
    g_variant_get (g_ptr_array_index (sig->progress, i), "(&s&s&suttis)", &m, NULL, &s, NULL, NULL, NULL, NULL,
                   NULL);
    n += g_str_equal (m, module) && g_str_equal (s, state);
  }
  return n;
}

static void
publish_offer (OtaTestEnv *env, const char *module, const char *version, const char *url, guint64 size)
{
  g_autofree char *offer = ota_test_offer_json (module, version, url, FAKE_MD5, size);

  ota_test_cloud_publish (env->cloud, offer, strlen (offer));
}

/* ---- owner processes ---- */

typedef struct {
  OtaTestProcess *proc;
  char *owner;
} OwnerWait;

static gboolean
owner_line_found (gpointer data)
{
  OwnerWait *w = data;
  g_autofree char *log = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (w->proc->log_path, &log, NULL, NULL))
    return !ota_test_process_is_running (w->proc);
  lines = g_strsplit (log, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    if (g_str_has_prefix (lines[i], "owner ") && lines[i + 1] != NULL) {
      w->owner = g_strdup (lines[i] + strlen ("owner "));
      return TRUE;
    }
  }
  return !ota_test_process_is_running (w->proc);
}

/* Runs @argv, an app that prints "owner <unique name>" once its Init
 * succeeded; returns that name. */
static char *
spawn_owner (OtaTestEnv *env, char **argv, OtaTestProcess **proc)
{
  g_autofree char *log_path = g_build_filename (env->dir, "owner.log", NULL);
  OwnerWait w = { NULL, NULL };

  w.proc = *proc = ota_test_process_spawn (argv, NULL, log_path, NULL);
  wait_polling (owner_line_found, &w);
  if (w.owner == NULL) {
    g_autofree char *log = NULL;
    g_file_get_contents (log_path, &log, NULL, NULL);
    g_error ("the owner process did not become owner; its output:\n%s", log != NULL ? log : "(none)");
  }
  g_assert_true (g_str_has_prefix (w.owner, ":"));
  return w.owner;
}

/* ota-test-client: owns @module without ask_before_download. */
static char *
spawn_test_client (OtaTestEnv *env, const char *module, const char *version, OtaTestProcess **proc)
{
  const char *client = g_getenv ("OTA_TEST_CLIENT");
  char *argv[] = { (char *) client, (char *) module, (char *) version, env->fw_dir, NULL };

  g_assert_nonnull (client);
  return spawn_owner (env, argv, proc);
}

/* This binary in its owner role: owns @module with ask_before_download. */
static char *
spawn_ask_owner (OtaTestEnv *env, const char *module, const char *version, OtaTestProcess **proc)
{
  g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
  char *argv[] = { self, ASK_OWNER_ARG, (char *) module, (char *) version, env->fw_dir, NULL };

  g_assert_nonnull (self);
  return spawn_owner (env, argv, proc);
}

static int
run_ask_owner (const char *module, const char *version, const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (GDBusConnection) bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, &error);
  g_autoptr (OtaDBusOta) proxy = NULL;

  if (bus != NULL) {
    proxy = ota_test_proxy_new (bus);
    ota_test_init (proxy, module, version, dir, TRUE, &error);
  }
  if (error != NULL) {
    printf ("error %s\n", error->message);
    return 1;
  }
  printf ("owner %s\n", g_dbus_connection_get_unique_name (bus));
  fflush (stdout);
  g_main_loop_run (loop);
  return 0;
}

/* ---- an HTTP server that accepts and never answers ---- */

typedef struct _SilentServer SilentServer;

typedef struct {
  SilentServer *server;
  GSocketConnection *connection;
  char buf[1024];
} SilentPeer;

struct _SilentServer {
  GSocketService *service;
  GCancellable *cancellable;
  GPtrArray *peers;
  guint16 port;
  guint accepted, closed;
};

static void silent_peer_read (SilentPeer *peer);

static void
on_peer_read (GObject *source, GAsyncResult *res, gpointer data)
{
  SilentPeer *peer = data;
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (n <= 0) {
    peer->server->closed++;
    return;
  }
  silent_peer_read (peer);
}

static void
silent_peer_read (SilentPeer *peer)
{
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (peer->connection)), peer->buf,
                             sizeof peer->buf, G_PRIORITY_DEFAULT, peer->server->cancellable, on_peer_read, peer);
}

static gboolean
on_incoming (GSocketService *service, GSocketConnection *connection, GObject *source, SilentServer *server)
{
  SilentPeer *peer = g_new0 (SilentPeer, 1);

  peer->server = server;
  peer->connection = g_object_ref (connection);
  g_ptr_array_add (server->peers, peer);
  server->accepted++;
  silent_peer_read (peer);
  return TRUE;
}

static void
silent_peer_free (SilentPeer *peer)
{
  g_io_stream_close (G_IO_STREAM (peer->connection), NULL, NULL);
  g_object_unref (peer->connection);
  g_free (peer);
}

static SilentServer *
silent_server_new (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) effective = NULL;
  SilentServer *server = g_new0 (SilentServer, 1);

  server->service = g_socket_service_new ();
  server->cancellable = g_cancellable_new ();
  server->peers = g_ptr_array_new_with_free_func ((GDestroyNotify) silent_peer_free);
  g_socket_listener_add_address (G_SOCKET_LISTENER (server->service), address, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL, &effective, &error);
  g_assert_no_error (error);
  server->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
  g_signal_connect (server->service, "incoming", G_CALLBACK (on_incoming), server);
  g_socket_service_start (server->service);
  return server;
}

static void
silent_server_free (SilentServer *server)
{
  g_socket_service_stop (server->service);
  g_socket_listener_close (G_SOCKET_LISTENER (server->service));
  g_signal_handlers_disconnect_by_data (server->service, server);
  /* Let the cancelled reads finish before their peers go. */
  g_cancellable_cancel (server->cancellable);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_ptr_array_unref (server->peers);
  g_object_unref (server->cancellable);
  g_object_unref (server->service);
  g_free (server);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SilentServer, silent_server_free)

static gboolean
server_accepted (gpointer data)
{
  return ((SilentServer *) data)->accepted > 0;
}

static gboolean
server_all_closed (gpointer data)
{
  SilentServer *server = data;
  return server->closed == server->accepted;
}

/* ---- Init ---- */

/* A second app cannot take a module over; the owner can Init again. */
static void
test_init_second_app_busy (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) other = app_new ();
  const char *me = g_dbus_connection_get_unique_name (env->connection);
  int first;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  first = ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (first, >=, 0);

  ota_test_init (other->proxy, "", "2.0", env->fw_dir, FALSE, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Busy");
  g_clear_error (&error);
  /* ask_before_download does not make a difference. */
  ota_test_init (other->proxy, "", "2.0", env->fw_dir, TRUE, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Busy");
  g_clear_error (&error);
  assert_status (other->proxy, "", "owner", me);
  assert_status (other->proxy, "", "version", "1.0");

  ota_test_init (env->proxy, "", "1.1", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) first + 1, REPORT_VERSION ("1.1"),
                                               OTA_TEST_TIMEOUT_MS),
                   >, first);
  assert_status (env->proxy, "", "owner", me);
  assert_status (env->proxy, "", "version", "1.1");
  /* Reports go out in order: the refused Init would have reported before 1.1. */
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"2.0\""), ==, 0);
}

/* ---- calls by someone who is not the owner ---- */

/* Each call would be valid from the owner (an offer is pending), so only the
 * ownership check can refuse them. */
static void
test_non_owner_refused (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) other = app_new ();
  const char *me = g_dbus_connection_get_unique_name (env->connection);

  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_MODULE_VERSION ("mcu", "1.0"),
                                               OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  publish_offer (env, "mcu", "1.1", UNUSED_URL, 1000);
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "mcu", "offered", OTA_TEST_TIMEOUT_MS), >=, 0);

  ota_dbus_ota_call_prepare_sync (other->proxy, "mcu", "1.1", TRUE, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);
  ota_dbus_ota_call_report_progress_sync (other->proxy, "mcu", "fail", -1, -5, "not mine", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);
  ota_dbus_ota_call_cancel_sync (other->proxy, "mcu", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);
  ota_dbus_ota_call_exit_sync (other->proxy, "mcu", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);

  /* Nothing changed: still owned, the offer still waits for its owner. */
  assert_status (env->proxy, "mcu", "owner", me);
  assert_status (env->proxy, "mcu", "state", "offered");
  assert_status (env->proxy, "mcu", "target_version", "1.1");
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "not mine"), ==, 0);
  /* And the owner can still answer it. */
  ota_dbus_ota_call_prepare_sync (env->proxy, "mcu", "1.1", FALSE, NULL, &error);
  g_assert_no_error (error);
  assert_status (env->proxy, "mcu", "state", "idle");
}

static void
test_non_owner_unknown_module (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) other = app_new ();
  g_autoptr (GVariant) status = NULL;

  /* Some other module exists: the unknown one must not be confused with it. */
  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);

  ota_dbus_ota_call_prepare_sync (other->proxy, "ghost", "1.1", TRUE, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
  g_clear_error (&error);
  ota_dbus_ota_call_report_progress_sync (other->proxy, "ghost", "fail", -1, -5, "", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
  g_clear_error (&error);
  ota_dbus_ota_call_cancel_sync (other->proxy, "ghost", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
  g_clear_error (&error);
  ota_dbus_ota_call_exit_sync (other->proxy, "ghost", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
  g_clear_error (&error);
  /* The main module was never Init'ed either. */
  ota_dbus_ota_call_exit_sync (other->proxy, "", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
  g_clear_error (&error);
  /* Refused calls do not create the module. */
  ota_dbus_ota_call_get_status_sync (other->proxy, "ghost", &status, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
}

/* CheckNow is harmless: anyone may ask for a report. */
static void
test_non_owner_check_now_allowed (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) other = app_new ();
  int first;

  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  first = ota_test_cloud_wait_report (env->cloud, 0, REPORT_MODULE_VERSION ("mcu", "1.0"), OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (first, >=, 0);

  ota_dbus_ota_call_check_now_sync (other->proxy, "mcu", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) first + 1, REPORT_MODULE_VERSION ("mcu", "1.0"),
                                               OTA_TEST_TIMEOUT_MS),
                   >, first);
  assert_status (env->proxy, "mcu", "owner", g_dbus_connection_get_unique_name (env->connection));
}

/* ---- the owner dies ---- */

static void
test_owner_killed_releases (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  OtaTestProcess *proc = NULL;
  g_autofree char *owner = spawn_test_client (env, "mcu", "1.0", &proc);

  assert_status (env->proxy, "mcu", "owner", owner);
  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, FALSE, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Busy");
  g_clear_error (&error);

  ota_test_process_stop (proc, SIGKILL);
  ota_test_process_free (proc);
  assert_status_becomes (env->proxy, "mcu", "owner", "");

  ota_test_init (env->proxy, "mcu", "1.1", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  assert_status (env->proxy, "mcu", "owner", g_dbus_connection_get_unique_name (env->connection));
  assert_status (env->proxy, "mcu", "version", "1.1");
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_MODULE_VERSION ("mcu", "1.1"),
                                               OTA_TEST_TIMEOUT_MS),
                   >=, 0);
}

/* Killed while an offer waits for its Prepare: the offer is dropped with it,
 * and the next owner gets the offer afresh. */
static void
test_owner_killed_while_offered (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  OtaTestProcess *proc = NULL;
  g_autofree char *owner = spawn_ask_owner (env, "", "1.0", &proc);
  int offered;

  assert_status (env->proxy, "", "owner", owner);
  publish_offer (env, NULL, "1.1", UNUSED_URL, 1000);
  offered = wait_offered (env->signals, "", 0);
  g_assert_cmpint (offered, >=, 0);
  assert_offered_at (env->signals, (guint) offered, "", "1.1");
  assert_status (env->proxy, "", "state", "offered");
  assert_status (env->proxy, "", "target_version", "1.1");

  ota_test_process_stop (proc, SIGKILL);
  ota_test_process_free (proc);
  assert_status_becomes (env->proxy, "", "owner", "");
  assert_status (env->proxy, "", "state", "idle");

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  publish_offer (env, NULL, "1.1", UNUSED_URL, 1000);
  offered = wait_offered (env->signals, "", (guint) offered + 1);
  g_assert_cmpint (offered, >=, 0);
  assert_offered_at (env->signals, (guint) offered, "", "1.1");
  assert_status (env->proxy, "", "state", "offered");
  assert_status (env->proxy, "", "owner", g_dbus_connection_get_unique_name (env->connection));
}

/* Killed during a download (ota-test-client does not ask first): the download
 * stops, the module goes back to idle. */
static void
test_owner_killed_while_downloading (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (SilentServer) server = silent_server_new ();
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u/fw.bin", server->port);
  OtaTestProcess *proc = NULL;
  g_autofree char *owner = spawn_test_client (env, "", "1.0", &proc);

  assert_status (env->proxy, "", "owner", owner);
  publish_offer (env, NULL, "1.1", url, 100000);
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "downloading", OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_true (wait_polling (server_accepted, server));
  assert_status (env->proxy, "", "state", "downloading");

  ota_test_process_stop (proc, SIGKILL);
  ota_test_process_free (proc);
  assert_status_becomes (env->proxy, "", "owner", "");
  assert_status (env->proxy, "", "state", "idle");
  /* The agent hung up on the server: nothing downloads for nobody. */
  g_assert_true (wait_polling (server_all_closed, server));
}

/* ---- routing by fw_type ---- */

typedef struct {
  App *mcu, *wifi; /* the main module "" is env->proxy's */
} Owners;

static void
owners_setup (OtaTestEnv *env, Owners *owners)
{
  g_autoptr (GError) error = NULL;

  owners->mcu = app_new ();
  owners->wifi = app_new ();
  /* ask_before_download: offers stay "offered", nothing downloads. */
  app_init (owners->mcu, "mcu", "1.0", env->fw_dir, TRUE);
  app_init (owners->wifi, "wifi", "1.0", env->fw_dir, TRUE);
  ota_test_init (env->proxy, "", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  assert_status (env->proxy, "", "owner", g_dbus_connection_get_unique_name (env->connection));
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=, 0);
}

static void
owners_clear (Owners *owners)
{
  g_clear_pointer (&owners->mcu, app_free);
  g_clear_pointer (&owners->wifi, app_free);
}

/* Every app sees every signal: the module argument tells whose it is. */
static void
assert_all_offered (OtaTestEnv *env, Owners *owners, guint index, const char *module, const char *version)
{
  OtaTestSignals *all[] = { env->signals, owners->mcu->signals, owners->wifi->signals };

  for (guint i = 0; i < G_N_ELEMENTS (all); i++) {
    g_assert_cmpint (wait_offered (all[i], module, index), ==, (int) index);
    assert_offered_at (all[i], index, module, version);
    g_assert_cmpuint (all[i]->offered->len, ==, index + 1);
  }
}

static void
assert_module (OtaTestEnv *env, const char *module, const char *state, const char *target)
{
  assert_status (env->proxy, module, "state", state);
  assert_status (env->proxy, module, "target_version", target);
}

static void
test_routing_by_fw_type (OtaTestEnv *env, gconstpointer data)
{
  Owners owners = { 0 };

  owners_setup (env, &owners);
  publish_offer (env, "mcu", "2.0", UNUSED_URL, 1000);
  assert_all_offered (env, &owners, 0, "mcu", "2.0");
  assert_module (env, "mcu", "offered", "2.0");
  assert_module (env, "wifi", "idle", "");
  assert_module (env, "", "idle", "");

  /* Any stray offer to wifi or "" would have come before this one. */
  publish_offer (env, NULL, "3.0", UNUSED_URL, 1000);
  assert_all_offered (env, &owners, 1, "", "3.0");
  assert_module (env, "wifi", "idle", "");
  g_assert_cmpuint (count_progress (owners.wifi->signals, "wifi", "offered"), ==, 0);
  g_assert_cmpuint (count_progress (owners.mcu->signals, "mcu", "offered"), ==, 1);
  owners_clear (&owners);
}

static void
test_routing_no_fw_type_is_main (OtaTestEnv *env, gconstpointer data)
{
  Owners owners = { 0 };

  owners_setup (env, &owners);
  publish_offer (env, NULL, "2.0", UNUSED_URL, 1000);
  assert_all_offered (env, &owners, 0, "", "2.0");
  assert_module (env, "", "offered", "2.0");
  assert_module (env, "mcu", "idle", "");
  assert_module (env, "wifi", "idle", "");

  /* A barrier: anything routed to mcu or wifi by the first offer came before. */
  publish_offer (env, "wifi", "4.0", UNUSED_URL, 1000);
  assert_all_offered (env, &owners, 1, "wifi", "4.0");
  assert_module (env, "mcu", "idle", "");
  assert_module (env, "", "offered", "2.0");
  g_assert_cmpuint (count_progress (owners.mcu->signals, "mcu", "offered"), ==, 0);
  owners_clear (&owners);
}

typedef struct {
  OtaTestAgent *agent;
  guint before;
} LogWait;

static gboolean
log_grew (gpointer data)
{
  LogWait *w = data;
  return ota_test_agent_log_count (w->agent, "no application owns") > w->before;
}

static void
test_routing_unowned_dropped (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) status = NULL;
  Owners owners = { 0 };
  LogWait w = { env->agent, 0 };
  OtaTestSignals *all[3];

  owners_setup (env, &owners);
  all[0] = env->signals;
  all[1] = owners.mcu->signals;
  all[2] = owners.wifi->signals;
  w.before = ota_test_agent_log_count (env->agent, "no application owns");
  publish_offer (env, "radio", "2.0", UNUSED_URL, 1000);
  g_assert_true (wait_polling (log_grew, &w));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "module radio dropped"), >=, 1);

  sync_signals (env->proxy);
  sync_signals (owners.mcu->proxy);
  sync_signals (owners.wifi->proxy);
  for (guint i = 0; i < G_N_ELEMENTS (all); i++) {
    g_assert_cmpuint (all[i]->offered->len, ==, 0);
    g_assert_cmpuint (count_progress (all[i], "radio", "offered"), ==, 0);
  }
  ota_dbus_ota_call_get_status_sync (env->proxy, "radio", &status, NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NoSuchModule");
  assert_module (env, "mcu", "idle", "");
  assert_module (env, "wifi", "idle", "");
  assert_module (env, "", "idle", "");
  owners_clear (&owners);
}

/* ---- Exit ---- */

static void
test_exit_releases (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) other = app_new ();
  LogWait w = { env->agent, 0 };

  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  ota_dbus_ota_call_exit_sync (env->proxy, "mcu", NULL, &error);
  g_assert_no_error (error);
  assert_status (env->proxy, "mcu", "owner", "");

  /* The module's loop ended: an offer for it is dropped. */
  w.before = ota_test_agent_log_count (env->agent, "no application owns");
  publish_offer (env, "mcu", "2.0", UNUSED_URL, 1000);
  g_assert_true (wait_polling (log_grew, &w));
  sync_signals (env->proxy);
  g_assert_cmpuint (env->signals->offered->len, ==, 0);

  app_init (other, "mcu", "1.5", env->fw_dir, TRUE);
  assert_status (env->proxy, "mcu", "owner", other->name);
  assert_status (env->proxy, "mcu", "version", "1.5");
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, REPORT_MODULE_VERSION ("mcu", "1.5"),
                                               OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  /* The former owner has no say any more. */
  ota_dbus_ota_call_exit_sync (env->proxy, "mcu", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  assert_status (env->proxy, "mcu", "owner", other->name);
}

static void
test_exit_twice_not_owner (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  ota_dbus_ota_call_exit_sync (env->proxy, "mcu", NULL, &error);
  g_assert_no_error (error);
  ota_dbus_ota_call_exit_sync (env->proxy, "mcu", NULL, &error);
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.NotOwner");
  g_clear_error (&error);
  assert_status (env->proxy, "mcu", "owner", "");
  /* The same app may come back. */
  ota_test_init (env->proxy, "mcu", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  assert_status (env->proxy, "mcu", "owner", g_dbus_connection_get_unique_name (env->connection));
}

/* ---- disconnection ---- */

static void
test_disconnect_releases_all (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) app = app_new ();
  g_autoptr (App) next = app_new ();
  const char *me = g_dbus_connection_get_unique_name (env->connection);

  app_init (app, "mcu", "1.0", env->fw_dir, TRUE);
  app_init (app, "wifi", "1.0", env->fw_dir, TRUE);
  ota_test_init (env->proxy, "", "1.0", env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  assert_status (env->proxy, "mcu", "owner", app->name);
  assert_status (env->proxy, "wifi", "owner", app->name);

  g_dbus_connection_close_sync (app->connection, NULL, &error);
  g_assert_no_error (error);
  assert_status_becomes (env->proxy, "mcu", "owner", "");
  assert_status_becomes (env->proxy, "wifi", "owner", "");
  /* Someone else's module is not affected. */
  assert_status (env->proxy, "", "owner", me);

  app_init (next, "mcu", "1.0", env->fw_dir, TRUE);
  app_init (next, "wifi", "1.0", env->fw_dir, TRUE);
  assert_status (env->proxy, "mcu", "owner", next->name);
  assert_status (env->proxy, "wifi", "owner", next->name);
}

int
main (int argc, char **argv)
{
  if (argc == 5 && g_str_equal (argv[1], ASK_OWNER_ARG))
    return run_ask_owner (argv[2], argv[3], argv[4]);
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn)                                                                                              \
  g_test_add ("/ownership/" path, OtaTestEnv, fast_loop, ota_test_env_setup, fn, ota_test_env_teardown)
  ADD ("init/second-app-busy", test_init_second_app_busy);
  ADD ("non-owner/refused", test_non_owner_refused);
  ADD ("non-owner/unknown-module", test_non_owner_unknown_module);
  ADD ("non-owner/check-now-allowed", test_non_owner_check_now_allowed);
  ADD ("owner-killed/releases", test_owner_killed_releases);
  ADD ("owner-killed/while-offered", test_owner_killed_while_offered);
  ADD ("owner-killed/while-downloading", test_owner_killed_while_downloading);
  ADD ("routing/by-fw-type", test_routing_by_fw_type);
  ADD ("routing/no-fw-type-is-main", test_routing_no_fw_type_is_main);
  ADD ("routing/unowned-dropped", test_routing_unowned_dropped);
  ADD ("exit/releases", test_exit_releases);
  ADD ("exit/twice-not-owner", test_exit_twice_not_owner);
  ADD ("disconnect/releases-all", test_disconnect_releases_all);
  return g_test_run ();
}
