#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <gio/gio.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

gboolean
ota_set_error_from_errno (GError **error, int saved_errno, const char *format, ...)
{
  g_autofree char *what = NULL;
  va_list args;

  g_return_val_if_fail (format != NULL, FALSE);

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s", what,
               g_strerror (saved_errno));
  return FALSE;
}

int
ota_pwrite_all (int fd, const void *data, gsize length, off_t offset)
{
  const guint8 *p = data;

  g_return_val_if_fail (fd >= 0, EBADF);
  g_return_val_if_fail (data != NULL || length == 0, EINVAL);

  while (length > 0) {
    ssize_t n = pwrite (fd, p, length, offset);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno;
    p += n;
    length -= (gsize) n;
    offset += n;
  }
  return 0;
}

int
ota_fsync_dir (int dir_fd)
{
  g_return_val_if_fail (dir_fd >= 0, EBADF);
  return fsync (dir_fd) == 0 ? 0 : errno;
}

/* Everything after the temporary file exists: on failure the caller unlinks it. */
static gboolean
replace_fill_and_rename (int dir_fd, int fd, const char *tmp, const char *name, const char *data,
                         gsize length, uid_t owner, gid_t group, GError **error)
{
  int saved = ota_pwrite_all (fd, data, length, 0);

  if (saved != 0)
    return ota_set_error_from_errno (error, saved, "cannot write %s", tmp);
  if (owner != (uid_t) -1 && geteuid () == 0 && fchown (fd, owner, group) < 0)
    return ota_set_error_from_errno (error, errno, "cannot give %s to uid %u", tmp, (guint) owner);
  /* The rename must not become visible before the content is on disk. */
  if (fsync (fd) < 0)
    return ota_set_error_from_errno (error, errno, "cannot sync %s", tmp);
  if (renameat (dir_fd, tmp, dir_fd, name) < 0)
    return ota_set_error_from_errno (error, errno, "cannot rename %s to %s", tmp, name);
  return TRUE;
}

gboolean
ota_replace_file_at (int dir_fd, const char *name, const char *data, gsize length, mode_t mode,
                     uid_t owner, gid_t group, GError **error)
{
  g_autofree char *tmp = NULL;
  gboolean ok;
  int fd, saved;

  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (data != NULL || length == 0, FALSE);

  tmp = g_strconcat (name, ".tmp", NULL);
  /* Never O_TRUNC an existing name: in an app's directory it may be a hard
   * link to a file of someone else. A fresh file, or an error. */
  if (unlinkat (dir_fd, tmp, 0) < 0 && errno != ENOENT)
    return ota_set_error_from_errno (error, errno, "cannot remove %s", tmp);
  fd = openat (dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0)
    return ota_set_error_from_errno (error, errno, "cannot create %s", tmp);
  ok = replace_fill_and_rename (dir_fd, fd, tmp, name, data, length, owner, group, error);
  if (close (fd) < 0 && ok)
    ok = ota_set_error_from_errno (error, errno, "cannot close %s", tmp);
  if (!ok) {
    unlinkat (dir_fd, tmp, 0);
    return FALSE;
  }
  /* The new name is only durable once the directory is: without this, a
   * power cut could bring the old content back. The content itself is in
   * place either way, so a failure here is only logged. */
  saved = ota_fsync_dir (dir_fd);
  if (saved != 0)
    g_debug ("cannot sync the directory of %s: %s", name, g_strerror (saved));
  return TRUE;
}

gboolean
ota_replace_file (const char *path, const char *data, gsize length, GError **error)
{
  g_autofree char *dir = NULL;
  g_autofree char *name = NULL;
  gboolean ok;
  int dir_fd;

  g_return_val_if_fail (path != NULL, FALSE);

  dir = g_path_get_dirname (path);
  name = g_path_get_basename (path);
  dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    return ota_set_error_from_errno (error, errno, "cannot open %s", dir);
  ok = ota_replace_file_at (dir_fd, name, data, length, 0600, (uid_t) -1, (gid_t) -1, error);
  close (dir_fd);
  if (!ok)
    g_prefix_error (error, "cannot write %s: ", path);
  return ok;
}

gboolean
ota_remove_file (const char *path, GError **error)
{
  g_autofree char *dir = NULL;
  int dir_fd, saved;

  g_return_val_if_fail (path != NULL, FALSE);

  dir = g_path_get_dirname (path);

  if (unlink (path) != 0)
    return errno == ENOENT || ota_set_error_from_errno (error, errno, "cannot remove %s", path);
  dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  saved = dir_fd >= 0 ? ota_fsync_dir (dir_fd) : errno;
  if (dir_fd >= 0)
    close (dir_fd);
  if (saved != 0)
    g_debug ("cannot sync directory %s: %s", dir, g_strerror (saved));
  return TRUE;
}

guint64
ota_backoff_delay (guint attempt, guint64 base, guint64 cap)
{
  guint64 delay = base;

  for (guint i = 0; i < attempt && delay < cap; i++)
    delay *= 2;
  return MIN (delay, cap);
}

guint64
ota_jitter (guint64 delay)
{
  return (guint64) ((double) delay * (0.75 + g_random_double () * 0.5));
}

gboolean
ota_json_nesting_is_bounded (const char *data, gsize length, guint max_depth, gboolean strict)
{
  guint depth = 0;
  gboolean in_string = FALSE;

  g_return_val_if_fail (data != NULL || length == 0, FALSE);

  for (gsize i = 0; i < length; i++) {
    char c = data[i];

    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = FALSE;
    } else if (c == '"') {
      in_string = TRUE;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return FALSE;
    } else if (c == ']' || c == '}') {
      depth = depth > 0 ? depth - 1 : 0;
    } else if (strict && (c == '\'' || c == '/' || c == '#')) {
      return FALSE;
    }
  }
  return TRUE;
}
