/* Anti-rollback for signed images: per module, the highest security version
 * installed, and the one of the signed image handed over but not yet
 * reported done. Kept in state_dir as security.json (main firmware) or
 * security_<module>.json, replaced atomically and durably. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  guint32 installed;       /* highest security version reported done; 0 when none */
  char *pending_version;   /* NULL, or the version of the signed image handed over */
  guint32 pending;         /* its security version */
} OtaRollbackState;

void ota_rollback_state_clear (OtaRollbackState *state);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaRollbackState, ota_rollback_state_clear)

/* Pure parser, for tests and fuzzing; G_IO_ERROR_INVALID_DATA when damaged. */
gboolean ota_rollback_state_parse (const char *data, gsize length, OtaRollbackState *state, GError **error);

/* A missing file is the zero state (nothing installed yet). A damaged or
 * unreadable one is an error naming the file: signed offers are then refused
 * rather than letting an older image in. */
gboolean ota_rollback_state_load (const char *state_dir, const char *module, OtaRollbackState *state,
                                  GError **error);

/* Temp file, fsync, rename, directory fsync. */
gboolean ota_rollback_state_save (const char *state_dir, const char *module, const OtaRollbackState *state,
                                  GError **error);

G_END_DECLS
