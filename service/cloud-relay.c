#include "cloud-relay.h"

#include "error.h"
#include "ota-dbus-generated.h"

#include <mosquitto.h>
#include <string.h>

/* A caller with subscriptions. */
typedef struct {
  char *name;
  GPtrArray *filters; /* of char *, distinct */
  guint watch_id;
} Client;

/* A Publish in flight on the current session, by mid. */
typedef struct {
  GDBusMethodInvocation *invocation; /* NULL once answered (queued message) */
  char *topic;
  GBytes *payload;
  int qos;
  gboolean queue;
  guint64 seq; /* order of sending, to requeue in order */
} Outgoing;

/* A message the link reported published while relay_send() was running. */
typedef struct {
  int mid;
  int reason;
} Published;

/* A Subscribe waiting for the broker's SUBACK. */
typedef struct {
  GDBusMethodInvocation *invocation;
  char *client;
  char *filter;
} SubscribeWait;

struct _OtaCloudRelay {
  GObject parent_instance;
  OtaMqttLink *link;
  OtaTopicRules *rules;
  GDBusConnection *connection;
  char *object_path;
  OtaDBusOtaCloud *skeleton;
  GHashTable *clients;        /* name → Client */
  GHashTable *broker_filters; /* filter → mid of its SUBSCRIBE (GINT), -1 once acknowledged */
  GHashTable *sub_waits;      /* mid → GPtrArray of SubscribeWait */
  GHashTable *in_flight;      /* mid → Outgoing */
  GQueue queue;               /* of Outgoing (invocation NULL), oldest first */
  gsize queue_bytes;
  guint64 next_seq;
  /* libmosquitto writes a QoS 0 message at once when it can, and reports it
   * published before ota_mqtt_link_publish() has returned its mid. */
  gboolean publishing;
  GArray *published_during_publish; /* of Published */
};

G_DEFINE_TYPE (OtaCloudRelay, ota_cloud_relay, G_TYPE_OBJECT)

static void relay_resync (OtaCloudRelay *self);

static void
client_free (gpointer data)
{
  Client *client = data;

  if (client->watch_id != 0)
    g_bus_unwatch_name (client->watch_id);
  g_ptr_array_unref (client->filters);
  g_free (client->name);
  g_free (client);
}

static void
outgoing_free (gpointer data)
{
  Outgoing *out = data;

  g_clear_object (&out->invocation);
  g_free (out->topic);
  g_bytes_unref (out->payload);
  g_free (out);
}

static void
subscribe_wait_free (gpointer data)
{
  SubscribeWait *wait = data;

  g_clear_object (&wait->invocation);
  g_free (wait->client);
  g_free (wait->filter);
  g_free (wait);
}

static gboolean
relay_return_error (GDBusMethodInvocation *invocation, const GError *error)
{
  g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

/* ---- subscriptions ---- */

static gboolean
filter_is_covered_by_another (GPtrArray *all, const char *filter)
{
  for (guint i = 0; i < all->len; i++) {
    const char *other = g_ptr_array_index (all, i);
    if (!g_str_equal (other, filter) && ota_topic_filter_covers (other, filter))
      return TRUE;
  }
  return FALSE;
}

/* The union of every caller's filters, without those another one covers:
 * fewer broker subscriptions, and fewer duplicate deliveries. */
static GHashTable *
relay_wanted_filters (OtaCloudRelay *self)
{
  g_autoptr (GPtrArray) all = g_ptr_array_new ();
  GHashTable *wanted = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->clients);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Client *client = value;
    for (guint i = 0; i < client->filters->len; i++)
      g_ptr_array_add (all, g_ptr_array_index (client->filters, i));
  }
  for (guint i = 0; i < all->len; i++) {
    const char *filter = g_ptr_array_index (all, i);
    if (!filter_is_covered_by_another (all, filter))
      g_hash_table_add (wanted, (gpointer) filter);
  }
  return wanted;
}

/* Subscribes what is new before unsubscribing what is no longer needed, so
 * that a filter replaced by a wider one loses no message in between. */
static void
relay_resync (OtaCloudRelay *self)
{
  g_autoptr (GHashTable) wanted = relay_wanted_filters (self);
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, wanted);
  while (g_hash_table_iter_next (&iter, &key, NULL)) {
    if (g_hash_table_contains (self->broker_filters, key))
      continue;
    g_info ("cloud relay: subscribing to %s", (const char *) key);
    g_hash_table_insert (self->broker_filters, g_strdup (key),
                         GINT_TO_POINTER (ota_mqtt_link_subscribe (self->link, key, 1)));
  }
  g_hash_table_iter_init (&iter, self->broker_filters);
  while (g_hash_table_iter_next (&iter, &key, NULL)) {
    if (g_hash_table_contains (wanted, key))
      continue;
    g_info ("cloud relay: unsubscribing from %s", (const char *) key);
    ota_mqtt_link_unsubscribe (self->link, key);
    g_hash_table_iter_remove (&iter);
  }
}

/* The mid of the SUBSCRIBE that serves @filter, if the broker has not
 * acknowledged it yet; -1 otherwise. */
static int
relay_pending_mid_for (OtaCloudRelay *self, const char *filter)
{
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, self->broker_filters);
  while (g_hash_table_iter_next (&iter, &key, &value)) {
    if (ota_topic_filter_covers (key, filter))
      return GPOINTER_TO_INT (value);
  }
  return -1;
}

static void
relay_remove_filter (OtaCloudRelay *self, const char *name, const char *filter)
{
  Client *client = g_hash_table_lookup (self->clients, name);
  guint index;

  if (client == NULL ||
      !g_ptr_array_find_with_equal_func (client->filters, filter, g_str_equal, &index))
    return;
  g_ptr_array_remove_index (client->filters, index);
  if (client->filters->len == 0)
    g_hash_table_remove (self->clients, name);
  relay_resync (self);
}

static void
on_client_vanished (GDBusConnection *connection, const char *name, gpointer user_data)
{
  OtaCloudRelay *self = user_data;
  g_autofree char *gone = g_strdup (name); /* removing the watch may free @name */

  if (!g_hash_table_contains (self->clients, gone))
    return;
  g_info ("cloud relay: %s left the bus: releasing its subscriptions", gone);
  g_hash_table_remove (self->clients, gone);
  relay_resync (self);
}

static Client *
relay_get_client (OtaCloudRelay *self, const char *name)
{
  Client *client = g_hash_table_lookup (self->clients, name);

  if (client != NULL)
    return client;
  client = g_new0 (Client, 1);
  client->name = g_strdup (name);
  client->filters = g_ptr_array_new_with_free_func (g_free);
  g_hash_table_insert (self->clients, client->name, client);
  /* If the caller is already gone, "vanished" comes at once. */
  client->watch_id = g_bus_watch_name_on_connection (self->connection, name, G_BUS_NAME_WATCHER_FLAGS_NONE, NULL,
                                                     on_client_vanished, self, NULL);
  return client;
}

static gboolean
relay_add_filter (OtaCloudRelay *self, const char *name, const char *filter, GError **error)
{
  Client *client = g_hash_table_lookup (self->clients, name);

  if (client != NULL && g_ptr_array_find_with_equal_func (client->filters, filter, g_str_equal, NULL))
    return TRUE;
  if (client != NULL && client->filters->len >= OTA_CLOUD_MAX_FILTERS_PER_CLIENT) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED, "too many subscriptions (at most %d per client)",
                 OTA_CLOUD_MAX_FILTERS_PER_CLIENT);
    return FALSE;
  }
  client = relay_get_client (self, name);
  g_ptr_array_add (client->filters, g_strdup (filter));
  relay_resync (self);
  return TRUE;
}

static void
relay_wait_suback (OtaCloudRelay *self, int mid, GDBusMethodInvocation *invocation, const char *name,
                   const char *filter)
{
  GPtrArray *waits = g_hash_table_lookup (self->sub_waits, GINT_TO_POINTER (mid));
  SubscribeWait *wait = g_new0 (SubscribeWait, 1);

  if (waits == NULL) {
    waits = g_ptr_array_new_with_free_func (subscribe_wait_free);
    g_hash_table_insert (self->sub_waits, GINT_TO_POINTER (mid), waits);
  }
  wait->invocation = g_object_ref (invocation);
  wait->client = g_strdup (name);
  wait->filter = g_strdup (filter);
  g_ptr_array_add (waits, wait);
}

static gboolean
handle_subscribe (OtaDBusOtaCloud *skeleton, GDBusMethodInvocation *invocation, const char *filter,
                  OtaCloudRelay *self)
{
  g_autoptr (GError) error = NULL;
  const char *sender = g_dbus_method_invocation_get_sender (invocation);
  int mid;

  if (!ota_topic_rules_check_filter (self->rules, filter, &error) ||
      !relay_add_filter (self, sender, filter, &error))
    return relay_return_error (invocation, error);
  mid = relay_pending_mid_for (self, filter);
  if (mid < 0) {
    ota_dbus_ota_cloud_complete_subscribe (skeleton, invocation);
    return TRUE;
  }
  relay_wait_suback (self, mid, invocation, sender, filter);
  return TRUE;
}

static gboolean
handle_unsubscribe (OtaDBusOtaCloud *skeleton, GDBusMethodInvocation *invocation, const char *filter,
                    OtaCloudRelay *self)
{
  g_autoptr (GError) error = NULL;

  if (!ota_topic_filter_check (filter, &error))
    return relay_return_error (invocation, error);
  relay_remove_filter (self, g_dbus_method_invocation_get_sender (invocation), filter);
  ota_dbus_ota_cloud_complete_unsubscribe (skeleton, invocation);
  return TRUE;
}

static void
relay_mark_acknowledged (OtaCloudRelay *self, int mid)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->broker_filters);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    if (GPOINTER_TO_INT (value) == mid)
      g_hash_table_iter_replace (&iter, GINT_TO_POINTER (-1));
  }
}

static void
on_link_subscribed (OtaMqttLink *link, int mid, gboolean granted, OtaCloudRelay *self)
{
  g_autoptr (GPtrArray) waits = NULL;

  relay_mark_acknowledged (self, mid);
  if (!g_hash_table_steal_extended (self->sub_waits, GINT_TO_POINTER (mid), NULL, (gpointer *) &waits))
    return;
  for (guint i = 0; i < waits->len; i++) {
    SubscribeWait *wait = g_ptr_array_index (waits, i);

    if (granted) {
      ota_dbus_ota_cloud_complete_subscribe (self->skeleton, g_steal_pointer (&wait->invocation));
      continue;
    }
    g_warning ("cloud relay: the broker refused the subscription to %s", wait->filter);
    g_dbus_method_invocation_return_error (g_steal_pointer (&wait->invocation), OTA_ERROR, OTA_ERROR_FAILED,
                                           "the broker refused the subscription to %s", wait->filter);
    relay_remove_filter (self, wait->client, wait->filter);
  }
}

/* ---- messages to apps ---- */

static gboolean
client_wants (Client *client, const char *topic)
{
  for (guint i = 0; i < client->filters->len; i++) {
    if (ota_topic_filter_matches (g_ptr_array_index (client->filters, i), topic))
      return TRUE;
  }
  return FALSE;
}

static void
on_link_message (OtaMqttLink *link, const char *topic, GBytes *payload, OtaCloudRelay *self)
{
  g_autoptr (GVariant) params = NULL;
  GHashTableIter iter;
  gpointer value;

  /* The agent's own topics and anything the rules refuse never reach an app. */
  if (!ota_topic_rules_check_topic (self->rules, topic, NULL) ||
      g_bytes_get_size (payload) > OTA_CLOUD_MAX_PAYLOAD)
    return;
  params = g_variant_ref_sink (
    g_variant_new ("(s@ay)", topic, g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, payload, TRUE)));
  g_hash_table_iter_init (&iter, self->clients);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    Client *client = value;
    g_autoptr (GError) error = NULL;

    if (!client_wants (client, topic))
      continue;
    if (!g_dbus_connection_emit_signal (self->connection, client->name, self->object_path, "org.iv.Ota.Cloud",
                                        "Message", params, &error))
      g_warning ("cloud relay: cannot send a message to %s: %s", client->name, error->message);
  }
}

/* ---- publishing ---- */

static gboolean
parse_publish_options (GVariant *options, gboolean *queue, GError **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value)) {
    if (g_str_equal (key, "queue") && g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN)) {
      *queue = g_variant_get_boolean (value);
      continue;
    }
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS,
                 g_str_equal (key, "queue") ? "option %s must be a boolean" : "unknown option %s", key);
    g_variant_unref (value); /* leaving g_variant_iter_loop early */
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_publish_args (OtaCloudRelay *self, const char *topic, gsize size, guint qos, GError **error)
{
  if (!ota_topic_rules_check_topic (self->rules, topic, error))
    return FALSE;
  if (size > OTA_CLOUD_MAX_PAYLOAD) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "payload of %" G_GSIZE_FORMAT " bytes, over %d", size,
                 OTA_CLOUD_MAX_PAYLOAD);
    return FALSE;
  }
  if (qos > 1) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_INVALID_ARGS, "qos must be 0 or 1, not %u", qos);
    return FALSE;
  }
  return TRUE;
}

/* @reason: the PUBACK's reason code (MQTT 5); 0x80 and above, the broker
 * refused the message: the caller learns it, it is not sent again. */
static void
relay_published (OtaCloudRelay *self, int mid, int reason)
{
  Outgoing *out = NULL;

  if (!g_hash_table_steal_extended (self->in_flight, GINT_TO_POINTER (mid), NULL, (gpointer *) &out))
    return;
  if (reason >= 0x80) {
    g_warning ("cloud relay: the broker refused a message on %s: %s", out->topic, mosquitto_reason_string (reason));
    if (out->invocation != NULL)
      g_dbus_method_invocation_return_error (g_steal_pointer (&out->invocation), OTA_ERROR, OTA_ERROR_FAILED,
                                             "the broker refused the message on %s: %s", out->topic,
                                             mosquitto_reason_string (reason));
  } else if (out->invocation != NULL) {
    ota_dbus_ota_cloud_complete_publish (self->skeleton, g_steal_pointer (&out->invocation));
  }
  outgoing_free (out);
}

/* Sends @out on the current session; it is then in flight until its mid is
 * reported published. FALSE: offline (@out untouched). */
static gboolean
relay_send (OtaCloudRelay *self, Outgoing *out, GError **error)
{
  gsize size = 0;
  const void *data = g_bytes_get_data (out->payload, &size);
  int mid = -1;
  gboolean sent;

  if (!ota_mqtt_link_get_connected (self->link)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED, "not connected");
    return FALSE;
  }
  self->publishing = TRUE;
  sent = ota_mqtt_link_publish (self->link, out->topic, data, size, out->qos, &mid, error);
  self->publishing = FALSE;
  if (sent) {
    out->seq = self->next_seq++;
    g_hash_table_insert (self->in_flight, GINT_TO_POINTER (mid), out);
  }
  /* Those written during the call (this one, or earlier ones in the socket's
   * queue) are answered now that their mids are known. */
  for (guint i = 0; i < self->published_during_publish->len; i++) {
    Published *p = &g_array_index (self->published_during_publish, Published, i);
    relay_published (self, p->mid, p->reason);
  }
  g_array_set_size (self->published_during_publish, 0);
  return sent;
}

static gboolean
relay_enqueue (OtaCloudRelay *self, Outgoing *out, GError **error)
{
  gsize size = g_bytes_get_size (out->payload);

  if (self->queue.length >= OTA_CLOUD_QUEUE_MAX_MESSAGES || self->queue_bytes + size > OTA_CLOUD_QUEUE_MAX_BYTES) {
    g_set_error (error, OTA_ERROR, OTA_ERROR_FAILED,
                 "offline and the queue is full (%u messages, %" G_GSIZE_FORMAT " bytes; at most %d and %d)",
                 self->queue.length, self->queue_bytes, OTA_CLOUD_QUEUE_MAX_MESSAGES, OTA_CLOUD_QUEUE_MAX_BYTES);
    return FALSE;
  }
  g_clear_object (&out->invocation);
  self->queue_bytes += size;
  g_queue_push_tail (&self->queue, out);
  return TRUE;
}

static gboolean
handle_publish (OtaDBusOtaCloud *skeleton, GDBusMethodInvocation *invocation, const char *topic, GVariant *payload,
                guint qos, GVariant *options, OtaCloudRelay *self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) send_error = NULL;
  Outgoing *out;
  gboolean queue = FALSE;

  if (!parse_publish_options (options, &queue, &error) ||
      !check_publish_args (self, topic, g_variant_get_size (payload), qos, &error))
    return relay_return_error (invocation, error);
  out = g_new0 (Outgoing, 1);
  out->invocation = g_object_ref (invocation);
  out->topic = g_strdup (topic);
  out->payload = g_variant_get_data_as_bytes (payload);
  out->qos = (int) qos;
  out->queue = queue;
  if (relay_send (self, out, &send_error))
    return TRUE;
  if (!g_error_matches (send_error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED)) {
    g_dbus_method_invocation_return_error (invocation, OTA_ERROR, OTA_ERROR_FAILED, "%s", send_error->message);
  } else if (!queue) {
    g_dbus_method_invocation_return_error (invocation, OTA_ERROR, OTA_ERROR_OFFLINE,
                                           "not connected to the cloud (the queue option keeps the message)");
  } else if (!relay_enqueue (self, out, &error)) {
    g_dbus_method_invocation_return_gerror (invocation, error);
  } else {
    ota_dbus_ota_cloud_complete_publish (skeleton, invocation);
    return TRUE;
  }
  outgoing_free (out);
  return TRUE;
}

static void
on_link_published (OtaMqttLink *link, int mid, OtaCloudRelay *self)
{
  Published p = { mid, ota_mqtt_link_get_publish_reason (link) };

  if (self->publishing)
    g_array_append_val (self->published_during_publish, p);
  else
    relay_published (self, mid, p.reason);
}

/* The queue in order, as long as the session takes it. */
static void
relay_flush_queue (OtaCloudRelay *self)
{
  Outgoing *out;

  if (self->queue.length > 0)
    g_info ("cloud relay: sending %u queued message(s)", self->queue.length);
  while ((out = g_queue_pop_head (&self->queue)) != NULL) {
    g_autoptr (GError) error = NULL;
    gsize size = g_bytes_get_size (out->payload);

    /* Once sent, @out belongs to the in-flight table (and may be gone). */
    self->queue_bytes -= size;
    if (!relay_send (self, out, &error)) {
      g_info ("cloud relay: queued messages wait for the next connection: %s", error->message);
      self->queue_bytes += size;
      g_queue_push_head (&self->queue, out);
      return;
    }
  }
}

static gint
outgoing_by_seq_desc (gconstpointer a, gconstpointer b)
{
  const Outgoing *x = *(const Outgoing *const *) a;
  const Outgoing *y = *(const Outgoing *const *) b;

  return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/* The session is gone with its unacknowledged messages: those with the
 * queue option go back to the head of the queue in their order, the others
 * fail with Offline. */
static void
relay_fail_in_flight (OtaCloudRelay *self)
{
  g_autoptr (GPtrArray) lost = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->in_flight);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    g_ptr_array_add (lost, value);
    g_hash_table_iter_steal (&iter);
  }
  g_ptr_array_sort (lost, outgoing_by_seq_desc);
  for (guint i = 0; i < lost->len; i++) {
    Outgoing *out = g_ptr_array_index (lost, i);

    if (!out->queue) {
      g_dbus_method_invocation_return_error (g_steal_pointer (&out->invocation), OTA_ERROR, OTA_ERROR_OFFLINE,
                                             "the connection to the cloud was lost before the broker acknowledged "
                                             "the message");
      outgoing_free (out);
      continue;
    }
    if (out->invocation != NULL)
      ota_dbus_ota_cloud_complete_publish (self->skeleton, g_steal_pointer (&out->invocation));
    self->queue_bytes += g_bytes_get_size (out->payload);
    g_queue_push_head (&self->queue, out);
  }
}

/* Subscriptions waiting for a SUBACK are made again at the reconnect. */
static void
relay_release_sub_waits (OtaCloudRelay *self)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->sub_waits);
  while (g_hash_table_iter_next (&iter, NULL, &value)) {
    GPtrArray *waits = value;
    for (guint i = 0; i < waits->len; i++) {
      SubscribeWait *wait = g_ptr_array_index (waits, i);
      ota_dbus_ota_cloud_complete_subscribe (self->skeleton, g_steal_pointer (&wait->invocation));
    }
  }
  g_hash_table_remove_all (self->sub_waits);
  g_hash_table_iter_init (&iter, self->broker_filters);
  while (g_hash_table_iter_next (&iter, NULL, NULL))
    g_hash_table_iter_replace (&iter, GINT_TO_POINTER (-1));
}

static void
on_link_connection_changed (OtaMqttLink *link, gboolean connected, OtaCloudRelay *self)
{
  if (connected) {
    relay_flush_queue (self);
    return;
  }
  relay_fail_in_flight (self);
  relay_release_sub_waits (self);
}

/* ---- object ---- */

OtaCloudRelay *
ota_cloud_relay_new (OtaMqttLink *link, OtaTopicRules *rules, GDBusConnection *connection, const char *object_path,
                     GError **error)
{
  g_return_val_if_fail (OTA_IS_MQTT_LINK (link), NULL);
  g_return_val_if_fail (rules != NULL, NULL);
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection), NULL);

  g_autoptr (OtaCloudRelay) self = g_object_new (OTA_TYPE_CLOUD_RELAY, NULL);
  g_autofree char *described = ota_topic_rules_describe (rules);

  self->link = g_object_ref (link);
  self->rules = rules;
  self->connection = g_object_ref (connection);
  self->object_path = g_strdup (object_path);
  self->skeleton = ota_dbus_ota_cloud_skeleton_new ();
  g_signal_connect (self->skeleton, "handle-publish", G_CALLBACK (handle_publish), self);
  g_signal_connect (self->skeleton, "handle-subscribe", G_CALLBACK (handle_subscribe), self);
  g_signal_connect (self->skeleton, "handle-unsubscribe", G_CALLBACK (handle_unsubscribe), self);
  g_signal_connect_object (link, "message", G_CALLBACK (on_link_message), self, 0);
  g_signal_connect_object (link, "published", G_CALLBACK (on_link_published), self, 0);
  g_signal_connect_object (link, "subscribed", G_CALLBACK (on_link_subscribed), self, 0);
  g_signal_connect_object (link, "connection-changed", G_CALLBACK (on_link_connection_changed), self, 0);
  if (!g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self->skeleton), connection, object_path,
                                         error))
    return NULL;
  g_info ("cloud relay: apps may use %s", described);
  return g_steal_pointer (&self);
}

static void
ota_cloud_relay_dispose (GObject *object)
{
  OtaCloudRelay *self = OTA_CLOUD_RELAY (object);

  if (self->skeleton != NULL) {
    g_signal_handlers_disconnect_by_data (self->skeleton, self);
    if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (self->skeleton)) != NULL)
      g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self->skeleton));
  }
  g_clear_object (&self->skeleton);
  if (self->link != NULL)
    g_signal_handlers_disconnect_by_data (self->link, self);
  g_clear_pointer (&self->clients, g_hash_table_unref);
  g_clear_pointer (&self->sub_waits, g_hash_table_unref);
  g_clear_pointer (&self->in_flight, g_hash_table_unref);
  g_queue_clear_full (&self->queue, outgoing_free);
  g_clear_object (&self->link);
  g_clear_object (&self->connection);
  G_OBJECT_CLASS (ota_cloud_relay_parent_class)->dispose (object);
}

static void
ota_cloud_relay_finalize (GObject *object)
{
  OtaCloudRelay *self = OTA_CLOUD_RELAY (object);

  ota_topic_rules_free (self->rules);
  g_hash_table_unref (self->broker_filters);
  g_array_unref (self->published_during_publish);
  g_free (self->object_path);
  G_OBJECT_CLASS (ota_cloud_relay_parent_class)->finalize (object);
}

static void
ota_cloud_relay_class_init (OtaCloudRelayClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = ota_cloud_relay_dispose;
  object_class->finalize = ota_cloud_relay_finalize;
}

static void
ota_cloud_relay_init (OtaCloudRelay *self)
{
  self->clients = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, client_free);
  self->broker_filters = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->sub_waits = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify) g_ptr_array_unref);
  self->in_flight = g_hash_table_new_full (NULL, NULL, NULL, outgoing_free);
  g_queue_init (&self->queue);
  self->published_during_publish = g_array_new (FALSE, FALSE, sizeof (Published));
}
