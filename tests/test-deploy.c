/* On a real device and a real cloud (issue 7): MQTT over TLS with CA and host
 * verification and certificate sign-in, device key sign-in against a broker
 * with a password file, and a clean shutdown on SIGTERM (last checkpoint,
 * outbox, DISCONNECT).
 *
 * Certificates are made once per run with the openssl command (EC P-256:
 * fast): a CA, another CA, a broker certificate for IP 127.0.0.1, one for
 * 127.0.0.2 (a host name mismatch), and a client certificate. Expected signed
 * credentials are computed with `openssl dgst`, not with the agent's code. */
#include "harness.h"
#include "outbox.h"
#include "record.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define SECRET "2/SrxBvnz4NW1Y2p04zVIg=="
#define OTHER_SECRET "MTIzNDU2Nzg5MGFiY2RlZg=="
#define DEVICE_USER_PREFIX OTA_TEST_PRODUCT OTA_TEST_DEVICE ";12010126;"
#define CLIENT_ID OTA_TEST_PRODUCT OTA_TEST_DEVICE

static char *certs; /* directory of the run's certificates */

/* ---- helpers ---- */

/* Runs a shell command in @cwd; asserts it succeeds; returns its stdout. */
static char *
sh (const char *cwd, const char *command)
{
  g_autoptr (GError) error = NULL;
  char *argv[] = { "/bin/sh", "-ec", (char *) command, NULL };
  char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;

  g_spawn_sync (cwd, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("command failed: %s\n%s", command, err);
  return out;
}

static void
make_certificates (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL;

  certs = g_dir_make_tmp ("iv-ota-certs-XXXXXX", &error);
  g_assert_no_error (error);
  out = sh (certs,
            "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key 2>/dev/null; }\n"
            "ca() { key $1; openssl req -x509 -new -key $1.key -out $1.pem -days 2 -subj \"/CN=$2\"; }\n"
            "cert() { # cert NAME CN EXTENSIONS\n"
            "  key $1; openssl req -new -key $1.key -out $1.csr -subj \"/CN=$2\"\n"
            "  printf '%s\\n' \"$3\" > $1.ext\n"
            "  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $1.pem -days 2 "
            "-extfile $1.ext 2>/dev/null; }\n"
            "ca ca 'iv-ota test CA'\n"
            "ca other-ca 'iv-ota other CA'\n"
            /* The CN is no host name: only the subjectAltName can match. */
            "cert server 'iv-ota test broker' 'subjectAltName=IP:127.0.0.1'\n"
            "cert wrong-host 'iv-ota test broker' 'subjectAltName=IP:127.0.0.2'\n"
            "cert client " CLIENT_ID " 'extendedKeyUsage=clientAuth'\n");
}

static char *
cert (const char *name)
{
  return g_build_filename (certs, name, NULL);
}

typedef struct {
  char *dir;
  OtaTestBroker *broker;
  OtaTestAgent *agent;
  GDBusConnection *connection;
  OtaDBusOta *proxy;
} Deploy;

static void
deploy_setup (Deploy *d, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  d->dir = g_dir_make_tmp ("iv-ota-deploy-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
deploy_teardown (Deploy *d, gconstpointer data)
{
  g_clear_object (&d->proxy);
  if (d->connection != NULL)
    g_dbus_connection_close_sync (d->connection, NULL, NULL);
  g_clear_object (&d->connection);
  if (d->agent != NULL)
    ota_test_agent_stop (d->agent);
  g_clear_pointer (&d->agent, ota_test_agent_free);
  g_clear_pointer (&d->broker, ota_test_broker_free);
  if (!g_test_failed () && g_getenv ("OTA_TEST_KEEP") == NULL)
    ota_test_remove_tree (d->dir);
  else
    g_test_message ("test files kept in %s", d->dir);
  g_free (d->dir);
}

/* A broker with @broker_conf, and the agent with @agent_conf added to its
 * config and @signin_hook (may be NULL) as IV_OTAD_TEST_SIGNIN. */
static void
deploy_start_full (Deploy *d, const char *broker_conf, const char *agent_conf, const char *signin_hook)
{
  d->broker = ota_test_broker_start_with (d->dir, broker_conf);
  d->agent = ota_test_agent_new (d->dir, d->broker->port, NULL);
  if (agent_conf != NULL)
    ota_test_agent_add_config (d->agent, agent_conf);
  if (signin_hook != NULL)
    ota_test_agent_setenv (d->agent, "IV_OTAD_TEST_SIGNIN", signin_hook);
  ota_test_agent_start (d->agent);
  d->connection = ota_test_connection_new ();
  d->proxy = ota_test_proxy_new (d->connection);
}

static void
deploy_start (Deploy *d, const char *broker_conf, const char *agent_conf)
{
  deploy_start_full (d, broker_conf, agent_conf, NULL);
}

static char *
broker_log (Deploy *d)
{
  return g_build_filename (d->dir, "mosquitto.log", NULL);
}

static guint
broker_log_count (Deploy *d, const char *needle)
{
  g_autofree char *path = broker_log (d);
  return ota_test_file_count_lines (path, needle);
}

static gboolean
proxy_connected (gpointer data)
{
  return ota_dbus_ota_get_connected (data);
}

/* Connected as the agent says it right now (Properties.Get, not the cache). */
static gboolean
agent_connected_now (Deploy *d)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) value = NULL;

  reply = g_dbus_connection_call_sync (d->connection, "org.iv.Ota", "/org/iv/Ota", "org.freedesktop.DBus.Properties",
                                       "Get", g_variant_new ("(ss)", "org.iv.Ota", "Connected"),
                                       G_VARIANT_TYPE ("(v)"), G_DBUS_CALL_FLAGS_NONE, OTA_TEST_TIMEOUT_MS, NULL,
                                       &error);
  g_assert_no_error (error);
  g_variant_get (reply, "(v)", &value);
  return g_variant_get_boolean (value);
}

/* The agent failed to connect twice in a row (so the failure is not a fluke
 * of the first attempt) and says so with @needle; it never was connected. */
static void
assert_refused (Deploy *d, const char *needle)
{
  if (!ota_test_wait_file_lines (d->agent->log_path, needle, 2, OTA_TEST_TIMEOUT_MS * 2))
    g_error ("the agent never logged \"%s\" twice, see %s", needle, d->agent->log_path);
  g_assert_false (agent_connected_now (d));
  g_assert_cmpuint (ota_test_agent_log_count (d->agent, "mqtt: connected to"), ==, 0);
}

/* The session is up (CONNACK) and carries traffic: the version report of an
 * Init reaches the broker from the agent's client id. */
static void
assert_session_works (Deploy *d)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *fw = g_build_filename (d->dir, "fw", NULL);
  g_autofree char *received = g_strdup_printf ("Received PUBLISH from %s", CLIENT_ID);

  g_assert_true (ota_test_wait (proxy_connected, d->proxy, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpint (g_mkdir (fw, 0755), ==, 0);
  ota_test_init (d->proxy, "", "1.0", fw, FALSE, &error);
  g_assert_no_error (error);
  /* Delivered means the broker acknowledged the QoS 1 publish. */
  g_assert_true (ota_test_wait_file_lines (d->agent->log_path, "report delivered", 1, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (broker_log_count (d, received), >=, 1);
}

static char *
tls_broker_conf (const char *server, gboolean require_certificate)
{
  g_autofree char *ca = cert ("ca.pem");
  g_autofree char *crt = g_strdup_printf ("%s/%s.pem", certs, server);
  g_autofree char *key = g_strdup_printf ("%s/%s.key", certs, server);

  return g_strdup_printf ("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate %s\n", ca, crt, key,
                          require_certificate ? "true" : "false");
}

static char *
tls_agent_conf (const char *ca_name, gboolean client_certificate)
{
  g_autofree char *ca = cert (ca_name);
  g_autofree char *crt = cert ("client.pem");
  g_autofree char *key = cert ("client.key");

  if (client_certificate)
    return g_strdup_printf ("[mqtt]\ntls=true\nca_file=%s\ncert_file=%s\nkey_file=%s\n", ca, crt, key);
  return g_strdup_printf ("[mqtt]\ntls=true\nca_file=%s\n", ca);
}

/* ---- TLS ---- */

static void
test_tls_verified_broker (Deploy *d, gconstpointer data)
{
  g_autofree char *broker = tls_broker_conf ("server", FALSE);
  g_autofree char *agent = tls_agent_conf ("ca.pem", FALSE);

  deploy_start (d, broker, agent);
  assert_session_works (d);
  g_assert_cmpuint (ota_test_agent_log_count (d->agent, "over TLS as " CLIENT_ID), >=, 1);
}

static void
test_tls_wrong_ca_is_refused (Deploy *d, gconstpointer data)
{
  g_autofree char *broker = tls_broker_conf ("server", FALSE);
  g_autofree char *agent = tls_agent_conf ("other-ca.pem", FALSE);

  deploy_start (d, broker, agent);
  assert_refused (d, "TLS verification of the broker's certificate failed");
  g_assert_cmpuint (ota_test_agent_log_count (d->agent, "certificate verify failed"), >=, 2);
  g_assert_cmpuint (broker_log_count (d, "New client connected"), ==, 0);
}

/* Signed by the right CA but for 127.0.0.2: the host name check is on. */
static void
test_tls_wrong_host_is_refused (Deploy *d, gconstpointer data)
{
  g_autofree char *broker = tls_broker_conf ("wrong-host", FALSE);
  g_autofree char *agent = tls_agent_conf ("ca.pem", FALSE);

  deploy_start (d, broker, agent);
  assert_refused (d, "TLS verification of the broker's certificate failed");
  g_assert_cmpuint (broker_log_count (d, "New client connected"), ==, 0);
}

static void
test_tls_client_certificate_signs_in (Deploy *d, gconstpointer data)
{
  g_autofree char *broker = tls_broker_conf ("server", TRUE);
  g_autofree char *agent = tls_agent_conf ("ca.pem", TRUE);

  deploy_start (d, broker, agent);
  assert_session_works (d);
  g_assert_cmpuint (ota_test_agent_log_count (d->agent, "(certificate sign-in)"), ==, 1);
}

static void
test_tls_missing_client_certificate_is_refused (Deploy *d, gconstpointer data)
{
  g_autofree char *broker = tls_broker_conf ("server", TRUE);
  g_autofree char *agent = tls_agent_conf ("ca.pem", FALSE);

  deploy_start (d, broker, agent);
  /* TLS 1.3: the broker checks the client after the handshake, and whether
   * its alert ("certificate required", which the agent then quotes) or a
   * reset reaches us first is a race; the refusal itself is certain. */
  assert_refused (d, "mqtt: cannot connect to 127.0.0.1");
  g_assert_cmpuint (broker_log_count (d, "peer did not return a certificate"), >=, 2);
  g_assert_cmpuint (broker_log_count (d, "New client connected"), ==, 0);
}

/* A CA file that cannot be read stops the agent at once, naming the file. */
static void
test_tls_unreadable_ca_file_stops_the_agent (Deploy *d, gconstpointer data)
{
  g_autofree char *missing = g_build_filename (d->dir, "no-such-ca.pem", NULL);
  g_autofree char *conf = g_strdup_printf ("[mqtt]\ntls=true\nca_file=%s\n", missing);
  g_autofree char *expected = g_strdup_printf ("cannot read ca_file %s", missing);
  OtaTestAgent *agent = ota_test_agent_new (d->dir, 1883, NULL);
  char *argv[] = { (char *) g_getenv ("IV_OTAD"), "--config", agent->config_path, "--bus", "session", NULL };
  OtaTestProcess *proc;
  int status;

  ota_test_agent_add_config (agent, conf);
  proc = ota_test_process_spawn (argv, NULL, agent->log_path, NULL);
  status = ota_test_process_stop (proc, 0 /* just wait */);
  ota_test_process_free (proc);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 1);
  g_assert_cmpuint (ota_test_agent_log_count (agent, expected), ==, 1);
  ota_test_agent_free (agent);
}

/* ---- device key sign-in ---- */

/* The signed password for @username, computed by OpenSSL. */
static char *
openssl_password (const char *username, const char *secret)
{
  g_autofree char *command =
    g_strdup_printf ("key=$(printf %%s '%s' | base64 -d | od -An -tx1 | tr -d ' \\n')\n"
                     "printf %%s '%s' | openssl dgst -sha256 -mac HMAC -macopt hexkey:$key | sed 's/^.*= //'",
                     secret, username);
  g_autofree char *hex = sh (NULL, command);

  g_strstrip (hex);
  g_assert_cmpuint (strlen (hex), ==, 64);
  return g_strconcat (hex, ";hmacsha256", NULL);
}

/* A broker that only lets in @username with @password (mosquitto_passwd hashes it). */
static char *
password_broker_conf (Deploy *d, const char *username, const char *password)
{
  g_autofree char *path = g_build_filename (d->dir, "passwords", NULL);
  g_autofree char *line = g_strdup_printf ("%s:%s\n", username, password);
  g_autofree char *hash = g_strdup_printf ("mosquitto_passwd -U '%s'", path);
  g_autofree char *out = NULL;

  g_assert_true (g_file_set_contents (path, line, -1, NULL));
  out = sh (NULL, hash);
  return g_strdup_printf ("allow_anonymous false\npassword_file %s\n", path);
}

static void
test_signin_broker_accepts_signed_credentials (Deploy *d, gconstpointer data)
{
  gint64 expiry = g_get_real_time () / G_USEC_PER_SEC + 3600;
  g_autofree char *username = g_strdup_printf (DEVICE_USER_PREFIX "Ab3dE;%" G_GINT64_FORMAT, expiry);
  g_autofree char *password = openssl_password (username, SECRET);
  g_autofree char *broker = password_broker_conf (d, username, password);
  g_autofree char *hook = g_strdup_printf ("Ab3dE:%" G_GINT64_FORMAT, expiry);
  g_autofree char *seen = g_strdup_printf ("u'%s'", username);

  deploy_start_full (d, broker, "[device]\ndevice_secret=" SECRET "\n", hook);
  assert_session_works (d);
  g_assert_cmpuint (broker_log_count (d, seen), >=, 1);
  g_assert_cmpuint (ota_test_agent_log_count (d->agent, "(device key sign-in)"), ==, 1);
}

static void
test_signin_wrong_secret_is_refused (Deploy *d, gconstpointer data)
{
  gint64 expiry = g_get_real_time () / G_USEC_PER_SEC + 3600;
  g_autofree char *username = g_strdup_printf (DEVICE_USER_PREFIX "Ab3dE;%" G_GINT64_FORMAT, expiry);
  g_autofree char *password = openssl_password (username, SECRET);
  g_autofree char *broker = password_broker_conf (d, username, password);
  g_autofree char *hook = g_strdup_printf ("Ab3dE:%" G_GINT64_FORMAT, expiry);
  deploy_start_full (d, broker, "[device]\ndevice_secret=" OTHER_SECRET "\n", hook);
  /* A refused CONNACK backs off long (32 s): one refusal is the evidence. */
  g_assert_true (ota_test_wait_file_lines (d->agent->log_path, "refused the connection", 1, OTA_TEST_TIMEOUT_MS));
  g_assert_cmpuint (ota_test_agent_log_count (d->agent, "not authorised"), >=, 1);
  g_assert_false (agent_connected_now (d));
  g_assert_cmpuint (ota_test_agent_log_count (d->agent, "mqtt: connected to"), ==, 0);
}

/* The usernames the broker saw from the agent, in order ("u'...'" of its log). */
static GPtrArray *
signed_usernames (Deploy *d)
{
  g_autofree char *path = broker_log (d);
  g_autofree char *text = NULL;
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *needle = "u'" DEVICE_USER_PREFIX;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return names;
  for (const char *p = text; (p = strstr (p, needle)) != NULL; p++) {
    const char *end = strchr (p + 2, '\'');
    if (end != NULL)
      g_ptr_array_add (names, g_strndup (p + 2, end - p - 2));
  }
  return names;
}

static gboolean
two_signed_connects (gpointer data)
{
  g_autoptr (GPtrArray) names = signed_usernames (data);
  return names->len >= 2;
}

/* Without the test hook each connection signs a new connid and expiry: the
 * broker (anonymous, so it lets in whatever is signed) is restarted to make
 * the agent connect again. */
static void
test_signin_each_connection_signs_afresh (Deploy *d, gconstpointer data)
{
  g_autoptr (GRegex) format = g_regex_new ("^" DEVICE_USER_PREFIX "([A-Za-z0-9]{5});([0-9]+)$", 0, 0, NULL);
  gint64 before = g_get_real_time () / G_USEC_PER_SEC;
  g_autoptr (GPtrArray) names = NULL;
  char *connids[2] = { NULL, NULL };
  gint64 after;

  deploy_start (d, NULL, "[device]\ndevice_secret=" SECRET "\n");
  g_assert_true (ota_test_wait (proxy_connected, d->proxy, OTA_TEST_TIMEOUT_MS));
  ota_test_broker_restart (d->broker);
  g_assert_true (ota_test_wait (two_signed_connects, d, OTA_TEST_TIMEOUT_MS));
  after = g_get_real_time () / G_USEC_PER_SEC;
  names = signed_usernames (d);
  for (guint i = 0; i < 2; i++) {
    g_autoptr (GMatchInfo) match = NULL;
    g_autofree char *expiry = NULL;
    gint64 value;

    if (!g_regex_match (format, g_ptr_array_index (names, i), 0, &match))
      g_error ("not a signed username: %s", (char *) g_ptr_array_index (names, i));
    connids[i] = g_match_info_fetch (match, 1);
    expiry = g_match_info_fetch (match, 2);
    value = g_ascii_strtoll (expiry, NULL, 10);
    /* now + one hour, now being when that connection was made. */
    g_assert_cmpint (value, >=, before + 3600);
    g_assert_cmpint (value, <=, after + 3600);
  }
  g_assert_cmpstr (connids[0], !=, connids[1]);
  g_free (connids[0]);
  g_free (connids[1]);
}

/* ---- shutdown on SIGTERM ---- */

/* The agent's [ota] keys, then the signal that stops it. */
typedef struct {
  const char *keys;
  gpointer sig;
} ShutdownCase;

static void
read_record (OtaTestEnv *env, guint64 *record_size, guint64 *bin_size)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *bin = g_build_filename (env->fw_dir, "FW_2.0.bin", NULL);
  OtaRecord record = { 0 };
  int dir_fd = open (env->fw_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct stat st;

  g_assert_cmpint (dir_fd, >=, 0);
  g_assert_true (ota_record_load_at (dir_fd, "FW_2.0.json", &record, &error));
  g_assert_no_error (error);
  close (dir_fd);
  g_assert_cmpint (g_stat (bin, &st), ==, 0);
  *record_size = record.downloaded_size;
  *bin_size = (guint64) st.st_size;
  ota_record_clear (&record);
}

static void
shutdown_setup (OtaTestEnv *env, gconstpointer data)
{
  ota_test_env_setup (env, ((const ShutdownCase *) data)->keys);
}

#define SHUTDOWN_IMAGE (48 * MIB)
#define SHUTDOWN_RATE (4 * MIB)

/* SIGTERM (or @data: SIGHUP, which stops the agent the same way) in the
 * middle of a throttled download, twice (the second time after resuming).
 * Each time: exit status 0, the record covers exactly the bytes in the image
 * and at least what the agent had reported written, and the broker saw a
 * DISCONNECT. Checkpoints are timed (every second, as checkpoint_bytes is
 * large): an agent that exited without waiting for its download worker would
 * leave a record behind the image nearly every time. */
static void
test_sigterm_during_download (OtaTestEnv *env, gconstpointer data)
{
  int sig = GPOINTER_TO_INT (((const ShutdownCase *) data)->sig);
  g_autofree char *image = g_build_filename (env->dir, "image-2.0.bin", NULL);
  /* Only the file matters here, not its md5. */
  G_GNUC_UNUSED g_autofree char *md5 = ota_test_make_file (image, SHUTDOWN_IMAGE);
  g_autofree char *rate = g_strdup_printf ("--rate=%d", SHUTDOWN_RATE);
  const char *args[] = { rate, NULL };
  g_autoptr (OtaTestCloudTool) tool =
    ota_test_cloud_tool_start (env->dir, "cloud", env->broker->port, "2.0", image, args);
  g_autofree char *broker_log_path = g_build_filename (env->dir, "mosquitto.log", NULL);
  guint64 previous = 0;

  for (guint round = 1; round <= 2; round++) {
    g_autoptr (GError) error = NULL;
    guint64 reported, record_size, bin_size;

    if (round > 1) {
      ota_test_agent_start (env->agent);
      ota_test_env_reconnect_app (env);
    }
    ota_test_init (env->proxy, "", "1.0", env->fw_dir, FALSE, &error);
    g_assert_no_error (error);
    g_assert_true (ota_test_wait_downloaded (env, previous + 2 * MIB, OTA_TEST_TIMEOUT_MS));
    reported = ota_test_status_downloaded (env);
    /* Asserts exit status 0. */
    ota_test_agent_stop_with (env->agent, sig);
    read_record (env, &record_size, &bin_size);
    g_test_message ("round %u: reported %" G_GUINT64_FORMAT ", record %" G_GUINT64_FORMAT ", image %" G_GUINT64_FORMAT,
                    round, reported, record_size, bin_size);
    g_assert_cmpuint (record_size, ==, bin_size);
    g_assert_cmpuint (record_size, >=, reported);
    g_assert_cmpuint (record_size, <, SHUTDOWN_IMAGE);
    /* mosquitto: "Client X disconnected." after a DISCONNECT, "closed its connection." without.
     * The broker writes its log on its own time: the agent may be gone before it did. */
    g_assert_true (ota_test_wait_file_lines (broker_log_path, "Client " CLIENT_ID " disconnected.", round,
                                             OTA_TEST_TIMEOUT_MS));
    g_assert_cmpuint (ota_test_file_count_lines (broker_log_path, "Received DISCONNECT from " CLIENT_ID), ==, round);
    g_assert_cmpuint (ota_test_file_count_lines (broker_log_path, "Client " CLIENT_ID " disconnected."), ==, round);
    g_assert_cmpuint (ota_test_file_count_lines (broker_log_path, "Client " CLIENT_ID " closed its connection"), ==, 0);
    previous = record_size;
  }
  ota_test_cloud_tool_stop (tool);
}

static gboolean
cloud_up (gpointer data)
{
  return ota_mqtt_link_get_connected (((OtaTestEnv *) data)->cloud->link);
}

/* A report the broker cannot take is in the outbox when SIGTERM comes, and
 * still there, first in line, after the agent exited; the next run sends it. */
static void
test_sigterm_keeps_pending_reports (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *outbox_path = g_build_filename (env->agent->state_dir, "outbox.json", NULL);
  g_autoptr (OtaOutbox) outbox = NULL;
  const char *report = "{\"type\":\"report_version\",\"report\":{\"version\":\"1.0\"}}";
  int from;

  ota_test_init (env->proxy, "", "1.0", env->fw_dir, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, report, OTA_TEST_TIMEOUT_MS), >=, 0);
  ota_test_broker_stop (env->broker);
  ota_dbus_ota_call_check_now_sync (env->proxy, "", NULL, &error);
  g_assert_no_error (error);
  ota_test_agent_stop (env->agent);
  outbox = ota_outbox_open (outbox_path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ota_outbox_get_length (outbox), >=, 1);
  g_assert_cmpstr (ota_outbox_peek (outbox), ==, report);
  g_clear_pointer (&outbox, ota_outbox_free);

  from = (int) env->cloud->reports->len;
  ota_test_broker_restart (env->broker);
  g_assert_true (ota_test_wait (cloud_up, env, OTA_TEST_TIMEOUT_MS));
  ota_test_spin (300); /* the cloud's SUBSCRIBE reaches the broker first */
  ota_test_agent_start (env->agent);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, (guint) from, report, OTA_TEST_TIMEOUT_MS), >=, from);
}

int
main (int argc, char **argv)
{
#define SHUTDOWN_KEYS "checkpoint_bytes=1073741824\nstall_timeout=5\nretry_interval=1\n"
  static const ShutdownCase sigterm_case = { SHUTDOWN_KEYS, GINT_TO_POINTER (SIGTERM) };
  static const ShutdownCase sighup_case = { SHUTDOWN_KEYS, GINT_TO_POINTER (SIGHUP) };
  int rc;

  g_test_init (&argc, &argv, NULL);
  make_certificates ();
#define ADD(path, fn) g_test_add ("/deploy/" path, Deploy, NULL, deploy_setup, fn, deploy_teardown)
  ADD ("tls/verified-broker-connects", test_tls_verified_broker);
  ADD ("tls/wrong-ca-is-refused-with-a-clear-error", test_tls_wrong_ca_is_refused);
  ADD ("tls/wrong-host-is-refused", test_tls_wrong_host_is_refused);
  ADD ("tls/client-certificate-signs-in", test_tls_client_certificate_signs_in);
  ADD ("tls/missing-client-certificate-is-refused", test_tls_missing_client_certificate_is_refused);
  ADD ("tls/unreadable-ca-file-stops-the-agent", test_tls_unreadable_ca_file_stops_the_agent);
  ADD ("signin/broker-accepts-signed-credentials", test_signin_broker_accepts_signed_credentials);
  ADD ("signin/wrong-secret-is-refused", test_signin_wrong_secret_is_refused);
  ADD ("signin/each-connection-signs-afresh", test_signin_each_connection_signs_afresh);
#undef ADD
  g_test_add ("/deploy/shutdown/sigterm-during-download-checkpoints-and-disconnects", OtaTestEnv, &sigterm_case,
              shutdown_setup, test_sigterm_during_download, ota_test_env_teardown);
  g_test_add ("/deploy/shutdown/sighup-during-download-checkpoints-and-disconnects", OtaTestEnv, &sighup_case,
              shutdown_setup, test_sigterm_during_download, ota_test_env_teardown);
  g_test_add ("/deploy/shutdown/sigterm-keeps-pending-reports", OtaTestEnv, NULL, ota_test_env_setup,
              test_sigterm_keeps_pending_reports, ota_test_env_teardown);
  rc = g_test_run ();
  ota_test_remove_tree (certs);
  g_free (certs);
  return rc;
}
