/* The device's cloud connection from apps: libiv-ota's iv_ota_publish,
 * iv_ota_subscribe and iv_ota_unsubscribe in process (callbacks on the
 * library thread, subscriptions made again when the agent restarts), and
 * the iv-ota publish / subscribe commands as processes, one of them killed. */
#include "harness.h"
#include "iv_ota_ext.h"

#include <glib/gstdio.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE
#define PROPERTY_DOWN "$thing/down/property/" NS
#define PROPERTY_UP "$thing/up/property/" NS
#define DEVICE_CLIENT OTA_TEST_PRODUCT OTA_TEST_DEVICE

typedef struct {
  OtaTestEnv env;
  GPtrArray *cloud_log; /* "topic payload" strings the cloud received from the device */
} Fixture;

static void
on_cloud_any (OtaMqttLink *link, const char *topic, GBytes *payload, GPtrArray *log)
{
  gsize size;
  const char *data = g_bytes_get_data (payload, &size);

  if (!g_str_has_prefix (topic, "$ota/"))
    g_ptr_array_add (log, g_strdup_printf ("%s %.*s", topic, (int) size, data));
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  ota_test_env_setup (&f->env, NULL);
  f->cloud_log = g_ptr_array_new_with_free_func (g_free);
  g_signal_connect (f->env.cloud->link, "message", G_CALLBACK (on_cloud_any), f->cloud_log);
  ota_mqtt_link_add_subscription (f->env.cloud->link, "$thing/up/#", 1);
  ota_test_env_cloud_sync (&f->env);
  g_assert_true (ota_test_env_wait_connected (&f->env, TRUE, OTA_TEST_TIMEOUT_MS));
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_signal_handlers_disconnect_by_data (f->env.cloud->link, f->cloud_log);
  g_ptr_array_unref (f->cloud_log);
  ota_test_env_teardown (&f->env, data);
}

static void
cloud_publish (Fixture *f, const char *topic, const void *data, gsize size)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (ota_mqtt_link_publish (f->env.cloud->link, topic, data, size, 1, NULL, &error));
  g_assert_no_error (error);
}

typedef struct {
  GPtrArray *log;
  guint count;
} CountWait;

static gboolean
log_has_count (gpointer data)
{
  CountWait *w = data;
  return w->log->len >= w->count;
}

/* ---- the library in process ---- */

typedef struct {
  GMutex lock;
  GPtrArray *messages; /* GBytes of "topic\0payload" */
  pthread_t main_thread;
  gboolean on_main_thread;
} Inbox;

static void
on_message (const char *topic, const void *payload, size_t length, void *user_data)
{
  Inbox *inbox = user_data;
  GByteArray *record = g_byte_array_new ();

  g_byte_array_append (record, (const guint8 *) topic, (guint) strlen (topic) + 1);
  g_byte_array_append (record, payload, (guint) length);
  g_mutex_lock (&inbox->lock);
  if (pthread_equal (pthread_self (), inbox->main_thread))
    inbox->on_main_thread = TRUE;
  g_ptr_array_add (inbox->messages, g_byte_array_free_to_bytes (record));
  g_mutex_unlock (&inbox->lock);
}

static void
inbox_init (Inbox *inbox)
{
  memset (inbox, 0, sizeof *inbox);
  g_mutex_init (&inbox->lock);
  inbox->messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  inbox->main_thread = pthread_self ();
}

static void
inbox_clear (Inbox *inbox)
{
  g_ptr_array_unref (inbox->messages);
  g_mutex_clear (&inbox->lock);
}

static guint
inbox_count (Inbox *inbox)
{
  guint n;

  g_mutex_lock (&inbox->lock);
  n = inbox->messages->len;
  g_mutex_unlock (&inbox->lock);
  return n;
}

static gboolean
inbox_has (gpointer data)
{
  gpointer *args = data;
  return inbox_count (args[0]) >= GPOINTER_TO_UINT (args[1]);
}

static void
inbox_wait (Inbox *inbox, guint count)
{
  gpointer args[] = { inbox, GUINT_TO_POINTER (count) };
  g_assert_true (ota_test_wait (inbox_has, args, OTA_TEST_TIMEOUT_MS));
}

static void
inbox_assert (Inbox *inbox, guint index, const char *topic, const void *payload, gsize size)
{
  gsize record_size;
  const char *record;

  g_mutex_lock (&inbox->lock);
  g_assert_cmpuint (index, <, inbox->messages->len);
  record = g_bytes_get_data (g_ptr_array_index (inbox->messages, index), &record_size);
  g_assert_cmpstr (record, ==, topic);
  g_assert_cmpmem (record + strlen (topic) + 1, record_size - strlen (topic) - 1, payload, size);
  g_mutex_unlock (&inbox->lock);
}

static void
test_library_publish_and_subscribe (Fixture *f, gconstpointer data)
{
  static const char binary[] = { 'a', '\0', 'b', '\xff', '\n' };
  iv_ota_subscription_s *sub = NULL;
  iv_ota_subscription_s *same = NULL;
  Inbox inbox, second;
  CountWait w = { f->cloud_log, 1 };

  inbox_init (&inbox);
  inbox_init (&second);
  g_assert_cmpint (iv_ota_subscribe (PROPERTY_DOWN, on_message, &inbox, &sub), ==, IV_ERR_NONE);
  g_assert_nonnull (sub);
  /* Two subscriptions of one process on the same filter: one message each. */
  g_assert_cmpint (iv_ota_subscribe ("$thing/down/+/" NS, on_message, &second, &same), ==, IV_ERR_NONE);
  cloud_publish (f, PROPERTY_DOWN, binary, sizeof binary);
  inbox_wait (&inbox, 1);
  inbox_wait (&second, 1);
  inbox_assert (&inbox, 0, PROPERTY_DOWN, binary, sizeof binary);
  g_assert_false (inbox.on_main_thread);

  g_assert_cmpint (iv_ota_publish (PROPERTY_UP, "up", 2, 1, 0), ==, IV_ERR_NONE);
  g_assert_true (ota_test_wait (log_has_count, &w, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpstr (g_ptr_array_index (f->cloud_log, 0), ==, PROPERTY_UP " up");

  g_assert_cmpint (iv_ota_publish ("$ota/report/" NS, "x", 1, 1, 0), ==, IV_ERR_OTA_ACCESS_DENIED);
  g_assert_cmpint (iv_ota_subscribe ("#", on_message, &inbox, &same), ==, IV_ERR_OTA_ACCESS_DENIED);
  g_assert_cmpint (iv_ota_publish (PROPERTY_UP, "x", 1, 2, 0), ==, IV_ERR_OTA_INVALID_ARG);
  g_assert_cmpint (iv_ota_publish (PROPERTY_UP, "x", 1, 1, 0x80), ==, IV_ERR_OTA_INVALID_ARG);

  /* After unsubscribing, nothing more for that subscription; the other stays. */
  g_assert_cmpint (iv_ota_unsubscribe (sub), ==, IV_ERR_NONE);
  cloud_publish (f, PROPERTY_DOWN, "2", 1);
  inbox_wait (&second, 2);
  g_assert_cmpuint (inbox_count (&inbox), ==, 1);
  g_assert_cmpint (iv_ota_unsubscribe (same), ==, IV_ERR_NONE);

  ota_test_broker_stop (f->env.broker);
  g_assert_true (ota_test_env_wait_connected (&f->env, FALSE, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (iv_ota_publish (PROPERTY_UP, "x", 1, 1, 0), ==, IV_ERR_DEVICE_OFFLINE);
  g_assert_cmpint (iv_ota_publish (PROPERTY_UP, "kept", 4, 1, IV_OTA_PUBLISH_QUEUE), ==, IV_ERR_NONE);
  ota_test_env_broker_restart_cloud_first (&f->env);
  w.count = 2;
  g_assert_true (ota_test_wait (log_has_count, &w, 3 * OTA_TEST_TIMEOUT_MS));
  g_assert_cmpstr (g_ptr_array_index (f->cloud_log, 1), ==, PROPERTY_UP " kept");
  inbox_clear (&inbox);
  inbox_clear (&second);
}

/* Before: a restarted agent knew nothing of the app's subscriptions. */
static void
test_library_subscription_survives_agent_restart (Fixture *f, gconstpointer data)
{
  iv_ota_subscription_s *sub = NULL;
  Inbox inbox;

  inbox_init (&inbox);
  g_assert_cmpint (iv_ota_subscribe (PROPERTY_DOWN, on_message, &inbox, &sub), ==, IV_ERR_NONE);
  ota_test_agent_kill (f->env.agent);
  ota_test_agent_start (f->env.agent);
  /* Until the new agent is connected and has our filter again, messages find nobody. */
  for (int i = 0; i < 150 && inbox_count (&inbox) == 0; i++) {
    cloud_publish (f, PROPERTY_DOWN, "again", 5);
    ota_test_spin (200);
  }
  inbox_wait (&inbox, 1);
  inbox_assert (&inbox, 0, PROPERTY_DOWN, "again", 5);
  g_assert_cmpint (iv_ota_unsubscribe (sub), ==, IV_ERR_NONE);
  inbox_clear (&inbox);
}

/* ---- the command line ---- */

static char **
cli_env (void)
{
  return g_environ_setenv (g_get_environ (), "IV_OTA_BUS", "session", TRUE);
}

static OtaTestProcess *
cli_subscribe_start (Fixture *f, const char *name, const char *count, const char *filter)
{
  g_autofree char *out = g_strdup_printf ("%s/%s.out", f->env.dir, name);
  g_autofree char *err = g_strdup_printf ("%s/%s.err", f->env.dir, name);
  g_auto (GStrv) envp = cli_env ();
  char *argv[] = { (char *) g_getenv ("IV_OTA"), "subscribe", "--count", (char *) count, (char *) filter, NULL };
  OtaTestProcess *proc = ota_test_process_spawn (argv, envp, out, err);

  for (int i = 0; i < 400 && ota_test_file_count_lines (err, "subscribed to") == 0; i++)
    ota_test_spin (50);
  g_assert_cmpuint (ota_test_file_count_lines (err, "subscribed to"), ==, 1);
  return proc;
}

static int
cli_run (const char *const *args, char **out)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_auto (GStrv) envp = cli_env ();
  g_autoptr (GError) error = NULL;
  g_autofree char *err = NULL;
  int status;

  g_ptr_array_add (argv, (gpointer) g_getenv ("IV_OTA"));
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  g_auto (GStrv) wrapped = ota_test_wrap_argv ((const char *const *) argv->pdata);
  g_assert_true (g_spawn_sync (NULL, wrapped, envp, G_SPAWN_DEFAULT, NULL, NULL, out, &err, &status, &error));
  g_assert_no_error (error);
  g_test_message ("iv-ota %s: %s", args[0], err);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
test_cli_publish_and_subscribe (Fixture *f, gconstpointer data)
{
  g_autofree char *out_path = g_strdup_printf ("%s/sub.out", f->env.dir);
  g_autofree char *out = NULL;
  CountWait w = { f->cloud_log, 1 };
  OtaTestProcess *sub = cli_subscribe_start (f, "sub", "2", "$thing/down/+/" NS);

  cloud_publish (f, PROPERTY_DOWN, "hello", 5);
  cloud_publish (f, "$thing/down/event/" NS, "bin\0\x01", 5);
  for (int i = 0; i < 200 && ota_test_process_is_running (sub); i++)
    ota_test_spin (50);
  g_assert_false (ota_test_process_is_running (sub));
  g_assert_true (WIFEXITED (sub->status) && WEXITSTATUS (sub->status) == 0);
  ota_test_process_free (sub);
  g_assert_true (g_file_get_contents (out_path, &out, NULL, NULL));
  g_assert_cmpstr (out, ==, PROPERTY_DOWN " hello\n$thing/down/event/" NS " bin\\x00\\x01\n");

  g_assert_cmpint (cli_run ((const char *const[]) { "publish", PROPERTY_UP, "from the shell", NULL }, NULL), ==, 0);
  g_assert_true (ota_test_wait (log_has_count, &w, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpstr (g_ptr_array_index (f->cloud_log, 0), ==, PROPERTY_UP " from the shell");
  /* Not allowed: 4; malformed: 2. */
  g_assert_cmpint (cli_run ((const char *const[]) { "publish", "$ota/report/" NS, "x", NULL }, NULL), ==, 4);
  g_assert_cmpint (cli_run ((const char *const[]) { "subscribe", "#", NULL }, NULL), ==, 4);
  g_assert_cmpint (cli_run ((const char *const[]) { "publish", PROPERTY_UP "/#", "x", NULL }, NULL), ==, 2);
  /* Offline: 7. */
  ota_test_broker_stop (f->env.broker);
  g_assert_true (ota_test_env_wait_connected (&f->env, FALSE, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (cli_run ((const char *const[]) { "publish", PROPERTY_UP, "x", NULL }, NULL), ==, 7);
}

static guint
broker_log_count (Fixture *f, const char *needle)
{
  g_autofree char *path = g_build_filename (f->env.dir, "mosquitto.log", NULL);
  return ota_test_file_count_lines (path, needle);
}

/* An app killed with SIGKILL says nothing: the agent sees it leave the bus,
 * drops its subscriptions and, nobody else needing them, the broker's. */
static void
test_cli_killed_subscriber_released (Fixture *f, gconstpointer data)
{
  OtaTestProcess *sub = cli_subscribe_start (f, "killed", "100", PROPERTY_DOWN);

  g_assert_cmpuint (broker_log_count (f, "Received UNSUBSCRIBE from " DEVICE_CLIENT), ==, 0);
  ota_test_process_stop (sub, SIGKILL);
  ota_test_process_free (sub);
  for (int i = 0; i < 200 && broker_log_count (f, "Received UNSUBSCRIBE from " DEVICE_CLIENT) == 0; i++)
    ota_test_spin (50);
  g_assert_cmpuint (broker_log_count (f, "Received UNSUBSCRIBE from " DEVICE_CLIENT), ==, 1);
  g_assert_cmpuint (ota_test_agent_log_count (f->env.agent, "left the bus: releasing its subscriptions"), ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_setenv ("IV_OTA_BUS", "session", TRUE);
#define ADD(path, fn) g_test_add ("/cloud-client/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("library/publish-and-subscribe", test_library_publish_and_subscribe);
  ADD ("library/subscription-survives-agent-restart", test_library_subscription_survives_agent_restart);
  ADD ("cli/publish-and-subscribe", test_cli_publish_and_subscribe);
  ADD ("cli/killed-subscriber-released", test_cli_killed_subscriber_released);
  return g_test_run ();
}
