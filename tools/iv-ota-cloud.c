/* iv-ota-cloud: a local stand-in for the Tencent IoT cloud (docs/protocol.md).
 *
 * It listens to a device's reports over MQTT, prints each one on stdout as one
 * JSON line, answers report_version, offers a firmware image whenever the device
 * reports another version, and serves that image over HTTP (loopback only) with
 * Range support and optional faults. Tests, the demo and the benchmarks use it.
 *
 * stdout carries report lines only; every log line goes to stderr. */
#include <errno.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mqtt-link.h"
#include "protocol.h"
#include "topic-rules.h"

#define STREAM_CHUNK_SIZE (256 * 1024)
#define MD5_READ_SIZE (1024 * 1024)
#define RESPONSE_KEY "iv-ota-cloud-response"

/* ---- command line ------------------------------------------------------ */

typedef struct {
  char *product, *device, *host;
  int port;
  char *version, *firmware, *url;
  int http_port;
  gboolean no_http;
  char *module, *task_id, *user_defined, *md5;
  char *report_topic, *update_topic;
  gboolean offer_once;
  char *ready_file;
  /* HTTP faults; -1 / 0: off */
  gint64 cut_after, stall_after, rate;
  gboolean cut_once, stall_once;
  int status, status_count;
  gboolean ignore_range, bad_content_range;
  /* Link faults in time (bench/weak-link); 0: off */
  int cut_after_seconds, stall_every, stall_for, send_buffer, retry_after;
} CloudOptions;

static void
cloud_options_clear (CloudOptions *o)
{
  g_free (o->product);
  g_free (o->device);
  g_free (o->host);
  g_free (o->version);
  g_free (o->firmware);
  g_free (o->url);
  g_free (o->module);
  g_free (o->task_id);
  g_free (o->user_defined);
  g_free (o->md5);
  g_free (o->report_topic);
  g_free (o->update_topic);
  g_free (o->ready_file);
}

static const char cloud_description[] =
  "Output:\n"
  "  stdout  one compact JSON line per report received, flushed at once:\n"
  "          {\"topic\":T,\"payload\":<report>} or, for a payload that is not JSON,\n"
  "          {\"topic\":T,\"raw\":\"...\"}\n"
  "  stderr  logs, and after each HTTP response:\n"
  "          http: GET /FW_V.bin range=N- status=206 sent=BYTES total_sent=BYTES\n"
  "          On SIGTERM/SIGINT: http: total_sent=BYTES requests=N, then exit 0.\n"
  "\n"
  "Behaviour:\n"
  "  Each report_version for our module is answered with report_version_rsp and,\n"
  "  when its version differs from --version, with update_firmware (QoS 1).\n"
  "  Reports for other modules are printed but not answered.\n"
  "  The HTTP server listens on 127.0.0.1 only and serves the image on any path\n"
  "  ending in .bin, honouring single ranges (bytes=N-, bytes=N-M, bytes=-K).\n"
  "\n"
  "HTTP faults apply to every firmware response unless limited by --*-once or\n"
  "--status-count; sizes count body bytes of each response.";

static gboolean
cloud_options_parse (CloudOptions *o, int *argc, char ***argv, GError **error)
{
  GOptionEntry entries[] = {
    { "product", 0, 0, G_OPTION_ARG_STRING, &o->product, "Product id (required)", "P" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &o->device, "Device name (required)", "D" },
    { "host", 0, 0, G_OPTION_ARG_STRING, &o->host, "MQTT broker host (default 127.0.0.1)", "HOST" },
    { "port", 0, 0, G_OPTION_ARG_INT, &o->port, "MQTT broker port (default 1883)", "PORT" },
    { "version", 0, 0, G_OPTION_ARG_STRING, &o->version,
      "Version the cloud considers current, the offer's target (required)", "V" },
    { "firmware", 0, 0, G_OPTION_ARG_FILENAME, &o->firmware,
      "Image to offer and serve; size and MD5 are computed at start (required)", "FILE" },
    { "url", 0, 0, G_OPTION_ARG_STRING, &o->url,
      "URL put in offers (default: http://127.0.0.1:PORT/FW_<V>.bin of our server)", "URL" },
    { "http-port", 0, 0, G_OPTION_ARG_INT, &o->http_port, "HTTP port, 0: any free port (default)", "N" },
    { "no-http", 0, 0, G_OPTION_ARG_NONE, &o->no_http, "Do not serve the image (needs --url)", NULL },
    { "module", 0, 0, G_OPTION_ARG_STRING, &o->module,
      "Module (fw_type) to offer and answer; default: main firmware \"\"", "M" },
    { "task-id", 0, 0, G_OPTION_ARG_STRING, &o->task_id, "Add \"task_id\":T to offers", "T" },
    { "user-defined", 0, 0, G_OPTION_ARG_STRING, &o->user_defined,
      "Add \"user_defined\":JSON to offers", "JSON" },
    { "md5", 0, 0, G_OPTION_ARG_STRING, &o->md5,
      "Advertise this md5sum instead of the real one (fault: wrong MD5)", "HEX" },
    { "report-topic", 0, 0, G_OPTION_ARG_STRING, &o->report_topic,
      "Report topic template (default " OTA_DEFAULT_REPORT_TOPIC ")", "T" },
    { "update-topic", 0, 0, G_OPTION_ARG_STRING, &o->update_topic,
      "Update topic template (default " OTA_DEFAULT_UPDATE_TOPIC ")", "T" },
    { "offer-once", 0, 0, G_OPTION_ARG_NONE, &o->offer_once,
      "Offer only on the first report of a differing version", NULL },
    { "ready-file", 0, 0, G_OPTION_ARG_FILENAME, &o->ready_file,
      "Write \"HTTP_PORT\\n\" here once subscribed to the broker and serving", "PATH" },
    { "cut-after", 0, 0, G_OPTION_ARG_INT64, &o->cut_after,
      "Fault: close the connection after BYTES of a response body", "BYTES" },
    { "cut-once", 0, 0, G_OPTION_ARG_NONE, &o->cut_once, "Cut only the first response", NULL },
    { "stall-after", 0, 0, G_OPTION_ARG_INT64, &o->stall_after,
      "Fault: stop sending, connection left open, after BYTES of a body", "BYTES" },
    { "stall-once", 0, 0, G_OPTION_ARG_NONE, &o->stall_once, "Stall only the first response", NULL },
    { "rate", 0, 0, G_OPTION_ARG_INT64, &o->rate, "Fault: throttle bodies to this rate",
      "BYTES_PER_SEC" },
    { "status", 0, 0, G_OPTION_ARG_INT, &o->status,
      "Fault: answer CODE (403, 404, 500...) with an empty body instead of serving", "CODE" },
    { "status-count", 0, 0, G_OPTION_ARG_INT, &o->status_count,
      "Answer --status only to the first N requests, then serve (default: all)", "N" },
    { "ignore-range", 0, 0, G_OPTION_ARG_NONE, &o->ignore_range,
      "Fault: answer Range requests with 200 and the whole body", NULL },
    { "bad-content-range", 0, 0, G_OPTION_ARG_NONE, &o->bad_content_range,
      "Fault: answer Range requests with a 206 whose range starts one byte off", NULL },
    { "retry-after", 0, 0, G_OPTION_ARG_INT, &o->retry_after,
      "With --status: send Retry-After: SECONDS too", "SECONDS" },
    { "cut-after-seconds", 0, 0, G_OPTION_ARG_INT, &o->cut_after_seconds,
      "Fault: close the connection SECONDS after a response's headers (a link that drops)", "SECONDS" },
    { "stall-every", 0, 0, G_OPTION_ARG_INT, &o->stall_every,
      "Fault: every SECONDS since start, every response stops sending for --stall-for", "SECONDS" },
    { "stall-for", 0, 0, G_OPTION_ARG_INT, &o->stall_for, "Length of the --stall-every stalls", "SECONDS" },
    { "send-buffer", 0, 0, G_OPTION_ARG_INT, &o->send_buffer,
      "SO_SNDBUF of HTTP connections, so that a stall or a rate is one on the wire, not in a kernel buffer",
      "BYTES" },
    G_OPTION_ENTRY_NULL,
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- local stand-in for the OTA cloud");

  g_option_context_set_summary (context,
                                "Prints a device's OTA reports, offers FILE as version V when the "
                                "device reports\nanother version, and serves FILE over HTTP.");
  g_option_context_set_description (context, cloud_description);
  g_option_context_add_main_entries (context, entries, NULL);
  return g_option_context_parse (context, argc, argv, error);
}

static gboolean
cloud_options_check_faults (const CloudOptions *o, GError **error)
{
  if (o->rate == 0 || o->rate < -1) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--rate must be positive");
    return FALSE;
  }
  if (o->cut_after < -1 || o->stall_after < -1) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--cut-after and --stall-after take a byte count >= 0");
    return FALSE;
  }
  if (o->status != 0 && (o->status < 100 || o->status > 599)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--status must be 100..599");
    return FALSE;
  }
  if (o->cut_after_seconds < 0 || o->stall_every < 0 || o->stall_for < 0 || o->send_buffer < 0 ||
      o->retry_after < 0 || (o->stall_every > 0) != (o->stall_for > 0)) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--cut-after-seconds, --stall-every/--stall-for (together), --send-buffer and --retry-after "
                 "take a positive number");
    return FALSE;
  }
  if (o->status_count < 0) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--status-count must be >= 0");
    return FALSE;
  }
  return TRUE;
}

static gboolean
cloud_options_check (const CloudOptions *o, GError **error)
{
  if (o->product == NULL || o->device == NULL || o->version == NULL || o->firmware == NULL) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                 "--product, --device, --version and --firmware are required");
    return FALSE;
  }
  if (*o->version == '\0') {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--version must not be empty");
    return FALSE;
  }
  if (o->port < 1 || o->port > 65535 || o->http_port < 0 || o->http_port > 65535) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "port out of range");
    return FALSE;
  }
  if (o->no_http && o->url == NULL) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "--no-http needs --url");
    return FALSE;
  }
  return cloud_options_check_faults (o, error);
}

/* ---- logging ----------------------------------------------------------- */

/* Logs never reach stdout, which carries report lines only. Info is shown
 * (connection events), debug only with G_MESSAGES_DEBUG. */
static GLogWriterOutput
log_to_stderr (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  const char *message = NULL;

  if ((level & G_LOG_LEVEL_DEBUG) && g_log_writer_default_would_drop (level, G_LOG_DOMAIN))
    return G_LOG_WRITER_HANDLED;
  for (gsize i = 0; i < n_fields; i++) {
    if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
      message = fields[i].value;
  }
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
    g_printerr ("warning: %s\n", message ? message : "");
  else
    g_printerr ("%s\n", message ? message : "");
  return G_LOG_WRITER_HANDLED;
}

/* ---- firmware image ---------------------------------------------------- */

typedef struct {
  GMappedFile *mapped;
  GBytes *bytes; /* the whole mapping; slices of it are served without copies */
  guint64 size;
  char *md5;
} Firmware;

static void
firmware_free (Firmware *fw)
{
  g_clear_pointer (&fw->bytes, g_bytes_unref);
  g_clear_pointer (&fw->mapped, g_mapped_file_unref);
  g_free (fw->md5);
  g_free (fw);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Firmware, firmware_free)

static char *
md5_of_bytes (GBytes *bytes)
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_MD5);
  gsize size = 0;
  const guchar *data = g_bytes_get_data (bytes, &size);

  for (gsize done = 0; done < size; done += MD5_READ_SIZE)
    g_checksum_update (checksum, data + done, (gssize) MIN (MD5_READ_SIZE, size - done));
  return g_strdup (g_checksum_get_string (checksum));
}

static Firmware *
firmware_load (const char *path, GError **error)
{
  g_autoptr (Firmware) fw = g_new0 (Firmware, 1);

  fw->mapped = g_mapped_file_new (path, FALSE, error);
  if (fw->mapped == NULL)
    return NULL;
  fw->bytes = g_mapped_file_get_bytes (fw->mapped);
  fw->size = g_bytes_get_size (fw->bytes);
  fw->md5 = md5_of_bytes (fw->bytes);
  return g_steal_pointer (&fw);
}

/* ---- HTTP server ------------------------------------------------------- */

typedef struct {
  const CloudOptions *opts;
  GBytes *image;
  guint64 size;
  SoupServer *server;
  guint port;
  guint64 total_sent;
  guint requests;
  guint status_served; /* responses replaced by --status so far */
  gboolean cut_used, stall_used;
  gint64 stalled_until; /* --stall-every: no body byte goes out before this (monotonic) */
  guint stall_timer;
} CloudHttp;

static void
cloud_http_free (CloudHttp *http)
{
  g_clear_handle_id (&http->stall_timer, g_source_remove);
  if (http->server != NULL)
    soup_server_disconnect (http->server);
  g_clear_object (&http->server);
  g_clear_pointer (&http->image, g_bytes_unref);
  g_free (http);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CloudHttp, cloud_http_free)

typedef enum { FAULT_NONE, FAULT_CUT, FAULT_STALL } FaultKind;

/* One response in flight, owned by its SoupServerMessage (object data). */
typedef struct {
  CloudHttp *http;
  SoupServerMessage *msg; /* unowned: it owns us */
  char *label;            /* "GET /FW_1.bin range=0-" */
  guint status;           /* as sent: libsoup rewrites it when the client aborts */
  guint64 first;          /* body = image[first, first + length) */
  guint64 length;
  guint64 queued;         /* body bytes appended so far (streaming) */
  guint64 sent;           /* body bytes written to the socket */
  FaultKind fault;
  guint64 fault_at;
  gint64 started_us;      /* for --rate */
  guint source_id;        /* rate timer, cut idle or stall watch */
  guint cut_timer;        /* --cut-after-seconds */
  gboolean has_body;      /* a GET answered with image bytes */
  gboolean streaming;
  gboolean done;
} HttpResponse;

static void
http_response_clear_source (HttpResponse *resp)
{
  if (resp->source_id != 0)
    g_source_remove (resp->source_id);
  resp->source_id = 0;
}

static void
http_response_free (HttpResponse *resp)
{
  http_response_clear_source (resp);
  g_clear_handle_id (&resp->cut_timer, g_source_remove);
  g_free (resp->label);
  g_free (resp);
}

static void
http_response_log (HttpResponse *resp, const char *note)
{
  guint status = resp->status != 0 ? resp->status : soup_server_message_get_status (resp->msg);

  g_printerr ("http: %s status=%u sent=%" G_GUINT64_FORMAT " total_sent=%" G_GUINT64_FORMAT "%s\n",
              resp->label, status, resp->sent, resp->http->total_sent, note);
}

/* Result of parsing a Range header against the image size. */
typedef enum { RANGE_IGNORE, RANGE_OK, RANGE_UNSATISFIABLE } RangeResult;

static gboolean
parse_offset (const char *text, guint64 *value)
{
  return g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT64, value, NULL);
}

/* Single ranges only ("bytes=N-", "bytes=N-M", "bytes=-K"); anything else is
 * ignored and the whole image is served, as RFC 9110 allows. */
static RangeResult
range_parse (const char *header, guint64 size, guint64 *first, guint64 *last)
{
  g_autofree char *spec = NULL;
  g_auto (GStrv) bounds = NULL;
  guint64 a = 0, b = 0;

  if (header == NULL || g_ascii_strncasecmp (header, "bytes=", 6) != 0 || strchr (header, ',') != NULL)
    return RANGE_IGNORE;
  spec = g_strstrip (g_strdup (header + 6));
  bounds = g_strsplit (spec, "-", 2);
  if (g_strv_length (bounds) != 2)
    return RANGE_IGNORE;
  if (*bounds[0] == '\0') { /* suffix: the last K bytes */
    if (!parse_offset (bounds[1], &b) || b == 0)
      return RANGE_IGNORE;
    if (size == 0)
      return RANGE_UNSATISFIABLE;
    *first = size - MIN (b, size);
    *last = size - 1;
    return RANGE_OK;
  }
  if (!parse_offset (bounds[0], &a) || (*bounds[1] != '\0' && (!parse_offset (bounds[1], &b) || b < a)))
    return RANGE_IGNORE;
  if (a >= size)
    return RANGE_UNSATISFIABLE;
  *first = a;
  *last = *bounds[1] == '\0' ? size - 1 : MIN (b, size - 1);
  return RANGE_OK;
}

static guint64
off_by_one (guint64 first, guint64 last)
{
  if (first < last)
    return first + 1;
  return first > 0 ? first - 1 : first;
}

static void
http_response_set_empty (SoupServerMessage *msg, guint status)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_message_headers_set_content_length (soup_server_message_get_response_headers (msg), 0);
}

/* Chooses status and body window; FALSE when the answer has no body. */
static gboolean
http_response_plan_range (HttpResponse *resp, const char *range)
{
  CloudHttp *http = resp->http;
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (resp->msg);
  guint64 first = 0, last = 0;
  RangeResult result = RANGE_IGNORE;

  if (!http->opts->ignore_range)
    result = range_parse (range, http->size, &first, &last);

  if (result == RANGE_UNSATISFIABLE) {
    g_autofree char *value = g_strdup_printf ("bytes */%" G_GUINT64_FORMAT, http->size);
    http_response_set_empty (resp->msg, SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE);
    soup_message_headers_replace (headers, "Content-Range", value);
    return FALSE;
  }
  if (result == RANGE_IGNORE) {
    soup_server_message_set_status (resp->msg, SOUP_STATUS_OK, NULL);
    resp->first = 0;
    resp->length = http->size;
    return TRUE;
  }
  if (http->opts->bad_content_range)
    first = off_by_one (first, last);
  soup_server_message_set_status (resp->msg, SOUP_STATUS_PARTIAL_CONTENT, NULL);
  soup_message_headers_set_content_range (headers, (goffset) first, (goffset) last, (goffset) http->size);
  resp->first = first;
  resp->length = last - first + 1;
  return TRUE;
}

/* Picks the cut or stall this response gets, if any; --*-once faults are used
 * up by the first response long enough to trigger them. */
static void
http_response_plan_fault (HttpResponse *resp)
{
  CloudHttp *http = resp->http;
  const CloudOptions *o = http->opts;
  gboolean cut = o->cut_after >= 0 && (guint64) o->cut_after < resp->length;
  gboolean stall = o->stall_after >= 0 && (guint64) o->stall_after < resp->length;

  cut = cut && !(o->cut_once && http->cut_used);
  stall = stall && !(o->stall_once && http->stall_used);

  if (cut && (!stall || o->cut_after <= o->stall_after)) {
    resp->fault = FAULT_CUT;
    resp->fault_at = (guint64) o->cut_after;
    http->cut_used = TRUE;
  } else if (stall) {
    resp->fault = FAULT_STALL;
    resp->fault_at = (guint64) o->stall_after;
    http->stall_used = TRUE;
  }
  resp->streaming = resp->fault != FAULT_NONE || o->rate > 0 || o->cut_after_seconds > 0 || o->stall_every > 0;
}

static void
http_response_append (HttpResponse *resp, guint64 length)
{
  g_autoptr (GBytes) slice = g_bytes_new_from_bytes (resp->http->image, resp->first + resp->queued, length);

  soup_message_body_append_bytes (soup_server_message_get_response_body (resp->msg), slice);
  resp->queued += length;
}

static void http_response_feed (HttpResponse *resp, gboolean resume);

static gboolean
on_rate_timer (gpointer data)
{
  HttpResponse *resp = g_object_get_data (data, RESPONSE_KEY);

  resp->source_id = 0;
  http_response_feed (resp, TRUE);
  return G_SOURCE_REMOVE;
}

/* Microseconds to wait before the next chunk to keep to --rate. */
static gint64
http_response_rate_delay (HttpResponse *resp)
{
  gint64 rate = resp->http->opts->rate;
  gint64 due;

  if (rate <= 0)
    return 0;
  due = resp->started_us + (gint64) (resp->queued * G_USEC_PER_SEC / (guint64) rate);
  return due - g_get_monotonic_time ();
}

/* Takes the connection away from libsoup (which then forgets the message
 * without emitting "finished") and closes it mid-body. */
static void
http_response_close (HttpResponse *resp, const char *note)
{
  g_autoptr (GIOStream) stream = NULL;

  resp->source_id = 0;
  resp->done = TRUE;
  http_response_log (resp, note);
  stream = soup_server_message_steal_connection (resp->msg);
  if (stream != NULL)
    g_io_stream_close (stream, NULL, NULL);
}

static gboolean
on_cut (gpointer data)
{
  http_response_close (g_object_get_data (data, RESPONSE_KEY), " fault=cut");
  return G_SOURCE_REMOVE;
}

/* A stalled response waits for the client to give up; then the connection is
 * closed so stalls do not pile up open sockets. */
static gboolean
on_stalled_socket (GSocket *socket, GIOCondition condition, gpointer data)
{
  HttpResponse *resp = g_object_get_data (data, RESPONSE_KEY);
  char byte;
  ssize_t n = recv (g_socket_get_fd (socket), &byte, 1, MSG_PEEK | MSG_DONTWAIT);

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (n > 0) { /* a pipelined request, never to be served: stop polling */
    resp->source_id = 0;
    return G_SOURCE_REMOVE;
  }
  http_response_close (resp, " fault=stall");
  return G_SOURCE_REMOVE;
}

static void
http_response_stall (HttpResponse *resp)
{
  GSocket *socket = soup_server_message_get_socket (resp->msg);
  g_autoptr (GSource) source = NULL;

  g_printerr ("http: %s stalled after sent=%" G_GUINT64_FORMAT "\n", resp->label, resp->sent);
  if (socket == NULL)
    return;
  source = g_socket_create_source (socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback (source, G_SOURCE_FUNC (on_stalled_socket), g_object_ref (resp->msg), g_object_unref);
  resp->source_id = g_source_attach (source, NULL);
}

static void
http_response_trigger_fault (HttpResponse *resp)
{
  if (resp->fault == FAULT_STALL) {
    http_response_stall (resp);
    return;
  }
  /* Not from inside libsoup's write loop: steal the connection from an idle,
   * once everything queued is on the wire and the I/O has paused itself. */
  resp->source_id = g_idle_add_full (G_PRIORITY_DEFAULT, on_cut, g_object_ref (resp->msg), g_object_unref);
}

/* Appends the next chunk of a streaming body, or arranges for the fault or the
 * rate delay. The I/O pauses by itself when the body runs dry; @resume says
 * that we are outside libsoup's callbacks and must wake it. */
static void
http_response_feed (HttpResponse *resp, gboolean resume)
{
  guint64 limit = resp->fault != FAULT_NONE ? resp->fault_at : resp->length;
  guint64 chunk = STREAM_CHUNK_SIZE;
  gint64 delay;

  if (resp->done || resp->source_id != 0 || resp->queued >= resp->length)
    return;
  if (resp->queued >= limit) {
    if (resp->sent >= limit)
      http_response_trigger_fault (resp);
    return;
  }
  delay = http_response_rate_delay (resp);
  /* --stall-every: nothing goes out until the stall ends. */
  delay = MAX (delay, resp->http->stalled_until - g_get_monotonic_time ());
  if (delay > 0) {
    resp->source_id = g_timeout_add_full (G_PRIORITY_DEFAULT, (guint) ((delay + 999) / 1000), on_rate_timer,
                                          g_object_ref (resp->msg), g_object_unref);
    return;
  }
  if (resp->http->opts->rate > 0) /* about 20 chunks per second */
    chunk = CLAMP ((guint64) resp->http->opts->rate / 20, 1, STREAM_CHUNK_SIZE);
  else if (resp->http->opts->stall_every > 0) /* a stall begins within a small chunk */
    chunk = 16 * 1024;
  http_response_append (resp, MIN (chunk, limit - resp->queued));
  if (resume)
    soup_server_message_unpause (resp->msg);
}

static gboolean
on_cut_timer (gpointer data)
{
  HttpResponse *resp = g_object_get_data (data, RESPONSE_KEY);

  resp->cut_timer = 0;
  if (!resp->done) {
    http_response_clear_source (resp);
    http_response_close (resp, " fault=cut-after-seconds");
  }
  return G_SOURCE_REMOVE;
}

static void
on_wrote_headers (SoupServerMessage *msg, gpointer data)
{
  HttpResponse *resp = data;

  resp->status = soup_server_message_get_status (msg);
  if (!resp->streaming)
    return;
  if (resp->has_body && resp->http->opts->cut_after_seconds > 0)
    resp->cut_timer = g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, (guint) resp->http->opts->cut_after_seconds,
                                                  on_cut_timer, g_object_ref (msg), g_object_unref);
  resp->started_us = g_get_monotonic_time ();
  http_response_feed (resp, FALSE);
}

static void
on_wrote_chunk (SoupServerMessage *msg, gpointer data)
{
  http_response_feed (data, FALSE);
}

static void
on_wrote_body_data (SoupServerMessage *msg, guint chunk_size, gpointer data)
{
  HttpResponse *resp = data;

  resp->sent += chunk_size;
  resp->http->total_sent += chunk_size;
}

static void
on_finished (SoupServerMessage *msg, gpointer data)
{
  HttpResponse *resp = data;

  if (resp->done)
    return;
  resp->done = TRUE;
  http_response_clear_source (resp);
  http_response_log (resp, resp->has_body && resp->sent < resp->length ? " aborted" : "");
}

static HttpResponse *
http_response_new (CloudHttp *http, SoupServerMessage *msg, const char *path)
{
  HttpResponse *resp = g_new0 (HttpResponse, 1);
  const char *range = soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Range");

  if (range != NULL && g_ascii_strncasecmp (range, "bytes=", 6) == 0)
    range += 6;
  resp->http = http;
  resp->msg = msg;
  resp->label = g_strdup_printf ("%s %s range=%s", soup_server_message_get_method (msg), path,
                                 range != NULL ? range : "none");
  g_object_set_data_full (G_OBJECT (msg), RESPONSE_KEY, resp, (GDestroyNotify) http_response_free);
  g_signal_connect (msg, "wrote-headers", G_CALLBACK (on_wrote_headers), resp);
  g_signal_connect (msg, "wrote-body-data", G_CALLBACK (on_wrote_body_data), resp);
  g_signal_connect (msg, "finished", G_CALLBACK (on_finished), resp);
  return resp;
}

/* FALSE when the request is not answered with the image. */
static gboolean
http_check_request (CloudHttp *http, SoupServerMessage *msg, const char *path)
{
  const char *method = soup_server_message_get_method (msg);
  const CloudOptions *o = http->opts;

  if (o->status != 0 && (o->status_count == 0 || http->status_served < (guint) o->status_count)) {
    http->status_served++;
    http_response_set_empty (msg, (guint) o->status);
    if (o->retry_after > 0) {
      g_autofree char *value = g_strdup_printf ("%d", o->retry_after);
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Retry-After", value);
    }
    return FALSE;
  }
  if (method != SOUP_METHOD_GET && method != SOUP_METHOD_HEAD) {
    http_response_set_empty (msg, SOUP_STATUS_METHOD_NOT_ALLOWED);
    soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Allow", "GET, HEAD");
    return FALSE;
  }
  if (!g_str_has_suffix (path, ".bin")) {
    http_response_set_empty (msg, SOUP_STATUS_NOT_FOUND);
    return FALSE;
  }
  return TRUE;
}

static void
http_serve_body (HttpResponse *resp)
{
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (resp->msg);

  soup_message_headers_replace (headers, "Content-Type", "application/octet-stream");
  soup_message_headers_set_content_length (headers, (goffset) resp->length);
  if (soup_server_message_get_method (resp->msg) == SOUP_METHOD_HEAD || resp->length == 0)
    return;
  resp->has_body = TRUE;
  http_response_plan_fault (resp);
  if (!resp->streaming) {
    http_response_append (resp, resp->length); /* one zero-copy slice of the mapping */
    return;
  }
  g_signal_connect (resp->msg, "wrote-chunk", G_CALLBACK (on_wrote_chunk), resp);
}

static void
http_handle (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data)
{
  CloudHttp *http = data;
  HttpResponse *resp = http_response_new (http, msg, path);
  const char *range = soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Range");

  http->requests++;
  if (http->opts->send_buffer > 0 && soup_server_message_get_socket (msg) != NULL)
    g_socket_set_option (soup_server_message_get_socket (msg), SOL_SOCKET, SO_SNDBUF, http->opts->send_buffer, NULL);
  /* We answer Range ourselves: SoupServer's own Range support copies the whole
   * body into one buffer per request, and it must not rewrite fault answers. */
  soup_message_body_set_accumulate (soup_server_message_get_response_body (msg), FALSE);
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Accept-Ranges", "bytes");
  if (!http_check_request (http, msg, path))
    return;
  if (http_response_plan_range (resp, range))
    http_serve_body (resp);
}

static gboolean
cloud_http_listen (CloudHttp *http, guint port, GError **error)
{
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, (guint16) port);
  GSList *uris = NULL;

  if (!soup_server_listen (http->server, address, 0, error))
    return FALSE;
  uris = soup_server_get_uris (http->server);
  if (uris == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "HTTP server has no listener");
    return FALSE;
  }
  http->port = (guint) g_uri_get_port (uris->data);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  return TRUE;
}

/* --stall-every: from now on, for --stall-for seconds, no body byte goes out. */
static gboolean
on_stall_period (gpointer data)
{
  CloudHttp *http = data;

  http->stalled_until = g_get_monotonic_time () + (gint64) http->opts->stall_for * G_USEC_PER_SEC;
  g_printerr ("http: every response stalls for %d s (monotonic %" G_GINT64_FORMAT ")\n", http->opts->stall_for,
              g_get_monotonic_time ());
  return G_SOURCE_CONTINUE;
}

static CloudHttp *
cloud_http_new (const CloudOptions *opts, const Firmware *fw, GError **error)
{
  g_autoptr (CloudHttp) http = g_new0 (CloudHttp, 1);

  http->opts = opts;
  http->image = g_bytes_ref (fw->bytes);
  http->size = fw->size;
  http->server = soup_server_new ("server-header", "iv-ota-cloud ", NULL);
  soup_server_add_handler (http->server, NULL, http_handle, http, NULL);
  if (!cloud_http_listen (http, (guint) opts->http_port, error)) {
    g_prefix_error (error, "cannot listen on 127.0.0.1:%d: ", opts->http_port);
    return NULL;
  }
  g_printerr ("http: serving %s (%" G_GUINT64_FORMAT " bytes, md5 %s) on http://127.0.0.1:%u/\n",
              opts->firmware, fw->size, fw->md5, http->port);
  if (opts->stall_every > 0)
    http->stall_timer = g_timeout_add_seconds ((guint) opts->stall_every, on_stall_period, http);
  return g_steal_pointer (&http);
}

/* ---- the cloud: reports in, answers out -------------------------------- */

typedef struct {
  CloudOptions opts;
  Firmware *fw;
  CloudHttp *http; /* NULL with --no-http */
  OtaMqttLink *link;
  GMainLoop *loop;
  char *report_topic, *update_topic;
  JsonNode *user_defined; /* --user-defined, parsed */
  char *offer;     /* the update_firmware payload */
  guint offers;    /* update_firmware messages published */
  int sync_mid;    /* the probe whose PUBACK proves our subscription is active */
  gboolean synced, ready_written;
} Cloud;

static void
cloud_free (Cloud *cloud)
{
  if (cloud->link != NULL)
    ota_mqtt_link_stop (cloud->link);
  g_clear_object (&cloud->link);
  g_clear_pointer (&cloud->http, cloud_http_free);
  g_clear_pointer (&cloud->fw, firmware_free);
  g_clear_pointer (&cloud->loop, g_main_loop_unref);
  g_free (cloud->report_topic);
  g_free (cloud->update_topic);
  g_free (cloud->offer);
  g_clear_pointer (&cloud->user_defined, json_node_unref);
  cloud_options_clear (&cloud->opts);
  g_free (cloud);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Cloud, cloud_free)

/* The agent's expansion: a template the agent refuses is refused here too. */
static char *
topic_expand (const char *option, const char *template, const CloudOptions *o, GError **error)
{
  GString *topic = ota_topic_expand (template, o->product, o->device, error);

  if (topic == NULL) {
    g_prefix_error (error, "%s: ", option);
    return NULL;
  }
  return g_string_free (topic, FALSE);
}

static char *
json_to_compact (JsonNode *root)
{
  g_autoptr (JsonGenerator) generator = json_generator_new ();

  json_generator_set_root (generator, root);
  return json_generator_to_data (generator, NULL);
}

/* The string value of @obj's member @name, NULL when absent or not a string. */
static const char *
json_member_string (JsonObject *obj, const char *name)
{
  JsonNode *node = obj != NULL ? json_object_get_member (obj, name) : NULL;

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

static JsonObject *
json_member_object (JsonObject *obj, const char *name)
{
  JsonNode *node = obj != NULL ? json_object_get_member (obj, name) : NULL;

  return node != NULL && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

static const char *
str_or_dash (const char *s)
{
  return s != NULL ? s : "-";
}

static JsonNode *
parse_user_defined (const char *text, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  JsonNode *node = json_from_string (text, &local_error);

  if (node == NULL) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--user-defined: %s",
                 local_error != NULL ? local_error->message : "empty JSON");
    return NULL;
  }
  return node;
}

/* Adds "name":value to the object being built; nothing when @value is NULL. */
static void
builder_add_string (JsonBuilder *b, const char *name, const char *value)
{
  if (value == NULL)
    return;
  json_builder_set_member_name (b, name);
  json_builder_add_string_value (b, value);
}

static char *
builder_finish (JsonBuilder *b)
{
  g_autoptr (JsonNode) root = NULL;

  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return json_to_compact (root);
}

static void
cloud_build_offer (Cloud *cloud)
{
  const CloudOptions *o = &cloud->opts;
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  builder_add_string (b, "type", "update_firmware");
  builder_add_string (b, "version", o->version);
  builder_add_string (b, "url", o->url);
  builder_add_string (b, "md5sum", o->md5 != NULL ? o->md5 : cloud->fw->md5);
  json_builder_set_member_name (b, "file_size");
  json_builder_add_int_value (b, (gint64) cloud->fw->size);
  builder_add_string (b, "fw_type", *o->module != '\0' ? o->module : NULL);
  builder_add_string (b, "task_id", o->task_id);
  if (cloud->user_defined != NULL) {
    json_builder_set_member_name (b, "user_defined");
    json_builder_add_value (b, json_node_copy (cloud->user_defined));
  }
  cloud->offer = builder_finish (b);
}

/* Faults may be deliberate, so an offer an agent would reject is only a warning. */
static void
cloud_check_offer (Cloud *cloud)
{
  OtaCloudMessage msg = { 0 };
  g_autoptr (GError) error = NULL;

  if (!ota_protocol_parse (cloud->offer, strlen (cloud->offer), G_MAXUINT64, &msg, &error))
    g_printerr ("cloud: warning: agents will reject this offer: %s\n", error->message);
  else
    ota_cloud_message_clear (&msg);
  g_printerr ("cloud: offer: %s\n", cloud->offer);
}

static void
cloud_publish (Cloud *cloud, const char *payload, const char *what)
{
  g_autoptr (GError) error = NULL;

  if (!ota_mqtt_link_publish (cloud->link, cloud->update_topic, payload, strlen (payload), 1, NULL, &error)) {
    g_printerr ("cloud: cannot publish %s: %s\n", what, error->message);
    return;
  }
  g_printerr ("cloud: sent %s on %s\n", what, cloud->update_topic);
}

static void
cloud_send_version_rsp (Cloud *cloud, const char *version, const char *fw_type)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *payload = NULL;

  json_builder_begin_object (b);
  builder_add_string (b, "type", "report_version_rsp");
  json_builder_set_member_name (b, "result_code");
  json_builder_add_int_value (b, 0);
  builder_add_string (b, "result_msg", "success");
  builder_add_string (b, "version", version);
  builder_add_string (b, "fw_type", fw_type);
  payload = builder_finish (b);
  cloud_publish (cloud, payload, "report_version_rsp");
}

static void
cloud_on_report_version (Cloud *cloud, JsonObject *report)
{
  const char *version = json_member_string (report, "version");
  const char *fw_type = json_member_string (report, "fw_type");

  if (version == NULL) {
    g_printerr ("cloud: report_version without a version string, not answered\n");
    return;
  }
  if (g_strcmp0 (fw_type != NULL ? fw_type : "", cloud->opts.module) != 0) {
    g_printerr ("cloud: report_version for module \"%s\", not ours: not answered\n", fw_type ? fw_type : "");
    return;
  }
  cloud_send_version_rsp (cloud, version, fw_type);
  if (g_strcmp0 (version, cloud->opts.version) == 0) {
    g_printerr ("cloud: device runs the target version %s\n", version);
    return;
  }
  if (cloud->opts.offer_once && cloud->offers > 0) {
    g_printerr ("cloud: device runs %s, already offered once (--offer-once)\n", version);
    return;
  }
  g_printerr ("cloud: device runs %s, offering %s\n", version, cloud->opts.version);
  cloud_publish (cloud, cloud->offer, "update_firmware");
  cloud->offers++;
}

static void
cloud_on_report_progress (JsonObject *report)
{
  JsonObject *progress = json_member_object (report, "progress");
  const char *fw_type = json_member_string (report, "fw_type");
  const char *percent = json_member_string (progress, "percent");
  const char *result_msg = json_member_string (progress, "result_msg");
  const char *result_code = json_member_string (progress, "result_code");
  g_autoptr (GString) line = g_string_new ("cloud: progress");

  if (fw_type != NULL)
    g_string_append_printf (line, " of %s", fw_type);
  g_string_append_printf (line, ": version=%s state=%s", str_or_dash (json_member_string (report, "version")),
                          str_or_dash (json_member_string (progress, "state")));
  if (percent != NULL)
    g_string_append_printf (line, " percent=%s", percent);
  g_string_append_printf (line, " result_code=%s", str_or_dash (result_code));
  if (result_msg != NULL && *result_msg != '\0')
    g_string_append_printf (line, " result_msg=%s", result_msg);
  g_printerr ("%s\n", line->str);
}

static void
cloud_on_report (Cloud *cloud, JsonNode *root)
{
  JsonObject *obj = JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  const char *type = json_member_string (obj, "type");
  JsonObject *report = json_member_object (obj, "report");

  if (type == NULL || report == NULL) {
    g_printerr ("cloud: message without type or report object, ignored\n");
    return;
  }
  if (g_str_equal (type, "report_version"))
    cloud_on_report_version (cloud, report);
  else if (g_str_equal (type, "report_progress"))
    cloud_on_report_progress (report);
  else
    g_printerr ("cloud: unknown report type \"%s\", ignored\n", type);
}

/* One line on stdout per report, flushed: tests read them as they come. */
static void
print_report_line (const char *topic, JsonNode *payload, GBytes *raw)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *line = NULL;

  json_builder_begin_object (b);
  builder_add_string (b, "topic", topic);
  if (payload != NULL) {
    json_builder_set_member_name (b, "payload");
    json_builder_add_value (b, json_node_copy (payload));
  } else {
    gsize size = 0;
    const char *data = g_bytes_get_data (raw, &size);
    g_autofree char *text = g_utf8_make_valid (data != NULL ? data : "", (gssize) size);
    builder_add_string (b, "raw", text);
  }
  line = builder_finish (b);
  fputs (line, stdout);
  fputc ('\n', stdout);
  fflush (stdout);
}

static JsonNode *
parse_payload (GBytes *payload)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize size = 0;
  const char *data = g_bytes_get_data (payload, &size);

  if (size == 0 || memchr (data, '\0', size) != NULL || !g_utf8_validate (data, (gssize) size, NULL))
    return NULL;
  if (!json_parser_load_from_data (parser, data, (gssize) size, NULL))
    return NULL;
  if (json_parser_get_root (parser) == NULL)
    return NULL;
  return json_node_copy (json_parser_get_root (parser));
}

static void
on_mqtt_message (OtaMqttLink *link, const char *topic, GBytes *payload, gpointer data)
{
  Cloud *cloud = data;
  g_autoptr (JsonNode) root = parse_payload (payload);

  print_report_line (topic, root, payload);
  if (root != NULL)
    cloud_on_report (cloud, root);
}

static void
cloud_write_ready (Cloud *cloud)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = g_strdup_printf ("%u\n", cloud->http != NULL ? cloud->http->port : 0);

  if (cloud->ready_written || !cloud->synced)
    return;
  cloud->ready_written = TRUE;
  g_printerr ("cloud: ready, listening on %s\n", cloud->report_topic);
  if (cloud->opts.ready_file != NULL && !g_file_set_contents (cloud->opts.ready_file, text, -1, &error))
    g_printerr ("cloud: warning: cannot write ready file: %s\n", error->message);
}

/* The link reports "connected" once SUBSCRIBE is sent, not acknowledged. The
 * broker handles a client's packets in order, so the PUBACK of a QoS 1 probe
 * sent after it proves the subscription is active: only then are tests told
 * that we are ready, or their first report could be lost. */
static void
on_mqtt_connection_changed (OtaMqttLink *link, gboolean connected, gpointer data)
{
  Cloud *cloud = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *topic = NULL;

  if (!connected || cloud->synced)
    return;
  topic = g_strdup_printf ("iv-ota-cloud/%d/sync", (int) getpid ());
  if (!ota_mqtt_link_publish (link, topic, "", 0, 1, &cloud->sync_mid, &error))
    g_printerr ("cloud: cannot publish the subscription probe: %s\n", error->message);
}

static void
on_mqtt_published (OtaMqttLink *link, int mid, gpointer data)
{
  Cloud *cloud = data;

  if (cloud->synced || mid != cloud->sync_mid)
    return;
  cloud->synced = TRUE;
  cloud_write_ready (cloud);
}

static gboolean
cloud_start_mqtt (Cloud *cloud, GError **error)
{
  g_autofree char *client_id = g_strdup_printf ("iv-ota-cloud-%d", (int) getpid ());
  OtaMqttSettings settings = {
    .host = cloud->opts.host,
    .port = (guint) cloud->opts.port,
    .client_id = client_id,
    .keepalive = 30,
    .backoff_min_ms = 200,
    .backoff_max_ms = 2000,
    .unlimited_connects = TRUE, /* the cloud's side, not a device */
  };

  cloud->link = ota_mqtt_link_new (&settings, error);
  if (cloud->link == NULL)
    return FALSE;
  g_signal_connect (cloud->link, "message", G_CALLBACK (on_mqtt_message), cloud);
  g_signal_connect (cloud->link, "connection-changed", G_CALLBACK (on_mqtt_connection_changed), cloud);
  g_signal_connect (cloud->link, "published", G_CALLBACK (on_mqtt_published), cloud);
  ota_mqtt_link_add_subscription (cloud->link, cloud->report_topic, 1);
  ota_mqtt_link_start (cloud->link);
  return TRUE;
}

static gboolean
on_quit_signal (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_CONTINUE;
}

/* Closes connections first, so the totals line comes last and counts every
 * response (those still running are logged as aborted). */
static void
cloud_shutdown (Cloud *cloud)
{
  CloudHttp *http = cloud->http;

  ota_mqtt_link_stop (cloud->link);
  if (http != NULL)
    soup_server_disconnect (http->server);
  g_printerr ("http: total_sent=%" G_GUINT64_FORMAT " requests=%u\n", http != NULL ? http->total_sent : 0,
              http != NULL ? http->requests : 0);
}

static void
cloud_set_defaults (CloudOptions *o)
{
  o->port = 1883;
  o->cut_after = -1;
  o->stall_after = -1;
  o->rate = -1;
}

static gboolean
cloud_fill_defaults (Cloud *cloud, GError **error)
{
  CloudOptions *o = &cloud->opts;

  if (o->host == NULL)
    o->host = g_strdup ("127.0.0.1");
  if (o->module == NULL)
    o->module = g_strdup ("");
  cloud->report_topic = topic_expand ("--report-topic", o->report_topic ? o->report_topic : OTA_DEFAULT_REPORT_TOPIC,
                                      o, error);
  if (cloud->report_topic == NULL)
    return FALSE;
  cloud->update_topic = topic_expand ("--update-topic", o->update_topic ? o->update_topic : OTA_DEFAULT_UPDATE_TOPIC,
                                      o, error);
  if (cloud->update_topic == NULL)
    return FALSE;
  if (!ota_protocol_version_is_valid (o->version))
    g_printerr ("cloud: warning: agents will reject version \"%s\"\n", o->version);
  return TRUE;
}

static gboolean
cloud_setup (Cloud *cloud, GError **error)
{
  CloudOptions *o = &cloud->opts;

  if (!cloud_fill_defaults (cloud, error))
    return FALSE;
  if (o->user_defined != NULL && (cloud->user_defined = parse_user_defined (o->user_defined, error)) == NULL)
    return FALSE;
  cloud->fw = firmware_load (o->firmware, error);
  if (cloud->fw == NULL)
    return FALSE;
  if (!o->no_http && (cloud->http = cloud_http_new (o, cloud->fw, error)) == NULL)
    return FALSE;
  if (o->url == NULL) {
    g_autofree char *name = g_uri_escape_string (o->version, NULL, FALSE);
    o->url = g_strdup_printf ("http://127.0.0.1:%u/FW_%s.bin", cloud->http->port, name);
  }
  cloud_build_offer (cloud);
  cloud_check_offer (cloud);
  return cloud_start_mqtt (cloud, error);
}

int
main (int argc, char **argv)
{
  g_autoptr (Cloud) cloud = g_new0 (Cloud, 1);
  g_autoptr (GError) error = NULL;

  setlocale (LC_ALL, "");
  g_log_set_writer_func (log_to_stderr, NULL, NULL);
  cloud_set_defaults (&cloud->opts);
  if (!cloud_options_parse (&cloud->opts, &argc, &argv, &error) ||
      !cloud_options_check (&cloud->opts, &error)) {
    g_printerr ("iv-ota-cloud: %s (see --help)\n", error->message);
    return 2;
  }
  if (!cloud_setup (cloud, &error)) {
    g_printerr ("iv-ota-cloud: %s\n", error->message);
    return 1;
  }
  cloud->loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGTERM, on_quit_signal, cloud->loop);
  g_unix_signal_add (SIGINT, on_quit_signal, cloud->loop);
  g_main_loop_run (cloud->loop);
  cloud_shutdown (cloud);
  return 0;
}
