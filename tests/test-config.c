/* Tests of the strict key-file configuration (docs/configuration.md). */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>

#define DEVICE "[device]\nproduct_id=P1\ndevice_name=dev1\n"

static OtaConfig *
load (const char *text, GError **error)
{
  return ota_config_load_from_data (text, strlen (text), error);
}

static void
test_minimal_config_gives_every_default (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (DEVICE, &error);

  g_assert_no_error (error);
  g_assert_nonnull (config);
  g_assert_cmpstr (config->mqtt_host, ==, "127.0.0.1");
  g_assert_cmpuint (config->mqtt_port, ==, 1883);
  g_assert_cmpstr (config->mqtt_client_id, ==, "P1dev1");
  g_assert_cmpstr (config->mqtt_username, ==, "");
  g_assert_cmpstr (config->mqtt_password, ==, "");
  g_assert_cmpuint (config->mqtt_keepalive, ==, 60);
  g_assert_false (config->mqtt_tls);
  g_assert_cmpstr (config->mqtt_ca_file, ==, "");
  g_assert_cmpstr (config->mqtt_cert_file, ==, "");
  g_assert_cmpstr (config->mqtt_key_file, ==, "");
  g_assert_cmpstr (config->product_id, ==, "P1");
  g_assert_cmpstr (config->device_name, ==, "dev1");
  g_assert_cmpstr (config->device_secret, ==, "");
  g_assert_cmpstr (config->state_dir, ==, "/var/lib/iv-ota");
  g_assert_cmpuint (config->report_interval, ==, 600);
  g_assert_cmpuint (config->retry_interval, ==, 60);
  g_assert_cmpuint (config->progress_interval, ==, 1);
  g_assert_cmpuint (config->max_retries, ==, 5);
  g_assert_cmpuint (config->stall_timeout, ==, 30);
  g_assert_cmpuint (config->checkpoint_bytes, ==, 4194304);
  g_assert_cmpuint (config->max_firmware_size, ==, G_GUINT64_CONSTANT (2147483648));
  g_assert_true (config->require_https);
  g_assert_cmpstr (config->ca_file, ==, "");
  g_assert_cmpuint (config->min_download_rate, ==, 16);
  g_assert_cmpuint (config->max_download_rate, ==, 0);
  g_assert_cmpstr (config->proxy, ==, "");
  g_assert_cmpstr (config->report_topic, ==, "$ota/report/P1/dev1");
  g_assert_cmpstr (config->update_topic, ==, "$ota/update/P1/dev1");
}

static void
test_new_defaults_has_empty_device_and_topic_templates (void)
{
  g_autoptr(OtaConfig) config = ota_config_new_defaults ();

  g_assert_cmpstr (config->product_id, ==, "");
  g_assert_cmpstr (config->device_name, ==, "");
  g_assert_cmpstr (config->mqtt_host, ==, "127.0.0.1");
  g_assert_cmpuint (config->mqtt_port, ==, 1883);
  g_assert_cmpuint (config->checkpoint_bytes, ==, 4194304);
  g_assert_true (config->require_https);
  g_assert_cmpstr (config->report_topic, ==, "$ota/report/{product_id}/{device_name}");
  g_assert_cmpstr (config->update_topic, ==, "$ota/update/{product_id}/{device_name}");
  ota_config_free (NULL);
}

static const char full_config[] =
  "# every key, none at its default (but [mqtt] username and password, which\n"
  "# device_secret excludes: see test_username_and_password_are_read_back)\n"
  "[mqtt]\n"
  "host=broker.example.com\n"
  "port=8883\n"
  "client_id=my-client\n"
  "keepalive=120\n"
  "tls=true\n"
  "ca_file=/etc/iv-ota/mqtt-ca.pem\n"
  "cert_file=/etc/iv-ota/client.pem\n"
  "key_file=/etc/iv-ota/client.key\n"
  "\n"
  "[device]\n"
  "product_id=ABC_de-9\n"
  "device_name=dev_1.a:b@c-d\n"
  "device_secret=2/SrxBvnz4NW1Y2p04zVIg==\n"
  "\n"
  "[ota]\n"
  "state_dir=/tmp/iv-ota-state\n"
  "report_interval=604800\n"
  "retry_interval=7\n"
  "progress_interval=3600\n"
  "max_retries=0\n"
  "stall_timeout=3600\n"
  "checkpoint_bytes=65536\n"
  "max_firmware_size=1125899906842624\n"
  "require_https=false\n"
  "ca_file=/etc/iv-ota/https-ca.pem\n"
  "report_topic=up/{product_id}\n"
  "update_topic=down/{device_name}\n";

static void
test_full_config_is_read_back_exactly (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (full_config, &error);

  g_assert_no_error (error);
  g_assert_nonnull (config);
  g_assert_cmpstr (config->mqtt_host, ==, "broker.example.com");
  g_assert_cmpuint (config->mqtt_port, ==, 8883);
  g_assert_cmpstr (config->mqtt_client_id, ==, "my-client");
  g_assert_cmpstr (config->mqtt_username, ==, "");
  g_assert_cmpstr (config->mqtt_password, ==, "");
  g_assert_cmpuint (config->mqtt_keepalive, ==, 120);
  g_assert_true (config->mqtt_tls);
  g_assert_cmpstr (config->mqtt_ca_file, ==, "/etc/iv-ota/mqtt-ca.pem");
  g_assert_cmpstr (config->mqtt_cert_file, ==, "/etc/iv-ota/client.pem");
  g_assert_cmpstr (config->mqtt_key_file, ==, "/etc/iv-ota/client.key");
  g_assert_cmpstr (config->product_id, ==, "ABC_de-9");
  g_assert_cmpstr (config->device_name, ==, "dev_1.a:b@c-d");
  g_assert_cmpstr (config->device_secret, ==, "2/SrxBvnz4NW1Y2p04zVIg==");
  g_assert_cmpstr (config->state_dir, ==, "/tmp/iv-ota-state");
  g_assert_cmpuint (config->report_interval, ==, 604800);
  g_assert_cmpuint (config->retry_interval, ==, 7);
  g_assert_cmpuint (config->progress_interval, ==, 3600);
  g_assert_cmpuint (config->max_retries, ==, 0);
  g_assert_cmpuint (config->stall_timeout, ==, 3600);
  g_assert_cmpuint (config->checkpoint_bytes, ==, 65536);
  g_assert_cmpuint (config->max_firmware_size, ==, G_GUINT64_CONSTANT (1) << 50);
  g_assert_false (config->require_https);
  g_assert_cmpstr (config->ca_file, ==, "/etc/iv-ota/https-ca.pem");
  g_assert_cmpstr (config->report_topic, ==, "up/ABC_de-9");
  g_assert_cmpstr (config->update_topic, ==, "down/dev_1.a:b@c-d");
}

static void
test_range_limits_are_inclusive (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) low = load (DEVICE "[mqtt]\nport=1\nkeepalive=5\n"
                                          "[ota]\nreport_interval=1\nretry_interval=1\n"
                                          "stall_timeout=1\nmax_firmware_size=1\n",
                                   &error);
  g_autoptr(OtaConfig) high = NULL;

  g_assert_no_error (error);
  g_assert_cmpuint (low->mqtt_port, ==, 1);
  g_assert_cmpuint (low->mqtt_keepalive, ==, 5);
  g_assert_cmpuint (low->report_interval, ==, 1);
  g_assert_cmpuint (low->retry_interval, ==, 1);
  g_assert_cmpuint (low->stall_timeout, ==, 1);
  g_assert_cmpuint (low->max_firmware_size, ==, 1);
  high = load (DEVICE "[mqtt]\nport=65535\nkeepalive=3600\n"
                      "[ota]\nretry_interval=604800\nmax_retries=1000\n"
                      "checkpoint_bytes=1073741824\n",
               &error);
  g_assert_no_error (error);
  g_assert_cmpuint (high->mqtt_port, ==, 65535);
  g_assert_cmpuint (high->mqtt_keepalive, ==, 3600);
  g_assert_cmpuint (high->retry_interval, ==, 604800);
  g_assert_cmpuint (high->max_retries, ==, 1000);
  g_assert_cmpuint (high->checkpoint_bytes, ==, 1073741824);
}

static void
test_topic_placeholders_are_all_substituted (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config =
    load (DEVICE "[ota]\n"
                 "report_topic=r/{device_name}/{product_id}/{device_name}{product_id}\n"
                 "update_topic=$ota/plain/topic\n",
          &error);

  g_assert_no_error (error);
  g_assert_cmpstr (config->report_topic, ==, "r/dev1/P1/dev1P1");
  g_assert_cmpstr (config->update_topic, ==, "$ota/plain/topic");
}

static void
test_username_and_password_are_read_back (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (DEVICE "[mqtt]\nusername=user;1\npassword=s3cret pass\n", &error);

  g_assert_no_error (error);
  g_assert_cmpstr (config->mqtt_username, ==, "user;1");
  g_assert_cmpstr (config->mqtt_password, ==, "s3cret pass");
  g_assert_cmpstr (config->device_secret, ==, "");
}

static void
test_client_id_defaults_to_product_and_device (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) unset = load ("[device]\nproduct_id=PROD\ndevice_name=name\n", &error);
  g_autoptr(OtaConfig) empty = NULL;
  g_autoptr(OtaConfig) set = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (unset->mqtt_client_id, ==, "PRODname");
  empty = load ("[mqtt]\nclient_id=\n[device]\nproduct_id=PROD\ndevice_name=name\n", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (empty->mqtt_client_id, ==, "PRODname");
  set = load ("[mqtt]\nclient_id=other\n[device]\nproduct_id=PROD\ndevice_name=name\n", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (set->mqtt_client_id, ==, "other");
}

static void
test_network_keys_are_read_back (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config =
    load (DEVICE "[ota]\nmin_download_rate=0\nmax_download_rate=65536\n"
                 "proxy=http://user:s3cret@127.0.0.1:3128\n",
          &error);

  g_assert_no_error (error);
  g_assert_cmpuint (config->min_download_rate, ==, 0);
  g_assert_cmpuint (config->max_download_rate, ==, 65536);
  g_assert_cmpstr (config->proxy, ==, "http://user:s3cret@127.0.0.1:3128");
}

/* The value may hold a password: messages describe it, never quote it. */
static void
test_bad_proxy_is_not_quoted (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (DEVICE "[ota]\nproxy=socks5://user:s3cret@127.0.0.1:1080\n", &error);

  g_assert_null (config);
  g_assert_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
  g_assert_null (strstr (error->message, "s3cret"));
  g_assert_nonnull (strstr (error->message, "[ota] proxy"));
}

static void
test_booleans_follow_key_file_rules (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (DEVICE "[mqtt]\ntls=1\n[ota]\nrequire_https=0\n", &error);

  g_assert_no_error (error);
  g_assert_true (config->mqtt_tls);
  g_assert_false (config->require_https);
}

static void
test_blanks_around_numbers_are_ignored (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (DEVICE "[mqtt]\nport = 1884 \t\n", &error);

  g_assert_no_error (error);
  g_assert_cmpuint (config->mqtt_port, ==, 1884);
}

static void
test_client_certificate_pair_is_checked_only_with_tls (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (DEVICE "[mqtt]\ntls=false\ncert_file=/c.pem\n", &error);

  g_assert_no_error (error);
  g_assert_false (config->mqtt_tls);
  g_assert_cmpstr (config->mqtt_cert_file, ==, "/c.pem");
  g_assert_cmpstr (config->mqtt_key_file, ==, "");
}

typedef struct {
  const char *name;
  const char *text;
  const char *message; /* a substring the error message must contain */
} BadConfig;

static const BadConfig bad_configs[] = {
  { "not-a-key-file", "this is not a key file\n", "not a valid key file" },
  { "unknown-group", DEVICE "[foo]\nbar=1\n", "unknown group [foo]" },
  { "allowed-topics-bad-filter", DEVICE "[cloud]\nallowed_topics=a/#/b\n", "[cloud] allowed_topics: filter \"a/#/b\"" },
  { "allowed-topics-bad-placeholder", DEVICE "[cloud]\nallowed_topics={product}/x\n",
    "[cloud] allowed_topics: unknown placeholder {product}" },
  { "unknown-cloud-key", DEVICE "[cloud]\nallowed=x\n", "unknown key [cloud] allowed" },
  { "unknown-empty-group", DEVICE "[foo]\n", "unknown group [foo]" },
  { "unknown-mqtt-key", DEVICE "[mqtt]\nhots=example.com\n", "unknown key [mqtt] hots" },
  { "duplicate-key", DEVICE "[ota]\nrequire_https=false\nrequire_https=true\n", "duplicate key [ota] require_https" },
  { "unknown-device-key", DEVICE "[device]\nserial=1\n", "unknown key [device] serial" },
  { "unknown-ota-key", DEVICE "[ota]\nreport_intervall=5\n", "unknown key [ota] report_intervall" },
  { "localized-key", DEVICE "[mqtt]\nhost[de]=x\n", "unknown key [mqtt] host[de]" },
  { "port-0", DEVICE "[mqtt]\nport=0\n", "[mqtt] port: expected an integer between 1 and 65535" },
  { "port-65536", DEVICE "[mqtt]\nport=65536\n", "[mqtt] port: expected an integer" },
  { "port-abc", DEVICE "[mqtt]\nport=abc\n", "[mqtt] port: expected an integer" },
  { "port-empty", DEVICE "[mqtt]\nport=\n", "[mqtt] port: expected an integer" },
  { "port-trailing-garbage", DEVICE "[mqtt]\nport=1883x\n", "[mqtt] port: expected an integer" },
  { "port-hex", DEVICE "[mqtt]\nport=0x10\n", "[mqtt] port: expected an integer" },
  { "port-plus-sign", DEVICE "[mqtt]\nport=+1883\n", "[mqtt] port: expected an integer" },
  { "keepalive--1", DEVICE "[mqtt]\nkeepalive=-1\n", "[mqtt] keepalive: expected an integer between 5 and 3600" },
  { "keepalive-4", DEVICE "[mqtt]\nkeepalive=4\n", "[mqtt] keepalive" },
  { "tls-maybe", DEVICE "[mqtt]\ntls=maybe\n", "[mqtt] tls: expected true or false, got \"maybe\"" },
  { "empty-host", DEVICE "[mqtt]\nhost=\n", "[mqtt] host" },
  { "control-character-in-host", DEVICE "[mqtt]\nhost=a\\tb\n", "[mqtt] host" },
  { "control-character-in-password", DEVICE "[mqtt]\npassword=a\\nb\n", "[mqtt] password" },
  { "invalid-escape", DEVICE "[mqtt]\nusername=a\\qb\n", "[mqtt] username" },
  { "invalid-utf-8", DEVICE "[mqtt]\nusername=a\xff\n", "[mqtt] username" },
  { "cert-without-key", DEVICE "[mqtt]\ntls=true\ncert_file=/c.pem\n", "[mqtt] key_file" },
  { "key-without-cert", DEVICE "[mqtt]\ntls=true\nkey_file=/c.key\n", "[mqtt] cert_file" },
  { "no-device-group", "[ota]\nmax_retries=1\n", "[device] product_id: required" },
  { "missing-product_id", "[device]\ndevice_name=dev1\n", "[device] product_id: required" },
  { "empty-product_id", "[device]\nproduct_id=\ndevice_name=dev1\n", "[device] product_id: required" },
  { "missing-device_name", "[device]\nproduct_id=P1\n", "[device] device_name: required" },
  { "empty-device_name", "[device]\nproduct_id=P1\ndevice_name=\n", "[device] device_name: required" },
  { "device_name-with-slash", "[device]\nproduct_id=P1\ndevice_name=a/b\n", "[device] device_name" },
  { "device_name-with-plus", "[device]\nproduct_id=P1\ndevice_name=a+b\n", "[device] device_name" },
  { "device_name-with-hash", "[device]\nproduct_id=P1\ndevice_name=a#b\n", "[device] device_name" },
  { "device_name-with-space", "[device]\nproduct_id=P1\ndevice_name=a b\n", "[device] device_name" },
  { "device_name-non-ASCII", "[device]\nproduct_id=P1\ndevice_name=d\xc3\xa9v\n", "[device] device_name" },
  { "product_id-with-dot", "[device]\nproduct_id=P.1\ndevice_name=dev1\n", "[device] product_id" },
  { "product_id-too-long",
    "[device]\nproduct_id=" "0123456789012345678901234567890123456789012345678901234567890123" "4\n"
    "device_name=dev1\n",
    "[device] product_id" },
  { "secret-with-username", DEVICE "device_secret=MTIz\n[mqtt]\nusername=u\n",
    "[device] device_secret: cannot be combined with [mqtt] username or password" },
  { "secret-with-password", DEVICE "device_secret=MTIz\n[mqtt]\npassword=p\n",
    "[device] device_secret: cannot be combined with [mqtt] username or password" },
  { "secret-not-base64", DEVICE "[device]\ndevice_secret=not base64!\n", "[device] device_secret" },
  { "secret-bad-length", DEVICE "[device]\ndevice_secret=abcde\n", "[device] device_secret" },
  { "secret-only-padding", DEVICE "[device]\ndevice_secret=====\n", "[device] device_secret" },
  { "secret-padding-inside", DEVICE "[device]\ndevice_secret=ab==abcd\n", "[device] device_secret" },
  { "state_dir-relative", DEVICE "[ota]\nstate_dir=var/lib/iv-ota\n", "[ota] state_dir" },
  { "report_interval-0", DEVICE "[ota]\nreport_interval=0\n", "[ota] report_interval" },
  { "report_interval-abc", DEVICE "[ota]\nreport_interval=abc\n",
    "[ota] report_interval: expected an integer between 1 and 604800, got \"abc\"" },
  { "retry_interval-too-big", DEVICE "[ota]\nretry_interval=604801\n", "[ota] retry_interval" },
  { "progress_interval-0", DEVICE "[ota]\nprogress_interval=0\n", "[ota] progress_interval" },
  { "max_retries-1001", DEVICE "[ota]\nmax_retries=1001\n", "[ota] max_retries" },
  { "stall_timeout-3601", DEVICE "[ota]\nstall_timeout=3601\n", "[ota] stall_timeout" },
  { "checkpoint_bytes-too-small", DEVICE "[ota]\ncheckpoint_bytes=4095\n", "[ota] checkpoint_bytes" },
  { "checkpoint_bytes-too-big", DEVICE "[ota]\ncheckpoint_bytes=1073741825\n", "[ota] checkpoint_bytes" },
  { "max_firmware_size-0", DEVICE "[ota]\nmax_firmware_size=0\n", "[ota] max_firmware_size" },
  { "max_firmware_size-over-250", DEVICE "[ota]\nmax_firmware_size=1125899906842625\n",
    "[ota] max_firmware_size" },
  { "max_firmware_size-over-264", DEVICE "[ota]\nmax_firmware_size=18446744073709551616\n",
    "[ota] max_firmware_size" },
  { "require_https-maybe", DEVICE "[ota]\nrequire_https=maybe\n", "[ota] require_https" },
  { "min_download_rate-abc", DEVICE "[ota]\nmin_download_rate=abc\n", "[ota] min_download_rate" },
  { "max_download_rate-negative", DEVICE "[ota]\nmax_download_rate=-1\n", "[ota] max_download_rate" },
  { "max_download_rate-below-min", DEVICE "[ota]\nmin_download_rate=1000\nmax_download_rate=999\n",
    "[ota] max_download_rate: 999 is below min_download_rate (1000)" },
  { "proxy-https", DEVICE "[ota]\nproxy=https://127.0.0.1:3128\n", "[ota] proxy: only http://" },
  { "proxy-no-port", DEVICE "[ota]\nproxy=http://127.0.0.1\n", "[ota] proxy: no port" },
  { "proxy-no-host", DEVICE "[ota]\nproxy=http://:3128\n", "[ota] proxy" },
  { "proxy-with-path", DEVICE "[ota]\nproxy=http://127.0.0.1:3128/x\n", "[ota] proxy: nothing may follow" },
  { "proxy-not-a-url", DEVICE "[ota]\nproxy=127.0.0.1:3128\n", "[ota] proxy" },
  { "report_topic-with-hash", DEVICE "[ota]\nreport_topic=a/#\n", "[ota] report_topic" },
  { "update_topic-with-plus", DEVICE "[ota]\nupdate_topic=a/+/b\n", "[ota] update_topic" },
  { "empty-topic", DEVICE "[ota]\nupdate_topic=\n", "[ota] update_topic" },
  { "unknown-placeholder", DEVICE "[ota]\nreport_topic=a/{serial}\n",
    "[ota] report_topic: unknown placeholder {serial}" },
  { "unterminated-placeholder", DEVICE "[ota]\nupdate_topic=a/{product_id\n", "[ota] update_topic" },
};

static void
test_bad_config_is_rejected (gconstpointer data)
{
  const BadConfig *bad = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(OtaConfig) config = load (bad->text, &error);

  g_assert_null (config);
  g_assert_nonnull (error);
  g_assert_cmpuint (error->domain, ==, G_KEY_FILE_ERROR);
  g_test_message ("%s", error->message);
  if (strstr (error->message, bad->message) == NULL)
    g_test_fail_printf ("\"%s\" does not contain \"%s\"", error->message, bad->message);
}

static char *
write_temp_config (const char *dir, const char *text)
{
  g_autofree char *path = g_build_filename (dir, "iv-ota.conf", NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
  return g_steal_pointer (&path);
}

static void
test_load_reads_the_file (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-config-XXXXXX", &error);
  g_autofree char *path = NULL;
  g_autoptr(OtaConfig) config = NULL;

  g_assert_no_error (error);
  path = write_temp_config (dir, DEVICE "[mqtt]\nport=1884\n");
  config = ota_config_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (config->mqtt_port, ==, 1884);
  g_assert_cmpstr (config->device_name, ==, "dev1");
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_load_prefixes_errors_with_the_path (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-config-XXXXXX", &error);
  g_autofree char *path = NULL;
  g_autofree char *prefix = NULL;
  g_autoptr(OtaConfig) config = NULL;

  g_assert_no_error (error);
  path = write_temp_config (dir, DEVICE "[mqtt]\nport=0\n");
  prefix = g_strdup_printf ("%s: [mqtt] port: ", path);
  config = ota_config_load (path, &error);
  g_assert_null (config);
  g_assert_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
  g_assert_true (g_str_has_prefix (error->message, prefix));
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_load_of_missing_file_names_the_path (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-config-XXXXXX", &error);
  g_autofree char *path = NULL;
  g_autofree char *prefix = NULL;
  g_autoptr(OtaConfig) config = NULL;

  g_assert_no_error (error);
  path = g_build_filename (dir, "missing.conf", NULL);
  prefix = g_strdup_printf ("%s: ", path);
  config = ota_config_load (path, &error);
  g_assert_null (config);
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
  g_assert_true (g_str_has_prefix (error->message, prefix));
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* ---- data/iv-otad.conf, the installed example ---- */

/* Every key of docs/configuration.md. */
static const char *const design_keys[] = {
  "mqtt host", "mqtt port", "mqtt client_id", "mqtt username", "mqtt password", "mqtt keepalive", "mqtt tls",
  "mqtt ca_file", "mqtt cert_file", "mqtt key_file", "device product_id", "device device_name",
  "device device_secret", "ota state_dir", "ota report_interval", "ota retry_interval", "ota progress_interval",
  "ota max_retries", "ota stall_timeout", "ota checkpoint_bytes", "ota max_firmware_size", "ota require_https",
  "ota ca_file", "ota report_topic", "ota update_topic", "ota min_download_rate", "ota max_download_rate",
  "ota proxy",
  "security trusted_keys", "cloud allowed_topics",
};

/* "#key=value" lines become "key=value" (the device named), and the keys
 * seen are collected as "group key". */
static char *
uncomment_example (const char *text, GHashTable *seen)
{
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  g_autoptr(GString) out = g_string_new (NULL);
  g_autofree char *group = g_strdup ("");

  for (gsize i = 0; lines[i] != NULL; i++) {
    const char *line = lines[i];
    gsize key_length = strspn (line + (line[0] == '#'), "abcdefghijklmnopqrstuvwxyz_");

    if (line[0] == '[') {
      g_free (group);
      group = g_strndup (line + 1, strcspn (line + 1, "]"));
    } else if (line[0] == '#' && key_length > 0 && line[1 + key_length] == '=') {
      line++;
      g_hash_table_add (seen, g_strdup_printf ("%s %.*s", group, (int) key_length, line));
    }
    if (g_str_equal (line, "product_id="))
      line = "product_id=P1";
    else if (g_str_equal (line, "device_name="))
      line = "device_name=dev1";
    g_string_append_printf (out, "%s\n", line);
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* The example documents every key, commented out at its true default. */
static void
test_example_config_shows_every_key_at_its_default (void)
{
  const char *path = g_getenv ("IV_OTA_EXAMPLE_CONFIG");
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autofree char *uncommented = NULL;
  g_autoptr(OtaConfig) example = NULL;
  g_autoptr(OtaConfig) defaults = load (DEVICE, NULL);

  if (path == NULL) {
    g_test_skip ("IV_OTA_EXAMPLE_CONFIG is not set (run through meson test)");
    return;
  }
  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  /* As installed, nothing is set: the agent refuses it until the device is named. */
  g_assert_null (load (text, &error));
  g_assert_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND);
  g_clear_error (&error);
  uncommented = uncomment_example (text, seen);
  for (gsize i = 0; i < G_N_ELEMENTS (design_keys); i++) {
    if (!g_hash_table_contains (seen, design_keys[i]))
      g_error ("the example config does not show [%s]", design_keys[i]);
  }
  g_assert_cmpuint (g_hash_table_size (seen), ==, G_N_ELEMENTS (design_keys));
  example = load (uncommented, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (example->mqtt_host, ==, defaults->mqtt_host);
  g_assert_cmpuint (example->mqtt_port, ==, defaults->mqtt_port);
  g_assert_cmpstr (example->mqtt_client_id, ==, defaults->mqtt_client_id);
  g_assert_cmpstr (example->mqtt_username, ==, defaults->mqtt_username);
  g_assert_cmpstr (example->mqtt_password, ==, defaults->mqtt_password);
  g_assert_cmpuint (example->mqtt_keepalive, ==, defaults->mqtt_keepalive);
  g_assert_cmpint (example->mqtt_tls, ==, defaults->mqtt_tls);
  g_assert_cmpstr (example->mqtt_ca_file, ==, defaults->mqtt_ca_file);
  g_assert_cmpstr (example->mqtt_cert_file, ==, defaults->mqtt_cert_file);
  g_assert_cmpstr (example->mqtt_key_file, ==, defaults->mqtt_key_file);
  g_assert_cmpstr (example->device_secret, ==, defaults->device_secret);
  g_assert_cmpstr (example->state_dir, ==, defaults->state_dir);
  g_assert_cmpuint (example->report_interval, ==, defaults->report_interval);
  g_assert_cmpuint (example->retry_interval, ==, defaults->retry_interval);
  g_assert_cmpuint (example->progress_interval, ==, defaults->progress_interval);
  g_assert_cmpuint (example->max_retries, ==, defaults->max_retries);
  g_assert_cmpuint (example->stall_timeout, ==, defaults->stall_timeout);
  g_assert_cmpuint (example->checkpoint_bytes, ==, defaults->checkpoint_bytes);
  g_assert_cmpuint (example->max_firmware_size, ==, defaults->max_firmware_size);
  g_assert_cmpint (example->require_https, ==, defaults->require_https);
  g_assert_cmpstr (example->ca_file, ==, defaults->ca_file);
  g_assert_cmpuint (example->min_download_rate, ==, defaults->min_download_rate);
  g_assert_cmpuint (example->max_download_rate, ==, defaults->max_download_rate);
  g_assert_cmpstr (example->proxy, ==, defaults->proxy);
  g_assert_cmpstr (example->report_topic, ==, defaults->report_topic);
  g_assert_cmpstr (example->update_topic, ==, defaults->update_topic);
  g_assert_null (example->cloud_allowed_topics);
}

static void
test_cloud_allowed_topics_expanded (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OtaConfig) defaults = load (DEVICE, &error);
  g_autoptr (OtaConfig) config = NULL;

  g_assert_no_error (error);
  g_assert_null (defaults->cloud_allowed_topics);
  config = load (DEVICE "[cloud]\nallowed_topics= $thing/+/+/{product_id}/{device_name} ;;"
                        "{product_id}/{device_name}/#;\n",
                 &error);
  g_assert_no_error (error);
  g_assert_nonnull (config->cloud_allowed_topics);
  g_assert_cmpuint (g_strv_length (config->cloud_allowed_topics), ==, 2);
  g_assert_cmpstr (config->cloud_allowed_topics[0], ==, "$thing/+/+/P1/dev1");
  g_assert_cmpstr (config->cloud_allowed_topics[1], ==, "P1/dev1/#");
}

/* [security] trusted_keys: a ';'-list of absolute paths (the keys are read when the agent starts). */
static void
test_trusted_keys_list (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OtaConfig) none = load (DEVICE, &error);
  g_autoptr (OtaConfig) two = load (DEVICE "[security]\ntrusted_keys= /k/a.pub ;/k/b.pub;\n", &error);
  g_autoptr (OtaConfig) relative = NULL;
  g_auto (GStrv) none_paths = NULL;
  g_auto (GStrv) paths = NULL;

  g_assert_no_error (error);
  none_paths = ota_config_get_trusted_keys (none);
  g_assert_cmpuint (g_strv_length (none_paths), ==, 0);
  paths = ota_config_get_trusted_keys (two);
  g_assert_cmpuint (g_strv_length (paths), ==, 2);
  g_assert_cmpstr (paths[0], ==, "/k/a.pub");
  g_assert_cmpstr (paths[1], ==, "/k/b.pub");
  relative = load (DEVICE "[security]\ntrusted_keys=/k/a.pub;keys/b.pub\n", &error);
  g_assert_null (relative);
  g_assert_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
  g_assert_nonnull (strstr (error->message, "[security] trusted_keys"));
  g_assert_nonnull (strstr (error->message, "keys/b.pub"));
  g_clear_error (&error);
  g_assert_null (load (DEVICE "[security]\ntrusted_key=/k/a.pub\n", &error));
  g_assert_nonnull (strstr (error->message, "trusted_key"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/trusted-keys-list", test_trusted_keys_list);
  g_test_add_func ("/config/minimal-config-gives-every-default",
                   test_minimal_config_gives_every_default);
  g_test_add_func ("/config/new-defaults-has-empty-device-and-topic-templates",
                   test_new_defaults_has_empty_device_and_topic_templates);
  g_test_add_func ("/config/full-config-is-read-back-exactly", test_full_config_is_read_back_exactly);
  g_test_add_func ("/config/range-limits-are-inclusive", test_range_limits_are_inclusive);
  g_test_add_func ("/config/topic-placeholders-are-all-substituted",
                   test_topic_placeholders_are_all_substituted);
  g_test_add_func ("/config/client-id-defaults-to-product-and-device",
                   test_client_id_defaults_to_product_and_device);
  g_test_add_func ("/config/username-and-password-are-read-back", test_username_and_password_are_read_back);
  g_test_add_func ("/config/booleans-follow-key-file-rules", test_booleans_follow_key_file_rules);
  g_test_add_func ("/config/network-keys-are-read-back", test_network_keys_are_read_back);
  g_test_add_func ("/config/bad-proxy-is-not-quoted", test_bad_proxy_is_not_quoted);
  g_test_add_func ("/config/blanks-around-numbers-are-ignored",
                   test_blanks_around_numbers_are_ignored);
  g_test_add_func ("/config/client-certificate-pair-is-checked-only-with-tls",
                   test_client_certificate_pair_is_checked_only_with_tls);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_configs); i++) {
    g_autofree char *path = g_strdup_printf ("/config/rejects/%s", bad_configs[i].name);

    g_test_add_data_func (path, &bad_configs[i], test_bad_config_is_rejected);
  }
  g_test_add_func ("/config/example/shows-every-key-at-its-default",
                   test_example_config_shows_every_key_at_its_default);
  g_test_add_func ("/config/load/reads-the-file", test_load_reads_the_file);
  g_test_add_func ("/config/cloud/allowed-topics-expanded", test_cloud_allowed_topics_expanded);
  g_test_add_func ("/config/load/prefixes-errors-with-the-path",
                   test_load_prefixes_errors_with_the_path);
  g_test_add_func ("/config/load/missing-file-names-the-path",
                   test_load_of_missing_file_names_the_path);
  return g_test_run ();
}
