/* Resume records: pure parse/serialize, then load/save relative to a directory fd. */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MD5 "36eb5951179db14a631463a37a9322a2"
#define GOOD_RECORD \
  "{\"module\":\"\",\"version\":\"0.2\",\"md5sum\":\"" MD5 \
  "\",\"file_size\":708482,\"downloaded_size\":524288}"

/* A record from JSON fragments; Q() quotes a string. */
#define Q(s) "\"" s "\""
#define RECORD_JSON(module, version, md5sum, file_size, downloaded_size) \
  "{\"module\":" module ",\"version\":" version ",\"md5sum\":" md5sum \
  ",\"file_size\":" file_size ",\"downloaded_size\":" downloaded_size "}"

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (OtaRecord, ota_record_clear)

typedef struct {
  char *dir;
  int dir_fd;
} Fixture;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;

  f->dir = g_dir_make_tmp ("test-record-XXXXXX", &error);
  g_assert_no_error (error);
  f->dir_fd = open (f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  g_assert_cmpint (f->dir_fd, >=, 0);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_autoptr(GDir) dir = g_dir_open (f->dir, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    g_assert_cmpint (unlinkat (f->dir_fd, name, 0), ==, 0);
  close (f->dir_fd);
  g_assert_cmpint (g_rmdir (f->dir), ==, 0);
  g_free (f->dir);
}

static void
write_file (Fixture *f, const char *name, const char *contents, gssize length)
{
  g_autofree char *path = g_build_filename (f->dir, name, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, contents, length, &error);
  g_assert_no_error (error);
}

static char *
read_file (Fixture *f, const char *name)
{
  g_autofree char *path = g_build_filename (f->dir, name, NULL);
  g_autoptr(GError) error = NULL;
  char *contents = NULL;

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return contents;
}

static gboolean
file_exists (Fixture *f, const char *name)
{
  struct stat st;

  return fstatat (f->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void
test_stem_main_and_module (void)
{
  g_autofree char *main_stem = ota_firmware_stem ("", "0.2");
  g_autofree char *null_stem = ota_firmware_stem (NULL, "0.2");
  g_autofree char *mcu_stem = ota_firmware_stem ("mcu", "1.0-rc1");

  g_assert_cmpstr (main_stem, ==, "FW_0.2");
  g_assert_cmpstr (null_stem, ==, "FW_0.2");
  g_assert_cmpstr (mcu_stem, ==, "FW_mcu_1.0-rc1");
}

static void
test_serialize_keeps_documented_key_order (void)
{
  OtaRecord rec = { "", "0.2", MD5, 708482, 524288 };
  g_autofree char *text = ota_record_serialize (&rec);

  g_assert_cmpstr (text, ==, GOOD_RECORD);
}

static void
test_parse_round_trip (void)
{
  OtaRecord in = { "radio", "2.0.1", MD5, 10, 10 };
  g_autofree char *text = ota_record_serialize (&in);
  g_auto(OtaRecord) out = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_true (ota_record_parse (text, strlen (text), &out, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (out.module, ==, "radio");
  g_assert_cmpstr (out.version, ==, "2.0.1");
  g_assert_cmpstr (out.md5sum, ==, MD5);
  g_assert_cmpuint (out.file_size, ==, 10);
  g_assert_cmpuint (out.downloaded_size, ==, 10);
}

static void
test_parse_ignores_length_past_data (void)
{
  /* Not NUL-terminated input: only @length bytes count. */
  g_autofree char *text = g_strconcat (GOOD_RECORD, "garbage", NULL);
  g_auto(OtaRecord) rec = { 0 };

  g_assert_true (ota_record_parse (text, strlen (GOOD_RECORD), &rec, NULL));
  g_assert_cmpuint (rec.downloaded_size, ==, 524288);
}

static void
test_parse_rejects_invalid (void)
{
  static const char *const bad[] = {
    "",
    "not json",
    "[]",
    "\"string\"",
    "{}",
    /* a version or module that would escape the directory */
    RECORD_JSON (Q (""), Q ("../x"), Q (MD5), "10", "0"),
    RECORD_JSON (Q (""), Q (".."), Q (MD5), "10", "0"),
    RECORD_JSON (Q (""), Q ("a/b"), Q (MD5), "10", "0"),
    RECORD_JSON (Q ("../m"), Q ("1"), Q (MD5), "10", "0"),
    RECORD_JSON (Q (""), Q (""), Q (MD5), "10", "0"),
    /* md5: short, upper case (we always write lower case), not hex */
    RECORD_JSON (Q (""), Q ("1"), Q ("abc"), "10", "0"),
    RECORD_JSON (Q (""), Q ("1"), Q ("36EB5951179DB14A631463A37A9322A2"), "10", "0"),
    RECORD_JSON (Q (""), Q ("1"), Q ("g6eb5951179db14a631463a37a9322a2"), "10", "0"),
    /* sizes */
    RECORD_JSON (Q (""), Q ("1"), Q (MD5), "10", "11"),
    RECORD_JSON (Q (""), Q ("1"), Q (MD5), "0", "0"),
    RECORD_JSON (Q (""), Q ("1"), Q (MD5), "-1", "0"),
    RECORD_JSON (Q (""), Q ("1"), Q (MD5), "10", "-1"),
    RECORD_JSON (Q (""), Q ("1"), Q (MD5), "10.5", "0"),
    RECORD_JSON (Q (""), Q ("1"), Q (MD5), Q ("10"), "0"),
    RECORD_JSON (Q (""), Q ("1"), Q (MD5), "99999999999999999999", "0"),
    "{\"module\":\"\",\"version\":\"1\",\"md5sum\":\"" MD5 "\",\"file_size\":10}",
    /* types */
    RECORD_JSON ("null", Q ("1"), Q (MD5), "10", "0"),
    RECORD_JSON (Q (""), "1", Q (MD5), "10", "0"),
  };


  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_auto(OtaRecord) rec = { 0 };
    g_autoptr(GError) error = NULL;

    g_test_message ("%s", bad[i]);
    g_assert_false (ota_record_parse (bad[i], strlen (bad[i]), &rec, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_assert_null (rec.version);
  }
}

static void
test_parse_rejects_oversized (void)
{
  g_autoptr(GString) text = g_string_new ("{\"pad\":\"");
  g_autoptr(GError) error = NULL;
  g_auto(OtaRecord) rec = { 0 };

  while (text->len < 4096)
    g_string_append_c (text, 'x');
  g_string_append (text, "\",\"module\":\"\",\"version\":\"1\",\"md5sum\":\"" MD5
                         "\",\"file_size\":10,\"downloaded_size\":0}");
  g_assert_false (ota_record_parse (text->str, text->len, &rec, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
}

static void
test_load_missing_is_not_found (Fixture *f, gconstpointer data)
{
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_false (ota_record_load_at (f->dir_fd, "FW_0.2.json", &rec, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
}

static void
test_load_reads_record (Fixture *f, gconstpointer data)
{
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) error = NULL;

  write_file (f, "FW_0.2.json", GOOD_RECORD, -1);
  g_assert_true (ota_record_load_at (f->dir_fd, "FW_0.2.json", &rec, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (rec.version, ==, "0.2");
  g_assert_cmpuint (rec.file_size, ==, 708482);
}

static void
test_load_rejects_garbage_and_big_files (Fixture *f, gconstpointer data)
{
  g_autofree char *big = g_strnfill (5000, ' ');
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) error = NULL;

  write_file (f, "garbage.json", "{\"module\":", -1);
  g_assert_false (ota_record_load_at (f->dir_fd, "garbage.json", &rec, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);

  /* Valid JSON, padded past 4 KiB with white space. */
  memcpy (big, GOOD_RECORD, strlen (GOOD_RECORD));
  write_file (f, "big.json", big, 5000);
  g_assert_false (ota_record_load_at (f->dir_fd, "big.json", &rec, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
}

static void
test_load_does_not_follow_symlinks (Fixture *f, gconstpointer data)
{
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) error = NULL;

  write_file (f, "target.json", GOOD_RECORD, -1);
  g_assert_cmpint (symlinkat ("target.json", f->dir_fd, "FW_0.2.json"), ==, 0);
  g_assert_false (ota_record_load_at (f->dir_fd, "FW_0.2.json", &rec, &error));
  g_assert_nonnull (error);
  g_assert_null (rec.version);
}

static void
test_load_refuses_directories (Fixture *f, gconstpointer data)
{
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (mkdirat (f->dir_fd, "FW_0.2.json", 0755), ==, 0);
  g_assert_false (ota_record_load_at (f->dir_fd, "FW_0.2.json", &rec, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_cmpint (unlinkat (f->dir_fd, "FW_0.2.json", AT_REMOVEDIR), ==, 0);
}

static void
test_load_refuses_hard_links (Fixture *f, gconstpointer data)
{
  g_auto(OtaRecord) rec = { 0 };
  g_autoptr(GError) error = NULL;

  write_file (f, "secret", GOOD_RECORD, -1);
  g_assert_cmpint (linkat (f->dir_fd, "secret", f->dir_fd, "FW_0.2.json", 0), ==, 0);
  g_assert_false (ota_record_load_at (f->dir_fd, "FW_0.2.json", &rec, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_null (strstr (error->message, MD5));
}

static void
test_save_then_load (Fixture *f, gconstpointer data)
{
  OtaRecord rec = { "mcu", "3.1", MD5, 1000, 500 };
  g_auto(OtaRecord) loaded = { 0 };
  g_autofree char *expected = ota_record_serialize (&rec);
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;
  struct stat st;

  umask (022);
  g_assert_true (ota_record_save_at (f->dir_fd, "FW_mcu_3.1.json", &rec, (uid_t) -1,
                                     (gid_t) -1, &error));
  g_assert_no_error (error);
  contents = read_file (f, "FW_mcu_3.1.json");
  g_assert_cmpstr (contents, ==, expected);
  g_assert_false (file_exists (f, "FW_mcu_3.1.json.tmp"));
  g_assert_cmpint (fstatat (f->dir_fd, "FW_mcu_3.1.json", &st, 0), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0644);

  g_assert_true (ota_record_load_at (f->dir_fd, "FW_mcu_3.1.json", &loaded, &error));
  g_assert_cmpuint (loaded.downloaded_size, ==, 500);
}

static void
test_save_replaces_atomically (Fixture *f, gconstpointer data)
{
  OtaRecord rec = { "", "0.2", MD5, 708482, 0 };
  g_auto(OtaRecord) loaded = { 0 };
  g_autoptr(GError) error = NULL;

  write_file (f, "FW_0.2.json", GOOD_RECORD, -1);
  g_assert_true (ota_record_save_at (f->dir_fd, "FW_0.2.json", &rec, (uid_t) -1, (gid_t) -1,
                                     &error));
  g_assert_no_error (error);
  g_assert_true (ota_record_load_at (f->dir_fd, "FW_0.2.json", &loaded, &error));
  g_assert_cmpuint (loaded.downloaded_size, ==, 0);
}

static void
test_save_does_not_follow_symlinks (Fixture *f, gconstpointer data)
{
  OtaRecord rec = { "", "0.2", MD5, 708482, 1 };
  g_autoptr(GError) error = NULL;
  g_autofree char *victim = NULL;

  /* A planted temp symlink must not redirect the write: the name is replaced... */
  write_file (f, "victim", "precious", -1);
  g_assert_cmpint (symlinkat ("victim", f->dir_fd, "FW_0.2.json.tmp"), ==, 0);
  g_assert_true (ota_record_save_at (f->dir_fd, "FW_0.2.json", &rec, (uid_t) -1, (gid_t) -1,
                                     &error));
  g_assert_no_error (error);
  victim = read_file (f, "victim");
  g_assert_cmpstr (victim, ==, "precious");
  g_assert_true (file_exists (f, "FW_0.2.json"));
  g_assert_false (file_exists (f, "FW_0.2.json.tmp"));
  g_clear_pointer (&victim, g_free);
  g_assert_cmpint (unlinkat (f->dir_fd, "FW_0.2.json", 0), ==, 0);

  /* ...and a symlink at the record's name is replaced, not written through. */
  g_assert_cmpint (symlinkat ("victim", f->dir_fd, "FW_0.2.json"), ==, 0);
  g_assert_true (ota_record_save_at (f->dir_fd, "FW_0.2.json", &rec, (uid_t) -1, (gid_t) -1,
                                     &error));
  g_assert_no_error (error);
  victim = read_file (f, "victim");
  g_assert_cmpstr (victim, ==, "precious");
}

/* A hard link planted at the temp name (someone else's file, where
 * fs.protected_hardlinks is off) is unlinked, never truncated or written. */
static void
test_save_does_not_write_through_hard_links (Fixture *f, gconstpointer data)
{
  OtaRecord rec = { "", "0.2", MD5, 708482, 1 };
  g_autoptr(GError) error = NULL;
  g_autofree char *victim = NULL;
  struct stat st;

  write_file (f, "victim", "precious", -1);
  g_assert_cmpint (linkat (f->dir_fd, "victim", f->dir_fd, "FW_0.2.json.tmp", 0), ==, 0);
  g_assert_true (ota_record_save_at (f->dir_fd, "FW_0.2.json", &rec, (uid_t) -1, (gid_t) -1,
                                     &error));
  g_assert_no_error (error);
  victim = read_file (f, "victim");
  g_assert_cmpstr (victim, ==, "precious");
  g_assert_cmpint (fstatat (f->dir_fd, "victim", &st, 0), ==, 0);
  g_assert_cmpuint (st.st_nlink, ==, 1);
  g_assert_cmpint (fstatat (f->dir_fd, "FW_0.2.json", &st, 0), ==, 0);
  g_assert_cmpuint (st.st_nlink, ==, 1);
}

static void
test_save_reports_errors (Fixture *f, gconstpointer data)
{
  OtaRecord rec = { "", "0.2", MD5, 708482, 1 };
  g_autoptr(GError) error = NULL;

  g_assert_false (ota_record_save_at (-1, "FW_0.2.json", &rec, (uid_t) -1, (gid_t) -1, &error));
  g_assert_nonnull (error);
  g_assert_true (strstr (error->message, "FW_0.2.json") != NULL);
}

static void
test_save_gives_file_to_owner (Fixture *f, gconstpointer data)
{
  OtaRecord rec = { "", "0.2", MD5, 708482, 1 };
  g_autoptr(GError) error = NULL;
  struct stat st;

  if (geteuid () != 0) {
    g_test_skip ("needs root");
    return;
  }
  g_assert_true (ota_record_save_at (f->dir_fd, "FW_0.2.json", &rec, 4242, 4343, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fstatat (f->dir_fd, "FW_0.2.json", &st, 0), ==, 0);
  g_assert_cmpuint (st.st_uid, ==, 4242);
  g_assert_cmpuint (st.st_gid, ==, 4343);
}

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/record/stem/main-and-module", test_stem_main_and_module);
  g_test_add_func ("/record/serialize/key-order", test_serialize_keeps_documented_key_order);
  g_test_add_func ("/record/parse/round-trip", test_parse_round_trip);
  g_test_add_func ("/record/parse/length-bounds-input", test_parse_ignores_length_past_data);
  g_test_add_func ("/record/parse/rejects-invalid", test_parse_rejects_invalid);
  g_test_add_func ("/record/parse/rejects-oversized", test_parse_rejects_oversized);
  ADD ("/record/load/missing-is-not-found", test_load_missing_is_not_found);
  ADD ("/record/load/reads-record", test_load_reads_record);
  ADD ("/record/load/rejects-garbage-and-big-files", test_load_rejects_garbage_and_big_files);
  ADD ("/record/load/no-symlinks", test_load_does_not_follow_symlinks);
  ADD ("/record/load/refuses-directories", test_load_refuses_directories);
  ADD ("/record/load/refuses-hard-links", test_load_refuses_hard_links);
  ADD ("/record/save/then-load", test_save_then_load);
  ADD ("/record/save/replaces", test_save_replaces_atomically);
  ADD ("/record/save/no-symlinks", test_save_does_not_follow_symlinks);
  ADD ("/record/save/no-hard-links", test_save_does_not_write_through_hard_links);
  ADD ("/record/save/reports-errors", test_save_reports_errors);
  ADD ("/record/save/chowns-as-root", test_save_gives_file_to_owner);
  return g_test_run ();
}
