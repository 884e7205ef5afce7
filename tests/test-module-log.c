/* A module's log lines: one line per event, "module <name>: ...", and in the
 * journal the module as a field of its own (IV_OTA_MODULE), so that
 * `journalctl -u iv-otad IV_OTA_MODULE=mcu` shows one module's history.
 * The fields are captured here with a log writer, as journald would get them. */
#include "downloader.h"
#include "module.h"

#include <glib/gstdio.h>
#include <unistd.h>

typedef struct {
  GLogLevelFlags level;
  char *module; /* NULL: no IV_OTA_MODULE field */
  char *message;
} LogRecord;

static GPtrArray *records;

static void
log_record_free (gpointer data)
{
  LogRecord *r = data;

  g_free (r->module);
  g_free (r->message);
  g_free (r);
}

static const char *
field_string (const GLogField *field)
{
  return field->length < 0 ? field->value : NULL;
}

static GLogWriterOutput
capture_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  LogRecord *r = g_new0 (LogRecord, 1);

  r->level = level & G_LOG_LEVEL_MASK;
  for (gsize i = 0; i < n_fields; i++) {
    if (g_str_equal (fields[i].key, "IV_OTA_MODULE"))
      r->module = g_strdup (field_string (&fields[i]));
    else if (g_str_equal (fields[i].key, "MESSAGE"))
      r->message = g_strdup (field_string (&fields[i]));
  }
  g_ptr_array_add (records, r);
  return G_LOG_WRITER_HANDLED;
}

typedef struct {
  char *dir;
  char *fw_dir;
  OtaConfig *config;
  SoupSession *session;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;

  f->dir = g_dir_make_tmp ("iv-ota-module-log-XXXXXX", &error);
  g_assert_no_error (error);
  f->fw_dir = g_build_filename (f->dir, "fw", NULL);
  g_assert_cmpint (g_mkdir (f->fw_dir, 0755), ==, 0);
  text = g_strdup_printf ("[device]\nproduct_id=P\ndevice_name=d\n[ota]\nstate_dir=%s\n", f->dir);
  f->config = ota_config_load_from_data (text, strlen (text), &error);
  g_assert_no_error (error);
  f->session = ota_download_session_new (NULL, &error);
  g_assert_no_error (error);
  g_ptr_array_set_size (records, 0);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_object (&f->session);
  ota_config_free (f->config);
  g_rmdir (f->fw_dir);
  g_rmdir (f->dir);
  g_free (f->fw_dir);
  g_free (f->dir);
}

/* The lines of a whole small cycle: Init, an offer (held: ask first), Exit. */
static void
run_cycle (Fixture *f, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OtaModule) module = ota_module_new (name, f->config, f->session);
  OtaOffer offer = {
    .module = (char *) name,
    .version = "2.0",
    .url = "https://example.com/fw.bin",
    .md5sum = "0123456789abcdef0123456789abcdef",
    .file_size = 1000,
    .task_id = "t-42",
  };

  g_assert_true (ota_module_activate (module, ":1.7", getuid (), getgid (), "1.0", f->fw_dir, TRUE, &error));
  g_assert_no_error (error);
  ota_module_handle_offer (module, &offer);
  ota_module_deactivate (module);
}

/* Messages of records carrying IV_OTA_MODULE == @module, in order. */
static GPtrArray *
messages_of (const char *module)
{
  GPtrArray *out = g_ptr_array_new ();

  for (guint i = 0; i < records->len; i++) {
    LogRecord *r = g_ptr_array_index (records, i);
    if (g_strcmp0 (r->module, module) == 0)
      g_ptr_array_add (out, r->message);
  }
  return out;
}

static void
assert_has_line (GPtrArray *messages, const char *expected)
{
  for (guint i = 0; i < messages->len; i++) {
    if (g_str_equal (g_ptr_array_index (messages, i), expected))
      return;
  }
  g_error ("no log line \"%s\"", expected);
}

static void
assert_module_lines (const char *name, const char *label)
{
  g_autoptr (GPtrArray) lines = messages_of (name);
  g_autofree char *prefix = g_strdup_printf ("module %s: ", label);
  g_autofree char *owned = g_strdup_printf ("module %s: owned by :1.7 (uid %u), version 1.0", label, (guint) getuid ());
  g_autofree char *reported = g_strdup_printf ("module %s: report_version 1.0", label);
  g_autofree char *offered = g_strdup_printf ("module %s: offered 2.0 (1000 bytes, md5 0123456789abcdef0123456789abcdef, "
                                              "task t-42)",
                                              label);
  g_autofree char *released = g_strdup_printf ("module %s: released by :1.7", label);

  g_assert_cmpuint (lines->len, >=, 4);
  for (guint i = 0; i < lines->len; i++)
    g_assert_true (g_str_has_prefix (g_ptr_array_index (lines, i), prefix));
  assert_has_line (lines, owned);
  assert_has_line (lines, reported);
  assert_has_line (lines, offered);
  assert_has_line (lines, released);
  /* And no line about this module goes without the field. */
  for (guint i = 0; i < records->len; i++) {
    LogRecord *r = g_ptr_array_index (records, i);
    if (r->message != NULL && g_str_has_prefix (r->message, prefix))
      g_assert_cmpstr (r->module, ==, name);
  }
}

static void
test_named_module (Fixture *f, gconstpointer data)
{
  run_cycle (f, "mcu");
  assert_module_lines ("mcu", "mcu");
}

static void
test_main_module (Fixture *f, gconstpointer data)
{
  run_cycle (f, "");
  assert_module_lines ("", "(main)");
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  records = g_ptr_array_new_with_free_func (log_record_free);
  g_log_set_writer_func (capture_writer, NULL, NULL);
  g_test_add ("/module-log/named-module-lines-carry-IV_OTA_MODULE", Fixture, NULL, fixture_setup, test_named_module,
              fixture_teardown);
  g_test_add ("/module-log/main-module-lines-carry-an-empty-IV_OTA_MODULE", Fixture, NULL, fixture_setup,
              test_main_module, fixture_teardown);
  rc = g_test_run ();
  g_ptr_array_unref (records);
  return rc;
}
