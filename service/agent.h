/* The agent: the modules, their routing by fw_type, and the cloud session
 * (MQTT link + reporter). The bus adapter calls in with the caller's identity;
 * the agent knows nothing of D-Bus. */
#pragma once

#include "config.h"
#include "module.h"
#include "mqtt-link.h"

#include <gio/gio.h>
#include <sys/types.h>

G_BEGIN_DECLS

/* A misbehaving app cannot make the agent track modules without bound. */
#define OTA_AGENT_MAX_MODULES 64

#define OTA_TYPE_AGENT (ota_agent_get_type ())
G_DECLARE_FINAL_TYPE (OtaAgent, ota_agent, OTA, AGENT, GObject)

/*
 * Signals:
 *  "offered" (const char *module, const char *version, guint64 size)
 *  "progress" (const char *module, const char *version, const char *state, guint percent,
 *              guint64 downloaded, guint64 total, int result_code, const char *result_msg,
 *              gboolean transfer): the module's status changed (the Modules property
 *              with it); @transfer when only a download's byte counts moved, after
 *              every chunk (the bus adapter rate-limits those).
 *  "firmware-ready" (const char *module, const char *version, const char *path, guint64 size, const char *md5)
 *  "modules-changed" (): a module came or went (the Modules property changed).
 *  "connection-changed" (gboolean connected)
 */

/* Takes ownership of @config. Creates state_dir, opens the outbox. */
OtaAgent *ota_agent_new (OtaConfig *config, GError **error);

/* Connects to the cloud. */
void ota_agent_start (OtaAgent *self);
/* Clean shutdown, once the main loop has stopped: stops installers, cancels
 * downloads, flushes reports, sends the MQTT DISCONNECT, then iterates the
 * default main context until the cancelled downloads' workers have written
 * their last buffers and checkpoint (at most OTA_AGENT_SHUTDOWN_WAIT_S; past
 * that the last periodic checkpoint still describes a valid prefix). */
#define OTA_AGENT_SHUTDOWN_WAIT_S 10
void ota_agent_shutdown (OtaAgent *self);

gboolean ota_agent_get_connected (OtaAgent *self);

/* The agent's MQTT session, which the cloud relay shares with apps. */
OtaMqttLink *ota_agent_get_link (OtaAgent *self);

/* The D-Bus methods; @owner is the caller's unique name. Errors are OTA_ERROR. */
gboolean ota_agent_init_module (OtaAgent *self, const char *owner, uid_t uid, gid_t gid, const char *module,
                                const char *version, const char *firmware_dir, gboolean ask_before_download,
                                GError **error);
gboolean ota_agent_prepare (OtaAgent *self, const char *owner, const char *module, const char *version,
                            gboolean accept, GError **error);
gboolean ota_agent_report_progress (OtaAgent *self, const char *owner, const char *module, const char *state,
                                    int percent, int result_code, const char *result_msg, GError **error);
gboolean ota_agent_cancel (OtaAgent *self, const char *owner, const char *module, GError **error);
gboolean ota_agent_check_now (OtaAgent *self, const char *module, GError **error);
gboolean ota_agent_exit (OtaAgent *self, const char *owner, const char *module, GError **error);
/* GetStatus of @module (see OtaModuleStatus for how long its strings live).
 * Errors: OTA_ERROR_INVALID_ARGS (a bad name), OTA_ERROR_NO_SUCH_MODULE. */
gboolean ota_agent_get_status (OtaAgent *self, const char *module, OtaModuleStatus *status, GError **error);

typedef void (*OtaAgentStatusFunc) (const char *module, const OtaModuleStatus *status, gpointer user_data);
/* Calls @func with the status of every module the agent knows (the Modules
 * property). */
void ota_agent_foreach_status (OtaAgent *self, OtaAgentStatusFunc func, gpointer user_data);

/* The agent's own installer of @module cannot register it now (RAUC absent,
 * version_command failing...): the module is listed with @problem as its
 * result (fail -5) until it can; NULL clears it. */
void ota_agent_set_module_problem (OtaAgent *self, const char *module, const char *problem);

/* @owner left the bus: every module it owned is released. */
void ota_agent_release_owner (OtaAgent *self, const char *owner);
/* Whether @owner still owns any module. */
gboolean ota_agent_has_owner (OtaAgent *self, const char *owner);

/* Inhibit (docs/network.md): @holder (unique bus name) holds the downloads
 * of @module for @reason; sets @cookie. Errors: OTA_ERROR_INVALID_ARGS,
 * OTA_ERROR_FAILED (too many cookies). */
gboolean ota_agent_inhibit (OtaAgent *self, const char *holder, const char *module, const char *reason,
                            guint32 *cookie, GError **error);
/* Uninhibit; OTA_ERROR_NOT_OWNER unless @holder holds @cookie. */
gboolean ota_agent_uninhibit (OtaAgent *self, const char *holder, guint32 cookie, GError **error);
/* @holder left the bus: its cookies end. */
void ota_agent_release_holder (OtaAgent *self, const char *holder);
/* TRUE while @holder holds an inhibit cookie. */
gboolean ota_agent_has_holder (OtaAgent *self, const char *holder);

G_END_DECLS
