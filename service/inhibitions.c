/* Inhibit cookies: who holds which module's downloads, and why. */
#include "inhibitions.h"

#include "error.h"

typedef struct {
  guint32 cookie;
  char *holder;
  char *module;
  char *reason;
} OtaInhibition;

struct _OtaInhibitions {
  GPtrArray *items; /* OtaInhibition, oldest first */
  guint32 next_cookie;
};

static void
ota_inhibition_free (OtaInhibition *item)
{
  g_free (item->holder);
  g_free (item->module);
  g_free (item->reason);
  g_free (item);
}

OtaInhibitions *
ota_inhibitions_new (void)
{
  OtaInhibitions *self = g_new0 (OtaInhibitions, 1);

  self->items = g_ptr_array_new_with_free_func ((GDestroyNotify) ota_inhibition_free);
  self->next_cookie = 1;
  return self;
}

void
ota_inhibitions_free (OtaInhibitions *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->items);
  g_free (self);
}

static gboolean
reason_is_valid (const char *reason)
{
  glong length;

  if (reason == NULL || !g_utf8_validate (reason, -1, NULL))
    return FALSE;
  length = g_utf8_strlen (reason, -1);
  if (length < 1 || length > OTA_INHIBIT_REASON_MAX)
    return FALSE;
  for (const char *p = reason; *p != '\0'; p = g_utf8_next_char (p)) {
    if (g_unichar_iscntrl (g_utf8_get_char (p)))
      return FALSE;
  }
  return TRUE;
}

static guint
count_held_by (OtaInhibitions *self, const char *holder)
{
  guint n = 0;

  for (guint i = 0; i < self->items->len; i++) {
    const OtaInhibition *item = g_ptr_array_index (self->items, i);
    n += g_str_equal (item->holder, holder);
  }
  return n;
}

/* Cookies are not reused while held: after a wrap, skip 0 and live ones. */
static guint32
next_free_cookie (OtaInhibitions *self)
{
  for (;;) {
    guint32 cookie = self->next_cookie++;
    gboolean taken = cookie == 0;

    for (guint i = 0; !taken && i < self->items->len; i++)
      taken = ((OtaInhibition *) g_ptr_array_index (self->items, i))->cookie == cookie;
    if (!taken)
      return cookie;
  }
}

gboolean
ota_inhibitions_add (OtaInhibitions *self, const char *holder, const char *module, const char *reason,
                     guint32 *cookie, GError **error)
{
  OtaInhibition *item;

  g_return_val_if_fail (self != NULL, FALSE);

  if (!reason_is_valid (reason)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS,
                 "reason must be 1..%d characters without control characters", OTA_INHIBIT_REASON_MAX);
    return FALSE;
  }
  if (count_held_by (self, holder) >= OTA_INHIBIT_MAX_PER_HOLDER) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "a client may hold at most %d inhibit cookies",
                 OTA_INHIBIT_MAX_PER_HOLDER);
    return FALSE;
  }
  item = g_new0 (OtaInhibition, 1);
  item->cookie = next_free_cookie (self);
  item->holder = g_strdup (holder);
  item->module = g_strdup (module);
  item->reason = g_strdup (reason);
  g_ptr_array_add (self->items, item);
  *cookie = item->cookie;
  return TRUE;
}

char *
ota_inhibitions_remove (OtaInhibitions *self, const char *holder, guint32 cookie, GError **error)
{
  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (holder != NULL, NULL);
  for (guint i = 0; i < self->items->len; i++) {
    OtaInhibition *item = g_ptr_array_index (self->items, i);

    if (item->cookie == cookie && g_str_equal (item->holder, holder)) {
      char *module = g_strdup (item->module);
      g_ptr_array_remove_index (self->items, i);
      return module;
    }
  }
  g_set_error (error, OTA_ERROR, OTA_ERROR_NOT_OWNER, "this client holds no inhibit cookie %u", cookie);
  return NULL;
}

static gboolean
strings_contain (GPtrArray *strings, const char *text)
{
  for (guint i = 0; i < strings->len; i++) {
    if (g_str_equal (g_ptr_array_index (strings, i), text))
      return TRUE;
  }
  return FALSE;
}

GPtrArray *
ota_inhibitions_remove_holder (OtaInhibitions *self, const char *holder)
{
  GPtrArray *modules = g_ptr_array_new_with_free_func (g_free);

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (holder != NULL, NULL);

  for (guint i = self->items->len; i > 0; i--) {
    OtaInhibition *item = g_ptr_array_index (self->items, i - 1);

    if (!g_str_equal (item->holder, holder))
      continue;
    if (!strings_contain (modules, item->module))
      g_ptr_array_add (modules, g_strdup (item->module));
    g_ptr_array_remove_index (self->items, i - 1);
  }
  return modules;
}

gboolean
ota_inhibitions_has_holder (OtaInhibitions *self, const char *holder)
{
  g_return_val_if_fail (self != NULL, FALSE);
  return count_held_by (self, holder) > 0;
}

char **
ota_inhibitions_get_reasons (OtaInhibitions *self, const char *module)
{
  GPtrArray *reasons = g_ptr_array_new ();

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (module != NULL, NULL);

  for (guint i = 0; i < self->items->len; i++) {
    const OtaInhibition *item = g_ptr_array_index (self->items, i);

    if (g_str_equal (item->module, module))
      g_ptr_array_add (reasons, g_strdup (item->reason));
  }
  g_ptr_array_add (reasons, NULL);
  return (char **) g_ptr_array_free (reasons, FALSE);
}
