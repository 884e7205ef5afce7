/* Events of the library thread: a FIFO of copies of the agent's signals and of
 * the library's own work items, and their public and SDK views. */
#include "client.h"
#include "common/ota-vocabulary.h"

#include <stdlib.h>
#include <string.h>

static char empty[] = "";

ClientEvent *
client_event_new (ClientEventKind kind)
{
  ClientEvent *event = calloc (1, sizeof *event);

  if (event == NULL)
    return NULL;
  event->kind = kind;
  /* Every string points at the shared "" until set: never NULL, freed only when owned. */
  event->module = event->version = event->state = event->result_msg = empty;
  event->path = event->md5 = event->owner = event->topic = empty;
  return event;
}

bool
client_event_set (char **field, const char *value)
{
  char *copy = strdup (value != NULL ? value : "");

  if (copy == NULL)
    return false;
  if (*field != empty)
    free (*field);
  *field = copy;
  return true;
}

static void
event_free_string (char *text)
{
  if (text != empty)
    free (text);
}

void
client_event_free (ClientEvent *event)
{
  if (event == NULL)
    return;
  event_free_string (event->module);
  event_free_string (event->version);
  event_free_string (event->state);
  event_free_string (event->result_msg);
  event_free_string (event->path);
  event_free_string (event->md5);
  event_free_string (event->owner);
  event_free_string (event->topic);
  free (event->payload);
  free (event);
}

void
client_event_queue_push (ClientEventQueue *queue, ClientEvent *event)
{
  event->next = NULL;
  if (queue->tail != NULL)
    queue->tail->next = event;
  else
    queue->head = event;
  queue->tail = event;
}

void
client_event_queue_push_front (ClientEventQueue *queue, ClientEvent *events)
{
  ClientEvent *last = events;

  if (events == NULL)
    return;
  while (last->next != NULL)
    last = last->next;
  last->next = queue->head;
  queue->head = events;
  if (queue->tail == NULL)
    queue->tail = last;
}

ClientEvent *
client_event_queue_pop (ClientEventQueue *queue)
{
  ClientEvent *event = queue->head;

  if (event == NULL)
    return NULL;
  queue->head = event->next;
  if (queue->head == NULL)
    queue->tail = NULL;
  event->next = NULL;
  return event;
}

void
client_event_queue_drop_observer (ClientEventQueue *queue, const iv_ota_observer_s *observer)
{
  ClientEventQueue kept = { NULL, NULL };
  ClientEvent *event;

  while ((event = client_event_queue_pop (queue)) != NULL) {
    if (event->observer == observer)
      client_event_free (event);
    else
      client_event_queue_push (&kept, event);
  }
  *queue = kept;
}

void
client_event_queue_clear (ClientEventQueue *queue)
{
  ClientEvent *event;

  while ((event = client_event_queue_pop (queue)) != NULL)
    client_event_free (event);
}

static iv_ota_event_type_e
event_public_type (ClientEventKind kind)
{
  switch (kind) {
  case CLIENT_EVENT_OFFERED:
    return IV_OTA_EVENT_OFFERED;
  case CLIENT_EVENT_READY:
    return IV_OTA_EVENT_READY;
  case CLIENT_EVENT_CONNECTION:
    return IV_OTA_EVENT_CONNECTION;
  case CLIENT_EVENT_AGENT:
    return IV_OTA_EVENT_AGENT;
  case CLIENT_EVENT_PROGRESS:
  default:
    return IV_OTA_EVENT_PROGRESS;
  }
}

void
client_event_to_public (const ClientEvent *event, iv_ota_event_s *out)
{
  memset (out, 0, sizeof *out);
  out->type = event_public_type (event->kind);
  out->module = event->module;
  out->version = event->version;
  out->state = event->state;
  out->percent = event->percent;
  out->downloaded = event->downloaded;
  out->total = event->total;
  out->result_code = event->result_code;
  out->result_msg = event->result_msg;
  out->path = event->path;
  out->md5 = event->md5;
  out->agent_present = event->kind == CLIENT_EVENT_AGENT && event->owner[0] != '\0';
  out->cloud_connected = event->kind == CLIENT_EVENT_CONNECTION && event->flag;
  /* Only the snapshot of a new observer is addressed to one observer. */
  out->snapshot = event->observer != NULL;
}

static unsigned int
clamp_uint (uint64_t value)
{
  return value > UINT32_MAX ? UINT32_MAX : (unsigned int) value;
}

/* The agent's failure kinds (the fail_kind key of GetStatus and Modules) as
 * the SDK's fail types, and whether the failure is one of getting the image
 * (download_fail_cb) or of installing it (the app knows it already): the one
 * place that decides what an app is told. */
static const struct {
  iv_ota_fail_type_e type;
  bool download;
  bool known; /* false for OTA_VOCAB_FAIL_NONE: no failure to tell of */
} fail_kinds[OTA_VOCAB_N_FAIL_KINDS] = {
  [OTA_VOCAB_FAIL_TIMEOUT] = { IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD, true, true },   /* stalls, connects, retries exhausted */
  [OTA_VOCAB_FAIL_NOT_FOUND] = { IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD, true, true }, /* HTTP 404 */
  [OTA_VOCAB_FAIL_FORBIDDEN] = { IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD, true, true }, /* HTTP 403, an expired signature */
  [OTA_VOCAB_FAIL_HTTP] = { IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD, true, true },      /* any other HTTP or TLS failure */
  [OTA_VOCAB_FAIL_REFUSED] = { IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD, true, true },   /* the offer was refused before any request */
  [OTA_VOCAB_FAIL_CHECKSUM] = { IV_OTA_FAIL_TYPE_MD5_CHECK, true, true },      /* MD5 (or the signed SHA-256) differs */
  [OTA_VOCAB_FAIL_SIZE] = { IV_OTA_FAIL_TYPE_WRONG_SIZE, true, true },         /* image size wrong, or over max_firmware_size */
  [OTA_VOCAB_FAIL_NO_SPACE] = { IV_OTA_FAIL_TYPE_WRITE_FLASH, true, true },    /* not enough free space for the image */
  [OTA_VOCAB_FAIL_WRITE] = { IV_OTA_FAIL_TYPE_WRITE_FLASH, true, true },       /* writing, syncing or reading the image back */
  [OTA_VOCAB_FAIL_OPEN] = { IV_OTA_FAIL_TYPE_OPEN_FILE, true, true },          /* the image file could not be created or opened */
  [OTA_VOCAB_FAIL_OTHER] = { IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD, true, true },
  [OTA_VOCAB_FAIL_APP] = { IV_OTA_FAIL_TYPE_WRITE_FLASH, false, true },        /* the app reported the failure itself */
  [OTA_VOCAB_FAIL_VERSION] = { IV_OTA_FAIL_TYPE_WRITE_FLASH, false, true },    /* another version runs after the update */
  [OTA_VOCAB_FAIL_INSTALL] = { IV_OTA_FAIL_TYPE_WRITE_FLASH, false, true },    /* the agent's installer failed */
};

/* The kind's row, or -1: no kind, or one added after this library was built. */
static int
fail_kind_find (const char *fail_kind)
{
  int kind = ota_vocab_fail_kind_parse (fail_kind);

  return kind >= 0 && fail_kinds[kind].known ? kind : -1;
}

iv_ota_fail_type_e
client_fail_type (int result_code, const char *fail_kind)
{
  int i = fail_kind_find (fail_kind);

  if (i >= 0)
    return fail_kinds[i].type;
  /* No kind (an older agent) or one added later: the result code says what
   * the cloud is told, and a download that failed is a download failure. */
  return result_code == -4 ? IV_OTA_FAIL_TYPE_MD5_CHECK : IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD;
}

bool
client_fail_is_download (const char *fail_kind, bool was_downloading)
{
  int i = fail_kind_find (fail_kind);

  return i >= 0 ? fail_kinds[i].download : was_downloading;
}

void
client_event_to_fail_info (const ClientEvent *event, iv_ota_fail_info_s *info)
{
  memset (info, 0, sizeof *info);
  info->fail_type = client_fail_type (event->result_code, event->fail_kind);
  info->err_code = event->result_code;
  info->downloaded_size = clamp_uint (event->downloaded);
  info->fw_file_size = clamp_uint (event->total);
  client_copy_string (info->remote_version, sizeof info->remote_version, event->version);
}
