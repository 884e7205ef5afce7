/* ota_protocol_parse() on arbitrary MQTT payloads. Besides crashes, leaks and
 * UB, an accepted message whose fields break the promises of protocol.h is a
 * failure: those fields become file names, URLs and D-Bus strings. */
#include "protocol.h"

#include "fuzz-common.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* The config default: file_size beyond it must be rejected. */
#define FUZZ_MAX_FIRMWARE_SIZE G_GUINT64_CONSTANT (2147483648)

static gboolean
is_lower_hex (const char *text, gsize length)
{
  if (strlen (text) != length)
    return FALSE;
  for (const char *p = text; *p != '\0'; p++) {
    if (!g_ascii_isdigit (*p) && !(*p >= 'a' && *p <= 'f'))
      return FALSE;
  }
  return TRUE;
}

static gboolean
is_decimal (const char *text)
{
  if (*text == '\0')
    return FALSE;
  for (const char *p = text; *p != '\0'; p++) {
    if (!g_ascii_isdigit (*p))
      return FALSE;
  }
  return TRUE;
}

static gboolean
is_visible_ascii (const char *text, gsize max_len)
{
  gsize len = strlen (text);

  if (len == 0 || len > max_len)
    return FALSE;
  for (const char *p = text; *p != '\0'; p++) {
    if (!g_ascii_isgraph (*p))
      return FALSE;
  }
  return TRUE;
}

/* What the downloader will request: http(s) with a host. */
static gboolean
url_is_fetchable (const char *url)
{
  g_autoptr(GUri) uri = NULL;

  if (!is_visible_ascii (url, OTA_PROTOCOL_MAX_URL_LEN))
    return FALSE;
  if (g_ascii_strncasecmp (url, "http://", 7) != 0 && g_ascii_strncasecmp (url, "https://", 8) != 0)
    return FALSE;
  uri = g_uri_parse (url, G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED_PATH |
                              G_URI_FLAGS_ENCODED_QUERY | G_URI_FLAGS_ENCODED_FRAGMENT,
                     NULL);
  return uri != NULL && g_uri_get_host (uri) != NULL && g_uri_get_host (uri)[0] != '\0';
}

/* task_id goes back to the cloud in every progress report: it must come back unchanged. */
static void
check_task_id_round_trip (const OtaOffer *offer)
{
  OtaProgressReport report = { offer->module, offer->version, "burning", -1, 0, NULL,
                               offer->task_id, offer->task_id_is_number };
  g_autofree char *json = ota_protocol_encode_progress (&report);
  g_autoptr(JsonNode) root = json_from_string (json, NULL);
  JsonObject *inner;
  JsonNode *task_id;
  g_autofree char *echoed = NULL;

  FUZZ_CHECK (root != NULL && JSON_NODE_HOLDS_OBJECT (root));
  inner = json_object_get_object_member (json_node_get_object (root), "report");
  task_id = json_object_get_member (inner, "task_id");
  FUZZ_CHECK (task_id != NULL);
  if (offer->task_id_is_number) {
    FUZZ_CHECK (json_node_get_value_type (task_id) == G_TYPE_INT64);
    echoed = g_strdup_printf ("%" G_GINT64_FORMAT, json_node_get_int (task_id));
  } else {
    FUZZ_CHECK (json_node_get_value_type (task_id) == G_TYPE_STRING);
    echoed = g_strdup (json_node_get_string (task_id));
  }
  FUZZ_CHECK (g_str_equal (echoed, offer->task_id));
}

static void
check_offer (const OtaOffer *offer)
{
  FUZZ_CHECK (offer->module != NULL && ota_protocol_module_is_valid (offer->module));
  FUZZ_CHECK (offer->version != NULL && ota_protocol_version_is_valid (offer->version));
  FUZZ_CHECK (offer->url != NULL && url_is_fetchable (offer->url));
  FUZZ_CHECK (offer->md5sum != NULL && is_lower_hex (offer->md5sum, 32));
  FUZZ_CHECK (offer->file_size >= 1 && offer->file_size <= FUZZ_MAX_FIRMWARE_SIZE);
  if (offer->task_id != NULL) {
    FUZZ_CHECK (is_visible_ascii (offer->task_id, OTA_PROTOCOL_MAX_TASK_ID_LEN));
    FUZZ_CHECK (!offer->task_id_is_number || is_decimal (offer->task_id));
    check_task_id_round_trip (offer);
  } else {
    FUZZ_CHECK (!offer->task_id_is_number);
  }
  /* Handed to apps as a D-Bus string: valid UTF-8 JSON text. */
  if (offer->user_defined != NULL) {
    g_autoptr(JsonNode) node = NULL;

    FUZZ_CHECK (g_utf8_validate (offer->user_defined, -1, NULL));
    node = json_from_string (offer->user_defined, NULL);
    FUZZ_CHECK (node != NULL);
  }
}

static void
check_ack (const OtaVersionAck *ack)
{
  FUZZ_CHECK (ack->module != NULL && ota_protocol_module_is_valid (ack->module));
  FUZZ_CHECK (ack->result_msg != NULL && g_utf8_validate (ack->result_msg, -1, NULL));
  FUZZ_CHECK (ack->version != NULL && g_utf8_validate (ack->version, -1, NULL));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  OtaCloudMessage msg;
  g_autoptr(GError) error = NULL;

  if (!ota_protocol_parse ((const char *) data, size, FUZZ_MAX_FIRMWARE_SIZE, &msg, &error)) {
    FUZZ_CHECK (error != NULL);
    return 0;
  }
  FUZZ_CHECK (error == NULL);
  if (msg.type == OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE) {
    g_autoptr(OtaOffer) copy = ota_offer_copy (&msg.offer);

    check_offer (&msg.offer);
    /* The agent keeps offers as copies. */
    check_offer (copy);
  }
  else if (msg.type == OTA_CLOUD_MESSAGE_REPORT_VERSION_RSP)
    check_ack (&msg.ack);
  else
    FUZZ_CHECK (!"unknown message type");
  ota_cloud_message_clear (&msg);
  return 0;
}
