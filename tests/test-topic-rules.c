/* Which topics apps may use through the agent (service/topic-rules.c). */
#include "error.h"
#include "topic-rules.h"

#define P "PROD1"
#define D "dev1"

static void
test_filter_syntax (void)
{
  const char *good[] = { "a", "a/b", "+", "#", "a/+/c", "a/#", "+/+/#", "$thing/up/" P "/" D, "/a", "a//b" };
  const char *bad[] = { "", "a#", "a/#/b", "a+/b", "a/b+", "#/a", "++", "a/\xff" };
  g_autofree char *long_filter = g_strnfill (OTA_TOPIC_MAX_LENGTH + 1, 'a');

  for (gsize i = 0; i < G_N_ELEMENTS (good); i++)
    g_assert_true (ota_topic_filter_check (good[i], NULL));
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_assert_false (ota_topic_filter_check (bad[i], &error));
    g_assert_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS);
  }
  g_assert_false (ota_topic_filter_check (long_filter, NULL));
  g_assert_true (ota_topic_name_check ("a/b", NULL));
  g_assert_false (ota_topic_name_check ("a/+", NULL));
  g_assert_false (ota_topic_name_check ("a/#", NULL));
  g_assert_false (ota_topic_name_check ("", NULL));
}

static void
test_matching (void)
{
  g_assert_true (ota_topic_filter_matches ("a/b", "a/b"));
  g_assert_false (ota_topic_filter_matches ("a/b", "a/b/c"));
  g_assert_false (ota_topic_filter_matches ("a/b/c", "a/b"));
  g_assert_true (ota_topic_filter_matches ("a/+", "a/b"));
  g_assert_false (ota_topic_filter_matches ("a/+", "a/b/c"));
  g_assert_true (ota_topic_filter_matches ("a/+", "a/"));
  g_assert_true (ota_topic_filter_matches ("a/#", "a"));
  g_assert_true (ota_topic_filter_matches ("a/#", "a/b/c"));
  g_assert_true (ota_topic_filter_matches ("#", "a/b"));
  g_assert_false (ota_topic_filter_matches ("#", "$SYS/x"));
  g_assert_false (ota_topic_filter_matches ("+/x", "$a/x"));
  g_assert_true (ota_topic_filter_matches ("$a/+", "$a/x"));
}

static void
test_covers (void)
{
  g_assert_true (ota_topic_filter_covers ("a/#", "a/b/#"));
  g_assert_true (ota_topic_filter_covers ("a/#", "a"));
  g_assert_true (ota_topic_filter_covers ("a/+/c", "a/b/c"));
  g_assert_true (ota_topic_filter_covers ("a/+/c", "a/+/c"));
  g_assert_true (ota_topic_filter_covers ("#", "a/+"));
  g_assert_false (ota_topic_filter_covers ("a/b", "a/+"));
  g_assert_false (ota_topic_filter_covers ("a/+", "a/#"));
  g_assert_false (ota_topic_filter_covers ("a/+/#", "a"));
  g_assert_false (ota_topic_filter_covers ("a/+", "a/b/c"));
  g_assert_false (ota_topic_filter_covers ("#", "$x/a"));
  g_assert_true (ota_topic_filter_covers ("$x/#", "$x/a"));
}

static void
assert_denied (OtaTopicRules *rules, const char *text, gboolean is_filter)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = is_filter ? ota_topic_rules_check_filter (rules, text, &error)
                          : ota_topic_rules_check_topic (rules, text, &error);

  if (ok)
    g_error ("\"%s\" allowed", text);
  g_assert_error (error, OTA_ERROR, OTA_ERROR_ACCESS_DENIED);
}

static void
assert_allowed (OtaTopicRules *rules, const char *text, gboolean is_filter)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = is_filter ? ota_topic_rules_check_filter (rules, text, &error)
                          : ota_topic_rules_check_topic (rules, text, &error);

  g_assert_no_error (error);
  g_assert_true (ok);
}

/* The default: the device's own namespace, anywhere in the topic. */
static void
test_default_namespace (void)
{
  g_autoptr (OtaTopicRules) rules = ota_topic_rules_new (P, D, NULL);

  assert_allowed (rules, "$thing/up/property/" P "/" D, FALSE);
  assert_allowed (rules, P "/" D "/event", FALSE);
  assert_allowed (rules, "x/" P "/" D, FALSE);
  assert_allowed (rules, "$thing/down/+/" P "/" D, TRUE);
  assert_allowed (rules, P "/" D "/#", TRUE);
  assert_allowed (rules, "+/" P "/" D "/+", TRUE);
  /* Another device of the product, or the levels apart. */
  assert_denied (rules, "$thing/up/property/" P "/dev2", FALSE);
  assert_denied (rules, P "/x/" D, FALSE);
  assert_denied (rules, D "/" P, FALSE);
  assert_denied (rules, P "/" D "x", FALSE);
  /* Filters reaching beyond it. */
  assert_denied (rules, "#", TRUE);
  assert_denied (rules, "+/+/#", TRUE);
  assert_denied (rules, P "/+/#", TRUE);
  assert_denied (rules, "+/" D "/#", TRUE);
  assert_denied (rules, P "/#", TRUE);
  /* The agent's own protocol, even in the namespace. */
  assert_denied (rules, "$ota/report/" P "/" D, FALSE);
  assert_denied (rules, "$ota/update/" P "/" D, TRUE);
  assert_denied (rules, "$ota/+/" P "/" D, TRUE);
}

static void
test_configured_filters (void)
{
  const char *allowed[] = { "$thing/+/property/" P "/" D, "app/" D "/#", "$ota/#", NULL };
  g_autoptr (OtaTopicRules) rules = ota_topic_rules_new (P, D, allowed);
  g_autofree char *described = ota_topic_rules_describe (rules);

  assert_allowed (rules, "$thing/up/property/" P "/" D, FALSE);
  assert_allowed (rules, "$thing/+/property/" P "/" D, TRUE);
  assert_allowed (rules, "app/" D, FALSE);
  assert_allowed (rules, "app/" D "/a/b", FALSE);
  assert_allowed (rules, "app/" D "/+/b", TRUE);
  assert_allowed (rules, "app/" D "/#", TRUE);
  /* Outside the list, even in the namespace. */
  assert_denied (rules, "$thing/up/event/" P "/" D, FALSE);
  assert_denied (rules, "$thing/#", TRUE);
  assert_denied (rules, "app/+/#", TRUE);
  assert_denied (rules, "#", TRUE);
  /* $ota never, whatever the list says. */
  assert_denied (rules, "$ota/report/" P "/" D, FALSE);
  assert_denied (rules, "$ota/#", TRUE);
  g_assert_nonnull (strstr (described, "app/" D "/#"));
}

static void
test_invalid_is_invalid_args (void)
{
  g_autoptr (OtaTopicRules) rules = ota_topic_rules_new (P, D, NULL);
  g_autoptr (GError) error = NULL;

  g_assert_false (ota_topic_rules_check_topic (rules, P "/" D "/+", &error));
  g_assert_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS);
  g_clear_error (&error);
  g_assert_false (ota_topic_rules_check_filter (rules, P "/" D "/#/x", &error));
  g_assert_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/topic-rules/filter-syntax", test_filter_syntax);
  g_test_add_func ("/topic-rules/matching", test_matching);
  g_test_add_func ("/topic-rules/covers", test_covers);
  g_test_add_func ("/topic-rules/default-namespace", test_default_namespace);
  g_test_add_func ("/topic-rules/configured-filters", test_configured_filters);
  g_test_add_func ("/topic-rules/invalid-is-invalid-args", test_invalid_is_invalid_args);
  return g_test_run ();
}
