/* The library thread. It alone owns the D-Bus connection and runs callbacks.
 *
 * API calls from other threads become requests: queued under the lock, the
 * thread woken through an eventfd, the caller waiting on a condition variable
 * until the thread has carried the request out. On the library thread itself
 * (inside a callback) a request runs at once, so callbacks may call the API
 * without deadlock.
 *
 * Signals are turned into events by a libdbus filter and queued; the thread
 * delivers them after dispatching, outside any libdbus call, one at a time.
 * Work that must not happen inside a callback (thread_exit_cb after an exit
 * from a callback, freeing an observer removed from a callback) is queued the
 * same way, behind the current event.
 *
 * The thread starts with the first handle or observer and ends when the last
 * one goes; whoever closes the last one from another thread waits for it to
 * end, so nothing of the library runs on behind the application's back. */
#include "client.h"
#include "common/ota-vocabulary.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Bounds of the backoff between attempts to reach the bus or re-register. */
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 30000
/* download_size_cb while a module downloads: 4 times a second, as the SDK. */
#define SIZE_TICK_MS 250

typedef struct {
  ClientSettings settings;
  DBusConnection *connection;
  char *agent; /* unique name owning org.iv.Ota, NULL when none */
  iv_ota_module_s *handles;
  iv_ota_observer_s *observers;
  iv_ota_subscription_s *subscriptions;
  char *cloud_agent; /* the agent that has our subscriptions, NULL when none */
  ClientEventQueue events;
  int wake_fd;
  bool disconnected; /* the bus went away, seen while dispatching */
  int retry_ms;      /* 0: nothing to retry */
  int64_t retry_at;  /* monotonic ms */
  int64_t tick_at;   /* next download_size_cb tick, monotonic ms; 0: none */
} ClientLoop;

/* Shared with the API threads, under lock. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* a request is done, or a thread ended */
  ClientRequest *head, *tail;
  int wake_fd;         /* of the thread taking requests; -1 when none */
  bool active;         /* a thread takes requests */
  unsigned running;    /* threads not yet ended (an old one may still be closing) */
  unsigned users;      /* open handles and observers, and opens under way */
  bool classic_claimed;
  iv_ota_module_s *classic;
  int bus_fd;          /* socket of the running thread's bus connection; -1 when none */
} lib = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .cond = PTHREAD_COND_INITIALIZER,
  .wake_fd = -1,
  .bus_fd = -1,
};

static __thread ClientLoop *current_loop; /* set on the library thread */
static __thread iv_ota_module_s *current_handle;

/* ---- small helpers ---- */

static int64_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t
clamp32 (uint64_t value)
{
  return value > UINT32_MAX ? UINT32_MAX : (uint32_t) value;
}

iv_ota_module_s *
client_current_handle (void)
{
  return current_handle;
}

static void
lib_wake_locked (void)
{
  uint64_t one = 1;

  if (lib.wake_fd >= 0 && write (lib.wake_fd, &one, sizeof one) < 0)
    client_log ("cannot wake the library thread: %s", strerror (errno));
}

/* Remembers the socket of @connection (NULL: none) for a fork child. */
static void
lib_set_bus_fd (DBusConnection *connection)
{
  int fd = -1;

  if (connection != NULL && !dbus_connection_get_socket (connection, &fd))
    fd = -1;
  pthread_mutex_lock (&lib.lock);
  lib.bus_fd = fd;
  pthread_mutex_unlock (&lib.lock);
}

/* ---- fork ---- */

/* fork() copies the state of the library, but not its thread. The lock is
 * held across the fork, so that the child's copy is consistent. */
static void
lib_atfork_prepare (void)
{
  pthread_mutex_lock (&lib.lock);
}

static void
lib_atfork_parent (void)
{
  pthread_mutex_unlock (&lib.lock);
}

/* The child starts from nothing: no thread, no handle, no observer. Its copy
 * of the parent's bus socket is closed, so the parent's registration ends
 * with the parent (a child holding it would keep the agent believing that
 * the parent still owns its modules); the parent's handles are not the
 * child's. The child may register on its own with a new iv_ota_init. */
static void
lib_atfork_child (void)
{
  if (lib.bus_fd >= 0)
    close (lib.bus_fd);
  if (lib.wake_fd >= 0)
    close (lib.wake_fd);
  lib.bus_fd = lib.wake_fd = -1;
  lib.head = lib.tail = NULL;
  lib.active = false;
  lib.running = lib.users = 0;
  lib.classic_claimed = false;
  lib.classic = NULL;
  current_loop = NULL;
  current_handle = NULL;
  /* Threads of the parent may have waited on it: they are not in the child. */
  pthread_cond_init (&lib.cond, NULL);
  pthread_mutex_unlock (&lib.lock);
}

static void
lib_register_atfork (void)
{
  if (pthread_atfork (lib_atfork_prepare, lib_atfork_parent, lib_atfork_child) != 0)
    client_log ("pthread_atfork failed: a fork child would share the bus connection");
}

static void
lib_drop_user (void)
{
  pthread_mutex_lock (&lib.lock);
  lib.users--;
  pthread_mutex_unlock (&lib.lock);
}

/* ---- the module list ---- */

static iv_ota_module_s *
loop_find_handle (ClientLoop *loop, const char *module)
{
  for (iv_ota_module_s *h = loop->handles; h != NULL; h = h->next) {
    if (strcmp (h->name, module) == 0)
      return h;
  }
  return NULL;
}

static void
loop_append_handle (ClientLoop *loop, iv_ota_module_s *handle)
{
  iv_ota_module_s **link = &loop->handles;

  while (*link != NULL)
    link = &(*link)->next;
  handle->next = NULL;
  *link = handle;
}

static void
loop_unlink_handle (ClientLoop *loop, iv_ota_module_s *handle)
{
  for (iv_ota_module_s **link = &loop->handles; *link != NULL; link = &(*link)->next) {
    if (*link == handle) {
      *link = handle->next;
      return;
    }
  }
}

static void
handle_unregister (iv_ota_module_s *handle)
{
  free (handle->agent);
  handle->agent = NULL;
  handle->state[0] = '\0';
  handle->size_tick_at = 0; /* the new agent's Progress starts it again */
}

/* ---- connection and registration ---- */

static void
loop_schedule_retry (ClientLoop *loop)
{
  loop->retry_ms = loop->retry_ms == 0 ? RETRY_MIN_MS : loop->retry_ms * 2;
  if (loop->retry_ms > RETRY_MAX_MS)
    loop->retry_ms = RETRY_MAX_MS;
  loop->retry_at = now_ms () + loop->retry_ms;
}

static void
loop_queue_agent_event (ClientLoop *loop, const char *owner)
{
  ClientEvent *event = client_event_new (CLIENT_EVENT_AGENT);

  if (event == NULL || !client_event_set (&event->owner, owner)) {
    client_event_free (event);
    client_log ("out of memory: agent change to \"%s\" lost", owner);
    return;
  }
  client_event_queue_push (&loop->events, event);
}

/* NameOwnerChanged for org.iv.Ota: the agent came, left or restarted. The
 * owner is tracked here, in the order of the bus, so that signals are checked
 * against the right sender; registering again waits for the event. */
static void
loop_owner_changed (ClientLoop *loop, DBusMessage *message)
{
  const char *name, *old_owner, *new_owner;

  if (!dbus_message_has_sender (message, DBUS_SERVICE_DBUS) ||
      !dbus_message_get_args (message, NULL, DBUS_TYPE_STRING, &name, DBUS_TYPE_STRING, &old_owner,
                              DBUS_TYPE_STRING, &new_owner, DBUS_TYPE_INVALID) ||
      strcmp (name, CLIENT_BUS_NAME) != 0)
    return;
  free (loop->agent);
  loop->agent = *new_owner != '\0' ? strdup (new_owner) : NULL;
  client_log ("agent owner: \"%s\" -> \"%s\"", old_owner, new_owner);
  loop_queue_agent_event (loop, new_owner);
}

static bool
loop_from_agent (ClientLoop *loop, DBusMessage *message)
{
  const char *sender = dbus_message_get_sender (message);

  /* A signal sent straight to us by anyone else could fake a FirmwareReady. */
  return loop->agent != NULL && sender != NULL && strcmp (sender, loop->agent) == 0 &&
         dbus_message_has_path (message, CLIENT_BUS_PATH);
}

static void
loop_fail_kind_found (const char *module, const char *fail_kind, void *data)
{
  iv_ota_module_s *handle = loop_find_handle (data, module);

  if (handle != NULL)
    client_copy_string (handle->fail_kind, sizeof handle->fail_kind, fail_kind);
}

/* The signal of the agent @message, queued as an event. Modules changes before
 * the Progress that follows it: a failure's kind is taken from there. */
static void
loop_agent_signal (ClientLoop *loop, DBusMessage *message)
{
  ClientEvent *event;
  iv_ota_module_s *handle;

  if ((event = client_cloud_parse_message (message)) != NULL) {
    client_event_queue_push (&loop->events, event);
    return;
  }
  client_bus_parse_fail_kinds (message, loop_fail_kind_found, loop);
  if ((event = client_bus_parse_signal (message)) == NULL)
    return;
  if (event->kind == CLIENT_EVENT_PROGRESS && (handle = loop_find_handle (loop, event->module)) != NULL)
    client_copy_string (event->fail_kind, sizeof event->fail_kind, handle->fail_kind);
  client_event_queue_push (&loop->events, event);
}

static DBusHandlerResult
loop_filter (DBusConnection *connection, DBusMessage *message, void *data)
{
  ClientLoop *loop = data;

  if (dbus_message_is_signal (message, DBUS_INTERFACE_LOCAL, "Disconnected")) {
    loop->disconnected = true;
    return DBUS_HANDLER_RESULT_HANDLED;
  }
  if (dbus_message_is_signal (message, DBUS_INTERFACE_DBUS, "NameOwnerChanged"))
    loop_owner_changed (loop, message);
  else if (loop_from_agent (loop, message))
    loop_agent_signal (loop, message);
  return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
}

static bool
loop_connect (ClientLoop *loop, char *error, size_t error_len)
{
  loop->connection = client_bus_connect (loop->settings.bus, error, error_len);
  if (loop->connection == NULL)
    return false;
  if (!dbus_connection_add_filter (loop->connection, loop_filter, loop, NULL)) {
    client_bus_disconnect (loop->connection);
    loop->connection = NULL;
    client_set_error (error, error_len, "out of memory");
    return false;
  }
  loop->disconnected = false;
  lib_set_bus_fd (loop->connection);
  free (loop->agent);
  loop->agent = client_bus_get_agent (loop->connection);
  client_log ("connected to the bus; agent: %s", loop->agent != NULL ? loop->agent : "none");
  return true;
}

static bool
loop_ensure_connection (ClientLoop *loop, char *error, size_t error_len)
{
  return loop->connection != NULL || loop_connect (loop, error, error_len);
}

/* The bus went away: everything is registered again once it is back. */
static void
loop_drop_connection (ClientLoop *loop)
{
  bool had_agent = loop->agent != NULL;

  client_log ("lost the bus connection");
  lib_set_bus_fd (NULL);
  dbus_connection_remove_filter (loop->connection, loop_filter, loop);
  client_bus_disconnect (loop->connection);
  loop->connection = NULL;
  free (loop->agent);
  loop->agent = NULL;
  /* The agent dropped what our old connection had subscribed to. */
  free (loop->cloud_agent);
  loop->cloud_agent = NULL;
  for (iv_ota_module_s *h = loop->handles; h != NULL; h = h->next)
    handle_unregister (h);
  if (had_agent)
    loop_queue_agent_event (loop, "");
  loop_schedule_retry (loop);
}

/* One step of waiting for the agent: runs the connection for up to @ms (the
 * filter only queues events, and tracks the agent's name), or connects to
 * the bus again when it is not there. */
static void
loop_wait_step (ClientLoop *loop, int ms, char *error, size_t error_len)
{
  if (loop->connection == NULL) {
    if (!loop_connect (loop, error, error_len))
      poll (NULL, 0, ms);
    return;
  }
  dbus_connection_read_write_dispatch (loop->connection, ms);
  if (loop->disconnected)
    loop_drop_connection (loop);
}

static int
loop_register (ClientLoop *loop, iv_ota_module_s *handle, char *error, size_t error_len)
{
  char *agent = NULL;
  int result;

  if (loop->connection == NULL) {
    client_set_error (error, error_len, "not connected to the bus");
    return IV_ERR_OTA_NO_AGENT;
  }
  result = client_bus_init (loop->connection, handle, &agent, error, error_len);
  if (result == IV_ERR_NONE) {
    handle_unregister (handle);
    handle->agent = agent;
  }
  return result;
}

/* Registers every handle not yet registered with @owner; false if one failed. */
static bool
loop_register_all (ClientLoop *loop, const char *owner)
{
  char error[CLIENT_ERROR_LEN];
  bool ok = true;

  for (iv_ota_module_s *h = loop->handles; h != NULL; h = h->next) {
    if (h->agent != NULL && strcmp (h->agent, owner) == 0)
      continue;
    if (loop_register (loop, h, error, sizeof error) != IV_ERR_NONE) {
      client_log ("cannot register module \"%s\" again: %s", h->name, error);
      ok = false;
    } else {
      client_log ("module \"%s\" registered again with %s", h->name, h->agent);
    }
  }
  return ok;
}

/* ---- subscriptions ---- */

static bool
loop_filter_in_use (ClientLoop *loop, const char *filter, const iv_ota_subscription_s *except)
{
  for (iv_ota_subscription_s *s = loop->subscriptions; s != NULL; s = s->next) {
    if (s != except && !s->removed && strcmp (s->filter, filter) == 0)
      return true;
  }
  return false;
}

/* Makes every filter of the process again with @owner, a new agent that
 * knows nothing of them; false if one failed (retried later). */
static bool
loop_resubscribe (ClientLoop *loop, const char *owner)
{
  char error[CLIENT_ERROR_LEN];

  if (loop->subscriptions == NULL || loop->connection == NULL ||
      (loop->cloud_agent != NULL && strcmp (loop->cloud_agent, owner) == 0))
    return true;
  for (iv_ota_subscription_s *s = loop->subscriptions; s != NULL; s = s->next) {
    if (s->removed)
      continue;
    if (client_cloud_filter_call (loop->connection, "Subscribe", s->filter, error, sizeof error) != IV_ERR_NONE) {
      client_log ("cannot subscribe to %s again: %s", s->filter, error);
      return false;
    }
  }
  free (loop->cloud_agent);
  loop->cloud_agent = strdup (owner);
  client_log ("subscriptions made again with %s", owner);
  return true;
}

static void
loop_release_subscription (ClientLoop *loop, iv_ota_subscription_s *subscription)
{
  for (iv_ota_subscription_s **link = &loop->subscriptions; *link != NULL; link = &(*link)->next) {
    if (*link == subscription) {
      *link = subscription->next;
      break;
    }
  }
  client_subscription_free (subscription); /* frees its release_event */
}

/* A subscription added by one of these callbacks is appended after @last: it
 * gets the messages after this one. */
static void
loop_deliver_message (ClientLoop *loop, const ClientEvent *event)
{
  iv_ota_subscription_s *last = loop->subscriptions;

  if (last == NULL)
    return;
  while (last->next != NULL)
    last = last->next;
  for (iv_ota_subscription_s *s = loop->subscriptions;; s = s->next) {
    if (!s->removed && client_topic_matches (s->filter, event->topic))
      s->callback (event->topic, event->payload, event->payload_len, s->user_data);
    if (s == last)
      break;
  }
}

static void
loop_retry (ClientLoop *loop)
{
  char error[CLIENT_ERROR_LEN];

  if (loop->connection == NULL) {
    if (!loop_connect (loop, error, sizeof error)) {
      client_log ("%s", error);
      loop_schedule_retry (loop);
      return;
    }
    loop->retry_ms = 0;
    if (loop->agent != NULL)
      loop_queue_agent_event (loop, loop->agent);
    return;
  }
  loop->retry_ms = 0;
  if (loop->agent != NULL && (!loop_register_all (loop, loop->agent) || !loop_resubscribe (loop, loop->agent)))
    loop_schedule_retry (loop);
}

/* ---- delivering events ---- */

static void
loop_notify_observers (ClientLoop *loop, const ClientEvent *event)
{
  iv_ota_observer_s *last = loop->observers;
  iv_ota_observer_s *o;
  iv_ota_event_s public_event;

  if (last == NULL)
    return;
  /* An observer added by one of these callbacks is appended after @last: it
   * gets its snapshot first, and only the events after this one. */
  while (last->next != NULL)
    last = last->next;
  client_event_to_public (event, &public_event);
  for (o = loop->observers;; o = o->next) {
    if (!o->removed && (event->observer == NULL || event->observer == o))
      o->callback (&public_event, o->user_data);
    if (o == last)
      break;
  }
}

static void
module_offered (ClientLoop *loop, iv_ota_module_s *handle, const ClientEvent *event)
{
  char version[IV_OTA_FIRMWARE_VERSION_MAX_LEN];
  char error[CLIENT_ERROR_LEN];
  int answer;

  if (handle->parm.iv_ota_prepare_cb == NULL)
    return; /* the agent downloads by itself */
  /* The SDK hands out a writable string: a copy, so the app cannot harm the event. */
  client_copy_string (version, sizeof version, event->version);
  answer = handle->parm.iv_ota_prepare_cb (version, clamp32 (event->total));
  if (handle->exiting || loop->connection == NULL || handle->agent == NULL)
    return;
  if (client_bus_prepare (loop->connection, handle->name, event->version, answer == 0, error, sizeof error) !=
      IV_ERR_NONE)
    client_log ("cannot answer the offer of %s: %s", event->version, error);
}

static bool
state_is_download (const char *state)
{
  return ota_vocab_state_is_download (ota_vocab_state_parse (state));
}

/* download_size_cb as the SDK calls it: while the module downloads, every
 * SIZE_TICK_MS with the bytes downloaded so far (whenever the agent's
 * Progress signals come), never going back (a resumed image goes on from
 * where it was, also in a new session whose agent announces the download
 * before the resumed offset), never 0, and the image size before
 * firmware_update_cb. */

/* What the agent says of @version: @size bytes are downloaded. */
static void
size_learn (iv_ota_module_s *handle, const char *version, uint64_t size)
{
  if (strcmp (handle->size_version, version) != 0) {
    client_copy_string (handle->size_version, sizeof handle->size_version, version);
    handle->size_known = handle->size_given = 0;
  }
  if (size > handle->size_known)
    handle->size_known = size;
}

static void
size_give (iv_ota_module_s *handle)
{
  if (handle->parm.iv_ota_download_size_cb == NULL || handle->size_known == 0)
    return;
  handle->size_given = handle->size_known;
  handle->parm.iv_ota_download_size_cb (clamp32 (handle->size_known));
}

/* The download ended one way or another: the final size, if it is news. */
static void
size_stop (iv_ota_module_s *handle)
{
  handle->size_tick_at = 0;
  if (handle->size_known > handle->size_given)
    size_give (handle);
}

static void
module_progress (iv_ota_module_s *handle, const ClientEvent *event)
{
  bool was_download = state_is_download (handle->state);
  iv_ota_fail_info_s info;

  client_copy_string (handle->state, sizeof handle->state, event->state);
  if (ota_vocab_state_is (event->state, OTA_VOCAB_STATE_DOWNLOADING)) {
    size_learn (handle, event->version, event->downloaded);
    if (handle->size_tick_at == 0)
      handle->size_tick_at = now_ms (); /* the first one at once */
  } else if (ota_vocab_state_is (event->state, OTA_VOCAB_STATE_VERIFYING)) {
    size_learn (handle, event->version, event->downloaded);
    size_stop (handle);
  } else if (ota_vocab_state_is (event->state, OTA_VOCAB_STATE_FAIL)) {
    handle->size_tick_at = 0;
    /* The next attempt may start lower; the app is told of this failure. */
    handle->size_version[0] = '\0';
    if (client_fail_is_download (event->fail_kind, was_download) && handle->parm.iv_ota_download_fail_cb != NULL) {
      /* Only a failed download (an offer refused included): a failed
       * installation is no news to the app. */
      client_event_to_fail_info (event, &info);
      handle->parm.iv_ota_download_fail_cb (&info);
    }
  } else {
    handle->size_tick_at = 0;
  }
}

static void
module_ready (iv_ota_module_s *handle, const ClientEvent *event)
{
  char *path = strdup (event->path); /* writable, as the SDK's signature wants */

  if (path == NULL) {
    client_log ("out of memory: firmware %s not handed over", event->path);
    return;
  }
  size_learn (handle, event->version, event->total);
  size_stop (handle);
  if (handle->exiting) {
    free (path); /* download_size_cb called iv_ota_exit */
    return;
  }
  handle->parm.iv_ota_firmware_update_cb (path, clamp32 (event->total));
  free (path);
}

/* download_size_cb of every handle whose tick is due; returns the time of the
 * next tick (0: none). */
static int64_t
loop_run_size_ticks (ClientLoop *loop)
{
  iv_ota_module_s *outer = current_handle;
  int64_t now = now_ms (), next = 0;
  iv_ota_module_s *h;

  for (h = loop->handles; h != NULL; h = h->next) {
    if (h->agent == NULL || h->exiting)
      h->size_tick_at = 0;
    if (h->size_tick_at == 0 || now < h->size_tick_at)
      continue;
    h->size_tick_at = h->size_tick_at + SIZE_TICK_MS > now ? h->size_tick_at + SIZE_TICK_MS : now + SIZE_TICK_MS;
    current_handle = h;
    size_give (h);
    current_handle = outer;
    /* The callback may have closed handles: start over, nothing is due twice. */
    return loop_run_size_ticks (loop);
  }
  for (h = loop->handles; h != NULL; h = h->next) {
    if (h->size_tick_at != 0 && (next == 0 || h->size_tick_at < next))
      next = h->size_tick_at;
  }
  return next;
}

static void
loop_notify_module (ClientLoop *loop, const ClientEvent *event)
{
  iv_ota_module_s *handle = loop_find_handle (loop, event->module);
  iv_ota_module_s *outer = current_handle;

  if (handle == NULL || handle->agent == NULL)
    return;
  current_handle = handle;
  if (event->kind == CLIENT_EVENT_OFFERED)
    module_offered (loop, handle, event);
  else if (event->kind == CLIENT_EVENT_PROGRESS)
    module_progress (handle, event);
  else if (event->kind == CLIENT_EVENT_READY)
    module_ready (handle, event);
  current_handle = outer;
}

static void
loop_agent_changed (ClientLoop *loop, const char *owner)
{
  if (*owner == '\0') {
    /* Handles that registered with a newer agent already (from inside a
     * callback, see loop_catch_up) stay registered. */
    for (iv_ota_module_s *h = loop->handles; h != NULL; h = h->next) {
      if (h->agent != NULL && (loop->agent == NULL || strcmp (h->agent, loop->agent) != 0))
        handle_unregister (h);
    }
    return;
  }
  /* A new agent knows nothing of us: register again, same module, version,
   * directory and options, and the same subscriptions, so the app sees only
   * a pause. */
  if (!loop_register_all (loop, owner) || !loop_resubscribe (loop, owner))
    loop_schedule_retry (loop);
}

/* thread_exit_cb, then the handle is gone. */
static void
loop_thread_exit (ClientEvent *event)
{
  iv_ota_module_s *handle = event->handle;
  iv_ota_thread_exit_status_s status = { .mqtt_online = event->flag ? 1 : 0 };
  iv_ota_module_s *outer = current_handle;

  if (handle->parm.iv_ota_thread_exit_cb != NULL) {
    current_handle = handle;
    handle->parm.iv_ota_thread_exit_cb (status);
    current_handle = outer;
  }
  client_handle_free (handle); /* frees @event, its exit_event */
}

static void
loop_release_observer (ClientLoop *loop, iv_ota_observer_s *observer)
{
  for (iv_ota_observer_s **link = &loop->observers; *link != NULL; link = &(*link)->next) {
    if (*link == observer) {
      *link = observer->next;
      break;
    }
  }
  client_observer_free (observer); /* frees its release_event */
}

static void
loop_deliver (ClientLoop *loop, ClientEvent *event)
{
  if (event->kind == CLIENT_EVENT_THREAD_EXIT) {
    loop_thread_exit (event);
    return;
  }
  if (event->kind == CLIENT_EVENT_RELEASE) {
    loop_release_observer (loop, event->observer);
    return;
  }
  if (event->kind == CLIENT_EVENT_RELEASE_SUBSCRIPTION) {
    loop_release_subscription (loop, event->subscription);
    return;
  }
  if (event->kind == CLIENT_EVENT_MESSAGE) {
    loop_deliver_message (loop, event);
    client_event_free (event);
    return;
  }
  if (event->kind == CLIENT_EVENT_AGENT && event->observer == NULL)
    loop_agent_changed (loop, event->owner);
  loop_notify_observers (loop, event);
  if (event->observer == NULL)
    loop_notify_module (loop, event);
  client_event_free (event);
}

static void
loop_run_events (ClientLoop *loop)
{
  ClientEvent *event;

  while ((event = client_event_queue_pop (&loop->events)) != NULL)
    loop_deliver (loop, event);
}

/* ---- requests ---- */

static void
classic_publish (iv_ota_module_s *handle)
{
  pthread_mutex_lock (&lib.lock);
  lib.classic = handle;
  pthread_mutex_unlock (&lib.lock);
}

/* Init for a new handle. An application often starts before the agent (boot
 * order): when the agent is not there (and the bus cannot start it), wait up
 * to IV_OTA_INIT_TIMEOUT for it to appear, as the SDK's iv_ota_init waits to
 * be online. */
static int
loop_open_register (ClientLoop *loop, iv_ota_module_s *handle, char *error, size_t error_len)
{
  int64_t deadline = now_ms () + loop->settings.init_timeout_ms;
  int result = IV_ERR_OTA_NO_AGENT;
  bool waited = false;
  int64_t left;

  if (loop_ensure_connection (loop, error, error_len))
    result = loop_register (loop, handle, error, error_len);
  while (result == IV_ERR_OTA_NO_AGENT && (left = deadline - now_ms ()) > 0) {
    if (!waited)
      client_log ("module \"%s\": waiting up to %d ms for the agent", handle->name, loop->settings.init_timeout_ms);
    waited = true;
    loop_wait_step (loop, left < RETRY_MIN_MS ? (int) left : RETRY_MIN_MS, error, error_len);
    if (loop->connection != NULL && loop->agent != NULL)
      result = loop_register (loop, handle, error, error_len);
  }
  if (result == IV_ERR_OTA_NO_AGENT && waited && loop->connection != NULL)
    client_set_error (error, error_len, "the OTA agent (%s) did not appear on the bus within %d ms",
                      CLIENT_BUS_NAME, loop->settings.init_timeout_ms);
  return result;
}

/* thread_exit_cb of the sessions of @module that ended inside a callback and
 * whose thread_exit_cb still waits in the queue: a new session of the module
 * starts only after it (it may run nested in the callback that opens the new
 * session). */
static void
loop_run_pending_exits (ClientLoop *loop, const char *module)
{
  ClientEventQueue kept = { NULL, NULL }, exits = { NULL, NULL };
  ClientEvent *event;

  while ((event = client_event_queue_pop (&loop->events)) != NULL) {
    if (event->kind == CLIENT_EVENT_THREAD_EXIT && strcmp (event->handle->name, module) == 0)
      client_event_queue_push (&exits, event);
    else
      client_event_queue_push (&kept, event);
  }
  loop->events = kept;
  /* Taken out first: a thread_exit_cb may itself open a session again. */
  while ((event = client_event_queue_pop (&exits)) != NULL)
    loop_thread_exit (event);
}

static void
request_open (ClientLoop *loop, ClientRequest *request)
{
  iv_ota_module_s *handle = request->handle;

  loop_run_pending_exits (loop, handle->name);
  if (loop_find_handle (loop, handle->name) != NULL) {
    client_set_error (request->error, sizeof request->error, "module \"%s\" is already open in this process",
                      handle->name);
    request->result = IV_ERR_OTA_BUSY;
    return;
  }
  request->result = loop_open_register (loop, handle, request->error, sizeof request->error);
  if (request->result != IV_ERR_NONE)
    return;
  loop_append_handle (loop, handle);
  /* Before any callback: callbacks may use the handle, or the classic API. */
  if (handle->classic)
    classic_publish (handle);
  else
    *request->handle_out = handle;
}

/* Before a call about @handle: the bus's news that the thread has not seen
 * yet (it may be inside a callback, which blocks dispatching) are read now —
 * the filter only queues events and tracks the agent's name — and if the
 * agent restarted, @handle registers with the new one at once. So an app
 * that burns inside firmware_update_cb while the agent restarts can still
 * report burning, rebooting or done. */
static void
loop_catch_up (ClientLoop *loop, iv_ota_module_s *handle)
{
  char error[CLIENT_ERROR_LEN];

  if (loop->connection == NULL)
    return;
  if (dbus_connection_get_dispatch_status (loop->connection) != DBUS_DISPATCH_DATA_REMAINS)
    dbus_connection_read_write (loop->connection, 0);
  while (dbus_connection_dispatch (loop->connection) == DBUS_DISPATCH_DATA_REMAINS)
    ;
  if (loop->disconnected) {
    loop_drop_connection (loop);
    return;
  }
  if (loop->agent == NULL || (handle->agent != NULL && strcmp (handle->agent, loop->agent) == 0))
    return;
  if (loop_register (loop, handle, error, sizeof error) != IV_ERR_NONE)
    client_log ("cannot register module \"%s\" again: %s", handle->name, error);
  else
    client_log ("module \"%s\" registered again with %s", handle->name, handle->agent);
}

/* ReportProgress, Cancel or CheckNow of @request, to the agent @handle is
 * registered with. */
static int
module_call_once (ClientLoop *loop, ClientRequest *request)
{
  iv_ota_module_s *handle = request->handle;
  char *error = request->error;
  size_t len = sizeof request->error;

  if (loop->connection == NULL || handle->agent == NULL) {
    client_set_error (error, len, "the agent is not on the bus");
    return IV_ERR_OTA_NO_AGENT;
  }
  if (request->kind == CLIENT_REQUEST_PROGRESS)
    return client_bus_report (loop->connection, handle->name, request->state, request->percent,
                              request->result_code, request->message, error, len);
  return client_bus_module_call (loop->connection, request->kind == CLIENT_REQUEST_CANCEL ? "Cancel" : "CheckNow",
                                 handle->name, error, len);
}

static void
request_module_call (ClientLoop *loop, ClientRequest *request)
{
  iv_ota_module_s *handle = request->handle;
  char *before;

  if (handle->exiting) {
    client_set_error (request->error, sizeof request->error, "module \"%s\" has exited", handle->name);
    request->result = IV_ERR_OTA_INVALID_ARG;
    return;
  }
  loop_catch_up (loop, handle);
  request->result = module_call_once (loop, request);
  if (request->result == IV_ERR_NONE || loop->connection == NULL)
    return;
  /* The agent may have restarted between the catching up and the call (a new
   * agent answers NoSuchModule): once more if it registered anew. */
  before = handle->agent != NULL ? strdup (handle->agent) : NULL;
  loop_catch_up (loop, handle);
  if (handle->agent != NULL && (before == NULL || strcmp (before, handle->agent) != 0))
    request->result = module_call_once (loop, request);
  free (before);
}

static void
request_exit (ClientLoop *loop, ClientRequest *request, bool direct)
{
  iv_ota_module_s *handle = request->handle;
  ClientEvent *event = handle->exit_event;
  char error[CLIENT_ERROR_LEN];

  if (handle->exiting) {
    client_set_error (request->error, sizeof request->error, "module \"%s\" has exited", handle->name);
    request->result = IV_ERR_OTA_INVALID_ARG;
    return;
  }
  handle->exiting = true;
  loop_unlink_handle (loop, handle);
  if (loop->connection != NULL && handle->agent != NULL) {
    event->flag = client_bus_get_connected (loop->connection) == 1;
    if (client_bus_module_call (loop->connection, "Exit", handle->name, error, sizeof error) != IV_ERR_NONE)
      client_log ("Exit of module \"%s\": %s", handle->name, error);
  }
  event->handle = handle;
  request->result = IV_ERR_NONE;
  /* Inside a callback, thread_exit_cb must wait until that callback returns. */
  if (direct)
    client_event_queue_push (&loop->events, event);
  else
    loop_thread_exit (event);
  lib_drop_user ();
}

static void
queue_append_list (ClientEventQueue *queue, ClientEvent *list)
{
  for (ClientEvent *event = list, *next; event != NULL; event = next) {
    next = event->next;
    client_event_queue_push (queue, event);
  }
}

/* The state of things for a new observer, ahead of any live event: the
 * agent, its cloud connection, every module. */
static ClientEvent *
loop_snapshot (ClientLoop *loop, iv_ota_observer_s *observer)
{
  ClientEventQueue list = { NULL, NULL };
  ClientEvent *event = client_event_new (CLIENT_EVENT_AGENT);
  int connected;

  if (event != NULL && client_event_set (&event->owner, loop->agent))
    client_event_queue_push (&list, event);
  else
    client_event_free (event);
  if (loop->agent != NULL) {
    connected = client_bus_get_connected (loop->connection);
    if (connected >= 0 && (event = client_event_new (CLIENT_EVENT_CONNECTION)) != NULL) {
      event->flag = connected == 1;
      client_event_queue_push (&list, event);
    }
    queue_append_list (&list, client_bus_get_modules (loop->connection));
  }
  for (event = list.head; event != NULL; event = event->next)
    event->observer = observer;
  return list.head;
}

static void
request_observer_add (ClientLoop *loop, ClientRequest *request)
{
  iv_ota_observer_s **link = &loop->observers;

  if (!loop_ensure_connection (loop, request->error, sizeof request->error)) {
    request->result = IV_ERR_OTA_NO_AGENT;
    return;
  }
  while (*link != NULL)
    link = &(*link)->next;
  *link = request->observer;
  *request->observer_out = request->observer; /* before its first callback */
  client_event_queue_push_front (&loop->events, loop_snapshot (loop, request->observer));
  request->result = IV_ERR_NONE;
}

static void
request_observer_remove (ClientLoop *loop, ClientRequest *request, bool direct)
{
  iv_ota_observer_s *observer = request->observer;
  ClientEvent *event = observer->release_event;

  if (observer->removed) {
    request->result = IV_ERR_OTA_INVALID_ARG;
    return;
  }
  observer->removed = true;
  request->result = IV_ERR_NONE;
  if (direct) {
    /* The observer list may be being walked: unlink it later. */
    event->observer = observer;
    client_event_queue_push (&loop->events, event);
  } else {
    client_event_queue_drop_observer (&loop->events, observer);
    loop_release_observer (loop, observer);
  }
  lib_drop_user ();
}

/* STATUS, CHECK_MODULE, CANCEL_MODULE: about any module, no handle needed. */
static void
request_any_module (ClientLoop *loop, ClientRequest *request)
{
  char *error = request->error;
  size_t len = sizeof request->error;

  if (!loop_ensure_connection (loop, error, len))
    request->result = IV_ERR_OTA_NO_AGENT;
  else if (request->kind == CLIENT_REQUEST_STATUS)
    request->result = client_bus_get_status (loop->connection, request->status_out, error, len);
  else
    request->result = client_bus_module_request (
      loop->connection, request->kind == CLIENT_REQUEST_CANCEL_MODULE ? "Cancel" : "CheckNow", request->module,
      error, len);
}

static void
request_publish (ClientLoop *loop, ClientRequest *request)
{
  char *error = request->error;
  size_t len = sizeof request->error;

  if (!loop_ensure_connection (loop, error, len))
    request->result = IV_ERR_OTA_NO_AGENT;
  else
    request->result = client_cloud_publish (loop->connection, request->topic, request->payload, request->payload_len,
                                            request->qos, request->queue, error, len);
}

static void
request_subscribe (ClientLoop *loop, ClientRequest *request)
{
  iv_ota_subscription_s *subscription = request->subscription;
  char *error = request->error;
  size_t len = sizeof request->error;

  if (!loop_ensure_connection (loop, error, len) || loop->agent == NULL) {
    if (loop->connection != NULL)
      client_set_error (error, len, "the agent is not on the bus");
    request->result = IV_ERR_OTA_NO_AGENT;
    return;
  }
  /* Other subscriptions were made with an agent since gone: with this one too. */
  if (!loop_resubscribe (loop, loop->agent))
    loop_schedule_retry (loop);
  request->result = client_cloud_filter_call (loop->connection, "Subscribe", subscription->filter, error, len);
  if (request->result != IV_ERR_NONE)
    return;
  if (loop->subscriptions == NULL) {
    free (loop->cloud_agent);
    loop->cloud_agent = strdup (loop->agent);
  }
  subscription->next = loop->subscriptions;
  loop->subscriptions = subscription;
  *request->subscription_out = subscription; /* before its first callback */
}

static void
request_unsubscribe (ClientLoop *loop, ClientRequest *request, bool direct)
{
  iv_ota_subscription_s *subscription = request->subscription;
  ClientEvent *event = subscription->release_event;
  char error[CLIENT_ERROR_LEN];

  if (subscription->removed) {
    request->result = IV_ERR_OTA_INVALID_ARG;
    return;
  }
  subscription->removed = true;
  request->result = IV_ERR_NONE;
  /* The agent knows one subscription per filter and caller. */
  if (loop->connection != NULL && loop->agent != NULL && !loop_filter_in_use (loop, subscription->filter, NULL) &&
      client_cloud_filter_call (loop->connection, "Unsubscribe", subscription->filter, error, sizeof error) !=
        IV_ERR_NONE)
    client_log ("Unsubscribe %s: %s", subscription->filter, error);
  if (direct) {
    /* The subscription list may be being walked: unlink it later. */
    event->subscription = subscription;
    client_event_queue_push (&loop->events, event);
  } else {
    loop_release_subscription (loop, subscription);
  }
  lib_drop_user ();
}

static void
request_run (ClientLoop *loop, ClientRequest *request, bool direct)
{
  request->error[0] = '\0';
  switch (request->kind) {
  case CLIENT_REQUEST_OPEN:
    request_open (loop, request);
    break;
  case CLIENT_REQUEST_PROGRESS:
  case CLIENT_REQUEST_CHECK_NOW:
  case CLIENT_REQUEST_CANCEL:
    request_module_call (loop, request);
    break;
  case CLIENT_REQUEST_EXIT:
    request_exit (loop, request, direct);
    break;
  case CLIENT_REQUEST_OBSERVER_ADD:
    request_observer_add (loop, request);
    break;
  case CLIENT_REQUEST_OBSERVER_REMOVE:
    request_observer_remove (loop, request, direct);
    break;
  case CLIENT_REQUEST_STATUS:
  case CLIENT_REQUEST_CHECK_MODULE:
  case CLIENT_REQUEST_CANCEL_MODULE:
    request_any_module (loop, request);
    break;
  case CLIENT_REQUEST_PUBLISH:
    request_publish (loop, request);
    break;
  case CLIENT_REQUEST_SUBSCRIBE:
    request_subscribe (loop, request);
    break;
  case CLIENT_REQUEST_UNSUBSCRIBE:
    request_unsubscribe (loop, request, direct);
    break;
  }
}

static void
loop_run_requests (ClientLoop *loop)
{
  ClientRequest *request;

  for (;;) {
    pthread_mutex_lock (&lib.lock);
    request = lib.head;
    if (request != NULL && (lib.head = request->next) == NULL)
      lib.tail = NULL;
    pthread_mutex_unlock (&lib.lock);
    if (request == NULL)
      return;
    request_run (loop, request, false);
    pthread_mutex_lock (&lib.lock);
    request->done = true; /* the caller may return at once: @request is gone */
    pthread_cond_broadcast (&lib.cond);
    pthread_mutex_unlock (&lib.lock);
  }
}

/* ---- the thread ---- */

static void
loop_dispatch (ClientLoop *loop)
{
  if (loop->connection == NULL)
    return;
  while (dbus_connection_dispatch (loop->connection) == DBUS_DISPATCH_DATA_REMAINS)
    ;
  if (loop->disconnected)
    loop_drop_connection (loop);
}

static bool
loop_keep_running (ClientLoop *loop)
{
  bool stop;

  pthread_mutex_lock (&lib.lock);
  stop = lib.users == 0 && lib.head == NULL && loop->events.head == NULL;
  if (stop) {
    /* From now on a new user starts a new thread. */
    lib.active = false;
    lib.wake_fd = -1;
  }
  pthread_mutex_unlock (&lib.lock);
  return !stop;
}

static int
loop_timeout (ClientLoop *loop)
{
  int64_t at = 0, left;

  if (loop->retry_ms != 0)
    at = loop->retry_at;
  if (loop->tick_at != 0 && (at == 0 || loop->tick_at < at))
    at = loop->tick_at;
  if (at == 0)
    return -1;
  left = at - now_ms ();
  return left < 0 ? 0 : (int) left;
}

/* Sleeps until the bus, a request or a retry needs the thread. */
static void
loop_wait (ClientLoop *loop)
{
  struct pollfd fds[2] = { { loop->wake_fd, POLLIN, 0 }, { -1, POLLIN, 0 } };
  uint64_t count;

  if (loop->connection != NULL) {
    /* Messages read during a blocking call wait in libdbus, not in the socket. */
    if (dbus_connection_get_dispatch_status (loop->connection) == DBUS_DISPATCH_DATA_REMAINS)
      return;
    if (!dbus_connection_get_unix_fd (loop->connection, &fds[1].fd))
      fds[1].fd = -1;
    if (dbus_connection_has_messages_to_send (loop->connection))
      fds[1].events |= POLLOUT;
  }
  if (poll (fds, 2, loop_timeout (loop)) < 0)
    return; /* EINTR: go round */
  if (fds[0].revents != 0 && read (loop->wake_fd, &count, sizeof count) < 0 && errno != EAGAIN)
    client_log ("cannot read the wake-up counter: %s", strerror (errno));
  if (loop->connection != NULL && fds[1].revents != 0)
    dbus_connection_read_write (loop->connection, 0);
  if (loop->retry_ms != 0 && now_ms () >= loop->retry_at)
    loop_retry (loop);
}

static void
loop_finish (ClientLoop *loop)
{
  if (loop->connection != NULL) {
    lib_set_bus_fd (NULL);
    dbus_connection_remove_filter (loop->connection, loop_filter, loop);
    client_bus_disconnect (loop->connection);
  }
  free (loop->agent);
  free (loop->cloud_agent);
  free (loop->settings.bus);
  client_event_queue_clear (&loop->events);
  close (loop->wake_fd);
  current_loop = NULL;
  pthread_mutex_lock (&lib.lock);
  lib.running--;
  pthread_cond_broadcast (&lib.cond);
  pthread_mutex_unlock (&lib.lock);
}

/* What a new library thread starts with. */
typedef struct {
  int wake_fd;
  ClientSettings settings;
} ClientStart;

static void *
loop_main (void *data)
{
  ClientStart *start = data;
  ClientLoop loop = { .wake_fd = start->wake_fd, .settings = start->settings };

  free (start);
  current_loop = &loop;
  for (;;) {
    loop_run_requests (&loop);
    loop_dispatch (&loop);
    loop_run_events (&loop);
    loop.tick_at = loop_run_size_ticks (&loop);
    loop_run_events (&loop); /* what the size callbacks queued */
    if (!loop_keep_running (&loop))
      break;
    loop_wait (&loop);
  }
  loop_finish (&loop);
  return NULL;
}

/* IV_OTA_INIT_TIMEOUT in milliseconds: whole seconds, 0..one day. */
static int
settings_init_timeout (void)
{
  const char *text = getenv ("IV_OTA_INIT_TIMEOUT");
  char *end;
  long seconds;

  if (text == NULL || *text == '\0')
    return CLIENT_INIT_TIMEOUT_DEFAULT_S * 1000;
  errno = 0;
  seconds = strtol (text, &end, 10);
  if (errno != 0 || *end != '\0' || seconds < 0 || seconds > CLIENT_INIT_TIMEOUT_MAX_S) {
    client_log ("IV_OTA_INIT_TIMEOUT=%s is not 0..%d seconds: using %d", text, CLIENT_INIT_TIMEOUT_MAX_S,
                CLIENT_INIT_TIMEOUT_DEFAULT_S);
    return CLIENT_INIT_TIMEOUT_DEFAULT_S * 1000;
  }
  return (int) seconds * 1000;
}

/* The environment, read on the application's thread that starts the library
 * thread: the library thread itself never calls getenv. */
static ClientStart *
start_new (int wake_fd)
{
  ClientStart *start = calloc (1, sizeof *start);
  const char *bus = getenv ("IV_OTA_BUS");

  client_log_setup ();
  if (start == NULL)
    return NULL;
  start->wake_fd = wake_fd;
  start->settings.init_timeout_ms = settings_init_timeout ();
  if (bus != NULL && *bus != '\0' && (start->settings.bus = strdup (bus)) == NULL) {
    free (start);
    return NULL;
  }
  return start;
}

static void
start_free (ClientStart *start)
{
  free (start->settings.bus);
  free (start);
}

static int
lib_start_thread_locked (char *error, size_t error_len)
{
  int fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  sigset_t all, saved;
  pthread_attr_t attr;
  ClientStart *start;
  pthread_t thread;
  int rc;

  static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

  pthread_once (&atfork_once, lib_register_atfork);
  if (fd < 0) {
    client_set_error (error, error_len, "eventfd: %s", strerror (errno));
    return IV_ERR_OTA_NO_RESOURCES;
  }
  if ((start = start_new (fd)) == NULL) {
    close (fd);
    client_set_error (error, error_len, "out of memory");
    return IV_ERR_OTA_NO_RESOURCES;
  }
  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  /* The application's signals go to its own threads, never to ours. */
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &saved);
  rc = pthread_create (&thread, &attr, loop_main, start);
  pthread_sigmask (SIG_SETMASK, &saved, NULL);
  pthread_attr_destroy (&attr);
  if (rc != 0) {
    start_free (start);
    close (fd);
    client_set_error (error, error_len, "cannot start the library thread: %s", strerror (rc));
    return IV_ERR_OTA_NO_RESOURCES;
  }
  lib.wake_fd = fd;
  lib.active = true;
  lib.running++;
  return IV_ERR_NONE;
}

static bool
request_adds_user (const ClientRequest *request)
{
  return request->kind == CLIENT_REQUEST_OPEN || request->kind == CLIENT_REQUEST_OBSERVER_ADD ||
         request->kind == CLIENT_REQUEST_SUBSCRIBE;
}

static bool
request_drops_user (const ClientRequest *request)
{
  return request->kind == CLIENT_REQUEST_EXIT || request->kind == CLIENT_REQUEST_OBSERVER_REMOVE ||
         request->kind == CLIENT_REQUEST_UNSUBSCRIBE;
}

/* A request that may start the thread only for itself: its caller waits for
 * the thread to end again when nobody else uses it. */
static bool
request_is_transient (const ClientRequest *request)
{
  return request->kind == CLIENT_REQUEST_STATUS || request->kind == CLIENT_REQUEST_CHECK_MODULE ||
         request->kind == CLIENT_REQUEST_CANCEL_MODULE || request->kind == CLIENT_REQUEST_PUBLISH;
}

/* Queues @request and waits for it; called and returns with the lock held. */
static int
submit_queued_locked (ClientRequest *request)
{
  int rc;

  if (!lib.active && (rc = lib_start_thread_locked (request->error, sizeof request->error)) != IV_ERR_NONE)
    return request->result = rc;
  request->next = NULL;
  request->done = false;
  if (lib.tail != NULL)
    lib.tail->next = request;
  else
    lib.head = request;
  lib.tail = request;
  lib_wake_locked ();
  while (!request->done)
    pthread_cond_wait (&lib.cond, &lib.lock);
  /* The last user gone: wait until no library thread is left. */
  while ((request_drops_user (request) || request_is_transient (request)) && lib.users == 0 && lib.running > 0)
    pthread_cond_wait (&lib.cond, &lib.lock);
  return request->result;
}

static int
submit_locked (ClientRequest *request)
{
  if (request_adds_user (request))
    lib.users++;
  if (current_loop != NULL) {
    pthread_mutex_unlock (&lib.lock);
    request_run (current_loop, request, true);
    pthread_mutex_lock (&lib.lock);
  } else {
    submit_queued_locked (request);
  }
  if (request_adds_user (request) && request->result != IV_ERR_NONE) {
    lib.users--;
    lib_wake_locked (); /* the thread may have nobody left to serve */
  }
  return request->result;
}

int
client_submit (ClientRequest *request)
{
  int result;

  pthread_mutex_lock (&lib.lock);
  result = submit_locked (request);
  pthread_mutex_unlock (&lib.lock);
  return result;
}

/* ---- the classic handle ---- */

bool
client_classic_claim (void)
{
  bool claimed;

  pthread_mutex_lock (&lib.lock);
  claimed = !lib.classic_claimed;
  lib.classic_claimed = true;
  pthread_mutex_unlock (&lib.lock);
  return claimed;
}

void
client_classic_unclaim (void)
{
  pthread_mutex_lock (&lib.lock);
  lib.classic_claimed = false;
  pthread_mutex_unlock (&lib.lock);
}

iv_ota_module_s *
client_classic_take (void)
{
  iv_ota_module_s *handle;

  pthread_mutex_lock (&lib.lock);
  handle = lib.classic;
  if (handle != NULL) {
    lib.classic = NULL;
    lib.classic_claimed = false;
  }
  pthread_mutex_unlock (&lib.lock);
  return handle;
}

int
client_classic_submit (ClientRequest *request)
{
  int result;

  pthread_mutex_lock (&lib.lock);
  /* Looked up and queued under one lock: an exit cannot free it in between. */
  request->handle = lib.classic;
  if (request->handle == NULL) {
    client_set_error (request->error, sizeof request->error, "iv_ota_init has not been called");
    result = request->result = IV_ERR_OTA_NOT_INITIALIZED;
  } else {
    result = submit_locked (request);
  }
  pthread_mutex_unlock (&lib.lock);
  return result;
}
