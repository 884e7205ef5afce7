/* Which cloud topics apps may use through the agent's connection: MQTT topic
 * and filter syntax, matching, and the allowed set ([cloud] allowed_topics,
 * or by default the device's own namespace). Pure: strings in, answers out. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Topics and filters apps may use are at most this long (bytes). */
#define OTA_TOPIC_MAX_LENGTH 1024

/* A topic to publish on: 1..OTA_TOPIC_MAX_LENGTH bytes of UTF-8, no '+', '#'
 * or NUL. Errors are OTA_ERROR_INVALID_ARGS. */
gboolean ota_topic_name_check (const char *topic, GError **error);

/* An MQTT filter: like a topic, but '+' may be a whole level and '#' the
 * whole last level. Errors are OTA_ERROR_INVALID_ARGS. */
gboolean ota_topic_filter_check (const char *filter, GError **error);

/* MQTT matching of @topic by a valid @filter. A filter that starts with a
 * wildcard does not match topics that start with '$' (MQTT 3.1.1 4.7.2). */
gboolean ota_topic_filter_matches (const char *filter, const char *topic);

/* Whether every topic @inner (a valid filter) can match is matched by
 * @outer (a valid filter). */
gboolean ota_topic_filter_covers (const char *outer, const char *inner);

typedef struct _OtaTopicRules OtaTopicRules;

/* @allowed: the expanded filters of [cloud] allowed_topics, or NULL for the
 * default: any topic whose levels contain @product_id immediately followed by
 * @device_name. Topics of the agent's own protocol ($ota/...) are never
 * allowed. */
OtaTopicRules *ota_topic_rules_new (const char *product_id, const char *device_name, const char *const *allowed);
void ota_topic_rules_free (OtaTopicRules *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaTopicRules, ota_topic_rules_free)

/* Whether an app may publish on @topic, or receive a message on it. Errors:
 * OTA_ERROR_INVALID_ARGS (syntax), OTA_ERROR_ACCESS_DENIED. */
gboolean ota_topic_rules_check_topic (OtaTopicRules *self, const char *topic, GError **error);

/* Whether an app may subscribe to @filter: only when every topic it can
 * match is allowed, so "#" or "+/+/#" reaching beyond them is refused.
 * Errors: OTA_ERROR_INVALID_ARGS (syntax), OTA_ERROR_ACCESS_DENIED. */
gboolean ota_topic_rules_check_filter (OtaTopicRules *self, const char *filter, GError **error);

/* For logs and docs: the allowed set in words. */
char *ota_topic_rules_describe (OtaTopicRules *self);

/* The topics of the $ota protocol unless configured otherwise (templates). */
#define OTA_DEFAULT_REPORT_TOPIC "$ota/report/{product_id}/{device_name}"
#define OTA_DEFAULT_UPDATE_TOPIC "$ota/update/{product_id}/{device_name}"

/* @template with every {product_id} and {device_name} substituted; the
 * only placeholders there are. Errors: OTA_ERROR_INVALID_ARGS for an
 * unterminated or unknown placeholder. */
GString *ota_topic_expand (const char *template, const char *product_id, const char *device_name, GError **error);

G_END_DECLS
