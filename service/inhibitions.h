/* Inhibit cookies (docs/network.md): clients holding the downloads of a
 * module while they need the link. Pure bookkeeping; the agent applies the
 * reasons to its modules and the bus adapter releases a vanished holder's
 * cookies. Main thread only. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OTA_INHIBIT_REASON_MAX 256
#define OTA_INHIBIT_MAX_PER_HOLDER 32

typedef struct _OtaInhibitions OtaInhibitions;

OtaInhibitions *ota_inhibitions_new (void);
void ota_inhibitions_free (OtaInhibitions *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaInhibitions, ota_inhibitions_free)

/* Records that @holder (a unique bus name) holds the downloads of @module
 * (already validated) for @reason, and sets @cookie (never 0). Errors:
 * OTA_ERROR_INVALID_ARGS (@reason empty, longer than OTA_INHIBIT_REASON_MAX
 * characters, not UTF-8 or with control characters), OTA_ERROR_FAILED
 * (@holder already holds OTA_INHIBIT_MAX_PER_HOLDER cookies). */
gboolean ota_inhibitions_add (OtaInhibitions *self, const char *holder, const char *module, const char *reason,
                              guint32 *cookie, GError **error);

/* Ends @cookie if @holder holds it; returns the module it was for (free it),
 * or NULL with OTA_ERROR_NOT_OWNER. */
char *ota_inhibitions_remove (OtaInhibitions *self, const char *holder, guint32 cookie, GError **error);

/* Ends every cookie of @holder; returns the modules they were for (each
 * once, possibly none). */
GPtrArray *ota_inhibitions_remove_holder (OtaInhibitions *self, const char *holder);

gboolean ota_inhibitions_has_holder (OtaInhibitions *self, const char *holder);

/* The reasons of the cookies held for @module, oldest first (NULL-terminated,
 * empty when none; free with g_strfreev()). */
char **ota_inhibitions_get_reasons (OtaInhibitions *self, const char *module);

G_END_DECLS
