/* iv_ota_ext.h — what libiv-ota adds to the classic iv_ota.h API.
 *
 *  - Handles for named modules: a device may carry several firmware parts (the
 *    main firmware is module "", others are an MCU, a radio...). A process may
 *    own several modules at once, each through its own handle, with the same
 *    callbacks as the classic API.
 *  - Observers: a process (a UI, a logger) that watches the offers, progress
 *    and ready images of every module on the device, owned or not.
 *  - Any module by name, without owning it: a status snapshot of the agent and
 *    every module, and the requests the agent allows to anyone (for tools such
 *    as the iv-ota command line).
 *  - Error texts: iv_ota_strerror() and iv_ota_last_error().
 *
 * Threads, as in iv_ota.h: one library thread per process runs every callback
 * of every handle and observer, one at a time, in the order events arrive;
 * every function may be called from any thread, including from inside a
 * callback, where it runs at once on the library thread. For each event,
 * observers are called before the callbacks of the module's handle.
 *
 * Ownership: a handle or observer returned by an _open/_add function belongs to
 * the caller until it passes it to iv_ota_module_exit() or
 * iv_ota_observer_remove(); after that call has started, the pointer must not
 * be used again (from any thread). Strings passed to callbacks are valid only
 * during the call. */
#ifndef IV_OTA_EXT_H
#define IV_OTA_EXT_H

#include "iv_ota.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes beyond the classic ones (these never come from iv_ota_init). */
/* The module is owned by another process, or already open in this one. */
#define IV_ERR_OTA_BUSY (-850)
/* The agent refused the firmware directory (not owned by the caller) or the
 * bus policy refused the call. */
#define IV_ERR_OTA_ACCESS_DENIED (-851)
/* An argument is invalid: NULL handle or callback, bad module name. */
#define IV_ERR_OTA_INVALID_ARG (-852)
/* iv_ota_update_progress or iv_ota_exit without a successful iv_ota_init. */
#define IV_ERR_OTA_NOT_INITIALIZED (-853)
/* iv_ota_init called again before iv_ota_exit. */
#define IV_ERR_OTA_ALREADY_INITIALIZED (-854)
/* The agent refused the request: nothing to report about, no such offer... */
#define IV_ERR_OTA_REFUSED (-855)
/* The agent is not on the bus right now (it may be restarting: the library
 * registers again by itself when it is back). */
#define IV_ERR_OTA_NO_AGENT (-856)
/* Out of memory, or the library thread could not be started. */
#define IV_ERR_OTA_NO_RESOURCES (-857)
/* Only the module's owner may do this (iv_ota_cancel_module). */
#define IV_ERR_OTA_NOT_OWNER (-858)
/* The agent knows no module of that name: no application has registered it
 * (iv_ota_check_module, iv_ota_cancel_module). */
#define IV_ERR_OTA_NO_SUCH_MODULE (-859)
/* The agent owns its bus name but did not answer within a few seconds: it is
 * stopped (SIGSTOP, a debugger) or overloaded (iv_ota_status_get,
 * iv_ota_check_module, iv_ota_cancel_module). */
#define IV_ERR_OTA_AGENT_NOT_ANSWERING (-860)

/* Longest module name, terminating NUL excluded. */
#define IV_OTA_MODULE_NAME_MAX_LEN 32

/* A module owned by this process. Opaque. */
typedef struct iv_ota_module iv_ota_module_s;

/* Registers this process with the agent as the owner of @module and starts its
 * OTA service, exactly like iv_ota_init() does for the main firmware.
 *
 * @module: "" for the main firmware, else 1..32 characters of [A-Za-z0-9._-].
 * @init_parm: as for iv_ota_init (copied; iv_ota_firmware_update_cb required).
 * @user_data: any pointer, returned by iv_ota_module_user_data().
 * @handle: receives the handle on success, before any callback of the module
 *   can run, so callbacks may read it (untouched on failure).
 *
 * The callbacks have no context argument: when several modules share them,
 * iv_ota_module_current() tells which one a callback is about.
 *
 * Blocks until the agent has answered. Thread: any.
 * Returns IV_ERR_NONE; IV_ERR_OTA_INIT_PRM_NULL (NULL or invalid @init_parm,
 * @module or @handle); IV_ERR_OTA_INIT_CB_NULL; IV_ERR_OTA_BUSY;
 * IV_ERR_OTA_ACCESS_DENIED; IV_ERR_OTA_START_FAIL (no agent, or it refused);
 * IV_ERR_OTA_NO_RESOURCES. */
int iv_ota_module_open (const char *module, const iv_ota_init_parm_s *init_parm, void *user_data,
                        iv_ota_module_s **handle);

/* iv_ota_update_progress() for @handle's module. Thread: any.
 * Returns the codes of iv_ota_update_progress, or IV_ERR_OTA_INVALID_ARG for
 * a NULL @handle. */
int iv_ota_module_update_progress (iv_ota_module_s *handle, iv_ota_progress_type_e type, int progress_value);

/* Asks the agent to report the module's version now, so that the cloud offers
 * an update at once if there is one. Thread: any.
 * A cycle under way is no reason to refuse: the agent reports the version
 * again and skips any wait before the next attempt.
 * Returns IV_ERR_NONE, IV_ERR_OTA_INVALID_ARG or IV_ERR_OTA_NO_AGENT. */
int iv_ota_module_check_now (iv_ota_module_s *handle);

/* Stops a running download of the module; its partial file is kept, and the
 * next offer of the same image resumes it. Thread: any.
 * Returns IV_ERR_NONE, IV_ERR_OTA_INVALID_ARG, IV_ERR_OTA_NO_AGENT or
 * IV_ERR_OTA_REFUSED. */
int iv_ota_module_cancel (iv_ota_module_s *handle);

/* iv_ota_exit() for @handle's module, which also frees @handle: the agent
 * releases the module, then iv_ota_thread_exit_cb runs. From any thread but
 * the library's, it returns once that callback has run, and no callback of
 * the module follows; from inside a callback it returns at once and
 * iv_ota_thread_exit_cb runs after that callback has returned.
 * Returns IV_ERR_NONE or IV_ERR_OTA_INVALID_ARG. */
int iv_ota_module_exit (iv_ota_module_s *handle);

/* The module name of @handle ("" for the main firmware), valid as long as the
 * handle. NULL for a NULL @handle. Thread: any. */
const char *iv_ota_module_name (const iv_ota_module_s *handle);

/* The @user_data given to iv_ota_module_open (NULL for the classic handle of
 * iv_ota_init). Thread: any. */
void *iv_ota_module_user_data (const iv_ota_module_s *handle);

/* Inside a callback of a module (iv_ota_init_parm_s callbacks), the handle it
 * is about — the classic iv_ota_init included; NULL anywhere else. Thread:
 * any (the answer is per thread). */
iv_ota_module_s *iv_ota_module_current (void);

/* ---- observers ---- */

typedef enum {
  /* The agent appeared on the bus or left it: agent_present. */
  IV_OTA_EVENT_AGENT = 0,
  /* The agent's session with the cloud went up or down: cloud_connected. */
  IV_OTA_EVENT_CONNECTION = 1,
  /* The cloud offered an image: module, version, total. */
  IV_OTA_EVENT_OFFERED = 2,
  /* A module changed state or downloaded more: module, version, state,
   * percent, downloaded, total, result_code, result_msg. */
  IV_OTA_EVENT_PROGRESS = 3,
  /* A verified image is ready for its owner: module, version, path, total, md5. */
  IV_OTA_EVENT_READY = 4,
} iv_ota_event_type_e;

/* One event. Fields that do not apply to the type are 0 or "" (never NULL).
 * Strings are valid only during the callback. Future versions may add event
 * types (ignore unknown ones) and fields at the end of this structure. */
typedef struct iv_ota_event_s {
  iv_ota_event_type_e type;
  const char *module;     /* "" for the main firmware */
  const char *version;    /* the target version; the installed one when idle */
  /* idle, offered, downloading, verifying, ready, burning, rebooting, done, fail */
  const char *state;
  unsigned int percent;   /* 0..100 */
  uint64_t downloaded;    /* bytes */
  uint64_t total;         /* image size in bytes, 0 when unknown */
  int result_code;        /* 0, or -1 timeout, -2 not found, -3 expired, -4 MD5, -5 other */
  const char *result_msg;
  const char *path;       /* READY: absolute path of the image */
  const char *md5;        /* READY: 32 lowercase hex digits */
  int agent_present;      /* AGENT: 1 when the agent is on the bus */
  int cloud_connected;    /* CONNECTION: 1 when the cloud session is up */
  /* 1 for the events of the snapshot that starts an observer (the state of
   * things when it was added), 0 for live events. */
  int snapshot;
} iv_ota_event_s;

/* Called on the library thread for each event. */
typedef void (*iv_ota_observer_cb) (const iv_ota_event_s *event, void *user_data);

/* An observer. Opaque. */
typedef struct iv_ota_observer iv_ota_observer_s;

/* Starts watching every module; *@observer is set before the first call of
 * @callback (untouched on failure). First comes a snapshot — an AGENT event, and
 * when the agent is there a CONNECTION event and one PROGRESS event per module
 * it knows, all with snapshot = 1 — then live events as they happen. Also
 * when added from inside a callback (of another observer, say): the event
 * being delivered then is not given to the new observer, its snapshot is
 * next. Observing needs no ownership
 * and works while the agent is absent (AGENT events tell when it comes).
 *
 * Thread: any; blocks until the library thread has taken the observer.
 * Returns IV_ERR_NONE, IV_ERR_OTA_INVALID_ARG (NULL @callback or @observer),
 * IV_ERR_OTA_START_FAIL (no bus) or IV_ERR_OTA_NO_RESOURCES. */
int iv_ota_observer_add (iv_ota_observer_cb callback, void *user_data, iv_ota_observer_s **observer);

/* Stops @observer and frees it. From any thread but the library's, no call of
 * its callback follows the return; from inside a callback, none follows the
 * current one. Returns IV_ERR_NONE or IV_ERR_OTA_INVALID_ARG. */
int iv_ota_observer_remove (iv_ota_observer_s *observer);

/* ---- any module, by name ---- */

/* One module as the agent sees it (its GetStatus). Strings are never NULL. */
typedef struct iv_ota_module_status_s {
  const char *module;         /* "" for the main firmware */
  /* idle, offered, downloading, verifying, ready, burning, rebooting, done, fail */
  const char *state;
  const char *version;        /* the installed version its owner registered */
  const char *target_version; /* the version of the current or last offer, "" when none */
  uint64_t downloaded;        /* bytes */
  uint64_t total;             /* image size in bytes, 0 when unknown */
  unsigned int percent;       /* 0..100 */
  const char *path;           /* the image, "" until known */
  const char *owner;          /* unique bus name of the owner, "" when none */
  unsigned int owner_pid;     /* process id of the owner, 0 when none or unknown */
  int result_code;            /* of the last cycle: 0, or -1..-5 as in iv_ota_event_s */
  const char *result_msg;
  /* Signed images (the agent's [security] trusted_keys; docs/signed-images.md):
   * -1 when the agent requires no signature, 0 when the target's signature
   * has not been verified (no offer yet, or it was refused), 1 when it was
   * verified with a trusted key; the image is then checked against it too. */
  int signature_checked;
  const char *signing_key;      /* signature_checked 1: the key id (16 hex digits), else "" */
  const char *signing_key_file; /* signature_checked 1: its public key file on the device, else "" */
  unsigned int security_version; /* signature_checked 1: the image's security version, else 0 */
  /* Why its downloads wait: the reasons of the Inhibit cookies held for it,
   * oldest first, joined with "; ", "" when none. */
  const char *inhibited;
} iv_ota_module_status_s;

/* The agent and every module it knows, at one moment. */
typedef struct iv_ota_status_s {
  const char *agent;          /* unique bus name of the agent */
  const char *daemon_version; /* the agent's DaemonVersion, "" when unknown */
  int cloud_connected;        /* 1 when the agent's cloud session is up */
  size_t n_modules;
  const iv_ota_module_status_s *modules; /* sorted by module name */
} iv_ota_status_s;

/* Reads the status of the agent and of every module (owned or not) in one
 * call; needs no ownership. On success *@status is set and belongs to the
 * caller, who frees it with iv_ota_status_free().
 *
 * Blocks until the agent has answered, at most a few seconds. Thread: any.
 * Returns IV_ERR_NONE, IV_ERR_OTA_INVALID_ARG (NULL @status), IV_ERR_OTA_NO_AGENT
 * (no bus, or no agent on it), IV_ERR_OTA_AGENT_NOT_ANSWERING,
 * IV_ERR_OTA_ACCESS_DENIED or IV_ERR_OTA_NO_RESOURCES; iv_ota_last_error()
 * tells more. */
int iv_ota_status_get (iv_ota_status_s **status);

/* Frees what iv_ota_status_get returned; NULL is ignored. Thread: any. */
void iv_ota_status_free (iv_ota_status_s *status);

/* Asks the agent to report @module's version now (its CheckNow), so that the
 * cloud offers an update at once if there is one. The agent allows this to
 * anyone: the module may be owned by another process.
 *
 * Blocks until the agent has answered, at most a few seconds. Thread: any.
 * Returns IV_ERR_NONE, IV_ERR_OTA_INVALID_ARG (NULL or malformed @module),
 * IV_ERR_OTA_NO_SUCH_MODULE, IV_ERR_OTA_REFUSED (for example: the module has
 * no owner now), IV_ERR_OTA_NO_AGENT, IV_ERR_OTA_AGENT_NOT_ANSWERING or
 * IV_ERR_OTA_ACCESS_DENIED. */
int iv_ota_check_module (const char *module);

/* Asks the agent to stop @module's running download (its Cancel); the partial
 * file is kept for resume. The agent allows this to the module's owner only:
 * from any other process it answers IV_ERR_OTA_NOT_OWNER (the owner cancels
 * with iv_ota_module_cancel()).
 *
 * Blocks until the agent has answered, at most a few seconds. Thread: any.
 * Returns IV_ERR_NONE, IV_ERR_OTA_INVALID_ARG, IV_ERR_OTA_NOT_OWNER,
 * IV_ERR_OTA_NO_SUCH_MODULE, IV_ERR_OTA_NO_AGENT, IV_ERR_OTA_AGENT_NOT_ANSWERING
 * or IV_ERR_OTA_ACCESS_DENIED. */
int iv_ota_cancel_module (const char *module);

/* ---- the device's cloud connection ---- */

/* The platform lets a device identity hold ONE MQTT connection: a second
 * client signing in as the device takes it over from the first. The agent
 * holds it, and these functions let an app publish and subscribe through it
 * (the agent's org.iv.Ota.Cloud interface) instead of signing in itself.
 *
 * Topics and filters: those the agent's [cloud] allowed_topics allows; by
 * default the device's own namespace (topics whose levels contain the product
 * id immediately followed by the device name, such as
 * $thing/up/property/PRODUCT/DEVICE), never the agent's own $ota/... topics,
 * 1..1024 bytes. A filter must stay within them: "#" is refused. */

/* Largest payload of iv_ota_publish() and of a received message, in bytes. */
#define IV_OTA_PUBLISH_MAX_PAYLOAD 65536

/* iv_ota_publish() flag: while the agent is offline, it keeps the message
 * (in memory, at most 256 messages and 4 MiB for the whole device) and
 * publishes it after the reconnect, in order; the call then returns at once. */
#define IV_OTA_PUBLISH_QUEUE 0x1u

/* Publishes @length bytes of @payload (any bytes; NULL when @length is 0) on
 * @topic at QoS @qos (0 or 1) through the agent's connection.
 *
 * Blocks until the broker acknowledged the message (QoS 1) or the agent
 * wrote it to the connection (QoS 0). Thread: any, also inside a callback
 * (the library thread then waits for the answer).
 * Returns IV_ERR_NONE; IV_ERR_DEVICE_OFFLINE (the agent is not connected to
 * the cloud, or the connection was lost before the acknowledgement: see
 * IV_OTA_PUBLISH_QUEUE); IV_ERR_OTA_ACCESS_DENIED (topic not allowed);
 * IV_ERR_OTA_INVALID_ARG (NULL or malformed topic, wildcard in it, payload
 * over IV_OTA_PUBLISH_MAX_PAYLOAD, qos not 0 or 1, unknown flag);
 * IV_ERR_OTA_REFUSED (the offline queue is full); IV_ERR_OTA_NO_AGENT;
 * IV_ERR_OTA_NO_RESOURCES. iv_ota_last_error() tells more. */
int iv_ota_publish (const char *topic, const void *payload, size_t length, int qos, unsigned int flags);

/* Called on the library thread for each message on a topic the
 * subscription's filter matches. @topic and @payload are valid only during
 * the call; @payload is the message's bytes, not NUL-terminated. */
typedef void (*iv_ota_message_cb) (const char *topic, const void *payload, size_t length, void *user_data);

/* A subscription. Opaque. */
typedef struct iv_ota_subscription iv_ota_subscription_s;

/* Subscribes to @filter (an MQTT filter: '+' a whole level, '#' the whole
 * last level); *@subscription is set before the first call of @callback
 * (untouched on failure).
 *
 * Each subscription gets each matching message once, also when several
 * subscriptions of the process (or other apps) use the same or overlapping
 * filters; an app never receives a message that none of its filters match.
 * The agent keeps the subscription across its reconnections to the cloud;
 * if the agent itself restarts, the library subscribes again by itself
 * (messages published while no agent runs are not received). Like any MQTT
 * client, an app receives its own publications when its filters match them.
 *
 * Blocks until the broker acknowledged the subscription (or, while the agent
 * is offline, until the agent registered it). Thread: any.
 * Returns IV_ERR_NONE, IV_ERR_OTA_INVALID_ARG (NULL argument, malformed
 * filter), IV_ERR_OTA_ACCESS_DENIED (the filter reaches beyond the allowed
 * topics), IV_ERR_OTA_REFUSED (the broker refused it; more than 64 filters),
 * IV_ERR_OTA_NO_AGENT or IV_ERR_OTA_NO_RESOURCES. */
int iv_ota_subscribe (const char *filter, iv_ota_message_cb callback, void *user_data,
                      iv_ota_subscription_s **subscription);

/* Ends @subscription and frees it. From any thread but the library's, no call
 * of its callback follows the return; from inside a callback, none follows
 * the current one. Returns IV_ERR_NONE or IV_ERR_OTA_INVALID_ARG. */
int iv_ota_unsubscribe (iv_ota_subscription_s *subscription);

/* ---- errors ---- */

/* A short English text for any IV_ERR_* code of iv_ota.h and this header
 * (a fixed "unknown error" for others). Static storage; thread: any. */
const char *iv_ota_strerror (int code);

/* Why the last call of the calling thread that returns an IV_ERR_* code
 * failed, in more detail than the code (the agent's own message when it
 * refused), or "" when that call succeeded. Per thread; valid until the
 * thread's next such call. */
const char *iv_ota_last_error (void);

#ifdef __cplusplus
}
#endif

#endif /* IV_OTA_EXT_H */
