#include "outbox.h"

#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

/* Bounds what a damaged or hostile file can make us allocate. */
#define OUTBOX_MAX_FILE_SIZE (4 * 1024 * 1024)
/* The file nests three levels (payloads are strings); json-glib recurses once
 * per level, and a damaged file of a million '[' would exhaust the stack. */
#define OUTBOX_MAX_DEPTH 64

typedef struct {
  char *payload;
  char *key; /* "" when the entry may not be coalesced */
} OutboxEntry;

struct _OtaOutbox {
  char *path;
  GQueue entries; /* of OutboxEntry, oldest first */
};

static void
outbox_entry_free (gpointer data)
{
  OutboxEntry *entry = data;
  g_free (entry->payload);
  g_free (entry->key);
  g_free (entry);
}

static gboolean
outbox_parse_entry (JsonNode *node, GPtrArray *entries, GPtrArray *keys, GError **error)
{
  JsonObject *obj;
  JsonNode *payload, *key;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "outbox entry is not an object");
    return FALSE;
  }
  obj = json_node_get_object (node);
  payload = json_object_get_member (obj, "payload");
  key = json_object_get_member (obj, "key");
  if (payload == NULL || json_node_get_value_type (payload) != G_TYPE_STRING ||
      (key != NULL && json_node_get_value_type (key) != G_TYPE_STRING)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "outbox entry without a string payload");
    return FALSE;
  }
  g_ptr_array_add (entries, g_strdup (json_node_get_string (payload)));
  g_ptr_array_add (keys, g_strdup (key != NULL ? json_node_get_string (key) : ""));
  return TRUE;
}

gboolean
ota_outbox_parse (const char *data, gsize length, GPtrArray *entries, GPtrArray *keys, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonObject *root;
  JsonArray *array;
  JsonNode *node;

  g_return_val_if_fail (entries != NULL, FALSE);
  g_return_val_if_fail (keys != NULL, FALSE);

  if (length > OUTBOX_MAX_FILE_SIZE) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "outbox larger than %d bytes",
                 OUTBOX_MAX_FILE_SIZE);
    return FALSE;
  }
  /* The file is our own json-glib output: strict JSON. */
  if (!ota_json_nesting_is_bounded (data, length, OUTBOX_MAX_DEPTH, TRUE)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "outbox is not strict JSON nested at most %d levels", OUTBOX_MAX_DEPTH);
    return FALSE;
  }
  if (!json_parser_load_from_data (parser, data, (gssize) length, error))
    return FALSE;
  node = json_parser_get_root (parser);
  root = node != NULL && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  node = root != NULL ? json_object_get_member (root, "entries") : NULL;
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "outbox has no \"entries\" array");
    return FALSE;
  }
  array = json_object_get_array_member (root, "entries");
  for (guint i = 0; i < json_array_get_length (array); i++) {
    if (!outbox_parse_entry (json_array_get_element (array, i), entries, keys, error))
      return FALSE;
  }
  return TRUE;
}

static char *
outbox_serialize (OtaOutbox *self)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "entries");
  json_builder_begin_array (builder);
  for (GList *l = self->entries.head; l != NULL; l = l->next) {
    OutboxEntry *entry = l->data;
    json_builder_begin_object (builder);
    json_builder_set_member_name (builder, "key");
    json_builder_add_string_value (builder, entry->key);
    json_builder_set_member_name (builder, "payload");
    json_builder_add_string_value (builder, entry->payload);
    json_builder_end_object (builder);
  }
  json_builder_end_array (builder);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  return json_generator_to_data (generator, NULL);
}

/* A crash leaves either the old queue or the new one, never a torn file. */
static gboolean
outbox_save (OtaOutbox *self, GError **error)
{
  g_autofree char *data = outbox_serialize (self);

  return ota_replace_file (self->path, data, strlen (data), error);
}

static void
outbox_append (OtaOutbox *self, const char *payload, const char *key)
{
  OutboxEntry *entry = g_new0 (OutboxEntry, 1);

  entry->payload = g_strdup (payload);
  entry->key = g_strdup (key != NULL ? key : "");
  g_queue_push_tail (&self->entries, entry);
}

static void
outbox_quarantine (OtaOutbox *self, const GError *reason)
{
  g_autofree char *bad = g_strconcat (self->path, ".corrupt", NULL);

  g_warning ("outbox %s is damaged (%s); moved to %s, starting with an empty outbox", self->path,
             reason->message, bad);
  if (rename (self->path, bad) != 0)
    g_warning ("cannot move %s aside: %s", self->path, g_strerror (errno));
}

static gboolean
outbox_load (OtaOutbox *self, GError **error)
{
  g_autofree char *data = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GPtrArray) entries = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  gsize length = 0;

  if (!g_file_get_contents (self->path, &data, &length, &local_error)) {
    if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      return TRUE;
    g_propagate_prefixed_error (error, g_steal_pointer (&local_error), "outbox: ");
    return FALSE;
  }
  if (!ota_outbox_parse (data, length, entries, keys, &local_error)) {
    outbox_quarantine (self, local_error);
    return TRUE;
  }
  for (guint i = 0; i < entries->len; i++)
    outbox_append (self, g_ptr_array_index (entries, i), g_ptr_array_index (keys, i));
  return TRUE;
}

OtaOutbox *
ota_outbox_open (const char *path, GError **error)
{
  g_autoptr (OtaOutbox) self = g_new0 (OtaOutbox, 1);

  self->path = g_strdup (path);
  g_queue_init (&self->entries);
  if (!outbox_load (self, error))
    return NULL;
  if (self->entries.length > 0)
    g_info ("outbox: %u report(s) from a previous run waiting to be sent", self->entries.length);
  return g_steal_pointer (&self);
}

void
ota_outbox_free (OtaOutbox *self)
{
  if (self == NULL)
    return;
  g_queue_clear_full (&self->entries, outbox_entry_free);
  g_free (self->path);
  g_free (self);
}

/* Removes the entries @key supersedes. Never the head: it may be in flight,
 * and its acknowledgement pops the head. */
static void
outbox_remove_superseded (OtaOutbox *self, const char *key)
{
  GList *l = self->entries.head != NULL ? self->entries.head->next : NULL;

  while (l != NULL) {
    GList *next = l->next;

    if (g_str_equal (((OutboxEntry *) l->data)->key, key)) {
      outbox_entry_free (l->data);
      g_queue_delete_link (&self->entries, l);
    }
    l = next;
  }
}

/* Only reachable by reports without end: the oldest after the head goes. */
static void
outbox_make_room (OtaOutbox *self)
{
  GList *victim = self->entries.head->next;

  g_warning ("outbox full (%d reports): dropping %s", OTA_OUTBOX_MAX_ENTRIES,
             ((OutboxEntry *) victim->data)->payload);
  outbox_entry_free (victim->data);
  g_queue_delete_link (&self->entries, victim);
}

gboolean
ota_outbox_push (OtaOutbox *self, const char *payload, const char *coalesce_key, GError **error)
{
  g_return_val_if_fail (self != NULL, FALSE);
  if (coalesce_key != NULL && *coalesce_key != '\0')
    outbox_remove_superseded (self, coalesce_key);
  if (self->entries.length >= OTA_OUTBOX_MAX_ENTRIES)
    outbox_make_room (self);
  outbox_append (self, payload, coalesce_key);
  return outbox_save (self, error);
}

const char *
ota_outbox_peek (OtaOutbox *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  OutboxEntry *entry = g_queue_peek_head (&self->entries);
  return entry != NULL ? entry->payload : NULL;
}

gboolean
ota_outbox_pop (OtaOutbox *self, GError **error)
{
  g_return_val_if_fail (self != NULL, FALSE);

  OutboxEntry *entry = g_queue_pop_head (&self->entries);

  if (entry == NULL)
    return TRUE;
  outbox_entry_free (entry);
  return outbox_save (self, error);
}

guint
ota_outbox_get_length (OtaOutbox *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->entries.length;
}
