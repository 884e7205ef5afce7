/* The agent's D-Bus interface (dbus-interfaces/org.iv.Ota.xml) seen from
 * libdbus-1: a private connection, blocking method calls, and signals turned
 * into events. Used by the library thread only. */
#include "client.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The agent answers in milliseconds; this only bounds a hung agent. */
#define CALL_TIMEOUT_MS 25000
/* Questions about any module (status, check, cancel by name) come from people
 * and scripts (iv-ota): a frozen agent (SIGSTOP, a debugger) must not hold them
 * for CALL_TIMEOUT_MS, and its silence is an answer of its own. */
#define QUERY_TIMEOUT_MS 5000
#define ERROR_PREFIX "org.iv.Ota.Error."

static const char *const match_rules[] = {
  /* The agent appears, leaves or restarts. */
  "type='signal',sender='" DBUS_SERVICE_DBUS "',path='" DBUS_PATH_DBUS "',interface='" DBUS_INTERFACE_DBUS
  "',member='NameOwnerChanged',arg0='" CLIENT_BUS_NAME "'",
  "type='signal',sender='" CLIENT_BUS_NAME "',path='" CLIENT_BUS_PATH "',interface='" CLIENT_BUS_INTERFACE
  "',member='UpdateOffered'",
  "type='signal',sender='" CLIENT_BUS_NAME "',path='" CLIENT_BUS_PATH "',interface='" CLIENT_BUS_INTERFACE
  "',member='Progress'",
  "type='signal',sender='" CLIENT_BUS_NAME "',path='" CLIENT_BUS_PATH "',interface='" CLIENT_BUS_INTERFACE
  "',member='FirmwareReady'",
  "type='signal',sender='" CLIENT_BUS_NAME "',path='" CLIENT_BUS_PATH "',interface='" DBUS_INTERFACE_PROPERTIES
  "',member='PropertiesChanged',arg0='" CLIENT_BUS_INTERFACE "'",
};

/* ---- errors ---- */

static const struct {
  const char *name;
  int code;
} error_codes[] = {
  { ERROR_PREFIX "Busy", IV_ERR_OTA_BUSY },
  { ERROR_PREFIX "AccessDenied", IV_ERR_OTA_ACCESS_DENIED },
  { DBUS_ERROR_ACCESS_DENIED, IV_ERR_OTA_ACCESS_DENIED },
  { ERROR_PREFIX "InvalidArgs", IV_ERR_OTA_INVALID_ARG },
  { ERROR_PREFIX "NotOwner", IV_ERR_OTA_REFUSED },
  { ERROR_PREFIX "NoSuchModule", IV_ERR_OTA_REFUSED },
  { ERROR_PREFIX "Failed", IV_ERR_OTA_REFUSED },
  { DBUS_ERROR_NO_MEMORY, IV_ERR_OTA_NO_RESOURCES },
};

/* For a module this process may not own, these say more than "refused". */
static const struct {
  const char *name;
  int code;
} request_error_codes[] = {
  { ERROR_PREFIX "NotOwner", IV_ERR_OTA_NOT_OWNER },
  { ERROR_PREFIX "NoSuchModule", IV_ERR_OTA_NO_SUCH_MODULE },
};

/* Anything not listed (ServiceUnknown, NoReply, Disconnected...) means the
 * agent is not there to answer. */
int
client_bus_error_code (const DBusError *error)
{
  for (size_t i = 0; i < sizeof error_codes / sizeof error_codes[0]; i++) {
    if (dbus_error_has_name (error, error_codes[i].name))
      return error_codes[i].code;
  }
  return IV_ERR_OTA_NO_AGENT;
}

/* Consumes @reply or @dbus_error: IV_ERR_NONE, or the code with @error set. */
static int
bus_finish (DBusMessage *reply, DBusError *dbus_error, char *error, size_t error_len)
{
  int code;

  if (reply != NULL) {
    dbus_message_unref (reply);
    return IV_ERR_NONE;
  }
  code = client_bus_error_code (dbus_error);
  client_set_error (error, error_len, "%s (%s)", dbus_error->message ? dbus_error->message : "no message",
                    dbus_error->name);
  dbus_error_free (dbus_error);
  return code;
}

/* As bus_finish(), for questions sent with QUERY_TIMEOUT_MS: an agent that
 * owns the name but does not answer is told apart from no agent at all. */
static int
bus_finish_query (DBusMessage *reply, DBusError *dbus_error, char *error, size_t error_len)
{
  if (reply != NULL || (!dbus_error_has_name (dbus_error, DBUS_ERROR_NO_REPLY) &&
                        !dbus_error_has_name (dbus_error, DBUS_ERROR_TIMEOUT)))
    return bus_finish (reply, dbus_error, error, error_len);
  client_set_error (error, error_len,
                    "the agent owns " CLIENT_BUS_NAME " but did not answer within %d s: it is stopped (SIGSTOP, a "
                    "debugger) or overloaded (%s)",
                    QUERY_TIMEOUT_MS / 1000, dbus_error->name);
  dbus_error_free (dbus_error);
  return IV_ERR_OTA_AGENT_NOT_ANSWERING;
}

/* ---- connection ---- */

static DBusConnection *
bus_open (const char *which, DBusError *error)
{
  DBusConnection *connection;

  if (which == NULL || *which == '\0' || strcmp (which, "system") == 0)
    return dbus_bus_get_private (DBUS_BUS_SYSTEM, error);
  if (strcmp (which, "session") == 0)
    return dbus_bus_get_private (DBUS_BUS_SESSION, error);
  connection = dbus_connection_open_private (which, error);
  if (connection != NULL && !dbus_bus_register (connection, error)) {
    client_bus_disconnect (connection);
    return NULL;
  }
  return connection;
}

void
client_bus_disconnect (DBusConnection *connection)
{
  dbus_connection_close (connection);
  dbus_connection_unref (connection);
}

DBusConnection *
client_bus_connect (const char *bus, char *error, size_t error_len)
{
  DBusError dbus_error;
  DBusConnection *connection;

  dbus_error_init (&dbus_error);
  connection = bus_open (bus, &dbus_error);
  if (connection == NULL) {
    client_set_error (error, error_len, "cannot connect to the bus: %s", dbus_error.message);
    dbus_error_free (&dbus_error);
    return NULL;
  }
  /* A library must never end the application when the bus goes away. */
  dbus_connection_set_exit_on_disconnect (connection, FALSE);
  /* With a DBusError the call waits for the bus: the rule is active on return. */
  for (size_t i = 0; i < sizeof match_rules / sizeof match_rules[0]; i++) {
    dbus_bus_add_match (connection, match_rules[i], &dbus_error);
    if (dbus_error_is_set (&dbus_error)) {
      client_set_error (error, error_len, "cannot watch the agent's signals: %s", dbus_error.message);
      dbus_error_free (&dbus_error);
      client_bus_disconnect (connection);
      return NULL;
    }
  }
  return connection;
}

/* ---- calls ---- */

static DBusMessage *
bus_method (const char *method)
{
  return dbus_message_new_method_call (CLIENT_BUS_NAME, CLIENT_BUS_PATH, CLIENT_BUS_INTERFACE, method);
}

/* Sends @message (consumed) and waits up to @timeout_ms for the reply. */
static DBusMessage *
bus_send_within (DBusConnection *connection, DBusMessage *message, int timeout_ms, DBusError *error)
{
  DBusMessage *reply;

  if (message == NULL) {
    dbus_set_error_const (error, DBUS_ERROR_NO_MEMORY, "out of memory");
    return NULL;
  }
  reply = dbus_connection_send_with_reply_and_block (connection, message, timeout_ms, error);
  dbus_message_unref (message);
  return reply;
}

static DBusMessage *
bus_send (DBusConnection *connection, DBusMessage *message, DBusError *error)
{
  return bus_send_within (connection, message, CALL_TIMEOUT_MS, error);
}

char *
client_bus_get_agent (DBusConnection *connection)
{
  DBusMessage *message = dbus_message_new_method_call (DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS,
                                                       "GetNameOwner");
  const char *name = CLIENT_BUS_NAME, *owner = NULL;
  DBusMessage *reply;
  DBusError error;
  char *result = NULL;

  dbus_error_init (&error);
  if (message != NULL && !dbus_message_append_args (message, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID))
    dbus_clear_message (&message);
  reply = bus_send (connection, message, &error);
  /* NameHasNoOwner: no agent now. */
  if (reply != NULL && dbus_message_get_args (reply, &error, DBUS_TYPE_STRING, &owner, DBUS_TYPE_INVALID))
    result = strdup (owner);
  dbus_error_free (&error);
  if (reply != NULL)
    dbus_message_unref (reply);
  return result;
}

bool
client_bus_append_bool_option (DBusMessageIter *iter, const char *key, bool value)
{
  DBusMessageIter dict, entry, variant;
  dbus_bool_t boolean = value;

  if (!dbus_message_iter_open_container (iter, DBUS_TYPE_ARRAY, "{sv}", &dict))
    return false;
  if (key != NULL &&
      !(dbus_message_iter_open_container (&dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
        dbus_message_iter_append_basic (&entry, DBUS_TYPE_STRING, &key) &&
        dbus_message_iter_open_container (&entry, DBUS_TYPE_VARIANT, "b", &variant) &&
        dbus_message_iter_append_basic (&variant, DBUS_TYPE_BOOLEAN, &boolean) &&
        dbus_message_iter_close_container (&entry, &variant) && dbus_message_iter_close_container (&dict, &entry)))
    return false;
  return dbus_message_iter_close_container (iter, &dict);
}

static DBusMessage *
bus_init_message (const iv_ota_module_s *handle)
{
  DBusMessage *message = bus_method ("Init");
  const char *version = handle->version;
  DBusMessageIter iter;

  if (message == NULL)
    return NULL;
  dbus_message_iter_init_append (message, &iter);
  if (!dbus_message_iter_append_basic (&iter, DBUS_TYPE_STRING, &handle->name) ||
      !dbus_message_iter_append_basic (&iter, DBUS_TYPE_STRING, &version) ||
      !dbus_message_iter_append_basic (&iter, DBUS_TYPE_STRING, &handle->dir) ||
      /* A prepare callback means: ask before every download. */
      !client_bus_append_bool_option (&iter, "ask_before_download", handle->parm.iv_ota_prepare_cb != NULL))
    dbus_clear_message (&message);
  return message;
}

int
client_bus_init (DBusConnection *connection, const iv_ota_module_s *handle, char **agent, char *error,
                 size_t error_len)
{
  DBusError dbus_error;
  DBusMessage *reply;

  dbus_error_init (&dbus_error);
  reply = bus_send (connection, bus_init_message (handle), &dbus_error);
  if (reply != NULL) {
    /* The unique name that answered: signals from anyone else are ignored. */
    *agent = strdup (dbus_message_get_sender (reply));
    if (*agent == NULL) {
      dbus_message_unref (reply);
      client_set_error (error, error_len, "out of memory");
      return IV_ERR_OTA_NO_RESOURCES;
    }
  }
  return bus_finish (reply, &dbus_error, error, error_len);
}

int
client_bus_prepare (DBusConnection *connection, const char *module, const char *version, bool accept, char *error,
                    size_t error_len)
{
  DBusMessage *message = bus_method ("Prepare");
  dbus_bool_t value = accept;
  DBusError dbus_error;

  dbus_error_init (&dbus_error);
  if (message != NULL && !dbus_message_append_args (message, DBUS_TYPE_STRING, &module, DBUS_TYPE_STRING, &version,
                                                    DBUS_TYPE_BOOLEAN, &value, DBUS_TYPE_INVALID))
    dbus_clear_message (&message);
  return bus_finish (bus_send (connection, message, &dbus_error), &dbus_error, error, error_len);
}

int
client_bus_report (DBusConnection *connection, const char *module, const char *state, int percent, int result_code,
                   const char *result_msg, char *error, size_t error_len)
{
  DBusMessage *message = bus_method ("ReportProgress");
  dbus_int32_t p = percent, code = result_code;
  DBusError dbus_error;

  dbus_error_init (&dbus_error);
  if (message != NULL &&
      !dbus_message_append_args (message, DBUS_TYPE_STRING, &module, DBUS_TYPE_STRING, &state, DBUS_TYPE_INT32, &p,
                                 DBUS_TYPE_INT32, &code, DBUS_TYPE_STRING, &result_msg, DBUS_TYPE_INVALID))
    dbus_clear_message (&message);
  return bus_finish (bus_send (connection, message, &dbus_error), &dbus_error, error, error_len);
}

static DBusMessage *
bus_module_send (DBusConnection *connection, const char *method, const char *module, int timeout_ms,
                 DBusError *dbus_error)
{
  DBusMessage *message = bus_method (method);

  if (message != NULL && !dbus_message_append_args (message, DBUS_TYPE_STRING, &module, DBUS_TYPE_INVALID))
    dbus_clear_message (&message);
  return bus_send_within (connection, message, timeout_ms, dbus_error);
}

int
client_bus_module_call (DBusConnection *connection, const char *method, const char *module, char *error,
                        size_t error_len)
{
  DBusError dbus_error;

  dbus_error_init (&dbus_error);
  return bus_finish (bus_module_send (connection, method, module, CALL_TIMEOUT_MS, &dbus_error), &dbus_error, error,
                     error_len);
}

int
client_bus_module_request (DBusConnection *connection, const char *method, const char *module, char *error,
                           size_t error_len)
{
  DBusError dbus_error;
  DBusMessage *reply;
  int code;

  dbus_error_init (&dbus_error);
  reply = bus_module_send (connection, method, module, QUERY_TIMEOUT_MS, &dbus_error);
  for (size_t i = 0; reply == NULL && i < sizeof request_error_codes / sizeof request_error_codes[0]; i++) {
    if (dbus_error_has_name (&dbus_error, request_error_codes[i].name)) {
      code = request_error_codes[i].code;
      bus_finish (NULL, &dbus_error, error, error_len);
      return code;
    }
  }
  return bus_finish_query (reply, &dbus_error, error, error_len);
}

/* Properties.Get of the agent: the reply, its iterator on the value inside
 * the variant. NULL when it cannot be read. */
static DBusMessage *
bus_get_property (DBusConnection *connection, const char *name, DBusMessageIter *value)
{
  DBusMessage *message = dbus_message_new_method_call (CLIENT_BUS_NAME, CLIENT_BUS_PATH, DBUS_INTERFACE_PROPERTIES,
                                                       "Get");
  const char *interface = CLIENT_BUS_INTERFACE;
  DBusMessageIter iter;
  DBusMessage *reply;
  DBusError error;

  dbus_error_init (&error);
  if (message != NULL && !dbus_message_append_args (message, DBUS_TYPE_STRING, &interface, DBUS_TYPE_STRING, &name,
                                                    DBUS_TYPE_INVALID))
    dbus_clear_message (&message);
  reply = bus_send (connection, message, &error);
  dbus_error_free (&error);
  if (reply == NULL)
    return NULL;
  if (!dbus_message_iter_init (reply, &iter) || dbus_message_iter_get_arg_type (&iter) != DBUS_TYPE_VARIANT) {
    dbus_message_unref (reply);
    return NULL;
  }
  dbus_message_iter_recurse (&iter, value);
  return reply;
}

static int
bus_read_bool (DBusMessageIter *iter)
{
  dbus_bool_t value = FALSE;

  if (dbus_message_iter_get_arg_type (iter) != DBUS_TYPE_BOOLEAN)
    return -1;
  dbus_message_iter_get_basic (iter, &value);
  return value ? 1 : 0;
}

int
client_bus_get_connected (DBusConnection *connection)
{
  DBusMessageIter value;
  DBusMessage *reply = bus_get_property (connection, "Connected", &value);
  int connected;

  if (reply == NULL)
    return -1;
  connected = bus_read_bool (&value);
  dbus_message_unref (reply);
  return connected;
}

/* ---- the status dictionary of a module ---- */

static bool
bus_read_string (DBusMessageIter *value, char **field)
{
  const char *text;

  if (dbus_message_iter_get_arg_type (value) != DBUS_TYPE_STRING)
    return true; /* a wrong type is ignored, like an unknown key */
  dbus_message_iter_get_basic (value, &text);
  return client_event_set (field, text);
}

/* One {sv} of a status: fills the matching field of @event. */
static bool
bus_read_status_entry (DBusMessageIter *entry, ClientEvent *event, char **installed)
{
  DBusMessageIter value;
  const char *key;
  int type;

  dbus_message_iter_get_basic (entry, &key);
  dbus_message_iter_next (entry);
  dbus_message_iter_recurse (entry, &value);
  type = dbus_message_iter_get_arg_type (&value);
  if (strcmp (key, "state") == 0)
    return bus_read_string (&value, &event->state);
  if (strcmp (key, "version") == 0)
    return bus_read_string (&value, installed);
  if (strcmp (key, "target_version") == 0)
    return bus_read_string (&value, &event->version);
  if (strcmp (key, "result_msg") == 0)
    return bus_read_string (&value, &event->result_msg);
  if (strcmp (key, "fail_kind") == 0 && type == DBUS_TYPE_STRING) {
    const char *kind;
    dbus_message_iter_get_basic (&value, &kind);
    client_copy_string (event->fail_kind, sizeof event->fail_kind, kind);
  }
  if (strcmp (key, "percent") == 0 && type == DBUS_TYPE_UINT32)
    dbus_message_iter_get_basic (&value, &event->percent);
  else if (strcmp (key, "downloaded") == 0 && type == DBUS_TYPE_UINT64)
    dbus_message_iter_get_basic (&value, &event->downloaded);
  else if (strcmp (key, "total") == 0 && type == DBUS_TYPE_UINT64)
    dbus_message_iter_get_basic (&value, &event->total);
  else if (strcmp (key, "result_code") == 0 && type == DBUS_TYPE_INT32)
    dbus_message_iter_get_basic (&value, &event->result_code);
  return true;
}

/* A PROGRESS event from one {sa{sv}} of Modules. */
static ClientEvent *
bus_read_module (DBusMessageIter *module_entry)
{
  ClientEvent *event = client_event_new (CLIENT_EVENT_PROGRESS);
  DBusMessageIter status, entry;
  char *installed = NULL;
  const char *name;
  bool ok;

  if (event == NULL)
    return NULL;
  dbus_message_iter_get_basic (module_entry, &name);
  dbus_message_iter_next (module_entry);
  dbus_message_iter_recurse (module_entry, &status);
  ok = client_event_set (&event->module, name) && client_event_set (&installed, "");
  for (; ok && dbus_message_iter_get_arg_type (&status) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (&status)) {
    dbus_message_iter_recurse (&status, &entry);
    ok = bus_read_status_entry (&entry, event, &installed);
  }
  /* As in Progress: the target version, or the installed one when none. */
  if (ok && event->version[0] == '\0')
    ok = client_event_set (&event->version, installed);
  free (installed);
  if (!ok) {
    client_event_free (event);
    return NULL;
  }
  return event;
}

ClientEvent *
client_bus_get_modules (DBusConnection *connection)
{
  ClientEventQueue list = { NULL, NULL };
  DBusMessageIter modules, entry;
  DBusMessage *reply = bus_get_property (connection, "Modules", &modules);

  if (reply == NULL)
    return NULL;
  if (dbus_message_iter_get_arg_type (&modules) == DBUS_TYPE_ARRAY &&
      dbus_message_iter_get_element_type (&modules) == DBUS_TYPE_DICT_ENTRY) {
    DBusMessageIter array;
    dbus_message_iter_recurse (&modules, &array);
    for (; dbus_message_iter_get_arg_type (&array) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (&array)) {
      ClientEvent *event;
      dbus_message_iter_recurse (&array, &entry);
      if ((event = bus_read_module (&entry)) != NULL)
        client_event_queue_push (&list, event);
    }
  }
  dbus_message_unref (reply);
  return list.head;
}

/* ---- signals ---- */

/* @event when its strings could be copied; NULL (and freed) when out of memory. */
static ClientEvent *
event_keep_if (ClientEvent *event, bool copied)
{
  if (copied)
    return event;
  client_event_free (event);
  return NULL;
}

static ClientEvent *
bus_parse_offered (DBusMessage *message)
{
  const char *module, *version;
  dbus_uint64_t size;
  ClientEvent *event;

  if (!dbus_message_get_args (message, NULL, DBUS_TYPE_STRING, &module, DBUS_TYPE_STRING, &version,
                              DBUS_TYPE_UINT64, &size, DBUS_TYPE_INVALID) ||
      (event = client_event_new (CLIENT_EVENT_OFFERED)) == NULL)
    return NULL;
  event->total = size;
  return event_keep_if (event, client_event_set (&event->module, module) &&
                                 client_event_set (&event->version, version));
}

static ClientEvent *
bus_parse_progress (DBusMessage *message)
{
  const char *module, *version, *state, *msg;
  dbus_uint32_t percent;
  dbus_uint64_t downloaded, total;
  dbus_int32_t code;
  ClientEvent *event;

  if (!dbus_message_get_args (message, NULL, DBUS_TYPE_STRING, &module, DBUS_TYPE_STRING, &version,
                              DBUS_TYPE_STRING, &state, DBUS_TYPE_UINT32, &percent, DBUS_TYPE_UINT64, &downloaded,
                              DBUS_TYPE_UINT64, &total, DBUS_TYPE_INT32, &code, DBUS_TYPE_STRING, &msg,
                              DBUS_TYPE_INVALID) ||
      (event = client_event_new (CLIENT_EVENT_PROGRESS)) == NULL)
    return NULL;
  event->percent = percent;
  event->downloaded = downloaded;
  event->total = total;
  event->result_code = code;
  return event_keep_if (event, client_event_set (&event->module, module) &&
                                 client_event_set (&event->version, version) &&
                                 client_event_set (&event->state, state) && client_event_set (&event->result_msg, msg));
}

static ClientEvent *
bus_parse_ready (DBusMessage *message)
{
  const char *module, *version, *path, *md5;
  dbus_uint64_t size;
  ClientEvent *event;

  if (!dbus_message_get_args (message, NULL, DBUS_TYPE_STRING, &module, DBUS_TYPE_STRING, &version,
                              DBUS_TYPE_STRING, &path, DBUS_TYPE_UINT64, &size, DBUS_TYPE_STRING, &md5,
                              DBUS_TYPE_INVALID) ||
      (event = client_event_new (CLIENT_EVENT_READY)) == NULL)
    return NULL;
  event->total = size;
  return event_keep_if (event, client_event_set (&event->module, module) &&
                                 client_event_set (&event->version, version) &&
                                 client_event_set (&event->path, path) && client_event_set (&event->md5, md5));
}

/* PropertiesChanged: a CONNECTION event when Connected is among the changes. */
static ClientEvent *
bus_parse_properties (DBusMessage *message)
{
  DBusMessageIter iter, changed, entry, value;
  ClientEvent *event;
  const char *name;
  int connected = -1;

  if (!dbus_message_has_signature (message, "sa{sv}as") || !dbus_message_iter_init (message, &iter))
    return NULL;
  dbus_message_iter_next (&iter);
  dbus_message_iter_recurse (&iter, &changed);
  for (; dbus_message_iter_get_arg_type (&changed) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (&changed)) {
    dbus_message_iter_recurse (&changed, &entry);
    dbus_message_iter_get_basic (&entry, &name);
    dbus_message_iter_next (&entry);
    dbus_message_iter_recurse (&entry, &value);
    if (strcmp (name, "Connected") == 0)
      connected = bus_read_bool (&value);
  }
  if (connected < 0 || (event = client_event_new (CLIENT_EVENT_CONNECTION)) == NULL)
    return NULL;
  event->flag = connected == 1;
  return event;
}

/* The fail_kind of one module's a{sv}, "" when absent. */
static const char *
bus_status_fail_kind (DBusMessageIter *dict)
{
  DBusMessageIter entry, value;
  const char *key, *kind;

  for (; dbus_message_iter_get_arg_type (dict) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (dict)) {
    dbus_message_iter_recurse (dict, &entry);
    dbus_message_iter_get_basic (&entry, &key);
    dbus_message_iter_next (&entry);
    dbus_message_iter_recurse (&entry, &value);
    if (strcmp (key, "fail_kind") == 0 && dbus_message_iter_get_arg_type (&value) == DBUS_TYPE_STRING) {
      dbus_message_iter_get_basic (&value, &kind);
      return kind;
    }
  }
  return "";
}

/* @modules: the a{sa{sv}} inside the variant of Modules. */
static void
bus_parse_modules_fail_kinds (DBusMessageIter *modules, void (*found) (const char *, const char *, void *),
                              void *data)
{
  DBusMessageIter array, module, dict;
  const char *name;

  if (dbus_message_iter_get_arg_type (modules) != DBUS_TYPE_ARRAY ||
      dbus_message_iter_get_element_type (modules) != DBUS_TYPE_DICT_ENTRY)
    return;
  dbus_message_iter_recurse (modules, &array);
  for (; dbus_message_iter_get_arg_type (&array) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (&array)) {
    dbus_message_iter_recurse (&array, &module);
    dbus_message_iter_get_basic (&module, &name);
    dbus_message_iter_next (&module);
    if (dbus_message_iter_get_arg_type (&module) != DBUS_TYPE_ARRAY)
      continue;
    dbus_message_iter_recurse (&module, &dict);
    found (name, bus_status_fail_kind (&dict), data);
  }
}

void
client_bus_parse_fail_kinds (DBusMessage *message, void (*found) (const char *, const char *, void *), void *data)
{
  DBusMessageIter iter, changed, entry, value;
  const char *name;

  if (!dbus_message_is_signal (message, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged") ||
      !dbus_message_has_signature (message, "sa{sv}as") || !dbus_message_iter_init (message, &iter))
    return;
  dbus_message_iter_next (&iter);
  dbus_message_iter_recurse (&iter, &changed);
  for (; dbus_message_iter_get_arg_type (&changed) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (&changed)) {
    dbus_message_iter_recurse (&changed, &entry);
    dbus_message_iter_get_basic (&entry, &name);
    dbus_message_iter_next (&entry);
    dbus_message_iter_recurse (&entry, &value);
    if (strcmp (name, "Modules") == 0)
      bus_parse_modules_fail_kinds (&value, found, data);
  }
}

ClientEvent *
client_bus_parse_signal (DBusMessage *message)
{
  if (dbus_message_is_signal (message, CLIENT_BUS_INTERFACE, "UpdateOffered"))
    return bus_parse_offered (message);
  if (dbus_message_is_signal (message, CLIENT_BUS_INTERFACE, "Progress"))
    return bus_parse_progress (message);
  if (dbus_message_is_signal (message, CLIENT_BUS_INTERFACE, "FirmwareReady"))
    return bus_parse_ready (message);
  if (dbus_message_is_signal (message, DBUS_INTERFACE_PROPERTIES, "PropertiesChanged"))
    return bus_parse_properties (message);
  return NULL;
}

/* ---- the status of the agent and every module (iv_ota_status_get) ---- */

static char status_empty[] = "";

/* Replaces *@field by a copy of @value; false when out of memory. */
static bool
status_set (const char **field, const char *value)
{
  char *copy = strdup (value);

  if (copy == NULL)
    return false;
  if (*field != status_empty)
    free ((char *) *field);
  *field = copy;
  return true;
}

static void
status_free_string (const char *text)
{
  if (text != status_empty)
    free ((char *) text);
}

static void
module_status_init (iv_ota_module_status_s *m)
{
  memset (m, 0, sizeof *m);
  m->module = m->state = m->version = m->target_version = status_empty;
  m->path = m->owner = m->result_msg = status_empty;
  m->signing_key = m->signing_key_file = status_empty;
  m->signature_checked = -1; /* the key is absent when the agent checks no signature */
  m->inhibited = status_empty;
}

static void
module_status_clear (iv_ota_module_status_s *m)
{
  status_free_string (m->module);
  status_free_string (m->state);
  status_free_string (m->version);
  status_free_string (m->target_version);
  status_free_string (m->path);
  status_free_string (m->owner);
  status_free_string (m->result_msg);
  status_free_string (m->signing_key);
  status_free_string (m->signing_key_file);
  status_free_string (m->inhibited);
}

void
client_status_free (iv_ota_status_s *status)
{
  iv_ota_module_status_s *modules;

  if (status == NULL)
    return;
  modules = (iv_ota_module_status_s *) status->modules;
  for (size_t i = 0; i < status->n_modules; i++)
    module_status_clear (&modules[i]);
  free (modules);
  status_free_string (status->agent);
  status_free_string (status->daemon_version);
  free (status);
}

/* A string value of a status entry; any other type is ignored, like an unknown key. */
static bool
status_read_string (DBusMessageIter *value, const char **field)
{
  const char *text;

  if (dbus_message_iter_get_arg_type (value) != DBUS_TYPE_STRING)
    return true;
  dbus_message_iter_get_basic (value, &text);
  return status_set (field, text);
}

static void
status_read_number (DBusMessageIter *value, int type, void *field)
{
  if (dbus_message_iter_get_arg_type (value) == type)
    dbus_message_iter_get_basic (value, field);
}

static const struct {
  const char *key;
  size_t offset;
} status_strings[] = {
  { "state", offsetof (iv_ota_module_status_s, state) },
  { "version", offsetof (iv_ota_module_status_s, version) },
  { "target_version", offsetof (iv_ota_module_status_s, target_version) },
  { "path", offsetof (iv_ota_module_status_s, path) },
  { "owner", offsetof (iv_ota_module_status_s, owner) },
  { "result_msg", offsetof (iv_ota_module_status_s, result_msg) },
  { "signing_key", offsetof (iv_ota_module_status_s, signing_key) },
  { "signing_key_file", offsetof (iv_ota_module_status_s, signing_key_file) },
};

/* An as value, joined with "; " (Inhibit reasons); any other type is ignored. */
static bool
status_read_joined (DBusMessageIter *value, const char **field)
{
  DBusMessageIter array;
  size_t length = 0;
  char *joined;

  if (dbus_message_iter_get_arg_type (value) != DBUS_TYPE_ARRAY ||
      dbus_message_iter_get_element_type (value) != DBUS_TYPE_STRING)
    return true;
  dbus_message_iter_recurse (value, &array);
  for (DBusMessageIter it = array; dbus_message_iter_get_arg_type (&it) == DBUS_TYPE_STRING;
       dbus_message_iter_next (&it)) {
    const char *text;
    dbus_message_iter_get_basic (&it, &text);
    length += strlen (text) + 2;
  }
  if ((joined = calloc (length + 1, 1)) == NULL)
    return false;
  for (DBusMessageIter it = array; dbus_message_iter_get_arg_type (&it) == DBUS_TYPE_STRING;
       dbus_message_iter_next (&it)) {
    const char *text;
    dbus_message_iter_get_basic (&it, &text);
    if (*joined != '\0')
      strcat (joined, "; ");
    strcat (joined, text);
  }
  status_free_string (*field);
  *field = joined;
  return true;
}

/* One {sv} of a module's status. */
static bool
status_read_module_entry (DBusMessageIter *entry, iv_ota_module_status_s *m)
{
  DBusMessageIter value;
  dbus_uint32_t percent = 0, security_version = 0;
  int checked;
  const char *key;

  dbus_message_iter_get_basic (entry, &key);
  dbus_message_iter_next (entry);
  dbus_message_iter_recurse (entry, &value);
  for (size_t i = 0; i < sizeof status_strings / sizeof status_strings[0]; i++) {
    if (strcmp (key, status_strings[i].key) == 0)
      return status_read_string (&value, (const char **) ((char *) m + status_strings[i].offset));
  }
  if (strcmp (key, "inhibited") == 0)
    return status_read_joined (&value, &m->inhibited);
  if (strcmp (key, "downloaded") == 0) {
    status_read_number (&value, DBUS_TYPE_UINT64, &m->downloaded);
  } else if (strcmp (key, "total") == 0) {
    status_read_number (&value, DBUS_TYPE_UINT64, &m->total);
  } else if (strcmp (key, "result_code") == 0) {
    status_read_number (&value, DBUS_TYPE_INT32, &m->result_code);
  } else if (strcmp (key, "percent") == 0) {
    status_read_number (&value, DBUS_TYPE_UINT32, &percent);
    m->percent = percent;
  } else if (strcmp (key, "security_version") == 0) {
    status_read_number (&value, DBUS_TYPE_UINT32, &security_version);
    m->security_version = security_version;
  } else if (strcmp (key, "signature_checked") == 0 && (checked = bus_read_bool (&value)) >= 0) {
    m->signature_checked = checked;
  }
  return true;
}

/* One {sa{sv}} of Modules. */
static bool
status_read_module (DBusMessageIter *module_entry, iv_ota_module_status_s *m)
{
  DBusMessageIter dict, entry;
  const char *name;

  dbus_message_iter_get_basic (module_entry, &name);
  if (!status_set (&m->module, name))
    return false;
  dbus_message_iter_next (module_entry);
  if (dbus_message_iter_get_arg_type (module_entry) != DBUS_TYPE_ARRAY)
    return true;
  dbus_message_iter_recurse (module_entry, &dict);
  for (; dbus_message_iter_get_arg_type (&dict) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (&dict)) {
    dbus_message_iter_recurse (&dict, &entry);
    if (!status_read_module_entry (&entry, m))
      return false;
  }
  return true;
}

/* The value of Modules, a{sa{sv}}: fills @status->modules. */
static bool
status_read_modules (DBusMessageIter *value, iv_ota_status_s *status)
{
  DBusMessageIter array, entry;
  iv_ota_module_status_s *modules;
  size_t count = 0;

  if (dbus_message_iter_get_arg_type (value) != DBUS_TYPE_ARRAY ||
      dbus_message_iter_get_element_type (value) != DBUS_TYPE_DICT_ENTRY)
    return true;
  dbus_message_iter_recurse (value, &array);
  for (DBusMessageIter it = array; dbus_message_iter_get_arg_type (&it) == DBUS_TYPE_DICT_ENTRY;
       dbus_message_iter_next (&it))
    count++;
  if (count == 0 || status->modules != NULL)
    return true; /* a second Modules entry is ignored */
  if ((modules = calloc (count, sizeof *modules)) == NULL)
    return false;
  status->modules = modules;
  for (; status->n_modules < count; dbus_message_iter_next (&array)) {
    module_status_init (&modules[status->n_modules]);
    dbus_message_iter_recurse (&array, &entry);
    /* Counted now, so that a failure frees what this entry holds. */
    if (!status_read_module (&entry, &modules[status->n_modules++]))
      return false;
  }
  return true;
}

/* One {sv} of GetAll: Connected, DaemonVersion or Modules. */
static bool
status_read_property (DBusMessageIter *entry, iv_ota_status_s *status)
{
  DBusMessageIter value;
  const char *name;
  int connected;

  dbus_message_iter_get_basic (entry, &name);
  dbus_message_iter_next (entry);
  dbus_message_iter_recurse (entry, &value);
  if (strcmp (name, "Modules") == 0)
    return status_read_modules (&value, status);
  if (strcmp (name, "DaemonVersion") == 0)
    return status_read_string (&value, &status->daemon_version);
  if (strcmp (name, "Connected") == 0 && (connected = bus_read_bool (&value)) >= 0)
    status->cloud_connected = connected;
  return true;
}

/* A new status read from a GetAll reply; NULL when out of memory. */
static iv_ota_status_s *
status_from_reply (DBusMessage *reply)
{
  iv_ota_status_s *status = calloc (1, sizeof *status);
  const char *sender = dbus_message_get_sender (reply);
  DBusMessageIter iter, dict, entry;
  bool ok;

  if (status == NULL)
    return NULL;
  status->agent = status->daemon_version = status_empty;
  ok = status_set (&status->agent, sender != NULL ? sender : "");
  if (ok && dbus_message_iter_init (reply, &iter) && dbus_message_iter_get_arg_type (&iter) == DBUS_TYPE_ARRAY) {
    dbus_message_iter_recurse (&iter, &dict);
    for (; ok && dbus_message_iter_get_arg_type (&dict) == DBUS_TYPE_DICT_ENTRY; dbus_message_iter_next (&dict)) {
      dbus_message_iter_recurse (&dict, &entry);
      ok = status_read_property (&entry, status);
    }
  }
  if (!ok) {
    client_status_free (status);
    return NULL;
  }
  return status;
}

/* The process id behind a unique bus name, 0 when the bus does not say. */
static unsigned int
bus_get_pid (DBusConnection *connection, const char *name)
{
  DBusMessage *message = dbus_message_new_method_call (DBUS_SERVICE_DBUS, DBUS_PATH_DBUS, DBUS_INTERFACE_DBUS,
                                                       "GetConnectionUnixProcessID");
  dbus_uint32_t pid = 0;
  DBusMessage *reply;
  DBusError error;

  dbus_error_init (&error);
  if (message != NULL && !dbus_message_append_args (message, DBUS_TYPE_STRING, &name, DBUS_TYPE_INVALID))
    dbus_clear_message (&message);
  reply = bus_send (connection, message, &error);
  if (reply != NULL && !dbus_message_get_args (reply, &error, DBUS_TYPE_UINT32, &pid, DBUS_TYPE_INVALID))
    pid = 0;
  dbus_error_free (&error);
  if (reply != NULL)
    dbus_message_unref (reply);
  return pid;
}

static int
status_compare (const void *a, const void *b)
{
  return strcmp (((const iv_ota_module_status_s *) a)->module, ((const iv_ota_module_status_s *) b)->module);
}

int
client_bus_get_status (DBusConnection *connection, iv_ota_status_s **out, char *error, size_t error_len)
{
  DBusMessage *message = dbus_message_new_method_call (CLIENT_BUS_NAME, CLIENT_BUS_PATH, DBUS_INTERFACE_PROPERTIES,
                                                       "GetAll");
  const char *interface = CLIENT_BUS_INTERFACE;
  iv_ota_module_status_s *modules;
  iv_ota_status_s *status;
  DBusError dbus_error;
  DBusMessage *reply;

  dbus_error_init (&dbus_error);
  if (message != NULL && !dbus_message_append_args (message, DBUS_TYPE_STRING, &interface, DBUS_TYPE_INVALID))
    dbus_clear_message (&message);
  reply = bus_send_within (connection, message, QUERY_TIMEOUT_MS, &dbus_error);
  if (reply == NULL)
    return bus_finish_query (NULL, &dbus_error, error, error_len);
  status = status_from_reply (reply);
  dbus_message_unref (reply);
  if (status == NULL) {
    client_set_error (error, error_len, "out of memory");
    return IV_ERR_OTA_NO_RESOURCES;
  }
  modules = (iv_ota_module_status_s *) status->modules;
  if (status->n_modules > 1)
    qsort (modules, status->n_modules, sizeof *modules, status_compare);
  /* Who the owner is, for people: the bus knows its process. */
  for (size_t i = 0; i < status->n_modules; i++) {
    if (*modules[i].owner != '\0')
      modules[i].owner_pid = bus_get_pid (connection, modules[i].owner);
  }
  *out = status;
  return IV_ERR_NONE;
}
