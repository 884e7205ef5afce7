/* org.iv.Ota.Cloud: the device's one MQTT connection shared with every app.
 * Publish/Subscribe/Unsubscribe on the bus become the same on the agent's
 * MQTT link, within the topic rules; messages go back to the apps whose
 * filters match them, as a unicast Message signal. The broker subscription
 * is the union of the apps' filters (those another filter covers left out),
 * made again after every reconnect by the link. */
#pragma once

#include "mqtt-link.h"
#include "topic-rules.h"

#include <gio/gio.h>

G_BEGIN_DECLS

/* Payloads apps may publish and receive. */
#define OTA_CLOUD_MAX_PAYLOAD (64 * 1024)
/* Filters one caller may hold at once. */
#define OTA_CLOUD_MAX_FILTERS_PER_CLIENT 64
/* The offline queue of Publish with queue=true. */
#define OTA_CLOUD_QUEUE_MAX_MESSAGES 256
#define OTA_CLOUD_QUEUE_MAX_BYTES (4 * 1024 * 1024)

#define OTA_TYPE_CLOUD_RELAY (ota_cloud_relay_get_type ())
G_DECLARE_FINAL_TYPE (OtaCloudRelay, ota_cloud_relay, OTA, CLOUD_RELAY, GObject)

/* Exports org.iv.Ota.Cloud on @connection at @object_path; takes @rules. */
OtaCloudRelay *ota_cloud_relay_new (OtaMqttLink *link, OtaTopicRules *rules, GDBusConnection *connection,
                                    const char *object_path, GError **error);

G_END_DECLS
