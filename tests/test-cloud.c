/* org.iv.Ota.Cloud end to end: apps publish and subscribe through the
 * agent's one MQTT connection (real mosquitto, real iv-otad), within the
 * topic rules, across broker restarts and while offline. */
#include "harness.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <unistd.h>

#define NS OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE
#define PROPERTY_DOWN "$thing/down/property/" NS
#define PROPERTY_UP "$thing/up/property/" NS
#define EVENTS "app/" NS "/events"
#define EVENT_UP "$thing/up/event/" NS

static const char *fast_loop = "report_interval=600\nretry_interval=1\n";

/* ---- the cloud side: every message on the device's topics ---- */

typedef struct {
  char *topic;
  GBytes *payload;
} Received;

static void
received_free (gpointer data)
{
  Received *r = data;
  g_free (r->topic);
  g_bytes_unref (r->payload);
  g_free (r);
}

static void
on_cloud_any (OtaMqttLink *link, const char *topic, GBytes *payload, GPtrArray *log)
{
  Received *r;

  if (g_str_has_prefix (topic, "$ota/"))
    return; /* the agent's reports and the harness's probes */
  r = g_new0 (Received, 1);
  r->topic = g_strdup (topic);
  r->payload = g_bytes_ref (payload);
  g_ptr_array_add (log, r);
}

typedef struct {
  OtaTestEnv env;
  GPtrArray *cloud_log; /* Received, what the cloud got from the device */
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  ota_test_env_setup (&f->env, data);
  f->cloud_log = g_ptr_array_new_with_free_func (received_free);
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

/* ---- an app on its own bus connection ---- */

typedef struct {
  GDBusConnection *connection;
  OtaDBusOtaCloud *cloud;
  GPtrArray *messages; /* Received */
} App;

static void
on_app_message (OtaDBusOtaCloud *proxy, const char *topic, GVariant *payload, App *app)
{
  Received *r = g_new0 (Received, 1);

  r->topic = g_strdup (topic);
  r->payload = g_variant_get_data_as_bytes (payload);
  g_ptr_array_add (app->messages, r);
}

static App *
app_new (void)
{
  g_autoptr (GError) error = NULL;
  App *app = g_new0 (App, 1);

  app->connection = ota_test_connection_new ();
  app->cloud = ota_dbus_ota_cloud_proxy_new_sync (app->connection, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START,
                                                  "org.iv.Ota", "/org/iv/Ota", NULL, &error);
  g_assert_no_error (error);
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (app->cloud), OTA_TEST_TIMEOUT_MS);
  app->messages = g_ptr_array_new_with_free_func (received_free);
  g_signal_connect (app->cloud, "message", G_CALLBACK (on_app_message), app);
  return app;
}

static void
app_free (App *app)
{
  g_signal_handlers_disconnect_by_data (app->cloud, app);
  g_object_unref (app->cloud);
  g_dbus_connection_close_sync (app->connection, NULL, NULL);
  g_object_unref (app->connection);
  g_ptr_array_unref (app->messages);
  g_free (app);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (App, app_free)

static gboolean
app_subscribe (App *app, const char *filter, GError **error)
{
  return ota_dbus_ota_cloud_call_subscribe_sync (app->cloud, filter, NULL, error);
}

static gboolean
app_publish (App *app, const char *topic, const void *data, gsize size, guint qos, gboolean queue, GError **error)
{
  GVariant *payload = g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, size, 1);
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);

  if (queue)
    g_variant_builder_add (&options, "{sv}", "queue", g_variant_new_boolean (TRUE));
  return ota_dbus_ota_cloud_call_publish_sync (app->cloud, topic, payload, qos, g_variant_builder_end (&options),
                                               NULL, error);
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

static void
wait_count (GPtrArray *log, guint count)
{
  CountWait w = { log, count };
  g_assert_true (ota_test_wait (log_has_count, &w, OTA_TEST_TIMEOUT_MS));
}

static void
assert_received (GPtrArray *log, guint index, const char *topic, GBytes *payload)
{
  Received *r;

  g_assert_cmpuint (index, <, log->len);
  r = g_ptr_array_index (log, index);
  g_assert_cmpstr (r->topic, ==, topic);
  g_assert_true (g_bytes_equal (r->payload, payload));
}

static void
cloud_publish (Fixture *f, const char *topic, GBytes *payload)
{
  g_autoptr (GError) error = NULL;
  gsize size;
  const void *data = g_bytes_get_data (payload, &size);

  g_assert_true (ota_mqtt_link_publish (f->env.cloud->link, topic, data, size, 1, NULL, &error));
  g_assert_no_error (error);
}

/* Every byte value, NULs included, up to the 64 KiB limit. */
static GBytes *
binary_payload (gsize size, guint8 seed)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (i * 7 + seed);
  return g_bytes_new_take (data, size);
}

/* ---- tests ---- */

static void
test_two_apps_get_only_their_messages (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) a = app_new ();
  g_autoptr (App) b = app_new ();
  g_autoptr (GBytes) for_a = binary_payload (64 * 1024, 1);
  g_autoptr (GBytes) for_b = binary_payload (3, 0);
  g_autoptr (GBytes) for_nobody = binary_payload (10, 5);
  g_autoptr (GBytes) last = g_bytes_new_static ("last", 4);
  g_autoptr (GBytes) from_a = binary_payload (64 * 1024, 9);
  g_autoptr (GBytes) from_b = g_bytes_new_static ("\0event\0", 7);

  g_assert_true (app_subscribe (a, PROPERTY_DOWN, &error));
  g_assert_no_error (error);
  g_assert_true (app_subscribe (b, "app/" NS "/+", &error));
  g_assert_no_error (error);
  /* Both filters of B match the same messages: one copy each still. */
  g_assert_true (app_subscribe (b, "app/" NS "/#", &error));
  g_assert_no_error (error);

  cloud_publish (f, PROPERTY_DOWN, for_a);
  cloud_publish (f, EVENTS, for_b);
  cloud_publish (f, "$thing/down/event/" NS, for_nobody);
  cloud_publish (f, PROPERTY_DOWN, last);
  cloud_publish (f, EVENTS, last);
  wait_count (a->messages, 2);
  wait_count (b->messages, 2);
  ota_test_spin (300); /* nothing more comes */
  g_assert_cmpuint (a->messages->len, ==, 2);
  assert_received (a->messages, 0, PROPERTY_DOWN, for_a);
  assert_received (a->messages, 1, PROPERTY_DOWN, last);
  g_assert_cmpuint (b->messages->len, ==, 2);
  assert_received (b->messages, 0, EVENTS, for_b);
  assert_received (b->messages, 1, EVENTS, last);

  /* And the other way: the cloud gets theirs, binary-safe. */
  g_assert_true (app_publish (a, PROPERTY_UP, g_bytes_get_data (from_a, NULL), g_bytes_get_size (from_a), 1, FALSE,
                              &error));
  g_assert_no_error (error);
  g_assert_true (app_publish (b, EVENT_UP, g_bytes_get_data (from_b, NULL), g_bytes_get_size (from_b), 0, FALSE,
                              &error));
  g_assert_no_error (error);
  wait_count (f->cloud_log, 2);
  assert_received (f->cloud_log, 0, PROPERTY_UP, from_a);
  assert_received (f->cloud_log, 1, EVENT_UP, from_b);
  /* The device's own reports stay the agent's: no app saw anything else. */
  g_assert_cmpuint (a->messages->len, ==, 2);
  g_assert_cmpuint (b->messages->len, ==, 2);
}

static void
assert_refused (GError *error, const char *name)
{
  ota_test_assert_remote_error (error, name);
}

static void
test_refused_topics (Fixture *f, gconstpointer data)
{
  g_autoptr (App) app = app_new ();
  const char *denied_filters[] = { "#", "+/+/#", "+/#", "$thing/#", "$ota/update/" NS, "$ota/#",
                                   "$thing/down/property/" OTA_TEST_PRODUCT "/dev2", OTA_TEST_PRODUCT "/+/#" };
  const char *denied_topics[] = { "$ota/report/" NS, "$thing/up/property/" OTA_TEST_PRODUCT "/dev2", "other/topic" };
  const char *invalid_filters[] = { "", "a/#/b", NS "/x+" };
  g_autofree char *too_big = g_malloc0 (64 * 1024 + 1);
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  GError *error = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (denied_filters); i++) {
    g_assert_false (app_subscribe (app, denied_filters[i], &error));
    assert_refused (error, "org.iv.Ota.Error.AccessDenied");
    g_clear_error (&error);
  }
  for (gsize i = 0; i < G_N_ELEMENTS (denied_topics); i++) {
    g_assert_false (app_publish (app, denied_topics[i], "x", 1, 1, FALSE, &error));
    assert_refused (error, "org.iv.Ota.Error.AccessDenied");
    g_clear_error (&error);
  }
  for (gsize i = 0; i < G_N_ELEMENTS (invalid_filters); i++) {
    g_assert_false (app_subscribe (app, invalid_filters[i], &error));
    assert_refused (error, "org.iv.Ota.Error.InvalidArgs");
    g_clear_error (&error);
  }
  g_assert_false (app_publish (app, PROPERTY_UP "/+", "x", 1, 1, FALSE, &error));
  assert_refused (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  g_assert_false (app_publish (app, PROPERTY_UP, "x", 1, 2, FALSE, &error));
  assert_refused (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  g_assert_false (app_publish (app, PROPERTY_UP, too_big, 64 * 1024 + 1, 1, FALSE, &error));
  assert_refused (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  g_variant_builder_add (&options, "{sv}", "retain", g_variant_new_boolean (TRUE));
  g_assert_false (ota_dbus_ota_cloud_call_publish_sync (app->cloud, PROPERTY_UP,
                                                        g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, "x", 1, 1), 1,
                                                        g_variant_builder_end (&options), NULL, &error));
  assert_refused (error, "org.iv.Ota.Error.InvalidArgs");
  g_clear_error (&error);
  /* Nothing of that reached the cloud. */
  ota_test_spin (200);
  g_assert_cmpuint (f->cloud_log->len, ==, 0);
}

static guint
broker_log_count (Fixture *f, const char *needle)
{
  g_autofree char *path = g_build_filename (f->env.dir, "mosquitto.log", NULL);
  return ota_test_file_count_lines (path, needle);
}

/* An app that leaves the bus without a word loses its subscriptions, and the
 * broker subscription goes with them when nobody else needs it. */
static void
test_app_gone_releases_subscriptions (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) stays = app_new ();
  App *leaves = app_new ();
  g_autoptr (GBytes) payload = g_bytes_new_static ("p", 1);

  g_assert_true (app_subscribe (stays, PROPERTY_DOWN, &error));
  g_assert_no_error (error);
  g_assert_true (app_subscribe (leaves, "app/" NS "/#", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (broker_log_count (f, "Received UNSUBSCRIBE from " OTA_TEST_PRODUCT OTA_TEST_DEVICE), ==, 0);
  app_free (leaves);
  for (int i = 0; i < 200 && ota_test_agent_log_count (f->env.agent, "left the bus: releasing its subscriptions") == 0;
       i++)
    ota_test_spin (50);
  g_assert_cmpuint (ota_test_agent_log_count (f->env.agent, "left the bus: releasing its subscriptions"), ==, 1);
  cloud_publish (f, EVENTS, payload);
  cloud_publish (f, PROPERTY_DOWN, payload);
  wait_count (stays->messages, 1);
  assert_received (stays->messages, 0, PROPERTY_DOWN, payload);
  for (int i = 0; i < 100 && broker_log_count (f, "Received UNSUBSCRIBE from " OTA_TEST_PRODUCT OTA_TEST_DEVICE) == 0;
       i++)
    ota_test_spin (50);
  g_assert_cmpuint (broker_log_count (f, "Received UNSUBSCRIBE from " OTA_TEST_PRODUCT OTA_TEST_DEVICE), ==, 1);
}

static void
test_broker_restart_restores_subscriptions (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) app = app_new ();
  g_autoptr (GBytes) payload = binary_payload (100, 3);

  g_assert_true (app_subscribe (app, PROPERTY_DOWN, &error));
  g_assert_no_error (error);
  ota_test_env_broker_restart_cloud_first (&f->env);
  /* Until the agent is back and subscribed again, messages find nobody. */
  for (int i = 0; i < 150 && app->messages->len == 0; i++) {
    cloud_publish (f, PROPERTY_DOWN, payload);
    ota_test_spin (200);
  }
  wait_count (app->messages, 1);
  assert_received (app->messages, 0, PROPERTY_DOWN, payload);
}

static void
test_publish_offline (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) app = app_new ();
  guint queued = 0;

  ota_test_broker_stop (f->env.broker);
  g_assert_true (ota_test_env_wait_connected (&f->env, FALSE, OTA_TEST_TIMEOUT_MS));
  /* Without the queue option: Offline, and the message is not kept. */
  g_assert_false (app_publish (app, PROPERTY_UP, "lost", 4, 1, FALSE, &error));
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Offline");
  g_clear_error (&error);
  /* With it: accepted at once, up to the bound. */
  for (;;) {
    g_autofree char *text = g_strdup_printf ("queued %u", queued);
    if (!app_publish (app, PROPERTY_UP, text, strlen (text), 1, TRUE, &error))
      break;
    queued++;
  }
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Failed");
  g_clear_error (&error);
  g_assert_cmpuint (queued, ==, 256);

  ota_test_env_broker_restart_cloud_first (&f->env);
  wait_count (f->cloud_log, queued);
  ota_test_spin (300);
  g_assert_cmpuint (f->cloud_log->len, ==, queued);
  for (guint i = 0; i < queued; i++) {
    g_autofree char *text = g_strdup_printf ("queued %u", i);
    g_autoptr (GBytes) expected = g_bytes_new (text, strlen (text));
    assert_received (f->cloud_log, i, PROPERTY_UP, expected);
  }
  /* Online again: QoS 1 returns once acknowledged, and it got there. */
  g_assert_true (app_publish (app, PROPERTY_UP, "online", 6, 1, FALSE, &error));
  g_assert_no_error (error);
  wait_count (f->cloud_log, queued + 1);
}

/* A broker whose ACL lets the device read PROD1/dev1/readonly only. */
static void
fixture_setup_acl (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *acl = NULL;
  g_autofree char *conf = NULL;
  OtaTestEnv *env = &f->env;

  env->dir = g_dir_make_tmp ("iv-ota-test-XXXXXX", &error);
  g_assert_no_error (error);
  env->fw_dir = g_build_filename (env->dir, "fw", NULL);
  g_assert_cmpint (g_mkdir (env->fw_dir, 0755), ==, 0);
  acl = g_build_filename (env->dir, "acl", NULL);
  g_assert_true (g_file_set_contents (acl,
                                      "topic readwrite $ota/#\ntopic readwrite $thing/#\n"
                                      "topic read " NS "/readonly\ntopic readwrite " NS "/ok/#\n",
                                      -1, NULL));
  conf = g_strdup_printf ("acl_file %s\n", acl);
  env->broker = ota_test_broker_start_with (env->dir, conf);
  env->cloud = ota_test_cloud_new (env->broker->port);
  env->agent = ota_test_agent_new (env->dir, env->broker->port, data);
  ota_test_agent_start (env->agent);
  env->connection = ota_test_connection_new ();
  env->proxy = ota_test_proxy_new (env->connection);
  env->signals = ota_test_signals_new (env->proxy);
  f->cloud_log = g_ptr_array_new_with_free_func (received_free);
  g_assert_true (ota_test_env_wait_connected (env, TRUE, OTA_TEST_TIMEOUT_MS));
}

/* MQTT 5: the broker answers a refused QoS 1 message with a PUBACK that says
 * so, and the app learns it (before, it heard "delivered"). */
static void
test_broker_refusal_reaches_the_app (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (App) app = app_new ();

  g_assert_false (app_publish (app, NS "/readonly", "x", 1, 1, FALSE, &error));
  ota_test_assert_remote_error (error, "org.iv.Ota.Error.Failed");
  g_assert_nonnull (strstr (error->message, "refused"));
  g_clear_error (&error);
  g_assert_true (app_publish (app, NS "/ok/x", "x", 1, 1, FALSE, &error));
  g_assert_no_error (error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn) g_test_add ("/cloud/" path, Fixture, fast_loop, fixture_setup, fn, fixture_teardown)
  ADD ("relay/two-apps-get-only-their-messages", test_two_apps_get_only_their_messages);
  ADD ("rules/refused-topics-and-filters", test_refused_topics);
  ADD ("relay/app-gone-releases-subscriptions", test_app_gone_releases_subscriptions);
  ADD ("relay/broker-restart-restores-subscriptions", test_broker_restart_restores_subscriptions);
  ADD ("publish/offline-with-and-without-queue", test_publish_offline);
  g_test_add ("/cloud/publish/broker-refusal-reaches-the-app", Fixture, fast_loop, fixture_setup_acl,
              test_broker_refusal_reaches_the_app, fixture_teardown);
  return g_test_run ();
}
