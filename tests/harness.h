/* Integration test harness: a real mosquitto broker on a free loopback port,
 * the real iv-otad on the test's private session bus, an in-process "cloud"
 * that sees every report and publishes crafted messages, and typed D-Bus
 * proxies. Every child process dies with the test (PR_SET_PDEATHSIG). */
#pragma once

#include "mqtt-link.h"
#include "ota-dbus-generated.h"

#include <gio/gio.h>

G_BEGIN_DECLS

#define OTA_TEST_PRODUCT "PROD1"
#define OTA_TEST_DEVICE "dev1"
#define OTA_TEST_REPORT_TOPIC "$ota/report/" OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE
#define OTA_TEST_UPDATE_TOPIC "$ota/update/" OTA_TEST_PRODUCT "/" OTA_TEST_DEVICE
/* Generous: the machines are shared and the suite also runs under ASan. */
#define OTA_TEST_TIMEOUT_MS 20000

/* Runs the default main context until @cond(@data) or @timeout_ms times
 * ota_test_time_scale(). */
gboolean ota_test_wait (gboolean (*cond) (gpointer data), gpointer data, guint timeout_ms);
/* $IV_OTA_TEST_TIME_SCALE (1..100, default 1): how much longer a wait may take
 * than natively. The cross build's tests set 3, since every program of ours
 * runs emulated there (tests/meson.build). Only limits scale, never what a
 * test asserts happened. */
guint ota_test_time_scale (void);
/* TRUE when our programs run emulated (IV_OTA_TEST_WRAPPER is set: the cross
 * build under qemu user mode). Their /proc figures (VmHWM, RSS) then include
 * the emulator's own memory, its translated code above all. */
gboolean ota_test_emulated (void);
/* Runs the default main context for @ms. */
void ota_test_spin (guint ms);

/* ---- processes ---- */
typedef struct {
  GPid pid;
  char *log_path;
  int status;     /* wait status once exited */
  gboolean exited;
} OtaTestProcess;

/* @argv (NULL-terminated) with $IV_OTA_TEST_WRAPPER's words in front when
 * argv[0] is a program built for the machine this test is built for: in a
 * cross build (scripts/cross.sh) that is "qemu-arm -L SYSROOT", since a
 * process under qemu user mode cannot exec another foreign binary by itself.
 * Natively (no wrapper) a plain copy. Free with g_strfreev(). */
char **ota_test_wrap_argv (const char *const *argv);

/* Spawns @argv (through ota_test_wrap_argv()) with stdout to @log_path
 * (stderr too when @stderr_path is NULL), dying with the test. */
OtaTestProcess *ota_test_process_spawn (char **argv, char **envp, const char *log_path, const char *stderr_path);
/* Sends @sig and reaps; returns the wait status. */
int ota_test_process_stop (OtaTestProcess *proc, int sig);
gboolean ota_test_process_is_running (OtaTestProcess *proc);
void ota_test_process_free (OtaTestProcess *proc);

/* ---- broker ---- */
typedef struct {
  char *dir;
  guint port;
  char *extra_conf; /* appended to mosquitto.conf, may be NULL */
  OtaTestProcess *proc;
} OtaTestBroker;

OtaTestBroker *ota_test_broker_start (const char *dir);
/* With @extra_conf appended to the config: options of the one listener
 * (cafile, certfile, keyfile, require_certificate...) or global ones that
 * override the defaults (allow_anonymous false, password_file...). The log
 * is @dir/mosquitto.log, kept across restarts. */
OtaTestBroker *ota_test_broker_start_with (const char *dir, const char *extra_conf);
void ota_test_broker_stop (OtaTestBroker *broker);
/* Starts it again on the same port. */
void ota_test_broker_restart (OtaTestBroker *broker);
void ota_test_broker_free (OtaTestBroker *broker);

/* ---- the in-process cloud ---- */
typedef struct {
  OtaMqttLink *link;
  GPtrArray *reports; /* payload strings received on the report topic, in order */
} OtaTestCloud;

OtaTestCloud *ota_test_cloud_new (guint port);
void ota_test_cloud_publish (OtaTestCloud *cloud, const char *payload, gsize length);
/* Waits for a report equal to @json (exact text) after index @from; returns its index or -1. */
int ota_test_cloud_wait_report (OtaTestCloud *cloud, guint from, const char *json, guint timeout_ms);
/* Waits for a report containing @needle after index @from; returns its index or -1. */
int ota_test_cloud_wait_report_containing (OtaTestCloud *cloud, guint from, const char *needle, guint timeout_ms);
/* Number of reports containing @needle. */
guint ota_test_cloud_count_reports (OtaTestCloud *cloud, const char *needle);
void ota_test_cloud_free (OtaTestCloud *cloud);

/* ---- the agent ---- */
typedef struct {
  char *dir;
  char *config_path;
  char *log_path;
  char *state_dir;
  char **env;     /* extra environment of the agent process, may be NULL */
  OtaTestProcess *proc;
} OtaTestAgent;

/* Writes a config for @port with @extra_ota_keys (lines for the [ota] group, may be NULL). */
OtaTestAgent *ota_test_agent_new (const char *dir, guint port, const char *extra_ota_keys);
/* Appends @text to the config (GKeyFile merges a group that appears again,
 * so "[mqtt]\ntls=true\n" adds a key to [mqtt]). Before ota_test_agent_start(). */
void ota_test_agent_add_config (OtaTestAgent *agent, const char *text);
/* Sets @name=@value in the environment of the agent's next start. */
void ota_test_agent_setenv (OtaTestAgent *agent, const char *name, const char *value);
/* Starts iv-otad --bus session and waits until it owns org.iv.Ota. */
void ota_test_agent_start (OtaTestAgent *agent);
/* SIGTERM, and asserts a clean exit (0: no leak reported by LSan either). */
void ota_test_agent_stop (OtaTestAgent *agent);
/* The same with signal @sig (SIGHUP, SIGINT: they stop the agent like SIGTERM). */
void ota_test_agent_stop_with (OtaTestAgent *agent, int sig);
void ota_test_agent_kill (OtaTestAgent *agent);
/* Count of log lines containing @needle. */
guint ota_test_agent_log_count (OtaTestAgent *agent, const char *needle);
/* Count of lines of the file at @path containing @needle (0 if unreadable). */
guint ota_test_file_count_lines (const char *path, const char *needle);
/* Waits up to @timeout_ms until the file at @path has @count such lines (a log
 * another process writes on its own time); FALSE if it never had. */
gboolean ota_test_wait_file_lines (const char *path, const char *needle, guint count, guint timeout_ms);
void ota_test_agent_free (OtaTestAgent *agent);

/* ---- D-Bus clients ---- */
/* A new connection to the session bus: its own unique name, like another app. */
GDBusConnection *ota_test_connection_new (void);
OtaDBusOta *ota_test_proxy_new (GDBusConnection *connection);
/* For ota_test_wait(): the proxy @data (OtaDBusOta) knows an owner of
 * org.iv.Ota (after an agent restart it learns it from a signal). */
gboolean ota_test_proxy_has_owner (gpointer data);

typedef struct {
  GPtrArray *offered;   /* GVariant (ssst) */
  GPtrArray *progress;  /* GVariant (sssuttis) */
  GPtrArray *ready;     /* GVariant (sssts) */
  /* For each Progress in state "fail", the module's fail_kind in the Modules
   * property as it stood when that signal arrived (char *). */
  GPtrArray *fail_kinds;
} OtaTestSignals;

OtaTestSignals *ota_test_signals_new (OtaDBusOta *proxy);
/* Waits for a Progress of @module with @state; returns its index or -1. */
int ota_test_signals_wait_state (OtaTestSignals *sig, const char *module, const char *state, guint timeout_ms);
/* The fail_kind that came with the last Progress in state "fail". */
const char *ota_test_signals_last_fail_kind (OtaTestSignals *sig);
void ota_test_signals_free (OtaTestSignals *sig);

/* Init with ask_before_download = @ask. */
gboolean ota_test_init (OtaDBusOta *proxy, const char *module, const char *version, const char *dir,
                        gboolean ask, GError **error);
/* Asserts @error is the D-Bus error @name. */
#define ota_test_assert_remote_error(error, name)                                                                  \
  G_STMT_START                                                                                                     \
  {                                                                                                                \
    g_autofree char *remote_ = NULL;                                                                               \
    g_assert_nonnull (error);                                                                                      \
    remote_ = g_dbus_error_get_remote_error (error);                                                               \
    g_assert_cmpstr (remote_, ==, name);                                                                           \
  }                                                                                                                \
  G_STMT_END

/* GetStatus value of @key as a string ("%s", "%u", "%" G_GUINT64_FORMAT ...), newly allocated. */
char *ota_test_status_get (OtaDBusOta *proxy, const char *module, const char *key);

/* ---- iv-ota-cloud, the cloud stand-in as a process ---- */
typedef struct {
  OtaTestProcess *proc;
  char *stdout_path;  /* one JSON line per report */
  char *stderr_path;  /* logs and "http: ... total_sent=N" lines */
  guint http_port;
  char *url;          /* http://127.0.0.1:PORT/FW_<version>.bin */
} OtaTestCloudTool;

/* Starts iv-ota-cloud on the broker at @port offering @firmware as @version,
 * with @extra_args (NULL-terminated, may be NULL), and waits until it is
 * subscribed and serving. Output files go to @dir (named after @name). */
OtaTestCloudTool *ota_test_cloud_tool_start (const char *dir, const char *name, guint port, const char *version,
                                             const char *firmware, const char *const *extra_args);
/* SIGTERM; returns the body bytes its HTTP server sent in all (its last stats line). */
guint64 ota_test_cloud_tool_stop (OtaTestCloudTool *tool);
/* Body bytes sent so far, from the per-response stats lines. */
guint64 ota_test_cloud_tool_total_sent (OtaTestCloudTool *tool);
/* Number of HTTP requests answered so far. */
guint ota_test_cloud_tool_requests (OtaTestCloudTool *tool);
void ota_test_cloud_tool_free (OtaTestCloudTool *tool);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaTestCloudTool, ota_test_cloud_tool_free)

/* ---- a whole environment ---- */
typedef struct {
  char *dir;
  char *fw_dir;
  OtaTestBroker *broker;
  OtaTestCloud *cloud;
  OtaTestAgent *agent;
  GDBusConnection *connection;
  OtaDBusOta *proxy;
  OtaTestSignals *signals;
} OtaTestEnv;

/* @extra_ota_keys: lines for the [ota] group (const char *), may be NULL. */
void ota_test_env_setup (OtaTestEnv *env, gconstpointer extra_ota_keys);
void ota_test_env_teardown (OtaTestEnv *env, gconstpointer unused);
/* The app comes back on a new connection (its process, or the agent, restarted):
 * new connection, proxy and signal log. */
void ota_test_env_reconnect_app (OtaTestEnv *env);
/* Waits until the agent's Modules property, as @env's proxy last saw it
 * change, shows @module in @state (NULL: any) and, if @some_bytes, with
 * bytes downloaded: an Init reply or a GetStatus does not say that the
 * property has changed already (what libiv-ota's status API reads). */
void ota_test_env_wait_published (OtaTestEnv *env, const char *module, const char *state, gboolean some_bytes);
/* Init (no ask_before_download) on @env's connection, then waits until Modules shows it. */
void ota_test_env_init_published (OtaTestEnv *env, const char *module, const char *version);
/* Waits until the agent's Connected property (as the app's proxy sees it) is @value. */
gboolean ota_test_env_wait_connected (OtaTestEnv *env, gboolean value, guint timeout_ms);
/* Returns once the in-process cloud is subscribed again: a probe it
 * publishes on the report topic comes back to it. The agent ignores that
 * topic, and the probes match none of the needles the tests count. */
void ota_test_env_cloud_sync (OtaTestEnv *env);
/* Restarts the broker; the agent (if running) reconnects only after the
 * cloud listens again, so that no report goes to an empty room. */
void ota_test_env_broker_restart_cloud_first (OtaTestEnv *env);

/* An update_firmware message; @module NULL or "" for the main firmware. */
char *ota_test_offer_json (const char *module, const char *version, const char *url, const char *md5,
                           guint64 size);

/* Deletes @path and everything below it. */
void ota_test_remove_tree (const char *path);

/* Writes @size pseudo-random bytes to @path and returns their md5. */
char *ota_test_make_file (const char *path, gsize size);

/* ---- download tests: the main module, offered version "2.0" ---- */

/* The image the cloud offers as "2.0", outside the firmware dir. */
typedef struct {
  char *path;
  char *md5;
  gsize size;
} OtaTestImage;

/* Writes a random image of @size bytes as @env->dir/image-2.0.bin. */
void ota_test_image_make (OtaTestEnv *env, gsize size, OtaTestImage *image);
void ota_test_image_clear (OtaTestImage *image);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaTestImage, ota_test_image_clear)

/* @env->fw_dir/FW_2.0.@ext ("bin" or "json"). */
char *ota_test_fw_path (OtaTestEnv *env, const char *ext);
/* The app owns the main module at @version (no ask_before_download). */
void ota_test_app_init (OtaTestEnv *env, const char *version);
/* The app's ReportProgress for the main module; must be accepted. */
void ota_test_app_report (OtaTestEnv *env, const char *state, int percent, int code, const char *msg);
/* For ota_test_wait(): @data (the env) has seen a FirmwareReady. */
gboolean ota_test_ready_emitted (gpointer data);
/* "downloaded" of GetStatus("") */
guint64 ota_test_status_downloaded (OtaTestEnv *env);
/* Waits up to @timeout_ms until GetStatus says at least @at_least bytes were
 * downloaded (polled); FALSE if it never did. */
gboolean ota_test_wait_downloaded (OtaTestEnv *env, guint64 at_least, guint timeout_ms);
/* downloaded_size of FW_2.0.json (which must describe 2.0), or -1 without a readable record. */
gint64 ota_test_record_downloaded (OtaTestEnv *env);

/* One HTTP response of iv-ota-cloud, from its log line
 * "http: GET /P range=R status=S sent=B total_sent=T". */
typedef struct {
  gint64 range_start; /* -1: no Range header */
  guint status;
  guint64 sent;
} OtaTestResponse;

/* Every response iv-ota-cloud logged so far, in order. */
GArray *ota_test_cloud_tool_responses (OtaTestCloudTool *tool);

G_END_DECLS
