/* One firmware download (docs/downloads.md): libsoup 3, resumable, MD5-verified,
 * retried with backoff; hashing and writing off the main loop. */
#pragma once

#include "fail-kind.h"

#include <libsoup/soup.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef struct {
  const char *url;
  const char *module;      /* "" for the main firmware */
  const char *version;     /* validated: becomes a path component */
  const char *md5sum;      /* 32 lowercase hex */
  guint64 file_size;
  int dir_fd;              /* the firmware dir; duplicated by the download */
  const char *dir_path;    /* absolute, to build the path given to apps */
  uid_t owner_uid;         /* (uid_t)-1: leave files to us */
  gid_t owner_gid;
  guint64 checkpoint_bytes;
  guint stall_timeout;     /* seconds */
  guint64 min_download_rate; /* bytes/s: fewer over stall_timeout is a stall (0: only silence) */
  guint64 max_download_rate; /* bytes/s, 0: unlimited */
  guint max_retries;       /* attempts in a row without progress */
  guint64 max_firmware_size;
  const char *sha256;      /* NULL: none; else the SHA-256 (64 hex) a verified
                            * signature names: the image must have it too */
} OtaDownloadParams;

#define OTA_TYPE_DOWNLOAD (ota_download_get_type ())
G_DECLARE_FINAL_TYPE (OtaDownload, ota_download, OTA, DOWNLOAD, GObject)

/*
 * Signals (main context of the creator):
 *  "progress" (guint64 downloaded, guint64 total): after each chunk written.
 *  "verifying" (): all bytes received, MD5 (and SHA-256) being checked.
 *  "finished" (int result_code, const char *message): 0 on success (the
 *      record is deleted, the image is at ota_download_get_path()), or a
 *      negative OtaResultCode with a human message (-4 also when the SHA-256
 *      differs from params->sha256: both files are deleted). Emitted exactly once,
 *      never after ota_download_cancel().
 */

/* A session suited to downloads: no proxy resolver threads, no content
 * decoder (never Accept-Encoding), TLS verified against @ca_file when set
 * (else the system store). */
SoupSession *ota_download_session_new (const char *ca_file, GError **error);

OtaDownload *ota_download_new (SoupSession *session, const OtaDownloadParams *params);

/* Checks size limits and free space (finishing with -5 when they fail),
 * resumes from a matching record or starts over, then downloads. */
void ota_download_start (OtaDownload *self);

/* Stops now; the partial file and the record (last checkpoint) stay. */
void ota_download_cancel (OtaDownload *self);

/* Worker threads still running, of every download. A cancelled download's
 * worker still writes the buffers it was handed and takes a last checkpoint;
 * a clean shutdown iterates the creator's main context (a cancelled read
 * must come back to hand over its buffer) until this is 0. The worker wakes
 * that context up when it ends. Any thread. */
guint ota_download_count_workers (void);

/* Seconds a Retry-After header value asks for (delta-seconds or an HTTP
 * date, relative to @now_unix), at most OTA_RETRY_AFTER_MAX; -1 when @value
 * is NULL or not valid. Pure. */
#define OTA_RETRY_AFTER_MAX 600
gint64 ota_download_parse_retry_after (const char *value, gint64 now_unix);

/* Absolute path of the image. */
const char *ota_download_get_path (OtaDownload *self);
guint64 ota_download_get_downloaded (OtaDownload *self);
/* What failed, once "finished" was emitted with a non-zero code (never
 * OTA_FAIL_KIND_NONE then); OTA_FAIL_KIND_NONE before and after a success. */
OtaFailKind ota_download_get_fail_kind (OtaDownload *self);
/* Where this attempt resumed from (0: from the start). */
guint64 ota_download_get_resumed_from (OtaDownload *self);

G_END_DECLS
