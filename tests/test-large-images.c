/* Images over 2 GiB (and 4 GiB) on every target, 32-bit ARM included: the
 * offer's file_size, the resume record and the image file's offsets keep all
 * 64 bits, and max_firmware_size alone decides what is refused. On armhf this
 * runs under qemu (scripts/cross.sh armhf --test), where size_t and long are
 * 32-bit: any size squeezed through them would come back truncated here. */
#include "protocol.h"
#include "record.h"
#include "util.h"

#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define GIB G_GUINT64_CONSTANT (1073741824)
#define FIVE_GIB_TEXT "5368709120"
#define OFFER(size)                                                                                                 \
  "{\"type\":\"update_firmware\",\"version\":\"2.0\",\"url\":\"https://example.com/fw.bin\","                     \
  "\"md5sum\":\"36eb5951179db14a631463a37a9322a2\",\"file_size\":" size "}"

static void
test_offer_over_4gib_within_max (void)
{
  OtaCloudMessage msg = { 0 };
  g_autoptr (GError) error = NULL;
  const char *offer = OFFER (FIVE_GIB_TEXT);

  g_assert_true (ota_protocol_parse (offer, strlen (offer), G_GUINT64_CONSTANT (1) << 50, &msg, &error));
  g_assert_no_error (error);
  g_assert_cmpint (msg.type, ==, OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE);
  g_assert_cmpuint (msg.offer.file_size, ==, 5 * GIB);
  ota_cloud_message_clear (&msg);
}

/* The default max_firmware_size (2 GiB) refuses anything above, by name. */
static void
test_offer_over_default_max_refused (void)
{
  OtaCloudMessage msg = { 0 };
  g_autoptr (GError) error = NULL;
  const char *offer = OFFER ("2147483649");

  g_assert_false (ota_protocol_parse (offer, strlen (offer), 2 * GIB, &msg, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_nonnull (strstr (error->message, "2147483649 exceeds max_firmware_size 2147483648"));
}

static void
test_record_over_4gib_round_trip (void)
{
  g_autofree char *dir = g_dir_make_tmp ("iv-ota-large-XXXXXX", NULL);
  OtaRecord record = { .module = (char *) "", .version = (char *) "2.0",
                       .md5sum = (char *) "36eb5951179db14a631463a37a9322a2",
                       .file_size = 5 * GIB + 1, .downloaded_size = 4 * GIB + 3 };
  OtaRecord back = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *text = ota_record_serialize (&record);
  g_autofree char *path = NULL;
  int dir_fd;

  g_assert_nonnull (strstr (text, "\"downloaded_size\":4294967299"));
  g_assert_true (ota_record_parse (text, strlen (text), &back, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (back.file_size, ==, 5 * GIB + 1);
  g_assert_cmpuint (back.downloaded_size, ==, 4 * GIB + 3);
  ota_record_clear (&back);

  g_assert_nonnull (dir);
  dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  g_assert_cmpint (dir_fd, >=, 0);
  g_assert_true (ota_record_save_at (dir_fd, "FW_2.0.json", &record, (uid_t) -1, (gid_t) -1, &error));
  g_assert_no_error (error);
  g_assert_true (ota_record_load_at (dir_fd, "FW_2.0.json", &back, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (back.downloaded_size, ==, 4 * GIB + 3);
  ota_record_clear (&back);
  close (dir_fd);
  path = g_build_filename (dir, "FW_2.0.json", NULL);
  g_unlink (path);
  g_rmdir (dir);
}

/* A write at byte 5 GiB of a (sparse) image lands there, not at 5 GiB mod 4 GiB. */
static void
test_image_write_past_4gib (void)
{
  g_autofree char *dir = g_dir_make_tmp ("iv-ota-large-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "FW_2.0.bin", NULL);
  char back[5] = { 0 };
  struct stat st;
  int fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ota_pwrite_all (fd, "tail", 4, (off_t) (5 * GIB)), ==, 0);
  g_assert_cmpint (fstat (fd, &st), ==, 0);
  g_assert_cmpuint ((guint64) st.st_size, ==, 5 * GIB + 4);
  g_assert_cmpint (pread (fd, back, 4, (off_t) (5 * GIB)), ==, 4);
  g_assert_cmpstr (back, ==, "tail");
  g_assert_cmpint (ftruncate (fd, (off_t) (4 * GIB + 1)), ==, 0);
  g_assert_cmpint (fstat (fd, &st), ==, 0);
  g_assert_cmpuint ((guint64) st.st_size, ==, 4 * GIB + 1);
  close (fd);
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/large-images/offer-over-4gib-within-max", test_offer_over_4gib_within_max);
  g_test_add_func ("/large-images/offer-over-default-max-refused", test_offer_over_default_max_refused);
  g_test_add_func ("/large-images/record-over-4gib-round-trip", test_record_over_4gib_round_trip);
  g_test_add_func ("/large-images/image-write-past-4gib", test_image_write_past_4gib);
  return g_test_run ();
}
