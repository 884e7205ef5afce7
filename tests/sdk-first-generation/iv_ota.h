/* The first generation of the Tencent IoT Video SDK's iv_ota.h, as facts for
 * tests: iv_ota_init_parm_s ends with iv_ota_thread_exit_cb (no
 * iv_ota_download_fail_cb). client-abi-app is compiled against it once, as an
 * application built for that SDK and linked to libiv-ota unchanged. */
#ifndef IV_OTA_H
#define IV_OTA_H

#include <stdint.h>

#define IV_ERR_NONE 0
#define IV_ERR_OTA_INIT_PRM_NULL (-800)
#define IV_ERR_OTA_INIT_CB_NULL (-801)
#define IV_ERR_OTA_START_FAIL (-802)
#define IV_ERR_OTA_PROGRESS_TYPE_ERROR (-803)
#define IV_ERR_DEVICE_OFFLINE (-1001)

#define IV_OTA_LOCAL_FILE_NAME_MAX_LEN 160
#define IV_OTA_FIRMWARE_VERSION_MAX_LEN 64

typedef enum {
  IV_OTA_PROGRESS_TYPE_WRITE_FLASH = 0,
  IV_OTA_PROGRESS_TYPE_REBOOT = 1,
  IV_OTA_PROGRESS_TYPE_SUCCESS = 2,
  IV_OTA_PROGRESS_TYPE_FAIL = 3,
  IV_OTA_PROGRESS_TYPE_WRITING_FLASH = 4,
  IV_OTA_PROGRESS_TYPE_BUTT
} iv_ota_progress_type_e;

typedef struct iv_ota_thread_exit_status_s {
  int mqtt_online;
} iv_ota_thread_exit_status_s;

typedef struct iv_ota_init_parm_s {
  void (*iv_ota_firmware_update_cb) (char *firmware_name, uint32_t firmware_len);
  char firmware_path[IV_OTA_LOCAL_FILE_NAME_MAX_LEN];
  char firmware_version[IV_OTA_FIRMWARE_VERSION_MAX_LEN];
  int (*iv_ota_prepare_cb) (char *new_firmware_version, uint32_t new_firmware_size);
  void (*iv_ota_download_size_cb) (uint32_t size);
  void (*iv_ota_thread_exit_cb) (iv_ota_thread_exit_status_s status);
} iv_ota_init_parm_s;

int iv_ota_init (iv_ota_init_parm_s *init_parm);
int iv_ota_exit (void);
int iv_ota_update_progress (iv_ota_progress_type_e type, int progress_value);

#endif /* IV_OTA_H */
