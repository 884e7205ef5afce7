/* libiv-ota internals, shared by the public API (iv-ota-client.c), the library
 * thread (client-loop.c), the D-Bus calls (client-bus.c), the events
 * (client-event.c) and small helpers (client-util.c). Nothing here is
 * exported. */
#pragma once

#include "iv_ota.h"
#include "iv_ota_ext.h"

#include <dbus/dbus.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIENT_BUS_NAME "org.iv.Ota"
#define CLIENT_BUS_PATH "/org/iv/Ota"
#define CLIENT_BUS_INTERFACE "org.iv.Ota"
#define CLIENT_BUS_CLOUD_INTERFACE "org.iv.Ota.Cloud"
/* Room for an error message handed back to the caller of an API function. */
#define CLIENT_ERROR_LEN 256
/* Longest state name ("downloading", "verifying"...), NUL included. */
#define CLIENT_STATE_LEN 16
/* Room for the agent's fail_kind ("not-found"...); a longer, unknown kind
 * truncated here still matches no known one. */
#define CLIENT_FAIL_KIND_LEN 32

/* A module owned by this process (the opaque iv_ota_module_s). The fields
 * above "library thread only" are set before the handle is published and
 * never change afterwards. */
struct iv_ota_module {
  char *name;
  char *dir; /* absolute */
  char version[IV_OTA_FIRMWARE_VERSION_MAX_LEN];
  iv_ota_init_parm_s parm; /* the callbacks; path and version fields unused */
  void *user_data;
  bool classic;
  /* Library thread only. */
  char *agent;                  /* unique name of the agent that took our Init; NULL when not registered */
  char state[CLIENT_STATE_LEN]; /* the module's last Progress state */
  /* fail_kind of the module in the agent's Modules property as last changed:
   * the property changes before the Progress that follows it. */
  char fail_kind[CLIENT_FAIL_KIND_LEN];
  /* download_size_cb: the largest size known for size_version, the last one
   * given to the app, and when to give it again (0: not downloading). */
  char size_version[IV_OTA_FIRMWARE_VERSION_MAX_LEN];
  uint64_t size_known, size_given;
  int64_t size_tick_at; /* monotonic ms */
  bool exiting;
  /* Allocated up front, so that exiting cannot fail for want of memory. */
  struct ClientEvent *exit_event;
  struct iv_ota_module *next;
};

struct iv_ota_observer {
  iv_ota_observer_cb callback;
  void *user_data;
  bool removed; /* library thread only */
  struct ClientEvent *release_event; /* allocated up front, like exit_event */
  struct iv_ota_observer *next;
};

/* A subscription of this process (the opaque iv_ota_subscription_s). */
struct iv_ota_subscription {
  char *filter;
  iv_ota_message_cb callback;
  void *user_data;
  bool removed; /* library thread only */
  struct ClientEvent *release_event; /* allocated up front, like an observer's */
  struct iv_ota_subscription *next;
};

/* ---- events: what the library thread delivers, in order ---- */

typedef enum {
  CLIENT_EVENT_OFFERED,     /* UpdateOffered */
  CLIENT_EVENT_PROGRESS,    /* Progress */
  CLIENT_EVENT_READY,       /* FirmwareReady */
  CLIENT_EVENT_CONNECTION,  /* Connected changed: flag */
  CLIENT_EVENT_AGENT,       /* the owner of org.iv.Ota changed to @owner ("" when none) */
  CLIENT_EVENT_THREAD_EXIT, /* run @handle's thread_exit_cb (flag: mqtt online), then free it */
  CLIENT_EVENT_RELEASE,     /* free @observer, removed from inside a callback */
  CLIENT_EVENT_MESSAGE,     /* org.iv.Ota.Cloud.Message: @topic, @payload */
  CLIENT_EVENT_RELEASE_SUBSCRIPTION, /* free @subscription, ended from inside a callback */
} ClientEventKind;

typedef struct ClientEvent {
  struct ClientEvent *next;
  ClientEventKind kind;
  char *module, *version, *state, *result_msg, *path, *md5, *owner; /* never NULL */
  uint32_t percent;
  uint64_t downloaded, total;
  int32_t result_code;
  char fail_kind[CLIENT_FAIL_KIND_LEN]; /* PROGRESS: the agent's kind of failure, "" when none */
  bool flag;
  iv_ota_module_s *handle;
  /* For a snapshot event: the only observer it is for. */
  iv_ota_observer_s *observer;
  /* MESSAGE */
  char *topic;            /* never NULL */
  unsigned char *payload; /* NULL when empty */
  size_t payload_len;
  /* RELEASE_SUBSCRIPTION */
  iv_ota_subscription_s *subscription;
} ClientEvent;

typedef struct {
  ClientEvent *head, *tail;
} ClientEventQueue;

/* A new event with every string "" (NULL when out of memory). */
ClientEvent *client_event_new (ClientEventKind kind);
/* Replaces *@field by a copy of @value (NULL: ""); false when out of memory. */
bool client_event_set (char **field, const char *value);
void client_event_free (ClientEvent *event);
void client_event_queue_push (ClientEventQueue *queue, ClientEvent *event);
/* Puts @events (a list) before the queued ones, keeping its order. */
void client_event_queue_push_front (ClientEventQueue *queue, ClientEvent *events);
ClientEvent *client_event_queue_pop (ClientEventQueue *queue);
/* Frees the queued events for @observer. */
void client_event_queue_drop_observer (ClientEventQueue *queue, const iv_ota_observer_s *observer);
void client_event_queue_clear (ClientEventQueue *queue);
/* The public view of @event; pointers into @event. */
void client_event_to_public (const ClientEvent *event, iv_ota_event_s *out);
/* The SDK's view of a failed download. */
void client_event_to_fail_info (const ClientEvent *event, iv_ota_fail_info_s *info);
/* The SDK's fail type of a failure of @fail_kind (the agent's fail_kind;
 * "" or unknown: by @result_code). */
iv_ota_fail_type_e client_fail_type (int result_code, const char *fail_kind);
/* Whether a failure of @fail_kind is one of getting the image (told to
 * download_fail_cb), not of installing it; "" or unknown: @was_downloading,
 * whether the module was offered, downloading or verifying. */
bool client_fail_is_download (const char *fail_kind, bool was_downloading);

/* ---- D-Bus (library thread only) ---- */

/* What the environment says, read on an application thread when the library
 * thread starts (never by the library thread, whose getenv would race with
 * the application's setenv). */
typedef struct {
  char *bus;               /* IV_OTA_BUS: "system", "session", an address; NULL: system */
  int init_timeout_ms;     /* IV_OTA_INIT_TIMEOUT: how long an open waits for the agent */
} ClientSettings;

/* Default of IV_OTA_INIT_TIMEOUT, in seconds. */
#define CLIENT_INIT_TIMEOUT_DEFAULT_S 30
/* Largest IV_OTA_INIT_TIMEOUT accepted, in seconds (one day). */
#define CLIENT_INIT_TIMEOUT_MAX_S 86400

/* A private connection to the bus @bus names (IV_OTA_BUS), never exiting the
 * app, with the match rules for the agent's signals already active. */
DBusConnection *client_bus_connect (const char *bus, char *error, size_t error_len);
/* Appends the options a{sv} of a call: {@key: <@value>}, or {} when @key is
 * NULL. */
bool client_bus_append_bool_option (DBusMessageIter *iter, const char *key, bool value);
void client_bus_disconnect (DBusConnection *connection);
/* Unique name of the owner of org.iv.Ota, NULL when none (caller frees). */
char *client_bus_get_agent (DBusConnection *connection);
/* Init for @handle. On success *@agent is the unique name that answered.
 * Returns IV_ERR_NONE or an IV_ERR_OTA_* code with @error set. */
int client_bus_init (DBusConnection *connection, const iv_ota_module_s *handle, char **agent, char *error,
                     size_t error_len);
int client_bus_prepare (DBusConnection *connection, const char *module, const char *version, bool accept,
                        char *error, size_t error_len);
int client_bus_report (DBusConnection *connection, const char *module, const char *state, int percent,
                       int result_code, const char *message, char *error, size_t error_len);
/* A method taking only the module: Cancel, CheckNow, Exit. */
int client_bus_module_call (DBusConnection *connection, const char *method, const char *module, char *error,
                            size_t error_len);
/* The same for a module this process may not own: NotOwner and NoSuchModule
 * keep codes of their own (IV_ERR_OTA_NOT_OWNER, IV_ERR_OTA_NO_SUCH_MODULE). */
int client_bus_module_request (DBusConnection *connection, const char *method, const char *module, char *error,
                               size_t error_len);
/* The agent and its modules (Properties.GetAll), for iv_ota_status_get. */
int client_bus_get_status (DBusConnection *connection, iv_ota_status_s **status, char *error, size_t error_len);
/* The Connected property: 1, 0, or -1 when it cannot be read. */
int client_bus_get_connected (DBusConnection *connection);
/* One PROGRESS event per module of the Modules property, in a list. */
ClientEvent *client_bus_get_modules (DBusConnection *connection);
/* The event for a signal of the agent, or NULL for anything else. */
ClientEvent *client_bus_parse_signal (DBusMessage *message);
/* For a PropertiesChanged of the agent that carries Modules: calls @found
 * with each module's name and fail_kind ("" when the agent has none). */
void client_bus_parse_fail_kinds (DBusMessage *message, void (*found) (const char *module, const char *fail_kind,
                                                                        void *data),
                                  void *data);

/* The IV_ERR_* code of an error the agent (or the bus) answered. */
int client_bus_error_code (const DBusError *error);

/* ---- the cloud connection (client-cloud.c; library thread only) ---- */

/* MQTT matching of @topic by the valid filter @filter ('$' topics are not
 * matched by a leading wildcard). */
bool client_topic_matches (const char *filter, const char *topic);
/* Publish: IV_ERR_NONE or an IV_ERR_* code with @error set. */
int client_cloud_publish (DBusConnection *connection, const char *topic, const void *payload, size_t length, int qos,
                          bool queue, char *error, size_t error_len);
/* Subscribe or Unsubscribe (@method) of @filter. */
int client_cloud_filter_call (DBusConnection *connection, const char *method, const char *filter, char *error,
                              size_t error_len);
/* The MESSAGE event of a Message signal, NULL for anything else. */
ClientEvent *client_cloud_parse_message (DBusMessage *message);
void client_subscription_free (iv_ota_subscription_s *subscription);

/* ---- the library thread ---- */

typedef enum {
  CLIENT_REQUEST_OPEN,
  CLIENT_REQUEST_PROGRESS,
  CLIENT_REQUEST_CHECK_NOW,
  CLIENT_REQUEST_CANCEL,
  CLIENT_REQUEST_EXIT,
  CLIENT_REQUEST_OBSERVER_ADD,
  CLIENT_REQUEST_OBSERVER_REMOVE,
  /* Any module by name, no handle: they neither add nor drop a user. */
  CLIENT_REQUEST_STATUS,
  CLIENT_REQUEST_CHECK_MODULE,
  CLIENT_REQUEST_CANCEL_MODULE,
  /* The cloud connection: SUBSCRIBE adds a user, UNSUBSCRIBE drops one. */
  CLIENT_REQUEST_PUBLISH,
  CLIENT_REQUEST_SUBSCRIBE,
  CLIENT_REQUEST_UNSUBSCRIBE,
} ClientRequestKind;

/* A call to carry out on the library thread. Lives on the caller's stack. */
typedef struct ClientRequest {
  struct ClientRequest *next;
  ClientRequestKind kind;
  iv_ota_module_s *handle;
  iv_ota_observer_s *observer;
  /* OPEN, OBSERVER_ADD: set on success before any callback can run. */
  iv_ota_module_s **handle_out;
  iv_ota_observer_s **observer_out;
  /* PROGRESS */
  const char *state, *message;
  int percent, result_code;
  /* CHECK_MODULE, CANCEL_MODULE */
  const char *module;
  /* STATUS: set on success */
  iv_ota_status_s **status_out;
  /* PUBLISH */
  const char *topic;
  const void *payload;
  size_t payload_len;
  int qos;
  bool queue;
  /* SUBSCRIBE (set on success before any callback can run), UNSUBSCRIBE */
  iv_ota_subscription_s *subscription;
  iv_ota_subscription_s **subscription_out;
  /* Results */
  int result;
  char error[CLIENT_ERROR_LEN];
  bool done;
} ClientRequest;

/* Runs @request on the library thread (starting it when needed) and returns
 * its result; on the library thread itself, runs it at once. Thread: any. */
int client_submit (ClientRequest *request);

/* The classic handle of iv_ota_init. iv_ota_init claims the slot (false when
 * taken) and opens its handle, which the library thread publishes in the slot
 * before any of its callbacks can run; on failure iv_ota_init gives the slot
 * up. Only a published handle is used by the other classic calls. */
bool client_classic_claim (void);
void client_classic_unclaim (void);
/* Empties the slot: the published handle, or NULL when there is none. */
iv_ota_module_s *client_classic_take (void);
/* Submits @request for the published classic handle, or returns
 * IV_ERR_OTA_NOT_INITIALIZED when there is none. */
int client_classic_submit (ClientRequest *request);

/* The handle whose callback runs on this thread, NULL when none. */
iv_ota_module_s *client_current_handle (void);

void client_handle_free (iv_ota_module_s *handle);
/* Frees a status of client_bus_get_status, also when partly filled. */
void client_status_free (iv_ota_status_s *status);
void client_observer_free (iv_ota_observer_s *observer);

/* Reads IV_OTA_DEBUG, once per process; called on an application thread
 * before the library thread starts, so that thread never calls getenv. */
void client_log_setup (void);
/* Debug lines on stderr when IV_OTA_DEBUG is set. */
void client_log (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
/* Copies @source into @dest of @size bytes, truncating, always NUL-terminated. */
void client_copy_string (char *dest, size_t size, const char *source);
/* snprintf into @buffer that never fails on truncation. */
void client_set_error (char *buffer, size_t len, const char *format, ...) __attribute__ ((format (printf, 3, 4)));
