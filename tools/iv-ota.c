/* iv-ota: the command line of the iv-ota agent, written on libiv-ota alone
 * (iv_ota_ext.h): a status table, live progress (iv-ota-watch.c), and the
 * requests any process may send about a module.
 *
 * It owns no module: it reads the agent's status (iv_ota_status_get), observes
 * every module (iv_ota_observer_add) and asks by module name
 * (iv_ota_check_module, iv_ota_cancel_module).
 *
 * Exit codes are part of the interface (see usage_main). */
#include "iv-ota-cli.h"
#include "common/ota-vocabulary.h"
#include "ota-build-config.h"

#include <getopt.h>
#include <inttypes.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- help ---- */

static const char usage_main[] =
  "Usage: iv-ota [--bus BUS] COMMAND [ARGS...]\n"
  "       iv-ota help [COMMAND]\n"
  "\n"
  "The command line of iv-otad, the OTA agent shared by every application on\n"
  "this device. It shows what the agent does and asks it for what any process\n"
  "may ask; it never owns a module itself.\n"
  "\n"
  "Commands:\n"
  "  status [MODULE]    table of modules: state, versions, bytes, owner, last result\n"
  "  watch              live progress: bars with rate and ETA on a terminal,\n"
  "                     timestamped lines otherwise\n"
  "  check [MODULE]     ask the agent to report the version to the cloud now\n"
  "  cancel [MODULE]    ask the agent to stop a running download (owner only)\n"
  "  publish TOPIC PAYLOAD\n"
  "                     publish on the cloud through the agent's connection\n"
  "  subscribe FILTER   print the cloud's messages on the topics FILTER matches\n"
  "  help [COMMAND]     this text, or a command's\n"
  "\n"
  "MODULE is a module name; the main firmware is \"\" (an empty argument) or \".\",\n"
  "shown as " MAIN_LABEL ".\n"
  "\n"
  "Options:\n"
  "  --bus BUS      the bus of the agent: system (default), session, or a D-Bus\n"
  "                 address (unix:path=...); the same as IV_OTA_BUS=BUS\n"
  "  -h, --help     show this help\n"
  "  --version      show the version\n"
  "\n"
  "Exit codes:\n"
  "  0  success\n"
  "  1  failure: the agent refused, or the update watch waited for failed\n"
  "  2  usage error\n"
  "  3  no agent: the bus cannot be reached, or nobody owns org.iv.Ota on it\n"
  "  4  not permitted: only the module's owner may do this, or the bus policy refused\n"
  "  5  no such module: no application has registered it with the agent\n"
  "  6  watch --timeout ran out\n"
  "  7  publish: the agent is offline\n"
  "  8  the agent is on the bus but does not answer (stopped, or overloaded)\n"
  "  130  watch --until was interrupted (SIGINT, SIGTERM) first\n";

static const char usage_status[] =
  "Usage: iv-ota status [MODULE]\n"
  "\n"
  "Prints the agent (its bus name, version and cloud connection) and one line\n"
  "per module it knows, or only MODULE:\n"
  "  MODULE       the module, " MAIN_LABEL " for the main firmware\n"
  "  STATE        idle, offered, downloading, verifying, ready, burning,\n"
  "               rebooting, done or fail\n"
  "  INSTALLED    the version the owner registered\n"
  "  TARGET       the version of the current or last offer\n"
  "  PROGRESS     percent and bytes of the image\n"
  "  OWNER        the owning application: bus name (process name, pid)\n"
  "  LAST RESULT  of the last cycle: code and message\n"
  "When the agent requires signed images ([security] trusted_keys), a line per\n"
  "module follows the table: whether the target's signature was verified, by\n"
  "which key (id and file) and its security version.\n"
  "\n"
  "Exit codes: 0, 3 no agent, 5 no such MODULE, 8 the agent does not answer.\n";

static const char usage_check[] =
  "Usage: iv-ota check [MODULE]\n"
  "\n"
  "Asks the agent to report MODULE's version to the cloud now, so that the cloud\n"
  "offers an update at once if it has one; without MODULE, every module that an\n"
  "application owns. Any process may ask (D-Bus CheckNow). Follow what happens\n"
  "with iv-ota watch.\n"
  "\n"
  "Exit codes: 0, 1 refused (e.g. the module has no owner now), 3 no agent,\n"
  "5 no such module (or none registered), 8 the agent does not answer.\n";

static const char usage_cancel[] =
  "Usage: iv-ota cancel [MODULE]\n"
  "\n"
  "Asks the agent to stop MODULE's running download; without MODULE, every\n"
  "module whose download runs. The partial image is kept, and the next offer of\n"
  "the same image resumes it.\n"
  "\n"
  "The agent lets only a module's owner (the application that registered it)\n"
  "cancel its download. iv-ota asks anyway and shows the agent's answer: run\n"
  "from any other process, it fails with exit code 4 and names the owner, which\n"
  "can cancel (iv_ota_module_cancel) or stop (its partial download is kept).\n"
  "\n"
  "Exit codes: 0 (also when no download runs), 3 no agent, 4 not the owner,\n"
  "5 no such module, 8 the agent does not answer.\n";

/* ---- shared helpers (iv-ota-cli.h) ---- */

void
cli_error (const char *format, ...)
{
  va_list args;

  fflush (stdout);
  fputs ("iv-ota: ", stderr);
  va_start (args, format);
  vfprintf (stderr, format, args);
  va_end (args);
  fputc ('\n', stderr);
}

int
cli_usage_error (const char *usage, const char *format, ...)
{
  va_list args;

  fputs ("iv-ota: ", stderr);
  va_start (args, format);
  vfprintf (stderr, format, args);
  va_end (args);
  fputc ('\n', stderr);
  /* The first line of the usage, then where the rest is. */
  fprintf (stderr, "%.*s(see --help)\n", (int) (strchr (usage, '\n') - usage + 1), usage);
  return EXIT_USAGE;
}

const char *
cli_module_label (const char *module)
{
  return *module != '\0' ? module : MAIN_LABEL;
}

/* The module a command line argument names: "" and "." are the main firmware. */
const char *
cli_module_from_arg (const char *arg)
{
  return strcmp (arg, ".") == 0 ? "" : arg;
}

double
cli_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* "512 B", "12.5 KiB", "64.0 MiB", "1.50 GiB" */
void
cli_format_bytes (char *buffer, size_t size, uint64_t bytes)
{
  if (bytes < 1024)
    snprintf (buffer, size, "%" PRIu64 " B", bytes);
  else if (bytes < 1024 * 1024)
    snprintf (buffer, size, "%.1f KiB", (double) bytes / 1024);
  else if (bytes < (uint64_t) 1024 * 1024 * 1024)
    snprintf (buffer, size, "%.1f MiB", (double) bytes / (1024 * 1024));
  else
    snprintf (buffer, size, "%.2f GiB", (double) bytes / (1024.0 * 1024 * 1024));
}

/* "26.2/64.0 MiB": both in the unit of @total. */
void
cli_format_progress_bytes (char *buffer, size_t size, uint64_t done, uint64_t total)
{
  static const struct {
    uint64_t scale;
    const char *unit;
  } units[] = { { (uint64_t) 1 << 30, "GiB" }, { 1 << 20, "MiB" }, { 1 << 10, "KiB" } };

  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (total >= units[i].scale) {
      snprintf (buffer, size, "%.1f/%.1f %s", (double) done / (double) units[i].scale,
                (double) total / (double) units[i].scale, units[i].unit);
      return;
    }
  }
  snprintf (buffer, size, "%" PRIu64 "/%" PRIu64 " B", done, total);
}

/* "0:07", "12:34", "1:02:03" */
void
cli_format_duration (char *buffer, size_t size, double seconds)
{
  unsigned long s = seconds < 0 ? 0 : (unsigned long) (seconds + 0.5);

  if (s >= 3600)
    snprintf (buffer, size, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf (buffer, size, "%lu:%02lu", s / 60, s % 60);
}

/* "-", "cancelled", "-4 MD5 mismatch: <message>" */
void
cli_format_result (char *buffer, size_t size, int code, const char *message)
{
  if (code == 0)
    snprintf (buffer, size, "%s", *message != '\0' ? message : "-");
  else if (*message != '\0')
    snprintf (buffer, size, "%d %s: %s", code, ota_vocab_result_meaning (code), message);
  else
    snprintf (buffer, size, "%d %s", code, ota_vocab_result_meaning (code));
}

/* Terminal-safe copy of a text that came from elsewhere (result messages). */
void
cli_copy_printable (char *dest, size_t size, const char *source)
{
  size_t i = 0;

  for (; source[i] != '\0' && i + 1 < size; i++)
    dest[i] = source[i] >= ' ' && source[i] <= '~' ? source[i] : '?';
  dest[i] = '\0';
}

const char *
cli_bus_description (void)
{
  const char *bus = getenv ("IV_OTA_BUS");

  if (bus == NULL || *bus == '\0' || strcmp (bus, "system") == 0)
    return "the system bus";
  if (strcmp (bus, "session") == 0)
    return "the session bus";
  return bus;
}

/* Explains @code (an IV_ERR_* of @what, which failed) and returns the exit code. */
int
cli_report_failure (const char *what, int code)
{
  const char *detail = iv_ota_last_error ();

  switch (code) {
  case IV_ERR_OTA_NO_AGENT:
  case IV_ERR_OTA_START_FAIL:
    if (strstr (detail, "cannot connect to the bus") != NULL) {
      cli_error ("no OTA agent: cannot reach %s, where iv-otad would be.\n"
                 "  Is D-Bus running? --bus session|system|ADDRESS or IV_OTA_BUS names another bus.\n"
                 "  (%s: %s)",
                 cli_bus_description (), what, detail);
      return EXIT_NO_AGENT;
    }
    cli_error ("no OTA agent answers on %s (nobody owns org.iv.Ota there).\n"
               "  Start it (systemctl start iv-otad, or iv-otad --config FILE), or name its bus\n"
               "  with --bus session|system|ADDRESS or IV_OTA_BUS.\n"
               "  (%s: %s)",
               cli_bus_description (), what, *detail != '\0' ? detail : iv_ota_strerror (code));
    return EXIT_NO_AGENT;
  case IV_ERR_OTA_AGENT_NOT_ANSWERING:
    cli_error ("the OTA agent on %s does not answer: %s.\n"
               "  Is iv-otad stopped (kill -CONT it) or busy? iv-ota status shows nothing it could not confirm.",
               cli_bus_description (), detail);
    return EXIT_NOT_ANSWERING;
  case IV_ERR_OTA_NOT_OWNER:
  case IV_ERR_OTA_ACCESS_DENIED:
    cli_error ("%s: not permitted: %s (%s)", what, iv_ota_strerror (code), detail);
    return EXIT_NOT_PERMITTED;
  case IV_ERR_OTA_NO_SUCH_MODULE:
    cli_error ("%s: %s (%s)", what, iv_ota_strerror (code), detail);
    return EXIT_NO_SUCH_MODULE;
  case IV_ERR_OTA_INVALID_ARG:
    cli_error ("%s: %s", what, *detail != '\0' ? detail : iv_ota_strerror (code));
    return EXIT_USAGE;
  default:
    cli_error ("%s: %s (%s)", what, iv_ota_strerror (code), detail);
    return EXIT_FAILED;
  }
}

/* "device-app" for a pid, from /proc; "" when unknown. */
static void
process_name (unsigned int pid, char *buffer, size_t size)
{
  char path[64];
  FILE *f;

  buffer[0] = '\0';
  snprintf (path, sizeof path, "/proc/%u/comm", pid);
  if (pid == 0 || (f = fopen (path, "r")) == NULL)
    return;
  if (fgets (buffer, (int) size, f) == NULL)
    buffer[0] = '\0';
  buffer[strcspn (buffer, "\n")] = '\0';
  fclose (f);
}

/* ":1.7 (device-app, pid 4242)", or "(none)". */
static void
format_owner (char *buffer, size_t size, const iv_ota_module_status_s *m)
{
  char name[64];

  if (*m->owner == '\0') {
    snprintf (buffer, size, "(none)");
    return;
  }
  process_name (m->owner_pid, name, sizeof name);
  if (*name != '\0')
    snprintf (buffer, size, "%s (%s, pid %u)", m->owner, name, m->owner_pid);
  else if (m->owner_pid != 0)
    snprintf (buffer, size, "%s (pid %u)", m->owner, m->owner_pid);
  else
    snprintf (buffer, size, "%s", m->owner);
}

/* Parses a command's options: only --help, then at most one MODULE. */
static int
parse_module_args (int argc, char **argv, const char *usage, const char **module, bool *help)
{
  static const struct option options[] = { { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
  int opt;

  *module = NULL;
  *help = false;
  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, "+:h", options, NULL)) != -1) {
    if (opt != 'h')
      return cli_usage_error (usage, "unknown option %s", argv[optind - 1]);
    *help = true;
  }
  if (*help) {
    fputs (usage, stdout);
    return EXIT_OK;
  }
  if (argc - optind > 1)
    return cli_usage_error (usage, "at most one MODULE");
  if (argc - optind == 1)
    *module = cli_module_from_arg (argv[optind]);
  return EXIT_OK;
}

static const iv_ota_module_status_s *
status_find (const iv_ota_status_s *status, const char *module)
{
  for (size_t i = 0; i < status->n_modules; i++) {
    if (strcmp (status->modules[i].module, module) == 0)
      return &status->modules[i];
  }
  return NULL;
}

/* ---- status ---- */

enum { COL_MODULE, COL_STATE, COL_INSTALLED, COL_TARGET, COL_PROGRESS, COL_OWNER, COL_RESULT, N_COLUMNS };
#define CELL_LEN 160

static const char *const column_titles[N_COLUMNS] = {
  "MODULE", "STATE", "INSTALLED", "TARGET", "PROGRESS", "OWNER", "LAST RESULT",
};

static void
status_row (const iv_ota_module_status_s *m, char cells[N_COLUMNS][CELL_LEN])
{
  char bytes[64], result[CELL_LEN];

  snprintf (cells[COL_MODULE], CELL_LEN, "%s", cli_module_label (m->module));
  snprintf (cells[COL_STATE], CELL_LEN, "%s", m->state);
  snprintf (cells[COL_INSTALLED], CELL_LEN, "%s", *m->version != '\0' ? m->version : "-");
  snprintf (cells[COL_TARGET], CELL_LEN, "%s", *m->target_version != '\0' ? m->target_version : "-");
  if (m->total > 0) {
    cli_format_progress_bytes (bytes, sizeof bytes, m->downloaded, m->total);
    snprintf (cells[COL_PROGRESS], CELL_LEN, "%u%% %s", m->percent, bytes);
  } else {
    snprintf (cells[COL_PROGRESS], CELL_LEN, "-");
  }
  format_owner (cells[COL_OWNER], CELL_LEN, m);
  cli_format_result (result, sizeof result, m->result_code, m->result_msg);
  cli_copy_printable (cells[COL_RESULT], CELL_LEN, result);
}

/* A cell padded to @width, or the last one of its line. */
static void
status_print_cell (const char *text, int column, int width)
{
  if (column + 1 < N_COLUMNS)
    printf ("%-*s  ", width, text);
  else
    printf ("%s\n", text);
}

static void
status_print_table (const iv_ota_module_status_s *const *rows, size_t n)
{
  char (*cells)[N_COLUMNS][CELL_LEN] = calloc (n > 0 ? n : 1, sizeof *cells);
  int width[N_COLUMNS];

  if (cells == NULL) {
    cli_error ("out of memory");
    return;
  }
  for (int c = 0; c < N_COLUMNS; c++)
    width[c] = (int) strlen (column_titles[c]);
  for (size_t r = 0; r < n; r++) {
    status_row (rows[r], cells[r]);
    for (int c = 0; c < N_COLUMNS; c++) {
      int len = (int) strlen (cells[r][c]);
      width[c] = len > width[c] ? len : width[c];
    }
  }
  for (int c = 0; c < N_COLUMNS; c++)
    status_print_cell (column_titles[c], c, width[c]);
  for (size_t r = 0; r < n; r++) {
    for (int c = 0; c < N_COLUMNS; c++)
      status_print_cell (cells[r][c], c, width[c]);
  }
  free (cells);
}

/* Under the table, for agents with trusted keys: which image was signature-checked, by which key. */
static void
status_print_signatures (const iv_ota_module_status_s *const *rows, size_t n)
{
  for (size_t r = 0; r < n; r++) {
    const iv_ota_module_status_s *m = rows[r];

    if (m->signature_checked == 1)
      printf ("signature of %s %s: verified, key %s (%s), security version %u\n", cli_module_label (m->module),
              m->target_version, m->signing_key, m->signing_key_file, m->security_version);
    else if (m->signature_checked == 0)
      printf ("signature of %s: not verified (no signed offer accepted)\n", cli_module_label (m->module));
  }
}

/* Why a module's downloads wait, under the table: the Inhibit reasons. */
static void
status_print_waits (const iv_ota_module_status_s *const *rows, size_t n)
{
  char reasons[512];

  for (size_t r = 0; r < n; r++) {
    if (*rows[r]->inhibited == '\0')
      continue;
    cli_copy_printable (reasons, sizeof reasons, rows[r]->inhibited);
    printf ("%s: downloads wait, inhibited by: %s\n", cli_module_label (rows[r]->module), reasons);
  }
}

static int
cmd_status (int argc, char **argv)
{
  const iv_ota_module_status_s **rows;
  iv_ota_status_s *status = NULL;
  const char *module;
  size_t n = 0;
  bool help;
  int rc = parse_module_args (argc, argv, usage_status, &module, &help);

  if (rc != EXIT_OK || help)
    return rc;
  if ((rc = iv_ota_status_get (&status)) != IV_ERR_NONE)
    return cli_report_failure ("status", rc);
  printf ("agent %s (iv-otad %s), cloud %s\n", status->agent,
          *status->daemon_version != '\0' ? status->daemon_version : "?",
          status->cloud_connected ? "connected" : "not connected");
  if (module != NULL && status_find (status, module) == NULL) {
    cli_error ("no module %s: no application has registered it with the agent", cli_module_label (module));
    iv_ota_status_free (status);
    return EXIT_NO_SUCH_MODULE;
  }
  if (status->n_modules == 0) {
    printf ("no module: no application has registered one with the agent yet\n");
    iv_ota_status_free (status);
    return EXIT_OK;
  }
  rows = calloc (status->n_modules, sizeof *rows);
  for (size_t i = 0; rows != NULL && i < status->n_modules; i++) {
    if (module == NULL || strcmp (status->modules[i].module, module) == 0)
      rows[n++] = &status->modules[i];
  }
  if (rows != NULL) {
    status_print_table (rows, n);
    status_print_signatures (rows, n);
    status_print_waits (rows, n);
  }
  free (rows);
  iv_ota_status_free (status);
  return rows != NULL ? EXIT_OK : EXIT_FAILED;
}

/* ---- check and cancel ---- */

typedef bool (*ModuleFilter) (const iv_ota_module_status_s *m);

static bool
module_is_owned (const iv_ota_module_status_s *m)
{
  return *m->owner != '\0';
}

static bool
module_is_downloading (const iv_ota_module_status_s *m)
{
  return ota_vocab_state_is_download (ota_vocab_state_parse (m->state));
}

static int
check_one (const char *module, const iv_ota_module_status_s *m)
{
  char what[96];
  int rc = iv_ota_check_module (module);

  snprintf (what, sizeof what, "check %s", cli_module_label (module));
  if (rc != IV_ERR_NONE)
    return cli_report_failure (what, rc);
  if (m != NULL)
    printf ("%s: the agent reports version %s to the cloud now; an offer, if any, shows in iv-ota watch\n",
            cli_module_label (module), m->version);
  else
    printf ("%s: the agent reports its version to the cloud now; an offer, if any, shows in iv-ota watch\n",
            cli_module_label (module));
  return EXIT_OK;
}

static int
cancel_one (const char *module, const iv_ota_module_status_s *m)
{
  char what[96], owner[CELL_LEN];
  int rc = iv_ota_cancel_module (module);

  snprintf (what, sizeof what, "cancel %s", cli_module_label (module));
  if (rc == IV_ERR_OTA_NOT_OWNER) {
    if (m != NULL)
      format_owner (owner, sizeof owner, m);
    cli_error ("cancel %s: refused by the agent: only the module's owner may cancel its download.\n"
               "  The owner is %s. It can cancel (iv_ota_module_cancel), or stop: the partial\n"
               "  download is kept and resumes at the next offer.\n"
               "  (%s)",
               cli_module_label (module), m != NULL ? owner : "another application", iv_ota_last_error ());
    return EXIT_NOT_PERMITTED;
  }
  if (rc != IV_ERR_NONE)
    return cli_report_failure (what, rc);
  printf ("%s: download cancelled; the partial image is kept for resume\n", cli_module_label (module));
  return EXIT_OK;
}

/* Runs @one for @module, or for each module passing @filter when NULL. */
static int
for_modules (const char *module, ModuleFilter filter, int (*one) (const char *, const iv_ota_module_status_s *),
             const char *none_message, int none_code)
{
  iv_ota_status_s *status = NULL;
  int rc = iv_ota_status_get (&status), result = EXIT_OK;
  size_t done = 0;

  if (rc != IV_ERR_NONE)
    return cli_report_failure ("status", rc);
  if (module != NULL) {
    result = one (module, status_find (status, module));
    iv_ota_status_free (status);
    return result;
  }
  for (size_t i = 0; i < status->n_modules; i++) {
    if (!filter (&status->modules[i]))
      continue;
    done++;
    rc = one (status->modules[i].module, &status->modules[i]);
    result = result == EXIT_OK ? rc : result;
  }
  iv_ota_status_free (status);
  if (done > 0)
    return result;
  if (none_code == EXIT_OK)
    printf ("%s\n", none_message);
  else
    cli_error ("%s", none_message);
  return none_code;
}

static int
cmd_check (int argc, char **argv)
{
  const char *module;
  bool help;
  int rc = parse_module_args (argc, argv, usage_check, &module, &help);

  if (rc != EXIT_OK || help)
    return rc;
  return for_modules (module, module_is_owned, check_one,
                      "no application has registered a module with the agent: nothing to check", EXIT_NO_SUCH_MODULE);
}

static int
cmd_cancel (int argc, char **argv)
{
  const char *module;
  bool help;
  int rc = parse_module_args (argc, argv, usage_cancel, &module, &help);

  if (rc != EXIT_OK || help)
    return rc;
  return for_modules (module, module_is_downloading, cancel_one, "no download is running: nothing to cancel",
                      EXIT_OK);
}

/* ---- main ---- */

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *usage;
} Command;

static const Command commands[] = {
  { "status", cmd_status, usage_status },
  { "watch", cli_watch, cli_usage_watch },
  { "check", cmd_check, usage_check },
  { "cancel", cmd_cancel, usage_cancel },
  { "publish", cli_publish, cli_usage_publish },
  { "subscribe", cli_subscribe, cli_usage_subscribe },
};

static const Command *
command_find (const char *name)
{
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  }
  return NULL;
}

static int
cmd_help (int argc, char **argv)
{
  const Command *command;

  if (argc < 2 || strcmp (argv[1], "help") == 0) {
    fputs (usage_main, stdout);
    return EXIT_OK;
  }
  if ((command = command_find (argv[1])) == NULL)
    return cli_usage_error (usage_main, "unknown command %s", argv[1]);
  fputs (command->usage, stdout);
  return EXIT_OK;
}

static bool
bus_is_valid (const char *bus)
{
  return strcmp (bus, "system") == 0 || strcmp (bus, "session") == 0 || strchr (bus, ':') != NULL;
}

int
main (int argc, char **argv)
{
  static const struct option options[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "bus", required_argument, NULL, 'b' },
    { NULL, 0, NULL, 0 },
  };
  const Command *command;
  int opt;

  setlocale (LC_ALL, "");
  opterr = 0;
  while ((opt = getopt_long (argc, argv, "+:h", options, NULL)) != -1) {
    switch (opt) {
    case 'h':
      fputs (usage_main, stdout);
      return EXIT_OK;
    case 'V':
      printf ("iv-ota %s\n", PACKAGE_VERSION);
      return EXIT_OK;
    case 'b':
      if (!bus_is_valid (optarg))
        return cli_usage_error (usage_main, "--bus must be system, session or a D-Bus address, not %s", optarg);
      /* The library reads it when it first connects. */
      setenv ("IV_OTA_BUS", optarg, 1);
      break;
    case ':':
      return cli_usage_error (usage_main, "%s needs a value", argv[optind - 1]);
    default:
      return cli_usage_error (usage_main, "unknown option %s", argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return cli_usage_error (usage_main, "a command is required");
  if (strcmp (argv[optind], "help") == 0)
    return cmd_help (argc - optind, argv + optind);
  if ((command = command_find (argv[optind])) == NULL)
    return cli_usage_error (usage_main, "unknown command %s", argv[optind]);
  return command->run (argc - optind, argv + optind);
}
