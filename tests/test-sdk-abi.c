/* The SDK's structs and enums as an application compiled against the Tencent
 * IoT Video SDK's iv_ota.h lays them out, checked at COMPILE time for the ABI
 * this file is built for: a wrong layout is a build error on that target, not
 * a failed test. Offsets follow from the SDK's declarations (member order and
 * types) and the platform ABI:
 *  - LP64 (x86-64, AArch64): 8-byte pointers, 8-byte aligned.
 *  - ILP32 (32-bit ARM EABI hard float, i386): 4-byte pointers; ARM EABI
 *    keeps enums 4 bytes wide (no -fshort-enums on Linux).
 * scripts/cross.sh builds and runs this file for armhf and arm64; the native
 * build covers x86-64. The test cases below repeat the checks at run time
 * and say which table was used, so the log shows what was verified. */
#include <glib.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "iv_ota.h"

/* Constants, enum values and return codes of the SDK. */
G_STATIC_ASSERT (IV_OTA_LOCAL_FILE_NAME_MAX_LEN == 160);
G_STATIC_ASSERT (IV_OTA_FIRMWARE_VERSION_MAX_LEN == 64);
G_STATIC_ASSERT (IV_OTA_PROGRESS_TYPE_WRITE_FLASH == 0 && IV_OTA_PROGRESS_TYPE_REBOOT == 1 &&
                 IV_OTA_PROGRESS_TYPE_SUCCESS == 2 && IV_OTA_PROGRESS_TYPE_FAIL == 3 &&
                 IV_OTA_PROGRESS_TYPE_WRITING_FLASH == 4 && IV_OTA_PROGRESS_TYPE_BUTT == 5);
G_STATIC_ASSERT (IV_OTA_FAIL_TYPE_OPEN_FILE == 0 && IV_OTA_FAIL_TYPE_WRONG_SIZE == 1 &&
                 IV_OTA_FAIL_TYPE_WRITE_FLASH == 2 && IV_OTA_FAIL_TYPE_REPORT_VERSION == 3 &&
                 IV_OTA_FAIL_TYPE_MALLOC == 4 && IV_OTA_FAIL_TYPE_HTTP_DOWNLOAD == 5 &&
                 IV_OTA_FAIL_TYPE_MD5_CHECK == 6 && IV_OTA_FAIL_TYPE_WRITE_BUTT == 7);
G_STATIC_ASSERT (IV_ERR_NONE == 0 && IV_ERR_OTA_INIT_PRM_NULL == -800 && IV_ERR_OTA_INIT_CB_NULL == -801 &&
                 IV_ERR_OTA_START_FAIL == -802 && IV_ERR_OTA_PROGRESS_TYPE_ERROR == -803 &&
                 IV_ERR_DEVICE_OFFLINE == -1001);

/* Enums are passed by value and stored in the structs: int-sized everywhere. */
G_STATIC_ASSERT (sizeof (iv_ota_progress_type_e) == 4);
G_STATIC_ASSERT (sizeof (iv_ota_fail_type_e) == 4);

/* Pointer-free structs: the same on every ABI. */
G_STATIC_ASSERT (offsetof (iv_ota_fail_info_s, fail_type) == 0);
G_STATIC_ASSERT (offsetof (iv_ota_fail_info_s, err_code) == 4);
G_STATIC_ASSERT (offsetof (iv_ota_fail_info_s, downloaded_size) == 8);
G_STATIC_ASSERT (offsetof (iv_ota_fail_info_s, fw_file_size) == 12);
G_STATIC_ASSERT (offsetof (iv_ota_fail_info_s, remote_version) == 16);
G_STATIC_ASSERT (sizeof (((iv_ota_fail_info_s *) 0)->remote_version) == 64);
G_STATIC_ASSERT (sizeof (iv_ota_fail_info_s) == 80);
G_STATIC_ASSERT (offsetof (iv_ota_thread_exit_status_s, mqtt_online) == 0);
G_STATIC_ASSERT (sizeof (iv_ota_thread_exit_status_s) == 4);

/* iv_ota_init_parm_s: update_cb, firmware_path[160], firmware_version[64],
 * prepare_cb, download_size_cb, thread_exit_cb, download_fail_cb. */
#if defined(__LP64__)
#define ABI_NAME "LP64"
#define PARM_PATH 8
#define PARM_VERSION 168
#define PARM_PREPARE 232
#define PARM_SIZE_CB 240
#define PARM_EXIT_CB 248
#define PARM_FAIL_CB 256
#define PARM_SIZE 264
#elif defined(__ILP32__) || (defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 4)
#define ABI_NAME "ILP32"
#define PARM_PATH 4
#define PARM_VERSION 164
#define PARM_PREPARE 228
#define PARM_SIZE_CB 232
#define PARM_EXIT_CB 236
#define PARM_FAIL_CB 240
#define PARM_SIZE 244
#else
#error "test-sdk-abi: no layout table for this ABI; add one from the SDK's declarations"
#endif
#if defined(__arm__) && !defined(__ARM_EABI__)
#error "test-sdk-abi: 32-bit ARM without EABI (OABI) lays enums and structs out differently"
#endif

G_STATIC_ASSERT (offsetof (iv_ota_init_parm_s, iv_ota_firmware_update_cb) == 0);
G_STATIC_ASSERT (offsetof (iv_ota_init_parm_s, firmware_path) == PARM_PATH);
G_STATIC_ASSERT (sizeof (((iv_ota_init_parm_s *) 0)->firmware_path) == 160);
G_STATIC_ASSERT (offsetof (iv_ota_init_parm_s, firmware_version) == PARM_VERSION);
G_STATIC_ASSERT (sizeof (((iv_ota_init_parm_s *) 0)->firmware_version) == 64);
G_STATIC_ASSERT (offsetof (iv_ota_init_parm_s, iv_ota_prepare_cb) == PARM_PREPARE);
G_STATIC_ASSERT (offsetof (iv_ota_init_parm_s, iv_ota_download_size_cb) == PARM_SIZE_CB);
G_STATIC_ASSERT (offsetof (iv_ota_init_parm_s, iv_ota_thread_exit_cb) == PARM_EXIT_CB);
G_STATIC_ASSERT (offsetof (iv_ota_init_parm_s, iv_ota_download_fail_cb) == PARM_FAIL_CB);
G_STATIC_ASSERT (sizeof (iv_ota_init_parm_s) == PARM_SIZE);

/* Images over 2 GiB need 64-bit file offsets on 32-bit targets too
 * (_FILE_OFFSET_BITS=64, set for the whole project in meson.build). */
G_STATIC_ASSERT (sizeof (off_t) == 8);

/* The callbacks' parameter types, as the SDK declares them: assigning an
 * SDK-typed function to each member must compile without a cast. */
static void update_cb (char *name, uint32_t len) {}
static int prepare_cb (char *version, uint32_t size) { return 0; }
static void size_cb (uint32_t size) {}
static void exit_cb (iv_ota_thread_exit_status_s status) {}
static void fail_cb (const iv_ota_fail_info_s *info) {}

static void
test_init_parm_layout (void)
{
  iv_ota_init_parm_s parm = {
    .iv_ota_firmware_update_cb = update_cb,
    .iv_ota_prepare_cb = prepare_cb,
    .iv_ota_download_size_cb = size_cb,
    .iv_ota_thread_exit_cb = exit_cb,
    .iv_ota_download_fail_cb = fail_cb,
  };
  const guint8 *base = (const guint8 *) &parm;

  g_test_message ("ABI %s: sizeof (iv_ota_init_parm_s) = %" G_GSIZE_FORMAT, ABI_NAME, sizeof parm);
  g_assert_true ((const guint8 *) parm.firmware_path == base + PARM_PATH);
  g_assert_true ((const guint8 *) parm.firmware_version == base + PARM_VERSION);
  g_assert_true ((const guint8 *) &parm.iv_ota_download_fail_cb == base + PARM_FAIL_CB);
  g_assert_cmpuint (sizeof parm, ==, PARM_SIZE);
}

static void
test_fail_info_layout (void)
{
  iv_ota_fail_info_s info = { .fail_type = IV_OTA_FAIL_TYPE_MD5_CHECK, .fw_file_size = 0xffffffffu };

  g_assert_cmpuint (sizeof info, ==, 80);
  g_assert_cmpuint (info.fw_file_size, ==, G_MAXUINT32);
  g_assert_cmpint (info.fail_type, ==, 6);
}

static void
test_large_file_offsets (void)
{
  g_assert_cmpuint (sizeof (off_t), ==, 8);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/sdk-abi/init-parm-layout", test_init_parm_layout);
  g_test_add_func ("/sdk-abi/fail-info-layout", test_fail_info_layout);
  g_test_add_func ("/sdk-abi/large-file-offsets", test_large_file_offsets);
  return g_test_run ();
}
