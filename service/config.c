/* The agent's key-file configuration (docs/configuration.md).
 *
 * Parsing is strict in the RAUC way: every known key is removed from the
 * GKeyFile once read, so whatever is left afterwards is a typo or an option
 * this version does not know, and is reported instead of silently ignored.
 * Errors are in the G_KEY_FILE_ERROR domain and name "[group] key". */
#include "config.h"
#include "network.h"
#include "protocol.h"
#include "topic-rules.h"

#include <string.h>

#define NAME_MAX_LENGTH 64

typedef enum {
  KEY_STRING,
  KEY_BOOLEAN,
  KEY_UINT,
  KEY_UINT64,
} KeyType;

/* Validates an already unescaped, control-character-free string value.
 * The message it sets is prefixed with "[group] key: " by the caller. */
typedef gboolean (*StringCheck) (const char *value, GError **error);

typedef struct {
  const char *group;
  const char *key;
  KeyType type;
  gsize offset; /* of the field in OtaConfig */
  guint64 min;  /* integers only */
  guint64 max;
  StringCheck check; /* strings only, may be NULL */
} KeySpec;

static gboolean check_not_empty (const char *value, GError **error);
static gboolean check_product_id (const char *value, GError **error);
static gboolean check_device_name (const char *value, GError **error);
static gboolean check_base64 (const char *value, GError **error);
static gboolean check_absolute_path (const char *value, GError **error);
static gboolean check_proxy (const char *value, GError **error);
static gboolean check_key_list (const char *value, GError **error);

#define STRING_KEY(group, key, field, check) \
  { group, key, KEY_STRING, G_STRUCT_OFFSET (OtaConfig, field), 0, 0, check }
#define BOOLEAN_KEY(group, key, field) \
  { group, key, KEY_BOOLEAN, G_STRUCT_OFFSET (OtaConfig, field), 0, 0, NULL }
#define UINT_KEY(group, key, field, min, max) \
  { group, key, KEY_UINT, G_STRUCT_OFFSET (OtaConfig, field), min, max, NULL }
#define UINT64_KEY(group, key, field, min, max) \
  { group, key, KEY_UINT64, G_STRUCT_OFFSET (OtaConfig, field), min, max, NULL }

static const KeySpec key_specs[] = {
  STRING_KEY ("mqtt", "host", mqtt_host, check_not_empty),
  UINT_KEY ("mqtt", "port", mqtt_port, 1, 65535),
  STRING_KEY ("mqtt", "client_id", mqtt_client_id, NULL),
  STRING_KEY ("mqtt", "username", mqtt_username, NULL),
  STRING_KEY ("mqtt", "password", mqtt_password, NULL),
  UINT_KEY ("mqtt", "keepalive", mqtt_keepalive, 5, 3600),
  BOOLEAN_KEY ("mqtt", "tls", mqtt_tls),
  STRING_KEY ("mqtt", "ca_file", mqtt_ca_file, NULL),
  STRING_KEY ("mqtt", "cert_file", mqtt_cert_file, NULL),
  STRING_KEY ("mqtt", "key_file", mqtt_key_file, NULL),
  STRING_KEY ("device", "product_id", product_id, check_product_id),
  STRING_KEY ("device", "device_name", device_name, check_device_name),
  STRING_KEY ("device", "device_secret", device_secret, check_base64),
  STRING_KEY ("ota", "state_dir", state_dir, check_absolute_path),
  UINT_KEY ("ota", "report_interval", report_interval, 1, 604800),
  UINT_KEY ("ota", "retry_interval", retry_interval, 1, 604800),
  UINT_KEY ("ota", "progress_interval", progress_interval, 1, 3600),
  UINT_KEY ("ota", "max_retries", max_retries, 0, 1000),
  UINT_KEY ("ota", "stall_timeout", stall_timeout, 1, 3600),
  UINT64_KEY ("ota", "checkpoint_bytes", checkpoint_bytes, 4096, 1024 * 1024 * 1024),
  UINT64_KEY ("ota", "max_firmware_size", max_firmware_size, 1, OTA_PROTOCOL_FILE_SIZE_LIMIT),
  BOOLEAN_KEY ("ota", "require_https", require_https),
  STRING_KEY ("ota", "ca_file", ca_file, NULL),
  UINT64_KEY ("ota", "min_download_rate", min_download_rate, 0, G_GUINT64_CONSTANT (1) << 32),
  UINT64_KEY ("ota", "max_download_rate", max_download_rate, 0, G_GUINT64_CONSTANT (1) << 40),
  STRING_KEY ("ota", "proxy", proxy, check_proxy),
  STRING_KEY ("ota", "report_topic", report_topic, NULL),
  STRING_KEY ("ota", "update_topic", update_topic, NULL),
  STRING_KEY ("security", "trusted_keys", trusted_keys, check_key_list),
  STRING_KEY ("cloud", "allowed_topics", cloud_allowed_topics_text, NULL),
};

static const char *const known_groups[] = { "mqtt", "device", "ota", "security", "cloud" };

OtaConfig *
ota_config_new_defaults (void)
{
  OtaConfig *self = g_new0 (OtaConfig, 1);

  self->mqtt_host = g_strdup ("127.0.0.1");
  self->mqtt_port = 1883;
  self->mqtt_client_id = g_strdup ("");
  self->mqtt_username = g_strdup ("");
  self->mqtt_password = g_strdup ("");
  self->mqtt_keepalive = 60;
  self->mqtt_tls = FALSE;
  self->mqtt_ca_file = g_strdup ("");
  self->mqtt_cert_file = g_strdup ("");
  self->mqtt_key_file = g_strdup ("");
  self->product_id = g_strdup ("");
  self->device_name = g_strdup ("");
  self->device_secret = g_strdup ("");
  self->state_dir = g_strdup ("/var/lib/iv-ota");
  self->report_interval = 600;
  self->retry_interval = 60;
  self->progress_interval = 1;
  self->max_retries = 5;
  self->stall_timeout = 30;
  self->checkpoint_bytes = 4194304;
  self->max_firmware_size = G_GUINT64_CONSTANT (2147483648);
  self->require_https = TRUE;
  self->ca_file = g_strdup ("");
  self->min_download_rate = 16;
  self->max_download_rate = 0;
  self->proxy = g_strdup ("");
  /* Templates until ota_config_load_from_data() knows the device. */
  self->report_topic = g_strdup (OTA_DEFAULT_REPORT_TOPIC);
  self->update_topic = g_strdup (OTA_DEFAULT_UPDATE_TOPIC);
  self->trusted_keys = g_strdup ("");
  self->cloud_allowed_topics_text = g_strdup ("");
  self->installers = g_ptr_array_new_with_free_func ((GDestroyNotify) ota_install_config_free);
  return self;
}

void
ota_config_free (OtaConfig *self)
{
  if (self == NULL)
    return;
  /* Every string field of OtaConfig is a key in the table. */
  for (gsize i = 0; i < G_N_ELEMENTS (key_specs); i++) {
    if (key_specs[i].type == KEY_STRING)
      g_free (G_STRUCT_MEMBER (char *, self, key_specs[i].offset));
  }
  g_strfreev (self->cloud_allowed_topics);
  g_clear_pointer (&self->installers, g_ptr_array_unref);
  g_free (self);
}

/* ---- string checks ---- */

static gboolean
check_not_empty (const char *value, GError **error)
{
  if (*value != '\0')
    return TRUE;
  g_set_error_literal (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "must not be empty");
  return FALSE;
}

static gboolean
check_no_control_chars (const char *value, GError **error)
{
  for (const char *p = value; *p != '\0'; p = g_utf8_next_char (p)) {
    if (g_unichar_iscntrl (g_utf8_get_char (p))) {
      g_set_error_literal (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                           "must not contain control characters");
      return FALSE;
    }
  }
  return TRUE;
}

/* product_id and device_name end up as MQTT topic levels: a narrow charset
 * keeps '/', '+', '#' and anything surprising out of them. */
static gboolean
check_name (const char *value, const char *extra, GError **error)
{
  if (strlen (value) > NAME_MAX_LENGTH) {
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "longer than %d characters", NAME_MAX_LENGTH);
    return FALSE;
  }
  for (const char *p = value; *p != '\0'; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);

    if (c < 128 && (g_ascii_isalnum (c) || strchr (extra, (int) c) != NULL))
      continue;
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "invalid character '%.*s' (allowed: A-Z a-z 0-9 and \"%s\")",
                 (int) (g_utf8_next_char (p) - p), p, extra);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_product_id (const char *value, GError **error)
{
  return check_name (value, "_-", error);
}

static gboolean
check_device_name (const char *value, GError **error)
{
  return check_name (value, "_.:@-", error);
}

/* Standard base64 with padding; g_base64_decode() alone accepts anything. */
static gboolean
check_base64 (const char *value, GError **error)
{
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  gsize length = strlen (value);
  gsize padding = 0;
  gsize decoded_length = 0;
  g_autofree guchar *decoded = NULL;

  if (length == 0)
    return TRUE;
  while (padding < length && value[length - 1 - padding] == '=')
    padding++;
  if (length % 4 == 0 && padding <= 2 && strspn (value, alphabet) == length - padding)
    decoded = g_base64_decode (value, &decoded_length);
  if (decoded_length >= 1)
    return TRUE;
  g_set_error_literal (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                       "not valid base64");
  return FALSE;
}

static gboolean
check_absolute_path (const char *value, GError **error)
{
  if (g_path_is_absolute (value))
    return TRUE;
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
               "expected an absolute path, got \"%s\"", value);
  return FALSE;
}

static gboolean
check_proxy (const char *value, GError **error)
{
  g_autoptr(GError) local_error = NULL;

  if (ota_proxy_url_check (value, &local_error))
    return TRUE;
  g_set_error_literal (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                       local_error->message);
  return FALSE;
}

char **
ota_config_get_trusted_keys (const OtaConfig *self)
{
  g_return_val_if_fail (self != NULL, NULL);

  g_auto (GStrv) items = g_strsplit (self->trusted_keys, ";", -1);
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);

  for (gsize i = 0; items[i] != NULL; i++) {
    char *path = g_strstrip (items[i]);

    if (*path != '\0')
      g_ptr_array_add (paths, g_strdup (path));
  }
  g_ptr_array_add (paths, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&paths), FALSE);
}

/* Only the names: the keys themselves are read when the agent starts. */
static gboolean
check_key_list (const char *value, GError **error)
{
  OtaConfig probe = { .trusted_keys = (char *) value };
  g_auto (GStrv) paths = ota_config_get_trusted_keys (&probe);

  for (gsize i = 0; paths[i] != NULL; i++) {
    if (!g_path_is_absolute (paths[i])) {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "expected absolute paths of public key files separated by ';', got \"%s\"", paths[i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- reading one key ---- */

static gboolean
read_string (GKeyFile *key_file, OtaConfig *self, const KeySpec *spec, GError **error)
{
  char **field = G_STRUCT_MEMBER_P (self, spec->offset);
  g_autoptr(GError) local_error = NULL;
  /* On an invalid escape GKeyFile sets the error yet returns a string. */
  g_autofree char *value = g_key_file_get_string (key_file, spec->group, spec->key, &local_error);

  if (local_error != NULL) {
    g_propagate_error (error, g_steal_pointer (&local_error));
    return FALSE;
  }
  if (!check_no_control_chars (value, error))
    return FALSE;
  if (spec->check != NULL && !spec->check (value, error))
    return FALSE;
  g_free (*field);
  *field = g_steal_pointer (&value);
  return TRUE;
}

/* Quoted for messages, so odd bytes in the file cannot garble them. */
static char *
quote_value (const char *raw)
{
  g_autofree char *escaped = g_strescape (raw != NULL ? raw : "", NULL);

  return g_strdup_printf ("\"%s\"", escaped);
}

static gboolean
read_boolean (GKeyFile *key_file, OtaConfig *self, const KeySpec *spec, GError **error)
{
  g_autoptr(GError) local_error = NULL;
  gboolean value = g_key_file_get_boolean (key_file, spec->group, spec->key, &local_error);
  g_autofree char *raw = NULL;
  g_autofree char *quoted = NULL;

  if (local_error == NULL) {
    G_STRUCT_MEMBER (gboolean, self, spec->offset) = value;
    return TRUE;
  }
  raw = g_key_file_get_value (key_file, spec->group, spec->key, NULL);
  quoted = quote_value (raw);
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
               "expected true or false, got %s", quoted);
  return FALSE;
}

static gboolean
read_unsigned (GKeyFile *key_file, OtaConfig *self, const KeySpec *spec, GError **error)
{
  g_autofree char *raw = g_key_file_get_value (key_file, spec->group, spec->key, error);
  g_autofree char *quoted = NULL;
  guint64 value = 0;

  if (raw == NULL)
    return FALSE;
  /* Trailing blanks are kept by GKeyFile but ignored by its own number parser. */
  g_strchomp (raw);
  if (g_ascii_string_to_unsigned (raw, 10, spec->min, spec->max, &value, NULL)) {
    if (spec->type == KEY_UINT)
      G_STRUCT_MEMBER (guint, self, spec->offset) = (guint) value;
    else
      G_STRUCT_MEMBER (guint64, self, spec->offset) = value;
    return TRUE;
  }
  quoted = quote_value (raw);
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
               "expected an integer between %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT
               ", got %s",
               spec->min, spec->max, quoted);
  return FALSE;
}

static gboolean
read_value (GKeyFile *key_file, OtaConfig *self, const KeySpec *spec, GError **error)
{
  switch (spec->type) {
  case KEY_STRING:
    return read_string (key_file, self, spec, error);
  case KEY_BOOLEAN:
    return read_boolean (key_file, self, spec, error);
  case KEY_UINT:
  case KEY_UINT64:
    return read_unsigned (key_file, self, spec, error);
  }
  g_return_val_if_reached (FALSE);
}

/* Reads @spec if present and consumes it; absent keys keep their default. */
static gboolean
consume_key (GKeyFile *key_file, OtaConfig *self, const KeySpec *spec, GError **error)
{
  g_autoptr(GError) local_error = NULL;

  if (!g_key_file_has_key (key_file, spec->group, spec->key, NULL))
    return TRUE;
  if (!read_value (key_file, self, spec, &local_error)) {
    g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "[%s] %s: ", spec->group,
                                spec->key);
    return FALSE;
  }
  return g_key_file_remove_key (key_file, spec->group, spec->key, error);
}

/* ---- whole file ---- */

static gboolean
is_known_group (const char *group)
{
  for (gsize i = 0; i < G_N_ELEMENTS (known_groups); i++) {
    if (g_str_equal (group, known_groups[i]))
      return TRUE;
  }
  return FALSE;
}

static gboolean
is_known_key (const char *group, const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (key_specs); i++) {
    if (g_str_equal (group, key_specs[i].group) && g_str_equal (key, key_specs[i].key))
      return TRUE;
  }
  return FALSE;
}

/* Everything known has been consumed: whatever is left is an error. */
static gboolean
check_nothing_left (GKeyFile *key_file, GError **error)
{
  g_auto(GStrv) groups = g_key_file_get_groups (key_file, NULL);

  for (gsize i = 0; groups[i] != NULL; i++) {
    g_auto(GStrv) keys = NULL;

    if (!is_known_group (groups[i])) {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "unknown group [%s]", groups[i]);
      return FALSE;
    }
    keys = g_key_file_get_keys (key_file, groups[i], NULL, NULL);
    if (keys != NULL && keys[0] != NULL) {
      /* A known key still present was written twice: only the last one was read. */
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   is_known_key (groups[i], keys[0]) ? "duplicate key [%s] %s" : "unknown key [%s] %s",
                   groups[i], keys[0]);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean
check_required (const OtaConfig *self, GError **error)
{
  const char *missing = NULL;

  if (*self->product_id == '\0')
    missing = "product_id";
  else if (*self->device_name == '\0')
    missing = "device_name";
  if (missing == NULL)
    return TRUE;
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, "[device] %s: required",
               missing);
  return FALSE;
}

/* A client certificate is useless without its key and vice versa. */
static gboolean
check_tls (const OtaConfig *self, GError **error)
{
  gboolean has_cert = *self->mqtt_cert_file != '\0';
  gboolean has_key = *self->mqtt_key_file != '\0';

  if (!self->mqtt_tls || has_cert == has_key)
    return TRUE;
  if (has_cert)
    return ota_key_file_error (error, "mqtt", "key_file", "required when cert_file is set");
  return ota_key_file_error (error, "mqtt", "cert_file", "required when key_file is set");
}

/* A cap under the stall rate would turn every capped download into a stall. */
static gboolean
check_download_rates (const OtaConfig *self, GError **error)
{
  if (self->max_download_rate == 0 || self->max_download_rate >= self->min_download_rate)
    return TRUE;
  return ota_key_file_error (error, "ota", "max_download_rate",
                             "%" G_GUINT64_FORMAT " is below min_download_rate (%" G_GUINT64_FORMAT ")",
                             self->max_download_rate, self->min_download_rate);
}

/* The signed credentials are the MQTT username and password: a second pair
 * would be silently ignored, so it is refused. */
static gboolean
check_signin (const OtaConfig *self, GError **error)
{
  if (*self->device_secret == '\0' || (*self->mqtt_username == '\0' && *self->mqtt_password == '\0'))
    return TRUE;
  return ota_key_file_error (error, "device", "device_secret",
                             "cannot be combined with [mqtt] username or password: device key sign-in "
                             "computes them (remove one or the other)");
}

static gboolean
check_topic (const GString *topic, const char *key, GError **error)
{
  if (topic->len == 0)
    return ota_key_file_error (error, "ota", key, "the topic is empty");
  if (strlen (topic->str) != topic->len || strpbrk (topic->str, "+#") != NULL)
    return ota_key_file_error (error, "ota", key, "the topic \"%s\" contains '+', '#' or NUL",
                               topic->str);
  return TRUE;
}

/* ota_topic_expand() with the error naming the key. */
static GString *
expand_template (const OtaConfig *self, const char *template, const char *group, const char *key, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  GString *topic = ota_topic_expand (template, self->product_id, self->device_name, &local_error);

  if (topic == NULL)
    ota_key_file_error (error, group, key, "%s", local_error->message);
  return topic;
}

static char *
expand_topic (const OtaConfig *self, const char *template, const char *key, GError **error)
{
  g_autoptr (GString) topic = expand_template (self, template, "ota", key, error);

  if (topic == NULL || !check_topic (topic, key, error))
    return NULL;
  return g_string_free (g_steal_pointer (&topic), FALSE);
}

/* [cloud] allowed_topics: a ';'-list of MQTT filters with placeholders;
 * empty means the default (the device's own namespace). */
static gboolean
expand_allowed_topics (OtaConfig *self, GError **error)
{
  g_auto (GStrv) items = g_strsplit (self->cloud_allowed_topics_text, ";", -1);
  g_autoptr (GPtrArray) filters = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; items[i] != NULL; i++) {
    g_autoptr (GString) filter = NULL;
    g_autoptr (GError) local_error = NULL;

    g_strstrip (items[i]);
    if (*items[i] == '\0')
      continue;
    filter = expand_template (self, items[i], "cloud", "allowed_topics", error);
    if (filter == NULL)
      return FALSE;
    if (!ota_topic_filter_check (filter->str, &local_error))
      return ota_key_file_error (error, "cloud", "allowed_topics", "%s", local_error->message);
    g_ptr_array_add (filters, g_strdup (filter->str));
  }
  if (filters->len == 0)
    return TRUE;
  g_ptr_array_add (filters, NULL);
  self->cloud_allowed_topics = (char **) g_ptr_array_free (g_steal_pointer (&filters), FALSE);
  return TRUE;
}

static gboolean
expand_topics (OtaConfig *self, GError **error)
{
  g_autofree char *report = expand_topic (self, self->report_topic, "report_topic", error);
  g_autofree char *update = NULL;

  if (report == NULL)
    return FALSE;
  update = expand_topic (self, self->update_topic, "update_topic", error);
  if (update == NULL)
    return FALSE;
  g_free (self->report_topic);
  self->report_topic = g_steal_pointer (&report);
  g_free (self->update_topic);
  self->update_topic = g_steal_pointer (&update);
  return TRUE;
}

/* Defaults and checks that depend on more than one key. */
static gboolean
finish (OtaConfig *self, GError **error)
{
  if (!check_required (self, error) || !check_tls (self, error) || !check_signin (self, error) ||
      !check_download_rates (self, error))
    return FALSE;
  if (*self->mqtt_client_id == '\0') {
    g_free (self->mqtt_client_id);
    self->mqtt_client_id = g_strconcat (self->product_id, self->device_name, NULL);
  }
  return expand_topics (self, error) && expand_allowed_topics (self, error);
}

OtaConfig *
ota_config_load_from_data (const char *data, gsize length, GError **error)
{
  g_autoptr(GKeyFile) key_file = NULL;
  g_autoptr(OtaConfig) self = NULL;

  g_return_val_if_fail (data != NULL, NULL);

  key_file = g_key_file_new ();
  self = ota_config_new_defaults ();
  /* Without KEEP_TRANSLATIONS, "host[de]" would be dropped silently instead of
   * being reported as unknown. */
  if (!g_key_file_load_from_data (key_file, data, length, G_KEY_FILE_KEEP_TRANSLATIONS, error)) {
    g_prefix_error (error, "not a valid key file: ");
    return NULL;
  }
  for (gsize i = 0; i < G_N_ELEMENTS (key_specs); i++) {
    if (!consume_key (key_file, self, &key_specs[i], error))
      return NULL;
  }
  /* After [ota]: an installer's firmware_dir defaults to one under state_dir. */
  if (!ota_install_config_consume (key_file, self->state_dir, self->installers, error))
    return NULL;
  if (!check_nothing_left (key_file, error) || !finish (self, error))
    return NULL;
  return g_steal_pointer (&self);
}

OtaConfig *
ota_config_load (const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize length = 0;
  OtaConfig *self = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  if (!g_file_get_contents (path, &data, &length, error)) {
    g_prefix_error (error, "%s: ", path);
    return NULL;
  }
  self = ota_config_load_from_data (data, length, error);
  if (self == NULL)
    g_prefix_error (error, "%s: ", path);
  return self;
}
