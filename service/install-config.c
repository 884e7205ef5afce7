/* [install] groups: strict like the rest of the configuration. Each key is
 * removed once read; a key left over is unknown, or belongs to the other
 * method, and is reported. Commands are argv vectors split with shell
 * quoting rules but never run through a shell. */
#include "install-config.h"

#include "protocol.h"

#include <string.h>

#define GROUP_PREFIX "install"
#define DEFAULT_TIMEOUT_S 3600
#define MAX_TIMEOUT_S 604800

static const char *const rauc_keys[] = { "method", "reboot_command", "firmware_dir", "rauc_bus", "version_command" };
static const char *const command_keys[] = { "method", "reboot_command", "firmware_dir", "version_command", "command",
                                            "timeout" };

void
ota_install_config_free (OtaInstallConfig *self)
{
  if (self == NULL)
    return;
  g_free (self->module);
  g_strfreev (self->reboot_command);
  g_free (self->firmware_dir);
  g_strfreev (self->version_command);
  g_strfreev (self->command);
  g_free (self);
}

gboolean
ota_key_file_error (GError **error, const char *group, const char *key, const char *format, ...)
                    {
                    va_list args;
  g_autofree char *message = NULL;

  g_return_val_if_fail (group != NULL && key != NULL && format != NULL, FALSE);

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "[%s] %s: %s", group, key, message);
  return FALSE;
}

/* The group's module: NULL when @group is not an install group. */
static const char *
group_module (const char *group)
{
  if (g_str_equal (group, GROUP_PREFIX))
    return "";
  if (g_str_has_prefix (group, GROUP_PREFIX "."))
    return group + strlen (GROUP_PREFIX ".");
  return NULL;
}

/* The value of @key, consumed; NULL (no error) when absent. */
static char *
take_string (GKeyFile *key_file, const char *group, const char *key, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *value = NULL;

  if (!g_key_file_has_key (key_file, group, key, NULL))
    return NULL;
  value = g_key_file_get_string (key_file, group, key, &local_error);
  if (local_error != NULL) {
    ota_key_file_error (error, group, key, "%s", local_error->message);
    return NULL;
  }
  for (const char *p = value; *p != '\0'; p++) {
    if (g_ascii_iscntrl (*p)) {
      ota_key_file_error (error, group, key, "must not contain control characters");
      return NULL;
    }
  }
  g_key_file_remove_key (key_file, group, key, NULL);
  return g_steal_pointer (&value);
}

/* @value split into argv; an empty or blank value is the empty vector. */
static char **
parse_argv (const char *group, const char *key, const char *value, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *stripped = value != NULL ? g_strstrip (g_strdup (value)) : NULL;
  char **argv = NULL;

  if (stripped == NULL || *stripped == '\0')
    return g_new0 (char *, 1);
  if (!g_shell_parse_argv (value, NULL, &argv, &local_error)) {
    ota_key_file_error (error, group, key, "not a command line: %s", local_error->message);
    return NULL;
  }
  return argv;
}

/* Only {path}, {version} and {module}; {path} at least once. */
static gboolean
check_placeholders (const char *group, char **argv, GError **error)
{
  gboolean has_path = FALSE;

  for (gsize i = 0; argv[i] != NULL; i++) {
    for (const char *p = strchr (argv[i], '{'); p != NULL; p = strchr (p + 1, '{')) {
      const char *end = strchr (p, '}');
      gsize length = end != NULL ? (gsize) (end - p + 1) : strlen (p);

      if (end != NULL && length == strlen ("{path}") && strncmp (p, "{path}", length) == 0)
        has_path = TRUE;
      else if (end == NULL || !((length == strlen ("{version}") && strncmp (p, "{version}", length) == 0) ||
                                (length == strlen ("{module}") && strncmp (p, "{module}", length) == 0)))
        return ota_key_file_error (error, group, "command",
                                   "unknown placeholder %.*s (known: {path} {version} {module})",
                                   (int) length, p);
    }
  }
  if (!has_path)
    return ota_key_file_error (error, group, "command", "must pass the image: {path} is missing");
  return TRUE;
}

static gboolean
read_method (GKeyFile *key_file, const char *group, OtaInstallConfig *self, GError **error)
{
  g_autofree char *method = take_string (key_file, group, "method", error);

  if (method == NULL && (error == NULL || *error == NULL))
    return ota_key_file_error (error, group, "method", "required (rauc or command)");
  if (method == NULL)
    return FALSE;
  if (g_str_equal (method, "rauc"))
    self->method = OTA_INSTALL_METHOD_RAUC;
  else if (g_str_equal (method, "command"))
    self->method = OTA_INSTALL_METHOD_COMMAND;
  else
    return ota_key_file_error (error, group, "method", "expected rauc or command, got \"%s\"", method);
  return TRUE;
}

/* Reads @key as argv into @field (left as the empty vector when absent). */
static gboolean
read_argv (GKeyFile *key_file, const char *group, const char *key, char ***field, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *value = take_string (key_file, group, key, &local_error);
  char **argv;

  if (local_error != NULL) {
    g_propagate_error (error, g_steal_pointer (&local_error));
    return FALSE;
  }
  argv = parse_argv (group, key, value, error);
  if (argv == NULL)
    return FALSE;
  g_strfreev (*field);
  *field = argv;
  return TRUE;
}

static gboolean
read_firmware_dir (GKeyFile *key_file, const char *group, OtaInstallConfig *self, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *dir = take_string (key_file, group, "firmware_dir", &local_error);

  if (local_error != NULL) {
    g_propagate_error (error, g_steal_pointer (&local_error));
    return FALSE;
  }
  if (dir == NULL)
    return TRUE;
  if (!g_path_is_absolute (dir))
    return ota_key_file_error (error, group, "firmware_dir", "expected an absolute path, got \"%s\"", dir);
  g_free (self->firmware_dir);
  self->firmware_dir = g_steal_pointer (&dir);
  return TRUE;
}

static gboolean
read_rauc_bus (GKeyFile *key_file, const char *group, OtaInstallConfig *self, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *bus = take_string (key_file, group, "rauc_bus", &local_error);

  if (local_error != NULL) {
    g_propagate_error (error, g_steal_pointer (&local_error));
    return FALSE;
  }
  if (bus == NULL || g_str_equal (bus, "system"))
    self->rauc_system_bus = TRUE;
  else if (g_str_equal (bus, "session"))
    self->rauc_system_bus = FALSE;
  else
    return ota_key_file_error (error, group, "rauc_bus", "expected system or session, got \"%s\"", bus);
  return TRUE;
}

static gboolean
read_timeout (GKeyFile *key_file, const char *group, OtaInstallConfig *self, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *raw = take_string (key_file, group, "timeout", &local_error);
  guint64 value = 0;

  if (local_error != NULL) {
    g_propagate_error (error, g_steal_pointer (&local_error));
    return FALSE;
  }
  if (raw == NULL)
    return TRUE;
  g_strstrip (raw);
  if (!g_ascii_string_to_unsigned (raw, 10, 1, MAX_TIMEOUT_S, &value, NULL))
    return ota_key_file_error (error, group, "timeout", "expected an integer between 1 and %d, got \"%s\"",
                               MAX_TIMEOUT_S, raw);
  self->timeout = (guint) value;
  return TRUE;
}

static gboolean
read_command_keys (GKeyFile *key_file, const char *group, OtaInstallConfig *self, GError **error)
{
  if (!read_argv (key_file, group, "command", &self->command, error) || !read_timeout (key_file, group, self, error))
    return FALSE;
  if (self->command[0] == NULL)
    return ota_key_file_error (error, group, "command", "required with method=command");
  if (self->version_command[0] == NULL)
    return ota_key_file_error (error, group, "version_command",
                               "required with method=command (it tells the running version)");
  return check_placeholders (group, self->command, error);
}

static gboolean
is_key_of (const char *key, const char *const *keys, gsize n_keys)
{
  for (gsize i = 0; i < n_keys; i++) {
    if (g_str_equal (key, keys[i]))
      return TRUE;
  }
  return FALSE;
}

/* Whatever is left in the group was not read: unknown, repeated, or for the other method. */
static gboolean
check_group_empty (GKeyFile *key_file, const char *group, OtaInstallMethod method, GError **error)
{
  g_auto (GStrv) keys = g_key_file_get_keys (key_file, group, NULL, NULL);
  const char *key = keys != NULL ? keys[0] : NULL;
  gboolean rauc_key = key != NULL && is_key_of (key, rauc_keys, G_N_ELEMENTS (rauc_keys));
  gboolean command_key = key != NULL && is_key_of (key, command_keys, G_N_ELEMENTS (command_keys));

  if (key == NULL)
    return TRUE;
  if (method == OTA_INSTALL_METHOD_RAUC && command_key && !rauc_key)
    return ota_key_file_error (error, group, key, "only with method=command");
  if (method == OTA_INSTALL_METHOD_COMMAND && rauc_key && !command_key)
    return ota_key_file_error (error, group, key, "only with method=rauc");
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
               rauc_key || command_key ? "duplicate key [%s] %s" : "unknown key [%s] %s", group, key);
  return FALSE;
}

static OtaInstallConfig *
read_group (GKeyFile *key_file, const char *group, const char *module, const char *state_dir, GError **error)
{
  g_autoptr (OtaInstallConfig) self = g_new0 (OtaInstallConfig, 1);

  if (!ota_protocol_module_is_valid (module) || (*module == '\0' && !g_str_equal (group, GROUP_PREFIX))) {
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "[%s]: the module name must be 1..32 characters of [A-Za-z0-9._-] ([install] is the main firmware)",
                 group);
    return NULL;
  }
  self->module = g_strdup (module);
  self->firmware_dir = g_build_filename (state_dir, "images", NULL);
  self->rauc_system_bus = TRUE;
  self->timeout = DEFAULT_TIMEOUT_S;
  self->reboot_command = g_new0 (char *, 1);
  self->version_command = g_new0 (char *, 1);
  self->command = g_new0 (char *, 1);
  if (!read_method (key_file, group, self, error) ||
      !read_argv (key_file, group, "reboot_command", &self->reboot_command, error) ||
      !read_argv (key_file, group, "version_command", &self->version_command, error) ||
      !read_firmware_dir (key_file, group, self, error))
    return NULL;
  if (self->method == OTA_INSTALL_METHOD_RAUC && !read_rauc_bus (key_file, group, self, error))
    return NULL;
  if (self->method == OTA_INSTALL_METHOD_COMMAND && !read_command_keys (key_file, group, self, error))
    return NULL;
  if (!check_group_empty (key_file, group, self->method, error))
    return NULL;
  return g_steal_pointer (&self);
}

gboolean
ota_install_config_consume (GKeyFile *key_file, const char *state_dir, GPtrArray *installers, GError **error)
{
  g_return_val_if_fail (key_file != NULL, FALSE);
  g_return_val_if_fail (installers != NULL, FALSE);

  g_auto (GStrv) groups = g_key_file_get_groups (key_file, NULL);

  for (gsize i = 0; groups[i] != NULL; i++) {
    const char *module = group_module (groups[i]);
    OtaInstallConfig *installer;

    if (module == NULL)
      continue;
    installer = read_group (key_file, groups[i], module, state_dir, error);
    if (installer == NULL)
      return FALSE;
    g_ptr_array_add (installers, installer);
    g_key_file_remove_group (key_file, groups[i], NULL);
  }
  return TRUE;
}

static void
expand_one (GString *out, const char *arg, const char *path, const char *version, const char *module)
{
  const char *p = arg;

  while (*p != '\0') {
    if (g_str_has_prefix (p, "{path}")) {
      g_string_append (out, path);
      p += strlen ("{path}");
    } else if (g_str_has_prefix (p, "{version}")) {
      g_string_append (out, version);
      p += strlen ("{version}");
    } else if (g_str_has_prefix (p, "{module}")) {
      g_string_append (out, module);
      p += strlen ("{module}");
    } else {
      g_string_append_c (out, *p++);
    }
  }
}

char **
ota_install_config_expand_command (char **argv, const char *path, const char *version, const char *module)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();

  for (gsize i = 0; argv[i] != NULL; i++) {
    g_autoptr (GString) arg = g_string_new (NULL);

    expand_one (arg, argv[i], path, version, module);
    g_strv_builder_add (builder, arg->str);
  }
  return g_strv_builder_end (builder);
}
