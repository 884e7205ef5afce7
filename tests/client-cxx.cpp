// Both public headers in a C++ translation unit: they must compile as C++,
// declare everything extern "C" (the program links against libiv-ota), and
// keep the SDK's values.
#include "iv_ota.h"
#include "iv_ota_ext.h"

#include <cstddef>
#include <cstdio>

static_assert (IV_OTA_PROGRESS_TYPE_WRITE_FLASH == 0 && IV_OTA_PROGRESS_TYPE_REBOOT == 1 &&
                 IV_OTA_PROGRESS_TYPE_SUCCESS == 2 && IV_OTA_PROGRESS_TYPE_FAIL == 3 &&
                 IV_OTA_PROGRESS_TYPE_WRITING_FLASH == 4,
               "progress types");
static_assert (IV_OTA_FAIL_TYPE_OPEN_FILE == 0 && IV_OTA_FAIL_TYPE_MD5_CHECK == 6, "fail types");
static_assert (sizeof (((iv_ota_init_parm_s *) nullptr)->firmware_path) == IV_OTA_LOCAL_FILE_NAME_MAX_LEN,
               "firmware_path");
static_assert (offsetof (iv_ota_init_parm_s, iv_ota_firmware_update_cb) == 0, "first field");
static_assert (offsetof (iv_ota_init_parm_s, firmware_version) ==
                 offsetof (iv_ota_init_parm_s, firmware_path) + IV_OTA_LOCAL_FILE_NAME_MAX_LEN,
               "firmware_version follows firmware_path");

static void
on_ready (char *, uint32_t)
{
}

static void
on_event (const iv_ota_event_s *, void *)
{
}

int
main ()
{
  iv_ota_init_parm_s parm = {};
  iv_ota_observer_cb observer = on_event;

  parm.iv_ota_firmware_update_cb = on_ready;
  // Calls that need no agent: they link and behave from C++ too.
  if (iv_ota_init (nullptr) != IV_ERR_OTA_INIT_PRM_NULL || iv_ota_exit () != IV_ERR_OTA_NOT_INITIALIZED ||
      iv_ota_module_open ("bad name", &parm, nullptr, nullptr) != IV_ERR_OTA_INIT_PRM_NULL ||
      iv_ota_module_current () != nullptr || observer == nullptr) {
    std::puts ("unexpected result from C++");
    return 1;
  }
  std::printf ("C++ ok: %s\n", iv_ota_strerror (IV_ERR_OTA_START_FAIL));
  return 0;
}
