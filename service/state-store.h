/* Small persisted facts of the agent in state_dir: the "rebooting" marker that
 * lets the Init after a reboot report done or fail by itself, and the cycle
 * record (an image handed over as ready, or being burnt) that lets a
 * restarted agent, or a new owner, finish the cycle. Every write is atomic
 * and durable (temp file, fsync, rename, directory fsync). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *target_version;
  char *task_id;              /* NULL when the offer had none */
  gboolean task_id_is_number;
  /* Who said "rebooting", so that the same app process registering again
   * after an agent restart is not taken for the app after the reboot.
   * NULL in markers of older agents. */
  char *owner;                /* unique bus name */
  char *boot_id;              /* ota_state_boot_id() when written */
} OtaRebootMarker;

void ota_reboot_marker_clear (OtaRebootMarker *marker);

/* Writes state_dir/rebooting[_<module>].json atomically (fsync + rename). */
gboolean ota_reboot_marker_save (const char *state_dir, const char *module,
                                 const OtaRebootMarker *marker, GError **error);

/* G_IO_ERROR_NOT_FOUND when there is none; a damaged marker is
 * G_IO_ERROR_INVALID_DATA. */
gboolean ota_reboot_marker_load (const char *state_dir, const char *module,
                                 OtaRebootMarker *marker, GError **error);

/* Pure parser, for tests and fuzzing. */
gboolean ota_reboot_marker_parse (const char *data, gsize length, OtaRebootMarker *marker, GError **error);

gboolean ota_reboot_marker_delete (const char *state_dir, const char *module, GError **error);

/* Where a cycle stands once its image was handed over. */
typedef enum {
  OTA_CYCLE_PHASE_READY,    /* FirmwareReady was sent: a verified image lies at @path */
  OTA_CYCLE_PHASE_BURNING,  /* the owner reported "burning" */
} OtaCyclePhase;

typedef struct {
  OtaCyclePhase phase;
  char *target_version;
  char *md5sum;
  guint64 file_size;
  char *path;                 /* absolute path announced in FirmwareReady */
  char *task_id;              /* NULL when the offer had none */
  gboolean task_id_is_number;
  char *owner;                /* unique bus name of the owner then */
  char *boot_id;
} OtaCycleRecord;

void ota_cycle_record_clear (OtaCycleRecord *record);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaCycleRecord, ota_cycle_record_clear)

const char *ota_cycle_phase_to_string (OtaCyclePhase phase);

/* Writes state_dir/cycle[_<module>].json atomically and durably. */
gboolean ota_cycle_record_save (const char *state_dir, const char *module, const OtaCycleRecord *record,
                                GError **error);
/* G_IO_ERROR_NOT_FOUND when there is none, G_IO_ERROR_INVALID_DATA when damaged. */
gboolean ota_cycle_record_load (const char *state_dir, const char *module, OtaCycleRecord *record, GError **error);
gboolean ota_cycle_record_parse (const char *data, gsize length, OtaCycleRecord *record, GError **error);
/* Removes it, durably (directory fsync); no error when there is none. */
gboolean ota_cycle_record_delete (const char *state_dir, const char *module, GError **error);

/* This boot's id (/proc/sys/kernel/random/boot_id), "" when unknown. Never NULL.
 * The environment variable IV_OTAD_TEST_BOOT_ID replaces it, so that tests
 * can play a reboot (the agent warns in its log when it is set). */
const char *ota_state_boot_id (void);

G_END_DECLS
