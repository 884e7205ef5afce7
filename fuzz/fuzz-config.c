/* ota_config_load_from_data() on arbitrary key files: an accepted config must
 * hold every range and charset config.h documents, and expanded topics. */
#include "config.h"

#include "fuzz-common.h"

#include <string.h>

static gboolean
is_name (const char *value, const char *extra)
{
  gsize length = strlen (value);

  if (length == 0 || length > 64)
    return FALSE;
  for (const char *p = value; *p != '\0'; p++) {
    if (!g_ascii_isalnum (*p) && strchr (extra, *p) == NULL)
      return FALSE;
  }
  return TRUE;
}

/* An MQTT topic to publish or subscribe to: no wildcards, no placeholders left. */
static gboolean
is_topic (const char *topic)
{
  return topic[0] != '\0' && strpbrk (topic, "+#") == NULL && g_utf8_validate (topic, -1, NULL);
}

static void
check_config (const OtaConfig *c)
{
  FUZZ_CHECK (c->mqtt_host[0] != '\0');
  FUZZ_CHECK (c->mqtt_port >= 1 && c->mqtt_port <= 65535);
  FUZZ_CHECK (c->mqtt_client_id[0] != '\0');
  FUZZ_CHECK (c->mqtt_keepalive >= 5 && c->mqtt_keepalive <= 3600);
  FUZZ_CHECK (!c->mqtt_tls || (c->mqtt_cert_file[0] == '\0') == (c->mqtt_key_file[0] == '\0'));
  FUZZ_CHECK (is_name (c->product_id, "_-"));
  FUZZ_CHECK (is_name (c->device_name, "_.:@-"));
  /* Device key sign-in computes the MQTT credentials: no second pair. */
  FUZZ_CHECK (c->device_secret[0] == '\0' || (c->mqtt_username[0] == '\0' && c->mqtt_password[0] == '\0'));
  FUZZ_CHECK (g_path_is_absolute (c->state_dir));
  FUZZ_CHECK (c->report_interval >= 1 && c->report_interval <= 604800);
  FUZZ_CHECK (c->retry_interval >= 1 && c->retry_interval <= 604800);
  FUZZ_CHECK (c->progress_interval >= 1 && c->progress_interval <= 3600);
  FUZZ_CHECK (c->max_retries <= 1000);
  FUZZ_CHECK (c->stall_timeout >= 1 && c->stall_timeout <= 3600);
  FUZZ_CHECK (c->checkpoint_bytes >= 4096 && c->checkpoint_bytes <= 1024 * 1024 * 1024);
  FUZZ_CHECK (c->max_firmware_size >= 1 && c->max_firmware_size <= G_GUINT64_CONSTANT (1) << 50);
  FUZZ_CHECK (is_topic (c->report_topic));
  FUZZ_CHECK (is_topic (c->update_topic));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(OtaConfig) config = NULL;
  g_autoptr(GError) error = NULL;

  config = ota_config_load_from_data ((const char *) data, size, &error);
  FUZZ_CHECK ((config == NULL) == (error != NULL));
  if (config != NULL)
    check_config (config);
  return 0;
}
