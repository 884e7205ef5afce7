/* The public functions of libiv-ota (iv_ota.h, iv_ota_ext.h): argument checks,
 * the SDK's progress types mapped to the agent's ReportProgress states, and
 * return codes. The work itself happens on the library thread (client-loop.c). */
#include "client.h"
#include "common/ota-vocabulary.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define IV_OTA_PUBLIC __attribute__ ((visibility ("default")))
/* ReportProgress result code of an application failure (docs/protocol.md). */
#define RESULT_APP_FAILED (-5)

static __thread char last_error[CLIENT_ERROR_LEN];

static int
fail (int code, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static int
fail (int code, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  if (vsnprintf (last_error, sizeof last_error, format, args) < 0)
    last_error[0] = '\0';
  va_end (args);
  return code;
}

/* The result of a request; its message becomes the thread's last error. */
static int
request_result (const ClientRequest *request, int result)
{
  if (result != IV_ERR_NONE)
    client_copy_string (last_error, sizeof last_error, request->error);
  return result;
}

/* ---- checks ---- */

/* 1..63 visible ASCII characters, NUL-terminated within @size. */
static bool
version_is_valid (const char *version, size_t size)
{
  size_t len = strnlen (version, size);

  if (len == 0 || len >= size)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (version[i] <= ' ' || version[i] > '~')
      return false;
  }
  return true;
}

/* "" or 1..32 of [A-Za-z0-9._-], not "." or "..": the agent's rule. */
static bool
module_is_valid (const char *module)
{
  size_t len = strnlen (module, IV_OTA_MODULE_NAME_MAX_LEN + 1);

  if (len > IV_OTA_MODULE_NAME_MAX_LEN || strcmp (module, ".") == 0 || strcmp (module, "..") == 0)
    return false;
  return strspn (module, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

/* The absolute path of the directory @path names, or NULL with the error set. */
static char *
firmware_dir_resolve (const char *path)
{
  size_t len = strnlen (path, IV_OTA_LOCAL_FILE_NAME_MAX_LEN);
  char *dir;
  struct stat st;

  if (len == 0 || len == IV_OTA_LOCAL_FILE_NAME_MAX_LEN) {
    fail (IV_ERR_OTA_INIT_PRM_NULL, "firmware_path must be 1..%d bytes, NUL-terminated",
          IV_OTA_LOCAL_FILE_NAME_MAX_LEN - 1);
    return NULL;
  }
  /* The agent wants an absolute path; the SDK took relative ones too. */
  dir = realpath (path, NULL);
  if (dir == NULL) {
    fail (IV_ERR_OTA_INIT_PRM_NULL, "firmware_path %s: %s", path, strerror (errno));
    return NULL;
  }
  if (stat (dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
    fail (IV_ERR_OTA_INIT_PRM_NULL, "firmware_path %s is not a directory", path);
    free (dir);
    return NULL;
  }
  return dir;
}

static int
parm_check (const char *module, const iv_ota_init_parm_s *parm)
{
  if (parm == NULL)
    return fail (IV_ERR_OTA_INIT_PRM_NULL, "the init parameter is NULL");
  if (module == NULL || !module_is_valid (module))
    return fail (IV_ERR_OTA_INIT_PRM_NULL, "module must be \"\" or 1..%d characters of [A-Za-z0-9._-]",
                 IV_OTA_MODULE_NAME_MAX_LEN);
  if (parm->iv_ota_firmware_update_cb == NULL)
    return fail (IV_ERR_OTA_INIT_CB_NULL, "iv_ota_firmware_update_cb is required");
  if (!version_is_valid (parm->firmware_version, sizeof parm->firmware_version))
    return fail (IV_ERR_OTA_INIT_PRM_NULL, "firmware_version must be 1..%d visible characters, NUL-terminated",
                 IV_OTA_FIRMWARE_VERSION_MAX_LEN - 1);
  return IV_ERR_NONE;
}

/* ---- handles ---- */

static int
handle_new (const char *module, const iv_ota_init_parm_s *parm, void *user_data, bool classic,
            iv_ota_module_s **out)
{
  iv_ota_module_s *handle;
  int rc = parm_check (module, parm);
  char *dir;

  if (rc != IV_ERR_NONE)
    return rc;
  if ((dir = firmware_dir_resolve (parm->firmware_path)) == NULL)
    return IV_ERR_OTA_INIT_PRM_NULL;
  handle = calloc (1, sizeof *handle);
  if (handle == NULL || (handle->name = strdup (module)) == NULL ||
      (handle->exit_event = client_event_new (CLIENT_EVENT_THREAD_EXIT)) == NULL) {
    free (dir);
    client_handle_free (handle);
    return fail (IV_ERR_OTA_NO_RESOURCES, "out of memory");
  }
  handle->dir = dir;
  client_copy_string (handle->version, sizeof handle->version, parm->firmware_version);
  handle->parm = *parm;
  handle->user_data = user_data;
  handle->classic = classic;
  *out = handle;
  return IV_ERR_NONE;
}

/* The code iv_ota_init or iv_ota_module_open returns for @rc. */
static int
open_result (bool classic, int rc)
{
  if (rc == IV_ERR_NONE)
    return rc;
  /* The SDK knows only "could not start" once the parameters are right. */
  if (classic)
    return IV_ERR_OTA_START_FAIL;
  switch (rc) {
  case IV_ERR_OTA_NO_AGENT:
  case IV_ERR_OTA_REFUSED:
    return IV_ERR_OTA_START_FAIL;
  case IV_ERR_OTA_INVALID_ARG:
    return IV_ERR_OTA_INIT_PRM_NULL;
  default:
    return rc;
  }
}

/* Registers @handle with the agent, stored in *@out (the classic slot when
 * NULL) before any callback; frees it on failure. */
static int
handle_open (iv_ota_module_s *handle, iv_ota_module_s **out)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_OPEN, .handle = handle, .handle_out = out };
  int rc = open_result (handle->classic, client_submit (&request));

  if (rc != IV_ERR_NONE)
    client_handle_free (handle);
  return request_result (&request, rc);
}

static int
handle_exit (iv_ota_module_s *handle)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_EXIT, .handle = handle };

  return request_result (&request, client_submit (&request));
}

/* ---- progress ---- */

static const char *const fail_type_names[] = {
  [IV_OTA_FAIL_TYPE_OPEN_FILE] = "cannot open the image file (IV_OTA_FAIL_TYPE_OPEN_FILE)",
  [IV_OTA_FAIL_TYPE_WRONG_SIZE] = "wrong image size (IV_OTA_FAIL_TYPE_WRONG_SIZE)",
  [IV_OTA_FAIL_TYPE_WRITE_FLASH] = "writing the flash failed (IV_OTA_FAIL_TYPE_WRITE_FLASH)",
  [IV_OTA_FAIL_TYPE_REPORT_VERSION] = "reporting the version failed (IV_OTA_FAIL_TYPE_REPORT_VERSION)",
  [IV_OTA_FAIL_TYPE_MALLOC] = "out of memory (IV_OTA_FAIL_TYPE_MALLOC)",
  [IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD] = "download failed (IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD)",
  [IV_OTA_FAIL_TYPE_MD5_CHECK] = "MD5 check failed (IV_OTA_FAIL_TYPE_MD5_CHECK)",
};

/* Fills the ReportProgress arguments of @request for the SDK's @type. */
static int
progress_map (iv_ota_progress_type_e type, int value, ClientRequest *request, char *message, size_t len)
{
  request->percent = -1;
  request->message = "";
  switch (type) {
  case IV_OTA_PROGRESS_TYPE_WRITE_FLASH:
    request->state = ota_vocab_state_name (OTA_VOCAB_STATE_BURNING);
    return IV_ERR_NONE;
  case IV_OTA_PROGRESS_TYPE_WRITING_FLASH:
    request->state = ota_vocab_state_name (OTA_VOCAB_STATE_BURNING);
    request->percent = value < 0 ? 0 : value > 100 ? 100 : value;
    return IV_ERR_NONE;
  case IV_OTA_PROGRESS_TYPE_REBOOT:
    request->state = ota_vocab_state_name (OTA_VOCAB_STATE_REBOOTING);
    return IV_ERR_NONE;
  case IV_OTA_PROGRESS_TYPE_SUCCESS:
    request->state = ota_vocab_state_name (OTA_VOCAB_STATE_DONE);
    return IV_ERR_NONE;
  case IV_OTA_PROGRESS_TYPE_FAIL:
    request->state = ota_vocab_state_name (OTA_VOCAB_STATE_FAIL);
    request->result_code = RESULT_APP_FAILED;
    if (value >= 0 && value < IV_OTA_FAIL_TYPE_WRITE_BUTT)
      client_set_error (message, len, "update failed: %s", fail_type_names[value]);
    else
      client_set_error (message, len, "update failed: fail type %d", value);
    request->message = message;
    return IV_ERR_NONE;
  case IV_OTA_PROGRESS_TYPE_BUTT:
  default:
    return fail (IV_ERR_OTA_PROGRESS_TYPE_ERROR, "unknown progress type %d", (int) type);
  }
}

/* Runs @request for @handle, or for the classic handle when NULL. */
static int
module_submit (iv_ota_module_s *handle, ClientRequest *request)
{
  if (handle == NULL)
    return request_result (request, client_classic_submit (request));
  request->handle = handle;
  return request_result (request, client_submit (request));
}

static int
update_progress (iv_ota_module_s *handle, iv_ota_progress_type_e type, int value)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_PROGRESS };
  char message[CLIENT_ERROR_LEN];
  int rc = progress_map (type, value, &request, message, sizeof message);

  return rc != IV_ERR_NONE ? rc : module_submit (handle, &request);
}

/* ---- iv_ota.h ---- */

/* The bytes of iv_ota_init_parm_s in the SDK's first iv_ota.h, which ended
 * with iv_ota_thread_exit_cb: all that the plain iv_ota_init symbol reads. */
#define PARM_SIZE_FIRST_GENERATION offsetof (iv_ota_init_parm_s, iv_ota_download_fail_cb)

/* Copies the caller's structure into @parm: the whole of ours when @size
 * holds it, else the first generation's fields (a size in between names no
 * layout: half a pointer is not copied). The rest stays zero; nothing past
 * @size is read. */
static int
parm_import (const iv_ota_init_parm_s *caller, size_t size, iv_ota_init_parm_s *parm)
{
  memset (parm, 0, sizeof *parm);
  if (caller == NULL)
    return fail (IV_ERR_OTA_INIT_PRM_NULL, "the init parameter is NULL");
  if (size < PARM_SIZE_FIRST_GENERATION)
    return fail (IV_ERR_OTA_INIT_PRM_NULL, "init_parm_size %zu is smaller than any iv_ota_init_parm_s (%zu)", size,
                 (size_t) PARM_SIZE_FIRST_GENERATION);
  memcpy (parm, caller, size >= sizeof *parm ? sizeof *parm : PARM_SIZE_FIRST_GENERATION);
  return IV_ERR_NONE;
}

static int
classic_init (const iv_ota_init_parm_s *init_parm, size_t size)
{
  iv_ota_init_parm_s parm;
  iv_ota_module_s *handle;
  int rc;

  last_error[0] = '\0';
  if ((rc = parm_import (init_parm, size, &parm)) != IV_ERR_NONE)
    return rc;
  if ((rc = handle_new ("", &parm, NULL, true, &handle)) != IV_ERR_NONE)
    return rc == IV_ERR_OTA_NO_RESOURCES ? IV_ERR_OTA_START_FAIL : rc;
  if (!client_classic_claim ()) {
    client_handle_free (handle);
    return fail (IV_ERR_OTA_ALREADY_INITIALIZED, "iv_ota_init was already called");
  }
  rc = handle_open (handle, NULL);
  if (rc != IV_ERR_NONE)
    client_classic_unclaim ();
  return rc;
}

/* Parenthesised: iv_ota.h makes iv_ota_init a macro for iv_ota_init_sized. */
IV_OTA_PUBLIC int
(iv_ota_init) (iv_ota_init_parm_s *init_parm)
{
  return classic_init (init_parm, PARM_SIZE_FIRST_GENERATION);
}

IV_OTA_PUBLIC int
iv_ota_init_sized (iv_ota_init_parm_s *init_parm, size_t init_parm_size)
{
  return classic_init (init_parm, init_parm_size);
}

IV_OTA_PUBLIC int
iv_ota_exit (void)
{
  iv_ota_module_s *handle;

  last_error[0] = '\0';
  handle = client_classic_take ();
  if (handle == NULL)
    return fail (IV_ERR_OTA_NOT_INITIALIZED, "iv_ota_init has not been called");
  return handle_exit (handle);
}

IV_OTA_PUBLIC int
iv_ota_update_progress (iv_ota_progress_type_e type, int progress_value)
{
  last_error[0] = '\0';
  return update_progress (NULL, type, progress_value);
}

/* ---- iv_ota_ext.h: modules ---- */

IV_OTA_PUBLIC int
iv_ota_module_open (const char *module, const iv_ota_init_parm_s *init_parm, void *user_data,
                    iv_ota_module_s **handle)
{
  iv_ota_module_s *new_handle;
  int rc;

  last_error[0] = '\0';
  if (handle == NULL)
    return fail (IV_ERR_OTA_INIT_PRM_NULL, "the handle pointer is NULL");
  if ((rc = handle_new (module, init_parm, user_data, false, &new_handle)) != IV_ERR_NONE)
    return rc;
  return handle_open (new_handle, handle);
}

IV_OTA_PUBLIC int
iv_ota_module_update_progress (iv_ota_module_s *handle, iv_ota_progress_type_e type, int progress_value)
{
  last_error[0] = '\0';
  if (handle == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the handle is NULL");
  return update_progress (handle, type, progress_value);
}

static int
module_call (iv_ota_module_s *handle, ClientRequestKind kind)
{
  ClientRequest request = { .kind = kind };

  last_error[0] = '\0';
  if (handle == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the handle is NULL");
  return module_submit (handle, &request);
}

IV_OTA_PUBLIC int
iv_ota_module_check_now (iv_ota_module_s *handle)
{
  return module_call (handle, CLIENT_REQUEST_CHECK_NOW);
}

IV_OTA_PUBLIC int
iv_ota_module_cancel (iv_ota_module_s *handle)
{
  return module_call (handle, CLIENT_REQUEST_CANCEL);
}

IV_OTA_PUBLIC int
iv_ota_module_exit (iv_ota_module_s *handle)
{
  last_error[0] = '\0';
  if (handle == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the handle is NULL");
  if (handle->classic)
    return fail (IV_ERR_OTA_INVALID_ARG, "the handle of iv_ota_init ends with iv_ota_exit");
  return handle_exit (handle);
}

IV_OTA_PUBLIC const char *
iv_ota_module_name (const iv_ota_module_s *handle)
{
  return handle != NULL ? handle->name : NULL;
}

IV_OTA_PUBLIC void *
iv_ota_module_user_data (const iv_ota_module_s *handle)
{
  return handle != NULL ? handle->user_data : NULL;
}

IV_OTA_PUBLIC iv_ota_module_s *
iv_ota_module_current (void)
{
  return client_current_handle ();
}

/* ---- iv_ota_ext.h: observers ---- */

IV_OTA_PUBLIC int
iv_ota_observer_add (iv_ota_observer_cb callback, void *user_data, iv_ota_observer_s **observer)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_OBSERVER_ADD };
  iv_ota_observer_s *new_observer;
  int rc;

  last_error[0] = '\0';
  if (callback == NULL || observer == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the callback and the observer pointer are required");
  new_observer = calloc (1, sizeof *new_observer);
  if (new_observer == NULL || (new_observer->release_event = client_event_new (CLIENT_EVENT_RELEASE)) == NULL) {
    client_observer_free (new_observer);
    return fail (IV_ERR_OTA_NO_RESOURCES, "out of memory");
  }
  new_observer->callback = callback;
  new_observer->user_data = user_data;
  request.observer = new_observer;
  request.observer_out = observer;
  rc = client_submit (&request);
  if (rc != IV_ERR_NONE)
    client_observer_free (new_observer);
  return request_result (&request, rc == IV_ERR_OTA_NO_AGENT ? IV_ERR_OTA_START_FAIL : rc);
}

IV_OTA_PUBLIC int
iv_ota_observer_remove (iv_ota_observer_s *observer)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_OBSERVER_REMOVE, .observer = observer };

  last_error[0] = '\0';
  if (observer == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the observer is NULL");
  return request_result (&request, client_submit (&request));
}

/* ---- iv_ota_ext.h: the device's cloud connection ---- */

IV_OTA_PUBLIC int
iv_ota_publish (const char *topic, const void *payload, size_t length, int qos, unsigned int flags)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_PUBLISH };

  last_error[0] = '\0';
  if (topic == NULL || (payload == NULL && length > 0))
    return fail (IV_ERR_OTA_INVALID_ARG, "the topic is NULL, or the payload is NULL with a length");
  if (length > IV_OTA_PUBLISH_MAX_PAYLOAD)
    return fail (IV_ERR_OTA_INVALID_ARG, "payload of %zu bytes, over %d", length, IV_OTA_PUBLISH_MAX_PAYLOAD);
  if (qos != 0 && qos != 1)
    return fail (IV_ERR_OTA_INVALID_ARG, "qos must be 0 or 1, not %d", qos);
  if ((flags & ~IV_OTA_PUBLISH_QUEUE) != 0)
    return fail (IV_ERR_OTA_INVALID_ARG, "unknown flags 0x%x", flags & ~IV_OTA_PUBLISH_QUEUE);
  request.topic = topic;
  request.payload = payload;
  request.payload_len = length;
  request.qos = qos;
  request.queue = (flags & IV_OTA_PUBLISH_QUEUE) != 0;
  return request_result (&request, client_submit (&request));
}

IV_OTA_PUBLIC int
iv_ota_subscribe (const char *filter, iv_ota_message_cb callback, void *user_data,
                  iv_ota_subscription_s **subscription)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_SUBSCRIBE };
  iv_ota_subscription_s *new_subscription;
  int rc;

  last_error[0] = '\0';
  if (filter == NULL || callback == NULL || subscription == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the filter, the callback and the subscription pointer are required");
  new_subscription = calloc (1, sizeof *new_subscription);
  if (new_subscription == NULL || (new_subscription->filter = strdup (filter)) == NULL ||
      (new_subscription->release_event = client_event_new (CLIENT_EVENT_RELEASE_SUBSCRIPTION)) == NULL) {
    client_subscription_free (new_subscription);
    return fail (IV_ERR_OTA_NO_RESOURCES, "out of memory");
  }
  new_subscription->callback = callback;
  new_subscription->user_data = user_data;
  request.subscription = new_subscription;
  request.subscription_out = subscription;
  rc = client_submit (&request);
  if (rc != IV_ERR_NONE)
    client_subscription_free (new_subscription);
  return request_result (&request, rc);
}

IV_OTA_PUBLIC int
iv_ota_unsubscribe (iv_ota_subscription_s *subscription)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_UNSUBSCRIBE, .subscription = subscription };

  last_error[0] = '\0';
  if (subscription == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the subscription is NULL");
  return request_result (&request, client_submit (&request));
}

/* ---- iv_ota_ext.h: any module, by name ---- */

IV_OTA_PUBLIC int
iv_ota_status_get (iv_ota_status_s **status)
{
  ClientRequest request = { .kind = CLIENT_REQUEST_STATUS, .status_out = status };

  last_error[0] = '\0';
  if (status == NULL)
    return fail (IV_ERR_OTA_INVALID_ARG, "the status pointer is NULL");
  return request_result (&request, client_submit (&request));
}

IV_OTA_PUBLIC void
iv_ota_status_free (iv_ota_status_s *status)
{
  client_status_free (status);
}

static int
module_request (ClientRequestKind kind, const char *module)
{
  ClientRequest request = { .kind = kind, .module = module };

  last_error[0] = '\0';
  if (module == NULL || !module_is_valid (module))
    return fail (IV_ERR_OTA_INVALID_ARG, "module must be \"\" or 1..%d characters of [A-Za-z0-9._-]",
                 IV_OTA_MODULE_NAME_MAX_LEN);
  return request_result (&request, client_submit (&request));
}

IV_OTA_PUBLIC int
iv_ota_check_module (const char *module)
{
  return module_request (CLIENT_REQUEST_CHECK_MODULE, module);
}

IV_OTA_PUBLIC int
iv_ota_cancel_module (const char *module)
{
  return module_request (CLIENT_REQUEST_CANCEL_MODULE, module);
}

/* ---- iv_ota_ext.h: errors ---- */

static const struct {
  int code;
  const char *text;
} error_texts[] = {
  { IV_ERR_NONE, "success" },
  { IV_ERR_OTA_INIT_PRM_NULL, "invalid or missing init parameter" },
  { IV_ERR_OTA_INIT_CB_NULL, "required callback missing" },
  { IV_ERR_OTA_START_FAIL, "cannot start the OTA service (agent not running or refused)" },
  { IV_ERR_OTA_PROGRESS_TYPE_ERROR, "unknown progress type" },
  { IV_ERR_DEVICE_OFFLINE, "device offline" },
  { IV_ERR_OTA_BUSY, "module owned by another client" },
  { IV_ERR_OTA_ACCESS_DENIED, "access denied" },
  { IV_ERR_OTA_INVALID_ARG, "invalid argument" },
  { IV_ERR_OTA_NOT_INITIALIZED, "OTA service not initialized" },
  { IV_ERR_OTA_ALREADY_INITIALIZED, "OTA service already initialized" },
  { IV_ERR_OTA_REFUSED, "request refused by the agent" },
  { IV_ERR_OTA_NO_AGENT, "OTA agent not on the bus" },
  { IV_ERR_OTA_NO_RESOURCES, "out of memory or threads" },
  { IV_ERR_OTA_NOT_OWNER, "only the module's owner may do this" },
  { IV_ERR_OTA_NO_SUCH_MODULE, "no such module: no application has registered it" },
  { IV_ERR_OTA_AGENT_NOT_ANSWERING, "the OTA agent does not answer (stopped or overloaded)" },
};

IV_OTA_PUBLIC const char *
iv_ota_strerror (int code)
{
  for (size_t i = 0; i < sizeof error_texts / sizeof error_texts[0]; i++) {
    if (error_texts[i].code == code)
      return error_texts[i].text;
  }
  return "unknown error";
}

IV_OTA_PUBLIC const char *
iv_ota_last_error (void)
{
  return last_error;
}
