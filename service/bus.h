/* The org.iv.Ota D-Bus adapter: exports the agent, checks callers, watches
 * owners, relays signals and keeps the properties true. */
#pragma once

#include "agent.h"

G_BEGIN_DECLS

#define OTA_TYPE_BUS (ota_bus_get_type ())
G_DECLARE_FINAL_TYPE (OtaBus, ota_bus, OTA, BUS, GObject)

#define OTA_BUS_NAME "org.iv.Ota"
#define OTA_BUS_PATH "/org/iv/Ota"

/*
 * Signals:
 *  "name-acquired" (): the well-known name is ours; nothing of the agent that
 *      another instance could disturb (the MQTT session above all) may start
 *      before this.
 *  "name-lost" (): the well-known name could not be owned (another agent owns
 *      it: logged with its pid) or was taken away.
 */

/* Exports @agent on @connection and requests the name org.iv.Ota. */
OtaBus *ota_bus_new (OtaAgent *agent, GDBusConnection *connection, GError **error);

G_END_DECLS
