/* The agent's org.iv.Ota.Cloud interface seen from libdbus-1: Publish,
 * Subscribe, Unsubscribe, the Message signal, and MQTT topic matching so
 * that each subscription of the process gets the messages of its own
 * filter. Used by the library thread only. */
#include "client.h"

#include <stdlib.h>
#include <string.h>

/* A QoS 1 Publish waits for the broker's PUBACK through the agent. */
#define CLOUD_CALL_TIMEOUT_MS 25000

bool
client_topic_matches (const char *filter, const char *topic)
{
  const char *f = filter, *t = topic;

  if (*topic == '$' && (*filter == '+' || *filter == '#'))
    return false;
  for (;;) {
    size_t flen = strcspn (f, "/"), tlen = strcspn (t, "/");

    if (flen == 1 && *f == '#')
      return true; /* also the parent level: "a/#" matches "a" */
    if (!(flen == 1 && *f == '+') && (flen != tlen || strncmp (f, t, flen) != 0))
      return false;
    f += flen;
    t += tlen;
    if (*f == '\0' || *t == '\0')
      break;
    f++;
    t++;
  }
  /* Both ended, or the filter goes on with exactly "/#". */
  return *t == '\0' && (*f == '\0' || strcmp (f, "/#") == 0);
}

static int
cloud_finish (DBusMessage *reply, DBusError *dbus_error, char *error, size_t error_len)
{
  int code;

  if (reply != NULL) {
    dbus_message_unref (reply);
    return IV_ERR_NONE;
  }
  code = dbus_error_has_name (dbus_error, "org.iv.Ota.Error.Offline") ? IV_ERR_DEVICE_OFFLINE
                                                                     : client_bus_error_code (dbus_error);
  client_set_error (error, error_len, "%s (%s)", dbus_error->message ? dbus_error->message : "no message",
                    dbus_error->name);
  dbus_error_free (dbus_error);
  return code;
}

static DBusMessage *
cloud_send (DBusConnection *connection, DBusMessage *message, DBusError *error)
{
  DBusMessage *reply;

  reply = dbus_connection_send_with_reply_and_block (connection, message, CLOUD_CALL_TIMEOUT_MS, error);
  dbus_message_unref (message);
  return reply;
}

static DBusMessage *
cloud_publish_message (const char *topic, const void *payload, size_t length, int qos, bool queue)
{
  DBusMessage *message =
    dbus_message_new_method_call (CLIENT_BUS_NAME, CLIENT_BUS_PATH, CLIENT_BUS_CLOUD_INTERFACE, "Publish");
  DBusMessageIter iter, array;
  dbus_uint32_t qos32 = (dbus_uint32_t) qos;
  const unsigned char *bytes = payload;
  int n = (int) length;

  if (message == NULL)
    return NULL;
  dbus_message_iter_init_append (message, &iter);
  if (!dbus_message_iter_append_basic (&iter, DBUS_TYPE_STRING, &topic) ||
      !dbus_message_iter_open_container (&iter, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE_AS_STRING, &array) ||
      !dbus_message_iter_append_fixed_array (&array, DBUS_TYPE_BYTE, &bytes, n) ||
      !dbus_message_iter_close_container (&iter, &array) ||
      !dbus_message_iter_append_basic (&iter, DBUS_TYPE_UINT32, &qos32) ||
      /* {"queue": <true>} when @queue, else {} */
      !client_bus_append_bool_option (&iter, queue ? "queue" : NULL, true)) {
    dbus_message_unref (message);
    return NULL;
  }
  return message;
}

int
client_cloud_publish (DBusConnection *connection, const char *topic, const void *payload, size_t length, int qos,
                      bool queue, char *error, size_t error_len)
{
  DBusError dbus_error;
  DBusMessage *message = cloud_publish_message (topic, payload, length, qos, queue);

  if (message == NULL) {
    client_set_error (error, error_len, "out of memory");
    return IV_ERR_OTA_NO_RESOURCES;
  }
  dbus_error_init (&dbus_error);
  return cloud_finish (cloud_send (connection, message, &dbus_error), &dbus_error, error, error_len);
}

int
client_cloud_filter_call (DBusConnection *connection, const char *method, const char *filter, char *error,
                          size_t error_len)
{
  DBusError dbus_error;
  DBusMessage *message =
    dbus_message_new_method_call (CLIENT_BUS_NAME, CLIENT_BUS_PATH, CLIENT_BUS_CLOUD_INTERFACE, method);

  if (message == NULL || !dbus_message_append_args (message, DBUS_TYPE_STRING, &filter, DBUS_TYPE_INVALID)) {
    if (message != NULL)
      dbus_message_unref (message);
    client_set_error (error, error_len, "out of memory");
    return IV_ERR_OTA_NO_RESOURCES;
  }
  dbus_error_init (&dbus_error);
  return cloud_finish (cloud_send (connection, message, &dbus_error), &dbus_error, error, error_len);
}

ClientEvent *
client_cloud_parse_message (DBusMessage *message)
{
  DBusMessageIter iter, array;
  const char *topic = NULL;
  const unsigned char *bytes = NULL;
  int n = 0;
  ClientEvent *event;

  if (!dbus_message_is_signal (message, CLIENT_BUS_CLOUD_INTERFACE, "Message") ||
      !dbus_message_has_signature (message, "say") || !dbus_message_iter_init (message, &iter))
    return NULL;
  dbus_message_iter_get_basic (&iter, &topic);
  dbus_message_iter_next (&iter);
  dbus_message_iter_recurse (&iter, &array);
  dbus_message_iter_get_fixed_array (&array, &bytes, &n);
  if ((event = client_event_new (CLIENT_EVENT_MESSAGE)) == NULL || !client_event_set (&event->topic, topic) ||
      (n > 0 && (event->payload = malloc ((size_t) n)) == NULL)) {
    client_event_free (event);
    client_log ("out of memory: a message on %s lost", topic);
    return NULL;
  }
  if (n > 0)
    memcpy (event->payload, bytes, (size_t) n);
  event->payload_len = (size_t) n;
  return event;
}

void
client_subscription_free (iv_ota_subscription_s *subscription)
{
  if (subscription == NULL)
    return;
  client_event_free (subscription->release_event);
  free (subscription->filter);
  free (subscription);
}
