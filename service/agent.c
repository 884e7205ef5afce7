#include "agent.h"

#include "downloader.h"
#include "error.h"
#include "inhibitions.h"
#include "installer.h"
#include "module.h"
#include "mqtt-link.h"
#include "network.h"
#include "outbox.h"
#include "protocol.h"
#include "reporter.h"
#include "signin.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <glib/gstdio.h>

struct _OtaAgent {
  GObject parent_instance;
  OtaConfig *config;
  OtaMqttLink *link;
  OtaReporter *reporter;
  SoupSession *session;
  GHashTable *modules; /* name → OtaModule */
  OtaKeyring *keyring; /* [security] trusted_keys, NULL when none */
  OtaInhibitions *inhibitions;
  GPtrArray *installers; /* OtaInstaller of the [install] groups */
  /* IV_OTAD_TEST_SIGNIN: a fixed connid and expiry, so that a test broker's
   * password file can hold the signed credentials. NULL: fresh ones. */
  char *fixed_connid;
  gint64 fixed_expiry;
};

/* Announced to the broker (MQTT 5): the largest message anyone may send us
 * (64 KiB of payload) with room for its topic and header. */
#define OTA_AGENT_MAX_PACKET_SIZE (OTA_PROTOCOL_MAX_MESSAGE_SIZE + 4096)

/* Before this (2020-01-01) the clock has not been set since boot. */
#define OTA_CLOCK_SANE_AFTER G_GINT64_CONSTANT (1577836800)

G_DEFINE_TYPE (OtaAgent, ota_agent, G_TYPE_OBJECT)

enum {
  SIGNAL_OFFERED,
  SIGNAL_PROGRESS,
  SIGNAL_FIRMWARE_READY,
  SIGNAL_MODULES_CHANGED,
  SIGNAL_CONNECTION_CHANGED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void
on_module_report (OtaModule *module, const char *payload, gboolean reliable, const char *coalesce_key,
                  OtaAgent *self)
{
  if (reliable)
    ota_reporter_send_reliable (self->reporter, payload, coalesce_key);
  else
    ota_reporter_send_volatile (self->reporter, payload);
}

static void
on_module_offered (OtaModule *module, const char *version, guint64 size, OtaAgent *self)
{
  g_signal_emit (self, signals[SIGNAL_OFFERED], 0, ota_module_get_name (module), version, size);
}

static void
on_module_progress (OtaModule *module, gboolean transfer, OtaAgent *self)
{
  OtaModuleProgress p;

  ota_module_get_progress (module, &p);
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, ota_module_get_name (module), p.version,
                 ota_module_state_to_string (p.state), p.percent, p.downloaded, p.total, p.result_code,
                 p.result_msg, transfer);
}

static void
on_module_firmware_ready (OtaModule *module, const char *version, const char *path, guint64 size,
                          const char *md5, OtaAgent *self)
{
  g_signal_emit (self, signals[SIGNAL_FIRMWARE_READY], 0, ota_module_get_name (module), version, path, size,
                 md5);
}

/* Hands @module the reasons of the cookies held for it (none: it goes on). */
static void
agent_apply_inhibitions (OtaAgent *self, const char *module)
{
  OtaModule *m = g_hash_table_lookup (self->modules, module);
  g_auto (GStrv) reasons = NULL;

  if (m == NULL)
    return;
  reasons = ota_inhibitions_get_reasons (self->inhibitions, module);
  ota_module_set_inhibitors (m, (const char *const *) reasons);
}

/* No two modules write or announce the same file: the first to take an
 * offer holds its file name until its cycle ends, a later one is refused. */
static char *
agent_image_name_taken (OtaModule *module, int dir_fd, const char *file_name, gpointer user_data)
{
  OtaAgent *self = user_data;
  GHashTableIter iter;
  gpointer other;
  struct stat st;

  if (fstat (dir_fd, &st) != 0)
    return NULL;
  g_hash_table_iter_init (&iter, self->modules);
  while (g_hash_table_iter_next (&iter, NULL, &other)) {
    const char *name;
    dev_t dev;
    ino_t ino;
    OtaModuleProgress p;

    if (other == module || !ota_module_get_image_name (other, &dev, &ino, &name) || dev != st.st_dev ||
        ino != st.st_ino || strcmp (name, file_name) != 0)
      continue;
    ota_module_get_progress (other, &p);
    return g_strdup_printf ("%s in the same directory is already the image of module %s, version %s (%s): "
                            "module %s will not write or announce the same file",
                            file_name, ota_protocol_module_label (ota_module_get_name (other)), p.version,
                            ota_module_state_to_string (p.state),
                            ota_protocol_module_label (ota_module_get_name (module)));
  }
  return NULL;
}

static OtaModule *
agent_add_module (OtaAgent *self, const char *name)
{
  OtaModule *module = ota_module_new (name, self->config, self->session);

  ota_module_set_keyring (module, self->keyring);
  ota_module_set_name_guard (module, agent_image_name_taken, self);
  g_signal_connect (module, "report", G_CALLBACK (on_module_report), self);
  g_signal_connect (module, "offered", G_CALLBACK (on_module_offered), self);
  g_signal_connect (module, "progress", G_CALLBACK (on_module_progress), self);
  g_signal_connect (module, "firmware-ready", G_CALLBACK (on_module_firmware_ready), self);
  g_hash_table_insert (self->modules, g_strdup (name), module);
  agent_apply_inhibitions (self, name);
  return module;
}

static OtaModule *
agent_owned_module (OtaAgent *self, const char *module)
{
  OtaModule *m = g_hash_table_lookup (self->modules, module);
  return m != NULL && ota_module_get_owner (m) != NULL ? m : NULL;
}

static void
agent_handle_offer (OtaAgent *self, const OtaOffer *offer)
{
  OtaModule *module = agent_owned_module (self, offer->module);

  if (module == NULL) {
    g_warning ("update_firmware %s for module %s dropped: no application owns that module", offer->version,
               ota_protocol_module_label (offer->module));
    return;
  }
  ota_module_handle_offer (module, offer);
}

static void
on_link_message (OtaMqttLink *link, const char *topic, GBytes *payload, OtaAgent *self)
{
  g_autoptr (GError) error = NULL;
  OtaCloudMessage msg = { 0 };
  gsize length = 0;
  const char *data = g_bytes_get_data (payload, &length);
  OtaModule *module;

  if (g_strcmp0 (topic, self->config->update_topic) != 0)
    return;
  /* A retained message is whatever someone left on the topic, maybe long
   * ago: the broker replays it at every subscription. Offers are live only. */
  if (ota_mqtt_link_get_message_retained (link)) {
    g_warning ("retained message on %s ignored (%" G_GSIZE_FORMAT " bytes): offers are taken only as they are "
               "published",
               topic, length);
    return;
  }
  /* Sizes over max_firmware_size parse: the module refuses them with a fail
   * report, so that the cloud learns why (module_offer_refusal()). */
  if (!ota_protocol_parse (data, length, OTA_PROTOCOL_FILE_SIZE_LIMIT, &msg, &error)) {
    g_warning ("cloud message rejected (%" G_GSIZE_FORMAT " bytes): %s", length, error->message);
    return;
  }
  if (msg.type == OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE) {
    agent_handle_offer (self, &msg.offer);
  } else {
    module = agent_owned_module (self, msg.ack.module);
    if (module != NULL)
      ota_module_handle_version_ack (module, &msg.ack);
  }
  ota_cloud_message_clear (&msg);
}

static void
on_link_connection_changed (OtaMqttLink *link, gboolean connected, OtaAgent *self)
{
  GHashTableIter iter;
  gpointer module;

  g_message ("cloud %s", connected ? "connected" : "disconnected");
  g_signal_emit (self, signals[SIGNAL_CONNECTION_CHANGED], 0, connected);
  if (!connected)
    return;
  g_hash_table_iter_init (&iter, self->modules);
  while (g_hash_table_iter_next (&iter, NULL, &module))
    ota_module_handle_connected (module);
}

/* Device key sign-in: a new connid and expiry for every connection attempt,
 * so that the credentials never expire while the agent runs. */
static gboolean
agent_signin_credentials (gpointer user_data, char **username, char **password, GError **error)
{
  OtaAgent *self = user_data;
  OtaConfig *config = self->config;
  g_autofree char *connid = NULL;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  gint64 expiry = now + OTA_SIGNIN_LIFETIME_S;

  if (self->fixed_connid != NULL) {
    connid = g_strdup (self->fixed_connid);
    expiry = self->fixed_expiry;
  } else {
    connid = ota_signin_new_connid ();
    if (now < OTA_CLOCK_SANE_AFTER)
      g_warning ("mqtt: the system clock is not set (unix time %" G_GINT64_FORMAT "): the platform refuses "
                 "signed credentials that expired by its clock; retrying until the clock is set",
                 now);
  }
  return ota_signin_compute (config->product_id, config->device_name, config->device_secret, connid, expiry,
                             username, password, error);
}

static gboolean
agent_read_test_signin (OtaAgent *self, GError **error)
{
  const char *text = g_getenv ("IV_OTAD_TEST_SIGNIN");

  if (text == NULL)
    return TRUE;
  if (!ota_signin_parse_fixed (text, &self->fixed_connid, &self->fixed_expiry, error)) {
    g_prefix_error (error, "IV_OTAD_TEST_SIGNIN: ");
    return FALSE;
  }
  g_warning ("IV_OTAD_TEST_SIGNIN is set: device key sign-in uses the fixed connid %s and expiry %" G_GINT64_FORMAT
             " (for tests only)",
             self->fixed_connid, self->fixed_expiry);
  return TRUE;
}

static OtaMqttLink *
agent_new_link (OtaAgent *self, GError **error)
{
  OtaConfig *config = self->config;
  gboolean signin = *config->device_secret != '\0';
  OtaMqttSettings settings = {
    .host = config->mqtt_host,
    .port = config->mqtt_port,
    .client_id = config->mqtt_client_id,
    .username = config->mqtt_username,
    .password = config->mqtt_password,
    .credentials_func = signin ? agent_signin_credentials : NULL,
    .credentials_data = self,
    .keepalive = config->mqtt_keepalive,
    .tls = config->mqtt_tls,
    .ca_file = config->mqtt_ca_file,
    .cert_file = config->mqtt_cert_file,
    .key_file = config->mqtt_key_file,
    .max_packet_size = OTA_AGENT_MAX_PACKET_SIZE,
  };

  return ota_mqtt_link_new (&settings, error);
}

/* [ota] proxy, else the environment; downloads only (MQTT goes direct). */
static gboolean
agent_set_proxy (OtaAgent *self, GError **error)
{
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GProxyResolver) resolver = ota_proxy_resolver_new_from_env (self->config->proxy, &local_error);

  if (local_error != NULL) {
    g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "download proxy: ");
    return FALSE;
  }
  if (resolver == NULL)
    return TRUE;
  g_object_set (self->session, "proxy-resolver", resolver, NULL);
  g_message ("downloads go through a proxy (%s)",
             *self->config->proxy != '\0' ? "[ota] proxy" : "https_proxy/http_proxy environment");
  return TRUE;
}

/* Read once, at start: a key removed from the config (or its file) is no
 * longer trusted after the next restart. */
static gboolean
agent_load_trusted_keys (OtaAgent *self, GError **error)
{
  g_auto (GStrv) paths = ota_config_get_trusted_keys (self->config);
  g_autoptr (OtaKeyring) keyring = NULL;

  if (paths[0] == NULL)
    return TRUE;
  keyring = ota_keyring_new ();
  if (!ota_keyring_add_files (keyring, (const char *const *) paths, error)) {
    g_prefix_error (error, "[security] trusted_keys: ");
    return FALSE;
  }
  g_message ("offers need an image signature by one of %u trusted key(s)", ota_keyring_get_size (keyring));
  self->keyring = g_steal_pointer (&keyring);
  return TRUE;
}

OtaAgent *
ota_agent_new (OtaConfig *config, GError **error)
{
  g_return_val_if_fail (config != NULL, NULL);

  g_autoptr (OtaAgent) self = g_object_new (OTA_TYPE_AGENT, NULL);
  g_autofree char *outbox_path = g_build_filename (config->state_dir, "outbox.json", NULL);
  OtaOutbox *outbox;

  self->config = config;
  if (g_mkdir_with_parents (config->state_dir, 0700) != 0) {
    ota_set_error_from_errno (error, errno, "cannot create state_dir %s", config->state_dir);
    return NULL;
  }
  self->session = ota_download_session_new (config->ca_file, error);
  if (self->session == NULL || !agent_set_proxy (self, error) || !agent_load_trusted_keys (self, error))
    return NULL;
  if (*config->device_secret != '\0' && !agent_read_test_signin (self, error))
    return NULL;
  self->link = agent_new_link (self, error);
  if (self->link == NULL)
    return NULL;
  outbox = ota_outbox_open (outbox_path, error);
  if (outbox == NULL)
    return NULL;
  self->reporter = ota_reporter_new (self->link, outbox, config->report_topic);
  ota_mqtt_link_add_subscription (self->link, config->update_topic, 1);
  g_signal_connect (self->link, "message", G_CALLBACK (on_link_message), self);
  g_signal_connect (self->link, "connection-changed", G_CALLBACK (on_link_connection_changed), self);
  /* From now on, an app's Init of an installer's module is refused. */
  for (guint i = 0; i < config->installers->len; i++)
    g_ptr_array_add (self->installers, ota_installer_new (config->installers->pdata[i], config, self));
  return g_steal_pointer (&self);
}

void
ota_agent_start (OtaAgent *self)
{
  g_return_if_fail (OTA_IS_AGENT (self));

  OtaConfig *config = self->config;

  g_message ("connecting to the cloud at %s:%u%s as %s (%s); reports on %s, offers on %s", config->mqtt_host,
             config->mqtt_port, config->mqtt_tls ? " over TLS" : "", config->mqtt_client_id,
             *config->device_secret != '\0'            ? "device key sign-in"
             : *config->mqtt_cert_file != '\0' && config->mqtt_tls ? "certificate sign-in"
             : *config->mqtt_username != '\0'          ? "username and password"
                                                       : "anonymous",
             config->report_topic, config->update_topic);
  ota_mqtt_link_start (self->link);
  for (guint i = 0; i < self->installers->len; i++)
    ota_installer_start (self->installers->pdata[i]);
}

static void
agent_stop (OtaAgent *self)
{
  GHashTableIter iter;
  gpointer module;

  for (guint i = 0; i < self->installers->len; i++)
    ota_installer_stop (self->installers->pdata[i]);
  g_hash_table_iter_init (&iter, self->modules);
  while (g_hash_table_iter_next (&iter, NULL, &module)) {
    ota_module_cancel (module);
    ota_module_flush_reports (module);
  }
  ota_mqtt_link_stop (self->link);
}

static gboolean
keep_iterating (gpointer user_data)
{
  return G_SOURCE_CONTINUE;
}

/* Cancelled downloads hand their last buffers to their workers once the
 * cancelled reads come back (main context), and the workers then write them
 * and checkpoint: iterate until every worker is done, bounded. A worker only
 * writes what was already received and syncs once, so the bound is
 * generous. */
static void
agent_wait_for_downloads (void)
{
  gint64 deadline = g_get_monotonic_time () + OTA_AGENT_SHUTDOWN_WAIT_S * G_USEC_PER_SEC;
  guint tick;

  if (ota_download_count_workers () == 0)
    return;
  g_info ("waiting for %u download worker(s) to write their last checkpoint", ota_download_count_workers ());
  /* Workers wake the context when they end; the tick bounds each wait. */
  tick = g_timeout_add (100, keep_iterating, NULL);
  while (ota_download_count_workers () > 0 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
  if (ota_download_count_workers () > 0)
    g_warning ("%u download worker(s) still busy after %d s; exiting anyway (the last checkpoint stays valid)",
               ota_download_count_workers (), OTA_AGENT_SHUTDOWN_WAIT_S);
}

void
ota_agent_shutdown (OtaAgent *self)
{
  g_return_if_fail (OTA_IS_AGENT (self));

  agent_stop (self);
  agent_wait_for_downloads ();
}

gboolean
ota_agent_get_connected (OtaAgent *self)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);
  return ota_mqtt_link_get_connected (self->link);
}

OtaMqttLink *
ota_agent_get_link (OtaAgent *self)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), NULL);
  return self->link;
}

static gboolean
agent_check_module_name (const char *module, GError **error)
{
  if (!ota_protocol_module_is_valid (module)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS,
                 "module must be \"\" or 1..32 characters of [A-Za-z0-9._-], not \"%s\"", module);
    return FALSE;
  }
  return TRUE;
}

static OtaModule *
agent_lookup (OtaAgent *self, const char *module, GError **error)
{
  OtaModule *m;

  if (!agent_check_module_name (module, error))
    return NULL;
  m = g_hash_table_lookup (self->modules, module);
  if (m == NULL)
    g_set_error (error, OTA_ERROR, OTA_ERROR_NO_SUCH_MODULE, "no module \"%s\"", module);
  return m;
}

/* The module, if @owner owns it. */
static OtaModule *
agent_lookup_owned (OtaAgent *self, const char *owner, const char *module, GError **error)
{
  OtaModule *m = agent_lookup (self, module, error);

  if (m != NULL && g_strcmp0 (ota_module_get_owner (m), owner) != 0) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_NOT_OWNER, "module \"%s\" is not owned by %s", module, owner);
    return NULL;
  }
  return m;
}

/* Released modules stay listed for status. When the table is full, one of
 * them (the first the hash table yields, not necessarily the oldest) makes
 * room for a new one; owned modules are never dropped. */
static gboolean
agent_make_room (OtaAgent *self)
{
  GHashTableIter iter;
  gpointer module;

  if (g_hash_table_size (self->modules) < OTA_AGENT_MAX_MODULES)
    return TRUE;
  g_hash_table_iter_init (&iter, self->modules);
  while (g_hash_table_iter_next (&iter, NULL, &module)) {
    if (ota_module_get_owner (module) == NULL) {
      g_hash_table_iter_remove (&iter);
      g_signal_emit (self, signals[SIGNAL_MODULES_CHANGED], 0);
      return TRUE;
    }
  }
  return FALSE;
}

static OtaInstaller *
agent_lookup_installer (OtaAgent *self, const char *module)
{
  for (guint i = 0; i < self->installers->len; i++) {
    if (g_str_equal (ota_installer_get_module (self->installers->pdata[i]), module))
      return self->installers->pdata[i];
  }
  return NULL;
}

/* The module of an installer is the installer's alone, even while it
 * cannot register it. */
static gboolean
agent_check_installer (OtaAgent *self, const char *owner, const char *module, GError **error)
{
  OtaInstaller *installer = agent_lookup_installer (self, module);

  if (installer == NULL || g_str_equal (ota_installer_get_owner (installer), owner))
    return TRUE;
  g_set_error (error, OTA_ERROR, OTA_ERROR_BUSY,
               "module \"%s\" is installed by the agent itself (%s, [install%s%s] in its configuration)", module,
               ota_installer_get_owner (installer), *module != '\0' ? "." : "", module);
  return FALSE;
}

void
ota_agent_set_module_problem (OtaAgent *self, const char *module, const char *problem)
{
  g_return_if_fail (OTA_IS_AGENT (self));

  OtaModule *m = g_hash_table_lookup (self->modules, module);

  if (m == NULL && problem == NULL)
    return;
  if (m == NULL)
    m = agent_add_module (self, module);
  ota_module_set_problem (m, problem);
}

gboolean
ota_agent_init_module (OtaAgent *self, const char *owner, uid_t uid, gid_t gid, const char *module,
                       const char *version, const char *firmware_dir, gboolean ask_before_download,
                       GError **error)
{
  OtaModule *m;
  gboolean created;

  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);

  if (!agent_check_module_name (module, error) || !agent_check_installer (self, owner, module, error))
    return FALSE;
  m = g_hash_table_lookup (self->modules, module);
  created = m == NULL;
  if (created && !agent_make_room (self)) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "too many modules (at most %d)", OTA_AGENT_MAX_MODULES);
    return FALSE;
  }
  if (created)
    m = agent_add_module (self, module);
  if (!ota_module_activate (m, owner, uid, gid, version, firmware_dir, ask_before_download, error)) {
    /* A refused Init leaves no trace: NoSuchModule stays true, the table stays bounded. */
    if (created)
      g_hash_table_remove (self->modules, module);
    return FALSE;
  }
  return TRUE;
}

gboolean
ota_agent_prepare (OtaAgent *self, const char *owner, const char *module, const char *version,
                   gboolean accept, GError **error)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);
  OtaModule *m = agent_lookup_owned (self, owner, module, error);
  return m != NULL && ota_module_prepare (m, version, accept, error);
}

gboolean
ota_agent_report_progress (OtaAgent *self, const char *owner, const char *module, const char *state,
                           int percent, int result_code, const char *result_msg, GError **error)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);
  OtaModule *m = agent_lookup_owned (self, owner, module, error);
  return m != NULL && ota_module_report_progress (m, state, percent, result_code, result_msg, error);
}

gboolean
ota_agent_cancel (OtaAgent *self, const char *owner, const char *module, GError **error)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);

  OtaModule *m = agent_lookup_owned (self, owner, module, error);

  if (m == NULL)
    return FALSE;
  ota_module_cancel (m);
  return TRUE;
}

gboolean
ota_agent_check_now (OtaAgent *self, const char *module, GError **error)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);
  OtaModule *m = agent_lookup (self, module, error);
  return m != NULL && ota_module_check_now (m, error);
}

gboolean
ota_agent_exit (OtaAgent *self, const char *owner, const char *module, GError **error)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);

  OtaModule *m = agent_lookup_owned (self, owner, module, error);

  if (m == NULL)
    return FALSE;
  ota_module_deactivate (m);
  return TRUE;
}

gboolean
ota_agent_get_status (OtaAgent *self, const char *module, OtaModuleStatus *status, GError **error)
{
  OtaModule *m = NULL;

  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);
  g_return_val_if_fail (status != NULL, FALSE);

  m = agent_lookup (self, module, error);
  if (m == NULL)
    return FALSE;
  ota_module_get_status (m, status);
  return TRUE;
}

void
ota_agent_foreach_status (OtaAgent *self, OtaAgentStatusFunc func, gpointer user_data)
{
  GHashTableIter iter;
  gpointer name, module;

  g_return_if_fail (OTA_IS_AGENT (self));
  g_return_if_fail (func != NULL);

  g_hash_table_iter_init (&iter, self->modules);
  while (g_hash_table_iter_next (&iter, &name, &module)) {
    OtaModuleStatus status;

    ota_module_get_status (module, &status);
    func (name, &status, user_data);
  }
}

void
ota_agent_release_owner (OtaAgent *self, const char *owner)
{
  GHashTableIter iter;
  gpointer module;

  g_return_if_fail (OTA_IS_AGENT (self));

  g_hash_table_iter_init (&iter, self->modules);
  while (g_hash_table_iter_next (&iter, NULL, &module)) {
    if (g_strcmp0 (ota_module_get_owner (module), owner) == 0)
      ota_module_deactivate (module);
  }
}

gboolean
ota_agent_has_owner (OtaAgent *self, const char *owner)
{
  GHashTableIter iter;
  gpointer module;

  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);

  g_hash_table_iter_init (&iter, self->modules);
  while (g_hash_table_iter_next (&iter, NULL, &module)) {
    if (g_strcmp0 (ota_module_get_owner (module), owner) == 0)
      return TRUE;
  }
  return FALSE;
}

gboolean
ota_agent_inhibit (OtaAgent *self, const char *holder, const char *module, const char *reason, guint32 *cookie,
                   GError **error)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);
  if (!agent_check_module_name (module, error) ||
      !ota_inhibitions_add (self->inhibitions, holder, module, reason, cookie, error))
    return FALSE;
  g_message ("module %s: downloads inhibited by %s (cookie %u): %s", ota_protocol_module_label (module), holder,
             *cookie, reason);
  agent_apply_inhibitions (self, module);
  return TRUE;
}

gboolean
ota_agent_uninhibit (OtaAgent *self, const char *holder, guint32 cookie, GError **error)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);

  g_autofree char *module = ota_inhibitions_remove (self->inhibitions, holder, cookie, error);

  if (module == NULL)
    return FALSE;
  g_message ("module %s: inhibit cookie %u released by %s", ota_protocol_module_label (module), cookie, holder);
  agent_apply_inhibitions (self, module);
  return TRUE;
}

void
ota_agent_release_holder (OtaAgent *self, const char *holder)
{
  g_return_if_fail (OTA_IS_AGENT (self));

  g_autoptr (GPtrArray) modules = ota_inhibitions_remove_holder (self->inhibitions, holder);

  for (guint i = 0; i < modules->len; i++) {
    g_message ("module %s: inhibit cookies of %s released (it left the bus)",
               ota_protocol_module_label (g_ptr_array_index (modules, i)), holder);
    agent_apply_inhibitions (self, g_ptr_array_index (modules, i));
  }
}

gboolean
ota_agent_has_holder (OtaAgent *self, const char *holder)
{
  g_return_val_if_fail (OTA_IS_AGENT (self), FALSE);
  return ota_inhibitions_has_holder (self->inhibitions, holder);
}

static void
ota_agent_dispose (GObject *object)
{
  OtaAgent *self = OTA_AGENT (object);

  /* Installers first: they act on modules. Modules next: they hold the
   * session and emit into the reporter. */
  g_clear_pointer (&self->installers, g_ptr_array_unref);
  g_clear_pointer (&self->modules, g_hash_table_unref);
  g_clear_object (&self->reporter);
  g_clear_object (&self->link);
  g_clear_object (&self->session);
  G_OBJECT_CLASS (ota_agent_parent_class)->dispose (object);
}

static void
ota_agent_finalize (GObject *object)
{
  OtaAgent *self = OTA_AGENT (object);

  ota_config_free (self->config);
  /* After the modules (dispose) that point to it. */
  ota_keyring_free (self->keyring);
  ota_inhibitions_free (self->inhibitions);
  g_free (self->fixed_connid);
  G_OBJECT_CLASS (ota_agent_parent_class)->finalize (object);
}

static void
ota_agent_class_init (OtaAgentClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GType type = G_TYPE_FROM_CLASS (klass);

  object_class->dispose = ota_agent_dispose;
  object_class->finalize = ota_agent_finalize;
  signals[SIGNAL_OFFERED] = g_signal_new ("offered", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                          3, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_UINT64);
  signals[SIGNAL_PROGRESS] = g_signal_new ("progress", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                           G_TYPE_NONE, 9, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING,
                                           G_TYPE_UINT, G_TYPE_UINT64, G_TYPE_UINT64, G_TYPE_INT, G_TYPE_STRING,
                                           G_TYPE_BOOLEAN);
  signals[SIGNAL_FIRMWARE_READY] = g_signal_new ("firmware-ready", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                 G_TYPE_NONE, 5, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING,
                                                 G_TYPE_UINT64, G_TYPE_STRING);
  signals[SIGNAL_MODULES_CHANGED] = g_signal_new ("modules-changed", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                                  NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_CONNECTION_CHANGED] = g_signal_new ("connection-changed", type, G_SIGNAL_RUN_LAST, 0, NULL,
                                                     NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
ota_agent_init (OtaAgent *self)
{
  self->modules = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->inhibitions = ota_inhibitions_new ();
  self->installers = g_ptr_array_new_with_free_func (g_object_unref);
}
