/* MD5 and SHA-256 of the same bytes, in one pass.
 *
 * MD5 is one long chain of dependent steps: a core running it alone leaves
 * most of its execution units idle, and SHA-256 on the x86 SHA extensions
 * runs on others. On x86-64 our own loop computes both, four MD5 steps then
 * four SHA-256 rounds, and SHA-256 comes for free; MD5 alone runs the same
 * loop without them. 256 MiB on this project's test machine (one core):
 * libcrypto's MD5 0.35 s, its SHA-256 0.15 s, both a block at a time 0.41 s;
 * our MD5 0.33 s, our MD5 + SHA-256 0.33 s. Elsewhere (other processors, or
 * no SHA extensions for SHA-256) it is libcrypto's: MD5 alone, or both a
 * 64-byte block at a time, which still overlaps them in part.
 */

/* MD5_Init/Update/Final and SHA256_* are deprecated since OpenSSL 3.0 in
 * favour of EVP. They are used on purpose: libcrypto's assembly with no setup,
 * about 10 % faster than GChecksum on one core (730 vs 665 MiB/s for MD5),
 * while the first EVP digest loads the default provider and its configuration
 * (+2 MiB of private memory, as much as the whole download engine); and the
 * one loop above works on their contexts' state. Declaring the 1.1.1 API keeps
 * them free of deprecation warnings. */
#define OPENSSL_API_COMPAT 0x10100000L

#include "digest.h"

#include <openssl/md5.h>
#include <openssl/sha.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define OTA_DIGEST_X86 1
#ifndef bit_SHA
#define bit_SHA (1 << 29)
#endif
#endif

struct _OtaDigest {
  MD5_CTX md5;
  SHA256_CTX sha256;
  gboolean with_sha256;
};

OtaDigest *
ota_digest_new (gboolean with_sha256)
{
  OtaDigest *digest = g_new0 (OtaDigest, 1);

  digest->with_sha256 = with_sha256;
  ota_digest_reset (digest);
  return digest;
}

void
ota_digest_free (OtaDigest *digest)
{
  g_free (digest);
}

void
ota_digest_reset (OtaDigest *digest)
{
  g_return_if_fail (digest != NULL);

  MD5_Init (&digest->md5);
  SHA256_Init (&digest->sha256);
}

gboolean
ota_digest_has_sha256 (const OtaDigest *digest)
{
  g_return_val_if_fail (digest != NULL, FALSE);

  return digest->with_sha256;
}

/* ---- the one loop (x86-64 with the SHA extensions) ---- */

#ifdef OTA_DIGEST_X86

/* The SHA-256 round constants (FIPS 180-4, 4.2.2). */
static const guint32 ota_sha256_k[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* MD5 (RFC 1321, 3.4): one step of each round. The order of the operations
 * matters: the next step waits for @b, so as little as possible is left to
 * do after it comes (round 2 adds c & ~d before b & d, round 3 xors c and d
 * first). This makes the loop about 5 % faster than libcrypto's assembly. */
#define OTA_ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
#define OTA_MD5_F(a, b, c, d, x, t, s)           \
  (a) += ((d) ^ ((b) & ((c) ^ (d)))) + (x) + (t); \
  (a) = OTA_ROTL ((a), (s)) + (b);
#define OTA_MD5_G(a, b, c, d, x, t, s)  \
  (a) += (x) + (t) + ((c) & ~(d));      \
  (a) += (b) & (d);                     \
  (a) = OTA_ROTL ((a), (s)) + (b);
#define OTA_MD5_H(a, b, c, d, x, t, s)  \
  (a) += (((c) ^ (d)) ^ (b)) + (x) + (t); \
  (a) = OTA_ROTL ((a), (s)) + (b);
#define OTA_MD5_I(a, b, c, d, x, t, s)           \
  (a) += ((c) ^ ((b) | ~(d))) + (x) + (t);        \
  (a) = OTA_ROTL ((a), (s)) + (b);

/* The 64 steps of one block on a, b, c, d from the words x[], with
 * between (i) after every fourth step (i = 0..15): room for other work. */
#define OTA_MD5_BLOCK(between)                                                                  \
  OTA_MD5_F (a, b, c, d, x[0], 0xd76aa478, 7) OTA_MD5_F (d, a, b, c, x[1], 0xe8c7b756, 12)      \
  OTA_MD5_F (c, d, a, b, x[2], 0x242070db, 17) OTA_MD5_F (b, c, d, a, x[3], 0xc1bdceee, 22)     \
  between (0)                                                                                   \
  OTA_MD5_F (a, b, c, d, x[4], 0xf57c0faf, 7) OTA_MD5_F (d, a, b, c, x[5], 0x4787c62a, 12)      \
  OTA_MD5_F (c, d, a, b, x[6], 0xa8304613, 17) OTA_MD5_F (b, c, d, a, x[7], 0xfd469501, 22)     \
  between (1)                                                                                   \
  OTA_MD5_F (a, b, c, d, x[8], 0x698098d8, 7) OTA_MD5_F (d, a, b, c, x[9], 0x8b44f7af, 12)      \
  OTA_MD5_F (c, d, a, b, x[10], 0xffff5bb1, 17) OTA_MD5_F (b, c, d, a, x[11], 0x895cd7be, 22)   \
  between (2)                                                                                   \
  OTA_MD5_F (a, b, c, d, x[12], 0x6b901122, 7) OTA_MD5_F (d, a, b, c, x[13], 0xfd987193, 12)    \
  OTA_MD5_F (c, d, a, b, x[14], 0xa679438e, 17) OTA_MD5_F (b, c, d, a, x[15], 0x49b40821, 22)   \
  between (3)                                                                                   \
  OTA_MD5_G (a, b, c, d, x[1], 0xf61e2562, 5) OTA_MD5_G (d, a, b, c, x[6], 0xc040b340, 9)       \
  OTA_MD5_G (c, d, a, b, x[11], 0x265e5a51, 14) OTA_MD5_G (b, c, d, a, x[0], 0xe9b6c7aa, 20)    \
  between (4)                                                                                   \
  OTA_MD5_G (a, b, c, d, x[5], 0xd62f105d, 5) OTA_MD5_G (d, a, b, c, x[10], 0x02441453, 9)      \
  OTA_MD5_G (c, d, a, b, x[15], 0xd8a1e681, 14) OTA_MD5_G (b, c, d, a, x[4], 0xe7d3fbc8, 20)    \
  between (5)                                                                                   \
  OTA_MD5_G (a, b, c, d, x[9], 0x21e1cde6, 5) OTA_MD5_G (d, a, b, c, x[14], 0xc33707d6, 9)      \
  OTA_MD5_G (c, d, a, b, x[3], 0xf4d50d87, 14) OTA_MD5_G (b, c, d, a, x[8], 0x455a14ed, 20)     \
  between (6)                                                                                   \
  OTA_MD5_G (a, b, c, d, x[13], 0xa9e3e905, 5) OTA_MD5_G (d, a, b, c, x[2], 0xfcefa3f8, 9)      \
  OTA_MD5_G (c, d, a, b, x[7], 0x676f02d9, 14) OTA_MD5_G (b, c, d, a, x[12], 0x8d2a4c8a, 20)    \
  between (7)                                                                                   \
  OTA_MD5_H (a, b, c, d, x[5], 0xfffa3942, 4) OTA_MD5_H (d, a, b, c, x[8], 0x8771f681, 11)      \
  OTA_MD5_H (c, d, a, b, x[11], 0x6d9d6122, 16) OTA_MD5_H (b, c, d, a, x[14], 0xfde5380c, 23)   \
  between (8)                                                                                   \
  OTA_MD5_H (a, b, c, d, x[1], 0xa4beea44, 4) OTA_MD5_H (d, a, b, c, x[4], 0x4bdecfa9, 11)      \
  OTA_MD5_H (c, d, a, b, x[7], 0xf6bb4b60, 16) OTA_MD5_H (b, c, d, a, x[10], 0xbebfbc70, 23)    \
  between (9)                                                                                   \
  OTA_MD5_H (a, b, c, d, x[13], 0x289b7ec6, 4) OTA_MD5_H (d, a, b, c, x[0], 0xeaa127fa, 11)     \
  OTA_MD5_H (c, d, a, b, x[3], 0xd4ef3085, 16) OTA_MD5_H (b, c, d, a, x[6], 0x04881d05, 23)     \
  between (10)                                                                                  \
  OTA_MD5_H (a, b, c, d, x[9], 0xd9d4d039, 4) OTA_MD5_H (d, a, b, c, x[12], 0xe6db99e5, 11)     \
  OTA_MD5_H (c, d, a, b, x[15], 0x1fa27cf8, 16) OTA_MD5_H (b, c, d, a, x[2], 0xc4ac5665, 23)    \
  between (11)                                                                                  \
  OTA_MD5_I (a, b, c, d, x[0], 0xf4292244, 6) OTA_MD5_I (d, a, b, c, x[7], 0x432aff97, 10)      \
  OTA_MD5_I (c, d, a, b, x[14], 0xab9423a7, 15) OTA_MD5_I (b, c, d, a, x[5], 0xfc93a039, 21)    \
  between (12)                                                                                  \
  OTA_MD5_I (a, b, c, d, x[12], 0x655b59c3, 6) OTA_MD5_I (d, a, b, c, x[3], 0x8f0ccc92, 10)     \
  OTA_MD5_I (c, d, a, b, x[10], 0xffeff47d, 15) OTA_MD5_I (b, c, d, a, x[1], 0x85845dd1, 21)    \
  between (13)                                                                                  \
  OTA_MD5_I (a, b, c, d, x[8], 0x6fa87e4f, 6) OTA_MD5_I (d, a, b, c, x[15], 0xfe2ce6e0, 10)     \
  OTA_MD5_I (c, d, a, b, x[6], 0xa3014314, 15) OTA_MD5_I (b, c, d, a, x[13], 0x4e0811a1, 21)    \
  between (14)                                                                                  \
  OTA_MD5_I (a, b, c, d, x[4], 0xf7537e82, 6) OTA_MD5_I (d, a, b, c, x[11], 0xbd3af235, 10)     \
  OTA_MD5_I (c, d, a, b, x[2], 0x2ad7d2bb, 15) OTA_MD5_I (b, c, d, a, x[9], 0xeb86d391, 21)     \
  between (15)

#define OTA_NOTHING(i)

/* After a block: its result is added to the state it started from. */
#define OTA_MD5_ADD_START() \
  a += a0;                  \
  b += b0;                  \
  c += c0;                  \
  d += d0;

/* @n_blocks whole 64-byte blocks into MD5's A, B, C, D as the context keeps
 * them. */
static void
ota_digest_md5_blocks (guint32 md5[4], const guint8 *data, gsize n_blocks)
{
  guint32 a = md5[0], b = md5[1], c = md5[2], d = md5[3];

  for (; n_blocks > 0; n_blocks--, data += 64) {
    guint32 x[16]; /* MD5 reads the block as little-endian words, as x86 does */
    guint32 a0 = a, b0 = b, c0 = c, d0 = d;

    memcpy (x, data, sizeof x);
    OTA_MD5_BLOCK (OTA_NOTHING)
    OTA_MD5_ADD_START ()
  }
  md5[0] = a;
  md5[1] = b;
  md5[2] = c;
  md5[3] = d;
}

/* SHA-256: four rounds (quad @i, 0..15) with the message words in @m. */
#define OTA_SHA_ROUNDS(i, m)                                                                       \
  do {                                                                                             \
    __m128i wk_ = _mm_add_epi32 ((m), _mm_loadu_si128 ((const __m128i *) &ota_sha256_k[4 * (i)])); \
    cdgh = _mm_sha256rnds2_epu32 (cdgh, abef, wk_);                                                \
    wk_ = _mm_shuffle_epi32 (wk_, 0x0e);                                                           \
    abef = _mm_sha256rnds2_epu32 (abef, cdgh, wk_);                                                \
  } while (0);

/* SHA-256: the next four message words into @m0 from the last sixteen. */
#define OTA_SHA_SCHEDULE(m0, m1, m2, m3)                                                       \
  do {                                                                                         \
    __m128i w_ = _mm_alignr_epi8 ((m3), (m2), 4);                                              \
    (m0) = _mm_sha256msg2_epu32 (_mm_add_epi32 (_mm_sha256msg1_epu32 ((m0), (m1)), w_), (m3)); \
  } while (0);

/* Quad i of SHA-256 between MD5's steps: the first four use the block's
 * words, each later one first makes the next four. */
#define OTA_SHA_QUAD(i) OTA_SHA_QUAD_##i
#define OTA_SHA_QUAD_0 OTA_SHA_ROUNDS (0, m0)
#define OTA_SHA_QUAD_1 OTA_SHA_ROUNDS (1, m1)
#define OTA_SHA_QUAD_2 OTA_SHA_ROUNDS (2, m2)
#define OTA_SHA_QUAD_3 OTA_SHA_ROUNDS (3, m3)
#define OTA_SHA_LATER(i, ma, mb, mc, md) OTA_SHA_SCHEDULE (ma, mb, mc, md) OTA_SHA_ROUNDS (i, ma)
#define OTA_SHA_QUAD_4 OTA_SHA_LATER (4, m0, m1, m2, m3)
#define OTA_SHA_QUAD_5 OTA_SHA_LATER (5, m1, m2, m3, m0)
#define OTA_SHA_QUAD_6 OTA_SHA_LATER (6, m2, m3, m0, m1)
#define OTA_SHA_QUAD_7 OTA_SHA_LATER (7, m3, m0, m1, m2)
#define OTA_SHA_QUAD_8 OTA_SHA_LATER (8, m0, m1, m2, m3)
#define OTA_SHA_QUAD_9 OTA_SHA_LATER (9, m1, m2, m3, m0)
#define OTA_SHA_QUAD_10 OTA_SHA_LATER (10, m2, m3, m0, m1)
#define OTA_SHA_QUAD_11 OTA_SHA_LATER (11, m3, m0, m1, m2)
#define OTA_SHA_QUAD_12 OTA_SHA_LATER (12, m0, m1, m2, m3)
#define OTA_SHA_QUAD_13 OTA_SHA_LATER (13, m1, m2, m3, m0)
#define OTA_SHA_QUAD_14 OTA_SHA_LATER (14, m2, m3, m0, m1)
#define OTA_SHA_QUAD_15 OTA_SHA_LATER (15, m3, m0, m1, m2)

/* @n_blocks whole 64-byte blocks into both states: @md5 is MD5's A, B, C, D,
 * @sha256 SHA-256's H0..H7, as the contexts keep them. */
__attribute__ ((target ("sha,sse4.1,ssse3"))) static void
ota_digest_both_blocks (guint32 md5[4], guint32 sha256[8], const guint8 *data, gsize n_blocks)
{
  const __m128i big_endian = _mm_set_epi64x (0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i dcba = _mm_shuffle_epi32 (_mm_loadu_si128 ((const __m128i *) &sha256[0]), 0xb1);
  __m128i hgfe = _mm_shuffle_epi32 (_mm_loadu_si128 ((const __m128i *) &sha256[4]), 0x1b);
  /* The SHA instructions want the state as ABEF and CDGH. */
  __m128i abef = _mm_alignr_epi8 (dcba, hgfe, 8);
  __m128i cdgh = _mm_blend_epi16 (hgfe, dcba, 0xf0);
  guint32 a = md5[0], b = md5[1], c = md5[2], d = md5[3];

  for (; n_blocks > 0; n_blocks--, data += 64) {
    guint32 x[16];
    guint32 a0 = a, b0 = b, c0 = c, d0 = d;
    __m128i abef0 = abef, cdgh0 = cdgh;
    __m128i m0 = _mm_shuffle_epi8 (_mm_loadu_si128 ((const __m128i *) (data + 0)), big_endian);
    __m128i m1 = _mm_shuffle_epi8 (_mm_loadu_si128 ((const __m128i *) (data + 16)), big_endian);
    __m128i m2 = _mm_shuffle_epi8 (_mm_loadu_si128 ((const __m128i *) (data + 32)), big_endian);
    __m128i m3 = _mm_shuffle_epi8 (_mm_loadu_si128 ((const __m128i *) (data + 48)), big_endian);

    memcpy (x, data, sizeof x);
    OTA_MD5_BLOCK (OTA_SHA_QUAD)
    OTA_MD5_ADD_START ()
    abef = _mm_add_epi32 (abef, abef0);
    cdgh = _mm_add_epi32 (cdgh, cdgh0);
  }
  md5[0] = a;
  md5[1] = b;
  md5[2] = c;
  md5[3] = d;
  /* Back to H0..H7. */
  dcba = _mm_shuffle_epi32 (abef, 0x1b); /* FEBA */
  hgfe = _mm_shuffle_epi32 (cdgh, 0xb1); /* DCHG */
  _mm_storeu_si128 ((__m128i *) &sha256[0], _mm_blend_epi16 (dcba, hgfe, 0xf0));
  _mm_storeu_si128 ((__m128i *) &sha256[4], _mm_alignr_epi8 (hgfe, dcba, 8));
}

/* What MD5_Update and SHA256_Update keep beside the state: the length so
 * far in bits, as two 32-bit halves. */
static void
ota_digest_count (unsigned int *low, unsigned int *high, guint64 bytes)
{
  guint64 bits = (((guint64) *high << 32) | *low) + (bytes << 3);

  *low = (unsigned int) bits;
  *high = (unsigned int) (bits >> 32);
}

static gboolean
ota_digest_cpu_can (void)
{
  unsigned int eax, ebx, ecx, edx;

  if (!__get_cpuid (1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_SSSE3) || !(ecx & bit_SSE4_1))
    return FALSE;
  return __get_cpuid_count (7, 0, &eax, &ebx, &ecx, &edx) && (ebx & bit_SHA) != 0;
}

#endif /* OTA_DIGEST_X86 */

/* Where the processor has the SHA extensions; decided once. */
static gboolean
ota_digest_cpu_has_sha (void)
{
#ifdef OTA_DIGEST_X86
  static gsize has;

  if (g_once_init_enter (&has))
    g_once_init_leave (&has, ota_digest_cpu_can () ? 2 : 1);
  return has == 2;
#else
  return FALSE;
#endif
}

gboolean
ota_digest_fast_path_available (void)
{
#ifdef OTA_DIGEST_X86
  return TRUE;
#else
  return FALSE;
#endif
}

/* Tests turn it off to check the portable way; on by default where it exists. */
static gint ota_digest_fast_path = TRUE;

void
ota_digest_set_fast_path (gboolean use)
{
  g_atomic_int_set (&ota_digest_fast_path, use);
}

/* Whole blocks through our loops, the contexts' own buffering before and
 * after. With SHA-256 both contexts saw the same bytes: they hold the same
 * partial block. */
static void
ota_digest_update_fast (OtaDigest *digest, const guint8 *data, gsize length)
{
#ifdef OTA_DIGEST_X86
  gsize head = MIN (length, (64 - digest->md5.num) % 64);
  gsize n_blocks;

  if (head > 0) {
    MD5_Update (&digest->md5, data, head);
    if (digest->with_sha256)
      SHA256_Update (&digest->sha256, data, head);
    data += head;
    length -= head;
  }
  n_blocks = length / 64;
  if (n_blocks > 0) {
    guint32 md5[4] = { digest->md5.A, digest->md5.B, digest->md5.C, digest->md5.D };

    if (digest->with_sha256) {
      ota_digest_both_blocks (md5, digest->sha256.h, data, n_blocks);
      ota_digest_count (&digest->sha256.Nl, &digest->sha256.Nh, (guint64) n_blocks * 64);
    } else {
      ota_digest_md5_blocks (md5, data, n_blocks);
    }
    digest->md5.A = md5[0];
    digest->md5.B = md5[1];
    digest->md5.C = md5[2];
    digest->md5.D = md5[3];
    ota_digest_count (&digest->md5.Nl, &digest->md5.Nh, (guint64) n_blocks * 64);
    data += n_blocks * 64;
    length -= n_blocks * 64;
  }
#endif
  MD5_Update (&digest->md5, data, length);
  if (digest->with_sha256)
    SHA256_Update (&digest->sha256, data, length);
}

void
ota_digest_update (OtaDigest *digest, const guint8 *data, gsize length)
{
  g_return_if_fail (digest != NULL);
  g_return_if_fail (data != NULL || length == 0);

  if (ota_digest_fast_path_available () && g_atomic_int_get (&ota_digest_fast_path) &&
      (!digest->with_sha256 || (ota_digest_cpu_has_sha () && digest->md5.num == digest->sha256.num))) {
    ota_digest_update_fast (digest, data, length);
    return;
  }
  if (!digest->with_sha256) {
    MD5_Update (&digest->md5, data, length);
    return;
  }
  /* A block of each in turn: libcrypto's two still overlap in part. */
  for (; length >= 64; data += 64, length -= 64) {
    MD5_Update (&digest->md5, data, 64);
    SHA256_Update (&digest->sha256, data, 64);
  }
  MD5_Update (&digest->md5, data, length);
  SHA256_Update (&digest->sha256, data, length);
}

static void
ota_digest_hex (const guint8 *bytes, gsize length, char *hex)
{
  static const char digits[] = "0123456789abcdef";

  for (gsize i = 0; i < length; i++) {
    hex[2 * i] = digits[bytes[i] >> 4];
    hex[2 * i + 1] = digits[bytes[i] & 0xf];
  }
  hex[2 * length] = '\0';
}

void
ota_digest_get_md5 (const OtaDigest *digest, char hex[OTA_MD5_HEX_LENGTH + 1])
{
  MD5_CTX ctx;
  guint8 bytes[MD5_DIGEST_LENGTH];

  g_return_if_fail (digest != NULL && hex != NULL);

  ctx = digest->md5;
  MD5_Final (bytes, &ctx);
  ota_digest_hex (bytes, sizeof bytes, hex);
}

gboolean
ota_digest_get_sha256 (const OtaDigest *digest, char hex[OTA_SHA256_HEX_LENGTH + 1])
{
  SHA256_CTX ctx;
  guint8 bytes[SHA256_DIGEST_LENGTH];

  g_return_val_if_fail (digest != NULL && hex != NULL, FALSE);

  if (!digest->with_sha256)
    return FALSE;
  ctx = digest->sha256;
  SHA256_Final (bytes, &ctx);
  ota_digest_hex (bytes, sizeof bytes, hex);
  return TRUE;
}
