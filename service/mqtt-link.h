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
  /* MQTT 5 Maximum Packet Size announced in CONNECT (0: none, and MQTT
   * 3.1.1). The broker then never sends a bigger packet; a broker that does
   * not speak MQTT 5 gets MQTT 3.1.1, and a message over this size is dropped
   * without a copy of ours (libmosquitto has read it by then). */
  guint max_packet_size;
  /* Lifts the one-CONNECT-per-OTA_MQTT_MIN_CONNECT_INTERVAL_S rule and the
   * short-session backoff, for test and bench clients that are not a device. */
  gboolean unlimited_connects;
} OtaMqttSettings;

/* The platform accepts at most one connection request per device every 5 s:
 * the link never sends two CONNECTs closer than that, whatever happens. */
#define OTA_MQTT_MIN_CONNECT_INTERVAL_S 5
/* A session that dies sooner than this after its CONNACK is a failure: the
 * next attempts back off exponentially from the minimum interval... */
#define OTA_MQTT_SHORT_SESSION_S 60
/* ...up to this. */
#define OTA_MQTT_SHORT_SESSION_BACKOFF_MAX_S 300

#define OTA_TYPE_MQTT_LINK (ota_mqtt_link_get_type ())
G_DECLARE_FINAL_TYPE (OtaMqttLink, ota_mqtt_link, OTA, MQTT_LINK, GObject)

/*
 * Signals:
 *  "message" (const char *topic, GBytes *payload): a message on a subscribed topic;
 *      ota_mqtt_link_get_message_retained() tells, during the emission, whether
 *      the broker replayed it as a retained message.
 *  "subscribed" (int mid, gboolean granted): the broker answered the SUBSCRIBE
 *      @mid of ota_mqtt_link_subscribe().
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

/* Like ota_mqtt_link_add_subscription(); returns the mid of the SUBSCRIBE
 * sent now ("subscribed" reports the broker's answer), or -1 when offline
 * (it is sent at the next connect). Adding a topic twice keeps one. */
int ota_mqtt_link_subscribe (OtaMqttLink *self, const char *topic, int qos);

/* Forgets @topic: UNSUBSCRIBE now if connected, no more after reconnects. */
void ota_mqtt_link_unsubscribe (OtaMqttLink *self, const char *topic);

/* During a "message" emission: whether the message is a retained one that
 * the broker replayed on subscription (not a live publish). */
gboolean ota_mqtt_link_get_message_retained (OtaMqttLink *self);

/* During a "published" emission: the broker's reason code of a QoS 1
 * message's PUBACK (MQTT 5; 0 with MQTT 3.1.1 and for QoS 0). 0x80 and above:
 * the broker refused the message (not authorised, quota exceeded...). */
int ota_mqtt_link_get_publish_reason (OtaMqttLink *self);

/* Connection attempts the link made (CONNECT sent), for tests and logs. */
guint ota_mqtt_link_get_connect_count (OtaMqttLink *self);

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
