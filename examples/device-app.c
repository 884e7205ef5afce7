/* device-app: a device application written against the classic iv_ota.h only,
 * as an application for the Tencent IoT Video SDK would be.
 *
 * It tells the OTA agent which firmware runs, accepts every update offered,
 * and "burns" a downloaded image by copying it to DIR/installed.bin while it
 * reports progress. Then it records the new version in DIR/installed.version,
 * reports the reboot and exits: starting it again plays the reboot. The new
 * run reports the new version, and the agent tells the cloud "done" by itself.
 *
 * Usage: see usage[] below (device-app --help).
 * SIGINT or SIGTERM end it cleanly. */
#include "iv_ota.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_CHUNK (64 * 1024)

static struct {
  char dir[IV_OTA_LOCAL_FILE_NAME_MAX_LEN];
  char version[IV_OTA_FIRMWARE_VERSION_MAX_LEN];
  char offered[IV_OTA_FIRMWARE_VERSION_MAX_LEN]; /* version of the last offer */
  uint32_t offered_size;
  int download_decile;                            /* last 10 % step printed */
  int wake[2];                                    /* main thread's pipe: 'q' quit, 'x' OTA ended */
} app;

static void
say (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static void
say (const char *format, ...)
{
  va_list args;

  va_start (args, format);
  printf ("device-app: ");
  vprintf (format, args);
  putchar ('\n');
  fflush (stdout);
  va_end (args);
}

static void
wake_main (char why)
{
  if (write (app.wake[1], &why, 1) != 1)
    _exit (1);
}

/* ---- "flash": DIR/installed.bin and DIR/installed.version ---- */

static int
path_in_dir (char *path, size_t size, const char *name)
{
  return snprintf (path, size, "%s/%s", app.dir, name) < (int) size ? 0 : -1;
}

/* Writes @text to DIR/@name atomically, as a real device writes its flash. */
static int
write_file (const char *name, const char *text)
{
  char path[PATH_MAX], tmp[PATH_MAX];
  FILE *f;
  int ok;

  if (path_in_dir (path, sizeof path, name) < 0 || snprintf (tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
    return -1;
  if ((f = fopen (tmp, "w")) == NULL)
    return -1;
  ok = fputs (text, f) >= 0 && fflush (f) == 0 && fsync (fileno (f)) == 0;
  if (fclose (f) != 0 || !ok)
    return -1;
  return rename (tmp, path);
}

/* The version in DIR/installed.version, if an update was installed. */
static int
read_installed_version (char *version, size_t size)
{
  char path[PATH_MAX];
  FILE *f;
  int ok;

  if (path_in_dir (path, sizeof path, "installed.version") < 0 || (f = fopen (path, "r")) == NULL)
    return -1;
  ok = fgets (version, (int) size, f) != NULL;
  fclose (f);
  if (!ok)
    return -1;
  version[strcspn (version, "\r\n")] = '\0';
  return version[0] != '\0' ? 0 : -1;
}

/* Copies @from to @to, reporting WRITING_FLASH every 10 %. */
static int
burn_copy (int from, int to, uint32_t size)
{
  static char buffer[COPY_CHUNK];
  uint64_t written = 0;
  int decile = -1;
  ssize_t n;

  while ((n = read (from, buffer, sizeof buffer)) > 0) {
    if (write (to, buffer, (size_t) n) != n)
      return -1;
    written += (uint64_t) n;
    if (size > 0 && (int) (written * 10 / size) != decile) {
      decile = (int) (written * 10 / size);
      say ("burning: %d%%", decile * 10);
      iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITING_FLASH, decile * 10);
    }
  }
  return n < 0 || fsync (to) != 0 ? -1 : 0;
}

/* Copies the image to DIR/installed.bin (through a temporary file). */
static int
burn (const char *image, uint32_t size)
{
  char path[PATH_MAX], tmp[PATH_MAX];
  int from, to, rc;

  if (path_in_dir (path, sizeof path, "installed.bin") < 0 || snprintf (tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
    return -1;
  if ((from = open (image, O_RDONLY | O_CLOEXEC)) < 0)
    return -1;
  if ((to = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
    close (from);
    return -1;
  }
  rc = burn_copy (from, to, size);
  close (from);
  if (close (to) != 0 || rc != 0)
    return -1;
  return rename (tmp, path);
}

/* ---- OTA callbacks (all on the library thread) ---- */

static int
on_prepare (char *new_version, uint32_t size)
{
  say ("update %s offered (%u bytes): accepting", new_version, size);
  snprintf (app.offered, sizeof app.offered, "%s", new_version);
  app.offered_size = size;
  app.download_decile = -1;
  return 0;
}

static void
on_download_size (uint32_t size)
{
  int decile = app.offered_size > 0 ? (int) ((uint64_t) size * 10 / app.offered_size) : 0;

  if (decile != app.download_decile) {
    app.download_decile = decile;
    say ("downloading %s: %d%% (%u of %u bytes)", app.offered, decile * 10, size, app.offered_size);
  }
}

static void
on_download_fail (const iv_ota_fail_info_s *info)
{
  say ("download of %s failed: code %d, fail type %d, %u of %u bytes; the agent will retry",
       info->remote_version, info->err_code, (int) info->fail_type, info->downloaded_size, info->fw_file_size);
}

static void
on_firmware_ready (char *image, uint32_t size)
{
  say ("firmware %s ready: %s (%u bytes)", app.offered, image, size);
  say ("burning %s into %s/installed.bin", app.offered, app.dir);
  iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITE_FLASH, 0);
  if (burn (image, size) != 0 || write_file ("installed.version", app.offered) != 0) {
    say ("burning failed: %s", strerror (errno));
    iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_FAIL, IV_OTA_FAIL_TYPE_WRITE_FLASH);
    return;
  }
  say ("installed %s into %s/installed.bin", app.offered, app.dir);
  iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_REBOOT, 0);
  say ("rebooting into %s", app.offered);
  /* The SDK's classic pattern: end the OTA service from its own callback. */
  iv_ota_exit ();
}

static void
on_thread_exit (iv_ota_thread_exit_status_s status)
{
  say ("OTA service ended (cloud %s)", status.mqtt_online ? "online" : "offline");
  wake_main ('x');
}

/* ---- main ---- */

static void
on_signal (int sig)
{
  char why = 'q';

  if (write (app.wake[1], &why, 1) != 1)
    _exit (1);
}

static const char usage[] =
  "Usage: device-app [-d FIRMWARE_DIR] [-v FACTORY_VERSION]\n"
  "\n"
  "A device application on the classic iv_ota.h API, served by the iv-ota agent.\n"
  "It accepts every update, burns the image into FIRMWARE_DIR/installed.bin,\n"
  "reports the reboot and exits; started again, it runs the new version.\n"
  "\n"
  "  -d DIR      firmware directory (default: $IV_OTA_APP_DIR, else \".\")\n"
  "  -v VERSION  factory firmware version, used until an update is installed\n"
  "              (default: $IV_OTA_APP_VERSION, else \"1.0.0\")\n"
  "  -h, --help  show this help\n"
  "\n"
  "The agent is reached on the system bus, or the one IV_OTA_BUS names.\n";

/* 0 to run, 1 when help was shown, -1 on a usage error. */
static int
parse_args (int argc, char **argv)
{
  const char *dir = getenv ("IV_OTA_APP_DIR"), *factory = getenv ("IV_OTA_APP_VERSION");
  int opt;

  for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++) {
    if (strcmp (argv[i], "--help") == 0)
      return 1;
  }
  while ((opt = getopt (argc, argv, "d:v:h")) != -1) {
    if (opt == 'd')
      dir = optarg;
    else if (opt == 'v')
      factory = optarg;
    else
      return opt == 'h' ? 1 : -1;
  }
  if (optind != argc)
    return -1;
  snprintf (app.dir, sizeof app.dir, "%s", dir != NULL ? dir : ".");
  /* After an update, the flash says what runs; before, the factory version. */
  if (read_installed_version (app.version, sizeof app.version) != 0)
    snprintf (app.version, sizeof app.version, "%s", factory != NULL ? factory : "1.0.0");
  return 0;
}

static int
start_ota (void)
{
  iv_ota_init_parm_s parm = {
    .iv_ota_firmware_update_cb = on_firmware_ready,
    .iv_ota_prepare_cb = on_prepare,
    .iv_ota_download_size_cb = on_download_size,
    .iv_ota_thread_exit_cb = on_thread_exit,
    .iv_ota_download_fail_cb = on_download_fail,
  };
  int rc;

  snprintf (parm.firmware_path, sizeof parm.firmware_path, "%s", app.dir);
  snprintf (parm.firmware_version, sizeof parm.firmware_version, "%s", app.version);
  rc = iv_ota_init (&parm);
  if (rc == IV_ERR_OTA_START_FAIL)
    say ("cannot start OTA: no agent answered (is iv-otad running? IV_OTA_BUS names the bus)");
  else if (rc != IV_ERR_NONE)
    say ("cannot start OTA: iv_ota_init returned %d", rc);
  return rc;
}

int
main (int argc, char **argv)
{
  struct sigaction sa = { .sa_handler = on_signal };
  char why = 0;

  switch (parse_args (argc, argv)) {
  case 0:
    break;
  case 1:
    fputs (usage, stdout);
    return 0;
  default:
    fprintf (stderr, "usage: device-app [-d FIRMWARE_DIR] [-v FACTORY_VERSION] (see --help)\n");
    return 2;
  }
  if (pipe (app.wake) != 0)
    return 1;
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  say ("firmware %s running, images go to %s", app.version, app.dir);
  if (start_ota () != IV_ERR_NONE)
    return 1;
  say ("registered with the OTA agent, waiting for updates");
  while (why != 'q' && why != 'x') {
    if (read (app.wake[0], &why, 1) < 0 && errno != EINTR)
      return 1;
  }
  if (why == 'q') {
    say ("stopping");
    iv_ota_exit (); /* returns once on_thread_exit has run */
  }
  return 0;
}
