/* client-abi-app: a classic application whose iv_ota_init_parm_s ends exactly
 * where its header says, for test-client-lib. Built twice: against the SDK's
 * first-generation header (tests/sdk-first-generation, no
 * iv_ota_download_fail_cb; SDK_FIRST_GENERATION defined) and against libiv-ota's iv_ota.h.
 *
 * Usage: client-abi-app heap|guard FIRMWARE_DIR VERSION
 *   heap   the structure is malloc'ed with its exact size (ASan sees any
 *          read past it)
 *   guard  the structure ends right before a PROT_NONE page (any read past
 *          it is a SIGSEGV, instrumented or not)
 * The structure is destroyed as soon as iv_ota_init returns.
 *
 * Prints: "LAYOUT <sizeof>", "INIT <rc>", "READY <size>" then "DONE <rc>"
 * (SUCCESS reported from the callback), "FAIL <fail_type> <err_code>" (new
 * layout only), "EXIT <mqtt_online>". Exits 0 after READY or FAIL. */
#include "iv_ota.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int wake[2];

static void say (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static void
say (const char *format, ...)
{
  va_list args;

  va_start (args, format);
  vprintf (format, args);
  va_end (args);
  putchar ('\n');
  fflush (stdout);
}

static void
on_ready (char *path, uint32_t size)
{
  (void) path;
  say ("READY %d", (int) size);
  iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_WRITE_FLASH, 0);
  say ("DONE %d", iv_ota_update_progress (IV_OTA_PROGRESS_TYPE_SUCCESS, 0));
  if (write (wake[1], "r", 1) != 1)
    _exit (2);
}

static void
on_exit_cb (iv_ota_thread_exit_status_s status)
{
  say ("EXIT %d", status.mqtt_online);
}

#ifndef SDK_FIRST_GENERATION /* libiv-ota's iv_ota.h */
static void
on_fail (const iv_ota_fail_info_s *info)
{
  say ("FAIL %d %d", (int) info->fail_type, info->err_code);
  if (write (wake[1], "f", 1) != 1)
    _exit (2);
}
#endif

/* Room for the structure, its last byte the last one before a guard page. */
static iv_ota_init_parm_s *
parm_alloc (int guard, void **map, size_t *map_len)
{
  long page = sysconf (_SC_PAGESIZE);
  char *base;

  if (!guard)
    return malloc (sizeof (iv_ota_init_parm_s));
  *map_len = 2 * (size_t) page;
  base = mmap (NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED || mprotect (base + page, (size_t) page, PROT_NONE) != 0)
    return NULL;
  *map = base;
  return (iv_ota_init_parm_s *) (base + page - sizeof (iv_ota_init_parm_s));
}

int
main (int argc, char **argv)
{
  int guard = argc == 4 && strcmp (argv[1], "guard") == 0;
  iv_ota_init_parm_s *parm;
  void *map = NULL;
  size_t map_len = 0;
  char why;
  int rc;

  if (argc != 4 || pipe (wake) != 0)
    return 2;
  if ((parm = parm_alloc (guard, &map, &map_len)) == NULL)
    return 2;
  memset (parm, 0, sizeof *parm);
  parm->iv_ota_firmware_update_cb = on_ready;
  parm->iv_ota_thread_exit_cb = on_exit_cb;
#ifndef SDK_FIRST_GENERATION
  parm->iv_ota_download_fail_cb = on_fail;
#endif
  snprintf (parm->firmware_path, sizeof parm->firmware_path, "%s", argv[2]);
  snprintf (parm->firmware_version, sizeof parm->firmware_version, "%s", argv[3]);
  say ("LAYOUT %d", (int) sizeof *parm);
  rc = iv_ota_init (parm);
  /* The library copied what it needs: the structure is gone. */
  if (guard)
    munmap (map, map_len);
  else
    free (parm);
  say ("INIT %d", rc);
  if (rc != IV_ERR_NONE)
    return 1;
  if (read (wake[0], &why, 1) != 1)
    return 2;
  say ("EXITED %d", iv_ota_exit ());
  return 0;
}
