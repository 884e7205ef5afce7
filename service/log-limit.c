#include "log-limit.h"

typedef struct {
  gint64 window_start;
  guint written;    /* in the current window */
  guint suppressed; /* since the last line written or reported */
} LimitEntry;

struct _OtaLogLimiter {
  GMutex mutex;
  GHashTable *entries; /* text → LimitEntry */
};

OtaLogLimiter *
ota_log_limiter_new (void)
{
  OtaLogLimiter *self = g_new0 (OtaLogLimiter, 1);

  g_mutex_init (&self->mutex);
  self->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return self;
}

void
ota_log_limiter_free (OtaLogLimiter *self)
{
  if (self == NULL)
    return;
  g_hash_table_unref (self->entries);
  g_mutex_clear (&self->mutex);
  g_free (self);
}

static gboolean
window_over (const LimitEntry *entry, gint64 now_us)
{
  return now_us - entry->window_start >= (gint64) OTA_LOG_LIMIT_WINDOW_S * G_USEC_PER_SEC;
}

/* Forgets texts whose window is over and that hold nothing back. */
static void
limiter_prune (OtaLogLimiter *self, gint64 now_us)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    LimitEntry *entry = value;
    if (window_over (entry, now_us) && entry->suppressed == 0)
      g_hash_table_iter_remove (&iter);
  }
}

static LimitEntry *
limiter_lookup (OtaLogLimiter *self, const char *text, gint64 now_us)
{
  LimitEntry *entry = g_hash_table_lookup (self->entries, text);

  if (entry != NULL)
    return entry;
  if (g_hash_table_size (self->entries) >= OTA_LOG_LIMIT_MAX_TEXTS)
    limiter_prune (self, now_us);
  if (g_hash_table_size (self->entries) >= OTA_LOG_LIMIT_MAX_TEXTS)
    return NULL;
  entry = g_new0 (LimitEntry, 1);
  entry->window_start = now_us;
  g_hash_table_insert (self->entries, g_strdup (text), entry);
  return entry;
}

gboolean
ota_log_limiter_check (OtaLogLimiter *self, const char *text, gint64 now_us, guint *suppressed)
{
  g_return_val_if_fail (self != NULL, FALSE);

  G_GNUC_UNUSED g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->mutex);
  LimitEntry *entry = limiter_lookup (self, text, now_us);

  *suppressed = 0;
  if (entry == NULL)
    return TRUE;
  if (window_over (entry, now_us)) {
    entry->window_start = now_us;
    entry->written = 0;
  }
  if (entry->written >= OTA_LOG_LIMIT_BURST) {
    entry->suppressed++;
    return FALSE;
  }
  entry->written++;
  *suppressed = entry->suppressed;
  entry->suppressed = 0;
  return TRUE;
}

gboolean
ota_log_limiter_flush (OtaLogLimiter *self, gint64 now_us, void (*report) (const char *text, guint count, gpointer data),
                       gpointer data)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->mutex);
  g_autoptr (GPtrArray) texts = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) counts = g_array_new (FALSE, FALSE, sizeof (guint));
  gboolean pending = FALSE;
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, &key, &value)) {
    LimitEntry *entry = value;
    if (entry->suppressed == 0)
      continue;
    if (!window_over (entry, now_us)) {
      pending = TRUE;
      continue;
    }
    g_ptr_array_add (texts, g_strdup (key));
    g_array_append_val (counts, entry->suppressed);
    entry->suppressed = 0;
  }
  /* Reported without the lock: @report logs, and logging checks the limiter. */
  g_clear_pointer (&locker, g_mutex_locker_free);
  for (guint i = 0; i < texts->len; i++)
    report (g_ptr_array_index (texts, i), g_array_index (counts, guint, i), data);
  return pending;
}

/* ---- the process-wide filter of the agent's log writer ---- */

static OtaLogLimiter *process_limiter;
static gint flush_armed;

static void
report_held_back (const char *text, guint count, gpointer data)
{
  g_warning ("%s [repeated %u more times in %d s, not shown]", text, count, OTA_LOG_LIMIT_WINDOW_S);
}

static gboolean
flush_cb (gpointer data)
{
  if (ota_log_limiter_flush (process_limiter, g_get_monotonic_time (), report_held_back, NULL))
    return G_SOURCE_CONTINUE;
  g_atomic_int_set (&flush_armed, 0);
  return G_SOURCE_REMOVE;
}

static OtaLogLimiter *
process_limiter_get (void)
{
  static gsize once = 0;

  if (g_once_init_enter (&once)) {
    process_limiter = ota_log_limiter_new ();
    g_once_init_leave (&once, 1);
  }
  return process_limiter;
}

GLogWriterOutput
ota_log_limit_write (GLogLevelFlags level, const GLogField *fields, gsize n_fields, GLogWriterFunc writer,
                     gpointer user_data)
{
  g_autofree GLogField *copy = NULL;
  g_autofree char *annotated = NULL;
  const char *text = NULL;
  gsize message_index = 0;
  guint suppressed = 0;

  if (!(level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL)))
    return writer (level, fields, n_fields, user_data);
  for (gsize i = 0; i < n_fields; i++) {
    if (g_str_equal (fields[i].key, "MESSAGE") && fields[i].length < 0) {
      text = fields[i].value;
      message_index = i;
    }
  }
  if (text == NULL)
    return writer (level, fields, n_fields, user_data);
  if (!ota_log_limiter_check (process_limiter_get (), text, g_get_monotonic_time (), &suppressed)) {
    if (g_atomic_int_compare_and_exchange (&flush_armed, 0, 1))
      g_timeout_add_seconds (OTA_LOG_LIMIT_WINDOW_S, flush_cb, NULL);
    return G_LOG_WRITER_HANDLED;
  }
  if (suppressed == 0)
    return writer (level, fields, n_fields, user_data);
  copy = g_memdup2 (fields, n_fields * sizeof (GLogField));
  annotated = g_strdup_printf ("%s [%u identical lines before this one not shown]", text, suppressed);
  copy[message_index].value = annotated;
  return writer (level, copy, n_fields, user_data);
}
