/* An MQTT session on libmosquitto driven by the GLib main loop (no mosquitto
 * threads): connects, keeps subscriptions, reconnects with exponential backoff
 * and jitter, and says truthfully whether it is connected. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Called before every connection attempt: fresh credentials (device key
 * sign-in signs a new connid and expiry each time). Returns FALSE with @error
 * to skip the attempt (it is retried with backoff). */
typedef gboolean (*OtaMqttCredentialsFunc) (gpointer user_data, char **username, char **password, GError **error);

typedef struct {
  const char *host;
  guint port;
  const char *client_id;
  const char *username;     /* NULL or "": none */
  const char *password;     /* NULL or "": none */
  OtaMqttCredentialsFunc credentials_func; /* optional; replaces username/password */
  gpointer credentials_data;
  guint keepalive;          /* seconds */
  gboolean tls;             /* the broker's certificate and host name are always verified */
  const char *ca_file;      /* NULL or "": system store */
  const char *cert_file;    /* client certificate, optional (PEM) */
  const char *key_file;     /* its unencrypted PEM key */
  guint backoff_min_ms;     /* first retry delay, 0: 500 ms */
  guint backoff_max_ms;     /* cap, 0: 60 s */
} OtaMqttSettings;

#define OTA_TYPE_MQTT_LINK (ota_mqtt_link_get_type ())
G_DECLARE_FINAL_TYPE (OtaMqttLink, ota_mqtt_link, OTA, MQTT_LINK, GObject)

/*
 * Signals:
 *  "message" (const char *topic, GBytes *payload): a message on a subscribed topic.
 *  "published" (int mid): the broker acknowledged a QoS 1 publish (or a QoS 0
 *      one left the socket).
 *  "connection-changed" (gboolean connected): the session came up (after the
 *      subscriptions were sent) or went down. Also notifies "connected".
 * Property "connected" (gboolean, read-only).
 */

/* Copies @settings. Nothing happens until ota_mqtt_link_start(). With TLS,
 * fails at once when ca_file, cert_file or key_file cannot be read. */
OtaMqttLink *ota_mqtt_link_new (const OtaMqttSettings *settings, GError **error);

/* Subscribes now if connected, and again after every reconnect. */
void ota_mqtt_link_add_subscription (OtaMqttLink *self, const char *topic, int qos);

/* Starts connecting; failures are retried forever with backoff. */
void ota_mqtt_link_start (OtaMqttLink *self);

/* Sends a DISCONNECT if connected, waits (at most a second) until it has
 * left the socket, and stops retrying. */
void ota_mqtt_link_stop (OtaMqttLink *self);

gboolean ota_mqtt_link_get_connected (OtaMqttLink *self);

/* Publishes on the current session. Fails with G_IO_ERROR_NOT_CONNECTED when
 * offline: messages are never queued across sessions (each reconnect starts a
 * fresh session and queue), so a caller that must not lose a message keeps it
 * until "published" reports its @mid. */
gboolean ota_mqtt_link_publish (OtaMqttLink *self,
                                const char *topic,
                                const void *payload,
                                gsize length,
                                int qos,
                                int *mid,
                                GError **error);

G_END_DECLS
