#include "reporter.h"

struct _OtaReporter {
  GObject parent_instance;
  OtaMqttLink *link;
  OtaOutbox *outbox;
  char *topic;
  int inflight_mid; /* -1: nothing in flight */
};

G_DEFINE_TYPE (OtaReporter, ota_reporter, G_TYPE_OBJECT)

static void
reporter_kick (OtaReporter *self)
{
  g_autoptr (GError) error = NULL;
  const char *payload;
  int mid = -1;

  if (self->inflight_mid >= 0 || !ota_mqtt_link_get_connected (self->link))
    return;
  payload = ota_outbox_peek (self->outbox);
  if (payload == NULL)
    return;
  if (!ota_mqtt_link_publish (self->link, self->topic, payload, strlen (payload), 1, &mid, &error)) {
    /* Stays at the head of the outbox; sent again after the next connect. */
    g_info ("report deferred: %s", error->message);
    return;
  }
  self->inflight_mid = mid;
}

static void
on_published (OtaMqttLink *link, int mid, OtaReporter *self)
{
  g_autoptr (GError) error = NULL;

  if (mid != self->inflight_mid)
    return;
  /* MQTT 5 says when the broker refused it (an ACL): sending it again would
   * be refused again, forever; the refusal is logged and the report goes. */
  if (ota_mqtt_link_get_publish_reason (link) >= 0x80)
    g_warning ("the broker refused report %s (reason code 0x%02x)", ota_outbox_peek (self->outbox),
               (guint) ota_mqtt_link_get_publish_reason (link));
  else
    g_debug ("report delivered: %s", ota_outbox_peek (self->outbox));
  self->inflight_mid = -1;
  if (!ota_outbox_pop (self->outbox, &error))
    g_warning ("delivered report may be sent again after a restart: %s", error->message);
  reporter_kick (self);
}

static void
on_connection_changed (OtaMqttLink *link, gboolean connected, OtaReporter *self)
{
  /* A new session never resends the old one's messages: resend the head. */
  self->inflight_mid = -1;
  if (connected)
    reporter_kick (self);
}

OtaReporter *
ota_reporter_new (OtaMqttLink *link, OtaOutbox *outbox, const char *topic)
{
  OtaReporter *self = g_object_new (OTA_TYPE_REPORTER, NULL);

  g_return_val_if_fail (OTA_IS_MQTT_LINK (link), NULL);
  g_return_val_if_fail (outbox != NULL, NULL);

  self->link = g_object_ref (link);
  self->outbox = outbox;
  self->topic = g_strdup (topic);
  g_signal_connect_object (link, "published", G_CALLBACK (on_published), self, 0);
  g_signal_connect_object (link, "connection-changed", G_CALLBACK (on_connection_changed), self, 0);
  reporter_kick (self);
  return self;
}

void
ota_reporter_send_reliable (OtaReporter *self, const char *payload, const char *coalesce_key)
{
  g_autoptr (GError) error = NULL;

  g_return_if_fail (OTA_IS_REPORTER (self));

  if (!ota_outbox_push (self->outbox, payload, coalesce_key, &error))
    g_warning ("report not persisted, it will be lost if the agent stops before sending it: %s",
               error->message);
  reporter_kick (self);
}

void
ota_reporter_send_volatile (OtaReporter *self, const char *payload)
{
  g_autoptr (GError) error = NULL;

  g_return_if_fail (OTA_IS_REPORTER (self));
  g_return_if_fail (payload != NULL);

  if (!ota_mqtt_link_get_connected (self->link))
    return;
  if (!ota_mqtt_link_publish (self->link, self->topic, payload, strlen (payload), 0, NULL, &error))
    g_debug ("progress report dropped: %s", error->message);
}

static void
ota_reporter_finalize (GObject *object)
{
  OtaReporter *self = OTA_REPORTER (object);

  g_clear_object (&self->link);
  ota_outbox_free (self->outbox);
  g_free (self->topic);
  G_OBJECT_CLASS (ota_reporter_parent_class)->finalize (object);
}

static void
ota_reporter_class_init (OtaReporterClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = ota_reporter_finalize;
}

static void
ota_reporter_init (OtaReporter *self)
{
  self->inflight_mid = -1;
}
