/* The Tencent IoT $ota wire protocol (docs/protocol.md): decoding and validation of
 * cloud messages, encoding of device reports. Pure: no I/O, no global state. */
#include "protocol.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* user_defined is opaque (docs/protocol.md): whatever fits in a message is passed
 * on; the bound only guards the re-serialised text. */
#define OTA_PROTOCOL_MAX_USER_DEFINED_LEN OTA_PROTOCOL_MAX_MESSAGE_SIZE
#define OTA_PROTOCOL_MAX_INSTALLED_VERSION_LEN 63
#define OTA_PROTOCOL_MD5_HEX_LEN 32
/* Real messages nest three levels; json-glib recurses once per level, so a
 * limit keeps a message of 60000 '[' from exhausting the stack. */
#define OTA_PROTOCOL_MAX_JSON_DEPTH 64
/* Only this much of an unknown type is quoted back in the error. */
#define OTA_PROTOCOL_MAX_QUOTED_TYPE 64

static void ota_version_ack_clear (OtaVersionAck *ack);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaOffer, ota_offer_clear)
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaVersionAck, ota_version_ack_clear)

/* ---- name and value validation ---- */

static gboolean
is_name_char (char c)
{
  return g_ascii_isalnum (c) || c == '.' || c == '_' || c == '-';
}

/* Visible ASCII only (0x21..0x7e): no spaces, controls or multi-byte text. */
static gboolean
is_visible_ascii (const char *text, gsize max_len)
{
  gsize len;

  if (text == NULL)
    return FALSE;
  len = strnlen (text, max_len + 1);
  if (len == 0 || len > max_len)
    return FALSE;
  for (gsize i = 0; i < len; i++) {
    if (!g_ascii_isgraph (text[i]))
      return FALSE;
  }
  return TRUE;
}

gboolean
ota_protocol_version_is_valid (const char *version)
{
  if (!is_visible_ascii (version, OTA_PROTOCOL_MAX_VERSION_LEN))
    return FALSE;
  /* It becomes a file name component: "." and ".." would escape it. */
  if (strcmp (version, ".") == 0 || strcmp (version, "..") == 0)
    return FALSE;
  for (const char *p = version; *p != '\0'; p++) {
    if (!is_name_char (*p))
      return FALSE;
  }
  return TRUE;
}

gboolean
ota_protocol_module_is_valid (const char *module)
{
  if (module == NULL)
    return FALSE;
  return module[0] == '\0' || ota_protocol_version_is_valid (module);
}

gboolean
ota_protocol_installed_version_is_valid (const char *version)
{
  return is_visible_ascii (version, OTA_PROTOCOL_MAX_INSTALLED_VERSION_LEN);
}

const char *
ota_protocol_module_label (const char *module)
{
  g_return_val_if_fail (module != NULL, NULL);
  return *module == '\0' ? "(main)" : module;
}

gboolean
ota_protocol_md5sum_is_valid (const char *md5sum)
{
  g_return_val_if_fail (md5sum != NULL, FALSE);
  if (strlen (md5sum) != OTA_PROTOCOL_MD5_HEX_LEN)
    return FALSE;
  for (const char *p = md5sum; *p != '\0'; p++) {
    if (!g_ascii_isdigit (*p) && !(*p >= 'a' && *p <= 'f'))
      return FALSE;
  }
  return TRUE;
}

/* Returns why @url is unacceptable, or NULL. */
static const char *
url_problem (const char *url)
{
  g_autoptr(GUri) uri = NULL;
  const char *scheme;
  const char *host;

  if (strlen (url) > OTA_PROTOCOL_MAX_URL_LEN)
    return "longer than 2048 bytes";
  for (const char *p = url; *p != '\0'; p++) {
    if (!g_ascii_isgraph (*p))
      return "contains whitespace, control or non-ASCII characters";
  }
  /* The flags libsoup 3 parses HTTP URIs with: whatever passes here, the
   * downloader can request, and %-escapes stay as the signer wrote them. */
  uri = g_uri_parse (url,
                     G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED_PATH |
                         G_URI_FLAGS_ENCODED_QUERY | G_URI_FLAGS_ENCODED_FRAGMENT,
                     NULL);
  if (uri == NULL)
    return "not a valid URI";
  scheme = g_uri_get_scheme (uri);
  if (g_ascii_strcasecmp (scheme, "http") != 0 && g_ascii_strcasecmp (scheme, "https") != 0)
    return "scheme must be http or https";
  host = g_uri_get_host (uri);
  if (host == NULL || host[0] == '\0')
    return "no host";
  return NULL;
}

/* ---- lexical pre-check ---- */

/* json-glib 1.6 is lenient where a hostile message could hurt: it recurses
 * per nesting level, wraps integers beyond 64 bits (2^64 + 1 reads as 1),
 * reads hex and leading zeros, cuts strings at \u0000, lets lone surrogates
 * through as invalid UTF-8 and accepts single quotes. One strict lexical pass
 * over the bytes rejects all that; json-glib then checks the grammar. */
typedef struct {
  const char *p;
  const char *end;
  const char *start;
  guint depth;
  gboolean closed;
} JsonScan;

static gboolean G_GNUC_PRINTF (3, 4)
scan_error (const JsonScan *scan, GError **error, const char *format, ...)
{
  g_autofree char *why = NULL;
  va_list args;

  va_start (args, format);
  why = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "malformed JSON at byte %td: %s",
               scan->p - scan->start, why);
  return FALSE;
}

static gboolean
is_json_space (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Reads the 4 hex digits after "\u" into @unit. */
static gboolean
scan_hex4 (JsonScan *scan, guint *unit, GError **error)
{
  *unit = 0;
  if (scan->end - scan->p < 4)
    return scan_error (scan, error, "truncated \\u escape");
  for (int i = 0; i < 4; i++, scan->p++) {
    if (!g_ascii_isxdigit (*scan->p))
      return scan_error (scan, error, "invalid \\u escape");
    *unit = (*unit << 4) | (guint) g_ascii_xdigit_value (*scan->p);
  }
  return TRUE;
}

/* After "\u": one code point, a surrogate pair counting as one. */
static gboolean
scan_unicode_escape (JsonScan *scan, GError **error)
{
  guint unit;
  guint low;

  if (!scan_hex4 (scan, &unit, error))
    return FALSE;
  if (unit == 0)
    return scan_error (scan, error, "\\u0000 in a string");
  if (unit >= 0xdc00 && unit <= 0xdfff)
    return scan_error (scan, error, "lone low surrogate");
  if (unit < 0xd800 || unit > 0xdbff)
    return TRUE;
  if (scan->end - scan->p < 2 || scan->p[0] != '\\' || scan->p[1] != 'u')
    return scan_error (scan, error, "lone high surrogate");
  scan->p += 2;
  if (!scan_hex4 (scan, &low, error))
    return FALSE;
  if (low < 0xdc00 || low > 0xdfff)
    return scan_error (scan, error, "lone high surrogate");
  return TRUE;
}

/* At the backslash of an escape inside a string. */
static gboolean
scan_escape (JsonScan *scan, GError **error)
{
  scan->p++;
  if (scan->p == scan->end)
    return scan_error (scan, error, "unterminated string");
  switch (*scan->p++) {
  case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
    return TRUE;
  case 'u':
    return scan_unicode_escape (scan, error);
  default:
    scan->p--;
    return scan_error (scan, error, "invalid escape");
  }
}

/* At the opening quote. */
static gboolean
scan_string (JsonScan *scan, GError **error)
{
  for (scan->p++; scan->p < scan->end;) {
    guchar c = (guchar) *scan->p;

    if (c == '"') {
      scan->p++;
      return TRUE;
    }
    if (c < 0x20)
      return scan_error (scan, error, "control character in a string");
    if (c == '\\') {
      if (!scan_escape (scan, error))
        return FALSE;
    } else {
      scan->p++;
    }
  }
  return scan_error (scan, error, "unterminated string");
}

static const char *
skip_digits (const char *p, const char *end)
{
  while (p < end && g_ascii_isdigit (*p))
    p++;
  return p;
}

/* Strict JSON number grammar; returns the end of the number, or NULL. */
static const char *
match_number (const char *p, const char *end, gboolean *is_integer)
{
  const char *q;

  *is_integer = TRUE;
  if (p < end && *p == '-')
    p++;
  if (p < end && *p == '0')
    p++;
  else if ((q = skip_digits (p, end)) != p)
    p = q;
  else
    return NULL;
  if (p < end && *p == '.') {
    *is_integer = FALSE;
    if ((q = skip_digits (p + 1, end)) == p + 1)
      return NULL;
    p = q;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    *is_integer = FALSE;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if ((q = skip_digits (p, end)) == p)
      return NULL;
    p = q;
  }
  return p;
}

static gboolean
scan_number (JsonScan *scan, GError **error)
{
  gboolean is_integer;
  const char *end = match_number (scan->p, scan->end, &is_integer);
  g_autofree char *token = NULL;

  /* A number ends at a delimiter: "0x10", "01" and "1true" are not JSON. */
  if (end == NULL || (end < scan->end && !is_json_space (*end) && *end != ',' && *end != ']' &&
                      *end != '}'))
    return scan_error (scan, error, "invalid number");
  token = g_strndup (scan->p, (gsize) (end - scan->p));
  if (is_integer && !g_ascii_string_to_signed (token, 10, G_MININT64, G_MAXINT64, NULL, NULL))
    return scan_error (scan, error, "integer out of 64-bit range");
  if (!is_integer && !isfinite (g_ascii_strtod (token, NULL)))
    return scan_error (scan, error, "number out of range");
  scan->p = end;
  return TRUE;
}

static gboolean
scan_literal (JsonScan *scan, GError **error)
{
  static const char *const literals[] = { "true", "false", "null" };
  const char *end = scan->p;

  while (end < scan->end && g_ascii_islower (*end))
    end++;
  for (gsize i = 0; i < G_N_ELEMENTS (literals); i++) {
    if ((gsize) (end - scan->p) == strlen (literals[i]) &&
        memcmp (scan->p, literals[i], (gsize) (end - scan->p)) == 0) {
      scan->p = end;
      return TRUE;
    }
  }
  return scan_error (scan, error, "unknown literal");
}

static gboolean
scan_bracket (JsonScan *scan, GError **error)
{
  char c = *scan->p;

  if (c == '{' || c == '[') {
    if (++scan->depth > OTA_PROTOCOL_MAX_JSON_DEPTH)
      return scan_error (scan, error, "nested deeper than %d levels", OTA_PROTOCOL_MAX_JSON_DEPTH);
  } else {
    if (scan->depth == 0)
      return scan_error (scan, error, "unbalanced '%c'", c);
    scan->closed = (--scan->depth == 0);
  }
  scan->p++;
  return TRUE;
}

static gboolean
scan_token (JsonScan *scan, GError **error)
{
  char c = *scan->p;

  if (scan->closed)
    return scan_error (scan, error, "data after the top-level object");
  if (c == '"')
    return scan_string (scan, error);
  if (c == '-' || g_ascii_isdigit (c))
    return scan_number (scan, error);
  if (g_ascii_islower (c))
    return scan_literal (scan, error);
  if (c == '{' || c == '}' || c == '[' || c == ']')
    return scan_bracket (scan, error);
  if (c == ':' || c == ',') {
    scan->p++;
    return TRUE;
  }
  return scan_error (scan, error, "unexpected character 0x%02x", (guchar) c);
}

/* @data is valid UTF-8 without NUL bytes. */
static gboolean
json_precheck (const char *data, gsize length, GError **error)
{
  JsonScan scan = { data, data + length, data, 0, FALSE };

  while (scan.p < scan.end && is_json_space (*scan.p))
    scan.p++;
  if (scan.p == scan.end || *scan.p != '{')
    return scan_error (&scan, error, "the message is not a JSON object");
  while (scan.p < scan.end) {
    if (is_json_space (*scan.p))
      scan.p++;
    else if (!scan_token (&scan, error))
      return FALSE;
  }
  if (!scan.closed)
    return scan_error (&scan, error, "truncated");
  return TRUE;
}

/* ---- field access ---- */

static gboolean G_GNUC_PRINTF (4, 5)
field_error (GError **error, const char *context, const char *field, const char *format, ...)
{
  g_autofree char *why = NULL;
  va_list args;

  va_start (args, format);
  why = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s: %s", context, field, why);
  return FALSE;
}

static const char *
describe_node (JsonNode *node)
{
  switch (json_node_get_node_type (node)) {
  case JSON_NODE_OBJECT:
    return "an object";
  case JSON_NODE_ARRAY:
    return "an array";
  case JSON_NODE_NULL:
    return "null";
  case JSON_NODE_VALUE:
  default:
    break;
  }
  switch (json_node_get_value_type (node)) {
  case G_TYPE_STRING:
    return "a string";
  case G_TYPE_INT64:
    return "an integer";
  case G_TYPE_DOUBLE:
    return "a fractional number";
  case G_TYPE_BOOLEAN:
    return "a boolean";
  default:
    return "an unknown value";
  }
}

static gboolean
node_holds (JsonNode *node, GType type)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

/* Sets @value to NULL when @name is absent and not @required. */
static gboolean
get_string (JsonObject *object, const char *context, const char *name, gboolean required,
            const char **value, GError **error)
{
  JsonNode *node = json_object_get_member (object, name);

  *value = NULL;
  if (node == NULL)
    return required ? field_error (error, context, name, "missing") : TRUE;
  if (!node_holds (node, G_TYPE_STRING))
    return field_error (error, context, name, "expected a string, got %s", describe_node (node));
  *value = json_node_get_string (node);
  return TRUE;
}

/* "" when absent (main firmware); the name may become a path component. */
static gboolean
read_module (JsonObject *object, const char *context, char **module, GError **error)
{
  const char *value;

  if (!get_string (object, context, "fw_type", FALSE, &value, error))
    return FALSE;
  if (value != NULL && !ota_protocol_module_is_valid (value))
    return field_error (error, context, "fw_type", "expected 1..%d characters of [A-Za-z0-9._-]",
                        OTA_PROTOCOL_MAX_VERSION_LEN);
  *module = g_strdup (value != NULL ? value : "");
  return TRUE;
}

/* ---- update_firmware ---- */

#define UPDATE_FIRMWARE "update_firmware"

static gboolean
read_version (JsonObject *object, OtaOffer *offer, GError **error)
{
  const char *value;

  if (!get_string (object, UPDATE_FIRMWARE, "version", TRUE, &value, error))
    return FALSE;
  if (!ota_protocol_version_is_valid (value))
    return field_error (error, UPDATE_FIRMWARE, "version",
                        "expected 1..%d characters of [A-Za-z0-9._-], not \".\" or \"..\"",
                        OTA_PROTOCOL_MAX_VERSION_LEN);
  offer->version = g_strdup (value);
  return TRUE;
}

static gboolean
read_url (JsonObject *object, OtaOffer *offer, GError **error)
{
  const char *value;
  const char *problem;

  if (!get_string (object, UPDATE_FIRMWARE, "url", TRUE, &value, error))
    return FALSE;
  problem = url_problem (value);
  if (problem != NULL)
    return field_error (error, UPDATE_FIRMWARE, "url", "%s", problem);
  /* Kept verbatim: a presigned URL's signature covers its exact bytes. */
  offer->url = g_strdup (value);
  return TRUE;
}

static gboolean
read_md5sum (JsonObject *object, OtaOffer *offer, GError **error)
{
  const char *value;
  g_autofree char *lower = NULL;

  if (!get_string (object, UPDATE_FIRMWARE, "md5sum", TRUE, &value, error))
    return FALSE;
  /* The cloud may write either case; inside the agent an MD5 is lowercase. */
  lower = g_ascii_strdown (value, -1);
  if (!ota_protocol_md5sum_is_valid (lower))
    return field_error (error, UPDATE_FIRMWARE, "md5sum", "expected %d hex digits",
                        OTA_PROTOCOL_MD5_HEX_LEN);
  offer->md5sum = g_steal_pointer (&lower);
  return TRUE;
}

static gboolean
read_file_size (JsonObject *object, guint64 max_firmware_size, OtaOffer *offer, GError **error)
{
  JsonNode *node = json_object_get_member (object, "file_size");
  gint64 size;

  if (node == NULL)
    return field_error (error, UPDATE_FIRMWARE, "file_size", "missing");
  if (!node_holds (node, G_TYPE_INT64))
    return field_error (error, UPDATE_FIRMWARE, "file_size", "expected an integer, got %s",
                        describe_node (node));
  size = json_node_get_int (node);
  if (size < 1)
    return field_error (error, UPDATE_FIRMWARE, "file_size",
                        "must be at least 1, got %" G_GINT64_FORMAT, size);
  if ((guint64) size > max_firmware_size)
    return field_error (error, UPDATE_FIRMWARE, "file_size",
                        "%" G_GINT64_FORMAT " exceeds max_firmware_size %" G_GUINT64_FORMAT, size,
                        max_firmware_size);
  offer->file_size = (guint64) size;
  return TRUE;
}

/* Echoed back in reports, so it must survive a round trip unchanged. */
static gboolean
read_task_id (JsonObject *object, OtaOffer *offer, GError **error)
{
  JsonNode *node = json_object_get_member (object, "task_id");

  if (node == NULL)
    return TRUE;
  if (node_holds (node, G_TYPE_INT64)) {
    if (json_node_get_int (node) < 0)
      return field_error (error, UPDATE_FIRMWARE, "task_id", "must not be negative");
    offer->task_id = g_strdup_printf ("%" G_GINT64_FORMAT, json_node_get_int (node));
    offer->task_id_is_number = TRUE;
    return TRUE;
  }
  if (!node_holds (node, G_TYPE_STRING))
    return field_error (error, UPDATE_FIRMWARE, "task_id",
                        "expected a string or an integer, got %s", describe_node (node));
  if (!is_visible_ascii (json_node_get_string (node), OTA_PROTOCOL_MAX_TASK_ID_LEN))
    return field_error (error, UPDATE_FIRMWARE, "task_id",
                        "expected 1..%d visible ASCII characters", OTA_PROTOCOL_MAX_TASK_ID_LEN);
  offer->task_id = g_strdup (json_node_get_string (node));
  return TRUE;
}

static gboolean
read_user_defined (JsonObject *object, OtaOffer *offer, GError **error)
{
  JsonNode *node = json_object_get_member (object, "user_defined");
  g_autofree char *text = NULL;

  if (node == NULL)
    return TRUE;
  text = json_to_string (node, FALSE);
  if (strlen (text) > OTA_PROTOCOL_MAX_USER_DEFINED_LEN)
    return field_error (error, UPDATE_FIRMWARE, "user_defined", "longer than %d bytes",
                        OTA_PROTOCOL_MAX_USER_DEFINED_LEN);
  offer->user_defined = g_steal_pointer (&text);
  return TRUE;
}

static gboolean
parse_update_firmware (JsonObject *root, guint64 max_firmware_size, OtaCloudMessage *msg,
                       GError **error)
{
  g_auto (OtaOffer) offer = { 0 };

  if (!read_version (root, &offer, error) || !read_url (root, &offer, error) ||
      !read_md5sum (root, &offer, error) ||
      !read_file_size (root, max_firmware_size, &offer, error) ||
      !read_module (root, UPDATE_FIRMWARE, &offer.module, error) ||
      !read_task_id (root, &offer, error) || !read_user_defined (root, &offer, error))
    return FALSE;
  msg->type = OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE;
  msg->offer = offer;
  memset (&offer, 0, sizeof offer);
  return TRUE;
}

/* ---- report_version_rsp ---- */

#define REPORT_VERSION_RSP "report_version_rsp"

/* The cloud has sent both 0 and "0". */
static gboolean
read_result_code (JsonObject *object, OtaVersionAck *ack, GError **error)
{
  JsonNode *node = json_object_get_member (object, "result_code");

  if (node == NULL)
    return field_error (error, REPORT_VERSION_RSP, "result_code", "missing");
  if (node_holds (node, G_TYPE_INT64)) {
    ack->result_code = json_node_get_int (node);
    return TRUE;
  }
  if (!node_holds (node, G_TYPE_STRING))
    return field_error (error, REPORT_VERSION_RSP, "result_code",
                        "expected an integer or a string of digits, got %s", describe_node (node));
  if (!g_ascii_string_to_signed (json_node_get_string (node), 10, G_MININT64, G_MAXINT64,
                                 &ack->result_code, NULL))
    return field_error (error, REPORT_VERSION_RSP, "result_code", "not a base-10 integer");
  return TRUE;
}

static gboolean
read_optional_text (JsonObject *object, const char *name, char **out, GError **error)
{
  const char *value;

  if (!get_string (object, REPORT_VERSION_RSP, name, FALSE, &value, error))
    return FALSE;
  *out = g_strdup (value != NULL ? value : "");
  return TRUE;
}

static gboolean
parse_report_version_rsp (JsonObject *root, OtaCloudMessage *msg, GError **error)
{
  g_auto (OtaVersionAck) ack = { 0 };

  if (!read_result_code (root, &ack, error) ||
      !read_optional_text (root, "result_msg", &ack.result_msg, error) ||
      !read_optional_text (root, "version", &ack.version, error) ||
      !read_module (root, REPORT_VERSION_RSP, &ack.module, error))
    return FALSE;
  msg->type = OTA_CLOUD_MESSAGE_REPORT_VERSION_RSP;
  msg->ack = ack;
  memset (&ack, 0, sizeof ack);
  return TRUE;
}

/* ---- parse ---- */

static gboolean
check_raw_message (const char *data, gsize length, GError **error)
{
  if (length > OTA_PROTOCOL_MAX_MESSAGE_SIZE) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "message of %" G_GSIZE_FORMAT " bytes exceeds the limit of %d", length,
                 OTA_PROTOCOL_MAX_MESSAGE_SIZE);
    return FALSE;
  }
  if (length == 0) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "empty message");
    return FALSE;
  }
  /* Checked apart from UTF-8 for a clearer log line. */
  if (memchr (data, '\0', length) != NULL) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "NUL byte in the message");
    return FALSE;
  }
  if (!g_utf8_validate_len (data, length, NULL)) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "message is not valid UTF-8");
    return FALSE;
  }
  return json_precheck (data, length, error);
}

static JsonParser *
load_json (const char *data, gsize length, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  g_autoptr(GError) local_error = NULL;

  if (!check_raw_message (data, length, error))
    return NULL;
  if (!json_parser_load_from_data (parser, data, (gssize) length, &local_error)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "malformed JSON: %s",
                 local_error->message);
    return NULL;
  }
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                         "the message is not a JSON object");
    return NULL;
  }
  return g_steal_pointer (&parser);
}

static gboolean
unsupported_type (const char *type, GError **error)
{
  g_autofree char *head = g_strndup (type, OTA_PROTOCOL_MAX_QUOTED_TYPE);
  g_autofree char *quoted = g_strescape (head, NULL);

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "unsupported message type \"%s\"",
               quoted);
  return FALSE;
}

gboolean
ota_protocol_parse (const char *data,
                    gsize length,
                    guint64 max_firmware_size,
                    OtaCloudMessage *msg,
                    GError **error)
{
  g_autoptr(JsonParser) parser = NULL;
  JsonObject *root;
  const char *type;

  g_return_val_if_fail (msg != NULL, FALSE);
  /* Caller-allocated and possibly uninitialised: start from a cleared struct. */
  memset (msg, 0, sizeof *msg);
  g_return_val_if_fail (data != NULL || length == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  parser = load_json (data, length, error);
  if (parser == NULL)
    return FALSE;
  root = json_node_get_object (json_parser_get_root (parser));
  if (!get_string (root, "message", "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "update_firmware") == 0)
    return parse_update_firmware (root, max_firmware_size, msg, error);
  if (strcmp (type, "report_version_rsp") == 0)
    return parse_report_version_rsp (root, msg, error);
  return unsupported_type (type, error);
}

static void
ota_version_ack_clear (OtaVersionAck *ack)
{
  g_clear_pointer (&ack->module, g_free);
  g_clear_pointer (&ack->result_msg, g_free);
  g_clear_pointer (&ack->version, g_free);
  ack->result_code = 0;
}

void
ota_cloud_message_clear (OtaCloudMessage *msg)
{
  if (msg == NULL)
    return;
  /* Both parts: a zeroed part frees nothing, so the type need not be trusted. */
  ota_offer_clear (&msg->offer);
  ota_version_ack_clear (&msg->ack);
  msg->type = OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE;
}

/* ---- offers ---- */

OtaOffer *
ota_offer_copy (const OtaOffer *offer)
{
  OtaOffer *copy;

  g_return_val_if_fail (offer != NULL, NULL);

  copy = g_new0 (OtaOffer, 1);
  copy->module = g_strdup (offer->module);
  copy->version = g_strdup (offer->version);
  copy->url = g_strdup (offer->url);
  copy->md5sum = g_strdup (offer->md5sum);
  copy->file_size = offer->file_size;
  copy->task_id = g_strdup (offer->task_id);
  copy->task_id_is_number = offer->task_id_is_number;
  copy->user_defined = g_strdup (offer->user_defined);
  return copy;
}

void
ota_offer_clear (OtaOffer *offer)
{
  if (offer == NULL)
    return;
  g_free (offer->module);
  g_free (offer->version);
  g_free (offer->url);
  g_free (offer->md5sum);
  g_free (offer->task_id);
  g_free (offer->user_defined);
  memset (offer, 0, sizeof *offer);
}

void
ota_offer_free (OtaOffer *offer)
{
  if (offer == NULL)
    return;
  ota_offer_clear (offer);
  g_free (offer);
}

/* ---- encoding ---- */

static char *
builder_to_json (JsonBuilder *builder)
{
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (builder);

  json_generator_set_root (generator, root);
  return json_generator_to_data (generator, NULL);
}

static void
add_string (JsonBuilder *builder, const char *name, const char *value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_string_value (builder, value);
}

/* "version", then "fw_type" for any module but the main firmware. */
static void
add_version_and_module (JsonBuilder *builder, const char *version, const char *module)
{
  add_string (builder, "version", version);
  if (module != NULL && module[0] != '\0')
    add_string (builder, "fw_type", module);
}

static void
add_task_id (JsonBuilder *builder, const char *task_id, gboolean is_number)
{
  gint64 number;

  json_builder_set_member_name (builder, "task_id");
  /* Echo the cloud's own type; text that is no number stays a string
   * rather than turning into a different id. */
  if (is_number && g_ascii_string_to_signed (task_id, 10, 0, G_MAXINT64, &number, NULL))
    json_builder_add_int_value (builder, number);
  else
    json_builder_add_string_value (builder, task_id);
}

char *
ota_protocol_encode_report_version (const char *module, const char *version)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();

  g_return_val_if_fail (version != NULL, NULL);

  json_builder_begin_object (builder);
  add_string (builder, "type", "report_version");
  json_builder_set_member_name (builder, "report");
  json_builder_begin_object (builder);
  add_version_and_module (builder, version, module);
  json_builder_end_object (builder);
  json_builder_end_object (builder);
  return builder_to_json (builder);
}

static void
add_progress (JsonBuilder *builder, const OtaProgressReport *report)
{
  g_autofree char *result_code = g_strdup_printf ("%d", report->result_code);

  json_builder_set_member_name (builder, "progress");
  json_builder_begin_object (builder);
  add_string (builder, "state", report->state);
  if (report->percent >= 0) {
    g_autofree char *percent = g_strdup_printf ("%d", report->percent);

    add_string (builder, "percent", percent);
  }
  add_string (builder, "result_code", result_code);
  add_string (builder, "result_msg", report->result_msg != NULL ? report->result_msg : "");
  json_builder_end_object (builder);
}

char *
ota_protocol_encode_progress (const OtaProgressReport *report)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();

  g_return_val_if_fail (report != NULL, NULL);
  g_return_val_if_fail (report->version != NULL, NULL);
  g_return_val_if_fail (report->state != NULL, NULL);

  json_builder_begin_object (builder);
  add_string (builder, "type", "report_progress");
  json_builder_set_member_name (builder, "report");
  json_builder_begin_object (builder);
  add_progress (builder, report);
  add_version_and_module (builder, report->version, report->module);
  if (report->task_id != NULL)
    add_task_id (builder, report->task_id, report->task_id_is_number);
  json_builder_end_object (builder);
  json_builder_end_object (builder);
  return builder_to_json (builder);
}

