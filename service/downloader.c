/* The download engine (docs/downloads.md).
 *
 * Four threads per download, a pipeline in which every job passes every
 * stage, in order:
 *  - the creator's main context only talks to libsoup: it sends the request,
 *    reads the body into pool buffers and hands each filled buffer over, cut
 *    at the image's last whole block while more is to come;
 *  - the writer thread owns the image while it is written: it writes each
 *    buffer (whole blocks with direct I/O, from the buffer to the storage),
 *    gives the buffer straight back, takes checkpoints, and notices any
 *    change to the image that is not its own;
 *  - the reader thread reads every written byte back from the file, with
 *    direct I/O: from the storage, not from a copy in memory;
 *  - the verifier thread feeds MD5 with what was read, never with what came
 *    from the network: the image handed over is the one hashed (a byte the
 *    disk or another process changed fails the MD5). A signed image's SHA-256
 *    is fed in the same pass (digest.c). It re-hashes a
 *    resumed prefix the same way, and at the end compares, checks the file
 *    once more and hands it over to the app.
 * Every job comes back from the verifier, with its result, as an idle source
 * on the creator's context; a written buffer comes back from the writer. Two
 * small pools bound memory and give backpressure: network buffers (with all of
 * them at the writer, the main context stops reading) and read buffers (with
 * both at the verifier, the reader waits). Neither disk I/O nor hashing ever
 * runs on the main context. The read-back costs no second MD5: it is the only
 * one, and direct I/O copies nothing through the page cache, so a download
 * runs at the single-core MD5 ceiling.
 *
 * The image is the agent's until it is verified: created with mode 0600 and
 * owned by the agent (a resumed one is taken back), so that an app cannot
 * write it; the app's directory still lets it rename or delete it, which the
 * writer and the last check notice. Only then is it given to the app (its
 * owner, mode 0644).
 */

/* sync_file_range() */
#define _GNU_SOURCE

#include "downloader.h"

#include "digest.h"

#include "fail-kind.h"
#include "network.h"
#include "protocol.h"
#include "record.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>


/* Offsets into an image are off_t: it must hold sizes over 2 GiB on 32-bit
 * targets too (meson.build sets _FILE_OFFSET_BITS=64). */
G_STATIC_ASSERT (sizeof (off_t) == 8);

/* Reads of this size run near the MD5 ceiling (docs/downloads.md); hashing works on whole buffers. */
#define OTA_CHUNK_SIZE (512 * 1024)
/* A buffer with less room than this is handed over: no read asks for less (docs/downloads.md). */
#define OTA_MIN_READ (256 * 1024)
/* Buffers between the network and the writer, which gives each back once
 * written: one filling, one being written, two queued, so that each side
 * finds work the moment it is free. */
#define OTA_POOL_SIZE 4
/* Buffers of bytes read back, between the reader and the verifier: one being
 * hashed, one being read. With both at the verifier, the reader waits. */
#define OTA_READ_BUFFERS 2
/* At most this many written buffers are on their way through the reader and
 * the verifier; beyond, the writer waits. This bounds how far progress trails
 * the disk, and what the network still brings after the writer failed. */
#define OTA_IN_READ_BACK_MAX 4
/* Direct I/O wants offsets, lengths and memory aligned to the logical block
 * size: a page covers every device this runs on. A read-back is widened to
 * whole blocks on both sides. */
#define OTA_DIRECT_ALIGN 4096
#define OTA_READ_BUFFER_SIZE (OTA_CHUNK_SIZE + 2 * OTA_DIRECT_ALIGN)
/* At most this many bytes were received but not yet written: every buffer, full. */
#define OTA_IN_FLIGHT_MAX ((guint64) OTA_POOL_SIZE * OTA_CHUNK_SIZE)
/* On a slow link a buffer is handed over partly filled, so progress and checkpoints still move. */
#define OTA_HANDOVER_USEC (200 * 1000)
/* A slow link still gets a checkpoint once a second, when a buffer comes. */
#define OTA_CHECKPOINT_MIN_USEC G_USEC_PER_SEC
/* Room for the record and file system metadata on top of the image. */
#define OTA_SPACE_MARGIN (64 * 1024)
#define OTA_BACKOFF_BASE_MS 500
#define OTA_BACKOFF_MAX_MS 30000
/* Stall detection looks at the bytes received over the last stall_timeout,
 * sampled this many times per stall_timeout. */
#define OTA_STALL_SLICES 32
#define OTA_STALL_SAMPLES (OTA_STALL_SLICES + 2)
#define OTA_TICK_MIN_USEC (50 * 1000)
#define OTA_TICK_MAX_USEC G_USEC_PER_SEC
/* An interrupted attempt that brought this much (or 10 % of the image, if
 * less) made progress: it does not count against max_retries. */
#define OTA_PROGRESS_BYTES (256 * 1024)
#define OTA_MAX_REDIRECTS 10
/* With max_download_rate, the transfer may run ahead of the rate by at most
 * this long a burst, and a read asks for at most this fraction of a second. */
#define OTA_RATE_BURST_USEC G_USEC_PER_SEC
#define OTA_RATE_READS_PER_SEC 8

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaRecord, ota_record_clear)

/* Someone else changed the image while it was ours: it is deleted (when its
 * name is still ours) and the download fails with -5. */
#define OTA_IMAGE_ERROR (ota_image_error_quark ())
GQuark ota_image_error_quark (void);
G_DEFINE_QUARK (ota-image-error-quark, ota_image_error)
enum { OTA_IMAGE_ERROR_TAMPERED };

typedef enum {
  OTA_JOB_PREPARE,    /* check limits, find the record, open the image, re-hash the prefix */
  OTA_JOB_WRITE,      /* write one buffer, checkpoint when due; read it back and hash it */
  OTA_JOB_RESTART,    /* the server sends the whole file: start over at byte 0 */
  OTA_JOB_CHECKPOINT, /* the transfer pauses or stops: persist what we have */
  OTA_JOB_VERIFY,     /* every byte written: compare the MD5, finish the files */
  OTA_JOB_DISCARD,    /* the server's file is not the offered one: delete both files */
  OTA_JOB_QUIT,       /* the last job through the pipeline: each thread ends after it */
  OTA_JOB_BUFFER,     /* from the writer straight back: a WRITE's buffer, written */
} OtaJobKind;

typedef struct {
  OtaJobKind kind;
  gboolean final;   /* its reply ends the download with @code and @message */
  guint generation; /* WRITE: RESTART makes counts from older writes stale */
  guint8 *data;     /* WRITE: a pool buffer of OTA_CHUNK_SIZE bytes */
  gsize length;
  guint64 start;    /* WRITE: where the writer put it */
  gboolean on_disk; /* WRITE: written; its writeback was started */
  guint8 *back;     /* WRITE: a read buffer: the @length bytes as read back from the file... */
  gsize back_skew;  /* ...start this far into it */
  GError *read_error; /* WRITE: why they could not be */
  char md5[OTA_MD5_HEX_LENGTH + 1]; /* VERIFY: of the image as read back */
  /* Results, set by the writer (the verifier may add an error). */
  guint64 offset; /* bytes written once the job is done */
  int code;
  OtaFailKind fail_kind; /* with a non-zero @code, or with @error */
  char *message;
  GError *error; /* the first failure of the writer; the files are left alone after it */
} OtaJob;

/* Shared by the download, its threads and the replies in flight, so that
 * no thread depends on another's lifetime. */
typedef struct {
  OtaDownload *self; /* creator's thread only; NULL once finalized */
  gint stop;         /* atomic: cancelled, abandon the prefix re-hash and skip verification */
} OtaLink;

typedef struct {
  OtaLink *link;
  OtaJob *job;
} OtaReply;

/* The files of one download and its threads' state. The writer's fields are
 * the writer's, the reader's the reader's, the verifier's the verifier's; the
 * rest is set before any thread sees a job, or passed on with the jobs (a job
 * pushed by one stage and popped by the next carries everything written
 * before). The verifier frees it, after joining the writer and the reader. */
typedef struct {
  GAsyncQueue *jobs;        /* from the creator, to the writer */
  GAsyncQueue *read_jobs;   /* from the writer, to the reader */
  GAsyncQueue *verify_jobs; /* from the reader, to the verifier */
  GThread *writer_thread;   /* both joined by the verifier after the last job */
  GThread *reader_thread;
  GMainContext *context;
  OtaLink *link;
  int dir_fd;
  int bin_fd;
  char *dir_path;
  char *bin_name;
  char *record_name;
  char *turn_key;
  OtaRecord record; /* the offer; downloaded_size is the last checkpoint */
  uid_t owner_uid;
  gid_t owner_gid;
  char *sha256; /* the signed SHA-256, lowercase hex; NULL: no signature to check */
  guint64 checkpoint_every;
  guint64 max_firmware_size;
  guint64 written;
  guint64 synced;
  gint64 synced_at;
  GError *error;
  OtaFailKind fail_kind; /* of @error */
  struct stat own;  /* the image as the writer's own last change left it */
  gint tampered;    /* atomic: someone else changed the image */
  /* The image again, for direct I/O past the page cache; -1: none. Set at
   * PREPARE, before any WRITE. */
  int direct_fd;
  gboolean direct_writes; /* the writer's: writes of whole blocks use @direct_fd */
  gboolean direct_reads;  /* the reader's: reads back use @direct_fd */
  GAsyncQueue *read_bufs; /* read buffers the verifier is done with */
  /* WRITEs the writer passed on that the verifier is not done with, under
   * @read_back_lock: the writer waits for room, and for none before it cuts
   * the file (a read of bytes it removed would look like tampering). */
  GMutex read_back_lock;
  GCond read_back_cond;
  guint in_read_back;
  guint n_read_bufs;      /* allocated, wherever they are */
  gboolean read_failed;
  /* The verifier's. */
  guint8 *read_buf; /* for a resumed prefix or a full re-read, allocated then */
  OtaDigest *digest; /* MD5, and SHA-256 with @sha256 */
  GError *verify_error;
  gboolean writer_failed;
  OtaFailKind verify_fail_kind; /* of @verify_error */
} OtaWriter;

/* The received count at a moment of the stall clock. */
typedef struct {
  gint64 at;
  guint64 received;
} OtaStallSample;

typedef enum {
  OTA_DOWNLOAD_IDLE,
  OTA_DOWNLOAD_PREPARING,
  OTA_DOWNLOAD_REQUESTING,
  OTA_DOWNLOAD_RECEIVING,
  OTA_DOWNLOAD_BACKOFF,
  OTA_DOWNLOAD_FINISHING, /* the final job is queued; "finished" follows its reply */
  OTA_DOWNLOAD_DONE,
  OTA_DOWNLOAD_CANCELLED,
} OtaDownloadState;

struct _OtaDownload {
  GObject parent_instance;

  SoupSession *session;
  GMainContext *context;
  char *url;
  char *path;
  guint64 file_size;
  guint stall_timeout;
  guint64 min_rate;
  guint64 max_rate;
  guint max_retries;

  OtaDownloadState state;
  OtaLink *link;
  GAsyncQueue *jobs;
  OtaWriter *writer; /* until the threads take it */
  gboolean worker_running; /* the pipeline threads run and take jobs */

  guint8 *pool[OTA_POOL_SIZE]; /* buffers back from the writer */
  guint n_pool;
  guint n_buffers; /* allocated, wherever they are */
  OtaJob *filling;
  gint64 filling_since;
  guint generation;

  guint64 received; /* offset of the next byte from the network */
  guint64 downloaded;
  guint64 resumed_from;
  guint retries;           /* attempts in a row without progress */
  guint64 attempt_start;   /* received when this attempt began */
  guint64 progress_bytes;  /* what an attempt must bring to be progress */
  gboolean restarted_after_416;
  gint64 retry_after;      /* seconds the server asked for, -1: none */
  gboolean verifying;
  gboolean verifying_emitted;
  OtaFailKind fail_kind; /* once finished with a failure */

  char *attempt_url;       /* where redirects led this attempt */
  guint redirects;
  SoupMessage *msg;
  GInputStream *stream;
  GCancellable *cancellable;
  gboolean reading;
  gboolean waiting_for_buffer;
  gboolean stalled;
  char *stall_reason;
  GSource *stall_source;   /* ticks of the stall clock while an attempt runs */
  GSource *backoff_source;
  GSource *throttle_source; /* max_download_rate: the next read waits */

  /* The stall clock advances only while this process runs and waits for the
   * network: a process suspended (SIGSTOP, a frozen VM) or waiting for its
   * disk or its rate cap does not see its link as stalled. */
  gint64 tick_usec;
  gint64 last_tick;
  gint64 stall_clock;
  OtaStallSample samples[OTA_STALL_SAMPLES];
  guint n_samples;
  guint sample_head; /* the newest */

  gint64 rate_start;  /* max_download_rate: the schedule's origin... */
  guint64 rate_bytes; /* ...and the bytes read since */
};

G_DEFINE_FINAL_TYPE (OtaDownload, ota_download, G_TYPE_OBJECT)

enum { SIGNAL_PROGRESS, SIGNAL_VERIFYING, SIGNAL_FINISHED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void ota_download_handle_reply (OtaDownload *self, OtaJob *job);

/* ---- jobs and replies (any thread) ---- */

static OtaJob *
ota_job_new (OtaJobKind kind)
{
  OtaJob *job = g_new0 (OtaJob, 1);

  job->kind = kind;
  return job;
}

static void
ota_job_free (OtaJob *job)
{
  g_aligned_free (job->data);
  g_aligned_free (job->back);
  g_free (job->message);
  g_clear_error (&job->error);
  g_clear_error (&job->read_error);
  g_free (job);
}

static OtaLink *
ota_link_new (OtaDownload *self)
{
  OtaLink *link = g_atomic_rc_box_new0 (OtaLink);

  link->self = self;
  return link;
}

static void
ota_link_unref (OtaLink *link)
{
  g_atomic_rc_box_release (link);
}

static gboolean
ota_reply_dispatch (gpointer user_data)
{
  OtaReply *reply = user_data;

  if (reply->link->self != NULL)
    ota_download_handle_reply (reply->link->self, g_steal_pointer (&reply->job));
  return G_SOURCE_REMOVE;
}

static void
ota_reply_free (gpointer user_data)
{
  OtaReply *reply = user_data;

  /* Still here when the download was finalized first. */
  g_clear_pointer (&reply->job, ota_job_free);
  ota_link_unref (reply->link);
  g_free (reply);
}

/* An idle source rather than g_main_context_invoke(): invoke may run the
 * callback right here, in the writer, when nobody holds the context. */
static void
ota_link_post (OtaLink *link, GMainContext *context, OtaJob *job)
{
  OtaReply *reply = g_new0 (OtaReply, 1);
  GSource *source = g_idle_source_new ();

  reply->link = g_atomic_rc_box_acquire (link);
  reply->job = job;
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, ota_reply_dispatch, reply, ota_reply_free);
  g_source_set_static_name (source, "[iv-ota] download reply");
  g_source_attach (source, context);
  g_source_unref (source);
}

/* ---- the writer: files, checkpoints, verification ---- */

/* Downloads of one module in one directory touch the same files. A cancelled
 * one may still be flushing its last buffers when the next one starts, so
 * their writers take turns, in the order the downloads were started: each
 * key ("dev:ino:module") maps to a queue of writers, the head may run. */
static GMutex ota_turns_lock;
static GCond ota_turns_cond;
static GHashTable *ota_turns;

/* Worker threads alive, for a shutdown that waits for the last checkpoints. */
static gint ota_workers_running;

/* Creator's thread, before the writer starts: takes a place in line. */
static void
ota_writer_queue_up (OtaWriter *w)
{
  struct stat st;
  GQueue *line;

  if (w->dir_fd >= 0 && fstat (w->dir_fd, &st) == 0)
    w->turn_key = g_strdup_printf ("%ju:%ju:%s", (uintmax_t) st.st_dev, (uintmax_t) st.st_ino,
                                   w->record.module);
  else
    w->turn_key = g_strdup_printf ("%s:%s", w->dir_path, w->record.module);
  g_mutex_lock (&ota_turns_lock);
  if (ota_turns == NULL)
    ota_turns = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify) g_queue_free);
  line = g_hash_table_lookup (ota_turns, w->turn_key);
  if (line == NULL) {
    line = g_queue_new ();
    g_hash_table_insert (ota_turns, g_strdup (w->turn_key), line);
  }
  g_queue_push_tail (line, w);
  g_mutex_unlock (&ota_turns_lock);
}

/* Writer thread: only writer threads ever block here. */
static void
ota_writer_wait_turn (OtaWriter *w)
{
  g_mutex_lock (&ota_turns_lock);
  while (g_queue_peek_head (g_hash_table_lookup (ota_turns, w->turn_key)) != w)
    g_cond_wait (&ota_turns_cond, &ota_turns_lock);
  g_mutex_unlock (&ota_turns_lock);
}

static void
ota_writer_leave_line (OtaWriter *w)
{
  GQueue *line;

  g_mutex_lock (&ota_turns_lock);
  line = g_hash_table_lookup (ota_turns, w->turn_key);
  g_queue_remove (line, w);
  if (g_queue_is_empty (line))
    g_hash_table_remove (ota_turns, w->turn_key);
  g_cond_broadcast (&ota_turns_cond);
  g_mutex_unlock (&ota_turns_lock);
}

/* How many bytes written since the last checkpoint call for the next one,
 * chosen so that a kill loses at most @checkpoint_bytes of what we received:
 *   lost = received - checkpointed = (received - written) + (written - checkpointed).
 * The first term is at most OTA_IN_FLIGHT_MAX, every buffer full and not yet
 * written. The second stays below the threshold T, except while the writer
 * checkpoints after writing a buffer of n bytes: then it is below T + n, but
 * those n bytes count as written, so the first term is at most
 * OTA_IN_FLIGHT_MAX - n. Either way lost < T + OTA_IN_FLIGHT_MAX, hence
 * T = checkpoint_bytes - OTA_IN_FLIGHT_MAX. Smaller checkpoint_bytes than
 * 2 * OTA_IN_FLIGHT_MAX (4 MiB, the default, and up are fine) take T =
 * checkpoint_bytes / 2, so that syncs stay that far apart: there the bound is
 * checkpoint_bytes / 2 + OTA_IN_FLIGHT_MAX. Bytes the kernel and libsoup hold
 * unread come on top in both cases. */
static guint64
ota_checkpoint_threshold (guint64 checkpoint_bytes)
{
  if (checkpoint_bytes >= 2 * OTA_IN_FLIGHT_MAX)
    return checkpoint_bytes - OTA_IN_FLIGHT_MAX;
  return MAX (checkpoint_bytes / 2, 1);
}

static OtaWriter *
ota_writer_new (const OtaDownloadParams *params, OtaLink *link, GMainContext *context, GAsyncQueue *jobs)
{
  OtaWriter *w = g_new0 (OtaWriter, 1);
  g_autofree char *stem = NULL;

  w->jobs = g_async_queue_ref (jobs);
  w->read_jobs = g_async_queue_new_full ((GDestroyNotify) ota_job_free);
  w->verify_jobs = g_async_queue_new_full ((GDestroyNotify) ota_job_free);
  w->read_bufs = g_async_queue_new_full (g_aligned_free);
  g_mutex_init (&w->read_back_lock);
  g_cond_init (&w->read_back_cond);
  w->direct_fd = -1;
  w->context = g_main_context_ref (context);
  w->link = g_atomic_rc_box_acquire (link);
  w->dir_fd = fcntl (params->dir_fd, F_DUPFD_CLOEXEC, 3);
  w->bin_fd = -1;
  w->dir_path = g_strdup (params->dir_path != NULL ? params->dir_path : "");
  w->record.module = g_strdup (params->module != NULL ? params->module : "");
  w->record.version = g_strdup (params->version);
  w->record.md5sum = g_ascii_strdown (params->md5sum, -1);
  w->record.file_size = params->file_size;
  stem = ota_firmware_stem (w->record.module, w->record.version);
  w->bin_name = g_strconcat (stem, ".bin", NULL);
  w->record_name = g_strconcat (stem, ".json", NULL);
  w->owner_uid = params->owner_uid;
  w->owner_gid = params->owner_gid;
  w->checkpoint_every = ota_checkpoint_threshold (params->checkpoint_bytes);
  w->max_firmware_size = params->max_firmware_size;
  if (params->sha256 != NULL && params->sha256[0] != '\0')
    w->sha256 = g_ascii_strdown (params->sha256, -1);
  w->digest = ota_digest_new (w->sha256 != NULL);
  return w;
}

static void
ota_writer_free (OtaWriter *w)
{
  if (w->bin_fd >= 0)
    close (w->bin_fd);
  if (w->dir_fd >= 0)
    close (w->dir_fd);
  g_async_queue_unref (w->jobs);
  g_async_queue_unref (w->read_jobs);
  g_async_queue_unref (w->verify_jobs);
  ota_digest_free (w->digest);
  g_main_context_unref (w->context);
  ota_link_unref (w->link);
  g_free (w->dir_path);
  g_free (w->bin_name);
  g_free (w->record_name);
  g_free (w->turn_key);
  g_free (w->sha256);
  if (w->direct_fd >= 0)
    close (w->direct_fd);
  g_async_queue_unref (w->read_bufs);
  g_mutex_clear (&w->read_back_lock);
  g_cond_clear (&w->read_back_cond);
  g_free (w->read_buf);
  ota_record_clear (&w->record);
  g_clear_error (&w->error);
  g_clear_error (&w->verify_error);
  g_free (w);
}

static gboolean
ota_set_tampered (GError **error, OtaWriter *w, const char *what)
{
  g_set_error (error, OTA_IMAGE_ERROR, OTA_IMAGE_ERROR_TAMPERED,
               "the image was tampered with: %s %s while the agent wrote it", w->bin_name, what);
  return FALSE;
}

/* A create, rename or unlink in the firmware directory that a later decision
 * reads (is there a record? is this the image?) survives a power cut only once
 * the directory is synced: a deleted record could come back and have the next
 * offer cut a verified image back to that checkpoint. Records are replaced
 * with the directory synced (ota_replace_file_at); the image's creation and
 * every removal go through here. */
static gboolean
ota_writer_sync_dir (OtaWriter *w, GError **error)
{
  int saved = ota_fsync_dir (w->dir_fd);

  if (saved != 0)
    return ota_set_error_from_errno (error, saved, "cannot sync the directory %s", w->dir_path);
  return TRUE;
}

/* After each change of its own to the image, the writer notes how the image
 * looks; before the next one, and before the image is handed over, it must
 * look the same: the same file under our name, one name, the same size and
 * the same change time. Writes, truncation, hole punching, chmod, hard links
 * by anyone else change the change time: the kernel stamps a change right
 * after a stat with a time of its own. Catching a root process that writes in
 * the same clock tick as the agent, on older kernels, is left to the MD5 of
 * the bytes read back. */
static gboolean
ota_writer_note_own_change (OtaWriter *w, GError **error)
{
  if (fstat (w->bin_fd, &w->own) < 0)
    return ota_set_error_from_errno (error, errno, "cannot stat %s", w->bin_name);
  return TRUE;
}

static gboolean
ota_writer_check_untouched (OtaWriter *w, GError **error)
{
  struct stat st, named;
  g_autofree char *what = NULL;

  if (fstat (w->bin_fd, &st) < 0)
    return ota_set_error_from_errno (error, errno, "cannot stat %s", w->bin_name);
  if (fstatat (w->dir_fd, w->bin_name, &named, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno != ENOENT)
      return ota_set_error_from_errno (error, errno, "cannot stat %s", w->bin_name);
    return ota_set_tampered (error, w, "was deleted or renamed");
  }
  if (named.st_dev != st.st_dev || named.st_ino != st.st_ino)
    return ota_set_tampered (error, w, "was replaced by another file");
  if (st.st_nlink != 1)
    return ota_set_tampered (error, w, "got another name (a hard link)");
  if (st.st_size != w->own.st_size) {
    what = g_strdup_printf ("was resized to %" PRIdMAX " bytes (the agent had written %" PRIdMAX ")",
                            (intmax_t) st.st_size, (intmax_t) w->own.st_size);
    return ota_set_tampered (error, w, what);
  }
  if (st.st_ctim.tv_sec != w->own.st_ctim.tv_sec || st.st_ctim.tv_nsec != w->own.st_ctim.tv_nsec ||
      st.st_mode != w->own.st_mode || st.st_uid != w->own.st_uid)
    return ota_set_tampered (error, w, "was changed by another process");
  return TRUE;
}

static gboolean
ota_writer_save_record (OtaWriter *w, guint64 downloaded, GError **error)
{
  w->record.downloaded_size = downloaded;
  return ota_record_save_at (w->dir_fd, w->record_name, &w->record, w->owner_uid, w->owner_gid,
                             error);
}

/* The record never claims more than is durably in the image. */
static gboolean
ota_writer_checkpoint (OtaWriter *w, GError **error)
{
  if (w->written == w->synced)
    return TRUE;
  if (fdatasync (w->bin_fd) < 0)
    return ota_set_error_from_errno (error, errno, "cannot sync %s", w->bin_name);
  if (!ota_writer_save_record (w, w->written, error))
    return FALSE;
  w->synced = w->written;
  w->synced_at = g_get_monotonic_time ();
  return TRUE;
}

/* A second descriptor of the image, for direct I/O: whole blocks are written
 * from the network's buffers and read back into the reader's without a copy
 * through the page cache, and the bytes read back come from the storage, never
 * from a copy we wrote into memory. Reopened through /proc so that it is the
 * same file whatever its name holds meanwhile. Where there is no direct I/O
 * (some flash file systems, no /proc), the buffered descriptor serves. */
static void
ota_writer_open_direct (OtaWriter *w)
{
  char path[64];
  struct stat st, direct;

  if (w->direct_fd >= 0)
    return;
  g_snprintf (path, sizeof path, "/proc/self/fd/%d", w->bin_fd);
  w->direct_fd = open (path, O_RDWR | O_DIRECT | O_CLOEXEC);
  if (w->direct_fd < 0) {
    g_debug ("%s is written and read back through the page cache: %s", w->bin_name,
             g_strerror (errno));
    return;
  }
  if (fstat (w->bin_fd, &st) < 0 || fstat (w->direct_fd, &direct) < 0 ||
      st.st_dev != direct.st_dev || st.st_ino != direct.st_ino) {
    close (w->direct_fd);
    w->direct_fd = -1;
    return;
  }
  w->direct_writes = w->direct_reads = TRUE;
}

/* Reads @length bytes from @offset, fewer only at the end of the file. With
 * @direct, a read that ends off a block boundary was the end of the file: no
 * aligned read goes on from there. */
static gssize
ota_pread_all (int fd, guint8 *data, gsize length, off_t offset, gboolean direct)
{
  gsize done = 0;

  while (done < length) {
    ssize_t n = pread (fd, data + done, length - done, offset + (off_t) done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    done += (gsize) n;
    if (n == 0 || (direct && (offset + (off_t) done) % OTA_DIRECT_ALIGN != 0))
      break;
  }
  return (gssize) done;
}

/* Reader thread: reads a written buffer's bytes back into @job->back. Direct
 * I/O writes back what is still in the page cache first, by itself. Buffered,
 * the bytes are written back and dropped from the page cache first, so that
 * the read comes from the storage where the page cache is not the storage
 * (tmpfs) and the hints work. */
static gboolean
ota_reader_read_range (OtaWriter *w, OtaJob *job, GError **error)
{
  guint64 end = job->start + job->length;
  gssize n;

  if (w->direct_reads) {
    guint64 from = job->start - job->start % OTA_DIRECT_ALIGN;
    guint64 to = end + (OTA_DIRECT_ALIGN - end % OTA_DIRECT_ALIGN) % OTA_DIRECT_ALIGN;

    job->back_skew = (gsize) (job->start - from);
    n = ota_pread_all (w->direct_fd, job->back, (gsize) (to - from), (off_t) from, TRUE);
    if (n >= 0 || errno != EINVAL)
      goto done;
    g_message ("%s is read back through the page cache: %s", w->bin_name, g_strerror (errno));
    w->direct_reads = FALSE;
  }
  job->back_skew = 0;
  sync_file_range (w->bin_fd, (off_t) job->start, (off_t) job->length,
                   SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  posix_fadvise (w->bin_fd, (off_t) job->start, (off_t) job->length, POSIX_FADV_DONTNEED);
  n = ota_pread_all (w->bin_fd, job->back, job->length, (off_t) job->start, FALSE);
done:
  if (n < 0)
    return ota_set_error_from_errno (error, errno, "cannot read back %s", w->bin_name);
  if ((gsize) n < job->back_skew + job->length)
    return ota_set_tampered (error, w, "shrank");
  return TRUE;
}

/* Whole blocks go past the page cache, from the buffer straight to the
 * storage: no copy, and no page of the image left in memory. Any other piece
 * (the image's last, one after a partial hand-over) goes through the page
 * cache, its writeback started at once: the next checkpoint's fdatasync then
 * finds little left to write. Returns 0 or an errno. */
static int
ota_writer_pwrite (OtaWriter *w, const OtaJob *job)
{
  int saved_errno;

  if (w->direct_writes && job->start % OTA_DIRECT_ALIGN == 0 && job->length % OTA_DIRECT_ALIGN == 0) {
    saved_errno = ota_pwrite_all (w->direct_fd, job->data, job->length, (off_t) job->start);
    if (saved_errno != EINVAL)
      return saved_errno;
    /* A file system that opens with O_DIRECT but wants other alignments. */
    g_message ("%s is written through the page cache: %s", w->bin_name, g_strerror (saved_errno));
    w->direct_writes = FALSE;
  }
  saved_errno = ota_pwrite_all (w->bin_fd, job->data, job->length, (off_t) job->start);
  if (saved_errno == 0)
    sync_file_range (w->bin_fd, (off_t) job->start, (off_t) job->length, SYNC_FILE_RANGE_WRITE);
  return saved_errno;
}

static gboolean
ota_writer_write (OtaWriter *w, OtaJob *job, GError **error)
{
  int saved_errno;

  if (!ota_writer_check_untouched (w, error))
    return FALSE;
  job->start = w->written;
  saved_errno = ota_writer_pwrite (w, job);
  if (saved_errno != 0)
    return ota_set_error_from_errno (error, saved_errno, "cannot write %s", w->bin_name);
  if (!ota_writer_note_own_change (w, error))
    return FALSE;
  job->on_disk = TRUE;
  w->written += job->length;
  /* The threshold bounds what a kill can waste; every second keeps slow links
   * resumable. Never per chunk: that would cap the throughput at the disk's
   * sync rate. */
  if (w->written > w->synced && (w->written - w->synced >= w->checkpoint_every ||
                                 g_get_monotonic_time () - w->synced_at >= OTA_CHECKPOINT_MIN_USEC))
    return ota_writer_checkpoint (w, error);
  return TRUE;
}

/* Writer thread: waits until at most @at_most written buffers are still to be
 * read back and hashed. */
static void
ota_writer_wait_read_back (OtaWriter *w, guint at_most)
{
  g_mutex_lock (&w->read_back_lock);
  while (w->in_read_back > at_most)
    g_cond_wait (&w->read_back_cond, &w->read_back_lock);
  g_mutex_unlock (&w->read_back_lock);
}

/* Writer thread: one more buffer on its way to be read back, once there is room. */
static void
ota_writer_pass_to_read_back (OtaWriter *w)
{
  ota_writer_wait_read_back (w, OTA_IN_READ_BACK_MAX - 1);
  g_mutex_lock (&w->read_back_lock);
  w->in_read_back++;
  g_mutex_unlock (&w->read_back_lock);
}

/* Verifier thread: a buffer read back and hashed. */
static void
ota_verifier_done_with_write (OtaWriter *w)
{
  g_mutex_lock (&w->read_back_lock);
  w->in_read_back--;
  g_cond_signal (&w->read_back_cond);
  g_mutex_unlock (&w->read_back_lock);
}

/* The record goes first: after a crash in between it describes an empty
 * download, whatever the image still holds. The verifier starts over on its
 * own: RESTART passes it next. */
static gboolean
ota_writer_restart (OtaWriter *w, GError **error)
{
  if (!ota_writer_check_untouched (w, error) || !ota_writer_save_record (w, 0, error))
    return FALSE;
  ota_writer_wait_read_back (w, 0);
  if (ftruncate (w->bin_fd, 0) < 0)
    return ota_set_error_from_errno (error, errno, "cannot truncate %s", w->bin_name);
  if (!ota_writer_note_own_change (w, error))
    return FALSE;
  w->written = w->synced = 0;
  w->synced_at = g_get_monotonic_time ();
  return TRUE;
}

static gboolean
ota_writer_check_offer (OtaWriter *w, GError **error)
{
  if (w->record.file_size == 0 || w->record.file_size > w->max_firmware_size ||
      w->record.file_size > G_MAXINT64) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                 "firmware size %" G_GUINT64_FORMAT " is outside 1..%" G_GUINT64_FORMAT
                 " (max_firmware_size)",
                 w->record.file_size, w->max_firmware_size);
    return FALSE;
  }
  /* Both become file names: refuse anything that was not validated. */
  if (!ota_protocol_module_is_valid (w->record.module) ||
      !ota_protocol_version_is_valid (w->record.version) ||
      !ota_protocol_md5sum_is_valid (w->record.md5sum)) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                         "invalid module, version or md5sum");
    return FALSE;
  }
  if (w->dir_fd < 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "no usable descriptor for %s", w->dir_path);
    return FALSE;
  }
  return TRUE;
}

/* Deletes the partial download named by record @name if it belongs to our
 * module: a different offer replaces it. Only names computed from the
 * record's validated fields are deleted. */
static void
ota_writer_remove_partial (OtaWriter *w, const char *name)
{
  g_auto(OtaRecord) rec = { 0 };
  g_autofree char *stem = NULL;
  g_autofree char *record_name = NULL;
  g_autofree char *bin_name = NULL;

  if (!ota_record_load_at (w->dir_fd, name, &rec, NULL) ||
      g_strcmp0 (rec.module, w->record.module) != 0)
    return;
  stem = ota_firmware_stem (rec.module, rec.version);
  record_name = g_strconcat (stem, ".json", NULL);
  if (g_strcmp0 (record_name, name) != 0)
    return;
  bin_name = g_strconcat (stem, ".bin", NULL);
  g_message ("removing the partial download of %s: replaced by %s", rec.version,
             w->record.version);
  unlinkat (w->dir_fd, bin_name, 0);
  unlinkat (w->dir_fd, record_name, 0);
  ota_writer_sync_dir (w, NULL);
}

static void
ota_writer_remove_stale (OtaWriter *w)
{
  /* A descriptor of our own: fdopendir() needs one it can read and keep. */
  int fd = openat (w->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *dir = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *entry;

  if (dir == NULL) {
    if (fd >= 0)
      close (fd);
    return;
  }
  while ((entry = readdir (dir)) != NULL) {
    if (g_str_has_prefix (entry->d_name, "FW_") && g_str_has_suffix (entry->d_name, ".json") &&
        strcmp (entry->d_name, w->record_name) != 0)
      ota_writer_remove_partial (w, entry->d_name);
  }
  closedir (dir);
}

/* Module "" at version "mcu_2.0" and module "mcu" at "2.0" both name
 * FW_mcu_2.0.bin: a partial download of another module under our name stays
 * that module's, and ours is refused (the agent also refuses while the other
 * module's cycle runs, see agent.c). */
static gboolean
ota_writer_check_name_owner (OtaWriter *w, GError **error)
{
  g_auto(OtaRecord) rec = { 0 };

  if (!ota_record_load_at (w->dir_fd, w->record_name, &rec, NULL) ||
      g_strcmp0 (rec.module, w->record.module) == 0)
    return TRUE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
               "%s in the same directory is the partial download of module %s, version %s (its record %s): "
               "module %s will not write or announce the same file",
               w->bin_name, ota_protocol_module_label (rec.module), rec.version, w->record_name,
               ota_protocol_module_label (w->record.module));
  return FALSE;
}

/* Returns TRUE, with the size it claims, when our record describes this very offer. */
static gboolean
ota_writer_find_record (OtaWriter *w, guint64 *recorded)
{
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) error = NULL;

  if (!ota_record_load_at (w->dir_fd, w->record_name, &rec, &error)) {
    if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
      g_message ("starting over: %s", error->message);
    return FALSE;
  }
  if (g_strcmp0 (rec.module, w->record.module) != 0 ||
      g_strcmp0 (rec.version, w->record.version) != 0 ||
      g_strcmp0 (rec.md5sum, w->record.md5sum) != 0 || rec.file_size != w->record.file_size) {
    g_message ("starting over: %s describes another offer", w->record_name);
    return FALSE;
  }
  *recorded = rec.downloaded_size;
  return TRUE;
}

/* Bytes of an existing image that the new download will overwrite. */
static guint64
ota_writer_reusable_bytes (OtaWriter *w)
{
  struct stat st;

  if (fstatat (w->dir_fd, w->bin_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG (st.st_mode))
    return 0;
  return MIN ((guint64) st.st_blocks * 512, (guint64) st.st_size);
}

static gboolean
ota_writer_check_space (OtaWriter *w, GError **error)
{
  struct statvfs vfs;
  guint64 need, avail;

  if (fstatvfs (w->dir_fd, &vfs) < 0)
    return ota_set_error_from_errno (error, errno, "cannot check free space in %s", w->dir_path);
  need = w->record.file_size - MIN (ota_writer_reusable_bytes (w), w->record.file_size) +
         OTA_SPACE_MARGIN;
  avail = (guint64) vfs.f_bavail * vfs.f_frsize;
  if (avail < need) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                 "not enough space in %s: need %" G_GUINT64_FORMAT " bytes, %" G_GUINT64_FORMAT
                 " free",
                 w->dir_path, need, avail);
    return FALSE;
  }
  return TRUE;
}

/* An image the agent writes is its own, mode 0600, until it is verified. */
static gboolean
ota_writer_take_back (OtaWriter *w, const struct stat *st, GError **error)
{
  if (st->st_uid != geteuid () && fchown (w->bin_fd, geteuid (), getegid ()) < 0)
    return ota_set_error_from_errno (error, errno, "cannot take back %s", w->bin_name);
  if ((st->st_mode & 07777) != 0600 && fchmod (w->bin_fd, 0600) < 0)
    return ota_set_error_from_errno (error, errno, "cannot take back %s", w->bin_name);
  return TRUE;
}

/* Opens the image already under our name, if it may be continued: a file of
 * our own or the owner's with no other name (an agent before this one gave
 * partial images to the app), taken back. A hard link to someone else's file,
 * planted by the app, would otherwise have us overwrite and chown that file;
 * such a name is removed instead, and the image starts afresh. Whatever the app
 * wrote into a partial image of its own fails the MD5 of the bytes read back. */
static gboolean
ota_writer_open_existing (OtaWriter *w, GError **error)
{
  struct stat st;

  /* O_NONBLOCK: a FIFO planted under our name must not hang the writer. */
  w->bin_fd = openat (w->dir_fd, w->bin_name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (w->bin_fd < 0)
    return errno == ENOENT || ota_set_error_from_errno (error, errno, "cannot open %s", w->bin_name);
  if (fstat (w->bin_fd, &st) < 0 || !S_ISREG (st.st_mode)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE, "%s is not a regular file",
                 w->bin_name);
    return FALSE;
  }
  if (st.st_nlink == 1 &&
      (st.st_uid == geteuid () || (w->owner_uid != (uid_t) -1 && st.st_uid == w->owner_uid)))
    return ota_writer_take_back (w, &st, error);
  g_warning ("%s: existing %s has %u links and uid %u: replaced, not continued", w->dir_path,
             w->bin_name, (guint) st.st_nlink, (guint) st.st_uid);
  close (w->bin_fd);
  w->bin_fd = -1;
  if (unlinkat (w->dir_fd, w->bin_name, 0) < 0)
    return ota_set_error_from_errno (error, errno, "cannot remove %s", w->bin_name);
  return TRUE;
}

/* @resume: continue the image under our name; otherwise a new file takes the
 * name, so that whoever still reads the old one (an app flashing an image
 * announced before) keeps reading it whole. */
static gboolean
ota_writer_open_image (OtaWriter *w, gboolean resume, GError **error)
{
  if (resume && !ota_writer_open_existing (w, error))
    return FALSE;
  if (!resume && unlinkat (w->dir_fd, w->bin_name, 0) < 0 && errno != ENOENT)
    return ota_set_error_from_errno (error, errno, "cannot remove %s", w->bin_name);
  /* O_EXCL: whatever appears under the name meanwhile is refused, not opened.
   * 0600 and ours: no app writes into the image while we do (see the top). */
  if (w->bin_fd < 0)
    w->bin_fd = openat (w->dir_fd, w->bin_name,
                        O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
  if (w->bin_fd < 0)
    return ota_set_error_from_errno (error, errno, "cannot create %s", w->bin_name);
  if (!ota_writer_note_own_change (w, error) || !ota_writer_sync_dir (w, error))
    return FALSE;
  ota_writer_open_direct (w);
  return TRUE;
}

/* Keeps the first @keep bytes: the checkpointed size, or less if the image is
 * shorter. The verifier re-hashes them. */
static gboolean
ota_writer_resume (OtaWriter *w, guint64 recorded, GError **error)
{
  guint64 keep = MIN (recorded, (guint64) w->own.st_size);

  if (ftruncate (w->bin_fd, (off_t) keep) < 0)
    return ota_set_error_from_errno (error, errno, "cannot truncate %s", w->bin_name);
  if (!ota_writer_note_own_change (w, error))
    return FALSE;
  if (keep != recorded && !ota_writer_save_record (w, keep, error))
    return FALSE;
  w->written = w->synced = keep;
  w->synced_at = g_get_monotonic_time ();
  return TRUE;
}

static gboolean
ota_writer_prepare (OtaWriter *w, GError **error)
{
  guint64 recorded = 0;
  gboolean resume;

  /* Cancelled before it began: leave the files to whoever comes next. */
  if (g_atomic_int_get (&w->link->stop)) {
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
    return FALSE;
  }
  if (!ota_writer_check_offer (w, error) || !ota_writer_check_name_owner (w, error))
    return FALSE;
  ota_writer_remove_stale (w);
  resume = ota_writer_find_record (w, &recorded);
  if (!ota_writer_check_space (w, error) || !ota_writer_open_image (w, resume, error))
    return FALSE;
  if (resume) {
    g_info ("resuming %s at byte %" G_GUINT64_FORMAT, w->bin_name, recorded);
    return ota_writer_resume (w, recorded, error);
  }
  return ota_writer_restart (w, error);
}

static gboolean
ota_writer_discard (OtaWriter *w, GError **error)
{
  if (unlinkat (w->dir_fd, w->bin_name, 0) < 0 && errno != ENOENT)
    return ota_set_error_from_errno (error, errno, "cannot delete %s", w->bin_name);
  if (unlinkat (w->dir_fd, w->record_name, 0) < 0 && errno != ENOENT)
    return ota_set_error_from_errno (error, errno, "cannot delete %s", w->record_name);
  return ota_writer_sync_dir (w, error);
}

/* The bytes must be the ones the device maker signed, whatever MD5 the
 * offer named. */
static gboolean
ota_writer_check_sha256 (OtaWriter *w, OtaJob *job)
{
  char sha256[OTA_SHA256_HEX_LENGTH + 1];

  if (w->sha256 == NULL)
    return TRUE;
  ota_digest_get_sha256 (w->digest, sha256);
  if (strcmp (sha256, w->sha256) == 0)
    return TRUE;
  job->code = OTA_RESULT_MD5_MISMATCH;
  job->fail_kind = OTA_FAIL_KIND_CHECKSUM;
  job->message = g_strdup_printf ("sha256 mismatch: the image is not the signed one (signed %s, got %s)",
                                  w->sha256, sha256);
  return FALSE;
}

/* Every byte is written: the image is complete, durable and untouched. */
static gboolean
ota_writer_finish (OtaWriter *w, GError **error)
{
  if (w->written != w->record.file_size) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "size mismatch: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes", w->written,
                 w->record.file_size);
    return FALSE;
  }
  if (!ota_writer_check_untouched (w, error))
    return FALSE;
  /* The image must be durable before the record that says "unfinished" goes. */
  if (fdatasync (w->bin_fd) < 0)
    return ota_set_error_from_errno (error, errno, "cannot sync %s", w->bin_name);
  return TRUE;
}

static gboolean
ota_writer_do (OtaWriter *w, OtaJob *job, GError **error)
{
  switch (job->kind) {
  case OTA_JOB_PREPARE:
    return ota_writer_prepare (w, error);
  case OTA_JOB_WRITE:
    return ota_writer_write (w, job, error);
  case OTA_JOB_RESTART:
    return ota_writer_restart (w, error);
  case OTA_JOB_CHECKPOINT:
    return ota_writer_checkpoint (w, error);
  case OTA_JOB_VERIFY:
    /* Cancelled at the last moment: keep the files resumable instead. */
    if (g_atomic_int_get (&w->link->stop))
      return ota_writer_checkpoint (w, error);
    return ota_writer_finish (w, error);
  case OTA_JOB_DISCARD:
    return ota_writer_discard (w, error);
  case OTA_JOB_QUIT:
  default:
    return TRUE;
  }
}

/* What a writer failure is, for the module's fail_kind: from the job that
 * failed and the error's code, never from its text. */
static OtaFailKind
ota_writer_fail_kind (OtaJobKind kind, const GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE))
    return OTA_FAIL_KIND_NO_SPACE;
  /* The image on disk is not what the agent wrote: a write that did not hold. */
  if (g_error_matches (error, OTA_IMAGE_ERROR, OTA_IMAGE_ERROR_TAMPERED))
    return OTA_FAIL_KIND_WRITE;
  /* Another module's partial download holds the file name. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_EXISTS))
    return OTA_FAIL_KIND_REFUSED;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE))
    return OTA_FAIL_KIND_SIZE;
  /* An offer the writer refuses to turn into file names. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT))
    return OTA_FAIL_KIND_OTHER;
  switch (kind) {
  case OTA_JOB_PREPARE:
    return OTA_FAIL_KIND_OPEN;
  case OTA_JOB_VERIFY:
    return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA) ? OTA_FAIL_KIND_SIZE : OTA_FAIL_KIND_WRITE;
  case OTA_JOB_WRITE:
  case OTA_JOB_RESTART:
  case OTA_JOB_CHECKPOINT:
    return OTA_FAIL_KIND_WRITE;
  case OTA_JOB_DISCARD:
  case OTA_JOB_QUIT:
  default:
    return OTA_FAIL_KIND_OTHER;
  }
}

/* The writer's first failure: the files are left alone after it. */
static void
ota_writer_fail (OtaWriter *w, OtaJob *job, GError *error)
{
  if (g_error_matches (error, OTA_IMAGE_ERROR, OTA_IMAGE_ERROR_TAMPERED))
    g_atomic_int_set (&w->tampered, TRUE);
  w->error = g_error_copy (error);
  w->fail_kind = ota_writer_fail_kind (job->kind, error);
  job->fail_kind = w->fail_kind;
  job->error = error;
}

static void
ota_writer_run (OtaWriter *w, OtaJob *job)
{
  g_autoptr(GError) error = NULL;

  /* After a failure, or once someone else changed the image, the files are
   * left as they are; jobs still go on. */
  if (w->error == NULL && !g_atomic_int_get (&w->tampered) && !ota_writer_do (w, job, &error))
    ota_writer_fail (w, job, g_steal_pointer (&error));
  job->offset = w->written;
  /* A failure before the first byte leaves no empty image behind. */
  if (job->final && job->kind == OTA_JOB_CHECKPOINT && job->code != OTA_RESULT_OK &&
      w->error == NULL && !g_atomic_int_get (&w->tampered) && w->written == 0 && w->bin_fd >= 0)
    ota_writer_discard (w, NULL);
  if (job->final && w->error != NULL && job->code == OTA_RESULT_OK) {
    job->code = OTA_RESULT_FAILED;
    job->fail_kind = w->fail_kind;
    g_free (job->message);
    job->message = g_strdup (w->error->message);
  }
}

/* The buffer goes straight back to the network side: the bytes are read
 * back from the file, not from it. */
static void
ota_writer_give_back (OtaWriter *w, OtaJob *job)
{
  OtaJob *spent = ota_job_new (OTA_JOB_BUFFER);

  spent->data = g_steal_pointer (&job->data);
  ota_link_post (w->link, w->context, spent);
}

static gpointer
ota_writer_thread (gpointer data)
{
  OtaWriter *w = data;
  gboolean quit = FALSE;

  ota_writer_wait_turn (w);
  while (!quit) {
    OtaJob *job = g_async_queue_pop (w->jobs);

    quit = job->kind == OTA_JOB_QUIT;
    if (!quit)
      ota_writer_run (w, job);
    if (job->kind == OTA_JOB_WRITE) {
      ota_writer_give_back (w, job);
      ota_writer_pass_to_read_back (w);
    }
    /* The reader's now; after QUIT, so is everything else. */
    g_async_queue_push (w->read_jobs, job);
  }
  return NULL;
}

/* ---- the reader: every written byte read back from the file, in order ---- */

/* A free read buffer; with all of them at the verifier, the next one it is
 * done with. */
static guint8 *
ota_reader_take_buffer (OtaWriter *w)
{
  guint8 *buf = g_async_queue_try_pop (w->read_bufs);

  if (buf != NULL)
    return buf;
  if (w->n_read_bufs < OTA_READ_BUFFERS) {
    w->n_read_bufs++;
    return g_aligned_alloc (1, OTA_READ_BUFFER_SIZE, OTA_DIRECT_ALIGN);
  }
  return g_async_queue_pop (w->read_bufs);
}

/* After a failed read nothing more is read: the verifier fails the download
 * with it. */
static void
ota_reader_run (OtaWriter *w, OtaJob *job)
{
  if (job->kind != OTA_JOB_WRITE || !job->on_disk || w->read_failed ||
      g_atomic_int_get (&w->link->stop))
    return;
  job->back = ota_reader_take_buffer (w);
  w->read_failed = !ota_reader_read_range (w, job, &job->read_error);
}

static gpointer
ota_reader_thread (gpointer data)
{
  OtaWriter *w = data;
  gboolean quit = FALSE;

  while (!quit) {
    OtaJob *job = g_async_queue_pop (w->read_jobs);

    quit = job->kind == OTA_JOB_QUIT;
    ota_reader_run (w, job);
    g_async_queue_push (w->verify_jobs, job);
  }
  return NULL;
}

/* ---- the verifier: MD5 of the image as read back, in order ---- */

/* Hashes @length bytes of the image from @start. Stops when the download is
 * cancelled. */
static gboolean
ota_verifier_hash_range (OtaWriter *w, guint64 start, guint64 length, GError **error)
{
  guint64 offset = 0;

  if (w->read_buf == NULL)
    w->read_buf = g_malloc (OTA_CHUNK_SIZE);
  while (offset < length) {
    gsize want = (gsize) MIN (OTA_CHUNK_SIZE, length - offset);
    gssize n;

    if (g_atomic_int_get (&w->link->stop)) {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
      return FALSE;
    }
    n = ota_pread_all (w->bin_fd, w->read_buf, want, (off_t) (start + offset), FALSE);
    if (n < 0)
      return ota_set_error_from_errno (error, errno, "cannot read back %s", w->bin_name);
    if ((gsize) n < want)
      return ota_set_tampered (error, w, "shrank");
    ota_digest_update (w->digest, w->read_buf, want);
    offset += want;
  }
  return TRUE;
}

/* The kept prefix of a resumed image, from the storage rather than the page
 * cache where possible. */
static gboolean
ota_verifier_hash_prefix (OtaWriter *w, guint64 length, GError **error)
{
  ota_digest_reset (w->digest);
  if (length == 0)
    return TRUE;
  posix_fadvise (w->bin_fd, 0, (off_t) length, POSIX_FADV_DONTNEED);
  /* SHA-256 too: no new byte comes before this job's reply. */
  return ota_verifier_hash_range (w, 0, length, error);
}

/* The buffer's bytes as the reader read them back, into MD5 and, for a signed
 * image, SHA-256. A RESTART cuts the file only once every earlier buffer was
 * read back and hashed, and resets both digests after them. */
static gboolean
ota_verifier_hash_write (OtaWriter *w, OtaJob *job, GError **error)
{
  if (job->read_error != NULL) {
    g_propagate_error (error, g_steal_pointer (&job->read_error));
    return FALSE;
  }
  if (job->back != NULL && !g_atomic_int_get (&w->link->stop))
    ota_digest_update (w->digest, job->back + job->back_skew, job->length);
  return TRUE;
}

/* Given to the app, as an agent before this one created it. */
static gboolean
ota_verifier_hand_over (OtaWriter *w, GError **error)
{
  if (w->owner_uid != (uid_t) -1 && geteuid () == 0 &&
      fchown (w->bin_fd, w->owner_uid, w->owner_gid) < 0)
    return ota_set_error_from_errno (error, errno, "cannot change the owner of %s", w->bin_name);
  if (fchmod (w->bin_fd, 0644) < 0)
    return ota_set_error_from_errno (error, errno, "cannot change the mode of %s", w->bin_name);
  return TRUE;
}

/* A hole was punched into the image (or a file system stores zeros so):
 * what counts is the content, read again in full. */
static gboolean
ota_verifier_check_holes (OtaWriter *w, GError **error)
{
  char md5[OTA_MD5_HEX_LENGTH + 1];
  off_t hole = lseek (w->bin_fd, 0, SEEK_HOLE);

  if (hole < 0 || (guint64) hole >= w->record.file_size)
    return TRUE;
  g_message ("%s has a hole at byte %" PRIdMAX ": reading it again in full", w->bin_name,
             (intmax_t) hole);
  ota_digest_reset (w->digest);
  if (!ota_verifier_hash_range (w, 0, w->record.file_size, error))
    return FALSE;
  ota_digest_get_md5 (w->digest, md5);
  if (strcmp (md5, w->record.md5sum) != 0)
    return ota_set_tampered (error, w, "got a hole of zeros");
  return TRUE;
}

static gboolean
ota_verifier_verify (OtaWriter *w, OtaJob *job, GError **error)
{
  ota_digest_get_md5 (w->digest, job->md5);
  if (strcmp (job->md5, w->record.md5sum) != 0) {
    job->code = OTA_RESULT_MD5_MISMATCH;
    job->fail_kind = OTA_FAIL_KIND_CHECKSUM;
    job->message = g_strdup_printf ("md5 mismatch: expected %s, the image written has %s",
                                    w->record.md5sum, job->md5);
    return ota_writer_discard (w, error);
  }
  /* Fed by the writer, which is done: this is the last job before QUIT. */
  if (!ota_writer_check_sha256 (w, job))
    return ota_writer_discard (w, error);
  /* The last look, now that every byte was read back: nobody changed the file
   * since the writer's own last look, and it has no hole. */
  if (!ota_writer_check_untouched (w, error) || !ota_verifier_check_holes (w, error) ||
      !ota_verifier_hand_over (w, error))
    return FALSE;
  if (unlinkat (w->dir_fd, w->record_name, 0) < 0 && errno != ENOENT)
    return ota_set_error_from_errno (error, errno, "cannot delete %s", w->record_name);
  /* Durable before FirmwareReady: the app may start burning at once. */
  if (!ota_writer_sync_dir (w, error))
    return FALSE;
  job->code = OTA_RESULT_OK;
  return TRUE;
}

static gboolean
ota_verifier_do (OtaWriter *w, OtaJob *job, GError **error)
{
  switch (job->kind) {
  case OTA_JOB_PREPARE:
    return ota_verifier_hash_prefix (w, job->offset, error);
  case OTA_JOB_WRITE:
    return ota_verifier_hash_write (w, job, error);
  case OTA_JOB_RESTART:
    ota_digest_reset (w->digest);
    return TRUE;
  case OTA_JOB_VERIFY:
    if (g_atomic_int_get (&w->link->stop) || job->code != OTA_RESULT_OK)
      return TRUE;
    return ota_verifier_verify (w, job, error);
  default:
    return TRUE;
  }
}

/* Deletes the image when someone else changed it, but only under a name that
 * is still the image's: a file put there by the app is the app's. */
static void
ota_verifier_discard_tampered (OtaWriter *w)
{
  struct stat st, named;

  if (w->bin_fd >= 0 && fstat (w->bin_fd, &st) == 0 &&
      fstatat (w->dir_fd, w->bin_name, &named, AT_SYMLINK_NOFOLLOW) == 0 && named.st_dev == st.st_dev &&
      named.st_ino == st.st_ino)
    unlinkat (w->dir_fd, w->bin_name, 0);
  unlinkat (w->dir_fd, w->record_name, 0);
  ota_writer_sync_dir (w, NULL);
}

static void
ota_verifier_run (OtaWriter *w, OtaJob *job)
{
  g_autoptr(GError) error = NULL;

  w->writer_failed |= job->error != NULL;
  if (!w->writer_failed && w->verify_error == NULL && !ota_verifier_do (w, job, &error)) {
    if (g_error_matches (error, OTA_IMAGE_ERROR, OTA_IMAGE_ERROR_TAMPERED))
      g_atomic_int_set (&w->tampered, TRUE);
    w->verify_error = g_error_copy (error);
    w->verify_fail_kind = ota_writer_fail_kind (job->kind, error);
    job->fail_kind = w->verify_fail_kind;
    job->error = g_steal_pointer (&error);
  }
  if (!job->final)
    return;
  if (w->verify_error != NULL && job->code == OTA_RESULT_OK) {
    job->code = OTA_RESULT_FAILED;
    job->fail_kind = w->verify_fail_kind;
    g_free (job->message);
    job->message = g_strdup (w->verify_error->message);
  }
  if (g_atomic_int_get (&w->tampered)) {
    g_warning ("%s", job->message);
    ota_verifier_discard_tampered (w);
  }
}

static gpointer
ota_verifier_thread (gpointer data)
{
  OtaWriter *w = data;
  GMainContext *context;

  for (;;) {
    OtaJob *job = g_async_queue_pop (w->verify_jobs);

    if (job->kind == OTA_JOB_QUIT) {
      ota_job_free (job);
      break;
    }
    ota_verifier_run (w, job);
    /* The reader may be waiting for it, the writer for room. */
    if (job->back != NULL)
      g_async_queue_push (w->read_bufs, g_steal_pointer (&job->back));
    if (job->kind == OTA_JOB_WRITE)
      ota_verifier_done_with_write (w);
    ota_link_post (w->link, w->context, job);
  }
  /* The writer never started: its creator still owns everything. */
  if (w->writer_thread == NULL)
    return NULL;
  /* QUIT was their last job: they are ending, if not gone. */
  g_thread_join (g_steal_pointer (&w->writer_thread));
  g_thread_join (g_steal_pointer (&w->reader_thread));
  if (w->bin_fd >= 0) {
    close (w->bin_fd);
    w->bin_fd = -1;
  }
  ota_writer_leave_line (w);
  context = g_main_context_ref (w->context);
  ota_writer_free (w);
  /* Everything is on disk and closed, the writer joined: a waiting shutdown may go on. */
  g_atomic_int_dec_and_test (&ota_workers_running);
  g_main_context_wakeup (context);
  g_main_context_unref (context);
  return NULL;
}

/* ---- buffers (creator's context) ---- */

static OtaJob *
ota_download_take_buffer (OtaDownload *self)
{
  OtaJob *job;
  guint8 *data;

  if (self->n_pool > 0) {
    data = self->pool[--self->n_pool];
  } else if (self->n_buffers == OTA_POOL_SIZE) {
    return NULL;
  } else {
    /* Allocated on demand: a link slower than the disk never needs more than
     * one or two. Aligned: the writer writes them past the page cache. */
    self->n_buffers++;
    data = g_aligned_alloc (1, OTA_CHUNK_SIZE, OTA_DIRECT_ALIGN);
  }
  job = ota_job_new (OTA_JOB_WRITE);
  job->data = data;
  return job;
}

static gboolean
ota_download_is_over (OtaDownload *self)
{
  return self->state == OTA_DOWNLOAD_DONE || self->state == OTA_DOWNLOAD_CANCELLED;
}

static void
ota_download_recycle (OtaDownload *self, guint8 *data)
{
  if (ota_download_is_over (self) || self->n_pool == OTA_POOL_SIZE) {
    self->n_buffers--;
    g_aligned_free (data);
    return;
  }
  self->pool[self->n_pool++] = data;
}

static void
ota_download_free_pool (OtaDownload *self)
{
  while (self->n_pool > 0) {
    g_aligned_free (self->pool[--self->n_pool]);
    self->n_buffers--;
  }
}

static void
ota_download_push (OtaDownload *self, OtaJob *job)
{
  if (!self->worker_running) {
    /* No threads (they could not start): final jobs come back unexecuted. */
    if (job->final) {
      ota_link_post (self->link, self->context, job);
      return;
    }
    if (job->kind == OTA_JOB_WRITE)
      ota_download_recycle (self, g_steal_pointer (&job->data));
    ota_job_free (job);
    return;
  }
  g_async_queue_push (self->jobs, job);
}

static void
ota_download_push_kind (OtaDownload *self, OtaJobKind kind)
{
  ota_download_push (self, ota_job_new (kind));
}

/* Hands the partly filled buffer to the pipeline. */
static void
ota_download_flush (OtaDownload *self)
{
  OtaJob *job = self->filling;

  if (job == NULL || job->length == 0)
    return;
  self->filling = NULL;
  self->filling_since = 0;
  job->generation = self->generation;
  ota_download_push (self, job);
}

/* Hands the filled buffer over up to the image's last whole block when more
 * is to come, so that the writer can write it past the page cache; the rest
 * starts the next buffer. With no buffer free, or nothing whole, all of it
 * goes: the writer writes any piece, only slower. */
static void
ota_download_hand_over (OtaDownload *self)
{
  OtaJob *job = self->filling;
  gsize tail = (gsize) (self->received % OTA_DIRECT_ALIGN);
  OtaJob *next;

  if (self->received == self->file_size || tail == 0 || tail >= job->length ||
      (next = ota_download_take_buffer (self)) == NULL) {
    ota_download_flush (self);
    return;
  }
  job->length -= tail;
  memcpy (next->data, job->data + job->length, tail);
  next->length = tail;
  ota_download_flush (self);
  self->filling = next;
  self->filling_since = g_get_monotonic_time ();
}

/* The verifier first, then the reader: the verifier joins the writer and the
 * reader after the last job. The threads own their state and outlive the
 * download if they must; the verifier is never joined. */
static gboolean
ota_download_start_threads (OtaDownload *self, GError **error)
{
  OtaWriter *w = self->writer;
  GThread *verifier = g_thread_try_new ("ota-verify", ota_verifier_thread, w, error);
  GThread *reader;

  if (verifier == NULL)
    return FALSE;
  reader = g_thread_try_new ("ota-read", ota_reader_thread, w, error);
  if (reader != NULL)
    w->writer_thread = g_thread_try_new ("ota-write", ota_writer_thread, w, error);
  if (w->writer_thread == NULL) {
    /* Each ends at QUIT, and the verifier leaves @w to us. */
    if (reader != NULL) {
      g_async_queue_push (w->read_jobs, ota_job_new (OTA_JOB_QUIT));
      g_thread_join (reader);
    } else {
      g_async_queue_push (w->verify_jobs, ota_job_new (OTA_JOB_QUIT));
    }
    g_thread_join (verifier);
    return FALSE;
  }
  w->reader_thread = reader;
  g_thread_unref (verifier);
  self->writer = NULL;
  self->worker_running = TRUE;
  return TRUE;
}

static void
ota_download_stop_worker (OtaDownload *self)
{
  if (!self->worker_running)
    return;
  g_async_queue_push (self->jobs, ota_job_new (OTA_JOB_QUIT));
  self->worker_running = FALSE;
}

/* Cancelled or dropped: what was received is written, checkpointed, kept. */
static void
ota_download_stop_writing (OtaDownload *self)
{
  ota_download_flush (self);
  ota_download_push_kind (self, OTA_JOB_CHECKPOINT);
  ota_download_stop_worker (self);
}

/* ---- the transfer (creator's context) ---- */

/* Starts the window over: what came before is not compared with what follows. */
static void
ota_download_reset_window (OtaDownload *self)
{
  self->n_samples = 1;
  self->sample_head = 0;
  self->samples[0].at = self->stall_clock;
  self->samples[0].received = self->received;
}

static void
ota_download_add_sample (OtaDownload *self)
{
  gint64 slice = (gint64) self->stall_timeout * G_USEC_PER_SEC / OTA_STALL_SLICES;

  if (self->stall_clock - self->samples[self->sample_head].at < slice)
    return;
  self->sample_head = (self->sample_head + 1) % OTA_STALL_SAMPLES;
  self->samples[self->sample_head].at = self->stall_clock;
  self->samples[self->sample_head].received = self->received;
  self->n_samples = MIN (self->n_samples + 1, OTA_STALL_SAMPLES);
}

/* TRUE, with the bytes received over the last stall_timeout, once the
 * attempt has run that long on the stall clock. */
static gboolean
ota_download_window_bytes (OtaDownload *self, guint64 *bytes)
{
  gint64 since = self->stall_clock - (gint64) self->stall_timeout * G_USEC_PER_SEC;

  for (guint i = 0; i < self->n_samples; i++) {
    const OtaStallSample *sample =
        &self->samples[(self->sample_head + OTA_STALL_SAMPLES - i) % OTA_STALL_SAMPLES];

    if (sample->at <= since) {
      *bytes = self->received - MIN (sample->received, self->received);
      return TRUE;
    }
  }
  return FALSE;
}

/* Silence, or a drip under min_download_rate, over stall_timeout. */
static gboolean
ota_download_is_stalled (OtaDownload *self)
{
  guint64 need = MAX (self->min_rate * self->stall_timeout, 1);
  guint64 bytes = 0;

  if (self->stall_timeout == 0 || !ota_download_window_bytes (self, &bytes) || bytes >= need)
    return FALSE;
  g_free (self->stall_reason);
  if (bytes == 0)
    self->stall_reason = g_strdup_printf ("no data received for %u s", self->stall_timeout);
  else
    self->stall_reason = g_strdup_printf ("%" G_GUINT64_FORMAT " bytes in %u s, under "
                                          "min_download_rate %" G_GUINT64_FORMAT " bytes/s",
                                          bytes, self->stall_timeout, self->min_rate);
  return TRUE;
}

static void
ota_download_schedule_tick (OtaDownload *self)
{
  if (self->stall_source != NULL)
    g_source_set_ready_time (self->stall_source, self->last_tick + self->tick_usec);
}

/* A new attempt: the stall clock starts a window and ticks. */
static void
ota_download_arm_stall (OtaDownload *self)
{
  self->last_tick = g_get_monotonic_time ();
  ota_download_reset_window (self);
  ota_download_schedule_tick (self);
}

static void
ota_download_pause_stall (OtaDownload *self)
{
  if (self->stall_source != NULL)
    g_source_set_ready_time (self->stall_source, -1);
}

/* Waiting for the network: for response headers, or for a read to complete. */
static gboolean
ota_download_is_waiting_for_network (OtaDownload *self)
{
  return self->state == OTA_DOWNLOAD_REQUESTING ||
         (self->state == OTA_DOWNLOAD_RECEIVING && self->reading);
}

static gboolean
ota_download_stall_cb (gpointer user_data)
{
  OtaDownload *self = user_data;
  gint64 now = g_get_monotonic_time ();
  /* Longer than two ticks between ticks: this process did not run (stopped,
   * frozen, starved). Whatever the network sent meanwhile waits in the socket. */
  gint64 elapsed = MIN (now - self->last_tick, 2 * self->tick_usec);

  self->last_tick = now;
  if (self->cancellable == NULL ||
      (self->state != OTA_DOWNLOAD_REQUESTING && self->state != OTA_DOWNLOAD_RECEIVING))
    return G_SOURCE_CONTINUE;
  if (ota_download_is_waiting_for_network (self)) {
    self->stall_clock += elapsed;
    ota_download_add_sample (self);
    if (ota_download_is_stalled (self)) {
      self->stalled = TRUE;
      g_cancellable_cancel (self->cancellable);
      return G_SOURCE_CONTINUE;
    }
  }
  ota_download_schedule_tick (self);
  return G_SOURCE_CONTINUE;
}

static gboolean
ota_stall_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

static GSourceFuncs ota_stall_source_funcs = {
  .dispatch = ota_stall_source_dispatch,
};

/* One source for the whole download, armed for each attempt. */
static void
ota_download_create_stall_source (OtaDownload *self)
{
  self->tick_usec = CLAMP ((gint64) self->stall_timeout * G_USEC_PER_SEC / OTA_STALL_SLICES,
                           OTA_TICK_MIN_USEC, OTA_TICK_MAX_USEC);
  self->stall_source = g_source_new (&ota_stall_source_funcs, sizeof (GSource));
  g_source_set_callback (self->stall_source, ota_download_stall_cb, self, NULL);
  g_source_set_static_name (self->stall_source, "[iv-ota] download stall");
  g_source_attach (self->stall_source, self->context);
}

static void
ota_download_destroy_source (GSource **source)
{
  if (*source == NULL)
    return;
  g_source_destroy (*source);
  g_clear_pointer (source, g_source_unref);
}

/* Drops the request in flight, if any; a pending callback still runs and sees the new state. */
static void
ota_download_end_attempt (OtaDownload *self)
{
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->stream);
  g_clear_object (&self->msg);
  self->waiting_for_buffer = FALSE;
  ota_download_pause_stall (self);
  ota_download_destroy_source (&self->backoff_source);
  ota_download_destroy_source (&self->throttle_source);
}

/* Queues the job whose reply ends the download; "finished" is emitted then,
 * once the writer is done with the files, so that a new download of the same
 * module never races with this one's last writes. */
static void
ota_download_conclude (OtaDownload *self, OtaJobKind kind, int code, OtaFailKind fail_kind, const char *message)
{
  OtaJob *job = ota_job_new (kind);

  ota_download_end_attempt (self);
  if (!self->reading)
    ota_download_flush (self);
  self->state = OTA_DOWNLOAD_FINISHING;
  job->final = TRUE;
  job->code = code;
  job->fail_kind = fail_kind;
  job->message = g_strdup (message);
  ota_download_push (self, job);
  ota_download_stop_worker (self);
}

static void
ota_download_fail_as (OtaDownload *self, int code, OtaFailKind fail_kind, const char *message)
{
  ota_download_conclude (self, OTA_JOB_CHECKPOINT, code, fail_kind, message);
}

/* A failure of the transfer: -5 there is a network or HTTP failure. */
static void
ota_download_fail (OtaDownload *self, int code, const char *message)
{
  OtaFailKind kind = code == OTA_RESULT_FAILED ? OTA_FAIL_KIND_HTTP : ota_fail_kind_from_result_code (code);

  ota_download_fail_as (self, code, kind, message);
}

static void
ota_download_emit_verifying (OtaDownload *self)
{
  if (self->verifying && !self->verifying_emitted && self->downloaded == self->file_size) {
    self->verifying_emitted = TRUE;
    g_signal_emit (self, signals[SIGNAL_VERIFYING], 0);
  }
}

static void
ota_download_verify (OtaDownload *self)
{
  self->verifying = TRUE;
  ota_download_conclude (self, OTA_JOB_VERIFY, OTA_RESULT_OK, OTA_FAIL_KIND_NONE, NULL);
  ota_download_emit_verifying (self);
}

static guint
ota_backoff_delay_ms (guint attempt)
{
  return (guint) MIN (ota_jitter (ota_backoff_delay (attempt, OTA_BACKOFF_BASE_MS, OTA_BACKOFF_MAX_MS)),
                      OTA_BACKOFF_MAX_MS);
}

static void ota_download_send (OtaDownload *self);

static gboolean
ota_download_backoff_cb (gpointer user_data)
{
  OtaDownload *self = user_data;

  g_clear_pointer (&self->backoff_source, g_source_unref);
  ota_download_send (self);
  return G_SOURCE_REMOVE;
}

/* An attempt that brought enough does not count against max_retries; one
 * that ended in a stall always does, so that a drip still ends. */
static gboolean
ota_download_attempt_progressed (OtaDownload *self, gboolean stalled)
{
  return !stalled && self->received >= self->attempt_start + self->progress_bytes;
}

static guint
ota_download_retry_delay_ms (OtaDownload *self)
{
  guint delay = ota_backoff_delay_ms (self->retries);

  /* The server said when: not earlier (and not later than our bound, applied when parsed). */
  if (self->retry_after >= 0)
    delay = MAX (delay, (guint) self->retry_after * 1000);
  self->retry_after = -1;
  return delay;
}

/* A transient failure: resume at the current offset after a backoff, or give up. */
static void
ota_download_retry (OtaDownload *self, gboolean timeout, const char *reason)
{
  gboolean progressed = ota_download_attempt_progressed (self, self->stalled);
  guint delay;

  ota_download_end_attempt (self);
  if (progressed) {
    self->retries = 0;
  } else if (self->retries >= self->max_retries) {
    g_autofree char *msg = g_strdup_printf ("giving up after %u attempts in a row without progress: %s",
                                            self->retries + 1, reason);
    ota_download_fail (self, timeout ? OTA_RESULT_TIMEOUT : OTA_RESULT_FAILED, msg);
    return;
  } else {
    self->retries++;
  }
  delay = ota_download_retry_delay_ms (self);
  g_message ("download of %s interrupted at byte %" G_GUINT64_FORMAT " (%s): retry in %u ms "
             "(%u/%u attempts without progress)",
             self->path, self->received, reason, delay, self->retries, self->max_retries);
  /* What this attempt brought survives even if the next one never comes. */
  ota_download_push_kind (self, OTA_JOB_CHECKPOINT);
  self->state = OTA_DOWNLOAD_BACKOFF;
  self->backoff_source = g_timeout_source_new (delay);
  g_source_set_callback (self->backoff_source, ota_download_backoff_cb, self, NULL);
  g_source_set_static_name (self->backoff_source, "[iv-ota] download backoff");
  g_source_attach (self->backoff_source, self->context);
}

static void
ota_download_network_error (OtaDownload *self, const GError *error)
{
  g_autofree char *reason = NULL;

  if (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE)) {
    /* Retrying cannot make a certificate valid. */
    reason = g_strdup_printf ("TLS certificate rejected: %s", error->message);
    ota_download_fail (self, OTA_RESULT_FAILED, reason);
    return;
  }
  if (self->stalled) {
    reason = g_strdup (self->stall_reason != NULL ? self->stall_reason : "stalled");
    ota_download_retry (self, TRUE, reason);
    return;
  }
  ota_download_retry (self, g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT),
                      error->message);
}

/* The server sent the whole file: drop what we had and take this body. */
static void
ota_download_restart (OtaDownload *self)
{
  if (self->received == 0)
    return;
  g_message ("server ignored the range request: downloading %s from the start", self->path);
  self->generation++;
  self->received = self->downloaded = self->resumed_from = self->attempt_start = 0;
  ota_download_reset_window (self);
  ota_download_push_kind (self, OTA_JOB_RESTART);
}

static void ota_download_read_next (OtaDownload *self);

static void
ota_download_end_of_body (OtaDownload *self)
{
  g_autofree char *reason = NULL;

  if (self->received == self->file_size) {
    ota_download_end_attempt (self);
    ota_download_verify (self);
    return;
  }
  reason = g_strdup_printf ("body ended at byte %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT,
                            self->received, self->file_size);
  ota_download_retry (self, FALSE, reason);
}

/* More than the offered size: the server's file is not the offered image. */
static void
ota_download_too_long (OtaDownload *self, guint64 size)
{
  g_autofree char *msg = NULL;

  msg = g_strdup_printf ("size mismatch: the server sends more than %" G_GUINT64_FORMAT
                         " bytes (%" G_GUINT64_FORMAT ")",
                         self->file_size, size);
  ota_download_conclude (self, OTA_JOB_DISCARD, OTA_RESULT_MD5_MISMATCH, OTA_FAIL_KIND_SIZE, msg);
}

static void
ota_download_read_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(OtaDownload) self = user_data;
  g_autoptr(GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);
  gint64 now;

  self->reading = FALSE;
  if (self->state == OTA_DOWNLOAD_CANCELLED)
    ota_download_stop_writing (self); /* cancel() waited for this buffer */
  if (self->state != OTA_DOWNLOAD_RECEIVING)
    return;
  if (n <= 0) {
    ota_download_flush (self);
    if (n < 0)
      ota_download_network_error (self, error);
    else
      ota_download_end_of_body (self);
    return;
  }
  if ((guint64) n > self->file_size - self->received) {
    ota_download_too_long (self, self->received + (guint64) n);
    return;
  }
  self->received += (guint64) n;
  self->rate_bytes += (guint64) n;
  self->filling->length += (gsize) n;
  now = g_get_monotonic_time ();
  if (self->filling_since == 0)
    self->filling_since = now;
  if (OTA_CHUNK_SIZE - self->filling->length < OTA_MIN_READ ||
      self->received == self->file_size || now - self->filling_since >= OTA_HANDOVER_USEC)
    ota_download_hand_over (self);
  ota_download_read_next (self);
}

static gboolean
ota_download_throttle_cb (gpointer user_data)
{
  OtaDownload *self = user_data;

  g_clear_pointer (&self->throttle_source, g_source_unref);
  if (self->state == OTA_DOWNLOAD_RECEIVING)
    ota_download_read_next (self);
  return G_SOURCE_REMOVE;
}

/* max_download_rate: the bytes read since rate_start follow a schedule; TRUE
 * when the next read must wait for it (a timer reads then). Not reading, the
 * socket's buffer fills up and TCP slows the sender down: the link itself
 * carries no more than the rate. */
static gboolean
ota_download_throttle (OtaDownload *self)
{
  gint64 now, due;

  if (self->max_rate == 0)
    return FALSE;
  now = g_get_monotonic_time ();
  due = self->rate_start + (gint64) ((double) self->rate_bytes * G_USEC_PER_SEC / (double) self->max_rate);
  if (due < now - OTA_RATE_BURST_USEC) {
    /* Behind the schedule (a slower link, a new attempt): no credit beyond one burst. */
    self->rate_start = now - OTA_RATE_BURST_USEC;
    self->rate_bytes = 0;
    return FALSE;
  }
  if (due <= now)
    return FALSE;
  self->throttle_source = g_timeout_source_new ((guint) ((due - now + 999) / 1000));
  g_source_set_callback (self->throttle_source, ota_download_throttle_cb, self, NULL);
  g_source_set_static_name (self->throttle_source, "[iv-ota] download rate");
  g_source_attach (self->throttle_source, self->context);
  return TRUE;
}

static void
ota_download_read_next (OtaDownload *self)
{
  gsize room;

  if (self->filling == NULL && (self->filling = ota_download_take_buffer (self)) == NULL) {
    /* Backpressure: every buffer is in the pipeline. The disk is not a stalled
     * network: not reading, the stall clock stands still. */
    self->waiting_for_buffer = TRUE;
    return;
  }
  if (ota_download_throttle (self))
    return;
  room = OTA_CHUNK_SIZE - self->filling->length;
  /* Under a rate cap, small reads keep the pace even. */
  if (self->max_rate > 0)
    room = MIN (room, MAX (self->max_rate / OTA_RATE_READS_PER_SEC, 1024));
  self->reading = TRUE;
  g_input_stream_read_async (self->stream, self->filling->data + self->filling->length, room,
                             G_PRIORITY_DEFAULT, self->cancellable, ota_download_read_cb,
                             g_object_ref (self));
}

static gboolean
ota_download_check_encoding (OtaDownload *self, SoupMessageHeaders *headers)
{
  const char *encoding = soup_message_headers_get_one (headers, "Content-Encoding");
  g_autofree char *msg = NULL;

  /* We never ask for it, and a compressed image would fail its MD5 anyway. */
  if (encoding == NULL || g_ascii_strcasecmp (encoding, "identity") == 0)
    return TRUE;
  msg = g_strdup_printf ("the server sent an encoded body (Content-Encoding: %s)", encoding);
  ota_download_fail (self, OTA_RESULT_FAILED, msg);
  return FALSE;
}

static void
ota_download_receive_full (OtaDownload *self, SoupMessageHeaders *headers)
{
  goffset length = soup_message_headers_get_content_length (headers);

  if (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CONTENT_LENGTH &&
      (guint64) length != self->file_size) {
    g_autofree char *msg = g_strdup_printf ("size mismatch: the server's file has %" G_GINT64_FORMAT
                                            " bytes, the offer %" G_GUINT64_FORMAT,
                                            (gint64) length, self->file_size);
    ota_download_conclude (self, OTA_JOB_DISCARD, OTA_RESULT_MD5_MISMATCH, OTA_FAIL_KIND_SIZE, msg);
    return;
  }
  ota_download_restart (self);
  self->state = OTA_DOWNLOAD_RECEIVING;
  ota_download_read_next (self);
}

static void
ota_download_receive_partial (OtaDownload *self, SoupMessageHeaders *headers)
{
  goffset start = 0, end = 0, total = 0;

  if (!soup_message_headers_get_content_range (headers, &start, &end, &total) ||
      start < 0 || (guint64) start != self->received || total < 0 ||
      (guint64) total != self->file_size) {
    /* Not the bytes we asked for: distrust the range, start over without one. */
    g_autofree char *reason = g_strdup_printf ("206 with a wrong Content-Range for byte %"
                                               G_GUINT64_FORMAT, self->received);
    self->generation++;
    self->received = self->downloaded = self->resumed_from = 0;
    ota_download_push_kind (self, OTA_JOB_RESTART);
    ota_download_retry (self, FALSE, reason);
    return;
  }
  self->state = OTA_DOWNLOAD_RECEIVING;
  ota_download_read_next (self);
}

static void ota_download_request (OtaDownload *self, const char *url);

/* A 416 to a range inside the file: the server lost (or never had) the bytes
 * we asked for. Starting over is worth it once per download. */
static void
ota_download_handle_416 (OtaDownload *self, const char *reason)
{
  g_autofree char *msg = NULL;

  if (self->received == 0 || self->restarted_after_416) {
    msg = g_strdup_printf ("unexpected %s to a range at byte %" G_GUINT64_FORMAT
                           " of %" G_GUINT64_FORMAT "%s",
                           reason, self->received, self->file_size,
                           self->restarted_after_416 ? ", again after starting over" : "");
    ota_download_fail (self, OTA_RESULT_FAILED, msg);
    return;
  }
  g_message ("%s to a range at byte %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
             ": downloading %s from the start",
             reason, self->received, self->file_size, self->path);
  self->restarted_after_416 = TRUE;
  ota_download_end_attempt (self);
  self->generation++;
  self->received = self->downloaded = self->resumed_from = 0;
  ota_download_push_kind (self, OTA_JOB_RESTART);
  ota_download_send (self);
}

static void
ota_download_retry_later (OtaDownload *self, gboolean timeout, const char *reason)
{
  const char *retry_after = soup_message_headers_get_one (soup_message_get_response_headers (self->msg),
                                                          "Retry-After");

  self->retry_after = ota_download_parse_retry_after (retry_after, g_get_real_time () / G_USEC_PER_SEC);
  ota_download_retry (self, timeout, reason);
}

static void
ota_download_handle_status (OtaDownload *self, guint status)
{
  g_autofree char *reason = g_strdup_printf ("HTTP %u %s", status,
                                             soup_message_get_reason_phrase (self->msg));

  if (status == SOUP_STATUS_FORBIDDEN) {
    ota_download_fail (self, OTA_RESULT_EXPIRED, reason);
  } else if (status == SOUP_STATUS_NOT_FOUND) {
    ota_download_fail (self, OTA_RESULT_NOT_FOUND, reason);
  } else if (status == SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE &&
             self->received == self->file_size) {
    /* Everything was already here: the range starts at the end. */
    ota_download_end_attempt (self);
    ota_download_verify (self);
  } else if (status == SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE) {
    ota_download_handle_416 (self, reason);
  } else if (status == SOUP_STATUS_REQUEST_TIMEOUT || status == SOUP_STATUS_GATEWAY_TIMEOUT) {
    ota_download_retry_later (self, TRUE, reason);
  } else if (status == 429 /* Too Many Requests */ || (status >= 500 && status <= 599)) {
    ota_download_retry_later (self, FALSE, reason);
  } else {
    g_autofree char *msg = g_strdup_printf ("unexpected %s", reason);
    ota_download_fail (self, OTA_RESULT_FAILED, msg);
  }
}

static gboolean
ota_uri_is_http (GUri *uri)
{
  const char *scheme = g_uri_get_scheme (uri);

  return g_ascii_strcasecmp (scheme, "http") == 0 || g_ascii_strcasecmp (scheme, "https") == 0;
}

/* Redirects are followed here, not by libsoup, so that the target is checked
 * before a single byte goes to it: from https, plain http is refused (a
 * presigned URL would go out in clear). */
static void
ota_download_follow_redirect (OtaDownload *self)
{
  GUri *base = soup_message_get_uri (self->msg);
  const char *location = soup_message_headers_get_one (soup_message_get_response_headers (self->msg),
                                                       "Location");
  g_autoptr(GUri) target = NULL;
  g_autofree char *url = NULL;
  g_autofree char *shown = NULL;
  g_autofree char *msg = NULL;

  if (location != NULL)
    target = g_uri_parse_relative (base, location, SOUP_HTTP_URI_FLAGS, NULL);
  if (target == NULL || !ota_uri_is_http (target) || g_uri_get_host (target) == NULL) {
    ota_download_fail (self, OTA_RESULT_FAILED, "redirect without a valid http(s) Location");
    return;
  }
  url = g_uri_to_string (target);
  shown = ota_url_for_log (url);
  if (g_ascii_strcasecmp (g_uri_get_scheme (base), "https") == 0 &&
      g_ascii_strcasecmp (g_uri_get_scheme (target), "https") != 0) {
    msg = g_strdup_printf ("redirected from https to plain http (%s): refused, nothing sent there", shown);
    ota_download_fail_as (self, OTA_RESULT_FAILED, OTA_FAIL_KIND_REFUSED, msg);
    return;
  }
  if (++self->redirects > OTA_MAX_REDIRECTS) {
    msg = g_strdup_printf ("more than %d redirects", OTA_MAX_REDIRECTS);
    ota_download_fail (self, OTA_RESULT_FAILED, msg);
    return;
  }
  g_info ("download of %s redirected to %s", self->path, shown);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->stream);
  g_clear_object (&self->msg);
  g_free (self->attempt_url);
  self->attempt_url = g_steal_pointer (&url);
  ota_download_request (self, self->attempt_url);
}

static void
ota_download_sent_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(OtaDownload) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GInputStream) stream = soup_session_send_finish (SOUP_SESSION (source), res, &error);
  SoupMessageHeaders *headers;
  guint status;

  if (self->state != OTA_DOWNLOAD_REQUESTING)
    return;
  if (stream == NULL) {
    ota_download_network_error (self, error);
    return;
  }
  self->stream = g_steal_pointer (&stream);
  status = soup_message_get_status (self->msg);
  headers = soup_message_get_response_headers (self->msg);
  if (SOUP_STATUS_IS_REDIRECTION (status) && soup_message_headers_get_one (headers, "Location") != NULL)
    ota_download_follow_redirect (self);
  else if (status != SOUP_STATUS_OK && status != SOUP_STATUS_PARTIAL_CONTENT)
    ota_download_handle_status (self, status);
  else if (!ota_download_check_encoding (self, headers))
    return;
  else if (status == SOUP_STATUS_OK)
    ota_download_receive_full (self, headers);
  else
    ota_download_receive_partial (self, headers);
}

/* One request of the current attempt: to the offer's URL, or where it redirected. */
static void
ota_download_request (OtaDownload *self, const char *url)
{
  g_autoptr(SoupMessage) msg = soup_message_new (SOUP_METHOD_GET, url);

  if (msg == NULL) {
    ota_download_fail_as (self, OTA_RESULT_FAILED, OTA_FAIL_KIND_OTHER, "invalid download URL");
    return;
  }
  soup_message_add_flags (msg, SOUP_MESSAGE_NO_REDIRECT);
  if (self->received > 0)
    soup_message_headers_set_range (soup_message_get_request_headers (msg), self->received, -1);
  self->msg = g_steal_pointer (&msg);
  self->cancellable = g_cancellable_new ();
  self->state = OTA_DOWNLOAD_REQUESTING;
  soup_session_send_async (self->session, self->msg, G_PRIORITY_DEFAULT, self->cancellable,
                           ota_download_sent_cb, g_object_ref (self));
}

/* A new attempt, from the offer's URL (a redirect target may have expired). */
static void
ota_download_send (OtaDownload *self)
{
  self->stalled = FALSE;
  self->redirects = 0;
  g_clear_pointer (&self->attempt_url, g_free);
  self->attempt_start = self->received;
  self->rate_start = g_get_monotonic_time ();
  self->rate_bytes = 0;
  self->state = OTA_DOWNLOAD_REQUESTING;
  ota_download_arm_stall (self);
  ota_download_request (self, self->url);
}

/* ---- replies from the writer (creator's context) ---- */

static void
ota_download_emit_finished (OtaDownload *self, int code, OtaFailKind fail_kind, const char *message)
{
  self->state = OTA_DOWNLOAD_DONE;
  /* A failure always has a kind, if only "other". */
  self->fail_kind = code == OTA_RESULT_OK              ? OTA_FAIL_KIND_NONE
                    : fail_kind != OTA_FAIL_KIND_NONE ? fail_kind
                                                      : ota_fail_kind_from_result_code (code);
  ota_download_destroy_source (&self->stall_source);
  ota_download_free_pool (self);
  if (code == OTA_RESULT_OK)
    g_info ("%s downloaded and verified", self->path);
  else
    g_message ("download of %s failed (%d): %s", self->path, code, message);
  g_signal_emit (self, signals[SIGNAL_FINISHED], 0, code, message != NULL ? message : "");
}

static void
ota_download_written (OtaDownload *self, OtaJob *job)
{
  g_autoptr(GError) error = g_steal_pointer (&job->error);
  gboolean current = job->generation == self->generation;
  guint64 offset = job->offset;
  OtaFailKind fail_kind = job->fail_kind;

  if (ota_download_is_over (self) || (self->state == OTA_DOWNLOAD_FINISHING && !self->verifying))
    return;
  if (error != NULL) {
    if (self->state != OTA_DOWNLOAD_FINISHING)
      ota_download_fail_as (self, OTA_RESULT_FAILED, fail_kind, error->message);
    return;
  }
  if (current)
    self->downloaded = offset;
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, self->downloaded, self->file_size);
  if (ota_download_is_over (self))
    return; /* a handler cancelled */
  ota_download_emit_verifying (self);
}

/* The writer wrote a buffer and gave it back: a read that waited for one goes on. */
static void
ota_download_buffer_back (OtaDownload *self, OtaJob *job)
{
  ota_download_recycle (self, g_steal_pointer (&job->data));
  if (self->waiting_for_buffer && self->state == OTA_DOWNLOAD_RECEIVING) {
    self->waiting_for_buffer = FALSE;
    ota_download_read_next (self);
  }
}

/* The files are ready, the kept prefix re-hashed. */
static void
ota_download_prepared (OtaDownload *self, OtaJob *job)
{
  self->received = self->downloaded = self->resumed_from = job->offset;
  ota_download_send (self);
}

static void
ota_download_handle_control (OtaDownload *self, OtaJob *job)
{
  if (ota_download_is_over (self))
    return;
  if (job->final) {
    if (job->code == OTA_RESULT_OK)
      ota_download_emit_verifying (self);
    if (!ota_download_is_over (self))
      ota_download_emit_finished (self, job->code, job->fail_kind, job->message);
  } else if (job->error != NULL && self->state != OTA_DOWNLOAD_FINISHING) {
    ota_download_fail_as (self, OTA_RESULT_FAILED, job->fail_kind, job->error->message);
  } else if (job->error == NULL && job->kind == OTA_JOB_PREPARE) {
    ota_download_prepared (self, job);
  }
}

static void
ota_download_handle_reply (OtaDownload *self, OtaJob *job)
{
  /* A handler may drop the last reference to us. */
  g_object_ref (self);
  if (job->kind == OTA_JOB_BUFFER)
    ota_download_buffer_back (self, job);
  else if (job->kind == OTA_JOB_WRITE)
    ota_download_written (self, job);
  else
    ota_download_handle_control (self, job);
  ota_job_free (job);
  g_object_unref (self);
}

/* ---- public API ---- */

SoupSession *
ota_download_session_new (const char *ca_file, GError **error)
{
  g_autoptr(SoupSession) session = NULL;

  /* Stall detection is ours: libsoup's timeouts would also cut slow but live transfers. */
  session = soup_session_new_with_options ("proxy-resolver", NULL, "timeout", 0, "idle-timeout", 0,
                                           "user-agent", "iv-ota", NULL);
  /* Without the decoder libsoup sends no Accept-Encoding: the image arrives as stored. */
  soup_session_remove_feature_by_type (session, SOUP_TYPE_CONTENT_DECODER);
  if (ca_file != NULL && ca_file[0] != '\0') {
    g_autoptr(GTlsDatabase) database = g_tls_file_database_new (ca_file, error);
    if (database == NULL) {
      g_prefix_error (error, "cannot load CA file %s: ", ca_file);
      return NULL;
    }
    soup_session_set_tls_database (session, database);
  }
  return g_steal_pointer (&session);
}

OtaDownload *
ota_download_new (SoupSession *session, const OtaDownloadParams *params)
{
  OtaDownload *self;
  g_autofree char *stem = NULL;

  g_return_val_if_fail (SOUP_IS_SESSION (session), NULL);
  g_return_val_if_fail (params != NULL && params->url != NULL && params->version != NULL &&
                            params->md5sum != NULL,
                        NULL);

  self = g_object_new (OTA_TYPE_DOWNLOAD, NULL);
  self->session = g_object_ref (session);
  self->context = g_main_context_ref_thread_default ();
  self->url = g_strdup (params->url);
  self->file_size = params->file_size;
  self->stall_timeout = params->stall_timeout;
  self->min_rate = params->min_download_rate;
  self->max_rate = params->max_download_rate;
  self->max_retries = params->max_retries;
  self->retry_after = -1;
  self->progress_bytes = MAX (MIN ((guint64) OTA_PROGRESS_BYTES, params->file_size / 10), 1);
  stem = ota_firmware_stem (params->module, params->version);
  self->path = g_strdup_printf ("%s/%s.bin", params->dir_path != NULL ? params->dir_path : "",
                                stem);
  self->link = ota_link_new (self);
  self->jobs = g_async_queue_new_full ((GDestroyNotify) ota_job_free);
  self->writer = ota_writer_new (params, self->link, self->context, self->jobs);
  return self;
}

void
ota_download_start (OtaDownload *self)
{
  g_autoptr(GError) error = NULL;

  g_return_if_fail (OTA_IS_DOWNLOAD (self));
  if (self->state != OTA_DOWNLOAD_IDLE)
    return;
  self->state = OTA_DOWNLOAD_PREPARING;
  ota_download_create_stall_source (self);
  ota_writer_queue_up (self->writer);
  g_atomic_int_inc (&ota_workers_running);
  if (!ota_download_start_threads (self, &error)) {
    g_atomic_int_dec_and_test (&ota_workers_running);
    ota_writer_leave_line (self->writer);
    g_prefix_error (&error, "cannot start the download threads: ");
    ota_download_fail_as (self, OTA_RESULT_FAILED, OTA_FAIL_KIND_OTHER, error->message);
    return;
  }
  ota_download_push_kind (self, OTA_JOB_PREPARE);
}

void
ota_download_cancel (OtaDownload *self)
{
  g_return_if_fail (OTA_IS_DOWNLOAD (self));
  if (ota_download_is_over (self))
    return;
  self->state = OTA_DOWNLOAD_CANCELLED;
  g_atomic_int_set (&self->link->stop, TRUE);
  ota_download_end_attempt (self);
  ota_download_destroy_source (&self->stall_source);
  /* A read in flight still fills the current buffer: its callback stops the threads. */
  if (!self->reading)
    ota_download_stop_writing (self);
}

gint64
ota_download_parse_retry_after (const char *value, gint64 now_unix)
{
  g_autoptr(GDateTime) date = NULL;
  guint64 seconds = 0;

  if (value == NULL)
    return -1;
  while (g_ascii_isspace (*value))
    value++;
  if (g_ascii_isdigit (*value)) {
    g_autofree char *trimmed = g_strchomp (g_strdup (value));
    if (!g_ascii_string_to_unsigned (trimmed, 10, 0, G_MAXUINT64, &seconds, NULL))
      return -1;
    return (gint64) MIN (seconds, (guint64) OTA_RETRY_AFTER_MAX);
  }
  date = soup_date_time_new_from_http_string (value);
  if (date == NULL)
    return -1;
  return CLAMP (g_date_time_to_unix (date) - now_unix, 0, OTA_RETRY_AFTER_MAX);
}

guint
ota_download_count_workers (void)
{
  return (guint) g_atomic_int_get (&ota_workers_running);
}

const char *
ota_download_get_path (OtaDownload *self)
{
  g_return_val_if_fail (OTA_IS_DOWNLOAD (self), NULL);
  return self->path;
}

OtaFailKind
ota_download_get_fail_kind (OtaDownload *self)
{
  g_return_val_if_fail (OTA_IS_DOWNLOAD (self), OTA_FAIL_KIND_OTHER);
  return self->fail_kind;
}

guint64
ota_download_get_downloaded (OtaDownload *self)
{
  g_return_val_if_fail (OTA_IS_DOWNLOAD (self), 0);
  return self->downloaded;
}

guint64
ota_download_get_resumed_from (OtaDownload *self)
{
  g_return_val_if_fail (OTA_IS_DOWNLOAD (self), 0);
  return self->resumed_from;
}

/* ---- GObject ---- */

static void
ota_download_finalize (GObject *object)
{
  OtaDownload *self = OTA_DOWNLOAD (object);

  /* Dropped while running is cancelled. No read is in flight: it would hold a reference. */
  self->link->self = NULL;
  if (self->state != OTA_DOWNLOAD_DONE)
    g_atomic_int_set (&self->link->stop, TRUE);
  self->state = OTA_DOWNLOAD_CANCELLED;
  ota_download_end_attempt (self);
  ota_download_stop_writing (self);
  ota_download_destroy_source (&self->stall_source);
  ota_download_free_pool (self);
  g_clear_pointer (&self->filling, ota_job_free);
  if (self->writer != NULL)
    ota_writer_free (self->writer);
  g_async_queue_unref (self->jobs);
  ota_link_unref (self->link);
  g_main_context_unref (self->context);
  g_object_unref (self->session);
  g_free (self->url);
  g_free (self->attempt_url);
  g_free (self->stall_reason);
  g_free (self->path);
  G_OBJECT_CLASS (ota_download_parent_class)->finalize (object);
}

static void
ota_download_class_init (OtaDownloadClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = ota_download_finalize;
  signals[SIGNAL_PROGRESS] =
      g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                    G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_UINT64);
  signals[SIGNAL_VERIFYING] = g_signal_new ("verifying", G_TYPE_FROM_CLASS (klass),
                                            G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_FINISHED] =
      g_signal_new ("finished", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                    G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_STRING);
}

static void
ota_download_init (OtaDownload *self)
{
}
