/* vendor-app: a device application written the way camera makers write them
 * for the IoT Video SDK's iv_ota.h, for test-client-lib:
 *
 *  - the running version is read from a file at start;
 *  - firmware_update_cb reports WRITE_FLASH, calls iv_ota_exit() right there,
 *    moves the image away with mv (system()), and leaves the burning to the
 *    main thread;
 *  - the main thread "burns" (copies the image to the flash file), writes the
 *    new version to the version file, and "reboots" by exiting: the test
 *    starts it again, and it runs the new version;
 *  - REBOOT and SUCCESS are never reported.
 *
 * Usage: vendor-app FIRMWARE_DIR VERSION_FILE FLASH_FILE
 * Prints "version V", "size N" per download_size_cb, "ready PATH N",
 * "burnt V", "thread exit" and "rebooting". */
#include "iv_ota.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static iv_ota_init_parm_s g_parm;
static char g_staged[512];
static char g_offered[IV_OTA_FIRMWARE_VERSION_MAX_LEN];
static _Atomic int g_burn; /* set by the callback, polled by main */

static void
ota_size_cb (uint32_t size)
{
  printf ("size %u\n", size);
  fflush (stdout);
}

static int
ota_prepare_cb (char *version, uint32_t size)
{
  printf ("offer %s %u\n", version, size);
  fflush (stdout);
  snprintf (g_offered, sizeof g_offered, "%s", version);
  return 0;
}

static void
ota_exit_cb (iv_ota_thread_exit_status_s status)
{
  printf ("thread exit %d\n", status.mqtt_online);
  fflush (stdout);
}

static void
ota_firmware_cb (char *path, uint32_t len)
{
  char cmd[1200];

  printf ("ready %s %u\n", path, len);
  fflush (stdout);
  iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITE_FLASH, 0);
  iv_ota_exit ();
  snprintf (cmd, sizeof cmd, "mv %s %s", path, g_staged);
  if (system (cmd) != 0) {
    printf ("mv failed\n");
    fflush (stdout);
    return;
  }
  g_burn = 1;
}

static int
copy_file (const char *from, const char *to)
{
  char buf[65536];
  FILE *in = fopen (from, "rb"), *out = fopen (to, "wb");
  size_t n;
  int ok = in != NULL && out != NULL;

  while (ok && (n = fread (buf, 1, sizeof buf, in)) > 0)
    ok = fwrite (buf, 1, n, out) == n;
  if (in != NULL)
    fclose (in);
  if (out != NULL && fclose (out) != 0)
    ok = 0;
  return ok ? 0 : -1;
}

int
main (int argc, char **argv)
{
  FILE *f;
  int ret;

  if (argc != 4)
    return 2;
  f = fopen (argv[2], "r");
  if (f == NULL || fscanf (f, "%63s", g_parm.firmware_version) != 1)
    return 2;
  fclose (f);
  printf ("version %s\n", g_parm.firmware_version);
  fflush (stdout);
  snprintf (g_staged, sizeof g_staged, "%s.staged", argv[3]);
  strncpy (g_parm.firmware_path, argv[1], sizeof g_parm.firmware_path - 1);
  g_parm.iv_ota_firmware_update_cb = ota_firmware_cb;
  g_parm.iv_ota_prepare_cb = ota_prepare_cb;
  g_parm.iv_ota_download_size_cb = ota_size_cb;
  g_parm.iv_ota_thread_exit_cb = ota_exit_cb;
  ret = iv_ota_init (&g_parm);
  if (ret != 0) {
    printf ("iv_ota_init failed %d\n", ret);
    return 1;
  }
  while (!g_burn)
    usleep (100 * 1000);
  if (copy_file (g_staged, argv[3]) != 0 || unlink (g_staged) != 0)
    return 1;
  f = fopen (argv[2], "w");
  if (f == NULL || fprintf (f, "%s\n", g_offered) < 0 || fclose (f) != 0)
    return 1;
  printf ("burnt %s\nrebooting\n", g_offered);
  fflush (stdout);
  return 0;
}
