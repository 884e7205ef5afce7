/* Signed images end to end: keys and statements made by the real
 * iv-ota-sign, offers from iv-ota-cloud (--user-defined), the real agent with
 * [security] trusted_keys. Refusals must come before any HTTP request: the
 * stand-in cloud's request count proves it. Also iv-ota-sign's own command
 * line: keygen, sign, verify, bad inputs and exit codes. */
#include "harness.h"

#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>

#define FW_SIZE (3 * 1024 * 1024 + 17)
#define DONE_REPORT                                                                                          \
  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"done\",\"result_code\":\"0\","      \
  "\"result_msg\":\"\"},\"version\":\"2.0\"}}"

/* retry_interval=60: a refused offer is not tried again while the test looks. */
#define OTA_KEYS "checkpoint_bytes=262144\nretry_interval=60\nreport_interval=600\n"

typedef struct {
  OtaTestEnv env;
  char *keys;      /* dir of the key pairs a, b (a.pub, b.pub) */
  OtaTestCloudTool *cloud;
  OtaTestImage image;
} Fixture;

/* ---- iv-ota-sign ---- */

static char *
run_sign_tool (const char *const *args, int expected_status)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr (GError) error = NULL;
  int status = -1;

  g_ptr_array_add (argv, (char *) g_getenv ("IV_OTA_SIGN"));
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_nonnull (argv->pdata[0]);
  g_auto (GStrv) wrapped = ota_test_wrap_argv ((const char *const *) argv->pdata);
  g_assert_true (g_spawn_sync (NULL, wrapped, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                               &status, &error));
  g_assert_no_error (error);
  if (err != NULL && *err != '\0')
    g_test_message ("iv-ota-sign: %s", err);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, expected_status);
  return g_strdup (g_strstrip (out));
}

static char *
key_path (Fixture *f, const char *name)
{
  return g_build_filename (f->keys, name, NULL);
}

static void
make_key (Fixture *f, const char *name)
{
  g_autofree char *path = key_path (f, name);
  const char *args[] = { "keygen", path, NULL };
  g_free (run_sign_tool (args, 0)); /* made for its files, its output is not needed */
}

/* The user_defined text for @file as @module/@version, by key @key. */
static char *
sign_file (Fixture *f, const char *key, const char *module, const char *version, const char *sv, const char *file)
{
  g_autofree char *path = key_path (f, key);
  const char *args[] = { "sign", "--key", path, "--version", version, "--module", module, "--security-version",
                         sv, file, NULL };

  return run_sign_tool (args, 0);
}

/* The key id iv-ota-sign put in @text. */
static char *
key_id_of (const char *text)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *sig;

  g_assert_true (json_parser_load_from_data (parser, text, -1, NULL));
  sig = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)), "iv_ota_sig");
  return g_strdup (json_object_get_string_member (sig, "key"));
}

/* ---- fixture: keys a and b, an agent trusting @trusted (";"-joined names) ---- */

static void
fixture_setup_trusting (Fixture *f, const char *trusted)
{
  g_auto (GStrv) names = g_strsplit (trusted, ";", -1);
  g_autoptr (GString) conf = g_string_new (OTA_KEYS "[security]\ntrusted_keys=");

  f->keys = g_dir_make_tmp ("iv-ota-keys-XXXXXX", NULL);
  g_assert_nonnull (f->keys);
  make_key (f, "a");
  make_key (f, "b");
  for (gsize i = 0; names[i] != NULL; i++)
    g_string_append_printf (conf, "%s%s/%s.pub", i > 0 ? ";" : "", f->keys, names[i]);
  g_string_append_c (conf, '\n');
  ota_test_env_setup (&f->env, conf->str);
  ota_test_image_make (&f->env, FW_SIZE, &f->image);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  fixture_setup_trusting (f, "a");
}

static void
fixture_setup_two_keys (Fixture *f, gconstpointer data)
{
  fixture_setup_trusting (f, "a;b");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  if (f->cloud != NULL)
    ota_test_cloud_tool_stop (f->cloud);
  g_clear_pointer (&f->cloud, ota_test_cloud_tool_free);
  ota_test_env_teardown (&f->env, NULL);
  ota_test_remove_tree (f->keys);
  g_free (f->keys);
  ota_test_image_clear (&f->image);
}

/* iv-ota-cloud offering the image (as @version) with @user_defined (NULL:
 * none); each one under a name of its own (its ready file). */
static void
cloud_offer (Fixture *f, const char *version, const char *user_defined)
{
  static guint counter;
  g_autofree char *name = g_strdup_printf ("cloud%u", ++counter);
  g_autofree char *arg = user_defined != NULL ? g_strconcat ("--user-defined=", user_defined, NULL) : NULL;
  const char *args[] = { arg, NULL };

  f->cloud = ota_test_cloud_tool_start (f->env.dir, name, f->env.broker->port, version, f->image.path,
                                        arg != NULL ? args : NULL);
}

/* `iv-ota status` of the agent on this bus. */
static char *
cli_status (void)
{
  const char *argv[] = { g_getenv ("IV_OTA"), "--bus", "session", "status", NULL };
  g_autofree char *out = NULL;
  int status = -1;

  g_assert_nonnull (argv[0]);
  g_auto (GStrv) wrapped = ota_test_wrap_argv (argv);
  g_assert_true (g_spawn_sync (NULL, wrapped, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, &out, NULL,
                               &status, NULL));
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  g_test_message ("iv-ota status:\n%s", out);
  return g_steal_pointer (&out);
}

/* Progress(fail) of the main module: its code and message. */
static void
wait_fail (Fixture *f, int *code, char **msg)
{
  int idx = ota_test_signals_wait_state (f->env.signals, "", "fail", OTA_TEST_TIMEOUT_MS);
  const char *got_msg;

  g_assert_cmpint (idx, >=, 0);
  g_variant_get (g_ptr_array_index (f->env.signals->progress, idx), "(&s&s&sutti&s)", NULL, NULL, NULL, NULL, NULL,
                 NULL, code, &got_msg);
  *msg = g_strdup (got_msg);
}

/* The offer fails -5 with @reason in its message, no byte was requested and
 * the app was not even asked. */
static void
assert_refused_before_download (Fixture *f, const char *reason)
{
  g_autofree char *msg = NULL;
  g_autofree char *cli = NULL;
  g_autofree char *kind = NULL;
  int code = 0;

  wait_fail (f, &code, &msg);
  g_test_message ("refused: %s", msg);
  g_assert_cmpint (code, ==, -5);
  g_assert_nonnull (strstr (msg, reason));
  kind = ota_test_status_get (f->env.proxy, "", "fail_kind");
  g_assert_cmpstr (kind, ==, "refused");
  g_assert_cmpuint (ota_test_cloud_tool_requests (f->cloud), ==, 0);
  g_assert_cmpuint (f->env.signals->offered->len, ==, 0);
  g_assert_cmpuint (f->env.signals->ready->len, ==, 0);
  g_assert_cmpint (ota_test_cloud_wait_report_containing (f->env.cloud, 0, "\"result_code\":\"-5\"", OTA_TEST_TIMEOUT_MS),
                   >=, 0);
  cli = cli_status ();
  g_assert_nonnull (strstr (cli, "signature of (main): not verified"));
}

static void
assert_ready_signed (Fixture *f, const char *key, const char *sv)
{
  g_autofree char *bin = ota_test_fw_path (&f->env, "bin");
  g_autofree char *checked = NULL;
  g_autofree char *key_file = NULL;
  g_autofree char *got_key_file = NULL;
  g_autofree char *got_sv = NULL;

  g_assert_true (ota_test_wait (ota_test_ready_emitted, &f->env, OTA_TEST_TIMEOUT_MS));
  g_assert_true (g_file_test (bin, G_FILE_TEST_IS_REGULAR));
  checked = ota_test_status_get (f->env.proxy, "", "signature_checked");
  g_assert_cmpstr (checked, ==, "true");
  key_file = g_strdup_printf ("%s/%s.pub", f->keys, key);
  got_key_file = ota_test_status_get (f->env.proxy, "", "signing_key_file");
  g_assert_cmpstr (got_key_file, ==, key_file);
  got_sv = ota_test_status_get (f->env.proxy, "", "security_version");
  g_assert_cmpstr (got_sv, ==, sv);
}

static char *
security_file (Fixture *f)
{
  return g_build_filename (f->env.agent->state_dir, "security.json", NULL);
}

/* ---- tests ---- */

/* The whole story: signed with app members beside iv_ota_sig, verified,
 * handed over with user_defined unchanged, done raises the security floor. */
static void
test_signed_image_installs (Fixture *f, gconstpointer data)
{
  g_autofree char *signed_text = sign_file (f, "a", "", "2.0", "3", f->image.path);
  g_autofree char *user_defined = NULL;
  g_autofree char *got_user_defined = NULL;
  g_autofree char *got_key = NULL;
  g_autofree char *key_id = key_id_of (signed_text);
  g_autofree char *floor = NULL;
  g_autofree char *path = security_file (f);
  g_autofree char *cli = NULL;
  g_autofree char *cli_line = NULL;

  /* The app's own members, beside the statement. */
  user_defined = g_strdup_printf ("%.*s,\"channel\":\"beta\",\"notes\":[1,2]}", (int) strlen (signed_text) - 1,
                                  signed_text);
  cloud_offer (f, "2.0", user_defined);
  ota_test_app_init (&f->env, "1.0");
  assert_ready_signed (f, "a", "3");
  got_key = ota_test_status_get (f->env.proxy, "", "signing_key");
  g_assert_cmpstr (got_key, ==, key_id);
  got_user_defined = ota_test_status_get (f->env.proxy, "", "user_defined");
  g_assert_cmpstr (got_user_defined, ==, user_defined);
  g_assert_cmpuint (ota_test_cloud_tool_requests (f->cloud), ==, 1);
  g_assert_cmpuint (ota_test_agent_log_count (f->env.agent, "signed by key"), >=, 1);
  cli = cli_status ();
  cli_line = g_strdup_printf ("signature of (main) 2.0: verified, key %s (%s/a.pub), security version 3\n", key_id,
                              f->keys);
  g_assert_nonnull (strstr (cli, cli_line));
  /* Nothing is raised before done. */
  g_assert_true (g_file_get_contents (path, &floor, NULL, NULL));
  g_assert_nonnull (strstr (floor, "\"installed\":0"));
  g_assert_nonnull (strstr (floor, "\"pending\":3"));
  g_clear_pointer (&floor, g_free);
  ota_test_app_report (&f->env, "done", -1, 0, "");
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, 0, DONE_REPORT, OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_true (g_file_get_contents (path, &floor, NULL, NULL));
  g_assert_cmpstr (floor, ==, "{\"module\":\"\",\"installed\":3}");
}

/* What an attacker who controls the offer does: other bytes, the offer's
 * MD5 made to match them. The signature's SHA-256 catches it: -4, both files
 * deleted, nothing handed to the app. */
static void
test_tampered_image_with_matching_md5_fails_4 (Fixture *f, gconstpointer data)
{
  g_autofree char *signed_text = sign_file (f, "a", "", "2.0", "0", f->image.path);
  g_autofree char *bin = ota_test_fw_path (&f->env, "bin");
  g_autofree char *record = ota_test_fw_path (&f->env, "json");
  g_autofree char *content = NULL;
  g_autofree char *msg = NULL;
  g_autofree char *checked = NULL;
  g_autofree char *kind = NULL;
  gsize length = 0;
  int code = 0;

  /* One byte flipped; iv-ota-cloud offers the MD5 of what it serves. */
  g_assert_true (g_file_get_contents (f->image.path, &content, &length, NULL));
  content[length / 2] ^= 0x01;
  g_assert_true (g_file_set_contents (f->image.path, content, (gssize) length, NULL));
  cloud_offer (f, "2.0", signed_text);
  ota_test_app_init (&f->env, "1.0");
  wait_fail (f, &code, &msg);
  g_test_message ("failed: %s", msg);
  g_assert_cmpint (code, ==, -4);
  g_assert_nonnull (strstr (msg, "sha256 mismatch"));
  /* The next attempt waits retry_interval (60 s): the module stays in fail meanwhile. */
  kind = ota_test_status_get (f->env.proxy, "", "fail_kind");
  g_assert_cmpstr (kind, ==, "checksum");
  g_assert_cmpuint (f->env.signals->ready->len, ==, 0);
  g_assert_false (g_file_test (bin, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (record, G_FILE_TEST_EXISTS));
  /* The statement itself was valid: the check was made. */
  checked = ota_test_status_get (f->env.proxy, "", "signature_checked");
  g_assert_cmpstr (checked, ==, "true");
  g_assert_cmpint (ota_test_cloud_wait_report_containing (f->env.cloud, 0, "\"result_code\":\"-4\"", OTA_TEST_TIMEOUT_MS),
                   >=, 0);
}

typedef enum {
  REFUSE_UNKNOWN_KEY,
  REFUSE_OTHER_VERSION,
  REFUSE_OTHER_MODULE,
  REFUSE_OTHER_SIZE,
  REFUSE_UNSIGNED,
  REFUSE_APP_MEMBERS_ONLY,
} Refusal;

/* Each way an offer's signature can be wrong for it: refused, by name, before any byte. */
static void
test_refused_before_any_request (Fixture *f, gconstpointer data)
{
  Refusal kind = GPOINTER_TO_INT (data);
  g_autofree char *other = g_build_filename (f->env.dir, "other.bin", NULL);
  G_GNUC_UNUSED g_autofree char *other_md5 = ota_test_make_file (other, FW_SIZE + 1);
  g_autofree char *text = NULL;
  const char *reason = NULL;

  switch (kind) {
  case REFUSE_UNKNOWN_KEY:
    text = sign_file (f, "b", "", "2.0", "0", f->image.path);
    reason = "which is not trusted";
    break;
  case REFUSE_OTHER_VERSION:
    text = sign_file (f, "a", "", "2.1", "0", f->image.path);
    reason = "signed for version 2.1, offered version 2.0";
    break;
  case REFUSE_OTHER_MODULE:
    text = sign_file (f, "a", "mcu", "2.0", "0", f->image.path);
    reason = "signed for module \"mcu\", offered for module \"\"";
    break;
  case REFUSE_OTHER_SIZE:
    text = sign_file (f, "a", "", "2.0", "0", other);
    reason = "bytes, offered";
    break;
  case REFUSE_UNSIGNED:
    reason = "unsigned offer";
    break;
  case REFUSE_APP_MEMBERS_ONLY:
    text = g_strdup ("{\"channel\":\"beta\"}");
    reason = "no iv_ota_sig";
    break;
  default:
    g_assert_not_reached ();
  }
  cloud_offer (f, "2.0", text);
  ota_test_app_init (&f->env, "1.0");
  assert_refused_before_download (f, reason);
}

/* The highest installed security version is the floor: a lower one is a
 * rollback, refused before any request. */
static void
test_lower_security_version_is_rollback (Fixture *f, gconstpointer data)
{
  g_autofree char *signed_text = sign_file (f, "a", "", "2.0", "4", f->image.path);
  g_autofree char *path = security_file (f);

  g_assert_true (g_file_set_contents (path, "{\"module\":\"\",\"installed\":5}", -1, NULL));
  cloud_offer (f, "2.0", signed_text);
  ota_test_app_init (&f->env, "1.0");
  assert_refused_before_download (f, "rollback: security version 4 is lower than 5");
}

/* The floor itself is allowed: equal is not lower. */
static void
test_equal_security_version_installs (Fixture *f, gconstpointer data)
{
  g_autofree char *signed_text = sign_file (f, "a", "", "2.0", "5", f->image.path);
  g_autofree char *path = security_file (f);

  g_assert_true (g_file_set_contents (path, "{\"module\":\"\",\"installed\":5}", -1, NULL));
  cloud_offer (f, "2.0", signed_text);
  ota_test_app_init (&f->env, "1.0");
  assert_ready_signed (f, "a", "5");
}

/* The floor also rises when done comes after a reboot: the agent restarted,
 * the app registers at the target, the agent reports done by itself and
 * takes the pending security version recorded at the hand-over. */
static void
test_done_after_reboot_raises_the_floor (Fixture *f, gconstpointer data)
{
  g_autofree char *signed_text = sign_file (f, "a", "", "2.0", "7", f->image.path);
  g_autofree char *path = security_file (f);
  g_autofree char *floor = NULL;

  cloud_offer (f, "2.0", signed_text);
  ota_test_app_init (&f->env, "1.0");
  assert_ready_signed (f, "a", "7");
  ota_test_app_report (&f->env, "rebooting", -1, 0, "");
  ota_test_agent_stop (f->env.agent);
  g_assert_true (g_file_get_contents (path, &floor, NULL, NULL));
  g_assert_nonnull (strstr (floor, "\"installed\":0"));
  g_assert_nonnull (strstr (floor, "\"pending_version\":\"2.0\""));
  g_clear_pointer (&floor, g_free);
  ota_test_agent_start (f->env.agent);
  ota_test_env_reconnect_app (&f->env);
  ota_test_app_init (&f->env, "2.0");
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, 0, DONE_REPORT, OTA_TEST_TIMEOUT_MS), >=, 0);
  g_assert_true (g_file_get_contents (path, &floor, NULL, NULL));
  g_assert_cmpstr (floor, ==, "{\"module\":\"\",\"installed\":7}");
}

/* A signed download resumed by a new agent: its SHA-256 covers the prefix
 * the first agent wrote (re-read once, like the MD5) and the rest; a wrong
 * prefix would fail -4. */
static void
test_resumed_signed_download_installs (Fixture *f, gconstpointer data)
{
  g_autofree char *signed_text = sign_file (f, "a", "", "2.0", "0", f->image.path);
  g_autofree char *arg = g_strconcat ("--user-defined=", signed_text, NULL);
  const char *args[] = { arg, "--rate=1048576", NULL };
  g_autoptr (GArray) responses = NULL;
  gint64 checkpoint;

  f->cloud = ota_test_cloud_tool_start (f->env.dir, "slow", f->env.broker->port, "2.0", f->image.path, args);
  ota_test_app_init (&f->env, "1.0");
  g_assert_true (ota_test_wait_downloaded (&f->env, FW_SIZE / 3, OTA_TEST_TIMEOUT_MS));
  ota_test_agent_kill (f->env.agent);
  checkpoint = ota_test_record_downloaded (&f->env);
  g_assert_cmpint (checkpoint, >, 0);
  g_assert_cmpint (checkpoint, <, FW_SIZE);
  ota_test_agent_start (f->env.agent);
  ota_test_env_reconnect_app (&f->env);
  ota_test_app_init (&f->env, "1.0");
  assert_ready_signed (f, "a", "0");
  responses = ota_test_cloud_tool_responses (f->cloud);
  g_assert_cmpuint (responses->len, ==, 2);
  g_assert_cmpint (g_array_index (responses, OtaTestResponse, 1).range_start, ==, checkpoint);
}

/* Rotation: both keys work; once a key leaves trusted_keys, its signatures
 * stop working at the agent's next start. */
static void
test_two_keys_and_removal_at_restart (Fixture *f, gconstpointer data)
{
  g_autofree char *by_b = sign_file (f, "b", "", "2.0", "0", f->image.path);
  g_autofree char *conf = NULL;
  g_autofree char *a_only = NULL;
  g_autofree char *both = NULL;
  g_autofree char *pub_a = key_path (f, "a.pub");
  g_autofree char *pub_b = key_path (f, "b.pub");

  cloud_offer (f, "2.0", by_b);
  ota_test_app_init (&f->env, "1.0");
  assert_ready_signed (f, "b", "0");
  ota_test_cloud_tool_stop (f->cloud);
  g_clear_pointer (&f->cloud, ota_test_cloud_tool_free);

  /* b leaves the list; the agent restarts. */
  ota_test_agent_stop (f->env.agent);
  g_assert_true (g_file_get_contents (f->env.agent->config_path, &conf, NULL, NULL));
  both = g_strdup_printf ("trusted_keys=%s;%s", pub_a, pub_b);
  a_only = g_strdup_printf ("trusted_keys=%s", pub_a);
  g_assert_nonnull (strstr (conf, both));
  {
    g_auto (GStrv) parts = g_strsplit (conf, both, 2);
    g_autofree char *edited = g_strjoinv (a_only, parts);
    g_assert_true (g_file_set_contents (f->env.agent->config_path, edited, -1, NULL));
  }
  ota_test_remove_tree (f->env.fw_dir);
  g_assert_cmpint (g_mkdir (f->env.fw_dir, 0755), ==, 0);
  ota_test_agent_start (f->env.agent);
  ota_test_env_reconnect_app (&f->env);
  cloud_offer (f, "2.0", by_b);
  ota_test_app_init (&f->env, "1.0");
  assert_refused_before_download (f, "which is not trusted");
}

/* A key file that is missing or not an Ed25519 public key stops the agent at
 * start, with a message naming it. */
static void
test_bad_key_file_stops_the_agent (void)
{
  g_autofree char *dir = g_dir_make_tmp ("iv-ota-badkey-XXXXXX", NULL);
  g_autofree char *conf = g_build_filename (dir, "iv-otad.conf", NULL);
  g_autofree char *bad = g_build_filename (dir, "private-by-mistake", NULL);
  g_autofree char *missing = g_build_filename (dir, "missing.pub", NULL);
  const char *cases[] = { bad, missing };
  const char *keygen[] = { "keygen", bad, NULL };
  g_free (run_sign_tool (keygen, 0));

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *text = g_strdup_printf ("[device]\nproduct_id=P\ndevice_name=d\n[ota]\nstate_dir=%s/state\n"
                                             "[security]\ntrusted_keys=%s\n",
                                             dir, cases[i]);
    const char *argv[] = { g_getenv ("IV_OTAD"), "--config", conf, "--bus", "session", NULL };
    g_autofree char *std_out = NULL;
    g_autofree char *std_err = NULL;
    int status = 0;

    g_auto (GStrv) wrapped = ota_test_wrap_argv (argv);

    g_assert_true (g_file_set_contents (conf, text, -1, NULL));
    g_assert_true (g_spawn_sync (NULL, wrapped, NULL, G_SPAWN_DEFAULT, NULL, NULL, &std_out, &std_err,
                                 &status, NULL));
    g_test_message ("%s", std_err);
    g_assert_true (WIFEXITED (status));
    g_assert_cmpint (WEXITSTATUS (status), !=, 0);
    g_assert_nonnull (strstr (std_err, "[security] trusted_keys"));
    g_assert_nonnull (strstr (std_err, cases[i]));
  }
  ota_test_remove_tree (dir);
}

/* Without trusted_keys nothing changes: an unsigned offer installs, GetStatus has no signature keys. */
static void
test_without_keys_nothing_changes (void)
{
  OtaTestEnv env = { 0 };
  g_auto (OtaTestImage) image = { 0 };
  g_autoptr (OtaTestCloudTool) cloud = NULL;
  g_autoptr (GVariant) status = NULL;
  g_autoptr (GError) error = NULL;

  ota_test_env_setup (&env, OTA_KEYS);
  ota_test_image_make (&env, 1024, &image);
  cloud = ota_test_cloud_tool_start (env.dir, "cloud", env.broker->port, "2.0", image.path, NULL);
  ota_test_app_init (&env, "1.0");
  g_assert_true (ota_test_wait (ota_test_ready_emitted, &env, OTA_TEST_TIMEOUT_MS));
  ota_dbus_ota_call_get_status_sync (env.proxy, "", &status, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (g_variant_lookup (status, "signature_checked", "b", NULL));
  ota_test_cloud_tool_stop (cloud);
  ota_test_env_teardown (&env, NULL);
}


/* ---- iv-ota-sign, the command line ---- */

static char *
run_tool_full (const char *const *args, int *exit_status, char **err)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *out = NULL;
  int status = -1;

  g_ptr_array_add (argv, (char *) g_getenv ("IV_OTA_SIGN"));
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  g_auto (GStrv) wrapped = ota_test_wrap_argv ((const char *const *) argv->pdata);
  g_assert_true (g_spawn_sync (NULL, wrapped, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, err, &status,
                               NULL));
  g_assert_true (WIFEXITED (status));
  *exit_status = WEXITSTATUS (status);
  return g_steal_pointer (&out);
}

/* Runs iv-ota-sign, asserts its exit status and that stderr (or stdout when
 * @needle_out) holds @needle. */
static void
assert_tool (const char *const *args, int expected, const char *needle, gboolean needle_out)
{
  g_autofree char *err = NULL;
  int status = -1;
  g_autofree char *out = run_tool_full (args, &status, &err);

  g_test_message ("exit %d; stdout: %s; stderr: %s", status, out, err);
  g_assert_cmpint (status, ==, expected);
  if (needle != NULL)
    g_assert_nonnull (strstr (needle_out ? out : err, needle));
}

static void
test_sign_tool_keygen (void)
{
  g_autofree char *dir = g_dir_make_tmp ("iv-ota-sign-XXXXXX", NULL);
  g_autofree char *key = g_build_filename (dir, "vendor", NULL);
  g_autofree char *pub = g_build_filename (dir, "vendor.pub", NULL);
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  const char *keygen[] = { "keygen", key, NULL };
  const char *extra[] = { "keygen", key, "more", NULL };
  const char *in_missing_dir[] = { "keygen", "/nonexistent-dir/k", NULL };
  GStatBuf st;

  assert_tool (keygen, 0, "key ", TRUE);
  g_assert_cmpint (g_stat (key, &st), ==, 0);
  g_assert_cmpuint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (g_stat (pub, &st), ==, 0);
  g_assert_cmpuint (st.st_mode & 0777, ==, 0644);
  g_assert_true (g_file_get_contents (key, &before, NULL, NULL));
  g_assert_nonnull (strstr (before, "BEGIN PRIVATE KEY"));
  /* Never overwritten. */
  assert_tool (keygen, 1, "exists", FALSE);
  g_assert_true (g_file_get_contents (key, &after, NULL, NULL));
  g_assert_cmpstr (after, ==, before);
  assert_tool (extra, 2, "keygen takes one KEY", FALSE);
  assert_tool (in_missing_dir, 1, "cannot create", FALSE);
  ota_test_remove_tree (dir);
}

static void
test_sign_tool_sign_and_verify (void)
{
  g_autofree char *dir = g_dir_make_tmp ("iv-ota-sign-XXXXXX", NULL);
  g_autofree char *key = g_build_filename (dir, "k", NULL);
  g_autofree char *pub = g_build_filename (dir, "k.pub", NULL);
  g_autofree char *other = g_build_filename (dir, "o", NULL);
  g_autofree char *other_pub = g_build_filename (dir, "o.pub", NULL);
  g_autofree char *image = g_build_filename (dir, "image.bin", NULL);
  g_autofree char *empty = g_build_filename (dir, "empty.bin", NULL);
  G_GNUC_UNUSED g_autofree char *md5 = ota_test_make_file (image, 100000);
  const char *keygen[] = { "keygen", key, NULL };
  const char *keygen_other[] = { "keygen", other, NULL };
  const char *sign[] = { "sign", "--key", key, "--version", "2.0", "--module", "mcu", "--security-version", "7",
                         image, NULL };
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = -1;

  assert_tool (keygen, 0, NULL, FALSE);
  assert_tool (keygen_other, 0, NULL, FALSE);
  g_assert_true (g_file_set_contents (empty, "", 0, NULL));
  out = run_tool_full (sign, &status, &err);
  g_assert_cmpint (status, ==, 0);
  g_assert_true (g_str_has_prefix (out, "{\"iv_ota_sig\":{\"v\":1,"));
  g_assert_true (g_str_has_suffix (out, "}\n"));
  /* One line: its only newline is the last byte. */
  g_assert_true (strchr (out, '\n') == out + strlen (out) - 1);
  g_strstrip (out);
  {
    const char *ok[] = { "verify", "--key", pub, "--version", "2.0", "--module", "mcu", image, out, NULL };
    const char *version[] = { "verify", "--key", pub, "--version", "2.1", "--module", "mcu", image, out, NULL };
    const char *module[] = { "verify", "--key", pub, "--version", "2.0", image, out, NULL };
    const char *wrong_key[] = { "verify", "--key", other_pub, "--version", "2.0", "--module", "mcu", image, out, NULL };
    const char *garbage[] = { "verify", "--key", pub, "--version", "2.0", "--module", "mcu", image, "{\"iv_ota_sig\":1}", NULL };
    const char *private_as_pub[] = { "verify", "--key", key, "--version", "2.0", "--module", "mcu", image, out, NULL };
    const char *pub_as_private[] = { "sign", "--key", pub, "--version", "2.0", image, NULL };
    const char *no_image[] = { "sign", "--key", key, "--version", "2.0", "/nonexistent.bin", NULL };
    const char *empty_image[] = { "sign", "--key", key, "--version", "2.0", empty, NULL };
    const char *bad_version[] = { "sign", "--key", key, "--version", "../x", image, NULL };
    const char *bad_module[] = { "sign", "--key", key, "--version", "2", "--module", "a b", image, NULL };
    const char *bad_sv[] = { "sign", "--key", key, "--version", "2", "--security-version", "4294967296", image, NULL };
    const char *neg_sv[] = { "sign", "--key", key, "--version", "2", "--security-version", "-1", image, NULL };
    const char *no_key[] = { "sign", "--version", "2", image, NULL };
    const char *two_images[] = { "sign", "--key", key, "--version", "2", image, image, NULL };
    const char *unknown[] = { "frobnicate", NULL };
    const char *none[] = { NULL };
    const char *help[] = { "--help", NULL };
    const char *sign_help[] = { "sign", "--help", NULL };

    assert_tool (ok, 0, "valid: key ", TRUE);
    assert_tool (version, 1, "signed for version 2.0, offered version 2.1", FALSE);
    assert_tool (module, 1, "signed for module \"mcu\"", FALSE);
    assert_tool (wrong_key, 1, "not trusted", FALSE);
    assert_tool (garbage, 1, "not an object", FALSE);
    assert_tool (private_as_pub, 1, "not an Ed25519 public key", FALSE);
    assert_tool (pub_as_private, 1, "not an Ed25519 private key", FALSE);
    assert_tool (no_image, 1, "/nonexistent.bin", FALSE);
    assert_tool (empty_image, 1, "0 bytes", FALSE);
    assert_tool (bad_version, 2, "--version", FALSE);
    assert_tool (bad_module, 2, "--module", FALSE);
    assert_tool (bad_sv, 2, "--security-version", FALSE);
    assert_tool (neg_sv, 2, "--security-version", FALSE);
    assert_tool (no_key, 2, "--key", FALSE);
    assert_tool (two_images, 2, "one IMAGE", FALSE);
    assert_tool (unknown, 2, "unknown command", FALSE);
    assert_tool (none, 2, "command is required", FALSE);
    assert_tool (help, 0, "Usage: iv-ota-sign keygen KEY", TRUE);
    assert_tool (sign_help, 0, "Exit codes:", TRUE);
    /* The image changed after signing. */
    g_assert_true (g_file_set_contents (image, "changed", -1, NULL));
    assert_tool (ok, 1, "signed for 100000 bytes", FALSE);
  }
  ota_test_remove_tree (dir);
}

#define ADD(name, setup, fn, data) g_test_add ("/signing/" name, Fixture, data, setup, fn, fixture_teardown)

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  ADD ("signed-image-installs-and-done-raises-the-floor", fixture_setup, test_signed_image_installs, NULL);
  ADD ("tampered-image-with-matching-md5-fails-4", fixture_setup, test_tampered_image_with_matching_md5_fails_4,
       NULL);
  ADD ("refused/unknown-key", fixture_setup, test_refused_before_any_request, GINT_TO_POINTER (REFUSE_UNKNOWN_KEY));
  ADD ("refused/other-version", fixture_setup, test_refused_before_any_request,
       GINT_TO_POINTER (REFUSE_OTHER_VERSION));
  ADD ("refused/other-module", fixture_setup, test_refused_before_any_request, GINT_TO_POINTER (REFUSE_OTHER_MODULE));
  ADD ("refused/other-size", fixture_setup, test_refused_before_any_request, GINT_TO_POINTER (REFUSE_OTHER_SIZE));
  ADD ("refused/unsigned", fixture_setup, test_refused_before_any_request, GINT_TO_POINTER (REFUSE_UNSIGNED));
  ADD ("refused/app-members-only", fixture_setup, test_refused_before_any_request,
       GINT_TO_POINTER (REFUSE_APP_MEMBERS_ONLY));
  ADD ("lower-security-version-is-rollback", fixture_setup, test_lower_security_version_is_rollback, NULL);
  ADD ("equal-security-version-installs", fixture_setup, test_equal_security_version_installs, NULL);
  ADD ("done-after-reboot-raises-the-floor", fixture_setup, test_done_after_reboot_raises_the_floor, NULL);
  ADD ("resumed-signed-download-installs", fixture_setup, test_resumed_signed_download_installs, NULL);
  ADD ("two-keys-and-removal-at-restart", fixture_setup_two_keys, test_two_keys_and_removal_at_restart, NULL);
  g_test_add_func ("/signing/bad-key-file-stops-the-agent", test_bad_key_file_stops_the_agent);
  g_test_add_func ("/signing/without-keys-nothing-changes", test_without_keys_nothing_changes);
  g_test_add_func ("/signing/sign-tool/keygen", test_sign_tool_keygen);
  g_test_add_func ("/signing/sign-tool/sign-and-verify", test_sign_tool_sign_and_verify);
  return g_test_run ();
}
