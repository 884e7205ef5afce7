/* The Tencent IoT $ota wire protocol (docs/protocol.md) as pure functions: bytes in,
 * structs out, no I/O, no global state. Unit-tested and fuzzed alone. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Larger cloud messages are dropped unparsed. */
#define OTA_PROTOCOL_MAX_MESSAGE_SIZE (64 * 1024)
/* The largest file_size any configuration allows (max_firmware_size <= 2^50). */
#define OTA_PROTOCOL_FILE_SIZE_LIMIT (G_GUINT64_CONSTANT (1) << 50)
#define OTA_PROTOCOL_MAX_VERSION_LEN 32
#define OTA_PROTOCOL_MAX_URL_LEN 2048
#define OTA_PROTOCOL_MAX_TASK_ID_LEN 64

/* Result codes of "fail" reports. */
typedef enum {
  OTA_RESULT_OK = 0,
  OTA_RESULT_TIMEOUT = -1,
  OTA_RESULT_NOT_FOUND = -2,
  OTA_RESULT_EXPIRED = -3,
  OTA_RESULT_MD5_MISMATCH = -4,
  OTA_RESULT_FAILED = -5,
} OtaResultCode;

typedef enum {
  OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE,
  OTA_CLOUD_MESSAGE_REPORT_VERSION_RSP,
} OtaCloudMessageType;

/* An update_firmware message, every field validated. */
typedef struct {
  char *module;        /* fw_type, "" when absent (main firmware) */
  char *version;       /* passes ota_protocol_version_is_valid() */
  char *url;           /* http:// or https://, <= 2048 bytes */
  char *md5sum;        /* 32 lowercase hex digits */
  guint64 file_size;   /* 1..max_firmware_size */
  char *task_id;       /* NULL when absent; a JSON number kept as decimal text */
  gboolean task_id_is_number; /* echo it back as a number */
  char *user_defined;  /* NULL when absent; else the value as JSON text */
} OtaOffer;

/* A report_version_rsp message. */
typedef struct {
  char *module;        /* fw_type, "" when absent */
  gint64 result_code;  /* from a JSON number or a string of digits */
  char *result_msg;    /* "" when absent */
  char *version;       /* "" when absent */
} OtaVersionAck;

typedef struct {
  OtaCloudMessageType type;
  OtaOffer offer;      /* valid for OTA_CLOUD_MESSAGE_UPDATE_FIRMWARE */
  OtaVersionAck ack;   /* valid for OTA_CLOUD_MESSAGE_REPORT_VERSION_RSP */
} OtaCloudMessage;

/* A device → cloud report_progress. */
typedef struct {
  const char *module;     /* "" or NULL: main firmware, no fw_type field */
  const char *version;    /* the TARGET version */
  const char *state;      /* "downloading", "burning", "done", "fail" */
  int percent;            /* < 0: no percent field */
  int result_code;
  const char *result_msg; /* NULL is "" */
  const char *task_id;    /* NULL: no task_id field */
  gboolean task_id_is_number;
} OtaProgressReport;

/**
 * ota_protocol_parse:
 * @data: the MQTT payload, not necessarily NUL-terminated
 * @length: its length
 * @max_firmware_size: upper bound of file_size
 * @msg: (out caller-allocates): filled on success; free with ota_cloud_message_clear()
 *
 * Decodes and validates one cloud message. Any invalid field, a message over
 * %OTA_PROTOCOL_MAX_MESSAGE_SIZE, malformed JSON, or a type other than
 * update_firmware / report_version_rsp sets @error (G_IO_ERROR_INVALID_DATA,
 * or G_IO_ERROR_NOT_SUPPORTED for an unknown type) naming the field.
 */
gboolean ota_protocol_parse (const char *data,
                             gsize length,
                             guint64 max_firmware_size,
                             OtaCloudMessage *msg,
                             GError **error);
void ota_cloud_message_clear (OtaCloudMessage *msg);

/* Copies @offer into a new heap offer; free with ota_offer_free(). */
OtaOffer *ota_offer_copy (const OtaOffer *offer);
void ota_offer_clear (OtaOffer *offer);
void ota_offer_free (OtaOffer *offer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaOffer, ota_offer_free)

/* 1..32 characters of [A-Za-z0-9._-], not "." nor "..": safe as a path component. */
gboolean ota_protocol_version_is_valid (const char *version);
/* "" (main firmware) or a valid version-like name. */
gboolean ota_protocol_module_is_valid (const char *module);
/* Installed version of a device: 1..63 printable ASCII characters. */
gboolean ota_protocol_installed_version_is_valid (const char *version);

/* How logs name @module: "(main)" for the main firmware "", else its name. */
const char *ota_protocol_module_label (const char *module);

/* 32 lowercase hexadecimal digits: the one form in which the agent keeps an
 * MD5 (offers are lowered when parsed, records and hashes are lowercase). */
gboolean ota_protocol_md5sum_is_valid (const char *md5sum);

/* {"type":"report_version","report":{"version":V[,"fw_type":M]}}; newly allocated. */
char *ota_protocol_encode_report_version (const char *module, const char *version);
/* {"type":"report_progress","report":{"progress":{...},"version":V[,"fw_type":M][,"task_id":T]}};
 * percent and result_code as JSON strings. Newly allocated. */
char *ota_protocol_encode_progress (const OtaProgressReport *report);

G_END_DECLS
