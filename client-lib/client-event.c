/* Events of the library thread: a FIFO of copies of the agent's signals and of
 * the library's own work items, and their public and SDK views. */
#include "client.h"

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
  event->path = event->md5 = event->owner = empty;
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

/* Words of the agent's -5 messages, by what went wrong (DESIGN §2: the
 * downloader's local file errors; anything else is the transfer). */
static const struct {
  const char *word;
  iv_ota_fail_type_e type;
} fail_words[] = {
  { "cannot open", IV_OTA_FAIL_TYPE_OPEN_FILE },
  { "size mismatch", IV_OTA_FAIL_TYPE_WRONG_SIZE },
  { "max_firmware_size", IV_OTA_FAIL_TYPE_WRONG_SIZE },
  { "not enough space", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "cannot write", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "cannot sync", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "cannot truncate", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "cannot read", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "cannot stat", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "cannot check free space", IV_OTA_FAIL_TYPE_WRITE_FLASH },
  { "cannot change the owner", IV_OTA_FAIL_TYPE_OPEN_FILE },
  { "cannot delete", IV_OTA_FAIL_TYPE_WRITE_FLASH },
};

iv_ota_fail_type_e
client_fail_type (int result_code, const char *result_msg)
{
  switch (result_code) {
  case -4:
    return IV_OTA_FAIL_TYPE_MD5_CHECK;
  case -1:
  case -2:
  case -3:
    return IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD;
  default:
    break;
  }
  for (size_t i = 0; i < sizeof fail_words / sizeof fail_words[0]; i++) {
    if (result_msg != NULL && strstr (result_msg, fail_words[i].word) != NULL)
      return fail_words[i].type;
  }
  /* Retries exhausted, TLS, unexpected HTTP answers: the transfer failed. */
  return IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD;
}

void
client_event_to_fail_info (const ClientEvent *event, iv_ota_fail_info_s *info)
{
  memset (info, 0, sizeof *info);
  info->fail_type = client_fail_type (event->result_code, event->result_msg);
  info->err_code = event->result_code;
  info->downloaded_size = clamp_uint (event->downloaded);
  info->fw_file_size = clamp_uint (event->total);
  client_copy_string (info->remote_version, sizeof info->remote_version, event->version);
}
