/* client-module: an application owning one named module through the
 * iv_ota_ext.h handle API, for test-client-lib.
 *
 * Usage: client-module MODULE FIRMWARE_DIR VERSION
 *
 * Prints one line per event on stdout:
 *   OPEN <module>                     registered with the agent
 *   OPEN-FAILED <code> <message>      iv_ota_module_open failed (exit status 3)
 *   READY <module> <size> <path>      firmware_update_cb
 *   DONE <module> <rc>                SUCCESS reported from inside that callback
 *   FAIL <module> <err_code>          download_fail_cb
 *   MISMATCH <expected> <got>         a callback got another module's handle
 *   EXIT <module> <mqtt_online>       thread_exit_cb
 * SIGTERM ends it through iv_ota_module_exit (exit status 0).
 *
 * With a fourth argument "fork", it forks a child once registered, as apps
 * start helpers: the child prints "CHILD <pid> <rc>", rc being what its own
 * iv_ota_check_module(MODULE) returned (the library starts afresh in a
 * child), then lingers without exec, holding whatever it inherited, until its
 * grandparent (the test, pid in $TEST_PID) is gone or 60 s have passed. */
#include "iv_ota_ext.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  const char *module;
} App;

static volatile sig_atomic_t quit;

/* The module a callback is about, checked against the one we own. */
static const char *
current_module (void)
{
  iv_ota_module_s *handle = iv_ota_module_current ();
  App *app = iv_ota_module_user_data (handle);

  if (handle == NULL || app == NULL || strcmp (app->module, iv_ota_module_name (handle)) != 0) {
    printf ("MISMATCH %s %s\n", app != NULL ? app->module : "?", handle != NULL ? iv_ota_module_name (handle) : "-");
    fflush (stdout);
  }
  return handle != NULL ? iv_ota_module_name (handle) : "?";
}

static void
on_ready (char *path, uint32_t size)
{
  const char *module = current_module ();
  iv_ota_module_s *handle = iv_ota_module_current ();
  int rc;

  printf ("READY %s %u %s\n", module, size, path);
  iv_ota_module_update_progress (handle, IV_OTA_PROGRESS_TYPE_WRITE_FLASH, 0);
  rc = iv_ota_module_update_progress (handle, IV_OTA_PROGRESS_TYPE_SUCCESS, 0);
  printf ("DONE %s %d\n", module, rc);
  fflush (stdout);
}

static void
on_fail (const iv_ota_fail_info_s *info)
{
  printf ("FAIL %s %d\n", current_module (), info->err_code);
  fflush (stdout);
}

static void
on_exit_cb (iv_ota_thread_exit_status_s status)
{
  printf ("EXIT %s %d\n", current_module (), status.mqtt_online);
  fflush (stdout);
}

/* The forked child of "fork" mode: never returns. */
static void
child_linger (const char *module)
{
  pid_t test = (pid_t) atoi (getenv ("TEST_PID") != NULL ? getenv ("TEST_PID") : "0");

  /* Gone in 60 s whatever happens, also if the library hangs in the child. */
  alarm (60);
  printf ("CHILD %d %d\n", (int) getpid (), iv_ota_check_module (module));
  fflush (stdout);
  for (int i = 0; i < 600 && test > 0 && kill (test, 0) == 0; i++)
    usleep (100000);
  _exit (0);
}

static void
on_signal (int sig)
{
  quit = 1;
}

int
main (int argc, char **argv)
{
  iv_ota_init_parm_s parm = {
    .iv_ota_firmware_update_cb = on_ready,
    .iv_ota_thread_exit_cb = on_exit_cb,
    .iv_ota_download_fail_cb = on_fail,
  };
  struct sigaction sa = { .sa_handler = on_signal };
  sigset_t term, unblocked;
  iv_ota_module_s *handle;
  App app;
  int rc;

  if (argc != 4 && !(argc == 5 && strcmp (argv[4], "fork") == 0))
    return 2;
  app.module = argv[1];
  snprintf (parm.firmware_path, sizeof parm.firmware_path, "%s", argv[2]);
  snprintf (parm.firmware_version, sizeof parm.firmware_version, "%s", argv[3]);
  sigaction (SIGTERM, &sa, NULL);
  /* Blocked except inside sigsuspend: no SIGTERM slips in before the wait. */
  sigemptyset (&term);
  sigaddset (&term, SIGTERM);
  sigprocmask (SIG_BLOCK, &term, &unblocked);
  rc = iv_ota_module_open (app.module, &parm, &app, &handle);
  if (rc != IV_ERR_NONE) {
    printf ("OPEN-FAILED %d %s\n", rc, iv_ota_last_error ());
    return 3;
  }
  printf ("OPEN %s\n", app.module);
  fflush (stdout);
  if (argc == 5 && fork () == 0)
    child_linger (app.module);
  while (!quit)
    sigsuspend (&unblocked);
  return iv_ota_module_exit (handle) == IV_ERR_NONE ? 0 : 1;
}
