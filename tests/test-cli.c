/* The iv-ota command line against the real agent: the status table, watch
 * in plain (non-terminal) mode, check, cancel by a process that is not the
 * owner, the exit codes scripts rely on, and --help of every program.
 *
 * The test's own D-Bus connection (the harness proxy) owns the modules, so
 * iv-ota, a separate process, is never the owner. */
#include "harness.h"
#include "ota-build-config.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define TARGET "2.0"

/* The exit codes of iv-ota --help. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_NO_AGENT = 3, CLI_NOT_PERMITTED = 4, CLI_NO_SUCH_MODULE = 5,
       CLI_TIMEOUT = 6, CLI_NOT_ANSWERING = 8 };

typedef struct {
  int code; /* exit status, or -1 when it did not exit normally */
  char *out, *err;
} CliResult;

static void
cli_result_clear (CliResult *r)
{
  g_free (r->out);
  g_free (r->err);
}

static const char *
env_path (const char *name)
{
  const char *path = g_getenv (name);

  g_assert_nonnull (path);
  return path;
}

/* Runs @exe with @args (NULL-terminated) on the test's session bus. */
static CliResult
run_program (const char *exe, const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_auto (GStrv) envp = g_environ_setenv (g_get_environ (), "IV_OTA_BUS", "session", TRUE);
  g_autoptr (GError) error = NULL;
  CliResult r = { -1, NULL, NULL };
  int status;

  g_ptr_array_add (argv, (gpointer) exe);
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  g_auto (GStrv) wrapped = ota_test_wrap_argv ((const char *const *) argv->pdata);
  g_assert_true (g_spawn_sync (NULL, wrapped, envp, G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err,
                               &status, &error));
  g_assert_no_error (error);
  if (WIFEXITED (status))
    r.code = WEXITSTATUS (status);
  g_test_message ("%s %s -> %d\nstdout:\n%s\nstderr:\n%s", exe, args[0] != NULL ? args[0] : "", r.code, r.out,
                  r.err);
  return r;
}

#define run_cli(...) run_program (env_path ("IV_OTA"), (const char *const[]) { __VA_ARGS__, NULL })

/* The line of @text that starts with @prefix, newly allocated, or NULL. */
static char *
line_starting (const char *text, const char *prefix)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);

  for (guint i = 0; lines[i] != NULL; i++) {
    if (g_str_has_prefix (lines[i], prefix))
      return g_strdup (lines[i]);
  }
  return NULL;
}

static void
assert_contains (const char *text, const char *needle)
{
  if (strstr (text, needle) == NULL)
    g_error ("\"%s\" not found in:\n%s", needle, text);
}

/* ---- --help of every program ---- */

static void
assert_help (const char *exe, const char *const *args, const char *usage)
{
  CliResult r = run_program (exe, args);

  g_assert_cmpint (r.code, ==, 0);
  assert_contains (r.out, usage);
  cli_result_clear (&r);
}

static void
test_help_every_program (void)
{
  const char *const help[] = { "--help", NULL };
  const char *commands[] = { "status", "watch", "check", "cancel" };

  assert_help (env_path ("IV_OTAD"), help, "Usage:");
  assert_help (env_path ("IV_OTA_CLOUD"), help, "Usage:");
  assert_help (env_path ("DEVICE_APP"), help, "Usage: device-app");
  assert_help (env_path ("IV_OTA"), help, "Usage: iv-ota");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++) {
    g_autofree char *usage = g_strdup_printf ("Usage: iv-ota %s", commands[i]);
    const char *const command_help[] = { commands[i], "--help", NULL };
    const char *const help_command[] = { "help", commands[i], NULL };
    assert_help (env_path ("IV_OTA"), command_help, usage);
    assert_help (env_path ("IV_OTA"), help_command, usage);
  }
}

static void
test_usage_errors (void)
{
  CliResult r;

  r = run_cli ("bogus");
  g_assert_cmpint (r.code, ==, CLI_USAGE);
  assert_contains (r.err, "unknown command bogus");
  cli_result_clear (&r);
  r = run_cli ("watch", "--until", "finished");
  g_assert_cmpint (r.code, ==, CLI_USAGE);
  assert_contains (r.err, "unknown state");
  cli_result_clear (&r);
  r = run_cli ("status", "a", "b");
  g_assert_cmpint (r.code, ==, CLI_USAGE);
  cli_result_clear (&r);
  r = run_cli ("--bus", "nowhere", "status");
  g_assert_cmpint (r.code, ==, CLI_USAGE);
  cli_result_clear (&r);
  r = run_cli ("--version");
  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "iv-ota ");
  cli_result_clear (&r);
}

/* ---- no agent ---- */

static void
assert_no_agent (CliResult r)
{
  g_assert_cmpint (r.code, ==, CLI_NO_AGENT);
  assert_contains (r.err, "no OTA agent");
  assert_contains (r.err, "iv-otad");
  cli_result_clear (&r);
}

static void
test_no_agent (void)
{
  assert_no_agent (run_cli ("status"));
  assert_no_agent (run_cli ("watch"));
  assert_no_agent (run_cli ("check"));
  assert_no_agent (run_cli ("cancel", "mcu"));
  /* No bus at all is the same for a script. */
  assert_no_agent (run_cli ("--bus", "unix:path=/nonexistent/iv-ota-bus", "status"));
}

/* ---- with the agent ---- */

typedef struct {
  OtaTestEnv env;
  OtaTestCloudTool *tool;
  GPtrArray *procs; /* OtaTestProcess */
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  ota_test_env_setup (&f->env, "retry_interval=1\n");
  f->procs = g_ptr_array_new_with_free_func ((GDestroyNotify) ota_test_process_free);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_ptr_array_unref (f->procs);
  ota_test_cloud_tool_free (f->tool);
  ota_test_env_teardown (&f->env, NULL);
}

/* iv-ota-cloud offering @size bytes as TARGET, with @extra_arg (may be NULL). */
static void
start_cloud_tool (Fixture *f, gsize size, const char *extra_arg)
{
  g_autofree char *firmware = g_build_filename (f->env.dir, "firmware.img", NULL);
  const char *args[] = { extra_arg, NULL };

  g_free (ota_test_make_file (firmware, size));
  f->tool = ota_test_cloud_tool_start (f->env.dir, "cloud-tool", f->env.broker->port, TARGET, firmware, args);
}

static const char *
owner_name (Fixture *f)
{
  return g_dbus_connection_get_unique_name (f->env.connection);
}

static void
test_status_table (Fixture *f, gconstpointer data)
{
  g_autofree char *header = NULL, *main_line = NULL, *mcu_line = NULL;
  g_autofree char *owner = g_strdup_printf ("%s (", owner_name (f));
  g_autofree char *pid = g_strdup_printf ("pid %d)", (int) getpid ());
  CliResult r = run_cli ("status");

  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "agent :");
  assert_contains (r.out, "no module");
  cli_result_clear (&r);

  ota_test_env_init_published (&f->env, "", "1.0");
  ota_test_env_init_published (&f->env, "mcu", "3.1");
  r = run_cli ("status");
  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "(iv-otad " PACKAGE_VERSION ")");
  header = line_starting (r.out, "MODULE");
  g_assert_nonnull (header);
  for (const char *const *title = (const char *const[]) { "STATE", "INSTALLED", "TARGET", "PROGRESS", "OWNER",
                                                           "LAST RESULT", NULL };
       *title != NULL; title++)
    assert_contains (header, *title);
  /* Modules in name order: the main firmware first. */
  main_line = line_starting (r.out, "(main) ");
  mcu_line = line_starting (r.out, "mcu ");
  g_assert_nonnull (main_line);
  g_assert_nonnull (mcu_line);
  g_assert_true (strstr (r.out, main_line) < strstr (r.out, mcu_line));
  for (const char *const *line = (const char *const[]) { main_line, mcu_line, NULL }; *line != NULL; line++) {
    assert_contains (*line, " idle ");
    assert_contains (*line, owner);
    assert_contains (*line, pid);
  }
  assert_contains (main_line, " 1.0 ");
  assert_contains (mcu_line, " 3.1 ");
  cli_result_clear (&r);

  /* One module, or one that does not exist. */
  r = run_cli ("status", "mcu");
  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "mcu ");
  g_assert_null (strstr (r.out, "(main)"));
  cli_result_clear (&r);
  r = run_cli ("status", "nosuch");
  g_assert_cmpint (r.code, ==, CLI_NO_SUCH_MODULE);
  assert_contains (r.err, "nosuch");
  cli_result_clear (&r);
}

/* Why a module waits: the reasons of the Inhibit cookies held for it. */
static void
test_status_inhibited (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint32 first = 0, second = 0;
  CliResult r;

  ota_test_env_init_published (&f->env, "mcu", "3.1");
  ota_dbus_ota_call_inhibit_sync (f->env.proxy, "mcu", "flashing over UART", &first, NULL, &error);
  g_assert_no_error (error);
  ota_dbus_ota_call_inhibit_sync (f->env.proxy, "mcu", "battery low", &second, NULL, &error);
  g_assert_no_error (error);
  r = run_cli ("status");
  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "mcu: downloads wait, inhibited by: flashing over UART; battery low\n");
  cli_result_clear (&r);
  ota_dbus_ota_call_uninhibit_sync (f->env.proxy, first, NULL, &error);
  g_assert_no_error (error);
  ota_dbus_ota_call_uninhibit_sync (f->env.proxy, second, NULL, &error);
  g_assert_no_error (error);
  r = run_cli ("status");
  g_assert_cmpint (r.code, ==, CLI_OK);
  g_assert_null (strstr (r.out, "inhibited"));
  cli_result_clear (&r);
}

/* A download under way: state, target version, percent and bytes. */
static void
test_status_download (Fixture *f, gconstpointer data)
{
  g_autofree char *line = NULL;
  CliResult r;

  start_cloud_tool (f, 600000, "--rate=100000");
  ota_test_env_init_published (&f->env, "", "1.0");
  ota_test_env_wait_published (&f->env, "", "downloading", TRUE);
  r = run_cli ("status", ".");
  g_assert_cmpint (r.code, ==, CLI_OK);
  line = line_starting (r.out, "(main) ");
  g_assert_nonnull (line);
  assert_contains (line, " downloading ");
  assert_contains (line, " 1.0 ");
  assert_contains (line, " " TARGET " ");
  assert_contains (line, "% ");
  assert_contains (line, "/585.9 KiB");
  cli_result_clear (&r);
}

static char *
file_text (const char *path)
{
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

typedef struct {
  const char *path, *needle;
} FileWait;

static gboolean
file_contains (gpointer data)
{
  FileWait *w = data;
  g_autofree char *text = file_text (w->path);

  return strstr (text, w->needle) != NULL;
}

static gboolean
process_exited (gpointer proc)
{
  return !ota_test_process_is_running (proc);
}

/* Spawns iv-ota watch with @args, stdout to a file (not a terminal), and
 * waits until it watches. */
static OtaTestProcess *
spawn_watch (Fixture *f, const char *log_name, const char *const *args)
{
  g_autofree char *log = g_build_filename (f->env.dir, log_name, NULL);
  g_autofree char *err = g_strdup_printf ("%s.err", log);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_auto (GStrv) envp = g_environ_setenv (g_get_environ (), "IV_OTA_BUS", "session", TRUE);
  FileWait w = { log, "watching the OTA agent" };
  OtaTestProcess *proc;

  g_ptr_array_add (argv, (gpointer) env_path ("IV_OTA"));
  g_ptr_array_add (argv, "watch");
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  proc = ota_test_process_spawn ((char **) argv->pdata, envp, log, err);
  g_ptr_array_add (f->procs, proc);
  g_assert_true (ota_test_wait (file_contains, &w, OTA_TEST_TIMEOUT_MS));
  return proc;
}

static int
wait_exit_code (OtaTestProcess *proc)
{
  g_assert_true (ota_test_wait (process_exited, proc, 2 * OTA_TEST_TIMEOUT_MS));
  g_assert_true (WIFEXITED (proc->status));
  return WEXITSTATUS (proc->status);
}

/* Not a terminal: timestamped lines, one per state change, and an exit at --until. */
static void
test_watch_plain_until (Fixture *f, gconstpointer data)
{
  OtaTestProcess *watch;
  g_autofree char *out = NULL;
  g_auto (GStrv) lines = NULL;
  GRegex *stamp = g_regex_new ("^[0-9]{2}:[0-9]{2}:[0-9]{2} ", 0, 0, NULL);
  CliResult r;

  start_cloud_tool (f, 300000, "--rate=300000");
  watch = spawn_watch (f, "watch.log", (const char *const[]) { "--until", "ready,fail", NULL });
  ota_test_env_init_published (&f->env, "", "1.0");
  g_assert_cmpint (wait_exit_code (watch), ==, CLI_OK);
  out = file_text (watch->log_path);
  g_test_message ("watch:\n%s", out);
  lines = g_strsplit (out, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    g_assert_true (*lines[i] == '\0' || g_regex_match (stamp, lines[i], 0, NULL));
    g_assert_null (strchr (lines[i], '\033')); /* no terminal control in a file */
  }
  assert_contains (out, "cloud connected");
  assert_contains (out, "(main): idle 1.0");
  assert_contains (out, "(main): downloading " TARGET);
  assert_contains (out, "(main): verifying (MD5 check) " TARGET);
  assert_contains (out, "(main): ready (size and MD5 verified) " TARGET);
  assert_contains (out, "/FW_" TARGET ".bin");
  /* In order, and the last state line is the one it waited for. */
  g_assert_true (strstr (out, "downloading") < strstr (out, "verifying"));
  g_assert_true (strstr (out, "verifying") < strstr (out, "ready ("));
  g_regex_unref (stamp);
  /* A module already in the state counts: a late watch ends at once. */
  ota_test_env_wait_published (&f->env, "", "ready", TRUE);
  r = run_cli ("watch", "--until", "ready");
  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "(main): ready (size and MD5 verified) " TARGET);
  cli_result_clear (&r);
}

/* --until fail ends with 1; --module filters; --timeout ends with 6. */
static void
test_watch_fail_and_timeout (Fixture *f, gconstpointer data)
{
  OtaTestProcess *failing, *other, *idle;
  g_autofree char *failing_out = NULL, *other_out = NULL;

  start_cloud_tool (f, 1000, "--status=404");
  failing = spawn_watch (f, "watch-fail.log", (const char *const[]) { "--until", "fail", NULL });
  other = spawn_watch (f, "watch-mcu.log", (const char *const[]) { "--module", "mcu", "--until", "fail", "--timeout",
                                                                    "600", NULL });
  ota_test_env_init_published (&f->env, "", "1.0");
  g_assert_cmpint (wait_exit_code (failing), ==, CLI_FAILED);
  failing_out = file_text (failing->log_path);
  assert_contains (failing_out, "(main): fail: -2 not found");
  /* The failure of another module is none of its business. */
  g_assert_true (ota_test_process_is_running (other));
  ota_test_process_stop (other, SIGINT);
  g_assert_true (WIFEXITED (other->status));
  g_assert_cmpint (WEXITSTATUS (other->status), ==, 130);
  other_out = file_text (other->log_path);
  g_assert_null (strstr (other_out, "(main)"));
  idle = spawn_watch (f, "watch-idle.log", (const char *const[]) { "--until", "done", "--timeout", "0.5", NULL });
  g_assert_cmpint (wait_exit_code (idle), ==, CLI_TIMEOUT);
}

static void
test_check (Fixture *f, gconstpointer data)
{
  const char *report = "{\"type\":\"report_version\",\"report\":{\"version\":\"1.0\"}}";
  guint before;
  CliResult r;

  r = run_cli ("check");
  g_assert_cmpint (r.code, ==, CLI_NO_SUCH_MODULE);
  assert_contains (r.err, "nothing to check");
  cli_result_clear (&r);

  ota_test_env_init_published (&f->env, "", "1.0");
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, 0, report, OTA_TEST_TIMEOUT_MS), >=, 0);
  before = f->env.cloud->reports->len;
  /* Anyone may ask: iv-ota does not own the module. */
  r = run_cli ("check");
  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "(main): the agent reports version 1.0");
  cli_result_clear (&r);
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, before, report, OTA_TEST_TIMEOUT_MS), >=, 0);
  before = f->env.cloud->reports->len;
  r = run_cli ("check", "");
  g_assert_cmpint (r.code, ==, CLI_OK);
  cli_result_clear (&r);
  g_assert_cmpint (ota_test_cloud_wait_report (f->env.cloud, before, report, OTA_TEST_TIMEOUT_MS), >=, 0);

  r = run_cli ("check", "nosuch");
  g_assert_cmpint (r.code, ==, CLI_NO_SUCH_MODULE);
  cli_result_clear (&r);
  r = run_cli ("check", "bad/name");
  g_assert_cmpint (r.code, ==, CLI_USAGE);
  cli_result_clear (&r);
}

/* Only the owner may cancel: iv-ota asks, and shows the agent's refusal. */
static void
test_cancel_not_owner (Fixture *f, gconstpointer data)
{
  g_autofree char *state = NULL;
  CliResult r;

  start_cloud_tool (f, 600000, "--rate=100000");
  r = run_cli ("cancel");
  g_assert_cmpint (r.code, ==, CLI_OK);
  assert_contains (r.out, "nothing to cancel");
  cli_result_clear (&r);

  ota_test_env_init_published (&f->env, "", "1.0");
  ota_test_env_wait_published (&f->env, "", "downloading", TRUE);
  r = run_cli ("cancel", "");
  g_assert_cmpint (r.code, ==, CLI_NOT_PERMITTED);
  assert_contains (r.err, "only the module's owner may cancel");
  assert_contains (r.err, owner_name (f));
  assert_contains (r.err, "NotOwner");
  cli_result_clear (&r);
  /* Without MODULE: every running download, with the same answer. */
  r = run_cli ("cancel");
  g_assert_cmpint (r.code, ==, CLI_NOT_PERMITTED);
  cli_result_clear (&r);
  /* The download went on. */
  state = ota_test_status_get (f->env.proxy, "", "state");
  g_assert_cmpstr (state, ==, "downloading");
  r = run_cli ("cancel", "nosuch");
  g_assert_cmpint (r.code, ==, CLI_NO_SUCH_MODULE);
  cli_result_clear (&r);
}

/* A stopped agent (SIGSTOP) still owns its name: status, and the requests by
 * module name (cancel here; check takes the same path), say that it does not
 * answer, with their own exit code, instead of waiting for libdbus's 25 s and
 * then claiming that nobody owns the name. */
static void
test_frozen_agent (Fixture *f, gconstpointer data)
{
  const char *const *commands[] = { (const char *const[]) { "status", NULL },
                                     (const char *const[]) { "cancel", "", NULL } };
  CliResult results[G_N_ELEMENTS (commands)];
  GPid pid = f->env.agent->proc->pid;

  ota_test_env_init_published (&f->env, "", "1.0");
  g_assert_cmpint (kill (pid, SIGSTOP), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    results[i] = run_program (env_path ("IV_OTA"), commands[i]);
  g_assert_cmpint (kill (pid, SIGCONT), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++) {
    g_assert_cmpint (results[i].code, ==, CLI_NOT_ANSWERING);
    assert_contains (results[i].err, "does not answer");
    g_assert_null (strstr (results[i].err, "nobody owns"));
    cli_result_clear (&results[i]);
  }
  /* Woken up, it answers again. */
  results[0] = run_cli ("status");
  g_assert_cmpint (results[0].code, ==, CLI_OK);
  cli_result_clear (&results[0]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cli/help-every-program", test_help_every_program);
  g_test_add_func ("/cli/usage-errors", test_usage_errors);
  g_test_add_func ("/cli/no-agent", test_no_agent);
#define ADD(path, fn) g_test_add ("/cli/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("status-table", test_status_table);
  ADD ("status-download", test_status_download);
  ADD ("status-inhibited", test_status_inhibited);
  ADD ("watch-plain-until", test_watch_plain_until);
  ADD ("watch-fail-and-timeout", test_watch_fail_and_timeout);
  ADD ("check", test_check);
  ADD ("cancel-not-owner", test_cancel_not_owner);
  ADD ("frozen-agent-does-not-answer", test_frozen_agent);
#undef ADD
  return g_test_run ();
}
