/* The persisted outbox: reports that must never be lost wait here, in order,
 * until the broker acknowledges them — across disconnects and restarts. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _OtaOutbox OtaOutbox;

/* Bounds the file. Coalescing keeps the outbox far below it (per module one
 * report_version, one fail, and the burning and done reports the app made
 * while offline); only an app reporting without end can reach it, and then
 * the oldest reports after the head go. */
#define OTA_OUTBOX_MAX_ENTRIES 1024

/* Opens (or creates) the outbox file @path. A corrupt or truncated file is
 * renamed to @path + ".corrupt" with a warning and the outbox starts empty;
 * only an unreadable directory is an error. */
OtaOutbox *ota_outbox_open (const char *path, GError **error);
void ota_outbox_free (OtaOutbox *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaOutbox, ota_outbox_free)

/* Appends @payload and persists the queue (fdatasync + atomic rename) before
 * returning. When @coalesce_key is not NULL, the entries queued with the same
 * key are superseded by this one: they are removed (except the oldest entry,
 * which may be in flight) and @payload goes at the tail. The keys say what
 * supersedes what (module.c): "report_version:M" (the version M reports now),
 * "fail:M" (a fail of M is about an offer that M's newer offer replaced).
 * Reports without a key (burning, done) are never coalesced. On a write error the entry is still queued in memory and
 * @error says why it is not persisted. */
gboolean ota_outbox_push (OtaOutbox *self, const char *payload, const char *coalesce_key, GError **error);

/* The oldest entry, or NULL when empty. Owned by the outbox. */
const char *ota_outbox_peek (OtaOutbox *self);

/* Removes the oldest entry and persists. */
gboolean ota_outbox_pop (OtaOutbox *self, GError **error);

guint ota_outbox_get_length (OtaOutbox *self);

/* Pure parser of the file contents, for tests and fuzzing: fills @entries
 * (payloads) and @keys (coalesce keys, "" for none). */
gboolean ota_outbox_parse (const char *data, gsize length, GPtrArray *entries, GPtrArray *keys, GError **error);

G_END_DECLS
