/* Sends device reports to the cloud: the reliable ones through the persisted
 * outbox, one in flight at a time so they reach the broker in order; the
 * volatile ones (download progress) at QoS 0 only while connected. */
#pragma once

#include "mqtt-link.h"
#include "outbox.h"

G_BEGIN_DECLS

#define OTA_TYPE_REPORTER (ota_reporter_get_type ())
G_DECLARE_FINAL_TYPE (OtaReporter, ota_reporter, OTA, REPORTER, GObject)

/* Takes ownership of @outbox; publishes on @topic through @link. */
OtaReporter *ota_reporter_new (OtaMqttLink *link, OtaOutbox *outbox, const char *topic);

/* Queues @payload for QoS 1 delivery; survives disconnects and restarts.
 * @coalesce_key: see ota_outbox_push(). Persisting errors are logged: the
 * report is still sent while the agent runs. */
void ota_reporter_send_reliable (OtaReporter *self, const char *payload, const char *coalesce_key);

/* Publishes @payload at QoS 0 if connected; dropped otherwise. */
void ota_reporter_send_volatile (OtaReporter *self, const char *payload);

G_END_DECLS
