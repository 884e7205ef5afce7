/* A broken or hostile cloud: every invalid message on the update topic is
 * rejected with exactly one "cloud message rejected" log line, nothing of it
 * reaches the apps, and the agent keeps serving D-Bus and valid offers. */
#include "harness.h"

#include <glib/gstdio.h>

#define REJECTED "cloud message rejected"
#define REFUSED "cloud refused version report"
#define REPORT_VERSION(v) "{\"type\":\"report_version\",\"report\":{\"version\":\"" v "\"}}"

#define GOOD_URL "http://127.0.0.1:9/fw.bin"
#define GOOD_MD5 "0123456789abcdef0123456789abcdef"
#define GOOD_SIZE 708482
#define MAX_SIZE 1048576

/* Fields of a valid update_firmware, each with its trailing comma but the last. */
#define F_TYPE "\"type\":\"update_firmware\","
#define F_VERSION "\"version\":\"1.1\","
#define F_URL "\"url\":\"" GOOD_URL "\","
#define F_MD5 "\"md5sum\":\"" GOOD_MD5 "\","
#define F_SIZE "\"file_size\":708482"
#define VALID_OFFER "{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE "}"

/* ask_before_download: an accepted offer only raises UpdateOffered, no download. */
static const char *hostile_config = "max_firmware_size=1048576\nreport_interval=600\nretry_interval=1\n";
static const char *https_config =
  "max_firmware_size=1048576\nreport_interval=600\nretry_interval=1\nrequire_https=true\n";

/* ---- helpers ---- */

static gboolean
wait_log_count (OtaTestAgent *agent, const char *needle, guint target)
{
  return ota_test_wait_file_lines (agent->log_path, needle, target, OTA_TEST_TIMEOUT_MS);
}

/* A GetStatus round trip; signals the agent sent before its reply are then
 * queued in the main context, and dispatched here. */
static char *
status_state_after_drain (OtaTestEnv *env)
{
  char *state = ota_test_status_get (env->proxy, "", "state");

  for (int i = 0; i < 100 && g_main_context_iteration (NULL, FALSE); i++)
    ;
  return state;
}

typedef struct {
  GPtrArray *array;
  guint len;
} LenWait;

static gboolean
len_reached (gpointer data)
{
  LenWait *w = data;
  return w->array->len >= w->len;
}

static void
assert_offered (OtaTestEnv *env, guint index, const char *version, guint64 size)
{
  LenWait w = { env->signals->offered, index + 1 };
  const char *module, *offered_version;
  guint64 offered_size;

  g_assert_true (ota_test_wait (len_reached, &w, OTA_TEST_TIMEOUT_MS));
  g_variant_get (g_ptr_array_index (env->signals->offered, index), "(&s&st)", &module, &offered_version,
                 &offered_size);
  g_assert_cmpstr (module, ==, "");
  g_assert_cmpstr (offered_version, ==, version);
  g_assert_cmpuint (offered_size, ==, size);
}

/* Inits the main module with ask_before_download and waits for its report,
 * which also means the agent's subscription is in place. */
static void
init_main (OtaTestEnv *env, const char *version)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *report =
    g_strdup_printf ("{\"type\":\"report_version\",\"report\":{\"version\":\"%s\"}}", version);

  ota_test_init (env->proxy, "", version, env->fw_dir, TRUE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, 0, report, OTA_TEST_TIMEOUT_MS), >=, 0);
}

typedef struct {
  OtaTestEnv *env;
  guint rejected;
  guint progress;
} RejectWait;

/* Rejected, or, for a failing agent, anything an app would see. */
static gboolean
reject_or_signal (gpointer data)
{
  RejectWait *w = data;

  return ota_test_agent_log_count (w->env->agent, REJECTED) >= w->rejected ||
         w->env->signals->offered->len > 0 || w->env->signals->progress->len > w->progress;
}

/* Publishes @payload and asserts it is rejected with one log line, no signal,
 * and the module still idle. */
static void
assert_rejected (OtaTestEnv *env, const char *name, const void *payload, gsize length)
{
  guint before = ota_test_agent_log_count (env->agent, REJECTED);
  RejectWait w = { env, before + 1, env->signals->progress->len };
  g_autofree char *state = NULL;

  g_test_message ("hostile message: %s (%" G_GSIZE_FORMAT " bytes)", name, length);
  ota_test_cloud_publish (env->cloud, payload, length);
  /* The log is a file: ota_test_wait() polls it. */
  ota_test_wait (reject_or_signal, &w, OTA_TEST_TIMEOUT_MS);
  state = status_state_after_drain (env);
  g_assert_cmpuint (env->signals->offered->len, ==, 0);
  g_assert_cmpuint (env->signals->progress->len, ==, w.progress);
  g_assert_cmpstr (state, ==, "idle");
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, before + 1);
  g_assert_true (ota_test_process_is_running (env->agent->proc));
}

/* Publishes a well-formed offer that the agent refuses by its own rules
 * (@reason): one rejection log line, no UpdateOffered, and a failed cycle:
 * fail -5 naming @reason, to the cloud (for @version) and on the bus. */
static void
assert_refused_with_fail (OtaTestEnv *env, const char *payload, const char *version, const char *reason,
                          const char *kind)
{
  guint before = ota_test_agent_log_count (env->agent, REJECTED);
  guint offered = env->signals->offered->len;
  guint from = env->cloud->reports->len;
  g_autofree char *needle = g_strdup_printf ("\"state\":\"fail\",\"result_code\":\"-5\",\"result_msg\":\"%s", reason);
  g_autofree char *target = g_strdup_printf ("\"version\":\"%s\"", version);
  g_autofree char *state = NULL;
  g_autofree char *msg = NULL;
  int idx;

  ota_test_cloud_publish (env->cloud, payload, strlen (payload));
  idx = ota_test_cloud_wait_report_containing (env->cloud, from, needle, OTA_TEST_TIMEOUT_MS);
  g_assert_cmpint (idx, >=, 0);
  g_assert_nonnull (strstr (g_ptr_array_index (env->cloud->reports, idx), target));
  g_assert_cmpint (ota_test_signals_wait_state (env->signals, "", "fail", OTA_TEST_TIMEOUT_MS), >=, 0);
  state = status_state_after_drain (env);
  g_assert_cmpstr (state, ==, "fail");
  msg = ota_test_status_get (env->proxy, "", "result_msg");
  g_assert_nonnull (strstr (msg, reason));
  g_assert_cmpstr (ota_test_signals_last_fail_kind (env->signals), ==, kind);
  g_assert_cmpuint (env->signals->offered->len, ==, offered);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, before + 1);
  g_assert_true (ota_test_process_is_running (env->agent->proc));
}

/* Over max_firmware_size: refused before any request, and the cloud is told. */
static void
test_over_max_firmware_size (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *big = ota_test_offer_json (NULL, "1.1", GOOD_URL, GOOD_MD5, MAX_SIZE + 1);
  g_autofree char *fits = ota_test_offer_json (NULL, "1.2", GOOD_URL, GOOD_MD5, MAX_SIZE);

  g_autofree char *big_again = ota_test_offer_json (NULL, "1.3", GOOD_URL, GOOD_MD5, MAX_SIZE + 1);
  g_autofree char *state = NULL;
  g_autofree char *target = NULL;
  guint rejected;

  init_main (env, "1.0");
  assert_refused_with_fail (env, big, "1.1", "file_size 1048577 exceeds max_firmware_size 1048576",
                            "size");
  ota_test_cloud_publish (env->cloud, fits, strlen (fits));
  assert_offered (env, 0, "1.2", MAX_SIZE);

  /* With a cycle under way (1.2 offered, the app asked), a refused offer is
   * only logged: the cycle goes on, nothing is reported. */
  rejected = ota_test_agent_log_count (env->agent, REJECTED);
  ota_test_cloud_publish (env->cloud, big_again, strlen (big_again));
  g_assert_true (wait_log_count (env->agent, REJECTED, rejected + 1));
  state = status_state_after_drain (env);
  target = ota_test_status_get (env->proxy, "", "target_version");
  g_assert_cmpstr (state, ==, "offered");
  g_assert_cmpstr (target, ==, "1.2");
  g_assert_cmpuint (ota_test_cloud_count_reports (env->cloud, "\"state\":\"fail\""), ==, 1);
}

/* ---- the table of malformed update_firmware messages ---- */

typedef struct {
  char *name;
  GBytes *payload;
} HostileCase;

static void
hostile_case_free (HostileCase *c)
{
  g_free (c->name);
  g_bytes_unref (c->payload);
  g_free (c);
}

static void
add_case (GPtrArray *cases, const char *name, const void *data, gsize length)
{
  HostileCase *c = g_new0 (HostileCase, 1);

  c->name = g_strdup (name);
  c->payload = g_bytes_new (data, length);
  g_ptr_array_add (cases, c);
}

static void
add_case_take (GPtrArray *cases, const char *name, char *text)
{
  HostileCase *c = g_new0 (HostileCase, 1);
  gsize length = strlen (text);

  c->name = g_strdup (name);
  c->payload = g_bytes_new_take (text, length);
  g_ptr_array_add (cases, c);
}

/* A literal, embedded NUL bytes included. */
#define ADD_LITERAL(cases, name, literal) add_case (cases, name, literal, sizeof (literal) - 1)

static const struct {
  const char *name;
  const char *json;
} literal_cases[] = {
  /* Not JSON, or not an object. */
  { "not JSON", "update_firmware 1.1" },
  { "truncated JSON", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":7084" },
  { "unterminated string", "{" F_TYPE "\"version\":\"1.1}" },
  { "single quotes", "{'type':'update_firmware','version':'1.1'}" },
  { "trailing data", VALID_OFFER "{}" },
  { "top-level array", "[" VALID_OFFER "]" },
  { "top-level string", "\"update_firmware\"" },
  { "top-level number", "42" },
  { "top-level null", "null" },
  /* The type. */
  { "type missing", "{" F_VERSION F_URL F_MD5 F_SIZE "}" },
  { "type not a string", "{\"type\":1," F_VERSION F_URL F_MD5 F_SIZE "}" },
  { "type null", "{\"type\":null," F_VERSION F_URL F_MD5 F_SIZE "}" },
  { "type unknown", "{\"type\":\"update_firmwares\"," F_VERSION F_URL F_MD5 F_SIZE "}" },
  /* An escaped newline must not forge a second log line. */
  { "type forging a log line", "{\"type\":\"x\\n" REJECTED "\\n" REJECTED "\"}" },
  /* Required fields. */
  { "version missing", "{" F_TYPE F_URL F_MD5 F_SIZE "}" },
  { "url missing", "{" F_TYPE F_VERSION F_MD5 F_SIZE "}" },
  { "md5sum missing", "{" F_TYPE F_VERSION F_URL F_SIZE "}" },
  { "file_size missing", "{" F_TYPE F_VERSION F_URL F_MD5 "\"note\":\"x\"}" },
  /* version */
  { "version a number", "{" F_TYPE "\"version\":1.1," F_URL F_MD5 F_SIZE "}" },
  { "version an integer", "{" F_TYPE "\"version\":2," F_URL F_MD5 F_SIZE "}" },
  { "version null", "{" F_TYPE "\"version\":null," F_URL F_MD5 F_SIZE "}" },
  { "version empty", "{" F_TYPE "\"version\":\"\"," F_URL F_MD5 F_SIZE "}" },
  { "version ../x", "{" F_TYPE "\"version\":\"../x\"," F_URL F_MD5 F_SIZE "}" },
  { "version ..", "{" F_TYPE "\"version\":\"..\"," F_URL F_MD5 F_SIZE "}" },
  { "version .", "{" F_TYPE "\"version\":\".\"," F_URL F_MD5 F_SIZE "}" },
  { "version a/b", "{" F_TYPE "\"version\":\"a/b\"," F_URL F_MD5 F_SIZE "}" },
  { "version with a space", "{" F_TYPE "\"version\":\"1 1\"," F_URL F_MD5 F_SIZE "}" },
  { "version of 33 characters",
    "{" F_TYPE "\"version\":\"123456789012345678901234567890123\"," F_URL F_MD5 F_SIZE "}" },
  { "version with \\u0000", "{" F_TYPE "\"version\":\"1.1\\u0000/../x\"," F_URL F_MD5 F_SIZE "}" },
  { "version with a lone surrogate", "{" F_TYPE "\"version\":\"1.1\\ud800\"," F_URL F_MD5 F_SIZE "}" },
  { "version non-ASCII", "{" F_TYPE "\"version\":\"1.1\xc3\xa9\"," F_URL F_MD5 F_SIZE "}" },
  { "version twice, the last bad", "{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE ",\"version\":\"../x\"}" },
  /* file_size */
  { "file_size a string", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":\"708482\"}" },
  { "file_size fractional", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":1.5}" },
  { "file_size exponent", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":7e5}" },
  { "file_size negative", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":-708482}" },
  { "file_size zero", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":0}" },
  { "file_size wrapping 64 bits", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":18446744073709551617}" },
  { "file_size hex", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":0x10}" },
  { "file_size boolean", "{" F_TYPE F_VERSION F_URL F_MD5 "\"file_size\":true}" },
  /* md5sum */
  { "md5sum of 31 digits", "{" F_TYPE F_VERSION F_URL "\"md5sum\":\"0123456789abcdef0123456789abcde\"," F_SIZE "}" },
  { "md5sum of 33 digits",
    "{" F_TYPE F_VERSION F_URL "\"md5sum\":\"0123456789abcdef0123456789abcdef0\"," F_SIZE "}" },
  { "md5sum not hex", "{" F_TYPE F_VERSION F_URL "\"md5sum\":\"0123456789abcdef0123456789abcdeg\"," F_SIZE "}" },
  { "md5sum a number", "{" F_TYPE F_VERSION F_URL "\"md5sum\":1234567890," F_SIZE "}" },
  /* url */
  { "url ftp", "{" F_TYPE F_VERSION "\"url\":\"ftp://127.0.0.1/fw.bin\"," F_MD5 F_SIZE "}" },
  { "url file", "{" F_TYPE F_VERSION "\"url\":\"file:///etc/shadow\"," F_MD5 F_SIZE "}" },
  { "url without host", "{" F_TYPE F_VERSION "\"url\":\"http:///fw.bin\"," F_MD5 F_SIZE "}" },
  { "url without scheme", "{" F_TYPE F_VERSION "\"url\":\"127.0.0.1/fw.bin\"," F_MD5 F_SIZE "}" },
  { "url with a space", "{" F_TYPE F_VERSION "\"url\":\"http://127.0.0.1:9/a b\"," F_MD5 F_SIZE "}" },
  { "url with a newline", "{" F_TYPE F_VERSION "\"url\":\"http://127.0.0.1:9/a\\nb\"," F_MD5 F_SIZE "}" },
  { "url an array", "{" F_TYPE F_VERSION "\"url\":[\"" GOOD_URL "\"]," F_MD5 F_SIZE "}" },
  /* Optional fields. */
  { "fw_type ../etc", "{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE ",\"fw_type\":\"../etc\"}" },
  { "fw_type a number", "{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE ",\"fw_type\":7}" },
  { "task_id an object", "{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE ",\"task_id\":{\"id\":1}}" },
  { "task_id negative", "{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE ",\"task_id\":-1}" },
  /* Raw bytes. */
  { "control character in a string", "{" F_TYPE "\"version\":\"1.1\n\"," F_URL F_MD5 F_SIZE "}" },
  { "invalid UTF-8", "{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE ",\"note\":\"\xc3\x28\xff\"}" },
  { "overlong UTF-8 slash", "{" F_TYPE "\"version\":\"..\xc0\xaf" "x\"," F_URL F_MD5 F_SIZE "}" },
};

/* A valid offer of @version, @total bytes long thanks to an unknown field. */
static char *
padded_offer (const char *version, gsize total)
{
  g_autofree char *head = g_strdup_printf ("{" F_TYPE "\"version\":\"%s\"," F_URL F_MD5 F_SIZE ",\"padding\":\"",
                                           version);
  const char *tail = "\"}";
  gsize head_len = strlen (head);
  gsize tail_len = strlen (tail);
  char *text;

  g_assert_cmpuint (total, >, head_len + tail_len);
  text = g_malloc (total + 1);
  memcpy (text, head, head_len);
  memset (text + head_len, 'p', total - head_len - tail_len);
  memcpy (text + total - tail_len, tail, tail_len + 1);
  return text;
}

static char *
offer_with_url_of (gsize url_length)
{
  const char *prefix = "http://127.0.0.1:9/";
  g_autofree char *path = g_strnfill (url_length - strlen (prefix), 'a');
  g_autofree char *url = g_strconcat (prefix, path, NULL);

  g_assert_cmpuint (strlen (url), ==, url_length);
  return ota_test_offer_json (NULL, "1.1", url, GOOD_MD5, GOOD_SIZE);
}

static char *
deeply_nested_offer (guint depth)
{
  g_autofree char *open = g_strnfill (depth, '[');
  g_autofree char *close = g_strnfill (depth, ']');

  return g_strconcat ("{" F_TYPE F_VERSION F_URL F_MD5 F_SIZE ",\"x\":", open, close, "}", NULL);
}

static GPtrArray *
hostile_cases_new (void)
{
  GPtrArray *cases = g_ptr_array_new_with_free_func ((GDestroyNotify) hostile_case_free);

  add_case (cases, "empty payload", "", 0);
  for (gsize i = 0; i < G_N_ELEMENTS (literal_cases); i++)
    add_case (cases, literal_cases[i].name, literal_cases[i].json, strlen (literal_cases[i].json));
  ADD_LITERAL (cases, "NUL byte inside", "{" F_TYPE "\"version\":\"1.1\0../x\"," F_URL F_MD5 F_SIZE "}");
  ADD_LITERAL (cases, "NUL byte after the object", VALID_OFFER "\0");
  ADD_LITERAL (cases, "lone NUL byte", "\0");
  add_case_take (cases, "url of 2049 bytes", offer_with_url_of (2049));
  add_case_take (cases, "nested 30000 levels deep", deeply_nested_offer (30000));
  add_case_take (cases, "65537-byte message", padded_offer ("1.1", 64 * 1024 + 1));
  /* Far bigger messages never reach the agent: it announces its maximum
   * packet size to the broker (test-etiquette, big-message). */
  return cases;
}

static void
test_malformed_rejected (OtaTestEnv *env, gconstpointer data)
{
  g_autoptr (GPtrArray) cases = hostile_cases_new ();
  guint first = ota_test_agent_log_count (env->agent, REJECTED);

  g_assert_cmpuint (cases->len, >=, 25);
  init_main (env, "1.0");
  for (guint i = 0; i < cases->len; i++) {
    HostileCase *c = g_ptr_array_index (cases, i);
    gsize length;
    const void *payload = g_bytes_get_data (c->payload, &length);

    assert_rejected (env, c->name, payload, length);
  }
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, first + cases->len);
  /* Still serving: a valid offer goes through. */
  ota_test_cloud_publish (env->cloud, VALID_OFFER, strlen (VALID_OFFER));
  assert_offered (env, 0, "1.1", GOOD_SIZE);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, first + cases->len);
}

/* The limits are inclusive: the longest URL, the largest message and size, the
 * longest version are offers like any other. */
static void
test_limits_accepted (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *long_url = offer_with_url_of (2048);
  g_autofree char *largest = padded_offer ("1.2", 64 * 1024);
  g_autofree char *max_size = ota_test_offer_json (NULL, "1.3", GOOD_URL, GOOD_MD5, MAX_SIZE);
  g_autofree char *long_version =
    ota_test_offer_json (NULL, "12345678901234567890123456789012", GOOD_URL, GOOD_MD5, 1);
  g_autofree char *upper_md5 = ota_test_offer_json (NULL, "1.4", GOOD_URL, "0123456789ABCDEF0123456789ABCDEF", 2);

  init_main (env, "1.0");
  ota_test_cloud_publish (env->cloud, long_url, strlen (long_url));
  assert_offered (env, 0, "1.1", GOOD_SIZE);
  ota_test_cloud_publish (env->cloud, largest, strlen (largest));
  assert_offered (env, 1, "1.2", GOOD_SIZE);
  ota_test_cloud_publish (env->cloud, max_size, strlen (max_size));
  assert_offered (env, 2, "1.3", MAX_SIZE);
  ota_test_cloud_publish (env->cloud, long_version, strlen (long_version));
  assert_offered (env, 3, "12345678901234567890123456789012", 1);
  ota_test_cloud_publish (env->cloud, upper_md5, strlen (upper_md5));
  assert_offered (env, 4, "1.4", 2);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, 0);
}

/* ---- require_https ---- */


static void
test_require_https (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *plain = ota_test_offer_json (NULL, "1.1", "http://127.0.0.1:9/fw.bin", GOOD_MD5, GOOD_SIZE);
  g_autofree char *plain_upper = ota_test_offer_json (NULL, "1.1", "HTTP://127.0.0.1:9/fw.bin", GOOD_MD5, GOOD_SIZE);
  g_autofree char *tls = ota_test_offer_json (NULL, "1.2", "https://127.0.0.1:9/fw.bin", GOOD_MD5, GOOD_SIZE);

  init_main (env, "1.0");
  assert_refused_with_fail (env, plain, "1.1", "plain http URL while require_https=true", "refused");
  /* The same offer again (another URL): refused again, after retry_interval. */
  assert_refused_with_fail (env, plain_upper, "1.1", "plain http URL while require_https=true",
                            "refused");
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, "require_https"), >=, 2);
  ota_test_cloud_publish (env->cloud, tls, strlen (tls));
  assert_offered (env, 0, "1.2", GOOD_SIZE);
}

/* ---- report_version_rsp ---- */

static void
assert_refused_and_reported_again (OtaTestEnv *env, const char *rsp)
{
  guint refused = ota_test_agent_log_count (env->agent, REFUSED);
  guint from = env->cloud->reports->len;
  g_autofree char *state = NULL;

  ota_test_cloud_publish (env->cloud, rsp, strlen (rsp));
  g_assert_true (wait_log_count (env->agent, REFUSED, refused + 1));
  /* retry_interval=1: the version goes out again by itself. */
  g_assert_cmpint (ota_test_cloud_wait_report (env->cloud, from, REPORT_VERSION ("1.0"), OTA_TEST_TIMEOUT_MS), >=,
                   (int) from);
  state = status_state_after_drain (env);
  g_assert_cmpstr (state, ==, "idle");
}

/* A report_version_rsp with @fields (JSON members, comma-separated). */
#define VERSION_RSP(fields) "{\"type\":\"report_version_rsp\"," fields "}"

static void
test_version_rsp_refused (OtaTestEnv *env, gconstpointer data)
{
  init_main (env, "1.0");
  assert_refused_and_reported_again (
    env, VERSION_RSP ("\"result_code\":1,\"result_msg\":\"denied\",\"version\":\"1.0\""));
  assert_refused_and_reported_again (
    env, VERSION_RSP ("\"result_code\":\"-3\",\"result_msg\":\"denied\",\"version\":\"1.0\""));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, 0);
  g_assert_cmpuint (env->signals->offered->len, ==, 0);
  /* Still serving offers. */
  ota_test_cloud_publish (env->cloud, VALID_OFFER, strlen (VALID_OFFER));
  assert_offered (env, 0, "1.1", GOOD_SIZE);
}

static void
test_version_rsp_malformed (OtaTestEnv *env, gconstpointer data)
{
  static const struct {
    const char *name;
    const char *json;
  } cases[] = {
    { "result_code not an integer", VERSION_RSP ("\"result_code\":\"abc\",\"version\":\"1.0\"") },
    { "result_code fractional string", VERSION_RSP ("\"result_code\":\"1.5\",\"version\":\"1.0\"") },
    { "result_code empty string", VERSION_RSP ("\"result_code\":\"\",\"version\":\"1.0\"") },
    { "result_code with a space", VERSION_RSP ("\"result_code\":\" 1\",\"version\":\"1.0\"") },
    { "result_code fractional", VERSION_RSP ("\"result_code\":1.5,\"version\":\"1.0\"") },
    { "result_code boolean", VERSION_RSP ("\"result_code\":true,\"version\":\"1.0\"") },
    { "result_code null", VERSION_RSP ("\"result_code\":null,\"version\":\"1.0\"") },
    { "result_code beyond 64 bits", VERSION_RSP ("\"result_code\":\"99999999999999999999\",\"version\":\"1.0\"") },
    { "result_code missing", VERSION_RSP ("\"version\":\"1.0\"") },
    { "result_msg an object", VERSION_RSP ("\"result_code\":1,\"result_msg\":{}") },
    { "fw_type ../etc", VERSION_RSP ("\"result_code\":1,\"fw_type\":\"../etc\"") },
  };
  const char *ack = VERSION_RSP ("\"result_code\":\"0\",\"version\":\"1.0\"");
  guint acknowledged;

  init_main (env, "1.0");
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_rejected (env, cases[i].name, cases[i].json, strlen (cases[i].json));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REFUSED), ==, 0);
  /* "0" as a string is a plain acknowledgement: neither rejected nor refused. */
  acknowledged = ota_test_agent_log_count (env->agent, "acknowledged");
  ota_test_cloud_publish (env->cloud, ack, strlen (ack));
  g_assert_true (wait_log_count (env->agent, "acknowledged", acknowledged + 1));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REFUSED), ==, 0);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, G_N_ELEMENTS (cases));
}

/* ---- offers that are valid but not for us ---- */

static void
test_offer_already_installed (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *same = ota_test_offer_json (NULL, "1.0", GOOD_URL, GOOD_MD5, GOOD_SIZE);
  g_autofree char *newer = ota_test_offer_json (NULL, "1.1", GOOD_URL, GOOD_MD5, GOOD_SIZE);
  g_autofree char *state = NULL;
  guint progress_before;

  init_main (env, "1.0");
  progress_before = env->signals->progress->len;
  ota_test_cloud_publish (env->cloud, same, strlen (same));
  g_assert_true (wait_log_count (env->agent, "already installed", 1));
  state = status_state_after_drain (env);
  g_assert_cmpstr (state, ==, "idle");
  g_assert_cmpuint (env->signals->offered->len, ==, 0);
  g_assert_cmpuint (env->signals->progress->len, ==, progress_before);
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, 0);
  ota_test_cloud_publish (env->cloud, newer, strlen (newer));
  assert_offered (env, 0, "1.1", GOOD_SIZE);
}

/* fw_type names a module nobody owns: logged and dropped, the owned main
 * module is not touched. */
static void
test_offer_unowned_module_dropped (OtaTestEnv *env, gconstpointer data)
{
  g_autofree char *mcu = ota_test_offer_json ("mcu", "1.1", GOOD_URL, GOOD_MD5, GOOD_SIZE);
  g_autofree char *state = NULL;
  guint dropped = ota_test_agent_log_count (env->agent, "no application owns that module");

  init_main (env, "1.0");
  ota_test_cloud_publish (env->cloud, mcu, strlen (mcu));
  g_assert_true (wait_log_count (env->agent, "no application owns that module", dropped + 1));
  state = status_state_after_drain (env);
  g_assert_cmpstr (state, ==, "idle");
  g_assert_cmpuint (env->signals->offered->len, ==, 0);
  ota_test_cloud_publish (env->cloud, VALID_OFFER, strlen (VALID_OFFER));
  assert_offered (env, 0, "1.1", GOOD_SIZE);
}

/* ---- other topics ---- */

static void
test_other_topics_ignored (OtaTestEnv *env, gconstpointer data)
{
  static const char *topics[] = {
    "$ota/update/" OTA_TEST_PRODUCT "/dev2",
    "$ota/update/" OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE "/extra",
    "$ota/update/" OTA_TEST_PRODUCT,
    "$OTA/update/" OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE,
    "$ota/report/" OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE,
    "ota/update/" OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE,
  };

  init_main (env, "1.0");
  for (gsize i = 0; i < G_N_ELEMENTS (topics); i++) {
    g_autoptr (GError) error = NULL;

    ota_mqtt_link_publish (env->cloud->link, topics[i], VALID_OFFER, strlen (VALID_OFFER), 1, NULL, &error);
    g_assert_no_error (error);
    ota_mqtt_link_publish (env->cloud->link, topics[i], "{not json", strlen ("{not json"), 1, NULL, &error);
    g_assert_no_error (error);
  }
  /* A marker on the update topic, published after them: once it is rejected,
   * anything the agent would have done with the others is done. */
  assert_rejected (env, "marker after other topics", "{not json", strlen ("{not json"));
  g_assert_cmpuint (ota_test_agent_log_count (env->agent, REJECTED), ==, 1);
  ota_test_cloud_publish (env->cloud, VALID_OFFER, strlen (VALID_OFFER));
  assert_offered (env, 0, "1.1", GOOD_SIZE);
  g_assert_cmpuint (env->signals->offered->len, ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, fn, setup)                                                                                       \
  g_test_add ("/hostile/" path, OtaTestEnv, hostile_config, setup, fn, ota_test_env_teardown)
  g_test_add ("/hostile/update/require-https", OtaTestEnv, https_config, ota_test_env_setup, test_require_https,
              ota_test_env_teardown);
  ADD ("update/malformed-rejected", test_malformed_rejected, ota_test_env_setup);
  ADD ("update/limits-accepted", test_limits_accepted, ota_test_env_setup);
  ADD ("update/over-max-firmware-size-fails", test_over_max_firmware_size, ota_test_env_setup);
  ADD ("update/already-installed-ignored", test_offer_already_installed, ota_test_env_setup);
  ADD ("update/unowned-module-dropped", test_offer_unowned_module_dropped, ota_test_env_setup);
  ADD ("version-rsp/refused-reports-again", test_version_rsp_refused, ota_test_env_setup);
  ADD ("version-rsp/malformed-rejected", test_version_rsp_malformed, ota_test_env_setup);
  ADD ("topics/others-ignored", test_other_topics_ignored, ota_test_env_setup);
  return g_test_run ();
}
