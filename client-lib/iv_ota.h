/* iv_ota.h — the classic OTA API of the Tencent IoT Video device SDK, served by
 * the iv-ota agent (iv-otad) through libiv-ota.
 *
 * The names, enum values, structure layouts, callback and function signatures
 * and return codes are those of the SDK's iv_ota.h, so that an application
 * written for the SDK builds against libiv-ota without change. What differs is
 * underneath: the cloud connection and the downloads belong to the agent, which
 * serves every application on the device; this library only talks to it over
 * D-Bus (bus name org.iv.Ota).
 *
 * Threads. The library runs one thread of its own per process. Every callback
 * is called on that thread, one at a time, in the order the agent's events
 * arrive. Every function may be called from any thread, including from inside a
 * callback: there it runs at once on the library thread (for example, reporting
 * IV_OTA_PROGRESS_TYPE_WRITE_FLASH and then calling iv_ota_exit() inside
 * iv_ota_firmware_update_cb is fine). A callback that blocks delays every
 * later callback and every call made from other threads (they wait for the
 * library thread), so a callback must not wait for another thread that is
 * itself inside an iv_ota_* call.
 *
 * fork(). The service stays with the parent. The child of a fork() starts
 * from nothing: it inherits no registration (its copy of the parent's bus
 * socket is closed in the child, so the agent releases the parent's modules
 * when the parent ends, even if the child lives on), and the parent's
 * handles and observers are not the child's (the child must not use them,
 * nor call iv_ota_exit for the parent's iv_ota_init). The child may register
 * on its own (iv_ota_init, iv_ota_module_open for a module the parent does
 * not own) or use the calls about any module (iv_ota_ext.h); it then gets a
 * library thread and a bus connection of its own. As after any fork of a
 * threaded process, a child that only runs a helper should exec at once. A
 * child forked inside a callback must exec or _exit before that callback
 * returns.
 *
 * Bus. The system bus, unless the environment variable IV_OTA_BUS says
 * "session", "system" or gives a D-Bus address (unix:path=...).
 *
 * Environment. IV_OTA_BUS, IV_OTA_INIT_TIMEOUT and IV_OTA_DEBUG (debug lines
 * on stderr) are read by the call that starts the library thread (the first
 * iv_ota_init, iv_ota_module_open or iv_ota_observer_add while no handle or
 * observer is open), on the calling thread, never later: set them before.
 *
 * Agent not there yet. An application often starts before the agent (boot
 * order). iv_ota_init (and iv_ota_module_open) then waits for the agent to
 * appear on the bus, up to IV_OTA_INIT_TIMEOUT seconds (default 30; 0: do not
 * wait), also when the bus itself is not up yet, and returns
 * IV_ERR_OTA_START_FAIL only when that time has passed. While it waits, the
 * library serves nothing else (calls from other threads wait too).
 *
 * The classic API drives the main firmware (module ""). Named modules, several
 * per process, and observers of every module are in iv_ota_ext.h. */
#ifndef IV_OTA_H
#define IV_OTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define IV_ERR_NONE 0
/* iv_ota_init: the parameter is NULL, or one of its fields is invalid (a
 * version that is empty, not NUL-terminated or holds spaces or control
 * characters; a firmware_path that is not an existing directory). */
#define IV_ERR_OTA_INIT_PRM_NULL (-800)
/* iv_ota_init: a required callback is missing (iv_ota_firmware_update_cb). */
#define IV_ERR_OTA_INIT_CB_NULL (-801)
/* iv_ota_init: the agent is not there, or it refused to register this
 * application (for example because another process owns the main firmware). */
#define IV_ERR_OTA_START_FAIL (-802)
/* iv_ota_update_progress: the progress type is not one of the enum below. */
#define IV_ERR_OTA_PROGRESS_TYPE_ERROR (-803)
/* Part of the SDK's set of codes; libiv-ota does not return it. */
#define IV_ERR_DEVICE_OFFLINE (-1001)

/* Size of iv_ota_init_parm_s.firmware_path, terminating NUL included. */
#define IV_OTA_LOCAL_FILE_NAME_MAX_LEN 160
/* Size of the version strings, terminating NUL included. */
#define IV_OTA_FIRMWARE_VERSION_MAX_LEN 64

/* What the application reports while it installs the firmware. */
typedef enum {
  /* Installing started: the agent reports "burning" to the cloud. */
  IV_OTA_PROGRESS_TYPE_WRITE_FLASH = 0,
  /* The device reboots into the new firmware: the agent remembers it, and the
   * iv_ota_init after the reboot reports "done" (same version as offered) or
   * "fail" (any other version) by itself. */
  IV_OTA_PROGRESS_TYPE_REBOOT = 1,
  /* The new firmware is installed and running: "done". */
  IV_OTA_PROGRESS_TYPE_SUCCESS = 2,
  /* Installing failed; the progress value is an iv_ota_fail_type_e: "fail",
   * result code -5, with a message that names the fail type. */
  IV_OTA_PROGRESS_TYPE_FAIL = 3,
  /* Installing is under way; the progress value is the percentage (0..100;
   * values outside are clamped): "burning" with that percentage. */
  IV_OTA_PROGRESS_TYPE_WRITING_FLASH = 4,
  IV_OTA_PROGRESS_TYPE_BUTT
} iv_ota_progress_type_e;

/* Why an update failed (iv_ota_fail_info_s, IV_OTA_PROGRESS_TYPE_FAIL). */
typedef enum {
  IV_OTA_FAIL_TYPE_OPEN_FILE = 0,      /* the image file could not be opened or created */
  IV_OTA_FAIL_TYPE_WRONG_SIZE = 1,     /* the image does not have the announced size */
  IV_OTA_FAIL_TYPE_WRITE_FLASH = 2,    /* writing failed (storage full, I/O error) */
  IV_OTA_FAIL_TYPE_REPORT_VERSION = 3, /* the version could not be reported */
  IV_OTA_FAIL_TYPE_MALLOC = 4,         /* out of memory */
  IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD = 5,  /* the download failed (timeout, 404, 403, network) */
  IV_OTA_FAIL_TYPE_MD5_CHECK = 6,      /* the image does not match the announced MD5 */
  IV_OTA_FAIL_TYPE_WRITE_BUTT
} iv_ota_fail_type_e;

/* A failed download, as passed to iv_ota_download_fail_cb. */
typedef struct iv_ota_fail_info_s {
  iv_ota_fail_type_e fail_type;
  /* The agent's result code: -1 timeout, -2 not found (HTTP 404), -3 signature
   * expired (HTTP 403), -4 MD5 mismatch, -5 any other failure. */
  int err_code;
  unsigned int downloaded_size; /* bytes downloaded when it failed */
  unsigned int fw_file_size;    /* size of the offered image */
  char remote_version[IV_OTA_FIRMWARE_VERSION_MAX_LEN]; /* the offered version */
} iv_ota_fail_info_s;

/* Passed to iv_ota_thread_exit_cb. */
typedef struct iv_ota_thread_exit_status_s {
  int mqtt_online; /* 1 when the agent's MQTT session was up at exit, else 0 */
} iv_ota_thread_exit_status_s;

/* What iv_ota_init needs. Field order and sizes are the SDK's. The callbacks
 * all run on the library thread; their pointer arguments are valid only during
 * the call (copy what must outlive it). */
typedef struct iv_ota_init_parm_s {
  /* Required. A verified image is ready: @firmware_name is its absolute path
   * (in firmware_path), @firmware_len its size in bytes (UINT32_MAX if larger).
   * The application installs it and reports with iv_ota_update_progress(). */
  void (*iv_ota_firmware_update_cb) (char *firmware_name, uint32_t firmware_len);
  /* Directory where images are downloaded: an existing directory, owned by the
   * calling user unless it runs as root. A relative path is taken from the
   * current directory. NUL-terminated. */
  char firmware_path[IV_OTA_LOCAL_FILE_NAME_MAX_LEN];
  /* The version running now: 1..63 printable characters without spaces,
   * NUL-terminated. */
  char firmware_version[IV_OTA_FIRMWARE_VERSION_MAX_LEN];
  /* Optional. The cloud offers @new_firmware_version of @new_firmware_size
   * bytes. Return 0 to download it now; any other value defers it: the agent
   * reports the current version again after its retry_interval, the cloud
   * offers again, and this callback is asked again. When NULL, every offer is
   * downloaded at once. */
  int (*iv_ota_prepare_cb) (char *new_firmware_version, uint32_t new_firmware_size);
  /* Optional. Download progress: @size bytes of the image are downloaded so
   * far (UINT32_MAX if more). Called 4 times a second while the module
   * downloads, with the size known then (it repeats while no bytes come), and
   * never with 0. It never goes back, also not when a new session resumes an
   * image (the first call then gives the resumed size). Before
   * iv_ota_firmware_update_cb it has always been called with the image size.
   * After a failed download (iv_ota_download_fail_cb), the next attempt may
   * start lower. */
  void (*iv_ota_download_size_cb) (uint32_t size);
  /* Optional. The OTA service of this application ended (after iv_ota_exit).
   * Runs once per successful iv_ota_init, and always before the next
   * iv_ota_init returns, also when both calls are made inside a callback. */
  void (*iv_ota_thread_exit_cb) (iv_ota_thread_exit_status_s status);
  /* Optional. Getting an image failed (a download, or an offer the agent
   * refused); @info says why. Not called for a failed installation. The
   * agent offers the update again later (the partial file is kept and
   * resumed when possible).
   * info->fail_type comes from the agent's kind of failure, never from the
   * words of its message: OPEN_FILE (the image file could not be created),
   * WRONG_SIZE (wrong size, or larger than the agent allows), WRITE_FLASH (no
   * space, write error), MD5_CHECK (checksum), HTTP_DOWNLOAD (timeout, HTTP
   * 404/403/other, refused offer, anything else). Only objects compiled
   * against this header generation have this field (see iv_ota_init_sized). */
  void (*iv_ota_download_fail_cb) (const iv_ota_fail_info_s *info);
} iv_ota_init_parm_s;

/* Registers this application with the agent as the owner of the main firmware
 * and starts the OTA service: the agent reports firmware_version to the cloud
 * now and regularly, and the callbacks follow offers and downloads.
 *
 * Blocks until the agent has answered; waits for the agent to appear on the
 * bus first, up to IV_OTA_INIT_TIMEOUT (see above). @init_parm is copied; it may be freed
 * on return. If the agent restarts later, the library registers again by
 * itself, also while a callback of this application runs (the next call
 * from it registers first). Thread: any, once per process until iv_ota_exit (a second call
 * fails with IV_ERR_OTA_ALREADY_INITIALIZED, see iv_ota_ext.h).
 *
 * Returns IV_ERR_NONE, IV_ERR_OTA_INIT_PRM_NULL, IV_ERR_OTA_INIT_CB_NULL or
 * IV_ERR_OTA_START_FAIL; iv_ota_last_error() (iv_ota_ext.h) tells why.
 *
 * A call compiled against this header goes to iv_ota_init_sized (below), so
 * that objects built against an older SDK header stay safe. */
int iv_ota_init (iv_ota_init_parm_s *init_parm);

/* Which iv_ota_init_parm_s the caller has. The SDK shipped two generations
 * of iv_ota.h: the first ends iv_ota_init_parm_s with iv_ota_thread_exit_cb
 * (256 bytes on 64-bit targets, 240 on 32-bit ones), the later one (and
 * this header) adds iv_ota_download_fail_cb (264 bytes; 244 on 32-bit). A compiled object does not say which
 * header it saw, so libiv-ota never guesses:
 *
 *  - An object compiled against this header calls iv_ota_init_sized() with
 *    sizeof (iv_ota_init_parm_s), through the iv_ota_init() macro below: the
 *    source does not change, and the library reads exactly the bytes the
 *    caller's structure has, iv_ota_download_fail_cb included.
 *  - The plain iv_ota_init symbol is what an object compiled against an SDK
 *    header links to (and what &iv_ota_init, or a call written
 *    (iv_ota_init) (p), reaches). It reads the first generation only, the
 *    bytes up to iv_ota_thread_exit_cb: never past the end of any
 *    caller's structure. Such an application gets every callback but
 *    iv_ota_download_fail_cb; rebuilding it against this header adds that.
 *
 * iv_ota_init_sized reads sizeof (iv_ota_init_parm_s) bytes when
 * @init_parm_size is at least that (fields a later header may add are
 * ignored), else the first generation's. A size smaller than the first
 * generation's is refused (IV_ERR_OTA_INIT_PRM_NULL).
 * Otherwise it is iv_ota_init, with the same return codes.
 *
 * Define IV_OTA_NO_SIZED_INIT before including this header to call the plain
 * symbol (the first-generation layout) by name. */
int iv_ota_init_sized (iv_ota_init_parm_s *init_parm, size_t init_parm_size);

#ifndef IV_OTA_NO_SIZED_INIT
#define iv_ota_init(init_parm) iv_ota_init_sized ((init_parm), sizeof (iv_ota_init_parm_s))
#endif

/* Stops the OTA service: the agent stops reporting for this application and
 * cancels a running download (its partial file is kept for resume), then
 * iv_ota_thread_exit_cb runs.
 *
 * Called from any thread but the library's, it returns once
 * iv_ota_thread_exit_cb has run, and no callback follows. Called from inside a
 * callback, it returns at once and iv_ota_thread_exit_cb runs when that
 * callback has returned, or earlier, inside the next iv_ota_init if the
 * callback calls it. Either way iv_ota_init may be called again afterwards.
 *
 * Returns IV_ERR_NONE, or IV_ERR_OTA_NOT_INITIALIZED (iv_ota_ext.h). */
int iv_ota_exit (void);

/* Reports what the installation does (see iv_ota_progress_type_e), normally
 * from iv_ota_firmware_update_cb or after it. Blocks until the agent has
 * answered (a few milliseconds). Thread: any.
 *
 * Returns IV_ERR_NONE, IV_ERR_OTA_PROGRESS_TYPE_ERROR for an unknown @type,
 * or, from iv_ota_ext.h: IV_ERR_OTA_NOT_INITIALIZED, IV_ERR_OTA_NO_AGENT (the
 * agent is not on the bus right now), IV_ERR_OTA_REFUSED (nothing to report
 * about, for example no update under way). */
int iv_ota_update_progress (iv_ota_progress_type_e type, int progress_value);

#ifdef __cplusplus
}
#endif

#endif /* IV_OTA_H */
