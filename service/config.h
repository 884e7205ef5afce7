/* The agent's key-file configuration (docs/configuration.md): strict, every key consumed. */
#pragma once

#include "install-config.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  /* [mqtt] */
  char *mqtt_host;          /* default "127.0.0.1" */
  guint mqtt_port;          /* 1..65535, default 1883 */
  char *mqtt_client_id;     /* default <product_id><device_name> */
  char *mqtt_username;      /* default "" */
  char *mqtt_password;      /* default "" */
  guint mqtt_keepalive;     /* seconds, 5..3600, default 60 */
  gboolean mqtt_tls;        /* default FALSE */
  char *mqtt_ca_file;       /* default "" */
  char *mqtt_cert_file;     /* default "" */
  char *mqtt_key_file;      /* default "" */
  /* [device] */
  char *product_id;         /* required, 1..64 of [A-Za-z0-9_-] */
  char *device_name;        /* required, 1..64 of [A-Za-z0-9_.:@-] */
  char *device_secret;      /* default "", base64 when set; excludes mqtt username/password */
  /* [ota] */
  char *state_dir;          /* default "/var/lib/iv-ota", absolute */
  guint report_interval;    /* seconds, 1..604800, default 600 */
  guint retry_interval;     /* seconds, 1..604800, default 60 */
  guint progress_interval;  /* seconds, 1..3600, default 1 */
  guint max_retries;        /* 0..1000, default 5 */
  guint stall_timeout;      /* seconds, 1..3600, default 30 */
  guint64 checkpoint_bytes; /* 4096..1 GiB, default 4194304 */
  guint64 max_firmware_size;/* 1..2^50, default 2147483648 */
  gboolean require_https;   /* default TRUE */
  char *ca_file;            /* default "" (system store) */
  guint64 min_download_rate; /* bytes/s, 0..2^32, default 16: slower over stall_timeout is a stall */
  guint64 max_download_rate; /* bytes/s, 0 (unlimited) or min_download_rate..2^40, default 0 */
  char *proxy;              /* default "" (environment); http://[user:password@]host:port */
  char *report_topic;       /* expanded: {product_id}/{device_name} substituted */
  char *update_topic;       /* expanded */
  /* [security] */
  char *trusted_keys;       /* default "": ';'-list of absolute paths of Ed25519 public keys (PEM) */
  /* [cloud] */
  char *cloud_allowed_topics_text; /* as written, "" by default */
  char **cloud_allowed_topics;     /* expanded filters; NULL: the device's namespace */
  /* [install], [install.<module>]: OtaInstallConfig*, never NULL */
  GPtrArray *installers;
} OtaConfig;

/* A config with every default and empty product_id/device_name. */
OtaConfig *ota_config_new_defaults (void);

/* Parses key-file text. Unknown groups or keys, malformed values, values out of
 * range, a missing product_id/device_name and a device_secret together with an
 * [mqtt] username or password are errors whose message names the
 * group and key ("[ota] report_interval: ..."). Topics are expanded. */
OtaConfig *ota_config_load_from_data (const char *data, gsize length, GError **error);

/* Reads @path and calls ota_config_load_from_data(); errors are prefixed with the path. */
OtaConfig *ota_config_load (const char *path, GError **error);

void ota_config_free (OtaConfig *self);

/* The files of [security] trusted_keys, blanks trimmed, empty items dropped;
 * an empty vector when signatures are not required. Free with g_strfreev(). */
char **ota_config_get_trusted_keys (const OtaConfig *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaConfig, ota_config_free)

G_END_DECLS
