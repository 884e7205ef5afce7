/* MD5 and SHA-256 of the same bytes in one pass (service/digest.c): our own
 * loops on x86-64 (MD5, and MD5 with SHA-256 where the SHA extensions are)
 * and libcrypto's way elsewhere give the digests GLib computes on its own,
 * however the bytes are split. */
#include "digest.h"

#include <string.h>

typedef enum { PATH_PORTABLE, PATH_FAST } DigestPath;

/* FALSE: the test does not apply here (and says so). */
static gboolean
use_path (DigestPath path)
{
  if (path == PATH_FAST && !ota_digest_fast_path_available ()) {
    g_test_skip ("our own loops are for x86-64 only");
    return FALSE;
  }
  ota_digest_set_fast_path (path == PATH_FAST);
  return TRUE;
}

static guint8 *
random_bytes (gsize length, guint32 seed)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);
  guint8 *data = g_malloc (length + 1);

  for (gsize i = 0; i < length; i++)
    data[i] = (guint8) g_rand_int (rand);
  return data;
}

/* Feeds @data in pieces of the sizes drawn from @seed, and compares. */
static void
assert_digests (const guint8 *data, gsize length, guint32 seed, gboolean with_sha256)
{
  g_autoptr(OtaDigest) digest = ota_digest_new (with_sha256);
  g_autoptr(GRand) rand = g_rand_new_with_seed (seed);
  g_autofree char *md5 = g_compute_checksum_for_data (G_CHECKSUM_MD5, data, length);
  g_autofree char *sha256 = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, length);
  char md5_hex[OTA_MD5_HEX_LENGTH + 1];
  char sha256_hex[OTA_SHA256_HEX_LENGTH + 1];
  gsize done = 0;

  while (done < length) {
    /* Mostly odd sizes, some whole blocks and some large runs. */
    gsize piece = g_rand_boolean (rand) ? (gsize) g_rand_int_range (rand, 1, 200)
                                        : (gsize) g_rand_int_range (rand, 1, 40000);
    piece = MIN (piece, length - done);
    ota_digest_update (digest, data + done, piece);
    done += piece;
  }
  ota_digest_get_md5 (digest, md5_hex);
  g_assert_cmpstr (md5_hex, ==, md5);
  if (with_sha256) {
    g_assert_true (ota_digest_get_sha256 (digest, sha256_hex));
    g_assert_cmpstr (sha256_hex, ==, sha256);
  } else {
    g_assert_false (ota_digest_get_sha256 (digest, sha256_hex));
  }
}

static void
test_known_values (gconstpointer data)
{
  g_autoptr(OtaDigest) digest = NULL;
  char md5[OTA_MD5_HEX_LENGTH + 1];
  char sha256[OTA_SHA256_HEX_LENGTH + 1];
  /* 64 bytes: exactly one block, taken by the one loop where there is one. */
  const char *block = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno";
  g_autofree char *block_md5 = g_compute_checksum_for_string (G_CHECKSUM_MD5, block, 64);
  g_autofree char *block_sha256 = g_compute_checksum_for_string (G_CHECKSUM_SHA256, block, 64);

  if (!use_path (GPOINTER_TO_INT (data)))
    return;
  digest = ota_digest_new (TRUE);
  ota_digest_get_md5 (digest, md5);
  g_assert_true (ota_digest_get_sha256 (digest, sha256));
  g_assert_cmpstr (md5, ==, "d41d8cd98f00b204e9800998ecf8427e");
  g_assert_cmpstr (sha256, ==, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ota_digest_update (digest, (const guint8 *) "abc", 3);
  ota_digest_get_md5 (digest, md5);
  g_assert_true (ota_digest_get_sha256 (digest, sha256));
  g_assert_cmpstr (md5, ==, "900150983cd24fb0d6963f7d28e17f72");
  g_assert_cmpstr (sha256, ==, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  /* Asking does not end them; reset starts over. */
  ota_digest_reset (digest);
  g_assert_cmpuint (strlen (block), ==, 64);
  ota_digest_update (digest, (const guint8 *) block, 64);
  ota_digest_get_md5 (digest, md5);
  g_assert_true (ota_digest_get_sha256 (digest, sha256));
  g_assert_cmpstr (md5, ==, block_md5);
  g_assert_cmpstr (sha256, ==, block_sha256);
}

/* Every length up to a few blocks past a boundary, and long inputs split
 * anywhere, with and without SHA-256. */
static void
test_any_split (gconstpointer data)
{
  g_autofree guint8 *bytes = random_bytes (3 * 1024 * 1024 + 77, 42);

  if (!use_path (GPOINTER_TO_INT (data)))
    return;
  for (gsize length = 0; length <= 300; length++) {
    assert_digests (bytes, length, (guint32) length, TRUE);
    assert_digests (bytes, length, (guint32) length, FALSE);
  }
  for (guint32 seed = 1; seed <= 8; seed++)
    assert_digests (bytes, 3 * 1024 * 1024 + 77 - seed * 1000, seed, TRUE);
  assert_digests (bytes, 3 * 1024 * 1024 + 77, 99, FALSE);
}

/* The length counter carries past 2^32 bits (512 MiB), as for a large image:
 * 600 MiB of a pattern, with one piece off the blocks in the middle, against
 * the digests Python's hashlib gives for the same bytes. */
static void
test_long_input (gconstpointer data)
{
  const gsize chunk = 1024 * 1024;
  const guint n_chunks = 600;
  g_autofree guint8 *bytes = g_malloc (chunk);
  g_autoptr(OtaDigest) digest = ota_digest_new (TRUE);
  g_autoptr(OtaDigest) md5_only = ota_digest_new (FALSE);
  char md5[OTA_MD5_HEX_LENGTH + 1];
  char sha256[OTA_SHA256_HEX_LENGTH + 1];

  if (!use_path (GPOINTER_TO_INT (data)))
    return;
  for (gsize i = 0; i < chunk; i++)
    bytes[i] = (guint8) (i * 131 + (i >> 9));
  for (guint i = 0; i < n_chunks; i++) {
    gsize first = i == n_chunks / 2 ? 1 : 0;

    ota_digest_update (digest, bytes, first);
    ota_digest_update (digest, bytes + first, chunk - first);
    ota_digest_update (md5_only, bytes, first);
    ota_digest_update (md5_only, bytes + first, chunk - first);
  }
  ota_digest_get_md5 (md5_only, md5);
  g_assert_cmpstr (md5, ==, "b8c5d931e028112844a18fb7d63c125a");
  ota_digest_get_md5 (digest, md5);
  g_assert_true (ota_digest_get_sha256 (digest, sha256));
  g_assert_cmpstr (md5, ==, "b8c5d931e028112844a18fb7d63c125a");
  g_assert_cmpstr (sha256, ==, "db424ce3ffc07f28b5ff018d3a2c346c6d4aa85e0a7f2a8c125e6b3221817911");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/digest/portable/known-values", GINT_TO_POINTER (PATH_PORTABLE), test_known_values);
  g_test_add_data_func ("/digest/portable/any-split", GINT_TO_POINTER (PATH_PORTABLE), test_any_split);
  g_test_add_data_func ("/digest/portable/past-4-gibibit", GINT_TO_POINTER (PATH_PORTABLE), test_long_input);
  g_test_add_data_func ("/digest/fast/known-values", GINT_TO_POINTER (PATH_FAST),
                        test_known_values);
  g_test_add_data_func ("/digest/fast/any-split", GINT_TO_POINTER (PATH_FAST), test_any_split);
  g_test_add_data_func ("/digest/fast/past-4-gibibit", GINT_TO_POINTER (PATH_FAST),
                        test_long_input);
  return g_test_run ();
}
