/* Unit tests of the $ota wire protocol (service/protocol.c): what the cloud
 * may send, what is refused, and the exact bytes the device reports. */
#include "protocol.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <string.h>

#define MAX_FW ((guint64) 2147483648u)
#define MD5 "36eb5951179db14a631463a37a9322a2"

/* A valid offer with one field's JSON text replaced or dropped (NULL). */
#define OFFER_FIELDS(v, u, m, s) \
  "{\"type\":\"update_firmware\"" v u m s "}"
#define F_V(x) ",\"version\":" x
#define F_U(x) ",\"url\":" x
#define F_M(x) ",\"md5sum\":" x
#define F_S(x) ",\"file_size\":" x
#define OK_V F_V ("\"0.2\"")
#define OK_U F_U ("\"https://example.com/fw.bin\"")
#define OK_M F_M ("\"" MD5 "\"")
#define OK_S F_S ("708482")
#define OFFER OFFER_FIELDS (OK_V, OK_U, OK_M, OK_S)
/* The valid offer plus extra members. */
#define OFFER_WITH(extra) \
  "{\"type\":\"update_firmware\"" OK_V OK_U OK_M OK_S "," extra "}"

static gboolean
parse (const char *json, OtaCloudMessage *msg, GError **error)
{
  return ota_protocol_parse (json, strlen (json), MAX_FW, msg, error);
}

/* The header promises a cleared struct after a failure. */
static gboolean
message_is_zeroed (const OtaCloudMessage *msg)
{
  static const OtaCloudMessage zero;

  return memcmp (msg, &zero, sizeof zero) == 0;
}

static void
parse_offer_ok (const char *json, OtaCloudMessage *msg)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (parse (json, msg, &error));
  g_assert_no_error (error);
  g_assert_cmpint (msg->type, ==, OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE);
}

/* ---- accepted update_firmware ---- */

static void
test_parse_offer_minimal (void)
{
  OtaCloudMessage msg;

  parse_offer_ok (OFFER, &msg);
  g_assert_cmpstr (msg.offer.module, ==, "");
  g_assert_cmpstr (msg.offer.version, ==, "0.2");
  g_assert_cmpstr (msg.offer.url, ==, "https://example.com/fw.bin");
  g_assert_cmpstr (msg.offer.md5sum, ==, MD5);
  g_assert_cmpuint (msg.offer.file_size, ==, 708482);
  g_assert_null (msg.offer.task_id);
  g_assert_false (msg.offer.task_id_is_number);
  g_assert_null (msg.offer.user_defined);
  g_assert_null (msg.ack.module);
  ota_cloud_message_clear (&msg);
}

static void
test_parse_offer_all_fields (void)
{
  OtaCloudMessage msg;

  parse_offer_ok (OFFER_WITH ("\"fw_type\":\"mcu-1.a_b\",\"task_id\":\"job#42:x\","
                              "\"user_defined\":{\"k\": [1, \"two\", null]}"),
                  &msg);
  g_assert_cmpstr (msg.offer.module, ==, "mcu-1.a_b");
  g_assert_cmpstr (msg.offer.task_id, ==, "job#42:x");
  g_assert_false (msg.offer.task_id_is_number);
  /* Re-serialised compactly, whatever spacing the cloud used. */
  g_assert_cmpstr (msg.offer.user_defined, ==, "{\"k\":[1,\"two\",null]}");
  ota_cloud_message_clear (&msg);
}

static void
test_parse_offer_user_defined_scalars (void)
{
  static const struct {
    const char *json;
    const char *text;
  } cases[] = {
    { "\"hello\"", "\"hello\"" },
    { "17", "17" },
    { "null", "null" },
    { "[]", "[]" },
    { "true", "true" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *json = g_strdup_printf (OFFER_WITH ("\"user_defined\":%s"), cases[i].json);
    OtaCloudMessage msg;

    parse_offer_ok (json, &msg);
    g_assert_cmpstr (msg.offer.user_defined, ==, cases[i].text);
    ota_cloud_message_clear (&msg);
  }
}

/* MQTT payloads carry no terminator: reading past @length would be caught by ASan. */
static void
test_parse_offer_not_nul_terminated (void)
{
  gsize length = strlen (OFFER);
  g_autofree char *data = g_malloc (length);
  OtaCloudMessage msg;
  g_autoptr(GError) error = NULL;

  memcpy (data, OFFER, length);
  g_assert_true (ota_protocol_parse (data, length, MAX_FW, &msg, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (msg.offer.version, ==, "0.2");
  ota_cloud_message_clear (&msg);
}

static void
test_parse_offer_md5_lowercased (void)
{
  OtaCloudMessage msg;

  parse_offer_ok (OFFER_FIELDS (OK_V, OK_U, F_M ("\"36EB5951179DB14A631463A37A9322A2\""), OK_S),
                  &msg);
  g_assert_cmpstr (msg.offer.md5sum, ==, MD5);
  ota_cloud_message_clear (&msg);
}

static void
test_parse_offer_unknown_fields (void)
{
  OtaCloudMessage msg;

  parse_offer_ok (OFFER_WITH ("\"future\":{\"a\":[1,2,{}]},\"z\":null,\"n\":-1.5e3"), &msg);
  g_assert_cmpstr (msg.offer.version, ==, "0.2");
  g_assert_cmpuint (msg.offer.file_size, ==, 708482);
  ota_cloud_message_clear (&msg);
}

static void
test_parse_offer_task_id_number (void)
{
  OtaCloudMessage msg;

  parse_offer_ok (OFFER_WITH ("\"task_id\":9007199254740993"), &msg);
  g_assert_cmpstr (msg.offer.task_id, ==, "9007199254740993");
  g_assert_true (msg.offer.task_id_is_number);
  ota_cloud_message_clear (&msg);

  parse_offer_ok (OFFER_WITH ("\"task_id\":0"), &msg);
  g_assert_cmpstr (msg.offer.task_id, ==, "0");
  g_assert_true (msg.offer.task_id_is_number);
  ota_cloud_message_clear (&msg);
}

static void
test_parse_offer_boundaries (void)
{
  g_autofree char *path = g_strnfill (OTA_PROTOCOL_MAX_URL_LEN - strlen ("https://h/"), 'a');
  g_autofree char *url = g_strconcat ("https://h/", path, NULL);
  g_autofree char *long_url = g_strdup_printf (OFFER_FIELDS (OK_V, F_U ("\"%s\""), OK_M, OK_S), url);
  g_autofree char *version = g_strnfill (OTA_PROTOCOL_MAX_VERSION_LEN, '9');
  g_autofree char *long_version =
      g_strdup_printf (OFFER_FIELDS (F_V ("\"%s\""), OK_U, OK_M, OK_S), version);
  g_autofree char *task_id = g_strnfill (OTA_PROTOCOL_MAX_TASK_ID_LEN, '~');
  g_autofree char *long_task_id = g_strdup_printf (OFFER_WITH ("\"task_id\":\"%s\""), task_id);
  OtaCloudMessage msg;

  g_assert_cmpuint (strlen (url), ==, OTA_PROTOCOL_MAX_URL_LEN);
  parse_offer_ok (long_url, &msg);
  g_assert_cmpstr (msg.offer.url, ==, url);
  ota_cloud_message_clear (&msg);

  parse_offer_ok (long_version, &msg);
  g_assert_cmpstr (msg.offer.version, ==, version);
  ota_cloud_message_clear (&msg);

  parse_offer_ok (long_task_id, &msg);
  g_assert_cmpstr (msg.offer.task_id, ==, task_id);
  ota_cloud_message_clear (&msg);

  parse_offer_ok (OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("1")), &msg);
  g_assert_cmpuint (msg.offer.file_size, ==, 1);
  ota_cloud_message_clear (&msg);

  parse_offer_ok (OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("2147483648")), &msg);
  g_assert_cmpuint (msg.offer.file_size, ==, MAX_FW);
  ota_cloud_message_clear (&msg);
}

/* The scheme is case-insensitive and the URL is kept byte for byte. */
static void
test_parse_offer_url_kept_verbatim (void)
{
  static const char *const urls[] = {
    "HTTP://Example.COM:8080/a%2Fb?X-Signature=ab%2B%3D&e=1#f",
    "https://[::1]/fw.bin",
    "hTTpS://user:pw@h/%E4%B8",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (urls); i++) {
    g_autofree char *json = g_strdup_printf (OFFER_FIELDS (OK_V, F_U ("\"%s\""), OK_M, OK_S), urls[i]);
    OtaCloudMessage msg;

    parse_offer_ok (json, &msg);
    g_assert_cmpstr (msg.offer.url, ==, urls[i]);
    ota_cloud_message_clear (&msg);
  }
}

/* Presigned URLs are long: anything up to 64 KiB must get through. */
#define LONG_OFFER                                                                         \
  "{\"type\":\"update_firmware\",\"padding\":\"%s\"" OK_V F_U ("\"https://cdn/?s=%s\"") OK_M \
      OK_S ",\"user_defined\":{\"mirror\":\"https://mirror/?s=%s\"}}"

static void
test_parse_offer_near_size_limit (void)
{
  g_autofree char *query = g_strnfill (OTA_PROTOCOL_MAX_URL_LEN - 40, 'q');
  gsize base = strlen (LONG_OFFER) - 6 + 2 * strlen (query);
  /* The bulk is an unknown member. */
  g_autofree char *padding = g_strnfill (OTA_PROTOCOL_MAX_MESSAGE_SIZE - 100 - base, 'p');
  g_autofree char *json = g_strdup_printf (LONG_OFFER, padding, query, query);
  OtaCloudMessage msg;

  g_assert_cmpuint (strlen (json), ==, OTA_PROTOCOL_MAX_MESSAGE_SIZE - 100);
  parse_offer_ok (json, &msg);
  g_assert_nonnull (strstr (msg.offer.url, query));
  g_assert_nonnull (strstr (msg.offer.user_defined, query));
  ota_cloud_message_clear (&msg);
}

/* user_defined is opaque: a big one, close to the message limit, is passed on whole. */
static void
test_parse_offer_big_user_defined (void)
{
  g_autofree char *blob = g_strnfill (OTA_PROTOCOL_MAX_MESSAGE_SIZE - 1024, 'u');
  g_autofree char *json = g_strdup_printf (OFFER_WITH ("\"user_defined\":\"%s\""), blob);
  g_autofree char *expected = g_strdup_printf ("\"%s\"", blob);
  OtaCloudMessage msg;

  parse_offer_ok (json, &msg);
  g_assert_cmpstr (msg.offer.user_defined, ==, expected);
  ota_cloud_message_clear (&msg);
}

/* Exactly 64 KiB passes, one byte more is dropped. */
static void
test_parse_size_limit_exact (void)
{
  gsize base = strlen (OFFER_WITH ("\"pad\":\"\""));
  g_autofree char *pad = g_strnfill (OTA_PROTOCOL_MAX_MESSAGE_SIZE - base, ' ');
  g_autofree char *json = g_strdup_printf (OFFER_WITH ("\"pad\":\"%s\""), pad);
  g_autofree char *bigger = g_strdup_printf (OFFER_WITH ("\"pad\":\" %s\""), pad);
  OtaCloudMessage msg;
  g_autoptr(GError) error = NULL;

  g_assert_cmpuint (strlen (json), ==, OTA_PROTOCOL_MAX_MESSAGE_SIZE);
  parse_offer_ok (json, &msg);
  ota_cloud_message_clear (&msg);

  g_assert_false (parse (bigger, &msg, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_nonnull (strstr (error->message, "65537"));
}

/* 1 + 63 levels is the deepest accepted nesting; one more is refused. */
static void
test_parse_depth_limit (void)
{
  g_autofree char *open = g_strnfill (63, '[');
  g_autofree char *close = g_strnfill (63, ']');
  g_autofree char *ok = g_strdup_printf (OFFER_WITH ("\"user_defined\":%s%s"), open, close);
  g_autofree char *deep = g_strdup_printf (OFFER_WITH ("\"user_defined\":[%s%s]"), open, close);
  OtaCloudMessage msg;
  g_autoptr(GError) error = NULL;

  parse_offer_ok (ok, &msg);
  g_assert_cmpuint (strlen (msg.offer.user_defined), ==, 126);
  ota_cloud_message_clear (&msg);

  g_assert_false (parse (deep, &msg, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_nonnull (strstr (error->message, "nested"));
  g_assert_true (message_is_zeroed (&msg));
}

/* ---- rejected update_firmware ---- */

typedef struct {
  const char *name;
  const char *json;
  const char *expect; /* substring of the error message */
} RejectCase;

static const RejectCase reject_cases[] = {
  { "bad JSON", "{\"type\":\"update_firmware\",", "malformed JSON" },
  { "garbage", "hello", "malformed JSON" },
  { "empty", "", "empty" },
  { "truncated", "{\"type\":\"update_firmware\",\"version\":\"0.2\",\"url\":\"https://h/", "malformed JSON" },
  { "trailing comma", OFFER_WITH ("\"x\":1,"), "malformed JSON" },
  { "missing colon", "{\"type\" \"update_firmware\"}", "malformed JSON" },
  { "top-level array", "[" OFFER "]", "not a JSON object" },
  { "top-level string", "\"update_firmware\"", "not a JSON object" },
  { "two objects", OFFER " {}", "after the top-level object" },
  { "missing type", "{\"version\":\"0.2\"}", "type: missing" },
  { "type number", "{\"type\":1}", "type: expected a string" },
  { "type null", "{\"type\":null}", "type: expected a string" },
  { "missing version", OFFER_FIELDS ("", OK_U, OK_M, OK_S), "update_firmware: version: missing" },
  { "missing url", OFFER_FIELDS (OK_V, "", OK_M, OK_S), "update_firmware: url: missing" },
  { "missing md5sum", OFFER_FIELDS (OK_V, OK_U, "", OK_S), "update_firmware: md5sum: missing" },
  { "missing file_size", OFFER_FIELDS (OK_V, OK_U, OK_M, ""), "update_firmware: file_size: missing" },
  { "version number", OFFER_FIELDS (F_V ("2"), OK_U, OK_M, OK_S), "version: expected a string, got an integer" },
  { "version null", OFFER_FIELDS (F_V ("null"), OK_U, OK_M, OK_S), "version: expected a string, got null" },
  { "version array", OFFER_FIELDS (F_V ("[\"0.2\"]"), OK_U, OK_M, OK_S), "version: expected a string" },
  { "version ../x", OFFER_FIELDS (F_V ("\"../x\""), OK_U, OK_M, OK_S), "version" },
  { "version ..", OFFER_FIELDS (F_V ("\"..\""), OK_U, OK_M, OK_S), "version" },
  { "version .", OFFER_FIELDS (F_V ("\".\""), OK_U, OK_M, OK_S), "version" },
  { "version a/b", OFFER_FIELDS (F_V ("\"a/b\""), OK_U, OK_M, OK_S), "version" },
  { "version backslash", OFFER_FIELDS (F_V ("\"a\\\\b\""), OK_U, OK_M, OK_S), "version" },
  { "version 33 chars", OFFER_FIELDS (F_V ("\"123456789012345678901234567890123\""), OK_U, OK_M, OK_S), "version" },
  { "version empty", OFFER_FIELDS (F_V ("\"\""), OK_U, OK_M, OK_S), "version" },
  { "version space", OFFER_FIELDS (F_V ("\"0.2 beta\""), OK_U, OK_M, OK_S), "version" },
  { "version unicode", OFFER_FIELDS (F_V ("\"0.2\xc3\xa9\""), OK_U, OK_M, OK_S), "version" },
  { "version unicode escape", OFFER_FIELDS (F_V ("\"0.2\\u00e9\""), OK_U, OK_M, OK_S), "version" },
  { "version \\u0000", OFFER_FIELDS (F_V ("\"0.2\\u0000../x\""), OK_U, OK_M, OK_S), "\\u0000" },
  { "version newline", OFFER_FIELDS (F_V ("\"0.2\\n\""), OK_U, OK_M, OK_S), "version" },
  { "md5 31 chars", OFFER_FIELDS (OK_V, OK_U, F_M ("\"36eb5951179db14a631463a37a9322a\""), OK_S), "md5sum: expected 32 hex digits" },
  { "md5 33 chars", OFFER_FIELDS (OK_V, OK_U, F_M ("\"36eb5951179db14a631463a37a9322a2f\""), OK_S), "md5sum: expected 32 hex digits" },
  { "md5 non-hex", OFFER_FIELDS (OK_V, OK_U, F_M ("\"36eb5951179db14a631463a37a9322ag\""), OK_S), "md5sum: expected 32 hex digits" },
  { "md5 number", OFFER_FIELDS (OK_V, OK_U, F_M ("12345678901234567890"), OK_S), "integer out of 64-bit range" },
  { "md5 small number", OFFER_FIELDS (OK_V, OK_U, F_M ("1234"), OK_S), "md5sum: expected a string" },
  { "url ftp", OFFER_FIELDS (OK_V, F_U ("\"ftp://example.com/fw.bin\""), OK_M, OK_S), "url: scheme must be http or https" },
  { "url file", OFFER_FIELDS (OK_V, F_U ("\"file:///etc/passwd\""), OK_M, OK_S), "url: scheme must be http or https" },
  { "url javascript", OFFER_FIELDS (OK_V, F_U ("\"javascript:alert(1)\""), OK_M, OK_S), "url: scheme must be http or https" },
  { "url no host", OFFER_FIELDS (OK_V, F_U ("\"https:///fw.bin\""), OK_M, OK_S), "url: no host" },
  { "url scheme only", OFFER_FIELDS (OK_V, F_U ("\"https://\""), OK_M, OK_S), "url: no host" },
  { "url opaque", OFFER_FIELDS (OK_V, F_U ("\"https:fw.bin\""), OK_M, OK_S), "url: no host" },
  { "url relative", OFFER_FIELDS (OK_V, F_U ("\"/fw.bin\""), OK_M, OK_S), "url: not a valid URI" },
  { "url bad escape", OFFER_FIELDS (OK_V, F_U ("\"https://h/%zz\""), OK_M, OK_S), "url: not a valid URI" },
  { "url bad port", OFFER_FIELDS (OK_V, F_U ("\"https://h:99999/\""), OK_M, OK_S), "url: not a valid URI" },
  { "url space", OFFER_FIELDS (OK_V, F_U ("\"https://h/a b\""), OK_M, OK_S), "url: contains whitespace" },
  { "url tab", OFFER_FIELDS (OK_V, F_U ("\"https://h/a\\tb\""), OK_M, OK_S), "url: contains whitespace" },
  { "url newline", OFFER_FIELDS (OK_V, F_U ("\"https://h/\\r\\nHost: evil\""), OK_M, OK_S), "url: contains whitespace" },
  { "url empty", OFFER_FIELDS (OK_V, F_U ("\"\""), OK_M, OK_S), "url" },
  { "url object", OFFER_FIELDS (OK_V, F_U ("{}"), OK_M, OK_S), "url: expected a string, got an object" },
  { "file_size string", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("\"708482\"")), "file_size: expected an integer, got a string" },
  { "file_size 1.5", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("1.5")), "file_size: expected an integer, got a fractional number" },
  { "file_size 1e3", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("1e3")), "file_size: expected an integer" },
  { "file_size 1.0", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("1.0")), "file_size: expected an integer" },
  { "file_size bool", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("true")), "file_size: expected an integer, got a boolean" },
  { "file_size null", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("null")), "file_size: expected an integer, got null" },
  { "file_size negative", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("-1")), "file_size: must be at least 1" },
  { "file_size 0", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("0")), "file_size: must be at least 1" },
  { "file_size -0", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("-0")), "file_size: must be at least 1" },
  { "file_size over max", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("2147483649")), "file_size: 2147483649 exceeds max_firmware_size" },
  { "file_size int64 max", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("9223372036854775807")), "exceeds max_firmware_size" },
  /* json-glib alone would wrap these to -1 and 1. */
  { "file_size 2^64-1", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("18446744073709551615")), "integer out of 64-bit range" },
  { "file_size 2^64+1", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("18446744073709551617")), "integer out of 64-bit range" },
  /* json-glib alone would read these as 16 and 1. */
  { "file_size hex", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("0x10")), "invalid number" },
  { "file_size leading zero", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("01")), "invalid number" },
  { "file_size plus", OFFER_FIELDS (OK_V, OK_U, OK_M, F_S ("+1")), "unexpected character" },
  { "number overflow double", OFFER_WITH ("\"x\":1e999"), "number out of range" },
  { "single quotes", OFFER_FIELDS (F_V ("'0.2'"), OK_U, OK_M, OK_S), "unexpected character" },
  { "comment", OFFER_WITH ("/* hi */ \"x\":1"), "unexpected character" },
  { "bareword", OFFER_WITH ("\"x\":NaN"), "unexpected character" },
  { "bad literal", OFFER_WITH ("\"x\":nul"), "unknown literal" },
  { "lone surrogate", OFFER_WITH ("\"x\":\"\\udc00\""), "lone low surrogate" },
  { "lone high surrogate", OFFER_WITH ("\"x\":\"\\ud800x\""), "lone high surrogate" },
  { "bad escape", OFFER_WITH ("\"x\":\"\\q\""), "invalid escape" },
  { "raw control char", OFFER_WITH ("\"x\":\"a\001b\""), "control character" },
  { "invalid UTF-8", OFFER_WITH ("\"x\":\"\xff\xfe\""), "UTF-8" },
  { "overlong UTF-8", OFFER_WITH ("\"x\":\"\xc0\xaf\""), "UTF-8" },
  { "unbalanced", OFFER "}", "after the top-level object" },
  { "fw_type ../etc", OFFER_WITH ("\"fw_type\":\"../etc\""), "update_firmware: fw_type:" },
  { "fw_type ..", OFFER_WITH ("\"fw_type\":\"..\""), "fw_type" },
  { "fw_type slash", OFFER_WITH ("\"fw_type\":\"a/b\""), "fw_type" },
  { "fw_type number", OFFER_WITH ("\"fw_type\":1"), "fw_type: expected a string, got an integer" },
  { "fw_type null", OFFER_WITH ("\"fw_type\":null"), "fw_type: expected a string, got null" },
  { "task_id object", OFFER_WITH ("\"task_id\":{\"id\":1}"), "task_id: expected a string or an integer, got an object" },
  { "task_id bool", OFFER_WITH ("\"task_id\":false"), "task_id: expected a string or an integer" },
  { "task_id double", OFFER_WITH ("\"task_id\":1.5"), "task_id: expected a string or an integer" },
  { "task_id negative", OFFER_WITH ("\"task_id\":-7"), "task_id: must not be negative" },
  { "task_id empty", OFFER_WITH ("\"task_id\":\"\""), "task_id: expected 1..64" },
  { "task_id space", OFFER_WITH ("\"task_id\":\"a b\""), "task_id: expected 1..64" },
  { "task_id 65 chars", OFFER_WITH ("\"task_id\":\"12345678901234567890123456789012345678901234567890123456789012345\""), "task_id: expected 1..64" },
};

static void
assert_rejected (const char *name,
                 const char *data,
                 gsize length,
                 gint code,
                 const char *expect)
{
  OtaCloudMessage msg;
  g_autoptr(GError) error = NULL;
  gboolean ok;

  /* Garbage in, to check that a failure leaves the struct cleared. */
  memset (&msg, 0xa5, sizeof msg);
  ok = ota_protocol_parse (data, length, MAX_FW, &msg, &error);
  if (ok) {
    g_test_fail_printf ("%s: accepted", name);
    ota_cloud_message_clear (&msg);
    return;
  }
  if (!g_error_matches (error, G_IO_ERROR, code))
    g_test_fail_printf ("%s: wrong error %s", name, error != NULL ? error->message : "(none)");
  else if (strstr (error->message, expect) == NULL)
    g_test_fail_printf ("%s: error \"%s\" lacks \"%s\"", name, error->message, expect);
  if (!message_is_zeroed (&msg))
    g_test_fail_printf ("%s: message not cleared", name);
}

static void
test_parse_offer_rejected (void)
{
  G_STATIC_ASSERT (G_N_ELEMENTS (reject_cases) >= 25);

  for (gsize i = 0; i < G_N_ELEMENTS (reject_cases); i++) {
    const RejectCase *c = &reject_cases[i];

    assert_rejected (c->name, c->json, strlen (c->json), G_IO_ERROR_INVALID_DATA, c->expect);
  }
}

/* Cases too large or too binary for a string literal. */
static void
test_parse_offer_rejected_generated (void)
{
  g_autofree char *path = g_strnfill (OTA_PROTOCOL_MAX_URL_LEN + 1 - strlen ("https://h/"), 'a');
  g_autofree char *url = g_strdup_printf (OFFER_FIELDS (OK_V, F_U ("\"https://h/%s\""), OK_M, OK_S), path);
  g_autofree char *open = g_strnfill (30000, '[');
  g_autofree char *close = g_strnfill (30000, ']');
  g_autofree char *nested = g_strdup_printf (OFFER_WITH ("\"user_defined\":%s%s"), open, close);
  g_autofree char *brackets = g_strnfill (100000, '[');
  g_autofree char *objects = g_strnfill (60000, '{');
  gsize huge_len = 10 * 1024 * 1024;
  g_autofree char *huge = g_malloc (huge_len);
  static const char with_nul[] = "{\"type\":\"update_firmware\",\"version\":\"0.2\0../x\"}";

  memset (huge, ' ', huge_len);
  memcpy (huge, OFFER, strlen (OFFER));
  assert_rejected ("url 2049 bytes", url, strlen (url), G_IO_ERROR_INVALID_DATA, "url: longer than 2048");
  assert_rejected ("nested 30000", nested, strlen (nested), G_IO_ERROR_INVALID_DATA, "nested deeper");
  assert_rejected ("100000 [", brackets, strlen (brackets), G_IO_ERROR_INVALID_DATA, "exceeds the limit");
  assert_rejected ("60000 {", objects, strlen (objects), G_IO_ERROR_INVALID_DATA, "nested deeper");
  assert_rejected ("10 MB", huge, huge_len, G_IO_ERROR_INVALID_DATA, "exceeds the limit");
  assert_rejected ("NUL byte", with_nul, sizeof with_nul - 1, G_IO_ERROR_INVALID_DATA, "NUL");
  assert_rejected ("NULL data", NULL, 0, G_IO_ERROR_INVALID_DATA, "empty");
}

static void
test_parse_unsupported_type (void)
{
  assert_rejected ("report_version", "{\"type\":\"report_version\"}", 25, G_IO_ERROR_NOT_SUPPORTED,
                   "\"report_version\"");
  assert_rejected ("empty type", "{\"type\":\"\"}", 11, G_IO_ERROR_NOT_SUPPORTED, "\"\"");
  assert_rejected ("escaped", "{\"type\":\"a\\nb\"}", 15, G_IO_ERROR_NOT_SUPPORTED, "\"a\\nb\"");
}

/* A file_size of 0 can never pass, whatever the limit. */
static void
test_parse_respects_max_firmware_size (void)
{
  OtaCloudMessage msg;
  g_autoptr(GError) error = NULL;

  g_assert_false (ota_protocol_parse (OFFER, strlen (OFFER), 708481, &msg, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_nonnull (strstr (error->message, "708482 exceeds max_firmware_size 708481"));
  g_clear_error (&error);
  g_assert_true (ota_protocol_parse (OFFER, strlen (OFFER), 708482, &msg, &error));
  g_assert_no_error (error);
  ota_cloud_message_clear (&msg);
}

/* Random byte edits of a valid offer: never a crash, and whatever is
 * accepted satisfies every documented invariant. */
static void
test_parse_mutations (void)
{
  for (guint i = 0; i < 3000; i++) {
    g_autofree char *data = g_strdup (OFFER_WITH ("\"fw_type\":\"m\",\"task_id\":7,\"user_defined\":[1]"));
    gsize length = strlen (data);
    OtaCloudMessage msg;
    g_autoptr(GError) error = NULL;
    guint edits = (guint) g_test_rand_int_range (1, 4);

    for (guint e = 0; e < edits; e++)
      data[g_test_rand_int_range (0, (gint32) length)] = (char) g_test_rand_int_range (0, 256);
    if (ota_protocol_parse (data, (gsize) g_test_rand_int_range (0, (gint32) length + 1), MAX_FW, &msg,
                            &error)) {
      g_assert_no_error (error);
      if (msg.type == OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE) {
        g_assert_true (ota_protocol_version_is_valid (msg.offer.version));
        g_assert_true (ota_protocol_module_is_valid (msg.offer.module));
        g_assert_cmpuint (strlen (msg.offer.md5sum), ==, 32);
        g_assert_cmpuint (msg.offer.file_size, >=, 1);
        g_assert_cmpuint (msg.offer.file_size, <=, MAX_FW);
      }
      ota_cloud_message_clear (&msg);
    } else {
      g_assert_nonnull (error);
      g_assert_true (message_is_zeroed (&msg));
    }
  }
}

/* ---- report_version_rsp ---- */

static void
test_parse_ack_accepted (void)
{
  static const struct {
    const char *json;
    gint64 code;
    const char *msg;
    const char *version;
    const char *module;
  } cases[] = {
    { "{\"type\":\"report_version_rsp\",\"result_code\":0,\"result_msg\":\"success\",\"version\":\"0.1\"}",
      0, "success", "0.1", "" },
    { "{\"type\":\"report_version_rsp\",\"result_code\":-1}", -1, "", "", "" },
    { "{\"type\":\"report_version_rsp\",\"result_code\":\"0\",\"fw_type\":\"mcu\"}", 0, "", "", "mcu" },
    { "{\"type\":\"report_version_rsp\",\"result_code\":\"-1\",\"result_msg\":\"bad\",\"extra\":[]}",
      -1, "bad", "", "" },
    { "{\"type\":\"report_version_rsp\",\"result_code\":\"9223372036854775807\"}", G_MAXINT64, "", "", "" },
    { "{\"type\":\"report_version_rsp\",\"result_code\":1000,\"version\":\"v 1 ☃\"}", 1000, "", "v 1 ☃", "" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    OtaCloudMessage msg;
    g_autoptr(GError) error = NULL;

    g_assert_true (parse (cases[i].json, &msg, &error));
    g_assert_no_error (error);
    g_assert_cmpint (msg.type, ==, OTA_CLOUD_MESSAGE_REPORT_VERSION_RSP);
    g_assert_cmpint (msg.ack.result_code, ==, cases[i].code);
    g_assert_cmpstr (msg.ack.result_msg, ==, cases[i].msg);
    g_assert_cmpstr (msg.ack.version, ==, cases[i].version);
    g_assert_cmpstr (msg.ack.module, ==, cases[i].module);
    g_assert_null (msg.offer.version);
    ota_cloud_message_clear (&msg);
  }
}

static void
test_parse_ack_rejected (void)
{
  static const RejectCase cases[] = {
    { "abc", "{\"type\":\"report_version_rsp\",\"result_code\":\"abc\"}", "result_code: not a base-10 integer" },
    { "1.5", "{\"type\":\"report_version_rsp\",\"result_code\":1.5}", "result_code: expected an integer or a string" },
    { "\"1.5\"", "{\"type\":\"report_version_rsp\",\"result_code\":\"1.5\"}", "result_code: not a base-10" },
    { "\"\"", "{\"type\":\"report_version_rsp\",\"result_code\":\"\"}", "result_code: not a base-10" },
    { "\" 1\"", "{\"type\":\"report_version_rsp\",\"result_code\":\" 1\"}", "result_code: not a base-10" },
    { "\"1x\"", "{\"type\":\"report_version_rsp\",\"result_code\":\"1x\"}", "result_code: not a base-10" },
    { "\"0x1\"", "{\"type\":\"report_version_rsp\",\"result_code\":\"0x1\"}", "result_code: not a base-10" },
    { "overflow", "{\"type\":\"report_version_rsp\",\"result_code\":\"9223372036854775808\"}", "result_code: not a base-10" },
    { "missing", "{\"type\":\"report_version_rsp\",\"result_msg\":\"x\"}", "report_version_rsp: result_code: missing" },
    { "null", "{\"type\":\"report_version_rsp\",\"result_code\":null}", "result_code: expected an integer" },
    { "bool", "{\"type\":\"report_version_rsp\",\"result_code\":true}", "result_code: expected an integer" },
    { "msg number", "{\"type\":\"report_version_rsp\",\"result_code\":0,\"result_msg\":1}", "result_msg: expected a string" },
    { "version null", "{\"type\":\"report_version_rsp\",\"result_code\":0,\"version\":null}", "version: expected a string" },
    { "fw_type ../x", "{\"type\":\"report_version_rsp\",\"result_code\":0,\"fw_type\":\"../x\"}", "report_version_rsp: fw_type" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_rejected (cases[i].name, cases[i].json, strlen (cases[i].json), G_IO_ERROR_INVALID_DATA,
                     cases[i].expect);
}

/* ---- clearing and copying ---- */

static void
test_message_clear_twice (void)
{
  OtaCloudMessage msg;
  OtaCloudMessage zeroed = { 0 };

  parse_offer_ok (OFFER_WITH ("\"task_id\":\"t\",\"user_defined\":{}"), &msg);
  ota_cloud_message_clear (&msg);
  g_assert_true (message_is_zeroed (&msg));
  ota_cloud_message_clear (&msg);
  g_assert_true (message_is_zeroed (&msg));
  ota_cloud_message_clear (&zeroed);
  g_assert_true (message_is_zeroed (&zeroed));
  ota_cloud_message_clear (NULL);
}

static void
test_offer_copy (void)
{
  OtaCloudMessage msg;
  g_autoptr(OtaOffer) copy = NULL;

  parse_offer_ok (OFFER_WITH ("\"fw_type\":\"radio\",\"task_id\":12,\"user_defined\":\"u\""), &msg);
  copy = ota_offer_copy (&msg.offer);
  ota_cloud_message_clear (&msg);
  /* The copy owns its strings: the original is gone. */
  g_assert_cmpstr (copy->module, ==, "radio");
  g_assert_cmpstr (copy->version, ==, "0.2");
  g_assert_cmpstr (copy->url, ==, "https://example.com/fw.bin");
  g_assert_cmpstr (copy->md5sum, ==, MD5);
  g_assert_cmpuint (copy->file_size, ==, 708482);
  g_assert_cmpstr (copy->task_id, ==, "12");
  g_assert_true (copy->task_id_is_number);
  g_assert_cmpstr (copy->user_defined, ==, "\"u\"");
}

static void
test_offer_copy_sparse (void)
{
  OtaOffer empty = { 0 };
  g_autoptr(OtaOffer) copy = ota_offer_copy (&empty);

  g_assert_null (copy->version);
  g_assert_null (copy->task_id);
  ota_offer_clear (copy);
  ota_offer_clear (copy);
  g_assert_null (copy->module);
  ota_offer_free (NULL);
}

/* ---- validators ---- */

static void
test_version_is_valid (void)
{
  static const char *const valid[] = { "0.2", "a", "1.2.3-rc_1", "..a", "a..", "...", "-", "_",
                                       "12345678901234567890123456789012" };
  static const char *const invalid[] = { "", ".", "..", "../x", "a/b", "a b", "a\\b", "0.2\n", "é",
                                         "a:b", "123456789012345678901234567890123" };

  for (gsize i = 0; i < G_N_ELEMENTS (valid); i++)
    g_assert_true (ota_protocol_version_is_valid (valid[i]));
  for (gsize i = 0; i < G_N_ELEMENTS (invalid); i++)
    g_assert_false (ota_protocol_version_is_valid (invalid[i]));
  g_assert_false (ota_protocol_version_is_valid (NULL));
}

static void
test_module_is_valid (void)
{
  g_assert_true (ota_protocol_module_is_valid (""));
  g_assert_true (ota_protocol_module_is_valid ("mcu"));
  g_assert_false (ota_protocol_module_is_valid ("."));
  g_assert_false (ota_protocol_module_is_valid (".."));
  g_assert_false (ota_protocol_module_is_valid ("../etc"));
  g_assert_false (ota_protocol_module_is_valid ("m c"));
  g_assert_false (ota_protocol_module_is_valid (NULL));
}

static void
test_installed_version_is_valid (void)
{
  g_autofree char *max = g_strnfill (63, 'v');
  g_autofree char *over = g_strnfill (64, 'v');

  g_assert_true (ota_protocol_installed_version_is_valid ("V1.0(build:7)+x/y"));
  g_assert_true (ota_protocol_installed_version_is_valid ("~"));
  g_assert_true (ota_protocol_installed_version_is_valid (max));
  g_assert_false (ota_protocol_installed_version_is_valid (over));
  g_assert_false (ota_protocol_installed_version_is_valid (""));
  g_assert_false (ota_protocol_installed_version_is_valid ("1 0"));
  g_assert_false (ota_protocol_installed_version_is_valid ("1\t0"));
  g_assert_false (ota_protocol_installed_version_is_valid ("1\x7f"));
  g_assert_false (ota_protocol_installed_version_is_valid ("1.0é"));
  g_assert_false (ota_protocol_installed_version_is_valid (NULL));
}

/* ---- encoders ---- */

static void
assert_encoded (char *json, const char *expected)
{
  g_autofree char *owned = json;
  g_autoptr(JsonParser) parser = json_parser_new ();

  g_assert_cmpstr (owned, ==, expected);
  g_assert_true (json_parser_load_from_data (parser, owned, -1, NULL));
}

static void
test_encode_report_version (void)
{
  assert_encoded (ota_protocol_encode_report_version ("", "0.1"),
                  "{\"type\":\"report_version\",\"report\":{\"version\":\"0.1\"}}");
  assert_encoded (ota_protocol_encode_report_version (NULL, "0.1"),
                  "{\"type\":\"report_version\",\"report\":{\"version\":\"0.1\"}}");
  assert_encoded (ota_protocol_encode_report_version ("mcu", "0.1"),
                  "{\"type\":\"report_version\",\"report\":{\"version\":\"0.1\",\"fw_type\":\"mcu\"}}");
}

static void
test_encode_progress (void)
{
  OtaProgressReport downloading = { NULL, "0.2", "downloading", 10, 0, "", NULL, FALSE };
  OtaProgressReport burning = { "", "0.2", "burning", -1, 0, NULL, NULL, FALSE };
  OtaProgressReport done = { NULL, "0.2", "done", -1, 0, NULL, NULL, FALSE };
  OtaProgressReport fail = { NULL, "0.2", "fail", -1, OTA_RESULT_TIMEOUT, "time_out", NULL, FALSE };
  OtaProgressReport full = { "mcu", "0.2", "downloading", 100, 0, "", "job-1", FALSE };

  assert_encoded (ota_protocol_encode_progress (&downloading),
                  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"downloading\","
                  "\"percent\":\"10\",\"result_code\":\"0\",\"result_msg\":\"\"},\"version\":\"0.2\"}}");
  assert_encoded (ota_protocol_encode_progress (&burning),
                  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"burning\","
                  "\"result_code\":\"0\",\"result_msg\":\"\"},\"version\":\"0.2\"}}");
  assert_encoded (ota_protocol_encode_progress (&done),
                  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"done\","
                  "\"result_code\":\"0\",\"result_msg\":\"\"},\"version\":\"0.2\"}}");
  assert_encoded (ota_protocol_encode_progress (&fail),
                  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"fail\","
                  "\"result_code\":\"-1\",\"result_msg\":\"time_out\"},\"version\":\"0.2\"}}");
  assert_encoded (ota_protocol_encode_progress (&full),
                  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"downloading\","
                  "\"percent\":\"100\",\"result_code\":\"0\",\"result_msg\":\"\"},\"version\":\"0.2\","
                  "\"fw_type\":\"mcu\",\"task_id\":\"job-1\"}}");
}

/* Text from apps ends up in the report: it must stay one valid JSON string. */
static void
test_encode_progress_escapes (void)
{
  OtaProgressReport fail = { NULL, "0.2", "fail", 0, -5, "disk \"full\"\n\\", NULL, FALSE };
  g_autofree char *json = ota_protocol_encode_progress (&fail);
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonObject *progress;

  g_assert_true (json_parser_load_from_data (parser, json, -1, NULL));
  progress = json_object_get_object_member (
      json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)), "report"),
      "progress");
  g_assert_cmpstr (json_object_get_string_member (progress, "result_msg"), ==, "disk \"full\"\n\\");
  g_assert_cmpstr (json_object_get_string_member (progress, "percent"), ==, "0");
  g_assert_cmpstr (json_object_get_string_member (progress, "result_code"), ==, "-5");
}

/* A task_id goes back to the cloud exactly as it came, string or number. */
static void
test_round_trip_task_id (void)
{
  static const struct {
    const char *member;
    const char *echoed;
  } cases[] = {
    { "\"task_id\":\"t-1/2\"", ",\"task_id\":\"t-1/2\"" },
    { "\"task_id\":\"42\"", ",\"task_id\":\"42\"" },
    { "\"task_id\":42", ",\"task_id\":42" },
    { "\"task_id\":9223372036854775807", ",\"task_id\":9223372036854775807" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *json = g_strdup_printf (OFFER_WITH ("%s,\"fw_type\":\"mcu\""), cases[i].member);
    g_autofree char *expected = NULL;
    OtaCloudMessage msg;
    OtaProgressReport report = { 0 };

    parse_offer_ok (json, &msg);
    report.module = msg.offer.module;
    report.version = msg.offer.version;
    report.state = "done";
    report.percent = -1;
    report.task_id = msg.offer.task_id;
    report.task_id_is_number = msg.offer.task_id_is_number;
    expected = g_strconcat ("{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"done\","
                            "\"result_code\":\"0\",\"result_msg\":\"\"},\"version\":\"0.2\","
                            "\"fw_type\":\"mcu\"",
                            cases[i].echoed, "}}", NULL);
    assert_encoded (ota_protocol_encode_progress (&report), expected);
    ota_cloud_message_clear (&msg);
  }
}

/* A caller that flags a non-number keeps the id rather than inventing one. */
static void
test_encode_task_id_not_a_number (void)
{
  OtaProgressReport report = { NULL, "0.2", "done", -1, 0, NULL, "12a", TRUE };

  assert_encoded (ota_protocol_encode_progress (&report),
                  "{\"type\":\"report_progress\",\"report\":{\"progress\":{\"state\":\"done\","
                  "\"result_code\":\"0\",\"result_msg\":\"\"},\"version\":\"0.2\",\"task_id\":\"12a\"}}");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/protocol/parse/update-firmware/minimal", test_parse_offer_minimal);
  g_test_add_func ("/protocol/parse/update-firmware/all-fields", test_parse_offer_all_fields);
  g_test_add_func ("/protocol/parse/update-firmware/user-defined-any-value",
                   test_parse_offer_user_defined_scalars);
  g_test_add_func ("/protocol/parse/update-firmware/not-nul-terminated",
                   test_parse_offer_not_nul_terminated);
  g_test_add_func ("/protocol/parse/update-firmware/md5-lowercased", test_parse_offer_md5_lowercased);
  g_test_add_func ("/protocol/parse/update-firmware/unknown-fields-ignored",
                   test_parse_offer_unknown_fields);
  g_test_add_func ("/protocol/parse/update-firmware/task-id-number", test_parse_offer_task_id_number);
  g_test_add_func ("/protocol/parse/update-firmware/boundaries-accepted", test_parse_offer_boundaries);
  g_test_add_func ("/protocol/parse/update-firmware/url-kept-verbatim",
                   test_parse_offer_url_kept_verbatim);
  g_test_add_func ("/protocol/parse/update-firmware/long-presigned-url-accepted",
                   test_parse_offer_near_size_limit);
  g_test_add_func ("/protocol/parse/update-firmware/big-user-defined-accepted",
                   test_parse_offer_big_user_defined);
  g_test_add_func ("/protocol/parse/update-firmware/max-firmware-size",
                   test_parse_respects_max_firmware_size);
  g_test_add_func ("/protocol/parse/update-firmware/rejected", test_parse_offer_rejected);
  g_test_add_func ("/protocol/parse/update-firmware/rejected-generated",
                   test_parse_offer_rejected_generated);
  g_test_add_func ("/protocol/parse/size-limit-is-64-kib", test_parse_size_limit_exact);
  g_test_add_func ("/protocol/parse/depth-limit", test_parse_depth_limit);
  g_test_add_func ("/protocol/parse/unsupported-type", test_parse_unsupported_type);
  g_test_add_func ("/protocol/parse/mutations-never-break-invariants", test_parse_mutations);
  g_test_add_func ("/protocol/parse/report-version-rsp/accepted", test_parse_ack_accepted);
  g_test_add_func ("/protocol/parse/report-version-rsp/rejected", test_parse_ack_rejected);
  g_test_add_func ("/protocol/message/clear-twice", test_message_clear_twice);
  g_test_add_func ("/protocol/offer/copy-owns-strings", test_offer_copy);
  g_test_add_func ("/protocol/offer/copy-sparse", test_offer_copy_sparse);
  g_test_add_func ("/protocol/validate/version", test_version_is_valid);
  g_test_add_func ("/protocol/validate/module", test_module_is_valid);
  g_test_add_func ("/protocol/validate/installed-version", test_installed_version_is_valid);
  g_test_add_func ("/protocol/encode/report-version", test_encode_report_version);
  g_test_add_func ("/protocol/encode/progress", test_encode_progress);
  g_test_add_func ("/protocol/encode/progress-escapes-text", test_encode_progress_escapes);
  g_test_add_func ("/protocol/encode/task-id-not-a-number", test_encode_task_id_not_a_number);
  g_test_add_func ("/protocol/round-trip/task-id", test_round_trip_task_id);

  return g_test_run ();
}
