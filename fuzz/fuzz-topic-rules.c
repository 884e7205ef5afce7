/* The topic rules on arbitrary filters and topics (apps send them over D-Bus,
 * the broker sends topics): input "FILTER\nTOPIC". The rules must be sound: a
 * filter they allow never matches a topic they refuse (an app would see a
 * message it may not), under the default namespace and a configured list;
 * and a filter that covers another matches every topic the other matches. */
#include "topic-rules.h"

#include "fuzz-common.h"

#include <string.h>

static void
check_sound (OtaTopicRules *rules, const char *filter, const char *topic)
{
  if (ota_topic_rules_check_filter (rules, filter, NULL) && ota_topic_name_check (topic, NULL) &&
      ota_topic_filter_matches (filter, topic))
    FUZZ_CHECK (ota_topic_rules_check_topic (rules, topic, NULL));
}

static void
check_covers (const char *outer, const char *inner, const char *topic)
{
  if (!ota_topic_filter_check (outer, NULL) || !ota_topic_filter_check (inner, NULL))
    return;
  FUZZ_CHECK (ota_topic_filter_covers (inner, inner));
  if (ota_topic_filter_covers (outer, inner) && ota_topic_name_check (topic, NULL) &&
      ota_topic_filter_matches (inner, topic))
    FUZZ_CHECK (ota_topic_filter_matches (outer, topic));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const allowed[] = { "$thing/+/+/P/D", "P/D/#", "a/+/c", "$ota/#", "+/x", NULL };
  g_autoptr (OtaTopicRules) by_default = ota_topic_rules_new ("P", "D", NULL);
  g_autoptr (OtaTopicRules) listed = ota_topic_rules_new ("P", "D", allowed);
  g_autofree char *text = NULL;
  char *topic;

  if (memchr (data, '\0', size) != NULL)
    return 0;
  text = g_strndup ((const char *) data, size);
  topic = strchr (text, '\n');
  if (topic == NULL)
    return 0;
  *topic++ = '\0';
  check_sound (by_default, text, topic);
  check_sound (listed, text, topic);
  for (guint i = 0; allowed[i] != NULL; i++)
    check_covers (allowed[i], text, topic);
  /* $ota is never an app's, whatever the list says. */
  if (g_str_has_prefix (topic, "$ota/"))
    FUZZ_CHECK (!ota_topic_rules_check_topic (listed, topic, NULL));
  return 0;
}
