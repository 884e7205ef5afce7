#include "bus.h"

#include "error.h"
#include "ota-build-config.h"
#include "ota-dbus-generated.h"

#include <errno.h>
#include <pwd.h>
#include <unistd.h>

/* Progress while downloading: at most ~4 signals per second per module. */
#define BUS_PROGRESS_INTERVAL_US (250 * G_USEC_PER_SEC / 1000)

struct _OtaBus {
  GObject parent_instance;
  OtaAgent *agent;
  GDBusConnection *connection;
  OtaDBusOta *skeleton;
  GHashTable *watches; /* owner unique name → watch id */
  GHashTable *last_progress; /* module name → gint64 *: when its last Progress went out */
  guint name_id;
};

G_DEFINE_TYPE (OtaBus, ota_bus, G_TYPE_OBJECT)

enum { SIGNAL_NAME_ACQUIRED, SIGNAL_NAME_LOST, N_SIGNALS };
static guint signals[N_SIGNALS];

/* An Init waiting for the caller's credentials. */
typedef struct {
  OtaBus *bus;
  GDBusMethodInvocation *invocation;
  char *module, *version, *firmware_dir;
  gboolean ask;
} InitRequest;

static void
init_request_free (InitRequest *req)
{
  g_object_unref (req->bus);
  g_object_unref (req->invocation);
  g_free (req->module);
  g_free (req->version);
  g_free (req->firmware_dir);
  g_free (req);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (InitRequest, init_request_free)

/* ---- the shape of a module's status on the bus (docs/dbus.md) ---- */

/* GetStatus's a{sv}, floating. The keys, their types and their order are
 * what clients (libiv-ota, iv-ota, tests) read. */
static GVariant *
bus_status_to_variant (const OtaModuleStatus *s)
{
  g_auto (GVariantBuilder) builder = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);

  g_variant_builder_add (&builder, "{sv}", "state", g_variant_new_string (ota_module_state_to_string (s->state)));
  g_variant_builder_add (&builder, "{sv}", "version", g_variant_new_string (s->version));
  g_variant_builder_add (&builder, "{sv}", "target_version", g_variant_new_string (s->target_version));
  g_variant_builder_add (&builder, "{sv}", "downloaded", g_variant_new_uint64 (s->downloaded));
  g_variant_builder_add (&builder, "{sv}", "total", g_variant_new_uint64 (s->total));
  g_variant_builder_add (&builder, "{sv}", "percent", g_variant_new_uint32 (s->percent));
  g_variant_builder_add (&builder, "{sv}", "path", g_variant_new_string (s->path));
  g_variant_builder_add (&builder, "{sv}", "owner", g_variant_new_string (s->owner));
  g_variant_builder_add (&builder, "{sv}", "result_code", g_variant_new_int32 (s->result_code));
  g_variant_builder_add (&builder, "{sv}", "result_msg", g_variant_new_string (s->result_msg));
  g_variant_builder_add (&builder, "{sv}", "fail_kind", g_variant_new_string (s->fail_kind));
  if (s->task_id != NULL)
    g_variant_builder_add (&builder, "{sv}", "task_id", g_variant_new_string (s->task_id));
  if (s->user_defined != NULL)
    g_variant_builder_add (&builder, "{sv}", "user_defined", g_variant_new_string (s->user_defined));
  if (s->signatures)
    g_variant_builder_add (&builder, "{sv}", "signature_checked", g_variant_new_boolean (s->signature_checked));
  if (s->signature_checked) {
    g_variant_builder_add (&builder, "{sv}", "signing_key", g_variant_new_string (s->signing_key));
    g_variant_builder_add (&builder, "{sv}", "signing_key_file", g_variant_new_string (s->signing_key_file));
    g_variant_builder_add (&builder, "{sv}", "security_version", g_variant_new_uint32 (s->security_version));
  }
  g_variant_builder_add (&builder, "{sv}", "inhibited",
                         g_variant_new_strv (s->inhibited, s->inhibited != NULL ? -1 : 0));
  return g_variant_builder_end (&builder);
}

static void
bus_add_module_status (const char *module, const OtaModuleStatus *status, gpointer user_data)
{
  g_variant_builder_add (user_data, "{s@a{sv}}", module, bus_status_to_variant (status));
}

/* The Modules property: a{sa{sv}}, floating. */
static GVariant *
bus_modules_to_variant (OtaAgent *agent)
{
  g_auto (GVariantBuilder) builder = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE ("a{sa{sv}}"));

  ota_agent_foreach_status (agent, bus_add_module_status, &builder);
  return g_variant_builder_end (&builder);
}

static gboolean
bus_reply_error (GDBusMethodInvocation *invocation, const GError *error)
{
  g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

static void
on_owner_vanished (GDBusConnection *connection, const char *name, gpointer user_data)
{
  OtaBus *self = user_data;
  g_autofree char *owner = g_strdup (name); /* removing the watch may free @name */

  g_info ("client %s left the bus: releasing its modules and inhibit cookies", owner);
  g_hash_table_remove (self->watches, owner);
  ota_agent_release_owner (self->agent, owner);
  ota_agent_release_holder (self->agent, owner);
}

static void
bus_watch_owner (OtaBus *self, const char *owner)
{
  guint id;

  if (g_hash_table_contains (self->watches, owner))
    return;
  /* If the client is already gone, "vanished" comes at once. */
  id = g_bus_watch_name_on_connection (self->connection, owner, G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
                                       on_owner_vanished, self, NULL);
  g_hash_table_insert (self->watches, g_strdup (owner), GUINT_TO_POINTER (id));
}

static void
bus_unwatch_if_unused (OtaBus *self, const char *owner)
{
  if (!ota_agent_has_owner (self->agent, owner) && !ota_agent_has_holder (self->agent, owner))
    g_hash_table_remove (self->watches, owner);
}

static gboolean
bus_parse_options (GVariant *options, gboolean *ask, GError **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value)) {
    if (g_str_equal (key, "ask_before_download") && g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN)) {
      *ask = g_variant_get_boolean (value);
      continue;
    }
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS,
                 g_str_equal (key, "ask_before_download") ? "option %s must be a boolean" : "unknown option %s",
                 key);
    g_variant_unref (value); /* leaving g_variant_iter_loop early */
    return FALSE;
  }
  return TRUE;
}

/* The group that files given to @uid get; -1 (left as it is) for a uid
 * without a passwd entry. */
static gid_t
bus_primary_group (uid_t uid)
{
  struct passwd pw, *result = NULL;
  long hint = sysconf (_SC_GETPW_R_SIZE_MAX);
  gsize size = hint > 0 ? (gsize) hint : 1024;
  int rc;

  /* Long entries (NSS, LDAP) need more than the hint: grow until it fits. */
  for (;;) {
    g_autofree char *buf = g_malloc (size);

    rc = getpwuid_r (uid, &pw, buf, size, &result);
    if (rc != ERANGE || size >= 1024 * 1024)
      return rc == 0 && result != NULL ? pw.pw_gid : (gid_t) -1;
    size *= 2;
  }
}

static void
on_credentials (GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr (InitRequest) req = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), res, &error);
  g_autoptr (GVariant) creds = NULL;
  const char *sender = g_dbus_method_invocation_get_sender (req->invocation);
  guint32 uid;

  if (reply == NULL) {
    g_dbus_method_invocation_return_error (req->invocation, OTA_ERROR, OTA_ERROR_ACCESS_DENIED,
                                           "cannot identify the caller: %s", error->message);
    return;
  }
  creds = g_variant_get_child_value (reply, 0);
  if (!g_variant_lookup (creds, "UnixUserID", "u", &uid)) {
    g_dbus_method_invocation_return_error (req->invocation, OTA_ERROR, OTA_ERROR_ACCESS_DENIED,
                                           "the bus does not tell the caller's uid");
    return;
  }
  if (!ota_agent_init_module (req->bus->agent, sender, uid, bus_primary_group (uid), req->module, req->version,
                              req->firmware_dir, req->ask, &error)) {
    bus_reply_error (req->invocation, error);
    return;
  }
  bus_watch_owner (req->bus, sender);
  ota_dbus_ota_complete_init (req->bus->skeleton, req->invocation);
}

static gboolean
handle_init (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module, const char *version,
             const char *firmware_dir, GVariant *options, OtaBus *self)
{
  g_autoptr (GError) error = NULL;
  InitRequest *req;
  gboolean ask = FALSE;

  if (!bus_parse_options (options, &ask, &error))
    return bus_reply_error (invocation, error);
  req = g_new0 (InitRequest, 1);
  req->bus = g_object_ref (self);
  req->invocation = g_object_ref (invocation);
  req->module = g_strdup (module);
  req->version = g_strdup (version);
  req->firmware_dir = g_strdup (firmware_dir);
  req->ask = ask;
  /* The directory check needs the caller's uid, which only the bus knows. */
  g_dbus_connection_call (self->connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "GetConnectionCredentials",
                          g_variant_new ("(s)", g_dbus_method_invocation_get_sender (invocation)),
                          G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, on_credentials, req);
  return TRUE;
}

static gboolean
handle_prepare (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module, const char *version,
                gboolean accept, OtaBus *self)
{
  g_autoptr (GError) error = NULL;

  if (!ota_agent_prepare (self->agent, g_dbus_method_invocation_get_sender (invocation), module, version, accept,
                          &error))
    return bus_reply_error (invocation, error);
  ota_dbus_ota_complete_prepare (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_report_progress (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module,
                        const char *state, int percent, int result_code, const char *result_msg, OtaBus *self)
{
  g_autoptr (GError) error = NULL;

  if (!ota_agent_report_progress (self->agent, g_dbus_method_invocation_get_sender (invocation), module, state,
                                  percent, result_code, result_msg, &error))
    return bus_reply_error (invocation, error);
  ota_dbus_ota_complete_report_progress (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_cancel (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module, OtaBus *self)
{
  g_autoptr (GError) error = NULL;

  if (!ota_agent_cancel (self->agent, g_dbus_method_invocation_get_sender (invocation), module, &error))
    return bus_reply_error (invocation, error);
  ota_dbus_ota_complete_cancel (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_check_now (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module, OtaBus *self)
{
  g_autoptr (GError) error = NULL;

  if (!ota_agent_check_now (self->agent, module, &error))
    return bus_reply_error (invocation, error);
  ota_dbus_ota_complete_check_now (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_exit (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module, OtaBus *self)
{
  g_autoptr (GError) error = NULL;
  const char *sender = g_dbus_method_invocation_get_sender (invocation);

  if (!ota_agent_exit (self->agent, sender, module, &error))
    return bus_reply_error (invocation, error);
  bus_unwatch_if_unused (self, sender);
  ota_dbus_ota_complete_exit (skeleton, invocation);
  return TRUE;
}

static gboolean
handle_get_status (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module, OtaBus *self)
{
  g_autoptr (GError) error = NULL;
  OtaModuleStatus status;

  if (!ota_agent_get_status (self->agent, module, &status, &error))
    return bus_reply_error (invocation, error);
  ota_dbus_ota_complete_get_status (skeleton, invocation, bus_status_to_variant (&status));
  return TRUE;
}

static gboolean
handle_inhibit (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, const char *module, const char *reason,
                OtaBus *self)
{
  g_autoptr (GError) error = NULL;
  const char *sender = g_dbus_method_invocation_get_sender (invocation);
  guint32 cookie = 0;

  if (!ota_agent_inhibit (self->agent, sender, module, reason, &cookie, &error))
    return bus_reply_error (invocation, error);
  /* A holder that leaves the bus releases its cookies. */
  bus_watch_owner (self, sender);
  ota_dbus_ota_complete_inhibit (skeleton, invocation, cookie);
  return TRUE;
}

static gboolean
handle_uninhibit (OtaDBusOta *skeleton, GDBusMethodInvocation *invocation, guint32 cookie, OtaBus *self)
{
  g_autoptr (GError) error = NULL;
  const char *sender = g_dbus_method_invocation_get_sender (invocation);

  if (!ota_agent_uninhibit (self->agent, sender, cookie, &error))
    return bus_reply_error (invocation, error);
  bus_unwatch_if_unused (self, sender);
  ota_dbus_ota_complete_uninhibit (skeleton, invocation);
  return TRUE;
}

static void
on_agent_offered (OtaAgent *agent, const char *module, const char *version, guint64 size, OtaBus *self)
{
  ota_dbus_ota_emit_update_offered (self->skeleton, module, version, size);
}

/* At once, and PropertiesChanged before any signal that follows: clients
 * then never see a Progress newer than the Modules they can read. */
static void
bus_publish_modules (OtaBus *self)
{
  ota_dbus_ota_set_modules (self->skeleton, bus_modules_to_variant (self->agent));
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self->skeleton));
}

/* Whether a transfer-only Progress of @module goes out now; a state change
 * always does. Either way the next transfer tick waits its interval. */
static gboolean
bus_progress_is_due (OtaBus *self, const char *module, gboolean transfer)
{
  gint64 now = g_get_monotonic_time ();
  gint64 *last = g_hash_table_lookup (self->last_progress, module);

  if (last == NULL) {
    last = g_new (gint64, 1);
    g_hash_table_insert (self->last_progress, g_strdup (module), last);
  } else if (transfer && now - *last < BUS_PROGRESS_INTERVAL_US) {
    return FALSE;
  }
  *last = now;
  return TRUE;
}

static void
on_agent_progress (OtaAgent *agent, const char *module, const char *version, const char *state, guint percent,
                   guint64 downloaded, guint64 total, int result_code, const char *result_msg, gboolean transfer,
                   OtaBus *self)
{
  if (!bus_progress_is_due (self, module, transfer))
    return;
  /* The property first: a client that sees Progress and then reads Modules
   * must never find an older state there. */
  bus_publish_modules (self);
  ota_dbus_ota_emit_progress (self->skeleton, module, version, state, percent, downloaded, total, result_code,
                              result_msg);
}

static void
on_agent_firmware_ready (OtaAgent *agent, const char *module, const char *version, const char *path,
                         guint64 size, const char *md5, OtaBus *self)
{
  ota_dbus_ota_emit_firmware_ready (self->skeleton, module, version, path, size, md5);
}

static gboolean
bus_module_is_gone (gpointer key, gpointer value, gpointer user_data)
{
  OtaModuleStatus status;

  return !ota_agent_get_status (user_data, key, &status, NULL);
}

static void
on_agent_modules_changed (OtaAgent *agent, OtaBus *self)
{
  g_hash_table_foreach_remove (self->last_progress, bus_module_is_gone, self->agent);
  bus_publish_modules (self);
}

static void
on_agent_connection_changed (OtaAgent *agent, gboolean connected, OtaBus *self)
{
  ota_dbus_ota_set_connected (self->skeleton, connected);
}

static void
on_name_acquired (GDBusConnection *connection, const char *name, gpointer user_data)
{
  OtaBus *self = user_data;

  g_message ("serving %s on the bus", name);
  g_signal_emit (self, signals[SIGNAL_NAME_ACQUIRED], 0);
}

/* "by :1.7 (pid 4242)", or "" when the name has no owner (then the bus policy refused us). */
static char *
bus_describe_owner (GDBusConnection *connection, const char *name)
{
  g_autoptr (GVariant) owner = NULL;
  g_autoptr (GVariant) pid = NULL;
  const char *unique;
  guint32 pid_value;

  owner = g_dbus_connection_call_sync (connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetNameOwner", g_variant_new ("(s)", name),
                                       G_VARIANT_TYPE ("(s)"), G_DBUS_CALL_FLAGS_NONE, 2000, NULL, NULL);
  if (owner == NULL)
    return g_strdup ("");
  g_variant_get (owner, "(&s)", &unique);
  pid = g_dbus_connection_call_sync (connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetConnectionUnixProcessID",
                                     g_variant_new ("(s)", unique), G_VARIANT_TYPE ("(u)"), G_DBUS_CALL_FLAGS_NONE,
                                     2000, NULL, NULL);
  if (pid == NULL)
    return g_strdup_printf ("by %s", unique);
  g_variant_get (pid, "(u)", &pid_value);
  return g_strdup_printf ("by %s (pid %u)", unique, pid_value);
}

static void
on_name_lost (GDBusConnection *connection, const char *name, gpointer user_data)
{
  OtaBus *self = user_data;
  g_autofree char *owner = connection != NULL ? bus_describe_owner (connection, name) : g_strdup ("");

  if (*owner != '\0')
    g_warning ("cannot own %s on the bus: it is owned %s, another iv-otad is running", name, owner);
  else
    g_warning ("cannot own %s on the bus (not allowed by the bus policy, or the bus went away)", name);
  g_signal_emit (self, signals[SIGNAL_NAME_LOST], 0);
}

static void
bus_connect_handlers (OtaBus *self)
{
  g_signal_connect (self->skeleton, "handle-init", G_CALLBACK (handle_init), self);
  g_signal_connect (self->skeleton, "handle-prepare", G_CALLBACK (handle_prepare), self);
  g_signal_connect (self->skeleton, "handle-report-progress", G_CALLBACK (handle_report_progress), self);
  g_signal_connect (self->skeleton, "handle-cancel", G_CALLBACK (handle_cancel), self);
  g_signal_connect (self->skeleton, "handle-check-now", G_CALLBACK (handle_check_now), self);
  g_signal_connect (self->skeleton, "handle-exit", G_CALLBACK (handle_exit), self);
  g_signal_connect (self->skeleton, "handle-get-status", G_CALLBACK (handle_get_status), self);
  g_signal_connect (self->skeleton, "handle-inhibit", G_CALLBACK (handle_inhibit), self);
  g_signal_connect (self->skeleton, "handle-uninhibit", G_CALLBACK (handle_uninhibit), self);
  g_signal_connect_object (self->agent, "offered", G_CALLBACK (on_agent_offered), self, 0);
  g_signal_connect_object (self->agent, "progress", G_CALLBACK (on_agent_progress), self, 0);
  g_signal_connect_object (self->agent, "firmware-ready", G_CALLBACK (on_agent_firmware_ready), self, 0);
  g_signal_connect_object (self->agent, "modules-changed", G_CALLBACK (on_agent_modules_changed), self, 0);
  g_signal_connect_object (self->agent, "connection-changed", G_CALLBACK (on_agent_connection_changed), self, 0);
}

OtaBus *
ota_bus_new (OtaAgent *agent, GDBusConnection *connection, GError **error)
{
  g_autoptr (OtaBus) self = g_object_new (OTA_TYPE_BUS, NULL);

  g_return_val_if_fail (OTA_IS_AGENT (agent), NULL);
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection), NULL);

  self->agent = g_object_ref (agent);
  self->connection = g_object_ref (connection);
  self->skeleton = ota_dbus_ota_skeleton_new ();
  ota_dbus_ota_set_daemon_version (self->skeleton, PACKAGE_VERSION);
  ota_dbus_ota_set_connected (self->skeleton, ota_agent_get_connected (agent));
  ota_dbus_ota_set_modules (self->skeleton, bus_modules_to_variant (agent));
  bus_connect_handlers (self);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->skeleton), connection, OTA_BUS_PATH,
                                         error))
    return NULL;
  self->name_id = g_bus_own_name_on_connection (connection, OTA_BUS_NAME, G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE,
                                                on_name_acquired, on_name_lost, self, NULL);
  return g_steal_pointer (&self);
}

static void
ota_bus_dispose (GObject *object)
{
  OtaBus *self = OTA_BUS (object);

  g_clear_handle_id (&self->name_id, g_bus_unown_name);
  g_clear_pointer (&self->watches, g_hash_table_unref);
  g_clear_pointer (&self->last_progress, g_hash_table_unref);
  if (self->skeleton != NULL) {
    g_signal_handlers_disconnect_by_data (self->skeleton, self);
    if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (self->skeleton)) != NULL)
      g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->skeleton));
  }
  g_clear_object (&self->skeleton);
  g_clear_object (&self->agent);
  g_clear_object (&self->connection);
  G_OBJECT_CLASS (ota_bus_parent_class)->dispose (object);
}

static void
ota_bus_class_init (OtaBusClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = ota_bus_dispose;
  signals[SIGNAL_NAME_ACQUIRED] = g_signal_new ("name-acquired", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                                NULL, NULL, NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_NAME_LOST] = g_signal_new ("name-lost", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                                            NULL, NULL, G_TYPE_NONE, 0);
}

static void
unwatch (gpointer data)
{
  g_bus_unwatch_name (GPOINTER_TO_UINT (data));
}

static void
ota_bus_init (OtaBus *self)
{
  self->watches = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, unwatch);
  self->last_progress = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}
