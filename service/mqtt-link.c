#include "mqtt-link.h"
#include "util.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <string.h>

/* How long a clean shutdown waits for the DISCONNECT to leave the socket. */
#define FLUSH_TIMEOUT_MS 1000

typedef struct {
  char *topic;
  int qos;
} Subscription;

/* Watches the mosquitto socket from the main loop; the fd changes on every
 * reconnect, so it is re-read in prepare(). */
typedef struct {
  GSource source;
  OtaMqttLink *link;
  gpointer tag;
  int fd;
  GIOCondition events;
} MqttSource;

struct _OtaMqttLink {
  GObject parent_instance;
  char *host, *client_id, *username, *password;
  char *ca_file, *cert_file, *key_file;
  guint port, keepalive;
  gboolean tls;
  guint backoff_min_ms, backoff_max_ms;
  guint max_packet_size;
  gboolean unlimited_connects;
  gboolean use_v5;         /* until a broker says it does not speak MQTT 5 */
  OtaMqttCredentialsFunc credentials_func;
  gpointer credentials_data;
  char *session_username;  /* the username of the current attempt, for logs */
  char *last_error;        /* libmosquitto's last error log line of this attempt (OpenSSL's reason) */

  struct mosquitto *mosq;  /* a fresh instance per connection attempt */
  GSource *source;
  GPtrArray *subscriptions;  /* of Subscription */
  gboolean running;
  gboolean connected;
  guint attempt;           /* consecutive failed attempts, drives backoff */
  guint retry_id;
  guint misc_id;           /* the housekeeping timer, armed for its next deadline */
  gint64 attempt_started;  /* monotonic µs of the current connection attempt */
  gint64 last_connect_at;  /* monotonic µs of the last CONNECT sent, 0: none yet */
  gint64 connack_at;       /* monotonic µs of the current session's CONNACK */
  guint short_sessions;    /* consecutive sessions that died soon after CONNACK */
  guint connect_count;
  gboolean message_retained; /* of the message being emitted */
  int publish_reason;        /* of the PUBACK being emitted */
  gint64 io_in_s, io_out_s; /* monotonic s of the last packet in and out, as libmosquitto counts them */
  guint session_keepalive; /* s: ours, or the broker's Server Keep Alive (MQTT 5) once connected */
};

G_DEFINE_TYPE (OtaMqttLink, ota_mqtt_link, G_TYPE_OBJECT)

enum { SIGNAL_MESSAGE, SIGNAL_PUBLISHED, SIGNAL_CONNECTION_CHANGED, SIGNAL_SUBSCRIBED, N_SIGNALS };
static guint signals[N_SIGNALS];

enum { PROP_0, PROP_CONNECTED, N_PROPS };
static GParamSpec *props[N_PROPS];

static void link_schedule_retry (OtaMqttLink *self, guint min_delay_ms);
static void link_drop_session (OtaMqttLink *self);
static void link_schedule_misc (OtaMqttLink *self);
static void link_note_io (OtaMqttLink *self, gboolean in, gboolean out);

static void
subscription_free (gpointer data)
{
  Subscription *sub = data;
  g_free (sub->topic);
  g_free (sub);
}

/* A session that ends soon after its CONNACK (a broker or a twin client
 * that drops us right away) counts as a failure, so that the next CONNECT
 * backs off instead of repeating at once. */
static void
link_note_session_end (OtaMqttLink *self)
{
  gint64 lived = g_get_monotonic_time () - self->connack_at;

  if (!self->running)
    return;
  if (lived < (gint64) OTA_MQTT_SHORT_SESSION_S * G_USEC_PER_SEC) {
    self->short_sessions++;
    g_info ("mqtt: session ended %" G_GINT64_FORMAT " s after it began (%u in a row): backing off",
            lived / G_USEC_PER_SEC, self->short_sessions);
  } else {
    self->short_sessions = 0;
  }
}

static void
link_set_connected (OtaMqttLink *self, gboolean connected)
{
  if (self->connected == connected)
    return;
  if (!connected)
    link_note_session_end (self);
  self->connected = connected;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_CONNECTED]);
  g_signal_emit (self, signals[SIGNAL_CONNECTION_CHANGED], 0, connected);
}

/* Why a libmosquitto call failed, in words. libmosquitto reports every TLS
 * failure as "A TLS error occurred."; OpenSSL's reason reaches us only through
 * its log callback (self->last_error), so it is added here, and a failed
 * verification says what was checked. */
static char *
link_describe_error (OtaMqttLink *self, int rc, int saved_errno)
{
  const char *detail = self->last_error;

  if (rc == MOSQ_ERR_TLS && detail != NULL && strstr (detail, "certificate verify failed") != NULL)
    return g_strdup_printf ("TLS verification of the broker's certificate failed: it is not signed by a CA "
                            "in %s, or not issued for host %s (%s)",
                            self->ca_file != NULL ? self->ca_file : "the system store", self->host, detail);
  if (detail != NULL && strstr (detail, "alert certificate required") != NULL)
    return g_strdup_printf ("the broker requires a client certificate (cert_file and key_file) (%s)", detail);
  if (detail != NULL && (strstr (detail, "alert unknown ca") != NULL || strstr (detail, "alert bad certificate") != NULL))
    return g_strdup_printf ("the broker refused our client certificate %s (%s)",
                            self->cert_file != NULL ? self->cert_file : "", detail);
  if (rc == MOSQ_ERR_TLS)
    return g_strdup_printf ("TLS error: %s", detail != NULL ? detail : "no detail from OpenSSL");
  if (rc == MOSQ_ERR_KEEPALIVE)
    return g_strdup ("keepalive timeout");
  if (self->tls && detail != NULL)
    return g_strdup_printf ("%s (%s)", rc == MOSQ_ERR_ERRNO ? g_strerror (saved_errno) : mosquitto_strerror (rc),
                            detail);
  return g_strdup (rc == MOSQ_ERR_ERRNO ? g_strerror (saved_errno) : mosquitto_strerror (rc));
}

/* The current attempt or session failed: say why, start over with backoff.
 * A TLS failure is a configuration or trust problem, hence a warning. */
static void
link_fail (OtaMqttLink *self, int rc, int saved_errno)
{
  g_autofree char *why = link_describe_error (self, rc, saved_errno);

  if (rc == MOSQ_ERR_TLS || (self->tls && self->last_error != NULL))
    g_warning ("mqtt: cannot connect to %s:%u: %s", self->host, self->port, why);
  else if (self->connected)
    g_info ("mqtt: connection to %s:%u lost: %s", self->host, self->port, why);
  else
    g_info ("mqtt: cannot connect to %s:%u: %s", self->host, self->port, why);
  link_drop_session (self);
  link_schedule_retry (self, 0);
}

static gboolean
mqtt_source_prepare (GSource *source, gint *timeout)
{
  MqttSource *ms = (MqttSource *) source;
  OtaMqttLink *self = ms->link;
  int fd = self->mosq != NULL ? mosquitto_socket (self->mosq) : -1;
  GIOCondition events = G_IO_IN | G_IO_ERR | G_IO_HUP;

  *timeout = -1;
  if (fd != ms->fd) {
    if (ms->tag != NULL)
      g_source_remove_unix_fd (source, ms->tag);
    ms->tag = NULL;
    ms->fd = fd;
    ms->events = 0;
  }
  if (fd < 0)
    return FALSE;
  if (mosquitto_want_write (self->mosq))
    events |= G_IO_OUT;
  if (ms->tag == NULL) {
    ms->tag = g_source_add_unix_fd (source, fd, events);
    ms->events = events;
  } else if (events != ms->events) {
    /* Only on change: modifying the fd every iteration spins the loop. */
    g_source_modify_unix_fd (source, ms->tag, events);
    ms->events = events;
  }
  return FALSE;
}

static gboolean
mqtt_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  MqttSource *ms = (MqttSource *) source;
  OtaMqttLink *self = ms->link;
  GIOCondition revents;
  int rc = MOSQ_ERR_SUCCESS;

  if (ms->tag == NULL || self->mosq == NULL)
    return G_SOURCE_CONTINUE;
  revents = g_source_query_unix_fd (source, ms->tag);
  if (revents & (G_IO_IN | G_IO_ERR | G_IO_HUP)) {
    rc = mosquitto_loop_read (self->mosq, 1);
    link_note_io (self, TRUE, FALSE);
  }
  if (rc == MOSQ_ERR_SUCCESS && self->mosq != NULL && (revents & G_IO_OUT)) {
    rc = mosquitto_loop_write (self->mosq, 1);
    link_note_io (self, FALSE, TRUE);
  }
  if (rc != MOSQ_ERR_SUCCESS && self->mosq != NULL && self->running)
    link_fail (self, rc, errno);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs mqtt_source_funcs = {
  .prepare = mqtt_source_prepare,
  .dispatch = mqtt_source_dispatch,
};

/* ---- Housekeeping without polling ----
 * mosquitto_loop_misc() sends the keepalive PINGREQ, or gives up on a broker
 * that did not answer the last one, once `keepalive` seconds have passed since
 * the last packet out or in. libmosquitto counts whole seconds of
 * CLOCK_MONOTONIC (the clock of g_get_monotonic_time()). Calling it every
 * second would wake an idle device 60 times a minute; instead the link notes
 * when it last let libmosquitto send or receive, after the call, so its own
 * deadline is never earlier than libmosquitto's, and arms one timer for it.
 * An idle session then wakes twice per keepalive: the PINGREQ and its answer. */

static gint64
monotonic_s (void)
{
  return g_get_monotonic_time () / G_USEC_PER_SEC;
}

static void
link_note_io (OtaMqttLink *self, gboolean in, gboolean out)
{
  gint64 now = monotonic_s ();

  if (in)
    self->io_in_s = now;
  if (out)
    self->io_out_s = now;
}

/* A connect that neither succeeds nor fails (a silent peer) is abandoned
 * after this many µs. */
static gint64
link_connect_timeout (OtaMqttLink *self)
{
  return (gint64) MAX (self->keepalive, 10) * G_USEC_PER_SEC;
}

/* When mosquitto_loop_misc() has work, in monotonic µs. */
static gint64
link_misc_due (OtaMqttLink *self)
{
  gint64 due = (MIN (self->io_in_s, self->io_out_s) + self->session_keepalive) * G_USEC_PER_SEC;

  if (!self->connected)
    due = MIN (due, self->attempt_started + link_connect_timeout (self));
  return due;
}

static gboolean
link_misc_cb (gpointer user_data)
{
  OtaMqttLink *self = user_data;
  int rc;

  self->misc_id = 0;
  if (self->mosq == NULL || !self->running)
    return G_SOURCE_REMOVE;
  /* Traffic since the timer was armed moved the deadline on. */
  if (g_get_monotonic_time () < link_misc_due (self)) {
    link_schedule_misc (self);
    return G_SOURCE_REMOVE;
  }
  if (!self->connected && g_get_monotonic_time () - self->attempt_started > link_connect_timeout (self)) {
    g_info ("mqtt: no answer from %s:%u, trying again", self->host, self->port);
    link_drop_session (self);
    link_schedule_retry (self, 0);
    return G_SOURCE_REMOVE;
  }
  /* Keepalive: a PINGREQ now (which restarts both of libmosquitto's clocks),
   * or the end of a session whose broker did not answer the last one. */
  rc = mosquitto_loop_misc (self->mosq);
  link_note_io (self, TRUE, TRUE);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && self->running)
    link_fail (self, rc, errno);
  else
    link_schedule_misc (self);
  return G_SOURCE_REMOVE;
}

/* (Re)arms the housekeeping timer for the current deadline. */
static void
link_schedule_misc (OtaMqttLink *self)
{
  gint64 delay_ms;

  g_clear_handle_id (&self->misc_id, g_source_remove);
  if (self->mosq == NULL || !self->running)
    return;
  delay_ms = (link_misc_due (self) - g_get_monotonic_time () + 999) / 1000;
  self->misc_id = g_timeout_add ((guint) CLAMP (delay_ms, 0, G_MAXINT), link_misc_cb, self);
}

/* An MQTT 5 broker may impose its own keepalive in the CONNACK (Server Keep
 * Alive); libmosquitto then pings on that one, and so must our timer. */
static void
link_take_server_keepalive (OtaMqttLink *self, const mosquitto_property *props_in)
{
  uint16_t server_keepalive = 0;

  if (mosquitto_property_read_int16 (props_in, MQTT_PROP_SERVER_KEEP_ALIVE, &server_keepalive, false) == NULL ||
      server_keepalive == 0 || server_keepalive == self->session_keepalive)
    return;
  g_info ("mqtt: broker %s:%u sets the keepalive to %u s (ours: %u s)", self->host, self->port,
          (guint) server_keepalive, self->keepalive);
  self->session_keepalive = server_keepalive;
  link_schedule_misc (self);
}

/* MQTT 5 reason codes of a refused CONNACK, as the MQTT 3.1.1 return code
 * that says the same (mosquitto_connack_string() words those). */
static int
link_connack_v3_code (int reason)
{
  switch (reason) {
  case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION:
    return 1;
  case MQTT_RC_CLIENTID_NOT_VALID:
    return 2;
  case MQTT_RC_SERVER_UNAVAILABLE:
  case MQTT_RC_SERVER_BUSY:
    return 3;
  case MQTT_RC_BAD_USERNAME_OR_PASSWORD:
    return 4;
  case MQTT_RC_NOT_AUTHORIZED:
  case MQTT_RC_BANNED:
    return 5;
  default:
    return reason;
  }
}

static void
on_connect (struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props_in)
{
  OtaMqttLink *self = obj;

  if (rc != 0 && self->use_v5 && (rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION || rc == 1)) {
    /* A broker of MQTT 3.1.1 only: no Maximum Packet Size there. */
    g_warning ("mqtt: broker %s:%u does not speak MQTT 5: using MQTT 3.1.1, without announcing a maximum "
               "packet size",
               self->host, self->port);
    self->use_v5 = FALSE;
    return;
  }
  if (rc != 0) {
    /* Refused (bad credentials, not authorised): a disconnect follows; back off long. */
    g_warning ("mqtt: broker %s:%u refused the connection: %s", self->host, self->port,
               mosquitto_connack_string (self->use_v5 ? link_connack_v3_code (rc) : rc));
    self->attempt = MAX (self->attempt, 6);
    return;
  }
  self->attempt = 0;
  self->connack_at = g_get_monotonic_time ();
  link_take_server_keepalive (self, props_in);
  /* Whatever libmosquitto complained about on the way is no longer news. */
  g_clear_pointer (&self->last_error, g_free);
  for (guint i = 0; i < self->subscriptions->len; i++) {
    Subscription *sub = g_ptr_array_index (self->subscriptions, i);
    int src = mosquitto_subscribe (mosq, NULL, sub->topic, sub->qos);
    if (src != MOSQ_ERR_SUCCESS)
      g_warning ("mqtt: cannot subscribe to %s: %s", sub->topic, mosquitto_strerror (src));
  }
  link_note_io (self, FALSE, self->subscriptions->len > 0);
  g_info ("mqtt: connected to %s:%u%s as %s%s%s%s", self->host, self->port, self->tls ? " over TLS" : "",
          self->client_id, self->session_username != NULL ? " (user " : "",
          self->session_username != NULL ? self->session_username : "", self->session_username != NULL ? ")" : "");
  link_set_connected (self, TRUE);
}

static void
on_disconnect (struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props_in)
{
  OtaMqttLink *self = obj;

  /* Called from within loop_read/misc; the instance is torn down from an idle. */
  if (rc != 0)
    g_info ("mqtt: disconnected from %s:%u: %s", self->host, self->port,
            rc == MOSQ_ERR_KEEPALIVE ? "keepalive timeout" : mosquitto_strerror (rc));
  link_set_connected (self, FALSE);
  if (self->running)
    link_schedule_retry (self, 0);
}

/* libmosquitto's own log: its errors carry the only detail of TLS failures. */
static void
on_log (struct mosquitto *mosq, void *obj, int level, const char *text)
{
  OtaMqttLink *self = obj;
  char *joined;

  if (!(level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)))
    return;
  g_debug ("mqtt: libmosquitto: %s", text);
  /* OpenSSL may queue several reasons: keep them all, bounded. */
  if (self->last_error != NULL && strlen (self->last_error) > 512)
    return;
  joined = self->last_error != NULL ? g_strconcat (self->last_error, "; ", text, NULL) : g_strdup (text);
  g_free (self->last_error);
  self->last_error = joined;
}

static void
on_message (struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
            const mosquitto_property *props_in)
{
  OtaMqttLink *self = obj;
  g_autoptr (GBytes) payload = NULL;

  /* A QoS 1 message was answered with a PUBACK inside mosquitto_loop_read(). */
  if (msg->qos > 0)
    link_note_io (self, FALSE, TRUE);
  /* Only a broker without MQTT 5 sends more than we announced: libmosquitto
   * holds it twice by now, we add no third copy. */
  if (self->max_packet_size > 0 && (guint) msg->payloadlen > self->max_packet_size) {
    g_warning ("mqtt: message on %s dropped unread: %d bytes, over the %u-byte limit", msg->topic,
               msg->payloadlen, self->max_packet_size);
    return;
  }
  payload = g_bytes_new (msg->payload, (gsize) msg->payloadlen);
  self->message_retained = msg->retain;
  g_signal_emit (self, signals[SIGNAL_MESSAGE], 0, msg->topic, payload);
  self->message_retained = FALSE;
}

static void
on_subscribe (struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted_qos,
              const mosquitto_property *props_in)
{
  OtaMqttLink *self = obj;
  gboolean granted = qos_count > 0 && granted_qos[0] < 0x80;

  g_signal_emit (self, signals[SIGNAL_SUBSCRIBED], 0, mid, granted);
}

static void
on_publish (struct mosquitto *mosq, void *obj, int mid, int reason_code, const mosquitto_property *props_in)
{
  OtaMqttLink *self = obj;

  self->publish_reason = reason_code;
  g_signal_emit (self, signals[SIGNAL_PUBLISHED], 0, mid);
  self->publish_reason = 0;
}

/* Forgets the current session: a new instance is made for the next attempt,
 * so nothing queued in the old one is ever sent twice. */
static void
link_drop_session (OtaMqttLink *self)
{
  struct mosquitto *old = self->mosq;

  self->mosq = NULL;
  g_clear_handle_id (&self->misc_id, g_source_remove);
  link_set_connected (self, FALSE);
  /* Never called from inside one of its callbacks, so it can go now. */
  if (old != NULL)
    mosquitto_destroy (old);
}

static guint
link_backoff_ms (OtaMqttLink *self)
{
  guint64 delay = ota_jitter (ota_backoff_delay (self->attempt, self->backoff_min_ms, self->backoff_max_ms));
  guint64 short_delay;

  /* Sessions that keep dying young: 5 s, 10 s, 20 s... up to 5 minutes. */
  if (self->short_sessions > 0 && !self->unlimited_connects) {
    short_delay = ota_backoff_delay (self->short_sessions - 1, (guint64) OTA_MQTT_MIN_CONNECT_INTERVAL_S * 1000,
                                     (guint64) OTA_MQTT_SHORT_SESSION_BACKOFF_MAX_S * 1000);
    delay = MAX (delay, ota_jitter (short_delay));
  }
  return (guint) delay;
}

/* What is left of the minimum interval since the last CONNECT. */
static guint
link_connect_gap_ms (OtaMqttLink *self)
{
  gint64 since, gap;

  if (self->unlimited_connects || self->last_connect_at == 0)
    return 0;
  since = g_get_monotonic_time () - self->last_connect_at;
  gap = (gint64) OTA_MQTT_MIN_CONNECT_INTERVAL_S * G_USEC_PER_SEC - since;
  return gap > 0 ? (guint) ((gap + 999) / 1000) : 0;
}

/* OpenSSL's default asks for a key's passphrase on the terminal: a daemon
 * must fail instead of waiting for a keyboard. */
static int
refuse_key_passphrase (char *buf, int size, int rwflag, void *userdata)
{
  return 0;
}

/* The static username/password, or fresh signed ones for this attempt. */
static int
link_set_credentials (OtaMqttLink *self, struct mosquitto *mosq, GError **error)
{
  g_autofree char *username = NULL;
  g_autofree char *password = NULL;

  g_clear_pointer (&self->session_username, g_free);
  if (self->credentials_func == NULL) {
    if (self->username == NULL)
      return MOSQ_ERR_SUCCESS;
    self->session_username = g_strdup (self->username);
    return mosquitto_username_pw_set (mosq, self->username, self->password);
  }
  if (!self->credentials_func (self->credentials_data, &username, &password, error))
    return MOSQ_ERR_INVAL;
  g_debug ("mqtt: signing in as %s", username);
  self->session_username = g_strdup (username);
  return mosquitto_username_pw_set (mosq, username, password);
}

static int
link_set_tls (OtaMqttLink *self, struct mosquitto *mosq)
{
  int rc = mosquitto_tls_set (mosq, self->ca_file, self->ca_file == NULL ? "/etc/ssl/certs" : NULL,
                              self->cert_file, self->key_file, refuse_key_passphrase);

  if (rc == MOSQ_ERR_SUCCESS)
    rc = mosquitto_tls_opts_set (mosq, 1 /* SSL_VERIFY_PEER */, NULL, NULL);
  /* The default, said out loud: the broker's host name is always checked. */
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mosquitto_tls_insecure_set (mosq, false);
  return rc;
}

static gboolean
link_set_options (OtaMqttLink *self, struct mosquitto *mosq, GError **error)
{
  int rc;

  mosquitto_int_option (mosq, MOSQ_OPT_PROTOCOL_VERSION, self->use_v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  rc = link_set_credentials (self, mosq, error);
  if (rc == MOSQ_ERR_INVAL && error != NULL && *error != NULL)
    return FALSE;
  if (rc == MOSQ_ERR_SUCCESS && self->tls)
    rc = link_set_tls (self, mosq);
  if (rc != MOSQ_ERR_SUCCESS) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "mqtt: %s",
                 rc == MOSQ_ERR_ERRNO ? g_strerror (errno) : mosquitto_strerror (rc));
    return FALSE;
  }
  return TRUE;
}

static struct mosquitto *
link_new_mosq (OtaMqttLink *self, GError **error)
{
  struct mosquitto *mosq = mosquitto_new (self->client_id, TRUE, self);

  if (mosq == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "mqtt: cannot create a client: %s",
                 g_strerror (errno));
    return NULL;
  }
  if (!link_set_options (self, mosq, error)) {
    mosquitto_destroy (mosq);
    return NULL;
  }
  mosquitto_connect_v5_callback_set (mosq, on_connect);
  mosquitto_disconnect_v5_callback_set (mosq, on_disconnect);
  mosquitto_message_v5_callback_set (mosq, on_message);
  mosquitto_publish_v5_callback_set (mosq, on_publish);
  mosquitto_subscribe_v5_callback_set (mosq, on_subscribe);
  mosquitto_log_callback_set (mosq, on_log);
  return mosq;
}

/* libmosquitto 2.0 keeps CONNECT properties only from connect_bind_v5(),
 * which connects blocking. Called with an invalid port, it stores them and
 * fails before any socket; connect_async() then sends them. */
static int
link_set_connect_properties (OtaMqttLink *self, struct mosquitto *mosq)
{
  mosquitto_property *connect_props = NULL;
  int rc = mosquitto_property_add_int32 (&connect_props, MQTT_PROP_MAXIMUM_PACKET_SIZE, self->max_packet_size);

  if (rc == MOSQ_ERR_SUCCESS) {
    rc = mosquitto_connect_bind_v5 (mosq, self->host, -1, (int) self->keepalive, NULL, connect_props);
    rc = rc == MOSQ_ERR_INVAL ? MOSQ_ERR_SUCCESS : rc;
  }
  mosquitto_property_free_all (&connect_props);
  return rc;
}

static void
link_connect (OtaMqttLink *self)
{
  g_autoptr (GError) error = NULL;
  int rc;

  link_drop_session (self);
  g_clear_pointer (&self->last_error, g_free);
  self->mosq = link_new_mosq (self, &error);
  if (self->mosq == NULL) {
    g_warning ("%s", error->message);
    link_schedule_retry (self, 0);
    return;
  }
  self->attempt_started = g_get_monotonic_time ();
  g_debug ("mqtt: connecting to %s:%u%s", self->host, self->port, self->tls ? " over TLS" : "");
  rc = self->use_v5 ? link_set_connect_properties (self, self->mosq) : MOSQ_ERR_SUCCESS;
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mosquitto_connect_async (self->mosq, self->host, (int) self->port, (int) self->keepalive);
  /* e.g. ECONNREFUSED on loopback: no disconnect callback comes. */
  if (rc != MOSQ_ERR_SUCCESS) {
    link_fail (self, rc, errno);
    return;
  }
  /* The CONNECT is on its way: the broker counts this request. */
  self->last_connect_at = g_get_monotonic_time ();
  self->connect_count++;
  /* libmosquitto starts both keepalive clocks here. */
  self->session_keepalive = self->keepalive;
  link_note_io (self, TRUE, TRUE);
  link_schedule_misc (self);
}

static gboolean
link_retry_cb (gpointer user_data)
{
  OtaMqttLink *self = user_data;

  self->retry_id = 0;
  if (self->running)
    link_connect (self);
  return G_SOURCE_REMOVE;
}

static void
link_schedule_retry (OtaMqttLink *self, guint min_delay_ms)
{
  guint delay;

  if (self->retry_id != 0 || !self->running)
    return;
  delay = MAX (MAX (link_backoff_ms (self), min_delay_ms), link_connect_gap_ms (self));
  self->attempt++;
  g_debug ("mqtt: next attempt in %u ms", delay);
  self->retry_id = g_timeout_add (delay, link_retry_cb, self);
}

/* A missing or unreadable TLS file is a configuration error, said once at
 * start rather than as a vague failure on every connection attempt. */
static gboolean
check_readable (const char *what, const char *path, GError **error)
{
  if (path == NULL || *path == '\0' || g_access (path, R_OK) == 0)
    return TRUE;
  return ota_set_error_from_errno (error, errno, "mqtt: cannot read %s %s", what, path);
}

OtaMqttLink *
ota_mqtt_link_new (const OtaMqttSettings *settings, GError **error)
{
  OtaMqttLink *self;

  g_return_val_if_fail (settings != NULL, NULL);

  if (settings->host == NULL || *settings->host == '\0' || settings->port == 0 || settings->port > 65535) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "mqtt: host and port are required");
    return NULL;
  }
  if (settings->tls && (!check_readable ("ca_file", settings->ca_file, error) ||
                        !check_readable ("cert_file", settings->cert_file, error) ||
                        !check_readable ("key_file", settings->key_file, error)))
    return NULL;
  self = g_object_new (OTA_TYPE_MQTT_LINK, NULL);
  self->host = g_strdup (settings->host);
  self->port = settings->port;
  self->client_id = g_strdup (settings->client_id);
  self->username = (settings->username && *settings->username) ? g_strdup (settings->username) : NULL;
  self->password = (settings->password && *settings->password) ? g_strdup (settings->password) : NULL;
  self->credentials_func = settings->credentials_func;
  self->credentials_data = settings->credentials_data;
  self->keepalive = settings->keepalive > 0 ? settings->keepalive : 60;
  self->tls = settings->tls;
  self->ca_file = (settings->ca_file && *settings->ca_file) ? g_strdup (settings->ca_file) : NULL;
  self->cert_file = (settings->cert_file && *settings->cert_file) ? g_strdup (settings->cert_file) : NULL;
  self->key_file = (settings->key_file && *settings->key_file) ? g_strdup (settings->key_file) : NULL;
  self->backoff_min_ms = settings->backoff_min_ms > 0 ? settings->backoff_min_ms : 500;
  self->backoff_max_ms = MAX (settings->backoff_max_ms > 0 ? settings->backoff_max_ms : 60000,
                              self->backoff_min_ms);
  self->max_packet_size = settings->max_packet_size;
  /* IV_OTAD_TEST_MQTT311: behave as with a broker of MQTT 3.1.1 only (tests
   * and benchmarks of that case; mosquitto 2 always speaks MQTT 5). */
  self->use_v5 = settings->max_packet_size > 0 && g_getenv ("IV_OTAD_TEST_MQTT311") == NULL;
  self->unlimited_connects = settings->unlimited_connects;
  return self;
}

void
ota_mqtt_link_add_subscription (OtaMqttLink *self, const char *topic, int qos)
{
  g_return_if_fail (OTA_IS_MQTT_LINK (self));
  ota_mqtt_link_subscribe (self, topic, qos);
}

static Subscription *
link_find_subscription (OtaMqttLink *self, const char *topic, guint *index)
{
  for (guint i = 0; i < self->subscriptions->len; i++) {
    Subscription *sub = g_ptr_array_index (self->subscriptions, i);
    if (g_str_equal (sub->topic, topic)) {
      if (index != NULL)
        *index = i;
      return sub;
    }
  }
  return NULL;
}

int
ota_mqtt_link_subscribe (OtaMqttLink *self, const char *topic, int qos)
{
  g_return_val_if_fail (OTA_IS_MQTT_LINK (self), -1);

  Subscription *sub = link_find_subscription (self, topic, NULL);
  int mid = -1;
  int rc;

  if (sub == NULL) {
    sub = g_new0 (Subscription, 1);
    sub->topic = g_strdup (topic);
    g_ptr_array_add (self->subscriptions, sub);
  }
  sub->qos = qos;
  if (!self->connected || self->mosq == NULL)
    return -1;
  rc = mosquitto_subscribe (self->mosq, &mid, topic, qos);
  link_note_io (self, FALSE, TRUE);
  if (rc != MOSQ_ERR_SUCCESS) {
    /* Made again at the next connect. */
    g_info ("mqtt: cannot subscribe to %s now: %s", topic, mosquitto_strerror (rc));
    return -1;
  }
  return mid;
}

void
ota_mqtt_link_unsubscribe (OtaMqttLink *self, const char *topic)
{
  guint index;

  g_return_if_fail (OTA_IS_MQTT_LINK (self));

  if (link_find_subscription (self, topic, &index) == NULL)
    return;
  g_ptr_array_remove_index (self->subscriptions, index);
  if (self->connected && self->mosq != NULL) {
    mosquitto_unsubscribe (self->mosq, NULL, topic);
    link_note_io (self, FALSE, TRUE);
  }
}

gboolean
ota_mqtt_link_get_message_retained (OtaMqttLink *self)
{
  g_return_val_if_fail (OTA_IS_MQTT_LINK (self), FALSE);
  return self->message_retained;
}

int
ota_mqtt_link_get_publish_reason (OtaMqttLink *self)
{
  g_return_val_if_fail (OTA_IS_MQTT_LINK (self), -1);
  return self->publish_reason;
}

guint
ota_mqtt_link_get_connect_count (OtaMqttLink *self)
{
  g_return_val_if_fail (OTA_IS_MQTT_LINK (self), 0);
  return self->connect_count;
}

void
ota_mqtt_link_start (OtaMqttLink *self)
{
  MqttSource *ms;

  g_return_if_fail (OTA_IS_MQTT_LINK (self));

  if (self->running)
    return;
  self->running = TRUE;
  if (self->source == NULL) {
    self->source = g_source_new (&mqtt_source_funcs, sizeof (MqttSource));
    ms = (MqttSource *) self->source;
    ms->link = self;
    ms->fd = -1;
    g_source_set_name (self->source, "mqtt-link");
    g_source_attach (self->source, NULL);
  }
  link_connect (self);
}

/* Writes what libmosquitto still holds (the DISCONNECT) to the socket,
 * waiting at most @timeout_ms for room in it. */
static void
link_flush (OtaMqttLink *self, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (self->mosq != NULL && mosquitto_want_write (self->mosq)) {
    struct pollfd pfd = { .fd = mosquitto_socket (self->mosq), .events = POLLOUT };
    gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;

    if (pfd.fd < 0 || left_ms <= 0 || poll (&pfd, 1, (int) left_ms) <= 0 ||
        mosquitto_loop_write (self->mosq, 1) != MOSQ_ERR_SUCCESS)
      return;
  }
}

void
ota_mqtt_link_stop (OtaMqttLink *self)
{
  g_return_if_fail (OTA_IS_MQTT_LINK (self));
  self->running = FALSE;
  g_clear_handle_id (&self->retry_id, g_source_remove);
  g_clear_handle_id (&self->misc_id, g_source_remove);
  if (self->mosq != NULL && self->connected) {
    /* A clean DISCONNECT: the broker drops the session without waiting for
     * the keepalive, and its log says "disconnected", not "closed". */
    int rc = mosquitto_disconnect (self->mosq);

    link_flush (self, FLUSH_TIMEOUT_MS);
    g_info ("mqtt: disconnected from %s:%u (%s)", self->host, self->port,
            rc == MOSQ_ERR_SUCCESS ? "clean shutdown" : mosquitto_strerror (rc));
  }
  link_drop_session (self);
}

gboolean
ota_mqtt_link_get_connected (OtaMqttLink *self)
{
  g_return_val_if_fail (OTA_IS_MQTT_LINK (self), FALSE);
  return self->connected;
}

gboolean
ota_mqtt_link_publish (OtaMqttLink *self, const char *topic, const void *payload, gsize length,
                       int qos, int *mid, GError **error)
{
  int rc;

  g_return_val_if_fail (OTA_IS_MQTT_LINK (self), FALSE);

  if (!self->connected || self->mosq == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED, "mqtt: not connected");
    return FALSE;
  }
  rc = mosquitto_publish (self->mosq, mid, topic, (int) length, payload, qos, FALSE);
  if (rc == MOSQ_ERR_SUCCESS) {
    link_note_io (self, FALSE, TRUE);
    return TRUE;
  }
  if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO) {
    /* The socket died before the loop noticed: start over now. */
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED, "mqtt: publish on %s failed: %s", topic,
                 rc == MOSQ_ERR_ERRNO ? g_strerror (errno) : mosquitto_strerror (rc));
    g_info ("mqtt: connection to %s:%u lost while publishing", self->host, self->port);
    link_drop_session (self);
    link_schedule_retry (self, 0);
    return FALSE;
  }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "mqtt: publish on %s failed: %s", topic,
               mosquitto_strerror (rc));
  return FALSE;
}

static void
ota_mqtt_link_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  OtaMqttLink *self = OTA_MQTT_LINK (object);

  switch (prop_id) {
  case PROP_CONNECTED:
    g_value_set_boolean (value, self->connected);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
  }
}

static void
ota_mqtt_link_finalize (GObject *object)
{
  OtaMqttLink *self = OTA_MQTT_LINK (object);

  self->running = FALSE;
  g_clear_handle_id (&self->retry_id, g_source_remove);
  g_clear_handle_id (&self->misc_id, g_source_remove);
  if (self->mosq != NULL)
    mosquitto_destroy (self->mosq);
  if (self->source != NULL) {
    g_source_destroy (self->source);
    g_source_unref (self->source);
  }
  g_ptr_array_unref (self->subscriptions);
  g_free (self->host);
  g_free (self->client_id);
  g_free (self->username);
  g_free (self->password);
  g_free (self->ca_file);
  g_free (self->cert_file);
  g_free (self->key_file);
  g_free (self->session_username);
  g_free (self->last_error);
  G_OBJECT_CLASS (ota_mqtt_link_parent_class)->finalize (object);
}

static void
ota_mqtt_link_class_init (OtaMqttLinkClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = ota_mqtt_link_get_property;
  object_class->finalize = ota_mqtt_link_finalize;

  props[PROP_CONNECTED] = g_param_spec_boolean ("connected", NULL, NULL, FALSE,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  signals[SIGNAL_MESSAGE] = g_signal_new ("message", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                          NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_BYTES);
  signals[SIGNAL_PUBLISHED] = g_signal_new ("published", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                            NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);
  signals[SIGNAL_SUBSCRIBED] = g_signal_new ("subscribed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                             NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_BOOLEAN);
  signals[SIGNAL_CONNECTION_CHANGED] =
    g_signal_new ("connection-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
ota_mqtt_link_init (OtaMqttLink *self)
{
  static gsize lib_init = 0;

  if (g_once_init_enter (&lib_init)) {
    mosquitto_lib_init ();
    g_once_init_leave (&lib_init, 1);
  }
  self->subscriptions = g_ptr_array_new_with_free_func (subscription_free);
}
