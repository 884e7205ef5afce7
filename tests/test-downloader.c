/* The download engine against servers in this process: a SoupServer (it
 * answers Range requests by itself) and, for broken connections, a tiny
 * threaded HTTP/1.1 server. */

/* O_DIRECT */
#define _GNU_SOURCE
#include "downloader.h"
#include "record.h"

#include <fcntl.h>
#include <stdarg.h>
#include <glib/gstdio.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Not a multiple of the 512 KiB read size, so the last chunk is short. */
#define FW_SIZE (3 * 1024 * 1024 + 12345)
#define CHECKPOINT_BYTES (64 * 1024)
#define VERSION "0.2"
#define BIN_NAME "FW_0.2.bin"
#define RECORD_NAME "FW_0.2.json"
#define WRONG_MD5 "00000000000000000000000000000000"

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaRecord, ota_record_clear)

/* What a server saw; the raw server's threads update it under @lock. */
typedef struct {
  GMutex lock;
  guint requests;
  guint64 bytes_sent;
  GPtrArray *ranges; /* Range header of each request, "" when absent */
  GArray *times;     /* monotonic time of each request */
  gboolean saw_accept_encoding;
} Observations;

typedef struct {
  SoupServer *server;
  char *url;
  guint fail_count; /* answer that many requests with fail_status first */
  guint fail_status;
  gboolean ignore_range;
  gboolean bad_content_range; /* once, on a Range request */
  const char *content_encoding;
  const char *redirect_to;
  const char *retry_after; /* sent with fail_status */
  guint range_416_count;   /* answer that many Range requests with 416 first */
} HttpServer;

typedef struct {
  GSocketService *service;
  char *url;
  guint64 cut_after;   /* the first response stops after this many body bytes... */
  gboolean stall;      /* ...and, if set, the connection then stays open, silent */
  gboolean hang;       /* never answer */
  gboolean trailing_junk; /* no Content-Length, more bytes than the firmware */
  guint64 cut_every;   /* every response stops after this many body bytes... */
  gboolean stall_every; /* ...and, if set, then stays open, silent */
  guint drip_ms;       /* the body comes one byte every drip_ms */
  guint pace_ms;       /* the body comes in 64 KiB pieces every pace_ms */
  gboolean range_416;  /* every Range request gets 416 */
  gboolean ignore_range; /* every request gets 200 and the whole body */
  guint pace_later_ms; /* responses after the first are paced so */
  gint responses;
  gint active;         /* connections being served */
} RawServer;

typedef struct {
  char *dir;
  int dir_fd;
  GBytes *firmware;
  char *md5;
  Observations seen;
  HttpServer http;
  RawServer raw;
  SoupServer *https_server;
  char *https_url;
  char *cert_file;
  SoupSession *session;

  OtaDownload *download;
  gboolean finished;
  int code;
  char *message;
  guint progress_count;
  guint64 last_progress;
  gboolean progress_went_back;
  guint verifying_count;
  gboolean verifying_before_finished;
  gboolean cancel_at_first_progress;
  gboolean unref_at_cancel;
  gboolean cancelled;
  guint signals_after_cancel;
  guint freeze_ms; /* the first progress blocks the main loop this long */
} Fixture;

/* ---- observations ---- */

static void
observe_request (Observations *seen, const char *range, gboolean accept_encoding)
{
  g_mutex_lock (&seen->lock);
  gint64 now = g_get_monotonic_time ();

  seen->requests++;
  g_ptr_array_add (seen->ranges, g_strdup (range != NULL ? range : ""));
  g_array_append_val (seen->times, now);
  seen->saw_accept_encoding |= accept_encoding;
  g_mutex_unlock (&seen->lock);
}

static void
observe_bytes (Observations *seen, guint64 n)
{
  g_mutex_lock (&seen->lock);
  seen->bytes_sent += n;
  g_mutex_unlock (&seen->lock);
}

static void
observations_reset (Observations *seen)
{
  g_mutex_lock (&seen->lock);
  seen->requests = 0;
  seen->bytes_sent = 0;
  g_ptr_array_set_size (seen->ranges, 0);
  g_array_set_size (seen->times, 0);
  seen->saw_accept_encoding = FALSE;
  g_mutex_unlock (&seen->lock);
}

static const char *
observed_range (Fixture *f, guint i)
{
  g_assert_cmpuint (i, <, f->seen.ranges->len);
  return g_ptr_array_index (f->seen.ranges, i);
}

/* ---- SoupServer ---- */

static void
http_wrote_body_data_cb (SoupServerMessage *msg, guint chunk_size, gpointer user_data)
{
  observe_bytes (user_data, chunk_size);
}

static void
http_send_bad_range (Fixture *f, SoupServerMessage *msg)
{
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);
  gsize size = g_bytes_get_size (f->firmware);

  /* Claims the whole file although a suffix was asked for. */
  f->http.bad_content_range = FALSE;
  soup_server_message_set_status (msg, SOUP_STATUS_PARTIAL_CONTENT, NULL);
  soup_message_headers_set_content_range (headers, 0, (goffset) size - 1, (goffset) size);
  soup_message_body_append_bytes (soup_server_message_get_response_body (msg), f->firmware);
}

static void
http_handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
              gpointer user_data)
{
  Fixture *f = user_data;
  SoupMessageHeaders *request = soup_server_message_get_request_headers (msg);
  const char *range = soup_message_headers_get_one (request, "Range");

  observe_request (&f->seen, range,
                   soup_message_headers_get_one (request, "Accept-Encoding") != NULL);
  g_signal_connect (msg, "wrote-body-data", G_CALLBACK (http_wrote_body_data_cb), &f->seen);
  if (f->http.redirect_to != NULL) {
    soup_server_message_set_redirect (msg, SOUP_STATUS_FOUND, f->http.redirect_to);
    return;
  }
  if (f->http.fail_count > 0) {
    f->http.fail_count--;
    soup_server_message_set_status (msg, f->http.fail_status, NULL);
    if (f->http.retry_after != NULL)
      soup_message_headers_append (soup_server_message_get_response_headers (msg), "Retry-After",
                                   f->http.retry_after);
    return;
  }
  if (range != NULL && f->http.range_416_count > 0) {
    f->http.range_416_count--;
    soup_server_message_set_status (msg, SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE, NULL);
    return;
  }
  if (range != NULL && f->http.bad_content_range) {
    http_send_bad_range (f, msg);
    return;
  }
  /* Without the header SoupServer sends the whole body with 200. */
  if (f->http.ignore_range)
    soup_message_headers_remove (request, "Range");
  if (f->http.content_encoding != NULL)
    soup_message_headers_append (soup_server_message_get_response_headers (msg),
                                 "Content-Encoding", f->http.content_encoding);
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_message_body_append_bytes (soup_server_message_get_response_body (msg), f->firmware);
}

/* Serves the image even while redirect_to is set for the HTTPS server. */
static void
http_plain_handler (SoupServer *server, SoupServerMessage *msg, const char *path,
                    GHashTable *query, gpointer user_data)
{
  Fixture *f = user_data;
  const char *redirect_to = f->http.redirect_to;

  f->http.redirect_to = NULL;
  http_handler (server, msg, path, query, user_data);
  f->http.redirect_to = redirect_to;
}

/* An old address of the image: moved to /fw. */
static void
http_moved_handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                    gpointer user_data)
{
  Fixture *f = user_data;

  observe_request (&f->seen, NULL, FALSE);
  soup_server_message_set_redirect (msg, SOUP_STATUS_MOVED_PERMANENTLY, "/fw");
}

static void
http_server_start (Fixture *f)
{
  g_autoptr(GError) error = NULL;
  GSList *uris;
  g_autofree char *base = NULL;

  f->http.server = soup_server_new (NULL, NULL);
  soup_server_add_handler (f->http.server, "/fw", http_handler, f, NULL);
  soup_server_add_handler (f->http.server, "/old", http_moved_handler, f, NULL);
  soup_server_listen_local (f->http.server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error);
  g_assert_no_error (error);
  uris = soup_server_get_uris (f->http.server);
  base = g_uri_to_string (uris->data);
  f->http.url = g_strconcat (base, "fw", NULL);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
}

/* ---- HTTPS: a certificate made for this run (no clock or expiry surprises) ---- */

static gboolean
make_certificate (const char *openssl, const char *cert_file, const char *key_file)
{
  const char *argv[] = { openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                         "-subj", "/CN=iv-ota test", "-addext", "subjectAltName=IP:127.0.0.1",
                         "-keyout", key_file, "-out", cert_file, NULL };
  g_autoptr(GError) error = NULL;
  int status = -1;

  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                NULL, NULL, NULL, NULL, &status, &error);
  g_assert_no_error (error);
  return g_spawn_check_wait_status (status, NULL);
}

/* LeakSanitizer (gcc 12, clang 14) crashes at exit scanning the dynamic TLS
 * of glib-networking's GnuTLS once a TLS connection was made: no HTTPS there. */
#if defined(__SANITIZE_ADDRESS__)
#define OTA_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OTA_TEST_UNDER_ASAN 1
#endif
#endif

static gboolean
https_server_start (Fixture *f)
{
  g_autofree char *openssl = g_find_program_in_path ("openssl");
  g_autofree char *key_file = g_build_filename (f->dir, "key.pem", NULL);
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *base = NULL;
  GSList *uris;

#ifdef OTA_TEST_UNDER_ASAN
  return FALSE;
#endif
  f->cert_file = g_build_filename (f->dir, "cert.pem", NULL);
  if (openssl == NULL || !make_certificate (openssl, f->cert_file, key_file))
    return FALSE;
  certificate = g_tls_certificate_new_from_files (f->cert_file, key_file, &error);
  g_assert_no_error (error);
  f->https_server = soup_server_new ("tls-certificate", certificate, NULL);
  soup_server_add_handler (f->https_server, "/fw", http_handler, f, NULL);
  soup_server_listen_local (f->https_server, 0,
                            SOUP_SERVER_LISTEN_IPV4_ONLY | SOUP_SERVER_LISTEN_HTTPS, &error);
  g_assert_no_error (error);
  uris = soup_server_get_uris (f->https_server);
  base = g_uri_to_string (uris->data);
  f->https_url = g_strconcat (base, "fw", NULL);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  return TRUE;
}

/* ---- raw threaded server, for connections that break ---- */

/* Reads the request head; returns the start of "Range: bytes=N-", or -1. */
static gint64
raw_read_request (Fixture *f, GDataInputStream *in)
{
  gint64 start = -1;
  gboolean accept_encoding = FALSE;

  for (;;) {
    g_autofree char *line = g_data_input_stream_read_line (in, NULL, NULL, NULL);
    if (line == NULL || line[0] == '\0')
      break;
    if (g_ascii_strncasecmp (line, "Range: bytes=", 13) == 0)
      start = (gint64) g_ascii_strtoull (line + 13, NULL, 10);
    if (g_ascii_strncasecmp (line, "Accept-Encoding:", 16) == 0)
      accept_encoding = TRUE;
  }
  if (start >= 0) {
    g_autofree char *range = g_strdup_printf ("bytes=%" G_GINT64_FORMAT "-", start);
    observe_request (&f->seen, range, accept_encoding);
  } else {
    observe_request (&f->seen, NULL, accept_encoding);
  }
  return start;
}

/* All at once, or paced: a byte per drip_ms, or 64 KiB per pace_ms. Stops
 * when the client goes away. */
static void
raw_write_body (Fixture *f, GOutputStream *out, const guint8 *body, guint64 length)
{
  gsize piece = f->raw.drip_ms > 0 ? 1 : f->raw.pace_ms > 0 ? 64 * 1024 : length;
  guint delay_ms = f->raw.drip_ms > 0 ? f->raw.drip_ms : f->raw.pace_ms;

  for (guint64 done = 0; done < length;) {
    gsize written = 0;
    gboolean ok = g_output_stream_write_all (out, body + done, MIN (piece, length - done), &written, NULL, NULL);

    observe_bytes (&f->seen, written);
    done += written;
    if (!ok)
      return;
    if (delay_ms > 0 && done < length)
      g_usleep (delay_ms * 1000);
  }
}

static void
raw_respond (Fixture *f, GOutputStream *out, gint64 range_start, gboolean first)
{
  const guint8 *body = g_bytes_get_data (f->firmware, NULL);
  guint64 size = g_bytes_get_size (f->firmware);
  guint64 start;
  guint64 length;
  g_autofree char *head = NULL;

  if (f->raw.ignore_range)
    range_start = -1;
  start = range_start >= 0 ? (guint64) range_start : 0;
  length = size - start;
  
  if (f->raw.trailing_junk)
    head = g_strdup ("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
  else if (range_start >= 0)
    head = g_strdup_printf ("HTTP/1.1 206 Partial Content\r\n"
                            "Content-Range: bytes %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT
                            "/%" G_GUINT64_FORMAT "\r\n"
                            "Content-Length: %" G_GUINT64_FORMAT "\r\nConnection: close\r\n\r\n",
                            start, size - 1, size, length);
  else
    head = g_strdup_printf ("HTTP/1.1 200 OK\r\nContent-Length: %" G_GUINT64_FORMAT
                            "\r\nConnection: close\r\n\r\n",
                            length);
  if (range_start >= 0 && f->raw.range_416) {
    g_free (head);
    head = g_strdup_printf ("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%" G_GUINT64_FORMAT
                            "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", size);
  }
  if (!g_output_stream_write_all (out, head, strlen (head), NULL, NULL, NULL) ||
      (range_start >= 0 && f->raw.range_416))
    return;
  if (first && f->raw.cut_after > 0)
    length = MIN (length, f->raw.cut_after);
  if (f->raw.cut_every > 0)
    length = MIN (length, f->raw.cut_every);
  if (!first && f->raw.pace_later_ms > 0)
    f->raw.pace_ms = f->raw.pace_later_ms;
  raw_write_body (f, out, body + start, length);
  if (f->raw.trailing_junk)
    g_output_stream_write_all (out, body, 1000, NULL, NULL, NULL);
}

/* Blocks until the client closes the connection. */
static void
raw_wait_for_close (GInputStream *in)
{
  char byte;

  g_input_stream_read (in, &byte, 1, NULL, NULL);
}

static gboolean
raw_run_cb (GThreadedSocketService *service, GSocketConnection *conn, GObject *source,
            gpointer user_data)
{
  Fixture *f = user_data;
  GIOStream *io = G_IO_STREAM (conn);
  g_autoptr(GDataInputStream) in = g_data_input_stream_new (g_io_stream_get_input_stream (io));
  gint64 range_start;
  gboolean first;

  g_filter_input_stream_set_close_base_stream (G_FILTER_INPUT_STREAM (in), FALSE);
  g_data_input_stream_set_newline_type (in, G_DATA_STREAM_NEWLINE_TYPE_CR_LF);
  g_atomic_int_inc (&f->raw.active);
  range_start = raw_read_request (f, in);
  first = g_atomic_int_add (&f->raw.responses, 1) == 0;
  if (!f->raw.hang)
    raw_respond (f, g_io_stream_get_output_stream (io), range_start, first);
  if (f->raw.hang || (first && f->raw.stall) || f->raw.stall_every)
    raw_wait_for_close (G_INPUT_STREAM (in));
  g_io_stream_close (io, NULL, NULL);
  g_atomic_int_dec_and_test (&f->raw.active);
  return TRUE;
}

static void
raw_server_start (Fixture *f)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;

  f->raw.service = g_threaded_socket_service_new (4);
  g_socket_listener_add_address (G_SOCKET_LISTENER (f->raw.service), address,
                                 G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, &bound,
                                 &error);
  g_assert_no_error (error);
  g_signal_connect (f->raw.service, "run", G_CALLBACK (raw_run_cb), f);
  f->raw.url = g_strdup_printf ("http://127.0.0.1:%u/fw",
                                g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  g_socket_service_start (f->raw.service);
}

/* ---- fixture ---- */

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GRand) rand = g_rand_new_with_seed (42);
  guint32 *words = g_new (guint32, FW_SIZE / 4 + 1);

  for (gsize i = 0; i < FW_SIZE / 4 + 1; i++)
    words[i] = g_rand_int (rand);
  f->firmware = g_bytes_new_take (words, FW_SIZE);
  f->md5 = g_compute_checksum_for_bytes (G_CHECKSUM_MD5, f->firmware);
  f->dir = g_dir_make_tmp ("test-downloader-XXXXXX", &error);
  g_assert_no_error (error);
  f->dir_fd = open (f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  g_assert_cmpint (f->dir_fd, >=, 0);
  g_mutex_init (&f->seen.lock);
  f->seen.ranges = g_ptr_array_new_with_free_func (g_free);
  f->seen.times = g_array_new (FALSE, FALSE, sizeof (gint64));
  http_server_start (f);
  f->session = ota_download_session_new (NULL, &error);
  g_assert_no_error (error);
}

/* Connections the download closed end their threads: waits for them. */
static void
raw_wait_idle (Fixture *f)
{
  for (guint i = 0; i < 500 && g_atomic_int_get (&f->raw.active) > 0; i++)
    g_usleep (10 * 1000);
  g_assert_cmpint (g_atomic_int_get (&f->raw.active), ==, 0);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_autoptr(GDir) dir = g_dir_open (f->dir, 0, NULL);
  const char *name;

  g_clear_object (&f->download);
  g_clear_object (&f->session);
  /* They use @f. */
  raw_wait_idle (f);
  if (f->raw.service != NULL) {
    g_socket_service_stop (f->raw.service);
    g_socket_listener_close (G_SOCKET_LISTENER (f->raw.service));
    g_clear_object (&f->raw.service);
  }
  g_clear_object (&f->http.server);
  g_clear_object (&f->https_server);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    unlinkat (f->dir_fd, name, 0);
  close (f->dir_fd);
  g_rmdir (f->dir);
  g_free (f->dir);
  g_free (f->http.url);
  g_free (f->raw.url);
  g_free (f->https_url);
  g_free (f->cert_file);
  g_free (f->md5);
  g_free (f->message);
  g_bytes_unref (f->firmware);
  g_ptr_array_unref (f->seen.ranges);
  g_array_unref (f->seen.times);
  g_mutex_clear (&f->seen.lock);
}

static OtaDownloadParams
fixture_params (Fixture *f)
{
  OtaDownloadParams params = {
    .url = f->http.url,
    .module = "",
    .version = VERSION,
    .md5sum = f->md5,
    .file_size = FW_SIZE,
    .dir_fd = f->dir_fd,
    .dir_path = f->dir,
    .owner_uid = (uid_t) -1,
    .owner_gid = (gid_t) -1,
    .checkpoint_bytes = CHECKPOINT_BYTES,
    .stall_timeout = 30,
    .max_retries = 3,
    .max_firmware_size = 64 * 1024 * 1024,
  };
  return params;
}

/* ---- files ---- */

static gboolean
file_exists (Fixture *f, const char *name)
{
  struct stat st;

  return fstatat (f->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static guint64
file_size (Fixture *f, const char *name)
{
  struct stat st;

  g_assert_cmpint (fstatat (f->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW), ==, 0);
  return (guint64) st.st_size;
}

static void
write_file (Fixture *f, const char *name, const void *data, gsize length)
{
  g_autofree char *path = g_build_filename (f->dir, name, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, data, (gssize) length, &error);
  g_assert_no_error (error);
}

static void
write_record (Fixture *f, const char *module, const char *version, const char *md5,
              guint64 downloaded)
{
  OtaRecord rec = { (char *) module, (char *) version, (char *) md5, FW_SIZE, downloaded };
  g_autofree char *stem = ota_firmware_stem (module, version);
  g_autofree char *name = g_strconcat (stem, ".json", NULL);
  g_autoptr(GError) error = NULL;

  g_assert_true (ota_record_save_at (f->dir_fd, name, &rec, (uid_t) -1, (gid_t) -1, &error));
  g_assert_no_error (error);
}

/* A partial image: the first @valid bytes of the firmware, then @junk wrong bytes. */
static void
write_partial (Fixture *f, gsize valid, gsize junk)
{
  g_autofree guint8 *data = g_malloc (valid + junk);

  memcpy (data, g_bytes_get_data (f->firmware, NULL), valid);
  memset (data + valid, 0xa5, junk);
  write_file (f, BIN_NAME, data, valid + junk);
}

static void
assert_image_is_firmware (Fixture *f)
{
  g_autofree char *path = g_build_filename (f->dir, BIN_NAME, NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize length = 0;

  g_file_get_contents (path, &contents, &length, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (contents, length, g_bytes_get_data (f->firmware, NULL), FW_SIZE);
  g_assert_false (file_exists (f, RECORD_NAME));
}

static void
load_record (Fixture *f, OtaRecord *rec)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (ota_record_load_at (f->dir_fd, RECORD_NAME, rec, &error));
  g_assert_no_error (error);
}

/* ---- running a download ---- */

static void
on_progress (OtaDownload *download, guint64 downloaded, guint64 total, Fixture *f)
{
  if (f->cancelled) {
    f->signals_after_cancel++;
    return;
  }
  g_assert_cmpuint (total, ==, FW_SIZE);
  g_assert_cmpuint (downloaded, <=, total);
  f->progress_went_back |= downloaded < f->last_progress;
  f->last_progress = downloaded;
  f->progress_count++;
  if (f->freeze_ms > 0 && f->progress_count == 1)
    g_usleep (f->freeze_ms * 1000); /* as if the process were stopped */
  if (f->cancel_at_first_progress) {
    /* Both are allowed from inside a handler. */
    f->cancelled = TRUE;
    ota_download_cancel (download);
    if (f->unref_at_cancel)
      g_clear_object (&f->download);
  }
}

static void
on_verifying (OtaDownload *download, Fixture *f)
{
  if (f->cancelled)
    f->signals_after_cancel++;
  f->verifying_count++;
}

static void
on_finished (OtaDownload *download, int code, const char *message, Fixture *f)
{
  if (f->cancelled)
    f->signals_after_cancel++;
  g_assert_false (f->finished);
  f->finished = TRUE;
  f->code = code;
  g_free (f->message);
  f->message = g_strdup (message);
  f->verifying_before_finished = f->verifying_count == 1;
  g_test_message ("finished %d: %s", code, message);
}

static gboolean
on_test_timeout (gpointer user_data)
{
  g_error ("download did not finish");
  return G_SOURCE_REMOVE;
}

static void
begin_download (Fixture *f, const OtaDownloadParams *params)
{
  g_clear_object (&f->download);
  f->finished = FALSE;
  f->progress_count = 0;
  f->last_progress = 0;
  f->verifying_count = 0;
  f->download = ota_download_new (f->session, params);
  g_signal_connect (f->download, "progress", G_CALLBACK (on_progress), f);
  g_signal_connect (f->download, "verifying", G_CALLBACK (on_verifying), f);
  g_signal_connect (f->download, "finished", G_CALLBACK (on_finished), f);
  ota_download_start (f->download);
}

static void
wait_finished (Fixture *f)
{
  guint guard = g_timeout_add_seconds (60, on_test_timeout, NULL);

  while (!f->finished)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (guard);
}

/* The kind the finished download tells, as GetStatus would show it. */
static void
assert_fail_kind (Fixture *f, const char *kind)
{
  g_assert_cmpstr (ota_fail_kind_to_string (ota_download_get_fail_kind (f->download)), ==, kind);
}

static int
run_download (Fixture *f, const OtaDownloadParams *params)
{
  begin_download (f, params);
  wait_finished (f);
  return f->code;
}

/* ---- a disk that does not keep what it was given ----
 * The test binary is linked with --wrap=pwrite, pread and open (and their
 * ...64 names for 32-bit builds with 64-bit offsets): every such call of the
 * download engine comes here. With corrupt_image_byte set, the byte at that
 * offset of the image (a name ending in .bin) reaches the file flipped, as
 * bad memory, a bad cable or a bad flash block would leave it. Writes and
 * reads with direct I/O are counted; refuse_direct_open has an open with
 * O_DIRECT fail as on a file system without direct I/O, refuse_direct_io
 * has direct reads and writes fail as on one that wants other alignments. */
static gint64 corrupt_image_byte = -1;
static gboolean refuse_direct_open;
static gboolean refuse_direct_io;
static gint direct_writes;
static gint direct_reads;
static gint slow_read_back_ms; /* each read of the reader thread takes that long */

ssize_t __real_pwrite (int fd, const void *buf, size_t n, off_t offset);
ssize_t __wrap_pwrite (int fd, const void *buf, size_t n, off_t offset);
ssize_t __real_pwrite64 (int fd, const void *buf, size_t n, off_t offset);
ssize_t __wrap_pwrite64 (int fd, const void *buf, size_t n, off_t offset);
ssize_t __real_pread (int fd, void *buf, size_t n, off_t offset);
ssize_t __wrap_pread (int fd, void *buf, size_t n, off_t offset);
ssize_t __real_pread64 (int fd, void *buf, size_t n, off_t offset);
ssize_t __wrap_pread64 (int fd, void *buf, size_t n, off_t offset);
int __real_open (const char *path, int flags, ...);
int __wrap_open (const char *path, int flags, ...);
int __real_open64 (const char *path, int flags, ...);
int __wrap_open64 (const char *path, int flags, ...);

/* A copy of @buf with the chosen byte flipped, when this write carries it;
 * aligned as the original, so that a direct write stays one. */
static guint8 *
corrupted_copy (int fd, const void *buf, size_t n, off_t offset)
{
  g_autofree char *link = g_strdup_printf ("/proc/self/fd/%d", fd);
  g_autofree char *target = g_file_read_link (link, NULL);
  gint64 at = corrupt_image_byte;
  guint8 *copy;

  if (at < 0 || at < offset || at >= offset + (off_t) n || target == NULL || !g_str_has_suffix (target, ".bin"))
    return NULL;
  copy = g_aligned_alloc (1, n, 4096);
  memcpy (copy, buf, n);
  copy[at - offset] ^= 0x5a;
  return copy;
}

/* Counts a call on a descriptor opened with O_DIRECT; FALSE: it is to fail. */
static gboolean
direct_call (int fd, gint *count)
{
  int flags = fcntl (fd, F_GETFL);

  if (flags < 0 || !(flags & O_DIRECT))
    return TRUE;
  if (g_atomic_int_get (&refuse_direct_io)) {
    errno = EINVAL;
    return FALSE;
  }
  g_atomic_int_inc (count);
  return TRUE;
}

/* The disk's side of a write, whichever name the C library gave it. */
static ssize_t
disk_pwrite (ssize_t (*real) (int, const void *, size_t, off_t), int fd, const void *buf, size_t n,
             off_t offset)
{
  guint8 *copy;
  ssize_t rc;

  if (!direct_call (fd, &direct_writes))
    return -1;
  copy = corrupted_copy (fd, buf, n, offset);
  rc = real (fd, copy != NULL ? copy : buf, n, offset);
  g_aligned_free (copy);
  return rc;
}

ssize_t
__wrap_pwrite (int fd, const void *buf, size_t n, off_t offset)
{
  return disk_pwrite (__real_pwrite, fd, buf, n, offset);
}

ssize_t
__wrap_pwrite64 (int fd, const void *buf, size_t n, off_t offset)
{
  return disk_pwrite (__real_pwrite64, fd, buf, n, offset);
}

/* A disk (or a CPU) slower than the network, for the reads back. */
static void
disk_read_delay (void)
{
  char name[16] = "";
  gint delay = g_atomic_int_get (&slow_read_back_ms);

  if (delay > 0 && pthread_getname_np (pthread_self (), name, sizeof name) == 0 &&
      strcmp (name, "ota-read") == 0)
    g_usleep ((gulong) delay * 1000);
}

ssize_t
__wrap_pread (int fd, void *buf, size_t n, off_t offset)
{
  disk_read_delay ();
  return direct_call (fd, &direct_reads) ? __real_pread (fd, buf, n, offset) : -1;
}

ssize_t
__wrap_pread64 (int fd, void *buf, size_t n, off_t offset)
{
  disk_read_delay ();
  return direct_call (fd, &direct_reads) ? __real_pread64 (fd, buf, n, offset) : -1;
}

/* In a wrapper of open() or openat(): declares @mode, the mode argument that
 * comes only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE_ARG(mode, flags)                                                \
  mode_t mode = 0;                                                                \
  do {                                                                            \
    va_list args_;                                                                \
                                                                                  \
    va_start (args_, flags);                                                      \
    if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE)                \
      mode = va_arg (args_, mode_t);                                              \
    va_end (args_);                                                               \
  } while (0)

/* FALSE: an open with these flags is to fail, as without direct I/O. */
static gboolean
disk_open_allowed (int flags)
{
  if ((flags & O_DIRECT) && g_atomic_int_get (&refuse_direct_open)) {
    errno = EINVAL;
    return FALSE;
  }
  return TRUE;
}

int
__wrap_open (const char *path, int flags, ...)
{
  OPEN_MODE_ARG (mode, flags);
  return disk_open_allowed (flags) ? __real_open (path, flags, mode) : -1;
}

int
__wrap_open64 (const char *path, int flags, ...)
{
  OPEN_MODE_ARG (mode, flags);
  return disk_open_allowed (flags) ? __real_open64 (path, flags, mode) : -1;
}

/* ---- the order of file system calls ----
 * Also wrapped: openat (openat64), renameat, unlinkat and fsync. While
 * trace_dir is set, each create, rename and unlink of a name in that
 * directory, and each fsync of the directory itself, is noted in order,
 * from whichever thread made it. This shows the order of the calls, which is
 * what makes a change durable; it cannot show a power cut. */
static GMutex trace_lock;
static char *trace_dir;
static GPtrArray *trace_events;

int __real_openat (int dirfd, const char *path, int flags, ...);
int __wrap_openat (int dirfd, const char *path, int flags, ...);
int __real_openat64 (int dirfd, const char *path, int flags, ...);
int __wrap_openat64 (int dirfd, const char *path, int flags, ...);
int __real_renameat (int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __wrap_renameat (int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __real_unlinkat (int dirfd, const char *path, int flags);
int __wrap_unlinkat (int dirfd, const char *path, int flags);
int __real_fsync (int fd);
int __wrap_fsync (int fd);

static gboolean
fd_is_trace_dir (int fd)
{
  g_autofree char *link = g_strdup_printf ("/proc/self/fd/%d", fd);
  g_autofree char *target = g_file_read_link (link, NULL);

  return target != NULL && g_strcmp0 (target, trace_dir) == 0;
}

static void
trace_note (int dirfd, const char *what, const char *name)
{
  g_mutex_lock (&trace_lock);
  if (trace_dir != NULL && fd_is_trace_dir (dirfd))
    g_ptr_array_add (trace_events, name != NULL ? g_strdup_printf ("%s %s", what, name) : g_strdup (what));
  g_mutex_unlock (&trace_lock);
}

/* Notes a name that an openat() created; returns its result. */
static int
trace_openat (int fd, int dirfd, const char *path, int flags)
{
  if (fd >= 0 && (flags & O_CREAT))
    trace_note (dirfd, "create", path);
  return fd;
}

int
__wrap_openat (int dirfd, const char *path, int flags, ...)
{
  OPEN_MODE_ARG (mode, flags);
  return trace_openat (__real_openat (dirfd, path, flags, mode), dirfd, path, flags);
}

int
__wrap_openat64 (int dirfd, const char *path, int flags, ...)
{
  OPEN_MODE_ARG (mode, flags);
  return trace_openat (__real_openat64 (dirfd, path, flags, mode), dirfd, path, flags);
}

int
__wrap_renameat (int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
  int rc = __real_renameat (olddirfd, oldpath, newdirfd, newpath);

  if (rc == 0)
    trace_note (newdirfd, "rename", newpath);
  return rc;
}

int
__wrap_unlinkat (int dirfd, const char *path, int flags)
{
  int rc = __real_unlinkat (dirfd, path, flags);

  if (rc == 0)
    trace_note (dirfd, "unlink", path);
  return rc;
}

int
__wrap_fsync (int fd)
{
  int rc = __real_fsync (fd);

  if (rc == 0)
    trace_note (fd, "sync", NULL);
  return rc;
}

static void
trace_start (const char *dir)
{
  g_mutex_lock (&trace_lock);
  trace_dir = g_strdup (dir);
  trace_events = g_ptr_array_new_with_free_func (g_free);
  g_mutex_unlock (&trace_lock);
}

static GPtrArray *
trace_stop (void)
{
  GPtrArray *events;

  g_mutex_lock (&trace_lock);
  g_clear_pointer (&trace_dir, g_free);
  events = g_steal_pointer (&trace_events);
  g_mutex_unlock (&trace_lock);
  return events;
}

static void
trace_mark_finished (OtaDownload *download, int code, const char *message, gpointer data)
{
  g_mutex_lock (&trace_lock);
  if (trace_events != NULL)
    g_ptr_array_add (trace_events, g_strdup ("finished"));
  g_mutex_unlock (&trace_lock);
}

/* Every create, rename or unlink in the directory (of a name other than a
 * temporary .tmp, which only its rename makes visible) is followed by an
 * fsync of the directory before the download announces its end. Returns
 * whether @needle was among the events, so that a test cannot pass on an
 * empty trace. */
static gboolean
trace_assert_durable_at_finish (GPtrArray *events, const char *needle)
{
  g_autofree char *pending = NULL;
  gboolean seen = FALSE;
  gboolean finished = FALSE;

  for (guint i = 0; i < events->len; i++) {
    const char *event = g_ptr_array_index (events, i);

    g_test_message ("fs: %s", event);
    seen |= g_strcmp0 (event, needle) == 0;
    if (g_str_equal (event, "sync")) {
      g_clear_pointer (&pending, g_free);
    } else if (g_str_equal (event, "finished")) {
      if (pending != NULL)
        g_error ("\"%s\" was not made durable (no fsync of the directory) before the end was announced", pending);
      finished = TRUE;
    } else if (!g_str_has_suffix (event, ".tmp") && pending == NULL) {
      pending = g_strdup (event);
    }
  }
  g_assert_true (finished);
  return seen;
}

static int
run_traced (Fixture *f, const OtaDownloadParams *params, GPtrArray **events)
{
  trace_start (f->dir);
  begin_download (f, params);
  g_signal_connect (f->download, "finished", G_CALLBACK (trace_mark_finished), NULL);
  wait_finished (f);
  *events = trace_stop ();
  return f->code;
}

/* ---- tests ---- */

static void
test_clean_download (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autofree char *path = g_build_filename (f->dir, BIN_NAME, NULL);

  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpstr (ota_download_get_path (f->download), ==, path);
  g_assert_cmpuint (ota_download_get_downloaded (f->download), ==, FW_SIZE);
  g_assert_cmpuint (ota_download_get_resumed_from (f->download), ==, 0);
  g_assert_cmpuint (f->seen.requests, ==, 1);
  g_assert_cmpstr (observed_range (f, 0), ==, "");
  g_assert_false (f->seen.saw_accept_encoding);
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE);
  g_assert_cmpuint (f->progress_count, >, 0);
  g_assert_false (f->progress_went_back);
  g_assert_cmpuint (f->last_progress, ==, FW_SIZE);
  g_assert_true (f->verifying_before_finished);
}

static void
test_resume_requests_the_rest (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 1024 * 1024 + 7;
  g_autofree char *expected = g_strdup_printf ("bytes=%" G_GSIZE_FORMAT "-", done);

  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 1);
  g_assert_cmpstr (observed_range (f, 0), ==, expected);
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE - done);
  g_assert_cmpuint (ota_download_get_resumed_from (f->download), ==, done);
}

static void
test_resume_drops_bytes_past_checkpoint (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 600 * 1024;

  /* Written after the last checkpoint, never confirmed: must not be trusted. */
  write_partial (f, done, 300 * 1024);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (ota_download_get_resumed_from (f->download), ==, done);
}

static void
test_resume_from_shorter_file (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize on_disk = 700 * 1024;

  /* The record claims more than the file holds: trust the file. */
  write_partial (f, on_disk, 0);
  write_record (f, "", VERSION, f->md5, 2 * 1024 * 1024);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (ota_download_get_resumed_from (f->download), ==, on_disk);
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE - on_disk);
}

static void
test_resume_of_complete_file_gets_416 (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autofree char *expected = g_strdup_printf ("bytes=%d-", FW_SIZE);

  write_partial (f, FW_SIZE, 0);
  write_record (f, "", VERSION, f->md5, FW_SIZE);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 1);
  g_assert_cmpstr (observed_range (f, 0), ==, expected);
  g_assert_cmpuint (f->seen.bytes_sent, ==, 0);
  g_assert_true (f->verifying_before_finished);
}

/* A partial image with another name (a hard link the app planted to someone
 * else's file) is not continued: the name is replaced and the other file
 * keeps its bytes. */
static void
test_resume_refuses_hard_linked_image (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 512 * 1024;
  g_autofree char *victim = g_build_filename (f->dir, "victim", NULL);
  g_autofree char *contents = NULL;
  gsize length = 0;
  struct stat st;

  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (linkat (f->dir_fd, BIN_NAME, f->dir_fd, "victim", 0), ==, 0);
  g_test_expect_message ("iv-ota", G_LOG_LEVEL_WARNING, "*existing " BIN_NAME " has 2 links*replaced*");
  g_assert_cmpint (run_download (f, &params), ==, 0);
  g_test_assert_expected_messages ();
  assert_image_is_firmware (f);
  g_assert_cmpuint (ota_download_get_resumed_from (f->download), ==, 0);
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE);
  g_assert_true (g_file_get_contents (victim, &contents, &length, NULL));
  g_assert_cmpmem (contents, length, g_bytes_get_data (f->firmware, NULL), done);
  g_assert_cmpint (fstatat (f->dir_fd, "victim", &st, 0), ==, 0);
  g_assert_cmpuint (st.st_nlink, ==, 1);
  g_assert_cmpint (unlinkat (f->dir_fd, "victim", 0), ==, 0);
}

/* A new download never rewrites an image in place: an app still reading the
 * one announced before (to flash it) keeps reading it whole. */
static void
test_new_download_leaves_old_image_to_readers (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autofree char *old = g_strnfill (FW_SIZE, 'o');
  g_autofree char *seen = g_malloc (FW_SIZE);
  struct stat before, after;
  int reader;

  write_file (f, BIN_NAME, old, FW_SIZE);
  reader = openat (f->dir_fd, BIN_NAME, O_RDONLY | O_CLOEXEC);
  g_assert_cmpint (reader, >=, 0);
  g_assert_cmpint (fstat (reader, &before), ==, 0);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpint (fstatat (f->dir_fd, BIN_NAME, &after, 0), ==, 0);
  g_assert_cmpuint (after.st_ino, !=, before.st_ino);
  g_assert_cmpint (pread (reader, seen, FW_SIZE, 0), ==, FW_SIZE);
  g_assert_cmpmem (seen, FW_SIZE, old, FW_SIZE);
  close (reader);
}

static void
test_range_ignored_starts_over (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 1024 * 1024;

  f->http.ignore_range = TRUE;
  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 1);
  g_assert_cmpstr (observed_range (f, 0), !=, "");
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE);
  g_assert_cmpuint (ota_download_get_resumed_from (f->download), ==, 0);
}

static void
test_wrong_content_range_starts_over (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 1024 * 1024;

  f->http.bad_content_range = TRUE;
  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 2);
  g_assert_cmpstr (observed_range (f, 0), !=, "");
  g_assert_cmpstr (observed_range (f, 1), ==, "");
}

static void
test_not_found_fails_at_once (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->http.fail_count = 100;
  f->http.fail_status = SOUP_STATUS_NOT_FOUND;
  g_assert_cmpint (run_download (f, &params), ==, -2);
  assert_fail_kind (f, "not-found");
  g_assert_cmpuint (f->seen.requests, ==, 1);
  /* Nothing was received: no empty image is left behind. */
  g_assert_false (file_exists (f, BIN_NAME));
  g_assert_false (file_exists (f, RECORD_NAME));
}

static void
test_forbidden_fails_at_once (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->http.fail_count = 100;
  f->http.fail_status = SOUP_STATUS_FORBIDDEN;
  g_assert_cmpint (run_download (f, &params), ==, -3);
  assert_fail_kind (f, "forbidden");
  g_assert_cmpuint (f->seen.requests, ==, 1);
}

static void
test_unexpected_status_fails_at_once (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->http.fail_count = 100;
  f->http.fail_status = SOUP_STATUS_UNAUTHORIZED;
  g_assert_cmpint (run_download (f, &params), ==, -5);
  assert_fail_kind (f, "http");
  g_assert_cmpuint (f->seen.requests, ==, 1);
  g_assert_nonnull (strstr (f->message, "401"));
}

static void
test_server_errors_are_retried (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->http.fail_count = 2;
  f->http.fail_status = SOUP_STATUS_INTERNAL_SERVER_ERROR;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 3);
}

static void
test_retries_run_out (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  params.max_retries = 1;
  f->http.fail_count = 100;
  f->http.fail_status = SOUP_STATUS_SERVICE_UNAVAILABLE;
  g_assert_cmpint (run_download (f, &params), ==, -5);
  assert_fail_kind (f, "http");
  g_assert_cmpuint (f->seen.requests, ==, 2);
  g_assert_nonnull (strstr (f->message, "503"));
}

static void
test_stall_is_a_timeout (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->raw.hang = TRUE;
  raw_server_start (f);
  params.url = f->raw.url;
  params.stall_timeout = 1;
  params.max_retries = 0;
  g_assert_cmpint (run_download (f, &params), ==, -1);
  assert_fail_kind (f, "timeout");
  g_assert_cmpuint (f->seen.requests, ==, 1);
}

static void
test_cut_connection_resumes (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const guint64 cut = 1024 * 1024 + 3;
  g_autofree char *expected = g_strdup_printf ("bytes=%" G_GUINT64_FORMAT "-", cut);

  f->raw.cut_after = cut;
  raw_server_start (f);
  params.url = f->raw.url;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 2);
  g_assert_cmpstr (observed_range (f, 0), ==, "");
  /* Every byte received before the cut was kept. */
  g_assert_cmpstr (observed_range (f, 1), ==, expected);
  g_assert_cmpuint (f->seen.bytes_sent, <=, FW_SIZE + CHECKPOINT_BYTES);
}

static void
test_stall_in_body_resumes (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const guint64 cut = 1500 * 1024;
  g_autofree char *expected = g_strdup_printf ("bytes=%" G_GUINT64_FORMAT "-", cut);

  f->raw.cut_after = cut;
  f->raw.stall = TRUE;
  raw_server_start (f);
  params.url = f->raw.url;
  params.stall_timeout = 1;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 2);
  g_assert_cmpstr (observed_range (f, 1), ==, expected);
}

/* The record's removal, which says "this image is complete", is durable
 * before FirmwareReady could be announced; so is the image's creation. */
static void
test_verified_image_is_durable_before_finish (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autoptr(GPtrArray) events = NULL;

  g_assert_cmpint (run_traced (f, &params, &events), ==, 0);
  g_assert_true (trace_assert_durable_at_finish (events, "unlink " RECORD_NAME));
  g_assert_true (trace_assert_durable_at_finish (events, "create " BIN_NAME));
}

/* A rejected image and its record are gone for good before the failure is announced. */
static void
test_discarded_image_is_durable_before_finish (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autoptr(GPtrArray) events = NULL;

  params.md5sum = WRONG_MD5;
  g_assert_cmpint (run_traced (f, &params, &events), ==, -4);
  g_assert_true (trace_assert_durable_at_finish (events, "unlink " BIN_NAME));
}

/* How the image goes to the disk and back, by the data of a test. */
typedef enum {
  DISK_AS_IT_IS,        /* direct I/O where the file system has it */
  DISK_NO_DIRECT_OPEN,  /* a file system without direct I/O */
  DISK_NO_DIRECT_IO,    /* one that opens with O_DIRECT but refuses the I/O */
} DiskMode;

static void
disk_set_mode (DiskMode mode)
{
  g_atomic_int_set (&refuse_direct_open, mode == DISK_NO_DIRECT_OPEN);
  g_atomic_int_set (&refuse_direct_io, mode == DISK_NO_DIRECT_IO);
  g_atomic_int_set (&direct_writes, 0);
  g_atomic_int_set (&direct_reads, 0);
}

/* Whether the test directory's file system takes direct I/O at all. */
static gboolean
dir_has_direct_io (Fixture *f)
{
  g_autofree char *path = g_build_filename (f->dir, "direct-io-probe", NULL);
  int fd = __real_open (path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);

  if (fd < 0)
    return FALSE;
  close (fd);
  g_unlink (path);
  return TRUE;
}

/* Whole blocks are written and read back with direct I/O where the file
 * system has it, also after a resume from an offset off a block boundary;
 * without it, or when the I/O is refused, through the page cache: the same
 * image either way. */
static void
test_direct_io_or_page_cache (Fixture *f, gconstpointer data)
{
  DiskMode mode = GPOINTER_TO_INT (data);
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 1000001;
  gboolean direct = mode == DISK_AS_IT_IS && dir_has_direct_io (f);
  int code;

  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  disk_set_mode (mode);
  code = run_download (f, &params);
  g_assert_cmpint (code, ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (ota_download_get_resumed_from (f->download), ==, done);
  if (direct) {
    g_assert_cmpint (g_atomic_int_get (&direct_writes), >, 0);
    g_assert_cmpint (g_atomic_int_get (&direct_reads), >, 0);
  } else {
    g_assert_cmpint (g_atomic_int_get (&direct_writes), ==, 0);
    g_assert_cmpint (g_atomic_int_get (&direct_reads), ==, 0);
  }
  disk_set_mode (DISK_AS_IT_IS);
}

/* The stream was right, the file is not: the MD5 is the one of the bytes read
 * back from the file, so the image is never handed over; with direct I/O or
 * through the page cache. */
static void
test_byte_changed_on_disk_fails_md5 (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  int code;

  disk_set_mode (GPOINTER_TO_INT (data));
  corrupt_image_byte = FW_SIZE / 3;
  code = run_download (f, &params);
  corrupt_image_byte = -1;
  disk_set_mode (DISK_AS_IT_IS);
  g_assert_cmpint (code, ==, -4);
  g_assert_nonnull (strstr (f->message, "md5 mismatch"));
  g_assert_false (file_exists (f, BIN_NAME));
  g_assert_false (file_exists (f, RECORD_NAME));
}

static void
test_md5_mismatch_deletes_files (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  params.md5sum = WRONG_MD5;
  g_assert_cmpint (run_download (f, &params), ==, -4);
  assert_fail_kind (f, "checksum");
  g_assert_nonnull (strstr (f->message, "md5 mismatch"));
  g_assert_nonnull (strstr (f->message, f->md5));
  g_assert_false (file_exists (f, BIN_NAME));
  g_assert_false (file_exists (f, RECORD_NAME));
}

static void
test_longer_body_is_a_mismatch (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  /* The server's file is bigger than offered: not the offered image. */
  params.file_size = FW_SIZE - 1000;
  g_assert_cmpint (run_download (f, &params), ==, -4);
  assert_fail_kind (f, "size");
  g_assert_false (file_exists (f, BIN_NAME));
  g_assert_false (file_exists (f, RECORD_NAME));
}

static void
test_longer_body_without_length_is_a_mismatch (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  /* Noticed only while reading: the body has no announced length. */
  f->raw.trailing_junk = TRUE;
  raw_server_start (f);
  params.url = f->raw.url;
  g_assert_cmpint (run_download (f, &params), ==, -4);
  assert_fail_kind (f, "size");
  g_assert_nonnull (strstr (f->message, "more than"));
  g_assert_false (file_exists (f, BIN_NAME));
  g_assert_false (file_exists (f, RECORD_NAME));
}

static void
test_encoded_body_is_refused (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->http.content_encoding = "gzip";
  g_assert_cmpint (run_download (f, &params), ==, -5);
  assert_fail_kind (f, "http");
  g_assert_nonnull (strstr (f->message, "Content-Encoding: gzip"));
  g_assert_cmpuint (f->seen.requests, ==, 1);
}

/* RLIMIT_FSIZE makes pwrite() fail with EFBIG past 1 MiB, like a full disk would. */
/* The image's name is taken by a directory the agent cannot remove: the
 * image cannot be created. */
static void
test_open_error_fails (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autofree char *dir = g_build_filename (f->dir, BIN_NAME, NULL);
  g_autofree char *inside = g_build_filename (dir, "keep", NULL);

  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (inside, "x", 1, NULL));
  g_assert_cmpint (run_download (f, &params), ==, -5);
  assert_fail_kind (f, "open");
  g_assert_cmpuint (f->seen.requests, ==, 0);
  g_assert_cmpint (g_unlink (inside), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
test_write_error_fails (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  struct rlimit saved, limit;
  int code;

  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  limit = saved;
  limit.rlim_cur = 1024 * 1024;
  signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &limit), ==, 0);
  code = run_download (f, &params);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  signal (SIGXFSZ, SIG_DFL);
  g_assert_cmpint (code, ==, -5);
  g_assert_nonnull (strstr (f->message, "cannot write " BIN_NAME));
  assert_fail_kind (f, "write");
}

static void
test_too_big_fails_before_request (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  params.max_firmware_size = FW_SIZE - 1;
  g_assert_cmpint (run_download (f, &params), ==, -5);
  assert_fail_kind (f, "size");
  g_assert_nonnull (strstr (f->message, "max_firmware_size"));
  g_assert_cmpuint (f->seen.requests, ==, 0);
  g_assert_false (file_exists (f, BIN_NAME));
}

static void
test_no_space_fails_before_request (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  /* A petabyte fits no test machine. */
  params.file_size = G_GUINT64_CONSTANT (1) << 50;
  params.max_firmware_size = G_MAXUINT64;
  g_assert_cmpint (run_download (f, &params), ==, -5);
  assert_fail_kind (f, "no-space");
  g_assert_nonnull (strstr (f->message, "not enough space in"));
  g_assert_nonnull (strstr (f->message, f->dir));
  g_assert_cmpuint (f->seen.requests, ==, 0);
  g_assert_false (file_exists (f, BIN_NAME));
  g_assert_false (file_exists (f, RECORD_NAME));
}

static void
test_invalid_version_touches_nothing (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autofree char *parent = g_path_get_dirname (f->dir);
  g_autofree char *escaped = g_build_filename (parent, "x.bin", NULL);

  params.version = "../x";
  g_assert_cmpint (run_download (f, &params), ==, -5);
  assert_fail_kind (f, "other");
  g_assert_cmpuint (f->seen.requests, ==, 0);
  g_assert_false (g_file_test (escaped, G_FILE_TEST_EXISTS));
}

/* After cancel the files stay resumable, and a new download of the same
 * offer (started at once) picks up where the cancelled one stopped. The link
 * is paced: on loopback the whole image could be written before the first
 * buffer was read back, whose progress cancels. */
static void
test_cancel_keeps_partial (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(OtaDownload) cancelled = NULL;
  g_autofree char *range = NULL;
  guint64 resumed;

  f->raw.pace_ms = 10;
  raw_server_start (f);
  params.url = f->raw.url;
  f->cancel_at_first_progress = TRUE;
  f->unref_at_cancel = GPOINTER_TO_INT (data);
  begin_download (f, &params);
  while (!f->cancelled)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (file_exists (f, BIN_NAME));
  load_record (f, &rec);
  g_assert_cmpuint (rec.downloaded_size, <=, file_size (f, BIN_NAME));
  /* Keep the cancelled object (if still ours) alive to see that it stays quiet. */
  cancelled = g_steal_pointer (&f->download);
  /* The cancelled response's last piece counts for the first download. */
  raw_wait_idle (f);
  observations_reset (&f->seen);
  f->cancel_at_first_progress = FALSE;
  f->cancelled = FALSE;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  resumed = ota_download_get_resumed_from (f->download);
  g_assert_cmpuint (resumed, >, 0);
  g_assert_cmpuint (resumed, <, FW_SIZE);
  range = g_strdup_printf ("bytes=%" G_GUINT64_FORMAT "-", resumed);
  g_assert_cmpstr (observed_range (f, 0), ==, range);
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE - resumed);
  g_assert_cmpuint (f->signals_after_cancel, ==, 0);
}

static void
on_unexpected_signal (void)
{
  g_assert_not_reached ();
}

/* Cancelled while a read waits on a silent connection: the bytes already in
 * the buffer being filled are written before the worker stops. */
static void
test_cancel_while_reading (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autofree char *range = NULL;
  guint64 resumed;

  f->raw.cut_after = 1500 * 1024;
  f->raw.stall = TRUE;
  raw_server_start (f);
  params.url = f->raw.url;
  f->cancel_at_first_progress = TRUE;
  begin_download (f, &params);
  while (!f->cancelled)
    g_main_context_iteration (NULL, TRUE);
  g_clear_object (&f->download);

  observations_reset (&f->seen);
  f->cancel_at_first_progress = FALSE;
  f->cancelled = FALSE;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  resumed = ota_download_get_resumed_from (f->download);
  g_assert_cmpuint (resumed, >, 0);
  g_assert_cmpuint (resumed, <=, 1500 * 1024);
  range = g_strdup_printf ("bytes=%" G_GUINT64_FORMAT "-", resumed);
  g_assert_cmpstr (observed_range (f, 0), ==, range);
}

static void
test_cancel_right_after_start (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  OtaDownload *download = ota_download_new (f->session, &params);

  g_signal_connect (download, "progress", G_CALLBACK (on_unexpected_signal), NULL);
  g_signal_connect (download, "finished", G_CALLBACK (on_unexpected_signal), NULL);
  ota_download_start (download);
  ota_download_cancel (download);
  ota_download_cancel (download);
  g_object_unref (download);
  /* The next download waits for the cancelled worker, then completes. */
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
}

static void
test_drop_without_cancel (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  OtaDownload *download = ota_download_new (f->session, &params);

  /* Never started, then started and dropped while preparing: both are fine. */
  g_object_unref (download);
  download = ota_download_new (f->session, &params);
  ota_download_start (download);
  g_object_unref (download);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
}

static void
test_other_offer_replaces_partial (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  /* Same version, other image: its partial must not be resumed. */
  write_partial (f, 1024 * 1024, 0);
  write_record (f, "", VERSION, WRONG_MD5, 1024 * 1024);
  /* An older version of this module: replaced. Another module's: kept. */
  write_file (f, "FW_0.1.bin", "old", 3);
  write_record (f, "", "0.1", f->md5, 3);
  write_file (f, "FW_mcu_0.1.bin", "mcu", 3);
  write_record (f, "mcu", "0.1", f->md5, 3);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpstr (observed_range (f, 0), ==, "");
  g_assert_false (file_exists (f, "FW_0.1.bin"));
  g_assert_false (file_exists (f, "FW_0.1.json"));
  g_assert_true (file_exists (f, "FW_mcu_0.1.bin"));
  g_assert_true (file_exists (f, "FW_mcu_0.1.json"));
}

static void
test_module_file_names (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autofree char *path = g_build_filename (f->dir, "FW_mcu_0.2.bin", NULL);

  params.module = "mcu";
  g_assert_cmpint (run_download (f, &params), ==, 0);
  g_assert_cmpstr (ota_download_get_path (f->download), ==, path);
  g_assert_cmpuint (file_size (f, "FW_mcu_0.2.bin"), ==, FW_SIZE);
  g_assert_false (file_exists (f, "FW_mcu_0.2.json"));
}

static void
test_untrusted_certificate_fails_at_once (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  if (!https_server_start (f)) {
    g_test_skip ("needs openssl, and no AddressSanitizer");
    return;
  }
  params.url = f->https_url;
  g_assert_cmpint (run_download (f, &params), ==, -5);
  g_assert_nonnull (strstr (f->message, "TLS certificate"));
  assert_fail_kind (f, "http");
  g_assert_cmpuint (f->seen.requests, ==, 0);
}

static void
test_ca_file_is_trusted (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autoptr(GError) error = NULL;

  if (!https_server_start (f)) {
    g_test_skip ("needs openssl, and no AddressSanitizer");
    return;
  }
  g_clear_object (&f->session);
  f->session = ota_download_session_new (f->cert_file, &error);
  g_assert_no_error (error);
  params.url = f->https_url;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_false (f->seen.saw_accept_encoding);
}

static void
test_redirect_to_http_is_refused (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  g_autoptr(GError) error = NULL;

  if (!https_server_start (f)) {
    g_test_skip ("needs openssl, and no AddressSanitizer");
    return;
  }
  g_clear_object (&f->session);
  f->session = ota_download_session_new (f->cert_file, &error);
  g_assert_no_error (error);
  /* Only the HTTPS server redirects: the plain one serves the image. */
  f->http.redirect_to = f->http.url;
  g_signal_handlers_disconnect_by_data (f->http.server, f);
  soup_server_remove_handler (f->http.server, "/fw");
  soup_server_add_handler (f->http.server, "/fw", http_plain_handler, f, NULL);
  params.url = f->https_url;
  g_assert_cmpint (run_download (f, &params), ==, -5);
  g_assert_nonnull (strstr (f->message, "redirected from https"));
  assert_fail_kind (f, "refused");
  g_assert_false (file_exists (f, BIN_NAME));
  /* Refused before anything went to the plain http server: only the redirect was asked for. */
  g_assert_cmpuint (f->seen.requests, ==, 1);
}

static void
test_redirect_is_followed (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  /* .../fw becomes .../old */
  g_autofree char *old = g_strdup_printf ("%.*sold", (int) strlen (f->http.url) - 2, f->http.url);
  const gsize done = 1024 * 1024;
  g_autofree char *expected = g_strdup_printf ("bytes=%" G_GSIZE_FORMAT "-", done);

  params.url = old;
  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 2);
  /* The range goes to where the redirect leads. */
  g_assert_cmpstr (observed_range (f, 1), ==, expected);
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE - done);
}

/* 1 byte every 300 ms never lets a 1 s stall timeout fire; it is still a stall. */
static void
test_drip_is_a_stall (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->raw.drip_ms = 300;
  raw_server_start (f);
  params.url = f->raw.url;
  params.stall_timeout = 1;
  params.min_download_rate = 16;
  params.max_retries = 1;
  g_assert_cmpint (run_download (f, &params), ==, -1);
  g_assert_nonnull (strstr (f->message, "min_download_rate"));
  g_assert_cmpuint (f->seen.requests, ==, 2);
}

/* A link that drops every 256 KiB: each attempt makes just enough progress
 * (256 KiB is less than 10 % of this image), none counts. */
static void
test_progress_resets_retry_count (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->raw.cut_every = 256 * 1024;
  raw_server_start (f);
  params.url = f->raw.url;
  params.max_retries = 1;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, (FW_SIZE + 256 * 1024 - 1) / (256 * 1024));
}

/* 300 KiB, then silence: progress, but a stall, so every attempt counts. */
static void
test_stall_never_resets_retry_count (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->raw.cut_every = 300 * 1024;
  f->raw.stall_every = TRUE;
  raw_server_start (f);
  params.url = f->raw.url;
  params.stall_timeout = 1;
  params.max_retries = 2;
  g_assert_cmpint (run_download (f, &params), ==, -1);
  g_assert_cmpuint (f->seen.requests, ==, 3);
  g_assert_nonnull (strstr (f->message, "no data received"));
}

/* The process does not run for longer than stall_timeout (a SIGSTOP, a frozen
 * VM) while the server goes on sending: what waits in the socket is read,
 * no new request. */
static void
test_frozen_process_is_not_a_stall (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);

  f->raw.pace_ms = 40;
  raw_server_start (f);
  params.url = f->raw.url;
  params.stall_timeout = 1;
  f->freeze_ms = 2500;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 1);
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE);
}

/* After a cut the server ignores Range: the download starts over and the file
 * is cut back to nothing while buffers written before are still to be read
 * back (the read-back slower than the network). Those reads must not find a
 * shorter file and call it tampering: the writer waits for them. */
static void
test_restart_while_reading_back (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  int code;

  f->raw.cut_after = 3 * 1024 * 1024;
  f->raw.ignore_range = TRUE;
  f->raw.pace_later_ms = 20;
  raw_server_start (f);
  params.url = f->raw.url;
  g_atomic_int_set (&slow_read_back_ms, 100);
  code = run_download (f, &params);
  g_atomic_int_set (&slow_read_back_ms, 0);
  g_assert_cmpint (code, ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 2);
}

/* 416 to a range inside the file: once, start over from 0. */
static void
test_416_in_the_middle_starts_over (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 1024 * 1024;

  f->http.range_416_count = 1;
  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 2);
  g_assert_cmpstr (observed_range (f, 0), !=, "");
  g_assert_cmpstr (observed_range (f, 1), ==, "");
  g_assert_cmpuint (f->seen.bytes_sent, ==, FW_SIZE);
}

/* ...and if it comes again, fail instead of looping. */
static void
test_416_that_persists_fails (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  const gsize done = 1024 * 1024;

  f->raw.range_416 = TRUE;
  f->raw.cut_every = 512 * 1024;
  raw_server_start (f);
  params.url = f->raw.url;
  write_partial (f, done, 0);
  write_record (f, "", VERSION, f->md5, done);
  g_assert_cmpint (run_download (f, &params), ==, -5);
  g_assert_nonnull (strstr (f->message, "416"));
  g_assert_nonnull (strstr (f->message, "again after starting over"));
  /* Range: 416; from 0: cut; range again: 416. */
  g_assert_cmpuint (f->seen.requests, ==, 3);
  g_assert_cmpstr (observed_range (f, 1), ==, "");
}

static void
test_retry_after_is_honoured (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  gint64 gap;

  f->http.fail_count = 1;
  f->http.fail_status = SOUP_STATUS_SERVICE_UNAVAILABLE;
  f->http.retry_after = "2";
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 2);
  /* Without the header the first retry comes after about 0.5 s. */
  gap = g_array_index (f->seen.times, gint64, 1) - g_array_index (f->seen.times, gint64, 0);
  g_assert_cmpint (gap, >=, 2 * G_USEC_PER_SEC);
}

/* The cap holds the transfer back: 3 MiB at 1 MiB/s cannot end before 2 s
 * (one second of burst allowed). */
static void
test_max_download_rate_holds_back (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  gint64 start = g_get_monotonic_time ();

  params.max_download_rate = 1024 * 1024;
  params.min_download_rate = 16;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  assert_image_is_firmware (f);
  g_assert_cmpuint (f->seen.requests, ==, 1);
  g_assert_cmpint (g_get_monotonic_time () - start, >=,
                   (gint64) (FW_SIZE - 1024 * 1024) * G_USEC_PER_SEC / (1024 * 1024));
}

static void
test_files_belong_to_owner (Fixture *f, gconstpointer data)
{
  OtaDownloadParams params = fixture_params (f);
  struct stat st;

  if (geteuid () != 0) {
    g_test_skip ("needs root");
    return;
  }
  params.owner_uid = 4242;
  params.owner_gid = 4343;
  /* Stop early so that the record is still there to look at. */
  f->cancel_at_first_progress = TRUE;
  begin_download (f, &params);
  while (!f->cancelled)
    g_main_context_iteration (NULL, TRUE);
  /* The partial image is the agent's alone: the app cannot write into it. */
  g_assert_cmpint (fstatat (f->dir_fd, BIN_NAME, &st, AT_SYMLINK_NOFOLLOW), ==, 0);
  g_assert_cmpuint (st.st_uid, ==, 0);
  g_assert_cmpuint (st.st_mode & 07777, ==, 0600);
  g_assert_cmpint (fstatat (f->dir_fd, RECORD_NAME, &st, AT_SYMLINK_NOFOLLOW), ==, 0);
  g_assert_cmpuint (st.st_uid, ==, 4242);
  g_assert_cmpuint (st.st_gid, ==, 4343);

  /* Finishing also waits for the cancelled worker before the directory goes. */
  f->cancel_at_first_progress = FALSE;
  f->cancelled = FALSE;
  g_assert_cmpint (run_download (f, &params), ==, 0);
  /* Verified, it is handed over. */
  g_assert_cmpint (fstatat (f->dir_fd, BIN_NAME, &st, AT_SYMLINK_NOFOLLOW), ==, 0);
  g_assert_cmpuint (st.st_uid, ==, 4242);
  g_assert_cmpuint (st.st_gid, ==, 4343);
  g_assert_cmpuint (st.st_mode & 07777, ==, 0644);
}

static void
test_parse_retry_after (void)
{
  g_autoptr(GDateTime) now = g_date_time_new_from_unix_utc (1700000000);
  g_autoptr(GDateTime) later = g_date_time_add_seconds (now, 30);
  g_autofree char *date = g_date_time_format (later, "%a, %d %b %Y %H:%M:%S GMT");
  gint64 t = g_date_time_to_unix (now);

  g_assert_cmpint (ota_download_parse_retry_after ("5", t), ==, 5);
  g_assert_cmpint (ota_download_parse_retry_after (" 7 ", t), ==, 7);
  g_assert_cmpint (ota_download_parse_retry_after ("0", t), ==, 0);
  g_assert_cmpint (ota_download_parse_retry_after ("86400", t), ==, OTA_RETRY_AFTER_MAX);
  g_assert_cmpint (ota_download_parse_retry_after ("99999999999999999999999", t), ==, -1);
  g_assert_cmpint (ota_download_parse_retry_after ("-3", t), ==, -1);
  g_assert_cmpint (ota_download_parse_retry_after ("5s", t), ==, -1);
  g_assert_cmpint (ota_download_parse_retry_after ("soon", t), ==, -1);
  g_assert_cmpint (ota_download_parse_retry_after (NULL, t), ==, -1);
  g_assert_cmpint (ota_download_parse_retry_after (date, t), ==, 30);
  g_assert_cmpint (ota_download_parse_retry_after (date, t + 100), ==, 0);
  g_assert_cmpint (ota_download_parse_retry_after (date, t - 100000), ==, OTA_RETRY_AFTER_MAX);
}

static void
test_session_rejects_missing_ca_file (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SoupSession) session = ota_download_session_new ("/nonexistent/ca.pem", &error);

  g_assert_null (session);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "/nonexistent/ca.pem"));
}

#define ADD(path, fn, data) \
  g_test_add (path, Fixture, data, fixture_set_up, fn, fixture_tear_down)

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  ADD ("/download/clean", test_clean_download, NULL);
  ADD ("/download/module-file-names", test_module_file_names, NULL);
  ADD ("/download/resume/requests-the-rest", test_resume_requests_the_rest, NULL);
  ADD ("/download/resume/drops-bytes-past-checkpoint", test_resume_drops_bytes_past_checkpoint,
       NULL);
  ADD ("/download/resume/from-shorter-file", test_resume_from_shorter_file, NULL);
  ADD ("/download/resume/complete-file-gets-416", test_resume_of_complete_file_gets_416, NULL);
  ADD ("/download/resume/refuses-hard-linked-image", test_resume_refuses_hard_linked_image, NULL);
  ADD ("/download/new-download-leaves-old-image-to-readers", test_new_download_leaves_old_image_to_readers, NULL);
  ADD ("/download/resume/range-ignored-starts-over", test_range_ignored_starts_over, NULL);
  ADD ("/download/resume/range-ignored-while-reading-back", test_restart_while_reading_back, NULL);
  ADD ("/download/resume/wrong-content-range-starts-over", test_wrong_content_range_starts_over,
       NULL);
  ADD ("/download/resume/other-offer-replaces-partial", test_other_offer_replaces_partial, NULL);
  ADD ("/download/http/not-found-fails-at-once", test_not_found_fails_at_once, NULL);
  ADD ("/download/http/forbidden-fails-at-once", test_forbidden_fails_at_once, NULL);
  ADD ("/download/http/unexpected-status-fails-at-once", test_unexpected_status_fails_at_once,
       NULL);
  ADD ("/download/retry/server-errors-are-retried", test_server_errors_are_retried, NULL);
  ADD ("/download/retry/retries-run-out", test_retries_run_out, NULL);
  ADD ("/download/retry/stall-is-a-timeout", test_stall_is_a_timeout, NULL);
  ADD ("/download/retry/cut-connection-resumes", test_cut_connection_resumes, NULL);
  ADD ("/download/retry/stall-in-body-resumes", test_stall_in_body_resumes, NULL);
  ADD ("/download/verify/md5-mismatch-deletes-files", test_md5_mismatch_deletes_files, NULL);
  ADD ("/download/verify/byte-changed-on-disk-fails-md5", test_byte_changed_on_disk_fails_md5,
       GINT_TO_POINTER (DISK_AS_IT_IS));
  ADD ("/download/verify/byte-changed-on-disk-fails-md5-without-direct-io", test_byte_changed_on_disk_fails_md5,
       GINT_TO_POINTER (DISK_NO_DIRECT_OPEN));
  ADD ("/download/verify/byte-changed-on-disk-fails-md5-when-direct-io-is-refused", test_byte_changed_on_disk_fails_md5,
       GINT_TO_POINTER (DISK_NO_DIRECT_IO));
  ADD ("/download/disk/direct-io-where-available", test_direct_io_or_page_cache,
       GINT_TO_POINTER (DISK_AS_IT_IS));
  ADD ("/download/disk/page-cache-without-direct-io", test_direct_io_or_page_cache,
       GINT_TO_POINTER (DISK_NO_DIRECT_OPEN));
  ADD ("/download/disk/page-cache-when-direct-io-is-refused", test_direct_io_or_page_cache,
       GINT_TO_POINTER (DISK_NO_DIRECT_IO));
  ADD ("/download/durable/verified-image-before-finish", test_verified_image_is_durable_before_finish, NULL);
  ADD ("/download/durable/discarded-image-before-finish", test_discarded_image_is_durable_before_finish, NULL);
  ADD ("/download/verify/longer-body-is-a-mismatch", test_longer_body_is_a_mismatch, NULL);
  ADD ("/download/verify/longer-body-without-length-is-a-mismatch",
       test_longer_body_without_length_is_a_mismatch, NULL);
  ADD ("/download/http/encoded-body-is-refused", test_encoded_body_is_refused, NULL);
  ADD ("/download/limits/open-error-fails", test_open_error_fails, NULL);
  ADD ("/download/limits/write-error-fails", test_write_error_fails, NULL);
  ADD ("/download/files-belong-to-owner", test_files_belong_to_owner, NULL);
  ADD ("/download/limits/too-big-fails-before-request", test_too_big_fails_before_request, NULL);
  ADD ("/download/limits/no-space-fails-before-request", test_no_space_fails_before_request,
       NULL);
  ADD ("/download/limits/invalid-version-touches-nothing", test_invalid_version_touches_nothing,
       NULL);
  ADD ("/download/cancel/keeps-partial", test_cancel_keeps_partial, GINT_TO_POINTER (FALSE));
  ADD ("/download/cancel/unref-in-handler", test_cancel_keeps_partial, GINT_TO_POINTER (TRUE));
  ADD ("/download/cancel/while-reading", test_cancel_while_reading, NULL);
  ADD ("/download/cancel/right-after-start", test_cancel_right_after_start, NULL);
  ADD ("/download/cancel/drop-without-cancel", test_drop_without_cancel, NULL);
  ADD ("/download/tls/untrusted-certificate-fails-at-once",
       test_untrusted_certificate_fails_at_once, NULL);
  ADD ("/download/tls/ca-file-is-trusted", test_ca_file_is_trusted, NULL);
  ADD ("/download/tls/redirect-to-http-is-refused", test_redirect_to_http_is_refused, NULL);
  g_test_add_func ("/download/tls/rejects-missing-ca-file", test_session_rejects_missing_ca_file);
  ADD ("/download/http/redirect-is-followed", test_redirect_is_followed, NULL);
  ADD ("/download/stall/drip-is-a-stall", test_drip_is_a_stall, NULL);
  ADD ("/download/stall/frozen-process-is-not-a-stall", test_frozen_process_is_not_a_stall, NULL);
  ADD ("/download/retry/progress-resets-retry-count", test_progress_resets_retry_count, NULL);
  ADD ("/download/retry/stall-never-resets-retry-count", test_stall_never_resets_retry_count, NULL);
  ADD ("/download/retry/retry-after-is-honoured", test_retry_after_is_honoured, NULL);
  g_test_add_func ("/download/retry/parse-retry-after", test_parse_retry_after);
  ADD ("/download/resume/416-in-the-middle-starts-over", test_416_in_the_middle_starts_over, NULL);
  ADD ("/download/resume/416-that-persists-fails", test_416_that_persists_fails, NULL);
  ADD ("/download/rate/max-download-rate-holds-back", test_max_download_rate_holds_back, NULL);
  return g_test_run ();
}
