/* Tests of the [install] and [install.<module>] groups: strict, like the rest
 * of the configuration. */
#include "config.h"

#include <string.h>

#define DEVICE "[device]\nproduct_id=P1\ndevice_name=dev1\n[ota]\nstate_dir=/data/ota\n"

static OtaConfig *
load (const char *text, GError **error)
{
  return ota_config_load_from_data (text, strlen (text), error);
}

static void
test_no_install_group_means_no_installer (void)
{
  g_autoptr (OtaConfig) config = load (DEVICE, NULL);

  g_assert_nonnull (config);
  g_assert_cmpuint (config->installers->len, ==, 0);
}

static void
test_rauc_group_gets_its_defaults (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OtaConfig) config = load (DEVICE "[install]\nmethod=rauc\n", &error);
  OtaInstallConfig *install;

  g_assert_no_error (error);
  g_assert_cmpuint (config->installers->len, ==, 1);
  install = config->installers->pdata[0];
  g_assert_cmpstr (install->module, ==, "");
  g_assert_cmpint (install->method, ==, OTA_INSTALL_METHOD_RAUC);
  g_assert_cmpstr (install->firmware_dir, ==, "/data/ota/images");
  g_assert_true (install->rauc_system_bus);
  g_assert_cmpuint (g_strv_length (install->reboot_command), ==, 0);
  g_assert_cmpuint (g_strv_length (install->version_command), ==, 0);
}

static void
test_command_group_is_read_back_exactly (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OtaConfig) config =
    load (DEVICE "[install.mcu]\nmethod=command\ncommand=/usr/lib/iv-ota/install --image={path} \"two words\" "
                 "{version} {module}\nversion_command=/usr/bin/mcu-version --short\ntimeout=90\n"
                 "reboot_command=systemctl reboot\nfirmware_dir=/data/mcu-images\n",
          &error);
  OtaInstallConfig *install;
  const char *const command[] = { "/usr/lib/iv-ota/install", "--image={path}", "two words", "{version}", "{module}",
                                  NULL };
  const char *const reboot[] = { "systemctl", "reboot", NULL };
  const char *const version[] = { "/usr/bin/mcu-version", "--short", NULL };

  g_assert_no_error (error);
  install = config->installers->pdata[0];
  g_assert_cmpstr (install->module, ==, "mcu");
  g_assert_cmpint (install->method, ==, OTA_INSTALL_METHOD_COMMAND);
  g_assert_cmpstrv (install->command, command);
  g_assert_cmpstrv (install->reboot_command, reboot);
  g_assert_cmpstrv (install->version_command, version);
  g_assert_cmpuint (install->timeout, ==, 90);
  g_assert_cmpstr (install->firmware_dir, ==, "/data/mcu-images");
}

static void
test_placeholders_are_substituted_in_place (void)
{
  char *argv[] = { "/bin/install", "--image={path}", "{version}-{module}", "{other}", NULL };
  g_auto (GStrv) expanded = ota_install_config_expand_command (argv, "/i/FW_mcu_2.0.bin", "2.0", "mcu");
  const char *const expected[] = { "/bin/install", "--image=/i/FW_mcu_2.0.bin", "2.0-mcu", "{other}", NULL };

  g_assert_cmpstrv (expanded, expected);
}

static void
test_two_modules_get_two_installers (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (OtaConfig) config =
    load (DEVICE "[install]\nmethod=rauc\nrauc_bus=session\n[install.mcu]\nmethod=command\ncommand=/x {path}\n"
                 "version_command=/v\n",
          &error);

  g_assert_no_error (error);
  g_assert_cmpuint (config->installers->len, ==, 2);
  g_assert_false (((OtaInstallConfig *) config->installers->pdata[0])->rauc_system_bus);
}

typedef struct {
  const char *name;
  const char *text;
  const char *message;
} BadConfig;

static const BadConfig bad_configs[] = {
  { "no-method", "[install]\nreboot_command=reboot\n", "[install] method: required" },
  { "unknown-method", "[install]\nmethod=swupdate\n", "[install] method: expected rauc or command, got \"swupdate\"" },
  { "unknown-key", "[install]\nmethod=rauc\nslot=A\n", "unknown key [install] slot" },
  { "command-key-with-rauc", "[install]\nmethod=rauc\ncommand=/x {path}\n",
    "[install] command: only with method=command" },
  { "timeout-with-rauc", "[install]\nmethod=rauc\ntimeout=5\n", "[install] timeout: only with method=command" },
  { "rauc_bus-with-command", "[install.mcu]\nmethod=command\ncommand=/x {path}\nversion_command=/v\nrauc_bus=system\n",
    "[install.mcu] rauc_bus: only with method=rauc" },
  { "bad-rauc_bus", "[install]\nmethod=rauc\nrauc_bus=user\n", "[install] rauc_bus: expected system or session" },
  { "command-missing", "[install.mcu]\nmethod=command\nversion_command=/v\n", "[install.mcu] command: required" },
  { "version_command-missing", "[install.mcu]\nmethod=command\ncommand=/x {path}\n",
    "[install.mcu] version_command: required" },
  { "command-without-path", "[install.mcu]\nmethod=command\ncommand=/x {version}\nversion_command=/v\n",
    "[install.mcu] command: must pass the image: {path} is missing" },
  { "unknown-placeholder", "[install.mcu]\nmethod=command\ncommand=/x {path} {slot}\nversion_command=/v\n",
    "[install.mcu] command: unknown placeholder {slot}" },
  { "unterminated-placeholder", "[install.mcu]\nmethod=command\ncommand=/x {path} {version\nversion_command=/v\n",
    "[install.mcu] command: unknown placeholder {version" },
  { "unbalanced-quote", "[install]\nmethod=rauc\nreboot_command=systemctl \"reboot\n",
    "[install] reboot_command: not a command line" },
  { "timeout-0", "[install.mcu]\nmethod=command\ncommand=/x {path}\nversion_command=/v\ntimeout=0\n",
    "[install.mcu] timeout: expected an integer between 1 and 604800, got \"0\"" },
  { "timeout-abc", "[install.mcu]\nmethod=command\ncommand=/x {path}\nversion_command=/v\ntimeout=abc\n",
    "[install.mcu] timeout" },
  { "relative-firmware_dir", "[install]\nmethod=rauc\nfirmware_dir=images\n",
    "[install] firmware_dir: expected an absolute path" },
  { "empty-module", "[install.]\nmethod=rauc\n", "[install.]: the module name" },
  { "escaping-module", "[install.../etc]\nmethod=rauc\n", "[install.../etc]: the module name" },
  { "control-character", "[install]\nmethod=rauc\nreboot_command=a\\tb\n",
    "[install] reboot_command: must not contain control characters" },
  { "near-miss-group", "[installer]\nmethod=rauc\n", "unknown group [installer]" },
};

static void
test_bad_install_group_is_rejected (gconstpointer data)
{
  const BadConfig *bad = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = g_strconcat (DEVICE, bad->text, NULL);
  g_autoptr (OtaConfig) config = load (text, &error);

  g_assert_null (config);
  g_assert_nonnull (error);
  g_assert_cmpuint (error->domain, ==, G_KEY_FILE_ERROR);
  g_test_message ("%s", error->message);
  if (strstr (error->message, bad->message) == NULL)
    g_test_fail_printf ("\"%s\" does not contain \"%s\"", error->message, bad->message);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/install-config/no-install-group-means-no-installer", test_no_install_group_means_no_installer);
  g_test_add_func ("/install-config/rauc-group-gets-its-defaults", test_rauc_group_gets_its_defaults);
  g_test_add_func ("/install-config/command-group-is-read-back-exactly", test_command_group_is_read_back_exactly);
  g_test_add_func ("/install-config/placeholders-are-substituted-in-place",
                   test_placeholders_are_substituted_in_place);
  g_test_add_func ("/install-config/two-modules-get-two-installers", test_two_modules_get_two_installers);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_configs); i++) {
    g_autofree char *path = g_strdup_printf ("/install-config/bad/%s", bad_configs[i].name);
    g_test_add_data_func (path, &bad_configs[i], test_bad_install_group_is_rejected);
  }
  return g_test_run ();
}
