/* Rate limit of repeated identical log lines: a peer that sends the same bad
 * message 40,000 times must not write 40,000 lines. Each distinct text may be
 * written OTA_LOG_LIMIT_BURST times per OTA_LOG_LIMIT_WINDOW_S; the copies over
 * that are counted, and the count is written with the next copy allowed (or
 * by ota_log_limiter_flush() once the window is over). Thread-safe. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OTA_LOG_LIMIT_BURST 5
#define OTA_LOG_LIMIT_WINDOW_S 60
/* Distinct texts tracked at once; beyond, lines are written unlimited. */
#define OTA_LOG_LIMIT_MAX_TEXTS 512

typedef struct _OtaLogLimiter OtaLogLimiter;

OtaLogLimiter *ota_log_limiter_new (void);
void ota_log_limiter_free (OtaLogLimiter *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaLogLimiter, ota_log_limiter_free)

/* Whether a line with @text, logged at monotonic time @now_us, is to be
 * written. When it is, *@suppressed is the number of identical lines held
 * back since the last one written (write it along). */
gboolean ota_log_limiter_check (OtaLogLimiter *self, const char *text, gint64 now_us, guint *suppressed);

/* Called for every text whose window ended by @now_us with lines held back
 * in it: (@text, count). Those counts are then forgotten. Returns whether
 * some window is still open with lines held back. */
gboolean ota_log_limiter_flush (OtaLogLimiter *self, gint64 now_us, void (*report) (const char *text, guint count,
                                                                                    gpointer data),
                                gpointer data);


/* For a GLogWriterFunc: warnings and criticals go through one process-wide
 * limiter before @writer; the other levels go straight to it. A line written
 * after held-back copies says how many; held-back copies nobody repeats
 * after the window are summed up in one line from the main context. */
GLogWriterOutput ota_log_limit_write (GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                                      GLogWriterFunc writer, gpointer user_data);

G_END_DECLS
