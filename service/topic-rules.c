#include "topic-rules.h"

#include "error.h"

#include <string.h>

struct _OtaTopicRules {
  char *product_id;
  char *device_name;
  GStrv allowed; /* NULL: the device's namespace */
};

static gboolean
topic_check_common (const char *what, const char *text, GError **error)
{
  gsize length = strlen (text);

  if (length == 0 || length > OTA_TOPIC_MAX_LENGTH) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "a %s is 1..%d bytes long", what, OTA_TOPIC_MAX_LENGTH);
    return FALSE;
  }
  if (!g_utf8_validate (text, (gssize) length, NULL)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "a %s is UTF-8 text", what);
    return FALSE;
  }
  return TRUE;
}

gboolean
ota_topic_name_check (const char *topic, GError **error)
{
  if (!topic_check_common ("topic", topic, error))
    return FALSE;
  if (strpbrk (topic, "+#") != NULL) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "topic \"%s\" contains a wildcard ('+' or '#')", topic);
    return FALSE;
  }
  return TRUE;
}

static gboolean
filter_level_is_valid (const char *level, gboolean last)
{
  if (strpbrk (level, "+#") == NULL)
    return TRUE;
  if (g_str_equal (level, "+"))
    return TRUE;
  return last && g_str_equal (level, "#");
}

gboolean
ota_topic_filter_check (const char *filter, GError **error)
{
  g_auto (GStrv) levels = NULL;

  if (!topic_check_common ("filter", filter, error))
    return FALSE;
  levels = g_strsplit (filter, "/", -1);
  for (guint i = 0; levels[i] != NULL; i++) {
    if (!filter_level_is_valid (levels[i], levels[i + 1] == NULL)) {
      g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS,
                   "filter \"%s\": '+' must be a whole level and '#' the whole last level", filter);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
ota_topic_filter_matches (const char *filter, const char *topic)
{
  g_return_val_if_fail (filter != NULL, FALSE);
  g_return_val_if_fail (topic != NULL, FALSE);

  g_auto (GStrv) f = g_strsplit (filter, "/", -1);
  g_auto (GStrv) t = g_strsplit (topic, "/", -1);
  guint i;

  if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
    return FALSE;
  for (i = 0; f[i] != NULL; i++) {
    if (g_str_equal (f[i], "#"))
      return TRUE; /* also the parent level: "a/#" matches "a" */
    if (t[i] == NULL)
      return FALSE;
    if (!g_str_equal (f[i], "+") && !g_str_equal (f[i], t[i]))
      return FALSE;
  }
  return t[i] == NULL;
}

gboolean
ota_topic_filter_covers (const char *outer, const char *inner)
{
  g_return_val_if_fail (outer != NULL, FALSE);
  g_return_val_if_fail (inner != NULL, FALSE);

  g_auto (GStrv) o = g_strsplit (outer, "/", -1);
  g_auto (GStrv) n = g_strsplit (inner, "/", -1);
  guint i;

  /* A wildcard first level of @outer misses the '$' topics @inner may name. */
  if ((outer[0] == '+' || outer[0] == '#') && inner[0] == '$')
    return FALSE;
  for (i = 0; o[i] != NULL; i++) {
    if (g_str_equal (o[i], "#"))
      return TRUE;
    if (n[i] == NULL || g_str_equal (n[i], "#"))
      return FALSE; /* @inner ends (or goes on without bound) where @outer needs a level */
    if (!g_str_equal (o[i], "+") && !g_str_equal (o[i], n[i]))
      return FALSE; /* a literal of @outer against another literal, or against '+' */
  }
  return n[i] == NULL;
}

OtaTopicRules *
ota_topic_rules_new (const char *product_id, const char *device_name, const char *const *allowed)
{
  OtaTopicRules *self = g_new0 (OtaTopicRules, 1);

  self->product_id = g_strdup (product_id);
  self->device_name = g_strdup (device_name);
  self->allowed = allowed != NULL ? g_strdupv ((GStrv) allowed) : NULL;
  return self;
}

void
ota_topic_rules_free (OtaTopicRules *self)
{
  if (self == NULL)
    return;
  g_free (self->product_id);
  g_free (self->device_name);
  g_strfreev (self->allowed);
  g_free (self);
}

/* The agent's own protocol: apps never publish there nor listen to it. */
static gboolean
is_agent_topic (const char *text)
{
  return g_str_equal (text, "$ota") || g_str_has_prefix (text, "$ota/");
}

/* Levels @product_id and @device_name next to each other, both literal:
 * then every topic @text can match has them, and only then (a wildcard can
 * always be something else). */
static gboolean
in_namespace (OtaTopicRules *self, const char *text)
{
  g_auto (GStrv) levels = g_strsplit (text, "/", -1);

  for (guint i = 0; levels[i] != NULL && levels[i + 1] != NULL; i++) {
    if (g_str_equal (levels[i], self->product_id) && g_str_equal (levels[i + 1], self->device_name))
      return TRUE;
  }
  return FALSE;
}

static gboolean
rules_allow (OtaTopicRules *self, const char *text, gboolean is_filter)
{
  if (is_agent_topic (text))
    return FALSE;
  if (self->allowed == NULL)
    return in_namespace (self, text);
  for (guint i = 0; self->allowed[i] != NULL; i++) {
    if (is_filter ? ota_topic_filter_covers (self->allowed[i], text)
                  : ota_topic_filter_matches (self->allowed[i], text))
      return TRUE;
  }
  return FALSE;
}

static gboolean
rules_deny (OtaTopicRules *self, const char *what, const char *text, GError **error)
{
  g_autofree char *allowed = ota_topic_rules_describe (self);

  g_set_error (error, OTA_ERROR, OTA_ERROR_ACCESS_DENIED, "%s \"%s\" is outside the topics apps may use (%s)", what,
               text, allowed);
  return FALSE;
}

gboolean
ota_topic_rules_check_topic (OtaTopicRules *self, const char *topic, GError **error)
{
  g_return_val_if_fail (self != NULL, FALSE);
  if (!ota_topic_name_check (topic, error))
    return FALSE;
  return rules_allow (self, topic, FALSE) || rules_deny (self, "topic", topic, error);
}

gboolean
ota_topic_rules_check_filter (OtaTopicRules *self, const char *filter, GError **error)
{
  g_return_val_if_fail (self != NULL, FALSE);
  if (!ota_topic_filter_check (filter, error))
    return FALSE;
  return rules_allow (self, filter, TRUE) || rules_deny (self, "filter", filter, error);
}

char *
ota_topic_rules_describe (OtaTopicRules *self)
{
  g_autofree char *list = NULL;

  g_return_val_if_fail (self != NULL, NULL);

  if (self->allowed == NULL)
    return g_strdup_printf ("topics with the levels %s/%s, except $ota/...", self->product_id, self->device_name);
  list = g_strjoinv (";", self->allowed);
  return g_strdup_printf ("allowed_topics %s, except $ota/...", list);
}

static const char *
topic_placeholder_value (const char *name, gsize length, const char *product_id, const char *device_name)
{
  if (length == strlen ("product_id") && strncmp (name, "product_id", length) == 0)
    return product_id;
  if (length == strlen ("device_name") && strncmp (name, "device_name", length) == 0)
    return device_name;
  return NULL;
}

GString *
ota_topic_expand (const char *template, const char *product_id, const char *device_name, GError **error)
{
  g_return_val_if_fail (template != NULL, NULL);
  g_return_val_if_fail (product_id != NULL && device_name != NULL, NULL);

  g_autoptr (GString) topic = g_string_new (NULL);
  const char *p = template;

  while (*p != '\0') {
    const char *end = NULL;
    const char *value = NULL;

    if (*p != '{') {
      g_string_append_c (topic, *p++);
      continue;
    }
    end = strchr (p, '}');
    if (end == NULL) {
      g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "unterminated placeholder in \"%s\"", template);
      return NULL;
    }
    value = topic_placeholder_value (p + 1, end - p - 1, product_id, device_name);
    if (value == NULL) {
      g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "unknown placeholder %.*s", (int) (end - p + 1), p);
      return NULL;
    }
    g_string_append (topic, value);
    p = end + 1;
  }
  return g_steal_pointer (&topic);
}
