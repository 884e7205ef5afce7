/* Small helpers shared by the agent's modules, so that each rule is written
 * once: errno as a GError, whole writes, atomic file replacement with the
 * directory made durable, exponential backoff with jitter. */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

/* Sets @error in G_IO_ERROR from @saved_errno, the message being @format
 * followed by ": " and the errno text. Returns FALSE, so a caller can
 * `return ota_set_error_from_errno (…)`. */
gboolean ota_set_error_from_errno (GError **error, int saved_errno, const char *format, ...)
  G_GNUC_PRINTF (3, 4);

/* Writes all @length bytes at @offset (pwrite), retrying short writes and
 * EINTR. Returns 0, or the errno of the failure. */
int ota_pwrite_all (int fd, const void *data, gsize length, off_t offset);

/* fsync of a directory: a create, rename or unlink in it is durable only
 * after this. Returns 0 or the errno. */
int ota_fsync_dir (int dir_fd);

/* Replaces the file @name in @dir_fd by @data, so that a crash leaves either
 * the old or the new content, never a mix, and the new one survives a power
 * cut once this returns: a fresh temporary file (@name.tmp, created with
 * O_EXCL|O_NOFOLLOW after unlinking any leftover, so a planted link is never
 * written through), written, given to @owner/@group when running as root and
 * @owner is not (uid_t)-1, fsynced, renamed over @name, then the directory
 * fsynced. */
gboolean ota_replace_file_at (int dir_fd, const char *name, const char *data, gsize length,
                              mode_t mode, uid_t owner, gid_t group, GError **error);

/* The same for an absolute or relative @path, mode 0600, owned by us. */
gboolean ota_replace_file (const char *path, const char *data, gsize length, GError **error);

/* Removes @path (absent is fine) and syncs its directory, so that the
 * removal survives a power cut. */
gboolean ota_remove_file (const char *path, GError **error);

/* Delay of retry number @attempt (0 for the first): @base doubled @attempt
 * times, never over @cap. No jitter. */
guint64 ota_backoff_delay (guint attempt, guint64 base, guint64 cap);

/* @delay ±25 %, so that devices cut off together do not come back in lockstep. */
guint64 ota_jitter (guint64 delay);

/* Whether the JSON text @data (@length bytes) nests its brackets outside
 * strings at most @max_depth deep: json-glib's parser recurses once per
 * level, so untrusted text is looked at before it is parsed. With @strict, a
 * quote, comment or '#' outside a string (which json-glib would also accept:
 * ', /, #) is refused too: our own files are strict JSON, and without them
 * this count is the nesting json-glib will see. */
gboolean ota_json_nesting_is_bounded (const char *data, gsize length, guint max_depth, gboolean strict);

G_END_DECLS
