/* iv-ota watch: live progress of every module, through the observer API of
 * libiv-ota (iv_ota_observer_add).
 *
 * The observer callback runs on the library's thread: it only queues a copy of
 * each event and wakes the main thread through a pipe. The main thread alone
 * keeps the model (one ModuleView per module) and writes to the terminal: on a
 * terminal, a log of events above one progress line per module, redrawn in
 * place with ANSI sequences; otherwise timestamped lines. */
#include "iv-ota-cli.h"
#include "common/ota-vocabulary.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

const char cli_usage_watch[] =
  "Usage: iv-ota watch [--module MODULE] [--until STATE[,STATE...]] [--timeout SECONDS] [--plain]\n"
  "\n"
  "Follows every module (or MODULE) live until interrupted (Ctrl-C).\n"
  "On a terminal: a log of events with one progress line per module below it,\n"
  "redrawn in place: state, version, bar, percent, bytes, rate and ETA.\n"
  "Otherwise (or with --plain): one timestamped line per event, and a progress\n"
  "line at most once a second while downloading.\n"
  "\n"
  "Options:\n"
  "  --module MODULE   only this module (\"\" or \".\" for the main firmware)\n"
  "  --until STATES    exit once a module is in one of these states (already when\n"
  "                    watch starts, or later), e.g. --until done,fail: exit code\n"
  "                    0, or 1 when that state is fail\n"
  "  --timeout SECONDS give up after SECONDS (exit code 6)\n"
  "  --plain           timestamped lines even on a terminal\n"
  "\n"
  "Exit codes: 0 (also after Ctrl-C without --until), 1 a module reached fail,\n"
  "2 usage, 3 no agent when watch starts, 6 timeout, 130 interrupted before --until.\n"
  "Once started, watch waits through agent restarts.\n";

static bool plain_forced;

/* ---- events from the library thread ---- */

typedef struct WatchEvent {
  struct WatchEvent *next;
  iv_ota_event_type_e type;
  char *module, *version, *state, *result_msg, *path, *md5;
  unsigned int percent;
  uint64_t downloaded, total;
  int result_code;
  bool agent_present, cloud_connected, snapshot;
  double time;
} WatchEvent;

/* Filled by the observer callback (library thread), drained by the main thread. */
static struct {
  pthread_mutex_t lock;
  WatchEvent *head, *tail;
  bool lost; /* out of memory: an event was dropped */
  int wake[2];
} inbox = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = { -1, -1 } };

static int signal_pipe[2] = { -1, -1 };

static void
watch_event_free (WatchEvent *event)
{
  if (event == NULL)
    return;
  free (event->module);
  free (event->version);
  free (event->state);
  free (event->result_msg);
  free (event->path);
  free (event->md5);
  free (event);
}

static WatchEvent *
watch_event_copy (const iv_ota_event_s *source)
{
  WatchEvent *event = calloc (1, sizeof *event);

  if (event == NULL)
    return NULL;
  event->type = source->type;
  event->module = strdup (source->module);
  event->version = strdup (source->version);
  event->state = strdup (source->state);
  event->result_msg = strdup (source->result_msg);
  event->path = strdup (source->path);
  event->md5 = strdup (source->md5);
  event->percent = source->percent;
  event->downloaded = source->downloaded;
  event->total = source->total;
  event->result_code = source->result_code;
  event->agent_present = source->agent_present != 0;
  event->cloud_connected = source->cloud_connected != 0;
  event->snapshot = source->snapshot != 0;
  event->time = cli_now ();
  if (event->module == NULL || event->version == NULL || event->state == NULL || event->result_msg == NULL ||
      event->path == NULL || event->md5 == NULL) {
    watch_event_free (event);
    return NULL;
  }
  return event;
}

static void
wake (int fd)
{
  char byte = 1;

  /* A full pipe already holds a wake-up. */
  if (write (fd, &byte, 1) < 0 && errno != EAGAIN)
    return;
}

/* Library thread: keep a copy, wake the main thread. */
static void
on_observer_event (const iv_ota_event_s *source, void *user_data)
{
  WatchEvent *event = watch_event_copy (source);

  pthread_mutex_lock (&inbox.lock);
  if (event == NULL) {
    inbox.lost = true;
  } else if (inbox.tail != NULL) {
    inbox.tail->next = event;
    inbox.tail = event;
  } else {
    inbox.head = inbox.tail = event;
  }
  pthread_mutex_unlock (&inbox.lock);
  wake (inbox.wake[1]);
}

static WatchEvent *
inbox_take_all (bool *lost)
{
  WatchEvent *list;

  pthread_mutex_lock (&inbox.lock);
  list = inbox.head;
  inbox.head = inbox.tail = NULL;
  *lost = inbox.lost;
  inbox.lost = false;
  pthread_mutex_unlock (&inbox.lock);
  return list;
}

static void
on_signal (int sig)
{
  char byte = (char) sig;
  int saved = errno;

  if (write (signal_pipe[1], &byte, 1) < 0) {
    /* Nothing to do: a pending byte already stops the loop. */
  }
  errno = saved;
}

static void
drain (int fd, char *last)
{
  char buffer[64];
  ssize_t n;

  while ((n = read (fd, buffer, sizeof buffer)) > 0) {
    if (last != NULL)
      *last = buffer[n - 1];
  }
}

/* ---- the model ---- */

#define RATE_SAMPLES 32
#define RATE_WINDOW_S 3.0
#define STALL_S 2.0

typedef struct {
  double time;
  uint64_t bytes;
} RateSample;

typedef struct {
  char *name;
  char state[STATE_LEN];
  char *version;
  unsigned int percent;
  uint64_t downloaded, total;
  int result_code;
  char *result_msg;
  RateSample samples[RATE_SAMPLES]; /* ring, oldest first from @first */
  int first, count;
  double last_data;   /* when downloaded last grew */
  double last_line;   /* plain mode: when its last progress line went out */
  bool stall_told;
} ModuleView;

typedef struct {
  /* options */
  const char *module; /* NULL: every module */
  char until[OTA_VOCAB_N_STATES][STATE_LEN];
  int n_until;
  double timeout;     /* seconds, 0: none */
  bool tty, utf8, color;
  /* state */
  ModuleView *modules;
  size_t n_modules;
  bool agent_seen, agent_present;
  int drawn;          /* progress lines on screen below the log (tty) */
  int exit_code;      /* -1 while watching */
} Watch;

static ModuleView *
watch_module (Watch *w, const char *name)
{
  ModuleView *grown;

  for (size_t i = 0; i < w->n_modules; i++) {
    if (strcmp (w->modules[i].name, name) == 0)
      return &w->modules[i];
  }
  grown = realloc (w->modules, (w->n_modules + 1) * sizeof *grown);
  if (grown == NULL)
    return NULL;
  w->modules = grown;
  memset (&grown[w->n_modules], 0, sizeof *grown);
  grown[w->n_modules].name = strdup (name);
  grown[w->n_modules].version = strdup ("");
  grown[w->n_modules].result_msg = strdup ("");
  if (grown[w->n_modules].name == NULL || grown[w->n_modules].version == NULL ||
      grown[w->n_modules].result_msg == NULL) {
    free (grown[w->n_modules].name);
    free (grown[w->n_modules].version);
    free (grown[w->n_modules].result_msg);
    return NULL;
  }
  return &w->modules[w->n_modules++];
}

static void
watch_clear (Watch *w)
{
  for (size_t i = 0; i < w->n_modules; i++) {
    free (w->modules[i].name);
    free (w->modules[i].version);
    free (w->modules[i].result_msg);
  }
  free (w->modules);
}

static void
replace_string (char **field, const char *value)
{
  char *copy = strdup (value);

  if (copy != NULL) {
    free (*field);
    *field = copy;
  }
}

static void
rate_add (ModuleView *m, double time, uint64_t bytes)
{
  int last = (m->first + m->count - 1) % RATE_SAMPLES;

  /* Fewer bytes than before: a new download, the old samples say nothing. */
  if (m->count > 0 && bytes < m->samples[last].bytes)
    m->count = 0;
  if (m->count > 0 && bytes == m->samples[last].bytes)
    return;
  if (m->count == 0 || bytes > m->samples[last].bytes)
    m->last_data = time;
  if (m->count == RATE_SAMPLES) {
    m->first = (m->first + 1) % RATE_SAMPLES;
    m->count--;
  }
  m->samples[(m->first + m->count) % RATE_SAMPLES] = (RateSample) { time, bytes };
  m->count++;
}

/* Bytes per second over the last few seconds up to @now (so it falls while
 * nothing arrives); negative when not known yet. */
static double
rate_get (const ModuleView *m, double now)
{
  const RateSample *last, *oldest = NULL;
  double end;

  if (m->count < 2)
    return -1;
  last = &m->samples[(m->first + m->count - 1) % RATE_SAMPLES];
  for (int i = 0; i < m->count; i++) {
    const RateSample *s = &m->samples[(m->first + i) % RATE_SAMPLES];
    if (now - s->time <= RATE_WINDOW_S) {
      oldest = s;
      break;
    }
  }
  if (oldest == NULL || oldest == last)
    return now - last->time > RATE_WINDOW_S ? 0 : -1;
  /* Up to the last sample while they keep coming (they come in steps), up to
   * now once they are late, so that the rate falls during a stall. */
  end = now - last->time > 1.0 ? now : last->time;
  return (double) (last->bytes - oldest->bytes) / (end - oldest->time);
}

static bool
state_shows_bar (const char *state)
{
  int s = ota_vocab_state_parse (state);

  return ota_vocab_state_is_download (s) || s == OTA_VOCAB_STATE_BURNING;
}

/* "4.0 MiB/s  ETA 0:09" (@gap between), "stalled 3 s", or "" */
static void
format_rate (char *buffer, size_t size, const ModuleView *m, double now, const char *gap)
{
  double rate = rate_get (m, now);
  char bytes[32], eta[32];

  buffer[0] = '\0';
  if (!ota_vocab_state_is (m->state, OTA_VOCAB_STATE_DOWNLOADING))
    return;
  if (m->count > 0 && now - m->last_data >= STALL_S) {
    snprintf (buffer, size, "stalled %.0f s", now - m->last_data);
    return;
  }
  if (rate <= 0)
    return;
  cli_format_bytes (bytes, sizeof bytes, (uint64_t) rate);
  if (m->total > m->downloaded) {
    cli_format_duration (eta, sizeof eta, (double) (m->total - m->downloaded) / rate);
    snprintf (buffer, size, "%s/s%sETA %s", bytes, gap, eta);
  } else {
    snprintf (buffer, size, "%s/s", bytes);
  }
}

/* What a module's state means, for a line: "offered", "verifying (MD5)",
 * "fail: -4 MD5 mismatch: ...". */
static void
format_state (char *buffer, size_t size, const ModuleView *m)
{
  char result[256];

  if (ota_vocab_state_is (m->state, OTA_VOCAB_STATE_VERIFYING)) {
    snprintf (buffer, size, "verifying (MD5 check)");
  } else if (ota_vocab_state_is (m->state, OTA_VOCAB_STATE_READY)) {
    snprintf (buffer, size, "ready (size and MD5 verified)");
  } else if (ota_vocab_state_is (m->state, OTA_VOCAB_STATE_FAIL) ||
             (m->result_code != 0 && ota_vocab_state_is (m->state, OTA_VOCAB_STATE_IDLE))) {
    cli_format_result (result, sizeof result, m->result_code, m->result_msg);
    snprintf (buffer, size, "%s: ", m->state);
    cli_copy_printable (buffer + strlen (buffer), size - strlen (buffer), result);
  } else {
    snprintf (buffer, size, "%s", m->state);
  }
}

/* The details after the state, fields separated by @gap:
 * "41%  26.2/64.0 MiB  4.0 MiB/s  ETA 0:09". */
static void
format_details (char *buffer, size_t size, const ModuleView *m, double now, const char *gap)
{
  char bytes[64], rate[96];

  buffer[0] = '\0';
  if (ota_vocab_state_is (m->state, OTA_VOCAB_STATE_BURNING) && m->percent > 0) {
    snprintf (buffer, size, "%u%%", m->percent);
    return;
  }
  if (!state_shows_bar (m->state) || m->total == 0)
    return;
  cli_format_progress_bytes (bytes, sizeof bytes, m->downloaded, m->total);
  format_rate (rate, sizeof rate, m, now, gap);
  snprintf (buffer, size, "%3u%%%s%s%s%s", m->percent, gap, bytes, *rate != '\0' ? gap : "", rate);
}

/* ---- output ---- */

static bool
watch_wants (const Watch *w, const char *module)
{
  return w->module == NULL || strcmp (w->module, module) == 0;
}

static int
terminal_width (void)
{
  struct winsize ws;

  if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

typedef struct {
  char *data;
  size_t len, size;
} Buffer;

static void
buffer_add (Buffer *b, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static void
buffer_add (Buffer *b, const char *format, ...)
{
  va_list args;
  int n;

  for (;;) {
    va_start (args, format);
    n = vsnprintf (b->data != NULL ? b->data + b->len : NULL, b->data != NULL ? b->size - b->len : 0, format, args);
    va_end (args);
    if (n < 0)
      return;
    if (b->data != NULL && b->len + (size_t) n < b->size) {
      b->len += (size_t) n;
      return;
    }
    char *grown = realloc (b->data, b->size + (size_t) n + 256);
    if (grown == NULL)
      return;
    b->data = grown;
    b->size += (size_t) n + 256;
  }
}

static void
buffer_write (Buffer *b)
{
  if (b->len > 0 && fwrite (b->data, 1, b->len, stdout) != b->len) {
    /* stdout is gone (a closed pipe): nothing left to tell. */
  }
  fflush (stdout);
  free (b->data);
}

/* "[█████░░░░░]" of @columns columns, with @percent filled. */
static void
buffer_add_bar (Buffer *b, const Watch *w, int columns, unsigned int percent)
{
  int filled = (int) (percent > 100 ? 100 : percent) * columns / 100;

  buffer_add (b, "[");
  for (int i = 0; i < columns; i++)
    buffer_add (b, "%s", i < filled ? (w->utf8 ? "\u2588" : "#") : (w->utf8 ? "\u2591" : "."));
  buffer_add (b, "]");
}

typedef struct {
  int label, state, version; /* widths of the columns, for all lines alike */
} Columns;

/* One progress line of the terminal, at most @width - 1 columns:
 * "(main) downloading 2.0 [█████░░░░░]  41% 26.2/64.0 MiB 4.0 MiB/s ETA 0:09" */
static void
buffer_add_module_line (Buffer *b, const Watch *w, const ModuleView *m, const Columns *c, double now, int width)
{
  char head[192], state[256], details[160], line[512];
  const char *color = "", *reset = "";
  const char *version = *m->version != '\0' ? m->version : "-";
  int bar;

  if (w->color) {
    reset = "\033[0m";
    color = ota_vocab_state_is (m->state, OTA_VOCAB_STATE_DONE)   ? "\033[32m"
            : ota_vocab_state_is (m->state, OTA_VOCAB_STATE_FAIL) ? "\033[31m"
                                                                  : "";
  }
  format_details (details, sizeof details, m, now, " ");
  snprintf (head, sizeof head, "%-*s %-*s %-*s", c->label, cli_module_label (m->name), c->state, m->state,
            c->version, version);
  /* head, a space, [bar], a space, details */
  bar = width - 1 - (int) strlen (head) - 1 - 2 - 1 - (int) strlen (details);
  bar = bar > 30 ? 30 : bar;
  if (state_shows_bar (m->state) && m->total > 0 && bar >= 8) {
    buffer_add (b, "%s ", head);
    buffer_add_bar (b, w, bar, m->percent);
    buffer_add (b, " %s\033[K\n", details);
    return;
  }
  /* Nothing to measure, or no room: the state in words instead of a bar. */
  format_state (state, sizeof state, m);
  snprintf (line, sizeof line, "%-*s %s %s%s%s", c->label, cli_module_label (m->name), state, version,
            *details != '\0' ? " " : "", details);
  buffer_add (b, "%s%.*s%s\033[K\n", color, width - 1, line, reset);
}

static int
max_int (int a, int b)
{
  return a > b ? a : b;
}

/* Erases the progress lines, adds @text (NULL: none) to the log, redraws them. */
static void
tty_redraw (Watch *w, const char *text)
{
  Buffer b = { NULL, 0, 0 };
  Columns columns = { 0, 0, 0 };
  double now = cli_now ();
  int width = terminal_width (), lines = 0;

  for (size_t i = 0; i < w->n_modules; i++) {
    const ModuleView *m = &w->modules[i];
    if (!watch_wants (w, m->name))
      continue;
    columns.label = max_int (columns.label, (int) strlen (cli_module_label (m->name)));
    columns.state = max_int (columns.state, (int) strlen (m->state));
    columns.version = max_int (columns.version, *m->version != '\0' ? (int) strlen (m->version) : 1);
  }
  if (w->drawn > 0)
    buffer_add (&b, "\r\033[%dA\033[J", w->drawn);
  if (text != NULL)
    buffer_add (&b, "%.*s\033[K\n", width - 1, text);
  for (size_t i = 0; i < w->n_modules; i++) {
    if (!watch_wants (w, w->modules[i].name))
      continue;
    buffer_add_module_line (&b, w, &w->modules[i], &columns, now, width);
    lines++;
  }
  w->drawn = lines;
  buffer_write (&b);
}

/* A line of the log: above the progress lines on a terminal, timestamped otherwise. */
static void
watch_say (Watch *w, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static void
watch_say (Watch *w, const char *format, ...)
{
  char text[512], stamp[16];
  time_t t = time (NULL);
  struct tm tm;
  va_list args;

  va_start (args, format);
  vsnprintf (text, sizeof text, format, args);
  va_end (args);
  if (w->tty) {
    tty_redraw (w, text);
    return;
  }
  strftime (stamp, sizeof stamp, "%H:%M:%S", localtime_r (&t, &tm));
  printf ("%s %s\n", stamp, text);
  fflush (stdout);
}

/* "(main): downloading 2.0  41%  26.2/64.0 MiB  4.0 MiB/s  ETA 0:09" */
static void
watch_say_module (Watch *w, ModuleView *m, double now)
{
  char state[256], details[160];

  format_state (state, sizeof state, m);
  format_details (details, sizeof details, m, now, "  ");
  watch_say (w, "%s: %s %s%s%s", cli_module_label (m->name), state, *m->version != '\0' ? m->version : "-",
             *details != '\0' ? "  " : "", details);
  m->last_line = now;
}

/* ---- events ---- */

static bool
watch_until_matches (const Watch *w, const char *state)
{
  for (int i = 0; i < w->n_until; i++) {
    if (strcmp (w->until[i], state) == 0)
      return true;
  }
  return false;
}

static void
watch_on_agent (Watch *w, const WatchEvent *event)
{
  if (!w->agent_seen) {
    w->agent_seen = true;
    if (!event->agent_present) {
      cli_error ("no OTA agent is running on %s (nobody owns org.iv.Ota there).\n"
                 "  Start it (systemctl start iv-otad, or iv-otad --config FILE), or name its bus\n"
                 "  with --bus session|system|ADDRESS or IV_OTA_BUS.",
                 cli_bus_description ());
      w->exit_code = EXIT_NO_AGENT;
      return;
    }
    w->agent_present = true;
    watch_say (w, "watching the OTA agent on %s%s", cli_bus_description (), w->tty ? " (Ctrl-C to stop)" : "");
    return;
  }
  if (event->agent_present == w->agent_present)
    return;
  w->agent_present = event->agent_present;
  watch_say (w, event->agent_present ? "agent back on the bus" : "agent left the bus; waiting for it to come back");
}

static void
watch_on_progress (Watch *w, const WatchEvent *event)
{
  ModuleView *m = watch_module (w, event->module);
  bool changed;

  if (m == NULL)
    return;
  changed = strcmp (m->state, event->state) != 0 || strcmp (m->version, event->version) != 0 || event->snapshot ||
            (ota_vocab_state_is (event->state, OTA_VOCAB_STATE_BURNING) && event->percent != m->percent);
  snprintf (m->state, sizeof m->state, "%s", event->state);
  replace_string (&m->version, event->version);
  replace_string (&m->result_msg, event->result_msg);
  m->result_code = event->result_code;
  m->percent = event->percent;
  m->downloaded = event->downloaded;
  m->total = event->total;
  if (ota_vocab_state_is (event->state, OTA_VOCAB_STATE_DOWNLOADING)) {
    rate_add (m, event->time, event->downloaded);
    m->stall_told = false;
  } else {
    m->count = 0;
  }
  if (!watch_wants (w, m->name))
    return;
  /* On a terminal the progress lines show where things are: the log tells changes. */
  if (changed && !(w->tty && event->snapshot))
    watch_say_module (w, m, event->time);
  else if (w->tty)
    tty_redraw (w, NULL);
  if (changed && watch_until_matches (w, event->state))
    w->exit_code = ota_vocab_state_is (event->state, OTA_VOCAB_STATE_FAIL) ? EXIT_FAILED : EXIT_OK;
}

static void
watch_on_event (Watch *w, const WatchEvent *event)
{
  char size[32];

  switch (event->type) {
  case IV_OTA_EVENT_AGENT:
    watch_on_agent (w, event);
    break;
  case IV_OTA_EVENT_CONNECTION:
    watch_say (w, "cloud %s", event->cloud_connected ? "connected" : "disconnected");
    break;
  case IV_OTA_EVENT_OFFERED:
    if (!watch_wants (w, event->module))
      break;
    cli_format_bytes (size, sizeof size, event->total);
    watch_say (w, "%s: the cloud offers %s (%s)", cli_module_label (event->module), event->version, size);
    break;
  case IV_OTA_EVENT_PROGRESS:
    watch_on_progress (w, event);
    break;
  case IV_OTA_EVENT_READY:
    if (!watch_wants (w, event->module))
      break;
    cli_format_bytes (size, sizeof size, event->total);
    watch_say (w, "%s: image %s ready for its owner: %s (%s, md5 %s)", cli_module_label (event->module), event->version,
               event->path, size, event->md5);
    break;
  default:
    break; /* a newer library's event */
  }
}

/* Once a second in plain mode: a progress line per download that moved, and
 * one line when a download stalls. */
static void
watch_tick (Watch *w, double now)
{
  if (w->tty) {
    tty_redraw (w, NULL);
    return;
  }
  for (size_t i = 0; i < w->n_modules; i++) {
    ModuleView *m = &w->modules[i];
    if (!watch_wants (w, m->name) || !ota_vocab_state_is (m->state, OTA_VOCAB_STATE_DOWNLOADING) || m->count == 0)
      continue;
    if (now - m->last_data >= STALL_S && !m->stall_told) {
      m->stall_told = true;
      watch_say_module (w, m, now);
    } else if (now - m->last_line >= 1.0 && m->last_data > m->last_line) {
      watch_say_module (w, m, now);
    }
  }
}

/* ---- the command ---- */

/* "idle, offered, ..., fail": every state, in the order of a cycle. */
static void
format_state_names (char *buffer, size_t size)
{
  buffer[0] = '\0';
  for (int state = 0; state < OTA_VOCAB_N_STATES; state++)
    snprintf (buffer + strlen (buffer), size - strlen (buffer), "%s%s", state > 0 ? ", " : "",
              ota_vocab_state_name (state));
}

static int
watch_parse_until (Watch *w, const char *list)
{
  char copy[256], *save = NULL;

  snprintf (copy, sizeof copy, "%s", list);
  for (char *s = strtok_r (copy, ",", &save); s != NULL; s = strtok_r (NULL, ",", &save)) {
    if (ota_vocab_state_parse (s) < 0) {
      char names[128];

      format_state_names (names, sizeof names);
      return cli_usage_error (cli_usage_watch, "unknown state \"%s\" in --until (states: %s)", s, names);
    }
    if (w->n_until < (int) (sizeof w->until / sizeof w->until[0]))
      snprintf (w->until[w->n_until++], STATE_LEN, "%s", s);
  }
  if (w->n_until == 0)
    return cli_usage_error (cli_usage_watch, "--until needs at least one state");
  return EXIT_OK;
}

static int
watch_parse (Watch *w, int argc, char **argv, bool *help)
{
  static const struct option options[] = {
    { "help", no_argument, NULL, 'h' },       { "module", required_argument, NULL, 'm' },
    { "until", required_argument, NULL, 'u' }, { "timeout", required_argument, NULL, 't' },
    { "plain", no_argument, NULL, 'p' },      { NULL, 0, NULL, 0 },
  };
  char *end;
  int opt, rc;

  optind = 1;
  opterr = 0;
  while ((opt = getopt_long (argc, argv, "+:h", options, NULL)) != -1) {
    switch (opt) {
    case 'h':
      *help = true;
      break;
    case 'm':
      w->module = cli_module_from_arg (optarg);
      break;
    case 'u':
      if ((rc = watch_parse_until (w, optarg)) != EXIT_OK)
        return rc;
      break;
    case 't':
      w->timeout = strtod (optarg, &end);
      if (*optarg == '\0' || *end != '\0' || !(w->timeout > 0))
        return cli_usage_error (cli_usage_watch, "--timeout needs a positive number of seconds");
      break;
    case 'p':
      plain_forced = true;
      break;
    case ':':
      return cli_usage_error (cli_usage_watch, "%s needs a value", argv[optind - 1]);
    default:
      return cli_usage_error (cli_usage_watch, "unknown option %s", argv[optind - 1]);
    }
  }
  if (!*help && optind < argc)
    return cli_usage_error (cli_usage_watch, "unexpected argument %s", argv[optind]);
  return EXIT_OK;
}

static bool
pipe_nonblocking (int fds[2])
{
  if (pipe (fds) != 0)
    return false;
  for (int i = 0; i < 2; i++) {
    if (fcntl (fds[i], F_SETFL, O_NONBLOCK) != 0 || fcntl (fds[i], F_SETFD, FD_CLOEXEC) != 0)
      return false;
  }
  return true;
}

static void
watch_handle_events (Watch *w)
{
  bool lost;
  WatchEvent *list = inbox_take_all (&lost);

  if (lost)
    watch_say (w, "(out of memory: events were lost)");
  while (list != NULL) {
    WatchEvent *next = list->next;
    if (w->exit_code < 0)
      watch_on_event (w, list);
    watch_event_free (list);
    list = next;
  }
}

/* Runs until --until, --timeout, a signal or no agent at the start. */
static void
watch_loop (Watch *w)
{
  double started = cli_now (), tick_s = w->tty ? 0.25 : 1.0, next_tick = started + tick_s;
  struct pollfd fds[2] = { { inbox.wake[0], POLLIN, 0 }, { signal_pipe[0], POLLIN, 0 } };
  char sig = 0;

  while (w->exit_code < 0) {
    double now = cli_now (), wait_s = next_tick - now;
    if (w->timeout > 0 && started + w->timeout - now < wait_s)
      wait_s = started + w->timeout - now;
    if (poll (fds, 2, wait_s > 0 ? (int) (wait_s * 1000) + 1 : 0) < 0 && errno != EINTR)
      break;
    drain (inbox.wake[0], NULL);
    watch_handle_events (w);
    if (fds[1].revents != 0) {
      drain (signal_pipe[0], &sig);
      if (sig != SIGWINCH && w->exit_code < 0) {
        w->exit_code = w->n_until > 0 ? EXIT_INTERRUPTED : EXIT_OK;
        break;
      }
    }
    now = cli_now ();
    if (w->exit_code < 0 && w->timeout > 0 && now - started >= w->timeout) {
      watch_say (w, "no module reached %s within %g s", w->n_until > 0 ? "the --until state" : "an end", w->timeout);
      w->exit_code = EXIT_TIMEOUT;
    }
    if (now >= next_tick && w->agent_present) {
      watch_tick (w, now);
      next_tick = now + tick_s;
    }
  }
}

static void
watch_install_signals (void)
{
  struct sigaction sa = { .sa_handler = on_signal };

  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  sigaction (SIGWINCH, &sa, NULL);
}

static bool
locale_is_utf8 (void)
{
  const char *codeset = nl_langinfo (CODESET);

  return codeset != NULL && strcmp (codeset, "UTF-8") == 0;
}

int
cli_watch (int argc, char **argv)
{
  Watch w = { .exit_code = -1 };
  iv_ota_observer_s *observer = NULL;
  bool help = false;
  int rc = watch_parse (&w, argc, argv, &help);
  const char *term = getenv ("TERM");

  if (rc != EXIT_OK || help) {
    if (help)
      fputs (cli_usage_watch, stdout);
    return rc;
  }
  w.tty = !plain_forced && isatty (STDOUT_FILENO) && term != NULL && strcmp (term, "dumb") != 0;
  w.utf8 = locale_is_utf8 ();
  w.color = w.tty && getenv ("NO_COLOR") == NULL;
  if (!w.tty)
    setvbuf (stdout, NULL, _IOLBF, 0);
  if (!pipe_nonblocking (inbox.wake) || !pipe_nonblocking (signal_pipe)) {
    cli_error ("cannot create a pipe: %s", strerror (errno));
    return EXIT_FAILED;
  }
  watch_install_signals ();
  if ((rc = iv_ota_observer_add (on_observer_event, &w, &observer)) != IV_ERR_NONE)
    return cli_report_failure ("watch", rc);
  if (w.tty)
    fputs ("\033[?25l", stdout); /* no blinking cursor on the progress lines */
  watch_loop (&w);
  iv_ota_observer_remove (observer);
  watch_handle_events (&w); /* frees what came in last */
  if (w.tty)
    fputs ("\033[?25h", stdout);
  fflush (stdout);
  watch_clear (&w);
  return w.exit_code;
}
