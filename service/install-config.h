/* The [install] and [install.<module>] groups of the agent's configuration:
 * modules the agent installs by itself, with RAUC or with a command. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The one shape of a configuration error, for iv-otad.conf and its
 * installer sections alike: G_KEY_FILE_ERROR_INVALID_VALUE with
 * "[group] key: message". Returns FALSE. */
gboolean ota_key_file_error (GError **error, const char *group, const char *key, const char *format, ...)
  G_GNUC_PRINTF (4, 5);

typedef enum {
  OTA_INSTALL_METHOD_RAUC,
  OTA_INSTALL_METHOD_COMMAND,
} OtaInstallMethod;

typedef struct {
  char *module;           /* "" for [install], "mcu" for [install.mcu] */
  OtaInstallMethod method;
  char **reboot_command;  /* argv; empty (never NULL): no reboot */
  char *firmware_dir;     /* absolute; default <state_dir>/images */
  gboolean rauc_system_bus; /* rauc_bus: TRUE system (default), FALSE session */
  char **version_command; /* argv; empty when unset (rauc only) */
  char **command;         /* argv with {path} {version} {module}; method=command only */
  guint timeout;          /* seconds, 1..604800, default 3600; method=command only */
} OtaInstallConfig;

void ota_install_config_free (OtaInstallConfig *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OtaInstallConfig, ota_install_config_free)

/* Reads and removes every [install] and [install.<module>] group of
 * @key_file, appending one OtaInstallConfig per group to @installers (a
 * GPtrArray freeing its elements). Unknown keys, keys of the other method,
 * missing required keys (method; command and version_command for
 * method=command), unknown placeholders, bad module names and malformed
 * argv are errors in the G_KEY_FILE_ERROR domain naming "[group] key". */
gboolean ota_install_config_consume (GKeyFile *key_file, const char *state_dir, GPtrArray *installers,
                                     GError **error);

/* @argv with {path}, {version} and {module} substituted (a newly allocated
 * vector). */
char **ota_install_config_expand_command (char **argv, const char *path, const char *version,
                                          const char *module);

G_END_DECLS
