/* The rate limit of repeated identical log lines (service/log-limit.c). */
#include "log-limit.h"

#define SECOND G_USEC_PER_SEC

static void
test_burst_then_counted (void)
{
  g_autoptr (OtaLogLimiter) limiter = ota_log_limiter_new ();
  guint suppressed = 99, written = 0;

  for (guint i = 0; i < 40000; i++) {
    if (ota_log_limiter_check (limiter, "cloud refused version report 1.0", SECOND, &suppressed)) {
      written++;
      g_assert_cmpuint (suppressed, ==, 0);
    }
  }
  g_assert_cmpuint (written, ==, OTA_LOG_LIMIT_BURST);
  /* The next window's first line carries the count of the ones held back. */
  g_assert_true (ota_log_limiter_check (limiter, "cloud refused version report 1.0",
                                        SECOND + OTA_LOG_LIMIT_WINDOW_S * SECOND, &suppressed));
  g_assert_cmpuint (suppressed, ==, 40000 - OTA_LOG_LIMIT_BURST);
}

static void
test_distinct_texts_independent (void)
{
  g_autoptr (OtaLogLimiter) limiter = ota_log_limiter_new ();
  guint suppressed;

  for (guint i = 0; i < OTA_LOG_LIMIT_BURST; i++)
    g_assert_true (ota_log_limiter_check (limiter, "a", 0, &suppressed));
  g_assert_false (ota_log_limiter_check (limiter, "a", 0, &suppressed));
  g_assert_true (ota_log_limiter_check (limiter, "b", 0, &suppressed));
}

typedef struct {
  char *text;
  guint count;
} Reported;

static void
record_report (const char *text, guint count, gpointer data)
{
  Reported *r = data;
  g_free (r->text);
  r->text = g_strdup (text);
  r->count = count;
}

static void
test_flush_reports_once_window_over (void)
{
  g_autoptr (OtaLogLimiter) limiter = ota_log_limiter_new ();
  Reported r = { NULL, 0 };
  guint suppressed;

  for (guint i = 0; i < OTA_LOG_LIMIT_BURST + 7; i++)
    ota_log_limiter_check (limiter, "x", 0, &suppressed);
  /* Window still open: nothing reported, but something pending. */
  g_assert_true (ota_log_limiter_flush (limiter, SECOND, record_report, &r));
  g_assert_null (r.text);
  g_assert_false (ota_log_limiter_flush (limiter, OTA_LOG_LIMIT_WINDOW_S * SECOND, record_report, &r));
  g_assert_cmpstr (r.text, ==, "x");
  g_assert_cmpuint (r.count, ==, 7);
  /* Reported once only. */
  r.count = 0;
  ota_log_limiter_flush (limiter, 2 * OTA_LOG_LIMIT_WINDOW_S * SECOND, record_report, &r);
  g_assert_cmpuint (r.count, ==, 0);
  g_free (r.text);
}

static void
test_many_texts_bounded (void)
{
  g_autoptr (OtaLogLimiter) limiter = ota_log_limiter_new ();
  guint suppressed;

  /* More distinct texts than tracked: the extra ones are never held back. */
  for (guint i = 0; i < OTA_LOG_LIMIT_MAX_TEXTS + 10; i++) {
    g_autofree char *text = g_strdup_printf ("t%u", i);
    for (guint j = 0; j < OTA_LOG_LIMIT_BURST; j++)
      g_assert_true (ota_log_limiter_check (limiter, text, 0, &suppressed));
  }
  g_assert_true (ota_log_limiter_check (limiter, "untracked", 0, &suppressed));
  g_assert_true (ota_log_limiter_check (limiter, "untracked", 0, &suppressed));
  g_assert_true (ota_log_limiter_check (limiter, "untracked", 0, &suppressed));
  g_assert_true (ota_log_limiter_check (limiter, "untracked", 0, &suppressed));
  g_assert_true (ota_log_limiter_check (limiter, "untracked", 0, &suppressed));
  g_assert_true (ota_log_limiter_check (limiter, "untracked", 0, &suppressed));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/log-limit/burst-then-counted", test_burst_then_counted);
  g_test_add_func ("/log-limit/distinct-texts-independent", test_distinct_texts_independent);
  g_test_add_func ("/log-limit/flush-reports-once-window-over", test_flush_reports_once_window_over);
  g_test_add_func ("/log-limit/many-texts-bounded", test_many_texts_bounded);
  return g_test_run ();
}
