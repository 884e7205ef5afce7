################################################################################
#
# iv-ota
#
################################################################################

# Set the version (a tag or commit) and the repository in the external tree
# that carries this package; see README.md beside this file.
IV_OTA_VERSION ?= main
IV_OTA_SITE ?= https://git.example.com/iv-ota.git
IV_OTA_SITE_METHOD = git
IV_OTA_LICENSE = MIT
IV_OTA_INSTALL_STAGING = YES
# A branch has no fixed archive to hash: iv-ota.hash is a placeholder until
# IV_OTA_VERSION names a tag or commit (README.md, "The hash file"). Delete
# this line once the hash is in.
BR_NO_CHECK_HASH_FOR += $(IV_OTA_SOURCE)
IV_OTA_DEPENDENCIES = host-pkgconf host-libglib2 libglib2 libsoup3 json-glib mosquitto dbus openssl

# The meson options used here exist in meson_options.txt; scripts/cross.sh
# configures its arm64/armhf builds with the same directories.
IV_OTA_CONF_OPTS = -Dtests=false

ifeq ($(BR2_INIT_SYSTEMD),y)
IV_OTA_CONF_OPTS += \
	-Dsystemdsystemunitdir=/usr/lib/systemd/system \
	-Dsysusersdir=/usr/lib/sysusers.d
else
# Without systemd, D-Bus activation starts the agent on the first call.
IV_OTA_CONF_OPTS += -Dsystemdsystemunitdir=no -Dsysusersdir=no
endif

# Group iv-ota: its members may call the agent's methods (bus policy).
define IV_OTA_USERS
	- - iv-ota -1 * - - - iv-ota agent callers
endef

ifeq ($(BR2_PACKAGE_IV_OTA_CLOUD),)
define IV_OTA_REMOVE_CLOUD
	rm -f $(TARGET_DIR)/usr/bin/iv-ota-cloud
endef
IV_OTA_POST_INSTALL_TARGET_HOOKS += IV_OTA_REMOVE_CLOUD
endif

$(eval $(meson-package))
